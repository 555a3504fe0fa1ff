// clamp: values clamped into [min_value, max_value] in place, NaN kept (comparisons with NaN are
// false), as Tensor.clamp_: the two gradient hooks and clip-by-value over the whole gradient
// arena in one launch. CPU reference: src/ops/clamp.rs.
#include "common.cuh"

extern "C" __global__ void clamp_in_place(int n, float min_value, float max_value, float* __restrict__ values) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float v = values[i];
        if (v < min_value) {
            v = min_value;
        } else if (v > max_value) {
            v = max_value;
        }
        values[i] = v;
    }
}

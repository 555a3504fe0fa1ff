// elementwise: the skip additions (forward out = a + b; backward, the gradient added into both
// branches, is add_in_place) and the one-launch fill that zeroes a whole gradient arena. One
// thread per element. CPU reference: src/ops/elementwise.rs.
#include "common.cuh"

extern "C" __global__ void elementwise_add(int n, const float* __restrict__ a, const float* __restrict__ b,
                                           float* __restrict__ out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a[i] + b[i];
}

// y += x.
extern "C" __global__ void elementwise_add_in_place(int n, const float* __restrict__ x, float* __restrict__ y) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) y[i] += x[i];
}

extern "C" __global__ void elementwise_fill(int n, float value, float* __restrict__ values) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) values[i] = value;
}

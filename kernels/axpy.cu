// axpy: out = a * x + y, elementwise over n floats. One thread per element.
#include "common.cuh"

extern "C" __global__ void axpy(int n, float a, const float* __restrict__ x, const float* __restrict__ y,
                                float* __restrict__ out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = a * x[i] + y[i];
}

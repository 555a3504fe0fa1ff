// activation: leaky ReLU and the logistic sigmoid, forward and backward, elementwise over n
// floats, one thread per element. CPU reference: src/ops/activation.rs. The backward kernels
// ADD into d_inp, as the CPU ops do (a tensor read twice collects both gradients).
#include "common.cuh"

extern "C" __global__ void leaky_relu_forward(int n, float negative_slope, const float* __restrict__ inp,
                                              float* __restrict__ out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float x = inp[i];
        out[i] = x > 0.0f ? x : x * negative_slope;
    }
}

// PyTorch's choice at exactly 0: the slope.
extern "C" __global__ void leaky_relu_backward(int n, float negative_slope, const float* __restrict__ d_out,
                                               const float* __restrict__ inp, float* __restrict__ d_inp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float dy = d_out[i];
        d_inp[i] += inp[i] > 0.0f ? dy : dy * negative_slope;
    }
}

extern "C" __global__ void sigmoid_forward(int n, const float* __restrict__ inp, float* __restrict__ out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = 1.0f / (1.0f + expf(-inp[i]));
}

// Takes the forward's output, as PyTorch does: d_inp += d_out·y·(1 − y).
extern "C" __global__ void sigmoid_backward(int n, const float* __restrict__ d_out, const float* __restrict__ out,
                                            float* __restrict__ d_inp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float y = out[i];
        float g = d_out[i] * y;
        d_inp[i] += g * (1.0f - y);
    }
}

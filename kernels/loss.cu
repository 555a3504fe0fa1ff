// loss: mean binary cross-entropy with PyTorch's −100 clamp on each log term, and its gradient.
// CPU reference: src/ops/loss.rs.
//
// The mean is a deterministic two-stage reduction in f64 (as the CPU sums): bce_partial_sums
// runs a grid whose size depends only on n, each thread summing a fixed strided subset and each
// block folding its threads in a fixed tree; bce_mean folds the block sums the same way in one
// block. The same n gives the same bits on every run and every GPU; no atomics.
#include "common.cuh"

#define BCE_THREADS 256

// Folds block_sums[0..BCE_THREADS) into block_sums[0] in a fixed tree. Every thread calls it.
__device__ void fold_block_sums(double* block_sums) {
    for (int stride = BCE_THREADS / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) block_sums[threadIdx.x] += block_sums[threadIdx.x + stride];
        __syncthreads();
    }
}

// partials[block] = Σ −(t·max(ln p, −100) + (1 − t)·max(ln(1 − p), −100)) over the block's
// grid-strided elements. blockDim.x == BCE_THREADS.
extern "C" __global__ void bce_partial_sums(int n, const float* __restrict__ probs, const float* __restrict__ targets,
                                            double* __restrict__ partials) {
    __shared__ double block_sums[BCE_THREADS];
    double sum = 0.0;
    for (int i = blockIdx.x * BCE_THREADS + threadIdx.x; i < n; i += gridDim.x * BCE_THREADS) {
        double p = probs[i];
        double t = targets[i];
        // std::max(x, -100) as PyTorch computes it: x < -100 ? -100 : x, so NaN stays NaN
        // (fmax would drop it).
        double log_p = log(p);
        double log_1mp = log(1.0 - p);
        log_p = log_p < -100.0 ? -100.0 : log_p;
        log_1mp = log_1mp < -100.0 ? -100.0 : log_1mp;
        sum += -(t * log_p + (1.0 - t) * log_1mp);
    }
    block_sums[threadIdx.x] = sum;
    __syncthreads();
    fold_block_sums(block_sums);
    if (threadIdx.x == 0) partials[blockIdx.x] = block_sums[0];
}

// loss[0] = (Σ partials) / count, one block of BCE_THREADS.
extern "C" __global__ void bce_mean(int n_partials, int count, const double* __restrict__ partials,
                                    float* __restrict__ loss) {
    __shared__ double block_sums[BCE_THREADS];
    double sum = 0.0;
    for (int i = threadIdx.x; i < n_partials; i += BCE_THREADS) sum += partials[i];
    block_sums[threadIdx.x] = sum;
    __syncthreads();
    fold_block_sums(block_sums);
    if (threadIdx.x == 0) loss[0] = (float)(block_sums[0] / (double)count);
}

// d_probs += d_loss·(p − t) / max(p·(1 − p), 1e-12) / n: PyTorch's formula, which ignores the
// log clamp.
extern "C" __global__ void bce_backward(int n, float d_loss, const float* __restrict__ probs,
                                        const float* __restrict__ targets, float* __restrict__ d_probs) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) {
        float p = probs[i];
        float numerator = d_loss * (p - targets[i]);
        float g = numerator / fmaxf((1.0f - p) * p, 1e-12f);
        d_probs[i] += g / (float)n;
    }
}

// batchnorm: BatchNorm2d over NCHW float32 (training: batch statistics, running statistics with
// momentum and the unbiased variance; evaluation: running statistics) and its training-mode
// backward, each optionally fused with the leaky ReLU that follows every BatchNorm of the
// network (`leaky` != 0). CPU reference: src/ops/batchnorm.rs (then src/ops/activation.rs).
//
// Statistics are a deterministic two-stage reduction in f64, as the CPU accumulates in f64:
// stage 1 (grid: splits × channels) sums a fixed slice of one channel's n·hw values per block
// and folds its threads in a fixed tree; stage 2 (one thread per channel) adds the slices in
// order. The variance is E[x²] − mean² in f64 (one read of the activations instead of two;
// f64's 53 bits leave ~1e-16·mean²/var of cancellation error, far below float32's rounding).
//
// Fusion with leaky ReLU: the forward writes leaky(x·scale + shift) directly, and the backward
// recomputes the pre-activation from x and the same (scale, shift) to mask d_out, so the
// pre-activation tensor is never stored, and neither pass needs a separate activation kernel.
#include "common.cuh"

#define BN_THREADS 256

// Folds a[0..BN_THREADS) and b[0..BN_THREADS) into a[0], b[0] in a fixed tree. Every thread calls it.
__device__ void fold_pairs(double* a, double* b) {
    for (int stride = BN_THREADS / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) {
            a[threadIdx.x] += a[threadIdx.x + stride];
            b[threadIdx.x] += b[threadIdx.x + stride];
        }
        __syncthreads();
    }
}

// The [start, end) of slice `split` of a channel's count = n·hw values.
__device__ void slice_bounds(int count, int splits, int split, int* start, int* end) {
    int per = (count + splits - 1) / splits;
    *start = min(split * per, count);
    *end = min(*start + per, count);
}

__device__ __forceinline__ long long plane_index(int e, int ch, int c, int hw) {
    int b = e / hw;
    int i = e - b * hw;
    return ((long long)b * c + ch) * hw + i;
}

// Stage 1 of the statistics: partials[(ch·splits + split)·2 + {0, 1}] = Σ x, Σ x² over the
// slice. Grid (splits, c), BN_THREADS threads.
extern "C" __global__ void batchnorm_partial_moments(int n, int c, int hw, int splits, const float* __restrict__ inp,
                                                     double* __restrict__ partials) {
    __shared__ double sums[BN_THREADS];
    __shared__ double sums_sq[BN_THREADS];
    int split = blockIdx.x;
    int ch = blockIdx.y;
    int start, end;
    slice_bounds(n * hw, splits, split, &start, &end);
    double s = 0.0;
    double s2 = 0.0;
    for (int e = start + threadIdx.x; e < end; e += BN_THREADS) {
        double x = inp[plane_index(e, ch, c, hw)];
        s += x;
        s2 += x * x;
    }
    sums[threadIdx.x] = s;
    sums_sq[threadIdx.x] = s2;
    __syncthreads();
    fold_pairs(sums, sums_sq);
    if (threadIdx.x == 0) {
        partials[(ch * splits + split) * 2] = sums[0];
        partials[(ch * splits + split) * 2 + 1] = sums_sq[0];
    }
}

// Stage 2, one thread per channel: the batch mean and 1/sqrt(biased var + eps) saved for the
// backward, the running statistics moved toward the mean and the UNBIASED variance by
// momentum (PyTorch), and the per-channel (scale, shift) that the apply kernel uses.
extern "C" __global__ void batchnorm_finish_statistics(int c, int splits, int count, float momentum, float eps,
                                                       const double* __restrict__ partials,
                                                       const float* __restrict__ weight,
                                                       const float* __restrict__ bias, float* __restrict__ save_mean,
                                                       float* __restrict__ save_rstd, float* __restrict__ running_mean,
                                                       float* __restrict__ running_var,
                                                       float* __restrict__ scale_shift) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) {
        double s = 0.0;
        double s2 = 0.0;
        for (int split = 0; split < splits; split++) {
            s += partials[(ch * splits + split) * 2];
            s2 += partials[(ch * splits + split) * 2 + 1];
        }
        double mean = s / count;
        double sum_sq_dev = fmax(s2 - s * mean, 0.0);
        double rstd = 1.0 / sqrt(sum_sq_dev / count + (double)eps);
        save_mean[ch] = (float)mean;
        save_rstd[ch] = (float)rstd;
        double m = momentum;
        running_mean[ch] = (float)(m * mean + (1.0 - m) * (double)running_mean[ch]);
        running_var[ch] = (float)(m * (sum_sq_dev / (count - 1)) + (1.0 - m) * (double)running_var[ch]);
        double scale = rstd * (double)weight[ch];
        scale_shift[2 * ch] = (float)scale;
        scale_shift[2 * ch + 1] = (float)((double)bias[ch] - mean * scale);
    }
}

// Evaluation: (scale, shift) from the running statistics, one thread per channel.
extern "C" __global__ void batchnorm_eval_scale_shift(int c, float eps, const float* __restrict__ weight,
                                                      const float* __restrict__ bias,
                                                      const float* __restrict__ running_mean,
                                                      const float* __restrict__ running_var,
                                                      float* __restrict__ scale_shift) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) {
        double scale = (double)weight[ch] / sqrt((double)running_var[ch] + (double)eps);
        scale_shift[2 * ch] = (float)scale;
        scale_shift[2 * ch + 1] = (float)((double)bias[ch] - (double)running_mean[ch] * scale);
    }
}

__device__ __forceinline__ float pre_activation(float x, const float* scale_shift, int ch) {
    // The explicit fmaf keeps forward and backward bit-identical whatever the compiler contracts.
    return fmaf(x, scale_shift[2 * ch], scale_shift[2 * ch + 1]);
}

// out = x·scale + shift (then leaky ReLU when `leaky`), one thread per element of (n, c, hw).
extern "C" __global__ void batchnorm_apply(int total, int c, int hw, int leaky, float negative_slope,
                                           const float* __restrict__ inp, const float* __restrict__ scale_shift,
                                           float* __restrict__ out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) {
        int ch = (i / hw) % c;
        float y = pre_activation(inp[i], scale_shift, ch);
        out[i] = (leaky && !(y > 0.0f)) ? y * negative_slope : y;
    }
}

// d_out masked by the fused leaky ReLU's slope where the pre-activation is not positive.
__device__ __forceinline__ float masked_d_out(float dy, float x, int leaky, float negative_slope,
                                              const float* scale_shift, int ch) {
    if (leaky && !(pre_activation(x, scale_shift, ch) > 0.0f)) return dy * negative_slope;
    return dy;
}

// Backward stage 1: partials[(ch·splits + split)·2 + {0, 1}] = Σ d_y, Σ d_y·(x − mean) over the
// slice, d_y being d_out through the fused leaky ReLU. Grid (splits, c), BN_THREADS threads.
extern "C" __global__ void batchnorm_backward_partials(int n, int c, int hw, int splits, int leaky,
                                                       float negative_slope, const float* __restrict__ d_out,
                                                       const float* __restrict__ inp,
                                                       const float* __restrict__ save_mean,
                                                       const float* __restrict__ scale_shift,
                                                       double* __restrict__ partials) {
    __shared__ double sums[BN_THREADS];
    __shared__ double sums_xhat[BN_THREADS];
    int split = blockIdx.x;
    int ch = blockIdx.y;
    int start, end;
    slice_bounds(n * hw, splits, split, &start, &end);
    float mean = save_mean[ch];
    double s = 0.0;
    double s_dev = 0.0;
    for (int e = start + threadIdx.x; e < end; e += BN_THREADS) {
        long long idx = plane_index(e, ch, c, hw);
        float x = inp[idx];
        double dy = masked_d_out(d_out[idx], x, leaky, negative_slope, scale_shift, ch);
        s += dy;
        s_dev += dy * ((double)x - (double)mean);
    }
    sums[threadIdx.x] = s;
    sums_xhat[threadIdx.x] = s_dev;
    __syncthreads();
    fold_pairs(sums, sums_xhat);
    if (threadIdx.x == 0) {
        partials[(ch * splits + split) * 2] = sums[0];
        partials[(ch * splits + split) * 2 + 1] = sums_xhat[0];
    }
}

// Backward stage 2, one thread per channel: d_bias += Σ d_y, d_weight += Σ d_y·x̂, and the
// coefficients (a, b, k) of d_x = a·d_y + b·x + k, which is
// weight·rstd·(d_y − mean(d_y) − x̂·mean(d_y·x̂)) rearranged.
extern "C" __global__ void batchnorm_backward_finish(int c, int splits, int count, const double* __restrict__ partials,
                                                     const float* __restrict__ weight,
                                                     const float* __restrict__ save_mean,
                                                     const float* __restrict__ save_rstd, float* __restrict__ d_weight,
                                                     float* __restrict__ d_bias, float* __restrict__ coefficients) {
    int ch = blockIdx.x * blockDim.x + threadIdx.x;
    if (ch < c) {
        double sum_dy = 0.0;
        double sum_dy_dev = 0.0;
        for (int split = 0; split < splits; split++) {
            sum_dy += partials[(ch * splits + split) * 2];
            sum_dy_dev += partials[(ch * splits + split) * 2 + 1];
        }
        double mean = save_mean[ch];
        double rstd = save_rstd[ch];
        double sum_dy_xhat = sum_dy_dev * rstd;
        d_bias[ch] += (float)sum_dy;
        d_weight[ch] += (float)sum_dy_xhat;
        double scale = (double)weight[ch] * rstd;
        double mean_dy = sum_dy / count;
        double mean_dy_xhat = sum_dy_xhat / count;
        double x_coef = -scale * mean_dy_xhat * rstd;
        coefficients[3 * ch] = (float)scale;
        coefficients[3 * ch + 1] = (float)x_coef;
        coefficients[3 * ch + 2] = (float)(-scale * mean_dy - x_coef * mean);
    }
}

// Backward stage 3: d_inp += a·d_y + b·x + k, one thread per element.
extern "C" __global__ void batchnorm_backward_apply(int total, int c, int hw, int leaky, float negative_slope,
                                                    const float* __restrict__ d_out, const float* __restrict__ inp,
                                                    const float* __restrict__ scale_shift,
                                                    const float* __restrict__ coefficients,
                                                    float* __restrict__ d_inp) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) {
        int ch = (i / hw) % c;
        float x = inp[i];
        float dy = masked_d_out(d_out[i], x, leaky, negative_slope, scale_shift, ch);
        d_inp[i] += coefficients[3 * ch] * dy + coefficients[3 * ch + 1] * x + coefficients[3 * ch + 2];
    }
}

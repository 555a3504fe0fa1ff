// features: the network's input path on the device, from a batch of raw audio crops to the
// normalised log-CQT images without leaving the GPU: reflect padding (numpy's "reflect", as
// the CQT's center=True), then the CQT (kernels/cqt.cu), then ln(x + 1e-5) transposed to
// frames × bins, then imagewise min-max normalisation (NaN → 0, a NaN anywhere zeroes the
// image, as PyTorch). CPU reference: src/spectrogram/features.rs and src/spectrogram/cqt.rs.
#include "common.cuh"

#define FEATURES_THREADS 256

// padded[b][p] for p < padded_stride: clip b (clip_len samples, clips clip_stride apart)
// extended by repeated reflection without repeating the edge sample, shifted by pad; zeros
// past clip_len + 2·pad (the CQT's slack). One thread per padded sample.
extern "C" __global__ void features_reflect_pad(int batch, int clip_stride, int clip_len, int pad, int padded_stride,
                                                const float* __restrict__ clips, float* __restrict__ padded) {
    long long total = (long long)batch * padded_stride;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < total) {
        int b = (int)(idx / padded_stride);
        int p = (int)(idx - (long long)b * padded_stride);
        float value = 0.0f;
        if (p < clip_len + 2 * pad) {
            long long i = (long long)p - pad;
            long long j = 0;
            if (clip_len > 1) {
                long long period = 2 * (long long)(clip_len - 1);
                long long folded = ((i % period) + period) % period;
                j = folded < clip_len ? folded : period - folded;
            }
            value = clips[(long long)b * clip_stride + j];
        }
        padded[idx] = value;
    }
}

// out[b][t][bin] = ln(magnitudes[b][bin][t] + 1e-5): the CQT's (bins, frames) layout turned
// into the network's (frames, bins). One thread per output element.
extern "C" __global__ void features_log_transpose(int batch, int n_bins, int n_frames,
                                                  const float* __restrict__ magnitudes, float* __restrict__ out) {
    long long total = (long long)batch * n_bins * n_frames;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < total) {
        int bin = (int)(idx % n_bins);
        long long rest = idx / n_bins;
        int t = (int)(rest % n_frames);
        int b = (int)(rest / n_frames);
        out[idx] = logf(magnitudes[((long long)b * n_bins + bin) * n_frames + t] + 1e-5f);
    }
}

__device__ __forceinline__ float nan_min(float a, float b) { return (a != a || b != b) ? a + b : (a < b ? a : b); }
__device__ __forceinline__ float nan_max(float a, float b) { return (a != a || b != b) ? a + b : (a > b ? a : b); }

// min_max[2·image], min_max[2·image + 1] = the image's min and max (NaN if it holds a NaN).
// One block of FEATURES_THREADS per image.
extern "C" __global__ void features_image_min_max(int per_image, const float* __restrict__ values,
                                                  float* __restrict__ min_max) {
    __shared__ float mins[FEATURES_THREADS];
    __shared__ float maxs[FEATURES_THREADS];
    const float* image = values + (long long)blockIdx.x * per_image;
    float lo = mtosi_infinity();
    float hi = -mtosi_infinity();
    for (int i = threadIdx.x; i < per_image; i += FEATURES_THREADS) {
        lo = nan_min(lo, image[i]);
        hi = nan_max(hi, image[i]);
    }
    mins[threadIdx.x] = lo;
    maxs[threadIdx.x] = hi;
    __syncthreads();
    for (int stride = FEATURES_THREADS / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) {
            mins[threadIdx.x] = nan_min(mins[threadIdx.x], mins[threadIdx.x + stride]);
            maxs[threadIdx.x] = nan_max(maxs[threadIdx.x], maxs[threadIdx.x + stride]);
        }
        __syncthreads();
    }
    if (threadIdx.x == 0) {
        min_max[2 * blockIdx.x] = mins[0];
        min_max[2 * blockIdx.x + 1] = maxs[0];
    }
}

// values ← (values − min) / (max − min) per image, NaN → 0. One thread per element.
extern "C" __global__ void features_normalize(int total, int per_image, const float* __restrict__ min_max,
                                              float* __restrict__ values) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) {
        int image = i / per_image;
        float lo = min_max[2 * image];
        float range = min_max[2 * image + 1] - lo;
        float x = (values[i] - lo) / range;
        values[i] = x != x ? 0.0f : x;
    }
}

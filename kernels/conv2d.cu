// conv2d: the data-movement kernels of Conv2d as im2col + GEMM (kernels/matmul.cu does the
// arithmetic), which ConvTranspose2d reuses as the adjoint. CPU reference: src/ops/conv2d/.
//
// Why im2col + GEMM rather than an implicit GEMM: one tiled SGEMM (tested on its own) then
// carries every convolution of the network, forward and both backward passes, and
// ConvTranspose2d for free, with only three simple gather kernels beside it; the price is the
// column buffer's extra memory traffic (k² × the input for 3×3 layers). An implicit GEMM
// (the im2col indexing done while loading the GEMM's B tile) removes that traffic and is the
// next step once the GPU check measures it.
//
// The column matrix of image b: col[b][(ci·k + kh)·k + kw][oh·w_out + ow], i.e. K = c_in·k²
// rows of P = h_out·w_out values, so that out_b (c_out × P) = weight (c_out × K) · col_b.
#include "common.cuh"

// col = im2col(inp), zero where the tap falls on padding. One thread per column element.
extern "C" __global__ void conv2d_im2col(int n, int c_in, int h, int w, int k, int stride, int pad, int h_out,
                                         int w_out, const float* __restrict__ inp, float* __restrict__ col) {
    long long plane = (long long)h_out * w_out;
    long long rows = (long long)c_in * k * k;
    long long total = n * rows * plane;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < total) {
        int p = (int)(idx % plane);
        long long r = idx / plane;
        int row = (int)(r % rows);
        int b = (int)(r / rows);
        int oh = p / w_out;
        int ow = p - oh * w_out;
        int kw = row % k;
        int kh = (row / k) % k;
        int ci = row / (k * k);
        int ih = oh * stride + kh - pad;
        int iw = ow * stride + kw - pad;
        bool inside = ih >= 0 && ih < h && iw >= 0 && iw < w;
        col[idx] = inside ? inp[(((long long)b * c_in + ci) * h + ih) * w + iw] : 0.0f;
    }
}

// inp += col2im(col): each input element gathers every column entry that im2col copied from it
// (a gather, not a scatter: no atomics, a fixed order, deterministic). One thread per element.
extern "C" __global__ void conv2d_col2im(int n, int c_in, int h, int w, int k, int stride, int pad, int h_out,
                                         int w_out, const float* __restrict__ col, float* __restrict__ inp) {
    long long total = (long long)n * c_in * h * w;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < total) {
        int iw = (int)(idx % w);
        int ih = (int)((idx / w) % h);
        int ci = (int)((idx / ((long long)w * h)) % c_in);
        int b = (int)(idx / ((long long)w * h * c_in));
        long long plane = (long long)h_out * w_out;
        const float* col_b = col + (long long)b * c_in * k * k * plane;
        float sum = 0.0f;
        for (int kh = 0; kh < k; kh++) {
            int oh_scaled = ih + pad - kh;
            if (oh_scaled < 0 || oh_scaled % stride != 0) continue;
            int oh = oh_scaled / stride;
            if (oh >= h_out) continue;
            for (int kw = 0; kw < k; kw++) {
                int ow_scaled = iw + pad - kw;
                if (ow_scaled < 0 || ow_scaled % stride != 0) continue;
                int ow = ow_scaled / stride;
                if (ow >= w_out) continue;
                sum += col_b[((long long)(ci * k + kh) * k + kw) * plane + (long long)oh * w_out + ow];
            }
        }
        inp[idx] += sum;
    }
}

// out[b][ch][i] = bias[ch] (the GEMM then accumulates onto it). One thread per element.
extern "C" __global__ void conv2d_fill_bias(int total, int c, int plane, const float* __restrict__ bias,
                                            float* __restrict__ out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < total) out[i] = bias[(i / plane) % c];
}

#define CONV_SUM_THREADS 256

// sums[ch] += Σ over (b, i) of values[b][ch][i], in f64 as the CPU, folded in a fixed tree (the
// bias gradient). One block of CONV_SUM_THREADS per channel.
extern "C" __global__ void conv2d_channel_sums(int n, int c, int plane, const float* __restrict__ values,
                                               float* __restrict__ sums) {
    __shared__ double partial[CONV_SUM_THREADS];
    int ch = blockIdx.x;
    double s = 0.0;
    long long count = (long long)n * plane;
    for (long long e = threadIdx.x; e < count; e += CONV_SUM_THREADS) {
        long long b = e / plane;
        long long i = e - b * plane;
        s += values[(b * c + ch) * plane + i];
    }
    partial[threadIdx.x] = s;
    __syncthreads();
    for (int stride = CONV_SUM_THREADS / 2; stride > 0; stride >>= 1) {
        if ((int)threadIdx.x < stride) partial[threadIdx.x] += partial[threadIdx.x + stride];
        __syncthreads();
    }
    if (threadIdx.x == 0) sums[ch] += (float)partial[0];
}

// cqt: CQT magnitudes of a batch of reflect-padded clips (nnAudio CQT1992v2 semantics), each
// bin correlated with its true-length kernel only (sum of lengths taps per frame, not nnAudio's
// n_bins x kernel_width). The CPU reference is src/spectrogram/cqt.rs.
//
// Grid: x = frame tiles of CQT_FRAMES_PER_BLOCK, y = bins, z = clips. Block: a multiple of 32
// threads. The threads stride over the bin's taps, each loading a tap pair once and using it
// for every frame of the tile (the frames' signal reads are coalesced across the block and
// overlap, so they mostly hit cache). Per-frame partial sums meet by warp shuffles and then in
// shared memory; one thread per frame writes sqrt(re^2 + im^2) x sqrt(length).
#include "common.cuh"

#define CQT_FRAMES_PER_BLOCK 8

extern "C" __global__ void cqt_direct(const float* __restrict__ signal, int padded_len,
                                      const float* __restrict__ taps_re, const float* __restrict__ taps_im,
                                      const int* __restrict__ tap_offset, const int* __restrict__ tap_count,
                                      const int* __restrict__ bin_start, const float* __restrict__ librosa_scale,
                                      int n_bins, int n_frames, int hop, float* __restrict__ out) {
    __shared__ float partial[32][2 * CQT_FRAMES_PER_BLOCK];
    int frame0 = blockIdx.x * CQT_FRAMES_PER_BLOCK;
    int bin = blockIdx.y;
    int clip = blockIdx.z;
    int lane = threadIdx.x % 32;
    int warp = threadIdx.x / 32;
    int warps = blockDim.x / 32;

    float acc_re[CQT_FRAMES_PER_BLOCK];
    float acc_im[CQT_FRAMES_PER_BLOCK];
    for (int f = 0; f < CQT_FRAMES_PER_BLOCK; f++) {
        acc_re[f] = 0.0f;
        acc_im[f] = 0.0f;
    }
    // Frames past the clip's end (the last tile) read nothing and write nothing.
    int frames_here = min(CQT_FRAMES_PER_BLOCK, n_frames - frame0);
    const float* re = taps_re + tap_offset[bin];
    const float* im = taps_im + tap_offset[bin];
    int count = tap_count[bin];
    const float* x = signal + (size_t)clip * padded_len + (size_t)frame0 * hop + bin_start[bin];
    for (int n = threadIdx.x; n < count; n += blockDim.x) {
        float kr = re[n];
        float ki = im[n];
        for (int f = 0; f < CQT_FRAMES_PER_BLOCK; f++) {
            if (f < frames_here) {
                float xv = x[(size_t)f * hop + n];
                acc_re[f] += xv * kr;
                acc_im[f] += xv * ki;
            }
        }
    }
    for (int f = 0; f < CQT_FRAMES_PER_BLOCK; f++) {
        float sr = warp_sum(acc_re[f]);
        float si = warp_sum(acc_im[f]);
        if (lane == 0) {
            partial[warp][2 * f] = sr;
            partial[warp][2 * f + 1] = si;
        }
    }
    __syncthreads();
    if ((int)threadIdx.x < frames_here) {
        int f = threadIdx.x;
        float sr = 0.0f;
        float si = 0.0f;
        for (int w = 0; w < warps; w++) {
            sr += partial[w][2 * f];
            si += partial[w][2 * f + 1];
        }
        // nnAudio: real = x * Re(kernel), imaginary = -(x * Im(kernel)), both times sqrt(length).
        float scale = librosa_scale[bin];
        float real = sr * scale;
        float imag = -si * scale;
        out[((size_t)clip * n_bins + bin) * n_frames + frame0 + f] = sqrtf(real * real + imag * imag);
    }
}

// The faster path, mirroring the CPU's default (src/spectrogram/cqt.rs, `CqtMethod::Blocked`):
// the long, low bins are a Hann window = three complex exponentials, so each hop-long block of
// signal is summed once against the three exponentials (cqt_block_sums) and every frame
// combines the sums of its window's whole blocks with fixed complex weights, plus the few taps
// of the window's tail correlated directly (cqt_blocked_frames). ~3x fewer multiply-adds than
// cqt_direct with the paper's parameters.

// sums[clip][blocked_bin][6][max_blocks]: for hop-block b < n_frames + full_blocks - 1 of a
// blocked bin, the six real sums of x[start + b*hop + r] * tables[blocked_bin][c][r] over
// r < hop (c = 2j real part, 2j+1 imaginary part of exponential j). One thread per hop-block,
// so no reduction: the bin's tables (6 * hop floats, dynamic shared memory) are read by a
// whole warp at once (a broadcast), and each thread walks its own block of signal, whose cache
// lines it reuses for 32 consecutive samples. Grid: x = tiles of blockDim.x hop-blocks,
// y = blocked bins, z = clips.
extern "C" __global__ void cqt_block_sums(const float* __restrict__ signal, int padded_len,
                                          const float* __restrict__ tables, const int* __restrict__ block_start,
                                          const int* __restrict__ block_full, int n_frames, int max_blocks,
                                          int hop, float* __restrict__ sums) {
    float* table = dynamic_shared<float>();
    int bb = blockIdx.y;
    int n_blocked = gridDim.y;
    int clip = blockIdx.z;
    const float* bin_tables = tables + (size_t)bb * 6 * hop;
    for (int i = threadIdx.x; i < 6 * hop; i += blockDim.x) table[i] = bin_tables[i];
    __syncthreads();

    int b = blockIdx.x * blockDim.x + threadIdx.x;
    if (b < n_frames + block_full[bb] - 1) {
        const float* x = signal + (size_t)clip * padded_len + block_start[bb] + (size_t)b * hop;
        float acc[6];
        for (int c = 0; c < 6; c++) acc[c] = 0.0f;
        for (int r = 0; r < hop; r++) {
            float xv = x[r];
            for (int c = 0; c < 6; c++) acc[c] += xv * table[c * hop + r];
        }
        float* out = sums + ((size_t)clip * n_blocked + bb) * 6 * max_blocks + b;
        for (int c = 0; c < 6; c++) out[(size_t)c * max_blocks] = acc[c];
    }
}

// Magnitudes of every bin: the taps from tap_from[bin] (a direct bin's whole kernel, a blocked
// bin's tail) correlated as in cqt_direct, plus for blocked bins (blocked_index >= 0) the
// weighted block sums: sum over j < 3, i < full_blocks of weights[j][i] * S_j[t + i] (complex,
// weights as (re, im) pairs at weight_offset[bin] + 2 * (j * full_blocks + i)).
extern "C" __global__ void cqt_blocked_frames(
    const float* __restrict__ signal, int padded_len, const float* __restrict__ taps_re,
    const float* __restrict__ taps_im, const int* __restrict__ tap_offset, const int* __restrict__ tap_count,
    const int* __restrict__ tap_from, const float* __restrict__ librosa_scale, const int* __restrict__ blocked_index,
    const int* __restrict__ full_blocks, const float* __restrict__ weights, const int* __restrict__ weight_offset,
    const float* __restrict__ sums, int n_blocked, int max_blocks, int n_bins, int n_frames, int hop,
    float* __restrict__ out) {
    __shared__ float partial[32][2 * CQT_FRAMES_PER_BLOCK];
    int frame0 = blockIdx.x * CQT_FRAMES_PER_BLOCK;
    int bin = blockIdx.y;
    int clip = blockIdx.z;
    int lane = threadIdx.x % 32;
    int warp = threadIdx.x / 32;
    int warps = blockDim.x / 32;

    float acc_re[CQT_FRAMES_PER_BLOCK];
    float acc_im[CQT_FRAMES_PER_BLOCK];
    for (int f = 0; f < CQT_FRAMES_PER_BLOCK; f++) {
        acc_re[f] = 0.0f;
        acc_im[f] = 0.0f;
    }
    int frames_here = min(CQT_FRAMES_PER_BLOCK, n_frames - frame0);
    const float* re = taps_re + tap_offset[bin];
    const float* im = taps_im + tap_offset[bin];
    int count = tap_count[bin];
    const float* x = signal + (size_t)clip * padded_len + (size_t)frame0 * hop + tap_from[bin];
    for (int n = threadIdx.x; n < count; n += blockDim.x) {
        float kr = re[n];
        float ki = im[n];
        for (int f = 0; f < CQT_FRAMES_PER_BLOCK; f++) {
            if (f < frames_here) {
                float xv = x[(size_t)f * hop + n];
                acc_re[f] += xv * kr;
                acc_im[f] += xv * ki;
            }
        }
    }
    for (int f = 0; f < CQT_FRAMES_PER_BLOCK; f++) {
        float sr = warp_sum(acc_re[f]);
        float si = warp_sum(acc_im[f]);
        if (lane == 0) {
            partial[warp][2 * f] = sr;
            partial[warp][2 * f + 1] = si;
        }
    }
    __syncthreads();
    if ((int)threadIdx.x < frames_here) {
        int f = threadIdx.x;
        int t = frame0 + f;
        float real = 0.0f;
        float imag = 0.0f;
        for (int w = 0; w < warps; w++) {
            real += partial[w][2 * f];
            imag -= partial[w][2 * f + 1];
        }
        int bb = blocked_index[bin];
        if (bb >= 0) {
            int m = full_blocks[bin];
            const float* w_bin = weights + weight_offset[bin];
            const float* s_bin = sums + ((size_t)clip * n_blocked + bb) * 6 * max_blocks;
            for (int j = 0; j < 3; j++) {
                const float* s_re = s_bin + (size_t)(2 * j) * max_blocks + t;
                const float* s_im = s_bin + (size_t)(2 * j + 1) * max_blocks + t;
                for (int i = 0; i < m; i++) {
                    float wr = w_bin[2 * (j * m + i)];
                    float wi = w_bin[2 * (j * m + i) + 1];
                    real += wr * s_re[i] - wi * s_im[i];
                    imag += wr * s_im[i] + wi * s_re[i];
                }
            }
        }
        float scale = librosa_scale[bin];
        real *= scale;
        imag *= scale;
        out[((size_t)clip * n_bins + bin) * n_frames + t] = sqrtf(real * real + imag * imag);
    }
}

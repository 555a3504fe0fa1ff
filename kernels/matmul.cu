// matmul: C = A·B, or C += A·B, in fp32 (storage and accumulation) on strided views, batched
// over grid.z. The GEMM under the convolutions (im2col), the Linear layer and the LSTM's input
// projection. CPU reference: src/ops/matmul.rs (the `gemm` crate).
//
// Element (r, c) of A in batch item z is a[a_offset + z·a_batch_stride + r·a_row_stride +
// c·a_col_stride]; a transpose swaps the strides, so one kernel serves A·B, Aᵀ·B, A·Bᵀ and Aᵀ·Bᵀ.
// C is row-major with rows c_row_stride apart.
//
// Tiling: a block of 256 threads computes a 64×64 tile of C, stepping through k in slices of
// 16. Each step loads a 64×16 slice of A and a 16×64 slice of B into shared memory (4 elements
// per thread each, consecutive threads on whichever index of the operand has stride 1, so the
// global reads coalesce for both layouts), then every thread accumulates a 4×4 register block
// from them: 16 FMAs per 8 shared-memory reads. Thread (tx, ty) owns rows ty + 16·i and columns
// tx + 16·j, so its shared reads are broadcasts (A) or 16 consecutive words (B) and the writes
// of C coalesce across tx. Out-of-range tile elements are loaded as 0 and never written back.
// matmul_split_k_partials + matmul_sum_partials compute sums of products split along k.
#include "common.cuh"

#define MATMUL_TILE_M 64
#define MATMUL_TILE_N 64
#define MATMUL_TILE_K 16
#define MATMUL_THREADS 256
#define MATMUL_BLOCK_M 4
#define MATMUL_BLOCK_N 4

// Shared-memory tile stride: +1 column, so the transposed-layout stores (consecutive threads
// down a column) spread over banks.
#define MATMUL_TILE_STRIDE_M (MATMUL_TILE_M + 1)
#define MATMUL_TILE_STRIDE_N (MATMUL_TILE_N + 1)

// acc += A[row0.., k_begin..k_end) · B[k_begin..k_end), col0..) for this thread's 4×4 block.
// Every thread of the block calls it (it holds the __syncthreads of each k slice).
__device__ void accumulate_tile(int m, int n, int k_begin, int k_end, const float* __restrict__ a_item,
                                long long a_row_stride, long long a_col_stride, const float* __restrict__ b_item,
                                long long b_row_stride, long long b_col_stride, int row0, int col0,
                                float* __restrict__ a_tile, float* __restrict__ b_tile,
                                float acc[MATMUL_BLOCK_M][MATMUL_BLOCK_N]) {
    int tid = threadIdx.x;
    int tx = tid % 16;
    int ty = tid / 16;
    for (int k0 = k_begin; k0 < k_end; k0 += MATMUL_TILE_K) {
        for (int l = 0; l < MATMUL_TILE_M * MATMUL_TILE_K / MATMUL_THREADS; l++) {
            int e = tid + l * MATMUL_THREADS;
            int mm, kk;
            if (a_col_stride == 1) {
                mm = e / MATMUL_TILE_K;
                kk = e % MATMUL_TILE_K;
            } else {
                kk = e / MATMUL_TILE_M;
                mm = e % MATMUL_TILE_M;
            }
            int gm = row0 + mm;
            int gk = k0 + kk;
            a_tile[kk * MATMUL_TILE_STRIDE_M + mm] =
                (gm < m && gk < k_end) ? a_item[gm * a_row_stride + gk * a_col_stride] : 0.0f;
        }
        for (int l = 0; l < MATMUL_TILE_K * MATMUL_TILE_N / MATMUL_THREADS; l++) {
            int e = tid + l * MATMUL_THREADS;
            int kk, nn;
            if (b_col_stride == 1) {
                kk = e / MATMUL_TILE_N;
                nn = e % MATMUL_TILE_N;
            } else {
                nn = e / MATMUL_TILE_K;
                kk = e % MATMUL_TILE_K;
            }
            int gk = k0 + kk;
            int gn = col0 + nn;
            b_tile[kk * MATMUL_TILE_STRIDE_N + nn] =
                (gk < k_end && gn < n) ? b_item[gk * b_row_stride + gn * b_col_stride] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < MATMUL_TILE_K; kk++) {
            float av[MATMUL_BLOCK_M];
            float bv[MATMUL_BLOCK_N];
            for (int i = 0; i < MATMUL_BLOCK_M; i++) av[i] = a_tile[kk * MATMUL_TILE_STRIDE_M + ty + 16 * i];
            for (int j = 0; j < MATMUL_BLOCK_N; j++) bv[j] = b_tile[kk * MATMUL_TILE_STRIDE_N + tx + 16 * j];
            for (int i = 0; i < MATMUL_BLOCK_M; i++)
                for (int j = 0; j < MATMUL_BLOCK_N; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
}

extern "C" __global__ void matmul_tiled(int m, int n, int k, const float* __restrict__ a, long long a_offset,
                                        long long a_row_stride, long long a_col_stride, long long a_batch_stride,
                                        const float* __restrict__ b, long long b_offset, long long b_row_stride,
                                        long long b_col_stride, long long b_batch_stride, float* __restrict__ c,
                                        long long c_offset, long long c_row_stride, long long c_batch_stride,
                                        int accumulate) {
    __shared__ float a_tile[MATMUL_TILE_K * MATMUL_TILE_STRIDE_M];
    __shared__ float b_tile[MATMUL_TILE_K * MATMUL_TILE_STRIDE_N];
    int tx = threadIdx.x % 16;
    int ty = threadIdx.x / 16;
    int row0 = blockIdx.y * MATMUL_TILE_M;
    int col0 = blockIdx.x * MATMUL_TILE_N;
    const float* a_item = a + a_offset + (long long)blockIdx.z * a_batch_stride;
    const float* b_item = b + b_offset + (long long)blockIdx.z * b_batch_stride;
    float* c_item = c + c_offset + (long long)blockIdx.z * c_batch_stride;

    float acc[MATMUL_BLOCK_M][MATMUL_BLOCK_N];
    for (int i = 0; i < MATMUL_BLOCK_M; i++)
        for (int j = 0; j < MATMUL_BLOCK_N; j++) acc[i][j] = 0.0f;
    accumulate_tile(m, n, 0, k, a_item, a_row_stride, a_col_stride, b_item, b_row_stride, b_col_stride, row0, col0,
                    a_tile, b_tile, acc);

    for (int i = 0; i < MATMUL_BLOCK_M; i++) {
        int gm = row0 + ty + 16 * i;
        for (int j = 0; j < MATMUL_BLOCK_N; j++) {
            int gn = col0 + tx + 16 * j;
            if (gm < m && gn < n) {
                float* out = c_item + gm * c_row_stride + gn;
                // Never read C unless accumulating: a fresh output may hold anything (NaN on emu).
                *out = accumulate ? *out + acc[i][j] : acc[i][j];
            }
        }
    }
}

// Sums of products, Σ_z A_z·B_z, split for parallelism (the weight gradients: a few hundred
// outputs from a k of 10^5 frames or pixels would leave all but a handful of SMs idle).
// Stage 1: partial product p = item·splits + s over the k slice s of item `item`, written to
// partials[p] (m × n, dense). Grid (n tiles, m tiles, items·splits).
extern "C" __global__ void matmul_split_k_partials(int m, int n, int k, int splits, int k_chunk,
                                                   const float* __restrict__ a, long long a_offset,
                                                   long long a_row_stride, long long a_col_stride,
                                                   long long a_item_stride, const float* __restrict__ b,
                                                   long long b_offset, long long b_row_stride,
                                                   long long b_col_stride, long long b_item_stride,
                                                   float* __restrict__ partials) {
    __shared__ float a_tile[MATMUL_TILE_K * MATMUL_TILE_STRIDE_M];
    __shared__ float b_tile[MATMUL_TILE_K * MATMUL_TILE_STRIDE_N];
    int tx = threadIdx.x % 16;
    int ty = threadIdx.x / 16;
    int row0 = blockIdx.y * MATMUL_TILE_M;
    int col0 = blockIdx.x * MATMUL_TILE_N;
    int part = blockIdx.z;
    int item = part / splits;
    int split = part - item * splits;
    int k_begin = min(split * k_chunk, k);
    int k_end = min(k_begin + k_chunk, k);
    const float* a_item = a + a_offset + (long long)item * a_item_stride;
    const float* b_item = b + b_offset + (long long)item * b_item_stride;

    float acc[MATMUL_BLOCK_M][MATMUL_BLOCK_N];
    for (int i = 0; i < MATMUL_BLOCK_M; i++)
        for (int j = 0; j < MATMUL_BLOCK_N; j++) acc[i][j] = 0.0f;
    accumulate_tile(m, n, k_begin, k_end, a_item, a_row_stride, a_col_stride, b_item, b_row_stride, b_col_stride,
                    row0, col0, a_tile, b_tile, acc);

    float* out = partials + (long long)part * m * n;
    for (int i = 0; i < MATMUL_BLOCK_M; i++) {
        int gm = row0 + ty + 16 * i;
        for (int j = 0; j < MATMUL_BLOCK_N; j++) {
            int gn = col0 + tx + 16 * j;
            if (gm < m && gn < n) out[(long long)gm * n + gn] = acc[i][j];
        }
    }
}

// Stage 2: c = Σ_p partials[p] (or c += when accumulating), the parts added in order: the
// same bits on every run. One thread per element of C.
extern "C" __global__ void matmul_sum_partials(int m, int n, int parts, const float* __restrict__ partials,
                                               float* __restrict__ c, long long c_offset, long long c_row_stride,
                                               int accumulate) {
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long mn = (long long)m * n;
    if (idx < mn) {
        float sum = 0.0f;
        for (int p = 0; p < parts; p++) sum += partials[p * mn + idx];
        int r = (int)(idx / n);
        int col = (int)(idx - (long long)r * n);
        float* out = c + c_offset + r * c_row_stride + col;
        *out = accumulate ? *out + sum : sum;
    }
}

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
#include "common.cuh"

#define MATMUL_TILE_M 64
#define MATMUL_TILE_N 64
#define MATMUL_TILE_K 16
#define MATMUL_THREADS 256
#define MATMUL_BLOCK_M 4
#define MATMUL_BLOCK_N 4

extern "C" __global__ void matmul_tiled(int m, int n, int k, const float* __restrict__ a, long long a_offset,
                                        long long a_row_stride, long long a_col_stride, long long a_batch_stride,
                                        const float* __restrict__ b, long long b_offset, long long b_row_stride,
                                        long long b_col_stride, long long b_batch_stride, float* __restrict__ c,
                                        long long c_offset, long long c_row_stride, long long c_batch_stride,
                                        int accumulate) {
    // +1 column: the transposed-layout stores (consecutive threads down a column) spread over banks.
    __shared__ float a_tile[MATMUL_TILE_K][MATMUL_TILE_M + 1];
    __shared__ float b_tile[MATMUL_TILE_K][MATMUL_TILE_N + 1];
    int tid = threadIdx.x;
    int tx = tid % 16;
    int ty = tid / 16;
    int row0 = blockIdx.y * MATMUL_TILE_M;
    int col0 = blockIdx.x * MATMUL_TILE_N;
    const float* a_item = a + a_offset + (long long)blockIdx.z * a_batch_stride;
    const float* b_item = b + b_offset + (long long)blockIdx.z * b_batch_stride;
    float* c_item = c + c_offset + (long long)blockIdx.z * c_batch_stride;

    float acc[MATMUL_BLOCK_M][MATMUL_BLOCK_N];
    for (int i = 0; i < MATMUL_BLOCK_M; i++)
        for (int j = 0; j < MATMUL_BLOCK_N; j++) acc[i][j] = 0.0f;

    for (int k0 = 0; k0 < k; k0 += MATMUL_TILE_K) {
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
            a_tile[kk][mm] = (gm < m && gk < k) ? a_item[gm * a_row_stride + gk * a_col_stride] : 0.0f;
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
            b_tile[kk][nn] = (gk < k && gn < n) ? b_item[gk * b_row_stride + gn * b_col_stride] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < MATMUL_TILE_K; kk++) {
            float av[MATMUL_BLOCK_M];
            float bv[MATMUL_BLOCK_N];
            for (int i = 0; i < MATMUL_BLOCK_M; i++) av[i] = a_tile[kk][ty + 16 * i];
            for (int j = 0; j < MATMUL_BLOCK_N; j++) bv[j] = b_tile[kk][tx + 16 * j];
            for (int i = 0; i < MATMUL_BLOCK_M; i++)
                for (int j = 0; j < MATMUL_BLOCK_N; j++) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }

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

// reduce: sums[r] = sum of x[r, 0..cols), x row-major [rows, cols]. One block per row; blockDim.x a
// multiple of 32, at most 1024. Each thread sums a strided slice, each warp folds its lanes with
// shuffles, warp totals meet in shared memory, and the first warp folds those.
#include "common.cuh"

extern "C" __global__ void reduce_sum_rows(const float* __restrict__ x, float* __restrict__ sums, int rows,
                                           int cols) {
    __shared__ float warp_totals[32];
    int row = blockIdx.x;
    int lane = threadIdx.x % 32;
    int warp = threadIdx.x / 32;
    int warps = blockDim.x / 32;

    float partial = 0.0f;
    if (row < rows) {
        const float* x_row = x + (size_t)row * cols;
        for (int c = threadIdx.x; c < cols; c += blockDim.x) partial += x_row[c];
    }
    partial = warp_sum(partial);
    if (lane == 0) warp_totals[warp] = partial;
    __syncthreads();

    if (warp == 0) {
        float total = lane < warps ? warp_totals[lane] : 0.0f;
        total = warp_sum(total);
        if (lane == 0 && row < rows) sums[row] = total;
    }
}

// Kernels that expose CUDA's execution model, for tests/emu_execution_model.rs (emu only).
#include "common.cuh"

// Every thread writes its indices and dimensions at its global linear position:
// [threadIdx.xyz, blockIdx.xyz, blockDim.xyz, gridDim.xyz], 12 values per thread.
extern "C" __global__ void record_indices(unsigned* out) {
    unsigned block = blockIdx.x + gridDim.x * (blockIdx.y + gridDim.y * blockIdx.z);
    unsigned thread = threadIdx.x + blockDim.x * (threadIdx.y + blockDim.y * threadIdx.z);
    unsigned* slot = out + 12 * (block * blockDim.x * blockDim.y * blockDim.z + thread);
    unsigned values[12] = {threadIdx.x, threadIdx.y, threadIdx.z, blockIdx.x, blockIdx.y, blockIdx.z,
                           blockDim.x,  blockDim.y,  blockDim.z,  gridDim.x,  gridDim.y,  gridDim.z};
    for (int i = 0; i < 12; ++i) slot[i] = values[i];
}

// Each lane's value is its lane index times 10; out gets 4 results per lane:
// shfl(src 3, width 8), shfl_up(2, width 8), shfl_down(5, width 16), shfl_xor(6).
extern "C" __global__ void shuffle_patterns(int* out) {
    int lane = threadIdx.x % 32;
    int v = lane * 10;
    int* slot = out + 4 * threadIdx.x;
    slot[0] = __shfl_sync(MTOSI_FULL_MASK, v, 3, 8);
    slot[1] = __shfl_up_sync(MTOSI_FULL_MASK, v, 2, 8);
    slot[2] = __shfl_down_sync(MTOSI_FULL_MASK, v, 5, 16);
    slot[3] = __shfl_xor_sync(MTOSI_FULL_MASK, v, 6);
}

// Lanes 0..15 shuffle among themselves with a half mask, while lanes 16..31 take another path.
extern "C" __global__ void half_warp_shuffle(float* out) {
    int lane = threadIdx.x % 32;
    float v = (float)lane;
    if (lane < 16) {
        v += __shfl_xor_sync(0x0000ffffu, v, 1);
    } else {
        v = -v;
    }
    out[threadIdx.x] = v;
}

// Votes: out[3 * warp + 0..3] = ballot(lane % 3 == 0), all(lane < 32), any(lane == 31).
extern "C" __global__ void votes(unsigned* out) {
    int lane = threadIdx.x % 32;
    unsigned ballot = __ballot_sync(MTOSI_FULL_MASK, lane % 3 == 0);
    int all = __all_sync(MTOSI_FULL_MASK, lane < 32);
    int any = __any_sync(MTOSI_FULL_MASK, lane == 31);
    __syncwarp();
    if (lane == 0) {
        out[3 * (threadIdx.x / 32) + 0] = ballot;
        out[3 * (threadIdx.x / 32) + 1] = (unsigned)all;
        out[3 * (threadIdx.x / 32) + 2] = (unsigned)any;
    }
}

// Integer atomics from every thread of every block: [sum, max, min, count of CAS wins, exchanges].
extern "C" __global__ void integer_atomics(int* out) {
    int id = blockIdx.x * blockDim.x + threadIdx.x;
    atomicAdd(&out[0], id);
    atomicMax(&out[1], id);
    atomicMin(&out[2], id);
    if (atomicCAS(&out[3], 0, id + 1) == 0) atomicAdd(&out[4], 1);
}

// A kernel assert: fails for thread 5 of block 1.
extern "C" __global__ void failing_assert(float* out) {
    assert(!(blockIdx.x == 1 && threadIdx.x == 5));
    out[blockIdx.x * blockDim.x + threadIdx.x] = 0.0f;
}

// The common `if (i >= n) return;` before a barrier: undefined on a GPU, reported by emu.
extern "C" __global__ void early_return_before_barrier(int n, float* out) {
    __shared__ float tile[256];
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    tile[threadIdx.x] = (float)i;
    __syncthreads();
    out[i] = tile[threadIdx.x];
}

// Two different barriers in an if/else.
extern "C" __global__ void divergent_barriers(float* out) {
    if (threadIdx.x % 2 == 0) {
        __syncthreads();
    } else {
        __syncthreads();
    }
    out[threadIdx.x] = 1.0f;
}

// Writes one element before the start of `out`.
extern "C" __global__ void write_before_start(float* out) {
    if (threadIdx.x == 0) out[-1] = 1.0f;
}

// common.cuh: the one header every kernels/*.cu includes (`#include "common.cuh"`). NVRTC gets it
// as a named header, g++ (the `emu` device) finds it beside the kernel. It must include nothing:
// NVRTC has no system headers.
#pragma once

#ifdef __CUDACC__
// The one dynamic shared memory array; the emu runtime defines the same name (cuemu.h).
extern __shared__ __align__(16) unsigned char mtosi_dynamic_shared[];
#endif

// Dynamic shared memory (the launch's `shared_mem_bytes`), typed:
// `float* tile = dynamic_shared<float>();`. Never declare `extern __shared__` yourself.
template <typename T>
__device__ __forceinline__ T* dynamic_shared() {
    return reinterpret_cast<T*>(mtosi_dynamic_shared);
}

#define MTOSI_FULL_MASK 0xffffffffu
// NVRTC has no <cfloat> or <cmath>: FLT_MAX and INFINITY spelled out.
#define MTOSI_FLT_MAX 3.402823466e+38f
__device__ __forceinline__ float mtosi_infinity() { return __int_as_float(0x7f800000); }

// Sum over the 32 lanes of a full warp; lane 0 gets the total.
__device__ __forceinline__ float warp_sum(float value) {
    for (int offset = 16; offset > 0; offset >>= 1) value += __shfl_down_sync(MTOSI_FULL_MASK, value, offset);
    return value;
}

// ---- grid-wide barrier -------------------------------------------------------------------------
// `grid_barrier_sync(barrier)`: no thread of the grid passes until every thread of every block
// has arrived, and every global write before it is visible to every block after it. Only in a
// cooperative launch (`KernelDevice::launch_cooperative`: cuLaunchCooperativeKernel, which
// refuses a grid larger than can be resident at once); in an ordinary launch the blocks that
// have not started wait for SMs that the spinning blocks hold, and the barrier hangs (emu
// reports it instead). Every thread must call it (it contains __syncthreads).
//
// `barrier` is two unsigned words of global memory, zero before the kernel's first launch:
// [0] counts the blocks that have arrived, [1] the generation. One thread per block arrives with
// an atomic; the last one resets the count and advances the generation, the others spin until
// it moves. The count is back at zero after every barrier, so the words need no reset between
// launches. The fences order this block's writes before its arrival and the others' writes
// before its departure.
#ifdef __CUDACC__
__device__ __forceinline__ void grid_barrier_sync_at(unsigned* barrier, const char*, int) {
    __syncthreads();
    if (threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0) {
        unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
        volatile unsigned* generation = barrier + 1;
        // Read before arriving: the generation cannot move until this block has arrived.
        unsigned seen = *generation;
        __threadfence();
        if (atomicAdd(barrier, 1u) == blocks - 1) {
            atomicExch(barrier, 0u);
            __threadfence();
            atomicAdd(barrier + 1, 1u);
        } else {
            while (*generation == seen) __nanosleep(32);
        }
        __threadfence();
    }
    __syncthreads();
}
#else
// emu: the same arrival on the counter (so its bookkeeping runs in every test), but the wait is
// the runtime's, which switches fibers and OS threads instead of spinning, and fails a launch
// that is not cooperative or a block that never arrives.
__device__ inline void grid_barrier_sync_at(unsigned* barrier, const char* file, int line) {
    __syncthreads();
    bool leader = threadIdx.x == 0 && threadIdx.y == 0 && threadIdx.z == 0;
    unsigned seen = 0;
    if (leader) {
        unsigned blocks = gridDim.x * gridDim.y * gridDim.z;
        seen = __atomic_load_n(barrier + 1, __ATOMIC_SEQ_CST);
        if (atomicAdd(barrier, 1u) == blocks - 1) {
            atomicExch(barrier, 0u);
            atomicAdd(barrier + 1, 1u);
        }
    }
    mtosi_emu_grid_sync(file, line);
    // Where the GPU's spin would end: the last block to arrive has moved the generation.
    if (leader) assert(__atomic_load_n(barrier + 1, __ATOMIC_SEQ_CST) != seen);
    __syncthreads();
}
#endif
#define grid_barrier_sync(barrier) grid_barrier_sync_at((barrier), __FILE__, __LINE__)

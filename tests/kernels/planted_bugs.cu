// Deliberately broken kernels, compiled for emu only (never NVRTC-embedded): tests/emu_catches_bugs.rs
// shows that emu reports each bug.
#include "common.cuh"

// Writes one element past the end of `out` (the bound should be i < n).
extern "C" __global__ void bug_out_of_bounds_write(int n, float* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i <= n) out[i] = 1.0f;
}

// __syncthreads() inside a branch that only the first half of the block takes.
extern "C" __global__ void bug_barrier_in_branch(float* out) {
    __shared__ float shared[1024];
    shared[threadIdx.x] = (float)threadIdx.x;
    if (threadIdx.x < blockDim.x / 2) {
        __syncthreads();
        out[threadIdx.x] = shared[threadIdx.x + 1];
    }
}

// Each thread reads its right neighbour's shared value without a barrier between the write and
// the read: out[t] should be t + 1 (for t < blockDim.x - 1).
extern "C" __global__ void bug_missing_barrier(float* out) {
    __shared__ float shared[1024];
    shared[threadIdx.x] = (float)threadIdx.x;
    if (threadIdx.x + 1 < blockDim.x) out[threadIdx.x] = shared[threadIdx.x + 1];
}

// The same with the barrier: the control that the two orders agree on a correct kernel.
extern "C" __global__ void fixed_missing_barrier(float* out) {
    __shared__ float shared[1024];
    shared[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    if (threadIdx.x + 1 < blockDim.x) out[threadIdx.x] = shared[threadIdx.x + 1];
}

// A full-mask shuffle in a branch that half of the warp skips (those lanes go to the barrier).
extern "C" __global__ void bug_shuffle_in_branch(float* out) {
    float v = (float)threadIdx.x;
    if (threadIdx.x < 16) v += __shfl_down_sync(0xffffffffu, v, 1);
    __syncthreads();
    out[threadIdx.x] = v;
}

// Reads static shared memory before any thread of the block wrote it: every read should see the
// uninitialised (on emu: NaN) value, in every block, not what the previous block left there.
extern "C" __global__ void bug_shared_read_before_write(float* out) {
    __shared__ float shared[1024];
    out[blockIdx.x * blockDim.x + threadIdx.x] = shared[threadIdx.x];
    shared[threadIdx.x] = 1.0f;
}

// The same with a file-scope static __shared__ array.
__shared__ float file_scope_shared[1024];
extern "C" __global__ void bug_file_shared_read_before_write(float* out) {
    out[blockIdx.x * blockDim.x + threadIdx.x] = file_scope_shared[threadIdx.x];
    file_scope_shared[threadIdx.x] = 1.0f;
}

// Reads one element past the end of `in` (the bound should be i + 1 < n).
extern "C" __global__ void bug_out_of_bounds_read(int n, const float* in, float* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i + 1];
}

// Reads one element before the start of `in` (the neighbour of element 0 does not exist).
extern "C" __global__ void bug_read_before_start(int n, const float* in, float* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = in[i - 1];
}

// An `unsigned char` scalar and buffer: out[i] = in[i] + add.
extern "C" __global__ void bytes_add(unsigned char add, int n, const unsigned char* in, unsigned char* out) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = (unsigned char)(in[i] + add);
}

// Dynamic shared memory, warp collectives and atomics working together: out[0] = sum of
// 0..blockDim.x-1 over all blocks, out[1] = popcount of the ballot of odd lanes per warp;
// homes[block] = the address of a static __shared__ variable, which on emu tells the OS threads
// apart (each has its own copy).
extern "C" __global__ void collectives_control(float* out, unsigned* ballots, unsigned long long* homes) {
    __shared__ int marker;
    if (threadIdx.x == 0) homes[blockIdx.x] = (unsigned long long)(size_t)&marker;
    float* scratch = dynamic_shared<float>();
    scratch[threadIdx.x] = (float)threadIdx.x;
    __syncthreads();
    float v = scratch[(threadIdx.x + 1) % blockDim.x];
    v = warp_sum(v);
    unsigned odd = __ballot_sync(MTOSI_FULL_MASK, threadIdx.x % 2);
    if (threadIdx.x % 32 == 0) {
        atomicAdd(&out[0], v);
        atomicAdd(&ballots[0], (unsigned)__popc(odd));
    }
    int below = __syncthreads_count(threadIdx.x < 10);
    if (threadIdx.x == 0) atomicAdd(&ballots[1], (unsigned)below);
}

// Three rounds of: each block publishes a value, grid barrier, each block reads its right
// neighbour block's: out[r·blocks + b] = (b + 1) % blocks + r. Correct in a cooperative launch.
extern "C" __global__ void fixed_grid_barrier_neighbour(float* slots, float* out, unsigned* barrier) {
    int blocks = gridDim.x;
    int b = blockIdx.x;
    for (int round = 0; round < 3; round++) {
        if (threadIdx.x == 0) slots[round * blocks + b] = (float)(b + round);
        grid_barrier_sync(barrier);
        if (threadIdx.x == 0) out[round * blocks + b] = slots[round * blocks + (b + 1) % blocks];
    }
}

// Block 0 leaves before the grid barrier that every other block waits at: a hang on a GPU.
extern "C" __global__ void bug_grid_barrier_skipped_by_a_block(unsigned* barrier) {
    if (blockIdx.x == 0) return;
    grid_barrier_sync(barrier);
}

// The grid-synchronised LSTM recurrences of kernels/lstm.cu with the grid barrier replaced by a
// __syncthreads: blocks read other blocks' h(t-1) (d_pre(t)) before it is written.
#include "lstm_grid.cuh"
extern "C" __global__ void bug_lstm_forward_grid_without_barrier(int batch, int frames, int hid, int units, int chunk,
                                                                 const float* __restrict__ w_hh_fwd,
                                                                 const float* __restrict__ w_hh_rev, float* gates,
                                                                 float* cells, float* out, unsigned* barrier) {
    lstm_grid_forward_steps<false>(batch, frames, hid, units, chunk, w_hh_fwd, w_hh_rev, gates, cells, out, barrier);
}
extern "C" __global__ void bug_lstm_backward_grid_without_barrier(int batch, int frames, int hid, int units, int chunk,
                                                                  const float* __restrict__ w_hh_fwd,
                                                                  const float* __restrict__ w_hh_rev,
                                                                  const float* __restrict__ gates,
                                                                  const float* __restrict__ cells,
                                                                  const float* __restrict__ d_out,
                                                                  float* d_gates_fwd, float* d_gates_rev,
                                                                  unsigned* barrier) {
    lstm_grid_backward_steps<false>(batch, frames, hid, units, chunk, w_hh_fwd, w_hh_rev, gates, cells, d_out,
                                    d_gates_fwd, d_gates_rev, barrier);
}

// lstm: the recurrences of the bidirectional LSTM (PyTorch gate order i, f, g, o), forward and
// backward through time, each ONE launch for every time step of both directions. CPU
// reference: src/ops/lstm.rs. The input projections (x·W_ihᵀ for every frame at once) and all
// weight gradients are GEMMs (kernels/matmul.cu); only h·W_hhᵀ is sequential.
//
// Two designs, both persistent (no launch per step, ~5-10 µs each, which would cost more than
// the step itself):
//
// 1. Per sequence (`lstm_recurrence_forward`, `lstm_recurrence_backward`): one block per
//    (sequence, direction), grid (batch, 2), looping over the frames with __syncthreads between
//    the two phases of a step. W_hh (4·176·176 floats = 496 KB per direction, more than one SM
//    holds) is re-read from L2 every step: ~496 KB per step per block at one SM's L2 read rate
//    (~100-150 GB/s) is ~3-5 µs per step on an H100/H200, ~2-3 ms per 640-frame pass. Kept as
//    the readable reference and the fallback where the grid version does not fit (launchers
//    choose explicitly, src/ops/lstm.rs `LstmRecurrence`).
//
// 2. Grid-synchronised (`lstm_recurrence_forward_grid`, `lstm_recurrence_backward_grid`; bodies
//    in lstm_grid.cuh): each direction's hidden units are split over K blocks (K = 16 for hid
//    176: 11 units, 44 gate rows, grid (16, 2) = 32 blocks, one per SM), each block keeps its
//    W_hh slice (44 rows × 176 = 31 KB; the backward its 11 columns × 704 rows, the same size)
//    in shared memory for the whole pass, computes its gate rows and the h/c update of its
//    units for every sequence, publishes h(t) (backward: d_pre(t)) through global memory and
//    meets the other blocks at one grid barrier per step (`grid_barrier_sync`, common.cuh; a
//    cooperative launch). Expected per step on an H100/H200 at batch B (hid 176):
//    - matrix-vector work: 44·176·B = 7.7k·B FMAs per SM, with two shared-memory loads each
//      (W_hh slice, h broadcast): 31 KB·B + 0.7 KB·B of shared reads per SM per step, which at
//      ~128 B/clk per SM is ~250·B cycles, ~0.15·B µs at ~1.7 GHz;
//    - h_prev (B·176 floats = 0.7 KB·B) from L2 into each block: ~1 µs of L2 latency plus a few
//      hundred ns per KB;
//    - the barrier: one atomic per block on one L2 line (32 serialised atomics) plus the
//      generation's round trip back to every SM: ~1-2 µs;
//    i.e. ~2-3 µs per step at B = 4-8, bound by latency (L2 round trips and the barrier), not by
//    bandwidth: W_hh no longer moves, and 1.5-2x faster than design 1 rather than 5x. The next
//    step down is sm_90 thread-block clusters (a cluster of 8-16 blocks per direction exchanging
//    h through distributed shared memory with a hardware cluster barrier, ~0.5 µs per step).
#include "common.cuh"
#include "lstm_grid.cuh"

__device__ __forceinline__ float lstm_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

// gates[d][r][col] = b_ih_d[col] + b_hh_d[col] for both directions d, rows r < rows: the start
// of the input projection GEMM, which then accumulates x·W_ihᵀ.
extern "C" __global__ void lstm_fill_gate_bias(int rows, int four_hid, const float* __restrict__ b_ih_fwd,
                                               const float* __restrict__ b_hh_fwd,
                                               const float* __restrict__ b_ih_rev,
                                               const float* __restrict__ b_hh_rev, float* __restrict__ gates) {
    long long per_direction = (long long)rows * four_hid;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < 2 * per_direction) {
        int col = (int)(idx % four_hid);
        bool reverse = idx >= per_direction;
        gates[idx] = reverse ? b_ih_rev[col] + b_hh_rev[col] : b_ih_fwd[col] + b_hh_fwd[col];
    }
}

// w_hh_t[d][k][row] = w_hh_d[row][k]: the recurrent weights transposed, so that in the forward
// recurrence consecutive threads (consecutive gate rows) read consecutive addresses.
extern "C" __global__ void lstm_transpose_w_hh(int hid, const float* __restrict__ w_hh_fwd,
                                               const float* __restrict__ w_hh_rev, float* __restrict__ w_hh_t) {
    int per_direction = 4 * hid * hid;
    int idx = blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < 2 * per_direction) {
        int d = idx / per_direction;
        int within = idx - d * per_direction;
        int k = within / (4 * hid);
        int row = within - k * 4 * hid;
        const float* w = d == 0 ? w_hh_fwd : w_hh_rev;
        w_hh_t[idx] = w[row * hid + k];
    }
}

// Forward recurrence. On entry gates (2, batch, frames, 4·hid) hold the input projections plus
// both biases; on exit the gate activations. Writes cells (2, batch, frames, hid) and the hidden
// states into out (batch, frames, 2·hid): direction d in columns [d·hid, (d+1)·hid).
// Grid (batch, 2); dynamic shared memory 6·hid floats.
extern "C" __global__ void lstm_recurrence_forward(int batch, int frames, int hid, const float* __restrict__ w_hh_t,
                                                   float* __restrict__ gates, float* __restrict__ cells,
                                                   float* __restrict__ out) {
    float* h = dynamic_shared<float>();
    float* c = h + hid;
    float* pre = c + hid;
    int b = blockIdx.x;
    int d = blockIdx.y;
    int four_hid = 4 * hid;
    const float* w_t = w_hh_t + (long long)d * four_hid * hid;
    for (int j = threadIdx.x; j < hid; j += blockDim.x) {
        h[j] = 0.0f;
        c[j] = 0.0f;
    }
    __syncthreads();
    for (int step = 0; step < frames; step++) {
        int t = d == 0 ? step : frames - 1 - step;
        long long slot = ((long long)d * batch + b) * frames + t;
        float* gate = gates + slot * four_hid;
        // Phase 1: pre = projection + W_hh·h_prev, one thread per gate row.
        for (int row = threadIdx.x; row < four_hid; row += blockDim.x) {
            float acc = 0.0f;
            for (int k = 0; k < hid; k++) acc += w_t[k * four_hid + row] * h[k];
            pre[row] = gate[row] + acc;
        }
        __syncthreads();
        // Phase 2: the gate math and the new state, one thread per hidden unit.
        for (int j = threadIdx.x; j < hid; j += blockDim.x) {
            float i_gate = lstm_sigmoid(pre[j]);
            float f_gate = lstm_sigmoid(pre[hid + j]);
            float g_gate = tanhf(pre[2 * hid + j]);
            float o_gate = lstm_sigmoid(pre[3 * hid + j]);
            float c_new = f_gate * c[j] + i_gate * g_gate;
            float h_new = o_gate * tanhf(c_new);
            gate[j] = i_gate;
            gate[hid + j] = f_gate;
            gate[2 * hid + j] = g_gate;
            gate[3 * hid + j] = o_gate;
            cells[slot * hid + j] = c_new;
            out[((long long)b * frames + t) * 2 * hid + d * hid + j] = h_new;
            c[j] = c_new;
            h[j] = h_new;
        }
        __syncthreads();
    }
}

// Backward recurrence (backpropagation through time, processing order reversed): writes the
// pre-activation gate gradients of direction d into d_gates_d (batch, frames, 4·hid) from
// d_out (batch, frames, 2·hid) and what the forward kept (gates, cells). Grid (batch, 2);
// dynamic shared memory 6·hid floats.
extern "C" __global__ void lstm_recurrence_backward(int batch, int frames, int hid, const float* __restrict__ w_hh_fwd,
                                                    const float* __restrict__ w_hh_rev,
                                                    const float* __restrict__ gates, const float* __restrict__ cells,
                                                    const float* __restrict__ d_out, float* __restrict__ d_gates_fwd,
                                                    float* __restrict__ d_gates_rev) {
    float* d_h_next = dynamic_shared<float>();
    float* d_c_next = d_h_next + hid;
    float* d_pre = d_c_next + hid;
    int b = blockIdx.x;
    int d = blockIdx.y;
    int four_hid = 4 * hid;
    const float* w = d == 0 ? w_hh_fwd : w_hh_rev;
    float* d_gates = d == 0 ? d_gates_fwd : d_gates_rev;
    for (int j = threadIdx.x; j < hid; j += blockDim.x) {
        d_h_next[j] = 0.0f;
        d_c_next[j] = 0.0f;
    }
    __syncthreads();
    for (int step = frames - 1; step >= 0; step--) {
        int t = d == 0 ? step : frames - 1 - step;
        int t_prev = d == 0 ? step - 1 : frames - step;
        long long slot = ((long long)d * batch + b) * frames + t;
        const float* gate = gates + slot * four_hid;
        const float* d_h_out = d_out + ((long long)b * frames + t) * 2 * hid + d * hid;
        float* d_pre_out = d_gates + ((long long)b * frames + t) * four_hid;
        // Phase 1: the gate gradients, one thread per hidden unit.
        for (int j = threadIdx.x; j < hid; j += blockDim.x) {
            float i_gate = gate[j];
            float f_gate = gate[hid + j];
            float g_gate = gate[2 * hid + j];
            float o_gate = gate[3 * hid + j];
            float c_before = step > 0 ? cells[(((long long)d * batch + b) * frames + t_prev) * hid + j] : 0.0f;
            float tanh_c = tanhf(cells[slot * hid + j]);
            float d_h = d_h_out[j] + d_h_next[j];
            float d_c = d_c_next[j] + d_h * o_gate * (1.0f - tanh_c * tanh_c);
            float di = d_c * g_gate * i_gate * (1.0f - i_gate);
            float df = d_c * c_before * f_gate * (1.0f - f_gate);
            float dg = d_c * i_gate * (1.0f - g_gate * g_gate);
            float d_o = d_h * tanh_c * o_gate * (1.0f - o_gate);
            d_pre[j] = di;
            d_pre[hid + j] = df;
            d_pre[2 * hid + j] = dg;
            d_pre[3 * hid + j] = d_o;
            d_pre_out[j] = di;
            d_pre_out[hid + j] = df;
            d_pre_out[2 * hid + j] = dg;
            d_pre_out[3 * hid + j] = d_o;
            d_c_next[j] = d_c * f_gate;
        }
        __syncthreads();
        // Phase 2: d_h for the previous step = d_pre·W_hh, one thread per hidden unit (reads
        // of W_hh coalesce across threads).
        for (int k = threadIdx.x; k < hid; k += blockDim.x) {
            float acc = 0.0f;
            for (int row = 0; row < four_hid; row++) acc += d_pre[row] * w[row * hid + k];
            d_h_next[k] = acc;
        }
        __syncthreads();
    }
}

// Forward recurrence, grid-synchronised (design 2; body in lstm_grid.cuh): the same inputs and
// outputs as lstm_recurrence_forward, but W_hh untransposed (the rows are loaded once) and a
// cooperative launch of grid (ceil(hid / units), 2). Dynamic shared memory
// (4·units·hid + batch·units + chunk·(hid + 4·units)) floats; `barrier` two zeroed words.
extern "C" __global__ void lstm_recurrence_forward_grid(int batch, int frames, int hid, int units, int chunk,
                                                        const float* __restrict__ w_hh_fwd,
                                                        const float* __restrict__ w_hh_rev, float* gates,
                                                        float* cells, float* out, unsigned* barrier) {
    lstm_grid_forward_steps<true>(batch, frames, hid, units, chunk, w_hh_fwd, w_hh_rev, gates, cells, out, barrier);
}

// Backward recurrence, grid-synchronised: as lstm_recurrence_backward, cooperative launch of
// grid (ceil(hid / units), 2). Dynamic shared memory (4·hid·units + 2·batch·units + chunk·4·hid)
// floats; `barrier` two zeroed words.
extern "C" __global__ void lstm_recurrence_backward_grid(int batch, int frames, int hid, int units, int chunk,
                                                         const float* __restrict__ w_hh_fwd,
                                                         const float* __restrict__ w_hh_rev,
                                                         const float* __restrict__ gates,
                                                         const float* __restrict__ cells,
                                                         const float* __restrict__ d_out, float* d_gates_fwd,
                                                         float* d_gates_rev, unsigned* barrier) {
    lstm_grid_backward_steps<true>(batch, frames, hid, units, chunk, w_hh_fwd, w_hh_rev, gates, cells, d_out,
                                   d_gates_fwd, d_gates_rev, barrier);
}

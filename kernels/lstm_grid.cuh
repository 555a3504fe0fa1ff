// lstm_grid.cuh: the bodies of the grid-synchronised LSTM recurrences, a template over whether
// the grid barrier is there, so that kernels/lstm.cu instantiates them with it and the test
// kernels (tests/kernels/planted_bugs.cu) without it: emu must show that missing barrier as a
// wrong result (tests/lstm.rs). Layouts as in kernels/lstm.cu; why this design: its header.
//
// Grid (blocks_per_direction, 2), cooperative. Block (x, d) owns hidden units
// [x·units, min(hid, (x+1)·units)) of direction d, i.e. the gate rows g·hid + j of those units
// for g = i, f, g, o, for every sequence. Dynamic shared memory (floats), forward:
//   w (hid × 4·units: W_hh rows of the owned units, k-major), c (batch × units),
//   then per chunk of `chunk` sequences h (chunk × hid) and pre (chunk × 4·units);
// backward:
//   w (4·hid × units: W_hh columns of the owned units), d_h_next and d_c (batch × units each),
//   then per chunk d_pre (chunk × 4·hid).
// The only data that crosses blocks is one vector per step and sequence: h (forward, through
// `out`) or d_pre (backward, through `d_gates`), published before the step's grid barrier and
// read after it with __ldcg (L2, never a stale L1 line; those buffers are not __restrict__).
#pragma once
#include "common.cuh"

__device__ __forceinline__ float lstm_grid_sigmoid(float x) { return 1.0f / (1.0f + expf(-x)); }

template <bool kGridBarrier>
__device__ __forceinline__ void lstm_grid_step_barrier(unsigned* barrier) {
    if (kGridBarrier) {
        grid_barrier_sync(barrier);
    } else {
        __syncthreads();
    }
}

template <bool kGridBarrier>
__device__ void lstm_grid_forward_steps(int batch, int frames, int hid, int units, int chunk,
                                        const float* __restrict__ w_hh_fwd, const float* __restrict__ w_hh_rev,
                                        float* gates, float* cells, float* out, unsigned* barrier) {
    int d = blockIdx.y;
    int j0 = blockIdx.x * units;
    int owned = min(units, hid - j0);
    int four_hid = 4 * hid;
    int four_units = 4 * units;
    const float* w_hh = d == 0 ? w_hh_fwd : w_hh_rev;
    float* w = dynamic_shared<float>();
    float* c = w + hid * four_units;
    float* h = c + batch * units;
    float* pre = h + chunk * hid;
    // Loaded once: the owned gate rows, w[k][g·units + jj] = W_hh[g·hid + j0 + jj][k] (zero for
    // jj ≥ owned, so the padded rows compute harmless zeros).
    for (int i = threadIdx.x; i < hid * four_units; i += blockDim.x) {
        int k = i / four_units;
        int local = i - k * four_units;
        int g = local / units;
        int jj = local - g * units;
        w[i] = jj < owned ? w_hh[(long long)(g * hid + j0 + jj) * hid + k] : 0.0f;
    }
    for (int i = threadIdx.x; i < batch * units; i += blockDim.x) c[i] = 0.0f;
    __syncthreads();
    for (int step = 0; step < frames; step++) {
        int t = d == 0 ? step : frames - 1 - step;
        int t_prev = d == 0 ? t - 1 : t + 1;
        for (int b0 = 0; b0 < batch; b0 += chunk) {
            int n = min(chunk, batch - b0);
            // Every unit's h_prev of these sequences, as the other blocks published it.
            for (int i = threadIdx.x; i < n * hid; i += blockDim.x) {
                int bb = i / hid;
                int k = i - bb * hid;
                h[i] = step == 0 ? 0.0f : __ldcg(&out[((long long)(b0 + bb) * frames + t_prev) * 2 * hid + d * hid + k]);
            }
            __syncthreads();
            // pre = projection + W_hh·h_prev for the owned rows, one thread per (sequence, row).
            for (int i = threadIdx.x; i < n * four_units; i += blockDim.x) {
                int bb = i / four_units;
                int local = i - bb * four_units;
                int g = local / units;
                int jj = local - g * units;
                if (jj < owned) {
                    const float* hb = h + bb * hid;
                    float acc = 0.0f;
                    for (int k = 0; k < hid; k++) acc += w[k * four_units + local] * hb[k];
                    long long slot = ((long long)d * batch + b0 + bb) * frames + t;
                    pre[i] = gates[slot * four_hid + g * hid + j0 + jj] + acc;
                }
            }
            __syncthreads();
            // The gate math and the new state of the owned units.
            for (int i = threadIdx.x; i < n * units; i += blockDim.x) {
                int bb = i / units;
                int jj = i - bb * units;
                if (jj < owned) {
                    int b = b0 + bb;
                    int j = j0 + jj;
                    const float* p = pre + bb * four_units;
                    float i_gate = lstm_grid_sigmoid(p[jj]);
                    float f_gate = lstm_grid_sigmoid(p[units + jj]);
                    float g_gate = tanhf(p[2 * units + jj]);
                    float o_gate = lstm_grid_sigmoid(p[3 * units + jj]);
                    float c_new = f_gate * c[b * units + jj] + i_gate * g_gate;
                    float h_new = o_gate * tanhf(c_new);
                    long long slot = ((long long)d * batch + b) * frames + t;
                    float* gate = gates + slot * four_hid;
                    gate[j] = i_gate;
                    gate[hid + j] = f_gate;
                    gate[2 * hid + j] = g_gate;
                    gate[3 * hid + j] = o_gate;
                    cells[slot * hid + j] = c_new;
                    out[((long long)b * frames + t) * 2 * hid + d * hid + j] = h_new;
                    c[b * units + jj] = c_new;
                }
            }
            __syncthreads();
        }
        // Every block's h(t) is in `out` before any block reads it as h_prev.
        lstm_grid_step_barrier<kGridBarrier>(barrier);
    }
}

template <bool kGridBarrier>
__device__ void lstm_grid_backward_steps(int batch, int frames, int hid, int units, int chunk,
                                         const float* __restrict__ w_hh_fwd, const float* __restrict__ w_hh_rev,
                                         const float* __restrict__ gates, const float* __restrict__ cells,
                                         const float* __restrict__ d_out, float* d_gates_fwd, float* d_gates_rev,
                                         unsigned* barrier) {
    int d = blockIdx.y;
    int j0 = blockIdx.x * units;
    int owned = min(units, hid - j0);
    int four_hid = 4 * hid;
    const float* w_hh = d == 0 ? w_hh_fwd : w_hh_rev;
    float* d_gates = d == 0 ? d_gates_fwd : d_gates_rev;
    float* w = dynamic_shared<float>();
    float* d_h_next = w + four_hid * units;
    float* d_c_next = d_h_next + batch * units;
    float* d_pre = d_c_next + batch * units;
    // Loaded once: the owned columns, w[row][kk] = W_hh[row][j0 + kk] (zero for kk ≥ owned).
    for (int i = threadIdx.x; i < four_hid * units; i += blockDim.x) {
        int row = i / units;
        int kk = i - row * units;
        w[i] = kk < owned ? w_hh[(long long)row * hid + j0 + kk] : 0.0f;
    }
    for (int i = threadIdx.x; i < batch * units; i += blockDim.x) {
        d_h_next[i] = 0.0f;
        d_c_next[i] = 0.0f;
    }
    __syncthreads();
    for (int step = frames - 1; step >= 0; step--) {
        int t = d == 0 ? step : frames - 1 - step;
        int t_prev = d == 0 ? step - 1 : frames - step;
        // The gate gradients of the owned units, published in d_gates.
        for (int i = threadIdx.x; i < batch * units; i += blockDim.x) {
            int b = i / units;
            int jj = i - b * units;
            if (jj < owned) {
                int j = j0 + jj;
                long long slot = ((long long)d * batch + b) * frames + t;
                const float* gate = gates + slot * four_hid;
                float i_gate = gate[j];
                float f_gate = gate[hid + j];
                float g_gate = gate[2 * hid + j];
                float o_gate = gate[3 * hid + j];
                float c_before = step > 0 ? cells[(((long long)d * batch + b) * frames + t_prev) * hid + j] : 0.0f;
                float tanh_c = tanhf(cells[slot * hid + j]);
                float d_h = d_out[((long long)b * frames + t) * 2 * hid + d * hid + j] + d_h_next[i];
                float d_c = d_c_next[i] + d_h * o_gate * (1.0f - tanh_c * tanh_c);
                float* d_pre_out = d_gates + ((long long)b * frames + t) * four_hid;
                d_pre_out[j] = d_c * g_gate * i_gate * (1.0f - i_gate);
                d_pre_out[hid + j] = d_c * c_before * f_gate * (1.0f - f_gate);
                d_pre_out[2 * hid + j] = d_c * i_gate * (1.0f - g_gate * g_gate);
                d_pre_out[3 * hid + j] = d_h * tanh_c * o_gate * (1.0f - o_gate);
                d_c_next[i] = d_c * f_gate;
            }
        }
        // Every block's d_pre(t) is in d_gates before any block reads all of it.
        lstm_grid_step_barrier<kGridBarrier>(barrier);
        // d_h for the previous step of the owned units: d_pre(t)·W_hh[:, owned].
        for (int b0 = 0; b0 < batch; b0 += chunk) {
            int n = min(chunk, batch - b0);
            for (int i = threadIdx.x; i < n * four_hid; i += blockDim.x) {
                int bb = i / four_hid;
                int row = i - bb * four_hid;
                d_pre[i] = __ldcg(&d_gates[((long long)(b0 + bb) * frames + t) * four_hid + row]);
            }
            __syncthreads();
            for (int i = threadIdx.x; i < n * units; i += blockDim.x) {
                int bb = i / units;
                int kk = i - bb * units;
                const float* dp = d_pre + bb * four_hid;
                float acc = 0.0f;
                for (int row = 0; row < four_hid; row++) acc += dp[row] * w[row * units + kk];
                d_h_next[(b0 + bb) * units + kk] = acc;
            }
            __syncthreads();
        }
    }
}

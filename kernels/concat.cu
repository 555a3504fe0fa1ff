// concat: torch.cat((a, b), dim=1) on NCHW float32 and its backward (the split of d_out added
// into d_a and d_b). One thread per element. CPU reference: src/ops/concat.rs.
#include "common.cuh"

// out[b][ch][i] = ch < c_a ? a[b][ch][i] : b_[b][ch − c_a][i].
extern "C" __global__ void concat_channels_forward(int n, int c_a, int c_b, int hw, const float* __restrict__ a,
                                                   const float* __restrict__ b, float* __restrict__ out) {
    long long total = (long long)n * (c_a + c_b) * hw;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < total) {
        long long per_item = (long long)(c_a + c_b) * hw;
        long long item = idx / per_item;
        long long within = idx - item * per_item;
        long long len_a = (long long)c_a * hw;
        long long len_b = (long long)c_b * hw;
        out[idx] = within < len_a ? a[item * len_a + within] : b[item * len_b + within - len_a];
    }
}

// d_part[b][ch][i] += d_out[b][first_channel + ch][i] for the part of c_part channels that
// starts at first_channel (0 for a, c_a for b) of the c_total concatenated ones.
extern "C" __global__ void concat_channels_backward(int n, int c_total, int first_channel, int c_part, int hw,
                                                    const float* __restrict__ d_out, float* __restrict__ d_part) {
    long long total = (long long)n * c_part * hw;
    long long idx = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (idx < total) {
        long long len_part = (long long)c_part * hw;
        long long item = idx / len_part;
        long long within = idx - item * len_part;
        d_part[idx] += d_out[item * c_total * hw + (long long)first_channel * hw + within];
    }
}

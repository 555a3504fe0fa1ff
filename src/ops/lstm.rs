//! Bidirectional single-layer LSTM, batch first, zero initial state, as `torch.nn.LSTM(
//! input_size, hidden_size, batch_first=True, bidirectional=True)`: gate order i, f, g, o and
//! two bias vectors per direction.
//!
//! Shapes (direction 0 is forward in time, direction 1 is reverse, PyTorch's `_l0_reverse`):
//! - `inp` (batch, frames, input_size); `out` (batch, frames, 2·hidden_size), the forward
//!   direction's hidden state in the first half of each row, the reverse one's in the second;
//! - per direction: `w_ih` (4·hidden, input_size), `w_hh` (4·hidden, hidden), `b_ih`, `b_hh` (4·hidden);
//! - what the forward keeps for the backward: `gates` (2, batch, frames, 4·hidden), the gate
//!   activations i, f, g, o at each frame, and `cells` (2, batch, frames, hidden), the cell state.
//!
//! At each step of a direction: `pre = W_ih·x_t + b_ih + W_hh·h_prev + b_hh`,
//! `i, f, o = σ(pre_i, pre_f, pre_o)`, `g = tanh(pre_g)`, `c = f·c_prev + i·g`, `h = o·tanh(c)`.
//!
//! Under the bf16 switch (`--precision bf16`, `MTOSI_CONV_BF16=1`: [`bf16_enabled`]) the CPU
//! forward computes the recurrence's `W_hh·h_prev` from bf16-rounded W_hh and h with float32
//! sums ([`lstm_forward_bf16`], `vdpbf16ps`): that product bounds the sequential part, a step
//! rereading all of W_hh from L2, and bf16 halves those bytes. The input projections `W_ih·x_t`
//! are one bf16 GEMM per direction ([`matmul_bf16`], x and W_ih rounded, float32 sums); gates,
//! cell state and activations stay float32, as does the backward.
// llm.c style: the shapes are arguments.
#![allow(clippy::too_many_arguments)]

use super::conv2d::bf16_enabled;
use super::matmul::{
    matmul, matmul_small_rows, matmul_small_rows_bf16, Bf16PairRows, MatRef, SmallRowsPanels,
    Threads,
};
use super::matmul_bf16::{matmul_bf16, Bf16Panels, Start};
use super::{check_len, fast_math};

/// The parameters of one direction, in PyTorch's layout.
#[derive(Clone, Copy)]
pub struct LstmWeights<'a> {
    /// (4·hidden, input_size)
    pub w_ih: &'a [f32],
    /// (4·hidden, hidden)
    pub w_hh: &'a [f32],
    /// (4·hidden)
    pub b_ih: &'a [f32],
    /// (4·hidden)
    pub b_hh: &'a [f32],
}

/// The gradients of one direction's parameters, added into by [`lstm_backward`].
pub struct LstmGradients<'a> {
    pub w_ih: &'a mut [f32],
    pub w_hh: &'a mut [f32],
    pub b_ih: &'a mut [f32],
    pub b_hh: &'a mut [f32],
}

/// Runs both directions over every sequence of the batch; writes `out`, `gates` and `cells`.
/// With the bf16 switch on ([`bf16_enabled`]) this is [`lstm_forward_bf16`].
pub fn lstm_forward(
    out: &mut [f32],
    gates: &mut [f32],
    cells: &mut [f32],
    inp: &[f32],
    weights: &[LstmWeights; 2],
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
) {
    let shape = [batch, frames, input_size, hidden_size];
    forward_with(bf16_enabled(), out, gates, cells, inp, weights, shape);
}

/// [`lstm_forward`] with the recurrence's products `W_hh·h_prev` and the input projections
/// `W_ih·x_t` taken from bf16-rounded (nearest even) operands with float32 sums, whatever the
/// switch says: `vdpbf16ps` on CPUs with AVX512-BF16, plain loops over the same rounded values
/// elsewhere. W_hh and W_ih are packed once per call; everything else is [`lstm_forward`]'s
/// float32.
pub fn lstm_forward_bf16(
    out: &mut [f32],
    gates: &mut [f32],
    cells: &mut [f32],
    inp: &[f32],
    weights: &[LstmWeights; 2],
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
) {
    let shape = [batch, frames, input_size, hidden_size];
    forward_with(true, out, gates, cells, inp, weights, shape);
}

/// The forward, its recurrent products in bf16 when `bf16`; `shape` is (batch, frames,
/// input_size, hidden_size).
fn forward_with(
    bf16: bool,
    out: &mut [f32],
    gates: &mut [f32],
    cells: &mut [f32],
    inp: &[f32],
    weights: &[LstmWeights; 2],
    [batch, frames, input_size, hidden_size]: [usize; 4],
) {
    check_shapes(
        out.len(),
        gates.len(),
        cells.len(),
        inp.len(),
        weights,
        batch,
        frames,
        input_size,
        hidden_size,
    );
    let hid = hidden_size;
    let per_direction = batch * frames;
    let x = MatRef::row_major(inp, per_direction, input_size);
    // Input projections of every frame at once (one GEMM per direction); only h·W_hh is sequential.
    for (gates, params) in gates.chunks_mut(per_direction * 4 * hid).zip(weights) {
        let w_ih_t = MatRef::row_major(params.w_ih, 4 * hid, input_size).t();
        if bf16 {
            let bias: Vec<f32> = params
                .b_ih
                .iter()
                .zip(params.b_hh)
                .map(|(i, h)| i + h)
                .collect();
            let w_ih_t = Bf16Panels::pack(w_ih_t);
            matmul_bf16(
                gates,
                4 * hid,
                x,
                &w_ih_t,
                Start::ColumnBias(&bias),
                Threads::All,
            );
            continue;
        }
        matmul(gates, 4 * hid, x, w_ih_t, false, Threads::All);
        for row in gates.chunks_mut(4 * hid) {
            for ((g, &bi), &bh) in row.iter_mut().zip(params.b_ih).zip(params.b_hh) {
                *g += bi + bh;
            }
        }
    }
    // The two directions run side by side, each writing its hidden states to its own buffer.
    let mut hidden = vec![0.0f32; 2 * per_direction * hid];
    let (gates_fwd, gates_rev) = gates.split_at_mut(per_direction * 4 * hid);
    let (cells_fwd, cells_rev) = cells.split_at_mut(per_direction * hid);
    let (hidden_fwd, hidden_rev) = hidden.split_at_mut(per_direction * hid);
    let shape = RecurrenceShape { batch, frames, hid };
    rayon::join(
        || {
            recur_forward(
                0,
                gates_fwd,
                cells_fwd,
                hidden_fwd,
                &weights[0],
                shape,
                bf16,
            )
        },
        || {
            recur_forward(
                1,
                gates_rev,
                cells_rev,
                hidden_rev,
                &weights[1],
                shape,
                bf16,
            )
        },
    );
    for (row, (h_fwd, h_rev)) in out
        .chunks_mut(2 * hid)
        .zip(hidden_fwd.chunks(hid).zip(hidden_rev.chunks(hid)))
    {
        row[..hid].copy_from_slice(h_fwd);
        row[hid..].copy_from_slice(h_rev);
    }
}

/// Backpropagation through time: adds into `d_inp` (batch, frames, input_size) and into each
/// direction's parameter gradients, given `d_out` (batch, frames, 2·hidden) and what
/// [`lstm_forward`] wrote (`out`, `gates`, `cells`).
///
/// `gates` is used up: each frame's gate activations are read once, just before that frame's
/// pre-activation gate gradients replace them, which is where the gradients stay (the layout is
/// the same, (2, batch·frames, 4·hidden)). So the backward allocates no second buffer of that
/// size: 115 MB at batch 32 × 640, freshly faulted in at every step when it did.
pub fn lstm_backward(
    d_inp: Option<&mut [f32]>,
    grads: &mut [LstmGradients; 2],
    d_out: &[f32],
    inp: &[f32],
    out: &[f32],
    gates: &mut [f32],
    cells: &[f32],
    weights: &[LstmWeights; 2],
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
) {
    check_shapes(
        out.len(),
        gates.len(),
        cells.len(),
        inp.len(),
        weights,
        batch,
        frames,
        input_size,
        hidden_size,
    );
    check_len("lstm d_out", d_out.len(), out.len());
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("lstm d_inp", d_inp.len(), inp.len());
    }
    for grads in grads.iter() {
        check_weights(
            &LstmWeights {
                w_ih: grads.w_ih,
                w_hh: grads.w_hh,
                b_ih: grads.b_ih,
                b_hh: grads.b_hh,
            },
            input_size,
            hidden_size,
        );
    }
    let hid = hidden_size;
    let per_direction = batch * frames;
    let shape = RecurrenceShape { batch, frames, hid };
    // Pre-activation gate gradients of every frame, per direction, written over the gates.
    let (d_gates_fwd, d_gates_rev) = gates.split_at_mut(per_direction * 4 * hid);
    let (cells_fwd, cells_rev) = cells.split_at(per_direction * hid);
    let [grads_fwd, grads_rev] = grads;
    let direction = |d: usize, d_gates: &mut [f32], cells: &[f32], grads: &mut LstmGradients| {
        let params = &weights[d];
        recur_backward(d, d_gates, cells, d_out, params, shape);
        let d_gates = &*d_gates;
        let d_pre = MatRef::row_major(d_gates, per_direction, 4 * hid);
        // d_W_ih += d_preᵀ · x over every frame.
        let x = MatRef::row_major(inp, per_direction, input_size);
        matmul(grads.w_ih, input_size, d_pre.t(), x, true, Threads::Single);
        // d_W_hh += d_pre(t)ᵀ · h(t − 1 in processing order), per sequence.
        if frames > 1 {
            let (first_grad_frame, first_h_frame) = if d == 0 { (1, 0) } else { (0, 1) };
            for b in 0..batch {
                let d_pre = MatRef {
                    data: &d_gates[(b * frames + first_grad_frame) * 4 * hid..],
                    rows: frames - 1,
                    cols: 4 * hid,
                    row_stride: 4 * hid,
                    col_stride: 1,
                };
                let h_prev = MatRef {
                    data: &out[(b * frames + first_h_frame) * 2 * hid + d * hid..],
                    rows: frames - 1,
                    cols: hid,
                    row_stride: 2 * hid,
                    col_stride: 1,
                };
                matmul(grads.w_hh, hid, d_pre.t(), h_prev, true, Threads::Single);
            }
        }
        for row in d_gates.chunks(4 * hid) {
            for ((bi, bh), &g) in grads.b_ih.iter_mut().zip(grads.b_hh.iter_mut()).zip(row) {
                *bi += g;
                *bh += g;
            }
        }
    };
    rayon::join(
        || direction(0, d_gates_fwd, cells_fwd, grads_fwd),
        || direction(1, d_gates_rev, cells_rev, grads_rev),
    );
    if let Some(d_inp) = d_inp {
        for (d_pre, params) in gates.chunks(per_direction * 4 * hid).zip(weights) {
            let d_pre = MatRef::row_major(d_pre, per_direction, 4 * hid);
            let w_ih = MatRef::row_major(params.w_ih, 4 * hid, input_size);
            matmul(d_inp, input_size, d_pre, w_ih, true, Threads::All);
        }
    }
}

fn check_weights(weights: &LstmWeights, input_size: usize, hidden_size: usize) {
    check_len(
        "lstm w_ih",
        weights.w_ih.len(),
        4 * hidden_size * input_size,
    );
    check_len(
        "lstm w_hh",
        weights.w_hh.len(),
        4 * hidden_size * hidden_size,
    );
    check_len("lstm b_ih", weights.b_ih.len(), 4 * hidden_size);
    check_len("lstm b_hh", weights.b_hh.len(), 4 * hidden_size);
}

fn check_shapes(
    out_len: usize,
    gates_len: usize,
    cells_len: usize,
    inp_len: usize,
    weights: &[LstmWeights; 2],
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
) {
    check_len("lstm inp", inp_len, batch * frames * input_size);
    check_len("lstm out", out_len, batch * frames * 2 * hidden_size);
    check_len(
        "lstm gates",
        gates_len,
        2 * batch * frames * 4 * hidden_size,
    );
    check_len("lstm cells", cells_len, 2 * batch * frames * hidden_size);
    for direction in weights {
        check_weights(direction, input_size, hidden_size);
    }
}

/// The frame processed at step `s` of a direction: forward in time for 0, backward for 1.
#[inline]
pub(crate) fn frame_at(direction: usize, step: usize, frames: usize) -> usize {
    if direction == 0 {
        step
    } else {
        frames - 1 - step
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// The definition, in plain loops: the oracle for [`lstm_forward`].
pub fn lstm_forward_reference(
    out: &mut [f32],
    gates: &mut [f32],
    cells: &mut [f32],
    inp: &[f32],
    weights: &[LstmWeights; 2],
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
) {
    check_shapes(
        out.len(),
        gates.len(),
        cells.len(),
        inp.len(),
        weights,
        batch,
        frames,
        input_size,
        hidden_size,
    );
    let hid = hidden_size;
    let mut pre = vec![0.0f32; 4 * hid];
    let mut h = vec![0.0f32; hid];
    let mut c = vec![0.0f32; hid];
    for (direction, params) in weights.iter().enumerate() {
        for b in 0..batch {
            h.fill(0.0);
            c.fill(0.0);
            for step in 0..frames {
                let t = frame_at(direction, step, frames);
                let x = &inp[(b * frames + t) * input_size..][..input_size];
                for (row, p) in pre.iter_mut().enumerate() {
                    let w_ih = &params.w_ih[row * input_size..][..input_size];
                    let w_hh = &params.w_hh[row * hid..][..hid];
                    let from_x: f32 = w_ih.iter().zip(x).map(|(w, x)| w * x).sum();
                    let from_h: f32 = w_hh.iter().zip(&h).map(|(w, h)| w * h).sum();
                    *p = from_x + params.b_ih[row] + from_h + params.b_hh[row];
                }
                let slot = (direction * batch + b) * frames + t;
                let gate = &mut gates[slot * 4 * hid..][..4 * hid];
                for j in 0..hid {
                    let i_gate = sigmoid(pre[j]);
                    let f_gate = sigmoid(pre[hid + j]);
                    let g_gate = pre[2 * hid + j].tanh();
                    let o_gate = sigmoid(pre[3 * hid + j]);
                    c[j] = f_gate * c[j] + i_gate * g_gate;
                    h[j] = o_gate * c[j].tanh();
                    gate[j] = i_gate;
                    gate[hid + j] = f_gate;
                    gate[2 * hid + j] = g_gate;
                    gate[3 * hid + j] = o_gate;
                }
                cells[slot * hid..][..hid].copy_from_slice(&c);
                out[(b * frames + t) * 2 * hid + direction * hid..][..hid].copy_from_slice(&h);
            }
        }
    }
}

/// The definition, in plain loops: the oracle for [`lstm_backward`].
pub fn lstm_backward_reference(
    mut d_inp: Option<&mut [f32]>,
    grads: &mut [LstmGradients; 2],
    d_out: &[f32],
    inp: &[f32],
    out: &[f32],
    gates: &[f32],
    cells: &[f32],
    weights: &[LstmWeights; 2],
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
) {
    check_shapes(
        out.len(),
        gates.len(),
        cells.len(),
        inp.len(),
        weights,
        batch,
        frames,
        input_size,
        hidden_size,
    );
    check_len("lstm d_out", d_out.len(), out.len());
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("lstm d_inp", d_inp.len(), inp.len());
    }
    let hid = hidden_size;
    let mut d_pre = vec![0.0f32; 4 * hid];
    let mut d_h_next = vec![0.0f32; hid];
    let mut d_c_next = vec![0.0f32; hid];
    for (direction, (params, grads)) in weights.iter().zip(grads.iter_mut()).enumerate() {
        check_weights(
            &LstmWeights {
                w_ih: grads.w_ih,
                w_hh: grads.w_hh,
                b_ih: grads.b_ih,
                b_hh: grads.b_hh,
            },
            input_size,
            hid,
        );
        for b in 0..batch {
            d_h_next.fill(0.0);
            d_c_next.fill(0.0);
            for step in (0..frames).rev() {
                let t = frame_at(direction, step, frames);
                let slot = (direction * batch + b) * frames + t;
                let gate = &gates[slot * 4 * hid..][..4 * hid];
                let c = &cells[slot * hid..][..hid];
                let prev = (step > 0).then(|| {
                    let t_prev = frame_at(direction, step - 1, frames);
                    let slot_prev = (direction * batch + b) * frames + t_prev;
                    (
                        &cells[slot_prev * hid..][..hid],
                        &out[(b * frames + t_prev) * 2 * hid + direction * hid..][..hid],
                    )
                });
                let d_h_out = &d_out[(b * frames + t) * 2 * hid + direction * hid..][..hid];
                for j in 0..hid {
                    let (i_gate, f_gate) = (gate[j], gate[hid + j]);
                    let (g_gate, o_gate) = (gate[2 * hid + j], gate[3 * hid + j]);
                    let c_prev = prev.map_or(0.0, |(c_prev, _)| c_prev[j]);
                    let tanh_c = c[j].tanh();
                    let d_h = d_h_out[j] + d_h_next[j];
                    let d_c = d_c_next[j] + d_h * o_gate * (1.0 - tanh_c * tanh_c);
                    d_pre[j] = d_c * g_gate * i_gate * (1.0 - i_gate);
                    d_pre[hid + j] = d_c * c_prev * f_gate * (1.0 - f_gate);
                    d_pre[2 * hid + j] = d_c * i_gate * (1.0 - g_gate * g_gate);
                    d_pre[3 * hid + j] = d_h * tanh_c * o_gate * (1.0 - o_gate);
                    d_c_next[j] = d_c * f_gate;
                }
                let x = &inp[(b * frames + t) * input_size..][..input_size];
                d_h_next.fill(0.0);
                for (row, &g) in d_pre.iter().enumerate() {
                    grads.b_ih[row] += g;
                    grads.b_hh[row] += g;
                    let w_ih = &params.w_ih[row * input_size..][..input_size];
                    let d_w_ih = &mut grads.w_ih[row * input_size..][..input_size];
                    for (d_w, &x) in d_w_ih.iter_mut().zip(x) {
                        *d_w += g * x;
                    }
                    if let Some(d_inp) = d_inp.as_deref_mut() {
                        let d_x = &mut d_inp[(b * frames + t) * input_size..][..input_size];
                        for (d_x, &w) in d_x.iter_mut().zip(w_ih) {
                            *d_x += g * w;
                        }
                    }
                    let w_hh = &params.w_hh[row * hid..][..hid];
                    if let Some((_, h_prev)) = prev {
                        let d_w_hh = &mut grads.w_hh[row * hid..][..hid];
                        for (d_w, &h) in d_w_hh.iter_mut().zip(h_prev) {
                            *d_w += g * h;
                        }
                    }
                    for (d_h, &w) in d_h_next.iter_mut().zip(w_hh) {
                        *d_h += g * w;
                    }
                }
            }
        }
    }
}

/// Batch, frames and hidden size of one direction's recurrence.
#[derive(Clone, Copy)]
struct RecurrenceShape {
    batch: usize,
    frames: usize,
    hid: usize,
}

/// W_hhᵀ (hidden × 4·hidden) as the forward recurrence reads it at every step.
enum RecurrentWeights {
    /// Float32 panels: GEMM would otherwise repack the transposed view every step.
    Fp32(SmallRowsPanels),
    /// bf16 pairs along the hidden dimension: half the bytes per step.
    Bf16(Bf16PairRows),
}

impl RecurrentWeights {
    fn new(w_hh: &[f32], hid: usize, bf16: bool) -> RecurrentWeights {
        let w_hh_t = MatRef::row_major(w_hh, 4 * hid, hid).t();
        if bf16 {
            return RecurrentWeights::Bf16(Bf16PairRows::pack(w_hh_t));
        }
        RecurrentWeights::Fp32(SmallRowsPanels::pack(w_hh_t))
    }

    /// `dst += h·W_hhᵀ`, `dst`'s rows `dst_row_stride` apart.
    fn add_product(&self, dst: &mut [f32], dst_row_stride: usize, h: MatRef) {
        match self {
            RecurrentWeights::Fp32(panels) => {
                matmul_small_rows(dst, dst_row_stride, h, panels, true);
            }
            RecurrentWeights::Bf16(pairs) => {
                matmul_small_rows_bf16(dst, dst_row_stride, h, pairs, true);
            }
        }
    }
}

/// One direction's recurrence, its products `h·W_hhᵀ` in bf16 when `bf16`. On entry `gates`
/// (batch·frames, 4·hidden) holds the input projections plus both biases; on exit the gate
/// activations. Writes `cells` and `hidden` (batch·frames, hidden).
fn recur_forward(
    direction: usize,
    gates: &mut [f32],
    cells: &mut [f32],
    hidden: &mut [f32],
    params: &LstmWeights,
    shape: RecurrenceShape,
    bf16: bool,
) {
    let RecurrenceShape { batch, frames, hid } = shape;
    let w_hh_t = RecurrentWeights::new(params.w_hh, hid, bf16);
    let mut h_prev = vec![0.0f32; batch * hid];
    let mut c_prev = vec![0.0f32; batch * hid];
    for step in 0..frames {
        let t = frame_at(direction, step, frames);
        if step > 0 {
            // pre(b, t) += h_prev(b)·W_hhᵀ for the whole batch: rows `frames` apart.
            let h = MatRef::row_major(&h_prev, batch, hid);
            w_hh_t.add_product(&mut gates[t * 4 * hid..], frames * 4 * hid, h);
        }
        for b in 0..batch {
            let slot = b * frames + t;
            let gate = &mut gates[slot * 4 * hid..][..4 * hid];
            let c_row = &mut cells[slot * hid..][..hid];
            let h_row = &mut hidden[slot * hid..][..hid];
            let c_prev = &mut c_prev[b * hid..][..hid];
            let h_prev = &mut h_prev[b * hid..][..hid];
            // Gate activations in vectorised passes: σ on i, f; tanh on g; σ on o.
            fast_math::sigmoid_in_place(&mut gate[..2 * hid]);
            fast_math::tanh_in_place(&mut gate[2 * hid..3 * hid]);
            fast_math::sigmoid_in_place(&mut gate[3 * hid..]);
            let (i_gate, rest) = gate.split_at(hid);
            let (f_gate, rest) = rest.split_at(hid);
            let (g_gate, o_gate) = rest.split_at(hid);
            for j in 0..hid {
                c_row[j] = f_gate[j] * c_prev[j] + i_gate[j] * g_gate[j];
            }
            c_prev.copy_from_slice(c_row);
            h_row.copy_from_slice(c_row);
            fast_math::tanh_in_place(h_row);
            for (h, &o) in h_row.iter_mut().zip(o_gate) {
                *h *= o;
            }
            h_prev.copy_from_slice(h_row);
        }
    }
}

/// One direction's backpropagation through time: replaces the gate activations `gates`
/// (batch·frames, 4·hidden) with the pre-activation gate gradients, from `d_out` and the cell
/// states. A frame's activations are last read by that frame's own gradients.
fn recur_backward(
    direction: usize,
    gates: &mut [f32],
    cells: &[f32],
    d_out: &[f32],
    params: &LstmWeights,
    shape: RecurrenceShape,
) {
    let RecurrenceShape { batch, frames, hid } = shape;
    let w_hh = SmallRowsPanels::pack(MatRef::row_major(params.w_hh, 4 * hid, hid));
    let mut d_h_next = vec![0.0f32; batch * hid];
    let mut d_c_next = vec![0.0f32; batch * hid];
    let mut tanh_c = vec![0.0f32; hid];
    for step in (0..frames).rev() {
        let t = frame_at(direction, step, frames);
        let t_prev = (step > 0).then(|| frame_at(direction, step - 1, frames));
        for b in 0..batch {
            let slot = b * frames + t;
            // The four gates as disjoint slices: each element is read, then overwritten by its
            // gradient, and the loop vectorises without overlap checks.
            let (i_gate, rest) = gates[slot * 4 * hid..][..4 * hid].split_at_mut(hid);
            let (f_gate, rest) = rest.split_at_mut(hid);
            let (g_gate, o_gate) = rest.split_at_mut(hid);
            let c = &cells[slot * hid..][..hid];
            let c_prev = t_prev.map(|tp| &cells[(b * frames + tp) * hid..][..hid]);
            let d_h_out = &d_out[slot * 2 * hid + direction * hid..][..hid];
            let d_h_next = &d_h_next[b * hid..][..hid];
            let d_c_next = &mut d_c_next[b * hid..][..hid];
            tanh_c.copy_from_slice(c);
            fast_math::tanh_in_place(&mut tanh_c);
            for j in 0..hid {
                let (i, f, g, o) = (i_gate[j], f_gate[j], g_gate[j], o_gate[j]);
                let c_before = c_prev.map_or(0.0, |c_prev| c_prev[j]);
                let tanh_c = tanh_c[j];
                let d_h = d_h_out[j] + d_h_next[j];
                let d_c = d_c_next[j] + d_h * o * (1.0 - tanh_c * tanh_c);
                i_gate[j] = d_c * g * i * (1.0 - i);
                f_gate[j] = d_c * c_before * f * (1.0 - f);
                g_gate[j] = d_c * i * (1.0 - g * g);
                o_gate[j] = d_h * tanh_c * o * (1.0 - o);
                d_c_next[j] = d_c * f;
            }
        }
        // d_h for the previous step: d_pre(t)·W_hh for the whole batch.
        let d_pre = MatRef {
            data: &gates[t * 4 * hid..],
            rows: batch,
            cols: 4 * hid,
            row_stride: frames * 4 * hid,
            col_stride: 1,
        };
        matmul_small_rows(&mut d_h_next, hid, d_pre, &w_hh, false);
    }
}

// ---------------------------------------------------------------------------------------------
// On a kernel device (kernels/lstm.cu + kernels/matmul.cu + kernels/conv2d.cu's column sums):
// the input projections and every weight gradient as GEMMs over all frames, the recurrences as
// one persistent launch per pass covering every time step of both directions.
//
// Two recurrence kernels (kernels/lstm.cu's header says why each is built as it is): the grid
// version, W_hh held in shared memory across a cooperative grid with one grid barrier per step,
// wherever it fits (its shared memory and the device's resident blocks); otherwise the
// per-sequence version, one block per (sequence, direction) re-reading W_hh from L2 every step,
// which is also the readable reference. The choice is explicit (`LstmRecurrence`) and fixed per
// workspace, so a run does not switch kernels between passes.

use super::conv2d::channel_sums_launch;
use super::matmul::{
    matmul_launch, matmul_sum_launch, matmul_sum_scratch_len, DeviceMatMut, DeviceMatRef,
};
use crate::device::{
    compiled_kernel, DeviceBuffer, DeviceError, Kernel, KernelDevice, LaunchConfig,
};

/// Threads per block of the recurrence kernels (a multiple of 32).
const LSTM_THREADS: u32 = 256;
/// Threads per block of the grid recurrences: at hid 176 a block computes 44·batch gate rows
/// and 11·batch unit updates per step, so 4 warps have work at batch 3 and up without a block
/// of mostly idle warps at batch 1.
const LSTM_GRID_THREADS: u32 = 128;
/// Blocks per direction the grid recurrences aim for: 16 (11 of 176 units each) keeps each
/// block's W_hh slice at 31 KB, inside the 48 KiB of dynamic shared memory with room for h.
const LSTM_GRID_BLOCKS_PER_DIRECTION: usize = 16;
/// Dynamic shared memory of one launch, in floats (48 KiB, `LaunchConfig`'s limit).
const SHARED_FLOATS: usize = 48 * 1024 / size_of::<f32>();

/// Which kernels run the two recurrences.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LstmRecurrence {
    /// `lstm_recurrence_forward/backward`: one block per (sequence, direction), W_hh from L2
    /// every step. The reference and the fallback.
    PerSequence,
    /// `lstm_recurrence_forward_grid/backward_grid`: each direction's units split over a
    /// cooperative grid, W_hh slices in shared memory, one grid barrier per step.
    Grid,
}

/// How the grid recurrences split the work: `units` hidden units per block, sequences staged
/// `forward_chunk` / `backward_chunk` at a time through shared memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmGridPlan {
    pub units: usize,
    pub blocks_per_direction: usize,
    pub forward_chunk: usize,
    pub backward_chunk: usize,
}

impl LstmGridPlan {
    /// The plan for `shape` whose shared memory fits a launch and whose grid has at most
    /// `max_blocks` blocks, or None (then the per-sequence kernels run). Aims for
    /// [`LSTM_GRID_BLOCKS_PER_DIRECTION`] blocks per direction; fewer units per block (more
    /// blocks) when a block's slice and one sequence do not fit.
    pub fn for_shape(shape: &LstmShape, max_blocks: usize) -> Option<LstmGridPlan> {
        let (hid, batch) = (shape.hidden_size, shape.batch);
        if hid == 0 || batch == 0 {
            return None;
        }
        let chunk = |fixed: usize, per_sequence: usize| {
            SHARED_FLOATS
                .checked_sub(fixed)
                .map_or(0, |room| (room / per_sequence).min(batch))
        };
        let mut units = hid.div_ceil(LSTM_GRID_BLOCKS_PER_DIRECTION);
        while units >= 1 {
            let blocks_per_direction = hid.div_ceil(units);
            if 2 * blocks_per_direction > max_blocks {
                return None;
            }
            let forward_chunk = chunk(4 * units * hid + batch * units, hid + 4 * units);
            let backward_chunk = chunk(4 * hid * units + 2 * batch * units, 4 * hid);
            if forward_chunk >= 1 && backward_chunk >= 1 {
                return Some(LstmGridPlan {
                    units,
                    blocks_per_direction,
                    forward_chunk,
                    backward_chunk,
                });
            }
            units -= 1;
        }
        None
    }

    fn forward_shared_bytes(&self, s: &LstmShape) -> u32 {
        let (u, hid) = (self.units, s.hidden_size);
        let floats = 4 * u * hid + s.batch * u + self.forward_chunk * (hid + 4 * u);
        (floats * size_of::<f32>()) as u32
    }

    fn backward_shared_bytes(&self, s: &LstmShape) -> u32 {
        let (u, hid) = (self.units, s.hidden_size);
        let floats = 4 * hid * u + 2 * s.batch * u + self.backward_chunk * 4 * hid;
        (floats * size_of::<f32>()) as u32
    }

    fn config(&self, shared_bytes: u32) -> LaunchConfig {
        LaunchConfig {
            grid: [self.blocks_per_direction as u32, 2, 1],
            block: [LSTM_GRID_THREADS, 1, 1],
            shared_mem_bytes: shared_bytes,
        }
    }
}

/// The grid recurrences' kernels and their barrier words.
struct GridRecurrence {
    plan: LstmGridPlan,
    forward: &'static Kernel,
    backward: &'static Kernel,
    barrier: DeviceBuffer<u32>,
}

/// The grid plan for `shape` on `device`, checked against the device's resident blocks for
/// both kernels at their shared memory.
fn grid_plan_on(
    device: &KernelDevice,
    shape: &LstmShape,
) -> Result<Option<LstmGridPlan>, DeviceError> {
    let forward = compiled_kernel("lstm_recurrence_forward_grid")?;
    let backward = compiled_kernel("lstm_recurrence_backward_grid")?;
    let bound = device.max_cooperative_blocks(forward, LSTM_GRID_THREADS, 0)? as usize;
    let Some(plan) = LstmGridPlan::for_shape(shape, bound) else {
        return Ok(None);
    };
    let blocks = (2 * plan.blocks_per_direction) as u32;
    let fits = device.max_cooperative_blocks(
        forward,
        LSTM_GRID_THREADS,
        plan.forward_shared_bytes(shape),
    )? >= blocks
        && device.max_cooperative_blocks(
            backward,
            LSTM_GRID_THREADS,
            plan.backward_shared_bytes(shape),
        )? >= blocks;
    Ok(fits.then_some(plan))
}

/// One direction's parameters on a kernel device, in PyTorch's layout (as [`LstmWeights`]).
#[derive(Clone, Copy)]
pub struct DeviceLstmWeights<'a> {
    pub w_ih: &'a DeviceBuffer<f32>,
    pub w_hh: &'a DeviceBuffer<f32>,
    pub b_ih: &'a DeviceBuffer<f32>,
    pub b_hh: &'a DeviceBuffer<f32>,
}

/// One direction's gradients on a kernel device (as [`LstmGradients`]), added into.
pub struct DeviceLstmGradients<'a> {
    pub w_ih: &'a mut DeviceBuffer<f32>,
    pub w_hh: &'a mut DeviceBuffer<f32>,
    pub b_ih: &'a mut DeviceBuffer<f32>,
    pub b_hh: &'a mut DeviceBuffer<f32>,
}

/// The LSTM's shape: `batch` sequences of `frames` rows of `input_size` features, `hidden_size`
/// units per direction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LstmShape {
    pub batch: usize,
    pub frames: usize,
    pub input_size: usize,
    pub hidden_size: usize,
}

/// Scratch of one LSTM layer on a kernel device, allocated once per shape: W_hh transposed for
/// the forward recurrence, each direction's pre-activation gate gradients and the split-k
/// scratch of the weight gradients.
pub struct LstmWorkspace {
    shape: LstmShape,
    w_hh_t: DeviceBuffer<f32>,
    d_gates: [DeviceBuffer<f32>; 2],
    partials: DeviceBuffer<f32>,
    /// Some: the grid recurrences run; None: the per-sequence ones.
    grid: Option<GridRecurrence>,
}

impl LstmWorkspace {
    /// The workspace for `shape`, with the grid recurrences where they fit on `device`, else
    /// the per-sequence ones.
    pub fn new(device: &KernelDevice, shape: LstmShape) -> Result<LstmWorkspace, DeviceError> {
        let recurrence = match grid_plan_on(device, &shape)? {
            Some(_) => LstmRecurrence::Grid,
            None => LstmRecurrence::PerSequence,
        };
        LstmWorkspace::with_recurrence(device, shape, recurrence)
    }

    /// The workspace for `shape` with the recurrence kernels chosen explicitly; fails when
    /// [`LstmRecurrence::Grid`] does not fit the shape on `device`.
    pub fn with_recurrence(
        device: &KernelDevice,
        shape: LstmShape,
        recurrence: LstmRecurrence,
    ) -> Result<LstmWorkspace, DeviceError> {
        let grid = match recurrence {
            LstmRecurrence::PerSequence => None,
            LstmRecurrence::Grid => {
                let plan = grid_plan_on(device, &shape)?.ok_or_else(|| {
                    lstm_invalid(format!(
                        "the grid recurrences do not fit {shape:?} on {}: their W_hh slices and \
                         one sequence exceed 48 KiB of shared memory per block, or their grid \
                         exceeds the blocks the device keeps resident",
                        device.describe()
                    ))
                })?;
                Some(GridRecurrence {
                    plan,
                    forward: compiled_kernel("lstm_recurrence_forward_grid")?,
                    backward: compiled_kernel("lstm_recurrence_backward_grid")?,
                    barrier: device.upload(&[0u32; 2])?,
                })
            }
        };
        let hid = shape.hidden_size;
        let per_direction = shape.batch * shape.frames * 4 * hid;
        let rows = shape.batch * shape.frames;
        let partials = matmul_sum_scratch_len(4 * hid, shape.input_size, rows, 1).max(
            matmul_sum_scratch_len(4 * hid, hid, shape.frames.saturating_sub(1), shape.batch),
        );
        Ok(LstmWorkspace {
            shape,
            w_hh_t: device.alloc(2 * 4 * hid * hid)?,
            d_gates: [device.alloc(per_direction)?, device.alloc(per_direction)?],
            partials: device.alloc(partials.max(1))?,
            grid,
        })
    }

    /// Which recurrence kernels this workspace runs.
    pub fn recurrence(&self) -> LstmRecurrence {
        match self.grid {
            Some(_) => LstmRecurrence::Grid,
            None => LstmRecurrence::PerSequence,
        }
    }

    /// The grid plan, when the grid recurrences run.
    pub fn grid_plan(&self) -> Option<LstmGridPlan> {
        self.grid.as_ref().map(|g| g.plan)
    }

    /// Runs other kernels of the grid recurrences' signatures in their place (emu test kernels:
    /// the planted-bug variants without the grid barrier, tests/lstm.rs). Fails unless the
    /// grid recurrences run.
    #[doc(hidden)]
    pub fn replace_grid_kernels(
        &mut self,
        forward: &'static Kernel,
        backward: &'static Kernel,
    ) -> Result<(), DeviceError> {
        let grid = self.grid.as_mut().ok_or_else(|| {
            lstm_invalid("the workspace runs the per-sequence recurrences".into())
        })?;
        grid.forward = forward;
        grid.backward = backward;
        Ok(())
    }
}

fn lstm_invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "lstm",
        message,
    }
}

fn lstm_check(name: &str, len: usize, expected: usize) -> Result<(), DeviceError> {
    if len == expected {
        Ok(())
    } else {
        Err(lstm_invalid(format!(
            "{name} has {len} elements, its shape needs {expected}"
        )))
    }
}

fn check_device_weights(w: &DeviceLstmWeights, s: &LstmShape) -> Result<(), DeviceError> {
    let hid = s.hidden_size;
    lstm_check("w_ih", w.w_ih.len(), 4 * hid * s.input_size)?;
    lstm_check("w_hh", w.w_hh.len(), 4 * hid * hid)?;
    lstm_check("b_ih", w.b_ih.len(), 4 * hid)?;
    lstm_check("b_hh", w.b_hh.len(), 4 * hid)
}

fn lstm_ints(s: &LstmShape) -> Result<[i32; 3], DeviceError> {
    let mut out = [0i32; 3];
    for (o, v) in out.iter_mut().zip([s.batch, s.frames, s.hidden_size]) {
        *o = i32::try_from(v).map_err(|_| lstm_invalid(format!("{v} exceeds i32")))?;
    }
    Ok(out)
}

fn recurrence_config(s: &LstmShape) -> Result<LaunchConfig, DeviceError> {
    let blocks = u32::try_from(s.batch).map_err(|_| lstm_invalid("batch too large".into()))?;
    let shared = u32::try_from(6 * s.hidden_size * size_of::<f32>())
        .ok()
        .filter(|&b| b <= 48 * 1024)
        .ok_or_else(|| lstm_invalid(format!("hidden size {} too large", s.hidden_size)))?;
    Ok(LaunchConfig {
        grid: [blocks, 2, 1],
        block: [LSTM_THREADS, 1, 1],
        shared_mem_bytes: shared,
    })
}

/// [`lstm_forward`] on a kernel device: writes `out` (batch, frames, 2·hidden), `gates`
/// (2, batch, frames, 4·hidden) and `cells` (2, batch, frames, hidden).
pub fn lstm_forward_launch(
    device: &KernelDevice,
    ws: &mut LstmWorkspace,
    out: &mut DeviceBuffer<f32>,
    gates: &mut DeviceBuffer<f32>,
    cells: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weights: [DeviceLstmWeights; 2],
) -> Result<(), DeviceError> {
    let s = ws.shape;
    let hid = s.hidden_size;
    let rows = s.batch * s.frames;
    lstm_check("inp", inp.len(), rows * s.input_size)?;
    lstm_check("out", out.len(), rows * 2 * hid)?;
    lstm_check("gates", gates.len(), 2 * rows * 4 * hid)?;
    lstm_check("cells", cells.len(), 2 * rows * hid)?;
    for w in &weights {
        check_device_weights(w, &s)?;
    }
    if rows == 0 || hid == 0 {
        return Ok(());
    }
    let [batch, frames, hid_i] = lstm_ints(&s)?;
    device.launch(
        "lstm_fill_gate_bias",
        LaunchConfig::for_elements(gates.len(), super::ELEMENTWISE_THREADS),
        &[
            (rows as i32).into(),
            (4 * hid_i).into(),
            weights[0].b_ih.into(),
            weights[0].b_hh.into(),
            weights[1].b_ih.into(),
            weights[1].b_hh.into(),
            (&mut *gates).into(),
        ],
    )?;
    // Input projections of every frame at once, one GEMM per direction.
    for (d, w) in weights.iter().enumerate() {
        matmul_launch(
            device,
            DeviceMatMut {
                offset: d * rows * 4 * hid,
                ..DeviceMatMut::row_major(gates, rows, 4 * hid)
            },
            DeviceMatRef::row_major(inp, rows, s.input_size),
            DeviceMatRef::row_major(w.w_ih, 4 * hid, s.input_size).t(),
            1,
            true,
        )?;
    }
    if let Some(grid) = &mut ws.grid {
        let plan = grid.plan;
        // The barrier words are zero after every complete launch; zeroing them here also
        // recovers from a failed one.
        device.copy_to_device(&[0u32; 2], &mut grid.barrier)?;
        return device.launch_kernel_cooperative(
            grid.forward,
            plan.config(plan.forward_shared_bytes(&s)),
            &[
                batch.into(),
                frames.into(),
                hid_i.into(),
                (plan.units as i32).into(),
                (plan.forward_chunk as i32).into(),
                weights[0].w_hh.into(),
                weights[1].w_hh.into(),
                gates.into(),
                cells.into(),
                out.into(),
                (&mut grid.barrier).into(),
            ],
        );
    }
    device.launch(
        "lstm_transpose_w_hh",
        LaunchConfig::for_elements(ws.w_hh_t.len(), super::ELEMENTWISE_THREADS),
        &[
            hid_i.into(),
            weights[0].w_hh.into(),
            weights[1].w_hh.into(),
            (&mut ws.w_hh_t).into(),
        ],
    )?;
    device.launch(
        "lstm_recurrence_forward",
        recurrence_config(&s)?,
        &[
            batch.into(),
            frames.into(),
            hid_i.into(),
            (&ws.w_hh_t).into(),
            gates.into(),
            cells.into(),
            out.into(),
        ],
    )
}

/// [`lstm_backward`] on a kernel device: adds into `d_inp` (when given) and each direction's
/// parameter gradients, from `d_out` and what [`lstm_forward_launch`] wrote.
pub fn lstm_backward_launch(
    device: &KernelDevice,
    ws: &mut LstmWorkspace,
    d_inp: Option<&mut DeviceBuffer<f32>>,
    grads: [DeviceLstmGradients; 2],
    d_out: &DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    out: &DeviceBuffer<f32>,
    gates: &DeviceBuffer<f32>,
    cells: &DeviceBuffer<f32>,
    weights: [DeviceLstmWeights; 2],
) -> Result<(), DeviceError> {
    let s = ws.shape;
    let hid = s.hidden_size;
    let rows = s.batch * s.frames;
    lstm_check("inp", inp.len(), rows * s.input_size)?;
    lstm_check("out", out.len(), rows * 2 * hid)?;
    lstm_check("d_out", d_out.len(), rows * 2 * hid)?;
    lstm_check("gates", gates.len(), 2 * rows * 4 * hid)?;
    lstm_check("cells", cells.len(), 2 * rows * hid)?;
    for w in &weights {
        check_device_weights(w, &s)?;
    }
    for g in &grads {
        check_device_weights(
            &DeviceLstmWeights {
                w_ih: g.w_ih,
                w_hh: g.w_hh,
                b_ih: g.b_ih,
                b_hh: g.b_hh,
            },
            &s,
        )?;
    }
    if let Some(d_inp) = d_inp.as_deref() {
        lstm_check("d_inp", d_inp.len(), rows * s.input_size)?;
    }
    if rows == 0 || hid == 0 {
        return Ok(());
    }
    let [batch, frames, hid_i] = lstm_ints(&s)?;
    let [d_gates_fwd, d_gates_rev] = &mut ws.d_gates;
    if let Some(grid) = &mut ws.grid {
        let plan = grid.plan;
        device.copy_to_device(&[0u32; 2], &mut grid.barrier)?;
        device.launch_kernel_cooperative(
            grid.backward,
            plan.config(plan.backward_shared_bytes(&s)),
            &[
                batch.into(),
                frames.into(),
                hid_i.into(),
                (plan.units as i32).into(),
                (plan.backward_chunk as i32).into(),
                weights[0].w_hh.into(),
                weights[1].w_hh.into(),
                gates.into(),
                cells.into(),
                d_out.into(),
                d_gates_fwd.into(),
                d_gates_rev.into(),
                (&mut grid.barrier).into(),
            ],
        )?;
    } else {
        device.launch(
            "lstm_recurrence_backward",
            recurrence_config(&s)?,
            &[
                batch.into(),
                frames.into(),
                hid_i.into(),
                weights[0].w_hh.into(),
                weights[1].w_hh.into(),
                gates.into(),
                cells.into(),
                d_out.into(),
                d_gates_fwd.into(),
                d_gates_rev.into(),
            ],
        )?;
    }
    for (d, g) in grads.into_iter().enumerate() {
        let d_gates = &ws.d_gates[d];
        let d_pre = DeviceMatRef::row_major(d_gates, rows, 4 * hid);
        // d_W_ih += d_preᵀ · x over every frame (one split-k sum).
        matmul_sum_launch(
            device,
            DeviceMatMut::row_major(g.w_ih, 4 * hid, s.input_size),
            d_pre.t(),
            DeviceMatRef::row_major(inp, rows, s.input_size),
            1,
            true,
            &mut ws.partials,
        )?;
        // d_W_hh += Σ_b d_pre_b(t)ᵀ · h_b(t − 1 in processing order): sequences are items.
        if s.frames > 1 {
            let (first_grad_frame, first_h_frame) = if d == 0 { (1, 0) } else { (0, 1) };
            let d_pre_b = DeviceMatRef {
                buffer: d_gates,
                offset: first_grad_frame * 4 * hid,
                rows: s.frames - 1,
                cols: 4 * hid,
                row_stride: 4 * hid,
                col_stride: 1,
                batch_stride: s.frames * 4 * hid,
            };
            let h_prev = DeviceMatRef {
                buffer: out,
                offset: first_h_frame * 2 * hid + d * hid,
                rows: s.frames - 1,
                cols: hid,
                row_stride: 2 * hid,
                col_stride: 1,
                batch_stride: s.frames * 2 * hid,
            };
            matmul_sum_launch(
                device,
                DeviceMatMut::row_major(&mut *g.w_hh, 4 * hid, hid),
                d_pre_b.t(),
                h_prev,
                s.batch,
                true,
                &mut ws.partials,
            )?;
        }
        // Both biases receive the same column sums of d_pre.
        channel_sums_launch(device, g.b_ih, d_gates, rows, 4 * hid, 1)?;
        channel_sums_launch(device, g.b_hh, d_gates, rows, 4 * hid, 1)?;
    }
    if let Some(d_inp) = d_inp {
        for (d, w) in weights.iter().enumerate() {
            matmul_launch(
                device,
                DeviceMatMut::row_major(&mut *d_inp, rows, s.input_size),
                DeviceMatRef::row_major(&ws.d_gates[d], rows, 4 * hid),
                DeviceMatRef::row_major(w.w_ih, 4 * hid, s.input_size),
                1,
                true,
            )?;
        }
    }
    Ok(())
}

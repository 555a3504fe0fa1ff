//! Linear layer `out = inp·weightᵀ + bias`, as `torch.nn.Linear`, on rows of features.
//!
//! Shapes: `inp` (rows, in_features), `weight` (out_features, in_features), `bias`
//! (out_features), `out` (rows, out_features). `rows` is every leading dimension flattened
//! (for the network: batch · frames).
// llm.c style: the shapes are arguments.
#![allow(clippy::too_many_arguments)]

use super::check_len;
use super::matmul::{matmul, MatRef, Threads};

/// `out = inp·weightᵀ + bias`.
pub fn linear_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear out", out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    if let Some(bias) = bias {
        check_len("linear bias", bias.len(), out_features);
        for row in out.chunks_mut(out_features) {
            row.copy_from_slice(bias);
        }
    }
    let x = MatRef::row_major(inp, rows, in_features);
    let w_t = MatRef::row_major(weight, out_features, in_features).t();
    matmul(out, out_features, x, w_t, bias.is_some(), Threads::All);
}

/// Adds `d_out·weight` into `d_inp`, `d_outᵀ·inp` into `d_weight` and the column sums of
/// `d_out` into `d_bias`.
pub fn linear_backward(
    d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear d_out", d_out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    check_len(
        "linear d_weight",
        d_weight.len(),
        out_features * in_features,
    );
    let d_y = MatRef::row_major(d_out, rows, out_features);
    if let Some(d_bias) = d_bias {
        check_len("linear d_bias", d_bias.len(), out_features);
        for row in d_out.chunks(out_features) {
            d_bias.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
    }
    let x = MatRef::row_major(inp, rows, in_features);
    matmul(d_weight, in_features, d_y.t(), x, true, Threads::All);
    if let Some(d_inp) = d_inp {
        check_len("linear d_inp", d_inp.len(), rows * in_features);
        let w = MatRef::row_major(weight, out_features, in_features);
        matmul(d_inp, in_features, d_y, w, true, Threads::All);
    }
}

/// The definition, in plain loops: the oracle for [`linear_forward`].
pub fn linear_forward_reference(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear out", out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    if let Some(bias) = bias {
        check_len("linear bias", bias.len(), out_features);
    }
    for r in 0..rows {
        let x = &inp[r * in_features..][..in_features];
        for o in 0..out_features {
            let w = &weight[o * in_features..][..in_features];
            let dot: f32 = x.iter().zip(w).map(|(a, b)| a * b).sum();
            out[r * out_features + o] = dot + bias.map_or(0.0, |bias| bias[o]);
        }
    }
}

/// The definition, in plain loops: the oracle for [`linear_backward`].
pub fn linear_backward_reference(
    mut d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    mut d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear d_out", d_out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    check_len(
        "linear d_weight",
        d_weight.len(),
        out_features * in_features,
    );
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("linear d_inp", d_inp.len(), rows * in_features);
    }
    if let Some(d_bias) = d_bias.as_deref() {
        check_len("linear d_bias", d_bias.len(), out_features);
    }
    for r in 0..rows {
        for o in 0..out_features {
            let g = d_out[r * out_features + o];
            if let Some(d_bias) = d_bias.as_deref_mut() {
                d_bias[o] += g;
            }
            for i in 0..in_features {
                d_weight[o * in_features + i] += g * inp[r * in_features + i];
                if let Some(d_inp) = d_inp.as_deref_mut() {
                    d_inp[r * in_features + i] += g * weight[o * in_features + i];
                }
            }
        }
    }
}

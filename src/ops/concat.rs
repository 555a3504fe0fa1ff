//! Concatenation on the channel axis, NCHW float32, as `torch.cat((a, b), dim=1)`.
//!
//! Shapes: `a` (n, c_a, hw), `b` (n, c_b, hw), `out` (n, c_a + c_b, hw) with `hw = h·w`.
// llm.c style: the shapes are arguments.
#![allow(clippy::too_many_arguments)]

use rayon::prelude::*;

use super::check_len;

/// `out[:, :c_a] = a`, `out[:, c_a:] = b`.
pub fn concat_channels_forward(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat a", a.len(), n * c_a * hw);
    check_len("concat b", b.len(), n * c_b * hw);
    check_len("concat out", out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    out.par_chunks_mut(len_a + len_b)
        .zip(a.par_chunks(len_a).zip(b.par_chunks(len_b)))
        .for_each(|(out, (a, b))| {
            out[..len_a].copy_from_slice(a);
            out[len_a..].copy_from_slice(b);
        });
}

/// Adds `d_out[:, :c_a]` into `d_a` and `d_out[:, c_a:]` into `d_b`; either may be skipped.
pub fn concat_channels_backward(
    d_a: Option<&mut [f32]>,
    d_b: Option<&mut [f32]>,
    d_out: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat d_out", d_out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    let add = |dst: &mut [f32], src: &[f32]| dst.iter_mut().zip(src).for_each(|(d, &g)| *d += g);
    if let Some(d_a) = d_a {
        check_len("concat d_a", d_a.len(), n * len_a);
        d_a.par_chunks_mut(len_a)
            .zip(d_out.par_chunks(len_a + len_b))
            .for_each(|(d_a, d_out)| add(d_a, &d_out[..len_a]));
    }
    if let Some(d_b) = d_b {
        check_len("concat d_b", d_b.len(), n * len_b);
        d_b.par_chunks_mut(len_b)
            .zip(d_out.par_chunks(len_a + len_b))
            .for_each(|(d_b, d_out)| add(d_b, &d_out[len_a..]));
    }
}

/// The definition: the oracle for [`concat_channels_forward`].
pub fn concat_channels_forward_reference(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat a", a.len(), n * c_a * hw);
    check_len("concat b", b.len(), n * c_b * hw);
    check_len("concat out", out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    for i in 0..n {
        let out = &mut out[i * (len_a + len_b)..][..len_a + len_b];
        out[..len_a].copy_from_slice(&a[i * len_a..][..len_a]);
        out[len_a..].copy_from_slice(&b[i * len_b..][..len_b]);
    }
}

/// The definition: the oracle for [`concat_channels_backward`].
pub fn concat_channels_backward_reference(
    mut d_a: Option<&mut [f32]>,
    mut d_b: Option<&mut [f32]>,
    d_out: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat d_out", d_out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    if let Some(d_a) = d_a.as_deref() {
        check_len("concat d_a", d_a.len(), n * len_a);
    }
    if let Some(d_b) = d_b.as_deref() {
        check_len("concat d_b", d_b.len(), n * len_b);
    }
    for i in 0..n {
        let d_out = &d_out[i * (len_a + len_b)..][..len_a + len_b];
        if let Some(d_a) = d_a.as_deref_mut() {
            for (d, &g) in d_a[i * len_a..][..len_a].iter_mut().zip(&d_out[..len_a]) {
                *d += g;
            }
        }
        if let Some(d_b) = d_b.as_deref_mut() {
            for (d, &g) in d_b[i * len_b..][..len_b].iter_mut().zip(&d_out[len_a..]) {
                *d += g;
            }
        }
    }
}

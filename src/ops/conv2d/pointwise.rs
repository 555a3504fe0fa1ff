//! The 1×1 convolutions' forward under `--precision bf16` (the encoder's skip convolutions):
//! per sample, out (c_out × h·w) = W (c_out × c_in) · x (c_in × h·w) + bias, one bf16 GEMM
//! ([`crate::ops::matmul_bf16`]) with x packed into pair panels once per sample.

use std::cell::RefCell;

use super::{bf16_enabled, ConvGeometry, OutputStart};
use crate::ops::matmul::{MatRef, Threads};
use crate::ops::matmul_bf16::{matmul_bf16, Bf16Panels, Start};

/// Whether this path computes the forward of `g`: 1×1 stride-1 unpadded, at least 8 channels on
/// each side (fewer would pair a channel with zeros for most of the products), when bf16 is on.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    g.is_pointwise() && g.c_in.min(g.c_out) >= 8 && bf16_enabled()
}

/// `out` (n, c_out, h, w) = `start` + W·x per sample, products in bf16 with float32 sums.
pub(crate) fn forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    start: OutputStart,
    n: usize,
    g: &ConvGeometry,
) {
    let plane = g.h * g.w;
    let weight = MatRef::row_major(&weight[..g.c_out * g.c_in], g.c_out, g.c_in);
    let start = match start {
        OutputStart::Bias(Some(bias)) => Start::RowBias(bias),
        OutputStart::Bias(None) => Start::Zero,
        OutputStart::Accumulate => Start::Accumulate,
    };
    PANELS.with_borrow_mut(|panels| {
        for (x, y) in inp
            .chunks_exact(g.c_in * plane)
            .zip(out.chunks_exact_mut(g.c_out * plane))
            .take(n)
        {
            panels.repack(MatRef::row_major(x, g.c_in, plane));
            matmul_bf16(y, plane, weight, panels, start, Threads::All);
        }
    });
}

thread_local! {
    /// The packed input, kept per thread between calls: a fresh buffer each call page-faults
    /// in about as long as the product takes.
    static PANELS: RefCell<Bf16Panels> = const { RefCell::new(Bf16Panels::new()) };
}

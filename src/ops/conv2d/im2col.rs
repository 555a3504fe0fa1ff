//! The general fast path: im2col + GEMM over chunks of whole output rows, samples in
//! parallel (a batch smaller than the thread pool hands the threads to GEMM instead).

use rayon::prelude::*;

use super::{input_coord, ConvGeometry, OutputStart};
use crate::ops::matmul::{matmul, matmul_to_ptr, MatRef, Threads};
use crate::ops::SharedOut;

/// Samples run in parallel; a batch smaller than the thread pool lets GEMM take the threads.
fn gemm_threads(n: usize) -> Threads {
    if n < rayon::current_num_threads() {
        Threads::All
    } else {
        Threads::Single
    }
}

/// Fills `col` (taps × rows·w_out) with the input values each output pixel of output rows
/// `rows` reads through each kernel tap, zero where the tap falls on padding.
fn im2col(col: &mut [f32], inp: &[f32], g: &ConvGeometry, rows: std::ops::Range<usize>) {
    let span = rows.len() * g.w_out;
    if is_pixel_unshuffle(g) {
        // 2×2 stride 2 unpadded (the encoder's downsampling): each input row splits into its
        // even and odd columns, the col rows of taps kw = 0 and kw = 1.
        for ci in 0..g.c_in {
            for kh in 0..2 {
                let tap = (ci * 2 + kh) * 2;
                let (even, odd) = col[tap * span..(tap + 2) * span].split_at_mut(span);
                for (j, oh) in rows.clone().enumerate() {
                    let src = &inp[(ci * g.h + 2 * oh + kh) * g.w..][..2 * g.w_out];
                    let seg = j * g.w_out..(j + 1) * g.w_out;
                    deinterleave(src, &mut even[seg.clone()], &mut odd[seg]);
                }
            }
        }
        return;
    }
    for ci in 0..g.c_in {
        let plane = &inp[ci * g.h * g.w..][..g.h * g.w];
        for kh in 0..g.k {
            for kw in 0..g.k {
                let tap = (ci * g.k + kh) * g.k + kw;
                let dst = &mut col[tap * span..][..span];
                for (j, oh) in rows.clone().enumerate() {
                    let seg = &mut dst[j * g.w_out..][..g.w_out];
                    let Some(ih) = input_coord(oh, kh, g.stride, g.pad, g.h) else {
                        seg.fill(0.0);
                        continue;
                    };
                    let src = &plane[ih * g.w..][..g.w];
                    if g.stride == 1 {
                        // iw = ow + kw − pad is in range for ow in [lo, hi).
                        let lo = g.pad.saturating_sub(kw).min(g.w_out);
                        let hi = (g.w + g.pad).saturating_sub(kw).clamp(lo, g.w_out);
                        seg[..lo].fill(0.0);
                        seg[lo..hi].copy_from_slice(&src[lo + kw - g.pad..hi + kw - g.pad]);
                        seg[hi..].fill(0.0);
                    } else {
                        for (ow, v) in seg.iter_mut().enumerate() {
                            *v =
                                input_coord(ow, kw, g.stride, g.pad, g.w).map_or(0.0, |iw| src[iw]);
                        }
                    }
                }
            }
        }
    }
}

/// Adds each column of `col` (taps × rows·w_out) back onto the input pixels it was read from:
/// the adjoint of [`im2col`].
fn col2im_add(d_inp: &mut [f32], col: &[f32], g: &ConvGeometry, rows: std::ops::Range<usize>) {
    let span = rows.len() * g.w_out;
    if is_pixel_unshuffle(g) {
        for ci in 0..g.c_in {
            for kh in 0..2 {
                let tap = (ci * 2 + kh) * 2;
                let (even, odd) = col[tap * span..(tap + 2) * span].split_at(span);
                for (j, oh) in rows.clone().enumerate() {
                    let dst = &mut d_inp[(ci * g.h + 2 * oh + kh) * g.w..][..2 * g.w_out];
                    let seg = j * g.w_out..(j + 1) * g.w_out;
                    interleave_add(dst, &even[seg.clone()], &odd[seg]);
                }
            }
        }
        return;
    }
    for ci in 0..g.c_in {
        let plane = &mut d_inp[ci * g.h * g.w..][..g.h * g.w];
        for kh in 0..g.k {
            for kw in 0..g.k {
                let tap = (ci * g.k + kh) * g.k + kw;
                let src = &col[tap * span..][..span];
                for (j, oh) in rows.clone().enumerate() {
                    let seg = &src[j * g.w_out..][..g.w_out];
                    let Some(ih) = input_coord(oh, kh, g.stride, g.pad, g.h) else {
                        continue;
                    };
                    let dst = &mut plane[ih * g.w..][..g.w];
                    if g.stride == 1 {
                        let lo = g.pad.saturating_sub(kw).min(g.w_out);
                        let hi = (g.w + g.pad).saturating_sub(kw).clamp(lo, g.w_out);
                        let dst = &mut dst[lo + kw - g.pad..hi + kw - g.pad];
                        for (d, &v) in dst.iter_mut().zip(&seg[lo..hi]) {
                            *d += v;
                        }
                    } else if g.pad == 0 {
                        for (ow, &v) in seg.iter().enumerate() {
                            dst[ow * g.stride + kw] += v;
                        }
                    } else {
                        for (ow, &v) in seg.iter().enumerate() {
                            if let Some(iw) = input_coord(ow, kw, g.stride, g.pad, g.w) {
                                dst[iw] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Forward: `out` (n, c_out, h_out, w_out) = conv(inp, weight), starting from `start`.
pub(crate) fn conv_gemm_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    start: OutputStart,
    n: usize,
    g: &ConvGeometry,
) {
    let (in_len, out_plane) = (g.c_in * g.h * g.w, g.h_out * g.w_out);
    let threads = gemm_threads(n);
    let weights = MatRef::row_major(weight, g.c_out, g.taps());
    if threads == Threads::All {
        return forward_by_chunks(out, inp, weights, start, n, g);
    }
    out.par_chunks_mut(g.c_out * out_plane)
        .zip(inp.par_chunks(in_len))
        .for_each(|(out, inp)| {
            let accumulate = match start {
                OutputStart::Bias(bias) => {
                    if let Some(bias) = bias {
                        for (plane, &b) in out.chunks_mut(out_plane).zip(bias) {
                            plane.fill(b);
                        }
                    }
                    bias.is_some()
                }
                OutputStart::Accumulate => true,
            };
            if g.is_pointwise() {
                let inp = MatRef::row_major(inp, g.c_in, out_plane);
                matmul(out, out_plane, weights, inp, accumulate, threads);
                return;
            }
            let rows_per_chunk = g.rows_per_chunk();
            let mut col = vec![0.0f32; g.taps() * rows_per_chunk * g.w_out];
            for r0 in (0..g.h_out).step_by(rows_per_chunk) {
                let rows = r0..(r0 + rows_per_chunk).min(g.h_out);
                let span = rows.len() * g.w_out;
                im2col(&mut col, inp, g, rows);
                let col = MatRef::row_major(&col[..g.taps() * span], g.taps(), span);
                let dst = &mut out[r0 * g.w_out..];
                matmul(dst, out_plane, weights, col, accumulate, threads);
            }
        });
}

/// The forward for batches smaller than the thread pool (inference on one recording): row
/// chunks of every sample in parallel, each a single-threaded GEMM into its own output columns.
/// (GEMM's own threading on chunk-sized products spent more CPU than it saved.)
fn forward_by_chunks(
    out: &mut [f32],
    inp: &[f32],
    weights: MatRef,
    start: OutputStart,
    n: usize,
    g: &ConvGeometry,
) {
    let (in_len, out_plane) = (g.c_in * g.h * g.w, g.h_out * g.w_out);
    let accumulate = match start {
        OutputStart::Bias(Some(bias)) => {
            out.par_chunks_mut(out_plane)
                .enumerate()
                .for_each(|(plane, values)| values.fill(bias[plane % g.c_out]));
            true
        }
        OutputStart::Bias(None) => false,
        OutputStart::Accumulate => true,
    };
    let rows_per_chunk = g.rows_per_chunk();
    let chunks = g.h_out.div_ceil(rows_per_chunk);
    // Task (b, chunk) writes only its own output rows of sample b.
    let shared = SharedOut(out.as_mut_ptr());
    let col_len = if g.is_pointwise() {
        0
    } else {
        g.taps() * rows_per_chunk * g.w_out
    };
    (0..n * chunks).into_par_iter().for_each_init(
        || vec![0.0f32; col_len],
        |col, task| {
            let (b, chunk) = (task / chunks, task % chunks);
            let rows = chunk * rows_per_chunk..((chunk + 1) * rows_per_chunk).min(g.h_out);
            let span = rows.len() * g.w_out;
            let inp = &inp[b * in_len..][..in_len];
            let col = if g.is_pointwise() {
                MatRef {
                    data: &inp[rows.start * g.w_out..],
                    rows: g.c_in,
                    cols: span,
                    row_stride: out_plane,
                    col_stride: 1,
                }
            } else {
                im2col(col, inp, g, rows.clone());
                MatRef::row_major(&col[..g.taps() * span], g.taps(), span)
            };
            // SAFETY: this task alone writes output columns `rows` (all channels) of sample `b`:
            // a c_out × span block with rows out_plane apart, inside the output tensor.
            unsafe {
                let dst = shared
                    .ptr()
                    .add(b * g.c_out * out_plane + rows.start * g.w_out);
                matmul_to_ptr(dst, out_plane, weights, col, accumulate);
            }
        },
    );
}

/// Backward data: `d_inp` (n, c_in, h, w) += convᵀ(d_out, weight).
pub(crate) fn conv_gemm_backward_data(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    n: usize,
    g: &ConvGeometry,
) {
    let (in_len, out_plane) = (g.c_in * g.h * g.w, g.h_out * g.w_out);
    let threads = gemm_threads(n);
    let weights_t = MatRef::row_major(weight, g.c_out, g.taps()).t();
    if threads == Threads::All && is_pixel_unshuffle(g) {
        return backward_data_unshuffle_by_chunks(d_inp, d_out, weights_t, n, g);
    }
    d_inp
        .par_chunks_mut(in_len)
        .zip(d_out.par_chunks(g.c_out * out_plane))
        .for_each(|(d_inp, d_out)| {
            if g.is_pointwise() {
                let d_out = MatRef::row_major(d_out, g.c_out, out_plane);
                matmul(d_inp, out_plane, weights_t, d_out, true, threads);
                return;
            }
            let rows_per_chunk = g.rows_per_chunk();
            let mut col = vec![0.0f32; g.taps() * rows_per_chunk * g.w_out];
            for r0 in (0..g.h_out).step_by(rows_per_chunk) {
                let rows = r0..(r0 + rows_per_chunk).min(g.h_out);
                let span = rows.len() * g.w_out;
                let d_out = MatRef {
                    data: &d_out[r0 * g.w_out..],
                    rows: g.c_out,
                    cols: span,
                    row_stride: out_plane,
                    col_stride: 1,
                };
                matmul(
                    &mut col[..g.taps() * span],
                    span,
                    weights_t,
                    d_out,
                    false,
                    threads,
                );
                col2im_add(d_inp, &col[..g.taps() * span], g, rows);
            }
        });
}

/// The data gradient of a 2×2 stride-2 convolution (the decoder's upsampling, as a transposed
/// convolution) for batches smaller than the thread pool: each output row reads only its own two
/// input rows, so row chunks of every sample run in parallel, each a single-threaded GEMM into a
/// column block and its pixel shuffle onto its own input rows. (One sample's chunks in sequence
/// left a core idle through every col2im.)
fn backward_data_unshuffle_by_chunks(
    d_inp: &mut [f32],
    d_out: &[f32],
    weights_t: MatRef,
    n: usize,
    g: &ConvGeometry,
) {
    let (in_len, out_plane) = (g.c_in * g.h * g.w, g.h_out * g.w_out);
    let rows_per_chunk = g.rows_per_chunk();
    let chunks = g.h_out.div_ceil(rows_per_chunk);
    // Task (b, chunk) writes only the input rows its gradient rows read.
    let shared = SharedOut(d_inp.as_mut_ptr());
    (0..n * chunks).into_par_iter().for_each_init(
        || vec![0.0f32; g.taps() * rows_per_chunk * g.w_out],
        |col, task| {
            let (b, chunk) = (task / chunks, task % chunks);
            let rows = chunk * rows_per_chunk..((chunk + 1) * rows_per_chunk).min(g.h_out);
            let span = rows.len() * g.w_out;
            let d_out = MatRef {
                data: &d_out[b * g.c_out * out_plane + rows.start * g.w_out..],
                rows: g.c_out,
                cols: span,
                row_stride: out_plane,
                col_stride: 1,
            };
            let col = &mut col[..g.taps() * span];
            matmul(col, span, weights_t, d_out, false, Threads::Single);
            for ci in 0..g.c_in {
                for kh in 0..2 {
                    let tap = (ci * 2 + kh) * 2;
                    let (even, odd) = col[tap * span..(tap + 2) * span].split_at(span);
                    for (j, oh) in rows.clone().enumerate() {
                        // SAFETY: input row 2·oh + kh of channel ci in sample b is read by output
                        // row oh alone, which only this task computes; the row lies inside the
                        // d_inp tensor (2·w_out ≤ w, 2·oh + kh < h).
                        let dst = unsafe {
                            std::slice::from_raw_parts_mut(
                                shared
                                    .ptr()
                                    .add(b * in_len + (ci * g.h + 2 * oh + kh) * g.w),
                                2 * g.w_out,
                            )
                        };
                        let seg = j * g.w_out..(j + 1) * g.w_out;
                        interleave_add(dst, &even[seg.clone()], &odd[seg]);
                    }
                }
            }
        },
    );
}

/// Backward weight: `d_weight` (c_out, c_in, k, k) += Σ d_out · im2col(inp)ᵀ over the batch.
pub(crate) fn conv_gemm_backward_weight(
    d_weight: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    n: usize,
    g: &ConvGeometry,
) {
    let (in_len, out_plane) = (g.c_in * g.h * g.w, g.h_out * g.w_out);
    let threads = gemm_threads(n);
    let weight_len = g.c_out * g.taps();
    let out_len = g.c_out * out_plane;
    let partial = crate::ops::ordered_sum(n, weight_len, |acc, b| {
        let d_out = &d_out[b * out_len..(b + 1) * out_len];
        let inp = &inp[b * in_len..(b + 1) * in_len];
        if g.is_pointwise() {
            let d_out = MatRef::row_major(d_out, g.c_out, out_plane);
            let inp_t = MatRef::row_major(inp, g.c_in, out_plane).t();
            matmul(acc, g.taps(), d_out, inp_t, true, threads);
            return;
        }
        let rows_per_chunk = g.rows_per_chunk();
        let mut col = vec![0.0f32; g.taps() * rows_per_chunk * g.w_out];
        for r0 in (0..g.h_out).step_by(rows_per_chunk) {
            let rows = r0..(r0 + rows_per_chunk).min(g.h_out);
            let span = rows.len() * g.w_out;
            im2col(&mut col, inp, g, rows);
            let col_t = MatRef::row_major(&col[..g.taps() * span], g.taps(), span).t();
            let d_out = MatRef {
                data: &d_out[r0 * g.w_out..],
                rows: g.c_out,
                cols: span,
                row_stride: out_plane,
                col_stride: 1,
            };
            matmul(acc, g.taps(), d_out, col_t, true, threads);
        }
    });
    if let Some(partial) = partial {
        d_weight.iter_mut().zip(&partial).for_each(|(d, p)| *d += p);
    }
}

/// 2×2 stride 2 without padding: im2col is a pixel unshuffle, handled with vector shuffles.
fn is_pixel_unshuffle(g: &ConvGeometry) -> bool {
    g.k == 2 && g.stride == 2 && g.pad == 0
}

macro_rules! multiversion {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),*) $body:block) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) {
                    body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn narrow($($arg: $ty),*) {
                    body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F is available (checked).
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 is available (checked).
                    return unsafe { narrow($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}
pub(super) use multiversion;

multiversion! {
    /// `even[i] = src[2i]`, `odd[i] = src[2i + 1]`.
    pub(crate) fn deinterleave(src: &[f32], even: &mut [f32], odd: &mut [f32]) {
        for ((pair, e), o) in src.chunks_exact(2).zip(even.iter_mut()).zip(odd.iter_mut()) {
            *e = pair[0];
            *o = pair[1];
        }
    }
}

multiversion! {
    /// `dst[2i] += even[i]`, `dst[2i + 1] += odd[i]`.
    fn interleave_add(dst: &mut [f32], even: &[f32], odd: &[f32]) {
        for ((pair, &e), &o) in dst.chunks_exact_mut(2).zip(even).zip(odd) {
            pair[0] += e;
            pair[1] += o;
        }
    }
}

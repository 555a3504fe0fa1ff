//! Conv2d (square k×k kernel, stride, zero padding, bias), NCHW float32, as `torch.nn.Conv2d`.
//!
//! Shapes: `inp` (n, c_in, h, w), `weight` (c_out, c_in, k, k), `bias` (c_out),
//! `out` (n, c_out, h_out, w_out) with `h_out = (h + 2·pad − k) / stride + 1` (floor), likewise `w_out`.
//!
//! Three engine functions (`forward_into`, `backward_data_into`, `backward_weight_into`)
//! pick the fast path per layer: `direct` (register-blocked AVX-512/AVX2 kernels for stride-1
//! layers with few channels), `implicit` (implicit GEMM over flattened padded planes for
//! stride-1 layers with more than 16 output channels), `stride2` (the 2×2 stride-2 data
//! gradient, i.e. the decoder's upsampling) or `im2col` (im2col + GEMM over row
//! chunks, everything else); opt-in, `winograd` (F(2×2, 3×3) for the 3×3 layers with more than
//! 16 channels, `MTOSI_CONV_WINOGRAD=1`) and `bf16` (the implicit kernel's and the direct
//! kernel's forwards with ≥ 8 channels a side, and the 2×2 and 3×3 weight gradients with ≥ 8
//! output channels, with bf16 products, `MTOSI_CONV_BF16=1` or [`set_conv_precision`],
//! AVX512-BF16 CPUs only; it wins over Winograd where both apply; under the same switch
//! `pointwise` runs the 1×1 layers' forwards as one bf16 GEMM per sample, and on CPUs with AMX
//! `amx` runs the bf16 forwards on tiles, `MTOSI_AMX=0` keeping them on AVX512-BF16).
//! ConvTranspose2d runs on the same three functions, as this convolution's adjoint. In evaluation
//! mode a [`ConvFinish`] (the following BatchNorm2d and leaky ReLU, and a residual sum) is applied
//! as the forward stores its sums (`conv2d_forward_finished`).
// llm.c style: the shapes are arguments, so the argument lists are long on purpose.
#![allow(clippy::too_many_arguments)]

mod amx;
mod bf16;
mod direct;
mod im2col;
mod implicit;
mod launch;
mod pointwise;
mod stride2;
mod winograd;

pub(crate) use bf16::bf16_pair;
pub use bf16::{
    bf16_enabled, bf16_supported, check_bf16_supported, set_conv_precision, Bf16Unsupported,
    ConvPrecision, BF16_VAR,
};
#[cfg(target_arch = "x86_64")]
pub(crate) use bf16::{convert_pairs, to_bf16};
pub use direct::FORCE_ISA_VAR;
pub(crate) use direct::{detect_isa, Isa};
pub use implicit::IMPLICIT_VAR;
pub use launch::{
    backward_data_into_launch, backward_weight_into_launch, channel_sums_launch,
    conv2d_backward_launch, conv2d_forward_launch, fill_bias_launch, forward_into_launch,
    ConvWorkspace, DeviceConvGeometry, DeviceOutputStart,
};
pub use winograd::WINOGRAD_VAR;

use rayon::prelude::*;

use super::batchnorm::{eval_scale_shift, scale_shift_leaky};
use super::{check_len, sums};

/// Output length of one spatial dimension: `(size + 2·pad − k) / stride + 1`, floored as PyTorch.
pub fn conv2d_output_size(size: usize, k: usize, stride: usize, pad: usize) -> usize {
    assert!(stride > 0, "conv2d: stride must be positive");
    assert!(
        size + 2 * pad >= k,
        "conv2d: kernel {k} is larger than the padded input {}",
        size + 2 * pad
    );
    (size + 2 * pad - k) / stride + 1
}

/// out = conv(inp, weight) + bias.
pub fn conv2d_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) {
    let geometry = forward_geometry(
        out.len(),
        inp.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        n,
        [c_in, h, w, c_out, k, stride, pad],
    );
    forward_into(out, inp, weight, OutputStart::Bias(bias), n, &geometry);
}

/// out = finish(conv(inp, weight) + bias), [+ out for a residual]: the evaluation-mode
/// BatchNorm2d and leaky ReLU of `finish` applied as the sums are stored (see [`ConvFinish`]);
/// the same values as [`conv2d_forward`] and then those ops.
pub fn conv2d_forward_finished(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    finish: &ConvFinish,
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) {
    let geometry = forward_geometry(
        out.len(),
        inp.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        n,
        [c_in, h, w, c_out, k, stride, pad],
    );
    forward_finishing(out, inp, weight, bias, finish, n, &geometry);
}

/// The forward's geometry, after checking the buffers against it.
fn forward_geometry(
    out_len: usize,
    inp_len: usize,
    weight_len: usize,
    bias_len: Option<usize>,
    n: usize,
    [c_in, h, w, c_out, k, stride, pad]: [usize; 7],
) -> ConvGeometry {
    let (h_out, w_out) = check_shapes(
        out_len, inp_len, weight_len, bias_len, n, c_in, h, w, c_out, k, stride, pad,
    );
    ConvGeometry {
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
        h_out,
        w_out,
    }
}

/// Adds the gradients of `conv2d_forward` into `d_inp` (n, c_in, h, w), `d_weight`
/// (c_out, c_in, k, k) and `d_bias` (c_out), given `d_out` (n, c_out, h_out, w_out).
pub fn conv2d_backward(
    d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) {
    backward(
        d_inp, false, d_weight, d_bias, d_out, inp, weight, n, c_in, h, w, c_out, k, stride, pad,
    )
}

/// [`conv2d_backward`] that writes `d_inp` instead of adding to it (whatever it held), for a
/// fresh input gradient: no zeros to write first and read back.
pub fn conv2d_backward_fresh(
    d_inp: &mut [f32],
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) {
    backward(
        Some(d_inp),
        true,
        d_weight,
        d_bias,
        d_out,
        inp,
        weight,
        n,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
    )
}

fn backward(
    d_inp: Option<&mut [f32]>,
    overwrite: bool,
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) {
    let (h_out, w_out) = check_shapes(
        d_out.len(),
        inp.len(),
        weight.len(),
        d_bias.as_deref().map(<[f32]>::len),
        n,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
    );
    check_len("conv2d d_weight", d_weight.len(), weight.len());
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("conv2d d_inp", d_inp.len(), inp.len());
    }
    let geometry = ConvGeometry {
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
        h_out,
        w_out,
    };
    if let Some(d_bias) = d_bias {
        add_channel_sums(d_bias, d_out, n, c_out, h_out * w_out);
    }
    backward_weight_into(d_weight, d_out, inp, n, &geometry);
    match d_inp {
        Some(d_inp) if overwrite => {
            backward_data_from(d_inp, d_out, weight, None, None, n, &geometry)
        }
        Some(d_inp) => backward_data_into(d_inp, d_out, weight, n, &geometry),
        None => {}
    }
}

fn check_shapes(
    out_len: usize,
    inp_len: usize,
    weight_len: usize,
    bias_len: Option<usize>,
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> (usize, usize) {
    let h_out = conv2d_output_size(h, k, stride, pad);
    let w_out = conv2d_output_size(w, k, stride, pad);
    check_len("conv2d out", out_len, n * c_out * h_out * w_out);
    check_len("conv2d inp", inp_len, n * c_in * h * w);
    check_len("conv2d weight", weight_len, c_out * c_in * k * k);
    if let Some(len) = bias_len {
        check_len("conv2d bias", len, c_out);
    }
    (h_out, w_out)
}

/// Input coordinate read by output coordinate `o` through kernel tap `t`, if it is not padding.
#[inline]
pub(crate) fn input_coord(
    o: usize,
    t: usize,
    stride: usize,
    pad: usize,
    size: usize,
) -> Option<usize> {
    (o * stride + t).checked_sub(pad).filter(|&i| i < size)
}

/// The definition, in plain loops: the oracle for [`conv2d_forward`].
pub fn conv2d_forward_reference(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) {
    let (h_out, w_out) = check_shapes(
        out.len(),
        inp.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        n,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
    );
    for b in 0..n {
        for co in 0..c_out {
            for oh in 0..h_out {
                for ow in 0..w_out {
                    let mut sum = bias.map_or(0.0, |bias| bias[co]);
                    for ci in 0..c_in {
                        for kh in 0..k {
                            let Some(ih) = input_coord(oh, kh, stride, pad, h) else {
                                continue;
                            };
                            for kw in 0..k {
                                let Some(iw) = input_coord(ow, kw, stride, pad, w) else {
                                    continue;
                                };
                                sum += inp[((b * c_in + ci) * h + ih) * w + iw]
                                    * weight[((co * c_in + ci) * k + kh) * k + kw];
                            }
                        }
                    }
                    out[((b * c_out + co) * h_out + oh) * w_out + ow] = sum;
                }
            }
        }
    }
}

/// The definition, in plain loops: the oracle for [`conv2d_backward`].
pub fn conv2d_backward_reference(
    mut d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
) {
    let (h_out, w_out) = check_shapes(
        d_out.len(),
        inp.len(),
        weight.len(),
        d_bias.as_deref().map(<[f32]>::len),
        n,
        c_in,
        h,
        w,
        c_out,
        k,
        stride,
        pad,
    );
    check_len("conv2d d_weight", d_weight.len(), weight.len());
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("conv2d d_inp", d_inp.len(), inp.len());
    }
    // Parameter gradients sum over the whole batch: accumulate them in f64 so that the oracle's
    // own rounding stays far below any tolerance.
    let mut d_weight_sum = vec![0.0f64; d_weight.len()];
    let mut d_bias_sum = vec![0.0f64; c_out];
    for b in 0..n {
        for co in 0..c_out {
            for oh in 0..h_out {
                for ow in 0..w_out {
                    let g = d_out[((b * c_out + co) * h_out + oh) * w_out + ow];
                    d_bias_sum[co] += g as f64;
                    for ci in 0..c_in {
                        for kh in 0..k {
                            let Some(ih) = input_coord(oh, kh, stride, pad, h) else {
                                continue;
                            };
                            for kw in 0..k {
                                let Some(iw) = input_coord(ow, kw, stride, pad, w) else {
                                    continue;
                                };
                                let i = ((b * c_in + ci) * h + ih) * w + iw;
                                let wi = ((co * c_in + ci) * k + kh) * k + kw;
                                d_weight_sum[wi] += g as f64 * inp[i] as f64;
                                if let Some(d_inp) = d_inp.as_deref_mut() {
                                    d_inp[i] += g * weight[wi];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    for (d, s) in d_weight.iter_mut().zip(&d_weight_sum) {
        *d += *s as f32;
    }
    if let Some(d_bias) = d_bias {
        for (d, s) in d_bias.iter_mut().zip(&d_bias_sum) {
            *d += *s as f32;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The fast paths (in the submodules) share this description of one convolution. ConvTranspose2d
// runs on them too, as this convolution's adjoint.

/// The sizes of one convolution (per sample).
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConvGeometry {
    pub c_in: usize,
    pub h: usize,
    pub w: usize,
    pub c_out: usize,
    pub k: usize,
    pub stride: usize,
    pub pad: usize,
    pub h_out: usize,
    pub w_out: usize,
}

impl ConvGeometry {
    /// Rows of the im2col matrix: one per (input channel, kernel row, kernel column).
    pub(crate) fn taps(&self) -> usize {
        self.c_in * self.k * self.k
    }

    /// A 1×1 stride-1 unpadded convolution reads its input as the im2col matrix itself.
    pub(crate) fn is_pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Output rows per chunk: im2col blocks of about 1 MiB, so that the block GEMM reads back
    /// is still in L2, but at least ~512 pixels wide, so that GEMM amortises packing the
    /// weights (large for the deep layers).
    pub(crate) fn rows_per_chunk(&self) -> usize {
        const CHUNK_FLOATS: usize = 256 * 1024;
        const MIN_SPAN: usize = 512;
        let w_out = self.w_out.max(1);
        let by_cache = CHUNK_FLOATS / (self.taps() * w_out).max(1);
        let by_span = MIN_SPAN.div_ceil(w_out);
        by_cache.max(by_span).clamp(1, self.h_out.max(1))
    }
}

/// How the forward output starts before the products are added: the bias, or what is there.
#[derive(Clone, Copy)]
pub(crate) enum OutputStart<'a> {
    Bias(Option<&'a [f32]>),
    Accumulate,
}

/// What an evaluation-mode forward does to each output value `v` (the bias and the products
/// summed) as it stores it: `lrelu(v · scale + shift)` with the BatchNorm2d that follows the
/// convolution folded to one scale and shift per output channel, then, for a `residual`, added
/// to what the output already holds (the encoder's skip branch). The same values, bit for bit,
/// as the convolution, then `ops::batchnorm::batchnorm_leaky_relu_forward_eval`, then the sum,
/// in one pass over the output instead of three where the kernel takes it (the bf16, the
/// implicit-GEMM and the AVX-512 direct forwards) and in a pass after the convolution elsewhere.
#[derive(Clone, Debug)]
pub struct ConvFinish {
    scale_shift: Vec<(f32, f32)>,
    slope: f32,
    residual: bool,
}

impl ConvFinish {
    /// `torch.nn.BatchNorm2d` in evaluation mode (its weight, bias, running statistics, eps),
    /// then `F.leaky_relu` of `slope`; with `residual`, added to the output's values.
    pub fn batchnorm_leaky_relu(
        weight: &[f32],
        bias: &[f32],
        running_mean: &[f32],
        running_var: &[f32],
        eps: f32,
        slope: f32,
        residual: bool,
    ) -> Self {
        for (name, len) in [
            ("bias", bias.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
        ] {
            check_len(&format!("conv finish batchnorm {name}"), len, weight.len());
        }
        Self {
            scale_shift: eval_scale_shift(weight, bias, running_mean, running_var, eps),
            slope,
            residual,
        }
    }

    /// Output channels it is for.
    pub fn channels(&self) -> usize {
        self.scale_shift.len()
    }

    /// The finished value of sum `v` of channel `co`, before any residual.
    #[inline(always)]
    pub(crate) fn value(&self, co: usize, v: f32) -> f32 {
        scale_shift_leaky(v, self.scale_shift[co], self.slope)
    }

    pub(crate) fn residual(&self) -> bool {
        self.residual
    }

    /// [`ConvFinish::value`] of 16 sums of channel `co` (multiply, add, then the leaky ReLU's
    /// select `v > 0 ? v : v · slope`), for the AVX-512 kernels' stores.
    ///
    /// # Safety
    /// AVX-512F must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    pub(crate) unsafe fn value_avx512(
        &self,
        co: usize,
        v: std::arch::x86_64::__m512,
    ) -> std::arch::x86_64::__m512 {
        use std::arch::x86_64::*;
        let (scale, shift) = self.scale_shift[co];
        let v = _mm512_add_ps(
            _mm512_mul_ps(v, _mm512_set1_ps(scale)),
            _mm512_set1_ps(shift),
        );
        let positive = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(v, _mm512_setzero_ps());
        _mm512_mask_blend_ps(positive, _mm512_mul_ps(v, _mm512_set1_ps(self.slope)), v)
    }

    /// For a kernel that does not finish its own stores: `compute` writes the plain sums,
    /// then a pass finishes them (n, c, plane): in place, or, for a residual, from a buffer of
    /// their own into `out` (which holds the residual).
    fn after(&self, out: &mut [f32], plane: usize, compute: impl FnOnce(&mut [f32])) {
        let c = self.channels();
        let slope = self.slope;
        if !self.residual {
            compute(out);
            out.par_chunks_mut(plane).enumerate().for_each(|(i, out)| {
                let scale_shift = self.scale_shift[i % c];
                for o in out.iter_mut() {
                    *o = scale_shift_leaky(*o, scale_shift, slope);
                }
            });
            return;
        }
        let mut sums = vec![0.0f32; out.len()];
        compute(&mut sums);
        out.par_chunks_mut(plane)
            .zip(sums.par_chunks(plane))
            .enumerate()
            .for_each(|(i, (out, sums))| {
                let scale_shift = self.scale_shift[i % c];
                for (o, &v) in out.iter_mut().zip(sums) {
                    *o += scale_shift_leaky(v, scale_shift, slope);
                }
            });
    }
}

/// Forward from the bias, each value finished by `finish` as it is stored (see [`ConvFinish`]).
pub(crate) fn forward_finishing(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    finish: &ConvFinish,
    n: usize,
    g: &ConvGeometry,
) {
    check_len("conv finish channels", finish.channels(), g.c_out);
    let start = OutputStart::Bias(bias);
    // The kernel `forward_into` takes: these three store through the finish.
    let stored = Some(finish);
    match ForwardKernel::for_geometry(g) {
        ForwardKernel::Bf16 => return bf16::forward(out, inp, weight, start, stored, n, g),
        ForwardKernel::Implicit => return implicit::forward(out, inp, weight, start, stored, n, g),
        ForwardKernel::Direct if direct::forward_finishes(g) => {
            return direct::forward(out, inp, weight, start, stored, n, g)
        }
        _ => {}
    }
    finish.after(out, g.h_out * g.w_out, |sums| {
        forward_into(sums, inp, weight, start, n, g)
    });
}

/// The forward kernels, in the order they are tried.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum ForwardKernel {
    Bf16,
    Pointwise,
    Winograd,
    Implicit,
    Direct,
    Im2col,
}

impl ForwardKernel {
    /// The first of the kernels that computes `g` (the opt-in ones only when on).
    fn for_geometry(g: &ConvGeometry) -> Self {
        if bf16::applies(g) {
            Self::Bf16
        } else if pointwise::applies(g) {
            Self::Pointwise
        } else if winograd::applies(g) {
            Self::Winograd
        } else if implicit::applies(g) {
            Self::Implicit
        } else if direct::forward_applies(g) {
            Self::Direct
        } else {
            Self::Im2col
        }
    }
}

/// Forward: `out` (n, c_out, h_out, w_out) = conv(inp, weight), starting from `start`.
pub(crate) fn forward_into(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    start: OutputStart,
    n: usize,
    g: &ConvGeometry,
) {
    match ForwardKernel::for_geometry(g) {
        ForwardKernel::Bf16 => bf16::forward(out, inp, weight, start, None, n, g),
        ForwardKernel::Pointwise => pointwise::forward(out, inp, weight, start, n, g),
        ForwardKernel::Winograd => winograd::forward(out, inp, weight, start, n, g),
        ForwardKernel::Implicit => implicit::forward(out, inp, weight, start, None, n, g),
        ForwardKernel::Direct => direct::forward(out, inp, weight, start, None, n, g),
        ForwardKernel::Im2col => im2col::conv_gemm_forward(out, inp, weight, start, n, g),
    }
}

/// Backward data: `d_inp` (n, c_in, h, w) += convᵀ(d_out, weight).
pub(crate) fn backward_data_into(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    n: usize,
    g: &ConvGeometry,
) {
    if let Some(adjoint) = gathering_adjoint(g, n) {
        let flipped = flip_kernel(weight, g.c_out, g.c_in, g.k);
        forward_into(d_inp, d_out, &flipped, OutputStart::Accumulate, n, &adjoint);
    } else if stride2::backward_data_applies(g) {
        stride2::backward_data(d_inp, d_out, weight, None, n, g);
    } else {
        im2col::conv_gemm_backward_data(d_inp, d_out, weight, n, g);
    }
}

/// With stride 1 the data gradient is itself a convolution of `d_out`, with the kernel rotated
/// by 180° and its channel axes swapped, padded by k − 1 − pad: that convolution, where a fast
/// forward computes it (with few channels the direct kernel; otherwise im2col + GEMM then
/// col2im costs the same). Batches smaller than the thread pool (inference on one recording,
/// through ConvTranspose2d) take the gather form whatever the kernel, its row chunks run in
/// parallel and col2im's scatter cannot, but for fewer than 4 output channels (the decoder's
/// last layer, 8 → 1), where im2col's GEMM of one row is slower than the scatter (1088 × 176
/// pixels, 2 threads: 1.4–1.6 ms against 0.86–0.90 ms).
fn gathering_adjoint(g: &ConvGeometry, n: usize) -> Option<ConvGeometry> {
    let adjoint = (g.stride == 1 && g.pad < g.k).then(|| ConvGeometry {
        c_in: g.c_out,
        h: g.h_out,
        w: g.w_out,
        c_out: g.c_in,
        k: g.k,
        stride: 1,
        pad: g.k - 1 - g.pad,
        h_out: g.h,
        w_out: g.w,
    })?;
    let small_batch = n < rayon::current_num_threads() && adjoint.c_out >= 4;
    (small_batch
        || direct::forward_applies(&adjoint)
        || implicit::applies(&adjoint)
        || bf16::applies(&adjoint)
        || pointwise::applies(&adjoint))
    .then_some(adjoint)
}

/// `d_inp` (n, c_in, h, w) = `start` (per channel; zero when `None`) + convᵀ(d_out, weight),
/// then `finish`ed when given: ConvTranspose2d's forward with its bias, every element written.
/// The stride-1 gather form starts its sums from the bias and finishes them as it stores them
/// (one pass over the output); the 2×2 stride-2 kernel writes the bias with the sums.
pub(crate) fn backward_data_from(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    start: Option<&[f32]>,
    finish: Option<&ConvFinish>,
    n: usize,
    g: &ConvGeometry,
) {
    if let Some(adjoint) = gathering_adjoint(g, n) {
        let flipped = flip_kernel(weight, g.c_out, g.c_in, g.k);
        return match finish {
            Some(finish) => forward_finishing(d_inp, d_out, &flipped, start, finish, n, &adjoint),
            None => forward_into(
                d_inp,
                d_out,
                &flipped,
                OutputStart::Bias(start),
                n,
                &adjoint,
            ),
        };
    }
    match finish {
        None => scatter_from(d_inp, d_out, weight, start, n, g),
        Some(finish) => finish.after(d_inp, g.h * g.w, |sums| {
            scatter_from(sums, d_out, weight, start, n, g)
        }),
    }
}

/// [`backward_data_from`] without the gather form.
fn scatter_from(
    d_inp: &mut [f32],
    d_out: &[f32],
    weight: &[f32],
    start: Option<&[f32]>,
    n: usize,
    g: &ConvGeometry,
) {
    if stride2::backward_data_applies(g) {
        let zeros = vec![0.0f32; g.c_in];
        return stride2::backward_data(d_inp, d_out, weight, Some(start.unwrap_or(&zeros)), n, g);
    }
    let plane = g.h * g.w;
    d_inp
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(i, p)| p.fill(start.map_or(0.0, |start| start[i % g.c_in])));
    backward_data_into(d_inp, d_out, weight, n, g);
}

/// Backward weight: `d_weight` (c_out, c_in, k, k) += Σ d_out ⋆ inp over the batch.
pub(crate) fn backward_weight_into(
    d_weight: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    n: usize,
    g: &ConvGeometry,
) {
    if bf16::weight_grad_applies(g) {
        bf16::backward_weight(d_weight, d_out, inp, n, g);
    } else if direct::weight_grad_applies(g) {
        direct::backward_weight(d_weight, d_out, inp, n, g);
    } else if implicit::weight_grad_applies(g) {
        implicit::backward_weight(d_weight, d_out, inp, n, g);
    } else {
        im2col::conv_gemm_backward_weight(d_weight, d_out, inp, n, g);
    }
}

/// `weight` (a, b, k, k) → (b, a, k, k) with each k×k kernel rotated by 180°.
fn flip_kernel(weight: &[f32], a: usize, b: usize, k: usize) -> Vec<f32> {
    let mut flipped = vec![0.0f32; weight.len()];
    for i in 0..a {
        for j in 0..b {
            for kh in 0..k {
                for kw in 0..k {
                    flipped[((j * a + i) * k + kh) * k + kw] =
                        weight[((i * b + j) * k + (k - 1 - kh)) * k + (k - 1 - kw)];
                }
            }
        }
    }
    flipped
}

/// `sums[c] += Σ_{b, i} values[b, c, i]` for `values` (n, c, plane).
pub(crate) fn add_channel_sums(sums: &mut [f32], values: &[f32], n: usize, c: usize, plane: usize) {
    sums.par_iter_mut().enumerate().for_each(|(ch, sum)| {
        let total: f64 = (0..n)
            .map(|b| sums::sum(&values[(b * c + ch) * plane..][..plane]))
            .sum();
        *sum += total as f32;
    });
}

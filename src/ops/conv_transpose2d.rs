//! ConvTranspose2d (square k×k kernel, stride, zero padding, output padding, bias), NCHW float32,
//! as `torch.nn.ConvTranspose2d`: the adjoint of Conv2d with the same kernel, stride and padding.
//!
//! Shapes: `inp` (n, c_in, h, w), `weight` (c_in, c_out, k, k) (PyTorch's layout for transposed
//! convolutions), `bias` (c_out), `out` (n, c_out, h_out, w_out) with
//! `h_out = (h − 1)·stride − 2·pad + k + output_padding_h`, likewise `w_out`.
// llm.c style: the shapes are arguments, so the argument lists are long on purpose.
#![allow(clippy::too_many_arguments)]

use super::conv2d::{
    add_channel_sums, backward_data_from, backward_weight_into, forward_into, ConvFinish,
    ConvGeometry, OutputStart,
};
use super::{check_len, OpsError};

/// Output length of one spatial dimension: `(size − 1)·stride − 2·pad + k + output_padding`.
pub fn conv_transpose2d_output_size(
    size: usize,
    k: usize,
    stride: usize,
    pad: usize,
    output_padding: usize,
) -> usize {
    assert!(stride > 0, "conv_transpose2d: stride must be positive");
    assert!(size > 0, "conv_transpose2d: empty input");
    assert!(
        output_padding < stride,
        "conv_transpose2d: output padding {output_padding} must be smaller than the stride {stride}"
    );
    let full = (size - 1) * stride + k + output_padding;
    assert!(
        full > 2 * pad,
        "conv_transpose2d: padding {pad} removes the whole output"
    );
    full - 2 * pad
}

/// The output padding that makes one spatial dimension come out `requested` long, as PyTorch
/// computes it when `forward` is called with `output_size`: sizes from the unpadded one to
/// `stride − 1` more are reachable, any other is an error.
pub fn conv_transpose2d_output_padding(
    size: usize,
    requested: usize,
    k: usize,
    stride: usize,
    pad: usize,
) -> Result<usize, OpsError> {
    let out_of_range = |min, max| OpsError::OutputSizeOutOfRange {
        requested,
        input: size,
        kernel: k,
        stride,
        padding: pad,
        min,
        max,
    };
    let unpadded = ((size.max(1) - 1) * stride + k) as i64 - 2 * pad as i64;
    let min = unpadded.max(0) as usize;
    let max = (unpadded + stride as i64 - 1).max(0) as usize;
    if size == 0 || unpadded <= 0 || requested < min || requested > max {
        return Err(out_of_range(min, max));
    }
    Ok(requested - min)
}

/// out = conv_transpose(inp, weight) + bias.
pub fn conv_transpose2d_forward(
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
    output_padding_h: usize,
    output_padding_w: usize,
) {
    let adjoint = forward_adjoint(
        out.len(),
        inp.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        n,
        [
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            output_padding_h,
            output_padding_w,
        ],
    );
    // The transposed convolution is the data gradient of the convolution that maps `out`'s
    // shape back to `inp`'s: scatter each input pixel through the kernel onto the output.
    backward_data_from(out, inp, weight, bias, None, n, &adjoint);
}

/// out = finish(conv_transpose(inp, weight) + bias) [+ out for a residual]: the
/// evaluation-mode BatchNorm2d and leaky ReLU of `finish` applied as the sums are stored (see
/// [`ConvFinish`]); the same values as [`conv_transpose2d_forward`] and then those ops.
pub fn conv_transpose2d_forward_finished(
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
    output_padding_h: usize,
    output_padding_w: usize,
) {
    let adjoint = forward_adjoint(
        out.len(),
        inp.len(),
        weight.len(),
        bias.map(<[f32]>::len),
        n,
        [
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            output_padding_h,
            output_padding_w,
        ],
    );
    check_len("conv_transpose2d finish channels", finish.channels(), c_out);
    backward_data_from(out, inp, weight, bias, Some(finish), n, &adjoint);
}

/// The forward's adjoint convolution, after checking the buffers against it.
fn forward_adjoint(
    out_len: usize,
    inp_len: usize,
    weight_len: usize,
    bias_len: Option<usize>,
    n: usize,
    [c_in, h, w, c_out, k, stride, pad, pad_h, pad_w]: [usize; 9],
) -> ConvGeometry {
    let (h_out, w_out) = check_shapes(
        out_len, inp_len, weight_len, bias_len, n, c_in, h, w, c_out, k, stride, pad, pad_h, pad_w,
    );
    adjoint_conv(c_in, h, w, c_out, k, stride, pad, h_out, w_out)
}

/// Adds the gradients of `conv_transpose2d_forward` into `d_inp` (n, c_in, h, w), `d_weight`
/// (c_in, c_out, k, k) and `d_bias` (c_out), given `d_out` (n, c_out, h_out, w_out).
pub fn conv_transpose2d_backward(
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
    output_padding_h: usize,
    output_padding_w: usize,
) {
    backward(
        d_inp,
        false,
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
        output_padding_h,
        output_padding_w,
    )
}

/// [`conv_transpose2d_backward`] that writes `d_inp` instead of adding to it (whatever it held),
/// for a fresh input gradient: no zeros to write first and read back.
pub fn conv_transpose2d_backward_fresh(
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
    output_padding_h: usize,
    output_padding_w: usize,
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
        output_padding_h,
        output_padding_w,
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
    output_padding_h: usize,
    output_padding_w: usize,
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
        output_padding_h,
        output_padding_w,
    );
    check_len("conv_transpose2d d_weight", d_weight.len(), weight.len());
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("conv_transpose2d d_inp", d_inp.len(), inp.len());
    }
    let adjoint = adjoint_conv(c_in, h, w, c_out, k, stride, pad, h_out, w_out);
    if let Some(d_bias) = d_bias {
        add_channel_sums(d_bias, d_out, n, c_out, h_out * w_out);
    }
    // Through the adjoint convolution: `d_out` plays its input and `inp` its output gradient.
    backward_weight_into(d_weight, inp, d_out, n, &adjoint);
    if let Some(d_inp) = d_inp {
        let start = if overwrite {
            OutputStart::Bias(None)
        } else {
            OutputStart::Accumulate
        };
        forward_into(d_inp, d_out, weight, start, n, &adjoint);
    }
}

/// The convolution whose adjoint this transposed convolution is: from the (h_out, w_out)
/// output with c_out channels back to the (h, w) input with c_in channels, same kernel, stride
/// and padding; PyTorch's (c_in, c_out, k, k) weight is exactly its (c_out', c_in', k, k) weight.
fn adjoint_conv(
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    h_out: usize,
    w_out: usize,
) -> ConvGeometry {
    ConvGeometry {
        c_in: c_out,
        h: h_out,
        w: w_out,
        c_out: c_in,
        k,
        stride,
        pad,
        h_out: h,
        w_out: w,
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
    output_padding_h: usize,
    output_padding_w: usize,
) -> (usize, usize) {
    let h_out = conv_transpose2d_output_size(h, k, stride, pad, output_padding_h);
    let w_out = conv_transpose2d_output_size(w, k, stride, pad, output_padding_w);
    check_len("conv_transpose2d out", out_len, n * c_out * h_out * w_out);
    check_len("conv_transpose2d inp", inp_len, n * c_in * h * w);
    check_len("conv_transpose2d weight", weight_len, c_in * c_out * k * k);
    if let Some(len) = bias_len {
        check_len("conv_transpose2d bias", len, c_out);
    }
    (h_out, w_out)
}

/// Output coordinate written by input coordinate `i` through kernel tap `t`, if it is kept.
#[inline]
fn output_coord(i: usize, t: usize, stride: usize, pad: usize, size_out: usize) -> Option<usize> {
    (i * stride + t).checked_sub(pad).filter(|&o| o < size_out)
}

/// The definition, in plain loops (each input value scatters a scaled kernel): the oracle for
/// [`conv_transpose2d_forward`].
pub fn conv_transpose2d_forward_reference(
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
    output_padding_h: usize,
    output_padding_w: usize,
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
        output_padding_h,
        output_padding_w,
    );
    for b in 0..n {
        for co in 0..c_out {
            let plane = &mut out[(b * c_out + co) * h_out * w_out..][..h_out * w_out];
            plane.fill(bias.map_or(0.0, |bias| bias[co]));
        }
        for ci in 0..c_in {
            for ih in 0..h {
                for iw in 0..w {
                    let x = inp[((b * c_in + ci) * h + ih) * w + iw];
                    for co in 0..c_out {
                        for kh in 0..k {
                            let Some(oh) = output_coord(ih, kh, stride, pad, h_out) else {
                                continue;
                            };
                            for kw in 0..k {
                                let Some(ow) = output_coord(iw, kw, stride, pad, w_out) else {
                                    continue;
                                };
                                out[((b * c_out + co) * h_out + oh) * w_out + ow] +=
                                    x * weight[((ci * c_out + co) * k + kh) * k + kw];
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The definition, in plain loops: the oracle for [`conv_transpose2d_backward`].
pub fn conv_transpose2d_backward_reference(
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
    output_padding_h: usize,
    output_padding_w: usize,
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
        output_padding_h,
        output_padding_w,
    );
    check_len("conv_transpose2d d_weight", d_weight.len(), weight.len());
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("conv_transpose2d d_inp", d_inp.len(), inp.len());
    }
    // Parameter gradients sum over the whole batch: accumulate them in f64 so that the oracle's
    // own rounding stays far below any tolerance.
    if let Some(d_bias) = d_bias {
        for (co, d_bias) in d_bias.iter_mut().enumerate() {
            let total: f64 = (0..n)
                .flat_map(|b| d_out[(b * c_out + co) * h_out * w_out..][..h_out * w_out].iter())
                .map(|&g| g as f64)
                .sum();
            *d_bias += total as f32;
        }
    }
    let mut d_weight_sum = vec![0.0f64; d_weight.len()];
    for b in 0..n {
        for ci in 0..c_in {
            for ih in 0..h {
                for iw in 0..w {
                    let i = ((b * c_in + ci) * h + ih) * w + iw;
                    let mut d_x = 0.0;
                    for co in 0..c_out {
                        for kh in 0..k {
                            let Some(oh) = output_coord(ih, kh, stride, pad, h_out) else {
                                continue;
                            };
                            for kw in 0..k {
                                let Some(ow) = output_coord(iw, kw, stride, pad, w_out) else {
                                    continue;
                                };
                                let g = d_out[((b * c_out + co) * h_out + oh) * w_out + ow];
                                let wi = ((ci * c_out + co) * k + kh) * k + kw;
                                d_weight_sum[wi] += g as f64 * inp[i] as f64;
                                d_x += g * weight[wi];
                            }
                        }
                    }
                    if let Some(d_inp) = d_inp.as_deref_mut() {
                        d_inp[i] += d_x;
                    }
                }
            }
        }
    }
    for (d, s) in d_weight.iter_mut().zip(&d_weight_sum) {
        *d += *s as f32;
    }
}

// ---------------------------------------------------------------------------------------------
// On a kernel device: the adjoint of the device convolution (kernels/conv2d.cu +
// kernels/matmul.cu), through the same three engine functions as on the CPU.

use super::conv2d::{
    backward_data_into_launch, backward_weight_into_launch, channel_sums_launch, fill_bias_launch,
    forward_into_launch, ConvWorkspace, DeviceConvGeometry, DeviceOutputStart,
};
use super::elementwise::fill_launch;
use crate::device::{DeviceBuffer, DeviceError, KernelDevice};

/// [`conv_transpose2d_adjoint_geometry`] of a call with PyTorch's `output_size` (h, w) when
/// given, through the output paddings that reach it (none otherwise).
pub fn conv_transpose2d_adjoint_geometry_for(
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    output_size: Option<(usize, usize)>,
) -> Result<DeviceConvGeometry, OpsError> {
    let (pad_h, pad_w) = match output_size {
        None => (0, 0),
        Some((h_out, w_out)) => (
            conv_transpose2d_output_padding(h, h_out, k, stride, pad)?,
            conv_transpose2d_output_padding(w, w_out, k, stride, pad)?,
        ),
    };
    Ok(conv_transpose2d_adjoint_geometry(
        n, c_in, h, w, c_out, k, stride, pad, pad_h, pad_w,
    ))
}

/// The device convolution whose adjoint `conv_transpose2d(n, c_in, h, w → c_out, …)` is: from
/// the transposed convolution's output shape back to its input shape. Allocate the layer's
/// [`ConvWorkspace`] for it.
pub fn conv_transpose2d_adjoint_geometry(
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    output_padding_h: usize,
    output_padding_w: usize,
) -> DeviceConvGeometry {
    let h_out = conv_transpose2d_output_size(h, k, stride, pad, output_padding_h);
    let w_out = conv_transpose2d_output_size(w, k, stride, pad, output_padding_w);
    DeviceConvGeometry {
        n,
        c_in: c_out,
        h: h_out,
        w: w_out,
        c_out: c_in,
        k,
        stride,
        pad,
        h_out: h,
        w_out: w,
    }
}

/// [`conv_transpose2d_forward`] on a kernel device: the bias (or zeros), then the adjoint
/// convolution's data gradient of `inp`.
pub fn conv_transpose2d_forward_launch(
    device: &KernelDevice,
    ws: &mut ConvWorkspace,
    out: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    bias: Option<&DeviceBuffer<f32>>,
    adjoint: &DeviceConvGeometry,
) -> Result<(), DeviceError> {
    let plane = adjoint.h * adjoint.w;
    match bias {
        Some(bias) => fill_bias_launch(device, out, bias, adjoint.n, adjoint.c_in, plane)?,
        None => fill_launch(device, out, 0.0)?,
    }
    backward_data_into_launch(device, ws, out, inp, weight, adjoint)
}

/// [`conv_transpose2d_backward`] on a kernel device: adds into every gradient given.
pub fn conv_transpose2d_backward_launch(
    device: &KernelDevice,
    ws: &mut ConvWorkspace,
    d_inp: Option<&mut DeviceBuffer<f32>>,
    d_weight: &mut DeviceBuffer<f32>,
    d_bias: Option<&mut DeviceBuffer<f32>>,
    d_out: &DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    adjoint: &DeviceConvGeometry,
) -> Result<(), DeviceError> {
    if let Some(d_bias) = d_bias {
        let plane = adjoint.h * adjoint.w;
        channel_sums_launch(device, d_bias, d_out, adjoint.n, adjoint.c_in, plane)?;
    }
    // Through the adjoint convolution: `d_out` plays its input and `inp` its output gradient.
    backward_weight_into_launch(device, ws, d_weight, inp, d_out, adjoint)?;
    if let Some(d_inp) = d_inp {
        forward_into_launch(
            device,
            ws,
            d_inp,
            d_out,
            weight,
            DeviceOutputStart::Accumulate,
            adjoint,
        )?;
    }
    Ok(())
}

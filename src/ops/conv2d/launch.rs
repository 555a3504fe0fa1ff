//! Conv2d on a kernel device (kernels/conv2d.cu + kernels/matmul.cu): im2col + the tiled SGEMM,
//! the same three engine functions as the CPU (`forward_into`, `backward_data_into`,
//! `backward_weight_into`), which ConvTranspose2d reuses as the adjoint.

use crate::device::{DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};
use crate::ops::matmul::{
    matmul_launch, matmul_sum_launch, matmul_sum_scratch_len, DeviceMatMut, DeviceMatRef,
};
use crate::ops::ELEMENTWISE_THREADS;

/// kernels/conv2d.cu's CONV_SUM_THREADS.
const CONV_SUM_THREADS: u32 = 256;

/// The shape of one convolution on the device: `n` images of (c_in, h, w) to (c_out, h_out,
/// w_out) through a k×k kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeviceConvGeometry {
    pub n: usize,
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

impl DeviceConvGeometry {
    /// Conv2d's geometry, with PyTorch's output size.
    pub fn conv2d(
        n: usize,
        c_in: usize,
        h: usize,
        w: usize,
        c_out: usize,
        k: usize,
        stride: usize,
        pad: usize,
    ) -> DeviceConvGeometry {
        DeviceConvGeometry {
            n,
            c_in,
            h,
            w,
            c_out,
            k,
            stride,
            pad,
            h_out: super::conv2d_output_size(h, k, stride, pad),
            w_out: super::conv2d_output_size(w, k, stride, pad),
        }
    }

    fn taps(&self) -> usize {
        self.c_in * self.k * self.k
    }

    fn plane_out(&self) -> usize {
        self.h_out * self.w_out
    }

    /// A 1×1, stride-1, unpadded convolution (the skip convs) reads its input as the column
    /// matrix itself: no im2col.
    fn pointwise(&self) -> bool {
        self.k == 1 && self.stride == 1 && self.pad == 0
    }

    /// Elements of the column buffer a [`ConvWorkspace`] needs (1 for pointwise convolutions).
    pub fn col_len(&self) -> usize {
        if self.pointwise() {
            1
        } else {
            self.n * self.taps() * self.plane_out()
        }
    }

    /// Elements of the split-k scratch of the weight gradient.
    fn weight_grad_scratch_len(&self) -> usize {
        matmul_sum_scratch_len(self.c_out, self.taps(), self.plane_out(), self.n)
    }

    fn input_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }

    fn output_len(&self) -> usize {
        self.n * self.c_out * self.plane_out()
    }

    fn weight_len(&self) -> usize {
        self.c_out * self.taps()
    }

    fn ints(&self) -> Result<[i32; 9], DeviceError> {
        let values = [
            self.n,
            self.c_in,
            self.h,
            self.w,
            self.k,
            self.stride,
            self.pad,
            self.h_out,
            self.w_out,
        ];
        let mut out = [0i32; 9];
        for (o, v) in out.iter_mut().zip(values) {
            *o = i32::try_from(v).map_err(|_| invalid(format!("{self:?}: {v} exceeds i32")))?;
        }
        Ok(out)
    }
}

fn invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "conv2d",
        message,
    }
}

fn check(name: &str, len: usize, expected: usize) -> Result<(), DeviceError> {
    if len == expected {
        Ok(())
    } else {
        Err(invalid(format!(
            "{name} has {len} elements, its shape needs {expected}"
        )))
    }
}

/// The column buffer of one convolution layer and the split-k scratch of its weight gradient,
/// allocated once per shape and reused by its forward and backward passes.
pub struct ConvWorkspace {
    pub(crate) col: DeviceBuffer<f32>,
    partials: DeviceBuffer<f32>,
}

impl ConvWorkspace {
    pub fn new(device: &KernelDevice, geometry: &DeviceConvGeometry) -> Result<Self, DeviceError> {
        Ok(ConvWorkspace {
            col: device.alloc(geometry.col_len())?,
            partials: device.alloc(geometry.weight_grad_scratch_len().max(1))?,
        })
    }
}

/// How the forward's output starts before the GEMM adds the convolution into it.
pub enum DeviceOutputStart<'a> {
    /// Overwritten: the bias broadcast over each plane, or zeros.
    Bias(Option<&'a DeviceBuffer<f32>>),
    /// Added into.
    Accumulate,
}

fn im2col(
    device: &KernelDevice,
    g: &DeviceConvGeometry,
    inp: &DeviceBuffer<f32>,
    col: &mut DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    check("conv2d column buffer", col.len(), g.col_len())?;
    let [n, c_in, h, w, k, stride, pad, h_out, w_out] = g.ints()?;
    device.launch(
        "conv2d_im2col",
        LaunchConfig::for_elements(g.col_len(), ELEMENTWISE_THREADS),
        &[
            n.into(),
            c_in.into(),
            h.into(),
            w.into(),
            k.into(),
            stride.into(),
            pad.into(),
            h_out.into(),
            w_out.into(),
            inp.into(),
            col.into(),
        ],
    )
}

/// `out (n, c_out, h_out, w_out) = start + conv(inp, weight)`.
pub fn forward_into_launch(
    device: &KernelDevice,
    ws: &mut ConvWorkspace,
    out: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    start: DeviceOutputStart,
    g: &DeviceConvGeometry,
) -> Result<(), DeviceError> {
    check("conv2d inp", inp.len(), g.input_len())?;
    check("conv2d out", out.len(), g.output_len())?;
    check("conv2d weight", weight.len(), g.weight_len())?;
    let accumulate = match start {
        DeviceOutputStart::Bias(Some(bias)) => {
            check("conv2d bias", bias.len(), g.c_out)?;
            fill_bias_launch(device, out, bias, g.n, g.c_out, g.plane_out())?;
            true
        }
        DeviceOutputStart::Bias(None) => false,
        DeviceOutputStart::Accumulate => true,
    };
    let (taps, plane) = (g.taps(), g.plane_out());
    let weight_view = DeviceMatRef::row_major(weight, g.c_out, taps).batch_stride(0);
    let cols = if g.pointwise() {
        DeviceMatRef::row_major(inp, taps, plane)
    } else {
        im2col(device, g, inp, &mut ws.col)?;
        DeviceMatRef::row_major(&ws.col, taps, plane)
    };
    matmul_launch(
        device,
        DeviceMatMut::row_major(out, g.c_out, plane),
        weight_view,
        cols,
        g.n,
        accumulate,
    )
}

/// `d_inp (n, c_in, h, w) += convᵀ(d_out, weight)`: d_col = weightᵀ·d_out per image, then
/// col2im (a deterministic gather).
pub fn backward_data_into_launch(
    device: &KernelDevice,
    ws: &mut ConvWorkspace,
    d_inp: &mut DeviceBuffer<f32>,
    d_out: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    g: &DeviceConvGeometry,
) -> Result<(), DeviceError> {
    check("conv2d d_inp", d_inp.len(), g.input_len())?;
    check("conv2d d_out", d_out.len(), g.output_len())?;
    check("conv2d weight", weight.len(), g.weight_len())?;
    let (taps, plane) = (g.taps(), g.plane_out());
    let weight_t = DeviceMatRef::row_major(weight, g.c_out, taps)
        .t()
        .batch_stride(0);
    let d_out_view = DeviceMatRef::row_major(d_out, g.c_out, plane);
    if g.pointwise() {
        return matmul_launch(
            device,
            DeviceMatMut::row_major(d_inp, taps, plane),
            weight_t,
            d_out_view,
            g.n,
            true,
        );
    }
    check("conv2d column buffer", ws.col.len(), g.col_len())?;
    matmul_launch(
        device,
        DeviceMatMut::row_major(&mut ws.col, taps, plane),
        weight_t,
        d_out_view,
        g.n,
        false,
    )?;
    let [n, c_in, h, w, k, stride, pad, h_out, w_out] = g.ints()?;
    device.launch(
        "conv2d_col2im",
        LaunchConfig::for_elements(g.input_len(), ELEMENTWISE_THREADS),
        &[
            n.into(),
            c_in.into(),
            h.into(),
            w.into(),
            k.into(),
            stride.into(),
            pad.into(),
            h_out.into(),
            w_out.into(),
            (&ws.col).into(),
            d_inp.into(),
        ],
    )
}

/// `d_weight (c_out, c_in, k, k) += Σ_b d_out_b · im2col(inp)_bᵀ`: one split-k sum of
/// products over the images and their pixels, summed in a fixed order (deterministic; no
/// atomics).
pub fn backward_weight_into_launch(
    device: &KernelDevice,
    ws: &mut ConvWorkspace,
    d_weight: &mut DeviceBuffer<f32>,
    d_out: &DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    g: &DeviceConvGeometry,
) -> Result<(), DeviceError> {
    check("conv2d d_weight", d_weight.len(), g.weight_len())?;
    check("conv2d d_out", d_out.len(), g.output_len())?;
    check("conv2d inp", inp.len(), g.input_len())?;
    let (taps, plane) = (g.taps(), g.plane_out());
    if !g.pointwise() {
        im2col(device, g, inp, &mut ws.col)?;
    }
    let cols: &DeviceBuffer<f32> = if g.pointwise() { inp } else { &ws.col };
    matmul_sum_launch(
        device,
        DeviceMatMut::row_major(d_weight, g.c_out, taps),
        DeviceMatRef::row_major(d_out, g.c_out, plane),
        DeviceMatRef::row_major(cols, taps, plane).t(),
        g.n,
        true,
        &mut ws.partials,
    )
}

/// `out[b][ch][i] = bias[ch]` over (n, c, plane).
pub fn fill_bias_launch(
    device: &KernelDevice,
    out: &mut DeviceBuffer<f32>,
    bias: &DeviceBuffer<f32>,
    n: usize,
    c: usize,
    plane: usize,
) -> Result<(), DeviceError> {
    check("fill_bias out", out.len(), n * c * plane)?;
    check("fill_bias bias", bias.len(), c)?;
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| invalid(format!("{v} exceeds i32")));
    device.launch(
        "conv2d_fill_bias",
        LaunchConfig::for_elements(out.len(), ELEMENTWISE_THREADS),
        &[
            to_i32(out.len())?.into(),
            to_i32(c)?.into(),
            to_i32(plane)?.into(),
            bias.into(),
            out.into(),
        ],
    )
}

/// `sums[ch] += Σ values[b][ch][·]` over (n, c, plane): the bias gradient (f64 sums).
pub fn channel_sums_launch(
    device: &KernelDevice,
    sums: &mut DeviceBuffer<f32>,
    values: &DeviceBuffer<f32>,
    n: usize,
    c: usize,
    plane: usize,
) -> Result<(), DeviceError> {
    check("channel_sums values", values.len(), n * c * plane)?;
    check("channel_sums sums", sums.len(), c)?;
    if c == 0 {
        return Ok(());
    }
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| invalid(format!("{v} exceeds i32")));
    device.launch(
        "conv2d_channel_sums",
        LaunchConfig::blocks(c as u32, CONV_SUM_THREADS),
        &[
            to_i32(n)?.into(),
            to_i32(c)?.into(),
            to_i32(plane)?.into(),
            values.into(),
            sums.into(),
        ],
    )
}

/// [`conv2d_forward`](super::conv2d_forward) on a kernel device.
pub fn conv2d_forward_launch(
    device: &KernelDevice,
    ws: &mut ConvWorkspace,
    out: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    bias: Option<&DeviceBuffer<f32>>,
    g: &DeviceConvGeometry,
) -> Result<(), DeviceError> {
    forward_into_launch(
        device,
        ws,
        out,
        inp,
        weight,
        DeviceOutputStart::Bias(bias),
        g,
    )
}

/// [`conv2d_backward`](super::conv2d_backward) on a kernel device: adds into every gradient
/// given.
pub fn conv2d_backward_launch(
    device: &KernelDevice,
    ws: &mut ConvWorkspace,
    d_inp: Option<&mut DeviceBuffer<f32>>,
    d_weight: &mut DeviceBuffer<f32>,
    d_bias: Option<&mut DeviceBuffer<f32>>,
    d_out: &DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    g: &DeviceConvGeometry,
) -> Result<(), DeviceError> {
    if let Some(d_bias) = d_bias {
        channel_sums_launch(device, d_bias, d_out, g.n, g.c_out, g.plane_out())?;
    }
    // The weight gradient first: it reads the column buffer that the data gradient overwrites.
    backward_weight_into_launch(device, ws, d_weight, d_out, inp, g)?;
    if let Some(d_inp) = d_inp {
        backward_data_into_launch(device, ws, d_inp, d_out, weight, g)?;
    }
    Ok(())
}

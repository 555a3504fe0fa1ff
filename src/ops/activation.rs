//! Elementwise activations: leaky ReLU and the logistic sigmoid, as PyTorch. Any shape: the
//! slices are flat and of equal length.

use rayon::prelude::*;

use super::check_len;

/// Elements per parallel task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 16;

/// PyTorch's default negative slope, used everywhere in the network.
pub const LEAKY_RELU_SLOPE: f32 = 0.01;

/// `out = inp` where `inp > 0`, else `negative_slope·inp`.
pub fn leaky_relu_forward(out: &mut [f32], inp: &[f32], negative_slope: f32) {
    check_len("leaky_relu out", out.len(), inp.len());
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(out, inp)| leaky_relu_forward_reference(out, inp, negative_slope));
}

/// Adds `d_out` where `inp > 0`, else `negative_slope·d_out`, into `d_inp` (PyTorch's choice
/// at exactly 0: the slope).
pub fn leaky_relu_backward(d_inp: &mut [f32], d_out: &[f32], inp: &[f32], negative_slope: f32) {
    check_len("leaky_relu d_inp", d_inp.len(), inp.len());
    check_len("leaky_relu d_out", d_out.len(), inp.len());
    d_inp
        .par_chunks_mut(CHUNK)
        .zip(d_out.par_chunks(CHUNK).zip(inp.par_chunks(CHUNK)))
        .for_each(|(d_inp, (d_out, inp))| {
            leaky_relu_backward_reference(d_inp, d_out, inp, negative_slope)
        });
}

/// `out = 1 / (1 + exp(−inp))`.
pub fn sigmoid_forward(out: &mut [f32], inp: &[f32]) {
    check_len("sigmoid out", out.len(), inp.len());
    out.par_chunks_mut(CHUNK)
        .zip(inp.par_chunks(CHUNK))
        .for_each(|(out, inp)| sigmoid_forward_reference(out, inp));
}

/// Adds `d_out·out·(1 − out)` into `d_inp`; takes the forward's output, as PyTorch does.
pub fn sigmoid_backward(d_inp: &mut [f32], d_out: &[f32], out: &[f32]) {
    check_len("sigmoid d_inp", d_inp.len(), out.len());
    check_len("sigmoid d_out", d_out.len(), out.len());
    d_inp
        .par_chunks_mut(CHUNK)
        .zip(d_out.par_chunks(CHUNK).zip(out.par_chunks(CHUNK)))
        .for_each(|(d_inp, (d_out, out))| sigmoid_backward_reference(d_inp, d_out, out));
}

/// The definition: the oracle for [`leaky_relu_forward`].
pub fn leaky_relu_forward_reference(out: &mut [f32], inp: &[f32], negative_slope: f32) {
    check_len("leaky_relu out", out.len(), inp.len());
    for (y, &x) in out.iter_mut().zip(inp) {
        *y = if x > 0.0 { x } else { x * negative_slope };
    }
}

/// The definition: the oracle for [`leaky_relu_backward`].
pub fn leaky_relu_backward_reference(
    d_inp: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    negative_slope: f32,
) {
    check_len("leaky_relu d_inp", d_inp.len(), inp.len());
    check_len("leaky_relu d_out", d_out.len(), inp.len());
    for ((dx, &dy), &x) in d_inp.iter_mut().zip(d_out).zip(inp) {
        *dx += if x > 0.0 { dy } else { dy * negative_slope };
    }
}

/// The definition: the oracle for [`sigmoid_forward`].
pub fn sigmoid_forward_reference(out: &mut [f32], inp: &[f32]) {
    check_len("sigmoid out", out.len(), inp.len());
    for (y, &x) in out.iter_mut().zip(inp) {
        *y = 1.0 / (1.0 + (-x).exp());
    }
}

/// The definition: the oracle for [`sigmoid_backward`].
pub fn sigmoid_backward_reference(d_inp: &mut [f32], d_out: &[f32], out: &[f32]) {
    check_len("sigmoid d_inp", d_inp.len(), out.len());
    check_len("sigmoid d_out", d_out.len(), out.len());
    for ((dx, &dy), &y) in d_inp.iter_mut().zip(d_out).zip(out) {
        *dx += dy * y * (1.0 - y);
    }
}

// ---------------------------------------------------------------------------------------------
// The kernels (kernels/activation.cu): the same functions on device buffers, same argument order.

use super::{elementwise_len, ELEMENTWISE_THREADS};
use crate::device::{DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

/// [`leaky_relu_forward`] on a kernel device.
pub fn leaky_relu_forward_launch(
    device: &KernelDevice,
    out: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    negative_slope: f32,
) -> Result<(), DeviceError> {
    let n = elementwise_len("leaky_relu_forward", inp.len(), &[("out", out.len())])?;
    device.launch(
        "leaky_relu_forward",
        LaunchConfig::for_elements(inp.len(), ELEMENTWISE_THREADS),
        &[n.into(), negative_slope.into(), inp.into(), out.into()],
    )
}

/// [`leaky_relu_backward`] on a kernel device (adds into `d_inp`).
pub fn leaky_relu_backward_launch(
    device: &KernelDevice,
    d_inp: &mut DeviceBuffer<f32>,
    d_out: &DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    negative_slope: f32,
) -> Result<(), DeviceError> {
    let n = elementwise_len(
        "leaky_relu_backward",
        inp.len(),
        &[("d_inp", d_inp.len()), ("d_out", d_out.len())],
    )?;
    device.launch(
        "leaky_relu_backward",
        LaunchConfig::for_elements(inp.len(), ELEMENTWISE_THREADS),
        &[
            n.into(),
            negative_slope.into(),
            d_out.into(),
            inp.into(),
            d_inp.into(),
        ],
    )
}

/// [`sigmoid_forward`] on a kernel device.
pub fn sigmoid_forward_launch(
    device: &KernelDevice,
    out: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    let n = elementwise_len("sigmoid_forward", inp.len(), &[("out", out.len())])?;
    device.launch(
        "sigmoid_forward",
        LaunchConfig::for_elements(inp.len(), ELEMENTWISE_THREADS),
        &[n.into(), inp.into(), out.into()],
    )
}

/// [`sigmoid_backward`] on a kernel device (adds into `d_inp`).
pub fn sigmoid_backward_launch(
    device: &KernelDevice,
    d_inp: &mut DeviceBuffer<f32>,
    d_out: &DeviceBuffer<f32>,
    out: &DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    let n = elementwise_len(
        "sigmoid_backward",
        out.len(),
        &[("d_inp", d_inp.len()), ("d_out", d_out.len())],
    )?;
    device.launch(
        "sigmoid_backward",
        LaunchConfig::for_elements(out.len(), ELEMENTWISE_THREADS),
        &[n.into(), d_out.into(), out.into(), d_inp.into()],
    )
}

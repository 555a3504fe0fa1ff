//! Elementwise arithmetic of the network (kernels/elementwise.cu): the skip additions
//! (`out = a + b` forward; backward, the output gradient added into both branches) and the
//! fill that zeroes a whole gradient arena in one launch. Flat slices of equal length.

use super::{check_len, elementwise_len, ELEMENTWISE_THREADS};
use crate::device::{DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

/// `out = a + b`.
pub fn add_forward(out: &mut [f32], a: &[f32], b: &[f32]) {
    check_len("add b", b.len(), a.len());
    check_len("add out", out.len(), a.len());
    for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
        *o = x + y;
    }
}

/// `y += x`.
pub fn add_in_place(y: &mut [f32], x: &[f32]) {
    check_len("add_in_place x", x.len(), y.len());
    for (y, &x) in y.iter_mut().zip(x) {
        *y += x;
    }
}

/// [`add_forward`] on a kernel device.
pub fn add_forward_launch(
    device: &KernelDevice,
    out: &mut DeviceBuffer<f32>,
    a: &DeviceBuffer<f32>,
    b: &DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    let n = elementwise_len("add", a.len(), &[("b", b.len()), ("out", out.len())])?;
    device.launch(
        "elementwise_add",
        LaunchConfig::for_elements(a.len(), ELEMENTWISE_THREADS),
        &[n.into(), a.into(), b.into(), out.into()],
    )
}

/// [`add_in_place`] on a kernel device.
pub fn add_in_place_launch(
    device: &KernelDevice,
    y: &mut DeviceBuffer<f32>,
    x: &DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    let n = elementwise_len("add_in_place", y.len(), &[("x", x.len())])?;
    device.launch(
        "elementwise_add_in_place",
        LaunchConfig::for_elements(y.len(), ELEMENTWISE_THREADS),
        &[n.into(), x.into(), y.into()],
    )
}

/// Every element of `values` set to `value`, in one launch (zeroing a gradient arena).
pub fn fill_launch(
    device: &KernelDevice,
    values: &mut DeviceBuffer<f32>,
    value: f32,
) -> Result<(), DeviceError> {
    let n = elementwise_len("fill", values.len(), &[])?;
    device.launch(
        "elementwise_fill",
        LaunchConfig::for_elements(values.len(), ELEMENTWISE_THREADS),
        &[n.into(), value.into(), values.into()],
    )
}

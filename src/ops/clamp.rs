//! Value clamp in place, as `Tensor.clamp_(min, max)`: used by the two gradient hooks (the
//! gradients into the LSTM's and the Linear's inputs, [-0.001, 0.001]) and by clip-by-value of
//! every parameter gradient ([-0.1, 0.1]). NaN stays NaN, as in PyTorch.

/// Bound of the gradient hooks on the LSTM's and the Linear's input gradients.
pub const HOOK_GRADIENT_BOUND: f32 = 0.001;
/// Bound of clip-by-value on every parameter gradient after backward.
pub const CLIP_GRADIENT_VALUE: f32 = 0.1;

/// Clamps every value into `[min, max]`; NaN is kept.
pub fn clamp_in_place(values: &mut [f32], min: f32, max: f32) {
    assert!(min <= max, "clamp: min {min} is above max {max}");
    for v in values {
        // Comparisons are false for NaN, so NaN passes through unchanged.
        if *v < min {
            *v = min;
        } else if *v > max {
            *v = max;
        }
    }
}

/// [`clamp_in_place`] on a kernel device (kernels/clamp.cu): one launch over the whole buffer,
/// e.g. clip-by-value over the gradient arena.
pub fn clamp_in_place_launch(
    device: &crate::device::KernelDevice,
    values: &mut crate::device::DeviceBuffer<f32>,
    min: f32,
    max: f32,
) -> Result<(), crate::device::DeviceError> {
    if min
        .partial_cmp(&max)
        .is_none_or(|order| order == std::cmp::Ordering::Greater)
    {
        return Err(crate::device::DeviceError::InvalidInput {
            op: "clamp_in_place",
            message: format!("min {min} is above max {max}"),
        });
    }
    let n = super::elementwise_len("clamp_in_place", values.len(), &[])?;
    device.launch(
        "clamp_in_place",
        crate::device::LaunchConfig::for_elements(values.len(), super::ELEMENTWISE_THREADS),
        &[n.into(), min.into(), max.into(), values.into()],
    )
}

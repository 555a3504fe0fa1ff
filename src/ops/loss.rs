//! Binary cross-entropy with mean reduction, as `torch.nn.functional.binary_cross_entropy`:
//! `loss = −mean(t·max(ln p, −100) + (1 − t)·max(ln(1 − p), −100))`.
//!
//! Shapes: `probs`, `targets`, `d_probs` flat and of equal length (for the network: the piano
//! roll, batch · frames · 88).

use super::check_len;

/// PyTorch clamps each log term at −100 so that p = 0 or 1 gives a finite loss.
const LOG_FLOOR: f64 = -100.0;
/// PyTorch's floor on `p·(1 − p)` in the gradient, which keeps it finite at p = 0 or 1.
const GRAD_EPSILON: f32 = 1e-12;

/// `max(x, −100)` as C++'s `std::max(x, -100)` in PyTorch's kernel, `x < −100 ? −100 : x`: NaN
/// stays NaN (Rust's `f64::max` would return −100), so a network gone NaN shows a NaN loss.
fn floor_log(x: f64) -> f64 {
    if x < LOG_FLOOR {
        LOG_FLOOR
    } else {
        x
    }
}

/// The mean binary cross-entropy of `probs` against `targets` (sums in f64).
pub fn bce_forward(probs: &[f32], targets: &[f32]) -> f32 {
    check_len("bce targets", targets.len(), probs.len());
    assert!(!probs.is_empty(), "bce: empty input");
    let sum: f64 = probs
        .iter()
        .zip(targets)
        .map(|(&p, &t)| {
            let log_p = floor_log((p as f64).ln());
            let log_1mp = floor_log((1.0 - p as f64).ln());
            -(t as f64 * log_p + (1.0 - t as f64) * log_1mp)
        })
        .sum();
    (sum / probs.len() as f64) as f32
}

/// Adds `d_loss·(p − t) / max(p·(1 − p), 1e-12) / len` into `d_probs`, PyTorch's formula (which
/// ignores the log clamp, as PyTorch does).
pub fn bce_backward(d_probs: &mut [f32], probs: &[f32], targets: &[f32], d_loss: f32) {
    check_len("bce targets", targets.len(), probs.len());
    check_len("bce d_probs", d_probs.len(), probs.len());
    let count = probs.len() as f32;
    for ((d, &p), &t) in d_probs.iter_mut().zip(probs).zip(targets) {
        *d += d_loss * (p - t) / ((1.0 - p) * p).max(GRAD_EPSILON) / count;
    }
}

// ---------------------------------------------------------------------------------------------
// The kernels (kernels/loss.cu). The mean is a deterministic two-stage f64 reduction whose
// grid depends only on the length, so the loss has the same bits on every run.

use super::{elementwise_len, ELEMENTWISE_THREADS};
use crate::device::{DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

/// kernels/loss.cu's BCE_THREADS, and the most partial sums (blocks) of the first stage.
const BCE_THREADS: u32 = 256;
const BCE_MAX_PARTIALS: usize = 1024;

/// The length of the f64 scratch buffer [`bce_forward_launch`] needs for `len` elements (its
/// first stage's block count: a function of the length alone).
pub fn bce_partials_len(len: usize) -> usize {
    len.div_ceil(BCE_THREADS as usize)
        .clamp(1, BCE_MAX_PARTIALS)
}

/// [`bce_forward`] on a kernel device: `loss[0]` = the mean BCE, with `partials` (of
/// [`bce_partials_len`] elements) as scratch.
pub fn bce_forward_launch(
    device: &KernelDevice,
    loss: &mut DeviceBuffer<f32>,
    partials: &mut DeviceBuffer<f64>,
    probs: &DeviceBuffer<f32>,
    targets: &DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    let len = probs.len();
    let n = elementwise_len("bce_forward", len, &[("targets", targets.len())])?;
    let blocks = bce_partials_len(len);
    let invalid = |message| DeviceError::InvalidInput {
        op: "bce_forward",
        message,
    };
    if len == 0 {
        return Err(invalid("empty input".into()));
    }
    if loss.len() != 1 || partials.len() != blocks {
        return Err(invalid(format!(
            "loss has {} elements (1 needed), partials {} ({blocks} needed)",
            loss.len(),
            partials.len()
        )));
    }
    device.launch(
        "bce_partial_sums",
        LaunchConfig::blocks(blocks as u32, BCE_THREADS),
        &[
            n.into(),
            probs.into(),
            targets.into(),
            (&mut *partials).into(),
        ],
    )?;
    device.launch(
        "bce_mean",
        LaunchConfig::blocks(1, BCE_THREADS),
        &[
            (blocks as i32).into(),
            n.into(),
            (&*partials).into(),
            loss.into(),
        ],
    )
}

/// [`bce_backward`] on a kernel device (adds into `d_probs`).
pub fn bce_backward_launch(
    device: &KernelDevice,
    d_probs: &mut DeviceBuffer<f32>,
    probs: &DeviceBuffer<f32>,
    targets: &DeviceBuffer<f32>,
    d_loss: f32,
) -> Result<(), DeviceError> {
    let n = elementwise_len(
        "bce_backward",
        probs.len(),
        &[("targets", targets.len()), ("d_probs", d_probs.len())],
    )?;
    device.launch(
        "bce_backward",
        LaunchConfig::for_elements(probs.len(), ELEMENTWISE_THREADS),
        &[
            n.into(),
            d_loss.into(),
            probs.into(),
            targets.into(),
            d_probs.into(),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_probability_gives_a_nan_loss_and_saturated_ones_stay_finite() {
        assert!(bce_forward(&[0.5, f32::NAN], &[1.0, 0.0]).is_nan());
        let loss = bce_forward(&[0.0, 1.0], &[1.0, 0.0]);
        assert_eq!(loss, 100.0);
    }
}

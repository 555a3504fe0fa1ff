//! Shared by the per-op tests: a seeded random source whose seed is printed, finite-difference
//! gradient checks, and closeness checks that print the worst element.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code, unused_imports)]

/// A fresh seed per run, or `MTOSI_TEST_SEED` to replay one (the harness's rule); always printed.
pub fn seed(test: &str) -> u64 {
    mtosi::device::equivalence::test_seed(test)
}

use mtosi::compare::{check_close, ErrorScale};
pub use mtosi::rng::Rng;

/// `Σ weights·values` in f64: the scalar whose gradient with respect to `values` is `weights`,
/// so a backward pass seeded with `weights` must match its finite differences.
pub fn weighted_sum(values: &[f32], weights: &[f32]) -> f64 {
    assert_eq!(values.len(), weights.len());
    values
        .iter()
        .zip(weights)
        .map(|(&v, &w)| v as f64 * w as f64)
        .sum()
}

/// Checks `analytic` against central differences of `loss` around `x` (step `h`), at every
/// coordinate (the shapes here are small). Passes when the largest error is at most
/// `tolerance · max(max |numeric|, 1e-3)`; a NaN or infinity on either side fails.
pub fn check_gradient(
    name: &str,
    x: &[f32],
    analytic: &[f32],
    h: f32,
    tolerance: f64,
    loss: impl FnMut(&[f32]) -> f64,
) {
    if let Err(message) = try_check_gradient(name, x, analytic, h, tolerance, loss) {
        panic!("{message}");
    }
}

/// [`check_gradient`] returning the failure instead of panicking.
pub fn try_check_gradient(
    name: &str,
    x: &[f32],
    analytic: &[f32],
    h: f32,
    tolerance: f64,
    mut loss: impl FnMut(&[f32]) -> f64,
) -> Result<(), String> {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let mut probe = x.to_vec();
    let numeric: Vec<f64> = (0..x.len())
        .map(|i| {
            probe[i] = x[i] + h;
            let up = loss(&probe);
            probe[i] = x[i] - h;
            let down = loss(&probe);
            probe[i] = x[i];
            // The actual step is what f32 could represent, not h.
            let step = (x[i] + h) as f64 - (x[i] - h) as f64;
            (up - down) / step
        })
        .collect();
    let worst = check_close(
        &format!("{name}: analytic vs numeric gradient"),
        analytic,
        &numeric,
        ErrorScale::of_peak_at_least(1e-3),
        tolerance,
    )?;
    println!(
        "{name}: worst |numeric - analytic| = {:.3e} of scale {:.3e} at {} (numeric {:.6e}, analytic {:.6e})",
        worst.error,
        worst.peak.max(1e-3),
        worst.index,
        worst.want,
        worst.got
    );
    Ok(())
}

/// Passes when every `|actual − expected| ≤ tolerance · max(max |expected|, 1e-30)` and both are
/// finite everywhere; prints the worst element.
pub fn assert_close(name: &str, actual: &[f32], expected: &[f32], tolerance: f64) {
    mtosi::compare::assert_close(
        name,
        actual,
        expected,
        ErrorScale::of_peak_at_least(1e-30),
        tolerance,
    );
}

/// The bias gradient `prior + Σ d_out` of each output channel, a sum that can cancel to near
/// zero: judged against the magnitude of its terms (the largest `|prior| + Σ|d_out|` of a
/// channel), which its float32 rounding scales with, instead of against the sum itself. A term
/// dropped or counted twice still shows (an error of about one term over the scale).
#[allow(clippy::too_many_arguments)]
pub fn assert_bias_gradient_close(
    name: &str,
    actual: &[f32],
    expected: &[f32],
    prior: &[f32],
    d_out: &[f32],
    n: usize,
    c_out: usize,
    tolerance: f64,
) {
    let plane = d_out.len() / (n * c_out);
    let scale = (0..c_out)
        .map(|c| {
            let terms: f64 = (0..n)
                .flat_map(|b| &d_out[(b * c_out + c) * plane..][..plane])
                .map(|&v| (v as f64).abs())
                .sum();
            terms + (prior[c] as f64).abs()
        })
        .fold(0.0, f64::max);
    assert!(
        scale.is_finite(),
        "{name}: the bias gradient's terms are not finite"
    );
    mtosi::compare::assert_close(
        name,
        actual,
        expected,
        ErrorScale::of_peak_at_least(scale),
        tolerance,
    );
}

/// `x` rounded to the nearest bf16 (ties to even), written here independently of the kernels.
pub fn round_bf16(x: f32) -> f32 {
    let bits = x.to_bits();
    let rounded = bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000;
    f32::from_bits(rounded)
}

/// The worst `|got_i − want_i| / scale_i` (its `error` and `index`) if it is within `tolerance`,
/// where `scale_i` is the size of what element i summed (Σ|terms|); an error when any value is
/// not finite.
pub fn check_within_terms<W: mtosi::compare::Value, S: mtosi::compare::Value>(
    name: &str,
    got: &[f32],
    want: &[W],
    scale: &[S],
    tolerance: f64,
) -> Result<mtosi::compare::Worst, String> {
    assert_eq!(
        (got.len(), want.len()),
        (scale.len(), scale.len()),
        "{name}: lengths"
    );
    let scaled: Vec<f64> = got
        .iter()
        .zip(want)
        .zip(scale)
        .map(|((&g, &w), &s)| (g as f64 - w.to_f64()) / s.to_f64().max(1e-30))
        .collect();
    let zeros = vec![0.0f64; scaled.len()];
    check_close(
        name,
        &scaled,
        &zeros,
        ErrorScale::of_peak_at_least(1.0),
        tolerance,
    )
}

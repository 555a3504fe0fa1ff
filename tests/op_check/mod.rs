//! Shared by the per-op tests: a seeded random source whose seed is printed, finite-difference
//! gradient checks, and closeness checks that print the worst element.
// Each test binary includes this module and uses a part of it.
#![allow(dead_code, unused_imports)]

/// A fresh seed per run, or `MTOSI_TEST_SEED` to replay one (the harness's rule); always printed.
pub fn seed(test: &str) -> u64 {
    let seed = mtosi::device::equivalence::seed_from_env();
    println!("{test}: seed {seed} (replay with MTOSI_TEST_SEED={seed})");
    seed
}

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
/// `tolerance · max(max |analytic|, 1e-3)`.
pub fn check_gradient(
    name: &str,
    x: &[f32],
    analytic: &[f32],
    h: f32,
    tolerance: f64,
    mut loss: impl FnMut(&[f32]) -> f64,
) {
    assert_eq!(x.len(), analytic.len(), "{name}: gradient length");
    let mut probe = x.to_vec();
    let mut worst = (0usize, 0.0f64, 0.0f64);
    for i in 0..x.len() {
        probe[i] = x[i] + h;
        let up = loss(&probe);
        probe[i] = x[i] - h;
        let down = loss(&probe);
        probe[i] = x[i];
        // The actual step is what f32 could represent, not h.
        let step = (x[i] + h) as f64 - (x[i] - h) as f64;
        let numeric = (up - down) / step;
        let error = (numeric - analytic[i] as f64).abs();
        if error >= worst.1 {
            worst = (i, error, numeric);
        }
    }
    let scale = analytic
        .iter()
        .fold(1e-3f64, |m, &g| m.max((g as f64).abs()));
    let (index, error, numeric) = worst;
    println!(
        "{name}: worst |numeric - analytic| = {error:.3e} at {index} (numeric {numeric:.6e}, \
         analytic {:.6e}), scale {scale:.3e}",
        analytic[index]
    );
    assert!(
        error <= tolerance * scale,
        "{name}: gradient off by {error:.3e} at {index} (numeric {numeric:.6e}, analytic {:.6e}); \
         allowed {:.3e}",
        analytic[index],
        tolerance * scale
    );
}

/// Passes when every `|actual − expected| ≤ tolerance · max(max |expected|, 1e-30)`; prints the
/// worst element.
pub fn assert_close(name: &str, actual: &[f32], expected: &[f32], tolerance: f64) {
    assert_eq!(actual.len(), expected.len(), "{name}: length");
    let scale = expected
        .iter()
        .fold(1e-30f64, |m, &v| m.max((v as f64).abs()));
    let (index, error) = actual
        .iter()
        .zip(expected)
        .map(|(&a, &e)| (a as f64 - e as f64).abs())
        .enumerate()
        .fold(
            (0, 0.0f64),
            |w, (i, e)| if e > w.1 || e.is_nan() { (i, e) } else { w },
        );
    println!(
        "{name}: worst error {error:.3e} at {index} ({} vs {}), relative {:.3e}",
        actual[index],
        expected[index],
        error / scale
    );
    assert!(
        error <= tolerance * scale && !error.is_nan(),
        "{name}: {} vs expected {} at {index}: error {error:.3e} exceeds {:.3e}",
        actual[index],
        expected[index],
        tolerance * scale
    );
}

//! Shared by the per-op tests: a seeded random source whose seed is printed, finite-difference
//! gradient checks, and closeness checks that print the worst element.
#![allow(dead_code)]

use std::time::{SystemTime, UNIX_EPOCH};

/// A fresh seed per run (time based), or `MTOSI_TEST_SEED` to replay one; always printed.
pub fn seed(test: &str) -> u64 {
    let seed = std::env::var("MTOSI_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64)
        });
    println!("{test}: seed {seed} (replay with MTOSI_TEST_SEED={seed})");
    seed
}

/// SplitMix64: small, seedable, good enough to draw test tensors.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * unit
    }

    /// Uniform integer in [lo, hi].
    pub fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }

    pub fn vec(&mut self, len: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..len).map(|_| self.uniform(lo, hi)).collect()
    }
}

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

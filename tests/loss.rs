//! Binary cross-entropy: the gradient against finite differences, and PyTorch's clamped values
//! and finite gradient at p = 0 and p = 1.

mod op_check;

use mtosi::ops::loss::*;
use op_check::{check_gradient, seed, try_check_gradient, Rng};

#[test]
fn bce_gradient_matches_finite_differences() {
    let mut rng = Rng::new(seed("bce_gradient_matches_finite_differences"));
    let probs = rng.vec_f32(30, 0.05, 0.95);
    let targets: Vec<f32> = (0..30)
        .map(|i| {
            if i % 3 == 0 {
                rng.range_f32(0.0, 1.0)
            } else {
                (i % 2) as f32
            }
        })
        .collect();
    let mut d_probs = vec![0.0; probs.len()];
    bce_backward(&mut d_probs, &probs, &targets, 1.0);
    // Away from 0 and 1 the log terms are smooth: at h = 1e-3 truncation ~h²/p³ ≤ 1e-4 and the
    // f32 loss rounding (~6e-8) over 2h adds ~3e-5 relative to the largest gradient.
    check_gradient("bce d_probs", &probs, &d_probs, 1e-3, 2e-3, |p| {
        bce_forward(p, &targets) as f64
    });
}

#[test]
fn bce_clamps_each_log_term_at_minus_100() {
    // p = 0 with target 1: −max(ln 0, −100) = 100; averaged with a perfect prediction.
    assert_eq!(bce_forward(&[0.0, 1.0], &[1.0, 1.0]), 50.0);
    assert_eq!(bce_forward(&[1.0], &[0.0]), 100.0);
    let loss = bce_forward(&[0.25], &[1.0]);
    assert!((loss - 4.0f32.ln()).abs() < 1e-6, "{loss}");
}

#[test]
fn bce_gradient_is_finite_at_saturated_probabilities() {
    let mut d = [0.0; 3];
    bce_backward(&mut d, &[0.0, 1.0, 0.5], &[1.0, 0.0, 1.0], 2.0);
    // (p − t)/max(p(1−p), 1e-12)/3 · 2, as PyTorch's binary_cross_entropy_backward.
    assert_eq!(d[0], -2.0 / 1e-12 / 3.0);
    assert_eq!(d[1], 2.0 * 1.0 / 1e-12 / 3.0);
    assert!((d[2] - 2.0 * -0.5 / 0.25 / 3.0).abs() < 1e-6);
}

/// The shared checks of tests/op_check fail on a planted NaN (a max-fold would skip it).
#[test]
fn op_checks_fail_on_a_planted_nan() {
    let x = [0.2f32, 0.4, 0.6];
    let loss = |p: &[f32]| p.iter().map(|&v| (v * v) as f64).sum::<f64>();
    let analytic = [0.4f32, 0.8, 1.2];
    try_check_gradient("control", &x, &analytic, 1e-3, 1e-3, loss).unwrap();
    let mut nan_analytic = analytic;
    nan_analytic[1] = f32::NAN;
    let e = try_check_gradient("planted", &x, &nan_analytic, 1e-3, 1e-3, loss).unwrap_err();
    assert!(e.contains("element 1 is not finite in the result"), "{e}");
    // A loss that is NaN at one probe: the numeric gradient (the reference) is NaN there.
    let e = try_check_gradient("nan loss", &x, &analytic, 1e-3, 1e-3, |p: &[f32]| {
        if p[2] != 0.6 {
            f64::NAN
        } else {
            loss(p)
        }
    })
    .unwrap_err();
    assert!(
        e.contains("element 2 is not finite in the reference"),
        "{e}"
    );
    let all_nan = std::panic::catch_unwind(|| {
        op_check::assert_close("all NaN", &[f32::NAN; 3], &[f32::NAN; 3], 1.0)
    });
    assert!(all_nan.is_err(), "assert_close passed an all-NaN output");
}

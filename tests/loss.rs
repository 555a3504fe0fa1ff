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

mod kernels {
    //! kernels/loss.cu against the CPU: the mean BCE (a deterministic f64 reduction) and its
    //! gradient, with saturated probabilities among the inputs.
    use mtosi::device::equivalence::{Equivalence, Rng, ODD_LENGTHS};
    use mtosi::device::Device;
    use mtosi::ops::loss::*;

    /// Probabilities in (0, 1) with some exactly 0 and 1 (the −100 clamp), targets in {0, 1}
    /// and a few soft ones.
    fn inputs(n: usize, rng: &mut Rng) -> (Vec<f32>, Vec<f32>) {
        let mut probs = rng.vec_f32(n, 0.0, 1.0);
        for (i, p) in probs.iter_mut().enumerate() {
            match i % 97 {
                5 => *p = 0.0,
                6 => *p = 1.0,
                _ => {}
            }
        }
        let targets = (0..n)
            .map(|i| {
                if i % 7 == 0 {
                    rng.range_f32(0.0, 1.0)
                } else {
                    (rng.next_u64() % 2) as f32
                }
            })
            .collect();
        (probs, targets)
    }

    const LENGTHS: [usize; 9] = [1, 7, 31, 33, 255, 257, 1000, 4099, 300_001];

    #[test]
    fn bce_matches_cpu_reference_on_every_device() {
        Equivalence::new("bce_forward")
            // Both sum f64 terms (f64 logs) in different orders, then round to f32 once.
            .tolerance(2e-7)
            .run(
                &LENGTHS,
                |&n, rng| inputs(n, rng),
                |device, (probs, targets)| match device {
                    Device::Cpu => Ok(vec![bce_forward(probs, targets)]),
                    Device::Kernels(k) => {
                        let (p, t) = (k.upload(probs)?, k.upload(targets)?);
                        let mut loss = k.alloc(1)?;
                        let mut partials = k.alloc(bce_partials_len(probs.len()))?;
                        bce_forward_launch(k, &mut loss, &mut partials, &p, &t)?;
                        k.download(&loss)
                    }
                },
            );
        Equivalence::new("bce_backward")
            // Same float32 operations per element; the final add may fuse on a GPU: ≤ 1 ulp.
            .tolerance(2.5e-7)
            .run(
                &ODD_LENGTHS,
                |&n, rng| {
                    let (p, t) = inputs(n, rng);
                    let prior = rng.vec_f32(n, -1.0, 1.0);
                    (p, t, prior)
                },
                |device, (probs, targets, prior)| match device {
                    Device::Cpu => {
                        let mut d = prior.clone();
                        bce_backward(&mut d, probs, targets, 0.5);
                        Ok(d)
                    }
                    Device::Kernels(k) => {
                        let (p, t) = (k.upload(probs)?, k.upload(targets)?);
                        let mut d = k.upload(prior)?;
                        bce_backward_launch(k, &mut d, &p, &t, 0.5)?;
                        k.download(&d)
                    }
                },
            );
    }

    #[test]
    fn bce_kernel_loss_is_the_same_bits_every_run() {
        let device = mtosi::device::KernelDevice::emu(Default::default());
        let mut rng = Rng::new(7);
        let (probs, targets) = inputs(100_003, &mut rng);
        let (p, t) = (
            device.upload(&probs).unwrap(),
            device.upload(&targets).unwrap(),
        );
        let run = || {
            let mut loss = device.alloc(1).unwrap();
            let mut partials = device.alloc(bce_partials_len(probs.len())).unwrap();
            bce_forward_launch(&device, &mut loss, &mut partials, &p, &t).unwrap();
            device.download(&loss).unwrap()[0]
        };
        let first = run();
        assert!(first.is_finite(), "{first}");
        assert_eq!(first.to_bits(), run().to_bits());
    }

    /// A NaN probability makes the loss NaN on both sides, as PyTorch's `std::max(log p, -100)`
    /// keeps it (the training loop's NaN guard depends on it).
    #[test]
    fn bce_kernel_and_cpu_keep_a_nan_probability() {
        let device = mtosi::device::KernelDevice::emu(Default::default());
        let probs = [0.25f32, f32::NAN, 0.0, 1.0];
        let targets = [1.0f32, 0.0, 1.0, 0.0];
        assert!(bce_forward(&probs, &targets).is_nan());
        let (p, t) = (
            device.upload(&probs).unwrap(),
            device.upload(&targets).unwrap(),
        );
        let mut loss = device.alloc(1).unwrap();
        let mut partials = device.alloc(bce_partials_len(probs.len())).unwrap();
        bce_forward_launch(&device, &mut loss, &mut partials, &p, &t).unwrap();
        let kernel = device.download(&loss).unwrap()[0];
        assert!(kernel.is_nan(), "{kernel}");
        // Without the NaN, the saturated terms are clamped at 100 on both sides.
        let finite = bce_forward(&probs[2..], &targets[2..]);
        assert_eq!(finite, 100.0);
    }
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

//! BatchNorm2d: training-mode gradients against finite differences, the fast path against the
//! plain-loop reference, and the running-statistics and evaluation rules worked by hand.

mod op_check;

use mtosi::ops::batchnorm::*;
use op_check::{assert_close, check_gradient, seed, weighted_sum, Rng};

fn forward_train(
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    c: usize,
    hw: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; inp.len()];
    let (mut mean, mut rstd) = (vec![0.0; c], vec![0.0; c]);
    let (mut running_mean, mut running_var) = (vec![0.0; c], vec![1.0; c]);
    batchnorm_forward_train(
        &mut out,
        &mut mean,
        &mut rstd,
        &mut running_mean,
        &mut running_var,
        inp,
        weight,
        bias,
        n,
        c,
        hw,
        BATCHNORM_MOMENTUM,
        BATCHNORM_EPS,
    );
    out
}

/// Activations (n, c, hw) uniform in [lo, hi), redrawn until every channel's standard deviation
/// is at least `min_std`: a channel of a few nearly equal values has a huge rstd, and its
/// gradients are differences of terms that size, ill-conditioned for any float32 comparison.
fn spread_activations(
    rng: &mut Rng,
    (n, c, hw): (usize, usize, usize),
    lo: f32,
    hi: f32,
    min_std: f32,
) -> Vec<f32> {
    loop {
        let inp = rng.vec_f32(n * c * hw, lo, hi);
        let std = |ch: usize| {
            let values: Vec<f32> = (0..n)
                .flat_map(|b| inp[(b * c + ch) * hw..][..hw].iter().copied())
                .collect();
            let mean = values.iter().sum::<f32>() / values.len() as f32;
            let var = values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>();
            (var / values.len() as f32).sqrt()
        };
        if (0..c).all(|ch| std(ch) >= min_std) {
            return inp;
        }
    }
}

#[test]
fn batchnorm_gradients_match_finite_differences() {
    let mut rng = Rng::new(seed("batchnorm_gradients_match_finite_differences"));
    for (n, c, hw) in [(2, 3, 6), (3, 2, 1), (1, 2, 5)] {
        // Spread out: the third derivative grows as rstd³, and with three values of a channel
        // within ~0.1 of each other the finite difference itself missed the tolerance (seed
        // 0x58b3c9bc053e2df0, n 3 c 2 hw 1).
        let inp = spread_activations(&mut rng, (n, c, hw), -1.0, 1.0, 0.25);
        let weight = rng.vec_f32(c, 0.5, 1.5);
        let bias = rng.vec_f32(c, -1.0, 1.0);
        let d_out = rng.vec_f32(inp.len(), -1.0, 1.0);
        let mut out = vec![0.0; inp.len()];
        let (mut mean, mut rstd) = (vec![0.0; c], vec![0.0; c]);
        let (mut running_mean, mut running_var) = (vec![0.0; c], vec![1.0; c]);
        batchnorm_forward_train(
            &mut out,
            &mut mean,
            &mut rstd,
            &mut running_mean,
            &mut running_var,
            &inp,
            &weight,
            &bias,
            n,
            c,
            hw,
            BATCHNORM_MOMENTUM,
            BATCHNORM_EPS,
        );
        let mut d_inp = vec![0.0; inp.len()];
        let (mut d_weight, mut d_bias) = (vec![0.0; c], vec![0.0; c]);
        batchnorm_backward(
            Some(&mut d_inp),
            &mut d_weight,
            &mut d_bias,
            &d_out,
            &inp,
            &weight,
            &mean,
            &rstd,
            n,
            c,
            hw,
        );
        // Smooth but nonlinear in the input (the statistics move): with h = 5e-3 the
        // truncation error (h²·f''') and f32 output rounding (~1e-7/2h) stay below 5e-3.
        let (h, tol) = (5e-3, 5e-3);
        let name = format!("n {n} c {c} hw {hw}");
        check_gradient(&format!("{name} d_inp"), &inp, &d_inp, h, tol, |x| {
            weighted_sum(&forward_train(x, &weight, &bias, n, c, hw), &d_out)
        });
        check_gradient(
            &format!("{name} d_weight"),
            &weight,
            &d_weight,
            h,
            tol,
            |x| weighted_sum(&forward_train(&inp, x, &bias, n, c, hw), &d_out),
        );
        check_gradient(&format!("{name} d_bias"), &bias, &d_bias, h, tol, |x| {
            weighted_sum(&forward_train(&inp, &weight, x, n, c, hw), &d_out)
        });
    }
}

#[test]
fn batchnorm_fast_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(seed("batchnorm_fast_matches_reference_on_random_shapes"));
    for _ in 0..10 {
        let (n, c, hw) = (
            rng.range_usize(1, 4),
            rng.range_usize(1, 20),
            rng.range_usize(2, 300),
        );
        // Spread out (n 1 c 11 hw 2 with two values within ~0.01 missed 1e-5 in d_inp, seed
        // 0xe59b8706dedb7bde).
        let inp = spread_activations(&mut rng, (n, c, hw), -3.0, 5.0, 0.25);
        let weight = rng.vec_f32(c, 0.5, 1.5);
        let bias = rng.vec_f32(c, -1.0, 1.0);
        let d_out = rng.vec_f32(inp.len(), -1.0, 1.0);
        let running_mean0 = rng.vec_f32(c, -1.0, 1.0);
        let running_var0 = rng.vec_f32(c, 0.5, 2.0);
        let train = |reference: bool| {
            let mut out = vec![0.0; inp.len()];
            let (mut mean, mut rstd) = (vec![0.0; c], vec![0.0; c]);
            let (mut running_mean, mut running_var) = (running_mean0.clone(), running_var0.clone());
            let forward = if reference {
                batchnorm_forward_train_reference
            } else {
                batchnorm_forward_train
            };
            forward(
                &mut out,
                &mut mean,
                &mut rstd,
                &mut running_mean,
                &mut running_var,
                &inp,
                &weight,
                &bias,
                n,
                c,
                hw,
                BATCHNORM_MOMENTUM,
                BATCHNORM_EPS,
            );
            (out, mean, rstd, running_mean, running_var)
        };
        let (fast, reference) = (train(false), train(true));
        // Statistics of ≤ 1200 values summed in another order: f32 results agree to ~1e-6.
        let tol = 1e-5;
        let name = format!("n {n} c {c} hw {hw}");
        assert_close(&format!("{name} out"), &fast.0, &reference.0, tol);
        assert_close(&format!("{name} mean"), &fast.1, &reference.1, tol);
        assert_close(&format!("{name} rstd"), &fast.2, &reference.2, tol);
        assert_close(&format!("{name} running_mean"), &fast.3, &reference.3, tol);
        assert_close(&format!("{name} running_var"), &fast.4, &reference.4, tol);

        let (mean, rstd) = (&reference.1, &reference.2);
        let prior_inp = rng.vec_f32(inp.len(), -1.0, 1.0);
        let prior_weight = rng.vec_f32(c, -1.0, 1.0);
        let prior_bias = rng.vec_f32(c, -1.0, 1.0);
        let grads = |reference: bool| {
            let (mut d_inp, mut d_weight, mut d_bias) =
                (prior_inp.clone(), prior_weight.clone(), prior_bias.clone());
            let backward = if reference {
                batchnorm_backward_reference
            } else {
                batchnorm_backward
            };
            backward(
                Some(&mut d_inp),
                &mut d_weight,
                &mut d_bias,
                &d_out,
                &inp,
                &weight,
                mean,
                rstd,
                n,
                c,
                hw,
            );
            (d_inp, d_weight, d_bias)
        };
        let (fast, reference) = (grads(false), grads(true));
        assert_close(&format!("{name} d_inp"), &fast.0, &reference.0, tol);
        // The parameter gradients are sums of n·hw terms that may cancel to far below their
        // size (float32 blocks against f64: off by ~1e-7 of Σ|term|), so their errors are
        // measured against the largest channel's Σ|term|, not against the (small) result.
        let term_sums = |term: &dyn Fn(usize, usize) -> f64| {
            (0..c)
                .map(|ch| {
                    (0..n)
                        .flat_map(|b| (0..hw).map(move |i| (b * c + ch) * hw + i))
                        .map(|i| term(ch, i).abs())
                        .sum::<f64>()
                })
                .fold(0.0, f64::max)
        };
        let weight_terms =
            term_sums(&|ch, i| d_out[i] as f64 * (inp[i] - mean[ch]) as f64 * rstd[ch] as f64);
        let bias_terms = term_sums(&|_, i| d_out[i] as f64);
        assert!(weight_terms.is_finite() && bias_terms.is_finite());
        for (what, got, want, terms) in [
            ("d_weight", &fast.1, &reference.1, weight_terms),
            ("d_bias", &fast.2, &reference.2, bias_terms),
        ] {
            mtosi::compare::assert_close(
                &format!("{name} {what}"),
                got,
                want,
                mtosi::compare::ErrorScale::of_peak_at_least(terms),
                tol,
            );
        }

        let eval = |reference: bool| {
            let mut out = vec![0.0; inp.len()];
            let forward = if reference {
                batchnorm_forward_eval_reference
            } else {
                batchnorm_forward_eval
            };
            forward(
                &mut out,
                &inp,
                &weight,
                &bias,
                &running_mean0,
                &running_var0,
                n,
                c,
                hw,
                BATCHNORM_EPS,
            );
            out
        };
        assert_close(&format!("{name} eval out"), &eval(false), &eval(true), tol);
    }
}

#[test]
fn batchnorm_running_statistics_use_momentum_and_unbiased_variance() {
    // One channel, values 1..4: mean 2.5, biased variance 1.25, unbiased 5/3.
    let inp = [1.0, 2.0, 3.0, 4.0];
    let mut out = [0.0; 4];
    let (mut mean, mut rstd) = ([0.0], [0.0]);
    let (mut running_mean, mut running_var) = ([0.0], [1.0]);
    batchnorm_forward_train(
        &mut out,
        &mut mean,
        &mut rstd,
        &mut running_mean,
        &mut running_var,
        &inp,
        &[2.0],
        &[0.5],
        2,
        1,
        2,
        0.1,
        1e-5,
    );
    assert_eq!(mean[0], 2.5);
    assert!((rstd[0] - 1.0 / (1.25f32 + 1e-5).sqrt()).abs() < 1e-6);
    assert!((running_mean[0] - 0.25).abs() < 1e-7);
    assert!((running_var[0] - (0.9 + 0.1 * 5.0 / 3.0)).abs() < 1e-6);
    // Normalised with the biased variance.
    let expected_first = (1.0 - 2.5) / (1.25f32 + 1e-5).sqrt() * 2.0 + 0.5;
    assert!((out[0] - expected_first).abs() < 1e-6, "{}", out[0]);
}

#[test]
fn batchnorm_eval_normalises_with_running_statistics() {
    let inp = [1.0, 3.0, -2.0, 0.0];
    let mut out = [0.0; 4];
    // Two channels of two values each, n = 1.
    batchnorm_forward_eval(
        &mut out,
        &inp,
        &[1.0, 3.0],
        &[0.0, 1.0],
        &[1.0, -1.0],
        &[4.0, 0.25],
        1,
        2,
        2,
        0.0,
    );
    assert_eq!(out, [0.0, 1.0, -5.0, 7.0]);
}

/// Bit equality (so NaN never passes unnoticed: every value must also be finite).
fn assert_same_bits(name: &str, fused: &[f32], separate: &[f32]) {
    assert_eq!(fused.len(), separate.len(), "{name}: lengths");
    for (i, (&f, &s)) in fused.iter().zip(separate).enumerate() {
        assert!(f.is_finite(), "{name}[{i}]: {f} is not finite");
        assert_eq!(
            f.to_bits(),
            s.to_bits(),
            "{name}[{i}]: fused {f} vs separate {s}"
        );
    }
}

#[test]
fn batchnorm_backward_from_the_output_matches_the_backward_from_the_input() {
    use mtosi::ops::activation::LEAKY_RELU_SLOPE;
    let test = "batchnorm_backward_from_the_output_matches_the_backward_from_the_input";
    let mut rng = Rng::new(seed(test));
    let slope = LEAKY_RELU_SLOPE;
    for _ in 0..6 {
        let (n, c, hw) = (
            rng.range_usize(1, 4),
            rng.range_usize(1, 6),
            rng.range_usize(2, 3000),
        );
        let len = n * c * hw;
        let inp = rng.vec_f32(len, -3.0, 5.0);
        // Weights of either sign, none near zero; biases up to twice their size.
        let weight: Vec<f32> = rng
            .vec_f32(c, 0.2, 2.0)
            .into_iter()
            .zip(rng.vec_f32(c, -1.0, 1.0))
            .map(|(g, sign)| if sign < 0.0 { -g } else { g })
            .collect();
        let bias = rng.vec_f32(c, -2.0, 2.0);
        let d_out = rng.vec_f32(len, -1.0, 1.0);
        let name = format!("n {n} c {c} hw {hw}");
        assert!(batchnorm_backward_from_output_applies(
            &weight, &bias, slope
        ));
        let mut out = vec![f32::NAN; len];
        let (mut mean, mut rstd) = (vec![0.0; c], vec![0.0; c]);
        let (mut rm, mut rv) = (vec![0.0; c], vec![1.0; c]);
        batchnorm_leaky_relu_forward_train(
            &mut out,
            &mut mean,
            &mut rstd,
            &mut rm,
            &mut rv,
            &inp,
            &weight,
            &bias,
            n,
            c,
            hw,
            BATCHNORM_MOMENTUM,
            BATCHNORM_EPS,
            slope,
        );
        let (mut d_inp, mut d_weight, mut d_bias) = (vec![0.0; len], vec![0.1; c], vec![-0.1; c]);
        batchnorm_leaky_relu_backward(
            Some(&mut d_inp),
            &mut d_weight,
            &mut d_bias,
            &d_out,
            &out,
            &inp,
            &weight,
            &mean,
            &rstd,
            n,
            c,
            hw,
            slope,
        );
        let (mut o_d_inp, mut o_d_weight, mut o_d_bias) =
            (vec![f32::NAN; len], vec![0.1; c], vec![-0.1; c]);
        batchnorm_leaky_relu_backward_from_output(
            &mut o_d_inp,
            &mut o_d_weight,
            &mut o_d_bias,
            &d_out,
            &out,
            &weight,
            &bias,
            &rstd,
            n,
            c,
            hw,
            slope,
        );
        // x̂ from the rounded output: float32 rounding magnified by at most |β/γ| ≤ 10. d_x's
        // terms (a·g ~ γ·rstd·d_out) cancel to almost nothing where a channel has two values
        // (x̂ = ±1 whatever the input), so its error is measured against their size.
        let term = (0..c)
            .map(|ch| (weight[ch] * rstd[ch]).abs() as f64)
            .fold(0.0, f64::max)
            * d_out.iter().map(|v| v.abs() as f64).fold(0.0, f64::max);
        assert!(
            term.is_finite() && term > 0.0,
            "{name}: d_x's term scale {term}"
        );
        mtosi::compare::assert_close(
            &format!("{name} d_inp"),
            &o_d_inp,
            &d_inp,
            mtosi::compare::ErrorScale::of_peak_at_least(term),
            1e-4,
        );
        assert_close(&format!("{name} d_weight"), &o_d_weight, &d_weight, 1e-4);
        assert_close(&format!("{name} d_bias"), &o_d_bias, &d_bias, 1e-5);
    }
    // Refused where x̂ = (z − β)/γ would magnify the output's rounding, or a value is NaN.
    for (weight, bias) in [(0.0, 0.0), (1e-4, 0.0), (0.01, 20.0), (f32::NAN, 0.0)] {
        assert!(!batchnorm_backward_from_output_applies(
            &[1.0, weight],
            &[0.0, bias],
            slope
        ));
    }
    assert!(!batchnorm_backward_from_output_applies(&[1.0], &[0.0], 0.0));
}

#[test]
fn batchnorm_leaky_relu_fused_equals_the_two_ops_bit_for_bit() {
    use mtosi::ops::activation::{leaky_relu_backward, leaky_relu_forward, LEAKY_RELU_SLOPE};
    let mut rng = Rng::new(seed(
        "batchnorm_leaky_relu_fused_equals_the_two_ops_bit_for_bit",
    ));
    // Planes longer than the sums' 1024-value block, with partial blocks, and a few channels.
    for _ in 0..6 {
        let (n, c, hw) = (
            rng.range_usize(1, 4),
            rng.range_usize(1, 6),
            rng.range_usize(2, 3000),
        );
        let len = n * c * hw;
        let inp = rng.vec_f32(len, -3.0, 5.0);
        let weight = rng.vec_f32(c, 0.5, 1.5);
        let bias = rng.vec_f32(c, -1.0, 1.0);
        let d_out = rng.vec_f32(len, -1.0, 1.0);
        let prior_d_inp = rng.vec_f32(len, -0.1, 0.1);
        let (rm0, rv0) = (rng.vec_f32(c, -1.0, 1.0), rng.vec_f32(c, 0.5, 2.0));
        let name = format!("n {n} c {c} hw {hw}");
        let slope = LEAKY_RELU_SLOPE;

        // Separate: BatchNorm, then leaky ReLU; backward leaky ReLU, then BatchNorm.
        let (mut pre, mut separate) = (vec![0.0; len], vec![0.0; len]);
        let (mut mean, mut rstd) = (vec![0.0; c], vec![0.0; c]);
        let (mut rm, mut rv) = (rm0.clone(), rv0.clone());
        batchnorm_forward_train(
            &mut pre,
            &mut mean,
            &mut rstd,
            &mut rm,
            &mut rv,
            &inp,
            &weight,
            &bias,
            n,
            c,
            hw,
            BATCHNORM_MOMENTUM,
            BATCHNORM_EPS,
        );
        leaky_relu_forward(&mut separate, &pre, slope);
        let mut d_pre = vec![0.0; len];
        leaky_relu_backward(&mut d_pre, &d_out, &separate, slope);
        let (mut d_inp, mut d_weight, mut d_bias) =
            (prior_d_inp.clone(), vec![0.1; c], vec![-0.1; c]);
        batchnorm_backward(
            Some(&mut d_inp),
            &mut d_weight,
            &mut d_bias,
            &d_pre,
            &inp,
            &weight,
            &mean,
            &rstd,
            n,
            c,
            hw,
        );

        let mut fused = vec![f32::NAN; len];
        let (mut f_mean, mut f_rstd) = (vec![0.0; c], vec![0.0; c]);
        let (mut f_rm, mut f_rv) = (rm0.clone(), rv0.clone());
        batchnorm_leaky_relu_forward_train(
            &mut fused,
            &mut f_mean,
            &mut f_rstd,
            &mut f_rm,
            &mut f_rv,
            &inp,
            &weight,
            &bias,
            n,
            c,
            hw,
            BATCHNORM_MOMENTUM,
            BATCHNORM_EPS,
            slope,
        );
        assert_same_bits(&format!("{name} out"), &fused, &separate);
        assert_same_bits(&format!("{name} mean"), &f_mean, &mean);
        assert_same_bits(&format!("{name} rstd"), &f_rstd, &rstd);
        assert_same_bits(&format!("{name} running_mean"), &f_rm, &rm);
        assert_same_bits(&format!("{name} running_var"), &f_rv, &rv);
        let (mut f_d_inp, mut f_d_weight, mut f_d_bias) =
            (prior_d_inp.clone(), vec![0.1; c], vec![-0.1; c]);
        batchnorm_leaky_relu_backward(
            Some(&mut f_d_inp),
            &mut f_d_weight,
            &mut f_d_bias,
            &d_out,
            &fused,
            &inp,
            &weight,
            &f_mean,
            &f_rstd,
            n,
            c,
            hw,
            slope,
        );
        assert_same_bits(&format!("{name} d_inp"), &f_d_inp, &d_inp);
        assert_same_bits(&format!("{name} d_weight"), &f_d_weight, &d_weight);
        assert_same_bits(&format!("{name} d_bias"), &f_d_bias, &d_bias);

        // Into a fresh gradient: written over NaN, the bits the add leaves in zeros.
        let (mut zero_d_inp, mut z_d_weight, mut z_d_bias) =
            (vec![0.0; len], vec![0.1; c], vec![-0.1; c]);
        batchnorm_leaky_relu_backward(
            Some(&mut zero_d_inp),
            &mut z_d_weight,
            &mut z_d_bias,
            &d_out,
            &fused,
            &inp,
            &weight,
            &f_mean,
            &f_rstd,
            n,
            c,
            hw,
            slope,
        );
        let (mut w_d_inp, mut w_d_weight, mut w_d_bias) =
            (vec![f32::NAN; len], vec![0.1; c], vec![-0.1; c]);
        batchnorm_leaky_relu_backward_overwrite(
            &mut w_d_inp,
            &mut w_d_weight,
            &mut w_d_bias,
            &d_out,
            &fused,
            &inp,
            &weight,
            &f_mean,
            &f_rstd,
            n,
            c,
            hw,
            slope,
        );
        assert_same_bits(&format!("{name} overwritten d_inp"), &w_d_inp, &zero_d_inp);
        assert_same_bits(
            &format!("{name} overwrite d_weight"),
            &w_d_weight,
            &z_d_weight,
        );
        assert_same_bits(&format!("{name} overwrite d_bias"), &w_d_bias, &z_d_bias);

        // Evaluation mode, against the plain-loop reference too (within f32 rounding).
        let (mut pre_eval, mut separate_eval, mut fused_eval) =
            (vec![0.0; len], vec![0.0; len], vec![f32::NAN; len]);
        batchnorm_forward_eval(
            &mut pre_eval,
            &inp,
            &weight,
            &bias,
            &rm0,
            &rv0,
            n,
            c,
            hw,
            BATCHNORM_EPS,
        );
        leaky_relu_forward(&mut separate_eval, &pre_eval, slope);
        batchnorm_leaky_relu_forward_eval(
            &mut fused_eval,
            &inp,
            &weight,
            &bias,
            &rm0,
            &rv0,
            n,
            c,
            hw,
            BATCHNORM_EPS,
            slope,
        );
        assert_same_bits(&format!("{name} eval out"), &fused_eval, &separate_eval);
        let mut reference = vec![0.0; len];
        batchnorm_forward_eval_reference(
            &mut reference,
            &inp,
            &weight,
            &bias,
            &rm0,
            &rv0,
            n,
            c,
            hw,
            BATCHNORM_EPS,
        );
        let reference: Vec<f32> = reference
            .iter()
            .map(|&v| if v > 0.0 { v } else { v * slope })
            .collect();
        // One f32 rounding of scale and shift against the f64 reference: ~1e-6 relative.
        assert_close(
            &format!("{name} eval vs reference"),
            &fused_eval,
            &reference,
            1e-5,
        );
    }
}

mod kernels {
    //! kernels/batchnorm.cu against the CPU ops: training forward (statistics, running
    //! statistics, output), evaluation forward and the backward, each plain and fused with the
    //! leaky ReLU that follows it, on odd shapes (one and several reduction slices per channel).
    use mtosi::device::equivalence::{Equivalence, Rng};
    use mtosi::device::Device;
    use mtosi::ops::activation::{leaky_relu_backward, leaky_relu_forward, LEAKY_RELU_SLOPE};
    use mtosi::ops::batchnorm::*;

    /// (n, c, hw)
    const SHAPES: [(usize, usize, usize); 6] = [
        (1, 1, 2),
        (2, 3, 7),
        (3, 5, 33),
        (4, 2, 1000),
        (2, 17, 129),
        (2, 3, 9000),
    ];

    struct Inputs {
        shape: (usize, usize, usize),
        inp: Vec<f32>,
        d_out: Vec<f32>,
        weight: Vec<f32>,
        bias: Vec<f32>,
        running_mean: Vec<f32>,
        running_var: Vec<f32>,
        prior_d_inp: Vec<f32>,
        prior_d_weight: Vec<f32>,
        prior_d_bias: Vec<f32>,
    }

    fn inputs(&(n, c, hw): &(usize, usize, usize), rng: &mut Rng) -> Inputs {
        let len = n * c * hw;
        Inputs {
            shape: (n, c, hw),
            // Off-centre activations: the mean matters. Spread out: (1, 1, 2) with its two values
            // within ~0.01 missed 1e-4 (seed 0x9ade2b6e055d31b3).
            inp: super::spread_activations(rng, (n, c, hw), -1.0, 3.0, 0.1),
            d_out: rng.vec_f32(len, -1.0, 1.0),
            weight: rng.vec_f32(c, 0.5, 1.5),
            bias: rng.vec_f32(c, -0.5, 0.5),
            running_mean: rng.vec_f32(c, -0.5, 0.5),
            running_var: rng.vec_f32(c, 0.5, 2.0),
            prior_d_inp: rng.vec_f32(len, -0.1, 0.1),
            prior_d_weight: rng.vec_f32(c, -0.1, 0.1),
            prior_d_bias: rng.vec_f32(c, -0.1, 0.1),
        }
    }

    /// The CPU training forward, then leaky ReLU when fused: (out, pre-activation, save_mean,
    /// save_rstd, running_mean, running_var).
    fn cpu_train(x: &Inputs, leaky: FusedLeakyRelu) -> [Vec<f32>; 6] {
        let (n, c, hw) = x.shape;
        let mut pre = vec![0.0; x.inp.len()];
        let (mut mean, mut rstd) = (vec![0.0; c], vec![0.0; c]);
        let (mut rm, mut rv) = (x.running_mean.clone(), x.running_var.clone());
        batchnorm_forward_train(
            &mut pre,
            &mut mean,
            &mut rstd,
            &mut rm,
            &mut rv,
            &x.inp,
            &x.weight,
            &x.bias,
            n,
            c,
            hw,
            BATCHNORM_MOMENTUM,
            BATCHNORM_EPS,
        );
        let out = match leaky {
            Some(slope) => {
                let mut out = vec![0.0; pre.len()];
                leaky_relu_forward(&mut out, &pre, slope);
                out
            }
            None => pre.clone(),
        };
        [out, pre, mean, rstd, rm, rv]
    }

    /// The kernel training forward: (workspace, out, save_mean, save_rstd, running_mean,
    /// running_var) with the running statistics on the device.
    type KernelTrain = (
        BatchNormWorkspace,
        mtosi::device::DeviceBuffer<f32>,
        [mtosi::device::DeviceBuffer<f32>; 4],
    );

    fn kernel_train(
        k: &mtosi::device::KernelDevice,
        x: &Inputs,
        leaky: FusedLeakyRelu,
    ) -> Result<KernelTrain, mtosi::device::DeviceError> {
        let (n, c, hw) = x.shape;
        let mut ws = BatchNormWorkspace::new(k, n, c, hw)?;
        let (inp, weight, bias) = (k.upload(&x.inp)?, k.upload(&x.weight)?, k.upload(&x.bias)?);
        let mut out = k.alloc(inp.len())?;
        let (mut mean, mut rstd) = (k.alloc(c)?, k.alloc(c)?);
        let (mut rm, mut rv) = (k.upload(&x.running_mean)?, k.upload(&x.running_var)?);
        batchnorm_forward_train_launch(
            k,
            &mut ws,
            &mut out,
            &mut mean,
            &mut rstd,
            &mut rm,
            &mut rv,
            &inp,
            &weight,
            &bias,
            BATCHNORM_MOMENTUM,
            BATCHNORM_EPS,
            leaky,
        )?;
        Ok((ws, out, [mean, rstd, rm, rv]))
    }

    #[test]
    fn batchnorm_train_forward_matches_cpu_reference_on_every_device() {
        for (name, leaky) in [
            ("batchnorm_forward_train", None),
            ("batchnorm_leaky_relu_forward_train", Some(LEAKY_RELU_SLOPE)),
        ] {
            Equivalence::new(name)
                // f64 statistics on both sides (one pass here, two on the CPU); the output is
                // x·scale + shift in float32, fused on the kernel side: a few ulp of the largest.
                .floor_fraction(1.0)
                .tolerance(1e-5)
                .run(&SHAPES, inputs, |device, x| match device {
                    Device::Cpu => {
                        let [out, _, mean, rstd, rm, rv] = cpu_train(x, leaky);
                        Ok([out, mean, rstd, rm, rv].concat())
                    }
                    Device::Kernels(k) => {
                        let (_, out, stats) = kernel_train(k, x, leaky)?;
                        let mut all = k.download(&out)?;
                        for s in &stats {
                            all.extend(k.download(s)?);
                        }
                        Ok(all)
                    }
                });
        }
    }

    #[test]
    fn batchnorm_eval_forward_matches_cpu_reference_on_every_device() {
        for (name, leaky) in [
            ("batchnorm_forward_eval", None),
            ("batchnorm_leaky_relu_forward_eval", Some(LEAKY_RELU_SLOPE)),
        ] {
            Equivalence::new(name)
                // The same f64 (scale, shift), then one float32 multiply-add (fused here).
                .floor_fraction(1.0)
                .tolerance(1e-6)
                .run(&SHAPES, inputs, |device, x| {
                    let (n, c, hw) = x.shape;
                    match device {
                        Device::Cpu => {
                            let mut out = vec![0.0; x.inp.len()];
                            batchnorm_forward_eval(
                                &mut out,
                                &x.inp,
                                &x.weight,
                                &x.bias,
                                &x.running_mean,
                                &x.running_var,
                                n,
                                c,
                                hw,
                                BATCHNORM_EPS,
                            );
                            if let Some(slope) = leaky {
                                let pre = out.clone();
                                leaky_relu_forward(&mut out, &pre, slope);
                            }
                            Ok(out)
                        }
                        Device::Kernels(k) => {
                            let mut ws = BatchNormWorkspace::new(k, n, c, hw)?;
                            let inp = k.upload(&x.inp)?;
                            let mut out = k.alloc(inp.len())?;
                            batchnorm_forward_eval_launch(
                                k,
                                &mut ws,
                                &mut out,
                                &inp,
                                &k.upload(&x.weight)?,
                                &k.upload(&x.bias)?,
                                &k.upload(&x.running_mean)?,
                                &k.upload(&x.running_var)?,
                                BATCHNORM_EPS,
                                leaky,
                            )?;
                            k.download(&out)
                        }
                    }
                });
        }
    }

    #[test]
    fn batchnorm_backward_matches_cpu_reference_on_every_device() {
        for (name, leaky) in [
            ("batchnorm_backward", None),
            ("batchnorm_leaky_relu_backward", Some(LEAKY_RELU_SLOPE)),
        ] {
            Equivalence::new(name)
                // d_x = a·d_y + b·x + k cancels to a fraction of its terms; f64 sums on both
                // sides, float32 coefficients: the bound, 1e-4 of the largest.
                .floor_fraction(1.0)
                .tolerance(1e-4)
                .run(&SHAPES, inputs, |device, x| {
                    let (n, c, hw) = x.shape;
                    match device {
                        Device::Cpu => {
                            let [_, pre, mean, rstd, _, _] = cpu_train(x, leaky);
                            let d_y = match leaky {
                                Some(slope) => {
                                    let mut d_y = vec![0.0; pre.len()];
                                    leaky_relu_backward(&mut d_y, &x.d_out, &pre, slope);
                                    d_y
                                }
                                None => x.d_out.clone(),
                            };
                            let mut d_inp = x.prior_d_inp.clone();
                            let mut d_weight = x.prior_d_weight.clone();
                            let mut d_bias = x.prior_d_bias.clone();
                            batchnorm_backward(
                                Some(&mut d_inp),
                                &mut d_weight,
                                &mut d_bias,
                                &d_y,
                                &x.inp,
                                &x.weight,
                                &mean,
                                &rstd,
                                n,
                                c,
                                hw,
                            );
                            Ok([d_inp, d_weight, d_bias].concat())
                        }
                        Device::Kernels(k) => {
                            let (mut ws, _, [mean, rstd, _, _]) = kernel_train(k, x, leaky)?;
                            let mut d_inp = k.upload(&x.prior_d_inp)?;
                            let mut d_weight = k.upload(&x.prior_d_weight)?;
                            let mut d_bias = k.upload(&x.prior_d_bias)?;
                            batchnorm_backward_launch(
                                k,
                                &mut ws,
                                Some(&mut d_inp),
                                &mut d_weight,
                                &mut d_bias,
                                &k.upload(&x.d_out)?,
                                &k.upload(&x.inp)?,
                                &k.upload(&x.weight)?,
                                &mean,
                                &rstd,
                                leaky,
                            )?;
                            Ok([
                                k.download(&d_inp)?,
                                k.download(&d_weight)?,
                                k.download(&d_bias)?,
                            ]
                            .concat())
                        }
                    }
                });
        }
    }
}

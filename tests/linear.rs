//! Linear: gradients against finite differences and the fast path against the reference.

mod op_check;

use mtosi::ops::linear::*;
use op_check::{assert_close, check_gradient, seed, weighted_sum, Rng};

fn forward(
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    rows: usize,
    fi: usize,
    fo: usize,
) -> Vec<f32> {
    let mut out = vec![0.0; rows * fo];
    linear_forward(&mut out, inp, weight, Some(bias), rows, fi, fo);
    out
}

#[test]
fn linear_gradients_match_finite_differences() {
    let mut rng = Rng::new(seed("linear_gradients_match_finite_differences"));
    let (rows, fi, fo) = (5, 6, 4);
    let inp = rng.vec_f32(rows * fi, -1.0, 1.0);
    let weight = rng.vec_f32(fo * fi, -1.0, 1.0);
    let bias = rng.vec_f32(fo, -1.0, 1.0);
    let d_out = rng.vec_f32(rows * fo, -1.0, 1.0);
    let (mut d_inp, mut d_weight, mut d_bias) =
        (vec![0.0; inp.len()], vec![0.0; weight.len()], vec![0.0; fo]);
    linear_backward(
        Some(&mut d_inp),
        &mut d_weight,
        Some(&mut d_bias),
        &d_out,
        &inp,
        &weight,
        rows,
        fi,
        fo,
    );
    // Linear in each argument: exact up to f32 rounding of the outputs (~1e-7/2h).
    let (h, tol) = (1e-2, 1e-3);
    check_gradient("linear d_inp", &inp, &d_inp, h, tol, |x| {
        weighted_sum(&forward(x, &weight, &bias, rows, fi, fo), &d_out)
    });
    check_gradient("linear d_weight", &weight, &d_weight, h, tol, |x| {
        weighted_sum(&forward(&inp, x, &bias, rows, fi, fo), &d_out)
    });
    check_gradient("linear d_bias", &bias, &d_bias, h, tol, |x| {
        weighted_sum(&forward(&inp, &weight, x, rows, fi, fo), &d_out)
    });
}

#[test]
fn linear_fast_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(seed("linear_fast_matches_reference_on_random_shapes"));
    for _ in 0..10 {
        let (rows, fi, fo) = (
            rng.range_usize(1, 300),
            rng.range_usize(1, 400),
            rng.range_usize(1, 100),
        );
        let inp = rng.vec_f32(rows * fi, -1.0, 1.0);
        let weight = rng.vec_f32(fo * fi, -1.0, 1.0);
        let bias = rng.vec_f32(fo, -1.0, 1.0);
        let d_out = rng.vec_f32(rows * fo, -1.0, 1.0);
        let mut expected = vec![0.0; rows * fo];
        linear_forward_reference(&mut expected, &inp, &weight, Some(&bias), rows, fi, fo);
        // Dot products of ≤ 400 (or ≤ 300 for the weight gradient) terms in another order:
        // f32 rounding ~ sqrt(K)·6e-8 relative to the largest value, below 1e-5.
        let tol = 1e-5;
        let name = format!("rows {rows} in {fi} out {fo}");
        let out = forward(&inp, &weight, &bias, rows, fi, fo);
        assert_close(&format!("{name} out"), &out, &expected, tol);
        let priors = (
            rng.vec_f32(inp.len(), -1.0, 1.0),
            rng.vec_f32(weight.len(), -1.0, 1.0),
            rng.vec_f32(fo, -1.0, 1.0),
        );
        let grads = |reference: bool| {
            let (mut d_inp, mut d_weight, mut d_bias) = priors.clone();
            let backward = if reference {
                linear_backward_reference
            } else {
                linear_backward
            };
            backward(
                Some(&mut d_inp),
                &mut d_weight,
                Some(&mut d_bias),
                &d_out,
                &inp,
                &weight,
                rows,
                fi,
                fo,
            );
            (d_inp, d_weight, d_bias)
        };
        let (fast, reference) = (grads(false), grads(true));
        assert_close(&format!("{name} d_inp"), &fast.0, &reference.0, tol);
        assert_close(&format!("{name} d_weight"), &fast.1, &reference.1, tol);
        assert_close(&format!("{name} d_bias"), &fast.2, &reference.2, tol);
    }
}

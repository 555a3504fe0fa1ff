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

mod kernels {
    //! Linear on the kernel devices (the tiled SGEMM, bias fill and f64 column sums) against
    //! the CPU op, with and without bias, NaN-poisoned forward output.
    use mtosi::device::equivalence::Equivalence;
    use mtosi::device::Device;
    use mtosi::ops::linear::*;

    /// (rows, in_features, out_features, bias)
    const CASES: [(usize, usize, usize, bool); 5] = [
        (1, 1, 1, true),
        (7, 33, 5, true),
        (70, 65, 88, true),
        (129, 16, 3, false),
        (33, 100, 64, true),
    ];

    #[test]
    fn linear_matches_cpu_reference_on_every_device() {
        let inputs = |&(rows, i, o, bias): &(usize, usize, usize, bool),
                      rng: &mut mtosi::device::equivalence::Rng| {
            (
                (rows, i, o, bias),
                rng.vec_f32(rows * i, -1.0, 1.0),
                rng.vec_f32(o * i, -0.5, 0.5),
                rng.vec_f32(o, -0.5, 0.5),
                rng.vec_f32(rows * o, -1.0, 1.0),
                [
                    rng.vec_f32(rows * i, -0.1, 0.1),
                    rng.vec_f32(o * i, -0.1, 0.1),
                    rng.vec_f32(o, -0.1, 0.1),
                ],
            )
        };
        Equivalence::new("linear_forward")
            // fp32 sums of up to 100 products in another order: 1e-4 of the largest.
            .floor_fraction(1.0)
            .tolerance(1e-4)
            .run(
                &CASES,
                inputs,
                |device, ((rows, i, o, has_bias), x, w, b, _, _)| {
                    let bias = has_bias.then_some(b);
                    match device {
                        Device::Cpu => {
                            let mut out = vec![0.0; rows * o];
                            linear_forward(&mut out, x, w, bias.map(|b| &b[..]), *rows, *i, *o);
                            Ok(out)
                        }
                        Device::Kernels(k) => {
                            let mut out = k.alloc(rows * o)?;
                            let bias = bias.map(|b| k.upload(b)).transpose()?;
                            linear_forward_launch(
                                k,
                                &mut out,
                                &k.upload(x)?,
                                &k.upload(w)?,
                                bias.as_ref(),
                                *rows,
                                *i,
                                *o,
                            )?;
                            k.download(&out)
                        }
                    }
                },
            );
        Equivalence::new("linear_backward")
            // fp32 sums of up to 129 products in another order: 1e-4 of the largest.
            .floor_fraction(1.0)
            .tolerance(1e-4)
            .run(
                &CASES,
                inputs,
                |device, ((rows, i, o, _), x, w, _, d_out, [p_in, p_w, p_b])| match device {
                    Device::Cpu => {
                        let (mut d_in, mut d_w, mut d_b) = (p_in.clone(), p_w.clone(), p_b.clone());
                        linear_backward(
                            Some(&mut d_in),
                            &mut d_w,
                            Some(&mut d_b),
                            d_out,
                            x,
                            w,
                            *rows,
                            *i,
                            *o,
                        );
                        Ok([d_in, d_w, d_b].concat())
                    }
                    Device::Kernels(k) => {
                        let (mut d_in, mut d_w, mut d_b) =
                            (k.upload(p_in)?, k.upload(p_w)?, k.upload(p_b)?);
                        linear_backward_launch(
                            k,
                            Some(&mut d_in),
                            &mut d_w,
                            Some(&mut d_b),
                            &k.upload(d_out)?,
                            &k.upload(x)?,
                            &k.upload(w)?,
                            *rows,
                            *i,
                            *o,
                            &mut k.alloc(linear_backward_scratch_len(*rows, *i, *o))?,
                        )?;
                        Ok([k.download(&d_in)?, k.download(&d_w)?, k.download(&d_b)?].concat())
                    }
                },
            );
    }
}

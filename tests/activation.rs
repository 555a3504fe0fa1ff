//! Leaky ReLU and sigmoid: gradients against finite differences, the fast path against the
//! reference, and PyTorch's values at the edges.

mod op_check;

use mtosi::ops::activation::*;
use op_check::{assert_close, check_gradient, seed, weighted_sum, Rng};

/// Inputs kept away from leaky ReLU's kink at 0 so that ±h never crosses it.
fn away_from_zero(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len)
        .map(|_| {
            let x = rng.range_f32(0.05, 3.0);
            if rng.next_u64().is_multiple_of(2) {
                x
            } else {
                -x
            }
        })
        .collect()
}

#[test]
fn activation_gradients_match_finite_differences() {
    let mut rng = Rng::new(seed("activation_gradients_match_finite_differences"));
    let inp = away_from_zero(&mut rng, 40);
    let d_out = rng.vec_f32(inp.len(), -1.0, 1.0);

    let mut d_inp = vec![0.0; inp.len()];
    leaky_relu_backward(&mut d_inp, &d_out, &inp, LEAKY_RELU_SLOPE);
    // Piecewise linear away from the kink: exact up to f32 rounding (~1e-7/2h).
    check_gradient("leaky_relu d_inp", &inp, &d_inp, 1e-2, 1e-4, |x| {
        let mut out = vec![0.0; x.len()];
        leaky_relu_forward(&mut out, x, LEAKY_RELU_SLOPE);
        weighted_sum(&out, &d_out)
    });

    let mut out = vec![0.0; inp.len()];
    sigmoid_forward(&mut out, &inp);
    let mut d_inp = vec![0.0; inp.len()];
    sigmoid_backward(&mut d_inp, &d_out, &out);
    // σ''' ≤ 1/8: truncation h²/6·σ''' ≈ 2e-6 at h = 1e-2, plus rounding ~1e-5.
    check_gradient("sigmoid d_inp", &inp, &d_inp, 1e-2, 1e-3, |x| {
        let mut out = vec![0.0; x.len()];
        sigmoid_forward(&mut out, x);
        weighted_sum(&out, &d_out)
    });
}

#[test]
fn activation_fast_matches_reference_on_random_lengths() {
    let mut rng = Rng::new(seed("activation_fast_matches_reference_on_random_lengths"));
    for _ in 0..8 {
        let len = rng.range_usize(1, 5000);
        let inp = rng.vec_f32(len, -8.0, 8.0);
        let d_out = rng.vec_f32(len, -1.0, 1.0);
        let prior = rng.vec_f32(len, -1.0, 1.0);
        // Same formula per element; only vectorised evaluation of exp may differ by an ulp or two.
        let tol = 1e-6;

        let (mut fast, mut reference) = (vec![0.0; len], vec![0.0; len]);
        leaky_relu_forward(&mut fast, &inp, LEAKY_RELU_SLOPE);
        leaky_relu_forward_reference(&mut reference, &inp, LEAKY_RELU_SLOPE);
        assert_close("leaky_relu out", &fast, &reference, tol);
        let (mut fast, mut reference) = (prior.clone(), prior.clone());
        leaky_relu_backward(&mut fast, &d_out, &inp, LEAKY_RELU_SLOPE);
        leaky_relu_backward_reference(&mut reference, &d_out, &inp, LEAKY_RELU_SLOPE);
        assert_close("leaky_relu d_inp", &fast, &reference, tol);

        let (mut fast, mut reference) = (vec![0.0; len], vec![0.0; len]);
        sigmoid_forward(&mut fast, &inp);
        sigmoid_forward_reference(&mut reference, &inp);
        assert_close("sigmoid out", &fast, &reference, tol);
        let out = reference;
        let (mut fast, mut reference) = (prior.clone(), prior.clone());
        sigmoid_backward(&mut fast, &d_out, &out);
        sigmoid_backward_reference(&mut reference, &d_out, &out);
        assert_close("sigmoid d_inp", &fast, &reference, tol);
    }
}

#[test]
fn leaky_relu_uses_the_slope_at_and_below_zero() {
    let inp = [-2.0, 0.0, 3.0];
    let mut out = [0.0; 3];
    leaky_relu_forward(&mut out, &inp, 0.01);
    assert_eq!(out, [-0.02, 0.0, 3.0]);
    let mut d_inp = [0.0; 3];
    leaky_relu_backward(&mut d_inp, &[1.0, 1.0, 1.0], &inp, 0.01);
    assert_eq!(d_inp, [0.01, 0.01, 1.0]);
}

#[test]
fn sigmoid_saturates_without_nan() {
    let inp = [-200.0, 0.0, 200.0];
    let mut out = [0.0; 3];
    sigmoid_forward(&mut out, &inp);
    assert_eq!(out, [0.0, 0.5, 1.0]);
}

mod kernels {
    //! kernels/activation.cu against the CPU ops, NaN-poisoned forward outputs, backward added
    //! into a random prior gradient.
    use mtosi::device::equivalence::{Equivalence, ODD_LENGTHS};
    use mtosi::device::Device;
    use mtosi::ops::activation::*;

    #[test]
    fn leaky_relu_matches_cpu_reference_on_every_device() {
        Equivalence::new("leaky_relu_forward")
            // One multiply per element: exact.
            .tolerance(0.0)
            .run(
                &ODD_LENGTHS,
                |&n, rng| rng.vec_f32(n, -4.0, 4.0),
                |device, inp| match device {
                    Device::Cpu => {
                        let mut out = vec![0.0; inp.len()];
                        leaky_relu_forward(&mut out, inp, LEAKY_RELU_SLOPE);
                        Ok(out)
                    }
                    Device::Kernels(k) => {
                        let inp = k.upload(inp)?;
                        let mut out = k.alloc(inp.len())?;
                        leaky_relu_forward_launch(k, &mut out, &inp, LEAKY_RELU_SLOPE)?;
                        k.download(&out)
                    }
                },
            );
        Equivalence::new("leaky_relu_backward")
            // One multiply and one add per element; a GPU may fuse them: ≤ 1 ulp.
            .tolerance(2.5e-7)
            .run(
                &ODD_LENGTHS,
                |&n, rng| {
                    (
                        rng.vec_f32(n, -1.0, 1.0),
                        rng.vec_f32(n, -4.0, 4.0),
                        rng.vec_f32(n, -1.0, 1.0),
                    )
                },
                |device, (d_out, inp, prior)| match device {
                    Device::Cpu => {
                        let mut d_inp = prior.clone();
                        leaky_relu_backward(&mut d_inp, d_out, inp, LEAKY_RELU_SLOPE);
                        Ok(d_inp)
                    }
                    Device::Kernels(k) => {
                        let (d_out, inp) = (k.upload(d_out)?, k.upload(inp)?);
                        let mut d_inp = k.upload(prior)?;
                        leaky_relu_backward_launch(k, &mut d_inp, &d_out, &inp, LEAKY_RELU_SLOPE)?;
                        k.download(&d_inp)
                    }
                },
            );
    }

    #[test]
    fn sigmoid_matches_cpu_reference_on_every_device() {
        Equivalence::new("sigmoid_forward")
            // expf differs by ≤ 2 ulp between libm and CUDA; one add and one division after it.
            .tolerance(1e-6)
            .run(
                &ODD_LENGTHS,
                |&n, rng| rng.vec_f32(n, -12.0, 12.0),
                |device, inp| match device {
                    Device::Cpu => {
                        let mut out = vec![0.0; inp.len()];
                        sigmoid_forward(&mut out, inp);
                        Ok(out)
                    }
                    Device::Kernels(k) => {
                        let inp = k.upload(inp)?;
                        let mut out = k.alloc(inp.len())?;
                        sigmoid_forward_launch(k, &mut out, &inp)?;
                        k.download(&out)
                    }
                },
            );
        Equivalence::new("sigmoid_backward")
            // Two multiplies and an add, possibly fused on a GPU: a few ulp.
            .tolerance(1e-6)
            .run(
                &ODD_LENGTHS,
                |&n, rng| {
                    (
                        rng.vec_f32(n, -1.0, 1.0),
                        rng.vec_f32(n, 0.0, 1.0),
                        rng.vec_f32(n, -1.0, 1.0),
                    )
                },
                |device, (d_out, out, prior)| match device {
                    Device::Cpu => {
                        let mut d_inp = prior.clone();
                        sigmoid_backward(&mut d_inp, d_out, out);
                        Ok(d_inp)
                    }
                    Device::Kernels(k) => {
                        let (d_out, out) = (k.upload(d_out)?, k.upload(out)?);
                        let mut d_inp = k.upload(prior)?;
                        sigmoid_backward_launch(k, &mut d_inp, &d_out, &out)?;
                        k.download(&d_inp)
                    }
                },
            );
    }
}

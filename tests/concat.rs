//! Channel concatenation: gradients against finite differences and the fast path against the
//! reference.

mod op_check;

use mtosi::ops::concat::*;
use op_check::{assert_close, check_gradient, seed, weighted_sum, Rng};

fn forward(a: &[f32], b: &[f32], n: usize, c_a: usize, c_b: usize, hw: usize) -> Vec<f32> {
    let mut out = vec![0.0; n * (c_a + c_b) * hw];
    concat_channels_forward(&mut out, a, b, n, c_a, c_b, hw);
    out
}

#[test]
fn concat_gradients_match_finite_differences() {
    let mut rng = Rng::new(seed("concat_gradients_match_finite_differences"));
    let (n, c_a, c_b, hw) = (2, 3, 2, 5);
    let a = rng.vec_f32(n * c_a * hw, -1.0, 1.0);
    let b = rng.vec_f32(n * c_b * hw, -1.0, 1.0);
    let d_out = rng.vec_f32(n * (c_a + c_b) * hw, -1.0, 1.0);
    let (mut d_a, mut d_b) = (vec![0.0; a.len()], vec![0.0; b.len()]);
    concat_channels_backward(Some(&mut d_a), Some(&mut d_b), &d_out, n, c_a, c_b, hw);
    // A copy: central differences are exact up to f32 rounding of the inputs.
    check_gradient("concat d_a", &a, &d_a, 1e-2, 1e-4, |x| {
        weighted_sum(&forward(x, &b, n, c_a, c_b, hw), &d_out)
    });
    check_gradient("concat d_b", &b, &d_b, 1e-2, 1e-4, |x| {
        weighted_sum(&forward(&a, x, n, c_a, c_b, hw), &d_out)
    });
}

#[test]
fn concat_fast_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(seed("concat_fast_matches_reference_on_random_shapes"));
    for _ in 0..8 {
        let (n, c_a, c_b, hw) = (
            rng.range_usize(1, 4),
            rng.range_usize(1, 9),
            rng.range_usize(1, 9),
            rng.range_usize(1, 200),
        );
        let a = rng.vec_f32(n * c_a * hw, -1.0, 1.0);
        let b = rng.vec_f32(n * c_b * hw, -1.0, 1.0);
        let mut expected = vec![0.0; n * (c_a + c_b) * hw];
        concat_channels_forward_reference(&mut expected, &a, &b, n, c_a, c_b, hw);
        // Copies and sums of two terms: bit-exact.
        assert_close(
            "concat out",
            &forward(&a, &b, n, c_a, c_b, hw),
            &expected,
            0.0,
        );
        let d_out = rng.vec_f32(expected.len(), -1.0, 1.0);
        let (prior_a, prior_b) = (
            rng.vec_f32(a.len(), -1.0, 1.0),
            rng.vec_f32(b.len(), -1.0, 1.0),
        );
        let (mut fast_a, mut fast_b) = (prior_a.clone(), prior_b.clone());
        concat_channels_backward(
            Some(&mut fast_a),
            Some(&mut fast_b),
            &d_out,
            n,
            c_a,
            c_b,
            hw,
        );
        let (mut ref_a, mut ref_b) = (prior_a, prior_b);
        concat_channels_backward_reference(
            Some(&mut ref_a),
            Some(&mut ref_b),
            &d_out,
            n,
            c_a,
            c_b,
            hw,
        );
        assert_close("concat d_a", &fast_a, &ref_a, 0.0);
        assert_close("concat d_b", &fast_b, &ref_b, 0.0);
    }
}

#[test]
fn concat_puts_the_first_tensor_first_in_each_sample() {
    // n = 2, one value per channel: a = [a0 | a1], b = [b0 | b1] → [a0 b0 | a1 b1].
    let out = forward(&[1.0, 2.0], &[10.0, 20.0], 2, 1, 1, 1);
    assert_eq!(out, [1.0, 10.0, 2.0, 20.0]);
}

mod kernels {
    //! kernels/concat.cu against the CPU op: NaN-poisoned forward output, backward added into
    //! random prior gradients.
    use mtosi::device::equivalence::Equivalence;
    use mtosi::device::Device;
    use mtosi::ops::concat::*;

    /// (n, c_a, c_b, hw)
    const CASES: [(usize, usize, usize, usize); 5] = [
        (1, 1, 1, 1),
        (2, 3, 5, 7),
        (3, 16, 1, 33),
        (1, 64, 64, 45),
        (2, 1, 17, 257),
    ];

    #[test]
    fn concat_matches_cpu_reference_on_every_device() {
        let inputs = |&(n, c_a, c_b, hw): &(usize, usize, usize, usize),
                      rng: &mut mtosi::device::equivalence::Rng| {
            (
                (n, c_a, c_b, hw),
                rng.vec_f32(n * c_a * hw, -1.0, 1.0),
                rng.vec_f32(n * c_b * hw, -1.0, 1.0),
                rng.vec_f32(n * (c_a + c_b) * hw, -1.0, 1.0),
            )
        };
        Equivalence::new("concat_channels_forward")
            // Copies: exact.
            .tolerance(0.0)
            .run(
                &CASES,
                inputs,
                |device, ((n, c_a, c_b, hw), a, b, _)| match device {
                    Device::Cpu => {
                        let mut out = vec![0.0; n * (c_a + c_b) * hw];
                        concat_channels_forward(&mut out, a, b, *n, *c_a, *c_b, *hw);
                        Ok(out)
                    }
                    Device::Kernels(k) => {
                        let mut out = k.alloc(n * (c_a + c_b) * hw)?;
                        concat_channels_forward_launch(
                            k,
                            &mut out,
                            &k.upload(a)?,
                            &k.upload(b)?,
                            *n,
                            *c_a,
                            *c_b,
                            *hw,
                        )?;
                        k.download(&out)
                    }
                },
            );
        Equivalence::new("concat_channels_backward")
            // One add per element: exact.
            .tolerance(0.0)
            .run(
                &CASES,
                inputs,
                |device, ((n, c_a, c_b, hw), a, b, d_out)| match device {
                    Device::Cpu => {
                        let (mut d_a, mut d_b) = (a.clone(), b.clone());
                        concat_channels_backward(
                            Some(&mut d_a),
                            Some(&mut d_b),
                            d_out,
                            *n,
                            *c_a,
                            *c_b,
                            *hw,
                        );
                        Ok([d_a, d_b].concat())
                    }
                    Device::Kernels(k) => {
                        let (mut d_a, mut d_b) = (k.upload(a)?, k.upload(b)?);
                        concat_channels_backward_launch(
                            k,
                            Some(&mut d_a),
                            Some(&mut d_b),
                            &k.upload(d_out)?,
                            *n,
                            *c_a,
                            *c_b,
                            *hw,
                        )?;
                        Ok([k.download(&d_a)?, k.download(&d_b)?].concat())
                    }
                },
            );
    }
}

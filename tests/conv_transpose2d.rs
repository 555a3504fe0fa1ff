//! ConvTranspose2d: gradients against finite differences, the fast path against the
//! plain-loop reference, the adjoint identity with Conv2d, and PyTorch's `output_size` rule.

mod op_check;

use mtosi::ops::conv2d::{conv2d_forward, conv2d_output_size};
use mtosi::ops::conv_transpose2d::*;
use op_check::{assert_bias_gradient_close, assert_close, check_gradient, seed, weighted_sum, Rng};

#[derive(Debug, Clone, Copy)]
struct Shape {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    output_padding_h: usize,
    output_padding_w: usize,
}

impl Shape {
    fn h_out(&self) -> usize {
        conv_transpose2d_output_size(self.h, self.k, self.stride, self.pad, self.output_padding_h)
    }
    fn w_out(&self) -> usize {
        conv_transpose2d_output_size(self.w, self.k, self.stride, self.pad, self.output_padding_w)
    }
    fn out_len(&self) -> usize {
        self.n * self.c_out * self.h_out() * self.w_out()
    }
    fn inp_len(&self) -> usize {
        self.n * self.c_in * self.h * self.w
    }
    fn weight_len(&self) -> usize {
        self.c_in * self.c_out * self.k * self.k
    }
}

fn forward(s: Shape, inp: &[f32], weight: &[f32], bias: Option<&[f32]>) -> Vec<f32> {
    let mut out = vec![0.0; s.out_len()];
    conv_transpose2d_forward(
        &mut out,
        inp,
        weight,
        bias,
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.k,
        s.stride,
        s.pad,
        s.output_padding_h,
        s.output_padding_w,
    );
    out
}

/// The network's kinds: the decoder's 2×2 stride-2 upsampling (with output padding on one
/// axis, as for an odd frame count) and its 3×3 pad-1 "convolutions", plus a padded stride 2.
const GRADIENT_CASES: [Shape; 3] = [
    Shape {
        n: 2,
        c_in: 2,
        h: 3,
        w: 2,
        c_out: 3,
        k: 2,
        stride: 2,
        pad: 0,
        output_padding_h: 1,
        output_padding_w: 0,
    },
    Shape {
        n: 2,
        c_in: 3,
        h: 4,
        w: 3,
        c_out: 2,
        k: 3,
        stride: 1,
        pad: 1,
        output_padding_h: 0,
        output_padding_w: 0,
    },
    Shape {
        n: 1,
        c_in: 2,
        h: 3,
        w: 3,
        c_out: 2,
        k: 3,
        stride: 2,
        pad: 1,
        output_padding_h: 1,
        output_padding_w: 0,
    },
];

#[test]
fn conv_transpose2d_gradients_match_finite_differences() {
    let mut rng = Rng::new(seed("conv_transpose2d_gradients_match_finite_differences"));
    for s in GRADIENT_CASES {
        let inp = rng.vec_f32(s.inp_len(), -1.0, 1.0);
        let weight = rng.vec_f32(s.weight_len(), -1.0, 1.0);
        let bias = rng.vec_f32(s.c_out, -1.0, 1.0);
        let d_out = rng.vec_f32(s.out_len(), -1.0, 1.0);
        let mut d_inp = vec![0.0; inp.len()];
        let mut d_weight = vec![0.0; weight.len()];
        let mut d_bias = vec![0.0; s.c_out];
        conv_transpose2d_backward(
            Some(&mut d_inp),
            &mut d_weight,
            Some(&mut d_bias),
            &d_out,
            &inp,
            &weight,
            s.n,
            s.c_in,
            s.h,
            s.w,
            s.c_out,
            s.k,
            s.stride,
            s.pad,
            s.output_padding_h,
            s.output_padding_w,
        );
        // Linear in each argument: central differences are exact up to f32 rounding of the
        // outputs (~1e-7 relative, divided by 2h = 2e-2), so 1e-3 is ample.
        let (h, tol) = (1e-2, 1e-3);
        check_gradient(&format!("{s:?} d_inp"), &inp, &d_inp, h, tol, |x| {
            weighted_sum(&forward(s, x, &weight, Some(&bias)), &d_out)
        });
        check_gradient(
            &format!("{s:?} d_weight"),
            &weight,
            &d_weight,
            h,
            tol,
            |x| weighted_sum(&forward(s, &inp, x, Some(&bias)), &d_out),
        );
        check_gradient(&format!("{s:?} d_bias"), &bias, &d_bias, h, tol, |x| {
            weighted_sum(&forward(s, &inp, &weight, Some(x)), &d_out)
        });
    }
}

#[test]
fn conv_transpose2d_fast_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(seed(
        "conv_transpose2d_fast_matches_reference_on_random_shapes",
    ));
    for _ in 0..12 {
        let k = rng.range_usize(1, 3);
        let stride = rng.range_usize(1, 2);
        let s = Shape {
            n: rng.range_usize(1, 3),
            c_in: rng.range_usize(1, 20),
            h: rng.range_usize(1, 12),
            w: rng.range_usize(1, 12),
            c_out: rng.range_usize(1, 20),
            k,
            stride,
            pad: rng.range_usize(0, k - 1) * usize::from(k > 1),
            output_padding_h: rng.range_usize(0, stride - 1),
            output_padding_w: rng.range_usize(0, stride - 1),
        };
        if s.h_out_checked().is_none() {
            continue;
        }
        compare_fast_with_reference(&mut rng, s);
    }
}

#[test]
fn conv_transpose2d_fast_matches_reference_across_row_chunks() {
    // 16 output channels × 3×3 taps × 176 columns × 100 rows exceeds the fast path's chunk of
    // 2^18 im2col values: several row chunks.
    let mut rng = Rng::new(seed(
        "conv_transpose2d_fast_matches_reference_across_row_chunks",
    ));
    let s = Shape {
        n: 2,
        c_in: 3,
        h: 100,
        w: 176,
        c_out: 16,
        k: 3,
        stride: 1,
        pad: 1,
        output_padding_h: 0,
        output_padding_w: 0,
    };
    compare_fast_with_reference(&mut rng, s);
}

fn compare_fast_with_reference(rng: &mut Rng, s: Shape) {
    let inp = rng.vec_f32(s.inp_len(), -1.0, 1.0);
    let weight = rng.vec_f32(s.weight_len(), -1.0, 1.0);
    let bias = rng.vec_f32(s.c_out, -1.0, 1.0);
    let d_out = rng.vec_f32(s.out_len(), -1.0, 1.0);
    let mut expected = vec![0.0; s.out_len()];
    conv_transpose2d_forward_reference(
        &mut expected,
        &inp,
        &weight,
        Some(&bias),
        s.n,
        s.c_in,
        s.h,
        s.w,
        s.c_out,
        s.k,
        s.stride,
        s.pad,
        s.output_padding_h,
        s.output_padding_w,
    );
    // Sums of at most 20·9 products in another order: f32 rounding stays below 1e-5 relative.
    let tol = 1e-5;
    let out = forward(s, &inp, &weight, Some(&bias));
    assert_close(&format!("{s:?} out"), &out, &expected, tol);

    let prior_inp = rng.vec_f32(inp.len(), -1.0, 1.0);
    let prior_weight = rng.vec_f32(weight.len(), -1.0, 1.0);
    let prior_bias = rng.vec_f32(s.c_out, -1.0, 1.0);
    let grads = |reference: bool| {
        let (mut d_inp, mut d_weight, mut d_bias) =
            (prior_inp.clone(), prior_weight.clone(), prior_bias.clone());
        let backward = if reference {
            conv_transpose2d_backward_reference
        } else {
            conv_transpose2d_backward
        };
        backward(
            Some(&mut d_inp),
            &mut d_weight,
            Some(&mut d_bias),
            &d_out,
            &inp,
            &weight,
            s.n,
            s.c_in,
            s.h,
            s.w,
            s.c_out,
            s.k,
            s.stride,
            s.pad,
            s.output_padding_h,
            s.output_padding_w,
        );
        (d_inp, d_weight, d_bias)
    };
    let (fast, reference) = (grads(false), grads(true));
    assert_close(&format!("{s:?} d_inp"), &fast.0, &reference.0, tol);
    // The fresh input gradient writes every value (poisoned first), as the reference adds into
    // zeros; its weight gradient adds as the other's does.
    let (mut fresh, mut fresh_weight) = (vec![f32::NAN; inp.len()], prior_weight.clone());
    let (mut zeros, mut zeros_weight) = (vec![0.0; inp.len()], prior_weight.clone());
    for (fresh_call, d_inp, d_weight) in [
        (true, &mut fresh, &mut fresh_weight),
        (false, &mut zeros, &mut zeros_weight),
    ] {
        let args = (&d_out[..], &inp[..], &weight[..]);
        if fresh_call {
            conv_transpose2d_backward_fresh(
                d_inp,
                d_weight,
                None,
                args.0,
                args.1,
                args.2,
                s.n,
                s.c_in,
                s.h,
                s.w,
                s.c_out,
                s.k,
                s.stride,
                s.pad,
                s.output_padding_h,
                s.output_padding_w,
            );
        } else {
            conv_transpose2d_backward_reference(
                Some(d_inp),
                d_weight,
                None,
                args.0,
                args.1,
                args.2,
                s.n,
                s.c_in,
                s.h,
                s.w,
                s.c_out,
                s.k,
                s.stride,
                s.pad,
                s.output_padding_h,
                s.output_padding_w,
            );
        }
    }
    assert_close(&format!("{s:?} fresh d_inp"), &fresh, &zeros, tol);
    assert_close(
        &format!("{s:?} fresh d_weight"),
        &fresh_weight,
        &zeros_weight,
        tol,
    );
    assert_close(&format!("{s:?} d_weight"), &fast.1, &reference.1, tol);
    assert_bias_gradient_close(
        &format!("{s:?} d_bias"),
        &fast.2,
        &reference.2,
        &prior_bias,
        &d_out,
        s.n,
        s.c_out,
        tol,
    );
}

impl Shape {
    /// None when padding would remove the whole output (not a valid layer).
    fn h_out_checked(&self) -> Option<()> {
        let full_h = (self.h - 1) * self.stride + self.k + self.output_padding_h;
        let full_w = (self.w - 1) * self.stride + self.k + self.output_padding_w;
        (full_h > 2 * self.pad && full_w > 2 * self.pad).then_some(())
    }
}

#[test]
fn conv_transpose2d_is_the_adjoint_of_conv2d() {
    // <convT(x), y> = <x, conv(y)> for the same kernel, stride and padding, bias-free: the
    // definition PyTorch documents, checked independently of both implementations' loops.
    let mut rng = Rng::new(seed("conv_transpose2d_is_the_adjoint_of_conv2d"));
    for (k, stride, pad) in [(2, 2, 0), (3, 1, 1), (3, 2, 1)] {
        let (n, c_small, c_big, h, w) = (2, 3, 4, 5, 4);
        let s = Shape {
            n,
            c_in: c_small,
            h,
            w,
            c_out: c_big,
            k,
            stride,
            pad,
            output_padding_h: 0,
            output_padding_w: 0,
        };
        let (h_big, w_big) = (s.h_out(), s.w_out());
        assert_eq!(conv2d_output_size(h_big, k, stride, pad), h);
        assert_eq!(conv2d_output_size(w_big, k, stride, pad), w);
        // ConvTranspose weight (c_in=c_small, c_out=c_big, k, k) is Conv2d's (c_out=c_small, c_in=c_big, k, k).
        let weight = rng.vec_f32(s.weight_len(), -1.0, 1.0);
        let x = rng.vec_f32(s.inp_len(), -1.0, 1.0);
        let y = rng.vec_f32(n * c_big * h_big * w_big, -1.0, 1.0);
        let up = forward(s, &x, &weight, None);
        let mut down = vec![0.0; x.len()];
        conv2d_forward(
            &mut down, &y, &weight, None, n, c_big, h_big, w_big, c_small, k, stride, pad,
        );
        let lhs = weighted_sum(&up, &y);
        let rhs = weighted_sum(&down, &x);
        println!("k {k} stride {stride} pad {pad}: <convT x, y> = {lhs}, <x, conv y> = {rhs}");
        // Two f32 computations of the same sum of ~500 products of O(1) terms.
        assert!(
            (lhs - rhs).abs() <= 1e-4 * lhs.abs().max(1.0),
            "{lhs} vs {rhs}"
        );
    }
}

#[test]
fn conv_transpose2d_output_padding_follows_pytorch_output_size_rule() {
    // The decoder's upsampling (2×2, stride 2) back to an odd or an even encoder size.
    assert_eq!(
        conv_transpose2d_output_padding(320, 641, 2, 2, 0).unwrap(),
        1
    );
    assert_eq!(
        conv_transpose2d_output_padding(320, 640, 2, 2, 0).unwrap(),
        0
    );
    assert_eq!(
        conv_transpose2d_output_padding(88, 176, 2, 2, 0).unwrap(),
        0
    );
    // 3×3 pad 1 stride 1 reproduces the input size and nothing else.
    assert_eq!(conv_transpose2d_output_padding(7, 7, 3, 1, 1).unwrap(), 0);
    let err = conv_transpose2d_output_padding(320, 642, 2, 2, 0).unwrap_err();
    assert!(err.to_string().contains("[640, 641]"), "{err}");
    assert!(conv_transpose2d_output_padding(7, 8, 3, 1, 1).is_err());
    assert!(conv_transpose2d_output_padding(320, 639, 2, 2, 0).is_err());
}

mod kernels {
    //! ConvTranspose2d on the kernel devices, as the adjoint of the device Conv2d, against the
    //! CPU op: the decoder's 2×2 stride-2 upsampling with each output padding, and odd cases.
    use mtosi::device::equivalence::{Equivalence, Rng};
    use mtosi::device::Device;
    use mtosi::ops::conv2d::{ConvWorkspace, DeviceConvGeometry};
    use mtosi::ops::conv_transpose2d::*;

    /// (n, c_in, h, w, c_out, k, stride, pad, output_padding_h, output_padding_w)
    type Case = (
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
        usize,
    );
    const CASES: [Case; 6] = [
        (1, 1, 1, 1, 1, 1, 1, 0, 0, 0),
        (2, 4, 5, 3, 3, 2, 2, 0, 0, 0),
        (2, 3, 4, 6, 5, 2, 2, 0, 1, 0),
        (1, 5, 3, 4, 2, 3, 2, 1, 1, 1),
        (2, 3, 6, 5, 4, 3, 1, 1, 0, 0),
        (3, 17, 4, 7, 9, 2, 2, 0, 1, 1),
    ];

    struct Inputs {
        case: Case,
        g: DeviceConvGeometry,
        inp: Vec<f32>,
        weight: Vec<f32>,
        bias: Vec<f32>,
        d_out: Vec<f32>,
        priors: [Vec<f32>; 3],
    }

    fn inputs(case: &Case, rng: &mut Rng) -> Inputs {
        let &(n, c_in, h, w, c_out, k, stride, pad, oph, opw) = case;
        let g = conv_transpose2d_adjoint_geometry(n, c_in, h, w, c_out, k, stride, pad, oph, opw);
        let (in_len, w_len, out_len) = (
            n * c_in * h * w,
            c_in * c_out * k * k,
            n * c_out * g.h * g.w,
        );
        Inputs {
            case: *case,
            g,
            inp: rng.vec_f32(in_len, -1.0, 1.0),
            weight: rng.vec_f32(w_len, -0.5, 0.5),
            bias: rng.vec_f32(c_out, -0.5, 0.5),
            d_out: rng.vec_f32(out_len, -1.0, 1.0),
            priors: [
                rng.vec_f32(in_len, -0.1, 0.1),
                rng.vec_f32(w_len, -0.1, 0.1),
                rng.vec_f32(c_out, -0.1, 0.1),
            ],
        }
    }

    #[test]
    fn conv_transpose2d_matches_cpu_reference_on_every_device() {
        Equivalence::new("conv_transpose2d_forward")
            // fp32 sums of up to 153 products in another order: 1e-4 of the largest.
            .floor_fraction(1.0)
            .tolerance(1e-4)
            .run(&CASES, inputs, |device, x| {
                let (n, c_in, h, w, c_out, k, stride, pad, oph, opw) = x.case;
                match device {
                    Device::Cpu => {
                        let mut out = vec![0.0; x.d_out.len()];
                        conv_transpose2d_forward(
                            &mut out,
                            &x.inp,
                            &x.weight,
                            Some(&x.bias),
                            n,
                            c_in,
                            h,
                            w,
                            c_out,
                            k,
                            stride,
                            pad,
                            oph,
                            opw,
                        );
                        Ok(out)
                    }
                    Device::Kernels(kd) => {
                        let mut ws = ConvWorkspace::new(kd, &x.g)?;
                        let mut out = kd.alloc(x.d_out.len())?;
                        conv_transpose2d_forward_launch(
                            kd,
                            &mut ws,
                            &mut out,
                            &kd.upload(&x.inp)?,
                            &kd.upload(&x.weight)?,
                            Some(&kd.upload(&x.bias)?),
                            &x.g,
                        )?;
                        kd.download(&out)
                    }
                }
            });
        Equivalence::new("conv_transpose2d_backward")
            .floor_fraction(1.0)
            .tolerance(1e-4)
            .run(&CASES, inputs, |device, x| {
                let (n, c_in, h, w, c_out, k, stride, pad, oph, opw) = x.case;
                let [d_inp, d_weight, d_bias] = &x.priors;
                match device {
                    Device::Cpu => {
                        let (mut d_inp, mut d_weight, mut d_bias) =
                            (d_inp.clone(), d_weight.clone(), d_bias.clone());
                        conv_transpose2d_backward(
                            Some(&mut d_inp),
                            &mut d_weight,
                            Some(&mut d_bias),
                            &x.d_out,
                            &x.inp,
                            &x.weight,
                            n,
                            c_in,
                            h,
                            w,
                            c_out,
                            k,
                            stride,
                            pad,
                            oph,
                            opw,
                        );
                        Ok([d_inp, d_weight, d_bias].concat())
                    }
                    Device::Kernels(kd) => {
                        let mut ws = ConvWorkspace::new(kd, &x.g)?;
                        let (mut d_inp, mut d_weight, mut d_bias) =
                            (kd.upload(d_inp)?, kd.upload(d_weight)?, kd.upload(d_bias)?);
                        conv_transpose2d_backward_launch(
                            kd,
                            &mut ws,
                            Some(&mut d_inp),
                            &mut d_weight,
                            Some(&mut d_bias),
                            &kd.upload(&x.d_out)?,
                            &kd.upload(&x.inp)?,
                            &kd.upload(&x.weight)?,
                            &x.g,
                        )?;
                        Ok([
                            kd.download(&d_inp)?,
                            kd.download(&d_weight)?,
                            kd.download(&d_bias)?,
                        ]
                        .concat())
                    }
                }
            });
    }
}

//! The implicit-GEMM convolution (stride 1, more than 16 output channels: the U-net's middle
//! and deep layers, their data gradients and the decoder's transposed convolutions) against the
//! plain reference, in its AVX-512 and AVX2 versions and against the im2col + GEMM path it
//! replaces, on fresh random odd shapes (partial pixel blocks, row blocks, channel blocks); and
//! likewise the direct 2×2 stride-2 data-gradient kernel (the decoder's upsampling), and the
//! opt-in Winograd F(2×2, 3×3) path for the 3×3 layers (`MTOSI_CONV_WINOGRAD=1`).

mod op_check;

use mtosi::ops::conv2d::*;
use mtosi::ops::conv_transpose2d::*;
use op_check::{assert_close, seed, Rng};

/// (n, c_in, h, w, c_out, k, pad)
type Case = (usize, usize, usize, usize, usize, usize, usize);

fn random_case(rng: &mut Rng) -> Case {
    let k = rng.range_usize(2, 3);
    (
        rng.range_usize(1, 3),
        rng.range_usize(1, 40),
        rng.range_usize(k, 37),
        rng.range_usize(k, 53),
        rng.range_usize(17, 45),
        k,
        rng.range_usize(0, k - 1),
    )
}

struct Results {
    out: Vec<f32>,
    d_inp: Vec<f32>,
    d_weight: Vec<f32>,
    t_out: Vec<f32>,
    t_d_inp: Vec<f32>,
    t_d_weight: Vec<f32>,
}

/// Conv2d forward + backward and ConvTranspose2d (c_out → c_in, the same weight) forward +
/// backward, through the fast entry points or the references.
fn run(case: Case, x: &Inputs, reference: bool) -> Results {
    let (n, c_in, h, w, c_out, k, pad) = case;
    let (h_out, w_out) = (
        conv2d_output_size(h, k, 1, pad),
        conv2d_output_size(w, k, 1, pad),
    );
    let mut out = vec![f32::NAN; n * c_out * h_out * w_out];
    let forward = if reference {
        conv2d_forward_reference
    } else {
        conv2d_forward
    };
    forward(
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
        1,
        pad,
    );
    let (mut d_inp, mut d_weight, mut d_bias) = (
        x.prior_inp.clone(),
        x.prior_weight.clone(),
        vec![0.0; c_out],
    );
    let backward = if reference {
        conv2d_backward_reference
    } else {
        conv2d_backward
    };
    backward(
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
        1,
        pad,
    );
    // The transposed convolution maps (c_out, h_out, w_out) back to (c_in, h, w).
    let mut t_out = vec![f32::NAN; x.inp.len()];
    let t_forward = if reference {
        conv_transpose2d_forward_reference
    } else {
        conv_transpose2d_forward
    };
    t_forward(
        &mut t_out,
        &x.d_out,
        &x.weight,
        Some(&x.bias_in),
        n,
        c_out,
        h_out,
        w_out,
        c_in,
        k,
        1,
        pad,
        0,
        0,
    );
    let (mut t_d_inp, mut t_d_weight) = (x.prior_d_out.clone(), vec![0.0; x.weight.len()]);
    let t_backward = if reference {
        conv_transpose2d_backward_reference
    } else {
        conv_transpose2d_backward
    };
    t_backward(
        Some(&mut t_d_inp),
        &mut t_d_weight,
        None,
        &x.inp,
        &x.d_out,
        &x.weight,
        n,
        c_out,
        h_out,
        w_out,
        c_in,
        k,
        1,
        pad,
        0,
        0,
    );
    Results {
        out,
        d_inp,
        d_weight,
        t_out,
        t_d_inp,
        t_d_weight,
    }
}

struct Inputs {
    inp: Vec<f32>,
    weight: Vec<f32>,
    bias: Vec<f32>,
    bias_in: Vec<f32>,
    d_out: Vec<f32>,
    prior_inp: Vec<f32>,
    prior_weight: Vec<f32>,
    prior_d_out: Vec<f32>,
}

fn inputs(case: Case, rng: &mut Rng) -> Inputs {
    let (n, c_in, h, w, c_out, k, pad) = case;
    let out_len = n * c_out * conv2d_output_size(h, k, 1, pad) * conv2d_output_size(w, k, 1, pad);
    let weight_len = c_out * c_in * k * k;
    Inputs {
        inp: rng.vec_f32(n * c_in * h * w, -1.0, 1.0),
        weight: rng.vec_f32(weight_len, -1.0, 1.0),
        bias: rng.vec_f32(c_out, -1.0, 1.0),
        bias_in: rng.vec_f32(c_in, -1.0, 1.0),
        d_out: rng.vec_f32(out_len, -1.0, 1.0),
        // Gradients start non-zero: the backward passes must add into them.
        prior_inp: rng.vec_f32(n * c_in * h * w, -1.0, 1.0),
        prior_weight: rng.vec_f32(weight_len, -1.0, 1.0),
        prior_d_out: rng.vec_f32(out_len, -1.0, 1.0),
    }
}

fn compare(name: &str, fast: &Results, reference: &Results) {
    // Sums of at most 45·9 products (or a batch of them) in another order: f32 rounding stays
    // below 1e-5 of the largest value.
    let tol = 1e-5;
    assert_close(&format!("{name} out"), &fast.out, &reference.out, tol);
    assert_close(&format!("{name} d_inp"), &fast.d_inp, &reference.d_inp, tol);
    assert_close(
        &format!("{name} d_weight"),
        &fast.d_weight,
        &reference.d_weight,
        tol,
    );
    assert_close(&format!("{name} t_out"), &fast.t_out, &reference.t_out, tol);
    assert_close(
        &format!("{name} t_d_inp"),
        &fast.t_d_inp,
        &reference.t_d_inp,
        tol,
    );
    assert_close(
        &format!("{name} t_d_weight"),
        &fast.t_d_weight,
        &reference.t_d_weight,
        tol,
    );
}

// One test, so that nothing else in this binary reads the environment variables it sets.
#[test]
fn implicit_gemm_and_stride2_conv_match_reference_and_im2col() {
    let mut rng = Rng::new(seed(
        "implicit_gemm_and_stride2_conv_match_reference_and_im2col",
    ));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    // float32 throughout: the bf16 products have their own test (`tests/conv2d_bf16.rs`).
    std::env::remove_var(BF16_VAR);
    stride1_cases(&mut rng, &pool);
    stride2_cases(&mut rng, &pool);
    std::env::remove_var(FORCE_ISA_VAR);
    std::env::remove_var(IMPLICIT_VAR);
    std::env::remove_var(WINOGRAD_VAR);
}

fn stride1_cases(rng: &mut Rng, pool: &rayon::ThreadPool) {
    let mut cases: Vec<Case> = (0..10).map(|_| random_case(rng)).collect();
    // The network's kind of layer: 3×3 pad 1, several row blocks, one and two samples.
    cases.push((1, 24, 41, 88, 48, 3, 1));
    cases.push((2, 40, 19, 22, 32, 3, 1));
    // Odd height and width (cut tiles), 16 channels on one side: Winograd's edges.
    cases.push((1, 16, 7, 11, 17, 3, 1));
    cases.push((3, 33, 2, 3, 16, 3, 1));
    for case in cases {
        let x = inputs(case, rng);
        let reference = run(case, &x, true);
        // The only test in this binary: nothing else reads the variables meanwhile.
        for (isa, implicit, winograd) in [
            ("", "1", "0"),
            ("avx2", "1", "0"),
            ("", "0", "0"),
            ("", "1", "1"),
            ("avx2", "1", "1"),
        ] {
            std::env::set_var(FORCE_ISA_VAR, isa);
            std::env::set_var(IMPLICIT_VAR, implicit);
            std::env::set_var(WINOGRAD_VAR, winograd);
            let fast = pool.install(|| run(case, &x, false));
            compare(
                &format!("{case:?} isa '{isa}' implicit {implicit} winograd {winograd}"),
                &fast,
                &reference,
            );
        }
    }
}

/// The 2×2 stride-2 layers: the data gradient (direct kernel) through Conv2d's backward and
/// ConvTranspose2d's forward (the upsampling, with output padding for odd sizes), and the
/// downsampling forward (the implicit kernel over the pixel unshuffle, from 8 channels).
fn stride2_cases(rng: &mut Rng, pool: &rayon::ThreadPool) {
    for case in 0..8 {
        let (n, c_in, c_out) = (
            rng.range_usize(1, 3),
            rng.range_usize(1, 21),
            rng.range_usize(1, 21),
        );
        // Odd sizes: the convolution drops the last row or column, the transposed one pads it.
        // Widths from 64 up: the direct data-gradient kernel takes 32 gradient columns or more.
        let (h, w) = (rng.range_usize(2, 41), rng.range_usize(64, 141));
        let (h_out, w_out) = (h / 2, w / 2);
        let inp = rng.vec_f32(n * c_in * h * w, -1.0, 1.0);
        let weight = rng.vec_f32(c_out * c_in * 4, -1.0, 1.0);
        let bias_in = rng.vec_f32(c_in, -1.0, 1.0);
        let bias_out = rng.vec_f32(c_out, -1.0, 1.0);
        let d_out = rng.vec_f32(n * c_out * h_out * w_out, -1.0, 1.0);
        let prior = rng.vec_f32(inp.len(), -1.0, 1.0);
        let data_grad = |reference: bool| {
            let mut d_inp = prior.clone();
            let mut d_weight = vec![0.0; weight.len()];
            let backward = if reference {
                conv2d_backward_reference
            } else {
                conv2d_backward
            };
            backward(
                Some(&mut d_inp),
                &mut d_weight,
                None,
                &d_out,
                &inp,
                &weight,
                n,
                c_in,
                h,
                w,
                c_out,
                2,
                2,
                0,
            );
            d_inp
        };
        let upsample = |reference: bool| {
            let mut out = vec![f32::NAN; inp.len()];
            let forward = if reference {
                conv_transpose2d_forward_reference
            } else {
                conv_transpose2d_forward
            };
            forward(
                &mut out,
                &d_out,
                &weight,
                Some(&bias_in),
                n,
                c_out,
                h_out,
                w_out,
                c_in,
                2,
                2,
                0,
                h % 2,
                w % 2,
            );
            out
        };
        let downsample = |reference: bool| {
            let mut out = vec![f32::NAN; d_out.len()];
            let forward = if reference {
                conv2d_forward_reference
            } else {
                conv2d_forward
            };
            forward(
                &mut out,
                &inp,
                &weight,
                Some(&bias_out),
                n,
                c_in,
                h,
                w,
                c_out,
                2,
                2,
                0,
            );
            out
        };
        let (ref_grad, ref_up, ref_down) = (data_grad(true), upsample(true), downsample(true));
        for (isa, implicit) in [("", "1"), ("avx2", "1"), ("", "0")] {
            std::env::set_var(FORCE_ISA_VAR, isa);
            std::env::set_var(IMPLICIT_VAR, implicit);
            let name = format!(
                "stride-2 case {case} n {n} {c_in}<-{c_out} {h}x{w} isa '{isa}' {implicit}"
            );
            // Sums of at most 21 products: far below 1e-5 of the peak.
            assert_close(
                &format!("{name} d_inp"),
                &pool.install(|| data_grad(false)),
                &ref_grad,
                1e-5,
            );
            assert_close(
                &format!("{name} upsample"),
                &pool.install(|| upsample(false)),
                &ref_up,
                1e-5,
            );
            assert_close(
                &format!("{name} downsample"),
                &pool.install(|| downsample(false)),
                &ref_down,
                1e-5,
            );
        }
    }
}

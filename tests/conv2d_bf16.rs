//! The opt-in bf16 convolution products (`--precision bf16`, `MTOSI_CONV_BF16=1`) against the
//! plain float32 reference, on fresh random shapes and the network's kinds of layer: Conv2d's
//! forward (3×3 pad 1, 2×2, the 2×2 stride-2 downsampling, 1×1), its weight gradient, its data
//! gradient and the ConvTranspose2d forward (stride 1 through the adjoint, and the 2×2 stride-2
//! upsampling), odd channel counts (a channel paired
//! with zeros), channel counts that are not a multiple of 8, widths 11…176. Skipped, with a
//! printed line, on CPUs without AVX512-BF16; there `--precision bf16` must be refused.

mod op_check;

use mtosi::ops::conv2d::*;
use mtosi::ops::conv_transpose2d::*;
use op_check::{check_within_terms, round_bf16, seed, Rng};

fn rounded(values: &[f32]) -> Vec<f32> {
    values.iter().map(|&x| round_bf16(x)).collect()
}

fn abs(values: &[f32]) -> Vec<f32> {
    values.iter().map(|x| x.abs()).collect()
}

/// Passes when `got` is finite and every `|got_i − want_i| ≤ tolerance · scale_i`, where
/// `scale_i` is Σ|x·w| (+ |bias| or |prior|) of element i: the size of what was summed.
fn assert_within_sums(name: &str, got: &[f32], want: &[f32], scale: &[f32], tolerance: f64) {
    match check_within_terms(name, got, want, scale, tolerance) {
        Ok(worst) => println!(
            "{name}: worst |bf16 − reference| = {:.2e} of Σ|x·w| at {}",
            worst.error, worst.index
        ),
        Err(message) => panic!("{message}"),
    }
}

#[derive(Clone, Copy, Debug)]
struct Case {
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
}

impl Case {
    fn out_hw(&self) -> (usize, usize) {
        (
            conv2d_output_size(self.h, self.k, self.stride, self.pad),
            conv2d_output_size(self.w, self.k, self.stride, self.pad),
        )
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
}

impl Inputs {
    fn new(c: &Case, rng: &mut Rng) -> Inputs {
        let (h_out, w_out) = c.out_hw();
        Inputs {
            inp: rng.vec_f32(c.n * c.c_in * c.h * c.w, -1.0, 1.0),
            weight: rng.vec_f32(c.c_out * c.c_in * c.k * c.k, -1.0, 1.0),
            bias: rng.vec_f32(c.c_out, -1.0, 1.0),
            bias_in: rng.vec_f32(c.c_in, -1.0, 1.0),
            d_out: rng.vec_f32(c.n * c.c_out * h_out * w_out, -1.0, 1.0),
            prior_inp: rng.vec_f32(c.n * c.c_in * c.h * c.w, -1.0, 1.0),
            prior_weight: rng.vec_f32(c.c_out * c.c_in * c.k * c.k, -1.0, 1.0),
        }
    }

    /// The products' operands rounded to bf16 (bias and prior gradients are added in float32).
    fn rounded(&self) -> Inputs {
        Inputs {
            inp: rounded(&self.inp),
            weight: rounded(&self.weight),
            bias: self.bias.clone(),
            bias_in: self.bias_in.clone(),
            d_out: rounded(&self.d_out),
            prior_inp: self.prior_inp.clone(),
            prior_weight: self.prior_weight.clone(),
        }
    }

    /// Every value's magnitude: through the reference this gives Σ|x·w| + |bias| per element.
    fn abs(&self) -> Inputs {
        Inputs {
            inp: abs(&self.inp),
            weight: abs(&self.weight),
            bias: abs(&self.bias),
            bias_in: abs(&self.bias_in),
            d_out: abs(&self.d_out),
            prior_inp: abs(&self.prior_inp),
            prior_weight: abs(&self.prior_weight),
        }
    }
}

/// Conv2d's forward, its data and weight gradients (added to non-zero priors) and, for stride 1, the
/// transposed convolution c_out → c_in with the same weight; the output poisoned with NaN first.
struct Results {
    out: Vec<f32>,
    d_inp: Vec<f32>,
    d_weight: Vec<f32>,
    t_out: Vec<f32>,
}

fn run(c: &Case, x: &Inputs, reference: bool) -> Results {
    let (h_out, w_out) = c.out_hw();
    let mut out = vec![f32::NAN; x.d_out.len()];
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
        c.n,
        c.c_in,
        c.h,
        c.w,
        c.c_out,
        c.k,
        c.stride,
        c.pad,
    );
    let mut d_inp = x.prior_inp.clone();
    // Added to a non-zero prior, as gradients accumulate.
    let mut d_weight = x.prior_weight.clone();
    let backward = if reference {
        conv2d_backward_reference
    } else {
        conv2d_backward
    };
    backward(
        Some(&mut d_inp),
        &mut d_weight,
        None,
        &x.d_out,
        &x.inp,
        &x.weight,
        c.n,
        c.c_in,
        c.h,
        c.w,
        c.c_out,
        c.k,
        c.stride,
        c.pad,
    );
    let mut t_out = vec![f32::NAN; x.inp.len()];
    if c.stride == 1 || c.k == 2 {
        let t_forward = if reference {
            conv_transpose2d_forward_reference
        } else {
            conv_transpose2d_forward
        };
        // Stride 2: the decoder's upsampling, back to the odd sizes too (output padding).
        let (op_h, op_w) = if c.stride == 1 {
            (0, 0)
        } else {
            (c.h % 2, c.w % 2)
        };
        t_forward(
            &mut t_out,
            &x.d_out,
            &x.weight,
            Some(&x.bias_in),
            c.n,
            c.c_out,
            h_out,
            w_out,
            c.c_in,
            c.k,
            c.stride,
            c.pad,
            op_h,
            op_w,
        );
    }
    Results {
        out,
        d_inp,
        d_weight,
        t_out,
    }
}

fn check(c: &Case, rng: &mut Rng, pool: &rayon::ThreadPool) {
    let x = Inputs::new(c, rng);
    let fast = pool.install(|| run(c, &x, false));
    let exact = run(c, &x.rounded(), true);
    let unrounded = run(c, &x, true);
    let scale = run(c, &x.abs(), true);
    // float32 sums of exact bf16 products in another order: a few ulps of Σ|x·w|.
    let tight = 1e-5;
    // Each operand rounded by at most 2⁻⁹ relative: at most ~2⁻⁸ ≈ 4e-3 of Σ|x·w|.
    let loose = 1e-2;
    // bf16 with at least 8 channels on each side; then also the data gradient and the
    // transposed convolution, through the adjoint (stride 1: the 2×2 stride-2 data gradient,
    // which is the upsampling's forward, stays float32: it is bound by its stores, four outputs
    // per input pixel, and bf16 products did not make it faster). The weight gradient pairs
    // pixels, not channels: bf16 with at least 8 output channels, for 2×2 and 3×3 kernels (the
    // 1×1 layers' stays a float32 GEMM).
    let forward_bf16 = c.c_in.min(c.c_out) >= 8;
    let weight_bf16 = c.c_out >= 8 && c.k >= 2;
    let mut outputs = vec![
        (
            "out",
            forward_bf16,
            &fast.out,
            &exact.out,
            &unrounded.out,
            &scale.out,
        ),
        (
            "d_inp",
            forward_bf16 && c.stride == 1,
            &fast.d_inp,
            &exact.d_inp,
            &unrounded.d_inp,
            &scale.d_inp,
        ),
        (
            "d_weight",
            weight_bf16,
            &fast.d_weight,
            &exact.d_weight,
            &unrounded.d_weight,
            &scale.d_weight,
        ),
    ];
    if c.stride == 1 || c.k == 2 {
        outputs.push((
            "t_out",
            forward_bf16 && c.stride == 1,
            &fast.t_out,
            &exact.t_out,
            &unrounded.t_out,
            &scale.t_out,
        ));
    }
    for (name, bf16, got, exact, unrounded, scale) in outputs {
        let name = format!("{c:?} {name}");
        if !bf16 {
            // The float32 fallback: sums in another order only.
            assert_within_sums(
                &format!("{name} (float32) vs float32"),
                got,
                unrounded,
                scale,
                tight,
            );
            continue;
        }
        assert_within_sums(
            &format!("{name} vs rounded operands"),
            got,
            exact,
            scale,
            tight,
        );
        assert_within_sums(&format!("{name} vs float32"), got, unrounded, scale, loose);
    }
}

fn random_case(rng: &mut Rng) -> Case {
    let k = rng.range_usize(2, 3);
    Case {
        n: rng.range_usize(1, 3),
        c_in: rng.range_usize(1, 40),
        h: rng.range_usize(k, 30),
        w: rng.range_usize(11, 90),
        c_out: rng.range_usize(8, 45),
        k,
        stride: 1,
        pad: rng.range_usize(0, k - 1),
    }
}

#[test]
fn bf16_products_match_float32_sums_of_rounded_operands() {
    if !bf16_supported() {
        println!(
            "skipped: no AVX512-BF16 on this CPU (or MTOSI_FORCE_ISA narrows it): float32 runs"
        );
        assert!(set_conv_precision(ConvPrecision::Bf16).is_err());
        return;
    }
    let mut rng = Rng::new(seed("bf16_products_match_float32_sums_of_rounded_operands"));
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("thread pool");
    set_conv_precision(ConvPrecision::Bf16).expect("AVX512-BF16 was detected");
    assert!(bf16_enabled());
    let s1 = |n, c_in, h, w, c_out| Case {
        n,
        c_in,
        h,
        w,
        c_out,
        k: 3,
        stride: 1,
        pad: 1,
    };
    let mut cases = vec![
        // The network's 16 → 16 layer at full width; its first 1 → 16 layer stays float32.
        s1(1, 16, 20, 176, 16),
        s1(1, 1, 9, 176, 16),
        // Odd c_in (a zero channel), c_out not a multiple of 8, narrow and deep layers.
        s1(2, 17, 13, 11, 12),
        s1(1, 33, 19, 22, 20),
        s1(1, 9, 7, 44, 8),
        s1(1, 48, 18, 88, 45),
    ];
    // The 2×2 stride-2 downsampling over the pixel unshuffle (odd sizes drop a row, a column).
    // As a transposed convolution it is the decoder's upsampling, c_out → c_in (float32 under
    // the bf16 switch): the network's (16 at 88 → 176 columns, 128 at 11 → 22), gradient rows
    // under 32 pixels (GEMM) and from 32 (the stride-2 kernel), odd and small channel counts.
    for (c_in, c_out, h, w) in [
        (16, 32, 21, 176),
        (9, 8, 10, 45),
        (3, 8, 10, 45),
        (32, 48, 9, 22),
        (16, 16, 9, 176),
        (128, 128, 6, 22),
        (20, 9, 7, 61),
        (8, 5, 6, 40),
    ] {
        cases.push(Case {
            n: 1,
            c_in,
            h,
            w,
            c_out,
            k: 2,
            stride: 2,
            pad: 0,
        });
    }
    // And two samples at once (rows of 22 and 88 gradient pixels).
    for w in [45, 176] {
        cases.push(Case {
            n: 2,
            c_in: 24,
            h: 7,
            w,
            c_out: 10,
            k: 2,
            stride: 2,
            pad: 0,
        });
    }
    // The 1×1 skip convolutions (one bf16 GEMM per sample; 4 channels stay float32).
    for (n, c_in, h, w, c_out) in [
        (1, 16, 20, 176, 32),
        (2, 9, 7, 45, 8),
        (1, 33, 5, 50, 64),
        (2, 4, 6, 30, 16),
    ] {
        cases.push(Case {
            n,
            c_in,
            h,
            w,
            c_out,
            k: 1,
            stride: 1,
            pad: 0,
        });
    }
    cases.extend((0..6).map(|_| random_case(&mut rng)));
    // On an AMX CPU the forwards run on the tiles; the AVX512-BF16 kernels are checked too.
    let kernels: &[bool] = if mtosi::ops::amx::available() {
        &[true, false]
    } else {
        println!("no AMX on this CPU: only the AVX512-BF16 kernels are checked");
        &[false]
    };
    for &amx in kernels {
        mtosi::ops::amx::set_allowed(amx);
        assert_eq!(mtosi::ops::amx::available(), amx);
        for case in &cases {
            check(case, &mut rng, &pool);
        }
    }
    mtosi::ops::amx::set_allowed(true);
    set_conv_precision(ConvPrecision::Fp32).expect("float32 is always available");
}

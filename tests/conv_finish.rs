//! Evaluation mode's fused convolution + BatchNorm2d + leaky ReLU (+ residual)
//! (`conv2d_forward_finished`, `conv_transpose2d_forward_finished`, the CPU backend's
//! `conv_batchnorm_leaky_relu_eval`) against the three ops one after the other: the same bits,
//! on fresh random shapes covering every forward kernel (direct 1…16 output channels,
//! implicit GEMM, the 2×2 stride-2 downsampling, 1×1, im2col for k = 5 and stride 3, the
//! decoder's 2×2 upsampling and its stride-1 transposed convolutions through the adjoint),
//! batch 1 (inference's gather form) and 2, in float32 and, where the CPU has AVX512-BF16, with
//! the bf16 products. Non-residual outputs start poisoned with NaN, so a value the fused op
//! skips fails; the batch-norm scales straddle zero so both sides of the leaky ReLU are taken.

mod op_check;

use mtosi::ops::batchnorm::{batchnorm_leaky_relu_forward_eval, BATCHNORM_EPS};
use mtosi::ops::conv2d::*;
use mtosi::ops::conv_transpose2d::*;
use op_check::{seed, Rng};

const SLOPE: f32 = 0.01;

#[derive(Clone, Copy, Debug)]
struct Case {
    transposed: bool,
    n: usize,
    c_in: usize,
    h: usize,
    w: usize,
    c_out: usize,
    k: usize,
    stride: usize,
    pad: usize,
    residual: bool,
}

impl Case {
    fn out_hw(&self) -> (usize, usize) {
        let size = |s: usize| match self.transposed {
            false => conv2d_output_size(s, self.k, self.stride, self.pad),
            true => (s - 1) * self.stride + self.k - 2 * self.pad,
        };
        (size(self.h), size(self.w))
    }

    fn out_len(&self) -> usize {
        let (h, w) = self.out_hw();
        self.n * self.c_out * h * w
    }

    fn conv(&self, out: &mut [f32], inp: &[f32], weight: &[f32], bias: &[f32]) {
        let c = *self;
        match c.transposed {
            false => conv2d_forward(
                out,
                inp,
                weight,
                Some(bias),
                c.n,
                c.c_in,
                c.h,
                c.w,
                c.c_out,
                c.k,
                c.stride,
                c.pad,
            ),
            true => conv_transpose2d_forward(
                out,
                inp,
                weight,
                Some(bias),
                c.n,
                c.c_in,
                c.h,
                c.w,
                c.c_out,
                c.k,
                c.stride,
                c.pad,
                0,
                0,
            ),
        }
    }

    fn fused(
        &self,
        out: &mut [f32],
        inp: &[f32],
        weight: &[f32],
        bias: &[f32],
        finish: &ConvFinish,
    ) {
        let c = *self;
        match c.transposed {
            false => conv2d_forward_finished(
                out,
                inp,
                weight,
                Some(bias),
                finish,
                c.n,
                c.c_in,
                c.h,
                c.w,
                c.c_out,
                c.k,
                c.stride,
                c.pad,
            ),
            true => conv_transpose2d_forward_finished(
                out,
                inp,
                weight,
                Some(bias),
                finish,
                c.n,
                c.c_in,
                c.h,
                c.w,
                c.c_out,
                c.k,
                c.stride,
                c.pad,
                0,
                0,
            ),
        }
    }
}

/// Checks one case; returns how many finished values were negative and non-negative before
/// any residual.
fn check(c: &Case, rng: &mut Rng) -> (usize, usize) {
    let inp = rng.vec_f32(c.n * c.c_in * c.h * c.w, -1.0, 1.0);
    let weight = rng.vec_f32(c.c_in * c.c_out * c.k * c.k, -0.5, 0.5);
    let bias = rng.vec_f32(c.c_out, -0.3, 0.3);
    let bn_weight = rng.vec_f32(c.c_out, -1.5, 1.5);
    let bn_bias = rng.vec_f32(c.c_out, -0.5, 0.5);
    let mean = rng.vec_f32(c.c_out, -0.5, 0.5);
    let var = rng.vec_f32(c.c_out, 0.05, 2.0);
    let residual = rng.vec_f32(c.out_len(), -1.0, 1.0);
    let (h_out, w_out) = c.out_hw();

    // The three ops one after the other.
    let mut conv = vec![f32::NAN; c.out_len()];
    c.conv(&mut conv, &inp, &weight, &bias);
    let mut want = vec![f32::NAN; c.out_len()];
    batchnorm_leaky_relu_forward_eval(
        &mut want,
        &conv,
        &bn_weight,
        &bn_bias,
        &mean,
        &var,
        c.n,
        c.c_out,
        h_out * w_out,
        BATCHNORM_EPS,
        SLOPE,
    );
    if c.residual {
        for (y, r) in want.iter_mut().zip(&residual) {
            *y += r;
        }
    }

    let finish = ConvFinish::batchnorm_leaky_relu(
        &bn_weight,
        &bn_bias,
        &mean,
        &var,
        BATCHNORM_EPS,
        SLOPE,
        c.residual,
    );
    let mut got = match c.residual {
        true => residual.clone(),
        false => vec![f32::NAN; c.out_len()],
    };
    c.fused(&mut got, &inp, &weight, &bias, &finish);

    let (mut negative, mut positive) = (0, 0);
    for (i, (&g, &w)) in got.iter().zip(&want).enumerate() {
        assert!(
            g.is_finite() && g.to_bits() == w.to_bits(),
            "{c:?}: element {i} is {g} fused, {w} unfused (bf16 {})",
            bf16_enabled()
        );
        let before = if c.residual { w - residual[i] } else { w };
        if before < 0.0 {
            negative += 1;
        } else {
            positive += 1;
        }
    }
    (negative, positive)
}

fn random_case(rng: &mut Rng, transposed: bool) -> Case {
    // (k, stride, pad): stride-1 3×3 and 2×2, the 2×2 stride-2 (down- or upsampling), 1×1, and
    // shapes only im2col (or the scatter) takes.
    let (k, stride, pad) = [
        (3, 1, 1),
        (2, 1, 0),
        (2, 2, 0),
        (1, 1, 0),
        (5, 1, 2),
        (3, 3, 0),
    ][rng.range_usize(0, 5)];
    Case {
        transposed,
        n: rng.range_usize(1, 2),
        c_in: rng.range_usize(1, 40),
        h: rng.range_usize(k + 1, 24),
        w: rng.range_usize(k + 4, 90),
        c_out: rng.range_usize(1, 40),
        k,
        stride,
        pad,
        residual: rng.range_usize(0, 1) == 1,
    }
}

fn run_cases(rng: &mut Rng) {
    let s1 = |transposed, n, c_in, h, w, c_out, residual| Case {
        transposed,
        n,
        c_in,
        h,
        w,
        c_out,
        k: 3,
        stride: 1,
        pad: 1,
        residual,
    };
    // The network's layers that a BatchNorm follows, at full width: the first 1 → 16 (direct),
    // 16 → 16 with the skip branch as residual, the deeper ones (implicit, or bf16), and the
    // decoder's transposed ones (16 → 8 and 48 → 24, through the adjoint).
    let mut cases = vec![
        s1(false, 1, 1, 12, 176, 16, false),
        s1(false, 1, 16, 12, 176, 16, true),
        s1(false, 2, 32, 9, 44, 64, false),
        s1(true, 1, 16, 10, 176, 8, false),
        s1(true, 1, 48, 7, 44, 24, false),
        s1(true, 2, 3, 7, 30, 2, true),
    ];
    for _ in 0..14 {
        let transposed = rng.range_usize(0, 1) == 1;
        cases.push(random_case(rng, transposed));
    }
    let (mut negative, mut positive) = (0, 0);
    for c in &cases {
        let (n, p) = check(c, rng);
        negative += n;
        positive += p;
    }
    // One channel may fall on one side; all of them together must take both.
    assert!(
        negative > 1000 && positive > 1000,
        "one side of the leaky ReLU only"
    );
}

#[test]
fn fused_eval_batchnorm_leaky_relu_gives_the_separate_ops_bits() {
    let mut rng = Rng::new(seed(
        "fused_eval_batchnorm_leaky_relu_gives_the_separate_ops_bits",
    ));
    // The only test in this binary, since the precision is the process's: float32, then bf16.
    set_conv_precision(ConvPrecision::Fp32).expect("float32 is always available");
    run_cases(&mut rng);
    if bf16_supported() {
        set_conv_precision(ConvPrecision::Bf16).expect("AVX512-BF16 was detected");
        run_cases(&mut rng);
        set_conv_precision(ConvPrecision::Fp32).expect("float32 is always available");
    } else {
        println!("no AVX512-BF16 on this CPU: the bf16 kernel's finish is not covered here");
    }
}

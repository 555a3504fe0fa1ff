//! The LSTM forward's bf16 recurrence (`--precision bf16`, `MTOSI_CONV_BF16=1`): the product
//! `matmul_small_rows_bf16` against float64 sums of the bf16-rounded operands; the whole forward
//! (`lstm_forward_bf16`) step by step against a reference fed its own hidden states (W_hh, h,
//! W_ih and x rounded, everything else float32) and against the unrounded float32 reference; and the switch
//! turning `lstm_forward` into it and back. Fresh random shapes: odd hidden sizes (a pair padded
//! with zero), batch 1–5, column counts off the 64-wide block, the network's 176 units. Where the
//! CPU lacks AVX512-BF16 the products run in plain loops over the same rounded values, which the
//! same checks then cover; the switch part is skipped with a printed line.

mod op_check;

use mtosi::ops::conv2d::{bf16_enabled, bf16_supported, set_conv_precision, ConvPrecision};
use mtosi::ops::lstm::*;
use mtosi::ops::matmul::{matmul_small_rows_bf16, Bf16PairRows, MatRef};
use op_check::{assert_close, check_within_terms, round_bf16, seed, Rng};

fn assert_within(name: &str, got: &[f32], want: &[f64], scale: &[f64], tolerance: f64) {
    match check_within_terms(name, got, want, scale, tolerance) {
        Ok(worst) => println!(
            "{name}: worst error {:.2e} of the sum of |terms|",
            worst.error
        ),
        Err(message) => panic!("{message}"),
    }
}

/// `dst (m × n, rows dst_stride apart) = a·b` (or `+=`) against float64 sums of the rounded
/// operands, to 1e-5 of Σ|a·b| (+ |prior|).
fn check_product(rng: &mut Rng, m: usize, k: usize, n: usize) {
    let (a_stride, dst_stride) = (k + rng.range_usize(0, 5), n + rng.range_usize(0, 5));
    let a = rng.vec_f32((m - 1) * a_stride + k, -1.0, 1.0);
    // b as the LSTM passes W_hhᵀ: a transposed view of a row-major (n × k) matrix.
    let b_t = rng.vec_f32(n * k, -1.0, 1.0);
    let b = MatRef::row_major(&b_t, n, k).t();
    let packed = Bf16PairRows::pack(b);
    assert_eq!(packed.shape(), (k, n));
    let prior = rng.vec_f32((m - 1) * dst_stride + n, -1.0, 1.0);
    for accumulate in [false, true] {
        let mut dst = if accumulate {
            prior.clone()
        } else {
            vec![f32::NAN; prior.len()]
        };
        let a_view = MatRef {
            data: &a,
            rows: m,
            cols: k,
            row_stride: a_stride,
            col_stride: 1,
        };
        matmul_small_rows_bf16(&mut dst, dst_stride, a_view, &packed, accumulate);
        let (mut got, mut want, mut scale) = (vec![], vec![], vec![]);
        for r in 0..m {
            for c in 0..n {
                let terms = (0..k).map(|i| {
                    round_bf16(a[r * a_stride + i]) as f64 * round_bf16(b_t[c * k + i]) as f64
                });
                let start = if accumulate {
                    prior[r * dst_stride + c] as f64
                } else {
                    0.0
                };
                got.push(dst[r * dst_stride + c]);
                want.push(start + terms.clone().sum::<f64>());
                scale.push(start.abs() + terms.map(f64::abs).sum::<f64>());
            }
        }
        // float32 sums of exact bf16 products (8-bit significands) in another order: a few
        // ulps of Σ|a·b|.
        let name = format!("product m {m} k {k} n {n} accumulate {accumulate}");
        assert_within(&name, &got, &want, &scale, 1e-5);
    }
}

#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
}

/// One direction's parameters: w_ih, w_hh, b_ih, b_hh.
type Direction = [Vec<f32>; 4];

fn random_direction(rng: &mut Rng, s: Shape) -> Direction {
    // PyTorch's init range, U(−1/sqrt(hidden), 1/sqrt(hidden)), doubled to exercise saturation.
    let bound = 2.0 / (s.hidden_size as f32).sqrt();
    let h4 = 4 * s.hidden_size;
    let mut v = |len| rng.vec_f32(len, -bound, bound);
    [v(h4 * s.input_size), v(h4 * s.hidden_size), v(h4), v(h4)]
}

fn weights(d: &Direction) -> LstmWeights<'_> {
    LstmWeights {
        w_ih: &d[0],
        w_hh: &d[1],
        b_ih: &d[2],
        b_hh: &d[3],
    }
}

/// out, gates, cells
type Outputs = [Vec<f32>; 3];

type Forward =
    fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[LstmWeights; 2], usize, usize, usize, usize);

/// The outputs of `forward`, poisoned with NaN first.
fn run(forward: Forward, s: Shape, inp: &[f32], dirs: &[Direction; 2]) -> Outputs {
    let rows = s.batch * s.frames;
    let hid = s.hidden_size;
    let mut out = [
        vec![f32::NAN; rows * 2 * hid],
        vec![f32::NAN; 2 * rows * 4 * hid],
        vec![f32::NAN; 2 * rows * hid],
    ];
    let [o, g, c] = &mut out;
    forward(
        o,
        g,
        c,
        inp,
        &[weights(&dirs[0]), weights(&dirs[1])],
        s.batch,
        s.frames,
        s.input_size,
        hid,
    );
    out
}

/// The gate activations each step should produce from the hidden states in `out` (the forward
/// being checked, fed its own h): `bf16(W_ih)·bf16(x) + b_ih + b_hh + bf16(W_hh)·bf16(h_prev)`
/// in float64,
/// and per gate Σ|terms| of that sum. (gates, scales), in the forward's `gates` layout.
fn teacher_forced_gates(
    s: Shape,
    inp: &[f32],
    dirs: &[Direction; 2],
    out: &[f32],
) -> (Vec<f64>, Vec<f64>) {
    let (hid, n_in) = (s.hidden_size, s.input_size);
    let len = 2 * s.batch * s.frames * 4 * hid;
    let (mut gates, mut scales) = (vec![0.0f64; len], vec![0.0f64; len]);
    let sigmoid = |x: f64| 1.0 / (1.0 + (-x).exp());
    for (d, [w_ih, w_hh, b_ih, b_hh]) in dirs.iter().enumerate() {
        for b in 0..s.batch {
            for step in 0..s.frames {
                let frame = |step: usize| if d == 0 { step } else { s.frames - 1 - step };
                let t = frame(step);
                let x = &inp[(b * s.frames + t) * n_in..][..n_in];
                let h_prev = (step > 0)
                    .then(|| &out[(b * s.frames + frame(step - 1)) * 2 * hid + d * hid..][..hid]);
                let slot = ((d * s.batch + b) * s.frames + t) * 4 * hid;
                for row in 0..4 * hid {
                    let from_x = (0..n_in)
                        .map(|i| round_bf16(w_ih[row * n_in + i]) as f64 * round_bf16(x[i]) as f64);
                    let from_h = (0..hid).map(|j| {
                        h_prev.map_or(0.0, |h| {
                            round_bf16(w_hh[row * hid + j]) as f64 * round_bf16(h[j]) as f64
                        })
                    });
                    let (bi, bh) = (b_ih[row] as f64, b_hh[row] as f64);
                    let pre = from_x.clone().chain(from_h.clone()).sum::<f64>() + bi + bh;
                    scales[slot + row] =
                        from_x.chain(from_h).map(f64::abs).sum::<f64>() + bi.abs() + bh.abs();
                    gates[slot + row] = if (2 * hid..3 * hid).contains(&row) {
                        pre.tanh()
                    } else {
                        sigmoid(pre)
                    };
                }
            }
        }
    }
    (gates, scales)
}

/// Sums of rounded terms in another order (a few ulps of Σ|terms|) through activations of slope
/// ≤ 1, plus the vectorised exp's ~1e-7 absolute error: the scale is Σ|terms| + 1.
const TEACHER_FORCED_TOLERANCE: f64 = 1e-5;

fn check_lstm(rng: &mut Rng, s: Shape, expect_caught: bool) {
    let dirs = [random_direction(rng, s), random_direction(rng, s)];
    let inp = rng.vec_f32(s.batch * s.frames * s.input_size, -1.0, 1.0);
    let name = format!("{s:?}");
    let fast = run(lstm_forward_bf16, s, &inp, &dirs);
    let (want, scale) = teacher_forced_gates(s, &inp, &dirs, &fast[0]);
    let scale: Vec<f64> = scale.iter().map(|s| s + 1.0).collect();
    assert_within(
        &format!("{name} gates vs rounded W_hh, h"),
        &fast[1],
        &want,
        &scale,
        TEACHER_FORCED_TOLERANCE,
    );
    if expect_caught {
        // The same check on the float32 forward (unrounded products) must fail: it can see bf16.
        let fp32 = run(lstm_forward_reference, s, &inp, &dirs);
        let (want, scale) = teacher_forced_gates(s, &inp, &dirs, &fp32[0]);
        let scale: Vec<f64> = scale.iter().map(|s| s + 1.0).collect();
        let caught = check_within_terms("fp32", &fp32[1], &want, &scale, TEACHER_FORCED_TOLERANCE);
        assert!(
            caught.is_err(),
            "{name}: the float32 forward passed the bf16 check ({caught:?})"
        );
        println!("{name}: the float32 forward fails the bf16 check, as it should");
    }
    let exact = run(lstm_forward_reference, s, &inp, &dirs);
    // Each step's sums are off by at most 2⁻⁸ of Σ|w·x| + Σ|w·h| (each operand rounded by 2⁻⁹,
    // the input projection's included, mostly cancelling); the gates damp it (σ′ ≤ ¼, tanh′ ≤ 1,
    // f < 1) rather than compound it over the steps. So the gates are held to 1e-2 of their own
    // Σ|terms| + 1, and out and cells to 1e-2 of their peak, or 2⁻⁸ of the largest Σ|terms| where
    // that is more (small hidden sizes: PyTorch's init gives weights up to 1/√hidden).
    let loose = 1e-2;
    let exact_gates: Vec<f64> = exact[1].iter().map(|&g| g as f64).collect();
    assert_within(
        &format!("{name} gates vs float32"),
        &fast[1],
        &exact_gates,
        &scale,
        loose,
    );
    let largest_sum = scale.iter().fold(0.0f64, |m, &v| m.max(v));
    let loose_states = loose.max(largest_sum / 256.0);
    for (what, got, want) in [("out", &fast[0], &exact[0]), ("cells", &fast[2], &exact[2])] {
        assert_close(
            &format!("{name} {what} vs float32"),
            got,
            want,
            loose_states,
        );
    }
}

// One test, so that nothing else in this binary reads the switch while it is on.
#[test]
fn bf16_recurrence_matches_float32_sums_of_rounded_operands() {
    let mut rng = Rng::new(seed(
        "bf16_recurrence_matches_float32_sums_of_rounded_operands",
    ));
    if !bf16_supported() {
        println!(
            "no AVX512-BF16 on this CPU (or MTOSI_FORCE_ISA narrows it): checking the plain-loop \
             products; the switch part is skipped"
        );
        assert!(set_conv_precision(ConvPrecision::Bf16).is_err());
    }
    // The LSTM's (batch 1, 2 and 4, hidden 176: 176 × 704), odd inner sizes, narrow column
    // counts, rows left over after blocks of 4, and column counts spanning several 64-wide
    // blocks with a partial last one.
    let mut products = vec![
        (1, 176, 704),
        (2, 176, 704),
        (4, 176, 704),
        (5, 7, 70),
        (6, 9, 300),
        (1, 1, 3),
    ];
    products.extend((0..8).map(|_| {
        (
            rng.range_usize(1, 9),
            rng.range_usize(1, 200),
            rng.range_usize(1, 600),
        )
    }));
    for (m, k, n) in products {
        check_product(&mut rng, m, k, n);
    }
    let network = Shape {
        batch: 1,
        frames: 24,
        input_size: 176,
        hidden_size: 176,
    };
    check_lstm(&mut rng, network, true);
    for _ in 0..4 {
        let s = Shape {
            batch: rng.range_usize(1, 5),
            frames: rng.range_usize(1, 16),
            input_size: rng.range_usize(1, 40),
            hidden_size: rng.range_usize(1, 40),
        };
        check_lstm(&mut rng, s, false);
    }
    if !bf16_supported() {
        return;
    }
    // The switch: lstm_forward is lstm_forward_bf16 while it is on, float32 again after.
    let s = Shape {
        batch: 2,
        frames: 9,
        input_size: 13,
        hidden_size: 33,
    };
    let dirs = [random_direction(&mut rng, s), random_direction(&mut rng, s)];
    let inp = rng.vec_f32(s.batch * s.frames * s.input_size, -1.0, 1.0);
    let env_on = bf16_enabled();
    let before = run(lstm_forward, s, &inp, &dirs);
    set_conv_precision(ConvPrecision::Bf16).expect("AVX512-BF16 was detected");
    let on = run(lstm_forward, s, &inp, &dirs);
    set_conv_precision(ConvPrecision::Fp32).expect("float32 is always available");
    let after = run(lstm_forward, s, &inp, &dirs);
    let bf16 = run(lstm_forward_bf16, s, &inp, &dirs);
    assert_eq!(
        on, bf16,
        "lstm_forward with the switch on is lstm_forward_bf16"
    );
    assert_eq!(before, after, "lstm_forward after the switch is off again");
    if env_on {
        println!("MTOSI_CONV_BF16=1 is set: float32 was not seen");
    } else {
        assert_ne!(before, bf16, "the switch changed nothing");
    }
}

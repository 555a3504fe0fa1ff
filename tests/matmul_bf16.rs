//! `matmul_bf16` (the bf16 GEMM of `--precision bf16`: the LSTM's input projection, the 1×1
//! convolutions) against float64 sums of the bf16-rounded operands, and
//! `matmul_bf16_reference` against the same and against the unrounded product, on fresh random
//! shapes: rows off the 8-row block, columns off the 48-wide panel, odd inner sizes (a pair
//! padded with zero), strided and transposed views, each way of starting the sums; the output
//! poisoned with NaN first where it is overwritten, the gaps between rows left untouched. Where
//! the CPU lacks AVX512-BF16 `matmul_bf16` runs the reference's loops, which the same checks cover.

mod op_check;

use mtosi::ops::matmul::{MatRef, Threads};
use mtosi::ops::matmul_bf16::{matmul_bf16, matmul_bf16_reference, Bf16Panels, Start};
use op_check::{check_within_terms, round_bf16, seed, Rng};

fn assert_within(name: &str, got: &[f32], want: &[f64], scale: &[f64], tolerance: f64) {
    match check_within_terms(name, got, want, scale, tolerance) {
        Ok(worst) => println!(
            "{name}: worst error {:.2e} of Σ|terms| at {}",
            worst.error, worst.index
        ),
        Err(message) => panic!("{message}"),
    }
}

#[derive(Clone, Copy, Debug)]
enum StartKind {
    Zero,
    Accumulate,
    RowBias,
    ColumnBias,
}

/// `a` (m × k) stored with rows `a_stride` apart, or transposed (k × m storage) when `a_t`;
/// `b` (k × n) row-major, or as the transpose of an n × k matrix when `b_t` (the LSTM's W_ihᵀ).
struct Case {
    m: usize,
    k: usize,
    n: usize,
    a_stride: usize,
    a_t: bool,
    b_t: bool,
    dst_stride: usize,
}

// The expected sums index the operands, the biases and the output by (row, column).
#[allow(clippy::needless_range_loop)]
fn check(rng: &mut Rng, c: &Case) {
    let (m, k, n) = (c.m, c.k, c.n);
    let a_data = rng.vec_f32(
        if c.a_t {
            k * m
        } else {
            (m - 1) * c.a_stride + k
        },
        -1.0,
        1.0,
    );
    let b_data = rng.vec_f32(k * n, -1.0, 1.0);
    let a = if c.a_t {
        MatRef::row_major(&a_data, k, m).t()
    } else {
        MatRef {
            data: &a_data,
            rows: m,
            cols: k,
            row_stride: c.a_stride,
            col_stride: 1,
        }
    };
    let b = if c.b_t {
        MatRef::row_major(&b_data, n, k).t()
    } else {
        MatRef::row_major(&b_data, k, n)
    };
    let a_at = |r: usize, i: usize| a.data[r * a.row_stride + i * a.col_stride];
    let b_at = |i: usize, col: usize| b.data[i * b.row_stride + col * b.col_stride];
    let row_bias = rng.vec_f32(m, -1.0, 1.0);
    let col_bias = rng.vec_f32(n, -1.0, 1.0);
    let prior = rng.vec_f32((m - 1) * c.dst_stride + n, -1.0, 1.0);
    let packed = Bf16Panels::pack(b);
    assert_eq!(packed.shape(), (k, n));
    for kind in [
        StartKind::Zero,
        StartKind::Accumulate,
        StartKind::RowBias,
        StartKind::ColumnBias,
    ] {
        let start = match kind {
            StartKind::Zero => Start::Zero,
            StartKind::Accumulate => Start::Accumulate,
            StartKind::RowBias => Start::RowBias(&row_bias),
            StartKind::ColumnBias => Start::ColumnBias(&col_bias),
        };
        // Overwritten elements start as NaN (every one must be written); the gaps between
        // rows keep the prior (none may be).
        let mut initial = prior.clone();
        if !matches!(kind, StartKind::Accumulate) {
            for r in 0..m {
                initial[r * c.dst_stride..][..n].fill(f32::NAN);
            }
        }
        let (mut want, mut unrounded, mut scale) = (vec![], vec![], vec![]);
        let mut gaps = vec![];
        for r in 0..m {
            for col in 0..n {
                let at = r * c.dst_stride + col;
                let first = match kind {
                    StartKind::Zero => 0.0,
                    StartKind::Accumulate => prior[at] as f64,
                    StartKind::RowBias => row_bias[r] as f64,
                    StartKind::ColumnBias => col_bias[col] as f64,
                };
                let (mut sum, mut exact, mut size) = (first, first, first.abs());
                for i in 0..k {
                    let (x, w) = (a_at(r, i), b_at(i, col));
                    sum += round_bf16(x) as f64 * round_bf16(w) as f64;
                    exact += x as f64 * w as f64;
                    size += (x as f64 * w as f64).abs();
                }
                want.push(sum);
                unrounded.push(exact);
                scale.push(size);
            }
            if r + 1 < m {
                gaps.extend((r * c.dst_stride + n..(r + 1) * c.dst_stride).map(|i| (i, prior[i])));
            }
        }
        let name = format!("m {m} k {k} n {n} a_t {} b_t {} {kind:?}", c.a_t, c.b_t);
        let block = |dst: &[f32]| -> Vec<f32> {
            (0..m)
                .flat_map(|r| dst[r * c.dst_stride..][..n].to_vec())
                .collect()
        };
        for threads in [Threads::All, Threads::Single] {
            let mut dst = initial.clone();
            matmul_bf16(&mut dst, c.dst_stride, a, &packed, start, threads);
            // float32 sums of ≤ 400 exact bf16 products in another order: a few ulps of Σ|terms|.
            assert_within(
                &format!("{name} {threads:?} vs rounded operands"),
                &block(&dst),
                &want,
                &scale,
                1e-5,
            );
            for &(i, v) in &gaps {
                assert_eq!(dst[i].to_bits(), v.to_bits(), "{name}: gap {i} written");
            }
        }
        let mut dst = initial.clone();
        matmul_bf16_reference(&mut dst, c.dst_stride, a, b, start);
        let got = block(&dst);
        assert_within(&format!("{name} reference"), &got, &want, &scale, 1e-5);
        // bf16 keeps 8 significant bits: each operand is off by at most 2⁻⁸ relative, each product
        // by ~2⁻⁷ ≈ 8e-3 (the bound; the sums seen stay near 4e-3).
        assert_within(
            &format!("{name} reference vs float32"),
            &got,
            &unrounded,
            &scale,
            1e-2,
        );
    }
}

#[test]
fn bf16_gemm_matches_float32_sums_of_rounded_operands() {
    let mut rng = Rng::new(seed("bf16_gemm_matches_float32_sums_of_rounded_operands"));
    let plain = |m, k, n| Case {
        m,
        k,
        n,
        a_stride: k,
        a_t: false,
        b_t: false,
        dst_stride: n,
    };
    let mut cases = vec![
        // The LSTM's input projection (frames × 176 by W_ihᵀ, 176 × 704) and a 16 → 32 skip
        // convolution (32 × 16 by 16 × pixels).
        Case {
            b_t: true,
            ..plain(100, 176, 704)
        },
        plain(32, 16, 3000),
        plain(1, 1, 1),
        plain(9, 3, 49),
        plain(7, 400, 47),
    ];
    for _ in 0..10 {
        let (m, k, n) = (
            rng.range_usize(1, 40),
            rng.range_usize(1, 200),
            rng.range_usize(1, 150),
        );
        cases.push(Case {
            m,
            k,
            n,
            a_stride: k + rng.range_usize(0, 5),
            a_t: rng.range_usize(0, 1) == 1,
            b_t: rng.range_usize(0, 1) == 1,
            dst_stride: n + rng.range_usize(0, 5),
        });
    }
    for case in &cases {
        check(&mut rng, case);
    }
}

#[test]
fn non_finite_operands_reach_only_their_own_sums() {
    let (m, k, n) = (10, 9, 60);
    let mut rng = Rng::new(seed("non_finite_operands_reach_only_their_own_sums"));
    let mut a = rng.vec_f32(m * k, -1.0, 1.0);
    let mut b = rng.vec_f32(k * n, -1.0, 1.0);
    a[3 * k + 4] = f32::NAN;
    b[2 * n + 50] = f32::INFINITY;
    let packed = Bf16Panels::pack(MatRef::row_major(&b, k, n));
    let mut dst = vec![0.0f32; m * n];
    let a_ref = MatRef::row_major(&a, m, k);
    matmul_bf16(&mut dst, n, a_ref, &packed, Start::Zero, Threads::All);
    for r in 0..m {
        for c in 0..n {
            let v = dst[r * n + c];
            assert_eq!(
                v.is_finite(),
                r != 3 && c != 50,
                "({r}, {c}) = {v}: only row 3 (a NaN) and column 50 (an infinity) are not finite"
            );
        }
    }
}

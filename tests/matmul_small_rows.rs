//! `matmul_small_rows` (the LSTM recurrence's few-row product over `b` packed once in 64-column
//! panels) against plain loops, in its AVX-512 and AVX2 versions (each with its one-, two- and
//! many-row blocks) and the portable fallback, on fresh random shapes: 1–16 rows, column counts
//! off the 64- and 16-wide blocks, `b` row-major or transposed, strided rows, with and without
//! accumulation (without: into NaN, which any unwritten output keeps), the gaps between rows
//! untouched.

mod op_check;

use mtosi::ops::conv2d::FORCE_ISA_VAR;
use mtosi::ops::matmul::{matmul_small_rows, MatRef, SmallRowsPanels, SMALL_ROWS_MAX};
use op_check::{assert_close, seed, Rng};

#[test]
fn small_rows_matmul_matches_plain_loops() {
    let mut rng = Rng::new(seed("small_rows_matmul_matches_plain_loops"));
    let mut cases: Vec<(usize, usize, usize)> = (0..12)
        .map(|_| {
            (
                rng.range_usize(1, SMALL_ROWS_MAX),
                rng.range_usize(1, 300),
                rng.range_usize(1, 200),
            )
        })
        .collect();
    // The LSTM's: batch 1 and 4, hidden 176 (forward: 176 × 704; backward: 704 × 176).
    cases.extend([(1, 176, 704), (4, 176, 704), (4, 704, 176), (8, 704, 176)]);
    for (m, k, n) in cases {
        // Rows of `a` and `dst` further apart than their length, as the LSTM's are.
        let (a_stride, dst_stride) = (k + rng.range_usize(0, 7), n + rng.range_usize(0, 7));
        let a = rng.vec_f32((m - 1) * a_stride + k, -1.0, 1.0);
        let b = rng.vec_f32(k * n, -1.0, 1.0);
        // The forward passes W_hhᵀ as a transposed view: the same values read through swapped
        // strides.
        let transposed = rng.range_usize(0, 1) == 1;
        let b_t: Vec<f32> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        let b_view = if transposed {
            MatRef::row_major(&b_t, n, k).t()
        } else {
            MatRef::row_major(&b, k, n)
        };
        let packed = SmallRowsPanels::pack(b_view);
        assert_eq!(packed.shape(), (k, n));
        let prior = rng.vec_f32((m - 1) * dst_stride + n, -1.0, 1.0);
        for accumulate in [false, true] {
            let mut expected = prior.clone();
            for r in 0..m {
                for c in 0..n {
                    let sum: f64 = (0..k)
                        .map(|i| a[r * a_stride + i] as f64 * b[i * n + c] as f64)
                        .sum();
                    let at = r * dst_stride + c;
                    expected[at] = if accumulate {
                        prior[at] + sum as f32
                    } else {
                        sum as f32
                    };
                }
            }
            // The only test in this binary: nothing else reads the variable meanwhile.
            for isa in ["", "avx2", "portable"] {
                std::env::set_var(FORCE_ISA_VAR, isa);
                // Without accumulation the block starts as NaN; the gaps between its rows keep
                // the prior values, which the kernels must not touch.
                let mut dst = prior.clone();
                if !accumulate {
                    for r in 0..m {
                        dst[r * dst_stride..][..n].fill(f32::NAN);
                    }
                }
                let a_view = MatRef {
                    data: &a,
                    rows: m,
                    cols: k,
                    row_stride: a_stride,
                    col_stride: 1,
                };
                matmul_small_rows(&mut dst, dst_stride, a_view, &packed, accumulate);
                // Sums of ≤ 300 products of values in [−1, 1] in f32: well below 1e-5 of the peak.
                assert_close(
                    &format!("m {m} k {k} n {n} accumulate {accumulate} isa '{isa}'"),
                    &dst,
                    &expected,
                    1e-5,
                );
            }
        }
    }
    std::env::remove_var(FORCE_ISA_VAR);
}

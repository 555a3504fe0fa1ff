//! kernels/matmul.cu (the tiled SGEMM) computes the same products as the CPU's `gemm` crate,
//! for every transpose, batched, accumulating or not, on shapes that are not multiples of the
//! 64×64 tile or of its 16-deep k slice.

use mtosi::device::equivalence::Equivalence;
use mtosi::ops::matmul::{matmul_batched, MatmulShape};

fn shape(batch: usize, m: usize, n: usize, k: usize, ta: bool, tb: bool, acc: bool) -> MatmulShape {
    MatmulShape {
        batch,
        m,
        n,
        k,
        transpose_a: ta,
        transpose_b: tb,
        accumulate: acc,
    }
}

#[test]
fn matmul_matches_cpu_reference_on_every_device() {
    let shapes = [
        shape(1, 1, 1, 1, false, false, false),
        shape(1, 7, 33, 5, false, false, false),
        shape(2, 65, 63, 17, true, false, false),
        shape(1, 64, 64, 16, false, true, true),
        shape(3, 31, 129, 40, true, true, false),
        shape(1, 130, 70, 150, false, false, true),
        shape(1, 3, 200, 1, false, true, false),
        shape(1, 9, 5, 0, false, false, false),
    ];
    Equivalence::new("matmul")
        // fp32 sums of up to 150 products of values in [-1, 1] in a different order (and fused
        // on a GPU): the bound, 1e-4 of the output's largest magnitude.
        .floor_fraction(1.0)
        .tolerance(1e-4)
        .run(
            &shapes,
            |s, rng| {
                (
                    *s,
                    rng.vec_f32(s.batch * s.m * s.k, -1.0, 1.0),
                    rng.vec_f32(s.batch * s.k * s.n, -1.0, 1.0),
                    rng.vec_f32(s.batch * s.m * s.n, -1.0, 1.0),
                )
            },
            |device, (s, a, b, dst)| matmul_batched(device, s, a, b, dst),
        );
}

#[test]
fn matmul_sum_matches_cpu_reference_on_every_device() {
    use mtosi::ops::matmul::{matmul_sum, matmul_sum_plan};
    // Long k with small outputs (the weight gradients' shape) to exercise several k slices.
    let shapes = [
        shape(1, 1, 1, 1, false, false, false),
        shape(3, 7, 9, 1000, false, true, false),
        shape(4, 16, 20, 777, false, true, true),
        shape(2, 70, 33, 600, true, false, false),
        shape(1, 5, 3, 0, false, false, false),
    ];
    assert!(
        matmul_sum_plan(7, 9, 1000, 3).0 > 1,
        "the test must split k"
    );
    Equivalence::new("matmul_sum")
        // fp32 sums of up to 4·1000 products in another order and grouping: 1e-4 of the largest.
        .floor_fraction(1.0)
        .tolerance(1e-4)
        .run(
            &shapes,
            |s, rng| {
                (
                    *s,
                    rng.vec_f32(s.batch * s.m * s.k, -1.0, 1.0),
                    rng.vec_f32(s.batch * s.k * s.n, -1.0, 1.0),
                    rng.vec_f32(s.m * s.n, -1.0, 1.0),
                )
            },
            |device, (s, a, b, dst)| matmul_sum(device, s, a, b, dst),
        );
}

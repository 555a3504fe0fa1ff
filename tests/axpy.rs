//! kernels/axpy.cu computes the same function as its CPU reference on every device.

use mtosi::device::equivalence::{Equivalence, ODD_LENGTHS};
use mtosi::ops::axpy::axpy;

#[test]
fn axpy_matches_cpu_reference_on_every_device() {
    Equivalence::new("axpy")
        // One multiply and one add per element; a GPU may fuse them (one rounding fewer): ≤ 2 ulp.
        .tolerance(2.5e-7)
        .run(
            &ODD_LENGTHS,
            |&n, rng| {
                (
                    rng.range_f32(-2.0, 2.0),
                    rng.vec_f32(n, -1.0, 1.0),
                    rng.vec_f32(n, -1.0, 1.0),
                )
            },
            |device, (a, x, y)| axpy(device, *a, x, y),
        );
}

//! kernels/elementwise.cu (skip additions, fill) against the CPU, NaN-poisoned outputs.

use mtosi::device::equivalence::{Equivalence, ODD_LENGTHS};
use mtosi::device::Device;
use mtosi::ops::elementwise::*;

#[test]
fn add_matches_cpu_reference_on_every_device() {
    Equivalence::new("elementwise_add")
        // One add per element: exact.
        .tolerance(0.0)
        .run(
            &ODD_LENGTHS,
            |&n, rng| (rng.vec_f32(n, -1.0, 1.0), rng.vec_f32(n, -1.0, 1.0)),
            |device, (a, b)| match device {
                Device::Cpu => {
                    let mut out = vec![0.0; a.len()];
                    add_forward(&mut out, a, b);
                    Ok(out)
                }
                Device::Kernels(k) => {
                    let (a, b) = (k.upload(a)?, k.upload(b)?);
                    let mut out = k.alloc(a.len())?;
                    add_forward_launch(k, &mut out, &a, &b)?;
                    k.download(&out)
                }
            },
        );
    Equivalence::new("elementwise_add_in_place")
        .tolerance(0.0)
        .run(
            &ODD_LENGTHS,
            |&n, rng| (rng.vec_f32(n, -1.0, 1.0), rng.vec_f32(n, -1.0, 1.0)),
            |device, (y, x)| match device {
                Device::Cpu => {
                    let mut out = y.clone();
                    add_in_place(&mut out, x);
                    Ok(out)
                }
                Device::Kernels(k) => {
                    let x = k.upload(x)?;
                    let mut out = k.upload(y)?;
                    add_in_place_launch(k, &mut out, &x)?;
                    k.download(&out)
                }
            },
        );
}

#[test]
fn fill_writes_every_element_on_every_device() {
    Equivalence::new("elementwise_fill").tolerance(0.0).run(
        &ODD_LENGTHS,
        |&n, rng| (n, rng.range_f32(-1.0, 1.0)),
        |device, &(n, value)| match device {
            Device::Cpu => Ok(vec![value; n]),
            Device::Kernels(k) => {
                let mut out = k.alloc(n)?;
                fill_launch(k, &mut out, value)?;
                k.download(&out)
            }
        },
    );
}

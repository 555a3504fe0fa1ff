//! Clamp: values pushed into the bounds, NaN kept as PyTorch's clamp_ keeps it.

use mtosi::ops::clamp::*;

#[test]
fn clamp_bounds_values_and_keeps_nan() {
    let mut values = [-0.5, -0.001, 0.0, 0.0005, 0.2, f32::NAN, f32::INFINITY];
    clamp_in_place(&mut values, -HOOK_GRADIENT_BOUND, HOOK_GRADIENT_BOUND);
    assert_eq!(values[..5], [-0.001, -0.001, 0.0, 0.0005, 0.001]);
    assert!(values[5].is_nan());
    assert_eq!(values[6], 0.001);
}

#[test]
fn clip_by_value_bound_is_the_protocol_one() {
    let mut grads = [0.3, -7.0, 0.05];
    clamp_in_place(&mut grads, -CLIP_GRADIENT_VALUE, CLIP_GRADIENT_VALUE);
    assert_eq!(grads, [0.1, -0.1, 0.05]);
}

#[test]
fn clamp_kernel_matches_cpu_reference_on_every_device() {
    use mtosi::device::equivalence::{Equivalence, ODD_LENGTHS};
    use mtosi::device::Device;
    Equivalence::new("clamp_in_place")
        // Comparisons and copies only: exact.
        .tolerance(0.0)
        .run(
            &ODD_LENGTHS,
            |&n, rng| rng.vec_f32(n, -0.3, 0.3),
            |device, values| match device {
                Device::Cpu => {
                    let mut out = values.clone();
                    clamp_in_place(&mut out, -CLIP_GRADIENT_VALUE, CLIP_GRADIENT_VALUE);
                    Ok(out)
                }
                Device::Kernels(k) => {
                    let mut out = k.upload(values)?;
                    clamp_in_place_launch(k, &mut out, -CLIP_GRADIENT_VALUE, CLIP_GRADIENT_VALUE)?;
                    k.download(&out)
                }
            },
        );
}

#[test]
fn clamp_kernel_keeps_nan_and_bounds_infinities() {
    use mtosi::device::{EmuOptions, KernelDevice};
    let device = KernelDevice::emu(EmuOptions::default());
    let mut values = device
        .upload(&[f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.05])
        .unwrap();
    clamp_in_place_launch(&device, &mut values, -0.1, 0.1).unwrap();
    let got = device.download(&values).unwrap();
    assert!(got[0].is_nan(), "{got:?}");
    assert_eq!(got[1..], [0.1, -0.1, 0.05]);
}

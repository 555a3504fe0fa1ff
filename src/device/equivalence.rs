//! The equivalence harness: proves that an op's kernel computes the same function as its CPU
//! reference. Every kernel's test uses it:
//!
//! ```no_run
//! use mtosi::device::equivalence::Equivalence;
//! use mtosi::ops::axpy::axpy;
//!
//! Equivalence::new("axpy")
//!     // fp32, one multiply and one add per element: results agree to a few ulp.
//!     .tolerance(1e-6)
//!     .run(
//!         &[1usize, 33, 4099],
//!         |&n, rng| (rng.uniform_f32(), rng.vec_f32(n, -1.0, 1.0), rng.vec_f32(n, -1.0, 1.0)),
//!         |device, (a, x, y)| axpy(device, *a, x, y),
//!     );
//! ```
//!
//! For each shape it draws fresh random inputs (seed printed; `MTOSI_TEST_SEED` replays it), runs
//! the op on `cpu` (the reference), on `emu` in forward and in reverse thread order, and on
//! `cuda` when one is present (else prints why it skipped; with `MTOSI_REQUIRE_CUDA` set it
//! fails instead, as in the GPU check). Every buffer a kernel device allocates starts as NaN,
//! and a NaN or infinity in any result or in the reference fails naming the element, so an
//! output element that is never written fails. So do an empty output and an op that launched no
//! kernel on a kernel device. It prints the worst relative error per device and the kernels
//! launched (the report line CI checks: `; kernels: <names>`), and panics when an error exceeds
//! the tolerance or an op fails; [`Equivalence::check`] returns the failure instead.
//!
//! An op with several outputs (a backward pass) returns them concatenated into one `Vec<f32>`.
//!
//! Relative error of an element ([`crate::compare`], [`ErrorScale::relative`]):
//! |got − want| / max(|want|, floor), where floor is `floor_fraction` (default 1e-3) times the
//! largest |want| of the output, so that elements near zero are judged against the output's
//! scale rather than blowing up.

use std::fmt::Debug;
use std::io::Write;

use super::{Device, DeviceError, EmuOptions, KernelDevice, ThreadOrder};
use crate::compare::{worst_error, ErrorScale};

/// The environment variable that replays a run: `MTOSI_TEST_SEED=<seed printed by the failure>`.
pub const SEED_VAR: &str = "MTOSI_TEST_SEED";
/// When set, every harness run appends its summary line to this file (CI prints it and checks
/// that every kernel of `kernels/*.cu` appears in it: `.ci/check-equivalence-report`).
pub const REPORT_VAR: &str = "MTOSI_EQUIVALENCE_REPORT";
/// When set (the GPU check sets it), a missing cuda device fails the test instead of skipping.
pub const REQUIRE_CUDA_VAR: &str = "MTOSI_REQUIRE_CUDA";

/// The seeded generator the harness draws inputs from.
pub use crate::rng::Rng;

/// Lengths that catch off-by-one and partial-block bugs: 1, around a warp, around a block of
/// 256, and a prime well past several blocks.
pub const ODD_LENGTHS: [usize; 8] = [1, 7, 31, 33, 255, 257, 1000, 4099];

/// The seed for this run: `MTOSI_TEST_SEED` (decimal or 0x-hex) when set, else fresh.
pub fn seed_from_env() -> u64 {
    if let Ok(text) = std::env::var(SEED_VAR) {
        let parsed = match text.strip_prefix("0x") {
            Some(hex) => u64::from_str_radix(hex, 16),
            None => text.parse(),
        };
        return parsed.unwrap_or_else(|_| panic!("{SEED_VAR}={text} is not a number"));
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut mix = Rng::new(nanos ^ ((std::process::id() as u64) << 32));
    mix.next_u64()
}

/// The seed of one random test by the harness's rule ([`seed_from_env`]), printed in the one
/// format every test uses: `<test>: seed 0x… (replay with MTOSI_TEST_SEED=0x…)`.
pub fn test_seed(test: &str) -> u64 {
    let seed = seed_from_env();
    println!("{test}: seed {seed:#x} (replay with {SEED_VAR}={seed:#x})");
    seed
}

/// The worst element of one comparison (the f32 view of [`crate::compare::Worst`]).
#[derive(Clone, Debug)]
pub struct WorstError {
    pub relative_error: f64,
    pub index: usize,
    pub got: f32,
    pub want: f32,
}

/// Worst relative error of `got` against `want` (see the module doc), by
/// [`crate::compare::worst_error`]: a NaN or infinity on either side, a length mismatch or an
/// empty output is an `Err` naming the element. Kept for callers; new code can use
/// [`crate::compare`] directly.
pub fn worst_relative_error(
    got: &[f32],
    want: &[f32],
    floor_fraction: f64,
) -> Result<Option<WorstError>, String> {
    let worst =
        worst_error(got, want, ErrorScale::relative(floor_fraction)).map_err(|e| e.to_string())?;
    Ok(Some(WorstError {
        relative_error: worst.error,
        index: worst.index,
        got: worst.got as f32,
        want: worst.want as f32,
    }))
}

/// Appends `lines` to the file `MTOSI_EQUIVALENCE_REPORT` names, when set: for checks that
/// compare more than one output and so do not go through [`Equivalence::run`] (the whole
/// training step); their summary line ends in `; kernels: <names>` as the harness's do.
pub fn append_to_report(lines: &str) {
    if let Ok(path) = std::env::var(REPORT_VAR) {
        if let Ok(mut file) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            // One write of whole lines, so that concurrent tests' lines do not interleave.
            let _ = file.write_all(format!("{lines}\n").as_bytes());
        }
    }
}

/// A kernel device and its name in reports (`emu(forward)`, `emu(reverse)`, `cuda`).
pub type NamedDevice = (String, KernelDevice);

/// The kernel devices a check runs on, by name: emu in forward and in reverse thread order,
/// and cuda when present. A missing cuda is a line of the returned skips, or an error when
/// `MTOSI_REQUIRE_CUDA` is set (the GPU check).
pub fn kernel_devices(op: &str) -> Result<(Vec<NamedDevice>, Vec<String>), String> {
    let mut devices: Vec<NamedDevice> = [ThreadOrder::Forward, ThreadOrder::Reverse]
        .into_iter()
        .map(|order| {
            let name = match order {
                ThreadOrder::Forward => "emu(forward)",
                ThreadOrder::Reverse => "emu(reverse)",
            };
            (
                name.to_string(),
                KernelDevice::emu(EmuOptions {
                    order,
                    ..EmuOptions::default()
                }),
            )
        })
        .collect();
    let mut skipped = Vec::new();
    match KernelDevice::cuda(0) {
        Ok(cuda) => devices.push(("cuda".to_string(), cuda)),
        Err(why) if std::env::var_os(REQUIRE_CUDA_VAR).is_some() => {
            return Err(format!("{op}: {REQUIRE_CUDA_VAR} is set but {why}"));
        }
        Err(why) => {
            let line = format!("{op}: cuda skipped: {why}");
            println!("{line}");
            skipped.push(line);
        }
    }
    Ok((devices, skipped))
}

/// One equivalence check of an op; see the module doc.
pub struct Equivalence {
    op: String,
    tolerance: f64,
    floor_fraction: f64,
}

impl Equivalence {
    pub fn new(op: &str) -> Equivalence {
        Equivalence {
            op: op.to_string(),
            tolerance: 1e-6,
            floor_fraction: 1e-3,
        }
    }

    /// Largest accepted relative error; justify it in one line where you set it.
    pub fn tolerance(self, tolerance: f64) -> Equivalence {
        Equivalence { tolerance, ..self }
    }

    /// Elements smaller than this fraction of the output's largest are judged against it.
    pub fn floor_fraction(self, floor_fraction: f64) -> Equivalence {
        Equivalence {
            floor_fraction,
            ..self
        }
    }

    /// Runs `op` on every device for every shape, with inputs from `make_inputs`, against
    /// `op` on the CPU. Panics with the seed, shape and device on the first failure: an error
    /// above the tolerance, a NaN or infinity in the result or the reference (index named), an
    /// empty output, or a kernel device on which the op launched no kernel at all.
    pub fn run<S: Debug, I>(
        &self,
        shapes: &[S],
        make_inputs: impl Fn(&S, &mut Rng) -> I,
        op: impl Fn(&Device, &I) -> Result<Vec<f32>, DeviceError>,
    ) {
        let report = self
            .check(shapes, make_inputs, op)
            .unwrap_or_else(|e| panic!("{e}"));
        println!("{report}");
        append_to_report(&report);
    }

    /// As [`Equivalence::run`], returning the failure instead of panicking, and on success the
    /// report (skipped devices, then the summary line ending in `kernels: <names>`, the
    /// kernels launched; CI checks that every kernel of `kernels/*.cu` appears there).
    pub fn check<S: Debug, I>(
        &self,
        shapes: &[S],
        make_inputs: impl Fn(&S, &mut Rng) -> I,
        op: impl Fn(&Device, &I) -> Result<Vec<f32>, DeviceError>,
    ) -> Result<String, String> {
        let seed = test_seed(&self.op);
        let op_name = &self.op;
        if shapes.is_empty() {
            return Err(format!("{op_name}: no shapes to check"));
        }
        let (kernel_devices, mut skipped) = kernel_devices(op_name)?;
        let devices: Vec<(String, Device)> = kernel_devices
            .into_iter()
            .map(|(name, device)| (name, Device::Kernels(device)))
            .collect();
        let scale = ErrorScale::relative(self.floor_fraction);
        let mut worst_per_device: Vec<f64> = vec![0.0; devices.len()];
        let mut rng = Rng::new(seed);
        for shape in shapes {
            let at =
                |name: &str| format!("{op_name}: seed {seed:#x}, shape {shape:?}, device {name}");
            let inputs = make_inputs(shape, &mut rng);
            let want = op(&Device::Cpu, &inputs)
                .map_err(|e| format!("{}: the CPU reference failed: {e}", at("cpu")))?;
            for (slot, (name, device)) in devices.iter().enumerate() {
                let got = op(device, &inputs).map_err(|e| format!("{}: {e}", at(name)))?;
                let worst =
                    worst_error(&got, &want, scale).map_err(|e| format!("{}: {e}", at(name)))?;
                if worst.error > self.tolerance {
                    return Err(format!(
                        "{}: relative error {:.3e} > tolerance {:.1e} at element {} (got {}, CPU reference {})",
                        at(name), worst.error, self.tolerance, worst.index, worst.got as f32, worst.want as f32
                    ));
                }
                worst_per_device[slot] = worst_per_device[slot].max(worst.error);
            }
        }
        let mut kernels = std::collections::BTreeSet::new();
        for (name, device) in &devices {
            let Device::Kernels(k) = device else { continue };
            let launched = k.launched_kernels();
            if launched.is_empty() {
                return Err(format!(
                    "{op_name}: seed {seed:#x}: no kernel was launched on {name}, so nothing was checked there (does the op fall back to the CPU?)"
                ));
            }
            kernels.extend(launched);
        }
        let summary: Vec<String> = devices
            .iter()
            .zip(&worst_per_device)
            .map(|((name, _), worst)| format!("{name} worst relative error {worst:.2e}"))
            .collect();
        let line = format!(
            "{op_name}: {} shapes, tolerance {:.1e}, seed {seed:#x}: {}; kernels: {}",
            shapes.len(),
            self.tolerance,
            summary.join(", "),
            kernels.into_iter().collect::<Vec<_>>().join(", ")
        );
        skipped.push(line);
        Ok(skipped.join("\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::axpy::axpy;

    #[test]
    fn relative_error_is_judged_against_a_floor_near_zero() {
        // 1e-9 off at a value of 0 in an output whose scale is 1: 1e-9 / (1e-3 · 1) = 1e-6.
        let worst = worst_relative_error(&[1.0, 1e-9], &[1.0, 0.0], 1e-3)
            .unwrap()
            .unwrap();
        assert_eq!(worst.index, 1);
        assert!((worst.relative_error - 1e-6).abs() < 1e-12);
    }

    #[test]
    fn nan_on_either_side_empty_outputs_and_length_mismatches_are_errors() {
        for (got, want) in [
            (vec![1.0, f32::NAN], vec![1.0, 2.0]),
            (vec![1.0, 2.0], vec![1.0, f32::NAN]),
            (vec![1.0, f32::NAN], vec![1.0, f32::NAN]),
        ] {
            let e = worst_relative_error(&got, &want, 1e-3).unwrap_err();
            assert!(e.contains("element 1"), "{e}");
        }
        assert!(worst_relative_error(&[], &[], 1e-3).is_err());
        assert!(worst_relative_error(&[1.0], &[1.0, 2.0], 1e-3).is_err());
    }

    fn axpy_inputs(n: &usize, rng: &mut Rng) -> (f32, Vec<f32>, Vec<f32>) {
        (
            rng.uniform_f32(),
            rng.vec_f32(*n, -1.0, 1.0),
            rng.vec_f32(*n, -1.0, 1.0),
        )
    }

    #[test]
    fn a_correct_op_passes_and_its_kernels_are_reported() {
        let report = Equivalence::new("axpy")
            .tolerance(1e-6)
            .check(&[33usize], axpy_inputs, |device, (a, x, y)| {
                axpy(device, *a, x, y)
            })
            .unwrap();
        assert!(report.ends_with("; kernels: axpy"), "{report}");
    }

    #[test]
    fn a_nan_in_the_kernel_output_fails_even_where_the_reference_is_nan_too() {
        // The planted bug: the kernel devices' result has a NaN at element 5.
        let nan_on_kernels = |device: &Device, inputs: &(f32, Vec<f32>, Vec<f32>)| {
            let (a, x, y) = inputs;
            let mut out = axpy(device, *a, x, y)?;
            if matches!(device, Device::Kernels(_)) {
                out[5] = f32::NAN;
            }
            Ok(out)
        };
        let e = Equivalence::new("planted NaN")
            .check(&[33usize], axpy_inputs, nan_on_kernels)
            .unwrap_err();
        assert!(e.contains("element 5 is not finite in the result"), "{e}");
        // NaN in both: not equal, a failure.
        let nan_everywhere = |device: &Device, inputs: &(f32, Vec<f32>, Vec<f32>)| {
            let (a, x, y) = inputs;
            let mut out = axpy(device, *a, x, y)?;
            out[5] = f32::NAN;
            Ok(out)
        };
        let e = Equivalence::new("NaN in both")
            .check(&[33usize], axpy_inputs, nan_everywhere)
            .unwrap_err();
        assert!(e.contains("element 5 is not finite"), "{e}");
    }

    #[test]
    fn an_empty_output_and_an_op_that_launches_no_kernel_fail() {
        let e = Equivalence::new("empty")
            .check(&[0usize], |_, _| (), |_, _| Ok(Vec::new()))
            .unwrap_err();
        assert!(e.contains("empty"), "{e}");
        let e = Equivalence::new("cpu everywhere")
            .check(
                &[3usize],
                |&n, rng| rng.vec_f32(n, 0.0, 1.0),
                |_, x| Ok(x.clone()),
            )
            .unwrap_err();
        assert!(e.contains("no kernel was launched"), "{e}");
    }
}

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
//! fails instead, as in the GPU check). Every buffer a kernel device
//! allocates starts as NaN, so an output element that is never written fails. It prints the
//! worst relative error per device and panics when one exceeds the tolerance or an op fails.
//!
//! An op with several outputs (a backward pass) returns them concatenated into one `Vec<f32>`.
//!
//! Relative error of an element: |got − want| / max(|want|, floor), where floor is
//! `floor_fraction` (default 1e-3) times the largest |want| of the output, so that elements near
//! zero are judged against the output's scale rather than blowing up.

use std::fmt::Debug;
use std::io::Write;

use super::{Device, DeviceError, EmuOptions, KernelDevice, ThreadOrder};

/// The environment variable that replays a run: `MTOSI_TEST_SEED=<seed printed by the failure>`.
pub const SEED_VAR: &str = "MTOSI_TEST_SEED";
/// When set, every harness run appends its summary line to this file (CI prints it).
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

/// The worst element of one comparison.
#[derive(Clone, Debug)]
pub struct WorstError {
    pub relative_error: f64,
    pub index: usize,
    pub got: f32,
    pub want: f32,
}

/// Worst relative error of `got` against `want` (see the module doc); `Err` on a length
/// mismatch. A NaN or infinity where the reference is finite counts as an infinite error.
pub fn worst_relative_error(
    got: &[f32],
    want: &[f32],
    floor_fraction: f64,
) -> Result<Option<WorstError>, String> {
    if got.len() != want.len() {
        return Err(format!(
            "output has {} elements, the reference {}",
            got.len(),
            want.len()
        ));
    }
    let scale = want
        .iter()
        .filter(|w| w.is_finite())
        .fold(0.0f64, |m, w| m.max(w.abs() as f64));
    let floor = (scale * floor_fraction).max(f64::MIN_POSITIVE);
    let mut worst: Option<WorstError> = None;
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        let error = if g.is_nan() && w.is_nan() || g == w {
            0.0
        } else if !g.is_finite() || !w.is_finite() {
            f64::INFINITY
        } else {
            (g as f64 - w as f64).abs() / (w.abs() as f64).max(floor)
        };
        if worst
            .as_ref()
            .is_none_or(|worst| error > worst.relative_error)
        {
            worst = Some(WorstError {
                relative_error: error,
                index,
                got: g,
                want: w,
            });
        }
    }
    Ok(worst)
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
    /// `op` on the CPU. Panics with the seed, shape and device on the first failure.
    pub fn run<S: Debug, I>(
        &self,
        shapes: &[S],
        make_inputs: impl Fn(&S, &mut Rng) -> I,
        op: impl Fn(&Device, &I) -> Result<Vec<f32>, DeviceError>,
    ) {
        let seed = seed_from_env();
        println!(
            "{}: seed {seed:#x} (replay with {SEED_VAR}={seed:#x})",
            self.op
        );
        let mut devices: Vec<(String, Device)> = [ThreadOrder::Forward, ThreadOrder::Reverse]
            .into_iter()
            .map(|order| {
                let name = format!(
                    "emu({})",
                    if order == ThreadOrder::Forward {
                        "forward"
                    } else {
                        "reverse"
                    }
                );
                (
                    name,
                    Device::emu(EmuOptions {
                        order,
                        ..EmuOptions::default()
                    }),
                )
            })
            .collect();
        let mut skipped = Vec::new();
        match KernelDevice::cuda(0) {
            Ok(cuda) => devices.push(("cuda".to_string(), Device::Kernels(cuda))),
            Err(why) if std::env::var_os(REQUIRE_CUDA_VAR).is_some() => {
                panic!("{}: {REQUIRE_CUDA_VAR} is set but {why}", self.op)
            }
            Err(why) => {
                let line = format!("{}: cuda skipped: {why}", self.op);
                println!("{line}");
                skipped.push(line);
            }
        }
        let mut worst_per_device: Vec<f64> = vec![0.0; devices.len()];
        let mut rng = Rng::new(seed);
        for shape in shapes {
            let inputs = make_inputs(shape, &mut rng);
            let want = op(&Device::Cpu, &inputs).unwrap_or_else(|e| {
                panic!(
                    "{}: seed {seed:#x}, shape {shape:?}: the CPU reference failed: {e}",
                    self.op
                )
            });
            for (slot, (name, device)) in devices.iter().enumerate() {
                let got = op(device, &inputs).unwrap_or_else(|e| {
                    panic!(
                        "{}: seed {seed:#x}, shape {shape:?}, device {name}: {e}",
                        self.op
                    )
                });
                let worst =
                    worst_relative_error(&got, &want, self.floor_fraction).unwrap_or_else(|e| {
                        panic!(
                            "{}: seed {seed:#x}, shape {shape:?}, device {name}: {e}",
                            self.op
                        )
                    });
                if let Some(worst) = worst {
                    if worst.relative_error > self.tolerance {
                        panic!(
                            "{}: seed {seed:#x}, shape {shape:?}, device {name}: relative error {:.3e} > tolerance {:.1e} at element {} (got {}, CPU reference {})",
                            self.op, worst.relative_error, self.tolerance, worst.index, worst.got, worst.want
                        );
                    }
                    worst_per_device[slot] = worst_per_device[slot].max(worst.relative_error);
                }
            }
        }
        let summary: Vec<String> = devices
            .iter()
            .zip(&worst_per_device)
            .map(|((name, _), worst)| format!("{name} worst relative error {worst:.2e}"))
            .collect();
        let line = format!(
            "{}: {} shapes, tolerance {:.1e}, seed {seed:#x}: {}",
            self.op,
            shapes.len(),
            self.tolerance,
            summary.join(", ")
        );
        println!("{line}");
        if let Ok(path) = std::env::var(REPORT_VAR) {
            if let Ok(mut file) = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
            {
                for l in skipped.iter().chain(std::iter::once(&line)) {
                    let _ = writeln!(file, "{l}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn nan_output_is_an_infinite_error_and_lengths_must_match() {
        let worst = worst_relative_error(&[1.0, f32::NAN], &[1.0, 2.0], 1e-3)
            .unwrap()
            .unwrap();
        assert!(worst.relative_error.is_infinite());
        assert!(worst_relative_error(&[1.0], &[1.0, 2.0], 1e-3).is_err());
    }
}

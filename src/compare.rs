//! The one way results are held against references, in the tests and in the equivalence
//! harness: the worst element's error, where a NaN or an infinity on either side is a failure
//! naming its index (never a silently skipped element, as `f32::max` and `e > worst` skip NaN),
//! and an empty or mis-sized output is an error.
//!
//! Error of element i: `|got_i − want_i| / max(|want_i|, floor_fraction · peak, min_scale)`,
//! where `peak` is the largest `|want|`. [`ErrorScale::relative`] (the harness: floor 1e-3)
//! judges each element relative to itself, except near zero; [`ErrorScale::of_peak`] measures
//! every error as a fraction of the reference's largest magnitude (floor_fraction 1).
//!
//! ```
//! use mtosi::compare::{check_close, ErrorScale};
//! let worst = check_close("demo", &[1.0f32, 2.0], &[1.0f32, 2.0001], ErrorScale::of_peak(), 1e-4).unwrap();
//! assert_eq!(worst.index, 1);
//! assert!(check_close("demo", &[f32::NAN], &[f32::NAN], ErrorScale::of_peak(), 1.0).is_err());
//! ```

use std::fmt;

/// How an element's error is scaled; see the module doc.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ErrorScale {
    /// Fraction of the reference's peak below which an element is judged against that floor.
    pub floor_fraction: f64,
    /// Smallest denominator, for references that may be all (near) zero.
    pub min_scale: f64,
}

impl ErrorScale {
    /// Relative error per element, judged against `floor_fraction` of the peak near zero.
    pub const fn relative(floor_fraction: f64) -> ErrorScale {
        ErrorScale {
            floor_fraction,
            min_scale: 0.0,
        }
    }

    /// Every error as a fraction of the reference's largest magnitude.
    pub const fn of_peak() -> ErrorScale {
        ErrorScale {
            floor_fraction: 1.0,
            min_scale: 0.0,
        }
    }

    /// As [`ErrorScale::of_peak`], with the peak taken as at least `min_scale`.
    pub const fn of_peak_at_least(min_scale: f64) -> ErrorScale {
        ErrorScale {
            floor_fraction: 1.0,
            min_scale,
        }
    }
}

/// The worst element of a comparison that found every element finite.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Worst {
    /// Its scaled error (see the module doc).
    pub error: f64,
    pub index: usize,
    pub got: f64,
    pub want: f64,
    /// The reference's largest magnitude.
    pub peak: f64,
}

/// Why two outputs could not be compared at all.
#[derive(Clone, Debug, PartialEq)]
pub enum CompareError {
    /// The lengths differ.
    Length { got: usize, want: usize },
    /// Both are empty: a check of nothing is not a check.
    Empty,
    /// A NaN or infinity in the result (`in_result`) or in the reference.
    NotFinite {
        index: usize,
        got: f64,
        want: f64,
        in_result: bool,
    },
}

impl fmt::Display for CompareError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CompareError::Length { got, want } => {
                write!(f, "output has {got} elements, the reference {want}")
            }
            CompareError::Empty => write!(f, "the output is empty: nothing was compared"),
            CompareError::NotFinite {
                index,
                got,
                want,
                in_result,
            } => write!(
                f,
                "element {index} is not finite in the {} (got {got}, reference {want})",
                if *in_result { "result" } else { "reference" }
            ),
        }
    }
}

impl std::error::Error for CompareError {}

/// A value that can be compared: widened to f64 without loss.
pub trait Value: Copy {
    fn to_f64(self) -> f64;
}

impl Value for f32 {
    fn to_f64(self) -> f64 {
        self as f64
    }
}

impl Value for f64 {
    fn to_f64(self) -> f64 {
        self
    }
}

/// The worst element of `got` against `want`; see the module doc. A non-finite element on
/// either side, a length mismatch or an empty output is an error.
pub fn worst_error<G: Value, W: Value>(
    got: &[G],
    want: &[W],
    scale: ErrorScale,
) -> Result<Worst, CompareError> {
    if got.len() != want.len() {
        return Err(CompareError::Length {
            got: got.len(),
            want: want.len(),
        });
    }
    if got.is_empty() {
        return Err(CompareError::Empty);
    }
    let mut peak = 0.0f64;
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        if !w.is_finite() || !g.is_finite() {
            return Err(CompareError::NotFinite {
                index,
                got: g,
                want: w,
                in_result: !g.is_finite(),
            });
        }
        peak = peak.max(w.abs());
    }
    let floor = (peak * scale.floor_fraction)
        .max(scale.min_scale)
        .max(f64::MIN_POSITIVE);
    let mut worst = Worst {
        error: -1.0,
        index: 0,
        got: 0.0,
        want: 0.0,
        peak,
    };
    for (index, (&g, &w)) in got.iter().zip(want).enumerate() {
        let (g, w) = (g.to_f64(), w.to_f64());
        let error = (g - w).abs() / w.abs().max(floor);
        // Both finite, so `error` is a number and `>` sees every element.
        if error > worst.error {
            worst = Worst {
                error,
                index,
                got: g,
                want: w,
                peak,
            };
        }
    }
    Ok(worst)
}

/// [`worst_error`] held against `tolerance`: the worst element, or a message naming `what`,
/// the index, both values, the error and the tolerance.
pub fn check_close<G: Value, W: Value>(
    what: &str,
    got: &[G],
    want: &[W],
    scale: ErrorScale,
    tolerance: f64,
) -> Result<Worst, String> {
    let worst = worst_error(got, want, scale).map_err(|e| format!("{what}: {e}"))?;
    if worst.error > tolerance {
        return Err(format!(
            "{what}: error {:.3e} > tolerance {tolerance:.1e} at element {} (got {}, reference {}, reference peak {:.4e})",
            worst.error, worst.index, worst.got, worst.want, worst.peak
        ));
    }
    Ok(worst)
}

/// [`check_close`] for tests: prints the worst element and panics with the message on failure.
#[track_caller]
pub fn assert_close<G: Value, W: Value>(
    what: &str,
    got: &[G],
    want: &[W],
    scale: ErrorScale,
    tolerance: f64,
) -> Worst {
    match check_close(what, got, want, scale, tolerance) {
        Ok(worst) => {
            println!(
                "{what}: worst error {:.3e} at element {} (got {}, reference {}), peak {:.4e}, tolerance {tolerance:.1e}",
                worst.error, worst.index, worst.got, worst.want, worst.peak
            );
            worst
        }
        Err(message) => panic!("{message}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nan_anywhere_fails_with_its_index() {
        for (got, want, in_result) in [
            (vec![1.0f32, f32::NAN, 3.0], vec![1.0f32, 2.0, 3.0], true),
            (vec![1.0, 2.0, 3.0], vec![1.0, f32::NAN, 3.0], false),
            (vec![1.0, f32::NAN, 3.0], vec![1.0, f32::NAN, 3.0], true),
            (
                vec![1.0, f32::INFINITY, 3.0],
                vec![1.0, f32::INFINITY, 3.0],
                true,
            ),
        ] {
            match worst_error(&got, &want, ErrorScale::of_peak()) {
                Err(CompareError::NotFinite {
                    index,
                    in_result: r,
                    ..
                }) => assert_eq!((index, r), (1, in_result), "{got:?} vs {want:?}"),
                other => panic!("{got:?} vs {want:?}: {other:?}"),
            }
        }
        // An all-NaN result, which a max-fold reports as 0.
        let message = check_close(
            "all NaN",
            &[f32::NAN; 4],
            &[1.0f32; 4],
            ErrorScale::relative(1e-3),
            1e9,
        )
        .unwrap_err();
        assert!(message.contains("element 0 is not finite"), "{message}");
    }

    #[test]
    fn empty_and_mismatched_outputs_are_errors() {
        let empty: [f32; 0] = [];
        assert_eq!(
            worst_error(&empty, &empty, ErrorScale::of_peak()),
            Err(CompareError::Empty)
        );
        assert_eq!(
            worst_error(&[1.0f32], &[1.0f32, 2.0], ErrorScale::of_peak()),
            Err(CompareError::Length { got: 1, want: 2 })
        );
    }

    #[test]
    fn relative_error_is_judged_against_a_floor_near_zero() {
        // 1e-9 off at a value of 0 in an output whose scale is 1: 1e-9 / (1e-3 · 1) = 1e-6.
        let worst =
            worst_error(&[1.0f32, 1e-9], &[1.0f32, 0.0], ErrorScale::relative(1e-3)).unwrap();
        assert_eq!(worst.index, 1);
        assert!((worst.error - 1e-6).abs() < 1e-12);
        // Of the peak: 0.5 off at 1 with a peak of 4 is 0.125.
        let worst = worst_error(&[4.0f32, 1.5], &[4.0f32, 1.0], ErrorScale::of_peak()).unwrap();
        assert_eq!((worst.index, worst.error), (1, 0.125));
        // A zero reference is judged against min_scale.
        let worst = worst_error(
            &[0.0f64, 1e-3],
            &[0.0f64, 0.0],
            ErrorScale::of_peak_at_least(1e-3),
        )
        .unwrap();
        assert_eq!((worst.index, worst.error), (1, 1.0));
    }

    #[test]
    fn exact_agreement_is_zero_error_and_over_tolerance_fails() {
        let worst = assert_close(
            "same",
            &[0.0f32, 0.0],
            &[0.0f32, 0.0],
            ErrorScale::of_peak(),
            0.0,
        );
        assert_eq!(worst.error, 0.0);
        let message = check_close(
            "off",
            &[1.0f32, 2.5],
            &[1.0f32, 2.0],
            ErrorScale::of_peak(),
            0.1,
        )
        .unwrap_err();
        assert!(
            message.contains("at element 1") && message.contains("off:"),
            "{message}"
        );
    }
}

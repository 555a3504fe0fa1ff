//! Frame-level metrics, `mir_eval.multipitch` 0.8 function for function.
//!
//! Each side is a list of time stamps (s) with the frequencies (Hz) sounding at each. The
//! estimate is first resampled onto the reference's times when the two grids differ
//! ([`resample_multipitch`], scipy's nearest-neighbour `interp1d` as mir_eval calls it), the
//! frequencies become fractional MIDI numbers, and in every frame reference and estimate are
//! matched within half a semitone (and, for the Chroma scores, within half a semitone modulo
//! an octave).

use super::util::{count_matches, np_mod, EventDistance};
use super::{MetricsError, Scores, Side};

/// The largest time stamp mir_eval accepts (s).
pub const MAX_TIME: f64 = 30000.0;
/// The largest frequency mir_eval accepts (Hz).
pub const MAX_FREQ: f64 = 5000.0;
/// The smallest frequency mir_eval accepts (Hz).
pub const MIN_FREQ: f64 = 20.0;
/// mir_eval's matching window in semitones.
pub const DEFAULT_WINDOW: f64 = 0.5;

/// `mir_eval.multipitch.validate`: times finite, at most [`MAX_TIME`], non-decreasing; one
/// frequency list per time; every frequency within [`MIN_FREQ`, `MAX_FREQ`]. (mir_eval checks
/// `|f|`, so it lets negative frequencies through, which then count as unmatchable NaN MIDI
/// numbers; they are refused here.) Returns mir_eval's warnings.
pub fn validate(
    ref_times: &[f64],
    ref_freqs: &[Vec<f64>],
    est_times: &[f64],
    est_freqs: &[Vec<f64>],
) -> Result<Vec<&'static str>, MetricsError> {
    let mut warnings = Vec::new();
    for (side, times, freqs) in [
        (Side::Reference, ref_times, ref_freqs),
        (Side::Estimate, est_times, est_freqs),
    ] {
        validate_times(side, times)?;
        if times.len() != freqs.len() {
            return Err(MetricsError::invalid_whole(
                side,
                format!(
                    "{} time stamps but {} frequency lists",
                    times.len(),
                    freqs.len()
                ),
            ));
        }
        for (index, frame) in freqs.iter().enumerate() {
            if let Some(&f) = frame.iter().find(|f| !(MIN_FREQ..=MAX_FREQ).contains(*f)) {
                return Err(MetricsError::invalid(
                    side,
                    "frame",
                    index,
                    format!("frequency {f} Hz is outside {MIN_FREQ}..={MAX_FREQ} Hz (did you supply Hz?)"),
                ));
            }
        }
    }
    if ref_times.is_empty() {
        warnings.push("Reference times are empty.");
    }
    if ref_freqs.is_empty() {
        warnings.push("Reference frequencies are empty.");
    }
    if est_times.is_empty() {
        warnings.push("Estimated times are empty.");
    }
    if est_freqs.is_empty() {
        warnings.push("Estimated frequencies are empty.");
    }
    Ok(warnings)
}

/// `mir_eval.util.validate_events` for time stamps, plus finiteness.
fn validate_times(side: Side, times: &[f64]) -> Result<(), MetricsError> {
    for (index, &t) in times.iter().enumerate() {
        if !t.is_finite() {
            return Err(MetricsError::invalid(
                side,
                "frame",
                index,
                format!("time {t} is not finite"),
            ));
        }
        if t > MAX_TIME {
            return Err(MetricsError::invalid(
                side,
                "frame",
                index,
                format!(
                    "time {t} s is beyond the maximum of {MAX_TIME} s (did you supply seconds?)"
                ),
            ));
        }
        if index > 0 && t < times[index - 1] {
            return Err(MetricsError::invalid(
                side,
                "frame",
                index,
                format!(
                    "time {t} s comes before the previous {} s; times must increase",
                    times[index - 1]
                ),
            ));
        }
    }
    Ok(())
}

/// `mir_eval.multipitch.resample_multipitch`: the frequency lists of `times` at
/// `target_times`, nearest neighbour as `scipy.interpolate.interp1d(kind="nearest",
/// bounds_error=False)`: midpoints `t[i]/2 + t[i+1]/2` decide, a tie goes to the earlier
/// frame, and targets outside `[t[0], t[-1]]` get no frequencies.
pub fn resample_multipitch(
    times: &[f64],
    frequencies: &[Vec<f64>],
    target_times: &[f64],
) -> Vec<Vec<f64>> {
    resample_indices(times, target_times)
        .into_iter()
        .map(|index| index.map_or_else(Vec::new, |i| frequencies[i].clone()))
        .collect()
}

/// For each target time, the frame of `times` [`resample_multipitch`] takes, or `None`.
fn resample_indices(times: &[f64], target_times: &[f64]) -> Vec<Option<usize>> {
    if times.is_empty() {
        return vec![None; target_times.len()];
    }
    let bounds: Vec<f64> = times.windows(2).map(|w| w[1] / 2.0 + w[0] / 2.0).collect();
    let (first, last) = (times[0], times[times.len() - 1]);
    target_times
        .iter()
        .map(|&t| {
            // searchsorted(side="left") clipped to the last index; outside the range: the fill.
            (first..=last)
                .contains(&t)
                .then(|| bounds.partition_point(|&b| b < t).min(times.len() - 1))
        })
        .collect()
}

/// `mir_eval.multipitch.frequencies_to_midi`: `69 + 12 log2(f / 440)` per frequency.
pub fn frequencies_to_midi(frequencies: &[Vec<f64>]) -> Vec<Vec<f64>> {
    frequencies
        .iter()
        .map(|frame| frame.iter().map(|&f| hz_to_midi(f)).collect())
        .collect()
}

fn hz_to_midi(frequency_hz: f64) -> f64 {
    69.0 + 12.0 * (frequency_hz / 440.0).log2()
}

/// `mir_eval.multipitch.midi_to_chroma`: MIDI numbers modulo 12 (numpy's `mod`).
pub fn midi_to_chroma(frequencies_midi: &[Vec<f64>]) -> Vec<Vec<f64>> {
    frequencies_midi
        .iter()
        .map(|frame| frame.iter().map(|&m| np_mod(m, 12.0)).collect())
        .collect()
}

/// `mir_eval.multipitch.compute_num_true_positives`: per frame, the size of a maximum matching
/// within `window` semitones (around the octave circle when `chroma`). Frames beyond the
/// shorter list are not counted, as `zip` does.
pub fn compute_num_true_positives(
    ref_freqs: &[Vec<f64>],
    est_freqs: &[Vec<f64>],
    window: f64,
    chroma: bool,
) -> Vec<usize> {
    let distance = if chroma {
        EventDistance::ModN(12.0)
    } else {
        EventDistance::Absolute
    };
    let mut true_positives = vec![0; ref_freqs.len()];
    for (i, (r, e)) in ref_freqs.iter().zip(est_freqs).enumerate() {
        true_positives[i] = count_matches(r, e, window, distance);
    }
    true_positives
}

/// `mir_eval.multipitch.compute_accuracy`: (precision, recall, accuracy) from per-frame counts.
pub fn compute_accuracy(
    true_positives: &[usize],
    n_ref: &[usize],
    n_est: &[usize],
) -> (f64, f64, f64) {
    let tp: usize = true_positives.iter().sum();
    let est: usize = n_est.iter().sum();
    let reference: usize = n_ref.iter().sum();
    let precision = if est > 0 { tp as f64 / est as f64 } else { 0.0 };
    let recall = if reference > 0 {
        tp as f64 / reference as f64
    } else {
        0.0
    };
    let denominator: usize = (0..n_ref.len())
        .map(|i| n_est.get(i).copied().unwrap_or(0) + n_ref[i] - true_positives[i])
        .sum();
    let accuracy = if denominator > 0 {
        tp as f64 / denominator as f64
    } else {
        0.0
    };
    (precision, recall, accuracy)
}

/// `mir_eval.multipitch.compute_err_score`: (substitution, miss, false alarm, total) errors,
/// each over the number of reference frequencies; all 0 when there are none.
pub fn compute_err_score(
    true_positives: &[usize],
    n_ref: &[usize],
    n_est: &[usize],
) -> (f64, f64, f64, f64) {
    let reference: usize = n_ref.iter().sum();
    if reference == 0 {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let (mut sub, mut miss, mut false_alarm, mut total) = (0, 0, 0, 0);
    for i in 0..n_ref.len() {
        let (r, e, tp) = (n_ref[i], n_est[i], true_positives[i]);
        sub += r.min(e) - tp;
        miss += r.saturating_sub(e);
        false_alarm += e.saturating_sub(r);
        total += r.max(e) - tp;
    }
    let over = |count: usize| count as f64 / reference as f64;
    (over(sub), over(miss), over(false_alarm), over(total))
}

/// `numpy.allclose(a, b)` (rtol 1e-5, atol 1e-8), for arrays of one length.
fn allclose(a: &[f64], b: &[f64]) -> bool {
    a.iter()
        .zip(b)
        .all(|(&x, &y)| (x - y).abs() <= 1e-8 + 1e-5 * y.abs())
}

/// `mir_eval.multipitch.evaluate`: the whole dictionary, keys in mir_eval's order, with
/// `window` semitones (mir_eval: [`DEFAULT_WINDOW`]).
pub fn evaluate(
    ref_times: &[f64],
    ref_freqs: &[Vec<f64>],
    est_times: &[f64],
    est_freqs: &[Vec<f64>],
    window: f64,
) -> Result<Scores, MetricsError> {
    if !(window.is_finite() && window >= 0.0) {
        return Err(MetricsError::Options(format!(
            "window {window} semitones must be finite and non-negative"
        )));
    }
    let mut scores = Scores::default();
    validate(ref_times, ref_freqs, est_times, est_freqs)?
        .into_iter()
        .for_each(|w| scores.warn(w));
    // The estimate frame each reference frame is compared with (itself, or resampled).
    let est_frame: Vec<Option<usize>> = if est_times.len() != ref_times.len()
        || !allclose(est_times, ref_times)
    {
        scores.warn("Estimate times not equal to reference times. Resampling to common time base.");
        resample_indices(est_times, ref_times)
    } else {
        (0..ref_times.len()).map(Some).collect()
    };
    // Frame by frame, as frequencies_to_midi, midi_to_chroma and compute_num_true_positives
    // do over the whole lists, without building them.
    let frames = ref_freqs.len();
    let (mut n_ref, mut n_est) = (vec![0; frames], vec![0; frames]);
    let (mut tp, mut tp_chroma) = (vec![0; frames], vec![0; frames]);
    let (mut ref_midi, mut est_midi) = (Vec::new(), Vec::new());
    for i in 0..frames {
        let est: &[f64] = est_frame[i].map_or(&[], |k| &est_freqs[k]);
        ref_midi.clear();
        ref_midi.extend(ref_freqs[i].iter().map(|&f| hz_to_midi(f)));
        est_midi.clear();
        est_midi.extend(est.iter().map(|&f| hz_to_midi(f)));
        n_ref[i] = ref_midi.len();
        n_est[i] = est_midi.len();
        tp[i] = count_matches(&ref_midi, &est_midi, window, EventDistance::Absolute);
        // Chroma values are the MIDI numbers mod 12, taken mod 12 again by the distance.
        ref_midi.iter_mut().for_each(|m| *m = np_mod(*m, 12.0));
        est_midi.iter_mut().for_each(|m| *m = np_mod(*m, 12.0));
        tp_chroma[i] = count_matches(&ref_midi, &est_midi, window, EventDistance::ModN(12.0));
    }
    if n_est.iter().sum::<usize>() == 0 {
        scores.warn("Estimate frequencies are all empty.");
    }
    if n_ref.iter().sum::<usize>() == 0 {
        scores.warn("Reference frequencies are all empty.");
    }
    let (precision, recall, accuracy) = compute_accuracy(&tp, &n_ref, &n_est);
    let (sub, miss, false_alarm, total) = compute_err_score(&tp, &n_ref, &n_est);
    let (c_precision, c_recall, c_accuracy) = compute_accuracy(&tp_chroma, &n_ref, &n_est);
    let (c_sub, c_miss, c_false_alarm, c_total) = compute_err_score(&tp_chroma, &n_ref, &n_est);
    for (name, value) in [
        ("Precision", precision),
        ("Recall", recall),
        ("Accuracy", accuracy),
        ("Substitution Error", sub),
        ("Miss Error", miss),
        ("False Alarm Error", false_alarm),
        ("Total Error", total),
        ("Chroma Precision", c_precision),
        ("Chroma Recall", c_recall),
        ("Chroma Accuracy", c_accuracy),
        ("Chroma Substitution Error", c_sub),
        ("Chroma Miss Error", c_miss),
        ("Chroma False Alarm Error", c_false_alarm),
        ("Chroma Total Error", c_total),
    ] {
        scores.push(name, value);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resampling_takes_the_nearest_frame_and_the_earlier_on_a_tie() {
        let times = [0.0, 1.0, 2.0];
        let freqs = vec![vec![100.0], vec![200.0], vec![300.0]];
        let resampled = resample_multipitch(&times, &freqs, &[-0.1, 0.0, 0.5, 0.51, 1.6, 2.0, 2.1]);
        assert_eq!(
            resampled,
            vec![
                vec![],
                vec![100.0],
                vec![100.0],
                vec![200.0],
                vec![300.0],
                vec![300.0],
                vec![]
            ]
        );
    }

    #[test]
    fn octave_errors_count_only_for_chroma() {
        let times = [0.0, 0.01];
        let reference = vec![vec![440.0], vec![220.0, 330.0]];
        let estimate = vec![vec![880.0], vec![220.0]];
        let scores = evaluate(&times, &reference, &times, &estimate, DEFAULT_WINDOW).unwrap();
        assert_eq!(scores.get("Precision"), Some(0.5));
        assert_eq!(scores.get("Recall"), Some(1.0 / 3.0));
        assert_eq!(scores.get("Chroma Precision"), Some(1.0));
        assert_eq!(scores.get("Miss Error"), Some(1.0 / 3.0));
        assert_eq!(scores.get("Substitution Error"), Some(1.0 / 3.0));
        assert!(scores.warnings.is_empty());
    }

    #[test]
    fn frequencies_below_20_hz_are_refused_with_the_frame() {
        let err = evaluate(&[0.0, 0.1], &[vec![], vec![10.0]], &[], &[], DEFAULT_WINDOW)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("reference frame 2") && err.contains("10 Hz"),
            "{err}"
        );
    }

    #[test]
    fn decreasing_times_are_refused() {
        let err = evaluate(&[], &[], &[0.2, 0.1], &[vec![], vec![]], DEFAULT_WINDOW)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("estimate frame 2") && err.contains("increase"),
            "{err}"
        );
    }
}

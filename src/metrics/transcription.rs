//! Note-level metrics, `mir_eval.transcription` 0.8 function for function.
//!
//! Notes are `[onset, offset]` intervals in seconds with pitches in Hz. A reference and an
//! estimated note match when their onsets are within `onset_tolerance_s` (the distance rounded
//! to 4 decimals first, as mir_eval's `np.around(…, decimals=4)`), their pitches within
//! `pitch_tolerance_cents` (not rounded) and, when `offset_ratio` is set, their offsets within
//! `max(offset_ratio · reference duration, offset_min_tolerance_s)` (rounded likewise). The
//! matched pairs are a maximum bipartite matching, found exactly as mir_eval finds it.

use super::util::{bipartite_match, f_measure, np_around, validate_intervals};
use super::{MetricsError, Scores, Side};

/// mir_eval's `N_DECIMALS`: time distances are rounded to this many decimals before comparing.
pub const N_DECIMALS: i32 = 4;

/// The matching criteria of `mir_eval.transcription`; `Default` is mir_eval's defaults.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct NoteTolerances {
    /// Onsets match within this many seconds (mir_eval: 0.05).
    pub onset_tolerance_s: f64,
    /// Pitches match within this many cents (mir_eval: 50).
    pub pitch_tolerance_cents: f64,
    /// `None`: offsets are ignored. Otherwise offsets match within this fraction of the
    /// reference note's duration (mir_eval: 0.2)…
    pub offset_ratio: Option<f64>,
    /// …or within this many seconds, whichever is larger (mir_eval: 0.05).
    pub offset_min_tolerance_s: f64,
    /// Strict inequalities (`<`) instead of `<=`.
    pub strict: bool,
}

impl Default for NoteTolerances {
    fn default() -> Self {
        NoteTolerances {
            onset_tolerance_s: 0.05,
            pitch_tolerance_cents: 50.0,
            offset_ratio: Some(0.2),
            offset_min_tolerance_s: 0.05,
            strict: false,
        }
    }
}

impl NoteTolerances {
    /// The same tolerances with offsets ignored (`offset_ratio=None`).
    pub fn without_offsets(self) -> Self {
        NoteTolerances {
            offset_ratio: None,
            ..self
        }
    }

    fn hit(&self, distance: f64, tolerance: f64) -> bool {
        if self.strict {
            distance < tolerance
        } else {
            distance <= tolerance
        }
    }

    fn check(&self) -> Result<(), MetricsError> {
        let finite_non_negative = |v: f64| v.is_finite() && v >= 0.0;
        let ok = finite_non_negative(self.onset_tolerance_s)
            && finite_non_negative(self.pitch_tolerance_cents)
            && finite_non_negative(self.offset_min_tolerance_s)
            && self.offset_ratio.is_none_or(finite_non_negative);
        if ok {
            Ok(())
        } else {
            Err(MetricsError::Options(format!(
                "tolerances must be finite and non-negative: {self:?}"
            )))
        }
    }
}

/// `mir_eval.transcription.validate`: intervals valid (see [`validate_intervals`]), one pitch
/// per interval, every pitch finite and positive. Returns mir_eval's warnings.
pub fn validate(
    ref_intervals: &[[f64; 2]],
    ref_pitches: &[f64],
    est_intervals: &[[f64; 2]],
    est_pitches: &[f64],
) -> Result<Vec<&'static str>, MetricsError> {
    let warnings = validate_interval_pair(ref_intervals, est_intervals)?;
    for (side, intervals, pitches) in [
        (Side::Reference, ref_intervals, ref_pitches),
        (Side::Estimate, est_intervals, est_pitches),
    ] {
        if intervals.len() != pitches.len() {
            return Err(MetricsError::invalid_whole(
                side,
                format!(
                    "{} intervals but {} pitches",
                    intervals.len(),
                    pitches.len()
                ),
            ));
        }
        if let Some(index) = pitches.iter().position(|p| !(p.is_finite() && *p > 0.0)) {
            return Err(MetricsError::invalid(
                side,
                "note",
                index,
                format!("pitch {} Hz is not a positive number", pitches[index]),
            ));
        }
    }
    Ok(warnings)
}

/// `mir_eval.transcription.validate_intervals`: both interval lists valid; warns when one is empty.
pub fn validate_interval_pair(
    ref_intervals: &[[f64; 2]],
    est_intervals: &[[f64; 2]],
) -> Result<Vec<&'static str>, MetricsError> {
    let mut warnings = Vec::new();
    if ref_intervals.is_empty() {
        warnings.push("Reference notes are empty.");
    }
    if est_intervals.is_empty() {
        warnings.push("Estimated notes are empty.");
    }
    validate_intervals(Side::Reference, ref_intervals)?;
    validate_intervals(Side::Estimate, est_intervals)?;
    Ok(warnings)
}

/// Which tests a pair of notes must pass.
#[derive(Debug, Clone, Copy)]
struct Criteria {
    onset: bool,
    pitch: bool,
    offset: bool,
}

/// The hit graph of `np.where(hit_matrix)` grouped as mir_eval's loop groups it: estimates in
/// order of their first hit (references ascending, then estimates ascending), each with its
/// references ascending. Candidates are found through a sorted time index rather than the full
/// matrix; the exact test is mir_eval's on each candidate.
fn hit_graph(
    ref_intervals: &[[f64; 2]],
    ref_pitches: &[f64],
    est_intervals: &[[f64; 2]],
    est_pitches: &[f64],
    tolerances: &NoteTolerances,
    criteria: Criteria,
) -> Vec<(usize, Vec<usize>)> {
    // Rounding to 4 decimals moves a distance by at most 5e-5: a wider window finds every hit.
    const SLACK_S: f64 = 1e-3;
    let ratio = tolerances.offset_ratio.unwrap_or(0.0);
    let offset_tolerance =
        |r: &[f64; 2]| (ratio * (r[1] - r[0]).abs()).max(tolerances.offset_min_tolerance_s);
    // Index estimates by the time the candidates are searched on: onset when onsets count.
    let by_onset = criteria.onset;
    let key = |interval: &[f64; 2]| if by_onset { interval[0] } else { interval[1] };
    let mut order: Vec<usize> = (0..est_intervals.len()).collect();
    order.sort_by(|&a, &b| key(&est_intervals[a]).total_cmp(&key(&est_intervals[b])));
    let sorted: Vec<f64> = order.iter().map(|&j| key(&est_intervals[j])).collect();
    let est_log2: Vec<f64> = est_pitches.iter().map(|p| p.log2()).collect();

    let mut graph: Vec<(usize, Vec<usize>)> = Vec::new();
    let mut slot: Vec<Option<usize>> = vec![None; est_intervals.len()];
    let mut candidates = Vec::new();
    for (i, r) in ref_intervals.iter().enumerate() {
        let half_width = if by_onset {
            tolerances.onset_tolerance_s
        } else {
            offset_tolerance(r)
        } + SLACK_S;
        let centre = key(r);
        let start = sorted.partition_point(|&t| t < centre - half_width);
        let end = sorted.partition_point(|&t| t <= centre + half_width);
        candidates.clear();
        candidates.extend_from_slice(&order[start..end]);
        candidates.sort_unstable();
        let ref_log2 = ref_pitches.get(i).map(|p| p.log2());
        let offset_tol = offset_tolerance(r);
        for &j in &candidates {
            let e = &est_intervals[j];
            if criteria.onset {
                let d = np_around((r[0] - e[0]).abs(), N_DECIMALS);
                if !tolerances.hit(d, tolerances.onset_tolerance_s) {
                    continue;
                }
            }
            if criteria.pitch {
                let d = (1200.0 * (ref_log2.unwrap_or(f64::NAN) - est_log2[j])).abs();
                if !tolerances.hit(d, tolerances.pitch_tolerance_cents) {
                    continue;
                }
            }
            if criteria.offset {
                let d = np_around((r[1] - e[1]).abs(), N_DECIMALS);
                if !tolerances.hit(d, offset_tol) {
                    continue;
                }
            }
            let position = *slot[j].get_or_insert_with(|| {
                graph.push((j, Vec::new()));
                graph.len() - 1
            });
            graph[position].1.push(i);
        }
    }
    graph
}

/// `mir_eval.transcription.match_notes`: the maximum matching of notes that agree in onset,
/// pitch and (when `offset_ratio` is set) offset, as `(ref, est)` pairs sorted by reference.
/// Inputs are not validated here (the metric functions do it).
pub fn match_notes(
    ref_intervals: &[[f64; 2]],
    ref_pitches: &[f64],
    est_intervals: &[[f64; 2]],
    est_pitches: &[f64],
    tolerances: &NoteTolerances,
) -> Vec<(usize, usize)> {
    let criteria = Criteria {
        onset: true,
        pitch: true,
        offset: tolerances.offset_ratio.is_some(),
    };
    let graph = hit_graph(
        ref_intervals,
        ref_pitches,
        est_intervals,
        est_pitches,
        tolerances,
        criteria,
    );
    bipartite_match(&graph, ref_intervals.len())
}

/// `mir_eval.transcription.match_note_onsets`: matching on onsets alone.
pub fn match_note_onsets(
    ref_intervals: &[[f64; 2]],
    est_intervals: &[[f64; 2]],
    tolerances: &NoteTolerances,
) -> Vec<(usize, usize)> {
    let criteria = Criteria {
        onset: true,
        pitch: false,
        offset: false,
    };
    let graph = hit_graph(ref_intervals, &[], est_intervals, &[], tolerances, criteria);
    bipartite_match(&graph, ref_intervals.len())
}

/// `mir_eval.transcription.match_note_offsets`: matching on offsets alone (with
/// `offset_ratio` `None` taken as 0, i.e. the minimum tolerance only).
pub fn match_note_offsets(
    ref_intervals: &[[f64; 2]],
    est_intervals: &[[f64; 2]],
    tolerances: &NoteTolerances,
) -> Vec<(usize, usize)> {
    let criteria = Criteria {
        onset: false,
        pitch: false,
        offset: true,
    };
    let graph = hit_graph(ref_intervals, &[], est_intervals, &[], tolerances, criteria);
    bipartite_match(&graph, ref_intervals.len())
}

/// `mir_eval.transcription.precision_recall_f1_overlap`: (Precision, Recall, F-measure,
/// Average_Overlap_Ratio); all 0 when either side is empty.
pub fn precision_recall_f1_overlap(
    ref_intervals: &[[f64; 2]],
    ref_pitches: &[f64],
    est_intervals: &[[f64; 2]],
    est_pitches: &[f64],
    tolerances: &NoteTolerances,
) -> Result<(f64, f64, f64, f64), MetricsError> {
    tolerances.check()?;
    validate(ref_intervals, ref_pitches, est_intervals, est_pitches)?;
    Ok(prf_overlap_unchecked(
        ref_intervals,
        ref_pitches,
        est_intervals,
        est_pitches,
        tolerances,
    ))
}

fn prf_overlap_unchecked(
    ref_intervals: &[[f64; 2]],
    ref_pitches: &[f64],
    est_intervals: &[[f64; 2]],
    est_pitches: &[f64],
    tolerances: &NoteTolerances,
) -> (f64, f64, f64, f64) {
    if ref_pitches.is_empty() || est_pitches.is_empty() {
        return (0.0, 0.0, 0.0, 0.0);
    }
    let matching = match_notes(
        ref_intervals,
        ref_pitches,
        est_intervals,
        est_pitches,
        tolerances,
    );
    let precision = matching.len() as f64 / est_pitches.len() as f64;
    let recall = matching.len() as f64 / ref_pitches.len() as f64;
    let overlap = average_overlap_ratio(ref_intervals, est_intervals, &matching);
    (precision, recall, f_measure(precision, recall), overlap)
}

/// `mir_eval.transcription.average_overlap_ratio`: the mean over matched pairs of the length of
/// their intersection over the length of their union (numpy's pairwise mean); 0 if none.
pub fn average_overlap_ratio(
    ref_intervals: &[[f64; 2]],
    est_intervals: &[[f64; 2]],
    matching: &[(usize, usize)],
) -> f64 {
    if matching.is_empty() {
        return 0.0;
    }
    let ratios: Vec<f64> = matching
        .iter()
        .map(|&(i, j)| {
            let (r, e) = (ref_intervals[i], est_intervals[j]);
            (r[1].min(e[1]) - r[0].max(e[0])) / (r[1].max(e[1]) - r[0].min(e[0]))
        })
        .collect();
    numpy_sum(&ratios) / ratios.len() as f64
}

/// numpy's pairwise summation of a contiguous float64 array (`pairwise_sum` in its loops), so
/// means come out bit for bit as `np.mean`'s.
fn numpy_sum(values: &[f64]) -> f64 {
    const BLOCK: usize = 128;
    let n = values.len();
    if n < 8 {
        let mut sum = -0.0;
        for &v in values {
            sum += v;
        }
        sum
    } else if n <= BLOCK {
        let mut r = [0.0; 8];
        r.copy_from_slice(&values[..8]);
        let mut i = 8;
        while i + 8 <= n {
            for (k, acc) in r.iter_mut().enumerate() {
                *acc += values[i + k];
            }
            i += 8;
        }
        let mut sum = ((r[0] + r[1]) + (r[2] + r[3])) + ((r[4] + r[5]) + (r[6] + r[7]));
        for &v in &values[i..] {
            sum += v;
        }
        sum
    } else {
        let mut half = n / 2;
        half -= half % 8;
        numpy_sum(&values[..half]) + numpy_sum(&values[half..])
    }
}

/// `mir_eval.transcription.onset_precision_recall_f1`: matching on onsets alone.
pub fn onset_precision_recall_f1(
    ref_intervals: &[[f64; 2]],
    est_intervals: &[[f64; 2]],
    tolerances: &NoteTolerances,
) -> Result<(f64, f64, f64), MetricsError> {
    tolerances.check()?;
    validate_interval_pair(ref_intervals, est_intervals)?;
    if ref_intervals.is_empty() || est_intervals.is_empty() {
        return Ok((0.0, 0.0, 0.0));
    }
    let matches = match_note_onsets(ref_intervals, est_intervals, tolerances).len() as f64;
    let precision = matches / est_intervals.len() as f64;
    let recall = matches / ref_intervals.len() as f64;
    Ok((precision, recall, f_measure(precision, recall)))
}

/// `mir_eval.transcription.offset_precision_recall_f1`: matching on offsets alone.
pub fn offset_precision_recall_f1(
    ref_intervals: &[[f64; 2]],
    est_intervals: &[[f64; 2]],
    tolerances: &NoteTolerances,
) -> Result<(f64, f64, f64), MetricsError> {
    tolerances.check()?;
    validate_interval_pair(ref_intervals, est_intervals)?;
    if ref_intervals.is_empty() || est_intervals.is_empty() {
        return Ok((0.0, 0.0, 0.0));
    }
    let matches = match_note_offsets(ref_intervals, est_intervals, tolerances).len() as f64;
    let precision = matches / est_intervals.len() as f64;
    let recall = matches / ref_intervals.len() as f64;
    Ok((precision, recall, f_measure(precision, recall)))
}

/// `mir_eval.transcription.evaluate`: the whole dictionary, keys in mir_eval's order. With
/// `offset_ratio` `None` the offset-aware entries (`Precision` … `Average_Overlap_Ratio`,
/// `Offset_*`) are left out, as mir_eval leaves them out.
pub fn evaluate(
    ref_intervals: &[[f64; 2]],
    ref_pitches: &[f64],
    est_intervals: &[[f64; 2]],
    est_pitches: &[f64],
    tolerances: &NoteTolerances,
) -> Result<Scores, MetricsError> {
    tolerances.check()?;
    let warnings = validate(ref_intervals, ref_pitches, est_intervals, est_pitches)?;
    let mut scores = Scores::default();
    warnings.into_iter().for_each(|w| scores.warn(w));
    let (r, p) = (ref_intervals, ref_pitches);
    let (e, q) = (est_intervals, est_pitches);
    if tolerances.offset_ratio.is_some() {
        let (precision, recall, f, overlap) = prf_overlap_unchecked(r, p, e, q, tolerances);
        scores.push("Precision", precision);
        scores.push("Recall", recall);
        scores.push("F-measure", f);
        scores.push("Average_Overlap_Ratio", overlap);
    }
    let onsets_only = tolerances.without_offsets();
    let (precision, recall, f, overlap) = prf_overlap_unchecked(r, p, e, q, &onsets_only);
    scores.push("Precision_no_offset", precision);
    scores.push("Recall_no_offset", recall);
    scores.push("F-measure_no_offset", f);
    scores.push("Average_Overlap_Ratio_no_offset", overlap);
    let (precision, recall, f) = onset_precision_recall_f1(r, e, tolerances)?;
    scores.push("Onset_Precision", precision);
    scores.push("Onset_Recall", recall);
    scores.push("Onset_F-measure", f);
    if tolerances.offset_ratio.is_some() {
        let (precision, recall, f) = offset_precision_recall_f1(r, e, tolerances)?;
        scores.push("Offset_Precision", precision);
        scores.push("Offset_Recall", recall);
        scores.push("Offset_F-measure", f);
    }
    Ok(scores)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn onsets_exactly_50_ms_apart_match_after_rounding() {
        // 0.35 - 0.3 is 0.04999999999999999 or 0.05000000000000002 in floating point, either
        // side of 0.05; the rounding to 4 decimals makes both a hit.
        let reference = [[0.3, 1.0], [1.05, 2.0]];
        let estimate = [[0.35, 1.0], [1.0, 2.0]];
        let matching = match_note_onsets(&reference, &estimate, &NoteTolerances::default());
        assert_eq!(matching, vec![(0, 0), (1, 1)]);
        let strict = NoteTolerances {
            strict: true,
            ..NoteTolerances::default()
        };
        assert!(match_note_onsets(&reference, &estimate, &strict).is_empty());
    }

    #[test]
    fn pitches_match_within_50_cents() {
        let reference = [[0.0, 1.0], [0.0, 1.0]];
        let estimate = [[0.0, 1.0], [0.0, 1.0]];
        let tolerances = NoteTolerances::default();
        let above = 440.0 * 2f64.powf(49.0 / 1200.0);
        let below = 220.0 * 2f64.powf(-51.0 / 1200.0);
        let matching = match_notes(
            &reference,
            &[440.0, 220.0],
            &estimate,
            &[above, below],
            &tolerances,
        );
        assert_eq!(matching, vec![(0, 0)]);
    }

    #[test]
    fn offsets_match_within_20_percent_or_50_ms() {
        // A 1 s note: offsets within 0.2 s; a 0.1 s note: within the 50 ms floor.
        let reference = [[0.0, 1.0], [2.0, 2.1]];
        let estimate = [[0.0, 1.19], [2.0, 2.16]];
        let pitches = [440.0, 440.0];
        let matching = match_notes(
            &reference,
            &pitches,
            &estimate,
            &pitches,
            &NoteTolerances::default(),
        );
        assert_eq!(matching, vec![(0, 0)]);
    }

    #[test]
    fn the_overlap_ratio_is_intersection_over_union() {
        let ratio = average_overlap_ratio(&[[0.0, 1.0]], &[[0.0, 0.5]], &[(0, 0)]);
        assert_eq!(ratio, 0.5);
    }

    #[test]
    fn empty_sides_score_zero_with_mir_eval_s_warnings() {
        let scores = evaluate(
            &[],
            &[],
            &[[0.0, 1.0]],
            &[440.0],
            &NoteTolerances::default(),
        )
        .unwrap();
        assert!(scores.values.iter().all(|&(_, v)| v == 0.0));
        assert_eq!(scores.values.len(), 14);
        assert_eq!(scores.warnings, vec!["Reference notes are empty."]);
    }

    #[test]
    fn invalid_notes_are_named() {
        let err = evaluate(
            &[[1.0, 1.0]],
            &[440.0],
            &[],
            &[],
            &NoteTolerances::default(),
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("reference note 1") && err.contains("strictly positive"),
            "{err}"
        );
        let err = evaluate(&[], &[], &[[0.0, 1.0]], &[0.0], &NoteTolerances::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("estimate note 1") && err.contains("not a positive"),
            "{err}"
        );
    }

    #[test]
    fn tolerances_must_be_finite_and_non_negative() {
        let nan = NoteTolerances {
            onset_tolerance_s: f64::NAN,
            ..NoteTolerances::default()
        };
        let err = evaluate(&[], &[], &[], &[], &nan).unwrap_err();
        assert!(matches!(err, MetricsError::Options(_)), "{err}");
        let negative = NoteTolerances {
            offset_ratio: Some(-0.2),
            ..NoteTolerances::default()
        };
        assert!(evaluate(&[], &[], &[], &[], &negative).is_err());
    }

    #[test]
    fn numpy_pairwise_sum_handles_every_block_shape() {
        for n in [0, 1, 7, 8, 9, 127, 128, 129, 1000] {
            let values: Vec<f64> = (0..n).map(|i| 1.0 / (1.0 + i as f64)).collect();
            let plain: f64 = values.iter().sum();
            assert!((numpy_sum(&values) - plain).abs() < 1e-12, "n = {n}");
        }
    }
}

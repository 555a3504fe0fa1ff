//! `mtosi score`: mir_eval's transcription (notes) or multipitch (frames) dictionary for two
//! files, or for every pair of files of two folders, as text, CSV or JSON.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;

use mtosi::fsutil::write_bytes_atomic;
use mtosi::metrics::io::{evaluate_frame_files, evaluate_note_files, is_note_file, pair_by_stem};
use mtosi::metrics::transcription::NoteTolerances;
use mtosi::metrics::{multipitch, Scores};

#[derive(Debug, clap::Args)]
pub struct ScoreArgs {
    /// Reference: a note file (TSV, MAPS or mir_eval txt, MIDI, JAMS), a frame file with
    /// `--frames`, or a folder of them (paired with `--est`'s files by name without extension).
    #[arg(long = "ref", value_name = "REF")]
    pub reference: PathBuf,
    /// Estimate: a file or folder, like `--ref`.
    #[arg(long = "est", value_name = "EST")]
    pub estimate: PathBuf,
    /// Score frame files (`time f1 f2 ...` per line, Hz) with mir_eval.multipitch instead of
    /// note files with mir_eval.transcription.
    #[arg(long)]
    pub frames: bool,
    /// Print JSON: mir_eval's keys, full-precision values.
    #[arg(long)]
    pub json: bool,
    /// Onsets match within this many seconds.
    #[arg(long, default_value_t = 0.05, value_name = "S")]
    pub onset_tolerance: f64,
    /// Pitches match within this many cents.
    #[arg(long, default_value_t = 50.0, value_name = "CENTS")]
    pub pitch_tolerance: f64,
    /// Offsets match within this fraction of the reference note's duration; `none` leaves the
    /// offset-aware scores out.
    #[arg(long, default_value = "0.2", value_parser = parse_offset_ratio, value_name = "RATIO|none")]
    pub offset_ratio: OffsetRatio,
    /// …or within this many seconds, whichever is larger.
    #[arg(long, default_value_t = 0.05, value_name = "S")]
    pub offset_min_tolerance: f64,
    /// Strict comparisons (`<` instead of `<=`) against the tolerances.
    #[arg(long)]
    pub strict: bool,
    /// Frames: frequencies match within this many semitones.
    #[arg(long, default_value_t = multipitch::DEFAULT_WINDOW, value_name = "SEMITONES")]
    pub window: f64,
    /// Write to this file (atomically) instead of standard output.
    #[arg(short, long)]
    pub output: Option<PathBuf>,
}

/// `--offset-ratio`: a number or `none`.
#[derive(Debug, Clone, Copy)]
pub struct OffsetRatio(Option<f64>);

fn parse_offset_ratio(text: &str) -> Result<OffsetRatio, String> {
    if text.eq_ignore_ascii_case("none") {
        return Ok(OffsetRatio(None));
    }
    text.parse()
        .map(|r| OffsetRatio(Some(r)))
        .map_err(|_| format!("{text:?} is neither a number nor `none`"))
}

pub fn run(args: ScoreArgs) -> anyhow::Result<()> {
    let tolerances = NoteTolerances {
        onset_tolerance_s: args.onset_tolerance,
        pitch_tolerance_cents: args.pitch_tolerance,
        offset_ratio: args.offset_ratio.0,
        offset_min_tolerance_s: args.offset_min_tolerance,
        strict: args.strict,
    };
    let score = |reference: &Path, estimate: &Path| -> anyhow::Result<Scores> {
        let scores = if args.frames {
            evaluate_frame_files(reference, estimate, args.window)?
        } else {
            evaluate_note_files(reference, estimate, &tolerances)?
        };
        for warning in &scores.warnings {
            eprintln!(
                "warning: {} vs {}: {warning}",
                reference.display(),
                estimate.display()
            );
        }
        Ok(scores)
    };
    let text = match (args.reference.is_dir(), args.estimate.is_dir()) {
        (false, false) => {
            let scores = score(&args.reference, &args.estimate)?;
            if args.json {
                serde_json::to_string(&scores)? + "\n"
            } else {
                dictionary_text(&scores)
            }
        }
        (true, true) => folder_report(&args, &score)?,
        _ => anyhow::bail!(
            "--ref {} and --est {} must both be files or both be folders",
            args.reference.display(),
            args.estimate.display()
        ),
    };
    match &args.output {
        Some(path) => write_bytes_atomic(path, text.as_bytes())
            .with_context(|| format!("{}: cannot write", path.display()))?,
        None => print!("{text}"),
    }
    Ok(())
}

/// One `key value` line per score, values in full precision (shortest round-trip form).
fn dictionary_text(scores: &Scores) -> String {
    let width = scores
        .values
        .iter()
        .map(|(k, _)| k.len())
        .max()
        .unwrap_or(0);
    let mut text = String::new();
    for (key, value) in &scores.values {
        let _ = writeln!(text, "{key:<width$}  {value:?}");
    }
    text
}

/// Every pair of the two folders: CSV rows (or one JSON object), then the mean and the
/// (population) standard deviation of every value; unpaired files named on standard error.
fn folder_report(
    args: &ScoreArgs,
    score: &dyn Fn(&Path, &Path) -> anyhow::Result<Scores>,
) -> anyhow::Result<String> {
    let accept = |path: &Path| args.frames || is_note_file(path);
    let pairing = pair_by_stem(&args.reference, &args.estimate, accept)?;
    for name in &pairing.reference_only {
        eprintln!(
            "unpaired: {} has no estimate",
            args.reference.join(name).display()
        );
    }
    for name in &pairing.estimate_only {
        eprintln!(
            "unpaired: {} has no reference",
            args.estimate.join(name).display()
        );
    }
    let mut rows = Vec::with_capacity(pairing.pairs.len());
    for (stem, reference, estimate) in &pairing.pairs {
        rows.push((stem.clone(), score(reference, estimate)?));
    }
    let keys: Vec<&'static str> = rows
        .first()
        .map(|(_, s)| s.values.iter().map(|(k, _)| *k).collect())
        .unwrap_or_default();
    let column = |index: usize| rows.iter().map(move |(_, s)| s.values[index].1);
    let count = rows.len() as f64;
    let mean: Vec<f64> = (0..keys.len())
        .map(|i| column(i).sum::<f64>() / count)
        .collect();
    let std: Vec<f64> = (0..keys.len())
        .map(|i| (column(i).map(|v| (v - mean[i]).powi(2)).sum::<f64>() / count).sqrt())
        .collect();
    if args.json {
        // Assembled by hand so that every dictionary keeps mir_eval's key order.
        let as_scores = |values: &[f64]| Scores {
            values: keys.iter().copied().zip(values.iter().copied()).collect(),
            warnings: Vec::new(),
        };
        let mut json = String::from("{\"pairs\":{");
        for (index, (stem, scores)) in rows.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            json += &format!(
                "{}:{}",
                serde_json::to_string(stem)?,
                serde_json::to_string(scores)?
            );
        }
        json += &format!(
            "}},\"mean\":{},\"std\":{},\"reference_only\":{},\"estimate_only\":{}}}\n",
            serde_json::to_string(&as_scores(&mean))?,
            serde_json::to_string(&as_scores(&std))?,
            serde_json::to_string(&pairing.reference_only)?,
            serde_json::to_string(&pairing.estimate_only)?,
        );
        return Ok(json);
    }
    let mut csv = csv::Writer::from_writer(Vec::new());
    let record = |name: &str, values: &mut dyn Iterator<Item = f64>| -> Vec<String> {
        std::iter::once(name.to_string())
            .chain(values.map(|v| format!("{v:?}")))
            .collect()
    };
    csv.write_record(std::iter::once("name").chain(keys.iter().copied()))?;
    for (stem, scores) in &rows {
        csv.write_record(record(stem, &mut scores.values.iter().map(|&(_, v)| v)))?;
    }
    if !rows.is_empty() {
        csv.write_record(record("mean", &mut mean.iter().copied()))?;
        csv.write_record(record("std", &mut std.iter().copied()))?;
    }
    let bytes = csv.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok(String::from_utf8(bytes)?)
}

//! `mtosi eval`: score a checkpoint on every recording of a split, whole.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use mtosi::data::source::DataSource;
use mtosi::data::Split;
use mtosi::decode::DecodeOptions;
use mtosi::device::DeviceRequest;
use mtosi::evaluate::{self, EvalSummary};
use mtosi::metrics::ReferenceKind;
use mtosi::model::{checkpoint, Transcriber};
use mtosi::spectrogram::{Cqt, CqtParams};

#[derive(Debug, Args)]
pub struct EvalArgs {
    /// Model checkpoint (safetensors with PyTorch's state_dict names).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// The dataset as KIND:PATH (maps, guitarset, maestro, folder, synth).
    #[arg(long, value_name = "KIND:PATH")]
    pub data: DataSource,
    /// The split to evaluate (a folder is all one split).
    #[arg(long, default_value = "test")]
    pub split: Split,
    /// What the estimate is compared with: the annotation's notes, or the notes read back from
    /// the quantised label roll (what the paper's code did).
    #[arg(long, default_value = "annotation", value_parser = parse_reference)]
    pub reference: ReferenceKind,
    /// Frame threshold of the decoding (the paper: 0.5); a comma-separated list scores each
    /// (the network runs once per recording), e.g. a sweep on validation data.
    #[arg(long, value_delimiter = ',', default_value = "0.5")]
    pub threshold: Vec<f32>,
    /// Drop notes shorter than this many milliseconds (rounded up to frames; 0: keep all, as
    /// the paper).
    #[arg(long, default_value_t = 0.0)]
    pub min_note_ms: f64,
    /// Write results.csv (per recording) and summary.json here (with several thresholds, in
    /// one subfolder `threshold-T` each).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// auto (cuda when present, else the cpu), cpu, emu (the CUDA kernels on the CPU, a check:
    /// slow), cuda or cuda:N; the CQT runs on the cpu.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    #[command(flatten)]
    pub precision: super::PrecisionArg,
}

pub fn parse_reference(s: &str) -> Result<ReferenceKind, String> {
    match s {
        "annotation" => Ok(ReferenceKind::Annotation),
        "roll" | "label-roll" => Ok(ReferenceKind::LabelRoll),
        _ => Err(format!("{s:?}: expected annotation or roll")),
    }
}

pub fn run(args: EvalArgs) -> anyhow::Result<()> {
    let selection = args
        .device
        .open()
        .map_err(|e| anyhow::anyhow!("--device {}: {e}", args.device))?;
    args.precision.apply(&selection.device)?;
    eprintln!("network on {}", selection.reason);
    let mut model = Transcriber::new(0);
    checkpoint::load_model(&args.checkpoint, &mut model)?;
    let (items, report) = args.data.split_items(args.split)?;
    for line in report {
        eprintln!("note: {line}");
    }
    if items.is_empty() {
        bail!(
            "{}: no {} recordings (audio with labels) to evaluate",
            args.data,
            args.split
        );
    }
    for &t in &args.threshold {
        if !(t.is_finite() && (0.0..1.0).contains(&t)) {
            bail!("--threshold {t} is outside [0, 1)");
        }
    }
    if !(args.min_note_ms.is_finite() && args.min_note_ms >= 0.0) {
        bail!(
            "--min-note-ms {} must be a non-negative number",
            args.min_note_ms
        );
    }
    let scorings: Vec<(ReferenceKind, DecodeOptions)> = args
        .threshold
        .iter()
        .map(|&t| {
            let decode = DecodeOptions {
                frame_threshold: t,
                min_note_frames: mtosi::decode::min_note_frames_for_ms(args.min_note_ms),
                ..DecodeOptions::default()
            };
            (args.reference, decode)
        })
        .collect();
    let cqt = Cqt::new(CqtParams::default())?;
    let count = items.len();
    let all = evaluate::evaluate_items_scored(
        &selection.device,
        &mut model,
        &cqt,
        &items,
        &scorings,
        |i, name| eprintln!("[{}/{count}] {name}", i + 1),
    )
    .with_context(|| format!("evaluating {}", args.checkpoint.display()))?;
    for r in all[0].iter().filter(|r| r.notes_outside_keys > 0) {
        eprintln!(
            "note: {}: {} of its {} annotated notes lie outside the 88 keys (MIDI 21–108); no \
             piano roll holds them (misses against the annotation, absent from the label roll)",
            r.name, r.notes_outside_keys, r.annotated_notes
        );
    }
    let several = scorings.len() > 1;
    for ((_, decode), results) in scorings.iter().zip(&all) {
        let (mean, std) = evaluate::summary(results);
        println!(
            "{} on {} ({} split), reference: {}, threshold {}{}",
            args.checkpoint.display(),
            args.data,
            args.split,
            evaluate::reference_name(args.reference),
            decode.frame_threshold,
            if decode.min_note_frames > 0 {
                format!(", notes of at least {} frames", decode.min_note_frames)
            } else {
                String::new()
            }
        );
        print!("{}", evaluate::format_table(&mean, &std, results.len()));
        if let Some(out) = &args.out {
            let out = if several {
                out.join(format!("threshold-{}", decode.frame_threshold))
            } else {
                out.clone()
            };
            let summary = EvalSummary {
                checkpoint: args.checkpoint.clone(),
                data: args.data.to_string(),
                split: args.split.to_string(),
                reference: evaluate::reference_name(args.reference).into(),
                threshold: decode.frame_threshold,
                min_note_frames: decode.min_note_frames,
                recordings: results.len(),
                mean,
                std,
            };
            evaluate::write_outputs(&out, results, &summary)?;
            println!(
                "wrote {} and {}",
                out.join("results.csv").display(),
                out.join("summary.json").display()
            );
        }
    }
    Ok(())
}

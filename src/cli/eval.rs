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
    /// Write results.csv (per recording) and summary.json here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// auto (cuda when present, else the cpu), cpu, emu (the CUDA kernels on the CPU, a check:
    /// slow), cuda or cuda:N; the CQT runs on the cpu.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
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
    let cqt = Cqt::new(CqtParams::default())?;
    let count = items.len();
    let results = evaluate::evaluate_items(
        &selection.device,
        &mut model,
        &cqt,
        &items,
        args.reference,
        &DecodeOptions::default(),
        |i, name| eprintln!("[{}/{count}] {name}", i + 1),
    )
    .with_context(|| format!("evaluating {}", args.checkpoint.display()))?;
    let (mean, std) = evaluate::summary(&results);
    println!(
        "{} on {} ({} split), reference: {}",
        args.checkpoint.display(),
        args.data,
        args.split,
        evaluate::reference_name(args.reference)
    );
    print!("{}", evaluate::format_table(&mean, &std, results.len()));
    if let Some(out) = &args.out {
        let summary = EvalSummary {
            checkpoint: args.checkpoint.clone(),
            data: args.data.to_string(),
            split: args.split.to_string(),
            reference: evaluate::reference_name(args.reference).into(),
            recordings: results.len(),
            mean,
            std,
        };
        evaluate::write_outputs(out, &results, &summary)?;
        println!(
            "wrote {} and {}",
            out.join("results.csv").display(),
            out.join("summary.json").display()
        );
    }
    Ok(())
}

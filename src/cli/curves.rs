//! `mtosi curves`: one metric of several runs in one chart (e.g. a transferred and a
//! from-scratch training's validation note F1, the paper's convergence comparison).

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;
use mtosi::fsutil;
use mtosi::train::plots::{line_chart_svg, metric_points, Series};

#[derive(Debug, Args)]
pub struct CurvesArgs {
    /// A run directory (or its metrics.jsonl), optionally named as NAME=PATH; one per series.
    #[arg(long = "run", value_name = "[NAME=]RUN_DIR", required = true)]
    pub runs: Vec<String>,
    /// The metrics.jsonl field to draw per epoch (val_note_f1, val_frame_f1,
    /// val_note_with_offset_f1, val_loss, loss).
    #[arg(long, default_value = "val_note_f1")]
    pub metric: String,
    /// The chart's title [default: the metric's name].
    #[arg(long)]
    pub title: Option<String>,
    /// The SVG file to write.
    #[arg(long, short)]
    pub out: PathBuf,
}

pub fn run(args: CurvesArgs) -> anyhow::Result<()> {
    let mut series = Vec::new();
    for spec in &args.runs {
        let (name, path) = match spec.split_once('=') {
            Some((name, path)) => (name.to_string(), PathBuf::from(path)),
            None => (spec.clone(), PathBuf::from(spec)),
        };
        let metrics = if path.is_dir() {
            path.join("metrics.jsonl")
        } else {
            path
        };
        let text = std::fs::read_to_string(&metrics)
            .with_context(|| format!("reading {}", metrics.display()))?;
        let points = metric_points(&text, &args.metric);
        if points.is_empty() {
            bail!(
                "{}: no line has {:?} (validation fields are there only every --validate-every epochs)",
                metrics.display(),
                args.metric
            );
        }
        println!(
            "{name}: {} points, last at epoch {} = {:.4}",
            points.len(),
            points[points.len() - 1].0,
            points[points.len() - 1].1
        );
        series.push(Series { name, points });
    }
    let title = args.title.clone().unwrap_or_else(|| args.metric.clone());
    let svg = line_chart_svg(&title, "epoch", &args.metric, &series);
    fsutil::write_bytes_atomic(&args.out, svg.as_bytes())
        .with_context(|| format!("writing {}", args.out.display()))?;
    println!("wrote {}", args.out.display());
    Ok(())
}

//! `mtosi bench-step`: times one training step (forward, backward, clip, Adam) or the
//! evaluation forward pass on any device, on the CPU with an optional per-layer breakdown. One configuration
//! per process, so `/usr/bin/time -v` reports its peak memory.

use std::collections::BTreeMap;
use std::time::Duration;

use mtosi::device::{Device, DeviceRequest};
use mtosi::model::bench;
use mtosi::model::profile::Record;

#[derive(Debug, clap::Args)]
pub struct BenchStepArgs {
    /// Examples per batch (the protocol trains with 32).
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Frames per example (640 = one 327 680-sample crop; 1875 = 60 s).
    #[arg(long, default_value_t = 640)]
    pub frames: usize,
    /// Timed repetitions after one warm-up.
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
    /// Time the evaluation-mode forward pass of one example instead of a training step.
    #[arg(long)]
    pub eval: bool,
    /// Print where the time goes, per op kind and per layer (one extra, accounted run).
    #[arg(long)]
    pub breakdown: bool,
    /// cpu, emu, cuda, cuda:N or auto (cuda when present, else the cpu). On emu and cuda the
    /// training step (or with `--eval` the evaluation forward) runs on the kernels, without
    /// `--breakdown`.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceRequest,
    #[command(flatten)]
    pub precision: super::PrecisionArg,
}

pub fn run(args: BenchStepArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.repeats > 0, "--repeats must be at least 1");
    anyhow::ensure!(
        args.batch > 0 || args.eval,
        "--batch 0: a training step needs at least 1 example"
    );
    anyhow::ensure!(
        args.frames >= mtosi::model::MIN_FRAMES,
        "--frames {}: the network needs at least {} frames (its encoder halves the time axis 4 times)",
        args.frames,
        mtosi::model::MIN_FRAMES
    );
    let selection = args
        .device
        .open()
        .map_err(|e| anyhow::anyhow!("--device {}: {e}", args.device))?;
    args.precision.apply(&selection.device)?;
    let threads = rayon::current_num_threads();
    let (what, (timings, records)) = if let Device::Kernels(kernels) = &selection.device {
        anyhow::ensure!(
            !args.breakdown,
            "--breakdown accounts the cpu layers; leave it out with --device {}",
            args.device
        );
        if args.eval {
            (
                format!(
                    "eval forward on {}, 1 x {} frames",
                    kernels.describe(),
                    args.frames
                ),
                (
                    bench::time_eval_forward_on(kernels, args.frames, args.repeats)?,
                    Vec::new(),
                ),
            )
        } else {
            (
                format!(
                    "train step on {}, batch {} x {} frames",
                    kernels.describe(),
                    args.batch,
                    args.frames
                ),
                (
                    bench::time_train_step_on(kernels, args.batch, args.frames, args.repeats)?,
                    Vec::new(),
                ),
            )
        }
    } else if args.eval {
        (
            format!("eval forward, 1 x {} frames", args.frames),
            bench::time_eval_forward(args.frames, args.repeats, args.breakdown)?,
        )
    } else {
        (
            format!("train step, batch {} x {} frames", args.batch, args.frames),
            bench::time_train_step(args.batch, args.frames, args.repeats, args.breakdown)?,
        )
    };
    let cpu = timings
        .cpu
        .map(|cpu| {
            format!(
                ", cpu {:.3} s/run",
                cpu.as_secs_f64() / timings.runs.len() as f64
            )
        })
        .unwrap_or_default();
    println!(
        "{what}: median {:.3} s (min {:.3}, max {:.3}) over {} runs, {threads} threads{cpu}",
        timings.median().as_secs_f64(),
        timings.min().as_secs_f64(),
        timings.max().as_secs_f64(),
        timings.runs.len(),
    );
    if args.breakdown {
        print_breakdown(&records);
    }
    Ok(())
}

fn print_breakdown(records: &[Record]) {
    let total: Duration = records.iter().map(|r| r.time).sum();
    let secs = |d: Duration| d.as_secs_f64();
    let mut by_kind: BTreeMap<(&str, &str), Duration> = BTreeMap::new();
    for r in records {
        *by_kind.entry((r.kind, r.phase)).or_default() += r.time;
    }
    let mut kinds: Vec<_> = by_kind.into_iter().collect();
    kinds.sort_by_key(|k| std::cmp::Reverse(k.1));
    println!("accounted {:.3} s; by op and phase:", secs(total));
    for ((kind, phase), time) in kinds {
        println!(
            "  {kind:<17} {phase:<17} {:>8.3} s {:>5.1}%",
            secs(time),
            100.0 * secs(time) / secs(total)
        );
    }
    let mut by_layer: BTreeMap<String, (Duration, Duration)> = BTreeMap::new();
    for r in records {
        let layer = r
            .layer
            .strip_suffix(".weight")
            .unwrap_or(&r.layer)
            .to_string();
        let entry = by_layer.entry(layer).or_default();
        if r.phase == "forward" {
            entry.0 += r.time;
        } else {
            entry.1 += r.time;
        }
    }
    let mut layers: Vec<_> = by_layer.into_iter().collect();
    layers.sort_by_key(|(_, (forward, backward))| std::cmp::Reverse(*forward + *backward));
    println!("top layers (forward, backward/update):");
    for (layer, (forward, backward)) in layers.iter().take(20) {
        println!(
            "  {layer:<44} {:>7.3} s {:>7.3} s {:>5.1}%",
            secs(*forward),
            secs(*backward),
            100.0 * secs(*forward + *backward) / secs(total)
        );
    }
}

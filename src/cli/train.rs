//! `mtosi train`: train the transcriber from scratch or by transfer, or resume a run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};

use mtosi::data::source::DataSource;
use mtosi::device::DeviceRequest;
use mtosi::train::examples::AugmentPreset;
use mtosi::train::run::{self, Reporter, StepProgress, TrainSettings};
use mtosi::train::transfer::FreezePart;

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Training data as KIND:PATH, KIND one of maps, guitarset, maestro, folder, synth; several
    /// make a mixture (their training splits; a folder is all training data).
    #[arg(long, value_name = "KIND:PATH")]
    pub data: Vec<DataSource>,
    /// The run directory to create.
    #[arg(long, value_name = "RUN_DIR")]
    pub out: Option<PathBuf>,
    /// Continue the run in RUN_DIR from checkpoints/last.safetensors.
    #[arg(long, value_name = "RUN_DIR", conflicts_with = "out")]
    pub resume: Option<PathBuf>,
    /// Validation data (its validation split; a folder: all of it). Default: the validation
    /// splits of the --data sets.
    #[arg(long, value_name = "KIND:PATH")]
    pub val: Option<DataSource>,
    /// Epochs (one crop of every training recording each) [default: 2000].
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Crops per batch [default: 32].
    #[arg(long)]
    pub batch: Option<usize>,
    /// Frames per crop; a crop is this × 512 samples [default: 640].
    #[arg(long)]
    pub crop_frames: Option<usize>,
    /// Adam's learning rate [default: 0.01].
    #[arg(long)]
    pub lr: Option<f64>,
    /// StepLR period in optimizer steps [default: 10000].
    #[arg(long)]
    pub lr_step: Option<u64>,
    /// StepLR factor [default: 0.98].
    #[arg(long)]
    pub lr_gamma: Option<f64>,
    /// Linear learning-rate warm-up over this many steps [default: 0, none].
    #[arg(long)]
    pub warmup_steps: Option<u64>,
    /// Seed of the initialisation and of the crops [default: 33].
    #[arg(long)]
    pub seed: Option<u64>,
    /// Validate every N epochs [default: 10].
    #[arg(long)]
    pub validate_every: Option<u64>,
    /// Keep checkpoints/epoch-NNNN.safetensors every N epochs [default: 50].
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Also write checkpoints/last.safetensors within an epoch after this many minutes
    /// [default: 5].
    #[arg(long)]
    pub checkpoint_minutes: Option<f64>,
    /// Initialise linear.bias to the logit of each key's frame-on rate in the training labels
    /// (yes|no) [default: no].
    #[arg(long, value_parser = parse_yes_no)]
    pub output_bias_prior: Option<bool>,
    /// Augment the training crops: none (the paper) or recorded (generated rooms, EQ, noise
    /// and gain, drawn per crop from the seed) [default: none].
    #[arg(long, value_name = "none|recorded")]
    pub augment: Option<AugmentPreset>,
    /// Transfer: initialise from this checkpoint (every tensor whose name and shape match).
    #[arg(long, value_name = "CKPT")]
    pub init: Option<PathBuf>,
    /// Take the Adam state beside --init's checkpoint (yes|no) [default: yes].
    #[arg(long, value_parser = parse_yes_no)]
    pub init_optimizer: Option<bool>,
    /// Parts to hold fixed (comma-separated: encoder, decoder, lstm, linear).
    #[arg(long, value_delimiter = ',')]
    pub freeze: Option<Vec<FreezePart>>,
    /// auto, cpu, emu, cuda or cuda:N [default: auto: cuda when a GPU is present, else cpu].
    /// emu runs the CUDA kernels on the CPU (a check, far slower than cpu).
    #[arg(long)]
    pub device: Option<DeviceRequest>,
    /// Products on the CPU: fp32 [default], or bf16 (bf16 operands, float32 sums: the 3×3 and
    /// 2×2 convolutions' forwards and gradients and the LSTM's W_hh·h; AVX512-BF16 CPUs only;
    /// gradients within ~0.1 relative L2 of float32's, well below batch-to-batch differences).
    #[arg(long, value_enum)]
    pub precision: Option<mtosi::ops::conv2d::ConvPrecision>,
    /// Prepare the next batch while the step runs (yes|no) [default: yes].
    #[arg(long, value_parser = parse_yes_no)]
    pub prefetch: Option<bool>,
    /// Keep up to this many MiB of decoded training audio in memory [default: 4096].
    #[arg(long)]
    pub audio_cache_mib: Option<usize>,
}

fn parse_yes_no(s: &str) -> Result<bool, String> {
    match s.to_ascii_lowercase().as_str() {
        "yes" | "true" | "1" | "on" => Ok(true),
        "no" | "false" | "0" | "off" => Ok(false),
        _ => Err(format!("{s:?}: expected yes or no")),
    }
}

/// The device the network trains on, by the name the run's config keeps (`cpu`, `emu` or
/// `cuda:N`): `auto` resolved now, and a missing GPU an error here rather than at the first
/// step.
fn resolve_device(request: &DeviceRequest) -> anyhow::Result<String> {
    match request {
        DeviceRequest::Cpu => Ok("cpu".into()),
        DeviceRequest::Emu => Ok("emu".into()),
        DeviceRequest::Cuda(n) => {
            mtosi::device::KernelDevice::cuda(*n)
                .map_err(|e| anyhow::anyhow!("--device {request}: {e}"))?;
            Ok(format!("cuda:{n}"))
        }
        DeviceRequest::Auto => match mtosi::device::KernelDevice::cuda(0) {
            Ok(_) => Ok("cuda:0".into()),
            Err(_) => Ok("cpu".into()),
        },
    }
}

impl TrainArgs {
    /// The settings given on the command line, by their config name, as JSON values.
    fn given(&self) -> anyhow::Result<BTreeMap<String, serde_json::Value>> {
        let mut map = BTreeMap::new();
        let mut put = |key: &str, value: serde_json::Value| {
            map.insert(key.to_string(), value);
        };
        use serde_json::json;
        if !self.data.is_empty() {
            put("data", json!(self.data));
        }
        if let Some(v) = &self.val {
            put("val", json!(Some(v)));
        }
        if let Some(v) = self.batch {
            put("batch", json!(v));
        }
        if let Some(v) = self.crop_frames {
            put("crop_frames", json!(v));
        }
        if let Some(v) = self.lr {
            put("lr", json!(v));
        }
        if let Some(v) = self.lr_step {
            put("lr_step", json!(v));
        }
        if let Some(v) = self.lr_gamma {
            put("lr_gamma", json!(v));
        }
        if let Some(v) = self.warmup_steps {
            put("warmup_steps", json!(v));
        }
        if let Some(v) = self.seed {
            put("seed", json!(v));
        }
        if let Some(v) = self.validate_every {
            put("validate_every", json!(v));
        }
        if let Some(v) = self.checkpoint_every {
            put("checkpoint_every", json!(v));
        }
        if let Some(v) = self.checkpoint_minutes {
            put("checkpoint_minutes", json!(v));
        }
        if let Some(v) = self.output_bias_prior {
            put("output_bias_prior", json!(v));
        }
        if let Some(v) = self.augment {
            put("augment", json!(v));
        }
        if let Some(v) = &self.init {
            put("init", json!(Some(v)));
        }
        if let Some(v) = self.init_optimizer {
            put("init_optimizer", json!(v));
        }
        if let Some(v) = &self.freeze {
            put("freeze", json!(v));
        }
        if let Some(v) = &self.device {
            put("device", json!(resolve_device(v)?));
        }
        if let Some(v) = self.precision {
            put("precision", json!(v));
        }
        if let Some(v) = self.prefetch {
            put("prefetch", json!(v));
        }
        if let Some(v) = self.audio_cache_mib {
            put("audio_cache_mib", json!(v));
        }
        Ok(map)
    }

    fn settings(&self) -> anyhow::Result<TrainSettings> {
        let d = TrainSettings::default();
        Ok(TrainSettings {
            data: self.data.clone(),
            val: self.val.clone(),
            epochs: self.epochs.unwrap_or(d.epochs),
            batch: self.batch.unwrap_or(d.batch),
            crop_frames: self.crop_frames.unwrap_or(d.crop_frames),
            lr: self.lr.unwrap_or(d.lr),
            lr_step: self.lr_step.unwrap_or(d.lr_step),
            lr_gamma: self.lr_gamma.unwrap_or(d.lr_gamma),
            warmup_steps: self.warmup_steps.unwrap_or(d.warmup_steps),
            seed: self.seed.unwrap_or(d.seed),
            validate_every: self.validate_every.unwrap_or(d.validate_every),
            checkpoint_every: self.checkpoint_every.unwrap_or(d.checkpoint_every),
            checkpoint_minutes: self.checkpoint_minutes.unwrap_or(d.checkpoint_minutes),
            output_bias_prior: self.output_bias_prior.unwrap_or(d.output_bias_prior),
            augment: self.augment.unwrap_or(d.augment),
            init: self.init.clone(),
            init_optimizer: self.init_optimizer.unwrap_or(d.init_optimizer),
            freeze: self.freeze.clone().unwrap_or_default(),
            device: match &self.device {
                Some(r) => resolve_device(r)?,
                None => resolve_device(&DeviceRequest::Auto)?,
            },
            precision: self.precision.unwrap_or(d.precision),
            prefetch: self.prefetch.unwrap_or(d.prefetch),
            audio_cache_mib: self.audio_cache_mib.unwrap_or(d.audio_cache_mib),
        })
    }
}

/// A live bar on a terminal, plain lines every `LINE_EVERY` otherwise.
pub struct CliReporter {
    bar: Option<ProgressBar>,
    last_line: Option<Instant>,
}

const LINE_EVERY: Duration = Duration::from_secs(30);

impl CliReporter {
    pub fn new() -> Self {
        Self {
            bar: None,
            last_line: None,
        }
    }
}

fn format_eta(seconds: f64) -> String {
    if !seconds.is_finite() {
        return "?".into();
    }
    let s = seconds.round() as u64;
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

impl Reporter for CliReporter {
    fn message(&mut self, line: &str) {
        match &self.bar {
            Some(bar) => bar.println(line),
            None => eprintln!("{line}"),
        }
    }

    fn progress(&mut self, p: &StepProgress) {
        let eta = (p.total_steps.saturating_sub(p.step)) as f64 / p.steps_per_s;
        let text = format!(
            "epoch {}/{} batch {}/{} step {} loss {:.5} {:.3} steps/s ETA {}",
            p.epoch,
            p.epochs,
            p.batch,
            p.batches,
            p.step,
            p.loss,
            p.steps_per_s,
            format_eta(eta)
        );
        if run::stderr_is_terminal() {
            let bar = self.bar.get_or_insert_with(|| {
                let bar = ProgressBar::new(p.total_steps);
                bar.set_style(
                    ProgressStyle::with_template("{bar:30} {msg}").expect("a valid template"),
                );
                bar
            });
            bar.set_length(p.total_steps);
            bar.set_position(p.step);
            bar.set_message(text);
        } else if self.last_line.is_none_or(|t| t.elapsed() >= LINE_EVERY) || p.batch == p.batches {
            eprintln!("{text}");
            self.last_line = Some(Instant::now());
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.abandon();
        }
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let mut reporter = CliReporter::new();
    let summary = match (&args.out, &args.resume) {
        (Some(out), None) => run::start_run(args.settings()?, out, &mut reporter)?,
        (None, Some(dir)) => {
            let mut given = args.given()?;
            given.remove("epochs");
            run::resume_run(dir, args.epochs, &given, &mut reporter)?
        }
        _ => bail!("give --out RUN_DIR for a new run or --resume RUN_DIR to continue one"),
    };
    println!(
        "trained {} epochs, {} steps; last epoch's loss {}; checkpoint {}",
        summary.epochs_done,
        summary.steps,
        summary
            .last_loss
            .map_or("-".to_string(), |l| format!("{l:.5}")),
        summary.last_checkpoint.display()
    );
    Ok(())
}

//! A training run: its settings, its directory, the loop over epochs and batches, checkpoints
//! that let a killed run resume bit-exactly, and the guards (NaN loss, mismatched resume).
//!
//! The run directory:
//! - `config.json`: every setting, the training and validation recordings, the program version;
//! - `metrics.jsonl`: one JSON object per finished epoch;
//! - `checkpoints/last.safetensors` (+ `last.optim.safetensors`): the newest state, written at
//!   every epoch's end and every `checkpoint_minutes` within an epoch;
//!   `checkpoints/epoch-NNNN.safetensors` (+ optimizer) every `checkpoint_every` epochs;
//! - `plots/`: the curves and a validation piano roll.
//!
//! Resuming replays the sampler's plan for the checkpoint's epoch (a pure function of the seed
//! and the epoch, see [`super::sampler`]) from the checkpoint's next batch; the model, Adam's
//! moments, the step count and the schedule come from the checkpoint, so the resumed run
//! computes exactly what the uninterrupted one would have.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::data::source::DataSource;
use crate::data::{Item, Split};
use crate::decode::DecodeOptions;
use crate::device::{Device, DeviceRequest};
use crate::fsutil;
use crate::metrics::{mean_std, score_recording, RecordingScores, ReferenceKind};
use crate::model::checkpoint::{self, optimizer_path, CheckpointError};
use crate::model::device_training::DeviceTrainer;
use crate::model::training::{loss_and_gradients, Optimizer, TrainingConfig};
use crate::model::{Tensor, Transcriber, MIN_FRAMES, N_BINS, N_KEYS};
use crate::notes::roll::{LabelRoll, HOP_LENGTH, KEY_COUNT};
use crate::ops::conv2d::{set_conv_precision, ConvPrecision};
use crate::ops::loss::bce_forward;
use crate::spectrogram::{features, Cqt, CqtParams};
use crate::train::adam::AdamConfig;
use crate::train::step_lr::{StepLr, STEP_LR_GAMMA, STEP_LR_STEP_SIZE};

use super::examples::{
    batch_seed, batch_seeds, make_batch, AugmentPreset, ExampleError, Prefetcher, Recording,
    SAMPLE_RATE_HZ,
};
use super::plots;
use super::sampler::{batches_per_epoch, epoch_batches, tiled_length};
use super::transfer::{self, FreezePart};

/// Every setting of a run; the defaults are the paper's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainSettings {
    pub data: Vec<DataSource>,
    /// Validation data; `None`: the validation splits of `data`.
    pub val: Option<DataSource>,
    pub epochs: u64,
    pub batch: usize,
    pub crop_frames: usize,
    pub lr: f64,
    pub lr_step: u64,
    pub lr_gamma: f64,
    /// Linear learning-rate warm-up over this many optimizer steps (0: none, as the paper).
    pub warmup_steps: u64,
    pub seed: u64,
    pub validate_every: u64,
    pub checkpoint_every: u64,
    /// `last.safetensors` is also written within an epoch when this many minutes have passed
    /// since the previous write.
    pub checkpoint_minutes: f64,
    /// Initialise `linear.bias` to the logit of each key's frame-on rate in the training labels.
    pub output_bias_prior: bool,
    /// Augmentation of the training crops (`none`, as the paper, or `recorded`: rooms, EQ,
    /// noise and gain drawn per crop from the run's seed). Runs written before it existed
    /// read as `none`.
    #[serde(default)]
    pub augment: AugmentPreset,
    /// Transfer: the checkpoint whose matching tensors initialise the network.
    pub init: Option<PathBuf>,
    /// Take the Adam state found beside `init` (as the original code did).
    pub init_optimizer: bool,
    pub freeze: Vec<FreezePart>,
    pub device: String,
    /// The precision of the CPU's convolution and LSTM products (`fp32`, or `bf16` on
    /// AVX512-BF16 CPUs: `tests/training_bf16.rs` bounds how far its gradients are from
    /// float32's). Runs written before it existed read as `fp32`.
    #[serde(default)]
    pub precision: ConvPrecision,
    /// Prepare the next batch on a loader thread while the step runs.
    pub prefetch: bool,
    /// Decoded training audio kept in memory up to this many MiB; the rest is decoded per crop.
    pub audio_cache_mib: usize,
}

impl Default for TrainSettings {
    fn default() -> Self {
        Self {
            data: Vec::new(),
            val: None,
            epochs: 2000,
            batch: 32,
            crop_frames: 640,
            lr: 0.01,
            lr_step: STEP_LR_STEP_SIZE,
            lr_gamma: STEP_LR_GAMMA,
            warmup_steps: 0,
            seed: 33,
            validate_every: 10,
            checkpoint_every: 50,
            checkpoint_minutes: 5.0,
            output_bias_prior: false,
            augment: AugmentPreset::None,
            init: None,
            init_optimizer: true,
            freeze: Vec::new(),
            device: "cpu".into(),
            precision: ConvPrecision::Fp32,
            prefetch: true,
            audio_cache_mib: 4096,
        }
    }
}

impl TrainSettings {
    /// The settings that define what a run computes, as JSON values by name: a resume must
    /// agree on all of them (the operational ones, `epochs`, `checkpoint_minutes`, `prefetch`,
    /// `audio_cache_mib`, `device`, `precision`, may change).
    pub fn defining(&self) -> BTreeMap<String, serde_json::Value> {
        let value = serde_json::to_value(self).expect("settings serialise");
        value
            .as_object()
            .expect("settings are an object")
            .iter()
            .filter(|(k, _)| {
                !matches!(
                    k.as_str(),
                    "epochs"
                        | "checkpoint_minutes"
                        | "prefetch"
                        | "audio_cache_mib"
                        | "device"
                        | "precision"
                )
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    fn check(&self) -> Result<(), TrainError> {
        let bad = |why: String| Err(TrainError::Settings(why));
        if self.data.is_empty() {
            return bad("no training data: give at least one --data KIND:PATH".into());
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1".into());
        }
        if self.crop_frames < MIN_FRAMES {
            return bad(format!(
                "--crop-frames {} is below the network's minimum of {MIN_FRAMES} frames",
                self.crop_frames
            ));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("--lr {} is not a positive number", self.lr));
        }
        if self.lr_step == 0 {
            return bad("--lr-step must be at least 1".into());
        }
        if !(self.lr_gamma.is_finite() && self.lr_gamma > 0.0) {
            return bad(format!(
                "--lr-gamma {} is not a positive number",
                self.lr_gamma
            ));
        }
        if self.validate_every == 0 || self.checkpoint_every == 0 {
            return bad("--validate-every and --checkpoint-every must be at least 1".into());
        }
        if self.checkpoint_minutes.is_nan() || self.checkpoint_minutes < 0.0 {
            return bad("--checkpoint-minutes must be 0 or more".into());
        }
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.precision == ConvPrecision::Bf16 {
            if self.device != "cpu" {
                return bad(format!(
                    "--precision bf16 applies to the cpu's products; the run trains on {}",
                    self.device
                ));
            }
            if let Err(e) = crate::ops::conv2d::check_bf16_supported() {
                return bad(format!("--precision bf16: {e}; use --precision fp32"));
            }
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    #[error("{0}")]
    Settings(String),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error("the training data has problems (nothing was trained):\n  {}", .0.join("\n  "))]
    DataProblems(Vec<String>),
    #[error(transparent)]
    Example(#[from] ExampleError),
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    #[error(transparent)]
    Spectrogram(#[from] crate::spectrogram::SpectrogramError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: {problem}", path.display())]
    RunDir { path: PathBuf, problem: String },
    #[error("the loss is {loss} at epoch {epoch}, step {step} (batch {batch} of the epoch): training stopped; the last good checkpoint is {} (step {good_step})", checkpoint.display())]
    NonFiniteLoss {
        loss: f32,
        epoch: u64,
        step: u64,
        batch: usize,
        checkpoint: PathBuf,
        good_step: u64,
    },
    #[error("parameter {name} holds {value} after epoch {epoch}, step {step}: training stopped; the last good checkpoint is {} (step {good_step})", checkpoint.display())]
    NonFiniteParameter {
        name: String,
        value: f32,
        epoch: u64,
        step: u64,
        checkpoint: PathBuf,
        good_step: u64,
    },
    #[error(transparent)]
    Transfer(#[from] transfer::TransferError),
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> TrainError + '_ {
    move |source| TrainError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// What a progress display is told.
#[derive(Debug, Clone)]
pub struct StepProgress {
    pub epoch: u64,
    pub epochs: u64,
    pub batch: usize,
    pub batches: usize,
    /// Steps this run has taken (counted from its start, not from a transferred Adam state),
    /// and the total it will take.
    pub step: u64,
    pub total_steps: u64,
    /// Mean loss of the epoch so far.
    pub loss: f64,
    pub steps_per_s: f64,
}

/// Where a run reports: messages and progress.
pub trait Reporter {
    fn message(&mut self, line: &str);
    fn progress(&mut self, progress: &StepProgress);
    /// The run is over (or stopped); clear any live display.
    fn finish(&mut self) {}
}

/// Reports nothing (tests, library callers that print their own).
pub struct QuietReporter;

impl Reporter for QuietReporter {
    fn message(&mut self, _line: &str) {}
    fn progress(&mut self, _progress: &StepProgress) {}
}

/// The run directory's files.
#[derive(Debug, Clone)]
pub struct RunPaths {
    pub root: PathBuf,
}

impl RunPaths {
    pub fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.json")
    }
    pub fn metrics(&self) -> PathBuf {
        self.root.join("metrics.jsonl")
    }
    pub fn checkpoints(&self) -> PathBuf {
        self.root.join("checkpoints")
    }
    pub fn last(&self) -> PathBuf {
        self.checkpoints().join("last.safetensors")
    }
    /// The state being committed: written in full, then renamed over `last`.
    fn pending(&self) -> PathBuf {
        self.checkpoints().join(".pending.safetensors")
    }
    pub fn epoch_checkpoint(&self, epoch: u64) -> PathBuf {
        self.checkpoints()
            .join(format!("epoch-{epoch:04}.safetensors"))
    }
    pub fn plots(&self) -> PathBuf {
        self.root.join("plots")
    }
}

/// A recording's entry in `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordingEntry {
    pub name: String,
    pub audio: PathBuf,
    pub labels: PathBuf,
    pub samples: usize,
}

/// `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    pub program: String,
    pub version: String,
    pub settings: TrainSettings,
    pub train_recordings: Vec<RecordingEntry>,
    pub val_recordings: Vec<RecordingEntry>,
    /// What `--init` copied and did not copy (transfer runs).
    #[serde(default)]
    pub transfer: Option<transfer::TransferReport>,
}

/// Where the loop stands, kept in the checkpoint's metadata.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Position {
    /// The epoch being trained (1-based).
    epoch: u64,
    /// The next batch of that epoch.
    next_batch: usize,
    /// Sum and count of the epoch's losses so far (f64, exact across a resume).
    loss_sum: f64,
    loss_count: u64,
}

impl Position {
    const START: Position = Position {
        epoch: 1,
        next_batch: 0,
        loss_sum: 0.0,
        loss_count: 0,
    };

    fn to_metadata(self) -> BTreeMap<String, String> {
        BTreeMap::from([
            ("epoch".to_string(), self.epoch.to_string()),
            ("next_batch".to_string(), self.next_batch.to_string()),
            (
                "loss_sum_bits".to_string(),
                format!("{:016x}", self.loss_sum.to_bits()),
            ),
            ("loss_count".to_string(), self.loss_count.to_string()),
        ])
    }

    fn from_metadata(path: &Path, meta: &BTreeMap<String, String>) -> Result<Self, TrainError> {
        let get = |key: &str| {
            meta.get(key).ok_or_else(|| TrainError::RunDir {
                path: optimizer_path(path),
                problem: format!(
                    "metadata extra.{key} is missing: not a checkpoint of `mtosi train`"
                ),
            })
        };
        let bad = |key: &str, text: &str| TrainError::RunDir {
            path: optimizer_path(path),
            problem: format!("metadata extra.{key} = {text:?} is not valid"),
        };
        let epoch_text = get("epoch")?;
        let batch_text = get("next_batch")?;
        let bits_text = get("loss_sum_bits")?;
        let count_text = get("loss_count")?;
        Ok(Position {
            epoch: epoch_text.parse().map_err(|_| bad("epoch", epoch_text))?,
            next_batch: batch_text
                .parse()
                .map_err(|_| bad("next_batch", batch_text))?,
            loss_sum: f64::from_bits(
                u64::from_str_radix(bits_text, 16).map_err(|_| bad("loss_sum_bits", bits_text))?,
            ),
            loss_count: count_text
                .parse()
                .map_err(|_| bad("loss_count", count_text))?,
        })
    }
}

/// A finished (or stopped-at-the-end) run.
#[derive(Debug, Clone)]
pub struct RunSummary {
    pub epochs_done: u64,
    pub steps: u64,
    pub last_loss: Option<f64>,
    pub last_checkpoint: PathBuf,
}

/// The recordings of a run, loaded and checked.
struct RunData {
    train: Arc<Vec<Recording>>,
    val: Vec<Recording>,
}

fn entries(recordings: &[Recording]) -> Vec<RecordingEntry> {
    recordings
        .iter()
        .map(|r| RecordingEntry {
            name: r.name.clone(),
            audio: r.audio_path.clone(),
            labels: r.label_path.clone(),
            samples: r.samples,
        })
        .collect()
}

/// Lists the training and validation items, decodes and checks every file, and reports every
/// problem by name before anything is trained.
fn load_data(settings: &TrainSettings, reporter: &mut dyn Reporter) -> Result<RunData, TrainError> {
    let mut problems = Vec::new();
    let mut train_items: Vec<Item> = Vec::new();
    let mut val_items: Vec<Item> = Vec::new();
    for source in &settings.data {
        let (items, report) = source.split_items(Split::Train)?;
        if items.is_empty() {
            problems.push(format!(
                "{source}: no training recordings (audio with labels) found"
            ));
        }
        for line in report {
            reporter.message(&format!("note: {line}"));
        }
        train_items.extend(items);
        if settings.val.is_none() && source.kind != crate::data::source::DataKind::Folder {
            val_items.extend(source.split_items(Split::Validation)?.0);
        }
    }
    if let Some(val) = &settings.val {
        let (items, report) = val.split_items(Split::Validation)?;
        for line in report {
            reporter.message(&format!("note: {line}"));
        }
        if items.is_empty() {
            problems.push(format!(
                "{val}: no validation recordings (audio with labels) found"
            ));
        }
        val_items = items;
    }
    // Decoded audio is kept while the budget lasts (which recordings fit depends on the
    // decoding order, which changes only speed, never a result).
    let budget =
        std::sync::atomic::AtomicUsize::new(settings.audio_cache_mib.saturating_mul(1 << 20));
    let keep = |samples: usize| {
        let bytes = samples * 4;
        budget
            .fetch_update(
                std::sync::atomic::Ordering::Relaxed,
                std::sync::atomic::Ordering::Relaxed,
                |left| left.checked_sub(bytes),
            )
            .is_ok()
    };
    let crop_samples = settings.crop_frames * HOP_LENGTH;
    let loaded: Vec<Result<Recording, ExampleError>> = {
        use rayon::prelude::*;
        train_items
            .par_iter()
            .map(|item| Recording::load(item, keep))
            .collect()
    };
    let mut train = Vec::with_capacity(train_items.len());
    for result in loaded {
        match result {
            Ok(rec) => train.push(rec),
            Err(err) => problems.push(err.to_string()),
        }
    }
    let mut val = Vec::with_capacity(val_items.len());
    for item in &val_items {
        match Recording::load(item, |_| false) {
            Ok(rec) if crate::notes::roll::frame_count(rec.samples, HOP_LENGTH) < MIN_FRAMES => {
                reporter.message(&format!(
                    "note: validation recording {} is shorter than {MIN_FRAMES} frames and is left out",
                    rec.name
                ));
            }
            Ok(rec) => val.push(rec),
            Err(err) => problems.push(err.to_string()),
        }
    }
    if problems.is_empty() && train.len() < settings.batch {
        problems.push(format!(
            "{} training recordings make no full batch of {} (the last partial batch of an epoch is dropped)",
            train.len(),
            settings.batch
        ));
    }
    if !problems.is_empty() {
        return Err(TrainError::DataProblems(problems));
    }
    let cached = train.iter().filter(|r| r.is_cached()).count();
    reporter.message(&format!(
        "{} training recordings ({:.1} h; {} held in memory), {} validation recordings; crops of {} samples",
        train.len(),
        train.iter().map(|r| r.samples).sum::<usize>() as f64 / f64::from(SAMPLE_RATE_HZ) / 3600.0,
        cached,
        val.len(),
        crop_samples
    ));
    Ok(RunData {
        train: Arc::new(train),
        val,
    })
}

/// Frame-on rate of each key over all training labels (untiled recordings).
pub fn key_on_rates(recordings: &[Recording]) -> Vec<f64> {
    let mut on = vec![0u64; KEY_COUNT];
    let mut frames = 0u64;
    for rec in recordings {
        let roll = LabelRoll::from_notes(&rec.notes, rec.samples, SAMPLE_RATE_HZ, HOP_LENGTH);
        frames += roll.frames as u64;
        for (i, v) in roll.frame_roll().iter().enumerate() {
            if *v > 0.0 {
                on[i % KEY_COUNT] += 1;
            }
        }
    }
    on.iter()
        .map(|&n| n as f64 / frames.max(1) as f64)
        .collect()
}

/// Sets `linear.bias` to `logit(rate)` per key, rates clamped to [1e-5, 1 − 1e-5] so that a
/// key never (or always) on gets a finite bias.
fn apply_output_bias_prior(model: &mut Transcriber, rates: &[f64]) {
    for p in model.params_mut() {
        if p.name == "linear.bias" {
            for (b, &r) in p.value.iter_mut().zip(rates) {
                let r = r.clamp(1e-5, 1.0 - 1e-5);
                *b = (r / (1.0 - r)).ln() as f32;
            }
        }
    }
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<(), TrainError> {
    let text = serde_json::to_string_pretty(value).expect("serialisable");
    fsutil::write_bytes_atomic(path, text.as_bytes()).map_err(io_error(path))
}

fn read_config(paths: &RunPaths) -> Result<RunConfig, TrainError> {
    let path = paths.config();
    let text = std::fs::read_to_string(&path).map_err(|source| TrainError::RunDir {
        path: path.clone(),
        problem: format!(
            "cannot read the run's config ({source}); is this a run directory of `mtosi train`?"
        ),
    })?;
    serde_json::from_str(&text).map_err(|e| TrainError::RunDir {
        path,
        problem: format!("not a valid run config: {e}"),
    })
}

/// The state the loop works on.
struct Trainer<'a> {
    settings: TrainSettings,
    paths: RunPaths,
    data: RunData,
    cqt: Arc<Cqt>,
    model: Transcriber,
    optimizer: Optimizer,
    frozen: Vec<bool>,
    config: TrainingConfig,
    reporter: &'a mut dyn Reporter,
    /// Step of the newest checkpoint on disk.
    good_step: u64,
    /// The optimizer's step count when this run started (non-zero after a transfer that took
    /// the source's Adam state): warm-up and progress count from it.
    step_base: u64,
    last_save: Instant,
}

/// The network and optimizer a run starts from: the seeded initialisation, then `--init`'s
/// tensors (and Adam state), then the output-bias prior. A pure function of the settings and
/// the data, so a run killed before its first checkpoint restarts from the same state.
fn initial_state(
    settings: &TrainSettings,
    data: &RunData,
    reporter: &mut dyn Reporter,
) -> Result<(Transcriber, Optimizer, Option<transfer::TransferReport>), TrainError> {
    let mut model = Transcriber::new(settings.seed);
    let adam = AdamConfig {
        lr: settings.lr,
        ..AdamConfig::default()
    };
    let mut optimizer = Optimizer::new(&mut model, adam);
    optimizer.scheduler = StepLr::new(settings.lr, settings.lr_step, settings.lr_gamma);
    let mut transfer_report = None;
    if let Some(init) = &settings.init {
        let report =
            transfer::init_from(init, &mut model, &mut optimizer, settings.init_optimizer)?;
        for line in report.lines() {
            reporter.message(&line);
        }
        transfer_report = Some(report);
    }
    if settings.output_bias_prior {
        apply_output_bias_prior(&mut model, &key_on_rates(&data.train));
        reporter.message(
            "linear.bias set to the logit of each key's frame-on rate in the training labels",
        );
    }
    Ok((model, optimizer, transfer_report))
}

/// Starts a new run in `run_dir` (which must not hold one already).
pub fn start_run(
    settings: TrainSettings,
    run_dir: &Path,
    reporter: &mut dyn Reporter,
) -> Result<RunSummary, TrainError> {
    settings.check()?;
    let paths = RunPaths::new(run_dir);
    if paths.config().exists() {
        return Err(TrainError::RunDir {
            path: paths.config(),
            problem:
                "a run already exists here: continue it with --resume, or choose another --out"
                    .into(),
        });
    }
    let data = load_data(&settings, reporter)?;
    let (mut model, optimizer, transfer_report) = initial_state(&settings, &data, reporter)?;
    for dir in [paths.root.clone(), paths.checkpoints(), paths.plots()] {
        std::fs::create_dir_all(&dir).map_err(io_error(&dir))?;
    }
    let config = RunConfig {
        program: "mtosi".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        settings: settings.clone(),
        train_recordings: entries(&data.train),
        val_recordings: entries(&data.val),
        transfer: transfer_report,
    };
    write_json(&paths.config(), &config)?;
    fsutil::write_bytes_atomic(&paths.metrics(), b"").map_err(io_error(&paths.metrics()))?;
    let frozen = transfer::frozen_mask(&mut model, &settings.freeze);
    let mut trainer = Trainer::new(settings, paths, data, model, optimizer, frozen, reporter)?;
    trainer.save_last(Position::START)?;
    trainer.run(Position::START)
}

/// Continues the run in `run_dir` from its last checkpoint; `epochs` may extend (or shorten)
/// it, `overrides` are settings given again on the command line, which must agree with the
/// run's config.
pub fn resume_run(
    run_dir: &Path,
    epochs: Option<u64>,
    overrides: &BTreeMap<String, serde_json::Value>,
    reporter: &mut dyn Reporter,
) -> Result<RunSummary, TrainError> {
    let paths = RunPaths::new(run_dir);
    let config = read_config(&paths)?;
    let stored = config.settings.defining();
    let mut disagreements = Vec::new();
    for (key, value) in overrides {
        match stored.get(key) {
            Some(old) if old != value => disagreements.push(format!(
                "{key}: the run has {old}, the command line {value}"
            )),
            _ => {}
        }
    }
    if !disagreements.is_empty() {
        return Err(TrainError::RunDir {
            path: paths.config(),
            problem: format!(
                "the run's config disagrees with the command line (resume with the run's own settings, or start a new run):\n  {}",
                disagreements.join("\n  ")
            ),
        });
    }
    let mut settings = config.settings.clone();
    if let Some(epochs) = epochs {
        settings.epochs = epochs;
    }
    for (key, value) in overrides {
        if matches!(
            key.as_str(),
            "checkpoint_minutes" | "prefetch" | "audio_cache_mib" | "device" | "precision"
        ) {
            let mut object = serde_json::to_value(&settings).expect("settings serialise");
            object[key] = value.clone();
            settings =
                serde_json::from_value(object).map_err(|e| TrainError::Settings(e.to_string()))?;
        }
    }
    settings.check()?;
    let data = load_data(&settings, reporter)?;
    if entries(&data.train) != config.train_recordings
        || entries(&data.val) != config.val_recordings
    {
        return Err(TrainError::RunDir {
            path: paths.config(),
            problem: "the training or validation recordings differ from those the run started with (files added, removed or changed): resuming would not continue the same run".into(),
        });
    }
    let last = paths.last();
    let (mut model, optimizer, position) = if recover_checkpoint(&paths)? {
        let mut model = Transcriber::new(settings.seed);
        let (optimizer, extra) = checkpoint::load_training_state(&last, &mut model)?;
        let position = Position::from_metadata(&last, &extra)?;
        (model, optimizer, position)
    } else {
        reporter.message("the run stopped before its first checkpoint: starting it again");
        let (model, optimizer, _) = initial_state(&settings, &data, reporter)?;
        (model, optimizer, Position::START)
    };
    let frozen = transfer::frozen_mask(&mut model, &settings.freeze);
    truncate_metrics(&paths, position.epoch)?;
    reporter.message(&format!(
        "resuming at epoch {}, batch {} (step {})",
        position.epoch, position.next_batch, optimizer.step
    ));
    let mut trainer = Trainer::new(settings, paths, data, model, optimizer, frozen, reporter)?;
    trainer.run(position)
}

/// Finishes or discards a checkpoint write that a kill interrupted (see [`Trainer::save_last`]);
/// says whether there is a checkpoint to resume from.
fn recover_checkpoint(paths: &RunPaths) -> Result<bool, TrainError> {
    let pending = paths.pending();
    let pending_optim = optimizer_path(&pending);
    let last = paths.last();
    // Leftover temporary files of atomic writes.
    if let Ok(entries) = std::fs::read_dir(paths.checkpoints()) {
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') && name.contains(".tmp-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
    if pending.exists() && !pending_optim.exists() {
        // The optimizer file was already renamed over last's: the model must follow it.
        std::fs::rename(&pending, &last).map_err(io_error(&pending))?;
    } else {
        for path in [&pending, &pending_optim] {
            if path.exists() {
                std::fs::remove_file(path).map_err(io_error(path))?;
            }
        }
    }
    Ok(last.exists())
}

/// Keeps the metrics lines of epochs before `epoch` (later ones are recomputed).
fn truncate_metrics(paths: &RunPaths, epoch: u64) -> Result<(), TrainError> {
    let path = paths.metrics();
    let text = std::fs::read_to_string(&path).unwrap_or_default();
    let kept: String = text
        .lines()
        .filter(|line| {
            serde_json::from_str::<serde_json::Value>(line)
                .ok()
                .and_then(|v| v["epoch"].as_u64())
                .is_some_and(|e| e < epoch)
        })
        .map(|line| format!("{line}\n"))
        .collect();
    fsutil::write_bytes_atomic(&path, kept.as_bytes()).map_err(io_error(&path))
}

/// Appends one line to a small file, atomically (the whole file is rewritten).
fn append_line(path: &Path, line: &str) -> Result<(), TrainError> {
    let mut text = std::fs::read_to_string(path).unwrap_or_default();
    text.push_str(line);
    text.push('\n');
    fsutil::write_bytes_atomic(path, text.as_bytes()).map_err(io_error(path))
}

/// The reference validation scores against: the notes read back from the label roll, as the
/// paper's code validated.
pub const VALIDATION_REFERENCE: ReferenceKind = ReferenceKind::LabelRoll;

/// Validation figures of one pass.
#[derive(Debug, Clone)]
pub struct Validation {
    /// Mean over recordings of the whole-recording BCE loss.
    pub loss: f64,
    /// Mean over recordings of the paper's scores (against [`VALIDATION_REFERENCE`]).
    pub scores: RecordingScores,
    /// The first recording's name, frame roll and estimated roll (for the plot).
    pub example: Option<(String, Vec<f32>, Vec<f32>)>,
}

/// The network in evaluation mode on every validation recording, whole.
pub fn validate(
    model: &mut Transcriber,
    cqt: &Cqt,
    recordings: &[Recording],
) -> Result<Validation, TrainError> {
    validate_on(&Device::Cpu, model, cqt, recordings)
}

/// [`validate`] with the network on `device` (the run's: on a kernel device the parameters are
/// uploaded once per recording).
pub fn validate_on(
    device: &Device,
    model: &mut Transcriber,
    cqt: &Cqt,
    recordings: &[Recording],
) -> Result<Validation, TrainError> {
    let mut losses = Vec::with_capacity(recordings.len());
    let mut scores = Vec::with_capacity(recordings.len());
    let mut example = None;
    for rec in recordings {
        let audio = rec.audio()?;
        let (frames, spec) = features::model_input(cqt, &audio)?;
        let reference =
            LabelRoll::from_notes(&rec.notes, rec.samples, SAMPLE_RATE_HZ, HOP_LENGTH).frame_roll();
        let roll = crate::model::inference::forward_eval_on(
            device,
            model,
            &Tensor::new(vec![1, frames, N_BINS], spec),
        )?;
        // Whole recordings come in sizes no training step reuses: give their buffers back.
        crate::model::storage::release_pool();
        losses.push(f64::from(bce_forward(&roll, &reference)));
        scores.push(
            score_recording(
                &roll,
                &rec.notes,
                rec.samples,
                VALIDATION_REFERENCE,
                &DecodeOptions::default(),
            )
            .map_err(|e| TrainError::Settings(format!("validation of {}: {e}", rec.name)))?,
        );
        if example.is_none() {
            example = Some((rec.name.clone(), reference, roll));
        }
    }
    let loss = if losses.is_empty() {
        f64::NAN
    } else {
        losses.iter().sum::<f64>() / losses.len() as f64
    };
    Ok(Validation {
        loss,
        scores: mean_std(&scores).0,
        example,
    })
}

impl<'a> Trainer<'a> {
    fn new(
        settings: TrainSettings,
        paths: RunPaths,
        data: RunData,
        model: Transcriber,
        optimizer: Optimizer,
        frozen: Vec<bool>,
        reporter: &'a mut dyn Reporter,
    ) -> Result<Self, TrainError> {
        let cqt = Arc::new(Cqt::new(CqtParams::default())?);
        let good_step = optimizer.step;
        Ok(Self {
            settings,
            paths,
            data,
            cqt,
            model,
            optimizer,
            frozen,
            config: TrainingConfig::default(),
            reporter,
            good_step,
            step_base: 0,
            last_save: Instant::now(),
        })
    }

    fn lengths(&self) -> Vec<usize> {
        let crop_samples = self.settings.crop_frames * HOP_LENGTH;
        self.data
            .train
            .iter()
            .map(|r| tiled_length(r.samples, crop_samples))
            .collect()
    }

    /// The first parameter holding a non-finite value.
    fn non_finite_parameter(&mut self) -> Option<(String, f32)> {
        self.model.params_mut().into_iter().find_map(|p| {
            p.value
                .iter()
                .find(|v| !v.is_finite())
                .map(|&v| (p.name.clone(), v))
        })
    }

    /// Writes the state as `last` with two atomic renames: both files go to `.pending` names
    /// first; the optimizer file is renamed over `last.optim`, then the model over `last`. A
    /// kill between the renames leaves `.pending.safetensors` alone, which
    /// [`recover_checkpoint`] renames into place.
    fn save_last(&mut self, position: Position) -> Result<(), TrainError> {
        let pending = self.paths.pending();
        checkpoint::save_training_state(
            &pending,
            &mut self.model,
            &self.optimizer,
            &position.to_metadata(),
        )?;
        let last = self.paths.last();
        std::fs::rename(optimizer_path(&pending), optimizer_path(&last))
            .map_err(io_error(&pending))?;
        std::fs::rename(&pending, &last).map_err(io_error(&pending))?;
        self.good_step = self.optimizer.step;
        self.last_save = Instant::now();
        Ok(())
    }

    fn guard_parameters(&mut self, epoch: u64) -> Result<(), TrainError> {
        if let Some((name, value)) = self.non_finite_parameter() {
            return Err(TrainError::NonFiniteParameter {
                name,
                value,
                epoch,
                step: self.optimizer.step,
                checkpoint: self.paths.last(),
                good_step: self.good_step,
            });
        }
        Ok(())
    }

    fn lr_factor(&self) -> f64 {
        let w = self.settings.warmup_steps;
        let step = self.optimizer.step - self.step_base;
        if w > 0 && step < w {
            (step + 1) as f64 / w as f64
        } else {
            1.0
        }
    }

    fn run(&mut self, mut position: Position) -> Result<RunSummary, TrainError> {
        let result = self.run_inner(&mut position);
        self.reporter.finish();
        result
    }

    /// The device `settings.device` names (`cpu`, `emu`, `cuda:N`), opened.
    fn open_device(&mut self) -> Result<Device, TrainError> {
        let device = &self.settings.device;
        let selection = device
            .parse::<DeviceRequest>()
            .and_then(DeviceRequest::open)
            .map_err(|e| TrainError::Settings(format!("--device {device}: {e}")))?;
        // `check` refused bf16 off the cpu and on CPUs without AVX512-BF16.
        let precision = self.settings.precision;
        set_conv_precision(precision)
            .map_err(|e| TrainError::Settings(format!("--precision bf16: {e}")))?;
        let products = match precision {
            ConvPrecision::Fp32 => "",
            ConvPrecision::Bf16 => ", bf16 convolution and LSTM products",
        };
        self.reporter
            .message(&format!("training on {}{products}", selection.reason));
        Ok(selection.device)
    }

    fn run_inner(&mut self, position: &mut Position) -> Result<RunSummary, TrainError> {
        let device = self.open_device()?;
        // On a kernel device the network and Adam's state live there between checkpoints:
        // `sync` brings them back into `self.model` and `self.optimizer` before each use.
        let mut on_device = match &device {
            Device::Kernels(kernels) => {
                let mut trainer = DeviceTrainer::upload(kernels, &mut self.model, &self.optimizer)?;
                trainer.set_frozen(&self.frozen);
                Some(trainer)
            }
            Device::Cpu => None,
        };
        let sync = |trainer: &mut Option<DeviceTrainer>,
                    model: &mut Transcriber,
                    optimizer: &mut Optimizer|
         -> Result<(), TrainError> {
            match trainer {
                Some(t) => Ok(t.download_into(model, optimizer)?),
                None => Ok(()),
            }
        };
        let settings = self.settings.clone();
        let lengths = self.lengths();
        let batches = batches_per_epoch(lengths.len(), settings.batch);
        let total_steps = settings.epochs * batches as u64;
        let done_in_run = (position.epoch - 1) * batches as u64 + position.next_batch as u64;
        self.step_base = self.optimizer.step.saturating_sub(done_in_run);
        let mut last_loss = None;
        let started = Instant::now();
        let steps_at_start = self.optimizer.step;
        let crop_samples = settings.crop_frames * HOP_LENGTH;
        let minutes = settings.checkpoint_minutes;
        while position.epoch <= settings.epochs {
            let epoch = position.epoch;
            let plan = epoch_batches(
                &lengths,
                crop_samples,
                HOP_LENGTH,
                settings.batch,
                settings.seed,
                epoch,
            );
            let todo: Vec<_> = plan[position.next_batch..].to_vec();
            let mut prefetcher = settings.prefetch.then(|| {
                Prefetcher::start(
                    Arc::clone(&self.data.train),
                    Arc::clone(&self.cqt),
                    todo.clone(),
                    settings.crop_frames,
                    settings.augment.augmentation(),
                    batch_seeds(settings.seed, epoch, position.next_batch, todo.len()),
                    1,
                )
            });
            let epoch_started = Instant::now();
            let (mut step_s, mut wait_s, mut prepare_s, mut steps_here) = (0.0, 0.0, 0.0, 0u64);
            let first_batch = position.next_batch;
            for (offset, crops) in todo.iter().enumerate() {
                let batch_index = first_batch + offset;
                let wait_started = Instant::now();
                let batch = match prefetcher.as_mut() {
                    Some(p) => p.next_batch()?.0,
                    None => make_batch(
                        &self.data.train,
                        &self.cqt,
                        crops,
                        settings.crop_frames,
                        &settings.augment.augmentation(),
                        batch_seed(settings.seed, epoch, batch_index),
                    )?,
                };
                wait_s += wait_started.elapsed().as_secs_f64();
                prepare_s += batch.prepare_s;
                let step_started = Instant::now();
                let loss = match on_device.as_mut() {
                    Some(t) => {
                        t.loss_and_gradients(&batch.spec, &batch.frame_roll, &self.config.hooks)?
                    }
                    None => {
                        loss_and_gradients(
                            &mut self.model,
                            &batch.spec,
                            &batch.frame_roll,
                            &self.config.hooks,
                        )?
                        .1
                    }
                };
                if !loss.is_finite() {
                    return Err(TrainError::NonFiniteLoss {
                        loss,
                        epoch,
                        step: self.optimizer.step + 1,
                        batch: batch_index + 1,
                        checkpoint: self.paths.last(),
                        good_step: self.good_step,
                    });
                }
                let factor = self.lr_factor();
                match on_device.as_mut() {
                    Some(t) => {
                        t.optimizer_step(self.config.clip_value, factor)?;
                        // The host's counters follow the device's (warm-up, progress).
                        self.optimizer.step = t.step;
                        self.optimizer.scheduler = t.scheduler;
                    }
                    None => self.optimizer.step_scaled(
                        &mut self.model,
                        self.config.clip_value,
                        factor,
                        &self.frozen,
                    ),
                }
                step_s += step_started.elapsed().as_secs_f64();
                steps_here += 1;
                position.loss_sum += f64::from(loss);
                position.loss_count += 1;
                position.next_batch = batch_index + 1;
                let elapsed = started.elapsed().as_secs_f64();
                self.reporter.progress(&StepProgress {
                    epoch,
                    epochs: settings.epochs,
                    batch: batch_index + 1,
                    batches,
                    step: self.optimizer.step - self.step_base,
                    total_steps,
                    loss: position.loss_sum / position.loss_count as f64,
                    steps_per_s: (self.optimizer.step - steps_at_start) as f64 / elapsed.max(1e-9),
                });
                let more_in_epoch = batch_index + 1 < plan.len();
                if more_in_epoch && self.last_save.elapsed().as_secs_f64() >= minutes * 60.0 {
                    sync(&mut on_device, &mut self.model, &mut self.optimizer)?;
                    self.guard_parameters(epoch)?;
                    self.save_last(*position)?;
                }
            }
            drop(prefetcher);
            sync(&mut on_device, &mut self.model, &mut self.optimizer)?;
            self.guard_parameters(epoch)?;
            let loss = position.loss_sum / position.loss_count.max(1) as f64;
            last_loss = Some(loss);
            let mut line = json!({
                "epoch": epoch,
                "step": self.optimizer.step,
                "loss": loss,
                "lr": self.optimizer.scheduler.lr() * self.lr_factor(),
                "step_s": step_s / steps_here.max(1) as f64,
                "wait_s": wait_s / steps_here.max(1) as f64,
                "prepare_s": prepare_s / steps_here.max(1) as f64,
                "prefetch": settings.prefetch,
                "epoch_s": epoch_started.elapsed().as_secs_f64(),
            });
            if epoch.is_multiple_of(settings.validate_every) && !self.data.val.is_empty() {
                let validation = validate_on(&device, &mut self.model, &self.cqt, &self.data.val)?;
                line["val_loss"] = json!(validation.loss);
                for (name, value) in crate::evaluate::figures(&validation.scores) {
                    line[format!("val_{name}")] = json!(value);
                }
                line["val_reference"] = json!("roll");
                if let Some((name, reference, estimate)) = &validation.example {
                    plots::write_roll_plot(
                        &self.paths.plots().join("val-roll.png"),
                        &format!("{name}, epoch {epoch}"),
                        reference,
                        estimate,
                        N_KEYS,
                    )
                    .map_err(io_error(&self.paths.plots()))?;
                }
                self.reporter.message(&format!(
                    "epoch {epoch}: loss {loss:.5}, validation loss {:.5}, F1 frame {:.3} note {:.3} note-with-offset {:.3}",
                    validation.loss,
                    validation.scores.frame.f1,
                    validation.scores.note.f1,
                    validation.scores.note_with_offset.f1
                ));
            }
            append_line(&self.paths.metrics(), &line.to_string())?;
            plots::write_curves(&self.paths.metrics(), &self.paths.plots())
                .map_err(io_error(&self.paths.plots()))?;
            let next = Position {
                epoch: epoch + 1,
                next_batch: 0,
                loss_sum: 0.0,
                loss_count: 0,
            };
            if epoch.is_multiple_of(settings.checkpoint_every) || epoch == settings.epochs {
                let path = self.paths.epoch_checkpoint(epoch);
                checkpoint::save_training_state(
                    &path,
                    &mut self.model,
                    &self.optimizer,
                    &next.to_metadata(),
                )?;
            }
            self.save_last(next)?;
            *position = next;
        }
        Ok(RunSummary {
            epochs_done: position.epoch - 1,
            steps: self.optimizer.step,
            last_loss,
            last_checkpoint: self.paths.last(),
        })
    }
}

/// Whether progress goes to a terminal (a live bar) or to a log (plain lines).
pub fn stderr_is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

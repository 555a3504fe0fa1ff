//! Timing of one training step and of the evaluation forward pass, with an optional per-layer
//! breakdown: the library side of `mtosi bench-step` (BENCHMARKS.md, "Training step (CPU)").

use std::time::{Duration, Instant};

use crate::device::KernelDevice;

use super::device_training::DeviceTrainer;
use super::init::uniform_unit;
use super::profile::{self, Record};
use super::tensor::{Mode, Tensor};
use super::training::{train_step, Optimizer, TrainingConfig};
use super::transcriber::{check_input_shape, Transcriber, N_BINS, N_KEYS};
use super::ModelError;

/// Wall-clock times of repeated runs, and the process CPU time (user + system, all threads)
/// they used together, which a shared, loaded machine disturbs less than wall time.
#[derive(Debug, Clone)]
pub struct Timings {
    pub runs: Vec<Duration>,
    pub cpu: Option<Duration>,
}

/// CPU time this process has used so far (Linux: `/proc/self/stat`, in clock ticks of 10 ms).
fn process_cpu_time() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

/// Runs `run` `repeats` times (at least once), timing each, and the CPU time of all of them.
fn repeat(
    repeats: usize,
    mut run: impl FnMut() -> Result<Duration, ModelError>,
) -> Result<Timings, ModelError> {
    let cpu_before = process_cpu_time();
    let runs = (0..repeats.max(1))
        .map(|_| run())
        .collect::<Result<_, _>>()?;
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    Ok(Timings { runs, cpu })
}

impl Timings {
    pub fn median(&self) -> Duration {
        let mut sorted = self.runs.clone();
        sorted.sort();
        sorted[sorted.len() / 2]
    }

    pub fn min(&self) -> Duration {
        *self.runs.iter().min().unwrap()
    }

    pub fn max(&self) -> Duration {
        *self.runs.iter().max().unwrap()
    }
}

/// A random model input (uniform in [0, 1), like a min-max normalised spectrogram) and a frame
/// roll with 10% of cells on.
pub fn random_batch(seed: u64, batch: usize, frames: usize) -> (Tensor, Tensor) {
    let spec: Vec<f32> = uniform_unit(seed, "bench.spec", batch * frames * N_BINS)
        .map(|u| u as f32)
        .collect();
    let roll: Vec<f32> = uniform_unit(seed, "bench.roll", batch * frames * N_KEYS)
        .map(|u| if u < 0.1 { 1.0 } else { 0.0 })
        .collect();
    (
        Tensor::new(vec![batch, frames, N_BINS], spec),
        Tensor::new(vec![batch, frames, N_KEYS], roll),
    )
}

/// Times `repeats` training steps (forward, backward, clip, Adam) after one warm-up step; with
/// `breakdown`, one more step is run with per-layer accounting, returned beside the timings.
/// A batch of 0 or fewer than [`MIN_FRAMES`](super::MIN_FRAMES) frames is an error.
pub fn time_train_step(
    batch: usize,
    frames: usize,
    repeats: usize,
    breakdown: bool,
) -> Result<(Timings, Vec<Record>), ModelError> {
    check_input_shape(&[batch, frames, N_BINS])?;
    let config = TrainingConfig::default();
    let mut model = Transcriber::new(33);
    let mut optimizer = Optimizer::new(&mut model, config.adam);
    let (spec, roll) = random_batch(1, batch, frames);
    let mut step = || {
        let start = Instant::now();
        train_step(&mut model, &mut optimizer, &spec, &roll, &config)?;
        Ok(start.elapsed())
    };
    step()?;
    let timings = repeat(repeats, &mut step)?;
    let records = if breakdown {
        profile::set_enabled(true);
        profile::take();
        let accounted = step();
        profile::set_enabled(false);
        accounted?;
        profile::take()
    } else {
        Vec::new()
    };
    Ok((timings, records))
}

/// Times the evaluation-mode forward pass on one (frames × 176) spectrogram, after a warm-up.
/// Fewer than [`MIN_FRAMES`](super::MIN_FRAMES) frames is an error.
pub fn time_eval_forward(
    frames: usize,
    repeats: usize,
    breakdown: bool,
) -> Result<(Timings, Vec<Record>), ModelError> {
    check_input_shape(&[1, frames, N_BINS])?;
    let mut model = Transcriber::new(33);
    model.set_mode(Mode::Eval);
    let (spec, _) = random_batch(2, 1, frames);
    let mut forward = || {
        let start = Instant::now();
        model.forward(&spec)?;
        Ok(start.elapsed())
    };
    forward()?;
    let timings = repeat(repeats, &mut forward)?;
    let records = if breakdown {
        profile::set_enabled(true);
        profile::take();
        let accounted = forward();
        profile::set_enabled(false);
        accounted?;
        profile::take()
    } else {
        Vec::new()
    };
    Ok((timings, records))
}

/// [`time_eval_forward`] on a kernel device: the parameters are uploaded once, before the
/// warm-up; each timed run uploads the spectrogram, runs the network's kernels and downloads
/// the piano roll (which waits for the device).
pub fn time_eval_forward_on(
    device: &KernelDevice,
    frames: usize,
    repeats: usize,
) -> Result<Timings, ModelError> {
    check_input_shape(&[1, frames, N_BINS])?;
    let mut model = Transcriber::new(33);
    model.set_mode(Mode::Eval);
    let mut network = Transcriber::upload(device, &mut model)?;
    let (spec, _) = random_batch(2, 1, frames);
    let mut forward = || {
        let start = Instant::now();
        network.forward_host(spec.data(), spec.shape())?;
        Ok(start.elapsed())
    };
    forward()?;
    repeat(repeats, &mut forward)
}

/// [`time_train_step`] on a kernel device: the network and Adam's state are uploaded once;
/// each timed step copies the batch in, runs forward, loss, backward, clip and Adam on the
/// device and reads back the loss (which waits for the device).
pub fn time_train_step_on(
    device: &KernelDevice,
    batch: usize,
    frames: usize,
    repeats: usize,
) -> Result<Timings, ModelError> {
    check_input_shape(&[batch, frames, N_BINS])?;
    let config = TrainingConfig::default();
    let mut model = Transcriber::new(33);
    let optimizer = Optimizer::new(&mut model, config.adam);
    let mut trainer = DeviceTrainer::upload(device, &mut model, &optimizer)?;
    let (spec, roll) = random_batch(1, batch, frames);
    let mut step = || {
        let start = Instant::now();
        trainer.train_step(&spec, &roll, &config)?;
        Ok(start.elapsed())
    };
    step()?;
    repeat(repeats, &mut step)
}

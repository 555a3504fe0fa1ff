//! Timing of one training step and of the evaluation forward pass, with an optional per-layer
//! breakdown: the library side of `mtosi bench-step` (BENCHMARKS.md, "Training step (CPU)").

use std::time::{Duration, Instant};

use super::init::uniform_unit;
use super::profile::{self, Record};
use super::tensor::{Mode, Tensor};
use super::training::{train_step, Optimizer, TrainingConfig};
use super::transcriber::{Transcriber, N_BINS, N_KEYS};

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

/// Runs `run` `repeats` times, timing each, and the CPU time of all of them.
fn repeat(repeats: usize, mut run: impl FnMut() -> Duration) -> Timings {
    let cpu_before = process_cpu_time();
    let runs = (0..repeats).map(|_| run()).collect();
    let cpu = process_cpu_time()
        .zip(cpu_before)
        .map(|(after, before)| after - before);
    Timings { runs, cpu }
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
pub fn time_train_step(
    batch: usize,
    frames: usize,
    repeats: usize,
    breakdown: bool,
) -> (Timings, Vec<Record>) {
    let config = TrainingConfig::default();
    let mut model = Transcriber::new(33);
    let mut optimizer = Optimizer::new(&mut model, config.adam);
    let (spec, roll) = random_batch(1, batch, frames);
    let mut step = || {
        let start = Instant::now();
        train_step(&mut model, &mut optimizer, &spec, &roll, &config)
            .expect("benchmark shapes are valid");
        start.elapsed()
    };
    step();
    let timings = repeat(repeats, &mut step);
    let records = if breakdown {
        profile::set_enabled(true);
        profile::take();
        step();
        profile::set_enabled(false);
        profile::take()
    } else {
        Vec::new()
    };
    (timings, records)
}

/// Times the evaluation-mode forward pass on one (frames × 176) spectrogram, after a warm-up.
pub fn time_eval_forward(frames: usize, repeats: usize, breakdown: bool) -> (Timings, Vec<Record>) {
    let mut model = Transcriber::new(33);
    model.set_mode(Mode::Eval);
    let (spec, _) = random_batch(2, 1, frames);
    let mut forward = || {
        let start = Instant::now();
        model.forward(&spec).expect("benchmark shapes are valid");
        start.elapsed()
    };
    forward();
    let timings = repeat(repeats, &mut forward);
    let records = if breakdown {
        profile::set_enabled(true);
        profile::take();
        forward();
        profile::set_enabled(false);
        profile::take()
    } else {
        Vec::new()
    };
    (timings, records)
}

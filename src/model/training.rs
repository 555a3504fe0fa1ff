//! One training step as the original code takes it: forward in training mode, mean binary
//! cross-entropy against the frame roll, backward with the two gradient hooks, every
//! parameter gradient clipped by value, Adam, then StepLR (stepped every batch).

use crate::ops::clamp::{clamp_in_place, CLIP_GRADIENT_VALUE};
use crate::train::adam::{adam_update, AdamConfig};
use crate::train::step_lr::StepLr;

use super::backend::Backend;
use super::profile;
use super::tensor::{Mode, Tensor};
use super::transcriber::{GradientHooks, Transcriber};
use super::ModelError;

/// Everything that sets how a step updates the network; the default is the protocol's.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TrainingConfig {
    pub hooks: GradientHooks,
    /// Every parameter gradient is clamped to ±this after backward.
    pub clip_value: f32,
    pub adam: AdamConfig,
}

impl Default for TrainingConfig {
    fn default() -> Self {
        Self {
            hooks: GradientHooks::default(),
            clip_value: CLIP_GRADIENT_VALUE,
            adam: AdamConfig::default(),
        }
    }
}

/// Adam's moment estimates for every parameter (in `params_mut` order), its step count, and
/// the learning-rate schedule: what a checkpoint must keep for a run to resume exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Optimizer {
    pub config: AdamConfig,
    /// Optimizer steps taken (PyTorch's `state['step']`).
    pub step: u64,
    pub exp_avg: Vec<Vec<f32>>,
    pub exp_avg_sq: Vec<Vec<f32>>,
    pub scheduler: StepLr,
}

impl Optimizer {
    /// Fresh Adam state for `model` with the protocol's StepLR.
    pub fn new(model: &mut Transcriber, config: AdamConfig) -> Self {
        let lens: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
        Self {
            config,
            step: 0,
            exp_avg: lens.iter().map(|&n| vec![0.0; n]).collect(),
            exp_avg_sq: lens.iter().map(|&n| vec![0.0; n]).collect(),
            scheduler: StepLr::protocol(config.lr),
        }
    }

    /// Clips every gradient to ±`clip_value`, applies one Adam update at the scheduler's
    /// current rate, then steps the scheduler.
    pub fn step(&mut self, model: &mut Transcriber, clip_value: f32) {
        self.step_scaled(model, clip_value, 1.0, &[]);
    }

    /// [`Optimizer::step`] at `lr_factor` × the scheduler's rate (a warm-up), leaving the
    /// parameters marked in `frozen` (by `params_mut` index; missing entries are trainable)
    /// untouched, as PyTorch's Adam skips parameters with `requires_grad=False`.
    pub fn step_scaled(
        &mut self,
        model: &mut Transcriber,
        clip_value: f32,
        lr_factor: f64,
        frozen: &[bool],
    ) {
        let _timer = profile::scope("clip+adam", "all parameters", "update");
        self.step += 1;
        let lr = self.scheduler.lr() * lr_factor;
        for (i, p) in model.params_mut().into_iter().enumerate() {
            if frozen.get(i).copied().unwrap_or(false) {
                continue;
            }
            clamp_in_place(&mut p.grad, -clip_value, clip_value);
            adam_update(
                &mut p.value,
                &p.grad,
                &mut self.exp_avg[i],
                &mut self.exp_avg_sq[i],
                self.step,
                lr,
                &self.config,
            );
        }
        self.scheduler.step();
    }
}

/// Zeroes the gradients, runs the training-mode forward and backward (hooks applied) and
/// returns the piano roll and the loss; leaves the raw gradients in the parameters. The same
/// step on every backend: on a kernel device (`spec` and `frame_roll` already there) only the
/// loss comes back to the host.
pub fn loss_and_gradients<B: Backend>(
    model: &mut Transcriber<B>,
    spec: &Tensor<B::Storage>,
    frame_roll: &Tensor<B::Storage>,
    hooks: &GradientHooks,
) -> Result<(Tensor<B::Storage>, f32), ModelError> {
    model.set_mode(Mode::Train);
    model.zero_grad()?;
    let roll = model.forward(spec)?;
    if frame_roll.shape() != roll.shape() {
        return Err(ModelError::TargetShape {
            got: frame_roll.shape().to_vec(),
            expected: roll.shape().to_vec(),
        });
    }
    let timer = profile::scope("loss", "binary cross-entropy", "forward+backward");
    let (loss, d_roll) = model
        .backend_mut()
        .bce(roll.storage(), frame_roll.storage())?;
    drop(timer);
    model.backward(&d_roll, hooks)?;
    Ok((roll, loss))
}

/// One whole optimizer step on a batch; returns the loss.
pub fn train_step(
    model: &mut Transcriber,
    optimizer: &mut Optimizer,
    spec: &Tensor,
    frame_roll: &Tensor,
    config: &TrainingConfig,
) -> Result<f32, ModelError> {
    // On one of rayon's threads: each parallel loop of the step then splits its work with the
    // other threads directly, instead of the calling thread handing it to the pool and sleeping
    // until it is done, hundreds of times per step.
    rayon::scope(|_| {
        let (_, loss) = loss_and_gradients(model, spec, frame_roll, &config.hooks)?;
        optimizer.step(model, config.clip_value);
        Ok(loss)
    })
}

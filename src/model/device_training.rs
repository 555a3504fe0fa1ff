//! The training step on a kernel device (`emu` or `cuda`): the step of [`super::training`]
//! (the same [`loss_and_gradients`] over the same network, `Transcriber<Kernels>`), then the
//! optimizer's side on the device: clip-by-value, Adam and StepLR.
//!
//! Memory, as llm.c allocates it: the parameters and their gradients are one arena each (held
//! by the [`Kernels`] backend), Adam's two moments one more each here, all in `params_mut`
//! order; zeroing the gradients, clipping them and Adam are one launch each over a whole arena.
//! Activations come from the backend's pool and each layer keeps its workspaces, so a step of
//! an already seen batch shape allocates nothing. Within a step nothing goes back to the host
//! except the loss; checkpoints go through the host ([`DeviceTrainer::upload`],
//! [`DeviceTrainer::download_into`]).

use crate::device::{DeviceArena, DeviceError, KernelDevice};
use crate::ops::clamp::clamp_in_place_launch;
use crate::train::adam::{adam_update_launch, AdamConfig};
use crate::train::step_lr::StepLr;

use super::backend::{slices, Kernels};
use super::tensor::Tensor;
use super::training::{loss_and_gradients, Optimizer, TrainingConfig};
use super::transcriber::{check_input_shape, GradientHooks, Transcriber};
use super::ModelError;

/// The network on a kernel device, Adam's state beside it, and the step that trains them; see
/// the module doc.
pub struct DeviceTrainer<'d> {
    model: Transcriber<Kernels<'d>>,
    exp_avg: DeviceArena,
    exp_avg_sq: DeviceArena,
    /// Adam's step count, its hyperparameters and the learning-rate schedule.
    pub step: u64,
    pub adam: AdamConfig,
    pub scheduler: StepLr,
    /// Parameters Adam leaves alone, by `params_mut` index.
    frozen: Vec<bool>,
}

impl<'d> DeviceTrainer<'d> {
    /// Uploads `model`'s parameters and running statistics and `optimizer`'s state (a fresh
    /// one or a checkpoint's), once.
    pub fn upload(
        device: &'d KernelDevice,
        model: &mut Transcriber,
        optimizer: &Optimizer,
    ) -> Result<DeviceTrainer<'d>, ModelError> {
        let lens: Vec<usize> = model.params_mut().iter().map(|p| p.len()).collect();
        let moment_lens = |m: &[Vec<f32>]| m.iter().map(Vec::len).collect::<Vec<_>>();
        if moment_lens(&optimizer.exp_avg) != lens || moment_lens(&optimizer.exp_avg_sq) != lens {
            return Err(DeviceError::InvalidInput {
                op: "device training step",
                message: "the optimizer's moments do not match the model's parameters".into(),
            }
            .into());
        }
        Ok(DeviceTrainer {
            model: Transcriber::upload(device, model)?,
            exp_avg: DeviceArena::upload(device, &slices(&optimizer.exp_avg))?,
            exp_avg_sq: DeviceArena::upload(device, &slices(&optimizer.exp_avg_sq))?,
            step: optimizer.step,
            adam: optimizer.config,
            scheduler: optimizer.scheduler,
            frozen: Vec::new(),
        })
    }

    /// Writes the parameters, their gradients, the running statistics and Adam's state back
    /// into `model` and `optimizer` (for a checkpoint, validation or a comparison).
    pub fn download_into(
        &mut self,
        model: &mut Transcriber,
        optimizer: &mut Optimizer,
    ) -> Result<(), ModelError> {
        self.model.download_into(model)?;
        let device = self.model.backend().device();
        optimizer.exp_avg = self.exp_avg.download(device)?;
        optimizer.exp_avg_sq = self.exp_avg_sq.download(device)?;
        optimizer.step = self.step;
        optimizer.config = self.adam;
        optimizer.scheduler = self.scheduler;
        Ok(())
    }

    /// Device allocations made by the steps so far (a later step of the same shape adds none).
    pub fn workspace_allocations(&self) -> usize {
        self.model.backend().allocations()
    }

    /// One whole optimizer step on a batch (spec (batch, frames, 176), frame roll (batch,
    /// frames, 88)); returns the loss, the one value that comes back to the host.
    pub fn train_step(
        &mut self,
        spec: &Tensor,
        frame_roll: &Tensor,
        config: &TrainingConfig,
    ) -> Result<f32, ModelError> {
        let loss = self.loss_and_gradients(spec, frame_roll, &config.hooks)?;
        self.optimizer_step(config.clip_value, 1.0)?;
        Ok(loss)
    }

    /// Copies the batch to the device and runs [`loss_and_gradients`] there, leaving the raw
    /// gradients in their arena; returns the loss.
    pub fn loss_and_gradients(
        &mut self,
        spec: &Tensor,
        frame_roll: &Tensor,
        hooks: &GradientHooks,
    ) -> Result<f32, ModelError> {
        check_input_shape(spec.shape())?;
        let backend = self.model.backend_mut();
        let spec = Tensor::from_storage(spec.shape().to_vec(), backend.upload(spec.data())?);
        let frame_roll = Tensor::from_storage(
            frame_roll.shape().to_vec(),
            backend.upload(frame_roll.data())?,
        );
        let (_, loss) = loss_and_gradients(&mut self.model, &spec, &frame_roll, hooks)?;
        Ok(loss)
    }

    /// Holds the parameters marked in `frozen` (by `params_mut` index; missing entries are
    /// trainable) fixed, as PyTorch's Adam skips parameters with `requires_grad=False`.
    pub fn set_frozen(&mut self, frozen: &[bool]) {
        self.frozen = frozen.to_vec();
    }

    /// Clips every gradient to ±`clip_value` and applies one Adam update at `lr_factor` × the
    /// scheduler's rate, each one launch over its whole arena; then steps the scheduler. With
    /// frozen parameters, both run tensor by tensor over the trainable views instead.
    pub fn optimizer_step(&mut self, clip_value: f32, lr_factor: f64) -> Result<(), ModelError> {
        self.step += 1;
        let lr = self.scheduler.lr() * lr_factor;
        let backend = self.model.backend_mut();
        let device = backend.device();
        let (params, grads) = backend.params_and_grads();
        if !self.frozen.iter().any(|&f| f) {
            clamp_in_place_launch(device, grads.whole_mut(), -clip_value, clip_value)?;
            adam_update_launch(
                device,
                params.whole_mut(),
                grads.whole(),
                self.exp_avg.whole_mut(),
                self.exp_avg_sq.whole_mut(),
                self.step,
                lr,
                &self.adam,
            )?;
        } else {
            for i in 0..params.tensors() {
                if self.frozen.get(i).copied().unwrap_or(false) {
                    continue;
                }
                clamp_in_place_launch(device, grads.get_mut(i)?, -clip_value, clip_value)?;
                adam_update_launch(
                    device,
                    params.get_mut(i)?,
                    grads.get(i)?,
                    self.exp_avg.get_mut(i)?,
                    self.exp_avg_sq.get_mut(i)?,
                    self.step,
                    lr,
                    &self.adam,
                )?;
            }
        }
        self.scheduler.step();
        Ok(())
    }
}

//! The training step on a kernel device (`emu` or `cuda`): the step of [`super::training`]
//! (training-mode forward, mean BCE with the −100 log clamp, backward with the two gradient
//! hooks, clip-by-value, Adam, StepLR) over the op launchers of `crate::ops`.
//!
//! Memory, as llm.c allocates it: the parameters, their gradients and Adam's two moments are
//! one [`DeviceArena`] each, in `params_mut` order, and the BatchNorm running statistics a
//! fifth; zeroing the gradients, clipping them and Adam are one launch each over a whole
//! arena. Activations, their gradients and every op's workspace are allocated on the first
//! step, kept by name and reused by every later step of the same batch shape. Within a step
//! nothing goes back to the host except the loss; checkpoints go through the host
//! ([`DeviceTrainer::upload`], [`DeviceTrainer::download_into`]).
//!
//! Like [`super::device_forward`], this restates the network's wiring (by the state_dict names
//! of the parameters) beside the CPU layer structs, in the same order of operations as
//! `encoder.rs`, `decoder.rs` and `transcriber.rs`, rather than running one device-generic
//! code path; `tests/device_training.rs` holds the two against each other step by step.
// The launchers take their shapes as arguments.
#![allow(clippy::too_many_arguments)]

use std::collections::HashMap;

use crate::device::{DeviceArena, DeviceBuffer, DeviceError, KernelDevice};
use crate::ops::activation::{sigmoid_backward_launch, sigmoid_forward_launch, LEAKY_RELU_SLOPE};
use crate::ops::batchnorm::{
    batchnorm_backward_launch, batchnorm_forward_train_launch, BatchNormWorkspace, BATCHNORM_EPS,
    BATCHNORM_MOMENTUM,
};
use crate::ops::clamp::clamp_in_place_launch;
use crate::ops::concat::{concat_channels_backward_launch, concat_channels_forward_launch};
use crate::ops::conv2d::{
    conv2d_backward_launch, conv2d_forward_launch, ConvWorkspace, DeviceConvGeometry,
};
use crate::ops::conv_transpose2d::{
    conv_transpose2d_adjoint_geometry_for, conv_transpose2d_backward_launch,
    conv_transpose2d_forward_launch,
};
use crate::ops::elementwise::{add_in_place_launch, fill_launch};
use crate::ops::linear::{
    linear_backward_launch, linear_backward_scratch_len, linear_forward_launch,
};
use crate::ops::loss::{bce_backward_launch, bce_forward_launch, bce_partials_len};
use crate::ops::lstm::{
    lstm_backward_launch, lstm_forward_launch, DeviceLstmGradients, DeviceLstmWeights, LstmShape,
    LstmWorkspace,
};
use crate::train::adam::{adam_update_launch, AdamConfig};
use crate::train::step_lr::StepLr;

use super::tensor::{StateEntry, Tensor};
use super::training::{Optimizer, TrainingConfig};
use super::transcriber::{check_input_shape, GradientHooks, Transcriber, N_BINS, N_KEYS};
use super::ModelError;

fn invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "device training step",
        message,
    }
}

/// Tensors of one arena by their state_dict names, with their shapes.
struct Named {
    arena: DeviceArena,
    index: HashMap<String, usize>,
    shapes: Vec<Vec<usize>>,
}

impl Named {
    fn upload(
        device: &KernelDevice,
        names: &[String],
        shapes: &[Vec<usize>],
        values: &[&[f32]],
    ) -> Result<Named, DeviceError> {
        Ok(Named {
            arena: DeviceArena::upload(device, values)?,
            index: names.iter().cloned().zip(0..).collect(),
            shapes: shapes.to_vec(),
        })
    }

    fn position(&self, name: &str) -> Result<usize, DeviceError> {
        self.index
            .get(name)
            .copied()
            .ok_or_else(|| invalid(format!("no tensor {name}")))
    }

    fn get(&self, name: &str) -> Result<&DeviceBuffer<f32>, DeviceError> {
        self.arena.get(self.position(name)?)
    }

    fn shape(&self, name: &str) -> Result<&[usize], DeviceError> {
        Ok(&self.shapes[self.position(name)?])
    }

    fn get_mut<const N: usize>(
        &mut self,
        names: [&str; N],
    ) -> Result<[&mut DeviceBuffer<f32>; N], DeviceError> {
        let mut indices = [0; N];
        for (i, name) in indices.iter_mut().zip(names) {
            *i = self.position(name)?;
        }
        self.arena.get_disjoint_mut(indices)
    }
}

/// An activation or gradient kept between steps: (n, c, h, w) or (batch, frames, features).
struct Slot {
    shape: Vec<usize>,
    data: DeviceBuffer<f32>,
}

impl Slot {
    fn dims4(&self) -> Result<(usize, usize, usize, usize), DeviceError> {
        match self.shape[..] {
            [n, c, h, w] => Ok((n, c, h, w)),
            ref shape => Err(invalid(format!("a 4-d tensor expected, got {shape:?}"))),
        }
    }
}

/// Everything a step allocates, by name, kept for the next step. An entry is taken out while
/// an op writes it and put back after, so inputs can be borrowed from the map meanwhile.
#[derive(Default)]
struct Workspaces {
    tensors: HashMap<String, Slot>,
    conv: HashMap<String, (DeviceConvGeometry, ConvWorkspace)>,
    batchnorm: HashMap<String, BatchNormWorkspace>,
    lstm: HashMap<String, LstmWorkspace>,
    /// The loss's f64 partial sums.
    partials: Option<DeviceBuffer<f64>>,
    /// Device allocations made so far: a step of an already seen shape makes none.
    allocations: usize,
}

impl Workspaces {
    /// Tensor `key` of `shape`, reused when its length matches (its values are last step's:
    /// ops that add into it are preceded by a zero fill).
    fn take(
        &mut self,
        device: &KernelDevice,
        key: &str,
        shape: Vec<usize>,
    ) -> Result<Slot, DeviceError> {
        let len = shape.iter().product();
        match self.tensors.remove(key) {
            Some(slot) if slot.data.len() == len => Ok(Slot { shape, ..slot }),
            _ => {
                self.allocations += 1;
                Ok(Slot {
                    shape,
                    data: device.alloc(len)?,
                })
            }
        }
    }

    /// [`Workspaces::take`], filled with zeros: a gradient that backward passes add into.
    fn take_zeroed(
        &mut self,
        device: &KernelDevice,
        key: &str,
        shape: Vec<usize>,
    ) -> Result<Slot, DeviceError> {
        let mut slot = self.take(device, key, shape)?;
        fill_launch(device, &mut slot.data, 0.0)?;
        Ok(slot)
    }

    fn put(&mut self, key: &str, slot: Slot) {
        self.tensors.insert(key.to_string(), slot);
    }

    fn get(&self, key: &str) -> Result<&Slot, DeviceError> {
        self.tensors
            .get(key)
            .ok_or_else(|| invalid(format!("no tensor {key} (backward before forward?)")))
    }

    fn conv(
        &mut self,
        device: &KernelDevice,
        name: &str,
        g: DeviceConvGeometry,
    ) -> Result<ConvWorkspace, DeviceError> {
        match self.conv.remove(name) {
            Some((old, ws)) if old == g => Ok(ws),
            _ => {
                self.allocations += 1;
                ConvWorkspace::new(device, &g)
            }
        }
    }

    /// The geometry and workspace of convolution `name`'s forward, for its backward.
    fn conv_of_forward(
        &mut self,
        name: &str,
    ) -> Result<(DeviceConvGeometry, ConvWorkspace), DeviceError> {
        self.conv
            .remove(name)
            .ok_or_else(|| invalid(format!("{name}: backward before forward")))
    }

    fn batchnorm(
        &mut self,
        device: &KernelDevice,
        name: &str,
        (n, c, hw): (usize, usize, usize),
    ) -> Result<BatchNormWorkspace, DeviceError> {
        match self.batchnorm.remove(name) {
            // Workspaces are dropped when the batch shape changes, so a kept one fits.
            Some(ws) => Ok(ws),
            None => {
                self.allocations += 1;
                BatchNormWorkspace::new(device, n, c, hw)
            }
        }
    }
}

/// `conv2d_forward_launch` or `conv_transpose2d_forward_launch`: one signature.
type ConvForwardLaunch = fn(
    &KernelDevice,
    &mut ConvWorkspace,
    &mut DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    Option<&DeviceBuffer<f32>>,
    &DeviceConvGeometry,
) -> Result<(), DeviceError>;

/// `conv2d_backward_launch` or `conv_transpose2d_backward_launch`: one signature.
type ConvBackwardLaunch = fn(
    &KernelDevice,
    &mut ConvWorkspace,
    Option<&mut DeviceBuffer<f32>>,
    &mut DeviceBuffer<f32>,
    Option<&mut DeviceBuffer<f32>>,
    &DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    &DeviceBuffer<f32>,
    &DeviceConvGeometry,
) -> Result<(), DeviceError>;

/// Key of the gradient of activation `key`.
fn grad(key: &str) -> String {
    format!("d:{key}")
}

/// The network, its gradients, Adam's state and the BatchNorm running statistics on a kernel
/// device, and the step that trains them; see the module doc.
pub struct DeviceTrainer<'d> {
    device: &'d KernelDevice,
    params: Named,
    grads: Named,
    exp_avg: DeviceArena,
    exp_avg_sq: DeviceArena,
    /// running_mean and running_var of every BatchNorm.
    buffers: Named,
    /// num_batches_tracked of every BatchNorm: host counters, one more per training forward.
    counts: Vec<(String, i64)>,
    /// Adam's step count, its hyperparameters and the learning-rate schedule.
    pub step: u64,
    pub adam: AdamConfig,
    pub scheduler: StepLr,
    /// (batch, frames) of the workspaces.
    batch_shape: Option<(usize, usize)>,
    ws: Workspaces,
    /// The mean BCE of the last step.
    loss: DeviceBuffer<f32>,
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
        let (mut names, mut shapes, mut values) = (Vec::new(), Vec::new(), Vec::new());
        let (mut buffer_names, mut buffer_shapes, mut buffer_values) =
            (Vec::new(), Vec::new(), Vec::new());
        let mut counts = Vec::new();
        for entry in model.state_entries() {
            match entry {
                StateEntry::Param(p) => {
                    names.push(p.name.clone());
                    shapes.push(p.shape.clone());
                    values.push(p.value.clone());
                }
                StateEntry::Buffer(b) => {
                    buffer_names.push(b.name.clone());
                    buffer_shapes.push(b.shape.clone());
                    buffer_values.push(b.value.clone());
                }
                StateEntry::Count { name, value } => counts.push((name.to_string(), *value)),
            }
        }
        let lens: Vec<usize> = values.iter().map(Vec::len).collect();
        let moment_lens = |m: &[Vec<f32>]| m.iter().map(Vec::len).collect::<Vec<_>>();
        if moment_lens(&optimizer.exp_avg) != lens || moment_lens(&optimizer.exp_avg_sq) != lens {
            return Err(invalid(
                "the optimizer's moments do not match the model's parameters".into(),
            )
            .into());
        }
        let zeros: Vec<Vec<f32>> = lens.iter().map(|&n| vec![0.0; n]).collect();
        Ok(DeviceTrainer {
            device,
            params: Named::upload(device, &names, &shapes, &slices(&values))?,
            grads: Named::upload(device, &names, &shapes, &slices(&zeros))?,
            exp_avg: DeviceArena::upload(device, &slices(&optimizer.exp_avg))?,
            exp_avg_sq: DeviceArena::upload(device, &slices(&optimizer.exp_avg_sq))?,
            buffers: Named::upload(
                device,
                &buffer_names,
                &buffer_shapes,
                &slices(&buffer_values),
            )?,
            counts,
            step: optimizer.step,
            adam: optimizer.config,
            scheduler: optimizer.scheduler,
            batch_shape: None,
            ws: Workspaces::default(),
            loss: device.alloc(1)?,
            frozen: Vec::new(),
        })
    }

    /// Writes the parameters, their gradients, the running statistics and Adam's state back
    /// into `model` and `optimizer` (for a checkpoint, validation or a comparison).
    pub fn download_into(
        &self,
        model: &mut Transcriber,
        optimizer: &mut Optimizer,
    ) -> Result<(), ModelError> {
        let values = self.params.arena.download(self.device)?;
        let grads = self.grads.arena.download(self.device)?;
        let buffers = self.buffers.arena.download(self.device)?;
        let (mut p, mut b, mut c) = (0, 0, 0);
        for entry in model.state_entries() {
            match entry {
                StateEntry::Param(param) => {
                    param.value.clone_from(&values[p]);
                    param.grad.clone_from(&grads[p]);
                    p += 1;
                }
                StateEntry::Buffer(buffer) => {
                    buffer.value.clone_from(&buffers[b]);
                    b += 1;
                }
                StateEntry::Count { value, .. } => {
                    *value = self.counts[c].1;
                    c += 1;
                }
            }
        }
        optimizer.exp_avg = self.exp_avg.download(self.device)?;
        optimizer.exp_avg_sq = self.exp_avg_sq.download(self.device)?;
        optimizer.step = self.step;
        optimizer.config = self.adam;
        optimizer.scheduler = self.scheduler;
        Ok(())
    }

    /// Device allocations made by the steps so far (a later step of the same shape adds none).
    pub fn workspace_allocations(&self) -> usize {
        self.ws.allocations
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

    /// Zeroes the gradients, runs the training-mode forward and the backward (hooks applied),
    /// leaving the raw gradients in their arena; returns the loss.
    pub fn loss_and_gradients(
        &mut self,
        spec: &Tensor,
        frame_roll: &Tensor,
        hooks: &GradientHooks,
    ) -> Result<f32, ModelError> {
        let (batch, frames) = check_input_shape(spec.shape())?;
        if frame_roll.shape() != [batch, frames, N_KEYS] {
            return Err(ModelError::TargetShape {
                got: frame_roll.shape().to_vec(),
                expected: vec![batch, frames, N_KEYS],
            });
        }
        if self.batch_shape != Some((batch, frames)) {
            // A new batch shape: new workspaces (the old ones would not fit).
            self.ws = Workspaces {
                allocations: self.ws.allocations,
                ..Workspaces::default()
            };
            self.batch_shape = Some((batch, frames));
        }
        let device = self.device;
        let mut x = self
            .ws
            .take(device, "input", vec![batch, 1, frames, N_BINS])?;
        device.copy_to_device(spec.data(), &mut x.data)?;
        self.ws.put("input", x);
        let mut target = self
            .ws
            .take(device, "target", vec![batch, frames, N_KEYS])?;
        device.copy_to_device(frame_roll.data(), &mut target.data)?;
        self.ws.put("target", target);

        fill_launch(device, self.grads.arena.whole_mut(), 0.0)?;
        let roll = self.forward("input")?;
        self.bce(&roll)?;
        self.backward(&roll, hooks)?;
        for (_, count) in &mut self.counts {
            *count += 1;
        }
        Ok(device.download(&self.loss)?[0])
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
        let device = self.device;
        self.step += 1;
        let lr = self.scheduler.lr() * lr_factor;
        if !self.frozen.iter().any(|&f| f) {
            clamp_in_place_launch(
                device,
                self.grads.arena.whole_mut(),
                -clip_value,
                clip_value,
            )?;
            adam_update_launch(
                device,
                self.params.arena.whole_mut(),
                self.grads.arena.whole(),
                self.exp_avg.whole_mut(),
                self.exp_avg_sq.whole_mut(),
                self.step,
                lr,
                &self.adam,
            )?;
        } else {
            for i in 0..self.params.arena.tensors() {
                if self.frozen.get(i).copied().unwrap_or(false) {
                    continue;
                }
                clamp_in_place_launch(
                    device,
                    self.grads.arena.get_mut(i)?,
                    -clip_value,
                    clip_value,
                )?;
                adam_update_launch(
                    device,
                    self.params.arena.get_mut(i)?,
                    self.grads.arena.get(i)?,
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

    /// UnetTranscriptionModel.forward in training mode, from the tensor `input`; returns the
    /// key of the piano roll.
    fn forward(&mut self, input: &str) -> Result<String, DeviceError> {
        let (x1, size1) = self.encoder_block("Unet1_encoder.block1", input)?;
        let (x2, size2) = self.encoder_block("Unet1_encoder.block2", &x1)?;
        let (x3, size3) = self.encoder_block("Unet1_encoder.block3", &x2)?;
        let (x4, size4) = self.encoder_block("Unet1_encoder.block4", &x3)?;
        let c1 = self.conv2d("Unet1_encoder.conv1", &x3, 1, 1)?;
        let c2 = self.conv2d("Unet1_encoder.conv2", &x2, 1, 1)?;
        let c3 = self.conv2d("Unet1_encoder.conv3", &x1, 1, 1)?;
        let y = self.decoder_block("Unet1_decoder.d_block1", &x4, size4, Some(&c1))?;
        let y = self.decoder_block("Unet1_decoder.d_block2", &y, size3, Some(&c2))?;
        let y = self.decoder_block("Unet1_decoder.d_block3", &y, size2, Some(&c3))?;
        let y = self.decoder_block("Unet1_decoder.d_block4", &y, size1, None)?;
        let feat1 = self.sigmoid("feat1", &y)?;
        let x = self.lstm("lstm1", &feat1)?;
        let x = self.linear("linear", &x)?;
        self.sigmoid("pianoroll", &x)
    }

    /// Transcriber::backward from the loss's gradient, hooks included.
    fn backward(&mut self, roll: &str, hooks: &GradientHooks) -> Result<(), DeviceError> {
        let d_linear_out = self.sigmoid_backward(roll, "linear")?;
        let d_lstm_out = self.linear_backward("linear", &d_linear_out, "lstm1")?;
        self.clamp(&d_lstm_out, hooks.linear_input_bound)?;
        let d_feat1 = self.lstm_backward("lstm1", &d_lstm_out, "feat1")?;
        self.clamp(&d_feat1, hooks.lstm_input_bound)?;
        let d_decoded = self.sigmoid_backward("feat1", "Unet1_decoder.d_block4.conv1d")?;
        let (d_x, _) = self.decoder_block_backward("Unet1_decoder.d_block4", &d_decoded)?;
        let (d_x, d_c3) = self.decoder_block_backward("Unet1_decoder.d_block3", &d_x)?;
        let (d_x, d_c2) = self.decoder_block_backward("Unet1_decoder.d_block2", &d_x)?;
        // d_block1's input gradient is x4's, which encoder_backward reads by its key.
        let (_d_x4, d_c1) = self.decoder_block_backward("Unet1_decoder.d_block1", &d_x)?;
        self.encoder_backward([&d_c1, &d_c2, &d_c3])
    }

    /// Mean BCE of the roll against `target` into the loss, and its gradient into `d:roll`.
    fn bce(&mut self, roll: &str) -> Result<(), DeviceError> {
        let device = self.device;
        let shape = self.ws.get(roll)?.shape.clone();
        let len: usize = shape.iter().product();
        let mut partials = match self.ws.partials.take() {
            Some(p) if p.len() == bce_partials_len(len) => p,
            _ => {
                self.ws.allocations += 1;
                device.alloc(bce_partials_len(len))?
            }
        };
        let mut d_roll = self.ws.take_zeroed(device, &grad(roll), shape)?;
        let probs = &self.ws.get(roll)?.data;
        let targets = &self.ws.get("target")?.data;
        bce_forward_launch(device, &mut self.loss, &mut partials, probs, targets)?;
        bce_backward_launch(device, &mut d_roll.data, probs, targets, 1.0)?;
        self.ws.partials = Some(partials);
        self.ws.put(&grad(roll), d_roll);
        Ok(())
    }

    fn clamp(&mut self, key: &str, bound: f32) -> Result<(), DeviceError> {
        let slot = self
            .ws
            .tensors
            .get_mut(key)
            .ok_or_else(|| invalid(format!("no tensor {key}")))?;
        clamp_in_place_launch(self.device, &mut slot.data, -bound, bound)
    }

    // ---- the U-net's blocks, as encoder.rs and decoder.rs -----------------------------------

    /// `a = lrelu(bn1(conv1(x)))`, `b = lrelu(bn2(conv2(a))) + skip(x)`, `y = ds(b)`; returns
    /// y's key and b's (h, w).
    fn encoder_block(
        &mut self,
        name: &str,
        x: &str,
    ) -> Result<(String, (usize, usize)), DeviceError> {
        let a = self.conv2d(&format!("{name}.conv1"), x, 1, 1)?;
        let a = self.batchnorm_lrelu(&format!("{name}.bn1"), &a)?;
        let b = self.conv2d(&format!("{name}.conv2"), &a, 1, 1)?;
        let b = self.batchnorm_lrelu(&format!("{name}.bn2"), &b)?;
        // b = act2(…) + skip(x), summed into the skip's output as encoder.rs does.
        let sum = self.conv2d(&format!("{name}.skip"), x, 1, 0)?;
        let mut out = self
            .ws
            .tensors
            .remove(&sum)
            .ok_or_else(|| invalid(format!("no tensor {sum}")))?;
        let result = add_in_place_launch(self.device, &mut out.data, &self.ws.get(&b)?.data);
        let (_, _, h, w) = out.dims4()?;
        self.ws.put(&sum, out);
        result?;
        Ok((self.conv2d(&format!("{name}.ds"), &sum, 2, 0)?, (h, w)))
    }

    /// Adds the gradient of the block's input `x` into `d:x` (none for the spectrogram).
    fn encoder_block_backward(
        &mut self,
        name: &str,
        x: &str,
        d_x: Option<&str>,
    ) -> Result<(), DeviceError> {
        let d_b = self.conv2d_backward(&format!("{name}.ds"), &format!("{name}.skip"), None)?;
        let d =
            self.batchnorm_lrelu_backward(&format!("{name}.bn2"), &d_b, &format!("{name}.conv2"))?;
        let d_a =
            self.conv2d_backward(&format!("{name}.conv2"), &format!("{name}.bn1"), Some(&d))?;
        let d =
            self.batchnorm_lrelu_backward(&format!("{name}.bn1"), &d_a, &format!("{name}.conv1"))?;
        self.conv2d_backward_into(&format!("{name}.conv1"), x, &d, d_x)?;
        self.conv2d_backward_into(&format!("{name}.skip"), x, &d_b, d_x)
    }

    /// Encoder::backward from the gradients of x4 (in `d:…block4.ds`) and of c1, c2, c3.
    fn encoder_backward(&mut self, d_skips: [&str; 3]) -> Result<(), DeviceError> {
        let [d_c1, d_c2, d_c3] = d_skips;
        let e = "Unet1_encoder";
        let x = |i: usize| format!("{e}.block{i}.ds");
        for (block, input, side, d_side) in [
            (4, x(3), "conv1", d_c1),
            (3, x(2), "conv2", d_c2),
            (2, x(1), "conv3", d_c3),
        ] {
            let shape = self.ws.get(&input)?.shape.clone();
            let d_input = grad(&input);
            let zeroed = self.ws.take_zeroed(self.device, &d_input, shape)?;
            self.ws.put(&d_input, zeroed);
            self.encoder_block_backward(&format!("{e}.block{block}"), &input, Some(&d_input))?;
            self.conv2d_backward_into(&format!("{e}.{side}"), &input, d_side, Some(&d_input))?;
        }
        self.encoder_block_backward(&format!("{e}.block1"), "input", None)
    }

    /// `u = us(x, size)` (concatenated with `skip`), `h = lrelu(bn2d(conv2d(u)))`,
    /// `y = lrelu(bn1d(conv1d(h)))`, or `conv1d(h)` in the last block.
    fn decoder_block(
        &mut self,
        name: &str,
        x: &str,
        size: (usize, usize),
        skip: Option<&str>,
    ) -> Result<String, DeviceError> {
        let u = self.conv_transpose2d(&format!("{name}.us"), x, 2, 0, Some(size))?;
        let u = match skip {
            Some(skip) => self.concat_channels(&format!("{name}.cat"), &u, skip)?,
            None => u,
        };
        let h = self.conv_transpose2d(&format!("{name}.conv2d"), &u, 1, 1, None)?;
        let h = self.batchnorm_lrelu(&format!("{name}.bn2d"), &h)?;
        let y = self.conv_transpose2d(&format!("{name}.conv1d"), &h, 1, 1, None)?;
        match skip {
            Some(_) => self.batchnorm_lrelu(&format!("{name}.bn1d"), &y),
            None => Ok(y),
        }
    }

    /// DecoderBlock::backward from the gradient `d_y` of its output: the keys of the gradients
    /// of its input and of its skip tensor (none in the last block).
    fn decoder_block_backward(
        &mut self,
        name: &str,
        d_y: &str,
    ) -> Result<(String, String), DeviceError> {
        let last = name.ends_with("d_block4");
        let conv1d = format!("{name}.conv1d");
        let d = match last {
            false => self.batchnorm_lrelu_backward(&format!("{name}.bn1d"), d_y, &conv1d)?,
            true => d_y.to_string(),
        };
        let bn2d = format!("{name}.bn2d");
        let d_h = self.conv_transpose2d_backward(&conv1d, &bn2d, &d)?;
        let conv2d = format!("{name}.conv2d");
        let d = self.batchnorm_lrelu_backward(&bn2d, &d_h, &conv2d)?;
        let us = format!("{name}.us");
        let u = if last {
            us.clone()
        } else {
            format!("{name}.cat")
        };
        let d_u = self.conv_transpose2d_backward(&conv2d, &u, &d)?;
        let input = self.decoder_input(name);
        if last {
            let d_x = self.conv_transpose2d_backward(&us, &input, &d_u)?;
            return Ok((d_x, String::new()));
        }
        let skip = self.decoder_skip(name);
        let (n, c_u, h, w) = self.ws.get(&us)?.dims4()?;
        let (_, c_s, _, _) = self.ws.get(&skip)?.dims4()?;
        let device = self.device;
        let mut d_up = self
            .ws
            .take_zeroed(device, &grad(&us), vec![n, c_u, h, w])?;
        let mut d_skip = self
            .ws
            .take_zeroed(device, &grad(&skip), vec![n, c_s, h, w])?;
        concat_channels_backward_launch(
            device,
            Some(&mut d_up.data),
            Some(&mut d_skip.data),
            &self.ws.get(&d_u)?.data,
            n,
            c_u,
            c_s,
            h * w,
        )?;
        self.ws.put(&grad(&us), d_up);
        self.ws.put(&grad(&skip), d_skip);
        let d_x = self.conv_transpose2d_backward(&us, &input, &grad(&us))?;
        Ok((d_x, grad(&skip)))
    }

    /// The key of a decoder block's input: x4, then the previous block's output.
    fn decoder_input(&self, name: &str) -> String {
        match name.chars().last() {
            Some('1') => "Unet1_encoder.block4.ds".into(),
            Some(i) => {
                let previous = i.to_digit(10).unwrap_or(1) - 1;
                format!("Unet1_decoder.d_block{previous}.bn1d")
            }
            None => String::new(),
        }
    }

    /// The key of a decoder block's skip tensor: c1, c2, c3.
    fn decoder_skip(&self, name: &str) -> String {
        match name.chars().last() {
            Some('1') => "Unet1_encoder.conv1".into(),
            Some('2') => "Unet1_encoder.conv2".into(),
            _ => "Unet1_encoder.conv3".into(),
        }
    }

    // ---- the layers, as layers.rs -------------------------------------------------------------

    /// Conv2d `name` with bias on tensor `x`; returns the output's key (`name`).
    fn conv2d(
        &mut self,
        name: &str,
        x: &str,
        stride: usize,
        pad: usize,
    ) -> Result<String, DeviceError> {
        let weight = format!("{name}.weight");
        let (c_out, k) = match *self.params.shape(&weight)? {
            [c_out, _, k, _] => (c_out, k),
            ref shape => return Err(invalid(format!("{weight}: shape {shape:?}"))),
        };
        let (n, c, h, w) = self.ws.get(x)?.dims4()?;
        let g = DeviceConvGeometry::conv2d(n, c, h, w, c_out, k, stride, pad);
        let shape = vec![n, c_out, g.h_out, g.w_out];
        self.conv_forward(name, x, g, shape, conv2d_forward_launch)
    }

    /// ConvTranspose2d `name` with bias on `x`, reaching `output_size` through the output
    /// padding as PyTorch does; returns the output's key (`name`).
    fn conv_transpose2d(
        &mut self,
        name: &str,
        x: &str,
        stride: usize,
        pad: usize,
        output_size: Option<(usize, usize)>,
    ) -> Result<String, DeviceError> {
        let weight = format!("{name}.weight");
        let (c_out, k) = match *self.params.shape(&weight)? {
            [_, c_out, k, _] => (c_out, k),
            ref shape => return Err(invalid(format!("{weight}: shape {shape:?}"))),
        };
        let (n, c, h, w) = self.ws.get(x)?.dims4()?;
        let g =
            conv_transpose2d_adjoint_geometry_for(n, c, h, w, c_out, k, stride, pad, output_size)
                .map_err(|e| invalid(format!("{name}: {e}")))?;
        // The adjoint convolution's input is the transposed convolution's output.
        let shape = vec![n, c_out, g.h, g.w];
        self.conv_forward(name, x, g, shape, conv_transpose2d_forward_launch)
    }

    /// Either convolution's forward (`launch`) of layer `name` on `x` into `name`, keeping its
    /// geometry and workspace for the backward.
    fn conv_forward(
        &mut self,
        name: &str,
        x: &str,
        g: DeviceConvGeometry,
        out_shape: Vec<usize>,
        launch: ConvForwardLaunch,
    ) -> Result<String, DeviceError> {
        let device = self.device;
        let mut ws = self.ws.conv(device, name, g)?;
        let mut out = self.ws.take(device, name, out_shape)?;
        let result = launch(
            device,
            &mut ws,
            &mut out.data,
            &self.ws.get(x)?.data,
            self.params.get(&format!("{name}.weight"))?,
            Some(self.params.get(&format!("{name}.bias"))?),
            &g,
        );
        self.ws.conv.insert(name.to_string(), (g, ws));
        self.ws.put(name, out);
        result.map(|()| name.to_string())
    }

    /// Conv2d `name`'s backward (its input was `x`) from `d:name` (or `d_out`), adding into
    /// the weight and bias gradients; returns the key of a fresh gradient of `x`.
    fn conv2d_backward(
        &mut self,
        name: &str,
        x: &str,
        d_out: Option<&str>,
    ) -> Result<String, DeviceError> {
        let d_out = d_out.map_or_else(|| grad(name), str::to_string);
        self.conv_backward(name, x, &d_out, conv2d_backward_launch)
    }

    /// Conv2d `name`'s backward from `d_out`, adding the input's gradient into `d_x` if given.
    fn conv2d_backward_into(
        &mut self,
        name: &str,
        x: &str,
        d_out: &str,
        d_x: Option<&str>,
    ) -> Result<(), DeviceError> {
        self.conv_backward_into(name, x, d_out, d_x, conv2d_backward_launch)
    }

    /// ConvTranspose2d `name`'s backward (input `x`) from `d_out`; returns the key of a fresh
    /// gradient of `x`.
    fn conv_transpose2d_backward(
        &mut self,
        name: &str,
        x: &str,
        d_out: &str,
    ) -> Result<String, DeviceError> {
        self.conv_backward(name, x, d_out, conv_transpose2d_backward_launch)
    }

    /// Either convolution's backward (`launch`) into a fresh, zeroed gradient of `x`.
    fn conv_backward(
        &mut self,
        name: &str,
        x: &str,
        d_out: &str,
        launch: ConvBackwardLaunch,
    ) -> Result<String, DeviceError> {
        let shape = self.ws.get(x)?.shape.clone();
        let d_x = grad(x);
        let zeroed = self.ws.take_zeroed(self.device, &d_x, shape)?;
        self.ws.put(&d_x, zeroed);
        self.conv_backward_into(name, x, d_out, Some(&d_x), launch)?;
        Ok(d_x)
    }

    /// Either convolution's backward (`launch`) from `d_out`, adding into the weight and bias
    /// gradients and into `d_x` if given.
    fn conv_backward_into(
        &mut self,
        name: &str,
        x: &str,
        d_out: &str,
        d_x: Option<&str>,
        launch: ConvBackwardLaunch,
    ) -> Result<(), DeviceError> {
        let device = self.device;
        let (g, mut ws) = self.ws.conv_of_forward(name)?;
        let mut d_inp = d_x
            .map(|k| self.ws.tensors.remove(k))
            .transpose_missing(d_x)?;
        let [d_weight, d_bias] = self
            .grads
            .get_mut([&format!("{name}.weight"), &format!("{name}.bias")])?;
        let result = launch(
            device,
            &mut ws,
            d_inp.as_mut().map(|s| &mut s.data),
            d_weight,
            Some(d_bias),
            &self.ws.get(d_out)?.data,
            &self.ws.get(x)?.data,
            self.params.get(&format!("{name}.weight"))?,
            &g,
        );
        self.ws.conv.insert(name.to_string(), (g, ws));
        if let (Some(k), Some(slot)) = (d_x, d_inp) {
            self.ws.put(k, slot);
        }
        result
    }

    /// BatchNorm2d `name` in training mode fused with the leaky ReLU after it: batch
    /// statistics, running statistics moved by momentum 0.1 toward the unbiased variance.
    fn batchnorm_lrelu(&mut self, name: &str, x: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let (n, c, h, w) = self.ws.get(x)?.dims4()?;
        let mut ws = self.ws.batchnorm(device, name, (n, c, h * w))?;
        let mut out = self.ws.take(device, name, vec![n, c, h, w])?;
        let mut mean = self
            .ws
            .take(device, &format!("{name}.save_mean"), vec![c])?;
        let mut rstd = self
            .ws
            .take(device, &format!("{name}.save_rstd"), vec![c])?;
        let [running_mean, running_var] = self.buffers.get_mut([
            &format!("{name}.running_mean"),
            &format!("{name}.running_var"),
        ])?;
        batchnorm_forward_train_launch(
            device,
            &mut ws,
            &mut out.data,
            &mut mean.data,
            &mut rstd.data,
            running_mean,
            running_var,
            &self.ws.get(x)?.data,
            self.params.get(&format!("{name}.weight"))?,
            self.params.get(&format!("{name}.bias"))?,
            BATCHNORM_MOMENTUM,
            BATCHNORM_EPS,
            Some(LEAKY_RELU_SLOPE),
        )?;
        self.ws.batchnorm.insert(name.to_string(), ws);
        self.ws.put(name, out);
        self.ws.put(&format!("{name}.save_mean"), mean);
        self.ws.put(&format!("{name}.save_rstd"), rstd);
        Ok(name.to_string())
    }

    /// The backward of [`Self::batchnorm_lrelu`] (input `x`) from `d_out`; returns the key of
    /// a fresh gradient of `x`.
    fn batchnorm_lrelu_backward(
        &mut self,
        name: &str,
        d_out: &str,
        x: &str,
    ) -> Result<String, DeviceError> {
        let device = self.device;
        let shape = self.ws.get(x)?.shape.clone();
        let d_x = grad(x);
        let mut d_inp = self.ws.take_zeroed(device, &d_x, shape)?;
        let mut ws = self
            .ws
            .batchnorm
            .remove(name)
            .ok_or_else(|| invalid(format!("{name}: backward before forward")))?;
        let [d_weight, d_bias] = self
            .grads
            .get_mut([&format!("{name}.weight"), &format!("{name}.bias")])?;
        let result = batchnorm_backward_launch(
            device,
            &mut ws,
            Some(&mut d_inp.data),
            d_weight,
            d_bias,
            &self.ws.get(d_out)?.data,
            &self.ws.get(x)?.data,
            self.params.get(&format!("{name}.weight"))?,
            &self.ws.get(&format!("{name}.save_mean"))?.data,
            &self.ws.get(&format!("{name}.save_rstd"))?.data,
            Some(LEAKY_RELU_SLOPE),
        );
        self.ws.batchnorm.insert(name.to_string(), ws);
        self.ws.put(&d_x, d_inp);
        result.map(|()| d_x)
    }

    /// torch.cat of `a` and `b` on channels, into `key`.
    fn concat_channels(&mut self, key: &str, a: &str, b: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let (n, c_a, h, w) = self.ws.get(a)?.dims4()?;
        let (n_b, c_b, h_b, w_b) = self.ws.get(b)?.dims4()?;
        if (n, h, w) != (n_b, h_b, w_b) {
            return Err(invalid(format!("concat of {a} and {b}: sizes differ")));
        }
        let mut out = self.ws.take(device, key, vec![n, c_a + c_b, h, w])?;
        concat_channels_forward_launch(
            device,
            &mut out.data,
            &self.ws.get(a)?.data,
            &self.ws.get(b)?.data,
            n,
            c_a,
            c_b,
            h * w,
        )?;
        self.ws.put(key, out);
        Ok(key.to_string())
    }

    /// Sigmoid of `x` into `key`; `feat1` comes out as (batch, frames, 176) for the LSTM.
    fn sigmoid(&mut self, key: &str, x: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let shape = match (key, &self.ws.get(x)?.shape[..]) {
            ("feat1", &[n, 1, t, f]) => vec![n, t, f],
            (_, shape) => shape.to_vec(),
        };
        let mut out = self.ws.take(device, key, shape)?;
        sigmoid_forward_launch(device, &mut out.data, &self.ws.get(x)?.data)?;
        self.ws.put(key, out);
        Ok(key.to_string())
    }

    /// The gradient of the sigmoid `key`'s input `x` from `d:key`; returns its key.
    fn sigmoid_backward(&mut self, key: &str, x: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let shape = self.ws.get(x)?.shape.clone();
        let d_x = grad(x);
        let mut d_inp = self.ws.take_zeroed(device, &d_x, shape)?;
        sigmoid_backward_launch(
            device,
            &mut d_inp.data,
            &self.ws.get(&grad(key))?.data,
            &self.ws.get(key)?.data,
        )?;
        self.ws.put(&d_x, d_inp);
        Ok(d_x)
    }

    /// The bidirectional LSTM `name` on `x` (batch, frames, input) → (batch, frames, 2·hidden),
    /// keeping its gate activations and cell states for the backward.
    fn lstm(&mut self, name: &str, x: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let shape = self.lstm_shape(name, x)?;
        let rows = shape.batch * shape.frames;
        let hid = shape.hidden_size;
        let mut ws = match self.ws.lstm.remove(name) {
            Some(ws) => ws,
            None => {
                self.ws.allocations += 1;
                LstmWorkspace::new(device, shape)?
            }
        };
        let mut out = self
            .ws
            .take(device, name, vec![shape.batch, shape.frames, 2 * hid])?;
        let mut gates = self
            .ws
            .take(device, &format!("{name}.gates"), vec![2 * rows * 4 * hid])?;
        let mut cells = self
            .ws
            .take(device, &format!("{name}.cells"), vec![2 * rows * hid])?;
        let result = lstm_forward_launch(
            device,
            &mut ws,
            &mut out.data,
            &mut gates.data,
            &mut cells.data,
            &self.ws.get(x)?.data,
            lstm_weights(&self.params, name)?,
        );
        self.ws.lstm.insert(name.to_string(), ws);
        self.ws.put(name, out);
        self.ws.put(&format!("{name}.gates"), gates);
        self.ws.put(&format!("{name}.cells"), cells);
        result.map(|()| name.to_string())
    }

    fn lstm_shape(&self, name: &str, x: &str) -> Result<LstmShape, DeviceError> {
        let (batch, frames, input_size) = match self.ws.get(x)?.shape[..] {
            [b, t, c] => (b, t, c),
            ref shape => return Err(invalid(format!("{name}: input {shape:?}"))),
        };
        let hidden_size = match *self.params.shape(&format!("{name}.weight_hh_l0"))? {
            [_, hidden_size] => hidden_size,
            ref shape => return Err(invalid(format!("{name}: weight_hh {shape:?}"))),
        };
        Ok(LstmShape {
            batch,
            frames,
            input_size,
            hidden_size,
        })
    }

    /// The LSTM's backward from `d_out`; returns the key of a fresh gradient of its input `x`.
    fn lstm_backward(&mut self, name: &str, d_out: &str, x: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let shape = self.ws.get(x)?.shape.clone();
        let d_x = grad(x);
        let mut d_inp = self.ws.take_zeroed(device, &d_x, shape)?;
        let mut ws = self
            .ws
            .lstm
            .remove(name)
            .ok_or_else(|| invalid(format!("{name}: backward before forward")))?;
        let fields = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"];
        let names: Vec<String> = ["", "_reverse"]
            .iter()
            .flat_map(|suffix| fields.map(|f| format!("{name}.{f}_l0{suffix}")))
            .collect();
        let [a, b, c, d, e, f, g, h] = self.grads.get_mut([
            &names[0], &names[1], &names[2], &names[3], &names[4], &names[5], &names[6], &names[7],
        ])?;
        let grads = [
            DeviceLstmGradients {
                w_ih: a,
                w_hh: b,
                b_ih: c,
                b_hh: d,
            },
            DeviceLstmGradients {
                w_ih: e,
                w_hh: f,
                b_ih: g,
                b_hh: h,
            },
        ];
        let result = lstm_backward_launch(
            device,
            &mut ws,
            Some(&mut d_inp.data),
            grads,
            &self.ws.get(d_out)?.data,
            &self.ws.get(x)?.data,
            &self.ws.get(name)?.data,
            &self.ws.get(&format!("{name}.gates"))?.data,
            &self.ws.get(&format!("{name}.cells"))?.data,
            lstm_weights(&self.params, name)?,
        );
        self.ws.lstm.insert(name.to_string(), ws);
        self.ws.put(&d_x, d_inp);
        result.map(|()| d_x)
    }

    /// Linear `name` on the last axis of `x`.
    fn linear(&mut self, name: &str, x: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let (rows, in_features, out_features, shape) = self.linear_shape(name, x)?;
        let mut out = self.ws.take(device, name, shape)?;
        linear_forward_launch(
            device,
            &mut out.data,
            &self.ws.get(x)?.data,
            self.params.get(&format!("{name}.weight"))?,
            Some(self.params.get(&format!("{name}.bias"))?),
            rows,
            in_features,
            out_features,
        )?;
        self.ws.put(name, out);
        Ok(name.to_string())
    }

    fn linear_shape(
        &self,
        name: &str,
        x: &str,
    ) -> Result<(usize, usize, usize, Vec<usize>), DeviceError> {
        let x_shape = &self.ws.get(x)?.shape;
        let in_features = *x_shape.last().unwrap_or(&0);
        let out_features = match *self.params.shape(&format!("{name}.weight"))? {
            [o, i] if i == in_features => o,
            ref shape => {
                return Err(invalid(format!(
                    "{name}: weight {shape:?}, input {in_features}"
                )))
            }
        };
        let rows = x_shape.iter().product::<usize>() / in_features.max(1);
        let mut shape = x_shape.clone();
        if let Some(last) = shape.last_mut() {
            *last = out_features;
        }
        Ok((rows, in_features, out_features, shape))
    }

    /// The Linear's backward from `d_out`; returns the key of a fresh gradient of its input.
    fn linear_backward(&mut self, name: &str, d_out: &str, x: &str) -> Result<String, DeviceError> {
        let device = self.device;
        let (rows, in_features, out_features, _) = self.linear_shape(name, x)?;
        let shape = self.ws.get(x)?.shape.clone();
        let d_x = grad(x);
        let mut d_inp = self.ws.take_zeroed(device, &d_x, shape)?;
        let scratch_key = format!("{name}.scratch");
        let scratch_len = linear_backward_scratch_len(rows, in_features, out_features);
        let mut scratch = self.ws.take(device, &scratch_key, vec![scratch_len])?;
        let [d_weight, d_bias] = self
            .grads
            .get_mut([&format!("{name}.weight"), &format!("{name}.bias")])?;
        let result = linear_backward_launch(
            device,
            Some(&mut d_inp.data),
            d_weight,
            Some(d_bias),
            &self.ws.get(d_out)?.data,
            &self.ws.get(x)?.data,
            self.params.get(&format!("{name}.weight"))?,
            rows,
            in_features,
            out_features,
            &mut scratch.data,
        );
        self.ws.put(&scratch_key, scratch);
        self.ws.put(&d_x, d_inp);
        result.map(|()| d_x)
    }
}

fn slices(v: &[Vec<f32>]) -> Vec<&[f32]> {
    v.iter().map(Vec::as_slice).collect()
}

/// Both directions' weights of the LSTM `name`.
fn lstm_weights<'a>(
    params: &'a Named,
    name: &str,
) -> Result<[DeviceLstmWeights<'a>; 2], DeviceError> {
    let direction = |suffix: &str| -> Result<DeviceLstmWeights<'a>, DeviceError> {
        Ok(DeviceLstmWeights {
            w_ih: params.get(&format!("{name}.weight_ih_l0{suffix}"))?,
            w_hh: params.get(&format!("{name}.weight_hh_l0{suffix}"))?,
            b_ih: params.get(&format!("{name}.bias_ih_l0{suffix}"))?,
            b_hh: params.get(&format!("{name}.bias_hh_l0{suffix}"))?,
        })
    };
    Ok([direction("")?, direction("_reverse")?])
}

/// `Option<Option<Slot>>` from taking a gradient out of the map: a named gradient that is not
/// there is an error, not a silent skip.
trait TransposeMissing {
    fn transpose_missing(self, key: Option<&str>) -> Result<Option<Slot>, DeviceError>;
}

impl TransposeMissing for Option<Option<Slot>> {
    fn transpose_missing(self, key: Option<&str>) -> Result<Option<Slot>, DeviceError> {
        match self {
            None => Ok(None),
            Some(Some(slot)) => Ok(Some(slot)),
            Some(None) => Err(invalid(format!("no gradient {}", key.unwrap_or("?")))),
        }
    }
}

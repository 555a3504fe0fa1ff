//! UnetTranscriptionModel (PROTOCOL.md, "Network"): a U-net over the (frames × 176) CQT image,
//! a sigmoid, a bidirectional LSTM over frames, a Linear to 88 keys and a sigmoid. Written once
//! over a [`Backend`]: [`Transcriber`] alone is the CPU network; `Transcriber<Kernels>` the same
//! one on a kernel device (`Transcriber::upload`, in [`super::backend`]).

use crate::device::DeviceError;
use crate::ops::clamp::HOOK_GRADIENT_BOUND;

use super::backend::{Backend, Cpu};
use super::decoder::Decoder;
use super::encoder::Encoder;
use super::layers::{Linear, Lstm, Sigmoid};
use super::tensor::{Mode, StateEntry, Tensor};
use super::ModelError;

/// CQT bins per frame: the network's input width.
pub const N_BINS: usize = 176;
/// Piano keys, MIDI 21..108: the network's output width.
pub const N_KEYS: usize = 88;
/// The encoder halves the frame axis four times, so it needs at least 2⁴ frames.
pub const MIN_FRAMES: usize = 16;

/// The two gradient hooks of the original training code: the gradients flowing back into the
/// Linear's input and into the LSTM's input are clamped to ±these bounds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GradientHooks {
    pub linear_input_bound: f32,
    pub lstm_input_bound: f32,
}

impl Default for GradientHooks {
    fn default() -> Self {
        Self {
            linear_input_bound: HOOK_GRADIENT_BOUND,
            lstm_input_bound: HOOK_GRADIENT_BOUND,
        }
    }
}

pub struct Transcriber<B: Backend = Cpu> {
    backend: B,
    encoder: Encoder<B>,
    decoder: Decoder<B>,
    feat_sigmoid: Sigmoid<B>,
    lstm: Lstm<B>,
    linear: Linear<B>,
    roll_sigmoid: Sigmoid<B>,
    mode: Mode,
}

impl Transcriber {
    /// A network with PyTorch's default initialisation, drawn from the generator seeded `seed`.
    pub fn new(seed: u64) -> Self {
        Self::build(Cpu, seed).expect("the CPU backend never fails")
    }

    /// A second network with this one's parameters, statistics and mode, for running two
    /// inputs side by side (each network keeps its own activations).
    pub fn replica(&mut self) -> Self {
        let mut copy = Self::new(0);
        copy.mode = self.mode;
        for (to, from) in copy.state_entries().into_iter().zip(self.state_entries()) {
            match (to, from) {
                (StateEntry::Param(to), StateEntry::Param(from)) => {
                    to.value.clone_from(&from.value)
                }
                (StateEntry::Buffer(to), StateEntry::Buffer(from)) => {
                    to.value.clone_from(&from.value)
                }
                (StateEntry::Count { value: to, .. }, StateEntry::Count { value: from, .. }) => {
                    *to = *from
                }
                _ => unreachable!("two networks built alike list their state alike"),
            }
        }
        copy
    }
}

impl<B: Backend> Transcriber<B> {
    /// The network over `backend`, its parameters created in PyTorch's order (drawn from the
    /// generator seeded `seed` where the backend draws them).
    pub fn build(mut backend: B, seed: u64) -> Result<Self, DeviceError> {
        let b = &mut backend;
        let encoder = Encoder::new(b, "Unet1_encoder", seed)?;
        let decoder = Decoder::new(b, "Unet1_decoder", seed)?;
        let lstm = Lstm::new(b, "lstm1", N_BINS, N_BINS, seed)?;
        let linear = Linear::new(b, "linear", 2 * N_BINS, N_KEYS, seed)?;
        Ok(Self {
            backend,
            encoder,
            decoder,
            feat_sigmoid: Sigmoid::new("feat1.sigmoid".into()),
            lstm,
            linear,
            roll_sigmoid: Sigmoid::new("pianoroll.sigmoid".into()),
            mode: Mode::Train,
        })
    }

    pub fn backend(&self) -> &B {
        &self.backend
    }

    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// `model.train()` / `model.eval()`.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode;
    }

    /// spec (batch, frames, 176) → piano roll probabilities (batch, frames, 88).
    pub fn forward(&mut self, spec: &Tensor<B::Storage>) -> Result<Tensor<B::Storage>, ModelError> {
        let (batch, frames) = check_input_shape(spec.shape())?;
        let (mode, b) = (self.mode, &mut self.backend);
        let x = spec.reshaped(vec![batch, 1, frames, N_BINS]);
        let encoded = self.encoder.forward(b, &x, mode)?;
        let decoded = self
            .decoder
            .forward(b, &encoded.x4, encoded.sizes, &encoded.skips, mode)?;
        drop(encoded);
        let feat1 = self.feat_sigmoid.forward(b, &decoded, mode)?;
        let x = self
            .lstm
            .forward(b, &feat1.reshaped(vec![batch, frames, N_BINS]), mode)?;
        let x = self.linear.forward(b, &x, mode)?;
        Ok(self.roll_sigmoid.forward(b, &x, mode)?)
    }

    /// Backward from the gradient of the piano roll, after a training-mode forward; adds into
    /// every parameter's gradient. The hooks clamp the gradients into the Linear's and the
    /// LSTM's inputs on their way back, as `register_full_backward_hook` did.
    pub fn backward(
        &mut self,
        d_roll: &B::Storage,
        hooks: &GradientHooks,
    ) -> Result<(), DeviceError> {
        let b = &mut self.backend;
        let d = self.roll_sigmoid.backward(b, d_roll)?;
        let mut d_lstm_out = self.linear.backward(b, &d)?;
        let bound = hooks.linear_input_bound;
        b.clamp(&mut d_lstm_out, -bound, bound)?;
        let mut d_feat1 = self.lstm.backward(b, &d_lstm_out)?;
        let bound = hooks.lstm_input_bound;
        b.clamp(&mut d_feat1, -bound, bound)?;
        let d_decoded = self.feat_sigmoid.backward(b, &d_feat1)?;
        let (d_x4, [d_c1, d_c2, d_c3]) = self.decoder.backward(b, &d_decoded)?;
        self.encoder.backward(b, &d_x4, [&d_c1, &d_c2, &d_c3])
    }

    /// Every state_dict entry (parameters and BatchNorm buffers) in PyTorch's order.
    pub fn state_entries(&mut self) -> Vec<StateEntry<'_, B>> {
        let mut out = Vec::with_capacity(147);
        self.encoder.entries(&mut out);
        self.decoder.entries(&mut out);
        self.lstm.entries(&mut out);
        self.linear.entries(&mut out);
        out
    }

    /// The trainable parameters in PyTorch's `model.parameters()` order.
    pub fn params_mut(&mut self) -> Vec<&mut B::Param> {
        let mut out = Vec::new();
        self.encoder.entries(&mut out);
        self.decoder.entries(&mut out);
        self.lstm.entries(&mut out);
        self.linear.entries(&mut out);
        out.into_iter()
            .filter_map(|entry| match entry {
                StateEntry::Param(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    pub fn zero_grad(&mut self) -> Result<(), DeviceError> {
        let mut entries = Vec::new();
        self.encoder.entries(&mut entries);
        self.decoder.entries(&mut entries);
        self.lstm.entries(&mut entries);
        self.linear.entries(&mut entries);
        self.backend
            .zero_grads(entries.into_iter().filter_map(|entry| match entry {
                StateEntry::Param(p) => Some(p),
                _ => None,
            }))
    }
}

/// (batch, frames) of a model input, which must be (batch, frames ≥ 16, 176).
pub fn check_input_shape(shape: &[usize]) -> Result<(usize, usize), ModelError> {
    match *shape {
        [batch, frames, N_BINS] if batch > 0 && frames >= MIN_FRAMES => Ok((batch, frames)),
        _ => Err(ModelError::InputShape {
            shape: shape.to_vec(),
        }),
    }
}

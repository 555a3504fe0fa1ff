//! The network in evaluation mode on one spectrogram: what `mtosi forward` and transcription
//! run.

use crate::device::Device;

use super::tensor::{Mode, Tensor};
use super::transcriber::{Transcriber, MIN_FRAMES, N_BINS};
use super::ModelError;

/// The frame count of a model-input spectrogram, which must be (frames, 176), optionally with
/// leading dimensions of 1, at least 16 frames, and finite.
pub fn spectrogram_frames(shape: &[usize], values: &[f32]) -> Result<usize, ModelError> {
    let bad_shape = || ModelError::SpectrogramShape {
        shape: shape.to_vec(),
    };
    let (leading, last_two) = match shape.len() {
        0 | 1 => return Err(bad_shape()),
        n => shape.split_at(n - 2),
    };
    if leading.iter().any(|&d| d != 1) || last_two[1] != N_BINS || last_two[0] < MIN_FRAMES {
        return Err(bad_shape());
    }
    if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(ModelError::NotFinite {
            frame: index / N_BINS,
            bin: index % N_BINS,
            value,
        });
    }
    Ok(last_two[0])
}

/// Frame probabilities (frames × 88) of one (frames × 176) spectrogram, in evaluation mode.
pub fn frame_probabilities(
    model: &mut Transcriber,
    spectrogram: &[f32],
    frames: usize,
) -> Result<Vec<f32>, ModelError> {
    model.set_mode(Mode::Eval);
    let spec = Tensor::new(vec![1, frames, N_BINS], spectrogram.to_vec());
    Ok(model.forward(&spec)?.into_vec())
}

/// The evaluation-mode forward pass of `model` on `device`: spec (batch, frames, 176) → piano
/// roll probabilities (batch, frames, 88): the network on the CPU, or the same network on a
/// kernel device (`Transcriber<Kernels>`) with `model`'s parameters uploaded once for this call.
pub fn forward_eval_on(
    device: &Device,
    model: &mut Transcriber,
    spec: &Tensor,
) -> Result<Vec<f32>, ModelError> {
    model.set_mode(Mode::Eval);
    match device {
        Device::Cpu => Ok(model.forward(spec)?.into_vec()),
        Device::Kernels(kernels) => {
            Transcriber::upload(kernels, model)?.forward_host(spec.data(), spec.shape())
        }
    }
}

/// [`frame_probabilities`] on `device` (see [`forward_eval_on`]).
pub fn frame_probabilities_on(
    device: &Device,
    model: &mut Transcriber,
    spectrogram: &[f32],
    frames: usize,
) -> Result<Vec<f32>, ModelError> {
    let spec = Tensor::new(vec![1, frames, N_BINS], spectrogram.to_vec());
    forward_eval_on(device, model, &spec)
}

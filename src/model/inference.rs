//! The network in evaluation mode on one spectrogram: what `mtosi forward` and transcription
//! run.

use crate::device::Device;

use super::device_forward::DeviceTranscriber;
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

/// [`frame_probabilities`] on `device`: the CPU layers on [`Device::Cpu`], on a kernel device
/// the same network over its kernels, with `model`'s parameters uploaded once for this call.
pub fn frame_probabilities_on(
    device: &Device,
    model: &mut Transcriber,
    spectrogram: &[f32],
    frames: usize,
) -> Result<Vec<f32>, ModelError> {
    match device {
        Device::Cpu => frame_probabilities(model, spectrogram, frames),
        Device::Kernels(kernels) => {
            model.set_mode(Mode::Eval);
            let network = DeviceTranscriber::upload(kernels, model)?;
            network.forward_eval(spectrogram, &[1, frames, N_BINS])
        }
    }
}

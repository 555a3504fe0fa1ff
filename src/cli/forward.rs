//! `mtosi forward`: the network in evaluation mode on one model-input spectrogram, so anyone
//! can hold our network against theirs on their own inputs and weights.

use std::path::PathBuf;

use anyhow::Context;

use mtosi::device::DeviceRequest;
use mtosi::model::{checkpoint, inference, Transcriber};
use mtosi::npy;

#[derive(Debug, clap::Args)]
pub struct ForwardArgs {
    /// Model checkpoint: safetensors with PyTorch's state_dict names (ours, or one written by
    /// `safetensors.torch.save_file(model.state_dict(), path)`).
    #[arg(long)]
    pub checkpoint: PathBuf,
    /// Model-input spectrogram `.npy`: (frames, 176) float32, or with leading dimensions of 1.
    pub spectrogram: PathBuf,
    /// Where to write the (frames, 88) float32 frame probabilities.
    #[arg(short, long)]
    pub output: PathBuf,
    /// auto, cpu, emu, cuda or cuda:N (`auto`: cuda when a GPU and compiled kernels are
    /// present, else the cpu).
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

pub fn run(args: ForwardArgs) -> anyhow::Result<()> {
    let spectrogram = npy::read(&args.spectrogram)?;
    let frames = inference::spectrogram_frames(&spectrogram.shape, &spectrogram.data)
        .with_context(|| format!("{}", args.spectrogram.display()))?;
    let mut model = Transcriber::new(0);
    checkpoint::load_model(&args.checkpoint, &mut model)?;
    let selection = args
        .device
        .open()
        .with_context(|| format!("--device {}", args.device))?;
    eprintln!("{}", selection.reason);
    let roll =
        inference::frame_probabilities_on(&selection.device, &mut model, &spectrogram.data, frames)
            .with_context(|| format!("{}", args.spectrogram.display()))?;
    npy::write(&args.output, &[frames, mtosi::model::N_KEYS], &roll)?;
    Ok(())
}

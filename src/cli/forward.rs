//! `mtosi forward`: the network in evaluation mode on one model-input spectrogram, so anyone
//! can hold our network against theirs on their own inputs and weights.

use std::path::PathBuf;

use anyhow::{bail, Context};

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
    /// auto, cpu, emu, cuda or cuda:N. The network has no kernels yet: `auto` runs it on the
    /// cpu, `emu` and `cuda` are refused.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
}

pub fn run(args: ForwardArgs) -> anyhow::Result<()> {
    match args.device {
        DeviceRequest::Auto | DeviceRequest::Cpu => {}
        DeviceRequest::Emu | DeviceRequest::Cuda(_) => bail!(
            "--device {}: the network runs on the cpu device only until its kernels land",
            args.device
        ),
    }
    let spectrogram = npy::read(&args.spectrogram)?;
    let frames = inference::spectrogram_frames(&spectrogram.shape, &spectrogram.data)
        .with_context(|| format!("{}", args.spectrogram.display()))?;
    let mut model = Transcriber::new(0);
    checkpoint::load_model(&args.checkpoint, &mut model)?;
    let roll = inference::frame_probabilities(&mut model, &spectrogram.data, frames)
        .with_context(|| format!("{}", args.spectrogram.display()))?;
    npy::write(&args.output, &[frames, mtosi::model::N_KEYS], &roll)?;
    Ok(())
}

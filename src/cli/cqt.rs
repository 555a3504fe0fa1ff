//! `mtosi cqt AUDIO -o OUT.npy [--png OUT.png] [--log] [--normalize] [--device D]`: the CQT
//! spectrogram of one file as a (bins × frames) float32 `.npy`, and optionally its picture.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use mtosi::device::{Device, DeviceRequest};
use mtosi::spectrogram::{features, picture, Cqt, CqtParams, Spectrogram};

#[derive(Debug, Args)]
pub struct CqtArgs {
    /// Input audio: WAV or FLAC at any rate and channel count (mixed to mono, resampled to --sample-rate).
    pub audio: PathBuf,
    /// Output `.npy`: float32, shape (bins, frames), CQT magnitudes unless --log/--normalize.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Also draw the spectrogram (normalised log magnitude, low frequencies at the bottom).
    #[arg(long)]
    pub png: Option<PathBuf>,
    /// Store log(magnitude + 1e-5).
    #[arg(long)]
    pub log: bool,
    /// Min-max normalise the stored image to [0, 1] (after --log when both are given).
    #[arg(long)]
    pub normalize: bool,
    /// auto, cpu, emu or cuda[:N]: the CPU path, or kernels/cqt.cu emulated or on a GPU.
    #[arg(long, default_value = "auto")]
    pub device: DeviceRequest,
    #[arg(long, default_value_t = 16_000)]
    pub sample_rate: u32,
    #[arg(long, default_value_t = 512)]
    pub hop_length: usize,
    #[arg(long, default_value_t = 27.5)]
    pub fmin: f64,
    #[arg(long, default_value_t = 176)]
    pub bins: usize,
    #[arg(long, default_value_t = 24)]
    pub bins_per_octave: usize,
    #[arg(long, default_value_t = 1.0)]
    pub filter_scale: f64,
}

pub fn run(args: CqtArgs) -> anyhow::Result<()> {
    let params = CqtParams {
        sample_rate_hz: args.sample_rate,
        hop_length: args.hop_length,
        fmin_hz: args.fmin,
        n_bins: args.bins,
        bins_per_octave: args.bins_per_octave,
        filter_scale: args.filter_scale,
    };
    let cqt = Cqt::new(params)?;
    let audio = mtosi::audio::load_mono(&args.audio, params.sample_rate_hz)?;
    let selection = args.device.open()?;
    eprintln!("{}", selection.reason);
    let context = || format!("{}: computing the CQT", args.audio.display());
    let spec = match &selection.device {
        Device::Cpu => cqt.magnitude(&audio).with_context(context)?,
        device => Spectrogram {
            n_bins: params.n_bins,
            n_frames: cqt.n_frames(audio.len()),
            values: mtosi::ops::cqt::cqt(device, &cqt, &audio, audio.len())
                .with_context(context)?,
        },
    };
    let mut values = spec.values.clone();
    if args.log {
        features::log_compress(&mut values);
    }
    if args.normalize {
        features::normalize_imagewise(&mut values);
    }
    mtosi::npy::write(&args.output, &[spec.n_bins, spec.n_frames], &values)?;
    if let Some(png) = &args.png {
        picture::write_png(&spec, png)?;
    }
    println!(
        "{}: {} bins × {} frames ({} samples) → {}{}",
        args.audio.display(),
        spec.n_bins,
        spec.n_frames,
        audio.len(),
        args.output.display(),
        args.png
            .as_ref()
            .map(|p| format!(", {}", p.display()))
            .unwrap_or_default()
    );
    Ok(())
}

//! Subcommands: one file per command, each a thin layer over a library call.

mod cqt;
mod devices;
mod synth;

use clap::{Parser, Subcommand};
use mtosi::device::DeviceRequest;

#[derive(Debug, Parser)]
#[command(
    name = "mtosi",
    version,
    about = "Automatic music transcription trained on synthesized instruments"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute the CQT spectrogram of an audio file (nnAudio CQT1992v2), as .npy and a picture.
    Cqt(cqt::CqtArgs),
    /// Show which device `--device` selects and why, and the compiled kernels.
    Devices {
        /// auto, cpu, emu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: DeviceRequest,
    },
    /// Render note labels (and/or random music) into the Synthesized Instruments set.
    Synth(synth::SynthArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Cqt(args) => cqt::run(args),
        Command::Devices { device } => devices::run(device),
        Command::Synth(args) => synth::run(args),
    }
}

//! Subcommands: one file per command, each a thin layer over a library call.

mod devices;

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
    /// Show which device `--device` selects and why, and the compiled kernels.
    Devices {
        /// auto, cpu, emu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: DeviceRequest,
    },
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Devices { device } => devices::run(device),
    }
}

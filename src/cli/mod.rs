//! Subcommands: one file per command, each a thin layer over a library call.

mod cqt;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mtosi", version, about = "Automatic music transcription trained on synthesized instruments")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Compute the CQT spectrogram of an audio file (nnAudio CQT1992v2), as .npy and a picture.
    Cqt(cqt::CqtArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Cqt(args) => cqt::run(args),
    }
}

//! Subcommands: one file per command, each a thin layer over a library call.

mod synth;

use clap::{Parser, Subcommand};

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
    /// Render note labels (and/or random music) into the Synthesized Instruments set.
    Synth(synth::SynthArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Synth(args) => synth::run(args),
    }
}

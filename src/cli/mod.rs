//! Subcommands: one file per command, each a thin layer over a library call.

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "mtosi", version, about = "Automatic music transcription trained on synthesized instruments")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {}
}

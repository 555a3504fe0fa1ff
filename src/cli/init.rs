//! `mtosi init`: a freshly initialised network (PyTorch's default initialisation drawn from our
//! seeded generator) written as a PyTorch-loadable safetensors checkpoint.

use std::path::PathBuf;

use mtosi::model::{checkpoint, Transcriber};

#[derive(Debug, clap::Args)]
pub struct InitArgs {
    /// Seed of the initialisation (the protocol's runs use 33).
    #[arg(long, default_value_t = 33)]
    pub seed: u64,
    /// Where to write the checkpoint (`.safetensors`).
    #[arg(short, long)]
    pub output: PathBuf,
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let mut model = Transcriber::new(args.seed);
    checkpoint::save_model(&args.output, &mut model, 0)?;
    Ok(())
}

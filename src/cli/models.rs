//! `mtosi models`: which model `mtosi transcribe` uses, and its model card.

use std::path::PathBuf;

use mtosi::transcribe::bundled::{self, load_model, ModelSource};

#[derive(Debug, clap::Args)]
pub struct ModelsArgs {
    /// Describe this checkpoint instead of the bundled model.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
}

pub fn run(args: ModelsArgs) -> anyhow::Result<()> {
    match load_model(args.checkpoint.as_deref()) {
        Ok(loaded) => {
            println!("in use: {}", loaded.describe());
            for (key, value) in &loaded.metadata {
                println!("  {key}: {value}");
            }
            if loaded.source == ModelSource::Bundled {
                println!("\nmodel card (models/README.md):\n");
                println!("{}", bundled::MODEL_CARD.trim_end());
            }
        }
        Err(bundled::ModelChoiceError::NoModel) => {
            println!("in use: none — {}", bundled::ModelChoiceError::NoModel);
            println!("\nmodel card (models/README.md):\n");
            println!("{}", bundled::MODEL_CARD.trim_end());
        }
        Err(other) => return Err(other.into()),
    }
    Ok(())
}

//! The default model, embedded in the binary at build time, and the choice between it and a
//! checkpoint file.
//!
//! `models/mtosi-synth.safetensors` is always in the repository: empty until the trained model
//! is committed in its place, so a fresh clone builds either way. An empty file means "this
//! build has no bundled model"; any other content is embedded as it is and checked like any
//! checkpoint when it is loaded. `models/README.md`, the model card, is embedded beside it.

use std::path::{Path, PathBuf};

use crate::model::checkpoint::{self, CheckpointError, TensorFile};
use crate::model::Transcriber;

/// Where the bundled model lives in the repository, for messages.
pub const BUNDLED_MODEL_PATH: &str = "models/mtosi-synth.safetensors";

const BUNDLED_MODEL_BYTES: &[u8] = include_bytes!("../../models/mtosi-synth.safetensors");

/// The model card of the bundled model (`models/README.md`).
pub const MODEL_CARD: &str = include_str!("../../models/README.md");

/// The embedded checkpoint, if this build has one.
pub fn bundled_model_bytes() -> Option<&'static [u8]> {
    (!BUNDLED_MODEL_BYTES.is_empty()).then_some(BUNDLED_MODEL_BYTES)
}

/// Where a model came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ModelSource {
    /// Embedded in the binary from [`BUNDLED_MODEL_PATH`].
    Bundled,
    /// A checkpoint file given by the user.
    File(PathBuf),
}

/// A loaded model and what identifies it.
pub struct LoadedModel {
    pub model: Transcriber,
    pub source: ModelSource,
    pub bytes: usize,
    /// BLAKE3 of the checkpoint's bytes (hex), to tell models apart.
    pub blake3: String,
    /// The checkpoint's safetensors metadata (e.g. the training step).
    pub metadata: Vec<(String, String)>,
}

impl LoadedModel {
    /// One line saying which model this is.
    pub fn describe(&self) -> String {
        let what = match &self.source {
            ModelSource::Bundled => format!("bundled model ({BUNDLED_MODEL_PATH}, embedded)"),
            ModelSource::File(path) => format!("checkpoint {}", path.display()),
        };
        let step = self
            .metadata
            .iter()
            .find(|(k, _)| k == "step")
            .map(|(_, v)| format!(", step {v}"))
            .unwrap_or_default();
        format!(
            "{what}: {} bytes, blake3 {}{step}",
            self.bytes,
            &self.blake3[..16]
        )
    }
}

/// Errors of choosing a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelChoiceError {
    #[error(
        "no model: this build has no bundled model ({BUNDLED_MODEL_PATH} was empty when it was built); pass --checkpoint FILE (a trained checkpoint, or `mtosi init -o FILE` for random weights)"
    )]
    NoModel,
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
}

/// The model in `checkpoint` if given, else the bundled one.
pub fn load_model(checkpoint: Option<&Path>) -> Result<LoadedModel, ModelChoiceError> {
    let (bytes, source): (std::borrow::Cow<'static, [u8]>, ModelSource) = match checkpoint {
        Some(path) => (
            std::fs::read(path)
                .map_err(|source| CheckpointError::Io {
                    path: path.to_path_buf(),
                    source,
                })?
                .into(),
            ModelSource::File(path.to_path_buf()),
        ),
        None => (
            bundled_model_bytes()
                .ok_or(ModelChoiceError::NoModel)?
                .into(),
            ModelSource::Bundled,
        ),
    };
    let name = match &source {
        ModelSource::File(path) => path.clone(),
        ModelSource::Bundled => PathBuf::from(format!("{BUNDLED_MODEL_PATH} (bundled)")),
    };
    let file = TensorFile::parse(&bytes, &name)?;
    let mut model = Transcriber::new(0);
    checkpoint::load_model_from(&file, &name, &mut model)?;
    Ok(LoadedModel {
        model,
        source,
        bytes: bytes.len(),
        blake3: blake3::hash(&bytes).to_hex().to_string(),
        metadata: file.metadata.into_iter().collect(),
    })
}

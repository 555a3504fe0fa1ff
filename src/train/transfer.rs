//! Transfer learning: initialise a network from another run's checkpoint (every parameter and
//! BatchNorm buffer whose name and shape match, and the source run's Adam state when it lies
//! beside the checkpoint, as the original code restored it), and freeze parts of the network.
//!
//! Freezing is `requires_grad = False` on the part's parameters, as the original code meant
//! it: Adam leaves them untouched (no update, their moments unchanged), while the part still
//! runs in training mode, so its BatchNorm running statistics keep following the new data.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::model::checkpoint::{optimizer_path, CheckpointError, StoredTensor, TensorFile};
use crate::model::tensor::StateEntry;
use crate::model::training::Optimizer;
use crate::model::Transcriber;
use safetensors::tensor::Dtype;

/// A part of the network that `--freeze` can hold fixed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FreezePart {
    /// The U-net's encoder (`Unet1_encoder.*`).
    Encoder,
    /// The U-net's decoder (`Unet1_decoder.*`).
    Decoder,
    /// The bidirectional LSTM (`lstm1.*`).
    Lstm,
    /// The output Linear layer (`linear.*`).
    Linear,
}

impl FreezePart {
    pub const ALL: [FreezePart; 4] = [
        FreezePart::Encoder,
        FreezePart::Decoder,
        FreezePart::Lstm,
        FreezePart::Linear,
    ];

    /// The state_dict prefix of the part's tensors.
    pub fn prefix(self) -> &'static str {
        match self {
            FreezePart::Encoder => "Unet1_encoder.",
            FreezePart::Decoder => "Unet1_decoder.",
            FreezePart::Lstm => "lstm1.",
            FreezePart::Linear => "linear.",
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            FreezePart::Encoder => "encoder",
            FreezePart::Decoder => "decoder",
            FreezePart::Lstm => "lstm",
            FreezePart::Linear => "linear",
        }
    }
}

impl std::str::FromStr for FreezePart {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let lower = s.to_ascii_lowercase();
        FreezePart::ALL
            .into_iter()
            .find(|p| p.as_str() == lower)
            .ok_or_else(|| {
                format!("unknown part {s:?} to freeze; expected encoder, decoder, lstm or linear")
            })
    }
}

/// `true` for every parameter (in `params_mut` order) inside a frozen part.
pub fn frozen_mask(model: &mut Transcriber, parts: &[FreezePart]) -> Vec<bool> {
    model
        .params_mut()
        .iter()
        .map(|p| parts.iter().any(|part| p.name.starts_with(part.prefix())))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error("{}: no tensor of this network matches by name and shape; is it a checkpoint of this model?", path.display())]
    NothingMatches { path: PathBuf },
}

/// What `--init` copied.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TransferReport {
    pub source: PathBuf,
    /// State entries copied from the source.
    pub copied: Vec<String>,
    /// The network's entries left at their initial values, each with the reason.
    pub not_copied: Vec<(String, String)>,
    /// Tensors of the source that the network has no place for.
    pub unused: Vec<String>,
    /// Where the Adam state came from, or why it was not taken.
    pub optimizer: String,
}

impl TransferReport {
    /// The report as printed lines.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "initialised from {}: {} tensors copied, {} not copied, {} in the source unused",
            self.source.display(),
            self.copied.len(),
            self.not_copied.len(),
            self.unused.len()
        )];
        lines.extend(self.copied.iter().map(|n| format!("  copied      {n}")));
        lines.extend(
            self.not_copied
                .iter()
                .map(|(n, why)| format!("  not copied  {n}: {why}")),
        );
        lines.extend(self.unused.iter().map(|n| format!("  unused      {n}")));
        lines.push(format!("  Adam state: {}", self.optimizer));
        lines
    }
}

fn matches(stored: &StoredTensor, dtype: Dtype, shape: &[usize]) -> Result<(), String> {
    if stored.dtype != dtype {
        return Err(format!(
            "dtype {:?} in the source, {dtype:?} here",
            stored.dtype
        ));
    }
    if stored.shape != shape {
        return Err(format!(
            "shape {:?} in the source, {shape:?} here",
            stored.shape
        ));
    }
    if let Some(v) = stored.to_f32() {
        if let Some(x) = v.iter().find(|x| !x.is_finite()) {
            return Err(format!("the source holds {x}"));
        }
    }
    Ok(())
}

/// Copies every matching tensor of the checkpoint at `path` into `model`; with
/// `take_optimizer`, also the Adam moments of the copied parameters and the step count from
/// `path`'s `.optim.safetensors` when it exists. The learning-rate schedule stays the new
/// run's (it starts at its own `--lr`).
pub fn init_from(
    path: &Path,
    model: &mut Transcriber,
    optimizer: &mut Optimizer,
    take_optimizer: bool,
) -> Result<TransferReport, TransferError> {
    let file = TensorFile::read(path)?;
    let mut copied = Vec::new();
    let mut not_copied = Vec::new();
    let mut known = std::collections::HashSet::new();
    for entry in model.state_entries() {
        let name = entry.name().to_string();
        known.insert(name.clone());
        let Some(stored) = file.tensors.get(&name) else {
            not_copied.push((name, "not in the source".to_string()));
            continue;
        };
        let (dtype, shape) = match &entry {
            StateEntry::Param(p) => (Dtype::F32, p.shape.clone()),
            StateEntry::Buffer(b) => (Dtype::F32, b.shape.clone()),
            StateEntry::Count { .. } => (Dtype::I64, Vec::new()),
        };
        if let Err(why) = matches(stored, dtype, &shape) {
            not_copied.push((name, why));
            continue;
        }
        match entry {
            StateEntry::Param(p) => p.value = stored.to_f32().expect("checked f32"),
            StateEntry::Buffer(b) => b.value = stored.to_f32().expect("checked f32"),
            StateEntry::Count { value, .. } => *value = stored.to_i64().expect("checked i64")[0],
        }
        copied.push(name);
    }
    if copied.is_empty() {
        return Err(TransferError::NothingMatches {
            path: path.to_path_buf(),
        });
    }
    let unused = file
        .tensors
        .keys()
        .filter(|k| !known.contains(*k))
        .cloned()
        .collect();
    let optim_path = optimizer_path(path);
    let optimizer_note = if !take_optimizer {
        "not taken (--init-optimizer no): Adam starts fresh".to_string()
    } else if !optim_path.exists() {
        format!("{} not found: Adam starts fresh", optim_path.display())
    } else {
        let state = TensorFile::read(&optim_path)?;
        let step: u64 = state
            .metadata
            .get("step")
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| CheckpointError::Metadata {
                path: optim_path.clone(),
                key: "step".into(),
                problem: "missing or not a number".into(),
            })?;
        let mut taken = 0;
        let copied_set: std::collections::HashSet<&String> = copied.iter().collect();
        for (i, p) in model.params_mut().into_iter().enumerate() {
            if !copied_set.contains(&p.name) {
                continue;
            }
            let m = state.tensors.get(&format!("exp_avg.{}", p.name));
            let v = state.tensors.get(&format!("exp_avg_sq.{}", p.name));
            if let (Some(m), Some(v)) = (m, v) {
                if matches(m, Dtype::F32, &p.shape).is_ok()
                    && matches(v, Dtype::F32, &p.shape).is_ok()
                {
                    optimizer.exp_avg[i] = m.to_f32().expect("checked");
                    optimizer.exp_avg_sq[i] = v.to_f32().expect("checked");
                    taken += 1;
                }
            }
        }
        optimizer.step = step;
        format!(
            "taken from {} (step {step}, moments of {taken} parameters); the learning rate starts at this run's --lr",
            optim_path.display()
        )
    };
    Ok(TransferReport {
        source: path.to_path_buf(),
        copied,
        not_copied,
        unused,
        optimizer: optimizer_note,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_cover_every_parameter_once() {
        let mut model = Transcriber::new(1);
        let names: Vec<String> = model.params_mut().iter().map(|p| p.name.clone()).collect();
        for name in &names {
            let owners = FreezePart::ALL
                .iter()
                .filter(|p| name.starts_with(p.prefix()))
                .count();
            assert_eq!(owners, 1, "{name}");
        }
        let mask = frozen_mask(&mut model, &[FreezePart::Lstm]);
        let frozen: Vec<&String> = names
            .iter()
            .zip(&mask)
            .filter(|(_, m)| **m)
            .map(|(n, _)| n)
            .collect();
        assert_eq!(frozen.len(), 8, "{frozen:?}");
        assert!(frozen.iter().all(|n| n.starts_with("lstm1.")));
        assert_eq!("LSTM".parse::<FreezePart>().unwrap(), FreezePart::Lstm);
        assert!("head".parse::<FreezePart>().is_err());
    }
}

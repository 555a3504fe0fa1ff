//! Checkpoints as safetensors with PyTorch's state_dict names and shapes:
//! `model.load_state_dict(safetensors.torch.load_file(path))` loads ours, and a file written by
//! `safetensors.torch.save_file(model.state_dict(), path)` loads here. Beside `NAME.safetensors`,
//! `NAME.optim.safetensors` keeps Adam's moments (`exp_avg.<param>`, `exp_avg_sq.<param>`)
//! and, in its metadata, the step count, the schedule and any caller state (the sampler's RNG),
//! so a run resumes exactly. Writes are atomic; reads check every tensor before changing the
//! model, and the first bad one is named with the file.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use safetensors::tensor::{Dtype, SafeTensors, TensorView};

use super::tensor::StateEntry;
use super::training::Optimizer;
use super::Transcriber;
use crate::fsutil;
use crate::train::adam::AdamConfig;
use crate::train::step_lr::StepLr;

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: not a valid safetensors file: {reason}")]
    Format { path: PathBuf, reason: String },
    #[error("{path}: tensor {name:?}: {problem}")]
    Tensor {
        path: PathBuf,
        name: String,
        problem: TensorProblem,
    },
    #[error("{path}: metadata {key:?}: {problem}")]
    Metadata {
        path: PathBuf,
        key: String,
        problem: String,
    },
}

/// What is wrong with one tensor of a checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub enum TensorProblem {
    Missing,
    Unexpected,
    Shape {
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    Dtype {
        expected: String,
        found: String,
    },
    NotFinite {
        index: usize,
        value: f32,
    },
    Truncated {
        needed_bytes: usize,
        file_bytes: usize,
    },
}

impl std::fmt::Display for TensorProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorProblem::Missing => write!(f, "missing from the file"),
            TensorProblem::Unexpected => write!(f, "not a tensor of this network"),
            TensorProblem::Shape { expected, found } => {
                write!(f, "shape {found:?}, the network's is {expected:?}")
            }
            TensorProblem::Dtype { expected, found } => write!(f, "dtype {found}, expected {expected}"),
            TensorProblem::NotFinite { index, value } => write!(f, "value {value} at flat index {index}"),
            TensorProblem::Truncated {
                needed_bytes,
                file_bytes,
            } => write!(
                f,
                "the file is truncated: this tensor's data ends at byte {needed_bytes} of the data section, which holds {file_bytes}"
            ),
        }
    }
}

/// One tensor as stored: dtype, shape and little-endian bytes.
#[derive(Debug, Clone)]
pub struct StoredTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub bytes: Vec<u8>,
}

impl StoredTensor {
    pub fn from_f32(shape: Vec<usize>, values: &[f32]) -> Self {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            dtype: Dtype::F32,
            shape,
            bytes,
        }
    }

    pub fn from_i64(shape: Vec<usize>, values: &[i64]) -> Self {
        let bytes = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        Self {
            dtype: Dtype::I64,
            shape,
            bytes,
        }
    }

    /// The values of an F32 tensor.
    pub fn to_f32(&self) -> Option<Vec<f32>> {
        (self.dtype == Dtype::F32).then(|| {
            self.bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        })
    }

    /// The values of an I64 tensor.
    pub fn to_i64(&self) -> Option<Vec<i64>> {
        (self.dtype == Dtype::I64).then(|| {
            self.bytes
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
                .collect()
        })
    }
}

/// The tensors and the string metadata of one safetensors file.
#[derive(Debug, Clone, Default)]
pub struct TensorFile {
    pub tensors: BTreeMap<String, StoredTensor>,
    pub metadata: BTreeMap<String, String>,
}

impl TensorFile {
    /// Reads a whole safetensors file; a truncated one names the first tensor it cuts.
    pub fn read(path: &Path) -> Result<Self, CheckpointError> {
        let bytes = std::fs::read(path).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&bytes, path)
    }

    /// Parses a safetensors file held in memory (e.g. one embedded in the binary); `path`
    /// only names it in errors.
    pub fn parse(bytes: &[u8], path: &Path) -> Result<Self, CheckpointError> {
        let parsed = SafeTensors::deserialize(bytes).map_err(|err| diagnose(path, bytes, err))?;
        let tensors = parsed
            .iter()
            .map(|(name, view)| {
                let stored = StoredTensor {
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    bytes: view.data().to_vec(),
                };
                (name.to_string(), stored)
            })
            .collect();
        let (_, header) =
            SafeTensors::read_metadata(bytes).map_err(|err| diagnose(path, bytes, err))?;
        let metadata = header
            .metadata()
            .as_ref()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        Ok(Self { tensors, metadata })
    }

    /// Writes the file atomically (temporary file, then rename).
    pub fn write(&self, path: &Path) -> Result<(), CheckpointError> {
        let views = self
            .tensors
            .iter()
            .map(|(name, t)| {
                let view = TensorView::new(t.dtype, t.shape.clone(), &t.bytes).map_err(|err| {
                    CheckpointError::Format {
                        path: path.to_path_buf(),
                        reason: format!("tensor {name:?}: {err}"),
                    }
                })?;
                Ok((name.as_str(), view))
            })
            .collect::<Result<Vec<_>, CheckpointError>>()?;
        let metadata: HashMap<String, String> = self.metadata.clone().into_iter().collect();
        let bytes = safetensors::tensor::serialize(views, Some(metadata)).map_err(|err| {
            CheckpointError::Format {
                path: path.to_path_buf(),
                reason: err.to_string(),
            }
        })?;
        fsutil::write_bytes_atomic(path, &bytes).map_err(|source| CheckpointError::Io {
            path: path.to_path_buf(),
            source,
        })
    }
}

/// Explains why a file did not parse, naming the first tensor whose data lies past its end.
fn diagnose(path: &Path, bytes: &[u8], err: safetensors::SafeTensorError) -> CheckpointError {
    if let Some((name, needed_bytes, file_bytes)) = first_truncated_tensor(bytes) {
        return CheckpointError::Tensor {
            path: path.to_path_buf(),
            name,
            problem: TensorProblem::Truncated {
                needed_bytes,
                file_bytes,
            },
        };
    }
    CheckpointError::Format {
        path: path.to_path_buf(),
        reason: err.to_string(),
    }
}

/// Reads the JSON header directly (the safetensors crate refuses a file whose data does not
/// cover it) and returns the tensor, by data offset, that first ends past the data present.
fn first_truncated_tensor(bytes: &[u8]) -> Option<(String, usize, usize)> {
    let header_len = u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?) as usize;
    let header: serde_json::Value =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(header_len)?)?).ok()?;
    let data_bytes = bytes.len() - 8 - header_len;
    let mut ends: Vec<(usize, String)> = header
        .as_object()?
        .iter()
        .filter(|(name, _)| name.as_str() != "__metadata__")
        .filter_map(|(name, info)| Some((info["data_offsets"][1].as_u64()? as usize, name.clone())))
        .collect();
    ends.sort();
    let (end, name) = ends.into_iter().find(|(end, _)| *end > data_bytes)?;
    Some((name, end, data_bytes))
}

/// The path of the training state kept beside a model checkpoint:
/// `run/ck.safetensors` → `run/ck.optim.safetensors`.
pub fn optimizer_path(model_path: &Path) -> PathBuf {
    let name = model_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".safetensors").unwrap_or(&name);
    model_path.with_file_name(format!("{stem}.optim.safetensors"))
}

/// The model's state_dict as a tensor file, with `step` in its metadata (`format: pt`, as
/// `safetensors.torch` writes it).
pub fn model_to_file(model: &mut Transcriber, step: u64) -> TensorFile {
    let mut file = TensorFile::default();
    for entry in model.state_entries() {
        let (name, stored) = match entry {
            StateEntry::Param(p) => (
                p.name.clone(),
                StoredTensor::from_f32(p.shape.clone(), &p.value),
            ),
            StateEntry::Buffer(b) => (
                b.name.clone(),
                StoredTensor::from_f32(b.shape.clone(), &b.value),
            ),
            StateEntry::Count { name, value } => (
                name.to_string(),
                StoredTensor::from_i64(Vec::new(), &[*value]),
            ),
        };
        file.tensors.insert(name, stored);
    }
    file.metadata.insert("format".into(), "pt".into());
    file.metadata.insert("step".into(), step.to_string());
    file
}

/// Saves the model's state_dict to `path` atomically.
pub fn save_model(path: &Path, model: &mut Transcriber, step: u64) -> Result<(), CheckpointError> {
    model_to_file(model, step).write(path)
}

/// Loads a state_dict from `path` into `model` (PyTorch's `load_state_dict(strict=True)`).
/// Every tensor is checked first (present, expected, F32 or I64 as PyTorch stores it, right
/// shape, finite); on any problem the model is left unchanged and the first bad tensor, in
/// state_dict order, is named.
pub fn load_model(path: &Path, model: &mut Transcriber) -> Result<(), CheckpointError> {
    let file = TensorFile::read(path)?;
    load_model_from(&file, path, model)
}

/// [`load_model`] on a file already read; `path` only names it in errors.
pub fn load_model_from(
    file: &TensorFile,
    path: &Path,
    model: &mut Transcriber,
) -> Result<(), CheckpointError> {
    let bad = |name: &str, problem| CheckpointError::Tensor {
        path: path.to_path_buf(),
        name: name.to_string(),
        problem,
    };
    let mut known = std::collections::HashSet::new();
    for entry in model.state_entries() {
        let name = entry.name().to_string();
        let Some(stored) = file.tensors.get(&name) else {
            // PyTorch's BatchNorm loads a state_dict without `num_batches_tracked` (older
            // checkpoints) as 0; so do we.
            if matches!(entry, StateEntry::Count { .. }) {
                continue;
            }
            return Err(bad(&name, TensorProblem::Missing));
        };
        let (expected_dtype, expected_shape) = match &entry {
            StateEntry::Param(p) => (Dtype::F32, p.shape.clone()),
            StateEntry::Buffer(b) => (Dtype::F32, b.shape.clone()),
            StateEntry::Count { .. } => (Dtype::I64, Vec::new()),
        };
        check_tensor(stored, expected_dtype, &expected_shape)
            .map_err(|problem| bad(&name, problem))?;
        known.insert(name);
    }
    if let Some(name) = file.tensors.keys().find(|name| !known.contains(*name)) {
        return Err(bad(name, TensorProblem::Unexpected));
    }
    for entry in model.state_entries() {
        let stored = file.tensors.get(entry.name());
        match entry {
            StateEntry::Param(p) => p.value = stored.and_then(StoredTensor::to_f32).unwrap(),
            StateEntry::Buffer(b) => b.value = stored.and_then(StoredTensor::to_f32).unwrap(),
            StateEntry::Count { value, .. } => {
                *value = stored.and_then(StoredTensor::to_i64).map_or(0, |v| v[0])
            }
        }
    }
    Ok(())
}

fn check_tensor(stored: &StoredTensor, dtype: Dtype, shape: &[usize]) -> Result<(), TensorProblem> {
    if stored.dtype != dtype {
        return Err(TensorProblem::Dtype {
            expected: format!("{dtype:?}"),
            found: format!("{:?}", stored.dtype),
        });
    }
    if stored.shape != shape {
        return Err(TensorProblem::Shape {
            expected: shape.to_vec(),
            found: stored.shape.clone(),
        });
    }
    if let Some(values) = stored.to_f32() {
        if let Some((index, &value)) = values.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(TensorProblem::NotFinite { index, value });
        }
    }
    Ok(())
}

/// Saves the model to `path` and the optimizer beside it ([`optimizer_path`]); `extra` is
/// caller state kept verbatim in the metadata (e.g. the sampler's RNG state). The optimizer
/// file is written first and both carry the step, so a crash between the two writes is
/// detected on resume.
pub fn save_training_state(
    path: &Path,
    model: &mut Transcriber,
    optimizer: &Optimizer,
    extra: &BTreeMap<String, String>,
) -> Result<(), CheckpointError> {
    let mut file = TensorFile::default();
    let names: Vec<String> = model.params_mut().iter().map(|p| p.name.clone()).collect();
    let shapes: Vec<Vec<usize>> = model.params_mut().iter().map(|p| p.shape.clone()).collect();
    for (i, name) in names.iter().enumerate() {
        let shape = shapes[i].clone();
        file.tensors.insert(
            format!("exp_avg.{name}"),
            StoredTensor::from_f32(shape.clone(), &optimizer.exp_avg[i]),
        );
        file.tensors.insert(
            format!("exp_avg_sq.{name}"),
            StoredTensor::from_f32(shape, &optimizer.exp_avg_sq[i]),
        );
    }
    let m = &mut file.metadata;
    m.insert("step".into(), optimizer.step.to_string());
    m.insert("adam.lr".into(), optimizer.config.lr.to_string());
    m.insert("adam.beta1".into(), optimizer.config.beta1.to_string());
    m.insert("adam.beta2".into(), optimizer.config.beta2.to_string());
    m.insert("adam.eps".into(), optimizer.config.eps.to_string());
    m.insert(
        "step_lr.step_size".into(),
        optimizer.scheduler.step_size.to_string(),
    );
    m.insert(
        "step_lr.gamma".into(),
        optimizer.scheduler.gamma.to_string(),
    );
    m.insert(
        "step_lr.last_epoch".into(),
        optimizer.scheduler.last_epoch.to_string(),
    );
    m.insert("step_lr.lr".into(), optimizer.scheduler.lr.to_string());
    for (key, value) in extra {
        m.insert(format!("extra.{key}"), value.clone());
    }
    file.write(&optimizer_path(path))?;
    save_model(path, model, optimizer.step)
}

/// Loads what [`save_training_state`] wrote: the model (in place), the optimizer and the
/// caller's extra state.
pub fn load_training_state(
    path: &Path,
    model: &mut Transcriber,
) -> Result<(Optimizer, BTreeMap<String, String>), CheckpointError> {
    let model_file = TensorFile::read(path)?;
    let optim_path = optimizer_path(path);
    let file = TensorFile::read(&optim_path)?;
    let meta = |key: &str| -> Result<&str, CheckpointError> {
        file.metadata
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| CheckpointError::Metadata {
                path: optim_path.clone(),
                key: key.to_string(),
                problem: "missing".into(),
            })
    };
    fn parse<T: std::str::FromStr>(
        path: &Path,
        key: &str,
        text: &str,
    ) -> Result<T, CheckpointError> {
        text.parse().map_err(|_| CheckpointError::Metadata {
            path: path.to_path_buf(),
            key: key.to_string(),
            problem: format!("{text:?} is not a number"),
        })
    }
    let number =
        |key: &str| -> Result<f64, CheckpointError> { parse(&optim_path, key, meta(key)?) };
    let count = |key: &str| -> Result<u64, CheckpointError> { parse(&optim_path, key, meta(key)?) };
    let step = count("step")?;
    let model_step = model_file
        .metadata
        .get("step")
        .map(String::as_str)
        .unwrap_or("");
    if model_step != step.to_string() {
        return Err(CheckpointError::Metadata {
            path: path.to_path_buf(),
            key: "step".into(),
            problem: format!(
                "{model_step:?} does not match step {step} of {}",
                optim_path.display()
            ),
        });
    }
    let config = AdamConfig {
        lr: number("adam.lr")?,
        beta1: number("adam.beta1")?,
        beta2: number("adam.beta2")?,
        eps: number("adam.eps")?,
    };
    let mut scheduler = StepLr::new(
        config.lr,
        count("step_lr.step_size")?.max(1),
        number("step_lr.gamma")?,
    );
    scheduler.last_epoch = count("step_lr.last_epoch")?;
    scheduler.lr = number("step_lr.lr")?;

    let bad = |name: &str, problem| CheckpointError::Tensor {
        path: optim_path.clone(),
        name: name.to_string(),
        problem,
    };
    let params: Vec<(String, Vec<usize>)> = model
        .params_mut()
        .iter()
        .map(|p| (p.name.clone(), p.shape.clone()))
        .collect();
    let mut exp_avg = Vec::with_capacity(params.len());
    let mut exp_avg_sq = Vec::with_capacity(params.len());
    for (name, shape) in &params {
        for (prefix, out) in [("exp_avg", &mut exp_avg), ("exp_avg_sq", &mut exp_avg_sq)] {
            let key = format!("{prefix}.{name}");
            let stored = file
                .tensors
                .get(&key)
                .ok_or_else(|| bad(&key, TensorProblem::Missing))?;
            check_tensor(stored, Dtype::F32, shape).map_err(|problem| bad(&key, problem))?;
            out.push(stored.to_f32().unwrap());
        }
    }
    if let Some(key) = file.tensors.keys().find(|key| {
        !params.iter().any(|(name, _)| {
            **key == format!("exp_avg.{name}") || **key == format!("exp_avg_sq.{name}")
        })
    }) {
        return Err(bad(key, TensorProblem::Unexpected));
    }
    load_model_from(&model_file, path, model)?;
    let extra = file
        .metadata
        .iter()
        .filter_map(|(k, v)| k.strip_prefix("extra.").map(|k| (k.to_string(), v.clone())))
        .collect();
    let optimizer = Optimizer {
        config,
        step,
        exp_avg,
        exp_avg_sq,
        scheduler,
    };
    Ok((optimizer, extra))
}

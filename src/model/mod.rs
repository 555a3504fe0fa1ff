//! The transcriber: layers with explicit forward and backward, the U-net + BiLSTM network, checkpoints.
//!
//! [`backend`] routes each op the network uses to its CPU function or its kernel launcher;
//! [`layers`] wraps those ops into structs that hold parameters and gradients; [`encoder`] and
//! [`decoder`] build the U-net's blocks from them; [`transcriber`] is the whole network, reading
//! //! top to bottom like PROTOCOL.md, written once for every backend; [`training`] is one
//! optimizer step (loss, hooks, clip by value, Adam, StepLR), [`device_training`] its optimizer
//! side on a kernel device; [`checkpoint`] reads and writes PyTorch-compatible
//! safetensors. Parameters carry their PyTorch state_dict names.

pub mod backend;
pub mod bench;
pub mod checkpoint;
pub mod decoder;
pub mod device_training;
pub mod encoder;
pub mod inference;
pub mod init;
pub mod layers;
pub mod profile;
pub mod storage;
pub mod tensor;
pub mod training;
pub mod transcriber;

pub use tensor::{Mode, Param, Tensor};
pub use transcriber::{GradientHooks, Transcriber, MIN_FRAMES, N_BINS, N_KEYS};

/// Errors of the network's inputs.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(
        "the network takes (batch, frames, {N_BINS}) spectrograms with at least {MIN_FRAMES} frames, got shape {shape:?}"
    )]
    InputShape { shape: Vec<usize> },
    #[error(
        "the spectrogram has shape {shape:?}; the network takes (frames, {N_BINS}) with at least {MIN_FRAMES} frames, optionally with leading dimensions of 1"
    )]
    SpectrogramShape { shape: Vec<usize> },
    #[error("the spectrogram holds {value} at frame {frame}, bin {bin}")]
    NotFinite {
        frame: usize,
        bin: usize,
        value: f32,
    },
    #[error(transparent)]
    Device(#[from] crate::device::DeviceError),
    #[error("the frame roll has shape {got:?}, the piano roll {expected:?}")]
    TargetShape {
        got: Vec<usize>,
        expected: Vec<usize>,
    },
}

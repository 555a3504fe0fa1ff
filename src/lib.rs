//! mtosi: automatic music transcription trained on synthesized instruments.
//!
//! Data flows one way, one module per arrow:
//! files → [`notes`] / [`audio`] → [`spectrogram`] → [`model`] → piano roll → [`decode`] → notes → MIDI / [`metrics`];
//! [`transcribe`] runs the whole path on a file of any length (audio → MIDI) as one call.
//! [`synth`] renders notes into audio (the Synthesized Instruments set), [`data`] pairs audio with
//! labels into datasets, [`train`] fits the network. Compute runs through [`device`]: the plain-Rust
//! CPU reference, the CUDA kernels of `kernels/` on a GPU, or the same kernels emulated on the CPU.

pub mod audio;
pub mod compare;
pub mod data;
pub mod decode;
pub mod device;
pub mod evaluate;
pub mod experiment;
pub mod fsutil;
pub mod metrics;
pub mod model;
pub mod notes;
pub mod npy;
pub mod ops;
pub mod rng;
pub mod spectrogram;
pub mod synth;
pub mod train;
pub mod transcribe;

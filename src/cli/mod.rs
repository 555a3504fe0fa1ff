//! Subcommands: one file per command, each a thin layer over a library call.

mod bench_step;
mod cqt;
mod curves;
mod demo;
mod devices;
mod eval;
mod experiment;
mod forward;
mod init;
mod models;
mod score;
mod synth;
mod train;
mod transcribe;

use clap::{Parser, Subcommand};
use mtosi::device::{Device, DeviceRequest};
use mtosi::ops::conv2d::{set_conv_precision, ConvPrecision};

/// `--precision`, shared by the commands that run the network: the precision of the CPU
/// convolution products and of the LSTM's recurrent products for this process. `bf16` needs
/// AVX512-BF16 (an error elsewhere, not a silent fallback) and the cpu device (the kernels
/// compute in float32).
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct PrecisionArg {
    /// Products on the CPU: fp32, or bf16 (bf16 operands, float32 sums; the forwards and data
    /// gradients of the 3×3 and 2×2 convolutions with at least 8 channels each side, their weight
    /// gradients with at least 8 output channels, and the LSTM's W_hh·h; needs AVX512-BF16;
    /// on CPUs with AMX the convolutions' forwards run on its tiles, `MTOSI_AMX=0` keeps them off).
    #[arg(long, value_enum, default_value_t = ConvPrecision::Fp32)]
    pub precision: ConvPrecision,
}

impl PrecisionArg {
    pub fn apply(self, device: &Device) -> anyhow::Result<()> {
        if self.precision == ConvPrecision::Bf16 && !matches!(device, Device::Cpu) {
            anyhow::bail!(
                "--precision bf16 applies to the cpu's convolutions and LSTM; use --device cpu"
            );
        }
        set_conv_precision(self.precision)
            .map_err(|e| anyhow::anyhow!("--precision bf16: {e}; use --precision fp32"))?;
        Ok(())
    }
}

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
    /// Compute the CQT spectrogram of an audio file (nnAudio CQT1992v2), as .npy and a picture.
    Cqt(cqt::CqtArgs),
    /// Show which device `--device` selects and why, and the compiled kernels.
    Devices {
        /// auto, cpu, emu, cuda or cuda:N
        #[arg(long, default_value = "auto")]
        device: DeviceRequest,
    },
    /// Render note labels (and/or random music) into the Synthesized Instruments set.
    Synth(synth::SynthArgs),
    /// Run the network (evaluation mode) on a spectrogram .npy, writing frame probabilities.
    Forward(forward::ForwardArgs),
    /// Write a freshly initialised network as a safetensors checkpoint.
    Init(init::InitArgs),
    /// Time one training step or the evaluation forward pass on the CPU.
    BenchStep(bench_step::BenchStepArgs),
    /// Train the transcriber (from scratch, by transfer with --init, or --resume a run).
    Train(Box<train::TrainArgs>),
    /// Score a checkpoint on every recording of a dataset split, whole (frame, note, note with offset).
    Eval(eval::EvalArgs),
    /// The paper's protocol: seven trainings, their evaluations, Tables 1-3 and the convergence plot.
    Experiment(experiment::ExperimentArgs),
    /// Transcribe audio files and folders into MIDI (and notes, pictures, rolls).
    Transcribe(transcribe::TranscribeArgs),
    /// Render a short piece, transcribe it, score it and write the files (no data, no GPU).
    Demo(demo::DemoArgs),
    /// Say which model transcription uses (bundled or a checkpoint) and its model card.
    Models(models::ModelsArgs),
    /// Score an estimate against a reference as mir_eval does (notes, or frames with --frames).
    Score(score::ScoreArgs),
    /// Draw one metric of several training runs in one chart (SVG), per epoch.
    Curves(curves::CurvesArgs),
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Cqt(args) => cqt::run(args),
        Command::Devices { device } => devices::run(device),
        Command::Synth(args) => synth::run(args),
        Command::Forward(args) => forward::run(args),
        Command::Init(args) => init::run(args),
        Command::BenchStep(args) => bench_step::run(args),
        Command::Train(args) => train::run(*args),
        Command::Eval(args) => eval::run(args),
        Command::Experiment(args) => experiment::run(args),
        Command::Transcribe(args) => transcribe::run(args),
        Command::Models(args) => models::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Score(args) => score::run(args),
        Command::Curves(args) => curves::run(args),
    }
}

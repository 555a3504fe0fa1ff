//! `mtosi experiment`: the paper's seven trainings and their evaluations, Tables 1–3 and the
//! convergence plot, at a chosen scale.

use std::path::PathBuf;

use clap::{Args, ValueEnum};

use mtosi::experiment::{self, ExperimentOptions, Scale};

use super::train::CliReporter;

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum ScaleName {
    /// 20 epochs of 4 crops of 256 frames, 8 training scores per label source synthesized: a
    /// pipeline check (about an hour on 2 CPU cores with the MAPS sample).
    Quick,
    /// The paper's: 2000 epochs of 32 crops of 640 frames, the whole Synthesized set.
    Paper,
}

#[derive(Debug, Args)]
pub struct ExperimentArgs {
    /// The experiment directory (runs/, eval/, tables/, plots/, synth/); rerunning continues it.
    #[arg(long)]
    pub out: PathBuf,
    /// MAPS folder (audio for the MAPS trainings and test; its labels are synthesized).
    #[arg(long)]
    pub maps: Option<PathBuf>,
    /// GuitarSet folder.
    #[arg(long)]
    pub guitarset: Option<PathBuf>,
    /// A Synthesized Instruments set already rendered by `mtosi synth` (else the labels of
    /// --maps and --guitarset are rendered into OUT/synth).
    #[arg(long)]
    pub synth: Option<PathBuf>,
    /// SoundFont for the rendering (else $MTOSI_SOUNDFONT, FluidR3_GM, the built-in one).
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "quick")]
    pub scale: ScaleName,
    /// Override the scale's epochs.
    #[arg(long)]
    pub epochs: Option<u64>,
    /// Override the scale's crop length in frames.
    #[arg(long)]
    pub crop_frames: Option<usize>,
    /// Override the scale's batch size.
    #[arg(long)]
    pub batch: Option<usize>,
    #[arg(long, default_value_t = 33)]
    pub seed: u64,
}

pub fn run(args: ExperimentArgs) -> anyhow::Result<()> {
    let mut scale = match args.scale {
        ScaleName::Quick => Scale::quick(),
        ScaleName::Paper => Scale::paper(),
    };
    if let Some(v) = args.epochs {
        scale.epochs = v;
    }
    if let Some(v) = args.crop_frames {
        scale.crop_frames = v;
    }
    if let Some(v) = args.batch {
        scale.batch = v;
    }
    let options = ExperimentOptions {
        out: args.out,
        maps: args.maps,
        guitarset: args.guitarset,
        synth: args.synth,
        soundfont: args.soundfont,
        scale,
        seed: args.seed,
    };
    let started = std::time::Instant::now();
    let mut reporter = CliReporter::new();
    let report = experiment::run_experiment(&options, &mut reporter)?;
    print!("{}", report.tables_markdown);
    for file in &report.files {
        println!("wrote {}", file.display());
    }
    println!(
        "experiment took {:.1} min",
        started.elapsed().as_secs_f64() / 60.0
    );
    Ok(())
}

//! `mtosi demo`: the whole path on a fresh machine — render, transcribe, score, write files.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use mtosi::synth::{find_soundfont, load_soundfont};
use mtosi::transcribe::bundled::{load_model, ModelChoiceError};
use mtosi::transcribe::demo::{run_demo, train_demo_model, DemoTraining};
use mtosi::transcribe::model_cqt;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Folder for the demo's files.
    #[arg(long, default_value = "mtosi-demo")]
    pub out: PathBuf,
    /// SoundFont (default: FluidR3_GM when installed, else mtosi's built-in one).
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    /// Without a bundled model: seconds to train the demo model for.
    #[arg(long, default_value_t = 90)]
    pub train_seconds: u64,
    /// Train a demo model even if a model is bundled.
    #[arg(long)]
    pub train: bool,
}

pub fn run(args: DemoArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    let choice = find_soundfont(args.soundfont.as_deref())?;
    println!("SoundFont: {choice}");
    let sound_font = load_soundfont(&choice)?;
    let cqt = model_cqt();
    let bundled = if args.train {
        None
    } else {
        match load_model(None) {
            Ok(loaded) => Some(loaded),
            Err(ModelChoiceError::NoModel) => None,
            Err(other) => return Err(other.into()),
        }
    };
    let mut model = match bundled {
        Some(loaded) => {
            println!("model: {}", loaded.describe());
            loaded.model
        }
        None => {
            let settings = DemoTraining {
                budget: Duration::from_secs(args.train_seconds),
                ..DemoTraining::default()
            };
            println!(
                "model: none bundled in this build — training a fresh DEMO model for {} s on {} procedural pieces rendered with {choice} (batch {} × {} frames). It is not the bundled model and far from a trained one: expect low scores.",
                args.train_seconds, settings.pieces, settings.batch, settings.crop_frames
            );
            let mut last_print = Instant::now();
            let (model, steps) =
                train_demo_model(&sound_font, &cqt, &settings, &mut |step, loss| {
                    if last_print.elapsed() >= Duration::from_secs(10) || step == 1 {
                        println!("  step {step}: loss {loss:.4}");
                        last_print = Instant::now();
                    }
                })
                .map_err(anyhow::Error::msg)?;
            println!("  trained {steps} steps");
            model
        }
    };
    let report = run_demo(&args.out, &sound_font, &mut model, &cqt).map_err(anyhow::Error::msg)?;
    println!(
        "transcribed {:.1} s of audio: {} notes rendered, {} transcribed",
        report.seconds, report.reference_notes, report.estimated_notes
    );
    println!("scores against the rendered notes (mir_eval, the paper's decoding):");
    for (name, prf) in [
        ("note", report.scores.note),
        ("note with offset", report.scores.note_with_offset),
        ("frame", report.scores.frame),
    ] {
        println!(
            "  {name:<17} precision {:.3}  recall {:.3}  F1 {:.3}",
            prf.precision, prf.recall, prf.f1
        );
    }
    println!("wrote:");
    for (path, what) in [
        (&report.wav, "the rendered piece, 16 kHz WAV"),
        (&report.reference_midi, "the notes it was rendered from"),
        (&report.midi, "the transcription"),
        (
            &report.picture,
            "probabilities; reference notes cyan, transcribed green",
        ),
    ] {
        println!("  {}  ({what})", path.display());
    }
    println!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

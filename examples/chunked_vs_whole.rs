//! How far chunked inference is from running the network over the whole recording (what the
//! protocol does), on real recordings: per file the largest |Δp| of the two probability rolls,
//! the share of cells whose decision at 0.5 flips, and the note / frame F1 of each against the
//! annotation (mir_eval scores, the paper's decoding). BENCHMARKS.md, "Chunked against
//! whole-recording inference", has the command and the table.
//!
//!     cargo run --release --example chunked_vs_whole -- CHECKPOINT|bundled AUDIO_DIR TSV_DIR \
//!         [--chunk-frames N] [--context-frames N] [--filter TEXT]

use std::path::{Path, PathBuf};
use std::time::Instant;

use mtosi::decode::DecodeOptions;
use mtosi::metrics::{score_recording, ReferenceKind};
use mtosi::notes::read_notes;
use mtosi::transcribe::bundled::load_model;
use mtosi::transcribe::{frame_probabilities_chunked, model_cqt, model_input_of_file, ChunkPlan};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() < 3 {
        anyhow::bail!("usage: chunked_vs_whole CHECKPOINT|bundled AUDIO_DIR TSV_DIR [--chunk-frames N] [--context-frames N] [--filter TEXT]");
    }
    let option = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let mut plan = ChunkPlan::default();
    if let Some(n) = option("--chunk-frames") {
        plan.chunk_frames = n.parse()?;
    }
    if let Some(n) = option("--context-frames") {
        plan.context_frames = n.parse()?;
    }
    let filter = option("--filter").unwrap_or_default();
    let checkpoint = (args[0] != "bundled").then(|| PathBuf::from(&args[0]));
    let mut loaded = load_model(checkpoint.as_deref())?;
    println!("model: {}", loaded.describe());
    println!(
        "chunks: {} frames, {} of context each side, batch {}",
        plan.chunk_frames, plan.context_frames, plan.batch
    );
    let cqt = model_cqt();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args[1])?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    files.retain(|p| p.to_string_lossy().contains(&filter));
    files.sort();
    println!("| recording | s | max abs dp | cells flipped at 0.5 | note F1 whole | note F1 chunked | frame F1 whole | frame F1 chunked | whole s | chunked s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let whole_plan = ChunkPlan {
        chunk_frames: 0,
        ..plan
    };
    for audio in files {
        let stem = audio.file_stem().unwrap().to_string_lossy().to_string();
        let tsv = Path::new(&args[2]).join(format!("{stem}.tsv"));
        let reference = read_notes(&tsv)?;
        let (input, _) = model_input_of_file(&audio, &cqt, &mut |_| {})?;
        let timed = |model: &mut mtosi::model::Transcriber, plan: &ChunkPlan| {
            let started = Instant::now();
            let roll = frame_probabilities_chunked(
                model,
                &input.values,
                input.frames,
                plan,
                &mut |_, _| {},
            );
            (roll, started.elapsed().as_secs_f64())
        };
        let (chunked, chunked_s) = timed(&mut loaded.model, &plan);
        let (whole, whole_s) = timed(&mut loaded.model, &whole_plan);
        let (chunked, whole) = (chunked?, whole?);
        let max_dp = chunked
            .iter()
            .zip(&whole)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        let flipped = chunked
            .iter()
            .zip(&whole)
            .filter(|(a, b)| (**a > 0.5) != (**b > 0.5))
            .count();
        let score = |roll: &[f32]| {
            score_recording(
                roll,
                &reference,
                input.samples + 1,
                ReferenceKind::Annotation,
                &DecodeOptions::default(),
            )
        };
        let (s_whole, s_chunked) = (score(&whole)?, score(&chunked)?);
        println!(
            "| {stem} | {:.0} | {max_dp:.2e} | {flipped} of {} | {:.4} | {:.4} | {:.4} | {:.4} | {whole_s:.1} | {chunked_s:.1} |",
            input.samples as f64 / 16_000.0,
            whole.len(),
            s_whole.note.f1,
            s_chunked.note.f1,
            s_whole.frame.f1,
            s_chunked.frame.f1,
        );
    }
    Ok(())
}

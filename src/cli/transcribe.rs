//! `mtosi transcribe`: audio files and folders → MIDI (and on request notes, a picture, the
//! roll), one library call per file; a file that fails is reported and the others go on.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use indicatif::{ProgressBar, ProgressStyle};

use mtosi::audio::AUDIO_EXTENSIONS;
use mtosi::decode::{DecodeOptions, FRAME_S};
use mtosi::device::{Device, DeviceRequest};
use mtosi::model::N_KEYS;
use mtosi::notes::midi::MidiSettings;
use mtosi::transcribe::bundled::{load_model, LoadedModel};
use mtosi::transcribe::outputs::{self, NotesFormat};
use mtosi::transcribe::{self, ChunkPlan, Stage, TranscribeOptions};

#[derive(Debug, clap::Args)]
pub struct TranscribeArgs {
    /// Audio files (WAV, FLAC, MP3, Ogg Vorbis, AAC/M4A) and folders (searched recursively for
    /// files with those extensions).
    #[arg(required = true)]
    pub inputs: Vec<PathBuf>,
    /// Folder for the outputs (`<stem>.mid`, …; a folder input's sub-folders are kept).
    #[arg(short = 'o', long = "out", default_value = ".")]
    pub out_dir: PathBuf,
    /// Model checkpoint (safetensors); default: the model bundled in the binary.
    #[arg(long)]
    pub checkpoint: Option<PathBuf>,
    /// Where the network runs: cpu, emu (the CUDA kernels on the CPU, a check: slow), cuda,
    /// cuda:N or auto (cuda when present, else the cpu). The CQT runs on the cpu.
    #[arg(long, default_value = "cpu")]
    pub device: DeviceRequest,
    /// Also write the notes as text: tsv, txt (mir_eval) or jams.
    #[arg(long, value_enum)]
    pub notes: Option<NotesFormat>,
    /// Also write `<stem>.png`: the probabilities with the decoded notes outlined over them.
    #[arg(long)]
    pub png: bool,
    /// Write the network's output (frames × 88 float32 probabilities) to this `.npy` (one
    /// input only).
    #[arg(long)]
    pub roll: Option<PathBuf>,
    /// A key is on where its probability is above this (the paper: 0.5).
    #[arg(long, default_value_t = 0.5)]
    pub threshold: f32,
    /// Drop notes shorter than this many milliseconds (rounded up to 32 ms frames; 0: keep all,
    /// as the paper).
    #[arg(long, default_value_t = 0.0)]
    pub min_note_ms: f64,
    /// Join two notes of a key separated by an off-gap of at most this many milliseconds
    /// (rounded down to frames; 0: no gap closing, as the paper).
    #[arg(long, default_value_t = 0.0)]
    pub close_gap_ms: f64,
    /// GM program of the MIDI track (0: Acoustic Grand Piano).
    #[arg(long, default_value_t = 0)]
    pub program: u8,
    /// Velocity of every note in the MIDI file (1..=127).
    #[arg(long, default_value_t = 80)]
    pub velocity: u8,
    /// Tempo written into the MIDI file, in beats per minute (does not move the notes).
    #[arg(long, default_value_t = 120.0)]
    pub tempo: f64,
    /// Most frames (32 ms) per chunk of the network: a recording is cut into the fewest
    /// chunks this long or shorter, evened out; 0 runs each recording whole (memory grows with
    /// its length).
    #[arg(long, default_value_t = ChunkPlan::default().chunk_frames)]
    pub chunk_frames: usize,
    /// Frames of context on each side of a chunk.
    #[arg(long, default_value_t = ChunkPlan::default().context_frames)]
    pub context_frames: usize,
    /// Chunks run through the network at once.
    #[arg(long, default_value_t = ChunkPlan::default().batch)]
    pub batch: usize,
    /// Copies of the network run side by side on the CPU, each on its own chunks (the same
    /// output; 1 uses the least memory).
    #[arg(long, default_value_t = ChunkPlan::default().networks)]
    pub networks: usize,
    /// Leave files whose outputs all exist already.
    #[arg(long)]
    pub skip_existing: bool,
    /// No progress bars.
    #[arg(long, short)]
    pub quiet: bool,
    #[command(flatten)]
    pub precision: super::PrecisionArg,
}

/// One input and where its outputs go.
struct Job {
    input: PathBuf,
    midi: PathBuf,
    notes: Option<PathBuf>,
    png: Option<PathBuf>,
}

impl Job {
    fn outputs(&self) -> impl Iterator<Item = &PathBuf> {
        std::iter::once(&self.midi)
            .chain(self.notes.as_ref())
            .chain(self.png.as_ref())
    }
}

pub fn run(args: TranscribeArgs) -> anyhow::Result<()> {
    let selection = args
        .device
        .open()
        .map_err(|e| anyhow::anyhow!("--device {}: {e}", args.device))?;
    args.precision.apply(&selection.device)?;
    let options = options(&args)?;
    let midi = MidiSettings::for_tempo(args.program, args.tempo, 1e-3)
        .map_err(|e| anyhow::anyhow!("--tempo/--program: {e}"))?;
    if !(1..=127).contains(&args.velocity) {
        bail!("--velocity {} is outside 1..=127", args.velocity);
    }
    let jobs = plan_jobs(&args)?;
    if args.roll.is_some() && jobs.len() != 1 {
        bail!(
            "--roll writes one recording's roll; {} inputs were given",
            jobs.len()
        );
    }
    // Side by side: each is tens of milliseconds on one core before the first file starts.
    let (loaded, cqt) = rayon::join(
        || load_model(args.checkpoint.as_deref()),
        transcribe::model_cqt,
    );
    let LoadedModel { mut model, .. } = {
        let loaded = loaded?;
        if !args.quiet {
            eprintln!("model: {}", loaded.describe());
        }
        loaded
    };
    let files_bar = bar(
        args.quiet,
        jobs.len() as u64,
        "{prefix} [{bar:30}] {pos}/{len} files {msg}",
    );
    let mut failures = Vec::new();
    let mut skipped = 0;
    for job in &jobs {
        files_bar.set_message(job.input.display().to_string());
        if args.skip_existing && job.outputs().all(|p| p.exists()) {
            skipped += 1;
            files_bar.inc(1);
            continue;
        }
        let result = transcribe_one(
            &args,
            &selection.device,
            job,
            &mut model,
            &cqt,
            &options,
            &midi,
            &files_bar,
        );
        if let Err(err) = result {
            files_bar.suspend(|| eprintln!("error: {}", with_causes(&err)));
            failures.push(job.input.clone());
        }
        files_bar.inc(1);
    }
    files_bar.finish_and_clear();
    if !args.quiet {
        eprintln!(
            "{} of {} files transcribed{}{}",
            jobs.len() - failures.len() - skipped,
            jobs.len(),
            if skipped > 0 {
                format!(", {skipped} skipped (outputs exist)")
            } else {
                String::new()
            },
            if failures.is_empty() {
                String::new()
            } else {
                format!(", {} failed", failures.len())
            }
        );
    }
    if !failures.is_empty() {
        let names: Vec<String> = failures.iter().map(|p| p.display().to_string()).collect();
        bail!(
            "{} of {} files failed: {}",
            failures.len(),
            jobs.len(),
            names.join(", ")
        );
    }
    Ok(())
}

fn options(args: &TranscribeArgs) -> anyhow::Result<TranscribeOptions> {
    if !(args.threshold.is_finite() && (0.0..1.0).contains(&args.threshold)) {
        bail!("--threshold {} is outside [0, 1)", args.threshold);
    }
    for (name, ms) in [
        ("--min-note-ms", args.min_note_ms),
        ("--close-gap-ms", args.close_gap_ms),
    ] {
        if !(ms.is_finite() && ms >= 0.0) {
            bail!("{name} {ms} is not a duration");
        }
    }
    let frame_ms = FRAME_S * 1e3;
    let chunks = ChunkPlan {
        chunk_frames: args.chunk_frames,
        context_frames: args.context_frames,
        batch: args.batch,
        networks: args.networks,
    };
    chunks.validate().map_err(anyhow::Error::msg)?;
    Ok(TranscribeOptions {
        chunks,
        decode: DecodeOptions {
            frame_threshold: args.threshold,
            min_note_frames: mtosi::decode::min_note_frames_for_ms(args.min_note_ms),
            close_gap_frames: (args.close_gap_ms / frame_ms + 1e-9).floor() as usize,
            ..DecodeOptions::default()
        },
    })
}

/// Expands folders, assigns every input its outputs, and refuses an output that would be
/// written twice or over an input.
fn plan_jobs(args: &TranscribeArgs) -> anyhow::Result<Vec<Job>> {
    let mut inputs: Vec<(PathBuf, PathBuf)> = Vec::new(); // (file, output stem relative to OUTDIR)
    for input in &args.inputs {
        if input.is_dir() {
            let mut found = Vec::new();
            collect_audio(input, &mut found)
                .with_context(|| format!("cannot list the folder {}", input.display()))?;
            if found.is_empty() {
                bail!(
                    "{}: no audio files ({}) in this folder",
                    input.display(),
                    AUDIO_EXTENSIONS.join(", ")
                );
            }
            found.sort();
            for file in found {
                let relative = file.strip_prefix(input).unwrap_or(&file).with_extension("");
                inputs.push((file, relative));
            }
        } else {
            let stem = input
                .file_stem()
                .with_context(|| format!("{}: not a file name", input.display()))?;
            inputs.push((input.clone(), PathBuf::from(stem)));
        }
    }
    let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
    let input_set: Vec<PathBuf> = inputs.iter().map(|(f, _)| canonical(f)).collect();
    let mut claimed: HashMap<PathBuf, PathBuf> = HashMap::new();
    let mut jobs = Vec::new();
    for (file, stem) in inputs {
        let at = |ext: &str| {
            let mut path = args.out_dir.join(&stem).into_os_string();
            path.push(".");
            path.push(ext);
            PathBuf::from(path)
        };
        let job = Job {
            midi: at("mid"),
            notes: args.notes.map(|f| at(f.extension())),
            png: args.png.then(|| at("png")),
            input: file,
        };
        for output in job.outputs().chain(args.roll.as_ref()) {
            let resolved = canonical(output);
            if input_set.contains(&resolved) {
                bail!(
                    "{}: writing it would overwrite an input; choose another --out folder",
                    output.display()
                );
            }
            if let Some(other) = claimed.insert(output.clone(), job.input.clone()) {
                if other != job.input {
                    bail!(
                        "{} and {} would both be written to {}; transcribe them into different --out folders",
                        other.display(),
                        job.input.display(),
                        output.display()
                    );
                }
            }
        }
        jobs.push(job);
    }
    Ok(jobs)
}

fn collect_audio(dir: &Path, found: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect_audio(&path, found)?;
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| AUDIO_EXTENSIONS.contains(&e.to_ascii_lowercase().as_str()))
        {
            found.push(path);
        }
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn transcribe_one(
    args: &TranscribeArgs,
    device: &Device,
    job: &Job,
    model: &mut mtosi::model::Transcriber,
    cqt: &mtosi::spectrogram::Cqt,
    options: &TranscribeOptions,
    midi: &MidiSettings,
    files_bar: &ProgressBar,
) -> anyhow::Result<()> {
    let chunk_bar = bar(
        args.quiet || files_bar.is_hidden(),
        0,
        "  {msg} [{bar:30}] {pos}/{len}",
    );
    let transcription =
        transcribe::transcribe_file_on(device, &job.input, model, cqt, options, &mut |stage| {
            match stage {
                Stage::Reading { seconds } => {
                    chunk_bar.set_message(format!("reading, {seconds} s of audio"));
                    chunk_bar.tick();
                }
                Stage::Network { done, total } => {
                    chunk_bar.set_message("network chunks".to_string());
                    chunk_bar.set_length(total as u64);
                    chunk_bar.set_position(done as u64);
                }
            }
        });
    chunk_bar.finish_and_clear();
    let transcription = transcription?;
    let notes = outputs::notes_in_seconds(&transcription.notes, args.velocity);
    // Folders are made only once a file has something to write, so a failure leaves none.
    if let Some(parent) = job.midi.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("cannot create the folder {}", parent.display()))?;
    }
    outputs::write_midi(&job.midi, &notes, midi)?;
    if let (Some(path), Some(format)) = (&job.notes, args.notes) {
        format.write(path, &notes)?;
    }
    if let Some(path) = &job.png {
        outputs::write_roll_png(
            path,
            &transcription.roll,
            transcription.frames,
            &transcription.notes,
            None,
        )?;
    }
    if let Some(path) = &args.roll {
        mtosi::npy::write(path, &[transcription.frames, N_KEYS], &transcription.roll)?;
    }
    if !args.quiet {
        files_bar.suspend(|| {
            eprintln!(
                "{} → {} ({:.1} s, {} notes; read + CQT {:.2} s, network {:.2} s, decoding {:.3} s)",
                job.input.display(),
                job.midi.display(),
                transcription.samples as f64 / 16_000.0,
                notes.len(),
                transcription.reading_s,
                transcription.network_s,
                transcription.decoding_s,
            )
        });
    }
    Ok(())
}

/// The error and those of its causes that its message does not already show (as `main` prints
/// errors).
fn with_causes(err: &anyhow::Error) -> String {
    let mut shown = err.to_string();
    for cause in err.chain().skip(1) {
        let cause = cause.to_string();
        if !shown.contains(&cause) {
            shown = format!("{shown}: {cause}");
        }
    }
    shown
}

fn bar(hidden: bool, len: u64, template: &str) -> ProgressBar {
    if hidden {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar
}

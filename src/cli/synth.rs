//! `mtosi synth`: build the Synthesized Instruments set from dataset labels and/or random music.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::Args;

use mtosi::data::{self, Dataset, GuitarSetAudio, Split};
use mtosi::synth::{self, RandomMusic, RenderSettings, Score, ScoreSource, SynthSetOptions, Tail};

#[derive(Debug, Args)]
pub struct SynthArgs {
    /// Output folder (train/, val/, test/, manifest.json). Finished files there are kept and skipped.
    #[arg(long)]
    pub out: PathBuf,
    /// MAPS folder (published layout or flac/ + tsv/); label files without audio are enough.
    #[arg(long)]
    pub maps: Vec<PathBuf>,
    /// GuitarSet folder (annotation/*.jams is enough).
    #[arg(long)]
    pub guitarset: Vec<PathBuf>,
    /// Seed of the GuitarSet 80/10/10 split.
    #[arg(long, default_value_t = data::GUITARSET_SPLIT_SEED)]
    pub guitarset_seed: u64,
    /// MAESTRO folder or metadata file (its splits are kept).
    #[arg(long)]
    pub maestro: Vec<PathBuf>,
    /// A folder of label files, all given the split of --labels-split.
    #[arg(long)]
    pub labels: Vec<PathBuf>,
    #[arg(long, default_value = "train")]
    pub labels_split: Split,
    /// Splits of the datasets to render (comma-separated: train,val,test).
    #[arg(long, value_delimiter = ',', default_value = "train,val,test")]
    pub splits: Vec<Split>,
    /// GM programs to render every score with (comma-separated).
    #[arg(long, value_delimiter = ',', default_value = "0,25")]
    pub programs: Vec<u8>,
    /// SoundFont file (else $MTOSI_SOUNDFONT, FluidR3_GM in /usr/share, the built-in one).
    #[arg(long)]
    pub soundfont: Option<PathBuf>,
    /// No reverb and no chorus.
    #[arg(long)]
    pub dry: bool,
    /// Rate the synthesizer runs at before resampling to 16 kHz.
    #[arg(long, default_value_t = RenderSettings::default().synth_rate_hz)]
    pub synth_rate: u32,
    /// Seconds rendered after the last note-off (default: until silent, at most 10 s).
    #[arg(long)]
    pub tail: Option<f64>,
    /// Synthesizer block size in samples (8..=1024): note events land within half a block of
    /// their exact time; larger blocks render faster.
    #[arg(long, default_value_t = RenderSettings::default().block_samples)]
    pub block_samples: usize,
    /// Worker threads (default: one per core).
    #[arg(long)]
    pub jobs: Option<usize>,
    /// Also render N procedurally generated pieces (split 80/10/10 by --random-seed).
    #[arg(long, default_value_t = 0)]
    pub random: u64,
    #[arg(long, default_value_t = 0)]
    pub random_seed: u64,
    /// Length of each random piece, seconds.
    #[arg(long, default_value_t = RandomMusic::default().duration_s)]
    pub random_duration: f64,
    /// Mean onsets (single notes or chords) per second.
    #[arg(long, default_value_t = RandomMusic::default().onsets_per_s)]
    pub density: f64,
    #[arg(long, default_value_t = RandomMusic::default().max_chord)]
    pub max_chord: usize,
    #[arg(long, default_value_t = RandomMusic::default().max_polyphony)]
    pub max_polyphony: usize,
    /// Pitch range LOW-HIGH (MIDI).
    #[arg(long, default_value = "21-108", value_parser = parse_u8_range)]
    pub pitch_range: (u8, u8),
    /// Note duration range MIN-MAX in seconds (log-uniform).
    #[arg(long, default_value = "0.08-2", value_parser = parse_f64_range)]
    pub note_duration: (f64, f64),
    /// Velocity range LOW-HIGH.
    #[arg(long, default_value = "30-120", value_parser = parse_u8_range)]
    pub velocity_range: (u8, u8),
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

fn parse_range<T: std::str::FromStr>(s: &str) -> Result<(T, T), String> {
    let (low, high) = s
        .split_once('-')
        .ok_or_else(|| format!("{s:?} is not a range LOW-HIGH"))?;
    let parse = |x: &str| {
        x.trim()
            .parse::<T>()
            .map_err(|_| format!("{x:?} in {s:?} is not a number"))
    };
    Ok((parse(low)?, parse(high)?))
}

fn parse_u8_range(s: &str) -> Result<(u8, u8), String> {
    parse_range(s)
}

fn parse_f64_range(s: &str) -> Result<(f64, f64), String> {
    parse_range(s)
}

pub fn run(args: SynthArgs) -> anyhow::Result<()> {
    let mut datasets: Vec<Dataset> = Vec::new();
    for path in &args.maps {
        datasets.push(data::maps(path)?);
    }
    for path in &args.guitarset {
        datasets.push(data::guitarset(
            path,
            GuitarSetAudio::default(),
            args.guitarset_seed,
        )?);
    }
    for path in &args.maestro {
        datasets.push(data::maestro(path)?);
    }
    for path in &args.labels {
        datasets.push(data::paired_folder(path, args.labels_split)?);
    }
    let mut scores: Vec<Score> = Vec::new();
    for dataset in &datasets {
        for line in &dataset.skipped {
            eprintln!("{}: skipped: {}", line.0.display(), line.1);
        }
        let labels: Vec<_> = dataset
            .labels()
            .into_iter()
            .filter(|l| args.splits.contains(&l.split))
            .collect();
        let splits: Vec<&str> = args.splits.iter().map(|s| s.as_str()).collect();
        eprintln!(
            "{}: {} label files in splits {}",
            dataset.name,
            labels.len(),
            splits.join(",")
        );
        scores.extend(labels.into_iter().map(|l| Score {
            name: l.name,
            split: l.split,
            source: ScoreSource::LabelFile(l.label_path),
        }));
    }
    if args.random > 0 {
        let params = RandomMusic {
            seed: args.random_seed,
            duration_s: args.random_duration,
            onsets_per_s: args.density,
            max_chord: args.max_chord,
            max_polyphony: args.max_polyphony,
            pitch_low: args.pitch_range.0,
            pitch_high: args.pitch_range.1,
            min_note_s: args.note_duration.0,
            max_note_s: args.note_duration.1,
            velocity_low: args.velocity_range.0,
            velocity_high: args.velocity_range.1,
        };
        params
            .validate()
            .map_err(anyhow::Error::msg)
            .context("random music parameters")?;
        scores.extend(synth::random_scores(&params, args.random));
    }
    if scores.is_empty() {
        bail!("nothing to render: give --maps, --guitarset, --maestro, --labels or --random");
    }

    let choice = synth::find_soundfont(args.soundfont.as_deref())?;
    eprintln!("SoundFont: {choice}");
    let sound_font = synth::load_soundfont(&choice)?;
    let options = SynthSetOptions {
        out_dir: args.out.clone(),
        programs: args.programs.clone(),
        soundfont: choice,
        render: RenderSettings {
            program: 0,
            synth_rate_hz: args.synth_rate,
            output_rate_hz: mtosi::audio::MODEL_SAMPLE_RATE_HZ,
            effects: !args.dry,
            tail: match args.tail {
                Some(seconds) => Tail::Fixed(seconds),
                None => Tail::UntilSilent {
                    max_s: synth::render::DEFAULT_MAX_TAIL_S,
                },
            },
            block_samples: args.block_samples,
        },
        threads: args.jobs,
        show_progress: !args.quiet,
    };
    let started = std::time::Instant::now();
    let report = synth::build_synth_set(&sound_font, &scores, &options)?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{} files rendered ({:.0} s of audio in {:.1} s, {:.0}x real time), {} already done; manifest {}",
        report.rendered,
        report.rendered_audio_s,
        seconds,
        report.rendered_audio_s / seconds.max(1e-9),
        report.already_done,
        report.manifest_path.display()
    );
    if !report.failures.is_empty() {
        for (name, problem) in &report.failures {
            eprintln!("{name}: {problem}");
        }
        bail!(
            "{} of {} files failed",
            report.failures.len(),
            scores.len() * args.programs.len()
        );
    }
    Ok(())
}

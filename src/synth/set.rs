//! Building the Synthesized Instruments set (PROTOCOL.md, "Datasets and splits"): every score
//! rendered with every chosen program into `<out>/<split>/<name>_prog<P>.wav` (16 kHz, 16-bit)
//! with its labels as `<name>_prog<P>.tsv`, listed in `<out>/manifest.json`.
//!
//! Files are rendered in parallel (rayon). Each file is written atomically, the WAV before the
//! TSV, so an item whose two files exist is finished: a rerun skips it (resume).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use indicatif::{ProgressBar, ProgressStyle};
use rayon::prelude::*;

use super::random::{random_piece, RandomMusic};
use super::{
    fit_to_full_scale, render_notes, RenderSettings, SoundFont, SoundFontChoice, SynthError,
};
use crate::audio::MODEL_SAMPLE_RATE_HZ;
use crate::data::synth_set::{
    item_paths, write_manifest, SynthManifest, SynthManifestItem, MANIFEST_FILE, MANIFEST_FORMAT,
};
use crate::data::{split_80_10_10, Split};
use crate::notes::Note;

/// Where a score's notes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum ScoreSource {
    LabelFile(PathBuf),
    /// Piece `index` of [`random_piece`] with these parameters.
    Random {
        params: RandomMusic,
        index: u64,
    },
}

/// One score to render, with its split.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    pub name: String,
    pub split: Split,
    pub source: ScoreSource,
}

impl Score {
    fn notes(&self) -> Result<Vec<Note>, String> {
        match &self.source {
            ScoreSource::LabelFile(path) => {
                crate::notes::read_notes(path).map_err(|e| e.to_string())
            }
            ScoreSource::Random { params, index } => Ok(random_piece(params, *index)),
        }
    }

    fn source_text(&self) -> String {
        match &self.source {
            ScoreSource::LabelFile(path) => path.display().to_string(),
            ScoreSource::Random { params, index } => format!("random:{}:{index}", params.seed),
        }
    }
}

/// `count` random pieces named `random_<seed>_<index>`, split 80/10/10 by the seed.
pub fn random_scores(params: &RandomMusic, count: u64) -> Vec<Score> {
    let names: Vec<String> = (0..count)
        .map(|i| format!("random_{}_{i:06}", params.seed))
        .collect();
    let mut scores: Vec<Score> = split_80_10_10(&names, params.seed)
        .into_iter()
        .map(|(name, split)| {
            let index = name
                .rsplit('_')
                .next()
                .and_then(|i| i.parse().ok())
                .unwrap_or(0);
            Score {
                name,
                split,
                source: ScoreSource::Random {
                    params: params.clone(),
                    index,
                },
            }
        })
        .collect();
    scores.sort_by(|a, b| a.name.cmp(&b.name));
    scores
}

/// How the set is rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct SynthSetOptions {
    pub out_dir: PathBuf,
    pub programs: Vec<u8>,
    pub soundfont: SoundFontChoice,
    /// Everything of [`RenderSettings`] but the program.
    pub render: RenderSettings,
    /// Worker threads (None: rayon's default, one per core).
    pub threads: Option<usize>,
    pub show_progress: bool,
}

/// What a build did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SynthSetReport {
    pub rendered: usize,
    /// Items already complete from an earlier run.
    pub already_done: usize,
    /// Seconds of 16 kHz audio written in this run.
    pub rendered_audio_s: f64,
    /// (item name, problem) for every item that could not be made.
    pub failures: Vec<(String, String)>,
    pub manifest_path: PathBuf,
}

/// Renders `scores` × `options.programs` into `options.out_dir` and writes the manifest.
/// A score that fails (unreadable labels, unplayable notes) is reported in
/// [`SynthSetReport::failures`] and the others go on; errors that stop every item (SoundFont,
/// output folder, missing program) are returned.
pub fn build_synth_set(
    sound_font: &Arc<SoundFont>,
    scores: &[Score],
    options: &SynthSetOptions,
) -> Result<SynthSetReport, SynthError> {
    for &program in &options.programs {
        super::render::check_program(sound_font, program)?;
    }
    let io_error = |path: &Path, e: std::io::Error| SynthError::Output {
        path: path.to_path_buf(),
        problem: e.to_string(),
    };
    for split in Split::ALL {
        let dir = options.out_dir.join(split.as_str());
        std::fs::create_dir_all(&dir).map_err(|e| io_error(&dir, e))?;
    }
    let jobs: Vec<(&Score, u8)> = scores
        .iter()
        .flat_map(|s| options.programs.iter().map(move |&p| (s, p)))
        .collect();
    let progress = if options.show_progress {
        ProgressBar::new(jobs.len() as u64)
    } else {
        ProgressBar::hidden()
    };
    progress.set_style(
        ProgressStyle::with_template(
            "{bar:40} {pos}/{len} files, {elapsed} elapsed, ETA {eta} {msg}",
        )
        .expect("a valid progress template"),
    );

    let render_all = || {
        jobs.par_iter()
            .map(|&(score, program)| {
                let result = make_item(sound_font, score, program, options);
                progress.inc(1);
                (score, program, result)
            })
            .collect::<Vec<_>>()
    };
    let outcomes = match options.threads {
        Some(n) => rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .build()
            .map_err(|e| SynthError::Synthesizer(format!("thread pool: {e}")))?
            .install(render_all),
        None => render_all(),
    };
    progress.finish_and_clear();

    let mut report = SynthSetReport {
        manifest_path: options.out_dir.join(MANIFEST_FILE),
        ..Default::default()
    };
    let mut items = Vec::new();
    for (score, program, outcome) in outcomes {
        let name = item_name(&score.name, program);
        match outcome {
            Ok(ItemOutcome::Rendered { audio_s }) => {
                report.rendered += 1;
                report.rendered_audio_s += audio_s;
            }
            Ok(ItemOutcome::AlreadyDone) => report.already_done += 1,
            Err(problem) => {
                report.failures.push((name, problem));
                continue;
            }
        }
        let (audio, labels) = item_paths(score.split, &name);
        items.push(SynthManifestItem {
            name,
            split: score.split,
            program,
            audio: audio.to_string_lossy().into_owned(),
            labels: labels.to_string_lossy().into_owned(),
            source: score.source_text(),
        });
    }
    items.sort_by(|a, b| (a.split, &a.name).cmp(&(b.split, &b.name)));
    let manifest = SynthManifest {
        format: MANIFEST_FORMAT.into(),
        version: 1,
        sample_rate_hz: MODEL_SAMPLE_RATE_HZ,
        synth_rate_hz: options.render.synth_rate_hz,
        soundfont: options.soundfont.to_string(),
        effects: options.render.effects,
        items,
    };
    write_manifest(&report.manifest_path, &manifest).map_err(|e| SynthError::Output {
        path: report.manifest_path.clone(),
        problem: e.to_string(),
    })?;
    Ok(report)
}

/// `<score>_prog<program>`.
pub fn item_name(score_name: &str, program: u8) -> String {
    // Dataset names may hold folders (MAESTRO's `2018/...`): flatten them into the file name.
    format!("{}_prog{program}", score_name.replace(['/', '\\'], "__"))
}

enum ItemOutcome {
    Rendered { audio_s: f64 },
    AlreadyDone,
}

fn make_item(
    sound_font: &Arc<SoundFont>,
    score: &Score,
    program: u8,
    options: &SynthSetOptions,
) -> Result<ItemOutcome, String> {
    let name = item_name(&score.name, program);
    let (audio_rel, labels_rel) = item_paths(score.split, &name);
    let (audio_path, labels_path) = (
        options.out_dir.join(audio_rel),
        options.out_dir.join(labels_rel),
    );
    if audio_path.is_file() && labels_path.is_file() {
        return Ok(ItemOutcome::AlreadyDone);
    }
    let notes = score.notes()?;
    let settings = RenderSettings {
        program,
        output_rate_hz: MODEL_SAMPLE_RATE_HZ,
        ..options.render.clone()
    };
    let mut audio = render_notes(sound_font, &notes, &settings)
        .map_err(|e| format!("{}: {e}", score.source_text()))?;
    fit_to_full_scale(&mut audio);
    crate::audio::write_wav16(&audio_path, &audio, MODEL_SAMPLE_RATE_HZ)
        .map_err(|e| e.to_string())?;
    crate::notes::write_notes(&labels_path, &notes).map_err(|e| e.to_string())?;
    Ok(ItemOutcome::Rendered {
        audio_s: audio.len() as f64 / MODEL_SAMPLE_RATE_HZ as f64,
    })
}

//! The paper's protocol (its section 4): seven trainings — MAPS, GuitarSet, Synthesized
//! Instruments; Synthesized → MAPS, Synthesized → GuitarSet, GuitarSet → MAPS, MAPS →
//! GuitarSet — each evaluated on the MAPS and GuitarSet test sets, written as Tables 1–3
//! (frame, note, note-with-offset) in the paper's layout, with the convergence plot (Fig. 3).
//!
//! At a chosen scale (epochs, crop, batch, and how much of the Synthesized set is rendered).
//! What the user has no data for is skipped and named. Every stage resumes: a finished
//! training or evaluation is kept, an interrupted training is resumed exactly, a rendered set
//! is completed. The layout of the experiment directory:
//! `synth/` (the rendered set), `runs/<training>/` (run directories of `mtosi train`),
//! `eval/<training>--<dataset>.json` (scores per recording and reference),
//! `tables/` (Markdown and CSV), `plots/convergence-<dataset>.svg`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::data::source::{DataKind, DataSource};
use crate::data::{Dataset, Split};
use crate::decode::DecodeOptions;
use crate::evaluate::{self, RecordingResult};
use crate::fsutil;
use crate::metrics::{Prf, RecordingScores, ReferenceKind};
use crate::model::{checkpoint, Transcriber};
use crate::spectrogram::{Cqt, CqtParams};
use crate::synth::{self, RenderSettings, Score, ScoreSource, SynthSetOptions};
use crate::train::plots::{line_chart_svg, metric_points, Series};
use crate::train::run::{self, Reporter, RunPaths, TrainSettings};

/// How big the experiment is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scale {
    pub epochs: u64,
    pub batch: usize,
    pub crop_frames: usize,
    pub validate_every: u64,
    pub checkpoint_every: u64,
    /// Scores of each label source and split rendered into the Synthesized set (train, val,
    /// test), the shortest first; `None`: all of them.
    pub synth_pieces: Option<(usize, usize, usize)>,
}

impl Scale {
    /// The paper's: 2000 epochs of 32 crops of 640 frames, the whole Synthesized set.
    pub fn paper() -> Self {
        Self {
            epochs: 2000,
            batch: 32,
            crop_frames: 640,
            validate_every: 10,
            checkpoint_every: 50,
            synth_pieces: None,
        }
    }

    /// A pipeline check that fits in an hour on 2 CPU cores with the MAPS sample: 20 epochs
    /// of 4 crops of 256 frames (8.2 s), 8 training scores of each label source rendered.
    pub fn quick() -> Self {
        Self {
            epochs: 20,
            batch: 4,
            crop_frames: 256,
            validate_every: 5,
            checkpoint_every: 10,
            synth_pieces: Some((8, 2, 2)),
        }
    }
}

/// What the experiment is given.
#[derive(Debug, Clone)]
pub struct ExperimentOptions {
    pub out: PathBuf,
    pub maps: Option<PathBuf>,
    pub guitarset: Option<PathBuf>,
    /// A Synthesized Instruments set already rendered (else one is rendered from the labels).
    pub synth: Option<PathBuf>,
    pub soundfont: Option<PathBuf>,
    pub scale: Scale,
    pub seed: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ExperimentError {
    #[error(transparent)]
    Train(#[from] run::TrainError),
    #[error(transparent)]
    Eval(#[from] evaluate::EvalError),
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    #[error(transparent)]
    Synth(#[from] crate::synth::SynthError),
    #[error(transparent)]
    Checkpoint(#[from] crate::model::checkpoint::CheckpointError),
    #[error(transparent)]
    Spectrogram(#[from] crate::spectrogram::SpectrogramError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Nothing(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> ExperimentError + '_ {
    move |source| ExperimentError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The datasets of the tables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Maps,
    GuitarSet,
}

impl Target {
    pub const ALL: [Target; 2] = [Target::Maps, Target::GuitarSet];
    fn key(self) -> &'static str {
        match self {
            Target::Maps => "maps",
            Target::GuitarSet => "guitarset",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Target::Maps => "MAPS",
            Target::GuitarSet => "GuitarSet",
        }
    }
}

/// The training sets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Maps,
    GuitarSet,
    Synth,
}

impl Source {
    fn key(self) -> &'static str {
        match self {
            Source::Maps => "maps",
            Source::GuitarSet => "guitarset",
            Source::Synth => "synth",
        }
    }
    fn title(self) -> &'static str {
        match self {
            Source::Maps => "MAPS",
            Source::GuitarSet => "GuitarSet",
            Source::Synth => "Synthesized Instruments",
        }
    }
}

/// One of the seven trainings: its data, and the training it starts from (transfer).
#[derive(Debug, Clone, Copy)]
struct Training {
    data: Source,
    from: Option<Source>,
    /// The group heading of the paper's tables.
    group: &'static str,
}

const TRAININGS: [Training; 7] = [
    Training {
        data: Source::Maps,
        from: None,
        group: "",
    },
    Training {
        data: Source::GuitarSet,
        from: None,
        group: "",
    },
    Training {
        data: Source::Synth,
        from: None,
        group: "",
    },
    Training {
        data: Source::Maps,
        from: Some(Source::Synth),
        group: "RESULTS AFTER TRANSFER FROM SYNTHESIZED INSTRUMENTS",
    },
    Training {
        data: Source::GuitarSet,
        from: Some(Source::Synth),
        group: "RESULTS AFTER TRANSFER FROM SYNTHESIZED INSTRUMENTS",
    },
    Training {
        data: Source::Maps,
        from: Some(Source::GuitarSet),
        group: "RESULTS AFTER TRANSFER FROM GUITARSET",
    },
    Training {
        data: Source::GuitarSet,
        from: Some(Source::Maps),
        group: "RESULTS AFTER TRANSFER FROM MAPS",
    },
];

impl Training {
    fn key(&self) -> String {
        match self.from {
            None => self.data.key().to_string(),
            Some(from) => format!("{}-to-{}", from.key(), self.data.key()),
        }
    }
    fn title(&self) -> String {
        match self.from {
            None => self.data.title().to_string(),
            Some(from) => format!("{} -> {}", from.title(), self.data.title()),
        }
    }
}

/// The stored evaluation of one training on one test set.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredEval {
    checkpoint: PathBuf,
    /// Per reference (`annotation`, `roll`): mean and std of each figure, and per recording.
    references: Vec<(
        String,
        RecordingScoresRow,
        RecordingScoresRow,
        Vec<RecordingRow>,
    )>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordingScoresRow {
    figures: Vec<(String, f64)>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct RecordingRow {
    name: String,
    figures: Vec<(String, f64)>,
}

fn row(scores: &RecordingScores) -> RecordingScoresRow {
    RecordingScoresRow {
        figures: evaluate::figures(scores)
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    }
}

const REFERENCES: [ReferenceKind; 2] = [ReferenceKind::Annotation, ReferenceKind::LabelRoll];

/// What the run did, for the caller to print.
#[derive(Debug, Clone, Default)]
pub struct ExperimentReport {
    pub skipped: Vec<String>,
    pub tables_markdown: String,
    pub files: Vec<PathBuf>,
}

fn has_split(dataset: &Dataset, split: Split) -> bool {
    dataset.split(split).next().is_some()
}

/// Renders the Synthesized Instruments set (PROTOCOL.md: MAPS-train and GuitarSet-train labels
/// with programs 0 and 25 for training; GuitarSet-val + MAPS ENSTDkAm for validation,
/// GuitarSet-test + ENSTDkCl for test), limited to `pieces` scores per source and split.
fn render_synth(
    options: &ExperimentOptions,
    label_sets: &[Dataset],
    dir: &Path,
    reporter: &mut dyn Reporter,
) -> Result<(), ExperimentError> {
    let mut scores = Vec::new();
    for dataset in label_sets {
        for split in Split::ALL {
            let mut labels: Vec<_> = dataset
                .labels()
                .into_iter()
                .filter(|l| l.split == split)
                .collect();
            if let Some((train, val, test)) = options.scale.synth_pieces {
                let limit = match split {
                    Split::Train => train,
                    Split::Validation => val,
                    Split::Test => test,
                };
                // The shortest scores, so that a small scale renders little audio.
                let end_s = |path: &Path| {
                    crate::notes::read_notes(path)
                        .map(|notes| notes.iter().map(|n| n.offset_s).fold(0.0, f64::max))
                        .unwrap_or(f64::INFINITY)
                };
                let mut by_length: Vec<(f64, _)> = labels
                    .into_iter()
                    .map(|l| (end_s(&l.label_path), l))
                    .collect();
                by_length.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.name.cmp(&b.1.name)));
                labels = by_length.into_iter().take(limit).map(|(_, l)| l).collect();
            }
            scores.extend(labels.into_iter().map(|l| Score {
                name: l.name,
                split: l.split,
                source: ScoreSource::LabelFile(l.label_path),
            }));
        }
    }
    let choice = synth::find_soundfont(options.soundfont.as_deref())?;
    reporter.message(&format!(
        "rendering {} scores × programs 0 and 25 with {choice} into {}",
        scores.len(),
        dir.display()
    ));
    let sound_font = synth::load_soundfont(&choice)?;
    let report = synth::build_synth_set(
        &sound_font,
        &scores,
        &SynthSetOptions {
            out_dir: dir.to_path_buf(),
            programs: vec![0, 25],
            soundfont: choice,
            render: RenderSettings::default(),
            threads: None,
            show_progress: false,
        },
    )?;
    for (name, problem) in &report.failures {
        reporter.message(&format!("synth: {name}: {problem}"));
    }
    reporter.message(&format!(
        "synthesized set: {} rendered ({:.0} s of audio), {} already there",
        report.rendered, report.rendered_audio_s, report.already_done
    ));
    Ok(())
}

/// Runs (or continues) the whole experiment and writes its tables and plot.
pub fn run_experiment(
    options: &ExperimentOptions,
    reporter: &mut dyn Reporter,
) -> Result<ExperimentReport, ExperimentError> {
    let mut report = ExperimentReport::default();
    std::fs::create_dir_all(&options.out).map_err(io(&options.out))?;
    let mut sources: Vec<(Source, DataSource)> = Vec::new();
    let mut label_sets = Vec::new();
    let mut tests: Vec<(Target, DataSource)> = Vec::new();
    for (kind, path, source, target) in [
        (DataKind::Maps, &options.maps, Source::Maps, Target::Maps),
        (
            DataKind::Guitarset,
            &options.guitarset,
            Source::GuitarSet,
            Target::GuitarSet,
        ),
    ] {
        let Some(path) = path else {
            report.skipped.push(format!(
                "{}: no dataset given (--{})",
                target.title(),
                target.key()
            ));
            continue;
        };
        let spec = DataSource {
            kind,
            path: path.clone(),
        };
        let dataset = spec.load(Split::Train)?;
        if has_split(&dataset, Split::Train) {
            sources.push((source, spec.clone()));
        } else {
            report.skipped.push(format!(
                "{}: no training recordings with audio in {}",
                target.title(),
                path.display()
            ));
        }
        if has_split(&dataset, Split::Test) {
            tests.push((target, spec.clone()));
        } else {
            report.skipped.push(format!(
                "{} test: no test recordings with audio in {}",
                target.title(),
                path.display()
            ));
        }
        label_sets.push(dataset);
    }
    let synth_dir = match &options.synth {
        Some(dir) => Some(dir.clone()),
        None if !label_sets.is_empty() => {
            let dir = options.out.join("synth");
            render_synth(options, &label_sets, &dir, reporter)?;
            Some(dir)
        }
        None => None,
    };
    if let Some(dir) = synth_dir {
        let spec = DataSource {
            kind: DataKind::Synth,
            path: dir.clone(),
        };
        let dataset = spec.load(Split::Train)?;
        if has_split(&dataset, Split::Train) {
            sources.push((Source::Synth, spec));
        } else {
            report.skipped.push(format!(
                "Synthesized Instruments: no training items in {}",
                dir.display()
            ));
        }
    } else {
        report
            .skipped
            .push("Synthesized Instruments: no labels to render and no --synth set".into());
    }
    let source_of = |s: Source| {
        sources
            .iter()
            .find(|(k, _)| *k == s)
            .map(|(_, d)| d.clone())
    };

    let runs_dir = options.out.join("runs");
    let eval_dir = options.out.join("eval");
    for dir in [&runs_dir, &eval_dir] {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let mut done: Vec<(Training, PathBuf)> = Vec::new();
    for training in TRAININGS {
        let Some(data) = source_of(training.data) else {
            report.skipped.push(format!(
                "training {}: no {} training data",
                training.title(),
                training.data.title()
            ));
            continue;
        };
        let init = match training.from {
            None => None,
            Some(from) => match done
                .iter()
                .find(|(t, _)| t.data == from && t.from.is_none())
            {
                Some((_, run)) => Some(RunPaths::new(run).last()),
                None => {
                    report.skipped.push(format!(
                        "training {}: its source training ({}) did not run",
                        training.title(),
                        from.title()
                    ));
                    continue;
                }
            },
        };
        let run_dir = runs_dir.join(training.key());
        let settings = TrainSettings {
            data: vec![data],
            val: None,
            epochs: options.scale.epochs,
            batch: options.scale.batch,
            crop_frames: options.scale.crop_frames,
            seed: options.seed,
            validate_every: options.scale.validate_every,
            checkpoint_every: options.scale.checkpoint_every,
            init: init.clone(),
            ..TrainSettings::default()
        };
        reporter.message(&format!(
            "== training {} ({})",
            training.title(),
            run_dir.display()
        ));
        let paths = RunPaths::new(&run_dir);
        if paths.config().exists() {
            run::resume_run(
                &run_dir,
                Some(options.scale.epochs),
                &Default::default(),
                reporter,
            )?;
        } else {
            run::start_run(settings, &run_dir, reporter)?;
        }
        done.push((training, run_dir));
    }
    if done.is_empty() {
        return Err(ExperimentError::Nothing(format!(
            "no training could run:\n  {}",
            report.skipped.join("\n  ")
        )));
    }

    let cqt = Cqt::new(CqtParams::default())?;
    let mut results: Vec<(Training, Target, StoredEval)> = Vec::new();
    for (training, run_dir) in &done {
        let ckpt = RunPaths::new(run_dir).last();
        for (target, spec) in &tests {
            let path = eval_dir.join(format!("{}--{}.json", training.key(), target.key()));
            let stored = match read_stored(&path, &ckpt) {
                Some(stored) => stored,
                None => {
                    reporter.message(&format!(
                        "== evaluating {} on {} test",
                        training.title(),
                        target.title()
                    ));
                    let mut model = Transcriber::new(0);
                    checkpoint::load_model(&ckpt, &mut model)?;
                    let items: Vec<_> = spec
                        .load(Split::Test)?
                        .split(Split::Test)
                        .cloned()
                        .collect();
                    let per_ref = evaluate::evaluate_items_against(
                        &crate::device::Device::Cpu,
                        &mut model,
                        &cqt,
                        &items,
                        &REFERENCES,
                        &DecodeOptions::default(),
                        |_, _| {},
                    )?;
                    let stored = StoredEval {
                        checkpoint: ckpt.clone(),
                        references: REFERENCES
                            .iter()
                            .zip(per_ref)
                            .map(|(r, list)| stored_reference(*r, &list))
                            .collect(),
                    };
                    let text = serde_json::to_string_pretty(&stored).expect("serialisable");
                    fsutil::write_bytes_atomic(&path, text.as_bytes()).map_err(io(&path))?;
                    stored
                }
            };
            results.push((*training, *target, stored));
        }
    }
    for (target, _) in Target::ALL.iter().map(|t| (t, ())) {
        if !tests.iter().any(|(t, _)| t == target) {
            report.skipped.push(format!(
                "column {}: no test set, so its cells are empty",
                target.title()
            ));
        }
    }
    report.skipped.dedup();
    write_tables(options, &results, &mut report)?;
    write_convergence(options, &done, &mut report)?;
    Ok(report)
}

fn stored_reference(
    reference: ReferenceKind,
    list: &[RecordingResult],
) -> (
    String,
    RecordingScoresRow,
    RecordingScoresRow,
    Vec<RecordingRow>,
) {
    let (mean, std) = evaluate::summary(list);
    (
        evaluate::reference_name(reference).to_string(),
        row(&mean),
        row(&std),
        list.iter()
            .map(|r| RecordingRow {
                name: r.name.clone(),
                figures: row(&r.scores).figures,
            })
            .collect(),
    )
}

/// A stored evaluation of exactly this checkpoint (its file no older than the checkpoint).
fn read_stored(path: &Path, ckpt: &Path) -> Option<StoredEval> {
    let eval_time = std::fs::metadata(path).ok()?.modified().ok()?;
    let ckpt_time = std::fs::metadata(ckpt).ok()?.modified().ok()?;
    if eval_time < ckpt_time {
        return None;
    }
    let stored: StoredEval = serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()?;
    (stored.checkpoint == ckpt).then_some(stored)
}

fn prf_of(stored: &StoredEval, reference: &str, metric: &str) -> Option<(Prf, Prf)> {
    let (_, mean, std, _) = stored.references.iter().find(|(r, ..)| r == reference)?;
    let get = |row: &RecordingScoresRow, what: &str| {
        row.figures
            .iter()
            .find(|(k, _)| k == &format!("{metric}_{what}"))
            .map(|(_, v)| *v)
    };
    let prf = |row: &RecordingScoresRow| -> Option<Prf> {
        Some(Prf {
            precision: get(row, "precision")?,
            recall: get(row, "recall")?,
            f1: get(row, "f1")?,
        })
    };
    Some((prf(mean)?, prf(std)?))
}

const METRICS: [(&str, &str, &str); 3] = [
    (
        "frame",
        "Table 1. Results for frame metrics",
        "table1_frame",
    ),
    ("note", "Table 2. Results for note metrics", "table2_note"),
    (
        "note_with_offset",
        "Table 3. note-with-offset results",
        "table3_note_with_offset",
    ),
];

fn write_tables(
    options: &ExperimentOptions,
    results: &[(Training, Target, StoredEval)],
    report: &mut ExperimentReport,
) -> Result<(), ExperimentError> {
    let dir = options.out.join("tables");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let scale = &options.scale;
    let mut md = format!(
        "# Tables 1–3 at scale: {} epochs, batch {}, crops of {} frames\n\n\
         Mean over the test recordings (± their standard deviation in the CSV files). Each table \
         is given twice, by reference kind: `annotation` (the label files' notes) and `roll` \
         (notes read back from the quantised label roll, as the paper's code did).\n\n",
        scale.epochs, scale.batch, scale.crop_frames
    );
    if !report.skipped.is_empty() {
        md.push_str("Skipped:\n");
        for line in &report.skipped {
            let _ = writeln!(md, "- {line}");
        }
        md.push('\n');
    }
    for (metric, title, file) in METRICS {
        let mut csv = String::from(
            "model,reference,maps_p,maps_r,maps_f1,maps_p_std,maps_r_std,maps_f1_std,guitarset_p,guitarset_r,guitarset_f1,guitarset_p_std,guitarset_r_std,guitarset_f1_std\n",
        );
        for reference in REFERENCES.map(evaluate::reference_name) {
            let _ = writeln!(md, "## {title} (reference: {reference})\n");
            md.push_str("| Model trained on | MAPS P | MAPS R | MAPS F1 | GuitarSet P | GuitarSet R | GuitarSet F1 |\n");
            md.push_str("| --- | --- | --- | --- | --- | --- | --- |\n");
            let mut group = "";
            for training in TRAININGS {
                if training.group != group {
                    group = training.group;
                    let _ = writeln!(md, "| **{group}** | | | | | | |");
                }
                let cells: Vec<Option<(Prf, Prf)>> = Target::ALL
                    .iter()
                    .map(|target| {
                        results
                            .iter()
                            .find(|(t, g, _)| t.key() == training.key() && g == target)
                            .and_then(|(_, _, s)| prf_of(s, reference, metric))
                    })
                    .collect();
                let _ = write!(md, "| {} ", training.title());
                let _ = write!(csv, "{},{reference}", training.title());
                for cell in &cells {
                    match cell {
                        Some((m, _)) => {
                            let _ =
                                write!(md, "| {:.3} | {:.3} | {:.3} ", m.precision, m.recall, m.f1);
                        }
                        None => md.push_str("| – | – | – "),
                    }
                    match cell {
                        Some((m, s)) => {
                            let _ = write!(
                                csv,
                                ",{:.6},{:.6},{:.6},{:.6},{:.6},{:.6}",
                                m.precision, m.recall, m.f1, s.precision, s.recall, s.f1
                            );
                        }
                        None => csv.push_str(",,,,,,"),
                    }
                }
                md.push_str("|\n");
                csv.push('\n');
            }
            md.push('\n');
        }
        let path = dir.join(format!("{file}.csv"));
        fsutil::write_bytes_atomic(&path, csv.as_bytes()).map_err(io(&path))?;
        report.files.push(path);
    }
    let path = dir.join("tables.md");
    fsutil::write_bytes_atomic(&path, md.as_bytes()).map_err(io(&path))?;
    report.files.push(path);
    report.tables_markdown = md;
    Ok(())
}

/// Fig. 3: validation note F1 per epoch of the trainings whose data is each target dataset.
fn write_convergence(
    options: &ExperimentOptions,
    done: &[(Training, PathBuf)],
    report: &mut ExperimentReport,
) -> Result<(), ExperimentError> {
    let dir = options.out.join("plots");
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    for (target, source) in [
        (Target::Maps, Source::Maps),
        (Target::GuitarSet, Source::GuitarSet),
    ] {
        let series: Vec<Series> = done
            .iter()
            .filter(|(t, _)| t.data == source)
            .map(|(t, run_dir)| {
                let text =
                    std::fs::read_to_string(RunPaths::new(run_dir).metrics()).unwrap_or_default();
                Series {
                    name: t.title(),
                    points: metric_points(&text, "val_note_f1"),
                }
            })
            .filter(|s| !s.points.is_empty())
            .collect();
        if series.is_empty() {
            continue;
        }
        let path = dir.join(format!("convergence-{}.svg", target.key()));
        let svg = line_chart_svg(
            &format!(
                "Validation on {} during training (note F1, label-roll reference)",
                target.title()
            ),
            "epoch",
            "note F1",
            &series,
        );
        fsutil::write_bytes_atomic(&path, svg.as_bytes()).map_err(io(&path))?;
        report.files.push(path);
    }
    Ok(())
}

//! Scoring a 10-minute piece: ~5 000 notes each side with `mir_eval.transcription`'s whole
//! dictionary, its 18 750 frames with `mir_eval.multipitch`'s, and `score_recording` from a
//! probability roll. `cargo bench --bench metrics`; `tools/bench/metrics_mir_eval.py` times
//! mir_eval on the same piece (the same generator, written out as text by `--write`).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use mtosi::decode::{frame_lists, DecodeOptions, FrameNote, FRAME_S};
use mtosi::metrics::transcription::NoteTolerances;
use mtosi::metrics::{multipitch, score_recording, transcription, ReferenceKind};
use mtosi::notes::roll::{HOP_LENGTH, KEY_COUNT};
use mtosi::notes::Note;
use mtosi::rng::Rng;

const PIECE_S: f64 = 600.0;
const NOTES: usize = 5_000;

/// A reference of `NOTES` random notes in 10 minutes and an estimate near it: onsets within
/// ±40 ms, a tenth of the notes missed, a tenth more inserted, some a semitone off.
fn piece(rng: &mut Rng) -> (Vec<Note>, Vec<Note>) {
    let note = |onset_s: f64, duration_s: f64, pitch: u8| Note {
        onset_s,
        offset_s: (onset_s + duration_s).min(PIECE_S),
        pitch,
        velocity: 64,
    };
    let reference: Vec<Note> = (0..NOTES)
        .map(|_| {
            let onset = rng.uniform_f64() * (PIECE_S - 0.1);
            note(onset, 0.05 + rng.uniform_f64(), rng.range_u8(21, 108))
        })
        .collect();
    let mut estimate = Vec::with_capacity(NOTES);
    for r in &reference {
        let draw = rng.uniform_f64();
        if draw < 0.1 {
            continue;
        }
        let onset = (r.onset_s + (rng.uniform_f64() - 0.5) * 0.08).max(0.0);
        let pitch = if draw > 0.95 {
            r.pitch.saturating_sub(1).max(21)
        } else {
            r.pitch
        };
        estimate.push(note(
            onset,
            r.offset_s - r.onset_s + (rng.uniform_f64() - 0.5) * 0.2,
            pitch,
        ));
        if draw > 0.9 {
            estimate.push(note(
                rng.uniform_f64() * (PIECE_S - 0.1),
                0.3,
                rng.range_u8(21, 108),
            ));
        }
    }
    (reference, estimate)
}

fn intervals(notes: &[Note]) -> (Vec<[f64; 2]>, Vec<f64>) {
    notes
        .iter()
        .filter(|n| n.offset_s > n.onset_s)
        .map(|n| {
            (
                [n.onset_s, n.offset_s],
                mtosi::decode::midi_to_hz(f64::from(n.pitch)),
            )
        })
        .unzip()
}

fn frame_notes(notes: &[Note]) -> Vec<FrameNote> {
    notes
        .iter()
        .map(|n| {
            let start = (n.onset_s / FRAME_S).round() as usize;
            FrameNote {
                key: usize::from(n.pitch - 21),
                start,
                end: ((n.offset_s / FRAME_S).round() as usize).max(start + 1),
            }
        })
        .collect()
}

fn bench_metrics(c: &mut Criterion) {
    let mut rng = Rng::new(2026);
    let (reference, estimate) = piece(&mut rng);
    let (ri, rp) = intervals(&reference);
    let (ei, ep) = intervals(&estimate);
    eprintln!(
        "metrics bench: {} reference, {} estimated notes",
        ri.len(),
        ei.len()
    );
    let mut group = c.benchmark_group("metrics_10min");
    group.bench_function("transcription_evaluate_5000_notes", |b| {
        b.iter(|| transcription::evaluate(&ri, &rp, &ei, &ep, &NoteTolerances::default()).unwrap())
    });

    let frames = (PIECE_S / FRAME_S) as usize;
    let (ref_times, ref_freqs) = frame_lists(&frame_notes(&reference), frames);
    let (est_times, est_freqs) = frame_lists(&frame_notes(&estimate), frames);
    group.bench_function("multipitch_evaluate_18750_frames", |b| {
        b.iter(|| {
            multipitch::evaluate(&ref_times, &ref_freqs, &est_times, &est_freqs, 0.5).unwrap()
        })
    });

    let mut roll = vec![0.1f32; frames * KEY_COUNT];
    for n in frame_notes(&estimate) {
        for frame in n.start..n.end.min(frames) {
            roll[frame * KEY_COUNT + n.key] = 0.9;
        }
    }
    let samples = (frames - 1) * HOP_LENGTH + 1;
    for (name, kind) in [
        ("score_recording_annotation", ReferenceKind::Annotation),
        ("score_recording_label_roll", ReferenceKind::LabelRoll),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                score_recording(&roll, &reference, samples, kind, &DecodeOptions::default())
                    .unwrap()
            })
        });
    }
    group.finish();

    if let Ok(dir) = std::env::var("MTOSI_METRICS_BENCH_WRITE") {
        // The same piece as mir_eval text, for tools/bench/metrics_mir_eval.py.
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        let notes_text = |i: &[[f64; 2]], p: &[f64]| -> String {
            i.iter()
                .zip(p)
                .map(|(i, p)| format!("{:?}\t{:?}\t{:?}\n", i[0], i[1], p))
                .collect()
        };
        let frames_text = |t: &[f64], f: &[Vec<f64>]| -> String {
            t.iter()
                .zip(f)
                .map(|(t, f)| {
                    let mut line = format!("{t:?}");
                    f.iter().for_each(|v| line += &format!(" {v:?}"));
                    line + "\n"
                })
                .collect()
        };
        std::fs::write(dir.join("ref_notes.txt"), notes_text(&ri, &rp)).unwrap();
        std::fs::write(dir.join("est_notes.txt"), notes_text(&ei, &ep)).unwrap();
        std::fs::write(
            dir.join("ref_frames.txt"),
            frames_text(&ref_times, &ref_freqs),
        )
        .unwrap();
        std::fs::write(
            dir.join("est_frames.txt"),
            frames_text(&est_times, &est_freqs),
        )
        .unwrap();
        eprintln!("metrics bench: piece written to {}", dir.display());
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3));
    targets = bench_metrics
}
criterion_main!(benches);

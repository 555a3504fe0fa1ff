//! `mtosi demo`'s library calls with mtosi's built-in SoundFont (what CI has): the fallback
//! training takes steps within its budget, and the demo writes its four files and scores the
//! transcription against the rendered notes. A random network stands in for the model, so only
//! the path is checked, not the scores' size.

use std::time::Duration;

use mtosi::synth::{load_soundfont, SoundFontChoice};
use mtosi::transcribe::demo::{run_demo, train_demo_model, DemoTraining};
use mtosi::transcribe::model_cqt;

#[test]
fn the_demo_trains_within_its_budget_and_writes_and_scores_its_files() {
    let sound_font = load_soundfont(&SoundFontChoice::Builtin).unwrap();
    let cqt = model_cqt();
    let settings = DemoTraining {
        budget: Duration::from_millis(1),
        batch: 1,
        crop_frames: 32,
        pieces: 1,
        ..DemoTraining::default()
    };
    let mut losses = Vec::new();
    let (_, steps) = train_demo_model(&sound_font, &cqt, &settings, &mut |_, loss| {
        losses.push(loss)
    })
    .unwrap();
    assert_eq!(steps as usize, losses.len());
    assert!(
        steps >= 1 && losses.iter().all(|l| l.is_finite() && *l > 0.0),
        "{losses:?}"
    );

    let dir = tempfile::tempdir().unwrap();
    let mut model = mtosi::model::Transcriber::new(2);
    let report = run_demo(dir.path(), &sound_font, &mut model, &cqt).unwrap();
    for path in [
        &report.wav,
        &report.midi,
        &report.reference_midi,
        &report.picture,
    ] {
        assert!(
            std::fs::metadata(path).unwrap().len() > 0,
            "{}",
            path.display()
        );
    }
    let reference = mtosi::notes::read_notes(&report.reference_midi).unwrap();
    assert_eq!(reference.len(), report.reference_notes);
    assert!(report.reference_notes > 20 && report.seconds > 19.0);
    for prf in [
        report.scores.note,
        report.scores.note_with_offset,
        report.scores.frame,
    ] {
        for v in [prf.precision, prf.recall, prf.f1] {
            assert!((0.0..=1.0).contains(&v), "{prf:?}");
        }
    }
}

//! Synthesis with the project's own generated SoundFont: it loads, notes sound where they are,
//! silence elsewhere, and the program changes the timbre.

use mtosi::notes::Note;
use mtosi::synth::{self, render_notes, RenderSettings, SoundFontChoice, Tail};

const RATE_HZ: u32 = 16_000;

fn builtin() -> std::sync::Arc<synth::SoundFont> {
    synth::load_soundfont(&SoundFontChoice::Builtin).expect("built-in SoundFont loads")
}

fn note(onset_s: f64, offset_s: f64, pitch: u8) -> Note {
    Note {
        onset_s,
        offset_s,
        pitch,
        velocity: 100,
    }
}

fn dry(program: u8) -> RenderSettings {
    RenderSettings {
        program,
        synth_rate_hz: RATE_HZ,
        output_rate_hz: RATE_HZ,
        effects: false,
        tail: Tail::Fixed(0.5),
        block_samples: 8,
    }
}

/// Energy of consecutive 4 ms windows.
fn window_energy(audio: &[f32], window: usize) -> Vec<f64> {
    audio
        .chunks(window)
        .map(|w| w.iter().map(|&x| (x as f64).powi(2)).sum::<f64>())
        .collect()
}

/// Sample positions where the energy of a 4 ms window first jumps by 20 dB over the previous
/// window (after at least `gap` windows without such a jump).
fn onsets(audio: &[f32]) -> Vec<usize> {
    let window = (RATE_HZ / 250) as usize;
    let energy = window_energy(audio, window);
    let mut found: Vec<usize> = Vec::new();
    for i in 1..energy.len() {
        let jump = energy[i] > 1e-6 && energy[i] > 100.0 * energy[i - 1];
        if jump
            && found
                .last()
                .is_none_or(|&last| i * window > last + 20 * window)
        {
            found.push(i * window);
        }
    }
    found
}

#[test]
fn builtin_soundfont_has_a_piano_and_a_steel_guitar() {
    let sf = builtin();
    let programs: Vec<(i32, i32)> = sf
        .get_presets()
        .iter()
        .map(|p| (p.get_bank_number(), p.get_patch_number()))
        .collect();
    assert!(programs.contains(&(0, 0)), "{programs:?}");
    assert!(programs.contains(&(0, 25)), "{programs:?}");
}

#[test]
fn notes_sound_at_their_onsets_and_nowhere_else_when_dry() {
    let sf = builtin();
    let notes = [note(0.25, 0.5, 60), note(0.8, 1.0, 72), note(1.3, 1.4, 40)];
    for program in [0, 25] {
        let audio = render_notes(&sf, &notes, &dry(program)).unwrap();
        assert_eq!(audio.len(), (1.4 * 16_000.0 + 0.5 * 16_000.0) as usize);
        let found = onsets(&audio);
        let expected: Vec<usize> = notes
            .iter()
            .map(|n| (n.onset_s * 16_000.0) as usize)
            .collect();
        assert_eq!(
            found.len(),
            expected.len(),
            "program {program}: onsets {found:?}"
        );
        for (f, e) in found.iter().zip(&expected) {
            // One 4 ms detection window, plus the 4-sample event quantisation.
            assert!(
                f.abs_diff(*e) <= 64 + 4,
                "program {program}: onset at {f}, expected {e}"
            );
        }
        // Exact silence before the first note (dry: no reverb, no chorus).
        assert!(
            audio[..4000 - 8].iter().all(|&x| x == 0.0),
            "program {program}"
        );
        // Silence once every release has finished (0.25 s piano, 0.1 s guitar release).
        let after_release = ((1.4 + 0.3) * 16_000.0) as usize;
        let tail_peak = audio[after_release..]
            .iter()
            .fold(0f32, |m, x| m.max(x.abs()));
        assert!(tail_peak < 1e-4, "program {program}: tail peak {tail_peak}");
        let note_peak = audio[4000..8000].iter().fold(0f32, |m, x| m.max(x.abs()));
        assert!(note_peak > 0.01, "program {program}: note peak {note_peak}");
    }
}

#[test]
fn an_onset_lands_within_half_a_block_of_its_exact_time() {
    let sf = builtin();
    for block_samples in [8, 64] {
        // Onsets at every residue modulo the block.
        for offset in 0..block_samples as u32 {
            let onset_sample = 1600 + offset;
            let notes = [note(onset_sample as f64 / 16_000.0, 0.3, 69)];
            let settings = RenderSettings {
                block_samples,
                ..dry(0)
            };
            let audio = render_notes(&sf, &notes, &settings).unwrap();
            let first = audio.iter().position(|&x| x != 0.0).unwrap() as i64;
            let error = (first - onset_sample as i64).abs();
            assert!(
                error <= block_samples as i64 / 2,
                "block {block_samples}, onset {onset_sample}: sound from {first}"
            );
        }
    }
}

#[test]
fn effects_leave_a_reverb_tail_that_dry_rendering_has_not() {
    let sf = builtin();
    let notes = [note(0.1, 0.2, 60)];
    let wet = render_notes(
        &sf,
        &notes,
        &RenderSettings {
            effects: true,
            ..dry(0)
        },
    )
    .unwrap();
    let dry_audio = render_notes(&sf, &notes, &dry(0)).unwrap();
    let late = ((0.2 + 0.3) * 16_000.0) as usize;
    let energy = |a: &[f32]| a[late..].iter().map(|&x| (x as f64).powi(2)).sum::<f64>();
    assert!(
        energy(&dry_audio) < 1e-8,
        "dry tail energy {}",
        energy(&dry_audio)
    );
    assert!(energy(&wet) > 1e-6, "wet tail energy {}", energy(&wet));
}

/// Spectral centroid (Hz) of a steady stretch, by a direct DFT over 2048 samples.
fn spectral_centroid(audio: &[f32]) -> f64 {
    let n = 2048;
    let x = &audio[..n];
    let (mut weighted, mut total) = (0.0, 0.0);
    for k in 1..n / 2 {
        let (mut re, mut im) = (0.0f64, 0.0f64);
        for (i, &v) in x.iter().enumerate() {
            let phase = -2.0 * std::f64::consts::PI * (k * i) as f64 / n as f64;
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            re += v as f64 * w * phase.cos();
            im += v as f64 * w * phase.sin();
        }
        let magnitude = (re * re + im * im).sqrt();
        weighted += magnitude * k as f64 * RATE_HZ as f64 / n as f64;
        total += magnitude;
    }
    weighted / total
}

#[test]
fn the_program_changes_the_timbre() {
    let sf = builtin();
    let notes = [note(0.0, 1.0, 57)];
    let piano = render_notes(&sf, &notes, &dry(0)).unwrap();
    let guitar = render_notes(&sf, &notes, &dry(25)).unwrap();
    let start = 1600; // 100 ms in: past the attack noise
    let c_piano = spectral_centroid(&piano[start..]);
    let c_guitar = spectral_centroid(&guitar[start..]);
    // Same pitch, different spectra: the centroids differ by far more than a DFT bin (7.8 Hz).
    assert!(
        (c_piano - c_guitar).abs() > 50.0,
        "centroids piano {c_piano:.0} Hz, guitar {c_guitar:.0} Hz"
    );
    let differing = piano
        .iter()
        .zip(&guitar)
        .filter(|(a, b)| (*a - *b).abs() > 1e-3)
        .count();
    assert!(differing > piano.len() / 4);
}

#[test]
fn a_program_the_soundfont_lacks_is_an_error() {
    let sf = builtin();
    let err = render_notes(&sf, &[note(0.0, 0.1, 60)], &dry(40)).unwrap_err();
    assert!(err.to_string().contains("program 40"), "{err}");
}

#[test]
fn unplayable_notes_are_errors_naming_the_note() {
    let sf = builtin();
    for bad in [
        note(f64::NAN, 1.0, 60),
        note(1.0, 0.5, 60),
        note(-0.1, 0.5, 60),
        note(0.0, 0.5, 128),
    ] {
        let err = render_notes(&sf, &[note(0.0, 0.1, 60), bad], &dry(0)).unwrap_err();
        assert!(err.to_string().contains("note 1"), "{err}");
    }
}

#[test]
fn no_notes_render_only_the_tail_of_silence() {
    let audio = render_notes(&builtin(), &[], &dry(0)).unwrap();
    assert_eq!(audio.len(), 8000);
    assert!(audio.iter().all(|&x| x == 0.0));
}

#[test]
fn an_until_silent_tail_ends_soon_after_the_release() {
    let sf = builtin();
    let settings = RenderSettings {
        tail: Tail::UntilSilent { max_s: 10.0 },
        ..dry(25)
    };
    let audio = render_notes(&sf, &[note(0.1, 0.5, 64)], &settings).unwrap();
    let length_s = audio.len() as f64 / RATE_HZ as f64;
    // Note-off at 0.5 s, 0.1 s guitar release (-96 dB at its end), 0.1 s of silence, one
    // 512-sample check step (32 ms): the render ends between 0.6 and 0.75 s, far before 10 s.
    assert!((0.6..0.75).contains(&length_s), "rendered {length_s} s");
    let capped = RenderSettings {
        tail: Tail::UntilSilent { max_s: 0.05 },
        ..settings
    };
    let audio = render_notes(&sf, &[note(0.1, 0.5, 64)], &capped).unwrap();
    assert_eq!(audio.len(), (0.55 * RATE_HZ as f64) as usize);
}

#[test]
fn the_audio_covers_a_note_that_dies_away_before_its_offset() {
    // The guitar's envelope reaches silence after about 2.5 s; the note lasts 6 s.
    let sf = builtin();
    for effects in [false, true] {
        let settings = RenderSettings {
            effects,
            tail: Tail::UntilSilent { max_s: 10.0 },
            ..dry(25)
        };
        let audio = render_notes(&sf, &[note(0.0, 6.0, 40)], &settings).unwrap();
        assert!(
            audio.len() >= 6 * 16_000,
            "effects {effects}: {} samples",
            audio.len()
        );
    }
}

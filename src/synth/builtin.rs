//! The project's own small SoundFont, generated in code: a piano-like GM program 0 and a
//! steel-guitar-like GM program 25, so rendering works (and is tested) without FluidR3_GM.
//!
//! Each sample is a harmonic tone whose harmonics decay from a bright attack to a darker
//! steady spectrum; the steady part is exactly periodic over the loop (an integer number of
//! cycles), so the loop is seamless and the envelope of the instrument does the long decay.

use std::f64::consts::PI;

use super::sf2_writer::{
    Generator, Instrument, InstrumentZone, Preset, Sample, SoundFontSpec, Zone, SAMPLE_MODE_LOOP,
};

/// Sample rate of the generated samples.
const SAMPLE_RATE_HZ: u32 = 32_000;
/// Length of the non-looped attack part, in which the spectrum moves to its steady state.
const ATTACK_PART_S: f64 = 0.3;
/// Approximate loop length; the exact length holds a whole number of cycles.
const LOOP_TARGET_S: f64 = 0.05;
/// Highest harmonic frequency written into a sample (below the 16 kHz Nyquist limit).
const MAX_HARMONIC_HZ: f64 = 14_000.0;

/// GM program of the piano-like preset.
pub const PIANO_PROGRAM: u8 = 0;
/// GM program of the guitar-like preset (Acoustic Guitar, steel).
pub const GUITAR_PROGRAM: u8 = 25;

/// How one instrument's tone is made.
struct Timbre {
    name: &'static str,
    root_keys: &'static [u8],
    /// Initial amplitude of harmonic `h` (1-based).
    attack_amplitude: fn(f64) -> f64,
    /// Ratio steady/initial amplitude of harmonic `h`.
    steady_ratio: fn(f64) -> f64,
    /// Amplitude of the short noise burst at the start (hammer or pick), relative to the peak.
    noise_level: f64,
    /// Volume envelope: attack, decay (to silence), release, in seconds.
    attack_s: f64,
    decay_s: f64,
    release_s: f64,
}

const PIANO: Timbre = Timbre {
    name: "mtosi piano",
    root_keys: &[24, 36, 48, 60, 72, 84, 96, 108],
    attack_amplitude: |h| 1.0 / h.powf(1.1),
    steady_ratio: |h| (-0.35 * h).exp(),
    noise_level: 0.08,
    attack_s: 0.002,
    decay_s: 7.0,
    release_s: 0.25,
};

const GUITAR: Timbre = Timbre {
    name: "mtosi steel guitar",
    root_keys: &[40, 52, 64, 76, 88],
    // A string plucked at 18 % of its length: harmonics at multiples of ~5.5 are weak.
    attack_amplitude: |h| (PI * h * 0.18).sin().abs() / h.powf(1.6),
    steady_ratio: |h| (-0.6 * h).exp(),
    noise_level: 0.03,
    attack_s: 0.001,
    decay_s: 2.5,
    release_s: 0.1,
};

/// The project's SoundFont as `.sf2` bytes.
pub fn builtin_soundfont_bytes() -> Vec<u8> {
    let mut spec = SoundFontSpec {
        name: "mtosi generated GM subset".to_string(),
        ..Default::default()
    };
    for (timbre, program) in [(&PIANO, PIANO_PROGRAM), (&GUITAR, GUITAR_PROGRAM)] {
        let first_sample = spec.samples.len();
        let mut zones = Vec::new();
        for (i, &root) in timbre.root_keys.iter().enumerate() {
            spec.samples.push(harmonic_sample(timbre, root));
            let low = if i == 0 { 0 } else { root - 6 };
            let high = if i + 1 == timbre.root_keys.len() {
                127
            } else {
                root + 5
            };
            zones.push(InstrumentZone {
                zone: Zone {
                    key_range: Some((low, high)),
                    generators: vec![],
                },
                sample_index: (first_sample + i) as u16,
            });
        }
        // Full sustain attenuation (96 dB) reached over `decay_s`: a free decay like a struck string.
        let global = Zone {
            key_range: None,
            generators: vec![
                // No envelope delay (the spec's default is 1 ms): notes start at their onset.
                (Generator::DelayVolEnv, i16::MIN),
                (Generator::AttackVolEnv, timecents(timbre.attack_s)),
                (Generator::DecayVolEnv, timecents(timbre.decay_s)),
                (Generator::SustainVolEnv, 960),
                (Generator::ReleaseVolEnv, timecents(timbre.release_s)),
                // Higher keys decay faster, as on real strings.
                (Generator::KeynumToVolEnvDecay, 20),
                (Generator::SampleModes, SAMPLE_MODE_LOOP),
            ],
        };
        spec.presets.push(Preset {
            name: timbre.name.to_string(),
            program: program as u16,
            bank: 0,
            instrument_index: spec.instruments.len() as u16,
        });
        spec.instruments.push(Instrument {
            name: timbre.name.to_string(),
            global: Some(global),
            zones,
        });
    }
    spec.to_bytes()
}

fn timecents(seconds: f64) -> i16 {
    (1200.0 * seconds.log2()).round() as i16
}

fn harmonic_sample(timbre: &Timbre, root_key: u8) -> Sample {
    let sr = SAMPLE_RATE_HZ as f64;
    let target_hz = 440.0 * 2f64.powf((root_key as f64 - 69.0) / 12.0);
    // Whole cycles in the loop; the tone is tuned to fit and the rest goes into the pitch correction.
    let cycles = (target_hz * LOOP_TARGET_S).round().max(1.0);
    let loop_len = (cycles * sr / target_hz).round() as usize;
    let tone_hz = cycles * sr / loop_len as f64;
    let correction_cents = (1200.0 * (target_hz / tone_hz).log2()).round() as i8;

    let attack_len = (ATTACK_PART_S * sr) as usize;
    // A few frames past the loop end keep interpolating players in range.
    let total = attack_len + loop_len + 8;
    let harmonics: Vec<(f64, f64, f64)> = (1..)
        .map(|h| h as f64)
        .take_while(|h| h * tone_hz < MAX_HARMONIC_HZ && *h <= 40.0)
        .map(|h| {
            let initial = (timbre.attack_amplitude)(h);
            (h, initial, initial * (timbre.steady_ratio)(h))
        })
        .collect();

    let mut noise_state = 0x2545_f491_u32 ^ root_key as u32;
    let noise_len = (0.006 * sr) as usize;
    let mut frames: Vec<f64> = (0..total)
        .map(|n| {
            let t = n as f64 / sr;
            let progress = (1.0 - n as f64 / attack_len as f64).max(0.0);
            let blend = progress * progress;
            let tone: f64 = harmonics
                .iter()
                .map(|&(h, initial, steady)| {
                    (steady + (initial - steady) * blend) * (2.0 * PI * h * tone_hz * t).sin()
                })
                .sum();
            let noise = if n < noise_len {
                noise_state = noise_state
                    .wrapping_mul(1_664_525)
                    .wrapping_add(1_013_904_223);
                let white = (noise_state >> 8) as f64 / (1u32 << 24) as f64 * 2.0 - 1.0;
                white * (1.0 - n as f64 / noise_len as f64)
            } else {
                0.0
            };
            tone + timbre.noise_level * noise * harmonics[0].1
        })
        .collect();
    let peak = frames.iter().fold(0f64, |m, x| m.max(x.abs()));
    for x in &mut frames {
        *x *= 0.8 / peak;
    }
    Sample {
        name: format!(
            "{} {}",
            timbre.name.split(' ').next_back().unwrap_or("tone"),
            root_key
        ),
        frames: frames
            .iter()
            .map(|x| (x * 32767.0).round() as i16)
            .collect(),
        loop_start: attack_len as u32,
        loop_end: (attack_len + loop_len) as u32,
        sample_rate_hz: SAMPLE_RATE_HZ,
        root_key,
        pitch_correction_cents: correction_cents,
    }
}

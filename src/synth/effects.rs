//! Reverb and chorus with FluidSynth's default settings, applied to the dry mono render.
//!
//! rustysynth has a reverb and a chorus, but their settings are private constants unlike
//! FluidSynth's (its Freeverb: room 0.5, damp 0.5, wet 1/3, width 1; FluidSynth: room 0.2,
//! damp 0, width 0.5, level 0.9), and it sends CC91/127 to the reverb where the SoundFont
//! default modulator that FluidSynth applies sends 20 % of it. So mtosi renders dry and adds
//! its own effects here, with FluidSynth's defaults:
//! - reverb: Freeverb (the algorithm of FluidSynth 1.x; 2.x keeps its parameters), room 0.2,
//!   damp 0, width 0.5, level 0.9;
//! - chorus: 3 voices, level 2, 0.3 Hz sine, depth 8 ms;
//! - sends: the channel's (CC91 = 40 and CC93 = 0 at reset, through the 20 % default
//!   modulators) plus the preset's and instrument's effect-send generators.
//!
//! All voices of a render share one program, so one send level per effect stands for every
//! voice (the mean over the preset's zones), and the effects, which are linear, can run on
//! the dry mix after it has been resampled to the output rate: cheaper than at 44.1 kHz.
//! The output is mono, the mean of the effects' left and right outputs.

use rustysynth::SoundFont;

/// Reverb and chorus send levels (0..=1) of a GM program in a SoundFont, as FluidSynth
/// computes them for a channel at its reset values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EffectSends {
    pub reverb: f32,
    pub chorus: f32,
}

/// GM reset value of CC91 (reverb depth) in FluidSynth.
const RESET_REVERB_CC: f32 = 40.0;
/// GM reset value of CC93 (chorus depth).
const RESET_CHORUS_CC: f32 = 0.0;
/// SoundFont 2.01 default modulators CC91 → reverb send and CC93 → chorus send: 20 %.
const CC_TO_SEND: f32 = 0.2;

/// The sends of `program` (bank 0); `None` if the SoundFont lacks it.
pub fn effect_sends(sound_font: &SoundFont, program: u8) -> Option<EffectSends> {
    let preset = sound_font
        .get_presets()
        .iter()
        .find(|p| p.get_bank_number() == 0 && p.get_patch_number() == program as i32)?;
    // Generators are in percent; the preset's add to the instrument's.
    let (mut reverb, mut chorus, mut zones) = (0f32, 0f32, 0usize);
    for preset_region in preset.get_regions() {
        let instrument = &sound_font.get_instruments()[preset_region.get_instrument_id()];
        for region in instrument.get_regions() {
            reverb += preset_region.get_reverb_effects_send() + region.get_reverb_effects_send();
            chorus += preset_region.get_chorus_effects_send() + region.get_chorus_effects_send();
            zones += 1;
        }
    }
    let mean_percent = |sum: f32| if zones == 0 { 0.0 } else { sum / zones as f32 };
    Some(EffectSends {
        reverb: (CC_TO_SEND * RESET_REVERB_CC / 127.0 + mean_percent(reverb) / 100.0)
            .clamp(0.0, 1.0),
        chorus: (CC_TO_SEND * RESET_CHORUS_CC / 127.0 + mean_percent(chorus) / 100.0)
            .clamp(0.0, 1.0),
    })
}

/// The dry mono mix holds each voice at its centre-pan gain (cos 45° per channel, as in both
/// rustysynth and FluidSynth); the effect sends take the voice before panning.
const CENTRE_PAN_GAIN: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// Adds reverb and chorus to `dry` (mono, `sample_rate_hz`) in place.
pub fn apply_effects(dry: &mut [f32], sample_rate_hz: u32, sends: EffectSends) {
    let voice_scale = 1.0 / CENTRE_PAN_GAIN;
    let mut reverb = Freeverb::fluidsynth_default(sample_rate_hz);
    let mut chorus = Chorus::fluidsynth_default(sample_rate_hz);
    for x in dry.iter_mut() {
        let voice = *x * voice_scale;
        let wet_reverb = if sends.reverb > 0.0 {
            reverb.process(voice * sends.reverb)
        } else {
            0.0
        };
        let wet_chorus = if sends.chorus > 0.0 {
            chorus.process(voice * sends.chorus)
        } else {
            0.0
        };
        *x += wet_reverb + wet_chorus;
    }
}

/// Jezar's Freeverb as in FluidSynth 1.x (`fluid_rev.c`): 8 parallel lowpass-feedback combs
/// and 4 series allpasses per channel, the right channel's delays 23 samples longer.
struct Freeverb {
    combs: [Vec<Comb>; 2],
    allpasses: [Vec<Allpass>; 2],
    gain: f32,
    /// Mono output gain: the mean of left and right, each `wet1 * own + wet2 * other`.
    mono_wet: f32,
}

/// FluidSynth 2.x replaced Freeverb by an FDN reverb with the same parameters but another
/// gain structure. This factor on Freeverb's input makes the wet/dry RMS ratio FluidSynth's:
/// 0.111 for `fluidsynth` 2.3.1 with FluidR3_GM on MAPS_MUS-chpn-p14_ENSTDkAm, program 0
/// (the wet part = its default render minus its render with `-R 0 -C 0`); measured the same
/// way, Freeverb gave 0.265 with an input gain of 2 × 0.015, hence 2 × 0.111 / 0.265.
const WET_CALIBRATION: f32 = 0.84;

const COMB_TUNINGS: [usize; 8] = [1116, 1188, 1277, 1356, 1422, 1491, 1557, 1617];
const ALLPASS_TUNINGS: [usize; 4] = [556, 441, 341, 225];
const STEREO_SPREAD: usize = 23;

impl Freeverb {
    fn fluidsynth_default(sample_rate_hz: u32) -> Self {
        const ROOM_SIZE: f32 = 0.2;
        const DAMP: f32 = 0.0;
        const WIDTH: f32 = 0.5;
        const LEVEL: f32 = 0.9;
        // Freeverb's parameter scalings.
        const FIXED_GAIN: f32 = 0.015;
        const SCALE_WET: f32 = 3.0;
        const SCALE_DAMP: f32 = 0.4;
        const SCALE_ROOM: f32 = 0.28;
        const OFFSET_ROOM: f32 = 0.7;
        // The tunings are in samples at 44.1 kHz.
        let scale =
            |n: usize| ((n as f64 * sample_rate_hz as f64 / 44_100.0).round() as usize).max(1);
        let feedback = ROOM_SIZE * SCALE_ROOM + OFFSET_ROOM;
        let damp = DAMP * SCALE_DAMP;
        let make_combs = |spread: usize| {
            COMB_TUNINGS
                .iter()
                .map(|&t| Comb::new(scale(t + spread), feedback, damp))
                .collect()
        };
        let make_allpasses = |spread: usize| {
            ALLPASS_TUNINGS
                .iter()
                .map(|&t| Allpass::new(scale(t + spread)))
                .collect()
        };
        let wet = LEVEL * SCALE_WET;
        let (wet1, wet2) = (wet * (WIDTH / 2.0 + 0.5), wet * ((1.0 - WIDTH) / 2.0));
        Freeverb {
            combs: [make_combs(0), make_combs(STEREO_SPREAD)],
            allpasses: [make_allpasses(0), make_allpasses(STEREO_SPREAD)],
            gain: WET_CALIBRATION * FIXED_GAIN,
            mono_wet: 0.5 * (wet1 + wet2),
        }
    }

    fn process(&mut self, input: f32) -> f32 {
        let input = input * self.gain;
        let mut sum = 0.0;
        for (combs, allpasses) in self.combs.iter_mut().zip(self.allpasses.iter_mut()) {
            let mut out: f32 = combs.iter_mut().map(|c| c.process(input)).sum();
            for allpass in allpasses.iter_mut() {
                out = allpass.process(out);
            }
            sum += out;
        }
        self.mono_wet * sum
    }
}

struct Comb {
    buffer: Vec<f32>,
    index: usize,
    feedback: f32,
    damp: f32,
    filter_store: f32,
}

impl Comb {
    fn new(len: usize, feedback: f32, damp: f32) -> Self {
        Comb {
            buffer: vec![0.0; len],
            index: 0,
            feedback,
            damp,
            filter_store: 0.0,
        }
    }

    fn process(&mut self, input: f32) -> f32 {
        let output = self.buffer[self.index];
        self.filter_store = output * (1.0 - self.damp) + self.filter_store * self.damp;
        self.buffer[self.index] = input + self.filter_store * self.feedback;
        self.index = (self.index + 1) % self.buffer.len();
        output
    }
}

struct Allpass {
    buffer: Vec<f32>,
    index: usize,
}

impl Allpass {
    const FEEDBACK: f32 = 0.5;

    fn new(len: usize) -> Self {
        Allpass {
            buffer: vec![0.0; len],
            index: 0,
        }
    }

    fn process(&mut self, input: f32) -> f32 {
        let delayed = self.buffer[self.index];
        self.buffer[self.index] = input + delayed * Self::FEEDBACK;
        self.index = (self.index + 1) % self.buffer.len();
        delayed - input
    }
}

/// A chorus of `voices` copies of the input, each delayed by a sine-modulated amount (phases
/// spread evenly), summed at `level / voices`.
struct Chorus {
    line: Vec<f32>,
    write: usize,
    voices: usize,
    level: f32,
    phase: f64,
    phase_step: f64,
    centre_delay: f64,
    depth: f64,
}

impl Chorus {
    fn fluidsynth_default(sample_rate_hz: u32) -> Self {
        const VOICES: usize = 3;
        const LEVEL: f32 = 2.0;
        const SPEED_HZ: f64 = 0.3;
        const DEPTH_MS: f64 = 8.0;
        let rate = sample_rate_hz as f64;
        let depth = DEPTH_MS / 1000.0 * rate;
        // Delays sweep over [1 ms, 1 ms + depth].
        let centre_delay = 0.001 * rate + depth / 2.0;
        let len = (centre_delay + depth / 2.0).ceil() as usize + 2;
        Chorus {
            line: vec![0.0; len],
            write: 0,
            voices: VOICES,
            level: LEVEL,
            phase: 0.0,
            phase_step: std::f64::consts::TAU * SPEED_HZ / rate,
            centre_delay,
            depth,
        }
    }

    fn process(&mut self, input: f32) -> f32 {
        let len = self.line.len();
        self.line[self.write] = input;
        let mut sum = 0.0;
        for voice in 0..self.voices {
            let phase = self.phase + std::f64::consts::TAU * voice as f64 / self.voices as f64;
            let delay = self.centre_delay + 0.5 * self.depth * phase.sin();
            let position = self.write as f64 - delay + len as f64;
            let (i, frac) = (position.floor() as usize % len, position.fract() as f32);
            let (a, b) = (self.line[i], self.line[(i + 1) % len]);
            sum += a + frac * (b - a);
        }
        self.write = (self.write + 1) % len;
        self.phase = (self.phase + self.phase_step) % std::f64::consts::TAU;
        sum * self.level / self.voices as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reverb_of_an_impulse_rings_and_decays() {
        let rate = 16_000;
        let mut audio = vec![0f32; 2 * rate as usize];
        audio[0] = 1.0;
        apply_effects(
            &mut audio,
            rate,
            EffectSends {
                reverb: 0.5,
                chorus: 0.0,
            },
        );
        let energy = |from: usize, to: usize| audio[from..to].iter().map(|x| x * x).sum::<f32>();
        // The first echo comes after the shortest comb delay (225 + 556... samples at 44.1 kHz).
        assert_eq!(audio[0], 1.0);
        assert!(audio[1..100].iter().all(|&x| x == 0.0));
        let early = energy(1, 8000);
        let late = energy(24_000, 32_000);
        assert!(early > 1e-5, "early reverb energy {early}");
        // Feedback 0.756 per ~34 ms comb pass: 60 dB down within about a second.
        assert!(late < early * 1e-5, "late {late} vs early {early}");
    }

    #[test]
    fn no_sends_leave_the_signal_untouched() {
        let mut audio: Vec<f32> = (0..1000).map(|i| (i as f32 * 0.1).sin()).collect();
        let original = audio.clone();
        apply_effects(
            &mut audio,
            16_000,
            EffectSends {
                reverb: 0.0,
                chorus: 0.0,
            },
        );
        assert_eq!(audio, original);
    }

    #[test]
    fn the_chorus_of_a_steady_tone_keeps_its_level_within_a_factor_of_its_voices() {
        let rate = 16_000;
        let mut audio: Vec<f32> = (0..rate as usize)
            .map(|i| (i as f32 * 0.2).sin() * 0.1)
            .collect();
        apply_effects(
            &mut audio,
            rate,
            EffectSends {
                reverb: 0.0,
                chorus: 1.0,
            },
        );
        let peak = audio.iter().fold(0f32, |m, x| m.max(x.abs()));
        // Dry 0.1 plus three voices summed at level 2/3 each: at most 0.1 * (1 + 2 * sqrt 2).
        assert!(
            peak > 0.1 && peak < 0.1 * (1.0 + 2.0 * std::f32::consts::SQRT_2) + 1e-3,
            "peak {peak}"
        );
    }
}

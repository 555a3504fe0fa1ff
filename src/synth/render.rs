//! Rendering notes with rustysynth.

use std::sync::Arc;

use rustysynth::{SoundFont, Synthesizer, SynthesizerSettings};

use super::SynthError;
use crate::notes::Note;

/// How a list of notes becomes audio.
#[derive(Debug, Clone, PartialEq)]
pub struct RenderSettings {
    /// GM program (0..=127) on bank 0, as a MIDI program change would select it.
    pub program: u8,
    /// Rate the synthesizer runs at (rustysynth accepts 16 000..=192 000 Hz).
    pub synth_rate_hz: u32,
    /// Rate of the returned audio; the synthesizer's output is resampled to it.
    pub output_rate_hz: u32,
    /// Reverb and chorus with FluidSynth's default settings ([`super::effects`]).
    pub effects: bool,
    /// How long rendering goes on after the last note-off.
    pub tail: Tail,
    /// rustysynth's block size (8..=1024), which is also the timing grid of note events:
    /// rustysynth applies an event at the start of its next block, so each event is moved to
    /// the nearest block start, within `block_samples / 2` of its exact position. Per-block
    /// work (envelopes, pan, pitch) makes small blocks slower. FluidSynth uses 64.
    pub block_samples: usize,
}

/// The audio kept after the last note-off, for the releases and the reverb.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Tail {
    /// Exactly this many seconds.
    Fixed(f64),
    /// Until the output stays below one 16-bit step (-90 dBFS) for 0.1 s, as FluidSynth's
    /// renderer stops once its voices have died away; at most `max_s` seconds.
    UntilSilent { max_s: f64 },
}

impl Default for RenderSettings {
    fn default() -> Self {
        Self {
            program: 0,
            synth_rate_hz: 44_100,
            output_rate_hz: crate::audio::MODEL_SAMPLE_RATE_HZ,
            effects: true,
            tail: Tail::UntilSilent {
                max_s: DEFAULT_MAX_TAIL_S,
            },
            block_samples: DEFAULT_BLOCK_SAMPLES,
        }
    }
}

/// Longest tail rendered by default.
pub const DEFAULT_MAX_TAIL_S: f64 = 10.0;

/// One 16-bit step: quieter output is silence once written.
const SILENCE_LEVEL: f32 = 1.0 / 32768.0;
/// How long the output must stay silent to end the tail.
const SILENT_TAIL_S: f64 = 0.1;
/// Room left after the dry render for the reverb to die away (60 dB in about 0.9 s at
/// FluidSynth's room size), when the tail ends on silence.
const REVERB_TAIL_S: f64 = 1.5;

/// Default of [`RenderSettings::block_samples`]: events within 16 samples (0.36 ms at
/// 44.1 kHz, 1/88 of a 32 ms label frame) of their exact time. On a 126 s MAPS piece with
/// FluidR3_GM at 44.1 kHz, blocks of 8 took 1.8x the CPU time of blocks of 32, and blocks of
/// 64 saved 17 % more (BENCHMARKS.md, "Synthesis").
pub const DEFAULT_BLOCK_SAMPLES: usize = 32;

/// Master volume. rustysynth's default (0.5) makes FluidR3_GM renders 2.2x (6.8 dB) louder
/// (RMS) than the `fluidsynth` program at its default gain (0.2), measured on a MAPS piece with
/// programs 0 and 25 (tools/bench/synth_fidelity.py); this matches FluidSynth's level, which
/// is the level of the paper's training audio.
const MASTER_VOLUME: f32 = 0.5 / 2.2;

/// A note-on or note-off at a sample position.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Event {
    sample: u64,
    /// 0 = off, 1 = on: at the same sample, offs go first so a re-struck key sounds again.
    is_on: u8,
    pitch: u8,
    velocity: u8,
}

/// Checks that every note is playable: finite times, `0 <= onset <= offset`, pitch <= 127.
pub fn validate_notes(notes: &[Note]) -> Result<(), SynthError> {
    for (index, note) in notes.iter().enumerate() {
        let problem = if !note.onset_s.is_finite() || !note.offset_s.is_finite() {
            Some("onset or offset is not a finite number".to_string())
        } else if note.onset_s < 0.0 {
            Some(format!("negative onset {} s", note.onset_s))
        } else if note.offset_s < note.onset_s {
            Some(format!(
                "offset {} s before onset {} s",
                note.offset_s, note.onset_s
            ))
        } else if note.pitch > 127 {
            Some(format!("pitch {} outside MIDI 0..=127", note.pitch))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(SynthError::InvalidNote { index, problem });
        }
    }
    Ok(())
}

/// Renders `notes` on one MIDI channel with `settings.program` and returns mono audio at
/// `settings.output_rate_hz`: the synthesizer's dry output (the mean of its left and right
/// channels) at `settings.synth_rate_hz`, resampled, then reverb and chorus if
/// `settings.effects`. It lasts until the end of `settings.tail` after the last note-off.
/// No normalisation: levels are FluidSynth's (see [`fit_to_full_scale`] for the exception).
pub fn render_notes(
    sound_font: &Arc<SoundFont>,
    notes: &[Note],
    settings: &RenderSettings,
) -> Result<Vec<f32>, SynthError> {
    let dry = render_dry(sound_font, notes, settings)?;
    let mut audio = crate::audio::resample(&dry, settings.synth_rate_hz, settings.output_rate_hz)
        .map_err(|e| SynthError::Synthesizer(format!("resampling: {e}")))?;
    if !settings.effects {
        return Ok(audio);
    }
    let sends = super::effects::effect_sends(sound_font, settings.program).ok_or(
        SynthError::MissingProgram {
            program: settings.program,
        },
    )?;
    let rate = settings.output_rate_hz as f64;
    if let Tail::UntilSilent { max_s } = settings.tail {
        let last_event_s = notes.iter().map(|n| n.offset_s).fold(0.0, f64::max);
        let longest = ((last_event_s + max_s) * rate).round() as usize;
        let padded = (audio.len() + (REVERB_TAIL_S * rate) as usize).min(longest.max(audio.len()));
        audio.resize(padded, 0.0);
        super::effects::apply_effects(&mut audio, settings.output_rate_hz, sends);
        let last_sound = audio
            .iter()
            .rposition(|x| x.abs() >= SILENCE_LEVEL)
            .map_or(0, |i| i + 1);
        // Never before the last note-off, even if the note has died away: the audio must
        // cover its labels.
        let shortest = (last_event_s * rate).round() as usize;
        let end = (last_sound + (SILENT_TAIL_S * rate) as usize).max(shortest);
        audio.truncate(end.min(padded));
    } else {
        super::effects::apply_effects(&mut audio, settings.output_rate_hz, sends);
    }
    Ok(audio)
}

/// The synthesizer's dry output at `settings.synth_rate_hz` (mono: mean of left and right).
pub fn render_dry(
    sound_font: &Arc<SoundFont>,
    notes: &[Note],
    settings: &RenderSettings,
) -> Result<Vec<f32>, SynthError> {
    validate_notes(notes)?;
    check_program(sound_font, settings.program)?;
    let rate = settings.synth_rate_hz as f64;
    let to_sample = |t: f64| (t * rate).round() as u64;
    let mut events: Vec<Event> = Vec::with_capacity(2 * notes.len());
    for note in notes {
        // Velocity 0 would be a note-off in MIDI; the quietest audible note is velocity 1.
        let velocity = note.velocity.clamp(1, 127);
        events.push(Event {
            sample: to_sample(note.onset_s),
            is_on: 1,
            pitch: note.pitch,
            velocity,
        });
        events.push(Event {
            sample: to_sample(note.offset_s),
            is_on: 0,
            pitch: note.pitch,
            velocity: 0,
        });
    }
    events.sort_unstable();
    let last_event = events.last().map_or(0, |e| e.sample);
    let (tail_s, stop_when_silent) = match settings.tail {
        Tail::Fixed(s) => (s, false),
        Tail::UntilSilent { max_s } => (max_s, true),
    };
    let total = (last_event + to_sample(tail_s.max(0.0))) as usize;
    let silent_run = to_sample(SILENT_TAIL_S) as usize;

    let mut synth_settings = SynthesizerSettings::new(settings.synth_rate_hz as i32);
    synth_settings.block_size = settings.block_samples;
    synth_settings.maximum_polyphony = 256;
    // Effects are added afterwards, at the output rate (see `render_notes`).
    synth_settings.enable_reverb_and_chorus = false;
    let mut synth = Synthesizer::new(sound_font, &synth_settings)
        .map_err(|e| SynthError::Synthesizer(e.to_string()))?;
    synth.set_master_volume(MASTER_VOLUME);
    const CHANNEL: i32 = 0;
    const PROGRAM_CHANGE: i32 = 0xC0;
    synth.process_midi_message(CHANNEL, PROGRAM_CHANGE, settings.program as i32, 0);

    let block = settings.block_samples as u64;
    // Rendered in chunks of whole blocks through small stereo buffers, mixed to mono as it goes.
    let chunk = block as usize * 4096usize.div_ceil(block as usize);
    let (mut left, mut right) = (vec![0f32; chunk], vec![0f32; chunk]);
    let tail_step = block * 512u64.div_ceil(block);
    let mut mono: Vec<f32> = Vec::with_capacity(total);
    let mut next_event = 0;
    // Start of the current run of silent output, once past the last event.
    let mut silent_since: Option<usize> = None;
    while mono.len() < total {
        let rendered = mono.len() as u64;
        if stop_when_silent && next_event == events.len() {
            if let Some(start) = silent_since {
                if mono.len() - start >= silent_run {
                    break;
                }
            }
        }
        // Apply every event whose exact position is nearest to this block start.
        while next_event < events.len() && events[next_event].sample < rendered + block / 2 {
            let e = events[next_event];
            if e.is_on == 1 {
                synth.note_on(CHANNEL, e.pitch as i32, e.velocity as i32);
            } else {
                synth.note_off(CHANNEL, e.pitch as i32);
            }
            next_event += 1;
        }
        // Render up to the block holding the next event, in whole blocks so that events keep
        // falling on block starts.
        let stop = match events.get(next_event) {
            Some(e) => (e.sample + block / 2) / block * block,
            // In a tail that ends on silence: short steps, so the end is noticed soon.
            None if stop_when_silent => rendered + tail_step,
            None => total as u64,
        }
        .clamp(
            rendered + block,
            (rendered + chunk as u64).min(total as u64),
        );
        let n = (stop - rendered) as usize;
        synth.render(&mut left[..n], &mut right[..n]);
        let in_tail = next_event == events.len();
        for (l, r) in left[..n].iter().zip(&right[..n]) {
            let x = 0.5 * (l + r);
            if in_tail {
                if x.abs() >= SILENCE_LEVEL {
                    silent_since = None;
                } else if silent_since.is_none() {
                    silent_since = Some(mono.len());
                }
            }
            mono.push(x);
        }
    }
    Ok(mono)
}

/// Fails with a clear error when the SoundFont has no preset for `program` on bank 0
/// (rustysynth would silently play its first preset instead).
pub fn check_program(sound_font: &SoundFont, program: u8) -> Result<(), SynthError> {
    let found = sound_font
        .get_presets()
        .iter()
        .any(|p| p.get_bank_number() == 0 && p.get_patch_number() == program as i32);
    if found {
        Ok(())
    } else {
        Err(SynthError::MissingProgram { program })
    }
}

/// The level policy of rendered audio: no normalisation (loudness follows the velocities, as
/// with FluidSynth), but never clipping either. A render whose peak exceeds 0.999 is scaled
/// down to that peak, since clipping would add partials the labels don't have.
/// Returns the gain applied (1.0 when none).
pub fn fit_to_full_scale(audio: &mut [f32]) -> f32 {
    const MAX_PEAK: f32 = 0.999;
    let peak = audio.iter().fold(0f32, |m, x| m.max(x.abs()));
    if peak <= MAX_PEAK {
        return 1.0;
    }
    let gain = MAX_PEAK / peak;
    for x in audio.iter_mut() {
        *x *= gain;
    }
    gain
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loud_audio_is_scaled_under_full_scale_and_quiet_audio_is_left_alone() {
        let mut quiet = vec![0.5, -0.9, 0.2];
        assert_eq!(fit_to_full_scale(&mut quiet), 1.0);
        assert_eq!(quiet, [0.5, -0.9, 0.2]);
        let mut loud = vec![0.5, -2.0, 1.0];
        let gain = fit_to_full_scale(&mut loud);
        assert!((gain - 0.4995).abs() < 1e-6, "gain {gain}");
        // Scaled, not clipped: the shape is kept.
        assert!(
            (loud[1] + 0.999).abs() < 1e-6 && (loud[0] / loud[2] - 0.5).abs() < 1e-6,
            "{loud:?}"
        );
    }
}

//! Standard MIDI files through `midly`: reading notes (format 0 and 1, tempo changes, running
//! status, SMPTE timing, sustain pedal) and writing them with a chosen General MIDI program.
//!
//! Notes are read the way the transcriber's reference code (`parse_midi` of onsets-and-frames)
//! read them, since that produced the paper's labels: all tracks merged in time order; a note-on
//! with velocity 0 is a note-off; a note ends at the next event of the same key (its note-off,
//! or a new note-on of that key), and when the sustain pedal (CC64 >= 64) is down at that event,
//! at the next pedal release instead. A note left open ends at the file's last event.
//! Beyond the reference: notes on channel 10 (percussion, not pitched) are skipped. Format-2
//! files (independent sequences) are merged like format 1, as mido and pretty_midi do.

use std::path::Path;

use midly::num::{u15, u24, u28, u4, u7};
use midly::{Format, Header, MetaMessage, MidiMessage, Smf, Timing, TrackEvent, TrackEventKind};

use super::{check_note_times, read_file, FormatError, Note, NotesError};
use crate::fsutil::write_bytes_atomic;

/// MIDI channel 10, General MIDI's percussion channel, counted from 0.
const PERCUSSION_CHANNEL: u8 = 9;
/// The sustain pedal controller and the value from which it counts as down.
const SUSTAIN_CONTROLLER: u8 = 64;
const SUSTAIN_DOWN_FROM: u8 = 64;
/// Tempo a file has until its first tempo event: 120 beats per minute.
const DEFAULT_MICROSECONDS_PER_BEAT: u32 = 500_000;

/// Written files: 120 bpm and 1000 ticks per beat, so one tick is exactly 0.5 ms.
const WRITE_TICKS_PER_BEAT: u16 = 1000;
const WRITE_MICROSECONDS_PER_BEAT: u32 = 500_000;

#[derive(Debug, Clone, Copy, PartialEq)]
enum EventKind {
    Note { key: u8, velocity: u8 },
    SustainOn,
    SustainOff,
}

#[derive(Debug, Clone, Copy)]
struct TimedEvent {
    time_s: f64,
    kind: EventKind,
    /// The pedal state when a note event happens.
    sustain: bool,
}

/// Parses the bytes of a Standard MIDI file into notes, in onset order.
pub fn parse_midi(bytes: &[u8]) -> Result<Vec<Note>, FormatError> {
    check_chunks(bytes)?;
    let smf =
        Smf::parse(bytes).map_err(|e| FormatError::whole_file(format!("malformed MIDI: {e}")))?;
    let events = timed_events(&smf)?;
    let notes = pair_notes(&events);
    for note in &notes {
        check_note_times(note.onset_s, note.offset_s).map_err(FormatError::whole_file)?;
    }
    Ok(notes)
}

/// Reads a Standard MIDI file (`.mid`, `.midi`).
pub fn read_midi(path: &Path) -> Result<Vec<Note>, NotesError> {
    parse_midi(&read_file(path)?).map_err(|e| NotesError::format(path, e))
}

/// Walks the chunk structure before midly sees it, because midly silently drops a track cut
/// short or missing; a truncated label file must be an error, not fewer notes.
fn check_chunks(bytes: &[u8]) -> Result<(), FormatError> {
    if bytes.starts_with(b"RIFF") {
        // RIFF-wrapped MIDI (RMID): midly unwraps it and checks the inner file itself.
        return Ok(());
    }
    if !bytes.starts_with(b"MThd") {
        if b"MThd".starts_with(&bytes[..bytes.len().min(4)]) && !bytes.is_empty() {
            return Err(FormatError::whole_file(format!(
                "truncated MIDI file: only {} bytes",
                bytes.len()
            )));
        }
        let found = String::from_utf8_lossy(&bytes[..bytes.len().min(8)]).into_owned();
        return Err(FormatError::whole_file(format!(
            "not a Standard MIDI file (starts with {found:?}; expected \"MThd\")"
        )));
    }
    let read_u32 = |at: usize| {
        bytes
            .get(at..at + 4)
            .map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    };
    let header_len = read_u32(4)
        .ok_or_else(|| FormatError::whole_file("truncated MIDI file: header cut short"))?
        as usize;
    if header_len < 6 || bytes.len() < 8 + header_len {
        return Err(FormatError::whole_file(
            "truncated MIDI file: header cut short",
        ));
    }
    let declared_tracks = usize::from(u16::from_be_bytes([bytes[10], bytes[11]]));
    let mut at = 8 + header_len;
    let mut tracks = 0;
    // Fewer than 8 bytes left is padding some writers add, not a chunk.
    while bytes.len() - at >= 8 {
        let length = read_u32(at + 4).unwrap_or(0) as usize;
        let available = bytes.len() - at - 8;
        let is_track = &bytes[at..at + 4] == b"MTrk";
        if length > available {
            let what = if is_track {
                format!("track {}", tracks + 1)
            } else {
                "a chunk".to_string()
            };
            return Err(FormatError::whole_file(format!(
                "truncated MIDI file: {what} declares {length} bytes but only {available} remain"
            )));
        }
        tracks += usize::from(is_track);
        at += 8 + length;
    }
    if tracks < declared_tracks {
        return Err(FormatError::whole_file(format!(
            "truncated MIDI file: the header declares {declared_tracks} tracks, the file holds {tracks}"
        )));
    }
    Ok(())
}

/// All note and pedal events of all tracks in time order (ties: track order, then file order,
/// as mido's merge does), with times in seconds through the tempo map.
fn timed_events(smf: &Smf) -> Result<Vec<TimedEvent>, FormatError> {
    let mut merged: Vec<(u64, usize, &TrackEventKind)> = Vec::new();
    for (track_index, track) in smf.tracks.iter().enumerate() {
        let mut tick = 0u64;
        for event in track {
            tick += u64::from(event.delta.as_int());
            merged.push((tick, track_index, &event.kind));
        }
    }
    merged.sort_by_key(|&(tick, track, _)| (tick, track));

    let seconds_per_tick_at = |microseconds_per_beat: u32| -> Result<f64, FormatError> {
        match smf.header.timing {
            Timing::Metrical(ticks_per_beat) if ticks_per_beat.as_int() == 0 => {
                Err(FormatError::whole_file("malformed MIDI: 0 ticks per beat"))
            }
            Timing::Metrical(ticks_per_beat) => {
                Ok(f64::from(microseconds_per_beat) * 1e-6 / f64::from(ticks_per_beat.as_int()))
            }
            Timing::Timecode(_, 0) => Err(FormatError::whole_file(
                "malformed MIDI: 0 ticks per SMPTE frame",
            )),
            Timing::Timecode(fps, ticks_per_frame) => {
                Ok(1.0 / (f64::from(fps.as_f32()) * f64::from(ticks_per_frame)))
            }
        }
    };
    let mut seconds_per_tick = seconds_per_tick_at(DEFAULT_MICROSECONDS_PER_BEAT)?;
    let (mut last_tick, mut time_s) = (0u64, 0.0f64);
    let mut sustain = false;
    let mut events = Vec::new();
    for (tick, _, kind) in merged {
        time_s += (tick - last_tick) as f64 * seconds_per_tick;
        last_tick = tick;
        match *kind {
            // SMPTE timing fixes the tick length; tempo events only matter for metrical files.
            TrackEventKind::Meta(MetaMessage::Tempo(tempo))
                if matches!(smf.header.timing, Timing::Metrical(_)) =>
            {
                seconds_per_tick = seconds_per_tick_at(tempo.as_int())?;
            }
            TrackEventKind::Midi { channel, message } => {
                let kind = match message {
                    MidiMessage::Controller { controller, value }
                        if controller.as_int() == SUSTAIN_CONTROLLER =>
                    {
                        let down = value.as_int() >= SUSTAIN_DOWN_FROM;
                        if down == sustain {
                            continue;
                        }
                        sustain = down;
                        if down {
                            EventKind::SustainOn
                        } else {
                            EventKind::SustainOff
                        }
                    }
                    _ if channel.as_int() == PERCUSSION_CHANNEL => continue,
                    MidiMessage::NoteOn { key, vel } => EventKind::Note {
                        key: key.as_int(),
                        velocity: vel.as_int(),
                    },
                    MidiMessage::NoteOff { key, .. } => EventKind::Note {
                        key: key.as_int(),
                        velocity: 0,
                    },
                    _ => continue,
                };
                events.push(TimedEvent {
                    time_s,
                    kind,
                    sustain,
                });
            }
            _ => {}
        }
    }
    Ok(events)
}

/// The reference's pairing (see the module comment) in two backward passes instead of a scan
/// per note: the first finds, for each position, the next pedal release at or after it.
fn pair_notes(events: &[TimedEvent]) -> Vec<Note> {
    let Some(last) = events.len().checked_sub(1) else {
        return Vec::new();
    };
    let mut release_from = vec![last; events.len() + 1];
    for i in (0..events.len()).rev() {
        release_from[i] = if events[i].kind == EventKind::SustainOff {
            i
        } else {
            release_from[i + 1]
        };
    }
    let mut next_of_key = [None::<usize>; 128];
    let mut ends = vec![0.0f64; events.len()];
    for i in (0..events.len()).rev() {
        let EventKind::Note { key, velocity } = events[i].kind else {
            continue;
        };
        if velocity > 0 {
            // The next event of this key, or the file's last event (the note itself if last).
            let end = next_of_key[usize::from(key)].unwrap_or(last.max(i));
            let pedal_held = end != last
                && matches!(events[end].kind, EventKind::Note { .. })
                && events[end].sustain;
            let end = if pedal_held {
                release_from[end + 1]
            } else {
                end
            };
            ends[i] = events[end].time_s;
        }
        next_of_key[usize::from(key)] = Some(i);
    }
    events
        .iter()
        .zip(&ends)
        .filter_map(|(event, &offset_s)| match event.kind {
            EventKind::Note { key, velocity } if velocity > 0 => Some(Note {
                onset_s: event.time_s,
                offset_s,
                pitch: key,
                velocity,
            }),
            _ => None,
        })
        .collect()
}

/// How [`encode_midi_with`] writes a file: one melodic channel with one GM program, a fixed
/// tempo, and a tick resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MidiSettings {
    /// GM program, 0..=127 (0: Acoustic Grand Piano).
    pub program: u8,
    /// Channel index 0..=15 except 9 (percussion).
    pub channel: u8,
    /// Microseconds per quarter note, written as the file's tempo (500 000: 120 bpm).
    pub microseconds_per_beat: u32,
    /// Ticks per quarter note, 1..=32767.
    pub ticks_per_beat: u16,
}

impl Default for MidiSettings {
    /// 120 bpm, 1000 ticks per beat (0.5 ms per tick), program 0 on the first channel.
    fn default() -> Self {
        Self {
            program: 0,
            channel: 0,
            microseconds_per_beat: WRITE_MICROSECONDS_PER_BEAT,
            ticks_per_beat: WRITE_TICKS_PER_BEAT,
        }
    }
}

impl MidiSettings {
    /// Settings for `tempo_bpm` with the coarsest common resolution (960 ticks per beat, or
    /// finer for slow tempi) whose rounding keeps every event within `max_error_s` of its
    /// time: half a tick at most, so a tick of at most `2 · max_error_s`.
    pub fn for_tempo(program: u8, tempo_bpm: f64, max_error_s: f64) -> Result<Self, FormatError> {
        if !(tempo_bpm.is_finite() && (4.0..=1000.0).contains(&tempo_bpm)) {
            return Err(FormatError::whole_file(format!(
                "tempo {tempo_bpm} bpm is outside 4..=1000"
            )));
        }
        let microseconds_per_beat = (60e6 / tempo_bpm).round() as u32;
        let beat_s = f64::from(microseconds_per_beat) * 1e-6;
        let needed = (beat_s / (2.0 * max_error_s)).ceil().max(1.0);
        if needed > 32767.0 {
            return Err(FormatError::whole_file(format!(
                "at {tempo_bpm} bpm no MIDI resolution puts events within {max_error_s} s"
            )));
        }
        Ok(Self {
            program,
            channel: 0,
            microseconds_per_beat,
            ticks_per_beat: (needed as u16).max(960),
        })
    }

    /// Seconds per tick.
    pub fn tick_s(&self) -> f64 {
        f64::from(self.microseconds_per_beat) * 1e-6 / f64::from(self.ticks_per_beat)
    }
}

/// Encodes notes as a format-0 Standard MIDI file: 120 bpm, 1000 ticks per beat (0.5 ms per
/// tick), GM `program` (0..=127) on `channel` (0..=15 except 9, the percussion channel).
pub fn encode_midi(notes: &[Note], program: u8, channel: u8) -> Result<Vec<u8>, FormatError> {
    encode_midi_with(
        notes,
        &MidiSettings {
            program,
            channel,
            ..MidiSettings::default()
        },
    )
}

/// Encodes notes as a format-0 Standard MIDI file (one track) with `settings`: a tempo event,
/// a program change, then the notes, each event at its time rounded to the nearest tick.
/// Velocities of 0 are written as 1 (0 would read back as a note-off). At one tick the events
/// go: note-offs of notes that started earlier; then each note that starts and ends at that
/// tick, as a note-on and its note-off; then the note-ons of longer notes. So touching notes of
/// one key read back as they were, and a zero-length note (or one shorter than half a tick)
/// reads back with length 0 (see `notes` for the other formats). Overlapping notes of one key
/// cannot be told apart in MIDI and read back cut at the later onset.
pub fn encode_midi_with(notes: &[Note], settings: &MidiSettings) -> Result<Vec<u8>, FormatError> {
    let MidiSettings {
        program,
        channel,
        microseconds_per_beat,
        ticks_per_beat,
    } = *settings;
    let program = u7::try_from(program).ok_or_else(|| {
        FormatError::whole_file(format!("GM program {program} is outside 0..=127"))
    })?;
    if channel > 15 || channel == PERCUSSION_CHANNEL {
        return Err(FormatError::whole_file(format!(
            "MIDI channel index {channel} is not a melodic channel (0..=15, not 9)"
        )));
    }
    let ticks = u15::try_from(ticks_per_beat)
        .filter(|t| t.as_int() > 0)
        .ok_or_else(|| {
            FormatError::whole_file(format!(
                "{ticks_per_beat} ticks per beat is outside 1..=32767"
            ))
        })?;
    let tempo = u24::try_from(microseconds_per_beat)
        .filter(|t| t.as_int() > 0)
        .ok_or_else(|| {
            FormatError::whole_file(format!(
                "a tempo of {microseconds_per_beat} µs per beat does not fit MIDI's 24 bits"
            ))
        })?;
    let ticks_per_second = f64::from(ticks_per_beat) * 1e6 / f64::from(microseconds_per_beat);
    let to_tick = |time_s: f64| (time_s * ticks_per_second).round() as u64;
    // (tick, order at the tick, key, velocity); order 0 = off of an earlier note, 1 and 2 = on
    // and off of a zero-tick note, 3 = on of a longer note.
    let mut moments: Vec<(u64, u8, u8, u8)> = Vec::with_capacity(notes.len() * 2);
    for (index, note) in notes.iter().enumerate() {
        check_note_times(note.onset_s, note.offset_s)
            .map_err(|p| FormatError::whole_file(format!("note {index}: {p}")))?;
        if note.pitch > 127 {
            return Err(FormatError::whole_file(format!(
                "note {index}: pitch {} is outside 0..=127",
                note.pitch
            )));
        }
        let (on_tick, off_tick) = (to_tick(note.onset_s), to_tick(note.offset_s));
        let velocity = note.velocity.clamp(1, 127);
        if on_tick == off_tick {
            moments.push((on_tick, 1, note.pitch, velocity));
            moments.push((off_tick, 2, note.pitch, 0));
        } else {
            moments.push((on_tick, 3, note.pitch, velocity));
            moments.push((off_tick, 0, note.pitch, 0));
        }
    }
    moments.sort_by_key(|&(tick, order, _, _)| (tick, order));

    let channel = u4::from(channel);
    let mut track: Vec<TrackEvent> = vec![
        TrackEvent {
            delta: u28::from(0),
            kind: TrackEventKind::Meta(MetaMessage::Tempo(tempo)),
        },
        TrackEvent {
            delta: u28::from(0),
            kind: TrackEventKind::Midi {
                channel,
                message: MidiMessage::ProgramChange { program },
            },
        },
    ];
    let mut last_tick = 0u64;
    for (tick, order, key, velocity) in moments {
        let delta = u32::try_from(tick - last_tick)
            .ok()
            .and_then(u28::try_from)
            .ok_or_else(|| {
                FormatError::whole_file("a gap between notes exceeds MIDI's longest delta time")
            })?;
        last_tick = tick;
        let (key, vel) = (u7::from(key), u7::from(velocity));
        let message = if order % 2 == 1 {
            MidiMessage::NoteOn { key, vel }
        } else {
            MidiMessage::NoteOff {
                key,
                vel: u7::from(0),
            }
        };
        track.push(TrackEvent {
            delta,
            kind: TrackEventKind::Midi { channel, message },
        });
    }
    track.push(TrackEvent {
        delta: u28::from(0),
        kind: TrackEventKind::Meta(MetaMessage::EndOfTrack),
    });
    let smf = Smf {
        header: Header::new(Format::SingleTrack, Timing::Metrical(ticks)),
        tracks: vec![track],
    };
    let mut bytes = Vec::new();
    smf.write_std(&mut bytes)
        .map_err(|e| FormatError::whole_file(format!("encoding MIDI: {e}")))?;
    Ok(bytes)
}

/// Writes notes as a Standard MIDI file with `settings`, atomically.
pub fn write_midi_with(
    path: &Path,
    notes: &[Note],
    settings: &MidiSettings,
) -> Result<(), NotesError> {
    let bytes = encode_midi_with(notes, settings).map_err(|e| NotesError::format(path, e))?;
    write_bytes_atomic(path, &bytes).map_err(|e| NotesError::io(path, e))
}

/// Writes notes as a Standard MIDI file with GM `program` on channel 1, atomically.
pub fn write_midi(path: &Path, notes: &[Note], program: u8) -> Result<(), NotesError> {
    let bytes = encode_midi(notes, program, 0).map_err(|e| NotesError::format(path, e))?;
    write_bytes_atomic(path, &bytes).map_err(|e| NotesError::io(path, e))
}

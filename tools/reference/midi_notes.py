"""Reference MIDI -> notes, with the transcriber's `parse_midi` (onsets-and-frames, which the
paper's code used) run through mido, for tests/notes_midi_reference.rs.

Writes to tests/fixtures/notes/:
- reference_format1.mid: a format-1 file made here (tempo changes in track 0, two note tracks,
  sustain pedal, note-on velocity 0, re-struck keys, a note left open) and
  reference_format1.tsv: the reference's notes for it;
- maestro_sample_reference.tsv: the reference's notes for ../shared/data/maestro-sample/*.midi,
  when that file is present.

    python tools/reference/midi_notes.py
"""

from pathlib import Path

import mido
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "notes"


def parse_midi(path):
    """onsets-and-frames' parse_midi, verbatim apart from the return type."""
    midi = mido.MidiFile(path)
    time = 0
    sustain = False
    events = []
    for message in midi:
        time += message.time
        if message.type == "control_change" and message.control == 64 and (message.value >= 64) != sustain:
            sustain = message.value >= 64
            event_type = "sustain_on" if sustain else "sustain_off"
            event = dict(index=len(events), time=time, type=event_type, note=None, velocity=0)
            events.append(event)
        if "note" in message.type:
            velocity = message.velocity if message.type == "note_on" else 0
            event = dict(index=len(events), time=time, type="note", note=message.note, velocity=velocity, sustain=sustain)
            events.append(event)
    notes = []
    for i, onset in enumerate(events):
        if onset["velocity"] == 0:
            continue
        offset = next(n for n in events[i + 1 :] if n["note"] == onset["note"] or n is events[-1])
        if offset["sustain"] and offset is not events[-1]:
            offset = next(n for n in events[offset["index"] + 1 :] if n["type"] == "sustain_off" or n is events[-1])
        notes.append((onset["time"], offset["time"], onset["note"], onset["velocity"]))
    return notes


def write_tsv(path, notes):
    with open(path, "w") as f:
        f.write("# onset,offset,note,velocity\n")
        for onset, offset, note, velocity in notes:
            f.write(f"{onset:.6f}\t{offset:.6f}\t{note}\t{velocity}\n")


def make_format1(path):
    midi = mido.MidiFile(type=1, ticks_per_beat=480)
    tempo = mido.MidiTrack()
    tempo.append(mido.MetaMessage("set_tempo", tempo=500000, time=0))
    tempo.append(mido.MetaMessage("set_tempo", tempo=750000, time=960))  # 80 bpm from beat 2
    tempo.append(mido.MetaMessage("set_tempo", tempo=400000, time=1920))  # 150 bpm from beat 6
    tempo.append(mido.MetaMessage("end_of_track", time=0))
    piano = mido.MidiTrack()
    m = lambda kind, t, **kw: piano.append(mido.Message(kind, time=t, **kw))
    m("program_change", 0, program=0)
    m("note_on", 0, note=60, velocity=80)
    m("note_on", 240, note=64, velocity=70)
    m("note_on", 240, note=60, velocity=0)  # note-on velocity 0 = note-off
    m("control_change", 120, control=64, value=100)  # pedal down
    m("note_off", 360, note=64, velocity=40)  # released under the pedal -> extended
    m("note_on", 120, note=67, velocity=90)
    m("note_on", 240, note=67, velocity=60)  # re-struck while sounding
    m("control_change", 240, control=64, value=127)  # still down: no new event
    m("control_change", 480, control=64, value=10)  # pedal up
    m("note_off", 240, note=67, velocity=0)
    m("note_on", 480, note=72, velocity=50)
    m("note_off", 960, note=72, velocity=0)
    m("note_on", 0, note=48, velocity=30)  # left open: ends at the last event
    piano.append(mido.MetaMessage("end_of_track", time=0))
    bass = mido.MidiTrack()
    b = lambda kind, t, **kw: bass.append(mido.Message(kind, channel=1, time=t, **kw))
    b("note_on", 480, note=36, velocity=100)
    b("note_on", 1440, note=36, velocity=0)
    b("note_on", 0, note=38, velocity=100)
    b("note_off", 1920, note=38, velocity=0)
    bass.append(mido.MetaMessage("end_of_track", time=0))
    midi.tracks.extend([tempo, piano, bass])
    midi.save(path)


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    made = OUT / "reference_format1.mid"
    make_format1(made)
    write_tsv(OUT / "reference_format1.tsv", parse_midi(made))
    maestro = sorted((ROOT / ".." / "shared" / "data" / "maestro-sample").glob("*.midi"))
    if maestro:
        write_tsv(OUT / "maestro_sample_reference.tsv", parse_midi(maestro[0]))


if __name__ == "__main__":
    main()

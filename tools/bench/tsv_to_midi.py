"""Write MAPS-style TSV note lists as Standard MIDI files (format 0) for the `fluidsynth`
program, which renders MIDI only. Pure Python, no dependencies.

usage: tsv_to_midi.py PROGRAM OUT_DIR FILE.tsv...

One track: a program change to PROGRAM on channel 0, then the notes. 1000 ticks per quarter
at 120 bpm = 0.5 ms per tick, so onsets move by at most 0.25 ms. Note-offs precede note-ons
at the same tick (a re-struck key sounds again), as mtosi's renderer orders them.
"""
import os
import struct
import sys

TICKS_PER_QUARTER = 1000
TEMPO_US_PER_QUARTER = 500_000
TICKS_PER_S = TICKS_PER_QUARTER * 1_000_000 / TEMPO_US_PER_QUARTER


def var_len(value):
    out = [value & 0x7F]
    value >>= 7
    while value:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    return bytes(reversed(out))


def read_tsv(path):
    notes = []
    with open(path) as f:
        next(f)  # header line
        for line in f:
            fields = line.split()
            if len(fields) >= 3:
                onset, offset, pitch = float(fields[0]), float(fields[1]), int(round(float(fields[2])))
                velocity = int(round(float(fields[3]))) if len(fields) > 3 else 64
                notes.append((onset, offset, pitch, max(1, min(127, velocity))))
    return notes


def midi_bytes(notes, program):
    events = []  # (tick, is_on, pitch, velocity)
    for onset, offset, pitch, velocity in notes:
        events.append((round(onset * TICKS_PER_S), 1, pitch, velocity))
        events.append((round(offset * TICKS_PER_S), 0, pitch, 0))
    events.sort()
    track = bytearray()
    track += b"\x00\xff\x51\x03" + TEMPO_US_PER_QUARTER.to_bytes(3, "big")
    track += bytes([0, 0xC0, program])
    now = 0
    for tick, is_on, pitch, velocity in events:
        track += var_len(tick - now)
        track += bytes([0x90 if is_on else 0x80, pitch, velocity if is_on else 0])
        now = tick
    track += b"\x00\xff\x2f\x00"
    header = b"MThd" + struct.pack(">IHHH", 6, 0, 1, TICKS_PER_QUARTER)
    return header + b"MTrk" + struct.pack(">I", len(track)) + bytes(track)


def main():
    program, out_dir, paths = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
    os.makedirs(out_dir, exist_ok=True)
    for path in paths:
        name = os.path.splitext(os.path.basename(path))[0]
        with open(os.path.join(out_dir, f"{name}_prog{program}.mid"), "wb") as f:
            f.write(midi_bytes(read_tsv(path), program))


if __name__ == "__main__":
    main()

"""Reference piano-roll labels, computed with numpy exactly as PROTOCOL.md states them (the
transcriber's code), for tests/notes_roll_reference.rs.

Writes tests/fixtures/notes/roll_reference.tsv (notes on half-frame and random times, pitches
inside and outside 21..108, zero-length, overlapping and past-the-end notes, in a fixed random
order) and roll_reference_codes.npy (float32, frames x 88) for a recording of SAMPLES samples.

    python tools/reference/roll_labels.py
"""

from pathlib import Path

import numpy as np

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "notes"
SAMPLE_RATE, HOP_LENGTH, MIN_MIDI, MAX_MIDI = 16000, 512, 21, 108
SAMPLES = 40 * HOP_LENGTH + 100  # 41 frames


def label(notes, audio_length):
    """The reference: left/onset_right/frame_right/offset_right, 3/2/1, file order."""
    n_keys = MAX_MIDI - MIN_MIDI + 1
    n_steps = (audio_length - 1) // HOP_LENGTH + 1
    codes = np.zeros((n_steps, n_keys), dtype=np.uint8)
    for onset, offset, note, _velocity in notes:
        note = int(note)
        if not MIN_MIDI <= note <= MAX_MIDI:
            continue
        left = int(round(onset * SAMPLE_RATE / HOP_LENGTH))
        onset_right = min(n_steps, left + 1)
        frame_right = int(round(offset * SAMPLE_RATE / HOP_LENGTH))
        frame_right = min(n_steps, frame_right)
        offset_right = min(n_steps, frame_right + 1)
        f = note - MIN_MIDI
        codes[left:onset_right, f] = 3
        codes[onset_right:frame_right, f] = 2
        codes[frame_right:offset_right, f] = 1
    return codes


def main():
    rng = np.random.default_rng(20201)
    notes = []
    for _ in range(120):
        half_frames = rng.integers(0, 90)
        onset = half_frames * HOP_LENGTH / SAMPLE_RATE / 2 if rng.random() < 0.5 else rng.uniform(0, 1.5)
        duration = rng.choice([0.0, HOP_LENGTH / SAMPLE_RATE / 2, rng.uniform(0, 0.6)])
        pitch = int(rng.integers(15, 115)) if rng.random() < 0.2 else int(rng.integers(55, 65))
        notes.append((round(onset, 6), round(onset + duration, 6), pitch, int(rng.integers(1, 128))))
    OUT.mkdir(parents=True, exist_ok=True)
    with open(OUT / "roll_reference.tsv", "w") as f:
        f.write("# onset,offset,note,velocity\n")
        for onset, offset, pitch, velocity in notes:
            f.write(f"{onset:.6f}\t{offset:.6f}\t{pitch}\t{velocity}\n")
    # Label from the text as written, so both sides start from the same decimal numbers.
    table = np.loadtxt(OUT / "roll_reference.tsv", delimiter="\t", ndmin=2)
    np.save(OUT / "roll_reference_codes.npy", label(table, SAMPLES).astype(np.float32))


if __name__ == "__main__":
    main()

"""Writes the malformed-input corpus of tests/malformed_inputs.rs into tests/fixtures/malformed/.
Each file is broken in one named way; the test lists the problem each must be reported with.

    python tools/reference/malformed_corpus.py
"""

import io
import json
import struct
from pathlib import Path

import numpy as np
import soundfile

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "fixtures" / "malformed"


def wav_bytes(format_tag=1, bits=16, channels=1, rate=16000, frames=400):
    data = (np.sin(np.arange(frames * channels) * 0.05) * 8000).astype("<i2").tobytes() if bits == 16 else bytes(frames * channels * bits // 8)
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", format_tag, channels, rate, rate * block, block, bits)
    return b"RIFF" + struct.pack("<I", 4 + 8 + len(fmt) + 8 + len(data)) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(data)) + data


def flac_bytes():
    buffer = io.BytesIO()
    t = np.arange(8000) / 16000
    soundfile.write(buffer, 0.5 * np.sin(2 * np.pi * 440 * t), 16000, format="FLAC", subtype="PCM_16")
    return buffer.getvalue()


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    files = {}
    wav = wav_bytes()
    files["truncated_data.wav"] = wav[: len(wav) - 301]
    files["truncated_header.wav"] = wav[:30]
    files["wrong_magic.wav"] = b"This is a text file, not audio.\n"
    files["mp3_in_wav.wav"] = wav_bytes(format_tag=0x55)
    files["float64.wav"] = wav_bytes(format_tag=3, bits=64, frames=10)
    files["zero_channels.wav"] = wav_bytes(channels=0, frames=0)
    flac = flac_bytes()
    files["truncated.flac"] = flac[: len(flac) // 2]
    files["truncated_header.flac"] = flac[:20]
    files["wrong_magic.flac"] = b"OggS" + bytes(60)
    midi = (ROOT / "tests" / "fixtures" / "notes" / "reference_format1.mid").read_bytes()
    files["truncated.mid"] = midi[: len(midi) - 20]
    files["missing_track.mid"] = midi[:10] + struct.pack(">H", 5) + midi[12:]
    files["wrong_magic.mid"] = b"RIFX" + bytes(40)
    files["zero_ticks_per_beat.mid"] = midi[:12] + b"\x00\x00" + midi[14:]
    files["no_notes.jams"] = json.dumps({"annotations": [{"namespace": "chord", "data": [{"time": 0.0, "duration": 2.0, "value": "G:maj", "confidence": None}]}], "file_metadata": {"duration": 2.0}}).encode()
    files["not_json.jams"] = b'{"annotations": [{"namespace": "note_midi", "data": ['
    files["text_pitch.jams"] = json.dumps({"annotations": [{"namespace": "note_midi", "data": [{"time": 0.5, "duration": 0.5, "value": "E2", "confidence": None}]}]}).encode()
    header = b"# onset,offset,note,velocity\n"
    files["text_in_number.tsv"] = header + b"0.5\t1.0\t60\t80\n0.75\tlater\t62\t80\n"
    files["negative_duration.tsv"] = header + b"0.5\t1.0\t60\t80\n2.0\t1.5\t62\t80\n"
    files["nan.tsv"] = header + b"0.5\tnan\t60\t80\n"
    files["pitch_out_of_range.tsv"] = header + b"0.5\t1.0\t128\t80\n"
    files["not_utf8.tsv"] = header + b"0.5\t1.0\t\xff\xfe\t80\n"
    files["text_in_number.txt"] = b"OnsetTime\tOffsetTime\tMidiPitch\n0.5\t1.0\tC4\n"
    for name, content in files.items():
        (OUT / name).write_bytes(content)


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# Writes the lossy-codec fixtures of tests/audio_codecs.rs with ffmpeg (Debian's `ffmpeg`):
# a 1.5 s 44.1 kHz stereo tone pair (440 Hz left, 660 Hz right, amplitude 0.5 each) as MP3
# (LAME, with its Xing/LAME header, so the decoder trims its delay), Ogg Vorbis and AAC in M4A
# (moov atom at the end, as ffmpeg writes it by default).
set -euo pipefail
out="$(dirname "$0")/../../tests/fixtures/audio"
src=$(mktemp --suffix .wav)
trap 'rm -f "$src"' EXIT
ffmpeg -loglevel error -y -f lavfi -i "sine=frequency=440:sample_rate=44100:duration=1.5" \
    -f lavfi -i "sine=frequency=660:sample_rate=44100:duration=1.5" \
    -filter_complex "[0:a][1:a]join=inputs=2:channel_layout=stereo,volume=4.0" -c:a pcm_s16le "$src"
ffmpeg -loglevel error -y -i "$src" -c:a libmp3lame -b:a 96k "$out/tone_44k1_stereo.mp3"
ffmpeg -loglevel error -y -i "$src" -c:a libvorbis -q:a 3 "$out/tone_44k1_stereo.ogg"
ffmpeg -loglevel error -y -i "$src" -c:a aac -b:a 96k "$out/tone_44k1_stereo.m4a"
# FLAC of the same tones, long enough for the network (the older FLAC fixtures are 50 ms).
ffmpeg -loglevel error -y -i "$src" -c:a flac "$out/tone_44k1_stereo_16bit.flac"

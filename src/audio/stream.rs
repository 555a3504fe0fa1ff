//! Decoding in pieces: every format is read block by block from any `Read`er, so a file is
//! never held whole in memory — neither its bytes nor its samples. [`stream_mono`] chains a
//! decoder, the mix to mono and a streaming resampler and hands the caller pieces of mono
//! audio at the model's rate; [`super::decode`] collects the same blocks for whole-file use.
//!
//! WAV and FLAC keep their own readers (`hound`, `claxon`; their malformed-input guarantees
//! are tested in `tests/malformed_inputs.rs`), MP3, Ogg Vorbis and AAC/M4A go through
//! `symphonia` (pure Rust). Why not symphonia for all five: see BENCHMARKS.md, "Audio
//! decoding".

use std::fs::File;
use std::io::{BufReader, Cursor, Read, Seek, SeekFrom};
use std::path::Path;

use symphonia::core::io::MediaSource;

use super::resample::StreamingResampler;
use super::wav::{header_error, sample_error, widen_valid_bits_to_container};
use super::{first_non_finite, sniff_format, AudioError, AudioFormat, DecodeError};

/// Frames per block handed on by the WAV reader (and the most any decoder hands on at once,
/// bar the block sizes of the file's own format, which each format bounds).
const BLOCK_FRAMES: usize = 8192;

/// Bytes read from the start of a file to recognise its format (and for WAV, to patch the
/// `fmt ` chunk, see [`widen_valid_bits_to_container`]).
const PREFIX_BYTES: usize = 64 * 1024;

/// Sample rates [`stream_mono`] accepts: telephone audio to studio masters.
pub const SAMPLE_RATES_HZ: std::ops::RangeInclusive<u32> = 4_000..=768_000;

/// What a decoder announces before its first block.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamFormat {
    pub format: AudioFormat,
    pub sample_rate_hz: u32,
    pub channel_count: usize,
}

/// What [`stream_mono`] read: the file's own format and how much audio it held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamSummary {
    pub source: StreamFormat,
    /// Frames (samples per channel) decoded from the file.
    pub source_frames: u64,
    /// Mono samples handed to the sink, at the target rate.
    pub output_samples: u64,
}

/// Decodes the bytes of a seekable `source` (of which `prefix` are the first), calling
/// `on_format` once and then `on_block` with interleaved samples in [-1, 1]. Only MP4 seeks
/// (its index, the `moov` atom, is often at the end); the others read straight through.
pub fn decode_stream<S: MediaSource + 'static>(
    prefix: &[u8],
    source: S,
    on_format: &mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let format = sniff_format(prefix)?;
    match format {
        AudioFormat::Wav => decode_wav_stream(
            prefix,
            BufReader::with_capacity(1 << 16, source),
            on_format,
            on_block,
        ),
        AudioFormat::Flac => decode_flac_stream(
            BufReader::with_capacity(1 << 16, source),
            on_format,
            on_block,
        ),
        AudioFormat::Mp4 => {
            let mut source = source;
            let edit = super::mp4::read_edit_list(&mut source);
            source
                .seek(SeekFrom::Start(0))
                .map_err(|e| DecodeError::Malformed {
                    format: format.name(),
                    detail: format!("seeking back to its start: {e}"),
                })?;
            super::compressed::decode(format, Box::new(source), edit, on_format, on_block)
        }
        AudioFormat::Mp3 | AudioFormat::Ogg | AudioFormat::Adts => {
            super::compressed::decode(format, Box::new(source), None, on_format, on_block)
        }
    }
}

/// Opens `path` and decodes it block by block (see [`decode_stream`]).
pub fn stream_file(
    path: &Path,
    on_format: &mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
) -> Result<(), AudioError> {
    let io_error = |source| AudioError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(io_error)?;
    let mut prefix = Vec::with_capacity(PREFIX_BYTES);
    (&mut file)
        .take(PREFIX_BYTES as u64)
        .read_to_end(&mut prefix)
        .map_err(io_error)?;
    // The decoder reads the file from its start again.
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;
    decode_stream(&prefix, file, on_format, on_block).map_err(|source| AudioError::Decode {
        path: path.to_path_buf(),
        source,
    })
}

/// Interleaved samples the decoding thread of [`stream_mono`] gathers before handing them on:
/// few enough hand-offs (one per 0.7 s of 44.1 kHz stereo) that the channel costs nothing.
const HANDOFF_SAMPLES: usize = 64 * 1024;

/// Hand-offs in flight between the decoding thread and the caller: 16 MB at most, 4 M samples
/// (260 s of 16 kHz mono, 47 s of 44.1 kHz stereo). More than one CQT span of audio (39 s), so
/// the decoder runs on while the caller computes a span instead of starting afterwards.
const HANDOFF_DEPTH: usize = 64;

/// What the decoding thread of [`stream_mono`] hands the caller, in the file's order.
enum Decoded {
    /// The file's format, checked, and the resampler made for it.
    Format(StreamFormat, Box<StreamingResampler>),
    /// Whole frames of interleaved samples.
    Samples(Vec<f32>),
}

/// Streams `path` as mono audio at `target_rate_hz`: each decoded block is mixed to mono (mean
/// of the channels), resampled in pieces, and handed to `sink`. The pieces joined are exactly
/// what [`super::load_mono`] returns for the file. A non-finite sample is an error naming its
/// position. Returns what was read.
///
/// The decoder runs on a thread of its own, a few hundred milliseconds of audio ahead (the
/// channel between them is bounded); mixing, resampling and `sink` run on the caller's, so
/// decoding overlaps whatever `sink` does (the CQT, for `mtosi transcribe`).
pub fn stream_mono<E: From<AudioError>>(
    path: &Path,
    target_rate_hz: u32,
    sink: &mut dyn FnMut(&[f32]) -> Result<(), E>,
) -> Result<StreamSummary, E> {
    let (sender, receiver) = std::sync::mpsc::sync_channel::<Decoded>(HANDOFF_DEPTH);
    std::thread::scope(|scope| {
        let decoder = scope.spawn(move || decode_for_stream_mono(path, target_rate_hz, sender));
        let mut consumer = MonoConsumer {
            path,
            source: None,
            source_frames: 0,
            output_samples: 0,
            mono: Vec::new(),
        };
        // Stops at the caller's first error, hanging up: the decoder then stops at its next
        // hand-off, and its own error (a hang-up, or a fault later in the file) is dropped.
        let consumed = receiver
            .iter()
            .try_for_each(|message| consumer.take(message, sink));
        drop(receiver);
        let decoded = decoder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        consumed?;
        decoded?;
        consumer.finish(sink)
    })
}

/// The decoding thread of [`stream_mono`]: checks the format, then hands on batches of whole
/// frames (the last partial batch also when decoding fails, so that an error in an earlier
/// sample is still the one reported).
fn decode_for_stream_mono(
    path: &Path,
    target_rate_hz: u32,
    sender: std::sync::mpsc::SyncSender<Decoded>,
) -> Result<(), AudioError> {
    let mut batch = Vec::new();
    // Only for the error of a hang-up, which the caller drops for its own.
    let format_name = std::cell::Cell::new("audio");
    let hung_up = || DecodeError::Malformed {
        format: format_name.get(),
        detail: "stopped by the consumer".into(),
    };
    let result = stream_file(
        path,
        &mut |format| {
            // A rate field set to a few Hz would make the resampled output thousands of times
            // longer than the file: refuse rates no recording uses.
            if !SAMPLE_RATES_HZ.contains(&format.sample_rate_hz) {
                return Err(DecodeError::Unsupported {
                    format: format.format.name(),
                    detail: format!(
                        "sample rate {} Hz (mtosi reads {} to {} Hz)",
                        format.sample_rate_hz,
                        SAMPLE_RATES_HZ.start(),
                        SAMPLE_RATES_HZ.end()
                    ),
                });
            }
            let resampler = StreamingResampler::new(format.sample_rate_hz, target_rate_hz)
                .map_err(|detail| DecodeError::Unsupported {
                    format: format.format.name(),
                    detail,
                })?;
            format_name.set(format.format.name());
            sender
                .send(Decoded::Format(format, Box::new(resampler)))
                .map_err(|_| hung_up())
        },
        &mut |block| {
            batch.extend_from_slice(block);
            if batch.len() < HANDOFF_SAMPLES {
                return Ok(());
            }
            let full = std::mem::replace(&mut batch, Vec::with_capacity(2 * HANDOFF_SAMPLES));
            sender.send(Decoded::Samples(full)).map_err(|_| hung_up())
        },
    );
    if !batch.is_empty() {
        // A hang-up here means the caller already has its own error.
        let _ = sender.send(Decoded::Samples(batch));
    }
    result
}

/// The caller's half of [`stream_mono`]: checks, mixes and resamples what the decoder hands on.
struct MonoConsumer<'p> {
    path: &'p Path,
    source: Option<(StreamFormat, Box<StreamingResampler>)>,
    source_frames: u64,
    output_samples: u64,
    mono: Vec<f32>,
}

impl MonoConsumer<'_> {
    fn malformed(&self, format: StreamFormat, detail: String) -> AudioError {
        AudioError::Decode {
            path: self.path.to_path_buf(),
            source: DecodeError::Malformed {
                format: format.format.name(),
                detail,
            },
        }
    }

    fn take<E: From<AudioError>>(
        &mut self,
        message: Decoded,
        sink: &mut dyn FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<(), E> {
        let block = match message {
            Decoded::Format(format, resampler) => {
                self.source = Some((format, resampler));
                return Ok(());
            }
            Decoded::Samples(block) => block,
        };
        let format = self
            .source
            .as_ref()
            .expect("the format comes before the first block")
            .0;
        let channels = format.channel_count;
        if let Some(bad) = first_non_finite(&block) {
            let frame = self.source_frames + (bad / channels) as u64;
            let detail = format!(
                "sample {} of channel {} is {}, not a finite number",
                frame,
                bad % channels,
                block[bad]
            );
            return Err(self.malformed(format, detail).into());
        }
        self.source_frames += (block.len() / channels) as u64;
        mix_to_mono_into(&block, channels, &mut self.mono);
        let (_, resampler) = self.source.as_mut().expect("checked above");
        let mut pushed = Ok(());
        let output_samples = &mut self.output_samples;
        let resampled = resampler.push(&self.mono, &mut |piece| {
            *output_samples += piece.len() as u64;
            if pushed.is_ok() {
                pushed = sink(piece);
            }
        });
        if let Err(detail) = resampled {
            return Err(self.malformed(format, detail).into());
        }
        pushed
    }

    /// Flushes the resampler once the decoder has finished.
    fn finish<E: From<AudioError>>(
        self,
        sink: &mut dyn FnMut(&[f32]) -> Result<(), E>,
    ) -> Result<StreamSummary, E> {
        let (source, resampler) = self
            .source
            .expect("a decoder that succeeds announced its format");
        let mut output_samples = self.output_samples;
        let mut pushed = Ok(());
        resampler
            .finish(&mut |piece| {
                output_samples += piece.len() as u64;
                if pushed.is_ok() {
                    pushed = sink(piece);
                }
            })
            .map_err(|problem| AudioError::Resample {
                path: self.path.to_path_buf(),
                problem,
            })?;
        pushed?;
        Ok(StreamSummary {
            source,
            source_frames: self.source_frames,
            output_samples,
        })
    }
}

/// Mean of the channels of each interleaved frame, into `out` (cleared first).
pub fn mix_to_mono_into(interleaved: &[f32], channels: usize, out: &mut Vec<f32>) {
    out.clear();
    if channels == 1 {
        out.extend_from_slice(interleaved);
        return;
    }
    let scale = 1.0 / channels as f32;
    out.extend(
        interleaved
            .chunks_exact(channels)
            .map(|frame| frame.iter().sum::<f32>() * scale),
    );
}

pub(super) fn decode_wav_stream<R: Read>(
    prefix: &[u8],
    reader: R,
    on_format: &mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    const FORMAT: &str = "WAV";
    // Patch the header if the fmt chunk asks for it; the patched prefix replaces the original.
    let patched = widen_valid_bits_to_container(prefix);
    let skip = if patched.is_some() { prefix.len() } else { 0 };
    let mut rest = reader;
    if skip > 0 {
        std::io::copy(&mut (&mut rest).take(skip as u64), &mut std::io::sink()).map_err(|e| {
            DecodeError::Malformed {
                format: FORMAT,
                detail: e.to_string(),
            }
        })?;
    }
    let head = Cursor::new(patched.unwrap_or_default());
    let mut wav = hound::WavReader::new(head.chain(rest)).map_err(header_error)?;
    let spec = wav.spec();
    if spec.channels == 0 {
        return Err(DecodeError::Malformed {
            format: FORMAT,
            detail: "zero channels".into(),
        });
    }
    if spec.sample_rate == 0 {
        return Err(DecodeError::Malformed {
            format: FORMAT,
            detail: "sample rate 0 Hz".into(),
        });
    }
    let channels = usize::from(spec.channels);
    on_format(StreamFormat {
        format: AudioFormat::Wav,
        sample_rate_hz: spec.sample_rate,
        channel_count: channels,
    })?;
    let claimed = wav.len() as usize;
    let mut block = Vec::with_capacity(BLOCK_FRAMES * channels);
    let mut seen = 0usize;
    let mut flush = |block: &mut Vec<f32>, last: bool| -> Result<(), DecodeError> {
        if block.len() >= BLOCK_FRAMES * channels || (last && !block.is_empty()) {
            on_block(block)?;
            block.clear();
        }
        Ok(())
    };
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Float, 32) => {
            for sample in wav.samples::<f32>() {
                let value = sample.map_err(|e| sample_error(e, claimed))?;
                if !value.is_finite() {
                    return Err(DecodeError::Malformed {
                        format: FORMAT,
                        detail: format!("sample {seen} is not a finite number"),
                    });
                }
                block.push(value);
                seen += 1;
                flush(&mut block, false)?;
            }
        }
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 1.0 / (1u64 << (bits - 1)) as f64;
            for sample in wav.samples::<i32>() {
                let value = sample.map_err(|e| sample_error(e, claimed))?;
                block.push((f64::from(value) * scale) as f32);
                flush(&mut block, false)?;
            }
        }
        (format, bits) => {
            return Err(DecodeError::Unsupported {
                format: FORMAT,
                detail: format!("{bits}-bit {format:?} samples"),
            })
        }
    }
    flush(&mut block, true)
}

pub(super) fn decode_flac_stream<R: Read>(
    reader: R,
    on_format: &mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    use super::flac::{flac_error, FORMAT};
    let mut flac = claxon::FlacReader::new(reader).map_err(|e| flac_error(e, "its metadata"))?;
    let info = flac.streaminfo();
    if info.channels == 0 || info.sample_rate == 0 {
        return Err(DecodeError::Malformed {
            format: FORMAT,
            detail: format!("{} channels at {} Hz", info.channels, info.sample_rate),
        });
    }
    let channels = info.channels as usize;
    on_format(StreamFormat {
        format: AudioFormat::Flac,
        sample_rate_hz: info.sample_rate,
        channel_count: channels,
    })?;
    let scale = 1.0 / (1u64 << (info.bits_per_sample.clamp(1, 32) - 1)) as f64;
    let claimed = info
        .samples
        .map(|frames| frames.saturating_mul(info.channels as u64));
    let mut decoded = 0u64;
    let mut blocks = flac.blocks();
    let mut buffer = Vec::new();
    let mut interleaved = Vec::new();
    loop {
        let block = match blocks.read_next_or_eof(buffer) {
            Ok(Some(block)) => block,
            Ok(None) => break,
            Err(e) => return Err(flac_error(e, "an audio frame")),
        };
        if block.channels() as usize != channels {
            return Err(DecodeError::Malformed {
                format: FORMAT,
                detail: format!(
                    "a frame has {} channels, STREAMINFO {channels}",
                    block.channels()
                ),
            });
        }
        interleaved.clear();
        let to_f32 = |s: i32| (f64::from(s) * scale) as f32;
        if channels == 1 {
            interleaved.extend(block.channel(0).iter().map(|&s| to_f32(s)));
        } else {
            // Channel slices, not `block.sample` (a bounds check and a multiply per sample).
            let planes: Vec<&[i32]> = (0..channels as u32).map(|ch| block.channel(ch)).collect();
            for i in 0..block.duration() as usize {
                interleaved.extend(planes.iter().map(|plane| to_f32(plane[i])));
            }
        }
        decoded += interleaved.len() as u64;
        on_block(&interleaved)?;
        buffer = block.into_buffer();
    }
    if let Some(claimed) = claimed {
        if decoded < claimed {
            return Err(DecodeError::Truncated {
                format: FORMAT,
                detail: format!("{decoded} of the {claimed} samples STREAMINFO announces"),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 16-bit stereo WAV of `frames` frames at 44.1 kHz.
    fn long_wav(dir: &Path, frames: usize) -> std::path::PathBuf {
        let path = dir.join("long.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut wav = hound::WavWriter::create(&path, spec).unwrap();
        for i in 0..2 * frames {
            wav.write_sample(((i * 37) % 2000) as i16 - 1000).unwrap();
        }
        wav.finalize().unwrap();
        path
    }

    #[test]
    fn the_sinks_error_stops_the_decoding_thread_and_is_the_one_returned() {
        let dir = tempfile::tempdir().unwrap();
        // Stereo: twice what the channel holds, so the decoder must see the hang-up.
        let path = long_wav(dir.path(), HANDOFF_SAMPLES * HANDOFF_DEPTH);
        let mut calls = 0;
        let result = stream_mono::<AudioError>(&path, 16_000, &mut |_| {
            calls += 1;
            Err(AudioError::Resample {
                path: "sink".into(),
                problem: "enough".into(),
            })
        });
        assert!(
            matches!(&result, Err(AudioError::Resample { problem, .. }) if problem == "enough"),
            "{result:?}"
        );
        assert_eq!(calls, 1);
    }

    #[test]
    fn pieces_through_the_decoding_thread_are_the_whole_files_mix_resampled() {
        let dir = tempfile::tempdir().unwrap();
        let frames = 3 * HANDOFF_SAMPLES + 123;
        let path = long_wav(dir.path(), frames);
        let audio = crate::audio::read_audio(&path).unwrap();
        let whole = crate::audio::resample(&audio.mix_to_mono(), 44_100, 16_000).unwrap();
        let mut joined = Vec::new();
        let summary = stream_mono::<AudioError>(&path, 16_000, &mut |piece| {
            joined.extend_from_slice(piece);
            Ok(())
        })
        .unwrap();
        assert_eq!(summary.source_frames as usize, frames);
        assert_eq!(summary.output_samples as usize, whole.len());
        assert!(
            joined == whole,
            "the streamed samples differ from the whole file's"
        );
    }
}

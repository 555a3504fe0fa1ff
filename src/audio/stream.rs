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
use super::{sniff_format, AudioError, AudioFormat, DecodeError};

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
            decode_symphonia_stream(format, Box::new(source), edit, on_format, on_block)
        }
        AudioFormat::Mp3 | AudioFormat::Ogg | AudioFormat::Adts => {
            decode_symphonia_stream(format, Box::new(source), None, on_format, on_block)
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

/// Streams `path` as mono audio at `target_rate_hz`: each decoded block is mixed to mono (mean
/// of the channels), resampled in pieces, and handed to `sink`. The pieces joined are exactly
/// what [`super::load_mono`] returns for the file. A non-finite sample is an error naming its
/// position. Returns what was read.
pub fn stream_mono<E: From<AudioError>>(
    path: &Path,
    target_rate_hz: u32,
    sink: &mut dyn FnMut(&[f32]) -> Result<(), E>,
) -> Result<StreamSummary, E> {
    struct State {
        source: Option<StreamFormat>,
        resampler: Option<StreamingResampler>,
        source_frames: u64,
    }
    let state = std::cell::RefCell::new(State {
        source: None,
        resampler: None,
        source_frames: 0,
    });
    let mut output_samples = 0u64;
    let mut mono = Vec::new();
    // The sink's error cannot cross the decoder; park it and stop the decoder.
    let mut sink_error: Option<E> = None;
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
            let mut state = state.borrow_mut();
            state.source = Some(format);
            state.resampler = Some(resampler);
            Ok(())
        },
        &mut |block| {
            let mut state = state.borrow_mut();
            let format = state
                .source
                .expect("the format comes before the first block");
            let channels = format.channel_count;
            if let Some(bad) = block.iter().position(|s| !s.is_finite()) {
                let frame = state.source_frames + (bad / channels) as u64;
                return Err(DecodeError::Malformed {
                    format: format.format.name(),
                    detail: format!(
                        "sample {} of channel {} is {}, not a finite number",
                        frame,
                        bad % channels,
                        block[bad]
                    ),
                });
            }
            state.source_frames += (block.len() / channels) as u64;
            mix_to_mono_into(block, channels, &mut mono);
            let resampler = state.resampler.as_mut().expect("made with the format");
            let mut pushed = Ok(());
            resampler
                .push(&mono, &mut |piece| {
                    output_samples += piece.len() as u64;
                    if pushed.is_ok() {
                        pushed = sink(piece);
                    }
                })
                .map_err(|detail| DecodeError::Malformed {
                    format: format.format.name(),
                    detail,
                })?;
            pushed.map_err(|e| {
                sink_error = Some(e);
                DecodeError::Malformed {
                    format: format.format.name(),
                    detail: "stopped by the consumer".into(),
                }
            })
        },
    );
    if let Some(e) = sink_error {
        return Err(e);
    }
    result?;
    let state = state.into_inner();
    let source = state
        .source
        .expect("a decoder that succeeds announced its format");
    let mut pushed = Ok(());
    state
        .resampler
        .expect("made with the format")
        .finish(&mut |piece| {
            output_samples += piece.len() as u64;
            if pushed.is_ok() {
                pushed = sink(piece);
            }
        })
        .map_err(|problem| AudioError::Resample {
            path: path.to_path_buf(),
            problem,
        })?;
    pushed?;
    Ok(StreamSummary {
        source,
        source_frames: state.source_frames,
        output_samples,
    })
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
        for i in 0..block.duration() {
            for ch in 0..channels as u32 {
                interleaved.push((f64::from(block.sample(ch, i)) * scale) as f32);
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

/// `edit`: an MP4 edit list, applied to the decoded frames (symphonia 0.5 ignores it).
fn decode_symphonia_stream(
    format: AudioFormat,
    source: Box<dyn MediaSource>,
    edit: Option<super::mp4::EditList>,
    on_format: &mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    use symphonia::core::audio::SampleBuffer;
    use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
    use symphonia::core::errors::Error;
    use symphonia::core::formats::FormatOptions;
    use symphonia::core::io::MediaSourceStream;
    use symphonia::core::meta::MetadataOptions;
    use symphonia::core::probe::Hint;

    let name = format.name();
    let problem = |error: Error, place: &str| match error {
        Error::IoError(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
            DecodeError::Truncated {
                format: name,
                detail: format!("the stream ends inside {place}"),
            }
        }
        Error::Unsupported(what) => DecodeError::Unsupported {
            format: name,
            detail: what.to_string(),
        },
        other => DecodeError::Malformed {
            format: name,
            detail: format!("{place}: {other}"),
        },
    };
    let stream = MediaSourceStream::new(source, Default::default());
    let mut hint = Hint::new();
    hint.with_extension(format.extension());
    let probed = symphonia::default::get_probe()
        .format(
            &hint,
            stream,
            &FormatOptions {
                // Trim the encoder's delay and padding (LAME's 1105 samples, AAC's priming), so
                // sample 0 is the recording's first sample as other decoders give it.
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(|e| problem(e, "its header"))?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(DecodeError::Malformed {
            format: name,
            detail: "no audio track".into(),
        })?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&params, &DecoderOptions::default())
        .map_err(|e| problem(e, "its codec setup"))?;
    let mut announced: Option<StreamFormat> = None;
    let mut samples: Option<SampleBuffer<f32>> = None;
    let mut decoded_frames = 0u64;
    let mut packet_index = 0u64;
    // The presented frames [skip, skip + keep) of the decoded ones, once the rate is known.
    let mut presented: (u64, Option<u64>) = (0, None);
    loop {
        let packet = match reader.next_packet() {
            Ok(packet) => packet,
            Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(Error::ResetRequired) => {
                return Err(DecodeError::Unsupported {
                    format: name,
                    detail: "a stream whose parameters change midway".into(),
                })
            }
            Err(e) => return Err(problem(e, &format!("packet {packet_index}"))),
        };
        packet_index += 1;
        if packet.track_id() != track_id {
            continue;
        }
        let audio = decoder
            .decode(&packet)
            .map_err(|e| problem(e, &format!("packet {}", packet_index - 1)))?;
        let spec = *audio.spec();
        let here = StreamFormat {
            format,
            sample_rate_hz: spec.rate,
            channel_count: spec.channels.count(),
        };
        match announced {
            None => {
                if here.sample_rate_hz == 0 || here.channel_count == 0 {
                    return Err(DecodeError::Malformed {
                        format: name,
                        detail: format!(
                            "{} channels at {} Hz",
                            here.channel_count, here.sample_rate_hz
                        ),
                    });
                }
                on_format(here)?;
                announced = Some(here);
                if let Some(edit) = edit {
                    presented = edit.frames(here.sample_rate_hz);
                }
            }
            Some(first) if first != here => {
                return Err(DecodeError::Unsupported {
                    format: name,
                    detail: format!(
                        "packet {} changes from {} Hz × {} channels to {} Hz × {}",
                        packet_index - 1,
                        first.sample_rate_hz,
                        first.channel_count,
                        here.sample_rate_hz,
                        here.channel_count
                    ),
                })
            }
            Some(_) => {}
        }
        let frames = audio.frames();
        if frames == 0 {
            continue;
        }
        let buffer = match &mut samples {
            Some(b) if b.capacity() >= frames * here.channel_count => b,
            slot => slot.insert(SampleBuffer::new(frames as u64, spec)),
        };
        buffer.copy_interleaved_ref(audio);
        let first = decoded_frames;
        decoded_frames += frames as u64;
        let (skip, keep) = presented;
        let from = skip.clamp(first, decoded_frames);
        let to = keep
            .map_or(decoded_frames, |k| skip.saturating_add(k))
            .clamp(from, decoded_frames);
        if to > from {
            let channels = here.channel_count;
            let samples = buffer.samples();
            on_block(
                &samples[(from - first) as usize * channels..(to - first) as usize * channels],
            )?;
        }
    }
    if announced.is_none() {
        return Err(DecodeError::Malformed {
            format: name,
            detail: "no audio frame decodes".into(),
        });
    }
    // A container that says how long the track is (MP4, Ogg, an MP3 with a Xing/LAME header)
    // lets a cut file be told from a short one; the slack is one packet's worth of frames.
    if let Some(claimed) = params.n_frames {
        let slack = u64::from(params.max_frames_per_packet.unwrap_or(4096) as u32).max(4096);
        if decoded_frames + slack < claimed {
            return Err(DecodeError::Truncated {
                format: name,
                detail: format!("{decoded_frames} of the {claimed} frames its header announces"),
            });
        }
    }
    Ok(())
}

//! MP3, Ogg Vorbis and AAC/M4A through `symphonia` (pure Rust), packet by packet, in the
//! file's order. MP3 is decoded on two threads: its packets are cut into batches, and a batch
//! is decoded by a decoder of its own that first decodes, and throws away, the packets just
//! before it. An MP3 decoder's state is short-lived — the bit reservoir holds at most 511 bytes
//! of earlier frames' data, the IMDCT overlap one granule, the synthesis filterbank 512 samples
//! — so after those packets it is the state the sequential decoder has there, and the batch
//! decodes to the same samples bit for bit (`tests` below, on files with the reservoir in use).
//! symphonia's MP3 decoder is single-threaded and the slowest part of reading an MP3 (~0.5
//! CPU-s for 10 minutes of 44.1 kHz stereo); the other codecs are decoded in sequence.

use symphonia::core::audio::{AudioBufferRef, SampleBuffer};
use symphonia::core::codecs::{CodecParameters, Decoder, DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error;
use symphonia::core::formats::{FormatOptions, Packet};
use symphonia::core::io::{MediaSource, MediaSourceStream};
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

use super::mp4::EditList;
use super::stream::StreamFormat;
use super::{AudioFormat, DecodeError};

/// Packets per MP3 batch: 6.7 s of 44.1 kHz audio (1152 frames a packet), 2.4 MB of stereo
/// samples. Long enough that the packets decoded twice (below) cost ~2 %.
const MP3_BATCH_PACKETS: usize = 256;

/// Packets decoded before a batch, and thrown away, for the decoder to reach the sequential
/// decoder's state: at least 4 packets (8 granules: the overlap and filterbank need one) and
/// at least 2048 bytes of them (the reservoir: 511 bytes of main data at most, fewer than the
/// packets' bytes, which also hold headers and side information).
const MP3_WARMUP_PACKETS: usize = 4;
const MP3_WARMUP_BYTES: usize = 2048;

fn problem(format: AudioFormat, error: Error, place: &str) -> DecodeError {
    let name = format.name();
    match error {
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
    }
}

/// Decodes `source` (a file of `format`), calling `on_format` once and then `on_block` with
/// interleaved samples in [-1, 1]. `edit`: an MP4 edit list, applied to the decoded frames
/// (symphonia 0.5 ignores it).
pub(super) fn decode(
    format: AudioFormat,
    source: Box<dyn MediaSource>,
    edit: Option<EditList>,
    on_format: &mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    let batch = match format {
        AudioFormat::Mp3 => Some(MP3_BATCH_PACKETS),
        _ => None,
    };
    decode_in_batches(format, source, edit, batch, on_format, on_block)
}

/// [`decode`], with MP3's batch length (`None`: in sequence) chosen by the caller (tests).
pub(super) fn decode_in_batches(
    format: AudioFormat,
    source: Box<dyn MediaSource>,
    edit: Option<EditList>,
    batch: Option<usize>,
    on_format: &mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
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
        .map_err(|e| problem(format, e, "its header"))?;
    let mut reader = probed.format;
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(DecodeError::Malformed {
            format: format.name(),
            detail: "no audio track".into(),
        })?;
    let track_id = track.id;
    let params = track.codec_params.clone();
    let mut decoder = make_decoder(format, &params)?;
    let mut presenter = Presenter {
        format,
        edit,
        announced: None,
        presented: (0, None),
        decoded_frames: 0,
        on_format,
        on_block,
    };
    // The next packet of the track, with its index among all the file's packets (for errors).
    let mut packet_index = 0u64;
    let mut next_packet = || -> Result<Option<(u64, Packet)>, DecodeError> {
        loop {
            let packet = match reader.next_packet() {
                Ok(packet) => packet,
                Err(Error::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    return Ok(None)
                }
                Err(Error::ResetRequired) => {
                    return Err(DecodeError::Unsupported {
                        format: format.name(),
                        detail: "a stream whose parameters change midway".into(),
                    })
                }
                Err(e) => return Err(problem(format, e, &format!("packet {packet_index}"))),
            };
            packet_index += 1;
            if packet.track_id() == track_id {
                return Ok(Some((packet_index - 1, packet)));
            }
        }
    };
    match batch {
        None => {
            let mut samples: Option<SampleBuffer<f32>> = None;
            while let Some((index, packet)) = next_packet()? {
                let audio = decoder
                    .decode(&packet)
                    .map_err(|e| problem(format, e, &format!("packet {index}")))?;
                let spec = *audio.spec();
                presenter.check(index, spec.rate, spec.channels.count())?;
                let frames = audio.frames();
                if frames == 0 {
                    continue;
                }
                presenter.present(interleaved(&mut samples, audio), spec.channels.count())?;
            }
        }
        Some(batch) => decode_mp3_batches(
            format,
            &params,
            batch.max(1),
            &mut next_packet,
            &mut presenter,
        )?,
    }
    presenter.finish(&params)
}

/// `audio`'s samples interleaved, in `buffer` (made, or made again larger, when too small).
fn interleaved<'b>(buffer: &'b mut Option<SampleBuffer<f32>>, audio: AudioBufferRef) -> &'b [f32] {
    let spec = *audio.spec();
    let len = audio.frames() * spec.channels.count();
    if buffer.as_ref().is_none_or(|b| b.capacity() < len) {
        *buffer = None;
    }
    let buffer = buffer.get_or_insert_with(|| SampleBuffer::new(audio.frames() as u64, spec));
    buffer.copy_interleaved_ref(audio);
    buffer.samples()
}

fn make_decoder(
    format: AudioFormat,
    params: &CodecParameters,
) -> Result<Box<dyn Decoder>, DecodeError> {
    symphonia::default::get_codecs()
        .make(params, &DecoderOptions::default())
        .map_err(|e| problem(format, e, "its codec setup"))
}

/// Batches of packets decoded on two threads, handed on in the file's order: this thread
/// reads the packets, gives every other batch to a second thread and decodes the ones between
/// itself. Each batch after the first starts with the packets before it (see
/// [`MP3_WARMUP_PACKETS`]), decoded and thrown away.
fn decode_mp3_batches(
    format: AudioFormat,
    params: &CodecParameters,
    batch: usize,
    next_packet: &mut dyn FnMut() -> Result<Option<(u64, Packet)>, DecodeError>,
    presenter: &mut Presenter,
) -> Result<(), DecodeError> {
    use std::sync::mpsc::sync_channel;
    // The worker only stops early by panicking, which the scope passes on when it ends.
    let stopped = || DecodeError::Malformed {
        format: format.name(),
        detail: "the second decoding thread stopped".into(),
    };
    std::thread::scope(|scope| {
        let (jobs, job_queue) = sync_channel::<Batch>(1);
        let (result_sender, results) = sync_channel::<DecodedBatch>(1);
        scope.spawn(move || {
            for job in job_queue {
                if result_sender.send(job.decode(format, params)).is_err() {
                    break;
                }
            }
        });
        // The packets before the next batch: its warm-up.
        let mut recent: Vec<Packet> = Vec::new();
        let mut worker_holds_one = false;
        // A packet that cannot be read ends the file after the packets before it are handed on.
        let mut unreadable = None;
        while unreadable.is_none() {
            let mut packets = Vec::with_capacity(batch);
            while packets.len() < batch {
                match next_packet() {
                    Ok(Some(p)) => packets.push(p),
                    Ok(None) => break,
                    Err(e) => {
                        unreadable = Some(e);
                        break;
                    }
                }
            }
            if packets.is_empty() {
                break;
            }
            let job = Batch {
                warmup: std::mem::take(&mut recent),
                packets,
            };
            // The next warm-up: the fewest last packets (of this batch, then of the ones before
            // it) that make MP3_WARMUP_PACKETS and MP3_WARMUP_BYTES.
            let mut bytes = 0;
            let latest_first = job.packets.iter().map(|(_, p)| p).rev();
            for packet in latest_first.chain(job.warmup.iter().rev()) {
                if recent.len() >= MP3_WARMUP_PACKETS && bytes >= MP3_WARMUP_BYTES {
                    break;
                }
                bytes += packet.buf().len();
                recent.push(packet.clone());
            }
            recent.reverse();
            if worker_holds_one {
                let here = job.decode(format, params);
                let earlier = results.recv().map_err(|_| stopped())?;
                earlier.present(presenter)?;
                here.present(presenter)?;
                worker_holds_one = false;
            } else {
                jobs.send(job).map_err(|_| stopped())?;
                worker_holds_one = true;
            }
        }
        if worker_holds_one {
            results.recv().map_err(|_| stopped())?.present(presenter)?;
        }
        unreadable.map_or(Ok(()), Err)
    })
}

/// Packets to decode: the warm-up ones, thrown away, then the batch's own.
struct Batch {
    warmup: Vec<Packet>,
    packets: Vec<(u64, Packet)>,
}

/// A batch decoded: per packet its index, rate, channels and frames, and all their samples
/// interleaved; the first packet that failed, if one did, ends it.
struct DecodedBatch {
    packets: Vec<(u64, u32, usize, usize)>,
    samples: Vec<f32>,
    error: Option<DecodeError>,
}

impl Batch {
    fn decode(self, format: AudioFormat, params: &CodecParameters) -> DecodedBatch {
        let mut out = DecodedBatch {
            packets: Vec::with_capacity(self.packets.len()),
            samples: Vec::new(),
            error: None,
        };
        let mut decoder = match make_decoder(format, params) {
            Ok(d) => d,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
        };
        // A warm-up packet may fail (its reservoir reaches before the first of them); the
        // sequential decoder has decoded it already, and reported any error there.
        for packet in &self.warmup {
            let _ = decoder.decode(packet);
        }
        let mut buffer: Option<SampleBuffer<f32>> = None;
        for (index, packet) in &self.packets {
            let audio = match decoder.decode(packet) {
                Ok(audio) => audio,
                Err(e) => {
                    out.error = Some(problem(format, e, &format!("packet {index}")));
                    break;
                }
            };
            let spec = *audio.spec();
            let frames = audio.frames();
            out.packets
                .push((*index, spec.rate, spec.channels.count(), frames));
            if frames == 0 {
                continue;
            }
            out.samples
                .extend_from_slice(interleaved(&mut buffer, audio));
        }
        out
    }
}

impl DecodedBatch {
    /// Hands the batch on as the sequential decoding would have: packet by packet, then its
    /// error.
    fn present(self, presenter: &mut Presenter) -> Result<(), DecodeError> {
        let mut at = 0;
        for (index, rate, channels, frames) in self.packets {
            presenter.check(index, rate, channels)?;
            if frames == 0 {
                continue;
            }
            let len = frames * channels;
            presenter.present(&self.samples[at..at + len], channels)?;
            at += len;
        }
        self.error.map_or(Ok(()), Err)
    }
}

/// The decoded packets made into what the caller sees: the format announced once and the
/// same at every packet, the presented frames of an MP4 edit list cut out.
struct Presenter<'a> {
    format: AudioFormat,
    edit: Option<EditList>,
    announced: Option<StreamFormat>,
    /// The presented frames [skip, skip + keep) of the decoded ones, once the rate is known.
    presented: (u64, Option<u64>),
    decoded_frames: u64,
    on_format: &'a mut dyn FnMut(StreamFormat) -> Result<(), DecodeError>,
    on_block: &'a mut dyn FnMut(&[f32]) -> Result<(), DecodeError>,
}

impl Presenter<'_> {
    /// Packet `index` decoded to `channels` at `rate`: announced if it is the first, refused if
    /// it differs from the first.
    fn check(&mut self, index: u64, rate: u32, channels: usize) -> Result<(), DecodeError> {
        let here = StreamFormat {
            format: self.format,
            sample_rate_hz: rate,
            channel_count: channels,
        };
        match self.announced {
            None => {
                if rate == 0 || channels == 0 {
                    return Err(DecodeError::Malformed {
                        format: self.format.name(),
                        detail: format!("{channels} channels at {rate} Hz"),
                    });
                }
                (self.on_format)(here)?;
                self.announced = Some(here);
                if let Some(edit) = self.edit {
                    self.presented = edit.frames(rate);
                }
            }
            Some(first) if first != here => {
                return Err(DecodeError::Unsupported {
                    format: self.format.name(),
                    detail: format!(
                        "packet {index} changes from {} Hz × {} channels to {rate} Hz × {channels}",
                        first.sample_rate_hz, first.channel_count,
                    ),
                })
            }
            Some(_) => {}
        }
        Ok(())
    }

    /// A packet's interleaved samples: the presented part of them handed on.
    fn present(&mut self, samples: &[f32], channels: usize) -> Result<(), DecodeError> {
        let first = self.decoded_frames;
        self.decoded_frames += (samples.len() / channels) as u64;
        let (skip, keep) = self.presented;
        let from = skip.clamp(first, self.decoded_frames);
        let to = keep
            .map_or(self.decoded_frames, |k| skip.saturating_add(k))
            .clamp(from, self.decoded_frames);
        if to > from {
            (self.on_block)(
                &samples[(from - first) as usize * channels..(to - first) as usize * channels],
            )?;
        }
        Ok(())
    }

    fn finish(self, params: &CodecParameters) -> Result<(), DecodeError> {
        let name = self.format.name();
        if self.announced.is_none() {
            return Err(DecodeError::Malformed {
                format: name,
                detail: "no audio frame decodes".into(),
            });
        }
        // A container that says how long the track is (MP4, Ogg, an MP3 with a Xing/LAME
        // header) lets a cut file be told from a short one; the slack is one packet's worth.
        if let Some(claimed) = params.n_frames {
            let slack = u64::from(params.max_frames_per_packet.unwrap_or(4096) as u32).max(4096);
            if self.decoded_frames + slack < claimed {
                return Err(DecodeError::Truncated {
                    format: name,
                    detail: format!(
                        "{} of the {claimed} frames its header announces",
                        self.decoded_frames
                    ),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn decode_all(
        bytes: &[u8],
        batch: Option<usize>,
    ) -> Result<(StreamFormat, Vec<f32>), DecodeError> {
        let mut format = None;
        let mut samples = Vec::new();
        decode_in_batches(
            AudioFormat::Mp3,
            Box::new(Cursor::new(bytes.to_vec())),
            None,
            batch,
            &mut |f| {
                format = Some(f);
                Ok(())
            },
            &mut |block| {
                samples.extend_from_slice(block);
                Ok(())
            },
        )?;
        Ok((format.expect("announced"), samples))
    }

    fn fixture(name: &str) -> Vec<u8> {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/audio")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn mp3_batches_on_two_threads_decode_to_the_sequential_samples_bit_for_bit() {
        for name in [
            "tone_44k1_stereo.mp3",
            "noise_chirps_22k_mono_24kbps.mp3",
            "noise_chirps_44k1_stereo_96kbps.mp3",
        ] {
            let bytes = fixture(name);
            let (format, sequential) = decode_all(&bytes, None).unwrap();
            assert!(
                sequential.len() > 20_000,
                "{name}: {} samples",
                sequential.len()
            );
            assert!(
                sequential.iter().any(|&s| s.abs() > 0.05),
                "{name} is silent"
            );
            for batch in [1, 2, 3, 7, 64, MP3_BATCH_PACKETS] {
                let (f, batched) = decode_all(&bytes, Some(batch)).unwrap();
                assert_eq!(f, format, "{name}");
                assert_eq!(
                    batched.len(),
                    sequential.len(),
                    "{name}, batches of {batch}"
                );
                let first = batched
                    .iter()
                    .zip(&sequential)
                    .position(|(a, b)| a.to_bits() != b.to_bits());
                assert_eq!(
                    first, None,
                    "{name}, batches of {batch}: first differing sample"
                );
            }
        }
    }

    #[test]
    fn a_cut_mp3_fails_the_same_way_in_batches() {
        let bytes = fixture("noise_chirps_44k1_stereo_96kbps.mp3");
        let cut = &bytes[..bytes.len() * 2 / 3];
        let sequential = decode_all(cut, None).map(|(_, s)| s.len());
        let batched = decode_all(cut, Some(5)).map(|(_, s)| s.len());
        assert_eq!(format!("{sequential:?}"), format!("{batched:?}"));
        assert!(
            sequential.is_err(),
            "a cut file with a Xing header is an error"
        );
    }
}

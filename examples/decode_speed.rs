//! Decoding speed of our WAV/FLAC readers (`hound`, `claxon`, through `mtosi::audio`) against
//! symphonia's readers of the same formats, on one file: the measurement behind keeping both
//! (BENCHMARKS.md, "Audio decoding").
//!
//!     cargo run --release --example decode_speed -- FILE.wav|FILE.flac [REPEATS]

use std::time::Instant;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::DecoderOptions;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// All samples through symphonia, interleaved, as f32.
fn symphonia_decode(path: &std::path::Path) -> Vec<f32> {
    let file = std::fs::File::open(path).unwrap();
    let stream = MediaSourceStream::new(Box::new(file), Default::default());
    let mut probed = symphonia::default::get_probe()
        .format(
            &Hint::new(),
            stream,
            &FormatOptions::default(),
            &MetadataOptions::default(),
        )
        .unwrap();
    let track = probed.format.default_track().unwrap().clone();
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .unwrap();
    let mut out = Vec::new();
    let mut buffer: Option<SampleBuffer<f32>> = None;
    while let Ok(packet) = probed.format.next_packet() {
        let audio = decoder.decode(&packet).unwrap();
        let spec = *audio.spec();
        let needed = audio.frames() * spec.channels.count();
        let b = match &mut buffer {
            Some(b) if b.capacity() >= needed => b,
            slot => slot.insert(SampleBuffer::new(audio.frames() as u64, spec)),
        };
        b.copy_interleaved_ref(audio);
        out.extend_from_slice(b.samples());
    }
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = std::path::PathBuf::from(&args[0]);
    let repeats: usize = args.get(1).map_or(3, |r| r.parse().unwrap());
    let best = |f: &mut dyn FnMut() -> usize| {
        (0..repeats)
            .map(|_| {
                let t = Instant::now();
                let n = f();
                (t.elapsed().as_secs_f64(), n)
            })
            .fold((f64::INFINITY, 0), |a, b| if b.0 < a.0 { b } else { a })
    };
    let ours = best(&mut || mtosi::audio::read_audio(&path).unwrap().interleaved.len());
    let theirs = best(&mut || symphonia_decode(&path).len());
    let ours_samples = mtosi::audio::read_audio(&path).unwrap().interleaved;
    let theirs_samples = symphonia_decode(&path);
    let max_diff = ours_samples
        .iter()
        .zip(&theirs_samples)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f32::max);
    println!(
        "{}: mtosi (hound/claxon) {:.3} s, symphonia {:.3} s for {} / {} samples; max |difference| {max_diff:e}",
        path.display(),
        ours.0,
        theirs.0,
        ours.1,
        theirs.1
    );
}

//! Where `mtosi transcribe`'s "read + CQT" stage spends its time, on one file: decoding alone,
//! decoding + mixing to mono + resampling to 16 kHz, and the whole stage (those and the CQT,
//! log and normalisation, as `transcribe::model_input_of_file` runs them). Best of REPEATS.
//!
//!     cargo run --release --example read_speed -- FILE [REPEATS]

use std::time::Instant;

use mtosi::audio::stream::{stream_file, stream_mono};
use mtosi::audio::AudioError;
use mtosi::transcribe::{model_cqt, model_input_of_file};

/// Seconds this process has run on a CPU (all its threads; Linux), or 0 elsewhere.
fn cpu_s() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command's closing parenthesis: utime and stime are the 12th and 13th.
    let after = stat.rsplit(')').next().unwrap_or("");
    let ticks: Vec<f64> = after
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse().ok())
        .collect();
    ticks.iter().sum::<f64>() / 100.0
}

/// Best wall seconds and the CPU seconds of that run.
fn best(repeats: usize, f: &mut dyn FnMut()) -> (f64, f64) {
    (0..repeats)
        .map(|_| {
            let (t, c) = (Instant::now(), cpu_s());
            f();
            (t.elapsed().as_secs_f64(), cpu_s() - c)
        })
        .fold((f64::INFINITY, 0.0), |a, b| if b.0 < a.0 { b } else { a })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let path = std::path::PathBuf::from(&args[0]);
    let repeats: usize = args.get(1).map_or(3, |r| r.parse().unwrap());
    let decode_s = best(repeats, &mut || {
        stream_file(&path, &mut |_| Ok(()), &mut |_| Ok(())).unwrap();
    });
    let resample_s = best(repeats, &mut || {
        stream_mono::<AudioError>(&path, 16_000, &mut |_| Ok(())).unwrap();
    });
    let cqt = model_cqt();
    let mut frames = 0;
    let whole_s = best(repeats, &mut || {
        frames = model_input_of_file(&path, &cqt, &mut |_| {})
            .unwrap()
            .0
            .frames;
    });
    println!(
        "{} ({frames} frames), wall (CPU) seconds: decode {:.3} ({:.2}), + mix and resample \
         {:.3} ({:.2}), + CQT, log, normalise {:.3} ({:.2}) = {:.3} ({:.2})",
        path.display(),
        decode_s.0,
        decode_s.1,
        resample_s.0 - decode_s.0,
        resample_s.1 - decode_s.1,
        whole_s.0 - resample_s.0,
        whole_s.1 - resample_s.1,
        whole_s.0,
        whole_s.1,
    );
}

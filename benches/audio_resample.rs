//! Resampling speed: 30 s of 44.1 kHz audio to 16 kHz, the conversion every GuitarSet and
//! MAESTRO file goes through. Peer: `tools/bench/resample_speed.py` (librosa's default,
//! soxr_hq) on the same length; both figures are in BENCHMARKS.md ("Audio").
//!
//!     cargo bench --bench audio_resample

use criterion::{black_box, criterion_group, criterion_main, Criterion};

fn resample_30_s(c: &mut Criterion) {
    let rate_hz = 44_100u32;
    // A chord of three tones with a slow envelope: content across the band, like music.
    let samples: Vec<f32> = (0..30 * rate_hz as usize)
        .map(|i| {
            let t = i as f64 / f64::from(rate_hz);
            let tone = |f: f64| (2.0 * std::f64::consts::PI * f * t).sin();
            (0.2 * (tone(220.0) + tone(1375.0) + tone(6100.0)) * (0.5 + 0.5 * tone(0.7))) as f32
        })
        .collect();
    let mut group = c.benchmark_group("resample");
    group.sample_size(10);
    group.bench_function("44.1k_to_16k_30s", |b| {
        b.iter(|| mtosi::audio::resample(black_box(&samples), rate_hz, 16_000).unwrap())
    });
    group.finish();
}

criterion_group!(benches, resample_30_s);
criterion_main!(benches);

//! The network's input path around the CQT (kernels/features.cu; CPU: src/spectrogram/cqt.rs
//! and src/spectrogram/features.rs), batch 4 × 640 frames × 176 bins: the reflect padding of
//! each raw 327 680-sample crop (its last sample dropped) by the CQT's half kernel width, then
//! the magnitudes' `ln(x + 1e-5)` transposed to frames × bins, each image's min and max, and the
//! min-max normalisation (`model_inputs_launch`: three launches). The CQT between them is
//! `benches/cqt.rs`. The CPU's transpose happens in `Spectrogram::frames_by_bins`, outside the
//! CPU times here.
//!
//!     cargo bench --bench features

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::spectrogram::cqt::reflect_pad;
use mtosi::spectrogram::features::{
    log_compress, model_inputs_launch, normalize_imagewise, reflect_pad_launch,
};
use mtosi::spectrogram::{Cqt, CqtParams};

/// A training crop; the model drops its last sample, which gives 640 frames.
const CROP: usize = 327_680;
const N_FRAMES: usize = 640;
const N_BINS: usize = 176;

/// The CQT's padding on each side (half its longest kernel), checked against 640 frames.
fn pad() -> usize {
    let cqt = Cqt::new(CqtParams::default()).unwrap();
    assert_eq!(cqt.n_frames(CROP - 1), N_FRAMES);
    assert_eq!(cqt.params().n_bins, N_BINS);
    cqt.padding()
}

/// CQT magnitudes: positive, as the CQT gives.
fn magnitudes(len: usize) -> Vec<f32> {
    values(len).iter().map(|v| v + 0.5).collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("features");
    configure(&mut group);
    let pad = pad();
    let crops: Vec<Vec<f32>> = (0..BATCH).map(|_| values(CROP)).collect();
    let shape = format!("{BATCH}x{CROP}");
    group.bench_function(BenchmarkId::new("reflect pad", &shape), |b| {
        b.iter(|| {
            crops
                .iter()
                .map(|crop| reflect_pad(&crop[..CROP - 1], pad))
                .collect::<Vec<_>>()
        })
    });
    let images = magnitudes(BATCH * N_FRAMES * N_BINS);
    let mut work = images.clone();
    let shape = format!("{BATCH}x{N_FRAMES}x{N_BINS}");
    group.bench_function(BenchmarkId::new("log + normalize", &shape), |b| {
        b.iter(|| {
            work.copy_from_slice(&images);
            for image in work.chunks_mut(N_FRAMES * N_BINS) {
                log_compress(image);
                normalize_imagewise(image);
            }
        })
    });
    group.finish();
}

/// The kernels on emu (a small shape) and cuda (the network's shapes), all bandwidth-bound:
/// the padding reads and writes each padded sample (8 bytes); the log + transpose (8 bytes), the
/// min and max (4) and the normalisation (8) come to 20 bytes and ~6 FLOPs per element.
fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("features");
    configure(&mut group);
    let full_pad = pad();
    for kb in common::kernel_devices("features") {
        // (batch, crop, pad) and (batch, frames, bins).
        let ((batch, crop, pad), (images, n_frames, n_bins)) = if kb.full_size {
            ((BATCH, CROP, full_pad), (BATCH, N_FRAMES, N_BINS))
        } else {
            ((2, 2048, 512), (2, 16, N_BINS))
        };
        let d = &kb.device;
        let clip_len = crop - 1;
        let padded_stride = clip_len + 2 * pad;
        let clips = d.upload(&values(batch * crop)).unwrap();
        let mut padded = d.alloc::<f32>(batch * padded_stride).unwrap();
        let name = format!("{batch}x{crop} pad {pad}");
        let len = batch * padded_stride;
        common::print_roofline(&kb, &format!("{name} reflect pad"), 0.0, 8.0 * len as f64);
        group.throughput(criterion::Throughput::Bytes(8 * len as u64));
        group.bench_function(
            BenchmarkId::new(format!("{} reflect pad", kb.name), &name),
            |b| {
                b.iter(|| {
                    reflect_pad_launch(
                        d,
                        &mut padded,
                        &clips,
                        batch,
                        crop,
                        clip_len,
                        pad,
                        padded_stride,
                    )
                    .unwrap();
                    d.synchronize().unwrap();
                })
            },
        );
        let total = images * n_frames * n_bins;
        let mags = d.upload(&magnitudes(total)).unwrap();
        let mut out = d.alloc::<f32>(total).unwrap();
        let mut min_max = d.alloc::<f32>(2 * images).unwrap();
        let name = format!("{images}x{n_frames}x{n_bins}");
        common::print_roofline(
            &kb,
            &format!("{name} log + normalize"),
            6.0 * total as f64,
            20.0 * total as f64,
        );
        group.throughput(criterion::Throughput::Bytes(20 * total as u64));
        group.bench_function(
            BenchmarkId::new(format!("{} log + normalize", kb.name), &name),
            |b| {
                b.iter(|| {
                    model_inputs_launch(d, &mut out, &mut min_max, &mags, images, n_bins, n_frames)
                        .unwrap();
                    d.synchronize().unwrap();
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench, bench_kernels);
criterion_main!(benches);

//! CQT benchmarks with the paper's parameters: one 327 680-sample clip (a training crop) and
//! a batch of 32, on the CPU (default blocked method on the best instruction set; also
//! all-direct, AVX2 instead of AVX-512 and the portable loops on one clip, to show what each
//! step buys) and on cuda when present (kernels/cqt.cu, launch
//! only: inputs stay on the device); emu only on a tiny case (it says nothing about speed).
//! `scripts/bench-cqt.sh` runs this beside nnAudio and prints the ratios.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::device::{EmuOptions, KernelDevice};
use mtosi::ops::cqt::{cqt_launch, pad_batch, CqtDeviceKernels};
use mtosi::spectrogram::{Cqt, CqtMethod, CqtParams, Isa};

const CLIP_SAMPLES: usize = 327_680;

fn clip(seed: u64) -> Vec<f32> {
    let mut rng = mtosi::rng::Rng::new(seed);
    (0..CLIP_SAMPLES)
        .map(|_| rng.uniform_f32() * 2.0 - 1.0)
        .collect()
}

fn cpu(c: &mut Criterion) {
    let params = CqtParams::default();
    let one = clip(1);
    let batch: Vec<Vec<f32>> = (0..32).map(clip).collect();
    let batch_refs: Vec<&[f32]> = batch.iter().map(|c| c.as_slice()).collect();

    let mut group = c.benchmark_group("cqt");
    group.sample_size(10);
    let mut variants = vec![
        ("cpu", CqtMethod::Blocked, Isa::detect()),
        ("cpu_direct", CqtMethod::Direct, Isa::detect()),
        ("cpu_portable", CqtMethod::Blocked, Isa::Portable),
    ];
    #[cfg(target_arch = "x86_64")]
    if Isa::detect() == Isa::Avx512 {
        variants.push(("cpu_avx2", CqtMethod::Blocked, Isa::Avx2Fma));
    }
    for (name, method, isa) in variants {
        let Some(cqt) = Cqt::with_method(params, method).unwrap().with_isa(isa) else {
            continue;
        };
        eprintln!(
            "{name}: {method:?} on {:?}, {} of {} bins blocked, {} real multiply-adds per frame, {} threads",
            cqt.isa(),
            cqt.blocked_bins(),
            params.n_bins,
            cqt.multiply_adds_per_frame(),
            rayon::current_num_threads()
        );
        group.bench_function(BenchmarkId::new(name, "1x327680"), |b| {
            b.iter(|| cqt.magnitude(&one).unwrap())
        });
        if name == "cpu" {
            group.bench_function(BenchmarkId::new(name, "32x327680"), |b| {
                b.iter(|| cqt.magnitudes(&batch_refs).unwrap())
            });
        }
    }
    group.finish();
}

/// Times `cqt_launch` for `clips` on `device` (padded clips uploaded once).
fn bench_kernels(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    name: &str,
    device: &KernelDevice,
    cqt: &Cqt,
    clips: &[Vec<f32>],
) {
    let refs: Vec<&[f32]> = clips.iter().map(|c| c.as_slice()).collect();
    let kernels = CqtDeviceKernels::upload(device, cqt).unwrap();
    let padded = device.upload(&pad_batch(cqt, &refs)).unwrap();
    let n_frames = cqt.n_frames(clips[0].len());
    let mut out = device
        .alloc::<f32>(clips.len() * cqt.params().n_bins * n_frames)
        .unwrap();
    let id = format!("{}x{}", clips.len(), clips[0].len());
    group.bench_function(BenchmarkId::new(name, id), |b| {
        b.iter(|| {
            cqt_launch(
                device,
                &kernels,
                &padded,
                clips.len(),
                n_frames,
                cqt.params().hop_length,
                &mut out,
            )
            .unwrap();
            device.synchronize().unwrap();
        })
    });
}

fn kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("cqt");
    group.sample_size(10);
    match KernelDevice::cuda(0) {
        Ok(cuda) => {
            let one = vec![clip(1)];
            let batch: Vec<Vec<f32>> = (0..32).map(clip).collect();
            for (name, method) in [
                ("cuda", CqtMethod::Blocked),
                ("cuda_direct", CqtMethod::Direct),
            ] {
                let cqt = Cqt::with_method(CqtParams::default(), method).unwrap();
                bench_kernels(&mut group, name, &cuda, &cqt, &one);
                bench_kernels(&mut group, name, &cuda, &cqt, &batch);
            }
        }
        Err(why) => eprintln!("cqt bench: cuda skipped: {why}"),
    }
    // A tiny case on emu: 24 bins, one clip of 4 001 samples at 8 kHz.
    let tiny = CqtParams {
        sample_rate_hz: 8000,
        hop_length: 32,
        fmin_hz: 500.0,
        n_bins: 24,
        bins_per_octave: 12,
        filter_scale: 1.0,
    };
    let emu = KernelDevice::emu(EmuOptions::default());
    let tiny_clip: Vec<f32> = clip(7)[..4001].to_vec();
    bench_kernels(
        &mut group,
        "emu_tiny",
        &emu,
        &Cqt::new(tiny).unwrap(),
        &[tiny_clip],
    );
    group.finish();
}

criterion_group!(benches, cpu, kernels);
criterion_main!(benches);

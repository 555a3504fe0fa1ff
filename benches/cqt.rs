//! CQT benchmarks with the paper's parameters: one 327 680-sample clip (a training crop) and
//! a batch of 32, on the CPU (default blocked method; also all-direct and the portable loops
//! on one clip, to show what each step buys). `scripts/bench-cqt.sh` runs this beside nnAudio
//! and prints the ratios.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::spectrogram::{Cqt, CqtMethod, CqtParams, Isa};

const CLIP_SAMPLES: usize = 327_680;

fn clip(seed: u64) -> Vec<f32> {
    let mut rng = fastrand::Rng::with_seed(seed);
    (0..CLIP_SAMPLES).map(|_| rng.f32() * 2.0 - 1.0).collect()
}

fn cpu(c: &mut Criterion) {
    let params = CqtParams::default();
    let one = clip(1);
    let batch: Vec<Vec<f32>> = (0..32).map(clip).collect();
    let batch_refs: Vec<&[f32]> = batch.iter().map(|c| c.as_slice()).collect();

    let mut group = c.benchmark_group("cqt");
    group.sample_size(10);
    let variants = [
        ("cpu", CqtMethod::Blocked, Isa::detect()),
        ("cpu_direct", CqtMethod::Direct, Isa::detect()),
        ("cpu_portable", CqtMethod::Blocked, Isa::Portable),
    ];
    for (name, method, isa) in variants {
        let cqt = Cqt::with_method(params, method)
            .unwrap()
            .with_isa(isa)
            .unwrap();
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

criterion_group!(benches, cpu);
criterion_main!(benches);

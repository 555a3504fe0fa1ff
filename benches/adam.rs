//! Adam over the whole parameter arena (1 350 145 parameters), as the device training step
//! calls it (src/model/device_training.rs: one `adam_update_launch` over the arena), and the
//! CPU version (src/train/adam.rs) at the same length.
//!
//!     cargo bench --bench adam

mod common;

use common::{configure, values};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::train::adam::{adam_update, adam_update_launch, AdamConfig};

/// The network's parameter count: the arena one update runs over.
const ARENA: usize = 1_350_145;
/// A step well past the first, so the bias corrections are ordinary.
const STEP: u64 = 100;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("adam");
    configure(&mut group);
    let config = AdamConfig::default();
    let mut params = values(ARENA);
    let grads = values(ARENA);
    let mut exp_avg = vec![0.0; ARENA];
    let mut exp_avg_sq = vec![0.0; ARENA];
    group.bench_function(BenchmarkId::new("cpu update", "arena 1350145"), |b| {
        b.iter(|| {
            adam_update(
                &mut params,
                &grads,
                &mut exp_avg,
                &mut exp_avg_sq,
                STEP,
                config.lr,
                &config,
            )
        })
    });
    group.finish();
}

/// The kernel on emu (a small arena) and cuda (the whole arena): bandwidth-bound, reading
/// params, grads and both moments and writing params and both moments, 28 bytes and ~12 FLOPs
/// per parameter.
fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("adam");
    configure(&mut group);
    let config = AdamConfig::default();
    const SHAPES: [(&str, usize); 1] = [("arena 1350145", ARENA)];
    const SMALL: [(&str, usize); 1] = [("small 16384", 16_384)];
    for kb in common::kernel_devices("adam") {
        let shapes: &[(&str, usize)] = if kb.full_size { &SHAPES } else { &SMALL };
        let d = &kb.device;
        for &(name, len) in shapes {
            let mut params = d.upload(&values(len)).unwrap();
            let grads = d.upload(&values(len)).unwrap();
            let mut exp_avg = d.upload(&vec![0.0f32; len]).unwrap();
            let mut exp_avg_sq = d.upload(&vec![0.0f32; len]).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} update"),
                12.0 * len as f64,
                28.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(28 * len as u64));
            group.bench_function(BenchmarkId::new(format!("{} update", kb.name), name), |b| {
                b.iter(|| {
                    adam_update_launch(
                        d,
                        &mut params,
                        &grads,
                        &mut exp_avg,
                        &mut exp_avg_sq,
                        STEP,
                        config.lr,
                        &config,
                    )
                    .unwrap();
                    d.synchronize().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench, bench_kernels);
criterion_main!(benches);

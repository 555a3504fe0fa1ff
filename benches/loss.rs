//! Binary cross-entropy (kernels/loss.cu) over the piano roll, batch 4 and 32 × 640 frames ×
//! 88 keys: the loss (a deterministic two-stage f64 mean: `bce_partial_sums` then `bce_mean`)
//! and its gradient (`bce_backward`), and the CPU versions (src/ops/loss.rs) at the same shapes.
//!
//!     cargo bench --bench loss

mod common;

use common::{configure, values};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::loss::{
    bce_backward, bce_backward_launch, bce_forward, bce_forward_launch, bce_partials_len,
};

/// (name, batch · frames · keys).
const SHAPES: [(&str, usize); 2] = [("4x640x88", 4 * 640 * 88), ("32x640x88", 32 * 640 * 88)];

/// Probabilities strictly inside (0, 1), as a sigmoid gives.
fn probs(len: usize) -> Vec<f32> {
    values(len).iter().map(|v| 0.5 + 0.98 * v).collect()
}

/// A piano roll's targets: mostly off, some keys on.
fn targets(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| if (i * 7919) % 10 == 0 { 1.0 } else { 0.0 })
        .collect()
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("bce");
    configure(&mut group);
    for (name, len) in SHAPES {
        let p = probs(len);
        let t = targets(len);
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| bce_forward(&p, &t))
        });
        let mut d_p = vec![0.0; len];
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| bce_backward(&mut d_p, &p, &t, 1.0))
        });
    }
    group.finish();
}

/// The kernels on emu (a small shape) and cuda (the network's shapes): bandwidth-bound, 8 bytes
/// and ~10 FLOPs (two f64 logs) per element forward, 16 bytes (probs, targets, d_probs
/// read-modify-written) and ~5 FLOPs backward.
fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("bce");
    configure(&mut group);
    const SMALL: [(&str, usize); 1] = [("small 1x32x88", 32 * 88)];
    for kb in common::kernel_devices("loss") {
        let shapes: &[(&str, usize)] = if kb.full_size { &SHAPES } else { &SMALL };
        let d = &kb.device;
        for &(name, len) in shapes {
            let p = d.upload(&probs(len)).unwrap();
            let t = d.upload(&targets(len)).unwrap();
            let mut loss = d.alloc::<f32>(1).unwrap();
            let mut partials = d.alloc::<f64>(bce_partials_len(len)).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} forward"),
                10.0 * len as f64,
                8.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(8 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} forward", kb.name), name),
                |b| {
                    b.iter(|| {
                        bce_forward_launch(d, &mut loss, &mut partials, &p, &t).unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
            let mut d_p = d.upload(&vec![0.0; len]).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} backward"),
                5.0 * len as f64,
                16.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(16 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} backward", kb.name), name),
                |b| {
                    b.iter(|| {
                        bce_backward_launch(d, &mut d_p, &p, &t, 1.0).unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench, bench_kernels);
criterion_main!(benches);

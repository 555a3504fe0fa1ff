//! Clip-by-value (kernels/clamp.cu) over the whole gradient arena (1 350 145 values), as the
//! device training step calls it before Adam (src/model/device_training.rs: one
//! `clamp_in_place_launch` over the arena at ±0.1), and the CPU version at the same length.
//!
//!     cargo bench --bench clamp

mod common;

use common::{configure, values};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::clamp::{clamp_in_place, clamp_in_place_launch, CLIP_GRADIENT_VALUE};

/// The network's parameter count: the gradient arena clip-by-value runs over.
const ARENA: usize = 1_350_145;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("clamp");
    configure(&mut group);
    let mut grads = values(ARENA);
    group.bench_function(BenchmarkId::new("cpu in place", "arena 1350145"), |b| {
        b.iter(|| clamp_in_place(&mut grads, -CLIP_GRADIENT_VALUE, CLIP_GRADIENT_VALUE))
    });
    group.finish();
}

/// The kernel on emu (a small buffer) and cuda (the whole arena): bandwidth-bound, 8 bytes
/// (read, write) and 2 comparisons per value.
fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("clamp");
    configure(&mut group);
    const SHAPES: [(&str, usize); 1] = [("arena 1350145", ARENA)];
    const SMALL: [(&str, usize); 1] = [("small 16384", 16_384)];
    for kb in common::kernel_devices("clamp") {
        let shapes: &[(&str, usize)] = if kb.full_size { &SHAPES } else { &SMALL };
        let d = &kb.device;
        for &(name, len) in shapes {
            let mut grads = d.upload(&values(len)).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} in place"),
                2.0 * len as f64,
                8.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(8 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} in place", kb.name), name),
                |b| {
                    b.iter(|| {
                        clamp_in_place_launch(
                            d,
                            &mut grads,
                            -CLIP_GRADIENT_VALUE,
                            CLIP_GRADIENT_VALUE,
                        )
                        .unwrap();
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

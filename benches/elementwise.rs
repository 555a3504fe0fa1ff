//! Elementwise arithmetic (kernels/elementwise.cu): the encoder's skip sums `b = act2(…) +
//! skip(x)` (src/model/encoder.rs; on the device `add_in_place_launch`) at each block's
//! full-resolution output, batch 4 × 640 frames, out of place and in place; and the fill that
//! zeroes the whole gradient arena (1 350 145 values) before each backward.
//!
//!     cargo bench --bench elementwise

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::elementwise::{
    add_forward, add_forward_launch, add_in_place, add_in_place_launch, fill_launch,
};

/// (name, channels, h, w): the four encoder blocks' sums, before each block's downsampling.
const SHAPES: [(&str, usize, usize, usize); 4] = [
    ("16ch 640x176", 16, 640, 176),
    ("32ch 320x88", 32, 320, 88),
    ("64ch 160x44", 64, 160, 44),
    ("128ch 80x22", 128, 80, 22),
];

/// The network's parameter count: the gradient arena the fill zeroes.
const ARENA: usize = 1_350_145;

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    configure(&mut group);
    for (name, ch, h, w) in SHAPES {
        let a = values(BATCH * ch * h * w);
        let b_in = values(a.len());
        let mut out = vec![0.0; a.len()];
        group.bench_function(BenchmarkId::new("add", name), |b| {
            b.iter(|| add_forward(&mut out, &a, &b_in))
        });
        let mut y = values(a.len());
        group.bench_function(BenchmarkId::new("add in place", name), |b| {
            b.iter(|| add_in_place(&mut y, &b_in))
        });
    }
    group.finish();
}

/// The kernels on emu (a small shape) and cuda (the network's shapes): bandwidth-bound, 12
/// bytes and one add per element for either sum (two reads, one write; in place reads `y`),
/// 4 bytes per element for the fill.
fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("elementwise");
    configure(&mut group);
    const SMALL: [(&str, usize, usize, usize); 1] = [("small 8ch 40x44", 8, 40, 44)];
    for kb in common::kernel_devices("elementwise") {
        let shapes: &[(&str, usize, usize, usize)] = if kb.full_size { &SHAPES } else { &SMALL };
        let d = &kb.device;
        for &(name, ch, h, w) in shapes {
            let len = BATCH * ch * h * w;
            let a = d.upload(&values(len)).unwrap();
            let b_in = d.upload(&values(len)).unwrap();
            let mut out = d.alloc::<f32>(len).unwrap();
            common::print_roofline(&kb, &format!("{name} add"), len as f64, 12.0 * len as f64);
            group.throughput(criterion::Throughput::Bytes(12 * len as u64));
            group.bench_function(BenchmarkId::new(format!("{} add", kb.name), name), |b| {
                b.iter(|| {
                    add_forward_launch(d, &mut out, &a, &b_in).unwrap();
                    d.synchronize().unwrap();
                })
            });
            let mut y = d.upload(&values(len)).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} add in place"),
                len as f64,
                12.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(12 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} add in place", kb.name), name),
                |b| {
                    b.iter(|| {
                        add_in_place_launch(d, &mut y, &b_in).unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
        }
        let (name, len) = if kb.full_size {
            ("arena 1350145", ARENA)
        } else {
            ("small 16384", 16_384)
        };
        let mut grads = d.alloc::<f32>(len).unwrap();
        common::print_roofline(&kb, &format!("{name} fill"), 0.0, 4.0 * len as f64);
        group.throughput(criterion::Throughput::Bytes(4 * len as u64));
        group.bench_function(BenchmarkId::new(format!("{} fill", kb.name), name), |b| {
            b.iter(|| {
                fill_launch(d, &mut grads, 0.0).unwrap();
                d.synchronize().unwrap();
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench, bench_kernels);
criterion_main!(benches);

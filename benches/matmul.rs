//! The tiled SGEMM (kernels/matmul.cu) against the CPU's `gemm` crate at the GEMM shapes of the
//! network's layers (im2col convolutions, the LSTM's input projection), on cpu, emu (small
//! shapes) and cuda when present (with the roofline bound of each shape).
//!
//!     cargo bench --bench matmul

mod common;

use common::{configure, kernel_devices, print_roofline, values};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use mtosi::ops::matmul::{matmul, matmul_launch, DeviceMatMut, DeviceMatRef, MatRef, Threads};

/// (name, m, n, k): C (m × n) = A (m × k) · B (k × n).
type Shape = (&'static str, usize, usize, usize);
/// enc1.conv2 per image (16 × 112 640 from 144 taps); enc4.conv2 per image; the LSTM's input
/// projection per direction (2 560 rows × 704 gates from 176 features); a square one.
const FULL: [Shape; 4] = [
    ("conv 16x112640x144", 16, 112_640, 144),
    ("conv 128x1760x1152", 128, 1760, 1152),
    ("lstm-proj 2560x704x176", 2560, 704, 176),
    ("square 1024", 1024, 1024, 1024),
];
const SMALL: [Shape; 2] = [
    ("small 64x200x72", 64, 200, 72),
    ("small 130x70x33", 130, 70, 33),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("matmul");
    configure(&mut group);
    for (name, m, n, k) in FULL.iter().chain(&SMALL).copied() {
        let (a, b) = (values(m * k), values(k * n));
        let mut out = vec![0.0; m * n];
        group.throughput(Throughput::Elements((2 * m * n * k) as u64));
        group.bench_function(BenchmarkId::new("cpu", name), |bench| {
            bench.iter(|| {
                matmul(
                    &mut out,
                    n,
                    MatRef::row_major(&a, m, k),
                    MatRef::row_major(&b, k, n),
                    false,
                    Threads::All,
                )
            })
        });
    }
    for kb in kernel_devices("matmul") {
        let shapes: &[Shape] = if kb.full_size { &FULL } else { &SMALL };
        for &(name, m, n, k) in shapes {
            let d = &kb.device;
            let (a, b) = (
                d.upload(&values(m * k)).unwrap(),
                d.upload(&values(k * n)).unwrap(),
            );
            let mut out = d.alloc::<f32>(m * n).unwrap();
            let flops = (2 * m * n * k) as f64;
            print_roofline(&kb, name, flops, 4.0 * (m * k + k * n + m * n) as f64);
            group.throughput(Throughput::Elements(flops as u64));
            group.bench_function(BenchmarkId::new(kb.name, name), |bench| {
                bench.iter(|| {
                    matmul_launch(
                        d,
                        DeviceMatMut::row_major(&mut out, m, n),
                        DeviceMatRef::row_major(&a, m, k),
                        DeviceMatRef::row_major(&b, k, n),
                        1,
                        false,
                    )
                    .unwrap();
                    d.synchronize().unwrap();
                })
            });
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

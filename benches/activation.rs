//! Leaky ReLU forward and backward at the network's full-resolution and mid-resolution shapes.
//! Peer: `tools/bench/torch_ops.py leaky_relu`.
//!
//!     cargo bench --bench activation

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::activation::{leaky_relu_backward, leaky_relu_forward, LEAKY_RELU_SLOPE};

/// (name, channels, h, w)
const SHAPES: [(&str, usize, usize, usize); 2] =
    [("16ch 640x176", 16, 640, 176), ("64ch 160x44", 64, 160, 44)];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("leaky_relu");
    configure(&mut group);
    for (name, ch, h, w) in SHAPES {
        let inp = values(BATCH * ch * h * w);
        let mut out = vec![0.0; inp.len()];
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| leaky_relu_forward(&mut out, &inp, LEAKY_RELU_SLOPE))
        });
        let d_out = values(inp.len());
        let mut d_inp = vec![0.0; inp.len()];
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| leaky_relu_backward(&mut d_inp, &d_out, &inp, LEAKY_RELU_SLOPE))
        });
    }
    group.finish();
}

/// The kernels on emu (a small shape) and cuda (the network's shapes): bandwidth-bound, 8 bytes
/// per element forward and 12 backward.
fn bench_kernels(c: &mut Criterion) {
    use mtosi::ops::activation::{leaky_relu_backward_launch, leaky_relu_forward_launch};
    let mut group = c.benchmark_group("leaky_relu");
    configure(&mut group);
    const SMALL: [(&str, usize, usize, usize); 1] = [("small 8ch 40x44", 8, 40, 44)];
    for kb in common::kernel_devices("activation") {
        let shapes: &[(&str, usize, usize, usize)] = if kb.full_size { &SHAPES } else { &SMALL };
        let d = &kb.device;
        for &(name, ch, h, w) in shapes {
            let len = BATCH * ch * h * w;
            let inp = d.upload(&values(len)).unwrap();
            let mut out = d.alloc::<f32>(len).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} forward"),
                len as f64,
                8.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(8 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} forward", kb.name), name),
                |b| {
                    b.iter(|| {
                        leaky_relu_forward_launch(d, &mut out, &inp, LEAKY_RELU_SLOPE).unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
            let d_out = d.upload(&values(len)).unwrap();
            let mut d_inp = d.upload(&vec![0.0; len]).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} backward"),
                2.0 * len as f64,
                16.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(16 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} backward", kb.name), name),
                |b| {
                    b.iter(|| {
                        leaky_relu_backward_launch(d, &mut d_inp, &d_out, &inp, LEAKY_RELU_SLOPE)
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

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

criterion_group!(benches, bench);
criterion_main!(benches);

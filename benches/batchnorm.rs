//! BatchNorm2d (training mode) forward and backward at the network's full-resolution and
//! mid-resolution shapes. Peer: `tools/bench/torch_ops.py batchnorm`.
//!
//!     cargo bench --bench batchnorm

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::batchnorm::{
    batchnorm_backward, batchnorm_forward_train, BATCHNORM_EPS, BATCHNORM_MOMENTUM,
};

/// (name, channels, h, w)
const SHAPES: [(&str, usize, usize, usize); 2] =
    [("16ch 640x176", 16, 640, 176), ("64ch 160x44", 64, 160, 44)];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("batchnorm");
    configure(&mut group);
    for (name, ch, h, w) in SHAPES {
        let hw = h * w;
        let inp = values(BATCH * ch * hw);
        let (weight, bias) = (values(ch), values(ch));
        let mut out = vec![0.0; inp.len()];
        let (mut mean, mut rstd) = (vec![0.0; ch], vec![0.0; ch]);
        let (mut running_mean, mut running_var) = (vec![0.0; ch], vec![1.0; ch]);
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| {
                batchnorm_forward_train(
                    &mut out,
                    &mut mean,
                    &mut rstd,
                    &mut running_mean,
                    &mut running_var,
                    &inp,
                    &weight,
                    &bias,
                    BATCH,
                    ch,
                    hw,
                    BATCHNORM_MOMENTUM,
                    BATCHNORM_EPS,
                )
            })
        });
        let d_out = values(inp.len());
        let mut d_inp = vec![0.0; inp.len()];
        let (mut d_weight, mut d_bias) = (vec![0.0; ch], vec![0.0; ch]);
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| {
                batchnorm_backward(
                    Some(&mut d_inp),
                    &mut d_weight,
                    &mut d_bias,
                    &d_out,
                    &inp,
                    &weight,
                    &mean,
                    &rstd,
                    BATCH,
                    ch,
                    hw,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

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

/// The kernels (fused with leaky ReLU, as the network runs them) on emu (a small shape) and
/// cuda (the network's shapes).
fn bench_kernels(c: &mut Criterion) {
    use mtosi::ops::activation::LEAKY_RELU_SLOPE;
    use mtosi::ops::batchnorm::{
        batchnorm_backward_launch, batchnorm_forward_train_launch, BatchNormWorkspace,
    };
    let mut group = c.benchmark_group("batchnorm");
    configure(&mut group);
    const SMALL: [(&str, usize, usize, usize); 1] = [("small 8ch 40x44", 8, 40, 44)];
    for kb in common::kernel_devices("batchnorm") {
        let shapes: &[(&str, usize, usize, usize)] = if kb.full_size { &SHAPES } else { &SMALL };
        let d = &kb.device;
        for &(name, ch, h, w) in shapes {
            let hw = h * w;
            let len = BATCH * ch * hw;
            let mut ws = BatchNormWorkspace::new(d, BATCH, ch, hw).unwrap();
            let inp = d.upload(&values(len)).unwrap();
            let (weight, bias) = (
                d.upload(&values(ch)).unwrap(),
                d.upload(&values(ch)).unwrap(),
            );
            let mut out = d.alloc::<f32>(len).unwrap();
            let (mut mean, mut rstd) = (d.alloc::<f32>(ch).unwrap(), d.alloc::<f32>(ch).unwrap());
            let mut running_mean = d.upload(&vec![0.0; ch]).unwrap();
            let mut running_var = d.upload(&vec![1.0; ch]).unwrap();
            // Forward: read x twice (statistics, apply), write y once; backward: read d_y and x
            // twice, read-modify-write d_x once.
            common::print_roofline(
                &kb,
                &format!("{name} forward"),
                6.0 * len as f64,
                12.0 * len as f64,
            );
            group.bench_function(
                BenchmarkId::new(format!("{} forward+lrelu", kb.name), name),
                |b| {
                    b.iter(|| {
                        batchnorm_forward_train_launch(
                            d,
                            &mut ws,
                            &mut out,
                            &mut mean,
                            &mut rstd,
                            &mut running_mean,
                            &mut running_var,
                            &inp,
                            &weight,
                            &bias,
                            BATCHNORM_MOMENTUM,
                            BATCHNORM_EPS,
                            Some(LEAKY_RELU_SLOPE),
                        )
                        .unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
            let d_out = d.upload(&values(len)).unwrap();
            let mut d_inp = d.alloc::<f32>(len).unwrap();
            let (mut d_weight, mut d_bias) =
                (d.alloc::<f32>(ch).unwrap(), d.alloc::<f32>(ch).unwrap());
            common::print_roofline(
                &kb,
                &format!("{name} backward"),
                12.0 * len as f64,
                24.0 * len as f64,
            );
            group.bench_function(
                BenchmarkId::new(format!("{} backward+lrelu", kb.name), name),
                |b| {
                    b.iter(|| {
                        batchnorm_backward_launch(
                            d,
                            &mut ws,
                            Some(&mut d_inp),
                            &mut d_weight,
                            &mut d_bias,
                            &d_out,
                            &inp,
                            &weight,
                            &mean,
                            &rstd,
                            Some(LEAKY_RELU_SLOPE),
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

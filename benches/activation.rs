//! Leaky ReLU forward and backward at the network's full-resolution and mid-resolution shapes,
//! and the sigmoid forward and backward (kernels/activation.cu's other two kernels) at the
//! network's two sigmoids: the decoder's output (1 channel, 640 × 176) and the piano roll
//! (640 × 88), batch 4. Peer: `tools/bench/torch_ops.py leaky_relu`.
//!
//!     cargo bench --bench activation

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::activation::{
    leaky_relu_backward, leaky_relu_forward, sigmoid_backward, sigmoid_forward, LEAKY_RELU_SLOPE,
};

/// (name, channels, h, w)
const SHAPES: [(&str, usize, usize, usize); 2] =
    [("16ch 640x176", 16, 640, 176), ("64ch 160x44", 64, 160, 44)];

/// The sigmoids' (name, elements per clip): the decoder's output `feat1` (1 × 640 × 176,
/// before the BiLSTM) and the piano roll (640 × 88, after the Linear).
const SIGMOID_SHAPES: [(&str, usize); 2] =
    [("feat1 640x176", 640 * 176), ("roll 640x88", 640 * 88)];

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

fn bench_sigmoid(c: &mut Criterion) {
    let mut group = c.benchmark_group("sigmoid");
    configure(&mut group);
    for (name, per_clip) in SIGMOID_SHAPES {
        let inp = values(BATCH * per_clip);
        let mut out = vec![0.0; inp.len()];
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| sigmoid_forward(&mut out, &inp))
        });
        let d_out = values(inp.len());
        let mut d_inp = vec![0.0; inp.len()];
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| sigmoid_backward(&mut d_inp, &d_out, &out))
        });
    }
    group.finish();
}

/// The sigmoid kernels on emu (a small shape) and cuda (the network's shapes): bandwidth-bound,
/// 8 bytes and ~4 FLOPs (exp, add, divide) per element forward; backward reads d_out and out
/// and read-modify-writes d_inp, 16 bytes and ~4 FLOPs.
fn bench_sigmoid_kernels(c: &mut Criterion) {
    use mtosi::ops::activation::{sigmoid_backward_launch, sigmoid_forward_launch};
    let mut group = c.benchmark_group("sigmoid");
    configure(&mut group);
    const SMALL: [(&str, usize); 1] = [("small 32x88", 32 * 88)];
    for kb in common::kernel_devices("activation") {
        let shapes: &[(&str, usize)] = if kb.full_size {
            &SIGMOID_SHAPES
        } else {
            &SMALL
        };
        let d = &kb.device;
        for &(name, per_clip) in shapes {
            let len = BATCH * per_clip;
            let inp = d.upload(&values(len)).unwrap();
            let mut out = d.alloc::<f32>(len).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} forward"),
                4.0 * len as f64,
                8.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(8 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} forward", kb.name), name),
                |b| {
                    b.iter(|| {
                        sigmoid_forward_launch(d, &mut out, &inp).unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
            let d_out = d.upload(&values(len)).unwrap();
            let mut d_inp = d.upload(&vec![0.0; len]).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} backward"),
                4.0 * len as f64,
                16.0 * len as f64,
            );
            group.throughput(criterion::Throughput::Bytes(16 * len as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} backward", kb.name), name),
                |b| {
                    b.iter(|| {
                        sigmoid_backward_launch(d, &mut d_inp, &d_out, &out).unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    bench,
    bench_kernels,
    bench_sigmoid,
    bench_sigmoid_kernels
);
criterion_main!(benches);

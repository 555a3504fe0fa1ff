//! Channel concatenation (kernels/concat.cu) at the decoder's three concatenations
//! (src/model/decoder.rs): the upsampled tensor with the encoder's side output, batch 4 ×
//! 640 frames, forward and backward (the gradient split back into both parts).
//!
//!     cargo bench --bench concat

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::concat::{
    concat_channels_backward, concat_channels_backward_launch, concat_channels_forward,
    concat_channels_forward_launch,
};

/// (name, upsampled channels, skip channels, h, w): d_block1 (192 = 128 + c1's 64 at
/// 80×22), d_block2 (96 = 64 + c2's 32 at 160×44), d_block3 (48 = 32 + c3's 16 at 320×88).
const SHAPES: [(&str, usize, usize, usize, usize); 3] = [
    ("128+64ch 80x22", 128, 64, 80, 22),
    ("64+32ch 160x44", 64, 32, 160, 44),
    ("32+16ch 320x88", 32, 16, 320, 88),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("concat_channels");
    configure(&mut group);
    for (name, c_a, c_b, h, w) in SHAPES {
        let hw = h * w;
        let a = values(BATCH * c_a * hw);
        let b_in = values(BATCH * c_b * hw);
        let mut out = vec![0.0; a.len() + b_in.len()];
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| concat_channels_forward(&mut out, &a, &b_in, BATCH, c_a, c_b, hw))
        });
        let d_out = values(out.len());
        let mut d_a = vec![0.0; a.len()];
        let mut d_b = vec![0.0; b_in.len()];
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| {
                concat_channels_backward(
                    Some(d_a.as_mut_slice()),
                    Some(d_b.as_mut_slice()),
                    &d_out,
                    BATCH,
                    c_a,
                    c_b,
                    hw,
                )
            })
        });
    }
    group.finish();
}

/// The kernels on emu (a small shape) and cuda (the network's shapes): bandwidth-bound, 8 bytes
/// per output element forward (read, write) and 12 backward (d_out read, d_a / d_b
/// read-modify-written, one add each).
fn bench_kernels(c: &mut Criterion) {
    let mut group = c.benchmark_group("concat_channels");
    configure(&mut group);
    const SMALL: [(&str, usize, usize, usize, usize); 1] = [("small 8+4ch 20x22", 8, 4, 20, 22)];
    for kb in common::kernel_devices("concat") {
        let shapes: &[(&str, usize, usize, usize, usize)] =
            if kb.full_size { &SHAPES } else { &SMALL };
        let d = &kb.device;
        for &(name, c_a, c_b, h, w) in shapes {
            let hw = h * w;
            let total = BATCH * (c_a + c_b) * hw;
            let a = d.upload(&values(BATCH * c_a * hw)).unwrap();
            let b_in = d.upload(&values(BATCH * c_b * hw)).unwrap();
            let mut out = d.alloc::<f32>(total).unwrap();
            common::print_roofline(&kb, &format!("{name} forward"), 0.0, 8.0 * total as f64);
            group.throughput(criterion::Throughput::Bytes(8 * total as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} forward", kb.name), name),
                |b| {
                    b.iter(|| {
                        concat_channels_forward_launch(d, &mut out, &a, &b_in, BATCH, c_a, c_b, hw)
                            .unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
            let d_out = d.upload(&values(total)).unwrap();
            let mut d_a = d.upload(&vec![0.0; BATCH * c_a * hw]).unwrap();
            let mut d_b = d.upload(&vec![0.0; BATCH * c_b * hw]).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} backward"),
                total as f64,
                12.0 * total as f64,
            );
            group.throughput(criterion::Throughput::Bytes(12 * total as u64));
            group.bench_function(
                BenchmarkId::new(format!("{} backward", kb.name), name),
                |b| {
                    b.iter(|| {
                        concat_channels_backward_launch(
                            d,
                            Some(&mut d_a),
                            Some(&mut d_b),
                            &d_out,
                            BATCH,
                            c_a,
                            c_b,
                            hw,
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

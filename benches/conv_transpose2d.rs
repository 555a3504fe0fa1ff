//! ConvTranspose2d forward and backward at the decoder's real shapes (batch 4 × 640 frames).
//! Peer: `tools/bench/torch_ops.py conv_transpose2d` (PyTorch, 2 threads), same shapes.
//!
//!     cargo bench --bench conv_transpose2d

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::conv_transpose2d::{
    conv_transpose2d_backward, conv_transpose2d_forward, conv_transpose2d_output_padding,
};

/// (layer, c_in, h, w, c_out, k, stride, pad, output h, output w)
type Layer = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);
const LAYERS: [Layer; 6] = [
    (
        "dec4.us 16-16 2x2s2 to 640x176",
        16,
        320,
        88,
        16,
        2,
        2,
        0,
        640,
        176,
    ),
    (
        "dec4.conv2d 16-8 640x176",
        16,
        640,
        176,
        8,
        3,
        1,
        1,
        640,
        176,
    ),
    ("dec4.conv1d 8-1 640x176", 8, 640, 176, 1, 3, 1, 1, 640, 176),
    (
        "dec3.conv2d 48-24 320x88",
        48,
        320,
        88,
        24,
        3,
        1,
        1,
        320,
        88,
    ),
    (
        "dec1.us 128-128 2x2s2 to 80x22",
        128,
        40,
        11,
        128,
        2,
        2,
        0,
        80,
        22,
    ),
    ("dec1.conv2d 192-96 80x22", 192, 80, 22, 96, 3, 1, 1, 80, 22),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv_transpose2d");
    configure(&mut group);
    for (name, c_in, h, w, c_out, k, stride, pad, h_out, w_out) in LAYERS {
        let op_h = conv_transpose2d_output_padding(h, h_out, k, stride, pad).expect("valid size");
        let op_w = conv_transpose2d_output_padding(w, w_out, k, stride, pad).expect("valid size");
        let inp = values(BATCH * c_in * h * w);
        let weight = values(c_in * c_out * k * k);
        let bias = values(c_out);
        let mut out = vec![0.0; BATCH * c_out * h_out * w_out];
        group.bench_function(BenchmarkId::new("forward", name), |b| {
            b.iter(|| {
                conv_transpose2d_forward(
                    &mut out,
                    &inp,
                    &weight,
                    Some(&bias),
                    BATCH,
                    c_in,
                    h,
                    w,
                    c_out,
                    k,
                    stride,
                    pad,
                    op_h,
                    op_w,
                )
            })
        });
        let d_out = values(out.len());
        let mut d_inp = vec![0.0; inp.len()];
        let mut d_weight = vec![0.0; weight.len()];
        let mut d_bias = vec![0.0; c_out];
        group.bench_function(BenchmarkId::new("backward", name), |b| {
            b.iter(|| {
                conv_transpose2d_backward(
                    Some(&mut d_inp),
                    &mut d_weight,
                    Some(&mut d_bias),
                    &d_out,
                    &inp,
                    &weight,
                    BATCH,
                    c_in,
                    h,
                    w,
                    c_out,
                    k,
                    stride,
                    pad,
                    op_h,
                    op_w,
                )
            })
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);

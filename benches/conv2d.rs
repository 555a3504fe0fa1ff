//! Conv2d forward and backward at the network's real shapes (batch 4, 640 frames × 176 bins
//! for the first block). Peer: `tools/bench/torch_ops.py` (PyTorch, 2 threads), same shapes.
//!
//!     cargo bench --bench conv2d

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::batchnorm::{batchnorm_leaky_relu_forward_eval, BATCHNORM_EPS};
use mtosi::ops::conv2d::{
    bf16_supported, conv2d_backward, conv2d_forward, conv2d_forward_finished, conv2d_output_size,
    ConvFinish, BF16_VAR, IMPLICIT_VAR, WINOGRAD_VAR,
};

/// (layer, c_in, h, w, c_out, k, stride, pad) for batch 4 × 640 frames.
type Layer = (
    &'static str,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
    usize,
);
const LAYERS: [Layer; 8] = [
    ("enc1.conv1 1-16 640x176", 1, 640, 176, 16, 3, 1, 1),
    ("enc1.conv2 16-16 640x176", 16, 640, 176, 16, 3, 1, 1),
    ("enc1.skip 1-16 1x1 640x176", 1, 640, 176, 16, 1, 1, 0),
    ("enc1.ds 16-16 2x2s2 640x176", 16, 640, 176, 16, 2, 2, 0),
    ("enc2.conv2 32-32 320x88", 32, 320, 88, 32, 3, 1, 1),
    ("enc3.conv2 64-64 160x44", 64, 160, 44, 64, 3, 1, 1),
    ("enc4.conv2 128-128 80x22", 128, 80, 22, 128, 3, 1, 1),
    ("enc4.ds 128-128 2x2s2 80x22", 128, 80, 22, 128, 2, 2, 0),
];

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d");
    configure(&mut group);
    // Each layer through the default paths, then (where they apply: stride-1 layers with more
    // than 16 output channels, the 2×2 stride-2 ones) with the implicit-GEMM and stride-2
    // kernels off, i.e. im2col + GEMM, for the comparison; and the opt-in Winograd F(2×2, 3×3)
    // path on the 3×3 layers with more than 16 channels each side; and the opt-in bf16 products
    // (AVX512-BF16 CPUs only) on the 2×2 and 3×3 layers with at least 8 channels each side.
    for (variant, implicit, winograd, bf16) in [
        ("", "1", "0", "0"),
        (" im2col", "0", "0", "0"),
        (" winograd", "1", "1", "0"),
        (" bf16", "1", "0", "1"),
    ] {
        if bf16 == "1" && !bf16_supported() {
            continue;
        }
        std::env::set_var(IMPLICIT_VAR, implicit);
        std::env::set_var(WINOGRAD_VAR, winograd);
        std::env::set_var(BF16_VAR, bf16);
        let changed: fn(&Layer) -> bool = match variant {
            "" => |_| true,
            " im2col" => |&(_, _, _, _, c_out, k, stride, _)| {
                (stride == 1 && k > 1 && c_out > 16) || (k == 2 && stride == 2)
            },
            " winograd" => |&(_, c_in, _, _, c_out, k, stride, pad)| {
                k == 3 && stride == 1 && pad == 1 && c_in > 16 && c_out > 16
            },
            _ => |&(_, c_in, _, _, c_out, k, stride, _)| {
                k > 1 && c_in.min(c_out) >= 8 && (stride == 1 || k == 2)
            },
        };
        bench_layers(&mut group, variant, changed);
    }
    std::env::remove_var(IMPLICIT_VAR);
    std::env::remove_var(WINOGRAD_VAR);
    std::env::remove_var(BF16_VAR);
    group.finish();
}

fn bench_layers(
    group: &mut criterion::BenchmarkGroup<criterion::measurement::WallTime>,
    variant: &str,
    changed: fn(&Layer) -> bool,
) {
    for layer in LAYERS {
        if !changed(&layer) {
            continue;
        }
        let (name, c_in, h, w, c_out, k, stride, pad) = layer;
        let (h_out, w_out) = (
            conv2d_output_size(h, k, stride, pad),
            conv2d_output_size(w, k, stride, pad),
        );
        let inp = values(BATCH * c_in * h * w);
        let weight = values(c_out * c_in * k * k);
        let bias = values(c_out);
        let mut out = vec![0.0; BATCH * c_out * h_out * w_out];
        group.bench_function(BenchmarkId::new(format!("forward{variant}"), name), |b| {
            b.iter(|| {
                conv2d_forward(
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
                )
            })
        });
        let d_out = values(out.len());
        let mut d_inp = vec![0.0; inp.len()];
        let mut d_weight = vec![0.0; weight.len()];
        let mut d_bias = vec![0.0; c_out];
        group.bench_function(BenchmarkId::new(format!("backward{variant}"), name), |b| {
            b.iter(|| {
                conv2d_backward(
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
                )
            })
        });
    }
}

/// Small layers for emu (same kinds: 3×3 pad 1, 1×1 skip, 2×2 stride 2).
const SMALL_LAYERS: [Layer; 3] = [
    ("small conv 8-8 24x20", 8, 24, 20, 8, 3, 1, 1),
    ("small skip 4-8 1x1 24x20", 4, 24, 20, 8, 1, 1, 0),
    ("small ds 8-8 2x2s2 24x20", 8, 24, 20, 8, 2, 2, 0),
];

/// im2col + the tiled SGEMM on emu (small layers) and cuda (the network's layers).
fn bench_kernels(c: &mut Criterion) {
    use mtosi::ops::conv2d::{
        conv2d_backward_launch, conv2d_forward_launch, ConvWorkspace, DeviceConvGeometry,
    };
    let mut group = c.benchmark_group("conv2d");
    configure(&mut group);
    for kb in common::kernel_devices("conv2d") {
        let layers: &[Layer] = if kb.full_size { &LAYERS } else { &SMALL_LAYERS };
        let d = &kb.device;
        for &(name, c_in, h, w, c_out, k, stride, pad) in layers {
            let g = DeviceConvGeometry::conv2d(BATCH, c_in, h, w, c_out, k, stride, pad);
            let mut ws = ConvWorkspace::new(d, &g).unwrap();
            let inp = d.upload(&values(BATCH * c_in * h * w)).unwrap();
            let weight = d.upload(&values(c_out * c_in * k * k)).unwrap();
            let bias = d.upload(&values(c_out)).unwrap();
            let out_len = BATCH * c_out * g.h_out * g.w_out;
            let mut out = d.alloc::<f32>(out_len).unwrap();
            let macs = (out_len * c_in * k * k) as f64;
            let col_bytes = 4.0 * 2.0 * g.col_len() as f64;
            let io_bytes = 4.0 * (inp.len() + out_len + weight.len()) as f64;
            common::print_roofline(
                &kb,
                &format!("{name} forward"),
                2.0 * macs,
                io_bytes + col_bytes,
            );
            group.bench_function(
                BenchmarkId::new(format!("{} forward", kb.name), name),
                |b| {
                    b.iter(|| {
                        conv2d_forward_launch(d, &mut ws, &mut out, &inp, &weight, Some(&bias), &g)
                            .unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
            let d_out = d.upload(&values(out_len)).unwrap();
            let mut d_inp = d.alloc::<f32>(inp.len()).unwrap();
            let mut d_weight = d.alloc::<f32>(weight.len()).unwrap();
            let mut d_bias = d.alloc::<f32>(c_out).unwrap();
            common::print_roofline(
                &kb,
                &format!("{name} backward"),
                4.0 * macs,
                2.0 * io_bytes + 2.0 * col_bytes,
            );
            group.bench_function(
                BenchmarkId::new(format!("{} backward", kb.name), name),
                |b| {
                    b.iter(|| {
                        conv2d_backward_launch(
                            d,
                            &mut ws,
                            Some(&mut d_inp),
                            &mut d_weight,
                            Some(&mut d_bias),
                            &d_out,
                            &inp,
                            &weight,
                            &g,
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

/// Evaluation mode as inference runs it (one 1088-frame window): the convolution, BatchNorm2d
/// and leaky ReLU (and for enc1.conv2 the skip branch's sum) as three ops, and fused
/// (`conv2d_forward_finished`: the sums stored normalised and activated), in float32 and bf16.
fn bench_finished(c: &mut Criterion) {
    let mut group = c.benchmark_group("conv2d eval+bn+lrelu");
    configure(&mut group);
    const FRAMES: usize = 1088;
    let layers: [(&str, usize, usize, usize, usize, bool); 3] = [
        ("enc1.conv1 1-16 1088x176", 1, FRAMES, 176, 16, false),
        ("enc1.conv2+skip 16-16 1088x176", 16, FRAMES, 176, 16, true),
        ("enc3.conv2 64-64 272x44", 64, FRAMES / 4, 44, 64, false),
    ];
    for bf16 in ["0", "1"] {
        if bf16 == "1" && !bf16_supported() {
            continue;
        }
        std::env::set_var(BF16_VAR, bf16);
        let variant = if bf16 == "1" { " bf16" } else { "" };
        for (name, c_in, h, w, c_out, residual) in layers {
            let inp = values(c_in * h * w);
            let weight = values(c_out * c_in * 9);
            let bias = values(c_out);
            let (bn_weight, bn_bias, mean) = (values(c_out), values(c_out), values(c_out));
            let var = vec![0.7f32; c_out];
            let skip = values(c_out * h * w);
            let mut conv = vec![0.0f32; skip.len()];
            let mut out = vec![0.0f32; skip.len()];
            let slope = 0.01;
            group.bench_function(BenchmarkId::new(format!("separate{variant}"), name), |b| {
                b.iter(|| {
                    conv2d_forward(
                        &mut conv,
                        &inp,
                        &weight,
                        Some(&bias),
                        1,
                        c_in,
                        h,
                        w,
                        c_out,
                        3,
                        1,
                        1,
                    );
                    batchnorm_leaky_relu_forward_eval(
                        &mut out,
                        &conv,
                        &bn_weight,
                        &bn_bias,
                        &mean,
                        &var,
                        1,
                        c_out,
                        h * w,
                        BATCHNORM_EPS,
                        slope,
                    );
                    if residual {
                        out.iter_mut().zip(&skip).for_each(|(o, s)| *o += s);
                    }
                })
            });
            let finish = ConvFinish::batchnorm_leaky_relu(
                &bn_weight,
                &bn_bias,
                &mean,
                &var,
                BATCHNORM_EPS,
                slope,
                residual,
            );
            group.bench_function(BenchmarkId::new(format!("fused{variant}"), name), |b| {
                b.iter(|| {
                    if residual {
                        out.copy_from_slice(&skip);
                    }
                    conv2d_forward_finished(
                        &mut out,
                        &inp,
                        &weight,
                        Some(&bias),
                        &finish,
                        1,
                        c_in,
                        h,
                        w,
                        c_out,
                        3,
                        1,
                        1,
                    );
                })
            });
        }
    }
    std::env::remove_var(BF16_VAR);
    group.finish();
}

criterion_group!(benches, bench, bench_kernels, bench_finished);
criterion_main!(benches);

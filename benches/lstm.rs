//! Bidirectional LSTM (176 → 176 per direction) forward and backward on batch 4 × 640 frames,
//! and Linear (352 → 88) on the same rows. Peer: `tools/bench/torch_ops.py lstm` / `linear`.
//! Also the evaluation's forward, batch 1 × 1875 frames (60 s), float32 and (AVX512-BF16 CPUs)
//! with the bf16 recurrence of `--precision bf16`.
//!
//!     cargo bench --bench lstm

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use mtosi::ops::conv2d::bf16_supported;
use mtosi::ops::linear::{linear_backward, linear_forward};
use mtosi::ops::lstm::{
    lstm_backward, lstm_forward, lstm_forward_bf16, LstmGradients, LstmWeights,
};

const FRAMES: usize = 640;
const FEATURES: usize = 176;

fn weights(flat: &[f32]) -> LstmWeights<'_> {
    let (w_ih, rest) = flat.split_at(4 * FEATURES * FEATURES);
    let (w_hh, rest) = rest.split_at(4 * FEATURES * FEATURES);
    let (b_ih, b_hh) = rest.split_at(4 * FEATURES);
    LstmWeights {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
    }
}

fn gradients(flat: &mut [f32]) -> LstmGradients<'_> {
    let (w_ih, rest) = flat.split_at_mut(4 * FEATURES * FEATURES);
    let (w_hh, rest) = rest.split_at_mut(4 * FEATURES * FEATURES);
    let (b_ih, b_hh) = rest.split_at_mut(4 * FEATURES);
    LstmGradients {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
    }
}

type Forward =
    fn(&mut [f32], &mut [f32], &mut [f32], &[f32], &[LstmWeights; 2], usize, usize, usize, usize);

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("lstm");
    configure(&mut group);
    let direction_len = 8 * FEATURES * FEATURES + 8 * FEATURES;
    // Small weights, as PyTorch's initialisation (±1/sqrt(176)), so the gates do not saturate.
    let params: Vec<Vec<f32>> = (0..2)
        .map(|_| values(direction_len).iter().map(|v| v * 0.15).collect())
        .collect();
    let w = [weights(&params[0]), weights(&params[1])];
    let inp = values(BATCH * FRAMES * FEATURES);
    let mut out = vec![0.0; BATCH * FRAMES * 2 * FEATURES];
    let mut gates = vec![0.0; 2 * BATCH * FRAMES * 4 * FEATURES];
    let mut cells = vec![0.0; 2 * BATCH * FRAMES * FEATURES];
    let name = "4x640 176-176 bidirectional";
    group.bench_function(BenchmarkId::new("forward", name), |b| {
        b.iter(|| {
            lstm_forward(
                &mut out, &mut gates, &mut cells, &inp, &w, BATCH, FRAMES, FEATURES, FEATURES,
            )
        })
    });
    let d_out = values(out.len());
    let mut d_inp = vec![0.0; inp.len()];
    let mut grads = vec![vec![0.0; direction_len]; 2];
    // The backward writes its gate gradients over the gates: each iteration gets a fresh copy,
    // made outside the timing.
    group.bench_function(BenchmarkId::new("backward", name), |b| {
        b.iter_batched_ref(
            || gates.clone(),
            |gates| {
                let (g0, g1) = grads.split_at_mut(1);
                lstm_backward(
                    Some(&mut d_inp),
                    &mut [gradients(&mut g0[0]), gradients(&mut g1[0])],
                    &d_out,
                    &inp,
                    &out,
                    gates,
                    &cells,
                    &w,
                    BATCH,
                    FRAMES,
                    FEATURES,
                    FEATURES,
                )
            },
            BatchSize::LargeInput,
        )
    });
    let eval_frames = 1875;
    let eval_inp = values(eval_frames * FEATURES);
    let mut out = vec![0.0; eval_frames * 2 * FEATURES];
    let mut gates = vec![0.0; 2 * eval_frames * 4 * FEATURES];
    let mut cells = vec![0.0; 2 * eval_frames * FEATURES];
    let forwards = [
        ("forward", lstm_forward as Forward),
        ("forward bf16", lstm_forward_bf16),
    ];
    for (id, forward) in forwards {
        if id.ends_with("bf16") && !bf16_supported() {
            continue;
        }
        let name = "1x1875 176-176 bidirectional";
        group.bench_function(BenchmarkId::new(id, name), |b| {
            b.iter(|| {
                forward(
                    &mut out,
                    &mut gates,
                    &mut cells,
                    &eval_inp,
                    &w,
                    1,
                    eval_frames,
                    FEATURES,
                    FEATURES,
                )
            })
        });
    }
    group.finish();

    let mut group = c.benchmark_group("linear");
    configure(&mut group);
    let (rows, fi, fo) = (BATCH * FRAMES, 2 * FEATURES, 88);
    let (x, weight, bias) = (values(rows * fi), values(fo * fi), values(fo));
    let mut y = vec![0.0; rows * fo];
    let name = "2560 352-88";
    group.bench_function(BenchmarkId::new("forward", name), |b| {
        b.iter(|| linear_forward(&mut y, &x, &weight, Some(&bias), rows, fi, fo))
    });
    let d_y = values(y.len());
    let (mut d_x, mut d_w, mut d_b) = (vec![0.0; x.len()], vec![0.0; weight.len()], vec![0.0; fo]);
    group.bench_function(BenchmarkId::new("backward", name), |b| {
        b.iter(|| {
            linear_backward(
                Some(&mut d_x),
                &mut d_w,
                Some(&mut d_b),
                &d_y,
                &x,
                &weight,
                rows,
                fi,
                fo,
            )
        })
    });
    group.finish();
}

/// The kernels on emu (a small LSTM) and cuda (the network's), with each recurrence kernel
/// (`LstmRecurrence`: grid-synchronised, per sequence): the recurrences are one launch each; on
/// cuda the time divided by 640 frames is the per-step latency (kernels/lstm.cu expects
/// ~2-3 µs for the grid one, ~3-5 µs per sequence). On emu the grid one runs every block on its
/// own OS thread, so its time says nothing about a GPU.
fn bench_kernels(c: &mut Criterion) {
    use mtosi::ops::lstm::{
        lstm_backward_launch, lstm_forward_launch, DeviceLstmGradients, DeviceLstmWeights,
        LstmRecurrence, LstmShape, LstmWorkspace,
    };
    let mut group = c.benchmark_group("lstm");
    configure(&mut group);
    for kb in common::kernel_devices("lstm") {
        let d = &kb.device;
        let (frames, features) = if kb.full_size {
            (FRAMES, FEATURES)
        } else {
            (16, 24)
        };
        let s = LstmShape {
            batch: BATCH,
            frames,
            input_size: features,
            hidden_size: features,
        };
        let hid = features;
        let upload = |len: usize| {
            d.upload(&values(len).iter().map(|v| v * 0.15).collect::<Vec<_>>())
                .unwrap()
        };
        let params: Vec<[mtosi::device::DeviceBuffer<f32>; 4]> = (0..2)
            .map(|_| {
                [
                    upload(4 * hid * hid),
                    upload(4 * hid * hid),
                    upload(4 * hid),
                    upload(4 * hid),
                ]
            })
            .collect();
        let weights = || {
            [0, 1].map(|i| DeviceLstmWeights {
                w_ih: &params[i][0],
                w_hh: &params[i][1],
                b_ih: &params[i][2],
                b_hh: &params[i][3],
            })
        };
        for (recurrence, label) in [
            (LstmRecurrence::Grid, "grid"),
            (LstmRecurrence::PerSequence, "per-sequence"),
        ] {
            let rows = BATCH * frames;
            let mut ws = LstmWorkspace::with_recurrence(d, s, recurrence).unwrap();
            let inp = d.upload(&values(rows * features)).unwrap();
            let mut out = d.alloc::<f32>(rows * 2 * hid).unwrap();
            let mut gates = d.alloc::<f32>(2 * rows * 4 * hid).unwrap();
            let mut cells = d.alloc::<f32>(2 * rows * hid).unwrap();
            let name = format!("{BATCH}x{frames} {features}-{hid} bidirectional {label}");
            let flops = 2.0 * 2.0 * rows as f64 * 4.0 * hid as f64 * (features + hid) as f64;
            common::print_roofline(
                &kb,
                &format!("lstm forward {name}"),
                flops,
                4.0 * 2.0 * 8.0 * (hid * hid) as f64,
            );
            group.bench_function(
                BenchmarkId::new(format!("{} forward", kb.name), &name),
                |b| {
                    b.iter(|| {
                        lstm_forward_launch(
                            d,
                            &mut ws,
                            &mut out,
                            &mut gates,
                            &mut cells,
                            &inp,
                            weights(),
                        )
                        .unwrap();
                        d.synchronize().unwrap();
                    })
                },
            );
            let d_out = d.upload(&values(out.len())).unwrap();
            let mut d_inp = d.alloc::<f32>(inp.len()).unwrap();
            let mut grads: Vec<[mtosi::device::DeviceBuffer<f32>; 4]> = (0..2)
                .map(|_| {
                    [
                        upload(4 * hid * hid),
                        upload(4 * hid * hid),
                        upload(4 * hid),
                        upload(4 * hid),
                    ]
                })
                .collect();
            group.bench_function(
                BenchmarkId::new(format!("{} backward", kb.name), &name),
                |b| {
                    b.iter(|| {
                        let (g0, g1) = grads.split_at_mut(1);
                        let grads = [&mut g0[0], &mut g1[0]].map(|g| {
                            let [w_ih, w_hh, b_ih, b_hh] = g;
                            DeviceLstmGradients {
                                w_ih,
                                w_hh,
                                b_ih,
                                b_hh,
                            }
                        });
                        lstm_backward_launch(
                            d,
                            &mut ws,
                            Some(&mut d_inp),
                            grads,
                            &d_out,
                            &inp,
                            &out,
                            &gates,
                            &cells,
                            weights(),
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

//! Bidirectional LSTM (176 → 176 per direction) forward and backward on batch 4 × 640 frames,
//! and Linear (352 → 88) on the same rows. Peer: `tools/bench/torch_ops.py lstm` / `linear`.
//!
//!     cargo bench --bench lstm

mod common;

use common::{configure, values, BATCH};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use mtosi::ops::linear::{linear_backward, linear_forward};
use mtosi::ops::lstm::{lstm_backward, lstm_forward, LstmGradients, LstmWeights};

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
    group.bench_function(BenchmarkId::new("backward", name), |b| {
        b.iter(|| {
            let (g0, g1) = grads.split_at_mut(1);
            lstm_backward(
                Some(&mut d_inp),
                &mut [gradients(&mut g0[0]), gradients(&mut g1[0])],
                &d_out,
                &inp,
                &out,
                &gates,
                &cells,
                &w,
                BATCH,
                FRAMES,
                FEATURES,
                FEATURES,
            )
        })
    });
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

criterion_group!(benches, bench);
criterion_main!(benches);

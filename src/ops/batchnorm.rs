//! BatchNorm2d, NCHW float32, as `torch.nn.BatchNorm2d` (affine, tracking running statistics).
//!
//! Shapes: `inp`, `out` (n, c, hw) where `hw = h·w`; `weight`, `bias`, `running_mean`,
//! `running_var`, `save_mean`, `save_rstd` (c).
//!
//! Training normalises with the batch statistics (biased variance) and moves the running
//! statistics toward the batch mean and the UNBIASED batch variance by `momentum`, as PyTorch.
//! Evaluation normalises with the running statistics. Statistics are accumulated in f64, as
//! PyTorch's CPU kernel does.
// llm.c style: the shapes are arguments, so the argument lists are long on purpose.
#![allow(clippy::too_many_arguments)]

use rayon::prelude::*;

use super::{check_len, sums};

/// PyTorch's default momentum of the running statistics.
pub const BATCHNORM_MOMENTUM: f32 = 0.1;
/// PyTorch's default epsilon added to the variance.
pub const BATCHNORM_EPS: f32 = 1e-5;

/// Training mode: `out = (inp − mean)·rstd·weight + bias` with the batch mean and
/// `rstd = 1/sqrt(biased var + eps)` per channel, which are saved for the backward pass;
/// `running_mean`, `running_var` are updated in place.
pub fn batchnorm_forward_train(
    out: &mut [f32],
    save_mean: &mut [f32],
    save_rstd: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    momentum: f32,
    eps: f32,
) {
    check_shapes(
        inp.len(),
        &[
            ("batchnorm save_mean", save_mean.len()),
            ("batchnorm save_rstd", save_rstd.len()),
            ("batchnorm running_mean", running_mean.len()),
            ("batchnorm running_var", running_var.len()),
            ("batchnorm weight", weight.len()),
            ("batchnorm bias", bias.len()),
        ],
        n,
        c,
        hw,
    );
    check_len("batchnorm out", out.len(), inp.len());
    let count = n * hw;
    assert!(
        count > 1,
        "batchnorm: training needs more than one value per channel (as PyTorch)"
    );
    // Per channel: the mean, then the sum of squared deviations (two passes, f64 sums).
    let stats: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let planes = || (0..n).map(move |b| &inp[(b * c + ch) * hw..][..hw]);
            let mean = planes().map(sums::sum).sum::<f64>() / count as f64;
            let sum_sq = planes()
                .map(|plane| sums::sum_sq_dev(plane, mean as f32))
                .sum::<f64>();
            (mean, sum_sq)
        })
        .collect();
    let momentum = momentum as f64;
    let mut scale_shift = Vec::with_capacity(c);
    for (ch, &(mean, sum_sq)) in stats.iter().enumerate() {
        let rstd = 1.0 / (sum_sq / count as f64 + eps as f64).sqrt();
        save_mean[ch] = mean as f32;
        save_rstd[ch] = rstd as f32;
        running_mean[ch] = (momentum * mean + (1.0 - momentum) * running_mean[ch] as f64) as f32;
        running_var[ch] = (momentum * (sum_sq / (count - 1) as f64)
            + (1.0 - momentum) * running_var[ch] as f64) as f32;
        let scale = rstd * weight[ch] as f64;
        scale_shift.push((scale as f32, (bias[ch] as f64 - mean * scale) as f32));
    }
    apply_scale_shift(out, inp, &scale_shift, c, hw);
}

/// Evaluation mode: `out = (inp − running_mean)/sqrt(running_var + eps)·weight + bias`.
pub fn batchnorm_forward_eval(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    eps: f32,
) {
    check_shapes(
        inp.len(),
        &[
            ("batchnorm running_mean", running_mean.len()),
            ("batchnorm running_var", running_var.len()),
            ("batchnorm weight", weight.len()),
            ("batchnorm bias", bias.len()),
        ],
        n,
        c,
        hw,
    );
    check_len("batchnorm out", out.len(), inp.len());
    let scale_shift: Vec<(f32, f32)> = (0..c)
        .map(|ch| {
            let scale = weight[ch] as f64 / (running_var[ch] as f64 + eps as f64).sqrt();
            let shift = bias[ch] as f64 - running_mean[ch] as f64 * scale;
            (scale as f32, shift as f32)
        })
        .collect();
    apply_scale_shift(out, inp, &scale_shift, c, hw);
}

/// Adds the training-mode gradients into `d_inp` (n, c, hw), `d_weight` and `d_bias` (c), given
/// `d_out` (n, c, hw) and the `save_mean`, `save_rstd` of the forward pass.
pub fn batchnorm_backward(
    d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    d_bias: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    save_mean: &[f32],
    save_rstd: &[f32],
    n: usize,
    c: usize,
    hw: usize,
) {
    check_shapes(
        inp.len(),
        &[
            ("batchnorm d_weight", d_weight.len()),
            ("batchnorm d_bias", d_bias.len()),
            ("batchnorm weight", weight.len()),
            ("batchnorm save_mean", save_mean.len()),
            ("batchnorm save_rstd", save_rstd.len()),
        ],
        n,
        c,
        hw,
    );
    check_len("batchnorm d_out", d_out.len(), inp.len());
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("batchnorm d_inp", d_inp.len(), inp.len());
    }
    let count = (n * hw) as f64;
    // Per channel: Σ d_y and Σ d_y·x̂.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let (mean, rstd) = (save_mean[ch], save_rstd[ch]);
            let (mut sum_dy, mut sum_dy_xhat) = (0.0f64, 0.0f64);
            for b in 0..n {
                let plane = (b * c + ch) * hw..(b * c + ch + 1) * hw;
                let (dy, x) = (&d_out[plane.clone()], &inp[plane]);
                sum_dy += sums::sum(dy);
                sum_dy_xhat += sums::sum_weighted_dev(dy, x, mean);
            }
            (sum_dy, sum_dy_xhat * rstd as f64)
        })
        .collect();
    for (ch, &(sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
        d_bias[ch] += sum_dy as f32;
        d_weight[ch] += sum_dy_xhat as f32;
    }
    let Some(d_inp) = d_inp else {
        return;
    };
    // d_x = weight·rstd·(d_y − mean(d_y) − x̂·mean(d_y·x̂)), as a·d_y + b·x + c per channel.
    let coefficients: Vec<(f32, f32, f32)> = sums
        .iter()
        .enumerate()
        .map(|(ch, &(sum_dy, sum_dy_xhat))| {
            let (mean, rstd) = (save_mean[ch] as f64, save_rstd[ch] as f64);
            let scale = weight[ch] as f64 * rstd;
            let (mean_dy, mean_dy_xhat) = (sum_dy / count, sum_dy_xhat / count);
            let x_coef = -scale * mean_dy_xhat * rstd;
            let constant = -scale * mean_dy - x_coef * mean;
            (scale as f32, x_coef as f32, constant as f32)
        })
        .collect();
    d_inp
        .par_chunks_mut(hw)
        .zip(d_out.par_chunks(hw).zip(inp.par_chunks(hw)))
        .enumerate()
        .for_each(|(plane, (d_x, (dy, x)))| {
            let (a, b, k) = coefficients[plane % c];
            for ((d_x, &dy), &x) in d_x.iter_mut().zip(dy).zip(x) {
                *d_x += a * dy + b * x + k;
            }
        });
}

/// `out = inp·scale + shift` with one (scale, shift) per channel, planes in parallel.
fn apply_scale_shift(
    out: &mut [f32],
    inp: &[f32],
    scale_shift: &[(f32, f32)],
    c: usize,
    hw: usize,
) {
    out.par_chunks_mut(hw)
        .zip(inp.par_chunks(hw))
        .enumerate()
        .for_each(|(plane, (out, inp))| {
            let (scale, shift) = scale_shift[plane % c];
            for (y, &x) in out.iter_mut().zip(inp) {
                *y = x * scale + shift;
            }
        });
}

fn check_shapes(tensor_len: usize, channel_lens: &[(&str, usize)], n: usize, c: usize, hw: usize) {
    check_len("batchnorm activations", tensor_len, n * c * hw);
    for &(name, len) in channel_lens {
        check_len(name, len, c);
    }
}

/// The definition, in plain loops: the oracle for [`batchnorm_forward_train`].
pub fn batchnorm_forward_train_reference(
    out: &mut [f32],
    save_mean: &mut [f32],
    save_rstd: &mut [f32],
    running_mean: &mut [f32],
    running_var: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    momentum: f32,
    eps: f32,
) {
    check_shapes(
        inp.len(),
        &[
            ("batchnorm save_mean", save_mean.len()),
            ("batchnorm save_rstd", save_rstd.len()),
            ("batchnorm running_mean", running_mean.len()),
            ("batchnorm running_var", running_var.len()),
            ("batchnorm weight", weight.len()),
            ("batchnorm bias", bias.len()),
        ],
        n,
        c,
        hw,
    );
    check_len("batchnorm out", out.len(), inp.len());
    let count = n * hw;
    assert!(
        count > 1,
        "batchnorm: training needs more than one value per channel (as PyTorch)"
    );
    for ch in 0..c {
        let values = || (0..n).flat_map(move |b| inp[(b * c + ch) * hw..][..hw].iter());
        let mean = values().map(|&x| x as f64).sum::<f64>() / count as f64;
        let sum_sq = values()
            .map(|&x| (x as f64 - mean) * (x as f64 - mean))
            .sum::<f64>();
        let var_biased = sum_sq / count as f64;
        let var_unbiased = sum_sq / (count - 1) as f64;
        let rstd = 1.0 / (var_biased + eps as f64).sqrt();
        save_mean[ch] = mean as f32;
        save_rstd[ch] = rstd as f32;
        let momentum = momentum as f64;
        running_mean[ch] = (momentum * mean + (1.0 - momentum) * running_mean[ch] as f64) as f32;
        running_var[ch] =
            (momentum * var_unbiased + (1.0 - momentum) * running_var[ch] as f64) as f32;
        let scale = rstd * weight[ch] as f64;
        for b in 0..n {
            let base = (b * c + ch) * hw;
            for i in base..base + hw {
                out[i] = ((inp[i] as f64 - mean) * scale + bias[ch] as f64) as f32;
            }
        }
    }
}

/// The definition, in plain loops: the oracle for [`batchnorm_forward_eval`].
pub fn batchnorm_forward_eval_reference(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    eps: f32,
) {
    check_shapes(
        inp.len(),
        &[
            ("batchnorm running_mean", running_mean.len()),
            ("batchnorm running_var", running_var.len()),
            ("batchnorm weight", weight.len()),
            ("batchnorm bias", bias.len()),
        ],
        n,
        c,
        hw,
    );
    check_len("batchnorm out", out.len(), inp.len());
    for ch in 0..c {
        let rstd = 1.0 / (running_var[ch] as f64 + eps as f64).sqrt();
        let scale = rstd * weight[ch] as f64;
        for b in 0..n {
            let base = (b * c + ch) * hw;
            for i in base..base + hw {
                out[i] =
                    ((inp[i] as f64 - running_mean[ch] as f64) * scale + bias[ch] as f64) as f32;
            }
        }
    }
}

/// The definition, in plain loops: the oracle for [`batchnorm_backward`]. With
/// `x̂ = (x − mean)·rstd`: `d_x = weight·rstd·(d_y − mean(d_y) − x̂·mean(d_y·x̂))`.
pub fn batchnorm_backward_reference(
    d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    d_bias: &mut [f32],
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    save_mean: &[f32],
    save_rstd: &[f32],
    n: usize,
    c: usize,
    hw: usize,
) {
    check_shapes(
        inp.len(),
        &[
            ("batchnorm d_weight", d_weight.len()),
            ("batchnorm d_bias", d_bias.len()),
            ("batchnorm weight", weight.len()),
            ("batchnorm save_mean", save_mean.len()),
            ("batchnorm save_rstd", save_rstd.len()),
        ],
        n,
        c,
        hw,
    );
    check_len("batchnorm d_out", d_out.len(), inp.len());
    let count = (n * hw) as f64;
    let mut d_inp = d_inp;
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("batchnorm d_inp", d_inp.len(), inp.len());
    }
    for ch in 0..c {
        let mean = save_mean[ch] as f64;
        let rstd = save_rstd[ch] as f64;
        let indices = || (0..n).flat_map(move |b| (b * c + ch) * hw..(b * c + ch + 1) * hw);
        let sum_dy = indices().map(|i| d_out[i] as f64).sum::<f64>();
        let sum_dy_xhat = indices()
            .map(|i| d_out[i] as f64 * (inp[i] as f64 - mean) * rstd)
            .sum::<f64>();
        d_bias[ch] += sum_dy as f32;
        d_weight[ch] += sum_dy_xhat as f32;
        if let Some(d_inp) = d_inp.as_deref_mut() {
            let scale = weight[ch] as f64 * rstd;
            let mean_dy = sum_dy / count;
            let mean_dy_xhat = sum_dy_xhat / count;
            for i in indices() {
                let xhat = (inp[i] as f64 - mean) * rstd;
                d_inp[i] += (scale * (d_out[i] as f64 - mean_dy - xhat * mean_dy_xhat)) as f32;
            }
        }
    }
}

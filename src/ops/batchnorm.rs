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
    forward_train(
        out,
        save_mean,
        save_rstd,
        running_mean,
        running_var,
        inp,
        weight,
        bias,
        n,
        c,
        hw,
        momentum,
        eps,
        None,
    );
}

/// [`batchnorm_forward_train`] then leaky ReLU with `negative_slope`, in one pass over the
/// output: the same values, bit for bit, as the two ops one after the other, without writing
/// and re-reading the normalised tensor.
pub fn batchnorm_leaky_relu_forward_train(
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
    negative_slope: f32,
) {
    forward_train(
        out,
        save_mean,
        save_rstd,
        running_mean,
        running_var,
        inp,
        weight,
        bias,
        n,
        c,
        hw,
        momentum,
        eps,
        Some(negative_slope),
    );
}

/// The training forward, with leaky ReLU (of this slope) applied in the same pass when `Some`.
fn forward_train(
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
    leaky: Option<f32>,
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
    apply_scale_shift(out, inp, &scale_shift, c, hw, leaky);
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
    forward_eval(
        out,
        inp,
        weight,
        bias,
        running_mean,
        running_var,
        n,
        c,
        hw,
        eps,
        None,
    );
}

/// [`batchnorm_forward_eval`] then leaky ReLU with `negative_slope`, in one pass (bit for bit
/// the two ops one after the other).
pub fn batchnorm_leaky_relu_forward_eval(
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
    negative_slope: f32,
) {
    forward_eval(
        out,
        inp,
        weight,
        bias,
        running_mean,
        running_var,
        n,
        c,
        hw,
        eps,
        Some(negative_slope),
    );
}

fn forward_eval(
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
    leaky: Option<f32>,
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
    let scale_shift = eval_scale_shift(weight, bias, running_mean, running_var, eps);
    apply_scale_shift(out, inp, &scale_shift, c, hw, leaky);
}

/// Evaluation mode's BatchNorm as one multiply-add per channel: `bn(x) = x · scale + shift`
/// with `scale = weight / √(running_var + eps)` and `shift = bias − running_mean · scale`
/// (formed in f64, then rounded).
pub(crate) fn eval_scale_shift(
    weight: &[f32],
    bias: &[f32],
    running_mean: &[f32],
    running_var: &[f32],
    eps: f32,
) -> Vec<(f32, f32)> {
    (0..weight.len())
        .map(|ch| {
            let scale = weight[ch] as f64 / (running_var[ch] as f64 + eps as f64).sqrt();
            let shift = bias[ch] as f64 - running_mean[ch] as f64 * scale;
            (scale as f32, shift as f32)
        })
        .collect()
}

/// `lrelu(x · scale + shift)`, multiplied then added (no fused multiply-add), as every
/// evaluation-mode pass computes it: the convolutions that apply it as they store their sums
/// (`ops::conv2d::ConvFinish`) give the same bits as this op after them.
#[inline(always)]
pub(crate) fn scale_shift_leaky(x: f32, (scale, shift): (f32, f32), slope: f32) -> f32 {
    let v = x * scale + shift;
    if v > 0.0 {
        v
    } else {
        v * slope
    }
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
    backward(
        d_inp.map(|d| (d, GradInto::Add)),
        d_weight,
        d_bias,
        d_out,
        None,
        inp,
        weight,
        save_mean,
        save_rstd,
        n,
        c,
        hw,
    );
}

/// The gradients of [`batchnorm_leaky_relu_forward_train`]: as [`batchnorm_backward`], but
/// `d_out` is the gradient of the leaky ReLU's output `out` (the fused forward's result, whose
/// sign is its input's). The BatchNorm output's gradient is formed on the fly, block by block,
/// in the same order as the separate ops: the same values, bit for bit, as leaky ReLU's backward
/// then BatchNorm's.
pub fn batchnorm_leaky_relu_backward(
    d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    d_bias: &mut [f32],
    d_out: &[f32],
    out: &[f32],
    inp: &[f32],
    weight: &[f32],
    save_mean: &[f32],
    save_rstd: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    negative_slope: f32,
) {
    check_len("batchnorm leaky_relu out", out.len(), inp.len());
    backward(
        d_inp.map(|d| (d, GradInto::Add)),
        d_weight,
        d_bias,
        d_out,
        Some((out, negative_slope)),
        inp,
        weight,
        save_mean,
        save_rstd,
        n,
        c,
        hw,
    );
}

/// [`batchnorm_leaky_relu_backward`] into a fresh input gradient: `d_inp` is written, whatever
/// it held, with the values the add would leave in a zeroed buffer, bit for bit (`0 + v`), so
/// the caller skips zeroing it and this pass reads it no more (one read and one write of the
/// activation fewer). `d_weight` and `d_bias` are added into as there.
pub fn batchnorm_leaky_relu_backward_overwrite(
    d_inp: &mut [f32],
    d_weight: &mut [f32],
    d_bias: &mut [f32],
    d_out: &[f32],
    out: &[f32],
    inp: &[f32],
    weight: &[f32],
    save_mean: &[f32],
    save_rstd: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    negative_slope: f32,
) {
    check_len("batchnorm leaky_relu out", out.len(), inp.len());
    backward(
        Some((d_inp, GradInto::Write)),
        d_weight,
        d_bias,
        d_out,
        Some((out, negative_slope)),
        inp,
        weight,
        save_mean,
        save_rstd,
        n,
        c,
        hw,
    );
}

/// Whether [`batchnorm_leaky_relu_backward_from_output`] may stand in for the backward from the
/// input: a positive slope (the leaky ReLU is invertible) and every channel's
/// |γ| ≥ 10⁻³·max(1, |β|), since x̂ = (z − β)/γ magnifies the rounding of the output by |β/γ|
/// (NaN fails).
pub fn batchnorm_backward_from_output_applies(
    weight: &[f32],
    bias: &[f32],
    negative_slope: f32,
) -> bool {
    negative_slope > 0.0
        && weight
            .iter()
            .zip(bias)
            .all(|(&g, &b)| g.abs() >= 1e-3 * b.abs().max(1.0))
}

/// The BatchNorm output under leaky ReLU's output `out`, given `inverse_slope` = 1 / slope:
/// `out·inverse_slope` where it is not positive (within an ulp of `out / slope`). A factor
/// selected, then one product, so that the loops vectorise: a division under the branch, which
/// the compiler will not speculate, left them scalar and the backward 6× slower.
#[inline(always)]
fn unleaky(out: f32, inverse_slope: f32) -> f32 {
    out * if out > 0.0 { 1.0 } else { inverse_slope }
}

/// The gradients of [`batchnorm_leaky_relu_forward_train`] from its output alone, so that the
/// forward's input need not be kept for the backward (one activation less per BatchNorm, and
/// one read less in each of the two passes; the trick of in-place activated BatchNorm). With a
/// positive slope the BatchNorm output is z = `out` or `out / slope` and x̂ = (z − β)/γ. With
/// g = leaky ReLU's backward of `d_out` and s = γ·rstd:
/// d_bias += Σ g, d_weight += Σ g·(z − β) / γ, and
/// d_x = s·(g − mean g − x̂·mean(g·x̂)) = a·g + b·z + k per channel with a = s,
/// b = −rstd·mean(g·x̂), k = −s·mean g + β·rstd·mean(g·x̂) (no division per element).
/// `d_inp` is written, whatever it held (as [`batchnorm_leaky_relu_backward_overwrite`]).
/// Within float32 rounding of the backward from the input where
/// [`batchnorm_backward_from_output_applies`]; the caller checks that (it panics otherwise).
pub fn batchnorm_leaky_relu_backward_from_output(
    d_inp: &mut [f32],
    d_weight: &mut [f32],
    d_bias: &mut [f32],
    d_out: &[f32],
    out: &[f32],
    weight: &[f32],
    bias: &[f32],
    save_rstd: &[f32],
    n: usize,
    c: usize,
    hw: usize,
    negative_slope: f32,
) {
    check_shapes(
        out.len(),
        &[
            ("batchnorm d_weight", d_weight.len()),
            ("batchnorm d_bias", d_bias.len()),
            ("batchnorm weight", weight.len()),
            ("batchnorm bias", bias.len()),
            ("batchnorm save_rstd", save_rstd.len()),
        ],
        n,
        c,
        hw,
    );
    check_len("batchnorm d_out", d_out.len(), out.len());
    check_len("batchnorm d_inp", d_inp.len(), out.len());
    assert!(
        batchnorm_backward_from_output_applies(weight, bias, negative_slope),
        "batchnorm backward from the output: a weight near zero or a non-positive slope"
    );
    let count = (n * hw) as f64;
    let (slope, inverse_slope) = (negative_slope, 1.0 / negative_slope);
    // Per channel: Σ g and Σ g·(z − β), per plane in blocks as the backward from the input.
    let sums: Vec<(f64, f64)> = (0..c)
        .into_par_iter()
        .map(|ch| {
            let beta = bias[ch];
            let (mut sum_g, mut sum_gz) = (0.0f64, 0.0f64);
            let (mut g_block, mut z_block) = ([0.0f32; sums::BLOCK], [0.0f32; sums::BLOCK]);
            for b in 0..n {
                let plane = (b * c + ch) * hw..(b * c + ch + 1) * hw;
                let (dy, y) = (&d_out[plane.clone()], &out[plane]);
                let (mut plane_g, mut plane_gz) = (0.0f64, 0.0f64);
                for (dy, y) in dy.chunks(sums::BLOCK).zip(y.chunks(sums::BLOCK)) {
                    let (g_block, z_block) = (&mut g_block[..dy.len()], &mut z_block[..dy.len()]);
                    // Two loops of two streams each: one of four left them scalar.
                    for ((g, &dy), &y) in g_block.iter_mut().zip(dy).zip(y) {
                        *g = leaky_grad(dy, y, slope);
                    }
                    for (z, &y) in z_block.iter_mut().zip(y) {
                        *z = unleaky(y, inverse_slope);
                    }
                    plane_g += sums::sum(g_block);
                    plane_gz += sums::sum_weighted_dev(g_block, z_block, beta);
                }
                sum_g += plane_g;
                sum_gz += plane_gz;
            }
            (sum_g, sum_gz / weight[ch] as f64)
        })
        .collect();
    for (ch, &(sum_g, sum_g_xhat)) in sums.iter().enumerate() {
        d_bias[ch] += sum_g as f32;
        d_weight[ch] += sum_g_xhat as f32;
    }
    let coefficients: Vec<(f32, f32, f32)> = sums
        .iter()
        .enumerate()
        .map(|(ch, &(sum_g, sum_g_xhat))| {
            let rstd = save_rstd[ch] as f64;
            let scale = weight[ch] as f64 * rstd;
            let (mean_g, mean_g_xhat) = (sum_g / count, sum_g_xhat / count);
            let z_coef = -rstd * mean_g_xhat;
            let constant = -scale * mean_g + bias[ch] as f64 * rstd * mean_g_xhat;
            (scale as f32, z_coef as f32, constant as f32)
        })
        .collect();
    d_inp
        .par_chunks_mut(hw)
        .zip(d_out.par_chunks(hw).zip(out.par_chunks(hw)))
        .enumerate()
        .for_each(move |(plane, (d_x, (dy, y)))| {
            let (a, b, k) = coefficients[plane % c];
            for ((d_x, &dy), &y) in d_x.iter_mut().zip(dy).zip(y) {
                let (g, z) = (leaky_grad(dy, y, slope), unleaky(y, inverse_slope));
                *d_x = 0.0 + (a * g + b * z + k);
            }
        });
}

/// How the backward leaves its input gradient.
#[derive(Clone, Copy, PartialEq, Eq)]
enum GradInto {
    /// Added into what `d_inp` holds (PyTorch's accumulation).
    Add,
    /// Written: `0 + v`, what adding into zeros gives (−0 becomes +0 either way).
    Write,
}

/// The gradient that leaky ReLU's backward adds into a zeroed buffer: `d_out` where the
/// activation's output is positive, else `negative_slope·d_out` (as `ops::activation`). As a
/// selected factor and one product (`d·1 = d`, the same bits as the branch), so that loops of
/// several streams vectorise: with the branch, the backward from the output stayed scalar.
#[inline(always)]
fn leaky_grad(d_out: f32, out: f32, negative_slope: f32) -> f32 {
    0.0 + d_out * if out > 0.0 { 1.0 } else { negative_slope }
}

/// The backward; with `leaky = Some((out, slope))`, `d_out` is the gradient of leaky ReLU's
/// output `out`, turned into the BatchNorm output's gradient on the fly, one block of
/// `sums::BLOCK` values at a time, so that the sums add the same block totals in the same order.
fn backward(
    d_inp: Option<(&mut [f32], GradInto)>,
    d_weight: &mut [f32],
    d_bias: &mut [f32],
    d_out: &[f32],
    leaky: Option<(&[f32], f32)>,
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
    if let Some((d_inp, _)) = d_inp.as_ref() {
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
                let (dy, x) = (&d_out[plane.clone()], &inp[plane.clone()]);
                let Some((out, slope)) = leaky else {
                    sum_dy += sums::sum(dy);
                    sum_dy_xhat += sums::sum_weighted_dev(dy, x, mean);
                    continue;
                };
                let out = &out[plane];
                let mut block = [0.0f32; sums::BLOCK];
                // Per plane first, then into the channel's total, as the unfused sums add.
                let (mut plane_dy, mut plane_dy_xhat) = (0.0f64, 0.0f64);
                for ((dy, x), out) in dy
                    .chunks(sums::BLOCK)
                    .zip(x.chunks(sums::BLOCK))
                    .zip(out.chunks(sums::BLOCK))
                {
                    let block = &mut block[..dy.len()];
                    for ((g, &dz), &z) in block.iter_mut().zip(dy).zip(out) {
                        *g = leaky_grad(dz, z, slope);
                    }
                    plane_dy += sums::sum(block);
                    plane_dy_xhat += sums::sum_weighted_dev(block, x, mean);
                }
                sum_dy += plane_dy;
                sum_dy_xhat += plane_dy_xhat;
            }
            (sum_dy, sum_dy_xhat * rstd as f64)
        })
        .collect();
    for (ch, &(sum_dy, sum_dy_xhat)) in sums.iter().enumerate() {
        d_bias[ch] += sum_dy as f32;
        d_weight[ch] += sum_dy_xhat as f32;
    }
    let Some((d_inp, into)) = d_inp else {
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
            // One loop per case, so that each vectorises without a branch inside.
            match (leaky, into) {
                (None, GradInto::Add) => {
                    for ((d_x, &dy), &x) in d_x.iter_mut().zip(dy).zip(x) {
                        *d_x += a * dy + b * x + k;
                    }
                }
                (None, GradInto::Write) => {
                    for ((d_x, &dy), &x) in d_x.iter_mut().zip(dy).zip(x) {
                        *d_x = 0.0 + (a * dy + b * x + k);
                    }
                }
                (Some((out, slope)), GradInto::Add) => {
                    let out = &out[plane * hw..][..hw];
                    for (((d_x, &dz), &x), &z) in d_x.iter_mut().zip(dy).zip(x).zip(out) {
                        *d_x += a * leaky_grad(dz, z, slope) + b * x + k;
                    }
                }
                (Some((out, slope)), GradInto::Write) => {
                    let out = &out[plane * hw..][..hw];
                    for (((d_x, &dz), &x), &z) in d_x.iter_mut().zip(dy).zip(x).zip(out) {
                        *d_x = 0.0 + (a * leaky_grad(dz, z, slope) + b * x + k);
                    }
                }
            }
        });
}

/// `out = inp·scale + shift` with one (scale, shift) per channel, planes in parallel; then
/// leaky ReLU (as `ops::activation`) when `leaky` gives its slope.
fn apply_scale_shift(
    out: &mut [f32],
    inp: &[f32],
    scale_shift: &[(f32, f32)],
    c: usize,
    hw: usize,
    leaky: Option<f32>,
) {
    out.par_chunks_mut(hw)
        .zip(inp.par_chunks(hw))
        .enumerate()
        .for_each(|(plane, (out, inp))| {
            let (scale, shift) = scale_shift[plane % c];
            match leaky {
                None => {
                    for (y, &x) in out.iter_mut().zip(inp) {
                        *y = x * scale + shift;
                    }
                }
                Some(slope) => {
                    for (y, &x) in out.iter_mut().zip(inp) {
                        *y = scale_shift_leaky(x, (scale, shift), slope);
                    }
                }
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

// ---------------------------------------------------------------------------------------------
// The kernels (kernels/batchnorm.cu): the same functions on device buffers, optionally fused
// with the leaky ReLU that follows each BatchNorm of the network.

use crate::device::{DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

/// kernels/batchnorm.cu's BN_THREADS.
const BN_THREADS: u32 = 256;
/// Values per block of the reduction stages, and the most blocks (slices) per channel.
const BN_VALUES_PER_SLICE: usize = 8192;
const BN_MAX_SLICES: usize = 64;

/// Scratch of one BatchNorm layer on a kernel device, allocated once per shape: the f64 partial
/// sums of the reductions, the per-channel (scale, shift) of the forward (which the fused
/// backward reuses: pass the same workspace to both) and the backward's coefficients.
pub struct BatchNormWorkspace {
    n: usize,
    c: usize,
    hw: usize,
    slices: usize,
    partials: DeviceBuffer<f64>,
    scale_shift: DeviceBuffer<f32>,
    coefficients: DeviceBuffer<f32>,
}

impl BatchNormWorkspace {
    pub fn new(
        device: &KernelDevice,
        n: usize,
        c: usize,
        hw: usize,
    ) -> Result<BatchNormWorkspace, DeviceError> {
        let slices = (n * hw)
            .div_ceil(BN_VALUES_PER_SLICE)
            .clamp(1, BN_MAX_SLICES);
        Ok(BatchNormWorkspace {
            n,
            c,
            hw,
            slices,
            partials: device.alloc(2 * c * slices)?,
            scale_shift: device.alloc(2 * c)?,
            coefficients: device.alloc(3 * c)?,
        })
    }
}

/// The fused activation: `Some(negative_slope)` applies leaky ReLU after the normalisation.
pub type FusedLeakyRelu = Option<f32>;

struct BnDims {
    n: i32,
    c: i32,
    hw: i32,
    total: i32,
    count: i32,
    slices: i32,
}

fn bn_dims(
    op: &'static str,
    ws: &BatchNormWorkspace,
    tensors: &[(&str, usize)],
    channels: &[(&str, usize)],
) -> Result<BnDims, DeviceError> {
    let invalid = |message| DeviceError::InvalidInput { op, message };
    let total = ws.n * ws.c * ws.hw;
    for &(name, len) in tensors {
        if len != total {
            return Err(invalid(format!(
                "{name} has {len} elements, ({}, {}, {}) needs {total}",
                ws.n, ws.c, ws.hw
            )));
        }
    }
    for &(name, len) in channels {
        if len != ws.c {
            return Err(invalid(format!(
                "{name} has {len} elements, {} channels",
                ws.c
            )));
        }
    }
    let to_i32 = |v: usize| i32::try_from(v).map_err(|_| invalid(format!("{v} exceeds i32")));
    Ok(BnDims {
        n: to_i32(ws.n)?,
        c: to_i32(ws.c)?,
        hw: to_i32(ws.hw)?,
        total: to_i32(total)?,
        count: to_i32(ws.n * ws.hw)?,
        slices: to_i32(ws.slices)?,
    })
}

fn leaky_args(leaky: FusedLeakyRelu) -> (i32, f32) {
    match leaky {
        Some(slope) => (1, slope),
        None => (0, 0.0),
    }
}

/// [`batchnorm_forward_train`] on a kernel device (then leaky ReLU when `leaky`), with the
/// layer's workspace (its shape is the workspace's).
pub fn batchnorm_forward_train_launch(
    device: &KernelDevice,
    ws: &mut BatchNormWorkspace,
    out: &mut DeviceBuffer<f32>,
    save_mean: &mut DeviceBuffer<f32>,
    save_rstd: &mut DeviceBuffer<f32>,
    running_mean: &mut DeviceBuffer<f32>,
    running_var: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    bias: &DeviceBuffer<f32>,
    momentum: f32,
    eps: f32,
    leaky: FusedLeakyRelu,
) -> Result<(), DeviceError> {
    let d = bn_dims(
        "batchnorm_forward_train",
        ws,
        &[("inp", inp.len()), ("out", out.len())],
        &[
            ("save_mean", save_mean.len()),
            ("save_rstd", save_rstd.len()),
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
            ("weight", weight.len()),
            ("bias", bias.len()),
        ],
    )?;
    if d.count < 2 {
        return Err(DeviceError::InvalidInput {
            op: "batchnorm_forward_train",
            message: "training needs more than one value per channel (as PyTorch)".into(),
        });
    }
    device.launch(
        "batchnorm_partial_moments",
        LaunchConfig {
            grid: [d.slices as u32, d.c as u32, 1],
            block: [BN_THREADS, 1, 1],
            shared_mem_bytes: 0,
        },
        &[
            d.n.into(),
            d.c.into(),
            d.hw.into(),
            d.slices.into(),
            inp.into(),
            (&mut ws.partials).into(),
        ],
    )?;
    device.launch(
        "batchnorm_finish_statistics",
        LaunchConfig::for_elements(ws.c, BN_THREADS),
        &[
            d.c.into(),
            d.slices.into(),
            d.count.into(),
            momentum.into(),
            eps.into(),
            (&ws.partials).into(),
            weight.into(),
            bias.into(),
            save_mean.into(),
            save_rstd.into(),
            running_mean.into(),
            running_var.into(),
            (&mut ws.scale_shift).into(),
        ],
    )?;
    apply(device, ws, &d, inp, out, leaky)
}

fn apply(
    device: &KernelDevice,
    ws: &BatchNormWorkspace,
    d: &BnDims,
    inp: &DeviceBuffer<f32>,
    out: &mut DeviceBuffer<f32>,
    leaky: FusedLeakyRelu,
) -> Result<(), DeviceError> {
    let (fused, slope) = leaky_args(leaky);
    device.launch(
        "batchnorm_apply",
        LaunchConfig::for_elements(d.total as usize, super::ELEMENTWISE_THREADS),
        &[
            d.total.into(),
            d.c.into(),
            d.hw.into(),
            fused.into(),
            slope.into(),
            inp.into(),
            (&ws.scale_shift).into(),
            out.into(),
        ],
    )
}

/// [`batchnorm_forward_eval`] on a kernel device (then leaky ReLU when `leaky`).
pub fn batchnorm_forward_eval_launch(
    device: &KernelDevice,
    ws: &mut BatchNormWorkspace,
    out: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    bias: &DeviceBuffer<f32>,
    running_mean: &DeviceBuffer<f32>,
    running_var: &DeviceBuffer<f32>,
    eps: f32,
    leaky: FusedLeakyRelu,
) -> Result<(), DeviceError> {
    let d = bn_dims(
        "batchnorm_forward_eval",
        ws,
        &[("inp", inp.len()), ("out", out.len())],
        &[
            ("running_mean", running_mean.len()),
            ("running_var", running_var.len()),
            ("weight", weight.len()),
            ("bias", bias.len()),
        ],
    )?;
    device.launch(
        "batchnorm_eval_scale_shift",
        LaunchConfig::for_elements(ws.c, BN_THREADS),
        &[
            d.c.into(),
            eps.into(),
            weight.into(),
            bias.into(),
            running_mean.into(),
            running_var.into(),
            (&mut ws.scale_shift).into(),
        ],
    )?;
    apply(device, ws, &d, inp, out, leaky)
}

/// [`batchnorm_backward`] on a kernel device; with `leaky`, `d_out` is the gradient of the
/// fused leaky ReLU's output and `ws` must be the workspace of the training forward.
pub fn batchnorm_backward_launch(
    device: &KernelDevice,
    ws: &mut BatchNormWorkspace,
    d_inp: Option<&mut DeviceBuffer<f32>>,
    d_weight: &mut DeviceBuffer<f32>,
    d_bias: &mut DeviceBuffer<f32>,
    d_out: &DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    save_mean: &DeviceBuffer<f32>,
    save_rstd: &DeviceBuffer<f32>,
    leaky: FusedLeakyRelu,
) -> Result<(), DeviceError> {
    let mut tensors = vec![("d_out", d_out.len()), ("inp", inp.len())];
    if let Some(d_inp) = d_inp.as_deref() {
        tensors.push(("d_inp", d_inp.len()));
    }
    let d = bn_dims(
        "batchnorm_backward",
        ws,
        &tensors,
        &[
            ("d_weight", d_weight.len()),
            ("d_bias", d_bias.len()),
            ("weight", weight.len()),
            ("save_mean", save_mean.len()),
            ("save_rstd", save_rstd.len()),
        ],
    )?;
    let (fused, slope) = leaky_args(leaky);
    device.launch(
        "batchnorm_backward_partials",
        LaunchConfig {
            grid: [d.slices as u32, d.c as u32, 1],
            block: [BN_THREADS, 1, 1],
            shared_mem_bytes: 0,
        },
        &[
            d.n.into(),
            d.c.into(),
            d.hw.into(),
            d.slices.into(),
            fused.into(),
            slope.into(),
            d_out.into(),
            inp.into(),
            save_mean.into(),
            (&ws.scale_shift).into(),
            (&mut ws.partials).into(),
        ],
    )?;
    device.launch(
        "batchnorm_backward_finish",
        LaunchConfig::for_elements(ws.c, BN_THREADS),
        &[
            d.c.into(),
            d.slices.into(),
            d.count.into(),
            (&ws.partials).into(),
            weight.into(),
            save_mean.into(),
            save_rstd.into(),
            d_weight.into(),
            d_bias.into(),
            (&mut ws.coefficients).into(),
        ],
    )?;
    let Some(d_inp) = d_inp else {
        return Ok(());
    };
    device.launch(
        "batchnorm_backward_apply",
        LaunchConfig::for_elements(d.total as usize, super::ELEMENTWISE_THREADS),
        &[
            d.total.into(),
            d.c.into(),
            d.hw.into(),
            fused.into(),
            slope.into(),
            d_out.into(),
            inp.into(),
            (&ws.scale_shift).into(),
            (&ws.coefficients).into(),
            d_inp.into(),
        ],
    )
}

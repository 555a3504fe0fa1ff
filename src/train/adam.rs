//! Adam, exactly as `torch.optim.Adam` (no weight decay, no AMSGrad) computes it on the CPU,
//! operation by operation in float32 with the scalar factors in f64 as Python computes them.

use rayon::prelude::*;

use crate::ops::check_len;

/// Adam's hyperparameters; the default is the protocol's: lr 0.01, betas (0.9, 0.999), eps 1e-8.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self {
            lr: 0.01,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// One Adam update of one parameter tensor, in place. `step` is the number of updates
/// including this one (1 on the first call), as PyTorch's `state['step']` after its increment;
/// `lr` is the current learning rate (the scheduler's, not necessarily `config.lr`).
/// `exp_avg` and `exp_avg_sq` (PyTorch's names for the moment estimates) start at zero.
/// All slices have the parameter's length.
pub fn adam_update(
    params: &mut [f32],
    grads: &[f32],
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    step: u64,
    lr: f64,
    config: &AdamConfig,
) {
    check_len("adam grads", grads.len(), params.len());
    check_len("adam exp_avg", exp_avg.len(), params.len());
    check_len("adam exp_avg_sq", exp_avg_sq.len(), params.len());
    let factors = Factors::new(step, lr, config);
    const CHUNK: usize = 1 << 14;
    params
        .par_chunks_mut(CHUNK)
        .zip(grads.par_chunks(CHUNK))
        .zip(exp_avg.par_chunks_mut(CHUNK))
        .zip(exp_avg_sq.par_chunks_mut(CHUNK))
        .for_each(|(((p, g), m), v)| update_chunk(p, g, m, v, &factors));
}

/// The per-element factors of one step, as float32.
pub(crate) struct Factors {
    lerp_weight: f32,
    beta2: f32,
    sq_weight: f32,
    bias_correction2_sqrt: f32,
    eps: f32,
    neg_step_size: f32,
}

impl Factors {
    /// Python floats: the bias corrections in f64, each scalar cast to f32 where PyTorch passes
    /// it to a float32 tensor op.
    pub(crate) fn new(step: u64, lr: f64, config: &AdamConfig) -> Factors {
        assert!(step >= 1, "adam: step counts from 1");
        let step = step as f64;
        let bias_correction1 = 1.0 - config.beta1.powf(step);
        let bias_correction2 = 1.0 - config.beta2.powf(step);
        let step_size = lr / bias_correction1;
        Factors {
            lerp_weight: (1.0 - config.beta1) as f32,
            beta2: config.beta2 as f32,
            sq_weight: (1.0 - config.beta2) as f32,
            bias_correction2_sqrt: bias_correction2.sqrt() as f32,
            eps: config.eps as f32,
            neg_step_size: (-step_size) as f32,
        }
    }
}

fn update_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], f: &Factors) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has FMA, checked just above.
        unsafe { update_chunk_fma(p, g, m, v, f) };
        return;
    }
    update_elements(p, g, m, v, f);
}

/// The same code compiled with hardware FMA: `mul_add` is fused either way (bit-identical
/// results), but without the feature it is a slow library call.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn update_chunk_fma(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], f: &Factors) {
    update_elements(p, g, m, v, f);
}

#[inline(always)]
fn update_elements(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], f: &Factors) {
    for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m.iter_mut()).zip(v.iter_mut()) {
        // exp_avg.lerp_(grad, 1 - beta1): PyTorch's lerp for weights below 0.5 (a fused multiply-add).
        *m = f.lerp_weight.mul_add(g - *m, *m);
        // exp_avg_sq.mul_(beta2).addcmul_(grad, grad, value=1 - beta2): PyTorch's CPU addcmul
        // fuses the last multiply-add.
        *v = (f.sq_weight * g).mul_add(g, *v * f.beta2);
        // denom = (exp_avg_sq.sqrt() / bias_correction2_sqrt).add_(eps)
        let denom = v.sqrt() / f.bias_correction2_sqrt + f.eps;
        // param.addcdiv_(exp_avg, denom, value=-step_size)
        *p += f.neg_step_size * *m / denom;
    }
}

/// [`adam_update`] on a kernel device (kernels/adam.cu): one launch over a whole arena of
/// parameters, their gradients and both moments (equal lengths), with the same f64 factors.
#[allow(clippy::too_many_arguments)]
pub fn adam_update_launch(
    device: &crate::device::KernelDevice,
    params: &mut crate::device::DeviceBuffer<f32>,
    grads: &crate::device::DeviceBuffer<f32>,
    exp_avg: &mut crate::device::DeviceBuffer<f32>,
    exp_avg_sq: &mut crate::device::DeviceBuffer<f32>,
    step: u64,
    lr: f64,
    config: &AdamConfig,
) -> Result<(), crate::device::DeviceError> {
    if step == 0 {
        return Err(crate::device::DeviceError::InvalidInput {
            op: "adam",
            message: "step counts from 1".into(),
        });
    }
    let n = crate::ops::elementwise_len(
        "adam",
        params.len(),
        &[
            ("grads", grads.len()),
            ("exp_avg", exp_avg.len()),
            ("exp_avg_sq", exp_avg_sq.len()),
        ],
    )?;
    let f = Factors::new(step, lr, config);
    device.launch(
        "adam_update",
        crate::device::LaunchConfig::for_elements(params.len(), crate::ops::ELEMENTWISE_THREADS),
        &[
            n.into(),
            f.lerp_weight.into(),
            f.beta2.into(),
            f.sq_weight.into(),
            f.bias_correction2_sqrt.into(),
            f.eps.into(),
            f.neg_step_size.into(),
            params.into(),
            grads.into(),
            exp_avg.into(),
            exp_avg_sq.into(),
        ],
    )
}

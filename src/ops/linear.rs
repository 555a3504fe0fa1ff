//! Linear layer `out = inp·weightᵀ + bias`, as `torch.nn.Linear`, on rows of features.
//!
//! Shapes: `inp` (rows, in_features), `weight` (out_features, in_features), `bias`
//! (out_features), `out` (rows, out_features). `rows` is every leading dimension flattened
//! (for the network: batch · frames).
// llm.c style: the shapes are arguments.
#![allow(clippy::too_many_arguments)]

use super::check_len;
use super::matmul::{matmul, MatRef, Threads};

/// `out = inp·weightᵀ + bias`.
pub fn linear_forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear out", out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    if let Some(bias) = bias {
        check_len("linear bias", bias.len(), out_features);
        for row in out.chunks_mut(out_features) {
            row.copy_from_slice(bias);
        }
    }
    let x = MatRef::row_major(inp, rows, in_features);
    let w_t = MatRef::row_major(weight, out_features, in_features).t();
    matmul(out, out_features, x, w_t, bias.is_some(), Threads::All);
}

/// Adds `d_out·weight` into `d_inp`, `d_outᵀ·inp` into `d_weight` and the column sums of
/// `d_out` into `d_bias`.
pub fn linear_backward(
    d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear d_out", d_out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    check_len(
        "linear d_weight",
        d_weight.len(),
        out_features * in_features,
    );
    let d_y = MatRef::row_major(d_out, rows, out_features);
    if let Some(d_bias) = d_bias {
        check_len("linear d_bias", d_bias.len(), out_features);
        for row in d_out.chunks(out_features) {
            d_bias.iter_mut().zip(row).for_each(|(d, &g)| *d += g);
        }
    }
    let x = MatRef::row_major(inp, rows, in_features);
    matmul(d_weight, in_features, d_y.t(), x, true, Threads::All);
    if let Some(d_inp) = d_inp {
        check_len("linear d_inp", d_inp.len(), rows * in_features);
        let w = MatRef::row_major(weight, out_features, in_features);
        matmul(d_inp, in_features, d_y, w, true, Threads::All);
    }
}

/// The definition, in plain loops: the oracle for [`linear_forward`].
pub fn linear_forward_reference(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    bias: Option<&[f32]>,
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear out", out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    if let Some(bias) = bias {
        check_len("linear bias", bias.len(), out_features);
    }
    for r in 0..rows {
        let x = &inp[r * in_features..][..in_features];
        for o in 0..out_features {
            let w = &weight[o * in_features..][..in_features];
            let dot: f32 = x.iter().zip(w).map(|(a, b)| a * b).sum();
            out[r * out_features + o] = dot + bias.map_or(0.0, |bias| bias[o]);
        }
    }
}

/// The definition, in plain loops: the oracle for [`linear_backward`].
pub fn linear_backward_reference(
    mut d_inp: Option<&mut [f32]>,
    d_weight: &mut [f32],
    mut d_bias: Option<&mut [f32]>,
    d_out: &[f32],
    inp: &[f32],
    weight: &[f32],
    rows: usize,
    in_features: usize,
    out_features: usize,
) {
    check_len("linear d_out", d_out.len(), rows * out_features);
    check_len("linear inp", inp.len(), rows * in_features);
    check_len("linear weight", weight.len(), out_features * in_features);
    check_len(
        "linear d_weight",
        d_weight.len(),
        out_features * in_features,
    );
    if let Some(d_inp) = d_inp.as_deref() {
        check_len("linear d_inp", d_inp.len(), rows * in_features);
    }
    if let Some(d_bias) = d_bias.as_deref() {
        check_len("linear d_bias", d_bias.len(), out_features);
    }
    for r in 0..rows {
        for o in 0..out_features {
            let g = d_out[r * out_features + o];
            if let Some(d_bias) = d_bias.as_deref_mut() {
                d_bias[o] += g;
            }
            for i in 0..in_features {
                d_weight[o * in_features + i] += g * inp[r * in_features + i];
                if let Some(d_inp) = d_inp.as_deref_mut() {
                    d_inp[r * in_features + i] += g * weight[o * in_features + i];
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// On a kernel device: the tiled SGEMM (kernels/matmul.cu), with the bias broadcast and the
// bias gradient's f64 column sums of kernels/conv2d.cu (a row of features is a 1×1 "plane").

use super::conv2d::{channel_sums_launch, fill_bias_launch};
use super::matmul::{
    matmul_launch, matmul_sum_launch, matmul_sum_scratch_len, DeviceMatMut, DeviceMatRef,
};
use crate::device::{DeviceBuffer, DeviceError, KernelDevice};

fn linear_check(name: &str, len: usize, expected: usize) -> Result<(), DeviceError> {
    if len == expected {
        Ok(())
    } else {
        Err(DeviceError::InvalidInput {
            op: "linear",
            message: format!("{name} has {len} elements, its shape needs {expected}"),
        })
    }
}

/// [`linear_forward`] on a kernel device.
pub fn linear_forward_launch(
    device: &KernelDevice,
    out: &mut DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    bias: Option<&DeviceBuffer<f32>>,
    rows: usize,
    in_features: usize,
    out_features: usize,
) -> Result<(), DeviceError> {
    linear_check("linear out", out.len(), rows * out_features)?;
    linear_check("linear inp", inp.len(), rows * in_features)?;
    linear_check("linear weight", weight.len(), out_features * in_features)?;
    if let Some(bias) = bias {
        fill_bias_launch(device, out, bias, rows, out_features, 1)?;
    }
    matmul_launch(
        device,
        DeviceMatMut::row_major(out, rows, out_features),
        DeviceMatRef::row_major(inp, rows, in_features),
        DeviceMatRef::row_major(weight, out_features, in_features).t(),
        1,
        bias.is_some(),
    )
}

/// Elements of the split-k scratch [`linear_backward_launch`] needs for its weight gradient.
pub fn linear_backward_scratch_len(rows: usize, in_features: usize, out_features: usize) -> usize {
    matmul_sum_scratch_len(out_features, in_features, rows, 1).max(1)
}

/// [`linear_backward`] on a kernel device: adds into every gradient given; `scratch` holds
/// [`linear_backward_scratch_len`] elements (allocated once per shape).
pub fn linear_backward_launch(
    device: &KernelDevice,
    d_inp: Option<&mut DeviceBuffer<f32>>,
    d_weight: &mut DeviceBuffer<f32>,
    d_bias: Option<&mut DeviceBuffer<f32>>,
    d_out: &DeviceBuffer<f32>,
    inp: &DeviceBuffer<f32>,
    weight: &DeviceBuffer<f32>,
    rows: usize,
    in_features: usize,
    out_features: usize,
    scratch: &mut DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    linear_check("linear d_out", d_out.len(), rows * out_features)?;
    if let Some(d_bias) = d_bias {
        channel_sums_launch(device, d_bias, d_out, rows, out_features, 1)?;
    }
    let d_y = DeviceMatRef::row_major(d_out, rows, out_features);
    matmul_sum_launch(
        device,
        DeviceMatMut::row_major(d_weight, out_features, in_features),
        d_y.t(),
        DeviceMatRef::row_major(inp, rows, in_features),
        1,
        true,
        scratch,
    )?;
    if let Some(d_inp) = d_inp {
        matmul_launch(
            device,
            DeviceMatMut::row_major(d_inp, rows, in_features),
            d_y,
            DeviceMatRef::row_major(weight, out_features, in_features),
            1,
            true,
        )?;
    }
    Ok(())
}

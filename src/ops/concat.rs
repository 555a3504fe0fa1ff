//! Concatenation on the channel axis, NCHW float32, as `torch.cat((a, b), dim=1)`.
//!
//! Shapes: `a` (n, c_a, hw), `b` (n, c_b, hw), `out` (n, c_a + c_b, hw) with `hw = h·w`.
// llm.c style: the shapes are arguments.
#![allow(clippy::too_many_arguments)]

use rayon::prelude::*;

use super::check_len;

/// `out[:, :c_a] = a`, `out[:, c_a:] = b`.
pub fn concat_channels_forward(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat a", a.len(), n * c_a * hw);
    check_len("concat b", b.len(), n * c_b * hw);
    check_len("concat out", out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    out.par_chunks_mut(len_a + len_b)
        .zip(a.par_chunks(len_a).zip(b.par_chunks(len_b)))
        .for_each(|(out, (a, b))| {
            out[..len_a].copy_from_slice(a);
            out[len_a..].copy_from_slice(b);
        });
}

/// Adds `d_out[:, :c_a]` into `d_a` and `d_out[:, c_a:]` into `d_b`; either may be skipped.
pub fn concat_channels_backward(
    d_a: Option<&mut [f32]>,
    d_b: Option<&mut [f32]>,
    d_out: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat d_out", d_out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    let add = |dst: &mut [f32], src: &[f32]| dst.iter_mut().zip(src).for_each(|(d, &g)| *d += g);
    if let Some(d_a) = d_a {
        check_len("concat d_a", d_a.len(), n * len_a);
        d_a.par_chunks_mut(len_a)
            .zip(d_out.par_chunks(len_a + len_b))
            .for_each(|(d_a, d_out)| add(d_a, &d_out[..len_a]));
    }
    if let Some(d_b) = d_b {
        check_len("concat d_b", d_b.len(), n * len_b);
        d_b.par_chunks_mut(len_b)
            .zip(d_out.par_chunks(len_a + len_b))
            .for_each(|(d_b, d_out)| add(d_b, &d_out[len_a..]));
    }
}

/// The definition: the oracle for [`concat_channels_forward`].
pub fn concat_channels_forward_reference(
    out: &mut [f32],
    a: &[f32],
    b: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat a", a.len(), n * c_a * hw);
    check_len("concat b", b.len(), n * c_b * hw);
    check_len("concat out", out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    for i in 0..n {
        let out = &mut out[i * (len_a + len_b)..][..len_a + len_b];
        out[..len_a].copy_from_slice(&a[i * len_a..][..len_a]);
        out[len_a..].copy_from_slice(&b[i * len_b..][..len_b]);
    }
}

/// The definition: the oracle for [`concat_channels_backward`].
pub fn concat_channels_backward_reference(
    mut d_a: Option<&mut [f32]>,
    mut d_b: Option<&mut [f32]>,
    d_out: &[f32],
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) {
    check_len("concat d_out", d_out.len(), n * (c_a + c_b) * hw);
    let (len_a, len_b) = (c_a * hw, c_b * hw);
    if let Some(d_a) = d_a.as_deref() {
        check_len("concat d_a", d_a.len(), n * len_a);
    }
    if let Some(d_b) = d_b.as_deref() {
        check_len("concat d_b", d_b.len(), n * len_b);
    }
    for i in 0..n {
        let d_out = &d_out[i * (len_a + len_b)..][..len_a + len_b];
        if let Some(d_a) = d_a.as_deref_mut() {
            for (d, &g) in d_a[i * len_a..][..len_a].iter_mut().zip(&d_out[..len_a]) {
                *d += g;
            }
        }
        if let Some(d_b) = d_b.as_deref_mut() {
            for (d, &g) in d_b[i * len_b..][..len_b].iter_mut().zip(&d_out[len_a..]) {
                *d += g;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The kernels (kernels/concat.cu).

use crate::device::{DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

fn concat_dims(
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
    lens: &[(&str, usize, usize)],
) -> Result<[i32; 4], DeviceError> {
    let invalid = |message| DeviceError::InvalidInput {
        op: "concat_channels",
        message,
    };
    for &(name, len, expected) in lens {
        if len != expected {
            return Err(invalid(format!(
                "{name} has {len} elements, its shape needs {expected}"
            )));
        }
    }
    let mut out = [0i32; 4];
    for (o, v) in out.iter_mut().zip([n, c_a, c_b, hw]) {
        *o = i32::try_from(v).map_err(|_| invalid(format!("{v} exceeds i32")))?;
    }
    Ok(out)
}

/// [`concat_channels_forward`] on a kernel device.
pub fn concat_channels_forward_launch(
    device: &KernelDevice,
    out: &mut DeviceBuffer<f32>,
    a: &DeviceBuffer<f32>,
    b: &DeviceBuffer<f32>,
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) -> Result<(), DeviceError> {
    let total = n * (c_a + c_b) * hw;
    let [n_i, c_a_i, c_b_i, hw_i] = concat_dims(
        n,
        c_a,
        c_b,
        hw,
        &[
            ("a", a.len(), n * c_a * hw),
            ("b", b.len(), n * c_b * hw),
            ("out", out.len(), total),
        ],
    )?;
    device.launch(
        "concat_channels_forward",
        LaunchConfig::for_elements(total, super::ELEMENTWISE_THREADS),
        &[
            n_i.into(),
            c_a_i.into(),
            c_b_i.into(),
            hw_i.into(),
            a.into(),
            b.into(),
            out.into(),
        ],
    )
}

/// [`concat_channels_backward`] on a kernel device: adds into `d_a` and `d_b` when given.
pub fn concat_channels_backward_launch(
    device: &KernelDevice,
    d_a: Option<&mut DeviceBuffer<f32>>,
    d_b: Option<&mut DeviceBuffer<f32>>,
    d_out: &DeviceBuffer<f32>,
    n: usize,
    c_a: usize,
    c_b: usize,
    hw: usize,
) -> Result<(), DeviceError> {
    let [n_i, c_a_i, c_b_i, hw_i] = concat_dims(
        n,
        c_a,
        c_b,
        hw,
        &[("d_out", d_out.len(), n * (c_a + c_b) * hw)],
    )?;
    for (part, first, c_part, c_part_i) in [(d_a, 0, c_a, c_a_i), (d_b, c_a_i, c_b, c_b_i)] {
        let Some(part) = part else { continue };
        concat_dims(n, c_a, c_b, hw, &[("d_part", part.len(), n * c_part * hw)])?;
        device.launch(
            "concat_channels_backward",
            LaunchConfig::for_elements(n * c_part * hw, super::ELEMENTWISE_THREADS),
            &[
                n_i.into(),
                (c_a_i + c_b_i).into(),
                first.into(),
                c_part_i.into(),
                hw_i.into(),
                d_out.into(),
                part.into(),
            ],
        )?;
    }
    Ok(())
}

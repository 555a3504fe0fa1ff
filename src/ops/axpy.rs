//! axpy: out = a·x + y elementwise (kernels/axpy.cu). The toy op that proves the toolchain.

use crate::device::{Device, DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

const THREADS_PER_BLOCK: u32 = 256;

/// CPU reference.
pub fn axpy_cpu(a: f32, x: &[f32], y: &[f32]) -> Vec<f32> {
    x.iter().zip(y).map(|(&xi, &yi)| a * xi + yi).collect()
}

/// Launches kernels/axpy.cu: `out[i] = a * x[i] + y[i]` for every element of `out`.
pub fn axpy_launch(
    device: &KernelDevice,
    a: f32,
    x: &DeviceBuffer<f32>,
    y: &DeviceBuffer<f32>,
    out: &mut DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    let n = out.len();
    if x.len() != n || y.len() != n {
        return Err(DeviceError::InvalidInput {
            op: "axpy",
            message: format!("x has {} elements, y {}, out {n}", x.len(), y.len()),
        });
    }
    let n_i32 = i32::try_from(n).map_err(|_| DeviceError::InvalidInput {
        op: "axpy",
        message: format!("{n} elements exceed i32"),
    })?;
    let config = LaunchConfig::for_elements(n, THREADS_PER_BLOCK);
    device.launch(
        "axpy",
        config,
        &[n_i32.into(), a.into(), x.into(), y.into(), out.into()],
    )
}

/// a·x + y on any device.
pub fn axpy(device: &Device, a: f32, x: &[f32], y: &[f32]) -> Result<Vec<f32>, DeviceError> {
    if x.len() != y.len() {
        return Err(DeviceError::InvalidInput {
            op: "axpy",
            message: format!("x has {} elements, y {}", x.len(), y.len()),
        });
    }
    match device {
        Device::Cpu => Ok(axpy_cpu(a, x, y)),
        Device::Kernels(k) => {
            let x = k.upload(x)?;
            let y = k.upload(y)?;
            let mut out = k.alloc(x.len())?;
            axpy_launch(k, a, &x, &y, &mut out)?;
            k.download(&out)
        }
    }
}

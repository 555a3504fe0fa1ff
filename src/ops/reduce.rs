//! reduce: the sum of each row of a row-major [rows, cols] matrix (kernels/reduce.cu). A block
//! reduction with shared memory, `__syncthreads` and warp shuffles.

use crate::device::{Device, DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

/// Threads per block (one block per row): a multiple of 32 up to 1024.
pub const DEFAULT_THREADS_PER_BLOCK: u32 = 256;

/// CPU reference; accumulates in f64 so that it is the more accurate side.
pub fn reduce_sum_rows_cpu(x: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    (0..rows)
        .map(|r| {
            x[r * cols..(r + 1) * cols]
                .iter()
                .map(|&v| v as f64)
                .sum::<f64>() as f32
        })
        .collect()
}

fn invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "reduce_sum_rows",
        message,
    }
}

/// Launches kernels/reduce.cu: `sums[r] = Σ_c x[r, c]`.
pub fn reduce_sum_rows_launch(
    device: &KernelDevice,
    x: &DeviceBuffer<f32>,
    rows: usize,
    cols: usize,
    threads_per_block: u32,
    sums: &mut DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    if rows.checked_mul(cols) != Some(x.len()) || sums.len() != rows {
        return Err(invalid(format!(
            "x has {} elements and sums {} for {rows}x{cols}",
            x.len(),
            sums.len()
        )));
    }
    if threads_per_block == 0 || !threads_per_block.is_multiple_of(32) || threads_per_block > 1024 {
        return Err(invalid(format!(
            "{threads_per_block} threads per block is not a multiple of 32 up to 1024"
        )));
    }
    if rows == 0 {
        return Ok(());
    }
    let rows_i32 = i32::try_from(rows).map_err(|_| invalid(format!("{rows} rows exceed i32")))?;
    let cols_i32 =
        i32::try_from(cols).map_err(|_| invalid(format!("{cols} columns exceed i32")))?;
    let blocks =
        u32::try_from(rows).map_err(|_| invalid(format!("{rows} rows exceed the grid")))?;
    let config = LaunchConfig::blocks(blocks, threads_per_block);
    device.launch(
        "reduce_sum_rows",
        config,
        &[x.into(), sums.into(), rows_i32.into(), cols_i32.into()],
    )
}

/// Row sums on any device.
pub fn reduce_sum_rows(
    device: &Device,
    x: &[f32],
    rows: usize,
    cols: usize,
    threads_per_block: u32,
) -> Result<Vec<f32>, DeviceError> {
    if rows.checked_mul(cols) != Some(x.len()) {
        return Err(invalid(format!(
            "{} elements are not {rows}x{cols}",
            x.len()
        )));
    }
    match device {
        Device::Cpu => Ok(reduce_sum_rows_cpu(x, rows, cols)),
        Device::Kernels(k) => {
            let x = k.upload(x)?;
            let mut sums = k.alloc(rows)?;
            reduce_sum_rows_launch(k, &x, rows, cols, threads_per_block, &mut sums)?;
            k.download(&sums)
        }
    }
}

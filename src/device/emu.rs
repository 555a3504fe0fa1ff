//! The emu device: the kernels compiled by g++ against kernels/emu/cuemu.h, run by the fiber
//! runtime of kernels/emu/cuemu.cpp on host memory with guard regions.

use std::ffi::{c_char, c_int, c_void, CStr};

use super::buffer::Storage;
use super::kernels::Kernel;
use super::launch::{KernelArg, LaunchConfig, ThreadOrder};
use super::DeviceError;

#[repr(C)]
struct LaunchParams {
    grid: [u32; 3],
    block: [u32; 3],
    shared_bytes: usize,
    reverse: c_int,
    workers: u32,
}

extern "C" {
    fn mtosi_emu_launch(
        entry: unsafe extern "C" fn(*mut *mut c_void),
        args: *mut *mut c_void,
        params: *const LaunchParams,
        error: *mut c_char,
        error_capacity: usize,
    ) -> c_int;
}

/// Options of the emu device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmuOptions {
    pub order: ThreadOrder,
    /// OS threads that run blocks in parallel (large launches only); `MTOSI_EMU_WORKERS` or the
    /// number of cores by default.
    pub workers: usize,
}

impl Default for EmuOptions {
    fn default() -> Self {
        let workers = std::env::var("MTOSI_EMU_WORKERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        EmuOptions {
            order: ThreadOrder::Forward,
            workers,
        }
    }
}

pub(crate) fn launch(
    options: &EmuOptions,
    kernel: &Kernel,
    config: &LaunchConfig,
    args: &[KernelArg],
) -> Result<(), DeviceError> {
    // Each args[i] points at the value of parameter i, as cuLaunchKernel's kernelParams.
    let mut values: Vec<[u8; 8]> = Vec::with_capacity(args.len());
    for arg in args {
        let bytes = match arg {
            KernelArg::Buffer(b) => match b.storage {
                Storage::Emu(alloc) => (alloc.data_ptr() as usize).to_ne_bytes(),
                Storage::Cuda(_) => {
                    return Err(DeviceError::Arguments {
                        kernel: kernel.name,
                        source_file: kernel.source,
                        message: "a cuda buffer was passed to the emu device".into(),
                    })
                }
            },
            scalar => scalar
                .scalar_bytes()
                .expect("non-buffer arguments are scalars"),
        };
        values.push(bytes);
    }
    let mut pointers: Vec<*mut c_void> = values
        .iter_mut()
        .map(|v| v.as_mut_ptr() as *mut c_void)
        .collect();
    let params = LaunchParams {
        grid: config.grid,
        block: config.block,
        shared_bytes: config.shared_mem_bytes as usize,
        reverse: (options.order == ThreadOrder::Reverse) as c_int,
        workers: options.workers.max(1) as u32,
    };
    let mut error = vec![0 as c_char; 2048];
    // SAFETY: `pointers` holds one valid pointer per parameter whose value has the parameter's
    // type (checked by check_launch); buffers outlive the call; the runtime writes at most
    // `error.len()` bytes including the NUL.
    let status = unsafe {
        mtosi_emu_launch(
            kernel.emu_entry,
            pointers.as_mut_ptr(),
            &params,
            error.as_mut_ptr(),
            error.len(),
        )
    };
    let launch_error = (status != 0).then(|| {
        // SAFETY: the runtime NUL-terminates the message.
        unsafe { CStr::from_ptr(error.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    });
    let mut damage = Vec::new();
    for (index, arg) in args.iter().enumerate() {
        if let KernelArg::Buffer(b) = arg {
            if let Storage::Emu(alloc) = b.storage {
                if let Some(d) = alloc.check_guards() {
                    let mut where_ = Vec::new();
                    if let Some(n) = d.nearest_after {
                        where_.push(format!(
                            "{} bytes after its end (nearest at byte {} past the end)",
                            d.after, n
                        ));
                    }
                    if let Some(n) = d.nearest_before {
                        where_.push(format!(
                            "{} bytes before its start (nearest {} bytes before)",
                            d.before, n
                        ));
                    }
                    damage.push(format!(
                        "parameter {index} `{}` ({} elements of {}): wrote {}",
                        kernel.params[index].name,
                        b.len,
                        b.element.c_name(),
                        where_.join(" and ")
                    ));
                }
            }
        }
    }
    if let Some(message) = launch_error {
        return Err(DeviceError::Launch {
            kernel: kernel.name,
            source_file: kernel.source,
            message,
        });
    }
    if !damage.is_empty() {
        return Err(DeviceError::OutOfBounds {
            kernel: kernel.name,
            source_file: kernel.source,
            message: damage.join("; "),
        });
    }
    Ok(())
}

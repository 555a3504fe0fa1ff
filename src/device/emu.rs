//! The emu device: the kernels compiled by g++ against kernels/emu/cuemu.h, run by the fiber
//! runtime of kernels/emu/cuemu.cpp on host memory with guard regions.

use std::ffi::{c_char, c_int, c_void, CStr, CString};

use super::buffer::DeviceMemory;
use super::kernels::Kernel;
use super::launch::{KernelArg, LaunchConfig, ThreadOrder};
use super::DeviceError;

#[repr(C)]
struct BufferArg {
    /// Null for scalar arguments.
    data: *const u8,
    bytes: usize,
    description: *const c_char,
}

#[repr(C)]
struct LaunchParams {
    grid: [u32; 3],
    block: [u32; 3],
    shared_bytes: usize,
    reverse: c_int,
    workers: u32,
    buffers: *const BufferArg,
    buffer_count: u32,
    cooperative: c_int,
}

/// The most blocks a cooperative launch may have on emu, which gives each its own OS thread for
/// the launch (`kMaxCooperativeBlocks` in kernels/emu/cuemu.cpp).
pub(crate) const MAX_COOPERATIVE_BLOCKS: u32 = 128;

/// Launches with fewer threads than this run on one worker: waking workers costs tens of
/// microseconds, more than such a launch takes.
const PARALLEL_THREADS: u64 = 16384;

/// How many OS workers a launch gets: `requested`, at most one per block, and one for launches
/// under [`PARALLEL_THREADS`] threads; with the reason when that is fewer than requested.
pub(crate) fn plan_workers(requested: usize, config: &LaunchConfig) -> (usize, Option<String>) {
    let blocks: u64 = config.grid.iter().map(|&d| d as u64).product();
    let threads = blocks * config.block.iter().map(|&d| d as u64).product::<u64>();
    let requested = requested.max(1);
    if requested > 1 && threads < PARALLEL_THREADS {
        return (
            1,
            Some(format!(
                "{threads} threads are fewer than the {PARALLEL_THREADS} that make waking workers pay"
            )),
        );
    }
    let workers = requested.min(blocks as usize).max(1);
    let reason = (workers < requested).then(|| format!("only {blocks} blocks"));
    (workers, reason)
}

/// The line `MTOSI_EMU_DEBUG` prints for a launch: kernel, grid, block and workers, with the
/// reason when it runs on fewer workers than requested.
pub(crate) fn describe_launch(kernel: &str, config: &LaunchConfig, requested: usize) -> String {
    let (workers, reason) = plan_workers(requested, config);
    let reason = reason
        .map(|r| format!(" (of {requested} requested: {r})"))
        .unwrap_or_default();
    format!(
        "emu: {kernel}: grid {:?}, block {:?}: {workers} worker{}{reason}",
        config.grid,
        config.block,
        if workers == 1 { "" } else { "s" }
    )
}

/// Set to print one line per emu launch on stderr ([`describe_launch`]).
pub const DEBUG_VAR: &str = "MTOSI_EMU_DEBUG";

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
    /// OS threads that run blocks in parallel (launches of at least 16384 threads only; with
    /// `MTOSI_EMU_DEBUG` set, every launch says how many it got and why); `MTOSI_EMU_WORKERS` or
    /// the number of cores by default.
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

/// Runs `kernel` on the CPU; `cooperative` runs every block at once, one per OS thread, as
/// cuLaunchCooperativeKernel keeps them resident, so that `grid_barrier_sync` works (in an
/// ordinary launch it is a launch error).
pub(crate) fn launch(
    options: &EmuOptions,
    kernel: &Kernel,
    config: &LaunchConfig,
    args: &[KernelArg],
    cooperative: bool,
) -> Result<(), DeviceError> {
    // Each args[i] points at the value of parameter i, as cuLaunchKernel's kernelParams.
    let mut values: Vec<[u8; 8]> = Vec::with_capacity(args.len());
    let mut descriptions: Vec<CString> = Vec::with_capacity(args.len());
    let mut buffers: Vec<BufferArg> = Vec::with_capacity(args.len());
    for (index, arg) in args.iter().enumerate() {
        let description = match arg {
            KernelArg::Buffer(b) => format!(
                "parameter {index} `{}` ({} elements of {})",
                kernel.params[index].name,
                b.len,
                b.element.c_name()
            ),
            _ => String::new(),
        };
        descriptions.push(CString::new(description).expect("names hold no NUL"));
        buffers.push(BufferArg {
            data: std::ptr::null(),
            bytes: 0,
            description: descriptions[index].as_ptr(),
        });
        let bytes = match arg {
            KernelArg::Buffer(b) => match b.storage {
                DeviceMemory::Emu(alloc) => {
                    buffers[index].data = alloc.data_ptr();
                    buffers[index].bytes = alloc.data().len();
                    (alloc.data_ptr() as usize).to_ne_bytes()
                }
                DeviceMemory::View(view) if !view.cuda => {
                    // Inside an arena: only the arena's two ends lie against guard pages.
                    buffers[index].data = view.address as *mut u8;
                    buffers[index].bytes = view.bytes;
                    (view.address as usize).to_ne_bytes()
                }
                DeviceMemory::Cuda(_) | DeviceMemory::View(_) => {
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
    if std::env::var_os(DEBUG_VAR).is_some() {
        if cooperative {
            eprintln!(
                "emu: {}: grid {:?}, block {:?}: cooperative, one worker per block",
                kernel.name, config.grid, config.block
            );
        } else {
            eprintln!("{}", describe_launch(kernel.name, config, options.workers));
        }
    }
    let params = LaunchParams {
        grid: config.grid,
        block: config.block,
        shared_bytes: config.shared_mem_bytes as usize,
        reverse: (options.order == ThreadOrder::Reverse) as c_int,
        workers: plan_workers(options.workers, config).0 as u32,
        buffers: buffers.as_ptr(),
        buffer_count: buffers.len() as u32,
        cooperative: cooperative as c_int,
    };
    let mut error = vec![0 as c_char; 2048];
    // SAFETY: `pointers` holds one valid pointer per parameter whose value has the parameter's
    // type (checked by check_launch); buffers and descriptions outlive the call; the runtime
    // writes at most `error.len()` bytes including the NUL.
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
            if let DeviceMemory::Emu(alloc) = b.storage {
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
        // 2: a fault on a guard page, i.e. an out-of-bounds read or write.
        if status == 2 {
            damage.insert(0, message);
            return Err(DeviceError::OutOfBounds {
                kernel: kernel.name,
                source_file: kernel.source,
                message: damage.join("; "),
            });
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_launch_that_falls_back_to_one_worker_says_why() {
        let small = LaunchConfig::blocks(7, 96);
        assert_eq!(plan_workers(4, &small).0, 1);
        let line = describe_launch("k", &small, 4);
        assert!(
            line.contains(": 1 worker (of 4 requested: 672 threads are fewer than the 16384"),
            "{line}"
        );
        let large = LaunchConfig::blocks(128, 128);
        assert_eq!(plan_workers(4, &large), (4, None));
        assert_eq!(
            describe_launch("k", &large, 4),
            "emu: k: grid [128, 1, 1], block [128, 1, 1]: 4 workers"
        );
        let (workers, reason) = plan_workers(32, &LaunchConfig::blocks(16, 1024));
        assert_eq!((workers, reason.as_deref()), (16, Some("only 16 blocks")));
        assert_eq!(plan_workers(1, &large), (1, None));
    }
}

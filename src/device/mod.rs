//! Where compute runs: `cpu` (plain-Rust reference), `emu` (the CUDA kernels emulated on the CPU)
//! or `cuda` (the kernels on a GPU). The only module that knows about CUDA.
//!
//! An op takes a [`Device`]: on [`Device::Cpu`] it runs its Rust reference, on
//! [`Device::Kernels`] it launches its kernel through one [`KernelDevice`] API that is the same
//! for `emu` and `cuda`: [`DeviceBuffer`]s, kernels looked up by name, arguments checked against
//! the kernel's C signature.

pub mod arena;
mod buffer;
mod cuda;
mod emu;
pub mod equivalence;
mod kernels;
mod launch;

use std::collections::BTreeSet;
use std::fmt;
use std::marker::PhantomData;
use std::str::FromStr;
use std::sync::{Arc, Mutex};

pub use arena::DeviceArena;
pub use buffer::{DeviceBuffer, Element};
pub use emu::EmuOptions;
pub use kernels::{
    find_kernel, EmuEntry, Kernel, ModuleImages, NvrtcReport, Param, ParamKind, Scalar, KERNELS,
    NVRTC,
};
pub use launch::{BufferArg, KernelArg, LaunchConfig, ThreadOrder};

use buffer::{DeviceMemory, GuardedAlloc, GuardedSide};

/// Forward thread order guards the ends of emu buffers, reverse order their starts: the
/// harness runs both, so a read off either side of a buffer is caught.
/// The compiled kernel `name` (kernels/*.cu), or the error that names it.
pub fn compiled_kernel(name: &str) -> Result<&'static Kernel, DeviceError> {
    find_kernel(name).ok_or_else(|| DeviceError::UnknownKernel(name.to_string()))
}

fn guarded_side(options: &EmuOptions) -> GuardedSide {
    match options.order {
        ThreadOrder::Forward => GuardedSide::End,
        ThreadOrder::Reverse => GuardedSide::Start,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("unknown device `{0}`: expected auto, cpu, emu, cuda or cuda:N")]
    UnknownDevice(String),
    #[error("the cuda device is unavailable: kernels were not compiled ({0})")]
    KernelsNotCompiled(String),
    #[error("the cuda device is unavailable: {0}")]
    NoDriver(String),
    #[error("the cuda device is unavailable: GPU {ordinal} requested, {count} present")]
    NoGpu { ordinal: usize, count: usize },
    #[error("CUDA failed {during}: {message}")]
    Cuda { during: String, message: String },
    #[error("no compiled kernel is named `{0}`")]
    UnknownKernel(String),
    #[error("kernel `{kernel}` ({source_file}): {message}")]
    Arguments {
        kernel: &'static str,
        source_file: &'static str,
        message: String,
    },
    #[error("kernel `{kernel}` ({source_file}) failed on emu: {message}")]
    Launch {
        kernel: &'static str,
        source_file: &'static str,
        message: String,
    },
    #[error("kernel `{kernel}` ({source_file}) accessed memory out of bounds on emu: {message}")]
    OutOfBounds {
        kernel: &'static str,
        source_file: &'static str,
        message: String,
    },
    #[error("{op}: {message}")]
    InvalidInput { op: &'static str, message: String },
}

/// The device a user asked for: `--device auto|cpu|emu|cuda[:N]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceRequest {
    Auto,
    Cpu,
    Emu,
    Cuda(usize),
}

impl FromStr for DeviceRequest {
    type Err = DeviceError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(DeviceRequest::Auto),
            "cpu" => Ok(DeviceRequest::Cpu),
            "emu" => Ok(DeviceRequest::Emu),
            "cuda" => Ok(DeviceRequest::Cuda(0)),
            _ => text
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceRequest::Cuda)
                .ok_or_else(|| DeviceError::UnknownDevice(text.to_string())),
        }
    }
}

impl fmt::Display for DeviceRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceRequest::Auto => write!(f, "auto"),
            DeviceRequest::Cpu => write!(f, "cpu"),
            DeviceRequest::Emu => write!(f, "emu"),
            DeviceRequest::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// An opened device, and why it was chosen.
pub struct Selection {
    pub device: Device,
    /// One line: which device and why (for `auto`, why not CUDA when it fell back to the CPU).
    pub reason: String,
}

impl DeviceRequest {
    /// Opens the device. `auto` picks CUDA when a driver, a GPU and compiled kernels are all
    /// present, else the CPU; asking for `cuda` explicitly fails with the reason instead.
    pub fn open(self) -> Result<Selection, DeviceError> {
        match self {
            DeviceRequest::Cpu => Ok(Selection {
                device: Device::Cpu,
                reason: "cpu: requested".into(),
            }),
            DeviceRequest::Emu => Ok(Selection {
                device: Device::emu(EmuOptions::default()),
                reason: "emu: requested".into(),
            }),
            DeviceRequest::Cuda(ordinal) => {
                let device = KernelDevice::cuda(ordinal)?;
                let reason = format!("cuda: requested, {}", device.describe());
                Ok(Selection {
                    device: Device::Kernels(device),
                    reason,
                })
            }
            DeviceRequest::Auto => Ok(match KernelDevice::cuda(0) {
                Ok(device) => {
                    let reason = format!("auto chose cuda: {}", device.describe());
                    Selection {
                        device: Device::Kernels(device),
                        reason,
                    }
                }
                Err(why) => Selection {
                    device: Device::Cpu,
                    reason: format!("auto chose cpu: {why}"),
                },
            }),
        }
    }
}

/// Where an op computes.
pub enum Device {
    /// The plain-Rust reference implementations.
    Cpu,
    /// The kernels of `kernels/`, emulated or on a GPU.
    Kernels(KernelDevice),
}

impl Device {
    pub fn emu(options: EmuOptions) -> Device {
        Device::Kernels(KernelDevice::emu(options))
    }

    pub fn describe(&self) -> String {
        match self {
            Device::Cpu => "cpu".to_string(),
            Device::Kernels(k) => k.describe(),
        }
    }
}

enum Backend {
    Emu(EmuOptions),
    Cuda(Arc<cuda::CudaDevice>),
}

/// A device that runs the kernels: `emu` or `cuda`, behind one API.
pub struct KernelDevice {
    backend: Backend,
    /// Names of the kernels launched on this device so far (the equivalence report lists them).
    launched: Mutex<BTreeSet<&'static str>>,
}

impl KernelDevice {
    pub fn emu(options: EmuOptions) -> KernelDevice {
        KernelDevice {
            backend: Backend::Emu(options),
            launched: Mutex::default(),
        }
    }

    /// CUDA device `ordinal`; fails (never panics) without compiled kernels, driver or GPU.
    pub fn cuda(ordinal: usize) -> Result<KernelDevice, DeviceError> {
        Ok(KernelDevice {
            backend: Backend::Cuda(cuda::open(ordinal)?),
            launched: Mutex::default(),
        })
    }

    /// The kernels launched on this device so far, by name, sorted.
    pub fn launched_kernels(&self) -> Vec<&'static str> {
        self.launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .copied()
            .collect()
    }

    pub fn describe(&self) -> String {
        match &self.backend {
            Backend::Emu(o) => format!(
                "emu ({} thread order, {} workers)",
                if o.order == ThreadOrder::Forward {
                    "forward"
                } else {
                    "reverse"
                },
                o.workers
            ),
            Backend::Cuda(c) => c.describe(),
        }
    }

    /// A buffer of `len` elements filled with 0xFF bytes (NaN as f32), so that an element a kernel
    /// does not write shows.
    pub fn alloc<T: Element>(&self, len: usize) -> Result<DeviceBuffer<T>, DeviceError> {
        let bytes = len
            .checked_mul(size_of::<T>())
            .ok_or_else(|| DeviceError::InvalidInput {
                op: "alloc",
                message: format!("{len} elements overflow the address space"),
            })?;
        let storage = match &self.backend {
            Backend::Emu(options) => {
                DeviceMemory::Emu(GuardedAlloc::new(bytes, guarded_side(options)))
            }
            Backend::Cuda(c) => DeviceMemory::Cuda(c.alloc(bytes)?),
        };
        Ok(DeviceBuffer {
            storage,
            len,
            _element: PhantomData,
        })
    }

    pub fn upload<T: Element>(&self, host: &[T]) -> Result<DeviceBuffer<T>, DeviceError> {
        let bytes: &[u8] = bytemuck::cast_slice(host);
        let storage = match &self.backend {
            Backend::Emu(options) => {
                let mut alloc = GuardedAlloc::new(bytes.len(), guarded_side(options));
                alloc.data_mut().copy_from_slice(bytes);
                DeviceMemory::Emu(alloc)
            }
            Backend::Cuda(c) => DeviceMemory::Cuda(c.upload(bytes)?),
        };
        Ok(DeviceBuffer {
            storage,
            len: host.len(),
            _element: PhantomData,
        })
    }

    /// Copies `host` into an existing buffer of the same length (a batch into the buffer the
    /// previous batch used), so a training step allocates nothing.
    pub fn copy_to_device<T: Element>(
        &self,
        host: &[T],
        buffer: &mut DeviceBuffer<T>,
    ) -> Result<(), DeviceError> {
        if host.len() != buffer.len {
            return Err(DeviceError::InvalidInput {
                op: "copy_to_device",
                message: format!("{} values into a buffer of {}", host.len(), buffer.len),
            });
        }
        let bytes: &[u8] = bytemuck::cast_slice(host);
        match (&self.backend, &mut buffer.storage) {
            (Backend::Emu(_), DeviceMemory::Emu(alloc)) => {
                alloc.data_mut().copy_from_slice(bytes);
                Ok(())
            }
            (Backend::Cuda(c), DeviceMemory::Cuda(slice)) => c.copy_to_device(bytes, slice),
            _ => Err(DeviceError::InvalidInput {
                op: "copy_to_device",
                message: "the buffer belongs to another device, or is a view into an arena".into(),
            }),
        }
    }

    /// Copies a buffer to the host, after every launch before it has finished.
    pub fn download<T: Element>(&self, buffer: &DeviceBuffer<T>) -> Result<Vec<T>, DeviceError> {
        let bytes = buffer.len * size_of::<T>();
        let raw = match (&self.backend, &buffer.storage) {
            (Backend::Emu(_), DeviceMemory::Emu(alloc)) => alloc.data().to_vec(),
            (Backend::Cuda(c), DeviceMemory::Cuda(slice)) => c.download(slice, bytes)?,
            (Backend::Emu(_), DeviceMemory::View(view)) if !view.cuda => {
                // SAFETY: the view lies inside its arena's live allocation, borrowed for the call.
                unsafe { std::slice::from_raw_parts(view.address as *const u8, view.bytes) }
                    .to_vec()
            }
            (Backend::Cuda(c), DeviceMemory::View(view)) if view.cuda => {
                c.download_view(view.address, view.bytes)?
            }
            _ => {
                return Err(DeviceError::InvalidInput {
                    op: "download",
                    message: "the buffer belongs to another device".into(),
                })
            }
        };
        // The raw bytes may not be aligned for T: copy element by element.
        Ok(raw
            .chunks_exact(size_of::<T>())
            .map(bytemuck::pod_read_unaligned)
            .collect())
    }

    /// (whether on cuda, the address) of an owned buffer's memory: the base of an arena's views.
    pub(crate) fn address_of<T: Element>(
        &self,
        buffer: &DeviceBuffer<T>,
    ) -> Result<(bool, u64), DeviceError> {
        match (&self.backend, &buffer.storage) {
            (Backend::Emu(_), DeviceMemory::Emu(alloc)) => Ok((false, alloc.data_ptr() as u64)),
            (Backend::Cuda(c), DeviceMemory::Cuda(slice)) => Ok((true, c.address(slice))),
            _ => Err(DeviceError::InvalidInput {
                op: "arena",
                message: "an arena needs a buffer of its own device".into(),
            }),
        }
    }

    /// Waits for every launch so far (emu launches are synchronous).
    pub fn synchronize(&self) -> Result<(), DeviceError> {
        match &self.backend {
            Backend::Emu(_) => Ok(()),
            Backend::Cuda(c) => c.synchronize(),
        }
    }

    /// Launches the compiled kernel `name` (kernels/*.cu). Arguments are checked against its
    /// C parameter list. On emu the launch is synchronous and reports barrier misuse and
    /// out-of-bounds reads and writes; on cuda it is asynchronous.
    pub fn launch(
        &self,
        name: &str,
        config: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), DeviceError> {
        self.launch_kernel(compiled_kernel(name)?, config, args)
    }

    /// Launches a kernel from an explicit table entry (e.g. the emu-only test kernels).
    pub fn launch_kernel(
        &self,
        kernel: &'static Kernel,
        config: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), DeviceError> {
        launch::check_launch(kernel, &config, args)?;
        self.dispatch(kernel, &config, args, false)
    }

    /// Records `kernel` as launched and hands the checked launch to the backend.
    fn dispatch(
        &self,
        kernel: &'static Kernel,
        config: &LaunchConfig,
        args: &[KernelArg],
        cooperative: bool,
    ) -> Result<(), DeviceError> {
        self.launched
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(kernel.name);
        match &self.backend {
            Backend::Emu(options) => emu::launch(options, kernel, config, args, cooperative),
            Backend::Cuda(c) => c.launch(kernel, config, args, cooperative),
        }
    }

    /// Launches `name` with every block resident at once (cuLaunchCooperativeKernel), as a kernel
    /// that calls `grid_barrier_sync` (kernels/common.cuh) needs. Fails with a clear error, before
    /// launching, when the grid is larger than [`KernelDevice::max_cooperative_blocks`].
    pub fn launch_cooperative(
        &self,
        name: &str,
        config: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), DeviceError> {
        self.launch_kernel_cooperative(compiled_kernel(name)?, config, args)
    }

    /// [`KernelDevice::launch_cooperative`] from an explicit table entry (e.g. a test kernel).
    pub fn launch_kernel_cooperative(
        &self,
        kernel: &'static Kernel,
        config: LaunchConfig,
        args: &[KernelArg],
    ) -> Result<(), DeviceError> {
        launch::check_launch(kernel, &config, args)?;
        let blocks: u64 = config.grid.iter().map(|&d| d as u64).product();
        let threads: u32 = config.block.iter().product();
        let resident = self.max_cooperative_blocks(kernel, threads, config.shared_mem_bytes)?;
        if blocks > resident as u64 {
            return Err(DeviceError::Arguments {
                kernel: kernel.name,
                source_file: kernel.source,
                message: format!(
                    "a cooperative launch of {blocks} blocks ({threads} threads, {} bytes of shared \
                     memory each) exceeds the {resident} blocks that {} keeps resident at once",
                    config.shared_mem_bytes,
                    self.describe()
                ),
            });
        }
        self.dispatch(kernel, &config, args, true)
    }

    /// How many blocks of `kernel` (of `threads` threads and `shared_mem_bytes` of dynamic shared
    /// memory each) can be resident at once: the grid bound of a cooperative launch. On cuda the
    /// occupancy calculator's blocks per SM times the SMs (0 where the GPU has no cooperative
    /// launch); on emu a fixed bound (an OS thread per block).
    pub fn max_cooperative_blocks(
        &self,
        kernel: &'static Kernel,
        threads: u32,
        shared_mem_bytes: u32,
    ) -> Result<u32, DeviceError> {
        match &self.backend {
            Backend::Emu(_) => Ok(emu::MAX_COOPERATIVE_BLOCKS),
            Backend::Cuda(c) => c.max_cooperative_blocks(kernel, threads, shared_mem_bytes),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_names_parse_and_print_back() {
        for (text, request) in [
            ("auto", DeviceRequest::Auto),
            ("cpu", DeviceRequest::Cpu),
            ("emu", DeviceRequest::Emu),
            ("cuda:0", DeviceRequest::Cuda(0)),
            ("cuda:3", DeviceRequest::Cuda(3)),
        ] {
            assert_eq!(text.parse::<DeviceRequest>().unwrap(), request);
            assert_eq!(request.to_string(), text);
        }
        assert_eq!(
            "cuda".parse::<DeviceRequest>().unwrap(),
            DeviceRequest::Cuda(0)
        );
        for bad in ["gpu", "cuda:", "cuda:x", "CPU", ""] {
            assert!(
                matches!(
                    bad.parse::<DeviceRequest>(),
                    Err(DeviceError::UnknownDevice(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn auto_picks_cuda_exactly_when_it_opens_and_otherwise_says_why_not() {
        let selection = DeviceRequest::Auto.open().unwrap();
        match KernelDevice::cuda(0) {
            Ok(cuda) => {
                assert!(
                    matches!(selection.device, Device::Kernels(_)),
                    "cuda opens, auto chose {}",
                    selection.device.describe()
                );
                assert_eq!(
                    selection.reason,
                    format!("auto chose cuda: {}", cuda.describe())
                );
            }
            Err(why) => {
                assert!(
                    matches!(selection.device, Device::Cpu),
                    "cuda fails, auto chose {}",
                    selection.device.describe()
                );
                // The reason is cuda's own error, so the user sees what is missing.
                assert_eq!(selection.reason, format!("auto chose cpu: {why}"));
            }
        }
    }

    #[test]
    fn buffers_round_trip_and_fresh_ones_are_nan() {
        let device = KernelDevice::emu(EmuOptions::default());
        let data = [1.5f32, -2.0, 3.25];
        assert_eq!(
            device.download(&device.upload(&data).unwrap()).unwrap(),
            data
        );
        assert!(device
            .download(&device.alloc::<f32>(5).unwrap())
            .unwrap()
            .iter()
            .all(|v| v.is_nan()));
        assert!(device
            .download(&device.alloc::<f32>(0).unwrap())
            .unwrap()
            .is_empty());
    }

    #[test]
    fn unknown_kernel_names_are_an_error() {
        let device = KernelDevice::emu(EmuOptions::default());
        let result = device.launch("no_such_kernel", LaunchConfig::blocks(1, 1), &[]);
        assert!(matches!(result, Err(DeviceError::UnknownKernel(_))));
    }
}

//! The cuda device: NVRTC's images loaded through cudarc, whose dynamic loading means a machine
//! without libcuda builds and runs; only opening this device fails, with a clear error.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex, OnceLock};

use cudarc::driver::{
    result, sys, CudaContext, CudaFunction, CudaModule, CudaSlice, CudaStream, DevicePtr,
};
use cudarc::nvrtc::Ptx;

use super::buffer::{DeviceMemory, POISON_BYTE};
use super::kernels::{Kernel, ModuleImages, NvrtcReport, NVRTC};
use super::launch::{KernelArg, LaunchConfig};
use super::DeviceError;

pub(crate) struct CudaDevice {
    pub ordinal: usize,
    pub name: String,
    pub compute_capability: (i32, i32),
    /// e.g. 13000 for CUDA 13.0
    pub driver_version: i32,
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    modules: Mutex<HashMap<&'static str, Arc<CudaModule>>>,
    functions: Mutex<HashMap<&'static str, CudaFunction>>,
}

fn driver_error(during: impl Into<String>) -> impl FnOnce(result::DriverError) -> DeviceError {
    let during = during.into();
    move |source| DeviceError::Cuda {
        during,
        message: source.to_string(),
    }
}

/// Opens CUDA device `ordinal` once per process; later calls share it.
pub(crate) fn open(ordinal: usize) -> Result<Arc<CudaDevice>, DeviceError> {
    static OPENED: OnceLock<Mutex<HashMap<usize, Arc<CudaDevice>>>> = OnceLock::new();
    let mut opened = OPENED
        .get_or_init(Default::default)
        .lock()
        .expect("cuda device table poisoned");
    if let Some(device) = opened.get(&ordinal) {
        return Ok(device.clone());
    }
    // cudarc panics when the driver lacks a symbol it calls (a driver older than CUDA 12.0):
    // that is one more reason the device is unavailable, not a crash.
    let device = std::panic::catch_unwind(|| open_uncached(ordinal)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        Err(DeviceError::NoDriver(format!(
            "the CUDA driver is unusable: {message}"
        )))
    })?;
    let device = Arc::new(device);
    opened.insert(ordinal, device.clone());
    Ok(device)
}

fn open_uncached(ordinal: usize) -> Result<CudaDevice, DeviceError> {
    if let NvrtcReport::NotFound(reason) = NVRTC {
        return Err(DeviceError::KernelsNotCompiled(reason.to_string()));
    }
    // SAFETY: only tries to dlopen libcuda.
    if !unsafe { sys::is_culib_present() } {
        return Err(DeviceError::NoDriver(
            "libcuda.so (the NVIDIA driver) was not found".into(),
        ));
    }
    let count = match CudaContext::device_count() {
        Ok(count) => count as usize,
        Err(e) if e.0 == sys::CUresult::CUDA_ERROR_NO_DEVICE => 0,
        Err(e) => {
            return Err(DeviceError::NoDriver(format!(
                "the CUDA driver failed to start: {e}"
            )))
        }
    };
    if ordinal >= count {
        return Err(DeviceError::NoGpu { ordinal, count });
    }
    let ctx = CudaContext::new(ordinal)
        .map_err(driver_error(format!("creating a context on GPU {ordinal}")))?;
    // One stream per device: launches and copies are ordered without events.
    // SAFETY: no buffer of this context exists yet.
    unsafe { ctx.disable_event_tracking() };
    let stream = ctx.default_stream();
    let name = ctx.name().map_err(driver_error("reading the GPU name"))?;
    let compute_capability = ctx
        .compute_capability()
        .map_err(driver_error("reading the compute capability"))?;
    let mut driver_version = 0;
    // SAFETY: one valid out-pointer.
    unsafe { sys::cuDriverGetVersion(&mut driver_version) };
    Ok(CudaDevice {
        ordinal,
        name,
        compute_capability,
        driver_version,
        ctx,
        stream,
        modules: Mutex::new(HashMap::new()),
        functions: Mutex::new(HashMap::new()),
    })
}

/// The CUBIN of the device's architecture family (an sm_80 CUBIN runs on sm_86 and sm_89 too),
/// else the PTX, which the driver JIT-compiles. Returns the image and what it is.
fn pick_image(
    images: &ModuleImages,
    (major, minor): (i32, i32),
) -> Option<(&'static [u8], String)> {
    let cubin = images
        .cubins
        .iter()
        .filter(|(arch, _)| (*arch / 10) as i32 == major && (*arch % 10) as i32 <= minor)
        .max_by_key(|(arch, _)| *arch);
    if let Some((arch, bytes)) = cubin {
        return Some((bytes, format!("sm_{arch} CUBIN")));
    }
    // PTX for compute_XY runs on sm_XY and newer only.
    images
        .ptx
        .filter(|(arch, _)| major * 10 + minor >= *arch as i32)
        .map(|(arch, bytes)| (bytes, format!("compute_{arch} PTX (JIT)")))
}

impl CudaDevice {
    pub fn describe(&self) -> String {
        format!(
            "CUDA device {} ({}, sm_{}{}, driver CUDA {}.{})",
            self.ordinal,
            self.name,
            self.compute_capability.0,
            self.compute_capability.1,
            self.driver_version / 1000,
            self.driver_version % 1000 / 10
        )
    }

    fn function(&self, kernel: &'static Kernel) -> Result<CudaFunction, DeviceError> {
        if let Some(f) = self
            .functions
            .lock()
            .expect("function table poisoned")
            .get(kernel.name)
        {
            return Ok(f.clone());
        }
        let module = {
            let mut modules = self.modules.lock().expect("module table poisoned");
            match modules.get(kernel.source) {
                Some(m) => m.clone(),
                None => {
                    let (image, what) = pick_image(kernel.images, self.compute_capability)
                        .ok_or_else(|| {
                            DeviceError::KernelsNotCompiled(format!(
                                "{} has no image for sm_{}{} (CUBINs for sm_80..sm_90, PTX for sm_80 and newer)",
                                kernel.source, self.compute_capability.0, self.compute_capability.1
                            ))
                        })?;
                    let module = self
                        .ctx
                        .load_module(Ptx::from_binary(image.to_vec()))
                        .map_err(driver_error(format!(
                            "loading the {what} of {}",
                            kernel.source
                        )))?;
                    modules.insert(kernel.source, module.clone());
                    module
                }
            }
        };
        let function = module
            .load_function(kernel.name)
            .map_err(driver_error(format!("finding kernel `{}`", kernel.name)))?;
        self.functions
            .lock()
            .expect("function table poisoned")
            .insert(kernel.name, function.clone());
        Ok(function)
    }

    /// `bytes` of device memory filled with the poison byte.
    pub fn alloc(&self, bytes: usize) -> Result<CudaSlice<u8>, DeviceError> {
        self.ctx
            .bind_to_thread()
            .map_err(driver_error("binding the context"))?;
        // cuMemAlloc rejects 0 bytes; an empty buffer holds one unused byte.
        let slice = self
            .stream
            .alloc_zeros::<u8>(bytes.max(1))
            .map_err(driver_error("allocating device memory"))?;
        let (pointer, _sync) = slice.device_ptr(&self.stream);
        // SAFETY: the range lies inside the allocation just made on this stream.
        unsafe {
            result::memset_d8_async(pointer, POISON_BYTE, bytes.max(1), self.stream.cu_stream())
        }
        .map_err(driver_error("poisoning device memory"))?;
        drop(_sync);
        Ok(slice)
    }

    pub fn upload(&self, bytes: &[u8]) -> Result<CudaSlice<u8>, DeviceError> {
        let mut slice = self.alloc(bytes.len())?;
        if !bytes.is_empty() {
            self.stream
                .memcpy_htod(bytes, &mut slice)
                .map_err(driver_error("copying to the GPU"))?;
        }
        Ok(slice)
    }

    /// `bytes` into an existing allocation of at least that size, in stream order.
    pub fn copy_to_device(
        &self,
        bytes: &[u8],
        slice: &mut CudaSlice<u8>,
    ) -> Result<(), DeviceError> {
        self.ctx
            .bind_to_thread()
            .map_err(driver_error("binding the context"))?;
        if bytes.is_empty() {
            return Ok(());
        }
        let mut view = slice.slice_mut(0..bytes.len());
        self.stream
            .memcpy_htod(bytes, &mut view)
            .map_err(driver_error("copying to the GPU"))
    }

    pub fn download(&self, slice: &CudaSlice<u8>, bytes: usize) -> Result<Vec<u8>, DeviceError> {
        self.ctx
            .bind_to_thread()
            .map_err(driver_error("binding the context"))?;
        let mut host = self
            .stream
            .clone_dtoh(slice)
            .map_err(driver_error("copying from the GPU"))?;
        host.truncate(bytes);
        Ok(host)
    }

    /// The device address of an allocation, for the views of an arena.
    pub fn address(&self, slice: &CudaSlice<u8>) -> u64 {
        slice.device_ptr(&self.stream).0
    }

    /// `bytes` from device address `address` (a view inside an arena), after every launch.
    pub fn download_view(&self, address: u64, bytes: usize) -> Result<Vec<u8>, DeviceError> {
        self.synchronize()?;
        let mut host = vec![0u8; bytes];
        if bytes > 0 {
            // SAFETY: the view's range lies inside a live allocation of this context (the
            // arena that lent it is borrowed for the call).
            unsafe { result::memcpy_dtoh_sync(&mut host, address) }
                .map_err(driver_error("copying from the GPU"))?;
        }
        Ok(host)
    }

    pub fn synchronize(&self) -> Result<(), DeviceError> {
        self.stream
            .synchronize()
            .map_err(driver_error("waiting for the GPU"))
    }

    pub fn launch(
        &self,
        kernel: &'static Kernel,
        config: &LaunchConfig,
        args: &[KernelArg],
        cooperative: bool,
    ) -> Result<(), DeviceError> {
        let function = self.function(kernel)?;
        self.ctx
            .bind_to_thread()
            .map_err(driver_error("binding the context"))?;
        let mut values: Vec<[u8; 8]> = Vec::with_capacity(args.len());
        for arg in args {
            let bytes = match arg {
                KernelArg::Buffer(b) => match b.storage {
                    DeviceMemory::Cuda(slice) => slice.device_ptr(&self.stream).0.to_ne_bytes(),
                    DeviceMemory::View(view) if view.cuda => view.address.to_ne_bytes(),
                    DeviceMemory::Emu(_) | DeviceMemory::View(_) => {
                        return Err(DeviceError::Arguments {
                            kernel: kernel.name,
                            source_file: kernel.source,
                            message: "an emu buffer was passed to the cuda device".into(),
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
        let [gx, gy, gz] = config.grid;
        let [bx, by, bz] = config.block;
        // SAFETY: one pointer per parameter to a value of its type (check_launch); device
        // pointers belong to this context and outlive the launch (the caller holds the borrows
        // until it synchronises through a download).
        unsafe {
            if cooperative {
                // The driver refuses (CUDA_ERROR_COOPERATIVE_LAUNCH_TOO_LARGE) a grid that cannot
                // be resident at once; KernelDevice checked the bound before.
                result::launch_cooperative_kernel(
                    function.cu_function(),
                    (gx, gy, gz),
                    (bx, by, bz),
                    config.shared_mem_bytes,
                    self.stream.cu_stream(),
                    &mut pointers,
                )
            } else {
                result::launch_kernel(
                    function.cu_function(),
                    (gx, gy, gz),
                    (bx, by, bz),
                    config.shared_mem_bytes,
                    self.stream.cu_stream(),
                    &mut pointers,
                )
            }
        }
        .map_err(driver_error(format!(
            "launching `{}` ({}){}",
            kernel.name,
            kernel.source,
            if cooperative { " cooperatively" } else { "" }
        )))
    }

    /// Blocks of `kernel` that can be resident at once: the occupancy calculator's blocks per SM
    /// times the SMs, or 0 where the GPU does not support cooperative launches.
    pub fn max_cooperative_blocks(
        &self,
        kernel: &'static Kernel,
        threads: u32,
        shared_mem_bytes: u32,
    ) -> Result<u32, DeviceError> {
        let function = self.function(kernel)?;
        self.ctx
            .bind_to_thread()
            .map_err(driver_error("binding the context"))?;
        let supported = self
            .ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_COOPERATIVE_LAUNCH)
            .map_err(driver_error(
                "reading whether the GPU has cooperative launches",
            ))?;
        if supported == 0 {
            return Ok(0);
        }
        let sms = self
            .ctx
            .attribute(sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)
            .map_err(driver_error("reading the number of SMs"))?;
        let per_sm = function
            .occupancy_max_active_blocks_per_multiprocessor(
                threads,
                shared_mem_bytes as usize,
                None,
            )
            .map_err(driver_error(format!(
                "computing the occupancy of `{}`",
                kernel.name
            )))?;
        Ok(per_sm.saturating_mul(sms.max(0) as u32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    static IMAGES: ModuleImages = ModuleImages {
        cubins: &[(80, b"80"), (86, b"86"), (89, b"89"), (90, b"90")],
        ptx: Some((80, b"ptx\0")),
    };

    #[test]
    fn image_is_the_newest_cubin_of_the_gpu_family_else_ptx() {
        let pick = |cc| pick_image(&IMAGES, cc).unwrap().0;
        assert_eq!(pick((8, 0)), b"80");
        assert_eq!(pick((8, 6)), b"86");
        assert_eq!(pick((8, 7)), b"86");
        assert_eq!(pick((8, 9)), b"89");
        assert_eq!(pick((9, 0)), b"90");
        assert_eq!(pick((10, 0)), b"ptx\0");
        assert!(
            pick_image(&IMAGES, (7, 5)).is_none(),
            "sm_75 is older than every target"
        );
    }
}

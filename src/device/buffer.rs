//! One buffer type for both kernel devices: host memory with guard regions on `emu`, device
//! memory on `cuda`.

use std::alloc::Layout;
use std::marker::PhantomData;
use std::ptr::NonNull;

use super::kernels::Scalar;

/// A type that kernels read and write: plain old data with a matching C type.
pub trait Element: bytemuck::Pod {
    const SCALAR: Scalar;
}

impl Element for f32 {
    const SCALAR: Scalar = Scalar::F32;
}
impl Element for f64 {
    const SCALAR: Scalar = Scalar::F64;
}
impl Element for i32 {
    const SCALAR: Scalar = Scalar::I32;
}
impl Element for u32 {
    const SCALAR: Scalar = Scalar::U32;
}
impl Element for i64 {
    const SCALAR: Scalar = Scalar::I64;
}
impl Element for u64 {
    const SCALAR: Scalar = Scalar::U64;
}
impl Element for u8 {
    const SCALAR: Scalar = Scalar::U8;
}

/// The byte every fresh allocation is filled with: 0xFFFFFFFF is a NaN as f32, so an output
/// element that a kernel forgot to write shows up as NaN.
pub(crate) const POISON_BYTE: u8 = 0xff;

/// Bytes of canary on each side of an emu allocation; a multiple of 256, cudaMalloc's alignment.
const GUARD_BYTES: usize = 4096;

fn guard_pattern(offset: usize) -> u8 {
    (offset as u8).wrapping_mul(151).wrapping_add(0x5a)
}

/// Host memory for the emu device, with canary guards before and after the data that are
/// checked after each launch, so an out-of-bounds write is caught.
pub(crate) struct GuardedAlloc {
    base: NonNull<u8>,
    layout: Layout,
    data_bytes: usize,
}

// SAFETY: the allocation is exclusively owned; access goes through &/&mut of the owner.
unsafe impl Send for GuardedAlloc {}
unsafe impl Sync for GuardedAlloc {}

/// Where a guard changed: before the data or after its end, and how many bytes.
#[derive(Debug)]
pub(crate) struct GuardDamage {
    pub before: usize,
    pub after: usize,
    /// The changed byte nearest the data: bytes before its start (1 = just before) and bytes
    /// past its end (0 = the first byte after).
    pub nearest_before: Option<usize>,
    pub nearest_after: Option<usize>,
}

impl GuardedAlloc {
    pub fn new(data_bytes: usize) -> GuardedAlloc {
        let layout = Layout::from_size_align(data_bytes + 2 * GUARD_BYTES, 256)
            .expect("allocation size overflows");
        // SAFETY: the layout has a non-zero size (two guards).
        let base = unsafe { std::alloc::alloc(layout) };
        let Some(base) = NonNull::new(base) else {
            std::alloc::handle_alloc_error(layout)
        };
        let alloc = GuardedAlloc {
            base,
            layout,
            data_bytes,
        };
        // SAFETY: all bytes are inside the allocation.
        unsafe {
            std::ptr::write_bytes(alloc.data_ptr(), POISON_BYTE, data_bytes);
        }
        alloc.restore_guards();
        alloc
    }

    pub fn data_ptr(&self) -> *mut u8 {
        // SAFETY: GUARD_BYTES is inside the allocation.
        unsafe { self.base.as_ptr().add(GUARD_BYTES) }
    }

    pub fn data(&self) -> &[u8] {
        // SAFETY: data_bytes initialised bytes start at data_ptr.
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.data_bytes) }
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.data_bytes) }
    }

    /// Byte `i` of the guard region: 0..GUARD_BYTES before the data, GUARD_BYTES.. after it.
    fn guard_byte(&self, i: usize) -> *mut u8 {
        // SAFETY: both guards lie inside the allocation and do not overlap the data.
        unsafe {
            if i < GUARD_BYTES {
                self.base.as_ptr().add(i)
            } else {
                self.data_ptr().add(self.data_bytes + i - GUARD_BYTES)
            }
        }
    }

    // Guards are touched only between launches, never while a kernel runs on this allocation.
    fn restore_guards(&self) {
        for i in 0..2 * GUARD_BYTES {
            // SAFETY: guard_byte points inside the allocation.
            unsafe { self.guard_byte(i).write(guard_pattern(i)) }
        }
    }

    /// Checks both guards; on damage, reports it and restores them.
    pub fn check_guards(&self) -> Option<GuardDamage> {
        // SAFETY: guard_byte points inside the allocation.
        let changed: Vec<usize> = (0..2 * GUARD_BYTES)
            .filter(|&i| unsafe { self.guard_byte(i).read() } != guard_pattern(i))
            .collect();
        if changed.is_empty() {
            return None;
        }
        self.restore_guards();
        let before: Vec<usize> = changed
            .iter()
            .filter(|&&i| i < GUARD_BYTES)
            .map(|&i| GUARD_BYTES - i)
            .collect();
        let after: Vec<usize> = changed
            .iter()
            .filter(|&&i| i >= GUARD_BYTES)
            .map(|&i| i - GUARD_BYTES)
            .collect();
        Some(GuardDamage {
            before: before.len(),
            after: after.len(),
            nearest_before: before.iter().copied().min(),
            nearest_after: after.iter().copied().min(),
        })
    }
}

impl Drop for GuardedAlloc {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout.
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

pub(crate) enum Storage {
    Emu(GuardedAlloc),
    Cuda(cudarc::driver::CudaSlice<u8>),
}

/// `len` elements of `T` on a kernel device (emu or cuda). Created by
/// [`KernelDevice::upload`](super::KernelDevice::upload) or
/// [`KernelDevice::alloc`](super::KernelDevice::alloc); read back with
/// [`KernelDevice::download`](super::KernelDevice::download).
pub struct DeviceBuffer<T: Element> {
    pub(crate) storage: Storage,
    pub(crate) len: usize,
    pub(crate) _element: PhantomData<T>,
}

impl<T: Element> DeviceBuffer<T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

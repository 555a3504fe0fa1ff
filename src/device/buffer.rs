//! One buffer type for both kernel devices: host memory between inaccessible pages on `emu`,
//! device memory on `cuda`.

use std::marker::PhantomData;

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

fn guard_pattern(offset: usize) -> u8 {
    (offset as u8).wrapping_mul(151).wrapping_add(0x5a)
}

#[repr(C)]
struct Mapping {
    base: *mut u8,
    bytes: usize,
    writable: *mut u8,
    writable_bytes: usize,
    data: *mut u8,
}

extern "C" {
    fn mtosi_emu_buffer_map(
        bytes: usize,
        end_aligned: std::ffi::c_int,
        out: *mut Mapping,
    ) -> std::ffi::c_int;
    fn mtosi_emu_buffer_unmap(base: *mut u8, bytes: usize);
}

/// Which side of an emu buffer lies against an inaccessible page (kernels/emu/cuemu.cpp,
/// `mtosi_emu_buffer_map`): an access just past that side faults at once and is reported
/// naming the parameter, read or write. The other side has a canary of the bytes up to the
/// page boundary (fewer than 4 KiB), checked after each launch, which catches writes only.
/// The equivalence harness runs every kernel with both (forward thread order: end; reverse:
/// start), so that reads off either end are caught.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GuardedSide {
    End,
    Start,
}

/// Host memory for the emu device between two inaccessible pages, with canary bytes in the
/// rest of the pages the data does not fill; see [`GuardedSide`].
pub(crate) struct GuardedAlloc {
    mapping: Mapping,
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
    pub fn new(data_bytes: usize, side: GuardedSide) -> GuardedAlloc {
        let mut mapping = Mapping {
            base: std::ptr::null_mut(),
            bytes: 0,
            writable: std::ptr::null_mut(),
            writable_bytes: 0,
            data: std::ptr::null_mut(),
        };
        // SAFETY: `mapping` is a valid out-pointer.
        let status = unsafe {
            mtosi_emu_buffer_map(
                data_bytes,
                (side == GuardedSide::End) as std::ffi::c_int,
                &mut mapping,
            )
        };
        if status != 0 {
            std::alloc::handle_alloc_error(
                std::alloc::Layout::from_size_align(data_bytes.max(1), 4096)
                    .expect("allocation size overflows"),
            );
        }
        let alloc = GuardedAlloc {
            mapping,
            data_bytes,
        };
        // SAFETY: the data bytes are inside the writable pages.
        unsafe {
            std::ptr::write_bytes(alloc.data_ptr(), POISON_BYTE, data_bytes);
        }
        alloc.restore_guards();
        alloc
    }

    pub fn data_ptr(&self) -> *mut u8 {
        self.mapping.data
    }

    pub fn data(&self) -> &[u8] {
        // SAFETY: data_bytes initialised bytes start at data_ptr (a dangling but aligned pointer
        // into the guard page when empty, which a zero-length slice never reads).
        unsafe { std::slice::from_raw_parts(self.data_ptr(), self.data_bytes) }
    }

    pub fn data_mut(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.data_ptr(), self.data_bytes) }
    }

    /// Canary bytes before the data and after it (one of the two is empty).
    fn slack(&self) -> (usize, usize) {
        let before = self.mapping.data as usize - self.mapping.writable as usize;
        (
            before,
            self.mapping.writable_bytes - before - self.data_bytes,
        )
    }

    /// Byte `i` of the canary: 0..before lies before the data, before.. after it.
    fn guard_byte(&self, i: usize) -> *mut u8 {
        let (before, _) = self.slack();
        // SAFETY: both slack regions lie inside the writable pages and outside the data.
        unsafe {
            if i < before {
                self.mapping.writable.add(i)
            } else {
                self.data_ptr().add(self.data_bytes + i - before)
            }
        }
    }

    // Guards are touched only between launches, never while a kernel runs on this allocation.
    fn restore_guards(&self) {
        let (before, after) = self.slack();
        for i in 0..before + after {
            // SAFETY: guard_byte points inside the writable pages.
            unsafe { self.guard_byte(i).write(guard_pattern(i)) }
        }
    }

    /// Checks the canary; on damage, reports it and restores it.
    pub fn check_guards(&self) -> Option<GuardDamage> {
        let (before_bytes, after_bytes) = self.slack();
        // SAFETY: guard_byte points inside the writable pages.
        let changed: Vec<usize> = (0..before_bytes + after_bytes)
            .filter(|&i| unsafe { self.guard_byte(i).read() } != guard_pattern(i))
            .collect();
        if changed.is_empty() {
            return None;
        }
        self.restore_guards();
        let before: Vec<usize> = changed
            .iter()
            .filter(|&&i| i < before_bytes)
            .map(|&i| before_bytes - i)
            .collect();
        let after: Vec<usize> = changed
            .iter()
            .filter(|&&i| i >= before_bytes)
            .map(|&i| i - before_bytes)
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
        // SAFETY: mapped in `new`, unmapped once.
        unsafe { mtosi_emu_buffer_unmap(self.mapping.base, self.mapping.bytes) }
    }
}

pub(crate) enum DeviceMemory {
    Emu(GuardedAlloc),
    Cuda(cudarc::driver::CudaSlice<u8>),
    /// A range of one arena's allocation ([`super::arena::DeviceArena`]): the arena owns the
    /// memory and lends its views only by reference, so a view cannot outlive it.
    View(ViewMemory),
}

/// Where a view's bytes lie: a host address on emu, a device address on cuda.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ViewMemory {
    pub cuda: bool,
    pub address: u64,
    pub bytes: usize,
}

/// `len` elements of `T` on a kernel device (emu or cuda). Created by
/// [`KernelDevice::upload`](super::KernelDevice::upload) or
/// [`KernelDevice::alloc`](super::KernelDevice::alloc); read back with
/// [`KernelDevice::download`](super::KernelDevice::download).
pub struct DeviceBuffer<T: Element> {
    pub(crate) storage: DeviceMemory,
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

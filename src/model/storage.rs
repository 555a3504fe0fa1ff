//! Float32 storage for activations and gradients, recycled between passes. A training step
//! allocates the same sizes every time; taking them from a pool instead of the allocator
//! avoids the page faults and the kernel's zeroing of fresh large allocations (measured at
//! about 15% of a step's wall time), in the spirit of llm.c's allocate-once activations.
//!
//! Fresh buffers of [`HUGE_PAGE_MIN_BYTES`] or more are advised to the kernel as transparent huge
//! pages (`madvise(MADV_HUGEPAGE)`, Linux; most distributions enable THP "madvise", where only
//! advised memory gets them): the step streams gigabytes of activations at batch 32, and with
//! 4 KiB pages every 4 KiB of them costs a TLB miss. A small gain, measured on a 2-core Zen 5
//! (bf16 B = 32 × 640 step, four interleaved pairs of 3-step runs): fastest step 2.30–2.50 s
//! (mean 2.40) with 2 MiB pages, 2.34–2.62 s (mean 2.50) without; B = 4 shows nothing outside
//! the host's noise. `MTOSI_HUGE_PAGES=0` leaves them off.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

/// Fresh buffers at least this large are advised as huge pages: a 2 MiB page wastes nothing in
/// a buffer that is wholly used, and smaller buffers would hold one or none.
pub const HUGE_PAGE_MIN_BYTES: usize = 8 << 20;

/// Environment variable that turns the huge-page advice off (`0`).
pub const HUGE_PAGES_VAR: &str = "MTOSI_HUGE_PAGES";

/// Pooled bytes are capped so that a run over many different sizes (inference on recordings
/// of every length) cannot hoard memory.
const POOL_CAP_BYTES: usize = 16 << 30;

struct Pool {
    free: HashMap<usize, Vec<Vec<f32>>>,
    bytes: usize,
}

static POOL: Mutex<Option<Pool>> = Mutex::new(None);

fn take(len: usize) -> Option<Vec<f32>> {
    let mut guard = POOL.lock().unwrap();
    let pool = guard.as_mut()?;
    let v = pool.free.get_mut(&len)?.pop()?;
    pool.bytes -= len * 4;
    Some(v)
}

/// `len` zeros from the allocator, advised as huge pages when large (see the module doc).
fn fresh(len: usize) -> Vec<f32> {
    // A large calloc is fresh mapped memory not yet touched, so the advice comes before the
    // first fault and the pages come in at 2 MiB.
    let v = vec![0.0f32; len];
    if len * size_of::<f32>() >= HUGE_PAGE_MIN_BYTES && huge_pages_wanted() {
        advise_huge_pages(&v);
    }
    v
}

fn huge_pages_wanted() -> bool {
    static WANTED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WANTED.get_or_init(|| std::env::var(HUGE_PAGES_VAR).map_or(true, |v| v.trim() != "0"))
}

/// Advises the whole 2 MiB pages inside `v` as huge pages. Only advice: where the kernel has
/// no transparent huge pages, or refuses, nothing changes (the result is not an error).
fn advise_huge_pages(v: &[f32]) {
    #[cfg(target_os = "linux")]
    {
        const HUGE_PAGE: usize = 2 << 20;
        let start = v.as_ptr() as usize;
        let end = start + std::mem::size_of_val(v);
        let (first, last) = (
            start.next_multiple_of(HUGE_PAGE),
            end / HUGE_PAGE * HUGE_PAGE,
        );
        if last > first {
            // SAFETY: [first, last) lies inside `v`'s allocation, which outlives the call;
            // MADV_HUGEPAGE changes how those pages are backed, never their contents.
            unsafe {
                libc::madvise(
                    first as *mut libc::c_void,
                    last - first,
                    libc::MADV_HUGEPAGE,
                );
            }
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = v;
}

fn give_back(v: Vec<f32>) {
    let bytes = v.len() * 4;
    if bytes == 0 {
        return;
    }
    let mut guard = POOL.lock().unwrap();
    let pool = guard.get_or_insert_with(|| Pool {
        free: HashMap::new(),
        bytes: 0,
    });
    if pool.bytes + bytes <= POOL_CAP_BYTES {
        pool.bytes += bytes;
        pool.free.entry(v.len()).or_default().push(v);
    }
}

/// Releases every pooled buffer to the allocator: after a pass over a whole recording, whose
/// sizes no later pass reuses (validation and evaluation call it).
pub fn release_pool() {
    *POOL.lock().unwrap() = None;
}

/// A float32 buffer that returns to the pool when dropped.
#[derive(Debug, Default)]
pub struct Storage(Vec<f32>);

impl Storage {
    /// `len` zeros, for gradients that backward passes add into.
    pub fn zeroed(len: usize) -> Self {
        match take(len) {
            Some(mut v) => {
                v.fill(0.0);
                Storage(v)
            }
            None => Storage(fresh(len)),
        }
    }

    /// `len` values of unspecified content, for outputs an op overwrites entirely.
    pub fn for_overwrite(len: usize) -> Self {
        Storage(take(len).unwrap_or_else(|| fresh(len)))
    }

    /// The values, leaving the pool.
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.0)
    }
}

impl From<Vec<f32>> for Storage {
    fn from(v: Vec<f32>) -> Self {
        Storage(v)
    }
}

impl Clone for Storage {
    fn clone(&self) -> Self {
        let mut copy = Storage::for_overwrite(self.0.len());
        copy.copy_from_slice(&self.0);
        copy
    }
}

impl Deref for Storage {
    type Target = [f32];
    fn deref(&self) -> &[f32] {
        &self.0
    }
}

impl DerefMut for Storage {
    fn deref_mut(&mut self) -> &mut [f32] {
        &mut self.0
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        give_back(std::mem::take(&mut self.0));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zeroed_storage_is_zero_even_when_recycled() {
        let mut a = Storage::for_overwrite(1234);
        a.fill(7.0);
        drop(a);
        let b = Storage::zeroed(1234);
        assert!(b.iter().all(|&v| v == 0.0));
        assert_eq!(b.len(), 1234);
    }

    #[test]
    fn storage_advised_as_huge_pages_is_zero_and_keeps_what_is_written() {
        // Large enough to be advised, and not a whole number of 2 MiB pages.
        let len = 2 * HUGE_PAGE_MIN_BYTES / size_of::<f32>() + 12_345;
        let mut a = Storage::zeroed(len);
        assert!(a.iter().all(|&v| v == 0.0));
        for (i, v) in a.iter_mut().enumerate() {
            *v = i as f32;
        }
        assert!(a.iter().enumerate().all(|(i, &v)| v == i as f32));
    }
}

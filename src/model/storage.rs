//! Float32 storage for activations and gradients, recycled between passes. A training step
//! allocates the same sizes every time; taking them from a pool instead of the allocator
//! avoids the page faults and the kernel's zeroing of fresh large allocations (measured at
//! about 15% of a step's wall time), in the spirit of llm.c's allocate-once activations.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Mutex;

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
            None => Storage(vec![0.0; len]),
        }
    }

    /// `len` values of unspecified content, for outputs an op overwrites entirely.
    pub fn for_overwrite(len: usize) -> Self {
        Storage(take(len).unwrap_or_else(|| vec![0.0; len]))
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
}

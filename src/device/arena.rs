//! Many tensors in one allocation (llm.c's allocate-once): the network's parameters, their
//! gradients, Adam's two moments and the BatchNorm running statistics each live in one arena,
//! so zeroing, clipping and Adam are one launch each over the whole arena, while every layer
//! reads and writes its own tensors through views into it.
//!
//! A view is a [`DeviceBuffer`] that any launcher takes; the arena owns the memory and lends
//! views only by reference, so a view cannot outlive its arena and `&mut` on the whole arena
//! excludes every view (the borrow checker keeps the one-launch-over-everything and the
//! per-tensor launches apart). On emu only the arena's two ends lie against guard pages: a
//! kernel that runs off one view into its neighbour is not caught there, which is why every op
//! is also checked on its own buffers by its equivalence test.

use std::marker::PhantomData;

use super::buffer::{DeviceMemory, ViewMemory};
use super::{DeviceBuffer, DeviceError, KernelDevice};

/// Views start on multiples of this many floats (256 bytes, the alignment cudaMalloc gives), so
/// a kernel's vector loads stay aligned in a view as in a buffer of its own.
const VIEW_ALIGN: usize = 64;

/// Tensors of f32 in one device allocation; see the module doc.
pub struct DeviceArena {
    whole: DeviceBuffer<f32>,
    views: Vec<DeviceBuffer<f32>>,
    offsets: Vec<usize>,
}

impl DeviceArena {
    /// An arena holding a copy of each of `tensors`, in order; the gaps between views are zeros
    /// (so a launch over the whole arena sees only finite values there).
    pub fn upload(device: &KernelDevice, tensors: &[&[f32]]) -> Result<DeviceArena, DeviceError> {
        let mut offsets = Vec::with_capacity(tensors.len());
        let mut total = 0usize;
        for t in tensors {
            offsets.push(total);
            total = (total + t.len()).div_ceil(VIEW_ALIGN) * VIEW_ALIGN;
        }
        let mut host = vec![0.0f32; total];
        for (t, &offset) in tensors.iter().zip(&offsets) {
            host[offset..offset + t.len()].copy_from_slice(t);
        }
        let whole = device.upload(&host)?;
        let (cuda, base) = device.address_of(&whole)?;
        let views = tensors
            .iter()
            .zip(&offsets)
            .map(|(t, &offset)| DeviceBuffer {
                storage: DeviceMemory::View(ViewMemory {
                    cuda,
                    address: base + (offset * size_of::<f32>()) as u64,
                    bytes: size_of_val(*t),
                }),
                len: t.len(),
                _element: PhantomData,
            })
            .collect();
        Ok(DeviceArena {
            whole,
            views,
            offsets,
        })
    }

    /// An arena of zeros with the tensor lengths `lens`.
    pub fn zeroed(device: &KernelDevice, lens: &[usize]) -> Result<DeviceArena, DeviceError> {
        let zeros: Vec<Vec<f32>> = lens.iter().map(|&n| vec![0.0; n]).collect();
        let refs: Vec<&[f32]> = zeros.iter().map(Vec::as_slice).collect();
        DeviceArena::upload(device, &refs)
    }

    /// How many tensors it holds.
    pub fn tensors(&self) -> usize {
        self.views.len()
    }

    /// The whole allocation, gaps included: what arena-wide launches take.
    pub fn whole(&self) -> &DeviceBuffer<f32> {
        &self.whole
    }

    pub fn whole_mut(&mut self) -> &mut DeviceBuffer<f32> {
        &mut self.whole
    }

    fn missing(&self, index: usize) -> DeviceError {
        DeviceError::InvalidInput {
            op: "arena",
            message: format!("no tensor {index} in an arena of {}", self.views.len()),
        }
    }

    /// Tensor `index`.
    pub fn get(&self, index: usize) -> Result<&DeviceBuffer<f32>, DeviceError> {
        self.views.get(index).ok_or_else(|| self.missing(index))
    }

    pub fn get_mut(&mut self, index: usize) -> Result<&mut DeviceBuffer<f32>, DeviceError> {
        let missing = self.missing(index);
        self.views.get_mut(index).ok_or(missing)
    }

    /// Several distinct tensors at once, each writable (a layer's weight and bias gradients).
    pub fn get_disjoint_mut<const N: usize>(
        &mut self,
        indices: [usize; N],
    ) -> Result<[&mut DeviceBuffer<f32>; N], DeviceError> {
        let count = self.views.len();
        self.views
            .get_disjoint_mut(indices)
            .map_err(|_| DeviceError::InvalidInput {
                op: "arena",
                message: format!("tensors {indices:?} of an arena of {count} are not distinct"),
            })
    }

    /// Every tensor, copied to the host in one transfer.
    pub fn download(&self, device: &KernelDevice) -> Result<Vec<Vec<f32>>, DeviceError> {
        let all = device.download(&self.whole)?;
        Ok(self
            .views
            .iter()
            .zip(&self.offsets)
            .map(|(v, &offset)| all[offset..offset + v.len()].to_vec())
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::EmuOptions;
    use crate::ops::elementwise::{add_in_place_launch, fill_launch};

    #[test]
    fn views_are_the_tensors_and_a_launch_over_the_whole_reaches_every_one() {
        let device = KernelDevice::emu(EmuOptions::default());
        let a: Vec<f32> = (0..70).map(|i| i as f32).collect();
        let b = vec![5.0f32; 3];
        let mut arena = DeviceArena::upload(&device, &[&a, &b]).unwrap();
        assert_eq!(device.download(arena.get(0).unwrap()).unwrap(), a);
        assert_eq!(device.download(arena.get(1).unwrap()).unwrap(), b);
        // A launch on one view writes that tensor only.
        let ones = device.upload(&[1.0f32; 3]).unwrap();
        add_in_place_launch(&device, arena.get_mut(1).unwrap(), &ones).unwrap();
        let back = arena.download(&device).unwrap();
        assert_eq!(back[0], a);
        assert_eq!(back[1], vec![6.0; 3]);
        // One launch over the whole arena reaches both.
        fill_launch(&device, arena.whole_mut(), 0.5).unwrap();
        let back = arena.download(&device).unwrap();
        assert!(back.iter().flatten().all(|&v| v == 0.5));
        assert!(arena.get(2).is_err());
        assert!(arena.get_disjoint_mut([1, 1]).is_err());
    }
}

//! One op per file: its CPU implementation and, where it has one, the launcher of the CUDA kernel
//! of the same name in `kernels/`. Names follow kernels/README.md ("Names: one rule"): `<op>_cpu`
//! is what `Device::Cpu` runs and kernels are checked against (the CPU reference); `*_reference`
//! is a plain-loop oracle of a fast CPU function, for tests only.
//!
//! Conventions shared by every op (llm.c style):
//! - tensors are flat `f32` slices in NCHW (or batch-first `B, T, C`) order; the shapes are
//!   arguments, and each function's comment names the shape of every slice;
//! - `*_forward` overwrites its outputs;
//! - `*_backward` ADDS into every gradient it is given (`d_inp`, `d_weight`, `d_bias`, …), so
//!   a tensor read by several layers collects all its gradients in one buffer; the caller zeroes
//!   gradient buffers before the backward pass. An `Option` gradient that is `None` is skipped;
//! - each file with a fast CPU path keeps a plain-loop `*_reference` version of its forward and
//!   backward: the readable definition and the oracle the fast version is tested against.
//!
//! Slice lengths that do not match the shapes are programming errors and panic with a message;
//! user input is validated before it reaches an op.
//!
//! The fast paths use rayon's thread pool (`RAYON_NUM_THREADS`) and choose AVX-512, AVX2+FMA or
//! portable code at run time; `MTOSI_FORCE_ISA=avx2|portable` narrows that choice for the direct
//! convolution kernels (to test or time each variant).

pub mod activation;
pub mod amx;
pub mod axpy;
pub mod batchnorm;
pub mod clamp;
pub mod concat;
pub mod conv2d;
pub mod conv_transpose2d;
pub mod cqt;
pub mod elementwise;
mod fast_math;
pub mod linear;
pub mod loss;
pub mod lstm;
pub mod matmul;
pub mod matmul_bf16;
pub mod reduce;

/// Errors of shape rules that depend on values a user supplies (e.g. a requested output size).
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    #[error(
        "requested output size {requested} is outside the sizes [{min}, {max}] a transposed \
         convolution of input size {input} (kernel {kernel}, stride {stride}, padding {padding}) can produce"
    )]
    OutputSizeOutOfRange {
        requested: usize,
        input: usize,
        kernel: usize,
        stride: usize,
        padding: usize,
        min: usize,
        max: usize,
    },
}

/// Consecutive groups [`ordered_sum`] cuts its tasks into: a constant, so the order of the
/// float additions depends on the task count alone, never on the thread count.
const REDUCTION_GROUPS: usize = 16;

/// The sum over `tasks` of what `work(acc, task)` adds into a zeroed accumulator of `len`
/// values, in parallel but in an order fixed by `tasks` alone: the tasks are cut into at most
/// [`REDUCTION_GROUPS`] consecutive groups, each accumulated in task order on one thread, and
/// the groups' sums are added in group order. (rayon's `fold` + `reduce` groups tasks by work
/// stealing, so its float sums change from run to run, and a resumed training run would not
/// compute what the uninterrupted one did.) `None` for no tasks.
pub(crate) fn ordered_sum<F>(tasks: usize, len: usize, work: F) -> Option<Vec<f32>>
where
    F: Fn(&mut Vec<f32>, usize) + Sync,
{
    use rayon::prelude::*;
    if tasks == 0 {
        return None;
    }
    let groups = REDUCTION_GROUPS.min(tasks);
    let per_group = tasks.div_ceil(groups);
    let partials: Vec<Vec<f32>> = (0..groups)
        .into_par_iter()
        .map(|group| {
            let mut acc = vec![0.0f32; len];
            for task in group * per_group..((group + 1) * per_group).min(tasks) {
                work(&mut acc, task);
            }
            acc
        })
        .collect();
    let mut partials = partials.into_iter();
    let mut total = partials.next().expect("at least one group");
    for partial in partials {
        total.iter_mut().zip(&partial).for_each(|(a, b)| *a += b);
    }
    Some(total)
}

/// A raw pointer to an output tensor that parallel tasks write at disjoint places (each place
/// that makes one says which): the tasks' closures capture it whole, so it must be `Sync`.
#[derive(Clone, Copy)]
pub(crate) struct SharedOut(pub(crate) *mut f32);
// SAFETY: made only for tasks that write disjoint parts of the tensor, as stated where made.
unsafe impl Send for SharedOut {}
unsafe impl Sync for SharedOut {}

impl SharedOut {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper, not `.0`).
    pub(crate) fn ptr(self) -> *mut f32 {
        self.0
    }
}

/// Panics with a readable message when a slice does not hold `expected` values.
#[track_caller]
pub(crate) fn check_len(name: &str, slice_len: usize, expected: usize) {
    assert_eq!(
        slice_len, expected,
        "{name}: slice holds {slice_len} values, its shape needs {expected}"
    );
}

/// Sums of long f32 runs, fast and accurate enough for statistics: 16 f32 lanes (vectorised)
/// over blocks of 1024 values, each block's total added in f64. The f32 error stays at the
/// level of one block (~1e-6 relative), not of the whole run.
pub(crate) mod sums {
    const LANES: usize = 16;
    /// Values per f32 block, whose totals are added in f64.
    pub const BLOCK: usize = 1024;

    #[inline(always)]
    fn blocked(len: usize, mut block_sum: impl FnMut(std::ops::Range<usize>) -> f32) -> f64 {
        let mut total = 0.0f64;
        let mut start = 0;
        while start < len {
            let end = (start + BLOCK).min(len);
            total += block_sum(start..end) as f64;
            start = end;
        }
        total
    }

    #[inline(always)]
    fn lanes_sum(values: &[f32], f: impl Fn(f32) -> f32) -> f32 {
        let mut lanes = [0.0f32; LANES];
        let chunks = values.chunks_exact(LANES);
        let tail = chunks.remainder();
        for chunk in chunks {
            for (lane, &v) in lanes.iter_mut().zip(chunk) {
                *lane += f(v);
            }
        }
        lanes.iter().sum::<f32>() + tail.iter().map(|&v| f(v)).sum::<f32>()
    }

    /// Σ values.
    pub fn sum(values: &[f32]) -> f64 {
        blocked(values.len(), |r| lanes_sum(&values[r], |v| v))
    }

    /// Σ (values − center)².
    pub fn sum_sq_dev(values: &[f32], center: f32) -> f64 {
        blocked(values.len(), |r| {
            lanes_sum(&values[r], |v| (v - center) * (v - center))
        })
    }

    /// Σ weights·(values − center).
    pub fn sum_weighted_dev(weights: &[f32], values: &[f32], center: f32) -> f64 {
        assert_eq!(weights.len(), values.len());
        blocked(values.len(), |r| {
            let (w, v) = (&weights[r.clone()], &values[r]);
            let mut lanes = [0.0f32; LANES];
            let (wc, vc) = (w.chunks_exact(LANES), v.chunks_exact(LANES));
            let tail: f32 = wc
                .remainder()
                .iter()
                .zip(vc.remainder())
                .map(|(&w, &v)| w * (v - center))
                .sum();
            for (w, v) in wc.zip(vc) {
                for ((lane, &w), &v) in lanes.iter_mut().zip(w).zip(v) {
                    *lane += w * (v - center);
                }
            }
            lanes.iter().sum::<f32>() + tail
        })
    }
}

/// Threads per block of the one-thread-per-element kernels.
pub(crate) const ELEMENTWISE_THREADS: u32 = 256;

/// For the launchers of elementwise kernels: every buffer of `lens` (name, length) holds `len`
/// elements, and `len` fits the kernels' `int n`.
pub(crate) fn elementwise_len(
    op: &'static str,
    len: usize,
    lens: &[(&str, usize)],
) -> Result<i32, crate::device::DeviceError> {
    let invalid = |message| crate::device::DeviceError::InvalidInput { op, message };
    for &(name, l) in lens {
        if l != len {
            return Err(invalid(format!("{name} has {l} elements, expected {len}")));
        }
    }
    i32::try_from(len).map_err(|_| invalid(format!("{len} elements exceed i32")))
}

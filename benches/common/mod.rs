//! Shared by the per-op benches: deterministic inputs and criterion settings that keep each
//! bench to a few seconds.
#![allow(dead_code)]

use std::time::Duration;

/// Batch of the network's training-step benchmark (4 × 640 frames × 176 bins).
pub const BATCH: usize = 4;

pub fn values(len: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect()
}

pub fn configure<M: criterion::measurement::Measurement>(
    group: &mut criterion::BenchmarkGroup<'_, M>,
) {
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(1));
}

/// A kernel device to bench on: emu always (at small shapes: it costs ~100 ns per CUDA thread
/// switch), cuda when present (at the network's shapes).
pub struct KernelBench {
    pub name: &'static str,
    pub device: mtosi::device::KernelDevice,
    /// Whether to run the network's full shapes (cuda) or the small emu ones.
    pub full_size: bool,
}

pub fn kernel_devices(bench: &str) -> Vec<KernelBench> {
    let mut devices = vec![KernelBench {
        name: "emu",
        device: mtosi::device::KernelDevice::emu(mtosi::device::EmuOptions::default()),
        full_size: false,
    }];
    match mtosi::device::KernelDevice::cuda(0) {
        Ok(device) => devices.push(KernelBench {
            name: "cuda",
            device,
            full_size: true,
        }),
        Err(why) => eprintln!("{bench} bench: cuda skipped: {why}"),
    }
    devices
}

/// An H200's peaks (an H100 SXM: the same 67 TFLOP/s, 3.35 TB/s): fp32 on the CUDA cores
/// (no tensor cores) and HBM bandwidth.
pub const PEAK_FP32_FLOPS: f64 = 67e12;
pub const PEAK_HBM_BYTES_PER_S: f64 = 4.8e12;

/// Prints, for a cuda run, the roofline bound of `flops` and `bytes` of work beside which
/// criterion's measured time (and its throughput line) reads: the time at peak compute, at
/// peak bandwidth, and the larger of the two.
pub fn print_roofline(bench: &KernelBench, what: &str, flops: f64, bytes: f64) {
    if bench.name != "cuda" {
        return;
    }
    let compute_s = flops / PEAK_FP32_FLOPS;
    let memory_s = bytes / PEAK_HBM_BYTES_PER_S;
    eprintln!(
        "{what}: {:.3} GFLOP, {:.3} GB: roofline {:.1} us ({}-bound at 67 TFLOP/s fp32, 4.8 TB/s)",
        flops / 1e9,
        bytes / 1e9,
        compute_s.max(memory_s) * 1e6,
        if compute_s > memory_s {
            "compute"
        } else {
            "memory"
        }
    );
}

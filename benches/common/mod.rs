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

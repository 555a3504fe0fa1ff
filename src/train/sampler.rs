//! Which crops an epoch trains on (PROTOCOL.md, "Training"): one random crop of every training
//! recording per epoch, in a shuffled order, cut into batches with the last partial batch
//! dropped. A crop starts at frame `randint(L − crop) / 512` (numpy's `randint(n)` draws from
//! `[0, n)`), and its audio at that frame's first sample; a recording shorter than the crop is
//! tiled first (see [`tiled_length`]).
//!
//! An epoch's plan is a pure function of the seed, the epoch number and the recordings'
//! lengths: its generator is seeded from `(seed, epoch)` alone, so the plan is the same
//! whatever the thread timing, and a resumed run replays any epoch without having saved a
//! generator state.

use crate::rng::Rng;

/// One crop: a recording (its index in the training list) and the frame the crop starts at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crop {
    pub recording: usize,
    pub start_frame: usize,
}

/// The length a recording of `length` samples has once tiled to hold a crop of `crop_samples`:
/// itself when long enough, else the smallest whole number of copies that reaches the crop.
pub fn tiled_length(length: usize, crop_samples: usize) -> usize {
    if length >= crop_samples || length == 0 {
        length
    } else {
        length * crop_samples.div_ceil(length)
    }
}

/// The generator of one epoch, seeded from the run's seed and the epoch number only.
pub fn epoch_rng(seed: u64, epoch: u64) -> Rng {
    // Two SplitMix64 outputs keep nearby (seed, epoch) pairs far apart.
    let mut mix = Rng::new(seed ^ 0x6d74_6f73_695f_7472);
    let a = mix.next_u64();
    let mut mix = Rng::new(a ^ epoch.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    Rng::new(mix.next_u64())
}

/// The start frame of a crop of `crop_samples` from a (tiled) recording of `length` samples:
/// `randint(length − crop) / hop`, and 0 when the recording is exactly the crop's length.
pub fn draw_start_frame(rng: &mut Rng, length: usize, crop_samples: usize, hop: usize) -> usize {
    assert!(length >= crop_samples, "tile the recording first");
    let room = length - crop_samples;
    if room == 0 {
        0
    } else {
        rng.range_usize(0, room - 1) / hop
    }
}

/// The crops of one epoch, in training order: the recordings shuffled (Fisher-Yates), then a
/// start frame drawn for each in that order, as a single-worker PyTorch loader would.
pub fn epoch_crops(
    lengths: &[usize],
    crop_samples: usize,
    hop: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Crop> {
    let mut rng = epoch_rng(seed, epoch);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    for i in (1..order.len()).rev() {
        let j = rng.range_usize(0, i);
        order.swap(i, j);
    }
    order
        .into_iter()
        .map(|recording| Crop {
            recording,
            start_frame: draw_start_frame(
                &mut rng,
                tiled_length(lengths[recording], crop_samples),
                crop_samples,
                hop,
            ),
        })
        .collect()
}

/// The batches of one epoch: [`epoch_crops`] cut into groups of `batch`, the last partial
/// group dropped (PyTorch's `drop_last=True`).
pub fn epoch_batches(
    lengths: &[usize],
    crop_samples: usize,
    hop: usize,
    batch: usize,
    seed: u64,
    epoch: u64,
) -> Vec<Vec<Crop>> {
    assert!(batch > 0, "batch size must be positive");
    epoch_crops(lengths, crop_samples, hop, seed, epoch)
        .chunks_exact(batch)
        .map(<[Crop]>::to_vec)
        .collect()
}

/// Batches per epoch for `recordings` training recordings.
pub fn batches_per_epoch(recordings: usize, batch: usize) -> usize {
    recordings / batch
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOP: usize = 512;

    #[test]
    fn short_recordings_are_tiled_to_whole_copies() {
        assert_eq!(tiled_length(1000, 4096), 5000);
        assert_eq!(tiled_length(4096, 4096), 4096);
        assert_eq!(tiled_length(5000, 4096), 5000);
        assert_eq!(tiled_length(2048, 4096), 4096);
    }

    #[test]
    fn every_recording_once_per_epoch_and_crops_inside_it() {
        let lengths = [40_000, 16_384, 100_000, 5_000, 16_385, 70_001, 33_333];
        let crop = 16_384;
        for epoch in 0..50 {
            let crops = epoch_crops(&lengths, crop, HOP, 33, epoch);
            let mut seen: Vec<usize> = crops.iter().map(|c| c.recording).collect();
            seen.sort();
            assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
            for c in &crops {
                let len = tiled_length(lengths[c.recording], crop);
                assert!(
                    c.start_frame * HOP + crop <= len,
                    "epoch {epoch}: {c:?} overruns {len}"
                );
                // numpy's randint(n) never returns n: the last sample stays unused.
                if len > crop {
                    assert!(c.start_frame * HOP + crop < len);
                } else {
                    assert_eq!(c.start_frame, 0);
                }
            }
        }
    }

    #[test]
    fn starts_cover_the_whole_range_of_a_long_recording() {
        let lengths = [HOP * 101];
        let crop = HOP * 10;
        let mut starts = std::collections::BTreeSet::new();
        for epoch in 0..2000 {
            starts.insert(epoch_crops(&lengths, crop, HOP, 1, epoch)[0].start_frame);
        }
        // randint(91·512) / 512 reaches frames 0..=90, each from 512 of the draws.
        assert_eq!(starts.len(), 91, "{starts:?}");
        assert_eq!(starts.last(), Some(&90));
    }

    #[test]
    fn the_last_partial_batch_is_dropped() {
        let lengths = vec![50_000; 7];
        let batches = epoch_batches(&lengths, 16_384, HOP, 3, 5, 0);
        assert_eq!(batches.len(), 2);
        assert!(batches.iter().all(|b| b.len() == 3));
        assert_eq!(batches_per_epoch(7, 3), 2);
        assert!(epoch_batches(&lengths, 16_384, HOP, 8, 5, 0).is_empty());
    }

    #[test]
    fn the_plan_depends_on_seed_and_epoch_only() {
        let lengths = [40_000, 90_000, 100_000, 5_000, 70_001];
        let a = epoch_crops(&lengths, 16_384, HOP, 33, 7);
        assert_eq!(a, epoch_crops(&lengths, 16_384, HOP, 33, 7));
        assert_ne!(a, epoch_crops(&lengths, 16_384, HOP, 33, 8));
        assert_ne!(a, epoch_crops(&lengths, 16_384, HOP, 34, 7));
    }
}

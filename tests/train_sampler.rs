//! The training batches are a function of the seed alone: the same bits whatever the thread
//! count and whether they come from the loader thread or are made in place.

use std::sync::Arc;

use mtosi::audio::wav::write_wav16;
use mtosi::data::{Item, Split};
use mtosi::notes::{write_notes, Note};
use mtosi::spectrogram::{Cqt, CqtParams};
use mtosi::synth::augment::Augmentation;
use mtosi::train::examples::{
    batch_seeds, make_batch, AugmentPreset, Batch, Prefetcher, Recording,
};
use mtosi::train::sampler::{epoch_batches, tiled_length};

fn recordings(dir: &std::path::Path) -> Vec<Recording> {
    let lengths = [9_000usize, 20_000, 33_000, 50_000, 16_384];
    lengths
        .iter()
        .enumerate()
        .map(|(i, &n)| {
            let audio: Vec<f32> = (0..n)
                .map(|t| 0.3 * ((t as f32) * 0.01 * (i + 1) as f32).sin())
                .collect();
            let audio_path = dir.join(format!("a{i}.wav"));
            let label_path = dir.join(format!("a{i}.tsv"));
            write_wav16(&audio_path, &audio, 16_000).unwrap();
            let notes = [Note {
                onset_s: 0.1,
                offset_s: n as f64 / 16_000.0 * 0.8,
                pitch: 50 + i as u8,
                velocity: 70,
            }];
            write_notes(&label_path, &notes).unwrap();
            let item = Item {
                name: format!("a{i}"),
                split: Split::Train,
                audio_path,
                label_path,
            };
            Recording::load(&item, |_| i % 2 == 0).unwrap()
        })
        .collect()
}

fn bits(batch: &Batch) -> (Vec<u32>, Vec<u32>) {
    (
        batch.spec.data().iter().map(|v| v.to_bits()).collect(),
        batch
            .frame_roll
            .data()
            .iter()
            .map(|v| v.to_bits())
            .collect(),
    )
}

#[test]
fn batches_are_the_same_bits_under_any_thread_count_and_loader() {
    let dir = tempfile::tempdir().unwrap();
    let recs = recordings(dir.path());
    let crop_frames = 32;
    let crop_samples = crop_frames * 512;
    let lengths: Vec<usize> = recs
        .iter()
        .map(|r| tiled_length(r.samples, crop_samples))
        .collect();
    let plan = epoch_batches(&lengths, crop_samples, 512, 2, 33, 4);
    assert_eq!(
        plan.len(),
        2,
        "5 recordings in batches of 2: the fifth is dropped"
    );
    let cqt = Arc::new(Cqt::new(CqtParams::default()).unwrap());
    // Augmented batches too must not depend on threads or on the loader.
    let augment = AugmentPreset::Recorded.augmentation();
    let seeds = batch_seeds(33, 4, 0, plan.len());
    let in_pool = |threads: usize| {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        pool.install(|| {
            plan.iter()
                .enumerate()
                .map(|(i, crops)| {
                    bits(&make_batch(&recs, &cqt, crops, crop_frames, &augment, seeds[i]).unwrap())
                })
                .collect::<Vec<_>>()
        })
    };
    let one = in_pool(1);
    assert_eq!(one, in_pool(3));
    let mut loader = Prefetcher::start(
        Arc::new(recs.clone()),
        Arc::clone(&cqt),
        plan.clone(),
        crop_frames,
        augment,
        seeds.clone(),
        1,
    );
    let loaded: Vec<_> = (0..plan.len())
        .map(|_| bits(&loader.next_batch().unwrap().0))
        .collect();
    assert_eq!(one, loaded);
    // Shapes: (2, 32, 176) inputs in [0, 1], (2, 32, 88) rolls of 0/1.
    let batch = make_batch(&recs, &cqt, &plan[0], crop_frames, &Augmentation::none(), 0).unwrap();
    // Augmentation changes the input, never the labels; another seed draws another input.
    let augmented = make_batch(&recs, &cqt, &plan[0], crop_frames, &augment, seeds[0]).unwrap();
    let reseeded = make_batch(&recs, &cqt, &plan[0], crop_frames, &augment, seeds[1]).unwrap();
    assert_eq!(batch.frame_roll.data(), augmented.frame_roll.data());
    assert_ne!(batch.spec.data(), augmented.spec.data());
    assert_ne!(augmented.spec.data(), reseeded.spec.data());
    assert!(augmented
        .spec
        .data()
        .iter()
        .all(|v| (0.0..=1.0).contains(v)));
    assert_eq!(batch.spec.shape(), [2, 32, 176]);
    assert_eq!(batch.frame_roll.shape(), [2, 32, 88]);
    assert!(batch.spec.data().iter().all(|v| (0.0..=1.0).contains(v)));
    assert!(batch
        .frame_roll
        .data()
        .iter()
        .all(|&v| v == 0.0 || v == 1.0));
    assert!(batch.frame_roll.data().contains(&1.0));
}

//! A training step computes the same bits every time, whatever the thread count and whatever
//! else the thread pool is busy with: what exact resume rests on. (The convolutions' weight
//! gradients used to be summed in rayon's work-stealing order, which changed the last bits
//! from run to run at batch sizes above 2.)

use mtosi::model::bench::random_batch;
use mtosi::model::training::{train_step, Optimizer, TrainingConfig};
use mtosi::model::Transcriber;

/// Every parameter's bits after two steps on a batch of 5 × 48 frames.
fn two_steps() -> Vec<u32> {
    let config = TrainingConfig::default();
    let mut model = Transcriber::new(33);
    let mut optimizer = Optimizer::new(&mut model, config.adam);
    let (spec, roll) = random_batch(7, 5, 48);
    for _ in 0..2 {
        train_step(&mut model, &mut optimizer, &spec, &roll, &config).unwrap();
    }
    model
        .params_mut()
        .iter()
        .flat_map(|p| p.value.iter().map(|v| v.to_bits()))
        .collect()
}

fn in_pool(threads: usize, busy: bool) -> Vec<u32> {
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .unwrap();
    pool.install(|| {
        if busy {
            // Another job in the same pool (as the batch loader's CQT is) shifts work stealing.
            let (a, b) = rayon::join(two_steps, || {
                (0..2_000_000u64).fold(0u64, |acc, x| acc.wrapping_add(x * x))
            });
            std::hint::black_box(b);
            a
        } else {
            two_steps()
        }
    })
}

#[test]
fn a_training_step_is_bit_reproducible_across_thread_counts_and_load() {
    let reference = in_pool(1, false);
    for (threads, busy) in [(2, false), (3, true), (4, false)] {
        let bits = in_pool(threads, busy);
        let differing = reference.iter().zip(&bits).filter(|(a, b)| a != b).count();
        assert_eq!(
            differing,
            0,
            "{threads} threads{}: {differing} of {} parameter values differ from 1 thread's",
            if busy { ", busy pool" } else { "" },
            reference.len()
        );
    }
}

//! The network takes any frame count from 16 up, odd ones included, in both modes, and refuses
//! shorter or misshapen inputs with an error instead of a panic.

use mtosi::device::equivalence::test_seed;
use mtosi::model::init::uniform_unit;
use mtosi::model::{Mode, ModelError, Tensor, Transcriber, N_BINS, N_KEYS};

fn spec(seed: u64, batch: usize, frames: usize) -> Tensor {
    let values: Vec<f32> = uniform_unit(seed, "shapes", batch * frames * N_BINS)
        .map(|u| u as f32)
        .collect();
    Tensor::new(vec![batch, frames, N_BINS], values)
}

#[test]
fn every_frame_count_from_16_round_trips_through_the_u_net() {
    let seed = test_seed("every_frame_count_from_16_round_trips_through_the_u_net");
    let mut model = Transcriber::new(seed);
    for frames in [16, 17, 18, 19, 23, 31, 33, 47] {
        for mode in [Mode::Train, Mode::Eval] {
            model.set_mode(mode);
            let roll = model.forward(&spec(seed, 2, frames)).unwrap();
            assert_eq!(
                roll.shape(),
                [2, frames, N_KEYS],
                "{frames} frames, {mode:?}"
            );
            assert!(
                roll.data().iter().all(|p| (0.0..=1.0).contains(p)),
                "{frames} frames"
            );
        }
    }
}

#[test]
fn short_or_misshapen_inputs_are_errors() {
    let mut model = Transcriber::new(1);
    model.set_mode(Mode::Eval);
    for shape in [
        vec![1, 15, N_BINS],
        vec![1, 20, N_BINS - 1],
        vec![20, N_BINS],
        vec![0, 20, N_BINS],
    ] {
        let n = shape.iter().product();
        let err = model
            .forward(&Tensor::new(shape.clone(), vec![0.5; n]))
            .unwrap_err();
        assert!(
            matches!(err, ModelError::InputShape { .. }),
            "{shape:?}: {err}"
        );
    }
}

//! From CQT magnitudes to what the network reads: `log(x + 1e-5)`, then min-max normalisation
//! over each whole image, laid out as frames × bins. Each step is its own function so that a
//! cache can store magnitudes and a caller can apply only what it needs.

use super::{Cqt, SpectrogramError};

/// Added before the log so that silent bins stay finite (the paper's constant).
pub const LOG_OFFSET: f32 = 1e-5;

/// `x ← ln(x + 1e-5)` in place.
pub fn log_compress(values: &mut [f32]) {
    for v in values {
        *v = (*v + LOG_OFFSET).ln();
    }
}

/// "Imagewise" min-max normalisation in place: `(x − min) / (max − min)` over the whole image,
/// NaN replaced by 0. As in PyTorch, a NaN anywhere makes `min`/`max` NaN and so the whole
/// image 0; a constant image (`max == min`) divides 0 by 0 and is 0 too.
pub fn normalize_imagewise(values: &mut [f32]) {
    let nan_min = |a: f32, b: f32| {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else {
            a.min(b)
        }
    };
    let nan_max = |a: f32, b: f32| {
        if a.is_nan() || b.is_nan() {
            f32::NAN
        } else {
            a.max(b)
        }
    };
    let min = values.iter().copied().fold(f32::INFINITY, nan_min);
    let max = values.iter().copied().fold(f32::NEG_INFINITY, nan_max);
    let range = max - min;
    for v in values {
        let x = (*v - min) / range;
        *v = if x.is_nan() { 0.0 } else { x };
    }
}

/// The network's input for one clip: the CQT of `audio` without its last sample (so a
/// 327 680-sample crop gives exactly 640 frames), log-compressed and normalised, as
/// `n_frames × n_bins` row-major values. Returns `(n_frames, values)`.
pub fn model_input(cqt: &Cqt, audio: &[f32]) -> Result<(usize, Vec<f32>), SpectrogramError> {
    Ok(model_inputs(cqt, &[audio])?
        .pop()
        .expect("one clip in, one out"))
}

/// [`model_input`] of several clips (a training batch), their CQTs computed in parallel.
pub fn model_inputs(
    cqt: &Cqt,
    clips: &[&[f32]],
) -> Result<Vec<(usize, Vec<f32>)>, SpectrogramError> {
    let trimmed: Vec<&[f32]> = clips
        .iter()
        .map(|a| &a[..a.len().saturating_sub(1)])
        .collect();
    let spectrograms = cqt.magnitudes(&trimmed)?;
    Ok(spectrograms
        .into_iter()
        .map(|spec| {
            let mut values = spec.frames_by_bins();
            log_compress(&mut values);
            normalize_imagewise(&mut values);
            (spec.n_frames, values)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectrogram::CqtParams;

    #[test]
    fn log_of_zero_is_log_of_the_offset() {
        let mut v = [0.0, 1.0];
        log_compress(&mut v);
        assert_eq!(v, [LOG_OFFSET.ln(), (1.0f32 + LOG_OFFSET).ln()]);
    }

    #[test]
    fn normalisation_maps_min_to_0_and_max_to_1() {
        let mut v = [2.0, 4.0, 3.0];
        normalize_imagewise(&mut v);
        assert_eq!(v, [0.0, 1.0, 0.5]);
    }

    #[test]
    fn constant_or_nan_images_become_zeros() {
        let mut constant = [3.0; 4];
        normalize_imagewise(&mut constant);
        assert_eq!(constant, [0.0; 4]);
        let mut with_nan = [1.0, f32::NAN, 2.0];
        normalize_imagewise(&mut with_nan);
        assert_eq!(with_nan, [0.0; 3]);
    }

    #[test]
    fn a_batch_gives_each_clips_own_input() {
        let cqt = Cqt::new(CqtParams {
            sample_rate_hz: 8000,
            hop_length: 64,
            fmin_hz: 200.0,
            n_bins: 24,
            bins_per_octave: 12,
            filter_scale: 1.0,
        })
        .unwrap();
        let a: Vec<f32> = (0..3001).map(|i| (i as f32 * 0.1).sin()).collect();
        let b: Vec<f32> = (0..2000).map(|i| (i as f32 * 0.37).cos() * 0.1).collect();
        let batch = model_inputs(&cqt, &[&a, &b]).unwrap();
        assert_eq!(batch[0], model_input(&cqt, &a).unwrap());
        assert_eq!(batch[1], model_input(&cqt, &b).unwrap());
    }

    #[test]
    fn a_training_crop_gives_640_frames_of_176_bins_in_unit_range() {
        let cqt = Cqt::new(CqtParams::default()).unwrap();
        let audio: Vec<f32> = (0..327_680)
            .map(|i| (i as f32 * 0.0371).sin() * 0.3)
            .collect();
        let (n_frames, values) = model_input(&cqt, &audio).unwrap();
        assert_eq!(n_frames, 640);
        assert_eq!(values.len(), 640 * 176);
        let min = values.iter().cloned().fold(f32::INFINITY, f32::min);
        let max = values.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
        assert_eq!((min, max), (0.0, 1.0));
    }
}

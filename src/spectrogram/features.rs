//! From CQT magnitudes to what the network reads: `log(x + 1e-5)`, then min-max normalisation
//! over each whole image, laid out as frames × bins. Each step is its own function so that a
//! cache can store magnitudes and a caller can apply only what it needs.

use rayon::prelude::*;

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
/// image 0; a constant image (`max == min`) divides 0 by 0 and is 0 too. Runs over pieces of
/// [`NORMALIZE_CHUNK`] values in parallel (min and max do not depend on the order, so the
/// result is the same): a whole recording's image is millions of values.
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
    let (min, max) = values
        .par_chunks(NORMALIZE_CHUNK)
        .map(|chunk| {
            chunk
                .iter()
                .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| {
                    (nan_min(lo, v), nan_max(hi, v))
                })
        })
        .reduce(
            || (f32::INFINITY, f32::NEG_INFINITY),
            |(lo, hi), (chunk_lo, chunk_hi)| (nan_min(lo, chunk_lo), nan_max(hi, chunk_hi)),
        );
    let range = max - min;
    values.par_chunks_mut(NORMALIZE_CHUNK).for_each(|chunk| {
        for v in chunk {
            let x = (*v - min) / range;
            *v = if x.is_nan() { 0.0 } else { x };
        }
    });
}

/// Values per parallel task of [`normalize_imagewise`]: a training crop (640 × 176) is two.
const NORMALIZE_CHUNK: usize = 1 << 16;

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

// ---------------------------------------------------------------------------------------------
// On a kernel device (kernels/features.cu, with kernels/cqt.cu between padding and log): a
// batch of raw crops becomes the network's input without leaving the device.

use crate::device::{DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};

/// kernels/features.cu's FEATURES_THREADS.
const FEATURES_THREADS: u32 = 256;

fn features_invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput {
        op: "features",
        message,
    }
}

fn features_i32(v: usize) -> Result<i32, DeviceError> {
    i32::try_from(v).map_err(|_| features_invalid(format!("{v} exceeds i32")))
}

/// [`reflect_pad`](super::cqt::reflect_pad) of every clip on a kernel device: `clips` holds
/// `batch` clips `clip_stride` apart of which the first `clip_len` samples are used (the model
/// drops each crop's last one); `padded` receives `batch` rows of `padded_stride` samples, the
/// padded clip then zeros.
#[allow(clippy::too_many_arguments)]
pub fn reflect_pad_launch(
    device: &KernelDevice,
    padded: &mut DeviceBuffer<f32>,
    clips: &DeviceBuffer<f32>,
    batch: usize,
    clip_stride: usize,
    clip_len: usize,
    pad: usize,
    padded_stride: usize,
) -> Result<(), DeviceError> {
    if clip_len == 0 || clip_len > clip_stride || clips.len() != batch * clip_stride {
        return Err(features_invalid(format!(
            "{} samples for {batch} clips of {clip_len} used samples, {clip_stride} apart",
            clips.len()
        )));
    }
    if padded_stride < clip_len + 2 * pad || padded.len() != batch * padded_stride {
        return Err(features_invalid(format!(
            "padded has {} samples for {batch} rows of {padded_stride} (at least {})",
            padded.len(),
            clip_len + 2 * pad
        )));
    }
    device.launch(
        "features_reflect_pad",
        LaunchConfig::for_elements(padded.len(), FEATURES_THREADS),
        &[
            features_i32(batch)?.into(),
            features_i32(clip_stride)?.into(),
            features_i32(clip_len)?.into(),
            features_i32(pad)?.into(),
            features_i32(padded_stride)?.into(),
            clips.into(),
            padded.into(),
        ],
    )
}

/// [`log_compress`] then [`normalize_imagewise`] of `batch` CQT images on a kernel device:
/// `magnitudes` (batch, n_bins, n_frames) as kernels/cqt.cu writes them, `out` (batch,
/// n_frames, n_bins) the network's input; `min_max` (2·batch) is scratch.
pub fn model_inputs_launch(
    device: &KernelDevice,
    out: &mut DeviceBuffer<f32>,
    min_max: &mut DeviceBuffer<f32>,
    magnitudes: &DeviceBuffer<f32>,
    batch: usize,
    n_bins: usize,
    n_frames: usize,
) -> Result<(), DeviceError> {
    let total = batch * n_bins * n_frames;
    if magnitudes.len() != total || out.len() != total || min_max.len() != 2 * batch {
        return Err(features_invalid(format!(
            "magnitudes {}, out {}, min_max {} elements for {batch} × {n_bins} × {n_frames}",
            magnitudes.len(),
            out.len(),
            min_max.len()
        )));
    }
    if total == 0 {
        return Ok(());
    }
    let (batch_i, per_image) = (features_i32(batch)?, features_i32(n_bins * n_frames)?);
    device.launch(
        "features_log_transpose",
        LaunchConfig::for_elements(total, FEATURES_THREADS),
        &[
            batch_i.into(),
            features_i32(n_bins)?.into(),
            features_i32(n_frames)?.into(),
            magnitudes.into(),
            (&mut *out).into(),
        ],
    )?;
    device.launch(
        "features_image_min_max",
        LaunchConfig::blocks(batch as u32, FEATURES_THREADS),
        &[per_image.into(), (&*out).into(), (&mut *min_max).into()],
    )?;
    device.launch(
        "features_normalize",
        LaunchConfig::for_elements(total, FEATURES_THREADS),
        &[
            features_i32(total)?.into(),
            per_image.into(),
            (&*min_max).into(),
            out.into(),
        ],
    )
}

/// The whole input path of a training batch on a kernel device, its buffers allocated once
/// for a (batch, crop length) and reused: `batch` raw crops of `crop_len` samples in, the
/// network's (batch, n_frames, n_bins) input out, as [`model_inputs`] computes it (each crop's
/// last sample dropped, reflect padding, CQT, log, imagewise normalisation).
pub struct DeviceInputPath {
    kernels: crate::ops::cqt::CqtDeviceKernels,
    batch: usize,
    crop_len: usize,
    pad: usize,
    hop_length: usize,
    n_bins: usize,
    n_frames: usize,
    padded: DeviceBuffer<f32>,
    magnitudes: DeviceBuffer<f32>,
    min_max: DeviceBuffer<f32>,
}

impl DeviceInputPath {
    pub fn new(
        device: &KernelDevice,
        cqt: &Cqt,
        batch: usize,
        crop_len: usize,
    ) -> Result<DeviceInputPath, DeviceError> {
        if batch == 0 || crop_len < 2 {
            return Err(features_invalid(format!(
                "{batch} crops of {crop_len} samples: need at least one crop of two samples"
            )));
        }
        let clip_len = crop_len - 1;
        let pad = cqt.padding();
        let n_frames = cqt.n_frames(clip_len);
        let n_bins = cqt.params().n_bins;
        Ok(DeviceInputPath {
            kernels: crate::ops::cqt::CqtDeviceKernels::upload(device, cqt)?,
            batch,
            crop_len,
            pad,
            hop_length: cqt.params().hop_length,
            n_bins,
            n_frames,
            padded: device.alloc(batch * (clip_len + 2 * pad))?,
            magnitudes: device.alloc(batch * n_bins * n_frames)?,
            min_max: device.alloc(2 * batch)?,
        })
    }

    pub fn n_frames(&self) -> usize {
        self.n_frames
    }

    /// `crops` (batch × crop_len samples) → `out` (batch, n_frames, n_bins).
    pub fn run(
        &mut self,
        device: &KernelDevice,
        crops: &DeviceBuffer<f32>,
        out: &mut DeviceBuffer<f32>,
    ) -> Result<(), DeviceError> {
        let clip_len = self.crop_len - 1;
        reflect_pad_launch(
            device,
            &mut self.padded,
            crops,
            self.batch,
            self.crop_len,
            clip_len,
            self.pad,
            clip_len + 2 * self.pad,
        )?;
        crate::ops::cqt::cqt_launch(
            device,
            &self.kernels,
            &self.padded,
            self.batch,
            self.n_frames,
            self.hop_length,
            &mut self.magnitudes,
        )?;
        model_inputs_launch(
            device,
            out,
            &mut self.min_max,
            &self.magnitudes,
            self.batch,
            self.n_bins,
            self.n_frames,
        )
    }
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
    fn normalising_in_parallel_pieces_equals_one_pass_over_the_image() {
        let seed = crate::device::equivalence::seed_from_env();
        println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
        let mut rng = crate::rng::Rng::new(seed);
        // Several pieces, the last partial; the extremes in a late piece.
        let len = 3 * NORMALIZE_CHUNK + 777;
        let mut image: Vec<f32> = (0..len).map(|_| rng.uniform_f32() * 10.0 - 5.0).collect();
        image[2 * NORMALIZE_CHUNK + 5] = -7.0;
        image[len - 1] = 9.0;
        let mut parallel = image.clone();
        normalize_imagewise(&mut parallel);
        let one_pass: Vec<f32> = image.iter().map(|&v| (v - -7.0) / (9.0 - -7.0)).collect();
        assert_eq!(parallel, one_pass);
        image[len - 2] = f32::NAN;
        normalize_imagewise(&mut image);
        assert!(image.iter().all(|&v| v == 0.0), "a NaN in the last piece");
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

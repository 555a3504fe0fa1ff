//! The input path on the kernel devices (kernels/features.cu around kernels/cqt.cu) against
//! the CPU: reflect padding, log + imagewise normalisation, and raw crops → network input.

use mtosi::device::equivalence::{Equivalence, Rng};
use mtosi::device::Device;
use mtosi::spectrogram::cqt::reflect_pad;
use mtosi::spectrogram::features::*;
use mtosi::spectrogram::{Cqt, CqtParams};

#[test]
fn reflect_pad_matches_cpu_reference_on_every_device() {
    // (batch, clip_len, pad): pads longer than the clip reflect repeatedly.
    let cases = [(1, 1, 3), (2, 7, 3), (3, 5, 12), (2, 100, 33), (1, 2, 9)];
    Equivalence::new("features_reflect_pad")
        // Copies: exact.
        .tolerance(0.0)
        .run(
            &cases,
            |&(batch, len, pad), rng| {
                ((batch, len, pad), rng.vec_f32(batch * (len + 1), -1.0, 1.0))
            },
            |device, &((batch, len, pad), ref crops)| {
                // Each crop is len + 1 samples, of which the last is dropped; three zeros of slack.
                let stride = len + 2 * pad + 3;
                match device {
                    Device::Cpu => Ok(crops
                        .chunks(len + 1)
                        .flat_map(|crop| {
                            let mut padded = reflect_pad(&crop[..len], pad);
                            padded.resize(len + 2 * pad, 0.0);
                            padded.resize(stride, 0.0);
                            padded
                        })
                        .collect()),
                    Device::Kernels(k) => {
                        let mut padded = k.alloc(batch * stride)?;
                        reflect_pad_launch(
                            k,
                            &mut padded,
                            &k.upload(crops)?,
                            batch,
                            len + 1,
                            len,
                            pad,
                            stride,
                        )?;
                        k.download(&padded)
                    }
                }
            },
        );
}

#[test]
fn log_and_imagewise_normalisation_match_cpu_reference_on_every_device() {
    // (batch, n_bins, n_frames); the second image of each batch holds a NaN (zeroed image),
    // the third is constant (0/0 = 0).
    let cases = [(1, 1, 1), (2, 5, 7), (3, 24, 33), (3, 176, 20)];
    Equivalence::new("features_log_normalize")
        // ln in libm vs CUDA (≤ 1 ulp of a value ≤ ~12), then one subtract and one IEEE divide.
        .floor_fraction(1.0)
        .tolerance(1e-6)
        .run(
            &cases,
            |&(batch, bins, frames), rng: &mut Rng| {
                let per = bins * frames;
                let mut m = rng.vec_f32(batch * per, 0.0, 3.0);
                for v in m.iter_mut().step_by(7) {
                    *v *= 1e-6;
                }
                if batch > 1 {
                    m[per + per / 2] = f32::NAN;
                }
                if batch > 2 {
                    m[2 * per..3 * per].fill(0.25);
                }
                ((batch, bins, frames), m)
            },
            |device, &((batch, bins, frames), ref m)| match device {
                Device::Cpu => Ok(m
                    .chunks(bins * frames)
                    .flat_map(|image| {
                        let mut values: Vec<f32> = (0..frames)
                            .flat_map(|t| (0..bins).map(move |b| image[b * frames + t]))
                            .collect();
                        log_compress(&mut values);
                        normalize_imagewise(&mut values);
                        values
                    })
                    .collect()),
                Device::Kernels(k) => {
                    let mut out = k.alloc(m.len())?;
                    let mut min_max = k.alloc(2 * batch)?;
                    model_inputs_launch(
                        k,
                        &mut out,
                        &mut min_max,
                        &k.upload(m)?,
                        batch,
                        bins,
                        frames,
                    )?;
                    k.download(&out)
                }
            },
        );
}

#[test]
fn raw_crops_become_the_network_input_on_every_device() {
    let cqt = Cqt::new(CqtParams {
        sample_rate_hz: 8000,
        hop_length: 32,
        fmin_hz: 500.0,
        n_bins: 24,
        bins_per_octave: 12,
        filter_scale: 1.0,
    })
    .unwrap();
    // (crops, samples per crop)
    let cases = [(1, 640), (3, 1001), (2, 2049)];
    Equivalence::new("input_path")
        // The CQT's f32 sums in another order (≲ 1e-6 of the peak), through ln and a division by
        // the image's log range: measured ≤ 2e-6 of the largest; 1e-4 leaves room.
        .floor_fraction(1.0)
        .tolerance(1e-4)
        .run(
            &cases,
            |&(batch, len), rng| ((batch, len), rng.vec_f32(batch * len, -1.0, 1.0)),
            |device, &((batch, len), ref crops)| match device {
                Device::Cpu => {
                    let clips: Vec<&[f32]> = crops.chunks(len).collect();
                    let inputs = model_inputs(&cqt, &clips).map_err(|e| {
                        mtosi::device::DeviceError::InvalidInput {
                            op: "model_inputs",
                            message: e.to_string(),
                        }
                    })?;
                    Ok(inputs.into_iter().flat_map(|(_, v)| v).collect())
                }
                Device::Kernels(k) => {
                    let mut path = DeviceInputPath::new(k, &cqt, batch, len)?;
                    let mut out = k.alloc(batch * path.n_frames() * 24)?;
                    path.run(k, &k.upload(crops)?, &mut out)?;
                    k.download(&out)
                }
            },
        );
}

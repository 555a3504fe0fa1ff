//! cqt: CQT magnitudes of a batch of equal-length clips (kernels/cqt.cu). The CPU reference is
//! [`crate::spectrogram::Cqt`]; here its kernel taps go to a device once and the CUDA kernel
//! runs on emu or a GPU. Output layout on every device: (batch, n_bins, n_frames), row-major.

use crate::device::{Device, DeviceBuffer, DeviceError, KernelDevice, LaunchConfig};
use crate::spectrogram::cqt::reflect_pad;
use crate::spectrogram::{Cqt, CqtMethod};

/// A multiple of 32 (the kernel folds partial sums with warp shuffles).
const THREADS_PER_BLOCK: u32 = 128;
/// `CQT_FRAMES_PER_BLOCK` in kernels/cqt.cu.
const FRAMES_PER_BLOCK: usize = 8;
/// The launch limit on dynamic shared memory; `cqt_block_sums` keeps `6 × hop` floats there.
const MAX_SHARED_BYTES: usize = 48 * 1024;
/// CUDA's limit on a grid's y and z dimensions (bins, clips).
const MAX_GRID_YZ: usize = 65_535;

fn invalid(message: String) -> DeviceError {
    DeviceError::InvalidInput { op: "cqt", message }
}

fn to_i32(value: usize, what: &str) -> Result<i32, DeviceError> {
    i32::try_from(value).map_err(|_| invalid(format!("{what} = {value} exceeds i32")))
}

/// `audio` as `clip_len`-sample clips.
fn split(audio: &[f32], clip_len: usize) -> Result<Vec<&[f32]>, DeviceError> {
    if clip_len == 0 || audio.is_empty() || !audio.len().is_multiple_of(clip_len) {
        return Err(invalid(format!(
            "{} samples do not split into clips of {clip_len}",
            audio.len()
        )));
    }
    Ok(audio.chunks_exact(clip_len).collect())
}

/// CPU reference: the magnitudes of `audio` (clips of `clip_len` samples back to back).
pub fn cqt_cpu(cqt: &Cqt, audio: &[f32], clip_len: usize) -> Result<Vec<f32>, DeviceError> {
    let clips = split(audio, clip_len)?;
    let spectrograms = cqt.magnitudes(&clips).map_err(|e| invalid(e.to_string()))?;
    Ok(spectrograms.into_iter().flat_map(|s| s.values).collect())
}

/// One parameter set's kernel data on a device, uploaded once and reused for every batch:
/// every bin's whole kernel (for `cqt_direct`) and the block decomposition of the CPU's
/// default plan (for `cqt_block_sums` + `cqt_blocked_frames`).
pub struct CqtDeviceKernels {
    method: CqtMethod,
    n_bins: usize,
    kernel_width: usize,
    direct: TapSet,
    blocked: TapSet,
    /// Per bin: index among the blocked bins, or -1.
    blocked_index: DeviceBuffer<i32>,
    /// Per bin: whole hop-blocks in its window (0 for direct bins).
    full_blocks: DeviceBuffer<i32>,
    /// Complex weights as (re, im) pairs, per blocked bin `[3][full_blocks]`.
    weights: DeviceBuffer<f32>,
    weight_offset: DeviceBuffer<i32>,
    /// Per blocked bin `[6][hop]`: cos and −sin of the three exponentials.
    tables: DeviceBuffer<f32>,
    /// Per blocked bin: its kernel's start and whole blocks.
    block_start: DeviceBuffer<i32>,
    block_full: DeviceBuffer<i32>,
    n_blocked: usize,
    max_full_blocks: usize,
}

/// Taps of every bin back to back, where each bin's taps begin in its frame, and its scale.
struct TapSet {
    re: DeviceBuffer<f32>,
    im: DeviceBuffer<f32>,
    offset: DeviceBuffer<i32>,
    count: DeviceBuffer<i32>,
    from: DeviceBuffer<i32>,
    librosa_scale: DeviceBuffer<f32>,
}

#[derive(Default)]
struct HostTaps {
    re: Vec<f32>,
    im: Vec<f32>,
    offset: Vec<i32>,
    count: Vec<i32>,
    from: Vec<i32>,
    librosa_scale: Vec<f32>,
}

impl HostTaps {
    fn push(
        &mut self,
        re: &[f32],
        im: &[f32],
        from: usize,
        length: usize,
    ) -> Result<(), DeviceError> {
        self.offset.push(to_i32(self.re.len(), "tap offset")?);
        self.count.push(to_i32(re.len(), "kernel length")?);
        self.from.push(to_i32(from, "kernel start")?);
        // As the CPU path and torch compute it: sqrt of the f32 length.
        self.librosa_scale.push((length as f32).sqrt());
        self.re.extend_from_slice(re);
        self.im.extend_from_slice(im);
        Ok(())
    }

    fn upload(&self, device: &KernelDevice) -> Result<TapSet, DeviceError> {
        Ok(TapSet {
            re: device.upload(&self.re)?,
            im: device.upload(&self.im)?,
            offset: device.upload(&self.offset)?,
            count: device.upload(&self.count)?,
            from: device.upload(&self.from)?,
            librosa_scale: device.upload(&self.librosa_scale)?,
        })
    }
}

/// A device buffer never empty (a launch argument needs one even when nothing reads it).
fn upload_nonempty<T: crate::device::Element + Default>(
    device: &KernelDevice,
    values: &[T],
) -> Result<DeviceBuffer<T>, DeviceError> {
    if values.is_empty() {
        device.upload(&[T::default()])
    } else {
        device.upload(values)
    }
}

impl CqtDeviceKernels {
    /// Uploads `cqt`'s kernels; launches then use `cqt`'s method (direct or blocked).
    pub fn upload(device: &KernelDevice, cqt: &Cqt) -> Result<Self, DeviceError> {
        let bins = &cqt.kernels().bins;
        if bins.len() > MAX_GRID_YZ {
            return Err(invalid(format!(
                "{} bins exceed the grid limit {MAX_GRID_YZ}",
                bins.len()
            )));
        }
        let hop = cqt.params().hop_length;
        let (mut direct, mut blocked) = (HostTaps::default(), HostTaps::default());
        let (mut blocked_index, mut full_blocks, mut weight_offset) =
            (Vec::new(), Vec::new(), Vec::new());
        let (mut weights, mut tables, mut block_start, mut block_full) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for (k, bin) in bins.iter().enumerate() {
            direct.push(&bin.re, &bin.im, bin.start, bin.length)?;
            weight_offset.push(to_i32(weights.len(), "weight offset")?);
            match cqt.blocked_plan(k) {
                None => {
                    blocked.push(&bin.re, &bin.im, bin.start, bin.length)?;
                    blocked_index.push(-1);
                    full_blocks.push(0);
                }
                Some(plan) => {
                    let from = bin.start + plan.full_blocks * hop;
                    blocked.push(plan.tail_re, plan.tail_im, from, bin.length)?;
                    blocked_index.push(to_i32(block_start.len(), "blocked bins")?);
                    full_blocks.push(to_i32(plan.full_blocks, "whole blocks")?);
                    weights.extend(
                        plan.weights
                            .iter()
                            .flat_map(|w| w.iter().flat_map(|&(re, im)| [re, im])),
                    );
                    tables.extend(plan.tables.iter().flat_map(|t| t.iter().copied()));
                    block_start.push(to_i32(bin.start, "kernel start")?);
                    block_full.push(to_i32(plan.full_blocks, "whole blocks")?);
                }
            }
        }
        let max_full_blocks = block_full.iter().copied().max().unwrap_or(0) as usize;
        Ok(Self {
            method: cqt.method(),
            n_bins: bins.len(),
            kernel_width: cqt.kernels().kernel_width,
            direct: direct.upload(device)?,
            blocked: blocked.upload(device)?,
            blocked_index: device.upload(&blocked_index)?,
            full_blocks: device.upload(&full_blocks)?,
            weights: upload_nonempty(device, &weights)?,
            weight_offset: device.upload(&weight_offset)?,
            tables: upload_nonempty(device, &tables)?,
            n_blocked: block_start.len(),
            block_start: upload_nonempty(device, &block_start)?,
            block_full: upload_nonempty(device, &block_full)?,
            max_full_blocks,
        })
    }
}

/// Launches kernels/cqt.cu: `padded` holds `batch` reflect-padded clips of equal length;
/// `out` receives (batch, n_bins, n_frames) magnitudes. `CqtMethod::Direct` runs
/// `cqt_direct`; `Blocked` runs `cqt_block_sums` then `cqt_blocked_frames` (or `cqt_direct`
/// where there is no blocked bin, or the hop is over 2 048 samples).
pub fn cqt_launch(
    device: &KernelDevice,
    kernels: &CqtDeviceKernels,
    padded: &DeviceBuffer<f32>,
    batch: usize,
    n_frames: usize,
    hop_length: usize,
    out: &mut DeviceBuffer<f32>,
) -> Result<(), DeviceError> {
    if batch == 0 || batch > MAX_GRID_YZ || n_frames == 0 || hop_length == 0 {
        return Err(invalid(format!(
            "batch {batch} (1..={MAX_GRID_YZ}), {n_frames} frames and hop {hop_length} must be positive"
        )));
    }
    if !padded.len().is_multiple_of(batch) {
        return Err(invalid(format!(
            "{} padded samples for {batch} clips",
            padded.len()
        )));
    }
    let padded_len = padded.len() / batch;
    let needed = (n_frames - 1) * hop_length + kernels.kernel_width;
    if padded_len < needed {
        return Err(invalid(format!(
            "{n_frames} frames need padded clips of {needed} samples, got {padded_len}"
        )));
    }
    if out.len() != batch * kernels.n_bins * n_frames {
        return Err(invalid(format!(
            "out has {} elements, not {batch} × {} × {n_frames}",
            out.len(),
            kernels.n_bins
        )));
    }
    let grid_x = |items: usize, per_block: usize| {
        let tiles = items.div_ceil(per_block).max(1);
        u32::try_from(tiles).map_err(|_| invalid(format!("{tiles} tiles exceed the grid")))
    };
    let frames_config = LaunchConfig {
        grid: [
            grid_x(n_frames, FRAMES_PER_BLOCK)?,
            kernels.n_bins as u32,
            batch as u32,
        ],
        block: [THREADS_PER_BLOCK, 1, 1],
        shared_mem_bytes: 0,
    };
    let padded_len = to_i32(padded_len, "padded clip length")?;
    let (n_bins, frames, hop) = (
        to_i32(kernels.n_bins, "bins")?,
        to_i32(n_frames, "frames")?,
        to_i32(hop_length, "hop length")?,
    );
    let table_bytes = 6 * hop_length * std::mem::size_of::<f32>();
    // A hop too long for the tables to fit in shared memory takes the direct kernel instead.
    if kernels.method == CqtMethod::Direct
        || kernels.n_blocked == 0
        || table_bytes > MAX_SHARED_BYTES
    {
        let taps = &kernels.direct;
        return device.launch(
            "cqt_direct",
            frames_config,
            &[
                padded.into(),
                padded_len.into(),
                (&taps.re).into(),
                (&taps.im).into(),
                (&taps.offset).into(),
                (&taps.count).into(),
                (&taps.from).into(),
                (&taps.librosa_scale).into(),
                n_bins.into(),
                frames.into(),
                hop.into(),
                out.into(),
            ],
        );
    }
    let max_blocks = n_frames + kernels.max_full_blocks - 1;
    let mut sums = device.alloc::<f32>(batch * kernels.n_blocked * 6 * max_blocks)?;
    let max_blocks = to_i32(max_blocks, "blocks")?;
    device.launch(
        "cqt_block_sums",
        LaunchConfig {
            grid: [
                grid_x(max_blocks as usize, THREADS_PER_BLOCK as usize)?,
                kernels.n_blocked as u32,
                batch as u32,
            ],
            block: [THREADS_PER_BLOCK, 1, 1],
            shared_mem_bytes: table_bytes as u32,
        },
        &[
            padded.into(),
            padded_len.into(),
            (&kernels.tables).into(),
            (&kernels.block_start).into(),
            (&kernels.block_full).into(),
            frames.into(),
            max_blocks.into(),
            hop.into(),
            (&mut sums).into(),
        ],
    )?;
    let taps = &kernels.blocked;
    device.launch(
        "cqt_blocked_frames",
        frames_config,
        &[
            padded.into(),
            padded_len.into(),
            (&taps.re).into(),
            (&taps.im).into(),
            (&taps.offset).into(),
            (&taps.count).into(),
            (&taps.from).into(),
            (&taps.librosa_scale).into(),
            (&kernels.blocked_index).into(),
            (&kernels.full_blocks).into(),
            (&kernels.weights).into(),
            (&kernels.weight_offset).into(),
            (&sums).into(),
            to_i32(kernels.n_blocked, "blocked bins")?.into(),
            max_blocks.into(),
            n_bins.into(),
            frames.into(),
            hop.into(),
            out.into(),
        ],
    )
}

/// Reflect-pads each clip as the CPU path does and lays them back to back.
pub fn pad_batch(cqt: &Cqt, clips: &[&[f32]]) -> Vec<f32> {
    let pad = cqt.padding();
    clips
        .iter()
        .flat_map(|c| {
            let mut padded = reflect_pad(c, pad);
            padded.truncate(c.len() + 2 * pad);
            padded
        })
        .collect()
}

/// CQT magnitudes of `audio` (clips of `clip_len` samples back to back) on any device:
/// (batch, n_bins, n_frames).
pub fn cqt(
    device: &Device,
    cqt: &Cqt,
    audio: &[f32],
    clip_len: usize,
) -> Result<Vec<f32>, DeviceError> {
    match device {
        Device::Cpu => cqt_cpu(cqt, audio, clip_len),
        Device::Kernels(k) => {
            let clips = split(audio, clip_len)?;
            if let Some((i, v)) = audio.iter().enumerate().find(|(_, v)| !v.is_finite()) {
                return Err(invalid(format!(
                    "audio sample {i} is {v}: the CQT needs finite samples"
                )));
            }
            let kernels = CqtDeviceKernels::upload(k, cqt)?;
            let padded = k.upload(&pad_batch(cqt, &clips))?;
            let n_frames = cqt.n_frames(clip_len);
            let mut out = k.alloc(clips.len() * kernels.n_bins * n_frames)?;
            cqt_launch(
                k,
                &kernels,
                &padded,
                clips.len(),
                n_frames,
                cqt.params().hop_length,
                &mut out,
            )?;
            k.download(&out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::EmuOptions;
    use crate::spectrogram::CqtParams;

    fn small() -> Cqt {
        Cqt::new(CqtParams {
            sample_rate_hz: 8000,
            hop_length: 32,
            fmin_hz: 500.0,
            n_bins: 12,
            bins_per_octave: 12,
            filter_scale: 1.0,
        })
        .unwrap()
    }

    #[test]
    fn ragged_batches_and_non_finite_audio_are_refused_on_every_device() {
        let plan = small();
        let emu = Device::emu(EmuOptions::default());
        for device in [&Device::Cpu, &emu] {
            let err = cqt(device, &plan, &[0.0; 10], 3).unwrap_err().to_string();
            assert!(err.contains("do not split into clips of 3"), "{err}");
            let err = cqt(device, &plan, &[0.0, f32::INFINITY, 0.0], 3)
                .unwrap_err()
                .to_string();
            assert!(err.contains("sample 1"), "{err}");
        }
    }

    #[test]
    fn launch_checks_shapes_before_running() {
        let plan = small();
        let device = KernelDevice::emu(EmuOptions::default());
        let kernels = CqtDeviceKernels::upload(&device, &plan).unwrap();
        let clip = vec![0.1f32; 301];
        let padded = device.upload(&pad_batch(&plan, &[&clip, &clip])).unwrap();
        let n_frames = plan.n_frames(clip.len());
        let mut wrong_out = device.alloc::<f32>(2 * 12 * n_frames - 1).unwrap();
        let err =
            cqt_launch(&device, &kernels, &padded, 2, n_frames, 32, &mut wrong_out).unwrap_err();
        assert!(err.to_string().contains("out has"), "{err}");
        let mut out = device.alloc::<f32>(2 * 12 * (n_frames + 1)).unwrap();
        let err =
            cqt_launch(&device, &kernels, &padded, 2, n_frames + 1, 32, &mut out).unwrap_err();
        assert!(err.to_string().contains("need padded clips"), "{err}");
    }
}

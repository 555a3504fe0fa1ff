//! The network over a recording of any length in overlapping chunks, so memory stays bounded.
//!
//! The protocol runs the whole recording through the network at once; the convolutions see a
//! few frames around each frame and the BiLSTM the whole recording. Here the recording is cut
//! into cores of `chunk_frames`; each core is run inside a window with `context_frames` more on
//! each side (shifted inwards at the recording's ends, so every window has the same length and
//! windows batch together), and only the core's frames are kept. How far this is from the
//! whole-recording output is measured in BENCHMARKS.md ("Chunked against whole-recording
//! inference").

use crate::device::Device;
use crate::model::{Mode, ModelError, Tensor, Transcriber, MIN_FRAMES, N_BINS, N_KEYS};

/// How a long recording is cut for the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Frames of each core whose output is kept (0: the whole recording in one pass).
    pub chunk_frames: usize,
    /// Frames of context run on each side of a core and thrown away.
    pub context_frames: usize,
    /// Windows run through the network together.
    pub batch: usize,
}

impl Default for ChunkPlan {
    /// 1024-frame cores (32.8 s) with 64 frames (2 s) of context on each side, one window at a
    /// time: ~290 MiB peak for the whole process, and about as fast as larger windows or
    /// batches (BENCHMARKS.md, "Transcription").
    fn default() -> Self {
        Self {
            chunk_frames: 1024,
            context_frames: 64,
            batch: 1,
        }
    }
}

/// One window of the network's input and the part of its output that is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// First frame of the window in the recording.
    pub start: usize,
    pub len: usize,
    /// The kept frames, `[core_start, core_end)` in the recording.
    pub core_start: usize,
    pub core_end: usize,
}

impl ChunkPlan {
    /// The windows covering `frames` frames: their cores tile `[0, frames)` in order.
    pub fn windows(&self, frames: usize) -> Vec<Window> {
        let whole = Window {
            start: 0,
            len: frames,
            core_start: 0,
            core_end: frames,
        };
        let len = self.chunk_frames + 2 * self.context_frames;
        if self.chunk_frames == 0 || frames <= len {
            return vec![whole];
        }
        (0..frames)
            .step_by(self.chunk_frames)
            .map(|core_start| {
                let core_end = (core_start + self.chunk_frames).min(frames);
                let start = core_start
                    .saturating_sub(self.context_frames)
                    .min(frames - len);
                Window {
                    start,
                    len,
                    core_start,
                    core_end,
                }
            })
            .collect()
    }

    pub fn validate(&self) -> Result<(), String> {
        if self.chunk_frames != 0 && self.chunk_frames + 2 * self.context_frames < MIN_FRAMES {
            return Err(format!(
                "a chunk of {} frames with {} of context on each side is shorter than the network's {MIN_FRAMES} frames",
                self.chunk_frames, self.context_frames
            ));
        }
        if self.batch == 0 {
            return Err("the batch of chunks must hold at least one chunk".into());
        }
        Ok(())
    }
}

/// Frame probabilities (`frames × 88`) of a model input (`frames × 176`), the network run in
/// evaluation mode window by window (see [`ChunkPlan`]). `on_window(done, total)` is called
/// after each batch of windows.
pub fn frame_probabilities_chunked(
    model: &mut Transcriber,
    input: &[f32],
    frames: usize,
    plan: &ChunkPlan,
    on_window: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>, ModelError> {
    frame_probabilities_chunked_on(&Device::Cpu, model, input, frames, plan, on_window)
}

/// [`frame_probabilities_chunked`] on `device`: on a kernel device the parameters are uploaded
/// once and every batch of windows runs the network's kernels
/// (`Transcriber<Kernels>`, [`crate::model::backend`]).
pub fn frame_probabilities_chunked_on(
    device: &Device,
    model: &mut Transcriber,
    input: &[f32],
    frames: usize,
    plan: &ChunkPlan,
    on_window: &mut dyn FnMut(usize, usize),
) -> Result<Vec<f32>, ModelError> {
    if input.len() != frames * N_BINS {
        return Err(ModelError::InputShape {
            shape: vec![input.len() / N_BINS, N_BINS],
        });
    }
    model.set_mode(Mode::Eval);
    let mut on_device = match device {
        Device::Kernels(kernels) => Some(Transcriber::upload(kernels, model)?),
        Device::Cpu => None,
    };
    let windows = plan.windows(frames);
    let mut roll = vec![0f32; frames * N_KEYS];
    let mut done = 0;
    for group in windows.chunks(plan.batch.max(1)) {
        let len = group[0].len;
        let mut batch = Vec::with_capacity(group.len() * len * N_BINS);
        for w in group {
            batch.extend_from_slice(&input[w.start * N_BINS..(w.start + w.len) * N_BINS]);
        }
        let shape = [group.len(), len, N_BINS];
        let out = match &mut on_device {
            Some(network) => network.forward_host(&batch, &shape)?,
            None => model
                .forward(&Tensor::new(shape.to_vec(), batch))?
                .into_vec(),
        };
        for (w, window_roll) in group.iter().zip(out.chunks_exact(len * N_KEYS)) {
            let from = (w.core_start - w.start) * N_KEYS;
            let to = (w.core_end - w.start) * N_KEYS;
            roll[w.core_start * N_KEYS..w.core_end * N_KEYS]
                .copy_from_slice(&window_roll[from..to]);
        }
        done += group.len();
        on_window(done, windows.len());
    }
    Ok(roll)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_tile_the_recording_and_windows_stay_inside_it() {
        let plan = ChunkPlan {
            chunk_frames: 100,
            context_frames: 10,
            batch: 3,
        };
        for frames in [1, 120, 121, 250, 1000, 1001] {
            let windows = plan.windows(frames);
            let mut next = 0;
            for w in &windows {
                assert_eq!(w.core_start, next, "{frames}: {windows:?}");
                assert!(w.start <= w.core_start && w.core_end <= w.start + w.len);
                assert!(w.start + w.len <= frames);
                assert_eq!(w.len, windows[0].len, "windows batch together");
                next = w.core_end;
            }
            assert_eq!(next, frames);
            // Cores with room for their context on both sides get exactly it.
            for w in windows
                .iter()
                .filter(|w| w.core_start >= 10 && w.core_end + 10 <= frames && frames > 120)
            {
                assert_eq!(
                    (w.core_start - w.start, w.len),
                    (10, 120),
                    "{frames}: {w:?}"
                );
            }
        }
    }

    #[test]
    fn a_recording_within_one_window_is_run_whole_and_batching_changes_nothing() {
        let mut model = Transcriber::new(3);
        let frames = 70;
        let mut rng = crate::rng::Rng::new(5);
        let input = rng.vec_f32(frames * N_BINS, 0.0, 1.0);
        let mut whole_plan = ChunkPlan {
            chunk_frames: 0,
            ..ChunkPlan::default()
        };
        let whole =
            frame_probabilities_chunked(&mut model, &input, frames, &whole_plan, &mut |_, _| {})
                .unwrap();
        let direct =
            crate::model::inference::frame_probabilities(&mut model, &input, frames).unwrap();
        assert_eq!(whole, direct);
        // Cores of 16 with 8 of context: 5 windows, run one by one or three at a time.
        whole_plan.chunk_frames = 16;
        whole_plan.context_frames = 8;
        let mut calls = Vec::new();
        whole_plan.batch = 1;
        let single = frame_probabilities_chunked(
            &mut model,
            &input,
            frames,
            &whole_plan,
            &mut |done, total| calls.push((done, total)),
        )
        .unwrap();
        assert_eq!(calls, vec![(1, 5), (2, 5), (3, 5), (4, 5), (5, 5)]);
        whole_plan.batch = 3;
        let batched =
            frame_probabilities_chunked(&mut model, &input, frames, &whole_plan, &mut |_, _| {})
                .unwrap();
        // Batched and single windows run the same arithmetic per window except for the
        // GEMM blocking over the batch: equal to f32 rounding.
        let worst = single
            .iter()
            .zip(&batched)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(worst < 1e-5, "batched windows differ by {worst}");
        // Chunked output differs from the whole (context is cut) but is a probability roll.
        assert!(single.iter().all(|p| (0.0..=1.0).contains(p)));
        assert_ne!(single, whole);
    }
}

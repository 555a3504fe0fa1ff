//! The network over a recording of any length in overlapping chunks, so memory stays bounded.
//!
//! The protocol runs the whole recording through the network at once; the convolutions see a
//! few frames around each frame and the BiLSTM the whole recording. Here the recording is cut
//! into cores of `chunk_frames`; each core is run inside a window with `context_frames` more on
//! each side (shifted inwards at the recording's ends, so every window has the same length and
//! windows batch together), and only the core's frames are kept. How far this is from the
//! whole-recording output is measured in BENCHMARKS.md ("Chunked against whole-recording
//! inference").

use rayon::prelude::*;

use crate::device::Device;
use crate::model::{Mode, ModelError, Tensor, Transcriber, MIN_FRAMES, N_BINS, N_KEYS};

/// How a long recording is cut for the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkPlan {
    /// Most frames of each core, the part of a window whose output is kept; a recording is
    /// cut into the fewest cores this long or shorter, evened out (0: the whole recording in
    /// one pass).
    pub chunk_frames: usize,
    /// Frames of context run on each side of a core and thrown away.
    pub context_frames: usize,
    /// Windows run through the network together.
    pub batch: usize,
    /// Copies of the network run side by side on the CPU, each on its own batch of windows:
    /// the same numbers as one at a time, with no core idle while the other finishes a layer
    /// (each copy holds its own activations: memory grows with it).
    pub networks: usize,
}

impl Default for ChunkPlan {
    /// 1024-frame cores (32.8 s) with 32 frames (1 s) of context on each side (on the MAPS
    /// recordings as close to the whole-recording output as 64 or 128: BENCHMARKS.md, "Chunked
    /// against whole-recording inference"), one window per network and two networks side by
    /// side.
    fn default() -> Self {
        Self {
            chunk_frames: 1024,
            context_frames: 32,
            batch: 1,
            networks: 2,
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

/// Window starts are multiples of this many frames: the encoder halves the frames four times,
/// so a window that starts elsewhere pools other frame pairs than the whole recording does and
/// every one of its frames comes out different, context or not (measured: see
/// BENCHMARKS.md, "Chunked against whole-recording inference").
pub const WINDOW_ALIGN: usize = 16;

impl ChunkPlan {
    /// The windows covering `frames` frames: the fewest cores of at most `chunk_frames`, of
    /// (nearly) equal length, tile `[0, frames)` in order, each
    /// window starting on a multiple of [`WINDOW_ALIGN`] frames with at least `context_frames`
    /// (or the recording's edge) on each side of its core. All have one length, up to 15 frames
    /// more than the core and its context need, so that the last one, which ends at the
    /// recording's end, starts on a multiple too; one length lets the windows batch and reuse
    /// each other's buffers.
    pub fn windows(&self, frames: usize) -> Vec<Window> {
        let whole = Window {
            start: 0,
            len: frames,
            core_start: 0,
            core_end: frames,
        };
        if self.chunk_frames == 0 || frames <= self.chunk_frames + 2 * self.context_frames {
            return vec![whole];
        }
        // The fewest cores of at most chunk_frames, evened out (rounded up to a multiple of the
        // alignment where that stays within chunk_frames): cores of exactly 1024 frames left
        // the last window of a 10-minute recording computing 1088 frames to keep 318.
        let cores = frames.div_ceil(self.chunk_frames);
        let even = frames.div_ceil(cores).next_multiple_of(WINDOW_ALIGN);
        let core = if even <= self.chunk_frames {
            even
        } else {
            self.chunk_frames
        };
        // Room for the aligned start to fall up to 15 frames before core − context, unless
        // every core − context is aligned already (the default context 32 with even cores).
        let aligned = (core % WINDOW_ALIGN, self.context_frames % WINDOW_ALIGN) == (0, 0);
        let slack = if aligned { 0 } else { WINDOW_ALIGN - 1 };
        let needed = (core + 2 * self.context_frames + slack).next_multiple_of(WINDOW_ALIGN);
        if frames <= needed {
            return vec![whole];
        }
        let len = needed + (frames - needed) % WINDOW_ALIGN;
        if len == frames {
            return vec![whole];
        }
        let align = |f: usize| f / WINDOW_ALIGN * WINDOW_ALIGN;
        (0..frames)
            .step_by(core)
            .map(|core_start| Window {
                start: align(core_start.saturating_sub(self.context_frames)).min(frames - len),
                len,
                core_start,
                core_end: (core_start + core).min(frames),
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
        if self.networks == 0 {
            return Err("at least one network must run".into());
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
    let windows = plan.windows(frames);
    let mut roll = vec![0f32; frames * N_KEYS];
    let groups: Vec<&[Window]> = windows.chunks(plan.batch.max(1)).collect();
    let batch_of = |group: &[Window]| {
        let len = group[0].len;
        let mut batch = Vec::with_capacity(group.len() * len * N_BINS);
        for w in group {
            batch.extend_from_slice(&input[w.start * N_BINS..(w.start + w.len) * N_BINS]);
        }
        Tensor::new(vec![group.len(), len, N_BINS], batch)
    };
    let mut keep = |group: &[Window], out: &[f32]| {
        let len = group[0].len;
        for (w, window_roll) in group.iter().zip(out.chunks_exact(len * N_KEYS)) {
            let from = (w.core_start - w.start) * N_KEYS;
            let to = (w.core_end - w.start) * N_KEYS;
            roll[w.core_start * N_KEYS..w.core_end * N_KEYS]
                .copy_from_slice(&window_roll[from..to]);
        }
    };
    let mut done = 0;
    if let Device::Kernels(kernels) = device {
        let mut network = Transcriber::upload(kernels, model)?;
        for group in groups {
            let spec = batch_of(group);
            keep(group, &network.forward_host(spec.data(), spec.shape())?);
            done += group.len();
            on_window(done, windows.len());
        }
        return Ok(roll);
    }
    // The copies beyond the caller's network, made only when there are windows and threads
    // for them (a copy without a thread of its own would only hold memory).
    let copies = plan
        .networks
        .min(groups.len())
        .min(rayon::current_num_threads())
        .saturating_sub(1);
    let mut extra: Vec<Transcriber> = (0..copies).map(|_| model.replica()).collect();
    let mut networks: Vec<&mut Transcriber> =
        std::iter::once(model).chain(extra.iter_mut()).collect();
    for round in groups.chunks(networks.len()) {
        let outs: Vec<Result<Tensor, ModelError>> = networks
            .par_iter_mut()
            .zip(round.par_iter())
            .map(|(network, group)| network.forward(&batch_of(group)))
            .collect();
        for (group, out) in round.iter().zip(outs) {
            keep(group, &out?.into_vec());
        }
        done += round.iter().map(|g| g.len()).sum::<usize>();
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
            networks: 1,
        };
        for frames in [1, 120, 121, 250, 1000, 1001] {
            let windows = plan.windows(frames);
            let mut next = 0;
            for w in &windows {
                assert_eq!(w.core_start, next, "{frames}: {windows:?}");
                assert!(w.start <= w.core_start && w.core_end <= w.start + w.len);
                assert!(w.start + w.len <= frames);
                assert!(w.start.is_multiple_of(WINDOW_ALIGN), "{frames}: {w:?}");
                assert_eq!(w.len, windows[0].len, "windows batch together");
                next = w.core_end;
            }
            assert_eq!(next, frames);
            if windows.len() > 1 {
                // 100 + 2 · 10 + 15 (the alignment's slack) rounded up to 144, and up to 15
                // more for the last start; every core has its context or the recording's edge.
                assert!(
                    (144..160).contains(&windows[0].len),
                    "{frames}: {windows:?}"
                );
                for w in &windows {
                    assert!(w.core_start - w.start >= 10.min(w.core_start), "{w:?}");
                    assert!(w.start + w.len - w.core_end >= 10.min(frames - w.core_end));
                }
            }
        }
    }

    #[test]
    fn a_ten_minute_recording_is_cut_into_even_aligned_windows() {
        // 18 750 frames (600 s): 19 cores of 992 frames (the last 894) in windows of 1070, not
        // 18 of 1024 and a last one of 318 in windows of 1102.
        let windows = ChunkPlan::default().windows(18_750);
        assert_eq!(windows.len(), 19);
        assert!(windows.iter().all(|w| w.len == 1070));
        assert!(windows.iter().all(|w| w.start % WINDOW_ALIGN == 0));
        let cores: Vec<usize> = windows.iter().map(|w| w.core_end - w.core_start).collect();
        assert!(
            cores[..18].iter().all(|&c| c == 992) && cores[18] == 894,
            "{cores:?}"
        );
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
        whole_plan.networks = 1;
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
        crate::compare::assert_close(
            "batched windows",
            &batched,
            &single,
            crate::compare::ErrorScale::of_peak(),
            1e-5,
        );
        // Chunked output differs from the whole (context is cut) but is a probability roll.
        assert!(single.iter().all(|p| (0.0..=1.0).contains(p)));
        assert_ne!(single, whole);
    }

    #[test]
    fn networks_side_by_side_give_the_same_roll_as_one_network() {
        let seed = crate::device::equivalence::test_seed("networks_side_by_side");
        let mut model = Transcriber::new(seed);
        let frames = 150;
        let input = crate::rng::Rng::new(seed).vec_f32(frames * N_BINS, 0.0, 1.0);
        let plan = |batch, networks| ChunkPlan {
            chunk_frames: 20,
            context_frames: 6,
            batch,
            networks,
        };
        let mut roll = |plan: ChunkPlan| {
            let mut calls = Vec::new();
            let roll =
                frame_probabilities_chunked(&mut model, &input, frames, &plan, &mut |d, t| {
                    calls.push((d, t))
                })
                .unwrap();
            (roll, calls)
        };
        let (one, calls) = roll(plan(1, 1));
        assert_eq!(calls.len(), 8);
        // 8 windows on 3 networks (3 threads): rounds of 3, 3, 2; more networks than windows
        // or threads is fine (batches of 2: 4 groups on 3 threads).
        let three_threads = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        for (batch, networks, expected_calls) in [
            (1, 3, vec![(3, 8), (6, 8), (8, 8)]),
            (2, 9, vec![(6, 8), (8, 8)]),
        ] {
            let (side_by_side, calls) = three_threads.install(|| roll(plan(batch, networks)));
            assert_eq!(calls, expected_calls);
            // Each window's arithmetic does not depend on which copy runs it (batch 2 changes
            // only the GEMM blocking: f32 rounding).
            crate::compare::assert_close(
                &format!("batch {batch}, {networks} networks"),
                &side_by_side,
                &one,
                crate::compare::ErrorScale::of_peak(),
                1e-5,
            );
            if batch == 1 {
                assert_eq!(one, side_by_side);
            }
        }
    }
}

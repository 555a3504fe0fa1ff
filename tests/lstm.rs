//! Bidirectional LSTM: gradients against finite differences (input and every parameter of both
//! directions), the fast path against the reference, and the direction semantics.

mod op_check;

use mtosi::ops::lstm::*;
use op_check::{assert_close, check_gradient, seed, weighted_sum, Rng};

#[derive(Debug, Clone, Copy)]
struct Shape {
    batch: usize,
    frames: usize,
    input_size: usize,
    hidden_size: usize,
}

/// Both directions' parameters in one buffer per direction: w_ih, w_hh, b_ih, b_hh.
#[derive(Clone)]
struct Params {
    dirs: [Vec<f32>; 2],
}

impl Shape {
    fn split(&self) -> [usize; 4] {
        let h4 = 4 * self.hidden_size;
        [h4 * self.input_size, h4 * self.hidden_size, h4, h4]
    }
    fn direction_len(&self) -> usize {
        self.split().iter().sum()
    }
    fn out_len(&self) -> usize {
        self.batch * self.frames * 2 * self.hidden_size
    }
    fn inp_len(&self) -> usize {
        self.batch * self.frames * self.input_size
    }
}

fn weights<'a>(s: Shape, flat: &'a [f32]) -> LstmWeights<'a> {
    let [a, b, c, _] = s.split();
    LstmWeights {
        w_ih: &flat[..a],
        w_hh: &flat[a..a + b],
        b_ih: &flat[a + b..a + b + c],
        b_hh: &flat[a + b + c..],
    }
}

fn gradients<'a>(s: Shape, flat: &'a mut [f32]) -> LstmGradients<'a> {
    let [a, b, c, _] = s.split();
    let (w_ih, rest) = flat.split_at_mut(a);
    let (w_hh, rest) = rest.split_at_mut(b);
    let (b_ih, b_hh) = rest.split_at_mut(c);
    LstmGradients {
        w_ih,
        w_hh,
        b_ih,
        b_hh,
    }
}

struct Forward {
    out: Vec<f32>,
    gates: Vec<f32>,
    cells: Vec<f32>,
}

/// float32 throughout, even with `MTOSI_CONV_BF16=1` in the environment (the bf16 recurrence
/// has its own test, tests/lstm_bf16.rs): cleared once, before the first forward of this binary.
fn float32_only() {
    static CLEARED: std::sync::Once = std::sync::Once::new();
    CLEARED.call_once(|| std::env::remove_var(mtosi::ops::conv2d::BF16_VAR));
}

fn forward(s: Shape, inp: &[f32], fwd: &[f32], rev: &[f32], reference: bool) -> Forward {
    float32_only();
    let mut f = Forward {
        out: vec![0.0; s.out_len()],
        gates: vec![0.0; 2 * s.batch * s.frames * 4 * s.hidden_size],
        cells: vec![0.0; 2 * s.batch * s.frames * s.hidden_size],
    };
    let run = if reference {
        lstm_forward_reference
    } else {
        lstm_forward
    };
    run(
        &mut f.out,
        &mut f.gates,
        &mut f.cells,
        inp,
        &[weights(s, fwd), weights(s, rev)],
        s.batch,
        s.frames,
        s.input_size,
        s.hidden_size,
    );
    f
}

/// Gradients of Σ d_out·out: (d_inp, d_forward_params, d_reverse_params), added onto `prior`.
fn backward(
    s: Shape,
    inp: &[f32],
    params: &Params,
    d_out: &[f32],
    prior: (Vec<f32>, Vec<f32>, Vec<f32>),
    reference: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let mut f = forward(s, inp, &params.dirs[0], &params.dirs[1], true);
    let (mut d_inp, mut d_fwd, mut d_rev) = prior;
    let mut grads = [gradients(s, &mut d_fwd), gradients(s, &mut d_rev)];
    let weights = [weights(s, &params.dirs[0]), weights(s, &params.dirs[1])];
    // One call for both: `lstm_backward` uses up the gates (its gate gradients replace them),
    // the reference only reads them.
    macro_rules! run {
        ($backward:expr, $gates:expr) => {
            $backward(
                Some(&mut d_inp),
                &mut grads,
                d_out,
                inp,
                &f.out,
                $gates,
                &f.cells,
                &weights,
                s.batch,
                s.frames,
                s.input_size,
                s.hidden_size,
            )
        };
    }
    if reference {
        run!(lstm_backward_reference, &f.gates);
    } else {
        run!(lstm_backward, &mut f.gates);
    }
    (d_inp, d_fwd, d_rev)
}

fn random_params(rng: &mut Rng, s: Shape) -> Params {
    // PyTorch's init range, U(−1/sqrt(hidden), 1/sqrt(hidden)), doubled to exercise saturation.
    let bound = 2.0 / (s.hidden_size as f32).sqrt();
    Params {
        dirs: [
            rng.vec_f32(s.direction_len(), -bound, bound),
            rng.vec_f32(s.direction_len(), -bound, bound),
        ],
    }
}

#[test]
fn lstm_gradients_match_finite_differences() {
    let mut rng = Rng::new(seed("lstm_gradients_match_finite_differences"));
    let s = Shape {
        batch: 2,
        frames: 4,
        input_size: 3,
        hidden_size: 2,
    };
    let params = random_params(&mut rng, s);
    let inp = rng.vec_f32(s.inp_len(), -1.0, 1.0);
    let d_out = rng.vec_f32(s.out_len(), -1.0, 1.0);
    let zeros = (
        vec![0.0; s.inp_len()],
        vec![0.0; s.direction_len()],
        vec![0.0; s.direction_len()],
    );
    let (d_inp, d_fwd, d_rev) = backward(s, &inp, &params, &d_out, zeros, false);
    // Smooth (σ, tanh): at h = 5e-3 truncation h²·f'''/6 and f32 rounding over 2h each stay
    // near 1e-5 of the largest gradient; 2e-3 leaves room without hiding a wrong term.
    let (h, tol) = (5e-3, 2e-3);
    check_gradient("lstm d_inp", &inp, &d_inp, h, tol, |x| {
        weighted_sum(
            &forward(s, x, &params.dirs[0], &params.dirs[1], false).out,
            &d_out,
        )
    });
    check_gradient(
        "lstm d_params forward",
        &params.dirs[0],
        &d_fwd,
        h,
        tol,
        |p| weighted_sum(&forward(s, &inp, p, &params.dirs[1], false).out, &d_out),
    );
    check_gradient(
        "lstm d_params reverse",
        &params.dirs[1],
        &d_rev,
        h,
        tol,
        |p| weighted_sum(&forward(s, &inp, &params.dirs[0], p, false).out, &d_out),
    );
}

#[test]
fn lstm_fast_matches_reference_on_random_shapes() {
    let mut rng = Rng::new(seed("lstm_fast_matches_reference_on_random_shapes"));
    for _ in 0..6 {
        let s = Shape {
            batch: rng.range_usize(1, 3),
            frames: rng.range_usize(1, 12),
            input_size: rng.range_usize(1, 24),
            hidden_size: rng.range_usize(1, 20),
        };
        let params = random_params(&mut rng, s);
        let inp = rng.vec_f32(s.inp_len(), -1.0, 1.0);
        let d_out = rng.vec_f32(s.out_len(), -1.0, 1.0);
        // Dot products of ≤ 24 terms in another order, through ≤ 12 recurrent steps.
        let tol = 1e-5;
        let name = format!("{s:?}");
        let fast = forward(s, &inp, &params.dirs[0], &params.dirs[1], false);
        let reference = forward(s, &inp, &params.dirs[0], &params.dirs[1], true);
        assert_close(&format!("{name} out"), &fast.out, &reference.out, tol);
        assert_close(&format!("{name} gates"), &fast.gates, &reference.gates, tol);
        assert_close(&format!("{name} cells"), &fast.cells, &reference.cells, tol);
        let prior = (
            rng.vec_f32(s.inp_len(), -1.0, 1.0),
            rng.vec_f32(s.direction_len(), -1.0, 1.0),
            rng.vec_f32(s.direction_len(), -1.0, 1.0),
        );
        let fast = backward(s, &inp, &params, &d_out, prior.clone(), false);
        let reference = backward(s, &inp, &params, &d_out, prior, true);
        assert_close(&format!("{name} d_inp"), &fast.0, &reference.0, tol);
        assert_close(&format!("{name} d_forward"), &fast.1, &reference.1, tol);
        assert_close(&format!("{name} d_reverse"), &fast.2, &reference.2, tol);
    }
}

#[test]
fn lstm_reverse_direction_is_the_forward_one_on_the_reversed_sequence() {
    let mut rng = Rng::new(seed(
        "lstm_reverse_direction_is_the_forward_one_on_the_reversed_sequence",
    ));
    let s = Shape {
        batch: 2,
        frames: 5,
        input_size: 3,
        hidden_size: 4,
    };
    let params = random_params(&mut rng, s);
    let inp = rng.vec_f32(s.inp_len(), -1.0, 1.0);
    let mut reversed = inp.clone();
    for b in 0..s.batch {
        for t in 0..s.frames {
            let src = &inp[(b * s.frames + s.frames - 1 - t) * s.input_size..][..s.input_size];
            reversed[(b * s.frames + t) * s.input_size..][..s.input_size].copy_from_slice(src);
        }
    }
    let straight = forward(s, &inp, &params.dirs[0], &params.dirs[1], false);
    // Swap the directions' weights and reverse time: the halves of each row swap places.
    let swapped = forward(s, &reversed, &params.dirs[1], &params.dirs[0], false);
    let hid = s.hidden_size;
    for b in 0..s.batch {
        for t in 0..s.frames {
            let row = &straight.out[(b * s.frames + t) * 2 * hid..][..2 * hid];
            let mirror = &swapped.out[(b * s.frames + s.frames - 1 - t) * 2 * hid..][..2 * hid];
            assert_close("forward half", &row[..hid], &mirror[hid..], 1e-6);
            assert_close("reverse half", &row[hid..], &mirror[..hid], 1e-6);
        }
    }
}

#[test]
fn lstm_first_step_starts_from_zero_state_with_gate_order_ifgo() {
    // One frame, hidden 1, input 1: pre = w_ih·x + b_ih + b_hh (h_prev = 0), rows i, f, g, o.
    let w_ih = [0.5, -1.0, 2.0, 1.5];
    let w_hh = [9.0, 9.0, 9.0, 9.0]; // unused on the first step: h_prev = 0
    let b_ih = [0.1, 0.2, -0.3, 0.4];
    let b_hh = [0.0, 0.1, 0.1, -0.2];
    let x = 0.7f32;
    let params = LstmWeights {
        w_ih: &w_ih,
        w_hh: &w_hh,
        b_ih: &b_ih,
        b_hh: &b_hh,
    };
    let mut out = [0.0; 2];
    let mut gates = [0.0; 8];
    let mut cells = [0.0; 2];
    lstm_forward(
        &mut out,
        &mut gates,
        &mut cells,
        &[x],
        &[params, params],
        1,
        1,
        1,
        1,
    );
    let sigmoid = |v: f32| 1.0 / (1.0 + (-v).exp());
    let pre: Vec<f32> = (0..4).map(|r| w_ih[r] * x + b_ih[r] + b_hh[r]).collect();
    let (i, g, o) = (sigmoid(pre[0]), pre[2].tanh(), sigmoid(pre[3]));
    let c = i * g; // f·c_prev vanishes with c_prev = 0
    let h = o * c.tanh();
    assert!(
        (out[0] - h).abs() < 1e-6 && (out[1] - h).abs() < 1e-6,
        "{out:?} vs {h}"
    );
    assert!((cells[0] - c).abs() < 1e-6);
}

mod kernels {
    //! The bidirectional LSTM on the kernel devices (input projections and weight gradients as
    //! GEMMs, each recurrence one persistent launch for both directions) against the CPU op:
    //! forward (out, gates, cells) and backward (d_inp and all eight parameter gradients), with
    //! each of the two recurrence kernels (`LstmRecurrence`), and the grid recurrences without
    //! their grid barrier (emu test kernels) caught by the same check.
    use mtosi::device::equivalence::{Equivalence, Rng};
    use mtosi::device::{Device, DeviceBuffer, DeviceError, Kernel, KernelDevice};
    use mtosi::ops::lstm::*;

    include!(concat!(env!("OUT_DIR"), "/test_kernels.rs"));

    /// (batch, frames, input_size, hidden_size): hidden sizes that the grid recurrences split
    /// unevenly (37: 13 blocks of 3 units, the last with 1; 100: 15 of 7, the last with 2), and
    /// batch 8 at hidden 176 (the model's), where the backward stages its sequences through
    /// shared memory in two chunks (6 + 2), and batch 24, where the forward does too (19 + 5).
    const CASES: [(usize, usize, usize, usize); 10] = [
        (1, 1, 1, 1),
        (2, 5, 3, 4),
        (1, 9, 7, 5),
        (3, 4, 2, 33),
        (2, 12, 6, 70),
        (1, 3, 4, 65),
        (3, 7, 5, 37),
        (1, 6, 3, 100),
        (8, 3, 3, 176),
        (24, 2, 2, 176),
    ];

    /// How a kernel device runs the recurrences in a check: a kernel choice, or the grid
    /// recurrences with their kernels replaced by emu test kernels.
    #[derive(Clone, Copy)]
    enum Recurrence {
        Kernels(LstmRecurrence),
        GridWithout(&'static Kernel, &'static Kernel),
    }

    fn test_kernel(name: &str) -> &'static Kernel {
        TEST_KERNELS
            .iter()
            .find(|k| k.name == name)
            .unwrap_or_else(|| panic!("test kernel {name} not built"))
    }

    fn without_grid_barrier() -> Recurrence {
        Recurrence::GridWithout(
            test_kernel("bug_lstm_forward_grid_without_barrier"),
            test_kernel("bug_lstm_backward_grid_without_barrier"),
        )
    }

    fn workspace(
        k: &KernelDevice,
        s: LstmShape,
        r: Recurrence,
    ) -> Result<LstmWorkspace, DeviceError> {
        match r {
            Recurrence::Kernels(choice) => LstmWorkspace::with_recurrence(k, s, choice),
            Recurrence::GridWithout(forward, backward) => {
                let mut ws = LstmWorkspace::with_recurrence(k, s, LstmRecurrence::Grid)?;
                ws.replace_grid_kernels(forward, backward)?;
                Ok(ws)
            }
        }
    }

    #[test]
    fn the_grid_recurrences_are_chosen_where_they_fit() {
        let device = KernelDevice::emu(Default::default());
        let shape = LstmShape {
            batch: 8,
            frames: 3,
            input_size: 3,
            hidden_size: 176,
        };
        let ws = LstmWorkspace::new(&device, shape).unwrap();
        assert_eq!(ws.recurrence(), LstmRecurrence::Grid);
        let plan = ws.grid_plan().unwrap();
        assert_eq!((plan.units, plan.blocks_per_direction), (11, 16));
        assert_eq!((plan.forward_chunk, plan.backward_chunk), (8, 6));
        let plan = LstmGridPlan::for_shape(&LstmShape { batch: 24, ..shape }, 128).unwrap();
        assert_eq!((plan.forward_chunk, plan.backward_chunk), (19, 5));
        // hid 3000: one unit's W_hh rows (4·3000 floats) alone exceed 48 KiB.
        let wide = LstmShape {
            hidden_size: 3000,
            ..shape
        };
        assert_eq!(LstmGridPlan::for_shape(&wide, 128), None);
        // A device that keeps only 8 blocks resident cannot hold 2 × 16.
        assert_eq!(LstmGridPlan::for_shape(&shape, 8), None);
    }

    struct Inputs {
        shape: LstmShape,
        inp: Vec<f32>,
        d_out: Vec<f32>,
        /// per direction: w_ih, w_hh, b_ih, b_hh
        params: [[Vec<f32>; 4]; 2],
        /// prior gradients: d_inp, then per direction as `params`
        prior_d_inp: Vec<f32>,
        prior_grads: [[Vec<f32>; 4]; 2],
    }

    fn inputs(
        &(batch, frames, input_size, hid): &(usize, usize, usize, usize),
        rng: &mut Rng,
    ) -> Inputs {
        let shape = LstmShape {
            batch,
            frames,
            input_size,
            hidden_size: hid,
        };
        let lens = [4 * hid * input_size, 4 * hid * hid, 4 * hid, 4 * hid];
        let bound = 1.0 / (hid as f32).sqrt();
        let mut draw = |scale: f32| lens.map(|len| rng.vec_f32(len, -scale, scale));
        let params = [draw(bound), draw(bound)];
        let prior_grads = [draw(0.1), draw(0.1)];
        Inputs {
            shape,
            inp: rng.vec_f32(batch * frames * input_size, -1.0, 1.0),
            d_out: rng.vec_f32(batch * frames * 2 * hid, -1.0, 1.0),
            params,
            prior_d_inp: rng.vec_f32(batch * frames * input_size, -0.1, 0.1),
            prior_grads,
        }
    }

    fn cpu_weights(p: &[Vec<f32>; 4]) -> LstmWeights<'_> {
        LstmWeights {
            w_ih: &p[0],
            w_hh: &p[1],
            b_ih: &p[2],
            b_hh: &p[3],
        }
    }

    fn cpu_forward(x: &Inputs) -> [Vec<f32>; 3] {
        let s = x.shape;
        let rows = s.batch * s.frames;
        let mut out = vec![0.0; rows * 2 * s.hidden_size];
        let mut gates = vec![0.0; 2 * rows * 4 * s.hidden_size];
        let mut cells = vec![0.0; 2 * rows * s.hidden_size];
        super::float32_only();
        lstm_forward(
            &mut out,
            &mut gates,
            &mut cells,
            &x.inp,
            &[cpu_weights(&x.params[0]), cpu_weights(&x.params[1])],
            s.batch,
            s.frames,
            s.input_size,
            s.hidden_size,
        );
        [out, gates, cells]
    }

    type Uploaded = [[DeviceBuffer<f32>; 4]; 2];

    fn upload_params(k: &KernelDevice, p: &[[Vec<f32>; 4]; 2]) -> Result<Uploaded, DeviceError> {
        let one = |d: &[Vec<f32>; 4]| -> Result<[DeviceBuffer<f32>; 4], DeviceError> {
            Ok([
                k.upload(&d[0])?,
                k.upload(&d[1])?,
                k.upload(&d[2])?,
                k.upload(&d[3])?,
            ])
        };
        Ok([one(&p[0])?, one(&p[1])?])
    }

    fn device_weights(p: &Uploaded) -> [DeviceLstmWeights<'_>; 2] {
        [0, 1].map(|d| DeviceLstmWeights {
            w_ih: &p[d][0],
            w_hh: &p[d][1],
            b_ih: &p[d][2],
            b_hh: &p[d][3],
        })
    }

    /// The kernel forward: (workspace, parameters, input, [out, gates, cells]) on the device.
    type KernelForward = (
        LstmWorkspace,
        Uploaded,
        DeviceBuffer<f32>,
        [DeviceBuffer<f32>; 3],
    );

    fn kernel_forward(
        k: &KernelDevice,
        x: &Inputs,
        r: Recurrence,
    ) -> Result<KernelForward, DeviceError> {
        let s = x.shape;
        let rows = s.batch * s.frames;
        let mut ws = workspace(k, s, r)?;
        let params = upload_params(k, &x.params)?;
        let inp = k.upload(&x.inp)?;
        let mut out = k.alloc(rows * 2 * s.hidden_size)?;
        let mut gates = k.alloc(2 * rows * 4 * s.hidden_size)?;
        let mut cells = k.alloc(2 * rows * s.hidden_size)?;
        lstm_forward_launch(
            k,
            &mut ws,
            &mut out,
            &mut gates,
            &mut cells,
            &inp,
            device_weights(&params),
        )?;
        Ok((ws, params, inp, [out, gates, cells]))
    }

    fn check_forward(op: &str, r: Recurrence) -> Result<String, String> {
        Equivalence::new(op)
            // libm's and CUDA's expf/tanhf (≤ 2 ulp) against the CPU's vectorised σ and tanh,
            // through up to 12 recurrent steps of fp32 sums: 1e-4 of the largest.
            .floor_fraction(1.0)
            .tolerance(1e-4)
            .check(&CASES, inputs, |device, x| match device {
                Device::Cpu => Ok(cpu_forward(x).concat()),
                Device::Kernels(k) => {
                    let (_, _, _, outputs) = kernel_forward(k, x, r)?;
                    let mut all = Vec::new();
                    for o in &outputs {
                        all.extend(k.download(o)?);
                    }
                    Ok(all)
                }
            })
    }

    fn check_backward(op: &str, r: Recurrence) -> Result<String, String> {
        Equivalence::new(op)
            // As the forward, plus fp32 sums over every frame for the weight gradients.
            .floor_fraction(1.0)
            .tolerance(1e-4)
            .check(&CASES, inputs, |device, x| {
                let s = x.shape;
                match device {
                    Device::Cpu => {
                        let [out, mut gates, cells] = cpu_forward(x);
                        let mut d_inp = x.prior_d_inp.clone();
                        let mut g = x.prior_grads.clone();
                        let [g0, g1] = &mut g;
                        let grads = [g0, g1].map(|g| {
                            let [w_ih, w_hh, b_ih, b_hh] = g;
                            LstmGradients {
                                w_ih,
                                w_hh,
                                b_ih,
                                b_hh,
                            }
                        });
                        let mut grads = grads;
                        lstm_backward(
                            Some(&mut d_inp),
                            &mut grads,
                            &x.d_out,
                            &x.inp,
                            &out,
                            &mut gates,
                            &cells,
                            &[cpu_weights(&x.params[0]), cpu_weights(&x.params[1])],
                            s.batch,
                            s.frames,
                            s.input_size,
                            s.hidden_size,
                        );
                        let mut all = d_inp;
                        for d in &g {
                            for t in d {
                                all.extend(t);
                            }
                        }
                        Ok(all)
                    }
                    Device::Kernels(k) => {
                        let (mut ws, params, inp, [out, gates, cells]) = kernel_forward(k, x, r)?;
                        let mut d_inp = k.upload(&x.prior_d_inp)?;
                        let mut g = upload_params(k, &x.prior_grads)?;
                        let [g0, g1] = &mut g;
                        let grads = [g0, g1].map(|g| {
                            let [w_ih, w_hh, b_ih, b_hh] = g;
                            DeviceLstmGradients {
                                w_ih,
                                w_hh,
                                b_ih,
                                b_hh,
                            }
                        });
                        lstm_backward_launch(
                            k,
                            &mut ws,
                            Some(&mut d_inp),
                            grads,
                            &k.upload(&x.d_out)?,
                            &inp,
                            &out,
                            &gates,
                            &cells,
                            device_weights(&params),
                        )?;
                        let mut all = k.download(&d_inp)?;
                        for d in &g {
                            for t in d {
                                all.extend(k.download(t)?);
                            }
                        }
                        Ok(all)
                    }
                }
            })
    }

    /// `Equivalence::run`'s reporting for a check that must pass.
    fn report(result: Result<String, String>) {
        let report = result.unwrap_or_else(|e| panic!("{e}"));
        println!("{report}");
        mtosi::device::equivalence::append_to_report(&report);
    }

    #[test]
    fn lstm_forward_matches_cpu_reference_on_every_device() {
        report(check_forward(
            "lstm_forward (grid)",
            Recurrence::Kernels(LstmRecurrence::Grid),
        ));
    }

    #[test]
    fn lstm_forward_per_sequence_matches_cpu_reference_on_every_device() {
        report(check_forward(
            "lstm_forward (per sequence)",
            Recurrence::Kernels(LstmRecurrence::PerSequence),
        ));
    }

    #[test]
    fn lstm_backward_matches_cpu_reference_on_every_device() {
        report(check_backward(
            "lstm_backward (grid)",
            Recurrence::Kernels(LstmRecurrence::Grid),
        ));
    }

    #[test]
    fn lstm_backward_per_sequence_matches_cpu_reference_on_every_device() {
        report(check_backward(
            "lstm_backward (per sequence)",
            Recurrence::Kernels(LstmRecurrence::PerSequence),
        ));
    }

    /// What the check must say about a grid recurrence without its barrier: a wrong or
    /// non-finite value on emu (blocks read h or d_pre that is not written yet, NaN poison or
    /// a stale step), not a launch error.
    fn assert_caught_as_wrong_values(result: Result<String, String>) {
        let failure = match result {
            Ok(report) => panic!("the missing grid barrier passed the check: {report}"),
            Err(failure) => failure,
        };
        println!("caught: {failure}");
        assert!(failure.contains("device emu"), "{failure}");
        assert!(
            failure.contains("relative error")
                || failure.contains("NaN")
                || failure.contains("non-finite"),
            "not a wrong value: {failure}"
        );
    }

    #[test]
    fn forward_grid_recurrence_without_its_grid_barrier_fails_the_check() {
        assert_caught_as_wrong_values(check_forward(
            "lstm_forward (grid, barrier removed)",
            without_grid_barrier(),
        ));
    }

    #[test]
    fn backward_grid_recurrence_without_its_grid_barrier_fails_the_check() {
        assert_caught_as_wrong_values(check_backward(
            "lstm_backward (grid, barrier removed)",
            without_grid_barrier(),
        ));
    }
}

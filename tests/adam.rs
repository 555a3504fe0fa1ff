//! Adam and StepLR against PyTorch: three `torch.optim.Adam` steps with a StepLR halving the
//! rate after two (fixtures from `tools/reference/ops_adam_fixture.py`).

mod op_check;

use std::path::Path;

use mtosi::npy;
use mtosi::train::adam::{adam_update, AdamConfig};
use mtosi::train::step_lr::StepLr;
use op_check::assert_close;

fn fixture(name: &str) -> npy::Array {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/ops")
        .join(name);
    npy::read(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn row(array: &npy::Array, i: usize) -> &[f32] {
    let len = array.shape[1];
    &array.data[i * len..][..len]
}

#[test]
fn adam_with_step_lr_matches_pytorch_over_three_steps() {
    let (params, grads) = (fixture("adam_params.npy"), fixture("adam_grads.npy"));
    let (exp_avgs, exp_avg_sqs) = (fixture("adam_exp_avg.npy"), fixture("adam_exp_avg_sq.npy"));
    let config = AdamConfig::default();
    let mut scheduler = StepLr::new(config.lr, 2, 0.5);
    let mut param = row(&params, 0).to_vec();
    let mut exp_avg = vec![0.0; param.len()];
    let mut exp_avg_sq = vec![0.0; param.len()];
    for step in 1..=3u64 {
        let lr = scheduler.lr();
        adam_update(
            &mut param,
            row(&grads, step as usize - 1),
            &mut exp_avg,
            &mut exp_avg_sq,
            step,
            lr,
            &config,
        );
        scheduler.step();
        let i = step as usize - 1;
        // The same float32 operations in PyTorch's order, fused where its CPU kernels fuse: the
        // fixture is reproduced bit for bit.
        assert_close(
            &format!("step {step} exp_avg"),
            &exp_avg,
            row(&exp_avgs, i),
            0.0,
        );
        assert_close(
            &format!("step {step} exp_avg_sq"),
            &exp_avg_sq,
            row(&exp_avg_sqs, i),
            0.0,
        );
        assert_close(
            &format!("step {step} param"),
            &param,
            row(&params, step as usize),
            0.0,
        );
    }
    assert_eq!(scheduler.lr(), 0.005);
}

#[test]
fn step_lr_decays_by_gamma_every_step_size_steps() {
    let mut scheduler = StepLr::protocol(0.01);
    for _ in 0..9_999 {
        scheduler.step();
    }
    assert_eq!(scheduler.lr(), 0.01);
    scheduler.step();
    assert_eq!(scheduler.lr(), 0.01 * 0.98);
    for _ in 0..20_000 {
        scheduler.step();
    }
    // PyTorch multiplies the current rate each time (not 0.01·0.98³ in one go).
    assert_eq!(scheduler.lr(), 0.01 * 0.98 * 0.98 * 0.98);
    assert_eq!(scheduler.last_epoch, 30_000);
}

#[test]
fn adam_kernel_matches_cpu_over_three_steps_of_an_arena() {
    use mtosi::device::equivalence::Equivalence;
    use mtosi::device::Device;
    use mtosi::train::adam::adam_update_launch;
    let config = AdamConfig::default();
    // StepLR halving after two steps, as the fixture test.
    let lrs = [0.01, 0.01, 0.005];
    Equivalence::new("adam_update")
        // The CPU's float32 operations, fused where it fuses, IEEE sqrt and division: exact.
        .tolerance(0.0)
        .run(
            &[1usize, 33, 257, 4099, 20_011],
            |&n, rng| {
                let params = rng.vec_f32(n, -1.0, 1.0);
                let grads: Vec<Vec<f32>> = (0..3).map(|_| rng.vec_f32(n, -0.1, 0.1)).collect();
                (params, grads)
            },
            |device, (params, grads)| {
                let n = params.len();
                match device {
                    Device::Cpu => {
                        let mut p = params.clone();
                        let (mut m, mut v) = (vec![0.0; n], vec![0.0; n]);
                        for (step, (g, &lr)) in grads.iter().zip(&lrs).enumerate() {
                            adam_update(&mut p, g, &mut m, &mut v, step as u64 + 1, lr, &config);
                        }
                        Ok([p, m, v].concat())
                    }
                    Device::Kernels(k) => {
                        let mut p = k.upload(params)?;
                        let zeros = vec![0.0f32; n];
                        let (mut m, mut v) = (k.upload(&zeros)?, k.upload(&zeros)?);
                        for (step, (g, &lr)) in grads.iter().zip(&lrs).enumerate() {
                            let g = k.upload(g)?;
                            adam_update_launch(
                                k,
                                &mut p,
                                &g,
                                &mut m,
                                &mut v,
                                step as u64 + 1,
                                lr,
                                &config,
                            )?;
                        }
                        Ok([k.download(&p)?, k.download(&m)?, k.download(&v)?].concat())
                    }
                }
            },
        );
}

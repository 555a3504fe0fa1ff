//! StepLR, as `torch.optim.lr_scheduler.StepLR`: the learning rate is multiplied by `gamma`
//! every `step_size` scheduler steps (the protocol steps it once per batch: ×0.98 per 10 000).

/// The protocol's decay period, in optimizer steps.
pub const STEP_LR_STEP_SIZE: u64 = 10_000;
/// The protocol's decay factor.
pub const STEP_LR_GAMMA: f64 = 0.98;

/// The scheduler's whole state, which a checkpoint saves (PyTorch's `last_epoch` and `_last_lr`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepLr {
    pub step_size: u64,
    pub gamma: f64,
    /// Scheduler steps taken so far (PyTorch's `last_epoch`, 0 after construction).
    pub last_epoch: u64,
    /// The current learning rate.
    pub lr: f64,
}

impl StepLr {
    pub fn new(base_lr: f64, step_size: u64, gamma: f64) -> Self {
        assert!(step_size > 0, "step_lr: step_size must be positive");
        Self {
            step_size,
            gamma,
            last_epoch: 0,
            lr: base_lr,
        }
    }

    /// The protocol's schedule: `base_lr` × 0.98 every 10 000 steps.
    pub fn protocol(base_lr: f64) -> Self {
        Self::new(base_lr, STEP_LR_STEP_SIZE, STEP_LR_GAMMA)
    }

    /// One scheduler step, after the optimizer's. PyTorch multiplies the current rate by gamma
    /// (it does not recompute `base_lr·gamma^k`), so rounding follows the same path.
    pub fn step(&mut self) {
        self.last_epoch += 1;
        if self.last_epoch.is_multiple_of(self.step_size) {
            self.lr *= self.gamma;
        }
    }

    /// The learning rate the next optimizer step uses.
    pub fn lr(&self) -> f64 {
        self.lr
    }
}

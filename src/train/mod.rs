//! Training: optimizer, learning-rate schedule, crop sampler, examples and their loader, the
//! loop with its checkpoints and resume, transfer, the run's plots.

pub mod adam;
pub mod examples;
pub mod plots;
pub mod run;
pub mod sampler;
pub mod step_lr;
pub mod transfer;

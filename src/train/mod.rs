//! Training: optimizer, learning-rate schedule, crop sampler, the loop, resume.

pub mod adam;
pub mod step_lr;

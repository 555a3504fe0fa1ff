//! Training: optimizer, learning-rate schedule, crop sampler, the loop, resume.

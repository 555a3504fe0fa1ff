//! One op per file: the CPU reference and the launcher of the CUDA kernel of the same name in `kernels/`.

pub mod axpy;
pub mod cqt;
pub mod reduce;

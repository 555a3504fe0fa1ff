//! Where compute runs: `cpu` (plain-Rust reference), `emu` (the CUDA kernels emulated on the CPU)
//! or `cuda` (the kernels on a GPU). The only module that knows about CUDA.

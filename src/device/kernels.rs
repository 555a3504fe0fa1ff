//! The kernels compiled by the build script (build/main.rs): one table entry per `extern "C" __global__` function of
//! `kernels/*.cu`, with its parameters, its emu entry point and its NVRTC images.

use std::ffi::c_void;

/// A kernel parameter's scalar type (or a pointer's element type), as written in the `.cu` file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scalar {
    /// `int`
    I32,
    /// `unsigned`
    U32,
    /// `long long`
    I64,
    /// `unsigned long long`, `size_t`
    U64,
    /// `float`
    F32,
    /// `double`
    F64,
    /// `unsigned char`
    U8,
}

impl Scalar {
    pub fn c_name(self) -> &'static str {
        match self {
            Scalar::I32 => "int",
            Scalar::U32 => "unsigned",
            Scalar::I64 => "long long",
            Scalar::U64 => "unsigned long long",
            Scalar::F32 => "float",
            Scalar::F64 => "double",
            Scalar::U8 => "unsigned char",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamKind {
    Scalar(Scalar),
    /// `writes` is false for `const T*`: such a parameter accepts a shared `&DeviceBuffer`.
    Pointer {
        element: Scalar,
        writes: bool,
    },
}

#[derive(Debug)]
pub struct Param {
    pub name: &'static str,
    pub kind: ParamKind,
}

/// The NVRTC output for one kernel file: CUBINs by architecture (80 = sm_80) and PTX.
#[derive(Debug)]
pub struct ModuleImages {
    pub cubins: &'static [(u32, &'static [u8])],
    /// (architecture, NUL-terminated PTX text)
    pub ptx: Option<(u32, &'static [u8])>,
}

/// The emu entry point generated for a kernel: calls it with CUDA-style `void** args`.
pub type EmuEntry = unsafe extern "C" fn(args: *mut *mut c_void);

#[derive(Debug)]
pub struct Kernel {
    pub name: &'static str,
    /// Path of the `.cu` file relative to the crate root.
    pub source: &'static str,
    pub line: u32,
    pub params: &'static [Param],
    pub emu_entry: EmuEntry,
    pub images: &'static ModuleImages,
}

/// How the build script fared with NVRTC.
#[derive(Debug)]
pub enum NvrtcReport {
    Compiled {
        version: &'static str,
        library: &'static str,
    },
    NotFound(&'static str),
}

include!(concat!(env!("OUT_DIR"), "/kernels.rs"));
include!(concat!(env!("OUT_DIR"), "/nvrtc_report.rs"));

/// The compiled kernel of this name.
pub fn find_kernel(name: &str) -> Option<&'static Kernel> {
    KERNELS.iter().find(|k| k.name == name)
}

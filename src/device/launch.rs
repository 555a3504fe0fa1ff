//! What a launch takes: a grid, and arguments checked against the kernel's parameter list.

use super::buffer::{DeviceBuffer, DeviceMemory, Element};
use super::kernels::{Kernel, ParamKind, Scalar};
use super::DeviceError;

/// Grid and block dimensions and dynamic shared memory, as in CUDA's `<<<grid, block, shared>>>`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LaunchConfig {
    pub grid: [u32; 3],
    pub block: [u32; 3],
    /// Bytes of `dynamic_shared<T>()` (kernels/common.cuh); at most 48 KiB.
    pub shared_mem_bytes: u32,
}

impl LaunchConfig {
    /// A 1-D launch of `threads_per_block`-thread blocks covering `elements` (one thread each).
    pub fn for_elements(elements: usize, threads_per_block: u32) -> LaunchConfig {
        let blocks = elements.div_ceil(threads_per_block as usize).max(1);
        LaunchConfig {
            grid: [blocks as u32, 1, 1],
            block: [threads_per_block, 1, 1],
            shared_mem_bytes: 0,
        }
    }

    /// `blocks` 1-D blocks of `threads_per_block` threads.
    pub fn blocks(blocks: u32, threads_per_block: u32) -> LaunchConfig {
        LaunchConfig {
            grid: [blocks, 1, 1],
            block: [threads_per_block, 1, 1],
            shared_mem_bytes: 0,
        }
    }

    pub fn with_shared_mem_bytes(self, shared_mem_bytes: u32) -> LaunchConfig {
        LaunchConfig {
            shared_mem_bytes,
            ..self
        }
    }
}

/// The order in which the emu device runs the threads of a block (and the blocks of a grid).
/// A kernel that misses a `__syncthreads()` gives a wrong result in at least one of the two.
/// It also picks which side of each emu buffer lies against an inaccessible page: the end in
/// forward order, the start in reverse, so that the two runs catch reads off either side.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThreadOrder {
    Forward,
    Reverse,
}

/// One kernel argument: a scalar by value or a buffer (`&buffer` for `const T*` parameters,
/// `&mut buffer` for parameters the kernel writes). Built with `.into()`:
/// `device.launch("axpy", config, &[n.into(), a.into(), (&x).into(), (&mut out).into()])`.
pub enum KernelArg<'a> {
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    U8(u8),
    F32(f32),
    F64(f64),
    Buffer(BufferArg<'a>),
}

pub struct BufferArg<'a> {
    pub(crate) element: Scalar,
    pub(crate) writable: bool,
    pub(crate) len: usize,
    pub(crate) storage: &'a DeviceMemory,
}

macro_rules! scalar_arg {
    ($t:ty, $variant:ident) => {
        impl From<$t> for KernelArg<'_> {
            fn from(value: $t) -> Self {
                KernelArg::$variant(value)
            }
        }
    };
}
scalar_arg!(i32, I32);
scalar_arg!(u32, U32);
scalar_arg!(i64, I64);
scalar_arg!(u64, U64);
scalar_arg!(u8, U8);
scalar_arg!(f32, F32);
scalar_arg!(f64, F64);

impl<'a, T: Element> From<&'a DeviceBuffer<T>> for KernelArg<'a> {
    fn from(buffer: &'a DeviceBuffer<T>) -> Self {
        KernelArg::Buffer(BufferArg {
            element: T::SCALAR,
            writable: false,
            len: buffer.len,
            storage: &buffer.storage,
        })
    }
}

impl<'a, T: Element> From<&'a mut DeviceBuffer<T>> for KernelArg<'a> {
    fn from(buffer: &'a mut DeviceBuffer<T>) -> Self {
        KernelArg::Buffer(BufferArg {
            element: T::SCALAR,
            writable: true,
            len: buffer.len,
            storage: &buffer.storage,
        })
    }
}

impl KernelArg<'_> {
    fn describe(&self) -> String {
        match self {
            KernelArg::I32(_) => "int".into(),
            KernelArg::U32(_) => "unsigned".into(),
            KernelArg::I64(_) => "long long".into(),
            KernelArg::U64(_) => "unsigned long long".into(),
            KernelArg::U8(_) => "unsigned char".into(),
            KernelArg::F32(_) => "float".into(),
            KernelArg::F64(_) => "double".into(),
            KernelArg::Buffer(b) => {
                format!(
                    "{}buffer of {}",
                    if b.writable { "&mut " } else { "&" },
                    b.element.c_name()
                )
            }
        }
    }

    /// The value as 8 little-endian bytes, for the `void** args` array (pointers added by the
    /// device).
    pub(crate) fn scalar_bytes(&self) -> Option<[u8; 8]> {
        let mut bytes = [0u8; 8];
        match *self {
            KernelArg::I32(v) => bytes[..4].copy_from_slice(&v.to_ne_bytes()),
            KernelArg::U32(v) => bytes[..4].copy_from_slice(&v.to_ne_bytes()),
            KernelArg::I64(v) => bytes.copy_from_slice(&v.to_ne_bytes()),
            KernelArg::U64(v) => bytes.copy_from_slice(&v.to_ne_bytes()),
            KernelArg::U8(v) => bytes[0] = v,
            KernelArg::F32(v) => bytes[..4].copy_from_slice(&v.to_ne_bytes()),
            KernelArg::F64(v) => bytes.copy_from_slice(&v.to_ne_bytes()),
            KernelArg::Buffer(_) => return None,
        }
        Some(bytes)
    }
}

/// Checks count and types of `args` against `kernel`'s parameters, and the launch shape.
pub(crate) fn check_launch(
    kernel: &Kernel,
    config: &LaunchConfig,
    args: &[KernelArg],
) -> Result<(), DeviceError> {
    let bad = |message: String| DeviceError::Arguments {
        kernel: kernel.name,
        source_file: kernel.source,
        message,
    };
    if args.len() != kernel.params.len() {
        return Err(bad(format!(
            "takes {} arguments, {} given",
            kernel.params.len(),
            args.len()
        )));
    }
    for (index, (param, arg)) in kernel.params.iter().zip(args).enumerate() {
        let ok = match (param.kind, arg) {
            (ParamKind::Scalar(Scalar::I32), KernelArg::I32(_))
            | (ParamKind::Scalar(Scalar::U32), KernelArg::U32(_))
            | (ParamKind::Scalar(Scalar::I64), KernelArg::I64(_))
            | (ParamKind::Scalar(Scalar::U64), KernelArg::U64(_))
            | (ParamKind::Scalar(Scalar::U8), KernelArg::U8(_))
            | (ParamKind::Scalar(Scalar::F32), KernelArg::F32(_))
            | (ParamKind::Scalar(Scalar::F64), KernelArg::F64(_)) => true,
            (ParamKind::Pointer { element, writes }, KernelArg::Buffer(b)) => {
                if writes && !b.writable {
                    return Err(bad(format!(
                        "parameter {index} `{}` is written by the kernel: pass the buffer as &mut",
                        param.name
                    )));
                }
                element == b.element
            }
            _ => false,
        };
        if !ok {
            let expected = match param.kind {
                ParamKind::Scalar(s) => s.c_name().to_string(),
                ParamKind::Pointer { element, writes } => {
                    format!(
                        "{}{}*",
                        if writes { "" } else { "const " },
                        element.c_name()
                    )
                }
            };
            return Err(bad(format!(
                "parameter {index} `{}` is `{expected}`, given {}",
                param.name,
                arg.describe()
            )));
        }
    }
    let threads: u64 = config.block.iter().map(|&d| d as u64).product();
    if config.grid.contains(&0) || config.block.contains(&0) {
        return Err(bad(format!(
            "grid {:?} and block {:?} must be at least 1 in every dimension",
            config.grid, config.block
        )));
    }
    if threads > 1024 {
        return Err(bad(format!(
            "a block of {threads} threads exceeds CUDA's limit of 1024"
        )));
    }
    if config.shared_mem_bytes > 48 * 1024 {
        return Err(bad(format!(
            "{} bytes of dynamic shared memory exceed 48 KiB",
            config.shared_mem_bytes
        )));
    }
    Ok(())
}

//! Intel AMX (Advanced Matrix Extensions, Sapphire Rapids and later): the tile registers and
//! `tdpbf16ps`, for the bf16 products of `--precision bf16`. One `tdpbf16ps` multiplies a 16 × 32
//! bf16 tile by a 32 × 16 one into 16 × 16 float32 sums: 16 384 flops, against 64 for one
//! AVX-512 `vdpbf16ps`. Its operands are the pair words the AVX512-BF16 kernels already use (a
//! row of the right-hand tile holds 16 pairs (b[2j][n], b[2j + 1][n])), so the AMX kernels read
//! the same packed strips.
//!
//! Linux hands out the tile state only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM,
//! XFEATURE_XTILEDATA)`), once per process; [`available`] asks. Each thread loads its tile
//! configuration ([`TileConfig::load`]) before using tiles and releases them afterwards
//! ([`release`]), so that no thread carries 8 KiB of tile state through context switches.
//!
//! Rust has no stable AMX intrinsics; the instructions are inline assembly, which the compiler
//! passes through without needing a target feature. Tile register numbers are part of the
//! instruction, hence the macros.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

/// Environment variable that keeps the AMX kernels off (`0`) on a CPU that has them, so that
/// the AVX512-BF16 kernels run instead (for comparisons and their tests).
pub const AMX_VAR: &str = "MTOSI_AMX";

/// Cleared by [`set_allowed`]`(false)`.
static ALLOWED: AtomicBool = AtomicBool::new(true);

/// Allows (the default) or forbids the AMX kernels for the whole process; forbidden, the
/// AVX512-BF16 kernels run (the tests check both kinds on an AMX CPU this way).
pub fn set_allowed(allowed: bool) {
    ALLOWED.store(allowed, Ordering::Relaxed);
}

/// Whether the AMX bf16 kernels may run: the CPU has AMX-TILE and AMX-BF16, the AVX512-BF16
/// kernels are allowed (the AMX ones share their packing), the kernel granted the tile state,
/// and neither `MTOSI_AMX=0` nor [`set_allowed`] forbids them. The CPU and kernel checks run
/// once per process.
pub fn available() -> bool {
    static GRANTED: OnceLock<bool> = OnceLock::new();
    ALLOWED.load(Ordering::Relaxed)
        && std::env::var(AMX_VAR).map_or(true, |v| v != "0")
        && super::conv2d::bf16_supported()
        && *GRANTED.get_or_init(request_tile_state)
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
fn request_tile_state() -> bool {
    // CPUID leaf 7, sub-leaf 0: EDX bit 22 = AMX-BF16, bit 24 = AMX-TILE.
    // CPUID leaf 7 exists on every CPU with AVX-512 (the caller checks that first).
    let edx = std::arch::x86_64::__cpuid_count(7, 0).edx;
    if edx & (1 << 22) == 0 || edx & (1 << 24) == 0 {
        return false;
    }
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    const SYS_ARCH_PRCTL: i64 = 158;
    let ret: i64;
    // SAFETY: the arch_prctl system call with a request code and an integer argument; it
    // touches no memory of ours. rcx and r11 are clobbered by `syscall`.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack)
        );
    }
    ret == 0
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
fn request_tile_state() -> bool {
    false
}

/// A palette-1 tile configuration: per tile register its rows and bytes per row (at most 16 and
/// 64); unset registers stay unused.
#[repr(C, align(64))]
pub struct TileConfig([u8; 64]);

impl Default for TileConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl TileConfig {
    pub const fn new() -> Self {
        let mut bytes = [0u8; 64];
        bytes[0] = 1;
        Self(bytes)
    }

    /// Tile `t` (0..8) holds `rows` rows of `bytes` bytes.
    pub fn tile(mut self, t: usize, rows: usize, bytes: usize) -> Self {
        assert!(
            t < 8
                && (1..=16).contains(&rows)
                && (4..=64).contains(&bytes)
                && bytes.is_multiple_of(4)
        );
        self.0[16 + 2 * t] = bytes as u8;
        self.0[48 + t] = rows as u8;
        self
    }

    /// Loads this configuration into the calling thread's tile registers (zeroing them).
    ///
    /// # Safety
    /// [`available`] must have returned true.
    #[cfg(target_arch = "x86_64")]
    #[inline]
    pub unsafe fn load(&self) {
        std::arch::asm!("ldtilecfg [{}]", in(reg) self.0.as_ptr(), options(nostack, readonly));
    }
}

/// Returns the calling thread's tiles to their initial state.
///
/// # Safety
/// [`available`] must have returned true.
#[cfg(target_arch = "x86_64")]
#[inline]
pub unsafe fn release() {
    std::arch::asm!("tilerelease", options(nostack, nomem));
}

/// `tileloadd tmmT, [ptr + stride]`: tile T's configured rows, `stride` bytes apart, from `ptr`.
macro_rules! tile_load {
    ($t:literal, $ptr:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tileloadd tmm", $t, ", [{p} + {s}*1]"),
            p = in(reg) $ptr,
            s = in(reg) $stride,
            options(nostack, readonly)
        )
    };
}

/// `tilestored [ptr + stride], tmmT`.
macro_rules! tile_store {
    ($t:literal, $ptr:expr, $stride:expr) => {
        std::arch::asm!(
            concat!("tilestored [{p} + {s}*1], tmm", $t),
            p = in(reg) $ptr,
            s = in(reg) $stride,
            options(nostack)
        )
    };
}

/// `tilezero tmmT`.
macro_rules! tile_zero {
    ($t:literal) => {
        std::arch::asm!(concat!("tilezero tmm", $t), options(nostack, nomem))
    };
}

/// `tdpbf16ps tmmC, tmmA, tmmB`: C (float32) += A · B over bf16 pairs.
macro_rules! tile_dpbf16 {
    ($c:literal, $a:literal, $b:literal) => {
        std::arch::asm!(
            concat!("tdpbf16ps tmm", $c, ", tmm", $a, ", tmm", $b),
            options(nostack, nomem)
        )
    };
}

pub(crate) use {tile_dpbf16, tile_load, tile_store, tile_zero};

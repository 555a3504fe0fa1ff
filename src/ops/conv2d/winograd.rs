//! Winograd F(2×2, 3×3) forward for 3×3 stride-1 pad-1 convolutions with more than 16 channels
//! on each side: the U-net's middle and deep 3×3 layers and, through the adjoint, their data
//! gradients and the decoder's transposed convolutions. Opt-in (`MTOSI_CONV_WINOGRAD=1`).
//!
//! Each 2×2 output tile is `Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A` of its 4×4 input patch d (Lavin & Gray
//! 2016): 16 multiplies per tile and channel pair instead of 36, so the 3×3 layers do 2.25×
//! fewer multiply-adds. The elementwise products over input channels become 16 GEMMs
//! (c_out × c_in by c_in × tiles) per strip of tile rows, each task on its own thread, in
//! register-blocked AVX-512 / AVX2 kernels (the `gemm` crate at its small sizes reached half of
//! the machine's FMA rate); the input and output transforms are adds over contiguous rows of
//! tiles (even and odd columns split first).
//!
//! Tolerance: the transforms add and subtract up to 16 inputs with coefficients ±1 and ±½, so
//! the result differs from the direct sum by rounding only, a few float32 ulps of the sum of
//! the absolute terms: `tests/conv2d_winograd.rs` holds it within 1e-5 of the output's largest
//! magnitude (the direct kernels: 1e-6).
// Register blocks are arrays indexed by loop counters that the compiler unrolls.
#![allow(clippy::needless_range_loop)]

use std::cell::RefCell;

use rayon::prelude::*;

use super::direct::{detect_isa, Isa};
use super::im2col::{deinterleave, multiversion};
use super::{ConvGeometry, OutputStart};
use crate::ops::matmul::{matmul, MatRef, Threads};
use crate::ops::SharedOut;

/// Environment variable that turns this path on (`1`); off by default.
pub const WINOGRAD_VAR: &str = "MTOSI_CONV_WINOGRAD";
/// Up to this many channels on either side the GEMMs are too thin to pay for the transforms
/// (16 → 16 at full resolution: 1.6× slower than the direct kernel, `cargo bench --bench conv2d`).
const MAX_THIN_CHANNELS: usize = 16;
/// Transformed inputs and products of one strip: at most 1 MiB, so that they stay in L2.
const STRIP_FLOATS: usize = 1 << 18;

/// Whether this path computes the forward of `g`: 3×3, stride 1, padding 1, more than 16 input
/// and output channels, and turned on.
pub(crate) fn applies(g: &ConvGeometry) -> bool {
    g.k == 3
        && g.stride == 1
        && g.pad == 1
        && g.c_in > MAX_THIN_CHANNELS
        && g.c_out > MAX_THIN_CHANNELS
        && std::env::var(WINOGRAD_VAR).is_ok_and(|v| v == "1")
}

/// `U = G g Gᵀ` of every (output, input) channel pair, as 16 row-major c_out × c_in matrices.
fn transform_weights(weight: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let pairs = c_out * c_in;
    let mut u = vec![0.0; 16 * pairs];
    for (pair, g) in weight.chunks_exact(9).enumerate() {
        let mut t = [[0.0f32; 3]; 4];
        for c in 0..3 {
            let (g0, g1, g2) = (g[c], g[3 + c], g[6 + c]);
            t[0][c] = g0;
            t[1][c] = 0.5 * (g0 + g1 + g2);
            t[2][c] = 0.5 * (g0 - g1 + g2);
            t[3][c] = g2;
        }
        for (a, &[t0, t1, t2]) in t.iter().enumerate() {
            let row = [t0, 0.5 * (t0 + t1 + t2), 0.5 * (t0 - t1 + t2), t2];
            for (b, value) in row.into_iter().enumerate() {
                u[(a * 4 + b) * pairs + pair] = value;
            }
        }
    }
    u
}

thread_local! {
    /// Per-thread scratch for a strip's transformed inputs, products and row buffers.
    static SCRATCH: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// `U` packed for the micro-kernels: per ξ and block of 8 output channels, per input channel
/// the block's 8 values (zeros past c_out).
fn pack_transformed(u: &[f32], c_out: usize, c_in: usize) -> Vec<f32> {
    let blocks = c_out.div_ceil(CO_BLOCK);
    let mut packed = vec![0.0; 16 * blocks * c_in * CO_BLOCK];
    for xi in 0..16 {
        for co in 0..c_out {
            let (cb, lane) = (co / CO_BLOCK, co % CO_BLOCK);
            for ci in 0..c_in {
                packed[((xi * blocks + cb) * c_in + ci) * CO_BLOCK + lane] =
                    u[(xi * c_out + co) * c_in + ci];
            }
        }
    }
    packed
}

/// Output channels per packed weight block.
const CO_BLOCK: usize = 8;
/// The transforms run over whole vectors of this many tiles (the rows of tiles are 6–88 long,
/// shorter than the compiler's unrolled vector loops, which would leave them all scalar).
const LANES: usize = 16;
/// Tiles per register block: 3 AVX-512 vectors (AVX2 uses 3 of 8); rows of tiles in the
/// scratch are padded to a multiple of it.
const TILE_BLOCK: usize = 48;

/// Tile rows per strip: the strip's 16·(c_in + c_out)·tiles floats within STRIP_FLOATS, enough
/// strips that both threads stay busy on one sample, and of those the count whose tiles waste
/// the least of their padding to whole register blocks.
fn strip_rows(g: &ConvGeometry, n: usize) -> usize {
    let (tile_rows, tw) = (g.h.div_ceil(2), g.w.div_ceil(2));
    let by_cache = (STRIP_FLOATS / (16 * (g.c_in + g.c_out) * tw)).max(1);
    let by_tasks = tile_rows.div_ceil((4 * rayon::current_num_threads()).div_ceil(n));
    let most = by_cache.min(by_tasks).max(1);
    let waste = |rows: usize| {
        let tiles = rows * tw;
        (tiles.div_ceil(TILE_BLOCK) * TILE_BLOCK - tiles) as f64 / tiles as f64
    };
    (most.div_ceil(2)..=most)
        .min_by(|&a, &b| waste(a).total_cmp(&waste(b)).then(b.cmp(&a)))
        .unwrap_or(most)
}

pub(crate) fn forward(
    out: &mut [f32],
    inp: &[f32],
    weight: &[f32],
    start: OutputStart,
    n: usize,
    g: &ConvGeometry,
) {
    assert!(applies(g) && g.h_out == g.h && g.w_out == g.w);
    let (c_in, c_out, h, w) = (g.c_in, g.c_out, g.h, g.w);
    let isa = detect_isa();
    let u = transform_weights(weight, c_out, c_in);
    let packed = match isa {
        Isa::Portable => Vec::new(),
        #[cfg(target_arch = "x86_64")]
        _ => pack_transformed(&u, c_out, c_in),
    };
    let (tile_rows, tw) = (h.div_ceil(2), w.div_ceil(2));
    let strip_rows = strip_rows(g, n);
    let strips = tile_rows.div_ceil(strip_rows);
    // Each task writes only the output rows of its own (sample, strip).
    let shared = SharedOut(out.as_mut_ptr());
    let (in_len, out_len) = (c_in * h * w, c_out * h * w);
    assert!(inp.len() >= n * in_len && out.len() >= n * out_len);
    (0..n * strips).into_par_iter().for_each(|task| {
        // The whole wrapper, not its field: closures capture fields disjointly.
        let shared = &shared;
        let (b, strip) = (task / strips, task % strips);
        let rows = strip * strip_rows..((strip + 1) * strip_rows).min(tile_rows);
        let tiles = rows.len() * tw;
        // Each channel's row of tiles padded to whole register blocks, with room for the
        // transforms' last vector of LANES to run past it.
        let stride = (tiles + LANES).div_ceil(TILE_BLOCK) * TILE_BLOCK;
        let tw_lanes = tw.div_ceil(LANES) * LANES;
        let lens = [
            16 * c_in * stride,
            16 * c_out * stride,
            (4 * rows.len() + 12) * (tw_lanes + LANES),
            10 * tw_lanes,
        ];
        SCRATCH.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let total: usize = lens.iter().sum();
            if scratch.len() < total {
                scratch.resize(total, 0.0);
            }
            let (v, rest) = scratch.split_at_mut(lens[0]);
            let (m, rest) = rest.split_at_mut(lens[1]);
            let (rows_eo, rest) = rest.split_at_mut(lens[2]);
            let p = &mut rest[..lens[3]];
            let inp = &inp[b * in_len..][..in_len];
            transform_input_strip(v, stride, rows_eo, inp, g, rows.clone());
            let products = Products {
                v,
                stride,
                tiles,
                c_in,
                c_out,
            };
            match isa {
                // SAFETY: each variant runs only on a CPU with its features (detect_isa).
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => unsafe { products.multiply_avx512(m, &packed) },
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => unsafe { products.multiply_avx2(m, &packed) },
                Isa::Portable => products.multiply_gemm(m, &u),
            }
            for co in 0..c_out {
                let (bias, accumulate) = match start {
                    OutputStart::Bias(bias) => (bias.map_or(0.0, |bias| bias[co]), false),
                    OutputStart::Accumulate => (0.0, true),
                };
                for (local, i) in rows.clone().enumerate() {
                    let row_at = |y: usize| {
                        // SAFETY: output row y of channel co of sample b lies in this task's
                        // strip (tile row i covers rows 2i and 2i + 1), which no other task
                        // writes, and within `out` (checked above).
                        unsafe {
                            std::slice::from_raw_parts_mut(
                                shared.0.add(b * out_len + (co * h + y) * w),
                                w,
                            )
                        }
                    };
                    let second = (2 * i + 1 < h).then(|| row_at(2 * i + 1));
                    transform_output_row(
                        &m[co * stride + local * tw..],
                        c_out * stride,
                        tw,
                        bias,
                        accumulate,
                        p,
                        row_at(2 * i),
                        second,
                    );
                }
            }
        });
    });
}

/// The 16 products `M_ξ = U_ξ · V_ξ` of one strip: `V_ξ` is c_in rows of `tiles` values
/// `stride` apart at `v[(ξ·c_in + ci)·stride]`, `M_ξ` likewise c_out rows.
struct Products<'a> {
    v: &'a [f32],
    stride: usize,
    tiles: usize,
    c_in: usize,
    c_out: usize,
}

impl Products<'_> {
    /// Through the `gemm` crate (CPUs without AVX2).
    fn multiply_gemm(&self, m: &mut [f32], u: &[f32]) {
        let (c_in, c_out, stride) = (self.c_in, self.c_out, self.stride);
        let pairs = c_out * c_in;
        for xi in 0..16 {
            let v = MatRef {
                data: &self.v[xi * c_in * stride..][..c_in * stride],
                rows: c_in,
                cols: self.tiles,
                row_stride: stride,
                col_stride: 1,
            };
            matmul(
                &mut m[xi * c_out * stride..][..c_out * stride],
                stride,
                MatRef::row_major(&u[xi * pairs..][..pairs], c_out, c_in),
                v,
                false,
                Threads::Single,
            );
        }
    }

    /// AVX-512: 8 output channels × 3 vectors of 16 tiles = 24 accumulators, one broadcast
    /// weight and 3 loads per 24 fused multiply-adds (as `implicit`'s kernel, with the input
    /// channels as its taps).
    ///
    /// # Safety
    /// AVX-512F must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f")]
    unsafe fn multiply_avx512(&self, m: &mut [f32], packed: &[f32]) {
        use std::arch::x86_64::*;
        const V: usize = 3;
        const L: usize = 16;
        let (c_in, c_out, stride) = (self.c_in, self.c_out, self.stride);
        let blocks = c_out.div_ceil(CO_BLOCK);
        assert!(m.len() >= 16 * c_out * stride && self.v.len() >= 16 * c_in * stride);
        assert!(packed.len() >= 16 * blocks * c_in * CO_BLOCK);
        for xi in 0..16 {
            let v = self.v.as_ptr().add(xi * c_in * stride);
            let out = m.as_mut_ptr().add(xi * c_out * stride);
            for cb in 0..blocks {
                let weights = packed.as_ptr().add((xi * blocks + cb) * c_in * CO_BLOCK);
                let co_count = CO_BLOCK.min(c_out - cb * CO_BLOCK);
                for t0 in (0..self.tiles).step_by(V * L) {
                    let mut acc = [[_mm512_setzero_ps(); V]; CO_BLOCK];
                    for ci in 0..c_in {
                        let src = v.add(ci * stride + t0);
                        let x = [
                            _mm512_loadu_ps(src),
                            _mm512_loadu_ps(src.add(L)),
                            _mm512_loadu_ps(src.add(2 * L)),
                        ];
                        let w = weights.add(ci * CO_BLOCK);
                        for co in 0..CO_BLOCK {
                            let wv = _mm512_set1_ps(*w.add(co));
                            for j in 0..V {
                                acc[co][j] = _mm512_fmadd_ps(wv, x[j], acc[co][j]);
                            }
                        }
                    }
                    // Rows are `stride` long, a multiple of V·L: whole blocks fit.
                    for co in 0..co_count {
                        let dst = out.add((cb * CO_BLOCK + co) * stride + t0);
                        for j in 0..V {
                            _mm512_storeu_ps(dst.add(j * L), acc[co][j]);
                        }
                    }
                }
            }
        }
    }

    /// AVX2: 4 output channels (half a packed block) × 3 vectors of 8 tiles = 12 accumulators.
    ///
    /// # Safety
    /// AVX2 and FMA must be available.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn multiply_avx2(&self, m: &mut [f32], packed: &[f32]) {
        use std::arch::x86_64::*;
        const V: usize = 3;
        const L: usize = 8;
        const CO: usize = 4;
        let (c_in, c_out, stride) = (self.c_in, self.c_out, self.stride);
        let blocks = c_out.div_ceil(CO_BLOCK);
        assert!(m.len() >= 16 * c_out * stride && self.v.len() >= 16 * c_in * stride);
        assert!(packed.len() >= 16 * blocks * c_in * CO_BLOCK);
        for xi in 0..16 {
            let v = self.v.as_ptr().add(xi * c_in * stride);
            let out = m.as_mut_ptr().add(xi * c_out * stride);
            for cb in 0..blocks {
                let weights = packed.as_ptr().add((xi * blocks + cb) * c_in * CO_BLOCK);
                for half in 0..CO_BLOCK / CO {
                    let co0 = cb * CO_BLOCK + half * CO;
                    if co0 >= c_out {
                        break;
                    }
                    let co_count = CO.min(c_out - co0);
                    // A stride is a multiple of 48 = 2 · V·L: whole blocks fit here too.
                    for t0 in (0..self.tiles).step_by(V * L) {
                        let mut acc = [[_mm256_setzero_ps(); V]; CO];
                        for ci in 0..c_in {
                            let src = v.add(ci * stride + t0);
                            let x = [
                                _mm256_loadu_ps(src),
                                _mm256_loadu_ps(src.add(L)),
                                _mm256_loadu_ps(src.add(2 * L)),
                            ];
                            let w = weights.add(ci * CO_BLOCK + half * CO);
                            for co in 0..CO {
                                let wv = _mm256_set1_ps(*w.add(co));
                                for j in 0..V {
                                    acc[co][j] = _mm256_fmadd_ps(wv, x[j], acc[co][j]);
                                }
                            }
                        }
                        for co in 0..co_count {
                            let dst = out.add((co0 + co) * stride + t0);
                            for j in 0..V {
                                _mm256_storeu_ps(dst.add(j * L), acc[co][j]);
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `V = Bᵀ d B` of every tile of the strip and input channel, at `v[(ξ·c_in + ci)·stride + t]`.
fn transform_input_strip(
    v: &mut [f32],
    stride: usize,
    rows_eo: &mut [f32],
    inp: &[f32],
    g: &ConvGeometry,
    tile_rows: std::ops::Range<usize>,
) {
    let (h, w) = (g.h, g.w);
    let tw = w.div_ceil(2);
    let tw_lanes = tw.div_ceil(LANES) * LANES;
    let half = tw_lanes + LANES;
    let tiles = tile_rows.len() * tw;
    let plane = g.c_in * stride;
    // The strip's input rows 2·i0 − 1 ..= 2·i1, each split once into its even and odd padded
    // columns (padded column x + 1 holds input column x), zeros to `half`: row r at
    // rows_eo[2r·half], its odd columns after.
    let strip_rows = 2 * tile_rows.len() + 2;
    let (eo, combo) = rows_eo.split_at_mut(2 * strip_rows * half);
    for ci in 0..g.c_in {
        for (r, pair) in eo.chunks_exact_mut(2 * half).enumerate() {
            let (even, odd) = pair.split_at_mut(half);
            let y = (2 * tile_rows.start + r).checked_sub(1).filter(|&y| y < h);
            let Some(y) = y else {
                even.fill(0.0);
                odd.fill(0.0);
                continue;
            };
            let row = &inp[(ci * h + y) * w..][..w];
            // Padded columns 2j, 2j + 1 are input columns 2j − 1, 2j.
            even[0] = 0.0;
            odd[0] = row[0];
            let pairs = (w - 1) / 2;
            deinterleave(
                &row[1..1 + 2 * pairs],
                &mut even[1..1 + pairs],
                &mut odd[1..1 + pairs],
            );
            let mut next = 1 + pairs;
            if (w - 1) % 2 == 1 {
                even[next] = row[w - 1];
                odd[next] = 0.0;
                next += 1;
            }
            even[next..].fill(0.0);
            odd[next..].fill(0.0);
        }
        // Rows of tiles in order: each writes up to tw_lanes values, and what it writes past
        // its tw the next row overwrites (the last one's lands in the padding).
        for local in 0..tile_rows.len() {
            transform_input_row(
                &eo[2 * local * 2 * half..][..8 * half],
                combo,
                half,
                &mut v[ci * stride + local * tw..],
                plane,
            );
        }
    }
    // The padding past `tiles` of every row: zeros, which the micro-kernels multiply and whose
    // products nothing reads (no NaN or subnormal left from earlier use of the scratch).
    for row in v[..16 * plane].chunks_exact_mut(stride) {
        row[tiles..].fill(0.0);
    }
}

/// `dst[x] = f(a[x], b[x])` over whole vectors of LANES (the lengths are multiples of it).
#[inline(always)]
fn lanes2(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) {
    for ((d, a), b) in dst
        .chunks_exact_mut(LANES)
        .zip(a.chunks_exact(LANES))
        .zip(b.chunks_exact(LANES))
    {
        for k in 0..LANES {
            d[k] = f(a[k], b[k]);
        }
    }
}

/// `dst[x] = f(a[x], b[x], c[x])` over whole vectors of LANES.
#[inline(always)]
fn lanes3(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32) {
    let inputs = a
        .chunks_exact(LANES)
        .zip(b.chunks_exact(LANES))
        .zip(c.chunks_exact(LANES));
    for (d, ((a, b), c)) in dst.chunks_exact_mut(LANES).zip(inputs) {
        for k in 0..LANES {
            d[k] = f(a[k], b[k], c[k]);
        }
    }
}

multiversion! {
    /// One row of tiles of one channel. `eo`: the four padded input rows, each as its even then
    /// its odd columns (`half` = tw_lanes + LANES each); writes tile j < tw_lanes's ξ = 4a + b
    /// at `v[ξ·plane + j]`.
    fn transform_input_row(eo: &[f32], combo: &mut [f32], half: usize, v: &mut [f32], plane: usize) {
        let tw_lanes = half - LANES;
        let row = |parity: usize, r: usize| &eo[(2 * r + parity) * half..][..half];
        // Bᵀ on the rows (d0 − d2, d1 + d2, d2 − d1, d1 − d3), even columns then odd.
        for parity in 0..2 {
            let (d0, d1, d2, d3) = (row(parity, 0), row(parity, 1), row(parity, 2), row(parity, 3));
            let (s0, rest) = combo[4 * parity * half..].split_at_mut(half);
            let (s1, rest) = rest.split_at_mut(half);
            let (s2, s3) = rest.split_at_mut(half);
            lanes2(s0, d0, d2, |a, b| a - b);
            lanes2(s1, d1, d2, |a, b| a + b);
            lanes2(s2, d2, d1, |a, b| a - b);
            lanes2(&mut s3[..half], d1, d3, |a, b| a - b);
        }
        // B on the columns: tile j's columns are e[j], o[j], e[j + 1], o[j + 1].
        for a in 0..4 {
            let e = &combo[a * half..][..half];
            let o = &combo[(4 + a) * half..][..half];
            let (e0, e1, o0, o1) = (&e[..tw_lanes], &e[1..=tw_lanes], &o[..tw_lanes], &o[1..=tw_lanes]);
            let (v0, rest) = v[4 * a * plane..].split_at_mut(plane);
            let (v1, rest) = rest.split_at_mut(plane);
            let (v2, v3) = rest.split_at_mut(plane);
            lanes2(&mut v0[..tw_lanes], e0, e1, |a, b| a - b);
            lanes2(&mut v1[..tw_lanes], o0, e1, |a, b| a + b);
            lanes2(&mut v2[..tw_lanes], e1, o0, |a, b| a - b);
            lanes2(&mut v3[..tw_lanes], o0, o1, |a, b| a - b);
        }
    }
}

multiversion! {
    /// `Y = Aᵀ M A` of one row of tiles of one output channel (`m[ξ·plane + j]`, readable to
    /// j < tw rounded up to LANES), plus `bias`, written (or added, when `accumulate`) into
    /// output rows 2i and 2i + 1 (absent past h).
    fn transform_output_row(
        m: &[f32],
        plane: usize,
        tw: usize,
        bias: f32,
        accumulate: bool,
        p: &mut [f32],
        first: &mut [f32],
        second: Option<&mut [f32]>
    ) {
        let n = tw.div_ceil(LANES) * LANES;
        // Aᵀ on the rows: p0 = m0 + m1 + m2, p1 = m1 − m2 − m3, for each column b.
        let (p, y) = p.split_at_mut(8 * n);
        let (p0, p1) = p.split_at_mut(4 * n);
        for b in 0..4 {
            let at = |a: usize| &m[(a * 4 + b) * plane..][..n];
            let (m0, m1, m2, m3) = (at(0), at(1), at(2), at(3));
            lanes3(&mut p0[b * n..][..n], m0, m1, m2, |a, b, c| a + b + c);
            lanes3(&mut p1[b * n..][..n], m1, m2, m3, |a, b, c| a - b - c);
        }
        // A on the columns (even output column c0 + c1 + c2, odd c1 − c2 − c3), interleaved
        // into the output row; the last tile's odd column is cut when w is odd.
        let (y0, y1) = y.split_at_mut(n);
        let write = |q: &[f32], y0: &mut [f32], y1: &mut [f32], row: &mut [f32]| {
            let (c0, c1, c2, c3) = (&q[..n], &q[n..2 * n], &q[2 * n..3 * n], &q[3 * n..4 * n]);
            lanes3(y0, c0, c1, c2, |a, b, c| a + b + c + bias);
            lanes3(y1, c1, c2, c3, |a, b, c| a - b - c + bias);
            let pairs = row.len() / 2;
            let (whole, last) = row.split_at_mut(2 * pairs);
            if accumulate {
                for ((pair, &e), &o) in whole.chunks_exact_mut(2).zip(&*y0).zip(&*y1) {
                    pair[0] += e;
                    pair[1] += o;
                }
                if let Some(x) = last.first_mut() {
                    *x += y0[pairs];
                }
            } else {
                for ((pair, &e), &o) in whole.chunks_exact_mut(2).zip(&*y0).zip(&*y1) {
                    pair[0] = e;
                    pair[1] = o;
                }
                if let Some(x) = last.first_mut() {
                    *x = y0[pairs];
                }
            }
        };
        write(p0, y0, y1, first);
        if let Some(second) = second {
            write(p1, y0, y1, second);
        }
    }
}

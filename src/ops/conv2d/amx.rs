//! The bf16 forward's and weight gradient's AMX tile kernels (`--precision bf16` on CPUs with
//! AMX-BF16; `MTOSI_AMX=0` keeps the AVX512-BF16 kernels): the same implicit GEMMs over the same
//! strips as [`super::bf16`], 16 output channels × 16 flat pixels (the forward) or 16 taps × 16
//! output channels (the weight gradient) per `tdpbf16ps` instead of 16 lanes per `vdpbf16ps`,
//! which on the 2-core Xeon with AMX of BENCHMARKS.md runs at half the float32 FMA rate
//! (`tools/bench/fma_peak.c`: 94–100 against 198–201 GFLOP/s per core). The weight gradient's
//! kernel is after the forward's.
//!
//! The GEMM's inner dimension runs over groups of tap pairs whose strip rows lie a constant
//! stride apart, so that one `tileloadd` fetches a right-hand tile straight from the strip: for
//! stride 1 a group is one kernel position (kh, kw) and its pairs are the channel pairs j, one
//! pair plane apart; for the 2×2 downsampling all the tap pairs form one group, one plane
//! apart. The weights are packed to match: per tile of 16 output channels, per group, per block
//! of `kp` pairs, 16 rows of `kp` pair words (the left-hand tile).
//!
//! The register blocks: 2 channel tiles × 2 pixel tiles (4 sum tiles, 2 weight tiles, 2 strip
//! tiles: all 8 registers), or, for a lone last channel tile, 1 × 3. The sums go through a small
//! buffer to [`super::bf16::store_channel`], the AVX512-BF16 kernel's stores (bias, the finish,
//! accumulation), so both kernels write their outputs alike.
//!
//! Accuracy: `tdpbf16ps` adds the same bf16 products in float32 as `vdpbf16ps`, in another
//! order; `tests/conv2d_bf16.rs` holds both kernels to the same bound.

use super::bf16::{row_segments, store_channel};
use super::implicit::{Task, PX_BLOCK};
use super::ConvGeometry;
use crate::ops::amx::{self, tile_dpbf16, tile_load, tile_store, tile_zero, TileConfig};

/// Output channels per tile (its rows) and flat pixels per tile (its 16 float32 columns).
const TILE: usize = 16;
/// Pair words per row of the block's sum buffer: three pixel tiles.
const SUMS_ROW: usize = 3 * TILE;

/// The forward's weights as left-hand tiles, and the strip's groups they pair with.
pub(super) struct AmxWeights {
    words: Vec<u32>,
    /// Pairs per group, and per tile (a divisor of `pairs`, at most 16).
    pairs: usize,
    kp: usize,
    groups: usize,
}

/// Whether the AMX kernel takes the bf16 forward (the caller has checked `bf16::applies`).
pub(super) fn applies() -> bool {
    amx::available()
}

/// The largest count of at most 16 that divides `pairs`: a tile's rows of pairs.
fn pairs_per_tile(pairs: usize) -> usize {
    (1..=pairs.min(TILE))
        .rev()
        .find(|d| pairs.is_multiple_of(*d))
        .unwrap_or(1)
}

/// The groups of `g`'s tap pairs: per group the strip offset of its first pair (in words, with
/// rows `wp` wide); pair j of a group is `j` planes on.
pub(super) fn group_offsets(g: &ConvGeometry, wp: usize) -> Vec<usize> {
    if super::implicit::is_unshuffle(g) {
        return vec![0];
    }
    (0..g.k * g.k).map(|t| (t / g.k) * wp + t % g.k).collect()
}

/// The float32 taps (ci, kh, kw) that pair j of group `group` holds, the second absent past c_in.
fn pair_taps(g: &ConvGeometry, group: usize, j: usize) -> (usize, Option<usize>) {
    if super::implicit::is_unshuffle(g) {
        return (2 * j, Some(2 * j + 1));
    }
    let (kh, kw) = (group / g.k, group % g.k);
    let tap = |ci: usize| (ci * g.k + kh) * g.k + kw;
    (tap(2 * j), (2 * j + 1 < g.c_in).then(|| tap(2 * j + 1)))
}

impl AmxWeights {
    /// Packs `weight` (c_out, c_in, k, k): word (tile, group, block, row r, i) holds the pair
    /// (block·kp + i) of the group for output channel tile·16 + r, zero past c_out.
    pub(super) fn pack(weight: &[f32], g: &ConvGeometry) -> Self {
        let is_unshuffle = super::implicit::is_unshuffle(g);
        let (groups, pairs) = if is_unshuffle {
            (1, g.taps() / 2)
        } else {
            (g.k * g.k, g.c_in.div_ceil(2))
        };
        let kp = pairs_per_tile(pairs);
        let tiles = g.c_out.div_ceil(TILE);
        let mut words = vec![0u32; tiles * groups * pairs * TILE];
        for (i, word) in words.iter_mut().enumerate() {
            let (col, row) = (i % kp, (i / kp) % TILE);
            let rest = i / (kp * TILE);
            let (block, group, tile) = (
                rest % (pairs / kp),
                (rest / (pairs / kp)) % groups,
                rest / (pairs / kp * groups),
            );
            let co = tile * TILE + row;
            if co >= g.c_out {
                continue;
            }
            let (first, second) = pair_taps(g, group, block * kp + col);
            let w = &weight[co * g.taps()..][..g.taps()];
            *word = super::bf16_pair(w[first], second.map(|t| w[t]));
        }
        Self {
            words,
            pairs,
            kp,
            groups,
        }
    }
}

/// The block's sums, 64-byte aligned for the tile stores: 2 channel tiles × 3 pixel tiles.
#[repr(C, align(64))]
struct Sums([[f32; SUMS_ROW]; 2 * TILE]);

/// One forward task (all output channels of the task's rows) on the tiles.
///
/// # Safety
/// [`amx::available`] must hold (it implies AVX-512F and BF16); `job.strip` holds bf16 pairs as
/// [`super::bf16`]'s forward lays them out, with the slack its kernel relies on (48 words past
/// each plane's last pixel block start); `offsets` are [`group_offsets`] of the strip and
/// `weights` [`AmxWeights::pack`] of the same geometry; the forward's ownership rule holds.
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn task(job: &Task, offsets: &[usize], weights: &AmxWeights) {
    let g = job.g;
    let span = job.rows.len() * job.strip.wp;
    let strip = job.strip.data.as_ptr() as *const u32;
    let plane = job.strip.plane;
    let AmxWeights {
        pairs, kp, groups, ..
    } = *weights;
    debug_assert_eq!(offsets.len(), groups);
    let (blocks, tile_words) = (pairs / kp, TILE * kp);
    let tile_set = groups * blocks * tile_words;
    let accumulate = matches!(job.start, super::OutputStart::Accumulate)
        || job.finish.is_some_and(|f| f.residual());
    let mut sums = Sums([[0.0; SUMS_ROW]; 2 * TILE]);
    let mut segments = [(0, 0, 0); PX_BLOCK];
    let (plane_bytes, row_bytes, a_bytes) = (plane * 4, SUMS_ROW * 4, kp * 4);
    let out_tiles = g.c_out.div_ceil(TILE);
    // Two channel tiles × two pixel tiles: sums 0–3, weights 4–5, strip 6–7.
    let pair_config = TileConfig::new()
        .tile(0, TILE, 64)
        .tile(1, TILE, 64)
        .tile(2, TILE, 64)
        .tile(3, TILE, 64)
        .tile(4, TILE, a_bytes)
        .tile(5, TILE, a_bytes)
        .tile(6, kp, 64)
        .tile(7, kp, 64);
    // One channel tile × three pixel tiles: sums 0–2, weights 4, strip 5–7.
    let lone_config = TileConfig::new()
        .tile(0, TILE, 64)
        .tile(1, TILE, 64)
        .tile(2, TILE, 64)
        .tile(4, TILE, a_bytes)
        .tile(5, kp, 64)
        .tile(6, kp, 64)
        .tile(7, kp, 64);
    let mut tile = 0;
    while tile < out_tiles {
        let two = out_tiles - tile >= 2;
        let (step, channels) = if two {
            pair_config.load();
            (2 * TILE, 2 * TILE)
        } else {
            lone_config.load();
            (3 * TILE, TILE)
        };
        let w0 = weights.words.as_ptr().add(tile * tile_set);
        for p0 in (0..span).step_by(step) {
            if two {
                tile_zero!(0);
                tile_zero!(1);
                tile_zero!(2);
                tile_zero!(3);
            } else {
                tile_zero!(0);
                tile_zero!(1);
                tile_zero!(2);
            }
            for (group, &offset) in offsets.iter().enumerate() {
                let x = strip.add(offset + p0);
                let a = w0.add(group * blocks * tile_words);
                for block in 0..blocks {
                    let (x, a) = (x.add(block * kp * plane), a.add(block * tile_words));
                    if two {
                        tile_load!(6, x, plane_bytes);
                        tile_load!(7, x.add(TILE), plane_bytes);
                        tile_load!(4, a, a_bytes);
                        tile_load!(5, a.add(tile_set), a_bytes);
                        tile_dpbf16!(0, 4, 6);
                        tile_dpbf16!(1, 4, 7);
                        tile_dpbf16!(2, 5, 6);
                        tile_dpbf16!(3, 5, 7);
                    } else {
                        tile_load!(4, a, a_bytes);
                        tile_load!(5, x, plane_bytes);
                        tile_load!(6, x.add(TILE), plane_bytes);
                        tile_load!(7, x.add(2 * TILE), plane_bytes);
                        tile_dpbf16!(0, 4, 5);
                        tile_dpbf16!(1, 4, 6);
                        tile_dpbf16!(2, 4, 7);
                    }
                }
            }
            let s = sums.0.as_mut_ptr() as *mut f32;
            tile_store!(0, s, row_bytes);
            tile_store!(1, s.add(TILE), row_bytes);
            if two {
                tile_store!(2, s.add(TILE * SUMS_ROW), row_bytes);
                tile_store!(3, s.add(TILE * SUMS_ROW + TILE), row_bytes);
            } else {
                tile_store!(2, s.add(2 * TILE), row_bytes);
            }
            let count = row_segments(&mut segments, job, p0, (span - p0).min(step));
            for (r, row) in sums.0[..channels].iter().enumerate() {
                let channel = tile * TILE + r;
                if channel < g.c_out {
                    store_channel(
                        job,
                        channel,
                        row.as_ptr(),
                        Some(job.bias(channel)),
                        &segments[..count],
                        accumulate,
                    );
                }
            }
        }
        tile += if two { 2 } else { 1 };
    }
    amx::release();
}

// ---------------------------------------------------------------------------------------------
// The weight gradient on tiles: `d_weight[co, tap] = Σ_p d_out[co, p] · x[tap, p]`, as
// `bf16::backward_weight` sums it over the same bf16 strip and gradient rows. The GEMM's inner
// dimension is the task's flat pixels, in pairs (p, p + 1). The left-hand tile is 16 taps × 32
// pixels, each row straight from the strip at its tap's offset (any element offset: `tileloadd`
// needs no alignment), the rows of one tile a constant stride apart; the right-hand tile is 16
// pixel pairs × 16 output channels, the gradient rows transposed once per task
// ([`transpose_grad_pairs`]); the sums are 16 taps × 16 output channels.

/// The taps of one left-hand tile: `rows` taps `tap0 + r·tap_step`, whose strip rows start
/// `stride` elements apart from element `offset` of the bf16 strip.
#[derive(Clone, Copy, Debug)]
pub(super) struct TapTile {
    offset: usize,
    stride: usize,
    rows: usize,
    tap0: usize,
    tap_step: usize,
}

/// The left-hand tiles of a task whose strip planes are `plane` elements long with rows `wp`
/// wide, sorted by their row count (so that each count needs one tile configuration). Stride 1:
/// per kernel position (kh, kw) tiles of 16 input channels, one plane apart, or with fewer input
/// channels than kernel columns (the 1 → 16 layer) per (ci, kh) the k columns, one element
/// apart. The unshuffle: its taps' planes in order, 16 per tile.
pub(super) fn weight_tap_tiles(g: &ConvGeometry, plane: usize, wp: usize) -> Vec<TapTile> {
    let mut tiles = Vec::new();
    if super::implicit::is_unshuffle(g) {
        for tap0 in (0..g.taps()).step_by(TILE) {
            tiles.push(TapTile {
                offset: tap0 * plane,
                stride: plane,
                rows: TILE.min(g.taps() - tap0),
                tap0,
                tap_step: 1,
            });
        }
    } else if g.c_in < g.k {
        for ci in 0..g.c_in {
            for kh in 0..g.k {
                tiles.push(TapTile {
                    offset: ci * plane + kh * wp,
                    stride: 1,
                    rows: g.k,
                    tap0: (ci * g.k + kh) * g.k,
                    tap_step: 1,
                });
            }
        }
    } else {
        for ci0 in (0..g.c_in).step_by(TILE) {
            for kh in 0..g.k {
                for kw in 0..g.k {
                    tiles.push(TapTile {
                        offset: ci0 * plane + kh * wp + kw,
                        stride: plane,
                        rows: TILE.min(g.c_in - ci0),
                        tap0: (ci0 * g.k + kh) * g.k + kw,
                        tap_step: g.k * g.k,
                    });
                }
            }
        }
    }
    // A stable sort: the full tiles first, in order.
    tiles.sort_by_key(|t| std::cmp::Reverse(t.rows));
    tiles
}

/// Output channels per right-hand tile: the gradient rows are padded to a multiple of this.
pub(super) const WEIGHT_CHANNELS: usize = TILE;

/// Writes the gradient rows `d16` (`channels` rows of `run` bf16 values, `channels` a multiple
/// of 16, `run` of 32) as right-hand tiles: per tile of 16 channels, per pixel pair k, the 16
/// channels' words (d[c][2k], d[c][2k + 1]). A word of a gradient row already holds such a pair,
/// so this is a transposition of 16 × 16 blocks of words.
///
/// # Safety
/// AVX-512F must be available.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn transpose_grad_pairs(
    dt: &mut [u32],
    d16: &[u16],
    channels: usize,
    run: usize,
) {
    use std::arch::x86_64::*;
    assert!(
        channels.is_multiple_of(TILE)
            && run.is_multiple_of(2 * TILE)
            && d16.len() == channels * run
            && dt.len() == channels * run / 2
    );
    let words = run / 2;
    for ct in 0..channels / TILE {
        for kb in 0..words / TILE {
            let src = d16.as_ptr().add(ct * TILE * run + kb * 2 * TILE);
            let mut r = [_mm512_setzero_si512(); TILE];
            for (c, row) in r.iter_mut().enumerate() {
                *row = _mm512_loadu_si512(src.add(c * run) as *const _);
            }
            let t = transpose_16x16(r);
            let dst = dt.as_mut_ptr().add((ct * words + kb * TILE) * TILE);
            for (k, row) in t.iter().enumerate() {
                _mm512_storeu_si512(dst.add(k * TILE) as *mut _, *row);
            }
        }
    }
}

/// Transposes 16 vectors of 16 words: out[j] lane i = r[i] lane j. Words within 128-bit lanes
/// first (unpacks of 32 and 64 bits: rows 4i..4i + 4 at column 4L + j in lane L of vector
/// 4i + j), then the 128-bit lanes (two rounds of shuffles).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn transpose_16x16(
    r: [std::arch::x86_64::__m512i; TILE],
) -> [std::arch::x86_64::__m512i; TILE] {
    use std::arch::x86_64::*;
    let mut t = r;
    for i in 0..8 {
        t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
    }
    let mut u = t;
    for i in 0..4 {
        u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
        u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
        u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
    }
    // Column 4L + j is lane L of u[j], u[4 + j], u[8 + j], u[12 + j].
    let mut out = u;
    for j in 0..4 {
        let p = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
        let q = _mm512_shuffle_i32x4::<0xee>(u[j], u[4 + j]);
        let p2 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
        let q2 = _mm512_shuffle_i32x4::<0xee>(u[8 + j], u[12 + j]);
        out[j] = _mm512_shuffle_i32x4::<0x88>(p, p2);
        out[4 + j] = _mm512_shuffle_i32x4::<0xdd>(p, p2);
        out[8 + j] = _mm512_shuffle_i32x4::<0x88>(q, q2);
        out[12 + j] = _mm512_shuffle_i32x4::<0xdd>(q, q2);
    }
    out
}

/// Sums of up to 2 tap tiles × 2 channel tiles, 64-byte aligned for the tile stores.
#[repr(C, align(64))]
struct WeightSums([[f32; 2 * TILE]; 2 * TILE]);

/// One weight-gradient task on the tiles: `acc_weight` (c_out, taps) += the task's sums.
/// Blocks of 2 tap tiles × 2 channel tiles (sums 0–3, taps 4–5, gradient pairs 6–7), a lone
/// last tile of either kind leaving its half out; each block runs over the whole task's pixels.
///
/// # Safety
/// [`amx::available`] must hold; `x16` is the task's bf16 strip, read at every tile's rows
/// `run` elements on from their start; `dt` is [`transpose_grad_pairs`] of the task's gradient
/// rows (`run` a multiple of 32, channels padded to whole tiles of 16 with zeros).
#[cfg(target_arch = "x86_64")]
pub(super) unsafe fn weight_task(
    x16: &[u16],
    dt: &[u32],
    run: usize,
    g: &ConvGeometry,
    tiles: &[TapTile],
    acc_weight: &mut [f32],
) {
    let co_tiles = g.c_out.div_ceil(TILE);
    let words = run / 2;
    assert!(run.is_multiple_of(2 * TILE) && dt.len() == co_tiles * TILE * words);
    assert!(acc_weight.len() == g.c_out * g.taps());
    for t in tiles {
        assert!(t.rows >= 1 && t.offset + (t.rows - 1) * t.stride + run <= x16.len());
    }
    let mut sums = WeightSums([[0.0; 2 * TILE]; 2 * TILE]);
    let s = sums.0.as_mut_ptr() as *mut f32;
    let sum_bytes = 2 * TILE * 4;
    let mut start = 0;
    while start < tiles.len() {
        let rows = tiles[start].rows;
        let end = start + tiles[start..].iter().take_while(|t| t.rows == rows).count();
        TileConfig::new()
            .tile(0, rows, 64)
            .tile(1, rows, 64)
            .tile(2, rows, 64)
            .tile(3, rows, 64)
            .tile(4, rows, 64)
            .tile(5, rows, 64)
            .tile(6, TILE, 64)
            .tile(7, TILE, 64)
            .load();
        for ct in (0..co_tiles).step_by(2) {
            let two_co = ct + 1 < co_tiles;
            let b0 = dt.as_ptr().add(ct * words * TILE);
            let b1 = b0.add(if two_co { words * TILE } else { 0 });
            for i in (start..end).step_by(2) {
                let two_taps = i + 1 < end;
                let (t0, t1) = (tiles[i], tiles[if two_taps { i + 1 } else { i }]);
                let (a0, a1) = (x16.as_ptr().add(t0.offset), x16.as_ptr().add(t1.offset));
                let (s0, s1) = (t0.stride * 2, t1.stride * 2);
                tile_zero!(0);
                tile_zero!(1);
                tile_zero!(2);
                tile_zero!(3);
                for p0 in (0..run).step_by(2 * TILE) {
                    let (b0, b1) = (b0.add(p0 / 2 * TILE), b1.add(p0 / 2 * TILE));
                    tile_load!(6, b0, 64usize);
                    tile_load!(4, a0.add(p0), s0);
                    tile_dpbf16!(0, 4, 6);
                    if two_co {
                        tile_load!(7, b1, 64usize);
                        tile_dpbf16!(1, 4, 7);
                    }
                    if two_taps {
                        tile_load!(5, a1.add(p0), s1);
                        tile_dpbf16!(2, 5, 6);
                        if two_co {
                            tile_dpbf16!(3, 5, 7);
                        }
                    }
                }
                tile_store!(0, s, sum_bytes);
                tile_store!(1, s.add(TILE), sum_bytes);
                tile_store!(2, s.add(TILE * 2 * TILE), sum_bytes);
                tile_store!(3, s.add(TILE * 2 * TILE + TILE), sum_bytes);
                let block = [Some(t0), two_taps.then_some(t1)];
                for (bi, tile) in block.iter().enumerate() {
                    let Some(tile) = tile else { continue };
                    for r in 0..tile.rows {
                        let tap = tile.tap0 + r * tile.tap_step;
                        let row = &sums.0[bi * TILE + r];
                        let channels =
                            (g.c_out - ct * TILE).min(if two_co { 2 * TILE } else { TILE });
                        for (c, v) in row[..channels].iter().enumerate() {
                            acc_weight[(ct * TILE + c) * g.taps() + tap] += v;
                        }
                    }
                }
            }
        }
        start = end;
    }
    amx::release();
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn transposed_gradient_pairs_hold_each_channels_word() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            println!("skipped: no AVX-512F on this CPU");
            return;
        }
        let (channels, run) = (32, 96);
        let d16: Vec<u16> = (0..channels * run).map(|i| (i * 7 + 3) as u16).collect();
        let mut dt = vec![u32::MAX; channels * run / 2];
        // SAFETY: AVX-512F was detected; the lengths are the ones it asserts.
        unsafe { transpose_grad_pairs(&mut dt, &d16, channels, run) };
        for ct in 0..channels / TILE {
            for k in 0..run / 2 {
                for c in 0..TILE {
                    let co = ct * TILE + c;
                    let want =
                        d16[co * run + 2 * k] as u32 | (d16[co * run + 2 * k + 1] as u32) << 16;
                    assert_eq!(
                        dt[(ct * run / 2 + k) * TILE + c],
                        want,
                        "channel {co}, pair {k}"
                    );
                }
            }
        }
    }

    #[test]
    fn tap_tiles_cover_every_tap_once() {
        for (c_in, k, stride) in [
            (1, 3, 1),
            (8, 3, 1),
            (24, 3, 1),
            (16, 2, 1),
            (3, 2, 2),
            (20, 2, 2),
        ] {
            let pad = if stride == 1 { k / 2 } else { 0 };
            let (h, w) = (12, 30);
            let g = ConvGeometry {
                c_in,
                h,
                w,
                c_out: 16,
                k,
                stride,
                pad,
                h_out: (h + 2 * pad - k) / stride + 1,
                w_out: (w + 2 * pad - k) / stride + 1,
            };
            let tiles = weight_tap_tiles(&g, 1000, 40);
            let mut seen = vec![0; g.taps()];
            for t in &tiles {
                assert!((1..=TILE).contains(&t.rows));
                for r in 0..t.rows {
                    seen[t.tap0 + r * t.tap_step] += 1;
                }
            }
            assert!(seen.iter().all(|&n| n == 1), "{g:?}: {seen:?}");
            assert!(tiles.windows(2).all(|p| p[0].rows >= p[1].rows));
        }
    }
}

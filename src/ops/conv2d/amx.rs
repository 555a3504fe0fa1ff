//! The bf16 forward's AMX tile kernel (`--precision bf16` on CPUs with AMX-BF16; `MTOSI_AMX=0`
//! keeps the AVX512-BF16 kernel): the same implicit GEMM over the same pair strip as
//! [`super::bf16`], 16 output channels × 16 flat pixels per `tdpbf16ps` instead of 16 pixels of
//! one channel per `vdpbf16ps`.
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

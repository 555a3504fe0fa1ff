//! What `mir_eval.util` gives the metrics: the maximum bipartite matching (its own Hopcroft–Karp,
//! step for step, so that of several maximum matchings we pick the one it picks), the
//! F-measure, interval validation, event matching within a window, and numpy's rounding and
//! modulo where the metrics depend on them.

use super::{MetricsError, Side};

/// `mir_eval.util._bipartite_match`: a maximum-cardinality matching of a bipartite graph,
/// Hopcroft–Karp as David Eppstein wrote it (which mir_eval adapted).
///
/// `graph` lists each left vertex (an estimate index in mir_eval's callers) with its right
/// neighbours (reference indices), in the order mir_eval's dict holds them; `right_count`
/// bounds the right indices. Returns `(right, left)` pairs sorted by right vertex, i.e.
/// `sorted(matching.items())`. Every step follows the Python (greedy start, layer order,
/// depth-first augmentation), so ties between maximum matchings fall the same way, which
/// `Average_Overlap_Ratio` depends on.
pub fn bipartite_match(graph: &[(usize, Vec<usize>)], right_count: usize) -> Vec<(usize, usize)> {
    // Left vertices are addressed by their position in `graph`; `matching[v]` is the position
    // matched to right vertex v.
    let mut matching: Vec<Option<usize>> = vec![None; right_count];
    for (position, (_, neighbours)) in graph.iter().enumerate() {
        if let Some(&v) = neighbours.iter().find(|&&v| matching[v].is_none()) {
            matching[v] = Some(position);
        }
    }
    let mut preds: Vec<Option<Vec<usize>>> = vec![None; right_count];
    let mut pred: Vec<Pred> = vec![Pred::Free; graph.len()];
    let mut new_layer: Vec<Option<Vec<usize>>> = vec![None; right_count];
    loop {
        preds.iter_mut().for_each(|p| *p = None);
        pred.iter_mut().for_each(|p| *p = Pred::Free);
        for &position in matching.iter().flatten() {
            pred[position] = Pred::Absent;
        }
        let mut layer: Vec<usize> = (0..graph.len())
            .filter(|&p| pred[p] == Pred::Free)
            .collect();
        let mut unmatched: Vec<usize> = Vec::new();
        while !layer.is_empty() && unmatched.is_empty() {
            let mut new_layer_order = Vec::new();
            for &position in &layer {
                for &v in &graph[position].1 {
                    if preds[v].is_none() {
                        new_layer[v]
                            .get_or_insert_with(|| {
                                new_layer_order.push(v);
                                Vec::new()
                            })
                            .push(position);
                    }
                }
            }
            layer.clear();
            for v in new_layer_order {
                preds[v] = new_layer[v].take();
                match matching[v] {
                    Some(position) => {
                        layer.push(position);
                        pred[position] = Pred::Via(v);
                    }
                    None => unmatched.push(v),
                }
            }
        }
        if unmatched.is_empty() {
            let mut pairs: Vec<(usize, usize)> = matching
                .iter()
                .enumerate()
                .filter_map(|(v, p)| p.map(|p| (v, graph[p].0)))
                .collect();
            pairs.sort_unstable();
            return pairs;
        }
        for v in unmatched {
            augment(v, &mut preds, &mut pred, &mut matching);
        }
    }
}

/// `pred[u]` of Eppstein's algorithm: deleted, the "unmatched" flag of the first layer, or the
/// right vertex of the previous layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pred {
    Absent,
    Free,
    Via(usize),
}

/// The algorithm's `recurse(v)`, with an explicit stack instead of recursion (an augmenting path
/// can be as long as a chain of overlapping notes) but the same visiting order.
fn augment(
    start: usize,
    preds: &mut [Option<Vec<usize>>],
    pred: &mut [Pred],
    matching: &mut [Option<usize>],
) -> bool {
    struct Frame {
        v: usize,
        candidates: Vec<usize>,
        next: usize,
        /// The left vertex whose `pred` the child frame is exploring.
        via: usize,
    }
    let Some(candidates) = preds[start].take() else {
        return false;
    };
    let mut stack = vec![Frame {
        v: start,
        candidates,
        next: 0,
        via: usize::MAX,
    }];
    // Some(result) when a child frame has just returned.
    let mut returned: Option<bool> = None;
    while let Some(frame) = stack.last_mut() {
        if returned.take() == Some(true) {
            matching[frame.v] = Some(frame.via);
            stack.pop();
            returned = Some(true);
            continue;
        }
        let mut child = None;
        let mut found = false;
        while frame.next < frame.candidates.len() {
            let u = frame.candidates[frame.next];
            frame.next += 1;
            match std::mem::replace(&mut pred[u], Pred::Absent) {
                Pred::Absent => {}
                Pred::Free => {
                    matching[frame.v] = Some(u);
                    found = true;
                    break;
                }
                Pred::Via(pu) => {
                    if let Some(candidates) = preds[pu].take() {
                        frame.via = u;
                        child = Some(Frame {
                            v: pu,
                            candidates,
                            next: 0,
                            via: usize::MAX,
                        });
                        break;
                    }
                    // recurse(pu) on a vertex no longer in preds returns False: go on.
                }
            }
        }
        if let Some(child) = child {
            stack.push(child);
        } else {
            stack.pop();
            returned = Some(found);
        }
    }
    returned == Some(true)
}

/// `mir_eval.util.f_measure` with β = 1: `2PR / (P + R)`, 0 when both are 0.
pub fn f_measure(precision: f64, recall: f64) -> f64 {
    if precision == 0.0 && recall == 0.0 {
        return 0.0;
    }
    2.0 * precision * recall / (precision + recall)
}

/// `mir_eval.util.validate_intervals` plus the finiteness mir_eval leaves unchecked: every
/// time finite and non-negative, every duration strictly positive.
pub fn validate_intervals(side: Side, intervals: &[[f64; 2]]) -> Result<(), MetricsError> {
    for (index, &[onset, offset]) in intervals.iter().enumerate() {
        let problem = if !onset.is_finite() || !offset.is_finite() {
            Some(format!("interval [{onset}, {offset}] is not finite"))
        } else if onset < 0.0 || offset < 0.0 {
            Some(format!("negative interval time in [{onset}, {offset}]"))
        } else if offset <= onset {
            Some(format!(
                "interval [{onset}, {offset}] has no strictly positive duration"
            ))
        } else {
            None
        };
        if let Some(problem) = problem {
            return Err(MetricsError::invalid(side, "note", index, problem));
        }
    }
    Ok(())
}

/// `numpy.around(x, decimals)` for float64: `rint(x · 10^d) / 10^d` (half to even), the exact
/// operations numpy performs, so a distance of "exactly 50 ms" lands where mir_eval's does.
pub fn np_around(x: f64, decimals: i32) -> f64 {
    let scale = 10f64.powi(decimals);
    (x * scale).round_ties_even() / scale
}

/// `numpy.mod(a, b)` for float64 (`npy_divmod`): C's `fmod`, moved into `b`'s sign, and a zero
/// result carrying `b`'s sign.
pub fn np_mod(a: f64, b: f64) -> f64 {
    // Fast exact path for what the metrics need (a ≥ 0, b a small whole number such as 12):
    // k = ⌊a / b⌋ can only be one too large (when a / b rounds up to a whole number), so
    // a − b·k is exact (Sterbenz) and, if negative, adding b gives the exact remainder back.
    if (0.0..4.5e15).contains(&a) && b > 0.0 && b <= 1048576.0 && b.fract() == 0.0 {
        let r = a - b * (a / b).floor();
        return if r < 0.0 { r + b } else { r };
    }
    np_mod_fmod(a, b)
}

/// [`np_mod`] as numpy computes it, through `fmod`.
fn np_mod_fmod(a: f64, b: f64) -> f64 {
    let m = a % b;
    if b == 0.0 {
        m
    } else if m != 0.0 {
        if (b < 0.0) != (m < 0.0) {
            m + b
        } else {
            m
        }
    } else {
        0f64.copysign(b)
    }
}

/// How [`match_events`] measures the distance of two values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum EventDistance {
    /// `|ref − est|` as `mir_eval.util._fast_hit_windows` tests it: `est − w ≤ ref ≤ est + w`.
    Absolute,
    /// `mir_eval.util._outer_distance_mod_n`: the distance around a circle of this modulus.
    ModN(f64),
}

/// `mir_eval.util.match_events`: a maximum matching of reference and estimated values within
/// `window`, as `(ref, est)` index pairs sorted by reference index.
pub fn match_events(
    reference: &[f64],
    estimate: &[f64],
    window: f64,
    distance: EventDistance,
) -> Vec<(usize, usize)> {
    let mut graph: Vec<(usize, Vec<usize>)> = Vec::new();
    match distance {
        EventDistance::Absolute => {
            // _fast_hit_windows: per estimate in order, the references in sorted order whose
            // value lies in [est − w, est + w] (searchsorted left / right).
            let mut order: Vec<usize> = (0..reference.len()).collect();
            order.sort_by(|&a, &b| reference[a].total_cmp(&reference[b]));
            let sorted: Vec<f64> = order.iter().map(|&i| reference[i]).collect();
            for (j, &e) in estimate.iter().enumerate() {
                let (low, high) = (e - window, e + window);
                let start = sorted.partition_point(|&r| r < low);
                let end = sorted.partition_point(|&r| r <= high);
                if end > start {
                    graph.push((j, order[start..end].to_vec()));
                }
            }
        }
        EventDistance::ModN(modulus) => {
            // np.where over the (ref, est) distance matrix, row-major, grouped by estimate in
            // order of first appearance.
            let ref_mod: Vec<f64> = reference.iter().map(|&r| np_mod(r, modulus)).collect();
            let est_mod: Vec<f64> = estimate.iter().map(|&e| np_mod(e, modulus)).collect();
            let mut slot: Vec<Option<usize>> = vec![None; estimate.len()];
            for (i, &r) in ref_mod.iter().enumerate() {
                for (j, &e) in est_mod.iter().enumerate() {
                    let diff = (r - e).abs();
                    if diff.min(modulus - diff) <= window {
                        let position = *slot[j].get_or_insert_with(|| {
                            graph.push((j, Vec::new()));
                            graph.len() - 1
                        });
                        graph[position].1.push(i);
                    }
                }
            }
        }
    }
    bipartite_match(&graph, reference.len())
}

/// The size of [`match_events`]'s matching, which is all `mir_eval.multipitch` uses. Every
/// maximum matching has the same size, so for up to 64 values a side this is Kuhn's algorithm
/// on bit masks, without allocating (a frame rarely holds more); beyond, `match_events`.
pub fn count_matches(
    reference: &[f64],
    estimate: &[f64],
    window: f64,
    distance: EventDistance,
) -> usize {
    if reference.is_empty() || estimate.is_empty() {
        return 0;
    }
    if reference.len() > 64 || estimate.len() > 64 {
        return match_events(reference, estimate, window, distance).len();
    }
    // Values on the circle taken mod n once each (the distance's own np.mod), not per pair.
    let (mut ref_values, mut est_values) = ([0.0; 64], [0.0; 64]);
    let circular = |v: f64| match distance {
        EventDistance::Absolute => v,
        EventDistance::ModN(modulus) => np_mod(v, modulus),
    };
    for (slot, &r) in ref_values.iter_mut().zip(reference) {
        *slot = circular(r);
    }
    for (slot, &e) in est_values.iter_mut().zip(estimate) {
        *slot = circular(e);
    }
    let hit = |r: f64, e: f64| match distance {
        EventDistance::Absolute => r >= e - window && r <= e + window,
        EventDistance::ModN(modulus) => {
            let diff = (r - e).abs();
            diff.min(modulus - diff) <= window
        }
    };
    let mut neighbours = [0u64; 64];
    for (j, &e) in est_values[..estimate.len()].iter().enumerate() {
        for (i, &r) in ref_values[..reference.len()].iter().enumerate() {
            if hit(r, e) {
                neighbours[j] |= 1 << i;
            }
        }
    }
    fn augment(j: usize, neighbours: &[u64; 64], seen: &mut u64, owner: &mut [u8; 64]) -> bool {
        let mut candidates = neighbours[j] & !*seen;
        while candidates != 0 {
            let i = candidates.trailing_zeros() as usize;
            candidates &= candidates - 1;
            *seen |= 1 << i;
            if owner[i] == u8::MAX || augment(usize::from(owner[i]), neighbours, seen, owner) {
                owner[i] = j as u8;
                return true;
            }
        }
        false
    }
    let mut owner = [u8::MAX; 64];
    (0..estimate.len())
        .filter(|&j| {
            let mut seen = 0u64;
            augment(j, &neighbours, &mut seen, &mut owner)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A maximum matching by brute force over all assignments, for small graphs.
    fn brute_force_size(graph: &[(usize, Vec<usize>)], right_count: usize) -> usize {
        fn go(graph: &[(usize, Vec<usize>)], used: &mut Vec<bool>, at: usize) -> usize {
            if at == graph.len() {
                return 0;
            }
            let mut best = go(graph, used, at + 1);
            for &v in &graph[at].1 {
                if !used[v] {
                    used[v] = true;
                    best = best.max(1 + go(graph, used, at + 1));
                    used[v] = false;
                }
            }
            best
        }
        go(graph, &mut vec![false; right_count], 0)
    }

    #[test]
    fn the_matching_is_maximum_where_a_greedy_pass_is_not() {
        // Greedy gives left 0 right 0, leaving left 1 (which only reaches right 0) unmatched.
        let graph = vec![(0, vec![0, 1]), (1, vec![0])];
        assert_eq!(bipartite_match(&graph, 2), vec![(0, 1), (1, 0)]);
    }

    #[test]
    fn random_graphs_are_matched_maximally_and_consistently() {
        let seed = crate::device::equivalence::seed_from_env();
        println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
        let mut rng = crate::rng::Rng::new(seed);
        for _ in 0..300 {
            let (left, right) = (rng.range_usize(1, 7), rng.range_usize(1, 7));
            let graph: Vec<(usize, Vec<usize>)> = (0..left)
                .map(|u| {
                    let neighbours = (0..right).filter(|_| rng.range_usize(0, 2) == 0).collect();
                    (u, neighbours)
                })
                .filter(|(_, n): &(usize, Vec<usize>)| !n.is_empty())
                .collect();
            let matching = bipartite_match(&graph, right);
            assert_eq!(matching.len(), brute_force_size(&graph, right), "{graph:?}");
            let mut lefts: Vec<usize> = matching.iter().map(|&(_, u)| u).collect();
            lefts.sort_unstable();
            lefts.dedup();
            assert_eq!(lefts.len(), matching.len(), "a left vertex matched twice");
            for &(v, u) in &matching {
                let (_, neighbours) = graph.iter().find(|(key, _)| *key == u).unwrap();
                assert!(neighbours.contains(&v), "({v}, {u}) is not an edge");
            }
        }
    }

    #[test]
    fn a_long_augmenting_chain_needs_no_deep_recursion() {
        // Left i reaches right i + 1 and i; the greedy start matches left i to right i + 1,
        // so the last left vertex, which reaches only right n, needs the augmenting path
        // n → n−1 → … → 0 through the whole chain.
        let n = 200_000;
        let mut graph: Vec<(usize, Vec<usize>)> = (0..n).map(|u| (u, vec![u + 1, u])).collect();
        graph.push((n, vec![n]));
        let matching = bipartite_match(&graph, n + 1);
        assert_eq!(matching.len(), n + 1);
    }

    #[test]
    fn counted_matches_equal_the_size_of_the_full_matching() {
        let seed = crate::device::equivalence::seed_from_env();
        println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
        let mut rng = crate::rng::Rng::new(seed);
        for round in 0..500 {
            // Values on a quarter-semitone grid, so that windows overlap and ties abound; every
            // 50th round more than 64 a side (the general path).
            let big = round % 50 == 0;
            let nr = if big { 70 } else { rng.range_usize(0, 9) };
            let ne = if big { 66 } else { rng.range_usize(0, 9) };
            let mut draw = |n: usize| -> Vec<f64> {
                (0..n)
                    .map(|_| 40.0 + 0.25 * rng.range_usize(0, 40) as f64)
                    .collect()
            };
            let (reference, estimate) = (draw(nr), draw(ne));
            for distance in [EventDistance::Absolute, EventDistance::ModN(12.0)] {
                assert_eq!(
                    count_matches(&reference, &estimate, 0.5, distance),
                    match_events(&reference, &estimate, 0.5, distance).len(),
                    "{reference:?} {estimate:?} {distance:?}"
                );
            }
        }
    }

    #[test]
    fn the_fast_modulo_is_numpy_s_bit_for_bit() {
        let seed = crate::device::equivalence::seed_from_env();
        println!("seed {seed} (replay with MTOSI_TEST_SEED={seed})");
        let mut rng = crate::rng::Rng::new(seed);
        for _ in 0..200_000 {
            // Near multiples of 12 (where a / 12 rounds to a whole number) and anywhere.
            let a = match rng.range_usize(0, 2) {
                0 => 12.0 * rng.range_usize(0, 12) as f64 + (rng.uniform_f64() - 0.5) * 1e-13,
                1 => f64::from_bits(rng.next_u64() >> 2),
                _ => rng.uniform_f64() * 200.0 - 50.0,
            };
            for b in [12.0, 1.0, 7.0] {
                let (fast, exact) = (np_mod(a, b), np_mod_fmod(a, b));
                assert_eq!(fast.to_bits(), exact.to_bits(), "np.mod({a:e}, {b})");
            }
        }
    }

    #[test]
    fn numpy_rounding_and_modulo() {
        assert_eq!(np_around(0.05000000000000002, 4), 0.05);
        assert_eq!(np_around(0.00005, 4), 0.0);
        // 0.00015 · 10⁴ is 1.4999999999999998 in floating point: numpy gives 0.0001 too.
        assert_eq!(np_around(0.00015, 4), 0.0001);
        assert_eq!(np_around(0.00025, 4), 0.0002);
        assert_eq!(np_mod(-1e-17, 12.0), 12.0);
        assert_eq!(np_mod(13.5, 12.0), 1.5);
        assert_eq!(np_mod(-0.5, 12.0), 11.5);
        assert!(np_mod(-12.0, 12.0).is_sign_positive());
    }

    #[test]
    fn f_measure_is_the_harmonic_mean() {
        assert_eq!(f_measure(0.0, 0.0), 0.0);
        assert_eq!(f_measure(0.5, 1.0), 2.0 / 3.0);
    }
}

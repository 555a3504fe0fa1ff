"""Fixtures for tests/metrics_mir_eval.rs: random note and frame cases scored by mir_eval 0.8.

    python -m venv .venv && .venv/bin/pip install mir_eval==0.8 numpy scipy
    .venv/bin/python tools/reference/metrics_fixture.py            # writes tests/fixtures/metrics/

Writes two JSON files:
  transcription.json  cases of mir_eval.transcription.evaluate: reference and estimate as
                      mir_eval note text (`onset offset hz` lines), the keyword arguments, the
                      dictionary it returns, and whether a greedy matching would score lower;
  multipitch.json     cases of mir_eval.multipitch.evaluate: both sides as mir_eval frame text
                      (`time f1 f2 ...` lines), the keyword arguments and the dictionary.

Notes and frames are kept as text so the Rust side parses every number with a correctly
rounded parser (the fixtures sit on tolerance edges, where one ulp decides).

Cases whose result depends on how log2 is rounded are redrawn. numpy's log2 (SIMD, e.g. SVML
on AVX-512) and the C library's log2 (which Rust calls) differ by an ulp on ~0.1% of inputs; a
pitch exactly 50 cents off, or a frequency exactly half a semitone off, then matches with one
and not the other, so mir_eval itself gives different answers on different machines there.
Each case is scored twice, with numpy's log2 and with math.log2, and kept only where both
agree; how many were redrawn is recorded.
"""

import json
import math
import random
import sys
import warnings
from pathlib import Path

import mir_eval
import numpy as np

OUT = Path(__file__).resolve().parents[2] / "tests" / "fixtures" / "metrics"
SEED = 20260801

_numpy_log2 = np.log2


def _libm_log2(x, *args, **kwargs):
    array = np.asarray(x, dtype=float)
    result = np.array([math.log2(v) if v > 0 else float("nan") for v in array.ravel()], dtype=float)
    return result.reshape(array.shape) if array.shape else float(result[0])


def with_log2(log2, fn):
    np.log2 = log2
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return fn()
    finally:
        np.log2 = _numpy_log2


def fmt(value):
    return repr(float(value))


def note_text(notes):
    return "".join(f"{fmt(a)}\t{fmt(b)}\t{fmt(f)}\n" for a, b, f in notes)


def micro(t):
    """Times to the microsecond: short text, and tolerance edges (multiples of 1 ms) stay exact."""
    return round(t, 6)


def frame_text(times, freqs):
    return "".join(" ".join([fmt(t)] + [fmt(f) for f in fs]) + "\n" for t, fs in zip(times, freqs))


def as_arrays(notes):
    intervals = np.array([[a, b] for a, b, _ in notes], dtype=float).reshape(-1, 2)
    pitches = np.array([f for _, _, f in notes], dtype=float)
    return intervals, pitches


def greedy_count(ref, est, kwargs):
    """Matches in one greedy pass (reference order, first free estimate that hits)."""
    onset_tol = kwargs.get("onset_tolerance", 0.05)
    pitch_tol = kwargs.get("pitch_tolerance", 50.0)
    ratio = kwargs.get("offset_ratio", 0.2)
    min_tol = kwargs.get("offset_min_tolerance", 0.05)
    hit = (lambda d, t: d < t) if kwargs.get("strict") else (lambda d, t: d <= t)
    used = set()
    count = 0
    for r in ref:
        for j, e in enumerate(est):
            if j in used:
                continue
            ok = hit(round(abs(r[0] - e[0]), 4), onset_tol) and hit(abs(1200 * (math.log2(r[2]) - math.log2(e[2]))), pitch_tol)
            if ratio is not None:
                ok = ok and hit(round(abs(r[1] - e[1]), 4), max(ratio * (r[1] - r[0]), min_tol))
            if ok:
                used.add(j)
                count += 1
                break
    return count


# ---------------------------------------------------------------- transcription cases

EDGE_ONSETS = [0.0, 0.05, -0.05, 0.049, -0.049, 0.051, -0.051, 0.05005, -0.05005, 0.04995, 0.0500499, 0.0500501]
EDGE_CENTS = [0.0, 50.0, -50.0, 49.99, -49.99, 50.01, -50.01, 25.0, -100.0, 1200.0]


def random_pitch(rng):
    return 440.0 * 2.0 ** ((rng.randint(21, 108) - 69) / 12.0)


def random_notes(rng, n, span, min_dur=0.02, max_dur=1.5, off_key=False):
    notes = []
    for _ in range(n):
        onset = round(rng.uniform(0, span), rng.choice([2, 3, 6]))
        duration = round(rng.uniform(min_dur, max_dur), 3)
        pitch = random_pitch(rng) * (2 ** (rng.uniform(-60, 60) / 1200) if off_key else 1.0)
        notes.append((onset, micro(onset + duration), pitch))
    notes.sort()
    return notes


def perturb(rng, ref, edge_rate=0.5):
    """An estimate near the reference: tolerance-edge jitters, deletions, insertions."""
    est = []
    for onset, offset, pitch in ref:
        if rng.random() < 0.15:
            continue
        edge = rng.random() < edge_rate
        d_on = rng.choice(EDGE_ONSETS) if edge else rng.gauss(0, 0.03)
        cents = rng.choice(EDGE_CENTS) if edge else rng.gauss(0, 30)
        duration = offset - onset
        tol = max(0.2 * duration, 0.05)
        d_off = rng.choice([0.0, tol, -tol, tol * 1.001, -tol * 0.999, 0.05, -0.05]) if edge else rng.gauss(0, 0.1)
        new_onset = micro(max(0.0, onset + d_on))
        new_offset = micro(max(new_onset + 0.01, offset + d_on * rng.choice([0, 1]) + d_off))
        est.append((new_onset, new_offset, pitch * 2 ** (cents / 1200)))
    for _ in range(rng.randint(0, 3)):
        if ref:
            onset, offset, pitch = rng.choice(ref)
            start = micro(max(0.0, onset + rng.uniform(-0.1, 0.1)))
            est.append((start, micro(start + rng.uniform(0.02, 1.0)), pitch))
        else:
            est.extend(random_notes(rng, 1, 5.0))
    rng.shuffle(est)
    return est


def greedy_trap(rng):
    """References A, B and estimates X, Y where X hits both and Y only A: greedy in reference
    order gives A-X and leaves B and Y unmatched; the maximum is A-Y, B-X."""
    ref, est = [], []
    t = 0.0
    for _ in range(rng.randint(1, 6)):
        pitch = random_pitch(rng)
        a = micro(t + rng.uniform(0, 0.01))
        b = micro(a + rng.uniform(0.03, 0.05))
        x = micro((a + b) / 2 + rng.uniform(-0.004, 0.004))
        y = micro(a - rng.uniform(0.03, 0.049))
        ref += [(a, a + 0.5, pitch), (b, b + 0.5, pitch)]
        est += [(x, x + 0.5, pitch), (max(0.0, y), max(0.0, y) + 0.5, pitch)]
        t += rng.uniform(1.0, 2.0)
    if rng.random() < 0.5:
        ref.sort()
    return ref, est


def repeated_notes(rng):
    pitch = random_pitch(rng)
    ref, t = [], micro(rng.uniform(0, 1))
    for _ in range(rng.randint(2, 12)):
        duration = round(rng.uniform(0.02, 0.08), 3)
        ref.append((t, micro(t + duration), pitch))
        t = micro(t + duration + rng.choice([0.0, 0.005, 0.02]))
    return ref, perturb(rng, ref, edge_rate=0.3)


def chords(rng):
    ref = []
    for _ in range(rng.randint(1, 4)):
        onset = round(rng.uniform(0, 10), 3)
        duration = round(rng.uniform(0.1, 2.0), 3)
        for key in rng.sample(range(40, 90), rng.randint(2, 8)):
            ref.append((micro(onset + rng.uniform(0, 0.02)), micro(onset + duration), 440 * 2 ** ((key - 69) / 12)))
    est = perturb(rng, ref)
    # Pitches between two chord notes: a quarter tone off, matching either neighbour or none.
    for onset, offset, pitch in rng.sample(ref, min(3, len(ref))):
        est.append((onset, offset, pitch * 2 ** (rng.choice([50.0, -50.0, 49.0, 51.0]) / 1200)))
    return ref, est


def long_piece(rng, n, span):
    ref = random_notes(rng, n, span, max_dur=0.8)
    return ref, perturb(rng, ref, edge_rate=0.2)


def transcription_cases(rng):
    cases = []
    kwarg_choices = [
        {},
        {},
        {},
        {"offset_ratio": None},
        {"strict": True},
        {"onset_tolerance": 0.1, "pitch_tolerance": 25.0},
        {"offset_ratio": 0.5, "offset_min_tolerance": 0.1},
    ]
    for i in range(110):
        ref = random_notes(rng, rng.randint(1, 12), rng.choice([1.0, 3.0, 10.0]), off_key=rng.random() < 0.3)
        cases.append((f"random_{i}", ref, perturb(rng, ref), rng.choice(kwarg_choices)))
    for i in range(40):
        ref, est = greedy_trap(rng)
        cases.append((f"greedy_trap_{i}", ref, est, rng.choice([{}, {"offset_ratio": None}])))
    for i in range(40):
        ref, est = repeated_notes(rng)
        cases.append((f"repeated_{i}", ref, est, rng.choice(kwarg_choices)))
    for i in range(30):
        ref, est = chords(rng)
        cases.append((f"chords_{i}", ref, est, rng.choice(kwarg_choices)))
    some = random_notes(rng, 5, 3.0)
    cases += [
        ("empty_both", [], [], {}),
        ("empty_reference", [], some, {}),
        ("empty_estimate", some, [], {}),
        ("empty_reference_no_offset", [], some, {"offset_ratio": None}),
        ("identical", some, list(some), {}),
    ]
    for i, (n, span) in enumerate([(250, 50.0), (80, 8.0)]):
        ref, est = long_piece(rng, n, span)
        cases.append((f"long_{i}", ref, est, {}))
    return cases


def score_transcription(ref, est, kwargs):
    ri, rp = as_arrays(ref)
    ei, ep = as_arrays(est)
    return dict(mir_eval.transcription.evaluate(ri, rp, ei, ep, **kwargs))


# ---------------------------------------------------------------- multipitch cases

def key_hz(key):
    return 440.0 * 2.0 ** ((key - 69) / 12.0)


def random_frames(rng, n, hop, start=0.0, max_poly=6):
    times = [start + i * hop for i in range(n)]
    freqs = []
    for _ in range(n):
        k = rng.randint(0, max_poly)
        freqs.append(sorted(round(key_hz(rng.randint(21, 108)) * 2 ** (rng.uniform(-30, 30) / 1200), 3) for _ in range(k)))
    return times, freqs


def perturb_frames(rng, freqs):
    out = []
    for frame in freqs:
        new = []
        for f in frame:
            r = rng.random()
            if r < 0.1:
                continue
            if r < 0.25:
                new.append(min(4999.0, f * 2.0 ** rng.choice([-1, 1, 2])))  # octave error
            elif r < 0.45:
                # Half a semitone off (full precision: the window's edge), or just inside/outside.
                new.append(f * 2 ** (rng.choice([0.5, -0.5, 0.49, -0.49, 0.51, -0.51, 12.5, -11.5]) / 12))
            else:
                new.append(round(f * 2 ** (rng.gauss(0, 0.2) / 12), 3))
        if rng.random() < 0.2:
            new.append(key_hz(rng.randint(21, 108)))
        out.append(sorted(v for v in new if 20.0 <= v <= 5000.0))
    return out


def multipitch_cases(rng):
    cases = []
    for i in range(70):
        n = rng.randint(1, 25)
        hop = rng.choice([0.01, 0.032, 0.0116])
        times, ref = random_frames(rng, n, hop)
        kwargs = rng.choice([{}, {}, {}, {"window": 0.25}])
        cases.append((f"same_grid_{i}", times, ref, list(times), perturb_frames(rng, ref), kwargs))
    for i in range(60):
        n = rng.randint(1, 40)
        times, ref = random_frames(rng, n, 0.01)
        m = rng.randint(1, 25)
        hop = rng.choice([0.032, 0.005, 0.01, 0.02])
        start = rng.choice([0.0, 0.005, -0.01, 0.1, 0.016])
        est_times, est = random_frames(rng, m, hop, start=start)
        if rng.random() < 0.3:
            half = est_times[: (m + 1) // 2]
            est_times = sorted(half + half)[:m]  # repeated time stamps
        cases.append((f"resampled_{i}", times, ref, est_times, est, {}))
    for i in range(12):
        times, ref = random_frames(rng, 30, 0.032)
        jitter = rng.choice([1e-9, 1e-7, 1e-4, 1e-3])
        est_times = [t + jitter * rng.random() for t in times]
        cases.append((f"nearly_same_grid_{i}", times, ref, est_times, perturb_frames(rng, ref), {}))
    times, ref = random_frames(rng, 10, 0.01)
    silent = [[] for _ in times]
    cases += [
        ("empty_both", [], [], [], [], {}),
        ("empty_reference_times", [], [], times, ref, {}),
        ("empty_estimate_times", times, ref, [], [], {}),
        ("silent_reference", times, silent, times, ref, {}),
        ("silent_estimate", times, ref, times, silent, {}),
        ("single_estimate_time", times, ref, [times[3]], [ref[3]], {}),
        ("frequency_range_edges", [0.0, 0.01], [[20.0, 5000.0], [20.0]], [0.0, 0.01], [[20.0, 4999.0], [5000.0]], {}),
    ]
    # A 10-minute-like piece on the 32 ms grid with piano keys, estimate on the same grid.
    times, ref = random_frames(rng, 400, 0.032, max_poly=4)
    ref = [[key_hz(round(69 + 12 * math.log2(f / 440))) for f in frame] for frame in ref]
    cases.append(("long_piano_grid", times, ref, list(times), perturb_frames(rng, ref), {}))
    return cases


def score_multipitch(ref_t, ref_f, est_t, est_f, kwargs):
    to = lambda fs: [np.array(f, dtype=float) for f in fs]
    return dict(
        mir_eval.multipitch.evaluate(
            np.array(ref_t, dtype=float), to(ref_f), np.array(est_t, dtype=float), to(est_f), **kwargs
        )
    )


def stable(score, *args):
    """mir_eval's dictionary, or None when it depends on the rounding of log2."""
    with_numpy = with_log2(_numpy_log2, lambda: score(*args))
    with_libm = with_log2(_libm_log2, lambda: score(*args))
    return with_numpy if with_numpy == with_libm else None


def main():
    rng = random.Random(SEED)
    OUT.mkdir(parents=True, exist_ok=True)
    redrawn = {"transcription": 0, "multipitch": 0}

    transcription = []
    for name, ref, est, kwargs in transcription_cases(rng):
        scores = stable(score_transcription, ref, est, kwargs)
        while scores is None:
            redrawn["transcription"] += 1
            est = [(a, b, f * (1 + 1e-9 * rng.random())) for a, b, f in est]
            scores = stable(score_transcription, ref, est, kwargs)
        greedy = greedy_count(ref, est, kwargs)
        ri, rp = as_arrays(ref)
        ei, ep = as_arrays(est)
        maximum = len(mir_eval.transcription.match_notes(ri, rp, ei, ep, **{k: v for k, v in kwargs.items()})) if ref and est else 0
        transcription.append(
            {
                "name": name,
                "ref": note_text(ref),
                "est": note_text(est),
                "kwargs": kwargs,
                "greedy_differs": greedy != maximum,
                "scores": scores,
            }
        )

    multipitch = []
    for name, ref_t, ref_f, est_t, est_f, kwargs in multipitch_cases(rng):
        scores = stable(score_multipitch, ref_t, ref_f, est_t, est_f, kwargs)
        while scores is None:
            redrawn["multipitch"] += 1
            est_f = [[f * (1 + 1e-9 * rng.random()) for f in frame] for frame in est_f]
            scores = stable(score_multipitch, ref_t, ref_f, est_t, est_f, kwargs)
        multipitch.append(
            {
                "name": name,
                "ref": frame_text(ref_t, ref_f),
                "est": frame_text(est_t, est_f),
                "kwargs": kwargs,
                "scores": scores,
            }
        )

    meta = {
        "mir_eval": mir_eval.__version__,
        "numpy": np.__version__,
        "seed": SEED,
        "redrawn_for_log2_rounding": redrawn,
    }
    for name, cases in [("transcription", transcription), ("multipitch", multipitch)]:
        path = OUT / f"{name}.json"
        # mir_eval's key order (JSON readers need not keep the order of an object's keys).
        key_order = list(next(c for c in cases if not c["kwargs"])["scores"])
        content = {"meta": dict(meta, key_order=key_order), "cases": cases}
        path.write_text(json.dumps(content, separators=(",", ":")) + "\n")
        print(f"{path}: {len(cases)} cases, {path.stat().st_size // 1024} KiB", file=sys.stderr)
    print(f"redrawn for log2 rounding: {redrawn}", file=sys.stderr)
    print(f"greedy differs in {sum(c['greedy_differs'] for c in transcription)} cases", file=sys.stderr)


if __name__ == "__main__":
    main()

//! The CPU CQT against nnAudio 0.3.4's CQT1992v2, on fixtures written by
//! `tools/reference/cqt_fixture.py` (a chirp, a chord, noise, a music-like mix, a clip shorter
//! than the reflect padding, non-default parameters), and the kernels tap by tap; then
//! kernels/cqt.cu on emu (and cuda when present) against the CPU on fresh random audio.

use std::path::{Path, PathBuf};

use mtosi::device::equivalence::Equivalence;
use mtosi::npy;
use mtosi::ops::cqt::cqt;
use mtosi::spectrogram::{features, Cqt, CqtKernels, CqtMethod, CqtParams, Isa};

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/cqt")
}

/// `sr hop fmin n_bins bins_per_octave filter_scale` from the start of a manifest line.
fn parse_params(fields: &[&str]) -> CqtParams {
    CqtParams {
        sample_rate_hz: fields[0].parse().unwrap(),
        hop_length: fields[1].parse().unwrap(),
        fmin_hz: fields[2].parse().unwrap(),
        n_bins: fields[3].parse().unwrap(),
        bins_per_octave: fields[4].parse().unwrap(),
        filter_scale: fields[5].parse().unwrap(),
    }
}

#[test]
fn cpu_cqt_matches_nnaudio_on_every_fixture() {
    let manifest = std::fs::read_to_string(fixture_dir().join("cases.txt")).unwrap();
    let mut cases = 0;
    for line in manifest.lines().filter(|l| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let name = fields[0];
        let params = parse_params(&fields[1..7]);
        let audio = npy::read(&fixture_dir().join(format!("{name}.audio.npy"))).unwrap();
        let expected = npy::read(&fixture_dir().join(format!("{name}.cqt.npy"))).unwrap();
        assert_eq!(expected.shape[0], params.n_bins, "{name}");
        let peak = expected.data.iter().cloned().fold(0f32, f32::max);
        for method in [CqtMethod::Blocked, CqtMethod::Direct] {
            for isa in Isa::all_supported() {
                let cqt = Cqt::with_method(params, method)
                    .unwrap()
                    .with_isa(isa)
                    .unwrap();
                let got = cqt.magnitude(&audio.data).unwrap();
                assert_eq!(
                    [got.n_bins, got.n_frames],
                    [expected.shape[0], expected.shape[1]],
                    "{name}"
                );
                let (worst, at) = got
                    .values
                    .iter()
                    .zip(&expected.data)
                    .map(|(g, e)| (g - e).abs())
                    .enumerate()
                    .fold(
                        (0f32, 0),
                        |(w, a), (i, e)| if e > w { (e, i) } else { (w, a) },
                    );
                println!(
                    "{name:>18} ({:>5} samples, {method:?}, {isa:?}): max abs error {worst:.3e} = {:.2e} × max magnitude {peak:.3} (bin {}, frame {})",
                    audio.data.len(),
                    worst / peak,
                    at / got.n_frames,
                    at % got.n_frames
                );
                // The tolerance; f32 sums over up to 19 856 taps in another order land
                // near 1e-6 × the peak.
                assert!(
                    worst <= 1e-4 * peak,
                    "{name} {method:?} {isa:?}: error {worst} > 1e-4 × {peak}"
                );
            }
        }
        cases += 1;
    }
    assert!(cases >= 6, "the manifest lists {cases} cases");
}

#[test]
fn kernels_match_nnaudio_tap_by_tap() {
    let text = std::fs::read_to_string(fixture_dir().join("kernels.txt")).unwrap();
    let fields: Vec<&str> = text.split_whitespace().collect();
    let params = parse_params(&fields);
    let re = npy::read(&fixture_dir().join("kernels.re.npy")).unwrap();
    let im = npy::read(&fixture_dir().join("kernels.im.npy")).unwrap();
    let kernels = CqtKernels::new(&params).unwrap();
    assert_eq!(re.shape, vec![params.n_bins, kernels.kernel_width]);
    let mut worst = 0f32;
    for (k, bin) in kernels.bins.iter().enumerate() {
        let row = k * kernels.kernel_width;
        let peak = (0..kernels.kernel_width)
            .map(|n| re.data[row + n].hypot(im.data[row + n]))
            .fold(0f32, f32::max);
        for n in 0..kernels.kernel_width {
            let (ours_re, ours_im) = match n.checked_sub(bin.start) {
                Some(i) if i < bin.length => (bin.re[i], bin.im[i]),
                _ => (0.0, 0.0),
            };
            let err = (ours_re - re.data[row + n])
                .abs()
                .max((ours_im - im.data[row + n]).abs());
            worst = worst.max(err / peak);
            // Both round the same f64 value to f32; libm differences move it by at most an ulp.
            assert!(
                err <= 2e-7 * peak,
                "bin {k} tap {n}: ({ours_re}, {ours_im}) vs ({}, {})",
                re.data[row + n],
                im.data[row + n]
            );
        }
    }
    println!("kernels: max tap error {worst:.2e} of each kernel's peak");
}

/// Small parameters keep emu fast: 24 bins, kernels of 72..270 taps (the longest blocked with a
/// hop of 32), kernel width 512, so 256 samples of padding.
fn kernel_test_params() -> CqtParams {
    CqtParams {
        sample_rate_hz: 8000,
        hop_length: 32,
        fmin_hz: 500.0,
        n_bins: 24,
        bins_per_octave: 12,
        filter_scale: 1.0,
    }
}

/// (clips, samples per clip): odd lengths, one shorter than the padding.
const KERNEL_TEST_SHAPES: [(usize, usize); 4] = [(3, 1001), (4, 777), (3, 201), (5, 2049)];

#[test]
fn cqt_kernels_match_cpu_reference_on_every_device() {
    for method in [CqtMethod::Direct, CqtMethod::Blocked] {
        let plan = Cqt::with_method(kernel_test_params(), method).unwrap();
        if method == CqtMethod::Blocked {
            assert!(
                plan.blocked_bins() > 0,
                "the test must exercise the blocked kernels"
            );
        }
        Equivalence::new(&format!("cqt ({method:?})"))
            // f32 sums in another order: ≲ 1e-7 of the peak (the blocked path sums blocks, then
            // weights them), judged relative to values down to the harness's floor of 1e-3 of
            // the peak: measured ≤ 6e-5 over 10 seeds.
            .tolerance(5e-4)
            .run(
                &KERNEL_TEST_SHAPES,
                |&(clips, len), rng| (len, rng.vec_f32(clips * len, -1.0, 1.0)),
                |device, (len, audio)| cqt(device, &plan, audio, *len),
            );
    }
}

#[test]
fn model_input_matches_the_papers_pipeline_on_the_mix_fixture() {
    let audio = npy::read(&fixture_dir().join("mix.audio.npy")).unwrap();
    let expected = npy::read(&fixture_dir().join("mix.input.npy")).unwrap();
    let cqt = Cqt::new(CqtParams::default()).unwrap();
    let (n_frames, values) = features::model_input(&cqt, &audio.data).unwrap();
    assert_eq!(vec![n_frames, 176], expected.shape);
    let worst = values
        .iter()
        .zip(&expected.data)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    println!("model input (log, normalised, frames × bins) vs torch + nnAudio: max abs error {worst:.2e}");
    // Inputs span [0, 1]; the CQT's ≤ 4e-6 relative difference is ≤ ~1e-5 after the log.
    assert!(worst <= 1e-4, "{worst}");
}

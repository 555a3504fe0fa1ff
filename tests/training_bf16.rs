//! Training with the opt-in bf16 products (`--precision bf16`): the whole network's loss and
//! parameter gradients against the float32 ones, from the bundled model's weights on one batch.
//! bf16 rounds every covered product's operands to 8 significant bits, so the gradients differ
//! element by element (the golden PyTorch tests hold the float32 path only); what training
//! needs is that each gradient tensor points the same way with about the same length. Checked
//! per parameter tensor: cosine similarity with the float32 gradient and the relative L2
//! error; every value finite. Skipped, with a printed line, on CPUs without AVX512-BF16.

use std::path::Path;

use mtosi::model::checkpoint::load_model;
use mtosi::model::tensor::StateEntry;
use mtosi::model::training::loss_and_gradients;
use mtosi::model::{GradientHooks, Tensor, Transcriber};
use mtosi::ops::conv2d::{bf16_supported, set_conv_precision, ConvPrecision};
use mtosi::rng::Rng;

const BATCH: usize = 2;
const FRAMES: usize = 192;
const BINS: usize = 176;
const KEYS: usize = 88;

/// Loss and every parameter's gradient (by name) of one step from the bundled weights.
fn gradients(spec: &Tensor, roll: &Tensor) -> (f32, Vec<(String, Vec<f32>)>) {
    let mut model = Transcriber::new(33);
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/mtosi-synth.safetensors");
    load_model(&path, &mut model).expect("the bundled checkpoint loads");
    let (_, loss) = loss_and_gradients(&mut model, spec, roll, &GradientHooks::default())
        .expect("a training step");
    let grads = model
        .state_entries()
        .into_iter()
        .filter_map(|entry| match entry {
            StateEntry::Param(p) => Some((p.name.clone(), p.grad.clone())),
            _ => None,
        })
        .collect();
    (loss, grads)
}

/// (cosine similarity, ‖a − b‖ / ‖b‖) in f64; `Err` on any non-finite value of `a`.
fn agreement(name: &str, a: &[f32], b: &[f32]) -> Result<(f64, f64), String> {
    assert_eq!(a.len(), b.len(), "{name}: lengths");
    if let Some(i) = a.iter().position(|x| !x.is_finite()) {
        return Err(format!("{name}: bf16 gradient [{i}] = {}", a[i]));
    }
    let (mut ab, mut aa, mut bb, mut diff) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (x as f64, y as f64);
        ab += x * y;
        aa += x * x;
        bb += y * y;
        diff += (x - y) * (x - y);
    }
    if bb == 0.0 {
        // A gradient that is zero in float32 must be zero in bf16 too.
        return if aa == 0.0 {
            Ok((1.0, 0.0))
        } else {
            Err(format!(
                "{name}: float32 gradient is zero, bf16's norm {}",
                aa.sqrt()
            ))
        };
    }
    Ok((
        ab / (aa.sqrt() * bb.sqrt()).max(f64::MIN_POSITIVE),
        (diff / bb).sqrt(),
    ))
}

#[test]
fn bf16_training_gradients_point_where_the_float32_ones_do() {
    if !bf16_supported() {
        println!("skipped: no AVX512-BF16 on this CPU (or MTOSI_FORCE_ISA narrows it)");
        return;
    }
    let mut rng = Rng::new(20261202);
    // A normalised spectrogram in [0, 1] and a roll with ~10 % of its keys on.
    let mut batch = || {
        let spec: Vec<f32> = (0..BATCH * FRAMES * BINS)
            .map(|_| rng.uniform_f32())
            .collect();
        let roll: Vec<f32> = (0..BATCH * FRAMES * KEYS)
            .map(|_| f32::from(rng.uniform_f32() < 0.1))
            .collect();
        (
            Tensor::new(vec![BATCH, FRAMES, BINS], spec),
            Tensor::new(vec![BATCH, FRAMES, KEYS], roll),
        )
    };
    let (spec, roll) = batch();
    let (other_spec, other_roll) = batch();

    set_conv_precision(ConvPrecision::Fp32).expect("float32 is always available");
    let (loss32, grads32) = gradients(&spec, &roll);
    // What training's own noise looks like: the float32 gradient of another batch.
    let (_, grads_other) = gradients(&other_spec, &other_roll);
    set_conv_precision(ConvPrecision::Bf16).expect("AVX512-BF16 was detected");
    let (loss16, grads16) = gradients(&spec, &roll);
    set_conv_precision(ConvPrecision::Fp32).expect("float32 is always available");

    println!("loss: float32 {loss32}, bf16 {loss16}");
    assert!(loss16.is_finite() && ((loss16 - loss32) / loss32).abs() < 1e-3);
    let norm = |g: &[f32]| {
        g.iter()
            .map(|&x| (x as f64) * (x as f64))
            .sum::<f64>()
            .sqrt()
    };
    let by_name: std::collections::HashMap<&str, &Vec<f32>> =
        grads32.iter().map(|(n, g)| (n.as_str(), g)).collect();
    let mut failures = Vec::new();
    let (mut worst_cos, mut worst_rel) = (1.0f64, 0.0f64);
    for (((name, g16), (name32, g32)), (_, g_other)) in
        grads16.iter().zip(&grads32).zip(&grads_other)
    {
        assert_eq!(name, name32);
        // A conv bias followed by a training-mode BatchNorm has a gradient of exactly zero (the
        // BN subtracts the batch mean): both are rounding noise, to be small beside the layer's
        // weight gradient rather than to agree.
        let weight = name
            .strip_suffix(".bias")
            .and_then(|layer| by_name.get(format!("{layer}.weight").as_str()));
        if let Some(weight) = weight.filter(|w| norm(g32) < 1e-4 * norm(w)) {
            let (noise, scale) = (norm(g16), norm(weight));
            println!(
                "{name}: zero in exact arithmetic; bf16 norm {:.1e} of the weight gradient's",
                noise / scale
            );
            if noise.is_nan() || noise > 1e-3 * scale {
                failures.push(format!(
                    "{name}: bf16 norm {noise} against the weight gradient's {scale}"
                ));
            }
            continue;
        }
        match agreement(name, g16, g32) {
            Ok((cos, rel)) => {
                let (_, batch_rel) = agreement(name, g_other, g32).expect("finite float32");
                println!(
                    "{name}: cosine {cos:.6}, relative L2 error {rel:.2e} (another batch: {batch_rel:.2e})"
                );
                worst_cos = worst_cos.min(cos);
                worst_rel = worst_rel.max(rel);
                // Measured (Zen 4): cosine ≥ 0.994, relative error ≤ 0.12, and at most 0.17 of
                // the batch-to-batch difference (mostly under 0.05), for every tensor.
                if !(cos >= 0.98 && rel <= 0.25 && rel <= 0.5 * batch_rel) {
                    failures.push(format!(
                        "{name}: cosine {cos}, relative L2 error {rel} (another batch: {batch_rel})"
                    ));
                }
            }
            Err(message) => failures.push(message),
        }
    }
    println!("worst: cosine {worst_cos:.6}, relative L2 error {worst_rel:.2e}");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

//! Checkpoints: safetensors with PyTorch's names round-trip exactly, a run resumed from a
//! saved training state continues bit for bit, and bad files are refused with the file and
//! the first bad tensor named, leaving the model untouched.

use std::collections::BTreeMap;
use std::path::Path;

use mtosi::model::checkpoint::{
    load_model, load_training_state, optimizer_path, save_model, save_training_state,
    CheckpointError, StoredTensor, TensorFile, TensorProblem,
};
use mtosi::model::init::uniform_unit;
use mtosi::model::tensor::StateEntry;
use mtosi::model::training::{train_step, Optimizer, TrainingConfig};
use mtosi::model::{Tensor, Transcriber, N_BINS, N_KEYS};

/// Every state_dict entry's values, as f64 for comparison (counts included).
fn snapshot(model: &mut Transcriber) -> BTreeMap<String, Vec<f64>> {
    model
        .state_entries()
        .into_iter()
        .map(|entry| match entry {
            StateEntry::Param(p) => (p.name.clone(), p.value.iter().map(|&v| v as f64).collect()),
            StateEntry::Buffer(b) => (b.name.clone(), b.value.iter().map(|&v| v as f64).collect()),
            StateEntry::Count { name, value } => (name.to_string(), vec![*value as f64]),
        })
        .collect()
}

fn batch(seed: u64, frames: usize) -> (Tensor, Tensor) {
    let spec: Vec<f32> = uniform_unit(seed, "spec", 2 * frames * N_BINS)
        .map(|u| u as f32)
        .collect();
    let roll: Vec<f32> = uniform_unit(seed, "roll", 2 * frames * N_KEYS)
        .map(|u| if u < 0.1 { 1.0 } else { 0.0 })
        .collect();
    (
        Tensor::new(vec![2, frames, N_BINS], spec),
        Tensor::new(vec![2, frames, N_KEYS], roll),
    )
}

/// The seed of a random test, by the harness's rule (`MTOSI_TEST_SEED` replays it).
fn fresh_seed(test: &str) -> u64 {
    mtosi::device::equivalence::test_seed(test)
}

#[test]
fn saved_model_loads_back_identically_with_pytorch_names() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    let seed = fresh_seed("saved_model_loads_back_identically_with_pytorch_names");
    let mut model = Transcriber::new(seed);
    save_model(&path, &mut model, 0).unwrap();

    let file = TensorFile::read(&path).unwrap();
    assert_eq!(file.tensors.len(), 147);
    let conv = &file.tensors["Unet1_encoder.block1.conv1.weight"];
    assert_eq!(conv.shape, [16, 1, 3, 3]);
    assert_eq!(
        file.tensors["Unet1_decoder.d_block1.us.weight"].shape,
        [128, 128, 2, 2]
    );
    assert_eq!(file.tensors["lstm1.weight_ih_l0_reverse"].shape, [704, 176]);
    assert_eq!(file.tensors["linear.bias"].shape, [88]);
    assert_eq!(
        file.tensors["Unet1_encoder.block1.bn1.num_batches_tracked"].shape,
        Vec::<usize>::new()
    );
    let parameters: usize = model.params_mut().iter().map(|p| p.len()).sum();
    assert_eq!(parameters, 1_350_145);
    assert_eq!(model.params_mut().len(), 102);

    let mut other = Transcriber::new(seed.wrapping_add(1));
    assert_ne!(snapshot(&mut other), snapshot(&mut model));
    load_model(&path, &mut other).unwrap();
    assert_eq!(snapshot(&mut other), snapshot(&mut model));
}

#[test]
fn resumed_training_continues_bit_for_bit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    let seed = fresh_seed("resumed_training_continues_bit_for_bit");
    let config = TrainingConfig::default();
    let batches: Vec<_> = (0..3).map(|i| batch(seed.wrapping_add(i), 16)).collect();

    let mut straight = Transcriber::new(seed);
    let mut optimizer = Optimizer::new(&mut straight, config.adam);
    for (spec, roll) in &batches {
        train_step(&mut straight, &mut optimizer, spec, roll, &config).unwrap();
    }

    let mut first = Transcriber::new(seed);
    let mut first_optimizer = Optimizer::new(&mut first, config.adam);
    for (spec, roll) in &batches[..2] {
        train_step(&mut first, &mut first_optimizer, spec, roll, &config).unwrap();
    }
    let extra = BTreeMap::from([("sampler_rng".to_string(), "12345:678".to_string())]);
    save_training_state(&path, &mut first, &first_optimizer, &extra).unwrap();
    assert!(optimizer_path(&path).exists());

    let mut resumed = Transcriber::new(seed.wrapping_add(99));
    let (mut resumed_optimizer, resumed_extra) = load_training_state(&path, &mut resumed).unwrap();
    assert_eq!(resumed_extra, extra);
    assert_eq!(resumed_optimizer, first_optimizer);
    let (spec, roll) = &batches[2];
    train_step(&mut resumed, &mut resumed_optimizer, spec, roll, &config).unwrap();

    assert_eq!(snapshot(&mut resumed), snapshot(&mut straight));
    assert_eq!(resumed_optimizer, optimizer);
}

/// Writes `model`'s state_dict changed by `edit`, loads it, and returns the error.
fn load_edited(edit: impl FnOnce(&mut TensorFile)) -> (CheckpointError, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap().keep();
    let path = dir.join("edited.safetensors");
    let mut model = Transcriber::new(1);
    let mut file = mtosi::model::checkpoint::model_to_file(&mut model, 0);
    edit(&mut file);
    file.write(&path).unwrap();
    let mut target = Transcriber::new(2);
    let before = snapshot(&mut target);
    let err = load_model(&path, &mut target).unwrap_err();
    assert_eq!(
        snapshot(&mut target),
        before,
        "a failed load must leave the model unchanged"
    );
    println!("{err}");
    (err, path)
}

fn assert_bad_tensor(
    err: &CheckpointError,
    path: &Path,
    tensor: &str,
    expected: impl Fn(&TensorProblem) -> bool,
) {
    match err {
        CheckpointError::Tensor {
            path: p,
            name,
            problem,
        } => {
            assert_eq!(p, path);
            assert_eq!(name, tensor);
            assert!(expected(problem), "unexpected problem {problem:?}");
            let message = err.to_string();
            assert!(
                message.contains(&path.display().to_string()) && message.contains(tensor),
                "{message}"
            );
        }
        other => panic!("expected a tensor error, got {other}"),
    }
}

#[test]
fn missing_unexpected_misshapen_mistyped_and_nan_tensors_are_named() {
    let (err, path) = load_edited(|f| {
        f.tensors.remove("Unet1_decoder.d_block2.bn1d.running_var");
    });
    assert_bad_tensor(
        &err,
        &path,
        "Unet1_decoder.d_block2.bn1d.running_var",
        |p| *p == TensorProblem::Missing,
    );

    let (err, path) = load_edited(|f| {
        f.tensors.insert(
            "decoder.extra".into(),
            StoredTensor::from_f32(vec![1], &[0.0]),
        );
    });
    assert_bad_tensor(&err, &path, "decoder.extra", |p| {
        *p == TensorProblem::Unexpected
    });

    let (err, path) = load_edited(|f| {
        f.tensors.insert(
            "linear.weight".into(),
            StoredTensor::from_f32(vec![88, 351], &vec![0.0; 88 * 351]),
        );
    });
    assert_bad_tensor(&err, &path, "linear.weight", |p| {
        matches!(p, TensorProblem::Shape { .. })
    });

    let (err, path) = load_edited(|f| {
        let t = f.tensors.get_mut("lstm1.bias_hh_l0").unwrap();
        let values: Vec<i64> = vec![0; 704];
        *t = StoredTensor::from_i64(vec![704], &values);
    });
    assert_bad_tensor(&err, &path, "lstm1.bias_hh_l0", |p| {
        matches!(p, TensorProblem::Dtype { .. })
    });

    let (err, path) = load_edited(|f| {
        let t = f
            .tensors
            .get_mut("Unet1_encoder.block3.skip.weight")
            .unwrap();
        let mut values = t.to_f32().unwrap();
        values[7] = f32::NAN;
        *t = StoredTensor::from_f32(t.shape.clone(), &values);
    });
    assert_bad_tensor(&err, &path, "Unet1_encoder.block3.skip.weight", |p| {
        matches!(p, TensorProblem::NotFinite { index: 7, .. })
    });
}

#[test]
fn missing_batch_counters_load_as_zero_as_in_pytorch() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.safetensors");
    let mut model = Transcriber::new(5);
    let mut file = mtosi::model::checkpoint::model_to_file(&mut model, 0);
    file.tensors
        .retain(|name, _| !name.ends_with("num_batches_tracked"));
    file.write(&path).unwrap();
    let mut loaded = Transcriber::new(6);
    load_model(&path, &mut loaded).unwrap();
    assert_eq!(snapshot(&mut loaded), snapshot(&mut model));
}

#[test]
fn truncated_file_names_the_first_cut_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.safetensors");
    let mut model = Transcriber::new(3);
    save_model(&path, &mut model, 0).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1000]).unwrap();
    let err = load_model(&path, &mut model).unwrap_err();
    println!("{err}");
    // safetensors lays tensors out by name; the last one by name is cut first.
    assert_bad_tensor(&err, &path, "lstm1.weight_ih_l0_reverse", |p| {
        matches!(p, TensorProblem::Truncated { .. })
    });

    std::fs::write(&path, &bytes[..5]).unwrap();
    let err = load_model(&path, &mut model).unwrap_err();
    assert!(matches!(err, CheckpointError::Format { .. }), "{err}");
    assert!(err.to_string().contains("cut.safetensors"), "{err}");
}

#[test]
fn resume_refuses_a_training_state_from_another_step() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("run.safetensors");
    let mut model = Transcriber::new(4);
    let mut optimizer = Optimizer::new(&mut model, TrainingConfig::default().adam);
    save_training_state(&path, &mut model, &optimizer, &BTreeMap::new()).unwrap();
    optimizer.step = 5;
    save_model(&path, &mut model, 6).unwrap();
    let err = load_training_state(&path, &mut model).unwrap_err();
    assert!(matches!(err, CheckpointError::Metadata { .. }), "{err}");
}

/// A training state converted from the original code's `.pt` files by
/// `tools/reference/convert_pt.py` resumes here. Needs Python to make the files, so it is
/// ignored by default: `MTOSI_CONVERTED=run.safetensors cargo test --test model_checkpoint -- --ignored`.
#[test]
#[ignore]
fn converted_pytorch_training_state_resumes() {
    let path =
        std::env::var_os("MTOSI_CONVERTED").expect("set MTOSI_CONVERTED to a converted checkpoint");
    let mut model = Transcriber::new(0);
    let (mut optimizer, _) = load_training_state(Path::new(&path), &mut model).unwrap();
    println!(
        "resumed at step {} with lr {}",
        optimizer.step,
        optimizer.scheduler.lr()
    );
    assert!(optimizer.step > 0);
    let (spec, roll) = batch(fresh_seed("converted_pytorch_training_state_resumes"), 16);
    let loss = train_step(
        &mut model,
        &mut optimizer,
        &spec,
        &roll,
        &TrainingConfig::default(),
    )
    .unwrap();
    assert!(loss.is_finite());
}

//! `mtosi transcribe` end to end on small files the test makes (and the codec fixtures), with a
//! checkpoint of random weights from `mtosi init`: what it writes and where, MIDI timing, a
//! folder of mixed formats, failures reported by name while the others go on, the exit status,
//! `--skip-existing`, nothing left behind and no input touched. Nothing here depends on the
//! model's quality.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mtosi::notes::midi::{encode_midi_with, parse_midi, MidiSettings};
use mtosi::notes::Note;

fn mtosi() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mtosi"))
}

fn run(args: &[&str]) -> Output {
    mtosi().args(args).output().unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/audio")
        .join(name)
}

/// A checkpoint of random weights (seed 1) in `dir`.
fn checkpoint(dir: &Path) -> PathBuf {
    let path = dir.join("init.safetensors");
    let out = run(&["init", "--seed", "1", "-o", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    path
}

/// A 16 kHz mono 16-bit WAV of `seconds` of a chord of decaying tones.
fn write_tone_wav(path: &Path, seconds: f64) {
    let samples: Vec<f32> = (0..(seconds * 16_000.0) as usize)
        .map(|i| {
            let t = i as f32 / 16_000.0;
            let decay = (-3.0 * (t % 0.5)).exp();
            0.2 * decay
                * [261.6f32, 329.6, 392.0]
                    .iter()
                    .map(|f| (2.0 * std::f32::consts::PI * f * t).sin())
                    .sum::<f32>()
        })
        .collect();
    mtosi::audio::write_wav16(path, &samples, 16_000).unwrap();
}

/// Every file under `dir`, relative, sorted.
fn listing(dir: &Path) -> Vec<String> {
    if !dir.exists() {
        return Vec::new();
    }
    let mut names: Vec<String> = walk(dir)
        .into_iter()
        .map(|p| p.strip_prefix(dir).unwrap().display().to_string())
        .collect();
    names.sort();
    names
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn one_file_gives_midi_notes_picture_and_roll_that_agree() {
    let dir = tempfile::tempdir().unwrap();
    let model = checkpoint(dir.path());
    let input = dir.path().join("chord.wav");
    write_tone_wav(&input, 3.0);
    let out_dir = dir.path().join("out");
    let roll = dir.path().join("roll.npy");
    let out = run(&[
        "transcribe",
        input.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--checkpoint",
        model.to_str().unwrap(),
        "--notes",
        "tsv",
        "--png",
        "--roll",
        roll.to_str().unwrap(),
        "--threshold",
        "0.3",
        "--velocity",
        "99",
        "--program",
        "25",
        "--tempo",
        "90",
    ]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(listing(&out_dir), ["chord.mid", "chord.png", "chord.tsv"]);
    // The roll: frames × 88 probabilities for 3 s (48 000 samples → (L − 1) / 512 + 1 = 94).
    let array = mtosi::npy::read(&roll).unwrap();
    assert_eq!(array.shape, vec![94, 88]);
    assert!(array.data.iter().all(|p| (0.0..=1.0).contains(p)));
    // The notes are the roll decoded at the threshold asked for, in the TSV and the MIDI file.
    let decoded = mtosi::decode::decode_frame_notes(
        &array.data,
        &mtosi::decode::DecodeOptions {
            frame_threshold: 0.3,
            ..Default::default()
        },
    );
    let tsv = mtosi::notes::read_notes(&out_dir.join("chord.tsv")).unwrap();
    assert_eq!(tsv.len(), decoded.len());
    let bytes = std::fs::read(out_dir.join("chord.mid")).unwrap();
    let midi = parse_midi(&bytes).unwrap();
    assert_eq!(midi.len(), decoded.len());
    assert!(
        !decoded.is_empty(),
        "random weights at 0.3 still give notes"
    );
    for note in &midi {
        assert_eq!(note.velocity, 99);
    }
    let smf = midly::Smf::parse(&bytes).unwrap();
    assert_eq!(smf.tracks.len(), 1);
    let events: Vec<_> = smf.tracks[0].iter().map(|e| e.kind).collect();
    assert!(events.iter().any(|k| matches!(
        k,
        midly::TrackEventKind::Meta(midly::MetaMessage::Tempo(t)) if t.as_int() == 666_667
    )));
    assert!(events.iter().any(|k| matches!(
        k,
        midly::TrackEventKind::Midi { message: midly::MidiMessage::ProgramChange { program }, .. }
            if program.as_int() == 25
    )));
    // The picture: one column per frame, 4 rows per key.
    let decoder = png::Decoder::new(std::io::BufReader::new(
        std::fs::File::open(out_dir.join("chord.png")).unwrap(),
    ));
    let info = decoder.read_info().unwrap().info().clone();
    assert_eq!((info.width, info.height), (94, 352));
}

#[test]
fn midi_events_land_within_a_millisecond_at_any_tempo() {
    // Times off every tick grid (multiples of 32 ms plus odd microseconds).
    let notes: Vec<Note> = (0..200)
        .map(|i| Note {
            onset_s: i as f64 * 0.032 + 0.000_377 * (i % 7) as f64,
            offset_s: i as f64 * 0.032 + 0.5 + 0.000_411 * (i % 5) as f64,
            pitch: 21 + (i % 88) as u8,
            velocity: 80,
        })
        .collect();
    for tempo in [4.0, 37.0, 120.0, 333.3, 1000.0] {
        let settings = MidiSettings::for_tempo(0, tempo, 1e-3).unwrap();
        let back = parse_midi(&encode_midi_with(&notes, &settings).unwrap()).unwrap();
        assert_eq!(back.len(), notes.len());
        let mut expected = notes.clone();
        expected.sort_by(|a, b| a.onset_s.total_cmp(&b.onset_s).then(a.pitch.cmp(&b.pitch)));
        let mut back = back;
        back.sort_by(|a, b| a.onset_s.total_cmp(&b.onset_s).then(a.pitch.cmp(&b.pitch)));
        for (a, b) in expected.iter().zip(&back) {
            assert_eq!(a.pitch, b.pitch);
            assert!(
                (a.onset_s - b.onset_s).abs() <= 1e-3 && (a.offset_s - b.offset_s).abs() <= 1e-3,
                "{tempo} bpm: {a:?} read back as {b:?}"
            );
        }
    }
    assert!(MidiSettings::for_tempo(0, 0.0, 1e-3).is_err());
}

#[test]
fn a_folder_of_formats_with_a_bad_file_transcribes_the_rest_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let model = checkpoint(dir.path());
    let songs = dir.path().join("songs");
    std::fs::create_dir_all(songs.join("more")).unwrap();
    write_tone_wav(&songs.join("a.wav"), 1.0);
    std::fs::copy(fixture("tone_44k1_stereo_16bit.flac"), songs.join("b.flac")).unwrap();
    std::fs::copy(fixture("tone_44k1_stereo.mp3"), songs.join("more/c.mp3")).unwrap();
    std::fs::copy(fixture("tone_44k1_stereo.ogg"), songs.join("d.ogg")).unwrap();
    std::fs::copy(fixture("tone_44k1_stereo.m4a"), songs.join("e.m4a")).unwrap();
    std::fs::write(
        songs.join("broken.mp3"),
        b"this is a text file, not audio\n",
    )
    .unwrap();
    std::fs::write(
        songs.join("notes.txt"),
        b"not picked up: no audio extension",
    )
    .unwrap();
    let before = listing(&songs);
    let out_dir = dir.path().join("midi");
    let args = [
        "transcribe",
        songs.to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--checkpoint",
        model.to_str().unwrap(),
    ];
    let out = run(&args);
    let log = text(&out);
    assert!(
        !out.status.success(),
        "one file failed, so must the run: {log}"
    );
    assert!(
        log.contains("broken.mp3") && log.contains("not a WAV, FLAC, MP3"),
        "{log}"
    );
    assert!(log.contains("1 of 6 files failed"), "{log}");
    assert_eq!(
        listing(&out_dir),
        ["a.mid", "b.mid", "d.mid", "e.mid", "more/c.mid"]
    );
    assert_eq!(listing(&songs), before, "inputs untouched, nothing added");
    // --skip-existing leaves finished files alone (their bytes and times) and retries the rest.
    let stamp = |p: &Path| std::fs::metadata(p).unwrap().modified().unwrap();
    let a_time = stamp(&out_dir.join("a.mid"));
    std::fs::remove_file(songs.join("broken.mp3")).unwrap();
    std::fs::remove_file(out_dir.join("b.mid")).unwrap();
    let mut again = args.to_vec();
    again.push("--skip-existing");
    let out = run(&again);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("4 skipped"), "{}", text(&out));
    assert_eq!(stamp(&out_dir.join("a.mid")), a_time);
    assert!(out_dir.join("b.mid").exists());
}

#[test]
fn outputs_never_replace_an_input_and_clash_before_anything_runs() {
    let dir = tempfile::tempdir().unwrap();
    let model = checkpoint(dir.path());
    // An MP3 named like the MIDI output it would get.
    let disguised = dir.path().join("x.mid");
    std::fs::copy(fixture("tone_44k1_stereo.mp3"), &disguised).unwrap();
    let original = std::fs::read(&disguised).unwrap();
    let out = run(&[
        "transcribe",
        disguised.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
        "--checkpoint",
        model.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("overwrite an input"), "{}", text(&out));
    assert_eq!(std::fs::read(&disguised).unwrap(), original);
    // Two inputs with one stem in one output folder.
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir_all(&a).unwrap();
    std::fs::create_dir_all(&b).unwrap();
    write_tone_wav(&a.join("song.wav"), 1.0);
    write_tone_wav(&b.join("song.wav"), 1.0);
    let out_dir = dir.path().join("out");
    let out = run(&[
        "transcribe",
        a.join("song.wav").to_str().unwrap(),
        b.join("song.wav").to_str().unwrap(),
        "-o",
        out_dir.to_str().unwrap(),
        "--checkpoint",
        model.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(
        text(&out).contains("would both be written"),
        "{}",
        text(&out)
    );
    assert!(
        !out_dir.exists(),
        "nothing written before the clash was found"
    );
}

#[test]
fn bad_inputs_are_errors_naming_the_file_and_leave_nothing_behind() {
    let dir = tempfile::tempdir().unwrap();
    let model = checkpoint(dir.path());
    let bad = dir.path().join("bad");
    std::fs::create_dir_all(&bad).unwrap();
    let write_wav = |name: &str, spec: hound::WavSpec, samples: &[f32]| {
        let mut w = hound::WavWriter::create(bad.join(name), spec).unwrap();
        for &s in samples {
            if spec.sample_format == hound::SampleFormat::Float {
                w.write_sample(s).unwrap();
            } else {
                w.write_sample((s * 32767.0) as i16).unwrap();
            }
        }
        w.finalize().unwrap();
    };
    let pcm16 = hound::WavSpec {
        channels: 1,
        sample_rate: 16_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let float = hound::WavSpec {
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
        ..pcm16
    };
    write_wav("silent.wav", pcm16, &vec![0.0; 32_000]);
    write_wav("all_nan.wav", float, &vec![f32::NAN; 32_000]);
    write_wav("short.wav", pcm16, &vec![0.1; 1_000]);
    write_wav("zero_length.wav", pcm16, &[]);
    // 0 Hz: a valid header whose rate field is patched to 0.
    write_wav("zero_hz.wav", pcm16, &vec![0.1; 32_000]);
    let mut bytes = std::fs::read(bad.join("zero_hz.wav")).unwrap();
    bytes[24..28].copy_from_slice(&0u32.to_le_bytes());
    bytes[28..32].copy_from_slice(&0u32.to_le_bytes());
    std::fs::write(bad.join("zero_hz.wav"), &bytes).unwrap();
    // 2 Hz: 32 000 samples would resample to 256 million.
    let mut slow = bytes.clone();
    slow[24..28].copy_from_slice(&2u32.to_le_bytes());
    slow[28..32].copy_from_slice(&4u32.to_le_bytes());
    std::fs::write(bad.join("two_hz.wav"), &slow).unwrap();
    // A header claiming a 4 GiB data chunk of 8 channels at 192 kHz over 100 real samples.
    let mut huge = std::fs::read(bad.join("short.wav")).unwrap();
    huge[22..24].copy_from_slice(&8u16.to_le_bytes());
    huge[24..28].copy_from_slice(&192_000u32.to_le_bytes());
    huge[28..32].copy_from_slice(&(192_000u32 * 16).to_le_bytes());
    huge[32..34].copy_from_slice(&16u16.to_le_bytes());
    huge[40..44].copy_from_slice(&0xFFFF_FFF0u32.to_le_bytes());
    huge.truncate(44 + 200);
    std::fs::write(bad.join("huge_header.wav"), &huge).unwrap();
    std::fs::write(bad.join("empty.flac"), b"").unwrap();
    std::fs::write(bad.join("text.wav"), b"hello, I am not a recording").unwrap();
    let flac = std::fs::read(fixture("tone_44k1_stereo_16bit.flac")).unwrap();
    std::fs::write(bad.join("truncated.flac"), &flac[..flac.len() * 2 / 3]).unwrap();
    let cases = [
        ("silent.wav", "silent"),
        ("all_nan.wav", "not a finite number"),
        ("short.wav", "too short"),
        ("zero_length.wav", "too short"),
        ("zero_hz.wav", "0 Hz"),
        ("two_hz.wav", "sample rate 2 Hz"),
        ("huge_header.wav", "truncated WAV"),
        ("empty.flac", "empty"),
        ("text.wav", "not a WAV, FLAC"),
        ("truncated.flac", "truncated FLAC"),
    ];
    let before = listing(&bad);
    let out_dir = dir.path().join("out");
    for (name, problem) in cases {
        let path = bad.join(name);
        let out = run(&[
            "transcribe",
            path.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
            "--checkpoint",
            model.to_str().unwrap(),
            "--png",
            "--notes",
            "jams",
        ]);
        let log = text(&out);
        assert!(!out.status.success(), "{name}: {log}");
        assert!(!log.contains("panicked"), "{name}: {log}");
        let line = log
            .lines()
            .find(|l| l.contains(&path.display().to_string()) && l.starts_with("error"))
            .unwrap_or_else(|| panic!("{name}: no error line naming the file in {log}"));
        assert!(line.contains(problem), "{name}: {line}");
        assert!(
            listing(&out_dir).is_empty(),
            "{name} left {:?}",
            listing(&out_dir)
        );
    }
    assert_eq!(listing(&bad), before, "inputs untouched");
}

#[test]
fn corrupted_or_mismatched_checkpoints_are_refused_naming_the_tensor() {
    let dir = tempfile::tempdir().unwrap();
    let model = checkpoint(dir.path());
    let input = dir.path().join("a.wav");
    write_tone_wav(&input, 1.0);
    let bytes = std::fs::read(&model).unwrap();
    let cut = dir.path().join("cut.safetensors");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    // Another network's file: one tensor of the wrong shape.
    let mut file = mtosi::model::checkpoint::TensorFile::read(&model).unwrap();
    file.tensors.insert(
        "linear.weight".into(),
        mtosi::model::checkpoint::StoredTensor::from_f32(vec![10, 352], &[0.0; 3520]),
    );
    let other = dir.path().join("other.safetensors");
    file.write(&other).unwrap();
    let out_dir = dir.path().join("out");
    for (checkpoint, problem) in [
        (&cut, "truncated"),
        (&other, "\"linear.weight\": shape [10, 352]"),
    ] {
        let out = run(&[
            "transcribe",
            input.to_str().unwrap(),
            "-o",
            out_dir.to_str().unwrap(),
            "--checkpoint",
            checkpoint.to_str().unwrap(),
        ]);
        let log = text(&out);
        assert!(!out.status.success());
        assert!(
            log.contains(&checkpoint.display().to_string()) && log.contains(problem),
            "{log}"
        );
        assert!(!out_dir.exists());
    }
}

#[test]
fn without_a_bundled_model_or_checkpoint_the_error_says_what_to_pass() {
    if mtosi::transcribe::bundled::bundled_model_bytes().is_some() {
        return; // a build with a bundled model transcribes instead
    }
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("a.wav");
    write_tone_wav(&input, 1.0);
    let out = run(&[
        "transcribe",
        input.to_str().unwrap(),
        "-o",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--checkpoint"), "{}", text(&out));
    let out = run(&["models"]);
    assert!(out.status.success());
    assert!(text(&out).contains("no bundled model"), "{}", text(&out));
}

/// `--device emu` runs the network's kernels on every batch of windows and gives the cpu's
/// probabilities (within 1e-4 of the peak, what `mtosi forward --device emu` promises); a
/// device that is not there is an error naming the option.
#[test]
fn transcription_on_emu_gives_the_cpu_roll_and_a_missing_gpu_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let model = checkpoint(dir.path());
    let input = dir.path().join("chord.wav");
    // 3 s: 94 frames, in two windows of 64 frames with --chunk-frames 32 --context-frames 16.
    write_tone_wav(&input, 3.0);
    let roll_on = |device: &str| {
        let roll = dir.path().join(format!("roll-{device}.npy"));
        let out = run(&[
            "transcribe",
            input.to_str().unwrap(),
            "-o",
            dir.path().join(device).to_str().unwrap(),
            "--checkpoint",
            model.to_str().unwrap(),
            "--roll",
            roll.to_str().unwrap(),
            "--device",
            device,
            "--chunk-frames",
            "32",
            "--context-frames",
            "16",
        ]);
        assert!(out.status.success(), "{device}: {}", text(&out));
        mtosi::npy::read(&roll).unwrap()
    };
    let cpu = roll_on("cpu");
    let emu = roll_on("emu");
    assert_eq!(emu.shape, cpu.shape);
    mtosi::compare::assert_close(
        "transcribe roll, emu against cpu",
        &emu.data,
        &cpu.data,
        mtosi::compare::ErrorScale::of_peak(),
        1e-4,
    );
    let out = run(&["transcribe", input.to_str().unwrap(), "--device", "cuda:7"]);
    assert!(!out.status.success());
    assert!(text(&out).contains("--device cuda:7"), "{}", text(&out));
}

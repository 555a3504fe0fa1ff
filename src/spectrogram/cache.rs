//! A disk cache of CQT magnitudes, so a dataset's spectrograms are computed once.
//!
//! An entry is named by a BLAKE3 hash of the cache format version, every CQT parameter and
//! the audio samples, so changing either computes a new entry. Magnitudes are stored as f16
//! (half the size of f32), scaled by a power of two so the largest is just under f16's limit:
//! that moves the network's input (normalised log magnitude in [0, 1]) by at most
//! ~1e-3 / (the image's range of log magnitudes, ~12 for music), ~6e-5 on music-like audio,
//! measured by `f16_storage_error_is_negligible_in_network_inputs`: 60× finer than one step
//! of an 8-bit image.
//!
//! Safe against concurrent fillers and crashes: an entry is written to a unique temporary
//! file and renamed into place (two processes computing the same entry write the same bytes;
//! the last rename wins). Every entry ends with a BLAKE3 checksum of its bytes; a truncated,
//! corrupt or foreign file is recomputed and replaced, never trusted.
//!
//! Layout, little-endian: magic `MTOSICQT`, version u32, key [u8; 32], n_bins u32, n_frames
//! u32, scale exponent i32, then n_bins × n_frames f16 (value / 2^exponent, row-major by bin),
//! then the checksum [u8; 32] of everything before it.

use std::path::{Path, PathBuf};

use half::f16;

use super::{Cqt, CqtParams, Spectrogram, SpectrogramError};
use crate::fsutil;

const MAGIC: &[u8; 8] = b"MTOSICQT";
/// Bump when the layout, the stored quantity or the CQT's definition changes.
pub const FORMAT_VERSION: u32 = 1;
const HEADER_LEN: usize = 8 + 4 + 32 + 4 + 4 + 4;
const CHECKSUM_LEN: usize = 32;
/// Largest power of two below f16::MAX (65 504): stored values are scaled to just under it.
const F16_LIMIT: f32 = 32_768.0;

/// What a lookup did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Read from a valid entry.
    Hit,
    /// No entry: computed and stored.
    Computed,
    /// An entry was there but invalid (the reason); recomputed and replaced.
    Recomputed(String),
}

/// A directory of spectrograms for one CQT parameter set.
pub struct SpectrogramCache<'a> {
    dir: PathBuf,
    cqt: &'a Cqt,
}

impl<'a> SpectrogramCache<'a> {
    /// Uses (and creates) `dir`.
    pub fn new(dir: &Path, cqt: &'a Cqt) -> Result<Self, SpectrogramError> {
        std::fs::create_dir_all(dir).map_err(|source| SpectrogramError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        Ok(Self {
            dir: dir.to_path_buf(),
            cqt,
        })
    }

    /// The entry's key: BLAKE3 of the format version, the parameters and the samples.
    pub fn key(&self, audio: &[f32]) -> [u8; 32] {
        entry_key(self.cqt.params(), audio)
    }

    /// The file an entry lives in.
    pub fn entry_path(&self, audio: &[f32]) -> PathBuf {
        self.dir.join(format!("{}.cqt", hex(&self.key(audio))))
    }

    /// The CQT magnitudes of `audio` (rounded to f16 precision), from the cache if a valid
    /// entry exists, else computed and stored.
    pub fn magnitude(
        &self,
        audio: &[f32],
    ) -> Result<(Spectrogram, CacheOutcome), SpectrogramError> {
        let key = self.key(audio);
        let path = self.dir.join(format!("{}.cqt", hex(&key)));
        let stale = match std::fs::read(&path) {
            Ok(bytes) => match decode(&bytes, &key) {
                Ok(spec) => return Ok((spec, CacheOutcome::Hit)),
                Err(reason) => Some(reason),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(source) => return Err(SpectrogramError::Io { path, source }),
        };
        let spec = self.cqt.magnitude(audio)?;
        let bytes = encode(&spec, &key);
        fsutil::write_bytes_atomic(&path, &bytes).map_err(|source| SpectrogramError::Io {
            path: path.clone(),
            source,
        })?;
        let spec = decode(&bytes, &key).expect("a freshly encoded entry decodes");
        Ok((
            spec,
            stale.map_or(CacheOutcome::Computed, CacheOutcome::Recomputed),
        ))
    }
}

fn entry_key(params: &CqtParams, audio: &[f32]) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(MAGIC);
    h.update(&FORMAT_VERSION.to_le_bytes());
    h.update(&params.sample_rate_hz.to_le_bytes());
    h.update(&(params.hop_length as u64).to_le_bytes());
    h.update(&params.fmin_hz.to_le_bytes());
    h.update(&(params.n_bins as u64).to_le_bytes());
    h.update(&(params.bins_per_octave as u64).to_le_bytes());
    h.update(&params.filter_scale.to_le_bytes());
    h.update(&(audio.len() as u64).to_le_bytes());
    for chunk in audio.chunks(4096) {
        let bytes: Vec<u8> = chunk.iter().flat_map(|s| s.to_le_bytes()).collect();
        h.update(&bytes);
    }
    *h.finalize().as_bytes()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The power of two that brings `max` just under the f16 limit. Scaling by a power of two is
/// exact, and lifting quiet spectrograms up keeps their small values out of f16's subnormal
/// range (below 6.1e-5), where the relative error would grow.
fn scale_exponent(max: f32) -> i32 {
    if max > 0.0 && max.is_finite() {
        ((max / F16_LIMIT).log2().ceil() as i32).clamp(-100, 100)
    } else {
        0
    }
}

fn encode(spec: &Spectrogram, key: &[u8; 32]) -> Vec<u8> {
    let max = spec.values.iter().cloned().fold(0f32, f32::max);
    let exponent = scale_exponent(max);
    let scale = (-exponent as f32).exp2();
    let mut bytes = Vec::with_capacity(HEADER_LEN + 2 * spec.values.len() + CHECKSUM_LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(key);
    bytes.extend_from_slice(&(spec.n_bins as u32).to_le_bytes());
    bytes.extend_from_slice(&(spec.n_frames as u32).to_le_bytes());
    bytes.extend_from_slice(&exponent.to_le_bytes());
    for &v in &spec.values {
        bytes.extend_from_slice(&f16::from_f32(v * scale).to_le_bytes());
    }
    let checksum = blake3::hash(&bytes);
    bytes.extend_from_slice(checksum.as_bytes());
    bytes
}

fn decode(bytes: &[u8], key: &[u8; 32]) -> Result<Spectrogram, String> {
    if bytes.len() < HEADER_LEN + CHECKSUM_LEN {
        return Err(format!("truncated: {} bytes", bytes.len()));
    }
    let (body, checksum) = bytes.split_at(bytes.len() - CHECKSUM_LEN);
    if blake3::hash(body).as_bytes() != checksum {
        return Err("checksum mismatch (corrupt or truncated)".into());
    }
    let u32_at = |at: usize| u32::from_le_bytes(body[at..at + 4].try_into().unwrap());
    if &body[..8] != MAGIC {
        return Err("not a spectrogram cache entry".into());
    }
    if u32_at(8) != FORMAT_VERSION {
        return Err(format!(
            "format version {} (expected {FORMAT_VERSION})",
            u32_at(8)
        ));
    }
    if &body[12..44] != key {
        return Err("entry belongs to other audio or parameters".into());
    }
    let (n_bins, n_frames) = (u32_at(44) as usize, u32_at(48) as usize);
    let exponent = u32_at(52) as i32;
    let payload = &body[HEADER_LEN..];
    if payload.len() != 2 * n_bins * n_frames {
        return Err(format!(
            "{n_bins} × {n_frames} values need {} bytes, entry has {}",
            2 * n_bins * n_frames,
            payload.len()
        ));
    }
    let scale = (exponent as f32).exp2();
    let values = payload
        .chunks_exact(2)
        .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32() * scale)
        .collect();
    Ok(Spectrogram {
        n_bins,
        n_frames,
        values,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spectrogram::features::{log_compress, normalize_imagewise};

    fn params() -> CqtParams {
        CqtParams {
            sample_rate_hz: 8000,
            hop_length: 128,
            fmin_hz: 110.0,
            n_bins: 36,
            bins_per_octave: 12,
            filter_scale: 1.0,
        }
    }

    fn music(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = crate::rng::Rng::new(seed);
        let notes: Vec<(f32, f32)> = (0..6)
            .map(|_| {
                (
                    rng.uniform_f32() * len as f32,
                    110.0 * 2f32.powf(rng.uniform_f32() * 4.0),
                )
            })
            .collect();
        (0..len)
            .map(|i| {
                let tone: f32 = notes
                    .iter()
                    .filter(|&&(onset, _)| i as f32 >= onset)
                    .map(|&(onset, f)| {
                        let t = (i as f32 - onset) / 8000.0;
                        (-3.0 * t).exp() * (2.0 * std::f32::consts::PI * f * t).sin() * 0.2
                    })
                    .sum();
                tone + (rng.uniform_f32() - 0.5) * 0.002
            })
            .collect()
    }

    #[test]
    fn second_lookup_is_a_hit_with_the_same_values() {
        let dir = tempfile::tempdir().unwrap();
        let cqt = Cqt::new(params()).unwrap();
        let cache = SpectrogramCache::new(dir.path(), &cqt).unwrap();
        let audio = music(9001, 1);
        let (first, outcome) = cache.magnitude(&audio).unwrap();
        assert_eq!(outcome, CacheOutcome::Computed);
        let (second, outcome) = cache.magnitude(&audio).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
        assert_eq!(first, second);
        assert!(cache.entry_path(&audio).exists());
    }

    #[test]
    fn a_changed_sample_or_parameter_is_a_new_entry() {
        let cqt = Cqt::new(params()).unwrap();
        let other = Cqt::new(CqtParams {
            hop_length: 64,
            ..params()
        })
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let audio = music(5000, 2);
        let mut changed = audio.clone();
        changed[4321] += 1e-6;
        let cache = SpectrogramCache::new(dir.path(), &cqt).unwrap();
        let other_cache = SpectrogramCache::new(dir.path(), &other).unwrap();
        assert_ne!(cache.key(&audio), cache.key(&changed));
        assert_ne!(cache.key(&audio), other_cache.key(&audio));
        cache.magnitude(&audio).unwrap();
        assert_eq!(cache.magnitude(&changed).unwrap().1, CacheOutcome::Computed);
        assert_eq!(
            other_cache.magnitude(&audio).unwrap().1,
            CacheOutcome::Computed
        );
    }

    #[test]
    fn corrupt_truncated_or_foreign_entries_are_recomputed() {
        let dir = tempfile::tempdir().unwrap();
        let cqt = Cqt::new(params()).unwrap();
        let cache = SpectrogramCache::new(dir.path(), &cqt).unwrap();
        let audio = music(6000, 3);
        let (good, _) = cache.magnitude(&audio).unwrap();
        let path = cache.entry_path(&audio);
        let bytes = std::fs::read(&path).unwrap();

        let mut flipped = bytes.clone();
        flipped[HEADER_LEN + 100] ^= 0x40;
        let other_entry = encode(&good, &cache.key(&music(6000, 4)));
        let damaged: [(&str, Vec<u8>); 4] = [
            ("flipped", flipped),
            ("truncated", bytes[..bytes.len() / 2].to_vec()),
            ("empty", Vec::new()),
            ("foreign", other_entry),
        ];
        for (what, content) in damaged {
            std::fs::write(&path, content).unwrap();
            let (spec, outcome) = cache.magnitude(&audio).unwrap();
            assert!(
                matches!(outcome, CacheOutcome::Recomputed(_)),
                "{what}: {outcome:?}"
            );
            assert_eq!(spec, good, "{what}");
            assert_eq!(
                std::fs::read(&path).unwrap(),
                bytes,
                "{what}: entry repaired"
            );
        }
    }

    #[test]
    fn concurrent_fillers_agree_and_leave_one_entry() {
        let dir = tempfile::tempdir().unwrap();
        let cqt = Cqt::new(params()).unwrap();
        let audio = music(7000, 5);
        // A temporary file left by a crashed writer must not disturb anything.
        std::fs::write(dir.path().join(".deadbeef.cqt.tmp-1-0"), b"half an entry").unwrap();
        let results: Vec<Spectrogram> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..6)
                .map(|_| {
                    s.spawn(|| {
                        let cache = SpectrogramCache::new(dir.path(), &cqt).unwrap();
                        cache.magnitude(&audio).unwrap().0
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(results.windows(2).all(|w| w[0] == w[1]));
        let entries: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .filter(|n| n.ends_with(".cqt"))
            .collect();
        assert_eq!(entries.len(), 1, "{entries:?}");
        let cache = SpectrogramCache::new(dir.path(), &cqt).unwrap();
        assert_eq!(cache.magnitude(&audio).unwrap().1, CacheOutcome::Hit);
    }

    #[test]
    fn loud_audio_is_scaled_into_f16_range() {
        let spec = Spectrogram {
            n_bins: 1,
            n_frames: 3,
            values: vec![1.0e6, 3.0, 0.0],
        };
        let key = [7u8; 32];
        let back = decode(&encode(&spec, &key), &key).unwrap();
        assert!(back.values.iter().all(|v| v.is_finite()));
        // f16 keeps 11 significant bits: relative error ≤ 2^-11.
        assert!((back.values[0] - 1.0e6).abs() <= 1.0e6 * 4.9e-4);
    }

    /// The error f16 storage adds to what the network reads: normalised log magnitudes.
    #[test]
    fn f16_storage_error_is_negligible_in_network_inputs() {
        let cqt = Cqt::new(CqtParams::default()).unwrap();
        let seed = crate::device::equivalence::test_seed(
            "f16_storage_error_is_negligible_in_network_inputs",
        );
        // `music` is written for 8 kHz; at 16 kHz its notes are an octave higher, still in range.
        let spec = cqt.magnitude(&music(48_000, seed)).unwrap();
        let key = [0u8; 32];
        let stored = decode(&encode(&spec, &key), &key).unwrap();
        let input = |values: &[f32]| {
            let mut v = values.to_vec();
            log_compress(&mut v);
            normalize_imagewise(&mut v);
            v
        };
        let (exact, rounded) = (input(&spec.values), input(&stored.values));
        // Inputs span [0, 1]: the error relative to a scale of at least 1 is the absolute error.
        let worst = crate::compare::worst_error(
            &rounded,
            &exact,
            crate::compare::ErrorScale::of_peak_at_least(1.0),
        )
        .unwrap()
        .error;
        let mut logs = spec.values.clone();
        log_compress(&mut logs);
        let log_range = logs.iter().cloned().fold(f32::MIN, f32::max)
            - logs.iter().cloned().fold(f32::MAX, f32::min);
        println!("f16 storage: max change of a normalised log-CQT input {worst:.2e} (inputs span [0, 1]; log range {log_range:.2})");
        // f16 rounds by ≤ 2^-11 relative (no subnormals after scaling), i.e. ≤ 4.9e-4 in log
        // units; the value and the image's min and max each move by that, over the log range.
        assert!(worst <= 2.0 * 4.9e-4 / log_range as f64 + 1e-6, "{worst}");
    }
}

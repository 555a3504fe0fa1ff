//! SoundFont synthesis of note annotations (the Synthesized Instruments set).
//!
//! [`find_soundfont`] picks the SoundFont (option, `MTOSI_SOUNDFONT`, the Debian FluidR3_GM
//! paths, then the project's own generated one of [`builtin`]); [`render_notes`] renders notes
//! with one GM program through rustysynth.

pub mod augment;
pub mod builtin;
pub mod effects;
pub mod random;
pub mod render;
pub mod set;
pub mod sf2_writer;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use random::{random_piece, RandomMusic};
pub use render::{fit_to_full_scale, render_notes, validate_notes, RenderSettings, Tail};
pub use rustysynth::SoundFont;
pub use set::{
    build_synth_set, random_scores, Score, ScoreSource, SynthSetOptions, SynthSetReport,
};

/// Environment variable naming a SoundFont, checked after the `--soundfont` option.
pub const SOUNDFONT_ENV: &str = "MTOSI_SOUNDFONT";

/// Where Debian's `fluid-soundfont-gm` puts FluidR3_GM (the SoundFont the paper used).
pub const SYSTEM_SOUNDFONT_PATHS: [&str; 2] = [
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
];

#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("cannot read SoundFont {path}: {source}")]
    ReadSoundFont {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{source_name} is not a usable SoundFont: {problem}")]
    ParseSoundFont {
        source_name: String,
        problem: String,
    },
    #[error("SoundFont {path} (from {origin}) does not exist")]
    SoundFontNotFound { path: PathBuf, origin: &'static str },
    #[error("the SoundFont has no preset for GM program {program} (bank 0)")]
    MissingProgram { program: u8 },
    #[error("note {index} cannot be rendered: {problem}")]
    InvalidNote { index: usize, problem: String },
    #[error("{}: {problem}", path.display())]
    Output { path: PathBuf, problem: String },
    #[error("synthesizer: {0}")]
    Synthesizer(String),
}

/// Which SoundFont to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SoundFontChoice {
    File(PathBuf),
    /// The project's own generated SoundFont (programs 0 and 25 only).
    Builtin,
}

impl fmt::Display for SoundFontChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SoundFontChoice::File(path) => write!(f, "{}", path.display()),
            SoundFontChoice::Builtin => write!(f, "mtosi built-in SoundFont"),
        }
    }
}

/// The SoundFont search order: `explicit` (the `--soundfont` option), then the file named by
/// `MTOSI_SOUNDFONT`, then FluidR3_GM at [`SYSTEM_SOUNDFONT_PATHS`], then the built-in one.
/// A path given explicitly or through the environment must exist.
pub fn find_soundfont(explicit: Option<&Path>) -> Result<SoundFontChoice, SynthError> {
    let from_env = std::env::var_os(SOUNDFONT_ENV)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    find_soundfont_in(
        explicit,
        from_env.as_deref(),
        &SYSTEM_SOUNDFONT_PATHS.map(Path::new),
    )
}

fn find_soundfont_in(
    explicit: Option<&Path>,
    from_env: Option<&Path>,
    system_paths: &[&Path],
) -> Result<SoundFontChoice, SynthError> {
    for (path, origin) in [(explicit, "--soundfont"), (from_env, SOUNDFONT_ENV)] {
        if let Some(path) = path {
            if !path.is_file() {
                return Err(SynthError::SoundFontNotFound {
                    path: path.to_path_buf(),
                    origin,
                });
            }
            return Ok(SoundFontChoice::File(path.to_path_buf()));
        }
    }
    Ok(system_paths
        .iter()
        .find(|p| p.is_file())
        .map_or(SoundFontChoice::Builtin, |p| {
            SoundFontChoice::File(p.to_path_buf())
        }))
}

/// Loads the chosen SoundFont.
pub fn load_soundfont(choice: &SoundFontChoice) -> Result<Arc<SoundFont>, SynthError> {
    let (bytes, source_name) = match choice {
        SoundFontChoice::File(path) => {
            let bytes = std::fs::read(path).map_err(|source| SynthError::ReadSoundFont {
                path: path.clone(),
                source,
            })?;
            (bytes, path.display().to_string())
        }
        SoundFontChoice::Builtin => (builtin::builtin_soundfont_bytes(), choice.to_string()),
    };
    let sound_font =
        SoundFont::new(&mut bytes.as_slice()).map_err(|e| SynthError::ParseSoundFont {
            source_name,
            problem: e.to_string(),
        })?;
    Ok(Arc::new(sound_font))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_order_prefers_option_then_env_then_system_then_builtin() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.sf2");
        let b = dir.path().join("b.sf2");
        let system = dir.path().join("system.sf2");
        for p in [&a, &b, &system] {
            std::fs::write(p, b"x").unwrap();
        }
        let missing = dir.path().join("missing.sf2");
        let sys: [&Path; 2] = [&missing, &system];
        let pick =
            |e: Option<&Path>, v: Option<&Path>, s: &[&Path]| find_soundfont_in(e, v, s).unwrap();
        assert_eq!(
            pick(Some(&a), Some(&b), &sys),
            SoundFontChoice::File(a.clone())
        );
        assert_eq!(pick(None, Some(&b), &sys), SoundFontChoice::File(b.clone()));
        assert_eq!(
            pick(None, None, &sys),
            SoundFontChoice::File(system.clone())
        );
        assert_eq!(pick(None, None, &[&missing]), SoundFontChoice::Builtin);
    }

    #[test]
    fn a_named_soundfont_that_does_not_exist_is_an_error() {
        let err = find_soundfont_in(Some(Path::new("/nonexistent/x.sf2")), None, &[]).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/x.sf2"), "{err}");
    }

    #[test]
    fn a_corrupt_soundfont_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.sf2");
        std::fs::write(&path, b"RIFF\x04\x00\x00\x00WAVE").unwrap();
        let err = load_soundfont(&SoundFontChoice::File(path.clone())).unwrap_err();
        assert!(err.to_string().contains("bad.sf2"), "{err}");
    }
}

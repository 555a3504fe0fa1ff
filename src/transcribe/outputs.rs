//! What a transcription writes: the MIDI file, the notes as text, the probability roll as
//! `.npy`, and a picture of the roll with the decoded notes over it. Every file is written
//! atomically (temporary file beside it, then rename), so a failure leaves nothing behind.

use std::path::{Path, PathBuf};

use crate::decode::FrameNote;
use crate::fsutil;
use crate::notes::midi::{write_midi_with, MidiSettings};
use crate::notes::roll::KEY_COUNT;
use crate::notes::{jams, mir_eval_text, tsv, Note, NotesError};
use crate::spectrogram::picture::colormap;

/// The text formats the notes can be written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NotesFormat {
    /// `onset offset pitch velocity`, tab separated, with a header (MAPS `.tsv` style).
    Tsv,
    /// mir_eval's `onset offset frequency_hz` text (`mir_eval.io.load_valued_intervals`).
    Txt,
    /// JAMS with one `note_midi` annotation.
    Jams,
}

impl NotesFormat {
    pub fn extension(self) -> &'static str {
        match self {
            Self::Tsv => "tsv",
            Self::Txt => "txt",
            Self::Jams => "jams",
        }
    }

    /// Writes `notes` in this format to `path`, atomically.
    pub fn write(self, path: &Path, notes: &[Note]) -> Result<(), NotesError> {
        match self {
            Self::Tsv => tsv::write_tsv(path, notes),
            Self::Txt => mir_eval_text::write_mir_eval_text(path, notes),
            Self::Jams => jams::write_jams(path, notes),
        }
    }
}

/// The decoded notes in seconds, each with `velocity`.
pub fn notes_in_seconds(notes: &[FrameNote], velocity: u8) -> Vec<Note> {
    notes.iter().map(|n| n.to_note(velocity)).collect()
}

/// Writes the notes as a one-track MIDI file with `settings`.
pub fn write_midi(path: &Path, notes: &[Note], settings: &MidiSettings) -> Result<(), NotesError> {
    write_midi_with(path, notes, settings)
}

/// Errors of writing a picture or a roll.
#[derive(Debug, thiserror::Error)]
#[error("{}: {source}", path.display())]
pub struct OutputError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

/// Rows per key in the picture.
const KEY_PIXELS: usize = 4;
/// The widest picture: longer rolls put several frames in one column (their maximum).
const MAX_COLUMNS: usize = 16_384;

/// A picture of a probability roll (`frames × 88`): time left to right, low keys at the
/// bottom, each probability through the spectrogram colormap; the outline of every note of
/// `estimate` in green over it, and of `reference` (when given) in cyan, so where both agree
/// the outlines overlap. Returns (width, height, RGB rows from the top).
pub fn render_roll(
    roll: &[f32],
    frames: usize,
    estimate: &[FrameNote],
    reference: Option<&[FrameNote]>,
) -> (usize, usize, Vec<u8>) {
    let per_column = frames.div_ceil(MAX_COLUMNS).max(1);
    let width = frames.div_ceil(per_column).max(1);
    let height = KEY_COUNT * KEY_PIXELS;
    let mut rgb = vec![0u8; width * height * 3];
    let mut column_max = vec![0f32; width * KEY_COUNT];
    for frame in 0..frames {
        for key in 0..KEY_COUNT {
            let cell = &mut column_max[(frame / per_column) * KEY_COUNT + key];
            *cell = cell.max(roll[frame * KEY_COUNT + key]);
        }
    }
    let row_of = |key: usize, sub: usize| (KEY_COUNT - 1 - key) * KEY_PIXELS + sub;
    for x in 0..width {
        for key in 0..KEY_COUNT {
            let colour = colormap(column_max[x * KEY_COUNT + key]);
            for sub in 0..KEY_PIXELS {
                let at = (row_of(key, sub) * width + x) * 3;
                rgb[at..at + 3].copy_from_slice(&colour);
            }
        }
    }
    let mut outline = |notes: &[FrameNote], colour: [u8; 3], rows: [usize; 2]| {
        for note in notes {
            let (x0, x1) = (
                note.start / per_column,
                (note.end.max(note.start + 1) - 1) / per_column,
            );
            for x in x0..=x1.min(width - 1) {
                for sub in rows {
                    let at = (row_of(note.key, sub) * width + x) * 3;
                    rgb[at..at + 3].copy_from_slice(&colour);
                }
            }
            for sub in 0..KEY_PIXELS {
                let at = (row_of(note.key, sub) * width + x0.min(width - 1)) * 3;
                rgb[at..at + 3].copy_from_slice(&colour);
            }
        }
    };
    if let Some(reference) = reference {
        outline(reference, [0, 200, 255], [0, KEY_PIXELS - 1]);
    }
    outline(estimate, [0, 255, 0], [1, KEY_PIXELS - 2]);
    (width, height, rgb)
}

/// Writes [`render_roll`]'s picture as a PNG, atomically.
pub fn write_roll_png(
    path: &Path,
    roll: &[f32],
    frames: usize,
    estimate: &[FrameNote],
    reference: Option<&[FrameNote]>,
) -> Result<(), OutputError> {
    let (width, height, rgb) = render_roll(roll, frames, estimate, reference);
    fsutil::write_atomic(path, |w| {
        let mut encoder = png::Encoder::new(w, width as u32, height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header().map_err(std::io::Error::other)?;
        writer
            .write_image_data(&rgb)
            .map_err(std::io::Error::other)?;
        writer.finish().map_err(std::io::Error::other)
    })
    .map_err(|source| OutputError {
        path: path.to_path_buf(),
        source,
    })
}

//! Note annotations: reading and writing TSV, MAPS txt, MIDI, JAMS and mir_eval text; piano-roll labels.

/// One note: onset and offset in seconds, MIDI pitch (21..=108 for the piano roll, any 0..=127
/// in files), MIDI velocity (1..=127; formats without velocity use 64).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Note {
    pub onset_s: f64,
    pub offset_s: f64,
    pub pitch: u8,
    pub velocity: u8,
}

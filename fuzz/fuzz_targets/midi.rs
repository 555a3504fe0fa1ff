//! Standard MIDI files: any bytes give notes or an error, never a panic; notes read are valid.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(notes) = mtosi::notes::midi::parse_midi(bytes) {
        mtosi::notes::validate_notes(&notes)
            .expect("the reader returned a note the writers refuse");
    }
});

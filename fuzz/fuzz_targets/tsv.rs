//! MAPS TSV (and, through the same table parser, MAPS txt and mir_eval text): any bytes give
//! notes or an error, never a panic, and every note read is one the writers accept.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|bytes: &[u8]| {
    if let Ok(notes) = mtosi::notes::tsv::parse_tsv(bytes) {
        mtosi::notes::validate_notes(&notes)
            .expect("the reader returned a note the writers refuse");
    }
    let _ = mtosi::notes::maps_txt::parse_maps_txt(bytes);
    let _ = mtosi::notes::mir_eval_text::parse_mir_eval_text(bytes);
});

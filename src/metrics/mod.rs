//! Transcription metrics, identical to mir_eval: frame, note and note-with-offset P/R/F1.

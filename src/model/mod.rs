//! The transcriber: layers with explicit forward and backward, the U-net + BiLSTM network, checkpoints.

//! SoundFont synthesis of note annotations (the Synthesized Instruments set).

//! Datasets: lists of (audio, notes) items with a name and a split (MAPS, GuitarSet, MAESTRO,
//! folders of paired files, the Synthesized Instruments set).

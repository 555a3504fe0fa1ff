//! Optional wall-clock accounting per layer and phase, for the training-step benchmark's
//! breakdown. Off by default: a disabled scope costs one atomic load.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Mutex<BTreeMap<(&'static str, String, &'static str), Duration>> =
    Mutex::new(BTreeMap::new());

/// One accounted line: op kind, layer name, phase ("forward", "backward", "update").
#[derive(Debug, Clone)]
pub struct Record {
    pub kind: &'static str,
    pub layer: String,
    pub phase: &'static str,
    pub time: Duration,
}

pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Returns and clears everything accounted so far.
pub fn take() -> Vec<Record> {
    let mut totals = TOTALS.lock().unwrap();
    std::mem::take(&mut *totals)
        .into_iter()
        .map(|((kind, layer, phase), time)| Record {
            kind,
            layer,
            phase,
            time,
        })
        .collect()
}

/// Times from now until dropped, when profiling is on.
pub struct Scope<'a> {
    started: Option<(Instant, &'static str, &'a str, &'static str)>,
}

pub fn scope<'a>(kind: &'static str, layer: &'a str, phase: &'static str) -> Scope<'a> {
    let started = ENABLED
        .load(Ordering::Relaxed)
        .then(|| (Instant::now(), kind, layer, phase));
    Scope { started }
}

impl Drop for Scope<'_> {
    fn drop(&mut self) {
        if let Some((start, kind, layer, phase)) = self.started {
            let elapsed = start.elapsed();
            *TOTALS
                .lock()
                .unwrap()
                .entry((kind, layer.to_string(), phase))
                .or_default() += elapsed;
        }
    }
}

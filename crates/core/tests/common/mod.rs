//! Shared test helpers: the counting DLPack producer of `tensorbridge_core::testing` (well-formed
//! and malformed managed tensors), and environment switches for slow runs (valgrind).
#![allow(dead_code)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// Whether tests should skip tensors of tens of MiB or more (set under valgrind).
pub fn skip_huge() -> bool {
    std::env::var_os("TENSORBRIDGE_SKIP_HUGE").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Serialises tests in one binary that assert exact deltas of the global `stats` counters.
pub fn stats_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

// The counting producer (`Counter`, `Spec`, `legacy`, `versioned`, `free_*`, `pattern`) lives
// in the crate itself, so the Node binding can hand the same foreign tensors to JS tests. Each
// test binary uses a different subset.
#[allow(unused_imports)]
pub use tensorbridge_core::testing::{
    free_legacy, free_versioned, legacy, pattern, versioned, Counter, Spec,
};

/// Drop-counting keep-alive value for borrowed tensors.
pub struct DropGuard(pub Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

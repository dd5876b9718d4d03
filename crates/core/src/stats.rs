//! Process-wide counters of exports, deleter calls and owned allocations, for tests and leak
//! checks. Relaxed atomics: cheap enough to keep on in release builds.
//!
//! The counters are global, so tests that assert exact deltas must not run concurrently with
//! other tests that export or allocate (serialise them, or use a test binary of their own).

use std::sync::atomic::{AtomicU64, Ordering};

static EXPORTS_CREATED: AtomicU64 = AtomicU64::new(0);
static EXPORTS_DELETED: AtomicU64 = AtomicU64::new(0);
static FOREIGN_DELETERS_CALLED: AtomicU64 = AtomicU64::new(0);
static OWNED_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static OWNED_FREES: AtomicU64 = AtomicU64::new(0);
static OWNED_LIVE_BYTES: AtomicU64 = AtomicU64::new(0);
static CUDA_ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static CUDA_FREES: AtomicU64 = AtomicU64::new(0);
static CUDA_LIVE_BYTES: AtomicU64 = AtomicU64::new(0);

/// A snapshot of the counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Managed tensors this crate produced (`to_dlpack`).
    pub exports_created: u64,
    /// Times this crate's own deleter ran (each export's deleter runs at most once).
    pub exports_deleted: u64,
    /// Times this crate called a managed tensor's deleter: when a [`crate::Tensor`] imported
    /// from DLPack dropped its last user, when an [`crate::ExportedTensor`] or
    /// [`crate::Capsule`] was dropped unconsumed, or on a major-version mismatch. The
    /// producer may be this crate itself (a round trip) or anyone else.
    pub foreign_deleters_called: u64,
    /// Owned (aligned, zeroed) buffers allocated; zero-byte tensors allocate nothing.
    pub owned_allocations: u64,
    /// Owned buffers freed.
    pub owned_frees: u64,
    /// Bytes in owned buffers currently allocated.
    pub owned_live_bytes: u64,
    /// CUDA device and pinned host buffers allocated through the driver (zero-byte tensors
    /// allocate nothing).
    pub cuda_allocations: u64,
    /// CUDA buffers freed (each exactly once, by the last owner).
    pub cuda_frees: u64,
    /// Bytes in CUDA buffers currently allocated.
    pub cuda_live_bytes: u64,
}

impl Stats {
    /// Exports whose deleter has not run yet.
    pub fn live_exports(&self) -> u64 {
        self.exports_created.saturating_sub(self.exports_deleted)
    }

    /// Owned buffers not freed yet.
    pub fn live_allocations(&self) -> u64 {
        self.owned_allocations.saturating_sub(self.owned_frees)
    }

    /// CUDA buffers not freed yet.
    pub fn live_cuda_allocations(&self) -> u64 {
        self.cuda_allocations.saturating_sub(self.cuda_frees)
    }
}

/// Reads every counter (each one atomically; the set is not one atomic snapshot).
pub fn snapshot() -> Stats {
    Stats {
        exports_created: EXPORTS_CREATED.load(Ordering::Relaxed),
        exports_deleted: EXPORTS_DELETED.load(Ordering::Relaxed),
        foreign_deleters_called: FOREIGN_DELETERS_CALLED.load(Ordering::Relaxed),
        owned_allocations: OWNED_ALLOCATIONS.load(Ordering::Relaxed),
        owned_frees: OWNED_FREES.load(Ordering::Relaxed),
        owned_live_bytes: OWNED_LIVE_BYTES.load(Ordering::Relaxed),
        cuda_allocations: CUDA_ALLOCATIONS.load(Ordering::Relaxed),
        cuda_frees: CUDA_FREES.load(Ordering::Relaxed),
        cuda_live_bytes: CUDA_LIVE_BYTES.load(Ordering::Relaxed),
    }
}

pub(crate) fn export_created() {
    EXPORTS_CREATED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn export_deleted() {
    EXPORTS_DELETED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn foreign_deleter_called() {
    FOREIGN_DELETERS_CALLED.fetch_add(1, Ordering::Relaxed);
}

pub(crate) fn owned_allocated(bytes: usize) {
    OWNED_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    OWNED_LIVE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

pub(crate) fn owned_freed(bytes: usize) {
    OWNED_FREES.fetch_add(1, Ordering::Relaxed);
    OWNED_LIVE_BYTES.fetch_sub(bytes as u64, Ordering::Relaxed);
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn cuda_allocated(bytes: usize) {
    CUDA_ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
    CUDA_LIVE_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
}

#[cfg_attr(not(feature = "cuda"), allow(dead_code))]
pub(crate) fn cuda_freed(bytes: usize) {
    CUDA_FREES.fetch_add(1, Ordering::Relaxed);
    CUDA_LIVE_BYTES.fetch_sub(bytes as u64, Ordering::Relaxed);
}

//! Counters and probes for tests and benchmarks.

use napi_derive::napi;

/// Process-wide ownership counters from core (cumulative since load).
#[napi(object)]
pub struct NativeStats {
    /// Managed tensors exported by tensorbridge.
    pub exports_created: f64,
    /// Exports whose deleter ran.
    pub exports_deleted: f64,
    /// Foreign deleters tensorbridge called.
    pub foreign_deleters_called: f64,
    /// Native allocations made.
    pub owned_allocations: f64,
    /// Native allocations freed.
    pub owned_frees: f64,
    /// Bytes currently held by native allocations.
    pub owned_live_bytes: f64,
    /// CUDA device and pinned allocations made.
    pub cuda_allocations: f64,
    /// CUDA allocations freed.
    pub cuda_frees: f64,
    /// Bytes currently held by CUDA allocations.
    pub cuda_live_bytes: f64,
}

/// Reads the ownership counters.
#[napi]
pub fn native_stats() -> NativeStats {
    let s = tensorbridge_core::stats::snapshot();
    NativeStats {
        exports_created: s.exports_created as f64,
        exports_deleted: s.exports_deleted as f64,
        foreign_deleters_called: s.foreign_deleters_called as f64,
        owned_allocations: s.owned_allocations as f64,
        owned_frees: s.owned_frees as f64,
        owned_live_bytes: s.owned_live_bytes as f64,
        cuda_allocations: s.cuda_allocations as f64,
        cuda_frees: s.cuda_frees as f64,
        cuda_live_bytes: s.cuda_live_bytes as f64,
    }
}

/// Live tensor and capsule handles on the calling thread, for leak checks.
#[napi]
pub fn live_handles() -> Vec<u32> {
    let (tensors, capsules) = crate::handles::live_handles();
    vec![tensors as u32, capsules as u32]
}

/// Views (external `ArrayBuffer`s) in the calling thread's registry, for leak checks: one per
/// live pointer, gone once its buffer is collected.
#[napi]
pub fn live_views() -> u32 {
    crate::view::registered_views() as u32
}

/// Does nothing: the floor of a napi call, for benchmarks.
#[napi]
pub fn noop() {}

/// Every error code the native side can raise: core's, then the binding's own that core lacks.
/// The TS layer's consistency test holds them equal to its `ErrorCode`s.
#[napi]
pub fn error_codes() -> Vec<&'static str> {
    let mut codes = tensorbridge_core::error::ALL_CODES.to_vec();
    for code in crate::error::ALL {
        if !codes.contains(&code.as_str()) {
            codes.push(code.as_str());
        }
    }
    codes
}

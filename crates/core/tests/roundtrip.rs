//! Round trips export → import for every dtype, legacy and versioned, 0-d, zero-element and
//! large tensors: same bytes, shape, strides, dtype and data pointer (zero-copy), and every
//! deleter or keep-alive released exactly once.
//!
//! Tests that assert exact deltas of the global `stats` counters hold `stats_lock()`; every
//! test in this binary that exports holds it, so the deltas are exact.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use common::{pattern, skip_huge, stats_lock, Counter, DropGuard, Spec};
use tensorbridge_core::storage::StorageKind;
use tensorbridge_core::{stats, DataType, Device, ExportOptions, ExportedTensor, Tensor};

fn options(versioned: bool) -> ExportOptions {
    ExportOptions { versioned, ..ExportOptions::default() }
}

/// A borrowed host tensor of `shape`/`dtype` filled with a pattern, with a drop counter.
fn guarded(shape: &[i64], dtype: DataType) -> (Tensor, Arc<AtomicUsize>) {
    let len = tensorbridge_core::layout::byte_size(shape, dtype).unwrap();
    let mut bytes = pattern(len);
    let drops = Arc::new(AtomicUsize::new(0));
    let ptr = bytes.as_mut_ptr();
    let keep_alive = Box::new((bytes, DropGuard(Arc::clone(&drops))));
    // SAFETY: the Vec's heap buffer lives in `keep_alive` until the storage drops it.
    let t =
        unsafe { Tensor::from_borrowed(ptr, len, shape, dtype, Device::CPU, false, keep_alive) }
            .unwrap();
    (t, drops)
}

/// Export, import, compare, drop everything; check that one export was made and deleted and
/// that the keep-alive was dropped once.
fn round_trip_releases_everything(shape: &[i64], dtype: DataType, versioned: bool) {
    let before = stats::snapshot();
    let (t, drops) = guarded(shape, dtype);
    let exported = t.to_dlpack(&options(versioned)).unwrap();
    assert_eq!(exported.is_versioned(), versioned);
    let back = exported.into_tensor().unwrap();
    assert_eq!(back.dtype(), dtype);
    assert_eq!(back.shape(), t.shape());
    assert_eq!(back.strides(), t.strides());
    assert_eq!(back.byte_len(), t.byte_len());
    assert_eq!(back.as_bytes().unwrap(), t.as_bytes().unwrap());
    if t.byte_len() > 0 {
        assert_eq!(back.data_ptr(), t.data_ptr(), "zero-copy");
    }
    assert!(!back.is_copied() && !back.is_read_only());
    drop(t);
    assert_eq!(drops.load(Ordering::SeqCst), 0, "the imported tensor keeps the bytes alive");
    assert_eq!(back.as_bytes().unwrap().len(), back.byte_len());
    drop(back);
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    let after = stats::snapshot();
    assert_eq!(after.exports_created - before.exports_created, 1);
    assert_eq!(after.exports_deleted - before.exports_deleted, 1);
}

#[test]
fn every_dtype_round_trips_legacy_and_versioned() {
    let _lock = stats_lock();
    for &dtype in DataType::ALL.iter().filter(|d| **d != DataType::Bytes) {
        for versioned in [false, true] {
            round_trip_releases_everything(&[3, 5], dtype, versioned);
        }
    }
}

#[test]
fn zero_d_and_zero_element_tensors_round_trip() {
    let _lock = stats_lock();
    for versioned in [false, true] {
        round_trip_releases_everything(&[], DataType::F64, versioned);
        round_trip_releases_everything(&[0], DataType::F32, versioned);
        round_trip_releases_everything(&[4, 0, 2], DataType::I16, versioned);
    }
}

#[test]
fn a_64_mib_tensor_round_trips_without_copying() {
    if skip_huge() {
        eprintln!("skipped: TENSORBRIDGE_SKIP_HUGE is set");
        return;
    }
    let _lock = stats_lock();
    let before = stats::snapshot();
    for versioned in [false, true] {
        let t = Tensor::zeros(&[64, 1024, 1024], DataType::U8).unwrap();
        let back = t.to_dlpack(&options(versioned)).unwrap().into_tensor().unwrap();
        assert_eq!(back.data_ptr(), t.data_ptr());
        assert_eq!(back.byte_len(), 64 << 20);
        assert_eq!(back.storage_kind(), StorageKind::Owned);
        assert_eq!(back.as_bytes().unwrap().len(), 64 << 20);
    }
    let after = stats::snapshot();
    assert_eq!(after.owned_allocations - before.owned_allocations, 2);
    assert_eq!(after.owned_frees - before.owned_frees, 2);
    assert_eq!(after.exports_deleted - before.exports_deleted, 2);
}

#[test]
fn owned_tensors_are_freed_once_after_a_round_trip() {
    let _lock = stats_lock();
    let before = stats::snapshot();
    let t = Tensor::zeros(&[128], DataType::F32).unwrap();
    let e = t.to_dlpack(&options(true)).unwrap();
    drop(t);
    let mid = stats::snapshot();
    assert_eq!(mid.owned_frees, before.owned_frees, "the export keeps the buffer");
    let back = e.into_tensor().unwrap();
    drop(back);
    let after = stats::snapshot();
    assert_eq!(after.owned_allocations - before.owned_allocations, 1);
    assert_eq!(after.owned_frees - before.owned_frees, 1);
    assert_eq!(after.owned_live_bytes, before.owned_live_bytes);
}

#[test]
fn raw_pointer_round_trips_through_from_dlpack_functions() {
    let _lock = stats_lock();
    let t = Tensor::from_vec(pattern(24), &[2, 3], DataType::F32).unwrap();
    let raw = t.to_dlpack(&options(false)).unwrap().into_raw();
    // SAFETY: `raw` is a live legacy export we own.
    let back = unsafe { Tensor::from_dlpack_legacy(raw.cast()) }.unwrap();
    assert_eq!(back.data_ptr(), t.data_ptr());
    let raw = t.to_dlpack(&options(true)).unwrap().into_raw();
    // SAFETY: `raw` is a live versioned export we own.
    let back = unsafe { Tensor::from_dlpack_versioned(raw.cast()) }.unwrap();
    assert_eq!(back.as_bytes().unwrap(), t.as_bytes().unwrap());
    // SAFETY: `raw` came from `into_raw` of a versioned export.
    let again =
        unsafe { ExportedTensor::from_raw(t.to_dlpack(&options(true)).unwrap().into_raw(), true) }
            .unwrap();
    assert!(again.is_versioned());
}

#[test]
fn repeated_round_trips_share_the_original_storage() {
    let _lock = stats_lock();
    let before = stats::snapshot();
    let t = Tensor::zeros(&[16], DataType::U8).unwrap();
    let mut current = t.clone();
    for i in 0..10 {
        current = current.to_dlpack(&options(i % 2 == 0)).unwrap().into_tensor().unwrap();
        assert_eq!(current.storage_kind(), StorageKind::Owned, "round trip {i}");
        assert_eq!(current.data_ptr(), t.data_ptr());
    }
    let mid = stats::snapshot();
    assert_eq!(mid.live_exports(), before.live_exports(), "each export is deleted on import");
    drop((t, current));
}

#[test]
fn read_only_flag_survives_a_versioned_round_trip() {
    let _lock = stats_lock();
    let base = Tensor::from_vec(pattern(8), &[8], DataType::U8).unwrap();
    // SAFETY: the keep-alive clone of `base` keeps the bytes alive.
    let ro = unsafe {
        Tensor::from_borrowed(
            base.data_ptr(),
            8,
            &[8],
            DataType::U8,
            Device::CPU,
            true,
            Box::new(base.clone()),
        )
    }
    .unwrap();
    let back = ro.to_dlpack(&options(true)).unwrap().into_tensor().unwrap();
    assert!(back.is_read_only());
    assert_eq!(back.data_ptr(), base.data_ptr());
    // A legacy export would lose the flag, so it needs a copy.
    let err = ro.to_dlpack(&options(false)).unwrap_err();
    assert_eq!(err.code(), "ERR_COPY_REQUIRED");
}

#[test]
fn copy_true_round_trips_as_a_writable_flagged_copy() {
    let _lock = stats_lock();
    let t = Tensor::from_vec(pattern(12), &[3], DataType::I32).unwrap();
    let opts = ExportOptions { versioned: true, copy: Some(true), device: None };
    let back = t.to_dlpack(&opts).unwrap().into_tensor().unwrap();
    assert!(back.is_copied());
    assert_ne!(back.data_ptr(), t.data_ptr());
    assert_eq!(back.as_bytes().unwrap(), t.as_bytes().unwrap());
}

#[test]
fn a_foreign_tensor_re_exported_and_re_imported_is_deleted_once() {
    let _lock = stats_lock();
    let counter = Counter::new();
    let spec = Spec::f32_2x3();
    let raw = common::versioned(&spec, &counter);
    // SAFETY: `raw` is a fresh test-producer tensor we own.
    let foreign = unsafe { Tensor::from_dlpack_versioned(raw) }.unwrap();
    assert_eq!(foreign.storage_kind(), StorageKind::Foreign);
    let again = foreign.to_dlpack(&options(false)).unwrap().into_tensor().unwrap();
    assert_eq!(again.data_ptr(), foreign.data_ptr());
    assert_eq!(again.as_bytes().unwrap(), &spec.data[..]);
    drop(foreign);
    assert_eq!(counter.calls(), 0);
    drop(again);
    assert_eq!(counter.calls(), 1);
}

#[test]
fn imported_tensors_may_be_dropped_on_another_thread() {
    let _lock = stats_lock();
    let counter = Counter::new();
    let raw = common::legacy(&Spec::f32_2x3(), &counter);
    // SAFETY: `raw` is a fresh test-producer tensor we own.
    let t = unsafe { Tensor::from_dlpack_legacy(raw) }.unwrap();
    let main = std::thread::current().id();
    std::thread::spawn(move || drop(t)).join().unwrap();
    assert_eq!(counter.calls(), 1);
    assert_ne!(counter.threads(), vec![main]);
}

#[test]
fn unconsumed_exports_call_our_deleter_once_on_drop() {
    let _lock = stats_lock();
    let before = stats::snapshot();
    let (t, drops) = guarded(&[4], DataType::U8);
    let e = t.to_dlpack(&options(true)).unwrap();
    drop(t);
    std::thread::spawn(move || drop(e)).join().unwrap();
    assert_eq!(drops.load(Ordering::SeqCst), 1);
    let after = stats::snapshot();
    assert_eq!(after.exports_deleted - before.exports_deleted, 1);
    assert_eq!(after.foreign_deleters_called - before.foreign_deleters_called, 1);
}

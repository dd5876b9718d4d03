//! Capsule ownership: consume once, release to native code, drop unconsumed, failed imports,
//! and deleters running on other threads; every case counts deleter calls.

mod common;

use std::sync::{Arc, Barrier};

use common::{Counter, Spec};
use tensorbridge_core::ffi::DLPackVersion;
use tensorbridge_core::{Capsule, DataType, ExportOptions, ExportedTensor, Tensor};

fn producer_capsule(spec: &Spec, counter: &Counter, versioned: bool) -> Capsule {
    let addr = if versioned {
        common::versioned(spec, counter) as usize
    } else {
        common::legacy(spec, counter) as usize
    };
    // SAFETY: a fresh test-producer tensor of the given ABI that nobody else owns.
    unsafe { Capsule::from_address(addr, versioned) }.unwrap()
}

#[test]
fn consuming_twice_is_a_consumed_error_and_never_a_double_free() {
    for versioned in [false, true] {
        let counter = Counter::new();
        let capsule = producer_capsule(&Spec::f32_2x3(), &counter, versioned);
        let t = capsule.consume().unwrap();
        let err = capsule.consume().unwrap_err();
        assert_eq!(err.code(), "ERR_DLPACK_CONSUMED");
        assert!(err.to_string().contains("already consumed"), "{err}");
        drop(capsule);
        assert_eq!(counter.calls(), 0, "the tensor owns it now");
        drop(t);
        assert_eq!(counter.calls(), 1);
    }
}

#[test]
fn dropping_an_unconsumed_capsule_calls_the_deleter_once() {
    for versioned in [false, true] {
        let counter = Counter::new();
        let capsule = producer_capsule(&Spec::f32_2x3(), &counter, versioned);
        assert!(!capsule.is_consumed());
        drop(capsule);
        assert_eq!(counter.calls(), 1);
    }
}

#[test]
fn release_then_from_address_round_trips_and_deletes_once() {
    for versioned in [false, true] {
        let counter = Counter::new();
        let capsule = producer_capsule(&Spec::f32_2x3(), &counter, versioned);
        let addr = capsule.release().unwrap();
        assert_eq!(addr, capsule.address());
        assert!(capsule.is_consumed());
        assert_eq!(capsule.release().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
        assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
        drop(capsule);
        assert_eq!(counter.calls(), 0, "release does not delete");
        // SAFETY: `addr` was released to us, its only owner.
        let again = unsafe { Capsule::from_address(addr, versioned) }.unwrap();
        assert_eq!(again.is_versioned(), versioned);
        let t = again.consume().unwrap();
        assert_eq!(t.shape(), [2, 3]);
        drop(t);
        assert_eq!(counter.calls(), 1);
    }
}

#[test]
fn our_own_exports_round_trip_through_release_and_from_address() {
    let t = Tensor::from_vec(common::pattern(32), &[4, 2], DataType::F32).unwrap();
    let capsule = Capsule::new(t.to_dlpack(&ExportOptions::versioned()).unwrap());
    let addr = capsule.release().unwrap();
    // SAFETY: `addr` was released to us, its only owner.
    let back = unsafe { Capsule::from_address(addr, true) }.unwrap().consume().unwrap();
    assert_eq!(back.data_ptr(), t.data_ptr());
    assert_eq!(back.as_bytes().unwrap(), t.as_bytes().unwrap());
}

#[test]
fn deleters_may_run_on_another_thread() {
    let counter = Counter::new();
    let capsule = producer_capsule(&Spec::f32_2x3(), &counter, true);
    let main = std::thread::current().id();
    let worker = std::thread::spawn(move || {
        drop(capsule);
        std::thread::current().id()
    });
    let worker_id = worker.join().unwrap();
    assert_eq!(counter.calls(), 1);
    assert_eq!(counter.threads(), vec![worker_id]);
    assert_ne!(worker_id, main);

    // A tensor consumed on one thread and dropped on another.
    let counter = Counter::new();
    let capsule = producer_capsule(&Spec::f32_2x3(), &counter, false);
    let t = std::thread::spawn(move || capsule.consume().unwrap()).join().unwrap();
    std::thread::spawn(move || drop(t)).join().unwrap();
    assert_eq!(counter.calls(), 1);
}

#[test]
fn concurrent_consumers_see_exactly_one_success() {
    let counter = Counter::new();
    let capsule = Arc::new(producer_capsule(&Spec::f32_2x3(), &counter, true));
    let barrier = Arc::new(Barrier::new(8));
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let (capsule, barrier) = (Arc::clone(&capsule), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                capsule.consume().map_err(|e| e.code())
            })
        })
        .collect();
    let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let wins = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(wins, 1);
    assert!(results.iter().filter_map(|r| r.as_ref().err()).all(|c| *c == "ERR_DLPACK_CONSUMED"));
    drop(results);
    drop(capsule);
    assert_eq!(counter.calls(), 1);
}

#[test]
fn a_failed_import_keeps_the_capsule_unconsumed_and_owning() {
    for versioned in [false, true] {
        let counter = Counter::new();
        let mut spec = Spec::f32_2x3();
        spec.strides = Some(vec![6, 1]); // x[::2]
        let capsule = producer_capsule(&spec, &counter, versioned);
        let err = capsule.consume().unwrap_err();
        assert_eq!(err.code(), "ERR_DLPACK_NOT_CONTIGUOUS");
        assert!(!capsule.is_consumed());
        assert_eq!(counter.calls(), 0);
        // Still retryable (and still failing), and still releasable.
        assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_NOT_CONTIGUOUS");
        drop(capsule);
        assert_eq!(counter.calls(), 1, "the unconsumed capsule deletes on drop");
    }
}

#[test]
fn a_major_version_mismatch_consumes_the_capsule_and_deletes_once() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.version = DLPackVersion { major: 2, minor: 1 };
    let capsule = producer_capsule(&spec, &counter, true);
    assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_VERSION");
    assert!(capsule.is_consumed());
    assert_eq!(counter.calls(), 1);
    assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
    drop(capsule);
    assert_eq!(counter.calls(), 1);
}

#[test]
fn capsule_names_follow_the_python_protocol() {
    let t = Tensor::zeros(&[1], DataType::U8).unwrap();
    let legacy = Capsule::from(t.to_dlpack(&ExportOptions::default()).unwrap());
    assert_eq!(legacy.name(), "dltensor");
    legacy.consume().unwrap();
    assert_eq!(legacy.name(), "used_dltensor");
    let versioned = Capsule::new(t.to_dlpack(&ExportOptions::versioned()).unwrap());
    assert_eq!(versioned.name(), "dltensor_versioned");
    versioned
        .release()
        .map(|addr| {
            // SAFETY: released to us; take it back so it is freed.
            drop(unsafe { ExportedTensor::from_raw(addr as *mut _, true) }.unwrap())
        })
        .unwrap();
    assert_eq!(versioned.name(), "used_dltensor_versioned");
}

#[test]
fn from_address_refuses_zero_and_misaligned_addresses() {
    // SAFETY: both are refused before anything is read.
    let err = unsafe { Capsule::from_address(0, true) }.unwrap_err();
    assert_eq!(err.code(), "ERR_DLPACK_NULL");
    // SAFETY: as above.
    let err = unsafe { Capsule::from_address(0x1001, false) }.unwrap_err();
    assert_eq!(err.code(), "ERR_DLPACK_INVALID");
}

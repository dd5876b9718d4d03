//! Inputs found by the libFuzzer targets in `crates/core/fuzz/`, kept as ordinary tests so they
//! run on stable in `cargo test` (and under valgrind in `scripts/valgrind-core.sh`).

mod common;

use common::{free_legacy, free_versioned, Counter, Spec};
use tensorbridge_core::layout::compact_strides;
use tensorbridge_core::{DataType, ExportOptions, Tensor};

/// `import_headers`, first crash: a tensor without elements whose other axes multiply past
/// `i64::MAX`. Import validation accepted `[i64::MAX - 1, 0, 3]` (zero elements, so C order
/// and zero bytes), then building the tensor computed the canonical strides, whose unused
/// product "beyond axis 0" overflowed: `from_storage` failed and `adopt` panicked on its
/// `expect`, which in the Node addon aborts the process.
#[test]
fn zero_element_tensors_with_huge_axes_import_or_fail_cleanly_never_panic() {
    // Every stride fits: accepted, with canonical strides [3, 3, 1] and zero bytes.
    let fits = [i64::MAX - 1, 0, 3];
    // A stride that can't be represented (2^80 for axis 0): a clean ERR_SHAPE_OVERFLOW.
    let too_big = [0, 1 << 40, 1 << 40];
    for versioned in [false, true] {
        for (shape, strides) in [(&fits[..], None), (&fits[..], Some(vec![3, 3, 1]))] {
            let counter = Counter::new();
            let spec = Spec { strides, ..Spec::bytes(vec![], shape) };
            let t = import(&spec, versioned, &counter).expect("a zero-element tensor imports");
            assert_eq!(t.shape(), shape);
            assert_eq!(t.strides(), &[3, 3, 1]);
            assert_eq!((t.byte_len(), t.element_count()), (0, 0));
            // Its exports carry the same strides, and import again.
            let back = t.to_dlpack(&ExportOptions { versioned, ..ExportOptions::default() });
            let back = back.unwrap().into_tensor().unwrap();
            assert_eq!(back.strides(), &[3, 3, 1]);
            drop((t, back));
            assert_eq!(counter.calls(), 1);
        }
        let counter = Counter::new();
        let spec = Spec::bytes(vec![], &too_big);
        let err = import(&spec, versioned, &counter).unwrap_err();
        assert_eq!(err.code(), "ERR_SHAPE_OVERFLOW", "{err}");
        assert_eq!(counter.calls(), 1, "refused, then freed by its owner: once");
    }
}

#[test]
fn canonical_strides_check_only_the_strides_they_store() {
    assert_eq!(compact_strides(&[i64::MAX - 1, 0, 3]).unwrap(), [3, 3, 1]);
    assert_eq!(compact_strides(&[0, i64::MAX]).unwrap(), [i64::MAX, 1]);
    assert_eq!(compact_strides(&[0, 1 << 40, 1 << 40]).unwrap_err().code(), "ERR_SHAPE_OVERFLOW");
    // With elements, an overflowing element count is still an error.
    assert_eq!(compact_strides(&[2, i64::MAX]).unwrap_err().code(), "ERR_SHAPE_OVERFLOW");
    // Tensors of our own with such shapes hold no bytes and work too.
    let t = Tensor::zeros(&[i64::MAX - 1, 0, 3], DataType::F32).unwrap();
    assert_eq!(t.strides(), &[3, 3, 1]);
    let err = Tensor::zeros(&[0, 1 << 40, 1 << 40], DataType::F32).unwrap_err();
    assert_eq!(err.code(), "ERR_SHAPE_OVERFLOW");
}

/// Imports a test-producer tensor; on failure checks that the caller still owns it (the
/// deleter has not run) and frees it as its owner would.
fn import(spec: &Spec, versioned: bool, counter: &Counter) -> tensorbridge_core::Result<Tensor> {
    if versioned {
        let raw = common::versioned(spec, counter);
        // SAFETY: a fresh test-producer tensor that nobody else owns.
        unsafe { Tensor::from_dlpack_versioned(raw) }.inspect_err(|_| {
            assert_eq!(counter.calls(), 0, "a refused tensor stays with the caller");
            // SAFETY: refused, so still ours, and not deleted yet.
            unsafe { free_versioned(raw) };
        })
    } else {
        let raw = common::legacy(spec, counter);
        // SAFETY: as above.
        unsafe { Tensor::from_dlpack_legacy(raw) }.inspect_err(|_| {
            assert_eq!(counter.calls(), 0, "a refused tensor stays with the caller");
            // SAFETY: as above.
            unsafe { free_legacy(raw) };
        })
    }
}

/// `import_headers`, second finding: an imported ROCm tensor of 256 GiB asked for on the CPU
/// (`device: cpu`, a device move) allocated the whole host destination before finding that
/// tensorbridge can't copy from ROCm (ASan: out of memory). The device check now comes first.
#[test]
fn a_copy_from_an_unsupported_device_is_refused_before_allocating() {
    use tensorbridge_core::ffi::{DLDevice, DLDeviceType};
    use tensorbridge_core::Device;
    let counter = Counter::new();
    // 32 TiB: allocating the destination would fail (ERR_ALLOCATION) or take the machine.
    let spec = Spec {
        fake_data: Some(0x7000_0000_0000),
        device: DLDevice { device_type: DLDeviceType::ROCM, device_id: 0 },
        ..Spec::bytes(vec![], &[1 << 45])
    };
    let t = import(&spec, true, &counter).expect("ROCm memory is imported as metadata");
    for options in [
        ExportOptions { device: Some(Device::CPU), ..ExportOptions::versioned() },
        ExportOptions { copy: Some(true), ..ExportOptions::versioned() },
    ] {
        let err = t.to_dlpack(&options).unwrap_err();
        assert_eq!(err.code(), "ERR_DEVICE_UNSUPPORTED", "{options:?}: {err}");
    }
    assert_eq!(t.to_cpu().unwrap_err().code(), "ERR_DEVICE_UNSUPPORTED");
    drop(t);
    assert_eq!(counter.calls(), 1);
}

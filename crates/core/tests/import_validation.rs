//! Every import validation failure, legacy and versioned: its error code, and who owns the
//! managed tensor afterwards (counted with a test producer). Plus the descriptors that must be
//! accepted: NULL strides, byte offsets, newer minor versions, flags, NULL deleters, foreign
//! device memory (CUDA pointers are checked with the driver: see `tests/cuda.rs`).

mod common;

use common::{free_legacy, free_versioned, Counter, Spec};
use tensorbridge_core::ffi::{
    DLDataTypeCode, DLDeviceType, DLPackVersion, DLPACK_FLAG_BITMASK_IS_COPIED,
    DLPACK_FLAG_BITMASK_READ_ONLY,
};
use tensorbridge_core::storage::StorageKind;
use tensorbridge_core::{DataType, Device, Error, ExportedTensor, Tensor};

/// A broken descriptor and the code it must produce.
struct Case {
    name: &'static str,
    spec: Spec,
    code: &'static str,
}

fn cases() -> Vec<Case> {
    let base = Spec::f32_2x3;
    let mut out = vec![];
    let mut add = |name, code, edit: &dyn Fn(&mut Spec)| {
        let mut spec = base();
        edit(&mut spec);
        out.push(Case { name, spec, code });
    };
    add("ndim -1", "ERR_DLPACK_INVALID", &|s| s.ndim = Some(-1));
    add("ndim 65", "ERR_DLPACK_INVALID", &|s| s.ndim = Some(65));
    add("4 lanes", "ERR_DLPACK_INVALID", &|s| s.dtype.lanes = 4);
    add("complex64", "ERR_DTYPE_UNSUPPORTED", &|s| {
        s.dtype.code = DLDataTypeCode::COMPLEX;
        s.dtype.bits = 64;
    });
    add("float8", "ERR_DTYPE_UNSUPPORTED", &|s| {
        s.dtype.code = DLDataTypeCode::FLOAT8_E4M3FN;
        s.dtype.bits = 8;
    });
    add("device type 99", "ERR_DEVICE_UNSUPPORTED", &|s| s.device.device_type = DLDeviceType(99));
    add("device type 0", "ERR_DEVICE_UNSUPPORTED", &|s| s.device.device_type = DLDeviceType(0));
    add("device type 5 (a gap)", "ERR_DEVICE_UNSUPPORTED", &|s| {
        s.device.device_type = DLDeviceType(5)
    });
    add("NULL shape", "ERR_DLPACK_NULL", &|s| s.null_shape = true);
    add("misaligned shape", "ERR_DLPACK_INVALID", &|s| s.shape_misalign = 4);
    add("negative size", "ERR_SHAPE_NEGATIVE", &|s| s.shape = vec![2, -3]);
    add("element count overflow", "ERR_SHAPE_OVERFLOW", &|s| {
        s.shape = vec![i64::MAX, 4];
        s.strides = None;
    });
    add("byte size overflow", "ERR_SHAPE_OVERFLOW", &|s| {
        s.shape = vec![1 << 62];
        s.strides = None;
    });
    add("every other row (x[::2])", "ERR_DLPACK_NOT_CONTIGUOUS", &|s| s.strides = Some(vec![6, 1]));
    add("every other element", "ERR_DLPACK_NOT_CONTIGUOUS", &|s| {
        s.shape = vec![3];
        s.strides = Some(vec![2]);
    });
    add("transpose", "ERR_DLPACK_NOT_CONTIGUOUS", &|s| {
        s.shape = vec![3, 2];
        s.strides = Some(vec![1, 3]);
    });
    add("broadcast", "ERR_DLPACK_NOT_CONTIGUOUS", &|s| s.strides = Some(vec![0, 1]));
    add("NULL data", "ERR_DLPACK_NULL", &|s| s.null_data = true);
    add("byte offset past the address space", "ERR_DLPACK_INVALID", &|s| {
        s.byte_offset = u64::MAX - 4
    });
    add("data near the top of the address space", "ERR_DLPACK_INVALID", &|s| {
        s.fake_data = Some(usize::MAX - 8)
    });
    out
}

#[test]
fn every_legacy_failure_has_its_code_and_leaves_ownership_with_the_caller() {
    for case in cases() {
        let counter = Counter::new();
        let raw = common::legacy(&case.spec, &counter);
        // SAFETY: `raw` is a live test-producer tensor; on failure we still own it.
        let err = unsafe { Tensor::from_dlpack_legacy(raw) }.unwrap_err();
        assert_eq!(err.code(), case.code, "{}: {err}", case.name);
        assert_eq!(counter.calls(), 0, "{}: the deleter must not run", case.name);
        // SAFETY: ownership stayed with us; delete it as its owner.
        unsafe { free_legacy(raw) };
        assert_eq!(counter.calls(), 1, "{}", case.name);
    }
}

#[test]
fn every_versioned_failure_has_its_code_and_leaves_ownership_with_the_caller() {
    for case in cases() {
        let counter = Counter::new();
        let raw = common::versioned(&case.spec, &counter);
        // SAFETY: `raw` is a live test-producer tensor; on failure we still own it.
        let err = unsafe { Tensor::from_dlpack_versioned(raw) }.unwrap_err();
        assert_eq!(err.code(), case.code, "{}: {err}", case.name);
        assert_eq!(counter.calls(), 0, "{}: the deleter must not run", case.name);
        // SAFETY: ownership stayed with us; delete it as its owner.
        unsafe { free_versioned(raw) };
        assert_eq!(counter.calls(), 1, "{}", case.name);
    }
}

#[test]
fn failed_into_tensor_hands_the_handle_back_still_owning_the_tensor() {
    for case in cases() {
        for versioned in [false, true] {
            let counter = Counter::new();
            let raw = if versioned {
                common::versioned(&case.spec, &counter).cast()
            } else {
                common::legacy(&case.spec, &counter).cast()
            };
            // SAFETY: `raw` is a live test-producer tensor of the given ABI that we own.
            let handle = unsafe { ExportedTensor::from_raw(raw, versioned) }.unwrap();
            let failure = handle.into_tensor().unwrap_err();
            assert_eq!(failure.code(), case.code, "{}", case.name);
            let (error, handle) = failure.into_parts();
            assert_eq!(error.code(), case.code);
            let handle = handle.expect("the handle comes back");
            assert_eq!(handle.as_ptr(), raw);
            assert_eq!(counter.calls(), 0, "{}", case.name);
            drop(handle);
            assert_eq!(counter.calls(), 1, "{}: dropping the handle deletes once", case.name);
        }
    }
}

#[test]
fn import_errors_convert_into_errors_and_release_the_tensor() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.strides = Some(vec![1, 2]);
    // SAFETY: a live test-producer tensor that we own.
    let handle =
        unsafe { ExportedTensor::from_raw(common::legacy(&spec, &counter).cast(), false) }.unwrap();
    let result: Result<Tensor, Error> = handle.into_tensor().map_err(Error::from);
    assert_eq!(result.unwrap_err().code(), "ERR_DLPACK_NOT_CONTIGUOUS");
    assert_eq!(counter.calls(), 1, "converting drops the handle, which deletes it");
}

#[test]
fn a_null_managed_pointer_is_a_null_error() {
    // SAFETY: NULL is checked before anything is read.
    let err = unsafe { Tensor::from_dlpack_legacy(std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(err, Error::Null { what: "managed tensor pointer" });
    // SAFETY: as above.
    let err = unsafe { Tensor::from_dlpack_versioned(std::ptr::null_mut()) }.unwrap_err();
    assert_eq!(err.code(), "ERR_DLPACK_NULL");
}

#[test]
fn a_misaligned_managed_pointer_is_refused_without_reading_it() {
    // SAFETY: alignment is checked before anything is read.
    let err = unsafe { Tensor::from_dlpack_legacy(12usize as *mut _) }.unwrap_err();
    assert_eq!(err.code(), "ERR_DLPACK_INVALID");
}

#[test]
fn another_major_version_calls_the_deleter_and_reports_the_version() {
    for major in [0, 2, u32::MAX] {
        let counter = Counter::new();
        let mut spec = Spec::f32_2x3();
        spec.version = DLPackVersion { major, minor: 7 };
        spec.ndim = Some(-1); // nothing past the version may be read
        let raw = common::versioned(&spec, &counter);
        // SAFETY: a live test-producer tensor that we own.
        let err = unsafe { Tensor::from_dlpack_versioned(raw) }.unwrap_err();
        assert_eq!(err, Error::Version { major, minor: 7 });
        assert!(err.to_string().contains("deleter"), "{err}");
        assert_eq!(counter.calls(), 1, "DLPack: the consumer calls the deleter");
    }
}

#[test]
fn another_major_version_through_into_tensor_returns_no_handle() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.version = DLPackVersion { major: 2, minor: 0 };
    // SAFETY: a live test-producer tensor that we own.
    let handle =
        unsafe { ExportedTensor::from_raw(common::versioned(&spec, &counter).cast(), true) }
            .unwrap();
    let failure = handle.into_tensor().unwrap_err();
    assert_eq!(failure.code(), "ERR_DLPACK_VERSION");
    assert!(failure.handle.is_none());
    assert_eq!(counter.calls(), 1);
}

#[test]
fn another_major_version_with_a_null_deleter_calls_nothing() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.version = DLPackVersion { major: 2, minor: 0 };
    spec.null_deleter = true;
    let raw = common::versioned(&spec, &counter);
    // SAFETY: a live test-producer tensor that we own.
    let err = unsafe { Tensor::from_dlpack_versioned(raw) }.unwrap_err();
    assert_eq!(err.code(), "ERR_DLPACK_VERSION");
    assert_eq!(counter.calls(), 0);
    // SAFETY: the producer still owns its memory (NULL deleter); free it as the producer.
    unsafe { free_versioned(raw) };
}

#[test]
fn newer_minor_versions_are_accepted() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.version = DLPackVersion { major: 1, minor: 99 };
    // SAFETY: a live test-producer tensor that we own.
    let t = unsafe { Tensor::from_dlpack_versioned(common::versioned(&spec, &counter)) }.unwrap();
    assert_eq!(t.shape(), [2, 3]);
    drop(t);
    assert_eq!(counter.calls(), 1);
}

#[test]
fn null_strides_mean_compact() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.strides = None;
    // SAFETY: a live test-producer tensor that we own.
    let t = unsafe { Tensor::from_dlpack_legacy(common::legacy(&spec, &counter)) }.unwrap();
    assert_eq!(t.strides(), [3, 1]);
    assert_eq!(t.as_bytes().unwrap(), &spec.data[..]);
}

#[test]
fn byte_offset_is_added_to_the_data_pointer() {
    let counter = Counter::new();
    let data = common::pattern(24);
    let mut spec = Spec::bytes(data.clone(), &[16]);
    spec.byte_offset = 8;
    let raw = common::legacy(&spec, &counter);
    // SAFETY: `raw` is live; we read its descriptor before handing it over.
    let base = unsafe { (*raw).dl_tensor.data }.cast::<u8>();
    // SAFETY: a live test-producer tensor that we own.
    let t = unsafe { Tensor::from_dlpack_legacy(raw) }.unwrap();
    assert_eq!(t.data_ptr(), base.wrapping_add(8));
    assert_eq!(t.as_bytes().unwrap(), &data[8..24]);
}

#[test]
fn read_only_and_is_copied_flags_are_carried_into_the_tensor() {
    for (flags, read_only, copied) in [
        (0, false, false),
        (DLPACK_FLAG_BITMASK_READ_ONLY, true, false),
        (DLPACK_FLAG_BITMASK_IS_COPIED, false, true),
        (DLPACK_FLAG_BITMASK_READ_ONLY | DLPACK_FLAG_BITMASK_IS_COPIED | 0xF0, true, true),
    ] {
        let counter = Counter::new();
        let mut spec = Spec::f32_2x3();
        spec.flags = flags;
        // SAFETY: a live test-producer tensor that we own.
        let t =
            unsafe { Tensor::from_dlpack_versioned(common::versioned(&spec, &counter)) }.unwrap();
        assert_eq!((t.is_read_only(), t.is_copied()), (read_only, copied), "flags {flags:#x}");
    }
}

#[test]
fn a_null_deleter_is_allowed_and_never_called() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.null_deleter = true;
    let raw = common::legacy(&spec, &counter);
    // SAFETY: a live test-producer tensor; with a NULL deleter the producer keeps ownership.
    let t = unsafe { Tensor::from_dlpack_legacy(raw) }.unwrap();
    assert_eq!(t.as_bytes().unwrap(), &spec.data[..]);
    drop(t);
    assert_eq!(counter.calls(), 0);
    // SAFETY: nobody else frees it; the producer (this test) does.
    unsafe { free_legacy(raw) };
}

#[test]
fn zero_element_tensors_may_have_null_data_and_any_strides() {
    let counter = Counter::new();
    let mut spec = Spec::bytes(vec![], &[3, 0, 2]);
    spec.null_data = true;
    spec.strides = Some(vec![-4, 77, 0]);
    // SAFETY: a live test-producer tensor that we own.
    let t = unsafe { Tensor::from_dlpack_versioned(common::versioned(&spec, &counter)) }.unwrap();
    assert_eq!(t.element_count(), 0);
    assert_eq!(t.as_bytes().unwrap(), [0_u8; 0]);
    assert_eq!(t.strides(), [2, 2, 1], "normalised to the canonical strides");
}

#[test]
fn size_one_axes_with_odd_strides_are_accepted() {
    let counter = Counter::new();
    let mut spec = Spec::bytes(common::pattern(3), &[1, 3, 1]);
    spec.strides = Some(vec![99, 1, -5]);
    // SAFETY: a live test-producer tensor that we own.
    let t = unsafe { Tensor::from_dlpack_legacy(common::legacy(&spec, &counter)) }.unwrap();
    assert_eq!(t.shape(), [1, 3, 1]);
    assert_eq!(t.strides(), [3, 1, 1], "normalised to the canonical strides");
    // And exported with them (PyTorch issue 56789: consumers may choke on odd ones).
    let e = t.to_dlpack(&Default::default()).unwrap();
    // SAFETY: `e` owns a live legacy export of ours; its strides array has 3 entries.
    let strides = unsafe {
        let dl = (*e.as_ptr().cast::<tensorbridge_core::ffi::DLManagedTensor>()).dl_tensor;
        std::slice::from_raw_parts(dl.strides, 3).to_vec()
    };
    assert_eq!(strides, [3, 1, 1]);
}

#[test]
fn zero_d_tensors_may_have_null_shape_and_strides() {
    let counter = Counter::new();
    let mut spec = Spec::bytes(vec![7], &[]);
    spec.null_shape = true;
    // SAFETY: a live test-producer tensor that we own.
    let t = unsafe { Tensor::from_dlpack_legacy(common::legacy(&spec, &counter)) }.unwrap();
    assert_eq!((t.ndim(), t.element_count()), (0, 1));
    assert_eq!(t.as_bytes().unwrap(), [7]);
}

#[test]
fn foreign_cuda_tensors_are_validated_and_host_memory_labelled_cuda_is_refused() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.device.device_type = DLDeviceType::CUDA;
    // Host memory labelled cuda:0: never dereferenced, refused before anything is trusted.
    let raw = common::versioned(&spec, &counter);
    // SAFETY: a live test-producer tensor that we own; its data is never read.
    let err = unsafe { Tensor::from_dlpack_versioned(raw) }.unwrap_err();
    let expected = if tensorbridge_core::cuda::is_available() {
        "ERR_DEVICE_MISMATCH"
    } else {
        // An unverifiable device pointer is refused rather than trusted.
        "ERR_CUDA_UNAVAILABLE"
    };
    assert_eq!(err.code(), expected, "{err}");
    assert_eq!(counter.calls(), 0, "the caller keeps ownership after a refused import");
    // SAFETY: ownership stayed with us.
    unsafe { free_versioned(raw) };
    assert_eq!(counter.calls(), 1);
}

#[test]
fn foreign_rocm_tensors_import_as_metadata_and_are_never_read() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.device.device_type = DLDeviceType::ROCM;
    spec.device.device_id = 1;
    // A device address: never dereferenced.
    spec.fake_data = Some(0x7f00_0000_0000);
    // SAFETY: a live test-producer tensor that we own; its data is never read on the host.
    let t = unsafe { Tensor::from_dlpack_versioned(common::versioned(&spec, &counter)) }.unwrap();
    let rocm1 = Device::new(DLDeviceType::ROCM, 1);
    assert_eq!(t.device(), rocm1);
    assert_eq!(t.data_ptr() as usize, 0x7f00_0000_0000);
    assert_eq!(t.storage_kind(), StorageKind::Foreign);
    assert_eq!(t.as_bytes().unwrap_err().code(), "ERR_NOT_CPU");
    // It can be passed on (metadata only) without a copy, and not copied.
    let again = t.to_dlpack(&Default::default()).unwrap().into_tensor().unwrap();
    assert_eq!(again.device(), rocm1);
    assert_eq!(t.to_cpu().unwrap_err().code(), "ERR_DEVICE_UNSUPPORTED");
    drop((t, again));
    assert_eq!(counter.calls(), 1);
}

#[test]
fn pinned_host_tensors_are_readable() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.device.device_type = DLDeviceType::CUDAHOST;
    // SAFETY: a live test-producer tensor that we own (ordinary memory labelled pinned).
    let t = unsafe { Tensor::from_dlpack_legacy(common::legacy(&spec, &counter)) }.unwrap();
    assert!(t.device().is_cpu());
    assert_eq!(t.dtype(), DataType::F32);
    assert_eq!(t.as_bytes().unwrap(), &spec.data[..]);
}

#[test]
fn not_contiguous_errors_name_the_axis_and_strides() {
    let counter = Counter::new();
    let mut spec = Spec::f32_2x3();
    spec.strides = Some(vec![6, 1]);
    let raw = common::legacy(&spec, &counter);
    // SAFETY: a live test-producer tensor that we own.
    let err = unsafe { Tensor::from_dlpack_legacy(raw) }.unwrap_err();
    assert_eq!(err, Error::NotContiguous { axis: 0, stride: 6, expected: 3 });
    // SAFETY: ownership stayed with us.
    unsafe { free_legacy(raw) };
}

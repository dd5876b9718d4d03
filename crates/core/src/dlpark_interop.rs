//! Conversions between this crate's DLPack types and dlpark 0.8's (feature `dlpark`).
//!
//! The two `ffi` modules describe the same C ABI (asserted field by field below and in
//! `tests/abi_layout.rs`), so managed-tensor pointers convert by a plain cast, and owning
//! handles convert without touching the tensor: an [`ExportedTensor`] becomes a dlpark
//! `ManagedBox` (whose drop calls the deleter, like ours) and back. One difference: dlpark's
//! `DLDeviceType` wraps a `u32`, ours an `i32` (C's enum type); values convert bit for bit.

use dlpark::ffi as dp;

use crate::device::Device;
use crate::export::ExportedTensor;
use crate::ffi;

// The managed structs must agree exactly for the pointer casts below to be sound.
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<ffi::DLTensor>() == size_of::<dp::DLTensor>());
    assert!(align_of::<ffi::DLTensor>() == align_of::<dp::DLTensor>());
    assert!(offset_of!(ffi::DLTensor, data) == offset_of!(dp::DLTensor, data));
    assert!(offset_of!(ffi::DLTensor, device) == offset_of!(dp::DLTensor, device));
    assert!(offset_of!(ffi::DLTensor, ndim) == offset_of!(dp::DLTensor, ndim));
    assert!(offset_of!(ffi::DLTensor, dtype) == offset_of!(dp::DLTensor, dtype));
    assert!(offset_of!(ffi::DLTensor, shape) == offset_of!(dp::DLTensor, shape));
    assert!(offset_of!(ffi::DLTensor, strides) == offset_of!(dp::DLTensor, strides));
    assert!(offset_of!(ffi::DLTensor, byte_offset) == offset_of!(dp::DLTensor, byte_offset));
    assert!(size_of::<ffi::DLManagedTensor>() == size_of::<dp::DLManagedTensor>());
    assert!(align_of::<ffi::DLManagedTensor>() == align_of::<dp::DLManagedTensor>());
    assert!(
        offset_of!(ffi::DLManagedTensor, manager_ctx)
            == offset_of!(dp::DLManagedTensor, manager_ctx)
    );
    assert!(offset_of!(ffi::DLManagedTensor, deleter) == offset_of!(dp::DLManagedTensor, deleter));
    assert!(
        size_of::<ffi::DLManagedTensorVersioned>() == size_of::<dp::DLManagedTensorVersioned>()
    );
    assert!(
        align_of::<ffi::DLManagedTensorVersioned>() == align_of::<dp::DLManagedTensorVersioned>()
    );
    assert!(
        offset_of!(ffi::DLManagedTensorVersioned, version)
            == offset_of!(dp::DLManagedTensorVersioned, version)
    );
    assert!(
        offset_of!(ffi::DLManagedTensorVersioned, manager_ctx)
            == offset_of!(dp::DLManagedTensorVersioned, manager_ctx)
    );
    assert!(
        offset_of!(ffi::DLManagedTensorVersioned, deleter)
            == offset_of!(dp::DLManagedTensorVersioned, deleter)
    );
    assert!(
        offset_of!(ffi::DLManagedTensorVersioned, flags)
            == offset_of!(dp::DLManagedTensorVersioned, flags)
    );
    assert!(
        offset_of!(ffi::DLManagedTensorVersioned, dl_tensor)
            == offset_of!(dp::DLManagedTensorVersioned, dl_tensor)
    );
};

impl From<ffi::DLDeviceType> for dp::DLDeviceType {
    fn from(t: ffi::DLDeviceType) -> Self {
        dp::DLDeviceType(t.0 as u32)
    }
}

impl From<dp::DLDeviceType> for ffi::DLDeviceType {
    fn from(t: dp::DLDeviceType) -> Self {
        ffi::DLDeviceType(t.0 as i32)
    }
}

impl From<ffi::DLDevice> for dp::DLDevice {
    fn from(d: ffi::DLDevice) -> Self {
        dp::DLDevice { device_type: d.device_type.into(), device_id: d.device_id }
    }
}

impl From<dp::DLDevice> for ffi::DLDevice {
    fn from(d: dp::DLDevice) -> Self {
        ffi::DLDevice { device_type: d.device_type.into(), device_id: d.device_id }
    }
}

impl From<Device> for dp::DLDevice {
    fn from(d: Device) -> Self {
        d.to_dlpack().into()
    }
}

impl From<dp::DLDevice> for Device {
    fn from(d: dp::DLDevice) -> Self {
        Device::from(ffi::DLDevice::from(d))
    }
}

impl From<ffi::DLDataTypeCode> for dp::DLDataTypeCode {
    fn from(c: ffi::DLDataTypeCode) -> Self {
        dp::DLDataTypeCode(c.0)
    }
}

impl From<dp::DLDataTypeCode> for ffi::DLDataTypeCode {
    fn from(c: dp::DLDataTypeCode) -> Self {
        ffi::DLDataTypeCode(c.0)
    }
}

impl From<ffi::DLDataType> for dp::DLDataType {
    fn from(t: ffi::DLDataType) -> Self {
        dp::DLDataType { code: t.code.into(), bits: t.bits, lanes: t.lanes }
    }
}

impl From<dp::DLDataType> for ffi::DLDataType {
    fn from(t: dp::DLDataType) -> Self {
        ffi::DLDataType { code: t.code.into(), bits: t.bits, lanes: t.lanes }
    }
}

impl From<ffi::DLPackVersion> for dp::DLPackVersion {
    fn from(v: ffi::DLPackVersion) -> Self {
        dp::DLPackVersion { major: v.major, minor: v.minor }
    }
}

impl From<dp::DLPackVersion> for ffi::DLPackVersion {
    fn from(v: dp::DLPackVersion) -> Self {
        ffi::DLPackVersion { major: v.major, minor: v.minor }
    }
}

/// Our legacy managed pointer as dlpark's (same address; layouts are identical).
pub fn legacy_to_dlpark(ptr: *mut ffi::DLManagedTensor) -> *mut dp::DLManagedTensor {
    ptr.cast()
}

/// dlpark's legacy managed pointer as ours (same address; layouts are identical).
pub fn legacy_from_dlpark(ptr: *mut dp::DLManagedTensor) -> *mut ffi::DLManagedTensor {
    ptr.cast()
}

/// Our versioned managed pointer as dlpark's (same address; layouts are identical).
pub fn versioned_to_dlpark(
    ptr: *mut ffi::DLManagedTensorVersioned,
) -> *mut dp::DLManagedTensorVersioned {
    ptr.cast()
}

/// dlpark's versioned managed pointer as ours (same address; layouts are identical).
pub fn versioned_from_dlpark(
    ptr: *mut dp::DLManagedTensorVersioned,
) -> *mut ffi::DLManagedTensorVersioned {
    ptr.cast()
}

impl From<dlpark::legacy::Dlpack> for ExportedTensor {
    /// Moves ownership from dlpark's handle to ours; nothing is read or called.
    fn from(d: dlpark::legacy::Dlpack) -> Self {
        let ptr = d.into_raw();
        // SAFETY: `ManagedBox` owned a live, aligned, non-NULL legacy managed tensor; its
        // ownership (and the duty to call the deleter once) passes to the new handle.
        unsafe { ExportedTensor::from_raw(ptr.cast(), false) }
            .expect("a dlpark handle holds an aligned non-NULL pointer")
    }
}

impl From<dlpark::versioned::Dlpack> for ExportedTensor {
    /// Moves ownership from dlpark's handle to ours; nothing is read or called.
    fn from(d: dlpark::versioned::Dlpack) -> Self {
        let ptr = d.into_raw();
        // SAFETY: as for the legacy handle, for a versioned managed tensor.
        unsafe { ExportedTensor::from_raw(ptr.cast(), true) }
            .expect("a dlpark handle holds an aligned non-NULL pointer")
    }
}

impl TryFrom<ExportedTensor> for dlpark::legacy::Dlpack {
    /// The handle, unchanged, when it is versioned.
    type Error = ExportedTensor;

    /// Moves ownership to a dlpark handle when `e` is legacy.
    fn try_from(e: ExportedTensor) -> Result<Self, ExportedTensor> {
        if e.is_versioned() {
            return Err(e);
        }
        let ptr = legacy_to_dlpark(e.into_raw().cast());
        // SAFETY: `into_raw` gave us sole ownership of a live, non-NULL legacy managed tensor
        // whose deleter may be called once from any thread.
        Ok(unsafe { dlpark::legacy::Dlpack::new_unchecked(ptr) })
    }
}

impl TryFrom<ExportedTensor> for dlpark::versioned::Dlpack {
    /// The handle, unchanged, when it is legacy.
    type Error = ExportedTensor;

    /// Moves ownership to a dlpark handle when `e` is versioned.
    fn try_from(e: ExportedTensor) -> Result<Self, ExportedTensor> {
        if !e.is_versioned() {
            return Err(e);
        }
        let ptr = versioned_to_dlpark(e.into_raw().cast());
        // SAFETY: as for the legacy handle, for a versioned managed tensor.
        Ok(unsafe { dlpark::versioned::Dlpack::new_unchecked(ptr) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DataType;
    use crate::export::ExportOptions;
    use crate::storage::StorageKind;
    use crate::tensor::Tensor;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    #[test]
    fn devices_convert_both_ways_including_unknown_types() {
        for &kind in ffi::DLDeviceType::ALL {
            let ours = ffi::DLDevice { device_type: kind, device_id: 3 };
            let theirs = dp::DLDevice::from(ours);
            assert_eq!(theirs.device_type.0 as i32, kind.0);
            assert_eq!(ffi::DLDevice::from(theirs), ours);
        }
        let cuda: dp::DLDevice = Device::cuda(2).into();
        assert_eq!(cuda.device_type, dp::DLDeviceType::CUDA);
        assert_eq!(Device::from(dp::DLDevice::CPU), Device::CPU);
        let odd = ffi::DLDeviceType(-7);
        assert_eq!(ffi::DLDeviceType::from(dp::DLDeviceType::from(odd)), odd);
    }

    #[test]
    fn device_and_type_code_constants_match_dlpark() {
        let pairs = [
            (ffi::DLDeviceType::CPU, dp::DLDeviceType::CPU),
            (ffi::DLDeviceType::CUDAHOST, dp::DLDeviceType::CUDAHOST),
            (ffi::DLDeviceType::CUDAMANAGED, dp::DLDeviceType::CUDAMANAGED),
            (ffi::DLDeviceType::TRN, dp::DLDeviceType::TRN),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(dp::DLDeviceType::from(ours), theirs);
        }
        assert_eq!(
            dp::DLDataTypeCode::from(ffi::DLDataTypeCode::FLOAT4_E2M1FN),
            dp::DLDataTypeCode::FLOAT4_E2M1FN
        );
        assert_eq!(ffi::DLPACK_MAJOR_VERSION, dp::DLPACK_MAJOR_VERSION);
        assert_eq!(ffi::DLPACK_MINOR_VERSION, dp::DLPACK_MINOR_VERSION);
    }

    #[test]
    fn data_types_match_dlparks_element_descriptors() {
        let cases = [
            (DataType::F32, dp::DLDataType::of::<f32>()),
            (DataType::F64, dp::DLDataType::of::<f64>()),
            (DataType::I8, dp::DLDataType::of::<i8>()),
            (DataType::U64, dp::DLDataType::of::<u64>()),
            (DataType::Bool, dp::DLDataType::scalar(dp::DLDataTypeCode::BOOL, 8)),
        ];
        for (ours, theirs) in cases {
            let converted: dp::DLDataType = ours.to_dlpack().unwrap().into();
            assert!(converted.matches(theirs), "{ours}");
            assert_eq!(DataType::from_dlpack(theirs.into()).unwrap(), ours);
        }
    }

    #[test]
    fn versions_convert_both_ways() {
        let v: dp::DLPackVersion = ffi::DLPackVersion::CURRENT.into();
        assert_eq!((v.major, v.minor), (1, 3));
        assert_eq!(ffi::DLPackVersion::from(v), ffi::DLPackVersion::CURRENT);
    }

    struct Counted(Vec<f32>, Arc<AtomicUsize>);
    impl Drop for Counted {
        fn drop(&mut self) {
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn dlpark_tensor<M: dlpark::ManagedTensorBase>(
        drops: &Arc<AtomicUsize>,
    ) -> (dlpark::ManagedBox<M>, *mut f32) {
        let mut ctx = Box::new(Counted(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], Arc::clone(drops)));
        let data = ctx.0.as_mut_ptr();
        let metadata = dlpark::metadata::CopiedArray::new([2_i64, 3], [3_i64, 1]);
        // SAFETY: `ctx` owns the six floats at `data` until dlpark's deleter drops it.
        let builder = unsafe { dlpark::Builder::new(ctx, metadata).data(data.cast()) }
            .dtype(dp::DLDataType::of::<f32>());
        (builder.build::<M>(), data)
    }

    #[test]
    fn dlpark_tensors_import_zero_copy_and_are_deleted_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let (legacy, data) = dlpark_tensor::<dp::DLManagedTensor>(&drops);
        let t = ExportedTensor::from(legacy).into_tensor().unwrap();
        assert_eq!(t.data_ptr(), data.cast());
        assert_eq!(t.shape(), [2, 3]);
        assert_eq!(t.dtype(), DataType::F32);
        assert_eq!(t.storage_kind(), StorageKind::Foreign);
        assert_eq!(&t.as_bytes().unwrap()[4..8], 2.0_f32.to_ne_bytes());
        let clone = t.clone();
        drop(t);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(clone);
        assert_eq!(drops.load(Ordering::SeqCst), 1);

        let (versioned, _) = dlpark_tensor::<dp::DLManagedTensorVersioned>(&drops);
        let t = ExportedTensor::from(versioned).into_tensor().unwrap();
        drop(t);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
    }

    #[test]
    fn our_exports_read_correctly_through_dlpark() {
        let bytes: Vec<u8> = (1..=6_i32).flat_map(|x| x.to_ne_bytes()).collect();
        let t = Tensor::from_vec(bytes, &[3, 2], DataType::I32).unwrap();
        let legacy =
            dlpark::legacy::Dlpack::try_from(t.to_dlpack(&ExportOptions::default()).unwrap())
                .unwrap();
        assert_eq!(legacy.shape().unwrap(), [3, 2]);
        assert_eq!(legacy.cpu_data_slice::<i32>().unwrap(), [1, 2, 3, 4, 5, 6]);

        let versioned =
            dlpark::versioned::Dlpack::try_from(t.to_dlpack(&ExportOptions::versioned()).unwrap())
                .unwrap();
        assert_eq!(versioned.version().major, 1);
        assert_eq!(versioned.strides().unwrap(), Some(&[2_i64, 1][..]));
        assert_eq!(versioned.cpu_data_slice::<i32>().unwrap()[5], 6);

        // Handing a handle back to us and importing it shares the original bytes.
        let back = ExportedTensor::from(versioned).into_tensor().unwrap();
        assert_eq!(back.data_ptr(), t.data_ptr());
        drop(legacy);
    }

    #[test]
    fn converting_to_the_wrong_abi_returns_the_handle_unchanged() {
        let t = Tensor::zeros(&[1], DataType::U8).unwrap();
        let e = t.to_dlpack(&ExportOptions::versioned()).unwrap();
        let ptr = e.as_ptr();
        let Err(e) = dlpark::legacy::Dlpack::try_from(e) else {
            panic!("a versioned handle became a legacy one");
        };
        assert_eq!(e.as_ptr(), ptr);
        let e = t.to_dlpack(&ExportOptions::default()).unwrap();
        assert!(dlpark::versioned::Dlpack::try_from(e).is_err());
    }

    #[test]
    fn pointer_casts_keep_the_address() {
        let t = Tensor::zeros(&[2], DataType::U8).unwrap();
        let e = t.to_dlpack(&ExportOptions::default()).unwrap();
        let ours = e.as_ptr().cast::<ffi::DLManagedTensor>();
        let theirs = legacy_to_dlpark(ours);
        assert_eq!(theirs.cast::<u8>(), ours.cast::<u8>());
        assert_eq!(legacy_from_dlpark(theirs), ours);
        // SAFETY: `e` keeps the managed tensor alive; dlpark's view reads the same descriptor.
        let ndim = unsafe { (*theirs).dl_tensor.ndim };
        assert_eq!(ndim, 1);
        let v = versioned_to_dlpark(std::ptr::null_mut());
        assert!(versioned_from_dlpark(v).is_null());
    }
}

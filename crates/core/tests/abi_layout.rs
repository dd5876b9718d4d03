//! ABI layout: every size, alignment and field offset of the DLPack structs, against the
//! numbers in DESIGN.md and against dlpark 0.8's bindgen-generated structs.
#![cfg(target_pointer_width = "64")]

use std::mem::{align_of, offset_of, size_of};

use dlpark::ffi as dp;
use tensorbridge_core::ffi::*;

#[test]
fn dlpack_version_is_8_by_4_with_major_then_minor() {
    assert_eq!((size_of::<DLPackVersion>(), align_of::<DLPackVersion>()), (8, 4));
    assert_eq!(offset_of!(DLPackVersion, major), 0);
    assert_eq!(offset_of!(DLPackVersion, minor), 4);
}

#[test]
fn dl_device_is_8_by_4_with_type_then_id() {
    assert_eq!((size_of::<DLDevice>(), align_of::<DLDevice>()), (8, 4));
    assert_eq!(offset_of!(DLDevice, device_type), 0);
    assert_eq!(offset_of!(DLDevice, device_id), 4);
    assert_eq!(size_of::<DLDeviceType>(), 4);
}

#[test]
fn dl_data_type_is_4_by_2_with_code_bits_lanes() {
    assert_eq!((size_of::<DLDataType>(), align_of::<DLDataType>()), (4, 2));
    assert_eq!(offset_of!(DLDataType, code), 0);
    assert_eq!(offset_of!(DLDataType, bits), 1);
    assert_eq!(offset_of!(DLDataType, lanes), 2);
    assert_eq!(size_of::<DLDataTypeCode>(), 1);
}

#[test]
fn dl_tensor_is_48_by_8_with_the_documented_offsets() {
    assert_eq!((size_of::<DLTensor>(), align_of::<DLTensor>()), (48, 8));
    assert_eq!(offset_of!(DLTensor, data), 0);
    assert_eq!(offset_of!(DLTensor, device), 8);
    assert_eq!(offset_of!(DLTensor, ndim), 16);
    assert_eq!(offset_of!(DLTensor, dtype), 20);
    assert_eq!(offset_of!(DLTensor, shape), 24);
    assert_eq!(offset_of!(DLTensor, strides), 32);
    assert_eq!(offset_of!(DLTensor, byte_offset), 40);
}

#[test]
fn dl_managed_tensor_is_64_by_8_with_ctx_and_deleter_after_the_tensor() {
    assert_eq!((size_of::<DLManagedTensor>(), align_of::<DLManagedTensor>()), (64, 8));
    assert_eq!(offset_of!(DLManagedTensor, dl_tensor), 0);
    assert_eq!(offset_of!(DLManagedTensor, manager_ctx), 48);
    assert_eq!(offset_of!(DLManagedTensor, deleter), 56);
}

#[test]
fn dl_managed_tensor_versioned_is_80_by_8_with_the_documented_offsets() {
    assert_eq!(
        (size_of::<DLManagedTensorVersioned>(), align_of::<DLManagedTensorVersioned>()),
        (80, 8)
    );
    assert_eq!(offset_of!(DLManagedTensorVersioned, version), 0);
    assert_eq!(offset_of!(DLManagedTensorVersioned, manager_ctx), 8);
    assert_eq!(offset_of!(DLManagedTensorVersioned, deleter), 16);
    assert_eq!(offset_of!(DLManagedTensorVersioned, flags), 24);
    assert_eq!(offset_of!(DLManagedTensorVersioned, dl_tensor), 32);
    // `flags` is a 64-bit field: it fills the gap up to `dl_tensor`.
    let flags_width = offset_of!(DLManagedTensorVersioned, dl_tensor)
        - offset_of!(DLManagedTensorVersioned, flags);
    assert_eq!(flags_width, size_of::<u64>());
}

/// Asserts that a struct has the same size, alignment and field offsets in both crates.
macro_rules! same_layout {
    ($ours:ty, $theirs:ty, [$($field:ident),+ $(,)?]) => {{
        assert_eq!(size_of::<$ours>(), size_of::<$theirs>(), "size of {}", stringify!($ours));
        assert_eq!(align_of::<$ours>(), align_of::<$theirs>(), "align of {}", stringify!($ours));
        $(
            assert_eq!(
                offset_of!($ours, $field),
                offset_of!($theirs, $field),
                "offset of {}::{}",
                stringify!($ours),
                stringify!($field)
            );
        )+
    }};
}

#[test]
fn every_struct_matches_dlparks_bindgen_layout() {
    same_layout!(DLPackVersion, dp::DLPackVersion, [major, minor]);
    same_layout!(DLDevice, dp::DLDevice, [device_type, device_id]);
    same_layout!(DLDataType, dp::DLDataType, [code, bits, lanes]);
    same_layout!(DLTensor, dp::DLTensor, [data, device, ndim, dtype, shape, strides, byte_offset]);
    same_layout!(DLManagedTensor, dp::DLManagedTensor, [dl_tensor, manager_ctx, deleter]);
    same_layout!(
        DLManagedTensorVersioned,
        dp::DLManagedTensorVersioned,
        [version, manager_ctx, deleter, flags, dl_tensor]
    );
    assert_eq!(size_of::<DLDeviceType>(), size_of::<dp::DLDeviceType>());
    assert_eq!(size_of::<DLDataTypeCode>(), size_of::<dp::DLDataTypeCode>());
}

#[test]
fn constants_match_dlpack_1_3_and_dlpark() {
    assert_eq!((DLPACK_MAJOR_VERSION, DLPACK_MINOR_VERSION), (1, 3));
    assert_eq!(DLPACK_MAJOR_VERSION, dp::DLPACK_MAJOR_VERSION);
    assert_eq!(DLPACK_MINOR_VERSION, dp::DLPACK_MINOR_VERSION);
    assert_eq!(DLPACK_FLAG_BITMASK_READ_ONLY, 1);
    assert_eq!(DLPACK_FLAG_BITMASK_IS_COPIED, 2);
    assert_eq!(DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED, 4);
    assert_eq!(DLPACK_FLAG_BITMASK_READ_ONLY, u64::from(dp::DLPACK_FLAG_BITMASK_READ_ONLY));
    assert_eq!(DLPACK_FLAG_BITMASK_IS_COPIED, u64::from(dp::DLPACK_FLAG_BITMASK_IS_COPIED));
    assert_eq!(
        DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED,
        u64::from(dp::DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED)
    );
}

#[test]
fn every_device_type_value_matches_dlpark() {
    let pairs = [
        (DLDeviceType::CPU, dp::DLDeviceType::CPU, 1),
        (DLDeviceType::CUDA, dp::DLDeviceType::CUDA, 2),
        (DLDeviceType::CUDAHOST, dp::DLDeviceType::CUDAHOST, 3),
        (DLDeviceType::OPENCL, dp::DLDeviceType::OPENCL, 4),
        (DLDeviceType::VULKAN, dp::DLDeviceType::VULKAN, 7),
        (DLDeviceType::METAL, dp::DLDeviceType::METAL, 8),
        (DLDeviceType::VPI, dp::DLDeviceType::VPI, 9),
        (DLDeviceType::ROCM, dp::DLDeviceType::ROCM, 10),
        (DLDeviceType::ROCMHOST, dp::DLDeviceType::ROCMHOST, 11),
        (DLDeviceType::EXTDEV, dp::DLDeviceType::EXTDEV, 12),
        (DLDeviceType::CUDAMANAGED, dp::DLDeviceType::CUDAMANAGED, 13),
        (DLDeviceType::ONEAPI, dp::DLDeviceType::ONEAPI, 14),
        (DLDeviceType::WEBGPU, dp::DLDeviceType::WEBGPU, 15),
        (DLDeviceType::HEXAGON, dp::DLDeviceType::HEXAGON, 16),
        (DLDeviceType::MAIA, dp::DLDeviceType::MAIA, 17),
        (DLDeviceType::TRN, dp::DLDeviceType::TRN, 18),
    ];
    assert_eq!(pairs.len(), DLDeviceType::ALL.len());
    for (ours, theirs, value) in pairs {
        assert_eq!(ours.0, value);
        assert_eq!(theirs.0, value as u32);
    }
}

#[test]
fn every_type_code_value_matches_dlpark() {
    let theirs = [
        dp::DLDataTypeCode::INT,
        dp::DLDataTypeCode::UINT,
        dp::DLDataTypeCode::FLOAT,
        dp::DLDataTypeCode::OPAQUEHANDLE,
        dp::DLDataTypeCode::BFLOAT,
        dp::DLDataTypeCode::COMPLEX,
        dp::DLDataTypeCode::BOOL,
        dp::DLDataTypeCode::FLOAT8_E3M4,
        dp::DLDataTypeCode::FLOAT8_E4M3,
        dp::DLDataTypeCode::FLOAT8_E4M3B11FNUZ,
        dp::DLDataTypeCode::FLOAT8_E4M3FN,
        dp::DLDataTypeCode::FLOAT8_E4M3FNUZ,
        dp::DLDataTypeCode::FLOAT8_E5M2,
        dp::DLDataTypeCode::FLOAT8_E5M2FNUZ,
        dp::DLDataTypeCode::FLOAT8_E8M0FNU,
        dp::DLDataTypeCode::FLOAT6_E2M3FN,
        dp::DLDataTypeCode::FLOAT6_E3M2FN,
        dp::DLDataTypeCode::FLOAT4_E2M1FN,
    ];
    assert_eq!(theirs.len(), DLDataTypeCode::ALL.len());
    for (ours, theirs) in DLDataTypeCode::ALL.iter().zip(theirs) {
        assert_eq!(ours.0, theirs.0);
    }
    assert_eq!(DLDataTypeCode::FLOAT4_E2M1FN.0, 17);
}

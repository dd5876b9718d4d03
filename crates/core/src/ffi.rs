//! The DLPack C ABI (v1.3): `#[repr(C)]` structs and integer newtypes, exactly as `dlpack.h`.
//!
//! These declarations are written by hand from `dlpack.h` v1.3 rather than generated: the crate
//! must build without `bindgen`/libclang, and the ABI is small and frozen for major version 1.
//! Every size, alignment and field offset is asserted at compile time below (64-bit layout,
//! as in DESIGN.md), and `tests/abi_layout.rs` checks each of them again against dlpark 0.8's
//! bindgen output, so a typo here cannot slip through.
//!
//! Enumerations that cross the ABI ([`DLDeviceType`][dt], [`DLDataTypeCode`][dc]) are
//! `#[repr(transparent)]` newtypes over their integer, never Rust `enum`s: a value this crate
//! does not know (from a newer producer, or garbage) is then an ordinary integer to reject,
//! not undefined behaviour. Associated constants use dlpack.h's names, upper-cased without
//! the `kDL` prefix (`kDLCUDAHost` → [`DLDeviceType::CUDAHOST`][cuda_host]), the same
//! spelling as dlpark.
//!
//! [dt]: crate::ffi::DLDeviceType
//! [dc]: crate::ffi::DLDataTypeCode
//! [cuda_host]: crate::ffi::DLDeviceType::CUDAHOST

use std::ffi::c_void;
use std::fmt;

/// The DLPack major version this crate implements. A versioned tensor with another major
/// version has a different layout: only its deleter may be touched.
pub const DLPACK_MAJOR_VERSION: u32 = 1;
/// The DLPack minor version this crate implements. Higher minor versions from a producer are
/// accepted (they only add enum values, which are validated one by one).
pub const DLPACK_MINOR_VERSION: u32 = 3;

/// `flags` bit: the consumer must not write to the tensor's data.
pub const DLPACK_FLAG_BITMASK_READ_ONLY: u64 = 1;
/// `flags` bit: the producer made a copy for this export; nobody else aliases the data.
pub const DLPACK_FLAG_BITMASK_IS_COPIED: u64 = 2;
/// `flags` bit: sub-byte types (e.g. 4-bit floats) are padded to whole bytes.
pub const DLPACK_FLAG_BITMASK_IS_SUBBYTE_TYPE_PADDED: u64 = 4;

/// `DLPackVersion`: the ABI version carried by a [`DLManagedTensorVersioned`].
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DLPackVersion {
    /// Major version: a change means a different struct layout.
    pub major: u32,
    /// Minor version: a change only adds enum values.
    pub minor: u32,
}

impl DLPackVersion {
    /// The version this crate implements and writes on export (1.3).
    pub const CURRENT: DLPackVersion =
        DLPackVersion { major: DLPACK_MAJOR_VERSION, minor: DLPACK_MINOR_VERSION };
}

/// `DLDeviceType`: where a tensor's memory lives (a C enum, carried as its `int` value).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DLDeviceType(pub i32);

impl DLDeviceType {
    /// `kDLCPU`: ordinary host memory.
    pub const CPU: DLDeviceType = DLDeviceType(1);
    /// `kDLCUDA`: CUDA device memory.
    pub const CUDA: DLDeviceType = DLDeviceType(2);
    /// `kDLCUDAHost`: pinned host memory from `cudaMallocHost`.
    pub const CUDAHOST: DLDeviceType = DLDeviceType(3);
    /// `kDLOpenCL`: OpenCL buffers.
    pub const OPENCL: DLDeviceType = DLDeviceType(4);
    /// `kDLVulkan`: Vulkan buffers.
    pub const VULKAN: DLDeviceType = DLDeviceType(7);
    /// `kDLMetal`: Metal (Apple GPU) buffers.
    pub const METAL: DLDeviceType = DLDeviceType(8);
    /// `kDLVPI`: Verilog simulator buffers.
    pub const VPI: DLDeviceType = DLDeviceType(9);
    /// `kDLROCM`: ROCm (AMD GPU) device memory.
    pub const ROCM: DLDeviceType = DLDeviceType(10);
    /// `kDLROCMHost`: pinned host memory from `hipMallocHost`.
    pub const ROCMHOST: DLDeviceType = DLDeviceType(11);
    /// `kDLExtDev`: reserved extension device.
    pub const EXTDEV: DLDeviceType = DLDeviceType(12);
    /// `kDLCUDAManaged`: CUDA managed (unified) memory from `cudaMallocManaged`.
    pub const CUDAMANAGED: DLDeviceType = DLDeviceType(13);
    /// `kDLOneAPI`: oneAPI unified shared memory.
    pub const ONEAPI: DLDeviceType = DLDeviceType(14);
    /// `kDLWebGPU`: WebGPU buffers.
    pub const WEBGPU: DLDeviceType = DLDeviceType(15);
    /// `kDLHexagon`: Qualcomm Hexagon DSP.
    pub const HEXAGON: DLDeviceType = DLDeviceType(16);
    /// `kDLMAIA`: Microsoft MAIA devices.
    pub const MAIA: DLDeviceType = DLDeviceType(17);
    /// `kDLTrn`: AWS Trainium.
    pub const TRN: DLDeviceType = DLDeviceType(18);

    /// Every device type DLPack 1.3 defines, in numeric order.
    pub const ALL: &'static [DLDeviceType] = &[
        Self::CPU,
        Self::CUDA,
        Self::CUDAHOST,
        Self::OPENCL,
        Self::VULKAN,
        Self::METAL,
        Self::VPI,
        Self::ROCM,
        Self::ROCMHOST,
        Self::EXTDEV,
        Self::CUDAMANAGED,
        Self::ONEAPI,
        Self::WEBGPU,
        Self::HEXAGON,
        Self::MAIA,
        Self::TRN,
    ];

    /// The `dlpack.h` enumerator name (`"kDLCUDAHost"`), or `None` for a value DLPack 1.3
    /// does not define.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            1 => "kDLCPU",
            2 => "kDLCUDA",
            3 => "kDLCUDAHost",
            4 => "kDLOpenCL",
            7 => "kDLVulkan",
            8 => "kDLMetal",
            9 => "kDLVPI",
            10 => "kDLROCM",
            11 => "kDLROCMHost",
            12 => "kDLExtDev",
            13 => "kDLCUDAManaged",
            14 => "kDLOneAPI",
            15 => "kDLWebGPU",
            16 => "kDLHexagon",
            17 => "kDLMAIA",
            18 => "kDLTrn",
            _ => return None,
        })
    }

    /// Whether DLPack 1.3 defines this value.
    pub const fn is_known(self) -> bool {
        self.name().is_some()
    }
}

impl fmt::Debug for DLDeviceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "DLDeviceType({})", self.0),
        }
    }
}

/// `DLDevice`: a device type and its ordinal.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DLDevice {
    /// The kind of device.
    pub device_type: DLDeviceType,
    /// The device ordinal; 0 for CPU, pinned and managed memory.
    pub device_id: i32,
}

/// `DLDataTypeCode`: the family of an element type (a C enum stored in a `uint8_t`).
#[repr(transparent)]
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DLDataTypeCode(pub u8);

impl DLDataTypeCode {
    /// `kDLInt`: signed integer.
    pub const INT: DLDataTypeCode = DLDataTypeCode(0);
    /// `kDLUInt`: unsigned integer.
    pub const UINT: DLDataTypeCode = DLDataTypeCode(1);
    /// `kDLFloat`: IEEE floating point.
    pub const FLOAT: DLDataTypeCode = DLDataTypeCode(2);
    /// `kDLOpaqueHandle`: opaque handle, reserved for testing.
    pub const OPAQUEHANDLE: DLDataTypeCode = DLDataTypeCode(3);
    /// `kDLBfloat`: bfloat16.
    pub const BFLOAT: DLDataTypeCode = DLDataTypeCode(4);
    /// `kDLComplex`: complex number (two packed floats).
    pub const COMPLEX: DLDataTypeCode = DLDataTypeCode(5);
    /// `kDLBool`: boolean (8 bits per element by convention).
    pub const BOOL: DLDataTypeCode = DLDataTypeCode(6);
    /// `kDLFloat8_e3m4`.
    pub const FLOAT8_E3M4: DLDataTypeCode = DLDataTypeCode(7);
    /// `kDLFloat8_e4m3`.
    pub const FLOAT8_E4M3: DLDataTypeCode = DLDataTypeCode(8);
    /// `kDLFloat8_e4m3b11fnuz`.
    pub const FLOAT8_E4M3B11FNUZ: DLDataTypeCode = DLDataTypeCode(9);
    /// `kDLFloat8_e4m3fn`.
    pub const FLOAT8_E4M3FN: DLDataTypeCode = DLDataTypeCode(10);
    /// `kDLFloat8_e4m3fnuz`.
    pub const FLOAT8_E4M3FNUZ: DLDataTypeCode = DLDataTypeCode(11);
    /// `kDLFloat8_e5m2`.
    pub const FLOAT8_E5M2: DLDataTypeCode = DLDataTypeCode(12);
    /// `kDLFloat8_e5m2fnuz`.
    pub const FLOAT8_E5M2FNUZ: DLDataTypeCode = DLDataTypeCode(13);
    /// `kDLFloat8_e8m0fnu`.
    pub const FLOAT8_E8M0FNU: DLDataTypeCode = DLDataTypeCode(14);
    /// `kDLFloat6_e2m3fn`.
    pub const FLOAT6_E2M3FN: DLDataTypeCode = DLDataTypeCode(15);
    /// `kDLFloat6_e3m2fn`.
    pub const FLOAT6_E3M2FN: DLDataTypeCode = DLDataTypeCode(16);
    /// `kDLFloat4_e2m1fn`.
    pub const FLOAT4_E2M1FN: DLDataTypeCode = DLDataTypeCode(17);

    /// Every type code DLPack 1.3 defines, in numeric order (0 to 17).
    pub const ALL: &'static [DLDataTypeCode] = &[
        Self::INT,
        Self::UINT,
        Self::FLOAT,
        Self::OPAQUEHANDLE,
        Self::BFLOAT,
        Self::COMPLEX,
        Self::BOOL,
        Self::FLOAT8_E3M4,
        Self::FLOAT8_E4M3,
        Self::FLOAT8_E4M3B11FNUZ,
        Self::FLOAT8_E4M3FN,
        Self::FLOAT8_E4M3FNUZ,
        Self::FLOAT8_E5M2,
        Self::FLOAT8_E5M2FNUZ,
        Self::FLOAT8_E8M0FNU,
        Self::FLOAT6_E2M3FN,
        Self::FLOAT6_E3M2FN,
        Self::FLOAT4_E2M1FN,
    ];

    /// The `dlpack.h` enumerator name (`"kDLBfloat"`), or `None` for a value DLPack 1.3 does
    /// not define.
    pub const fn name(self) -> Option<&'static str> {
        Some(match self.0 {
            0 => "kDLInt",
            1 => "kDLUInt",
            2 => "kDLFloat",
            3 => "kDLOpaqueHandle",
            4 => "kDLBfloat",
            5 => "kDLComplex",
            6 => "kDLBool",
            7 => "kDLFloat8_e3m4",
            8 => "kDLFloat8_e4m3",
            9 => "kDLFloat8_e4m3b11fnuz",
            10 => "kDLFloat8_e4m3fn",
            11 => "kDLFloat8_e4m3fnuz",
            12 => "kDLFloat8_e5m2",
            13 => "kDLFloat8_e5m2fnuz",
            14 => "kDLFloat8_e8m0fnu",
            15 => "kDLFloat6_e2m3fn",
            16 => "kDLFloat6_e3m2fn",
            17 => "kDLFloat4_e2m1fn",
            _ => return None,
        })
    }
}

impl fmt::Debug for DLDataTypeCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name}"),
            None => write!(f, "DLDataTypeCode({})", self.0),
        }
    }
}

/// `DLDataType`: element type as (code, bits, lanes).
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DLDataType {
    /// The type family.
    pub code: DLDataTypeCode,
    /// Bits per lane (8, 16, 32, 64, ...).
    pub bits: u8,
    /// Lanes for vector types; 1 for every type this crate accepts.
    pub lanes: u16,
}

/// `DLTensor`: a non-owning tensor descriptor.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLTensor {
    /// Start of the allocation (before `byte_offset`); may be NULL for zero-sized tensors.
    pub data: *mut c_void,
    /// Where `data` lives.
    pub device: DLDevice,
    /// Number of dimensions.
    pub ndim: i32,
    /// Element type.
    pub dtype: DLDataType,
    /// `ndim` sizes; may be NULL when `ndim == 0`.
    pub shape: *mut i64,
    /// `ndim` strides in elements; NULL means compact row-major (before DLPack 1.2).
    pub strides: *mut i64,
    /// Bytes from `data` to the first element.
    pub byte_offset: u64,
}

/// Deleter of a legacy [`DLManagedTensor`]; it frees the struct itself too.
pub type DLManagedTensorDeleter = Option<unsafe extern "C" fn(*mut DLManagedTensor)>;
/// Deleter of a [`DLManagedTensorVersioned`]; it frees the struct itself too.
pub type DLManagedTensorVersionedDeleter =
    Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>;

/// `DLManagedTensor`: the legacy (pre-1.0, "v0.8") owning tensor.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLManagedTensor {
    /// The descriptor.
    pub dl_tensor: DLTensor,
    /// Producer's context; opaque to consumers.
    pub manager_ctx: *mut c_void,
    /// Called once by the consumer when done; may be NULL.
    pub deleter: DLManagedTensorDeleter,
}

/// `DLManagedTensorVersioned`: the owning tensor of DLPack ≥ 1.0, with version and flags.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct DLManagedTensorVersioned {
    /// ABI version; a consumer checks `major` before reading anything else.
    pub version: DLPackVersion,
    /// Producer's context; opaque to consumers.
    pub manager_ctx: *mut c_void,
    /// Called once by the consumer when done; may be NULL. Stable across major versions.
    pub deleter: DLManagedTensorVersionedDeleter,
    /// `DLPACK_FLAG_BITMASK_*` bits.
    pub flags: u64,
    /// The descriptor.
    pub dl_tensor: DLTensor,
}

// Compile-time layout checks (64-bit targets; the numbers are DESIGN.md's).
#[cfg(target_pointer_width = "64")]
const _: () = {
    use std::mem::{align_of, offset_of, size_of};
    assert!(size_of::<DLPackVersion>() == 8 && align_of::<DLPackVersion>() == 4);
    assert!(offset_of!(DLPackVersion, major) == 0 && offset_of!(DLPackVersion, minor) == 4);
    assert!(size_of::<DLDevice>() == 8 && align_of::<DLDevice>() == 4);
    assert!(offset_of!(DLDevice, device_type) == 0 && offset_of!(DLDevice, device_id) == 4);
    assert!(size_of::<DLDataType>() == 4 && align_of::<DLDataType>() == 2);
    assert!(offset_of!(DLDataType, code) == 0);
    assert!(offset_of!(DLDataType, bits) == 1);
    assert!(offset_of!(DLDataType, lanes) == 2);
    assert!(size_of::<DLTensor>() == 48 && align_of::<DLTensor>() == 8);
    assert!(offset_of!(DLTensor, data) == 0);
    assert!(offset_of!(DLTensor, device) == 8);
    assert!(offset_of!(DLTensor, ndim) == 16);
    assert!(offset_of!(DLTensor, dtype) == 20);
    assert!(offset_of!(DLTensor, shape) == 24);
    assert!(offset_of!(DLTensor, strides) == 32);
    assert!(offset_of!(DLTensor, byte_offset) == 40);
    assert!(size_of::<DLManagedTensor>() == 64 && align_of::<DLManagedTensor>() == 8);
    assert!(offset_of!(DLManagedTensor, dl_tensor) == 0);
    assert!(offset_of!(DLManagedTensor, manager_ctx) == 48);
    assert!(offset_of!(DLManagedTensor, deleter) == 56);
    assert!(size_of::<DLManagedTensorVersioned>() == 80);
    assert!(align_of::<DLManagedTensorVersioned>() == 8);
    assert!(offset_of!(DLManagedTensorVersioned, version) == 0);
    assert!(offset_of!(DLManagedTensorVersioned, manager_ctx) == 8);
    assert!(offset_of!(DLManagedTensorVersioned, deleter) == 16);
    assert!(offset_of!(DLManagedTensorVersioned, flags) == 24);
    assert!(offset_of!(DLManagedTensorVersioned, dl_tensor) == 32);
    // A NULL deleter is the all-zero pointer, as in C.
    assert!(size_of::<DLManagedTensorDeleter>() == size_of::<usize>());
};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_type_names_cover_exactly_the_defined_values() {
        for v in -2..40 {
            let t = DLDeviceType(v);
            assert_eq!(t.is_known(), DLDeviceType::ALL.contains(&t), "value {v}");
        }
        assert_eq!(DLDeviceType::ALL.len(), 16);
        assert_eq!(DLDeviceType::TRN.0, 18);
        assert_eq!(format!("{:?}", DLDeviceType::CUDAHOST), "kDLCUDAHost");
        assert_eq!(format!("{:?}", DLDeviceType(5)), "DLDeviceType(5)");
    }

    #[test]
    fn data_type_codes_run_from_int_to_float4() {
        for (i, code) in DLDataTypeCode::ALL.iter().enumerate() {
            assert_eq!(usize::from(code.0), i);
            assert!(code.name().is_some());
        }
        assert_eq!(DLDataTypeCode(18).name(), None);
        assert_eq!(format!("{:?}", DLDataTypeCode::BFLOAT), "kDLBfloat");
    }

    #[test]
    fn current_version_is_one_three() {
        assert_eq!(DLPackVersion::CURRENT, DLPackVersion { major: 1, minor: 3 });
    }
}

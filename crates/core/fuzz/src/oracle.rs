//! What importing a header must do, written again from DESIGN.md and the check table of
//! `tensorbridge_core::import`, independently of the core's code: the fuzz targets compare
//! every import with it (accept or refuse, the exact error code, who owns the tensor after a
//! refusal, and every field of an accepted tensor).

use tensorbridge_core::ffi::DLDeviceType;
use tensorbridge_core::{DataType, Device};

use crate::producer::Header;

/// The most dimensions an import accepts (NumPy 2's limit, DESIGN.md).
pub const MAX_NDIM: i32 = 64;

/// What an import of a header must give.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A tensor with exactly these properties.
    Accept(Accepted),
    /// This error code. `consumed`: the importer called the deleter (another major version);
    /// otherwise the caller still owns the managed tensor and nothing was called.
    Reject { code: &'static str, consumed: bool },
    /// Depends on a CUDA driver's answer (only where one is loaded): any code, or a tensor.
    DriverDependent,
}

/// An accepted tensor, as its consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// `data + byte_offset`.
    pub data: usize,
    /// shape × element size.
    pub bytes: usize,
    /// The shape, as written.
    pub shape: Vec<i64>,
    /// The canonical C-order strides of the shape (whatever equivalent ones were written).
    pub strides: Vec<i64>,
    /// The element type.
    pub dtype: DataType,
    /// The device label, as written.
    pub device: Device,
    /// READ_ONLY (versioned only).
    pub read_only: bool,
    /// IS_COPIED (versioned only).
    pub copied: bool,
}

/// DLPack 1.3's device types.
const KNOWN_DEVICES: [i32; 16] = [1, 2, 3, 4, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18];

/// Triton's fixed-size types, by DLPack `(code, bits)`.
pub fn dtype_of(code: u8, bits: u8) -> Option<DataType> {
    Some(match (code, bits) {
        (6, 8) => DataType::Bool,
        (1, 8) => DataType::U8,
        (1, 16) => DataType::U16,
        (1, 32) => DataType::U32,
        (1, 64) => DataType::U64,
        (0, 8) => DataType::I8,
        (0, 16) => DataType::I16,
        (0, 32) => DataType::I32,
        (0, 64) => DataType::I64,
        (2, 16) => DataType::F16,
        (4, 16) => DataType::BF16,
        (2, 32) => DataType::F32,
        (2, 64) => DataType::F64,
        _ => return None,
    })
}

/// Row-major strides with zero-sized axes counted as 1 (NumPy's and PyTorch's choice).
pub fn canonical_strides(shape: &[i64]) -> Vec<i64> {
    let mut out = vec![0; shape.len()];
    let mut acc: i128 = 1;
    for axis in (0..shape.len()).rev() {
        out[axis] = i64::try_from(acc).unwrap_or(i64::MAX);
        acc = acc.saturating_mul(i128::from(shape[axis].max(1)));
    }
    out
}

/// Whether every canonical stride of `shape` fits DLPack's `int64_t` (always true with
/// elements; a zero-sized axis can leave huge products on the others).
pub fn strides_fit(shape: &[i64]) -> bool {
    let mut acc: i128 = 1;
    for axis in (0..shape.len()).rev() {
        if acc > i128::from(i64::MAX) {
            return false;
        }
        acc = acc.saturating_mul(i128::from(shape[axis].max(1)));
    }
    true
}

/// The outcome of importing `header`, whose `data` field was written as `data`.
/// `driver_loaded`: a CUDA driver is loaded in this process (then host and CUDA labels are
/// checked against it, which this oracle doesn't model).
pub fn expect(h: &Header, data: usize, driver_loaded: bool) -> Outcome {
    let reject = |code| Outcome::Reject { code, consumed: false };
    if h.versioned && h.version.major != 1 {
        return Outcome::Reject { code: "ERR_DLPACK_VERSION", consumed: true };
    }
    if !(0..=MAX_NDIM).contains(&h.ndim) {
        return reject("ERR_DLPACK_INVALID");
    }
    if h.dtype.lanes != 1 {
        return reject("ERR_DLPACK_INVALID");
    }
    let Some(dtype) = dtype_of(h.dtype.code.0, h.dtype.bits) else {
        return reject("ERR_DTYPE_UNSUPPORTED");
    };
    if !KNOWN_DEVICES.contains(&h.device.device_type.0) {
        return reject("ERR_DEVICE_UNSUPPORTED");
    }
    let ndim = h.ndim as usize;
    if ndim > 0 {
        if h.null_shape {
            return reject("ERR_DLPACK_NULL");
        }
        if !h.shape_misalign.is_multiple_of(8) {
            return reject("ERR_DLPACK_INVALID");
        }
        if h.strides.is_some() && !h.strides_misalign.is_multiple_of(8) {
            return reject("ERR_DLPACK_INVALID");
        }
    }
    let shape = &h.shape[..ndim];
    if shape.iter().any(|&d| d < 0) {
        return reject("ERR_SHAPE_NEGATIVE");
    }
    let size = dtype.element_size().expect("fixed-size type") as i128;
    let bytes: i128 = if shape.contains(&0) {
        0
    } else {
        let mut count: i128 = 1;
        for &d in shape {
            count = count.saturating_mul(i128::from(d));
        }
        if count > i128::from(i64::MAX) || count * size > isize::MAX as i128 {
            return reject("ERR_SHAPE_OVERFLOW");
        }
        count * size
    };
    if let Some(strides) = &h.strides {
        if bytes > 0 {
            let mut expected: i128 = 1;
            for axis in (0..ndim).rev() {
                if shape[axis] != 1 && i128::from(strides[axis]) != expected {
                    return reject("ERR_DLPACK_NOT_CONTIGUOUS");
                }
                expected *= i128::from(shape[axis]);
            }
        }
    }
    // A tensor without elements is contiguous whatever the other axes say, but its canonical
    // strides (what an import keeps and an export writes) must still fit `int64_t`.
    if !strides_fit(shape) {
        return reject("ERR_SHAPE_OVERFLOW");
    }
    if data == 0 && bytes > 0 {
        return reject("ERR_DLPACK_NULL");
    }
    if data as u128 + u128::from(h.byte_offset) + bytes as u128 > usize::MAX as u128 {
        return reject("ERR_DLPACK_INVALID");
    }
    let device = Device::from(h.device);
    let cuda_label = matches!(device.kind, DLDeviceType::CUDA | DLDeviceType::CUDAMANAGED);
    let host_label = matches!(device.kind, DLDeviceType::CPU | DLDeviceType::CUDAHOST);
    if driver_loaded && (cuda_label || host_label) {
        return Outcome::DriverDependent;
    }
    if cuda_label {
        return reject("ERR_CUDA_UNAVAILABLE");
    }
    Outcome::Accept(Accepted {
        data: data.wrapping_add(h.byte_offset as usize),
        bytes: bytes as usize,
        shape: shape.to_vec(),
        strides: canonical_strides(shape),
        dtype,
        device,
        read_only: h.versioned && h.flags & 1 != 0,
        copied: h.versioned && h.flags & 2 != 0,
    })
}

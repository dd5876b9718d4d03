//! The crate's one error type, with a stable `ERR_*` code per variant.
//!
//! Codes are part of the public contract: the TypeScript layer mirrors
//! [`ALL_CODES`](crate::error::ALL_CODES) and maps each to its own error class, so a code is
//! never renamed or reused. Messages are for people: each says what was wrong and what to do
//! about it.

use crate::device::Device;
use crate::dtype::DataType;

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `tensorbridge-core`.
///
/// Match on the variant in Rust; across language boundaries use [`Error::code`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A strided tensor is not in C (row-major, compact) order. `ERR_DLPACK_NOT_CONTIGUOUS`.
    #[error(
        "tensor is not C-contiguous: axis {axis} has stride {stride} where row-major order needs \
         {expected} (in elements); make a contiguous copy before exporting it \
         (numpy.ascontiguousarray, torch .contiguous(), cupy.ascontiguousarray)"
    )]
    NotContiguous {
        /// The first offending axis, counting from 0 (outermost).
        axis: usize,
        /// The stride found on that axis.
        stride: i64,
        /// The stride C order requires there.
        expected: i64,
    },

    /// A versioned DLPack tensor has a major version other than ours. `ERR_DLPACK_VERSION`.
    #[error(
        "DLPack version {major}.{minor} is not supported (this library reads major version {}), \
         so the tensor was released through its deleter as DLPack requires; ask the producer \
         for max_version=(1, {}) or a legacy capsule",
        crate::ffi::DLPACK_MAJOR_VERSION,
        crate::ffi::DLPACK_MINOR_VERSION
    )]
    Version {
        /// The producer's major version.
        major: u32,
        /// The producer's minor version.
        minor: u32,
    },

    /// A capsule was already consumed or released. `ERR_DLPACK_CONSUMED`.
    #[error(
        "this DLPack capsule was already consumed; a capsule transfers ownership once, so ask the \
         producer for a new one (call to_dlpack / __dlpack__ again)"
    )]
    Consumed,

    /// A pointer that must not be NULL was NULL. `ERR_DLPACK_NULL`.
    #[error(
        "DLPack {what} is NULL; pass a pointer to a live DLPack managed tensor from its producer"
    )]
    Null {
        /// Which pointer ("managed tensor", "data", "shape").
        what: &'static str,
    },

    /// A DLPack descriptor is malformed (bad ndim, vector lanes, misaligned or overflowing
    /// pointers). `ERR_DLPACK_INVALID`.
    #[error("invalid DLPack tensor: {reason}")]
    Invalid {
        /// What is wrong, and what to do.
        reason: String,
    },

    /// The element type has no mapping here. `ERR_DTYPE_UNSUPPORTED`.
    #[error("data type {dtype} is not supported: {reason}")]
    DtypeUnsupported {
        /// The type, as well as it can be named.
        dtype: String,
        /// Why, and what to use instead.
        reason: String,
    },

    /// The device is unknown or the operation can't run on it in this build.
    /// `ERR_DEVICE_UNSUPPORTED`.
    #[error("device {device} is not supported: {reason}")]
    DeviceUnsupported {
        /// The device, as well as it can be named.
        device: String,
        /// Why, and what to do instead.
        reason: String,
    },

    /// A size computation overflowed. `ERR_SHAPE_OVERFLOW`.
    #[error("tensor shape {shape:?} is too large: {what} overflows; use a smaller shape")]
    ShapeOverflow {
        /// The shape.
        shape: Vec<i64>,
        /// Which quantity overflowed ("element count", "byte size", "stride of axis 2").
        what: String,
    },

    /// A dimension is negative. `ERR_SHAPE_NEGATIVE`.
    #[error("axis {axis} has negative size {size}; every dimension must be >= 0")]
    ShapeNegative {
        /// The axis.
        axis: usize,
        /// Its size.
        size: i64,
    },

    /// A buffer's length does not match shape × element size. `ERR_SHAPE_MISMATCH`.
    #[error(
        "buffer has {actual} bytes but shape {shape:?} of {dtype} needs {expected} bytes; \
         pass a buffer of exactly that length or fix the shape"
    )]
    ShapeMismatch {
        /// The bytes the shape and dtype need.
        expected: usize,
        /// The bytes given.
        actual: usize,
        /// The shape.
        shape: Vec<i64>,
        /// The element type.
        dtype: DataType,
    },

    /// Host access to memory that is not host memory. `ERR_NOT_CPU`.
    #[error(
        "{operation} needs host memory but the tensor is on {device}; copy it to the CPU first"
    )]
    NotCpu {
        /// What was attempted ("reading bytes", "deep_copy").
        operation: &'static str,
        /// Where the tensor is.
        device: Device,
    },

    /// `copy: false` was requested but the export can't be done without a copy.
    /// `ERR_COPY_REQUIRED`.
    #[error("a copy is required: {reason}")]
    CopyRequired {
        /// Why a copy is needed, and how to allow it.
        reason: String,
    },

    /// A caller passed a bad argument. `ERR_INVALID_ARGUMENT`.
    #[error("invalid argument: {message}")]
    InvalidArgument {
        /// What was wrong, and what is accepted.
        message: String,
    },

    /// Memory could not be allocated. `ERR_ALLOCATION`.
    #[error("could not allocate {bytes} bytes; free memory or use a smaller tensor")]
    Allocation {
        /// How many bytes were requested.
        bytes: usize,
    },

    /// A pointer's memory is not where its label says: a host pointer labelled CUDA, a device
    /// pointer labelled host, or memory on another GPU than the label's ordinal (checked with
    /// the CUDA driver's pointer attributes). `ERR_DEVICE_MISMATCH`.
    #[error(
        "the tensor is labelled {label} but its data {ptr:#x} is {actual}; the producer \
         mislabelled it, so it was refused rather than read or written as the wrong kind of \
         memory (ask the producer for a tensor on the device it really uses)"
    )]
    DeviceMismatch {
        /// The device the descriptor claims.
        label: Device,
        /// The address checked.
        ptr: usize,
        /// What the driver reports ("host memory unknown to CUDA", "device memory on cuda:1").
        actual: String,
    },

    /// CUDA is not available: no driver library, no device, or a build without the `cuda`
    /// feature. `ERR_CUDA_UNAVAILABLE`.
    #[error(
        "CUDA is not available on this machine: {reason}; use host memory (device \"cpu\"), \
         and check tensorbridge's cuda.isAvailable() before using a GPU"
    )]
    CudaUnavailable {
        /// Why (which library or device is missing).
        reason: String,
    },

    /// A CUDA driver call failed. `ERR_CUDA`.
    #[error("CUDA driver call {call} failed with {name} ({code}){detail}")]
    Cuda {
        /// The driver function (`"cuMemcpyAsync"`).
        call: &'static str,
        /// The `CUresult` value.
        code: i32,
        /// Its name (`"CUDA_ERROR_ILLEGAL_ADDRESS"`), or `"unknown"`.
        name: String,
        /// More context, starting with `": "`, or empty.
        detail: String,
    },
}

/// Every code [`Error::code`] can return, in declaration order. The TypeScript layer mirrors
/// this list, and a test keeps them in sync.
pub const ALL_CODES: &[&str] = &[
    "ERR_DLPACK_NOT_CONTIGUOUS",
    "ERR_DLPACK_VERSION",
    "ERR_DLPACK_CONSUMED",
    "ERR_DLPACK_NULL",
    "ERR_DLPACK_INVALID",
    "ERR_DTYPE_UNSUPPORTED",
    "ERR_DEVICE_UNSUPPORTED",
    "ERR_SHAPE_OVERFLOW",
    "ERR_SHAPE_NEGATIVE",
    "ERR_SHAPE_MISMATCH",
    "ERR_NOT_CPU",
    "ERR_COPY_REQUIRED",
    "ERR_INVALID_ARGUMENT",
    "ERR_ALLOCATION",
    "ERR_DEVICE_MISMATCH",
    "ERR_CUDA_UNAVAILABLE",
    "ERR_CUDA",
];

impl Error {
    /// The stable `ERR_*` code of this error (one of [`ALL_CODES`]).
    pub fn code(&self) -> &'static str {
        match self {
            Error::NotContiguous { .. } => "ERR_DLPACK_NOT_CONTIGUOUS",
            Error::Version { .. } => "ERR_DLPACK_VERSION",
            Error::Consumed => "ERR_DLPACK_CONSUMED",
            Error::Null { .. } => "ERR_DLPACK_NULL",
            Error::Invalid { .. } => "ERR_DLPACK_INVALID",
            Error::DtypeUnsupported { .. } => "ERR_DTYPE_UNSUPPORTED",
            Error::DeviceUnsupported { .. } => "ERR_DEVICE_UNSUPPORTED",
            Error::ShapeOverflow { .. } => "ERR_SHAPE_OVERFLOW",
            Error::ShapeNegative { .. } => "ERR_SHAPE_NEGATIVE",
            Error::ShapeMismatch { .. } => "ERR_SHAPE_MISMATCH",
            Error::NotCpu { .. } => "ERR_NOT_CPU",
            Error::CopyRequired { .. } => "ERR_COPY_REQUIRED",
            Error::InvalidArgument { .. } => "ERR_INVALID_ARGUMENT",
            Error::Allocation { .. } => "ERR_ALLOCATION",
            Error::DeviceMismatch { .. } => "ERR_DEVICE_MISMATCH",
            Error::CudaUnavailable { .. } => "ERR_CUDA_UNAVAILABLE",
            Error::Cuda { .. } => "ERR_CUDA",
        }
    }

    pub(crate) fn invalid(reason: impl Into<String>) -> Self {
        Error::Invalid { reason: reason.into() }
    }

    pub(crate) fn invalid_argument(message: impl Into<String>) -> Self {
        Error::InvalidArgument { message: message.into() }
    }

    pub(crate) fn cuda_unavailable(reason: impl Into<String>) -> Self {
        Error::CudaUnavailable { reason: reason.into() }
    }

    pub(crate) fn overflow(shape: &[i64], what: impl Into<String>) -> Self {
        Error::ShapeOverflow { shape: shape.to_vec(), what: what.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one_of_each() -> Vec<Error> {
        vec![
            Error::NotContiguous { axis: 0, stride: 2, expected: 1 },
            Error::Version { major: 2, minor: 0 },
            Error::Consumed,
            Error::Null { what: "data" },
            Error::invalid("x"),
            Error::DtypeUnsupported { dtype: "x".into(), reason: "y".into() },
            Error::DeviceUnsupported { device: "x".into(), reason: "y".into() },
            Error::overflow(&[1], "element count"),
            Error::ShapeNegative { axis: 0, size: -1 },
            Error::ShapeMismatch { expected: 4, actual: 3, shape: vec![1], dtype: DataType::F32 },
            Error::NotCpu { operation: "reading bytes", device: Device::cuda(0) },
            Error::CopyRequired { reason: "x".into() },
            Error::invalid_argument("x"),
            Error::Allocation { bytes: 1 },
            Error::DeviceMismatch { label: Device::cuda(0), ptr: 16, actual: "x".into() },
            Error::CudaUnavailable { reason: "x".into() },
            Error::Cuda { call: "cuInit", code: 100, name: "x".into(), detail: String::new() },
        ]
    }

    #[test]
    fn all_codes_lists_every_variant_once_in_order() {
        let codes: Vec<&str> = one_of_each().iter().map(Error::code).collect();
        assert_eq!(codes, ALL_CODES);
    }

    #[test]
    fn codes_are_upper_snake_case_with_err_prefix() {
        for code in ALL_CODES {
            assert!(code.starts_with("ERR_"), "{code}");
            assert!(code.chars().all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()));
        }
    }

    #[test]
    fn not_contiguous_message_names_the_axis_and_the_fix() {
        let msg = Error::NotContiguous { axis: 0, stride: 2, expected: 1 }.to_string();
        assert!(msg.contains("axis 0"), "{msg}");
        assert!(msg.contains("stride 2"), "{msg}");
        assert!(msg.contains("contiguous copy"), "{msg}");
    }
}

//! Element types: Triton's names on one side, DLPack's `(code, bits, lanes)` on the other.

use std::fmt;
use std::str::FromStr;

use crate::error::{Error, Result};
use crate::ffi::{DLDataType, DLDataTypeCode};

/// The element types tensorbridge handles: exactly Triton's tensor types.
///
/// `Bytes` is Triton's variable-length `BYTES` type. It has no fixed element size and no
/// DLPack form, so tensors of it are not built by this crate (the TypeScript layer handles
/// them); it is listed so that names round-trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// `BOOL`: one byte per element, 0 or 1 (DLPack `kDLBool`, 8 bits).
    Bool,
    /// `UINT8`.
    U8,
    /// `UINT16`.
    U16,
    /// `UINT32`.
    U32,
    /// `UINT64`.
    U64,
    /// `INT8`.
    I8,
    /// `INT16`.
    I16,
    /// `INT32`.
    I32,
    /// `INT64`.
    I64,
    /// `FP16`: IEEE half precision.
    F16,
    /// `BF16`: bfloat16.
    BF16,
    /// `FP32`.
    F32,
    /// `FP64`.
    F64,
    /// `BYTES`: variable-length byte strings (no DLPack form).
    Bytes,
}

impl DataType {
    /// Every data type, in Triton's documentation order.
    pub const ALL: &'static [DataType] = &[
        DataType::Bool,
        DataType::U8,
        DataType::U16,
        DataType::U32,
        DataType::U64,
        DataType::I8,
        DataType::I16,
        DataType::I32,
        DataType::I64,
        DataType::F16,
        DataType::BF16,
        DataType::F32,
        DataType::F64,
        DataType::Bytes,
    ];

    /// Triton's name: `"BOOL"`, `"UINT8"`, …, `"FP16"`, `"BF16"`, `"FP32"`, `"FP64"`, `"BYTES"`.
    pub const fn triton_name(self) -> &'static str {
        match self {
            DataType::Bool => "BOOL",
            DataType::U8 => "UINT8",
            DataType::U16 => "UINT16",
            DataType::U32 => "UINT32",
            DataType::U64 => "UINT64",
            DataType::I8 => "INT8",
            DataType::I16 => "INT16",
            DataType::I32 => "INT32",
            DataType::I64 => "INT64",
            DataType::F16 => "FP16",
            DataType::BF16 => "BF16",
            DataType::F32 => "FP32",
            DataType::F64 => "FP64",
            DataType::Bytes => "BYTES",
        }
    }

    /// The lower-case name used by NumPy and friends: `"bool"`, `"uint8"`, …, `"float16"`,
    /// `"bfloat16"`, `"float32"`, `"float64"`, `"bytes"`. [`Display`](fmt::Display) prints it.
    pub const fn name(self) -> &'static str {
        match self {
            DataType::Bool => "bool",
            DataType::U8 => "uint8",
            DataType::U16 => "uint16",
            DataType::U32 => "uint32",
            DataType::U64 => "uint64",
            DataType::I8 => "int8",
            DataType::I16 => "int16",
            DataType::I32 => "int32",
            DataType::I64 => "int64",
            DataType::F16 => "float16",
            DataType::BF16 => "bfloat16",
            DataType::F32 => "float32",
            DataType::F64 => "float64",
            DataType::Bytes => "bytes",
        }
    }

    /// Parses a Triton name (exact, upper case), e.g. `"FP32"`.
    ///
    /// # Errors
    ///
    /// `ERR_DTYPE_UNSUPPORTED` for any other string; the message lists the accepted names.
    pub fn from_triton_name(name: &str) -> Result<DataType> {
        DataType::ALL.iter().copied().find(|t| t.triton_name() == name).ok_or_else(|| {
            Error::DtypeUnsupported {
                dtype: format!("{name:?}"),
                reason: format!("expected one of the Triton type names {}", Self::triton_names()),
            }
        })
    }

    fn triton_names() -> String {
        DataType::ALL.iter().map(|t| t.triton_name()).collect::<Vec<_>>().join(", ")
    }

    /// Bytes per element, or `None` for [`DataType::Bytes`].
    pub const fn element_size(self) -> Option<usize> {
        match self {
            DataType::Bool | DataType::U8 | DataType::I8 => Some(1),
            DataType::U16 | DataType::I16 | DataType::F16 | DataType::BF16 => Some(2),
            DataType::U32 | DataType::I32 | DataType::F32 => Some(4),
            DataType::U64 | DataType::I64 | DataType::F64 => Some(8),
            DataType::Bytes => None,
        }
    }

    /// The DLPack descriptor of this type (lanes always 1; `Bool` is `kDLBool` with 8 bits).
    ///
    /// # Errors
    ///
    /// `ERR_DTYPE_UNSUPPORTED` for [`DataType::Bytes`], which has no DLPack form.
    pub fn to_dlpack(self) -> Result<DLDataType> {
        let (code, bits) = match self {
            DataType::Bool => (DLDataTypeCode::BOOL, 8),
            DataType::U8 => (DLDataTypeCode::UINT, 8),
            DataType::U16 => (DLDataTypeCode::UINT, 16),
            DataType::U32 => (DLDataTypeCode::UINT, 32),
            DataType::U64 => (DLDataTypeCode::UINT, 64),
            DataType::I8 => (DLDataTypeCode::INT, 8),
            DataType::I16 => (DLDataTypeCode::INT, 16),
            DataType::I32 => (DLDataTypeCode::INT, 32),
            DataType::I64 => (DLDataTypeCode::INT, 64),
            DataType::F16 => (DLDataTypeCode::FLOAT, 16),
            DataType::BF16 => (DLDataTypeCode::BFLOAT, 16),
            DataType::F32 => (DLDataTypeCode::FLOAT, 32),
            DataType::F64 => (DLDataTypeCode::FLOAT, 64),
            DataType::Bytes => {
                return Err(Error::DtypeUnsupported {
                    dtype: "BYTES".into(),
                    reason: "BYTES (variable-length strings) has no DLPack form; pass such \
                             tensors as serialized bytes instead of through DLPack"
                        .into(),
                })
            }
        };
        Ok(DLDataType { code, bits, lanes: 1 })
    }

    /// The type a DLPack descriptor names.
    ///
    /// # Errors
    ///
    /// - `ERR_DLPACK_INVALID` when `lanes != 1` (vector types are refused).
    /// - `ERR_DTYPE_UNSUPPORTED` for any other code/bits pair (complex, float8, bool with
    ///   bits ≠ 8, …); the message names the type and lists what is accepted.
    pub fn from_dlpack(dtype: DLDataType) -> Result<DataType> {
        if dtype.lanes != 1 {
            return Err(Error::invalid(format!(
                "dtype {} has {} lanes; only scalar element types (lanes = 1) are accepted, \
                 so unpack vector types before exporting",
                describe(dtype),
                dtype.lanes
            )));
        }
        let found = match (dtype.code, dtype.bits) {
            (DLDataTypeCode::BOOL, 8) => DataType::Bool,
            (DLDataTypeCode::UINT, 8) => DataType::U8,
            (DLDataTypeCode::UINT, 16) => DataType::U16,
            (DLDataTypeCode::UINT, 32) => DataType::U32,
            (DLDataTypeCode::UINT, 64) => DataType::U64,
            (DLDataTypeCode::INT, 8) => DataType::I8,
            (DLDataTypeCode::INT, 16) => DataType::I16,
            (DLDataTypeCode::INT, 32) => DataType::I32,
            (DLDataTypeCode::INT, 64) => DataType::I64,
            (DLDataTypeCode::FLOAT, 16) => DataType::F16,
            (DLDataTypeCode::BFLOAT, 16) => DataType::BF16,
            (DLDataTypeCode::FLOAT, 32) => DataType::F32,
            (DLDataTypeCode::FLOAT, 64) => DataType::F64,
            _ => {
                return Err(Error::DtypeUnsupported {
                    dtype: describe(dtype),
                    reason: "accepted are bool (8 bits), int/uint 8-64, float 16/32/64 and \
                             bfloat16; cast the tensor to one of them first"
                        .into(),
                })
            }
        };
        Ok(found)
    }
}

/// A readable name for any DLPack dtype, known or not: `kDLComplex 64 bits`.
fn describe(dtype: DLDataType) -> String {
    let bits = dtype.bits;
    match dtype.code.name() {
        Some(name) => format!("{name} {bits} bits"),
        None => format!("code {} {bits} bits", dtype.code.0),
    }
}

impl fmt::Display for DataType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for DataType {
    type Err = Error;

    /// Accepts a Triton name (`"FP32"`) or a lower-case name (`"float32"`).
    fn from_str(s: &str) -> Result<DataType> {
        DataType::ALL.iter().copied().find(|t| t.triton_name() == s || t.name() == s).ok_or_else(
            || Error::DtypeUnsupported {
                dtype: format!("{s:?}"),
                reason: format!(
                    "expected a Triton type name ({}) or its lower-case form (float32, ...)",
                    Self::triton_names()
                ),
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn triton_names_round_trip_for_every_type() {
        for &t in DataType::ALL {
            assert_eq!(DataType::from_triton_name(t.triton_name()).unwrap(), t);
            assert_eq!(t.triton_name().parse::<DataType>().unwrap(), t);
            assert_eq!(t.name().parse::<DataType>().unwrap(), t);
        }
    }

    #[test]
    fn unknown_triton_name_lists_the_accepted_ones() {
        let err = DataType::from_triton_name("fp32").unwrap_err();
        assert_eq!(err.code(), "ERR_DTYPE_UNSUPPORTED");
        assert!(err.to_string().contains("FP32"), "{err}");
    }

    #[test]
    fn every_fixed_size_type_round_trips_through_dlpack() {
        for &t in DataType::ALL.iter().filter(|t| **t != DataType::Bytes) {
            let dl = t.to_dlpack().unwrap();
            assert_eq!(dl.lanes, 1);
            assert_eq!(usize::from(dl.bits) / 8, t.element_size().unwrap());
            assert_eq!(DataType::from_dlpack(dl).unwrap(), t);
        }
    }

    #[test]
    fn bytes_has_no_dlpack_form_and_says_so() {
        let err = DataType::Bytes.to_dlpack().unwrap_err();
        assert_eq!(err.code(), "ERR_DTYPE_UNSUPPORTED");
        assert!(err.to_string().contains("BYTES"), "{err}");
        assert_eq!(DataType::Bytes.element_size(), None);
    }

    #[test]
    fn vector_lanes_are_refused_as_invalid() {
        let dl = DLDataType { code: DLDataTypeCode::FLOAT, bits: 32, lanes: 4 };
        assert_eq!(DataType::from_dlpack(dl).unwrap_err().code(), "ERR_DLPACK_INVALID");
    }

    #[test]
    fn complex_float8_and_wide_bool_are_unsupported() {
        for (code, bits) in [
            (DLDataTypeCode::COMPLEX, 64),
            (DLDataTypeCode::FLOAT8_E4M3FN, 8),
            (DLDataTypeCode::BOOL, 1),
            (DLDataTypeCode::FLOAT, 8),
            (DLDataTypeCode::BFLOAT, 32),
            (DLDataTypeCode(200), 8),
        ] {
            let err = DataType::from_dlpack(DLDataType { code, bits, lanes: 1 }).unwrap_err();
            assert_eq!(err.code(), "ERR_DTYPE_UNSUPPORTED", "{code:?} {bits}");
        }
    }
}

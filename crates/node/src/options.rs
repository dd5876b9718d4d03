//! Arguments accepted from JS (dtype and device names, addresses, export
//! arguments) and their conversion into core types.

use std::str::FromStr;

use napi::bindgen_prelude::BigInt;
use napi::Result;
use tensorbridge_core::cuda::ConsumerStream;
use tensorbridge_core::{DataType, Device, ExportOptions};

use crate::error::{js_error, to_js, Code};

/// The export arguments of `tensorPrepareExport` as core takes them.
///
/// `copy`: `true` always copies (the export is flagged IS_COPIED), `false`
/// never copies and fails where a copy would be needed, absent copies only if
/// needed. `device`: `"cpu"`, `"cuda"` or `"cuda:N"`. `stream`: the consumer's
/// stream, as the array API's `__dlpack__(stream=…)`: absent (the legacy
/// default stream for CUDA), `-1n` (no synchronisation), `1n` (legacy
/// default), `2n` (per-thread default) or a `CUstream` address; `0n` is refused.
pub fn export_args(
    versioned: bool,
    copy: Option<bool>,
    device: Option<&str>,
    stream: Option<&BigInt>,
) -> Result<(ExportOptions, ConsumerStream), Code> {
    let device = device.map(Device::from_str).transpose().map_err(to_js)?;
    let stream = stream
        .map(|s| match s.get_i64() {
            (value, true) => Ok(value),
            _ => Err(js_error(crate::error::INVALID_ARGUMENT, "a stream must fit in 64 bits")),
        })
        .transpose()?;
    let stream = ConsumerStream::from_array_api(stream).map_err(to_js)?;
    Ok((ExportOptions { versioned, copy, device }, stream))
}

/// Parses a device string; absent means `"cpu"`.
pub fn parse_device(device: Option<&str>) -> Result<Device, Code> {
    device.map_or(Ok(Device::CPU), |d| Device::from_str(d).map_err(to_js))
}

/// A non-negative BigInt that fits a pointer.
pub fn parse_address(address: &BigInt) -> Result<usize, Code> {
    let (signed, value, lossless) = address.get_u64();
    if signed || !lossless || value > usize::MAX as u64 {
        return Err(js_error(
            crate::error::INVALID_ARGUMENT,
            "an address must be a non-negative BigInt that fits a pointer",
        ));
    }
    Ok(value as usize)
}

/// Parses a Triton dtype name ("FP32", "BF16", …).
pub fn parse_dtype(name: &str) -> Result<DataType, Code> {
    DataType::from_triton_name(name).map_err(to_js)
}

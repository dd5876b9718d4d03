//! Option objects accepted from JS and their conversion into core types.

use std::str::FromStr;

use napi::bindgen_prelude::BigInt;
use napi::Result;
use napi_derive::napi;
use tensorbridge_core::cuda::ConsumerStream;
use tensorbridge_core::{DataType, Device, ExportOptions};

use crate::error::{js_error, to_js, Code};

/// Options of `NativeTensor.toDlpack`.
#[napi(object)]
#[derive(Default)]
pub struct NativeExportOptions {
    /// Export a versioned (DLPack 1.x) managed tensor instead of the legacy one.
    /// @default false
    pub versioned: Option<bool>,
    /// `true`: always copy (the export is flagged IS_COPIED); `false`: never
    /// copy, and fail where a copy would be needed; absent: copy only if needed.
    pub copy: Option<bool>,
    /// Target device, as `"cpu"`, `"cuda"` or `"cuda:N"`.
    pub device: Option<String>,
    /// The consumer's stream, as the array API's `__dlpack__(stream=…)`: absent (the legacy
    /// default stream for CUDA), `-1n` (no synchronisation), `1n` (legacy default), `2n`
    /// (per-thread default) or a `CUstream` address. `0n` is refused.
    pub stream: Option<BigInt>,
}

impl TryFrom<NativeExportOptions> for (ExportOptions, ConsumerStream) {
    type Error = napi::Error<crate::error::Code>;

    fn try_from(opts: NativeExportOptions) -> std::result::Result<Self, Self::Error> {
        let device = opts.device.as_deref().map(Device::from_str).transpose().map_err(to_js)?;
        let stream = opts
            .stream
            .map(|s| match s.get_i64() {
                (value, true) => Ok(value),
                _ => Err(js_error("ERR_INVALID_ARGUMENT", "a stream must fit in 64 bits")),
            })
            .transpose()?;
        let stream = ConsumerStream::from_array_api(stream).map_err(to_js)?;
        let options =
            ExportOptions { versioned: opts.versioned.unwrap_or(false), copy: opts.copy, device };
        Ok((options, stream))
    }
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
            "ERR_INVALID_ARGUMENT",
            "an address must be a non-negative BigInt that fits a pointer",
        ));
    }
    Ok(value as usize)
}

/// Parses a Triton dtype name ("FP32", "BF16", …).
pub fn parse_dtype(name: &str) -> Result<DataType, Code> {
    DataType::from_triton_name(name).map_err(to_js)
}

//! Option objects accepted from JS and their conversion into core types.

use std::str::FromStr;

use napi::Result;
use napi_derive::napi;
use tensorbridge_core::{DataType, Device, ExportOptions};

use crate::error::{to_js, Code};

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
}

impl TryFrom<NativeExportOptions> for ExportOptions {
    type Error = napi::Error<crate::error::Code>;

    fn try_from(opts: NativeExportOptions) -> std::result::Result<Self, Self::Error> {
        let device = opts.device.as_deref().map(Device::from_str).transpose().map_err(to_js)?;
        Ok(ExportOptions { versioned: opts.versioned.unwrap_or(false), copy: opts.copy, device })
    }
}

/// Parses a Triton dtype name ("FP32", "BF16", …).
pub fn parse_dtype(name: &str) -> Result<DataType, Code> {
    DataType::from_triton_name(name).map_err(to_js)
}

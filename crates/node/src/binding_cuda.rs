//! `cuda*` functions: CUDA availability and the handles a DLPack consumer needs. Thin: each
//! calls `tensorbridge_core::cuda` and converts the result.

use napi::bindgen_prelude::BigInt;
use napi::Result;
use napi_derive::napi;
use tensorbridge_core::cuda;

use crate::error::{to_js, Code};
use crate::options::{parse_address, parse_device};

/// Whether CUDA can be used here (driver library, symbols, `cuInit`, at least one GPU). The
/// first call loads the driver; never throws.
#[napi]
pub fn cuda_is_available() -> bool {
    cuda::is_available()
}

/// Why CUDA is not available, or `null` when it is.
#[napi]
pub fn cuda_unavailable_reason() -> Option<String> {
    cuda::unavailable_reason()
}

/// The number of CUDA devices. Throws `ERR_CUDA_UNAVAILABLE` without CUDA.
#[napi]
pub fn cuda_device_count() -> Result<u32, Code> {
    cuda::device_count().map(|n| n as u32).map_err(to_js)
}

/// The driver's CUDA version (13000 = 13.0). Throws `ERR_CUDA_UNAVAILABLE` without CUDA.
#[napi]
pub fn cuda_driver_version() -> Result<i32, Code> {
    cuda::driver_version().map_err(to_js)
}

/// tensorbridge's stream on `device` ("cuda:N") as a `CUstream` address, for a producer's
/// `__dlpack__(stream=…)`.
#[napi]
pub fn cuda_stream_handle(device: String) -> Result<BigInt, Code> {
    let device = parse_device(Some(&device))?;
    let handle = cuda::stream_handle(device).map_err(to_js)?;
    Ok(BigInt::from(handle as u64))
}

/// What the driver says the memory at `address` is: `"device:N"`, `"pinned"`, `"managed"`,
/// `"unregistered"` (pageable host memory, or unknown), `"array"`, `"unified"`, `"other"`.
#[napi]
pub fn cuda_memory_kind(address: BigInt) -> Result<String, Code> {
    let attrs = cuda::pointer_attributes(parse_address(&address)?).map_err(to_js)?;
    if attrs.is_managed {
        return Ok("managed".into());
    }
    Ok(match attrs.memory_type {
        cuda::MemoryType::Device => format!("device:{}", attrs.device_ordinal),
        cuda::MemoryType::Host => "pinned".into(),
        cuda::MemoryType::Unregistered => "unregistered".into(),
        cuda::MemoryType::Array => "array".into(),
        cuda::MemoryType::Unified => "unified".into(),
        cuda::MemoryType::Other(_) => "other".into(),
    })
}

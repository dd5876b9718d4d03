//! `cuda*` functions: CUDA availability and the handles a DLPack consumer needs. Thin: each
//! calls `tensorbridge_core::cuda` and converts the result.

use napi::bindgen_prelude::{BigInt, Uint8Array};
use napi::{Env, Result};
use napi_derive::napi;
use tensorbridge_core::{cuda, Device};

use crate::error::{js_error, to_js, Code};
use crate::handles::{self, with_tensor};
use crate::options::{parse_address, parse_device, parse_dtype};

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

/// A byte count or offset from JS: a non-negative integer that fits `usize`.
fn byte_count(value: f64, what: &str) -> Result<usize, Code> {
    if value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= (1_u64 << 53) as f64 {
        Ok(value as usize)
    } else {
        Err(js_error(
            crate::error::INVALID_ARGUMENT,
            format!("{what} must be a non-negative integer, not {value}"),
        ))
    }
}

/// Opens a 64-byte CUDA IPC memory handle (from `cudaIpcGetMemHandle` in another process) on
/// GPU `device_id` for `byte_size` bytes. Returns a mapping handle for `tensorFromIpc` and
/// `tensorCopyToIpc`; `cudaIpcClose` drops it. Throws `ERR_INVALID_ARGUMENT` (handle length,
/// size), `ERR_CUDA_UNAVAILABLE`, `ERR_DEVICE_UNSUPPORTED`, `ERR_CUDA`.
#[napi]
pub fn cuda_ipc_open(handle: Uint8Array, device_id: u32, byte_size: f64) -> Result<f64, Code> {
    let byte_size = byte_count(byte_size, "byte_size")?;
    let ordinal = i32::try_from(device_id).map_err(|_| {
        js_error(crate::error::INVALID_ARGUMENT, format!("no GPU has ordinal {device_id}"))
    })?;
    let mapping = cuda::ipc_open(&handle, Device::cuda(ordinal), byte_size).map_err(to_js)?;
    Ok(handles::insert_mapping(mapping))
}

/// Drops the mapping handle `id`; the mapping is closed once no tensor over it is left. A
/// no-op for a handle already closed.
#[napi]
pub fn cuda_ipc_close(id: f64) {
    handles::free_mapping(id);
}

/// The CUDA IPC memory handle (64 bytes) of a device tensor that starts its allocation, for
/// another process to open.
#[napi]
pub fn cuda_ipc_handle(tensor: f64) -> Result<Uint8Array, Code> {
    let handle = with_tensor(tensor, |t| cuda::ipc_handle(t).map_err(to_js))?;
    Ok(Uint8Array::new(handle.to_vec()))
}

/// A tensor over `[offset, offset + byte_size)` of mapping `mapping`, on its GPU, without
/// copying. Returns a tensor handle; the tensor keeps the mapping open.
#[napi]
pub fn tensor_from_ipc(
    env: Env,
    mapping: f64,
    offset: f64,
    byte_size: f64,
    shape: Vec<i64>,
    dtype: String,
) -> Result<f64, Code> {
    let mapping = handles::mapping(mapping)?;
    let (offset, byte_size) = (byte_count(offset, "offset")?, byte_count(byte_size, "byte_size")?);
    let dtype = parse_dtype(&dtype)?;
    let tensor =
        cuda::tensor_from_ipc(&mapping, offset, byte_size, &shape, dtype).map_err(to_js)?;
    handles::insert_tensor(&env, tensor, false)
}

/// Copies tensor `tensor`'s bytes (host or device) into mapping `mapping` at `offset`.
#[napi]
pub fn tensor_copy_to_ipc(tensor: f64, mapping: f64, offset: f64) -> Result<(), Code> {
    let mapping = handles::mapping(mapping)?;
    let offset = byte_count(offset, "offset")?;
    with_tensor(tensor, |t| cuda::copy_to_ipc(t, &mapping, offset).map_err(to_js))
}

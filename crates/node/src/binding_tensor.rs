//! `tensor*` functions: the native half of the TS `Tensor`, over handles.
//!
//! Each function takes a tensor handle (see [`crate::handles`]), calls core
//! and converts the result; `src/native.ts` wraps them in a JS class.

use napi::bindgen_prelude::{ArrayBuffer, BigInt, Uint8Array};
use napi::{Env, Result};
use napi_derive::napi;
use tensorbridge_core::storage::StorageKind;
use tensorbridge_core::{Device, Tensor};

use crate::error::{to_js, Code};
use crate::handles::{self, with_tensor};
use crate::options::{export_args, parse_device, parse_dtype};

/// Keeps a JS `Uint8Array` (and so its `ArrayBuffer`) alive while core borrows
/// its bytes. napi-rs's owned `Uint8Array` is `Send`: dropped on another thread
/// (a DLPack deleter may run anywhere), it routes the unref to its own JS
/// thread, so releasing it is safe wherever the last tensor user drops it.
struct JsKeepAlive(#[allow(dead_code)] Uint8Array);

/// Wraps the bytes of `data` without copying; `data` stays alive as long as the
/// tensor (or any export or view of it) does. Returns a tensor handle.
#[napi]
pub fn tensor_from_bytes(
    env: Env,
    data: Uint8Array,
    shape: Vec<i64>,
    dtype: String,
    read_only: bool,
) -> Result<f64, Code> {
    let dtype = parse_dtype(&dtype)?;
    let ptr = data.as_ptr().cast_mut();
    let len = data.len();
    // SAFETY: `ptr`/`len` describe the live bytes of `data`, and the keep-alive
    // owns `data` for as long as the storage exists. JS may write to the same
    // bytes from its own thread, as with any TypedArray shared with native
    // code; core never relies on them being unchanged.
    let tensor = unsafe {
        Tensor::from_borrowed(
            ptr,
            len,
            &shape,
            dtype,
            Device::CPU,
            read_only,
            Box::new(JsKeepAlive(data)),
        )
    }
    .map_err(to_js)?;
    handles::insert_tensor(&env, tensor, false)
}

/// A new zero-filled tensor on `device` ("cpu" by default, "cuda", "cuda:N",
/// "cuda_host"): 256-byte aligned host memory, device memory or pinned host
/// memory. Returns a tensor handle.
#[napi]
pub fn tensor_zeros(
    env: Env,
    shape: Vec<i64>,
    dtype: String,
    device: Option<String>,
) -> Result<f64, Code> {
    let device = parse_device(device.as_deref())?;
    let tensor = Tensor::zeros_on(&shape, parse_dtype(&dtype)?, device).map_err(to_js)?;
    handles::insert_tensor(&env, tensor, device.is_cpu())
}

/// Imports the tensor held by capsule `capsule`, consuming it.
#[napi]
pub fn tensor_from_capsule(env: Env, capsule: f64) -> Result<f64, Code> {
    let tensor = handles::capsule(capsule)?.consume().map_err(to_js)?;
    // Only memory new to this process is reported to V8: re-importing one of
    // our own exports gives back its original storage, which its first handle
    // already reported (or which JS owns). Reporting it again on every import
    // would make a 1 GiB round trip trigger GC each time.
    let external = tensor.device().is_cpu() && tensor.storage_kind() == StorageKind::Foreign;
    handles::insert_tensor(&env, tensor, external)
}

/// Triton dtype name.
#[napi]
pub fn tensor_dtype(id: f64) -> Result<&'static str, Code> {
    with_tensor(id, |t| Ok(t.dtype().triton_name()))
}

/// Dimensions.
#[napi]
pub fn tensor_shape(id: f64) -> Result<Vec<i64>, Code> {
    with_tensor(id, |t| Ok(t.shape().to_vec()))
}

/// Strides in elements.
#[napi]
pub fn tensor_strides(id: f64) -> Result<Vec<i64>, Code> {
    with_tensor(id, |t| Ok(t.strides().to_vec()))
}

/// Size of the data in bytes.
#[napi]
pub fn tensor_byte_length(id: f64) -> Result<f64, Code> {
    with_tensor(id, |t| Ok(t.byte_len() as f64))
}

/// DLPack device type (`kDLCPU` = 1, `kDLCUDA` = 2, …).
#[napi]
pub fn tensor_device_type(id: f64) -> Result<i32, Code> {
    with_tensor(id, |t| Ok(t.device().kind.0))
}

/// Device ordinal.
#[napi]
pub fn tensor_device_id(id: f64) -> Result<i32, Code> {
    with_tensor(id, |t| Ok(t.device().id))
}

/// Device kind name ("cpu", "cuda", "cuda_host", …).
#[napi]
pub fn tensor_device_kind(id: f64) -> Result<&'static str, Code> {
    with_tensor(id, |t| Ok(t.device().kind_name()))
}

/// Whether the host can address the memory.
#[napi]
pub fn tensor_is_cpu(id: f64) -> Result<bool, Code> {
    with_tensor(id, |t| Ok(t.device().is_cpu()))
}

/// Whether the producer marked the memory read-only.
#[napi]
pub fn tensor_read_only(id: f64) -> Result<bool, Code> {
    with_tensor(id, |t| Ok(t.is_read_only()))
}

/// Address of the first element, for diagnostics and zero-copy checks.
#[napi]
pub fn tensor_data_address(id: f64) -> Result<BigInt, Code> {
    with_tensor(id, |t| Ok(BigInt::from(t.data_ptr() as usize as u64)))
}

/// Whether the handle is live (not disposed).
#[napi]
pub fn tensor_live(id: f64) -> bool {
    handles::tensor_exists(id)
}

/// A zero-copy `ArrayBuffer` over the host bytes.
#[napi]
pub fn tensor_view(env: Env, id: f64) -> Result<ArrayBuffer<'static>, Code> {
    // Cloned out of the table first: creating a JS object may run GC, and
    // nothing that runs then should find the tables borrowed.
    let tensor = with_tensor(id, |t| Ok(t.clone()))?;
    crate::view::host_view(&env, &tensor)
}

/// A deep copy in fresh native memory (on the same GPU for device tensors).
#[napi]
pub fn tensor_deep_copy(env: Env, id: f64) -> Result<f64, Code> {
    let tensor = with_tensor(id, |t| t.deep_copy().map_err(to_js))?;
    let external = tensor.device().is_cpu();
    handles::insert_tensor(&env, tensor, external)
}

/// A copy on `device` ("cpu", "cuda:N", "cuda_host"), always a new
/// allocation; complete when this returns.
#[napi]
pub fn tensor_to_device(env: Env, id: f64, device: String) -> Result<f64, Code> {
    let device = parse_device(Some(&device))?;
    let tensor = with_tensor(id, |t| t.to_device(device).map_err(to_js))?;
    handles::insert_tensor(&env, tensor, device.is_cpu())
}

/// Copies tensor `src`'s bytes into tensor `dst` (same dtype and shape, any
/// host/CUDA pair).
#[napi]
pub fn tensor_copy_to(src: f64, dst: f64) -> Result<(), Code> {
    with_tensor(src, |s| with_tensor(dst, |d| s.copy_to(d).map_err(to_js)))
}

/// The first half of a DLPack export (every check, copy and stream ordering:
/// core's `Tensor::prepare_export`), held as a tensor handle: the tensor a
/// consumer of the export gets. `fromDlpack` in JS adopts the handle as is;
/// `capsuleFromPrepared` builds the managed struct when a native consumer asks
/// for an address; `fastCalls().prepareExportPlain` is the same call without
/// copy, device or stream (see `fast.rs`). Arguments are positional, not an options object: reading
/// object properties through napi costs more than the export itself.
#[napi]
pub fn tensor_prepare_export(
    env: Env,
    id: f64,
    versioned: bool,
    copy: Option<bool>,
    device: Option<String>,
    stream: Option<BigInt>,
) -> Result<f64, Code> {
    let (options, stream) = export_args(versioned, copy, device.as_deref(), stream.as_ref())?;
    let prepared = with_tensor(id, |t| t.prepare_export(&options, stream).map_err(to_js))?;
    handles::insert_prepared(&env, prepared)
}

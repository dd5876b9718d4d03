//! `capsule*` functions: consume-once DLPack capsules, over handles.

use napi::bindgen_prelude::BigInt;
use napi::{Env, Result};
use napi_derive::napi;
use tensorbridge_core::Capsule;

use crate::error::{to_js, Code};
use crate::handles::{self, with_tensor};
use crate::options::{export_args, parse_address};

/// Takes ownership of the managed tensor at `address` (a `DLManagedTensor*`,
/// or a `DLManagedTensorVersioned*` when `versioned`) and returns a capsule
/// handle.
///
/// The caller promises that the pointer is live and unowned: ownership passes
/// to the capsule, which calls the deleter when consumed-and-dropped or
/// collected. A wrong address can't be detected and crashes the process, as
/// in every DLPack consumer.
#[napi]
pub fn capsule_from_address(address: BigInt, versioned: bool) -> Result<f64, Code> {
    let address = parse_address(&address)?;
    // SAFETY: the caller of `fromAddress` vouches that the address is a live,
    // unowned managed tensor of the stated kind (documented above and in the
    // TS API); core rejects NULL and misaligned pointers.
    let capsule = unsafe { Capsule::from_address(address, versioned) }.map_err(to_js)?;
    Ok(handles::insert_capsule(capsule))
}

/// Builds the managed struct of the prepared export held by tensor handle `id`
/// (from `tensorPrepareExport`) and returns a capsule handle owning it; the
/// tensor handle is freed.
#[napi]
pub fn capsule_from_prepared(env: Env, id: f64) -> Result<f64, Code> {
    let prepared = handles::take_prepared(&env, id)?;
    Ok(handles::insert_capsule(Capsule::new(prepared.into_dlpack())))
}

/// Exports tensor `id` as a managed struct (no copy, device or stream, as
/// `prepareExportPlain`) and returns a capsule handle owning it: the struct of
/// a capsule that shares its tensor's handle, built when a native consumer asks.
#[napi]
pub fn tensor_export(id: f64, versioned: bool) -> Result<f64, Code> {
    let (options, stream) = export_args(versioned, None, None, None)?;
    let exported = with_tensor(id, |t| t.to_dlpack_with_stream(&options, stream).map_err(to_js))?;
    Ok(handles::insert_capsule(Capsule::new(exported)))
}

/// Address of the managed struct, for native consumers.
#[napi]
pub fn capsule_address(id: f64) -> Result<BigInt, Code> {
    Ok(BigInt::from(handles::capsule(id)?.address() as u64))
}

/// Whether the capsule holds a versioned (DLPack 1.x) managed tensor.
#[napi]
pub fn capsule_versioned(id: f64) -> Result<bool, Code> {
    Ok(handles::capsule(id)?.is_versioned())
}

/// Whether the capsule was consumed or released.
#[napi]
pub fn capsule_consumed(id: f64) -> Result<bool, Code> {
    Ok(handles::capsule(id)?.is_consumed())
}

/// Gives up ownership and returns the address; whoever receives it must
/// consume it (for instance `fromAddress` in a worker) or the tensor leaks.
#[napi]
pub fn capsule_release(id: f64) -> Result<BigInt, Code> {
    let address = handles::capsule(id)?.release().map_err(to_js)?;
    Ok(BigInt::from(address as u64))
}

/// Frees the capsule handle (calling the deleter of an unconsumed capsule).
/// Idempotent; the JS `FinalizationRegistry` calls it.
#[napi]
pub fn capsule_free(id: f64) {
    handles::free_capsule(id);
}

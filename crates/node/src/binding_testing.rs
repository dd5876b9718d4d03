//! Foreign DLPack tensors for the ava tests (`debug.foreignTensor` in `src/debug.ts`), in the
//! test build only (cargo feature `testing`, which `scripts/ensure-addon.mjs` turns on; release
//! and platform-package builds leave it off, so what users install has none of this).
//!
//! A thin shell over [`tensorbridge_core::testing`]: it makes a heap-allocated managed tensor
//! with the shape, strides, dtype, version and flags the test asks for, as another library
//! would, and returns its address for `DLPackCapsule.fromAddress`. Its deleter frees
//! everything it owns and counts in `foreignStats()`. Not for production use: the address is
//! owned by whoever receives it, and a test that never hands it to a capsule leaks it.
//!
//! Why hand-written callbacks and not `#[napi]` functions: `napi build` writes the loader
//! (`index.js`, `index.d.ts`) from the `#[napi]` items compiled in, and the committed loader
//! must be the same whichever build made it. So the only export is `testingHooks()` (in
//! `hooks.rs`, in every build), which returns these functions here and `null` in a release.

use std::ptr;

use napi::bindgen_prelude::{BigInt, FromNapiValue, ToNapiValue, Uint8Array};
use napi::{sys, Env};
use tensorbridge_core::ffi::DLPackVersion;
use tensorbridge_core::testing::{self, Counter, Spec};

use crate::error::{self, js_error, to_js, Code};
use crate::fast::{args, check, function_object, throw, RawObject};
use crate::handles::with_tensor;
use crate::options::parse_dtype;

/// `{ foreignTensor, foreignStats }`, for `testingHooks()`.
pub fn hooks(env: &Env) -> Result<RawObject, napi::Error<Code>> {
    function_object(env, &[(c"foreignTensor", foreign_tensor), (c"foreignStats", foreign_stats)])
}

/// Reads argument `value` as a `T`; `ERR_INVALID_ARGUMENT` naming it otherwise.
///
/// # Safety
///
/// `value` must be a live value of `env`, inside a callback.
unsafe fn arg<T: FromNapiValue>(
    env: sys::napi_env,
    value: sys::napi_value,
    name: &str,
) -> Result<T, napi::Error<Code>> {
    // SAFETY: caller's contract; the conversion type-checks the value.
    unsafe { T::from_napi_value(env, value) }
        .map_err(|e| js_error(error::INVALID_ARGUMENT, format!("{name}: {}", e.reason)))
}

/// A plain object with `fields`, each converted by napi-rs.
///
/// # Safety
///
/// `env` must be live, inside a callback.
unsafe fn object_of<T: ToNapiValue>(
    env: sys::napi_env,
    fields: Vec<(&std::ffi::CStr, T)>,
) -> Result<sys::napi_value, napi::Error<Code>> {
    let mut object = ptr::null_mut();
    // SAFETY: caller's contract.
    let status = unsafe { sys::napi_create_object(env, &mut object) };
    check(status, "napi_create_object")?;
    for (name, value) in fields {
        // SAFETY: caller's contract.
        let value = unsafe { T::to_napi_value(env, value) }.map_err(crate::error::from_napi)?;
        // SAFETY: `object` and `value` are live values of this env; `name` is NUL-terminated.
        let status = unsafe { sys::napi_set_named_property(env, object, name.as_ptr(), value) };
        check(status, "napi_set_named_property")?;
    }
    Ok(object)
}

/// `foreignTensor(shape, strides, dtype, versioned, version, flags, byteOffset, data, over)`:
/// makes a foreign CPU managed tensor of `dtype` and `shape`, with `strides` in elements
/// (`null`: a NULL strides pointer), owning a copy of `data` (`null`: a byte pattern over
/// every element the strides reach). `version` (`[major, minor]`) and `flags` are written
/// into a versioned tensor; `byteOffset` verbatim. With `over` (a tensor handle) it points
/// into that tensor's memory instead, from its first byte, and keeps it alive. Returns
/// `{ address, data }` (bigints).
unsafe extern "C" fn foreign_tensor(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: napi calls this callback with a live env and callback info; every value read
    // below is one of this call's arguments.
    let result = unsafe { args::<9>(env, info) }.and_then(|argv| unsafe {
        make_foreign(
            arg(env, argv[0], "shape")?,
            arg(env, argv[1], "strides")?,
            arg(env, argv[2], "dtype")?,
            arg(env, argv[3], "versioned")?,
            arg(env, argv[4], "version")?,
            arg(env, argv[5], "flags")?,
            arg(env, argv[6], "byteOffset")?,
            arg(env, argv[7], "data")?,
            arg(env, argv[8], "over")?,
        )
        .and_then(|(address, data)| {
            object_of(env, vec![(c"address", BigInt::from(address)), (c"data", BigInt::from(data))])
        })
    });
    match result {
        Ok(object) => object,
        // SAFETY: a live env, from inside a callback.
        Err(err) => unsafe { throw(env, &err) },
    }
}

#[allow(clippy::too_many_arguments)] // one positional argument per descriptor field
fn make_foreign(
    shape: Vec<i64>,
    strides: Option<Vec<i64>>,
    dtype: String,
    versioned: bool,
    version: Option<Vec<u32>>,
    flags: Option<u32>,
    byte_offset: Option<u32>,
    data: Option<Uint8Array>,
    over: Option<f64>,
) -> Result<(u64, u64), napi::Error<Code>> {
    let dtype = parse_dtype(&dtype)?;
    let mut spec = match over {
        Some(id) => {
            if data.is_some() {
                return Err(js_error(
                    error::INVALID_ARGUMENT,
                    "a foreign tensor over another tensor's memory takes no data of its own",
                ));
            }
            let tensor = with_tensor(id, |t| Ok(t.clone()))?;
            Spec::over(&tensor, dtype, &shape, strides.as_deref()).map_err(to_js)?
        }
        None => Spec::new(dtype, &shape, strides.as_deref()).map_err(to_js)?,
    };
    if let Some(data) = data {
        spec.data = data.to_vec();
    }
    if let Some(version) = version {
        let [major, minor] = version[..] else {
            return Err(js_error(
                error::INVALID_ARGUMENT,
                format!("version must be [major, minor], got {} numbers", version.len()),
            ));
        };
        spec.version = DLPackVersion { major, minor };
    }
    spec.flags = u64::from(flags.unwrap_or(0));
    spec.byte_offset = u64::from(byte_offset.unwrap_or(0));
    let made = testing::make(&spec, versioned, &Counter::new());
    Ok((made.managed as u64, made.data as u64))
}

/// `foreignStats()`: `{ created, deleted }`, the counters of the foreign test tensors.
unsafe extern "C" fn foreign_stats(
    env: sys::napi_env,
    _info: sys::napi_callback_info,
) -> sys::napi_value {
    let s = testing::stats();
    // SAFETY: a live env, inside this callback.
    let result = unsafe {
        object_of(env, vec![(c"created", s.created as f64), (c"deleted", s.deleted as f64)])
    };
    match result {
        Ok(object) => object,
        // SAFETY: a live env, from inside a callback.
        Err(err) => unsafe { throw(env, &err) },
    }
}

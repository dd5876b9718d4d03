//! Hand-written napi callbacks for the two native calls of a DLPack round trip
//! (`toDlpack()` + `fromDlpack()` + `dispose()`): preparing an export and freeing a handle.
//!
//! Why not `#[napi]`: napi-rs 3.14 and later wraps every function that takes arguments in a
//! native-borrow scope (an `Arc<Mutex<…>>` allocation plus thread-local bookkeeping) so that
//! borrowed JS memory can't be freed under a reentrant call. Here it costs about 100 ns a call
//! (`tensorLive(id)` 150 ns against 45 ns for the argument-less `noop`), more than the work
//! of these two calls, which take only a number and a boolean and borrow nothing. These
//! callbacks read their arguments with plain napi calls and run the same logic as every other
//! handle function ([`crate::handles`], core's `prepare_export`).
//!
//! JS gets them once, as the object `fastCalls()` returns (`src/native.ts`). The helpers here
//! ([`function_object`], [`args`], [`throw`]) also make the test build's hooks
//! (`binding_testing`).

use std::ffi::CString;
use std::ptr;

use napi::bindgen_prelude::ToNapiValue;
use napi::{sys, Env};
use napi_derive::napi;

use crate::error::{js_error, to_js, Code};
use crate::handles;
use crate::options::export_args;

/// A JS object made in this call (see [`function_object`]), handed back as is.
pub struct RawObject(sys::napi_value);

impl ToNapiValue for RawObject {
    unsafe fn to_napi_value(_: sys::napi_env, object: RawObject) -> napi::Result<sys::napi_value> {
        Ok(object.0)
    }
}

/// Returns `{ prepareExportPlain, tensorFree }`. `prepareExportPlain(id,
/// versioned)` is `tensorPrepareExport(id, versioned)` without copy, device or
/// stream, except that it returns `id` itself when the export is the tensor
/// itself (no copy, same device label and flags, the usual case): the caller
/// then shares its handle and makes a struct, when asked, with `tensorExport`.
/// `tensorFree(id)` frees a handle (idempotent; unknown ids are ignored).
#[napi(
    ts_return_type = "{ prepareExportPlain(id: number, versioned: boolean): number; tensorFree(id: number): void }"
)]
pub fn fast_calls(env: Env) -> Result<RawObject, napi::Error<Code>> {
    function_object(
        &env,
        &[(c"prepareExportPlain", prepare_export_plain), (c"tensorFree", tensor_free)],
    )
}

/// A napi callback, as `napi_create_function` takes it.
pub type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

/// A plain object with one JS function per `(name, callback)`; a failing napi call is
/// `ERR_NAPI`.
pub fn function_object(
    env: &Env,
    functions: &[(&std::ffi::CStr, Callback)],
) -> Result<RawObject, napi::Error<Code>> {
    let env = env.raw();
    let mut object = ptr::null_mut();
    // SAFETY: `env` is the live env of the running `#[napi]` call.
    let status = unsafe { sys::napi_create_object(env, &mut object) };
    check(status, "napi_create_object")?;
    for &(name, callback) in functions {
        let mut function = ptr::null_mut();
        // SAFETY: `name` is valid for its length in bytes, the callback has napi's
        // signature, and it takes no data pointer.
        let status = unsafe {
            sys::napi_create_function(
                env,
                name.as_ptr(),
                name.count_bytes() as isize,
                Some(callback),
                ptr::null_mut(),
                &mut function,
            )
        };
        check(status, "napi_create_function")?;
        // SAFETY: `object` and `function` are live values of this env.
        let status = unsafe { sys::napi_set_named_property(env, object, name.as_ptr(), function) };
        check(status, "napi_set_named_property")?;
    }
    Ok(RawObject(object))
}

/// `ERR_NAPI` naming the napi call, unless `status` is `napi_ok`.
pub fn check(status: sys::napi_status, call: &str) -> Result<(), napi::Error<Code>> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(js_error(crate::error::NAPI, format!("{call} failed with napi status {status}")))
    }
}

/// `prepareExportPlain(id, versioned)` → the prepared export's tensor handle.
unsafe extern "C" fn prepare_export_plain(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: napi calls this callback with a live env and callback info.
    let result = unsafe { args::<2>(env, info) }.and_then(|argv| {
        // SAFETY: `argv` holds values of this env (missing arguments are `undefined`).
        let id = unsafe { number(env, argv[0], "id") }?;
        // SAFETY: as above.
        let versioned = unsafe { boolean(env, argv[1], "versioned") }?;
        let (options, stream) = export_args(versioned, None, None, None)?;
        let prepared = handles::with_tensor(id, |t| {
            let prepared = t.prepare_export(&options, stream).map_err(to_js)?;
            // Dropping the clone here can't run a deleter: `t` still holds the tensor.
            Ok((!prepared.tensor().is_same(t)).then_some(prepared))
        })?;
        match prepared {
            // The export is the tensor itself: the caller shares its own handle.
            None => Ok(id),
            Some(prepared) => handles::insert_prepared(&Env::from_raw(env), prepared),
        }
    });
    match result {
        // SAFETY: a live env; a number never fails to convert.
        Ok(handle) => unsafe { f64::to_napi_value(env, handle) }.unwrap_or(ptr::null_mut()),
        // SAFETY: a live env, from inside a callback (where throwing is allowed).
        Err(err) => unsafe { throw(env, &err) },
    }
}

/// `tensorFree(id)`: frees the handle; ignores ids that are not live handles.
unsafe extern "C" fn tensor_free(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> sys::napi_value {
    // SAFETY: napi calls this callback with a live env and callback info.
    let result = unsafe { args::<1>(env, info) }.and_then(|argv| {
        // SAFETY: `argv` holds values of this env.
        unsafe { number(env, argv[0], "id") }
    });
    match result {
        Ok(id) => {
            handles::free_tensor(&Env::from_raw(env), id);
            ptr::null_mut() // `undefined`
        }
        // SAFETY: a live env, from inside a callback.
        Err(err) => unsafe { throw(env, &err) },
    }
}

/// The first `N` arguments (`undefined` where fewer were passed).
///
/// # Safety
///
/// `env` and `info` must be the ones napi passed to the running callback.
pub unsafe fn args<const N: usize>(
    env: sys::napi_env,
    info: sys::napi_callback_info,
) -> Result<[sys::napi_value; N], napi::Error<Code>> {
    let mut argc = N;
    let mut argv = [ptr::null_mut(); N];
    // SAFETY: `argv` has room for `argc` values; napi fills missing ones with `undefined`.
    let status = unsafe {
        sys::napi_get_cb_info(
            env,
            info,
            &mut argc,
            argv.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    check(status, "napi_get_cb_info")?;
    Ok(argv)
}

/// # Safety
///
/// `value` must be a live value of `env`, inside a callback.
unsafe fn number(
    env: sys::napi_env,
    value: sys::napi_value,
    name: &str,
) -> Result<f64, napi::Error<Code>> {
    let mut out = 0.0;
    // SAFETY: caller's contract; napi type-checks the value.
    if unsafe { sys::napi_get_value_double(env, value, &mut out) } != sys::Status::napi_ok {
        return Err(js_error(crate::error::INVALID_ARGUMENT, format!("{name} must be a number")));
    }
    Ok(out)
}

/// # Safety
///
/// `value` must be a live value of `env`, inside a callback.
unsafe fn boolean(
    env: sys::napi_env,
    value: sys::napi_value,
    name: &str,
) -> Result<bool, napi::Error<Code>> {
    let mut out = false;
    // SAFETY: caller's contract; napi type-checks the value.
    if unsafe { sys::napi_get_value_bool(env, value, &mut out) } != sys::Status::napi_ok {
        return Err(js_error(crate::error::INVALID_ARGUMENT, format!("{name} must be a boolean")));
    }
    Ok(out)
}

/// Throws `err` as a JS `Error` whose `code` is the error's code, as napi-rs does for the
/// `#[napi]` functions, and returns the NULL value napi expects after a throw.
///
/// # Safety
///
/// `env` must be live, inside a callback.
pub unsafe fn throw(env: sys::napi_env, err: &napi::Error<Code>) -> sys::napi_value {
    // Codes and messages are ours and contain no NUL; if one did, an empty string is thrown.
    let code = CString::new(err.status.as_str()).unwrap_or_default();
    let message = CString::new(err.reason.as_str()).unwrap_or_default();
    // SAFETY: caller's contract; both strings are NUL-terminated and outlive the call.
    unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
    ptr::null_mut()
}

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
//! JS gets them once, as the object `fastCalls()` returns (`src/native.ts`).

use std::ffi::CString;
use std::ptr;

use napi::bindgen_prelude::ToNapiValue;
use napi::{sys, Env};
use napi_derive::napi;

use crate::error::{js_error, to_js, Code};
use crate::handles;
use crate::options::export_args;

/// The hand-written functions, as one JS object.
pub struct FastCalls;

/// Returns `{ prepareExportPlain, tensorFree }`. `prepareExportPlain(id,
/// versioned)` is `tensorPrepareExport(id, versioned)` without copy, device or
/// stream, except that it returns `id` itself when the export is the tensor
/// itself (no copy, same device label and flags, the usual case): the caller
/// then shares its handle and makes a struct, when asked, with `tensorExport`.
/// `tensorFree(id)` frees a handle (idempotent; unknown ids are ignored).
#[napi(
    ts_return_type = "{ prepareExportPlain(id: number, versioned: boolean): number; tensorFree(id: number): void }"
)]
pub fn fast_calls() -> FastCalls {
    FastCalls
}

impl ToNapiValue for FastCalls {
    unsafe fn to_napi_value(env: sys::napi_env, _: FastCalls) -> napi::Result<sys::napi_value> {
        let mut object = ptr::null_mut();
        // SAFETY: `env` is the live env of this call (the trait's contract).
        check(unsafe { sys::napi_create_object(env, &mut object) })?;
        let functions: [(&std::ffi::CStr, Callback); 2] =
            [(c"prepareExportPlain", prepare_export_plain), (c"tensorFree", tensor_free)];
        for (name, callback) in functions {
            let mut function = ptr::null_mut();
            // SAFETY: `name` is valid for its length in bytes, the callback has napi's
            // signature, and it takes no data pointer.
            check(unsafe {
                sys::napi_create_function(
                    env,
                    name.as_ptr(),
                    name.count_bytes() as isize,
                    Some(callback),
                    ptr::null_mut(),
                    &mut function,
                )
            })?;
            // SAFETY: `object` and `function` are live values of this env.
            check(unsafe { sys::napi_set_named_property(env, object, name.as_ptr(), function) })?;
        }
        Ok(object)
    }
}

type Callback = unsafe extern "C" fn(sys::napi_env, sys::napi_callback_info) -> sys::napi_value;

fn check(status: sys::napi_status) -> napi::Result<()> {
    if status == sys::Status::napi_ok {
        Ok(())
    } else {
        Err(napi::Error::new(napi::Status::GenericFailure, format!("napi status {status}")))
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
unsafe fn args<const N: usize>(
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
    if status != sys::Status::napi_ok {
        return Err(js_error("ERR_NAPI", format!("napi_get_cb_info failed with status {status}")));
    }
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
        return Err(js_error("ERR_INVALID_ARGUMENT", format!("{name} must be a number")));
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
        return Err(js_error("ERR_INVALID_ARGUMENT", format!("{name} must be a boolean")));
    }
    Ok(out)
}

/// Throws `err` as a JS `Error` whose `code` is the error's code, as napi-rs does for the
/// `#[napi]` functions, and returns the NULL value napi expects after a throw.
///
/// # Safety
///
/// `env` must be live, inside a callback.
unsafe fn throw(env: sys::napi_env, err: &napi::Error<Code>) -> sys::napi_value {
    // Codes and messages are ours and contain no NUL; if one did, an empty string is thrown.
    let code = CString::new(err.status.0).unwrap_or_default();
    let message = CString::new(err.reason.as_str()).unwrap_or_default();
    // SAFETY: caller's contract; both strings are NUL-terminated and outlive the call.
    unsafe { sys::napi_throw_error(env, code.as_ptr(), message.as_ptr()) };
    ptr::null_mut()
}

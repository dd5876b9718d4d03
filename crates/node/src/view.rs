//! Zero-copy `ArrayBuffer` views over host tensor memory.
//!
//! A view is an external `ArrayBuffer` whose finalizer owns a clone of the
//! core tensor, so the bytes outlive every JS reference to them and are
//! released exactly once, when V8 collects the buffer.
//!
//! We call `napi_create_external_arraybuffer` directly instead of napi-rs's
//! `ArrayBuffer::from_external`: the latter panics in debug builds when two
//! buffers alias one pointer (a Node 14 limitation, nodejs/node#32463). Node
//! 20+ allows aliasing external buffers, and aliasing is inherent to DLPack:
//! two imports of one NumPy array share a pointer, and so do the handles of
//! one tensor and of its re-imports. `__test__/gc.spec.ts` ("views over one
//! pointer …") exercises that case, and the worker suite makes views in a
//! worker over memory a main-thread ArrayBuffer owns. So we alias on purpose
//! and keep no per-pointer registry. Checked with this release addon on Node
//! 20.20.2, 22.23.3, 24.21.0 and 26.10.0 (the `node` npm package, running
//! `node_modules/ava/entrypoints/cli.mjs` under each): the whole suite runs
//! to the end on all four, nothing aborts, and the ownership suites (gc,
//! workers, foreign, tensor, dlpack) pass. CI's `node-versions` job repeats
//! that on 22, 24 and 26.

use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::{ArrayBuffer, FromNapiValue};
use napi::Result;
use napi::{sys, Env};
use tensorbridge_core::Tensor;

use crate::error::{js_error, Code};

/// The finalizer of a view: drops the tensor clone that kept the bytes alive.
unsafe extern "C" fn finalize_view(_env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<Tensor>` leaked in `host_view`, and V8 calls a
    // finalizer exactly once, so the box is reclaimed exactly once.
    drop(unsafe { Box::from_raw(hint.cast::<Tensor>()) });
}

/// Returns a zero-copy `ArrayBuffer` over `tensor`'s host bytes.
///
/// # Errors
/// `ERR_NOT_CPU` for memory the host can't address (from core), and
/// `ERR_EXTERNAL_BUFFERS_UNSUPPORTED` on runtimes without external buffers.
pub fn host_view(env: &Env, tensor: &Tensor) -> Result<ArrayBuffer<'static>, Code> {
    let bytes = tensor.as_bytes().map_err(crate::error::to_js)?;
    let mut value = ptr::null_mut();
    if bytes.is_empty() {
        // External buffers can't be empty or NULL; an empty view aliases nothing.
        // SAFETY: `env` is the live env of this call and `value` a valid out slot.
        let status =
            unsafe { sys::napi_create_arraybuffer(env.raw(), 0, ptr::null_mut(), &mut value) };
        return finish(env, status, value);
    }
    let hint = Box::into_raw(Box::new(tensor.clone()));
    // SAFETY: the data pointer and length describe host memory owned by the
    // tensor's storage, which the leaked clone (`hint`) keeps alive until
    // `finalize_view` runs. JS may write through the view: tensors exposed to JS
    // are never assumed immutable by core, and read-only tensors are refused by
    // the TS layer before a writable view is made.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env.raw(),
            bytes.as_ptr().cast_mut().cast(),
            bytes.len(),
            Some(finalize_view),
            hint.cast(),
            &mut value,
        )
    };
    if status != sys::Status::napi_ok {
        // SAFETY: creation failed, so V8 never took the hint; reclaim it here.
        drop(unsafe { Box::from_raw(hint) });
        if status == sys::Status::napi_no_external_buffers_allowed {
            return Err(js_error(
                "ERR_EXTERNAL_BUFFERS_UNSUPPORTED",
                "this JavaScript runtime does not allow external ArrayBuffers, so tensor memory \
         can't be viewed without a copy; use tensor.toArray() or run under Node.js",
            ));
        }
    }
    finish(env, status, value)
}

fn finish(
    env: &Env,
    status: sys::napi_status,
    value: sys::napi_value,
) -> Result<ArrayBuffer<'static>, Code> {
    if status != sys::Status::napi_ok {
        return Err(js_error(
            "ERR_NAPI",
            format!("creating an ArrayBuffer failed (napi status {status})"),
        ));
    }
    // SAFETY: `value` was just created as an ArrayBuffer in this env.
    unsafe { ArrayBuffer::from_napi_value(env.raw(), value) }.map_err(crate::error::from_napi)
}

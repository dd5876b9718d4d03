//! Zero-copy `ArrayBuffer` views over host tensor memory.
//!
//! A view is an external `ArrayBuffer` whose finalizer owns a clone of the
//! core tensor, so the bytes outlive every JS reference to them and are
//! released exactly once, when V8 collects the buffer.
//!
//! One pointer, one `ArrayBuffer` per thread: each JS thread (the main one
//! and every worker, each with its own isolate) keeps a registry of its live
//! views by data pointer, holding them through weak napi references. A view
//! asked for memory that a live view of this thread already starts at, and
//! covers, is that view; so a tensor, its renamed self, its in-process
//! imports, the import of its own C struct and two imports of one NumPy
//! array all read through one `ArrayBuffer`. The entry goes when its buffer
//! is finalized (or is replaced once the buffer is found collected).
//!
//! What can't be one buffer: a view in another thread (an `ArrayBuffer`
//! belongs to one isolate, and sending a tensor to a worker without a copy
//! means a second view there), and a view asked for more bytes than the live
//! one at the same pointer holds (a producer handing out a longer tensor at
//! the same address; the longer view replaces the shorter one in the
//! registry). Aliasing external buffers aborted Node 14 (nodejs/node#32463);
//! Node 20, 22, 24 and 26 allow it (checked with this addon, and CI's
//! `node-versions` job runs the ownership suites on 22, 24 and 26). We call
//! `napi_create_external_arraybuffer` directly because napi-rs's
//! `ArrayBuffer::from_external` panics in debug builds on an aliased pointer.
//!
//! Node runs the finalizer of an external `ArrayBuffer` on the JS thread that
//! made it, so the registry is thread-local and needs no lock.

use std::cell::RefCell;
use std::collections::HashMap;
use std::ffi::c_void;
use std::ptr;

use napi::bindgen_prelude::{ArrayBuffer, FromNapiValue};
use napi::Result;
use napi::{sys, Env};
use tensorbridge_core::Tensor;

use crate::error::{js_error, Code};

/// A live view in this thread's registry.
struct Entry {
    /// A weak reference (count 0) to the `ArrayBuffer`: it doesn't keep the view alive.
    reference: sys::napi_ref,
    len: usize,
    /// Which view made the entry, so a late finalizer of a replaced view leaves it alone.
    serial: u64,
}

/// Views by (env, data pointer): a thread normally runs one env, but an addon loaded twice
/// in one thread gets two, and a reference belongs to the env that made it.
type Key = (usize, usize);

#[derive(Default)]
struct Registry {
    views: HashMap<Key, Entry>,
    next_serial: u64,
}

thread_local! {
    static REGISTRY: RefCell<Registry> = RefCell::new(Registry::default());
}

/// What a view's finalizer gets: the tensor clone that keeps the bytes alive, and the key of
/// its registry entry.
struct Hint {
    _tensor: Tensor,
    ptr: usize,
    serial: u64,
}

/// The finalizer of a view: drops the tensor clone that kept the bytes alive and the view's
/// registry entry (unless a newer view replaced it).
unsafe extern "C" fn finalize_view(env: sys::napi_env, _data: *mut c_void, hint: *mut c_void) {
    // SAFETY: `hint` is the `Box<Hint>` leaked in `host_view`, and a finalizer runs exactly
    // once, so the box is reclaimed exactly once.
    let hint = unsafe { Box::from_raw(hint.cast::<Hint>()) };
    // `try_with`: at thread exit the registry may be gone before a late finalizer runs.
    // `try_borrow_mut`: Node defers these finalizers out of GC, so none should run while the
    // registry is borrowed; if one ever did, its entry is left (its weak reference then reads
    // NULL and the next view at that pointer replaces it) rather than panicking here.
    let _ = REGISTRY.try_with(|registry| {
        let Ok(mut registry) = registry.try_borrow_mut() else { return };
        let key = (env as usize, hint.ptr);
        if registry.views.get(&key).is_some_and(|e| e.serial == hint.serial) {
            let entry = registry.views.remove(&key).expect("checked just above");
            // SAFETY: a reference made in this env by `host_view`, deleted once (its entry
            // is gone from the registry).
            unsafe { sys::napi_delete_reference(env, entry.reference) };
        }
    });
}

/// This thread's live view that starts at `ptr` and holds at least `len` bytes.
fn live_view(env: &Env, ptr: usize, len: usize) -> Option<sys::napi_value> {
    REGISTRY.with(|registry| {
        let registry = registry.borrow();
        let entry = registry.views.get(&(env.raw() as usize, ptr)).filter(|e| e.len >= len)?;
        let mut value = ptr::null_mut();
        // SAFETY: a reference of this env (the registry is per thread, and one thread runs
        // one env); `value` is a valid out slot. A collected buffer gives NULL.
        let status =
            unsafe { sys::napi_get_reference_value(env.raw(), entry.reference, &mut value) };
        (status == sys::Status::napi_ok && !value.is_null()).then_some(value)
    })
}

/// A serial for the next view of this thread, so that its finalizer can tell its own entry.
fn next_serial() -> u64 {
    REGISTRY.with(|registry| {
        let mut registry = registry.borrow_mut();
        registry.next_serial += 1;
        registry.next_serial
    })
}

/// Records `value`, a new view of `len` bytes at `ptr` made with `serial`, replacing any entry
/// for `ptr`. Without an entry (napi refused the reference) the view still works; it just isn't
/// shared, and its finalizer finds no entry of its serial.
fn remember(env: &Env, ptr: usize, len: usize, value: sys::napi_value, serial: u64) {
    let mut reference = ptr::null_mut();
    // SAFETY: `value` is a live object of this env; a count of 0 makes a weak reference.
    let status = unsafe { sys::napi_create_reference(env.raw(), value, 0, &mut reference) };
    if status != sys::Status::napi_ok {
        return;
    }
    REGISTRY.with(|registry| {
        let key = (env.raw() as usize, ptr);
        let old = registry.borrow_mut().views.insert(key, Entry { reference, len, serial });
        if let Some(old) = old {
            // SAFETY: the replaced entry's reference, made in this env and deleted once (its
            // view's finalizer sees another serial and leaves the new entry alone).
            unsafe { sys::napi_delete_reference(env.raw(), old.reference) };
        }
    });
}

/// Number of entries in this thread's view registry (for tests: it must not grow with
/// views that were collected).
pub fn registered_views() -> usize {
    REGISTRY.with(|registry| registry.borrow().views.len())
}

/// Returns a zero-copy `ArrayBuffer` over `tensor`'s host bytes: this thread's live view of
/// that memory if it has one, else a new external `ArrayBuffer`.
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
    let (ptr, len) = (bytes.as_ptr() as usize, bytes.len());
    if let Some(value) = live_view(env, ptr, len) {
        // The live view's own tensor clone keeps these bytes alive as long as it lives, and
        // an `ArrayBuffer` over the start of a range is a view of any prefix of it.
        return finish(env, sys::Status::napi_ok, value);
    }
    let serial = next_serial();
    let hint = Box::into_raw(Box::new(Hint { _tensor: tensor.clone(), ptr, serial }));
    // SAFETY: the data pointer and length describe host memory owned by the
    // tensor's storage, which the leaked clone (`hint`) keeps alive until
    // `finalize_view` runs. JS may write through the view: tensors exposed to JS
    // are never assumed immutable by core, and read-only tensors are refused by
    // the TS layer before a writable view is made.
    let status = unsafe {
        sys::napi_create_external_arraybuffer(
            env.raw(),
            bytes.as_ptr().cast_mut().cast(),
            len,
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
                crate::error::EXTERNAL_BUFFERS_UNSUPPORTED,
                "this JavaScript runtime does not allow external ArrayBuffers (a V8 memory \
                 sandbox, as in Electron), so native tensor memory can't be viewed; run under \
                 Node.js, or keep host tensors in JS memory (Tensor.from(typedArray)), whose \
                 data() needs no external buffer",
            ));
        }
        return finish(env, status, value);
    }
    remember(env, ptr, len, value, serial);
    finish(env, status, value)
}

fn finish(
    env: &Env,
    status: sys::napi_status,
    value: sys::napi_value,
) -> Result<ArrayBuffer<'static>, Code> {
    if status != sys::Status::napi_ok {
        return Err(js_error(
            crate::error::NAPI,
            format!("creating an ArrayBuffer failed (napi status {status})"),
        ));
    }
    // SAFETY: `value` was just created as an ArrayBuffer in this env.
    unsafe { ArrayBuffer::from_napi_value(env.raw(), value) }.map_err(crate::error::from_napi)
}

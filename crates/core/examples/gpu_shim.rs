//! A tiny C ABI over tensorbridge-core, built as a shared library, so that Python (ctypes,
//! no pyo3, no build step on the GPU machine) can exchange DLPack tensors with the core in
//! one process: `scripts/gpu/torch_interop.py` uses it to prove zero-copy interop with
//! PyTorch CUDA tensors in both directions, the stream protocol, and pointer validation.
//!
//! Build: `cargo build -p tensorbridge-core --example gpu_shim` (`scripts/gpu/prepare.sh`
//! does it). Not an API: handles are `Box<Tensor>` pointers, errors are kept per thread and
//! read with `tb_last_error`.
//!
//! Ownership: `tb_import` takes ownership of a managed tensor only on success (on failure the
//! caller still owns it and must delete it); `tb_export` gives the caller a managed tensor it
//! must hand to a consumer (or delete); every handle is freed once with `tb_free`.

use std::cell::RefCell;
use std::ffi::{c_char, c_int, CStr};
use std::ptr;

use tensorbridge_core::cuda::{self, ConsumerStream};
use tensorbridge_core::{stats, Capsule, DataType, Device, Error, ExportOptions, Tensor};

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_error(e: &Error) {
    LAST_ERROR.with(|l| *l.borrow_mut() = format!("{}: {e}", e.code()));
}

fn handle(t: Tensor) -> *mut Tensor {
    Box::into_raw(Box::new(t))
}

/// # Safety
///
/// `h` must be NULL or a live handle from this library.
unsafe fn tensor<'a>(h: *const Tensor) -> Option<&'a Tensor> {
    // SAFETY: forwarded from the caller.
    unsafe { h.as_ref() }
}

/// 1 when CUDA is available, else 0.
#[no_mangle]
pub extern "C" fn tb_is_available() -> c_int {
    c_int::from(cuda::is_available())
}

/// Copies the calling thread's last error ("ERR_CODE: message") into `buf` (NUL-terminated,
/// truncated to `len`); returns its full length.
///
/// # Safety
///
/// `buf` must be valid for `len` bytes of writes (or `len` 0).
#[no_mangle]
pub unsafe extern "C" fn tb_last_error(buf: *mut c_char, len: usize) -> usize {
    LAST_ERROR.with(|l| {
        let msg = l.borrow();
        if len > 0 {
            let n = msg.len().min(len - 1);
            // SAFETY: `buf` has `len > n` writable bytes (caller's contract).
            unsafe {
                ptr::copy_nonoverlapping(msg.as_ptr().cast::<c_char>(), buf, n);
                *buf.add(n) = 0;
            }
        }
        msg.len()
    })
}

/// Imports the managed tensor at `managed` (versioned when `versioned != 0`). Returns a handle,
/// or NULL with the error set (the caller then still owns `managed`).
///
/// # Safety
///
/// `managed` must be a live, unowned DLPack managed tensor of the stated ABI.
#[no_mangle]
pub unsafe extern "C" fn tb_import(managed: usize, versioned: c_int) -> *mut Tensor {
    // SAFETY: forwarded from the caller.
    let capsule = match unsafe { Capsule::from_address(managed, versioned != 0) } {
        Ok(c) => c,
        Err(e) => {
            set_error(&e);
            return ptr::null_mut();
        }
    };
    match capsule.consume() {
        Ok(t) => handle(t),
        Err(e) => {
            set_error(&e);
            // Ownership stays with the caller: give the pointer back without deleting it.
            let _ = capsule.release();
            ptr::null_mut()
        }
    }
}

/// A new tensor on `device` ("cpu", "cuda:0", "cuda_host") holding a copy of `len` bytes, of
/// Triton dtype `dtype` and shape `shape[..ndim]`. NULL with the error set on failure.
///
/// # Safety
///
/// `bytes` valid for `len` reads, `shape` for `ndim` reads, `dtype` and `device` NUL-terminated.
#[no_mangle]
pub unsafe extern "C" fn tb_from_host(
    bytes: *const u8,
    len: usize,
    shape: *const i64,
    ndim: usize,
    dtype: *const c_char,
    device: *const c_char,
) -> *mut Tensor {
    let run = || -> Result<Tensor, Error> {
        // SAFETY: caller's contract.
        let (bytes, shape, dtype, device) = unsafe {
            (
                if len == 0 { &[][..] } else { std::slice::from_raw_parts(bytes, len) },
                if ndim == 0 { &[][..] } else { std::slice::from_raw_parts(shape, ndim) },
                CStr::from_ptr(dtype).to_string_lossy(),
                CStr::from_ptr(device).to_string_lossy(),
            )
        };
        let host = Tensor::from_vec(bytes.to_vec(), shape, DataType::from_triton_name(&dtype)?)?;
        host.to_device(device.parse::<Device>()?)
    };
    match run() {
        Ok(t) => handle(t),
        Err(e) => {
            set_error(&e);
            ptr::null_mut()
        }
    }
}

/// Exports the tensor for a consumer on `stream` (the array API value; `has_stream == 0`
/// means None). Returns the managed tensor's address (the caller owns it), or 0 with the
/// error set.
///
/// # Safety
///
/// `h` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn tb_export(
    h: *const Tensor,
    versioned: c_int,
    stream: i64,
    has_stream: c_int,
) -> usize {
    // SAFETY: caller's contract.
    let Some(t) = (unsafe { tensor(h) }) else { return 0 };
    let run = || -> Result<usize, Error> {
        let stream = ConsumerStream::from_array_api((has_stream != 0).then_some(stream))?;
        let options = ExportOptions { versioned: versioned != 0, ..ExportOptions::default() };
        Ok(t.to_dlpack_with_stream(&options, stream)?.into_raw() as usize)
    };
    run().unwrap_or_else(|e| {
        set_error(&e);
        0
    })
}

/// The tensor's data address.
///
/// # Safety
///
/// `h` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn tb_data_ptr(h: *const Tensor) -> usize {
    // SAFETY: caller's contract.
    unsafe { tensor(h) }.map_or(0, |t| t.data_ptr() as usize)
}

/// The tensor's byte length.
///
/// # Safety
///
/// `h` must be a live handle.
#[no_mangle]
pub unsafe extern "C" fn tb_byte_len(h: *const Tensor) -> usize {
    // SAFETY: caller's contract.
    unsafe { tensor(h) }.map_or(0, Tensor::byte_len)
}

/// Writes the tensor's DLPack device type and id.
///
/// # Safety
///
/// `h` must be a live handle; `kind` and `id` valid for one write each.
#[no_mangle]
pub unsafe extern "C" fn tb_device(h: *const Tensor, kind: *mut c_int, id: *mut c_int) -> c_int {
    // SAFETY: caller's contract.
    let Some(t) = (unsafe { tensor(h) }) else { return -1 };
    // SAFETY: caller's contract.
    unsafe {
        *kind = t.device().kind.0;
        *id = t.device().id;
    }
    0
}

/// Copies the tensor's bytes to host memory `out` (`len` must be its byte length), through
/// `to_cpu` (a device → host copy on tensorbridge's stream). 0, or -1 with the error set.
///
/// # Safety
///
/// `h` must be a live handle and `out` valid for `len` writes.
#[no_mangle]
pub unsafe extern "C" fn tb_read(h: *const Tensor, out: *mut u8, len: usize) -> c_int {
    // SAFETY: caller's contract.
    let Some(t) = (unsafe { tensor(h) }) else { return -1 };
    let run = || -> Result<(), Error> {
        let host = t.to_cpu()?;
        let bytes = host.as_bytes()?;
        if bytes.len() != len {
            return Err(Error::InvalidArgument {
                message: format!("tb_read: the tensor has {} bytes, not {len}", bytes.len()),
            });
        }
        // SAFETY: `out` has `len` writable bytes (caller's contract), `bytes` is `len` long.
        unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), out, len) };
        Ok(())
    };
    run().map_or_else(
        |e| {
            set_error(&e);
            -1
        },
        |()| 0,
    )
}

/// tensorbridge's stream on `cuda:device`, or 0 with the error set.
#[no_mangle]
pub extern "C" fn tb_stream_handle(device: c_int) -> usize {
    cuda::stream_handle(Device::cuda(device)).unwrap_or_else(|e| {
        set_error(&e);
        0
    })
}

/// Writes CUDA allocations, frees and live bytes (see `stats`).
///
/// # Safety
///
/// `out` must be valid for 3 writes.
#[no_mangle]
pub unsafe extern "C" fn tb_cuda_stats(out: *mut u64) {
    let s = stats::snapshot();
    // SAFETY: caller's contract.
    unsafe {
        *out = s.cuda_allocations;
        *out.add(1) = s.cuda_frees;
        *out.add(2) = s.cuda_live_bytes;
    }
}

/// Frees a handle (the memory goes when its last user does).
///
/// # Safety
///
/// `h` must be NULL or a live handle, freed once.
#[no_mangle]
pub unsafe extern "C" fn tb_free(h: *mut Tensor) {
    if !h.is_null() {
        // SAFETY: caller's contract: a live handle from `handle`, freed once.
        drop(unsafe { Box::from_raw(h) });
    }
}

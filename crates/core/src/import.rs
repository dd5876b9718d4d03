//! Import: DLPack managed tensor → [`Tensor`], validating everything before trusting it.
//!
//! # Checks, in order, and who owns the tensor afterwards
//!
//! | # | check | error | ownership after the error |
//! |---|---|---|---|
//! | 1 | managed pointer is NULL | `ERR_DLPACK_NULL` | nothing to own |
//! | 2 | managed pointer not 8-byte aligned | `ERR_DLPACK_INVALID` | caller |
//! | 3 | versioned, `version.major != 1` | `ERR_DLPACK_VERSION` | **consumed**: the deleter (if non-NULL) was called and nothing else was read, as DLPack requires |
//! | 4 | `ndim < 0` or `ndim > MAX_NDIM` | `ERR_DLPACK_INVALID` | caller |
//! | 5 | `dtype.lanes != 1` | `ERR_DLPACK_INVALID` | caller |
//! | 6 | dtype not one of Triton's | `ERR_DTYPE_UNSUPPORTED` | caller |
//! | 7 | device type not defined by DLPack 1.3 | `ERR_DEVICE_UNSUPPORTED` | caller |
//! | 8 | `shape` NULL with `ndim > 0` | `ERR_DLPACK_NULL` | caller |
//! | 9 | `shape` / `strides` pointer misaligned | `ERR_DLPACK_INVALID` | caller |
//! | 10 | a negative dimension | `ERR_SHAPE_NEGATIVE` (names the axis) | caller |
//! | 11 | element count, byte size or a canonical stride overflows (a zero-element tensor's other axes can multiply past `i64::MAX`) | `ERR_SHAPE_OVERFLOW` | caller |
//! | 12 | strides (when non-NULL) not C order | `ERR_DLPACK_NOT_CONTIGUOUS` (names the axis) | caller |
//! | 13 | `data` NULL with a non-zero byte size | `ERR_DLPACK_NULL` | caller |
//! | 14 | `data + byte_offset + bytes` overflows the address space | `ERR_DLPACK_INVALID` | caller |
//! | 15 | `cuda:N` / `cuda_managed` without a CUDA driver, or an ordinal the driver lacks | `ERR_CUDA_UNAVAILABLE` / `ERR_DEVICE_UNSUPPORTED` | caller |
//! | 16 | the driver's pointer attributes of the first and last byte contradict the label (host memory labelled CUDA, another GPU's memory, device memory labelled `cpu`/`cuda_host`) | `ERR_DEVICE_MISMATCH` | caller |
//!
//! "Caller" means nothing was freed or written: the caller still owns the managed tensor and
//! must delete it (an [`ImportError`](crate::export::ImportError) hands the
//! [`ExportedTensor`] back; the raw `Tensor::from_dlpack_*` functions leave the pointer with
//! the caller). Minor versions above ours are accepted; `strides == NULL` means compact, and
//! accepted strides are replaced by the canonical ones (they can only differ on size-0/size-1
//! axes);
//! `byte_offset` is honoured (`data_ptr() == data + byte_offset`); the `READ_ONLY` and
//! `IS_COPIED` flags of a versioned tensor are carried into the tensor; a NULL deleter is
//! allowed (the producer keeps ownership of the memory, and nothing is called on drop).
//!
//! Checks 15–16 are `cuda::check_import` and [`crate::cuda::check_pointer`]; host
//! labels are checked against the driver only in a process that has loaded it already, and
//! tensors this crate exported itself are not checked again. Device memory is borrowed, never
//! freed here: only the producer's deleter is called.
//!
//! On success the tensor owns the managed tensor and calls its deleter exactly once, when
//! the last clone of the tensor (and of anything sharing its storage) is dropped, on whatever
//! thread that happens. One shortcut: a tensor this crate exported itself is recognised, its
//! original storage is shared directly and the export is deleted at once, so repeated round
//! trips don't stack wrappers.

use std::ffi::c_void;
use std::sync::Arc;

use crate::device::Device;
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::export::{own_export, ExportedTensor, ImportError, Managed};
use crate::ffi::{
    DLTensor, DLPACK_FLAG_BITMASK_IS_COPIED, DLPACK_FLAG_BITMASK_READ_ONLY, DLPACK_MAJOR_VERSION,
};
use crate::layout::{self, MAX_NDIM};
use crate::storage::Storage;
use crate::tensor::{unknown_device, Tensor, TensorFlags};

/// `Tensor::from_dlpack_*`: on failure the pointer stays with the caller, except after a
/// version mismatch (the deleter was called).
///
/// # Safety
///
/// As `ExportedTensor::from_raw`, plus: the descriptor must describe memory kept alive until
/// the deleter runs.
pub(crate) unsafe fn import_raw(ptr: *mut c_void, versioned: bool) -> Result<Tensor> {
    // SAFETY: forwarded from the caller.
    let handle = unsafe { ExportedTensor::from_raw(ptr, versioned) }?;
    import(handle).map_err(|ImportError { error, handle }| {
        if let Some(handle) = handle {
            // Ownership goes back to the caller: don't run the deleter.
            handle.into_raw();
        }
        error
    })
}

/// `ExportedTensor::into_tensor`.
pub(crate) fn import(handle: ExportedTensor) -> std::result::Result<Tensor, ImportError> {
    // SAFETY: `ExportedTensor::from_raw`'s contract makes `handle` a live managed tensor of the
    // ABI it claims (with only `version`/`deleter` valid under another major version, which
    // `read_descriptor` checks before reading anything else).
    let descriptor = match unsafe { read_descriptor(handle.managed()) } {
        Ok(d) => d,
        Err(error @ Error::Version { .. }) => {
            // DLPack: on a major-version mismatch the consumer calls the deleter.
            drop(handle);
            return Err(ImportError { error, handle: None });
        }
        Err(error) => return Err(ImportError { error, handle: Some(handle) }),
    };
    // SAFETY: as above, and `descriptor` was read from `handle`, which is still alive.
    let valid = match unsafe { validate(&descriptor) } {
        Ok(valid) => valid,
        Err(error) => return Err(ImportError { error, handle: Some(handle) }),
    };
    // SAFETY: `handle` is live; the reference is not kept.
    let ours = unsafe { own_export(handle.managed()) }.is_some();
    if !ours {
        if let Err(error) = crate::cuda::check_import(valid.data, valid.bytes, valid.device) {
            return Err(ImportError { error, handle: Some(handle) });
        }
    }
    Ok(adopt(handle, valid))
}

/// The descriptor and flags of a managed tensor.
struct Descriptor {
    dl: DLTensor,
    flags: u64,
}

/// Reads the descriptor, checking the version first for versioned tensors.
///
/// # Safety
///
/// `managed` must be live; for a versioned tensor with another major version only the
/// `version` field is read.
unsafe fn read_descriptor(managed: Managed) -> Result<Descriptor> {
    match managed {
        Managed::Legacy(p) => Ok(Descriptor {
            // SAFETY: `p` is a live, aligned `DLManagedTensor` (caller's contract).
            dl: unsafe { (*p.as_ptr()).dl_tensor },
            flags: 0,
        }),
        Managed::Versioned(p) => {
            // SAFETY: `version` is at offset 0 in every major version; read it alone, through a
            // raw place, without assuming the rest of the layout.
            let version = unsafe { std::ptr::addr_of!((*p.as_ptr()).version).read() };
            if version.major != DLPACK_MAJOR_VERSION {
                return Err(Error::Version { major: version.major, minor: version.minor });
            }
            // SAFETY: major version 1: the layout is ours and `p` is live and aligned.
            let m = unsafe { &*p.as_ptr() };
            Ok(Descriptor { dl: m.dl_tensor, flags: m.flags })
        }
    }
}

/// A descriptor that passed every check.
struct Valid {
    data: *mut u8,
    bytes: usize,
    shape: Vec<i64>,
    strides: Option<Vec<i64>>,
    dtype: DataType,
    device: Device,
    flags: TensorFlags,
}

/// Checks 4–14 of the table in the module docs.
///
/// # Safety
///
/// Non-NULL `shape`/`strides` pointers of `d.dl` must be valid for `ndim` reads while this
/// runs (the producer's DLPack contract for a live managed tensor).
unsafe fn validate(d: &Descriptor) -> Result<Valid> {
    let dl = &d.dl;
    let ndim = usize::try_from(dl.ndim).ok().filter(|&n| n <= MAX_NDIM).ok_or_else(|| {
        Error::invalid(format!("ndim is {}; it must be between 0 and {MAX_NDIM}", dl.ndim))
    })?;
    let dtype = DataType::from_dlpack(dl.dtype)?;
    let device = Device::from(dl.device);
    if !device.is_known() {
        return Err(unknown_device(device));
    }
    // SAFETY: forwarded from this function's contract.
    let shape =
        unsafe { read_dims(dl.shape, ndim, "shape") }?.ok_or(Error::Null { what: "shape" })?;
    // SAFETY: as above.
    let strides = unsafe { read_dims(dl.strides, ndim, "strides") }?;
    let bytes = layout::byte_size(&shape, dtype)?;
    layout::check_c_contiguous(&shape, strides.as_deref())?;
    // The tensor keeps (and exports) the canonical strides, so they must fit `int64_t` even
    // where the element count is 0 and nothing else overflowed; `adopt` relies on it.
    layout::compact_strides(&shape)?;

    let data = dl.data.cast::<u8>();
    if data.is_null() && bytes > 0 {
        return Err(Error::Null { what: "data" });
    }
    let fits = usize::try_from(dl.byte_offset)
        .ok()
        .and_then(|offset| (data as usize).checked_add(offset))
        .is_some_and(|start| start.checked_add(bytes).is_some());
    if !fits {
        return Err(Error::invalid(format!(
            "data {:p} + byte_offset {} + {bytes} bytes overflows the address space",
            dl.data, dl.byte_offset
        )));
    }
    Ok(Valid {
        // In bounds by the producer's contract; `wrapping_add` avoids asserting it.
        data: data.wrapping_add(dl.byte_offset as usize),
        bytes,
        shape,
        strides,
        dtype,
        device,
        flags: TensorFlags {
            read_only: d.flags & DLPACK_FLAG_BITMASK_READ_ONLY != 0,
            copied: d.flags & DLPACK_FLAG_BITMASK_IS_COPIED != 0,
        },
    })
}

/// Copies `ndim` dimensions from `ptr`; `None` for a NULL pointer.
///
/// # Safety
///
/// A non-NULL, aligned `ptr` must be valid for `ndim` reads of `i64`.
unsafe fn read_dims(ptr: *const i64, ndim: usize, what: &str) -> Result<Option<Vec<i64>>> {
    if ndim == 0 {
        return Ok(Some(Vec::new()));
    }
    if ptr.is_null() {
        return Ok(None);
    }
    if (ptr as usize) % std::mem::align_of::<i64>() != 0 {
        return Err(Error::invalid(format!(
            "the {what} pointer {ptr:p} is not aligned to 8 bytes"
        )));
    }
    // SAFETY: non-NULL, aligned, and valid for `ndim` reads (caller's contract).
    Ok(Some(unsafe { std::slice::from_raw_parts(ptr, ndim) }.to_vec()))
}

/// Builds the tensor that takes ownership of `handle`.
fn adopt(handle: ExportedTensor, v: Valid) -> Tensor {
    // SAFETY: `handle` is live (we own it), and a reference from `own_export` is used only
    // before `handle` is dropped below.
    if let Some(original) = unsafe { own_export(handle.managed()) } {
        let storage = original.storage();
        let same_memory = storage.contains(v.data, v.bytes)
            && (storage.device() == v.device || (storage.device().is_cpu() && v.device.is_cpu()));
        if same_memory {
            let storage = Arc::clone(storage);
            let offset = (v.data as usize).wrapping_sub(storage.as_ptr() as usize);
            let flags = TensorFlags {
                read_only: v.flags.read_only || original.is_read_only(),
                copied: v.flags.copied,
            };
            let tensor = Tensor::from_storage(
                storage,
                if v.bytes == 0 { 0 } else { offset },
                &v.shape,
                v.strides.as_deref(),
                v.dtype,
                v.device,
                flags,
            );
            if let Ok(tensor) = tensor {
                // The tensor shares the original storage; the export itself is done.
                drop(handle);
                return tensor;
            }
        }
    }
    let (data, bytes, device) = (v.data, v.bytes, v.device);
    // SAFETY: the validated descriptor of `handle` describes `[data, data + bytes)` on
    // `device`, which its producer keeps alive until the deleter runs, i.e. until the storage
    // (which now owns `handle`) drops.
    let storage = unsafe { Storage::foreign(handle, data, bytes, device) };
    Tensor::from_storage(
        Arc::new(storage),
        0,
        &v.shape,
        v.strides.as_deref(),
        v.dtype,
        v.device,
        v.flags,
    )
    // `validate` ran every check `from_storage` repeats, on the same values, and the storage is
    // exactly `bytes` long at offset 0.
    .expect("a validated descriptor fits its own storage")
}

//! Export: [`Tensor`] → DLPack managed tensor, and [`ExportedTensor`], the owning handle to one.
//!
//! # What an export looks like
//!
//! One heap block holds the managed struct (legacy `DLManagedTensor` or
//! `DLManagedTensorVersioned`, first, so its address is the block's), the shape and strides
//! arrays, and a clone of the [`Tensor`], which keeps the storage alive. `manager_ctx` points
//! at the block. The deleter frees the block, dropping the tensor clone; it is safe from any
//! thread (it only drops `Send + Sync` values) and must be called once, as DLPack requires.
//!
//! Every export fills `strides` (required since DLPack 1.2 when `ndim != 0`), sets
//! `byte_offset = 0`, and sets `data = NULL` for zero-byte tensors (as `dlpack.h` asks).
//! Versioned exports carry version 1.3 and the flags `READ_ONLY` (a read-only tensor) and
//! `IS_COPIED` (a copy was made for this export).
//!
//! # Options
//!
//! - `copy: Some(true)`: always export a fresh copy, flagged `IS_COPIED`: in ordinary host
//!   memory (`cpu`) for host tensors, on the same GPU for device tensors, or on `device` when
//!   the consumer names one (pinned memory for `cuda_host`).
//! - `copy: Some(false)`: never copy; fail with `ERR_COPY_REQUIRED` when the export needs one.
//! - `copy: None`: copy only when needed. A move to another device (the consumer asked for
//!   one) is copied, as the array API allows; a read-only tensor as a legacy capsule is not
//!   (see below), since a silent copy of a big tensor is a surprise there.
//! - `device`: the device the consumer wants. The tensor's own device, or `cpu` for a tensor
//!   in pinned host memory (`cuda_host`, `rocm_host` are CPU memory: relabelled, not copied),
//!   works without a copy. Any other device needs a copy between host memory and CUDA
//!   ([`Tensor::to_device`]): `ERR_COPY_REQUIRED` with `copy: Some(false)`,
//!   `ERR_CUDA_UNAVAILABLE` without CUDA, `ERR_DEVICE_UNSUPPORTED` for other device types.
//!
//! A read-only tensor can't be exported as a legacy capsule without a copy, because the
//! legacy struct has no flags to say so and a consumer could write into it (NumPy refuses the
//! same export). With `copy: Some(true)` it works; otherwise `ERR_COPY_REQUIRED` tells the
//! caller to ask for a versioned export or a copy.
//!
//! # Streams
//!
//! [`Tensor::to_dlpack_with_stream`] takes the consumer's stream as the array API defines it
//! ([`ConsumerStream`]). For a CUDA result the producer (tensorbridge) records an event on its
//! own stream and makes the consumer's stream wait on it (nothing for `NoSync`, and nothing
//! when tensorbridge's stream on that GPU has no pending work or was never made);
//! [`Tensor::to_dlpack`] does the same for the legacy
//! default stream (`stream=None`). Host results accept only `Default` and `NoSync`
//! (`ERR_INVALID_ARGUMENT` otherwise, as `stream` means nothing to a CPU consumer). Tensors on
//! other device types (ROCm, …) are re-exported as metadata; their stream is not used.

use std::ffi::c_void;
use std::fmt;
use std::ptr::{self, NonNull};

use crate::cuda::ConsumerStream;
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ffi::{
    DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
    DLPACK_FLAG_BITMASK_IS_COPIED, DLPACK_FLAG_BITMASK_READ_ONLY,
};
use crate::stats;
use crate::tensor::Tensor;

/// How to export a tensor (the Python array API's `__dlpack__` arguments, minus `stream`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExportOptions {
    /// `true`: a `DLManagedTensorVersioned` (DLPack ≥ 1.0, with flags); `false` (default): a
    /// legacy `DLManagedTensor`, for consumers that only know DLPack 0.x.
    pub versioned: bool,
    /// `Some(true)`: always copy; `Some(false)`: never copy; `None` (default): no copy unless
    /// one is needed, and then an error (see the [module docs](self)).
    pub copy: Option<bool>,
    /// The device the consumer wants; `None` (default) keeps the tensor's.
    pub device: Option<Device>,
}

impl ExportOptions {
    /// Default options with `versioned: true`.
    pub fn versioned() -> ExportOptions {
        ExportOptions { versioned: true, ..ExportOptions::default() }
    }
}

/// Pointer to a managed struct, with the ABI it follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Managed {
    Legacy(NonNull<DLManagedTensor>),
    Versioned(NonNull<DLManagedTensorVersioned>),
}

impl Managed {
    fn as_ptr(self) -> *mut c_void {
        match self {
            Managed::Legacy(p) => p.as_ptr().cast(),
            Managed::Versioned(p) => p.as_ptr().cast(),
        }
    }
}

/// An owning handle to one DLPack managed tensor, legacy or versioned, produced here or
/// received from anyone. Dropping it calls the deleter exactly once (nothing if the deleter is
/// NULL); [`into_raw`](ExportedTensor::into_raw) gives ownership away instead. `Send`.
pub struct ExportedTensor {
    managed: Managed,
}

// SAFETY: the handle owns the managed tensor exclusively. DLPack allows the deleter to run on
// any thread, and this crate's own deleter only drops `Send + Sync` values. Reading the
// descriptor on another thread is fine because the producer keeps it immutable while it is
// owned by a consumer.
unsafe impl Send for ExportedTensor {}

impl ExportedTensor {
    /// Whether this is a `DLManagedTensorVersioned` (else a legacy `DLManagedTensor`).
    pub fn is_versioned(&self) -> bool {
        matches!(self.managed, Managed::Versioned(_))
    }

    /// The managed struct's address; the handle still owns it.
    pub fn as_ptr(&self) -> *mut c_void {
        self.managed.as_ptr()
    }

    /// Gives up ownership and returns the managed struct's address: the deleter is not called,
    /// and whoever receives the pointer must call it (once).
    pub fn into_raw(self) -> *mut c_void {
        let ptr = self.managed.as_ptr();
        std::mem::forget(self);
        ptr
    }

    /// Takes ownership of a managed tensor. Nothing is read yet: the descriptor and version
    /// are validated by [`into_tensor`](ExportedTensor::into_tensor).
    ///
    /// # Safety
    ///
    /// `ptr` must be NULL or point to a `DLManagedTensorVersioned` (`versioned`) or a
    /// `DLManagedTensor` (`!versioned`) that nobody else owns or will delete, valid until its
    /// deleter runs, with a deleter (if non-NULL) that may be called once from any thread. For
    /// a versioned tensor of another major version, only `version` and `deleter` need be valid.
    ///
    /// # Errors
    ///
    /// `ERR_DLPACK_NULL` for a NULL pointer; `ERR_DLPACK_INVALID` for a pointer not aligned to
    /// 8 bytes. In both cases nothing was taken.
    pub unsafe fn from_raw(ptr: *mut c_void, versioned: bool) -> Result<ExportedTensor> {
        let Some(nn) = NonNull::new(ptr) else {
            return Err(Error::Null { what: "managed tensor pointer" });
        };
        if (ptr as usize) % std::mem::align_of::<DLManagedTensor>() != 0 {
            return Err(Error::invalid(format!(
                "managed tensor pointer {ptr:p} is not 8-byte aligned, so it can't point to a \
                 DLPack struct; pass the address the producer returned"
            )));
        }
        let managed =
            if versioned { Managed::Versioned(nn.cast()) } else { Managed::Legacy(nn.cast()) };
        Ok(ExportedTensor { managed })
    }

    /// Imports the tensor: validates the descriptor and, on success, returns a [`Tensor`] over
    /// the same memory (no copy) that owns the managed tensor.
    ///
    /// # Errors
    ///
    /// An [`ImportError`] with the [`Error`] and, for every failure but one, this handle back
    /// (it still owns the managed tensor, which is not modified). The exception is a
    /// versioned tensor with another major version: its deleter has been called, as DLPack
    /// requires, and `handle` is `None`. See [`crate::import`] for the list of checks.
    pub fn into_tensor(self) -> std::result::Result<Tensor, ImportError> {
        crate::import::import(self)
    }

    pub(crate) fn managed(&self) -> Managed {
        self.managed
    }
}

impl Drop for ExportedTensor {
    fn drop(&mut self) {
        // SAFETY: the handle owns the managed tensor and this is the one place it is released
        // (`into_raw` forgets the handle). Only the `deleter` field is read, which DLPack keeps
        // at the same offset in every major version.
        unsafe { call_deleter(self.managed) };
    }
}

/// Calls the managed tensor's deleter, if it has one.
///
/// # Safety
///
/// `managed` must be owned by the caller, not yet deleted, and is invalid afterwards.
unsafe fn call_deleter(managed: Managed) {
    match managed {
        Managed::Legacy(p) => {
            // SAFETY: `p` points to a live `DLManagedTensor` (caller's contract); the field is
            // read through a raw place without creating a reference to the whole struct.
            let deleter = unsafe { ptr::addr_of!((*p.as_ptr()).deleter).read() };
            if let Some(deleter) = deleter {
                stats::foreign_deleter_called();
                // SAFETY: DLPack's contract: the owner calls the deleter once with the struct.
                unsafe { deleter(p.as_ptr()) };
            }
        }
        Managed::Versioned(p) => {
            // SAFETY: as above; `deleter` sits at offset 16 in every major version.
            let deleter = unsafe { ptr::addr_of!((*p.as_ptr()).deleter).read() };
            if let Some(deleter) = deleter {
                stats::foreign_deleter_called();
                // SAFETY: as above.
                unsafe { deleter(p.as_ptr()) };
            }
        }
    }
}

impl fmt::Debug for ExportedTensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ExportedTensor")
            .field("ptr", &self.as_ptr())
            .field("versioned", &self.is_versioned())
            .finish()
    }
}

/// A failed import: the error, and the handle when the caller still owns the tensor.
///
/// Converting it into an [`Error`] (`?` does this) drops the handle, which calls the deleter:
/// the tensor is released rather than leaked. Use [`ImportError::into_parts`] to keep it.
#[derive(Debug)]
pub struct ImportError {
    /// What failed.
    pub error: Error,
    /// The still-owned managed tensor; `None` only after a major-version mismatch, when the
    /// deleter has already been called.
    pub handle: Option<ExportedTensor>,
}

impl ImportError {
    /// The error and the handle, separately.
    pub fn into_parts(self) -> (Error, Option<ExportedTensor>) {
        (self.error, self.handle)
    }

    /// The stable code of the error.
    pub fn code(&self) -> &'static str {
        self.error.code()
    }
}

impl fmt::Display for ImportError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for ImportError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.error)
    }
}

impl From<ImportError> for Error {
    fn from(e: ImportError) -> Error {
        e.error
    }
}

/// The heap block behind one export. `#[repr(C)]` with the managed struct first, so a pointer
/// to the struct is a pointer to the block.
#[repr(C)]
struct ExportBlock<M> {
    managed: M,
    /// `shape` then `strides`, `ndim` each; the descriptor points into it.
    dims: Box<[i64]>,
    /// Keeps the storage alive until the deleter runs.
    tensor: Tensor,
}

/// The fields of a managed struct that `leak` fills in.
trait ManagedStruct {
    fn parts(&mut self) -> (&mut DLTensor, &mut *mut c_void);
}

impl ManagedStruct for DLManagedTensor {
    fn parts(&mut self) -> (&mut DLTensor, &mut *mut c_void) {
        (&mut self.dl_tensor, &mut self.manager_ctx)
    }
}

impl ManagedStruct for DLManagedTensorVersioned {
    fn parts(&mut self) -> (&mut DLTensor, &mut *mut c_void) {
        (&mut self.dl_tensor, &mut self.manager_ctx)
    }
}

/// Moves the block to the heap for good, points the descriptor's `shape`/`strides` into its
/// `dims` and `manager_ctx` at the block, and returns the managed struct's address (the
/// block's). Only the deleter frees it.
fn leak<M: ManagedStruct>(block: ExportBlock<M>) -> NonNull<M> {
    let raw = Box::into_raw(Box::new(block));
    // SAFETY: `raw` is a fresh, valid, unaliased allocation; this reference is the only one
    // and ends before the pointer is returned. The pointers into `dims` are taken after the
    // block (and its `dims` box) reached their final place, so no later move invalidates them.
    let block = unsafe { &mut *raw };
    let ndim = block.dims.len() / 2;
    let (shape, strides) = if ndim == 0 {
        (ptr::null_mut(), ptr::null_mut())
    } else {
        let base = block.dims.as_mut_ptr();
        (base, base.wrapping_add(ndim))
    };
    let (dl_tensor, manager_ctx) = block.managed.parts();
    dl_tensor.shape = shape;
    dl_tensor.strides = strides;
    *manager_ctx = raw.cast();
    // SAFETY: `Box::into_raw` never returns NULL, and `managed` is the first field of the
    // `#[repr(C)]` block, so the block's address is the struct's.
    unsafe { NonNull::new_unchecked(raw.cast()) }
}

unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: our legacy exports are `Box<ExportBlock<DLManagedTensor>>` leaked as a pointer
    // to their first field; DLPack's contract makes this the one call with that pointer.
    drop(unsafe { Box::from_raw(managed.cast::<ExportBlock<DLManagedTensor>>()) });
    stats::export_deleted();
}

unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: as in `delete_legacy`, for `ExportBlock<DLManagedTensorVersioned>`.
    drop(unsafe { Box::from_raw(managed.cast::<ExportBlock<DLManagedTensorVersioned>>()) });
    stats::export_deleted();
}

/// If `managed` is one of our own exports, the tensor it keeps alive.
///
/// Recognised by its deleter's address. A false negative (the same function at two addresses)
/// only costs the generic path; a false positive would need another function at our address,
/// which would then be identical code.
///
/// # Safety
///
/// `managed` must be a live managed tensor of the ABI it claims, and the returned reference is
/// valid only until its deleter runs.
pub(crate) unsafe fn own_export<'a>(managed: Managed) -> Option<&'a Tensor> {
    match managed {
        Managed::Legacy(p) => {
            // SAFETY: `p` is a live `DLManagedTensor` (caller's contract).
            let deleter = unsafe { (*p.as_ptr()).deleter }?;
            let ours: unsafe extern "C" fn(*mut DLManagedTensor) = delete_legacy;
            if !ptr::fn_addr_eq(deleter, ours) {
                return None;
            }
            // SAFETY: only our exports use `delete_legacy`, and they are `ExportBlock`s.
            Some(unsafe { &(*p.as_ptr().cast::<ExportBlock<DLManagedTensor>>()).tensor })
        }
        Managed::Versioned(p) => {
            // SAFETY: `p` is a live `DLManagedTensorVersioned` (caller's contract).
            let deleter = unsafe { (*p.as_ptr()).deleter }?;
            let ours: unsafe extern "C" fn(*mut DLManagedTensorVersioned) = delete_versioned;
            if !ptr::fn_addr_eq(deleter, ours) {
                return None;
            }
            // SAFETY: only our exports use `delete_versioned`, and they are `ExportBlock`s.
            Some(unsafe { &(*p.as_ptr().cast::<ExportBlock<DLManagedTensorVersioned>>()).tensor })
        }
    }
}

/// The first half of an export: every check, copy and stream ordering of
/// [`Tensor::to_dlpack_with_stream`] is done, but the managed struct is not built yet.
///
/// An export that stays inside the process (a JS `toDlpack()` consumed by `fromDlpack()`, a
/// Rust hand-off) never needs the C struct: [`into_tensor`](PreparedExport::into_tensor) gives
/// exactly the tensor that importing the struct would give (same memory, device label and
/// flags), for the cost of a reference count, while
/// [`into_dlpack`](PreparedExport::into_dlpack) builds the struct when a native consumer asks
/// for an address. Either way the result is what [`Tensor::to_dlpack_with_stream`] followed by
/// an import would produce; a test holds the two paths equal.
#[derive(Debug, Clone)]
pub struct PreparedExport {
    /// The tensor as its consumer will see it: the copy if one was made, relabelled `cpu` for
    /// pinned memory asked for as `cpu`, with the flags an import of the struct would carry.
    view: Tensor,
    versioned: bool,
    /// A copy was made for this export (the versioned struct's `IS_COPIED`).
    is_copied: bool,
}

impl PreparedExport {
    /// The tensor the consumer gets, still owned by the export.
    pub fn tensor(&self) -> &Tensor {
        &self.view
    }

    /// Whether a copy was made for this export (the versioned struct says `IS_COPIED`).
    pub fn is_copied(&self) -> bool {
        self.is_copied
    }

    /// Whether [`into_dlpack`](PreparedExport::into_dlpack) builds a `DLManagedTensorVersioned`.
    pub fn is_versioned(&self) -> bool {
        self.versioned
    }

    /// Consumes the export in-process: the tensor an import of the managed struct would give,
    /// without building the struct.
    pub fn into_tensor(self) -> Tensor {
        self.view
    }

    /// Builds the managed struct (legacy or versioned, as asked) for a native consumer.
    pub fn into_dlpack(self) -> ExportedTensor {
        let PreparedExport { view: tensor, versioned, is_copied } = self;
        let ndim = tensor.ndim();
        let dims: Box<[i64]> = tensor.shape().iter().chain(tensor.strides()).copied().collect();
        let data = if tensor.byte_len() == 0 {
            ptr::null_mut()
        } else {
            tensor.data_ptr().cast::<c_void>()
        };
        let dl_tensor = DLTensor {
            data,
            device: tensor.device().to_dlpack(),
            ndim: i32::try_from(ndim).expect("ndim is at most MAX_NDIM"),
            // `prepare` checked that the dtype has a DLPack form.
            dtype: tensor.dtype().to_dlpack().expect("checked by prepare"),
            shape: ptr::null_mut(), // set by `leak`, once the block is in place
            strides: ptr::null_mut(), // likewise
            byte_offset: 0,
        };
        let managed = if versioned {
            let mut flags = 0;
            if tensor.is_read_only() {
                flags |= DLPACK_FLAG_BITMASK_READ_ONLY;
            }
            if is_copied {
                flags |= DLPACK_FLAG_BITMASK_IS_COPIED;
            }
            let managed = DLManagedTensorVersioned {
                version: DLPackVersion::CURRENT,
                manager_ctx: ptr::null_mut(),
                deleter: Some(delete_versioned),
                flags,
                dl_tensor,
            };
            Managed::Versioned(leak(ExportBlock { managed, dims, tensor }))
        } else {
            let managed = DLManagedTensor {
                dl_tensor,
                manager_ctx: ptr::null_mut(),
                deleter: Some(delete_legacy),
            };
            Managed::Legacy(leak(ExportBlock { managed, dims, tensor }))
        };
        stats::export_created();
        ExportedTensor { managed }
    }
}

/// `Tensor::prepare_export`: the checks, the copy if one is needed or asked for, and the
/// consumer's stream ordering.
pub(crate) fn prepare(
    tensor: &Tensor,
    options: &ExportOptions,
    stream: ConsumerStream,
) -> Result<PreparedExport> {
    tensor.dtype().to_dlpack()?;
    let source = tensor.device();
    let target = options.device.unwrap_or(source);
    if !target.is_known() {
        return Err(crate::tensor::unknown_device(target));
    }
    let relabel_host = target == Device::CPU && source.is_cpu();
    let same_place = target == source || relabel_host;
    if !same_place && options.copy == Some(false) {
        return Err(Error::CopyRequired {
            reason: format!(
                "the tensor is on {source} and the consumer asked for {target}, which needs \
                 a device copy; allow one with copy: true (or leave copy unset)"
            ),
        });
    }
    let read_only_legacy = tensor.is_read_only() && !options.versioned;
    if same_place && read_only_legacy && options.copy != Some(true) {
        return Err(Error::CopyRequired {
            reason: "the tensor is read-only and a legacy DLPack capsule can't say so, so \
                     a consumer could write into it; ask for a versioned export \
                     (max_version >= 1.0) or allow a copy with copy: true"
                .into(),
        });
    }
    let copy_to = if !same_place || options.copy == Some(true) {
        // A copy lives where the consumer asked, else in ordinary host memory for host
        // tensors (pinned ones included) and on the same GPU for device tensors.
        Some(options.device.unwrap_or(if source.is_cpu() { Device::CPU } else { source }))
    } else {
        None
    };
    // The device the consumer will see (a pinned tensor may be relabelled `cpu`).
    let device = copy_to.unwrap_or(target);
    if device.is_cpu() && !stream.is_host_compatible() {
        return Err(Error::invalid_argument(format!(
            "stream {stream} was given for a tensor on {device}; a host consumer passes no \
             stream (None) or -1"
        )));
    }
    let is_copied = copy_to.is_some();
    let exported = match copy_to {
        Some(device) => tensor.to_device(device)?,
        None => tensor.clone(),
    };
    // Order the consumer's stream after ours (pending zero fills, and foreign producers'
    // work that our stream was made to wait for on import).
    crate::cuda::order_for_consumer(device, stream)?;
    // What an import of the struct carries: the legacy struct has no flags, so only the
    // versioned one says IS_COPIED; READ_ONLY comes from the exported tensor either way.
    let view = exported.exported_view(device, options.versioned && is_copied);
    Ok(PreparedExport { view, versioned: options.versioned, is_copied })
}

/// `Tensor::to_dlpack` and `Tensor::to_dlpack_with_stream`.
pub(crate) fn export(
    tensor: &Tensor,
    options: &ExportOptions,
    stream: ConsumerStream,
) -> Result<ExportedTensor> {
    Ok(prepare(tensor, options, stream)?.into_dlpack())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DataType;
    use crate::ffi::DLDeviceType;

    fn assert_send<T: Send>() {}

    #[test]
    fn exported_tensor_is_send() {
        assert_send::<ExportedTensor>();
    }

    fn legacy_view(e: &ExportedTensor) -> DLManagedTensor {
        assert!(!e.is_versioned());
        // SAFETY: `e` owns a live legacy managed tensor of ours.
        unsafe { *e.as_ptr().cast::<DLManagedTensor>() }
    }

    fn versioned_view(e: &ExportedTensor) -> DLManagedTensorVersioned {
        assert!(e.is_versioned());
        // SAFETY: `e` owns a live versioned managed tensor of ours.
        unsafe { *e.as_ptr().cast::<DLManagedTensorVersioned>() }
    }

    #[test]
    fn legacy_export_fills_strides_and_zero_offset() {
        let t = Tensor::zeros(&[2, 3], DataType::I16).unwrap();
        let e = t.to_dlpack(&ExportOptions::default()).unwrap();
        let m = legacy_view(&e);
        let dl = m.dl_tensor;
        assert_eq!(dl.data.cast::<u8>(), t.data_ptr());
        assert_eq!(dl.ndim, 2);
        assert_eq!(dl.byte_offset, 0);
        // SAFETY: the export keeps its shape/strides arrays alive while `e` lives.
        let (shape, strides) = unsafe {
            (std::slice::from_raw_parts(dl.shape, 2), std::slice::from_raw_parts(dl.strides, 2))
        };
        assert_eq!((shape, strides), (&[2_i64, 3][..], &[3_i64, 1][..]));
        assert_eq!(m.manager_ctx, e.as_ptr());
        assert!(m.deleter.is_some());
    }

    #[test]
    fn versioned_export_carries_version_and_read_only_flag() {
        let mut buf = [0_u8; 4];
        // SAFETY: `buf` outlives the tensor and the export, both dropped in this test.
        let t = unsafe {
            Tensor::from_borrowed(
                buf.as_mut_ptr(),
                4,
                &[4],
                DataType::U8,
                Device::CPU,
                true,
                Box::new(()),
            )
        }
        .unwrap();
        let e = t.to_dlpack(&ExportOptions::versioned()).unwrap();
        let m = versioned_view(&e);
        assert_eq!(m.version, DLPackVersion { major: 1, minor: 3 });
        assert_eq!(m.flags, DLPACK_FLAG_BITMASK_READ_ONLY);
        drop(e);
        drop(t);
    }

    #[test]
    fn copy_true_makes_a_flagged_writable_copy() {
        let t = Tensor::from_vec(vec![1, 2], &[2], DataType::U8).unwrap();
        let opts = ExportOptions { versioned: true, copy: Some(true), device: None };
        let e = t.to_dlpack(&opts).unwrap();
        let m = versioned_view(&e);
        assert_eq!(m.flags, DLPACK_FLAG_BITMASK_IS_COPIED);
        assert_ne!(m.dl_tensor.data.cast::<u8>(), t.data_ptr());
    }

    #[test]
    fn zero_byte_and_zero_d_exports_use_null_pointers_where_dlpack_allows() {
        let t = Tensor::zeros(&[0, 4], DataType::F32).unwrap();
        let e = t.to_dlpack(&ExportOptions::default()).unwrap();
        assert!(legacy_view(&e).dl_tensor.data.is_null());
        let t = Tensor::zeros(&[], DataType::F32).unwrap();
        let e = t.to_dlpack(&ExportOptions::default()).unwrap();
        let dl = legacy_view(&e).dl_tensor;
        assert_eq!(dl.ndim, 0);
        assert!(dl.shape.is_null() && dl.strides.is_null() && !dl.data.is_null());
    }

    /// The code a device copy gets here: it works with CUDA, and is refused without it.
    fn device_copy_code() -> &'static str {
        if crate::cuda::is_available() {
            "ok"
        } else {
            "ERR_CUDA_UNAVAILABLE"
        }
    }

    fn code(r: Result<ExportedTensor>) -> &'static str {
        r.map_or_else(|e| e.code(), |_| "ok")
    }

    #[test]
    fn a_device_move_is_copy_required_with_copy_false_and_a_cuda_copy_otherwise() {
        let t = Tensor::zeros(&[1], DataType::U8).unwrap();
        let mut opts =
            ExportOptions { versioned: true, copy: Some(false), device: Some(Device::cuda(0)) };
        assert_eq!(code(t.to_dlpack(&opts)), "ERR_COPY_REQUIRED");
        opts.copy = None;
        assert_eq!(code(t.to_dlpack(&opts)), device_copy_code());
        opts.copy = Some(true);
        assert_eq!(code(t.to_dlpack(&opts)), device_copy_code());
        opts.device = Some(Device::new(DLDeviceType::ROCM, 0));
        assert_eq!(code(t.to_dlpack(&opts)), "ERR_DEVICE_UNSUPPORTED");
        opts.device = Some(Device::new(DLDeviceType(99), 0));
        assert_eq!(code(t.to_dlpack(&opts)), "ERR_DEVICE_UNSUPPORTED");
    }

    #[test]
    fn host_results_take_no_cuda_stream() {
        let t = Tensor::zeros(&[1], DataType::U8).unwrap();
        let opts = ExportOptions::default();
        for stream in [ConsumerStream::Default, ConsumerStream::NoSync] {
            assert_eq!(code(t.to_dlpack_with_stream(&opts, stream)), "ok");
        }
        for stream in
            [ConsumerStream::Legacy, ConsumerStream::PerThread, ConsumerStream::Handle(0x1000)]
        {
            let err = t.to_dlpack_with_stream(&opts, stream).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_ARGUMENT");
            assert!(err.to_string().contains("host consumer"), "{err}");
        }
    }

    #[test]
    fn pinned_host_memory_exports_as_cpu_without_a_copy() {
        let mut buf = [0_u8; 4];
        // SAFETY: `buf` outlives the tensor and the export; cuda_host memory is host memory.
        let t = unsafe {
            Tensor::from_borrowed(
                buf.as_mut_ptr(),
                4,
                &[4],
                DataType::U8,
                Device::new(DLDeviceType::CUDAHOST, 0),
                false,
                Box::new(()),
            )
        }
        .unwrap();
        let opts = ExportOptions {
            device: Some(Device::CPU),
            copy: Some(false),
            ..ExportOptions::default()
        };
        let e = t.to_dlpack(&opts).unwrap();
        let dl = legacy_view(&e).dl_tensor;
        assert_eq!(dl.device.device_type, DLDeviceType::CPU);
        assert_eq!(dl.data.cast::<u8>(), buf.as_mut_ptr());
        drop(e);
        drop(t);
    }

    #[test]
    fn copies_of_pinned_tensors_are_labelled_cpu_and_device_copies_need_cuda() {
        let mut buf = [7_u8; 4];
        let pinned = Device::new(DLDeviceType::CUDAHOST, 0);
        // SAFETY: `buf` outlives the tensor and the export; cuda_host memory is host memory.
        let t = unsafe {
            Tensor::from_borrowed(
                buf.as_mut_ptr(),
                4,
                &[4],
                DataType::U8,
                pinned,
                false,
                Box::new(()),
            )
        }
        .unwrap();
        let mut opts = ExportOptions { copy: Some(true), ..ExportOptions::default() };
        let e = t.to_dlpack(&opts).unwrap();
        assert_eq!(legacy_view(&e).dl_tensor.device.device_type, DLDeviceType::CPU);
        // A copy into pinned memory needs the driver.
        opts.device = Some(pinned);
        assert_eq!(code(t.to_dlpack(&opts)), device_copy_code());
        drop((e, t));

        // SAFETY: the pointer is never dereferenced: cuda memory is never read on the host.
        let t = unsafe {
            Tensor::from_borrowed(
                buf.as_mut_ptr(),
                4,
                &[4],
                DataType::U8,
                Device::cuda(0),
                false,
                Box::new(()),
            )
        }
        .unwrap();
        if !crate::cuda::is_available() {
            let opts = ExportOptions { copy: Some(true), ..ExportOptions::default() };
            assert_eq!(t.to_dlpack(&opts).unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
        }
        // Re-exporting without a copy needs no driver: tensorbridge never used this GPU, so
        // none of its work can be pending.
        assert!(t.to_dlpack(&ExportOptions::default()).is_ok(), "metadata-only re-export");
    }

    #[test]
    fn read_only_tensors_need_a_copy_for_a_legacy_export() {
        let t = Tensor::from_vec(vec![1], &[1], DataType::U8).unwrap();
        let ro = unsafe_read_only(&t);
        let err = ro.to_dlpack(&ExportOptions::default()).unwrap_err();
        assert_eq!(err.code(), "ERR_COPY_REQUIRED");
        assert!(err.to_string().contains("versioned"), "{err}");
        let opts = ExportOptions { copy: Some(true), ..ExportOptions::default() };
        ro.to_dlpack(&opts).unwrap();
        ro.to_dlpack(&ExportOptions::versioned()).unwrap();
    }

    /// A read-only tensor over `t`'s bytes (kept alive by a clone of `t`).
    fn unsafe_read_only(t: &Tensor) -> Tensor {
        // SAFETY: the keep-alive clone keeps the bytes alive as long as the new tensor.
        unsafe {
            Tensor::from_borrowed(
                t.data_ptr(),
                t.byte_len(),
                t.shape(),
                t.dtype(),
                t.device(),
                true,
                Box::new(t.clone()),
            )
        }
        .unwrap()
    }

    #[test]
    fn bytes_tensors_cannot_be_built_so_export_needs_no_check_beyond_dtype() {
        assert_eq!(DataType::Bytes.to_dlpack().unwrap_err().code(), "ERR_DTYPE_UNSUPPORTED");
    }

    #[test]
    fn from_raw_refuses_null_and_misaligned_pointers() {
        // SAFETY: NULL is refused before anything is read.
        let err = unsafe { ExportedTensor::from_raw(ptr::null_mut(), true) }.unwrap_err();
        assert_eq!(err.code(), "ERR_DLPACK_NULL");
        // SAFETY: a misaligned pointer is refused before anything is read.
        let err = unsafe { ExportedTensor::from_raw(4usize as *mut c_void, false) }.unwrap_err();
        assert_eq!(err.code(), "ERR_DLPACK_INVALID");
    }

    #[test]
    fn our_exports_are_recognised_and_others_are_not() {
        let t = Tensor::zeros(&[3], DataType::U8).unwrap();
        for versioned in [false, true] {
            let e = t.to_dlpack(&ExportOptions { versioned, ..ExportOptions::default() }).unwrap();
            // SAFETY: `e` is a live export of ours.
            let inner = unsafe { own_export(e.managed()) }.unwrap();
            assert_eq!(inner.data_ptr(), t.data_ptr());
        }
        let mut fake = DLManagedTensor {
            dl_tensor: legacy_view(&t.to_dlpack(&ExportOptions::default()).unwrap()).dl_tensor,
            manager_ctx: ptr::null_mut(),
            deleter: None,
        };
        let managed = Managed::Legacy(NonNull::from(&mut fake));
        // SAFETY: `fake` is a live legacy struct with a NULL deleter.
        assert!(unsafe { own_export(managed) }.is_none());
    }

    /// Everything a consumer can observe of an imported tensor.
    #[derive(Debug, PartialEq)]
    struct Observed {
        shape: Vec<i64>,
        strides: Vec<i64>,
        dtype: DataType,
        device: Device,
        read_only: bool,
        copied: bool,
        bytes: Vec<u8>,
    }

    fn observed(t: &Tensor) -> Observed {
        Observed {
            shape: t.shape().to_vec(),
            strides: t.strides().to_vec(),
            dtype: t.dtype(),
            device: t.device(),
            read_only: t.is_read_only(),
            copied: t.is_copied(),
            bytes: t.as_bytes().unwrap().to_vec(),
        }
    }

    #[test]
    fn prepared_exports_consumed_in_process_equal_imports_of_the_struct() {
        let mut ro = [1_u8, 2, 3, 4, 5, 6, 7, 8];
        // SAFETY: `ro` outlives every tensor, export and import made in this test.
        let read_only = unsafe {
            Tensor::from_borrowed(
                ro.as_mut_ptr(),
                8,
                &[2, 2],
                DataType::I16,
                Device::CPU,
                true,
                Box::new(()),
            )
        }
        .unwrap();
        let plain = Tensor::zeros(&[2, 3], DataType::F32).unwrap();
        let tensors = [
            plain.clone(),
            plain.deep_copy().unwrap(), // carries `copied`
            read_only,
            Tensor::zeros(&[], DataType::I64).unwrap(),
            Tensor::zeros(&[0, 4], DataType::BF16).unwrap(),
            Tensor::zeros(&[3], DataType::Bool).unwrap(),
        ];
        let mut compared = 0;
        for t in &tensors {
            for versioned in [false, true] {
                for copy in [None, Some(false), Some(true)] {
                    for device in [None, Some(Device::CPU)] {
                        let options = ExportOptions { versioned, copy, device };
                        let direct = t.prepare_export(&options, ConsumerStream::Default);
                        let via_struct = t
                            .prepare_export(&options, ConsumerStream::Default)
                            .map(|p| p.into_dlpack().into_tensor().unwrap());
                        match (direct, via_struct) {
                            (Ok(direct), Ok(via_struct)) => {
                                assert_eq!(direct.is_versioned(), versioned);
                                let direct = direct.into_tensor();
                                assert_eq!(observed(&direct), observed(&via_struct), "{options:?}");
                                if copy != Some(true) && t.byte_len() > 0 {
                                    assert_eq!(
                                        direct.data_ptr(),
                                        t.data_ptr(),
                                        "zero-copy {options:?}"
                                    );
                                    assert_eq!(via_struct.data_ptr(), t.data_ptr());
                                }
                                compared += 1;
                            }
                            (Err(a), Err(b)) => assert_eq!(a.code(), b.code()),
                            (a, b) => panic!("{options:?}: {a:?} vs {b:?}"),
                        }
                    }
                }
            }
        }
        // Read-only legacy exports without a copy are refused; everything else compared.
        assert_eq!(compared, tensors.len() * 12 - 4);
    }

    #[test]
    fn a_prepared_export_makes_no_struct_until_asked() {
        let t = Tensor::zeros(&[4], DataType::U8).unwrap();
        let before = crate::stats::snapshot().exports_created;
        let prepared =
            t.prepare_export(&ExportOptions::versioned(), ConsumerStream::Default).unwrap();
        assert_eq!(prepared.tensor().data_ptr(), t.data_ptr());
        assert!(prepared.tensor().is_same(&t), "a plain export is the tensor itself");
        drop(prepared.into_tensor());
        let copied = t
            .prepare_export(
                &ExportOptions { copy: Some(true), ..ExportOptions::versioned() },
                ConsumerStream::Default,
            )
            .unwrap();
        assert!(!copied.tensor().is_same(&t));
        assert!(!t.deep_copy().unwrap().is_same(&t));
        // Other tests run in parallel and export too, so only "not fewer" is exact here; the
        // struct-building half is counted by `into_dlpack`.
        let exported = t
            .prepare_export(&ExportOptions::default(), ConsumerStream::Default)
            .unwrap()
            .into_dlpack();
        assert!(crate::stats::snapshot().exports_created > before);
        drop(exported);
    }
}

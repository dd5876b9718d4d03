//! [`Tensor`]: a dense, C-contiguous, immutable-shape view over shared
//! [`Storage`](crate::storage::Storage).
//!
//! Every tensor here is C-contiguous; strides are kept (always filled, in elements) because
//! DLPack exports need them and zero-sized or size-1 axes may carry any stride. Only host
//! memory is read directly (`kDLCPU`, `kDLCUDAHost`, `kDLROCMHost`); any host access to other
//! memory fails with `ERR_NOT_CPU`. CUDA memory is allocated with [`Tensor::empty_on`] and
//! moved with [`Tensor::to_device`], [`Tensor::to_cpu`], [`Tensor::to_cuda`] and
//! [`Tensor::copy_to`] (see [`crate::cuda`]); tensors on other known devices (ROCm, …) can be
//! imported and re-exported as metadata plus foreign storage.

use std::fmt;
use std::ptr;
use std::sync::Arc;

use crate::cuda::{self, ConsumerStream};
use crate::device::Device;
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::export::{ExportOptions, ExportedTensor, PreparedExport};
use crate::ffi::DLDeviceType;
use crate::ffi::{DLManagedTensor, DLManagedTensorVersioned};
use crate::layout;
use crate::storage::{Storage, StorageKind};

/// A dense C-contiguous tensor. `Clone` is cheap (one `Arc` increment) and shares the bytes;
/// `Send + Sync`.
#[derive(Clone)]
pub struct Tensor {
    inner: Arc<Inner>,
}

struct Inner {
    storage: Arc<Storage>,
    /// Bytes from the storage's start to the first element.
    offset: usize,
    shape: Box<[i64]>,
    strides: Box<[i64]>,
    dtype: DataType,
    device: Device,
    element_count: usize,
    byte_len: usize,
    read_only: bool,
    copied: bool,
}

/// Flags a tensor carries besides its layout.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct TensorFlags {
    pub(crate) read_only: bool,
    pub(crate) copied: bool,
}

impl Tensor {
    /// Builds a tensor over `storage` at `offset`, checking that the C-contiguous extent of
    /// `shape` × `dtype` fits inside it.
    ///
    /// `strides` are a producer's (checked to be C order, then normalised) or `None`.
    pub(crate) fn from_storage(
        storage: Arc<Storage>,
        offset: usize,
        shape: &[i64],
        strides: Option<&[i64]>,
        dtype: DataType,
        device: Device,
        flags: TensorFlags,
    ) -> Result<Tensor> {
        layout::check_ndim_argument(shape.len())?;
        let byte_len = layout::byte_size(shape, dtype)?;
        let element_count = layout::element_count(shape)?;
        let fits = offset.checked_add(byte_len).is_some_and(|end| end <= storage.len());
        if !fits {
            return Err(Error::invalid(format!(
                "{byte_len} bytes at offset {offset} do not fit a storage of {} bytes",
                storage.len()
            )));
        }
        // Producer strides are checked, then replaced by the canonical ones: they can differ
        // only on size-0/size-1 axes, and exporting canonical strides keeps strict consumers
        // (PyTorch issue 56789) from tripping over a producer's arbitrary choice there.
        layout::check_c_contiguous(shape, strides)?;
        let strides = layout::compact_strides(shape)?.into_boxed_slice();
        Ok(Tensor {
            inner: Arc::new(Inner {
                storage,
                offset,
                shape: shape.into(),
                strides,
                dtype,
                device,
                element_count,
                byte_len,
                read_only: flags.read_only,
                copied: flags.copied,
            }),
        })
    }

    /// A new zero-filled host tensor (never uninitialised memory, so nothing stale can leak to
    /// JavaScript). Same as [`Tensor::zeros`].
    ///
    /// # Errors
    ///
    /// `ERR_INVALID_ARGUMENT` (more than [`layout::MAX_NDIM`] axes), `ERR_SHAPE_NEGATIVE`,
    /// `ERR_SHAPE_OVERFLOW`, `ERR_DTYPE_UNSUPPORTED` (`BYTES`), `ERR_ALLOCATION`.
    pub fn empty(shape: &[i64], dtype: DataType) -> Result<Tensor> {
        Self::zeros(shape, dtype)
    }

    /// A new zero-filled host tensor in an owned, 256-byte-aligned allocation.
    ///
    /// # Errors
    ///
    /// As [`Tensor::empty`].
    pub fn zeros(shape: &[i64], dtype: DataType) -> Result<Tensor> {
        layout::check_ndim_argument(shape.len())?;
        let bytes = layout::byte_size(shape, dtype)?;
        let storage = Storage::zeroed(bytes)?;
        Self::from_storage(
            Arc::new(storage),
            0,
            shape,
            None,
            dtype,
            Device::CPU,
            TensorFlags::default(),
        )
    }

    /// A new zero-filled tensor on `device`: host memory for `cpu` (as [`Tensor::zeros`]),
    /// device memory for `cuda:N`, page-locked host memory for `cuda_host` (host-readable, and
    /// the fastest source or destination of a device copy). Same as [`Tensor::zeros_on`]:
    /// memory is never handed out uninitialised.
    ///
    /// Device memory is zero-filled on tensorbridge's CUDA stream, so the fill is ordered
    /// before any copy or DLPack export of the tensor (see [`crate::cuda`]).
    ///
    /// # Errors
    ///
    /// As [`Tensor::empty`], plus `ERR_CUDA_UNAVAILABLE` (no CUDA on this machine),
    /// `ERR_DEVICE_UNSUPPORTED` (another device type, or an ordinal this machine lacks),
    /// `ERR_ALLOCATION` (out of device or pinned memory), `ERR_CUDA`.
    pub fn empty_on(shape: &[i64], dtype: DataType, device: Device) -> Result<Tensor> {
        Self::zeros_on(shape, dtype, device)
    }

    /// A new zero-filled tensor on `device`; see [`Tensor::empty_on`].
    ///
    /// # Errors
    ///
    /// As [`Tensor::empty_on`].
    pub fn zeros_on(shape: &[i64], dtype: DataType, device: Device) -> Result<Tensor> {
        if device == Device::CPU {
            return Self::zeros(shape, dtype);
        }
        Self::alloc_on(shape, dtype, device, true, TensorFlags::default())
    }

    /// A new tensor on `device`; when `zeroed` is false the caller writes every byte before the
    /// tensor is seen by anyone.
    fn alloc_on(
        shape: &[i64],
        dtype: DataType,
        device: Device,
        zeroed: bool,
        flags: TensorFlags,
    ) -> Result<Tensor> {
        layout::check_ndim_argument(shape.len())?;
        let bytes = layout::byte_size(shape, dtype)?;
        let storage = match device {
            Device::CPU if zeroed => Storage::zeroed(bytes)?,
            Device::CPU => Storage::for_overwrite(bytes)?,
            _ => cuda::alloc_storage(device, bytes, zeroed)?,
        };
        Self::from_storage(Arc::new(storage), 0, shape, None, dtype, device, flags)
    }

    /// A host tensor over `bytes` (native-endian elements, C order). The `Vec`'s buffer is
    /// used in place when it is aligned to the element size (always, with the system
    /// allocator); otherwise the bytes are copied once into an aligned allocation.
    ///
    /// # Errors
    ///
    /// `ERR_SHAPE_MISMATCH` when `bytes.len()` is not exactly shape × element size, plus the
    /// shape and dtype errors of [`Tensor::empty`].
    pub fn from_vec(bytes: Vec<u8>, shape: &[i64], dtype: DataType) -> Result<Tensor> {
        layout::check_ndim_argument(shape.len())?;
        let expected = layout::byte_size(shape, dtype)?;
        check_len(expected, bytes.len(), shape, dtype)?;
        let align = dtype.element_size().unwrap_or(1);
        let storage = if bytes.as_ptr() as usize % align == 0 {
            Storage::from_vec(bytes)
        } else {
            Storage::copy_of(&bytes)?
        };
        Self::from_storage(
            Arc::new(storage),
            0,
            shape,
            None,
            dtype,
            Device::CPU,
            TensorFlags::default(),
        )
    }

    /// A tensor over memory someone else owns, without copying. `keep_alive` is dropped when
    /// the last tensor (or export) using the memory is gone; on an error it is dropped before
    /// this returns.
    ///
    /// # Safety
    ///
    /// Until `keep_alive` is dropped, `[ptr, ptr + len)` must stay a live allocation on
    /// `device` that nobody frees; when `device.is_cpu()` it must be host memory the CPU can
    /// read (and write, unless `read_only`). Concurrent writes by others are allowed only
    /// while nobody reads the tensor. `ptr` may be NULL only when `len == 0`.
    ///
    /// # Errors
    ///
    /// `ERR_INVALID_ARGUMENT` for a NULL `ptr` with `len > 0`, `ERR_DEVICE_UNSUPPORTED` for a
    /// device type DLPack does not define, `ERR_SHAPE_MISMATCH` when `len` is not exactly
    /// shape × element size, plus the shape and dtype errors of [`Tensor::empty`].
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn from_borrowed(
        ptr: *mut u8,
        len: usize,
        shape: &[i64],
        dtype: DataType,
        device: Device,
        read_only: bool,
        keep_alive: Box<dyn Send + Sync>,
    ) -> Result<Tensor> {
        if ptr.is_null() && len > 0 {
            return Err(Error::invalid_argument(format!(
                "a NULL pointer can't hold {len} bytes; pass the buffer's address"
            )));
        }
        if !device.is_known() {
            return Err(unknown_device(device));
        }
        layout::check_ndim_argument(shape.len())?;
        let expected = layout::byte_size(shape, dtype)?;
        check_len(expected, len, shape, dtype)?;
        // SAFETY: the caller guarantees `[ptr, ptr + len)` stays live and unaliased-by-frees
        // on `device` until `keep_alive` drops, which is exactly `Storage::borrowed`'s
        // contract.
        let storage = unsafe { Storage::borrowed(ptr, len, device, keep_alive) };
        Self::from_storage(
            Arc::new(storage),
            0,
            shape,
            None,
            dtype,
            device,
            TensorFlags { read_only, copied: false },
        )
    }

    /// The element type.
    pub fn dtype(&self) -> DataType {
        self.inner.dtype
    }

    /// The device the data lives on.
    pub fn device(&self) -> Device {
        self.inner.device
    }

    /// The size of each axis.
    pub fn shape(&self) -> &[i64] {
        &self.inner.shape
    }

    /// The stride of each axis in elements: always the canonical C-order strides of the shape
    /// ([`layout::compact_strides`]), whatever equivalent strides a producer used.
    pub fn strides(&self) -> &[i64] {
        &self.inner.strides
    }

    /// The number of axes.
    pub fn ndim(&self) -> usize {
        self.inner.shape.len()
    }

    /// The number of elements (1 for a 0-d tensor).
    pub fn element_count(&self) -> usize {
        self.inner.element_count
    }

    /// The size of the data in bytes.
    pub fn byte_len(&self) -> usize {
        self.inner.byte_len
    }

    /// Address of the first element (any DLPack `byte_offset` already added). May be NULL or
    /// dangling for a zero-byte tensor; for a non-host device it is a device address. Data
    /// imported from a foreign producer is not guaranteed to be aligned to the element size.
    pub fn data_ptr(&self) -> *mut u8 {
        self.inner.storage.as_ptr().wrapping_add(self.inner.offset)
    }

    /// Whether writers must not modify the data (DLPack's `READ_ONLY` flag, or a read-only
    /// borrowed buffer).
    pub fn is_read_only(&self) -> bool {
        self.inner.read_only
    }

    /// Whether the data is a private copy (DLPack's `IS_COPIED` flag, or [`Tensor::deep_copy`]).
    pub fn is_copied(&self) -> bool {
        self.inner.copied
    }

    /// Who owns the bytes.
    pub fn storage_kind(&self) -> StorageKind {
        self.inner.storage.kind()
    }

    pub(crate) fn storage(&self) -> &Arc<Storage> {
        &self.inner.storage
    }

    /// The data as bytes (native-endian elements in C order).
    ///
    /// The slice aliases memory other owners may write (a JS `TypedArray` over the same
    /// tensor, the DLPack producer); don't hold it while they run.
    ///
    /// # Errors
    ///
    /// `ERR_NOT_CPU` when the tensor is not in host memory.
    pub fn as_bytes(&self) -> Result<&[u8]> {
        self.require_host("reading the bytes")?;
        if self.byte_len() == 0 {
            return Ok(&[]);
        }
        // SAFETY: the storage (kept alive by `self`) holds `byte_len` bytes of host memory at
        // `data_ptr()` (checked when the tensor was built and by `require_host`), and it is
        // initialised: owned buffers are zeroed or fully copied, borrowed and foreign ones
        // are initialised by their owners' contracts.
        Ok(unsafe { std::slice::from_raw_parts(self.data_ptr(), self.byte_len()) })
    }

    /// A new tensor with a copy of the bytes, writable and [`is_copied`](Tensor::is_copied):
    /// in ordinary host memory for host tensors (pinned ones included), on the same GPU for
    /// device tensors.
    ///
    /// # Errors
    ///
    /// As [`Tensor::to_device`].
    pub fn deep_copy(&self) -> Result<Tensor> {
        let device = if self.device().is_cpu() { Device::CPU } else { self.device() };
        self.to_device(device)
    }

    /// A copy of the tensor on `device` (`cpu`, `cuda:N`, `cuda_host`), always a new
    /// allocation, writable and [`is_copied`](Tensor::is_copied). Host ↔ device and device ↔
    /// device copies go through CUDA and are complete when this returns (tensorbridge's stream
    /// is synchronised; never the whole device). Large pageable host sources and destinations
    /// are staged through pinned buffers.
    ///
    /// # Errors
    ///
    /// `ERR_CUDA_UNAVAILABLE` when either side is CUDA memory and CUDA is not available,
    /// `ERR_DEVICE_UNSUPPORTED` for devices other than host memory and CUDA (ROCm, …),
    /// `ERR_ALLOCATION`, `ERR_CUDA`.
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        // Refuse unsupported devices before allocating the destination: a ROCm tensor of
        // hundreds of GiB asked for on the CPU must fail at once, not after a huge allocation.
        check_copy_devices(self.device(), device)?;
        let flags = TensorFlags { read_only: false, copied: true };
        let copy = Self::alloc_on(self.shape(), self.dtype(), device, false, flags)?;
        copy_bytes(self, &copy)?;
        Ok(copy)
    }

    /// This tensor in host memory: itself (shared, no copy) when the host can already read it
    /// (`cpu`, `cuda_host`), otherwise a copy in ordinary host memory.
    ///
    /// # Errors
    ///
    /// As [`Tensor::to_device`].
    pub fn to_cpu(&self) -> Result<Tensor> {
        if self.device().is_cpu() {
            Ok(self.clone())
        } else {
            self.to_device(Device::CPU)
        }
    }

    /// This tensor on GPU `id`: itself (shared, no copy) when it is already there, otherwise a
    /// copy.
    ///
    /// # Errors
    ///
    /// As [`Tensor::to_device`].
    pub fn to_cuda(&self, id: i32) -> Result<Tensor> {
        if self.device() == Device::cuda(id) {
            Ok(self.clone())
        } else {
            self.to_device(Device::cuda(id))
        }
    }

    /// Copies this tensor's bytes into `dst`, which must have the same dtype and shape, on any
    /// device pair of host memory and CUDA (host ↔ device, device ↔ device, on one GPU or
    /// two). Complete when this returns.
    ///
    /// `dst`'s memory is shared with whoever else holds it (clones, JS views, a DLPack
    /// producer): they see the new bytes, and must not read it while the copy runs.
    ///
    /// # Errors
    ///
    /// `ERR_INVALID_ARGUMENT` for another dtype or shape, a read-only destination, or ranges
    /// that partly overlap; plus the errors of [`Tensor::to_device`].
    pub fn copy_to(&self, dst: &Tensor) -> Result<()> {
        if self.dtype() != dst.dtype() || self.shape() != dst.shape() {
            return Err(Error::invalid_argument(format!(
                "copy_to needs a destination of the same dtype and shape: the source is \
                 {}{:?}, the destination {}{:?}",
                self.dtype().triton_name(),
                self.shape(),
                dst.dtype().triton_name(),
                dst.shape()
            )));
        }
        if dst.is_read_only() {
            return Err(Error::invalid_argument(
                "the destination of copy_to is read-only; copy into a writable tensor",
            ));
        }
        copy_bytes(self, dst)
    }

    /// Exports the tensor as a DLPack managed tensor (see [`crate::export`]), for a consumer
    /// that gave no stream: the array API's `stream=None`, which for a CUDA tensor means the
    /// legacy default stream (it is made to wait for tensorbridge's pending work).
    ///
    /// # Errors
    ///
    /// See [`crate::export`]: `ERR_DTYPE_UNSUPPORTED`, `ERR_COPY_REQUIRED`,
    /// `ERR_DEVICE_UNSUPPORTED`, `ERR_CUDA_UNAVAILABLE`, `ERR_ALLOCATION`, `ERR_CUDA`.
    pub fn to_dlpack(&self, options: &ExportOptions) -> Result<ExportedTensor> {
        crate::export::export(self, options, ConsumerStream::Default)
    }

    /// Exports the tensor for a consumer that will use it on `stream` (the array API's
    /// `__dlpack__(stream=…)`): for a CUDA tensor, an event is recorded on tensorbridge's
    /// stream and `stream` is made to wait on it, unless `stream` is
    /// [`ConsumerStream::NoSync`]. Host tensors accept only `Default` and `NoSync`.
    ///
    /// # Errors
    ///
    /// As [`Tensor::to_dlpack`], plus `ERR_INVALID_ARGUMENT` for a CUDA stream given with a
    /// host result, and `ERR_CUDA` when the driver refuses the stream handle.
    pub fn to_dlpack_with_stream(
        &self,
        options: &ExportOptions,
        stream: ConsumerStream,
    ) -> Result<ExportedTensor> {
        crate::export::export(self, options, stream)
    }

    /// Whether `self` and `other` are clones of one tensor (same memory, layout, device and
    /// flags, by construction). Cheap: compares one pointer.
    pub fn is_same(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The first half of [`Tensor::to_dlpack_with_stream`]: every check, copy and stream
    /// ordering, without building the managed struct (see [`PreparedExport`]). An in-process
    /// consumer takes [`PreparedExport::into_tensor`]; a native one
    /// [`PreparedExport::into_dlpack`].
    ///
    /// # Errors
    ///
    /// As [`Tensor::to_dlpack_with_stream`].
    pub fn prepare_export(
        &self,
        options: &ExportOptions,
        stream: ConsumerStream,
    ) -> Result<PreparedExport> {
        crate::export::prepare(self, options, stream)
    }

    /// This tensor as an import of its own export shows it: labelled `device`, with the
    /// `copied` flag the struct carried, and offset 0 when it holds no bytes (the struct's
    /// `data` is NULL then). A reference count when nothing changes, which is the usual case.
    pub(crate) fn exported_view(&self, device: Device, copied: bool) -> Tensor {
        let inner = &self.inner;
        if device == inner.device
            && copied == inner.copied
            && (inner.byte_len != 0 || inner.offset == 0)
        {
            return self.clone();
        }
        let offset = if inner.byte_len == 0 { 0 } else { inner.offset };
        let flags = TensorFlags { read_only: inner.read_only, copied };
        Tensor::from_storage(
            Arc::clone(&inner.storage),
            offset,
            &inner.shape,
            None,
            inner.dtype,
            device,
            flags,
        )
        .expect("the same layout fits the same storage")
    }

    /// Imports a legacy DLPack managed tensor, taking ownership on success (its deleter then
    /// runs exactly once, when the last user of the data is gone).
    ///
    /// On any error the caller keeps ownership: nothing was freed, and the caller still has to
    /// call the deleter (or hand the pointer back).
    ///
    /// # Safety
    ///
    /// `ptr` must be NULL or point to a valid, properly aligned `DLManagedTensor` that nobody
    /// else will delete, whose descriptor describes memory the producer keeps alive until the
    /// deleter runs, and whose deleter (if any) may be called once from any thread.
    ///
    /// # Errors
    ///
    /// Every validation failure listed in [`crate::import`] (NULL pointers, bad ndim, lanes,
    /// unknown device, negative shape, non-C-order strides, overflow, unsupported dtype).
    pub unsafe fn from_dlpack_legacy(ptr: *mut DLManagedTensor) -> Result<Tensor> {
        // SAFETY: forwarded from this function's contract.
        unsafe { crate::import::import_raw(ptr.cast(), false) }
    }

    /// Imports a versioned DLPack managed tensor, taking ownership on success.
    ///
    /// On a major-version mismatch the tensor's deleter is called (as DLPack requires) and
    /// `ERR_DLPACK_VERSION` returned: the pointer is then gone. On every other error the
    /// caller keeps ownership.
    ///
    /// # Safety
    ///
    /// As [`Tensor::from_dlpack_legacy`], for a `DLManagedTensorVersioned`; with another
    /// major version only the `version` and `deleter` fields need to be valid.
    ///
    /// # Errors
    ///
    /// `ERR_DLPACK_VERSION` plus everything [`Tensor::from_dlpack_legacy`] reports.
    pub unsafe fn from_dlpack_versioned(ptr: *mut DLManagedTensorVersioned) -> Result<Tensor> {
        // SAFETY: forwarded from this function's contract.
        unsafe { crate::import::import_raw(ptr.cast(), true) }
    }

    fn require_host(&self, operation: &'static str) -> Result<()> {
        if self.device().is_cpu() {
            Ok(())
        } else {
            Err(Error::NotCpu { operation, device: self.device() })
        }
    }
}

/// Copies `src`'s bytes into `dst` (same byte length, checked by the callers).
fn copy_bytes(src: &Tensor, dst: &Tensor) -> Result<()> {
    let bytes = src.byte_len();
    debug_assert_eq!(bytes, dst.byte_len());
    let (from, to) = (src.device(), dst.device());
    let (src_ptr, dst_ptr) = (src.data_ptr().cast_const(), dst.data_ptr());
    if from.is_cpu() && to.is_cpu() {
        if bytes > 0 && src_ptr != dst_ptr.cast_const() {
            // SAFETY: both are host memory the CPU can read and write, `bytes` long, kept alive
            // by the tensors; `ptr::copy` allows overlap.
            unsafe { ptr::copy(src_ptr, dst_ptr, bytes) };
        }
        return Ok(());
    }
    check_copy_devices(from, to)?;
    let (start, end) = (src_ptr as usize, dst_ptr as usize);
    let overlap =
        bytes > 0 && start < end.saturating_add(bytes) && end < start.saturating_add(bytes);
    if overlap && from == to {
        if start == end {
            // The same bytes (a tensor copied onto itself or a clone): nothing to do, but CUDA
            // must still be there, as for every CUDA entry point.
            cuda::require_gpu(if from.is_cpu() { to } else { from })?;
            return Ok(());
        }
        return Err(Error::invalid_argument(
            "the source and destination of a copy partly overlap; copy through a new tensor",
        ));
    }
    // SAFETY: the tensors keep both ranges alive; each is `bytes` long on its device (checked
    // when the tensors were built), the destination is writable (`copy_to` refuses read-only
    // ones; `to_device` made it), and overlapping ranges on one device were handled above.
    unsafe { cuda::copy(dst_ptr, to, src_ptr, from, bytes) }
}

/// Copies run between host memory and CUDA devices only: `ERR_DEVICE_UNSUPPORTED` otherwise.
fn check_copy_devices(from: Device, to: Device) -> Result<()> {
    let cuda_or_host =
        |d: Device| d.is_cpu() || matches!(d.kind, DLDeviceType::CUDA | DLDeviceType::CUDAMANAGED);
    for device in [from, to] {
        if !cuda_or_host(device) {
            return Err(Error::DeviceUnsupported {
                device: device.to_string(),
                reason: "tensorbridge copies between host memory and CUDA devices only".into(),
            });
        }
    }
    Ok(())
}

pub(crate) fn unknown_device(device: Device) -> Error {
    Error::DeviceUnsupported {
        device: device.to_string(),
        reason: format!(
            "device type {} is not defined by DLPack 1.3; use one of cpu, cuda, cuda_host, ...",
            device.kind.0
        ),
    }
}

fn check_len(expected: usize, actual: usize, shape: &[i64], dtype: DataType) -> Result<()> {
    if expected == actual {
        Ok(())
    } else {
        Err(Error::ShapeMismatch { expected, actual, shape: shape.to_vec(), dtype })
    }
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tensor")
            .field("dtype", &self.dtype())
            .field("shape", &self.shape())
            .field("strides", &self.strides())
            .field("device", &format_args!("{}", self.device()))
            .field("data_ptr", &self.data_ptr())
            .field("byte_len", &self.byte_len())
            .field("storage", &self.storage_kind())
            .field("read_only", &self.is_read_only())
            .field("copied", &self.is_copied())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn tensor_is_send_and_sync() {
        assert_send_sync::<Tensor>();
    }

    #[test]
    fn zeros_fills_metadata_and_zeroes_the_bytes() {
        let t = Tensor::zeros(&[2, 3], DataType::F32).unwrap();
        assert_eq!(t.shape(), [2, 3]);
        assert_eq!(t.strides(), [3, 1]);
        assert_eq!((t.ndim(), t.element_count(), t.byte_len()), (2, 6, 24));
        assert_eq!(t.device(), Device::CPU);
        assert!(t.as_bytes().unwrap().iter().all(|&b| b == 0));
        assert_eq!(t.storage_kind(), StorageKind::Owned);
        assert!(!t.is_read_only() && !t.is_copied());
    }

    #[test]
    fn zero_d_tensors_hold_one_element() {
        let t = Tensor::empty(&[], DataType::I64).unwrap();
        assert_eq!((t.ndim(), t.element_count(), t.byte_len()), (0, 1, 8));
    }

    #[test]
    fn bytes_tensors_are_refused() {
        let err = Tensor::zeros(&[2], DataType::Bytes).unwrap_err();
        assert_eq!(err.code(), "ERR_DTYPE_UNSUPPORTED");
    }

    #[test]
    fn too_many_axes_are_an_invalid_argument() {
        let shape = vec![1_i64; layout::MAX_NDIM + 1];
        let err = Tensor::zeros(&shape, DataType::U8).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARGUMENT");
        Tensor::zeros(&shape[1..], DataType::U8).unwrap();
    }

    #[test]
    fn from_vec_uses_the_buffer_in_place() {
        let v: Vec<u8> = (0..16).collect();
        let p = v.as_ptr();
        let t = Tensor::from_vec(v, &[4], DataType::U32).unwrap();
        assert_eq!(t.data_ptr().cast_const(), p);
        assert_eq!(t.as_bytes().unwrap()[15], 15);
    }

    #[test]
    fn from_vec_refuses_a_wrong_length_naming_both_sizes() {
        let err = Tensor::from_vec(vec![0; 7], &[2], DataType::F32).unwrap_err();
        assert_eq!(
            err,
            Error::ShapeMismatch { expected: 8, actual: 7, shape: vec![2], dtype: DataType::F32 }
        );
        assert!(err.to_string().contains("7 bytes"), "{err}");
    }

    #[test]
    fn clones_share_the_bytes() {
        let t = Tensor::from_vec(vec![1, 2, 3], &[3], DataType::U8).unwrap();
        let c = t.clone();
        assert_eq!(t.data_ptr(), c.data_ptr());
    }

    #[test]
    fn deep_copy_is_a_writable_flagged_copy() {
        let t = Tensor::from_vec(vec![1, 2, 3, 4], &[2, 2], DataType::U8).unwrap();
        let c = t.deep_copy().unwrap();
        assert_ne!(t.data_ptr(), c.data_ptr());
        assert_eq!(c.as_bytes().unwrap(), [1, 2, 3, 4]);
        assert!(c.is_copied() && !c.is_read_only());
        assert_eq!(c.storage_kind(), StorageKind::Owned);
    }

    #[test]
    fn borrowed_tensors_drop_their_keep_alive_with_the_last_clone() {
        struct Guard(Arc<AtomicUsize>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let mut buf = Box::new([5_u8; 4]);
        let ptr = buf.as_mut_ptr();
        // SAFETY: `buf` outlives both tensors (dropped before it at the end of the test).
        let t = unsafe {
            Tensor::from_borrowed(
                ptr,
                4,
                &[4],
                DataType::U8,
                Device::CPU,
                true,
                Box::new(Guard(drops.clone())),
            )
        }
        .unwrap();
        assert!(t.is_read_only());
        assert_eq!(t.storage_kind(), StorageKind::Borrowed);
        let c = t.clone();
        drop(t);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        assert_eq!(c.as_bytes().unwrap(), [5; 4]);
        drop(c);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
        drop(buf);
    }

    #[test]
    fn from_borrowed_refuses_null_with_bytes_and_wrong_lengths() {
        // SAFETY: the calls fail validation before the pointer is stored.
        let err = unsafe {
            Tensor::from_borrowed(
                std::ptr::null_mut(),
                4,
                &[4],
                DataType::U8,
                Device::CPU,
                false,
                Box::new(()),
            )
        }
        .unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARGUMENT");
        let mut buf = [0_u8; 4];
        // SAFETY: as above.
        let err = unsafe {
            Tensor::from_borrowed(
                buf.as_mut_ptr(),
                4,
                &[5],
                DataType::U8,
                Device::CPU,
                false,
                Box::new(()),
            )
        }
        .unwrap_err();
        assert_eq!(err.code(), "ERR_SHAPE_MISMATCH");
        // SAFETY: zero bytes at NULL are allowed and never read.
        let t = unsafe {
            Tensor::from_borrowed(
                std::ptr::null_mut(),
                0,
                &[0, 3],
                DataType::F64,
                Device::CPU,
                false,
                Box::new(()),
            )
        }
        .unwrap();
        assert_eq!(t.as_bytes().unwrap(), [0_u8; 0]);
    }

    #[test]
    fn device_tensors_refuse_host_access() {
        let mut buf = [0_u8; 4];
        // SAFETY: the pointer is never dereferenced: every host access is refused for cuda.
        let t = unsafe {
            Tensor::from_borrowed(
                buf.as_mut_ptr(),
                4,
                &[1],
                DataType::F32,
                Device::cuda(0),
                false,
                Box::new(()),
            )
        }
        .unwrap();
        assert_eq!(t.as_bytes().unwrap_err().code(), "ERR_NOT_CPU");
        assert!(t.as_bytes().unwrap_err().to_string().contains("cuda:0"));
        if !cuda::is_available() {
            // Copies of device memory go through CUDA.
            assert_eq!(t.deep_copy().unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
            assert_eq!(t.to_cpu().unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
        }
    }

    #[test]
    fn unknown_devices_are_refused() {
        let mut buf = [0_u8; 1];
        // SAFETY: validation fails before the pointer is stored.
        let err = unsafe {
            Tensor::from_borrowed(
                buf.as_mut_ptr(),
                1,
                &[1],
                DataType::U8,
                Device::new(crate::ffi::DLDeviceType(99), 0),
                false,
                Box::new(()),
            )
        }
        .unwrap_err();
        assert_eq!(err.code(), "ERR_DEVICE_UNSUPPORTED");
    }
}

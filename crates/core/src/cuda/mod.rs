//! CUDA: device and pinned host memory, validated foreign device pointers, copies, and
//! stream-ordered DLPack exchange, through [cudarc]'s driver API.
//!
//! # Availability
//!
//! The driver (`libcuda.so.1`, `nvcuda.dll`) is loaded at run time, on the first CUDA call,
//! and never at build time: a build with the `cuda` feature (the default) loads and runs on
//! machines without CUDA. cudarc panics when the library or one of its symbols is missing, so
//! this module first looks for the library, then resolves every symbol it will ever call,
//! then runs `cuInit` and counts devices; only when all of that succeeds is CUDA
//! [available](is_available). Otherwise every CUDA entry point returns
//! `ERR_CUDA_UNAVAILABLE` with the reason ([`unavailable_reason`]); nothing panics. Without
//! the `cuda` feature the same entry points exist and return the same error.
//!
//! # Ownership, in each direction
//!
//! - **Memory we allocate** ([`Tensor::empty_on`](crate::Tensor::empty_on) on `cuda:N` or
//!   `cuda_host`, and the destination of every copy): one driver allocation per
//!   [`Storage`](crate::storage::Storage), owned by a value that frees it in its `Drop`,
//!   which runs once, when the last tensor, view or DLPack export sharing the storage is
//!   gone, on whatever thread that happens (a JS finalizer, a worker thread, a consumer
//!   calling the DLPack deleter). The free makes the device's primary context current first
//!   and restores the thread's previous context after (`cuCtxPushCurrent`/`PopCurrent`).
//!   Device memory is freed with the synchronous `cuMemFree`, which waits for work still
//!   queued on the device: a consumer that dropped our export may have kernels using the
//!   memory queued on *its* stream, and a stream-ordered free on ours would not wait for them.
//! - **Memory we export**: the export holds a clone of the tensor, so the allocation outlives
//!   the consumer's use; the consumer's deleter call drops the clone. No ownership moves.
//! - **Memory we import** (a foreign CUDA DLPack tensor): validated with
//!   `cuPointerGetAttributes` (see [`check_pointer`]), then *borrowed*: we never free it, we
//!   call the producer's deleter exactly once when the last user is gone.
//!   [`Tensor::from_borrowed`](crate::Tensor::from_borrowed) likewise never frees.
//! - **Double frees** can't happen: the freeing value is created once per allocation, is never
//!   cloned or leaked to anyone, and lives inside exactly one storage.
//!
//! # Streams
//!
//! tensorbridge issues its own GPU work (zero fills, copies) on one non-blocking stream per
//! device ([`stream_handle`]). Copies finish before they return (that stream is synchronised;
//! never the device). Exports follow the Python array API's `__dlpack__(stream=…)`
//! ([`ConsumerStream`]): the producer records an event on its stream and makes the consumer's
//! stream wait on it, so work queued before the export (a zero fill, or a foreign producer's
//! kernel that our stream was told to wait for on import) is ordered before the consumer's
//! work, without `cuCtxSynchronize`. When our stream has nothing pending the event is skipped,
//! so exporting a device tensor costs what exporting a host one does. A consumer that imports
//! into tensorbridge passes
//! [`stream_handle`] to the producer's `__dlpack__`, which makes our stream wait on the
//! producer's.
//!
//! [cudarc]: https://docs.rs/cudarc

use std::fmt;
use std::ptr;
use std::sync::Arc;

use crate::device::Device;
use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::ffi::DLDeviceType;
use crate::storage::Storage;
use crate::tensor::Tensor;

#[cfg(feature = "cuda")]
#[path = "driver.rs"]
mod imp;

#[cfg(not(feature = "cuda"))]
#[path = "no_driver.rs"]
mod imp;

/// Whether CUDA can be used: the driver library loads, has every symbol tensorbridge calls,
/// `cuInit` succeeds and at least one device is visible. The first call does that work (once
/// per process); later calls are free. Never panics.
pub fn is_available() -> bool {
    imp::driver_status().is_ok()
}

/// Why CUDA is not available (`None` when it is), e.g. "the CUDA driver library was not
/// found (tried libcuda.so, …)". Useful in skip messages.
pub fn unavailable_reason() -> Option<String> {
    imp::driver_status().err()
}

/// The number of CUDA devices the driver sees.
///
/// # Errors
///
/// `ERR_CUDA_UNAVAILABLE` when CUDA is not available.
pub fn device_count() -> Result<usize> {
    imp::device_count()
}

/// The driver's CUDA version, e.g. `13000` for CUDA 13.0 (`cuDriverGetVersion`).
///
/// # Errors
///
/// `ERR_CUDA_UNAVAILABLE` when CUDA is not available.
pub fn driver_version() -> Result<i32> {
    imp::driver_version()
}

/// The handle (`CUstream`) of the stream tensorbridge uses on `device` (`cuda:N`), for a
/// consumer to pass to a producer's `__dlpack__(stream=…)`: the producer then makes this
/// stream wait for its work, and tensorbridge's copies of the imported tensor see it.
///
/// Creating it retains the device's primary context, as any CUDA use does.
///
/// # Errors
///
/// `ERR_CUDA_UNAVAILABLE`, `ERR_DEVICE_UNSUPPORTED` for a device that is not `cuda:N` or an
/// ordinal the driver doesn't have, `ERR_CUDA` when the driver fails.
pub fn stream_handle(device: Device) -> Result<usize> {
    if device.kind != DLDeviceType::CUDA {
        return Err(Error::DeviceUnsupported {
            device: device.to_string(),
            reason: "only CUDA devices (\"cuda:N\") have a tensorbridge stream".into(),
        });
    }
    imp::stream_handle(device.id)
}

/// Reads the driver's attributes of the memory at `ptr` (`cuPointerGetAttributes`). An address
/// the driver doesn't know (pageable host memory, freed memory, garbage) is not an error: it
/// gives [`MemoryType::Unregistered`].
///
/// # Errors
///
/// `ERR_CUDA_UNAVAILABLE`, `ERR_CUDA`.
pub fn pointer_attributes(ptr: usize) -> Result<PointerAttributes> {
    imp::pointer_attributes(ptr)
}

/// The consumer's stream of a DLPack exchange, as the Python array API's `__dlpack__` defines
/// the `stream` argument for CUDA.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ConsumerStream {
    /// `None`: the consumer didn't say, which for CUDA means the legacy default stream.
    #[default]
    Default,
    /// `1`: the legacy default stream (`CU_STREAM_LEGACY`).
    Legacy,
    /// `2`: the per-thread default stream (`CU_STREAM_PER_THREAD`).
    PerThread,
    /// `> 2`: a `CUstream` handle (`cudaStream_t`) of the consumer's.
    Handle(usize),
    /// `-1`: no synchronisation; the consumer orders the work itself.
    NoSync,
}

impl fmt::Display for ConsumerStream {
    /// The array API value: `None`, `1`, `2`, `0x7f…` (a handle), `-1`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConsumerStream::Default => f.write_str("None"),
            ConsumerStream::Legacy => f.write_str("1"),
            ConsumerStream::PerThread => f.write_str("2"),
            ConsumerStream::Handle(h) => write!(f, "{h:#x}"),
            ConsumerStream::NoSync => f.write_str("-1"),
        }
    }
}

impl ConsumerStream {
    /// Parses the array API's integer (`None` → [`ConsumerStream::Default`]).
    ///
    /// # Errors
    ///
    /// `ERR_INVALID_ARGUMENT` for `0` (ambiguous, so forbidden for CUDA by the array API) and
    /// for negative values other than `-1`.
    pub fn from_array_api(stream: Option<i64>) -> Result<ConsumerStream> {
        match stream {
            None => Ok(ConsumerStream::Default),
            Some(-1) => Ok(ConsumerStream::NoSync),
            Some(0) => Err(Error::invalid_argument(
                "stream 0 is ambiguous and forbidden for CUDA by the DLPack protocol; use 1 for \
                 the legacy default stream, 2 for the per-thread default stream, -1 for no \
                 synchronisation, or a stream handle",
            )),
            Some(1) => Ok(ConsumerStream::Legacy),
            Some(2) => Ok(ConsumerStream::PerThread),
            Some(n) => usize::try_from(n).map(ConsumerStream::Handle).map_err(|_| {
                Error::invalid_argument(format!(
                    "stream {n} is not valid: use None, -1, 1, 2 or a CUDA stream handle"
                ))
            }),
        }
    }

    /// Whether a host (CPU) consumer may pass this: only `None` and `-1` mean anything there.
    pub fn is_host_compatible(self) -> bool {
        matches!(self, ConsumerStream::Default | ConsumerStream::NoSync)
    }
}

/// What kind of memory an address is, as `CU_POINTER_ATTRIBUTE_MEMORY_TYPE` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MemoryType {
    /// The driver doesn't know the address: pageable host memory, freed memory, or garbage.
    Unregistered,
    /// Page-locked host memory (`cuMemHostAlloc`, `cuMemHostRegister`, `cudaMallocHost`).
    Host,
    /// Device memory (`cuMemAlloc`, memory pools, IPC and VMM mappings).
    Device,
    /// A CUDA array (not linear memory).
    Array,
    /// Unified memory.
    Unified,
    /// A value this crate doesn't know.
    Other(u32),
}

impl MemoryType {
    /// From the raw `CUmemorytype` value (0 = unknown to the driver).
    pub const fn from_raw(value: u32) -> MemoryType {
        match value {
            0 => MemoryType::Unregistered,
            1 => MemoryType::Host,
            2 => MemoryType::Device,
            3 => MemoryType::Array,
            4 => MemoryType::Unified,
            other => MemoryType::Other(other),
        }
    }
}

/// The driver's view of one address (see [`pointer_attributes`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PointerAttributes {
    /// `CU_POINTER_ATTRIBUTE_MEMORY_TYPE`.
    pub memory_type: MemoryType,
    /// `CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL`: the GPU the memory belongs to (meaningless for
    /// [`MemoryType::Unregistered`]).
    pub device_ordinal: i32,
    /// `CU_POINTER_ATTRIBUTE_IS_MANAGED`: managed (unified) memory, addressable from every GPU
    /// and the host.
    pub is_managed: bool,
}

impl PointerAttributes {
    /// The attributes of an address the driver doesn't know.
    pub const UNREGISTERED: PointerAttributes = PointerAttributes {
        memory_type: MemoryType::Unregistered,
        device_ordinal: -1,
        is_managed: false,
    };
}

impl fmt::Display for PointerAttributes {
    /// `"device memory on cuda:1"`, `"pinned host memory"`, …
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_managed {
            return f.write_str("managed (unified) memory");
        }
        match self.memory_type {
            MemoryType::Unregistered => {
                f.write_str("host memory unknown to the CUDA driver (pageable, or freed)")
            }
            MemoryType::Host => f.write_str("pinned host memory"),
            MemoryType::Device => write!(f, "device memory on cuda:{}", self.device_ordinal),
            MemoryType::Array => f.write_str("a CUDA array (not linear memory)"),
            MemoryType::Unified => f.write_str("unified memory"),
            MemoryType::Other(v) => write!(f, "memory of unknown CUDA type {v}"),
        }
    }
}

/// Checks the driver's attributes of `ptr` against the device a descriptor claims: the pure
/// half of import validation (CPU-testable, like dlpark's `validated_cuda_parts`).
///
/// - `cuda:N`: device memory on GPU `N`, or managed memory. Host memory (pinned or not) is
///   refused: a kernel would read it as a device address.
/// - `cuda_managed`: managed memory.
/// - `cpu`, `cuda_host`: anything but (non-managed) device memory, which the host can't read.
/// - Other device types: not checked (the CUDA driver knows nothing about them).
///
/// # Errors
///
/// `ERR_DEVICE_MISMATCH` naming the label, the address and what the memory really is.
pub fn check_pointer(label: Device, ptr: usize, attrs: PointerAttributes) -> Result<()> {
    let ok = match label.kind {
        DLDeviceType::CUDA => {
            attrs.is_managed
                || (attrs.memory_type == MemoryType::Device && attrs.device_ordinal == label.id)
        }
        DLDeviceType::CUDAMANAGED => attrs.is_managed,
        DLDeviceType::CPU | DLDeviceType::CUDAHOST => {
            attrs.is_managed || attrs.memory_type != MemoryType::Device
        }
        _ => true,
    };
    if ok {
        Ok(())
    } else {
        Err(Error::DeviceMismatch { label, ptr, actual: attrs.to_string() })
    }
}

/// Import-time check of a descriptor's data region `[data, data + bytes)` on `device`.
///
/// `cuda:N` and `cuda_managed` tensors need CUDA (`ERR_CUDA_UNAVAILABLE` without it: an
/// unverifiable device pointer is refused, not trusted), and both the first and the last byte
/// must pass [`check_pointer`] (both ends, not one range query: VMM and expandable-segment
/// allocators map one tensor over several driver ranges). A zero-byte tensor has no pointer to
/// check; its ordinal must exist (`ERR_DEVICE_UNSUPPORTED`). Host labels (`cpu`, `cuda_host`)
/// are checked the same way only when this process has already loaded the driver, so a
/// host-only program never initialises CUDA for it.
pub(crate) fn check_import(data: *const u8, bytes: usize, device: Device) -> Result<()> {
    let strict = matches!(device.kind, DLDeviceType::CUDA | DLDeviceType::CUDAMANAGED);
    let host = matches!(device.kind, DLDeviceType::CPU | DLDeviceType::CUDAHOST);
    if !(strict || (host && imp::is_loaded())) {
        return Ok(());
    }
    if bytes == 0 {
        return if strict { require_gpu(device) } else { Ok(()) };
    }
    let first = data as usize;
    let last = first.wrapping_add(bytes - 1);
    for ptr in [first, last] {
        // Without CUDA this is ERR_CUDA_UNAVAILABLE.
        check_pointer(device, ptr, imp::pointer_attributes(ptr)?)?;
    }
    Ok(())
}

/// Checks that CUDA is available and that `device` (a GPU) exists.
pub(crate) fn require_gpu(device: Device) -> Result<()> {
    imp::require_ordinal(gpu_ordinal(device).unwrap_or(0))
}

/// The GPU ordinal whose stream and context serve memory on `device`: `N` for `cuda:N`, `0`
/// for managed memory; `None` for host memory.
fn gpu_ordinal(device: Device) -> Option<i32> {
    match device.kind {
        DLDeviceType::CUDA => Some(device.id),
        DLDeviceType::CUDAMANAGED => Some(0),
        _ => None,
    }
}

/// A new storage of `bytes` on `device` (`cuda:N` or `cuda_host`), zero-filled when `zeroed`
/// (device memory is filled on tensorbridge's stream, ordered before any later use through
/// tensorbridge or a DLPack export). Otherwise the caller must fully write it before anyone
/// reads it.
pub(crate) fn alloc_storage(device: Device, bytes: usize, zeroed: bool) -> Result<Storage> {
    match device.kind {
        DLDeviceType::CUDA => imp::alloc_device(device.id, bytes, zeroed),
        DLDeviceType::CUDAHOST => {
            if device.id != 0 {
                return Err(Error::invalid_argument(format!(
                    "pinned host memory has device id 0 in DLPack, not {}; use \"cuda_host\"",
                    device.id
                )));
            }
            imp::alloc_pinned(bytes, zeroed)
        }
        _ => Err(Error::DeviceUnsupported {
            device: device.to_string(),
            reason: "tensorbridge allocates on cpu, cuda:N and cuda_host only".into(),
        }),
    }
}

/// Copies `bytes` from `src` on `src_device` to `dst` on `dst_device`, where at least one side
/// is on a GPU (`cuda:N`, `cuda_managed`) and the other is a GPU or host memory. Complete when
/// this returns (the issuing stream is synchronised, never the device).
///
/// Pageable host memory is staged by the driver itself (measured faster than staging of our
/// own through pinned buffers).
///
/// # Safety
///
/// `[src, src + bytes)` must be readable memory on `src_device` and `[dst, dst + bytes)`
/// writable memory on `dst_device`, both live until this returns; they must not overlap
/// unless they are the same range.
pub(crate) unsafe fn copy(
    dst: *mut u8,
    dst_device: Device,
    src: *const u8,
    src_device: Device,
    bytes: usize,
) -> Result<()> {
    let (src_gpu, dst_gpu) = (gpu_ordinal(src_device), gpu_ordinal(dst_device));
    if src_gpu.is_none() && dst_gpu.is_none() {
        return Err(Error::invalid_argument("a CUDA copy needs a GPU on at least one side"));
    }
    // SAFETY: forwarded from this function's contract.
    unsafe { imp::copy(dst, dst_gpu, src, src_gpu, bytes) }
}

/// Makes `consumer` wait for the work queued so far on tensorbridge's stream of the GPU that
/// holds `device` (event record + stream wait). Nothing to do for host memory, for
/// [`ConsumerStream::NoSync`], when tensorbridge never used that GPU in this process, or when
/// its stream has nothing pending (`cuStreamQuery`): no work of ours to wait for then.
///
/// # Errors
///
/// `ERR_CUDA` when the driver refuses (for instance a stream handle that isn't one).
pub(crate) fn order_for_consumer(device: Device, consumer: ConsumerStream) -> Result<()> {
    match (gpu_ordinal(device), consumer) {
        (None, _) | (_, ConsumerStream::NoSync) => Ok(()),
        (Some(ordinal), consumer) => imp::order_for_consumer(ordinal, consumer),
    }
}

/// Size of a CUDA IPC memory handle (`CUipcMemHandle`, `cudaIpcMemHandle_t`) in bytes.
pub const IPC_HANDLE_BYTES: usize = 64;

/// Another process's device allocation, mapped into this one from its IPC handle
/// (`cuIpcOpenMemHandle` with `CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS`): Triton's CUDA shared
/// memory. Share it through `Arc`: tensors made by [`tensor_from_ipc`] hold a clone, so the
/// mapping is closed (`cuIpcCloseMemHandle`, with the opening context current, exactly once)
/// only when the last of them and the registration are gone.
pub struct IpcMapping {
    ptr: usize,
    len: usize,
    device: Device,
    _close_on_drop: imp::IpcGuard,
}

impl fmt::Debug for IpcMapping {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IpcMapping")
            .field("ptr", &format_args!("{:#x}", self.ptr))
            .field("len", &self.len)
            .field("device", &self.device)
            .finish()
    }
}

impl IpcMapping {
    /// The mapped device address (the start of the exporter's allocation).
    pub fn ptr(&self) -> usize {
        self.ptr
    }

    /// The usable size in bytes: the `byte_size` given to [`ipc_open`].
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the mapping has no usable bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The GPU the mapping is on (`cuda:N`).
    pub fn device(&self) -> Device {
        self.device
    }

    /// Checks `[offset, offset + byte_size)` against the mapping.
    fn check_range(&self, offset: usize, byte_size: usize) -> Result<()> {
        match offset.checked_add(byte_size) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(Error::invalid_argument(format!(
                "offset {offset} + byte size {byte_size} is past the end of the CUDA IPC \
                 mapping ({} bytes)",
                self.len
            ))),
        }
    }
}

/// Opens a CUDA IPC memory handle (64 bytes, from `cudaIpcGetMemHandle` in another process)
/// on `device` (`cuda:N`), for `byte_size` bytes from the start of the exporter's allocation.
///
/// # Errors
///
/// `ERR_INVALID_ARGUMENT` for a handle that is not 64 bytes, or a `byte_size` larger than the
/// mapped allocation; `ERR_DEVICE_UNSUPPORTED` for a device that is not `cuda:N` or a GPU this
/// machine lacks; `ERR_CUDA_UNAVAILABLE` without CUDA; `ERR_CUDA` when the driver refuses the
/// handle (for instance one made in this same process, or for freed memory).
pub fn ipc_open(handle: &[u8], device: Device, byte_size: usize) -> Result<Arc<IpcMapping>> {
    let handle: &[u8; IPC_HANDLE_BYTES] = handle.try_into().map_err(|_| {
        Error::invalid_argument(format!(
            "a CUDA IPC memory handle is {IPC_HANDLE_BYTES} bytes, not {}",
            handle.len()
        ))
    })?;
    if device.kind != DLDeviceType::CUDA {
        return Err(Error::DeviceUnsupported {
            device: device.to_string(),
            reason: "CUDA IPC handles map device memory: use \"cuda:N\"".into(),
        });
    }
    let (ptr, mapped, guard) = imp::ipc_open(handle, device.id)?;
    if byte_size > mapped {
        // `guard` drops here and closes the mapping.
        return Err(Error::invalid_argument(format!(
            "byte_size {byte_size} is larger than the {mapped} bytes the CUDA IPC handle maps"
        )));
    }
    Ok(Arc::new(IpcMapping { ptr, len: byte_size, device, _close_on_drop: guard }))
}

/// The CUDA IPC memory handle of `tensor`'s device memory, for another process to open with
/// [`ipc_open`] (`cuIpcGetMemHandle`). The tensor must start its allocation (a tensor made by
/// [`Tensor::zeros_on`](crate::Tensor::zeros_on) does; a view at an offset does not), and must
/// stay alive while the other process uses the handle.
///
/// # Errors
///
/// `ERR_DEVICE_UNSUPPORTED` for a tensor that is not on `cuda:N`, `ERR_INVALID_ARGUMENT` for
/// an empty tensor or one that doesn't start its allocation, `ERR_CUDA_UNAVAILABLE`,
/// `ERR_CUDA`.
pub fn ipc_handle(tensor: &Tensor) -> Result<[u8; IPC_HANDLE_BYTES]> {
    let device = tensor.device();
    if device.kind != DLDeviceType::CUDA {
        return Err(Error::DeviceUnsupported {
            device: device.to_string(),
            reason: "only device memory (\"cuda:N\") has a CUDA IPC handle".into(),
        });
    }
    imp::require_ordinal(device.id)?;
    if tensor.byte_len() == 0 {
        return Err(Error::invalid_argument("an empty tensor has no memory to share"));
    }
    imp::ipc_get_handle(tensor.data_ptr() as usize, device.id)
}

/// A tensor over `[offset, offset + byte_size)` of an IPC mapping, on the mapping's GPU,
/// without copying. The tensor keeps the mapping open; writes by the exporting process are
/// visible through it.
///
/// # Errors
///
/// `ERR_INVALID_ARGUMENT` for a range past the mapping's end, `ERR_SHAPE_MISMATCH` when
/// `byte_size` is not shape × element size, plus the shape and dtype errors of
/// [`Tensor::empty`](crate::Tensor::empty).
pub fn tensor_from_ipc(
    mapping: &Arc<IpcMapping>,
    offset: usize,
    byte_size: usize,
    shape: &[i64],
    dtype: DataType,
) -> Result<Tensor> {
    mapping.check_range(offset, byte_size)?;
    let ptr = if byte_size == 0 { ptr::null_mut() } else { (mapping.ptr + offset) as *mut u8 };
    // SAFETY: `[ptr, ptr + byte_size)` lies inside the mapping (checked above), which is live
    // device memory on `mapping.device` until the mapping is closed, and the clone of the Arc
    // passed as keep-alive keeps it open until the last tensor over it is gone. The exporting
    // process may write to it: that is the point of shared memory.
    unsafe {
        Tensor::from_borrowed(
            ptr,
            byte_size,
            shape,
            dtype,
            mapping.device,
            false,
            Box::new(Arc::clone(mapping)),
        )
    }
}

/// Copies `tensor`'s bytes (on the host or a GPU) into the mapping at `offset`, complete when
/// this returns (host-to-device or device-to-device).
///
/// # Errors
///
/// `ERR_INVALID_ARGUMENT` for a range past the mapping's end, plus the errors of
/// [`Tensor::copy_to`](crate::Tensor::copy_to).
pub fn copy_to_ipc(tensor: &Tensor, mapping: &Arc<IpcMapping>, offset: usize) -> Result<()> {
    let dst = tensor_from_ipc(mapping, offset, tensor.byte_len(), tensor.shape(), tensor.dtype())?;
    tensor.copy_to(&dst)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device_on(ordinal: i32) -> PointerAttributes {
        PointerAttributes {
            memory_type: MemoryType::Device,
            device_ordinal: ordinal,
            is_managed: false,
        }
    }

    const PINNED: PointerAttributes =
        PointerAttributes { memory_type: MemoryType::Host, device_ordinal: 0, is_managed: false };

    const MANAGED: PointerAttributes =
        PointerAttributes { memory_type: MemoryType::Device, device_ordinal: 0, is_managed: true };

    fn code(r: Result<()>) -> &'static str {
        r.map_or_else(|e| e.code(), |()| "ok")
    }

    #[test]
    fn a_cuda_label_needs_device_memory_on_the_same_ordinal() {
        assert_eq!(code(check_pointer(Device::cuda(0), 1, device_on(0))), "ok");
        assert_eq!(code(check_pointer(Device::cuda(1), 1, device_on(1))), "ok");
        assert_eq!(code(check_pointer(Device::cuda(1), 1, device_on(0))), "ERR_DEVICE_MISMATCH");
        assert_eq!(code(check_pointer(Device::cuda(0), 1, device_on(1))), "ERR_DEVICE_MISMATCH");
    }

    #[test]
    fn host_memory_labelled_cuda_is_a_device_mismatch() {
        let err =
            check_pointer(Device::cuda(0), 0x1000, PointerAttributes::UNREGISTERED).unwrap_err();
        assert_eq!(err.code(), "ERR_DEVICE_MISMATCH");
        let msg = err.to_string();
        assert!(msg.contains("cuda:0") && msg.contains("0x1000"), "{msg}");
        assert!(msg.contains("unknown to the CUDA driver"), "{msg}");
        assert_eq!(code(check_pointer(Device::cuda(0), 1, PINNED)), "ERR_DEVICE_MISMATCH");
        let array = PointerAttributes { memory_type: MemoryType::Array, ..device_on(0) };
        assert_eq!(code(check_pointer(Device::cuda(0), 1, array)), "ERR_DEVICE_MISMATCH");
    }

    #[test]
    fn managed_memory_passes_as_cuda_and_is_required_for_cuda_managed() {
        assert_eq!(code(check_pointer(Device::cuda(1), 1, MANAGED)), "ok");
        let managed = Device::new(DLDeviceType::CUDAMANAGED, 0);
        assert_eq!(code(check_pointer(managed, 1, MANAGED)), "ok");
        assert_eq!(code(check_pointer(managed, 1, device_on(0))), "ERR_DEVICE_MISMATCH");
        assert_eq!(code(check_pointer(managed, 1, PINNED)), "ERR_DEVICE_MISMATCH");
    }

    #[test]
    fn device_memory_labelled_host_is_a_device_mismatch() {
        let pinned = Device::new(DLDeviceType::CUDAHOST, 0);
        for label in [Device::CPU, pinned] {
            let err = check_pointer(label, 1, device_on(2)).unwrap_err();
            assert_eq!(err.code(), "ERR_DEVICE_MISMATCH");
            assert!(err.to_string().contains("device memory on cuda:2"), "{err}");
            assert_eq!(code(check_pointer(label, 1, PINNED)), "ok");
            assert_eq!(code(check_pointer(label, 1, PointerAttributes::UNREGISTERED)), "ok");
            assert_eq!(code(check_pointer(label, 1, MANAGED)), "ok");
        }
    }

    #[test]
    fn other_device_types_are_not_checked() {
        let rocm = Device::new(DLDeviceType::ROCM, 0);
        assert_eq!(code(check_pointer(rocm, 1, PointerAttributes::UNREGISTERED)), "ok");
    }

    #[test]
    fn raw_memory_types_map_to_their_names() {
        let raw: Vec<_> = (0..6).map(MemoryType::from_raw).collect();
        assert_eq!(
            raw,
            [
                MemoryType::Unregistered,
                MemoryType::Host,
                MemoryType::Device,
                MemoryType::Array,
                MemoryType::Unified,
                MemoryType::Other(5)
            ]
        );
    }

    #[test]
    fn stream_arguments_follow_the_array_api() {
        let parse = ConsumerStream::from_array_api;
        assert_eq!(parse(None).unwrap(), ConsumerStream::Default);
        assert_eq!(parse(Some(-1)).unwrap(), ConsumerStream::NoSync);
        assert_eq!(parse(Some(1)).unwrap(), ConsumerStream::Legacy);
        assert_eq!(parse(Some(2)).unwrap(), ConsumerStream::PerThread);
        assert_eq!(parse(Some(0x7f00_1234)).unwrap(), ConsumerStream::Handle(0x7f00_1234));
        let zero = parse(Some(0)).unwrap_err();
        assert_eq!(zero.code(), "ERR_INVALID_ARGUMENT");
        assert!(zero.to_string().contains("forbidden"), "{zero}");
        assert_eq!(parse(Some(-2)).unwrap_err().code(), "ERR_INVALID_ARGUMENT");
        assert!(ConsumerStream::Default.is_host_compatible());
        assert!(ConsumerStream::NoSync.is_host_compatible());
        assert!(!ConsumerStream::Legacy.is_host_compatible());
    }

    #[test]
    fn without_cuda_every_entry_point_is_cuda_unavailable() {
        if is_available() {
            eprintln!("SKIPPED: CUDA is available here; this test covers machines without it");
            return;
        }
        let reason = unavailable_reason().expect("a reason when CUDA is unavailable");
        assert!(!reason.is_empty());
        assert_eq!(device_count().unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
        assert_eq!(driver_version().unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
        assert_eq!(stream_handle(Device::cuda(0)).unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
        assert_eq!(pointer_attributes(0x1000).unwrap_err().code(), "ERR_CUDA_UNAVAILABLE");
        let pinned = Device::new(DLDeviceType::CUDAHOST, 0);
        for device in [Device::cuda(0), pinned] {
            for bytes in [0, 64] {
                let err = alloc_storage(device, bytes, true).unwrap_err();
                assert_eq!(err.code(), "ERR_CUDA_UNAVAILABLE", "{device} {bytes}");
            }
        }
        let mut buf = [0_u8; 8];
        // SAFETY: both ranges are 8 live bytes of `buf`; nothing is copied without CUDA.
        let err = unsafe { copy(buf.as_mut_ptr(), Device::cuda(0), buf.as_ptr(), Device::CPU, 8) }
            .unwrap_err();
        assert_eq!(err.code(), "ERR_CUDA_UNAVAILABLE");
        let err = check_import(buf.as_ptr(), 8, Device::cuda(0)).unwrap_err();
        assert_eq!(err.code(), "ERR_CUDA_UNAVAILABLE");
        // Host labels are not checked when the driver isn't loaded.
        check_import(buf.as_ptr(), 8, Device::CPU).unwrap();
        // Nothing of ours can be pending: ordering is a no-op.
        order_for_consumer(Device::cuda(0), ConsumerStream::Legacy).unwrap();
        let handle = [7_u8; IPC_HANDLE_BYTES];
        let err = ipc_open(&handle, Device::cuda(0), 64).unwrap_err();
        assert_eq!(err.code(), "ERR_CUDA_UNAVAILABLE");
        let host = Tensor::zeros(&[4], DataType::F32).unwrap();
        assert_eq!(ipc_handle(&host).unwrap_err().code(), "ERR_DEVICE_UNSUPPORTED");
    }

    #[test]
    fn ipc_handles_are_checked_before_any_cuda_call() {
        for len in [0, 63, 65, 128] {
            let err = ipc_open(&vec![0_u8; len], Device::cuda(0), 16).unwrap_err();
            assert_eq!(err.code(), "ERR_INVALID_ARGUMENT", "{len}");
            assert!(err.to_string().contains("64 bytes"), "{err}");
        }
        let err = ipc_open(&[0_u8; IPC_HANDLE_BYTES], Device::CPU, 16).unwrap_err();
        assert_eq!(err.code(), "ERR_DEVICE_UNSUPPORTED");
    }

    #[test]
    fn stream_handles_exist_for_cuda_devices_only() {
        let err = stream_handle(Device::CPU).unwrap_err();
        assert_eq!(err.code(), "ERR_DEVICE_UNSUPPORTED");
    }
}

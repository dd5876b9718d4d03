//! [`crate::cuda`] on cudarc's driver API: loading the driver without panicking, one primary
//! context and stream per device, allocations that free themselves, copies, events.
//!
//! Every `sys::cu*` function called here is listed in [`REQUIRED_SYMBOLS`] and resolved
//! before the driver is declared available: cudarc resolves symbols lazily and panics on a
//! missing one, and a panic must never reach a JS or Python caller. A unit test keeps the list
//! complete.

use std::ffi::{c_void, CStr};
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock, PoisonError};

use cudarc::driver::{sys, CudaContext};

use super::{ConsumerStream, MemoryType, PointerAttributes};
use crate::device::Device;
use crate::error::{Error, Result};
use crate::ffi::DLDeviceType;
use crate::stats;
use crate::storage::Storage;

/// Every driver function this module (and the part of cudarc it uses: `CudaContext::new`)
/// calls. All are exported by CUDA 12.8 and newer drivers (13.x included).
pub(super) const REQUIRED_SYMBOLS: &[&str] = &[
    "cuInit",
    "cuDriverGetVersion",
    "cuDeviceGetCount",
    "cuDeviceGet",
    "cuDeviceGetAttribute",
    "cuDevicePrimaryCtxRetain",
    "cuDevicePrimaryCtxRelease_v2",
    "cuCtxGetCurrent",
    "cuCtxSetCurrent",
    "cuCtxPushCurrent_v2",
    "cuCtxPopCurrent_v2",
    "cuStreamCreate",
    "cuStreamSynchronize",
    "cuStreamQuery",
    "cuStreamWaitEvent",
    "cuEventCreate",
    "cuEventRecord",
    "cuEventDestroy_v2",
    "cuMemAlloc_v2",
    "cuMemFree_v2",
    "cuMemHostAlloc",
    "cuMemFreeHost",
    "cuMemsetD8Async",
    "cuMemcpyAsync",
    "cuPointerGetAttributes",
    "cuMemGetAddressRange_v2",
    "cuIpcGetMemHandle",
    "cuIpcOpenMemHandle_v2",
    "cuIpcCloseMemHandle",
    "cuGetErrorName",
];

/// `CU_STREAM_LEGACY` of `cuda.h`: the legacy default stream of the current context, as a handle.
const CU_STREAM_LEGACY: sys::CUstream = 0x1 as sys::CUstream;
/// `CU_STREAM_PER_THREAD` of `cuda.h`: the calling thread's default stream, as a handle.
const CU_STREAM_PER_THREAD: sys::CUstream = 0x2 as sys::CUstream;

/// The loaded driver.
struct Driver {
    version: i32,
    /// One slot per device ordinal, filled on first use and never emptied.
    devices: Vec<Mutex<Option<&'static DeviceState>>>,
}

static DRIVER: OnceLock<std::result::Result<Driver, String>> = OnceLock::new();

/// What tensorbridge keeps per GPU. Created on first use and leaked on purpose: it lives as
/// long as the process (as the CUDA runtime's own per-device state does), so frees running
/// from late finalizers always find it.
struct DeviceState {
    /// The device's primary context, retained once (cudarc releases it on drop, which never
    /// happens: the state is leaked).
    ctx: std::sync::Arc<CudaContext>,
    /// tensorbridge's stream on this device: non-blocking, so it never waits implicitly on the
    /// legacy default stream; every ordering with other streams is an explicit event.
    stream: sys::CUstream,
    /// Whether `stream` may hold work that a consumer must be ordered after. Set after queueing
    /// work that isn't waited for (a zero fill); cleared by an export that finds the stream
    /// idle. Lets a device export skip the driver (`cuStreamQuery`) in the common case.
    maybe_busy: AtomicBool,
    /// Set for good once `stream` is handed out (`stream_handle`): others may queue work on it
    /// that `maybe_busy` can't see, so every export asks the driver from then on.
    exposed: AtomicBool,
}

// SAFETY: the raw handle (`CUstream`) is a process-wide driver object that the driver API
// lets any thread use; the state is never mutated after creation except through its atomics.
unsafe impl Send for DeviceState {}
// SAFETY: as above.
unsafe impl Sync for DeviceState {}

fn load() -> std::result::Result<Driver, String> {
    std::panic::catch_unwind(load_unguarded).unwrap_or_else(|_| {
        Err("loading the CUDA driver panicked (see the message printed above); this is a bug \
             in tensorbridge or cudarc, please report it"
            .to_string())
    })
}

fn load_unguarded() -> std::result::Result<Driver, String> {
    // SAFETY: only tries to dlopen (and closes again) the driver library under cudarc's
    // candidate names; loading the NVIDIA driver library runs no code that needs a contract.
    if !unsafe { sys::is_culib_present() } {
        return Err("the NVIDIA driver library (libcuda.so.1 / libcuda.so / nvcuda.dll) was \
                    not found; install the NVIDIA driver or put its directory on \
                    LD_LIBRARY_PATH"
            .to_string());
    }
    // SAFETY: a library was just found under one of the names `culib` tries, in the same
    // order, so it loads one instead of panicking (and a panic would be caught by `load`).
    let lib = unsafe { sys::culib() };
    let missing: Vec<&str> = REQUIRED_SYMBOLS
        .iter()
        .copied()
        // SAFETY: only looks the symbol up; the returned pointer is never called here.
        .filter(|name| unsafe { lib.get::<unsafe extern "C" fn()>(name.as_bytes()) }.is_err())
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "the NVIDIA driver library lacks {}: the driver is too old (tensorbridge needs a \
             CUDA 12.8 or newer driver)",
            missing.join(", ")
        ));
    }
    // SAFETY: every symbol called from here on was resolved above; flags must be 0.
    let r = unsafe { sys::cuInit(0) };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(format!(
            "cuInit failed with {} (no usable GPU, or a driver/kernel-module mismatch; check \
             nvidia-smi)",
            error_name(r)
        ));
    }
    let mut count = 0;
    // SAFETY: a valid out pointer.
    let r = unsafe { sys::cuDeviceGetCount(&mut count) };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(format!("cuDeviceGetCount failed with {}", error_name(r)));
    }
    if count <= 0 {
        return Err(
            "the CUDA driver sees no GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)".to_string()
        );
    }
    let mut version = 0;
    // SAFETY: a valid out pointer.
    let r = unsafe { sys::cuDriverGetVersion(&mut version) };
    if r != sys::CUresult::CUDA_SUCCESS {
        return Err(format!("cuDriverGetVersion failed with {}", error_name(r)));
    }
    let devices = (0..count).map(|_| Mutex::new(None)).collect();
    Ok(Driver { version, devices })
}

fn driver() -> Result<&'static Driver> {
    DRIVER.get_or_init(load).as_ref().map_err(|reason| Error::cuda_unavailable(reason.clone()))
}

pub(super) fn driver_status() -> std::result::Result<(), String> {
    DRIVER.get_or_init(load).as_ref().map(|_| ()).map_err(Clone::clone)
}

/// Whether the driver was loaded successfully already (without loading it).
pub(super) fn is_loaded() -> bool {
    matches!(DRIVER.get(), Some(Ok(_)))
}

pub(super) fn device_count() -> Result<usize> {
    Ok(driver()?.devices.len())
}

pub(super) fn driver_version() -> Result<i32> {
    Ok(driver()?.version)
}

pub(super) fn require_ordinal(ordinal: i32) -> Result<()> {
    let driver = driver()?;
    slot(driver, ordinal).map(|_| ())
}

fn slot(
    driver: &'static Driver,
    ordinal: i32,
) -> Result<&'static Mutex<Option<&'static DeviceState>>> {
    usize::try_from(ordinal).ok().and_then(|i| driver.devices.get(i)).ok_or_else(|| {
        Error::DeviceUnsupported {
            device: Device::cuda(ordinal).to_string(),
            reason: format!(
                "this machine has {} CUDA device(s): cuda:0 to cuda:{}",
                driver.devices.len(),
                driver.devices.len() - 1
            ),
        }
    })
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The state of GPU `ordinal`, created (primary context retained, stream made) on first use.
fn device(ordinal: i32) -> Result<&'static DeviceState> {
    let driver = driver()?;
    let mut slot = lock(slot(driver, ordinal)?);
    if let Some(state) = *slot {
        return Ok(state);
    }
    let previous = current_context()?;
    let ctx = CudaContext::new(ordinal as usize).map_err(|e| {
        let detail = format!(": retaining the primary context of cuda:{ordinal}");
        cuda_error(e.0, "cuDevicePrimaryCtxRetain", &detail)
    })?;
    // `CudaContext::new` made the primary context current on this thread; give the thread its
    // own context back (a caller's, or none).
    if previous != ctx.cu_ctx() {
        // SAFETY: `previous` was this thread's current context a moment ago (or NULL).
        check(unsafe { sys::cuCtxSetCurrent(previous) }, "cuCtxSetCurrent")?;
    }
    let stream = {
        let _current = Current::enter(ctx.cu_ctx())?;
        let mut stream = ptr::null_mut();
        let flags = sys::CUstream_flags::CU_STREAM_NON_BLOCKING as u32;
        // SAFETY: a valid out pointer, in the device's context.
        check(unsafe { sys::cuStreamCreate(&mut stream, flags) }, "cuStreamCreate")?;
        stream
    };
    let state: &'static DeviceState = Box::leak(Box::new(DeviceState {
        ctx,
        stream,
        maybe_busy: AtomicBool::new(false),
        exposed: AtomicBool::new(false),
    }));
    *slot = Some(state);
    Ok(state)
}

/// The state of GPU `ordinal` if tensorbridge already used it in this process.
fn existing_device(ordinal: i32) -> Option<&'static DeviceState> {
    let Some(Ok(driver)) = DRIVER.get() else { return None };
    let slot = usize::try_from(ordinal).ok().and_then(|i| driver.devices.get(i))?;
    *lock(slot)
}

fn current_context() -> Result<sys::CUcontext> {
    let mut ctx = ptr::null_mut();
    // SAFETY: a valid out pointer.
    check(unsafe { sys::cuCtxGetCurrent(&mut ctx) }, "cuCtxGetCurrent")?;
    Ok(ctx)
}

/// Makes a context current on this thread for a scope, restoring the previous one on drop.
struct Current {
    pushed: bool,
}

impl Current {
    fn enter(ctx: sys::CUcontext) -> Result<Current> {
        if current_context()? == ctx {
            return Ok(Current { pushed: false });
        }
        // SAFETY: `ctx` is a primary context retained for the life of the process.
        check(unsafe { sys::cuCtxPushCurrent_v2(ctx) }, "cuCtxPushCurrent")?;
        Ok(Current { pushed: true })
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        if self.pushed {
            let mut popped = ptr::null_mut();
            // SAFETY: pops exactly the context `enter` pushed on this thread.
            let _ = unsafe { sys::cuCtxPopCurrent_v2(&mut popped) };
        }
    }
}

fn error_name(r: sys::CUresult) -> String {
    let mut name: *const std::ffi::c_char = ptr::null();
    // SAFETY: a valid out pointer; the driver returns a static string or an error.
    let ok = unsafe { sys::cuGetErrorName(r, &mut name) } == sys::CUresult::CUDA_SUCCESS;
    if ok && !name.is_null() {
        // SAFETY: a NUL-terminated static string from the driver.
        unsafe { CStr::from_ptr(name) }.to_string_lossy().into_owned()
    } else {
        format!("CUresult {}", r as i32)
    }
}

fn cuda_error(r: sys::CUresult, call: &'static str, detail: &str) -> Error {
    Error::Cuda { call, code: r as i32, name: error_name(r), detail: detail.to_string() }
}

fn check(r: sys::CUresult, call: &'static str) -> Result<()> {
    if r == sys::CUresult::CUDA_SUCCESS {
        Ok(())
    } else {
        Err(cuda_error(r, call, ""))
    }
}

pub(super) fn stream_handle(ordinal: i32) -> Result<usize> {
    let state = device(ordinal)?;
    state.exposed.store(true, Ordering::SeqCst);
    Ok(state.stream as usize)
}

pub(super) fn pointer_attributes(ptr: usize) -> Result<PointerAttributes> {
    driver()?;
    let query = || {
        // Zeroed 8-byte slots: each is wider than what the driver writes (an unsigned int, an
        // int, a bool), so reading them back is well-defined whatever the width.
        let (mut memory_type, mut ordinal, mut managed) = (0_u64, 0_u64, 0_u64);
        let mut attributes = [
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_MEMORY_TYPE,
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_DEVICE_ORDINAL,
            sys::CUpointer_attribute::CU_POINTER_ATTRIBUTE_IS_MANAGED,
        ];
        let mut data: [*mut c_void; 3] = [
            ptr::addr_of_mut!(memory_type).cast(),
            ptr::addr_of_mut!(ordinal).cast(),
            ptr::addr_of_mut!(managed).cast(),
        ];
        // SAFETY: three attributes with three out pointers to live 8-byte slots; the address is
        // only looked up, never dereferenced.
        let r = unsafe {
            sys::cuPointerGetAttributes(
                3,
                attributes.as_mut_ptr(),
                data.as_mut_ptr(),
                ptr as sys::CUdeviceptr,
            )
        };
        (r, memory_type, ordinal, managed)
    };
    let (mut r, mut memory_type, mut ordinal, mut managed) = query();
    if r == sys::CUresult::CUDA_ERROR_INVALID_CONTEXT {
        // Some drivers want a current context for the query; any will do.
        let _current = Current::enter(device(0)?.ctx.cu_ctx())?;
        (r, memory_type, ordinal, managed) = query();
    }
    if r == sys::CUresult::CUDA_ERROR_INVALID_VALUE {
        // Documented to report unknown addresses as NULL attributes, but be lenient.
        return Ok(PointerAttributes::UNREGISTERED);
    }
    check(r, "cuPointerGetAttributes")?;
    Ok(PointerAttributes {
        memory_type: MemoryType::from_raw(memory_type as u32),
        device_ordinal: ordinal as u32 as i32,
        is_managed: managed != 0,
    })
}

/// Device memory from `cuMemAlloc`; freed once, on drop, from any thread.
struct DeviceAllocation {
    ptr: sys::CUdeviceptr,
    len: usize,
    state: &'static DeviceState,
}

impl Drop for DeviceAllocation {
    fn drop(&mut self) {
        // Any thread may get here (a DLPack deleter, a JS finalizer, a worker): make the
        // owning context current for the free and restore the thread's own after it.
        if let Ok(_current) = Current::enter(self.state.ctx.cu_ctx()) {
            // SAFETY: `ptr` came from `cuMemAlloc` in this context, and this is its one free
            // (the allocation is owned by exactly one storage and never cloned). `cuMemFree`
            // waits for queued work, so a consumer's kernels on other streams finish first.
            // An error (the driver shutting down at exit) leaves nothing we could do.
            let _ = unsafe { sys::cuMemFree_v2(self.ptr) };
        }
        stats::cuda_freed(self.len);
    }
}

/// Pinned host memory from `cuMemHostAlloc` (portable: pinned for every context).
struct PinnedAllocation {
    ptr: *mut c_void,
    len: usize,
    state: &'static DeviceState,
}

// SAFETY: pinned host memory may be freed from any thread; the pointer is never shared.
unsafe impl Send for PinnedAllocation {}
// SAFETY: `&PinnedAllocation` exposes nothing.
unsafe impl Sync for PinnedAllocation {}

impl Drop for PinnedAllocation {
    fn drop(&mut self) {
        if let Ok(_current) = Current::enter(self.state.ctx.cu_ctx()) {
            // SAFETY: `ptr` came from `cuMemHostAlloc`, and this is its one free.
            let _ = unsafe { sys::cuMemFreeHost(self.ptr) };
        }
        stats::cuda_freed(self.len);
    }
}

pub(super) fn alloc_device(ordinal: i32, bytes: usize, zeroed: bool) -> Result<Storage> {
    let state = device(ordinal)?;
    let device = Device::cuda(ordinal);
    if bytes == 0 {
        // SAFETY: an empty region at NULL is never read.
        return Ok(unsafe { Storage::allocation(ptr::null_mut(), 0, device, Box::new(())) });
    }
    let _current = Current::enter(state.ctx.cu_ctx())?;
    let mut dptr: sys::CUdeviceptr = 0;
    // SAFETY: a valid out pointer, in the device's context.
    let r = unsafe { sys::cuMemAlloc_v2(&mut dptr, bytes) };
    if r == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        return Err(Error::Allocation { bytes });
    }
    check(r, "cuMemAlloc")?;
    stats::cuda_allocated(bytes);
    let allocation = DeviceAllocation { ptr: dptr, len: bytes, state };
    if zeroed {
        // SAFETY: `bytes` bytes of fresh device memory at `dptr`; on our stream, so anything
        // later on it (copies, the event of an export) comes after. On error the allocation
        // drops and is freed.
        check(unsafe { sys::cuMemsetD8Async(dptr, 0, bytes, state.stream) }, "cuMemsetD8Async")?;
        // After the enqueue: an export that clears the flag before its query sees this fill.
        state.maybe_busy.store(true, Ordering::SeqCst);
    }
    // SAFETY: `bytes` bytes of device memory on `device`, freed only when `allocation` drops
    // with the storage; zeroed above, or fully written by the caller before use.
    Ok(unsafe { Storage::allocation(dptr as *mut u8, bytes, device, Box::new(allocation)) })
}

pub(super) fn alloc_pinned(bytes: usize, zeroed: bool) -> Result<Storage> {
    // Pinned memory is made in device 0's context but is `PORTABLE`: pinned for all of them.
    let state = device(0)?;
    let device = Device::new(DLDeviceType::CUDAHOST, 0);
    if bytes == 0 {
        // SAFETY: an empty region at NULL is never read.
        return Ok(unsafe { Storage::allocation(ptr::null_mut(), 0, device, Box::new(())) });
    }
    let ptr = pinned_host_alloc(state, bytes)?;
    stats::cuda_allocated(bytes);
    let allocation = PinnedAllocation { ptr, len: bytes, state };
    if zeroed {
        // SAFETY: `bytes` bytes of fresh, writable host memory.
        unsafe { ptr::write_bytes(ptr.cast::<u8>(), 0, bytes) };
    }
    // SAFETY: `bytes` bytes of pinned host memory, freed only when `allocation` drops with the
    // storage; zeroed above, or fully written by the caller before use.
    Ok(unsafe { Storage::allocation(ptr.cast(), bytes, device, Box::new(allocation)) })
}

fn pinned_host_alloc(state: &DeviceState, bytes: usize) -> Result<*mut c_void> {
    let _current = Current::enter(state.ctx.cu_ctx())?;
    let mut ptr = ptr::null_mut();
    // SAFETY: a valid out pointer, in a context.
    let r = unsafe { sys::cuMemHostAlloc(&mut ptr, bytes, sys::CU_MEMHOSTALLOC_PORTABLE) };
    if r == sys::CUresult::CUDA_ERROR_OUT_OF_MEMORY {
        return Err(Error::Allocation { bytes });
    }
    check(r, "cuMemHostAlloc")?;
    Ok(ptr)
}

/// A mapping of another process's device allocation, opened with `cuIpcOpenMemHandle` and
/// closed exactly once, on drop, with the owning context current.
pub(super) struct IpcGuard {
    ptr: sys::CUdeviceptr,
    state: &'static DeviceState,
}

impl Drop for IpcGuard {
    fn drop(&mut self) {
        // Any thread may get here (the last tensor over the mapping may drop anywhere): make
        // the context that opened the mapping current for the close, as for frees.
        if let Ok(_current) = Current::enter(self.state.ctx.cu_ctx()) {
            // SAFETY: `ptr` came from `cuIpcOpenMemHandle` in this context, and this is its
            // one close (the guard is created once per open and never cloned). An error (the
            // driver shutting down at exit) leaves nothing we could do.
            let _ = unsafe { sys::cuIpcCloseMemHandle(self.ptr) };
        }
    }
}

/// Opens another process's allocation on GPU `ordinal` from its 64-byte IPC handle. Returns
/// the mapped address, the size of the mapped allocation, and the guard that closes it.
pub(super) fn ipc_open(
    handle: &[u8; super::IPC_HANDLE_BYTES],
    ordinal: i32,
) -> Result<(usize, usize, IpcGuard)> {
    let state = device(ordinal)?;
    let _current = Current::enter(state.ctx.cu_ctx())?;
    let mut raw = sys::CUipcMemHandle_st { reserved: [0; 64] };
    for (dst, &src) in raw.reserved.iter_mut().zip(handle.iter()) {
        *dst = src as std::ffi::c_char;
    }
    let mut dptr: sys::CUdeviceptr = 0;
    let flags = sys::CUipcMem_flags::CU_IPC_MEM_LAZY_ENABLE_PEER_ACCESS as u32;
    // SAFETY: a valid out pointer and a handle passed by value, in the device's context. The
    // driver validates the handle's contents and fails (it does not crash) on a bad one.
    let r = unsafe { sys::cuIpcOpenMemHandle_v2(&mut dptr, raw, flags) };
    if r != sys::CUresult::CUDA_SUCCESS {
        let detail = format!(
            ": opening a CUDA IPC handle on cuda:{ordinal} (the handle must come from \
             cudaIpcGetMemHandle in another live process, for memory on this GPU)"
        );
        return Err(cuda_error(r, "cuIpcOpenMemHandle", &detail));
    }
    let guard = IpcGuard { ptr: dptr, state };
    let (mut base, mut size): (sys::CUdeviceptr, usize) = (0, 0);
    // SAFETY: valid out pointers; `dptr` is a live mapping in the current context. On error
    // the guard drops and closes the mapping.
    let r = unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, dptr) };
    check(r, "cuMemGetAddressRange")?;
    let len = size.saturating_sub((dptr - base) as usize);
    Ok((dptr as usize, len, guard))
}

/// The IPC handle of device memory at `ptr` on GPU `ordinal`, which must be the start of a
/// `cuMemAlloc` allocation (the handle always names a whole allocation).
pub(super) fn ipc_get_handle(ptr: usize, ordinal: i32) -> Result<[u8; super::IPC_HANDLE_BYTES]> {
    let state = device(ordinal)?;
    let _current = Current::enter(state.ctx.cu_ctx())?;
    let (mut base, mut size): (sys::CUdeviceptr, usize) = (0, 0);
    // SAFETY: valid out pointers; the address is only looked up.
    let r = unsafe { sys::cuMemGetAddressRange_v2(&mut base, &mut size, ptr as sys::CUdeviceptr) };
    check(r, "cuMemGetAddressRange")?;
    if base != ptr as sys::CUdeviceptr {
        return Err(Error::invalid_argument(format!(
            "an IPC handle names a whole allocation: {ptr:#x} is {} bytes into the allocation at \
             {base:#x}; use a tensor that starts its allocation",
            ptr as u64 - base
        )));
    }
    let mut raw = sys::CUipcMemHandle_st { reserved: [0; 64] };
    // SAFETY: a valid out pointer; `ptr` is the base of a live allocation (checked above).
    let r = unsafe { sys::cuIpcGetMemHandle(&mut raw, ptr as sys::CUdeviceptr) };
    check(r, "cuIpcGetMemHandle")?;
    let mut out = [0_u8; super::IPC_HANDLE_BYTES];
    for (dst, &src) in out.iter_mut().zip(raw.reserved.iter()) {
        *dst = src as u8;
    }
    Ok(out)
}

/// Records an event on `producer`'s stream and makes `waiter` wait on it. The event is
/// released at once (the driver keeps it until the wait is satisfied).
fn wait_on(waiter: sys::CUstream, producer: &DeviceState) -> Result<()> {
    let _current = Current::enter(producer.ctx.cu_ctx())?;
    let mut event = ptr::null_mut();
    let flags = sys::CUevent_flags::CU_EVENT_DISABLE_TIMING as u32;
    // SAFETY: a valid out pointer, in the producer's context.
    check(unsafe { sys::cuEventCreate(&mut event, flags) }, "cuEventCreate")?;
    // SAFETY: the event and our stream belong to the current context; `waiter` is a stream the
    // caller vouches for (the driver accepts events from another context or device).
    let result = check(unsafe { sys::cuEventRecord(event, producer.stream) }, "cuEventRecord")
        .and_then(
            // SAFETY: as above.
            |()| check(unsafe { sys::cuStreamWaitEvent(waiter, event, 0) }, "cuStreamWaitEvent"),
        );
    // SAFETY: the event was created above and is destroyed once; a pending wait keeps it alive
    // inside the driver.
    let _ = unsafe { sys::cuEventDestroy_v2(event) };
    result
}

pub(super) fn order_for_consumer(ordinal: i32, consumer: ConsumerStream) -> Result<()> {
    let Some(state) = existing_device(ordinal) else { return Ok(()) };
    // Nothing pending on our stream (the common case: our copies finish before they return)
    // means nothing to wait for: skip the event, so a device export costs what a host one
    // does. Anything queued later is not part of this export. Unless the stream was handed
    // out, the flag answers without the driver; it is cleared before the query, so a fill
    // queued meanwhile either shows in the query or sets the flag again.
    if !state.exposed.load(Ordering::SeqCst) && !state.maybe_busy.swap(false, Ordering::SeqCst) {
        return Ok(());
    }
    // SAFETY: our stream, alive for the process; the query only reads its state.
    if unsafe { sys::cuStreamQuery(state.stream) } == sys::CUresult::CUDA_SUCCESS {
        return Ok(());
    }
    state.maybe_busy.store(true, Ordering::SeqCst);
    let waiter = match consumer {
        ConsumerStream::NoSync => return Ok(()),
        ConsumerStream::Default | ConsumerStream::Legacy => CU_STREAM_LEGACY,
        ConsumerStream::PerThread => CU_STREAM_PER_THREAD,
        ConsumerStream::Handle(handle) => handle as sys::CUstream,
    };
    wait_on(waiter, state).map_err(|e| match e {
        Error::Cuda { call, code, name, .. } => Error::Cuda {
            call,
            code,
            name,
            detail: format!(
                ": making the consumer's stream {consumer} wait for cuda:{ordinal}; pass a \
                 live stream of the consumer's device"
            ),
        },
        other => other,
    })
}

/// # Safety
///
/// As [`super::copy`].
pub(super) unsafe fn copy(
    dst: *mut u8,
    dst_gpu: Option<i32>,
    src: *const u8,
    src_gpu: Option<i32>,
    bytes: usize,
) -> Result<()> {
    let issuing = src_gpu.or(dst_gpu).expect("checked by the caller");
    let state = device(issuing)?;
    // Validate the other GPU first (it exists), then order: work already queued on its stream
    // (a zero fill) must come before the copy.
    let other = match (src_gpu, dst_gpu) {
        (Some(a), Some(b)) if a != b => Some(device(if a == issuing { b } else { a })?),
        _ => None,
    };
    if bytes == 0 {
        return Ok(());
    }
    let _current = Current::enter(state.ctx.cu_ctx())?;
    if let Some(other) = other {
        wait_on(state.stream, other)?;
    }
    // With unified addressing (every 64-bit platform CUDA supports) the driver infers the
    // direction from the addresses, pageable host memory included. The driver stages pageable
    // memory itself, as fast as or faster than a double-buffered staging of ours did (256 MiB
    // on an H100, `bench/cuda.bench.mjs`: device to host 14.9-15.9 GB/s against 8.6-9.4;
    // host to device about 9 GB/s either way).
    // SAFETY: the ranges are valid per this function's contract.
    let r = unsafe {
        sys::cuMemcpyAsync(dst as sys::CUdeviceptr, src as sys::CUdeviceptr, bytes, state.stream)
    };
    let copied = check(r, "cuMemcpyAsync");
    // SAFETY: our stream; wait for the copy (and only for our stream).
    let synced = check(unsafe { sys::cuStreamSynchronize(state.stream) }, "cuStreamSynchronize");
    copied.and(synced)
}

#[cfg(test)]
mod tests {
    use super::REQUIRED_SYMBOLS;

    /// cudarc panics on a missing symbol the first time a function is called, so every
    /// `sys::cu*` call in this file must be in `REQUIRED_SYMBOLS` (checked at load time).
    #[test]
    fn every_driver_function_called_here_is_resolved_at_load_time() {
        let source = include_str!("driver.rs");
        let body = &source[..source.find("#[cfg(test)]").expect("test module")];
        let mut called: Vec<&str> = body
            .match_indices("sys::cu")
            .map(|(at, _)| {
                let name = &body[at + 5..];
                let end = name
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(name.len());
                &name[..end]
            })
            // `culib` is cudarc's loader, not a driver function; a bare `cu` is this comment.
            .filter(|name| name != &"culib" && name.len() > 2)
            .collect();
        called.sort_unstable();
        called.dedup();
        assert!(called.len() > 15, "{called:?}");
        for name in called {
            assert!(REQUIRED_SYMBOLS.contains(&name), "{name} is called but not resolved at load");
        }
    }
}

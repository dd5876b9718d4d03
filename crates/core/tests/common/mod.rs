//! Shared test helpers: a counting DLPack producer that can build well-formed and malformed
//! managed tensors, and environment switches for slow runs (valgrind).
#![allow(dead_code)]

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::ThreadId;

use tensorbridge_core::ffi::{
    DLDataType, DLDataTypeCode, DLDevice, DLDeviceType, DLManagedTensor, DLManagedTensorVersioned,
    DLPackVersion, DLTensor,
};

/// Whether tests should skip tensors of tens of MiB or more (set under valgrind).
pub fn skip_huge() -> bool {
    std::env::var_os("TENSORBRIDGE_SKIP_HUGE").is_some_and(|v| v != "0" && !v.is_empty())
}

/// Serialises tests in one binary that assert exact deltas of the global `stats` counters.
pub fn stats_lock() -> MutexGuard<'static, ()> {
    static LOCK: Mutex<()> = Mutex::new(());
    LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Counts deleter calls of one producer and remembers the threads they ran on.
#[derive(Clone, Default)]
pub struct Counter {
    calls: Arc<AtomicUsize>,
    threads: Arc<Mutex<Vec<ThreadId>>>,
}

impl Counter {
    pub fn new() -> Counter {
        Counter::default()
    }

    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    pub fn threads(&self) -> Vec<ThreadId> {
        self.threads.lock().unwrap().clone()
    }

    fn record(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.threads.lock().unwrap().push(std::thread::current().id());
    }
}

/// What the test producer puts in the descriptor. Fields that tests break on purpose are
/// plain values; the pointers are derived from them unless overridden.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Element bytes (stored 8-byte aligned).
    pub data: Vec<u8>,
    pub shape: Vec<i64>,
    /// `None` writes a NULL strides pointer.
    pub strides: Option<Vec<i64>>,
    pub dtype: DLDataType,
    pub device: DLDevice,
    pub byte_offset: u64,
    /// Overrides `ndim` (default: `shape.len()`).
    pub ndim: Option<i32>,
    pub null_shape: bool,
    pub null_data: bool,
    /// A data pointer to write verbatim (e.g. a fake device address).
    pub fake_data: Option<usize>,
    /// Offsets the shape pointer by this many bytes (to misalign it).
    pub shape_misalign: usize,
    pub version: DLPackVersion,
    pub flags: u64,
    pub null_deleter: bool,
}

impl Spec {
    /// A compact `u8` tensor holding `data` with the given shape.
    pub fn bytes(data: Vec<u8>, shape: &[i64]) -> Spec {
        Spec {
            data,
            shape: shape.to_vec(),
            strides: None,
            dtype: DLDataType { code: DLDataTypeCode::UINT, bits: 8, lanes: 1 },
            device: DLDevice { device_type: DLDeviceType::CPU, device_id: 0 },
            byte_offset: 0,
            ndim: None,
            null_shape: false,
            null_data: false,
            fake_data: None,
            shape_misalign: 0,
            version: DLPackVersion { major: 1, minor: 3 },
            flags: 0,
            null_deleter: false,
        }
    }

    /// A compact float32 `[2, 3]` tensor of 0..6, with explicit compact strides.
    pub fn f32_2x3() -> Spec {
        let data = (0..6).flat_map(|x| (x as f32).to_ne_bytes()).collect();
        Spec {
            strides: Some(vec![3, 1]),
            dtype: DLDataType { code: DLDataTypeCode::FLOAT, bits: 32, lanes: 1 },
            ..Spec::bytes(data, &[2, 3])
        }
    }
}

/// Everything one managed tensor of the test producer owns.
#[repr(C)]
struct Block<M> {
    managed: M,
    data: Vec<u64>,
    /// shape (plus padding for misalignment tests), then strides.
    dims: Vec<i64>,
    strides: Vec<i64>,
    counter: Counter,
}

unsafe extern "C" fn delete_legacy(p: *mut DLManagedTensor) {
    // SAFETY: the producer's own deleter: `p` is a leaked `Block<DLManagedTensor>`.
    let block = unsafe { Box::from_raw(p.cast::<Block<DLManagedTensor>>()) };
    block.counter.record();
}

unsafe extern "C" fn delete_versioned(p: *mut DLManagedTensorVersioned) {
    // SAFETY: the producer's own deleter: `p` is a leaked `Block<DLManagedTensorVersioned>`.
    let block = unsafe { Box::from_raw(p.cast::<Block<DLManagedTensorVersioned>>()) };
    block.counter.record();
}

fn fill(spec: &Spec, data: &mut Vec<u64>, dims: &mut Vec<i64>, strides: &mut Vec<i64>) -> DLTensor {
    let words = spec.data.len().div_ceil(8).max(1);
    data.resize(words, 0);
    // SAFETY: `data` has at least `spec.data.len()` bytes.
    unsafe {
        ptr::copy_nonoverlapping(
            spec.data.as_ptr(),
            data.as_mut_ptr().cast::<u8>(),
            spec.data.len(),
        )
    };
    dims.extend_from_slice(&spec.shape);
    dims.push(0); // room to misalign into
    if let Some(s) = &spec.strides {
        strides.extend_from_slice(s);
    }
    let data_ptr = match (spec.fake_data, spec.null_data) {
        (Some(addr), _) => addr as *mut c_void,
        (None, true) => ptr::null_mut(),
        (None, false) => data.as_mut_ptr().cast(),
    };
    DLTensor {
        data: data_ptr,
        device: spec.device,
        ndim: spec.ndim.unwrap_or(spec.shape.len() as i32),
        dtype: spec.dtype,
        shape: if spec.null_shape {
            ptr::null_mut()
        } else {
            dims.as_mut_ptr().cast::<u8>().wrapping_add(spec.shape_misalign).cast()
        },
        strides: if spec.strides.is_some() { strides.as_mut_ptr() } else { ptr::null_mut() },
        byte_offset: spec.byte_offset,
    }
}

/// A legacy managed tensor; its deleter bumps `counter`.
pub fn legacy(spec: &Spec, counter: &Counter) -> *mut DLManagedTensor {
    let mut block = Box::new(Block {
        managed: DLManagedTensor {
            dl_tensor: DLTensor {
                data: ptr::null_mut(),
                device: spec.device,
                ndim: 0,
                dtype: spec.dtype,
                shape: ptr::null_mut(),
                strides: ptr::null_mut(),
                byte_offset: 0,
            },
            manager_ctx: ptr::null_mut(),
            deleter: if spec.null_deleter { None } else { Some(delete_legacy) },
        },
        data: Vec::new(),
        dims: Vec::new(),
        strides: Vec::new(),
        counter: counter.clone(),
    });
    let b = &mut *block;
    b.managed.dl_tensor = fill(spec, &mut b.data, &mut b.dims, &mut b.strides);
    let raw = Box::into_raw(block);
    // SAFETY: `raw` is a fresh valid block.
    unsafe { (*raw).managed.manager_ctx = raw.cast() };
    raw.cast()
}

/// A versioned managed tensor; its deleter bumps `counter`.
pub fn versioned(spec: &Spec, counter: &Counter) -> *mut DLManagedTensorVersioned {
    let mut block = Box::new(Block {
        managed: DLManagedTensorVersioned {
            version: spec.version,
            manager_ctx: ptr::null_mut(),
            deleter: if spec.null_deleter { None } else { Some(delete_versioned) },
            flags: spec.flags,
            dl_tensor: DLTensor {
                data: ptr::null_mut(),
                device: spec.device,
                ndim: 0,
                dtype: spec.dtype,
                shape: ptr::null_mut(),
                strides: ptr::null_mut(),
                byte_offset: 0,
            },
        },
        data: Vec::new(),
        dims: Vec::new(),
        strides: Vec::new(),
        counter: counter.clone(),
    });
    let b = &mut *block;
    b.managed.dl_tensor = fill(spec, &mut b.data, &mut b.dims, &mut b.strides);
    let raw = Box::into_raw(block);
    // SAFETY: `raw` is a fresh valid block.
    unsafe { (*raw).managed.manager_ctx = raw.cast() };
    raw.cast()
}

/// Deletes a test-producer legacy tensor by hand (as its owner would), also when its deleter
/// field is NULL.
///
/// # Safety
///
/// `p` must come from [`legacy`] and not be deleted yet.
pub unsafe fn free_legacy(p: *mut DLManagedTensor) {
    // SAFETY: forwarded.
    unsafe { delete_legacy(p) }
}

/// Deletes a test-producer versioned tensor by hand.
///
/// # Safety
///
/// `p` must come from [`versioned`] and not be deleted yet.
pub unsafe fn free_versioned(p: *mut DLManagedTensorVersioned) {
    // SAFETY: forwarded.
    unsafe { delete_versioned(p) }
}

/// A deterministic byte pattern.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
}

/// Drop-counting keep-alive value for borrowed tensors.
pub struct DropGuard(pub Arc<AtomicUsize>);

impl Drop for DropGuard {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

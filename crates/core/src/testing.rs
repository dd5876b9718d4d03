//! A DLPack producer for tests: heap-allocated *foreign* managed tensors with caller-chosen
//! fields, as NumPy, PyTorch or a C library would hand them over.
//!
//! Not for production use. It exists so that every import rule (see [`crate::import`]) can
//! be exercised through the same entry points real producers use, from Rust
//! (`crates/core/tests/`) and from JavaScript (the binding's `debug.foreignTensor`), including
//! descriptors no well-behaved producer makes: non-C-order strides, another major version, a
//! NULL shape or data pointer, a misaligned shape pointer, a fake device address.
//!
//! # Ownership
//!
//! [`legacy`] and [`versioned`] (or [`make`]) allocate one heap block holding the managed
//! struct, an owned, 8-byte-aligned copy of the element bytes, the shape and the strides, and
//! return a raw pointer to the managed struct (its first field). The block's deleter takes the
//! block back into a `Box` and drops it, which frees everything at once (no manual frees, so
//! nothing leaks under valgrind), then counts the call:
//!
//! - on the [`Counter`] given at creation (calls and the threads they ran on), and
//! - process-wide, in [`stats`] (`created` / `deleted`), which is what the Node tests read.
//!
//! Whoever ends up owning the pointer must call the deleter exactly once: the importer on
//! success and after a major-version mismatch, the test itself otherwise ([`free_legacy`] /
//! [`free_versioned`] call the same deleter by hand, also when the struct's deleter field was
//! set to NULL on purpose). A pointer that is never deleted is a leak valgrind reports.
//!
//! The counters are global: tests asserting exact deltas of [`stats`] must not run alongside
//! other tests of the same process that create or delete test tensors.
//!
//! ```
//! use tensorbridge_core::testing::{self, Counter, Spec};
//! use tensorbridge_core::{DataType, Tensor};
//!
//! // A transposed 2×3 float32 tensor: strides [1, 2] are column-major.
//! let spec = Spec::new(DataType::F32, &[2, 3], Some(&[1, 2]))?;
//! let counter = Counter::new();
//! let raw = testing::versioned(&spec, &counter);
//! // SAFETY: `raw` is a fresh, live managed tensor that nobody else owns.
//! let err = unsafe { Tensor::from_dlpack_versioned(raw) }.unwrap_err();
//! assert_eq!(err.code(), "ERR_DLPACK_NOT_CONTIGUOUS");
//! // The import refused it, so the pointer is still ours to delete.
//! assert_eq!(counter.calls(), 0);
//! // SAFETY: made by `testing::versioned` and not deleted yet.
//! unsafe { testing::free_versioned(raw) };
//! assert_eq!(counter.calls(), 1);
//! # Ok::<(), tensorbridge_core::Error>(())
//! ```

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;

use crate::dtype::DataType;
use crate::error::{Error, Result};
use crate::ffi::{
    DLDataType, DLDataTypeCode, DLDevice, DLDeviceType, DLManagedTensor, DLManagedTensorVersioned,
    DLPackVersion, DLTensor,
};

static CREATED: AtomicU64 = AtomicU64::new(0);
static DELETED: AtomicU64 = AtomicU64::new(0);

/// Process-wide counts of the managed tensors this module made and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Managed tensors made by [`legacy`], [`versioned`] or [`make`].
    pub created: u64,
    /// Times one of their deleters ran (through the struct's `deleter` field or
    /// [`free_legacy`] / [`free_versioned`]).
    pub deleted: u64,
}

impl Stats {
    /// Test tensors whose deleter has not run yet.
    pub fn live(&self) -> u64 {
        self.created.saturating_sub(self.deleted)
    }
}

/// Reads the process-wide counters (each atomically; the pair is not one atomic snapshot).
pub fn stats() -> Stats {
    Stats { created: CREATED.load(Ordering::SeqCst), deleted: DELETED.load(Ordering::SeqCst) }
}

/// Counts the deleter calls of the tensors it was given to and remembers the threads they
/// ran on. Clones share the count.
#[derive(Clone, Debug, Default)]
pub struct Counter {
    calls: Arc<AtomicUsize>,
    threads: Arc<Mutex<Vec<ThreadId>>>,
}

impl Counter {
    /// A counter at zero.
    pub fn new() -> Counter {
        Counter::default()
    }

    /// Deleter calls so far.
    pub fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// The threads the deleters ran on, in call order.
    pub fn threads(&self) -> Vec<ThreadId> {
        self.threads.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn record(&self) {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.threads
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(std::thread::current().id());
    }
}

/// What the producer writes into the descriptor. Fields that tests break on purpose are plain
/// values; the pointers are derived from them unless a field overrides them.
#[derive(Clone, Debug)]
pub struct Spec {
    /// Element bytes, copied into an owned, 8-byte-aligned buffer (at least 8 bytes, so the
    /// data pointer is never NULL unless [`null_data`](Spec::null_data) asks for it).
    pub data: Vec<u8>,
    /// The shape.
    pub shape: Vec<i64>,
    /// Strides in elements; `None` writes a NULL strides pointer (compact row-major).
    pub strides: Option<Vec<i64>>,
    /// The element type, written verbatim (any code, bits and lanes).
    pub dtype: DLDataType,
    /// The device label, written verbatim.
    pub device: DLDevice,
    /// `byte_offset`, written verbatim.
    pub byte_offset: u64,
    /// Overrides `ndim` (default: `shape.len()`).
    pub ndim: Option<i32>,
    /// Writes a NULL shape pointer.
    pub null_shape: bool,
    /// Writes a NULL data pointer.
    pub null_data: bool,
    /// A data pointer to write verbatim (e.g. a fake device address); nothing is read there.
    pub fake_data: Option<usize>,
    /// Offsets the shape pointer by this many bytes (to misalign it).
    pub shape_misalign: usize,
    /// The version of a versioned tensor (default: 1.3); ignored by [`legacy`].
    pub version: DLPackVersion,
    /// The flags of a versioned tensor; ignored by [`legacy`].
    pub flags: u64,
    /// Writes a NULL deleter; the test must then free the tensor with [`free_legacy`] /
    /// [`free_versioned`].
    pub null_deleter: bool,
    /// A tensor whose memory the descriptor points into ([`Spec::over`]): the managed tensor
    /// holds this clone until its deleter runs, so that memory outlives it.
    pub keep_alive: Option<crate::Tensor>,
}

impl Spec {
    /// A compact `u8` CPU tensor holding `data` with the given shape (NULL strides).
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
            version: DLPackVersion::CURRENT,
            flags: 0,
            null_deleter: false,
            keep_alive: None,
        }
    }

    /// A compact float32 `[2, 3]` tensor of 0..6, with explicit compact strides `[3, 1]`.
    pub fn f32_2x3() -> Spec {
        let data = (0..6).flat_map(|x| (x as f32).to_ne_bytes()).collect();
        Spec {
            strides: Some(vec![3, 1]),
            dtype: DLDataType { code: DLDataTypeCode::FLOAT, bits: 32, lanes: 1 },
            ..Spec::bytes(data, &[2, 3])
        }
    }

    /// A CPU tensor of `dtype` with the given shape and strides (`None`: NULL strides), filled
    /// with [`pattern`] bytes over every element the strides can reach ([`span_elements`]).
    ///
    /// # Errors
    ///
    /// `ERR_DTYPE_UNSUPPORTED` for `BYTES` (no DLPack form), `ERR_SHAPE_NEGATIVE` for a
    /// negative dimension, `ERR_INVALID_ARGUMENT` when `strides` has the wrong length, and
    /// `ERR_SHAPE_OVERFLOW` when the span does not fit in memory.
    pub fn new(dtype: DataType, shape: &[i64], strides: Option<&[i64]>) -> Result<Spec> {
        let dl = dtype.to_dlpack()?;
        // `to_dlpack` refused the one type without an element size (BYTES).
        let size = dtype
            .element_size()
            .ok_or_else(|| Error::invalid_argument(format!("{dtype} has no fixed element size")))?;
        let span = span_elements(shape, strides)?;
        let bytes = span.checked_mul(size).ok_or_else(|| Error::overflow(shape, "byte size"))?;
        Ok(Spec {
            strides: strides.map(<[i64]>::to_vec),
            dtype: dl,
            ..Spec::bytes(pattern(bytes), shape)
        })
    }
}

impl Spec {
    /// A tensor of `dtype`, `shape` and `strides` over `tensor`'s memory, from its first byte:
    /// what a producer exporting the same memory again (NumPy's `x` twice, or `x[:2]`) hands
    /// over. The managed tensor keeps a clone of `tensor`, so the memory lives as long as it.
    ///
    /// # Errors
    ///
    /// As [`Spec::new`], and `ERR_INVALID_ARGUMENT` when the elements the strides reach don't
    /// fit in `tensor`'s bytes.
    pub fn over(
        tensor: &crate::Tensor,
        dtype: DataType,
        shape: &[i64],
        strides: Option<&[i64]>,
    ) -> Result<Spec> {
        let mut spec = Spec::new(dtype, shape, strides)?;
        let needed = spec.data.len();
        if needed > tensor.byte_len() {
            return Err(Error::invalid_argument(format!(
                "a {dtype} tensor of shape {shape:?} reaches {needed} bytes, but the tensor it \
                 would point into holds {}",
                tensor.byte_len()
            )));
        }
        spec.data = Vec::new();
        spec.fake_data = Some(tensor.data_ptr() as usize);
        spec.device = tensor.device().into();
        spec.keep_alive = Some(tensor.clone());
        Ok(spec)
    }
}

/// How many elements a tensor of `shape` and `strides` (`None`: compact) reaches from its
/// first element: 0 when a dimension is 0, else `1 + Σ (shape[i] - 1) · |strides[i]|`. The
/// buffer [`Spec::new`] allocates. Negative strides are counted by magnitude; the data pointer
/// is the buffer's start either way, so only import's refusal makes them safe (which is what
/// tests of them check).
///
/// # Errors
///
/// `ERR_SHAPE_NEGATIVE` for a negative dimension, `ERR_INVALID_ARGUMENT` when `strides` and
/// `shape` differ in length, `ERR_SHAPE_OVERFLOW` on overflow.
pub fn span_elements(shape: &[i64], strides: Option<&[i64]>) -> Result<usize> {
    if let Some((axis, &size)) = shape.iter().enumerate().find(|(_, &d)| d < 0) {
        return Err(Error::ShapeNegative { axis, size });
    }
    if shape.contains(&0) {
        return Ok(0);
    }
    let Some(strides) = strides else {
        return shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
            .ok_or_else(|| Error::overflow(shape, "element count"));
    };
    if strides.len() != shape.len() {
        return Err(Error::invalid_argument(format!(
            "{} strides for {} dimensions",
            strides.len(),
            shape.len()
        )));
    }
    shape
        .iter()
        .zip(strides)
        .try_fold(1usize, |n, (&d, &s)| {
            let reach = usize::try_from(d - 1)
                .ok()?
                .checked_mul(usize::try_from(s.unsigned_abs()).ok()?)?;
            n.checked_add(reach)
        })
        .ok_or_else(|| Error::overflow(shape, "strided span"))
}

/// A deterministic byte pattern (`(i · 31) ^ (i >> 8)`, truncated to bytes).
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(31) ^ (i >> 8)) as u8).collect()
}

/// A test tensor just made: the managed struct's address and the data pointer written into
/// its descriptor (before `byte_offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Made {
    /// The `DLManagedTensor*` or `DLManagedTensorVersioned*`, owned by whoever receives it.
    pub managed: *mut c_void,
    /// `dl_tensor.data`.
    pub data: *mut c_void,
}

/// Makes a legacy (`versioned == false`) or versioned managed tensor from `spec`; its deleter
/// counts on `counter` and in [`stats`].
pub fn make(spec: &Spec, versioned: bool, counter: &Counter) -> Made {
    if versioned {
        let managed = DLManagedTensorVersioned {
            version: spec.version,
            manager_ctx: ptr::null_mut(),
            deleter: if spec.null_deleter { None } else { Some(delete_versioned) },
            flags: spec.flags,
            dl_tensor: EMPTY,
        };
        build(spec, managed, counter)
    } else {
        let managed = DLManagedTensor {
            dl_tensor: EMPTY,
            manager_ctx: ptr::null_mut(),
            deleter: if spec.null_deleter { None } else { Some(delete_legacy) },
        };
        build(spec, managed, counter)
    }
}

/// A legacy managed tensor made from `spec`; its deleter counts on `counter` and in [`stats`].
pub fn legacy(spec: &Spec, counter: &Counter) -> *mut DLManagedTensor {
    make(spec, false, counter).managed.cast()
}

/// A versioned managed tensor made from `spec`; its deleter counts on `counter` and in
/// [`stats`].
pub fn versioned(spec: &Spec, counter: &Counter) -> *mut DLManagedTensorVersioned {
    make(spec, true, counter).managed.cast()
}

/// Deletes a legacy test tensor by hand, as its owner would, also when its deleter field is
/// NULL.
///
/// # Safety
///
/// `p` must come from [`legacy`] (or [`make`] with `versioned == false`) and not be deleted
/// yet; it is dangling afterwards.
pub unsafe fn free_legacy(p: *mut DLManagedTensor) {
    // SAFETY: forwarded from this function's contract.
    unsafe { delete_legacy(p) }
}

/// Deletes a versioned test tensor by hand, also when its deleter field is NULL.
///
/// # Safety
///
/// `p` must come from [`versioned`] (or [`make`] with `versioned == true`) and not be deleted
/// yet; it is dangling afterwards.
pub unsafe fn free_versioned(p: *mut DLManagedTensorVersioned) {
    // SAFETY: forwarded from this function's contract.
    unsafe { delete_versioned(p) }
}

const EMPTY: DLTensor = DLTensor {
    data: ptr::null_mut(),
    device: DLDevice { device_type: DLDeviceType::CPU, device_id: 0 },
    ndim: 0,
    dtype: DLDataType { code: DLDataTypeCode::UINT, bits: 8, lanes: 1 },
    shape: ptr::null_mut(),
    strides: ptr::null_mut(),
    byte_offset: 0,
};

/// Everything one test tensor owns. `repr(C)` with the managed struct first, so a pointer to
/// the block is a pointer to the managed struct and back.
#[repr(C)]
struct Block<M> {
    managed: M,
    /// The element bytes, in 8-byte words for alignment.
    data: Vec<u64>,
    /// The shape, plus one spare slot to misalign into.
    dims: Vec<i64>,
    strides: Vec<i64>,
    counter: Counter,
    /// [`Spec::keep_alive`]: dropped with the block.
    _keep_alive: Option<crate::Tensor>,
}

/// Access to the `DLTensor` inside either managed struct.
trait HasTensor {
    fn tensor_mut(&mut self) -> &mut DLTensor;
}

impl HasTensor for DLManagedTensor {
    fn tensor_mut(&mut self) -> &mut DLTensor {
        &mut self.dl_tensor
    }
}

impl HasTensor for DLManagedTensorVersioned {
    fn tensor_mut(&mut self) -> &mut DLTensor {
        &mut self.dl_tensor
    }
}

fn build<M: HasTensor>(spec: &Spec, managed: M, counter: &Counter) -> Made {
    let mut data = vec![0u64; spec.data.len().div_ceil(8).max(1)];
    // SAFETY: `data` holds at least `spec.data.len()` bytes, and the two buffers are distinct
    // allocations.
    unsafe {
        ptr::copy_nonoverlapping(
            spec.data.as_ptr(),
            data.as_mut_ptr().cast::<u8>(),
            spec.data.len(),
        );
    }
    let mut dims = spec.shape.clone();
    dims.push(0);
    let strides = spec.strides.clone().unwrap_or_default();
    let mut block = Box::new(Block {
        managed,
        data,
        dims,
        strides,
        counter: counter.clone(),
        _keep_alive: spec.keep_alive.clone(),
    });
    // Pointers into the vectors' heap buffers stay valid when the box moves.
    let b = &mut *block;
    let data_ptr: *mut c_void = match (spec.fake_data, spec.null_data) {
        (Some(addr), _) => addr as *mut c_void,
        (None, true) => ptr::null_mut(),
        (None, false) => b.data.as_mut_ptr().cast(),
    };
    *b.managed.tensor_mut() = DLTensor {
        data: data_ptr,
        device: spec.device,
        ndim: spec.ndim.unwrap_or(spec.shape.len() as i32),
        dtype: spec.dtype,
        shape: if spec.null_shape {
            ptr::null_mut()
        } else {
            b.dims.as_mut_ptr().cast::<u8>().wrapping_add(spec.shape_misalign).cast()
        },
        strides: if spec.strides.is_some() { b.strides.as_mut_ptr() } else { ptr::null_mut() },
        byte_offset: spec.byte_offset,
    };
    let raw = Box::into_raw(block);
    CREATED.fetch_add(1, Ordering::SeqCst);
    Made { managed: raw.cast(), data: data_ptr }
}

/// Reclaims and drops a block (freeing all it owns), then counts the call.
///
/// # Safety
///
/// `p` must be the managed struct of a live `Block<M>` leaked by [`build`], deleted only now.
unsafe fn reclaim<M>(p: *mut M) {
    // SAFETY: `Block<M>` is `repr(C)` with `managed` first, so `p` is the block's address, and
    // the caller guarantees it was leaked by `build` and not reclaimed before.
    let block = unsafe { Box::from_raw(p.cast::<Block<M>>()) };
    let counter = block.counter.clone();
    drop(block);
    counter.record();
    DELETED.fetch_add(1, Ordering::SeqCst);
}

unsafe extern "C" fn delete_legacy(p: *mut DLManagedTensor) {
    // SAFETY: this deleter is only installed in blocks made by `build`, and DLPack consumers
    // call it at most once.
    unsafe { reclaim(p) }
}

unsafe extern "C" fn delete_versioned(p: *mut DLManagedTensorVersioned) {
    // SAFETY: as in `delete_legacy`.
    unsafe { reclaim(p) }
}

#[cfg(test)]
mod tests {
    use std::sync::{Mutex, MutexGuard};

    use super::*;
    use crate::{Capsule, Tensor};

    /// The lib's unit tests run in parallel; these assert exact deltas of the global counters,
    /// and only they make test tensors in this binary.
    fn lock() -> MutexGuard<'static, ()> {
        static LOCK: Mutex<()> = Mutex::new(());
        LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    #[test]
    fn a_compact_tensor_imports_zero_copy_and_is_deleted_once_on_drop() {
        let _guard = lock();
        let before = stats();
        let spec = Spec::new(DataType::F32, &[2, 3], None).unwrap();
        let counter = Counter::new();
        let made = make(&spec, true, &counter);
        assert_eq!(stats().created - before.created, 1);
        // SAFETY: fresh and unowned.
        let t = unsafe { Tensor::from_dlpack_versioned(made.managed.cast()) }.unwrap();
        assert_eq!(t.data_ptr().cast::<c_void>(), made.data);
        assert_eq!(t.as_bytes().unwrap(), &pattern(24)[..]);
        assert_eq!(counter.calls(), 0);
        drop(t);
        assert_eq!(counter.calls(), 1);
        assert_eq!(stats().deleted - before.deleted, 1);
        assert_eq!(stats().live(), before.live());
    }

    #[test]
    fn strided_and_transposed_tensors_are_refused_and_stay_with_the_caller() {
        let _guard = lock();
        for strides in [[6, 1], [1, 2]] {
            let spec = Spec::new(DataType::F32, &[2, 3], Some(&strides)).unwrap();
            assert_eq!(spec.data.len(), span_elements(&[2, 3], Some(&strides)).unwrap() * 4);
            let counter = Counter::new();
            let raw = legacy(&spec, &counter);
            // SAFETY: fresh and unowned.
            let err = unsafe { Tensor::from_dlpack_legacy(raw) }.unwrap_err();
            assert_eq!(err.code(), "ERR_DLPACK_NOT_CONTIGUOUS");
            assert_eq!(counter.calls(), 0, "the caller still owns it");
            // SAFETY: made by `legacy`, not deleted.
            unsafe { free_legacy(raw) };
            assert_eq!(counter.calls(), 1);
        }
    }

    #[test]
    fn another_major_version_is_deleted_by_the_importer() {
        let _guard = lock();
        let before = stats();
        let spec = Spec { version: DLPackVersion { major: 2, minor: 0 }, ..Spec::f32_2x3() };
        let counter = Counter::new();
        let raw = versioned(&spec, &counter);
        // SAFETY: a live block of ours; only the address is used.
        let capsule = unsafe { Capsule::from_address(raw as usize, true) }.unwrap();
        assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_VERSION");
        assert_eq!(counter.calls(), 1);
        assert!(capsule.is_consumed());
        drop(capsule);
        assert_eq!(counter.calls(), 1, "exactly once");
        assert_eq!(stats().deleted - before.deleted, 1);
    }

    #[test]
    fn a_tensor_over_another_points_into_its_memory_and_keeps_it_alive() {
        let _guard = lock();
        let owner = Tensor::from_vec((0..16_u8).collect(), &[16], DataType::U8).unwrap();
        let weak_check = owner.clone();
        let spec = Spec::over(&owner, DataType::U8, &[8], None).unwrap();
        drop(owner);
        let counter = Counter::new();
        let made = make(&spec, false, &counter);
        drop(spec);
        assert_eq!(made.data, weak_check.data_ptr() as *mut c_void);
        // SAFETY: fresh and unowned.
        let t = unsafe { Tensor::from_dlpack_legacy(made.managed.cast()) }.unwrap();
        assert_eq!(t.as_bytes().unwrap(), &(0..8_u8).collect::<Vec<_>>()[..]);
        assert_eq!(t.device(), weak_check.device());
        drop(weak_check);
        // Only the imported tensor holds the memory now (through the producer's block).
        assert_eq!(t.as_bytes().unwrap()[7], 7);
        drop(t);
        assert_eq!(counter.calls(), 1);

        let small = Tensor::zeros(&[2], DataType::F32).unwrap();
        let err = Spec::over(&small, DataType::F32, &[3], None).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARGUMENT");
        let err = Spec::over(&small, DataType::F32, &[2], Some(&[2])).unwrap_err();
        assert_eq!(err.code(), "ERR_INVALID_ARGUMENT", "strides reaching past the end");
        assert!(Spec::over(&small, DataType::U8, &[8], None).is_ok());
    }

    #[test]
    fn a_dropped_capsule_deletes_on_whatever_thread_drops_it() {
        let _guard = lock();
        let counter = Counter::new();
        let raw = versioned(&Spec::f32_2x3(), &counter);
        // SAFETY: fresh and unowned.
        let capsule = unsafe { Capsule::from_address(raw as usize, true) }.unwrap();
        let id = std::thread::spawn(move || {
            drop(capsule);
            std::thread::current().id()
        })
        .join()
        .unwrap();
        assert_eq!(counter.threads(), vec![id]);
    }

    #[test]
    fn fields_are_written_verbatim() {
        let _guard = lock();
        let spec = Spec {
            flags: 3,
            byte_offset: 8,
            version: DLPackVersion { major: 1, minor: 7 },
            shape_misalign: 4,
            ..Spec::new(DataType::I64, &[4], Some(&[1])).unwrap()
        };
        let counter = Counter::new();
        let made = make(&spec, true, &counter);
        let raw = made.managed.cast::<DLManagedTensorVersioned>();
        // SAFETY: a live block of ours, deleted below.
        let m = unsafe { &*raw };
        assert_eq!((m.version.major, m.version.minor, m.flags), (1, 7, 3));
        assert_eq!(m.dl_tensor.byte_offset, 8);
        assert_eq!(m.dl_tensor.data, made.data);
        assert_eq!(m.dl_tensor.ndim, 1);
        assert_eq!(m.dl_tensor.shape as usize % 8, 4);
        assert!(m.deleter.is_some());
        // SAFETY: made by `make(.., true, ..)`, not deleted.
        unsafe { free_versioned(raw) };
        assert_eq!(counter.calls(), 1);
    }

    #[test]
    fn spans_cover_every_reachable_element() {
        assert_eq!(span_elements(&[2, 3], None).unwrap(), 6);
        assert_eq!(span_elements(&[2, 3], Some(&[6, 1])).unwrap(), 9);
        assert_eq!(span_elements(&[2, 3], Some(&[1, 2])).unwrap(), 6);
        assert_eq!(span_elements(&[2, 0], Some(&[1, 2])).unwrap(), 0);
        assert_eq!(span_elements(&[], None).unwrap(), 1);
        assert_eq!(span_elements(&[-1], None).unwrap_err().code(), "ERR_SHAPE_NEGATIVE");
        assert_eq!(span_elements(&[2], Some(&[1, 1])).unwrap_err().code(), "ERR_INVALID_ARGUMENT");
        assert_eq!(span_elements(&[i64::MAX, 3], None).unwrap_err().code(), "ERR_SHAPE_OVERFLOW");
        assert_eq!(
            Spec::new(DataType::Bytes, &[1], None).unwrap_err().code(),
            "ERR_DTYPE_UNSUPPORTED"
        );
    }
}

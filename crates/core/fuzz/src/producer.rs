//! A hostile but memory-honest DLPack producer: managed tensors with any header over real
//! heap buffers, whose deleter counts its calls and frees everything it owns.
//!
//! Each managed tensor is one heap block holding the managed struct (first, so the struct's
//! address is the block's), the element buffer, the shape and strides arrays and a shared
//! [`Calls`] counter. The deleter takes the block back and drops it, so once it has run the
//! buffer, the shape and the strides are freed memory: any later read of them by the importer
//! is a use-after-free that AddressSanitizer reports. A second call of the deleter panics
//! before touching the block (and would be a double free anyway).
//!
//! The buffer is allocated with exactly the length asked for, so ASan also reports any read
//! past its end.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use tensorbridge_core::ffi::{
    DLDataType, DLDevice, DLManagedTensor, DLManagedTensorVersioned, DLPackVersion, DLTensor,
};

/// Deleter calls of one managed tensor (shared with the block, so it outlives it).
#[derive(Clone, Debug, Default)]
pub struct Calls(Arc<AtomicUsize>);

impl Calls {
    /// Calls so far.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::SeqCst)
    }

    fn record(&self) {
        let before = self.0.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "a DLPack deleter was called twice");
    }
}

/// Where `data` points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Data {
    /// NULL.
    Null,
    /// `shift` bytes into the buffer (may be its end).
    Buffer { shift: usize },
    /// An address written verbatim; nothing may ever be read there.
    Fake(usize),
}

/// Every field of the header, as the producer writes it.
#[derive(Clone, Debug)]
pub struct Header {
    /// Versioned (`DLManagedTensorVersioned`) or legacy (`DLManagedTensor`).
    pub versioned: bool,
    /// The element buffer (owned by the block, freed by the deleter).
    pub buffer: Vec<u8>,
    /// Where `data` points.
    pub data: Data,
    /// `byte_offset`, verbatim.
    pub byte_offset: u64,
    /// `ndim`, verbatim. When it is in `0..=64`, `shape` (and `strides`, if any) must have
    /// exactly `ndim` entries: that much a producer must get right for the header to be read
    /// at all. Outside that range the importer must not read the arrays.
    pub ndim: i32,
    /// The shape array's contents.
    pub shape: Vec<i64>,
    /// The strides array's contents; `None` writes a NULL strides pointer.
    pub strides: Option<Vec<i64>>,
    /// Writes a NULL shape pointer.
    pub null_shape: bool,
    /// Offsets the shape pointer by this many bytes (0..8; non-zero misaligns it).
    pub shape_misalign: usize,
    /// Offsets the strides pointer by this many bytes (0..8).
    pub strides_misalign: usize,
    /// The element type, verbatim.
    pub dtype: DLDataType,
    /// The device, verbatim.
    pub device: DLDevice,
    /// The version (versioned only).
    pub version: DLPackVersion,
    /// The flags (versioned only).
    pub flags: u64,
    /// Writes a NULL deleter: the producer then frees the block itself ([`free`]).
    pub null_deleter: bool,
}

/// A managed tensor just made: its address, the `data` pointer written, and its counter.
#[derive(Debug)]
pub struct Made {
    /// The `DLManagedTensor*` / `DLManagedTensorVersioned*`.
    pub managed: *mut c_void,
    /// The `data` field as written.
    pub data: *mut u8,
    /// The buffer's start and length (still owned by the block).
    pub buffer: (*const u8, usize),
    /// The deleter's calls (also counts [`free`]).
    pub calls: Calls,
    /// Whether the block is versioned.
    pub versioned: bool,
}

const MAGIC: u64 = 0x7462_6675_7a7a_6564; // "tbfuzzed"

#[repr(C)]
struct Block<M> {
    managed: M,
    magic: u64,
    buffer: Box<[u8]>,
    /// `len + 1` words, so that a pointer misaligned by up to 7 bytes still has `len` words.
    shape: Box<[u64]>,
    strides: Box<[u64]>,
    calls: Calls,
}

/// Writes `values` as native-endian `i64`s `misalign` bytes into a fresh word array.
fn dims(values: &[i64], misalign: usize) -> (Box<[u64]>, *mut i64) {
    let mut words = vec![0_u64; values.len() + 1].into_boxed_slice();
    let base = words.as_mut_ptr().cast::<u8>().wrapping_add(misalign % 8);
    for (i, v) in values.iter().enumerate() {
        // SAFETY: `base + 8 * i + 8 <= words' end` since `misalign < 8` and there is one spare
        // word; unaligned writes are allowed by `write_unaligned`.
        unsafe { ptr::write_unaligned(base.add(8 * i).cast::<i64>(), *v) };
    }
    (words, base.cast())
}

/// Makes the managed tensor `header` describes. Whoever receives `Made::managed` owns it.
pub fn make(header: &Header) -> Made {
    let calls = Calls::default();
    let mut buffer = header.buffer.clone().into_boxed_slice();
    let buf_ptr = buffer.as_mut_ptr();
    let data = match header.data {
        Data::Null => ptr::null_mut(),
        Data::Buffer { shift } => buf_ptr.wrapping_add(shift.min(buffer.len())),
        Data::Fake(addr) => addr as *mut u8,
    };
    let (shape, shape_ptr) = dims(&header.shape, header.shape_misalign);
    let (strides, strides_ptr) = match &header.strides {
        Some(s) => dims(s, header.strides_misalign),
        None => (Box::new([]) as Box<[u64]>, ptr::null_mut()),
    };
    let dl_tensor = DLTensor {
        data: data.cast(),
        device: header.device,
        ndim: header.ndim,
        dtype: header.dtype,
        shape: if header.null_shape { ptr::null_mut() } else { shape_ptr },
        strides: strides_ptr,
        byte_offset: header.byte_offset,
    };
    let buffer_parts = (buf_ptr.cast_const(), buffer.len());
    let managed: *mut c_void = if header.versioned {
        let m = DLManagedTensorVersioned {
            version: header.version,
            manager_ctx: ptr::null_mut(),
            deleter: if header.null_deleter { None } else { Some(delete_versioned) },
            flags: header.flags,
            dl_tensor,
        };
        leak(Block { managed: m, magic: MAGIC, buffer, shape, strides, calls: calls.clone() })
    } else {
        let m = DLManagedTensor {
            dl_tensor,
            manager_ctx: ptr::null_mut(),
            deleter: if header.null_deleter { None } else { Some(delete_legacy) },
        };
        leak(Block { managed: m, magic: MAGIC, buffer, shape, strides, calls: calls.clone() })
    };
    Made { managed, data, buffer: buffer_parts, calls, versioned: header.versioned }
}

fn leak<M>(block: Block<M>) -> *mut c_void {
    Box::into_raw(Box::new(block)).cast()
}

/// Frees a block whose deleter the importer must not (or could not) call: one that was
/// refused, or made with a NULL deleter. Counts like the deleter.
///
/// # Safety
///
/// `made` must come from [`make`] and not be freed or deleted yet.
pub unsafe fn free(made: &Made) {
    if made.versioned {
        // SAFETY: forwarded from this function's contract.
        unsafe { delete_versioned(made.managed.cast()) }
    } else {
        // SAFETY: forwarded from this function's contract.
        unsafe { delete_legacy(made.managed.cast()) }
    }
}

/// # Safety
///
/// `p` must be a block made by [`make`] and not yet deleted.
unsafe fn delete<M>(p: *mut M) {
    assert!(!p.is_null(), "a DLPack deleter was called with NULL");
    // SAFETY: the block is live (caller's contract), and `magic` is read before anything else
    // so that a wrong pointer fails loudly rather than freeing garbage.
    let magic = unsafe { ptr::addr_of!((*p.cast::<Block<M>>()).magic).read() };
    assert_eq!(magic, MAGIC, "a DLPack deleter was called with a pointer it did not make");
    // SAFETY: the block was leaked by `leak` as a `Box<Block<M>>`; this is its one release.
    let block = unsafe { Box::from_raw(p.cast::<Block<M>>()) };
    block.calls.record();
    drop(block);
}

unsafe extern "C" fn delete_legacy(p: *mut DLManagedTensor) {
    // SAFETY: DLPack's contract: called once by the owner with the struct we made.
    unsafe { delete(p) }
}

unsafe extern "C" fn delete_versioned(p: *mut DLManagedTensorVersioned) {
    // SAFETY: as above.
    unsafe { delete(p) }
}

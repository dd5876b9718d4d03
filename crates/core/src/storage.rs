//! Who owns a tensor's bytes: us ([`StorageKind::Owned`][owned]), someone we keep alive
//! ([`StorageKind::Borrowed`][borrowed]), or a DLPack producer
//! ([`StorageKind::Foreign`][foreign]).
//!
//! A [`Storage`](crate::storage::Storage) is one contiguous region
//! `[as_ptr(), as_ptr() + len())` on one device. It is immutable once built and shared
//! through `Arc`; dropping the last reference releases the region exactly once: the owned
//! allocation is freed (host memory by the Rust allocator; CUDA device and pinned memory by
//! the driver, see [`crate::cuda`]), the borrowed keep-alive value is dropped, or the
//! producer's DLPack deleter is called.
//!
//! [owned]: crate::storage::StorageKind::Owned
//! [borrowed]: crate::storage::StorageKind::Borrowed
//! [foreign]: crate::storage::StorageKind::Foreign

use std::alloc::Layout;
use std::fmt;
use std::ptr;

use crate::device::Device;
use crate::error::{Error, Result};
use crate::export::ExportedTensor;
use crate::stats;

/// Alignment of [`StorageKind::Owned`] buffers: 256 bytes, the alignment `dlpack.h` asks of
/// `data` ("aligned to 256 bytes as in CUDA"); it also covers every SIMD width and cache line.
pub const OWNED_ALIGNMENT: usize = 256;

/// Which kind of owner a [`Storage`] has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageKind {
    /// An allocation of ours: [`OWNED_ALIGNMENT`]-aligned, zeroed (or fully written) when
    /// made, freed on drop. Host memory, or CUDA device / pinned host memory from the driver
    /// (whose alignment is at least 256 bytes as well).
    Owned,
    /// Host memory someone else owns (a `Vec`, a JS `ArrayBuffer`, a shared-memory mapping),
    /// kept alive by a value we drop when the storage drops.
    Borrowed,
    /// An imported DLPack managed tensor; its deleter runs exactly once, on drop.
    Foreign,
}

enum Owner {
    /// `layout` is `None` for zero bytes (nothing allocated; the pointer is NULL).
    Owned { layout: Option<Layout> },
    Borrowed {
        /// Never read: holding it is its purpose, and dropping it releases the memory.
        _keep_alive: Box<dyn Send + Sync>,
    },
    Foreign {
        /// Never read: dropping it calls the producer's deleter.
        _managed: ExportedTensor,
    },
    /// An allocation of ours made elsewhere than the Rust allocator (CUDA device or pinned
    /// memory); dropping the value frees it.
    Allocation {
        /// Never read: dropping it frees the memory, once.
        _free_on_drop: Box<dyn Send + Sync>,
    },
}

/// A contiguous region of tensor memory and its owner. `Send + Sync`; see the module docs.
pub struct Storage {
    ptr: *mut u8,
    len: usize,
    device: Device,
    owner: Owner,
}

// SAFETY: `Storage` hands out only its pointer and length, never references to the bytes, and
// it is immutable once built. What it owns is sendable and shareable: the owned allocation is
// plain memory; the keep-alive value is `Send + Sync` by its type; the DLPack managed tensor
// is released through a deleter DLPack allows to be called from any thread (see
// `ExportedTensor`, which is `Send`), and a shared `&Storage` never touches it.
unsafe impl Send for Storage {}
// SAFETY: as above: no method on `&Storage` mutates anything or reads through the pointers.
unsafe impl Sync for Storage {}

impl Storage {
    /// A new zeroed host allocation of `len` bytes, [`OWNED_ALIGNMENT`]-aligned.
    ///
    /// # Errors
    ///
    /// `ERR_SHAPE_OVERFLOW` when `len` rounded up to the alignment exceeds `isize::MAX`,
    /// `ERR_ALLOCATION` when the allocator refuses.
    pub fn zeroed(len: usize) -> Result<Storage> {
        Self::allocate(len, true)
    }

    /// A new host allocation holding a copy of `bytes`.
    ///
    /// # Errors
    ///
    /// As [`Storage::zeroed`].
    pub fn copy_of(bytes: &[u8]) -> Result<Storage> {
        let storage = Self::allocate(bytes.len(), false)?;
        if !bytes.is_empty() {
            // SAFETY: `storage.ptr` is a fresh allocation of `bytes.len()` bytes, so it is valid
            // for writes of that length and cannot overlap `bytes`, which we borrow.
            unsafe { ptr::copy_nonoverlapping(bytes.as_ptr(), storage.ptr, bytes.len()) };
        }
        Ok(storage)
    }

    /// A new host allocation of `len` bytes that the caller fills completely before anyone
    /// reads it (the destination of a copy).
    ///
    /// # Errors
    ///
    /// As [`Storage::zeroed`].
    pub(crate) fn for_overwrite(len: usize) -> Result<Storage> {
        Self::allocate(len, false)
    }

    fn allocate(len: usize, zeroed: bool) -> Result<Storage> {
        if len == 0 {
            return Ok(Storage {
                ptr: ptr::null_mut(),
                len: 0,
                device: Device::CPU,
                owner: Owner::Owned { layout: None },
            });
        }
        let layout = Layout::from_size_align(len, OWNED_ALIGNMENT).map_err(|_| {
            Error::ShapeOverflow { shape: vec![], what: format!("an allocation of {len} bytes") }
        })?;
        // SAFETY: `layout` has a non-zero size (len > 0 was checked above).
        let ptr = unsafe {
            if zeroed {
                std::alloc::alloc_zeroed(layout)
            } else {
                std::alloc::alloc(layout)
            }
        };
        if ptr.is_null() {
            return Err(Error::Allocation { bytes: len });
        }
        stats::owned_allocated(len);
        Ok(Storage { ptr, len, device: Device::CPU, owner: Owner::Owned { layout: Some(layout) } })
    }

    /// Wraps a `Vec`'s buffer without copying; the `Vec` is the keep-alive value
    /// ([`StorageKind::Borrowed`]). Its alignment is the allocator's, not [`OWNED_ALIGNMENT`].
    pub fn from_vec(mut bytes: Vec<u8>) -> Storage {
        let ptr = if bytes.is_empty() { ptr::null_mut() } else { bytes.as_mut_ptr() };
        let len = bytes.len();
        // Moving the `Vec` into the box moves its (pointer, length, capacity) header only; the
        // heap buffer `ptr` points to stays where it is until the box is dropped.
        Storage {
            ptr,
            len,
            device: Device::CPU,
            owner: Owner::Borrowed { _keep_alive: Box::new(bytes) },
        }
    }

    /// Wraps memory someone else owns; `keep_alive` is dropped when the storage drops (after
    /// the last tensor over it is gone), and not before.
    ///
    /// # Safety
    ///
    /// Until `keep_alive` is dropped, `[ptr, ptr + len)` must be a single live allocation on
    /// `device` (host memory readable by the CPU when `device.is_cpu()`), and it must not be
    /// freed or reused by anyone. `ptr` may be NULL only when `len == 0`. Writes by others
    /// while tensors over it are read are the caller's business (this is shared memory).
    pub unsafe fn borrowed(
        ptr: *mut u8,
        len: usize,
        device: Device,
        keep_alive: Box<dyn Send + Sync>,
    ) -> Storage {
        Storage { ptr, len, device, owner: Owner::Borrowed { _keep_alive: keep_alive } }
    }

    /// Wraps an imported managed tensor whose (validated) data region is `[ptr, ptr + len)`.
    ///
    /// # Safety
    ///
    /// `[ptr, ptr + len)` must be memory on `device` that `managed` keeps alive until its
    /// deleter runs.
    pub(crate) unsafe fn foreign(
        managed: ExportedTensor,
        ptr: *mut u8,
        len: usize,
        device: Device,
    ) -> Storage {
        Storage { ptr, len, device, owner: Owner::Foreign { _managed: managed } }
    }

    /// Wraps an allocation of ours that `free_on_drop` frees when dropped (after the last
    /// tensor over it is gone). Reported as [`StorageKind::Owned`].
    ///
    /// # Safety
    ///
    /// As [`Storage::borrowed`], and `[ptr, ptr + len)` must be initialised (zeroed or fully
    /// written) before anyone reads it.
    #[cfg_attr(not(feature = "cuda"), allow(dead_code))]
    pub(crate) unsafe fn allocation(
        ptr: *mut u8,
        len: usize,
        device: Device,
        free_on_drop: Box<dyn Send + Sync>,
    ) -> Storage {
        Storage { ptr, len, device, owner: Owner::Allocation { _free_on_drop: free_on_drop } }
    }

    /// Start of the region (NULL or dangling when it is empty).
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr
    }

    /// Length of the region in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the region has no bytes.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The device the region lives on.
    pub fn device(&self) -> Device {
        self.device
    }

    /// Who owns the region.
    pub fn kind(&self) -> StorageKind {
        match self.owner {
            Owner::Owned { .. } | Owner::Allocation { .. } => StorageKind::Owned,
            Owner::Borrowed { .. } => StorageKind::Borrowed,
            Owner::Foreign { .. } => StorageKind::Foreign,
        }
    }

    /// Whether `[ptr, ptr + len)` lies within this storage's region (addresses compared as
    /// integers; an empty range is always contained).
    pub(crate) fn contains(&self, ptr: *const u8, len: usize) -> bool {
        if len == 0 {
            return true;
        }
        let (start, addr) = (self.ptr as usize, ptr as usize);
        match (start.checked_add(self.len), addr.checked_add(len)) {
            (Some(region_end), Some(end)) => addr >= start && end <= region_end,
            _ => false,
        }
    }
}

impl Drop for Storage {
    fn drop(&mut self) {
        if let Owner::Owned { layout: Some(layout) } = self.owner {
            // SAFETY: `self.ptr` was returned by `alloc`/`alloc_zeroed` with exactly this
            // `layout` (see `allocate`), and this is the only place that frees it.
            unsafe { std::alloc::dealloc(self.ptr, layout) };
            stats::owned_freed(self.len);
        }
        // A borrowed keep-alive value, a foreign managed tensor or a driver allocation is
        // released when `owner` drops, right after this.
    }
}

impl fmt::Debug for Storage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Storage")
            .field("kind", &self.kind())
            .field("ptr", &self.ptr)
            .field("len", &self.len)
            .field("device", &self.device)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn storage_is_send_and_sync() {
        assert_send_sync::<Storage>();
    }

    #[test]
    fn owned_buffers_are_aligned_and_zeroed() {
        let s = Storage::zeroed(1000).unwrap();
        assert_eq!(s.as_ptr() as usize % OWNED_ALIGNMENT, 0);
        assert_eq!(s.kind(), StorageKind::Owned);
        // SAFETY: the storage owns 1000 initialised (zeroed) bytes at `as_ptr()`.
        let bytes = unsafe { std::slice::from_raw_parts(s.as_ptr(), s.len()) };
        assert!(bytes.iter().all(|&b| b == 0));
    }

    #[test]
    fn zero_byte_storage_allocates_nothing() {
        let s = Storage::zeroed(0).unwrap();
        assert!(s.as_ptr().is_null());
        assert!(s.is_empty());
    }

    #[test]
    fn copy_of_copies_the_bytes() {
        let s = Storage::copy_of(&[1, 2, 3]).unwrap();
        // SAFETY: the storage owns 3 initialised bytes at `as_ptr()`.
        let bytes = unsafe { std::slice::from_raw_parts(s.as_ptr(), 3) };
        assert_eq!(bytes, [1, 2, 3]);
    }

    #[test]
    fn from_vec_keeps_the_vec_buffer_in_place() {
        let v = vec![9_u8; 16];
        let p = v.as_ptr();
        let s = Storage::from_vec(v);
        assert_eq!(s.as_ptr().cast_const(), p);
        assert_eq!(s.kind(), StorageKind::Borrowed);
    }

    #[test]
    fn borrowed_keep_alive_is_dropped_once_with_the_last_reference() {
        struct Guard(Arc<AtomicUsize>);
        impl Drop for Guard {
            fn drop(&mut self) {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let drops = Arc::new(AtomicUsize::new(0));
        let mut buf = [0_u8; 8];
        // SAFETY: `buf` outlives the storage, which is dropped at the end of this test.
        let s = Arc::new(unsafe {
            Storage::borrowed(buf.as_mut_ptr(), 8, Device::CPU, Box::new(Guard(drops.clone())))
        });
        let s2 = Arc::clone(&s);
        drop(s);
        assert_eq!(drops.load(Ordering::SeqCst), 0);
        drop(s2);
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn contains_checks_the_range_against_the_region() {
        let s = Storage::zeroed(64).unwrap();
        let p = s.as_ptr();
        assert!(s.contains(p, 64));
        assert!(s.contains(p.wrapping_add(10), 54));
        assert!(!s.contains(p.wrapping_add(10), 55));
        assert!(!s.contains(p.wrapping_sub(1), 2));
        assert!(s.contains(ptr::null(), 0));
    }
}

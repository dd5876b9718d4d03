//! Handing several tensors to another thread of this process at once, by one number.
//!
//! A DLPack export per tensor (a managed struct built on one side, validated and imported on
//! the other, and a capsule and handle for each on both) is what a consumer outside this
//! library needs. Between two threads of one process that both use this crate, a [`Tensor`]
//! itself can cross: [`park`] puts a batch of tensors (shares of their storage, no bytes
//! copied) in a process-wide table and returns the batch's id, a plain integer that any
//! message can carry; [`claim`] takes the batch out, once, on the receiving thread.
//!
//! Nothing here is unsafe and nothing needs freeing by hand: an id is only a key, so an id
//! that was never parked, or that was claimed already, is an `ERR_DLPACK_CONSUMED` error,
//! never a dangling pointer; the tensors of a batch live in the table until one [`claim`]
//! (or [`discard`], for a batch whose receiver is gone) takes them, and are dropped as any
//! tensor when the claimer drops them. Ids are never reused.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Largest id handed out: ids stay exact as JS numbers (`2^53 - 1`).
pub const MAX_BATCH_ID: u64 = (1 << 53) - 1;

static NEXT: AtomicU64 = AtomicU64::new(1);
static PARKED: Mutex<Option<HashMap<u64, Vec<Tensor>>>> = Mutex::new(None);

/// The table; no critical section can leave it half-updated (each is one insert or
/// remove), so poisoning is ignored.
fn table() -> MutexGuard<'static, Option<HashMap<u64, Vec<Tensor>>>> {
    PARKED.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Parks `tensors` (an empty batch too) for one [`claim`], from any thread; returns the
/// batch's id (1 or more, at most [`MAX_BATCH_ID`]).
pub fn park(tensors: Vec<Tensor>) -> u64 {
    let id = NEXT.fetch_add(1, Ordering::Relaxed);
    // 2^53 batches at one a nanosecond take over 100 days of nothing else.
    assert!(id <= MAX_BATCH_ID, "tensor batch ids ran out");
    table().get_or_insert_with(HashMap::new).insert(id, tensors);
    id
}

/// Takes batch `id` out of the table, in the order it was parked.
///
/// # Errors
///
/// `ERR_DLPACK_CONSUMED` when `id` was claimed or discarded already, or never parked.
pub fn claim(id: u64) -> Result<Vec<Tensor>> {
    let batch = table().as_mut().and_then(|t| t.remove(&id));
    batch.ok_or(Error::Consumed)
}

/// Drops batch `id` if it is still parked (its receiver will never claim it); true if it was.
pub fn discard(id: u64) -> bool {
    // Dropped outside the lock: a tensor's drop may run a producer's deleter.
    let batch = table().as_mut().and_then(|t| t.remove(&id));
    batch.is_some()
}

/// How many batches are parked (not yet claimed or discarded).
pub fn parked() -> usize {
    table().as_ref().map_or(0, HashMap::len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DataType;

    #[test]
    fn a_batch_crosses_threads_without_a_copy_and_is_claimed_once() {
        let a = Tensor::zeros(&[4], DataType::F32).unwrap();
        let b = Tensor::zeros(&[2, 3], DataType::U8).unwrap();
        let id = park(vec![a.clone(), b.clone()]);
        let got = std::thread::spawn(move || claim(id).unwrap()).join().unwrap();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].data_ptr(), a.data_ptr());
        assert_eq!(got[1].data_ptr(), b.data_ptr());
        assert_eq!(got[1].shape(), &[2, 3]);
        assert_eq!(claim(id).unwrap_err().code(), "ERR_DLPACK_CONSUMED");
        assert!(!discard(id));
    }

    #[test]
    fn unknown_ids_are_errors_and_ids_are_not_reused() {
        assert_eq!(claim(0).unwrap_err().code(), "ERR_DLPACK_CONSUMED");
        assert_eq!(claim(MAX_BATCH_ID).unwrap_err().code(), "ERR_DLPACK_CONSUMED");
        let first = park(Vec::new());
        assert!(claim(first).unwrap().is_empty());
        let second = park(Vec::new());
        assert!(second > first);
        assert!(discard(second));
    }

    #[test]
    fn a_discarded_batch_releases_its_tensors() {
        let bytes = std::sync::Arc::new(vec![0u8; 64]);
        // SAFETY: the keep-alive is the Arc that owns the 64 bytes, so they outlive the tensor.
        let a = unsafe {
            Tensor::from_borrowed(
                bytes.as_ptr().cast_mut(),
                64,
                &[8],
                DataType::F64,
                crate::device::Device::CPU,
                true,
                Box::new(std::sync::Arc::clone(&bytes)),
            )
        }
        .unwrap();
        let id = park(vec![a]);
        // The parked batch alone keeps the memory's owner alive, until it is discarded.
        assert_eq!(std::sync::Arc::strong_count(&bytes), 2);
        assert!(discard(id));
        assert_eq!(std::sync::Arc::strong_count(&bytes), 1);
        assert_eq!(claim(id).unwrap_err().code(), "ERR_DLPACK_CONSUMED");
    }
}

//! [`Capsule`]: a consume-once, thread-safe holder of one DLPack managed tensor, the Rust side
//! of a Python `PyCapsule` or a JS capsule object.
//!
//! A capsule starts out owning its managed tensor. It ends in exactly one of three ways, and
//! the deleter runs exactly once across them:
//!
//! - [`consume`](Capsule::consume) imports it as a [`Tensor`] (the tensor then owns it);
//! - [`release`](Capsule::release) hands the raw pointer to a native consumer, which becomes
//!   responsible for the deleter;
//! - dropping an unconsumed capsule calls the deleter.
//!
//! After the first two the capsule is *consumed*: consuming or releasing again fails with
//! `ERR_DLPACK_CONSUMED`, never a double free (Triton's Python backend doesn't check this).
//! When import validation fails the capsule keeps ownership and stays unconsumed, so the
//! tensor is still released once when the capsule drops; the one exception is a versioned
//! tensor of another major version, whose deleter `consume` calls (DLPack requires it) and
//! which therefore leaves the capsule consumed.

use std::sync::{Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::export::{ExportedTensor, ImportError};
use crate::tensor::Tensor;

/// The Python capsule name of an unconsumed legacy DLPack capsule.
pub const CAPSULE_NAME_LEGACY: &str = "dltensor";
/// The Python capsule name of a consumed legacy DLPack capsule.
pub const CAPSULE_NAME_LEGACY_USED: &str = "used_dltensor";
/// The Python capsule name of an unconsumed versioned DLPack capsule.
pub const CAPSULE_NAME_VERSIONED: &str = "dltensor_versioned";
/// The Python capsule name of a consumed versioned DLPack capsule.
pub const CAPSULE_NAME_VERSIONED_USED: &str = "used_dltensor_versioned";

/// A consume-once holder of one DLPack managed tensor. `Send + Sync`: any thread may consume
/// it, and only one wins.
#[derive(Debug)]
pub struct Capsule {
    slot: Mutex<Option<ExportedTensor>>,
    address: usize,
    versioned: bool,
}

impl Capsule {
    /// A capsule owning `tensor`.
    pub fn new(tensor: ExportedTensor) -> Capsule {
        Capsule {
            address: tensor.as_ptr() as usize,
            versioned: tensor.is_versioned(),
            slot: Mutex::new(Some(tensor)),
        }
    }

    /// Takes ownership of a managed tensor given by address (e.g. a BigInt from JS, an
    /// integer from Python's `PyCapsule_GetPointer`).
    ///
    /// # Safety
    ///
    /// As [`ExportedTensor::from_raw`]: `addr` must be 0 or the address of a live managed
    /// tensor of the given ABI that nobody else owns or will delete.
    ///
    /// # Errors
    ///
    /// `ERR_DLPACK_NULL` for address 0, `ERR_DLPACK_INVALID` for a misaligned address; in
    /// both cases nothing was taken.
    pub unsafe fn from_address(addr: usize, versioned: bool) -> Result<Capsule> {
        // SAFETY: forwarded from this function's contract.
        let tensor = unsafe { ExportedTensor::from_raw(addr as *mut _, versioned) }?;
        Ok(Capsule::new(tensor))
    }

    /// The managed struct's address (kept after consumption, for diagnostics only: the memory
    /// may be gone).
    pub fn address(&self) -> usize {
        self.address
    }

    /// Whether the managed struct is versioned.
    pub fn is_versioned(&self) -> bool {
        self.versioned
    }

    /// Whether the capsule was consumed or released.
    pub fn is_consumed(&self) -> bool {
        self.lock().is_none()
    }

    /// The Python capsule name for the current state: `dltensor`, `dltensor_versioned`, or
    /// their `used_` forms once consumed.
    pub fn name(&self) -> &'static str {
        match (self.versioned, self.is_consumed()) {
            (false, false) => CAPSULE_NAME_LEGACY,
            (false, true) => CAPSULE_NAME_LEGACY_USED,
            (true, false) => CAPSULE_NAME_VERSIONED,
            (true, true) => CAPSULE_NAME_VERSIONED_USED,
        }
    }

    /// Imports the tensor (zero-copy); the returned tensor owns the managed tensor.
    ///
    /// # Errors
    ///
    /// `ERR_DLPACK_CONSUMED` when already consumed or released. Any import validation error
    /// (see [`crate::import`]); then the capsule keeps ownership and stays unconsumed, except
    /// for `ERR_DLPACK_VERSION`, after which the deleter has run and the capsule is consumed.
    pub fn consume(&self) -> Result<Tensor> {
        let mut slot = self.lock();
        let exported = slot.take().ok_or(Error::Consumed)?;
        match exported.into_tensor() {
            Ok(tensor) => Ok(tensor),
            Err(ImportError { error, handle }) => {
                *slot = handle;
                Err(error)
            }
        }
    }

    /// Gives up ownership to a native consumer (or another thread) and returns the address.
    /// The capsule is consumed and the deleter is **not** called: the receiver must call it.
    ///
    /// # Errors
    ///
    /// `ERR_DLPACK_CONSUMED` when already consumed or released.
    pub fn release(&self) -> Result<usize> {
        let exported = self.lock().take().ok_or(Error::Consumed)?;
        Ok(exported.into_raw() as usize)
    }

    /// The slot; a panic while it was held cannot leave it half-updated (every critical
    /// section is a single `take` or store), so poisoning is ignored.
    fn lock(&self) -> MutexGuard<'_, Option<ExportedTensor>> {
        self.slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl From<ExportedTensor> for Capsule {
    fn from(tensor: ExportedTensor) -> Capsule {
        Capsule::new(tensor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DataType;
    use crate::export::ExportOptions;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn capsule_is_send_and_sync() {
        assert_send_sync::<Capsule>();
    }

    #[test]
    fn second_consume_is_a_consumed_error() {
        let t = Tensor::zeros(&[2], DataType::F32).unwrap();
        let c = Capsule::new(t.to_dlpack(&ExportOptions::versioned()).unwrap());
        assert_eq!(c.name(), "dltensor_versioned");
        let back = c.consume().unwrap();
        assert_eq!(back.data_ptr(), t.data_ptr());
        assert!(c.is_consumed());
        assert_eq!(c.name(), "used_dltensor_versioned");
        assert_eq!(c.consume().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
        assert_eq!(c.release().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
    }

    #[test]
    fn release_then_from_address_round_trips() {
        let t = Tensor::zeros(&[3], DataType::U8).unwrap();
        let c = Capsule::new(t.to_dlpack(&ExportOptions::default()).unwrap());
        assert_eq!(c.name(), "dltensor");
        let addr = c.release().unwrap();
        assert_eq!(addr, c.address());
        assert!(c.is_consumed());
        // SAFETY: `addr` was released by `c`, so we are its only owner.
        let c2 = unsafe { Capsule::from_address(addr, false) }.unwrap();
        assert_eq!(c2.consume().unwrap().data_ptr(), t.data_ptr());
    }
}

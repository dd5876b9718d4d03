//! `NativeCapsule`: a consume-once DLPack capsule handle.

use std::sync::Arc;

use napi::bindgen_prelude::BigInt;
use napi::Result;
use napi_derive::napi;
use tensorbridge_core::{Capsule, ExportedTensor};

use crate::error::{to_js, Code};

/// A DLPack managed tensor that can be consumed exactly once. Collecting an
/// unconsumed capsule calls the producer's deleter once.
#[napi]
pub struct NativeCapsule {
    inner: Arc<Capsule>,
}

impl NativeCapsule {
    pub(crate) fn new(exported: ExportedTensor) -> Self {
        Self { inner: Arc::new(Capsule::new(exported)) }
    }

    pub(crate) fn inner(&self) -> &Capsule {
        &self.inner
    }
}

#[napi]
impl NativeCapsule {
    /// Takes ownership of the managed tensor at `address` (a
    /// `DLManagedTensor*`, or a `DLManagedTensorVersioned*` when `versioned`).
    ///
    /// The caller promises that the pointer is live and unowned: ownership
    /// passes to the capsule, which calls the deleter when consumed-and-dropped
    /// or collected. A wrong address can't be detected and crashes the process,
    /// as in every DLPack consumer.
    #[napi(factory)]
    pub fn from_address(address: BigInt, versioned: bool) -> Result<Self, Code> {
        let value = crate::options::parse_address(&address)?;
        // SAFETY: the caller of `fromAddress` vouches that the address is a live,
        // unowned managed tensor of the stated kind (documented above and in the
        // TS API); core rejects NULL.
        let capsule = unsafe { Capsule::from_address(value, versioned) }.map_err(to_js)?;
        Ok(Self { inner: Arc::new(capsule) })
    }

    /// Address of the managed struct, for native consumers.
    #[napi(getter)]
    pub fn address(&self) -> BigInt {
        BigInt::from(self.inner.address() as u64)
    }

    /// Whether the capsule holds a versioned (DLPack 1.x) managed tensor.
    #[napi(getter)]
    pub fn versioned(&self) -> bool {
        self.inner.is_versioned()
    }

    /// Whether the capsule was consumed or released.
    #[napi(getter)]
    pub fn consumed(&self) -> bool {
        self.inner.is_consumed()
    }

    /// Gives up ownership and returns the address; whoever receives it must
    /// consume it (for instance `fromAddress` in a worker) or the tensor leaks.
    #[napi]
    pub fn release(&self) -> Result<BigInt, Code> {
        let address = self.inner.release().map_err(to_js)?;
        Ok(BigInt::from(address as u64))
    }
}

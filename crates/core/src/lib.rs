//! Zero-copy DLPack tensors with one clear owner: the Rust core of tensorbridge.
//!
//! - [`Tensor`]: a dense, C-contiguous tensor over shared storage that is owned (aligned,
//!   zeroed), borrowed (kept alive by a value you give), or foreign (an imported DLPack
//!   tensor whose deleter runs exactly once).
//! - [`Tensor::to_dlpack`] exports a legacy or versioned DLPack managed tensor as an
//!   [`ExportedTensor`], an owning handle; [`ExportedTensor::into_tensor`] and
//!   `Tensor::from_dlpack_*` import one, validating every field first ([`import`] lists the
//!   checks and who owns the tensor after each failure).
//! - [`Capsule`]: a consume-once, thread-safe holder for handing a managed tensor across
//!   language or thread boundaries.
//! - CUDA ([`cuda`], default feature `cuda`): [`Tensor::empty_on`] allocates on `cuda:N` or in
//!   pinned host memory, [`Tensor::to_device`] / [`Tensor::copy_to`] copy between host and
//!   devices, imported CUDA pointers are checked with the driver, and
//!   [`Tensor::to_dlpack_with_stream`] orders the consumer's stream after ours. Without a
//!   driver every CUDA entry point returns `ERR_CUDA_UNAVAILABLE`.
//! - [`handover`]: several tensors handed to another thread of this process as one id.
//! - [`DataType`] (Triton's types), [`Device`], the [`layout`] rules (C order as NumPy,
//!   PyTorch and CuPy define it), the raw [`ffi`] structs, and [`Error`] with stable `ERR_*`
//!   codes.
//!
//! No Node.js here: `tensorbridge-node` is a thin binding over this crate.
//!
//! # Cargo features
//!
//! - `cuda` (default): CUDA through the driver API, loaded at run time; no toolkit needed to
//!   build, and `ERR_CUDA_UNAVAILABLE` on machines without a driver.
//! - `dlpark`: conversions to and from [dlpark](https://crates.io/crates/dlpark)'s safe
//!   types (the `dlpark_interop` module).
//! - `testing`: a DLPack producer of deliberately malformed foreign tensors, for tests of
//!   code that imports DLPack. Not for production builds.
//!
//! ```
//! use tensorbridge_core::{Capsule, DataType, ExportOptions, Tensor};
//!
//! let bytes: Vec<u8> = [1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0]
//!     .iter()
//!     .flat_map(|x| x.to_ne_bytes())
//!     .collect();
//! let tensor = Tensor::from_vec(bytes, &[2, 3], DataType::F32)?;
//!
//! // Export as a versioned DLPack tensor, pass it through a capsule, import it back.
//! let capsule = Capsule::new(tensor.to_dlpack(&ExportOptions::versioned())?);
//! let back = capsule.consume()?;
//! assert_eq!(back.shape(), &[2, 3]);
//! assert_eq!(back.data_ptr(), tensor.data_ptr()); // zero-copy
//! assert_eq!(back.as_bytes()?, tensor.as_bytes()?);
//!
//! // A capsule transfers ownership once.
//! assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
//! # Ok::<(), tensorbridge_core::Error>(())
//! ```
#![deny(unsafe_op_in_unsafe_fn)]
// docs.rs builds with `--cfg docsrs` (Cargo.toml's metadata) on nightly: label feature-gated items.
#![cfg_attr(docsrs, feature(doc_cfg))]
// Module docs spell out link targets (`[`Storage`](crate::storage::Storage)`) so that they
// read the same wherever the text is shown.
#![allow(rustdoc::redundant_explicit_links)]

// Each module carries its own `//!` docs; outer `///` docs here would be
// merged into them and break their intra-doc links (resolved from this scope).
pub mod capsule;
pub mod cuda;
pub mod device;
pub mod dtype;
pub mod error;
pub mod export;
pub mod ffi;
pub mod handover;
pub mod import;
pub mod layout;
pub mod stats;
pub mod storage;
pub mod tensor;
#[cfg(feature = "testing")]
pub mod testing;

#[cfg(feature = "dlpark")]
#[cfg_attr(docsrs, doc(cfg(feature = "dlpark")))]
pub mod dlpark_interop;

pub use capsule::Capsule;
pub use device::Device;
pub use dtype::DataType;
pub use error::{Error, Result};
pub use export::{ExportOptions, ExportedTensor, ImportError, PreparedExport};
pub use tensor::Tensor;

/// The crate README's example, compiled and run as a doctest so that it cannot
/// drift from the API (crates.io shows the README; nothing else builds it).
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

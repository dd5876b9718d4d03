//! Foreign DLPack tensors for the ava tests (`debug.foreignTensor` in `src/debug.ts`).
//!
//! A thin shell over [`tensorbridge_core::testing`]: it makes a heap-allocated managed tensor
//! with the shape, strides, dtype, version and flags the test asks for, as another library
//! would, and returns its address for `DLPackCapsule.fromAddress`. Its deleter frees
//! everything it owns and counts in [`testing_foreign_stats`]. Not for production use: the
//! address is owned by whoever receives it, and a test that never hands it to a capsule leaks
//! it.

use napi::bindgen_prelude::{BigInt, Uint8Array};
use napi::Result;
use napi_derive::napi;
use tensorbridge_core::ffi::DLPackVersion;
use tensorbridge_core::testing::{self, Counter, Spec};

use crate::error::{js_error, to_js, Code};
use crate::handles::with_tensor;
use crate::options::parse_dtype;

/// A managed tensor made by `testingForeignTensor`.
#[napi(object)]
pub struct BindingForeignTensor {
    /// The `DLManagedTensor*` (or `DLManagedTensorVersioned*`), for `fromAddress`.
    pub address: BigInt,
    /// `dl_tensor.data`: where the element bytes are (before `byte_offset`).
    pub data: BigInt,
}

/// Process-wide counts of the foreign test tensors made and deleted.
#[napi(object)]
pub struct BindingForeignStats {
    /// Managed tensors made.
    pub created: f64,
    /// Deleter calls.
    pub deleted: f64,
}

/// Makes a foreign CPU managed tensor of `dtype` and `shape`, with `strides` in elements
/// (`null`: a NULL strides pointer), owning a copy of `data` (`null`: a byte pattern over
/// every element the strides reach). `version` (`[major, minor]`) and `flags` are written
/// into a versioned tensor; `byte_offset` verbatim. With `over` (a tensor handle) it points
/// into that tensor's memory instead, from its first byte, and keeps it alive.
#[napi]
#[allow(clippy::too_many_arguments)] // one positional argument per descriptor field
pub fn testing_foreign_tensor(
    shape: Vec<i64>,
    strides: Option<Vec<i64>>,
    dtype: String,
    versioned: bool,
    version: Option<Vec<u32>>,
    flags: Option<u32>,
    byte_offset: Option<u32>,
    data: Option<Uint8Array>,
    over: Option<f64>,
) -> Result<BindingForeignTensor, Code> {
    let dtype = parse_dtype(&dtype)?;
    let mut spec = match over {
        Some(id) => {
            if data.is_some() {
                return Err(js_error(
                    "ERR_INVALID_ARGUMENT",
                    "a foreign tensor over another tensor's memory takes no data of its own",
                ));
            }
            let tensor = with_tensor(id, |t| Ok(t.clone()))?;
            Spec::over(&tensor, dtype, &shape, strides.as_deref()).map_err(to_js)?
        }
        None => Spec::new(dtype, &shape, strides.as_deref()).map_err(to_js)?,
    };
    if let Some(data) = data {
        spec.data = data.to_vec();
    }
    if let Some(version) = version {
        let [major, minor] = version[..] else {
            return Err(js_error(
                "ERR_INVALID_ARGUMENT",
                format!("version must be [major, minor], got {} numbers", version.len()),
            ));
        };
        spec.version = DLPackVersion { major, minor };
    }
    spec.flags = u64::from(flags.unwrap_or(0));
    spec.byte_offset = u64::from(byte_offset.unwrap_or(0));
    let made = testing::make(&spec, versioned, &Counter::new());
    Ok(BindingForeignTensor {
        address: BigInt::from(made.managed as u64),
        data: BigInt::from(made.data as u64),
    })
}

/// Reads the counters of the foreign test tensors.
#[napi]
pub fn testing_foreign_stats() -> BindingForeignStats {
    let s = testing::stats();
    BindingForeignStats { created: s.created as f64, deleted: s.deleted as f64 }
}

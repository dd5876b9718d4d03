//! [`crate::cuda`] in a build without the `cuda` feature: every entry point reports
//! `ERR_CUDA_UNAVAILABLE`, and nothing is loaded.

use super::ConsumerStream;
use crate::error::{Error, Result};
use crate::storage::Storage;

const REASON: &str = "this build of tensorbridge-core has no CUDA support (enable its `cuda` \
                      feature, which is on by default)";

fn unavailable() -> Error {
    Error::cuda_unavailable(REASON)
}

pub(super) fn driver_status() -> std::result::Result<(), String> {
    Err(REASON.to_string())
}

pub(super) fn is_loaded() -> bool {
    false
}

pub(super) fn device_count() -> Result<usize> {
    Err(unavailable())
}

pub(super) fn driver_version() -> Result<i32> {
    Err(unavailable())
}

pub(super) fn require_ordinal(_ordinal: i32) -> Result<()> {
    Err(unavailable())
}

pub(super) fn stream_handle(_ordinal: i32) -> Result<usize> {
    Err(unavailable())
}

pub(super) fn pointer_attributes(_ptr: usize) -> Result<super::PointerAttributes> {
    Err(unavailable())
}

pub(super) fn alloc_device(_ordinal: i32, _bytes: usize, _zeroed: bool) -> Result<Storage> {
    Err(unavailable())
}

pub(super) fn alloc_pinned(_bytes: usize, _zeroed: bool) -> Result<Storage> {
    Err(unavailable())
}

/// # Safety
///
/// None needed: nothing is read or written.
pub(super) unsafe fn copy(
    _dst: *mut u8,
    _dst_gpu: Option<i32>,
    _src: *const u8,
    _src_gpu: Option<i32>,
    _bytes: usize,
) -> Result<()> {
    Err(unavailable())
}

pub(super) fn order_for_consumer(_ordinal: i32, _consumer: ConsumerStream) -> Result<()> {
    Ok(())
}

/// Never made without CUDA.
pub(super) struct IpcGuard(#[allow(dead_code)] std::convert::Infallible);

pub(super) fn ipc_open(
    _handle: &[u8; super::IPC_HANDLE_BYTES],
    _ordinal: i32,
) -> Result<(usize, usize, IpcGuard)> {
    Err(unavailable())
}

pub(super) fn ipc_get_handle(_ptr: usize, _ordinal: i32) -> Result<[u8; super::IPC_HANDLE_BYTES]> {
    Err(unavailable())
}

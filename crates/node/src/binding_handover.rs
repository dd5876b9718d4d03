//! `tensors*` functions: several tensor handles handed to another thread at once, as one
//! batch id (core's [`tensorbridge_core::handover`]).

use napi::{Env, Result};
use napi_derive::napi;
use tensorbridge_core::handover::{self, MAX_BATCH_ID};
use tensorbridge_core::storage::StorageKind;

use crate::error::{js_error, to_js, Code, INVALID_ARGUMENT};
use crate::handles::{self, with_tensor};

fn batch_id(id: f64) -> Result<u64, Code> {
    if id.is_finite() && id >= 1.0 && id.fract() == 0.0 && id <= MAX_BATCH_ID as f64 {
        Ok(id as u64)
    } else {
        Err(js_error(INVALID_ARGUMENT, format!("{id} is not a tensor batch id")))
    }
}

/// Parks the tensors behind handles `ids` (shares of their memory, not copies) for one
/// `tensorsClaim` in any thread of this process; returns the batch's id. The handles stay
/// usable here.
#[napi]
pub fn tensors_park(ids: Vec<f64>) -> Result<f64, Code> {
    let mut tensors = Vec::with_capacity(ids.len());
    for id in ids {
        tensors.push(with_tensor(id, |t| Ok(t.clone()))?);
    }
    Ok(handover::park(tensors) as f64)
}

/// Takes batch `id` (from `tensorsPark`, in this thread or another) and returns a new tensor
/// handle for each of its tensors, in order.
#[napi]
pub fn tensors_claim(env: Env, id: f64) -> Result<Vec<f64>, Code> {
    let tensors = handover::claim(batch_id(id)?).map_err(to_js)?;
    let mut ids = Vec::with_capacity(tensors.len());
    for tensor in tensors {
        // As for a capsule's import: only memory from outside this library is new to V8 here.
        let external = tensor.device().is_cpu() && tensor.storage_kind() == StorageKind::Foreign;
        ids.push(handles::insert_tensor(&env, tensor, external)?);
    }
    Ok(ids)
}

/// Drops batch `id` if nobody claimed it (its receiver is gone); true if it was still parked.
#[napi]
pub fn tensors_discard(id: f64) -> Result<bool, Code> {
    Ok(handover::discard(batch_id(id)?))
}

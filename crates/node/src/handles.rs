//! Handle tables: JS refers to native tensors and capsules by number.
//!
//! Why not napi classes: creating a napi class instance costs about 1 µs here
//! (a JS constructor call, `napi_wrap`, and a weak V8 reference for the
//! finalizer), which made one DLPack round trip cost 4 µs. A numeric handle
//! costs one hash-map insert, and the JS side frees it through a
//! `FinalizationRegistry` (about 50 ns to register) or an explicit
//! `dispose()`. `src/native.ts` holds the JS half of this scheme.
//!
//! Ownership: a table entry owns one share of a core tensor (or one capsule).
//! Ids are never reused, so a late finalizer for a disposed id is a no-op and
//! can't free a newer entry. Tables are per thread, as JS objects are per
//! isolate: a worker's entries are dropped when its thread exits, which also
//! covers worker termination, where finalizers don't run.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::Arc;

use napi::{Env, Result};
use tensorbridge_core::cuda::IpcMapping;
use tensorbridge_core::{Capsule, PreparedExport, Tensor};

use crate::error::{js_error, Code};

struct TensorEntry {
    held: Held,
    /// Bytes reported to V8 with `adjust_external_memory`, returned on free.
    external_bytes: i64,
}

/// What a tensor handle holds: a tensor, or the prepared first half of a DLPack export, which
/// JS consumes in-process as the tensor it will be (`fromDlpack`) or turns into a managed
/// struct for a native consumer (`capsuleFromPrepared`). Either way it reads as a tensor.
enum Held {
    Tensor(Tensor),
    Prepared(PreparedExport),
}

impl TensorEntry {
    fn tensor(&self) -> &Tensor {
        match &self.held {
            Held::Tensor(t) => t,
            Held::Prepared(p) => p.tensor(),
        }
    }
}

/// Hashes the sequential ids by one multiplication (Fibonacci hashing): the
/// default SipHash guards against adversarial keys, which ids made here are
/// not, at several times the cost.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type IdMap<V> = HashMap<u64, V, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
struct Tables {
    next: u64,
    tensors: IdMap<TensorEntry>,
    capsules: IdMap<Arc<Capsule>>,
    mappings: IdMap<Arc<IpcMapping>>,
}

impl Tables {
    fn next_id(&mut self) -> u64 {
        self.next += 1;
        self.next
    }
}

/// Picks one of the shared-handle tables (capsules, mappings) out of [`Tables`].
type Pick<V> = fn(&mut Tables) -> &mut IdMap<Arc<V>>;

/// Stores a shared handle in the table `pick` names and returns its id.
fn insert_shared<V>(pick: Pick<V>, value: Arc<V>) -> f64 {
    TABLES.with_borrow_mut(|t| {
        let id = t.next_id();
        pick(t).insert(id, value);
        id as f64
    })
}

/// The shared handle behind `id`, or `missing()` when it was freed. A shared
/// borrow, so it may be called while a [`with_tensor`] closure runs.
fn get_shared<V>(
    pick: fn(&Tables) -> &IdMap<Arc<V>>,
    id: f64,
    missing: fn() -> napi::Error<Code>,
) -> Result<Arc<V>, Code> {
    let key = key(id)?;
    TABLES.with_borrow(|t| pick(t).get(&key).cloned()).ok_or_else(missing)
}

/// Removes the handle behind `id` (a no-op when already freed) and drops it
/// outside the table borrow, since dropping may run a deleter.
fn free_shared<V>(pick: Pick<V>, id: f64) {
    let Ok(key) = key(id) else { return };
    let value = TABLES.with_borrow_mut(|t| pick(t).remove(&key));
    drop(value);
}

thread_local! {
    static TABLES: RefCell<Tables> = RefCell::default();
}

/// Largest id that survives the trip through a JS number exactly.
const MAX_ID: u64 = (1 << 53) - 1;

fn key(id: f64) -> Result<u64, Code> {
    if id.is_finite() && id >= 1.0 && id.fract() == 0.0 && id <= MAX_ID as f64 {
        Ok(id as u64)
    } else {
        Err(js_error(crate::error::INVALID_ARGUMENT, format!("{id} is not a tensorbridge handle")))
    }
}

fn disposed() -> napi::Error<Code> {
    js_error(
        crate::error::DISPOSED,
        "this tensor was disposed; create a new one, or keep it until you are done with it",
    )
}

/// Stores a tensor and returns its handle. `external` reports its bytes to V8,
/// so that large native tensors make the GC run sooner.
pub fn insert_tensor(env: &Env, tensor: Tensor, external: bool) -> Result<f64, Code> {
    let bytes = if external { tensor.byte_len() } else { 0 };
    insert_held(env, Held::Tensor(tensor), bytes)
}

/// Stores a prepared export as a tensor handle. A host copy made for it is new
/// memory, reported to V8 as [`insert_tensor`] does.
pub fn insert_prepared(env: &Env, prepared: PreparedExport) -> Result<f64, Code> {
    let t = prepared.tensor();
    let bytes = if prepared.is_copied() && t.device().is_cpu() { t.byte_len() } else { 0 };
    insert_held(env, Held::Prepared(prepared), bytes)
}

fn insert_held(env: &Env, held: Held, bytes: usize) -> Result<f64, Code> {
    let external_bytes = bytes as i64;
    if external_bytes > 0 {
        env.adjust_external_memory(external_bytes).map_err(crate::error::from_napi)?;
    }
    let id = TABLES.with_borrow_mut(|t| {
        let id = t.next_id();
        t.tensors.insert(id, TensorEntry { held, external_bytes });
        id
    });
    // The counter can't pass MAX_ID: that takes 2^53 allocations on one thread.
    Ok(id as f64)
}

/// Takes the prepared export behind tensor handle `id` out of the table (the
/// handle is freed). `ERR_INVALID_ARGUMENT` for a plain tensor handle.
pub fn take_prepared(env: &Env, id: f64) -> Result<PreparedExport, Code> {
    let key = key(id)?;
    let entry = TABLES.with_borrow_mut(|t| match t.tensors.get(&key).map(|e| &e.held) {
        Some(Held::Prepared(_)) => Ok(t.tensors.remove(&key)),
        Some(Held::Tensor(_)) => Err(js_error(
            crate::error::INVALID_ARGUMENT,
            format!("handle {id} holds a tensor, not a prepared export"),
        )),
        None => Ok(None),
    })?;
    let entry = entry.ok_or_else(disposed)?;
    release_external(env, entry.external_bytes);
    match entry.held {
        Held::Prepared(prepared) => Ok(prepared),
        Held::Tensor(_) => unreachable!("checked above"),
    }
}

fn release_external(env: &Env, bytes: i64) {
    if bytes > 0 {
        // Failing to lower V8's estimate only makes GC a little eager.
        let _ = env.adjust_external_memory(-bytes);
    }
}

/// Runs `f` on the tensor behind `id`; `ERR_DISPOSED` when it was freed.
///
/// `f` runs inside a shared borrow of the tables: it may look up other
/// handles (`copy_to` does) but must not insert or free any. Every caller
/// inserts results after `with_tensor` returns.
pub fn with_tensor<R>(id: f64, f: impl FnOnce(&Tensor) -> Result<R, Code>) -> Result<R, Code> {
    let key = key(id)?;
    TABLES.with_borrow(|t| f(t.tensors.get(&key).ok_or_else(disposed)?.tensor()))
}

/// Frees the tensor behind `id`; a no-op when it was already freed.
pub fn free_tensor(env: &Env, id: f64) {
    let Ok(key) = key(id) else { return };
    let entry = TABLES.with_borrow_mut(|t| t.tensors.remove(&key));
    if let Some(entry) = entry {
        release_external(env, entry.external_bytes);
        // Dropped here, outside the table borrow: a producer's deleter may run.
        drop(entry);
    }
}

/// Whether `id` names a live tensor.
pub fn tensor_exists(id: f64) -> bool {
    key(id).is_ok_and(|k| TABLES.with_borrow(|t| t.tensors.contains_key(&k)))
}

/// Stores a capsule and returns its handle.
pub fn insert_capsule(capsule: Capsule) -> f64 {
    insert_shared(|t| &mut t.capsules, Arc::new(capsule))
}

/// The capsule behind `id`.
pub fn capsule(id: f64) -> Result<Arc<Capsule>, Code> {
    get_shared(
        |t| &t.capsules,
        id,
        || {
            js_error(
                crate::error::DLPACK_CONSUMED,
                "this capsule was freed; export the tensor again",
            )
        },
    )
}

/// Frees the capsule behind `id` (its deleter runs if it was never consumed).
pub fn free_capsule(id: f64) {
    free_shared(|t| &mut t.capsules, id);
}

/// Live entries on this thread, for leak checks in tests.
pub fn live_handles() -> (usize, usize) {
    TABLES.with_borrow(|t| (t.tensors.len(), t.capsules.len()))
}

/// Stores an open CUDA IPC mapping and returns its handle.
pub fn insert_mapping(mapping: Arc<IpcMapping>) -> f64 {
    insert_shared(|t| &mut t.mappings, mapping)
}

/// The CUDA IPC mapping behind `id`.
pub fn mapping(id: f64) -> Result<Arc<IpcMapping>, Code> {
    get_shared(
        |t| &t.mappings,
        id,
        || {
            js_error(
                crate::error::DISPOSED,
                "this CUDA IPC mapping was closed; open the handle again",
            )
        },
    )
}

/// Drops the table's share of the mapping behind `id` (a no-op when already closed). The
/// mapping itself is closed once no tensor over it is left either.
pub fn free_mapping(id: f64) {
    free_shared(|t| &mut t.mappings, id);
}

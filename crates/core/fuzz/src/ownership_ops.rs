//! Target `ownership_ops`: the export → import → drop state machine, driven by a sequence of
//! operations decoded from the input.
//!
//! The pool holds tensors (zeros, from a `Vec`, borrowed with a counted keep-alive value,
//! imported from the counting [`producer`](crate::producer)), DLPack exports, capsules and
//! raw released addresses. Operations: create, clone, export (legacy / versioned, `copy`
//! none / false / true, `device` none / `cpu`), prepare an export and take it in-process or as
//! a struct, import an export, wrap it in a capsule, consume a capsule (again and again),
//! release a capsule or an export to its address, take an address back
//! ([`Capsule::from_address`] or the raw `Tensor::from_dlpack_*`), re-import an export of ours
//! whose header was narrowed to part of its memory, copy, read, and drop any holder, on this
//! thread or another one.
//!
//! Asserted: every tensor reads the bytes it was made with, zero-copy paths keep the data
//! pointer, consuming twice is `ERR_DLPACK_CONSUMED`; at the end, once everything is dropped
//! (released addresses are taken back and dropped too), every export of ours was deleted once
//! (`stats`), every owned allocation freed, every keep-alive value dropped once, and every
//! producer deleter called once. ASan turns any double free or use after free into a crash.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, OnceLock};

use arbitrary::Unstructured;
use tensorbridge_core::cuda::ConsumerStream;
use tensorbridge_core::ffi::{
    DLDataType, DLDataTypeCode, DLDevice, DLDeviceType, DLManagedTensor, DLManagedTensorVersioned,
    DLPackVersion, DLTensor, DLPACK_FLAG_BITMASK_READ_ONLY,
};
use tensorbridge_core::{Capsule, DataType, Device, ExportOptions, ExportedTensor, Tensor};

use crate::producer::{self, Data, Header, Made};
use crate::Input;

/// What a holder must show when imported or read.
#[derive(Clone, Debug)]
struct Info {
    /// The bytes, when the CPU may read them (host memory described honestly).
    bytes: Option<Vec<u8>>,
    byte_len: usize,
    /// The data pointer a zero-copy import must keep; `None` after a copy.
    data: Option<usize>,
    shape: Vec<i64>,
    dtype: DataType,
    read_only: bool,
}

impl Info {
    fn of(t: &Tensor, bytes: Option<Vec<u8>>) -> Info {
        Info {
            bytes,
            byte_len: t.byte_len(),
            data: Some(t.data_ptr() as usize),
            shape: t.shape().to_vec(),
            dtype: t.dtype(),
            read_only: t.is_read_only(),
        }
    }

    fn check(&self, t: &Tensor) {
        assert_eq!(t.shape(), &self.shape[..]);
        assert_eq!(t.dtype(), self.dtype);
        assert_eq!(t.byte_len(), self.byte_len);
        assert_eq!(t.is_read_only(), self.read_only);
        if let Some(data) = self.data {
            if self.byte_len > 0 {
                assert_eq!(t.data_ptr() as usize, data, "zero-copy keeps the data pointer");
            }
        }
        if let Some(bytes) = &self.bytes {
            assert_eq!(t.as_bytes().expect("host memory"), &bytes[..]);
        }
    }
}

struct Raw {
    addr: usize,
    versioned: bool,
    info: Info,
}

struct Cap {
    capsule: Capsule,
    info: Info,
    /// Consumed or released (tracked here, checked against the capsule).
    spent: bool,
}

#[derive(Default)]
struct Pool {
    tensors: Vec<(Tensor, Info)>,
    exports: Vec<(ExportedTensor, Info)>,
    capsules: Vec<Cap>,
    raws: Vec<Raw>,
    made: Vec<(Made, bool)>,
    keep_alive_drops: Vec<Arc<AtomicUsize>>,
}

/// Counts its own drop (a borrowed tensor's keep-alive value).
struct Guard(Arc<AtomicUsize>, #[allow(dead_code)] Vec<u8>);

impl Drop for Guard {
    fn drop(&mut self) {
        let before = self.0.fetch_add(1, Ordering::SeqCst);
        assert_eq!(before, 0, "a keep-alive value was dropped twice");
    }
}

/// Runs one input.
pub fn run(bytes: &[u8]) {
    let mut u = Input(Unstructured::new(bytes));
    let before = tensorbridge_core::stats::snapshot();
    let mut pool = Pool::default();
    for _ in 0..u.below(48) {
        step(&mut u, &mut pool);
    }
    teardown(&mut u, pool, before);
}

const DTYPES: [DataType; 13] = [
    DataType::Bool,
    DataType::U8,
    DataType::U16,
    DataType::U32,
    DataType::U64,
    DataType::I8,
    DataType::I16,
    DataType::I32,
    DataType::I64,
    DataType::F16,
    DataType::BF16,
    DataType::F32,
    DataType::F64,
];

fn dtype(u: &mut Input<'_>) -> DataType {
    DTYPES[u.below(DTYPES.len())]
}

/// Up to 4 axes, at most 256 elements (bigger tensors find nothing new and cost time).
fn shape(u: &mut Input<'_>) -> Vec<i64> {
    let mut elements = 1;
    (0..u.below(5))
        .map(|_| {
            let d = if u.chance(1, 16) { u.below(65) } else { u.below(5) };
            let d = if elements * d > 256 { 1 } else { d };
            elements *= d.max(1);
            d as i64
        })
        .collect()
}

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len).map(|i| (i.wrapping_mul(131) as u8).wrapping_add(seed)).collect()
}

fn byte_len(shape: &[i64], dtype: DataType) -> usize {
    shape.iter().map(|&d| d as usize).product::<usize>() * dtype.element_size().unwrap()
}

fn pick<T>(u: &mut Input<'_>, v: &[T]) -> Option<usize> {
    (!v.is_empty()).then(|| u.below(v.len()))
}

fn step(u: &mut Input<'_>, p: &mut Pool) {
    match u.below(20) {
        0 => {
            let (s, d) = (shape(u), dtype(u));
            let t = Tensor::zeros(&s, d).expect("small shapes allocate");
            let info = Info::of(&t, Some(vec![0; byte_len(&s, d)]));
            p.tensors.push((t, info));
            if u.chance(1, 8) {
                let err = Tensor::zeros(&s, DataType::Bytes).unwrap_err();
                assert_eq!(err.code(), "ERR_DTYPE_UNSUPPORTED");
            }
        }
        1 => {
            let (s, d) = (shape(u), dtype(u));
            let bytes = pattern(byte_len(&s, d), u.u8());
            let t = Tensor::from_vec(bytes.clone(), &s, d).expect("exact length");
            p.tensors.push((t.clone(), Info::of(&t, Some(bytes))));
        }
        2 => {
            let (s, d) = (shape(u), dtype(u));
            let read_only = u.bool();
            let mut bytes = pattern(byte_len(&s, d), u.u8());
            let expected = bytes.clone();
            let drops = Arc::new(AtomicUsize::new(0));
            let ptr = if bytes.is_empty() { std::ptr::null_mut() } else { bytes.as_mut_ptr() };
            let len = bytes.len();
            let guard = Box::new(Guard(Arc::clone(&drops), bytes));
            // SAFETY: the `Vec`'s heap buffer moves into the guard without moving its bytes and
            // lives until the guard drops, which the tensor's storage does after its last user.
            let t =
                unsafe { Tensor::from_borrowed(ptr, len, &s, d, Device::CPU, read_only, guard) }
                    .expect("exact length");
            p.keep_alive_drops.push(drops);
            p.tensors.push((t.clone(), Info::of(&t, Some(expected))));
        }
        3 => create_foreign(u, p),
        4 => {
            if let Some(i) = pick(u, &p.tensors) {
                let (t, info) = &p.tensors[i];
                let pair = (t.clone(), info.clone());
                p.tensors.push(pair);
            }
        }
        5 | 6 => export(u, p),
        7 => {
            if let Some(i) = pick(u, &p.exports) {
                let (e, info) = p.exports.swap_remove(i);
                let t = e.into_tensor().expect("our own export imports");
                info.check(&t);
                p.tensors.push((t, info));
            }
        }
        8 => {
            if let Some(i) = pick(u, &p.exports) {
                let (e, info) = p.exports.swap_remove(i);
                p.capsules.push(Cap { capsule: Capsule::new(e), info, spent: false });
            }
        }
        9 => {
            if let Some(i) = pick(u, &p.capsules) {
                let cap = &mut p.capsules[i];
                match cap.capsule.consume() {
                    Ok(t) => {
                        assert!(!cap.spent, "a spent capsule gave a tensor");
                        cap.spent = true;
                        cap.info.check(&t);
                        p.tensors.push((t, cap.info.clone()));
                    }
                    Err(e) => {
                        assert!(cap.spent, "a fresh capsule refused: {e}");
                        assert_eq!(e.code(), "ERR_DLPACK_CONSUMED");
                    }
                }
                assert!(cap.capsule.is_consumed());
            }
        }
        10 => {
            if let Some(i) = pick(u, &p.capsules) {
                let cap = &mut p.capsules[i];
                match cap.capsule.release() {
                    Ok(addr) => {
                        assert!(!cap.spent);
                        assert_eq!(addr, cap.capsule.address());
                        cap.spent = true;
                        let versioned = cap.capsule.is_versioned();
                        p.raws.push(Raw { addr, versioned, info: cap.info.clone() });
                    }
                    Err(e) => {
                        assert!(cap.spent);
                        assert_eq!(e.code(), "ERR_DLPACK_CONSUMED");
                    }
                }
            }
        }
        11 => {
            if let Some(i) = pick(u, &p.raws) {
                let raw = p.raws.swap_remove(i);
                // SAFETY: a released address nobody else owns, of the ABI recorded with it.
                let capsule = unsafe { Capsule::from_address(raw.addr, raw.versioned) }
                    .expect("aligned, non-NULL");
                p.capsules.push(Cap { capsule, info: raw.info, spent: false });
            }
        }
        12 => {
            if let Some(i) = pick(u, &p.exports) {
                let (e, info) = p.exports.swap_remove(i);
                let versioned = e.is_versioned();
                p.raws.push(Raw { addr: e.into_raw() as usize, versioned, info });
            }
        }
        13 => {
            if let Some(i) = pick(u, &p.raws) {
                let raw = p.raws.swap_remove(i);
                let t = import_raw(&raw).expect("our own export imports");
                raw.info.check(&t);
                p.tensors.push((t, raw.info));
            }
        }
        14 | 15 => drop_one(u, p, false),
        16 => drop_one(u, p, true),
        17 => {
            if let Some(i) = pick(u, &p.tensors) {
                let (t, info) = &p.tensors[i];
                info.check(t);
                if info.bytes.is_some() {
                    let copy = if u.bool() { t.deep_copy() } else { t.to_device(Device::CPU) };
                    let copy = copy.expect("host copy");
                    assert!(copy.is_copied() && !copy.is_read_only());
                    let info = Info {
                        data: Some(copy.data_ptr() as usize),
                        read_only: false,
                        ..info.clone()
                    };
                    info.check(&copy);
                    p.tensors.push((copy, info));
                }
            }
        }
        18 => narrowed_reimport(u, p),
        _ => {
            if let Some(i) = pick(u, &p.tensors) {
                let (t, info) = &p.tensors[i];
                info.check(t);
            }
        }
    }
}

fn import_raw(raw: &Raw) -> tensorbridge_core::Result<Tensor> {
    // SAFETY: a released address nobody else owns, of the ABI recorded with it.
    unsafe {
        if raw.versioned {
            Tensor::from_dlpack_versioned(raw.addr as *mut DLManagedTensorVersioned)
        } else {
            Tensor::from_dlpack_legacy(raw.addr as *mut DLManagedTensor)
        }
    }
}

/// A tensor from the counting producer: honest header (compact, maybe explicit strides, a byte
/// offset, flags, a NULL deleter), host memory or a ROCm label (not readable here).
fn create_foreign(u: &mut Input<'_>, p: &mut Pool) {
    let (s, d) = (shape(u), dtype(u));
    let len = byte_len(&s, d);
    let shift = u.below(9);
    let offset = u.below(9);
    let seed = u.u8();
    let buffer = pattern(shift + offset + len + u.below(9), seed);
    let expected = buffer[shift + offset..shift + offset + len].to_vec();
    let device = match u.below(8) {
        0 => DLDeviceType::CUDAHOST,
        1 => DLDeviceType::ROCM,
        _ => DLDeviceType::CPU,
    };
    let readable = device != DLDeviceType::ROCM;
    let versioned = u.bool();
    let flags = u.below(4) as u64;
    let header = Header {
        versioned,
        buffer,
        data: Data::Buffer { shift },
        byte_offset: offset as u64,
        ndim: s.len() as i32,
        strides: if u.bool() { Some(crate::oracle::canonical_strides(&s)) } else { None },
        shape: s.clone(),
        null_shape: false,
        shape_misalign: 0,
        strides_misalign: 0,
        dtype: d.to_dlpack().unwrap(),
        device: DLDevice { device_type: device, device_id: 0 },
        version: DLPackVersion { major: 1, minor: u.below(5) as u32 },
        flags,
        null_deleter: u.chance(1, 8),
    };
    let made = producer::make(&header);
    let raw = Raw { addr: made.managed as usize, versioned, info: placeholder(&s, d) };
    let t = import_raw(&raw).expect("an honest header imports");
    assert_eq!(t.data_ptr(), made.data.wrapping_add(offset));
    assert_eq!(t.is_read_only(), versioned && flags & 1 != 0);
    let info = Info::of(&t, readable.then_some(expected));
    info.check(&t);
    p.made.push((made, header.null_deleter));
    p.tensors.push((t, info));
}

fn placeholder(shape: &[i64], dtype: DataType) -> Info {
    Info { bytes: None, byte_len: 0, data: None, shape: shape.to_vec(), dtype, read_only: false }
}

fn export(u: &mut Input<'_>, p: &mut Pool) {
    let Some(i) = pick(u, &p.tensors) else { return };
    let (t, info) = (p.tensors[i].0.clone(), p.tensors[i].1.clone());
    let versioned = u.bool();
    let copy = [None, Some(false), Some(true)][u.below(3)];
    let device = if u.bool() { None } else { Some(Device::CPU) };
    let options = ExportOptions { versioned, copy, device };
    let host = t.device().is_cpu();
    let prepared = if u.bool() {
        t.prepare_export(&options, ConsumerStream::Default).map(Some)
    } else {
        t.to_dlpack(&options).map(|e| {
            p_push_export(p, e, &t, &info, &options);
            None
        })
    };
    match prepared {
        Ok(Some(prepared)) => {
            if u.bool() {
                let view = prepared.into_tensor();
                let info = expected_import(&info, &options);
                info.check(&view);
                p.tensors.push((view, info));
            } else {
                let e = prepared.into_dlpack();
                p_push_export(p, e, &t, &info, &options);
            }
        }
        Ok(None) => {}
        Err(e) => {
            let code = e.code();
            if !host {
                // ROCm-labelled memory: any copy or move needs a device this build can't use.
                assert!(matches!(code, "ERR_COPY_REQUIRED" | "ERR_DEVICE_UNSUPPORTED"), "{code}");
            } else {
                assert_eq!(code, "ERR_COPY_REQUIRED", "{options:?}");
                assert!(t.is_read_only() && !versioned && copy != Some(true));
            }
        }
    }
}

fn p_push_export(
    p: &mut Pool,
    e: ExportedTensor,
    source: &Tensor,
    info: &Info,
    options: &ExportOptions,
) {
    assert_eq!(e.is_versioned(), options.versioned);
    // SAFETY: `e` is a live export of ours; only plain fields are read.
    let dl = unsafe {
        if options.versioned {
            (*e.as_ptr().cast::<DLManagedTensorVersioned>()).dl_tensor
        } else {
            (*e.as_ptr().cast::<DLManagedTensor>()).dl_tensor
        }
    };
    assert_eq!(dl.byte_offset, 0);
    assert_eq!(dl.ndim as usize, source.ndim());
    assert!(dl.ndim == 0 || !dl.strides.is_null(), "exports fill strides");
    assert_eq!(dl.data.is_null(), source.byte_len() == 0);
    p.exports.push((e, expected_import(info, options)));
}

/// What importing an export of `source` made with `options` gives.
fn expected_import(info: &Info, options: &ExportOptions) -> Info {
    if options.copy == Some(true) {
        Info { data: None, read_only: false, ..info.clone() }
    } else {
        info.clone()
    }
}

/// Narrows an export of ours to a `uint8` vector over part of its bytes (`byte_offset`,
/// shape `[k]`, NULL strides) before importing it: the importer must share the original
/// storage at that offset, and read exactly those bytes.
fn narrowed_reimport(u: &mut Input<'_>, p: &mut Pool) {
    let Some(i) = pick(u, &p.exports) else { return };
    let (e, info) = p.exports.swap_remove(i);
    let len = info.byte_len;
    // SAFETY: a live export of ours: we own it, nothing else reads or writes it now.
    let dl: &mut DLTensor = unsafe {
        if e.is_versioned() {
            &mut (*e.as_ptr().cast::<DLManagedTensorVersioned>()).dl_tensor
        } else {
            &mut (*e.as_ptr().cast::<DLManagedTensor>()).dl_tensor
        }
    };
    if dl.ndim == 0 || len == 0 {
        p.exports.push((e, info));
        return;
    }
    let offset = u.below(len + 1);
    let k = u.below(len - offset + 1);
    dl.ndim = 1;
    dl.dtype = DLDataType { code: DLDataTypeCode::UINT, bits: 8, lanes: 1 };
    dl.byte_offset = offset as u64;
    // SAFETY: `shape` points at our export's own dims array (ndim >= 1 entries).
    unsafe { *dl.shape = k as i64 };
    dl.strides = std::ptr::null_mut();
    let mark_read_only = e.is_versioned() && u.bool();
    if mark_read_only {
        // SAFETY: as above.
        unsafe {
            (*e.as_ptr().cast::<DLManagedTensorVersioned>()).flags |= DLPACK_FLAG_BITMASK_READ_ONLY;
        }
    }
    let t = e.into_tensor().expect("a narrowed export of ours imports");
    assert_eq!(t.shape(), &[k as i64]);
    if k > 0 {
        if let Some(data) = info.data {
            assert_eq!(t.data_ptr() as usize, data + offset);
        }
    }
    let bytes = info.bytes.as_ref().map(|b| b[offset..offset + k].to_vec());
    if let Some(bytes) = &bytes {
        assert_eq!(t.as_bytes().unwrap(), &bytes[..]);
    }
    let info = Info {
        bytes,
        byte_len: k,
        data: info.data.map(|d| d + offset),
        shape: vec![k as i64],
        dtype: DataType::U8,
        read_only: info.read_only || mark_read_only,
    };
    info.check(&t);
    p.tensors.push((t, info));
}

/// Drops one holder of any kind, here or on the drop thread.
fn drop_one(u: &mut Input<'_>, p: &mut Pool, elsewhere: bool) {
    let item: Box<dyn Send> = match u.below(3) {
        0 => match pick(u, &p.tensors) {
            Some(i) => Box::new(p.tensors.swap_remove(i).0),
            None => return,
        },
        1 => match pick(u, &p.exports) {
            Some(i) => Box::new(p.exports.swap_remove(i).0),
            None => return,
        },
        _ => match pick(u, &p.capsules) {
            Some(i) => Box::new(p.capsules.swap_remove(i).capsule),
            None => return,
        },
    };
    if elsewhere {
        drop_on_other_thread(item);
    } else {
        drop(item);
    }
}

type DropJob = Box<dyn Send>;

/// One long-lived thread that drops what it is sent and answers when done (a thread per drop
/// would cost more than the rest of an input).
fn drop_on_other_thread(item: DropJob) {
    static THREAD: OnceLock<Mutex<(Sender<DropJob>, Receiver<()>)>> = OnceLock::new();
    let channels = THREAD.get_or_init(|| {
        let (job_tx, job_rx) = channel::<DropJob>();
        let (done_tx, done_rx) = channel::<()>();
        std::thread::Builder::new()
            .name("fuzz-drop".into())
            .spawn(move || {
                for job in job_rx {
                    drop(job);
                    if done_tx.send(()).is_err() {
                        break;
                    }
                }
            })
            .expect("spawn the drop thread");
        Mutex::new((job_tx, done_rx))
    });
    let channels = channels.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    channels.0.send(item).expect("drop thread alive");
    channels.1.recv().expect("drop thread answers");
}

/// Drops everything in an order the input picks, takes released addresses back, then checks
/// that every resource was released exactly once.
fn teardown(u: &mut Input<'_>, mut p: Pool, before: tensorbridge_core::stats::Stats) {
    while !(p.tensors.is_empty() && p.exports.is_empty() && p.capsules.is_empty()) {
        let n = p.tensors.len() + p.exports.len() + p.capsules.len();
        let elsewhere = u.chance(1, 16);
        drop_one(u, &mut p, elsewhere);
        if p.tensors.len() + p.exports.len() + p.capsules.len() == n {
            // The input ran out or picked an empty kind: drop in order.
            p.tensors.pop();
            p.exports.pop();
            p.capsules.pop();
        }
        for (t, info) in &p.tensors {
            // Whatever was dropped, the survivors still read their own bytes.
            if u.chance(1, 4) {
                info.check(t);
            }
        }
    }
    for raw in p.raws.drain(..) {
        if u.bool() {
            drop(import_raw(&raw).expect("our own export imports"));
        } else {
            // SAFETY: a released address nobody else owns, of the ABI recorded with it.
            drop(unsafe { Capsule::from_address(raw.addr, raw.versioned) }.expect("aligned"));
        }
    }
    for (made, null_deleter) in &p.made {
        if *null_deleter {
            assert_eq!(made.calls.get(), 0, "a NULL deleter is never called");
            // SAFETY: made by `make`, its deleter is NULL so nobody deleted it, and every
            // tensor over it was dropped above.
            unsafe { producer::free(made) };
        }
        assert_eq!(made.calls.get(), 1, "every producer deleter runs exactly once");
    }
    for drops in &p.keep_alive_drops {
        assert_eq!(drops.load(Ordering::SeqCst), 1, "every keep-alive value drops once");
    }
    let after = tensorbridge_core::stats::snapshot();
    assert_eq!(
        after.exports_created - before.exports_created,
        after.exports_deleted - before.exports_deleted,
        "every export of ours was deleted exactly once"
    );
    assert_eq!(
        after.owned_allocations - before.owned_allocations,
        after.owned_frees - before.owned_frees,
        "every owned allocation was freed"
    );
    assert_eq!(after.owned_live_bytes, before.owned_live_bytes);
}

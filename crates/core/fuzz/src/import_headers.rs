//! Target `import_headers`: arbitrary `DLManagedTensor` / `DLManagedTensorVersioned` headers
//! over real buffers, imported through each public entry point, then used, re-exported and
//! dropped in an order the input picks.
//!
//! Asserted on every input:
//! - the import accepts or refuses exactly as [`crate::oracle`] says, with the same code;
//! - after a refusal the caller owns the tensor (no deleter call), except after a major
//!   version mismatch, where the deleter ran once; a capsule stays unconsumed;
//! - an accepted tensor has the oracle's data pointer (`data + byte_offset`), byte length,
//!   shape, canonical strides, dtype, device and flags, so its bytes lie within the region the
//!   header describes; when that region lies within the buffer, reading the tensor reads
//!   exactly those buffer bytes (and ASan checks every read stays inside the allocation);
//! - re-exports and re-imports of it share the same memory (or copy it, flagged);
//! - the producer's deleter runs exactly once, and only after every tensor, export and capsule
//!   over the memory is gone (the buffer is freed by the deleter, so a late read is a
//!   use-after-free ASan reports).

use arbitrary::Unstructured;
use tensorbridge_core::ffi::{
    DLDataType, DLDataTypeCode, DLDevice, DLDeviceType, DLManagedTensor, DLManagedTensorVersioned,
    DLPackVersion,
};
use tensorbridge_core::{Capsule, DataType, Device, ExportOptions, ExportedTensor, Tensor};

use crate::oracle::{self, Accepted, Outcome};
use crate::producer::{self, Data, Header, Made};
use crate::Input;

/// Runs one input.
pub fn run(bytes: &[u8]) {
    let mut u = Input(Unstructured::new(bytes));
    let header = decode_header(&mut u);
    let made = producer::make(&header);
    let driver_loaded = tensorbridge_core::cuda::is_available();
    let expected = oracle::expect(&header, made.data as usize, driver_loaded);
    let honest = honest_region(&header, &made);
    let expected_bytes = expected_bytes(honest, &made);

    let entry = u.below(3);
    let result = import(&made, entry);
    match (result, &expected) {
        (Ok(tensor), Outcome::Accept(want)) => {
            check_accepted(&tensor, want);
            use_accepted(
                &mut u,
                tensor,
                want,
                expected_bytes.as_deref(),
                &made,
                header.null_deleter,
            );
            if header.null_deleter {
                assert_eq!(made.calls.get(), 0);
                // SAFETY: made by `make`, never deleted (its deleter field is NULL), and every
                // tensor over it is gone.
                unsafe { producer::free(&made) };
            }
            assert_eq!(made.calls.get(), 1, "the deleter runs exactly once");
        }
        (Ok(tensor), Outcome::DriverDependent) => {
            drop(tensor);
            if header.null_deleter {
                // SAFETY: as above.
                unsafe { producer::free(&made) };
            }
            assert_eq!(made.calls.get(), 1);
        }
        (Err(ImportFailure { code, still_owned }), expected) => {
            match expected {
                Outcome::Reject { code: want, consumed } => {
                    assert_eq!(code, *want, "{header:?}");
                    assert_eq!(still_owned, !consumed, "ownership after {code}");
                }
                Outcome::DriverDependent => assert!(code != "ERR_DLPACK_VERSION"),
                Outcome::Accept(want) => {
                    panic!("refused with {code}, expected {want:?}: {header:?}")
                }
            }
            let deleted = made.calls.get();
            if still_owned {
                assert_eq!(deleted, 0, "a refused tensor's deleter must not run ({code})");
                // SAFETY: refused, so still ours, and not deleted (checked just above).
                unsafe { producer::free(&made) };
            } else {
                assert_eq!(deleted, usize::from(!header.null_deleter), "version mismatch");
                if header.null_deleter {
                    // SAFETY: nobody could delete it (NULL deleter), and the importer let go.
                    unsafe { producer::free(&made) };
                }
            }
            assert_eq!(made.calls.get(), 1);
        }
        (Ok(_), expected) => panic!("accepted, expected {expected:?}: {header:?}"),
    }
}

/// What `run` would do with `bytes`, in a word (for corpus statistics): `accept` (with
/// `readable` when the bytes lie in the buffer), or the expected error code.
pub fn classify(bytes: &[u8]) -> String {
    let mut u = Input(Unstructured::new(bytes));
    let header = decode_header(&mut u);
    let made = producer::make(&header);
    let readable = honest_region(&header, &made).is_some();
    let outcome = oracle::expect(&header, made.data as usize, false);
    // SAFETY: made just now and never handed to anyone.
    unsafe { producer::free(&made) };
    match outcome {
        Outcome::Accept(_) if readable => "accept readable".into(),
        Outcome::Accept(_) => "accept".into(),
        Outcome::Reject { code, .. } => code.into(),
        Outcome::DriverDependent => "driver".into(),
    }
}

fn decode_header(u: &mut Input<'_>) -> Header {
    let versioned = u.bool();
    let dtype = decode_dtype(u);
    let mut shape = decode_shape(u);
    let ndim = if u.chance(1, 16) {
        let n = u.i32();
        if (0..=oracle::MAX_NDIM).contains(&n) {
            shape.resize(n as usize, 1);
        }
        n
    } else {
        shape.len() as i32
    };
    let strides = match u.below(8) {
        0..=2 => None,
        3..=4 => Some(oracle::canonical_strides(&shape)),
        5..=6 => {
            // Canonical, with one entry changed (x[::2], a transpose, a size-1 axis's stride).
            let mut s = oracle::canonical_strides(&shape);
            if !s.is_empty() {
                let axis = u.below(s.len());
                s[axis] = u.dim();
            }
            Some(s)
        }
        _ => Some(shape.iter().map(|_| u.dim()).collect()),
    };
    // The producer's claimed extent: shape × element size when sane.
    let element =
        oracle::dtype_of(dtype.code.0, dtype.bits).and_then(DataType::element_size).unwrap_or(1);
    let claimed = claimed_bytes(&shape, element).filter(|&n| n <= 1 << 16);
    let buffer_len = match claimed {
        Some(n) if u.chance(3, 4) => n + u.below(17),
        _ => u.below(257),
    };
    let seed = u.u8();
    let buffer = (0..buffer_len).map(|i| (i.wrapping_mul(31) as u8) ^ seed).collect();
    let data = match u.below(16) {
        0 => Data::Null,
        1 => Data::Fake(u.usize()),
        2 => Data::Fake(usize::MAX - u.below(64)),
        3..=5 => Data::Buffer { shift: u.below(buffer_len + 1) },
        _ => Data::Buffer { shift: 0 },
    };
    let byte_offset = match u.below(16) {
        0 => u.u64(),
        1 => u64::MAX - u.below(64) as u64,
        2..=4 => u.below(buffer_len + 17) as u64,
        _ => 0,
    };
    let device = decode_device(u);
    let version = if u.chance(1, 8) {
        DLPackVersion { major: u.u32(), minor: u.u32() }
    } else {
        DLPackVersion { major: 1, minor: if u.bool() { 3 } else { u.u32() } }
    };
    let flags = if u.bool() { u.below(8) as u64 } else { u.u64() };
    let (shape_misalign, strides_misalign) =
        if u.chance(1, 16) { (u.below(8), u.below(8)) } else { (0, 0) };
    Header {
        versioned,
        buffer,
        data,
        byte_offset,
        ndim,
        shape,
        strides,
        null_shape: u.chance(1, 32),
        shape_misalign,
        strides_misalign,
        dtype,
        device,
        version,
        flags,
        null_deleter: u.chance(1, 8),
    }
}

fn claimed_bytes(shape: &[i64], element: usize) -> Option<usize> {
    shape.iter().try_fold(element, |acc, &d| acc.checked_mul(usize::try_from(d).ok()?))
}

fn decode_dtype(u: &mut Input<'_>) -> DLDataType {
    const VALID: [(u8, u8); 13] = [
        (6, 8),
        (1, 8),
        (1, 16),
        (1, 32),
        (1, 64),
        (0, 8),
        (0, 16),
        (0, 32),
        (0, 64),
        (2, 16),
        (4, 16),
        (2, 32),
        (2, 64),
    ];
    if u.chance(7, 8) {
        let (code, bits) = VALID[u.below(VALID.len())];
        let lanes = if u.chance(1, 16) { u.u16() } else { 1 };
        DLDataType { code: DLDataTypeCode(code), bits, lanes }
    } else {
        DLDataType { code: DLDataTypeCode(u.u8()), bits: u.u8(), lanes: u.u16() }
    }
}

fn decode_device(u: &mut Input<'_>) -> DLDevice {
    let device_type = match u.below(8) {
        0 => DLDeviceType(u.i32()),
        1 => DLDeviceType::ALL[u.below(DLDeviceType::ALL.len())],
        2 => DLDeviceType(u.below(20) as i32),
        _ => DLDeviceType::CPU,
    };
    let device_id = if u.chance(1, 4) { u.i32() } else { 0 };
    DLDevice { device_type, device_id }
}

/// Up to 6 axes (rarely up to 70), mostly small sizes.
fn decode_shape(u: &mut Input<'_>) -> Vec<i64> {
    let n = if u.chance(1, 32) { u.below(71) } else { u.below(7) };
    (0..n).map(|_| u.dim()).collect()
}

/// The buffer range the header describes, when it lies within the buffer and the CPU may
/// read it: the only bytes a test may read through an accepted tensor.
fn honest_region(h: &Header, made: &Made) -> Option<(usize, usize)> {
    let Data::Buffer { shift } = h.data else { return None };
    if !Device::from(h.device).is_cpu() || !(0..=oracle::MAX_NDIM).contains(&h.ndim) {
        return None;
    }
    let element = oracle::dtype_of(h.dtype.code.0, h.dtype.bits)?.element_size()?;
    let shape = &h.shape[..h.ndim as usize];
    let bytes = if shape.contains(&0) { 0 } else { claimed_bytes(shape, element)? };
    let start = shift.checked_add(usize::try_from(h.byte_offset).ok()?)?;
    (start.checked_add(bytes)? <= made.buffer.1).then_some((start, bytes))
}

struct ImportFailure {
    code: &'static str,
    /// The caller still owns the managed tensor (and must free it).
    still_owned: bool,
}

/// Imports through entry point `entry`: the raw `Tensor::from_dlpack_*` functions, an
/// `ExportedTensor` handle, or a `Capsule` taken from the address. On failure, hands
/// ownership back to the caller where the API says it stays with it.
fn import(made: &Made, entry: usize) -> Result<Tensor, ImportFailure> {
    match entry {
        0 => {
            // SAFETY: `made` is a fresh managed tensor nobody else owns, of the ABI it claims.
            let r = unsafe {
                if made.versioned {
                    Tensor::from_dlpack_versioned(made.managed.cast::<DLManagedTensorVersioned>())
                } else {
                    Tensor::from_dlpack_legacy(made.managed.cast::<DLManagedTensor>())
                }
            };
            r.map_err(|e| ImportFailure {
                code: e.code(),
                still_owned: e.code() != "ERR_DLPACK_VERSION",
            })
        }
        1 => {
            // SAFETY: as above.
            let handle = unsafe { ExportedTensor::from_raw(made.managed, made.versioned) }
                .expect("a non-NULL, aligned pointer");
            handle.into_tensor().map_err(|e| {
                let (error, handle) = e.into_parts();
                let still_owned = handle.is_some();
                if let Some(handle) = handle {
                    assert_eq!(handle.as_ptr(), made.managed, "the same tensor comes back");
                    // Give it back to the test, which frees it (also when the deleter is NULL).
                    handle.into_raw();
                }
                ImportFailure { code: error.code(), still_owned }
            })
        }
        _ => {
            // SAFETY: as above.
            let capsule = unsafe { Capsule::from_address(made.managed as usize, made.versioned) }
                .expect("a non-NULL, aligned pointer");
            assert!(!capsule.is_consumed());
            match capsule.consume() {
                Ok(tensor) => {
                    assert!(capsule.is_consumed());
                    assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
                    assert_eq!(capsule.release().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
                    Ok(tensor)
                }
                Err(e) if e.code() == "ERR_DLPACK_VERSION" => {
                    assert!(capsule.is_consumed(), "the deleter ran, so the capsule is spent");
                    assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
                    Err(ImportFailure { code: e.code(), still_owned: false })
                }
                Err(e) => {
                    assert!(!capsule.is_consumed(), "a refused import leaves the capsule whole");
                    assert_eq!(made.calls.get(), 0);
                    // Take it back out so the test frees it (a NULL deleter can't).
                    let addr = capsule.release().expect("unconsumed");
                    assert_eq!(addr, made.managed as usize);
                    Err(ImportFailure { code: e.code(), still_owned: true })
                }
            }
        }
    }
}

fn check_accepted(t: &Tensor, want: &Accepted) {
    assert_eq!(t.data_ptr() as usize, want.data, "data_ptr is data + byte_offset");
    assert_eq!(t.byte_len(), want.bytes);
    assert_eq!(t.shape(), &want.shape[..]);
    assert_eq!(t.strides(), &want.strides[..], "canonical strides");
    assert_eq!(t.dtype(), want.dtype);
    assert_eq!(t.device(), want.device);
    assert_eq!(t.is_read_only(), want.read_only);
    assert_eq!(t.is_copied(), want.copied);
    assert_eq!(t.storage_kind(), tensorbridge_core::storage::StorageKind::Foreign);
}

/// The bytes an honest header describes, copied out of the producer's buffer while it is
/// alive (copies of the tensor outlive the buffer and must still read them).
fn expected_bytes(honest: Option<(usize, usize)>, made: &Made) -> Option<Vec<u8>> {
    let (start, len) = honest?;
    if len == 0 {
        return Some(Vec::new());
    }
    // SAFETY: the block (and so the buffer) is alive: nothing was imported or deleted yet
    // when this runs, and `start + len` is within the buffer's length (`honest_region`).
    Some(unsafe { std::slice::from_raw_parts(made.buffer.0.add(start), len) }.to_vec())
}

/// Reads a host tensor's bytes when the header described them honestly, and compares them.
/// A zero-copy tensor reads the producer's buffer, so a read after the deleter freed it is a
/// use-after-free for ASan.
fn read_and_compare(t: &Tensor, expected: Option<&[u8]>) {
    let Some(expected) = expected else { return };
    if !t.device().is_cpu() {
        return;
    }
    assert_eq!(t.as_bytes().expect("host tensor"), expected);
}

/// Holders of values over the imported memory, each marked with whether it keeps the
/// producer's memory alive (copies don't).
#[derive(Default)]
struct Holders {
    tensors: Vec<(Tensor, bool)>,
    exports: Vec<(ExportedTensor, bool)>,
    capsules: Vec<(Capsule, bool)>,
}

impl Holders {
    fn is_empty(&self) -> bool {
        self.tensors.is_empty() && self.exports.is_empty() && self.capsules.is_empty()
    }

    fn holding(&self) -> bool {
        self.tensors.iter().any(|h| h.1)
            || self.exports.iter().any(|h| h.1)
            || self.capsules.iter().any(|h| h.1)
    }

    /// Drops one value of the kind the input picks; false if that kind is empty.
    fn drop_one(&mut self, u: &mut Input<'_>) -> bool {
        match u.below(3) {
            0 if !self.tensors.is_empty() => {
                drop(self.tensors.swap_remove(u.below(self.tensors.len())))
            }
            1 if !self.exports.is_empty() => {
                drop(self.exports.swap_remove(u.below(self.exports.len())))
            }
            2 if !self.capsules.is_empty() => {
                drop(self.capsules.swap_remove(u.below(self.capsules.len())));
            }
            _ => return false,
        }
        true
    }

    /// The deleter has run iff nothing holds the memory any more (a NULL deleter never runs).
    fn check_deleter(&self, made: &Made, null_deleter: bool) {
        let expected = usize::from(!self.holding() && !null_deleter);
        assert_eq!(made.calls.get(), expected, "the deleter runs when the last holder goes");
    }
}

/// Clones, reads, re-exports and re-imports the accepted tensor, then drops everything in an
/// order the input picks; the deleter must run exactly when the last holder of the memory is
/// dropped, not before.
fn use_accepted(
    u: &mut Input<'_>,
    original: Tensor,
    want: &Accepted,
    honest: Option<&[u8]>,
    made: &Made,
    null_deleter: bool,
) {
    let mut h = Holders { tensors: vec![(original, true)], ..Holders::default() };
    for _ in 0..u.below(9) {
        h.check_deleter(made, null_deleter);
        if h.tensors.is_empty() {
            break;
        }
        match u.below(8) {
            0 => {
                let i = u.below(h.tensors.len());
                let clone = (h.tensors[i].0.clone(), h.tensors[i].1);
                h.tensors.push(clone);
            }
            1 | 2 => {
                let i = u.below(h.tensors.len());
                read_and_compare(&h.tensors[i].0, honest);
            }
            3..=6 => {
                let i = u.below(h.tensors.len());
                let (t, holds) = (h.tensors[i].0.clone(), h.tensors[i].1);
                export(u, &t, holds, honest.is_some(), &mut h);
            }
            _ => {
                h.drop_one(u);
            }
        }
    }
    h.check_deleter(made, null_deleter);
    for (t, _) in &h.tensors {
        read_and_compare(t, honest);
        assert_eq!(t.shape(), &want.shape[..]);
    }
    // Drop everything, interleaving the three kinds as the input says.
    while !h.is_empty() {
        if !h.drop_one(u) {
            h.tensors.pop();
            h.exports.pop();
            h.capsules.pop();
        }
        h.check_deleter(made, null_deleter);
        for (t, _) in &h.tensors {
            // Reading must find the producer's bytes (a zero-copy tensor read after the
            // deleter freed the buffer is a use-after-free for ASan).
            read_and_compare(t, honest);
        }
    }
}

/// Exports `t` with options the input picks, then consumes the export in one of several ways
/// (or keeps it, or keeps it in a capsule), checking what comes back.
fn export(u: &mut Input<'_>, t: &Tensor, holds: bool, readable: bool, h: &mut Holders) {
    let versioned = u.bool();
    let mut copy = [None, Some(false), Some(true)][u.below(3)];
    if copy == Some(true) && !readable {
        // A copy reads the bytes; only honest headers may be read.
        copy = None;
    }
    let device = if u.bool() { None } else { Some(Device::CPU) };
    let options = ExportOptions { versioned, copy, device };
    let moves = device.is_some_and(|d| d != t.device() && !t.device().is_cpu());
    let export = match t.to_dlpack(&options) {
        Ok(e) => e,
        Err(e) => {
            let code = e.code();
            if t.is_read_only() && !versioned && copy != Some(true) && !moves {
                assert_eq!(code, "ERR_COPY_REQUIRED");
            } else if moves {
                // A non-host tensor asked for on the CPU needs a device copy: with copy: false
                // that's refused, otherwise only CUDA could make it.
                assert!(
                    matches!(
                        code,
                        "ERR_COPY_REQUIRED" | "ERR_DEVICE_UNSUPPORTED" | "ERR_CUDA_UNAVAILABLE"
                    ),
                    "{code}"
                );
            } else if !t.device().is_cpu() && copy == Some(true) {
                assert!(
                    matches!(code, "ERR_DEVICE_UNSUPPORTED" | "ERR_CUDA_UNAVAILABLE"),
                    "{code}"
                );
            } else {
                panic!("export refused with {code}: {options:?} of {t:?}");
            }
            return;
        }
    };
    assert_eq!(export.is_versioned(), versioned);
    let copied = copy == Some(true);
    let holds = holds && !copied;
    let back = match u.below(5) {
        0 => export.into_tensor().map_err(|e| e.error),
        1 => {
            let capsule = Capsule::new(export);
            let back = capsule.consume();
            assert_eq!(capsule.consume().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
            back
        }
        2 => {
            let capsule = Capsule::new(export);
            let addr = capsule.release().expect("fresh capsule");
            assert_eq!(capsule.release().unwrap_err().code(), "ERR_DLPACK_CONSUMED");
            // SAFETY: released just now: we are its only owner, of the ABI it was made with.
            let again = unsafe { Capsule::from_address(addr, versioned) }.expect("aligned");
            again.consume()
        }
        3 => {
            h.exports.push((export, holds));
            return;
        }
        _ => {
            h.capsules.push((Capsule::new(export), holds));
            return;
        }
    };
    let back = back.expect("our own export imports");
    assert_eq!(back.shape(), t.shape());
    assert_eq!(back.dtype(), t.dtype());
    if copied {
        assert_eq!(back.is_copied(), versioned, "IS_COPIED travels in the versioned struct only");
        assert!(!back.is_read_only());
        if back.byte_len() > 0 {
            assert_ne!(back.data_ptr(), t.data_ptr());
            assert_eq!(back.as_bytes().unwrap(), t.as_bytes().unwrap());
        }
    } else {
        if back.byte_len() > 0 {
            assert_eq!(back.data_ptr(), t.data_ptr(), "zero-copy");
        }
        assert_eq!(back.is_read_only(), t.is_read_only());
    }
    h.tensors.push((back, holds));
}

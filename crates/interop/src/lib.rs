//! Interop of `tensorbridge-core` with real NumPy, PyTorch and JAX, on the real DLPack ABI, in
//! one process.
//!
//! The tests (`tests/python.rs`) embed CPython through [pyo3], load NumPy, PyTorch (CPU) and
//! JAX (CPU) from the venv that `scripts/setup-python.sh` makes, and move tensors both ways
//! through genuine `PyCapsule`s: a Python producer's `__dlpack__()` capsule is opened with
//! `PyCapsule_GetPointer` and imported with `Tensor::from_dlpack_*`; a tensorbridge export is
//! wrapped with `PyCapsule_New` under the protocol's names and handed to `numpy.from_dlpack`,
//! `torch.from_dlpack` and `jax.dlpack.from_dlpack` through an object with `__dlpack__` and
//! `__dlpack_device__`. This crate holds the glue; it is a test harness, not a product.
//!
//! # Why pyo3 embedding, and not Python embedded into Node
//!
//! Both routes reach the same ABI: a managed tensor's address is all that crosses, and the
//! Node binding is a thin layer that passes that address to the very functions used here
//! (`Capsule::from_address`, `Tensor::from_dlpack_*`, `Tensor::to_dlpack`). What differs is
//! how much has to be built and trusted just to get Python into the process:
//!
//! - Embedding Python into Node needs a second native addon that links libpython,
//!   initialises the interpreter inside V8's process and bridges two garbage collectors and
//!   two threading models (the GIL and the event loop). The npm package that does it
//!   (`node-calls-python` 1.11) ships C++ sources and a `binding.gyp`, no prebuilt binary, so
//!   npm compiles it with node-gyp against the local libpython at install time: an install
//!   script (npm 11 here holds those for approval) and a bridge of its own to debug, just
//!   for tests. Writing our own would be a second binding to test.
//! - pyo3 is the standard, maintained way to embed CPython in Rust: `Python::attach` handles
//!   the GIL per thread, `auto-initialize` starts the interpreter once, and `cargo test`
//!   runs it with no extra build system. A failure points at core or at the Python library,
//!   not at a bespoke bridge.
//!
//! The Node side's own share (BigInt addresses, finalizers, workers) is covered by the ava
//! suites; everything DLPack-specific that Python peers could disagree with (struct layout,
//! capsule names, consume-once, deleters, strides, flags, zero-size tensors) is covered here.
//!
//! # The capsule protocol, as implemented here
//!
//! - Consuming ([`tensor_from_capsule`]): only a capsule named `dltensor` or
//!   `dltensor_versioned` is taken. It is renamed to `used_dltensor` / `used_dltensor_versioned`
//!   before the import and keeps that name when the import succeeds (the tensor now owns the
//!   managed struct and calls its deleter once) or when core already called the deleter
//!   (a major-version mismatch). On any other refusal the original name is put back, so the
//!   producer's capsule destructor still frees the tensor: no leak, no double free.
//! - Producing ([`capsule_from_tensor`]): the capsule's destructor calls the deleter only if
//!   the capsule still has its unconsumed name, i.e. no consumer took it.
//!
//! [pyo3]: https://pyo3.rs

use std::ffi::{c_void, CStr, CString};
use std::fmt;
use std::path::{Path, PathBuf};
use std::ptr::NonNull;

use pyo3::exceptions::{PyBufferError, PyTypeError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyCFunction, PyCapsule, PyCapsuleMethods};
use tensorbridge_core::{capsule, ExportOptions, ExportedTensor, Tensor};

/// Name of an unconsumed legacy DLPack capsule.
pub const LEGACY: &CStr = c"dltensor";
/// Name of a consumed legacy DLPack capsule.
pub const LEGACY_USED: &CStr = c"used_dltensor";
/// Name of an unconsumed versioned DLPack capsule.
pub const VERSIONED: &CStr = c"dltensor_versioned";
/// Name of a consumed versioned DLPack capsule.
pub const VERSIONED_USED: &CStr = c"used_dltensor_versioned";

// The same four names as core's (which the Node binding uses); checked at compile time.
const _: () = {
    assert!(eq(LEGACY, capsule::CAPSULE_NAME_LEGACY));
    assert!(eq(LEGACY_USED, capsule::CAPSULE_NAME_LEGACY_USED));
    assert!(eq(VERSIONED, capsule::CAPSULE_NAME_VERSIONED));
    assert!(eq(VERSIONED_USED, capsule::CAPSULE_NAME_VERSIONED_USED));
};

const fn eq(c: &CStr, s: &str) -> bool {
    let (a, b) = (c.to_bytes(), s.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The environment variable naming the venv (its directory, or its `bin/python`).
pub const VENV_ENV: &str = "TENSORBRIDGE_PYTHON";

/// What the interop tests print, and do, when there is no venv.
pub const SKIP_REASON: &str = "SKIPPED: python interop venv missing; run scripts/setup-python.sh";

/// The venv the tests load their Python packages from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Venv {
    /// The venv's directory (holding `pyvenv.cfg`).
    pub dir: PathBuf,
    /// Its `lib/pythonX.Y/site-packages`.
    pub site_packages: PathBuf,
    /// `X.Y`, from the site-packages path.
    pub python_version: String,
}

/// Finds the venv: `$TENSORBRIDGE_PYTHON` (a venv directory or its `bin/python`), else
/// `.venv` at the repository root.
///
/// # Errors
///
/// `Err(reason)` when there is no usable venv. A `$TENSORBRIDGE_PYTHON` that is set but
/// points at no venv is reported the same way, with its path in the reason.
pub fn find_venv() -> Result<Venv, String> {
    let (dir, origin) = match std::env::var_os(VENV_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            // `.../bin/python` → `...`
            let dir = if path.is_file() {
                path.parent().and_then(Path::parent).map(Path::to_path_buf).unwrap_or(path)
            } else {
                path
            };
            (dir, format!("${VENV_ENV}"))
        }
        None => (
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv"),
            "the default location".to_owned(),
        ),
    };
    if !dir.join("pyvenv.cfg").is_file() {
        return Err(format!("no venv at {} ({origin})", dir.display()));
    }
    let dir = dir.canonicalize().map_err(|e| format!("{}: {e}", dir.display()))?;
    let lib = dir.join("lib");
    let entries = std::fs::read_dir(&lib).map_err(|e| format!("{}: {e}", lib.display()))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let site_packages = entry.path().join("site-packages");
        if let Some(version) = name.strip_prefix("python") {
            if site_packages.is_dir() {
                return Ok(Venv { dir, site_packages, python_version: version.to_owned() });
            }
        }
    }
    Err(format!("no lib/python*/site-packages in the venv at {}", dir.display()))
}

/// The bridge's Python module (`bridge.py`), loaded once; the first call also puts the venv's
/// site-packages on `sys.path` in place of the base installation's.
///
/// # Errors
///
/// When the embedded Python's version is not the venv's (the wheels would not load), or when
/// loading the module fails.
pub fn bridge_module<'py>(py: Python<'py>, venv: &Venv) -> PyResult<Bound<'py, PyModule>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    MODULE
        .get_or_try_init(py, || -> PyResult<Py<PyModule>> {
            let info = py.version_info();
            let embedded = format!("{}.{}", info.major, info.minor);
            if embedded != venv.python_version {
                return Err(PyTypeError::new_err(format!(
                    "the venv at {} is for Python {} but the tests embed Python {embedded} ({}); \
                     build with PYO3_PYTHON={}/bin/python, or recreate the venv with \
                     TENSORBRIDGE_BASE_PYTHON set to the Python pyo3 links",
                    venv.dir.display(),
                    venv.python_version,
                    Python::version_str(),
                    venv.dir.display(),
                )));
            }
            let source = CString::new(include_str!("bridge.py"))
                .map_err(|e| PyTypeError::new_err(e.to_string()))?;
            let module = PyModule::from_code(py, &source, c"bridge.py", c"tensorbridge_bridge")?;
            module.call_method1("activate", (venv.site_packages.to_string_lossy(),))?;
            Ok(module.unbind())
        })
        .map(|m| m.bind(py).clone())
}

/// Why a tensor could not cross.
#[derive(Debug)]
pub enum InteropError {
    /// tensorbridge-core refused it (its `ERR_*` code says why).
    Core(tensorbridge_core::Error),
    /// Python raised.
    Python(PyErr),
}

impl InteropError {
    /// The core error's stable code, or `None` for a Python error.
    pub fn code(&self) -> Option<&'static str> {
        match self {
            InteropError::Core(e) => Some(e.code()),
            InteropError::Python(_) => None,
        }
    }

    /// As a Python exception: core errors become `BufferError("ERR_…: message")`, as
    /// `__dlpack__` producers raise for tensors they can't export.
    pub fn into_pyerr(self) -> PyErr {
        match self {
            InteropError::Core(e) => PyBufferError::new_err(format!("{}: {e}", e.code())),
            InteropError::Python(e) => e,
        }
    }
}

impl fmt::Display for InteropError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            InteropError::Core(e) => write!(f, "{}: {e}", e.code()),
            InteropError::Python(e) => write!(f, "Python error: {e}"),
        }
    }
}

impl std::error::Error for InteropError {}

impl From<tensorbridge_core::Error> for InteropError {
    fn from(e: tensorbridge_core::Error) -> Self {
        InteropError::Core(e)
    }
}

impl From<PyErr> for InteropError {
    fn from(e: PyErr) -> Self {
        InteropError::Python(e)
    }
}

/// Imports a Python DLPack capsule (from any producer's `__dlpack__`) as a [`Tensor`] without
/// copying, following the capsule protocol (see the [crate docs](crate)).
///
/// # Errors
///
/// `ERR_DLPACK_CONSUMED` for a capsule already renamed `used_*`; a Python `TypeError` for
/// anything that is not a DLPack capsule; every import error of core (then the capsule still
/// owns the tensor, except after `ERR_DLPACK_VERSION`, when the deleter has already run).
pub fn tensor_from_capsule(obj: &Bound<'_, PyAny>) -> Result<Tensor, InteropError> {
    let capsule = obj.cast::<PyCapsule>().map_err(PyErr::from)?;
    let (name, used, versioned) = if capsule.is_valid_checked(Some(VERSIONED)) {
        (VERSIONED, VERSIONED_USED, true)
    } else if capsule.is_valid_checked(Some(LEGACY)) {
        (LEGACY, LEGACY_USED, false)
    } else if capsule.is_valid_checked(Some(LEGACY_USED))
        || capsule.is_valid_checked(Some(VERSIONED_USED))
    {
        return Err(tensorbridge_core::Error::Consumed.into());
    } else {
        return Err(PyTypeError::new_err(
            "not a DLPack capsule (expected the name \"dltensor\" or \"dltensor_versioned\")",
        )
        .into());
    };
    let managed = capsule.pointer_checked(Some(name))?;

    // Take the capsule's ownership first: should anything below fail half-way, the worst
    // outcome is a leak, never a second deleter call from the capsule's destructor.
    set_name(capsule, used)?;
    let imported = if versioned {
        // SAFETY: a capsule named "dltensor_versioned" holds a `DLManagedTensorVersioned`
        // (the DLPack Python protocol), which the rename above made ours alone; its producer
        // keeps the data alive until the deleter runs.
        unsafe { Tensor::from_dlpack_versioned(managed.as_ptr().cast()) }
    } else {
        // SAFETY: as above, for a "dltensor" capsule and its legacy `DLManagedTensor`.
        unsafe { Tensor::from_dlpack_legacy(managed.as_ptr().cast()) }
    };
    match imported {
        Ok(tensor) => Ok(tensor),
        // The deleter has run (DLPack's rule for another major version): stay "used".
        Err(e @ tensorbridge_core::Error::Version { .. }) => Err(e.into()),
        Err(e) => {
            // Refused, and core left the managed tensor untouched: hand it back, so the
            // capsule's destructor frees it. If even that fails, leaking is the safe choice.
            let _ = set_name(capsule, name);
            Err(e.into())
        }
    }
}

fn set_name(capsule: &Bound<'_, PyCapsule>, name: &'static CStr) -> PyResult<()> {
    // SAFETY: `capsule` is a live capsule and we are attached to the interpreter; `name` is
    // 'static, so it outlives the capsule, which keeps the pointer rather than a copy.
    let rc = unsafe { ffi::PyCapsule_SetName(capsule.as_ptr(), name.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(PyErr::fetch(capsule.py()))
    }
}

/// Exports `tensor` (zero-copy, as `Tensor::to_dlpack` does) in a new Python capsule named
/// `dltensor` or `dltensor_versioned`, whose destructor deletes the export only if no
/// consumer took it.
///
/// # Errors
///
/// Core's export errors (`ERR_COPY_REQUIRED`, `ERR_DTYPE_UNSUPPORTED`, …), or a Python error
/// from `PyCapsule_New` (then the export has already been deleted).
pub fn capsule_from_tensor<'py>(
    py: Python<'py>,
    tensor: &Tensor,
    options: &ExportOptions,
) -> Result<Bound<'py, PyCapsule>, InteropError> {
    let exported = tensor.to_dlpack(options)?;
    let versioned = exported.is_versioned();
    let (name, destructor): (&'static CStr, ffi::PyCapsule_Destructor) = if versioned {
        (VERSIONED, delete_unconsumed_versioned)
    } else {
        (LEGACY, delete_unconsumed_legacy)
    };
    let raw = NonNull::new(exported.into_raw()).expect("an export is never NULL");
    // SAFETY: `raw` is a managed tensor we own (from `into_raw`); the capsule takes it over,
    // and its destructor, safe on any thread that holds the GIL, deletes it at most once.
    let made =
        unsafe { PyCapsule::new_with_pointer_and_destructor(py, raw, name, Some(destructor)) };
    made.map_err(|e| {
        // SAFETY: no capsule was made, so `raw` is still ours alone; dropping the handle
        // calls the deleter once.
        drop(unsafe { ExportedTensor::from_raw(raw.as_ptr(), versioned) });
        e.into()
    })
}

unsafe extern "C" fn delete_unconsumed_legacy(capsule: *mut ffi::PyObject) {
    // SAFETY: Python calls a capsule's destructor once, attached, with the dying capsule.
    unsafe { delete_unconsumed(capsule, LEGACY, false) }
}

unsafe extern "C" fn delete_unconsumed_versioned(capsule: *mut ffi::PyObject) {
    // SAFETY: as above.
    unsafe { delete_unconsumed(capsule, VERSIONED, true) }
}

/// A producer capsule's destructor: a consumer that took the tensor renamed the capsule to
/// `used_*`, so only a capsule that still has its first name owns its managed tensor.
///
/// # Safety
///
/// `capsule` must be a live capsule made by [`capsule_from_tensor`], and the caller attached.
unsafe fn delete_unconsumed(capsule: *mut ffi::PyObject, name: &CStr, versioned: bool) {
    // SAFETY: `capsule` is live (caller's contract); IsValid raises nothing.
    if unsafe { ffi::PyCapsule_IsValid(capsule, name.as_ptr()) } != 1 {
        return;
    }
    // SAFETY: the name was just checked, so this neither fails nor sets an exception.
    let managed: *mut c_void = unsafe { ffi::PyCapsule_GetPointer(capsule, name.as_ptr()) };
    // SAFETY: an unconsumed capsule of ours owns the export it was made with; nobody else
    // will delete it, and the capsule dies right after this.
    if let Ok(handle) = unsafe { ExportedTensor::from_raw(managed, versioned) } {
        drop(handle); // calls the deleter, once
    }
}

/// Which `__dlpack__` signature a [`producer`] offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// The current one (`stream`, `max_version`, `dl_device`, `copy`): a versioned capsule
    /// when the consumer asks for `max_version >= (1, 0)`, else a legacy one.
    Current,
    /// `__dlpack__(stream=None)` only, as producers before DLPack 1.0: consumers that pass
    /// `max_version` must retry without it and get a legacy capsule.
    Legacy,
}

/// A Python object with `__dlpack__` and `__dlpack_device__` that exports (a clone of)
/// `tensor` each time a consumer asks, for `numpy.from_dlpack`, `torch.from_dlpack`, …
/// Its `requests` attribute lists what the consumers asked for.
///
/// # Errors
///
/// A Python error when the bridge module or the object can't be made.
pub fn producer<'py>(
    py: Python<'py>,
    venv: &Venv,
    tensor: &Tensor,
    protocol: Protocol,
) -> PyResult<Bound<'py, PyAny>> {
    let tensor = tensor.clone();
    let device = tensor.device().to_dlpack();
    let export = PyCFunction::new_closure(
        py,
        Some(c"export"),
        Some(c"export(versioned, copy) -> a new DLPack capsule of the tensor"),
        move |args, _kwargs| -> PyResult<Py<PyCapsule>> {
            let (versioned, copy): (bool, Option<bool>) = args.extract()?;
            let options = ExportOptions { versioned, copy, device: None };
            capsule_from_tensor(args.py(), &tensor, &options)
                .map(Bound::unbind)
                .map_err(InteropError::into_pyerr)
        },
    )?;
    let class = match protocol {
        Protocol::Current => "Producer",
        Protocol::Legacy => "LegacyProducer",
    };
    bridge_module(py, venv)?
        .getattr(class)?
        .call1((export, (device.device_type.0, device.device_id)))
}

//! tensorbridge-core against real NumPy, PyTorch (CPU) and JAX (CPU), both directions, in one
//! process, through real `PyCapsule`s (see the crate docs for the protocol and the route).
//!
//! Every test runs attached to the one embedded interpreter, and the tests take turns (a
//! mutex): the `stats` counters they check exact deltas of are process-wide. Without the venv
//! each test prints [`SKIP_REASON`] (straight to stderr, so the harness's capture can't hide
//! it) and returns.

use std::ffi::CString;
use std::io::Write as _;
use std::sync::{Mutex, PoisonError};

use pyo3::prelude::*;
use pyo3::types::PyDict;
use tensorbridge_core::ffi::DLManagedTensorVersioned;
use tensorbridge_core::stats::{self, Stats};
use tensorbridge_core::{DataType, Device, ExportOptions, Tensor};
use tensorbridge_interop::{
    bridge_module, capsule_from_tensor, find_venv, producer, tensor_from_capsule, Protocol, Venv,
    SKIP_REASON, VENV_ENV,
};

static SERIAL: Mutex<()> = Mutex::new(());

/// Python run at the start of every test, in the test's own namespace.
const PRELUDE: &str = r#"
import gc, sys, threading
import numpy as np

def np_info(x):
    return (x.__array_interface__["data"][0], list(x.shape), x.tobytes())

def torch_info(x):
    import torch
    return (x.data_ptr(), list(x.shape), x.reshape(-1).view(torch.uint8).numpy().tobytes())

def capsule_name(c):
    return repr(c).split('"')[1]

def clear_on_thread(holder):
    t = threading.Thread(target=holder.clear)
    t.start()
    t.join()
    return t.ident
"#;

/// A test's view of Python: the venv and a namespace with [`PRELUDE`] run in it.
struct Env<'py> {
    py: Python<'py>,
    venv: Venv,
    ns: Bound<'py, PyDict>,
}

impl<'py> Env<'py> {
    /// Runs statements in the namespace.
    fn run(&self, code: &str) {
        let source = CString::new(code).expect("no NUL in test code");
        if let Err(e) = self.py.run(&source, Some(&self.ns), None) {
            panic!("Python failed:\n{code}\n{}", describe(self.py, &e));
        }
    }

    /// Evaluates an expression in the namespace.
    fn obj(&self, expr: &str) -> Bound<'py, PyAny> {
        let source = CString::new(expr).expect("no NUL in test code");
        self.py
            .eval(&source, Some(&self.ns), None)
            .unwrap_or_else(|e| panic!("Python failed: {expr}\n{}", describe(self.py, &e)))
    }

    /// Evaluates an expression and converts the result.
    fn eval<T>(&self, expr: &str) -> T
    where
        T: for<'a> FromPyObject<'a, 'py>,
    {
        let value = self.obj(expr);
        let extracted = value.extract::<T>().ok();
        extracted.unwrap_or_else(|| panic!("{expr} = {value}: not the expected Rust type"))
    }

    fn set(&self, name: &str, value: impl IntoPyObject<'py>) {
        self.ns.set_item(name, value).map_err(|e| describe(self.py, &e)).unwrap();
    }

    /// A DLPack producer over `tensor`, bound to `name` in the namespace.
    fn producer(&self, name: &str, tensor: &Tensor, protocol: Protocol) {
        let p = producer(self.py, &self.venv, tensor, protocol)
            .unwrap_or_else(|e| panic!("producer: {}", describe(self.py, &e)));
        self.set(name, p);
    }

    /// Imports the capsule bound to `name` and asserts it is renamed `used_*`.
    fn import(&self, name: &str) -> Tensor {
        let capsule = self.obj(name);
        let first = self.eval::<String>(&format!("capsule_name({name})"));
        let tensor = tensor_from_capsule(&capsule).unwrap_or_else(|e| panic!("import: {e}"));
        let after = self.eval::<String>(&format!("capsule_name({name})"));
        assert_eq!(after, format!("used_{first}"), "a consumed capsule is renamed");
        tensor
    }
}

fn describe(py: Python<'_>, e: &PyErr) -> String {
    let tb = e.traceback(py).and_then(|tb| tb.format().ok()).unwrap_or_default();
    format!("{tb}{e}")
}

/// Runs `test` attached to the embedded Python with the venv active, one test at a time.
fn with_python(test: impl for<'py> FnOnce(&Env<'py>)) {
    let _serial = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
    let venv = match find_venv() {
        Ok(venv) => venv,
        Err(reason) if std::env::var_os(VENV_ENV).is_some() => {
            panic!("{VENV_ENV} is set, but {reason}")
        }
        Err(reason) => {
            // Not `eprintln!`: the test harness captures that for passing tests. One write, so
            // the line isn't split by the harness's own output.
            let line = format!("{SKIP_REASON} ({reason})\n");
            let _ = std::io::stderr().lock().write_all(line.as_bytes());
            return;
        }
    };
    Python::attach(|py| {
        if let Err(e) = bridge_module(py, &venv) {
            panic!("loading the bridge: {}", describe(py, &e));
        }
        let env = Env { py, venv, ns: PyDict::new(py) };
        env.run(PRELUDE);
        test(&env);
    });
}

/// Counter changes since `before`.
#[derive(Debug, PartialEq, Eq)]
struct Delta {
    /// Exports made by core.
    created: u64,
    /// Core's own deleter calls.
    deleted: u64,
    /// Deleters core called (of foreign managed tensors, or of its own unconsumed exports).
    called: u64,
}

fn delta(before: &Stats) -> Delta {
    let now = stats::snapshot();
    Delta {
        created: now.exports_created - before.exports_created,
        deleted: now.exports_deleted - before.exports_deleted,
        called: now.foreign_deleters_called - before.foreign_deleters_called,
    }
}

fn d(created: u64, deleted: u64, called: u64) -> Delta {
    Delta { created, deleted, called }
}

/// Drops `tensor` on a new OS thread that has never touched Python, with this thread
/// detached, so a foreign deleter that needs the GIL must take it itself.
fn drop_on_another_thread(py: Python<'_>, tensor: Tensor) {
    py.detach(move || std::thread::spawn(move || drop(tensor)).join())
        .expect("the dropping thread panicked");
}

fn legacy_and_versioned() -> [(&'static str, &'static str); 2] {
    [("legacy", "__dlpack__()"), ("versioned", "__dlpack__(max_version=(1, 0))")]
}

// ---------------------------------------------------------------------------------------------
// NumPy → core
// ---------------------------------------------------------------------------------------------

/// Exports `make` (a NumPy expression) through both capsule kinds and checks that core sees
/// the same memory, shape, bytes and dtype, and that NumPy's deleter runs once, when the
/// tensor drops.
fn numpy_arrives(make: &str, dtype: DataType) {
    with_python(|env| {
        for (kind, call) in legacy_and_versioned() {
            env.run(&format!("x = {make}\nbase = sys.getrefcount(x)\ncap = x.{call}"));
            assert_eq!(
                env.eval::<String>("capsule_name(cap)"),
                format!("dltensor{}", if kind == "versioned" { "_versioned" } else { "" })
            );
            let before = stats::snapshot();
            let tensor = env.import("cap");
            let (ptr, shape, bytes): (usize, Vec<i64>, Vec<u8>) = env.eval("np_info(x)");
            assert_eq!(tensor.dtype(), dtype, "{make} ({kind})");
            assert_eq!(tensor.shape(), shape.as_slice(), "{make} ({kind})");
            assert_eq!(tensor.as_bytes().unwrap(), bytes.as_slice(), "{make} ({kind})");
            assert_eq!(tensor.device(), Device::CPU);
            if !bytes.is_empty() {
                assert_eq!(tensor.data_ptr() as usize, ptr, "zero-copy: {make} ({kind})");
            }
            assert!(!tensor.is_read_only());
            // The capsule is used: dropping it frees nothing; the tensor holds NumPy's export,
            // which holds a reference to `x`.
            env.run("del cap");
            assert_eq!(env.eval::<isize>("sys.getrefcount(x) - base"), 1, "{make} ({kind})");
            drop(tensor);
            assert_eq!(env.eval::<isize>("sys.getrefcount(x) - base"), 0, "{make} ({kind})");
            assert_eq!(delta(&before), d(0, 0, 1), "NumPy's deleter ran once: {make} ({kind})");
        }
    });
}

#[test]
fn numpy_fp32_arrays_arrive_zero_copy_through_legacy_and_versioned_capsules() {
    numpy_arrives("np.arange(12, dtype=np.float32).reshape(3, 4) / 7", DataType::F32);
    numpy_arrives("np.array(2.5, dtype=np.float32)", DataType::F32);
}

#[test]
fn numpy_int64_arrays_arrive_zero_copy_through_legacy_and_versioned_capsules() {
    numpy_arrives("np.array([[-(2**62), 0, 1], [2, 3, 2**62]], dtype=np.int64)", DataType::I64);
}

#[test]
fn numpy_bool_arrays_arrive_zero_copy_through_legacy_and_versioned_capsules() {
    numpy_arrives("np.array([True, False, False, True, True])", DataType::Bool);
}

#[test]
fn numpy_zero_element_arrays_arrive_through_legacy_and_versioned_capsules() {
    numpy_arrives("np.zeros((0,), dtype=np.float32)", DataType::F32);
    numpy_arrives("np.zeros((3, 0, 2), dtype=np.int64)", DataType::I64);
}

#[test]
fn numpy_array_with_any_stride_on_a_size_one_axis_is_accepted() {
    // PyTorch 56789: a size-1 axis may carry any stride; it is still C-contiguous.
    numpy_arrives(
        "np.lib.stride_tricks.as_strided(np.arange(3, dtype=np.float32), shape=(1, 3), strides=(400, 4))",
        DataType::F32,
    );
}

/// `make` must be refused with ERR_DLPACK_NOT_CONTIGUOUS, and the capsule must stay with
/// Python: unrenamed, and freed once by its own destructor.
fn numpy_is_refused(make: &str, axis: usize) {
    with_python(|env| {
        for (kind, call) in legacy_and_versioned() {
            env.run(&format!(
                "y = {make}\nbase = sys.getrefcount(y)\ncap = y.{call}\nname = capsule_name(cap)"
            ));
            assert_eq!(env.eval::<isize>("sys.getrefcount(y) - base"), 1, "the capsule holds y");
            let before = stats::snapshot();
            let err = tensor_from_capsule(&env.obj("cap")).expect_err(make);
            assert_eq!(err.code(), Some("ERR_DLPACK_NOT_CONTIGUOUS"), "{make} ({kind}): {err}");
            assert!(err.to_string().contains(&format!("axis {axis}")), "{err}");
            assert!(env.eval::<bool>("capsule_name(cap) == name"), "still unconsumed ({kind})");
            env.run("del cap");
            assert_eq!(env.eval::<isize>("sys.getrefcount(y) - base"), 0, "freed once ({kind})");
            assert_eq!(delta(&before), d(0, 0, 0), "core called no deleter ({kind})");
        }
    });
}

#[test]
fn numpy_every_other_element_slice_is_refused_and_the_capsule_stays_with_python() {
    // Triton's Python backend never checks the outermost stride and reads the wrong bytes.
    numpy_is_refused("np.arange(10, dtype=np.float32)[::2]", 0);
}

#[test]
fn numpy_transposed_array_is_refused_and_the_capsule_stays_with_python() {
    numpy_is_refused("np.arange(6, dtype=np.int64).reshape(2, 3).T", 1);
}

#[test]
fn numpy_read_only_array_arrives_read_only_through_a_versioned_capsule() {
    with_python(|env| {
        env.run("x = np.arange(4, dtype=np.float32)\nx.flags.writeable = False\ncap = x.__dlpack__(max_version=(1, 0))");
        let tensor = env.import("cap");
        assert!(tensor.is_read_only());
        let (ptr, _, bytes): (usize, Vec<i64>, Vec<u8>) = env.eval("np_info(x)");
        assert_eq!(tensor.data_ptr() as usize, ptr);
        assert_eq!(tensor.as_bytes().unwrap(), bytes.as_slice());
        // The legacy struct can't say "read-only", so NumPy refuses that export (numpy 22507).
        env.run("try:\n    x.__dlpack__()\n    legacy = 'exported'\nexcept BufferError:\n    legacy = 'refused'");
        assert_eq!(env.eval::<String>("legacy"), "refused");
    });
}

#[test]
fn numpy_deleter_runs_once_when_the_tensor_drops_on_a_thread_that_never_held_the_gil() {
    with_python(|env| {
        for (kind, call) in legacy_and_versioned() {
            env.run(&format!(
                "x = np.ones(1000, dtype=np.float32)\nbase = sys.getrefcount(x)\ncap = x.{call}"
            ));
            let before = stats::snapshot();
            let tensor = env.import("cap");
            env.run("del cap");
            assert_eq!(env.eval::<isize>("sys.getrefcount(x) - base"), 1);
            drop_on_another_thread(env.py, tensor);
            assert_eq!(env.eval::<isize>("sys.getrefcount(x) - base"), 0, "{kind}");
            assert_eq!(delta(&before), d(0, 0, 1), "{kind}");
        }
    });
}

#[test]
fn a_numpy_capsule_cannot_be_consumed_twice() {
    with_python(|env| {
        env.run("x = np.arange(3.0)\ncap = x.__dlpack__(max_version=(1, 0))");
        let tensor = env.import("cap");
        let before = stats::snapshot();
        let err = tensor_from_capsule(&env.obj("cap")).expect_err("second consume");
        assert_eq!(err.code(), Some("ERR_DLPACK_CONSUMED"), "{err}");
        assert_eq!(delta(&before), d(0, 0, 0));
        drop(tensor);
        assert_eq!(delta(&before), d(0, 0, 1));
    });
}

// ---------------------------------------------------------------------------------------------
// core → NumPy
// ---------------------------------------------------------------------------------------------

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

fn i64_bytes(values: &[i64]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_ne_bytes()).collect()
}

/// bf16 bit patterns of `values` (all exactly representable in the tests).
fn bf16_bytes(values: &[f32]) -> Vec<u8> {
    values
        .iter()
        .flat_map(|v| {
            let bits = (v.to_bits() >> 16) as u16;
            assert_eq!(f32::from_bits(u32::from(bits) << 16), *v, "{v} is not exact in bf16");
            bits.to_ne_bytes()
        })
        .collect()
}

/// Hands `tensor` to `numpy.from_dlpack` through both producer protocols and checks dtype,
/// shape, bytes and pointer, and that core's deleter runs once, when NumPy drops the array.
fn numpy_receives(tensor: &Tensor, numpy_dtype: &str) {
    with_python(|env| {
        for protocol in [Protocol::Current, Protocol::Legacy] {
            let before = stats::snapshot();
            env.producer("p", tensor, protocol);
            env.run("a = np.from_dlpack(p)");
            let expected = if protocol == Protocol::Current { "versioned" } else { "legacy" };
            assert_eq!(env.eval::<Vec<String>>("p.exported"), [expected], "{protocol:?}");
            assert_eq!(env.eval::<String>("str(a.dtype)"), numpy_dtype);
            let (ptr, shape, bytes): (usize, Vec<i64>, Vec<u8>) = env.eval("np_info(a)");
            assert_eq!(shape.as_slice(), tensor.shape(), "{protocol:?}");
            assert_eq!(bytes.as_slice(), tensor.as_bytes().unwrap(), "{protocol:?}");
            if tensor.byte_len() > 0 {
                assert_eq!(ptr, tensor.data_ptr() as usize, "zero-copy ({protocol:?})");
            }
            assert_eq!(delta(&before), d(1, 0, 0), "NumPy holds the export ({protocol:?})");
            env.run("del a, p");
            assert_eq!(delta(&before), d(1, 1, 0), "deleted once, by NumPy ({protocol:?})");
        }
    });
}

#[test]
fn core_fp32_tensor_reaches_numpy_zero_copy_and_is_deleted_once() {
    let t =
        Tensor::from_vec(f32_bytes(&[1.5, -2.0, 0.25, 1e30, -0.0, 7.0]), &[2, 3], DataType::F32);
    numpy_receives(&t.unwrap(), "float32");
    numpy_receives(&Tensor::from_vec(f32_bytes(&[4.0]), &[], DataType::F32).unwrap(), "float32");
}

#[test]
fn core_int64_tensor_reaches_numpy_zero_copy_and_is_deleted_once() {
    let t = Tensor::from_vec(i64_bytes(&[i64::MIN, -1, 0, 1, i64::MAX]), &[5], DataType::I64);
    numpy_receives(&t.unwrap(), "int64");
}

#[test]
fn core_bool_tensor_reaches_numpy_zero_copy_and_is_deleted_once() {
    let t = Tensor::from_vec(vec![1, 0, 0, 1], &[2, 2], DataType::Bool).unwrap();
    numpy_receives(&t, "bool");
}

#[test]
fn core_zero_element_tensor_reaches_numpy_and_is_deleted_once() {
    numpy_receives(&Tensor::zeros(&[0], DataType::F32).unwrap(), "float32");
    numpy_receives(&Tensor::zeros(&[2, 0, 3], DataType::I64).unwrap(), "int64");
}

#[test]
fn core_read_only_tensor_reaches_numpy_as_a_read_only_array_and_never_as_legacy() {
    let backing = Tensor::from_vec(f32_bytes(&[1.0, 2.0, 3.0]), &[3], DataType::F32).unwrap();
    // SAFETY: the keep-alive clone keeps the bytes alive as long as the read-only tensor.
    let read_only = unsafe {
        Tensor::from_borrowed(
            backing.data_ptr(),
            backing.byte_len(),
            backing.shape(),
            backing.dtype(),
            Device::CPU,
            true,
            Box::new(backing.clone()),
        )
    }
    .unwrap();
    with_python(|env| {
        env.producer("p", &read_only, Protocol::Current);
        env.run("a = np.from_dlpack(p)");
        assert!(!env.eval::<bool>("a.flags.writeable"), "READ_ONLY reaches NumPy");
        assert_eq!(env.eval::<Vec<f32>>("a.tolist()"), [1.0, 2.0, 3.0]);
        // Before DLPack 1.0 there is no flag to carry it, so core refuses the legacy export.
        env.producer("q", &read_only, Protocol::Legacy);
        env.run(
            "try:\n    np.from_dlpack(q)\n    err = ''\nexcept BufferError as e:\n    err = str(e)",
        );
        assert!(env.eval::<String>("err").starts_with("ERR_COPY_REQUIRED"));
        env.run("del a, p, q");
    });
}

#[test]
fn an_unconsumed_core_capsule_is_deleted_once_when_python_drops_it() {
    let tensor = Tensor::from_vec(f32_bytes(&[1.0, 2.0]), &[2], DataType::F32).unwrap();
    with_python(|env| {
        for versioned in [false, true] {
            let before = stats::snapshot();
            let options = ExportOptions { versioned, ..ExportOptions::default() };
            let capsule = capsule_from_tensor(env.py, &tensor, &options).unwrap();
            env.set("cap", capsule);
            let name = if versioned { "dltensor_versioned" } else { "dltensor" };
            assert_eq!(env.eval::<String>("capsule_name(cap)"), name);
            assert_eq!(delta(&before), d(1, 0, 0));
            env.run("del cap");
            assert_eq!(delta(&before), d(1, 1, 1), "the capsule destructor deleted it once");
        }
    });
}

#[test]
fn a_versioned_capsule_of_another_major_version_is_refused_and_deleted_once() {
    let tensor = Tensor::from_vec(f32_bytes(&[1.0]), &[1], DataType::F32).unwrap();
    with_python(|env| {
        let before = stats::snapshot();
        let capsule = capsule_from_tensor(env.py, &tensor, &ExportOptions::versioned()).unwrap();
        let managed = capsule.pointer_checked(Some(c"dltensor_versioned")).unwrap();
        // SAFETY: the capsule owns this live versioned export of ours; nobody else touches it
        // while we change its major version, as a DLPack 2.x producer would have written it.
        unsafe { (*managed.as_ptr().cast::<DLManagedTensorVersioned>()).version.major = 2 };
        env.set("cap", capsule);
        let err = tensor_from_capsule(&env.obj("cap")).expect_err("major version 2");
        assert_eq!(err.code(), Some("ERR_DLPACK_VERSION"), "{err}");
        // DLPack: the consumer calls the deleter; the capsule then must not call it again.
        assert_eq!(env.eval::<String>("capsule_name(cap)"), "used_dltensor_versioned");
        assert_eq!(delta(&before), d(1, 1, 1));
        env.run("del cap");
        assert_eq!(delta(&before), d(1, 1, 1));
    });
}

#[test]
fn numpy_array_over_a_core_tensor_freed_on_another_python_thread_runs_the_deleter_once() {
    let tensor = Tensor::zeros(&[256], DataType::F32).unwrap();
    with_python(|env| {
        let before = stats::snapshot();
        env.producer("p", &tensor, Protocol::Current);
        env.run("holder = [np.from_dlpack(p)]\ndel p\nmain = threading.get_ident()");
        assert_eq!(delta(&before), d(1, 0, 0));
        env.run("other = clear_on_thread(holder)");
        assert!(env.eval::<bool>("other != main"));
        assert_eq!(delta(&before), d(1, 1, 0), "deleted once, on the other thread");
    });
}

// ---------------------------------------------------------------------------------------------
// PyTorch (CPU) ↔ core
// ---------------------------------------------------------------------------------------------

/// Imports the torch tensor `make` through both capsule kinds; same checks as for NumPy, with
/// torch's storage use count standing in for the refcount.
fn torch_arrives(make: &str, dtype: DataType) {
    with_python(|env| {
        env.run("import torch\nuse_count = lambda t: t._use_count()");
        for (kind, call) in legacy_and_versioned() {
            env.run(&format!("x = {make}\nbase = use_count(x)\ncap = x.{call}"));
            let before = stats::snapshot();
            let tensor = env.import("cap");
            let (ptr, shape, bytes): (usize, Vec<i64>, Vec<u8>) = env.eval("torch_info(x)");
            assert_eq!(tensor.dtype(), dtype, "{make} ({kind})");
            assert_eq!(tensor.shape(), shape.as_slice(), "{make} ({kind})");
            assert_eq!(tensor.as_bytes().unwrap(), bytes.as_slice(), "{make} ({kind})");
            if !bytes.is_empty() {
                assert_eq!(tensor.data_ptr() as usize, ptr, "zero-copy: {make} ({kind})");
            }
            env.run("del cap");
            assert_eq!(env.eval::<isize>("use_count(x) - base"), 1, "{make} ({kind})");
            // PyTorch 83069: the deleter must be fine on a thread that is not Python's.
            drop_on_another_thread(env.py, tensor);
            assert_eq!(env.eval::<isize>("use_count(x) - base"), 0, "{make} ({kind})");
            assert_eq!(delta(&before), d(0, 0, 1), "torch's deleter ran once ({kind})");
        }
    });
}

#[test]
fn torch_fp32_tensor_arrives_zero_copy_through_legacy_and_versioned_capsules() {
    torch_arrives("torch.arange(12, dtype=torch.float32).reshape(4, 3) / 3", DataType::F32);
}

#[test]
fn torch_int64_tensor_arrives_zero_copy_through_legacy_and_versioned_capsules() {
    torch_arrives("torch.tensor([[-(2**62), 5], [0, 2**62]], dtype=torch.int64)", DataType::I64);
}

#[test]
fn torch_bool_tensor_arrives_zero_copy_through_legacy_and_versioned_capsules() {
    torch_arrives("torch.tensor([True, False, True])", DataType::Bool);
}

#[test]
fn torch_bf16_tensor_arrives_zero_copy_through_legacy_and_versioned_capsules() {
    torch_arrives("torch.tensor([1.0, -2.0, 0.5, 3.0e38], dtype=torch.bfloat16)", DataType::BF16);
}

#[test]
fn torch_zero_element_tensor_arrives_through_legacy_and_versioned_capsules() {
    torch_arrives("torch.zeros((2, 0), dtype=torch.float32)", DataType::F32);
}

#[test]
fn torch_transposed_tensor_is_refused_and_the_capsule_stays_with_python() {
    with_python(|env| {
        env.run("import torch\nuse_count = lambda t: t._use_count()");
        for (kind, call) in legacy_and_versioned() {
            env.run(&format!("y = torch.arange(6.0).reshape(2, 3).t()\nbase = use_count(y)\ncap = y.{call}\nname = capsule_name(cap)"));
            let before = stats::snapshot();
            let err = tensor_from_capsule(&env.obj("cap")).expect_err("transposed");
            assert_eq!(err.code(), Some("ERR_DLPACK_NOT_CONTIGUOUS"), "{kind}: {err}");
            assert!(env.eval::<bool>("capsule_name(cap) == name"), "still unconsumed ({kind})");
            assert_eq!(env.eval::<isize>("use_count(y) - base"), 1, "{kind}");
            env.run("del cap");
            assert_eq!(env.eval::<isize>("use_count(y) - base"), 0, "freed once ({kind})");
            assert_eq!(delta(&before), d(0, 0, 0), "{kind}");
        }
    });
}

/// Hands `tensor` to `torch.from_dlpack` through both producer protocols.
fn torch_receives(tensor: &Tensor, torch_dtype: &str) {
    with_python(|env| {
        env.run("import torch");
        for protocol in [Protocol::Current, Protocol::Legacy] {
            let before = stats::snapshot();
            env.producer("p", tensor, protocol);
            env.run("t = torch.from_dlpack(p)");
            let expected = if protocol == Protocol::Current { "versioned" } else { "legacy" };
            assert_eq!(env.eval::<Vec<String>>("p.exported"), [expected], "{protocol:?}");
            assert_eq!(env.eval::<String>("str(t.dtype)"), torch_dtype);
            assert_eq!(env.eval::<String>("str(t.device)"), "cpu");
            let (ptr, shape, bytes): (usize, Vec<i64>, Vec<u8>) = env.eval("torch_info(t)");
            assert_eq!(shape.as_slice(), tensor.shape(), "{protocol:?}");
            assert_eq!(bytes.as_slice(), tensor.as_bytes().unwrap(), "{protocol:?}");
            if tensor.byte_len() > 0 {
                assert_eq!(ptr, tensor.data_ptr() as usize, "zero-copy ({protocol:?})");
            }
            assert_eq!(delta(&before), d(1, 0, 0), "{protocol:?}");
            env.run("del t, p");
            assert_eq!(delta(&before), d(1, 1, 0), "deleted once, by torch ({protocol:?})");
        }
    });
}

#[test]
fn core_fp32_tensor_reaches_torch_zero_copy_and_is_deleted_once() {
    let t = Tensor::from_vec(f32_bytes(&[0.5, -1.0, 3.25, 8.0]), &[2, 2], DataType::F32);
    torch_receives(&t.unwrap(), "torch.float32");
}

#[test]
fn core_int64_tensor_reaches_torch_zero_copy_and_is_deleted_once() {
    let t = Tensor::from_vec(i64_bytes(&[i64::MIN, 0, i64::MAX]), &[3, 1], DataType::I64);
    torch_receives(&t.unwrap(), "torch.int64");
}

#[test]
fn core_bool_tensor_reaches_torch_zero_copy_and_is_deleted_once() {
    let t = Tensor::from_vec(vec![0, 1, 1], &[3], DataType::Bool).unwrap();
    torch_receives(&t, "torch.bool");
}

#[test]
fn core_bf16_tensor_reaches_torch_zero_copy_and_is_deleted_once() {
    let values = [1.0, -2.0, 0.5, 3.0, -0.125, 256.0];
    let t = Tensor::from_vec(bf16_bytes(&values), &[2, 3], DataType::BF16).unwrap();
    torch_receives(&t, "torch.bfloat16");
    with_python(|env| {
        env.run("import torch");
        env.producer("p", &t, Protocol::Current);
        assert_eq!(
            env.eval::<Vec<f32>>("torch.from_dlpack(p).float().reshape(-1).tolist()"),
            values
        );
    });
}

#[test]
fn core_zero_element_tensor_reaches_torch_and_is_deleted_once() {
    torch_receives(&Tensor::zeros(&[0, 4], DataType::F32).unwrap(), "torch.float32");
}

#[test]
fn torch_tensor_over_a_core_tensor_freed_on_another_python_thread_runs_the_deleter_once() {
    let tensor = Tensor::zeros(&[64], DataType::F32).unwrap();
    with_python(|env| {
        env.run("import torch");
        let before = stats::snapshot();
        env.producer("p", &tensor, Protocol::Current);
        env.run("holder = [torch.from_dlpack(p)]\ndel p\nmain = threading.get_ident()");
        env.run("other = clear_on_thread(holder)");
        assert!(env.eval::<bool>("other != main"));
        assert_eq!(delta(&before), d(1, 1, 0));
    });
}

// ---------------------------------------------------------------------------------------------
// JAX (CPU) ↔ core: a second bf16 peer, and one that still exports legacy capsules
// ---------------------------------------------------------------------------------------------

#[test]
fn jax_bf16_array_arrives_in_core_even_though_jax_answers_max_version_with_a_legacy_capsule() {
    with_python(|env| {
        env.run("import jax, jax.numpy as jnp\nx = jnp.array([[1.0, -2.0], [0.5, 96.0]], dtype=jnp.bfloat16)\nx.block_until_ready()");
        for (kind, call) in legacy_and_versioned() {
            env.run(&format!("cap = x.{call}"));
            // JAX 17784: consumers must still accept the legacy capsule.
            assert_eq!(env.eval::<String>("capsule_name(cap)"), "dltensor", "{kind}");
            let before = stats::snapshot();
            let tensor = env.import("cap");
            assert_eq!(tensor.dtype(), DataType::BF16);
            assert_eq!(tensor.shape(), [2, 2]);
            assert_eq!(tensor.as_bytes().unwrap(), bf16_bytes(&[1.0, -2.0, 0.5, 96.0]));
            assert_eq!(tensor.data_ptr() as usize, env.eval::<usize>("x.unsafe_buffer_pointer()"));
            env.run("del cap");
            drop_on_another_thread(env.py, tensor);
            assert_eq!(delta(&before), d(0, 0, 1), "{kind}");
        }
    });
}

/// JAX takes host buffers zero-copy only when they meet XLA's alignment; it copied a
/// `Vec`-backed tensor (32-byte aligned when tried) and deleted the export at once. Core's own
/// allocations are 256-byte aligned, so this one arrives zero-copy.
#[test]
fn core_bf16_tensor_reaches_jax_zero_copy_and_is_deleted_once() {
    let values = [1.0, -2.0, 0.5, 3.0];
    let t = Tensor::zeros(&[4], DataType::BF16).unwrap();
    let bytes = bf16_bytes(&values);
    // SAFETY: a fresh owned tensor of exactly `bytes.len()` bytes that nothing else uses yet.
    unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), t.data_ptr(), bytes.len()) };
    with_python(|env| {
        env.run("import jax, jax.numpy as jnp");
        let before = stats::snapshot();
        env.producer("p", &t, Protocol::Current);
        env.run("j = jax.dlpack.from_dlpack(p)\nj.block_until_ready()");
        assert_eq!(env.eval::<String>("str(j.dtype)"), "bfloat16");
        assert_eq!(env.eval::<Vec<f32>>("j.astype(jnp.float32).tolist()"), values);
        let bytes: Vec<u8> = env.eval("np.asarray(j).tobytes()");
        assert_eq!(bytes, t.as_bytes().unwrap());
        assert_eq!(env.eval::<usize>("j.unsafe_buffer_pointer()"), t.data_ptr() as usize);
        assert_eq!(delta(&before), d(1, 0, 0), "JAX holds the export");
        env.run("del j, p\ngc.collect()");
        assert_eq!(delta(&before), d(1, 1, 0), "deleted once, by JAX");
    });
}

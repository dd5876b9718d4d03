#!/usr/bin/env python3
"""PyTorch CUDA <-> tensorbridge-core interop, in one process, on the real DLPack ABI.

tensorbridge's core is loaded as a C shared library (crates/core/examples/gpu_shim.rs, built
by scripts/gpu/prepare.sh) through ctypes: no pyo3, nothing to build on the GPU machine.
Capsules are opened and made with the CPython C API (PyCapsule_*), exactly as a native
DLPack consumer/producer does.

It proves, printing one PASS/FAIL line per check:
  - torch -> tensorbridge, every dtype, legacy and versioned capsules: same data pointer,
    same bytes (read back through tensorbridge's device -> host copy);
  - tensorbridge -> torch through torch.from_dlpack(obj) (torch passes its stream to our
    __dlpack__), every dtype: same data pointer, same bytes;
  - streams, both directions, with a kernel that is still running (torch.cuda._sleep):
    torch produces on a side stream and tensorbridge's copy waits for it; tensorbridge
    re-exports to a torch consumer on another side stream, which waits for tensorbridge's
    stream (and so for torch's first kernel);
  - pointer validation: host memory labelled CUDA, device memory labelled cuda:1 or cpu are
    refused with ERR_DEVICE_MISMATCH;
  - ownership: torch's memory is never freed by tensorbridge, deleters run once, and
    tensorbridge's device memory is freed when torch lets go.

Without torch or CUDA (e.g. the development machine, with NumPy) it runs a CPU smoke test of
the same plumbing and prints SKIP for the GPU checks; TB_REQUIRE_CUDA=1 turns those skips
into failures.

Usage: TB_SHIM=path/to/libgpu_shim.so python3 scripts/gpu/torch_interop.py
"""

import ctypes
import gc
import os
import sys
import time
import traceback

REQUIRE_CUDA = os.environ.get("TB_REQUIRE_CUDA") == "1"
results = {"PASS": 0, "FAIL": 0, "SKIP": 0}


def report(status, name, detail=""):
    results[status] += 1
    print(f"{status} python: {name}{(' -- ' + detail) if detail else ''}", flush=True)


def check(name):
    def run(fn):
        try:
            detail = fn()
            report("PASS", name, detail or "")
        except Skip as s:
            report("FAIL" if REQUIRE_CUDA else "SKIP", name, str(s))
        except Exception as e:  # noqa: BLE001 - report every failure and go on
            report("FAIL", name, f"{type(e).__name__}: {e}")
            traceback.print_exc()
        return fn

    return run


class Skip(Exception):
    pass


# --- the shim and the CPython capsule API ---------------------------------------------------

api = ctypes.pythonapi
api.PyCapsule_New.restype = ctypes.py_object
api.PyCapsule_New.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
api.PyCapsule_GetPointer.restype = ctypes.c_void_p
api.PyCapsule_GetPointer.argtypes = [ctypes.py_object, ctypes.c_char_p]
api.PyCapsule_IsValid.restype = ctypes.c_int
api.PyCapsule_IsValid.argtypes = [ctypes.py_object, ctypes.c_char_p]
api.PyCapsule_SetName.restype = ctypes.c_int
api.PyCapsule_SetName.argtypes = [ctypes.py_object, ctypes.c_char_p]
# The same functions taking the capsule as a raw pointer, for the destructor.
raw_is_valid = ctypes.PYFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_IsValid", api))
raw_get_pointer = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_char_p)(("PyCapsule_GetPointer", api))

# Capsule names must outlive the capsules: module-level bytes objects.
LEGACY, LEGACY_USED = b"dltensor", b"used_dltensor"
VERSIONED, VERSIONED_USED = b"dltensor_versioned", b"used_dltensor_versioned"
DELETER = ctypes.CFUNCTYPE(None, ctypes.c_void_p)


@ctypes.PYFUNCTYPE(None, ctypes.c_void_p)
def capsule_destructor(capsule):
    """Deletes a managed tensor nobody consumed (the capsule still has its unused name)."""
    for name, deleter_offset in ((LEGACY, 56), (VERSIONED, 16)):
        if raw_is_valid(capsule, name):
            managed = raw_get_pointer(capsule, name)
            deleter = ctypes.c_void_p.from_address(managed + deleter_offset).value
            if deleter:
                DELETER(deleter)(managed)
            return


def load_shim():
    path = os.environ.get("TB_SHIM")
    if not path:
        here = os.path.dirname(os.path.abspath(__file__))
        path = os.path.join(here, "..", "..", "bench", ".work", "gpu", "bin", "libgpu_shim.so")
    lib = ctypes.CDLL(path)
    lib.tb_is_available.restype = ctypes.c_int
    lib.tb_last_error.restype = ctypes.c_size_t
    lib.tb_last_error.argtypes = [ctypes.c_char_p, ctypes.c_size_t]
    lib.tb_import.restype = ctypes.c_void_p
    lib.tb_import.argtypes = [ctypes.c_size_t, ctypes.c_int]
    lib.tb_from_host.restype = ctypes.c_void_p
    lib.tb_from_host.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_int64), ctypes.c_size_t, ctypes.c_char_p, ctypes.c_char_p]
    lib.tb_export.restype = ctypes.c_size_t
    lib.tb_export.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int64, ctypes.c_int]
    lib.tb_data_ptr.restype = ctypes.c_size_t
    lib.tb_data_ptr.argtypes = [ctypes.c_void_p]
    lib.tb_byte_len.restype = ctypes.c_size_t
    lib.tb_byte_len.argtypes = [ctypes.c_void_p]
    lib.tb_device.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_int), ctypes.POINTER(ctypes.c_int)]
    lib.tb_read.restype = ctypes.c_int
    lib.tb_read.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t]
    lib.tb_stream_handle.restype = ctypes.c_size_t
    lib.tb_stream_handle.argtypes = [ctypes.c_int]
    lib.tb_cuda_stats.argtypes = [ctypes.POINTER(ctypes.c_uint64)]
    lib.tb_free.argtypes = [ctypes.c_void_p]
    return lib


tb = load_shim()


def last_error():
    buf = ctypes.create_string_buffer(1024)
    tb.tb_last_error(buf, len(buf))
    return buf.value.decode()


class TbError(Exception):
    @property
    def code(self):
        return str(self).split(":", 1)[0]


class TbTensor:
    """A tensorbridge tensor handle that speaks the array API's DLPack protocol."""

    def __init__(self, handle):
        if not handle:
            raise TbError(last_error())
        self.handle = handle

    def __del__(self):
        tb.tb_free(getattr(self, "handle", None))

    @property
    def data_ptr(self):
        return tb.tb_data_ptr(self.handle)

    def __dlpack_device__(self):
        kind, ident = ctypes.c_int(), ctypes.c_int()
        tb.tb_device(self.handle, ctypes.byref(kind), ctypes.byref(ident))
        return (kind.value, ident.value)

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        versioned = max_version is not None and tuple(max_version) >= (1, 0)
        managed = tb.tb_export(self.handle, int(versioned), 0 if stream is None else int(stream), int(stream is not None))
        if not managed:
            raise TbError(last_error())
        return api.PyCapsule_New(managed, VERSIONED if versioned else LEGACY, ctypes.cast(capsule_destructor, ctypes.c_void_p))

    def read(self):
        n = tb.tb_byte_len(self.handle)
        out = (ctypes.c_uint8 * max(n, 1))()
        if tb.tb_read(self.handle, out, n) != 0:
            raise TbError(last_error())
        return bytes(out)[:n]


def from_host(data, shape, dtype, device):
    buf = (ctypes.c_uint8 * max(len(data), 1)).from_buffer_copy(data or b"\0")
    dims = (ctypes.c_int64 * max(len(shape), 1))(*shape)
    return TbTensor(tb.tb_from_host(buf, len(data), dims, len(shape), dtype.encode(), device.encode()))


def import_capsule(capsule):
    """tensorbridge consuming a capsule: takes it over and marks it used, as a consumer must."""
    for name, used, versioned in ((VERSIONED, VERSIONED_USED, 1), (LEGACY, LEGACY_USED, 0)):
        if api.PyCapsule_IsValid(capsule, name):
            managed = api.PyCapsule_GetPointer(capsule, name)
            handle = tb.tb_import(managed, versioned)
            if not handle:
                raise TbError(last_error())  # the capsule keeps ownership
            api.PyCapsule_SetName(capsule, used)
            return TbTensor(handle), bool(versioned)
    raise ValueError("not an unused DLPack capsule")


def from_dlpack(obj, max_version=None):
    """The array API consumer: ask for tensorbridge's stream on the producer's CUDA device."""
    kind, ident = obj.__dlpack_device__()
    kwargs = {}
    if int(kind) == 2:
        kwargs["stream"] = tb.tb_stream_handle(ident)
    if max_version is not None:
        kwargs["max_version"] = max_version
    return import_capsule(obj.__dlpack__(**kwargs))


def cuda_stats():
    out = (ctypes.c_uint64 * 3)()
    tb.tb_cuda_stats(out)
    return tuple(out)


class DLManaged(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("device_type", ctypes.c_int32),
        ("device_id", ctypes.c_int32),
        ("ndim", ctypes.c_int32),
        ("code", ctypes.c_uint8),
        ("bits", ctypes.c_uint8),
        ("lanes", ctypes.c_uint16),
        ("shape", ctypes.POINTER(ctypes.c_int64)),
        ("strides", ctypes.c_void_p),
        ("byte_offset", ctypes.c_uint64),
        ("manager_ctx", ctypes.c_void_p),
        ("deleter", ctypes.c_void_p),
    ]


def labelled(data_ptr, nbytes, device):
    """A hand-made legacy managed tensor (NULL deleter) over `data_ptr` labelled `device`."""
    shape = (ctypes.c_int64 * 1)(nbytes)
    m = DLManaged(data_ptr, device[0], device[1], 1, 1, 8, 1, shape, None, 0, None, None)
    m._keep = shape
    return m


# --- checks -----------------------------------------------------------------------------------

print(f"python {sys.version.split()[0]}, shim {os.environ.get('TB_SHIM', '(default path)')}", flush=True)

try:
    import torch
except ImportError as e:
    torch = None
    print(f"INFO python: torch is not importable ({e})")

gpu = bool(torch is not None and torch.cuda.is_available() and tb.tb_is_available())
if torch is not None:
    print(f"INFO python: torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, tensorbridge cuda: {bool(tb.tb_is_available())}")


def need_gpu():
    if not gpu:
        raise Skip("needs torch with CUDA and a GPU")


@check("the shim loads and reports CUDA availability without crashing")
def _():
    avail = tb.tb_is_available()
    if not gpu:
        h = from_host(b"\1\2\3\4", [4], "UINT8", "cpu")
        assert h.read() == b"\1\2\3\4"
        try:
            from_host(b"\1\2\3\4", [4], "UINT8", "cuda:0")
        except TbError as e:
            if avail == 0:
                assert e.code == "ERR_CUDA_UNAVAILABLE", e
        return f"cuda available: {bool(avail)}"
    return "cuda available"


@check("CPU smoke: numpy -> tensorbridge -> numpy through capsules, same pointer")
def _():
    try:
        import numpy as np
    except ImportError:
        raise Skip("numpy is not installed")
    a = np.arange(12, dtype=np.float32).reshape(3, 4)
    t, _ = import_capsule(a.__dlpack__())
    assert t.data_ptr == a.ctypes.data, "zero-copy import"
    b = np.from_dlpack(t)
    assert b.ctypes.data == a.ctypes.data and (b == a).all(), "zero-copy export"
    t2, versioned = import_capsule(a.__dlpack__(max_version=(1, 0)))
    assert versioned and t2.read() == a.tobytes()


@check("CPU smoke: torch CPU tensors <-> tensorbridge through the protocol, same pointer")
def _():
    if torch is None:
        raise Skip("torch is not installed")
    x = torch.arange(10, dtype=torch.int64)
    t, _ = from_dlpack(x)
    assert t.data_ptr == x.data_ptr() and t.read() == x.numpy().tobytes()
    ours = from_host(bytes(range(16)), [4, 4], "UINT8", "cpu")
    y = torch.from_dlpack(ours)  # torch calls our __dlpack__ (and, from 2.x, asks for max_version)
    assert y.data_ptr() == ours.data_ptr and y.shape == (4, 4) and int(y.sum()) == sum(range(16))


DTYPES = {}
if torch is not None:
    DTYPES = {
        "BOOL": torch.bool, "UINT8": torch.uint8, "INT8": torch.int8, "INT16": torch.int16,
        "INT32": torch.int32, "INT64": torch.int64, "FP16": torch.float16, "BF16": torch.bfloat16,
        "FP32": torch.float32, "FP64": torch.float64,
    }
    for name, attr in (("UINT16", "uint16"), ("UINT32", "uint32"), ("UINT64", "uint64")):
        if hasattr(torch, attr):
            DTYPES[name] = getattr(torch, attr)


def random_cuda(dtype, n=257):
    size = torch.empty((), dtype=dtype).element_size()
    if dtype == torch.bool:
        return torch.randint(0, 2, (n,), dtype=torch.uint8, device="cuda").view(torch.bool)
    return torch.randint(0, 256, (n * size,), dtype=torch.uint8, device="cuda").view(dtype)


def raw_bytes(x):
    return x.contiguous().view(torch.uint8).cpu().numpy().tobytes()


@check("torch -> tensorbridge, every dtype, legacy and versioned: same pointer, same bytes")
def _():
    need_gpu()
    versioned_seen = False
    for name, dtype in DTYPES.items():
        x = random_cuda(dtype)
        for max_version in (None, (1, 0)):
            try:
                t, versioned = from_dlpack(x, max_version)
            except TypeError:
                continue  # a torch without max_version: the legacy round covers it
            versioned_seen |= versioned
            assert t.data_ptr == x.data_ptr(), f"{name}: not zero-copy"
            assert t.__dlpack_device__() == (2, x.device.index or 0)
            assert t.read() == raw_bytes(x), f"{name}: bytes differ"
    return f"{len(DTYPES)} dtypes, versioned capsules: {versioned_seen}"


@check("tensorbridge -> torch.from_dlpack, every dtype: same pointer, same bytes")
def _():
    need_gpu()
    for name, dtype in DTYPES.items():
        expect = random_cuda(dtype)
        data = raw_bytes(expect)
        t = from_host(data, [expect.numel()], name, "cuda:0")
        y = torch.from_dlpack(t)
        assert y.dtype == dtype, f"{name}: {y.dtype}"
        assert y.device.type == "cuda" and y.data_ptr() == t.data_ptr, f"{name}: not zero-copy"
        assert raw_bytes(y) == data, f"{name}: bytes differ"
        del y
    return f"{len(DTYPES)} dtypes"


SLEEP_CYCLES = int(os.environ.get("TB_SLEEP_CYCLES", "300000000"))  # ~0.15 s on an H100


def busy_then_fill(x, value):
    """On the current stream: spin, then fill (the fill lands well after the call returns)."""
    torch.cuda._sleep(SLEEP_CYCLES)
    x.fill_(value)


@check("stream: a torch producer on a busy side stream; tensorbridge's copy waits for it")
def _():
    need_gpu()
    n = 1 << 20
    x = torch.zeros(n, device="cuda")
    torch.cuda.synchronize()
    side = torch.cuda.Stream()
    with torch.cuda.stream(side):
        busy_then_fill(x, 7.0)
        t, _ = from_dlpack(x)  # torch: event on `side`, tensorbridge's stream waits on it
    data = t.read()  # device -> host on tensorbridge's stream
    got = torch.frombuffer(bytearray(data), dtype=torch.float32)
    assert bool((got == 7.0).all()), f"read stale data: {int((got != 7.0).sum())} of {n} not 7"
    torch.cuda.synchronize()
    # Control (not a pass/fail criterion): stream -1 asks for no synchronisation.
    y = torch.zeros(n, device="cuda")
    torch.cuda.synchronize()
    with torch.cuda.stream(side):
        busy_then_fill(y, 7.0)
        try:
            t2, _ = import_capsule(y.__dlpack__(stream=-1))
            stale = int((torch.frombuffer(bytearray(t2.read()), dtype=torch.float32) != 7.0).sum())
        except Exception as e:  # noqa: BLE001
            stale = f"n/a ({type(e).__name__})"
    torch.cuda.synchronize()
    return f"control with stream=-1: {stale} of {n} elements read before torch's fill"


@check("stream: tensorbridge -> a torch consumer on another side stream, which waits for tensorbridge")
def _():
    need_gpu()
    n = 1 << 20
    x = torch.zeros(n, device="cuda")
    torch.cuda.synchronize()
    producer, consumer = torch.cuda.Stream(), torch.cuda.Stream()
    with torch.cuda.stream(producer):
        busy_then_fill(x, 5.0)
        t, _ = from_dlpack(x)  # tensorbridge's stream now waits for `producer`
    with torch.cuda.stream(consumer):
        y = torch.from_dlpack(t)  # torch passes `consumer`; tensorbridge makes it wait on its stream
        assert y.data_ptr() == x.data_ptr(), "not zero-copy"
        z = y.clone()  # runs on `consumer`
    torch.cuda.synchronize()
    stale = int((z != 5.0).sum())
    assert stale == 0, f"the consumer read {stale} of {n} elements before the producer's kernel"
    return "the consumer stream waited (producer -> tensorbridge -> consumer)"


@check("pointer validation: host memory labelled CUDA, device memory labelled cuda:1 or cpu -> ERR_DEVICE_MISMATCH")
def _():
    need_gpu()
    host = torch.arange(64, dtype=torch.uint8)
    dev = torch.arange(64, dtype=torch.uint8, device="cuda")
    pinned = host.pin_memory()
    cases = [
        ("torch CPU memory labelled cuda:0", host.data_ptr(), (2, 0), "ERR_DEVICE_MISMATCH"),
        ("torch pinned memory labelled cuda:0", pinned.data_ptr(), (2, 0), "ERR_DEVICE_MISMATCH"),
        ("torch cuda:0 memory labelled cuda:1", dev.data_ptr(), (2, 1), "ERR_DEVICE_MISMATCH"),
        ("torch cuda:0 memory labelled cpu", dev.data_ptr(), (1, 0), "ERR_DEVICE_MISMATCH"),
        ("torch cuda:0 memory labelled cuda:0", dev.data_ptr(), (2, 0), None),
        ("torch pinned memory labelled cuda_host", pinned.data_ptr(), (3, 0), None),
    ]
    for what, ptr, device, code in cases:
        m = labelled(ptr, 64, device)  # lives until the end of the iteration, after `t`
        handle = tb.tb_import(ctypes.addressof(m), 0)
        if code is None:
            assert handle, f"{what}: refused: {last_error()}"
            t = TbTensor(handle)
            assert t.data_ptr == ptr and t.read() == bytes(range(64)), what
            del t  # reads the (NULL) deleter of `m`: before `m` goes
        else:
            assert not handle, f"{what}: accepted"
            err = last_error()
            assert err.startswith(code), f"{what}: {err}"
    return f"{len(cases)} cases"


@check("ownership: torch memory outlives tensorbridge's use; tensorbridge memory is freed when torch lets go")
def _():
    need_gpu()
    gc.collect()
    torch.cuda.synchronize()
    before = cuda_stats()
    x = torch.arange(1000, dtype=torch.float32, device="cuda")
    t, _ = from_dlpack(x)
    del t
    gc.collect()
    assert float(x.sum()) == 499500.0, "torch's tensor is intact after tensorbridge dropped its import"
    ours = from_host(bytes(4 << 20), [1 << 20], "FP32", "cuda:0")
    y = torch.from_dlpack(ours)
    del ours
    gc.collect()
    mid = cuda_stats()
    assert mid[2] - before[2] == 4 << 20, f"torch keeps tensorbridge's allocation alive: {mid} vs {before}"
    y.add_(1)
    torch.cuda.synchronize()
    del y
    gc.collect()
    after = cuda_stats()
    assert after[2] == before[2], f"live bytes {after[2]} != {before[2]}"
    assert after[1] - before[1] == after[0] - before[0] == 1, f"{before} -> {after}"
    return "freed once, after torch's last use"


print(f"python interop: {results['PASS']} passed, {results['FAIL']} failed, {results['SKIP']} skipped", flush=True)
sys.exit(1 if results["FAIL"] else 0)

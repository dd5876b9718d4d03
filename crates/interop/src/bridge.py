"""Python side of tensorbridge-interop: venv activation and DLPack producers.

Loaded once into the embedded interpreter by `tensorbridge_interop::bridge_module`.
"""

import site
import sys


def activate(site_packages):
    """Make the venv's site-packages the only one on sys.path.

    The embedded interpreter starts as the base Python (its prefix comes from libpython, not
    from the venv), so the base installation's site-packages is on sys.path and may hold other
    versions of the same packages. Dropping it is what `include-system-site-packages = false`
    does for the venv's own interpreter; `site.addsitedir` then runs the venv's .pth files.
    """
    sys.path[:] = [
        p for p in sys.path if not p.rstrip("/").endswith(("site-packages", "dist-packages"))
    ]
    sys.path.insert(0, site_packages)
    site.addsitedir(site_packages)


class Producer:
    """A DLPack producer (the Python array API's `__dlpack__`) over a tensorbridge tensor.

    `export(versioned, copy)` is a Rust function that makes a new capsule on every call. What
    each consumer asked for is recorded in `requests`, and what it got ("legacy" or
    "versioned") in `exported`.
    """

    def __init__(self, export, device=(1, 0)):
        self._export = export
        self._device = tuple(device)
        self.requests = []
        self.exported = []

    def __dlpack_device__(self):
        return self._device

    def __dlpack__(self, *, stream=None, max_version=None, dl_device=None, copy=None):
        self.requests.append(
            {"stream": stream, "max_version": max_version, "dl_device": dl_device, "copy": copy}
        )
        if dl_device is not None and tuple(dl_device) != self._device:
            raise BufferError(f"this tensor is on {self._device} and can't be exported to {dl_device}")
        versioned = max_version is not None and tuple(max_version)[0] >= 1
        self.exported.append("versioned" if versioned else "legacy")
        return self._export(versioned, copy)


class LegacyProducer(Producer):
    """A producer from before DLPack 1.0: `__dlpack__(stream=None)` and nothing else.

    A consumer that passes `max_version` gets a TypeError and must retry without it, then
    receive a legacy `dltensor` capsule (NumPy, PyTorch and JAX all do).
    """

    def __dlpack__(self, stream=None):
        self.requests.append({"stream": stream})
        self.exported.append("legacy")
        return self._export(False, None)

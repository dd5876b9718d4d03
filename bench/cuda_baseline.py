#!/usr/bin/env python3
"""Baseline for bench/cuda.bench.mjs: plain cudaMemcpy through PyTorch (and CuPy when it is
installed) on the same GPU, in the same run, measured the same way (wall clock of copy +
synchronise, median of 10 after 3 warm-ups).

  python3 bench/cuda_baseline.py [--json out.json] [--mib 256]

GPU only: without torch or CUDA it says so and exits 0.
"""

import argparse
import json
import statistics
import sys
import time


def median_seconds(fn, iters=10, warmup=3):
    for _ in range(warmup):
        fn()
    samples = []
    for _ in range(iters):
        t0 = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t0)
    return statistics.median(samples)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--json")
    parser.add_argument("--mib", type=int, default=256)
    args = parser.parse_args()
    try:
        import torch
    except ImportError:
        print("SKIP bench baseline: torch is not installed")
        return 0
    if not torch.cuda.is_available():
        print("SKIP bench baseline: no CUDA device")
        return 0
    n = args.mib << 20
    gb = n / 1e9
    pinned = torch.empty(n, dtype=torch.uint8, pin_memory=True)
    # Touched pages, as real data is: an untouched torch.empty maps the kernel's zero page,
    # and copies from it run about twice as fast (20.8 against 9.7 GB/s on an H100) as from
    # memory that holds data.
    pageable = torch.ones(n, dtype=torch.uint8)
    dev = torch.empty(n, dtype=torch.uint8, device="cuda")
    dev2 = torch.empty(n, dtype=torch.uint8, device="cuda")
    sync = torch.cuda.synchronize
    result = {"bytes": n, "gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}

    def run(name, fn):
        s = median_seconds(fn)
        result[name] = {"seconds": s, "GBps": gb / s}
        print(f"torch {name:>14}: {gb / s:7.2f} GB/s ({s * 1e3:.2f} ms for {args.mib} MiB)", flush=True)

    run("h2d_pinned", lambda: (dev.copy_(pinned, non_blocking=True), sync()))
    run("d2h_pinned", lambda: (pinned.copy_(dev, non_blocking=True), sync()))
    run("h2d_pageable", lambda: (dev.copy_(pageable), sync()))
    run("d2h_pageable", lambda: (pageable.copy_(dev), sync()))
    run("d2d", lambda: (dev2.copy_(dev), sync()))

    # DLPack export + import of a tensor, per round trip (torch -> capsule -> torch).
    for where, t in (("device", dev), ("host", pageable)):
        iters = 20000
        t0 = time.perf_counter()
        for _ in range(iters):
            torch.from_dlpack(t)
        us = (time.perf_counter() - t0) / iters * 1e6
        result[f"dlpack_roundtrip_{where}_us"] = us
        print(f"torch dlpack round trip ({where}): {us:.2f} us", flush=True)

    try:
        import cupy

        mem = cupy.cuda.alloc_pinned_memory(n)
        d = cupy.empty(n, dtype=cupy.uint8)
        rt = cupy.cuda.runtime

        def cupy_h2d():
            rt.memcpy(d.data.ptr, mem.ptr, n, rt.memcpyHostToDevice)

        def cupy_d2h():
            rt.memcpy(mem.ptr, d.data.ptr, n, rt.memcpyDeviceToHost)

        for name, fn in (("cupy_h2d_pinned", cupy_h2d), ("cupy_d2h_pinned", cupy_d2h)):
            s = median_seconds(fn)
            result[name] = {"seconds": s, "GBps": gb / s}
            print(f"cupy {name:>15}: {gb / s:7.2f} GB/s", flush=True)
    except Exception as e:  # noqa: BLE001 - CuPy is optional
        print(f"INFO bench baseline: no CuPy baseline ({type(e).__name__}: {e})")

    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


sys.exit(main())

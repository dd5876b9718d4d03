#!/usr/bin/env node
// CUDA copies and DLPack exchange of tensorbridge, against a plain cudaMemcpy baseline measured
// in the same run (bench/cuda_baseline.py, torch). GPU only: without CUDA it says so and exits 0.
//
//   python3 bench/cuda_baseline.py --json /tmp/base.json
//   TB_PKG=bench/.work/gpu/pkg TB_BASELINE=/tmp/base.json node --expose-gc bench/cuda.bench.mjs
//
// TB_PKG is the built package (scripts/gpu/prepare.sh makes one; "." with a local `dist/`
// from `npx tsc -p tsconfig.build.json` works too). Timing: wall clock of one synchronous copy
// (tensorbridge's copies return when complete), median of 10 after 3 warm-ups, like the
// baseline. Goals (issue 5): pinned host <-> device at >= 85% of cudaMemcpy; export + import
// of a device tensor as cheap as of a host tensor.
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { performance } from "node:perf_hooks";

const pkg = resolve(process.env.TB_PKG ?? "bench/.work/gpu/pkg");
const load = (m) => import(pathToFileURL(`${pkg}/dist/${m}.js`).href);
const { Tensor } = await load("tensor");
const { cuda } = await load("cuda");

if (!cuda.isAvailable()) {
  console.log(`SKIP bench: CUDA is not available (${cuda.unavailableReason()})`);
  process.exit(0);
}

const MIB = Number(process.env.TB_BENCH_MIB ?? 256);
const n = MIB << 20;
const gb = n / 1e9;
const baselineFile = process.env.TB_BASELINE;
const baseline = baselineFile && existsSync(baselineFile) ? JSON.parse(readFileSync(baselineFile, "utf8")) : {};

function medianMs(fn, iters = 10, warmup = 3) {
  for (let i = 0; i < warmup; i++) fn();
  const samples = [];
  for (let i = 0; i < iters; i++) {
    const t0 = performance.now();
    fn();
    samples.push(performance.now() - t0);
  }
  samples.sort((a, b) => a - b);
  return samples[Math.floor(samples.length / 2)];
}

const pinned = Tensor.empty([n], "UINT8", { device: "cuda_host" });
const pageable = Tensor.zeros([n], "UINT8");
pageable.data().fill(1); // touched pages, as real data is (the torch baseline does the same)
const dev = Tensor.empty([n], "UINT8", { device: "cuda:0" });
const dev2 = Tensor.empty([n], "UINT8", { device: "cuda:0" });

const rows = [];
const result = { bytes: n, driver: cuda.driverVersion() };
function copy(name, fn, base, goal) {
  const ms = medianMs(fn);
  const gbps = gb / (ms / 1e3);
  const ref = baseline[base]?.GBps;
  const pct = ref ? (100 * gbps) / ref : undefined;
  result[name] = { ms, GBps: gbps, baselineGBps: ref, percent: pct };
  rows.push({ copy: name, "GB/s": gbps.toFixed(2), "ms": ms.toFixed(2), "torch GB/s": ref?.toFixed(2) ?? "-", "% of torch": pct?.toFixed(1) ?? "-" });
  console.log(`BENCH ${name} ${MIB} MiB: ${gbps.toFixed(2)} GB/s${ref ? ` = ${pct.toFixed(1)}% of torch's ${ref.toFixed(2)} GB/s` : ""}`);
  if (goal !== undefined && pct !== undefined) {
    console.log(`GOAL ${name} >= ${goal}% of cudaMemcpy: ${pct >= goal ? "MET" : "MISSED"} (${pct.toFixed(1)}%)`);
  }
}

copy("h2d_pinned", () => pinned.copyTo(dev), "h2d_pinned", 85);
copy("d2h_pinned", () => dev.copyTo(pinned), "d2h_pinned", 85);
copy("h2d_pageable", () => pageable.copyTo(dev), "h2d_pageable", 85);
copy("d2h_pageable", () => dev.copyTo(pageable), "d2h_pageable", 85);
copy("d2d", () => dev.copyTo(dev2), "d2d");

// DLPack export + import (a round trip through a capsule), device vs host tensor. Rounds of
// every case in turn, each case warmed up first; the median round per case, so a slow stretch
// of the machine (or the first-use cost of a path) lands on all cases alike.
const small = (device) => Tensor.zeros([1024], "FP32", { device });
const cases = {
  "host 4 KiB": [small("cpu"), undefined],
  "device 4 KiB": [small("cuda:0"), undefined],
  "host 256 MiB": [pageable, undefined],
  "device 256 MiB": [dev, undefined],
  "device, stream -1": [dev, -1],
};
const batchUs = ([t, stream], iters) => {
  const options = stream === undefined ? { maxVersion: [1, 3] } : { maxVersion: [1, 3], stream };
  const t0 = performance.now();
  for (let i = 0; i < iters; i++) Tensor.fromDlpack(t.toDlpack(options)).dispose();
  return ((performance.now() - t0) * 1e3) / iters;
};
for (const c of Object.values(cases)) batchUs(c, 2000);
const samples = Object.fromEntries(Object.keys(cases).map((k) => [k, []]));
for (let round = 0; round < 15; round++) {
  for (const [name, c] of Object.entries(cases)) samples[name].push(batchUs(c, 2000));
}
const median = (xs) => xs.toSorted((a, b) => a - b)[xs.length >> 1];
const trips = Object.fromEntries(Object.entries(samples).map(([k, xs]) => [k, median(xs)]));
result.dlpackRoundTripUs = trips;
console.table(rows);
console.table(Object.entries(trips).map(([what, us]) => ({ "export + import": what, "us": us.toFixed(2) })));
const ratio = trips["device 256 MiB"] / trips["host 256 MiB"];
console.log(`BENCH dlpack round trip: device ${trips["device 256 MiB"].toFixed(2)} us, host ${trips["host 256 MiB"].toFixed(2)} us (x${ratio.toFixed(2)}; torch's own: device ${baseline.dlpack_roundtrip_device_us?.toFixed(2) ?? "-"} us, host ${baseline.dlpack_roundtrip_host_us?.toFixed(2) ?? "-"} us)`);
console.log(`GOAL dlpack round trip of a device tensor ~ a host one: ${ratio <= 1.5 ? "MET" : "MISSED"} (x${ratio.toFixed(2)}; stream -1 skips the ordering step: ${trips["device, stream -1"].toFixed(2)} us)`);
if (process.env.TB_BENCH_JSON) writeFileSync(process.env.TB_BENCH_JSON, JSON.stringify(result, null, 2));

// Micro-benchmarks of the Tensor API, side by side in one run (run with
// `npm run bench`). Figures are ratios to baselines measured in the same
// process, since these machines are shared and noisy.
//
// A capsule handed from toDlpack() to fromDlpack() in-process builds no C
// struct (see DLPackCapsule); the "C struct built" row is the path of a
// native consumer, which reads `.address` first.
import { Bench } from "tinybench";
import { Tensor } from "../src/index.js";
import { debug } from "../src/debug.js";

const KiB = 1024;
const GiB = 1024 * 1024 * 1024;
const small = Tensor.zeros([KiB / 4], "FP32");
small.data(); // its view exists from the start: imports of its memory find it by pointer
const huge = Tensor.zeros([GiB / 4], "FP32");
const jsBacked = new Float32Array(KiB / 4);
const buffer = new ArrayBuffer(KiB);

/** Results land here so the engine can't drop the work as dead code. */
let sink: unknown;

const bench = new Bench({ time: 1000, warmupTime: 200 });
bench
  .add("napi floor: empty native call", () => {
    debug.noop();
  })
  .add("toDlpack()+fromDlpack() 1 KiB (legacy)", () => {
    Tensor.fromDlpack(small.toDlpack()).dispose();
  })
  .add("toDlpack()+fromDlpack() 1 GiB (legacy)", () => {
    Tensor.fromDlpack(huge.toDlpack()).dispose();
  })
  .add("toDlpack()+fromDlpack() 1 KiB (versioned)", () => {
    Tensor.fromDlpack(small.toDlpack({ maxVersion: [1, 0] })).dispose();
  })
  .add("toDlpack()+fromDlpack() 1 GiB (versioned)", () => {
    Tensor.fromDlpack(huge.toDlpack({ maxVersion: [1, 0] })).dispose();
  })
  .add("toDlpack()+.address+fromDlpack() 1 KiB (C struct built)", () => {
    const capsule = small.toDlpack();
    sink = capsule.address;
    Tensor.fromDlpack(capsule).dispose();
  })
  .add("baseline: new Float32Array(buffer)", () => {
    sink = new Float32Array(buffer);
  })
  .add("data() view (cached)", () => {
    sink = small.data();
  })
  .add("Tensor.from(Float32Array) + first data()", () => {
    sink = Tensor.from(jsBacked).data();
  })
  .add("fromDlpack + first data() (native view)", () => {
    sink = Tensor.fromDlpack(small.toDlpack()).data();
  })
  .add("Tensor.zeros 1 KiB + first data() (a new external ArrayBuffer)", () => {
    const t = Tensor.zeros([KiB / 4], "FP32");
    sink = t.data();
    t.dispose();
  })
  .add("C struct import + first data() (the exporter's view, found by pointer)", () => {
    const capsule = small.toDlpack();
    sink = capsule.address;
    const t = Tensor.fromDlpack(capsule);
    sink = t.data();
    t.dispose();
  });

await bench.run();


const rows = bench.tasks.map((task) => {
  const r = task.result as unknown as { latency?: { p50?: number; mean?: number }; throughput?: { mean?: number } };
  const ns = (r.latency?.p50 ?? r.latency?.mean ?? NaN) * 1e6;
  return { task: task.name, "p50 (ns)": Math.round(ns) };
});
const p50 = (name: string) => rows.find((r) => r.task === name)!["p50 (ns)"];
console.table(rows);
console.log(
  `round trip 1 GiB / 1 KiB: legacy ${(p50("toDlpack()+fromDlpack() 1 GiB (legacy)") / p50("toDlpack()+fromDlpack() 1 KiB (legacy)")).toFixed(2)}, ` +
    `versioned ${(p50("toDlpack()+fromDlpack() 1 GiB (versioned)") / p50("toDlpack()+fromDlpack() 1 KiB (versioned)")).toFixed(2)}`,
);
console.log(
  `data() cached / new Float32Array(buffer): ${(p50("data() view (cached)") / p50("baseline: new Float32Array(buffer)")).toFixed(2)}`,
);
console.log(`round trip 1 KiB / napi floor: ${(p50("toDlpack()+fromDlpack() 1 KiB (legacy)") / p50("napi floor: empty native call")).toFixed(1)}`);

/** The median of `xs` (sorts it). */
function median(xs: number[]): number {
  return xs.sort((x, y) => x - y)[xs.length >> 1]!;
}

/**
 * Side-by-side timing of two operations in alternating batches, so that JIT
 * warm-up, GC and machine noise fall on both alike (tinybench runs tasks one
 * after another, and later tasks come out faster). Between batches the event
 * loop turns, as in an application, so FinalizationRegistry cleanup runs
 * (a fully synchronous loop would pile up every collected handle's cleanup).
 * Median ns per call of each; GC inside the batches is included.
 */
async function interleaved(a: () => void, b: () => void, ms = 3000, batch = 2000): Promise<[number, number]> {
  const ta: number[] = [];
  const tb: number[] = [];
  const end = performance.now() + ms;
  const time = (f: () => void): number => {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < batch; i++) f();
    return Number(process.hrtime.bigint() - t0) / batch;
  };
  while (performance.now() < end) {
    ta.push(time(a));
    tb.push(time(b));
    await new Promise((r) => setImmediate(r));
  }
  return [median(ta), median(tb)];
}

const [legacyKiB, legacyGiB] = await interleaved(
  () => Tensor.fromDlpack(small.toDlpack()).dispose(),
  () => Tensor.fromDlpack(huge.toDlpack()).dispose(),
);
const [versionedKiB, versionedGiB] = await interleaved(
  () => Tensor.fromDlpack(small.toDlpack({ maxVersion: [1, 0] })).dispose(),
  () => Tensor.fromDlpack(huge.toDlpack({ maxVersion: [1, 0] })).dispose(),
);
const [viewNs, baselineNs] = await interleaved(
  () => {
    sink = small.data();
  },
  () => {
    sink = new Float32Array(buffer);
  },
);
console.log("\ninterleaved side by side (median ns per call):");
console.table([
  { case: "round trip, legacy", "1 KiB": Math.round(legacyKiB), "1 GiB": Math.round(legacyGiB), "1 GiB / 1 KiB": +(legacyGiB / legacyKiB).toFixed(2) },
  { case: "round trip, versioned", "1 KiB": Math.round(versionedKiB), "1 GiB": Math.round(versionedGiB), "1 GiB / 1 KiB": +(versionedGiB / versionedKiB).toFixed(2) },
]);
console.log(`data() / new Float32Array(buffer): ${viewNs.toFixed(0)} ns / ${baselineNs.toFixed(0)} ns = ${(viewNs / baselineNs).toFixed(2)}`);

if (sink === null) console.log(sink);

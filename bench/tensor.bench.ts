// Micro-benchmarks of the Tensor API, side by side in one run (run with
// `npm run bench`). Figures are ratios to baselines measured in the same
// process, since these machines are shared and noisy.
import { Bench } from "tinybench";
import { Tensor, debug } from "../src/index.js";

const KiB = 1024;
const GiB = 1024 * 1024 * 1024;
const small = Tensor.zeros([KiB / 4], "FP32");
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
  });

await bench.run();
if (sink === null) console.log(sink);

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

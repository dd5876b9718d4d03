// Model instances in worker threads (TENSORBRIDGE_INSTANCE_THREADS) against
// instances on the serving thread, side by side in one process, rounds
// alternating, as ratios (these machines are shared and noisy):
//
// - the hop: one add_sub request at a time through ModelVersion.infer (one
//   instance each), so the cost of a worker round trip (the request and its
//   response through the instance's shared-memory rings, tensors
//   transferred): wall time and the process's CPU time per request;
// - the gain: a CPU-bound model (a busy loop of about `--busy-ms`) with
//   eight requests in flight: two thread instances against one (what a
//   second core buys), and against two in-thread instances (which share
//   the serving thread: what the default gives).
//
//   node --import tsx bench/threads.bench.ts [--rounds 5] [--busy-ms 2]
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";

import { ModelRegistry } from "../src/runtime/model-registry.js";
import { installModelModuleHook } from "../src/runtime/loader.js";
import { Tensor } from "../src/tensor.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const ROUNDS = Number(arg("rounds", "5"));
const BUSY_MS = Number(arg("busy-ms", "2"));

const root = new URL("..", import.meta.url).pathname;
const addSub = readFileSync(join(root, "examples/models/add_sub/config.pbtxt"), "utf8").replace(/instance_group.*\n?/, "");
const addSubModel = readFileSync(join(root, "examples/models/add_sub/1/model.ts"), "utf8");
const BUSY = `
import { InferenceResponse, type InferenceRequest } from "tensorbridge";
export default class Busy {
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => {
      const end = performance.now() + Number(r.parameters["ms"]);
      let x = 0;
      while (performance.now() < end) x++;
      return new InferenceResponse({ outputTensors: { Y: r.getInputTensorByName("X")! } });
    });
  }
}`;
const busyConfig = (name: string, count = 2) => `name: "${name}"
input { name: "X" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }
instance_group [ { count: ${count} kind: KIND_CPU } ]
`;
const THREADS = `\nparameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }\n`;

const repo = mkdtempSync(join(tmpdir(), "tb-threads-bench-"));
function model(name: string, config: string, source: string): void {
  mkdirSync(join(repo, name, "1"), { recursive: true });
  writeFileSync(join(repo, name, "config.pbtxt"), config);
  writeFileSync(join(repo, name, "1", "model.ts"), source);
}
const ONE = `\ninstance_group [ { count: 1 kind: KIND_CPU } ]\n`;
model("add_sub", addSub + ONE, addSubModel);
model("add_sub_threads", addSub.replace('name: "add_sub"', 'name: "add_sub_threads"') + ONE + THREADS, addSubModel);
model("busy", busyConfig("busy"), BUSY);
model("busy_threads", busyConfig("busy_threads") + THREADS, BUSY);
model("busy_threads_1", busyConfig("busy_threads_1", 1) + THREADS, BUSY);

await installModelModuleHook();
const reg = new ModelRegistry({ repository: repo });
await reg.loadAll();

const a = Tensor.from(new Float32Array([1, 2, 3, 4]), { name: "INPUT0" });
const b = Tensor.from(new Float32Array([4, 3, 2, 1]), { name: "INPUT1" });

/** µs per request, one at a time: wall time, and CPU time of the process (all its threads). */
async function hop(name: string, n: number): Promise<{ wall: number; cpu: number }> {
  const mv = reg.get(name);
  const c0 = process.cpuUsage();
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await mv.infer({ inputs: [a, b] });
  const wall = ((performance.now() - t0) * 1000) / n;
  const c = process.cpuUsage(c0);
  return { wall, cpu: (c.user + c.system) / n };
}

/** Requests per second, `inflight` at a time. */
async function throughput(name: string, total: number, inflight: number): Promise<number> {
  const mv = reg.get(name);
  const x = Tensor.from(new Float32Array([1]), { name: "X" });
  let started = 0;
  const t0 = performance.now();
  const lane = async () => {
    while (started < total) {
      started++;
      await mv.infer({ inputs: [x], parameters: { ms: BUSY_MS } });
    }
  };
  await Promise.all(Array.from({ length: inflight }, lane));
  return total / ((performance.now() - t0) / 1000);
}

await hop("add_sub", 2000);
await hop("add_sub_threads", 2000);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")} (${process.env["BENCH_NOTE"] ?? "this machine"})`);
interface Row {
  hopMain: { wall: number; cpu: number };
  hopThreads: { wall: number; cpu: number };
  busyMain: number;
  busyThreads: number;
  busyThreads1: number;
}
const rows: Row[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // Alternate which goes first, so that drift in the machine's load splits evenly.
  const order = r % 2 === 0 ? [0, 1, 2] : [2, 1, 0];
  const row = {} as Row;
  for (const k of order) {
    if (k === 0) {
      row.hopMain = await hop("add_sub", 5000);
      row.busyMain = await throughput("busy", 200, 8);
    } else if (k === 1) {
      row.hopThreads = await hop("add_sub_threads", 5000);
      row.busyThreads = await throughput("busy_threads", 200, 8);
    } else {
      row.busyThreads1 = await throughput("busy_threads_1", 200, 8);
    }
  }
  rows.push(row);
  console.log(
    `round ${r + 1}: add_sub ${row.hopMain.wall.toFixed(1)} µs in-thread (${row.hopMain.cpu.toFixed(1)} µs CPU), ` +
      `${row.hopThreads.wall.toFixed(1)} µs thread instance (${row.hopThreads.cpu.toFixed(1)} µs CPU): hop ${(row.hopThreads.wall - row.hopMain.wall).toFixed(1)} µs; ` +
      `busy ${BUSY_MS} ms: ${row.busyThreads.toFixed(0)}/s 2 thread instances, ${row.busyThreads1.toFixed(0)}/s 1 (${(row.busyThreads / row.busyThreads1).toFixed(2)}x), ` +
      `${row.busyMain.toFixed(0)}/s 2 in-thread (threads ${(row.busyThreads / row.busyMain).toFixed(2)}x)`,
  );
}
const median = (xs: number[]) => xs.toSorted((p, q) => p - q)[Math.floor(xs.length / 2)]!;
console.log(
  `median of ${ROUNDS}: hop ${median(rows.map((r) => r.hopThreads.wall - r.hopMain.wall)).toFixed(1)} µs per request ` +
    `(add_sub ${median(rows.map((r) => r.hopMain.wall)).toFixed(1)} µs in-thread, ${median(rows.map((r) => r.hopThreads.wall)).toFixed(1)} µs thread instance; ` +
    `CPU ${median(rows.map((r) => r.hopMain.cpu)).toFixed(1)} vs ${median(rows.map((r) => r.hopThreads.cpu)).toFixed(1)} µs); ` +
    `busy ${BUSY_MS} ms: 2 thread instances ${median(rows.map((r) => r.busyThreads / r.busyThreads1)).toFixed(2)}x one, ` +
    `${median(rows.map((r) => r.busyThreads / r.busyMain)).toFixed(2)}x 2 in-thread instances`,
);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
await reg.close();

// Model instances in worker threads (TENSORBRIDGE_INSTANCE_THREADS) against
// instances on the serving thread, side by side in one process, rounds
// alternating, as ratios (these machines are shared and noisy):
//
// - the hop: one add_sub request at a time through ModelVersion.infer, so
//   the cost of a worker round trip (two messages, tensors transferred);
// - the gain: a CPU-bound model (a busy loop of about `--busy-ms`) with two
//   instances and eight requests in flight, so what a second core buys.
//
//   node --import tsx bench/threads.bench.ts [--rounds 5] [--busy-ms 2]
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
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
const busyConfig = (name: string) => `name: "${name}"
input { name: "X" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }
instance_group [ { count: 2 kind: KIND_CPU } ]
`;
const THREADS = `\nparameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }\n`;

const repo = mkdtempSync(join(tmpdir(), "tb-threads-bench-"));
function model(name: string, config: string, source: string): void {
  mkdirSync(join(repo, name, "1"), { recursive: true });
  writeFileSync(join(repo, name, "config.pbtxt"), config);
  writeFileSync(join(repo, name, "1", "model.ts"), source);
}
model("add_sub", addSub, addSubModel);
model("add_sub_threads", addSub.replace('name: "add_sub"', 'name: "add_sub_threads"') + THREADS, addSubModel);
model("busy", busyConfig("busy"), BUSY);
model("busy_threads", busyConfig("busy_threads") + THREADS, BUSY);

await installModelModuleHook();
const reg = new ModelRegistry({ repository: repo });
await reg.loadAll();

const a = Tensor.from(new Float32Array([1, 2, 3, 4]), { name: "INPUT0" });
const b = Tensor.from(new Float32Array([4, 3, 2, 1]), { name: "INPUT1" });

/** µs per request, one at a time. */
async function hop(name: string, n: number): Promise<number> {
  const mv = reg.get(name);
  const t0 = performance.now();
  for (let i = 0; i < n; i++) await mv.infer({ inputs: [a, b] });
  return ((performance.now() - t0) * 1000) / n;
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
const rows: { hopMain: number; hopThreads: number; busyMain: number; busyThreads: number }[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // Alternate which goes first, so that drift in the machine's load splits evenly.
  let hopMain: number, hopThreads: number, busyMain: number, busyThreads: number;
  if (r % 2 === 0) {
    hopMain = await hop("add_sub", 5000);
    hopThreads = await hop("add_sub_threads", 5000);
    busyMain = await throughput("busy", 200, 8);
    busyThreads = await throughput("busy_threads", 200, 8);
  } else {
    hopThreads = await hop("add_sub_threads", 5000);
    hopMain = await hop("add_sub", 5000);
    busyThreads = await throughput("busy_threads", 200, 8);
    busyMain = await throughput("busy", 200, 8);
  }
  rows.push({ hopMain, hopThreads, busyMain, busyThreads });
  console.log(
    `round ${r + 1}: add_sub ${hopMain.toFixed(1)} µs in-thread, ${hopThreads.toFixed(1)} µs threaded (${(hopThreads / hopMain).toFixed(1)}x); ` +
      `busy ${BUSY_MS} ms: ${busyMain.toFixed(0)}/s in-thread, ${busyThreads.toFixed(0)}/s threaded (${(busyThreads / busyMain).toFixed(2)}x)`,
  );
}
const median = (xs: number[]) => xs.toSorted((p, q) => p - q)[Math.floor(xs.length / 2)]!;
console.log(
  `median: threaded add_sub costs ${median(rows.map((r) => r.hopThreads / r.hopMain)).toFixed(1)}x the in-thread latency ` +
    `(${median(rows.map((r) => r.hopMain)).toFixed(1)} vs ${median(rows.map((r) => r.hopThreads)).toFixed(1)} µs); ` +
    `a CPU-bound model with 2 instances serves ${median(rows.map((r) => r.busyThreads / r.busyMain)).toFixed(2)}x the requests per second`,
);
await reg.close();

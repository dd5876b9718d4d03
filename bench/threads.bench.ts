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
//
// And, in the same rounds, the floors that no implementation of thread
// instances could beat on this machine:
//
// - the ring floor: a bare round trip through the same shared-memory rings
//   (thread-ring.ts), carrying an add_sub request's execute message out and
//   its reply (two 4-element outputs by value) back, encoded and decoded by
//   thread-codec.ts; nothing else (no tensors handed over, no request
//   objects, no model): wall and CPU time per round trip, the better of two
//   ways to wait: blocking (the serving thread on Atomics.waitAsync, the
//   worker in Atomics.wait, as thread instances do) and polling (each side
//   polls the ring for up to 50 µs first, so no thread is woken while the
//   other answers within that). Which wins depends on the machine's load: a
//   wake of an idle vCPU here costs tens of µs, while polling on two vCPUs
//   that other jobs keep busy takes the core the other side needs. Both are
//   printed;
// - the handover floor: what handing add_sub's two inputs to another thread
//   without a copy costs (in one thread, CPU time), the cheapest way this
//   library has: one native call parks both (NativeTensor.park, as
//   thread-wire.ts does), one claims them, and each gets its tensor and
//   data() view there; a zero-copy input needs a native handle and a view
//   on the receiving side, and a native call on each side. (Until
//   2026-12-06 this row was Tensor.transfer + Tensor.fromTransferred +
//   data() per tensor, a DLPack struct and capsule each: ~2.5x this.)
// - the scaling floor: two bare workers, each a busy loop of `--busy-ms` per
//   message, fed by the main thread (postMessage, eight in flight), against
//   one: what a second worker can gain at all on this machine, with the
//   load it has at the time.
//
//   node --import tsx bench/threads.bench.ts [--rounds 5] [--busy-ms 2]
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";
import { Worker } from "node:worker_threads";

import { ModelRegistry } from "../src/runtime/model-registry.js";
import { installModelModuleHook } from "../src/runtime/loader.js";
import { encodeMessage } from "../src/runtime/thread-codec.js";
import { NativeTensor } from "../src/native.js";
import { Tensor } from "../src/tensor.js";
import { ringRoundTrip } from "./ring-round-trip.js";

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

// The ring floor's messages: add_sub's execute call (two parked inputs) and its reply (two outputs by value).
const EXECUTE = {
  op: "execute",
  id: 1,
  requests: [{ inputs: [{ name: "INPUT0", slot: 0, dtype: "FP32", shape: [4] }, { name: "INPUT1", slot: 1, dtype: "FP32", shape: [4] }], parked: 123_456, requested: [], requestId: "", parameters: {}, modelName: "add_sub_threads", modelVersion: 1 }],
};
const output = (name: string) => ({ name, dtype: "FP32", shape: [4], data: new Uint8Array(16) });
const REPLY = { id: 1, value: { result: { responses: [{ outputs: [output("OUTPUT0"), output("OUTPUT1")], error: undefined }] }, open: [] } };
if (encodeMessage(EXECUTE) === undefined || encodeMessage(REPLY) === undefined) throw new Error("the ring floor's messages must fit the binary codec");

// The ring floor's worker: decodes each message and answers with the reply, as a thread instance's worker would.
const RING_WORKER = `
const { workerData, parentPort } = require("node:worker_threads");
const { pollFor, RingReader, RingWriter, WRITTEN } = require(${JSON.stringify(new URL("../src/runtime/thread-ring.ts", import.meta.url).pathname)});
const inbox = new RingReader(workerData.toWorker, workerData.port);
const outbox = new RingWriter(workerData.fromWorker, workerData.port);
const reply = workerData.reply;
const pollUs = workerData.pollUs;
parentPort.on("message", () => {});
const loop = () => {
  for (;;) {
    for (let m = inbox.read(); m !== undefined; m = inbox.read()) outbox.write({ id: m.id, value: reply.value });
    if (pollUs > 0 && pollFor(inbox, pollUs)) continue;
    if (Atomics.wait(inbox.ctrl, WRITTEN, inbox.readCount, 2) === "timed-out") break;
  }
  setImmediate(loop);
};
loop();`;

/** How long each side of the polling ring floor polls before it blocks (µs). */
const POLL_US = 50;
/** µs per bare ring round trip (see the header), blocking or polling first: wall, and CPU time of the process. */
const ringFloor = (n: number, pollUs: number): Promise<{ wall: number; cpu: number }> => ringRoundTrip(RING_WORKER, { reply: REPLY }, EXECUTE, n, pollUs);

const inputs = [a, b];
/** Hands add_sub's two inputs over once, as a thread instance does on both of its sides, and views them. */
function handOver(): void {
  const natives: NativeTensor[] = [];
  for (const t of inputs) natives.push(Tensor.nativeOf(t)!);
  const there = NativeTensor.claim(NativeTensor.park(natives));
  for (let i = 0; i < there.length; i++) {
    const t = Tensor.fromNative(there[i]!, inputs[i]!.name);
    t.data();
    t.dispose();
  }
}

/** CPU µs to hand add_sub's two inputs to another thread and view them there (park, claim, a tensor and data() each). */
function handoverFloor(n: number): number {
  for (let i = 0; i < 2000; i++) handOver();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) handOver();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

// The scaling floor's worker: a busy loop of the message's milliseconds, then an answer.
const BUSY_WORKER = `
const { parentPort } = require("node:worker_threads");
parentPort.on("message", (ms) => {
  const end = performance.now() + ms;
  let x = 0;
  while (performance.now() < end) x++;
  parentPort.postMessage(x);
});`;

/** Messages per second through `workers` bare busy workers, `inflight` at a time (round-robin). */
async function scalingFloor(workers: number, total: number, inflight: number): Promise<number> {
  const ws = Array.from({ length: workers }, () => new Worker(BUSY_WORKER, { eval: true }));
  await Promise.all(ws.map((w) => new Promise((r) => w.once("online", r))));
  // Each worker answers in order: a queue of resolvers per worker.
  const waiting = ws.map(() => [] as (() => void)[]);
  ws.forEach((w, i) => w.on("message", () => waiting[i]!.shift()!()));
  let started = 0;
  const t0 = performance.now();
  const lane = async (k: number) => {
    while (started < total) {
      started++;
      const i = k % workers;
      await new Promise<void>((r) => {
        waiting[i]!.push(r);
        ws[i]!.postMessage(BUSY_MS);
      });
    }
  };
  await Promise.all(Array.from({ length: inflight }, (_, k) => lane(k)));
  const rate = total / ((performance.now() - t0) / 1000);
  await Promise.all(ws.map((w) => w.terminate()));
  return rate;
}

// V8 tiers the request path up over the first few thousand requests, on each thread: measure after that.
await hop("add_sub", 10_000);
await hop("add_sub_threads", 10_000);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")} (${process.env["BENCH_NOTE"] ?? "this machine"})`);
interface Row {
  hopMain: { wall: number; cpu: number };
  hopThreads: { wall: number; cpu: number };
  /** The ring floor: the better of the two below (by wall time). */
  ring: { wall: number; cpu: number };
  ringBlocking: { wall: number; cpu: number };
  ringPolling: { wall: number; cpu: number };
  handover: number;
  busyMain: number;
  busyThreads: number;
  busyThreads1: number;
  bare2: number;
  bare1: number;
}
const rows: Row[] = [];
for (let r = 0; r < ROUNDS; r++) {
  // Alternate which goes first, so that drift in the machine's load splits evenly.
  const order = r % 2 === 0 ? [0, 1, 2, 3] : [3, 2, 1, 0];
  const row = {} as Row;
  for (const k of order) {
    if (k === 0) {
      row.hopMain = await hop("add_sub", 5000);
      row.busyMain = await throughput("busy", 200, 8);
    } else if (k === 1) {
      row.hopThreads = await hop("add_sub_threads", 5000);
      row.busyThreads = await throughput("busy_threads", 200, 8);
    } else if (k === 2) {
      row.busyThreads1 = await throughput("busy_threads_1", 200, 8);
    } else {
      row.ringBlocking = await ringFloor(5000, 0);
      row.ringPolling = await ringFloor(5000, POLL_US);
      row.ring = row.ringPolling.wall < row.ringBlocking.wall ? row.ringPolling : row.ringBlocking;
      row.handover = handoverFloor(5000);
      row.bare2 = await scalingFloor(2, 200, 8);
      row.bare1 = await scalingFloor(1, 200, 8);
    }
  }
  rows.push(row);
  console.log(
    `round ${r + 1}: add_sub ${row.hopMain.wall.toFixed(1)} µs in-thread (${row.hopMain.cpu.toFixed(1)} µs CPU), ` +
      `${row.hopThreads.wall.toFixed(1)} µs thread instance (${row.hopThreads.cpu.toFixed(1)} µs CPU): hop ${(row.hopThreads.wall - row.hopMain.wall).toFixed(1)} µs; ` +
      `floors: ring ${row.ring.wall.toFixed(1)} µs (${row.ring.cpu.toFixed(1)} µs CPU; blocking ${row.ringBlocking.wall.toFixed(1)}, polling ${row.ringPolling.wall.toFixed(1)}), 2 inputs' handover ${row.handover.toFixed(1)} µs CPU; ` +
      `busy ${BUSY_MS} ms: ${row.busyThreads.toFixed(0)}/s 2 thread instances, ${row.busyThreads1.toFixed(0)}/s 1 (${(row.busyThreads / row.busyThreads1).toFixed(2)}x), ` +
      `${row.busyMain.toFixed(0)}/s 2 in-thread (threads ${(row.busyThreads / row.busyMain).toFixed(2)}x); ` +
      `bare workers ${row.bare2.toFixed(0)}/s 2, ${row.bare1.toFixed(0)}/s 1 (${(row.bare2 / row.bare1).toFixed(2)}x)`,
  );
}
const median = (xs: number[]) => xs.toSorted((p, q) => p - q)[Math.floor(xs.length / 2)]!;
console.log(
  `median of ${ROUNDS}: hop ${median(rows.map((r) => r.hopThreads.wall - r.hopMain.wall)).toFixed(1)} µs per request ` +
    `(add_sub ${median(rows.map((r) => r.hopMain.wall)).toFixed(1)} µs in-thread, ${median(rows.map((r) => r.hopThreads.wall)).toFixed(1)} µs thread instance; ` +
    `CPU ${median(rows.map((r) => r.hopMain.cpu)).toFixed(1)} vs ${median(rows.map((r) => r.hopThreads.cpu)).toFixed(1)} µs); ` +
    `floors: ring round trip ${median(rows.map((r) => r.ring.wall)).toFixed(1)} µs (${median(rows.map((r) => r.ring.cpu)).toFixed(1)} µs CPU; ` +
    `blocking ${median(rows.map((r) => r.ringBlocking.wall)).toFixed(1)} µs, polling ${median(rows.map((r) => r.ringPolling.wall)).toFixed(1)} µs), ` +
    `2 inputs' handover ${median(rows.map((r) => r.handover)).toFixed(1)} µs CPU, hop / ring floor ${median(rows.map((r) => (r.hopThreads.wall - r.hopMain.wall) / r.ring.wall)).toFixed(2)}x; ` +
    `busy ${BUSY_MS} ms: 2 thread instances ${median(rows.map((r) => r.busyThreads / r.busyThreads1)).toFixed(2)}x one, ` +
    `${median(rows.map((r) => r.busyThreads / r.busyMain)).toFixed(2)}x 2 in-thread instances; ` +
    `bare workers 2 vs 1 ${median(rows.map((r) => r.bare2 / r.bare1)).toFixed(2)}x (thread instances reach ${median(rows.map((r) => r.busyThreads / r.busyThreads1 / (r.bare2 / r.bare1))).toFixed(2)} of it)`,
);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
await reg.close();

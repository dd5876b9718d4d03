// The transport of thread instances alone, side by side with postMessage:
// a worker echoes an execute-shaped message (two parked tensors) back,
// one round trip at a time, through
//
// - the rings of src/runtime/thread-ring.ts (the serving thread on
//   Atomics.waitAsync, the worker in Atomics.wait, as thread instances do),
// - postMessage both ways (the transport the rings replaced);
//
// wall time and the process's CPU time per round trip, rounds alternating;
// then the codec (thread-codec.ts) against a structured clone, per message.
//
//   node --import tsx bench/thread-transport.bench.ts [--rounds 5] [--n 20000]
import { loadavg } from "node:os";
import { Worker } from "node:worker_threads";

import { decodeMessage, encodeMessage } from "../src/runtime/thread-codec.js";
import { perRoundTrip, ringRoundTrip } from "./ring-round-trip.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const ROUNDS = Number(arg("rounds", "5"));
const N = Number(arg("n", "20000"));

const MESSAGE = {
  op: "execute",
  id: 1,
  requests: [
    {
      inputs: [
        { name: "INPUT0", slot: 0, dtype: "FP32", shape: [4] },
        { name: "INPUT1", slot: 1, dtype: "FP32", shape: [4] },
      ],
      parked: 123_456,
      requested: [],
      requestId: "",
      parameters: {},
      modelName: "add_sub",
      modelVersion: 1,
    },
  ],
};

// The worker: echoes every message, by the rings or by postMessage.
const WORKER = `
const { workerData, parentPort } = require("node:worker_threads");
const { RingReader, RingWriter, WRITTEN } = require(${JSON.stringify(new URL("../src/runtime/thread-ring.ts", import.meta.url).pathname)});
if (workerData.mode === "post") parentPort.on("message", (m) => parentPort.postMessage(m));
else {
  const inbox = new RingReader(workerData.toWorker, workerData.port);
  const outbox = new RingWriter(workerData.fromWorker, workerData.port);
  parentPort.on("message", () => {});
  const loop = () => {
    for (;;) {
      for (let m = inbox.read(); m !== undefined; m = inbox.read()) outbox.write(m);
      if (Atomics.wait(inbox.ctrl, WRITTEN, inbox.readCount, 2) === "timed-out") break;
    }
    setImmediate(loop);
  };
  loop();
}`;

/** µs per round trip through the rings: wall and CPU. */
const ring = (): Promise<{ wall: number; cpu: number }> => ringRoundTrip(WORKER, { mode: "ring" }, MESSAGE, N);

/** µs per round trip by postMessage: wall and CPU. */
async function post(): Promise<{ wall: number; cpu: number }> {
  const w = new Worker(WORKER.replace(/^const \{ RingReader.*$/m, ""), { eval: true, workerData: { mode: "post" } });
  await new Promise((r) => w.once("online", r));
  const once = () =>
    new Promise<void>((r) => {
      w.once("message", () => r());
      w.postMessage(MESSAGE);
    });
  const timed = await perRoundTrip(once, N);
  await w.terminate();
  return timed;
}

/** CPU µs per call of `f`. */
function cpuPer(f: () => void, n = 100_000): number {
  for (let i = 0; i < 5000; i++) f();
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) f();
  const c = process.cpuUsage(c0);
  return (c.user + c.system) / n;
}

console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);
const rows: { ring: { wall: number; cpu: number }; post: { wall: number; cpu: number } }[] = [];
for (let r = 0; r < ROUNDS; r++) {
  const row = r % 2 === 0 ? { ring: await ring(), post: await post() } : { post: await post(), ring: await ring() };
  rows.push(row);
  console.log(
    `round ${r + 1}: ring ${row.ring.wall.toFixed(1)} µs (${row.ring.cpu.toFixed(1)} µs CPU), postMessage ${row.post.wall.toFixed(1)} µs (${row.post.cpu.toFixed(1)} µs CPU) per round trip`,
  );
}
const median = (xs: number[]) => xs.toSorted((p, q) => p - q)[Math.floor(xs.length / 2)]!;
console.log(
  `median of ${ROUNDS}: ring ${median(rows.map((r) => r.ring.wall)).toFixed(1)} µs (${median(rows.map((r) => r.ring.cpu)).toFixed(1)} CPU), ` +
    `postMessage ${median(rows.map((r) => r.post.wall)).toFixed(1)} µs (${median(rows.map((r) => r.post.cpu)).toFixed(1)} CPU); ` +
    `ring/postMessage wall ${median(rows.map((r) => r.ring.wall / r.post.wall)).toFixed(2)}x`,
);
const codec = cpuPer(() => decodeMessage(encodeMessage(MESSAGE)!, 0));
const clone = cpuPer(() => structuredClone(MESSAGE));
console.log(`codec encode+decode ${codec.toFixed(2)} µs CPU per message, structuredClone ${clone.toFixed(2)} µs (${(codec / clone).toFixed(2)}x)`);
console.log(`load average ${loadavg().map((l) => l.toFixed(2)).join(" ")}`);

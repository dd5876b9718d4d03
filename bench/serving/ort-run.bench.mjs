// What one ONNX Runtime run of the digits classifier costs when its code
// and data are in the caches (runs back to back) and when they are not
// (8 MiB touched before each run, as a client and the kernel do between two
// requests of a served model at concurrency 1): wall µs of
// `await session.run()` for one image, with the fetches preallocated as
// examples/models/digits does. The serving benchmark's digits rows spend
// most of a request's path in the second kind of run, in every server.
//
//   node bench/serving/ort-run.bench.mjs [--runs 3000]
import { loadavg } from "node:os";

import * as ort from "onnxruntime-node";

const i = process.argv.indexOf("--runs");
const RUNS = i >= 0 ? Number(process.argv[i + 1]) : 3000;
const WARM = Math.min(500, RUNS >> 2);

const session = await ort.InferenceSession.create(new URL("../../examples/models/digits/1/model.onnx", import.meta.url).pathname, {
  executionProviders: ["cpu"],
  intraOpNumThreads: 1,
  interOpNumThreads: 1,
});
const pixels = new Float32Array(64).fill(3);
const junk = new Uint8Array(8 << 20);

/** µs of one run; `cold`: 8 MiB touched first (one byte per 64-byte line). */
async function one(cold) {
  if (cold) for (let k = 0; k < junk.length; k += 64) junk[k]++;
  const labels = new BigInt64Array(1);
  const probabilities = new Float32Array(10);
  const t0 = performance.now();
  await session.run(
    { pixels: new ort.Tensor("float32", pixels, [1, 64]) },
    { label: new ort.Tensor("int64", labels, [1]), probabilities: new ort.Tensor("float32", probabilities, [1, 10]) },
  );
  return (performance.now() - t0) * 1000;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[xs.length >> 1];
console.log(`ort-run.bench: ${RUNS} runs each, load average ${loadavg()[0].toFixed(2)}`);
for (const cold of [false, true]) {
  const us = [];
  for (let k = 0; k < RUNS; k++) us.push(await one(cold));
  console.log(`${cold ? "after 8 MiB touched" : "back to back       "}: median ${median(us.slice(WARM)).toFixed(1)} µs per run`);
}
await session.release();

// dynamic_batching { preserve_ordering: true } against the same model
// without it, side by side in one process, rounds alternating, as ratios
// (these machines are shared and noisy): what keeping the order costs per
// request through ModelVersion.infer. The model answers in execute()
// (Y = X, no promise), two instances, `--inflight` requests kept in flight
// (each answer sends the next), so each request takes a slot in the answer
// order and, when batches finish in order, goes straight out.
//
//   node --import tsx bench/ordering.bench.ts [--rounds 5] [--requests 20000] [--inflight 8]
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { loadavg, tmpdir } from "node:os";
import { join } from "node:path";

import { installModelModuleHook } from "../src/runtime/loader.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import type { ModelVersion } from "../src/runtime/model-version.js";
import { Tensor } from "../src/tensor.js";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const ROUNDS = Number(arg("rounds", "5"));
const REQUESTS = Number(arg("requests", "20000"));
const INFLIGHT = Number(arg("inflight", "8"));

const ECHO = `
import { InferenceResponse, type InferenceRequest } from "tensorbridge";
export default class Echo {
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => new InferenceResponse({ outputTensors: { Y: r.getInputTensorByName("X")! } }));
  }
}`;
const config = (name: string, ordered: boolean) => `name: "${name}"
max_batch_size: 8
input { name: "X" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }
instance_group [ { count: 2 kind: KIND_CPU } ]
dynamic_batching { preserve_ordering: ${ordered} }
`;

const repo = mkdtempSync(join(tmpdir(), "tb-ordering-bench-"));
for (const [name, ordered] of [["plain", false], ["ordered", true]] as const) {
  mkdirSync(join(repo, name, "1"), { recursive: true });
  writeFileSync(join(repo, name, "config.pbtxt"), config(name, ordered));
  writeFileSync(join(repo, name, "1", "model.ts"), ECHO);
}

await installModelModuleHook();
const reg = new ModelRegistry({ repository: repo });
const failed = await reg.loadAll();
if (failed.length > 0) throw new Error(`load failed: ${failed.join(", ")}`);

/** ns per request: REQUESTS requests, INFLIGHT at a time. */
function run(mv: ModelVersion): Promise<number> {
  const x = Tensor.from(new Float32Array([1]), { shape: [1, 1], name: "X" });
  const input = { inputs: [x] };
  return new Promise((resolve, reject) => {
    let sent = 0;
    let done = 0;
    const t0 = process.hrtime.bigint();
    const cb = {
      resolve: () => {
        if (++done === REQUESTS) resolve(Number(process.hrtime.bigint() - t0) / REQUESTS);
        else if (sent < REQUESTS) next();
      },
      reject,
    };
    const next = (): void => {
      sent++;
      mv.submit(input, cb);
    };
    const first = Math.min(INFLIGHT, REQUESTS);
    for (let i = 0; i < first; i++) next();
  });
}

const plain = reg.get("plain");
const ordered = reg.get("ordered");
await run(plain);
await run(ordered);
const ratios: number[] = [];
console.log(`${REQUESTS} requests, ${INFLIGHT} in flight, ${ROUNDS} rounds; load average ${loadavg()[0]!.toFixed(2)}`);
for (let r = 0; r < ROUNDS; r++) {
  const a = await run(plain);
  const b = await run(ordered);
  ratios.push(b / a);
  console.log(`round ${r + 1}: without ${(a / 1000).toFixed(2)} us/request, with preserve_ordering ${(b / 1000).toFixed(2)} us/request, ratio ${(b / a).toFixed(3)}`);
}
ratios.sort((p, q) => p - q);
console.log(`median ratio (with / without): ${ratios[ratios.length >> 1]!.toFixed(3)}; load average ${loadavg()[0]!.toFixed(2)}`);
await reg.close();
rmSync(repo, { recursive: true, force: true });

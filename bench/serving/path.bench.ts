// The serving path's own CPU per request, without sockets: add_sub requests
// (binary tensors and JSON, as perf_analyzer sends them) and the digits
// classifier's (`digits`, `digits-json`: the held-out images, one per
// request, as run.ts's digits rows send them) handed to the HTTP inference
// handler (`directInfer`: decode, validate, schedule, execute, encode, the
// response written to a sink that keeps nothing), on the serving thread;
// beside it the work no KServe server in JavaScript can skip for the same
// request: `floor-js` for add_sub (parse the JSON part, view the tensors,
// add and subtract, write the JSON answer and put the body together), and
// floor-kserve's digits floor for digits (parse, a bare batcher, the same
// ONNX Runtime call, write the answer: floor-digits.mjs). Rounds alternate
// (these machines are shared and noisy); CPU time is the process's
// (`process.cpuUsage`), so time lost to other processes does not count.
//
//   node --import tsx --expose-gc bench/serving/path.bench.ts [--rounds 7] [--requests 20000] [--cases binary,json,digits,digits-json] [--concurrency 1]
//
// What it answers: how much of the server's CPU per request (bench/serving
// run.ts's last column) is our own JavaScript, and how much of that is the
// unavoidable part. The rest of a served request (the socket's read and
// write, node:net, the kernel) is floor-net's figure in run.ts. The digits
// cases run ONNX Runtime back to back, on warm caches: a served request
// finds them cold (ort-run.bench.mjs), so their figures are below run.ts's.
import { cpSync, readFileSync, rmSync } from "node:fs";
import { loadavg } from "node:os";
import { join } from "node:path";

import { directInfer, type InferRoute, type ResponseSink } from "../../src/server/http-infer.js";
import { InferenceServer } from "../../src/server/server.js";
import { ADD_SUB_REQUESTS, addSubRepository, type AddSubRequest } from "./add-sub-requests.js";
import { openDigitsFloor } from "./floor-digits.mjs";
import { addSubKserve } from "./floor-kserve.mjs";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const ROUNDS = Number(arg("rounds", "7"));
const REQUESTS = Number(arg("requests", "20000"));
const KNOWN = ["binary", "json", "digits", "digits-json"];
const CASES = arg("cases", KNOWN.join(",")).split(",");
for (const c of CASES) if (!KNOWN.includes(c)) throw new Error(`path.bench: --cases takes ${KNOWN.join(", ")}, got '${c}'`);
const CONCURRENCY = Number(arg("concurrency", "1"));
/** Requests run before each measurement, after its forced GC, and not counted (2000 were too few: 2.6x; 10000 converge). */
const WARM = 10000;

const root = new URL("../..", import.meta.url).pathname;
// Under bench/.work, not the system's temporary folder: the digits model imports onnxruntime-node from this checkout.
const repo = addSubRepository(root, join(root, "bench/.work"));
const withDigits = CASES.some((c) => c.startsWith("digits"));
if (withDigits) cpSync(join(root, "examples/models/digits"), join(repo, "digits"), { recursive: true });

const server = await InferenceServer.start({ repository: repo, port: 0, allowGrpc: false, quiet: true });
const direct = directInfer(server.endpoint, { bodyLimit: 64 << 20, chunkThreshold: 64 * 1024 });
const digitsFloor = withDigits ? await openDigitsFloor(join(root, "examples/models/digits/1/model.onnx")) : undefined;

/** One kind of request: the model it goes to, the requests sent in turn, and the floor's work for one of them. */
interface Case {
  name: string;
  model: string;
  requests: AddSubRequest[];
  floor: (r: AddSubRequest) => Promise<void> | number;
}

/** The digits model's outputs, asked for as binary data or as JSON. */
function digitsOutputs(binary: boolean): { name: string; parameters: { binary_data: boolean } }[] {
  return ["label", "probabilities"].map((name) => ({ name, parameters: { binary_data: binary } }));
}

/** The held-out digit images as perf_analyzer sends them (run.ts's --input-data), binary tensors or JSON, outputs as the inputs. */
function digitsRequests(json: boolean): AddSubRequest[] {
  const images = (JSON.parse(readFileSync(join(root, "examples/digits/test-set.json"), "utf8")) as { images: number[][] }).images;
  return images.map((im): AddSubRequest => {
    if (json) {
      const body = Buffer.from(JSON.stringify({ inputs: [{ name: "pixels", shape: [1, 64], datatype: "FP32", data: im }], outputs: digitsOutputs(false) }));
      return { body, headers: { host: "x", "content-length": String(body.length), "content-type": "application/json" } };
    }
    const head = Buffer.from(JSON.stringify({ inputs: [{ name: "pixels", shape: [1, 64], datatype: "FP32", parameters: { binary_data_size: 256 } }], outputs: digitsOutputs(true) }));
    const body = Buffer.concat([head, Buffer.from(Float32Array.from(im).buffer)]);
    return {
      body,
      headers: { host: "x", "content-length": String(body.length), "content-type": "application/octet-stream", "inference-header-content-length": String(head.length) },
    };
  });
}

/** floor-kserve's digits work for one request: it answers once its batch ran. */
function digitsFloorOne(r: AddSubRequest): Promise<void> {
  const hl = r.headers["inference-header-content-length"];
  return new Promise<void>((done) => digitsFloor!.submit(r.body, hl === undefined ? undefined : Number(hl), () => done()));
}

const ALL: Record<string, () => Case> = {
  binary: () => ({ name: "binary", model: "add_sub", requests: [ADD_SUB_REQUESTS.binary], floor: floorOne }),
  json: () => ({ name: "json", model: "add_sub", requests: [ADD_SUB_REQUESTS.json], floor: floorOne }),
  digits: () => ({ name: "digits", model: "digits", requests: digitsRequests(false), floor: digitsFloorOne }),
  "digits-json": () => ({ name: "digits-json", model: "digits", requests: digitsRequests(true), floor: digitsFloorOne }),
};
const cases: Case[] = KNOWN.filter((name) => CASES.includes(name)).map((name) => ALL[name]!());

/** A response sink that keeps the status and the body's length, and says when the response ended. */
class Sink implements ResponseSink {
  headersSent = false;
  status = 0;
  bytes = 0;
  done: () => void = () => {};
  writeHead(status: number): this {
    this.status = status;
    this.headersSent = true;
    return this;
  }
  write(chunk: Uint8Array): boolean {
    this.bytes += chunk.length;
    return true;
  }
  end(chunk?: Uint8Array): void {
    if (chunk !== undefined) this.bytes += chunk.length;
    this.done();
  }
  cork(): void {}
  uncork(): void {}
  destroy(): void {
    throw new Error("path.bench: the handler dropped a response");
  }
}

let turn = 0;
/** The next of a case's requests (one after the other, for both sides alike). */
function next(c: Case): AddSubRequest {
  return c.requests[turn++ % c.requests.length]!;
}

async function serveOne(c: Case): Promise<void> {
  const request = next(c);
  const req = { method: "POST", url: `/v2/models/${c.model}/infer`, headers: request.headers };
  const route = direct.route(req) as InferRoute | undefined;
  if (route === undefined) throw new Error("path.bench: the handler did not take the request");
  const sink = new Sink();
  const ended = new Promise<void>((r) => (sink.done = r));
  direct.serve(req, sink, route, request.body);
  await ended;
  if (sink.status !== 200) throw new Error(`path.bench: status ${sink.status}`);
}

/** What any KServe server in JavaScript does for the same request, and no more (floor-kserve.mjs). */
function floorOne(r: AddSubRequest): number {
  const hl = r.headers["inference-header-content-length"];
  return addSubKserve("add_sub", r.body, hl === undefined ? undefined : Number(hl)).body.length;
}

/** CPU µs per request of `n` requests through `one`. */
async function measure(n: number, one: () => Promise<void> | number): Promise<number> {
  globalThis.gc?.();
  // After a forced full GC (gc()) the serving path runs slower for some
  // thousands of requests (V8's optimized code and feedback are rebuilt; it
  // is not bytecode flushing: --no-flush-bytecode changes nothing): measured
  // at once, tensorbridge's figure was 2.5-4x what it settles to, against
  // little for floor-js's one function. Runs without --expose-gc (no forced
  // GC, the ordinary ones only) show the settled figure from the start.
  for (let i = 0; i < WARM; i++) {
    const r = one();
    if (typeof r !== "number") await r;
  }
  const t0 = process.cpuUsage();
  // `CONCURRENCY` requests in flight: a batch of them started together, then awaited.
  for (let i = 0; i < n; i += CONCURRENCY) {
    const batch: Promise<void>[] = [];
    for (let j = 0; j < CONCURRENCY; j++) {
      const r = one();
      if (typeof r !== "number") batch.push(r);
    }
    await Promise.all(batch);
  }
  const t = process.cpuUsage(t0);
  return (t.user + t.system) / n;
}

const median = (xs: number[]) => [...xs].sort((p, q) => p - q)[Math.floor(xs.length / 2)]!;

console.log(`path.bench: ${ROUNDS} rounds of ${REQUESTS} requests, load average ${loadavg()[0]!.toFixed(2)}`);
const results = new Map<string, number[]>();
for (const c of cases) {
  await measure(2000, () => serveOne(c)); // warm-up
  await measure(2000, async () => void (await c.floor(next(c))));
}
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cases) {
    for (const [name, one] of [
      [`tensorbridge ${c.name}`, () => serveOne(c)],
      [`floor ${c.name}`, () => c.floor(next(c))],
    ] as const) {
      const us = await measure(REQUESTS, one);
      results.set(name, [...(results.get(name) ?? []), us]);
    }
  }
}
console.log("| request | tensorbridge CPU/request (µs) | floor CPU/request (µs) | ratio |");
console.log("|---|---|---|---|");
for (const c of cases) {
  const ours = median(results.get(`tensorbridge ${c.name}`)!);
  const floor = median(results.get(`floor ${c.name}`)!);
  console.log(`| ${c.name} | ${ours.toFixed(2)} | ${floor.toFixed(2)} | ${(ours / floor).toFixed(2)}× |`);
}
console.log(`(medians of ${ROUNDS} rounds; load average at the end ${loadavg()[0]!.toFixed(2)})`);
await server.close();
rmSync(repo, { recursive: true, force: true });

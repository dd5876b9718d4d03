// The serving path's own CPU per request, without sockets: add_sub requests
// (binary tensors and JSON, as perf_analyzer sends them) handed to the HTTP
// inference handler (`directInfer`: decode, validate, schedule, execute,
// encode, the response written to a sink that keeps nothing), one at a
// time, on the serving thread; beside it `floor-js`, the work no KServe
// server in JavaScript can skip for the same request (parse the JSON part,
// view the tensors, add and subtract, write the JSON answer and put the
// body together). Rounds alternate (these machines are shared and noisy);
// CPU time is the process's (`process.cpuUsage`), so time lost to other
// processes does not count.
//
//   node --import tsx --expose-gc bench/serving/path.bench.ts [--rounds 7] [--requests 20000] [--cases binary,json] [--concurrency 1]
//
// What it answers: how much of the server's CPU per request (bench/serving
// run.ts's last column) is our own JavaScript, and how much of that is the
// unavoidable part. The rest of a served request (the socket's read and
// write, node:net, the kernel) is floor-net's figure in run.ts.
import { rmSync } from "node:fs";
import { loadavg } from "node:os";

import { directInfer, type InferRoute, type ResponseSink } from "../../src/server/http-infer.js";
import { InferenceServer } from "../../src/server/server.js";
import { ADD_SUB_REQUESTS, addSubRepository, type AddSubRequest } from "./add-sub-requests.js";
import { addSubKserve } from "./floor-kserve.mjs";

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const ROUNDS = Number(arg("rounds", "7"));
const REQUESTS = Number(arg("requests", "20000"));
const CASES = arg("cases", "binary,json").split(",");
const CONCURRENCY = Number(arg("concurrency", "1"));
/** Requests run before each measurement, after its forced GC, and not counted (2000 were too few: 2.6x; 10000 converge). */
const WARM = 10000;

const root = new URL("../..", import.meta.url).pathname;
const repo = addSubRepository(root);

const server = await InferenceServer.start({ repository: repo, port: 0, allowGrpc: false, quiet: true });
const direct = directInfer(server.endpoint, { bodyLimit: 64 << 20, chunkThreshold: 64 * 1024 });

interface Case extends AddSubRequest {
  name: string;
}
const cases: Case[] = (["binary", "json"] as const).filter((name) => CASES.includes(name)).map((name) => ({ name, ...ADD_SUB_REQUESTS[name] }));

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

async function serveOne(c: Case): Promise<void> {
  const req = { method: "POST", url: "/v2/models/add_sub/infer", headers: c.headers };
  const route = direct.route(req) as InferRoute | undefined;
  if (route === undefined) throw new Error("path.bench: the handler did not take the request");
  const sink = new Sink();
  const ended = new Promise<void>((r) => (sink.done = r));
  direct.serve(req, sink, route, c.body);
  await ended;
  if (sink.status !== 200) throw new Error(`path.bench: status ${sink.status}`);
}

/** What any KServe server in JavaScript does for the same request, and no more (floor-kserve.mjs). */
function floorOne(c: Case): number {
  const hl = c.headers["inference-header-content-length"];
  return addSubKserve("add_sub", c.body, hl === undefined ? undefined : Number(hl)).body.length;
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
  await measure(2000, async () => void floorOne(c));
}
for (let r = 0; r < ROUNDS; r++) {
  for (const c of cases) {
    for (const [name, one] of [
      [`tensorbridge ${c.name}`, () => serveOne(c)],
      [`floor-js ${c.name}`, () => floorOne(c)],
    ] as const) {
      const us = await measure(REQUESTS, one);
      results.set(name, [...(results.get(name) ?? []), us]);
    }
  }
}
console.log("| request | tensorbridge CPU/request (µs) | floor-js CPU/request (µs) | ratio |");
console.log("|---|---|---|---|");
for (const c of cases) {
  const ours = median(results.get(`tensorbridge ${c.name}`)!);
  const floor = median(results.get(`floor-js ${c.name}`)!);
  console.log(`| ${c.name} | ${ours.toFixed(2)} | ${floor.toFixed(2)} | ${(ours / floor).toFixed(2)}× |`);
}
console.log(`(medians of ${ROUNDS} rounds; load average at the end ${loadavg()[0]!.toFixed(2)})`);
await server.close();
rmSync(repo, { recursive: true, force: true });

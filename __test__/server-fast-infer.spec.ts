/**
 * The direct inference path (src/server/fast-infer.ts), served by the
 * server's HTTP/1.1 front (src/server/http-front.ts) or by node:http
 * (`fastInfer: "node"`), answers exactly as the fastify route: the same
 * requests go byte for byte (raw HTTP over a socket, the Date header masked)
 * to a server with each and one without (`fastInfer: false`), for
 * successes, binary tensors, large binary outputs, every error path and the
 * URL and framing forms it leaves to fastify; the statistics and metrics
 * they keep afterwards agree. Then the same over seeded mutations of those
 * bodies (`fuzz-helpers.ts`), which mostly take the error paths.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { connect } from "node:net";

import anyTest, { type TestFn } from "ava";

import type { InferenceEndpoint } from "../src/server/endpoint.js";
import { directInfer } from "../src/server/http-infer.js";
import { nodeInferHandler } from "../src/server/node-http.js";
import type { InferenceServer } from "../src/server/server.js";
import { CASES as FUZZ_CASES, SEED, mutate, rng } from "./fuzz-helpers.js";
import { ADD_SUB, binaryRequest, bytesOf, cleanupRepos, http, makeRepo, startTestServer } from "./server-helpers.js";
import { FAULTY } from "./fixtures/serving/models.js";

const test = anyTest as TestFn<{ fast: InferenceServer; node: InferenceServer; slow: InferenceServer }>;

/** add_sub over 20 000 elements: a binary response above the 64 KiB chunked-write threshold. */
const BIG = {
  config: `
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "INPUT1" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ -1 ] } ]
`,
  model: ADD_SUB.model!,
};

const BODY_LIMIT = 200_000;

test.before(async (t) => {
  const repo = makeRepo({ add_sub: { ...ADD_SUB, versions: [1, 2] }, faulty: FAULTY, big: BIG });
  const fast = await startTestServer(repo, { bodyLimit: BODY_LIMIT });
  const node = await startTestServer(repo, { bodyLimit: BODY_LIMIT, fastInfer: "node" });
  const slow = await startTestServer(repo, { bodyLimit: BODY_LIMIT, fastInfer: false });
  t.context = { fast, node, slow };
});

test.after.always(async (t) => {
  await t.context.fast?.close();
  await t.context.node?.close();
  await t.context.slow?.close();
  cleanupRepos();
});

/** Sends raw request bytes on a fresh connection and returns everything the server wrote until it closed. */
function raw(server: InferenceServer, request: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const s = connect(server.address.port, "127.0.0.1");
    const got: Buffer[] = [];
    s.on("data", (c) => got.push(c));
    s.on("error", reject);
    s.on("close", () => resolve(Buffer.concat(got)));
    s.end(request);
  });
}

/** One request: its raw HTTP/1.1 bytes and what the direct handler looks at. */
interface Req {
  bytes: Buffer;
  method: string;
  url: string;
  headers: Record<string, string>;
}

/** One HTTP/1.1 request with `Connection: close`, a body and its Content-Length unless `headers` frame it otherwise. */
function req(method: string, url: string, body?: Buffer | string, headers: Record<string, string> = {}): Req {
  const b = body === undefined ? undefined : Buffer.from(body);
  const h: Record<string, string> = { host: "x", connection: "close", ...headers };
  if (b !== undefined && h["transfer-encoding"] === undefined && h["content-length"] === undefined) h["content-length"] = String(b.length);
  const head = `${method} ${url} HTTP/1.1\r\n${Object.entries(h)
    .map(([k, v]) => `${k}: ${v}\r\n`)
    .join("")}\r\n`;
  let bytes: Buffer;
  if (h["transfer-encoding"] === "chunked" && b !== undefined) {
    bytes = Buffer.concat([Buffer.from(head), Buffer.from(`${b.length.toString(16)}\r\n`), b, Buffer.from("\r\n0\r\n\r\n")]);
  } else {
    bytes = b === undefined ? Buffer.from(head) : Buffer.concat([Buffer.from(head), b]);
  }
  return { bytes, method, url, headers: h };
}

/** An endpoint with no models: the direct path only routes against it. */
function stubEndpoint(closing: boolean): InferenceEndpoint {
  return { shm: {}, closing: () => closing, log: { info() {}, warn() {}, error() {} } } as unknown as InferenceEndpoint;
}

/** Whether the direct handler takes `r` (a stub request that never sends its body; nothing is answered). */
function takenDirectly(r: Req): boolean {
  const handler = nodeInferHandler(directInfer(stubEndpoint(false), { bodyLimit: BODY_LIMIT, chunkThreshold: 64 * 1024 }));
  const stub = { method: r.method, url: r.url, headers: r.headers, on: () => stub, resume: () => stub };
  // An empty body is served at once: the stub answers nothing.
  const res = { headersSent: false, writeHead: () => res, end: () => res };
  return handler(stub as unknown as IncomingMessage, res as unknown as ServerResponse);
}

const mask = (b: Buffer): string => b.toString("latin1").replace(/\r\ndate: [^\r]*/i, "\r\ndate: X");

const JSON_BODY = JSON.stringify({
  id: "r1",
  inputs: [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
  ],
});
const BIN = binaryRequest(
  [
    { name: "INPUT0", datatype: "FP32", shape: [4], bytes: bytesOf(new Float32Array([1, 2, 3, 4])) },
    { name: "INPUT1", datatype: "FP32", shape: [4], bytes: bytesOf(new Float32Array([0.5, 0.5, 0.5, 0.5])) },
  ],
  { outputs: [{ name: "OUTPUT0", parameters: { binary_data: true } }, { name: "OUTPUT1" }] },
);
const BIN_UNICODE_ID = binaryRequest(
  [
    { name: "INPUT0", datatype: "FP32", shape: [4], bytes: bytesOf(new Float32Array([1, 2, 3, 4])) },
    { name: "INPUT1", datatype: "FP32", shape: [4], bytes: bytesOf(new Float32Array([-0, NaN, Infinity, 0.1])) },
  ],
  { id: "é😀", parameters: { binary_data_output: true } },
);
const N = 20_000;
const BIG_BIN = binaryRequest(
  [
    { name: "INPUT0", datatype: "FP32", shape: [N], bytes: bytesOf(new Float32Array(N).fill(1.5)) },
    { name: "INPUT1", datatype: "FP32", shape: [N], bytes: bytesOf(new Float32Array(N).fill(0.25)) },
  ],
  { parameters: { binary_data_output: true } },
);
const faulty = (mode: string) => JSON.stringify({ parameters: { mode }, inputs: [{ name: "IN", shape: [1], datatype: "FP32", data: [1] }] });

/** [name, request, served by the direct handler?] */
const CASES: [string, Req, boolean][] = [
  ["JSON tensors", req("POST", "/v2/models/add_sub/infer", JSON_BODY), true],
  ["explicit version", req("POST", "/v2/models/add_sub/versions/1/infer", JSON_BODY), true],
  ["trailing slash", req("POST", "/v2/models/add_sub/infer/", JSON_BODY), true],
  ["query string", req("POST", "/v2/models/add_sub/infer?x=1", JSON_BODY), true],
  ["binary tensors", req("POST", "/v2/models/add_sub/infer", BIN.body, BIN.headers), true],
  ["JSON tensors, non-ASCII id, non-finite outputs", req("POST", "/v2/models/add_sub/infer", JSON_BODY.replace('"r1"', '"é😀"').replace("[4,3,2,1]", "[1e39,-0,2,-1e39]")), true],
  ["binary tensors, non-ASCII id", req("POST", "/v2/models/add_sub/infer", BIN_UNICODE_ID.body, BIN_UNICODE_ID.headers), true],
  ["large binary output, chunked write", req("POST", "/v2/models/big/infer", BIG_BIN.body, BIG_BIN.headers), true],
  ["unknown model", req("POST", "/v2/models/nope/infer", JSON_BODY), true],
  ["unknown version", req("POST", "/v2/models/add_sub/versions/9/infer", JSON_BODY), true],
  ["malformed JSON", req("POST", "/v2/models/add_sub/infer", '{"inputs":'), true],
  ["empty body", req("POST", "/v2/models/add_sub/infer", ""), true],
  ["bad Inference-Header-Content-Length", req("POST", "/v2/models/add_sub/infer", JSON_BODY, { "inference-header-content-length": "abc" }), true],
  ["model throws (500)", req("POST", "/v2/models/faulty/infer", faulty("throw")), true],
  ["model rejects (400)", req("POST", "/v2/models/faulty/infer", faulty("reject")), true],
  ["model unavailable", req("POST", "/v2/models/faulty/infer", faulty("unavailable")), true],
  ["wrong output dtype", req("POST", "/v2/models/faulty/infer", faulty("wrong-dtype")), true],
  ["percent-encoded model name", req("POST", "/v2/models/add%5Fsub/infer", JSON_BODY), false],
  ["chunked body", req("POST", "/v2/models/add_sub/infer", JSON_BODY, { "transfer-encoding": "chunked" }), false],
  ["no body, no Content-Length", req("POST", "/v2/models/add_sub/infer"), false],
  ["body over the limit", req("POST", "/v2/models/add_sub/infer", JSON_BODY, { "content-length": String(BODY_LIMIT + 1) }), false],
  ["GET on infer", req("GET", "/v2/models/add_sub/infer"), false],
];

for (const [name, request, direct] of CASES) {
  test.serial(`same bytes with and without the direct handler: ${name}`, async (t) => {
    const { fast, node, slow } = t.context;
    const before = { ...fast.httpFrontCounters! };
    const a = await raw(fast, request.bytes);
    const after = fast.httpFrontCounters!;
    const b = await raw(slow, request.bytes);
    const c = await raw(node, request.bytes);
    t.true(a.length > 0);
    t.is(mask(a), mask(b), "the front answers as fastify");
    t.is(mask(c), mask(b), "the direct path on node:http answers as fastify");
    t.is(takenDirectly(request), direct, direct ? "served before fastify" : "left to fastify");
    // The front serves what the direct path takes, and hands the rest to node:http.
    t.is(after.served - before.served, direct ? 1 : 0);
    t.is(after.handedOver - before.handedOver, direct ? 0 : 1);
  });
}

test.serial("mutated bodies get the same bytes from the front, from node:http and from fastify", async (t) => {
  const { fast, node, slow } = t.context;
  const binHeader = BIN.body.subarray(0, Number(BIN.headers["inference-header-content-length"])).toString("latin1");
  const binPayload = BIN.body.subarray(binHeader.length);
  const jsonSeeds = [JSON_BODY, faulty("throw"), faulty("reject"), faulty("wrong-dtype"), JSON_BODY.replace('"id":"r1",', '"outputs":[{"name":"OUTPUT1","parameters":{"binary_data":true}}],')];
  const alphabet = ["{", "}", "[", "]", ",", ":", '"', "\\", "0", "-", ".", "e", " ", "true", "null", "1e400", "\u00e9", '"FP64"', '"BYTES"', '"shape"', '"data"'];
  const numbers = ["0", "-1", "4", "5", "1e400", "65536", "1.5", "-0", "null"];
  const next = rng(SEED ^ 0x0f0f0f0f);
  // A fifth of the suite's fuzz count: each case is three HTTP exchanges.
  const cases = Math.max(50, Math.floor(FUZZ_CASES / 5));
  const statuses = new Map<string, number>();
  for (let i = 0; i < cases; i++) {
    let request: Req;
    if (next() < 0.6) {
      const { text } = mutate(next, { seeds: jsonSeeds, alphabet, numbers });
      request = req("POST", `/v2/models/${text.includes("mode") ? "faulty" : "add_sub"}/infer`, Buffer.from(text, "latin1"));
    } else {
      const header = mutate(next, { seeds: [binHeader], alphabet, numbers }).text;
      const hl = next() < 0.8 ? header.length : Math.max(0, header.length + Math.floor(next() * 9) - 4);
      request = req("POST", "/v2/models/add_sub/infer", Buffer.concat([Buffer.from(header, "latin1"), binPayload]), { "inference-header-content-length": String(hl) });
    }
    const a = await raw(fast, request.bytes);
    const b = await raw(slow, request.bytes);
    const c = await raw(node, request.bytes);
    const where = `case ${i} (TB_FUZZ_SEED=${SEED} TB_FUZZ_CASES=${(i + 1) * 5}): ${JSON.stringify(request.bytes.toString("latin1"))}`;
    const status = a.toString("latin1", 9, 12);
    statuses.set(status, (statuses.get(status) ?? 0) + 1);
    // A 500 is the faulty model's own (it throws, or returns a bad output),
    // or a header that is not JSON (Triton's 500), never add_sub's.
    if (status === "500" && !request.url.includes("/faulty/") && !a.includes("failed to parse the request JSON")) {
      t.fail(`500 from add_sub: ${where}\n${a.toString("latin1")}`);
      return;
    }
    if (mask(a) !== mask(b) || mask(c) !== mask(b)) {
      t.is(mask(a), mask(b), `front vs fastify, ${where}`);
      t.is(mask(c), mask(b), `node:http vs fastify, ${where}`);
      return;
    }
  }
  t.true((statuses.get("200") ?? 0) > 0 && (statuses.get("400") ?? 0) > 0, `both successes and errors: ${JSON.stringify([...statuses])}`);
  t.log(`${cases} mutated requests answered alike by all three (seed ${SEED}): ${JSON.stringify(Object.fromEntries(statuses))}`);
});

test("the direct handler leaves requests to fastify while shutting down", (t) => {
  const handler = nodeInferHandler(directInfer(stubEndpoint(true), { bodyLimit: BODY_LIMIT, chunkThreshold: 64 * 1024 }));
  const r = req("POST", "/v2/models/add_sub/infer", JSON_BODY);
  const stub = { method: r.method, url: r.url, headers: r.headers, on: () => stub, resume: () => stub };
  t.false(handler(stub as unknown as IncomingMessage, {} as ServerResponse), "fastify answers 503");
});

test.serial("keep-alive: several requests on one connection, with and without the direct handler", async (t) => {
  for (const server of [t.context.fast, t.context.node, t.context.slow]) {
    for (let i = 0; i < 5; i++) {
      const r = await http(server, "POST", "/v2/models/add_sub/infer", JSON.parse(JSON_BODY));
      t.is(r.status, 200);
      t.deepEqual(r.json.outputs[0].data, [5, 5, 5, 5]);
      t.is(r.headers["connection"], "keep-alive");
    }
  }
});

/** Request counts in the statistics and the Prometheus counters. */
async function counts(s: InferenceServer): Promise<unknown> {
  const stats = (await http(s, "GET", "/v2/models/stats")).json.model_stats.map((m: any) => ({
    name: m.name,
    version: m.version,
    inference_count: m.inference_count,
    execution_count: m.execution_count,
    success: m.inference_stats.success.count,
    fail: m.inference_stats.fail.count,
    batches: m.batch_stats.map((b: any) => [b.batch_size, b.compute_infer.count]),
  }));
  const metrics = (await http(s, "GET", "/metrics")).body
    .toString()
    .split("\n")
    .filter((l) => /^nv_inference_(request_success|request_failure|count|exec_count)\{/.test(l));
  return { stats, metrics };
}

test.serial("statistics and metrics agree after the same requests", async (t) => {
  const { fast, node, slow } = t.context;
  const a = (await counts(fast)) as { metrics: string[] };
  t.true(a.metrics.length > 0);
  t.deepEqual(a, await counts(slow));
  t.deepEqual(await counts(node), await counts(slow));
});

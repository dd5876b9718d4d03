/**
 * Triton's generate extension: `/generate` (one JSON response) and
 * `/generate_stream` (server-sent events), on ordinary and decoupled
 * models, with Triton 2.51's input shaping, response layout, status rules
 * and errors; a client that closes a stream cancels its request.
 */
import { connect } from "node:net";

import anyTest, { type TestFn } from "ava";

import type { InferenceServer } from "../src/server/server.js";
import { generateShape } from "../src/server/http-generate.js";
import { ADD_SUB, cleanupRepos, http, makeRepo, sleep, startTestServer } from "./server-helpers.js";
import { BATCHED, FAULTY } from "./fixtures/serving/models.js";
import { REPEAT, WATCH_CANCEL } from "./fixtures/serving/decoupled.js";

const test = anyTest as TestFn<{ server: InferenceServer; dir: string }>;

test.before(async (t) => {
  const dir = makeRepo({ add_sub: ADD_SUB, batched: BATCHED, faulty: FAULTY, repeat: REPEAT, watch_cancel: WATCH_CANCEL });
  t.context = { server: await startTestServer(dir), dir };
});
test.after.always(async (t) => {
  await t.context.server?.close();
  cleanupRepos();
});

/** The SSE events of a generate_stream body. */
function events(body: string): unknown[] {
  t0(body.endsWith("\n\n") || body === "", body);
  return body
    .split("\n\n")
    .filter((e) => e !== "")
    .map((e) => {
      t0(e.startsWith("data: "), e);
      return JSON.parse(e.slice(6));
    });
}
function t0(ok: boolean, what: string): void {
  if (!ok) throw new Error(`not a server-sent event stream: ${JSON.stringify(what)}`);
}

test("generate: inputs by name, outputs by name, metadata; keys in byte order as Triton writes them", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/add_sub/generate", { INPUT0: [1, 2, 3, 4], INPUT1: [4, 3, 2, 1] });
  t.is(r.status, 200);
  t.regex(String(r.headers["content-type"]), /^application\/json/);
  t.deepEqual(r.json, { OUTPUT0: [5, 5, 5, 5], OUTPUT1: [-3, -1, 1, 3], model_name: "add_sub", model_version: "1" });
  t.deepEqual(Object.keys(r.json as object), ["OUTPUT0", "OUTPUT1", "model_name", "model_version"]);
  const v = await http(t.context.server, "POST", "/v2/models/add_sub/versions/1/generate", { INPUT0: [1, 2, 3, 4], INPUT1: [1, 1, 1, 1], id: "q7" });
  t.deepEqual(Object.keys(v.json as object), ["OUTPUT0", "OUTPUT1", "id", "model_name", "model_version"]);
  t.is((v.json as { id: string }).id, "q7");
});

test("generate: a one-element output is a bare scalar; a batching model gets a batch dim of 1", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/batched/generate", { IN: [3, 4] });
  t.is(r.status, 200, r.body.toString());
  t.deepEqual(r.json, { OUT: [6, 8], REQUESTS_IN_BATCH: 1, model_name: "batched", model_version: "1" });
});

test("generate: keys that are not inputs and 'parameters' members become request parameters", async (t) => {
  // Triton 2.51 answers every error response of generate with 400, whatever its code.
  const r = await http(t.context.server, "POST", "/v2/models/faulty/generate", { IN: 2, parameters: { mode: "response-error" } });
  t.is(r.status, 400);
  t.deepEqual(r.json, { error: "no such thing" });
  const top = await http(t.context.server, "POST", "/v2/models/faulty/generate", { IN: 2, mode: "reject" });
  t.is(top.status, 400);
  t.deepEqual(top.json, { error: "rejected on purpose" });
  const bad = await http(t.context.server, "POST", "/v2/models/faulty/generate", { IN: 2, mode: [1] });
  t.is(bad.status, 400);
  t.regex((bad.json as { error: string }).error, /parameter 'mode'/);
});

test("generate: input shaping follows Triton (fixed dims divide, the innermost variable dim takes the rest)", (t) => {
  t.deepEqual(generateShape("X", [-1], 4), [4]);
  t.deepEqual(generateShape("X", [-1, 2], 6), [3, 2]);
  t.deepEqual(generateShape("X", [-1, -1], 5), [1, 5]);
  t.deepEqual(generateShape("X", [2, -1], 6), [2, 3]);
  t.deepEqual(generateShape("X", [4], 4), [4]);
  t.throws(() => generateShape("X", [4], 3), { message: "The schema can not convert input 'X' to tensor with proper shape" });
  t.throws(() => generateShape("X", [2, 2], 2), { message: /can not convert input 'X'/ });
});

test("generate: errors before inference are JSON errors with the HTTP status of their code", async (t) => {
  const s = t.context.server;
  const unknown = await http(s, "POST", "/v2/models/nope/generate", { X: 1 });
  t.is(unknown.status, 404);
  t.regex((unknown.json as { error: string }).error, /unknown model: 'nope'/);
  const notJson = await http(s, "POST", "/v2/models/add_sub/generate", "{nope", { "content-type": "application/json" });
  t.is(notJson.status, 500);
  t.regex((notJson.json as { error: string }).error, /failed to parse the request JSON/);
  const array = await http(s, "POST", "/v2/models/add_sub/generate", "[1]");
  t.is(array.status, 400);
  const shape = await http(s, "POST", "/v2/models/add_sub/generate", { INPUT0: [1, 2, 3], INPUT1: [1, 2, 3, 4] });
  t.is(shape.status, 400, shape.body.toString());
  const stream = await http(s, "POST", "/v2/models/nope/generate_stream", { X: 1 });
  t.is(stream.status, 404);
  t.regex(String(stream.headers["content-type"]), /^application\/json/);
  // A request that does not fit the model is refused before any event, as JSON.
  const missing = await http(s, "POST", "/v2/models/add_sub/generate_stream", { INPUT0: [1, 2, 3, 4] });
  t.is(missing.status, 400);
  t.regex(String(missing.headers["content-type"]), /^application\/json/);
  t.regex((missing.json as { error: string }).error, /missing required input\(s\) \['INPUT1'\]/);
});

test("generate_stream: an ordinary model answers one event", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/add_sub/generate_stream", { INPUT0: [1, 2, 3, 4], INPUT1: [4, 3, 2, 1] });
  t.is(r.status, 200);
  t.is(r.headers["content-type"], "text/event-stream; charset=utf-8");
  t.deepEqual(events(r.body.toString()), [{ OUTPUT0: [5, 5, 5, 5], OUTPUT1: [-3, -1, 1, 3], model_name: "add_sub", model_version: "1" }]);
});

test("generate_stream: a decoupled model's responses are one event each, in order, then the stream ends", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/repeat/generate_stream", { IN: [4, 5, 6] });
  t.is(r.status, 200, r.body.toString());
  t.deepEqual(
    events(r.body.toString()).map((e) => (e as { OUT: number }).OUT),
    [4, 5, 6],
  );
  const none = await http(t.context.server, "POST", "/v2/models/repeat/generate_stream", { IN: [] });
  t.is(none.status, 200);
  t.deepEqual(events(none.body.toString()), []);
});

test("generate: a decoupled model must send exactly one response (Triton's error, status 200)", async (t) => {
  const one = await http(t.context.server, "POST", "/v2/models/repeat/generate", { IN: [9] });
  t.is(one.status, 200);
  t.deepEqual(one.json, { OUT: 9, model_name: "repeat", model_version: "1" });
  for (const IN of [[1, 2], []]) {
    const many = await http(t.context.server, "POST", "/v2/models/repeat/generate", { IN });
    t.is(many.status, 200);
    t.deepEqual(many.json, {
      error: "generate expects model to produce exactly 1 response, use generate stream for model that generates various number of responses",
    });
  }
});

test("generate_stream: a response with an error is an error event; the stream goes on", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/repeat/generate_stream", { IN: [1, -1, 2] });
  t.is(r.status, 200);
  t.deepEqual(events(r.body.toString()), [
    { OUT: 1, model_name: "repeat", model_version: "1" },
    { error: "negative element -1" },
    { OUT: 2, model_name: "repeat", model_version: "1" },
  ]);
});

test("generate_stream: closing the connection cancels the request (the model sees isCancelled())", async (t) => {
  const { server, dir } = t.context;
  const body = JSON.stringify({ IN: 1, marker: "gs-cancel" });
  const sock = connect(server.address.port, "127.0.0.1");
  await new Promise<void>((r) => sock.once("connect", () => r()));
  let got = "";
  sock.on("data", (d) => (got += d.toString()));
  sock.write(`POST /v2/models/watch_cancel/generate_stream HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\n\r\n${body}`);
  // The model streams a tick every 20 ms until it sees the cancel.
  for (let i = 0; i < 100 && !got.includes("data: "); i++) await sleep(10);
  t.true(got.includes("data: "), got);
  sock.destroy();
  const { readFileSync, existsSync } = await import("node:fs");
  const flag = `${dir}/watch_cancel/cancelled-gs-cancel`;
  for (let i = 0; i < 200 && !existsSync(flag); i++) await sleep(10);
  t.true(existsSync(flag), "the model saw the cancellation");
  t.is(readFileSync(flag, "utf8"), "sender");
});

/**
 * Server lifecycle through HTTP: model load/unload/reload, finalize(),
 * graceful shutdown with in-flight requests, strict readiness, the default
 * body limit, and the system shared-memory extension when enabled. Each test
 * starts its own server on 127.0.0.1, port 0.
 */
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { DEFAULT_BODY_LIMIT } from "../src/server/server.js";
import { ADD_SUB, addModel, bytesOf, cleanupRepos, http, makeRepo, parseBinaryResponse, sleep, startTestServer } from "./server-helpers.js";
import { BAD_FORCE, SLOW } from "./fixtures/serving/models.js";

test.after.always(() => cleanupRepos());

const ADD_SUB_JSON = {
  inputs: [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [1, 1, 1, 1] },
  ],
};
const SLOW_REQ = (ms: number) => ({ parameters: { sleep_ms: ms }, inputs: [{ name: "IN", datatype: "INT32", shape: [1], data: [0] }] });

test("load a model added after start, unload it (finalize runs), load it again", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB });
  const s = await startTestServer(repo);
  try {
    t.is((await http(s, "GET", "/v2/models/slow/ready")).status, 400);
    addModel(repo, "slow", SLOW);
    const idx0 = await http(s, "POST", "/v2/repository/index");
    t.deepEqual(
      (idx0.json as { name: string }[]).find((e) => e.name === "slow"),
      { name: "slow" },
      "a model on disk but never loaded is listed without state",
    );
    const load = await http(s, "POST", "/v2/repository/models/slow/load");
    t.is(load.status, 200, load.body.toString());
    t.is((await http(s, "GET", "/v2/models/slow/ready")).status, 200);
    t.is((await http(s, "POST", "/v2/models/slow/infer", SLOW_REQ(0))).status, 200);

    const unload = await http(s, "POST", "/v2/repository/models/slow/unload", { parameters: { unload_dependents: false } });
    t.is(unload.status, 200);
    t.true(existsSync(join(repo, "slow", "finalized-slow_0_0")), "finalize() ran for instance 0");
    t.true(existsSync(join(repo, "slow", "finalized-slow_0_1")), "finalize() ran for instance 1");
    const after = await http(s, "POST", "/v2/models/slow/infer", SLOW_REQ(0));
    t.is(after.status, 400);
    t.regex(after.json.error, /has no available versions \(unloaded\)/);
    const idx = await http(s, "POST", "/v2/repository/index");
    t.deepEqual(
      (idx.json as { name: string }[]).find((e) => e.name === "slow"),
      { name: "slow", version: "1", state: "UNAVAILABLE", reason: "unloaded" },
    );
    t.is((await http(s, "GET", "/v2/health/ready")).status, 200, "an unloaded model does not make the server unready");

    t.is((await http(s, "POST", "/v2/repository/models/slow/load", {})).status, 200);
    t.is((await http(s, "POST", "/v2/models/slow/infer", SLOW_REQ(0))).status, 200);
    t.is((await http(s, "POST", "/v2/repository/models/add_sub/unload")).status, 200);
    t.is((await http(s, "POST", "/v2/repository/models/add_sub/unload")).status, 200, "unloading twice is fine");
  } finally {
    await s.close();
  }
});

test("load/unload errors: unknown model, bad config, bad body (Triton 2.51's statuses; server-repository-api.spec.ts has the rest)", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB });
  const s = await startTestServer(repo);
  try {
    const unknown = await http(s, "POST", "/v2/repository/models/nope/load");
    t.is(unknown.status, 500);
    t.regex(unknown.json.error, /^failed to load 'nope', failed to poll from model repository: no model directory 'nope'/);
    t.is((await http(s, "POST", "/v2/repository/models/nope/unload")).status, 200, "unloading what is not there succeeds, as in Triton");
    addModel(repo, "bad_force", BAD_FORCE);
    const bad = await http(s, "POST", "/v2/repository/models/bad_force/load");
    // Refused by the config's checks, before anything loads: Triton's 500 "failed to poll from model repository".
    t.is(bad.status, 500);
    t.regex(bad.json.error, /FORCE_CPU_ONLY_INPUT_TENSORS must be "yes" or "no", got "maybe"/);
    t.is((await http(s, "POST", "/v2/repository/models/add_sub/load", "{x")).status, 500);
    t.is((await http(s, "POST", "/v2/repository/models/add_sub/load", { parameters: [] })).status, 500);
    // Files need a config (server-load-files.spec.ts has the rest): Triton's 500.
    const files = await http(s, "POST", "/v2/repository/models/add_sub/load", { parameters: { "file:1/model.ts": "" } });
    t.is(files.status, 500);
    t.regex(files.json.error, /Load parameter 'config' must be specified for model file override/);
    const badJson = await http(s, "POST", "/v2/repository/models/add_sub/load", { parameters: { config: "{nope" } });
    t.is(badJson.status, 500);
    t.regex(badJson.json.error, /failed to poll from model repository: .*not valid JSON/);
    t.is((await http(s, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON)).status, 200, "a failed reload keeps the old version serving");
  } finally {
    await s.close();
  }
});

test("reload with a config override from the load request", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB });
  const s = await startTestServer(repo);
  try {
    const cfg = (await http(s, "GET", "/v2/models/add_sub/config")).json;
    cfg.instance_group = [{ kind: "KIND_CPU", count: 3 }];
    const r = await http(s, "POST", "/v2/repository/models/add_sub/load", { parameters: { config: JSON.stringify(cfg) } });
    t.is(r.status, 200, r.body.toString());
    const now = (await http(s, "GET", "/v2/models/add_sub/config")).json;
    t.is(now.instance_group[0].count, 3);
    t.is(now.instance_group[0].name, "add_sub_0");
    t.is((await http(s, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON)).status, 200);
    const bad = await http(s, "POST", "/v2/repository/models/add_sub/load", { parameters: { config: JSON.stringify({ ...cfg, bogus: 1 }) } });
    t.is(bad.status, 500, "a config refused: Triton's 'failed to poll from model repository'");
    t.regex(bad.json.error, /field "bogus": unknown field/);
  } finally {
    await s.close();
  }
});

test("reload picks up an edited model file; in-flight requests on the old version finish", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, slow: SLOW });
  const s = await startTestServer(repo);
  try {
    const inflight = http(s, "POST", "/v2/models/slow/infer", SLOW_REQ(300));
    await sleep(50);
    const file = join(repo, "slow", "1", "model.ts");
    writeFileSync(file, readFileSync(file, "utf8").replace("Tensor.fromBytes([this.name])", 'Tensor.fromBytes(["v2:" + this.name])'));
    t.is((await http(s, "POST", "/v2/repository/models/slow/load")).status, 200);
    const old = await inflight;
    t.is(old.status, 200);
    t.regex(old.json.outputs[0].data[0], /^slow_0_/);
    const fresh = await http(s, "POST", "/v2/models/slow/infer", SLOW_REQ(0));
    t.regex(fresh.json.outputs[0].data[0], /^v2:slow_0_/);
  } finally {
    await s.close();
  }
});

test("graceful close: in-flight requests finish, then finalize() runs; close is idempotent", async (t) => {
  const repo = makeRepo({ slow: SLOW });
  const s = await startTestServer(repo);
  const url = s.address.url;
  const inflight = http(s, "POST", "/v2/models/slow/infer", SLOW_REQ(400));
  // Close once the request's connection is accepted (on a loaded machine 100 ms may not be enough).
  for (let i = 0; i < 500 && s.connectionCounters.http.open === 0; i++) await sleep(10);
  await sleep(100);
  const closing = s.close();
  t.is(s.close(), closing, "close() returns the same promise");
  t.true(s.closing);
  const r = await inflight;
  t.is(r.status, 200, r.body.toString());
  await closing;
  t.true(existsSync(join(repo, "slow", "finalized-slow_0_0")));
  t.true(existsSync(join(repo, "slow", "finalized-slow_0_1")));
  await t.throwsAsync(fetch(`${url}/v2/health/live`));
});

test("await using closes the server", async (t) => {
  const repo = makeRepo({ slow: SLOW });
  {
    await using s = await startTestServer(repo);
    t.is((await http(s, "GET", "/v2/health/live")).status, 200);
  }
  t.true(existsSync(join(repo, "slow", "finalized-slow_0_0")));
});

test("strict readiness (Triton's default): not ready while a model failed to load", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, bad_force: BAD_FORCE });
  const s = await startTestServer(repo);
  try {
    const r = await http(s, "GET", "/v2/health/ready");
    t.is(r.status, 400);
    t.regex(r.json.error, /not every model is loaded/);
    t.is((await http(s, "GET", "/v2/health/live")).status, 200);
    t.is((await http(s, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON)).status, 200, "the other models serve");
    t.is((await http(s, "POST", "/v2/repository/models/bad_force/unload")).status, 200);
    t.is((await http(s, "GET", "/v2/health/ready")).status, 200);
  } finally {
    await s.close();
  }
});

test("the default body limit is 64 MiB; a smaller one answers 413", async (t) => {
  t.is(DEFAULT_BODY_LIMIT, 64 * 1024 * 1024);
  const repo = makeRepo({ add_sub: ADD_SUB });
  const s = await startTestServer(repo, { bodyLimit: 100 });
  try {
    const r = await http(s, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON);
    t.is(r.status, 413);
    t.regex(r.json.error, /limit of 100 bytes/);
    t.is((await http(s, "GET", "/v2/health/live")).status, 200);
  } finally {
    await s.close();
  }
});

test("a repository that does not exist fails start with ERR_REPOSITORY", async (t) => {
  const err = await t.throwsAsync(startTestServer("/nonexistent/tb-repo"));
  t.is((err as { code?: string }).code, "ERR_REPOSITORY");
});

const SHM_DIR = "/dev/shm";
test("system shared memory with --allow-client-shm: register, infer in and out, status, unregister", async (t) => {
  if (!existsSync(SHM_DIR)) return t.pass("no /dev/shm on this machine");
  const key = `tb_test_${process.pid}`;
  const file = join(SHM_DIR, key);
  const data = new Float32Array([1, 2, 3, 4, 10, 20, 30, 40]);
  writeFileSync(file, Buffer.concat([Buffer.from(bytesOf(data)), Buffer.alloc(64)]));
  const repo = makeRepo({ add_sub: ADD_SUB });
  const s = await startTestServer(repo, { allowClientShm: true });
  try {
    t.is((await http(s, "POST", "/v2/systemsharedmemory/region/in/register", { key: `/${key}`, offset: 0, byte_size: 32 })).status, 200);
    t.is((await http(s, "POST", "/v2/systemsharedmemory/region/out/register", { key: `/${key}`, offset: 32, byte_size: 64 })).status, 200);
    const dup = await http(s, "POST", "/v2/systemsharedmemory/region/in/register", { key: `/${key}`, byte_size: 32 });
    t.is(dup.status, 400);
    t.regex(dup.json.error, /already registered/);
    const reserved = await http(s, "POST", "/v2/systemsharedmemory/region/x/register", { key: "/triton_x", byte_size: 1 });
    t.regex(reserved.json.error, /reserved/);
    const missing = await http(s, "POST", "/v2/systemsharedmemory/region/y/register", { key: "/tb_does_not_exist", byte_size: 1 });
    t.regex(missing.json.error, /no such object/);
    const past = await http(s, "POST", "/v2/systemsharedmemory/region/z/register", { key: `/${key}`, offset: 90, byte_size: 10 });
    t.regex(past.json.error, /past the end/);
    t.deepEqual((await http(s, "GET", "/v2/systemsharedmemory/status")).json, [
      { name: "in", key: `/${key}`, offset: 0, byte_size: 32 },
      { name: "out", key: `/${key}`, offset: 32, byte_size: 64 },
    ]);
    t.deepEqual((await http(s, "GET", "/v2/systemsharedmemory/region/in/status")).json, [{ name: "in", key: `/${key}`, offset: 0, byte_size: 32 }]);

    const r = await http(s, "POST", "/v2/models/add_sub/infer", {
      inputs: [
        { name: "INPUT0", datatype: "FP32", shape: [4], parameters: { shared_memory_region: "in", shared_memory_byte_size: 16 } },
        { name: "INPUT1", datatype: "FP32", shape: [4], parameters: { shared_memory_region: "in", shared_memory_byte_size: 16, shared_memory_offset: 16 } },
      ],
      outputs: [
        { name: "OUTPUT0", parameters: { shared_memory_region: "out", shared_memory_byte_size: 16 } },
        { name: "OUTPUT1", parameters: { binary_data: true } },
      ],
    });
    t.is(r.status, 200, r.body.toString());
    const { header, outputs } = parseBinaryResponse(r);
    t.deepEqual(header.outputs[0], {
      name: "OUTPUT0",
      datatype: "FP32",
      shape: [4],
      parameters: { shared_memory_region: "out", shared_memory_byte_size: 16 },
    });
    t.deepEqual(Array.from(new Float32Array(new Uint8Array(readFileSync(file).subarray(32, 48)).buffer)), [11, 22, 33, 44]);
    t.deepEqual(Array.from(new Float32Array(new Uint8Array(outputs.get("OUTPUT1")!).buffer)), [-9, -18, -27, -36]);

    const tooSmall = await http(s, "POST", "/v2/models/add_sub/infer", {
      inputs: [
        { name: "INPUT0", datatype: "FP32", shape: [4], parameters: { shared_memory_region: "in", shared_memory_byte_size: 16 } },
        { name: "INPUT1", datatype: "FP32", shape: [4], parameters: { shared_memory_region: "in", shared_memory_byte_size: 16, shared_memory_offset: 24 } },
      ],
    });
    t.is(tooSmall.status, 400);
    t.regex(tooSmall.json.error, /past its size 32/);

    t.is((await http(s, "POST", "/v2/systemsharedmemory/region/in/unregister")).status, 200);
    t.is((await http(s, "GET", "/v2/systemsharedmemory/region/in/status")).status, 404);
    t.is((await http(s, "POST", "/v2/systemsharedmemory/unregister")).status, 200);
    t.deepEqual((await http(s, "GET", "/v2/systemsharedmemory/status")).json, []);
  } finally {
    await s.close();
    rmSync(file, { force: true });
  }
});

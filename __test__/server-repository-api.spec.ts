// The repository load/unload/index API answers as Triton 2.51 does (checked against it live,
// --model-control-mode=explicit; the tritonclient comparison is server-toolbox-tritonclient.spec.ts,
// repository/… keys): HTTP load parameters are checked in their order (500: non-string values,
// unknown keys, 'parameters' not an object), a load refused at its config or for a missing model is
// INTERNAL "failed to poll from model repository" and changes nothing, unloading a model that is
// not loaded (or not there) succeeds, a plain load of an unchanged serving model does not reload it,
// the index's body is read as Triton reads it, and success is 200 with an empty body.
import { utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";

import { ServingError, type ServingErrorCode } from "../src/runtime/errors.js";
import type { InferenceServer } from "../src/server/server.js";
import { ADD_SUB, addModel, cleanupRepos, grpcClient, grpcUnary, http, makeRepo, startTestServer, type GrpcClient } from "./server-helpers.js";

interface Ctx {
  server: InferenceServer;
  client: GrpcClient;
  repo: string;
}
const base = anyTest as TestFn<Ctx>;
// Serial: the tests load and unload the models of one server.
const test = base.serial;

const POLL = "failed to poll from model repository";
const OTHER = { ...ADD_SUB, config: ADD_SUB.config.replace(/name: "add_sub"/, 'name: "other"') };
const FAILING = {
  config: ADD_SUB.config.replace(/name: "add_sub"/, 'name: "failing"'),
  model: `export default class Failing { initialize(): void { throw new Error("init boom"); } execute(): never { throw new Error("never"); } }`,
};
const INFER = {
  inputs: [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [1, 1, 1, 1] },
  ],
};

base.before(async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, other: OTHER, broken: { config: 'input [ { name: "X" ', model: ADD_SUB.model }, failing: FAILING });
  t.context.repo = repo;
  t.context.server = await startTestServer(repo, { modelControlMode: "explicit", loadModels: ["add_sub"] });
  t.context.client = grpcClient(t.context.server);
});

base.after.always(async (t) => {
  t.context.client?.close();
  await t.context.server?.close();
  cleanupRepos();
});

const load = (s: InferenceServer, model: string, body?: unknown) => http(s, "POST", `/v2/repository/models/${model}/load`, body as object);
const index = async (s: InferenceServer) => (await http(s, "POST", "/v2/repository/index", {})).json as { name: string; state?: string }[];

/** An HTTP error: its status, and Triton's words first, then `: ` and why. */
function refused(t: { is(a: unknown, b: unknown, m?: string): void; true(v: boolean, m?: string): void }, r: { status: number; json: any }, status: number, triton: string, what: string): void {
  t.is(r.status, status, `${what}: ${JSON.stringify(r.json)}`);
  t.true(typeof r.json?.error === "string" && r.json.error.startsWith(`${triton}: `), `${what}: ${r.json?.error}`);
}

test("HTTP load parameters, in their order as Triton's: a non-string value is 500 'attempt to access JSON non-string as string', an unknown key 500 'unexpected error on creating Triton parameter', parameters not an object 500; nothing reloads", async (t) => {
  const s = t.context.server;
  const nonString = "attempt to access JSON non-string as string";
  const unknown = "unexpected error on creating Triton parameter";
  const cases: [unknown, string][] = [
    [{ foo: "bar" }, unknown],
    [{ foo: 1 }, nonString],
    [{ foo: true }, nonString],
    [{ config: { backend: "tensorbridge" } }, nonString],
    [{ config: 1 }, nonString],
    [{ config: null }, nonString],
    [{ config: 1, foo: "x" }, nonString],
    [{ foo: "x", config: 1 }, unknown],
    [{ config: "{bad", foo: "x" }, unknown],
    [{ "file:1/model.ts": "eA==", foo: "x" }, unknown],
    [{ "file:1/model.ts": 5 }, nonString],
  ];
  for (const [parameters, words] of cases) refused(t, await load(s, "add_sub", { parameters }), 500, words, JSON.stringify(parameters));
  for (const parameters of [1, [], null, "x"]) refused(t, await load(s, "add_sub", { parameters }), 500, "attempt to get members for non-object", JSON.stringify(parameters));
  t.is((await http(s, "POST", "/v2/models/add_sub/infer", INFER)).status, 200, "still serving");
  t.deepEqual((await index(s)).find((e) => e.name === "add_sub"), { name: "add_sub", version: "1", state: "READY" });
});

test("gRPC load parameters: Triton's INVALID_ARGUMENT for an unknown key or a config that is not string_param (unchanged)", async (t) => {
  const c = t.context.client;
  const a = await grpcUnary(c, "RepositoryModelLoad", { model_name: "add_sub", parameters: { foo: { string_param: "bar" } } });
  t.like(a, { ok: false, code: grpc.status.INVALID_ARGUMENT, details: "unrecognized load parameter 'foo'." });
  const b = await grpcUnary(c, "RepositoryModelLoad", { model_name: "add_sub", parameters: { config: { int64_param: 1 } } });
  t.like(b, { ok: false, code: grpc.status.INVALID_ARGUMENT, details: "invalid value type for load parameter 'config', expected string_param." });
});

test("a bad config without files (not JSON, not an object, not valid, empty) and a config.pbtxt that does not parse: HTTP 500 / gRPC INTERNAL 'failed to load …, failed to poll from model repository' and why; the code is the config's; nothing changes", async (t) => {
  const { server: s, client: c } = t.context;
  const configs: [string, ServingErrorCode][] = [
    ["{not json", "ERR_CONFIG_INVALID"],
    ["[]", "ERR_CONFIG_INVALID"],
    [JSON.stringify({ max_batch_size: -3 }), "ERR_CONFIG_INVALID"],
    ["", "ERR_CONFIG_INVALID"],
  ];
  for (const model of ["add_sub", "other"]) {
    for (const [config, code] of configs) {
      refused(t, await load(s, model, { parameters: { config } }), 500, `failed to load '${model}', ${POLL}`, `${model} ${config}`);
      const g = await grpcUnary(c, "RepositoryModelLoad", { model_name: model, parameters: { config: { string_param: config } } });
      t.like(g, { ok: false, code: grpc.status.INTERNAL });
      t.true(!g.ok && g.details.startsWith(`failed to load '${model}', ${POLL}: `), !g.ok ? g.details : "");
      const e = await t.throwsAsync(s.endpoint.loadModel(model, { config }), { instanceOf: ServingError });
      t.is(e?.code, code, config);
      t.is(e?.tritonCode, "INTERNAL", config);
    }
  }
  refused(t, await load(s, "broken"), 500, `failed to load 'broken', ${POLL}`, "broken config.pbtxt");
  const e = await t.throwsAsync(s.endpoint.loadModel("broken"), { instanceOf: ServingError });
  t.is(e?.code, "ERR_CONFIG_SYNTAX");
  // add_sub still serves; 'other' and 'broken' are still unknown, as in Triton (directory only in the index, not found, the server ready).
  t.is((await http(s, "POST", "/v2/models/add_sub/infer", INFER)).status, 200);
  t.deepEqual(await index(s), [{ name: "add_sub", version: "1", state: "READY" }, { name: "broken" }, { name: "failing" }, { name: "other" }]);
  t.is((await http(s, "GET", "/v2/models/other")).json?.error, "Request for unknown model: 'other' is not found");
  t.is((await http(s, "GET", "/v2/health/ready")).status, 200);
});

test("loading a model the repository does not have: HTTP 500 / gRPC INTERNAL in Triton's words, then why; ERR_MODEL_NOT_FOUND", async (t) => {
  const { server: s, client: c } = t.context;
  refused(t, await load(s, "nosuch"), 500, `failed to load 'nosuch', ${POLL}`, "nosuch");
  const g = await grpcUnary(c, "RepositoryModelLoad", { model_name: "nosuch" });
  t.true(!g.ok && g.code === grpc.status.INTERNAL && g.details.startsWith(`failed to load 'nosuch', ${POLL}: `), JSON.stringify(g));
  const e = await t.throwsAsync(s.endpoint.loadModel("nosuch"), { instanceOf: ServingError });
  t.is(e?.code, "ERR_MODEL_NOT_FOUND");
  t.is(e?.tritonCode, "INTERNAL");
  t.false((await index(s)).some((m) => m.name === "nosuch"));
});

test("unloading a model that was never loaded, or that the repository does not have, succeeds (HTTP 200 with no body, gRPC OK) and changes nothing", async (t) => {
  const { server: s, client: c } = t.context;
  const before = await index(s);
  for (const model of ["other", "nosuch", "broken"]) {
    const r = await http(s, "POST", `/v2/repository/models/${model}/unload`, {});
    t.is(r.status, 200, model);
    t.is(r.body.length, 0, model);
    t.deepEqual(await grpcUnary(c, "RepositoryModelUnload", { model_name: model }), { ok: true, value: {} }, model);
    await s.endpoint.unloadModel(model);
  }
  t.deepEqual(await index(s), before);
  t.is((await http(s, "GET", "/v2/health/ready")).status, 200);
});

test("load and unload succeed with 200, an empty body and application/json, as Triton's; a body that is not a JSON object is no parameters; unload reads no body (Triton unloads whatever it holds)", async (t) => {
  const s = t.context.server;
  const ok = await load(s, "other", []);
  t.is(ok.status, 200);
  t.is(ok.body.length, 0);
  t.regex(String(ok.headers["content-type"]), /^application\/json/);
  t.is((await http(s, "GET", "/v2/models/other/ready")).status, 200);
  const un = await http(s, "POST", "/v2/repository/models/other/unload", "{not json");
  t.is(un.status, 200);
  t.is(un.body.length, 0);
  t.is((await http(s, "GET", "/v2/models/other/ready")).status, 400, "unloaded");
  t.is((await http(s, "POST", "/v2/repository/models/other/unload", { parameters: { unload_dependents: "yes", foo: 1 } })).status, 200);
  refused(t, await load(s, "other", "{not json"), 500, "failed to parse the request JSON buffer", "load, bad JSON");
});

test("repository index: 'ready' not a boolean is 500 'attempt to access JSON non-boolean as boolean'; bad JSON 500; a body that is not an object lists all; ready: true only ready versions", async (t) => {
  const s = t.context.server;
  for (const ready of ["yes", 1, null]) {
    refused(t, await http(s, "POST", "/v2/repository/index", { ready }), 500, "attempt to access JSON non-boolean as boolean", JSON.stringify(ready));
  }
  refused(t, await http(s, "POST", "/v2/repository/index", "{bad"), 500, "failed to parse the request JSON buffer", "bad JSON");
  const all = await http(s, "POST", "/v2/repository/index", "[]");
  t.is(all.status, 200);
  t.deepEqual(
    (all.json as { name: string }[]).map((m) => m.name),
    ["add_sub", "broken", "failing", "other"],
  );
  t.deepEqual((await http(s, "POST", "/v2/repository/index", { ready: true })).json, [{ name: "add_sub", version: "1", state: "READY" }]);
});

test("a load without config of a model that serves from an unchanged directory does not reload it (its statistics stay); a changed file or a config does", async (t) => {
  const { server: s, repo } = t.context;
  const count = async () => (await http(s, "GET", "/v2/models/add_sub/stats")).json.model_stats[0].inference_stats.success.count as number;
  await load(s, "add_sub", { parameters: { config: JSON.stringify((await http(s, "GET", "/v2/models/add_sub/config")).json) } });
  t.is(await count(), 0, "a load with a config reloads");
  t.is((await http(s, "POST", "/v2/models/add_sub/infer", INFER)).status, 200);
  t.is(await count(), 1);
  t.is((await load(s, "add_sub")).status, 200);
  t.deepEqual(await grpcUnary(t.context.client, "RepositoryModelLoad", { model_name: "add_sub" }), { ok: true, value: {} });
  await s.endpoint.loadModel("add_sub");
  t.is(await count(), 1, "not reloaded");
  // A file written again (its times change), as an edit would.
  const file = join(repo, "add_sub", "1", "model.ts");
  writeFileSync(file, ADD_SUB.model!);
  const later = new Date(Date.now() + 5000);
  utimesSync(file, later, later);
  t.is((await load(s, "add_sub")).status, 200);
  t.is(await count(), 0, "reloaded after the change");
  // A new version directory is a change too.
  addModel(repo, "add_sub", { ...ADD_SUB, config: `${ADD_SUB.config}\nversion_policy: { all { } }`, versions: [1, 2] });
  t.is((await load(s, "add_sub")).status, 200);
  t.deepEqual((await http(s, "GET", "/v2/models/add_sub")).json.versions, ["1", "2"]);
});

test("a model that fails to load (its initialize() throws): HTTP 400 / gRPC INVALID_ARGUMENT 'load failed for model …: version 1 is at UNAVAILABLE state: ' and why, as Triton's; ERR_MODEL_LOAD; the index's reason is why alone", async (t) => {
  const { server: s, client: c } = t.context;
  const words = "load failed for model 'failing': version 1 is at UNAVAILABLE state";
  refused(t, await load(s, "failing"), 400, words, "HTTP");
  const g = await grpcUnary(c, "RepositoryModelLoad", { model_name: "failing" });
  t.true(!g.ok && g.code === grpc.status.INVALID_ARGUMENT && g.details.startsWith(`${words}: `), JSON.stringify(g));
  const e = await t.throwsAsync(s.endpoint.loadModel("failing"), { instanceOf: ServingError });
  t.is(e?.code, "ERR_MODEL_LOAD");
  t.regex(e!.message, /^load failed for model 'failing': version 1 is at UNAVAILABLE state: .*init boom/);
  // As Triton's index: one row per version, the failing one with why alone; an unload keeps it.
  const rows = async () => (await index(s)).filter((m) => m.name === "failing") as { version?: string; state?: string; reason?: string }[];
  const failed = await rows();
  t.like(failed, [{ name: "failing", version: "1", state: "UNAVAILABLE" }]);
  t.is(failed.length, 1);
  t.regex(failed[0]!.reason ?? "", /^initialize\(\) of instance failing_0_0 failed: init boom/);
  t.is((await http(s, "POST", "/v2/repository/models/failing/unload", {})).status, 200);
  t.deepEqual(await rows(), failed);
});

test("the index after an unload: a row per version that served, UNAVAILABLE 'unloaded' (as Triton's); ready: true leaves them out", async (t) => {
  const s = t.context.server;
  addModel(t.context.repo, "two", { ...OTHER, config: `${OTHER.config.replace(/name: "other"/, 'name: "two"')}\nversion_policy: { all { } }`, versions: [1, 2] });
  t.is((await load(s, "two")).status, 200);
  t.deepEqual((await index(s)).filter((m) => m.name === "two"), [
    { name: "two", version: "1", state: "READY" },
    { name: "two", version: "2", state: "READY" },
  ]);
  t.is((await http(s, "POST", "/v2/repository/models/two/unload", {})).status, 200);
  t.deepEqual((await index(s)).filter((m) => m.name === "two"), [
    { name: "two", version: "1", state: "UNAVAILABLE", reason: "unloaded" },
    { name: "two", version: "2", state: "UNAVAILABLE", reason: "unloaded" },
  ]);
  t.false(((await http(s, "POST", "/v2/repository/index", { ready: true })).json as { name: string }[]).some((m) => m.name === "two"));
});

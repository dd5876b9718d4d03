// --model-control-mode (Triton's): `none` refuses the repository's load/unload API over HTTP, gRPC and
// from a model in Triton's words; `explicit` loads only --load-model models at start.
import anyTest, { type TestFn } from "ava";

import { parseCli } from "../src/cli.js";
import { TensorBridgeError } from "../src/errors.js";
import { ServingError } from "../src/runtime/errors.js";
import { ADD_SUB, cleanupRepos, grpcClient, grpcUnary, http, makeRepo, startTestServer } from "./server-helpers.js";

const test = anyTest as TestFn;

test.after.always(() => cleanupRepos());

/** add_sub under another name (the config names its model). */
const OTHER = { ...ADD_SUB, config: ADD_SUB.config.replace(/name: "add_sub"/, 'name: "other"') };

const REFUSAL = "explicit model load / unload is not allowed if polling is enabled";

test("parseCli: --model-control-mode none|explicit and --load-model (repeatable); poll and other values are ERR_CLI_USAGE", (t) => {
  t.like(parseCli(["serve", "/m", "--model-control-mode", "NONE"]).options, { modelControlMode: "none" });
  t.like(parseCli(["serve", "/m", "--model-control-mode=explicit", "--load-model", "a", "--load-model=b"]).options, { modelControlMode: "explicit", loadModels: ["a", "b"] });
  for (const bad of ["poll", "sometimes"]) {
    const e = t.throws(() => parseCli(["serve", "/m", `--model-control-mode=${bad}`]), { instanceOf: ServingError });
    t.is(e?.code, "ERR_CLI_USAGE");
  }
});

test("model-control mode none: every model loads; load and unload over HTTP (503) and gRPC (UNAVAILABLE) are refused in Triton's words, and nothing changes", async (t) => {
  const server = await startTestServer(makeRepo({ add_sub: ADD_SUB, other: OTHER }), { modelControlMode: "none" });
  const client = grpcClient(server);
  try {
    t.true(server.registry.isReady("add_sub"));
    t.true(server.registry.isReady("other"));
    for (const op of ["load", "unload"]) {
      const r = await http(server, "POST", `/v2/repository/models/other/${op}`, {});
      t.is(r.status, 503, op);
      t.deepEqual(r.json, { error: REFUSAL });
      const g = await grpcUnary(client, op === "load" ? "RepositoryModelLoad" : "RepositoryModelUnload", { model_name: "other" });
      t.false(g.ok);
      t.is(g.ok ? undefined : g.code, 14);
      t.is(g.ok ? undefined : g.details, REFUSAL);
    }
    const e = await t.throwsAsync(server.endpoint.unloadModel("other"), { instanceOf: ServingError });
    t.is(e?.code, "ERR_MODEL_CONTROL");
    t.is(e?.tritonCode, "UNAVAILABLE");
    t.true(server.registry.isReady("other"), "still loaded");
  } finally {
    client.close();
    await server.close();
  }
});

test("model-control mode explicit: only --load-model models load at start; the API loads the others; * loads all", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, other: OTHER });
  const server = await startTestServer(repo, { modelControlMode: "explicit", loadModels: ["add_sub"] });
  try {
    t.true(server.registry.isReady("add_sub"));
    t.false(server.registry.isReady("other"));
    const r = await http(server, "POST", "/v2/repository/models/other/load", {});
    t.is(r.status, 200);
    t.true(server.registry.isReady("other"));
  } finally {
    await server.close();
  }
  const all = await startTestServer(repo, { modelControlMode: "explicit", loadModels: ["*"] });
  try {
    t.true(all.registry.isReady("add_sub") && all.registry.isReady("other"));
  } finally {
    await all.close();
  }
  const e = await t.throwsAsync(startTestServer(repo, { loadModels: ["add_sub"] }), { instanceOf: TensorBridgeError });
  t.is(e?.code, "ERR_INVALID_ARGUMENT");
});

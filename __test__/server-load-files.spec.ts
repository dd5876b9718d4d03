// Loading a model from files sent with the load request (Triton's model-repository extension: `file:<path>`
// parameters with a `config`), over HTTP (base64), gRPC (bytes_param) and from a model (loadModel(name,
// { config, files })): the model serves from a private temporary directory, removed when the model is
// unloaded, loaded again or closed; every refusal has its code and Triton 2.51's status.
import { spawnSync } from "node:child_process";
import { existsSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { liveModelFilesDirectories } from "../src/runtime/model-files.js";
import { ServingError } from "../src/runtime/errors.js";
import type { InferenceServer } from "../src/server/server.js";
import { ADD_SUB, ROOT, cleanupRepos, grpcClient, grpcUnary, http, makeRepo, startTestServer } from "./server-helpers.js";

// Serial: the checks that no directory is left read this process's list of them.
const test = (anyTest as TestFn).serial;

anyTest.after.always(() => cleanupRepos());

/** A model whose OUTPUT0 is INPUT0 + `n`. */
const adder = (n: number): string => `import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
export default class Adder {
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => {
      const x = r.getInputTensorByName("INPUT0")!.data() as Float32Array;
      return new InferenceResponse({ outputTensors: [Tensor.from(x.map((v) => v + ${n}), { name: "OUTPUT0", shape: [4] })] });
    });
  }
}
`;

const CONFIG = JSON.stringify({
  input: [{ name: "INPUT0", data_type: "TYPE_FP32", dims: [4] }],
  output: [{ name: "OUTPUT0", data_type: "TYPE_FP32", dims: [4] }],
});

const b64 = (s: string): string => Buffer.from(s).toString("base64");

/** Loads over HTTP with a config and files (text, sent base64). */
function httpLoad(s: InferenceServer, name: string, files: Record<string, string>, config: string | null = CONFIG) {
  const parameters: Record<string, unknown> = Object.fromEntries(Object.entries(files).map(([k, v]) => [k, b64(v)]));
  if (config !== null) parameters["config"] = config;
  return http(s, "POST", `/v2/repository/models/${encodeURIComponent(name)}/load`, { parameters });
}

/** OUTPUT0 of the model for INPUT0 = [1, 2, 3, 4] (or the error). */
async function infer(s: InferenceServer, name: string): Promise<number[] | string> {
  const r = await http(s, "POST", `/v2/models/${name}/infer`, { inputs: [{ name: "INPUT0", datatype: "FP32", shape: [4], data: [1, 2, 3, 4] }] });
  return r.status === 200 ? (r.json.outputs[0].data as number[]) : `${r.status} ${r.json?.error}`;
}

/** The temporary directory a model's newest version was loaded from. */
const dirOf = (s: InferenceServer, name: string): string => dirname(dirname(s.registry.get(name).file));

const POLL = "failed to poll from model repository";

test("HTTP: a new model loads from base64 files in a private directory, reloads from other files, and its directory goes at unload", async (t) => {
  const s = await startTestServer(makeRepo({ add_sub: ADD_SUB }));
  try {
    const r = await httpLoad(s, "fresh", { "file:1/model.ts": adder(1) });
    t.is(r.status, 200, r.body.toString());
    t.deepEqual(await infer(s, "fresh"), [2, 3, 4, 5]);
    const first = dirOf(s, "fresh");
    t.not(first, join(s.registry.repository, "fresh"));
    t.is(statSync(first).mode & 0o777, 0o700, "the directory is private");
    t.is(statSync(join(first, "1", "model.ts")).mode & 0o777, 0o600);
    t.deepEqual(liveModelFilesDirectories(), [first]);
    // As Triton 2.51: the index lists the repository's directories, not a model that came from files.
    t.deepEqual((await http(s, "POST", "/v2/repository/index", {})).json, [{ name: "add_sub", version: "1", state: "READY" }]);

    t.is((await httpLoad(s, "fresh", { "file:1/model.ts": adder(2), "file:1/notes/readme.txt": "a second file" })).status, 200);
    t.deepEqual(await infer(s, "fresh"), [3, 4, 5, 6], "the new files serve (Triton 2.51 keeps the old code when the config is unchanged)");
    const second = dirOf(s, "fresh");
    t.not(second, first);
    t.false(existsSync(first), "the first load's directory is gone");
    t.true(existsSync(join(second, "1", "notes", "readme.txt")));

    t.is((await http(s, "POST", "/v2/repository/models/fresh/unload", {})).status, 200);
    t.false(existsSync(second), "unloading removes the directory");
    t.deepEqual(liveModelFilesDirectories(), []);
    // Not in the repository: a load without files has nothing to load (Triton 2.51's 500, "failed to poll").
    const again = await http(s, "POST", "/v2/repository/models/fresh/load", {});
    t.is(again.status, 500);
    t.regex(again.json.error, new RegExp(`^failed to load 'fresh', ${POLL}: no model directory 'fresh'`));
  } finally {
    await s.close();
  }
});

test("HTTP: a repository model loaded from files serves them until a load without files brings the repository's copy back", async (t) => {
  const s = await startTestServer(makeRepo({ add_sub: ADD_SUB }));
  try {
    t.is((await httpLoad(s, "add_sub", { "file:1/model.ts": adder(10) })).status, 200);
    t.deepEqual(await infer(s, "add_sub"), [11, 12, 13, 14]);
    const dir = dirOf(s, "add_sub");
    t.is((await http(s, "POST", "/v2/repository/models/add_sub/load", {})).status, 200);
    t.is(dirOf(s, "add_sub"), join(s.registry.repository, "add_sub"));
    t.false(existsSync(dir));
    t.regex(await infer(s, "add_sub").then(String), /INPUT1/, "add_sub again (it wants INPUT1)");
    t.deepEqual((await http(s, "POST", "/v2/repository/index", {})).json, [{ name: "add_sub", version: "1", state: "READY" }]);
  } finally {
    await s.close();
  }
});

test("HTTP: files that do not make a model directory are ERR_MODEL_FILES, 500 with Triton's words and the reason; nothing is written; what served keeps serving", async (t) => {
  const s = await startTestServer(makeRepo({ add_sub: ADD_SUB }));
  try {
    t.is((await httpLoad(s, "kept", { "file:1/model.ts": adder(1) })).status, 200);
    const kept = dirOf(s, "kept");
    const cases: [string, Record<string, string>, string | null, RegExp][] = [
      ["no config", { "file:1/model.ts": adder(1) }, null, /Load parameter 'config' must be specified for model file override/],
      ["empty config", { "file:1/model.ts": adder(1) }, "", /Load parameter 'config' must be specified/],
      ["..", { "file:../x.ts": "x", "file:1/model.ts": adder(1) }, CONFIG, /Invalid file parameter 'file:\.\.\/x\.ts' with normalized path '\.\.\/x\.ts' must stay within model directory\./],
      ["deeper ..", { "file:1/../../x.ts": "x" }, CONFIG, /must stay within model directory/],
      ["absolute", { "file:/tmp/x.ts": "x" }, CONFIG, /Invalid file parameter 'file:\/tmp\/x\.ts': the path is absolute/],
      ["NUL", { "file:1/mo\u0000del.ts": "x" }, CONFIG, /holds a NUL character/],
      ["backslash", { "file:1\\..\\..\\x.ts": "x" }, CONFIG, /holds a backslash/],
      ["empty path", { "file:": "x" }, CONFIG, /Invalid file parameter 'file:': the path is empty/],
      ["the directory", { "file:1/..": "x" }, CONFIG, /names the model directory itself/],
      ["trailing /", { "file:1/": "x" }, CONFIG, /ends with '\/'/],
      ["file as directory", { "file:1": "x", "file:1/model.ts": adder(1) }, CONFIG, /Invalid file parameter 'file:1\/model\.ts', directory has been created as a file/],
      ["same file twice", { "file:1/model.ts": adder(1), "file:./1/model.ts": adder(2) }, CONFIG, /names the same file as 'file:1\/model\.ts'/],
    ];
    for (const [what, files, config, why] of cases) {
      const r = await httpLoad(s, "kept", files, config);
      t.is(r.status, 500, what);
      t.true(String(r.json?.error).startsWith(`failed to load 'kept', ${POLL}: `), `${what}: ${r.json?.error}`);
      t.regex(r.json.error, why, what);
    }
    // A value that is not base64, or not a string: 400 / 500 (Triton's HTTP: "attempt to access JSON non-string as string").
    const notB64 = await http(s, "POST", "/v2/repository/models/kept/load", { parameters: { config: CONFIG, "file:1/model.ts": "!!not base64**" } });
    t.is(notB64.status, 400);
    t.regex(notB64.json.error, /load parameter 'file:1\/model\.ts' is not valid base64/);
    const notString = await http(s, "POST", "/v2/repository/models/kept/load", { parameters: { config: CONFIG, "file:1/model.ts": 5 } });
    t.is(notString.status, 500);
    t.regex(notString.json.error, /^attempt to access JSON non-string as string/);
    // A model whose files load but fail: its load error, and its directory is removed.
    const broken = await httpLoad(s, "kept", { "file:1/model.ts": "export default 42;" });
    t.is(broken.status, 400);
    t.regex(broken.json.error, /must export a model class/);
    const noVersion = await httpLoad(s, "kept", { "file:model.ts": adder(1) });
    t.is(noVersion.status, 400);
    t.regex(noVersion.json.error, /no version directory/);
    t.deepEqual(await infer(s, "kept"), [2, 3, 4, 5], "the model loaded first still serves");
    t.deepEqual(liveModelFilesDirectories(), [kept], "no directory was left by the refused or failed loads");
  } finally {
    await s.close();
  }
});

test("the endpoint: names that are not plain names are ERR_MODEL_FILES (INVALID_ARG, later Triton's words)", async (t) => {
  const s = await startTestServer(makeRepo({ add_sub: ADD_SUB }));
  try {
    for (const name of ["a/b", "..", " ", "a\\b"]) {
      const e = await t.throwsAsync(s.endpoint.loadModel(name, { config: CONFIG, "file:1/model.ts": Buffer.from(adder(1)) }), { instanceOf: ServingError });
      t.is(e?.code, "ERR_MODEL_FILES", name);
      t.is(e?.tritonCode, "INVALID_ARG", name);
    }
    t.deepEqual(liveModelFilesDirectories(), []);
  } finally {
    await s.close();
  }
});

test("gRPC: RepositoryModelLoad with bytes_param files and a string_param config; refusals are INTERNAL / INVALID_ARGUMENT as Triton's", async (t) => {
  const s = await startTestServer(makeRepo({ add_sub: ADD_SUB }));
  const client = grpcClient(s);
  const load = (name: string, files: Record<string, string>, config: string | null = CONFIG) =>
    grpcUnary(client, "RepositoryModelLoad", {
      model_name: name,
      parameters: {
        ...Object.fromEntries(Object.entries(files).map(([k, v]) => [k, { bytes_param: Buffer.from(v) }])),
        ...(config === null ? {} : { config: { string_param: config } }),
      },
    });
  try {
    const ok = await load("g", { "file:1/model.ts": adder(5) });
    t.true(ok.ok, ok.ok ? "" : ok.details);
    t.deepEqual(await infer(s, "g"), [6, 7, 8, 9]);
    const dir = dirOf(s, "g");
    const noConfig = await load("g", { "file:1/model.ts": adder(1) }, null);
    t.deepEqual(noConfig.ok ? undefined : [noConfig.code, noConfig.details], [13, `failed to load 'g', ${POLL}: Load parameter 'config' must be specified for model file override`]);
    const escape = await load("g", { "file:../../etc/x": "x" });
    t.is(escape.ok ? undefined : escape.code, 13);
    t.regex(escape.ok ? "" : escape.details, /must stay within model directory/);
    const notBytes = await grpcUnary(client, "RepositoryModelLoad", { model_name: "g", parameters: { config: { string_param: CONFIG }, "file:1/model.ts": { string_param: "x" } } });
    t.deepEqual(notBytes.ok ? undefined : [notBytes.code, notBytes.details], [3, "invalid value type for load parameter 'file:1/model.ts', expected bytes_param."]);
    t.deepEqual(await infer(s, "g"), [6, 7, 8, 9]);
    const unload = await grpcUnary(client, "RepositoryModelUnload", { model_name: "g" });
    t.true(unload.ok);
    t.false(existsSync(dir));
  } finally {
    client.close();
    await s.close();
  }
});

/** A model that loads, calls and unloads models with files (the request's `mode` says how), answering TEXT (JSON). */
const LOADER = `import { InferenceRequest, InferenceResponse, Tensor, loadModel, unloadModel, isModelReady } from "tensorbridge";
const CONFIG = ${JSON.stringify(CONFIG)};
const SOURCE = ${JSON.stringify(adder(100))};
async function attempt(fn: () => Promise<unknown>) {
  try { await fn(); return "ok"; } catch (e) { return { code: (e as { code?: string }).code, error: (e as Error).message }; }
}
async function call(name: string) {
  const r = await new InferenceRequest({ modelName: name, requestedOutputNames: ["OUTPUT0"], inputs: [Tensor.from(new Float32Array([1, 2, 3, 4]), { name: "INPUT0", shape: [4] })] }).exec();
  return r.hasError() ? r.error!.message : Array.from(r.outputTensors[0]!.data() as Float32Array);
}
export default class Loader {
  async execute(requests: InferenceRequest[]) {
    const out = [];
    for (const r of requests) {
      const mode = String(r.parameters["mode"]);
      const target = String(r.parameters["target"] ?? "from_bls");
      let got: unknown;
      if (mode === "text") got = [await attempt(() => loadModel(target, { config: JSON.parse(CONFIG), files: { "file:1/model.ts": SOURCE } })), await isModelReady(target), await call(target)];
      else if (mode === "bytes") got = [await attempt(() => loadModel(target, { config: CONFIG, files: { "file:1/model.ts": new TextEncoder().encode(SOURCE.replace("+ 100", "+ 200")) } })), await call(target)];
      else if (mode === "unload") got = [await attempt(() => unloadModel(target)), await isModelReady(target)];
      else if (mode === "no_config") got = await attempt(() => loadModel(target, { files: { "file:1/model.ts": SOURCE } }));
      else if (mode === "no_prefix") got = await attempt(() => loadModel(target, { config: CONFIG, files: { "1/model.ts": SOURCE } }));
      else if (mode === "escape") got = await attempt(() => loadModel(target, { config: CONFIG, files: { "file:1/../../../x.ts": SOURCE } }));
      else if (mode === "not_bytes") got = await attempt(() => loadModel(target, { config: CONFIG, files: { "file:1/model.ts": 42 as unknown as string } }));
      out.push(new InferenceResponse({ outputTensors: { TEXT: Tensor.fromBytes([JSON.stringify(got)]) } }));
    }
    return out;
  }
}
`;
const LOADER_CONFIG = `input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]
output [ { name: "TEXT" data_type: TYPE_STRING dims: [ 1 ] } ]`;
const THREADS = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;

for (const [loader, what] of [
  ["loader", "in the serving thread"],
  ["loader_threads", "in a worker thread (TENSORBRIDGE_INSTANCE_THREADS)"],
] as const) {
  test(`from a model ${what}: loadModel(name, { config, files }) with text and bytes, exec, unloadModel; refusals are ModelErrors`, async (t) => {
    const s = await startTestServer(
      makeRepo({ loader: { config: LOADER_CONFIG, model: LOADER }, loader_threads: { config: `${LOADER_CONFIG}\n${THREADS}`, model: LOADER } }),
    );
    const ask = async (mode: string, target = "from_bls"): Promise<unknown> => {
      const r = await http(s, "POST", `/v2/models/${loader}/infer`, { inputs: [{ name: "IN", datatype: "INT32", shape: [1], data: [0] }], parameters: { mode, target } });
      t.is(r.status, 200, r.body.toString());
      return JSON.parse(r.json.outputs[0].data[0]);
    };
    try {
      t.deepEqual(await ask("text"), ["ok", true, [101, 102, 103, 104]]);
      const first = dirOf(s, "from_bls");
      t.deepEqual(await ask("bytes"), ["ok", [201, 202, 203, 204]]);
      t.false(existsSync(first), "loading again removed the first files");
      const second = dirOf(s, "from_bls");
      t.deepEqual(await ask("unload"), ["ok", false]);
      t.false(existsSync(second), "unloading removed the files");
      t.deepEqual(await ask("no_config"), { code: "INTERNAL", error: `failed to load 'from_bls', ${POLL}: Load parameter 'config' must be specified for model file override` });
      t.deepEqual(await ask("no_prefix"), { code: "INTERNAL", error: `failed to load 'from_bls', ${POLL}: Unrecognized load parameter '1/model.ts' with type 'BYTES'` });
      const escape = (await ask("escape")) as { code: string; error: string };
      t.is(escape.code, "INTERNAL");
      t.regex(escape.error, /must stay within model directory/);
      t.like(await ask("not_bytes"), { code: "INVALID_ARG" });
      t.deepEqual(liveModelFilesDirectories(), []);
    } finally {
      await s.close();
    }
  });
}

test("model-control mode none: a load with files is refused (ERR_MODEL_CONTROL, 503) and writes nothing", async (t) => {
  const s = await startTestServer(makeRepo({ add_sub: ADD_SUB }), { modelControlMode: "none" });
  try {
    const r = await httpLoad(s, "fresh", { "file:1/model.ts": adder(1) });
    t.is(r.status, 503);
    t.deepEqual(r.json, { error: "explicit model load / unload is not allowed if polling is enabled" });
    const e = await t.throwsAsync(s.endpoint.loadModel("fresh", { config: CONFIG, "file:1/model.ts": Buffer.from(adder(1)) }), { instanceOf: ServingError });
    t.is(e?.code, "ERR_MODEL_CONTROL");
    t.deepEqual(liveModelFilesDirectories(), []);
  } finally {
    await s.close();
  }
});

test("closing the server removes the directories of models loaded from files", async (t) => {
  const s = await startTestServer(makeRepo({ add_sub: ADD_SUB }));
  let dirs: string[] = [];
  try {
    t.is((await httpLoad(s, "one", { "file:1/model.ts": adder(1) })).status, 200);
    t.is((await httpLoad(s, "add_sub", { "file:1/model.ts": adder(2) })).status, 200);
    dirs = [dirOf(s, "one"), dirOf(s, "add_sub")];
    for (const d of dirs) t.true(existsSync(d));
  } finally {
    await s.close();
  }
  for (const d of dirs) t.false(existsSync(d), d);
  t.deepEqual(liveModelFilesDirectories(), []);
});

test("a process that exits without closing its registry leaves no model directory behind", (t) => {
  const script = join(ROOT, "__test__/fixtures/load-files/exit-without-close.ts");
  const r = spawnSync(process.execPath, [...process.execArgv, script], { cwd: ROOT, encoding: "utf8", timeout: 120_000 });
  t.is(r.status, 0, r.stderr);
  const dir = r.stdout.trim().split("\n").at(-1)!;
  t.regex(dir, /tensorbridge-model-/);
  t.false(existsSync(dir), `${dir} was removed at exit`);
});

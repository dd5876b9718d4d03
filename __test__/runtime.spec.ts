/**
 * The model runtime without HTTP: InferenceRequest/InferenceResponse/
 * ModelError, the repository scanner, the module hook that gives models the
 * serving copy of `tensorbridge`, and the registry's scheduling.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { Tensor } from "../src/tensor.js";
import { SERVING_ERROR_TRITON_CODE, ServingError } from "../src/runtime/errors.js";
import { defaultEntryUrl } from "../src/runtime/loader.js";
import { MODEL_ERROR_CODES, ModelError } from "../src/runtime/model-error.js";
import { HTTP_STATUS, httpError } from "../src/server/http-status.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import { InferenceRequest } from "../src/runtime/request.js";
import { findModelFile, scanRepository, selectVersions } from "../src/runtime/repository.js";
import { InferenceResponse } from "../src/runtime/response.js";
import { ADD_SUB, cleanupRepos, makeRepo, setupModelEntry, sleep } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

const f32 = (...v: number[]) => Tensor.from(new Float32Array(v));

// ---------------------------------------------------------------- ModelError

test("ModelError: Triton's codes, INTERNAL by default; HTTP maps each code to Triton's status", (t) => {
  t.is(new ModelError("x").code, "INTERNAL");
  const e = new ModelError("bad input", ModelError.INVALID_ARG);
  t.true(e instanceof Error);
  t.is(e.name, "ModelError");
  t.is(e.message, "bad input");
  t.is(httpError(e).status, 400);
  t.deepEqual(MODEL_ERROR_CODES, Object.keys(HTTP_STATUS));
  t.deepEqual(HTTP_STATUS, {
    UNKNOWN: 400,
    INTERNAL: 500,
    NOT_FOUND: 404,
    INVALID_ARG: 400,
    UNAVAILABLE: 503,
    UNSUPPORTED: 501,
    ALREADY_EXISTS: 400,
    CANCELLED: 400,
  });
  for (const c of ["UNKNOWN", "INTERNAL", "NOT_FOUND", "INVALID_ARG", "UNAVAILABLE", "UNSUPPORTED", "ALREADY_EXISTS", "CANCELLED"] as const) {
    t.is(ModelError[c], c);
  }
  t.throws(() => new ModelError("x", "NOPE" as never), { instanceOf: TypeError });
  t.is(ModelError.from(e), e);
  t.is(ModelError.from(new Error("plain")).code, "INTERNAL");
  t.is(ModelError.from("text").message, "text");
  const foreign = Object.assign(new Error("other copy"), { name: "ModelError", code: "NOT_FOUND" });
  t.is(ModelError.from(foreign).code, "NOT_FOUND");
});

// ---------------------------------------------------------------- request / response

test("InferenceRequest: inputs(), getInputTensorByName(), requestedOutputNames(), requestId, parameters", (t) => {
  const a = f32(1).withName("A");
  const b = f32(2).withName("B");
  const r = new InferenceRequest({ inputs: [a, b], requestedOutputNames: ["Y"], requestId: "id1", parameters: { k: 1 }, modelName: "m", modelVersion: 2 });
  t.deepEqual(r.inputs(), [a, b]);
  t.is(r.getInputTensorByName("B"), b);
  t.is(r.getInputTensorByName("C"), undefined);
  t.deepEqual(r.requestedOutputNames(), ["Y"]);
  t.is(r.requestId, "id1");
  t.deepEqual(r.parameters, { k: 1 });
  t.true(Object.isFrozen(r.parameters));
  t.is(r.modelName, "m");
  t.is(r.modelVersion, 2);
  r.inputs().pop();
  t.is(r.inputs().length, 2, "inputs() returns a copy");
  const empty = new InferenceRequest({ inputs: [] });
  t.is(empty.requestId, "");
  t.deepEqual(empty.parameters, {});
});

test("InferenceRequest: the last input of a name wins, with few or many inputs; parameters are copied unless frozen", (t) => {
  for (const n of [3, 40]) {
    const inputs = Array.from({ length: n }, (_, i) => f32(i).withName(`I${i % (n - 1)}`));
    const r = new InferenceRequest({ inputs });
    t.is(r.getInputTensorByName("I0"), inputs[n - 1], `${n} inputs`);
    t.is(r.getInputTensorByName("I1"), inputs[1]);
    t.is(r.getInputTensorByName("nope"), undefined);
    t.is(r.getInputTensorByName(undefined as unknown as string), undefined);
  }
  const open = { k: 1 };
  const copied = new InferenceRequest({ inputs: [], parameters: open });
  open.k = 2;
  t.deepEqual(copied.parameters, { k: 1 }, "a caller's later change does not reach the request");
  const frozen = Object.freeze({ k: 3 });
  t.is(new InferenceRequest({ inputs: [], parameters: frozen }).parameters, frozen);
});

test("InferenceResponse: array of named tensors, or a record whose keys name them; error", (t) => {
  const x = f32(1, 2);
  const rec = new InferenceResponse({ outputTensors: { OUTPUT0: x, OUTPUT1: x.withName("OUTPUT1") } });
  t.deepEqual(
    rec.outputTensors.map((o) => o.name),
    ["OUTPUT0", "OUTPUT1"],
  );
  t.is(rec.outputTensorByName("OUTPUT0")!.dataPtr, x.dataPtr, "renaming shares the storage");
  t.is(rec.outputTensors[1]!.name, "OUTPUT1");
  const arr = new InferenceResponse({ outputTensors: [Tensor.from(new Float32Array(1), { name: "Y" })] });
  t.is(arr.outputTensors[0]!.name, "Y");
  t.false(arr.hasError());
  const err = new InferenceResponse({ error: new ModelError("no", ModelError.NOT_FOUND) });
  t.true(err.hasError());
  t.is(err.error!.code, "NOT_FOUND");
  t.is(new InferenceResponse({ error: "text" }).error!.code, "INTERNAL");
  t.is(new InferenceResponse().outputTensors.length, 0);
  t.throws(() => new InferenceResponse({ outputTensors: { A: 5 as never } }), { instanceOf: TypeError });
});

// ---------------------------------------------------------------- repository scanner

test("scanRepository: model dirs, numeric versions, hidden dirs skipped", async (t) => {
  const repo = makeRepo({ b_model: { ...ADD_SUB, versions: [3, 1, 10] }, a_model: { ...ADD_SUB, versions: [] } });
  mkdirSync(join(repo, ".hidden", "1"), { recursive: true });
  mkdirSync(join(repo, "b_model", "latest"), { recursive: true });
  mkdirSync(join(repo, "b_model", "0"), { recursive: true });
  writeFileSync(join(repo, "b_model", "7"), "a file, not a version directory");
  writeFileSync(join(repo, "README.md"), "not a model");
  const models = await scanRepository(repo);
  t.deepEqual(
    models.map((m) => [m.name, m.versions]),
    [
      ["a_model", []],
      ["b_model", [1, 3, 10]],
    ],
  );
  t.is(models[1]!.configPath, join(repo, "b_model", "config.pbtxt"));
  await t.throwsAsync(scanRepository(join(repo, "nope")), { instanceOf: ServingError, message: /cannot read model repository/ });
});

test("selectVersions: latest (default 1), latest N, all, specific", (t) => {
  t.deepEqual(selectVersions({ latest: { num_versions: 1 } }, [3, 1, 2]), [3]);
  t.deepEqual(selectVersions({ latest: { num_versions: 2 } }, [3, 1, 2]), [2, 3]);
  t.deepEqual(selectVersions({ latest: { num_versions: 5 } }, [1]), [1]);
  t.deepEqual(selectVersions({ all: {} }, [3, 1, 2]), [1, 2, 3]);
  t.deepEqual(selectVersions({ specific: { versions: [2, 9] } }, [3, 1, 2]), [2]);
  t.deepEqual(selectVersions({ latest: { num_versions: 1 } }, []), []);
});

test("findModelFile: model.ts, .mts, .js, .mjs in that order, or default_model_filename", (t) => {
  const repo = makeRepo({ m: { config: "" } });
  const dir = join(repo, "m", "1");
  t.is(findModelFile(dir, { default_model_filename: "" }), undefined);
  writeFileSync(join(dir, "model.mjs"), "");
  t.is(findModelFile(dir, { default_model_filename: "" }), join(dir, "model.mjs"));
  writeFileSync(join(dir, "model.js"), "");
  t.is(findModelFile(dir, { default_model_filename: "" }), join(dir, "model.js"));
  writeFileSync(join(dir, "model.ts"), "");
  t.is(findModelFile(dir, { default_model_filename: "" }), join(dir, "model.ts"));
  t.is(findModelFile(dir, { default_model_filename: "custom.ts" }), undefined);
  writeFileSync(join(dir, "custom.ts"), "");
  t.is(findModelFile(dir, { default_model_filename: "custom.ts" }), join(dir, "custom.ts"));
});

// ---------------------------------------------------------------- loading models

const IDENTITY_CONFIG = `
input { name: "X" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }
`;

function polyglotModel(kind: string): string {
  return `
import { InferenceResponse, Tensor } from "tensorbridge";
export default class M {
  execute(requests) {
    return requests.map((r) => {
      const x = r.getInputTensorByName("X");
      return new InferenceResponse({ outputTensors: { Y: Tensor.from(Float32Array.from(x.data(), (v) => v + ${kind === "ts" ? 1 : kind === "js" ? 2 : 3})) } });
    });
  }
}`;
}

test("models in .ts, .js and .mjs, anywhere on disk, without node_modules, get the serving copy of tensorbridge", async (t) => {
  const repo = makeRepo({
    m_ts: { config: IDENTITY_CONFIG, model: polyglotModel("ts").replace("execute(requests)", "execute(requests: any[])") },
    m_js: { config: IDENTITY_CONFIG, model: polyglotModel("js"), file: "model.js" },
    m_mjs: { config: IDENTITY_CONFIG, model: polyglotModel("mjs"), file: "model.mjs" },
  });
  // a CommonJS package scope above the repository must not matter
  writeFileSync(join(repo, "package.json"), JSON.stringify({ type: "commonjs" }));
  const reg = new ModelRegistry({ repository: repo });
  t.deepEqual(await reg.loadAll(), []);
  for (const [name, add] of [
    ["m_ts", 1],
    ["m_js", 2],
    ["m_mjs", 3],
  ] as const) {
    const out = await reg.get(name).infer({ inputs: [f32(1, 2).withName("X")] });
    t.true(out.outputs[0] instanceof Tensor, `${name}: the model's Tensor is this process's Tensor class`);
    t.deepEqual(Array.from(out.outputs[0]!.data() as Float32Array), [1 + add, 2 + add]);
  }
  await reg.close();
});

test("the default entry is this copy's narrow model entry, src/model", (t) => {
  t.regex(defaultEntryUrl(), /\/src\/model\.ts$/);
});

test("a module without a default class and a missing model file fail the load with ERR_MODEL_LOAD", async (t) => {
  const repo = makeRepo({
    named: { config: IDENTITY_CONFIG, model: "export class OnlyOne { execute() { return []; } }" },
    none: { config: IDENTITY_CONFIG, model: "export const x = 1;" },
    noexec: { config: IDENTITY_CONFIG, model: "export default class X {}" },
    nofile: { config: IDENTITY_CONFIG },
    noversion: { config: IDENTITY_CONFIG, versions: [] },
  });
  const reg = new ModelRegistry({ repository: repo });
  const failed = await reg.loadAll();
  t.deepEqual(failed.toSorted(), ["noexec", "nofile", "none", "noversion"]);
  t.true(reg.isReady("named"), "a single exported class is accepted");
  const idx = new Map((await reg.index()).map((e) => [e.name, e.reason ?? ""]));
  t.regex(idx.get("none")!, /must export a model class/);
  t.regex(idx.get("noexec")!, /has no execute\(requests\) method/);
  t.regex(idx.get("nofile")!, /has no model file \(model.ts, model.mts, model.js or model.mjs\)/);
  t.regex(idx.get("noversion")!, /no version directory that its version policy selects \(found: none\)/);
  await reg.close();
});

// ---------------------------------------------------------------- scheduling

const COUNTING = `
import { InferenceResponse, Tensor } from "tensorbridge";
let live = 0;
export default class Counting {
  name = "";
  initialize(args: { model_instance_name: string }) { this.name = args.model_instance_name; }
  async execute(requests: any[]) {
    live++;
    const concurrent = live;
    await new Promise((r) => setTimeout(r, 30));
    live--;
    return requests.map(() => new InferenceResponse({ outputTensors: { WHO: Tensor.fromBytes([this.name + "/" + concurrent + "/" + requests.length]) } }));
  }
}`;

test("one execute() at a time per instance; requests spread across instances; passive instances get none", async (t) => {
  const repo = makeRepo({
    counting: {
      config: `
input { name: "X" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "WHO" data_type: TYPE_STRING dims: [ 1 ] }
instance_group [ { count: 3 kind: KIND_CPU }, { name: "standby" count: 1 kind: KIND_CPU passive: true } ]`,
      model: COUNTING,
    },
  });
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  const mv = reg.get("counting");
  t.is(mv.instanceCount, 4);
  const outs = await Promise.all(Array.from({ length: 9 }, () => mv.infer({ inputs: [f32(0).withName("X")] })));
  const who = outs.map((o) => new TextDecoder().decode(o.outputs[0]!.bytes()[0]!));
  const instances = new Set(who.map((w) => w.split("/")[0]));
  t.deepEqual([...instances].toSorted(), ["counting_0_0", "counting_0_1", "counting_0_2"]);
  t.true(who.every((w) => Number(w.split("/")[1]) <= 3), "at most one execute per instance");
  t.true(who.every((w) => w.endsWith("/1")), "without dynamic_batching each execute gets one request");
  const st = mv.stats.snapshot();
  t.is(st.execution_count, 9);
  t.is(st.inference_count, 9);
  await reg.close();
});

test("unload waits for queued and running requests before finalize()", async (t) => {
  const repo = makeRepo({
    counting: {
      config: `
input { name: "X" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "WHO" data_type: TYPE_STRING dims: [ 1 ] }`,
      model: COUNTING,
    },
  });
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  const mv = reg.get("counting");
  const pending = Array.from({ length: 4 }, () => mv.infer({ inputs: [f32(0).withName("X")] }));
  await sleep(5);
  await reg.unload("counting");
  const results = await Promise.allSettled(pending);
  t.true(results.every((r) => r.status === "fulfilled"), "all queued requests were served");
  t.is(mv.state, "UNAVAILABLE");
  await t.throwsAsync(mv.infer({ inputs: [f32(0).withName("X")] }), { message: /is not ready/ });
  t.throws(() => reg.get("counting"), { message: /has no available versions/ });
  await reg.close();
  await t.throwsAsync(reg.load("counting"), { message: /shutting down/ });
});

const SYNC_CONFIG = `
input { name: "X" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }`;

/** A model that doubles X; `ret` returns `out` (its responses) one way or another. */
const doubling = (ret: string) => `
import { InferenceResponse, Tensor } from "tensorbridge";
export default class M {
  execute(requests: any[]) {
    const out = requests.map((r: any) => new InferenceResponse({ outputTensors: { Y: Tensor.from(new Float32Array([(r.getInputTensorByName("X").data()[0] as number) * 2])) } }));
    if (requests[0].getInputTensorByName("X").data()[0] === 13) throw new Error("thirteen");
    ${ret}
  }
}`;

test("execute() returning responses, a foreign thenable, throwing or rejecting: same results and statistics", async (t) => {
  const repo = makeRepo({
    sync: { config: SYNC_CONFIG, model: doubling("return out;") },
    promise: { config: SYNC_CONFIG, model: doubling("return Promise.resolve(out);") },
    // Not a native promise: only then() (as await would call it).
    thenable: { config: SYNC_CONFIG, model: doubling("return { then(ok: (v: unknown) => void) { setTimeout(() => ok(out), 1); } };") },
    rejecting: { config: SYNC_CONFIG, model: doubling("return Promise.reject(new Error('nope'));") },
  });
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  for (const name of ["sync", "promise", "thenable"]) {
    const mv = reg.get(name);
    const outs = await Promise.all([1, 2, 3].map((v) => mv.infer({ inputs: [f32(v).withName("X")] })));
    t.deepEqual(outs.map((o) => o.outputs[0]!.data()[0]), [2, 4, 6], name);
    await t.throwsAsync(mv.infer({ inputs: [f32(13).withName("X")] }), { instanceOf: ModelError, message: /thirteen/ }, name);
    const st = mv.stats.snapshot();
    t.is(st.inference_stats.success.count, 3, name);
    t.is(st.inference_stats.fail.count, 1, name);
    t.is(st.execution_count, 4, name);
    // As Triton: queue (and compute_*) count successes only.
    t.is(st.inference_stats.queue.count, 3, name);
    t.is(st.inference_stats.compute_infer.count, 3, name);
  }
  await t.throwsAsync(reg.get("rejecting").infer({ inputs: [f32(1).withName("X")] }), { instanceOf: ModelError, message: /nope/ });
  t.is(reg.get("rejecting").stats.snapshot().inference_stats.fail.count, 1);
  await reg.close();
});

test("submit(): callbacks instead of a promise, synchronous for a model that returns its responses", async (t) => {
  const repo = makeRepo({
    sync: { config: SYNC_CONFIG, model: doubling("return out;") },
    promise: { config: SYNC_CONFIG, model: doubling("return Promise.resolve(out);") },
  });
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  const run = (name: string, v: number) => {
    const got: { ok?: number; err?: unknown } = {};
    reg.get(name).submit({ inputs: [f32(v).withName("X")] }, { resolve: (o) => (got.ok = o.outputs[0]!.data()[0] as number), reject: (e) => (got.err = e) });
    return got;
  };
  t.deepEqual(run("sync", 4), { ok: 8 }, "answered before submit() returns");
  const thrown = run("sync", 13);
  t.true(thrown.err instanceof ModelError && /thirteen/.test(thrown.err.message));
  const rejected: { err?: unknown } = {};
  reg.get("sync").submit({ inputs: [] }, { resolve: () => t.fail(), reject: (e) => (rejected.err = e) });
  t.true(rejected.err instanceof ServingError && /missing required input/.test((rejected.err as Error).message), "an invalid request is rejected at once");
  const later = run("promise", 5);
  t.deepEqual(later, {}, "a model that returns a promise answers later");
  await sleep(20);
  t.deepEqual(later, { ok: 10 });
  // The model's failure counts; the request refused before the model does not, as in Triton.
  t.is(reg.get("sync").stats.snapshot().inference_stats.fail.count, 1);
  await reg.close();
});

test("a synchronous execute() that queues more requests from inside itself: each served once, in order, one at a time", async (t) => {
  const repo = makeRepo({
    reentrant: {
      config: SYNC_CONFIG,
      model: `
import { InferenceResponse, Tensor } from "tensorbridge";
let live = 0;
export const seen: number[] = [];
export default class R {
  execute(requests: any[]) {
    live++;
    if (live > 1) throw new Error("two execute() at once on one instance");
    const v = requests[0].getInputTensorByName("X").data()[0] as number;
    // The callback re-enters the version while this execute() runs.
    (globalThis as any).__reenter?.(v);
    live--;
    return [new InferenceResponse({ outputTensors: { Y: Tensor.from(new Float32Array([v])) } })];
  }
}`,
    },
  });
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  const mv = reg.get("reentrant");
  const order: number[] = [];
  const pending: Promise<unknown>[] = [];
  (globalThis as Record<string, unknown>)["__reenter"] = (v: number) => {
    order.push(v);
    if (v < 3) pending.push(mv.infer({ inputs: [f32(v + 1).withName("X")] }));
  };
  try {
    const first = await mv.infer({ inputs: [f32(1).withName("X")] });
    const rest = (await Promise.all(pending)) as { outputs: Tensor[] }[];
    t.deepEqual([first, ...rest].map((o) => o.outputs[0]!.data()[0]), [1, 2, 3]);
    t.deepEqual(order, [1, 2, 3]);
    t.is(mv.stats.snapshot().execution_count, 3);
  } finally {
    delete (globalThis as Record<string, unknown>)["__reenter"];
  }
  await reg.close();
});

function i32(shape: number[]): Tensor {
  return Tensor.from(new Int32Array(shape.reduce((a, b) => a * b, 1)), { shape, name: "A" });
}

test("validate(): dtype, shape, batch and missing-input messages name the model and input", async (t) => {
  const repo = makeRepo({
    v: {
      config: `
max_batch_size: 4
input { name: "A" data_type: TYPE_INT32 dims: [ 2, -1 ] }
input { name: "B" data_type: TYPE_FP32 dims: [ 1 ] optional: true }
output { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }`,
      model: "export default class V { execute(r: unknown[]) { return r.map(() => ({ outputTensors: [] })); } }",
    },
  });
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  const mv = reg.get("v");
  t.is(mv.validate({ inputs: [i32([3, 2, 5])] }), 3, "batch size");
  const bad = (inputs: Tensor[], re: RegExp, outputs?: string[]) =>
    t.throws(() => mv.validate({ inputs, ...(outputs ? { outputs } : {}) }), { instanceOf: ServingError, message: re });
  bad([i32([2, 5])], /unexpected shape for input 'A' for model 'v'. Expected \[-1,2,-1\], got \[2,5\]/);
  bad([i32([5, 2, 1])], /batch-size must be <= 4/);
  bad([i32([0, 2, 1])], /batch-size must be <= 4 for 'v' \(input 'A' has batch size 0\)/);
  bad([i32([1, 2, 1]), Tensor.from(new Float32Array(2), { shape: [2, 1], name: "B" })], /different batch sizes \(1 and 2\)/);
  bad([Tensor.from(new Float32Array(2), { shape: [1, 2, 1], name: "A" })], /input 'A' data-type is 'FP32', but model 'v' expects 'INT32'/);
  bad([Tensor.from(new Float32Array(1), { shape: [1, 1], name: "B" })], /missing required input\(s\) \['A'\]/);
  bad([i32([1, 2, 1])], /unexpected inference output 'Z'/, ["Z"]);
  bad([i32([1, 2, 1])], /requested more than once/, ["Y", "Y"]);
  bad([Tensor.from(new Int32Array(2), { shape: [2] })], /unexpected inference input ''/);
  await reg.close();
});

/** A stand-in for a tensor that arrived on a GPU: isCpu() is false, toCpu() gives a host copy. */
function deviceTensor(name: string, host: Tensor, moves: string[]): Tensor {
  return {
    name,
    dtype: host.dtype,
    shape: host.shape,
    device: { type: "cuda", id: 0 },
    isCpu: () => false,
    toCpu: () => {
      moves.push(name);
      return host.withName(name);
    },
  } as unknown as Tensor;
}

const DEVICE_REPORT = `
import { InferenceResponse, Tensor } from "tensorbridge";
export default class Report {
  execute(requests: any[]) {
    return requests.map((r) => new InferenceResponse({ outputTensors: {
      IS_CPU: Tensor.from(Uint8Array.from(r.inputs(), (t: any) => (t.isCpu() ? 1 : 0)), { dtype: "BOOL" }),
    } }));
  }
}`;

for (const force of ["yes", "no", undefined] as const) {
  test(`FORCE_CPU_ONLY_INPUT_TENSORS ${force ?? "(default)"}: ${force === "no" ? "device inputs stay where they arrived" : "every input reaches execute() on the CPU"}`, async (t) => {
    const repo = makeRepo({
      m: {
        config: `
input { name: "A" data_type: TYPE_FP32 dims: [ 2 ] }
input { name: "B" data_type: TYPE_FP32 dims: [ 2 ] }
output { name: "IS_CPU" data_type: TYPE_BOOL dims: [ 2 ] }
${force === undefined ? "" : `parameters: { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: { string_value: "${force}" } }`}`,
        model: DEVICE_REPORT,
      },
    });
    const reg = new ModelRegistry({ repository: repo });
    await reg.loadAll();
    const moves: string[] = [];
    const out = await reg.get("m").infer({ inputs: [deviceTensor("A", f32(1, 2), moves), f32(3, 4).withName("B")] });
    const isCpu = Array.from(out.outputs[0]!.data() as Uint8Array);
    if (force === "no") {
      t.deepEqual(isCpu, [0, 1], "the GPU input stays on the GPU, the host input on the host");
      t.deepEqual(moves, []);
    } else {
      t.deepEqual(isCpu, [1, 1]);
      t.deepEqual(moves, ["A"], "only the device input was moved");
    }
    await reg.close();
  });
}

test("every ServingError code stands for a Triton code, and HTTP maps each to a status", (t) => {
  const codes = Object.keys(SERVING_ERROR_TRITON_CODE) as (keyof typeof SERVING_ERROR_TRITON_CODE)[];
  t.true(codes.includes("ERR_RESPONSE_COMPLETE") && codes.includes("ERR_RESPONSE_SENDER"));
  for (const code of codes) {
    const e = new ServingError(code, "x");
    t.is(e.tritonCode, SERVING_ERROR_TRITON_CODE[code], code);
    t.true(MODEL_ERROR_CODES.includes(e.tritonCode), code);
    t.is(ModelError.from(e).code, e.tritonCode, `${code}: a model sees the Triton code`);
    const status = httpError(e).status;
    t.true(status >= 400 && status < 600, `${code}: ${status}`);
  }
  t.is(httpError(new ServingError("ERR_BODY_TOO_LARGE", "x")).status, 413);
  t.is(httpError(new ServingError("ERR_SERVER_CLOSED", "x")).status, 503);
  t.is(httpError(new ServingError("ERR_INVALID_REQUEST", "x", { tritonCode: "INTERNAL" })).status, 500, "an overridden Triton code decides the status");
});

const fp32Inputs = (k: number) => Array.from({ length: k }, (_, i) => `input { name: "I${i}" data_type: TYPE_FP32 dims: [ 1 ] }`).join("\n");
const fp32Outputs = (k: number) => Array.from({ length: k }, (_, i) => `output { name: "O${i}" data_type: TYPE_FP32 dims: [ 1 ] }`).join("\n");
const oneFp32 = (i: number) => Tensor.from(new Float32Array(1), { name: `I${i}` });

test("duplicate and missing names are found with few names (scanned) and many (a Set or Map): inputs, requested outputs and the model's outputs", async (t) => {
  const n = 10;
  const ins = fp32Inputs;
  const outs = fp32Outputs;
  // Answers with the outputs the request's parameter 'out' names (comma-separated), in that order.
  const model = `import { InferenceResponse, Tensor } from "tensorbridge";
export default class M { execute(rs: any[]) { return rs.map((r) => new InferenceResponse({ outputTensors: String(r.parameters.out).split(",").map((name) => Tensor.from(new Float32Array(1), { name })) })); } }`;
  const repo = makeRepo({ few: { config: `${ins(2)}\n${outs(2)}`, model }, many: { config: `${ins(n)}\n${outs(n)}`, model } });
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  for (const [name, k] of [["few", 2], ["many", n]] as const) {
    const mv = reg.get(name);
    const x = oneFp32;
    const all = Array.from({ length: k }, (_, i) => x(i));
    t.is(mv.validate({ inputs: all }), 1, name);
    const bad = (inputs: Tensor[], re: RegExp, outputs?: string[]) =>
      t.throws(() => mv.validate({ inputs, ...(outputs ? { outputs } : {}) }), { instanceOf: ServingError, message: re }, name);
    bad([...all, x(k - 1)], new RegExp(`input 'I${k - 1}' is given more than once`));
    bad([x(0), ...all.slice(2)], new RegExp(`Got input\\(s\\) \\[${["I0", ...all.slice(2).map((input) => input.name)].map((s) => `'${s}'`).join(", ")}\\], but missing required input\\(s\\) \\['I1'\\]`));
    bad(all, /output 'O1' is requested more than once/, ["O1", "O0", "O1"]);
    t.is(mv.validate({ inputs: all, outputs: ["O1", "O0"] }), 1, name);
    // The model's outputs: the requested ones in the request's order; a name twice, or a requested one missing, is an error.
    const names = Array.from({ length: k }, (_, i) => `O${i}`);
    const got = await mv.infer({ inputs: all, parameters: { out: names.join(",") }, outputs: ["O1", "O0"] });
    t.deepEqual(got.outputs.map((o) => o.name), ["O1", "O0"], name);
    const every = await mv.infer({ inputs: all, parameters: { out: names.toReversed().join(",") } });
    t.deepEqual(every.outputs.map((o) => o.name), names.toReversed(), "all outputs, in the model's order");
    await t.throwsAsync(mv.infer({ inputs: all, parameters: { out: [...names, "O0"].join(",") } }), { code: "ERR_MODEL_EXECUTE", message: /output 'O0' appears more than once/ });
    await t.throwsAsync(mv.infer({ inputs: all, parameters: { out: names.slice(1).join(",") }, outputs: ["O0"] }), {
      code: "ERR_MODEL_EXECUTE",
      message: /requested output 'O0' was not produced/,
    });
  }
  await reg.close();
});

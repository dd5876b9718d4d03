/**
 * What a model's load does with the rest of its config, as Triton 2.51
 * does it: `model_warmup` samples run through execute() before READY (a
 * failing one fails the load in Triton's words), `autoCompleteConfig`
 * (pb_utils' auto_complete_config) completes or replaces config.pbtxt,
 * `KIND_GPU` groups are checked against the GPUs present and each
 * instance is told its device, fields tensorbridge does not implement are
 * warned about (or refused where Triton refuses them, or where ignoring
 * them would change what a request means), and an execute() that throws is
 * logged with model, version, request ids and stack.
 */
import { mkdirSync, rmSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { parseCli } from "../src/cli.js";
import { cuda } from "../src/cuda.js";
import { parseModelConfig } from "../src/runtime/config.js";
import { AutoCompleteModelConfig } from "../src/runtime/auto-complete.js";
import { ServingError } from "../src/runtime/errors.js";
import { planInstances } from "../src/runtime/instance-plan.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import type { RuntimeLogger } from "../src/runtime/model-version.js";
import { cleanupRepos, http, makeRepo, setupModelEntry, startTestServer } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

const IO = `
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
`;

/**
 * Echoes INPUT0 and records, on globalThis (models run in this process),
 * each execute() call: its instance, the number of requests and each
 * request's INPUT0 shape and values. `initialize` records its args.
 */
const RECORDER = (key: string, extra = "") => `
import { InferenceResponse, type InferenceRequest, type InitializeArgs } from "tensorbridge";
const log = ((globalThis as any)[${JSON.stringify(key)}] ??= { init: [], calls: [] });
export default class Recorder {
  name = "";
  ${extra}
  initialize(args: InitializeArgs) {
    this.name = args.model_instance_name;
    log.init.push({ name: args.model_instance_name, kind: args.model_instance_kind, device: args.model_instance_device_id });
  }
  execute(requests: InferenceRequest[]) {
    log.calls.push({ instance: this.name, inputs: requests.map((r) => {
      const x = r.getInputTensorByName("INPUT0")!;
      return { shape: [...x.shape], data: Array.from(x.data() as Float32Array) };
    }) });
    return requests.map((r) => new InferenceResponse({ outputTensors: { OUTPUT0: r.getInputTensorByName("INPUT0")! } }));
  }
}
`;

interface Recorded {
  init: { name: string; kind: string; device: string }[];
  calls: { instance: string; inputs: { shape: number[]; data: number[] }[] }[];
}
const recorded = (key: string): Recorded => (globalThis as unknown as Record<string, Recorded>)[key]!;

function capture(): { logger: RuntimeLogger; lines: string[] } {
  const lines: string[] = [];
  return {
    lines,
    logger: { info: (m) => lines.push(`I ${m}`), warn: (m) => lines.push(`W ${m}`), error: (m) => lines.push(`E ${m}`), debug: (m) => lines.push(`V ${m}`) },
  };
}

async function registry(models: Parameters<typeof makeRepo>[0], opts: Partial<ConstructorParameters<typeof ModelRegistry>[0]> = {}, remove: string[] = []) {
  const repo = makeRepo(models);
  for (const m of remove) rmSync(join(repo, m, "config.pbtxt"));
  const reg = new ModelRegistry({ repository: repo, ...opts });
  await reg.loadAll();
  return { reg, repo };
}

const reasonOf = (reg: ModelRegistry, name: string): ServingError => {
  try {
    reg.get(name);
  } catch (e) {
    return e as ServingError;
  }
  throw new Error(`${name} loaded`);
};

// --- model_warmup -----------------------------------------------------------

test("model_warmup: each sample runs batch_size requests per execute(), count times, on every instance, before READY and outside the statistics", async (t) => {
  const config = `max_batch_size: 8\n${IO}
instance_group [ { count: 2 kind: KIND_CPU } ]
model_warmup [
  { name: "zeros" batch_size: 2 count: 3 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } },
  { name: "file" batch_size: 1 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "in0" } } },
  { name: "random" inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] random_data: true } } }
]`;
  const repo = makeRepo({ warm: { config, model: RECORDER("__tbWarm") } });
  mkdirSync(join(repo, "warm", "warmup"));
  writeFileSync(join(repo, "warm", "warmup", "in0"), new Uint8Array(new Float32Array([1, 2, 3, 4, 99]).buffer));
  const reg = new ModelRegistry({ repository: repo });
  await reg.loadAll();
  const log = recorded("__tbWarm");
  // Per instance: 3 calls of the zeros sample, then the file sample, then the random one.
  t.is(log.calls.length, 2 * 5);
  for (const inst of ["warm_0_0", "warm_0_1"]) {
    const calls = log.calls.filter((c) => c.instance === inst);
    t.deepEqual(calls.map((c) => c.inputs.length), [2, 2, 2, 1, 1]);
    t.deepEqual(calls[0]!.inputs[0], { shape: [1, 4], data: [0, 0, 0, 0] });
    t.deepEqual(calls[3]!.inputs[0], { shape: [1, 4], data: [1, 2, 3, 4] }, "the first bytes of warmup/in0");
    t.deepEqual(calls[4]!.inputs[0]!.shape, [1, 4]);
  }
  // Instance 0 warmed up completely before instance 1 started (Triton warms each instance as it is made).
  t.deepEqual(log.calls.map((c) => c.instance), [...Array(5).fill("warm_0_0"), ...Array(5).fill("warm_0_1")]);
  const mv = reg.get("warm");
  t.is(mv.stats.snapshot().inference_count, 0, "warm-up requests are not counted");
  await reg.close();
});

const BAD_SAMPLE = `model_warmup [ { name: "wbad" batch_size: 1 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]`;

test("model_warmup: a failing sample fails the load in Triton's words; an error response too; bad samples are ERR_MODEL_LOAD", async (t) => {
  const { reg } = await registry({
    throws: { config: `${IO}\n${BAD_SAMPLE}`, model: RECORDER("__tbWarmT", "").replace("log.calls.push(", 'if (1) throw new TypeError("warm-up boom"); log.calls.push(') },
    answers_error: {
      config: `${IO}\n${BAD_SAMPLE}`,
      model: `import { InferenceResponse, ModelError } from "tensorbridge";
export default class M { execute(rs: unknown[]) { return rs.map(() => new InferenceResponse({ error: new ModelError("no warm-up for me") })); } }`,
    },
    no_file: { config: `${IO}\nmodel_warmup [ { name: "nf" inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] input_data_file: "missing" } } } ]`, model: RECORDER("__tbWarmN") },
    variable: { config: `${IO}\nmodel_warmup [ { name: "v" inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ -1 ] zero_data: true } } } ]`, model: RECORDER("__tbWarmV") },
    unknown_input: { config: `${IO}\nmodel_warmup [ { name: "u" inputs { key: "NOPE" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]`, model: RECORDER("__tbWarmU") },
    too_large: { config: `${IO}\nmodel_warmup [ { name: "big" batch_size: 2 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]`, model: RECORDER("__tbWarmBig") },
    no_data: { config: `${IO}\nmodel_warmup [ { name: "d" inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] } } } ]`, model: RECORDER("__tbWarmD") },
  });
  const thrown = reasonOf(reg, "throws");
  t.is(thrown.code, "ERR_MODEL_UNAVAILABLE");
  t.regex(thrown.message, /failed to run warmup sample 'wbad': Failed to process the request\(s\) for model 'throws_0_0', message: TypeError: warm-up boom; /);
  t.regex(reasonOf(reg, "answers_error").message, /failed to run warmup sample 'wbad': no warm-up for me; /);
  t.regex(reasonOf(reg, "no_file").message, /warmup sample 'nf': cannot read input_data_file of input 'INPUT0'/);
  t.regex(reasonOf(reg, "variable").message, /warmup sample 'v': input 'INPUT0': every dimension must be given/);
  t.regex(reasonOf(reg, "unknown_input").message, /warmup sample 'u': input 'NOPE' is not an input of model 'unknown_input'/);
  // Triton's words: each request of the call is over max_batch_size (0: no batching), and execute() never runs.
  t.regex(reasonOf(reg, "too_large").message, /failed to run warmup sample 'big': batch size 2 for 'too_large_0_0', max allowed is 0; batch size 2 for 'too_large_0_0', max allowed is 0; \)$/);
  t.deepEqual(recorded("__tbWarmBig").calls, []);
  t.regex(reasonOf(reg, "no_data").message, /warmup sample 'd': input 'INPUT0' must set zero_data, random_data or input_data_file/);
  // The load's own error carries the code.
  const e = await t.throwsAsync(reg.load("throws"), { instanceOf: ServingError });
  t.is(e?.code, "ERR_MODEL_LOAD");
  t.is(e?.tritonCode, "INVALID_ARG", "Triton: Invalid argument: failed to run warmup sample …");
  await reg.close();
});

test("model_warmup on thread instances and on decoupled models", async (t) => {
  const threads = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;
  const warm = `model_warmup [ { name: "w" batch_size: 2 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]`;
  const { reg } = await registry({
    threaded_bad: { config: `max_batch_size: 8\n${IO}\n${threads}\n${warm}`, model: RECORDER("__tbWarmTh").replace("log.calls.push(", 'if (1) throw new RangeError("in a worker"); log.calls.push(') },
    decoupled_bad: {
      config: `max_batch_size: 8\n${IO}\nmodel_transaction_policy { decoupled: true }\n${warm}`,
      model: `import { InferenceResponse, ModelError, type InferenceRequest } from "tensorbridge";
export default class M { execute(rs: InferenceRequest[]) { for (const r of rs) setTimeout(() => r.getResponseSender().send(new InferenceResponse({ error: new ModelError("late no") }), { final: true }), 5); } }`,
    },
    decoupled_ok: {
      config: `max_batch_size: 8\n${IO}\nmodel_transaction_policy { decoupled: true }\n${warm}`,
      model: `import { InferenceResponse, type InferenceRequest } from "tensorbridge";
const seen = ((globalThis as any).__tbWarmDec ??= []);
export default class M { execute(rs: InferenceRequest[]) { seen.push(rs.length); for (const r of rs) r.getResponseSender().send(new InferenceResponse({ outputTensors: { OUTPUT0: r.getInputTensorByName("INPUT0")! } }), { final: true }); } }`,
    },
  });
  t.regex(reasonOf(reg, "threaded_bad").message, /failed to run warmup sample 'w': Failed to process the request\(s\) for model 'threaded_bad_0_0', message: RangeError: in a worker; Failed/);
  t.regex(reasonOf(reg, "decoupled_bad").message, /failed to run warmup sample 'w': late no; late no; /);
  t.true(reg.get("decoupled_ok").ready);
  t.deepEqual((globalThis as unknown as { __tbWarmDec: number[] }).__tbWarmDec, [2]);
  await reg.close();
});

// --- auto_complete_config ---------------------------------------------------

const AUTO = `
import { InferenceResponse, type AutoCompleteModelConfig, type InferenceRequest } from "tensorbridge";
export default class Auto {
  static autoCompleteConfig(config: AutoCompleteModelConfig) {
    (globalThis as any)["__tbAutoSeen_" + (config.asDict() as any).name] = structuredClone(config.asDict());
    config.addInput({ name: "INPUT0", data_type: "TYPE_FP32", dims: [4] });
    config.addOutput({ name: "OUTPUT0", data_type: "TYPE_FP32", dims: [4] });
    config.setMaxBatchSize(4);
    config.setDynamicBatching();
    return config;
  }
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => new InferenceResponse({ outputTensors: { OUTPUT0: r.getInputTensorByName("INPUT0")! } }));
  }
}
`;

test("autoCompleteConfig: a model without config.pbtxt completes its config; /v2/models/<m>/config returns the completed one; it serves", async (t) => {
  const repo = makeRepo({ auto: { config: "", model: AUTO } });
  rmSync(join(repo, "auto", "config.pbtxt"));
  const server = await startTestServer(repo);
  try {
    const seen = (globalThis as unknown as { __tbAutoSeen_auto: Record<string, unknown> }).__tbAutoSeen_auto;
    t.is(seen["name"], "auto");
    t.is(seen["max_batch_size"], 0);
    t.deepEqual(seen["input"], []);
    const cfg = await http(server, "GET", "/v2/models/auto/config");
    t.is(cfg.status, 200);
    const c = cfg.json as Record<string, unknown> & { input: { name: string; dims: number[]; data_type: string }[] };
    t.is(c["max_batch_size"], 4);
    t.deepEqual(c.input.map((i) => [i.name, i.data_type, i.dims]), [["INPUT0", "TYPE_FP32", [4]]]);
    t.truthy(c["dynamic_batching"], "set_dynamic_batching() took");
    const r = await http(server, "POST", "/v2/models/auto/infer", { inputs: [{ name: "INPUT0", datatype: "FP32", shape: [2, 4], data: [1, 2, 3, 4, 5, 6, 7, 8] }] });
    t.is(r.status, 200, r.body.toString());
  } finally {
    await server.close();
  }
});

test("auto-complete imports the model file once: the in-thread instances use that import", async (t) => {
  const counted = `(globalThis as any).__tbEvaluated = ((globalThis as any).__tbEvaluated ?? 0) + 1;\n${RECORDER("__tbOnce")}`;
  const { reg } = await registry({ once: { config: `${IO}\ninstance_group [ { count: 2 kind: KIND_CPU } ]`, model: counted } });
  t.true(reg.get("once").ready);
  t.is((globalThis as unknown as { __tbEvaluated: number }).__tbEvaluated, 1);
  await reg.close();
});

test("autoCompleteConfig runs in the model's context: its Logger lines name the model", async (t) => {
  const repo = makeRepo({ chatty: { config: "", model: AUTO.replace("config.setDynamicBatching();", 'config.setDynamicBatching(); Logger.logInfo("completing");').replace("import { InferenceResponse,", "import { InferenceResponse, Logger,") } });
  rmSync(join(repo, "chatty", "config.pbtxt"));
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  try {
    t.true(lines.includes("I model 'chatty' version 1: completing"), lines.join("\n"));
  } finally {
    await server.close();
  }
});

test("autoCompleteConfig: conflicts with config.pbtxt fail the load in pb_utils' words; --disable-auto-complete-config needs config.pbtxt and skips the method", async (t) => {
  const { reg } = await registry({
    mbs: { config: "max_batch_size: 8", model: AUTO },
    dtype: { config: `input [ { name: "INPUT0" data_type: TYPE_INT32 dims: [ 4 ] } ]`, model: AUTO },
    dims: { config: `input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 5 ] } ]`, model: AUTO },
    extra_prop: { config: "", model: AUTO.replace('dims: [4] });', 'dims: [4], format: "FORMAT_NONE" } as never);') },
    returns_other: { config: "", model: AUTO.replace("return config;", "return {};") },
    sequence: { config: "", model: AUTO.replace("config.setDynamicBatching();", "(config.asDict() as any).sequence_batching = {}; config.setDynamicBatching();") },
    bad_type: { config: "", model: AUTO.replace('data_type: "TYPE_FP32", dims: [4] });\n    config.addOutput', 'data_type: "TYPE_FLOAT", dims: [4] });\n    config.addOutput') },
  });
  const mbs = reasonOf(reg, "mbs").message;
  t.regex(mbs, /configuration specified max_batch_size 8, but in auto-complete-config function for model 'mbs' specified max_batch_size 4/);
  t.regex(reasonOf(reg, "dtype").message, /unable to load model 'dtype', configuration expects datatype TYPE_INT32 for input 'INPUT0', model provides TYPE_FP32/);
  t.regex(reasonOf(reg, "dims").message, /model 'dims', tensor 'INPUT0': the model expects dims \[4\] but the model configuration specifies dims \[5\]/);
  t.regex(reasonOf(reg, "extra_prop").message, /input 'INPUT0' in auto-complete-config function for model 'extra_prop' contains property other than 'name', 'data_type', 'dims' and 'optional'\./);
  t.regex(reasonOf(reg, "returns_other").message, /must return the AutoCompleteModelConfig it was given/);
  t.regex(reasonOf(reg, "sequence").message, /Configuration specified scheduling_choice as 'sequence_batching', but auto-complete-config function for model 'sequence' tries to set scheduling_choice as 'dynamic_batching'/);
  t.regex(reasonOf(reg, "bad_type").message, /auto-completed config of 'bad_type': field "input\[0\]\.data_type": expected one of: TYPE_INVALID/);
  const e = await t.throwsAsync(reg.load("mbs"), { instanceOf: ServingError });
  t.is(e?.code, "ERR_MODEL_LOAD");
  await reg.close();

  // Off: no config.pbtxt is a load error; with one, the method does not run (the model loads with no inputs, as Triton's does).
  const off = await registry({ none: { config: "", model: AUTO }, kept: { config: "max_batch_size: 8", model: AUTO } }, { autoCompleteConfig: false }, ["none"]);
  const none = await t.throwsAsync(off.reg.load("none"), { instanceOf: ServingError });
  t.is(none?.code, "ERR_MODEL_LOAD");
  t.regex(none!.message, /config\.pbtxt/);
  const kept = off.reg.get("kept").config;
  t.is(kept.max_batch_size, 8);
  t.deepEqual(kept.input, []);
  await off.reg.close();
});

test("autoCompleteConfig: config.pbtxt may leave data_type and dims for the model to fill in; without the method that is still an error at its position", async (t) => {
  const partial = `input [ { name: "INPUT0" } ]\noutput [ { name: "OUTPUT0" } ]`;
  const { reg } = await registry({ completed: { config: partial, model: AUTO }, incomplete: { config: partial, model: RECORDER("__tbIncomplete") } });
  const cfg = reg.get("completed").config;
  t.deepEqual(cfg.input.map((i) => [i.name, i.data_type, i.dims]), [["INPUT0", "TYPE_FP32", [4]]]);
  const e = await t.throwsAsync(reg.load("incomplete"), { instanceOf: ServingError });
  t.is(e?.code, "ERR_CONFIG_INVALID");
  t.regex(e!.message, /config\.pbtxt:1:9: input "INPUT0" must set data_type/);
  await reg.close();
});

test("AutoCompleteModelConfig: completes an input of the same name, sets the transaction policy, refuses changing it", (t) => {
  const c = new AutoCompleteModelConfig(parseModelConfig('name: "m" input [ { name: "X" } ]', { partial: true }));
  c.addInput({ name: "X", data_type: "TYPE_INT64", dims: [2, 3], optional: false });
  c.setMaxBatchSize(0);
  c.setModelTransactionPolicy({ decoupled: true });
  const d = c.asDict() as { input: { name: string; data_type: string; dims: number[] }[]; model_transaction_policy: { decoupled: boolean } };
  t.deepEqual(d.input.map((i) => [i.name, i.data_type, i.dims]), [["X", "TYPE_INT64", [2, 3]]]);
  t.true(d.model_transaction_policy.decoupled);
  const err = t.throws(() => c.setModelTransactionPolicy({ decoupled: false }), { instanceOf: ServingError });
  t.is(err?.code, "ERR_MODEL_LOAD");
  t.throws(() => c.addOutput({ name: "Y", data_type: "TYPE_FP32" } as never), { message: /output 'Y' in auto-complete-config function for model 'm' is missing 'dims' property\./ });
  t.throws(() => c.addInput({ data_type: "TYPE_FP32", dims: [1] } as never), { message: /input in auto-complete-config function for model 'm' is missing 'name' property\./ });
});

test("the CLI: --disable-auto-complete-config and Triton's --strict-model-config", (t) => {
  t.is(parseCli(["serve", "repo"]).options.autoCompleteConfig, undefined);
  t.is(parseCli(["serve", "repo", "--disable-auto-complete-config"]).options.autoCompleteConfig, false);
  t.is(parseCli(["serve", "repo", "--strict-model-config=true"]).options.autoCompleteConfig, false);
  t.is(parseCli(["serve", "repo", "--strict-model-config=false"]).options.autoCompleteConfig, true);
  const e = t.throws(() => parseCli(["serve", "repo", "--disable-auto-complete-config=yes"]), { instanceOf: ServingError });
  t.is(e?.code, "ERR_CLI_USAGE");
});

// --- instance_group KIND_GPU -------------------------------------------------

test("planInstances: KIND_GPU groups are checked against the GPUs present; names and devices as Triton's", (t) => {
  const cfg = parseModelConfig(`name: "m"\n${IO}\ninstance_group [ { count: 2 kind: KIND_GPU gpus: [ 0, 1 ] }, { kind: KIND_CPU }, { kind: KIND_MODEL } ]`);
  const plan = planInstances(cfg, { count: 2 });
  t.deepEqual(
    plan.map((p) => [p.name, p.kind, p.deviceId]),
    [
      ["m_0_0_gpu0", "GPU", 0],
      ["m_0_1_gpu0", "GPU", 0],
      ["m_0_0_gpu1", "GPU", 1],
      ["m_0_1_gpu1", "GPU", 1],
      ["m_1_0", "CPU", 0],
      ["m_2_0", "MODEL", 0],
    ],
  );
  const one = t.throws(() => planInstances(cfg, { count: 1 }), { instanceOf: ServingError });
  t.is(one?.code, "ERR_MODEL_LOAD");
  t.regex(one!.message, /instance group m_0 of model m specifies invalid or unsupported gpu id 1\. GPUs present: 0\./);
  const none = t.throws(() => planInstances(cfg, { count: 0, reason: "no driver here" }), { instanceOf: ServingError });
  t.regex(none!.message, /gpu id 0\. GPUs present: none \(no driver here\)/);
  t.notThrows(() => planInstances(parseModelConfig(`name: "c"\n${IO}\ninstance_group [ { kind: KIND_CPU count: 3 } ]`), { count: 0 }), "no GPU needed");
});

test("KIND_GPU: each instance is told its kind and device (an injected GPU count); a GPU this machine lacks fails the load", async (t) => {
  const gpuGroup = `${IO}\ninstance_group [ { kind: KIND_GPU gpus: [ 1 ] count: 2 } ]`;
  const fake = await registry({ on_gpu: { config: gpuGroup, model: RECORDER("__tbGpu") } }, { gpus: { count: 2 } });
  t.true(fake.reg.get("on_gpu").ready);
  t.deepEqual(recorded("__tbGpu").init, [
    { name: "on_gpu_0_0", kind: "GPU", device: "1" },
    { name: "on_gpu_0_1", kind: "GPU", device: "1" },
  ]);
  await fake.reg.close();

  const here = await registry({ on_gpu: { config: gpuGroup, model: RECORDER("__tbGpu2") }, on_cpu: { config: IO, model: RECORDER("__tbCpu") } });
  t.true(here.reg.get("on_cpu").ready, "a model that needs no GPU loads");
  t.deepEqual(recorded("__tbCpu").init, [{ name: "on_cpu_0_0", kind: "CPU", device: "0" }]);
  if (cuda.deviceCount() >= 2) {
    t.true(here.reg.get("on_gpu").ready);
  } else {
    const e = await t.throwsAsync(here.reg.load("on_gpu"), { instanceOf: ServingError });
    t.is(e?.code, "ERR_MODEL_LOAD");
    t.regex(e!.message, /instance group on_gpu_0 of model on_gpu specifies invalid or unsupported gpu id 1/);
    t.deepEqual(recorded("__tbGpu2").init, [], "no instance was initialized");
  }
  await here.reg.close();
});

const withGpu = cuda.deviceCount() >= 1 ? test : test.skip;
withGpu(`KIND_GPU on this machine's GPU 0: the load succeeds and the instance is told GPU 0${cuda.deviceCount() >= 1 ? "" : ` [skipped: needs a CUDA GPU; ${cuda.unavailableReason()}]`}`, async (t) => {
  const { reg } = await registry({ gpu0: { config: `${IO}\ninstance_group [ { kind: KIND_GPU gpus: [ 0 ] } ]`, model: RECORDER("__tbGpu0") } });
  t.true(reg.get("gpu0").ready);
  t.deepEqual(recorded("__tbGpu0").init, [{ name: "gpu0_0_0", kind: "GPU", device: "0" }]);
  await reg.close();
});

// --- fields not implemented ---------------------------------------------------

test("config fields tensorbridge does not implement: one warning each at load, naming it; the model serves", async (t) => {
  const config = `${IO}
optimization { priority: PRIORITY_MAX input_pinned_memory { enable: false } }
instance_group [ { kind: KIND_CPU rate_limiter { resources [ { name: "R1" count: 2 } ] priority: 1 } } ]
response_cache { enable: true }
batch_input [ { kind: BATCH_ELEMENT_COUNT target_name: "N" data_type: TYPE_INT32 source_input: "INPUT0" } ]
model_metrics { metric_control [ { metric_identifier { family: "nv_inference_request_duration" } histogram_options { buckets: [ 1, 2 ] } } ] }
metric_tags { key: "team" value: "a" }
`;
  const repo = makeRepo({ lax: { config, model: RECORDER("__tbLax") }, plain: { config: IO, model: RECORDER("__tbPlain") } });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  try {
    const warned = lines.filter((l) => l.startsWith("W model 'lax' version 1: config field "));
    const fields = warned.map((l) => /config field (\S+)/.exec(l)![1]);
    t.deepEqual(fields, ["batch_input", "optimization", "instance_group[0]", "metric_tags", "response_cache", "model_metrics"]);
    t.true(warned.some((l) => l.includes("instance_group[0] (lax_0).rate_limiter")));
    t.true(warned.every((l) => l.includes("is not implemented by tensorbridge and is ignored")));
    t.deepEqual(lines.filter((l) => l.includes("model 'plain'") && l.startsWith("W")), [], "a plain config warns of nothing");
    const r = await http(server, "POST", "/v2/models/lax/infer", { inputs: [{ name: "INPUT0", datatype: "FP32", shape: [4], data: [1, 2, 3, 4] }] });
    t.is(r.status, 200);
  } finally {
    await server.close();
  }
});

test("config fields refused: sequence_batching, ensemble_scheduling (Triton's words), model_repository_agents (Triton refuses an agent it lacks)", async (t) => {
  const { reg } = await registry({
    seq: { config: `max_batch_size: 4\n${IO}\nsequence_batching { }`, model: RECORDER("__tbSeq") },
    ens: { config: `${IO}\nensemble_scheduling { step [ { model_name: "x" model_version: -1 } ] }`, model: RECORDER("__tbEns") },
    agents: { config: `${IO}\nmodel_repository_agents { agents [ { name: "checksum" } ] }`, model: RECORDER("__tbAg") },
  });
  for (const [name, words] of [
    ["seq", /sequence_batching is not supported by the tensorbridge runtime/],
    ["ens", /ensemble scheduling cannot be set for model 'ens' whose platform is not ensemble/],
    ["agents", /repository agent 'checksum' of model 'agents' is not available/],
  ] as const) {
    const e = await t.throwsAsync(reg.load(name), { instanceOf: ServingError });
    t.is(e?.code, "ERR_CONFIG_INVALID", name);
    t.regex(e!.message, words);
  }
  await reg.close();
});

// --- execute() errors -------------------------------------------------------

test("an error thrown in execute(): the client gets Triton's words with the instance's name; the log has model, version, request ids and the stack", async (t) => {
  const model = `
import type { InferenceRequest } from "tensorbridge";
function deepInside(): never { throw new TypeError("bad thing"); }
export default class Raise { execute(_: InferenceRequest[]) { return deepInside(); } }
`;
  const repo = makeRepo({ raise: { config: IO, model, versions: [2] } });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  try {
    const r = await http(server, "POST", "/v2/models/raise/infer", { id: "rq7", inputs: [{ name: "INPUT0", datatype: "FP32", shape: [4], data: [1, 2, 3, 4] }] });
    t.is(r.status, 500);
    t.is((r.json as { error: string }).error, "Failed to process the request(s) for model 'raise_0_0', message: TypeError: bad thing");
    const line = lines.find((l) => l.startsWith("E model 'raise' version 2: execute() of instance raise_0_0 failed"));
    t.truthy(line, lines.join("\n"));
    t.regex(line!, /request id\(s\) \['rq7'\]/);
    t.regex(line!, /message: TypeError: bad thing\nAt:\n\s+at deepInside \(.*raise\/2\/model\.ts:3/);
  } finally {
    await server.close();
  }
});

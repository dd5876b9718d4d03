/**
 * Business Logic Scripting: a model calls other models with
 * `new InferenceRequest({...}).exec()` / `exec({ decoupled: true })`, in
 * process, through the same scheduler and statistics as client requests;
 * errors come back as error responses; tensors pass without a copy; the
 * direct self-call deadlock is refused; the model loading API; and calls
 * from an instance thread. Models are loaded with the runtime alone, and
 * once through a real server.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { ModelError } from "../src/runtime/model-error.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import type { InferInput, InferOutput } from "../src/runtime/model-version.js";
import { InferenceRequest } from "../src/runtime/request.js";
import { Tensor } from "../src/tensor.js";
import { cuda } from "../src/cuda.js";
import { ADD_SUB, CALLER, FAILING, PROBE, TICKER, blsHarness } from "./fixtures/runtime-bls.js";
import { DECOUPLED, IN, PLAIN, cleanupModels, closeGate, loadModels } from "./fixtures/runtime-decoupled.js";
import { cleanupRepos, http, makeRepo, startTestServer } from "./server-helpers.js";

test.after.always(() => {
  cleanupModels();
  cleanupRepos();
});

const A = [1, 2, 3, 4];
const B = [10, 20, 30, 40];
const inputs = (a = A, b = B): Tensor[] => [
  Tensor.from(new Float32Array(a), { name: "INPUT0", shape: [4] }),
  Tensor.from(new Float32Array(b), { name: "INPUT1", shape: [4] }),
];
const out = (o: InferOutput, name: string): number[] => Array.from(o.outputs.find((t) => t.name === name)!.data() as Float32Array);
const call = (input: Partial<InferInput>): InferInput => ({ inputs: inputs(), ...input });

test("a model calls add_sub with exec(): the callee's outputs come back, and the callee's statistics count the call", async (t) => {
  const { reg } = await loadModels({ add_sub: ADD_SUB, caller: CALLER() });
  const before = reg.get("add_sub").stats.snapshot().inference_stats.success.count;
  const o = await reg.get("caller").infer(call({ id: "r1" }));
  t.deepEqual(out(o, "OUTPUT0"), [11, 22, 33, 44]);
  t.deepEqual(out(o, "OUTPUT1"), [-9, -18, -27, -36]);
  await reg.get("caller").infer(call({ id: "r2" }));
  const st = reg.get("add_sub").stats.snapshot();
  t.is(st.inference_stats.success.count - before, 2, "both BLS calls are in add_sub's statistics");
  t.is(st.execution_count, 2);
  t.is(reg.get("caller").stats.snapshot().inference_stats.success.count, 1 + 1);
  await reg.close();
});

test("exec({ decoupled: true }) yields every response of a decoupled model, then the empty final one", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED(), caller: CALLER() });
  const o = await reg.get("caller").infer(call({ inputs: inputs([4, 5, 6, 7]), parameters: { mode: "stream", target: "d" } }));
  // 4 responses with OUT, then the final flag alone as an empty response.
  t.deepEqual(out(o, "OUTPUT0"), [5, 1, 22, 0]);
  t.deepEqual(out(o, "OUTPUT1"), [1, 0, 0, 0], "the last response is the empty final one");
  // The final flag on the last response: no extra empty one.
  const last = await reg.get("caller").infer(call({ inputs: inputs([1, 2, 3, 4]), parameters: { mode: "stream", target: "d", callee_mode: "zero" } }));
  t.deepEqual(out(last, "OUTPUT0"), [1, 1, 0, 0], "zero responses: only the empty final one");
  // An error mid-stream arrives as an error response; the stream goes on.
  const mid = await reg.get("caller").infer(call({ inputs: inputs([7, 8, 0, 0]), parameters: { mode: "stream", target: "d", callee_mode: "error-mid" } }));
  // OUT 7, two error responses (the model's, and one with a wrong dtype), OUT 8, the empty final one.
  t.deepEqual(out(mid, "OUTPUT0"), [5, 1, 15, 2]);
  t.is(reg.get("d").stats.snapshot().inference_stats.success.count + reg.get("d").stats.snapshot().inference_stats.fail.count, 3);
  await reg.close();
});

test("exec({ decoupled: true }) on a model that is not decoupled yields its one response, final", async (t) => {
  const { reg } = await loadModels({ plain: PLAIN(), caller: CALLER() });
  const o = await reg.get("caller").infer(call({ inputs: inputs([1, 2, 3, 4]), parameters: { mode: "stream", target: "plain" } }));
  t.deepEqual(out(o, "OUTPUT0"), [1, 0, 10, 0]);
  t.deepEqual(out(o, "OUTPUT1"), [0, 0, 0, 0]);
  await reg.close();
});

/** The error the caller passed on (it answers with the BLS response's error). */
async function failure(p: Promise<unknown>): Promise<ModelError> {
  try {
    await p;
  } catch (e) {
    if (e instanceof ModelError) return e;
    throw e;
  }
  throw new Error("expected an error");
}

test("a missing model, a wrong input, a failing callee and exec() on a decoupled model are error responses", async (t) => {
  const { reg } = await loadModels({ add_sub: ADD_SUB, failing: FAILING, d: DECOUPLED(), caller: CALLER() });
  const caller = reg.get("caller");
  const missing = await failure(caller.infer(call({ parameters: { target: "no_such_model" } })));
  t.is(missing.message, "Model no_such_model - Error when running inference: Failed for execute the inference request. Model 'no_such_model' is not ready.");
  // Triton 2.51's Python backend: INTERNAL for every BLS call refused before it ran (server-toolbox-tritonclient.spec.ts).
  t.is(missing.code, "INTERNAL");
  const version = await failure(caller.infer(call({ parameters: { version: 7 } })));
  t.is(version.message, "Model add_sub - Error when running inference: Failed for execute the inference request. Model 'add_sub' is not ready.");

  const wrong = await failure(caller.infer(call({ parameters: { mode: "wrong-input" } })));
  t.is(wrong.code, "INTERNAL");
  t.regex(wrong.message, /^Model add_sub - Error when running inference: .*expected 2 inputs but got 1 inputs for model 'add_sub'.*missing required input\(s\) \['INPUT1'\]/);

  const failing = await failure(caller.infer(call({ parameters: { target: "failing" } })));
  t.is(failing.code, "INTERNAL");
  t.is(failing.message, "Failed to process the request(s) for model 'failing_0_0', message: RangeError: the callee gave up");
  t.is(reg.get("failing").stats.snapshot().inference_stats.fail.count, 1, "the failed call is in the callee's statistics");

  const decoupled = await failure(caller.infer(call({ parameters: { target: "d" } })));
  t.is(decoupled.code, "INTERNAL");
  t.regex(decoupled.message, /^Model d - Error when running inference: Model d is using the decoupled\. The current BLS request call doesn't support models using the decoupled transaction policy\./);

  // The caller keeps working after errors.
  t.deepEqual(out(await caller.infer(call({})), "OUTPUT0"), [11, 22, 33, 44]);
  await reg.close();
});

test("tensors pass without a copy: the callee sees the caller's input bytes, and the caller gets the callee's output tensors", async (t) => {
  const h = blsHarness();
  const { reg } = await loadModels({ probe: PROBE, caller: CALLER() });
  const o = await reg.get("caller").infer(call({ id: "zc", parameters: { target: "probe" } }));
  t.deepEqual(out(o, "OUTPUT0"), [11, 22, 33, 44]);
  const callerPtr = h.callerPtr.get("zc");
  t.truthy(callerPtr);
  t.is(h.probePtr.get("zc"), callerPtr, "the same bytes");
  // The caller returned the tensors it got; the runtime hands them on as they are.
  const got = h.got.get("zc") as Tensor[];
  t.is(o.outputs[0]!.dataPtr, got[0]!.dataPtr);
  t.is(o.outputs[0], got[0], "the same Tensor object");
  await reg.close();
});

test("a model calling itself while every instance of it is busy gets an error response, not a hang", async (t) => {
  const { reg } = await loadModels({ add_sub: ADD_SUB, caller: CALLER() });
  const e = await failure(reg.get("caller").infer(call({ parameters: { mode: "self" } })));
  t.is(e.code, "UNAVAILABLE");
  t.regex(e.message, /^Model caller - Error when running inference: deadlock: model 'caller' version 1 calls itself from instance caller_0_0 while every instance of it is busy/);
  await reg.close();
  // With a second instance free, calling itself works.
  const two = await loadModels({ add_sub: ADD_SUB, caller: CALLER({ count: 2 }) });
  const o = await two.reg.get("caller").infer(call({ parameters: { mode: "self" } }));
  t.deepEqual(out(o, "OUTPUT0"), [11, 22, 33, 44]);
  t.is(two.reg.get("caller").stats.snapshot().inference_stats.success.count, 2, "the outer call and its own BLS call");
  await two.reg.close();
});

test("isModelReady, loadModel and unloadModel from a model; files without a config are refused", async (t) => {
  const { reg } = await loadModels({ add_sub: ADD_SUB, caller: CALLER() });
  const caller = reg.get("caller");
  const ready = async (p: Record<string, string | number>) => out(await caller.infer(call({ parameters: p })), "OUTPUT0")[0];
  t.is(await ready({ mode: "ready" }), 1);
  t.is(await ready({ mode: "ready", target: "nope" }), 0);
  t.is(await ready({ mode: "ready", version: 2 }), 0);
  t.is(await ready({ mode: "unload" }), 0);
  t.false(reg.isReady("add_sub"));
  const gone = await failure(caller.infer(call({})));
  t.regex(gone.message, /Model 'add_sub' is not ready\.$/);
  t.is(await ready({ mode: "load" }), 1);
  t.true(reg.isReady("add_sub"));
  // A config given with the load.
  const cfg = JSON.stringify({ ...JSON.parse(JSON.stringify(reg.get("add_sub").config)), instance_group: [{ kind: "KIND_CPU", count: 3 }] });
  t.is(await ready({ mode: "load", config: cfg }), 1);
  t.is(reg.get("add_sub").instanceCount, 3);
  const files = await failure(caller.infer(call({ parameters: { mode: "load-files" } })));
  // Files without a config (server-load-files.spec.ts loads models from files): Triton's INTERNAL.
  t.is(files.code, "INTERNAL");
  t.is(files.message, "failed to load 'add_sub', failed to poll from model repository: Load parameter 'config' must be specified for model file override");
  // Loading or unloading itself from execute() would wait for that execute(): refused.
  for (const mode of ["load", "unload"]) {
    const self = await failure(caller.infer(call({ parameters: { mode, target: "caller" } })));
    t.is(self.code, "UNAVAILABLE");
    t.is(self.message, `deadlock: model 'caller' cannot ${mode} itself from its own execute() (the ${mode} waits for this execute() to finish); do it from another model or outside execute()`);
  }
  t.true(reg.isReady("caller"));
  const notThere = await failure(caller.infer(call({ parameters: { mode: "load", target: "nope" } })));
  // As a load request's (Triton 2.51's pb_utils.load_model aborts the server here).
  t.is(notThere.code, "INTERNAL");
  t.regex(notThere.message, /^failed to load 'nope', failed to poll from model repository: no model directory 'nope'/);
  await reg.close();
});

// Serial: "the newest registry" must not be another test's.
test.serial("each registry's models call into their own registry", async (t) => {
  const one = await loadModels({ add_sub: ADD_SUB, caller: CALLER() });
  const two = await loadModels({ add_sub: ADD_SUB, caller: CALLER() });
  await one.reg.get("caller").infer(call({}));
  await one.reg.get("caller").infer(call({}));
  await two.reg.get("caller").infer(call({}));
  t.is(one.reg.get("add_sub").stats.snapshot().inference_stats.success.count, 2);
  t.is(two.reg.get("add_sub").stats.snapshot().inference_stats.success.count, 1);
  // Outside any model, exec() goes to the newest registry that is not closed.
  const r = await new InferenceRequest({ modelName: "add_sub", inputs: inputs(), requestedOutputNames: ["OUTPUT0"] }).exec();
  t.false(r.hasError());
  t.deepEqual(Array.from(r.outputTensors[0]!.data() as Float32Array), [11, 22, 33, 44]);
  t.is(two.reg.get("add_sub").stats.snapshot().inference_stats.success.count, 2);
  await two.reg.close();
  await one.reg.close();
});

test("a model in an instance thread calls models of the serving thread (unary, decoupled, errors, loading API)", async (t) => {
  const { reg } = await loadModels({ add_sub: ADD_SUB, d: DECOUPLED(), ticker: TICKER, caller: CALLER({ threads: true }) });
  const caller = reg.get("caller");
  const o = await caller.infer(call({}));
  t.deepEqual(out(o, "OUTPUT0"), [11, 22, 33, 44]);
  t.deepEqual(out(o, "OUTPUT1"), [-9, -18, -27, -36]);
  t.is(reg.get("add_sub").stats.snapshot().inference_stats.success.count, 1);
  const s = await caller.infer(call({ inputs: inputs([4, 5, 6, 7]), parameters: { mode: "stream", target: "d" } }));
  t.deepEqual(out(s, "OUTPUT0"), [5, 1, 22, 0]);
  // Cancelled from the worker: the serving thread's callee sees it and ends CANCELLED.
  const c = await caller.infer(call({ inputs: inputs([21, 0, 0, 0]), parameters: { mode: "stream", target: "ticker", cancel_after: 3 } }));
  t.is(out(c, "OUTPUT1")[1], 1, "the last response is a CANCELLED error");
  t.true(blsHarness().tickerStopped.has(21), "the callee saw the cancel");
  const missing = await failure(caller.infer(call({ parameters: { target: "no_such_model" } })));
  t.is(missing.message, "Model no_such_model - Error when running inference: Failed for execute the inference request. Model 'no_such_model' is not ready.");
  const self = await failure(caller.infer(call({ parameters: { mode: "self" } })));
  t.regex(self.message, /deadlock: model 'caller' version 1 calls itself/);
  t.is(out(await caller.infer(call({ parameters: { mode: "unload" } })), "OUTPUT0")[0], 0);
  t.false(reg.isReady("add_sub"));
  t.is(out(await caller.infer(call({ parameters: { mode: "load" } })), "OUTPUT0")[0], 1);
  t.true(reg.isReady("add_sub"));
  await reg.close();
});

test("through the server: a client's request to a model that calls add_sub, and the callee's statistics", async (t) => {
  const repo = makeRepo({ add_sub: { config: ADD_SUB.config, model: ADD_SUB.model }, caller: { config: CALLER().config, model: CALLER().model } });
  const server = await startTestServer(repo);
  try {
    const body = {
      inputs: [
        { name: "INPUT0", datatype: "FP32", shape: [4], data: A },
        { name: "INPUT1", datatype: "FP32", shape: [4], data: B },
      ],
    };
    const a = await http(server, "POST", "/v2/models/caller/infer", body);
    t.is(a.status, 200, a.body.toString());
    t.deepEqual(a.json.outputs.find((o: { name: string }) => o.name === "OUTPUT0").data, [11, 22, 33, 44]);
    const bad = await http(server, "POST", "/v2/models/caller/infer", { ...body, parameters: { target: "no_such_model" } });
    t.is(bad.status, 500, "INTERNAL, as Triton 2.51");
    t.regex(bad.json.error, /Model no_such_model - Error when running inference: Failed for execute the inference request\. Model 'no_such_model' is not ready\./);
    const stats = await http(server, "GET", "/v2/models/add_sub/stats");
    t.is(stats.json.model_stats[0].inference_stats.success.count, 1);
  } finally {
    await server.close();
  }
});

// Serial: exec() from the test itself goes to the newest registry.
test.serial("timeoutMs ends a call with an error response, queued or running", async (t) => {
  const { reg } = await loadModels({ plain: PLAIN() });
  const open = closeGate();
  const running = new InferenceRequest({ modelName: "plain", inputs: [IN(1, 2)], parameters: { gated: true }, timeoutMs: 30 }).exec();
  const queued = new InferenceRequest({ modelName: "plain", inputs: [IN(3)], timeoutMs: 10 }).exec();
  const q = await queued;
  t.true(q.hasError());
  t.is(q.error?.code, "UNAVAILABLE");
  t.is(q.error?.message, "Request timeout expired (BLS call to model 'plain' after 10 ms)");
  const r = await running;
  t.is(r.error?.message, "Request timeout expired (BLS call to model 'plain' after 30 ms)");
  open();
  const ok = await new InferenceRequest({ modelName: "plain", inputs: [IN(3, 4)], timeoutMs: 1000 }).exec();
  t.false(ok.hasError());
  t.deepEqual(Array.from(ok.outputTensorByName("OUT")!.data() as Int32Array), [7]);
  t.is(reg.get("plain").stats.snapshot().inference_stats.fail.count, 1, "the queued one was dropped as cancelled");
  await reg.close();
});

test("a registry with modelControl: false (--model-control-mode none) refuses loadModel and unloadModel from models in Triton's words", async (t) => {
  const first = await loadModels({ add_sub: ADD_SUB, caller: CALLER() });
  await first.reg.close();
  const reg = new ModelRegistry({ repository: first.repo, modelControl: false });
  t.deepEqual(await reg.loadAll(), []);
  for (const mode of ["load", "unload"]) {
    const e = await failure(reg.get("caller").infer(call({ parameters: { mode } })));
    t.is(e.code, "UNAVAILABLE");
    t.is(e.message, "explicit model load / unload is not allowed if polling is enabled");
  }
  t.true(reg.isReady("add_sub"), "nothing was unloaded");
  t.is(out(await reg.get("caller").infer(call({ parameters: { mode: "ready" } })), "OUTPUT0")[0], 1, "isModelReady still answers");
  await reg.close();
});

test("cancel() on exec({ decoupled: true }) cancels the callee's request; so does leaving the loop early", async (t) => {
  const h = blsHarness();
  const { reg } = await loadModels({ ticker: TICKER, caller: CALLER() });
  const caller = reg.get("caller");
  const c = await caller.infer(call({ inputs: inputs([11, 0, 0, 0]), parameters: { mode: "stream", target: "ticker", cancel_after: 3 } }));
  const [n, , , errors] = out(c, "OUTPUT0");
  t.is(errors, 1);
  t.is(out(c, "OUTPUT1")[1], 1, "the iterator ends with a CANCELLED error");
  t.true(n! >= 4 && n! < 50, `${n} responses`);
  t.true(h.tickerStopped.has(11));
  const b = await caller.infer(call({ inputs: inputs([12, 0, 0, 0]), parameters: { mode: "stream", target: "ticker", break_after: 2 } }));
  t.is(out(b, "OUTPUT0")[0], 2);
  for (let i = 0; i < 100 && !h.tickerStopped.has(12); i++) await new Promise((r) => setTimeout(r, 5));
  t.true(h.tickerStopped.has(12), "break cancels the call");
  t.true(h.tickerStopped.get(12)! < 50);
  const st = reg.get("ticker").stats.snapshot().inference_stats;
  t.is(st.fail.count, 2, "both cancelled requests are failures in the callee's statistics");
  await reg.close();
});

test("the README's BLS example runs: it calls add_sub, then streams from repeat", async (t) => {
  const root = join(import.meta.dirname, "..");
  const readme = readFileSync(join(root, "README.md"), "utf8");
  const m = /```ts\n\/\/ models\/pipeline\/1\/model\.ts[^\n]*\n([\s\S]*?)```/.exec(readme);
  t.truthy(m, "README.md has the pipeline example");
  const repeat = (f: string) => readFileSync(join(root, "examples/models/repeat", f), "utf8");
  const { reg } = await loadModels({
    add_sub: ADD_SUB,
    repeat: { config: repeat("config.pbtxt").replace(/^name: .*$/m, ""), model: repeat("1/model.ts") },
    pipeline: { config: ADD_SUB.config, model: m![1]! },
  });
  const o = await reg.get("pipeline").infer(call({}));
  t.deepEqual(out(o, "OUTPUT0"), [11, 22, 33, 44]);
  t.deepEqual(out(o, "OUTPUT1"), [22, 44, 66, 88]);
  t.is(reg.get("repeat").stats.snapshot().inference_stats.success.count, 1);
  await reg.close();
});

// --- with a GPU -------------------------------------------------------------

const gpu = cuda.isAvailable() ? test : test.skip;
const needsGpu = cuda.isAvailable() ? "" : ` [skipped: needs a CUDA GPU; ${cuda.unavailableReason()}]`;

const ADD_SUB_IO = readFileSync(join(import.meta.dirname, "..", "examples/models/add_sub/config.pbtxt"), "utf8").replace(/^name: .*$/m, "");
/** Records where its INPUT0 lives (device, address) by request id, and answers add_sub on the host. */
const GPU_PROBE = `
import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
export default class GpuProbe {
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => {
      const a = r.getInputTensorByName("INPUT0")!;
      (globalThis as any).__tbGpuBls.seen.set(r.requestId, { cpu: a.isCpu(), ptr: a.dataPtr });
      const x = a.toCpu().data() as Float32Array, y = r.getInputTensorByName("INPUT1")!.toCpu().data() as Float32Array;
      return new InferenceResponse({ outputTensors: { OUTPUT0: Tensor.from(x.map((v, i) => v + y[i]!)), OUTPUT1: Tensor.from(x.map((v, i) => v - y[i]!)) } });
    });
  }
}
`;
/** Moves its inputs to the GPU and calls the model named by its \`target\` parameter with them. */
const GPU_CALLER = `
import { InferenceRequest, InferenceResponse, type InferenceRequest as Req } from "tensorbridge";
export default class GpuCaller {
  async execute(requests: Req[]) {
    const out = [];
    for (const r of requests) {
      const a = r.getInputTensorByName("INPUT0")!.cuda(0).withName("INPUT0");
      const b = r.getInputTensorByName("INPUT1")!.cuda(0).withName("INPUT1");
      (globalThis as any).__tbGpuBls.sent.set(r.requestId, a.dataPtr);
      const res = await new InferenceRequest({ modelName: String(r.parameters["target"]), inputs: [a, b], requestedOutputNames: ["OUTPUT0", "OUTPUT1"] }).exec();
      if (res.hasError()) throw res.error;
      out.push(new InferenceResponse({ outputTensors: res.outputTensors }));
    }
    return out;
  }
}
`;

gpu(`GPU tensors cross a BLS call without a copy where the callee keeps GPU inputs (FORCE_CPU_ONLY_INPUT_TENSORS "no"), and reach it on the host by default${needsGpu}`, async (t) => {
  const seen = new Map<string, { cpu: boolean; ptr: bigint }>();
  const sent = new Map<string, bigint>();
  (globalThis as unknown as { __tbGpuBls: unknown }).__tbGpuBls = { seen, sent };
  const keepGpu = `${ADD_SUB_IO}\nparameters: { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: { string_value: "no" } }\n`;
  const { reg } = await loadModels({ caller: { config: ADD_SUB_IO, model: GPU_CALLER }, on_gpu: { config: keepGpu, model: GPU_PROBE }, on_cpu: { config: ADD_SUB_IO, model: GPU_PROBE } });
  for (const [id, target] of [["keep", "on_gpu"], ["host", "on_cpu"]] as const) {
    const o = await reg.get("caller").infer(call({ id, parameters: { target } }));
    t.deepEqual(out(o, "OUTPUT0"), [11, 22, 33, 44], id);
    t.deepEqual(out(o, "OUTPUT1"), [-9, -18, -27, -36], id);
  }
  t.false(seen.get("keep")!.cpu, "the callee got the tensor on the GPU");
  t.is(seen.get("keep")!.ptr, sent.get("keep")!, "the same device memory: no copy");
  t.true(seen.get("host")!.cpu, "FORCE_CPU_ONLY_INPUT_TENSORS's default moves it to the host, as Triton does");
  await reg.close();
});

/**
 * Model instances in worker threads (`TENSORBRIDGE_INSTANCE_THREADS: "yes"`):
 * each instance runs in a thread of its own, CPU-bound execute() calls of
 * two instances run at once, tensors cross without copying their bytes,
 * BYTES, errors and codes cross intact, finalize() runs in the worker, and
 * a worker that dies fails its requests, not the server.
 */
import { existsSync, mkdtempSync, readdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { threadId } from "node:worker_threads";

import test from "ava";

import { cuda } from "../src/index.js";
import { ServingError } from "../src/runtime/errors.js";
import { ModelError } from "../src/runtime/model-error.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import { Tensor } from "../src/tensor.js";
import { ADD_SUB, cleanupRepos, makeRepo, setupModelEntry } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

const THREADS = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;

/**
 * Reports its thread, its instance name, the address of its input X, and
 * echoes X doubled and S; `mode` picks a failure; `barrier` (a directory)
 * makes execute() wait, blocking its thread, until two instances are in it.
 */
const WORKER_MODEL = `
import { writeFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { threadId } from "node:worker_threads";
import { InferenceResponse, ModelError, Tensor, type InferenceRequest, type InitializeArgs } from "tensorbridge";
export default class Threaded {
  name = "";
  repo = "";
  initialize(args: InitializeArgs) {
    this.name = args.model_instance_name;
    this.repo = args.model_repository;
  }
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => {
      const mode = String(r.parameters["mode"] ?? "ok");
      if (mode === "throw") throw new Error("boom in a worker");
      if (mode === "invalid") throw new ModelError("bad input, said the worker", ModelError.INVALID_ARG);
      if (mode === "exit") process.exit(7);
      if (mode === "response-error") return new InferenceResponse({ error: new ModelError("nothing here", "NOT_FOUND") });
      if (mode === "not-response") return { hello: 1 } as never;
      let together = 0;
      const dir = r.parameters["barrier"];
      if (typeof dir === "string") {
        writeFileSync(join(dir, String(threadId)), "");
        const sleeper = new Int32Array(new SharedArrayBuffer(4));
        for (let i = 0; i < 2000 && readdirSync(dir).length < 2; i++) Atomics.wait(sleeper, 0, 0, 5);
        together = readdirSync(dir).length >= 2 ? 1 : 0;
      }
      const x = r.getInputTensorByName("X")!;
      const s = r.getInputTensorByName("S");
      const y = Float32Array.from(x.data() as Float32Array, (v) => v * 2);
      return new InferenceResponse({
        outputTensors: {
          Y: Tensor.from(y, { shape: [...x.shape] }),
          INFO: Tensor.from(new BigInt64Array([BigInt(threadId), x.dataPtr, BigInt(together)])),
          WHO: Tensor.fromBytes([this.name]),
          ...(s ? { S_OUT: Tensor.fromBytes(s.bytes(), { shape: [...s.shape] }) } : {}),
        },
      });
    });
  }
  finalize() {
    writeFileSync(join(this.repo, "finalized-" + this.name), "");
  }
}
`;

const WORKER_CONFIG = (count: number) => `
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] }, { name: "S" data_type: TYPE_STRING dims: [ -1 ] optional: true } ]
output [
  { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] },
  { name: "INFO" data_type: TYPE_INT64 dims: [ 3 ] },
  { name: "WHO" data_type: TYPE_STRING dims: [ 1 ] },
  { name: "S_OUT" data_type: TYPE_STRING dims: [ -1 ] }
]
instance_group [ { count: ${count} kind: KIND_CPU } ]
${THREADS}`;

async function load(models: Parameters<typeof makeRepo>[0], opts: { autoCompleteConfig?: boolean } = {}): Promise<{ reg: ModelRegistry; repo: string }> {
  const repo = makeRepo(models);
  const reg = new ModelRegistry({ repository: repo, ...opts });
  await reg.loadAll();
  return { reg, repo };
}

const x = (...v: number[]) => Tensor.from(new Float32Array(v), { name: "X" });
const info = (out: { outputs: Tensor[] }) => Array.from(out.outputs.find((t) => t.name === "INFO")!.data() as BigInt64Array);
const text = (t: Tensor) => t.bytes().map((b) => new TextDecoder().decode(b));

test("each instance runs in a worker thread of its own; inputs cross without a copy; BYTES and names cross intact", async (t) => {
  const { reg, repo } = await load({ threaded: { config: WORKER_CONFIG(2), model: WORKER_MODEL } });
  const mv = reg.get("threaded");
  t.is(mv.instanceCount, 2);
  const input = x(1, 2, 3);
  const out = await mv.infer({ inputs: [input, Tensor.fromBytes(["a", "é"], { name: "S" })], outputs: ["Y", "INFO", "WHO", "S_OUT"] });
  t.deepEqual(Array.from(out.outputs[0]!.data() as Float32Array), [2, 4, 6]);
  const [tid, ptr] = info(out);
  t.not(tid, BigInt(threadId), "execute() ran in another thread");
  t.is(ptr, input.dataPtr, "the worker saw the caller's memory: no copy");
  t.regex(text(out.outputs[2]!)[0]!, /^threaded_0_[01]$/);
  t.deepEqual(text(out.outputs[3]!), ["a", "é"]);
  // Two requests at once reach both instances, in two different threads.
  const both = await Promise.all([mv.infer({ inputs: [x(1)] }), mv.infer({ inputs: [x(2)] })]);
  t.is(new Set(both.map((o) => info(o)[0])).size, 2);
  await reg.close();
  t.true(existsSync(join(repo, "threaded", "finalized-threaded_0_0")) && existsSync(join(repo, "threaded", "finalized-threaded_0_1")), "finalize() ran in each worker");
  // Outputs made in a worker's JS memory outlive the worker (they are copied when they cross).
  const junk = Array.from({ length: 16 }, () => new Float32Array(1 << 18).fill(9));
  t.deepEqual(Array.from(out.outputs[0]!.data() as Float32Array), [2, 4, 6]);
  t.deepEqual(text(out.outputs[3]!), ["a", "é"]);
  t.is(junk.length, 16);
});

test("two CPU-bound execute() calls run at once, each blocking only its own thread", async (t) => {
  const { reg } = await load({ threaded: { config: WORKER_CONFIG(2), model: WORKER_MODEL } });
  const mv = reg.get("threaded");
  const dir = mkdtempSync(join(tmpdir(), "tb-barrier-"));
  // Each execute() blocks its thread until both are inside: only parallel instances get there.
  const outs = await Promise.all([0, 1].map(() => mv.infer({ inputs: [x(1)], parameters: { barrier: dir } })));
  t.deepEqual(outs.map((o) => info(o)[2]), [1n, 1n], "both were inside execute() at the same time");
  t.is(readdirSync(dir).length, 2);
  await reg.close();
});

test("errors cross with their codes; a bad response is that request's error; the instance keeps serving", async (t) => {
  const { reg } = await load({ threaded: { config: WORKER_CONFIG(1), model: WORKER_MODEL } });
  const mv = reg.get("threaded");
  const run = (mode: string) => mv.infer({ inputs: [x(1)], parameters: { mode } });
  // Worded as Triton's Python backend words an exception from execute.
  const thrown = await t.throwsAsync(run("throw"), {
    instanceOf: ModelError,
    message: "Failed to process the request(s) for model 'threaded_0_0', message: Error: boom in a worker",
  });
  t.is(thrown?.code, "INTERNAL");
  t.is((await t.throwsAsync(run("invalid"), { instanceOf: ModelError, message: "bad input, said the worker" }))?.code, "INVALID_ARG");
  t.is((await t.throwsAsync(run("response-error"), { instanceOf: ModelError, message: "nothing here" }))?.code, "NOT_FOUND");
  await t.throwsAsync(run("not-response"), { message: /execute\(\) result 0 is not an InferenceResponse/ });
  t.deepEqual(Array.from((await run("ok")).outputs[0]!.data() as Float32Array), [2]);
  await reg.close();
});

test("a worker that dies fails its request with a clear error and is restarted: later requests succeed; the server and other models go on", async (t) => {
  const { reg } = await load({ threaded: { config: WORKER_CONFIG(1), model: WORKER_MODEL }, add_sub: ADD_SUB });
  const mv = reg.get("threaded");
  const err = await t.throwsAsync(mv.infer({ inputs: [x(1)], parameters: { mode: "exit" } }), { instanceOf: ModelError });
  t.is(err?.code, "INTERNAL");
  t.regex(err!.message, /instance threaded_0_0: its worker thread exited \(code 7\)/);
  // The instance restarted: a fresh worker ran initialize() again and serves.
  t.deepEqual(Array.from((await mv.infer({ inputs: [x(1)] })).outputs[0]!.data() as Float32Array), [2]);
  const a = Tensor.from(new Float32Array([1, 2, 3, 4]), { name: "INPUT0" });
  const b = Tensor.from(new Float32Array([1, 1, 1, 1]), { name: "INPUT1" });
  t.deepEqual(Array.from((await reg.get("add_sub").infer({ inputs: [a, b] })).outputs[0]!.data() as Float32Array), [2, 3, 4, 5]);
  await reg.close();
});

test("the parameter takes yes or no only; a worker's import or initialize() failure fails the load, naming the step", async (t) => {
  // Auto-complete off: with it on, the serving thread imports the class first (for its autoCompleteConfig) and reports the import's failure itself.
  const { reg } = await load({
    bad_value: { config: WORKER_CONFIG(1).replace('string_value: "yes"', 'string_value: "maybe"'), model: WORKER_MODEL },
    no_import: { config: WORKER_CONFIG(1), model: `throw new Error("cannot import me");` },
    no_init: { config: WORKER_CONFIG(2), model: WORKER_MODEL.replace("this.name = args.model_instance_name;", 'throw new Error("initialize refused");') },
    add_sub: ADD_SUB,
  }, { autoCompleteConfig: false });
  const reason = (m: string) => {
    const e = t.throws(() => reg.get(m), { instanceOf: ServingError });
    return e?.message ?? "";
  };
  t.regex(reason("bad_value"), /parameter TENSORBRIDGE_INSTANCE_THREADS must be "yes" or "no", got "maybe"/);
  t.regex(reason("no_import"), /instance no_import_0_0 \(in its worker thread\) failed: failed to import .*cannot import me/);
  t.regex(reason("no_init"), /instance no_init_0_0 \(in its worker thread\) failed: initialize\(\) failed: initialize refused/);
  t.true(reg.get("add_sub").ready, "the other models load");
  await reg.close();
});

const gpu = cuda.isAvailable() ? test : test.skip;
const needsGpu = cuda.isAvailable() ? "" : ` [skipped: needs a CUDA GPU; ${cuda.unavailableReason()}]`;

gpu(`FORCE_CPU_ONLY_INPUT_TENSORS "no": a device input reaches the worker on the device, same memory${needsGpu}`, async (t) => {
  const config = WORKER_CONFIG(1) + `\nparameters: { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: { string_value: "no" } }\n`;
  const model = WORKER_MODEL.replace("const y = Float32Array.from(x.data() as Float32Array, (v) => v * 2);", "const y = Float32Array.from((x.isCpu() ? x : x.toCpu()).data() as Float32Array, (v) => v * (x.isCpu() ? 2 : -1));");
  const { reg } = await load({ threaded: { config, model } });
  const input = Tensor.from(new Float32Array([1, 2]), { name: "X" }).cuda(0).withName("X");
  const out = await reg.get("threaded").infer({ inputs: [input], outputs: ["Y", "INFO"] });
  t.deepEqual(Array.from(out.outputs[0]!.data() as Float32Array), [-1, -2], "the worker saw a device tensor");
  t.is(info(out)[1], input.dataPtr, "the same device memory");
  await reg.close();
});

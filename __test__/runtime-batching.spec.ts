/**
 * The dynamic batcher (src/runtime/dynamic-batcher.ts) through the model
 * runtime, rule by rule, and InferenceRequest.concat /
 * InferenceResponse.split. The same rules through tritonclient and against
 * real Triton 2.51: runtime-batching-triton.spec.ts.
 *
 * The models here hold each execute() until the test opens its gate, so
 * that requests queue up deterministically behind a busy instance.
 */
import test from "ava";

import { Tensor } from "../src/tensor.js";
import { ServingError } from "../src/runtime/errors.js";
import { ModelError } from "../src/runtime/model-error.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import type { InferInput, InferOutput, ModelVersion } from "../src/runtime/model-version.js";
import { InferenceRequest } from "../src/runtime/request.js";
import { InferenceResponse } from "../src/runtime/response.js";
import { decodeInferRequest, forgetDecodePlans } from "../src/server/codec.js";
import { httpError } from "../src/server/http-status.js";
import { cleanupRepos, makeRepo, setupModelEntry, sleep } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

/**
 * Echoes X as Y per request (Y's first element: the batch's total size);
 * logs each execute()'s requests (the first value of each X) to
 * globalThis.__tbBatches[model]; waits on globalThis.__tbGates[model] (a
 * promise) when set.
 */
const GATED = `
import { InferenceResponse, Tensor } from "tensorbridge";
const g = globalThis as any;
export default class Gated {
  name = "";
  initialize(args: { model_name: string }) { this.name = args.model_name; }
  async execute(requests: any[]) {
    const xs = requests.map((r) => r.getInputTensorByName("X"));
    (g.__tbBatches[this.name] ??= []).push(xs.map((x: any) => Number(x.data()[0])));
    const gate = g.__tbGates[this.name];
    if (gate) await gate;
    let total = 0;
    for (const x of xs) total += x.shape[0];
    return xs.map((x: any) => new InferenceResponse({ outputTensors: { Y: Tensor.from(new Int32Array(x.size).fill(total), { shape: x.shape }) } }));
  }
}`;

const g = globalThis as unknown as { __tbBatches: Record<string, number[][]>; __tbGates: Record<string, Promise<void> | undefined> };
g.__tbBatches ??= {};
g.__tbGates ??= {};

/** Closes model `name`'s gate; the returned function opens it. */
function gate(name: string): () => void {
  let open!: () => void;
  g.__tbGates[name] = new Promise<void>((r) => (open = r));
  return () => {
    g.__tbGates[name] = undefined;
    open();
  };
}

const io = (dims = "[ 1 ]", extra = "") => `
input { name: "X" data_type: TYPE_INT32 dims: ${dims} ${extra} }
output { name: "Y" data_type: TYPE_INT32 dims: ${dims} }`;

/** Loads one gated model with this config tail; returns its version. */
async function load(name: string, tail: string, dims?: string, extra?: string): Promise<{ reg: ModelRegistry; mv: ModelVersion }> {
  const repo = makeRepo({ [name]: { config: `name: "${name}"\n${io(dims, extra)}\n${tail}`, model: GATED } });
  const reg = new ModelRegistry({
    repository: repo,
    observer: {
      requestDone: (e) => (events[e.model] ??= []).push(e.success ? "success" : (e.reason ?? "")),
      executionDone: () => {},
    },
  });
  t_loaded.push(reg);
  const failed = await reg.loadAll();
  if (failed.length > 0) throw new Error(`load failed: ${failed.join(", ")}`);
  return { reg, mv: reg.get(name) };
}
const t_loaded: ModelRegistry[] = [];
/** What the metrics observer heard of each model's requests: "success" or the failure reason. */
const events: Record<string, string[]> = {};
test.after.always(async () => {
  for (const r of t_loaded) await r.close();
});

/** A request of `rows` rows, X's first value `v`. */
function req(v: number, rows = 1, extra: Partial<InferInput> = {}, cols = 1): InferInput {
  return { inputs: [Tensor.from(new Int32Array(rows * cols).fill(v), { shape: [rows, cols], name: "X" })], ...extra };
}

/** Settles a promise into a comparable record. */
async function outcome(p: Promise<InferOutput>): Promise<number | string> {
  try {
    return Number((await p).outputs[0]!.data()[0]);
  } catch (e) {
    return (e as ServingError).code ?? String(e);
  }
}

/** Starts request 0 and waits until the instance runs it (the gate is closed). */
async function busy(mv: ModelVersion, name: string): Promise<{ first: Promise<InferOutput> }> {
  g.__tbBatches[name] = [];
  const first = mv.infer(req(0));
  while (g.__tbBatches[name]!.length === 0) await sleep(2);
  // Boxed: an async function returning the promise itself would wait for it.
  return { first };
}

// ---------------------------------------------------------------- batch forming

test("max_batch_size is the sum of dim 0: requests of 3, 2 and 1 rows under max 4 go as [3], [2, 1]", async (t) => {
  const name = "b_dim0";
  const { mv } = await load(name, "max_batch_size: 4\ndynamic_batching { }");
  const open = gate(name);
  const { first } = await busy(mv, name);
  const rest = [mv.infer(req(3, 3)), mv.infer(req(2, 2)), mv.infer(req(1, 1))];
  open();
  t.deepEqual(await Promise.all([first, ...rest].map(outcome)), [1, 3, 3, 3], "each answer's batch total");
  t.deepEqual(g.__tbBatches[name], [[0], [3], [2, 1]]);
  const st = mv.stats.snapshot();
  t.deepEqual(
    st.batch_stats.map((b) => [b.batch_size, b.compute_infer.count]),
    [
      [1, 1],
      [3, 2],
    ],
    "batch_stats: one entry per total batch size, counting executions",
  );
  t.is(st.execution_count, 3);
  t.is(st.inference_count, 7);
  t.is(st.inference_stats.success.count, 4);
  t.is(st.inference_stats.compute_infer.count, 4, "compute_* count successful requests, as Triton");
  t.is(st.inference_stats.queue.count, 4);
});

test("preferred_batch_size [2] under max 4: five queued requests go 2, 2, 1; without one, 4 then 1 (Triton's default preferred size is max_batch_size)", async (t) => {
  for (const [name, tail, want] of [
    ["b_pref", "max_batch_size: 4\ndynamic_batching { preferred_batch_size: [ 2 ] }", [[0], [1, 2], [3, 4], [5]]],
    ["b_greedy", "max_batch_size: 4\ndynamic_batching { }", [[0], [1, 2, 3, 4], [5]]],
  ] as const) {
    const { mv } = await load(name, tail);
    const open = gate(name);
    const { first } = await busy(mv, name);
    const rest = [1, 2, 3, 4, 5].map((v) => mv.infer(req(v)));
    open();
    await Promise.all([first, ...rest]);
    t.deepEqual(g.__tbBatches[name], want as unknown as number[][], name);
  }
});

test("without dynamic_batching each execute() gets one request, in arrival order", async (t) => {
  const name = "b_none";
  const { mv } = await load(name, "max_batch_size: 4");
  const open = gate(name);
  const { first } = await busy(mv, name);
  const rest = [1, 2, 3].map((v) => mv.infer(req(v)));
  open();
  await Promise.all([first, ...rest]);
  t.deepEqual(g.__tbBatches[name], [[0], [1], [2], [3]]);
});

test("max_batch_size 0 with dynamic_batching: one request per execute(), and the queue policy still applies (as Triton)", async (t) => {
  const name = "b_zero";
  const { mv } = await load(name, "max_batch_size: 0\ndynamic_batching { max_queue_delay_microseconds: 60000000 default_queue_policy { max_queue_size: 1 } }", "[ 1, 1 ]");
  const open = gate(name);
  const { first } = await busy(mv, name);
  const queued = mv.infer(req(1));
  const refused = await mv.infer(req(2)).then(() => undefined, (e: unknown) => (e as ServingError).code);
  t.is(refused, "ERR_QUEUE_FULL");
  open();
  t.deepEqual(await Promise.all([first, queued].map(outcome)), [1, 1]);
  t.deepEqual(g.__tbBatches[name], [[0], [1]], "no batching, and no waiting for the delay");
});

test("max_queue_delay_microseconds: a lone request waits for the batch to fill; a full batch goes at once; an unload sends what waits", async (t) => {
  const name = "b_delay";
  // 60 s: the test would time out if a request waited for it.
  const { reg, mv } = await load(name, "max_batch_size: 4\ndynamic_batching { max_queue_delay_microseconds: 60000000 }");
  g.__tbBatches[name] = [];
  const full = [1, 2, 3, 4].map((v) => mv.infer(req(v)));
  t.deepEqual(await Promise.all(full.map(outcome)), [4, 4, 4, 4], "four requests fill the preferred size (max_batch_size): sent without waiting");
  const lone = mv.infer(req(5));
  await sleep(150);
  t.deepEqual(g.__tbBatches[name], [[1, 2, 3, 4]], "the lone request is still waiting for the delay");
  const second = mv.infer(req(6));
  await sleep(50);
  t.is(g.__tbBatches[name]!.length, 1, "two of four: still waiting");
  await reg.unload(name);
  t.deepEqual(await Promise.all([lone, second].map(outcome)), [2, 2]);
  t.deepEqual(g.__tbBatches[name], [[1, 2, 3, 4], [5, 6]], "the unload sent the waiting requests as one batch");
});

test("requests whose variable dims differ are not batched together (unless allow_ragged_batch); a batch never mixes them", async (t) => {
  for (const [name, extra, want] of [
    ["b_shape", "", [[0], [1], [2], [3, 4]]],
    ["b_ragged", "allow_ragged_batch: true", [[0], [1, 2, 3, 4]]],
  ] as const) {
    const { mv } = await load(name, "max_batch_size: 8\ndynamic_batching { }", "[ -1 ]", extra);
    const open = gate(name);
    const { first } = await busy(mv, name);
    const rest = [mv.infer(req(1, 1, {}, 2)), mv.infer(req(2, 1, {}, 3)), mv.infer(req(3, 1, {}, 2)), mv.infer(req(4, 1, {}, 2))];
    open();
    await Promise.all([first, ...rest]);
    t.deepEqual(g.__tbBatches[name], want as unknown as number[][], name);
  }
});

// ---------------------------------------------------------------- queue policy

test("max_queue_size: a request finding the queue full is refused with ERR_QUEUE_FULL (UNAVAILABLE, HTTP 503) in Triton's words, and stays out of the statistics", async (t) => {
  const name = "q_full";
  const { mv } = await load(name, "max_batch_size: 1\ndynamic_batching { default_queue_policy { max_queue_size: 2 } }");
  const open = gate(name);
  const { first } = await busy(mv, name);
  const queued = [mv.infer(req(1)), mv.infer(req(2))];
  const refused = [mv.infer(req(3, 1, { id: "r3" })), mv.infer(req(4))];
  const errs = await Promise.all(refused.map((p) => p.then(() => undefined, (e: unknown) => e as ServingError)));
  t.is(errs[0]!.code, "ERR_QUEUE_FULL");
  t.is(errs[0]!.tritonCode, "UNAVAILABLE");
  t.is(errs[0]!.message, "[request id: r3] Exceeds maximum queue size");
  t.is(errs[1]!.message, "[request id: <id_unknown>] Exceeds maximum queue size");
  t.is(httpError(errs[0]).status, 503);
  open();
  t.deepEqual(await Promise.all([first, ...queued].map(outcome)), [1, 1, 1]);
  const st = mv.stats.snapshot().inference_stats;
  t.is(st.success.count, 3);
  t.is(st.fail.count, 0, "as Triton: a refused enqueue is not a failed inference");
  t.deepEqual(events[name], ["success", "success", "success"], "nor a failure in the metrics (Triton 2.51's nv_inference_request_failure stays 0)");
});

test("default_timeout_microseconds with REJECT: a queued request that outwaits it fails with ERR_QUEUE_TIMEOUT 'Request timeout expired', even while the instance stays busy", async (t) => {
  const name = "q_reject";
  const { mv } = await load(name, "max_batch_size: 1\ndynamic_batching { default_queue_policy { timeout_action: REJECT default_timeout_microseconds: 50000 } }");
  const open = gate(name);
  const { first } = await busy(mv, name);
  const late = mv.infer(req(1));
  const e = await late.then(() => undefined, (x: unknown) => x as ServingError);
  t.is(e?.code, "ERR_QUEUE_TIMEOUT");
  t.is(e?.tritonCode, "UNAVAILABLE");
  t.is(e?.message, "Request timeout expired");
  t.deepEqual(g.__tbBatches[name], [[0]], "it never reached the model");
  open();
  await first;
  const st = mv.stats.snapshot().inference_stats;
  t.is(st.fail.count, 1, "as Triton: a timed-out request is a failed inference");
  t.is(st.queue.count, 1, "queue time counts successes only");
  t.deepEqual(events[name]!.toSorted(), ["REJECTED", "success"], "the metrics count it REJECTED, as Triton's");
});

test("DELAY: an expired request goes behind the level's requests still in time; allow_timeout_override lets a request shorten (never lengthen) the default", async (t) => {
  const name = "q_delay";
  const { mv } = await load(name, "max_batch_size: 1\ndynamic_batching { default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 30000000 allow_timeout_override: true } }");
  const open = gate(name);
  const { first } = await busy(mv, name);
  const rs = [mv.infer(req(1, 1, { timeoutUs: 20_000 })), mv.infer(req(2)), mv.infer(req(3, 1, { timeoutUs: 60_000_000 }))];
  await sleep(60);
  open();
  await Promise.all([first, ...rs]);
  t.deepEqual(g.__tbBatches[name], [[0], [2], [3], [1]]);
});

test("without allow_timeout_override a request's timeout is ignored; with no default timeout an override does nothing (as Triton)", async (t) => {
  for (const [name, policy] of [
    ["q_nooverride", "timeout_action: REJECT default_timeout_microseconds: 30000000"],
    ["q_nodefault", "timeout_action: REJECT allow_timeout_override: true"],
  ] as const) {
    const { mv } = await load(name, `max_batch_size: 1\ndynamic_batching { default_queue_policy { ${policy} } }`);
    const open = gate(name);
    const { first } = await busy(mv, name);
    const r = mv.infer(req(1, 1, { timeoutUs: 10_000 }));
    await sleep(60);
    open();
    t.deepEqual(await Promise.all([first, r].map(outcome)), [1, 1], name);
  }
});

test("priority_levels: level 1 first, then 2, ...; priority 0 or above the levels is default_priority_level; a level's own policy (max_queue_size) applies to it alone", async (t) => {
  const name = "q_prio";
  const { mv } = await load(name, "max_batch_size: 1\ndynamic_batching { priority_levels: 3 default_priority_level: 2 priority_queue_policy { key: 3 value: { max_queue_size: 1 } } }");
  const open = gate(name);
  const { first } = await busy(mv, name);
  const rs = [
    mv.infer(req(1, 1, { priority: 3 })),
    mv.infer(req(2, 1, { priority: 0 })),
    mv.infer(req(3, 1, { priority: 1 })),
    mv.infer(req(4, 1, { priority: 9 })),
    mv.infer(req(5, 1, { priority: 3 })),
    mv.infer(req(6, 1, { priority: 2 })),
  ];
  const e = await rs[4]!.then(() => undefined, (x: unknown) => x as ServingError);
  t.is(e?.code, "ERR_QUEUE_FULL", "level 3 holds one request");
  open();
  await Promise.all([first, ...rs.filter((_, i) => i !== 4)]);
  t.deepEqual(g.__tbBatches[name], [[0], [3], [2], [4], [6], [1]]);
});

test("a queued request that is cancelled leaves the batcher's queue (CANCELLED) and never reaches the model", async (t) => {
  const name = "q_cancel";
  const { mv } = await load(name, "max_batch_size: 4\ndynamic_batching { priority_levels: 2 default_priority_level: 1 }");
  const open = gate(name);
  const { first } = await busy(mv, name);
  let fire!: () => void;
  const listeners: (() => void)[] = [];
  const cancellation = {
    cancelled: false,
    onCancel(fn: () => void) {
      listeners.push(fn);
      return () => {};
    },
  };
  fire = () => {
    cancellation.cancelled = true;
    for (const l of listeners) l();
  };
  const gone = mv.infer(req(1, 1, { cancellation: cancellation as never, priority: 2 }));
  const kept = mv.infer(req(2));
  fire();
  const e = await gone.then(() => undefined, (x: unknown) => x);
  t.true(e instanceof ModelError && e.code === "CANCELLED");
  open();
  await Promise.all([first, kept]);
  t.deepEqual(g.__tbBatches[name], [[0], [2]]);
});

test("config: Triton's load-time checks of priority levels and preserve_ordering (ERR_CONFIG_INVALID, Triton's words)", async (t) => {
  const cases: [string, string, string][] = [
    ["c_default_level", "dynamic_batching { priority_levels: 2 default_priority_level: 3 }", "default priority level must be in range [1, 2] for c_default_level"],
    ["c_zero_level", "dynamic_batching { priority_levels: 2 }", "default priority level must be in range [1, 2] for c_zero_level"],
    [
      "c_policy_level",
      "dynamic_batching { priority_levels: 2 default_priority_level: 1 priority_queue_policy { key: 5 value: { max_queue_size: 1 } } }",
      "priority queue policy must have priority level in range [1, 2] for c_policy_level",
    ],
    ["c_order_levels", "dynamic_batching { preserve_ordering: true priority_levels: 2 default_priority_level: 1 }", "Only one priority level is allowed when 'preserve_ordering' is true for c_order_levels"],
    [
      "c_order_delay",
      "dynamic_batching { preserve_ordering: true default_queue_policy { timeout_action: DELAY default_timeout_microseconds: 10 } }",
      "Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true for c_order_delay",
    ],
  ];
  const repo = makeRepo(Object.fromEntries(cases.map(([n, tail]) => [n, { config: `name: "${n}"\nmax_batch_size: 4\n${io()}\n${tail}`, model: GATED }])));
  const reg = new ModelRegistry({ repository: repo });
  t_loaded.push(reg);
  t.deepEqual((await reg.loadAll()).toSorted(), cases.map(([n]) => n).toSorted());
  const reasons = new Map((await reg.index()).map((e) => [e.name, e.reason ?? ""]));
  for (const [n, , message] of cases) t.true(reasons.get(n)!.includes(message), `${n}: ${reasons.get(n)}`);
  const err = await reg.load("c_default_level").then(() => undefined, (e: unknown) => e as ServingError);
  t.is(err?.code, "ERR_CONFIG_INVALID");
});

// ---------------------------------------------------------------- transports

const body = (params: object) => new TextEncoder().encode(JSON.stringify({ parameters: params, inputs: [{ name: "X", datatype: "INT32", shape: [1, 1], data: [1] }] }));

test("HTTP: priority and timeout leave the model's parameters for the batcher; sequence keys too; bad values are Triton's INTERNAL 'Unable to parse'", (t) => {
  forgetDecodePlans();
  for (let round = 0; round < 2; round++) {
    // The second round decodes from the kept plan.
    const d = decodeInferRequest(body({ priority: 2, timeout: 5000, sequence_id: "s", sequence_start: true, other: 1 }), undefined);
    t.is(d.input.priority, 2);
    t.is(d.input.timeoutUs, 5000);
    t.deepEqual(d.input.parameters, { other: 1 });
  }
  for (const [params, message] of [
    [{ priority: -1 }, "Unable to parse 'priority': attempt to access JSON non-unsigned-integer as unsigned-integer"],
    [{ priority: "high" }, "Unable to parse 'priority': attempt to access JSON non-unsigned-integer as unsigned-integer"],
    [{ timeout: 1.5 }, "Unable to parse 'timeout': attempt to access JSON non-unsigned-integer as unsigned-integer"],
    [{ sequence_id: true }, "Unable to parse 'sequence_id': attempt to access JSON non-string as string"],
    [{ sequence_end: 1 }, "Unable to parse 'sequence_end': attempt to access JSON non-boolean as boolean"],
  ] as const) {
    const e = t.throws(() => decodeInferRequest(body(params), undefined)) as ServingError;
    t.is(e.code, "ERR_INVALID_REQUEST");
    t.is(e.message, message);
    t.is(httpError(e).status, 500, "Triton answers these 500 (TritonJson's INTERNAL)");
  }
});

// ---------------------------------------------------------------- concat / split

const reqOf = (...inputs: Tensor[]) => new InferenceRequest({ inputs });

test("InferenceRequest.concat: one batched tensor along dim 0; adjacent views of one buffer without a copy, others with one", (t) => {
  const buf = new Float32Array([1, 2, 3, 4, 5, 6]);
  const a = Tensor.from(buf.subarray(0, 2), { shape: [1, 2], name: "X" });
  const b = Tensor.from(buf.subarray(2, 6), { shape: [2, 2], name: "X" });
  const joined = InferenceRequest.concat([reqOf(a), reqOf(b)], "X");
  t.deepEqual(joined.shape, [3, 2]);
  t.is(joined.name, "X");
  t.is(joined.dtype, "FP32");
  t.is(joined.data().buffer, buf.buffer, "adjacent: a view over the same memory");
  t.deepEqual([...joined.data()], [1, 2, 3, 4, 5, 6]);
  const c = Tensor.from(new Float32Array([7, 8]), { shape: [1, 2], name: "X" });
  const copied = InferenceRequest.concat([reqOf(b), reqOf(c)], "X");
  t.not(copied.data().buffer, buf.buffer);
  t.deepEqual([...copied.data()], [3, 4, 5, 6, 7, 8]);
  // FP16 keeps its dtype (its view is a Uint16Array).
  const h = Tensor.from(new Uint16Array([0x3c00]), { shape: [1], dtype: "FP16", name: "H" });
  t.is(InferenceRequest.concat([reqOf(h), reqOf(h)], "H").dtype, "FP16");
  const s = InferenceRequest.concat([reqOf(Tensor.fromBytes(["a"], { name: "S" })), reqOf(Tensor.fromBytes(["b", "c"], { name: "S" }))], "S");
  t.deepEqual(s.shape, [3]);
  t.deepEqual(s.bytes().map((x) => new TextDecoder().decode(x)), ["a", "b", "c"]);
});

const x = (v: ArrayBufferView, shape: number[]) => Tensor.from(v, { shape, name: "X" });

test("InferenceRequest.concat refuses with ERR_BATCH_MISMATCH: another dtype, another shape after dim 0, a missing input, a scalar, no requests", (t) => {
  const cases: [InferenceRequest[], RegExp][] = [
    [[reqOf(x(new Float32Array(2), [1, 2])), reqOf(x(new Int32Array(2), [1, 2]))], /request 1 is INT32, but of request 0 FP32/],
    [[reqOf(x(new Float32Array(2), [1, 2])), reqOf(x(new Float32Array(3), [1, 3]))], /shape \[1,3\], but of request 0 \[1,2\]/],
    [[reqOf(x(new Float32Array(2), [1, 2])), reqOf()], /request 1 has no input 'X'/],
    [[reqOf(x(new Float32Array(1), []))], /scalar/],
    [[], /no requests/],
  ];
  for (const [rs, message] of cases) {
    const e = t.throws(() => InferenceRequest.concat(rs, "X")) as ServingError;
    t.is(e.code, "ERR_BATCH_MISMATCH");
    t.is(e.tritonCode, "INVALID_ARG");
    t.regex(e.message, message);
  }
});

test("InferenceResponse.split: per-request outputs as views of the batched ones (no copy), by each request's dim 0", (t) => {
  const rs = [reqOf(Tensor.from(new Int32Array(2), { shape: [2, 1], name: "X" })), reqOf(Tensor.from(new Int32Array(1), { shape: [1, 1], name: "X" }))];
  const y = new Float32Array([10, 11, 20, 21, 30, 31]);
  const parts = InferenceResponse.split({ Y: Tensor.from(y, { shape: [3, 2] }), S: Tensor.fromBytes(["p", "q", "r"], { shape: [3] }) }, rs);
  t.is(parts.length, 2);
  const y0 = parts[0]!.outputTensorByName("Y")!;
  const y1 = parts[1]!.outputTensorByName("Y")!;
  t.deepEqual(y0.shape, [2, 2]);
  t.deepEqual([...y0.data()], [10, 11, 20, 21]);
  t.deepEqual(y1.shape, [1, 2]);
  t.deepEqual([...y1.data()], [30, 31]);
  t.is(y0.data().buffer, y.buffer, "a view, not a copy");
  t.is(y1.data().buffer, y.buffer);
  t.deepEqual(parts[1]!.outputTensorByName("S")!.bytes().map((b) => new TextDecoder().decode(b)), ["r"]);
  // An array of named tensors works as a record does.
  t.deepEqual(InferenceResponse.split([Tensor.from(y, { shape: [3, 2], name: "Y" })], rs)[1]!.outputTensorByName("Y")!.shape, [1, 2]);
});

test("InferenceResponse.split refuses with ERR_BATCH_MISMATCH: dim 0 not the requests' total, an unnamed output, a request without inputs", (t) => {
  const rs = [reqOf(Tensor.from(new Int32Array(2), { shape: [2, 1], name: "X" }))];
  const cases: [() => unknown, RegExp][] = [
    [() => InferenceResponse.split({ Y: Tensor.from(new Float32Array(3), { shape: [3] }) }, rs), /dim 0 must be the requests' total batch size 2/],
    [() => InferenceResponse.split([Tensor.from(new Float32Array(2), { shape: [2] })], rs), /output 0 has no name/],
    [() => InferenceResponse.split({ Y: Tensor.from(new Float32Array(2), { shape: [2] }) }, [reqOf()]), /request 0 has no input/],
  ];
  for (const [f, message] of cases) {
    const e = t.throws(f) as ServingError;
    t.is(e.code, "ERR_BATCH_MISMATCH");
    t.regex(e.message, message);
  }
});

test("a batched model in a few lines: concat, compute once, split (the README's example), served through the dynamic batcher", async (t) => {
  const name = "b_concat";
  const repo = makeRepo({
    [name]: {
      config: `name: "${name}"\nmax_batch_size: 8\n${io("[ 2 ]")}\ndynamic_batching { max_queue_delay_microseconds: 100000 }`,
      model: `
import { InferenceRequest, InferenceResponse, Tensor } from "tensorbridge";
export default class Doubler {
  execute(requests: InferenceRequest[]) {
    const x = InferenceRequest.concat(requests, "X");
    const y = (x.data() as Int32Array).map((v) => v * 2);
    return InferenceResponse.split({ Y: Tensor.from(y, { shape: x.shape }) }, requests);
  }
}`,
    },
  });
  const reg = new ModelRegistry({ repository: repo });
  t_loaded.push(reg);
  await reg.loadAll();
  const mv = reg.get(name);
  const sizes = [1, 3, 2];
  const outs = await Promise.all(
    sizes.map((rows, i) => mv.infer({ inputs: [Tensor.from(new Int32Array(rows * 2).fill(i + 1), { shape: [rows, 2], name: "X" })] })),
  );
  outs.forEach((o, i) => {
    t.deepEqual(o.outputs[0]!.shape, [sizes[i], 2]);
    t.true([...o.outputs[0]!.data()].every((v) => v === 2 * (i + 1)));
  });
  t.deepEqual(mv.stats.snapshot().batch_stats.map((b) => b.batch_size), [6], "one execute() of 6 rows");
});

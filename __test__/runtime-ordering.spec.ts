/**
 * `dynamic_batching { preserve_ordering: true }` (src/runtime/response-order.ts):
 * with two instances, a request whose execute() finishes first is still
 * answered after every request that left the queue before it; without the
 * flag it is answered at once. Unary and streamed requests, a decoupled
 * model's responses (each request's own order kept), error responses and
 * failed execute() calls (they keep their place), cancellation (a queued
 * request is answered at once, a running one holds its place until the
 * model ends it), BLS calls, thread instances and HTTP.
 *
 * The in-thread models wait on one gate per request (its X value), opened
 * by the test, so which request finishes first is the test's choice, not a
 * race; the statistics say when a request finished in the model (they are
 * recorded then, the answer may be held). The thread-instance test, whose
 * models cannot see the gates, uses wide timing gaps instead. The same
 * behaviour through tritonclient, against Triton 2.51: runtime-ordering-triton.spec.ts.
 */
import test from "ava";

import { Cancellation } from "../src/runtime/cancel.js";
import { ANSWER_COMPLETE, ANSWER_ERROR, ANSWER_RESPONSE, ResponseOrder, type AnswerKind } from "../src/runtime/response-order.js";
import type { ModelError } from "../src/runtime/model-error.js";
import type { InferInput, InferOutput, ModelVersion, StreamCallbacks } from "../src/runtime/model-version.js";
import { Tensor } from "../src/tensor.js";
import { cleanupModels, loadModels, type FixtureModel } from "./fixtures/runtime-decoupled.js";
import { cleanupRepos, http, makeRepo, sleep, startTestServer } from "./server-helpers.js";

test.after.always(() => {
  cleanupModels();
  cleanupRepos();
});

/** What the in-thread models share with the test. */
interface OrderHarness {
  /** The gate of each request, by X value (made on first use by either side). */
  gates: Map<number, { wait: Promise<void>; open: () => void }>;
  /** X values whose execute() (or request, for a decoupled model) started. */
  started: number[];
  /** BLS answers in the order they reached the caller model (the callee's X values). */
  bls: number[];
}

declare global {
  var __tbOrder: OrderHarness | undefined;
}

const h = (): OrderHarness => (globalThis.__tbOrder ??= { gates: new Map(), started: [], bls: [] });

function gateOf(v: number): { wait: Promise<void>; open: () => void } {
  let g = h().gates.get(v);
  if (g === undefined) {
    let open!: () => void;
    const wait = new Promise<void>((r) => (open = r));
    g = { wait, open };
    h().gates.set(v, g);
  }
  return g;
}

/** Forgets the gates and starts of earlier tests (they reuse X values). */
function fresh(): void {
  h().gates.clear();
  h().started = [];
  h().bls = [];
}

/** Opens request `v`'s gate. */
const open = (v: number): void => gateOf(v).open();

const GATE_SOURCE = `
const h = () => (globalThis.__tbOrder ??= { gates: new Map(), started: [], bls: [] });
function gateOf(v: number) {
  let g = h().gates.get(v);
  if (g === undefined) {
    let open!: () => void;
    const wait = new Promise<void>((r) => (open = r));
    g = { wait, open };
    h().gates.set(v, g);
  }
  return g;
}`;

const IO = `
max_batch_size: 1
input { name: "X" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] }
instance_group [ { count: 2 kind: KIND_CPU } ]`;

const batching = (ordered: boolean) => `dynamic_batching { preserve_ordering: ${ordered} }`;

/**
 * Y = X, once X's gate opens. The request parameter `mode`: `error` answers
 * with an error response (INVALID_ARG), `throw` makes execute() throw,
 * `nogate` answers at once.
 */
const UNARY = (ordered: boolean, extra = ""): FixtureModel => ({
  config: `${IO}\n${batching(ordered)}\n${extra}`,
  model: `
import { InferenceResponse, ModelError, Tensor, type InferenceRequest } from "tensorbridge";
${GATE_SOURCE}
export default class Gated {
  async execute(requests: InferenceRequest[]) {
    const out: InferenceResponse[] = [];
    for (const r of requests) {
      const x = r.getInputTensorByName("X")!;
      const v = (x.data() as Int32Array)[0]!;
      h().started.push(v);
      const mode = String(r.parameters["mode"] ?? "");
      if (mode !== "nogate") await gateOf(v).wait;
      if (mode === "throw") throw new Error("request " + v + " failed");
      out.push(mode === "error" ? new InferenceResponse({ error: new ModelError("request " + v + " is bad", ModelError.INVALID_ARG) }) : new InferenceResponse({ outputTensors: { Y: x } }));
    }
    return out;
  }
}`,
});

/**
 * Decoupled: execute() returns at once; each request then sends Y = 10X,
 * and (once X's gate opens) Y = 10X + 1 with the final flag; with `mode:
 * flag`, 10X + 1 goes without it and the final flag follows alone; with
 * `mode: cancel`, after 10X it waits until the request is cancelled (10 s
 * at most), then sends the final flag alone.
 */
const DECOUPLED = (ordered: boolean): FixtureModel => ({
  config: `${IO}\nmodel_transaction_policy { decoupled: true }\n${batching(ordered)}`,
  model: `
import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
${GATE_SOURCE}
const y = (v: number) => new InferenceResponse({ outputTensors: { Y: Tensor.from(new Int32Array([v]), { shape: [1, 1] }) } });
async function answer(r: InferenceRequest, v: number) {
  const mode = String(r.parameters["mode"] ?? "");
  const s = r.getResponseSender();
  s.send(y(10 * v));
  if (mode === "cancel") {
    for (let i = 0; i < 2000 && !r.isCancelled(); i++) await new Promise((res) => setTimeout(res, 5));
    // (After an unload the request is already ended: the send is refused.)
    try { s.send(undefined, { final: true }); } catch {}
    return;
  }
  await gateOf(v).wait;
  s.send(y(10 * v + 1), { final: mode !== "flag" });
  if (mode === "flag") s.send(undefined, { final: true });
}
export default class Streamer {
  execute(requests: InferenceRequest[]) {
    for (const r of requests) {
      const v = (r.getInputTensorByName("X")!.data() as Int32Array)[0]!;
      h().started.push(v);
      void answer(r, v);
    }
  }
}`,
});

const x = (v: number): Tensor => Tensor.from(new Int32Array([v]), { shape: [1, 1], name: "X" });
const req = (v: number, extra: Partial<InferInput> = {}): InferInput => ({ inputs: [x(v)], id: `r${v}`, ...extra });
const yOf = (o: InferOutput): number => (o.outputs[0]!.data() as Int32Array)[0]!;

/** Waits until `cond` holds (bounded: a broken runtime fails the test instead of hanging it). */
async function until(cond: () => boolean, what: string): Promise<void> {
  for (let i = 0; i < 3000 && !cond(); i++) await sleep(5);
  if (!cond()) throw new Error(`timed out waiting for ${what}`);
}

const finished = (mv: ModelVersion): number => {
  const s = mv.stats.snapshot().inference_stats;
  return s.success.count + s.fail.count;
};

/** Unary requests' answers in the order they came: "r<v>=<y>" or "r<v>!<code>". */
function answers(): { seen: string[]; track: (v: number, p: Promise<InferOutput>) => Promise<void> } {
  const seen: string[] = [];
  const track = (v: number, p: Promise<InferOutput>) =>
    p.then(
      (o) => void seen.push(`r${v}=${yOf(o)}`),
      (e: unknown) => void seen.push(`r${v}!${(e as ModelError).code}`),
    );
  return { seen, track };
}

/** A streamed request's events, into one shared log: "r<v>:<y>", "r<v>!<code>", "r<v>:final". */
function sinkFor(v: number, log: string[]): StreamCallbacks {
  return {
    response: (o, final) => log.push(`r${v}:${yOf(o)}${final ? " final" : ""}`),
    error: (e, final) => log.push(`r${v}!${(e as ModelError).code}${final ? " final" : ""}`),
    complete: () => log.push(`r${v}:final`),
  };
}

/** Starts requests 0 and 1 (in that order) and waits until both run, one per instance. */
async function both(mv: ModelVersion, base: number, run: (v: number) => void): Promise<void> {
  fresh();
  run(base);
  await until(() => h().started.includes(base), `request ${base} to start`);
  run(base + 1);
  await until(() => h().started.includes(base + 1), `request ${base + 1} to start`);
  void mv;
}

for (const ordered of [true, false]) {
  test.serial(`unary, two instances, the second request finishes first: answered ${ordered ? "in request order (preserve_ordering)" : "as they finish (no preserve_ordering)"}`, async (t) => {
    const { reg } = await loadModels({ m: UNARY(ordered) });
    const mv = reg.get("m");
    const { seen, track } = answers();
    const done: Promise<void>[] = [];
    await both(mv, 100, (v) => done.push(track(v, mv.infer(req(v)))));
    open(101);
    await until(() => finished(mv) === 1, "request 101 to finish in the model");
    if (!ordered) await until(() => seen.length === 1, "request 101's answer");
    // Time for a held answer to come out if it were not held.
    await sleep(50);
    t.deepEqual(seen, ordered ? [] : ["r101=101"], ordered ? "request 101 finished, but its answer waits for request 100" : "request 101 is answered at once");
    open(100);
    await Promise.all(done);
    t.deepEqual(seen, ordered ? ["r100=100", "r101=101"] : ["r101=101", "r100=100"]);
    t.is(mv.stats.snapshot().inference_stats.success.count, 2);
    await reg.close();
  });

  test.serial(`decoupled, streamed: ${ordered ? "a later request's responses wait, in their order, for the earlier request's final flag" : "responses interleave as sent"}`, async (t) => {
    const { reg } = await loadModels({ d: DECOUPLED(ordered) });
    const mv = reg.get("d");
    const log: string[] = [];
    await both(mv, 200, (v) => mv.submitStream(req(v, v === 201 ? { parameters: { mode: "flag" } } : {}), sinkFor(v, log)));
    open(201);
    await until(() => finished(mv) === 1, "request 201 to finish in the model");
    await sleep(50);
    t.deepEqual(log, ordered ? ["r200:2000"] : ["r200:2000", "r201:2010", "r201:2011", "r201:final"], "request 200's first response went out at once either way");
    open(200);
    await until(() => log.length === 5, "every response");
    t.deepEqual(log, ordered ? ["r200:2000", "r200:2001 final", "r201:2010", "r201:2011", "r201:final"] : ["r200:2000", "r201:2010", "r201:2011", "r201:final", "r200:2001 final"]);
    await reg.close();
  });
}

test.serial("preserve_ordering: an error response and a failed execute() keep their places; requests answered before them wait for them", async (t) => {
  const { reg } = await loadModels({ m: UNARY(true) });
  const mv = reg.get("m");
  const { seen, track } = answers();
  const done: Promise<void>[] = [];
  // 300 runs until its gate opens; 301 (an error response) and then 302 (execute() throws) take the other instance in turn.
  await both(mv, 300, (v) => done.push(track(v, mv.infer(req(v, v === 301 ? { parameters: { mode: "error" } } : {})))));
  open(301);
  await until(() => finished(mv) === 1, "request 301 to finish");
  done.push(track(302, mv.infer(req(302, { parameters: { mode: "throw" } }))));
  open(302);
  await until(() => finished(mv) === 2, "request 302 to finish");
  done.push(track(303, mv.infer(req(303, { parameters: { mode: "nogate" } }))));
  await until(() => finished(mv) === 3, "request 303 to finish");
  await sleep(50);
  t.deepEqual(seen, [], "three requests finished, all held behind request 300");
  open(300);
  await Promise.all(done);
  t.deepEqual(seen, ["r300=300", "r301!INVALID_ARG", "r302!INTERNAL", "r303=303"]);
  await reg.close();
});

test.serial("preserve_ordering, streamed: an error keeps its place among the responses", async (t) => {
  const { reg } = await loadModels({ m: UNARY(true) });
  const mv = reg.get("m");
  const log: string[] = [];
  await both(mv, 400, (v) => mv.submitStream(req(v, v === 401 ? { parameters: { mode: "error" } } : {}), sinkFor(v, log)));
  open(401);
  await until(() => finished(mv) === 1, "request 401 to finish");
  mv.submitStream(req(402, { parameters: { mode: "nogate" } }), sinkFor(402, log));
  await until(() => finished(mv) === 2, "request 402 to finish");
  await sleep(50);
  t.deepEqual(log, []);
  open(400);
  await until(() => log.length === 3, "every answer");
  t.deepEqual(log, ["r400:400 final", "r401!INVALID_ARG final", "r402:402 final"]);
  await reg.close();
});

test.serial("preserve_ordering: a request cancelled while queued is answered at once: it holds no place", async (t) => {
  const { reg } = await loadModels({ m: UNARY(true) });
  const mv = reg.get("m");
  const { seen, track } = answers();
  const c = new Cancellation();
  const done: Promise<void>[] = [];
  // 500 and 501 keep both instances; 502 queues behind them.
  await both(mv, 500, (v) => done.push(track(v, mv.infer(req(v)))));
  done.push(track(502, mv.infer(req(502, { cancellation: c }))));
  c.cancel();
  await until(() => seen.length === 1, "the cancelled request's answer");
  t.deepEqual(seen, ["r502!CANCELLED"], "answered although 500 and 501, which left the queue before it, are not");
  open(501);
  await until(() => finished(mv) === 2, "request 501 to finish (the cancelled one counts as failed)");
  await sleep(50);
  t.deepEqual(seen, ["r502!CANCELLED"], "501 waits for 500");
  open(500);
  await Promise.all(done);
  t.deepEqual(seen, ["r502!CANCELLED", "r500=500", "r501=501"]);
  await reg.close();
});

test.serial("preserve_ordering, decoupled: a request cancelled while running holds its place until the model ends it, then the answers behind it follow", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED(true) });
  const mv = reg.get("d");
  const log: string[] = [];
  const c = new Cancellation();
  // 510 sends one response, then waits for its cancel; 511 finishes first.
  await both(mv, 510, (v) => mv.submitStream(req(v, v === 510 ? { cancellation: c, parameters: { mode: "cancel" } } : {}), sinkFor(v, log)));
  open(511);
  await until(() => finished(mv) === 1, "request 511 to finish");
  await sleep(50);
  t.deepEqual(log, ["r510:5100"]);
  c.cancel();
  await until(() => log.length === 4, "every answer");
  t.deepEqual(log, ["r510:5100", "r510!CANCELLED final", "r511:5110", "r511:5111 final"]);
  // Nothing is left holding: a new request is answered at once.
  const after: string[] = [];
  mv.submitStream(req(512), sinkFor(512, after));
  open(512);
  await until(() => after.length === 2, "request 512");
  t.deepEqual(after, ["r512:5120", "r512:5121 final"]);
  await reg.close();
});

test.serial("preserve_ordering: a unary request cancelled while running gets the model's answer in its turn, and does not block the next", async (t) => {
  const { reg } = await loadModels({ m: UNARY(true) });
  const mv = reg.get("m");
  const { seen, track } = answers();
  const c = new Cancellation();
  const done: Promise<void>[] = [];
  await both(mv, 600, (v) => done.push(track(v, mv.infer(req(v, v === 600 ? { cancellation: c } : {})))));
  open(601);
  await until(() => finished(mv) === 1, "request 601 to finish");
  c.cancel();
  await sleep(50);
  t.deepEqual(seen, [], "cancelled, 600 still holds its place until execute() returns");
  open(600);
  await Promise.all(done);
  t.deepEqual(seen, ["r600=600", "r601=601"]);
  await reg.close();
});

test.serial("preserve_ordering: an unload ends a request that never sent its final flag, and the answers held behind it go out", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED(true) });
  const mv = reg.get("d");
  const log: string[] = [];
  // 700 would wait for a cancel that never comes.
  await both(mv, 700, (v) => mv.submitStream(req(v, v === 700 ? { parameters: { mode: "cancel" } } : {}), sinkFor(v, log)));
  open(701);
  await until(() => finished(mv) === 1, "request 701 to finish");
  await sleep(50);
  t.deepEqual(log, ["r700:7000"]);
  await reg.close();
  t.deepEqual(log, ["r700:7000", "r700!UNAVAILABLE final", "r701:7010", "r701:7011 final"]);
});

/** A caller: per request, BLS calls to model `target` with X = each of its values, all at once; logs each answer as it comes. */
const CALLER = `
import { InferenceRequest, InferenceResponse, Tensor } from "tensorbridge";
const h = () => (globalThis.__tbOrder ??= { gates: new Map(), started: [], bls: [] });
export default class Caller {
  async execute(requests: InferenceRequest[]) {
    const out: InferenceResponse[] = [];
    for (const r of requests) {
      const values = Array.from(r.getInputTensorByName("X")!.data() as Int32Array);
      await Promise.all(values.map(async (v) => {
        const resp = await new InferenceRequest({ modelName: String(r.parameters["target"]), inputs: [Tensor.from(new Int32Array([v]), { name: "X", shape: [1, 1] })], requestedOutputNames: ["Y"] }).exec();
        h().bls.push(resp.hasError() ? -1 : (resp.outputTensors[0]!.data() as Int32Array)[0]!);
      }));
      out.push(new InferenceResponse({ outputTensors: { Y: Tensor.from(new Int32Array([values.length]), { shape: [1, 1] }) } }));
    }
    return out;
  }
}`;

for (const ordered of [true, false]) {
  test.serial(`BLS calls: ${ordered ? "answered in the order they were made (preserve_ordering)" : "answered as they finish"}`, async (t) => {
    const { reg } = await loadModels({
      m: UNARY(ordered),
      caller: { config: `max_batch_size: 0\ninput { name: "X" data_type: TYPE_INT32 dims: [ 1, 2 ] }\noutput { name: "Y" data_type: TYPE_INT32 dims: [ 1, 1 ] }`, model: CALLER },
    });
    const mv = reg.get("m");
    fresh();
    const call = reg.get("caller").infer({ inputs: [Tensor.from(new Int32Array([800, 801]), { name: "X", shape: [1, 2] })], parameters: { target: "m" } });
    await until(() => h().started.length === 2, "both BLS calls to run");
    open(801);
    await until(() => finished(mv) === 1, "call 801 to finish");
    if (!ordered) await until(() => h().bls.length === 1, "call 801's answer");
    await sleep(50);
    t.deepEqual(h().bls, ordered ? [] : [801]);
    open(800);
    await call;
    t.deepEqual(h().bls, ordered ? [800, 801] : [801, 800]);
    await reg.close();
  });
}

/** A JSON inference request with X = v. */
const httpBody = (v: number) => ({ id: `r${v}`, inputs: [{ name: "X", shape: [1, 1], datatype: "INT32", data: [v] }] });

test.serial("HTTP: the second request's answer is not written before the first's", async (t) => {
  const repo = makeRepo({ m: { config: `name: "m"\n${UNARY(true).config}`, model: UNARY(true).model } });
  const server = await startTestServer(repo);
  try {
    const mv = server.registry.get("m");
    const got: number[] = [];
    const ask = (v: number) => http(server, "POST", "/v2/models/m/infer", httpBody(v)).then((a) => (got.push(v), a));
    fresh();
    const a = ask(900);
    await until(() => h().started.includes(900), "request 900 to run");
    const b = ask(901);
    await until(() => h().started.includes(901), "request 901 to run");
    open(901);
    await until(() => finished(mv) === 1, "request 901 to finish");
    await sleep(200);
    t.deepEqual(got, [], "901 finished in the model; its answer waits for 900");
    open(900);
    const [ra, rb] = await Promise.all([a, b]);
    t.is(ra.status, 200);
    t.is(rb.status, 200);
    t.deepEqual([ra.json.outputs[0].data, rb.json.outputs[0].data], [[900], [901]]);
  } finally {
    await server.close();
  }
});

/** Thread instances: Y = X after sleeping X ms (the models cannot see the test's gates). */
const SLEEPER = (ordered: boolean): FixtureModel => ({
  config: `${IO}\n${batching(ordered)}\nparameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`,
  model: `
import { InferenceResponse, type InferenceRequest } from "tensorbridge";
export default class Sleeper {
  async execute(requests: InferenceRequest[]) {
    const x = requests[0]!.getInputTensorByName("X")!;
    await new Promise((r) => setTimeout(r, (x.data() as Int32Array)[0]!));
    return [new InferenceResponse({ outputTensors: { Y: x } })];
  }
}`,
});

for (const ordered of [true, false]) {
  test.serial(`thread instances: a 2.5 s request, then a 0 s one 0.5 s later: answered ${ordered ? "in request order" : "fast one first"}`, async (t) => {
    const { reg } = await loadModels({ s: SLEEPER(ordered) });
    const mv = reg.get("s");
    const { seen, track } = answers();
    // Wide gaps: the machine may be loaded, so the fast one must be far ahead of the slow one.
    const slow = track(2500, mv.infer(req(2500)));
    await sleep(500);
    const fast = track(0, mv.infer(req(0)));
    await Promise.all([slow, fast]);
    t.deepEqual(seen, ordered ? ["r2500=2500", "r0=0"] : ["r0=0", "r2500=2500"]);
    await reg.close();
  });
}

// ---------------------------------------------------------------- ResponseOrder alone

const KINDS = ["response", "error", "complete"];

test("ResponseOrder: answers out in slot order; a later slot's answers wait, in their order, and go when every earlier slot ended", (t) => {
  const out: string[] = [];
  const order = new ResponseOrder<string>((owner, kind: AnswerKind, value, final) => out.push(`${owner} ${KINDS[kind]} ${String(value)}${final ? " final" : ""}`));
  const [a, b, c] = [order.open("a"), order.open("b"), order.open("c")];
  order.send(c, ANSWER_RESPONSE, 1, false);
  order.send(b, ANSWER_ERROR, "bad", true);
  order.send(a, ANSWER_RESPONSE, 1, false);
  t.deepEqual(out, ["a response 1"], "the front goes out at once; b and c wait");
  order.send(c, ANSWER_COMPLETE, undefined, true);
  order.send(a, ANSWER_RESPONSE, 2, true);
  t.deepEqual(out, ["a response 1", "a response 2 final", "b error bad final", "c response 1", "c complete undefined final"]);
  const d = order.open("d");
  order.send(d, ANSWER_RESPONSE, 1, true);
  t.is(out.at(-1), "d response 1 final", "nothing left holding: the next slot goes out at once");
});

test("ResponseOrder: an answer sent from inside a callback keeps the order (the callback's own request's next answer, and a later slot's)", (t) => {
  const out: string[] = [];
  let reenter: (() => void) | undefined;
  // The callback's side effects run before it writes its own answer (as a transport's might).
  const order = new ResponseOrder<string>((owner, _kind, value, final) => {
    const r = reenter;
    reenter = undefined;
    r?.();
    out.push(`${owner}${String(value)}${final ? "!" : ""}`);
  });
  const [a, b] = [order.open("a"), order.open("b")];
  // a's first answer makes b answer, then a's last: both wait until a's first is out.
  reenter = () => {
    order.send(b, ANSWER_RESPONSE, 1, true);
    order.send(a, ANSWER_RESPONSE, 2, true);
  };
  order.send(a, ANSWER_RESPONSE, 1, false);
  t.deepEqual(out, ["a1", "a2!", "b1!"]);
});

test("ResponseOrder: a callback that throws leaves no slot stuck", (t) => {
  const out: string[] = [];
  const order = new ResponseOrder<string>((owner, _kind, value) => {
    if (value === "boom") throw new Error("callback failed");
    out.push(`${owner}${String(value)}`);
  });
  const [a, b] = [order.open("a"), order.open("b")];
  t.throws(() => order.send(a, ANSWER_RESPONSE, "boom", true), { message: "callback failed" });
  order.send(b, ANSWER_RESPONSE, 1, true);
  t.deepEqual(out, ["b1"], "b is the front once a's final answer went, thrown or not");
});

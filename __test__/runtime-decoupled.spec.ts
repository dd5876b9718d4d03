/**
 * Decoupled models in the runtime (`model_transaction_policy { decoupled:
 * true }`): responses through `request.getResponseSender()`, zero or many
 * per request, exactly one final flag; errors mid-stream and from
 * execute(); a dropped sender; statistics; unload with open requests; a
 * model that is not decoupled on the streaming path and with a sender; and
 * all of it with the instance in a worker thread.
 */
import { threadId } from "node:worker_threads";

import test from "ava";

import { ServingError } from "../src/runtime/errors.js";
import { ModelError } from "../src/runtime/model-error.js";
import { InferenceRequest } from "../src/runtime/request.js";
import { InferenceResponseSender } from "../src/runtime/response-sender.js";
import { Tensor } from "../src/tensor.js";
import { DECOUPLED, IN, PLAIN, THREADED, cleanupModels, closeGate, harness, loadModels, stream, tick, type Event } from "./fixtures/runtime-decoupled.js";

test.after.always(() => cleanupModels());

/** The events, with errors as `code: message` (and their finality), for deepEqual. */
const show = (events: Event[]) =>
  events.map((e) => (e.kind === "response" ? `response ${e.out.join(",")}${e.final ? " final" : ""}` : e.kind === "error" ? `error ${e.err.code} ${e.final ? "final" : "open"}` : "complete"));

test("a decoupled model streams its responses, then the final flag alone; the sink hears nothing after it", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const mv = reg.get("d");
  t.true(mv.decoupled);
  const s = stream(mv, { inputs: [IN(4, 5, 6)], id: "r1" });
  const events = await s.ended;
  t.deepEqual(show(events), ["response 4", "response 5", "response 6", "complete"]);
  // The id travels with each response.
  t.is(s.events.length, 4);
  const a = stream(mv, { inputs: [IN(7, 8)], id: "r2", parameters: { async: true } });
  t.deepEqual(show(await a.ended), ["response 7", "response 8", "complete"], "sent from a timer after execute() returned");
  await tick(20);
  t.deepEqual(s.late, []);
  t.deepEqual(a.late, []);
  await reg.close();
});

test("the final flag may ride on the last response; zero responses is the final flag alone", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const mv = reg.get("d");
  t.deepEqual(show(await stream(mv, { inputs: [IN(1, 2, 3)], parameters: { final: "last" } }).ended), ["response 1", "response 2", "response 3 final"]);
  t.deepEqual(show(await stream(mv, { inputs: [IN(1)], parameters: { mode: "zero" } }).ended), ["complete"]);
  t.deepEqual(show(await stream(mv, { inputs: [IN()] }).ended), ["complete"], "an empty IN streams nothing");
  await reg.close();
});

test("send() after the final flag throws ERR_RESPONSE_COMPLETE with Triton's words, and nothing reaches the sink", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const h = harness();
  const s = stream(reg.get("d"), { inputs: [IN(1)], id: "twice", parameters: { mode: "twice" } });
  t.deepEqual(show(await s.ended), ["complete"]);
  const e = h.thrown.get("twice");
  t.true(e instanceof ServingError);
  t.is((e as ServingError).code, "ERR_RESPONSE_COMPLETE");
  t.regex((e as Error).message, /^Unable to send response\. Response sender has been closed .*request 'twice'/);
  await tick(10);
  t.deepEqual(s.late, []);
  await reg.close();
});

test("send() misuse: no response without the final flag", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const h = harness();
  const s = stream(reg.get("d"), { inputs: [IN(1)], id: "misuse", parameters: { mode: "hold" } });
  await tick(10);
  const sender = h.senders.get("misuse")!;
  t.true(sender instanceof InferenceResponseSender);
  t.false(sender.isClosed());
  const e = t.throws(() => sender.send(), { instanceOf: ServingError });
  t.is(e?.message, "Inference Response object must be provided when the response flags is set to zero.");
  t.is(e?.code, "ERR_RESPONSE_SENDER");
  t.false(s.done);
  sender.send(undefined, { final: true });
  t.true(sender.isClosed());
  t.deepEqual(show(await s.ended), ["complete"]);
  await reg.close();
});

test("an error response mid-stream (the model's, or one that does not fit the config) keeps the stream open; the request counts as failed", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const mv = reg.get("d");
  const s = stream(mv, { inputs: [IN(1, 2)], parameters: { mode: "error-mid" } });
  const events = await s.ended;
  t.deepEqual(show(events), ["response 1", "error INVALID_ARG open", "error ERR_MODEL_EXECUTE open", "response 2", "complete"]);
  const [, modelErr, badErr] = events as [Event, Extract<Event, { kind: "error" }>, Extract<Event, { kind: "error" }>];
  t.true(modelErr.err instanceof ModelError);
  t.is(modelErr.err.message, "element 1 is bad");
  t.regex(badErr.err.message, /output 'OUT' has data type FP32, but the config says TYPE_INT32/);
  const st = mv.stats.snapshot();
  t.is(st.inference_stats.fail.count, 1);
  t.is(st.inference_stats.success.count, 0);
  t.deepEqual(Object.keys(st.response_stats), ["0", "1", "2", "3", "4"]);
  t.is(st.response_stats["0"]!.success.count, 1);
  t.is(st.response_stats["1"]!.fail.count, 1);
  t.is(st.response_stats["2"]!.fail.count, 1);
  t.is(st.response_stats["3"]!.success.count, 1);
  t.is(st.response_stats["4"]!.empty_response.count, 1);
  t.is(st.response_stats["4"]!.success.count, 0);
  await reg.close();
});

test("execute() that throws ends every open request of its batch with its error as the final response", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const events = await stream(reg.get("d"), { inputs: [IN(9)], parameters: { mode: "throw" } }).ended;
  t.deepEqual(show(events), ["response 9", "error UNAVAILABLE final"]);
  t.is((events[1] as Extract<Event, { kind: "error" }>).err.message, "execute gave up");
  await reg.close();
});

test("execute() of a decoupled model that returns responses ends its open requests with an error saying to use the sender", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const events = await stream(reg.get("d"), { inputs: [IN(3)], parameters: { mode: "return" } }).ended;
  t.deepEqual(show(events), ["response 3", "error ERR_MODEL_EXECUTE final"]);
  t.regex((events[1] as Extract<Event, { kind: "error" }>).err.message, /is decoupled: execute\(\) must return nothing .*getResponseSender\(\), got an array/);
  await reg.close();
});

test("a request whose sender is garbage-collected before its final flag ends with an INTERNAL error", async (t) => {
  t.truthy(globalThis.gc, "ava runs with --expose-gc");
  const { reg } = await loadModels({ d: DECOUPLED() });
  const mv = reg.get("d");
  const s = stream(mv, { inputs: [IN(1)], id: "lost", parameters: { mode: "drop" } });
  for (let i = 0; i < 50 && !s.done; i++) {
    globalThis.gc!();
    await tick(10);
  }
  t.true(s.done, "the request ended");
  t.deepEqual(show(s.events), ["error INTERNAL final"]);
  t.regex((s.events[0] as Extract<Event, { kind: "error" }>).err.message, /response sender of request 'lost' was dropped without a final flag/);
  t.is(mv.stats.snapshot().inference_stats.fail.count, 1);
  await reg.close();
});

test("the instance takes its next batch when execute() returns, while earlier requests are still open", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const mv = reg.get("d");
  t.is(mv.instanceCount, 1);
  const h = harness();
  const held = stream(mv, { inputs: [IN(1)], id: "held", parameters: { mode: "hold" } });
  const next = stream(mv, { inputs: [IN(2)], id: "next" });
  t.deepEqual(show(await next.ended), ["response 2", "complete"]);
  t.false(held.done);
  const sender = h.senders.get("held")!;
  sender.send(new (await import("../src/runtime/response.js")).InferenceResponse({ outputTensors: { OUT: Tensor.from(new Int32Array([5])) } }), { final: true });
  t.deepEqual(show(await held.ended), ["response 5 final"]);
  await reg.close();
});

test("statistics: a decoupled request counts once, when its final flag is sent; response_stats per response index", async (t) => {
  const seen: { success: boolean; reason?: string }[] = [];
  const observer = { requestDone: (e: { success: boolean; reason?: string }) => seen.push({ success: e.success, ...(e.reason ? { reason: e.reason } : {}) }), executionDone: () => {} };
  const { reg } = await loadModels({ d: DECOUPLED() }, observer);
  const mv = reg.get("d");
  const h = harness();
  const held = stream(mv, { inputs: [IN(1)], id: "stat-held", parameters: { mode: "hold" } });
  await tick(10);
  t.is(mv.stats.snapshot().execution_count, 1);
  t.is(mv.stats.snapshot().inference_stats.success.count, 0, "not counted before its final flag");
  t.deepEqual(seen, []);
  const { InferenceResponse } = await import("../src/runtime/response.js");
  h.senders.get("stat-held")!.send(new InferenceResponse({ outputTensors: { OUT: Tensor.from(new Int32Array([1])) } }));
  h.senders.get("stat-held")!.send(undefined, { final: true });
  await held.ended;
  await stream(mv, { inputs: [IN(1, 2, 3)] }).ended;
  const st = mv.stats.snapshot();
  t.is(st.inference_stats.success.count, 2);
  t.is(st.inference_stats.fail.count, 0);
  t.is(st.inference_count, 2);
  t.is(st.execution_count, 2);
  t.is(st.inference_stats.queue.count, 2);
  t.deepEqual(seen, [{ success: true }, { success: true }]);
  t.deepEqual(
    Object.fromEntries(Object.entries(st.response_stats).map(([k, r]) => [k, [r.success.count, r.empty_response.count, r.compute_infer.count, r.compute_output.count]])),
    { "0": [2, 0, 2, 2], "1": [1, 1, 1, 1], "2": [1, 0, 1, 1], "3": [0, 1, 0, 0] },
  );
  t.true(st.response_stats["0"]!.success.ns > 0);
  await reg.close();
});

test("unary submit() / infer() on a decoupled model is refused with UNSUPPORTED before it reaches the model", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const h = harness();
  const e = await t.throwsAsync(reg.get("d").infer({ inputs: [IN(1)], id: "unary" }), { instanceOf: ModelError });
  t.is(e?.code, "UNSUPPORTED");
  t.regex(e!.message, /doesn't support models with decoupled transaction policy/);
  await stream(reg.get("d"), { inputs: [IN(1)], id: "after-unary" }).ended;
  t.true(h.executed.includes("after-unary"));
  t.false(h.executed.includes("unary"));
  await reg.close();
});

test("unload fails the decoupled requests still open with UNAVAILABLE, after execute() returned; their senders are closed", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const h = harness();
  const held = stream(reg.get("d"), { inputs: [IN(1)], id: "unload-held", parameters: { mode: "hold" } });
  await tick(10);
  const sender = h.senders.get("unload-held")!;
  await reg.unload("d");
  t.true(held.done);
  t.deepEqual(show(held.events), ["error UNAVAILABLE final"]);
  t.regex((held.events[0] as Extract<Event, { kind: "error" }>).err.message, /was unloaded before request 'unload-held' sent its final response/);
  t.true(sender.isClosed());
  t.throws(() => sender.send(undefined, { final: true }), { instanceOf: ServingError, message: /Response sender has been closed/ });
  t.deepEqual(held.late, []);
  await reg.close();
});

test("a model that is not decoupled answers submitStream() with one final response (or one final error)", async (t) => {
  const { reg } = await loadModels({ p: PLAIN() });
  const mv = reg.get("p");
  t.false(mv.decoupled);
  t.deepEqual(show(await stream(mv, { inputs: [IN(1, 2, 3)] }).ended), ["response 6 final"]);
  const bad = await stream(mv, { inputs: [Tensor.from(new Float32Array([1]), { name: "IN" })] }).ended;
  t.deepEqual(show(bad), ["error ERR_INVALID_REQUEST final"]);
  await reg.close();
});

test("a model that is not decoupled may send its one response through the sender, as Triton allows; Triton's rules hold", async (t) => {
  const { reg } = await loadModels({ p: PLAIN() });
  const mv = reg.get("p");
  const h = harness();
  const out = await mv.infer({ inputs: [IN(2, 3)], id: "ns-1", parameters: { sender: true, twice: true } });
  t.deepEqual(Array.from(out.outputs[0]!.data() as Int32Array), [5]);
  t.is((h.thrown.get("ns-1") as Error).message, "Unable to send response. Non-decoupled model cannot send more than one response.");
  t.is((h.thrown.get("ns-1") as ServingError).code, "ERR_RESPONSE_SENDER");
  const split = await mv.infer({ inputs: [IN(4)], id: "ns-2", parameters: { sender: true, split: true, "early-final": true } });
  t.deepEqual(Array.from(split.outputs[0]!.data() as Int32Array), [4], "the response waits for the final flag sent later");
  t.is((h.thrown.get("ns-2/early") as Error).message, "Unable to send response. Non-decoupled model cannot send complete final before sending a response.");
  t.is((h.thrown.get("ns-2/early") as ServingError).code, "ERR_RESPONSE_SENDER");
  t.deepEqual(show(await stream(mv, { inputs: [IN(1)], parameters: { sender: true, split: true } }).ended), ["response 1", "complete"]);
  t.is(mv.stats.snapshot().inference_stats.success.count, 3);
  await reg.close();
});

test("getResponseSender() and isCancelled() on a request the runtime did not make", (t) => {
  const r = new InferenceRequest({ inputs: [IN(1)] });
  t.false(r.isCancelled());
  const e = t.throws(() => r.getResponseSender(), { instanceOf: ModelError });
  t.is(e?.code, "UNSUPPORTED");
});

const in1 = (v: number) => Tensor.from(new Int32Array([v]), { name: "IN", shape: [1, 1] });

test("with dynamic batching, each request of a batch streams on its own", async (t) => {
  const { reg } = await loadModels({ b: DECOUPLED({ batched: true }) });
  const mv = reg.get("b");
  const open = closeGate();
  const first = stream(mv, { inputs: [in1(0)], id: "b0", parameters: { mode: "gated" } });
  await tick(40);
  // Queued behind the gated batch, they leave the queue together.
  const a = stream(mv, { inputs: [in1(1)], id: "b1" });
  const b = stream(mv, { inputs: [in1(2)], id: "b2" });
  open();
  t.deepEqual([show(await a.ended), show(await b.ended)], [["response 1", "complete"], ["response 2", "complete"]]);
  t.false(first.done, "the gated request holds its sender open");
  t.is(mv.stats.snapshot().batch_stats.find((s) => s.batch_size === 2)?.compute_infer.count, 1, "the two ran as one batch");
  await reg.close();
  t.deepEqual(show(first.events), ["error UNAVAILABLE final"]);
});

// ------------------------------------------------------------ worker threads

test("thread instance: a decoupled model in a worker streams its responses (tensors cross), then the final flag", async (t) => {
  const { reg } = await loadModels({ w: THREADED() });
  const mv = reg.get("w");
  const events = await stream(mv, { inputs: [IN(4, 5, 6)], id: "w1" }).ended;
  t.deepEqual(show(events), ["response 4", "response 5", "response 6", "complete"]);
  const worker = (events[0] as Extract<Event, { kind: "response" }>).extra![0];
  t.not(worker, threadId, "sent from the worker's thread");
  const both = await Promise.all([stream(mv, { inputs: [IN(1)] }).ended, stream(mv, { inputs: [IN(2, 3)] }).ended]);
  t.deepEqual(both.map(show), [["response 1", "complete"], ["response 2", "response 3", "complete"]]);
  t.is(mv.stats.snapshot().inference_stats.success.count, 3);
  await reg.close();
});

test("thread instance: a worker that dies ends its open requests with an INTERNAL error final", async (t) => {
  const { reg } = await loadModels({ w: THREADED() });
  const mv = reg.get("w");
  // Instance workers are unref'd (a model must not keep the process up on
  // its own), and no server holds the loop open here: this does, until the
  // worker's exit has ended the request.
  const alive = setInterval(() => {}, 1000);
  const events = await stream(mv, { inputs: [IN(7)], parameters: { mode: "exit" } }).ended.finally(() => clearInterval(alive));
  t.deepEqual(show(events), ["response 7", "error INTERNAL final"]);
  t.regex((events[1] as Extract<Event, { kind: "error" }>).err.message, /worker thread exited \(code 3\)/);
  t.is(mv.stats.snapshot().inference_stats.fail.count, 1);
  await reg.close();
});

test("thread instance: a sender garbage-collected in the worker ends its request with an INTERNAL error", async (t) => {
  const { reg } = await loadModels({ w: THREADED() });
  const s = stream(reg.get("w"), { inputs: [IN(1)], id: "w-drop", parameters: { mode: "drop" } });
  for (let i = 0; i < 100 && !s.done; i++) await tick(10);
  t.true(s.done);
  t.deepEqual(show(s.events), ["error INTERNAL final"]);
  t.regex((s.events[0] as Extract<Event, { kind: "error" }>).err.message, /request 'w-drop' was dropped without a final flag/);
  await reg.close();
});

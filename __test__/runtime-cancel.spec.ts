/**
 * Cancellation in the runtime (`InferInput.cancellation`): a queued
 * request leaves the queue with CANCELLED and never reaches execute(); a
 * running one is seen by the model (`request.isCancelled()`,
 * `sender.isCancelled()`), its later responses are dropped and its final
 * flag ends it as cancelled; statistics count it; listeners go away when a
 * request ends; and a cancel reaches a model in a worker thread.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { Cancellation } from "../src/runtime/cancel.js";
import { ModelError } from "../src/runtime/model-error.js";
import { InferenceResponse } from "../src/runtime/response.js";
import type { InferenceObserver } from "../src/runtime/stats.js";
import { Tensor } from "../src/tensor.js";
import { DECOUPLED, IN, PLAIN, THREADED, cleanupModels, closeGate, harness, loadModels, stream, tick, type Event } from "./fixtures/runtime-decoupled.js";

test.after.always(() => cleanupModels());

const show = (events: Event[]) =>
  events.map((e) => (e.kind === "response" ? `response ${e.out.join(",")}${e.final ? " final" : ""}` : e.kind === "error" ? `error ${e.err.code} ${e.final ? "final" : "open"}` : "complete"));

const out = (v: number) => new InferenceResponse({ outputTensors: { OUT: Tensor.from(new Int32Array([v])) } });

/** A Cancellation that counts its live listeners. */
class CountingCancellation extends Cancellation {
  live = 0;
  override onCancel(fn: () => void): () => void {
    this.live++;
    const off = super.onCancel(fn);
    let on = true;
    return () => {
      if (on) this.live--;
      on = false;
      off();
    };
  }
}

/** An observer that keeps each request's outcome. */
function outcomes(): { observer: InferenceObserver; seen: string[] } {
  const seen: string[] = [];
  return { seen, observer: { requestDone: (e) => seen.push(e.success ? "success" : `fail ${e.reason}`), executionDone: () => {} } };
}

test.serial("a queued unary request that is cancelled leaves the queue at once with CANCELLED, and never reaches execute()", async (t) => {
  const { observer, seen } = outcomes();
  const { reg } = await loadModels({ p: PLAIN() }, observer);
  const mv = reg.get("p");
  const h = harness();
  const open = closeGate();
  const running = mv.infer({ inputs: [IN(1)], id: "q-running", parameters: { gated: true } });
  const c = new CountingCancellation();
  let settled = false;
  const queued = mv.infer({ inputs: [IN(2)], id: "q-queued", cancellation: c });
  queued.catch(() => {}).finally(() => (settled = true));
  await tick(10);
  t.false(settled, "waits for the busy instance");
  t.is(c.live, 1);
  c.cancel();
  const e = await t.throwsAsync(queued, { instanceOf: ModelError });
  t.is(e?.code, "CANCELLED");
  t.is(e?.message, "Request was cancelled");
  t.is(c.live, 0, "its listener is gone");
  open();
  t.deepEqual(Array.from((await running).outputs[0]!.data() as Int32Array), [1]);
  t.true(h.executed.includes("q-running"));
  t.false(h.executed.includes("q-queued"));
  const st = mv.stats.snapshot();
  t.is(st.inference_stats.success.count, 1);
  t.is(st.inference_stats.fail.count, 1);
  t.is(st.inference_stats.queue.count, 1, "a request cancelled in the queue has no queue time (it never left it for an instance)");
  t.deepEqual(seen, ["fail CANCELED", "success"]);
  await reg.close();
});

test.serial("a queued streamed request that is cancelled ends with one CANCELLED error final; one already cancelled is refused the same way", async (t) => {
  const { reg } = await loadModels({ d: DECOUPLED() });
  const mv = reg.get("d");
  const h = harness();
  const open = closeGate();
  const running = stream(mv, { inputs: [IN(1)], id: "qs-running", parameters: { mode: "gated" } });
  const c = new Cancellation();
  const queued = stream(mv, { inputs: [IN(2)], id: "qs-queued", cancellation: c });
  await tick(10);
  t.false(queued.done);
  c.cancel();
  t.true(queued.done, "answered synchronously");
  t.deepEqual(show(queued.events), ["error CANCELLED final"]);
  const early = new Cancellation();
  early.cancel();
  const pre = stream(mv, { inputs: [IN(3)], id: "qs-early", cancellation: early });
  t.deepEqual(show(pre.events), ["error CANCELLED final"]);
  open();
  await tick(10);
  h.senders.get("qs-running")!.send(undefined, { final: true });
  t.deepEqual(show(await running.ended), ["complete"]);
  t.false(h.executed.includes("qs-queued"));
  t.false(h.executed.includes("qs-early"));
  t.deepEqual(queued.late, []);
  t.is(mv.stats.snapshot().inference_stats.fail.count, 2);
  await reg.close();
});

test("a running decoupled request: the model sees isCancelled() on request and sender; later responses are dropped; the final flag ends it as CANCELLED", async (t) => {
  const { observer, seen } = outcomes();
  const { reg } = await loadModels({ d: DECOUPLED() }, observer);
  const mv = reg.get("d");
  const h = harness();
  const c = new CountingCancellation();
  const s = stream(mv, { inputs: [IN(1)], id: "watch-1", cancellation: c, parameters: { mode: "watch" } });
  await tick(10);
  const sender = h.senders.get("watch-1")!;
  sender.send(out(2));
  t.deepEqual(h.sawCancel.get("watch-1"), { request: false, sender: false });
  t.deepEqual(show(s.events), ["response 1", "response 2"]);
  c.cancel();
  t.false(s.done, "a running request is the model's to end");
  sender.send(out(3));
  t.deepEqual(h.sawCancel.get("watch-1"), { request: true, sender: true });
  t.deepEqual(show(s.events), ["response 1", "response 2"], "dropped after the cancel");
  sender.send(out(4), { final: true });
  t.deepEqual(show(await s.ended), ["response 1", "response 2", "error CANCELLED final"]);
  t.is((s.events[2] as Extract<Event, { kind: "error" }>).err.message, "Request was cancelled");
  t.is(c.live, 0);
  const st = mv.stats.snapshot();
  t.is(st.inference_stats.fail.count, 1);
  t.deepEqual(seen, ["fail CANCELED"]);
  t.deepEqual(
    Object.fromEntries(Object.entries(st.response_stats).map(([k, r]) => [k, [r.success.count, r.cancel.count]])),
    { "0": [1, 0], "1": [1, 0], "2": [0, 1], "3": [0, 1] },
  );
  await reg.close();
});

test.serial("a running unary request that is cancelled still gets its answer (the transport drops it); the model could see the flag", async (t) => {
  const { reg } = await loadModels({ p: PLAIN() });
  const mv = reg.get("p");
  const open = closeGate();
  const c = new CountingCancellation();
  const p = mv.infer({ inputs: [IN(5, 6)], id: "unary-running", cancellation: c, parameters: { gated: true } });
  await tick(10);
  c.cancel();
  open();
  const o = await p;
  t.deepEqual(Array.from(o.outputs[0]!.data() as Int32Array), [11]);
  t.is(c.live, 0);
  t.is(mv.stats.snapshot().inference_stats.success.count, 1);
  await reg.close();
});

test("every way a request ends removes its cancellation listener; a cancel afterwards changes nothing", async (t) => {
  const { reg } = await loadModels({ p: PLAIN(), d: DECOUPLED() });
  const plain = reg.get("p");
  const dec = reg.get("d");
  const cs = Array.from({ length: 6 }, () => new CountingCancellation());
  await plain.infer({ inputs: [IN(1)], cancellation: cs[0]! });
  await t.throwsAsync(plain.infer({ inputs: [Tensor.from(new Float32Array([1]), { name: "IN" })], cancellation: cs[1]! }));
  const streams = [
    stream(plain, { inputs: [IN(1)], cancellation: cs[2]! }),
    stream(dec, { inputs: [IN(1, 2)], cancellation: cs[3]! }),
    stream(dec, { inputs: [IN(1)], cancellation: cs[4]!, parameters: { mode: "throw" } }),
    stream(dec, { inputs: [IN(1)], cancellation: cs[5]!, parameters: { mode: "return" } }),
  ];
  await Promise.all(streams.map((s) => s.ended));
  t.deepEqual(
    cs.map((c) => c.live),
    [0, 0, 0, 0, 0, 0],
  );
  const before = JSON.stringify(dec.stats.snapshot().inference_stats);
  for (const c of cs) c.cancel();
  await tick(10);
  t.deepEqual(
    streams.map((s) => s.late),
    [[], [], [], []],
  );
  t.is(JSON.stringify(dec.stats.snapshot().inference_stats), before);
  await reg.close();
});

test("thread instance: a cancel reaches the model in its worker (request and sender both say so); the stream ends CANCELLED", async (t) => {
  const { reg, repo } = await loadModels({ w: THREADED() });
  const c = new CountingCancellation();
  const s = stream(reg.get("w"), { inputs: [IN(0)], id: "w-cancel", cancellation: c, parameters: { mode: "ticks" } });
  for (let i = 0; i < 200 && s.events.length < 3; i++) await tick(5);
  t.true(s.events.length >= 3, "ticks arrive");
  c.cancel();
  const atCancel = s.events.length;
  const events = await s.ended;
  t.deepEqual(show(events.slice(atCancel)), ["error CANCELLED final"], "nothing after the cancel but the end");
  t.true(events.slice(0, atCancel).every((e) => e.kind === "response" && !e.final));
  const seen = JSON.parse(readFileSync(join(repo, "w", "cancelled-w-cancel"), "utf8")) as { request: boolean; sender: boolean };
  t.deepEqual({ request: seen.request, sender: seen.sender }, { request: true, sender: true });
  t.is(c.live, 0);
  await reg.close();
});

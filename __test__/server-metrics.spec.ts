/**
 * ServerMetrics keeps its per-request counts in plain numbers and its
 * latency histograms in its own buckets (prom-client's per-call label
 * handling was a measurable part of each request's CPU). What `/metrics`
 * shows must not change: the same events go to ServerMetrics and to a
 * reference that calls prom-client directly on every event (what
 * ServerMetrics did before), and the exposition text and the JSON form
 * must be equal after every step, scrapes in between included.
 */
import test from "ava";
import { Counter, Gauge, Histogram, Registry } from "prom-client";

import { ServerMetrics } from "../src/server/metrics.js";
import type { InferenceObserver } from "../src/runtime/stats.js";

type RequestEvent = Parameters<InferenceObserver["requestDone"]>[0];
type ExecutionEvent = Parameters<InferenceObserver["executionDone"]>[0];

const BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The former implementation: prom-client calls with labels on every event. */
class Reference implements InferenceObserver {
  readonly registry = new Registry();
  readonly #c: Record<string, Counter<"model" | "version">> = {};
  readonly #failure: Counter<"model" | "version" | "reason">;
  readonly #latency: Histogram<"model" | "version">;
  readonly #inferLatency: Histogram<"model" | "version">;

  constructor() {
    const registers = [this.registry];
    const labelNames = ["model", "version"] as const;
    const counter = (key: string, name: string, help: string) => (this.#c[key] = new Counter({ name, help, labelNames, registers }));
    counter("success", "nv_inference_request_success", "Number of successful inference requests, all batch sizes");
    this.#failure = new Counter({
      name: "nv_inference_request_failure",
      help: "Number of failed inference requests, all batch sizes",
      labelNames: ["model", "version", "reason"] as const,
      registers,
    });
    counter("count", "nv_inference_count", "Number of inferences performed (does not include cached requests)");
    counter("exec", "nv_inference_exec_count", "Number of model executions performed (does not include cached requests)");
    counter("requestUs", "nv_inference_request_duration_us", "Cumulative inference request duration in microseconds");
    counter("queueUs", "nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds");
    counter("inputUs", "nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds");
    counter("inferUs", "nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds");
    counter("outputUs", "nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds");
    this.#latency = new Histogram({
      name: "tensorbridge_inference_request_duration_seconds",
      help: "Inference request latency (arrival to response), per model and version",
      labelNames,
      buckets: BUCKETS,
      registers,
    });
    this.#inferLatency = new Histogram({
      name: "tensorbridge_inference_compute_infer_duration_seconds",
      help: "Time in the model's execute(), per call",
      labelNames,
      buckets: BUCKETS,
      registers,
    });
    // ServerMetrics' readiness gauge, empty here (no registry).
    void new Gauge({ name: "tensorbridge_model_ready", help: "1 when the model version is loaded and ready", labelNames, registers });
  }

  readonly #seen = new Set<string>();

  /** As Triton (and ServerMetrics): a model version's first event gives each failure reason a series at 0. */
  #first(l: { model: string; version: string }): void {
    const key = `${l.model}\u0000${l.version}`;
    if (this.#seen.has(key)) return;
    this.#seen.add(key);
    for (const reason of ["REJECTED", "CANCELED", "BACKEND", "OTHER"]) this.#failure.inc({ ...l, reason }, 0);
  }

  requestDone(e: RequestEvent): void {
    const l = { model: e.model, version: String(e.version) };
    this.#first(l);
    if (e.success) {
      this.#c["success"]!.labels(l).inc();
      this.#c["count"]!.labels(l).inc(e.batchSize);
    } else {
      this.#failure.inc({ ...l, reason: e.reason ?? "OTHER" });
    }
    this.#c["requestUs"]!.labels(l).inc(Math.round(e.durationNs / 1000));
    this.#c["queueUs"]!.labels(l).inc(Math.round(e.queueNs / 1000));
    this.#latency.labels(l).observe(e.durationNs / 1e9);
  }

  executionDone(e: ExecutionEvent): void {
    const l = { model: e.model, version: String(e.version) };
    this.#first(l);
    this.#c["exec"]!.labels(l).inc();
    this.#c["inputUs"]!.labels(l).inc(Math.round(e.computeInputNs / 1000));
    this.#c["inferUs"]!.labels(l).inc(Math.round(e.computeInferNs / 1000));
    this.#c["outputUs"]!.labels(l).inc(Math.round(e.computeOutputNs / 1000));
    this.#inferLatency.labels(l).observe(e.computeInferNs / 1e9);
  }
}

/** A deterministic stream of events over three model versions, failures, zero and huge durations included. */
function* events(n: number, seed: number): Generator<["req", RequestEvent] | ["exec", ExecutionEvent]> {
  let x = seed;
  const rnd = (): number => {
    x = (x * 1103515245 + 12345) % 2147483648;
    return x / 2147483648;
  };
  const models: [string, number][] = [
    ["add_sub", 1],
    ["add_sub", 2],
    ["identity", 1],
  ];
  for (let i = 0; i < n; i++) {
    const [model, version] = models[Math.floor(rnd() * models.length)]!;
    // Durations from 0 to ~20 s on a log scale, with exact zeros and bucket bounds now and then.
    const dur = (): number => (rnd() < 0.05 ? 0 : rnd() < 0.05 ? 250_000 : Math.round(10 ** (rnd() * 10.3)));
    if (rnd() < 0.5) {
      yield ["exec", { model, version, requests: 1, batchSize: 1 + Math.floor(rnd() * 4), computeInputNs: dur(), computeInferNs: dur(), computeOutputNs: dur() }];
    }
    const success = rnd() < 0.8;
    const reasons = ["REJECTED", "BACKEND", "OTHER", undefined] as const;
    const reason = success ? undefined : reasons[Math.floor(rnd() * reasons.length)];
    yield ["req", { model, version, success, ...(reason ? { reason } : {}), durationNs: dur(), queueNs: rnd() < 0.3 ? 0 : dur(), batchSize: 1 + Math.floor(rnd() * 8) }];
  }
}

test("ServerMetrics renders exactly what per-event prom-client calls rendered, scrape after scrape", async (t) => {
  const ours = new ServerMetrics(() => undefined, { defaultMetrics: false });
  const ref = new Reference();
  t.is(await ours.render(), await ref.registry.metrics());
  for (const [step, n] of [1, 2, 50, 0, 500, 3].entries()) {
    for (const [kind, e] of events(n, 17 + step)) {
      if (kind === "req") {
        ours.requestDone(e);
        ref.requestDone(e);
      } else {
        ours.executionDone(e);
        ref.executionDone(e);
      }
    }
    const text = await ours.render();
    t.is(text, await ref.registry.metrics(), `after step ${step}`);
    t.deepEqual(await ours.registry.getMetricsAsJSON(), await ref.registry.getMetricsAsJSON(), `JSON after step ${step}`);
  }
  // The histograms really saw the events (not two empty renders).
  t.regex(await ours.render(), /^tensorbridge_inference_request_duration_seconds_count\{model="identity",version="1"\} [1-9]\d*$/m);
});

test("a label set appears once it has an event, even when every increment was 0", async (t) => {
  const ours = new ServerMetrics(() => undefined, { defaultMetrics: false });
  const ref = new Reference();
  const e: RequestEvent = { model: "m", version: 3, success: false, reason: "REJECTED", durationNs: 0, queueNs: 0, batchSize: 1 };
  ours.requestDone(e);
  ref.requestDone(e);
  const text = await ours.render();
  t.regex(text, /^nv_inference_queue_duration_us\{model="m",version="3"\} 0$/m);
  t.notRegex(text, /^nv_inference_request_success\{/m);
  t.is(text, await ref.registry.metrics());
});

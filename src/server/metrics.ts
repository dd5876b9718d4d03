/**
 * Prometheus metrics (`GET /metrics`), named as Triton's so that existing
 * dashboards work: `nv_inference_request_success`,
 * `nv_inference_request_failure`, `nv_inference_count`,
 * `nv_inference_exec_count`, `nv_inference_request_duration_us`,
 * `nv_inference_queue_duration_us`, `nv_inference_compute_{input,infer,output}_duration_us`
 * (counters per model and version), plus latency histograms
 * (`tensorbridge_inference_request_duration_seconds`,
 * `tensorbridge_inference_compute_infer_duration_seconds`), a model
 * readiness gauge and the process's default Node metrics. Each server has
 * its own registry.
 *
 * @module
 */
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";

import type { ModelRegistry } from "../runtime/model-registry.js";
import type { InferenceObserver } from "../runtime/stats.js";

type Labels = { model: string; version: string };

interface Children {
  success: Counter.Internal;
  count: Counter.Internal;
  exec: Counter.Internal;
  requestUs: Counter.Internal;
  queueUs: Counter.Internal;
  inputUs: Counter.Internal;
  inferUs: Counter.Internal;
  outputUs: Counter.Internal;
  latency: Histogram.Internal<"model" | "version">;
  inferLatency: Histogram.Internal<"model" | "version">;
}

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The Prometheus metrics of one server; it observes the runtime's inference events. */
export class ServerMetrics implements InferenceObserver {
  /** The registry `/metrics` renders. */
  readonly registry: Registry;
  readonly #success: Counter<"model" | "version">;
  readonly #failure: Counter<"model" | "version" | "reason">;
  readonly #count: Counter<"model" | "version">;
  readonly #exec: Counter<"model" | "version">;
  readonly #requestUs: Counter<"model" | "version">;
  readonly #queueUs: Counter<"model" | "version">;
  readonly #inputUs: Counter<"model" | "version">;
  readonly #inferUs: Counter<"model" | "version">;
  readonly #outputUs: Counter<"model" | "version">;
  readonly #latency: Histogram<"model" | "version">;
  readonly #inferLatency: Histogram<"model" | "version">;
  readonly #children = new Map<string, Children>();

  /**
   * @param models - the model registry, read at scrape time for the readiness gauge.
   * @param opts - `defaultMetrics: false` leaves out Node's process metrics.
   */
  constructor(models: () => ModelRegistry | undefined, opts: { defaultMetrics?: boolean } = {}) {
    const registers = [(this.registry = new Registry())];
    const labelNames = ["model", "version"] as const;
    const counter = (name: string, help: string) => new Counter({ name, help, labelNames, registers });
    this.#success = counter("nv_inference_request_success", "Number of successful inference requests, all batch sizes");
    this.#failure = new Counter({
      name: "nv_inference_request_failure",
      help: "Number of failed inference requests, all batch sizes",
      labelNames: ["model", "version", "reason"] as const,
      registers,
    });
    this.#count = counter("nv_inference_count", "Number of inferences performed (does not include cached requests)");
    this.#exec = counter("nv_inference_exec_count", "Number of model executions performed (does not include cached requests)");
    this.#requestUs = counter("nv_inference_request_duration_us", "Cumulative inference request duration in microseconds");
    this.#queueUs = counter("nv_inference_queue_duration_us", "Cumulative inference queuing duration in microseconds");
    this.#inputUs = counter("nv_inference_compute_input_duration_us", "Cumulative compute input duration in microseconds");
    this.#inferUs = counter("nv_inference_compute_infer_duration_us", "Cumulative compute inference duration in microseconds");
    this.#outputUs = counter("nv_inference_compute_output_duration_us", "Cumulative inference compute output duration in microseconds");
    this.#latency = new Histogram({
      name: "tensorbridge_inference_request_duration_seconds",
      help: "Inference request latency (arrival to response), per model and version",
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#inferLatency = new Histogram({
      name: "tensorbridge_inference_compute_infer_duration_seconds",
      help: "Time in the model's execute(), per call",
      labelNames,
      buckets: LATENCY_BUCKETS,
      registers,
    });
    const ready = new Gauge({
      name: "tensorbridge_model_ready",
      help: "1 when the model version is loaded and ready",
      labelNames,
      registers,
      collect() {
        this.reset();
        for (const v of models()?.readyVersions() ?? []) this.set({ model: v.name, version: String(v.version) }, 1);
      },
    });
    void ready;
    if (opts.defaultMetrics !== false) collectDefaultMetrics({ register: this.registry });
  }

  #for(model: string, version: number): Children {
    const key = `${model}\u0000${version}`;
    let c = this.#children.get(key);
    if (!c) {
      const l: Labels = { model, version: String(version) };
      c = {
        success: this.#success.labels(l),
        count: this.#count.labels(l),
        exec: this.#exec.labels(l),
        requestUs: this.#requestUs.labels(l),
        queueUs: this.#queueUs.labels(l),
        inputUs: this.#inputUs.labels(l),
        inferUs: this.#inferUs.labels(l),
        outputUs: this.#outputUs.labels(l),
        latency: this.#latency.labels(l),
        inferLatency: this.#inferLatency.labels(l),
      };
      this.#children.set(key, c);
    }
    return c;
  }

  /** @inheritdoc */
  requestDone(e: Parameters<InferenceObserver["requestDone"]>[0]): void {
    const c = this.#for(e.model, e.version);
    if (e.success) {
      c.success.inc();
      c.count.inc(e.batchSize);
    } else {
      this.#failure.inc({ model: e.model, version: String(e.version), reason: e.reason ?? "OTHER" });
    }
    c.requestUs.inc(Math.round(e.durationNs / 1000));
    c.queueUs.inc(Math.round(e.queueNs / 1000));
    c.latency.observe(e.durationNs / 1e9);
  }

  /** @inheritdoc */
  executionDone(e: Parameters<InferenceObserver["executionDone"]>[0]): void {
    const c = this.#for(e.model, e.version);
    c.exec.inc();
    c.inputUs.inc(Math.round(e.computeInputNs / 1000));
    c.inferUs.inc(Math.round(e.computeInferNs / 1000));
    c.outputUs.inc(Math.round(e.computeOutputNs / 1000));
    c.inferLatency.observe(e.computeInferNs / 1e9);
  }

  /** The text exposition format. */
  render(): Promise<string> {
    return this.registry.metrics();
  }

  /** The content type of {@link render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }
}

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
 * its own registry. Models' custom families (`MetricFamily`, kept in plain
 * runtime objects: the model side loads no prom-client) follow the
 * server's own in the text.
 *
 * @module
 */
import { Counter, Gauge, Registry, collectDefaultMetrics, type Histogram } from "prom-client";

import { CustomMetrics, type MetricFamilyData } from "../runtime/custom-metrics.js";
import type { ModelHost } from "../runtime/model-context.js";
import type { ModelRegistry } from "../runtime/model-registry.js";
import type { RuntimeLogger } from "../runtime/model-version.js";
import type { FailureReason, InferenceObserver } from "../runtime/stats.js";

type Labels = { model: string; version: string };

/**
 * Triton's reasons of `nv_inference_request_failure`: each has a series
 * (0 until it counts) once a model version has metrics, as Triton 2.51
 * shows them, so that a rate() over one never starts from nothing.
 */
const FAILURE_REASONS: readonly FailureReason[] = ["REJECTED", "CANCELED", "BACKEND", "OTHER"];

const LATENCY_BUCKETS = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/**
 * One counter's pending increments for one label set. prom-client's
 * `inc(labels, v)` hashes and validates the labels on every call (several µs
 * per request over ten metrics): requests add to plain numbers here, and the
 * sums reach prom-client when it is read ({@link PendingCounter.flush}).
 */
interface PendingValue {
  labels: Labels;
  value: number;
  /** In its counter's flush list. */
  queued: boolean;
  /** The label set exists in prom-client (a first `inc`, even of 0, creates it). */
  created: boolean;
}

/** A prom-client counter fed from {@link PendingValue}s, flushed whenever prom-client reads it. */
class PendingCounter {
  readonly counter: Counter<"model" | "version">;
  // In the order of their first increment, which is the order prom-client
  // would have created (and prints) the label sets in.
  readonly #values: PendingValue[] = [];

  constructor(name: string, help: string, registers: Registry[]) {
    const flush = (): void => this.flush();
    this.counter = new Counter({ name, help, labelNames: ["model", "version"] as const, registers, collect: flush });
  }

  /** The pending value of one label set (not yet counted anywhere). */
  value(labels: Labels): PendingValue {
    return { labels, value: 0, queued: false, created: false };
  }

  /** Adds `v` (an integer) to a label set. */
  add(p: PendingValue, v: number): void {
    if (!p.queued) {
      p.queued = true;
      this.#values.push(p);
    }
    p.value += v;
  }

  /** Moves the pending sums into prom-client. */
  flush(): void {
    for (const p of this.#values) {
      if (p.value === 0 && p.created) continue;
      // Sums of integers are exact, so one inc of the sum counts what the
      // separate incs would have.
      this.counter.inc(p.labels, p.value);
      p.value = 0;
      p.created = true;
    }
  }
}

/** One value of a histogram as prom-client's `Histogram.getForPromString` gives it. */
interface HistogramValue {
  labels: { le?: number | string };
  sharedLabels: Labels;
  value: number;
  metricName: string;
  exemplar: null | undefined;
}

/** What prom-client's `Histogram.getForPromString` returns. */
interface HistogramData<V> {
  name: string;
  help: string;
  type: "histogram";
  values: V[];
  aggregator: "sum";
}

/** One histogram label set: per-bucket counts (not cumulative), sum and count. */
interface HistogramSeries {
  labels: Labels;
  buckets: Float64Array;
  sum: number;
  count: number;
  /** Observed at least once (prom-client lists a label set from its first observation on). */
  listed: boolean;
}

/**
 * A histogram with `model` and `version` labels that keeps its buckets in
 * plain arrays: prom-client's `Histogram.observe` with labels costs ~1 µs
 * (label validation, hashing, a temporary object) per call. It registers in
 * a prom-client registry like a prom-client `Histogram` and returns the same
 * values from `get()` (so the same text in `/metrics`): buckets cumulative
 * with `le`, then `+Inf`, `_sum` and `_count`, label sets in the order of
 * their first observation.
 */
class LabelledHistogram {
  readonly name: string;
  readonly help: string;
  readonly type = "histogram";
  readonly aggregator = "sum";
  readonly #bounds: readonly number[];
  #listed: HistogramSeries[] = [];

  constructor(config: { name: string; help: string; buckets: readonly number[]; registers: Registry[] }) {
    this.name = config.name;
    this.help = config.help;
    this.#bounds = config.buckets;
    for (const r of config.registers) r.registerMetric(this as unknown as Histogram);
  }

  /** The series of one label set (listed from its first observation). */
  series(labels: Labels): HistogramSeries {
    return { labels, buckets: new Float64Array(this.#bounds.length), sum: 0, count: 0, listed: false };
  }

  /** Observes a value in seconds, as prom-client's `observe` does. */
  observe(s: HistogramSeries, value: number): void {
    if (!Number.isFinite(value)) throw new TypeError(`Value is not a valid number: ${value}`);
    if (!s.listed) {
      s.listed = true;
      this.#listed.push(s);
    }
    const b = this.#bounds;
    for (let i = 0; i < b.length; i++) {
      if (value <= b[i]!) {
        s.buckets[i]!++;
        break;
      }
    }
    s.sum += value;
    s.count += 1;
  }

  /** Forgets every observation (prom-client's `Registry.resetMetrics`). */
  reset(): void {
    for (const s of this.#listed) {
      s.buckets.fill(0);
      s.sum = 0;
      s.count = 0;
      s.listed = false;
    }
    this.#listed = [];
  }

  /** prom-client's `Histogram.getForPromString`: labels of each set apart (`sharedLabels`). */
  getForPromString(): HistogramData<HistogramValue> {
    const bucketName = `${this.name}_bucket`;
    const values: HistogramValue[] = [];
    for (const s of this.#listed) {
      let acc = 0;
      for (let i = 0; i < this.#bounds.length; i++) {
        acc += s.buckets[i]!;
        values.push({ labels: { le: this.#bounds[i]! }, sharedLabels: s.labels, value: acc, metricName: bucketName, exemplar: null });
      }
      values.push({ labels: { le: "+Inf" }, sharedLabels: s.labels, value: s.count, metricName: bucketName, exemplar: null });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.sum, metricName: `${this.name}_sum`, exemplar: undefined });
      values.push({ labels: {}, sharedLabels: s.labels, value: s.count, metricName: `${this.name}_count`, exemplar: undefined });
    }
    return { name: this.name, help: this.help, type: this.type, values, aggregator: this.aggregator };
  }

  /** prom-client's `Histogram.get`: the set's labels merged into each value's. */
  async get(): Promise<HistogramData<Omit<HistogramValue, "sharedLabels">>> {
    const data = this.getForPromString();
    return {
      ...data,
      values: data.values.map(({ sharedLabels, labels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } })),
    };
  }
}

/** Everything one model version counts, resolved once (no label lookups per request). */
interface Series {
  model: string;
  version: number;
  success: PendingValue;
  count: PendingValue;
  exec: PendingValue;
  requestUs: PendingValue;
  queueUs: PendingValue;
  inputUs: PendingValue;
  inferUs: PendingValue;
  outputUs: PendingValue;
  latency: HistogramSeries;
  inferLatency: HistogramSeries;
}

/** The Prometheus metrics of one server; it observes the runtime's inference events. */
export class ServerMetrics implements InferenceObserver {
  /** The registry `/metrics` renders. */
  readonly registry: Registry;
  readonly #success: PendingCounter;
  readonly #failure: Counter<"model" | "version" | "reason">;
  readonly #count: PendingCounter;
  readonly #exec: PendingCounter;
  readonly #requestUs: PendingCounter;
  readonly #queueUs: PendingCounter;
  readonly #inputUs: PendingCounter;
  readonly #inferUs: PendingCounter;
  readonly #outputUs: PendingCounter;
  readonly #latency: LabelledHistogram;
  readonly #inferLatency: LabelledHistogram;
  readonly #series = new Map<string, Series>();
  #last: Series | undefined;
  /**
   * Where the server's models log (`Logger`) and keep their custom metric
   * families; ModelVersion takes it from its observer.
   */
  readonly modelHost: ModelHost;

  /**
   * @param models - the model registry, read at scrape time for the readiness gauge.
   * @param opts - `defaultMetrics: false` leaves out Node's process metrics;
   * `modelLog`: the server's log and whether models' verbose lines go to it.
   */
  constructor(models: () => ModelRegistry | undefined, opts: { defaultMetrics?: boolean; modelLog?: { logger: RuntimeLogger; verbose: boolean } } = {}) {
    const silent: RuntimeLogger = { info() {}, warn() {}, error() {} };
    this.modelHost = { logger: opts.modelLog?.logger ?? silent, verbose: opts.modelLog?.verbose ?? false, metrics: new CustomMetrics() };
    const registers = [(this.registry = new Registry())];
    const labelNames = ["model", "version"] as const;
    // Created in this order so that /metrics lists them in the same order as before.
    const counter = (name: string, help: string) => new PendingCounter(name, help, registers);
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
    this.#latency = new LabelledHistogram({
      name: "tensorbridge_inference_request_duration_seconds",
      help: "Inference request latency (arrival to response), per model and version",
      buckets: LATENCY_BUCKETS,
      registers,
    });
    this.#inferLatency = new LabelledHistogram({
      name: "tensorbridge_inference_compute_infer_duration_seconds",
      help: "Time in the model's execute(), per call",
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

  #for(model: string, version: number): Series {
    // Requests come in runs for one model: the last one answers most lookups.
    const last = this.#last;
    if (last !== undefined && last.model === model && last.version === version) return last;
    const key = `${model}\u0000${version}`;
    let c = this.#series.get(key);
    if (!c) {
      const l: Labels = { model, version: String(version) };
      c = {
        model,
        version,
        success: this.#success.value(l),
        count: this.#count.value(l),
        exec: this.#exec.value(l),
        requestUs: this.#requestUs.value(l),
        queueUs: this.#queueUs.value(l),
        inputUs: this.#inputUs.value(l),
        inferUs: this.#inferUs.value(l),
        outputUs: this.#outputUs.value(l),
        latency: this.#latency.series(l),
        inferLatency: this.#inferLatency.series(l),
      };
      this.#series.set(key, c);
      for (const reason of FAILURE_REASONS) this.#failure.inc({ ...l, reason }, 0);
    }
    this.#last = c;
    return c;
  }

  /** @inheritdoc */
  requestDone(e: Parameters<InferenceObserver["requestDone"]>[0]): void {
    const c = this.#for(e.model, e.version);
    if (e.success) {
      this.#success.add(c.success, 1);
      this.#count.add(c.count, e.batchSize);
    } else {
      this.#failure.inc({ model: e.model, version: String(e.version), reason: e.reason ?? "OTHER" });
    }
    this.#requestUs.add(c.requestUs, Math.round(e.durationNs / 1000));
    this.#queueUs.add(c.queueUs, Math.round(e.queueNs / 1000));
    this.#latency.observe(c.latency, e.durationNs / 1e9);
  }

  /** @inheritdoc */
  executionDone(e: Parameters<InferenceObserver["executionDone"]>[0]): void {
    const c = this.#for(e.model, e.version);
    this.#exec.add(c.exec, 1);
    this.#inputUs.add(c.inputUs, Math.round(e.computeInputNs / 1000));
    this.#inferUs.add(c.inferUs, Math.round(e.computeInferNs / 1000));
    this.#outputUs.add(c.outputUs, Math.round(e.computeOutputNs / 1000));
    this.#inferLatency.observe(c.inferLatency, e.computeInferNs / 1e9);
  }

  /** The text exposition format: the server's families, then the models' custom ones. */
  async render(): Promise<string> {
    const text = await this.registry.metrics();
    const custom = this.modelHost.metrics.families();
    return custom.length === 0 ? text : text + custom.map(renderFamily).join("");
  }

  /** The content type of {@link render}'s output. */
  get contentType(): string {
    return this.registry.contentType;
  }
}

/** A number as Prometheus' text format writes it. */
function fmt(v: number): string {
  if (Number.isNaN(v)) return "NaN";
  if (v === Infinity) return "+Inf";
  if (v === -Infinity) return "-Inf";
  return String(v);
}

const escapeHelp = (s: string): string => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n");
const escapeLabel = (s: string): string => s.replace(/\\/g, "\\\\").replace(/\n/g, "\\n").replace(/"/g, '\\"');

function labelText(labels: Readonly<Record<string, string>>, extra?: string): string {
  const parts = Object.entries(labels).map(([k, v]) => `${k}="${escapeLabel(v)}"`);
  if (extra !== undefined) parts.push(extra);
  return parts.length === 0 ? "" : `{${parts.join(",")}}`;
}

/** One custom family in the text exposition format. */
function renderFamily(f: MetricFamilyData): string {
  const lines = [`# HELP ${f.name} ${escapeHelp(f.description)}`, `# TYPE ${f.name} ${f.kind.toLowerCase()}`];
  for (const s of f.series.values()) {
    if (f.kind !== "HISTOGRAM") {
      lines.push(`${f.name}${labelText(s.labels)} ${fmt(s.value)}`);
      continue;
    }
    let acc = 0;
    f.buckets!.forEach((b, i) => {
      acc += s.counts![i]!;
      lines.push(`${f.name}_bucket${labelText(s.labels, `le="${fmt(b)}"`)} ${acc}`);
    });
    lines.push(`${f.name}_bucket${labelText(s.labels, 'le="+Inf"')} ${s.count}`);
    lines.push(`${f.name}_sum${labelText(s.labels)} ${fmt(s.sum)}`);
    lines.push(`${f.name}_count${labelText(s.labels)} ${s.count}`);
  }
  return lines.join("\n") + "\n\n";
}

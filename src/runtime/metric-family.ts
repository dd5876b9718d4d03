/**
 * A model's custom metrics (Triton's `pb_utils.MetricFamily` and
 * `pb_utils.Metric`), exported at the server's `/metrics` beside its own
 * families. A family belongs to the model whose code made it (its
 * `initialize()`, `execute()` or `finalize()`, see `model-context.ts`) and
 * is removed when that model version unloads. In an instance thread the
 * operations are checked in the worker and forwarded to the serving thread.
 *
 * @module
 */
import { ServingError } from "./errors.js";
import { applyMetricOp, checkFamily, CustomMetrics, type MetricFamilyData, type MetricKind, type MetricSeries } from "./custom-metrics.js";
import { currentModel, modelForwarder, writeModelLog, type ForwardedOp } from "./model-context.js";

export type { MetricKind } from "./custom-metrics.js";

/** Options of {@link MetricFamily}. */
export interface MetricFamilyInit {
  /** The family's name (Prometheus rules; not `nv_*`, `tensorbridge_*`, `process_*`, `nodejs_*`). */
  name: string;
  /** What it measures: its `# HELP` line. */
  description: string;
  /** `MetricFamily.COUNTER`, `GAUGE` or `HISTOGRAM`. */
  kind: MetricKind;
  /** A HISTOGRAM's bucket upper bounds, increasing (required for one, refused for the others). */
  buckets?: number[];
}

/** Options of {@link MetricFamily.metric}. */
export interface MetricInit {
  /** Label names and values (strings); every metric of a family has the same label names. */
  labels?: Record<string, string>;
}

/** A worker's own store: checks operations there; the serving thread holds the exported values. */
let workerStore: CustomMetrics | undefined;
const workerOwner = {};

/**
 * A family of metrics (Triton's `pb_utils.MetricFamily`).
 *
 * @example
 * ```ts
 * import { MetricFamily } from "tensorbridge";
 * // in initialize():
 * this.requests = new MetricFamily({ name: "my_requests_total", description: "Requests seen", kind: MetricFamily.COUNTER })
 *   .metric({ labels: { model: "m" } });
 * // in execute():
 * this.requests.increment(requests.length);
 * ```
 */
export class MetricFamily {
  /** A counter: `increment(v)` with v ≥ 0 only. */
  static readonly COUNTER = "COUNTER" as const;
  /** A gauge: `increment(v)` (either sign) and `set(v)`. */
  static readonly GAUGE = "GAUGE" as const;
  /** A histogram: `observe(v)` only. */
  static readonly HISTOGRAM = "HISTOGRAM" as const;

  /** The family's name. */
  readonly name: string;
  /** Its description. */
  readonly description: string;
  /** Its kind. */
  readonly kind: MetricKind;
  /** A histogram's buckets. */
  readonly buckets: readonly number[] | undefined;
  readonly #store: CustomMetrics;
  readonly #data: MetricFamilyData;
  readonly #forward: ((op: ForwardedOp) => void) | undefined;

  /**
   * Makes (or joins, when a family of the same name and definition exists)
   * a family of the model running now.
   *
   * @throws {ServingError} `ERR_METRIC`: a bad name (Prometheus rules, or a
   * prefix of the server's own families), kind or buckets; a definition
   * that differs from an existing family of the same name; outside any
   * model's `initialize()`, `execute()` or `finalize()`.
   */
  constructor(init: MetricFamilyInit) {
    const { name, description, kind, buckets } = init ?? ({} as MetricFamilyInit);
    const b = checkFamily(name, description, kind, buckets);
    const ctx = currentModel();
    const forward = ctx === undefined ? modelForwarder() : undefined;
    if (ctx === undefined && forward === undefined) {
      throw new ServingError("ERR_METRIC", `metric family '${name}' was made outside any model: make it in a model's initialize(), execute() or finalize()`);
    }
    this.#store = ctx?.host.metrics ?? (workerStore ??= new CustomMetrics());
    this.#data = this.#store.family(ctx ?? workerOwner, name, description, kind, b);
    this.#forward = forward;
    this.name = name;
    this.description = description;
    this.kind = kind;
    this.buckets = b;
  }

  /**
   * The metric of one label set (the same one each time for the same labels).
   *
   * @throws {ServingError} `ERR_METRIC`: bad label names or values, or
   * label names that differ from the family's first metric's.
   */
  metric(init: MetricInit = {}): Metric {
    const s = this.#store.series(this.#data, init?.labels);
    // In an instance thread the serving thread makes the series now too, so
    // that a metric nobody has touched yet is on /metrics at 0 (as in-thread
    // and as Triton's), not missing until its first operation.
    this.#forward?.(forwarded(this.#data, s, "create", 0));
    return new Metric(this.#data, s, this.#forward);
  }
}

/** One metric (a label set) of a {@link MetricFamily} (Triton's `pb_utils.Metric`). */
export class Metric {
  readonly #f: MetricFamilyData;
  readonly #s: MetricSeries;
  readonly #forward: ((op: ForwardedOp) => void) | undefined;

  /** @internal made by {@link MetricFamily.metric}. */
  constructor(f: MetricFamilyData, s: MetricSeries, forward: ((op: ForwardedOp) => void) | undefined) {
    this.#f = f;
    this.#s = s;
    this.#forward = forward;
  }

  /** Its labels. */
  get labels(): Readonly<Record<string, string>> {
    return this.#s.labels;
  }

  #op(op: "increment" | "set" | "observe", value: number): void {
    applyMetricOp(this.#f, this.#s, op, value);
    this.#forward?.(forwarded(this.#f, this.#s, op, value));
  }

  /**
   * Adds `value` (default 1). COUNTER: value ≥ 0; GAUGE: either sign.
   *
   * @throws {ServingError} `ERR_METRIC` on a HISTOGRAM, or a negative value on a COUNTER.
   */
  increment(value = 1): void {
    this.#op("increment", value);
  }

  /**
   * Sets a GAUGE's value.
   *
   * @throws {ServingError} `ERR_METRIC` on a COUNTER or HISTOGRAM.
   */
  set(value: number): void {
    this.#op("set", value);
  }

  /**
   * Records one observation in a HISTOGRAM.
   *
   * @throws {ServingError} `ERR_METRIC` on a COUNTER or GAUGE.
   */
  observe(value: number): void {
    this.#op("observe", value);
  }

  /**
   * A COUNTER's or GAUGE's value; a HISTOGRAM's number of observations.
   */
  value(): number {
    return this.#f.kind === "HISTOGRAM" ? this.#s.count : this.#s.value;
  }
}

/** An instance thread's metric operation, as it is posted to the serving thread. */
function forwarded(f: MetricFamilyData, s: MetricSeries, op: Extract<ForwardedOp, { kind: "metric" }>["op"], value: number): ForwardedOp {
  return { kind: "metric", family: { name: f.name, description: f.description, kind: f.kind, buckets: f.buckets === undefined ? undefined : [...f.buckets] }, labels: { ...s.labels }, op, value };
}

/**
 * The serving thread's side of an instance thread's metric operation:
 * applied in the instance's model context (errors there are the
 * worker's, already reported to the model; any other is thrown).
 */
export function applyForwardedMetric(op: Extract<ForwardedOp, { kind: "metric" }>): void {
  const fam = new MetricFamily({ name: op.family.name, description: op.family.description, kind: op.family.kind as MetricKind, ...(op.family.buckets === undefined ? {} : { buckets: op.family.buckets }) });
  const m = fam.metric({ labels: op.labels });
  if (op.op === "create") return;
  if (op.op === "increment") m.increment(op.value);
  else if (op.op === "set") m.set(op.value);
  else m.observe(op.value);
}

/**
 * The serving thread's side of an instance thread's forwarded operation
 * (a Logger line or a metric operation), run in the instance's model
 * context; a metric operation the serving thread refuses (a family of the
 * same name with another definition, made by another model) is logged as
 * the model's error.
 */
export function handleForwardedOp(op: ForwardedOp): void {
  if (op.kind === "log") {
    writeModelLog(currentModel(), op.level, op.message);
    return;
  }
  try {
    applyForwardedMetric(op);
  } catch (e) {
    writeModelLog(currentModel(), "ERROR", `custom metric operation from the instance thread failed: ${e instanceof Error ? e.message : String(e)}`);
  }
}

/**
 * The data of models' custom metric families (Triton's
 * `pb_utils.MetricFamily`), kept in plain objects: the server's
 * `/metrics` renders them beside its own families (src/server/metrics.ts),
 * and nothing here imports prom-client or the server (it is part of the
 * model entry). The model-facing classes are in `metric-family.ts`.
 *
 * @module
 */
import { ServingError } from "./errors.js";

/** The kind of a metric family, as Triton's `pb_utils.MetricFamily.COUNTER|GAUGE|HISTOGRAM`. */
export type MetricKind = "COUNTER" | "GAUGE" | "HISTOGRAM";

/** One label set of a family: its value (counter, gauge) or its histogram. */
export interface MetricSeries {
  /** The labels, in the family's label order. */
  readonly labels: Readonly<Record<string, string>>;
  /** Counter or gauge value. */
  value: number;
  /** Histogram: per-bucket counts (not cumulative), one per bound. */
  readonly counts: Float64Array | undefined;
  /** Histogram: sum of observations. */
  sum: number;
  /** Histogram: number of observations. */
  count: number;
}

/** One family as the server renders it. */
export interface MetricFamilyData {
  /** The family's metric name, as Prometheus shows it. */
  readonly name: string;
  /** The `# HELP` text. */
  readonly description: string;
  /** Counter, gauge or histogram. */
  readonly kind: MetricKind;
  /** Histogram bucket upper bounds (increasing, finite); undefined for other kinds. */
  readonly buckets: readonly number[] | undefined;
  /** Label names, fixed by the family's first metric. */
  labelNames: readonly string[] | undefined;
  /** Label sets by key, in creation order. */
  readonly series: Map<string, MetricSeries>;
  /** Who made it (model contexts); the family goes when the last one unloads. */
  readonly owners: Set<object>;
}

const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
/** Prefixes of the server's own families (Triton's `nv_*`, ours, Node's process metrics). */
const RESERVED = ["nv_", "tensorbridge_", "process_", "nodejs_"];

const bad = (m: string): never => {
  throw new ServingError("ERR_METRIC", m);
};

/** Checks a family's definition; returns its buckets (copied) for a histogram. */
export function checkFamily(name: unknown, description: unknown, kind: unknown, buckets: unknown): number[] | undefined {
  if (typeof name !== "string" || !NAME.test(name)) bad(`metric family name ${JSON.stringify(name)} is not a valid Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)`);
  const n = name as string;
  const reserved = RESERVED.find((p) => n.startsWith(p));
  if (reserved !== undefined) bad(`metric family name '${n}' uses the prefix '${reserved}', which is reserved for the server's own metrics`);
  if (n.startsWith("__")) bad(`metric family name '${n}' starts with '__', which Prometheus reserves`);
  if (typeof description !== "string") bad(`metric family '${n}': description must be a string`);
  if (kind !== "COUNTER" && kind !== "GAUGE" && kind !== "HISTOGRAM") bad(`metric family '${n}': unknown kind ${JSON.stringify(kind)} (use MetricFamily.COUNTER, GAUGE or HISTOGRAM)`);
  if (kind !== "HISTOGRAM") {
    if (buckets !== undefined) bad(`metric family '${n}': buckets are for a HISTOGRAM, not a ${String(kind)}`);
    return undefined;
  }
  if (!Array.isArray(buckets) || buckets.length === 0) bad(`metric family '${n}': a HISTOGRAM needs buckets (increasing upper bounds)`);
  const b = buckets as unknown[];
  for (let i = 0; i < b.length; i++) {
    const v = b[i];
    if (typeof v !== "number" || !Number.isFinite(v)) bad(`metric family '${n}': bucket ${i} is not a finite number`);
    if (i > 0 && (v as number) <= (b[i - 1] as number)) bad(`metric family '${n}': buckets must increase (${String(b[i - 1])} then ${String(v)})`);
  }
  return [...(b as number[])];
}

/** Checks a label set against a family (fixing its label names at its first metric); returns the series key. */
function labelKey(f: MetricFamilyData, labels: unknown): { key: string; labels: Record<string, string> } {
  if (labels === undefined || labels === null) labels = {};
  if (typeof labels !== "object" || Array.isArray(labels)) bad(`metric family '${f.name}': labels must be an object of strings`);
  const l = labels as Record<string, unknown>;
  const names = Object.keys(l).sort();
  for (const k of names) {
    if (!LABEL.test(k) || k.startsWith("__")) bad(`metric family '${f.name}': label name '${k}' is not a valid Prometheus label name`);
    if (f.kind === "HISTOGRAM" && k === "le") bad(`metric family '${f.name}': label name 'le' is reserved in a histogram`);
    if (typeof l[k] !== "string") bad(`metric family '${f.name}': label '${k}' must be a string`);
  }
  if (f.labelNames === undefined) f.labelNames = names;
  else if (names.length !== f.labelNames.length || names.some((k, i) => k !== f.labelNames![i])) {
    bad(`metric family '${f.name}': labels [${names.join(", ")}] differ from the family's labels [${f.labelNames.join(", ")}]`);
  }
  const out: Record<string, string> = {};
  for (const k of names) out[k] = l[k] as string;
  return { key: JSON.stringify(names.map((k) => out[k])), labels: out };
}

/** The custom metric families of one server (or of models run without one). */
export class CustomMetrics {
  readonly #families = new Map<string, MetricFamilyData>();

  /**
   * The family `name` for `owner`: a new one, or the existing one when its
   * definition is the same (Triton shares a family across models).
   *
   * @throws {ServingError} `ERR_METRIC` for a bad definition, or one that
   * differs from the existing family's.
   */
  family(owner: object, name: string, description: string, kind: MetricKind, buckets: number[] | undefined): MetricFamilyData {
    const had = this.#families.get(name);
    if (had !== undefined) {
      const same = had.kind === kind && had.description === description && JSON.stringify(had.buckets) === JSON.stringify(buckets);
      if (!same) bad(`metric family '${name}' already exists with a different kind, description or buckets`);
      had.owners.add(owner);
      return had;
    }
    const f: MetricFamilyData = { name, description, kind, buckets, labelNames: undefined, series: new Map(), owners: new Set([owner]) };
    this.#families.set(name, f);
    return f;
  }

  /** The series of `labels` in family `f` (made on first use). */
  series(f: MetricFamilyData, labels: unknown): MetricSeries {
    const { key, labels: l } = labelKey(f, labels);
    let s = f.series.get(key);
    if (s === undefined) {
      s = { labels: l, value: 0, counts: f.kind === "HISTOGRAM" ? new Float64Array(f.buckets!.length) : undefined, sum: 0, count: 0 };
      f.series.set(key, s);
    }
    return s;
  }

  /** Drops `owner`'s claim on every family; a family nobody claims is removed. */
  release(owner: object): void {
    for (const [name, f] of this.#families) {
      if (f.owners.delete(owner) && f.owners.size === 0) this.#families.delete(name);
    }
  }

  /** True when `f` is still exported. */
  has(f: MetricFamilyData): boolean {
    return this.#families.get(f.name) === f;
  }

  /** The families, in creation order. */
  families(): MetricFamilyData[] {
    return [...this.#families.values()];
  }
}

/** Applies one operation to a series of family `f`, with Triton's rules per kind. */
export function applyMetricOp(f: MetricFamilyData, s: MetricSeries, op: "increment" | "set" | "observe", value: unknown): void {
  if (typeof value !== "number" || Number.isNaN(value)) bad(`metric family '${f.name}': ${op}() needs a number, got ${JSON.stringify(value)}`);
  const v = value as number;
  switch (op) {
    case "increment":
      if (f.kind === "HISTOGRAM") bad(`metric family '${f.name}' is a HISTOGRAM: use observe(), not increment()`);
      if (f.kind === "COUNTER" && v < 0) bad(`metric family '${f.name}' is a COUNTER: it cannot be incremented by a negative value (${v})`);
      s.value += v;
      return;
    case "set":
      if (f.kind !== "GAUGE") bad(`metric family '${f.name}' is a ${f.kind}: only a GAUGE can be set()`);
      s.value = v;
      return;
    case "observe": {
      if (f.kind !== "HISTOGRAM") bad(`metric family '${f.name}' is a ${f.kind}: only a HISTOGRAM can observe()`);
      if (!Number.isFinite(v)) bad(`metric family '${f.name}': observe() needs a finite number, got ${v}`);
      const b = f.buckets!;
      for (let i = 0; i < b.length; i++) {
        if (v <= b[i]!) {
          s.counts![i]!++;
          break;
        }
      }
      s.sum += v;
      s.count += 1;
      return;
    }
  }
}

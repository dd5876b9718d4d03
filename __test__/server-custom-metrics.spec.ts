/**
 * Models' custom metrics (Triton's pb_utils.MetricFamily / Metric): each
 * kind in /metrics with its HELP, TYPE, labels and values beside the
 * server's own families, histogram buckets, removal at unload, instance
 * threads, and every misuse as an ERR_METRIC (Triton's INVALID_ARG).
 */
import test from "ava";

import { MetricFamily, type MetricFamilyInit } from "../src/model.js";
import { CustomMetrics } from "../src/runtime/custom-metrics.js";
import { ServingError } from "../src/runtime/errors.js";
import { runInModel, type ModelContext } from "../src/runtime/model-context.js";
import { cleanupRepos, http, makeRepo, startTestServer } from "./server-helpers.js";

test.after.always(() => cleanupRepos());

const CONFIG = `
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
`;
const THREADS = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;

/** Counts requests per label, sets a gauge to X[0], observes every X in a histogram. */
const METRICS = (prefix: string) => `
import { InferenceResponse, MetricFamily, type InferenceRequest, type InitializeArgs } from "tensorbridge";
export default class WithMetrics {
  requests: any; errors: any; depth: any; sizes: any;
  initialize(args: InitializeArgs) {
    const counter = new MetricFamily({ name: "${prefix}_requests_total", description: "Requests seen by the model", kind: MetricFamily.COUNTER });
    this.requests = counter.metric({ labels: { model: args.model_name, outcome: "ok" } });
    this.errors = counter.metric({ labels: { model: args.model_name, outcome: "error" } });
    this.depth = new MetricFamily({ name: "${prefix}_depth", description: "Last X[0]", kind: MetricFamily.GAUGE }).metric();
    this.sizes = new MetricFamily({ name: "${prefix}_x", description: "Every X value", kind: MetricFamily.HISTOGRAM, buckets: [1, 5, 10] }).metric({ labels: { model: args.model_name } });
  }
  async execute(requests: InferenceRequest[]) {
    await new Promise((r) => setTimeout(r, 1));
    for (const r of requests) {
      const x = r.getInputTensorByName("X")!.data() as Float32Array;
      this.requests.increment(1);
      this.depth.set(x[0]!);
      this.depth.increment(0.5);
      for (const v of x) this.sizes.observe(v);
    }
    this.errors.increment(0);
    return requests.map((r) => new InferenceResponse({ outputTensors: { Y: Tensor.from(new Float32Array([this.requests.value(), this.depth.value(), this.sizes.value()])) } }));
  }
}
import { Tensor } from "tensorbridge";
`;

const infer = (x: number[]) => ({ inputs: [{ name: "X", datatype: "FP32", shape: [x.length], data: x }] });

/** The lines of one family in the exposition text. */
const family = (text: string, name: string) => text.split("\n").filter((l) => l === `# HELP ${name}` || l.startsWith(`# HELP ${name} `) || l.startsWith(`# TYPE ${name} `) || l.startsWith(`${name}{`) || l.startsWith(`${name} `) || l.startsWith(`${name}_`));

test("each kind appears in /metrics with HELP, TYPE, labels and values beside the server's families; histogram buckets are cumulative", async (t) => {
  const repo = makeRepo({ mm: { config: CONFIG, model: METRICS("mm") } });
  const server = await startTestServer(repo);
  try {
    for (const x of [[0.5, 3], [7, 20]]) {
      const r = await http(server, "POST", "/v2/models/mm/infer", infer(x));
      t.is(r.status, 200, r.body.toString());
    }
    const last = await http(server, "POST", "/v2/models/mm/infer", infer([2]));
    // value(): the counter's 3 requests, the gauge's 2 + 0.5, the histogram's 5 observations.
    t.deepEqual(last.json.outputs[0].data, [3, 2.5, 5]);
    const m = await http(server, "GET", "/metrics");
    t.is(m.status, 200);
    const text = m.body.toString();
    t.true(text.includes("nv_inference_request_success{"), "the server's own families are still there");
    t.deepEqual(family(text, "mm_requests_total"), [
      "# HELP mm_requests_total Requests seen by the model",
      "# TYPE mm_requests_total counter",
      'mm_requests_total{model="mm",outcome="ok"} 3',
      'mm_requests_total{model="mm",outcome="error"} 0',
    ]);
    t.deepEqual(family(text, "mm_depth"), ["# HELP mm_depth Last X[0]", "# TYPE mm_depth gauge", "mm_depth 2.5"]);
    t.deepEqual(family(text, "mm_x"), [
      "# HELP mm_x Every X value",
      "# TYPE mm_x histogram",
      'mm_x_bucket{model="mm",le="1"} 1',
      'mm_x_bucket{model="mm",le="5"} 3',
      'mm_x_bucket{model="mm",le="10"} 4',
      'mm_x_bucket{model="mm",le="+Inf"} 5',
      'mm_x_sum{model="mm"} 32.5',
      'mm_x_count{model="mm"} 5',
    ]);
  } finally {
    await server.close();
  }
});

test("a model's families leave /metrics when it unloads; a family two models share stays until both are gone", async (t) => {
  const repo = makeRepo({ a: { config: CONFIG, model: METRICS("shared") }, b: { config: CONFIG, model: METRICS("shared") }, own: { config: CONFIG, model: METRICS("own") } });
  const server = await startTestServer(repo);
  try {
    for (const m of ["a", "b", "own"]) t.is((await http(server, "POST", `/v2/models/${m}/infer`, infer([1]))).status, 200);
    let text = (await http(server, "GET", "/metrics")).body.toString();
    t.true(text.includes('own_requests_total{model="own",outcome="ok"} 1'));
    t.true(text.includes('shared_requests_total{model="a",outcome="ok"} 1'));
    t.true(text.includes('shared_requests_total{model="b",outcome="ok"} 1'));
    t.is((await http(server, "POST", "/v2/repository/models/own/unload")).status, 200);
    t.is((await http(server, "POST", "/v2/repository/models/a/unload")).status, 200);
    text = (await http(server, "GET", "/metrics")).body.toString();
    t.false(text.includes("own_"), "the unloaded model's families are gone");
    t.true(text.includes("# TYPE shared_requests_total counter"), "b still holds the shared family");
    t.is((await http(server, "POST", "/v2/repository/models/b/unload")).status, 200);
    text = (await http(server, "GET", "/metrics")).body.toString();
    t.false(text.includes("shared_"), "the last owner unloaded");
    // Loaded again: the families come back, from zero.
    t.is((await http(server, "POST", "/v2/repository/models/own/load")).status, 200);
    t.is((await http(server, "POST", "/v2/models/own/infer", infer([4]))).status, 200);
    text = (await http(server, "GET", "/metrics")).body.toString();
    t.true(text.includes('own_requests_total{model="own",outcome="ok"} 1'), text);
  } finally {
    await server.close();
  }
});

test("an instance thread's metric operations reach the serving thread's /metrics", async (t) => {
  const repo = makeRepo({ th: { config: `${CONFIG}\n${THREADS}`, model: METRICS("th") } });
  const server = await startTestServer(repo);
  try {
    for (const x of [[1], [6, 12]]) t.is((await http(server, "POST", "/v2/models/th/infer", infer(x))).status, 200);
    const text = (await http(server, "GET", "/metrics")).body.toString();
    t.deepEqual(family(text, "th_requests_total").slice(2), ['th_requests_total{model="th",outcome="ok"} 2', 'th_requests_total{model="th",outcome="error"} 0']);
    t.deepEqual(family(text, "th_depth").slice(2), ["th_depth 6.5"]);
    t.true(text.includes('th_x_bucket{model="th",le="10"} 2') && text.includes('th_x_count{model="th"} 3'), text);
    t.is((await http(server, "POST", "/v2/repository/models/th/unload")).status, 200);
    t.false((await http(server, "GET", "/metrics")).body.toString().includes("th_"));
  } finally {
    await server.close();
  }
});

/** A family maker: a valid counter definition with `init`'s changes. */
const fam = (init: Partial<MetricFamilyInit>) => () => new MetricFamily({ name: "ok_name", description: "d", kind: "COUNTER", ...init } as MetricFamilyInit);

/** Runs `fn` as model code of a bare host, and returns the ERR_METRIC it throws. */
function metricError(t: import("ava").ExecutionContext, fn: () => unknown, ctx: ModelContext): ServingError {
  const e = t.throws(() => runInModel(ctx, fn), { instanceOf: ServingError });
  t.is(e.code, "ERR_METRIC", e.message);
  t.is(e.tritonCode, "INVALID_ARG");
  return e;
}

test("every misuse is an ERR_METRIC (INVALID_ARG), with a message that says what is wrong", (t) => {
  const ctx: ModelContext = { name: "m", version: 1, host: { logger: { info() {}, warn() {}, error() {} }, verbose: false, metrics: new CustomMetrics() } };
  const other: ModelContext = { ...ctx, name: "other" };
  // Names: Prometheus rules, and the server's own prefixes.
  t.regex(metricError(t, fam({ name: "1bad" }), ctx).message, /not a valid Prometheus metric name/);
  t.regex(metricError(t, fam({ name: "has-dash" }), ctx).message, /not a valid Prometheus metric name/);
  t.regex(metricError(t, fam({ name: "nv_inference_count" }), ctx).message, /reserved for the server's own metrics/);
  t.regex(metricError(t, fam({ name: "tensorbridge_x" }), ctx).message, /reserved/);
  t.regex(metricError(t, fam({ kind: "SUMMARY" as never }), ctx).message, /unknown kind/);
  t.regex(metricError(t, fam({ description: 3 as never }), ctx).message, /description must be a string/);
  // Buckets: a histogram needs increasing finite ones; the others take none.
  t.regex(metricError(t, fam({ kind: "HISTOGRAM" }), ctx).message, /needs buckets/);
  t.regex(metricError(t, fam({ kind: "HISTOGRAM", buckets: [1, 1] }), ctx).message, /must increase/);
  t.regex(metricError(t, fam({ kind: "HISTOGRAM", buckets: [1, Infinity] }), ctx).message, /not a finite number/);
  t.regex(metricError(t, fam({ kind: "GAUGE", buckets: [1] }), ctx).message, /buckets are for a HISTOGRAM/);
  // Outside any model.
  const outside = t.throws(() => new MetricFamily({ name: "ok_name", description: "d", kind: "COUNTER" }), { instanceOf: ServingError });
  t.is(outside.code, "ERR_METRIC");
  t.regex(outside.message, /outside any model/);
  // The same name again: the same definition shares the family (same series); another one is refused.
  const c1 = runInModel(ctx, fam({}));
  const c2 = runInModel(other, fam({}));
  const a = c1.metric({ labels: { k: "v" } });
  a.increment(2);
  t.is(c2.metric({ labels: { k: "v" } }).value(), 2, "one family, one series");
  t.regex(metricError(t, fam({ kind: "GAUGE" }), ctx).message, /already exists with a different/);
  t.regex(metricError(t, fam({ description: "other" }), ctx).message, /already exists with a different/);
  // Labels: names, values, and the family's label names fixed by its first metric.
  t.regex(metricError(t, () => c1.metric({ labels: { "bad-name": "x" } }), ctx).message, /not a valid Prometheus label name/);
  t.regex(metricError(t, () => c1.metric({ labels: { __reserved: "x" } }), ctx).message, /not a valid Prometheus label name/);
  t.regex(metricError(t, () => c1.metric({ labels: { k: 1 as never } }), ctx).message, /must be a string/);
  t.regex(metricError(t, () => c1.metric({ labels: { j: "x" } }), ctx).message, /differ from the family's labels \[k\]/);
  t.regex(metricError(t, () => c1.metric(), ctx).message, /differ from the family's labels/);
  const h = runInModel(ctx, fam({ name: "h", kind: "HISTOGRAM", buckets: [1] }));
  t.regex(metricError(t, () => h.metric({ labels: { le: "1" } }), ctx).message, /'le' is reserved/);
  // Operations per kind (Triton: COUNTER increment, GAUGE increment and set, HISTOGRAM observe).
  t.regex(metricError(t, () => a.increment(-1), ctx).message, /cannot be incremented by a negative value/);
  t.regex(metricError(t, () => a.set(1), ctx).message, /only a GAUGE can be set/);
  t.regex(metricError(t, () => a.observe(1), ctx).message, /only a HISTOGRAM can observe/);
  t.regex(metricError(t, () => a.increment(Number.NaN), ctx).message, /needs a number/);
  const hm = h.metric();
  t.regex(metricError(t, () => hm.increment(1), ctx).message, /use observe\(\)/);
  t.regex(metricError(t, () => hm.set(1), ctx).message, /only a GAUGE can be set/);
  t.regex(metricError(t, () => hm.observe(Infinity), ctx).message, /finite/);
  const g = runInModel(ctx, fam({ name: "g", kind: "GAUGE" })).metric();
  g.increment(-3);
  g.increment(1);
  t.is(g.value(), -2, "a gauge goes both ways");
  g.set(7);
  t.is(g.value(), 7);
  t.regex(metricError(t, () => g.observe(1), ctx).message, /only a HISTOGRAM can observe/);
  t.is(a.value(), 2, "refused operations changed nothing");
  // Unload: families leave with their last owner.
  ctx.host.metrics.release(ctx);
  t.deepEqual(
    ctx.host.metrics.families().map((f) => f.name),
    ["ok_name"],
    "the shared family stays with its other owner",
  );
  ctx.host.metrics.release(other);
  t.deepEqual(ctx.host.metrics.families(), []);
});

test("a label value and a description are escaped in the exposition text", async (t) => {
  const repo = makeRepo({
    esc: {
      config: CONFIG,
      model: `
import { InferenceResponse, MetricFamily, type InferenceRequest } from "tensorbridge";
export default class Esc {
  initialize() {
    new MetricFamily({ name: "esc_total", description: "line one\\nback\\\\slash", kind: MetricFamily.COUNTER }).metric({ labels: { v: 'q"uote\\nnl' } }).increment(4);
  }
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => new InferenceResponse({ outputTensors: { Y: r.getInputTensorByName("X")! } }));
  }
}`,
    },
  });
  const server = await startTestServer(repo);
  try {
    const text = (await http(server, "GET", "/metrics")).body.toString();
    t.deepEqual(family(text, "esc_total"), ["# HELP esc_total line one\\nback\\\\slash", "# TYPE esc_total counter", 'esc_total{v="q\\"uote\\nnl"} 4']);
  } finally {
    await server.close();
  }
});

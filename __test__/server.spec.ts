/**
 * The KServe v2 / Triton HTTP server, through HTTP (undici): every endpoint,
 * JSON and binary tensors for every dtype, and every error path. One server
 * (port 0, 127.0.0.1) serves the read-mostly tests; tests that load, unload
 * or stop get their own.
 */
import anyTest, { type TestFn } from "ava";

import { floatToBf16Bits, floatToHalfBits } from "../src/server/half.js";
import type { InferenceServer } from "../src/server/server.js";
import {
  ADD_SUB,
  binaryRequest,
  bytesElements,
  bytesOf,
  cleanupRepos,
  http,
  makeRepo,
  parseBinaryResponse,
  startTestServer,
} from "./server-helpers.js";
import {
  ALL_TYPES,
  BAD_CONFIG,
  BAD_FORCE,
  BATCHED,
  FAULTY,
  INIT_ARGS,
  INIT_THROWS,
  NO_CLASS,
  SLOW,
  SYNTAX_ERROR_MODEL,
  deviceModel,
} from "./fixtures/serving/models.js";

const test = anyTest as TestFn<{ server: InferenceServer; repo: string }>;

/**
 * Two instances; each execute() waits (up to 10 s) until both instances are
 * inside execute() at once, and answers whether they were ("met") and which
 * instance it is: concurrency shown by a barrier, not by timing.
 */
const BARRIER = {
  config: `
input { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "OUT" data_type: TYPE_STRING dims: [ 2 ] }
instance_group [ { count: 2 kind: KIND_CPU } ]
`,
  model: `
import { InferenceResponse, Tensor, type InferenceRequest, type InitializeArgs } from "tensorbridge";
let inside = 0;
const waiters: (() => void)[] = [];
export default class Barrier {
  private name = "";
  initialize(args: InitializeArgs) { this.name = args.model_instance_name; }
  async execute(requests: InferenceRequest[]) {
    inside++;
    if (inside >= 2) for (const w of waiters.splice(0)) w();
    const met = inside >= 2 || (await new Promise<boolean>((resolve) => {
      const timer = setTimeout(() => resolve(false), 10_000);
      waiters.push(() => { clearTimeout(timer); resolve(true); });
    }));
    inside--;
    return requests.map(() => new InferenceResponse({ outputTensors: { OUT: Tensor.fromBytes([met ? "met" : "alone", this.name]) } }));
  }
}
`,
};

test.before(async (t) => {
  const repo = makeRepo({
    barrier: BARRIER,
    add_sub: ADD_SUB,
    all_types: ALL_TYPES,
    batched: BATCHED,
    faulty: FAULTY,
    slow: SLOW,
    init_args: INIT_ARGS,
    force_yes: deviceModel("yes"),
    force_no: deviceModel("no"),
    force_default: deviceModel(undefined),
    bad_force: BAD_FORCE,
    bad_config: BAD_CONFIG,
    init_throws: INIT_THROWS,
    no_class: NO_CLASS,
    syntax_error_model: SYNTAX_ERROR_MODEL,
    versioned: { ...ADD_SUB, config: ADD_SUB.config.replace('name: "add_sub"', 'name: "versioned"') + "\nversion_policy: { all { } }", versions: [1, 2, 3] },
  });
  t.context.repo = repo;
  t.context.server = await startTestServer(repo, { strictReadiness: false, bodyLimit: 1024 * 1024 });
});

test.after.always(async (t) => {
  await t.context.server?.close();
  cleanupRepos();
});

const ADD_SUB_JSON = {
  inputs: [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [0.5, 0.25, -1, 10] },
  ],
};

// ---------------------------------------------------------------- health, metadata

test("GET /v2/health/live and /v2/health/ready answer 200", async (t) => {
  t.is((await http(t.context.server, "GET", "/v2/health/live")).status, 200);
  t.is((await http(t.context.server, "GET", "/v2/health/ready")).status, 200);
});

test("GET /v2 lists the extensions perf_analyzer needs", async (t) => {
  const r = await http(t.context.server, "GET", "/v2");
  t.is(r.status, 200);
  t.is(r.json.name, "tensorbridge");
  t.regex(r.json.version, /^\d+\.\d+\.\d+/);
  t.true(Array.isArray(r.json.extensions));
  for (const e of ["binary_tensor_data", "statistics", "model_repository", "model_configuration"]) t.true(r.json.extensions.includes(e), e);
});

test("GET /v2/models/{m}/ready and /versions/{v}/ready", async (t) => {
  const s = t.context.server;
  t.is((await http(s, "GET", "/v2/models/add_sub/ready")).status, 200);
  t.is((await http(s, "GET", "/v2/models/add_sub/versions/1/ready")).status, 200);
  // Triton: an unknown model or version, or one that failed to load, is "not ready" (400), not an error.
  for (const path of ["/v2/models/nope/ready", "/v2/models/add_sub/versions/9/ready", "/v2/models/bad_force/ready"]) {
    const r = await http(s, "GET", path);
    t.is(r.status, 400, path);
    t.deepEqual(r.json, { error: "Model version not ready" }, path);
  }
});

test("GET /v2/models/{m} metadata, with and without a version; batch dim shown as -1", async (t) => {
  const s = t.context.server;
  const r = await http(s, "GET", "/v2/models/add_sub");
  t.is(r.status, 200);
  t.deepEqual(r.json, {
    name: "add_sub",
    versions: ["1"],
    platform: "tensorbridge",
    inputs: [
      { name: "INPUT0", datatype: "FP32", shape: [4] },
      { name: "INPUT1", datatype: "FP32", shape: [4] },
    ],
    outputs: [
      { name: "OUTPUT0", datatype: "FP32", shape: [4] },
      { name: "OUTPUT1", datatype: "FP32", shape: [4] },
    ],
  });
  t.deepEqual((await http(s, "GET", "/v2/models/add_sub/versions/1")).json, r.json);
  const b = await http(s, "GET", "/v2/models/batched");
  t.deepEqual(b.json.inputs, [{ name: "IN", datatype: "INT32", shape: [-1, 2] }]);
  t.deepEqual((await http(s, "GET", "/v2/models/all_types")).json.inputs.find((i: { name: string }) => i.name === "IN_BYTES"), {
    name: "IN_BYTES",
    datatype: "BYTES",
    shape: [-1, -1],
  });
  t.deepEqual((await http(s, "GET", "/v2/models/versioned")).json.versions, ["1", "2", "3"]);
  t.is((await http(s, "GET", "/v2/models/nope")).status, 404);
  t.is((await http(s, "GET", "/v2/models/add_sub/versions/abc")).status, 400);
});

test("GET /v2/models/{m}/config returns the model config as JSON", async (t) => {
  const s = t.context.server;
  const r = await http(s, "GET", "/v2/models/add_sub/config");
  t.is(r.status, 200);
  t.is(r.json.name, "add_sub");
  t.is(r.json.backend, "tensorbridge");
  t.is(r.json.max_batch_size, 0);
  t.deepEqual(r.json.input[0].dims, [4]);
  t.is(r.json.input[0].data_type, "TYPE_FP32");
  t.deepEqual(r.json.instance_group[0].kind, "KIND_CPU");
  t.is((await http(s, "GET", "/v2/models/add_sub/versions/1/config")).json.name, "add_sub");
  t.is((await http(s, "GET", "/v2/models/nope/config")).status, 404);
});

// ---------------------------------------------------------------- inference: JSON and binary

test("POST infer with JSON tensors (add_sub), id echoed", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/add_sub/infer", { id: "req-7", ...ADD_SUB_JSON });
  t.is(r.status, 200, r.body.toString());
  t.is(r.headers["content-type"], "application/json");
  t.is(r.json.id, "req-7");
  t.is(r.json.model_name, "add_sub");
  t.is(r.json.model_version, "1");
  t.deepEqual(r.json.outputs, [
    { name: "OUTPUT0", datatype: "FP32", shape: [4], data: [1.5, 2.25, 2, 14] },
    { name: "OUTPUT1", datatype: "FP32", shape: [4], data: [0.5, 1.75, 4, -6] },
  ]);
});

test("POST infer on an explicit version, nested JSON data, requested outputs only", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/versioned/versions/2/infer", {
    inputs: [
      { name: "INPUT0", shape: [4], datatype: "FP32", data: [[1, 2], [3, 4]] },
      { name: "INPUT1", shape: [4], datatype: "FP32", data: [1, 1, 1, 1] },
    ],
    outputs: [{ name: "OUTPUT1" }],
  });
  t.is(r.status, 200, r.body.toString());
  t.is(r.json.model_version, "2");
  t.deepEqual(r.json.outputs, [{ name: "OUTPUT1", datatype: "FP32", shape: [4], data: [0, 1, 2, 3] }]);
  t.is((await http(t.context.server, "POST", "/v2/models/versioned/infer", ADD_SUB_JSON)).json.model_version, "3", "newest by default");
});

test("POST infer with binary tensors in and out (Inference-Header-Content-Length)", async (t) => {
  const a = new Float32Array([1, 2, 3, 4]);
  const b = new Float32Array([4, 3, 2, 1]);
  const req = binaryRequest(
    [
      { name: "INPUT0", datatype: "FP32", shape: [4], bytes: bytesOf(a) },
      { name: "INPUT1", datatype: "FP32", shape: [4], bytes: bytesOf(b) },
    ],
    { outputs: [{ name: "OUTPUT0", parameters: { binary_data: true } }, { name: "OUTPUT1", parameters: { binary_data: true } }] },
  );
  const r = await http(t.context.server, "POST", "/v2/models/add_sub/infer", req.body, req.headers);
  t.is(r.status, 200, r.body.toString());
  t.is(r.headers["content-type"], "application/octet-stream");
  const { header, outputs } = parseBinaryResponse(r);
  t.deepEqual(header.outputs[0], { name: "OUTPUT0", datatype: "FP32", shape: [4], parameters: { binary_data_size: 16 } });
  t.deepEqual(Array.from(new Float32Array(new Uint8Array(outputs.get("OUTPUT0")!).buffer)), [5, 5, 5, 5]);
  t.deepEqual(Array.from(new Float32Array(new Uint8Array(outputs.get("OUTPUT1")!).buffer)), [-3, -1, 1, 3]);
});

test("binary_data_output request parameter; mixed JSON and binary outputs", async (t) => {
  const all = await http(t.context.server, "POST", "/v2/models/add_sub/infer", { ...ADD_SUB_JSON, parameters: { binary_data_output: true } });
  t.is(all.status, 200);
  const p = parseBinaryResponse(all);
  t.is(p.outputs.size, 2);
  const mixed = await http(t.context.server, "POST", "/v2/models/add_sub/infer", {
    ...ADD_SUB_JSON,
    outputs: [{ name: "OUTPUT0", parameters: { binary_data: true } }, { name: "OUTPUT1" }],
  });
  const m = parseBinaryResponse(mixed);
  t.deepEqual([...m.outputs.keys()], ["OUTPUT0"]);
  t.deepEqual(m.header.outputs[1].data, [0.5, 1.75, 4, -6]);
});

test("binary inputs at unaligned offsets are accepted (copied to align)", async (t) => {
  const a = new Float32Array([1, 2, 3, 4]);
  const b = new Float32Array([1, 1, 1, 1]);
  // a 1-byte-longer JSON header shifts the tensors off 4-byte alignment
  for (const pad of ["", " ", "  ", "   "]) {
    const header = Buffer.from(
      JSON.stringify({
        inputs: [
          { name: "INPUT0", datatype: "FP32", shape: [4], parameters: { binary_data_size: 16 } },
          { name: "INPUT1", datatype: "FP32", shape: [4], parameters: { binary_data_size: 16 } },
        ],
      }) + pad,
    );
    const body = Buffer.concat([header, Buffer.from(a.buffer), Buffer.from(b.buffer)]);
    const r = await http(t.context.server, "POST", "/v2/models/add_sub/infer", body, { "inference-header-content-length": String(header.length) });
    t.is(r.status, 200, r.body.toString());
    t.deepEqual(r.json.outputs[0].data, [2, 3, 4, 5]);
  }
});

/** Sample values per dtype: [JSON data, expected bytes] */
function samples(dtype: string): { json: unknown[]; bytes: Uint8Array; back?: unknown[] } {
  switch (dtype) {
    case "BOOL":
      return { json: [true, false, true, true], bytes: new Uint8Array([1, 0, 1, 1]) };
    case "UINT8":
      return { json: [0, 1, 128, 255], bytes: new Uint8Array([0, 1, 128, 255]) };
    case "INT8":
      return { json: [-128, -1, 0, 127], bytes: bytesOf(new Int8Array([-128, -1, 0, 127])) };
    case "UINT16":
      return { json: [0, 1, 300, 65535], bytes: bytesOf(new Uint16Array([0, 1, 300, 65535])) };
    case "INT16":
      return { json: [-32768, -2, 2, 32767], bytes: bytesOf(new Int16Array([-32768, -2, 2, 32767])) };
    case "UINT32":
      return { json: [0, 7, 70000, 4294967295], bytes: bytesOf(new Uint32Array([0, 7, 70000, 4294967295])) };
    case "INT32":
      return { json: [-2147483648, -5, 5, 2147483647], bytes: bytesOf(new Int32Array([-2147483648, -5, 5, 2147483647])) };
    case "UINT64":
      return { json: [0, 1, 2 ** 40, 2 ** 53 - 1], bytes: bytesOf(new BigUint64Array([0n, 1n, 2n ** 40n, 2n ** 53n - 1n])) };
    case "INT64":
      return { json: [-(2 ** 53 - 1), -1, 0, 2 ** 50], bytes: bytesOf(new BigInt64Array([-(2n ** 53n - 1n), -1n, 0n, 2n ** 50n])) };
    case "FP16":
      return { json: [0, 1.5, -2, 65504], bytes: bytesOf(new Uint16Array([0, 1.5, -2, 65504].map(floatToHalfBits))) };
    case "BF16":
      return { json: [0, 1.5, -2, 256], bytes: bytesOf(new Uint16Array([0, 1.5, -2, 256].map(floatToBf16Bits))) };
    case "FP32":
      return { json: [0.5, -1.25, 3, 1e10], bytes: bytesOf(new Float32Array([0.5, -1.25, 3, 1e10])) };
    case "FP64":
      return { json: [0.1, -1e-300, 3, 1e300], bytes: bytesOf(new Float64Array([0.1, -1e-300, 3, 1e300])) };
    case "BYTES":
      return { json: ["a", "", "héllo", "x y"], bytes: bytesElements(["a", "", "héllo", "x y"]) };
  }
  throw new Error(dtype);
}

const ALL_DTYPES = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64", "BYTES"];

for (const dtype of ALL_DTYPES) {
  test(`${dtype}: JSON in → JSON out, binary in → binary out, JSON in → binary out`, async (t) => {
    const s = samples(dtype);
    const name = `IN_${dtype}`;
    const out = `OUT_${dtype}`;
    const j = await http(t.context.server, "POST", "/v2/models/all_types/infer", {
      inputs: [{ name, datatype: dtype, shape: [2, 2], data: s.json }],
    });
    t.is(j.status, 200, j.body.toString());
    t.deepEqual(j.json.outputs, [{ name: out, datatype: dtype, shape: [2, 2], data: s.json }]);

    const req = binaryRequest([{ name, datatype: dtype, shape: [2, 2], bytes: s.bytes }], {
      outputs: [{ name: out, parameters: { binary_data: true } }],
    });
    const b = await http(t.context.server, "POST", "/v2/models/all_types/infer", req.body, req.headers);
    t.is(b.status, 200, b.body.toString());
    const p = parseBinaryResponse(b);
    t.deepEqual(p.header.outputs, [{ name: out, datatype: dtype, shape: [2, 2], parameters: { binary_data_size: s.bytes.length } }]);
    t.deepEqual(new Uint8Array(p.outputs.get(out)!), new Uint8Array(s.bytes));

    const jb = await http(t.context.server, "POST", "/v2/models/all_types/infer", {
      inputs: [{ name, datatype: dtype, shape: [2, 2], data: s.json }],
      parameters: { binary_data_output: true },
    });
    t.deepEqual(new Uint8Array(parseBinaryResponse(jb).outputs.get(out)!), new Uint8Array(s.bytes));
  });
}

test("JSON INT64/UINT64 inputs beyond 2^53 keep every digit", async (t) => {
  const int64 = ["9007199254740993", "-9223372036854775808", "9223372036854775807", "-9007199254740993"];
  const uint64 = ["9007199254740993", "18446744073709551615", "0", "12345678901234567890"];
  for (const [dtype, values] of [["INT64", int64], ["UINT64", uint64]] as const) {
    const body = `{"inputs":[{"name":"IN_${dtype}","datatype":"${dtype}","shape":[2,2],"data":[${values.join(",")}]}]}`;
    const r = await http(t.context.server, "POST", "/v2/models/all_types/infer", body, { "content-type": "application/json" });
    t.is(r.status, 200, r.body.toString());
    t.true(r.body.toString().includes(`"data":[${values.join(",")}]`), r.body.toString());
  }
  const over = `{"inputs":[{"name":"IN_INT64","datatype":"INT64","shape":[1],"data":[9223372036854775808]}]}`;
  const r = await http(t.context.server, "POST", "/v2/models/all_types/infer", over, { "content-type": "application/json" });
  t.is(r.status, 400);
  t.regex(String((r.json as { error: string }).error), /9223372036854775808/);
});

test("zero-element tensors pass (Triton server issue 6960)", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/all_types/infer", {
    inputs: [{ name: "IN_FP32", datatype: "FP32", shape: [0, 3], data: [] }],
  });
  t.is(r.status, 200, r.body.toString());
  t.deepEqual(r.json.outputs, [{ name: "OUT_FP32", datatype: "FP32", shape: [0, 3], data: [] }]);
  const req = binaryRequest([{ name: "IN_INT64", datatype: "INT64", shape: [2, 0], bytes: new Uint8Array(0) }], { parameters: { binary_data_output: true } });
  const b = await http(t.context.server, "POST", "/v2/models/all_types/infer", req.body, req.headers);
  t.is(b.status, 200, b.body.toString());
  t.is(parseBinaryResponse(b).outputs.get("OUT_INT64")!.length, 0);
});

test("several inputs in one binary body, mixed with a JSON input", async (t) => {
  const req = binaryRequest(
    [
      { name: "IN_UINT8", datatype: "UINT8", shape: [1, 3], bytes: new Uint8Array([1, 2, 3]) },
      { name: "IN_FP64", datatype: "FP64", shape: [1, 1], bytes: bytesOf(new Float64Array([2.5])) },
    ],
    {},
  );
  // splice a JSON input into the header
  const hl = Number(req.headers["inference-header-content-length"]);
  const header = JSON.parse(req.body.subarray(0, hl).toString());
  header.inputs.push({ name: "IN_INT16", datatype: "INT16", shape: [1, 2], data: [-1, 1] });
  const h = Buffer.from(JSON.stringify(header));
  const body = Buffer.concat([h, req.body.subarray(hl)]);
  const r = await http(t.context.server, "POST", "/v2/models/all_types/infer", body, { "inference-header-content-length": String(h.length) });
  t.is(r.status, 200, r.body.toString());
  t.deepEqual(
    r.json.outputs.map((o: { name: string; data: unknown }) => [o.name, o.data]),
    [
      ["OUT_UINT8", [1, 2, 3]],
      ["OUT_FP64", [2.5]],
      ["OUT_INT16", [-1, 1]],
    ],
  );
});

test("batching model: batch dim, and dynamic batching groups queued requests", async (t) => {
  const one = await http(t.context.server, "POST", "/v2/models/batched/infer", { inputs: [{ name: "IN", datatype: "INT32", shape: [3, 2], data: [1, 2, 3, 4, 5, 6] }] });
  t.is(one.status, 200, one.body.toString());
  t.deepEqual(one.json.outputs[0], { name: "OUT", datatype: "INT32", shape: [3, 2], data: [2, 4, 6, 8, 10, 12] });
  const many = await Promise.all(
    [1, 2, 3, 4].map((i) => http(t.context.server, "POST", "/v2/models/batched/infer", { inputs: [{ name: "IN", datatype: "INT32", shape: [1, 2], data: [i, i] }] })),
  );
  many.forEach((r, i) => t.deepEqual(r.json.outputs[0].data, [2 * (i + 1), 2 * (i + 1)]));
  const batchSizes = many.map((r) => r.json.outputs[1].data[0] as number);
  t.true(Math.max(...batchSizes) > 1, `requests were batched: ${batchSizes.join(",")}`);
  const tooBig = await http(t.context.server, "POST", "/v2/models/batched/infer", { inputs: [{ name: "IN", datatype: "INT32", shape: [9, 2], data: Array.from({ length: 18 }, () => 0) }] });
  t.is(tooBig.status, 400);
  t.regex(tooBig.json.error, /batch-size must be <= 8/);
});

test("initialize() gets Triton's args; the request carries id, parameters, requested outputs", async (t) => {
  const r = await http(t.context.server, "POST", "/v2/models/init_args/infer", {
    id: "abc",
    parameters: { p: "v", n: 3, b: true },
    inputs: [{ name: "IN", datatype: "INT32", shape: [1], data: [1] }],
  });
  t.is(r.status, 200, r.body.toString());
  const got = JSON.parse(r.json.outputs[0].data[0]);
  t.deepEqual(Object.keys(got.args).toSorted(), [
    "model_config",
    "model_instance_device_id",
    "model_instance_kind",
    "model_instance_name",
    "model_name",
    "model_repository",
    "model_version",
  ]);
  t.is(got.args.model_name, "init_args");
  t.is(got.args.model_version, "1");
  t.is(got.args.model_instance_kind, "CPU");
  t.is(got.args.model_instance_name, "init_args_0_0");
  t.is(got.args.model_instance_device_id, "0");
  t.true(got.args.model_repository.endsWith("/init_args"));
  const cfg = JSON.parse(got.args.model_config);
  t.is(cfg.name, "init_args");
  t.deepEqual(cfg.parameters, { custom: { string_value: "hello" } });
  t.is(got.requestId, "abc");
  t.deepEqual(got.parameters, { p: "v", n: 3, b: true });
  t.deepEqual(got.requested, ["ARGS"]);
  t.true(got.missing, "getInputTensorByName of an absent input is undefined");
  t.deepEqual(got.inputs, ["IN"]);
  t.is(got.modelName, "init_args");
  t.is(got.modelVersion, 1);
});

test("FORCE_CPU_ONLY_INPUT_TENSORS yes (and default) and no: inputs reach execute on the CPU here", async (t) => {
  for (const m of ["force_yes", "force_no", "force_default"]) {
    const r = await http(t.context.server, "POST", `/v2/models/${m}/infer`, {
      inputs: [
        { name: "A", datatype: "FP32", shape: [1], data: [1] },
        { name: "B", datatype: "BYTES", shape: [1], data: ["x"] },
      ],
    });
    t.is(r.status, 200, r.body.toString());
    t.deepEqual(r.json.outputs[0].data, [true, true], m);
  }
  const cfgNo = await http(t.context.server, "GET", "/v2/models/force_no/config");
  t.deepEqual(cfgNo.json.parameters, { FORCE_CPU_ONLY_INPUT_TENSORS: { string_value: "no" } });
});

test.serial("instances: count 2 gives two model objects that serve requests concurrently", async (t) => {
  // Each execute() waits for the other to be inside execute() too: both answer "met" only if they ran at once.
  const rs = await Promise.all(
    [0, 1].map(() => http(t.context.server, "POST", "/v2/models/barrier/infer", { inputs: [{ name: "IN", datatype: "INT32", shape: [1], data: [0] }] })),
  );
  t.deepEqual(rs.map((r) => r.json.outputs[0].data[0]), ["met", "met"]);
  t.deepEqual(rs.map((r) => r.json.outputs[0].data[1]).toSorted(), ["barrier_0_0", "barrier_0_1"]);
});

// ---------------------------------------------------------------- error paths of infer

async function inferError(t: import("ava").ExecutionContext<{ server: InferenceServer }>, path: string, body: string | Buffer | object, status: number, re: RegExp, headers: Record<string, string> = {}) {
  const r = await http(t.context.server, "POST", path, body, headers);
  t.is(r.status, status, r.body.toString());
  t.is(typeof r.json?.error, "string", r.body.toString());
  t.regex(r.json.error, re);
  // the server is still up and serving
  const ok = await http(t.context.server, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON);
  t.is(ok.status, 200);
}

test("error: unknown model and unknown version", async (t) => {
  await inferError(t, "/v2/models/nope/infer", ADD_SUB_JSON, 404, /unknown model: 'nope'/);
  await inferError(t, "/v2/models/add_sub/versions/5/infer", ADD_SUB_JSON, 404, /version 5 is not found/);
  await inferError(t, "/v2/models/add_sub/versions/0/infer", ADD_SUB_JSON, 400, /invalid model version/);
});

test("error: a model that failed to load", async (t) => {
  await inferError(t, "/v2/models/bad_force/infer", ADD_SUB_JSON, 400, /has no available versions.*FORCE_CPU_ONLY_INPUT_TENSORS/);
});

test("error: wrong dtype", async (t) => {
  await inferError(
    t,
    "/v2/models/add_sub/infer",
    { inputs: [{ ...ADD_SUB_JSON.inputs[0], datatype: "INT32" }, ADD_SUB_JSON.inputs[1]] },
    400,
    /input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'/,
  );
});

test("error: wrong shape", async (t) => {
  await inferError(
    t,
    "/v2/models/add_sub/infer",
    { inputs: [{ name: "INPUT0", shape: [2, 2], datatype: "FP32", data: [1, 2, 3, 4] }, ADD_SUB_JSON.inputs[1]] },
    400,
    /unexpected shape for input 'INPUT0' for model 'add_sub'. Expected \[4\], got \[2,2\]/,
  );
});

test("error: missing input, unknown input, duplicate input", async (t) => {
  await inferError(t, "/v2/models/add_sub/infer", { inputs: [ADD_SUB_JSON.inputs[0]] }, 400, /missing required input\(s\) \['INPUT1'\]/);
  await inferError(
    t,
    "/v2/models/add_sub/infer",
    { inputs: [...ADD_SUB_JSON.inputs, { name: "INPUT9", shape: [1], datatype: "FP32", data: [1] }] },
    400,
    /unexpected inference input 'INPUT9'/,
  );
  await inferError(t, "/v2/models/add_sub/infer", { inputs: [ADD_SUB_JSON.inputs[0], ADD_SUB_JSON.inputs[0]] }, 400, /given more than once/);
  await inferError(t, "/v2/models/add_sub/infer", { ...ADD_SUB_JSON, outputs: [{ name: "NOPE" }] }, 400, /unexpected inference output 'NOPE'/);
});

test("error: malformed JSON and malformed requests", async (t) => {
  const p = "/v2/models/add_sub/infer";
  // Triton answers a body that is not JSON with 500.
  await inferError(t, p, "{not json", 500, /failed to parse the request JSON/);
  await inferError(t, p, "", 400, /empty body/);
  await inferError(t, p, "[1,2]", 400, /must be a JSON object/);
  await inferError(t, p, {}, 400, /'inputs' array/);
  await inferError(t, p, { inputs: [{ shape: [4], datatype: "FP32", data: [1, 2, 3, 4] }] }, 400, /must have a 'name'/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [4], datatype: "FP99", data: [1, 2, 3, 4] }] }, 400, /unknown datatype "FP99"/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [-4], datatype: "FP32", data: [1] }] }, 400, /'shape' array of non-negative integers/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [4], datatype: "FP32" }] }, 400, /has no 'data'/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3] }] }, 400, /needs 4 elements, but 'data' has 3/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, "x"] }] }, 400, /data\[3\] is "x", but FP32 needs a number/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [1], datatype: "INT8", data: [300] }] }, 400, /INT8 needs an integer in \[-128, 127\]/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [1], datatype: "BOOL", data: ["yes"] }] }, 400, /BOOL needs true or false/);
  await inferError(t, p, { inputs: [{ name: "INPUT0", shape: [1], datatype: "BYTES", data: [1] }] }, 400, /BYTES needs a string/);
  await inferError(t, p, { id: 5, ...ADD_SUB_JSON }, 400, /'id' must be a string/);
  await inferError(t, p, { ...ADD_SUB_JSON, parameters: [] }, 400, /'parameters' must be a JSON object/);
  await inferError(t, p, { ...ADD_SUB_JSON, outputs: {} }, 400, /'outputs' must be an array/);
  await inferError(t, p, { ...ADD_SUB_JSON, outputs: [{ name: "OUTPUT0", parameters: { classification: 2 } }] }, 400, /classification extension is not supported/);
  await inferError(t, p, { ...ADD_SUB_JSON, outputs: [{ name: "OUTPUT0", parameters: { binary_data: "yes" } }] }, 400, /binary_data must be true or false/);
});

test("error: bad binary sizes and headers", async (t) => {
  const p = "/v2/models/add_sub/infer";
  const good = binaryRequest([
    { name: "INPUT0", datatype: "FP32", shape: [4], bytes: new Uint8Array(16) },
    { name: "INPUT1", datatype: "FP32", shape: [4], bytes: new Uint8Array(16) },
  ]);
  const hl = Number(good.headers["inference-header-content-length"]);
  // body shorter than binary_data_size claims
  await inferError(t, p, good.body.subarray(0, good.body.length - 4), 400, /binary_data_size 16 goes past the end/, good.headers);
  // extra bytes nobody claims
  await inferError(t, p, Buffer.concat([good.body, Buffer.alloc(3)]), 400, /3 bytes of binary data that no input claims/, good.headers);
  // header length larger than the body
  await inferError(t, p, good.body, 400, /larger than the request body/, { "inference-header-content-length": String(good.body.length + 1) });
  await inferError(t, p, good.body, 400, /must be a non-negative integer/, { "inference-header-content-length": "abc" });
  // header length cuts the JSON
  await inferError(t, p, good.body, 500, /failed to parse the request JSON/, { "inference-header-content-length": String(hl - 2) });
  // size not matching shape × dtype
  const wrong = binaryRequest([
    { name: "INPUT0", datatype: "FP32", shape: [4], bytes: new Uint8Array(12) },
    { name: "INPUT1", datatype: "FP32", shape: [4], bytes: new Uint8Array(16) },
  ]);
  await inferError(t, p, wrong.body, 400, /got 12 bytes of binary data, but shape \[4\] of FP32 needs 16 bytes/, wrong.headers);
  // both data and binary_data_size
  const both = Buffer.from(JSON.stringify({ inputs: [{ name: "INPUT0", datatype: "FP32", shape: [1], data: [1], parameters: { binary_data_size: 4 } }] }));
  await inferError(t, p, Buffer.concat([both, Buffer.alloc(4)]), 400, /exactly one of 'data', 'binary_data_size'/, { "inference-header-content-length": String(both.length) });
  // negative size
  const neg = Buffer.from(JSON.stringify({ inputs: [{ name: "INPUT0", datatype: "FP32", shape: [1], parameters: { binary_data_size: -4 } }] }));
  await inferError(t, p, neg, 400, /binary_data_size must be a non-negative integer/, { "inference-header-content-length": String(neg.length) });
  // malformed BYTES elements
  const bytes = binaryRequest([{ name: "IN_BYTES", datatype: "BYTES", shape: [1, 2], bytes: bytesElements(["a"]) }]);
  await inferError(t, "/v2/models/all_types/infer", bytes.body, 400, /expected 2 BYTES elements for its shape, got 1/, bytes.headers);
  const trunc = binaryRequest([{ name: "IN_BYTES", datatype: "BYTES", shape: [1, 1], bytes: new Uint8Array([9, 0, 0, 0, 65]) }]);
  await inferError(t, "/v2/models/all_types/infer", trunc.body, 400, /goes past the end of its data/, trunc.headers);
  const cut = binaryRequest([{ name: "IN_BYTES", datatype: "BYTES", shape: [1, 1], bytes: new Uint8Array([1, 0]) }]);
  await inferError(t, "/v2/models/all_types/infer", cut.body, 400, /inside an element's 4-byte length prefix/, cut.headers);
});

test("error: oversized body gets 413 with a JSON error", async (t) => {
  const big = Buffer.alloc(1024 * 1024 + 10, 32);
  const r = await http(t.context.server, "POST", "/v2/models/add_sub/infer", big, { "content-type": "application/json" });
  t.is(r.status, 413);
  t.regex(r.json.error, /larger than this server's limit of 1048576 bytes/);
  t.is((await http(t.context.server, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON)).status, 200);
});

function faultyBody(mode: string) {
  return { parameters: { mode }, inputs: [{ name: "IN", datatype: "FP32", shape: [1], data: [1] }] };
}

test("error: a model that throws, rejects or returns errors fails only its request", async (t) => {
  const p = "/v2/models/faulty/infer";
  const body = faultyBody;
  t.is((await http(t.context.server, "POST", p, body("ok"))).status, 200);
  await inferError(t, p, body("throw"), 500, /boom: the model threw/);
  await inferError(t, p, body("reject"), 400, /rejected on purpose/);
  await inferError(t, p, body("unavailable"), 503, /try later/);
  await inferError(t, p, body("response-error"), 404, /no such thing/);
  await inferError(t, p, body("string-error"), 500, /plain string error/);
  await inferError(t, p, body("wrong-dtype"), 500, /output 'OUT' has data type FP64, but the config says TYPE_FP32/);
  await inferError(t, p, body("wrong-shape"), 500, /output 'OUT' has shape \[2\], but the config expects \[1\]/);
  await inferError(t, p, body("unknown-output"), 500, /output 'NOPE' is not in the model's config/);
  await inferError(t, p, body("unnamed"), 500, /has no name/);
  await inferError(t, p, body("duplicate"), 500, /appears more than once/);
  await inferError(t, p, body("count"), 500, /must return one InferenceResponse per request \(1\), got 0 responses/);
  await inferError(t, p, body("not-response"), 500, /is not an InferenceResponse/);
  await inferError(t, p, body("not-array"), 500, /got string/);
  await inferError(t, p, { ...body("missing"), outputs: [{ name: "OUT" }] }, 500, /requested output 'OUT' was not produced/);
  t.is((await http(t.context.server, "POST", p, body("ok"))).status, 200);
});

test("error: unknown endpoint is a JSON 404", async (t) => {
  const r = await http(t.context.server, "GET", "/v2/nothing/here");
  t.is(r.status, 404);
  t.regex(r.json.error, /unknown endpoint: GET \/v2\/nothing\/here/);
});

// ---------------------------------------------------------------- load errors, repository index

test("models that fail to load are listed with a reason and the others serve", async (t) => {
  const idx = await http(t.context.server, "POST", "/v2/repository/index");
  t.is(idx.status, 200);
  const byName = new Map((idx.json as { name: string; state?: string; reason?: string; version?: string }[]).map((e) => [e.name, e]));
  t.is(byName.get("add_sub")?.state, "READY");
  t.is(byName.get("add_sub")?.version, "1");
  const reason = (n: string) => byName.get(n)?.reason ?? "";
  t.is(byName.get("bad_force")?.state, "UNAVAILABLE");
  t.regex(reason("bad_force"), /parameter FORCE_CPU_ONLY_INPUT_TENSORS must be "yes" or "no", got "maybe"/);
  t.regex(reason("bad_config"), /bad_config\/config\.pbtxt:3:13: expected ':' after field name "data_type"/);
  t.regex(reason("init_throws"), /initialize\(\) of instance init_throws_0_0 failed: initialize failed on purpose/);
  t.regex(reason("no_class"), /must export a model class/);
  t.regex(reason("syntax_error_model"), /failed to import/);
  const ready = await http(t.context.server, "POST", "/v2/repository/index", { ready: true });
  t.true((ready.json as { state: string }[]).every((e) => e.state === "READY"));
  t.false((ready.json as { name: string }[]).some((e) => e.name === "bad_force"));
  // Triton 2.51's 500s (server-repository-api.spec.ts checks their words).
  t.is((await http(t.context.server, "POST", "/v2/repository/index", { ready: "yes" })).status, 500);
  t.is((await http(t.context.server, "POST", "/v2/repository/index", "{oops")).status, 500);
});

// ---------------------------------------------------------------- statistics and metrics

test("GET stats: Triton's statistics shape, every count and ns an integer", async (t) => {
  const s = t.context.server;
  for (let i = 0; i < 3; i++) await http(s, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON);
  await http(s, "POST", "/v2/models/add_sub/infer", { inputs: [ADD_SUB_JSON.inputs[0]] }); // a failure
  const r = await http(s, "GET", "/v2/models/add_sub/stats");
  t.is(r.status, 200);
  t.is(r.json.model_stats.length, 1);
  const st = r.json.model_stats[0];
  t.is(st.name, "add_sub");
  t.is(st.version, "1");
  t.true(st.inference_count >= 3);
  t.true(st.execution_count >= 3);
  t.true(st.inference_stats.success.count >= 3);
  t.is(st.inference_stats.fail.count, 0, "a request refused before the model is not counted, as in Triton");
  t.true(st.last_inference > 1_600_000_000_000);
  const walk = (v: unknown, path: string): void => {
    if (typeof v === "number") t.true(Number.isInteger(v) && v >= 0, `${path} = ${v}`);
    else if (Array.isArray(v)) v.forEach((x, i) => walk(x, `${path}[${i}]`));
    else if (v && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${path}.${k}`);
  };
  walk(r.json, "stats");
  for (const k of ["success", "fail", "queue", "compute_input", "compute_infer", "compute_output", "cache_hit", "cache_miss"]) {
    t.deepEqual(Object.keys(st.inference_stats[k]).toSorted(), ["count", "ns"], k);
  }
  t.is(st.batch_stats[0].batch_size, 1);
  t.deepEqual((await http(s, "GET", "/v2/models/add_sub/versions/1/stats")).json.model_stats[0].name, "add_sub");
  const all = await http(s, "GET", "/v2/models/stats");
  t.true((all.json.model_stats as { name: string }[]).some((m) => m.name === "add_sub"));
  // Triton's statistics call words an unknown model (version) its own way, as INVALID_ARG.
  t.deepEqual(await http(s, "GET", "/v2/models/nope/stats").then((a) => [a.status, a.json]), [400, { error: "requested model 'nope' is not available" }]);
  t.deepEqual(await http(s, "GET", "/v2/models/add_sub/versions/7/stats").then((a) => [a.status, a.json]), [
    400,
    { error: "requested model version is not available for model 'add_sub'" },
  ]);
});

test("GET /metrics: Prometheus text with per-model counters and latency histograms", async (t) => {
  const s = t.context.server;
  await http(s, "POST", "/v2/models/add_sub/infer", ADD_SUB_JSON);
  await http(s, "POST", "/v2/models/add_sub/infer", { inputs: [] });
  const r = await http(s, "GET", "/metrics");
  t.is(r.status, 200);
  t.regex(String(r.headers["content-type"]), /text\/plain/);
  const text = r.body.toString();
  t.regex(text, /^nv_inference_request_success\{model="add_sub",version="1"\} [1-9]\d*$/m);
  // As Triton 2.51: a request refused before the model ({ inputs: [] }) is no failure (REJECTED stays 0); each reason has a series.
  t.regex(text, /^nv_inference_request_failure\{model="add_sub",version="1",reason="REJECTED"\} 0$/m);
  for (const reason of ["CANCELED", "BACKEND", "OTHER"]) t.regex(text, new RegExp(`^nv_inference_request_failure\\{model="add_sub",version="1",reason="${reason}"\\} \\d+$`, "m"));
  t.regex(text, /^nv_inference_count\{model="add_sub",version="1"\} [1-9]\d*$/m);
  t.regex(text, /^nv_inference_exec_count\{model="add_sub",version="1"\} [1-9]\d*$/m);
  t.regex(text, /^nv_inference_request_duration_us\{model="add_sub",version="1"\} \d+$/m);
  t.regex(text, /^nv_inference_compute_infer_duration_us\{model="add_sub",version="1"\} \d+$/m);
  t.regex(text, /^tensorbridge_inference_request_duration_seconds_bucket\{le="0.001",model="add_sub",version="1"\} \d+$/m);
  t.regex(text, /^tensorbridge_inference_request_duration_seconds_count\{model="add_sub",version="1"\} [1-9]\d*$/m);
  t.regex(text, /^tensorbridge_model_ready\{model="add_sub",version="1"\} 1$/m);
});

// ---------------------------------------------------------------- shared memory endpoints (disabled here)

test("system and CUDA shared memory are refused unless --allow-client-shm", async (t) => {
  const s = t.context.server;
  const reg = await http(s, "POST", "/v2/systemsharedmemory/region/r0/register", { key: "/tb_x", byte_size: 16 });
  t.is(reg.status, 403);
  t.regex(reg.json.error, /--allow-client-shm=true/);
  t.deepEqual((await http(s, "GET", "/v2/systemsharedmemory/status")).json, []);
  t.is((await http(s, "GET", "/v2/systemsharedmemory/region/r0/status")).status, 404);
  const cuda = await http(s, "POST", "/v2/cudasharedmemory/region/r0/register", { raw_handle: { b64: "" }, device_id: 0, byte_size: 16 });
  t.is(cuda.status, 403);
  t.regex(cuda.json.error, /--allow-client-shm=true/);
  t.deepEqual((await http(s, "GET", "/v2/cudasharedmemory/status")).json, []);
  const shmInput = await http(s, "POST", "/v2/models/add_sub/infer", {
    inputs: [
      { name: "INPUT0", datatype: "FP32", shape: [4], parameters: { shared_memory_region: "r0", shared_memory_byte_size: 16 } },
      ADD_SUB_JSON.inputs[1],
    ],
  });
  t.is(shmInput.status, 400);
  t.regex(shmInput.json.error, /Unable to find shared memory region: 'r0'/);
});

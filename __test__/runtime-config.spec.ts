import test, { type ExecutionContext } from "ava";

import type { DType } from "../src/dtype.js";
import {
  type TritonDataType,
  FORCE_CPU_ONLY_INPUT_TENSORS,
  configTypeToDtype,
  dtypeToConfigType,
  forceCpuOnlyInputs,
  modelConfigFromJson,
  parseModelConfig,
} from "../src/runtime/config.js";
import { ConfigError, ServingError } from "../src/runtime/errors.js";

const ADD_SUB = `
name: "add_sub"
backend: "tensorbridge"
input [
  { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "INPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
output [
  { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] },
  { name: "OUTPUT1" data_type: TYPE_FP32 dims: [ 4 ] }
]
instance_group [{ kind: KIND_CPU }]
`;

function invalid(t: ExecutionContext, src: string, line: number, column: number, includes: string): void {
  const err = t.throws(() => parseModelConfig(src, { file: "repo/m/config.pbtxt", modelName: "m" }), { instanceOf: ConfigError });
  t.is(err?.code, "ERR_CONFIG_INVALID", err?.message);
  t.is(err?.line, line, err?.message);
  t.is(err?.column, column, err?.message);
  t.true(err?.message.startsWith(`repo/m/config.pbtxt:${line}:${column}: `), err?.message);
  t.true(err?.message.includes(includes), err?.message);
}

test("add_sub parses into Triton's JSON form with defaults filled in", (t) => {
  const cfg = parseModelConfig(ADD_SUB, { modelName: "add_sub" });
  t.is(cfg.name, "add_sub");
  t.is(cfg.backend, "tensorbridge");
  t.is(cfg.platform, "");
  t.is(cfg.max_batch_size, 0);
  t.deepEqual(cfg.version_policy, { latest: { num_versions: 1 } });
  t.deepEqual(cfg.input[0], {
    name: "INPUT0",
    data_type: "TYPE_FP32",
    format: "FORMAT_NONE",
    dims: [4],
    is_shape_tensor: false,
    allow_ragged_batch: false,
    optional: false,
    is_non_linear_format_io: false,
  });
  t.deepEqual(cfg.output[1], {
    name: "OUTPUT1",
    data_type: "TYPE_FP32",
    dims: [4],
    label_filename: "",
    is_shape_tensor: false,
    is_non_linear_format_io: false,
  });
  t.deepEqual(cfg.instance_group, [
    { name: "add_sub_0", kind: "KIND_CPU", count: 1, gpus: [], secondary_devices: [], profile: [], passive: false, host_policy: "" },
  ]);
  t.deepEqual(cfg.parameters, {});
  t.is(cfg.dynamic_batching, undefined);
  // key order follows model_config.proto
  t.deepEqual(Object.keys(cfg).slice(0, 8), ["name", "platform", "backend", "runtime", "version_policy", "max_batch_size", "input", "output"]);
  // JSON round trip is stable (it is what initialize() receives)
  t.deepEqual(JSON.parse(JSON.stringify(cfg)), cfg);
});

test("every TYPE_* maps to a dtype and back; TYPE_STRING is BYTES", (t) => {
  const pairs: [string, string][] = [
    ["TYPE_BOOL", "BOOL"],
    ["TYPE_UINT8", "UINT8"],
    ["TYPE_UINT16", "UINT16"],
    ["TYPE_UINT32", "UINT32"],
    ["TYPE_UINT64", "UINT64"],
    ["TYPE_INT8", "INT8"],
    ["TYPE_INT16", "INT16"],
    ["TYPE_INT32", "INT32"],
    ["TYPE_INT64", "INT64"],
    ["TYPE_FP16", "FP16"],
    ["TYPE_FP32", "FP32"],
    ["TYPE_FP64", "FP64"],
    ["TYPE_STRING", "BYTES"],
    ["TYPE_BF16", "BF16"],
  ];
  for (const [c, d] of pairs) {
    t.is(configTypeToDtype(c), d as DType);
    t.is(dtypeToConfigType(d as DType), c as TritonDataType);
  }
  t.is(configTypeToDtype("TYPE_INVALID"), undefined);
  t.is(configTypeToDtype("FP32"), undefined);
  t.is(configTypeToDtype("constructor"), undefined);
});

test("dims with -1, batching, dynamic_batching and version policies", (t) => {
  const cfg = parseModelConfig(
    `name: "m" max_batch_size: 8
     input { name: "X" data_type: TYPE_INT64 dims: [ -1, 3 ] optional: true }
     output { name: "Y" data_type: TYPE_STRING dims: -1 }
     dynamic_batching { preferred_batch_size: [ 2, 4 ] max_queue_delay_microseconds: 100 }
     version_policy: { specific { versions: [1, 3] } }`,
    { modelName: "m" },
  );
  t.deepEqual(cfg.input[0]!.dims, [-1, 3]);
  t.true(cfg.input[0]!.optional);
  t.deepEqual(cfg.output[0]!.dims, [-1]);
  t.is(cfg.dynamic_batching?.max_queue_delay_microseconds, 100);
  t.deepEqual(cfg.dynamic_batching?.preferred_batch_size, [2, 4]);
  t.deepEqual(cfg.version_policy, { specific: { versions: [1, 3] } });
  t.deepEqual(parseModelConfig('name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 } version_policy { all {} }').version_policy, {
    all: {},
  });
});

test("empty dims are fine with a batch dim only", (t) => {
  t.deepEqual(parseModelConfig('max_batch_size: 4 input { name: "x" data_type: TYPE_FP32 }', { modelName: "m" }).input[0]!.dims, []);
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 }', 1, 7, 'input "x" must specify dims');
});

test("instance_group: count, kind, gpus, default names", (t) => {
  const cfg = parseModelConfig(
    `name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 }
     instance_group [ { count: 3 kind: KIND_CPU }, { name: "g" kind: KIND_GPU gpus: [0, 1] count: 2 }, { kind: KIND_AUTO }, { gpus: [2] } ]`,
  );
  t.deepEqual(
    cfg.instance_group.map((g) => [g.name, g.kind, g.count, g.gpus]),
    [
      ["m_0", "KIND_CPU", 3, []],
      ["g", "KIND_GPU", 2, [0, 1]],
      ["m_2", "KIND_CPU", 1, []],
      ["m_3", "KIND_GPU", 1, [2]],
    ],
  );
  t.deepEqual(parseModelConfig('name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 } instance_group { kind: KIND_GPU }').instance_group[0]!.gpus, [0]);
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\ninstance_group { count: -1 }', 2, 18, "count must be >= 1");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\ninstance_group { kind: KIND_CPU gpus: 0 }', 2, 33, "has kind KIND_CPU but lists gpus");
  invalid(t, 'instance_group { kind: KIND_TPU }', 1, 24, "unknown value KIND_TPU");
});

test("parameters: string_value map, FORCE_CPU_ONLY_INPUT_TENSORS yes/no", (t) => {
  const base = 'name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 }\n';
  const yes = parseModelConfig(base);
  t.true(forceCpuOnlyInputs(yes), "default is yes");
  const no = parseModelConfig(base + 'parameters: { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value: {string_value:"no"}}');
  t.false(forceCpuOnlyInputs(no));
  t.deepEqual(no.parameters, { FORCE_CPU_ONLY_INPUT_TENSORS: { string_value: "no" } });
  t.true(forceCpuOnlyInputs(parseModelConfig(base + 'parameters { key: "FORCE_CPU_ONLY_INPUT_TENSORS" value { string_value: "yes" } }')));
  const many = parseModelConfig(base + 'parameters [{ key: "a" value: { string_value: "1" } }, { key: "b" value: {} }]\nparameters { key: "c" value { string_value: "3" } }');
  t.deepEqual(many.parameters, { a: { string_value: "1" }, b: { string_value: "" }, c: { string_value: "3" } });
});

for (const bad of ["No", "YES", "true", "", "0", "yes "]) {
  test(`FORCE_CPU_ONLY_INPUT_TENSORS ${JSON.stringify(bad)} is a load error naming parameter and value`, (t) => {
    const src = `name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 }\nparameters: { key: "${FORCE_CPU_ONLY_INPUT_TENSORS}" value: {string_value:"${bad}"}}`;
    const err = t.throws(() => parseModelConfig(src, { file: "c.pbtxt" }), { instanceOf: ServingError });
    t.is(err?.code, "ERR_MODEL_LOAD");
    t.true(err?.message.includes("FORCE_CPU_ONLY_INPUT_TENSORS"), err?.message);
    t.true(err?.message.includes(JSON.stringify(bad)), err?.message);
    t.true(err?.message.startsWith("c.pbtxt:2:1: "), err?.message);
  });
}

test("name: filled from the directory, mismatch is an error", (t) => {
  t.is(parseModelConfig('input { name: "x" data_type: TYPE_FP32 dims: 1 }', { modelName: "dir" }).name, "dir");
  invalid(t, 'name: "other"\ninput { name: "x" data_type: TYPE_FP32 dims: 1 }', 1, 1, 'model name "other" does not match its directory "m"');
});

test("backend and platform: tensorbridge or empty", (t) => {
  t.is(parseModelConfig('backend: "tensorbridge" input { name: "x" data_type: TYPE_FP32 dims: 1 }', { modelName: "m" }).backend, "tensorbridge");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\nbackend: "python"', 2, 1, 'backend "python" is not served by tensorbridge');
  invalid(t, 'platform: "onnxruntime_onnx"', 1, 1, 'platform "onnxruntime_onnx" is not served');
});

test("schema errors: unknown fields, wrong types, ranges, repeats, oneofs", (t) => {
  invalid(t, 'name: "m"\nfoo: 1', 2, 1, 'unknown field "foo" (expected one of: name, platform');
  invalid(t, 'input { name: "x" colour: 1 }', 1, 19, 'unknown field "colour" in "input"');
  invalid(t, "max_batch_size: 1.5", 1, 17, 'field "max_batch_size" expects an integer');
  invalid(t, 'max_batch_size: "8"', 1, 17, "expects an integer");
  invalid(t, "max_batch_size: 99999999999", 1, 17, "out of range for int32");
  invalid(t, "name: 5", 1, 7, 'field "name" expects a quoted string');
  invalid(t, 'name: "m" name: "m"', 1, 11, 'non-repeated field "name" is specified more than once');
  invalid(t, "max_batch_size: [1, 2]", 1, 1, "is not repeated");
  invalid(t, "input: 3", 1, 8, 'field "input" is a message');
  invalid(t, "name { }", 1, 6, 'field "name" is a string, not a message');
  invalid(t, 'input { name: "x" data_type: TYPE_FP33 }', 1, 30, "unknown value TYPE_FP33");
  invalid(t, 'input { name: "x" data_type: "TYPE_FP32" }', 1, 30, "expects one of");
  invalid(t, "response_cache { enable: maybe }", 1, 26, "expects true or false");
  invalid(t, "version_policy { latest {} all {} }", 1, 28, 'another member of oneof "policy_choice"');
  invalid(t, 'parameters { value { string_value: "x" } }', 1, 12, 'has no "key"');
  invalid(t, 'parameters { key: "a" extra: 1 }', 1, 23, "unknown field \"extra\" in a map entry");
  invalid(t, 'parameters: "x"', 1, 13, "needs entries like { key: ... value: ... }");
});

test("semantic errors: dims, data_type, duplicate names, unsupported scheduling", (t) => {
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: [0] }', 1, 40, "dims must be integers >= 1, or -1");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: [-2] }', 1, 40, "got -2");
  invalid(t, 'input { name: "x" dims: [1] }', 1, 7, 'input "x" must set data_type');
  invalid(t, 'input { data_type: TYPE_FP32 dims: [1] }', 1, 7, "input 0 has no name");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\ninput { name: "x" data_type: TYPE_FP32 dims: 1 }', 2, 7, 'input name "x" is used more than once');
  invalid(t, "max_batch_size: -1", 1, 1, "max_batch_size must be >= 0");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\nsequence_batching { }', 2, 1, "sequence_batching is not supported");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\nensemble_scheduling { }', 2, 1, "ensemble_scheduling is not supported");
  invalid(t, 'max_batch_size: 2 input { name: "x" data_type: TYPE_FP32 dims: 1 }\ndynamic_batching { preferred_batch_size: 4 }', 2, 1, "preferred_batch_size 4");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\nversion_policy { latest { num_versions: 0 } }', 2, 1, "num_versions must be >= 1");
  invalid(t, 'input { name: "x" data_type: TYPE_FP32 dims: 1 }\nversion_policy { specific { } }', 2, 1, "at least one version");
});

test("fields that Triton configs commonly carry are accepted", (t) => {
  const cfg = parseModelConfig(
    `name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 format: FORMAT_NCHW reshape: { shape: [ ] } }
     optimization { execution_accelerators { gpu_execution_accelerator : [ { name : "tensorrt" parameters { key: "precision_mode" value: "FP16" } } ] } input_pinned_memory { enable: false } }
     model_warmup [{ name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [1] zero_data: true } } }]
     response_cache { enable: true }
     metric_tags { key: "team" value: "a" }
     default_model_filename: "model.ts"
     model_metrics { metric_control [ { metric_identifier { family: "f" } histogram_options { buckets: [0.1, 1, inf] } } ] }`,
  );
  t.deepEqual((cfg.optimization as { input_pinned_memory: unknown }).input_pinned_memory, { enable: false });
  t.is(cfg.model_warmup.length, 1);
  t.deepEqual(cfg.metric_tags, { team: "a" });
  t.is(cfg.default_model_filename, "model.ts");
  t.is(cfg.input[0]!.format, "FORMAT_NCHW");
});

test("model_transaction_policy { decoupled: true } loads (a decoupled model), with dynamic batching too", (t) => {
  const cfg = parseModelConfig('name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 }\nmodel_transaction_policy { decoupled: true }');
  t.deepEqual(cfg.model_transaction_policy, { decoupled: true });
  const batched = parseModelConfig('name: "m" max_batch_size: 4 input { name: "x" data_type: TYPE_FP32 dims: 1 }\ndynamic_batching { }\nmodel_transaction_policy { decoupled: true }');
  t.is(batched.model_transaction_policy?.decoupled, true);
  t.deepEqual(parseModelConfig('name: "m" input { name: "x" data_type: TYPE_FP32 dims: 1 }\nmodel_transaction_policy { decoupled: false }').model_transaction_policy, { decoupled: false });
});

test("a syntax error surfaces as ERR_CONFIG_SYNTAX with its position", (t) => {
  const err = t.throws(() => parseModelConfig('name: "m"\ninput {\n  name "x"\n}', { file: "r/m/config.pbtxt" }), { instanceOf: ConfigError });
  t.is(err?.code, "ERR_CONFIG_SYNTAX");
  t.is(err?.message, `r/m/config.pbtxt:3:8: expected ':' after field name "name" but found string "x"`);
});

test("a colon-less empty list is a syntax error for a scalar field, fine for a message field", (t) => {
  const err = t.throws(() => parseModelConfig('name: "m"\ninput [ { name: "x" data_type: TYPE_FP32 dims [ ] } ]', { file: "c.pbtxt" }), { instanceOf: ConfigError });
  t.is(err?.code, "ERR_CONFIG_SYNTAX");
  t.is(`${err?.line}:${err?.column}`, "2:42");
  t.deepEqual(parseModelConfig('name: "m"\ninput [ ]\noutput [ ]\ninstance_group [ ]\nparameters [ ]').input, []);
});

test("modelConfigFromJson checks and normalises a JSON config", (t) => {
  const cfg = modelConfigFromJson(
    { name: "m", input: [{ name: "x", data_type: "TYPE_FP32", dims: ["4"] }], output: [{ name: "y", data_type: 11, dims: [4] }] },
    { modelName: "m" },
  );
  t.deepEqual(cfg.input[0]!.dims, [4], "int64 as decimal strings are accepted (protobuf JSON)");
  t.is(cfg.output[0]!.data_type, "TYPE_FP32", "enums by number");
  t.is(cfg.instance_group[0]!.name, "m_0");
  t.is(cfg.input[0]!.format, "FORMAT_NONE");
  const bad = (v: unknown, includes: string) => {
    const err = t.throws(() => modelConfigFromJson(v, { modelName: "m" }), { instanceOf: ServingError });
    t.is(err?.code, "ERR_CONFIG_INVALID");
    t.true(err?.message.includes(includes), err?.message);
  };
  bad([], "expected an object");
  bad({ nope: 1 }, 'field "nope": unknown field');
  bad({ input: {} }, 'field "input": expected an array');
  bad({ input: [{ name: 1 }] }, 'field "input[0].name": expected a string');
  bad({ max_batch_size: 1.5 }, "expected an integer");
  bad({ input: [{ name: "x", data_type: "FP32", dims: [1] }] }, "expected one of");
  bad({ parameters: { a: { string_value: 1 } } }, 'field "parameters.a.string_value"');
  bad({ version_policy: { all: {}, latest: {} } }, "oneof");
  bad({ name: "other" }, "does not match its directory");
});

/**
 * The gRPC transport (`inference.GRPCInferenceService`) with @grpc/grpc-js
 * as the client, over the same pinned protos: every RPC, the error paths
 * with Triton 2.51's status codes and messages (as a running Triton 2.51
 * answers them; see src/server/grpc/), ModelStreamInfer for models that are
 * not decoupled, shutdown and a port in use. Decoupled models and
 * cancellation: server-grpc-decoupled.spec.ts; the official Python
 * tritonclient and perf_analyzer: server-grpc-tritonclient.spec.ts.
 */
import { readFileSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";
import { deflateSync, gzipSync } from "node:zlib";

import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import anyTest, { type TestFn } from "ava";

import { decodeModelInferRequest } from "../src/server/grpc/wire.js";
import { requestToInput } from "../src/server/grpc/infer.js";
import { GrpcTransport, type GrpcTransportOptions } from "../src/server/grpc/transport.js";
import type { InferenceServer } from "../src/server/server.js";
import { ALL_TYPES, BATCHED, FAULTY, INIT_ARGS, INIT_THROWS, SLOW } from "./fixtures/serving/models.js";
import { ADD_SUB, ROOT, cleanupRepos, grpcClient, grpcUnary, http, makeRepo, rawGrpcCall, startTestServer, type GrpcClient, type RawGrpcAnswer } from "./server-helpers.js";

/** Echoes IN (FP32 [-1]) as OUT after `delay_ms` (a request parameter): its input tensor lives on after the call that brought it returned. */
const DELAYED_ECHO = {
  config: `
input { name: "IN" data_type: TYPE_FP32 dims: [ -1 ] }
output { name: "OUT" data_type: TYPE_FP32 dims: [ -1 ] }
instance_group [ { count: 4 kind: KIND_CPU } ]
`,
  model: `
import { InferenceResponse, type InferenceRequest } from "tensorbridge";
export default class DelayedEcho {
  async execute(requests: InferenceRequest[]) {
    await new Promise((r) => setTimeout(r, Number(requests[0]!.parameters["delay_ms"] ?? 0)));
    return requests.map((r) => new InferenceResponse({ outputTensors: { OUT: r.getInputTensorByName("IN")!.withName("OUT") } }));
  }
}
`,
};

const test = anyTest as TestFn<{ server: InferenceServer; client: GrpcClient; repo: string }>;

test.before(async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, all_types: ALL_TYPES, batched: BATCHED, faulty: FAULTY, init_args: INIT_ARGS, slow: SLOW, delayed_echo: DELAYED_ECHO });
  t.context.repo = repo;
  t.context.server = await startTestServer(repo, { allowClientShm: true });
  t.context.client = grpcClient(t.context.server);
});

test.after.always(async (t) => {
  t.context.client?.close();
  await t.context.server?.close();
  cleanupRepos();
});

const f32 = (a: number[]): Buffer => Buffer.from(new Float32Array(a).buffer);
const i32 = (a: number[]): Buffer => Buffer.from(new Int32Array(a).buffer);
const input = (name: string, shape = [4], datatype = "FP32", extra: object = {}) => ({ name, datatype, shape, ...extra });
const ADD_SUB_REQ = {
  model_name: "add_sub",
  id: "r1",
  inputs: [input("INPUT0"), input("INPUT1")],
  raw_input_contents: [f32([1, 2, 3, 4]), f32([4, 3, 2, 1])],
};
/** Shared-memory parameters of a 16-byte tensor at `offset` of the region "region". */
const shmParams = (offset: number) => ({
  shared_memory_region: { string_param: "region" },
  shared_memory_byte_size: { int64_param: 16 },
  shared_memory_offset: { int64_param: offset },
});
const paramsReq = (parameters: object, id = "p1") => ({ model_name: "init_args", id, parameters, inputs: [input("IN", [1], "INT32")], raw_input_contents: [i32([1])] });
const faultyReq = (mode: string) => ({ model_name: "faulty", parameters: { mode: { string_param: mode } }, inputs: [input("IN", [1])], raw_input_contents: [f32([1])] });
const slowReq = (id: string, ms: number) => ({ model_name: "slow", id, parameters: { sleep_ms: { int64_param: ms } }, inputs: [input("IN", [1], "INT32")], raw_input_contents: [i32([1])] });
const fromRaw = (b: Buffer): number[] => Array.from(new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.length)));

/** Expects an error answer with this code and message. */
function isError(t: { is: (a: unknown, b: unknown, m?: string) => void; true: (a: boolean, m?: string) => void }, a: { ok: boolean; code?: number; details?: string; value?: unknown }, code: grpc.status, details: string | RegExp): void {
  t.true(!a.ok, `expected an error, got ${JSON.stringify(a.value)}`);
  t.is(a.code, code, `code of: ${a.details}`);
  if (typeof details === "string") t.is(a.details, details);
  else t.true(details.test(a.details ?? ""), `${a.details} matches ${details}`);
}

// --- health, metadata, config, statistics -----------------------------------

test("ServerLive, ServerReady, ModelReady (unknown model or version: not ready, no error; a bad version string: INVALID_ARGUMENT)", async (t) => {
  const c = t.context.client;
  t.deepEqual(await grpcUnary(c, "ServerLive", {}), { ok: true, value: { live: true } });
  t.deepEqual(await grpcUnary(c, "ServerReady", {}), { ok: true, value: { ready: true } });
  t.deepEqual(await grpcUnary(c, "ModelReady", { name: "add_sub" }), { ok: true, value: { ready: true } });
  t.deepEqual(await grpcUnary(c, "ModelReady", { name: "add_sub", version: "1" }), { ok: true, value: { ready: true } });
  t.deepEqual(await grpcUnary(c, "ModelReady", { name: "nope" }), { ok: true, value: {} }, "ready: false is proto3's default: not sent (as Triton)");
  t.deepEqual(await grpcUnary(c, "ModelReady", { name: "add_sub", version: "9" }), { ok: true, value: {} });
  isError(t, await grpcUnary(c, "ModelReady", { name: "add_sub", version: "x" }), grpc.status.INVALID_ARGUMENT, /version/);
});

/** Calls grpc.health.v1.Health/Check; resolves with the status number (1 SERVING, 2 NOT_SERVING). */
function healthCheck(url: string): Promise<number> {
  const ch = new grpc.Client(url, grpc.credentials.createInsecure());
  return new Promise<number>((resolve, reject) =>
    ch.makeUnaryRequest(
      "/grpc.health.v1.Health/Check",
      () => Buffer.alloc(0),
      (b: Buffer) => (b.length >= 2 && b[0] === 0x08 ? b[1]! : 0),
      {},
      (err, v) => (err ? reject(err) : resolve(v!)),
    ),
  ).finally(() => ch.close());
}

test("grpc.health.v1.Health/Check, as Triton registers it: SERVING when the server is ready, NOT_SERVING when not", async (t) => {
  t.is(await healthCheck(t.context.server.grpcAddress!.url), 1);
  // strict readiness and a model that fails to load: not ready
  const server = await startTestServer(makeRepo({ broken: INIT_THROWS }));
  try {
    t.is(await healthCheck(server.grpcAddress!.url), 2);
    t.deepEqual(await grpcUnary(grpcClient(server), "ServerReady", {}), { ok: true, value: {} });
  } finally {
    await server.close();
  }
});

test("ServerMetadata and ModelMetadata answer what HTTP answers; an unknown model is NOT_FOUND with Triton's message", async (t) => {
  const { client: c, server } = t.context;
  const meta = await grpcUnary(c, "ServerMetadata", {});
  t.deepEqual(meta, { ok: true, value: (await http(server, "GET", "/v2")).json });
  for (const m of ["add_sub", "batched"]) {
    const mm = await grpcUnary(c, "ModelMetadata", { name: m });
    t.deepEqual(mm, { ok: true, value: (await http(server, "GET", `/v2/models/${m}`)).json });
  }
  isError(t, await grpcUnary(c, "ModelMetadata", { name: "nope" }), grpc.status.NOT_FOUND, "Request for unknown model: 'nope' is not found");
  isError(t, await grpcUnary(c, "ModelMetadata", { name: "add_sub", version: "9" }), grpc.status.NOT_FOUND, "Request for unknown model: 'add_sub' version 9 is not found");
});

/** `actual` holds every key of `expected` (recursively) with an equal value. */
function assertSubset(t: { deepEqual: (a: unknown, b: unknown, m?: string) => void }, actual: unknown, expected: unknown, path = "config"): void {
  if (expected !== null && typeof expected === "object" && !Array.isArray(expected)) {
    for (const [k, v] of Object.entries(expected)) assertSubset(t, (actual as Record<string, unknown> | undefined)?.[k], v, `${path}.${k}`);
  } else if (Array.isArray(expected)) {
    t.deepEqual(Array.isArray(actual) ? (actual as unknown[]).length : actual, expected.length, `${path}.length`);
    expected.forEach((v, i) => assertSubset(t, (actual as unknown[])[i], v, `${path}[${i}]`));
  } else {
    t.deepEqual(actual, expected, path);
  }
}

test("ModelConfig: every field of the normalised config (as HTTP's /config gives it) comes through protobuf encoding", async (t) => {
  const { server } = t.context;
  const c = grpcClient(server, { defaults: true });
  try {
    for (const m of ["add_sub", "batched", "init_args", "slow"]) {
      const a = await grpcUnary(c, "ModelConfig", { name: m });
      t.true(a.ok, JSON.stringify(a));
      const expected = (await http(server, "GET", `/v2/models/${m}/config`)).json;
      assertSubset(t, a.ok ? a.value.config : undefined, expected);
    }
    const b = await grpcUnary(c, "ModelConfig", { name: "batched" });
    t.is(b.ok && b.value.config.input[0].data_type, "TYPE_INT32");
    t.is(b.ok && b.value.config.max_batch_size, 8);
    t.is(b.ok && b.value.config.dynamic_batching.max_queue_delay_microseconds, 20000);
    const p = await grpcUnary(c, "ModelConfig", { name: "init_args" });
    t.deepEqual(p.ok && p.value.config.parameters, { custom: { string_value: "hello" } });
    isError(t, await grpcUnary(c, "ModelConfig", { name: "nope" }), grpc.status.NOT_FOUND, "Request for unknown model: 'nope' is not found");
  } finally {
    c.close();
  }
});

test.serial("ModelStatistics: counts what gRPC inferences did; an unknown model is Triton's INVALID_ARGUMENT", async (t) => {
  const { client: c, server } = t.context;
  const before = await grpcUnary(c, "ModelStatistics", { name: "add_sub" });
  t.true(before.ok);
  const n0 = before.ok ? (before.value.model_stats[0].inference_stats.success.count ?? 0) : 0;
  for (let i = 0; i < 3; i++) t.true((await grpcUnary(c, "ModelInfer", ADD_SUB_REQ)).ok);
  const after = await grpcUnary(c, "ModelStatistics", { name: "add_sub", version: "1" });
  t.true(after.ok);
  if (after.ok) {
    const s = after.value.model_stats;
    t.is(s.length, 1);
    t.is(s[0].name, "add_sub");
    t.is(s[0].version, "1");
    t.true(s[0].inference_stats.success.count >= n0 + 3);
    const viaHttp = (await http(server, "GET", "/v2/models/add_sub/stats")).json.model_stats[0];
    t.is(s[0].inference_stats.success.count, viaHttp.inference_stats.success.count);
  }
  const all = await grpcUnary(c, "ModelStatistics", {});
  t.true(all.ok && all.value.model_stats.length >= 6);
  isError(t, await grpcUnary(c, "ModelStatistics", { name: "nope" }), grpc.status.INVALID_ARGUMENT, "requested model 'nope' is not available");
  isError(t, await grpcUnary(c, "ModelStatistics", { name: "add_sub", version: "9" }), grpc.status.INVALID_ARGUMENT, "requested model version is not available for model 'add_sub'");
});

test("RepositoryIndex lists the models; repository_name is UNIMPLEMENTED as in Triton", async (t) => {
  const c = t.context.client;
  const a = await grpcUnary(c, "RepositoryIndex", { ready: true });
  t.true(a.ok);
  if (a.ok) t.deepEqual(a.value.models.map((m: { name: string; state: string; version: string }) => `${m.name}:${m.version}:${m.state}`).sort(), [
    "add_sub:1:READY",
    "all_types:1:READY",
    "batched:1:READY",
    "delayed_echo:1:READY",
    "faulty:1:READY",
    "init_args:1:READY",
    "slow:1:READY",
  ]);
  isError(t, await grpcUnary(c, "RepositoryIndex", { repository_name: "other" }), grpc.status.UNIMPLEMENTED, "'repository_name' specification is not supported");
});

test("RepositoryModelLoad / Unload: a config parameter (string_param), Triton's parameter checks, file: without config refused", async (t) => {
  // a server of its own: this test unloads and reloads a model
  const server = await startTestServer(t.context.repo, { noAutoLoad: true });
  await server.registry.load("slow");
  const c = grpcClient(server);
  t.teardown(async () => {
    c.close();
    await server.close();
  });
  isError(t, await grpcUnary(c, "RepositoryModelLoad", { model_name: "add_sub", parameters: { foo: { string_param: "x" } } }), grpc.status.INVALID_ARGUMENT, "unrecognized load parameter 'foo'.");
  isError(t, await grpcUnary(c, "RepositoryModelLoad", { model_name: "add_sub", parameters: { config: { bool_param: true } } }), grpc.status.INVALID_ARGUMENT, "invalid value type for load parameter 'config', expected string_param.");
  isError(t, await grpcUnary(c, "RepositoryModelLoad", { model_name: "add_sub", parameters: { "file:1/model.ts": { string_param: "x" } } }), grpc.status.INVALID_ARGUMENT, "invalid value type for load parameter 'file:1/model.ts', expected bytes_param.");
  // Files without a config (server-load-files.spec.ts loads models from files): Triton's INTERNAL.
  isError(t, await grpcUnary(c, "RepositoryModelLoad", { model_name: "add_sub", parameters: { "file:1/model.ts": { bytes_param: Buffer.from("x") } } }), grpc.status.INTERNAL, /Load parameter 'config' must be specified for model file override/);
  isError(t, await grpcUnary(c, "RepositoryModelUnload", { model_name: "add_sub", parameters: { unload_dependents: { string_param: "yes" } } }), grpc.status.INVALID_ARGUMENT, "invalid value type for 'unload_dependents' parameter, expected bool_param.");

  t.deepEqual(await grpcUnary(c, "RepositoryModelUnload", { model_name: "slow" }), { ok: true, value: {} });
  t.deepEqual(await grpcUnary(c, "ModelReady", { name: "slow" }), { ok: true, value: {} });
  const config = JSON.stringify({ input: [{ name: "IN", data_type: "TYPE_INT32", dims: [1] }], output: [{ name: "INSTANCE", data_type: "TYPE_STRING", dims: [1] }], instance_group: [{ count: 3, kind: "KIND_CPU" }] });
  t.deepEqual(await grpcUnary(c, "RepositoryModelLoad", { model_name: "slow", parameters: { config: { string_param: config } } }), { ok: true, value: {} });
  t.deepEqual(await grpcUnary(c, "ModelReady", { name: "slow" }), { ok: true, value: { ready: true } });
  const cfg = await grpcUnary(c, "ModelConfig", { name: "slow" });
  t.is(cfg.ok && cfg.value.config.instance_group[0].count, 3, "loaded with the config sent");
  isError(t, await grpcUnary(c, "RepositoryModelLoad", { model_name: "nope" }), grpc.status.INTERNAL, /^failed to load 'nope', failed to poll from model repository: /);
  isError(t, await grpcUnary(c, "RepositoryModelLoad", { repository_name: "r", model_name: "slow" }), grpc.status.UNIMPLEMENTED, "'repository_name' specification is not supported");
});

test("TraceSetting and LogSettings: UNAVAILABLE, as a Triton built without tracing and dynamic logging answers", async (t) => {
  const c = t.context.client;
  isError(t, await grpcUnary(c, "TraceSetting", {}), grpc.status.UNAVAILABLE, "the server does not support trace");
  isError(t, await grpcUnary(c, "LogSettings", {}), grpc.status.UNAVAILABLE, "the server does not support dynamic logging");
});

// --- shared memory ------------------------------------------------------------

test.serial("system shared memory: register, status, infer with inputs and outputs in a region, unregister", async (t) => {
  const { client: c } = t.context;
  const key = `tb_grpc_test_${process.pid}`;
  const file = `/dev/shm/${key}`;
  writeFileSync(file, Buffer.alloc(64));
  try {
    // INPUT0 at 0, INPUT1 at 16; outputs at 32 and 48
    writeFileSync(file, Buffer.concat([f32([1, 2, 3, 4]), f32([10, 20, 30, 40]), Buffer.alloc(32)]));
    t.deepEqual(await grpcUnary(c, "SystemSharedMemoryRegister", { name: "region", key, offset: 0, byte_size: 64 }), { ok: true, value: {} });
    isError(t, await grpcUnary(c, "SystemSharedMemoryRegister", { name: "region", key, byte_size: 64 }), grpc.status.INVALID_ARGUMENT, /already registered/);
    const st = await grpcUnary(c, "SystemSharedMemoryStatus", {});
    t.deepEqual(st, { ok: true, value: { regions: { region: { name: "region", key, offset: 0, byte_size: 64 } } } });
    const one = await grpcUnary(c, "SystemSharedMemoryStatus", { name: "region" });
    t.true(one.ok);
    isError(t, await grpcUnary(c, "SystemSharedMemoryStatus", { name: "other" }), grpc.status.NOT_FOUND, /other/);

    const a = await grpcUnary(c, "ModelInfer", {
      model_name: "add_sub",
      inputs: [input("INPUT0", [4], "FP32", { parameters: shmParams(0) }), input("INPUT1", [4], "FP32", { parameters: shmParams(16) })],
      outputs: [{ name: "OUTPUT0", parameters: shmParams(32) }, { name: "OUTPUT1" }],
    });
    t.true(a.ok, JSON.stringify(a));
    if (a.ok) {
      t.deepEqual(a.value.outputs.map((o: { name: string }) => o.name), ["OUTPUT0", "OUTPUT1"]);
      t.is(a.value.outputs[0].parameters, undefined, "no parameters on an output in shared memory, as Triton's gRPC answers");
      t.is(a.value.raw_output_contents.length, 2, "one raw_output_contents entry per output");
      t.is(a.value.raw_output_contents[0].length, 0, "empty for the output in shared memory");
      t.deepEqual(fromRaw(a.value.raw_output_contents[1]), [-9, -18, -27, -36]);
    }
    const bytes = readFileSync(file);
    t.deepEqual(fromRaw(bytes.subarray(32, 48)), [11, 22, 33, 44]);

    // Triton's parameter checks
    isError(t, await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "FP32", { parameters: { shared_memory_region: { string_param: "region" } } }), input("INPUT1")] }), grpc.status.INVALID_ARGUMENT, "'shared_memory_byte_size' must be specified along with 'shared_memory_region' parameter for tensor 'INPUT0'");
    isError(t, await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "FP32", { parameters: { shared_memory_region: { int64_param: 1 }, shared_memory_byte_size: { int64_param: 16 } } }), input("INPUT1")] }), grpc.status.INVALID_ARGUMENT, "invalid value type for 'shared_memory_region' parameter for tensor 'INPUT0', expected string_param.");
    isError(t, await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "FP32", { parameters: { shared_memory_offset: { int64_param: 1 } } }), input("INPUT1")] }), grpc.status.INVALID_ARGUMENT, "'shared_memory_offset' can not be specified without 'shared_memory_region' parameter for tensor 'INPUT0'");
    isError(t, await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "FP32", { parameters: shmParams(0), contents: { fp32_contents: [1, 2, 3, 4] } }), input("INPUT1")] }), grpc.status.INVALID_ARGUMENT, "unexpected 'content' provided when using shared memory for input tensor 'INPUT0' for model 'add_sub'");
    isError(t, await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, outputs: [{ name: "OUTPUT0", parameters: { shared_memory_region: { string_param: "region" }, shared_memory_byte_size: { int64_param: 8 } } }] }), grpc.status.INTERNAL, "shared memory size specified with the request for output 'OUTPUT0' (8 bytes) should be at least 16 bytes to hold the results");

    // over a stream, an output its slot can't hold fails that response, as Triton's allocator does
    const small = { shared_memory_region: { string_param: "region" }, shared_memory_byte_size: { int64_param: 8 } };
    const streamed = await streamAll(c, [{ ...ADD_SUB_REQ, id: "s", outputs: [{ name: "OUTPUT0", parameters: small }] }]);
    t.deepEqual(streamed.messages, [
      {
        error_message: "shared memory size specified with the request for output 'OUTPUT0' (8 bytes) should be at least 16 bytes to hold the results",
        infer_response: { model_name: "add_sub", id: "s", parameters: { triton_final_response: { bool_param: true, parameter_choice: "bool_param" } } },
      },
    ]);

    t.deepEqual(await grpcUnary(c, "SystemSharedMemoryUnregister", { name: "region" }), { ok: true, value: {} });
    t.deepEqual(await grpcUnary(c, "SystemSharedMemoryStatus", {}), { ok: true, value: {} });
    t.deepEqual(await grpcUnary(c, "SystemSharedMemoryUnregister", {}), { ok: true, value: {} }, "all (none left)");
  } finally {
    rmSync(file, { force: true });
  }
});

test("CUDA shared memory: status is empty; register maps raw_handle/device_id/byte_size to the region's checks", async (t) => {
  const c = t.context.client;
  t.deepEqual(await grpcUnary(c, "CudaSharedMemoryStatus", {}), { ok: true, value: {} });
  isError(t, await grpcUnary(c, "CudaSharedMemoryRegister", { name: "g", raw_handle: Buffer.alloc(10), device_id: 0, byte_size: 16 }), grpc.status.INVALID_ARGUMENT, /64 bytes/);
  const r = await grpcUnary(c, "CudaSharedMemoryRegister", { name: "g", raw_handle: Buffer.alloc(64), device_id: 0, byte_size: 16 });
  t.false(r.ok, "a zero handle never opens (no CUDA here, or an invalid handle)");
  t.deepEqual(await grpcUnary(c, "CudaSharedMemoryUnregister", {}), { ok: true, value: {} });
});

test("shared memory RPCs are UNAVAILABLE on a server without --allow-client-shm", async (t) => {
  const server = await startTestServer(t.context.repo, { noAutoLoad: true });
  const c = grpcClient(server);
  try {
    isError(t, await grpcUnary(c, "SystemSharedMemoryRegister", { name: "x", key: "k", byte_size: 4 }), grpc.status.UNAVAILABLE, /--allow-client-shm/);
    isError(t, await grpcUnary(c, "CudaSharedMemoryUnregister", {}), grpc.status.UNAVAILABLE, /--allow-client-shm/);
  } finally {
    c.close();
    await server.close();
  }
});

// --- ModelInfer ---------------------------------------------------------------

test("ModelInfer: add_sub with raw_input_contents; outputs as raw_output_contents; id, model and version echoed", async (t) => {
  const a = await grpcUnary(t.context.client, "ModelInfer", ADD_SUB_REQ);
  t.true(a.ok, JSON.stringify(a));
  if (!a.ok) return;
  const v = a.value;
  t.is(v.model_name, "add_sub");
  t.is(v.model_version, "1");
  t.is(v.id, "r1");
  t.deepEqual(v.outputs, [
    { name: "OUTPUT0", datatype: "FP32", shape: [4] },
    { name: "OUTPUT1", datatype: "FP32", shape: [4] },
  ]);
  t.deepEqual(fromRaw(v.raw_output_contents[0]), [5, 5, 5, 5]);
  t.deepEqual(fromRaw(v.raw_output_contents[1]), [-3, -1, 1, 3]);
  t.is(v.parameters, undefined, "no parameters on a unary response");
});

test("ModelInfer: requested outputs (one, in the requested order), version pinned; extra raw_input_contents are ignored as in Triton", async (t) => {
  const c = t.context.client;
  const a = await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, model_version: "1", outputs: [{ name: "OUTPUT1" }] });
  t.true(a.ok);
  if (a.ok) {
    t.deepEqual(a.value.outputs.map((o: { name: string }) => o.name), ["OUTPUT1"]);
    t.deepEqual(fromRaw(a.value.raw_output_contents[0]), [-3, -1, 1, 3]);
  }
  const b = await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, raw_input_contents: [...ADD_SUB_REQ.raw_input_contents, f32([9, 9, 9, 9])] });
  t.true(b.ok);
});

/** Bytes, typed contents and the expected echo for each dtype of ALL_TYPES. */
const TYPED: { dtype: string; raw: Buffer; contents: object; count: number }[] = [
  { dtype: "BOOL", raw: Buffer.from([1, 0, 1, 1]), contents: { bool_contents: [true, false, true, true] }, count: 4 },
  { dtype: "UINT8", raw: Buffer.from([0, 1, 200, 255]), contents: { uint_contents: [0, 1, 200, 255] }, count: 4 },
  { dtype: "UINT16", raw: Buffer.from(new Uint16Array([0, 1, 60000, 65535]).buffer), contents: { uint_contents: [0, 1, 60000, 65535] }, count: 4 },
  { dtype: "UINT32", raw: Buffer.from(new Uint32Array([0, 1, 4e9, 4294967295]).buffer), contents: { uint_contents: [0, 1, 4e9, 4294967295] }, count: 4 },
  { dtype: "UINT64", raw: Buffer.from(new BigUint64Array([0n, 1n, 2n ** 63n, 2n ** 64n - 1n]).buffer), contents: { uint64_contents: ["0", "1", "9223372036854775808", "18446744073709551615"] }, count: 4 },
  { dtype: "INT8", raw: Buffer.from(new Int8Array([-128, -1, 0, 127]).buffer), contents: { int_contents: [-128, -1, 0, 127] }, count: 4 },
  { dtype: "INT16", raw: Buffer.from(new Int16Array([-32768, -1, 0, 32767]).buffer), contents: { int_contents: [-32768, -1, 0, 32767] }, count: 4 },
  { dtype: "INT32", raw: i32([-2147483648, -1, 0, 2147483647]), contents: { int_contents: [-2147483648, -1, 0, 2147483647] }, count: 4 },
  { dtype: "INT64", raw: Buffer.from(new BigInt64Array([-(2n ** 63n), -1n, 0n, 2n ** 63n - 1n]).buffer), contents: { int64_contents: ["-9223372036854775808", "-1", "0", "9223372036854775807"] }, count: 4 },
  { dtype: "FP32", raw: f32([-1.5, 0, 3.25, 1e30]), contents: { fp32_contents: [-1.5, 0, 3.25, 1e30] }, count: 4 },
  { dtype: "FP64", raw: Buffer.from(new Float64Array([-1.5, 0, Math.PI, 1e300]).buffer), contents: { fp64_contents: [-1.5, 0, Math.PI, 1e300] }, count: 4 },
  {
    dtype: "BYTES",
    raw: Buffer.concat(["a", "", "héllo", "\u0000x"].map((s) => { const b = Buffer.from(s); const l = Buffer.alloc(4); l.writeUInt32LE(b.length); return Buffer.concat([l, b]); })),
    contents: { bytes_contents: ["a", "", "héllo", "\u0000x"].map((s) => Buffer.from(s)) },
    count: 4,
  },
];

test("ModelInfer: every datatype, from raw_input_contents and from typed contents, comes back byte for byte", async (t) => {
  const c = t.context.client;
  for (const { dtype, raw, contents } of TYPED) {
    for (const how of ["raw", "contents"] as const) {
      const req =
        how === "raw"
          ? { model_name: "all_types", inputs: [input(`IN_${dtype}`, [2, 2], dtype)], raw_input_contents: [raw] }
          : { model_name: "all_types", inputs: [input(`IN_${dtype}`, [2, 2], dtype, { contents })] };
      const a = await grpcUnary(c, "ModelInfer", req);
      t.true(a.ok, `${dtype} ${how}: ${JSON.stringify(a)}`);
      if (!a.ok) continue;
      t.deepEqual(a.value.outputs, [{ name: `OUT_${dtype}`, datatype: dtype, shape: [2, 2] }], `${dtype} ${how}`);
      t.deepEqual(Buffer.from(a.value.raw_output_contents[0]), raw, `${dtype} ${how}`);
    }
  }
  // FP16 and BF16 have no typed contents field: raw only
  for (const dtype of ["FP16", "BF16"]) {
    const raw = Buffer.from(new Uint16Array([0x3c00, 0xc000, 0, 0x7bff]).buffer);
    const a = await grpcUnary(c, "ModelInfer", { model_name: "all_types", inputs: [input(`IN_${dtype}`, [1, 4], dtype)], raw_input_contents: [raw] });
    t.true(a.ok && Buffer.from(a.value.raw_output_contents[0]).equals(raw), dtype);
  }
});

test("ModelInfer: raw inputs at every byte offset of the message decode correctly (views when aligned, a copy otherwise)", async (t) => {
  const c = t.context.client;
  for (let pad = 0; pad < 8; pad++) {
    const a = await grpcUnary(c, "ModelInfer", { ...ADD_SUB_REQ, id: "x".repeat(pad + 1) });
    t.true(a.ok);
    if (a.ok) t.deepEqual(fromRaw(a.value.raw_output_contents[0]), [5, 5, 5, 5], `id length ${pad + 1}`);
  }
});

test("requestToInput: an aligned raw input is a view of the received message (no copy); a misaligned one is copied", (t) => {
  // Hand-made ModelInferRequest: model_name "m", one FP32 input [1], raw contents at a chosen offset.
  const inputMsg = Buffer.concat([Buffer.from([0x0a, 2]), Buffer.from("IN"), Buffer.from([0x12, 4]), Buffer.from("FP32"), Buffer.from([0x1a, 1, 1])]);
  const make = (idLen: number): Buffer =>
    Buffer.concat([
      Buffer.from([0x0a, 1, 0x6d]), // model_name "m"
      Buffer.from([0x1a, idLen]), Buffer.alloc(idLen, 0x61), // id
      Buffer.from([0x2a, inputMsg.length]), inputMsg,
      Buffer.from([0x3a, 4]), Buffer.from(new Float32Array([7]).buffer), // raw_input_contents
    ]);
  const mv = {
    name: "m",
    inputDtype: () => "FP32",
  } as unknown as Parameters<typeof requestToInput>[1];
  const shm = { read: () => new Uint8Array(0), write: () => {} };
  let aligned = 0;
  let copied = 0;
  for (let idLen = 0; idLen < 4; idLen++) {
    // a message in a fresh ArrayBuffer, as grpc-js hands one over (at offset 0)
    const msg = Buffer.from(make(idLen));
    const ab = new ArrayBuffer(msg.length);
    const buf = Buffer.from(ab);
    msg.copy(buf);
    const req = decodeModelInferRequest(buf);
    const g = requestToInput(req, mv, shm);
    const data = g.input.inputs[0]!.data() as Float32Array;
    t.deepEqual(Array.from(data), [7]);
    const at = req.raw_input_contents[0]!.byteOffset;
    if (at % 4 === 0) {
      t.is(data.buffer, ab, "aligned: the tensor is over the received message");
      t.is(data.byteOffset, at);
      aligned++;
    } else {
      t.not(data.buffer, ab, "misaligned: copied");
      copied++;
    }
  }
  t.true(aligned > 0 && copied > 0);
});

test("ModelInfer: request parameters reach the model (bool, int64, string, double); Triton's own keys are taken and checked", async (t) => {
  const c = t.context.client;
  const req = paramsReq;
  const a = await grpcUnary(c, "ModelInfer", req({
    flag: { bool_param: true },
    n: { int64_param: "-42" },
    s: { string_param: "text" },
    d: { double_param: 2.5 },
    sequence_id: { int64_param: 7 },
    sequence_start: { bool_param: true },
    priority: { uint64_param: 1 },
    timeout: { int64_param: 1000 },
    triton_enable_empty_final_response: { bool_param: true },
  }));
  t.true(a.ok, JSON.stringify(a));
  if (a.ok) {
    const raw = Buffer.from(a.value.raw_output_contents[0]);
    const seen = JSON.parse(raw.subarray(4).toString("utf8"));
    t.is(seen.requestId, "p1");
    t.deepEqual(seen.parameters, { flag: true, n: -42, s: "text", d: 2.5 });
  }
  isError(t, await grpcUnary(c, "ModelInfer", req({ triton_foo: { bool_param: true } })), grpc.status.INVALID_ARGUMENT, "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: triton_enable_empty_final_response");
  isError(t, await grpcUnary(c, "ModelInfer", req({ triton_enable_empty_final_response: { int64_param: 1 } })), grpc.status.INVALID_ARGUMENT, "invalid value type for 'triton_enable_empty_final_response' parameter, expected bool_param.");
  isError(t, await grpcUnary(c, "ModelInfer", req({ u: { uint64_param: 5 } })), grpc.status.INVALID_ARGUMENT, "invalid value type for 'u' parameter, expected int64_param, bool_param, or string_param.");
  isError(t, await grpcUnary(c, "ModelInfer", req({ sequence_id: { bool_param: true } })), grpc.status.INVALID_ARGUMENT, "invalid value type for 'sequence_id' parameter, expected int64_param or string_param.");
  isError(t, await grpcUnary(c, "ModelInfer", req({ sequence_end: { int64_param: 1 } })), grpc.status.INVALID_ARGUMENT, "invalid value type for 'sequence_end' parameter, expected bool_param.");
  isError(t, await grpcUnary(c, "ModelInfer", req({ priority: { int64_param: -1 } })), grpc.status.INVALID_ARGUMENT, "invalid value for 'priority', expected value >= 0.");
  isError(t, await grpcUnary(c, "ModelInfer", req({ priority: { string_param: "high" } })), grpc.status.INVALID_ARGUMENT, "invalid value type for 'priority' parameter, expected int64_param or uint64_param.");
  isError(t, await grpcUnary(c, "ModelInfer", req({ timeout: { double_param: 1 } })), grpc.status.INVALID_ARGUMENT, "invalid value type for 'timeout' parameter, expected int64_param.");
  isError(t, await grpcUnary(c, "ModelInfer", req({ big: { int64_param: "9007199254740993" } })), grpc.status.INVALID_ARGUMENT, /2\^53/);
});

test("ModelInfer error paths: Triton's status codes and messages", async (t) => {
  const c = t.context.client;
  const cases: [string, object, grpc.status, string | RegExp][] = [
    ["unknown model", { ...ADD_SUB_REQ, model_name: "nope" }, grpc.status.NOT_FOUND, "Request for unknown model: 'nope' is not found"],
    ["unknown version", { ...ADD_SUB_REQ, model_version: "3" }, grpc.status.NOT_FOUND, "Request for unknown model: 'add_sub' version 3 is not found"],
    ["bad version string", { ...ADD_SUB_REQ, model_version: "abc" }, grpc.status.INVALID_ARGUMENT, /abc/],
    ["raw size mismatch", { ...ADD_SUB_REQ, raw_input_contents: [f32([1, 2, 3]), f32([4, 3, 2, 1])] }, grpc.status.INVALID_ARGUMENT, "[request id: r1] input byte size mismatch for input 'INPUT0' for model 'add_sub'. Expected 16, got 12"],
    ["raw size mismatch, no id", { ...ADD_SUB_REQ, id: "", raw_input_contents: [f32([1, 2, 3, 4]), f32([4, 3, 2, 1, 0])] }, grpc.status.INVALID_ARGUMENT, "[request id: <id_unknown>] input byte size mismatch for input 'INPUT1' for model 'add_sub'. Expected 16, got 20"],
    ["size mismatch and wrong dtype: the dtype first", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "INT64"), input("INPUT1")] }, grpc.status.INVALID_ARGUMENT, "[request id: r1] inference input 'INPUT0' data-type is 'INT64', but model 'add_sub' expects 'FP32'"],
    ["missing raw data", { ...ADD_SUB_REQ, raw_input_contents: [f32([1, 2, 3, 4])] }, grpc.status.INVALID_ARGUMENT, "unable to find data for input tensor 'INPUT1' for model 'add_sub' in request."],
    ["wrong dtype", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "INT32"), input("INPUT1")] }, grpc.status.INVALID_ARGUMENT, /inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'/],
    ["unknown dtype", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "FOO"), input("INPUT1")] }, grpc.status.INVALID_ARGUMENT, "[request id: r1] inference input 'INPUT0' data-type is '<invalid>', but model 'add_sub' expects 'FP32'"],
    ["wrong shape", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [2, 2]), input("INPUT1")] }, grpc.status.INVALID_ARGUMENT, /unexpected shape for input 'INPUT0' for model 'add_sub'. Expected \[4\], got \[2,2\]/],
    ["negative dim", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [-1]), input("INPUT1")] }, grpc.status.INVALID_ARGUMENT, "[request id: r1] All input dimensions should be specified for input 'INPUT0' for model 'add_sub', got [-1]"],
    ["missing input", { ...ADD_SUB_REQ, inputs: [input("INPUT0")], raw_input_contents: [f32([1, 2, 3, 4])] }, grpc.status.INVALID_ARGUMENT, /expected 2 inputs but got 1 inputs for model 'add_sub'/],
    ["unknown output", { ...ADD_SUB_REQ, outputs: [{ name: "OUTPUTX" }] }, grpc.status.INVALID_ARGUMENT, "unexpected inference output 'OUTPUTX' for model 'add_sub'"],
    ["contents and raw", { ...ADD_SUB_REQ, inputs: [input("INPUT0", [4], "FP32", { contents: { fp32_contents: [1, 2, 3, 4] } }), input("INPUT1")] }, grpc.status.INVALID_ARGUMENT, "contents field must not be specified when using raw_input_contents for 'INPUT0' for model 'add_sub'"],
    ["contents of another type", { model_name: "add_sub", inputs: [input("INPUT0", [4], "FP32", { contents: { int_contents: [1, 2, 3, 4] } }), input("INPUT1", [4], "FP32", { contents: { fp32_contents: [1, 1, 1, 1] } })] }, grpc.status.INVALID_ARGUMENT, "unexpected explicit tensor data for input tensor 'INPUT0' for model 'add_sub' of type 'INT32', expected datatype 'FP32'"],
    ["two contents fields", { model_name: "add_sub", inputs: [input("INPUT0", [4], "FP32", { contents: { fp32_contents: [1, 2, 3, 4], fp64_contents: [1, 2, 3, 4] } }), input("INPUT1", [4], "FP32", { contents: { fp32_contents: [1, 1, 1, 1] } })] }, grpc.status.INVALID_ARGUMENT, "unexpected explicit tensor data for input tensor 'INPUT0' for model 'add_sub', binary data was already supplied."],
    ["contents element count", { model_name: "add_sub", id: "c", inputs: [input("INPUT0", [4], "FP32", { contents: { fp32_contents: [1, 2, 3] } }), input("INPUT1", [4], "FP32", { contents: { fp32_contents: [1, 1, 1, 1] } })] }, grpc.status.INVALID_ARGUMENT, "[request id: c] input byte size mismatch for input 'INPUT0' for model 'add_sub'. Expected 16, got 12"],
    ["classification", { ...ADD_SUB_REQ, outputs: [{ name: "OUTPUT0", parameters: { classification: { int64_param: 1 } } }] }, grpc.status.UNIMPLEMENTED, /classification/],
    ["BYTES data too short", { model_name: "all_types", inputs: [input("IN_BYTES", [1, 1], "BYTES")], raw_input_contents: [Buffer.from([5, 0, 0, 0, 0x61])] }, grpc.status.INVALID_ARGUMENT, /IN_BYTES/],
  ];
  for (const [what, req, code, details] of cases) {
    const a = await grpcUnary(c, "ModelInfer", req);
    t.false(a.ok, what);
    if (!a.ok) {
      t.is(a.code, code, `${what}: ${a.details}`);
      if (typeof details === "string") t.is(a.details, details, what);
      else t.regex(a.details, details, what);
    }
  }
});

test("ModelInfer: a model's errors keep their Triton codes (INTERNAL, UNAVAILABLE, NOT_FOUND, INVALID_ARGUMENT)", async (t) => {
  const c = t.context.client;
  const req = faultyReq;
  // (the runtime's words around the model's message are its own business)
  isError(t, await grpcUnary(c, "ModelInfer", req("throw")), grpc.status.INTERNAL, /boom: the model threw/);
  isError(t, await grpcUnary(c, "ModelInfer", req("reject")), grpc.status.INVALID_ARGUMENT, "rejected on purpose");
  isError(t, await grpcUnary(c, "ModelInfer", req("unavailable")), grpc.status.UNAVAILABLE, "try later");
  isError(t, await grpcUnary(c, "ModelInfer", req("response-error")), grpc.status.NOT_FOUND, "no such thing");
  isError(t, await grpcUnary(c, "ModelInfer", req("wrong-dtype")), grpc.status.INTERNAL, /returned an invalid response/);
  const ok = await grpcUnary(c, "ModelInfer", req("ok"));
  t.true(ok.ok && fromRaw(ok.value.raw_output_contents[0])[0] === 1);
});

test("ModelInfer: a message larger than gRPC's default 4 MiB limit is taken (Triton's limit is 2 GiB)", async (t) => {
  const n = 1_500_000; // 6 MB of FP32
  const data = new Float32Array(n);
  for (let i = 0; i < n; i++) data[i] = i % 1000;
  const a = await grpcUnary(t.context.client, "ModelInfer", { model_name: "all_types", inputs: [input("IN_FP32", [1, n])], raw_input_contents: [Buffer.from(data.buffer)] });
  t.true(a.ok, a.ok ? "" : a.details);
  if (a.ok) t.true(Buffer.from(a.value.raw_output_contents[0]).equals(Buffer.from(data.buffer)));
});

test("ModelInfer: malformed protobuf is INTERNAL 'Error deserializing request', as grpc-js answers for any codec", async (t) => {
  const { server } = t.context;
  const ch = new grpc.Client(server.grpcAddress!.url, grpc.credentials.createInsecure());
  try {
    const a = await new Promise<{ code: number; details: string }>((resolve) =>
      ch.makeUnaryRequest(
        "/inference.GRPCInferenceService/ModelInfer",
        (b: Buffer) => b,
        (b: Buffer) => b,
        Buffer.from([0x0a, 0x50, 0x61]), // a string field longer than the message
        (err) => resolve({ code: err?.code ?? 0, details: err?.details ?? "" }),
      ),
    );
    t.is(a.code, grpc.status.INTERNAL);
    t.regex(a.details, /deserializ/i);
  } finally {
    ch.close();
  }
});

test("ModelInfer: inputs kept past the call that brought them (views of received messages) keep their data while later messages arrive on the same connection, on the direct path and through grpc-js", async (t) => {
  const c = t.context.client;
  const n = 64;
  // a deadline sends a call through grpc-js (the direct path leaves deadlines to it)
  for (const opts of [{}, { deadline: 60_000 }]) {
    const calls = Array.from({ length: n }, (_, k) => {
      const data = Float32Array.from({ length: 1000 + k }, (_x, i) => k * 10000 + i);
      return grpcUnary(c, "ModelInfer", {
        model_name: "delayed_echo",
        id: String(k),
        parameters: { delay_ms: { int64_param: (k * 7) % 50 } },
        inputs: [input("IN", [data.length])],
        raw_input_contents: [Buffer.from(data.buffer)],
      }, opts).then((a) => ({ a, data }));
    });
    for (const { a, data } of await Promise.all(calls)) {
      t.true(a.ok);
      if (a.ok) t.true(Buffer.from(a.value.raw_output_contents[0]).equals(Buffer.from(data.buffer)), `request ${a.value.id} ${JSON.stringify(opts)}`);
    }
  }
});

// --- ModelStreamInfer (models that are not decoupled) -------------------------

interface StreamMessage {
  error_message?: string;
  infer_response?: { id?: string; model_name?: string; model_version?: string; parameters?: Record<string, { bool_param?: boolean }>; outputs?: { name: string }[]; raw_output_contents?: Buffer[] };
}

/** Writes each request (awaiting `gapMs` between), half-closes, and collects every message until the stream ends. */
function streamAll(client: GrpcClient, requests: object[], opts: { gapMs?: number; metadata?: grpc.Metadata } = {}): Promise<{ messages: StreamMessage[]; status: grpc.StatusObject | undefined; error?: grpc.ServiceError }> {
  return new Promise((resolve) => {
    const call = client["ModelStreamInfer"]!(opts.metadata ?? new grpc.Metadata()) as grpc.ClientDuplexStream<object, StreamMessage>;
    const messages: StreamMessage[] = [];
    let status: grpc.StatusObject | undefined;
    let error: grpc.ServiceError | undefined;
    call.on("data", (m: StreamMessage) => messages.push(m));
    call.on("status", (s: grpc.StatusObject) => (status = s));
    call.on("error", (e: grpc.ServiceError) => (error = e));
    call.on("close", () => resolve(error ? { messages, status, error } : { messages, status }));
    void (async () => {
      for (const r of requests) {
        call.write(r);
        if (opts.gapMs) await new Promise((res) => setTimeout(res, opts.gapMs));
      }
      call.end();
    })();
  });
}

const finalOf = (m: StreamMessage): boolean | undefined => m.infer_response?.parameters?.["triton_final_response"]?.bool_param;

test("ModelStreamInfer, a model that is not decoupled: one response per request with its id and triton_final_response true; no extra message with enable_empty_final_response; status OK at the end", async (t) => {
  const efr = { triton_enable_empty_final_response: { bool_param: true } };
  const { messages, status } = await streamAll(t.context.client, [
    { ...ADD_SUB_REQ, id: "a1" },
    { ...ADD_SUB_REQ, id: "a2", parameters: efr },
    { ...ADD_SUB_REQ, id: "" },
  ]);
  t.is(status?.code, grpc.status.OK);
  t.deepEqual(messages.map((m) => [m.error_message ?? "", m.infer_response?.id ?? "", finalOf(m)]), [
    ["", "a1", true],
    ["", "a2", true],
    ["", "", true],
  ]);
  const r = messages[0]!.infer_response!;
  t.is(r.model_name, "add_sub");
  t.is(r.model_version, "1");
  t.deepEqual(r.outputs!.map((o) => o.name), ["OUTPUT0", "OUTPUT1"]);
  t.deepEqual(fromRaw(r.raw_output_contents![0]!), [5, 5, 5, 5]);
});

test("ModelStreamInfer errors: before the model (unknown model, bad input, bad parameter) the message has only the id; the model's own error also carries model, version and triton_final_response; the stream goes on", async (t) => {
  const { messages, status } = await streamAll(t.context.client, [
    { ...ADD_SUB_REQ, model_name: "nope", id: "n1" },
    { ...ADD_SUB_REQ, id: "b1", inputs: [input("INPUT0", [4], "INT32"), input("INPUT1")] },
    { ...ADD_SUB_REQ, id: "p1", parameters: { triton_enable_empty_final_response: { int64_param: 1 } } },
    { model_name: "faulty", id: "f1", parameters: { mode: { string_param: "response-error" } }, inputs: [input("IN", [1])], raw_input_contents: [f32([1])] },
    { model_name: "faulty", model_version: "1", id: "f2", parameters: { mode: { string_param: "throw" } }, inputs: [input("IN", [1])], raw_input_contents: [f32([1])] },
    { ...ADD_SUB_REQ, id: "ok" },
  ]);
  t.is(status?.code, grpc.status.OK);
  t.is(messages.length, 6);
  t.deepEqual(messages[0], { error_message: "Request for unknown model: 'nope' is not found", infer_response: { id: "n1" } });
  t.is(messages[1]!.infer_response!.id, "b1");
  t.regex(messages[1]!.error_message!, /inference input 'INPUT0' data-type is 'INT32', but model 'add_sub' expects 'FP32'/);
  t.deepEqual(Object.keys(messages[1]!.infer_response!), ["id"]);
  t.deepEqual(messages[2], { error_message: "invalid value type for 'triton_enable_empty_final_response' parameter, expected bool_param.", infer_response: { id: "p1" } });
  t.deepEqual(messages[3], {
    error_message: "no such thing",
    infer_response: { model_name: "faulty", id: "f1", parameters: { triton_final_response: { bool_param: true, parameter_choice: "bool_param" } } },
  });
  t.regex(messages[4]!.error_message!, /boom: the model threw/);
  t.deepEqual(messages[4]!.infer_response, { model_name: "faulty", model_version: "1", id: "f2", parameters: { triton_final_response: { bool_param: true, parameter_choice: "bool_param" } } });
  t.is(messages[5]!.infer_response!.id, "ok");
  t.is(messages[5]!.error_message, undefined);
});

test("ModelStreamInfer: responses of a model that is not decoupled come in request order, even when a later request finishes first", async (t) => {
  const req = slowReq;
  // slow has two instances: the second request finishes long before the first
  const { messages, status } = await streamAll(t.context.client, [req("first", 300), req("second", 0), { ...ADD_SUB_REQ, model_name: "nope", id: "third" }]);
  t.is(status?.code, grpc.status.OK);
  t.deepEqual(messages.map((m) => m.infer_response?.id), ["first", "second", "third"]);
});

test("ModelStreamInfer with the triton_grpc_error header: a model's error ends the stream with its gRPC status", async (t) => {
  const md = new grpc.Metadata();
  md.set("triton_grpc_error", "true");
  const { messages, error } = await streamAll(
    t.context.client,
    [
      { ...ADD_SUB_REQ, model_name: "nope", id: "n1" },
      { model_name: "faulty", id: "f1", parameters: { mode: { string_param: "unavailable" } }, inputs: [input("IN", [1])], raw_input_contents: [f32([1])] },
    ],
    { metadata: md, gapMs: 100 },
  );
  t.deepEqual(messages, [{ error_message: "Request for unknown model: 'nope' is not found", infer_response: { id: "n1" } }], "an error before the model is still a message");
  t.is(error?.code, grpc.status.UNAVAILABLE);
  t.is(error?.details, "try later");
});

// --- lifecycle ------------------------------------------------------------------

test("close(): an open stream with a request in flight gets its response, then ends with status OK; the server stops", async (t) => {
  const server = await startTestServer(t.context.repo, { noAutoLoad: true });
  await server.registry.load("slow");
  const c = grpcClient(server);
  try {
    // The connection first: on a loaded machine, a stream still being opened when close() starts is refused.
    t.true((await grpcUnary(c, "ServerLive", {})).ok);
    const call = c["ModelStreamInfer"]!() as grpc.ClientDuplexStream<object, StreamMessage>;
    const messages: StreamMessage[] = [];
    const ended = new Promise<grpc.StatusObject>((resolve) => {
      call.on("data", (m: StreamMessage) => messages.push(m));
      call.on("status", resolve);
      call.on("error", () => {});
    });
    call.write({ model_name: "slow", id: "s1", parameters: { sleep_ms: { int64_param: 300 } }, inputs: [input("IN", [1], "INT32")], raw_input_contents: [i32([1])] });
    await new Promise((r) => setTimeout(r, 100));
    const closed = server.close();
    const status = await ended;
    t.is(status.code, grpc.status.OK);
    t.deepEqual(messages.map((m) => m.infer_response?.id), ["s1"]);
    await closed;
    const after = await grpcUnary(c, "ServerLive", {}, { deadline: 2000 });
    t.false(after.ok, "nothing listens after close()");
  } finally {
    c.close();
    await server.close();
  }
});

test("a gRPC port in use: start() rejects with a message naming the address, and nothing is left listening", async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
  const port = (blocker.address() as { port: number }).port;
  try {
    const e = await t.throwsAsync(startTestServer(t.context.repo, { grpcPort: port, noAutoLoad: true }));
    t.regex(e!.message, new RegExp(`127\\.0\\.0\\.1:${port}`));
    t.regex(e!.message, /already in use/);
    t.is((e as Error & { code?: string }).code, "EADDRINUSE");
  } finally {
    await new Promise((r) => blocker.close(r));
  }
});

test("allowGrpc: false starts no gRPC service (grpcAddress undefined)", async (t) => {
  const server = await startTestServer(t.context.repo, { allowGrpc: false, noAutoLoad: true });
  try {
    t.is(server.grpcAddress, undefined);
  } finally {
    await server.close();
  }
});

test("grpcAddress reports the bound port when 0 was asked", (t) => {
  const a = t.context.server.grpcAddress!;
  t.true(a.port > 0);
  t.is(a.url, `127.0.0.1:${a.port}`);
});

// --- the direct path for unary ModelInfer ---------------------------------------

/** proto-loader's serializer of ModelInferRequest (the client side's). */
function modelInferSerializer(): (r: object) => Buffer {
  const dir = join(ROOT, "proto/triton");
  const pkg = loadSync(join(dir, "grpc_service.proto"), { keepCase: true, longs: Number, enums: String, bytes: Buffer, defaults: false, oneofs: true, includeDirs: [dir] });
  const svc = pkg["inference.GRPCInferenceService"] as unknown as Record<string, { requestSerialize: (v: object) => Buffer }>;
  return svc["ModelInfer"]!.requestSerialize;
}

/** A gRPC message frame (uncompressed) around protobuf bytes. */
function frame(msg: Buffer): Buffer {
  const h = Buffer.alloc(5);
  h.writeUInt32BE(msg.length, 1);
  return Buffer.concat([h, msg]);
}

/** The headers of an answer without the ones that differ from call to call. */
/** A gRPC message frame around gzip-compressed protobuf bytes. */
function gzipFrame(msg: Buffer): Buffer {
  const z = gzipSync(msg);
  return Buffer.concat([Buffer.from([1, z.length >>> 24, (z.length >>> 16) & 0xff, (z.length >>> 8) & 0xff, z.length & 0xff]), z]);
}

/** A gRPC message frame around deflate-compressed (zlib) protobuf bytes. */
function deflateFrame(msg: Buffer): Buffer {
  const z = deflateSync(msg);
  return Buffer.concat([Buffer.from([1, z.length >>> 24, (z.length >>> 16) & 0xff, (z.length >>> 8) & 0xff, z.length & 0xff]), z]);
}

function stable(h: Record<string, unknown>): Record<string, unknown> {
  const { date: _date, ...rest } = h;
  return rest;
}

/** What a client reads of an answer, whichever server sent it. */
function clientView(a: RawGrpcAnswer) {
  return {
    status: a.headers[":status"],
    body: a.body,
    grpcStatus: a.trailers["grpc-status"] ?? a.headers["grpc-status"],
    grpcMessage: decodeURIComponent(String(a.trailers["grpc-message"] ?? a.headers["grpc-message"] ?? "")).replace(/^OK$/, ""),
  };
}

test("both gRPC servers (this package's HTTP/2 and grpc-js's), with and without the direct ModelInfer path, answer alike: byte for byte within a server, status, message and body across them", async (t) => {
  const { server } = t.context;
  const start = (o: Partial<GrpcTransportOptions>) => GrpcTransport.start(server.endpoint, { host: "127.0.0.1", port: 0, ...o });
  const direct = await start({});
  const plain = await start({ directInfer: false });
  const grpcJs = await start({ server: "grpc-js" });
  const grpcJsPlain = await start({ server: "grpc-js", directInfer: false });
  try {
    t.true(direct.directPath);
    t.true(grpcJs.directPath, "grpc-js's internals are as the direct path expects");
    t.false(plain.directPath);
    t.false(grpcJsPlain.directPath);
    // Requests encoded by proto-loader's serializer (what a grpc-js client sends).
    const msg = (r: object): Buffer => modelInferSerializer()(r);
    const cases: [string, Buffer, Record<string, string>?][] = [
      ["add_sub", frame(msg(ADD_SUB_REQ))],
      ["add_sub, no id", frame(msg({ ...ADD_SUB_REQ, id: "" }))],
      ["unknown model", frame(msg({ ...ADD_SUB_REQ, model_name: "nope" }))],
      ["a message with non-ASCII text", frame(msg({ ...ADD_SUB_REQ, model_name: "nöpe ☃" }))],
      ["bad input", frame(msg({ ...ADD_SUB_REQ, raw_input_contents: [f32([1])] }))],
      ["model error", frame(msg(faultyReq("unavailable")))],
      ["malformed protobuf", frame(Buffer.from([0x0a, 0x50, 0x61]))],
      ["no message", Buffer.alloc(0)],
      ["a partial message", frame(msg(ADD_SUB_REQ)).subarray(0, 20)],
      ["two messages", Buffer.concat([frame(msg(ADD_SUB_REQ)), frame(msg(ADD_SUB_REQ))])],
      ["the compressed flag under identity (read as is)", Buffer.concat([Buffer.from([1]), frame(msg(ADD_SUB_REQ)).subarray(1)])],
      ["a deadline", frame(msg(ADD_SUB_REQ)), { "grpc-timeout": "10S" }],
      ["gzip declared, not used", frame(msg(ADD_SUB_REQ)), { "grpc-encoding": "gzip" }],
      ["a gzip-compressed message", gzipFrame(msg(ADD_SUB_REQ)), { "grpc-encoding": "gzip" }],
      ["a deflate-compressed message", deflateFrame(msg(ADD_SUB_REQ)), { "grpc-encoding": "deflate" }],
    ];
    for (const [what, body, headers] of cases) {
      const a = await rawGrpcCall(direct.port, body, headers);
      const b = await rawGrpcCall(plain.port, body, headers);
      const c = await rawGrpcCall(grpcJs.port, body, headers);
      const d = await rawGrpcCall(grpcJsPlain.port, body, headers);
      t.deepEqual(stable(a.headers), stable(b.headers), `${what}: headers, direct or not`);
      t.deepEqual(a.trailers, b.trailers, `${what}: trailers, direct or not`);
      t.deepEqual(stable(c.headers), stable(d.headers), `${what}: grpc-js's headers, direct or not`);
      t.deepEqual(c.trailers, d.trailers, `${what}: grpc-js's trailers, direct or not`);
      t.deepEqual(clientView(a), clientView(b), `${what}: direct or not`);
      t.deepEqual(clientView(a), clientView(c), `${what}: this server as grpc-js`);
      t.deepEqual(clientView(c), clientView(d), `${what}: grpc-js, direct or not`);
    }
    const ok = await rawGrpcCall(direct.port, frame(msg(ADD_SUB_REQ)));
    t.is(ok.trailers["grpc-status"], "0");
    t.true(ok.body.length > 5);
    // other RPCs on the same connection
    const live = await rawGrpcCall(direct.port, frame(Buffer.alloc(0)), {}, "/inference.GRPCInferenceService/ServerLive");
    t.is(live.trailers["grpc-status"], "0");
    t.deepEqual(live.body, frame(Buffer.from([0x08, 0x01])));
  } finally {
    await Promise.all([direct.close(), plain.close(), grpcJs.close(), grpcJsPlain.close()]);
  }
});

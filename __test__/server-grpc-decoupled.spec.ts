/**
 * The gRPC transport with decoupled models and cancellation:
 * ModelStreamInfer as Triton 2.51 answers a decoupled model (each response
 * with `triton_final_response: false`, the empty final response only with
 * `triton_enable_empty_final_response`, a model's error response as a
 * message that leaves the stream open, responses written as they come),
 * unary ModelInfer refusing a decoupled model, and a cancelled call or
 * stream cancelling its requests (the model sees `isCancelled()`). Also
 * the decoupled part of the tritonclient.grpc script.
 */
import { existsSync } from "node:fs";
import { join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import anyTest, { type TestFn } from "ava";

import type { InferenceServer } from "../src/server/server.js";
import { REPEAT, WATCH_CANCEL } from "./fixtures/serving/decoupled.js";
import { SLOW } from "./fixtures/serving/models.js";
import {
  ADD_SUB,
  CLIENT_VENV,
  ROOT,
  cleanupRepos,
  grpcClient,
  grpcClientMissing,
  grpcUnary,
  makeRepo,
  runCommand,
  sleep,
  startTestServer,
  type GrpcClient,
  type TestModel,
} from "./server-helpers.js";

/** A model that is not decoupled and waits (up to 5 s) until its request is cancelled, then writes `cancelled-<marker>`. */
const WAIT_CANCEL: TestModel = {
  config: `
input { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }
`,
  model: `
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { InferenceResponse, Tensor, type InferenceRequest, type InitializeArgs } from "tensorbridge";
export default class WaitCancel {
  dir = "";
  initialize(args: InitializeArgs) { this.dir = args.model_repository; }
  async execute(requests: InferenceRequest[]) {
    const r = requests[0]!;
    for (let i = 0; i < 500 && !r.isCancelled(); i++) await new Promise((res) => setTimeout(res, 10));
    if (r.isCancelled()) writeFileSync(join(this.dir, "cancelled-" + String(r.parameters["marker"] ?? "")), "request");
    return requests.map(() => new InferenceResponse({ outputTensors: { OUT: Tensor.from(new Int32Array([1])) } }));
  }
}
`,
};

const test = anyTest as TestFn<{ server: InferenceServer; client: GrpcClient; repo: string }>;

test.before(async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB, repeat: REPEAT, watch_cancel: WATCH_CANCEL, wait_cancel: WAIT_CANCEL, slow: SLOW });
  t.context.repo = repo;
  t.context.server = await startTestServer(repo);
  t.context.client = grpcClient(t.context.server);
});

test.after.always(async (t) => {
  t.context.client?.close();
  await t.context.server?.close();
  cleanupRepos();
});

interface StreamMessage {
  error_message?: string;
  infer_response?: {
    id?: string;
    model_name?: string;
    model_version?: string;
    parameters?: Record<string, { bool_param?: boolean }>;
    outputs?: { name: string }[];
    raw_output_contents?: Buffer[];
  };
}

const i32 = (a: number[]): Buffer => Buffer.from(new Int32Array(a).buffer);
const repeatReq = (id: string, values: number[], extra: object = {}) => ({
  model_name: "repeat",
  id,
  inputs: [{ name: "IN", datatype: "INT32", shape: [values.length] }],
  raw_input_contents: [i32(values)],
  ...extra,
});
const waitReq = (marker: string) => ({ model_name: "wait_cancel", parameters: { marker: { string_param: marker } }, inputs: [{ name: "IN", datatype: "INT32", shape: [1] }], raw_input_contents: [i32([0])] });
const EFR = { parameters: { triton_enable_empty_final_response: { bool_param: true } } };
const finalOf = (m: StreamMessage): boolean | undefined => m.infer_response?.parameters?.["triton_final_response"]?.bool_param;
const outOf = (m: StreamMessage): number | undefined => {
  const raw = m.infer_response?.raw_output_contents?.[0];
  return raw && raw.length === 4 ? raw.readInt32LE(0) : undefined;
};

/** Writes the requests, half-closes, and collects every message until the stream ends. */
function streamAll(client: GrpcClient, requests: object[]): Promise<{ messages: StreamMessage[]; status: grpc.StatusObject | undefined }> {
  return new Promise((resolve) => {
    const call = client["ModelStreamInfer"]!() as grpc.ClientDuplexStream<object, StreamMessage>;
    const messages: StreamMessage[] = [];
    let status: grpc.StatusObject | undefined;
    call.on("data", (m: StreamMessage) => messages.push(m));
    call.on("status", (s: grpc.StatusObject) => (status = s));
    call.on("error", () => {});
    call.on("close", () => resolve({ messages, status }));
    for (const r of requests) call.write(r);
    call.end();
  });
}

test("ModelStreamInfer, decoupled: one message per response (final false), then the empty final response only with enable_empty_final_response", async (t) => {
  const { messages, status } = await streamAll(t.context.client, [repeatReq("with", [1, 2, 3], EFR)]);
  t.is(status?.code, grpc.status.OK);
  t.deepEqual(messages.map((m) => [m.infer_response?.id, outOf(m), finalOf(m)]), [
    ["with", 1, false],
    ["with", 2, false],
    ["with", 3, false],
    ["with", undefined, true],
  ]);
  t.is(messages[0]!.infer_response!.model_version, "1");
  t.deepEqual(messages[3], {
    infer_response: { model_name: "repeat", id: "with", parameters: { triton_final_response: { bool_param: true, parameter_choice: "bool_param" } } },
  }, "the empty final response: the request's model name and version (none sent), its id, no outputs");

  const without = await streamAll(t.context.client, [repeatReq("without", [1, 2, 3])]);
  t.deepEqual(without.messages.map((m) => [m.infer_response?.id, outOf(m), finalOf(m)]), [
    ["without", 1, false],
    ["without", 2, false],
    ["without", 3, false],
  ]);

  const empty = await streamAll(t.context.client, [repeatReq("none", [], { ...EFR, model_version: "1" }), repeatReq("none2", [])]);
  t.deepEqual(empty.messages, [
    { infer_response: { model_name: "repeat", model_version: "1", id: "none", parameters: { triton_final_response: { bool_param: true, parameter_choice: "bool_param" } } } },
  ], "no response at all: the empty final alone, and nothing without the parameter");
});

test("ModelStreamInfer, decoupled: a model's error response is a message (final false) and the request goes on; errors before the model have only the id", async (t) => {
  const { messages, status } = await streamAll(t.context.client, [
    repeatReq("e", [1, -2, 3], EFR),
    { ...repeatReq("bad", [1]), inputs: [{ name: "IN", datatype: "FP32", shape: [1] }] },
  ]);
  t.is(status?.code, grpc.status.OK);
  const forE = messages.filter((m) => m.infer_response?.id === "e");
  t.deepEqual(forE.map((m) => [m.error_message ?? "", outOf(m), finalOf(m)]), [
    ["", 1, false],
    ["negative element -2", undefined, false],
    ["", 3, false],
    ["", undefined, true],
  ]);
  t.deepEqual(forE[1], {
    error_message: "negative element -2",
    infer_response: { model_name: "repeat", id: "e", parameters: { triton_final_response: { bool_param: false, parameter_choice: "bool_param" } } },
  });
  const bad = messages.find((m) => m.infer_response?.id === "bad");
  t.deepEqual(Object.keys(bad?.infer_response ?? {}), ["id"]);
  t.regex(bad?.error_message ?? "", /data-type is 'FP32', but model 'repeat' expects 'INT32'/);
});

test("ModelStreamInfer: a decoupled model's responses are written as they come, not behind a slower request of a model that is not decoupled", async (t) => {
  const slow = { model_name: "slow", id: "slow", parameters: { sleep_ms: { int64_param: 400 } }, inputs: [{ name: "IN", datatype: "INT32", shape: [1] }], raw_input_contents: [i32([1])] };
  const { messages } = await streamAll(t.context.client, [slow, repeatReq("fast", [7], EFR)]);
  t.deepEqual(messages.map((m) => m.infer_response?.id), ["fast", "fast", "slow"]);
});

test("ModelInfer on a decoupled model: UNIMPLEMENTED with Triton's message", async (t) => {
  const a = await grpcUnary(t.context.client, "ModelInfer", repeatReq("u", [1]));
  t.deepEqual(a, { ok: false, code: grpc.status.UNIMPLEMENTED, details: "ModelInfer RPC doesn't support models with decoupled transaction policy" });
});

test("a stream the client cancels cancels its requests (the model sees it), and nothing more arrives", async (t) => {
  const marker = `stream-${process.pid}`;
  const call = t.context.client["ModelStreamInfer"]!() as grpc.ClientDuplexStream<object, StreamMessage>;
  const seen = { received: 0 };
  let status: grpc.StatusObject | undefined;
  call.on("data", () => seen.received++);
  call.on("status", (s: grpc.StatusObject) => (status = s));
  call.on("error", () => {});
  call.write({ model_name: "watch_cancel", id: "w", parameters: { marker: { string_param: marker } }, inputs: [{ name: "IN", datatype: "INT32", shape: [1] }], raw_input_contents: [i32([0])] });
  for (let i = 0; i < 500 && seen.received < 3; i++) await sleep(10);
  call.cancel();
  const file = join(t.context.repo, "watch_cancel", `cancelled-${marker}`);
  for (let i = 0; i < 200 && !existsSync(file); i++) await sleep(10);
  t.true(existsSync(file), "the model saw its request cancelled");
  t.is(status?.code, grpc.status.CANCELLED);
  const after = seen.received;
  await sleep(100);
  t.is(seen.received, after);
});

test("a unary call the client cancels (a deadline, or cancel()) cancels its request (the model sees it)", async (t) => {
  const c = t.context.client;
  const req = waitReq;
  // A deadline long enough for the request to reach execute() on a loaded
  // CI machine (a call whose deadline passes first is never handed over).
  const a = await grpcUnary(c, "ModelInfer", req(`deadline-${process.pid}`), { deadline: 1000 });
  t.false(a.ok);
  if (!a.ok) t.is(a.code, grpc.status.DEADLINE_EXCEEDED);
  const file = join(t.context.repo, "wait_cancel", `cancelled-deadline-${process.pid}`);
  for (let i = 0; i < 400 && !existsSync(file); i++) await sleep(10);
  t.true(existsSync(file), "the deadline cancelled the request");

  const call = c["ModelInfer"]!(req(`cancel-${process.pid}`), () => {}) as grpc.ClientUnaryCall;
  await sleep(100);
  call.cancel();
  const file2 = join(t.context.repo, "wait_cancel", `cancelled-cancel-${process.pid}`);
  for (let i = 0; i < 400 && !existsSync(file2); i++) await sleep(10);
  t.true(existsSync(file2), "cancel() cancelled the request");
});

const clientMissing = grpcClientMissing();
(clientMissing ? test.skip : test)(`tritonclient.grpc: the decoupled repeat over a stream, enable_empty_final_response${clientMissing ? ` (skipped: ${clientMissing})` : ""}`, async (t) => {
  const r = await runCommand(join(CLIENT_VENV, "bin/python"), [join(ROOT, "__test__/fixtures/grpc/tritonclient_grpc.py"), t.context.server.grpcAddress!.url, "--decoupled"]);
  t.log(r.out.trim());
  t.is(r.code, 0, r.out);
  t.regex(r.out, /PASS: stream \(decoupled repeat, enable_empty_final_response\)/);
});

test("streams ended every way (half-closed, cancelled with requests in flight, failed in triton_grpc_error mode) leave nothing open", async (t) => {
  const { GrpcTransport } = await import("../src/server/grpc/transport.js");
  const transport = await GrpcTransport.start(t.context.server.endpoint, { host: "127.0.0.1", port: 0 });
  const client = grpcClient(`127.0.0.1:${transport.port}`);
  try {
    const ended = Array.from({ length: 5 }, (_, k) => streamAll(client, [repeatReq(`e${k}`, [1, 2, 3], EFR), repeatReq(`f${k}`, [4])]));
    const cancelled = Array.from({ length: 5 }, async (_, k) => {
      const call = client["ModelStreamInfer"]!() as grpc.ClientDuplexStream<object, StreamMessage>;
      call.on("data", () => {});
      call.on("error", () => {});
      call.write({ model_name: "watch_cancel", id: `c${k}`, inputs: [{ name: "IN", datatype: "INT32", shape: [1] }], raw_input_contents: [i32([0])] });
      await sleep(50 + 10 * k);
      call.cancel();
    });
    const md = new grpc.Metadata();
    md.set("triton_grpc_error", "true");
    const failed = new Promise<void>((resolve) => {
      const call = client["ModelStreamInfer"]!(md) as grpc.ClientDuplexStream<object, StreamMessage>;
      call.on("data", () => {});
      call.on("error", () => resolve());
      call.write(repeatReq("neg", [-1]));
    });
    await Promise.all([...ended, ...cancelled, failed]);
    for (let i = 0; i < 100 && transport.openStreams > 0; i++) await sleep(10);
    t.is(transport.openStreams, 0);
  } finally {
    client.close();
    await transport.close();
  }
});

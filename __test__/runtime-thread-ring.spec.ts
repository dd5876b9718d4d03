/**
 * The shared-memory transport of thread instances (thread-ring.ts,
 * thread-codec.ts): messages keep their order whether they go through the
 * ring or, when they do not fit (a full ring, one larger than the ring),
 * through the port; every slot is freed; the hot path's messages survive
 * the binary codec; and through a ThreadInstance with a small ring: many
 * requests at once, a request larger than the ring, BYTES, errors, a
 * decoupled stream, a worker that dies mid-request, an execute timeout,
 * and a process that neither hangs on an idle instance nor exits under a
 * request in flight.
 */
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { once } from "node:events";
import { fileURLToPath } from "node:url";
import { MessageChannel, Worker } from "node:worker_threads";

import test from "ava";

import { ServingError } from "../src/runtime/errors.js";
import { ModelError } from "../src/runtime/model-error.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import { InferenceRequest } from "../src/runtime/request.js";
import type { InferenceResponse } from "../src/runtime/response.js";
import { decodeMessage, encodeMessage } from "../src/runtime/thread-codec.js";
import { ThreadInstance } from "../src/runtime/thread-instance.js";
import { discardRequest, fromWire, INLINE_MAX_BYTES, requestFromWire, requestToWire, toWire } from "../src/runtime/thread-wire.js";
import { RingReader, ringBuffer, RingWriter } from "../src/runtime/thread-ring.js";
import { Tensor } from "../src/tensor.js";
import { cleanupRepos, makeRepo, setupModelEntry } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

const REPO_ROOT = new URL("..", import.meta.url).pathname;

test("the ring keeps the writer's order across the ring and the port (a full ring, messages larger than it, wrap-around), and frees every slot", (t) => {
  const { port1, port2 } = new MessageChannel();
  const sab = ringBuffer(256);
  const w = new RingWriter(sab, port1);
  const r = new RingReader(sab, port2);
  const got: { i: number; pad: string }[] = [];
  let i = 0;
  // Sizes from 0 to 600 bytes (the ring holds 256), read in batches of 0 to 40 messages.
  for (let round = 0; round < 200; round++) {
    const n = (round * 7) % 13;
    for (let k = 0; k < n; k++, i++) w.write({ i, pad: "é".repeat((i * 37) % 300) });
    for (let k = 0; k < (round * 11) % 41; k++) {
      const m = r.read() as { i: number; pad: string } | undefined;
      if (m === undefined) break;
      got.push(m);
    }
  }
  for (let m = r.read(); m !== undefined; m = r.read()) got.push(m as { i: number; pad: string });
  t.is(got.length, i);
  t.true(
    got.every((m, k) => m.i === k && m.pad === "é".repeat((k * 37) % 300)),
    "every message, in order, intact",
  );
  t.true(w.overflowed > 0, "some went through the port");
  t.true(w.overflowed < i, "most went through the ring");
  t.false(r.pending());
  t.is(r.usedBytes(), 0, "no slot is left held");
  port1.close();
  port2.close();
});

/** A send message with `n` bytes of data (each `n`), as a worker's sender makes. */
const sendOf = (n: number) => ({ op: "send", call: 1, index: n, final: false, response: { outputs: [{ name: "B", dtype: "UINT8", shape: [n], data: new Uint8Array(n).fill(n) }], error: undefined } });
/** A message the codec writes as JSON, taking exactly `slot` bytes of a ring (8 of them its header). */
const jsonOf = (slot: number) => ({ pad: "x".repeat(slot - 8 - encodeMessage({ pad: "" })!.length) });

test("a message is encoded straight into the ring's free space: one that fills it to the end stays there, one a word larger starts over at 0, one that fits in neither piece goes by the port, and while the reader is at 0 the last word stays free", (t) => {
  const { port1, port2 } = new MessageChannel();
  t.teardown(() => port1.close());
  const sab = ringBuffer(256);
  const w = new RingWriter(sab, port1);
  const r = new RingReader(sab, port2);
  const base = encodeMessage(sendOf(0))!.length;
  /** A send message taking exactly `slot` bytes of the ring (8 of them its header). */
  const sized = (slot: number) => sendOf(slot - 8 - base);
  const intact = (m: unknown): void => {
    const got = r.read() as ReturnType<typeof sendOf>;
    t.deepEqual(got.index, (m as ReturnType<typeof sendOf>).index);
    t.deepEqual(Array.from(got.response.outputs[0]!.data), Array.from((m as ReturnType<typeof sendOf>).response.outputs[0]!.data));
  };
  /** Moves the reader and the writer on by `slot` bytes. */
  const advance = (slot: number): void => {
    const m = sized(slot);
    w.write(m);
    intact(m);
  };

  // The reader at 0: the whole ring is one word too many.
  w.write(sized(256));
  t.is(w.overflowed, 1);
  intact(sized(256));
  const most = sized(252);
  w.write(most);
  t.is(w.overflowed, 1, "a word less fits");
  t.is(r.usedBytes(), 252);
  intact(most);
  // The reader at 252: a message does not fit in the word left before the end, and starts over at 0
  // if it leaves a word before the reader.
  const whole = sized(252);
  w.write(whole);
  t.is(w.overflowed, 2, "up to the reader: by the port");
  intact(whole);
  const wrapped = sized(100);
  w.write(wrapped);
  t.is(w.overflowed, 2, "it wrapped");
  t.is(r.usedBytes(), 104, "the skipped word and the message");
  // Behind the reader: up to a word before it.
  const tooMany = sized(152);
  w.write(tooMany);
  t.is(w.overflowed, 3, "up to the reader: by the port");
  const upTo = sized(148);
  w.write(upTo);
  t.is(w.overflowed, 3);
  t.is(r.usedBytes(), 252);
  intact(wrapped);
  intact(tooMany);
  intact(upTo);
  advance(64);
  // The reader at 64: a message of exactly the 192 bytes left before the end stays there (no wrap).
  const exact = sized(192);
  w.write(exact);
  t.is(w.overflowed, 3);
  t.is(r.usedBytes(), 192);
  intact(exact);
  t.is(r.usedBytes(), 0);
  // The reader at 0 again. 100 unread bytes, then 160: neither before the end (the reader at 0 keeps its word) nor by wrapping.
  const a = sized(100);
  const b = sized(156);
  w.write(a);
  w.write(b);
  t.is(w.overflowed, 4, "the second went by the port");
  const c = sized(148);
  w.write(c);
  t.is(w.overflowed, 4, "a smaller one after it goes in the ring: the order stays the writer's");
  intact(a);
  intact(b);
  intact(c);
  // The reader at 248: 100 bytes start over at 0, so the reader is at 100. A long string (JSON) of exactly
  // the 156 bytes before the end stays there, though three bytes per character would not fit.
  advance(100);
  const long = jsonOf(156);
  t.true(long.pad.length * 3 > 156);
  w.write(long);
  t.is(w.overflowed, 4);
  t.is(r.usedBytes(), 156, "not wrapped");
  t.deepEqual(r.read(), long);
  t.false(r.pending());
  t.is(r.usedBytes(), 0);
});

test("the codec: execute calls (parked inputs, BYTES), their replies and sends cross intact (errors, no response); a bigint address goes by the port", (t) => {
  const roundTrip = (m: unknown): unknown => {
    const bytes = encodeMessage(m);
    t.not(bytes, undefined);
    return decodeMessage(Buffer.from(bytes!), 0);
  };
  const bytesTensor = { name: "S", shape: [2], lengths: [3, 0], base64: Buffer.from("abc").toString("base64") };
  const execute = {
    op: "execute",
    id: 7,
    requests: [
      { inputs: [{ name: "X", slot: 0, dtype: "FP32", shape: [2, 3] }, bytesTensor, { name: "Z", slot: 1, dtype: "BF16", shape: [] }], parked: 2 ** 40 + 3, requested: ["Y"], requestId: "r-é", parameters: { a: 1, b: "x", c: true }, modelName: "m", modelVersion: 3 },
      { inputs: [{ name: undefined, address: 8 }], parked: 0, requested: [], requestId: "", parameters: {}, modelName: "m", modelVersion: 3 },
    ],
  };
  const decodedExecute = roundTrip(execute) as typeof execute;
  t.deepEqual(decodedExecute.requests[0], execute.requests[0]);
  t.is(decodedExecute.requests[1]!.inputs[0]!.name, undefined);
  t.is((decodedExecute.requests[1]!.inputs[0] as { address: number }).address, 8);
  const reply = {
    id: 7,
    value: {
      result: { responses: [{ outputs: [{ name: "Y", address: 99 }, bytesTensor], error: undefined }, { outputs: [], error: { message: "no", code: "NOT_FOUND" } }, { other: "number" }] },
      open: [1],
    },
  };
  t.deepEqual(JSON.parse(JSON.stringify(roundTrip(reply))), JSON.parse(JSON.stringify(reply)));
  t.deepEqual(roundTrip({ id: 3, value: { result: { notArray: "undefined" }, open: [] } }), { id: 3, value: { result: { notArray: "undefined" }, open: [] } });
  t.deepEqual(roundTrip({ op: "send", call: 4, index: 2, response: undefined, final: true }), { op: "send", call: 4, index: 2, response: undefined, final: true });
  t.deepEqual(roundTrip({ id: 1, value: true }), { id: 1, value: true });
  // A small output by value: its bytes are copied out of the ring into memory of their own.
  const half = { name: "H", dtype: "FP16", shape: [2, 2], data: new Uint8Array(new Uint16Array([1, 2, 3, 65535]).buffer) };
  const encoded = Buffer.from(encodeMessage({ id: 9, value: { result: { responses: [{ outputs: [half], error: undefined }] }, open: [] } })!);
  const decodedReply = decodeMessage(encoded, 0) as { value: { result: { responses: { outputs: { name: string; dtype: string; shape: number[]; data: Uint8Array }[] }[] } } };
  const inline = decodedReply.value.result.responses[0]!.outputs[0]!;
  t.deepEqual({ ...inline, data: Array.from(inline.data) }, { ...half, data: Array.from(half.data) });
  t.not(inline.data.buffer, encoded.buffer, "the decoded bytes do not point into the ring");
  encoded.fill(0);
  t.deepEqual(Array.from(new Uint16Array(inline.data.buffer)), [1, 2, 3, 65535]);
  t.is(encodeMessage({ op: "execute", id: 1, requests: [{ ...execute.requests[1]!, inputs: [{ name: "X", address: 2n ** 60n }] }] }), undefined);
  // Short strings and shapes are kept between messages: other bytes in the same place of the same buffer (a reused ring slot) read as themselves.
  const slot = Buffer.alloc(256);
  for (const [name, shape] of [["OUT_A", [2, 2]], ["OUT_B", [2, 2]], ["OUT_B", [4, 1]], ["OUT_A", [2, 2]]] as const) {
    slot.fill(0);
    encodeMessage({ op: "send", call: 1, index: 0, final: false, response: { outputs: [{ ...half, name, shape }], error: undefined } })!.copy(slot);
    const sent = decodeMessage(slot, 0) as { response: { outputs: { name: string; shape: number[] }[] } };
    t.deepEqual([sent.response.outputs[0]!.name, sent.response.outputs[0]!.shape], [name, shape]);
  }

  const { port1, port2 } = new MessageChannel();
  const sab = ringBuffer(1024);
  const w = new RingWriter(sab, port1);
  const r = new RingReader(sab, port2);
  w.write({ a: 1 });
  w.write({ big: 2n ** 60n });
  w.write({ nan: Number.NaN }, true);
  w.write({ b: 2 });
  t.deepEqual([r.read(), r.read(), r.read(), r.read(), r.read()], [{ a: 1 }, { big: 2n ** 60n }, { nan: Number.NaN }, { b: 2 }, undefined]);
  port1.close();
  port2.close();
});

/** The bytes of a view, as numbers. */
const bytesOf = (v: ArrayBufferView): number[] => Array.from(new Uint8Array(v.buffer, v.byteOffset, v.byteLength));

test("a small output by value crosses byte for byte (NaN payloads too), every dtype, and becomes a tensor over a fresh array of its dtype's class", (t) => {
  // A quiet and a signalling NaN with payloads (element by element through a number, their bits might change).
  const f32 = new Float32Array(new Uint32Array([0x7fc0_1234, 0x7f80_0001, 0x3f80_0000, 0x8000_0000]).buffer);
  const f64 = new Float64Array(new BigUint64Array([0x7ff8_0000_0000_1234n, 0x7ff0_0000_0000_0001n]).buffer);
  const cases: [string, ArrayBufferView, number[]][] = [
    ["FP32", f32, [4]],
    ["FP32", new Float32Array([1.5, -0, Infinity, 1e-45]), [2, 2]],
    ["FP64", f64, [2]],
    ["FP64", new Float64Array([Math.PI, -Infinity]), [2]],
    ["FP16", new Uint16Array([0x3c00, 0x7e01, 0xfc00]), [3]],
    ["BF16", new Uint16Array([0x3f80, 0x7fc1]), [2]],
    ["INT64", new BigInt64Array([-(2n ** 63n), 2n ** 63n - 1n]), [2]],
    ["UINT64", new BigUint64Array([2n ** 64n - 1n]), [1]],
    ["INT8", new Int8Array([-128, 127, 0]), [3]],
    ["UINT32", new Uint32Array([0xffff_ffff, 7]), [2]],
    ["BOOL", new Uint8Array([1, 0, 1]), [3]],
    ["FP32", new Float32Array(16).fill(2), [16]],
    ["FP32", new Float32Array(17).fill(3), [17]],
  ];
  for (const [dtype, data, shape] of cases) {
    const before = bytesOf(data);
    const sent = toWire(Tensor.from(data, { dtype: dtype as "FP32", shape, name: "O" }), true);
    t.true("data" in sent, `${dtype}: by value`);
    t.deepEqual(bytesOf(data), before, `${dtype}: the model's array is left as it was`);
    const reply = { id: 1, value: { result: { responses: [{ outputs: [sent], error: undefined }] }, open: [] } };
    const decoded = decodeMessage(Buffer.from(encodeMessage(reply)!), 0) as typeof reply;
    const tensor = fromWire(decoded.value.result.responses[0]!.outputs[0]! as Parameters<typeof fromWire>[0]);
    const view = tensor.data();
    t.is(view.constructor, data.constructor, `${dtype}: its class`);
    t.deepEqual(bytesOf(view), bytesOf(data), `${dtype} ${data.byteLength} bytes`);
    t.deepEqual([tensor.dtype, [...tensor.shape], tensor.name], [dtype, shape, "O"]);
  }
});

test("a request's inputs are parked together and claimed once: the same memory, names and order (BYTES beside them); a second claim, or one after a discard, is ERR_DLPACK_CONSUMED", (t) => {
  const x = Tensor.from(new Float32Array([1, 2, 3]), { name: "X" });
  const s = Tensor.fromBytes(["a", "bc"], { name: "S" });
  const z = Tensor.from(new Int32Array([7]), { name: "Z" });
  const r = new InferenceRequest({ inputs: [x, s, z], requestId: "p", modelName: "m", modelVersion: 1 });
  const wire = requestToWire(r);
  t.true(wire.parked > 0);
  t.deepEqual(wire.inputs.map((w) => ("slot" in w ? w.slot : "bytes" in w || "base64" in w ? "copied" : "other")), [0, "copied", 1]);
  // What a second reader of the same message (or a message read twice) would do.
  const again = { ...wire };
  const back = requestFromWire(wire).inputs();
  t.deepEqual(back.map((b) => [b.name, b.dtype, b.shape]), [["X", "FP32", [3]], ["S", "BYTES", [2]], ["Z", "INT32", [1]]]);
  t.not(x.dataPtr, 0n);
  t.is(back[0]!.dataPtr, x.dataPtr, "no copy");
  t.is(back[2]!.dataPtr, z.dataPtr, "no copy");
  t.deepEqual(Array.from(back[0]!.data() as Float32Array), [1, 2, 3]);
  t.deepEqual(texts(back[1]!), ["a", "bc"]);
  t.is((t.throws(() => requestFromWire(again)) as Error & { code?: string }).code, "ERR_DLPACK_CONSUMED");
  // A request whose receiver never claims it: discarded, its batch is gone.
  const unclaimed = requestToWire(r);
  discardRequest(unclaimed);
  t.is((t.throws(() => requestFromWire(unclaimed)) as Error & { code?: string }).code, "ERR_DLPACK_CONSUMED");
  // Discarding a claimed batch is a no-op; BYTES-only requests park nothing.
  discardRequest(wire);
  t.is(requestToWire(new InferenceRequest({ inputs: [s], modelName: "m", modelVersion: 1 })).parked, 0);
});

/** A module of src/, as a JS string literal of its path (for a worker's eval'd source). */
const srcPath = (f: string): string => JSON.stringify(fileURLToPath(new URL(`../src/${f}`, import.meta.url)));

test("inputs a worker thread parks over its own JS memory are copied first: claimed after that worker ended, they hold their values", async (t) => {
  const src = srcPath;
  const boot = `require(${JSON.stringify(fileURLToPath(import.meta.resolve("tsx/cjs/api")))}).register();
    const { parentPort } = require("node:worker_threads");
    const { requestToWire } = require(${src("runtime/thread-wire.ts")});
    const { InferenceRequest } = require(${src("runtime/request.ts")});
    const { Tensor } = require(${src("tensor.ts")});
    const values = new Float32Array([1.5, 2.5, 3.5]);
    const x = Tensor.from(values, { name: "X" });
    const wire = requestToWire(new InferenceRequest({ inputs: [x], modelName: "m", modelVersion: 1 }));
    values.fill(0);
    parentPort.postMessage({ wire, ptr: x.dataPtr });`;
  const w = new Worker(boot, { eval: true });
  const [{ wire, ptr }] = (await once(w, "message")) as [{ wire: ReturnType<typeof requestToWire>; ptr: bigint }];
  await w.terminate();
  const [x] = requestFromWire(wire).inputs();
  t.not(x!.dataPtr, ptr, "a copy, not the worker's memory");
  t.deepEqual(Array.from(x!.data() as Float32Array), [1.5, 2.5, 3.5]);
});

/** Echoes X as Y and S as S_OUT; `mode` picks a failure, a hang, an await, or a large BYTES output (`big`). */
const ECHO = `
import { InferenceResponse, ModelError, Tensor, type InferenceRequest } from "tensorbridge";
export default class Echo {
  async execute(requests: InferenceRequest[]) {
    const out = [];
    for (const r of requests) {
      const mode = String(r.parameters["mode"] ?? "ok");
      if (mode === "invalid") throw new ModelError("bad input, said the worker", ModelError.INVALID_ARG);
      if (mode === "throw") throw new RangeError("boom in a worker");
      if (mode === "exit") process.exit(9);
      if (mode === "hang") for (;;);
      if (mode === "await") await new Promise((res) => setTimeout(res, 30));
      const x = r.getInputTensorByName("X")!;
      const outputTensors: Record<string, Tensor> = { Y: Tensor.from(Float32Array.from(x.data() as Float32Array), { shape: [...x.shape] }) };
      const s = r.getInputTensorByName("S");
      if (s) outputTensors["S_OUT"] = Tensor.fromBytes(s.bytes(), { shape: [...s.shape] });
      if (mode === "big") outputTensors["BIG"] = Tensor.fromBytes(Array.from({ length: 500 }, (_, i) => "b".repeat(100) + i));
      if (mode === "sizes") {
        outputTensors["HALF"] = Tensor.from(new Uint16Array([0x3c00, 0x4000, 0x4200, 0x4400]), { dtype: "FP16", shape: [2, 2] });
        outputTensors["WIDE"] = Tensor.from(Float32Array.from({ length: 8192 }, (_, i) => i), { shape: [8192] });
        outputTensors["SAME"] = x;
      }
      out.push(new InferenceResponse({ outputTensors }));
    }
    return out;
  }
}
`;

const CONFIG = {
  name: "echo",
  input: [
    { name: "X", data_type: "TYPE_FP32", dims: ["-1"] },
    { name: "S", data_type: "TYPE_STRING", dims: ["-1"], optional: true },
  ],
  output: [
    { name: "Y", data_type: "TYPE_FP32", dims: ["-1"] },
    { name: "S_OUT", data_type: "TYPE_STRING", dims: ["-1"] },
  ],
};

/** A thread instance of ECHO with rings of `ringBytes`, initialized. */
async function echoInstance(options: { ringBytes?: number; executeTimeoutMs?: number } = {}): Promise<ThreadInstance> {
  const root = makeRepo({ echo: { config: 'name: "echo"', model: ECHO } });
  const ti = new ThreadInstance(join(root, "echo", "1", "model.ts"), "model 'echo' instance echo_0", undefined, options);
  await ti.initialize({
    model_config: JSON.stringify(CONFIG),
    model_instance_kind: "CPU",
    model_instance_name: "echo_0",
    model_instance_device_id: "0",
    model_repository: join(root, "echo"),
    model_version: "1",
    model_name: "echo",
  });
  return ti;
}

function request(x: number[], opts: { s?: string[]; mode?: string } = {}): InferenceRequest {
  const inputs = [Tensor.from(new Float32Array(x), { name: "X" })];
  if (opts.s) inputs.push(Tensor.fromBytes(opts.s, { name: "S" }));
  return new InferenceRequest({ inputs, parameters: opts.mode ? { mode: opts.mode } : {}, modelName: "echo", modelVersion: 1 });
}

const out = (r: InferenceResponse, name: string): Tensor => r.outputTensors.find((o) => o.name === name)!;
const texts = (t: Tensor): string[] => t.bytes().map((b) => Buffer.from(b).toString());

/** The instance holds nothing: no unread message in either ring, no call waiting, none open. */
function idle(t: { deepEqual(a: unknown, b: unknown, m?: string): void }, ti: ThreadInstance): void {
  const { toWorkerOverflowed: _, ...held } = ti.ringStats();
  t.deepEqual(held, { toWorkerUsed: 0, fromWorkerUsed: 0, waiting: 0, openCalls: 0 }, "every ring slot and call freed");
}

test("through a 4 KiB ring: 300 requests at once come back each with its own answer; the overflow keeps their order; nothing is left held", async (t) => {
  const ti = await echoInstance({ ringBytes: 4096 });
  const n = 300;
  const answers = await Promise.all(Array.from({ length: n }, (_, i) => ti.execute([request([i, -i], { s: [`s${i}`, "é".repeat(i % 5)] })])));
  t.true(
    answers.every(([r], i) => {
      const y = out(r!, "Y").data() as Float32Array;
      return y[0] === i && y[1] === -i && texts(out(r!, "S_OUT")).join("|") === `s${i}|${"é".repeat(i % 5)}`;
    }),
    "each request got its own response",
  );
  t.true(ti.ringStats().toWorkerOverflowed > 0, "the full ring overflowed to the port");
  idle(t, ti);
  await ti.finalize();
});

test("a request and a response larger than the ring cross intact (BYTES both ways)", async (t) => {
  const ti = await echoInstance({ ringBytes: 1024 });
  const s = Array.from({ length: 2000 }, (_, i) => `element ${i} ${"x".repeat(i % 50)}`);
  const [r] = await ti.execute([request([1, 2, 3], { s, mode: "big" })]);
  t.deepEqual(texts(out(r!, "S_OUT")), s);
  t.is(texts(out(r!, "BIG"))[499], "b".repeat(100) + "499");
  t.deepEqual(Array.from(out(r!, "Y").data() as Float32Array), [1, 2, 3]);
  t.true(ti.ringStats().toWorkerOverflowed >= 1);
  // And a small one after it goes through the ring again.
  const [small] = await ti.execute([request([4])]);
  t.deepEqual(Array.from(out(small!, "Y").data() as Float32Array), [4]);
  idle(t, ti);
  await ti.finalize();
});

test("small host outputs come back by value, larger ones and BYTES by DLPack address or copy; dtype, shape and name kept; all outlive the worker", async (t) => {
  // The rule, on the wire: up to INLINE_MAX_BYTES a host tensor goes by value, above it by address; inputs always by address.
  const small = toWire(Tensor.from(new Float32Array(INLINE_MAX_BYTES / 4), { name: "A" }), true);
  t.true("data" in small && small.data.byteLength === INLINE_MAX_BYTES);
  const large = toWire(Tensor.from(new Float32Array(INLINE_MAX_BYTES / 4 + 1), { name: "B" }), true);
  t.true("address" in large);
  fromWire(large).dispose();
  const big = new Float32Array(1 << 20);
  big.set([1, 2, 3, 4], 8);
  const window = toWire(Tensor.from(big.subarray(8, 12), { name: "W" }), true);
  t.true("data" in window && window.data.buffer.byteLength === 16, "a window on a larger buffer is cut out (postMessage would clone all of it)");
  t.deepEqual(Array.from(fromWire(window).data() as Float32Array), [1, 2, 3, 4]);
  const input = toWire(Tensor.from(new Float32Array(4), { name: "C" }));
  t.true("address" in input, "without inline (inputs), by address");
  fromWire(input).dispose();

  const ti = await echoInstance();
  const [r] = await ti.execute([request([1.5, -2], { mode: "sizes" })]);
  await ti.finalize();
  // The worker is gone: what came back must not point into its memory or the ring.
  const junk = Array.from({ length: 16 }, () => new Float32Array(1 << 18).fill(9));
  const half = out(r!, "HALF");
  t.is(half.dtype, "FP16");
  t.deepEqual(half.shape, [2, 2]);
  t.deepEqual(Array.from(half.data() as Uint16Array), [0x3c00, 0x4000, 0x4200, 0x4400]);
  const wide = out(r!, "WIDE");
  t.deepEqual(wide.shape, [8192]);
  t.true((wide.data() as Float32Array).every((v, i) => v === i));
  t.deepEqual(Array.from(out(r!, "SAME").data() as Float32Array), [1.5, -2]);
  t.deepEqual(Array.from(out(r!, "Y").data() as Float32Array), [1.5, -2]);
  t.is(junk.length, 16);
});

test("errors keep their code or class through the ring; an async execute() and a worker that idled past its blocking wait still answer", async (t) => {
  const ti = await echoInstance();
  const invalid = await t.throwsAsync(ti.execute([request([1], { mode: "invalid" })]), { instanceOf: ModelError });
  t.is(invalid.code, "INVALID_ARG");
  const thrown = await t.throwsAsync(ti.execute([request([1], { mode: "throw" })]));
  t.is(thrown.name, "RangeError");
  const [a] = await ti.execute([request([5], { mode: "await" })]);
  t.deepEqual(Array.from(out(a!, "Y").data() as Float32Array), [5]);
  // Longer than the worker blocks in Atomics.wait: it waits without blocking now.
  await new Promise((res) => setTimeout(res, 50));
  const [b] = await ti.execute([request([6])]);
  t.deepEqual(Array.from(out(b!, "Y").data() as Float32Array), [6]);
  idle(t, ti);
  await ti.finalize();
});

test("a model's own timer keeps running in its worker while requests come back to back (the worker lets its event loop turn)", async (t) => {
  const root = makeRepo({
    ticks: {
      config: 'name: "ticks"',
      model: `
import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
export default class Ticks {
  ticks = 0;
  timer: ReturnType<typeof setInterval> | undefined;
  initialize() { this.timer = setInterval(() => this.ticks++, 1); }
  execute(requests: InferenceRequest[]) {
    return requests.map(() => new InferenceResponse({ outputTensors: { T: Tensor.from(new Float64Array([this.ticks])) } }));
  }
  finalize() { clearInterval(this.timer); }
}`,
    },
  });
  const ti = new ThreadInstance(join(root, "ticks", "1", "model.ts"), "model 'ticks' instance ticks_0");
  await ti.initialize({ model_config: JSON.stringify({ name: "ticks", input: [], output: [] }), model_instance_kind: "CPU", model_instance_name: "ticks_0", model_instance_device_id: "0", model_repository: join(root, "ticks"), model_version: "1", model_name: "ticks" });
  const ticks = async (): Promise<number> => ((await ti.execute([new InferenceRequest({ inputs: [] })]))[0]!.outputTensors[0]!.data() as Float64Array)[0]!;
  const first = await ticks();
  const t0 = performance.now();
  let last = first;
  while (performance.now() - t0 < 300) last = await ticks();
  t.true(last - first >= 5, `the timer ticked ${last - first} times in 300 ms of back-to-back requests`);
  idle(t, ti);
  await ti.finalize();
});

test("a worker that dies mid-request fails that request and the one queued behind it with INTERNAL; its restart gets fresh rings and serves", async (t) => {
  const ti = await echoInstance({ ringBytes: 4096 });
  const dying = ti.execute([request([1], { mode: "exit" })]);
  // Behind it, a request whose parked inputs the worker never claims: failed too, and its batch discarded.
  const queued = ti.execute([request([2])]);
  const err = await t.throwsAsync(dying, { instanceOf: ModelError });
  t.is(err.code, "INTERNAL");
  t.regex(err.message, /worker thread exited \(code 9\)/);
  t.is((await t.throwsAsync(queued, { instanceOf: ModelError })).code, "INTERNAL");
  const answers = await Promise.all(Array.from({ length: 50 }, (_, i) => ti.execute([request([i])])));
  t.true(answers.every(([r], i) => (out(r!, "Y").data() as Float32Array)[0] === i));
  t.is(ti.restarts, 1);
  idle(t, ti);
  await ti.finalize();
});

test("an execute() past EXECUTE_TIMEOUT_MS fails with ERR_EXECUTE_TIMEOUT; the restarted worker serves", async (t) => {
  const ti = await echoInstance({ executeTimeoutMs: 300 });
  const err = await t.throwsAsync(ti.execute([request([1], { mode: "hang" })]), { instanceOf: ServingError });
  t.is(err.code, "ERR_EXECUTE_TIMEOUT");
  const [r] = await ti.execute([request([2])]);
  t.deepEqual(Array.from(out(r!, "Y").data() as Float32Array), [2]);
  idle(t, ti);
  await ti.finalize();
});

test("a decoupled model in a worker streams 400 responses from timers, in order, then the final flag", async (t) => {
  const root = makeRepo({
    stream: {
      config: `name: "stream"
input { name: "N" data_type: TYPE_INT32 dims: [ 1 ] }
output { name: "I" data_type: TYPE_INT32 dims: [ 1 ] }
model_transaction_policy { decoupled: true }
parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`,
      model: `
import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
export default class Stream {
  execute(requests: InferenceRequest[]) {
    for (const r of requests) {
      const n = (r.getInputTensorByName("N")!.data() as Int32Array)[0]!;
      const sender = r.getResponseSender();
      let i = 0;
      const more = () => {
        for (let k = 0; k < 50 && i < n; k++, i++) sender.send(new InferenceResponse({ outputTensors: { I: Tensor.from(new Int32Array([i])) } }));
        if (i < n) setTimeout(more, 1);
        else sender.send(undefined, { final: true });
      };
      setTimeout(more, 1);
    }
    return null;
  }
}`,
    },
  });
  const reg = new ModelRegistry({ repository: root });
  await reg.loadAll();
  const got: number[] = [];
  const done = new Promise<string>((resolve) => {
    reg.get("stream").submitStream(
      { inputs: [Tensor.from(new Int32Array([400]), { name: "N" })] },
      {
        response: (o, final) => {
          got.push((o.outputs[0]!.data() as Int32Array)[0]!);
          if (final) resolve("final with a response");
        },
        error: (e, final) => {
          if (final) resolve(`error: ${e instanceof Error ? e.message : String(e)}`);
        },
        complete: () => resolve("complete"),
      },
    );
  });
  t.is(await done, "complete");
  t.deepEqual(
    got,
    Array.from({ length: 400 }, (_, i) => i),
  );
  await reg.close();
});

test("a process whose only work is a thread instance's request waits for it, then exits on its own (the worker is ref'd only while requests are in flight)", (t) => {
  const root = makeRepo({
    slow: {
      config: `name: "slow"
input { name: "X" data_type: TYPE_FP32 dims: [ 1 ] }
output { name: "Y" data_type: TYPE_FP32 dims: [ 1 ] }
parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`,
      model: `
import { InferenceResponse, type InferenceRequest } from "tensorbridge";
export default class Slow {
  async execute(requests: InferenceRequest[]) {
    await new Promise((res) => setTimeout(res, 300));
    return requests.map((r) => new InferenceResponse({ outputTensors: { Y: r.getInputTensorByName("X")! } }));
  }
}`,
    },
  });
  const script = join(root, "main.mts");
  writeFileSync(
    script,
    `
import { installModelModuleHook } from ${JSON.stringify(join(REPO_ROOT, "src/runtime/loader.ts"))};
import { ModelRegistry } from ${JSON.stringify(join(REPO_ROOT, "src/runtime/model-registry.ts"))};
import { Tensor } from ${JSON.stringify(join(REPO_ROOT, "src/tensor.ts"))};
await installModelModuleHook();
const reg = new ModelRegistry({ repository: ${JSON.stringify(root)} });
await reg.loadAll();
const out = await reg.get("slow").infer({ inputs: [Tensor.from(new Float32Array([42]), { name: "X" })] });
console.log("answer", (out.outputs[0].data() as Float32Array)[0]);
// No close(): an idle instance must not keep the process alive.
`,
  );
  const run = spawnSync(process.execPath, ["--import", "tsx", script], { cwd: REPO_ROOT, encoding: "utf8", timeout: 60_000 });
  t.is(run.signal, null, `the process did not exit on its own: ${run.stderr}`);
  t.is(run.status, 0, run.stderr);
  t.regex(run.stdout, /answer 42/);
});

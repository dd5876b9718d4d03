#!/usr/bin/env -S node --import tsx
/**
 * Hostile requests at volume against a `tensorbridge serve` process (the
 * bundled examples, client shared memory allowed, a 1 MiB body limit):
 * generated malformed requests over HTTP (raw sockets for framing attacks,
 * a keep-alive pool for the rest) and over gRPC (raw HTTP/2 streams via
 * node:http2 carrying hand-made protobuf).
 *
 *   node --import tsx scripts/hostile.ts                         10^5 requests
 *   node --import tsx scripts/hostile.ts --requests 5000 --json out.json
 *   node --import tsx scripts/hostile.ts --server-arg --grpc-server=grpc-js
 *
 * Kinds: truncated and oversized bodies, a body cut off by the client,
 * wrong `Inference-Header-Content-Length`, `binary_data_size` past the
 * body, negative and huge dims, dtype/shape mismatches, bad JSON and bad
 * UTF-8, unknown models and versions, path traversal in model names (infer,
 * load, unload) and in shared-memory keys, shared-memory offsets and sizes
 * past the region, and seeded mutations of valid bodies and of valid
 * protobuf messages.
 *
 * Each HTTP request must be answered 4xx with a JSON `{"error": "…"}` (a
 * mutated valid body may also be served: 200; a body that is not JSON gets
 * Triton 2.51's 500 "failed to parse the request JSON buffer", counted
 * apart), or, for framing attacks, 4xx or a clean close; each gRPC call
 * must end with a status other than OK, UNKNOWN and INTERNAL (mutations:
 * OK too; undecodable protobuf: grpc-js's INTERNAL "Error deserializing
 * request"), or a reset stream. 5xx, hangs, UNKNOWN
 * and a dead server are failures. The server's RSS is sampled throughout.
 *
 * @module
 */
import { writeFileSync, rmSync } from "node:fs";
import { connect as h2connect, type ClientHttp2Session } from "node:http2";
import { connect as netConnect } from "node:net";
import { join } from "node:path";

import { Pool } from "undici";

import { ROOT, startServerProcess } from "./lib/server-process.js";
import { rng } from "../__test__/fuzz-helpers.js";

/** Options of {@link runHostile}. */
export interface HostileOptions {
  /** Requests in all, HTTP and gRPC (default 100 000). */
  requests: number;
  /** Requests in flight at once (default 32). */
  concurrency: number;
  /** The generator's seed (default 0x5eed). */
  seed: number;
  /** Share of gRPC requests (default 0.4). */
  grpcShare: number;
  /** More `tensorbridge serve` flags (e.g. `--grpc-server=grpc-js`). */
  serverArgs: string[];
}

/** The figures {@link runHostile} reports. */
export interface HostileReport {
  options: HostileOptions;
  /** Requests sent per transport and kind, with their outcomes (`http 404`, `grpc 3`, `closed`, …). */
  outcomes: Record<string, Record<string, number>>;
  /** Requests sent in all. */
  sent: number;
  seconds: number;
  /** Server RSS in MiB: at the start, highest, at the end. */
  rssMib: { start: number; peak: number; end: number };
  /** Server RSS in MiB after each tenth of the requests: growth that levels off is the heap settling, not a leak. */
  rssSamples: number[];
  /** The server still answered /v2/health/live at the end. */
  alive: boolean;
  /** The first failures (at most 20), each with its case. */
  failures: string[];
  /** Failures in all. */
  failureCount: number;
}

const DEFAULTS: HostileOptions = { requests: 100_000, concurrency: 32, seed: 0x5eed, grpcShare: 0.4, serverArgs: [] };
const BODY_LIMIT = 1024 * 1024;


// --- HTTP cases ---------------------------------------------------------------

/** One HTTP case: sent through the pool, or `raw` bytes on a socket of its own. */
interface HttpCase {
  kind: string;
  method?: "GET" | "POST";
  path?: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
  /** Raw bytes on a fresh connection; `end` half-closes after them. */
  raw?: { bytes: Buffer; end: boolean };
  /** A mutation of a valid body: 200 is fine too. */
  mayServe?: boolean;
}

const F4 = Buffer.from(new Float32Array([1, 2, 3, 4]).buffer);
const json = (o: unknown): string => JSON.stringify(o);
const input = (name: string, extra: Record<string, unknown>) => ({ name, datatype: "FP32", shape: [4], ...extra });
const VALID_JSON = json({ inputs: [input("INPUT0", { data: [1, 2, 3, 4] }), input("INPUT1", { data: [4, 3, 2, 1] })] });
const BIN_HEADER = json({
  inputs: [input("INPUT0", { parameters: { binary_data_size: 16 } }), input("INPUT1", { parameters: { binary_data_size: 16 } })],
});
const JSON_BYTES = ["{", "}", "[", "]", ",", ":", '"', "\\", "0", "-", ".", "e", "1e400", "-1", "null", "true", "\u00e9", "\uffff"];
const TRAVERSAL = ["..", "../add_sub", "..%2Fadd_sub", "%2e%2e%2fadd_sub", "add_sub%2F..%2F..%2Fetc", "..%5c..%5cetc", "%00", "add_sub%00", "a%2Fb", "....//", "%252e%252e"];

function mutateText(next: () => number, text: string): string {
  let t = text;
  for (let i = 0, n = 1 + Math.floor(next() * 3); i < n; i++) {
    const at = Math.floor(next() * (t.length + 1));
    const r = next();
    if (r < 0.4) t = t.slice(0, at) + JSON_BYTES[Math.floor(next() * JSON_BYTES.length)]! + t.slice(at);
    else if (r < 0.7) t = t.slice(0, at) + t.slice(at + 1 + Math.floor(next() * 8));
    else t = t.slice(0, at) + JSON_BYTES[Math.floor(next() * JSON_BYTES.length)]! + t.slice(at + 1);
  }
  return t;
}

function infer(model = "add_sub", version?: string): string {
  return version === undefined ? `/v2/models/${model}/infer` : `/v2/models/${model}/versions/${version}/infer`;
}

/** A binary-extension body: a JSON header, then the tensors' bytes. */
function binary(header: string, payload: Buffer, hl = String(Buffer.byteLength(header))): HttpCase {
  return {
    kind: "",
    path: infer(),
    headers: { "inference-header-content-length": hl, "content-type": "application/octet-stream" },
    body: Buffer.concat([Buffer.from(header), payload]),
  };
}

/** The n-th HTTP case (deterministic in `next`). */
function httpCase(next: () => number, region: string): HttpCase {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const k = Math.floor(next() * 16);
  switch (k) {
    case 0: {
      // A body shorter than its Content-Length, then the client's end.
      const cut = Math.floor(next() * VALID_JSON.length);
      const head = `POST ${infer()} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${VALID_JSON.length}\r\n\r\n`;
      return { kind: "truncated-body", raw: { bytes: Buffer.from(head + VALID_JSON.slice(0, cut)), end: true } };
    }
    case 1: {
      // An announced body over the limit (with or without its first bytes).
      const n = BODY_LIMIT + 1 + Math.floor(next() * 2 ** 40);
      const head = `POST ${pick([infer(), "/v2/repository/index"])} HTTP/1.1\r\nHost: x\r\nContent-Length: ${n}\r\n\r\n{"inputs":`;
      return { kind: "oversized-body", raw: { bytes: Buffer.from(head), end: next() < 0.5 } };
    }
    case 2: {
      const hl = pick(["-1", "1e3", "abc", "0", String(BIN_HEADER.length + 1 + Math.floor(next() * 100)), String(2 ** 53), " ", "99999999999999999999"]);
      return { ...binary(BIN_HEADER, Buffer.concat([F4, F4]), hl), kind: "bad-header-length" };
    }
    case 3: {
      const size = pick([17, 32, 1e6, 2 ** 31, 2 ** 53, -16, 1.5, "16"]);
      const h = json({ inputs: [input("INPUT0", { parameters: { binary_data_size: size } }), input("INPUT1", { parameters: { binary_data_size: 16 } })] });
      return { ...binary(h, Buffer.concat([F4, F4.subarray(0, Math.floor(next() * 16))])), kind: "binary-size-past-body" };
    }
    case 4: {
      const shape = pick([[-1], [-4], [2 ** 53], [1e30], [4294967296, 4294967296], [2 ** 31, 2 ** 31, 2 ** 31], [4, -1], [0.5], ["4"], [null], {}, "4"]);
      return { kind: "bad-dims", path: infer(), body: json({ inputs: [input("INPUT0", { shape, data: [1, 2, 3, 4] }), input("INPUT1", { data: [4, 3, 2, 1] })] }) };
    }
    case 5: {
      const variant = pick([
        { datatype: "FP32", data: [1, 2, 3] },
        { datatype: "FP32", data: ["a", "b", "c", "d"] },
        { datatype: "FP99", data: [1, 2, 3, 4] },
        { datatype: "INT8", data: [1, 2, 300, 4] },
        { datatype: "BYTES", data: [1, 2, 3, 4] },
        { datatype: "BOOL", data: [1, 2, 3, 4] },
        { datatype: "FP32", data: [[1, 2], [3]] },
        { datatype: "FP32", data: [1, 2, 3, 4, 5, 6, 7, 8] },
      ]);
      return { kind: "dtype-shape-mismatch", path: infer(), body: json({ inputs: [input("INPUT0", variant), input("INPUT1", { data: [4, 3, 2, 1] })] }) };
    }
    case 6:
      return { kind: "bad-json", path: infer(), body: mutateText(next, VALID_JSON), headers: { "content-type": "application/json" }, mayServe: true };
    case 7: {
      // Bad UTF-8 in names, strings and the JSON itself.
      const bad = pick([Buffer.from([0xff]), Buffer.from([0xc3]), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from([0xf8, 0x88, 0x80, 0x80, 0x80]), Buffer.from([0xc0, 0xaf])]);
      const text = VALID_JSON;
      const at = text.indexOf(pick(["INPUT0", "FP32", "inputs", "data"]));
      return { kind: "bad-utf8", path: infer(), body: Buffer.concat([Buffer.from(text.slice(0, at)), bad, Buffer.from(text.slice(at))]) };
    }
    case 8: {
      const model = pick(["nope", "add_sub", "ADD_SUB", "add_sub%20", "add%20sub", "x".repeat(2000)]);
      // add_sub exists: only its missing versions
      const v = pick(model === "add_sub" ? ["999", "-1", "0", "abc", "1.5", "18446744073709551616", "%00"] : [undefined, "999", "-1", "abc"]);
      return { kind: "unknown-model", path: infer(model, v), body: VALID_JSON };
    }
    case 9: {
      const name = pick(TRAVERSAL);
      const path = pick([infer(name), `/v2/models/${name}`, `/v2/models/${name}/config`, `/v2/repository/models/${name}/load`, `/v2/repository/models/${name}/unload`, `/v2/models/${name}/versions/1/infer`]);
      // Unloading a model the repository lacks succeeds in Triton 2.51 (and here): a kind of its own, whose 200 is no failure.
      if (path.endsWith("/unload")) return { kind: "traversal-unload", path, body: "{}", method: "POST", mayServe: true };
      return { kind: "traversal-model", path, body: path.endsWith("infer") ? VALID_JSON : path.endsWith("load") ? "{}" : undefined, method: path.endsWith("config") || !/infer|load/.test(path) ? "GET" : "POST" };
    }
    case 10: {
      const key = pick(["../../etc/passwd", "/../../etc/passwd", "/dev/shm/../../etc/passwd", "..", ".", "/", "a/b", "triton_x", "%2e%2e%2fetc", "\u0000", "x".repeat(300), ""]);
      const name = pick(["r", "..", "../r", "r%2F..", "triton_r"]);
      return { kind: "traversal-shm-key", path: `/v2/systemsharedmemory/region/${name}/register`, body: json({ key, offset: 0, byte_size: 16 }) };
    }
    case 11: {
      const [offset, byteSize] = pick([
        [64, 16],
        [1e9, 16],
        [0, 65],
        [60, 16],
        [-16, 16],
        [2 ** 53, 16],
        [0, 2 ** 53],
        [1.5, 16],
      ]);
      const body = json({
        inputs: [input("INPUT0", { parameters: { shared_memory_region: region, shared_memory_offset: offset, shared_memory_byte_size: byteSize } }), input("INPUT1", { data: [4, 3, 2, 1] })],
      });
      return { kind: "shm-offset-past-region", path: infer(), body };
    }
    case 12: {
      const reg = pick([
        { key: region, offset: 0, byte_size: 1e9 },
        { key: region, offset: 1e9, byte_size: 1 },
        { key: region, offset: -1, byte_size: 1 },
        { key: "tb-no-such-region", offset: 0, byte_size: 1 },
      ]);
      return { kind: "shm-register-past-region", path: `/v2/systemsharedmemory/region/h${Math.floor(next() * 1e9)}/register`, body: json(reg) };
    }
    case 13: {
      // A valid binary body, mutated byte by byte.
      const b = Buffer.concat([Buffer.from(BIN_HEADER), F4, F4]);
      for (let i = 0, n = 1 + Math.floor(next() * 4); i < n; i++) b[Math.floor(next() * b.length)] = Math.floor(next() * 256);
      return { kind: "mutated-binary", path: infer(), headers: { "inference-header-content-length": String(BIN_HEADER.length) }, body: b, mayServe: true };
    }
    case 14:
      // A head of garbage: node:http's 400.
      return { kind: "garbage-head", raw: { bytes: Buffer.from(pick(["GET / HTTP/9.9\r\n\r\n", "\x00\x01\x02\r\n\r\n", "POST /v2 HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\nHost: x\r\n\r\nab", "POST /v2/models/add_sub/infer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"])), end: next() < 0.5 } };
    default:
      return { kind: "wrong-method-or-path", method: pick(["GET", "POST"] as const), path: pick(["/v2/models/add_sub/infer/x", "/v2//models", "/v2/models/add_sub/versions//infer", "/%", "/v2/models/%ff/infer"]), body: undefined };
  }
}

// --- gRPC cases ---------------------------------------------------------------

function varint(n: bigint): Buffer {
  let v = BigInt.asUintN(64, n);
  const out: number[] = [];
  do {
    let b = Number(v & 0x7fn);
    v >>= 7n;
    if (v !== 0n) b |= 0x80;
    out.push(b);
  } while (v !== 0n);
  return Buffer.from(out);
}
const tag = (field: number, wire: number): Buffer => varint(BigInt((field << 3) | wire));
const lenField = (field: number, bytes: Buffer | string): Buffer => {
  const b = typeof bytes === "string" ? Buffer.from(bytes) : bytes;
  return Buffer.concat([tag(field, 2), varint(BigInt(b.length)), b]);
};
const int64Param = (key: string, v: bigint): Buffer => lenField(4, Buffer.concat([lenField(1, key), lenField(2, Buffer.concat([tag(2, 0), varint(v)]))]));
const stringParam = (key: string, v: string): Buffer => lenField(4, Buffer.concat([lenField(1, key), lenField(2, lenField(3, v))]));

function grpcInput(name: string, datatype: string, shape: bigint[], extra: Buffer[] = []): Buffer {
  return lenField(5, Buffer.concat([lenField(1, name), lenField(2, datatype), lenField(3, Buffer.concat(shape.map(varint))), ...extra]));
}

function modelInfer(model: string, inputs: Buffer[], raw: Buffer[], version = ""): Buffer {
  return Buffer.concat([lenField(1, model), ...(version ? [lenField(2, version)] : []), ...inputs, ...raw.map((r) => lenField(7, r))]);
}

const VALID_PB_FIELDS = [lenField(1, "add_sub"), grpcInput("INPUT0", "FP32", [4n]), grpcInput("INPUT1", "FP32", [4n]), lenField(7, F4), lenField(7, F4)];
const VALID_PB = Buffer.concat(VALID_PB_FIELDS);

interface GrpcCase {
  kind: string;
  path: string;
  /** The gRPC-framed body. */
  body: Buffer;
  mayServe?: boolean;
}

function frame(msg: Buffer, announced = msg.length): Buffer {
  const p = Buffer.alloc(5);
  p.writeUInt32BE(announced >>> 0, 1);
  return Buffer.concat([p, msg]);
}

const INFER_PATH = "/inference.GRPCInferenceService/ModelInfer";

function grpcCase(next: () => number, region: string): GrpcCase {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(next() * xs.length)]!;
  const k = Math.floor(next() * 10);
  const c = (kind: string, msg: Buffer, extra: Partial<GrpcCase> = {}): GrpcCase => ({ kind, path: INFER_PATH, body: frame(msg), ...extra });
  switch (k) {
    case 0:
      return { kind: "grpc-truncated-message", path: INFER_PATH, body: frame(VALID_PB, VALID_PB.length + 1 + Math.floor(next() * 1e6)) };
    case 1: {
      const shape = pick([[-1n], [-4n], [2n ** 62n], [4294967296n, 4294967296n], [4n, -1n], [2n ** 63n - 1n]]);
      return c("grpc-bad-dims", modelInfer("add_sub", [grpcInput("INPUT0", "FP32", shape), grpcInput("INPUT1", "FP32", [4n])], [F4, F4]));
    }
    case 2: {
      const [dt, raw] = pick([
        ["FP32", F4.subarray(0, 12)],
        ["FP32", Buffer.concat([F4, F4])],
        ["FP99", F4],
        ["BYTES", F4],
        ["INT64", F4],
        ["", F4],
      ] as const);
      return c("grpc-dtype-shape-mismatch", modelInfer("add_sub", [grpcInput("INPUT0", dt, [4n]), grpcInput("INPUT1", "FP32", [4n])], [raw, F4]));
    }
    case 3:
      return c("grpc-unknown-model", modelInfer(pick(["nope", "ADD_SUB", "", "x".repeat(5000)]), [grpcInput("INPUT0", "FP32", [4n])], [F4], pick(["", "999", "-1", "abc"])));
    case 4:
      return c("grpc-traversal-model", modelInfer(pick(["../add_sub", "..", "/etc/passwd", "add_sub/../add_sub", "..\\..\\x", "add_sub\u0000"]), [grpcInput("INPUT0", "FP32", [4n])], [F4]));
    case 5: {
      const offset = pick([64n, 1000000000n, -16n, 2n ** 62n, 60n]);
      const shm = [stringParam("shared_memory_region", region), int64Param("shared_memory_offset", offset), int64Param("shared_memory_byte_size", 16n)];
      return c("grpc-shm-offset-past-region", modelInfer("add_sub", [grpcInput("INPUT0", "FP32", [4n], shm), grpcInput("INPUT1", "FP32", [4n])], [F4]));
    }
    case 6: {
      const key = pick(["../../etc/passwd", "/dev/shm/../../etc/passwd", "..", "a/b", "triton_x"]);
      const msg = Buffer.concat([lenField(1, `g${Math.floor(next() * 1e9)}`), lenField(2, key), tag(3, 0), varint(0n), tag(4, 0), varint(16n)]);
      return { kind: "grpc-traversal-shm-key", path: "/inference.GRPCInferenceService/SystemSharedMemoryRegister", body: frame(msg) };
    }
    case 7: {
      // Broken protobuf at a field boundary (inside a length-delimited
      // field the bytes would be its data): truncated varints, lengths past
      // the end, wire types 3–7 where the proto says otherwise, a nested
      // message that overruns its length.
      const bad = pick([
        Buffer.from([0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]),
        Buffer.from([0x0a, 0x05, 0x61]),
        Buffer.from([0x2a, 0x80]),
        Buffer.from([0x0b, 0x0c]),
        Buffer.from([0x0e, 0x01]),
        Buffer.from([0x2a, 0x04, 0x1a, 0x7f, 0x01, 0x02]),
        Buffer.from([0x3a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]),
      ]);
      const at = Math.floor(next() * (VALID_PB_FIELDS.length + 1));
      return c("grpc-bad-protobuf", Buffer.concat([...VALID_PB_FIELDS.slice(0, at), bad, ...VALID_PB_FIELDS.slice(at)]));
    }
    case 8: {
      const b = Buffer.from(VALID_PB);
      for (let i = 0, n = 1 + Math.floor(next() * 4); i < n; i++) b[Math.floor(next() * b.length)] = Math.floor(next() * 256);
      return c("grpc-mutated", b, { mayServe: true });
    }
    default:
      // Two messages on a unary call, or none.
      return next() < 0.5 ? { kind: "grpc-two-messages", path: INFER_PATH, body: Buffer.concat([frame(VALID_PB), frame(VALID_PB)]) } : { kind: "grpc-no-message", path: INFER_PATH, body: Buffer.alloc(0) };
  }
}

// --- running ------------------------------------------------------------------

function rawHttp(port: number, c: HttpCase): Promise<string> {
  return new Promise((resolve) => {
    const s = netConnect(port, "127.0.0.1");
    let got = "";
    const timer = setTimeout(() => {
      s.destroy();
      resolve("hang");
    }, 10_000);
    s.on("data", (d: Buffer) => {
      got += d.toString("latin1");
      // one answer is enough
      if (got.includes("\r\n\r\n")) s.end();
    });
    s.on("error", () => {});
    s.on("close", () => {
      clearTimeout(timer);
      const m = /^HTTP\/1\.1 (\d{3})/.exec(got);
      resolve(m ? `http ${m[1]}` : "closed");
    });
    s.once("connect", () => {
      if (c.raw!.end) s.end(c.raw!.bytes);
      else s.write(c.raw!.bytes);
    });
  });
}

async function pooledHttp(pool: Pool, c: HttpCase): Promise<{ outcome: string; error?: string }> {
  const res = await pool.request({ method: c.method ?? "POST", path: c.path!, headers: c.headers ?? {}, body: c.body, headersTimeout: 30_000, bodyTimeout: 30_000 });
  const text = await res.body.text();
  let error: string | undefined;
  try {
    const j = JSON.parse(text) as { error?: unknown };
    error = typeof j.error === "string" ? j.error : undefined;
  } catch {
    error = undefined;
  }
  // Triton 2.51 answers a body that is not JSON with 500 and these words (see
  // DESIGN.md's observed behaviour): matched, so counted apart, not as a failure.
  if (res.statusCode === 500 && error?.startsWith("failed to parse the request JSON buffer")) return { outcome: "http 500 (Triton's answer to unparseable JSON)" };
  // And a load of a model the repository does not have with 500 "failed to load '…', failed to poll from model repository".
  if (res.statusCode === 500 && error !== undefined && /^failed to load '.*', failed to poll from model repository: /s.test(error)) {
    return { outcome: "http 500 (Triton's answer to loading a model the repository lacks)" };
  }
  return { outcome: `http ${res.statusCode}`, error: res.statusCode >= 400 && error === undefined ? `no JSON error in ${JSON.stringify(text.slice(0, 200))}` : undefined };
}

function grpcCall(session: ClientHttp2Session, c: GrpcCase): Promise<string> {
  return new Promise((resolve) => {
    const req = session.request({ ":method": "POST", ":path": c.path, "content-type": "application/grpc", te: "trailers" });
    let status: string | undefined;
    const timer = setTimeout(() => {
      req.close();
      resolve("hang");
    }, 30_000);
    req.on("response", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    req.on("trailers", (h) => {
      if (h["grpc-status"] !== undefined) status = String(h["grpc-status"]);
    });
    req.on("data", () => {});
    req.on("error", () => {});
    req.on("close", () => {
      clearTimeout(timer);
      resolve(status === undefined ? "reset" : `grpc ${status}`);
    });
    req.end(c.body);
  });
}

/**
 * Runs the hostile requests against a fresh server process.
 *
 * @returns the figures; `failures` lists what went wrong.
 */
export async function runHostile(opts: Partial<HostileOptions> = {}): Promise<HostileReport> {
  const o: HostileOptions = { ...DEFAULTS, ...opts };
  const t0 = Date.now();
  const server = await startServerProcess(join(ROOT, "examples/models"), ["--allow-client-shm=true", `--http-max-body-size=${BODY_LIMIT}`, ...o.serverArgs]);
  // A real 64-byte region for the offset cases.
  const key = `tb-hostile-${process.pid}`;
  writeFileSync(`/dev/shm/${key}`, Buffer.alloc(64));
  const pool = new Pool(`http://127.0.0.1:${server.httpPort}`, { connections: o.concurrency, pipelining: 1 });
  const reg = await pool.request({ method: "POST", path: "/v2/systemsharedmemory/region/hostile/register", body: json({ key, offset: 0, byte_size: 64 }) });
  await reg.body.text();
  const region = "hostile";
  let session = h2connect(`http://127.0.0.1:${server.grpcPort}`);
  session.on("error", () => {});
  const outcomes: Record<string, Record<string, number>> = {};
  const failures: string[] = [];
  let failureCount = 0;
  const fail = (m: string): void => {
    failureCount++;
    if (failures.length < 20) failures.push(m);
  };
  const rss = { start: server.rssMib(), peak: 0, end: 0 };
  const samples: number[] = [];
  const next = rng(o.seed);
  let sent = 0;
  let i = 0;
  const worker = async (): Promise<void> => {
    while (i < o.requests) {
      const n = i++;
      if (n % 500 === 0) rss.peak = Math.max(rss.peak, server.rssMib());
      if (n > 0 && n % Math.max(1, Math.floor(o.requests / 10)) === 0) samples.push(Math.round(server.rssMib() * 10) / 10);
      let kind: string;
      let outcome: string;
      let ok: boolean;
      let detail = "";
      if (next() < o.grpcShare) {
        const c = grpcCase(next, region);
        kind = c.kind;
        if (session.closed || session.destroyed) {
          session = h2connect(`http://127.0.0.1:${server.grpcPort}`);
          session.on("error", () => {});
        }
        outcome = await grpcCall(session, c);
        // UNKNOWN (an unhandled exception) never; INTERNAL only where grpc-js
        // (and Triton) answer a message that does not decode.
        const internalOk = c.kind === "grpc-bad-protobuf" || c.kind === "grpc-mutated";
        ok =
          outcome === "reset" ||
          (outcome.startsWith("grpc ") && outcome !== "grpc 2" && (outcome !== "grpc 0" || c.mayServe === true) && (outcome !== "grpc 13" || internalOk));
        detail = c.body.subarray(0, 120).toString("hex");
      } else {
        const c = httpCase(next, region);
        kind = c.kind;
        detail = c.raw ? JSON.stringify(c.raw.bytes.subarray(0, 200).toString("latin1")) : `${c.method ?? "POST"} ${c.path} ${JSON.stringify(String(c.body ?? "").slice(0, 200))}`;
        if (c.raw) {
          outcome = await rawHttp(server.httpPort, c);
          ok = outcome === "closed" || /^http 4\d\d$/.test(outcome);
        } else {
          try {
            const r = await pooledHttp(pool, c);
            outcome = r.outcome;
            ok = ((/^http 4\d\d$/.test(outcome) || outcome.startsWith("http 500 (Triton")) && r.error === undefined) || (outcome === "http 200" && c.mayServe === true);
            if (r.error) detail += ` (${r.error})`;
          } catch (e) {
            outcome = `client error ${(e as { code?: string }).code ?? ""}`;
            ok = false;
          }
        }
      }
      sent++;
      const k = (outcomes[kind] ??= {});
      k[outcome] = (k[outcome] ?? 0) + 1;
      if (!ok) fail(`${kind}: ${outcome}: ${detail}`);
    }
  };
  await Promise.all(Array.from({ length: o.concurrency }, worker));
  let alive = false;
  try {
    const live = await pool.request({ method: "GET", path: "/v2/health/live" });
    await live.body.text();
    alive = live.statusCode === 200 && server.alive();
  } catch {
    alive = false;
  }
  if (!alive) fail("the server does not answer /v2/health/live any more");
  rss.end = server.rssMib();
  rss.peak = Math.max(rss.peak, rss.end);
  session.close();
  await pool.close();
  const code = await server.stop(15_000);
  if (code !== 0) fail(`the server exited with ${code} on SIGTERM:\n${server.output().slice(-2000)}`);
  rmSync(`/dev/shm/${key}`, { force: true });
  return { options: o, outcomes, sent, seconds: (Date.now() - t0) / 1000, rssMib: rss, rssSamples: samples, alive, failures, failureCount };
}

if (import.meta.url === `file://${process.argv[1]}`) {
  const args = process.argv.slice(2);
  const opts: Partial<HostileOptions> = {};
  let jsonOut: string | undefined;
  for (let a = 0; a < args.length; a++) {
    const name = args[a]!;
    const v = args[++a]!;
    if (name === "--requests") opts.requests = Number(v);
    else if (name === "--concurrency") opts.concurrency = Number(v);
    else if (name === "--seed") opts.seed = Number(v);
    else if (name === "--grpc-share") opts.grpcShare = Number(v);
    else if (name === "--server-arg") (opts.serverArgs ??= []).push(v);
    else if (name === "--json") jsonOut = v;
    else throw new Error(`unknown argument ${name}`);
  }
  const report = await runHostile(opts);
  const text = JSON.stringify(report, null, 2);
  if (jsonOut) writeFileSync(jsonOut, text);
  console.log(text);
  process.exitCode = report.failureCount > 0 ? 1 : 0;
}

/** Shared helpers of the runtime and server suites (not a test file). */
import { spawn } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { connect as h2connect } from "node:http2";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

import * as grpc from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";
import { request } from "undici";

import { ServingError } from "../src/runtime/errors.js";
import { installModelModuleHook } from "../src/runtime/loader.js";
import { decodeInferRequest } from "../src/server/codec.js";
import { InferenceServer, type ServerOptions } from "../src/server/server.js";

const here = dirname(fileURLToPath(import.meta.url));
/** The repository root. */
export const ROOT = join(here, "..");

/**
 * Installs the model module hook: models' `import ... from "tensorbridge"`
 * maps to this copy's src/index.ts (which re-exports the runtime).
 */
export async function setupModelEntry(): Promise<void> {
  await installModelModuleHook();
}

/** A model to write into a temporary repository. */
export interface TestModel {
  /** config.pbtxt content (`name` is not needed). */
  config: string;
  /** model.ts content (or per version). */
  model?: string;
  /** Versions to create (default [1]). */
  versions?: number[];
  /** File name in the version directory (default model.ts). */
  file?: string;
}

const made: string[] = [];

/** Writes a model repository into a fresh temporary directory. */
export function makeRepo(models: Record<string, TestModel>): string {
  const root = mkdtempSync(join(tmpdir(), "tb-repo-"));
  made.push(root);
  for (const [name, m] of Object.entries(models)) addModel(root, name, m);
  return root;
}

/** Adds (or overwrites) a model in a repository. */
export function addModel(root: string, name: string, m: TestModel): void {
  const dir = join(root, name);
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.pbtxt"), m.config);
  for (const v of m.versions ?? [1]) {
    mkdirSync(join(dir, String(v)), { recursive: true });
    if (m.model !== undefined) writeFileSync(join(dir, String(v), m.file ?? "model.ts"), m.model);
  }
}

/** Removes the temporary repositories (call from test.after.always). */
export function cleanupRepos(): void {
  for (const d of made.splice(0)) rmSync(d, { recursive: true, force: true });
}

/** Starts a quiet server on 127.0.0.1 and a free port. */
export async function startTestServer(repository: string, opts: Partial<ServerOptions> = {}): Promise<InferenceServer> {
  await setupModelEntry();
  return InferenceServer.start({ repository, host: "127.0.0.1", port: 0, grpcPort: 0, quiet: true, defaultMetrics: false, ...opts });
}

/** An HTTP answer. */
export interface Answer {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** The body parsed as JSON (undefined when empty or not JSON). */
  json: any;
}

/** Sends a request with undici. */
export async function http(
  server: InferenceServer,
  method: "GET" | "POST" | "PUT" | "DELETE",
  path: string,
  body?: string | Buffer | object,
  headers: Record<string, string> = {},
): Promise<Answer> {
  let payload: string | Buffer | undefined;
  if (body === undefined || typeof body === "string" || Buffer.isBuffer(body)) payload = body as string | Buffer | undefined;
  else payload = JSON.stringify(body);
  const res = await request(`${server.address.url}${path}`, { method, body: payload, headers });
  const buf = Buffer.from(await res.body.arrayBuffer());
  let json: unknown;
  try {
    json = buf.length ? JSON.parse(buf.toString("utf8")) : undefined;
  } catch {
    json = undefined;
  }
  return { status: res.statusCode, headers: res.headers, body: buf, json };
}

/** One binary input of {@link binaryRequest}. */
export interface BinaryInput {
  name: string;
  datatype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Builds a binary-extension body: JSON header + tensors. */
export function binaryRequest(
  inputs: BinaryInput[],
  extra: Record<string, unknown> = {},
): { body: Buffer; headers: Record<string, string> } {
  const header = Buffer.from(
    JSON.stringify({
      ...extra,
      inputs: inputs.map((i) => ({ name: i.name, datatype: i.datatype, shape: i.shape, parameters: { binary_data_size: i.bytes.length } })),
    }),
  );
  return {
    body: Buffer.concat([header, ...inputs.map((i) => Buffer.from(i.bytes.buffer, i.bytes.byteOffset, i.bytes.byteLength))]),
    headers: { "inference-header-content-length": String(header.length), "content-type": "application/octet-stream" },
  };
}

/** Splits a binary-extension response into its JSON header and each output's bytes. */
export function parseBinaryResponse(a: Answer): { header: any; outputs: Map<string, Buffer> } {
  const hl = a.headers["inference-header-content-length"];
  const n = hl === undefined ? a.body.length : Number(hl);
  const header = JSON.parse(a.body.subarray(0, n).toString("utf8"));
  const outputs = new Map<string, Buffer>();
  let off = n;
  for (const o of header.outputs as { name: string; parameters?: { binary_data_size?: number } }[]) {
    const size = o.parameters?.binary_data_size;
    if (size === undefined) continue;
    outputs.set(o.name, a.body.subarray(off, off + size));
    off += size;
  }
  return { header, outputs };
}

/** Bytes of a TypedArray. */
export function bytesOf(v: ArrayBufferView): Uint8Array {
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

/** The BYTES wire form of strings. */
export function bytesElements(elements: string[]): Uint8Array {
  const parts = elements.map((s) => Buffer.from(s, "utf8"));
  const out = Buffer.alloc(parts.reduce((n, p) => n + 4 + p.length, 0));
  let off = 0;
  for (const p of parts) {
    out.writeUInt32LE(p.length, off);
    p.copy(out, off + 4);
    off += 4 + p.length;
  }
  return out;
}

/** The add_sub example's config and model, from examples/models. */
export const ADD_SUB: TestModel = {
  config: readFileSync(join(ROOT, "examples/models/add_sub/config.pbtxt"), "utf8"),
  model: readFileSync(join(ROOT, "examples/models/add_sub/1/model.ts"), "utf8"),
};

/** Resolves after `ms` milliseconds. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/**
 * What a decode gave, comparable with deepEqual (data as arrays, -0 and NaN
 * kept apart by the string form), or its error: its code, message, and
 * whether it was a ServingError (anything else would be a server bug).
 */
export function decodeOutcome(sent: Buffer, hl?: string): unknown {
  try {
    const d = decodeInferRequest(sent, hl);
    return {
      inputs: d.input.inputs.map((t) => ({
        name: t.name,
        dtype: t.dtype,
        shape: [...t.shape],
        data: t.dtype === "BYTES" ? t.bytes().map((b) => Buffer.from(b).toString("latin1")) : Array.from(t.data() as ArrayLike<number | bigint>, (v) => (Object.is(v, -0) ? "-0" : String(v))),
      })),
      outputs: d.outputs.map((o) => ({ ...o })),
      names: d.input.outputs,
      parameters: { ...d.input.parameters },
      id: d.input.id,
      binaryDefault: d.binaryDefault,
    };
  } catch (e) {
    return { error: (e as ServingError).code, message: (e as Error).message, serving: e instanceof ServingError };
  }
}

// --- gRPC -------------------------------------------------------------------

/** A `GRPCInferenceService` client (methods by their proto names, callback style), from @grpc/grpc-js. */
export type GrpcClient = grpc.Client & Record<string, (...args: any[]) => any>;

/**
 * A @grpc/grpc-js client of Triton's `inference.GRPCInferenceService`, from
 * the same pinned protos the server loads (field names as in the proto,
 * 64-bit integers as numbers, enums as names, oneofs with their member's
 * name; `defaults` fills in absent fields).
 */
export function grpcClient(target: InferenceServer | string, opts: { defaults?: boolean } = {}): GrpcClient {
  const dir = join(ROOT, "proto/triton");
  const def = loadSync(join(dir, "grpc_service.proto"), {
    keepCase: true,
    longs: Number,
    enums: String,
    bytes: Buffer,
    defaults: opts.defaults ?? false,
    oneofs: true,
    includeDirs: [dir],
  });
  const Ctor = grpc.loadPackageDefinition(def)["inference"] as unknown as { GRPCInferenceService: new (t: string, c: grpc.ChannelCredentials, o: object) => GrpcClient };
  const url = typeof target === "string" ? target : target.grpcAddress!.url;
  return new Ctor.GRPCInferenceService(url, grpc.credentials.createInsecure(), { "grpc.max_receive_message_length": -1, "grpc.max_send_message_length": -1 });
}

/** A unary gRPC answer: the response, or the status of the error. */
export type GrpcAnswer<T = any> = { ok: true; value: T } | { ok: false; code: grpc.status; details: string };

/** Calls a unary RPC and resolves with its answer (never rejects). */
export function grpcUnary<T = any>(
  client: GrpcClient,
  method: string,
  message: object,
  opts: { metadata?: grpc.Metadata; deadline?: number } = {},
): Promise<GrpcAnswer<T>> {
  return new Promise((resolve) => {
    const callOpts: grpc.CallOptions = opts.deadline === undefined ? {} : { deadline: Date.now() + opts.deadline };
    client[method]!(message, opts.metadata ?? new grpc.Metadata(), callOpts, (err: grpc.ServiceError | null, value: T) =>
      resolve(err ? { ok: false, code: err.code, details: err.details } : { ok: true, value }),
    );
  });
}

// --- the Python client venv (bench/serving/setup.sh client) -------------------

/** The Triton client venv: `TENSORBRIDGE_CLIENT_VENV`, or bench/.work/venv-client. */
export const CLIENT_VENV = process.env["TENSORBRIDGE_CLIENT_VENV"] ?? join(ROOT, "bench/.work/venv-client");

/** The client venv's site-packages directories. */
export function clientSitePackages(): string[] {
  try {
    const lib = join(CLIENT_VENV, "lib");
    return readdirSync(lib).map((py) => join(lib, py, "site-packages"));
  } catch {
    return [];
  }
}

/** Why `tritonclient.grpc` can't run here (a test skips with it), or undefined when it can. */
export function grpcClientMissing(): string | undefined {
  const how = "run bash bench/serving/setup.sh client";
  if (!existsSync(join(CLIENT_VENV, "bin/python"))) return `tritonclient is not installed (${CLIENT_VENV}); ${how}`;
  if (!clientSitePackages().some((d) => existsSync(join(d, "tritonclient/grpc")))) return `tritonclient[grpc] is not installed in ${CLIENT_VENV}; ${how}`;
  return undefined;
}

/** Runs a command; resolves with its exit code and its output (stdout and stderr together). */
export function runCommand(cmd: string, args: string[], env: NodeJS.ProcessEnv = {}, timeoutMs = 120_000): Promise<{ code: number | null; out: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      resolve({ code, out });
    });
  });
}

/** One raw HTTP/2 exchange with a gRPC port: what came back (headers, body, trailers). */
export interface RawGrpcAnswer {
  headers: Record<string, unknown>;
  body: Buffer;
  trailers: Record<string, unknown>;
}

/**
 * Sends one gRPC request as raw HTTP/2 (node:http2 as the client: `body`
 * as given, framed or not) and collects everything that comes back.
 * `settings` shapes the client's side (its flow-control window, say).
 */
export async function rawGrpcCall(
  port: number,
  body: Buffer,
  headers: Record<string, string> = {},
  path = "/inference.GRPCInferenceService/ModelInfer",
  settings: Record<string, number> = {},
): Promise<RawGrpcAnswer> {
  const session = h2connect(`http://127.0.0.1:${port}`, { settings });
  try {
    return await new Promise<RawGrpcAnswer>((resolve, reject) => {
      const req = session.request({ ":method": "POST", ":path": path, "content-type": "application/grpc", te: "trailers", ...headers });
      const chunks: Buffer[] = [];
      let head: Record<string, unknown> = {};
      let trailers: Record<string, unknown> = {};
      req.on("response", (h) => (head = { ...h }));
      req.on("trailers", (h) => (trailers = { ...h }));
      req.on("data", (c: Buffer) => chunks.push(c));
      req.on("end", () => resolve({ headers: head, body: Buffer.concat(chunks), trailers }));
      req.on("error", reject);
      req.end(body);
    });
  } finally {
    session.close();
  }
}

/**
 * Runs a Python probe (a script that drives a server with tritonclient and
 * prints a JSON transcript) and resolves with the parsed transcript; rejects
 * with the tail of its stderr when it fails, or when it runs past `timeoutMs`.
 */
export function runProbe<T>(python: string, script: string, args: readonly string[], timeoutMs: number): Promise<T> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [script, ...args], { stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    let err = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (err += d.toString()));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("exit", (code) => {
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`${script} ${args.join(" ")} exited ${code}:\n${err.slice(-3000)}`));
      try {
        resolve(JSON.parse(out) as T);
      } catch (e) {
        reject(new Error(`${script} printed no JSON (${(e as Error).message}):\n${out.slice(0, 2000)}\n${err.slice(-2000)}`));
      }
    });
  });
}

/**
 * The direct path for unary `ModelInfer`: the HTTP/2 streams of plain
 * ModelInfer calls are served on grpc-js's own HTTP/2 server before
 * grpc-js dispatches them, with the same answers (headers, message,
 * trailers, status codes and messages) but without grpc-js's per-call
 * machinery (its call object, interceptor chain, metadata conversion,
 * stream decoder, and the write-callback round before the trailers).
 *
 * Why: with a small model (add_sub), grpc-js's per-call work is a large
 * part of a request's CPU time on the server. Measured with perf_analyzer
 * on a (busy) 2-vCPU machine, both paths in one process, six alternating
 * runs each: server CPU per request at concurrency 1, best run, 109 µs
 * here against 141 µs through grpc-js (p50 133 against 174 µs).
 *
 * A call is taken only when grpc-js would do nothing the direct path
 * doesn't: a POST to `/inference.GRPCInferenceService/ModelInfer` with a
 * `application/grpc…` content type, no `grpc-timeout` (deadlines stay with
 * grpc-js), and no `grpc-encoding` other than `identity` (compression
 * stays with grpc-js). Every other stream — every other RPC, streams,
 * calls with a deadline or compression — goes to grpc-js's own handler,
 * unchanged.
 *
 * The hook reads grpc-js's HTTP/2 servers from its (TypeScript-private)
 * `http2Servers` map: package.json pins grpc-js to one exact version, and
 * where the map is not as expected the hook installs nothing and grpc-js
 * serves every call (`installDirectPath` returns false; a test asserts it
 * returns true with the pinned version).
 *
 * @module
 */
import type { Http2Server, IncomingHttpHeaders, ServerHttp2Stream } from "node:http2";

import type { Server } from "@grpc/grpc-js";

import { Cancellation } from "../../runtime/cancel.js";
import type { InferCallbacks, InferOutput } from "../../runtime/model-version.js";
import type { SharedMemoryAccess } from "../codec.js";
import { responseOutputs, type ShmPlacement } from "./infer.js";
import type { GrpcStatus } from "./status.js";
import { encodeModelInferResponse, type WireInferRequest } from "./wire.js";

/** The path of the calls the direct path takes. */
export const MODEL_INFER_PATH = "/inference.GRPCInferenceService/ModelInfer";

/** What the direct path needs from the transport. */
export interface DirectHandler {
  /** True once the transport is closing (calls then go to grpc-js, which refuses new ones its way). */
  closing(): boolean;
  /** Decodes and runs one request; the reply gets the outcome (`fail` for an error before the model). */
  serve(body: Buffer, reply: DirectReply): void;
  /** What the replies share. */
  context: DirectContext;
}

/** grpc-js's answer headers for a unary call (server-interceptors.js: default response and compression headers). */
const RESPONSE_HEADERS = Object.freeze({
  ":status": 200,
  "content-type": "application/grpc+proto",
  "grpc-accept-encoding": "identity,deflate,gzip",
  "grpc-encoding": "identity",
});
const OK_TRAILERS = Object.freeze({ "grpc-status": "0", "grpc-message": "OK" });
const RESPOND_OPTIONS = Object.freeze({ waitForTrailers: true });
const END_OPTIONS = Object.freeze({ endStream: true });

/**
 * Whether grpc-js would treat this stream exactly as the direct path does:
 * see the module docs.
 */
function takes(headers: IncomingHttpHeaders): boolean {
  if (headers[":path"] !== MODEL_INFER_PATH || headers[":method"] !== "POST") return false;
  const ct = headers["content-type"];
  if (typeof ct !== "string" || !ct.startsWith("application/grpc")) return false;
  if (headers["grpc-timeout"] !== undefined) return false;
  const enc = headers["grpc-encoding"];
  return enc === undefined || enc === "identity";
}

/**
 * Puts the direct path in front of grpc-js's `stream` handler on each of
 * the server's HTTP/2 servers (call after `bindAsync` resolved).
 *
 * @returns false (and changes nothing) when grpc-js's internals are not as expected.
 */
export function installDirectPath(server: Server, handler: DirectHandler, maxMessage: number): boolean {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map) || servers.size === 0) return false;
  const targets: { srv: Http2Server; listeners: ((...args: unknown[]) => void)[] }[] = [];
  for (const srv of servers.keys()) {
    if (typeof (srv as Http2Server)?.listeners !== "function") return false;
    const listeners = (srv as Http2Server).listeners("stream") as ((...args: unknown[]) => void)[];
    if (listeners.length !== 1) return false;
    targets.push({ srv: srv as Http2Server, listeners });
  }
  for (const { srv, listeners } of targets) {
    const grpcJs = listeners[0]!;
    srv.removeListener("stream", grpcJs);
    srv.on("stream", function (this: Http2Server, stream: ServerHttp2Stream, headers: IncomingHttpHeaders, ...rest: unknown[]) {
      if (!takes(headers) || handler.closing()) {
        grpcJs.call(this, stream, headers, ...rest);
        return;
      }
      readUnary(stream, handler, maxMessage);
    });
  }
  return true;
}

/** Reads a unary call's request (its one gRPC message), then serves it. */
function readUnary(stream: ServerHttp2Stream, handler: DirectHandler, maxMessage: number): void {
  // As grpc-js: errors show up as a close (cancellation) too; nothing to send on a broken stream.
  stream.once("error", noop);
  let first: Buffer | undefined;
  let chunks: Buffer[] | undefined;
  let size = 0;
  let tooLarge = false;
  stream.on("data", (c: Buffer) => {
    if (tooLarge) return;
    size += c.length;
    if (size > maxMessage + 5) {
      tooLarge = true;
      chunks = undefined;
      first = undefined;
      return;
    }
    if (first === undefined) first = c;
    else (chunks ??= [first]).push(c);
  });
  stream.on("end", () => {
    const reply = new DirectReply(new NodeStreamOut(stream), handler.context);
    if (tooLarge) {
      reply.fail({ code: 8 /* RESOURCE_EXHAUSTED */, details: `Received message larger than max (${size - 5} vs. ${maxMessage})` });
      return;
    }
    const body = chunks !== undefined ? Buffer.concat(chunks, size) : first;
    // gRPC framing: one message, [compressed flag, 4-byte big-endian length, bytes]. As grpc-js's
    // unary handler: none (or a partial one) and more than one are UNIMPLEMENTED.
    if (body === undefined || body.length < 5 || body.readUInt32BE(1) > body.length - 5) {
      reply.fail({ code: 12, details: `Received no request message for server streaming method ${MODEL_INFER_PATH}` });
      return;
    }
    const len = body.readUInt32BE(1);
    if (body.length > 5 + len) {
      reply.fail({ code: 12, details: `Received a second request message for server streaming method ${MODEL_INFER_PATH}` });
      return;
    }
    handler.serve(body.subarray(5), reply);
  });
}

function noop(): void {}

/** The OK trailers, as a `wantTrailers` listener (the stream is `this`: no closure per call). */
function sendOkTrailers(this: ServerHttp2Stream): void {
  this.sendTrailers(OK_TRAILERS);
}

/** What every {@link DirectReply} of one transport shares. */
export interface DirectContext {
  /** Shared-memory access for outputs placed in a region. */
  shm: SharedMemoryAccess;
  /** The status of an error (logged by the transport as its errors are). */
  statusOf(req: WireInferRequest | undefined, e: unknown): GrpcStatus;
}

/** Where a unary ModelInfer answer goes: an HTTP/2 stream of node:http2 or of this server's own HTTP/2. */
export interface UnaryOut {
  /** True when the call can no longer be answered (the stream is closed or reset). */
  readonly gone: boolean;
  /** Answers with headers, one framed message (5-byte gRPC prefix included) and the OK trailers. */
  ok(frame: Buffer): void;
  /** Answers with a status alone (a trailers-only response). */
  status(s: GrpcStatus): void;
  /** Calls `fn` once if the stream closes before it was answered. */
  onGone(fn: () => void): void;
}

/** A node:http2 stream (grpc-js's server) as a {@link UnaryOut}. */
class NodeStreamOut implements UnaryOut {
  constructor(readonly stream: ServerHttp2Stream) {}

  get gone(): boolean {
    return this.stream.destroyed || this.stream.closed;
  }

  ok(frame: Buffer): void {
    const stream = this.stream;
    stream.respond(RESPONSE_HEADERS, RESPOND_OPTIONS);
    stream.once("wantTrailers", sendOkTrailers);
    stream.end(frame);
  }

  status(s: GrpcStatus): void {
    this.stream.respond(
      { "grpc-status": String(s.code), "grpc-message": encodeURI(s.details), ":status": 200, "content-type": "application/grpc+proto" },
      END_OPTIONS,
    );
  }

  onGone(fn: () => void): void {
    this.stream.once("close", fn);
  }
}

/**
 * Answers one direct-path call; it is also the request's
 * {@link Cancellation} (the client resetting the stream cancels it).
 */
export class DirectReply extends Cancellation implements InferCallbacks {
  /** True once answered (or the stream went away): nothing more is sent. */
  settled = false;
  /** The decoded request, once decoded. */
  request: WireInferRequest | undefined;
  /** Outputs the request placed in shared memory. */
  shmOutputs: Map<string, ShmPlacement> | undefined;

  constructor(
    readonly out: UnaryOut,
    readonly ctx: DirectContext,
  ) {
    super();
  }

  resolve(out: InferOutput): void {
    if (this.settled) return;
    let frame: Buffer;
    try {
      const outputs = responseOutputs(out, this.shmOutputs, this.ctx.shm);
      frame = encodeModelInferResponse({ model_name: out.modelName, model_version: String(out.modelVersion), id: out.id, outputs }, true);
    } catch (e) {
      this.reject(e);
      return;
    }
    this.settled = true;
    if (!this.out.gone) this.out.ok(frame);
  }

  reject(e: unknown): void {
    if (this.settled) return;
    this.fail(this.ctx.statusOf(this.request, e));
  }

  /** Ends the call with an error status (a trailers-only answer, as grpc-js sends one). */
  fail(s: GrpcStatus): void {
    this.settled = true;
    if (!this.out.gone) this.out.status(s);
  }

  /** Cancels the request if the stream closes before the answer (the client cancelling or resetting the call). */
  watch(): void {
    if (!this.settled) this.out.onGone(this.onClose);
  }

  /** The stream closed: before an answer, that is the client cancelling (or resetting) the call. */
  onClose = (): void => {
    if (this.settled) return;
    this.settled = true;
    this.cancel();
  };
}

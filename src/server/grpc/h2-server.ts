/**
 * gRPC calls over this server's own HTTP/2 (`h2/connection.ts`): the
 * framing of messages, statuses, deadlines (`grpc-timeout`) and message
 * compression (`grpc-encoding` gzip and deflate, read; answers are never
 * compressed), with the service's handlers written for grpc-js (the
 * transport keeps grpc-js's handler shapes, so both servers run the same
 * handlers) and a direct path for unary `ModelInfer` (`direct.ts`).
 *
 * Answers match what grpc-js sends where a client can see it: statuses,
 * their messages (percent-encoded `grpc-message`), trailers-only error
 * answers, `UNIMPLEMENTED` for an unknown method, HTTP 415 for a request
 * that is not gRPC.
 *
 * @module
 */
import { EventEmitter } from "node:events";
import { createServer, type Server as NetServer, type Socket } from "node:net";
import { gunzipSync, inflateSync } from "node:zlib";

import type { ServiceDefinition, UntypedServiceImplementation } from "@grpc/grpc-js";

import { errorMessage } from "../../runtime/errors.js";
import { ConnectionLimit, http2Refusal, type ConnectionLimitCounters } from "../connection-limit.js";
import { DirectReply, type DirectHandler, type UnaryOut } from "./direct.js";
import { H2_CANCEL, H2_NO_ERROR, H2Connection, type H2Stream, type H2StreamHandler } from "./h2/connection.js";
import { encodeHeaders, type HeaderMap } from "./h2/hpack.js";
import { RequestDeadlineWatch } from "./request-deadline.js";
import type { GrpcStatus } from "./status.js";

/** gRPC status codes used here. */
const OK = 0;
const DEADLINE_EXCEEDED = 4;
const RESOURCE_EXHAUSTED = 8;
const UNIMPLEMENTED = 12;
const INTERNAL = 13;

const RESPONSE_HEADERS = encodeHeaders([
  [":status", "200"],
  ["content-type", "application/grpc"],
  ["grpc-accept-encoding", "identity,deflate,gzip"],
]);
const OK_TRAILERS = encodeHeaders([["grpc-status", "0"]]);

/** A trailers-only answer with status `s` (headers and status in one block). */
function statusOnly(s: GrpcStatus): Buffer {
  return encodeHeaders([
    [":status", "200"],
    ["content-type", "application/grpc"],
    ["grpc-status", String(s.code)],
    ["grpc-message", encodeURI(s.details)],
  ]);
}

/** Trailers with status `s`, after headers were sent. */
function statusTrailers(s: GrpcStatus): Buffer {
  return s.code === OK ? OK_TRAILERS : encodeHeaders([["grpc-status", String(s.code)], ["grpc-message", encodeURI(s.details)]]);
}

/** `grpc-timeout` in milliseconds, or undefined when absent or malformed (gRPC's `1*8DIGIT unit`). */
export function parseGrpcTimeout(v: string | undefined): number | undefined {
  if (v === undefined) return undefined;
  const m = /^(\d{1,8})([HMSmun])$/.exec(v);
  if (m === null) return undefined;
  const n = Number(m[1]);
  switch (m[2]) {
    case "H":
      return n * 3_600_000;
    case "M":
      return n * 60_000;
    case "S":
      return n * 1000;
    case "m":
      return n;
    case "u":
      return n / 1000;
    default:
      return n / 1_000_000;
  }
}

/** The metadata of a call, as grpc-js's `Metadata.get` reads it (the handlers only read text keys). */
class CallMetadata {
  constructor(readonly headers: HeaderMap) {}

  get(key: string): string[] {
    const v = this.headers.get(key.toLowerCase());
    return v === undefined ? [] : [v];
  }
}

/** A gRPC method the server serves. */
interface Method {
  readonly path: string;
  readonly streaming: boolean;
  readonly deserialize: (b: Buffer) => unknown;
  readonly serialize: (v: unknown) => Buffer;
  readonly handler: (...args: never[]) => void;
}

/** Options of {@link H2GrpcServer.listen}. */
export interface H2GrpcServerOptions {
  host: string;
  port: number;
  /** The services and their grpc-js-shaped handlers. */
  services: readonly { definition: ServiceDefinition; implementation: UntypedServiceImplementation }[];
  /** Serves unary `ModelInfer` without decoding through the service definition. */
  infer: { path: string; handler: DirectHandler } | undefined;
  /** The largest message taken, in bytes. */
  maxMessage: number;
  /** The most connections open at once; past it, a new one gets GOAWAY (ENHANCE_YOUR_CALM) and is closed. 0: no limit. */
  maxConnections?: number;
  /** A connection with no call open this long (ms) gets GOAWAY and is closed. 0: never. */
  idleTimeoutMs?: number;
  /**
   * A unary call's request must arrive whole within this many ms of its
   * start, or it ends with DEADLINE_EXCEEDED (streams are exempt). 0: none.
   */
  requestTimeoutMs?: number;
}

/** A gRPC server on this module's HTTP/2. */
export class H2GrpcServer {
  readonly #net: NetServer;
  readonly #methods = new Map<string, Method>();
  readonly #infer: { path: string; handler: DirectHandler } | undefined;
  readonly #connections = new Set<H2Connection>();
  readonly #maxMessage: number;
  readonly #idleTimeoutMs: number;
  readonly #limit: ConnectionLimit;
  readonly #arrivals: Arrivals | undefined;
  #closing = false;
  #port = 0;

  private constructor(opts: H2GrpcServerOptions) {
    for (const { definition, implementation } of opts.services) {
      for (const [name, def] of Object.entries(definition)) {
        const handler = implementation[name];
        if (handler === undefined) continue;
        this.#methods.set(def.path, {
          path: def.path,
          streaming: def.requestStream || def.responseStream,
          deserialize: def.requestDeserialize as (b: Buffer) => unknown,
          serialize: def.responseSerialize as (v: unknown) => Buffer,
          handler: handler as (...args: never[]) => void,
        });
      }
    }
    this.#infer = opts.infer;
    this.#maxMessage = opts.maxMessage;
    this.#idleTimeoutMs = opts.idleTimeoutMs ?? 0;
    this.#net = createServer((socket) => this.#accept(socket));
    const max = opts.maxConnections ?? 0;
    this.#limit = ConnectionLimit.install(this.#net, max, http2Refusal(max, "--grpc-max-connections"));
    const rt = opts.requestTimeoutMs ?? 0;
    this.#arrivals = rt > 0 ? new Arrivals(rt) : undefined;
  }

  /**
   * Binds `host:port` and starts serving.
   *
   * @throws {Error} as `net.Server.listen` fails (`code` EADDRINUSE for a port in use).
   */
  static async listen(opts: H2GrpcServerOptions): Promise<H2GrpcServer> {
    const s = new H2GrpcServer(opts);
    await new Promise<void>((resolve, reject) => {
      s.#net.once("error", reject);
      s.#net.listen({ host: opts.host, port: opts.port }, () => {
        s.#net.off("error", reject);
        resolve();
      });
    });
    const a = s.#net.address();
    s.#port = typeof a === "object" && a !== null ? a.port : opts.port;
    return s;
  }

  /** The bound port. */
  get port(): number {
    return this.#port;
  }

  /** Connections open now and refused past the limit so far. */
  get connectionCounters(): Readonly<ConnectionLimitCounters> {
    return this.#limit.counters;
  }

  /** Unary calls ended because their request did not arrive in time, so far. */
  get requestsTimedOut(): number {
    return this.#arrivals?.expired ?? 0;
  }

  /** Unary calls whose request is still arriving, watched for the request deadline. */
  get callsWatched(): number {
    return this.#arrivals?.watched ?? 0;
  }

  #accept(socket: Socket): void {
    if (this.#closing) {
      socket.destroy();
      return;
    }
    const conn = new H2Connection(socket, {
      onStream: (stream, headers, endStream) => this.#stream(stream, headers, endStream),
      onClose: (c) => this.#connections.delete(c),
      idleTimeoutMs: this.#idleTimeoutMs,
    });
    this.#connections.add(conn);
  }

  #stream(stream: H2Stream, headers: HeaderMap, endStream: boolean): void {
    const path = headers.get(":path") ?? "";
    const ct = headers.get("content-type");
    if (headers.get(":method") !== "POST" || ct === undefined || !ct.startsWith("application/grpc")) {
      // Not a gRPC request: as grpc-js, HTTP 415.
      stream.sendHeaders(encodeHeaders([[":status", "415"]]), true);
      if (!endStream) stream.reset(H2_NO_ERROR);
      return;
    }
    const encoding = headers.get("grpc-encoding") ?? "identity";
    if (encoding !== "identity" && encoding !== "gzip" && encoding !== "deflate") {
      stream.sendHeaders(statusOnly({ code: UNIMPLEMENTED, details: `Received message compressed with unsupported encoding "${encoding}"` }), true);
      if (!endStream) stream.reset(H2_NO_ERROR);
      return;
    }
    const timeoutMs = parseGrpcTimeout(headers.get("grpc-timeout"));
    if (this.#infer !== undefined && path === this.#infer.path) {
      const call = new InferCall(stream, this.#infer.handler, this.#maxMessage, encoding, timeoutMs);
      stream.handler = call;
      if (!endStream) this.#arrivals?.add(call);
      return;
    }
    const method = this.#methods.get(path);
    if (method === undefined) {
      stream.sendHeaders(statusOnly({ code: UNIMPLEMENTED, details: `The server does not implement the method ${path}` }), true);
      if (!endStream) stream.reset(H2_NO_ERROR);
      return;
    }
    const metadata = new CallMetadata(headers);
    if (method.streaming) StreamCall.open(stream, method, metadata, this.#maxMessage, encoding, timeoutMs);
    else {
      const call = new UnaryCall(stream, method, metadata, this.#maxMessage, encoding, timeoutMs);
      stream.handler = call;
      if (!endStream) this.#arrivals?.add(call);
    }
  }

  /**
   * Stops taking connections and calls: open connections get GOAWAY (calls
   * in flight go on) and end once their calls are done.
   */
  shutdown(): void {
    this.#arrivals?.stop();
    this.#closing = true;
    this.#net.close();
    for (const c of this.#connections) c.shutdown();
  }

  /** Resolves once every connection has ended. */
  async drained(): Promise<void> {
    while (this.#connections.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  /** Ends every connection now (their calls are cancelled). */
  destroy(): void {
    this.#arrivals?.stop();
    this.#closing = true;
    this.#net.close();
    for (const c of this.#connections) c.destroy();
  }
}

/**
 * The request deadline (see request-deadline.ts) of this server's unary
 * calls: a call is watched from its headers until its request arrived or it
 * ended; a client that sends its message after its headers (perf_analyzer,
 * grpc-js) would otherwise keep every call of the last sweep period (30 s
 * by default) alive.
 */
class Arrivals extends RequestDeadlineWatch<OneMessageCall> {
  add(call: OneMessageCall): void {
    this.watchCall(call);
    call.arrivals = this;
  }

  protected expire(call: OneMessageCall, details: string): void {
    call.expire({ code: DEADLINE_EXCEEDED, details });
  }
}

/**
 * The messages of a request as they arrive: each `[flag, 4-byte length,
 * bytes]`, decompressed when flagged.
 */
class MessageReader {
  /** Bytes not yet a whole message, as they came (joined once a message is complete: no copy per chunk). */
  #parts: Buffer[] = [];
  #size = 0;
  /** Bytes needed before anything can be read: the 5-byte prefix, then the whole message. */
  #need = 5;
  /** Set when a message breaks the rules: the call answers with it. */
  error: GrpcStatus | undefined;

  constructor(
    readonly maxMessage: number,
    readonly encoding: string,
  ) {}

  /** Adds a chunk; appends the messages it completes to `out`. */
  push(chunk: Buffer, out: Buffer[]): void {
    this.#parts.push(chunk);
    this.#size += chunk.length;
    if (this.#size < this.#need) return;
    let buf = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#size);
    this.#parts = [];
    this.#size = 0;
    this.#need = 5;
    while (buf.length >= 5) {
      const len = buf.readUInt32BE(1);
      if (len > this.maxMessage) {
        this.error = { code: RESOURCE_EXHAUSTED, details: `Received message larger than max (${len} vs. ${this.maxMessage})` };
        return;
      }
      if (buf.length < 5 + len) {
        this.#need = 5 + len;
        break;
      }
      const compressed = buf[0] === 1;
      let msg = buf.subarray(5, 5 + len);
      buf = buf.subarray(5 + len);
      // The flag under identity is read as is, as grpc-js reads it.
      if (compressed && this.encoding !== "identity") {
        try {
          msg = this.encoding === "gzip" ? gunzipSync(msg, { maxOutputLength: this.maxMessage }) : inflateSync(msg, { maxOutputLength: this.maxMessage });
        } catch (e) {
          this.error = { code: INTERNAL, details: `Error decompressing message: ${errorMessage(e)}` };
          return;
        }
      }
      out.push(msg);
    }
    if (buf.length > 0) {
      this.#parts.push(buf);
      this.#size = buf.length;
    }
  }

  /** Bytes of an incomplete message left at the end. */
  get leftover(): number {
    return this.#size;
  }
}

/** What the unary calls share: one request message, read whole before the handler runs. */
abstract class OneMessageCall implements H2StreamHandler {
  protected readonly reader: MessageReader;
  protected readonly messages: Buffer[] = [];
  #timer: NodeJS.Timeout | undefined;
  /** True once answered, failed or gone. */
  done = false;
  /** True once the request arrived whole (the client's END_STREAM). */
  arrived = false;
  /** The request deadline's watch, while this call's request is arriving. */
  arrivals: Arrivals | undefined;

  constructor(
    readonly stream: H2Stream,
    maxMessage: number,
    encoding: string,
    timeoutMs: number | undefined,
  ) {
    this.reader = new MessageReader(maxMessage, encoding);
    if (timeoutMs !== undefined) {
      this.#timer = setTimeout(() => this.expire(), timeoutMs);
    }
  }

  data(chunk: Buffer): void {
    if (this.done || this.reader.error !== undefined) return;
    this.reader.push(chunk, this.messages);
  }

  end(): void {
    this.arrived = true;
    this.#unwatch();
    if (this.done) return;
    const err = this.reader.error;
    if (err !== undefined) {
      this.status(err);
      return;
    }
    // As grpc-js's unary handler: none (or a partial one) and more than one are UNIMPLEMENTED.
    if (this.messages.length === 0 || this.reader.leftover > 0) {
      this.status({ code: UNIMPLEMENTED, details: `Received no request message for server streaming method ${this.path}` });
      return;
    }
    if (this.messages.length > 1) {
      this.status({ code: UNIMPLEMENTED, details: `Received a second request message for server streaming method ${this.path}` });
      return;
    }
    this.run(this.messages[0]!);
  }

  reset(): void {
    if (this.done) return;
    this.finish();
    this.abandoned();
  }

  /** A deadline passed (the client's, by default): the call is cancelled and answers with `s`. */
  expire(s: GrpcStatus = { code: DEADLINE_EXCEEDED, details: "Deadline exceeded" }): void {
    this.#timer = undefined;
    if (this.done) return;
    this.status(s);
    this.abandoned();
  }

  /** Answers with a status alone. */
  status(s: GrpcStatus): void {
    if (this.done) return;
    this.finish();
    this.stream.sendHeaders(statusOnly(s), true);
    if (!this.stream.remoteClosed) this.stream.reset(H2_NO_ERROR);
  }

  /** Answers with one framed message and OK. */
  okFrame(message: Buffer): void {
    if (this.done) return;
    this.finish();
    this.stream.sendUnary(RESPONSE_HEADERS, message, OK_TRAILERS);
  }

  protected finish(): void {
    this.done = true;
    this.#unwatch();
    if (this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #unwatch(): void {
    if (this.arrivals !== undefined) {
      this.arrivals.forget(this);
      this.arrivals = undefined;
    }
  }

  protected abstract readonly path: string;
  /** Runs the call on its one message. */
  protected abstract run(msg: Buffer): void;
  /** The call went away before its answer (reset, or its deadline): cancel what runs. */
  protected abstract abandoned(): void;
}

/** A unary `ModelInfer` on the direct path. */
class InferCall extends OneMessageCall implements UnaryOut {
  #onGone: (() => void) | undefined;

  constructor(
    stream: H2Stream,
    readonly handler: DirectHandler,
    maxMessage: number,
    encoding: string,
    timeoutMs: number | undefined,
  ) {
    super(stream, maxMessage, encoding, timeoutMs);
  }

  protected get path(): string {
    return "/inference.GRPCInferenceService/ModelInfer";
  }

  protected run(msg: Buffer): void {
    this.handler.serve(msg, new DirectReply(this, this.handler.context));
  }

  protected abandoned(): void {
    const fn = this.#onGone;
    this.#onGone = undefined;
    fn?.();
  }

  get gone(): boolean {
    return this.done;
  }

  ok(message: Buffer): void {
    this.okFrame(message);
  }

  onGone(fn: () => void): void {
    if (this.done) fn();
    else this.#onGone = fn;
  }
}

/** A unary call through its grpc-js-shaped handler `(call, callback)`. */
class UnaryCall extends OneMessageCall {
  #cancelled = false;
  readonly #listeners: (() => void)[] = [];

  constructor(
    stream: H2Stream,
    readonly method: Method,
    readonly metadata: CallMetadata,
    maxMessage: number,
    encoding: string,
    timeoutMs: number | undefined,
  ) {
    super(stream, maxMessage, encoding, timeoutMs);
  }

  protected get path(): string {
    return this.method.path;
  }

  protected run(msg: Buffer): void {
    let request: unknown;
    try {
      request = this.method.deserialize(msg);
    } catch {
      this.status({ code: INTERNAL, details: "Error deserializing request" });
      return;
    }
    const call = {
      request,
      metadata: this.metadata,
      cancelled: false,
      once: (event: string, fn: () => void) => {
        if (event === "cancelled") this.#listeners.push(fn);
      },
    };
    const callback = (err: (Error & Partial<GrpcStatus>) | null, value?: unknown): void => {
      if (this.done) return;
      if (err) {
        this.status({ code: err.code ?? 2, details: err.details ?? err.message });
        return;
      }
      let body: Buffer;
      try {
        body = this.method.serialize(value);
      } catch (e) {
        this.status({ code: INTERNAL, details: `Error serializing response: ${errorMessage(e)}` });
        return;
      }
      this.okFrame(framed(body));
    };
    try {
      (this.method.handler as (c: unknown, cb: typeof callback) => void)(call, callback);
    } catch (e) {
      this.status({ code: 2, details: errorMessage(e) });
    }
  }

  protected abandoned(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    for (const fn of this.#listeners.splice(0)) fn();
  }
}

/** A message with its 5-byte gRPC prefix (uncompressed). */
function framed(body: Buffer): Buffer {
  const b = Buffer.allocUnsafe(5 + body.length);
  b[0] = 0;
  b.writeUInt32BE(body.length, 1);
  body.copy(b, 5);
  return b;
}

/**
 * A streaming call (ModelStreamInfer) as grpc-js's `ServerDuplexStream`
 * looks to its handler: `data`, `end`, `cancelled` and `error` events,
 * `write`, `end`, `metadata`, and an `error` emitted by the handler ends
 * the call with that status.
 */
class StreamCall extends EventEmitter {
  readonly #reader: MessageReader;
  #headersSent = false;
  #over = false;
  cancelled = false;
  #timer: NodeJS.Timeout | undefined;

  /** Starts a streaming call: it becomes the stream's handler, and the method's handler runs on it. */
  static open(stream: H2Stream, method: Method, metadata: CallMetadata, maxMessage: number, encoding: string, timeoutMs: number | undefined): StreamCall {
    const call = new StreamCall(stream, method, metadata, maxMessage, encoding, timeoutMs);
    // The handler attaches its listeners now; the request's first bytes come later.
    (method.handler as (c: StreamCall) => void)(call);
    return call;
  }

  private constructor(
    readonly stream: H2Stream,
    readonly method: Method,
    readonly metadata: CallMetadata,
    maxMessage: number,
    encoding: string,
    timeoutMs: number | undefined,
  ) {
    super();
    stream.handler = { data: (c) => this.#data(c), end: () => this.#remoteEnd(), reset: () => this.#reset() };
    this.#reader = new MessageReader(maxMessage, encoding);
    if (timeoutMs !== undefined) this.#timer = setTimeout(() => this.#fail({ code: DEADLINE_EXCEEDED, details: "Deadline exceeded" }, true), timeoutMs);
  }

  #data(chunk: Buffer): void {
    if (this.#over) return;
    const messages: Buffer[] = [];
    this.#reader.push(chunk, messages);
    for (const m of messages) {
      let req: unknown;
      try {
        req = this.method.deserialize(m);
      } catch {
        this.#fail({ code: INTERNAL, details: "Error deserializing request" }, true);
        return;
      }
      this.emit("data", req);
      if (this.#over) return;
    }
    if (this.#reader.error !== undefined) this.#fail(this.#reader.error, true);
  }

  /** The client half-closed. */
  #remoteEnd(): void {
    if (!this.#over) this.emit("end");
  }

  /** The client reset the stream (or the connection went). */
  #reset(): void {
    if (this.#over) return;
    this.#over = true;
    this.cancelled = true;
    this.#clearTimer();
    this.emit("cancelled");
  }

  /** The handler ends the call: OK trailers after what was written. */
  end(): void {
    if (this.#over) return;
    this.#over = true;
    this.#clearTimer();
    if (this.#headersSent) this.stream.sendData(EMPTY, OK_TRAILERS);
    else this.stream.sendHeaders(Buffer.concat([RESPONSE_HEADERS, OK_TRAILERS]), true);
  }

  /** Sends one response message. */
  write(body: Buffer): boolean {
    if (this.#over || this.stream.localClosed) return false;
    if (!this.#headersSent) {
      this.#headersSent = true;
      this.stream.sendHeaders(RESPONSE_HEADERS, false);
    }
    this.stream.sendData(framed(body));
    return true;
  }

  /** Ends the call with status `s`; `cancel`: the handler is told (as a cancellation). */
  #fail(s: GrpcStatus, cancel: boolean): void {
    if (this.#over) return;
    this.#over = true;
    this.#clearTimer();
    if (this.#headersSent) this.stream.sendData(EMPTY, statusTrailers(s));
    else this.stream.sendHeaders(statusOnly(s), true);
    if (!this.stream.remoteClosed) this.stream.reset(H2_CANCEL);
    if (cancel) {
      this.cancelled = true;
      this.emit("cancelled");
    }
  }

  #clearTimer(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  /** The handler emitting `error` ends the call with that status (grpc-js's way). */
  override emit(event: string | symbol, ...args: unknown[]): boolean {
    if (event === "error") {
      const e = args[0] as Partial<GrpcStatus> & { message?: string };
      this.#fail({ code: e.code ?? 2, details: e.details ?? e.message ?? "" }, false);
      return this.listenerCount("error") > 0 ? super.emit(event, ...args) : false;
    }
    return super.emit(event, ...args);
  }
}

const EMPTY = Buffer.alloc(0);

/**
 * The gRPC transport: KServe v2 / Triton `inference.GRPCInferenceService`
 * (Triton 2.51's `grpc_service.proto`) over the inference endpoint, with
 * `@grpc/grpc-js`.
 *
 * Every RPC answers as Triton 2.51's gRPC frontend does (status codes and
 * messages; see `status.ts` for the code table), and, as in Triton, gRPC's
 * standard health check (`grpc.health.v1.Health/Check`) answers SERVING
 * when the server is ready; apart from:
 * - `TraceSetting` and `LogSettings` answer UNAVAILABLE with the message a
 *   Triton built without tracing / dynamic logging sends ("the server does
 *   not support trace", "the server does not support dynamic logging"):
 *   this server has neither, and does not list the `trace` and `logging`
 *   extensions.
 * - `RepositoryModelLoad` takes the `config` parameter (`string_param`,
 *   JSON) and `file:<path>` parameters (`bytes_param`: the model's files,
 *   loaded from a temporary directory as over HTTP; see the endpoint's
 *   `loadModel`), checked as Triton checks them.
 * - Classification outputs are refused (UNIMPLEMENTED), as over HTTP.
 *
 * Triton's own ways kept here: `ModelReady` / `ServerReady` answer an
 * unknown or unready model (version) with `ready` false, not an error;
 * `ModelStatistics` words an unknown model as INVALID_ARGUMENT "requested
 * model 'x' is not available"; request parameters `sequence_id`,
 * `sequence_start`, `sequence_end`, `priority`, `timeout` and
 * `triton_enable_empty_final_response` are checked and taken by the
 * frontend (not passed to the model), other `triton_` keys are refused;
 * extra `raw_input_contents` are ignored; an output in shared memory has an
 * empty `raw_output_contents` entry and no parameters.
 *
 * `ModelInfer` and `ModelStreamInfer` decode and encode their messages by
 * hand (`wire.ts`); see `infer.ts` for the request checks and `stream.ts`
 * for the stream's rules. A cancelled call (or a stream the client
 * cancels) cancels its pending requests (`Cancellation`), and nothing is
 * written after that.
 *
 * @module
 */
import {
  Server,
  ServerCredentials,
  status as Status,
  type Metadata,
  type sendUnaryData,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type UntypedServiceImplementation,
} from "@grpc/grpc-js";

import { constants as http2Constants, type Http2Server, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";

import { Cancellation } from "../../runtime/cancel.js";
import { ServingError, errorMessage } from "../../runtime/errors.js";
import { ModelError } from "../../runtime/model-error.js";
import type { InferCallbacks, InferOutput, ModelVersion } from "../../runtime/model-version.js";
import { ConnectionLimit, http2Refusal, type ConnectionLimitCounters } from "../connection-limit.js";
import { decoupledRefusal, type InferenceEndpoint } from "../endpoint.js";
import { requestToInput, responseOutputs, type GrpcInferRequest } from "./infer.js";
import { installDirectPath, MODEL_INFER_PATH, type DirectContext, type DirectHandler } from "./direct.js";
import { H2GrpcServer } from "./h2-server.js";
import { RequestDeadlineWatch } from "./request-deadline.js";
import { HEALTH_NOT_SERVING, HEALTH_SERVICE, HEALTH_SERVING, grpcInferenceService } from "./proto.js";
import { grpcStatusOf, type GrpcStatus } from "./status.js";
import { StreamSession } from "./stream.js";
import { decodeModelInferRequest, encodeModelInferResponse, type WireInferRequest } from "./wire.js";

/** Options of {@link GrpcTransport.start}. */
export interface GrpcTransportOptions {
  /** Interface to bind. */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
  /**
   * Serve plain unary `ModelInfer` calls on a direct path: decoded by hand
   * and answered without the generic call machinery (same answers, less CPU
   * per call; see `direct.ts`). Default true.
   */
  directInfer?: boolean;
  /**
   * Which HTTP/2 server carries the calls: `tensorbridge` (default), this
   * package's own (`h2-server.ts`: the same answers at about half the CPU
   * per call), or `grpc-js` (grpc-js's server on node:http2).
   */
  server?: "tensorbridge" | "grpc-js";
  /**
   * How long {@link GrpcTransport.close} waits for in-flight calls before
   * cancelling them, in milliseconds. Default 30 000 (Triton's
   * `--exit-timeout-secs` default).
   */
  shutdownTimeoutMs?: number;
  /**
   * The most connections open at once; past it a new connection gets an
   * HTTP/2 `GOAWAY` (`ENHANCE_YOUR_CALM`) and is closed. 0 (default): no limit.
   */
  maxConnections?: number;
  /**
   * A connection with no call open for this many ms is closed with a
   * `GOAWAY` (grpc-js's `grpc.max_connection_idle_ms`), one that never
   * starts a call included. 0 (default): never.
   */
  idleTimeoutMs?: number;
  /**
   * A unary call's request message must arrive whole (the client's end of
   * the stream) within this many ms of the call's start, or the call ends
   * with `DEADLINE_EXCEEDED` and its stream is reset. `ModelStreamInfer`
   * streams are exempt: their messages come when the client likes. 0
   * (default): none.
   */
  requestTimeoutMs?: number;
}

/** The path of the one streaming RPC, exempt from the request deadline. */
const STREAM_INFER_PATH = "/inference.GRPCInferenceService/ModelStreamInfer";

/** The HTTP/2 servers grpc-js listens with (its TypeScript-private map; see `direct.ts`), or undefined when not as expected. */
function http2ServersOf(server: Server): Http2Server[] | undefined {
  const servers = (server as unknown as { http2Servers?: unknown }).http2Servers;
  if (!(servers instanceof Map)) return undefined;
  const out = [...servers.keys()] as Http2Server[];
  return out.every((s) => typeof s?.listeners === "function") ? out : undefined;
}

/**
 * The request deadline (see request-deadline.ts) of grpc-js's server: it
 * watches the streams of unary calls whose request did not come with their
 * headers, and ends one past the deadline itself (grpc-js has no hook).
 *
 * A call is forgotten as soon as its stream closes, not at the next sweep:
 * the sweep runs every `ms / 4` up to 30 s (30 s at the default 300 s
 * deadline), and a set that kept every stream until then held each call's
 * stream, its states, listeners and request bytes (about 2.6 KB a call) for
 * up to 30 s. At perf_analyzer's pace (5 000 calls/s at concurrency 1) that
 * is 150 000 streams and hundreds of MB of heap, all promoted to the old
 * generation before they die. Measured with perf_analyzer -i grpc add_sub
 * at concurrency 1 (default 300 s deadline): the heap after a mark-compact
 * grew to 122 MB after 130 000 calls, and stays at 17 MB since; server CPU
 * per call 154 against 171 µs (median of 5 alternating runs, busy machine).
 */
class RequestDeadline extends RequestDeadlineWatch<ServerHttp2Stream> {
  /** One listener for every stream's `close` (the stream is `this`): no closure per call. */
  readonly #forget: (this: ServerHttp2Stream) => void;

  constructor(ms: number) {
    super(ms);
    const forget = this.forget.bind(this);
    this.#forget = function (this: ServerHttp2Stream) {
      forget(this);
    };
  }

  /** Watches `srv`'s new streams; call after every other `stream` listener is in place. */
  watch(srv: Http2Server): void {
    srv.prependListener("stream", (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, flags: number) => {
      // A request whose headers end the stream has arrived whole (the HEADERS
      // frame's END_STREAM flag: what `stream.state.remoteClose` would say,
      // without a call into the binding per stream).
      if ((flags & http2Constants.NGHTTP2_FLAG_END_STREAM) !== 0 || headers[":path"] === STREAM_INFER_PATH) return;
      this.watchCall(stream);
      stream.on("close", this.#forget);
    });
  }

  protected override settled(stream: ServerHttp2Stream): boolean {
    return stream.destroyed || stream.headersSent || stream.state.remoteClose === 1;
  }

  protected expire(stream: ServerHttp2Stream, details: string): void {
    try {
      stream.respond(
        {
          ":status": 200,
          "content-type": "application/grpc+proto",
          "grpc-status": String(Status.DEADLINE_EXCEEDED),
          // grpc-message is percent-encoded: these words need none.
          "grpc-message": details,
        },
        { endStream: true },
      );
    } finally {
      // The answer is out: the client is told to stop sending (RST_STREAM NO_ERROR).
      stream.close(http2Constants.NGHTTP2_NO_ERROR);
    }
  }
}

/** Triton's gRPC message size limit (`MAX_GRPC_MESSAGE_SIZE`: INT32_MAX), both ways. */
const MAX_MESSAGE = 2 ** 31 - 1;

const READY = Object.freeze({ ready: true });

/** grpc-js's switch for error details in its own statuses (its `GRPC_NODE_DEBUG_SEND_ERROR_DETAILS`). */
const DEBUG_ERROR_DETAILS = process.env["GRPC_NODE_DEBUG_SEND_ERROR_DETAILS"] === "true";

/** A gRPC error for a unary callback. */
function statusError(s: GrpcStatus): Error & GrpcStatus {
  return Object.assign(new Error(s.details), s);
}

type Unary<Req, Res> = (call: ServerUnaryCall<Req, Res>, callback: sendUnaryData<Res>) => void;

/** A regular RPC: `fn` answers (or throws, or rejects) and the answer or the error goes back. */
function unary<Req, Res>(fn: (req: Req, metadata: Metadata) => Res | Promise<Res>, onError: (e: unknown) => void): Unary<Req, Res> {
  return (call, callback) => {
    let res: Res | Promise<Res>;
    try {
      res = fn(call.request, call.metadata);
    } catch (e) {
      onError(e);
      callback(statusError(grpcStatusOf(e)));
      return;
    }
    if (res instanceof Promise) {
      res.then(
        (v) => callback(null, v),
        (e: unknown) => {
          onError(e);
          callback(statusError(grpcStatusOf(e)));
        },
      );
    } else {
      callback(null, res);
    }
  };
}

function unimplemented(message: string): never {
  throw new ServingError("ERR_UNSUPPORTED", message);
}

function invalid(message: string): never {
  throw new ServingError("ERR_INVALID_REQUEST", message);
}

/** A `ModelRepositoryParameter` / `InferParameter` as proto-loader gives it (`oneofs: true`). */
interface OneofParam {
  parameter_choice?: string;
  bool_param?: boolean;
  int64_param?: number;
  string_param?: string;
  bytes_param?: Buffer;
}

/**
 * Answers one unary `ModelInfer` when the model is done with it; it is also
 * the request's {@link Cancellation} (one object per request, not two).
 */
class UnaryReply extends Cancellation implements InferCallbacks {
  /** True once answered (or given up): nothing more is sent. */
  settled = false;

  constructor(
    readonly transport: GrpcTransport,
    readonly call: ServerUnaryCall<WireInferRequest, Buffer>,
    readonly callback: sendUnaryData<Buffer>,
    readonly g: GrpcInferRequest,
  ) {
    super();
  }

  resolve(out: InferOutput): void {
    if (this.settled) return;
    let msg: Buffer;
    try {
      const outputs = responseOutputs(out, this.g.shmOutputs, this.transport.endpoint.shm);
      msg = encodeModelInferResponse({ model_name: out.modelName, model_version: String(out.modelVersion), id: out.id, outputs });
    } catch (e) {
      this.reject(e);
      return;
    }
    this.settled = true;
    if (!this.call.cancelled) this.callback(null, msg);
  }

  reject(e: unknown): void {
    if (this.settled) return;
    this.settled = true;
    if (!this.call.cancelled) this.transport.fail(this.call.request, e, this.callback);
  }

  /** The client cancelled the call (or its deadline passed). */
  onCallCancelled = (): void => {
    this.settled = true;
    this.cancel();
  };
}

/** The gRPC service over one endpoint. */
export class GrpcTransport {
  #server: Server | H2GrpcServer | undefined;
  #port = 0;
  readonly #sessions = new Set<StreamSession>();
  readonly #shutdownTimeoutMs: number;
  #closing: Promise<void> | undefined;
  #direct = false;
  #limits: ConnectionLimit[] = [];
  #deadline: RequestDeadline | undefined;

  private constructor(
    readonly endpoint: InferenceEndpoint,
    shutdownTimeoutMs: number,
  ) {
    this.#shutdownTimeoutMs = shutdownTimeoutMs;
  }

  /**
   * Binds `host:port` and starts serving.
   *
   * @throws {Error} when the address cannot be bound (the message names it;
   * `code` is `EADDRINUSE` for a port in use).
   */
  static async start(endpoint: InferenceEndpoint, opts: GrpcTransportOptions): Promise<GrpcTransport> {
    const host = opts.host.includes(":") && !opts.host.startsWith("[") ? `[${opts.host}]` : opts.host;
    const address = `${host}:${opts.port}`;
    const t = new GrpcTransport(endpoint, opts.shutdownTimeoutMs ?? 30_000);
    const health = {
      // Triton's health check: SERVING when the server is ready (its TRITONSERVER_ServerIsReady), else NOT_SERVING.
      Check: (_call: ServerUnaryCall<object, number>, callback: sendUnaryData<number>) =>
        callback(null, endpoint.readiness().ready ? HEALTH_SERVING : HEALTH_NOT_SERVING),
    };
    const direct = opts.directInfer ?? true;
    try {
      if ((opts.server ?? "tensorbridge") === "tensorbridge") {
        const h2 = await H2GrpcServer.listen({
          host: opts.host,
          port: opts.port,
          services: [
            { definition: grpcInferenceService(), implementation: t.#handlers() },
            { definition: HEALTH_SERVICE, implementation: health },
          ],
          infer: direct ? { path: MODEL_INFER_PATH, handler: t.#directHandler() } : undefined,
          maxMessage: MAX_MESSAGE,
          maxConnections: opts.maxConnections,
          idleTimeoutMs: opts.idleTimeoutMs,
          requestTimeoutMs: opts.requestTimeoutMs,
        });
        t.#server = h2;
        t.#port = h2.port;
        t.#direct = direct;
      } else {
        await t.#startGrpcJs(address, opts, direct, health);
      }
    } catch (e) {
      const m = errorMessage(e);
      const inUse = /EADDRINUSE|address already in use/i.test(m);
      const err = new Error(
        inUse
          ? `the gRPC service cannot listen on ${address}: the address is already in use (choose another --grpc-port, or --allow-grpc=false)`
          : `the gRPC service cannot listen on ${address}: ${m}`,
        { cause: e },
      );
      if (inUse) (err as Error & { code?: string }).code = "EADDRINUSE";
      throw err;
    }
    return t;
  }

  async #startGrpcJs(address: string, opts: GrpcTransportOptions, direct: boolean, health: UntypedServiceImplementation): Promise<void> {
    const server = new Server({
      "grpc.max_receive_message_length": MAX_MESSAGE,
      "grpc.max_send_message_length": MAX_MESSAGE,
      // No channelz service is registered: its per-call bookkeeping would cost every call.
      "grpc.enable_channelz": 0,
      ...((opts.idleTimeoutMs ?? 0) > 0 ? { "grpc.max_connection_idle_ms": opts.idleTimeoutMs } : {}),
    });
    try {
      this.#port = await new Promise<number>((resolve, reject) =>
        server.bindAsync(address, ServerCredentials.createInsecure(), (err, p) => (err ? reject(err) : resolve(p))),
      );
    } catch (e) {
      server.forceShutdown();
      throw e;
    }
    this.#server = server;
    server.addService(grpcInferenceService(), this.#handlers());
    server.addService(HEALTH_SERVICE, health);
    if (direct) {
      this.#direct = installDirectPath(server, this.#directHandler(), MAX_MESSAGE);
      if (!this.#direct) this.endpoint.log.debug?.("gRPC: grpc-js's internals are not as expected; every call goes through grpc-js");
    }
    // After the direct path (which takes over the `stream` listener): the
    // connection limit and the request deadline hook the same HTTP/2 servers.
    const h2 = http2ServersOf(server);
    const maxConnections = opts.maxConnections ?? 0;
    const requestTimeoutMs = opts.requestTimeoutMs ?? 0;
    if (h2 === undefined) {
      if (maxConnections > 0 || requestTimeoutMs > 0) this.endpoint.log.warn("gRPC: grpc-js's internals are not as expected; no gRPC connection limit or request deadline");
    } else {
      const refusal = http2Refusal(maxConnections, "--grpc-max-connections");
      this.#limits = h2.map((srv) => ConnectionLimit.install(srv, maxConnections, refusal));
      if (requestTimeoutMs > 0) {
        const deadline = (this.#deadline = new RequestDeadline(requestTimeoutMs));
        for (const srv of h2) deadline.watch(srv);
      }
    }
  }

  /** The bound port. */
  get port(): number {
    return this.#port;
  }

  /**
   * Connections open now and refused past the connection limit so far,
   * over every address bound (for diagnostics and tests).
   */
  get connectionCounters(): Readonly<ConnectionLimitCounters> {
    if (this.#server instanceof H2GrpcServer) return this.#server.connectionCounters;
    const c = { open: 0, refused: 0 };
    for (const l of this.#limits) {
      c.open += l.counters.open;
      c.refused += l.counters.refused;
    }
    return c;
  }

  /** Unary calls ended because their request did not arrive in time, so far. */
  get requestsTimedOut(): number {
    if (this.#server instanceof H2GrpcServer) return this.#server.requestsTimedOut;
    return this.#deadline?.expired ?? 0;
  }

  /**
   * Unary calls watched for the request deadline now: on this package's
   * HTTP/2 server those whose request is still arriving, on grpc-js's those
   * whose stream is still open. For diagnostics and tests.
   */
  get callsWatched(): number {
    if (this.#server instanceof H2GrpcServer) return this.#server.callsWatched;
    return this.#deadline?.watched ?? 0;
  }

  /** ModelStreamInfer calls open now (for diagnostics and tests). */
  get openStreams(): number {
    return this.#sessions.size;
  }

  /** True when plain unary ModelInfer calls take the direct path (see `direct.ts`). */
  get directPath(): boolean {
    return this.#direct;
  }

  #directHandler(): DirectHandler {
    const endpoint = this.endpoint;
    const context: DirectContext = {
      shm: endpoint.shm,
      statusOf: (req, e) => {
        const s = grpcStatusOf(e);
        this.#log(req, s);
        return s;
      },
    };
    return {
      closing: () => this.#closing !== undefined,
      context,
      serve: (body, reply) => {
        let req: WireInferRequest;
        try {
          req = decodeModelInferRequest(body);
        } catch (e) {
          // as grpc-js answers a request its deserializer refuses
          reply.fail({ code: Status.INTERNAL, details: DEBUG_ERROR_DETAILS ? `Error deserializing request: ${errorMessage(e)}` : "Error deserializing request" });
          return;
        }
        reply.request = req;
        let mv: ModelVersion;
        let g: GrpcInferRequest;
        try {
          ({ mv, g } = this.#prepare(req));
        } catch (e) {
          reply.fail(context.statusOf(req, e));
          return;
        }
        reply.shmOutputs = g.shmOutputs;
        g.input.cancellation = reply;
        endpoint.infer(mv, g.input, reply, "gRPC");
        // A model that answers within infer() (a synchronous execute) needs no listener.
        reply.watch();
      },
    };
  }

  /**
   * The model version a request is for and the request as the runtime
   * takes it. Triton refuses a decoupled model before it looks at the
   * request.
   *
   * @throws {ServingError} / {@link ModelError}: what the call answers with.
   */
  #prepare(req: WireInferRequest): { mv: ModelVersion; g: GrpcInferRequest } {
    const mv = this.endpoint.model(req.model_name, req.model_version);
    if (mv.decoupled) throw new ModelError(decoupledRefusal("gRPC"), "UNSUPPORTED");
    return { mv, g: requestToInput(req, mv, this.endpoint.shm) };
  }

  /** Sends the status of `e` for a unary call, logging server-side failures. */
  fail(req: { model_name?: string; id?: string } | undefined, e: unknown, callback: sendUnaryData<never>): void {
    const s = grpcStatusOf(e);
    this.#log(req, s);
    callback(statusError(s));
  }

  #log(req: { model_name?: string; id?: string } | undefined, s: GrpcStatus): void {
    const what = req?.model_name ? `'${req.model_name}'${req.id ? ` [request id: ${req.id}]` : ""}: ` : "";
    const m = `gRPC ${what}${s.details}`;
    if (s.code === Status.INTERNAL || s.code === Status.UNKNOWN) this.endpoint.log.error(m);
    else this.endpoint.log.debug?.(m);
  }

  #modelInfer(call: ServerUnaryCall<WireInferRequest, Buffer>, callback: sendUnaryData<Buffer>): void {
    const req = call.request;
    const endpoint = this.endpoint;
    let mv: ModelVersion;
    let g: GrpcInferRequest;
    try {
      ({ mv, g } = this.#prepare(req));
    } catch (e) {
      this.fail(req, e, callback);
      return;
    }
    const reply = new UnaryReply(this, call, callback, g);
    g.input.cancellation = reply;
    endpoint.infer(mv, g.input, reply, "gRPC");
    // A model that answers within infer() (a synchronous execute) needs no listener.
    if (!reply.settled) call.once("cancelled", reply.onCallCancelled);
  }

  #handlers(): UntypedServiceImplementation {
    const ep = this.endpoint;
    const onError = (e: unknown) => this.#log(undefined, grpcStatusOf(e));
    type Named = { name: string; version: string };
    return {
      ServerLive: unary(() => ({ live: true }), onError),
      // false is proto3's default, which Triton's encoder leaves out: so do these answers.
      ServerReady: unary(() => (ep.readiness().ready ? READY : {}), onError),
      // The endpoint answers as Triton does: an unknown model is not ready
      // (not an error), and its statistics are INVALID_ARG in Triton's words.
      ModelReady: unary((r: Named) => (ep.modelReady(r.name, r.version) ? READY : {}), onError),
      ServerMetadata: unary(() => ep.serverMetadata(), onError),
      ModelMetadata: unary((r: Named) => ep.modelMetadata(r.name, r.version), onError),
      ModelConfig: unary((r: Named) => ({ config: ep.modelConfig(r.name, r.version) }), onError),
      ModelStatistics: unary((r: Named) => ({ model_stats: ep.modelStatistics(r.name || undefined, r.version || undefined) }), onError),
      RepositoryIndex: unary(async (r: { repository_name: string; ready: boolean }) => {
        if (r.repository_name !== "") unimplemented("'repository_name' specification is not supported");
        const models = await ep.repositoryIndex(r.ready);
        return { models };
      }, onError),
      RepositoryModelLoad: unary(async (r: { repository_name: string; model_name: string; parameters: Record<string, OneofParam> }) => {
        if (r.repository_name !== "") unimplemented("'repository_name' specification is not supported");
        const params: Record<string, unknown> = {};
        for (const [key, p] of Object.entries(r.parameters)) {
          if (key === "config") {
            if (p.parameter_choice !== "string_param") invalid(`invalid value type for load parameter '${key}', expected string_param.`);
            params[key] = p.string_param;
          } else if (key.startsWith("file:")) {
            if (p.parameter_choice !== "bytes_param") invalid(`invalid value type for load parameter '${key}', expected bytes_param.`);
            params[key] = p.bytes_param;
          } else {
            invalid(`unrecognized load parameter '${key}'.`);
          }
        }
        await ep.loadModel(r.model_name, params);
        return {};
      }, onError),
      RepositoryModelUnload: unary(async (r: { repository_name: string; model_name: string; parameters: Record<string, OneofParam> }) => {
        if (r.repository_name !== "") unimplemented("'repository_name' specification is not supported");
        const dependents = r.parameters["unload_dependents"];
        if (dependents !== undefined && dependents.parameter_choice !== "bool_param") {
          invalid("invalid value type for 'unload_dependents' parameter, expected bool_param.");
        }
        await ep.unloadModel(r.model_name);
        return {};
      }, onError),
      SystemSharedMemoryStatus: unary((r: { name: string }) => ({ regions: byName(ep.systemShm.status(r.name || undefined)) }), onError),
      SystemSharedMemoryRegister: unary((r: { name: string; key: string; offset: number; byte_size: number }) => {
        ep.systemShm.register(r.name, { key: r.key, offset: r.offset, byte_size: r.byte_size });
        return {};
      }, onError),
      SystemSharedMemoryUnregister: unary((r: { name: string }) => {
        ep.systemShm.unregister(r.name || undefined);
        return {};
      }, onError),
      CudaSharedMemoryStatus: unary((r: { name: string }) => ({ regions: byName(ep.cudaShm.status(r.name || undefined)) }), onError),
      CudaSharedMemoryRegister: unary((r: { name: string; raw_handle: Buffer; device_id: number; byte_size: number }) => {
        ep.cudaShm.register(r.name, { raw_handle: { b64: r.raw_handle.toString("base64") }, device_id: r.device_id, byte_size: r.byte_size });
        return {};
      }, onError),
      CudaSharedMemoryUnregister: unary((r: { name: string }) => {
        ep.cudaShm.unregister(r.name || undefined);
        return {};
      }, onError),
      TraceSetting: unary(() => {
        throw new ServingError("ERR_UNSUPPORTED", "the server does not support trace", { tritonCode: "UNAVAILABLE" });
      }, onError),
      LogSettings: unary(() => {
        throw new ServingError("ERR_UNSUPPORTED", "the server does not support dynamic logging", { tritonCode: "UNAVAILABLE" });
      }, onError),
      ModelInfer: (call: ServerUnaryCall<WireInferRequest, Buffer>, callback: sendUnaryData<Buffer>) => this.#modelInfer(call, callback),
      ModelStreamInfer: (call: ServerDuplexStream<WireInferRequest, Buffer>) => {
        const session = new StreamSession(call, {
          endpoint: ep,
          shm: ep.shm,
          log: ep.log,
          closing: () => this.#closing !== undefined,
          done: (s) => this.#sessions.delete(s),
        });
        if (!session.over) this.#sessions.add(session);
        if (this.#closing !== undefined) session.shutdown();
      },
    };
  }

  /**
   * Stops serving: no new calls; streams end once their requests are
   * answered (requests arriving meanwhile are refused); unary calls in
   * flight finish. After the shutdown timeout, whatever is left is
   * cancelled. Idempotent.
   */
  close(): Promise<void> {
    this.#closing ??= new Promise<void>((resolve) => {
      this.#deadline?.stop();
      for (const s of this.#sessions) s.shutdown();
      const server = this.#server!;
      const timer = setTimeout(() => {
        for (const s of this.#sessions) s.cancel();
        if (server instanceof H2GrpcServer) server.destroy();
        else server.forceShutdown();
        resolve();
      }, this.#shutdownTimeoutMs);
      timer.unref();
      const done = (): void => {
        clearTimeout(timer);
        resolve();
      };
      if (server instanceof H2GrpcServer) {
        server.shutdown();
        void server.drained().then(done);
      } else {
        server.tryShutdown(done);
      }
    });
    return this.#closing;
  }
}

/** Shared-memory status entries as the proto's `map<string, RegionStatus>`. */
function byName<T extends { name: string }>(regions: T[]): Record<string, T> {
  const out: Record<string, T> = {};
  for (const r of regions) out[r.name] = r;
  return out;
}

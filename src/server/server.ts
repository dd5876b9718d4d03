/**
 * The inference server: one {@link InferenceEndpoint} over one model
 * repository, served over KServe v2 / Triton HTTP (a fastify app with a
 * direct path in front of it) and gRPC, with listen and graceful close.
 *
 * @module
 */
import { readFileSync } from "node:fs";
import { createServer, maxHeaderSize } from "node:http";
import { resolve } from "node:path";

import Fastify, { type FastifyInstance, type FastifyServerFactory, type RawServerDefault } from "fastify";

import { ErrorCode, TensorBridgeError } from "../errors.js";
import { ServingError, errorMessage } from "../runtime/errors.js";
import { ModelRegistry } from "../runtime/model-registry.js";
import type { RuntimeLogger } from "../runtime/model-version.js";
import { ServerMetrics } from "./metrics.js";
import { registerRoutes } from "./routes.js";
import { ConnectionLimit, httpRefusal, type ConnectionLimitCounters } from "./connection-limit.js";
import { CudaSharedMemory } from "./cuda-shm.js";
import { InferenceEndpoint } from "./endpoint.js";
import { GrpcTransport } from "./grpc/transport.js";
import { directInfer, type InferRoute } from "./http-infer.js";
import { HttpFront, type HttpFrontCounters } from "./http-front.js";
import { httpError } from "./http-status.js";
import { nodeInferHandler } from "./node-http.js";
import { SystemSharedMemory } from "./shm.js";

/** Default request body limit: 64 MiB. */
export const DEFAULT_BODY_LIMIT = 64 * 1024 * 1024;
/** Default HTTP header deadline, in ms: node:http's `headersTimeout` default. */
export const DEFAULT_HEADERS_TIMEOUT_MS = 60_000;
/** Default HTTP request (body) deadline, in ms: node:http's `requestTimeout` default. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 300_000;
/** Default limit on open HTTP connections, and on open gRPC connections. */
export const DEFAULT_MAX_CONNECTIONS = 4096;
/** Default time {@link InferenceServer.close} waits for requests in flight, in ms: Triton's `--exit-timeout-secs` default. */
export const DEFAULT_EXIT_TIMEOUT_MS = 30_000;
/** Default gRPC connection idle timeout (no call open), in ms. */
export const DEFAULT_GRPC_IDLE_TIMEOUT_MS = 300_000;

/** Options of {@link InferenceServer.start}. */
export interface ServerOptions {
  /** The model repository directory. */
  repository: string;
  /** Interface to bind; default `127.0.0.1` (use `0.0.0.0` to serve other machines). */
  host?: string;
  /** HTTP port; default 8000; 0 picks a free one. */
  port?: number;
  /** gRPC port (Triton's `--grpc-port`); default 8001; 0 picks a free one. Bound to the same `host`. */
  grpcPort?: number;
  /** Serve gRPC (Triton's `--allow-grpc`). Default true. */
  allowGrpc?: boolean;
  /** Log every request and model event (pino JSON on stderr), and models' `Logger.VERBOSE` lines. */
  logVerbose?: boolean;
  /** Where model load/unload messages go (default: stderr lines, or nothing when `quiet`). */
  logger?: RuntimeLogger;
  /** Log nothing (tests). */
  quiet?: boolean;
  /** Largest request body in bytes; larger ones get 413. Default {@link DEFAULT_BODY_LIMIT}. */
  bodyLimit?: number;
  /** Allow the system shared-memory extension (Triton's `--allow-client-shm`). Default false. */
  allowClientShm?: boolean;
  /** Triton's `--strict-readiness`: ready only when every model is. Default true. */
  strictReadiness?: boolean;
  /**
   * Let model classes complete their configs (`static autoCompleteConfig`),
   * and load models without config.pbtxt; `false` is Triton's
   * `--disable-auto-complete-config`. Default true.
   */
  autoCompleteConfig?: boolean;
  /** Include Node's process metrics in `/metrics`. Default true. */
  defaultMetrics?: boolean;
  /** Do not load the repository's models at start (load them via the API). Default false. */
  noAutoLoad?: boolean;
  /**
   * Triton's `--model-control-mode`. `none`: every model loads at start and
   * the repository's load/unload API (HTTP, gRPC, and `loadModel` /
   * `unloadModel` from a model) is refused with Triton's UNAVAILABLE
   * "explicit model load / unload is not allowed if polling is enabled"
   * (`ERR_MODEL_CONTROL`). `explicit`: only {@link loadModels} load at start,
   * and the API loads and unloads. Unset (the default): every model loads at
   * start and the API is allowed. Triton's `poll` is not offered.
   */
  modelControlMode?: "none" | "explicit";
  /** With `modelControlMode: "explicit"`, the models to load at start (Triton's `--load-model`; `*`: all). */
  loadModels?: readonly string[];
  /**
   * Serve `POST …/infer` on a direct path in front of fastify (same
   * responses, less CPU per request; fastify hooks added to
   * {@link InferenceServer.app} then do not run for those requests): the
   * server's own HTTP/1.1 front reads each connection and serves plain
   * inference requests itself, and hands a connection to node:http at its
   * first other request (see src/server/http-front.ts). `"node"` keeps the
   * direct path but leaves all HTTP framing to node:http. Default true;
   * false sends every request through fastify.
   */
  fastInfer?: boolean | "node";
  /**
   * HTTP header deadline: a request head must arrive whole within this many
   * ms of its first byte (a new connection's first head: of the
   * connection's start), or the server answers `408` and closes the
   * connection. 0: none. Default {@link DEFAULT_HEADERS_TIMEOUT_MS}; cut to
   * {@link requestTimeoutMs} when longer.
   */
  headersTimeoutMs?: number;
  /**
   * HTTP body deadline: a whole request, head and body, must arrive within
   * this many ms of its first byte, or the server answers `408` and closes
   * the connection (the time a model takes does not count). 0: none.
   * Default {@link DEFAULT_REQUEST_TIMEOUT_MS}.
   */
  requestTimeoutMs?: number;
  /**
   * The most HTTP connections open at once; past it a new connection is
   * answered `503` with a JSON error and closed. 0: no limit. Default
   * {@link DEFAULT_MAX_CONNECTIONS}. Keep it below the process's file
   * descriptor limit (`ulimit -n`).
   */
  maxConnections?: number;
  /**
   * The most gRPC connections open at once; past it a new connection gets
   * an HTTP/2 `GOAWAY` (`ENHANCE_YOUR_CALM`) and is closed (clients see
   * `UNAVAILABLE`). 0: no limit. Default {@link DEFAULT_MAX_CONNECTIONS}.
   */
  grpcMaxConnections?: number;
  /**
   * A gRPC connection with no call open for this many ms is closed
   * (`GOAWAY`; clients reconnect when they next call), a connection that
   * never starts a call included. 0: never. Default
   * {@link DEFAULT_GRPC_IDLE_TIMEOUT_MS}.
   */
  grpcIdleTimeoutMs?: number;
  /**
   * A unary gRPC call's request message must arrive whole within this many
   * ms of the call's start, or the call ends with `DEADLINE_EXCEEDED`.
   * 0: none. Default {@link requestTimeoutMs}'s value.
   */
  grpcRequestTimeoutMs?: number;
  /**
   * The HTTP/2 server that carries gRPC: `tensorbridge` (default), this
   * package's own, or `grpc-js`, grpc-js's server on node:http2 (same
   * answers, more CPU per call).
   */
  grpcServer?: "tensorbridge" | "grpc-js";
  /**
   * Triton's `--exit-timeout-secs`, in ms: how long {@link
   * InferenceServer.close} waits for requests in flight (a model's
   * `execute()` that never settles would hold it for ever); past it the
   * connections left are closed and `close()` resolves without waiting for
   * them. Default {@link DEFAULT_EXIT_TIMEOUT_MS}.
   */
  exitTimeoutMs?: number;
}

/** A deadline or limit option: a whole number ≥ 0. */
function limitOption(name: string, v: number | undefined, dflt: number): number {
  if (v === undefined) return dflt;
  if (!Number.isSafeInteger(v) || v < 0) throw new TensorBridgeError(ErrorCode.INVALID_ARGUMENT, `server option ${name} must be a whole number ≥ 0, got ${String(v)}`);
  return v;
}

/** The server's deadlines and connection limits, defaults applied. */
export interface ServerLimits {
  /** See {@link ServerOptions.headersTimeoutMs}. */
  headersTimeoutMs: number;
  /** See {@link ServerOptions.requestTimeoutMs}. */
  requestTimeoutMs: number;
  /** See {@link ServerOptions.maxConnections}. */
  maxConnections: number;
  /** See {@link ServerOptions.grpcMaxConnections}. */
  grpcMaxConnections: number;
  /** See {@link ServerOptions.grpcIdleTimeoutMs}. */
  grpcIdleTimeoutMs: number;
  /** See {@link ServerOptions.grpcRequestTimeoutMs}. */
  grpcRequestTimeoutMs: number;
  /** See {@link ServerOptions.exitTimeoutMs}. */
  exitTimeoutMs: number;
}

/**
 * The deadlines and limits `opts` asks for, defaults applied.
 *
 * @throws {TensorBridgeError} `ERR_INVALID_ARGUMENT` for a value that is not a whole number ≥ 0.
 */
export function serverLimits(opts: ServerOptions): ServerLimits {
  const requestTimeoutMs = limitOption("requestTimeoutMs", opts.requestTimeoutMs, DEFAULT_REQUEST_TIMEOUT_MS);
  let headersTimeoutMs = limitOption("headersTimeoutMs", opts.headersTimeoutMs, DEFAULT_HEADERS_TIMEOUT_MS);
  // node:http refuses a header deadline past the request's: the request's bounds the head too.
  if (requestTimeoutMs > 0 && (headersTimeoutMs === 0 || headersTimeoutMs > requestTimeoutMs)) headersTimeoutMs = requestTimeoutMs;
  return {
    headersTimeoutMs,
    requestTimeoutMs,
    maxConnections: limitOption("maxConnections", opts.maxConnections, DEFAULT_MAX_CONNECTIONS),
    grpcMaxConnections: limitOption("grpcMaxConnections", opts.grpcMaxConnections, DEFAULT_MAX_CONNECTIONS),
    grpcIdleTimeoutMs: limitOption("grpcIdleTimeoutMs", opts.grpcIdleTimeoutMs, DEFAULT_GRPC_IDLE_TIMEOUT_MS),
    grpcRequestTimeoutMs: limitOption("grpcRequestTimeoutMs", opts.grpcRequestTimeoutMs, requestTimeoutMs),
    exitTimeoutMs: limitOption("exitTimeoutMs", opts.exitTimeoutMs, DEFAULT_EXIT_TIMEOUT_MS),
  };
}

/**
 * How often deadlines are checked: a quarter of the shortest one (a
 * connection ends at most a quarter past its deadline), between 50 ms and
 * node's default of 30 s.
 */
function checkInterval(...deadlines: number[]): number {
  const set = deadlines.filter((d) => d > 0);
  if (set.length === 0) return 30_000;
  return Math.min(30_000, Math.max(50, Math.floor(Math.min(...set) / 4)));
}

/** Where a started server listens. */
export interface ServerAddress {
  /** Bound host. */
  host: string;
  /** Bound port. */
  port: number;
  /** `http://host:port` (`host:port` for gRPC, as gRPC clients take it). */
  url: string;
}

function packageVersion(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version?: string };
    return pkg.version ?? "0.0.0";
  } catch {
    return "0.0.0";
  }
}

const stderrLogger: RuntimeLogger = {
  info: (m) => process.stderr.write(`I ${new Date().toISOString()} ${m}\n`),
  warn: (m) => process.stderr.write(`W ${new Date().toISOString()} ${m}\n`),
  error: (m) => process.stderr.write(`E ${new Date().toISOString()} ${m}\n`),
  debug: (m) => process.stderr.write(`V ${new Date().toISOString()} ${m}\n`),
};
const silentLogger: RuntimeLogger = { info() {}, warn() {}, error() {} };

/**
 * A KServe v2 / Triton HTTP server over one model repository.
 *
 * @example
 * ```ts
 * await using server = await InferenceServer.start({ repository: "examples/models", port: 0 });
 * console.log(server.address.url); // http://127.0.0.1:41234
 * ```
 */
export class InferenceServer {
  /**
   * The fastify app (routes are registered; add your own before traffic if
   * needed). Inference requests are served before fastify unless
   * {@link ServerOptions.fastInfer} is false, so hooks added here do not
   * see them.
   */
  readonly app: FastifyInstance;
  /** The models being served. */
  readonly registry: ModelRegistry;
  /** Prometheus metrics. */
  readonly metrics: ServerMetrics;
  /** System shared-memory regions. */
  readonly shm: SystemSharedMemory;
  /** CUDA shared-memory regions. */
  readonly cudaShm: CudaSharedMemory;
  /** The inference endpoint that every transport serves. */
  readonly endpoint: InferenceEndpoint;
  #address: ServerAddress | undefined;
  #grpc: GrpcTransport | undefined;
  #front: HttpFront<InferRoute> | undefined;
  #httpLimit: ConnectionLimit | undefined;
  readonly #limits: ServerLimits;
  #closing: Promise<void> | undefined;
  readonly #log: RuntimeLogger;

  private constructor(opts: ServerOptions) {
    this.#log = opts.logger ?? (opts.quiet ? silentLogger : stderrLogger);
    const limits = (this.#limits = serverLimits(opts));
    let registry: ModelRegistry | undefined;
    // Models' Logger lines go to the server's log (verbose ones with logVerbose only).
    this.metrics = new ServerMetrics(() => registry, { defaultMetrics: opts.defaultMetrics ?? true, modelLog: { logger: this.#log, verbose: opts.logVerbose ?? false } });
    this.registry = registry = new ModelRegistry({
      repository: resolve(opts.repository),
      observer: this.metrics,
      logger: this.#log,
      autoCompleteConfig: opts.autoCompleteConfig ?? true,
      modelControl: opts.modelControlMode !== "none",
    });
    // Region names are one namespace across both kinds, as in Triton.
    this.shm = new SystemSharedMemory(opts.allowClientShm ?? false, undefined, (name) => this.cudaShm.has(name));
    this.cudaShm = new CudaSharedMemory(opts.allowClientShm ?? false, (name) => this.shm.has(name));
    const bodyLimit = opts.bodyLimit ?? DEFAULT_BODY_LIMIT;
    const chunkThreshold = 64 * 1024;
    this.endpoint = new InferenceEndpoint({
      name: "tensorbridge",
      version: packageVersion(),
      registry,
      systemShm: this.shm,
      cudaShm: this.cudaShm,
      closing: () => this.#closing !== undefined,
      strictReadiness: opts.strictReadiness ?? true,
      log: this.#log,
    });
    // Verbose logging logs every request through fastify's logger: no direct path then.
    const direct = opts.fastInfer !== false && !opts.logVerbose ? directInfer(this.endpoint, { bodyLimit, chunkThreshold }) : undefined;
    const fast = direct && nodeInferHandler(direct);
    const keepAliveTimeout = 65_000;
    const nodeOptions = {
      keepAliveTimeout,
      headersTimeout: limits.headersTimeoutMs,
      requestTimeout: limits.requestTimeoutMs,
      connectionsCheckingInterval: checkInterval(limits.headersTimeoutMs, limits.requestTimeoutMs),
    };
    // fastify applies its timeouts only to a server it creates itself: they are set here.
    const serverFactory: FastifyServerFactory<RawServerDefault> = (handler) => {
      const server = fast
        ? createServer(nodeOptions, (req, res) => {
            if (!fast(req, res)) handler(req, res);
          })
        : createServer(nodeOptions, handler);
      if (direct && opts.fastInfer !== "node") {
        this.#front = HttpFront.install(server, {
          accept: direct.route,
          serve: direct.serve,
          keepAliveTimeout,
          // node keeps idle sockets this much longer than it advertises: a
          // property since 24.6, a fixed 1000 ms before
          keepAliveTimeoutBuffer: (server as { keepAliveTimeoutBuffer?: number }).keepAliveTimeoutBuffer ?? 1000,
          headersTimeout: limits.headersTimeoutMs,
          requestTimeout: limits.requestTimeoutMs,
          checkInterval: nodeOptions.connectionsCheckingInterval,
          maxHeaderSize,
        });
      }
      // After the front: the limit takes over every `connection` listener.
      this.#httpLimit = ConnectionLimit.install(server, limits.maxConnections, httpRefusal(limits.maxConnections, "--http-max-connections"));
      return server;
    };
    this.app = Fastify({
      logger: opts.logVerbose ? { level: "debug" } : false,
      bodyLimit,
      return503OnClosing: true,
      forceCloseConnections: "idle",
      keepAliveTimeout,
      routerOptions: { maxParamLength: 1024, ignoreTrailingSlash: true },
      serverFactory,
    });
    // Every body reaches the handlers as a Buffer: inference bodies are JSON
    // or JSON + binary tensors whatever the content type says.
    this.app.removeAllContentTypeParsers();
    this.app.addContentTypeParser("*", { parseAs: "buffer" }, (_req, body, done) => done(null, body));
    this.app.setErrorHandler((err, req, reply) => {
      let { status, message } = httpError(err);
      const code = (err as { code?: unknown }).code;
      if (code === "FST_ERR_CTP_BODY_TOO_LARGE") {
        status = 413;
        message = `the request body is larger than this server's limit of ${bodyLimit} bytes (see --http-max-body-size)`;
      }
      if (status >= 500) this.#log.error(`${req.method} ${req.url}: ${message}`);
      else this.#log.debug?.(`${req.method} ${req.url}: ${status} ${message}`);
      if (!reply.sent) void reply.code(status).header("content-type", "application/json").send({ error: message });
    });
    // While closing, answer in-flight requests with "Connection: close" so that
    // keep-alive sockets do not hold the shutdown open.
    this.app.addHook("onSend", (_req, reply, payload, done) => {
      if (this.#closing !== undefined) void reply.header("connection", "close");
      done(null, payload);
    });
    this.app.setNotFoundHandler((req, reply) => {
      void reply.code(404).send({ error: `unknown endpoint: ${req.method} ${req.url.split("?")[0]}` });
    });
    registerRoutes(this.app, this.endpoint, { metrics: this.metrics, chunkThreshold });
  }

  /**
   * Loads the repository's models (a model that fails is reported and
   * skipped) and starts listening.
   *
   * @throws {ServingError} `ERR_REPOSITORY` when the repository cannot be
   * read; the listen error when the port is taken.
   */
  static async start(opts: ServerOptions): Promise<InferenceServer> {
    const server = new InferenceServer(opts);
    if (opts.loadModels !== undefined && opts.loadModels.length > 0 && opts.modelControlMode !== "explicit") {
      throw new TensorBridgeError(ErrorCode.INVALID_ARGUMENT, "server option loadModels (--load-model) needs modelControlMode 'explicit' (--model-control-mode explicit)");
    }
    if (opts.noAutoLoad) {
      // nothing at start
    } else if (opts.modelControlMode === "explicit" && !(opts.loadModels ?? []).includes("*")) {
      // Triton's EXPLICIT mode: only the models named; one that fails leaves the server up, as loadAll does.
      for (const name of opts.loadModels ?? []) {
        try {
          await server.registry.load(name);
        } catch (e) {
          server.#log.warn(`model '${name}' is not available (${errorMessage(e)}); the server serves the others`);
        }
      }
    } else {
      const failed = await server.registry.loadAll();
      for (const name of failed) server.#log.warn(`model '${name}' is not available; the server serves the others`);
    }
    const host = opts.host ?? "127.0.0.1";
    try {
      await server.app.listen({ host, port: opts.port ?? 8000 });
    } catch (e) {
      await server.registry.close();
      throw e;
    }
    const addr = server.app.server.address();
    const port = typeof addr === "object" && addr ? addr.port : (opts.port ?? 8000);
    const shownHost = host.includes(":") ? `[${host}]` : host;
    server.#address = { host, port, url: `http://${shownHost}:${port}` };
    if (opts.allowGrpc ?? true) {
      try {
        const l = server.#limits;
        server.#grpc = await GrpcTransport.start(server.endpoint, {
          host,
          port: opts.grpcPort ?? 8001,
          maxConnections: l.grpcMaxConnections,
          idleTimeoutMs: l.grpcIdleTimeoutMs,
          requestTimeoutMs: l.grpcRequestTimeoutMs,
          shutdownTimeoutMs: l.exitTimeoutMs,
          server: opts.grpcServer,
        });
      } catch (e) {
        await server.close();
        throw e;
      }
    }
    return server;
  }

  /** Where the server listens. */
  get address(): ServerAddress {
    if (!this.#address) throw new ServingError("ERR_SERVER_CLOSED", "the server is not listening");
    return this.#address;
  }

  /** Where the gRPC service listens; undefined when gRPC is off (`allowGrpc: false`). */
  get grpcAddress(): ServerAddress | undefined {
    const g = this.#grpc;
    if (g === undefined || this.#address === undefined) return undefined;
    const host = this.#address.host;
    const shownHost = host.includes(":") ? `[${host}]` : host;
    return { host, port: g.port, url: `${shownHost}:${g.port}` };
  }

  /**
   * What the HTTP/1.1 front did so far (connections it accepted, requests it
   * served itself, connections it handed to node:http); undefined when it is
   * off ({@link ServerOptions.fastInfer} false or `"node"`, or verbose
   * logging). For diagnostics and tests.
   */
  get httpFrontCounters(): Readonly<HttpFrontCounters> | undefined {
    return this.#front?.counters;
  }

  /** The deadlines and connection limits in force (defaults applied). */
  get limits(): Readonly<ServerLimits> {
    return this.#limits;
  }

  /**
   * Open HTTP and gRPC connections now and refusals past the connection
   * limits so far (`grpc` undefined when gRPC is off). For diagnostics and
   * tests.
   */
  get connectionCounters(): {
    /** The HTTP port's connections. */
    http: Readonly<ConnectionLimitCounters>;
    /** The gRPC port's connections; undefined without gRPC. */
    grpc: Readonly<ConnectionLimitCounters> | undefined;
  } {
    return { http: this.#httpLimit?.counters ?? { open: 0, refused: 0 }, grpc: this.#grpc?.connectionCounters };
  }

  /** True once {@link close} was called. */
  get closing(): boolean {
    return this.#closing !== undefined;
  }

  /**
   * Graceful shutdown: stops accepting connections, lets in-flight requests
   * finish, then unloads every model (calling `finalize()`). Idempotent.
   * Resolves after {@link ServerOptions.exitTimeoutMs} at the latest:
   * requests still in flight then are abandoned (their connections closed),
   * and the models they hold are not finalized.
   */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      const graceful = (async () => {
        // Idle connections the front reads would hold the listener's close open.
        this.#front?.close();
        const grpc = this.#grpc?.close().catch((e: unknown) => this.#log.error(`closing the gRPC server failed: ${errorMessage(e)}`));
        try {
          await this.app.close();
        } catch (e) {
          this.#log.error(`closing the HTTP server failed: ${errorMessage(e)}`);
        }
        await grpc;
        await this.registry.close();
      })();
      const ms = this.#limits.exitTimeoutMs;
      let timer: NodeJS.Timeout | undefined;
      // As Triton's --exit-timeout-secs: an execute() that never settles must not hold the exit for ever.
      const expired = new Promise<boolean>((done) => (timer = setTimeout(() => done(true), ms)));
      const timedOut = await Promise.race([graceful.then(() => false), expired]);
      clearTimeout(timer);
      if (timedOut) {
        this.#log.error(`requests were still in flight ${ms / 1000} s after the shutdown began (--exit-timeout-secs): closing without waiting for them`);
        this.app.server.closeAllConnections();
        // A late failure of the abandoned shutdown is logged, not thrown.
        graceful.catch((e: unknown) => this.#log.error(`closing the server failed: ${errorMessage(e)}`));
      }
      this.shm.close();
      this.cudaShm.close();
    })();
    return this.#closing;
  }

  /** Same as {@link close}, for `await using`. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.close();
  }
}

/**
 * Starts a server: {@link InferenceServer.start}.
 *
 * @example
 * ```ts
 * const server = await startServer({ repository: "examples/models", port: 8000 });
 * process.on("SIGTERM", () => void server.close());
 * ```
 */
export function startServer(opts: ServerOptions): Promise<InferenceServer> {
  return InferenceServer.start(opts);
}

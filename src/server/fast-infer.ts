/**
 * The inference request path, shared by the fastify route and by a direct
 * `node:http` handler that serves `POST /v2/models/{m}[/versions/{v}]/infer`
 * in front of fastify.
 *
 * Why a direct handler: with tiny models (add_sub), fastify's per-request
 * machinery (routing, content-type parsing with a body copy, hooks, reply
 * serialisation, several promise hops) cost more CPU than decoding, running
 * and encoding the request itself. The direct handler answers byte-for-byte
 * as the fastify route does (status, headers, error bodies); every request
 * it is not sure about (any other method or URL, a percent-encoded model
 * name, no `Content-Length`, a body over the limit, shutdown begun, verbose
 * logging on) goes to fastify unchanged.
 *
 * @module
 */
import type { IncomingMessage, ServerResponse } from "node:http";

import type { ModelRegistry } from "../runtime/model-registry.js";
import type { InferCallbacks, InferOutput, ModelVersion, RuntimeLogger } from "../runtime/model-version.js";
import { decodeInferRequest, encodeInferResponse, type DecodedRequest, type EncodedResponse, type SharedMemoryAccess } from "./codec.js";
import { errorStatus } from "./routes.js";

/**
 * Decodes a request body, runs it on the model and encodes the response:
 * the whole inference endpoint but the HTTP framing.
 *
 * @param registry - the models.
 * @param shm - shared-memory access for inputs and outputs placed in regions.
 * @param model - the model name from the URL.
 * @param version - the version from the URL, if any.
 * @param body - the request body.
 * @param headerLength - the `Inference-Header-Content-Length` header.
 * @param joinBelow - binary responses shorter than this come as one chunk (see encodeInferResponse).
 * @throws {ServingError} unknown model or version, malformed request (and
 * whatever the model's inference rejects with).
 */
export async function inferBody(
  registry: ModelRegistry,
  shm: SharedMemoryAccess,
  model: string,
  version: string | undefined,
  body: Uint8Array | undefined,
  headerLength: string | string[] | undefined,
  joinBelow = 0,
): Promise<EncodedResponse> {
  const { mv, decoded } = decodeFor(registry, shm, model, version, body, headerLength);
  const result = await mv.infer(decoded.input);
  return encodeInferResponse(result, decoded, shm, joinBelow);
}

/**
 * The request half of both inference paths: the arrival time, the model
 * version, then the decoded body, in that order.
 *
 * @throws {ServingError} unknown model or version, malformed request.
 */
function decodeFor(
  registry: ModelRegistry,
  shm: SharedMemoryAccess,
  model: string,
  version: string | undefined,
  body: Uint8Array | undefined,
  headerLength: string | string[] | undefined,
): { mv: ModelVersion; decoded: DecodedRequest } {
  // Taken after the body arrived, as the fastify route always did, so that
  // the statistics mean the same on both paths.
  const received = process.hrtime.bigint();
  const mv = registry.get(model, version); // throws NOT_FOUND / UNAVAILABLE
  const decoded = decodeInferRequest(body, headerLength, shm);
  decoded.input.receivedAt = received;
  return { mv, decoded };
}

/** The headers of a successful inference response. */
export function inferResponseHeaders(enc: EncodedResponse, closing: boolean): Record<string, string> {
  const h: Record<string, string> =
    enc.headerLength === undefined
      ? { "content-type": "application/json", "content-length": String(enc.length) }
      : { "content-type": "application/octet-stream", "inference-header-content-length": String(enc.headerLength), "content-length": String(enc.length) };
  if (closing) h["connection"] = "close";
  return h;
}

/**
 * What the inference path writes a response to: node's `ServerResponse`, or
 * the HTTP/1.1 front's own response (src/server/http-front.ts).
 */
export interface ResponseSink {
  /** True once `writeHead` ran. */
  readonly headersSent: boolean;
  /** Sets the status and the headers (written with the first body bytes). */
  writeHead(status: number, headers: Record<string, string>): unknown;
  /** Writes body bytes. */
  write(chunk: Uint8Array): unknown;
  /** Writes the last body bytes, if any, and finishes the response. */
  end(chunk?: Uint8Array): unknown;
  /** Buffers writes until {@link uncork}. */
  cork(): void;
  /** Sends what {@link cork} buffered, in one write where it can. */
  uncork(): void;
  /** Drops the connection (the response cannot be finished). */
  destroy(): unknown;
}

/** The method, URL and headers of a request: node's `IncomingMessage`, or the HTTP/1.1 front's parsed head. */
export interface RequestHead {
  /** The request method. */
  readonly method?: string | undefined;
  /** The request target. */
  readonly url?: string | undefined;
  /** Lower-case header names to values. */
  readonly headers: Readonly<Record<string, string | string[] | undefined>>;
}

/**
 * Writes a successful inference response: one write for small bodies, the
 * tensors' own memory without a join for large ones.
 */
export function writeInferResponse(res: ResponseSink, enc: EncodedResponse, closing: boolean, chunkThreshold: number): void {
  res.writeHead(200, inferResponseHeaders(enc, closing));
  if (enc.chunks.length === 1) {
    res.end(enc.chunks[0]);
  } else if (enc.length < chunkThreshold) {
    res.end(Buffer.concat(enc.chunks, enc.length));
  } else {
    res.cork();
    for (const c of enc.chunks) res.write(c);
    res.uncork();
    res.end();
  }
}

/** What the direct handler needs from the server. */
export interface FastInferContext {
  /** The models. */
  registry: ModelRegistry;
  /** Shared-memory access (system and CUDA regions). */
  shm: SharedMemoryAccess;
  /** True once shutdown began (fastify then answers 503 to new requests). */
  closing: () => boolean;
  /** Largest body in bytes (larger ones go to fastify, which answers 413). */
  bodyLimit: number;
  /** Binary responses at least this large are written in chunks instead of joined. */
  chunkThreshold: number;
  /** Where 5xx errors are logged (and others at debug level), as the fastify error handler does. */
  log: RuntimeLogger;
}

/** What every {@link Reply} of one handler shares. */
interface ReplyState {
  shm: SharedMemoryAccess;
  closing: () => boolean;
  chunkThreshold: number;
  fail: (req: RequestHead, res: ResponseSink, err: unknown) => void;
}

/**
 * Answers one request when the model is done with it (the runtime's
 * callbacks, without a promise): encodes and writes the response, or the
 * error. Never throws.
 */
class Reply implements InferCallbacks {
  constructor(
    readonly state: ReplyState,
    readonly req: RequestHead,
    readonly res: ResponseSink,
    readonly decoded: DecodedRequest,
  ) {}

  resolve(out: InferOutput): void {
    const { state, res } = this;
    try {
      writeInferResponse(res, encodeInferResponse(out, this.decoded, state.shm, state.chunkThreshold), state.closing(), state.chunkThreshold);
    } catch (e) {
      state.fail(this.req, res, e);
    }
  }

  reject(e: unknown): void {
    this.state.fail(this.req, this.res, e);
  }
}

// Model names without percent-encoding (fastify would decode those) and
// within fastify's maxParamLength; an optional numeric version, an optional
// trailing slash (ignoreTrailingSlash) and an optional query string.
const INFER_PATH = /^\/v2\/models\/([A-Za-z0-9_.-]{1,1024})(?:\/versions\/([0-9]{1,15}))?\/infer\/?(?:\?.*)?$/;

const noop = (): void => {};

/** Where a request the direct path takes goes, and how long its body is. */
export interface InferRoute {
  /** The model name from the URL. */
  readonly model: string;
  /** The version from the URL, if any. */
  readonly version: string | undefined;
  /** The body length (`Content-Length`). */
  readonly length: number;
}

/** The direct inference path, apart from how the body arrives. */
export interface DirectInfer {
  /**
   * The route of a request the direct path serves, or undefined to leave it
   * to fastify: any method but POST, any other URL, a percent-encoded model
   * name, no `Content-Length`, a body over the limit, or shutdown begun.
   */
  route(req: RequestHead): InferRoute | undefined;
  /** Serves a routed request whose body has arrived (`undefined` when empty). Never throws. */
  serve(req: RequestHead, res: ResponseSink, route: InferRoute, body: Buffer | undefined): void;
}

/** The direct inference path: see {@link DirectInfer}. */
export function directInfer(ctx: FastInferContext): DirectInfer {
  const { registry, shm, closing, bodyLimit, chunkThreshold, log } = ctx;

  const fail = (req: RequestHead, res: ResponseSink, err: unknown): void => {
    const { status, message } = errorStatus(err);
    if (status >= 500) log.error(`${req.method} ${req.url}: ${message}`);
    else log.debug?.(`${req.method} ${req.url}: ${status} ${message}`);
    if (res.headersSent) {
      res.destroy();
      return;
    }
    const body = Buffer.from(JSON.stringify({ error: message }));
    const h: Record<string, string> = { "content-type": "application/json; charset=utf-8", "content-length": String(body.length) };
    if (closing()) h["connection"] = "close";
    res.writeHead(status, h);
    res.end(body);
  };

  const state: ReplyState = { shm, closing, chunkThreshold, fail };
  return {
    route(req) {
      if (req.method !== "POST") return undefined;
      const m = INFER_PATH.exec(req.url!);
      if (m === null) return undefined;
      const cl = req.headers["content-length"];
      if (typeof cl !== "string" || closing()) return undefined;
      const length = Number(cl);
      if (!(length <= bodyLimit)) return undefined;
      return { model: m[1]!, version: m[2], length };
    },
    serve(req, res, route, body) {
      try {
        const { mv, decoded } = decodeFor(registry, shm, route.model, route.version, body, req.headers["inference-header-content-length"]);
        mv.submit(decoded.input, new Reply(state, req, res, decoded));
      } catch (e) {
        fail(req, res, e);
      }
    },
  };
}

/**
 * A `request` listener for `POST …/infer` that runs before fastify: the
 * direct path (`direct`, or one made from `ctx`) over node:http, collecting
 * the body itself.
 *
 * @returns a function that serves the request and returns true, or returns
 * false without touching it (fastify serves it then).
 */
export function fastInferHandler(ctx: FastInferContext, direct: DirectInfer = directInfer(ctx)): (req: IncomingMessage, res: ServerResponse) => boolean {
  return (req, res) => {
    const route = direct.route(req);
    if (route === undefined) return false;
    // A client that goes away mid-body: nothing to answer.
    req.on("error", noop);
    if (route.length === 0) {
      req.resume();
      direct.serve(req, res, route, undefined);
      return true;
    }
    let first: Buffer | undefined;
    let rest: Buffer[] | undefined;
    req.on("data", (c: Buffer) => {
      if (first === undefined) first = c;
      else (rest ??= [first]).push(c);
    });
    req.on("end", () => {
      direct.serve(req, res, route, rest ? Buffer.concat(rest) : first);
    });
    return true;
  };
}

/**
 * The inference endpoint over KServe v2 HTTP bodies (JSON, or JSON plus
 * binary tensors): decode, submit to the endpoint, encode, write. The three
 * HTTP transports (the HTTP/1.1 front in `http-front.ts`, node:http in
 * `node-http.ts` and the fastify route in `routes.ts`) share it; the
 * contracts they fill in ({@link RequestHead}, {@link ResponseSink}) are
 * defined here, so none of them imports another.
 *
 * Why a direct path beside fastify: with tiny models (add_sub), fastify's
 * per-request machinery (routing, content-type parsing with a body copy,
 * hooks, reply serialisation, several promise hops) cost more CPU than
 * decoding, running and encoding the request itself. The direct path
 * answers byte-for-byte as the fastify route does (status, headers, error
 * bodies); every request it is not sure about (any other method or URL, a
 * percent-encoded model name, no `Content-Length`, a body over the limit,
 * shutdown begun, verbose logging on) goes to fastify unchanged.
 *
 * @module
 */
import { Cancellation } from "../runtime/cancel.js";
import type { InferCallbacks, InferOutput, ModelVersion } from "../runtime/model-version.js";
import { decodeInferRequest, encodeInferResponse, type DecodedRequest, type EncodedResponse } from "./codec.js";
import type { InferenceEndpoint } from "./endpoint.js";
import { httpError } from "./http-status.js";

/**
 * Decodes a request body, runs it on the model and encodes the response:
 * the whole inference endpoint but the HTTP framing.
 *
 * @param endpoint - the endpoint.
 * @param model - the model name from the URL.
 * @param version - the version from the URL, if any.
 * @param body - the request body.
 * @param headerLength - the `Inference-Header-Content-Length` header.
 * @param joinBelow - binary responses shorter than this come as one chunk (see encodeInferResponse).
 * @param cancellation - cancelled by the transport when the client goes away.
 * @throws {ServingError} unknown model or version, malformed request (and
 * whatever the model's inference rejects with).
 */
export async function inferBody(
  endpoint: InferenceEndpoint,
  model: string,
  version: string | undefined,
  body: Uint8Array | undefined,
  headerLength: string | string[] | undefined,
  joinBelow = 0,
  cancellation?: Cancellation,
): Promise<EncodedResponse> {
  const { mv, decoded } = decodeFor(endpoint, model, version, body, headerLength);
  if (cancellation !== undefined) decoded.input.cancellation = cancellation;
  const result = await new Promise<InferOutput>((resolve, reject) => endpoint.infer(mv, decoded.input, { resolve, reject }, "HTTP"));
  return encodeInferResponse(result, decoded, endpoint.shm, joinBelow);
}

/**
 * The request half of both inference paths: the arrival time, the model
 * version, then the decoded body, in that order.
 *
 * @throws {ServingError} unknown model or version, malformed request.
 */
function decodeFor(
  endpoint: InferenceEndpoint,
  model: string,
  version: string | undefined,
  body: Uint8Array | undefined,
  headerLength: string | string[] | undefined,
): { mv: ModelVersion; decoded: DecodedRequest } {
  // Taken after the body arrived, as the fastify route always did, so that
  // the statistics mean the same on both paths.
  const received = process.hrtime.bigint();
  const mv = endpoint.model(model, version); // throws NOT_FOUND / UNAVAILABLE
  const decoded = decodeInferRequest(body, headerLength, endpoint.shm);
  decoded.input.receivedAt = received;
  return { mv, decoded };
}

/**
 * The last success headers made and what they say: a model's responses
 * have the same lengths request after request, and then the same headers
 * serve them all (frozen: every response shares them).
 */
let lastHeaders: Readonly<Record<string, string>> | undefined;
let lastLength = -1;
let lastHeaderLength: number | undefined;
let lastClosing = false;

/** The headers of a successful inference response (frozen, and shared by responses alike). */
export function inferResponseHeaders(enc: EncodedResponse, closing: boolean): Readonly<Record<string, string>> {
  if (lastHeaders !== undefined && enc.length === lastLength && enc.headerLength === lastHeaderLength && closing === lastClosing) return lastHeaders;
  const h: Record<string, string> =
    enc.headerLength === undefined
      ? { "content-type": "application/json", "content-length": String(enc.length) }
      : { "content-type": "application/octet-stream", "inference-header-content-length": String(enc.headerLength), "content-length": String(enc.length) };
  if (closing) h["connection"] = "close";
  lastHeaders = Object.freeze(h);
  lastLength = enc.length;
  lastHeaderLength = enc.headerLength;
  lastClosing = closing;
  return lastHeaders;
}

/**
 * What the inference path writes a response to: node's `ServerResponse`, or
 * the HTTP/1.1 front's own response (src/server/http-front.ts).
 */
export interface ResponseSink {
  /** True once `writeHead` ran. */
  readonly headersSent: boolean;
  /** Sets the status and the headers (written with the first body bytes; the sink must not change them). */
  writeHead(status: number, headers: Readonly<Record<string, string>>): unknown;
  /** Writes body bytes. */
  write(chunk: Uint8Array): unknown;
  /** Writes the last body bytes (a string: its UTF-8 bytes), if any, and finishes the response. */
  end(chunk?: Uint8Array | string): unknown;
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
 * Writes a successful inference response: a JSON body as its text, one
 * write for small binary bodies, the tensors' own memory without a join for
 * large ones.
 */
export function writeInferResponse(res: ResponseSink, enc: EncodedResponse, closing: boolean, chunkThreshold: number): void {
  res.writeHead(200, inferResponseHeaders(enc, closing));
  if (enc.text !== undefined) {
    res.end(enc.text);
  } else if (enc.chunks.length === 1) {
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

/** What the direct path needs beside the endpoint. */
export interface DirectInferOptions {
  /** Largest body in bytes (larger ones go to fastify, which answers 413). */
  bodyLimit: number;
  /** Binary responses at least this large are written in chunks instead of joined. */
  chunkThreshold: number;
}

/** What every {@link Reply} of one handler shares. */
interface ReplyState {
  shm: InferenceEndpoint["shm"];
  closing: () => boolean;
  chunkThreshold: number;
  fail: (req: RequestHead, res: ResponseSink, err: unknown) => void;
}

/**
 * Answers one request when the model is done with it (the runtime's
 * callbacks, without a promise): encodes and writes the response, or the
 * error. Never throws. It is also the request's cancellation (one object
 * per request, not two), which the transport cancels when the client's
 * connection closes before the answer.
 */
class Reply extends Cancellation implements InferCallbacks {
  constructor(
    readonly state: ReplyState,
    readonly req: RequestHead,
    readonly res: ResponseSink,
    readonly decoded: DecodedRequest,
  ) {
    super();
  }

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
  /**
   * Serves a routed request whose body has arrived (`undefined` when
   * empty). Never throws.
   *
   * @returns the request's cancellation, for the transport to cancel if
   * the connection closes before the response is written (undefined when
   * the request failed before reaching the model).
   */
  serve(req: RequestHead, res: ResponseSink, route: InferRoute, body: Buffer | undefined): Cancellation | undefined;
}

/** The direct inference path: see {@link DirectInfer}. */
export function directInfer(endpoint: InferenceEndpoint, opts: DirectInferOptions): DirectInfer {
  const { shm, closing, log } = endpoint;
  const { bodyLimit, chunkThreshold } = opts;

  const fail = (req: RequestHead, res: ResponseSink, err: unknown): void => {
    const { status, message } = httpError(err);
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
  // The last URL routed and its model and version: clients send one URL again and again.
  let lastUrl: string | undefined;
  let lastModel = "";
  let lastVersion: string | undefined;
  return {
    route(req) {
      if (req.method !== "POST") return undefined;
      const url = req.url!;
      if (url !== lastUrl) {
        const m = INFER_PATH.exec(url);
        if (m === null) return undefined;
        lastUrl = url;
        lastModel = m[1]!;
        lastVersion = m[2];
      }
      const cl = req.headers["content-length"];
      if (typeof cl !== "string" || closing()) return undefined;
      const length = Number(cl);
      if (!(length <= bodyLimit)) return undefined;
      return { model: lastModel, version: lastVersion, length };
    },
    serve(req, res, route, body) {
      try {
        const { mv, decoded } = decodeFor(endpoint, route.model, route.version, body, req.headers["inference-header-content-length"]);
        const reply = new Reply(state, req, res, decoded);
        decoded.input.cancellation = reply;
        endpoint.infer(mv, decoded.input, reply, "HTTP");
        return reply;
      } catch (e) {
        fail(req, res, e);
        return undefined;
      }
    },
  };
}

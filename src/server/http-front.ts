/**
 * A small HTTP/1.1 front that reads the server's connections itself and
 * serves the requests it is sure about (the inference path) without
 * node:http; at the first request it is not sure about, it hands the whole
 * connection, unread bytes included, to node:http for good.
 *
 * Why: under perf_analyzer at concurrency 1, node:http's per-request
 * machinery (an `IncomingMessage` and a `ServerResponse`, their streams and
 * events) costs about 30 µs of CPU per request on this project's machines,
 * more than decoding, running and encoding an add_sub request together. A
 * bare `net` server answering the same bytes serves ~20 % more requests per
 * second than a bare `node:http` one (bench/serving/RESULTS.md).
 *
 * What it serves itself is deliberately narrow, so that it never frames a
 * message differently than node:http would (the root of request
 * smuggling): an `HTTP/1.1` request line, printable-ASCII header lines with
 * token names, each name once, a `Host`, exactly one all-digit
 * `Content-Length`, no `Transfer-Encoding`, `Expect` or `Upgrade`, and a
 * `Connection` of `keep-alive` or `close` if any; and then only what
 * {@link HttpFrontOptions.accept} takes. Everything else (chunked bodies,
 * `Expect: 100-continue`, HTTP/1.0, a header block over node's limit,
 * malformed requests, every non-inference endpoint) goes to node:http,
 * which answers as it always did. Responses carry the headers node:http
 * would add (`Date`, `Connection`, `Keep-Alive`), in its order.
 *
 * One request at a time per connection: a pipelining client's next request
 * is read only once the previous response is written, so responses keep
 * their order and a client that does not read its responses is not read
 * either.
 *
 * @module
 */
import { METHODS as NODE_METHODS, STATUS_CODES, type Server } from "node:http";
import type { Socket } from "node:net";

import type { RequestHead, ResponseSink } from "./http-infer.js";

/** A request head the front parsed: method, target and headers (lower-case names, each once). */
export interface FrontRequest extends RequestHead {
  /** The request method. */
  readonly method: string;
  /** The request target. */
  readonly url: string;
  /** Lower-case header names to values. */
  readonly headers: Readonly<Record<string, string>>;
}

/** Options of {@link HttpFront.install}. */
export interface HttpFrontOptions<R> {
  /**
   * Whether the front serves a request whose head arrived: its route, or
   * undefined to hand the connection to node:http. Must not take a request
   * whose `Content-Length` is over the body limit (node:http answers those
   * with 413). `req` may be shared with later requests that send the same
   * head on the connection: neither this nor {@link serve} may change it.
   */
  accept(req: FrontRequest): R | undefined;
  /**
   * Serves an accepted request once its body arrived (`undefined` when
   * empty); must finish `res` sooner or later and never throw. A response
   * without `content-length` closes the connection after its body.
   */
  serve(req: FrontRequest, res: ResponseSink, route: R, body: Buffer | undefined): { cancel(): void } | undefined;
  /**
   * The keep-alive timeout clients are told (node's `keepAliveTimeout`, in
   * ms; 0: no timeout and no `Keep-Alive` header).
   */
  keepAliveTimeout: number;
  /**
   * Extra ms an idle connection is kept past `keepAliveTimeout`, so that a
   * client sending just before the advertised timeout does not race the
   * close (node ≥ 24.6's `keepAliveTimeoutBuffer`; older versions add a
   * fixed 1000 ms; default 0 here).
   */
  keepAliveTimeoutBuffer?: number;
  /**
   * A request head must arrive whole within this many ms of its first byte,
   * or the connection gets node's `408 Request Timeout` (node's
   * `headersTimeout`; 0: no limit).
   */
  headersTimeout: number;
  /**
   * A whole request (head and body) must arrive within this many ms of its
   * first byte, or the connection gets node's `408 Request Timeout`
   * (node's `requestTimeout`: the body deadline; 0: no limit). The time a
   * request is being served or its response sent does not count. Default 0.
   */
  requestTimeout?: number;
  /** How often heads in progress are checked against `headersTimeout`, in ms (node's `connectionsCheckingInterval`). */
  checkInterval: number;
  /** Largest request head in bytes (node's `maxHeaderSize`); larger ones go to node:http, which answers 431. */
  maxHeaderSize: number;
}

/** What the front did so far (tests and diagnostics). */
export interface HttpFrontCounters {
  /** Connections accepted. */
  connections: number;
  /** Requests the front served itself. */
  served: number;
  /** Connections handed to node:http. */
  handedOver: number;
  /** Request heads parsed; the others were served from the parse a connection kept. */
  headsParsed: number;
}

const HEAD_END = Buffer.from("\r\n\r\n");
// Control characters (but tab), DEL and non-ASCII bytes anywhere in the head: node decides.
const UNUSUAL = /[^\t\x20-\x7e\r\n]/;
const BARE_CR_LF = /[\r\n]/;
/** The methods llhttp knows: node:http refuses any other with a 400. */
const METHODS: ReadonlySet<string> = new Set(NODE_METHODS);
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Leading whitespace is fine to llhttp, a trailing tab is not: test the raw value.
const LENGTH_VALUE = /^[ \t]*[0-9]{1,15}$/;
// origin-form, printable ASCII only (llhttp refuses a tab or a bare CR/LF in the target)
const TARGET = /^\/[\x21-\x7e]*$/;
const HEADER_VALUE_OK = /^[^\r\n]*$/;
/** Headers whose presence means framing the front leaves to node:http. */
const LEFT_TO_NODE = ["transfer-encoding", "expect", "upgrade"];

/** A request head the front serves itself: its `Connection: close` and its body length, parsed. */
export interface ParsedHead extends FrontRequest {
  /** The client asked for `Connection: close`. */
  readonly close: boolean;
  /** The body length (`Content-Length`). */
  readonly length: number;
}

/**
 * Parses a request head (the bytes before the blank line, as latin1 text),
 * or returns undefined for anything the front does not serve itself.
 */
export function parseRequestHead(text: string): ParsedHead | undefined {
  if (UNUSUAL.test(text)) return undefined;
  const lines = text.split("\r\n");
  const line = lines[0]!;
  const a = line.indexOf(" ");
  const b = line.indexOf(" ", a + 1);
  if (a <= 0 || b < 0 || line.slice(b + 1) !== "HTTP/1.1") return undefined;
  const method = line.slice(0, a);
  const url = line.slice(a + 1, b);
  if (!METHODS.has(method) || !TARGET.test(url)) return undefined;
  // No prototype: a header named __proto__ is a header like any other.
  const headers: Record<string, string> = Object.create(null) as Record<string, string>;
  for (let i = 1; i < lines.length; i++) {
    const l = lines[i]!;
    const colon = l.indexOf(":");
    if (colon <= 0 || BARE_CR_LF.test(l)) return undefined;
    const name = l.slice(0, colon);
    // A leading space or tab (obs-fold) fails the token test too.
    if (!TOKEN.test(name)) return undefined;
    const key = name.toLowerCase();
    if (headers[key] !== undefined) return undefined;
    const raw = l.slice(colon + 1);
    if (key === "content-length" && !LENGTH_VALUE.test(raw)) return undefined;
    headers[key] = raw.trim();
  }
  if (headers["host"] === undefined) return undefined;
  for (const h of LEFT_TO_NODE) if (headers[h] !== undefined) return undefined;
  const cl = headers["content-length"];
  if (cl === undefined) return undefined;
  let close = false;
  const conn = headers["connection"];
  if (conn !== undefined) {
    const v = conn.toLowerCase();
    if (v === "close") close = true;
    else if (v !== "keep-alive") return undefined;
  }
  return { method, url, headers, close, length: Number(cl) };
}

/**
 * A head a connection keeps with its parse: a keep-alive client (perf_analyzer,
 * any SDK) sends the same head again and again, or heads that differ only in
 * the digits of their numeric headers (`Content-Length` for bodies of
 * different sizes, and `Inference-Header-Content-Length` too for JSON
 * bodies), and such a head needs no second parse (the parse is a pure
 * function of the bytes, and the front's users do not change it).
 */
export interface KeptHead {
  /** The head's bytes (a copy), up to the blank line. */
  readonly bytes: Buffer;
  /** Its parse. */
  readonly head: ParsedHead;
  /** Where its header values that are 1 to 15 digits lie in `bytes` (`Content-Length` always among them), in order. */
  readonly numbers: readonly NumberSpan[];
}

/** A header value of digits in a kept head's bytes. */
export interface NumberSpan {
  /** The header's name, lowercase (its key in the parse). */
  readonly key: string;
  /** Where the digits start. */
  readonly at: number;
  /** Where they end. */
  readonly end: number;
}

/** A header line whose value is 1 to 15 digits between optional blanks (the 'd' flag: where the digits are). */
const NUMERIC_HEADER = /\r\n([!#$%&'*+\-.^_`|~0-9A-Za-z]+):[ \t]*([0-9]{1,15})[ \t]*(?=\r\n|$)/dg;

/** A head to keep: `bytes` (copied), their latin1 `text`, and `head`, parseRequestHead's parse of it. */
export function keepHead(bytes: Uint8Array, text: string, head: ParsedHead): KeptHead {
  const numbers: NumberSpan[] = [];
  for (const m of text.matchAll(NUMERIC_HEADER)) {
    const key = m[1]!.toLowerCase();
    // (parseRequestHead took the head, so each name is there once, with its value trimmed: these digits.)
    if (head.headers[key] !== m[2]) continue;
    const [at, end] = m.indices![2]!;
    numbers.push({ key, at, end });
  }
  return { bytes: Buffer.from(bytes), head, numbers };
}

/**
 * What {@link parseRequestHead} returns for `buf`'s first `end` bytes, when
 * they are the kept head's bytes (its parse itself), or the kept head's
 * bytes but for other digits (1 to 15) in its numeric header values (a copy
 * of its parse with those values, and the length of its `Content-Length`);
 * undefined otherwise.
 */
export function reuseHead(kept: KeptHead, buf: Buffer, end: number): ParsedHead | undefined {
  const last = kept.bytes;
  if (last.length === end && last.compare(buf, 0, end) === 0) return kept.head;
  const prev = kept.head;
  let headers: Record<string, string> | undefined;
  // `from` walks the kept bytes, `i` the new ones: equal between the spans, digits in them.
  let from = 0;
  let i = 0;
  for (const n of kept.numbers) {
    const same = n.at - from;
    if (i + same > end || last.compare(buf, i, i + same, from, n.at) !== 0) return undefined;
    i += same;
    const start = i;
    while (i < end && buf[i]! >= 0x30 && buf[i]! <= 0x39) i++;
    const digits = i - start;
    if (digits === 0 || digits > 15) return undefined;
    if (digits !== n.end - n.at || last.compare(buf, start, i, n.at, n.end) !== 0) {
      if (headers === undefined) {
        // A copy by hand: Object.assign into a prototype-less object costs twice as much.
        headers = Object.create(null) as Record<string, string>;
        const old = prev.headers;
        for (const k in old) headers[k] = old[k]!;
      }
      headers[n.key] = buf.toString("latin1", start, i);
    }
    from = n.end;
  }
  if (end - i !== last.length - from || last.compare(buf, i, end, from) !== 0) return undefined;
  if (headers === undefined) return prev;
  return { method: prev.method, url: prev.url, headers, close: prev.close, length: Number(headers["content-length"]) };
}

let dateSecond = -1;
let dateText = "";
/** The `Date` header value, as node:http writes it (recomputed once a second). */
function httpDate(): string {
  const now = Date.now();
  const second = Math.floor(now / 1000);
  if (second !== dateSecond) {
    dateSecond = second;
    dateText = new Date(second * 1000).toUTCString();
  }
  return dateText;
}

/** Responses with a body up to this size go out as one buffer with their head. */
const JOIN_BELOW = 16 * 1024;
/** A character a latin1 head and a UTF-8 body would write differently. */
const NON_ASCII = /[\u0080-\uffff]/;

/** The front's {@link ResponseSink}: writes straight to the socket. */
class FrontResponse implements ResponseSink {
  headersSent = false;
  #head: string | undefined;
  #close: boolean;
  #ended = false;

  constructor(
    readonly conn: Connection,
    close: boolean,
  ) {
    this.#close = close;
  }

  writeHead(status: number, headers: Record<string, string>): this {
    let h = `HTTP/1.1 ${status} ${STATUS_CODES[status] ?? "unknown"}\r\n`;
    for (const k in headers) {
      const v = headers[k]!;
      // As node:http refuses them: a CR or LF would end the header early.
      if (!TOKEN.test(k) || !HEADER_VALUE_OK.test(v)) throw new TypeError(`invalid response header ${JSON.stringify(k)}: ${JSON.stringify(v)}`);
      h += `${k}: ${v}\r\n`;
    }
    if (headers["date"] === undefined) h += `Date: ${httpDate()}\r\n`;
    // Without a length only the end of the connection can end the body.
    if (headers["content-length"] === undefined) this.#close = true;
    const conn = headers["connection"];
    if (conn === undefined) {
      const ka = this.conn.front.options.keepAliveTimeout;
      h += this.#close ? "Connection: close\r\n" : ka > 0 ? `Connection: keep-alive\r\nKeep-Alive: timeout=${Math.floor(ka / 1000)}\r\n` : "Connection: keep-alive\r\n";
    } else if (conn.toLowerCase() === "close") {
      this.#close = true;
    }
    this.#head = `${h}\r\n`;
    this.headersSent = true;
    return this;
  }

  #flushHead(socket: Socket): void {
    if (this.#head !== undefined) {
      socket.write(this.#head, "latin1");
      this.#head = undefined;
    }
  }

  write(chunk: Uint8Array): boolean {
    const socket = this.conn.socket;
    if (this.#ended || socket.destroyed) return false;
    this.#flushHead(socket);
    return socket.write(chunk);
  }

  end(chunk?: Uint8Array | string): this {
    if (this.#ended) return this;
    this.#ended = true;
    const socket = this.conn.socket;
    if (!socket.destroyed) {
      const head = this.#head;
      if (typeof chunk === "string" && head !== undefined && !NON_ASCII.test(head)) {
        // A JSON body's text: one write of head and body as one string (no
        // Buffer of either in JavaScript), the head being ASCII and so the
        // same bytes in UTF-8 as in latin1.
        this.#head = undefined;
        socket.write(head + chunk, "utf8");
      } else if (typeof chunk !== "string" && head !== undefined && chunk !== undefined && chunk.length < JOIN_BELOW) {
        // One write, as node:http's corked head and body end up.
        const out = Buffer.allocUnsafe(head.length + chunk.length);
        out.write(head, 0, "latin1");
        out.set(chunk, head.length);
        this.#head = undefined;
        socket.write(out);
      } else {
        socket.cork();
        this.#flushHead(socket);
        // (A string body goes as UTF-8, the head as latin1.)
        if (chunk !== undefined && chunk.length > 0) socket.write(chunk);
        socket.uncork();
      }
    }
    this.conn.finished(this.#close);
    return this;
  }

  cork(): void {
    this.conn.socket.cork();
  }

  uncork(): void {
    this.conn.socket.uncork();
  }

  destroy(): this {
    this.#ended = true;
    this.conn.socket.destroy();
    return this;
  }
}

/** One connection while the front reads it. */
class Connection {
  /** Bytes received and not yet parsed (a head, or what follows a body). */
  #buf: Buffer | undefined;
  /** How much of `#buf` was searched for the end of a head already. */
  #scanned = 0;
  /** The last head kept on this connection (see {@link KeptHead}). */
  #kept: KeptHead | undefined;
  /** Heads parsed since the kept one last matched. */
  #headMisses = 0;
  /** The request whose body is being read. */
  #req: ParsedHead | undefined;
  #route: unknown;
  /** Where the current request's body starts in `#buf` (when it is all there). */
  #bodyStart = 0;
  /** Body bytes so far when a body spans several reads. */
  #parts: Buffer[] | undefined;
  #have = 0;
  /** A request is being served (its response is not finished). */
  #busy = false;
  /** The request being served, while it is; cancelled if the connection closes first. */
  #inflight: { cancel(): void } | undefined;
  /** The last response waits for the socket to drain before the next request is read. */
  #draining = false;
  /** Inside #pump (a synchronous response must not re-enter it). */
  #pumping = false;
  /** Handed over, closing, or closed: the front reads nothing more. */
  #gone = false;
  /** The client ended its side. */
  #ended = false;
  /** A response was finished: from then on the keep-alive timeout applies between requests. */
  #answered = false;
  /**
   * When the head being read started (`Date.now()`), or 0 between requests:
   * its first byte, as node:http counts it; before the first byte of the
   * first head, the connection's start (a silent connection times out too).
   */
  headSince = Date.now();
  /**
   * When the request whose body is being read started (its head's first
   * byte), or 0 when no body is being read: the request deadline's start.
   */
  requestSince = 0;

  constructor(
    readonly front: HttpFront<unknown>,
    readonly socket: Socket,
  ) {
    socket.on("data", this.#onData);
    socket.on("end", this.#onEnd);
    socket.on("error", this.#onError);
    socket.on("timeout", this.#onTimeout);
    socket.on("close", this.#onClose);
    const { keepAliveTimeout, keepAliveTimeoutBuffer = 0 } = front.options;
    if (keepAliveTimeout > 0) socket.setTimeout(keepAliveTimeout + keepAliveTimeoutBuffer);
  }

  /** No request in progress and nothing unparsed: shutdown may close it. */
  get idle(): boolean {
    return !this.#busy && !this.#draining && this.#buf === undefined && this.#req === undefined;
  }

  #onData = (chunk: Buffer): void => {
    if (this.#gone) return;
    // #parts is set only while a request's body spans several reads.
    if (this.#parts !== undefined) {
      this.#parts.push(chunk);
      this.#have += chunk.length;
    } else {
      this.#buf = this.#buf === undefined ? chunk : Buffer.concat([this.#buf, chunk]);
    }
    if (this.#busy || this.#draining) {
      // A pipelining client: read its next request after this response.
      this.socket.pause();
      return;
    }
    this.#pump();
  };

  #onEnd = (): void => {
    this.#ended = true;
    // As node:http (which aborts its incoming requests at a client's FIN):
    // the request being served is cancelled; its answer is still written.
    const inflight = this.#inflight;
    this.#inflight = undefined;
    inflight?.cancel();
    // The server side of a half-closed connection ends once nothing is owed.
    if (!this.#busy && !this.#draining && !this.#gone) this.#endOfInput();
  };

  #onError = (): void => {
    this.socket.destroy();
  };

  #onTimeout = (): void => {
    // As node:http: the keep-alive timeout runs from a response sent whole
    // until the next head is complete (the next head's first bytes do not
    // stop it). A first head, a body being read, a request being served and
    // a response being sent have no such deadline (headersTimeout covers
    // heads, requestTimeout bodies).
    if (this.#answered && !this.#busy && !this.#draining && this.#req === undefined) this.socket.destroy();
  };

  #onClose = (): void => {
    // The client went away before its answer: the request is cancelled.
    const inflight = this.#inflight;
    this.#inflight = undefined;
    inflight?.cancel();
    this.#leave();
  };

  /** The front reads nothing more from this connection. */
  #leave(): void {
    this.#gone = true;
    this.front.connections.delete(this);
  }

  /** Parses and serves what has arrived, one request at a time. */
  #pump(): void {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      while (!this.#busy && !this.#draining && !this.#gone) {
        if (this.#req === undefined ? !this.#readHead() : !this.#readBody()) break;
      }
    } finally {
      this.#pumping = false;
    }
    // A half-closed client is owed nothing more once its complete requests are answered.
    if (this.#ended && !this.#busy && !this.#draining && !this.#gone) this.#endOfInput();
  }

  /**
   * The client ended its side and every complete request is answered: the
   * connection ends, with node:http's 400 (a `clientError`) if the client
   * stopped in the middle of a request.
   */
  #endOfInput(): void {
    // llhttp skips CR and LF between requests: only other bytes begin one.
    const begun = this.#req !== undefined || (this.#buf !== undefined && this.#buf.some((b) => b !== 0x0d && b !== 0x0a));
    if (!begun) this.#close();
    // The error node:http's parser reports, fields included.
    else this.#clientError(Object.assign(new Error("Parse Error"), { bytesParsed: 0, code: "HPE_INVALID_EOF_STATE", reason: "Invalid EOF state" }), "HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n");
  }

  /**
   * As node:http's socketOnError: the server's `clientError` listeners (the
   * fastify app has one) answer, or else `bare` is written; then the
   * connection is destroyed.
   */
  #clientError(err: Error, bare: string): void {
    this.#leave();
    const socket = this.socket;
    if (!this.front.server.emit("clientError", err, socket)) {
      if (socket.writable) socket.write(bare, "latin1");
      socket.destroy(err);
    }
  }

  /** Reads a request head from `#buf`; false when more bytes are needed or the connection was handed over. */
  #readHead(): boolean {
    const buf = this.#buf;
    if (buf === undefined) return false;
    const max = this.front.options.maxHeaderSize;
    const end = buf.indexOf(HEAD_END, Math.max(0, this.#scanned - 3));
    if (end < 0) {
      if (buf.length > max) {
        this.#handover();
      } else {
        // As node:http: a head's time starts at its first byte (a first
        // head's at the connection's start until then).
        if (this.#scanned === 0) this.headSince = Date.now();
        this.#scanned = buf.length;
      }
      return false;
    }
    this.#scanned = 0;
    // A head that came whole in one read started now.
    this.requestSince = this.headSince === 0 ? Date.now() : this.headSince;
    this.headSince = 0;
    const req = end > max ? undefined : this.#parseHead(buf, end);
    const route = req === undefined ? undefined : this.front.options.accept(req);
    if (req === undefined || route === undefined) {
      this.#handover();
      return false;
    }
    this.#req = req;
    this.#route = route;
    const rest = end + 4;
    this.#bodyStart = rest;
    if (buf.length - rest >= req.length) return true;
    // The body spans several reads: gather them, join once.
    this.#parts = [buf.subarray(rest)];
    this.#have = buf.length - rest;
    this.#buf = undefined;
    return true;
  }

  /**
   * {@link parseRequestHead} of `buf`'s first `end` bytes; the kept head's
   * parse when the bytes are the same, or when only the digits of its
   * numeric header values differ (see {@link reuseHead}).
   */
  #parseHead(buf: Buffer, end: number): ParsedHead | undefined {
    const kept = this.#kept;
    if (kept !== undefined) {
      const again = reuseHead(kept, buf, end);
      if (again !== undefined) {
        this.#headMisses = 0;
        return again;
      }
    }
    const text = buf.toString("latin1", 0, end);
    const req = parseRequestHead(text);
    this.front.counters.headsParsed++;
    // A client whose heads differ every time (other than in their numeric
    // values) gains nothing from a kept head: after two misses in a row,
    // keep one again only every 16th head.
    if (req !== undefined && (this.#headMisses++ < 2 || (this.#headMisses & 15) === 0)) this.#kept = keepHead(buf.subarray(0, end), text, req);
    return req;
  }

  /** Serves the current request once its body is complete; false while bytes are missing. */
  #readBody(): boolean {
    const req = this.#req!;
    let body: Buffer | undefined;
    if (this.#parts === undefined) {
      // The whole body is in #buf, after the head.
      const buf = this.#buf!;
      const start = this.#bodyStart;
      body = buf.subarray(start, start + req.length);
      this.#buf = start + req.length < buf.length ? buf.subarray(start + req.length) : undefined;
    } else {
      if (this.#have < req.length) return false;
      const all = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#have);
      body = all.subarray(0, req.length);
      this.#buf = req.length < all.length ? all.subarray(req.length) : undefined;
      this.#parts = undefined;
      this.#have = 0;
    }
    const route = this.#route;
    this.#req = undefined;
    this.#route = undefined;
    this.requestSince = 0;
    this.#busy = true;
    this.front.counters.served++;
    const res = new FrontResponse(this, req.close);
    const inflight = this.front.options.serve(req, res, route, req.length === 0 ? undefined : body);
    // Still being served (not answered within serve): a close cancels it.
    if (this.#busy) this.#inflight = inflight;
    return true;
  }

  /** The response of the current request is written: read the next one, or close. */
  finished(close: boolean): void {
    this.#busy = false;
    this.#inflight = undefined;
    if (this.#gone) return;
    if (this.socket.destroyed) {
      // Reset by the client before its 'close' event: serve nothing more.
      this.#gone = true;
      return;
    }
    if (close) {
      this.#close();
      return;
    }
    this.#answered = true;
    if (this.front.closing) {
      this.#closingAfterResponse();
      return;
    }
    if (this.socket.writableNeedDrain) {
      // A client that does not read its responses is not read either.
      this.#draining = true;
      this.socket.once("drain", () => {
        this.#draining = false;
        // Shutdown may have begun while the response was being sent.
        if (this.front.closing) this.#closingAfterResponse();
        else this.#resume();
      });
    } else {
      this.#resume();
    }
  }

  /** Shutdown, a response finished: the connection closes. */
  #closingAfterResponse(): void {
    if (this.#gone) return;
    // Requests already sent behind this one get node:http's answer for a
    // closing server rather than no answer at all.
    if (this.#buf !== undefined && !this.#ended) this.#handover();
    else this.#close();
  }

  #resume(): void {
    if (this.#gone) return;
    if (this.socket.isPaused()) this.socket.resume();
    this.#pump();
  }

  /**
   * Ends the connection, after `last` if given, once what was written is
   * sent, and then drops it (as node:http's destroySoon): a client that
   * never closes its side does not hold the server's shutdown open.
   */
  #close(last?: string): void {
    this.#leave();
    const socket = this.socket;
    if (last === undefined) socket.end(() => socket.destroy());
    else socket.end(last, "latin1", () => socket.destroy());
  }

  /** Shutdown: closes the connection now if it is idle. */
  closeIfIdle(): void {
    if (!this.#gone && this.idle) this.#close();
  }

  /** Drops the connection now, busy or not (`server.closeAllConnections()`). */
  destroy(): void {
    this.#leave();
    this.socket.destroy();
  }

  /**
   * A head, or a request's body, that took too long: node:http's 408
   * (through `clientError`), then the connection ends.
   */
  timedOut(): void {
    this.#clientError(Object.assign(new Error("Request timeout"), { code: "ERR_HTTP_REQUEST_TIMEOUT" }), "HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n");
  }

  /** Gives the connection, with every byte not yet parsed, to node:http. */
  #handover(): void {
    if (this.#ended) {
      // node:http cannot take a stream whose end was read already: what
      // the client sent after its last complete request goes unanswered.
      this.#close();
      return;
    }
    const { socket, front } = this;
    this.#leave();
    front.counters.handedOver++;
    socket.pause();
    socket.removeListener("data", this.#onData);
    socket.removeListener("end", this.#onEnd);
    socket.removeListener("error", this.#onError);
    socket.removeListener("timeout", this.#onTimeout);
    socket.removeListener("close", this.#onClose);
    // node:http sets its own timeouts per request from here on.
    socket.setTimeout(0);
    if (this.#buf !== undefined) socket.unshift(this.#buf);
    this.#buf = undefined;
    front.toNode(socket);
    socket.resume();
  }
}

/**
 * The front of one `node:http` server: takes over its `connection` event
 * and gives node:http the connections it does not serve itself.
 */
export class HttpFront<R> {
  /** Open connections the front still reads. */
  readonly connections = new Set<Connection>();
  /** What the front did so far. */
  readonly counters: HttpFrontCounters = { connections: 0, served: 0, handedOver: 0, headsParsed: 0 };
  /** node:http's own `connection` listeners, called on hand-over. */
  readonly #nodeListeners: ((socket: Socket) => void)[];
  #closing = false;
  #check: NodeJS.Timeout | undefined;

  private constructor(
    readonly server: Server,
    readonly options: HttpFrontOptions<R>,
  ) {
    this.#nodeListeners = server.listeners("connection") as ((socket: Socket) => void)[];
    server.removeAllListeners("connection");
    server.on("connection", (socket: Socket) => {
      this.counters.connections++;
      if (this.#closing) {
        this.counters.handedOver++;
        this.toNode(socket);
      } else {
        this.connections.add(new Connection(this as HttpFront<unknown>, socket));
      }
    });
    // node:http's own shutdown helpers (server.close() calls the first) see
    // only the connections it parses: they must reach the front's too.
    const closeIdle = server.closeIdleConnections.bind(server);
    const closeAll = server.closeAllConnections.bind(server);
    server.closeIdleConnections = () => {
      for (const c of this.connections) c.closeIfIdle();
      closeIdle();
    };
    server.closeAllConnections = () => {
      for (const c of this.connections) c.destroy();
      closeAll();
    };
    if (options.headersTimeout > 0 || (options.requestTimeout ?? 0) > 0) {
      // As node:http does: one sweep now and then instead of a timer per request.
      this.#check = setInterval(() => this.#checkHeads(), options.checkInterval);
      this.#check.unref();
      server.once("close", () => clearInterval(this.#check));
    }
  }

  /** Gives `socket` to node:http, as if the front were not there. */
  toNode(socket: Socket): void {
    for (const listener of this.#nodeListeners) listener.call(this.server, socket);
  }

  #checkHeads(): void {
    const now = Date.now();
    const { headersTimeout, requestTimeout = 0 } = this.options;
    const heads = headersTimeout > 0 ? now - headersTimeout : 0;
    const requests = requestTimeout > 0 ? now - requestTimeout : 0;
    for (const c of this.connections) {
      if ((c.headSince !== 0 && c.headSince < heads) || (c.requestSince !== 0 && c.requestSince < requests)) c.timedOut();
    }
  }

  /**
   * Puts a front before `server`'s connections: call it before the server
   * accepts any.
   */
  static install<R>(server: Server, options: HttpFrontOptions<R>): HttpFront<R> {
    return new HttpFront(server, options);
  }

  /** True once {@link close} ran. */
  get closing(): boolean {
    return this.#closing;
  }

  /**
   * Shutdown: closes idle connections now; busy ones close once their
   * response is written. New requests on connections still open go to
   * node:http (which answers them while the server closes, as it does).
   */
  close(): void {
    this.#closing = true;
    // closeIfIdle deletes from the set: safe while iterating a Set.
    for (const c of this.connections) c.closeIfIdle();
  }
}

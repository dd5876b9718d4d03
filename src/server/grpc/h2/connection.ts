/**
 * The server side of one HTTP/2 connection (RFC 9113) over a TCP socket,
 * with just what a gRPC server needs: the preface and SETTINGS exchange,
 * HEADERS/CONTINUATION (HPACK), DATA with flow control both ways, PING,
 * RST_STREAM, WINDOW_UPDATE and GOAWAY. No server push, no priorities
 * (PRIORITY frames are read and ignored), no HTTP/1.1 upgrade.
 *
 * Why not node:http2: with a small model, its per-stream machinery (a
 * Duplex stream object per call, header objects converted both ways, the
 * event and stream plumbing) costs more CPU per call than everything else
 * the server does (bench/serving's floor-grpc, bare node:http2 with canned
 * answers, spends ~80 µs per call here; see RESULTS.md). This layer works
 * on the socket's buffers directly, as the HTTP/1.1 front does.
 *
 * Every protocol error ends the connection with GOAWAY and the error code
 * RFC 9113 names; a stream error resets only that stream. Whatever a
 * client sends, memory grows with the bytes received, never with sizes
 * announced: a frame is buffered only up to the announced
 * SETTINGS_MAX_FRAME_SIZE, a header block up to the header list limit.
 *
 * @module
 */
import type { Socket } from "node:net";

import { HpackDecoder, HpackError, type HeaderMap } from "./hpack.js";

/** Frame types (RFC 9113 §6). */
const DATA = 0x0;
const HEADERS = 0x1;
const PRIORITY = 0x2;
const RST_STREAM = 0x3;
const SETTINGS = 0x4;
const PUSH_PROMISE = 0x5;
const PING = 0x6;
const GOAWAY = 0x7;
const WINDOW_UPDATE = 0x8;
const CONTINUATION = 0x9;

/** Flags. */
const END_STREAM = 0x1;
const ACK = 0x1;
const END_HEADERS = 0x4;
const PADDED = 0x8;
const PRIORITY_FLAG = 0x20;

/** Error codes (RFC 9113 §7). */
export const H2_NO_ERROR = 0x0;
export const H2_PROTOCOL_ERROR = 0x1;
export const H2_INTERNAL_ERROR = 0x2;
const FLOW_CONTROL_ERROR = 0x3;
const STREAM_CLOSED = 0x5;
const FRAME_SIZE_ERROR = 0x6;
export const H2_REFUSED_STREAM = 0x7;
export const H2_CANCEL = 0x8;
const COMPRESSION_ERROR = 0x9;
const ENHANCE_YOUR_CALM = 0xb;

const PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

/** What this server announces, and the flow-control policy behind it. */
const MAX_FRAME_SIZE = 1 << 20;
const STREAM_WINDOW = 4 << 20;
const CONNECTION_WINDOW = 16 << 20;
/** Window credit given back once this much was read (stream: under half the default 65 535, which applies until our SETTINGS are acknowledged). */
const STREAM_CREDIT_AT = 32 << 10;
const CONNECTION_CREDIT_AT = 1 << 20;
const MAX_HEADER_LIST = 64 << 10;
const MAX_WINDOW = 2 ** 31 - 1;
/** More open streams than this on one connection are refused (REFUSED_STREAM). */
const MAX_OPEN_STREAMS = 10_000;

/** Options of an {@link H2Connection}. */
export interface H2ConnectionOptions {
  /** A new stream's request headers arrived. */
  onStream(stream: H2Stream, headers: HeaderMap, endStream: boolean): void;
  /** The connection is gone (every open stream was reset first). */
  onClose?(conn: H2Connection): void;
  /** A connection with no stream open for this many ms gets GOAWAY and is closed (0: never). */
  idleTimeoutMs?: number;
}

/** What a stream's request goes to. */
export interface H2StreamHandler {
  /**
   * A DATA frame's payload: a view of the socket's chunk (Node reads into a
   * fresh buffer each time, so keeping the view is safe; it pins the chunk).
   */
  data(chunk: Buffer): void;
  /** The client ended its side (END_STREAM). */
  end(): void;
  /** The stream was reset (by the client, a stream error, or the connection going away) before this side ended it. */
  reset(code: number): void;
}

/**
 * One stream of a connection: its request arrives through the callbacks
 * the gRPC layer sets; its answer goes out through the send methods.
 */
export class H2Stream {
  /** What reads the request (the gRPC call); set by `onStream`. */
  handler: H2StreamHandler | undefined = undefined;
  /** True once this side sent END_STREAM or a reset: nothing more can be sent. */
  localClosed = false;
  /** True once the client's side ended (END_STREAM or reset). */
  remoteClosed = false;
  /** How much this side may still send (the client's window for this stream). */
  sendWindow: number;
  /** Frames waiting for window credit, in order. */
  pending: { data: Buffer; end: boolean; trailers: Buffer | undefined }[] | undefined = undefined;
  /** Request bytes read since the last credit given back. */
  unacked = 0;

  constructor(
    readonly conn: H2Connection,
    readonly id: number,
    sendWindow: number,
  ) {
    this.sendWindow = sendWindow;
  }

  /** True when nothing more can be sent. */
  get closed(): boolean {
    return this.localClosed;
  }

  /** Sends a header block (HEADERS, continued if larger than a frame). */
  sendHeaders(block: Buffer, endStream: boolean): void {
    if (this.localClosed) return;
    if (endStream && this.pending !== undefined) {
      // trailers go after the data waiting for window credit
      this.pending.push({ data: EMPTY, end: true, trailers: block });
      return;
    }
    this.conn.writeHeaders(this.id, block, endStream);
    if (endStream) this.conn.localEnd(this);
  }

  /** Sends data, then (when given) the trailers that end the stream. */
  sendData(data: Buffer, trailers?: Buffer): void {
    if (this.localClosed) return;
    if (this.pending !== undefined) {
      this.pending.push({ data, end: false, trailers });
      return;
    }
    this.conn.sendData(this, data, trailers);
  }

  /** Sends the response headers, one message and the trailers, as one write where flow control allows. */
  sendUnary(headers: Buffer, data: Buffer, trailers: Buffer): void {
    if (this.localClosed) return;
    this.conn.sendUnary(this, headers, data, trailers);
  }

  /**
   * Resets the stream (RST_STREAM): after a complete answer (code
   * NO_ERROR), it tells a client still sending to stop.
   */
  reset(code: number): void {
    if (this.localClosed && this.remoteClosed) return;
    this.conn.writeFrame(RST_STREAM, 0, this.id, u32(code));
    this.remoteClosed = true;
    this.conn.localEnd(this);
    this.conn.forget(this);
  }
}

const EMPTY = Buffer.alloc(0);

function u32(v: number): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(v >>> 0, 0);
  return b;
}

/** The server side of one HTTP/2 connection. */
export class H2Connection {
  readonly #socket: Socket;
  readonly #opts: H2ConnectionOptions;
  readonly #decoder = new HpackDecoder(4096, MAX_HEADER_LIST);
  readonly #streams = new Map<number, H2Stream>();
  /** Bytes read but not yet a whole frame (or the preface), as they came: joined once enough is in. */
  #parts: Buffer[] = [];
  #size = 0;
  /** Bytes needed before the next frame can be read: its header, then the whole frame. */
  #need = 9;
  #prefaceSeen = false;
  #lastStreamId = 0;
  /** A header block in progress (HEADERS without END_HEADERS, then CONTINUATIONs). */
  #headerBlock: { id: number; endStream: boolean; parts: Buffer[]; size: number } | undefined;
  /** The client's settings. */
  #peerMaxFrame = 16384;
  #peerInitialWindow = 65535;
  /** How much this side may still send on the connection. */
  #sendWindow = 65535;
  /** Streams with data waiting for connection-level credit. */
  readonly #blocked = new Set<H2Stream>();
  #connUnacked = 0;
  /** Output frames of this tick, written together. */
  #out: Buffer[] = [];
  #outScheduled = false;
  #goaway = false;
  #closed = false;
  #resets = 0;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(socket: Socket, opts: H2ConnectionOptions) {
    this.#socket = socket;
    this.#opts = opts;
    socket.setNoDelay(true);
    socket.on("data", (chunk: Buffer) => this.#onData(chunk));
    socket.on("close", () => this.#onSocketClose());
    socket.on("error", () => {});
    socket.on("end", () => socket.end());
    // Our settings, and the connection window raised past the default 65 535.
    const s = Buffer.allocUnsafe(18);
    s.writeUInt16BE(0x2, 0); // ENABLE_PUSH
    s.writeUInt32BE(0, 2);
    s.writeUInt16BE(0x4, 6); // INITIAL_WINDOW_SIZE
    s.writeUInt32BE(STREAM_WINDOW, 8);
    s.writeUInt16BE(0x5, 12); // MAX_FRAME_SIZE
    s.writeUInt32BE(MAX_FRAME_SIZE, 14);
    const l = Buffer.allocUnsafe(6);
    l.writeUInt16BE(0x6, 0); // MAX_HEADER_LIST_SIZE
    l.writeUInt32BE(MAX_HEADER_LIST, 2);
    this.writeFrame(SETTINGS, 0, 0, Buffer.concat([s, l]));
    this.writeFrame(WINDOW_UPDATE, 0, 0, u32(CONNECTION_WINDOW - 65535));
    this.#idle();
  }

  /** Starts the idle timer (no stream open). */
  #idle(): void {
    const ms = this.#opts.idleTimeoutMs ?? 0;
    if (ms <= 0 || this.#closed || this.#idleTimer !== undefined) return;
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#streams.size === 0) this.shutdown();
    }, ms);
    this.#idleTimer.unref();
  }

  #busy(): void {
    if (this.#idleTimer === undefined) return;
    clearTimeout(this.#idleTimer);
    this.#idleTimer = undefined;
  }

  /** Streams open now. */
  get openStreams(): number {
    return this.#streams.size;
  }

  /** The remote address, for logs. */
  get remote(): string {
    return `${this.#socket.remoteAddress ?? "?"}:${this.#socket.remotePort ?? "?"}`;
  }

  /**
   * Starts a graceful close: GOAWAY with the last stream taken, so the
   * client opens no more; the socket ends once the open streams are done.
   */
  shutdown(): void {
    if (this.#goaway || this.#closed) return;
    this.#goaway = true;
    this.#sendGoaway(H2_NO_ERROR);
    if (this.#streams.size === 0) this.#endSocket();
  }

  /** Ends the connection now: open streams are reset (their handlers' reset runs). */
  destroy(): void {
    if (this.#closed) return;
    this.#resetAll(H2_CANCEL);
    this.#socket.destroy();
  }

  // ------------------------------------------------------------------ output

  /** Queues one frame (written with the others of this tick). */
  writeFrame(type: number, flags: number, id: number, payload: Buffer): void {
    const h = Buffer.allocUnsafe(9 + payload.length);
    h.writeUIntBE(payload.length, 0, 3);
    h[3] = type;
    h[4] = flags;
    h.writeUInt32BE(id, 5);
    payload.copy(h, 9);
    this.#push(h);
  }

  #push(b: Buffer): void {
    if (this.#closed) return;
    this.#out.push(b);
    if (!this.#outScheduled) {
      this.#outScheduled = true;
      process.nextTick(flush, this);
    }
  }

  /** Writes what this tick queued, in one write. */
  flush(): void {
    this.#outScheduled = false;
    const out = this.#out;
    if (out.length === 0 || this.#closed) return;
    this.#out = [];
    this.#socket.write(out.length === 1 ? out[0]! : Buffer.concat(out));
  }

  /** A header block as HEADERS (+ CONTINUATION frames past the client's frame size). */
  writeHeaders(id: number, block: Buffer, endStream: boolean): void {
    const max = this.#peerMaxFrame;
    if (block.length <= max) {
      this.writeFrame(HEADERS, END_HEADERS | (endStream ? END_STREAM : 0), id, block);
      return;
    }
    this.writeFrame(HEADERS, endStream ? END_STREAM : 0, id, block.subarray(0, max));
    for (let at = max; at < block.length; at += max) {
      const last = at + max >= block.length;
      this.writeFrame(CONTINUATION, last ? END_HEADERS : 0, id, block.subarray(at, Math.min(at + max, block.length)));
    }
  }

  /** Headers, one DATA frame and trailers in one buffer: a small unary answer's common case. */
  sendUnary(s: H2Stream, headers: Buffer, data: Buffer, trailers: Buffer): void {
    const n = data.length;
    const max = this.#peerMaxFrame;
    if (n > s.sendWindow || n > this.#sendWindow || n > max || headers.length > max || trailers.length > max) {
      this.writeHeaders(s.id, headers, false);
      this.sendData(s, data, trailers);
      return;
    }
    s.sendWindow -= n;
    this.#sendWindow -= n;
    const b = Buffer.allocUnsafe(27 + headers.length + n + trailers.length);
    let at = frameHeader(b, 0, headers.length, HEADERS, END_HEADERS, s.id);
    at += headers.copy(b, at);
    at = frameHeader(b, at, n, DATA, 0, s.id);
    at += data.copy(b, at);
    at = frameHeader(b, at, trailers.length, HEADERS, END_HEADERS | END_STREAM, s.id);
    trailers.copy(b, at);
    this.#push(b);
    this.localEnd(s);
  }

  /** Sends as much of `data` as the windows allow; the rest (and the trailers) wait for credit. */
  sendData(s: H2Stream, data: Buffer, trailers: Buffer | undefined): void {
    let at = 0;
    const max = this.#peerMaxFrame;
    while (at < data.length) {
      const room = Math.min(s.sendWindow, this.#sendWindow, max, data.length - at);
      if (room <= 0) {
        (s.pending ??= []).push({ data: data.subarray(at), end: false, trailers });
        if (this.#sendWindow <= 0) this.#blocked.add(s);
        return;
      }
      this.writeFrame(DATA, 0, s.id, data.subarray(at, at + room));
      s.sendWindow -= room;
      this.#sendWindow -= room;
      at += room;
    }
    if (trailers !== undefined) {
      this.writeHeaders(s.id, trailers, true);
      this.localEnd(s);
    }
  }

  /** Retries the streams waiting for window credit. */
  #drainPending(streams: Iterable<H2Stream>): void {
    for (const s of streams) {
      const queue = s.pending;
      if (queue === undefined) continue;
      s.pending = undefined;
      this.#blocked.delete(s);
      while (queue.length > 0 && s.pending === undefined && !s.localClosed) {
        const item = queue.shift()!;
        if (item.end && item.data.length === 0 && item.trailers !== undefined) {
          this.writeHeaders(s.id, item.trailers, true);
          this.localEnd(s);
        } else {
          this.sendData(s, item.data, item.trailers);
        }
      }
      // sendData may have queued a new remainder: what was behind it stays behind it
      const again = s.pending as H2Stream["pending"];
      if (again !== undefined && queue.length > 0) again.push(...queue);
    }
  }

  /** This side ended the stream: it is forgotten once both sides have. */
  localEnd(s: H2Stream): void {
    s.localClosed = true;
    s.pending = undefined;
    this.#blocked.delete(s);
    if (s.remoteClosed) this.forget(s);
  }

  /** Drops a finished stream. */
  forget(s: H2Stream): void {
    if (this.#streams.get(s.id) === s) this.#streams.delete(s.id);
    if (this.#streams.size === 0) {
      if (this.#goaway) this.#endSocket();
      else this.#idle();
    }
  }

  // ------------------------------------------------------------------ input

  #onData(chunk: Buffer): void {
    this.#parts.push(chunk);
    this.#size += chunk.length;
    if (this.#prefaceSeen && this.#size < this.#need) return;
    // A large frame arrives in many reads: the reads are joined once it is whole, not at each read.
    const buf = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#size);
    this.#parts = [];
    this.#size = 0;
    this.#need = 9;
    let pos = 0;
    if (!this.#prefaceSeen) {
      const n = Math.min(buf.length, PREFACE.length);
      if (buf.compare(PREFACE, 0, n, 0, n) !== 0) {
        // Not HTTP/2 with prior knowledge (an HTTP/1.x client, or noise): nothing to answer in HTTP/2.
        this.#closed = true;
        this.#socket.destroy();
        return;
      }
      if (buf.length < PREFACE.length) {
        this.#parts.push(buf);
        this.#size = buf.length;
        return;
      }
      this.#prefaceSeen = true;
      pos = PREFACE.length;
    }
    while (!this.#closed && buf.length - pos >= 9) {
      const len = buf.readUIntBE(pos, 3);
      if (len > MAX_FRAME_SIZE) {
        this.#fatal(FRAME_SIZE_ERROR, `a frame of ${len} octets (the limit is ${MAX_FRAME_SIZE})`);
        return;
      }
      if (buf.length - pos < 9 + len) {
        this.#need = 9 + len;
        break;
      }
      const type = buf[pos + 3]!;
      const flags = buf[pos + 4]!;
      const id = buf.readUInt32BE(pos + 5) & 0x7fffffff;
      const payload = buf.subarray(pos + 9, pos + 9 + len);
      pos += 9 + len;
      this.#frame(type, flags, id, payload);
    }
    if (this.#closed || pos >= buf.length) return;
    // Keep the partial frame: a small tail is copied (it would pin the whole chunk), a large one kept as a view.
    const rest = pos === 0 ? buf : buf.length - pos < 4096 ? Buffer.from(buf.subarray(pos)) : buf.subarray(pos);
    this.#parts.push(rest);
    this.#size = rest.length;
  }

  #frame(type: number, flags: number, id: number, payload: Buffer): void {
    if (this.#headerBlock !== undefined && type !== CONTINUATION) {
      this.#fatal(H2_PROTOCOL_ERROR, "a frame between HEADERS and its CONTINUATION");
      return;
    }
    switch (type) {
      case DATA:
        this.#data(flags, id, payload);
        return;
      case HEADERS:
        this.#headers(flags, id, payload);
        return;
      case CONTINUATION:
        this.#continuation(flags, id, payload);
        return;
      case PRIORITY:
        if (id === 0) this.#fatal(H2_PROTOCOL_ERROR, "PRIORITY on stream 0");
        else if (payload.length !== 5) this.#streamError(id, FRAME_SIZE_ERROR);
        return;
      case RST_STREAM:
        this.#rstStream(id, payload);
        return;
      case SETTINGS:
        this.#settings(flags, id, payload);
        return;
      case PUSH_PROMISE:
        this.#fatal(H2_PROTOCOL_ERROR, "PUSH_PROMISE from a client");
        return;
      case PING:
        if (id !== 0) this.#fatal(H2_PROTOCOL_ERROR, "PING on a stream");
        else if (payload.length !== 8) this.#fatal(FRAME_SIZE_ERROR, "PING of a length other than 8");
        else if ((flags & ACK) === 0) this.writeFrame(PING, ACK, 0, Buffer.from(payload));
        return;
      case GOAWAY:
        if (id !== 0) this.#fatal(H2_PROTOCOL_ERROR, "GOAWAY on a stream");
        else this.shutdown();
        return;
      case WINDOW_UPDATE:
        this.#windowUpdate(id, payload);
        return;
      default:
      // Unknown frame types are ignored (RFC 9113 §4.1).
    }
  }

  /** The payload without its padding (PADDED flag), or undefined when the padding is invalid. */
  #unpad(flags: number, payload: Buffer, id: number): Buffer | undefined {
    if ((flags & PADDED) === 0) return payload;
    if (payload.length < 1) {
      this.#fatal(FRAME_SIZE_ERROR, "a padded frame without its pad length");
      return undefined;
    }
    const pad = payload[0]!;
    if (pad >= payload.length) {
      this.#fatal(H2_PROTOCOL_ERROR, `padding past the end of a frame on stream ${id}`);
      return undefined;
    }
    return payload.subarray(1, payload.length - pad);
  }

  #data(flags: number, id: number, payload: Buffer): void {
    if (id === 0) {
      this.#fatal(H2_PROTOCOL_ERROR, "DATA on stream 0");
      return;
    }
    // Connection-level credit counts the whole frame, padding included, whatever happens to the stream.
    this.#connUnacked += payload.length;
    if (this.#connUnacked >= CONNECTION_CREDIT_AT) {
      this.writeFrame(WINDOW_UPDATE, 0, 0, u32(this.#connUnacked));
      this.#connUnacked = 0;
    }
    const s = this.#streams.get(id);
    if (s === undefined || s.remoteClosed) {
      if (id > this.#lastStreamId) this.#fatal(H2_PROTOCOL_ERROR, `DATA on idle stream ${id}`);
      else this.#streamError(id, STREAM_CLOSED);
      return;
    }
    const body = this.#unpad(flags, payload, id);
    if (body === undefined) return;
    const end = (flags & END_STREAM) !== 0;
    if (!end) {
      s.unacked += payload.length;
      if (s.unacked >= STREAM_CREDIT_AT) {
        this.writeFrame(WINDOW_UPDATE, 0, id, u32(s.unacked));
        s.unacked = 0;
      }
    }
    if (body.length > 0) s.handler?.data(body);
    if (end) this.#remoteEnd(s);
  }

  #remoteEnd(s: H2Stream): void {
    s.remoteClosed = true;
    s.handler?.end();
    if (s.localClosed) this.forget(s);
  }

  #headers(flags: number, id: number, payload: Buffer): void {
    if (id === 0) {
      this.#fatal(H2_PROTOCOL_ERROR, "HEADERS on stream 0");
      return;
    }
    let block = this.#unpad(flags, payload, id);
    if (block === undefined) return;
    if (flags & PRIORITY_FLAG) {
      if (block.length < 5) {
        this.#fatal(FRAME_SIZE_ERROR, "HEADERS too short for its priority fields");
        return;
      }
      block = block.subarray(5);
    }
    const endStream = (flags & END_STREAM) !== 0;
    if (flags & END_HEADERS) this.#headerBlockDone(id, block, endStream);
    else this.#headerBlock = { id, endStream, parts: [Buffer.from(block)], size: block.length };
  }

  #continuation(flags: number, id: number, payload: Buffer): void {
    const hb = this.#headerBlock;
    if (hb === undefined || hb.id !== id) {
      this.#fatal(H2_PROTOCOL_ERROR, "CONTINUATION without its HEADERS");
      return;
    }
    hb.size += payload.length;
    if (hb.size > MAX_HEADER_LIST * 2) {
      this.#fatal(ENHANCE_YOUR_CALM, `a header block over ${MAX_HEADER_LIST * 2} octets`);
      return;
    }
    hb.parts.push(Buffer.from(payload));
    if (flags & END_HEADERS) {
      this.#headerBlock = undefined;
      this.#headerBlockDone(id, Buffer.concat(hb.parts, hb.size), hb.endStream);
    }
  }

  #headerBlockDone(id: number, block: Buffer, endStream: boolean): void {
    // Every block is decoded, even one for a stream refused below: the HPACK table must stay in step.
    let headers: HeaderMap;
    try {
      headers = this.#decoder.decode(block);
    } catch (e) {
      this.#fatal(COMPRESSION_ERROR, e instanceof HpackError ? e.message : String(e));
      return;
    }
    const existing = this.#streams.get(id);
    if (existing !== undefined) {
      // Trailers from the client: they must end the stream.
      if (!endStream || existing.remoteClosed) this.#fatal(H2_PROTOCOL_ERROR, `a second header block on stream ${id} that does not end it`);
      else this.#remoteEnd(existing);
      return;
    }
    if (id % 2 === 0 || id <= this.#lastStreamId) {
      this.#fatal(H2_PROTOCOL_ERROR, `HEADERS opening stream ${id}, not a new odd stream id`);
      return;
    }
    this.#lastStreamId = id;
    if (this.#goaway || this.#streams.size >= MAX_OPEN_STREAMS) {
      this.writeFrame(RST_STREAM, 0, id, u32(H2_REFUSED_STREAM));
      return;
    }
    const s = new H2Stream(this, id, this.#peerInitialWindow);
    this.#streams.set(id, s);
    this.#busy();
    this.#opts.onStream(s, headers, endStream);
    if (endStream && !s.remoteClosed) this.#remoteEnd(s);
  }

  #rstStream(id: number, payload: Buffer): void {
    if (id === 0) {
      this.#fatal(H2_PROTOCOL_ERROR, "RST_STREAM on stream 0");
      return;
    }
    if (payload.length !== 4) {
      this.#fatal(FRAME_SIZE_ERROR, "RST_STREAM of a length other than 4");
      return;
    }
    if (id > this.#lastStreamId) {
      this.#fatal(H2_PROTOCOL_ERROR, `RST_STREAM on idle stream ${id}`);
      return;
    }
    // A flood of resets is an attack (CVE-2023-44487, "rapid reset"): past a budget, the connection goes.
    if (++this.#resets > 10_000) {
      this.#fatal(ENHANCE_YOUR_CALM, "too many stream resets");
      return;
    }
    const s = this.#streams.get(id);
    if (s === undefined) return;
    this.#streams.delete(id);
    this.#drop(s, payload.readUInt32BE(0));
    if (this.#streams.size === 0) {
      if (this.#goaway) this.#endSocket();
      else this.#idle();
    }
  }

  #settings(flags: number, id: number, payload: Buffer): void {
    if (id !== 0) {
      this.#fatal(H2_PROTOCOL_ERROR, "SETTINGS on a stream");
      return;
    }
    if (flags & ACK) {
      if (payload.length !== 0) this.#fatal(FRAME_SIZE_ERROR, "a SETTINGS acknowledgement with a payload");
      return;
    }
    if (payload.length % 6 !== 0) {
      this.#fatal(FRAME_SIZE_ERROR, "SETTINGS of a length that is not a multiple of 6");
      return;
    }
    for (let at = 0; at < payload.length; at += 6) {
      const key = payload.readUInt16BE(at);
      const value = payload.readUInt32BE(at + 2);
      if (key === 0x2 && value > 1) {
        this.#fatal(H2_PROTOCOL_ERROR, "ENABLE_PUSH other than 0 or 1");
        return;
      }
      if (key === 0x4) {
        if (value > MAX_WINDOW) {
          this.#fatal(FLOW_CONTROL_ERROR, "INITIAL_WINDOW_SIZE over 2^31-1");
          return;
        }
        // A new initial window moves every open stream's window by the difference (RFC 9113 §6.9.2).
        const delta = value - this.#peerInitialWindow;
        this.#peerInitialWindow = value;
        for (const s of this.#streams.values()) s.sendWindow += delta;
      } else if (key === 0x5) {
        if (value < 16384 || value > 16777215) {
          this.#fatal(H2_PROTOCOL_ERROR, "MAX_FRAME_SIZE out of range");
          return;
        }
        this.#peerMaxFrame = value;
      }
      // HEADER_TABLE_SIZE: this side's encoder never indexes, so any size suits it. The rest is advisory.
    }
    this.writeFrame(SETTINGS, ACK, 0, EMPTY);
    this.#drainPending([...this.#streams.values()]);
  }

  #windowUpdate(id: number, payload: Buffer): void {
    if (payload.length !== 4) {
      this.#fatal(FRAME_SIZE_ERROR, "WINDOW_UPDATE of a length other than 4");
      return;
    }
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) {
        this.#fatal(H2_PROTOCOL_ERROR, "a WINDOW_UPDATE of 0 on the connection");
        return;
      }
      this.#sendWindow += inc;
      if (this.#sendWindow > MAX_WINDOW) {
        this.#fatal(FLOW_CONTROL_ERROR, "the connection window past 2^31-1");
        return;
      }
      if (this.#blocked.size > 0) this.#drainPending([...this.#blocked]);
      return;
    }
    const s = this.#streams.get(id);
    if (s === undefined) return;
    if (inc === 0) {
      this.#streamError(id, H2_PROTOCOL_ERROR);
      return;
    }
    s.sendWindow += inc;
    if (s.sendWindow > MAX_WINDOW) {
      this.#streamError(id, FLOW_CONTROL_ERROR);
      return;
    }
    if (s.pending !== undefined) this.#drainPending([s]);
  }

  // ------------------------------------------------------------------ errors and the end

  /** Resets one stream for a stream error; its handler's reset runs. */
  #streamError(id: number, code: number): void {
    this.writeFrame(RST_STREAM, 0, id, u32(code));
    const s = this.#streams.get(id);
    if (s === undefined) return;
    this.#streams.delete(id);
    this.#drop(s, code);
  }

  /** Closes a stream both ways without a frame; its handler's reset runs if this side had not ended it. */
  #drop(s: H2Stream, code: number): void {
    const wasOpen = !s.localClosed;
    s.localClosed = true;
    s.remoteClosed = true;
    s.pending = undefined;
    this.#blocked.delete(s);
    if (wasOpen) s.handler?.reset(code);
  }

  /** A connection error: GOAWAY with the code and a reason, then the socket ends. */
  #fatal(code: number, reason: string): void {
    if (this.#closed) return;
    this.#sendGoaway(code, reason);
    this.flush();
    this.#resetAll(code);
    this.#endSocket();
  }

  #sendGoaway(code: number, reason = ""): void {
    const p = Buffer.allocUnsafe(8 + Buffer.byteLength(reason));
    p.writeUInt32BE(this.#lastStreamId, 0);
    p.writeUInt32BE(code, 4);
    p.write(reason, 8);
    this.writeFrame(GOAWAY, 0, 0, p);
  }

  #resetAll(code: number): void {
    const open = [...this.#streams.values()];
    this.#streams.clear();
    for (const s of open) this.#drop(s, code);
  }

  #endSocket(): void {
    if (this.#closed) return;
    this.flush();
    this.#closed = true;
    this.#socket.end();
    // A client that never reads its side must not hold the socket forever.
    setTimeout(() => this.#socket.destroy(), 5000).unref();
  }

  #onSocketClose(): void {
    this.#closed = true;
    this.#busy();
    this.#resetAll(H2_CANCEL);
    this.#opts.onClose?.(this);
  }
}

function flush(c: H2Connection): void {
  c.flush();
}

/** Writes a frame header at `at`; returns the offset after it. */
function frameHeader(b: Buffer, at: number, len: number, type: number, flags: number, id: number): number {
  b[at] = (len >>> 16) & 0xff;
  b[at + 1] = (len >>> 8) & 0xff;
  b[at + 2] = len & 0xff;
  b[at + 3] = type;
  b[at + 4] = flags;
  b.writeUInt32BE(id, at + 5);
  return at + 9;
}

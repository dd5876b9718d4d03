/**
 * The bytes of a message in a thread instance's ring (see `thread-ring.ts`):
 * the hot path's messages (an `execute` call, its reply, a sender's `send`)
 * in a compact binary form, since JSON's text costs several times a
 * request's own work; any other message as JSON. A message that neither
 * can hold (a `bigint` address, a value JSON would alter) encodes to
 * `undefined`, and the ring sends it by `postMessage` instead.
 *
 * Numbers are little-endian; a string is its UTF-8 byte length (u32) and
 * bytes; the first byte is the message's kind ({@link Kind}).
 *
 * @module
 */
import { DTYPES, type DType } from "../dtype.js";
import type { WireError, WireResponse, WireTensor } from "./thread-wire.js";
import { sized } from "./sized-array.js";

/** The first byte of an encoded message. */
const enum Kind {
  Json = 0,
  Execute = 1,
  ExecuteReply = 2,
  Send = 3,
}

/** Thrown inside {@link encodeInto} for a message the binary form cannot hold. */
const UNFIT = Symbol("unfit");

/** Strings of up to this many UTF-16 units (encoding) or bytes (decoding) are kept ({@link Out.str}, {@link In.str}). */
const SHORT = 48;
/** How many encoded short strings are kept before the cache starts over. */
const KEPT = 256;
const encoded = new Map<string, Buffer>();
/** How many decoded short strings are kept (round robin): a message's names and model. */
const RECENT = 8;
const recentBytes: Uint8Array[] = Array.from({ length: RECENT }, () => new Uint8Array(0));
const recentStrings: string[] = Array.from({ length: RECENT }, () => "");
let recentNext = 0;

/** Thrown inside {@link encodeInto} when the message does not fit before the end it was given. */
const NO_ROOM = Symbol("no room");

/**
 * Where a message is encoded: a window of a buffer (a ring's data, or
 * {@link encodeMessage}'s scratch), which it must fit in ({@link NO_ROOM}
 * otherwise). Numbers go through a `DataView` (which the optimizer inlines;
 * `Buffer`'s `writeDoubleLE` copies through a scratch array byte by byte).
 */
class Out {
  buf: Buffer = Buffer.alloc(0);
  view: DataView = new DataView(new ArrayBuffer(0));
  at = 0;
  /** Bytes from `at` up to here are free for this message. */
  end = 0;

  /** Encodes into `buf` (seen through `view`) from `at`, up to `end`. */
  target(buf: Buffer, view: DataView, at: number, end: number): void {
    this.buf = buf;
    this.view = view;
    this.at = at;
    this.end = end;
  }

  #room(n: number): void {
    if (this.at + n > this.end) throw NO_ROOM;
  }

  u8(v: number): void {
    this.#room(1);
    this.buf[this.at++] = v;
  }

  u32(v: number): void {
    this.#room(4);
    this.view.setUint32(this.at, v, true);
    this.at += 4;
  }

  f64(v: number): void {
    this.#room(8);
    this.view.setFloat64(this.at, v, true);
    this.at += 8;
  }

  str(s: string): void {
    if (s.length === 0) {
      this.u32(0);
      return;
    }
    let n: number;
    if (s.length <= SHORT) {
      // Names come again and again: their bytes are kept, and copied by hand (no native UTF-8 encoder call).
      let b = encoded.get(s);
      if (b === undefined) {
        if (encoded.size >= KEPT) encoded.clear();
        encoded.set(s, (b = Buffer.from(s, "utf8")));
      }
      n = b.length;
      this.#room(4 + n);
      const buf = this.buf;
      const at = this.at + 4;
      for (let k = 0; k < n; k++) buf[at + k] = b[k]!;
    } else {
      // At most 3 bytes per UTF-16 unit; where that much room is not left, the exact length decides.
      if (this.at + 4 + s.length * 3 > this.end) this.#room(4 + Buffer.byteLength(s, "utf8"));
      n = this.buf.write(s, this.at + 4, "utf8");
    }
    this.view.setUint32(this.at, n, true);
    this.at += 4 + n;
  }

  /** Raw bytes: their length (u32), then the bytes. */
  bytes(b: Uint8Array): void {
    const n = b.byteLength;
    this.#room(4 + n);
    this.view.setUint32(this.at, n, true);
    this.buf.set(b, this.at + 4);
    this.at += 4 + n;
  }

  /** An optional string: a flag byte, then the string. */
  optStr(s: string | undefined): void {
    if (s === undefined) this.u8(0);
    else {
      this.u8(1);
      this.str(s);
    }
  }
}

/** A cursor over a message's bytes in the ring (one, reused: decoding runs no code that decodes). */
class In {
  buf: Buffer = Buffer.alloc(0);
  view: DataView = new DataView(new ArrayBuffer(0));
  at = 0;

  u8(): number {
    return this.buf[this.at++]!;
  }

  u32(): number {
    const v = this.view.getUint32(this.at, true);
    this.at += 4;
    return v;
  }

  f64(): number {
    const v = this.view.getFloat64(this.at, true);
    this.at += 8;
    return v;
  }

  str(): string {
    const n = this.u32();
    const at = this.at;
    this.at = at + n;
    if (n === 0) return "";
    if (n > SHORT) return this.buf.toString("utf8", at, at + n);
    // A short string decoded lately, byte for byte: the same string again (no native UTF-8 decoder call).
    const buf = this.buf;
    for (let e = 0; e < RECENT; e++) {
      const b = recentBytes[e]!;
      if (b.length !== n) continue;
      let k = 0;
      while (k < n && b[k] === buf[at + k]) k++;
      if (k === n) return recentStrings[e]!;
    }
    const s = buf.toString("utf8", at, at + n);
    const slot = recentNext;
    recentNext = (slot + 1) % RECENT;
    // A copy (a Buffer's slice() would be a view of the ring, whose bytes change).
    const kept = new Uint8Array(n);
    for (let k = 0; k < n; k++) kept[k] = buf[at + k]!;
    recentBytes[slot] = kept;
    recentStrings[slot] = s;
    return s;
  }

  optStr(): string | undefined {
    return this.u8() === 0 ? undefined : this.str();
  }

  /** Raw bytes, copied out of the ring (whose slot is reused once read) into memory of their own. */
  bytes(): Uint8Array {
    const n = this.u32();
    const b = new Uint8Array(n);
    const buf = this.buf;
    const at = this.at;
    // A few bytes (a small output) are copied faster by hand than through a subarray.
    if (n <= 64) for (let k = 0; k < n; k++) b[k] = buf[at + k]!;
    else buf.copy(b, 0, at, at + n);
    this.at = at + n;
    return b;
  }
}

/** The window that {@link encodeInto} fills. */
const out = new Out();
const cursor = new In();

/** A dtype on the wire: its index in {@link DTYPES}. */
const DTYPE_INDEX = new Map<DType, number>(DTYPES.map((d, i) => [d, i]));

function putDtype(o: Out, d: DType): void {
  const i = DTYPE_INDEX.get(d);
  if (i === undefined) throw UNFIT;
  o.u8(i);
}

function getDtype(i: In): DType {
  return DTYPES[i.u8()]!;
}

function putShape(o: Out, shape: readonly number[]): void {
  o.u32(shape.length);
  for (let k = 0; k < shape.length; k++) o.f64(shape[k]!);
}

/** The last shape decoded: requests and responses mostly repeat their shapes, and freezing a new array costs more than reading one. */
let lastShape: readonly number[] = Object.freeze([]);

/** A shape, frozen (as a tensor keeps it: no copy when it becomes one), the last one again when the same. */
function getShape(i: In): readonly number[] {
  const n = i.u32();
  const last = lastShape;
  if (n === last.length) {
    let same = true;
    for (let k = 0; k < n; k++) {
      if (i.view.getFloat64(i.at + 8 * k, true) !== last[k]) {
        same = false;
        break;
      }
    }
    if (same) {
      i.at += 8 * n;
      return last;
    }
  }
  const shape: number[] = [];
  for (let k = 0; k < n; k++) shape.push(i.f64());
  return (lastShape = Object.freeze(shape));
}

function putTensor(o: Out, t: WireTensor): void {
  o.optStr(t.name);
  if ("slot" in t) {
    o.u8(3);
    o.u32(t.slot);
    putDtype(o, t.dtype);
    putShape(o, t.shape);
    return;
  }
  if ("data" in t) {
    o.u8(2);
    putDtype(o, t.dtype);
    putShape(o, t.shape);
    o.bytes(t.data);
    return;
  }
  if ("base64" in t) {
    o.u8(1);
    putShape(o, t.shape);
    o.u32(t.lengths.length);
    for (let k = 0; k < t.lengths.length; k++) o.u32(t.lengths[k]!);
    o.str(t.base64);
    return;
  }
  if (typeof t.address !== "number") throw UNFIT;
  o.u8(0);
  o.f64(t.address);
}

function getTensor(i: In): WireTensor {
  const name = i.optStr();
  const form = i.u8();
  if (form === 3) {
    const slot = i.u32();
    const dtype = getDtype(i);
    return { name, slot, dtype, shape: getShape(i) };
  }
  if (form === 0) return { name, address: i.f64() };
  if (form === 2) {
    const dtype = getDtype(i);
    const shape = getShape(i);
    return { name, dtype, shape, data: i.bytes() };
  }
  const shape = getShape(i);
  const lengths = sized<number>(i.u32());
  for (let k = 0; k < lengths.length; k++) lengths[k] = i.u32();
  return { name, shape, lengths, base64: i.str() };
}

function putResponse(o: Out, r: WireResponse): void {
  if ("other" in r) {
    o.u8(0);
    o.str(r.other);
    return;
  }
  o.u8(1);
  o.u32(r.outputs.length);
  for (let k = 0; k < r.outputs.length; k++) putTensor(o, r.outputs[k]!);
  o.optStr(r.error === undefined ? undefined : JSON.stringify(r.error));
}

function getResponse(i: In): WireResponse {
  if (i.u8() === 0) return { other: i.str() };
  const outputs = sized<WireTensor>(i.u32());
  for (let k = 0; k < outputs.length; k++) outputs[k] = getTensor(i);
  const error = i.optStr();
  return { outputs, error: error === undefined ? undefined : (JSON.parse(error) as WireError) };
}

/** The shapes of the hot path's messages, as `thread-instance.ts` and its worker make them. */
interface ExecuteMessage {
  op: "execute";
  id: number;
  requests: {
    inputs: WireTensor[];
    parked: number;
    requested: string[];
    requestId: string;
    parameters: Record<string, unknown>;
    modelName: string;
    modelVersion: number;
  }[];
}
interface ExecuteReplyMessage {
  id: number;
  value: { result: { responses: WireResponse[] } | { notArray: string }; open: number[] };
}
interface SendMessage {
  op: "send";
  call: number;
  index: number;
  response: WireResponse | undefined;
  final: boolean;
}

function isExecuteReply(m: object): m is ExecuteReplyMessage {
  const v = (m as { value?: unknown }).value;
  return typeof v === "object" && v !== null && "open" in v && "result" in v;
}

/** Encodes message `m` into `o`; throws {@link UNFIT} (or a TypeError, from JSON) for a message only `postMessage` can carry, {@link NO_ROOM} when `o` is too small. */
function encodeBody(o: Out, m: unknown): void {
  const op = typeof m === "object" && m !== null ? (m as { op?: unknown }).op : undefined;
  if (op === "execute") {
    const e = m as ExecuteMessage;
    o.u8(Kind.Execute);
    o.f64(e.id);
    o.u32(e.requests.length);
    for (let q = 0; q < e.requests.length; q++) {
      const r = e.requests[q]!;
      o.str(r.requestId);
      o.str(r.modelName);
      o.f64(r.modelVersion);
      o.u32(r.requested.length);
      for (let k = 0; k < r.requested.length; k++) o.str(r.requested[k]!);
      let empty = true;
      for (const _ in r.parameters) {
        empty = false;
        break;
      }
      o.str(empty ? "" : JSON.stringify(r.parameters));
      o.f64(r.parked);
      o.u32(r.inputs.length);
      for (let k = 0; k < r.inputs.length; k++) putTensor(o, r.inputs[k]!);
    }
  } else if (op === "send") {
    const s = m as SendMessage;
    o.u8(Kind.Send);
    o.f64(s.call);
    o.u32(s.index);
    o.u8(s.final ? 1 : 0);
    if (s.response === undefined) o.u8(0);
    else {
      o.u8(1);
      putResponse(o, s.response);
    }
  } else if (op === undefined && typeof m === "object" && m !== null && isExecuteReply(m)) {
    o.u8(Kind.ExecuteReply);
    o.f64(m.id);
    const result = m.value.result;
    if ("notArray" in result) {
      o.u8(1);
      o.str(result.notArray);
    } else {
      o.u8(0);
      o.u32(result.responses.length);
      for (let k = 0; k < result.responses.length; k++) putResponse(o, result.responses[k]!);
    }
    o.u32(m.value.open.length);
    for (let k = 0; k < m.value.open.length; k++) o.u32(m.value.open[k]!);
  } else {
    o.u8(Kind.Json);
    o.str(JSON.stringify(m));
  }
}

/** What {@link encodeInto} gives for a message that does not fit before its end. */
export const ENCODE_NO_ROOM = -1;
/** What {@link encodeInto} gives for a message the codec cannot hold (it must go by `postMessage`). */
export const ENCODE_UNFIT = -2;

/**
 * Encodes message `m` straight into `buf` (a ring's data, seen through
 * `view` too) from `at`, using no byte at or after `end`: returns where
 * the message ends, {@link ENCODE_NO_ROOM} if it does not fit (the bytes
 * from `at` may have been written), or {@link ENCODE_UNFIT}.
 */
export function encodeInto(m: unknown, buf: Buffer, view: DataView, at: number, end: number): number {
  const o = out;
  o.target(buf, view, at, end);
  try {
    encodeBody(o, m);
  } catch (e) {
    if (e === NO_ROOM) return ENCODE_NO_ROOM;
    // A bigint address, or a value JSON cannot hold: postMessage can.
    if (e === UNFIT || e instanceof TypeError) return ENCODE_UNFIT;
    throw e;
  }
  return o.at;
}

/** {@link encodeMessage}'s buffer: it grows to the largest message encoded. */
let scratch = Buffer.allocUnsafeSlow(4096);
let scratchView = new DataView(scratch.buffer);

/**
 * Encodes message `m` into a scratch buffer; the bytes are valid until
 * the next call. Undefined when `m` must go by `postMessage`.
 */
export function encodeMessage(m: unknown): Buffer | undefined {
  for (;;) {
    const end = encodeInto(m, scratch, scratchView, 0, scratch.length);
    if (end >= 0) return scratch.subarray(0, end);
    if (end === ENCODE_UNFIT) return undefined;
    scratch = Buffer.allocUnsafeSlow(2 * scratch.length);
    scratchView = new DataView(scratch.buffer);
  }
}

/**
 * Decodes the message in `buf` from `at` (as {@link encodeMessage} or
 * {@link encodeInto} wrote it); `view`: a `DataView` of the same bytes,
 * when the caller keeps one (a ring does).
 */
export function decodeMessage(buf: Buffer, at: number, view?: DataView): unknown {
  const i = cursor;
  i.buf = buf;
  i.view = view ?? new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  i.at = at;
  switch (i.u8() as Kind) {
    case Kind.Json:
      return JSON.parse(i.str());
    case Kind.Execute: {
      const id = i.f64();
      const requests = sized<ExecuteMessage["requests"][number]>(i.u32());
      for (let q = 0; q < requests.length; q++) {
        const requestId = i.str();
        const modelName = i.str();
        const modelVersion = i.f64();
        const requested = sized<string>(i.u32());
        for (let k = 0; k < requested.length; k++) requested[k] = i.str();
        const p = i.str();
        const parameters = p === "" ? {} : (JSON.parse(p) as Record<string, unknown>);
        const parked = i.f64();
        const inputs = sized<WireTensor>(i.u32());
        for (let k = 0; k < inputs.length; k++) inputs[k] = getTensor(i);
        requests[q] = { inputs, parked, requested, requestId, parameters, modelName, modelVersion };
      }
      return { op: "execute", id, requests } satisfies ExecuteMessage;
    }
    case Kind.ExecuteReply: {
      const id = i.f64();
      let result: ExecuteReplyMessage["value"]["result"];
      if (i.u8() === 1) result = { notArray: i.str() };
      else {
        const responses = sized<WireResponse>(i.u32());
        for (let k = 0; k < responses.length; k++) responses[k] = getResponse(i);
        result = { responses };
      }
      const open = sized<number>(i.u32());
      for (let k = 0; k < open.length; k++) open[k] = i.u32();
      return { id, value: { result, open } } satisfies ExecuteReplyMessage;
    }
    case Kind.Send: {
      const call = i.f64();
      const index = i.u32();
      const final = i.u8() === 1;
      const response = i.u8() === 1 ? getResponse(i) : undefined;
      return { op: "send", call, index, response, final } satisfies SendMessage;
    }
  }
}

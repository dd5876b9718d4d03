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

/** The first byte of an encoded message. */
const enum Kind {
  Json = 0,
  Execute = 1,
  ExecuteReply = 2,
  Send = 3,
}

/** Thrown inside {@link encodeMessage} for a message the binary form cannot hold. */
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

/** A growing scratch buffer that messages are encoded into (then copied into the ring). */
class Out {
  buf = Buffer.allocUnsafe(4096);
  at = 0;

  reset(): void {
    this.at = 0;
  }

  #room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  u8(v: number): void {
    this.#room(1);
    this.buf[this.at++] = v;
  }

  u32(v: number): void {
    this.#room(4);
    this.buf.writeUInt32LE(v, this.at);
    this.at += 4;
  }

  f64(v: number): void {
    this.#room(8);
    this.buf.writeDoubleLE(v, this.at);
    this.at += 8;
  }

  str(s: string): void {
    // At most 3 bytes per UTF-16 unit.
    this.#room(4 + s.length * 3);
    const buf = this.buf;
    const at = this.at + 4;
    let n: number;
    if (s.length === 0) n = 0;
    else if (s.length <= SHORT) {
      // Names come again and again: their bytes are kept, and copied by hand (no native UTF-8 encoder call).
      let b = encoded.get(s);
      if (b === undefined) {
        if (encoded.size >= KEPT) encoded.clear();
        encoded.set(s, (b = Buffer.from(s, "utf8")));
      }
      n = b.length;
      for (let k = 0; k < n; k++) buf[at + k] = b[k]!;
    } else n = buf.write(s, at, "utf8");
    buf.writeUInt32LE(n, this.at);
    this.at = at + n;
  }

  /** Raw bytes: their length (u32), then the bytes. */
  bytes(b: Uint8Array): void {
    const n = b.byteLength;
    this.#room(4 + n);
    this.buf.writeUInt32LE(n, this.at);
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

/** A cursor over a message's bytes in the ring. */
class In {
  constructor(
    readonly buf: Buffer,
    public at: number,
  ) {}

  u8(): number {
    return this.buf[this.at++]!;
  }

  u32(): number {
    const v = this.buf.readUInt32LE(this.at);
    this.at += 4;
    return v;
  }

  f64(): number {
    const v = this.buf.readDoubleLE(this.at);
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

const out = new Out();

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
  for (const d of shape) o.f64(d);
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
      if (i.buf.readDoubleLE(i.at + 8 * k) !== last[k]) {
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
    for (const n of t.lengths) o.u32(n);
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
  const lengths: number[] = [];
  for (let n = i.u32(); n > 0; n--) lengths.push(i.u32());
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
  for (const t of r.outputs) putTensor(o, t);
  o.optStr(r.error === undefined ? undefined : JSON.stringify(r.error));
}

function getResponse(i: In): WireResponse {
  if (i.u8() === 0) return { other: i.str() };
  const outputs: WireTensor[] = [];
  for (let n = i.u32(); n > 0; n--) outputs.push(getTensor(i));
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

/**
 * Encodes message `m`; the bytes are valid until the next call (copy them
 * into the ring at once). Undefined when `m` must go by `postMessage`.
 */
export function encodeMessage(m: unknown): Buffer | undefined {
  const o = out;
  o.reset();
  try {
    const op = typeof m === "object" && m !== null ? (m as { op?: unknown }).op : undefined;
    if (op === "execute") {
      const e = m as ExecuteMessage;
      o.u8(Kind.Execute);
      o.f64(e.id);
      o.u32(e.requests.length);
      for (const r of e.requests) {
        o.str(r.requestId);
        o.str(r.modelName);
        o.f64(r.modelVersion);
        o.u32(r.requested.length);
        for (const s of r.requested) o.str(s);
        let empty = true;
        for (const _ in r.parameters) {
          empty = false;
          break;
        }
        o.str(empty ? "" : JSON.stringify(r.parameters));
        o.f64(r.parked);
        o.u32(r.inputs.length);
        for (const t of r.inputs) putTensor(o, t);
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
        for (const r of result.responses) putResponse(o, r);
      }
      o.u32(m.value.open.length);
      for (const n of m.value.open) o.u32(n);
    } else {
      o.u8(Kind.Json);
      o.str(JSON.stringify(m));
    }
  } catch (e) {
    // A bigint address, or a value JSON cannot hold: postMessage can.
    if (e === UNFIT || e instanceof TypeError) return undefined;
    throw e;
  }
  return o.buf.subarray(0, o.at);
}

/** Decodes the message in `buf` from `at` (as {@link encodeMessage} wrote it). */
export function decodeMessage(buf: Buffer, at: number): unknown {
  const i = new In(buf, at);
  switch (i.u8() as Kind) {
    case Kind.Json:
      return JSON.parse(i.str());
    case Kind.Execute: {
      const id = i.f64();
      const requests: ExecuteMessage["requests"] = [];
      for (let n = i.u32(); n > 0; n--) {
        const requestId = i.str();
        const modelName = i.str();
        const modelVersion = i.f64();
        const requested: string[] = [];
        for (let k = i.u32(); k > 0; k--) requested.push(i.str());
        const p = i.str();
        const parameters = p === "" ? {} : (JSON.parse(p) as Record<string, unknown>);
        const parked = i.f64();
        const inputs: WireTensor[] = [];
        for (let k = i.u32(); k > 0; k--) inputs.push(getTensor(i));
        requests.push({ inputs, parked, requested, requestId, parameters, modelName, modelVersion });
      }
      return { op: "execute", id, requests } satisfies ExecuteMessage;
    }
    case Kind.ExecuteReply: {
      const id = i.f64();
      let result: ExecuteReplyMessage["value"]["result"];
      if (i.u8() === 1) result = { notArray: i.str() };
      else {
        const responses: WireResponse[] = [];
        for (let n = i.u32(); n > 0; n--) responses.push(getResponse(i));
        result = { responses };
      }
      const open: number[] = [];
      for (let n = i.u32(); n > 0; n--) open.push(i.u32());
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

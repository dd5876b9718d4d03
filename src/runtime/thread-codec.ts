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
import type { DType } from "../dtype.js";
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
    const n = s.length === 0 ? 0 : this.buf.write(s, this.at + 4, "utf8");
    this.buf.writeUInt32LE(n, this.at);
    this.at += 4 + n;
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
    const s = n === 0 ? "" : this.buf.toString("utf8", this.at, this.at + n);
    this.at += n;
    return s;
  }

  optStr(): string | undefined {
    return this.u8() === 0 ? undefined : this.str();
  }

  /** Raw bytes, copied out of the ring (whose slot is reused once read) into memory of their own. */
  bytes(): Uint8Array {
    const n = this.u32();
    const b = new Uint8Array(n);
    b.set(this.buf.subarray(this.at, this.at + n));
    this.at += n;
    return b;
  }
}

const out = new Out();

function putTensor(o: Out, t: WireTensor): void {
  o.optStr(t.name);
  if ("slot" in t) {
    o.u8(3);
    o.u32(t.slot);
    return;
  }
  if ("data" in t) {
    o.u8(2);
    o.str(t.dtype);
    o.u32(t.shape.length);
    for (const d of t.shape) o.f64(d);
    o.bytes(t.data);
    return;
  }
  if ("base64" in t) {
    o.u8(1);
    o.u32(t.shape.length);
    for (const d of t.shape) o.f64(d);
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
  if (form === 3) return { name, slot: i.u32() };
  if (form === 0) return { name, address: i.f64() };
  if (form === 2) {
    const dtype = i.str() as DType;
    const shape: number[] = [];
    for (let n = i.u32(); n > 0; n--) shape.push(i.f64());
    return { name, dtype, shape, data: i.bytes() };
  }
  const shape: number[] = [];
  for (let n = i.u32(); n > 0; n--) shape.push(i.f64());
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

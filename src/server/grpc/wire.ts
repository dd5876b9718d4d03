/**
 * Hand-written protobuf wire codec for the two messages on the inference
 * path of `inference.GRPCInferenceService` (Triton's `grpc_service.proto`):
 * `ModelInferRequest` is decoded, and `ModelInferResponse` /
 * `ModelStreamInferResponse` are encoded, without protobufjs.
 *
 * Why: protobufjs builds a message object, then proto-loader's `toObject`
 * builds another (with every default filled in), per request, and the
 * response goes through `fromObject` and an encoder that copies each
 * `bytes` field twice; for a small model that is most of a request's cost.
 * Here a request's `raw_input_contents` stay views of the received buffer
 * (the tensors are made over them without a copy where alignment allows),
 * and a response is sized first and written into one buffer, each output's
 * bytes copied once. Every other RPC uses proto-loader (see `proto.ts`).
 *
 * The decoder accepts what any protobuf encoder may send: fields in any
 * order, repeated scalars packed or not, unknown fields (skipped), a
 * repeated message split across several occurrences, the last value of a
 * singular field winning, and for map fields the last entry of a key.
 * Malformed wire data throws a {@link WireError} (gRPC answers INTERNAL
 * "Error deserializing request", as it does for protobufjs's errors).
 *
 * @module
 */

/** Malformed protobuf wire data. */
export class WireError extends Error {
  /** @param message - what is wrong. */
  constructor(message: string) {
    super(message);
    this.name = "WireError";
  }
}

/** One `InferParameter` as sent: the member of its `parameter_choice` oneof that was set, if any. */
export type WireParam =
  | { readonly kind: "bool_param"; readonly value: boolean }
  | { readonly kind: "int64_param"; readonly value: bigint }
  | { readonly kind: "string_param"; readonly value: string }
  | { readonly kind: "double_param"; readonly value: number }
  | { readonly kind: "uint64_param"; readonly value: bigint }
  | { readonly kind: undefined };

/** A `map<string, InferParameter>` as sent. */
export type WireParams = Map<string, WireParam>;

/** One `ModelInferRequest.InferInputTensor`. */
export interface WireInputTensor {
  name: string;
  datatype: string;
  /** Dims as numbers (negative ones signed; beyond 2^53 they are not exact, and refused later). */
  shape: number[];
  parameters: WireParams | undefined;
  /** The `contents` message's bytes when the field is present (even empty), else undefined. */
  contents: Uint8Array | undefined;
}

/** One `ModelInferRequest.InferRequestedOutputTensor`. */
export interface WireRequestedOutput {
  name: string;
  parameters: WireParams | undefined;
}

/** A decoded `ModelInferRequest`. */
export interface WireInferRequest {
  model_name: string;
  model_version: string;
  id: string;
  parameters: WireParams | undefined;
  inputs: WireInputTensor[];
  outputs: WireRequestedOutput[];
  /** `raw_input_contents`: views of the received message. */
  raw_input_contents: Uint8Array[];
  /** When the message was decoded (`process.hrtime.bigint()`). */
  receivedAt: bigint;
}

/** A decoded `InferTensorContents`: each field as sent (empty when absent). */
export interface WireContents {
  bool_contents: number[];
  int_contents: number[];
  int64_contents: bigint[];
  uint_contents: number[];
  uint64_contents: bigint[];
  fp32_contents: Float32Array;
  fp64_contents: Float64Array;
  bytes_contents: Uint8Array[];
}

// --------------------------------------------------------------------- reader

const WT_VARINT = 0;
const WT_I64 = 1;
const WT_LEN = 2;
const WT_I32 = 5;

const TWO_32 = 4294967296;

/** A cursor over one message's bytes. */
class Reader {
  pos: number;
  constructor(
    readonly buf: Uint8Array,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

  /** A varint's low 32 bits, as an unsigned number (tags, lengths, bools, uint32). */
  u32(): number {
    const buf = this.buf;
    let pos = this.pos;
    if (pos >= this.end) throw new WireError("truncated varint");
    let b = buf[pos++]!;
    let v = b & 0x7f;
    if (b < 0x80) {
      this.pos = pos;
      return v;
    }
    let shift = 7;
    for (;;) {
      if (pos >= this.end) throw new WireError("truncated varint");
      b = buf[pos++]!;
      if (shift < 28) v |= (b & 0x7f) << shift;
      else if (shift === 28) v = (v | ((b & 0x0f) << 28)) >>> 0;
      shift += 7;
      if (b < 0x80) break;
      if (shift >= 70) throw new WireError("varint longer than 10 bytes");
    }
    this.pos = pos;
    return v >>> 0;
  }

  /** A varint as a 64-bit unsigned bigint. */
  u64(): bigint {
    const buf = this.buf;
    let lo = 0;
    let hi = 0;
    let shift = 0;
    for (;;) {
      if (this.pos >= this.end) throw new WireError("truncated varint");
      const b = buf[this.pos++]!;
      if (shift < 28) lo |= (b & 0x7f) << shift;
      else if (shift === 28) {
        lo |= (b & 0x0f) << 28;
        hi |= (b & 0x7f) >>> 4;
      } else if (shift < 64) hi |= (b & 0x7f) << (shift - 32);
      shift += 7;
      if (b < 0x80) break;
      if (shift >= 70) throw new WireError("varint longer than 10 bytes");
    }
    return (BigInt(hi >>> 0) << 32n) | BigInt(lo >>> 0);
  }

  /** An int64 varint as a number: exact within ±2^53, signed. */
  i64num(): number {
    const buf = this.buf;
    const start = this.pos;
    // Fast path: up to 4 bytes (< 2^28), the size of any real dim.
    let v = 0;
    for (let i = 0; i < 4 && this.pos < this.end; i++) {
      const b = buf[this.pos++]!;
      v |= (b & 0x7f) << (7 * i);
      if (b < 0x80) return v;
    }
    this.pos = start;
    return Number(BigInt.asIntN(64, this.u64()));
  }

  /** A length-delimited field's extent; returns its start and moves past it. */
  len(): number {
    const n = this.u32();
    const start = this.pos;
    if (n > this.end - start) throw new WireError("length-delimited field goes past the end of its message");
    this.pos = start + n;
    return start;
  }

  str(): string {
    const n = this.u32();
    const start = this.pos;
    if (n > this.end - start) throw new WireError("string field goes past the end of its message");
    this.pos = start + n;
    return n === 0 ? "" : utf8(this.buf, start, start + n);
  }

  /** Skips a field of wire type `wt`. */
  skip(wt: number): void {
    switch (wt) {
      case WT_VARINT:
        this.u64();
        return;
      case WT_I64:
        this.advance(8);
        return;
      case WT_LEN:
        this.len();
        return;
      case WT_I32:
        this.advance(4);
        return;
      default:
        throw new WireError(`unsupported wire type ${wt}`);
    }
  }

  advance(n: number): void {
    if (n > this.end - this.pos) throw new WireError("fixed-size field goes past the end of its message");
    this.pos += n;
  }
}

const decoder = new TextDecoder("utf-8");

/** UTF-8 text of `buf[start, end)` (ASCII without a TextDecoder call). */
function utf8(buf: Uint8Array, start: number, end: number): string {
  if (end - start <= 32) {
    let s = "";
    for (let i = start; i < end; i++) {
      const c = buf[i]!;
      if (c >= 0x80) return decoder.decode(buf.subarray(start, end));
      s += String.fromCharCode(c);
    }
    return s;
  }
  return decoder.decode(buf.subarray(start, end));
}

function wrongType(field: string, wt: number): never {
  throw new WireError(`field '${field}' has wire type ${wt}`);
}

function readParam(r: Reader, end: number): WireParam {
  const sub = new Reader(r.buf, r.pos, end);
  let p: WireParam = NONE;
  while (sub.pos < end) {
    const tag = sub.u32();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wt !== WT_VARINT) wrongType("bool_param", wt);
        p = { kind: "bool_param", value: sub.u64() !== 0n };
        break;
      case 2:
        if (wt !== WT_VARINT) wrongType("int64_param", wt);
        p = { kind: "int64_param", value: BigInt.asIntN(64, sub.u64()) };
        break;
      case 3:
        if (wt !== WT_LEN) wrongType("string_param", wt);
        p = { kind: "string_param", value: sub.str() };
        break;
      case 4: {
        if (wt !== WT_I64) wrongType("double_param", wt);
        const at = sub.pos;
        sub.advance(8);
        p = { kind: "double_param", value: new DataView(sub.buf.buffer, sub.buf.byteOffset + at, 8).getFloat64(0, true) };
        break;
      }
      case 5:
        if (wt !== WT_VARINT) wrongType("uint64_param", wt);
        p = { kind: "uint64_param", value: sub.u64() };
        break;
      default:
        sub.skip(wt);
    }
  }
  r.pos = end;
  return p;
}

const NONE: WireParam = Object.freeze({ kind: undefined });

/** Reads one map entry (`key` 1, `value` 2) into `map`. */
function readParamEntry(r: Reader, map: WireParams): void {
  const start = r.len();
  const end = r.pos;
  const sub = new Reader(r.buf, start, end);
  let key = "";
  let value: WireParam = NONE;
  while (sub.pos < end) {
    const tag = sub.u32();
    const wt = tag & 7;
    const f = tag >>> 3;
    if (f === 1 && wt === WT_LEN) key = sub.str();
    else if (f === 2 && wt === WT_LEN) {
      const vs = sub.len();
      const ve = sub.pos;
      sub.pos = vs;
      value = readParam(sub, ve);
    } else sub.skip(wt);
  }
  map.set(key, value);
}

function readShape(r: Reader, wt: number, shape: number[]): void {
  if (wt === WT_LEN) {
    const start = r.len();
    const end = r.pos;
    const sub = new Reader(r.buf, start, end);
    while (sub.pos < end) shape.push(sub.i64num());
  } else if (wt === WT_VARINT) {
    shape.push(r.i64num());
  } else wrongType("shape", wt);
}

function readInput(r: Reader): WireInputTensor {
  const start = r.len();
  const end = r.pos;
  const sub = new Reader(r.buf, start, end);
  const t: WireInputTensor = { name: "", datatype: "", shape: [], parameters: undefined, contents: undefined };
  while (sub.pos < end) {
    const tag = sub.u32();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wt !== WT_LEN) wrongType("name", wt);
        t.name = sub.str();
        break;
      case 2:
        if (wt !== WT_LEN) wrongType("datatype", wt);
        t.datatype = sub.str();
        break;
      case 3:
        readShape(sub, wt, t.shape);
        break;
      case 4:
        if (wt !== WT_LEN) wrongType("parameters", wt);
        readParamEntry(sub, (t.parameters ??= new Map()));
        break;
      case 5: {
        if (wt !== WT_LEN) wrongType("contents", wt);
        const cs = sub.len();
        const part = sub.buf.subarray(cs, sub.pos);
        // A message field sent twice is merged: its bytes, concatenated, decode as the merge.
        t.contents = t.contents === undefined ? part : Buffer.concat([t.contents, part]);
        break;
      }
      default:
        sub.skip(wt);
    }
  }
  return t;
}

function readOutput(r: Reader): WireRequestedOutput {
  const start = r.len();
  const end = r.pos;
  const sub = new Reader(r.buf, start, end);
  const o: WireRequestedOutput = { name: "", parameters: undefined };
  while (sub.pos < end) {
    const tag = sub.u32();
    const wt = tag & 7;
    const f = tag >>> 3;
    if (f === 1 && wt === WT_LEN) o.name = sub.str();
    else if (f === 2 && wt === WT_LEN) readParamEntry(sub, (o.parameters ??= new Map()));
    else if (f === 1 || f === 2) wrongType(f === 1 ? "name" : "parameters", wt);
    else sub.skip(wt);
  }
  return o;
}

/**
 * Decodes a `ModelInferRequest`. `raw_input_contents` and `contents` are
 * views of `buf` (kept alive by the tensors made over them).
 *
 * @throws {WireError} for malformed wire data.
 */
export function decodeModelInferRequest(buf: Buffer): WireInferRequest {
  const receivedAt = process.hrtime.bigint();
  const r = new Reader(buf, 0, buf.length);
  const req: WireInferRequest = {
    model_name: "",
    model_version: "",
    id: "",
    parameters: undefined,
    inputs: [],
    outputs: [],
    raw_input_contents: [],
    receivedAt,
  };
  const end = buf.length;
  while (r.pos < end) {
    const tag = r.u32();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1:
        if (wt !== WT_LEN) wrongType("model_name", wt);
        req.model_name = r.str();
        break;
      case 2:
        if (wt !== WT_LEN) wrongType("model_version", wt);
        req.model_version = r.str();
        break;
      case 3:
        if (wt !== WT_LEN) wrongType("id", wt);
        req.id = r.str();
        break;
      case 4:
        if (wt !== WT_LEN) wrongType("parameters", wt);
        readParamEntry(r, (req.parameters ??= new Map()));
        break;
      case 5:
        if (wt !== WT_LEN) wrongType("inputs", wt);
        req.inputs.push(readInput(r));
        break;
      case 6:
        if (wt !== WT_LEN) wrongType("outputs", wt);
        req.outputs.push(readOutput(r));
        break;
      case 7: {
        if (wt !== WT_LEN) wrongType("raw_input_contents", wt);
        const s = r.len();
        req.raw_input_contents.push(buf.subarray(s, r.pos));
        break;
      }
      default:
        r.skip(wt);
    }
  }
  return req;
}

/** Reads packed or unpacked varints with `read`. */
function readVarints<T>(r: Reader, wt: number, out: T[], read: (r: Reader) => T, field: string): void {
  if (wt === WT_LEN) {
    const start = r.len();
    const end = r.pos;
    const sub = new Reader(r.buf, start, end);
    while (sub.pos < end) out.push(read(sub));
  } else if (wt === WT_VARINT) out.push(read(r));
  else wrongType(field, wt);
}

const readBool = (r: Reader): number => (r.u64() !== 0n ? 1 : 0);
const readInt32 = (r: Reader): number => r.u32() | 0;
const readUint32 = (r: Reader): number => r.u32();
const readInt64 = (r: Reader): bigint => BigInt.asIntN(64, r.u64());
const readUint64 = (r: Reader): bigint => r.u64();

/** Copies little-endian fixed-size elements out of `buf` (any alignment). */
function fixedArray<T extends Float32Array | Float64Array>(Ctor: { new (n: number): T; BYTES_PER_ELEMENT: number }, parts: Uint8Array[]): T {
  let total = 0;
  for (const p of parts) total += p.length;
  const out = new Ctor(total / Ctor.BYTES_PER_ELEMENT);
  const bytes = new Uint8Array(out.buffer);
  let off = 0;
  for (const p of parts) {
    bytes.set(p, off);
    off += p.length;
  }
  return out;
}

/**
 * Decodes an `InferTensorContents` message (the typed `contents` of an input).
 *
 * @throws {WireError} for malformed wire data.
 */
export function decodeContents(buf: Uint8Array): WireContents {
  const r = new Reader(buf, 0, buf.length);
  const c = {
    bool_contents: [] as number[],
    int_contents: [] as number[],
    int64_contents: [] as bigint[],
    uint_contents: [] as number[],
    uint64_contents: [] as bigint[],
    bytes_contents: [] as Uint8Array[],
  };
  const fp32: Uint8Array[] = [];
  const fp64: Uint8Array[] = [];
  const end = buf.length;
  while (r.pos < end) {
    const tag = r.u32();
    const wt = tag & 7;
    switch (tag >>> 3) {
      case 1:
        readVarints(r, wt, c.bool_contents, readBool, "bool_contents");
        break;
      case 2:
        readVarints(r, wt, c.int_contents, readInt32, "int_contents");
        break;
      case 3:
        readVarints(r, wt, c.int64_contents, readInt64, "int64_contents");
        break;
      case 4:
        readVarints(r, wt, c.uint_contents, readUint32, "uint_contents");
        break;
      case 5:
        readVarints(r, wt, c.uint64_contents, readUint64, "uint64_contents");
        break;
      case 6:
      case 7: {
        const size = tag >>> 3 === 6 ? 4 : 8;
        const name = size === 4 ? "fp32_contents" : "fp64_contents";
        const parts = size === 4 ? fp32 : fp64;
        if (wt === WT_LEN) {
          const s = r.len();
          if ((r.pos - s) % size !== 0) throw new WireError(`packed ${name} is not a whole number of elements`);
          parts.push(buf.subarray(s, r.pos));
        } else if (wt === (size === 4 ? WT_I32 : WT_I64)) {
          const s = r.pos;
          r.advance(size);
          parts.push(buf.subarray(s, r.pos));
        } else wrongType(name, wt);
        break;
      }
      case 8: {
        if (wt !== WT_LEN) wrongType("bytes_contents", wt);
        const s = r.len();
        c.bytes_contents.push(buf.subarray(s, r.pos));
        break;
      }
      default:
        r.skip(wt);
    }
  }
  return { ...c, fp32_contents: fixedArray(Float32Array, fp32), fp64_contents: fixedArray(Float64Array, fp64) };
}

// --------------------------------------------------------------------- writer

/** One output of a {@link WireInferResponse}. */
export interface WireOutputTensor {
  name: string;
  datatype: string;
  shape: readonly number[];
  /** Its `raw_output_contents` entry (empty for an output written to shared memory). */
  raw: Uint8Array;
}

/** A `ModelInferResponse` to encode. */
export interface WireInferResponse {
  model_name: string;
  model_version: string;
  id: string;
  /** The `triton_final_response` parameter (streams only); undefined: no parameters. */
  final?: boolean | undefined;
  outputs: readonly WireOutputTensor[];
}

function varintSize(v: number): number {
  if (v < 0x80) return 1;
  if (v < 0x4000) return 2;
  if (v < 0x200000) return 3;
  if (v < 0x10000000) return 4;
  if (v < 2 ** 35) return 5;
  if (v < 2 ** 42) return 6;
  if (v < 2 ** 49) return 7;
  return 8; // < 2^56: every non-negative safe integer
}

/** Bytes of an int64 dim as a varint (negative: 10). */
function dimSize(d: number): number {
  return d < 0 ? 10 : varintSize(d);
}

function strSize(s: string): number {
  return s.length === 0 ? 0 : s.length < 64 && isAscii(s) ? s.length : Buffer.byteLength(s, "utf8");
}

function isAscii(s: string): boolean {
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) >= 0x80) return false;
  return true;
}

/** A length-delimited field (tag + length + `n` bytes). */
function fieldSize(n: number): number {
  return 1 + varintSize(n) + n;
}

/** Writes into one buffer. */
class Writer {
  pos = 0;
  constructor(readonly buf: Buffer) {}

  varint(v: number): void {
    const buf = this.buf;
    let pos = this.pos;
    while (v >= 0x80) {
      buf[pos++] = (v & 0x7f) | 0x80;
      v = v < TWO_32 ? v >>> 7 : Math.floor(v / 128);
    }
    buf[pos++] = v;
    this.pos = pos;
  }

  dim(d: number): void {
    if (d >= 0) {
      this.varint(d);
      return;
    }
    let big = BigInt.asUintN(64, BigInt(d));
    for (let i = 0; i < 9; i++) {
      this.buf[this.pos++] = Number(big & 0x7fn) | 0x80;
      big >>= 7n;
    }
    this.buf[this.pos++] = Number(big);
  }

  /** A string field with its byte length `n` already known. */
  str(tag: number, s: string, n: number): void {
    this.buf[this.pos++] = tag;
    this.varint(n);
    if (n === s.length && n < 64) {
      const buf = this.buf;
      let pos = this.pos;
      for (let i = 0; i < n; i++) buf[pos++] = s.charCodeAt(i);
      this.pos = pos;
    } else {
      this.pos += this.buf.write(s, this.pos, "utf8");
    }
  }
}

/** Sizes of a response's parts, computed once and used to write it. */
interface Sized {
  nameLen: number;
  versionLen: number;
  idLen: number;
  outputs: { nameLen: number; dtypeLen: number; shapeLen: number; size: number }[];
  size: number;
}

/** `parameters { key: "triton_final_response" value { bool_param: … } }`: the entry's bytes. */
const FINAL_KEY = Buffer.from("triton_final_response");
// entry = 0x0a len key, 0x12 len(value) value; value = 0x08 0|1 (proto3 omits false: an empty message)
const FINAL_ENTRY_TRUE = Buffer.concat([Buffer.from([0x0a, FINAL_KEY.length]), FINAL_KEY, Buffer.from([0x12, 2, 0x08, 1])]);
const FINAL_ENTRY_FALSE = Buffer.concat([Buffer.from([0x0a, FINAL_KEY.length]), FINAL_KEY, Buffer.from([0x12, 2, 0x08, 0])]);

function sizeResponse(r: WireInferResponse): Sized {
  const nameLen = strSize(r.model_name);
  const versionLen = strSize(r.model_version);
  const idLen = strSize(r.id);
  let size = 0;
  if (nameLen) size += fieldSize(nameLen);
  if (versionLen) size += fieldSize(versionLen);
  if (idLen) size += fieldSize(idLen);
  if (r.final !== undefined) size += fieldSize(FINAL_ENTRY_TRUE.length);
  const outputs: Sized["outputs"] = [];
  for (const o of r.outputs) {
    const oNameLen = strSize(o.name);
    const dtypeLen = strSize(o.datatype);
    let shapeLen = 0;
    for (const d of o.shape) shapeLen += dimSize(d);
    let osize = 0;
    if (oNameLen) osize += fieldSize(oNameLen);
    if (dtypeLen) osize += fieldSize(dtypeLen);
    if (shapeLen) osize += fieldSize(shapeLen);
    outputs.push({ nameLen: oNameLen, dtypeLen, shapeLen, size: osize });
    size += fieldSize(osize) + fieldSize(o.raw.length);
  }
  return { nameLen, versionLen, idLen, outputs, size };
}

function writeResponse(w: Writer, r: WireInferResponse, s: Sized): void {
  if (s.nameLen) w.str(0x0a, r.model_name, s.nameLen);
  if (s.versionLen) w.str(0x12, r.model_version, s.versionLen);
  if (s.idLen) w.str(0x1a, r.id, s.idLen);
  if (r.final !== undefined) {
    const entry = r.final ? FINAL_ENTRY_TRUE : FINAL_ENTRY_FALSE;
    w.buf[w.pos++] = 0x22;
    w.varint(entry.length);
    w.buf.set(entry, w.pos);
    w.pos += entry.length;
  }
  const outs = r.outputs;
  for (let i = 0; i < outs.length; i++) {
    const o = outs[i]!;
    const os = s.outputs[i]!;
    w.buf[w.pos++] = 0x2a;
    w.varint(os.size);
    if (os.nameLen) w.str(0x0a, o.name, os.nameLen);
    if (os.dtypeLen) w.str(0x12, o.datatype, os.dtypeLen);
    if (os.shapeLen) {
      w.buf[w.pos++] = 0x1a;
      w.varint(os.shapeLen);
      for (const d of o.shape) w.dim(d);
    }
  }
  for (const o of outs) {
    w.buf[w.pos++] = 0x32;
    w.varint(o.raw.length);
    w.buf.set(o.raw, w.pos);
    w.pos += o.raw.length;
  }
}

/**
 * Encodes a `ModelInferResponse`; `framed`: with gRPC's 5-byte message
 * prefix (not compressed, 4-byte big-endian length) in front, ready to be
 * written to an HTTP/2 stream as it is.
 */
export function encodeModelInferResponse(r: WireInferResponse, framed = false): Buffer {
  const s = sizeResponse(r);
  const at = framed ? 5 : 0;
  const w = new Writer(Buffer.allocUnsafe(at + s.size));
  if (framed) {
    w.buf[0] = 0;
    w.buf.writeUInt32BE(s.size, 1);
    w.pos = 5;
  }
  writeResponse(w, r, s);
  return w.buf;
}

/**
 * Encodes a `ModelStreamInferResponse`: an `error_message` (empty: none)
 * and its `infer_response` (always sent, as Triton does, even when empty).
 */
export function encodeModelStreamInferResponse(errorMessage: string, r: WireInferResponse): Buffer {
  const s = sizeResponse(r);
  const errLen = strSize(errorMessage);
  const total = (errLen ? fieldSize(errLen) : 0) + fieldSize(s.size);
  const w = new Writer(Buffer.allocUnsafe(total));
  if (errLen) w.str(0x0a, errorMessage, errLen);
  w.buf[w.pos++] = 0x12;
  w.varint(s.size);
  writeResponse(w, r, s);
  return w.buf;
}

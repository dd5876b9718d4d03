/**
 * KServe v2 / Triton inference request decoding and response encoding: JSON
 * tensors and the binary tensor extension (`Inference-Header-Content-Length`,
 * `binary_data_size`, `binary_data_output`, `binary_data`).
 *
 * Binary inputs become zero-copy views of the request body when the bytes
 * are aligned for their dtype (they are copied once otherwise); binary
 * outputs go out as views of the tensors' memory.
 *
 * @module
 */
import { mayHoldUnsafeIntegers, parseJsonExact } from "./json-exact.js";
import { type DType, elementSize, isDType, viewClass, type TypedArray } from "../dtype.js";
import { Tensor } from "../tensor.js";
import { ServingError, errorMessage } from "../runtime/errors.js";
import type { InferInput, InferOutput } from "../runtime/model-version.js";
import type { RequestParameter } from "../runtime/request.js";
import { bf16BitsToFloat, floatToBf16Bits, floatToHalfBits, halfBitsToFloat } from "./half.js";

/** How one requested output is to be returned. */
export interface OutputSpec {
  /** Output name. */
  name: string;
  /** Send as binary (binary tensor extension). */
  binary: boolean;
  /** Shared-memory placement, when the client asked for it. */
  shm?: {
    /** Registered region name. */
    region: string;
    /** Bytes the output may use. */
    byteSize: number;
    /** Offset into the region. */
    offset: number;
  };
}

/** A decoded inference request. */
export interface DecodedRequest {
  /** What the runtime takes. */
  input: InferInput;
  /** Requested outputs with their encoding (empty: all outputs, `binaryDefault` encoding). */
  outputs: OutputSpec[];
  /** Encoding of outputs the request did not list (request parameter `binary_data_output`). */
  binaryDefault: boolean;
}

/** An encoded response body. */
export interface EncodedResponse {
  /** Body chunks, in order. */
  readonly chunks: Uint8Array[];
  /** Total body length in bytes. */
  readonly length: number;
  /** Length of the JSON header when binary outputs follow it; undefined for a JSON-only body. */
  readonly headerLength: number | undefined;
  /**
   * A JSON-only body as its text (`chunks` is then its UTF-8 bytes, made on
   * first use): a sink that writes strings writes it as it is, with no
   * Buffer of it in JavaScript.
   */
  readonly text?: string;
}

/** A JSON-only response body: its text, and its UTF-8 bytes only when asked for. */
class JsonBody implements EncodedResponse {
  readonly length: number;
  readonly headerLength = undefined;
  #chunks: Uint8Array[] | undefined;

  constructor(readonly text: string) {
    this.length = Buffer.byteLength(text, "utf8");
  }

  get chunks(): Uint8Array[] {
    return (this.#chunks ??= [Buffer.from(this.text, "utf8")]);
  }
}

/** Reads shared-memory regions for inputs and writes outputs into them. */
export interface SharedMemoryAccess {
  /** The bytes of a registered region (a view when possible). */
  read(region: string, offset: number, byteSize: number): Uint8Array;
  /** Writes `data` into a registered region. */
  write(region: string, offset: number, byteSize: number, data: readonly Uint8Array[]): void;
  /**
   * A tensor over a region without copying, when its memory allows (CUDA
   * regions give device tensors); `undefined`: {@link read} the bytes instead.
   */
  tensor?(region: string, offset: number, byteSize: number, dtype: DType, shape: number[], name: string): Tensor | undefined;
  /**
   * Copies a tensor (on any device) into a region directly, when its memory
   * allows (CUDA regions); `false`: {@link write} its host bytes instead.
   */
  writeTensor?(region: string, offset: number, byteSize: number, t: Tensor): boolean;
}

function bad(message: string): never {
  throw new ServingError("ERR_INVALID_REQUEST", message);
}

/** JSON text of a parsed value for an error message (bigints included). */
const show = (v: unknown): string => (typeof v === "bigint" ? String(v) : JSON.stringify(v));

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

function checkParameters(v: unknown, where: string): Record<string, RequestParameter> {
  if (v === undefined || v === null) return {};
  if (!isObject(v)) bad(`${where} 'parameters' must be a JSON object`);
  for (const [k, x] of Object.entries(v)) {
    if (typeof x !== "string" && typeof x !== "number" && typeof x !== "boolean") {
      bad(`${where} parameter '${k}' must be a string, number or boolean`);
    }
  }
  return v as Record<string, RequestParameter>;
}

/**
 * Request parameters Triton's HTTP frontend takes for itself instead of
 * passing them to the model (`ParseJsonTritonRequest`); `binary_data_output`
 * is read where outputs are decoded.
 */
const SCHEDULING_PARAMETERS = ["sequence_id", "sequence_start", "sequence_end", "priority", "timeout"] as const;

/** Triton's words for a request parameter of the wrong JSON type: RETURN_MSG_IF_ERR over TritonJson, an INTERNAL error. */
function unparsable(key: string, what: string): never {
  throw new ServingError("ERR_INVALID_REQUEST", `Unable to parse '${key}': attempt to access JSON non-${what} as ${what}`, { tritonCode: "INTERNAL" });
}

const isUInt = (v: unknown): v is number => typeof v === "number" && Number.isInteger(v) && v >= 0;

/** Checks the request-level parameters Triton's HTTP frontend takes itself, as it does. */
function checkSchedulingParameters(p: Record<string, RequestParameter>): void {
  for (const key of SCHEDULING_PARAMETERS) {
    if (!Object.hasOwn(p, key)) continue;
    const v = p[key];
    if (key === "sequence_id") {
      if (!isUInt(v) && typeof v !== "string") unparsable(key, "string");
    } else if (key === "sequence_start" || key === "sequence_end") {
      if (typeof v !== "boolean") unparsable(key, "boolean");
    } else if (!isUInt(v)) {
      unparsable(key, "unsigned-integer");
    }
  }
}

/**
 * Takes the scheduling parameters (checked) out of `parameters` into the
 * runtime's request: `priority` and `timeout` (µs) go to the dynamic
 * batcher; the sequence keys, which only a sequence batcher would read
 * (tensorbridge has none), go nowhere. The model sees none of them, as in
 * Triton.
 */
function takeSchedulingParameters(input: InferInput, parameters: Readonly<Record<string, RequestParameter>>): void {
  let rest: Record<string, RequestParameter> | undefined;
  for (const key of SCHEDULING_PARAMETERS) {
    if (!Object.hasOwn(parameters, key)) continue;
    rest ??= { ...parameters };
    delete rest[key];
  }
  if (rest === undefined) return;
  const priority = parameters["priority"];
  const timeout = parameters["timeout"];
  if (typeof priority === "number") input.priority = priority;
  if (typeof timeout === "number") input.timeoutUs = timeout;
  input.parameters = rest;
}

/** `parameters` holds one of {@link SCHEDULING_PARAMETERS}. */
function hasSchedulingParameters(parameters: Readonly<Record<string, RequestParameter>>): boolean {
  for (const key of SCHEDULING_PARAMETERS) if (Object.hasOwn(parameters, key)) return true;
  return false;
}

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** The `Inference-Header-Content-Length` value, checked against the body. */
function headerLengthOf(body: Uint8Array, headerLength: string | string[] | undefined): number {
  let hdrLen = body.length;
  if (headerLength !== undefined) {
    const h = Array.isArray(headerLength) ? headerLength[0] : headerLength;
    if (h === undefined || !/^[0-9]+$/.test(h.trim())) bad(`Inference-Header-Content-Length must be a non-negative integer, got '${String(h)}'`);
    hdrLen = Number(h.trim());
    if (hdrLen > body.length) {
      bad(`Inference-Header-Content-Length (${hdrLen}) is larger than the request body (${body.length} bytes)`);
    }
  }
  if (hdrLen === 0) bad("the request has no JSON header (empty body)");
  return hdrLen;
}

/** The first `n` bytes of a body as text. */
function textOf(body: Uint8Array, n: number, encoding: "utf8" | "latin1"): string {
  return (body instanceof Buffer ? body : Buffer.from(body.buffer, body.byteOffset, n)).toString(encoding, 0, n);
}

/** Parses the JSON header (its first `hdrLen` bytes) of a request body. */
function parseHeader(body: Uint8Array, hdrLen: number): unknown {
  const text = textOf(body, hdrLen, "utf8");
  let json: unknown;
  try {
    json = JSON.parse(text);
    // JSON.parse rounds integers beyond 2^53; INT64/UINT64 data needs them exact.
    if (mayHoldUnsafeIntegers(text)) json = parseJsonExact(text);
  } catch (e) {
    // Triton answers a body that is not JSON as an internal error (HTTP 500).
    throw new ServingError("ERR_INVALID_REQUEST", `failed to parse the request JSON buffer: ${errorMessage(e)}`, { tritonCode: "INTERNAL" });
  }
  return json;
}

/** Where one input's bytes are, in a header whose inputs all have them outside the JSON. */
interface InputSource {
  name: string;
  dtype: DType;
  dims: readonly number[];
  count: number;
  /** Bytes in the body's binary part; -1 for an input in shared memory. */
  binarySize: number;
  shm?: { region: string; offset: number; size: number };
}

/**
 * What a JSON header says once it has been parsed and checked, for a header
 * whose inputs carry no `data` (binary tensors or shared memory): everything
 * {@link decodeInferRequest} needs but the bytes.
 */
interface HeaderPlan extends RequestPlan {
  /** A copy of the header's bytes (the key). */
  bytes: Buffer;
}

/** What a parsed and checked request says, apart from its tensor data: shared by both plan caches. */
interface RequestPlan {
  id: string | undefined;
  parameters: Readonly<Record<string, RequestParameter>>;
  inputs: readonly InputSource[];
  outputs: readonly OutputSpec[];
  outputNames: readonly string[];
  binaryDefault: boolean;
  /** An input or output is in shared memory (a server without it answers such a header with an error). */
  usesShm: boolean;
  /** `parameters` holds a scheduling parameter (see {@link takeSchedulingParameters}); most requests have none. */
  scheduling: boolean;
}

/**
 * Recently seen binary-request headers. A client sends the same JSON header
 * again and again in steady use (same inputs, shapes and outputs; only the
 * binary data after it changes): a header byte-equal to one seen before
 * skips JSON parsing and the header checks. Headers with `data` in them are
 * not kept (their values differ from request to request).
 */
const PLAN_CACHE_SIZE = 16;
const PLAN_MAX_BYTES = 4096;
/** Largest JSON body looked up in (and kept as) a {@link JsonPlan}: its arrays are parsed with JSON.parse either way. */
const JSON_PLAN_MAX_BODY = 1 << 20;
const plans: HeaderPlan[] = [];

function cachedPlan(body: Uint8Array, hdrLen: number): HeaderPlan | undefined {
  for (let i = 0; i < plans.length; i++) {
    const p = plans[i]!;
    if (p.bytes.length === hdrLen && p.bytes.compare(body, 0, hdrLen) === 0) return p;
  }
  return undefined;
}

function keepPlan(p: HeaderPlan): void {
  if (plans.length >= PLAN_CACHE_SIZE) plans.shift();
  plans.push(p);
}

/**
 * Inputs from a plan and the body's binary part (from `hdrLen` on): the
 * checks of {@link decodeInferRequest} that depend on the bytes, in its
 * order, and the same tensors, made without cutting the body into Buffers.
 * Data aligned for its dtype is viewed where it is. When no input's data is
 * (the usual case: a JSON header of any length puts them all off), the
 * binary part is copied once, whole, into aligned memory, and each input is
 * a view of its place there (one not aligned even there, or a BYTES input,
 * is made as the full path makes it).
 */
function inputsFromPlan(plan: HeaderPlan, body: Uint8Array, hdrLen: number, shm: SharedMemoryAccess | undefined): Tensor[] {
  const binLength = body.length - hdrLen;
  const srcs = plan.inputs;
  // Where input data is read: the body from hdrLen on, or the copy from 0.
  let mem = body;
  let base = hdrLen;
  if (binLength > 0 && noneAligned(srcs, body.byteOffset + hdrLen)) {
    // Buffer.allocUnsafe's slices start at multiples of 8 (its pool is kept aligned).
    const copy = Buffer.allocUnsafe(binLength);
    copy.set(new Uint8Array(body.buffer, body.byteOffset + hdrLen, binLength));
    mem = copy;
    base = 0;
  }
  let cursor = 0;
  const inputs: Tensor[] = [];
  for (const src of srcs) {
    const { name, dtype, count } = src;
    const dims = src.dims as number[];
    if (src.binarySize >= 0) {
      const binSize = src.binarySize;
      if (cursor + binSize > binLength) {
        bad(`input '${name}': binary_data_size ${binSize} goes past the end of the request body (${binLength - cursor} binary bytes left)`);
      }
      const at = mem.byteOffset + base + cursor;
      cursor += binSize;
      const size = dtype === "BYTES" ? 0 : elementSize(dtype);
      if (size > 0 && at % size === 0 && binSize === count * size) {
        inputs.push(Tensor.fromChecked(new (viewClass(dtype)!)(mem.buffer, at, count), dtype, dims, name));
      } else {
        inputs.push(tensorFromBytes(name, dtype, dims, count, new Uint8Array(mem.buffer, at, binSize)));
      }
    } else {
      const { region, offset, size } = src.shm!;
      const direct = shm!.tensor?.(region, offset, size, dtype, dims, name);
      inputs.push(direct ?? tensorFromBytes(name, dtype, dims, count, shm!.read(region, offset, size)));
    }
  }
  if (cursor !== binLength) {
    bad(`the request body has ${binLength - cursor} bytes of binary data that no input claims (check binary_data_size)`);
  }
  return inputs;
}

/** No binary input of `srcs` (BYTES aside) has its data aligned for its dtype, the binary part starting at address `start` (mod 8). */
function noneAligned(srcs: readonly InputSource[], start: number): boolean {
  let off = start;
  let any = false;
  for (const src of srcs) {
    if (src.binarySize < 0) continue;
    if (src.dtype !== "BYTES") {
      if (off % elementSize(src.dtype) === 0) return false;
      any = true;
    }
    off += src.binarySize;
  }
  return any;
}

/**
 * A JSON request body seen before, with its `data` arrays cut out: clients
 * of one model send the same text around new numbers request after request
 * (perf_analyzer, tritonclient). A body made of the same bytes around
 * numeric arrays (digits, signs, points, exponents, commas and whitespace
 * only) skips parsing and checking the rest; only its arrays are parsed, and
 * the element checks run as for any body, in the same order.
 */
interface JsonPlan extends RequestPlan {
  /**
   * The text around the arrays: `segments[0]` up to and with the first
   * array's `[`, then from each `]` up to and with the next `[`, the last
   * from the last `]` to the end. ASCII only.
   */
  segments: readonly string[];
  /** The inputs, in order, each with one array (`binarySize` unused). */
  inputs: readonly InputSource[];
}

const jsonPlans: JsonPlan[] = [];

/** Characters of a flat array of JSON numbers (between its brackets). */
const NUMERIC = new Uint8Array(128);
for (const c of "0123456789+-.eE, \t\n\r") NUMERIC[c.charCodeAt(0)] = 1;

/**
 * The end of a numeric array's elements, with what json-exact.ts's
 * `mayHoldUnsafeIntegers` asks of them in the same pass: the index of the
 * first character from `i` that is not {@link NUMERIC}, or -1 when the
 * characters up to it hold an integer token of 16 or more digits (its
 * digits not after `.`, `e`, `E`, `+`, or a `-` that follows one of
 * `0-9.eE+-`, and not followed by `.`, `e` or `E`). Its array then goes
 * to the full parse, which keeps such integers exact.
 */
function numericArrayEnd(text: string, i: number): number {
  const n = text.length;
  // The previous two characters (numeric characters only; 0 before the array).
  let p1 = 0;
  let p2 = 0;
  while (i < n) {
    const c = text.charCodeAt(i);
    if (c >= 128 || NUMERIC[c] === 0) break;
    if (c < 48 || c > 57) {
      p2 = p1;
      p1 = c;
      i++;
      continue;
    }
    const start = i;
    while (i < n) {
      const d = text.charCodeAt(i);
      if (d < 48 || d > 57) break;
      i++;
    }
    if (i - start >= 16) {
      const next = i < n ? text.charCodeAt(i) : 0;
      // p1 and p2: the two characters before the run (p1 is no digit, or the run would be longer).
      const integer =
        next !== 46 && next !== 101 && next !== 69 && p1 !== 46 && p1 !== 101 && p1 !== 69 && p1 !== 43 && (p1 !== 45 || ((p2 < 48 || p2 > 57) && p2 !== 46 && p2 !== 101 && p2 !== 69 && p2 !== 43 && p2 !== 45));
      if (integer) return -1;
    }
    p2 = 57;
    p1 = 57;
  }
  return i;
}

/**
 * The `[` and `]` indexes of every array that is the value of a `"data"`
 * key, anywhere in a JSON text, when each holds only numeric characters
 * (see {@link NUMERIC}); undefined when a `"data"` key has any other value.
 */
function numericDataArrays(text: string): number[] | undefined {
  const at: number[] = [];
  const n = text.length;
  let i = 0;
  while (i < n) {
    if (text.charCodeAt(i) !== 34) {
      i++;
      continue;
    }
    let j = i + 1;
    for (;;) {
      if (j >= n) return undefined;
      const d = text.charCodeAt(j);
      if (d === 34) break;
      j += d === 92 ? 2 : 1;
    }
    const key = j - i === 5 && text.startsWith("data", i + 1);
    i = j + 1;
    if (!key) continue;
    let k = i;
    while (k < n && isSpace(text.charCodeAt(k))) k++;
    if (text.charCodeAt(k) !== 58) continue; // "data" as a value, not a key
    k++;
    while (k < n && isSpace(text.charCodeAt(k))) k++;
    if (text.charCodeAt(k) !== 91) return undefined;
    // The text has no integer of 16+ digits (see decodeInferRequest), so never -1 here.
    const end = numericArrayEnd(text, k + 1);
    if (end < 0 || text.charCodeAt(end) !== 93) return undefined;
    at.push(k, end);
    i = end + 1;
  }
  return at;
}

const isSpace = (c: number): boolean => c === 32 || c === 9 || c === 10 || c === 13;

/**
 * Keeps the plan of a JSON body just decoded, when every input came as a
 * flat numeric `data` array and those are the only `data` arrays in it.
 */
function keepJsonPlan(
  text: string,
  json: Record<string, unknown>,
  sources: InputSource[],
  decoded: { id: string | undefined; parameters: Record<string, RequestParameter>; outputs: OutputSpec[]; binaryDefault: boolean },
): void {
  const at = numericDataArrays(text);
  const inputsJson = json["inputs"] as Record<string, unknown>[];
  if (at === undefined || at.length !== 2 * sources.length || sources.length !== inputsJson.length) return;
  const segments: string[] = [];
  let from = 0;
  let around = 0;
  for (let k = 0; k < sources.length; k++) {
    // The array found must be this input's data, element for element.
    const data = inputsJson[k]!["data"];
    const found = JSON.parse(text.slice(at[2 * k], at[2 * k + 1]! + 1)) as unknown[];
    if (!Array.isArray(data) || found.length !== data.length || !found.every((v, i) => Object.is(v, data[i]))) return;
    segments.push(text.slice(from, at[2 * k]! + 1));
    around += at[2 * k]! + 1 - from;
    from = at[2 * k + 1]!;
  }
  segments.push(text.slice(from));
  around += text.length - from;
  if (around > PLAN_MAX_BYTES) return;
  if (jsonPlans.length >= PLAN_CACHE_SIZE) jsonPlans.shift();
  jsonPlans.push({
    segments,
    id: decoded.id,
    parameters: deepFreeze(decoded.parameters),
    inputs: Object.freeze(sources),
    outputs: Object.freeze(decoded.outputs.map((o) => deepFreeze(o))),
    outputNames: Object.freeze(decoded.outputs.map((o) => o.name)),
    binaryDefault: decoded.binaryDefault,
    usesShm: decoded.outputs.some((o) => o.shm !== undefined),
    scheduling: hasSchedulingParameters(decoded.parameters),
  });
}

/**
 * The kept plan whose text surrounds this body's arrays, and the arrays
 * (parsed); undefined when none fits, or an array is not valid JSON or has
 * a long integer (the full path then answers, with its errors).
 */
function matchJsonPlan(text: string): { plan: JsonPlan; data: unknown[][] } | undefined {
  for (let p = jsonPlans.length - 1; p >= 0; p--) {
    const plan = jsonPlans[p]!;
    const segs = plan.segments;
    if (!text.startsWith(segs[0]!)) continue;
    let off = segs[0]!.length;
    const arrays: number[] = [];
    let k = 1;
    let unsafe = false;
    for (; k < segs.length; k++) {
      const end = numericArrayEnd(text, off);
      if (end < 0) {
        unsafe = true;
        break;
      }
      if (!text.startsWith(segs[k]!, end)) break;
      arrays.push(off - 1, end);
      off = end + segs[k]!.length;
    }
    // An integer JSON.parse would round: the full path parses it exactly.
    if (unsafe) return undefined;
    if (k !== segs.length || off !== text.length) continue;
    const data: unknown[][] = [];
    for (let a = 0; a < arrays.length; a += 2) {
      const slice = text.slice(arrays[a], arrays[a + 1]! + 1);
      try {
        data.push(JSON.parse(slice) as unknown[]);
      } catch {
        return undefined;
      }
    }
    return { plan, data };
  }
  return undefined;
}

/** The decoded request of a kept plan, around this request's input tensors. */
function decodedFromPlan(plan: RequestPlan, inputs: Tensor[]): DecodedRequest {
  const input: InferInput = { inputs, outputs: [...plan.outputNames], parameters: plan.parameters as Record<string, RequestParameter> };
  if (plan.id !== undefined) input.id = plan.id;
  if (plan.scheduling) takeSchedulingParameters(input, plan.parameters);
  return { input, outputs: plan.outputs as OutputSpec[], binaryDefault: plan.binaryDefault };
}

/** Forgets every kept binary header and JSON body plan (tests compare decoding with and without them). */
export function forgetDecodePlans(): void {
  plans.length = 0;
  jsonPlans.length = 0;
}

/**
 * Decodes an inference request body.
 *
 * @param body - raw body bytes.
 * @param headerLength - the `Inference-Header-Content-Length` header.
 * @param shm - shared-memory access (inputs with `shared_memory_region`); absent: such inputs are an error.
 * @returns the runtime's input and the output encoding.
 * @throws {ServingError} `ERR_INVALID_REQUEST` for anything malformed
 * (JSON, datatypes, shapes, element counts, binary sizes).
 */
export function decodeInferRequest(
  body: Uint8Array | undefined,
  headerLength: string | string[] | undefined,
  shm?: SharedMemoryAccess,
): DecodedRequest {
  if (!body || body.length === 0) bad("the inference request has an empty body; send a JSON object with 'inputs'");
  const hdrLen = headerLengthOf(body, headerLength);
  const cached = hdrLen <= PLAN_MAX_BYTES ? cachedPlan(body, hdrLen) : undefined;
  if (cached !== undefined && (shm !== undefined || !cached.usesShm)) {
    const inputs = inputsFromPlan(cached, body, hdrLen, shm);
    return decodedFromPlan(cached, inputs);
  }
  // A JSON body (no binary part) whose text around its arrays was seen before.
  let ascii: string | undefined;
  if (hdrLen === body.length && jsonPlans.length > 0 && hdrLen <= JSON_PLAN_MAX_BODY) {
    ascii = textOf(body, hdrLen, "latin1");
    const m = matchJsonPlan(ascii);
    if (m !== undefined && (shm !== undefined || !m.plan.usesShm)) {
      const { plan, data } = m;
      const inputs: Tensor[] = [];
      for (let k = 0; k < plan.inputs.length; k++) {
        const src = plan.inputs[k]!;
        inputs.push(tensorFromJson(src.name, src.dtype, src.dims as number[], src.count, data[k]));
      }
      return decodedFromPlan(plan, inputs);
    }
  }
  const binary = body.subarray(hdrLen);
  const json = parseHeader(body, hdrLen);
  if (!isObject(json)) bad("the inference request must be a JSON object");
  const id = json["id"];
  if (id !== undefined && typeof id !== "string") bad("'id' must be a string");
  const parameters = checkParameters(json["parameters"], "request");
  checkSchedulingParameters(parameters);
  const inputsJson = json["inputs"];
  if (!Array.isArray(inputsJson)) bad("the inference request must have an 'inputs' array");
  let cursor = 0;
  const inputs: Tensor[] = [];
  // Where each input's bytes came from; undefined once an input has `data`.
  let plan: InputSource[] | undefined = [];
  // Each input when all have `data`, in a body with no binary part.
  let jsonSources: InputSource[] | undefined = binary.length === 0 ? [] : undefined;
  for (const [i, inp] of inputsJson.entries()) {
    if (!isObject(inp)) bad(`inputs[${i}] must be a JSON object`);
    const name = inp["name"];
    if (typeof name !== "string" || name === "") bad(`inputs[${i}] must have a 'name' string`);
    const datatype = inp["datatype"];
    if (!isDType(datatype)) {
      bad(`input '${name}' has an unknown datatype ${show(datatype)} (expected one of BOOL, UINT8, ..., FP32, FP64, BF16, BYTES)`);
    }
    const shape = inp["shape"];
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      bad(`input '${name}' must have a 'shape' array of non-negative integers`);
    }
    const dims = shape as number[];
    const count = elementCount(dims);
    const params = checkParameters(inp["parameters"], `input '${name}'`);
    const hasData = Object.hasOwn(inp, "data");
    const binSize = params["binary_data_size"];
    const region = params["shared_memory_region"];
    const sources = [hasData, binSize !== undefined, region !== undefined].filter(Boolean).length;
    if (sources === 0) bad(`input '${name}' has no 'data', no 'binary_data_size' and no 'shared_memory_region'`);
    if (sources > 1) bad(`input '${name}' must have exactly one of 'data', 'binary_data_size' and 'shared_memory_region'`);
    if (binSize !== undefined) {
      if (typeof binSize !== "number" || !Number.isSafeInteger(binSize) || binSize < 0) {
        bad(`input '${name}': binary_data_size must be a non-negative integer`);
      }
      if (cursor + binSize > binary.length) {
        bad(
          `input '${name}': binary_data_size ${binSize} goes past the end of the request body (${binary.length - cursor} binary bytes left)`,
        );
      }
      const bytes = binary.subarray(cursor, cursor + binSize);
      cursor += binSize;
      inputs.push(tensorFromBytes(name, datatype, dims, count, bytes));
      plan?.push({ name, dtype: datatype, dims: Object.freeze(dims.slice()), count, binarySize: binSize });
      jsonSources = undefined;
    } else if (region !== undefined) {
      if (!shm) bad(`input '${name}': shared memory is not available on this server`);
      if (typeof region !== "string") bad(`input '${name}': shared_memory_region must be a string`);
      const size = params["shared_memory_byte_size"];
      const offset = params["shared_memory_offset"] ?? 0;
      if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
        bad(`input '${name}': shared_memory_byte_size must be given with shared_memory_region, as a non-negative integer`);
      }
      if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
        bad(`input '${name}': shared_memory_offset must be a non-negative integer`);
      }
      const direct = shm.tensor?.(region, offset, size, datatype, dims, name);
      inputs.push(direct ?? tensorFromBytes(name, datatype, dims, count, shm.read(region, offset, size)));
      plan?.push({ name, dtype: datatype, dims: Object.freeze(dims.slice()), count, binarySize: -1, shm: { region, offset, size } });
      jsonSources = undefined;
    } else {
      inputs.push(tensorFromJson(name, datatype, dims, count, inp["data"]));
      plan = undefined;
      jsonSources?.push({ name, dtype: datatype, dims: Object.freeze(dims.slice()), count, binarySize: 0 });
    }
  }
  if (cursor !== binary.length) {
    bad(`the request body has ${binary.length - cursor} bytes of binary data that no input claims (check binary_data_size)`);
  }
  const binaryDefault = parameters["binary_data_output"] === true;
  const outputs: OutputSpec[] = [];
  const outputsJson = json["outputs"];
  if (outputsJson !== undefined && outputsJson !== null) {
    if (!Array.isArray(outputsJson)) bad("'outputs' must be an array");
    for (const [i, o] of outputsJson.entries()) {
      if (!isObject(o)) bad(`outputs[${i}] must be a JSON object`);
      const name = o["name"];
      if (typeof name !== "string" || name === "") bad(`outputs[${i}] must have a 'name' string`);
      const p = checkParameters(o["parameters"], `output '${name}'`);
      if (p["classification"] !== undefined) {
        throw new ServingError("ERR_UNSUPPORTED", `output '${name}': the classification extension is not supported by this server`);
      }
      const bin = p["binary_data"];
      if (bin !== undefined && typeof bin !== "boolean") bad(`output '${name}': binary_data must be true or false`);
      const spec: OutputSpec = { name, binary: bin ?? binaryDefault };
      const r = p["shared_memory_region"];
      if (r !== undefined) {
        if (!shm) bad(`output '${name}': shared memory is not available on this server`);
        const size = p["shared_memory_byte_size"];
        const offset = p["shared_memory_offset"] ?? 0;
        if (typeof r !== "string") bad(`output '${name}': shared_memory_region must be a string`);
        if (typeof size !== "number" || !Number.isSafeInteger(size) || size < 0) {
          bad(`output '${name}': shared_memory_byte_size must be given with shared_memory_region, as a non-negative integer`);
        }
        if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) {
          bad(`output '${name}': shared_memory_offset must be a non-negative integer`);
        }
        spec.shm = { region: r, byteSize: size, offset };
      }
      outputs.push(spec);
    }
  }
  const input: InferInput = { inputs, outputs: outputs.map((o) => o.name), parameters };
  if (id !== undefined) input.id = id;
  takeSchedulingParameters(input, parameters);
  if (jsonSources !== undefined && jsonSources.length > 0 && hdrLen <= JSON_PLAN_MAX_BODY) {
    // Kept only for an ASCII body without long integers (byte and character offsets agree; no exact-integer parse)
    ascii ??= textOf(body, hdrLen, "latin1");
    const text = textOf(body, hdrLen, "utf8");
    // No escapes either: every "data" key is then spelled as such, and numericDataArrays finds them all.
    if (text === ascii && !text.includes("\\") && !mayHoldUnsafeIntegers(text)) {
      keepJsonPlan(text, json, jsonSources, { id, parameters, outputs, binaryDefault });
    }
  }
  if (plan !== undefined && hdrLen <= PLAN_MAX_BYTES) {
    // Kept as parsed: frozen, as every later request with this header shares them.
    keepPlan({
      bytes: Buffer.from(body.subarray(0, hdrLen)),
      id,
      parameters: deepFreeze(parameters),
      inputs: Object.freeze(plan),
      outputs: Object.freeze(outputs.map((o) => deepFreeze(o))),
      outputNames: Object.freeze(outputs.map((o) => o.name)),
      binaryDefault,
      usesShm: plan.some((x) => x.shm !== undefined) || outputs.some((o) => o.shm !== undefined),
      scheduling: hasSchedulingParameters(parameters),
    });
  }
  return { input, outputs, binaryDefault };
}

/** Freezes an object and the objects in it (parsed JSON: no cycles). */
function deepFreeze<T>(v: T): T {
  if (typeof v === "object" && v !== null && !Object.isFrozen(v)) {
    Object.freeze(v);
    for (const x of Object.values(v)) deepFreeze(x);
  }
  return v;
}

/** Parses the BYTES wire form: each element a 4-byte little-endian length and its bytes. */
export function parseBytesElements(bytes: Uint8Array, count: number, name: string): Uint8Array[] {
  const out: Uint8Array[] = [];
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  while (off < bytes.length) {
    if (off + 4 > bytes.length) bad(`input '${name}': BYTES data ends inside an element's 4-byte length prefix`);
    const len = dv.getUint32(off, true);
    off += 4;
    if (off + len > bytes.length) bad(`input '${name}': a BYTES element of ${len} bytes goes past the end of its data`);
    out.push(bytes.subarray(off, off + len));
    off += len;
  }
  if (out.length !== count) bad(`input '${name}': expected ${count} BYTES elements for its shape, got ${out.length}`);
  return out;
}

/** Serialises BYTES elements in the wire form (length-prefixed). */
export function serializeBytesElements(elements: readonly Uint8Array[]): Uint8Array {
  let total = 0;
  for (const e of elements) total += 4 + e.length;
  const out = Buffer.allocUnsafe(total);
  let off = 0;
  for (const e of elements) {
    out.writeUInt32LE(e.length, off);
    off += 4;
    out.set(e, off);
    off += e.length;
  }
  return out;
}

function tensorFromBytes(name: string, dtype: DType, shape: number[], count: number, bytes: Uint8Array): Tensor {
  if (dtype === "BYTES") return Tensor.fromBytes(parseBytesElements(bytes, count, name), { shape, name });
  const size = elementSize(dtype);
  if (bytes.length !== count * size) {
    bad(
      `input '${name}': got ${bytes.length} bytes of binary data, but shape [${shape.join(",")}] of ${dtype} needs ${count * size} bytes`,
    );
  }
  let view = bytes;
  if (bytes.byteOffset % size !== 0) {
    // One copy to align. Buffer.allocUnsafe's slices start at multiples of
    // 8 (its pool is kept aligned) and come with their ArrayBuffer made: a
    // fresh Uint8Array's `.buffer` would be materialized first (~0.3 µs).
    view = Buffer.allocUnsafe(bytes.length);
    view.set(bytes);
    if (view.byteOffset % size !== 0) view = new Uint8Array(bytes); // not Node's pool as documented: a fresh ArrayBuffer is aligned
  }
  const Ctor = viewClass(dtype)!;
  const typed = new Ctor(view.buffer, view.byteOffset, count);
  // Checked here and by the header's parse: no second round of checks.
  return Tensor.fromChecked(typed, dtype, shape, name);
}

function flatten(data: unknown, out: unknown[]): void {
  if (Array.isArray(data)) {
    for (const d of data) {
      if (Array.isArray(d)) flatten(d, out);
      else out.push(d);
    }
  } else {
    out.push(data);
  }
}

const INT_RANGES: Partial<Record<DType, [number, number]>> = {
  UINT8: [0, 255],
  UINT16: [0, 65535],
  UINT32: [0, 4294967295],
  INT8: [-128, 127],
  INT16: [-32768, 32767],
  INT32: [-2147483648, 2147483647],
};

/** `data` is an array with no array in it (already flat: no copy needed). */
function isFlat(data: unknown): data is unknown[] {
  if (!Array.isArray(data)) return false;
  for (let i = 0; i < data.length; i++) if (Array.isArray(data[i])) return false;
  return true;
}

function wrongElement(name: string, dtype: DType, flat: readonly unknown[], i: number, want: string): never {
  bad(`input '${name}': data[${i}] is ${show(flat[i])}, but ${dtype} needs ${want}`);
}

function tensorFromJson(name: string, dtype: DType, shape: number[], count: number, data: unknown): Tensor {
  let flat: unknown[];
  if (isFlat(data)) {
    flat = data;
  } else {
    flat = [];
    flatten(data, flat);
  }
  if (flat.length !== count) {
    bad(`input '${name}': shape [${shape.join(",")}] needs ${count} elements, but 'data' has ${flat.length}`);
  }
  if (dtype === "BYTES") {
    const els = flat.map((v, i) => (typeof v === "string" ? v : wrongElement(name, dtype, flat, i, "a string")));
    return Tensor.fromBytes(els, { shape, name });
  }
  // A typed array of its own (not over a new ArrayBuffer): V8 keeps a small
  // one on its heap, ~0.5 µs less than allocating an ArrayBuffer per input.
  const typed = new (viewClass(dtype) as unknown as new (length: number) => TypedArray)(count);
  switch (dtype) {
    case "BOOL":
      for (let i = 0; i < count; i++) {
        const v = flat[i];
        if (typeof v === "boolean") typed[i] = v ? 1 : 0;
        else if (v === 0 || v === 1) typed[i] = v;
        else wrongElement(name, dtype, flat, i, "true or false");
      }
      break;
    case "INT64":
    case "UINT64": {
      // Integers beyond 2^53 arrive as bigints (see splitBody), exact.
      const [lo, hi] = dtype === "INT64" ? [-(2n ** 63n), 2n ** 63n - 1n] : [0n, 2n ** 64n - 1n];
      for (let i = 0; i < count; i++) {
        const v = flat[i];
        if (typeof v === "bigint") {
          if (v < lo || v > hi) wrongElement(name, dtype, flat, i, `an integer in [${lo}, ${hi}]`);
          (typed as BigInt64Array)[i] = v;
          continue;
        }
        if (typeof v !== "number" || !Number.isInteger(v)) wrongElement(name, dtype, flat, i, "an integer");
        if (dtype === "UINT64" && (v as number) < 0) wrongElement(name, dtype, flat, i, "a non-negative integer");
        (typed as BigInt64Array)[i] = BigInt(v as number);
      }
      break;
    }
    case "FP16":
    case "BF16": {
      const conv = dtype === "FP16" ? floatToHalfBits : floatToBf16Bits;
      for (let i = 0; i < count; i++) {
        const v = typeof flat[i] === "bigint" ? Number(flat[i]) : flat[i];
        if (typeof v !== "number") wrongElement(name, dtype, flat, i, "a number");
        typed[i] = conv(v as number);
      }
      break;
    }
    case "FP32":
    case "FP64":
      for (let i = 0; i < count; i++) {
        const v = typeof flat[i] === "bigint" ? Number(flat[i]) : flat[i];
        if (typeof v !== "number") wrongElement(name, dtype, flat, i, "a number");
        typed[i] = v as number;
      }
      break;
    default: {
      const [lo, hi] = INT_RANGES[dtype]!;
      for (let i = 0; i < count; i++) {
        const v = flat[i];
        if (typeof v !== "number" || !Number.isInteger(v) || v < lo || v > hi) wrongElement(name, dtype, flat, i, `an integer in [${lo}, ${hi}]`);
        typed[i] = v as number;
      }
    }
  }
  return Tensor.fromChecked(typed, dtype, shape, name);
}

/** Float outputs up to this many elements are written by concatenation (longer ones: an array of texts joined once). */
const SHORT_JSON_ARRAY = 256;

/** A tensor's elements as the JSON text of a flat array (BYTES as strings), as JSON outputs carry them. */
export function jsonData(t: Tensor): string {
  if (t.dtype === "BYTES") {
    const dec = new TextDecoder("utf-8", { fatal: false });
    return JSON.stringify(t.bytes().map((b) => dec.decode(b)));
  }
  const d = t.data();
  const n = d.length;
  if ((t.dtype === "FP32" || t.dtype === "FP64") && n <= SHORT_JSON_ARRAY) {
    // A small float output (the usual answer) is written into one string: no array of texts to join.
    let text = "[";
    for (let i = 0; i < n; i++) text += i === 0 ? jsonNumber(d[i] as number) : `,${jsonNumber(d[i] as number)}`;
    return `${text}]`;
  }
  // Made at its length (setting `.length` of an empty array is a slow runtime call).
  // oxlint-disable-next-line unicorn/no-new-array -- an array of n holes, on purpose (measured: see above)
  const parts = new Array<string>(n);
  switch (t.dtype) {
    case "BOOL":
      for (let i = 0; i < n; i++) parts[i] = d[i] ? "true" : "false";
      break;
    case "FP16":
    case "BF16": {
      const conv = t.dtype === "FP16" ? halfBitsToFloat : bf16BitsToFloat;
      for (let i = 0; i < n; i++) parts[i] = jsonNumber(conv(d[i] as number));
      break;
    }
    case "FP32":
    case "FP64":
      for (let i = 0; i < n; i++) parts[i] = jsonNumber(d[i] as number);
      break;
    default:
      for (let i = 0; i < n; i++) parts[i] = String(d[i]);
  }
  return `[${parts.join(",")}]`;
}

function jsonNumber(v: number): string {
  return Number.isFinite(v) ? String(v) : "null";
}

function tensorBytes(t: Tensor): Uint8Array {
  if (t.dtype === "BYTES") return serializeBytesElements(t.bytes());
  const d = t.data();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

/** The spec of one output (few outputs: a scan beats building a Map per request). */
/** The last JSON head written for an output name: its dtype, shape and text. */
interface OutputHead {
  dtype: string;
  shape: readonly number[];
  text: string;
}
const outputHeads = new Map<string, OutputHead>();

/**
 * `{"name":…,"datatype":…,"shape":[…]` of an output: the text written for
 * the same name, dtype and shape last time when they match (a model answers
 * with the same outputs request after request; building the text was a
 * quarter of the encoder's time), else built and kept. One entry per
 * output name, so the map stays as small as the set of names.
 */
function outputHead(name: string, dtype: string, shape: readonly number[]): string {
  const last = outputHeads.get(name);
  if (last !== undefined && last.dtype === dtype && sameDims(last.shape, shape)) return last.text;
  const text = `{"name":${JSON.stringify(name)},"datatype":"${dtype}","shape":[${shape.join(",")}]`;
  if (outputHeads.size >= 1024) outputHeads.clear(); // names from many models: start again rather than grow
  outputHeads.set(name, { dtype, shape: [...shape], text });
  return text;
}

function sameDims(a: readonly number[], b: readonly number[]): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function specOf(outputs: readonly OutputSpec[], name: string): OutputSpec | undefined {
  for (let i = 0; i < outputs.length; i++) if (outputs[i]!.name === name) return outputs[i];
  return undefined;
}

/** A response's JSON text and its binary outputs (bytes, or a tensor's own typed array), before they are put in buffers. */
interface ResponseParts {
  text: string;
  binaries: ArrayBufferView[];
  binaryLength: number;
}

/**
 * Scratch memory for copying a small output into a joined body: V8 keeps a
 * typed array of up to 64 bytes on its heap, and reading its `.buffer` moves
 * it off the heap (an ArrayBuffer allocation, ~0.6 µs). Copying it into a
 * view of its own class over this memory (a byte copy: same element type)
 * and from there into the body reads no `.buffer`.
 */
const SCRATCH_BYTES = 64;
const scratch = new ArrayBuffer(SCRATCH_BYTES);
const scratchViews = new Map<unknown, { set(src: ArrayLike<number | bigint>): void }>(
  [Int8Array, Int16Array, Uint16Array, Int32Array, Uint32Array, Float32Array, Float64Array, BigInt64Array, BigUint64Array].map((C) => [C, new C(scratch)]),
);

/** The bytes of an output as a view (its own memory: no copy). */
function bytesView(b: ArrayBufferView): Uint8Array {
  return b instanceof Uint8Array ? b : new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
}

/** Copies an output's bytes into `body` at `off`. */
function copyBytes(body: Buffer, off: number, b: ArrayBufferView): void {
  if (b instanceof Uint8Array) {
    body.set(b, off);
    return;
  }
  const view = b.byteLength <= SCRATCH_BYTES ? scratchViews.get(b.constructor) : undefined;
  if (view !== undefined) {
    view.set(b as unknown as ArrayLike<number | bigint>);
    body.set(new Uint8Array(scratch, 0, b.byteLength), off);
  } else {
    body.set(bytesView(b), off);
  }
}

/**
 * Encodes the response: JSON, or a JSON header followed by binary outputs.
 * A JSON-only body also comes as its text (`text`).
 *
 * @param result - the runtime's result.
 * @param req - the decoded request (output encodings).
 * @param shm - shared-memory access for outputs placed in a region.
 * @param joinBelow - a binary response shorter than this comes as one chunk
 * (header and tensors copied together, ready for one write); longer ones
 * keep the tensors' own memory as chunks. 0 (default): never joined.
 */
export function encodeInferResponse(result: InferOutput, req: DecodedRequest, shm?: SharedMemoryAccess, joinBelow = 0): EncodedResponse {
  const fast = allBinary(result, req);
  if (fast !== undefined) return binaryChunks(fast.header, fast.header.length, fast.binaries, fast.binaryLength, joinBelow);
  const { text, binaries, binaryLength } = encodeParts(result, req, shm);
  if (binaries.length === 0) return new JsonBody(text);
  return binaryChunks(text, Buffer.byteLength(text, "utf8"), binaries, binaryLength, joinBelow);
}

/**
 * The last response whose outputs all went as binary data, without an id:
 * its header's parts and bytes. A model answers with the same outputs
 * (names, dtypes, shapes, sizes) request after request, and then its JSON
 * header is the same bytes each time: kept, it is neither built nor
 * encoded again (the header was most of the encoder's time).
 */
const lastBinary = { model: "", heads: [] as string[], sizes: [] as number[], header: Buffer.alloc(0) };
/** Most outputs a response may have for {@link allBinary} (more: the general path). */
const ALL_BINARY_MAX = 16;

/** An all-binary response: its header's bytes and its outputs' bytes (views or typed arrays). */
interface BinaryParts {
  header: Buffer;
  binaries: ArrayBufferView[];
  binaryLength: number;
}

/**
 * The parts of a response whose outputs all go as binary data from host
 * memory (no shared memory, no BYTES, no `id`), with its header reused
 * from {@link lastBinary} when the same; undefined for any other response
 * (encodeParts then encodes it).
 */
function allBinary(result: InferOutput, req: DecodedRequest): BinaryParts | undefined {
  const outs = result.outputs;
  const n = outs.length;
  if (result.id !== "" || n === 0 || n > ALL_BINARY_MAX) return undefined;
  const specs = req.outputs;
  for (let i = 0; i < n; i++) {
    const t = outs[i]!;
    const spec = specs.length > 0 ? specOf(specs, t.name!) : undefined;
    if (spec?.shm !== undefined || !(spec?.binary ?? req.binaryDefault) || t.dtype === "BYTES" || !t.isCpu()) return undefined;
  }
  const model = modelPart(result.modelName, result.modelVersion);
  const last = lastBinary;
  let same = last.model === model && last.heads.length === n;
  const binaries: ArrayBufferView[] = [];
  let binaryLength = 0;
  for (let i = 0; i < n; i++) {
    const t = outs[i]!;
    const bytes = t.data();
    binaries.push(bytes);
    binaryLength += bytes.byteLength;
    // outputHead gives the same string object while name, dtype and shape stay.
    const head = outputHead(t.name!, t.dtype, t.shape);
    if (same && (last.heads[i] !== head || last.sizes[i] !== bytes.byteLength)) same = false;
    if (!same) {
      last.heads[i] = head;
      last.sizes[i] = bytes.byteLength;
    }
  }
  if (!same) {
    last.heads.length = n;
    last.sizes.length = n;
    let parts = "";
    for (let i = 0; i < n; i++) parts += `${i > 0 ? "," : ""}${last.heads[i]},"parameters":{"binary_data_size":${last.sizes[i]}}}`;
    last.model = model;
    last.header = Buffer.from(`{${model}${parts}]}`, "utf8");
  }
  return { header: last.header, binaries, binaryLength };
}

/**
 * A binary response's chunks: one joined buffer below `joinBelow` bytes,
 * else the header and the tensors' own memory. `header` is its JSON text,
 * or its bytes already encoded (kept by {@link allBinary} and shared by
 * responses: never written to).
 */
function binaryChunks(header: string | Buffer, headerLength: number, binaries: ArrayBufferView[], binaryLength: number, joinBelow: number): EncodedResponse {
  const length = headerLength + binaryLength;
  if (length < joinBelow) {
    // One buffer for the whole body: no separate header buffer and no join later.
    const body = Buffer.allocUnsafe(length);
    let off = typeof header === "string" ? body.write(header, 0, "utf8") : header.copy(body, 0);
    for (const b of binaries) {
      copyBytes(body, off, b);
      off += b.byteLength;
    }
    return { chunks: [body], length, headerLength };
  }
  return { chunks: [typeof header === "string" ? Buffer.from(header, "utf8") : header, ...binaries.map(bytesView)], length, headerLength };
}

/** The JSON text of a response (the whole body, or the header before the binary outputs) and its binary outputs. */
function encodeParts(result: InferOutput, req: DecodedRequest, shm: SharedMemoryAccess | undefined): ResponseParts {
  const specs = req.outputs.length > 8 ? new Map(req.outputs.map((o) => [o.name, o])) : undefined;
  const binaries: ArrayBufferView[] = [];
  let binaryLength = 0;
  let parts = "";
  for (const raw of result.outputs) {
    const name = raw.name!;
    const spec = specs !== undefined ? specs.get(name) : specOf(req.outputs, name);
    if (parts !== "") parts += ",";
    const head = outputHead(name, raw.dtype, raw.shape);
    if (spec?.shm && shm && raw.dtype !== "BYTES" && shm.writeTensor) {
      // Device memory (a CUDA region) takes the tensor where it is: no trip through the host.
      if (raw.byteLength > spec.shm.byteSize) {
        bad(`output '${name}' needs ${raw.byteLength} bytes, but its shared memory region slot has ${spec.shm.byteSize}`);
      }
      if (shm.writeTensor(spec.shm.region, spec.shm.offset, spec.shm.byteSize, raw)) {
        parts +=
          `${head},"parameters":{"shared_memory_region":${JSON.stringify(spec.shm.region)},"shared_memory_byte_size":${raw.byteLength}` +
          `${spec.shm.offset ? `,"shared_memory_offset":${spec.shm.offset}` : ""}}}`;
        continue;
      }
    }
    const t = raw.isCpu() ? raw : raw.toCpu();
    if (spec?.shm && shm) {
      const bytes = tensorBytes(t);
      if (bytes.length > spec.shm.byteSize) {
        bad(`output '${name}' needs ${bytes.length} bytes, but its shared memory region slot has ${spec.shm.byteSize}`);
      }
      shm.write(spec.shm.region, spec.shm.offset, spec.shm.byteSize, [bytes]);
      parts +=
        `${head},"parameters":{"shared_memory_region":${JSON.stringify(spec.shm.region)},"shared_memory_byte_size":${bytes.length}` +
        `${spec.shm.offset ? `,"shared_memory_offset":${spec.shm.offset}` : ""}}}`;
      continue;
    }
    if (spec?.binary ?? req.binaryDefault) {
      // The typed array itself: its bytes are viewed or copied when the body is put together.
      const bytes: ArrayBufferView = t.dtype === "BYTES" ? serializeBytesElements(t.bytes()) : t.data();
      binaries.push(bytes);
      binaryLength += bytes.byteLength;
      parts += `${head},"parameters":{"binary_data_size":${bytes.byteLength}}}`;
    } else {
      parts += `${head},"data":${jsonData(t)}}`;
    }
  }
  const idPart = result.id ? `"id":${JSON.stringify(result.id)},` : "";
  const text = `{${idPart}${modelPart(result.modelName, result.modelVersion)}${parts}]}`;
  return { text, binaries, binaryLength };
}

/** The last model name and version answered, and their text: a server answers the same model request after request. */
let lastModel = "";
let lastVersion = -1;
let lastModelText = "";

/** `"model_name":…,"model_version":"…","outputs":[` of a response. */
function modelPart(name: string, version: number): string {
  if (name !== lastModel || version !== lastVersion) {
    lastModelText = `"model_name":${JSON.stringify(name)},"model_version":"${version}","outputs":[`;
    lastModel = name;
    lastVersion = version;
  }
  return lastModelText;
}

/**
 * What a model instance in a worker thread and the serving thread send each
 * other (see `thread-instance.ts`): requests and responses with their
 * tensors handed over by `Tensor.transfer` (no byte copy, but for a worker's
 * own JS memory), BYTES tensors (which have no DLPack form) as copies of
 * their elements, and errors as message and Triton code. A tensor is its
 * DLPack address (a number) and its name; BYTES elements are base64.
 *
 * A small host output of the worker ({@link INLINE_MAX_BYTES} or less) goes
 * back as its bytes instead ({@link toWire} with `inline`): the codec copies
 * them into the ring and the serving thread into fresh memory of its own.
 * Two copies of a few KiB cost far less than a DLPack handover (a native
 * struct, a handle and a finalizer on each side, and for the worker's own
 * JS memory a copy anyway), and leave the worker nothing to keep alive.
 * Inputs always cross without a copy: a model sees the caller's memory.
 * A request's inputs are parked together in one native call
 * (`NativeTensor.park`: shares of the tensors themselves, in a process-wide
 * table) and claimed by the worker in one more, instead of a DLPack struct,
 * capsule and handle per tensor on each side ({@link WireParked}).
 *
 * @module
 */
import { isMainThread } from "node:worker_threads";

import { viewClass, type DType, type TypedArray, type TypedArrayConstructor } from "../dtype.js";
import { NativeTensor } from "../native.js";
import { Tensor, type TransferredTensor } from "../tensor.js";
import { ModelError, type ModelErrorCode } from "./model-error.js";
import { InferenceRequest, type RequestControl, type RequestParameter } from "./request.js";
import { InferenceResponse } from "./response.js";
import { sized } from "./sized-array.js";

/**
 * A tensor on the wire: the address of its `DLManagedTensorVersioned`,
 * whose ownership travels with the message (a number: exact for every
 * user-space address of today's 64-bit platforms; a bigint otherwise, and
 * the message then goes by `postMessage`), or a BYTES tensor's elements,
 * concatenated in base64 with their lengths.
 */
export type WireTensor =
  | { readonly name: string | undefined; readonly address: number | bigint }
  | { readonly name: string | undefined; readonly shape: readonly number[]; readonly lengths: number[]; readonly base64: string }
  | WireInline
  | WireParked;

/**
 * A request input parked with the others of its request (see
 * {@link WireRequest.parked}): its place in the batch.
 */
export interface WireParked {
  readonly name: string | undefined;
  readonly slot: number;
  /** The tensor's dtype and shape, so that the receiver need not ask the binding. */
  readonly dtype: DType;
  readonly shape: readonly number[];
}

/**
 * A small host tensor sent as its bytes (see {@link INLINE_MAX_BYTES}).
 * From {@link toWire}, `data` views the tensor's own memory; decoded, it is
 * a copy that the receiver owns.
 */
export interface WireInline {
  readonly name: string | undefined;
  readonly dtype: DType;
  readonly shape: readonly number[];
  readonly data: Uint8Array;
}

/**
 * Host outputs up to this size (bytes) go back by value, not by DLPack
 * address: below it, copying into the ring and out again costs less than
 * a handover (about 5 µs a tensor here).
 */
export const INLINE_MAX_BYTES = 16 * 1024;

/** A request on the wire. */
export interface WireRequest {
  readonly inputs: WireTensor[];
  /** The batch id of the inputs parked together ({@link WireParked}), 0 for none; the receiver claims it once. */
  readonly parked: number;
  readonly requested: string[];
  readonly requestId: string;
  readonly parameters: Record<string, RequestParameter>;
  readonly modelName: string;
  readonly modelVersion: number;
}

/** An error on the wire: a ModelError keeps its code. */
export interface WireError {
  readonly message: string;
  readonly code: ModelErrorCode | undefined;
  /** An error that is not a ModelError: its class name and stack, for the client's message and the log. */
  readonly name?: string | undefined;
  readonly stack?: string | undefined;
}

/**
 * A response on the wire; `other` stands for an element that was not an
 * InferenceResponse (the serving thread's checks then refuse it as they
 * would in-thread).
 */
export type WireResponse = { readonly outputs: WireTensor[]; readonly error: WireError | undefined } | { readonly other: string };

/** Typed arrays of up to this many bytes live in V8's heap, without an ArrayBuffer of their own until one is asked for. */
const ON_HEAP_BYTES = 64;
/** One element's bytes, and a view of each class over them ({@link copyOnHeap}, {@link bytesOnHeap}). */
const oneElement = new Uint8Array(new ArrayBuffer(8));
const elementViews = new Map<TypedArrayConstructor, TypedArray>();

/** A view of class `Ctor` of the one element in {@link oneElement}. */
function elementView(Ctor: TypedArrayConstructor): { [k: number]: number | bigint } {
  let one = elementViews.get(Ctor);
  if (one === undefined) elementViews.set(Ctor, (one = new Ctor(oneElement.buffer, 0, 1)));
  return one as unknown as { [k: number]: number | bigint };
}

/**
 * A copy of the few `bytes` as a new array of class `Ctor`, element by
 * element, so that it stays in V8's heap: `new Ctor(bytes.buffer, …)` on
 * the codec's copy (itself in the heap) moved it out into an ArrayBuffer of
 * its own, about 0.7 µs an output here, more than the rest of a reply's
 * decoding. Undefined if an element is a NaN (read as a number, its payload
 * might not survive) or the bytes are not whole elements.
 */
function copyOnHeap(Ctor: TypedArrayConstructor, bytes: Uint8Array): TypedArray | undefined {
  const size = Ctor.BYTES_PER_ELEMENT;
  const n = bytes.length / size;
  if (!Number.isInteger(n)) return undefined;
  const one = elementView(Ctor);
  // (Every view class takes a length too; dtype.ts's constructor type names only the buffer form.)
  const out = new (Ctor as unknown as new (length: number) => TypedArray)(n);
  const element = one as { readonly [k: number]: number | bigint };
  const to = out as unknown as { [k: number]: number | bigint };
  for (let k = 0, b = 0; k < n; k++) {
    for (let j = 0; j < size; j++) oneElement[j] = bytes[b++]!;
    const v = element[0]!;
    if (Number.isNaN(v)) return undefined;
    to[k] = v;
  }
  return out;
}

/**
 * The bytes of the few elements of `v` (of class `Ctor`), copied element by
 * element into a new array in V8's heap: `new Uint8Array(v.buffer, …)` on
 * a model's small output (itself in the heap, as `new Float32Array(4)` is)
 * moved it out into an ArrayBuffer of its own first, about 0.7 µs an output.
 * Undefined if an element is a NaN (its payload might not survive a number).
 */
function bytesOnHeap(Ctor: TypedArrayConstructor, v: TypedArray): Uint8Array | undefined {
  if (v.constructor !== Ctor) return undefined;
  const one = elementView(Ctor);
  const size = Ctor.BYTES_PER_ELEMENT;
  const from = v as unknown as { readonly [k: number]: number | bigint };
  const out = new Uint8Array(v.byteLength);
  for (let k = 0, b = 0; k < v.length; k++) {
    const x = from[k]!;
    if (Number.isNaN(x)) return undefined;
    one[0] = x;
    for (let j = 0; j < size; j++) out[b++] = oneElement[j]!;
  }
  return out;
}

/**
 * Packs a tensor: its memory is handed over (BYTES elements are copied);
 * with `inline`, a host tensor of {@link INLINE_MAX_BYTES} or less goes by
 * value instead (only the binary codec and `postMessage` carry that form).
 */
export function toWire(t: Tensor, inline = false): WireTensor {
  const dtype = t.dtype;
  if (inline && dtype !== "BYTES" && t.isCpu() && t.byteLength <= INLINE_MAX_BYTES) {
    const v = t.data();
    const copy = v.byteLength <= ON_HEAP_BYTES ? bytesOnHeap(viewClass(dtype)!, v) : undefined;
    if (copy !== undefined) return { name: t.name, dtype, shape: t.shape, data: copy };
    const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
    // A window on a larger buffer is cut out: a message that goes by postMessage (a full ring) clones a view's whole buffer.
    return { name: t.name, dtype, shape: t.shape, data: v.buffer.byteLength === v.byteLength ? bytes : bytes.slice() };
  }
  if (dtype === "BYTES") {
    const elements = t.bytes();
    return { name: t.name, shape: t.shape, lengths: elements.map((b) => b.byteLength), base64: Buffer.concat(elements).toString("base64") };
  }
  const address = t.transfer().address;
  const n = Number(address);
  return { name: t.name, address: Number.isSafeInteger(n) ? n : address };
}

/** Unpacks a tensor; call once per wire tensor (it takes ownership of the memory). Not for a {@link WireParked} one (see {@link requestFromWire}). */
export function fromWire(w: WireTensor): Tensor {
  if ("slot" in w) throw new Error("a parked tensor is unpacked with its request");
  if ("data" in w) {
    // The codec's copy is fresh, aligned memory of exactly the shape's size (the sender's tensor was checked): no checks again.
    const Ctor = viewClass(w.dtype);
    const d = w.data;
    if (Ctor !== undefined && Object.isFrozen(w.shape)) {
      const own = d.byteLength <= ON_HEAP_BYTES ? copyOnHeap(Ctor, d) : undefined;
      if (own !== undefined) return Tensor.fromChecked(own, w.dtype, w.shape, w.name);
      if (d.byteOffset % Ctor.BYTES_PER_ELEMENT === 0) return Tensor.fromChecked(new Ctor(d.buffer, d.byteOffset, d.byteLength / Ctor.BYTES_PER_ELEMENT), w.dtype, w.shape, w.name);
    }
    return Tensor.from(w.data, w.name === undefined ? { dtype: w.dtype, shape: w.shape } : { dtype: w.dtype, shape: w.shape, name: w.name });
  }
  if ("base64" in w) {
    const all = Buffer.from(w.base64, "base64");
    let at = 0;
    const elements = w.lengths.map((n) => all.subarray(at, (at += n)));
    return Tensor.fromBytes(elements, { shape: w.shape, ...(w.name === undefined ? {} : { name: w.name }) });
  }
  const transferred: TransferredTensor = { kind: "tensorbridge.tensor", address: BigInt(w.address), name: w.name };
  return Tensor.fromTransferred(transferred);
}

/**
 * Packs a request: its inputs with a native handle (all but BYTES) are
 * parked together, in one native call. As `Tensor.transfer()` does, a
 * worker's own JS memory (which dies with the worker) is copied first.
 */
export function requestToWire(r: InferenceRequest): WireRequest {
  const tensors = r.inputs();
  const inputs = sized<WireTensor>(tensors.length);
  let natives: NativeTensor[] | undefined;
  let copies: NativeTensor[] | undefined;
  // (Indexed loops here and below: for-of over these arrays allocated an iterator result per element.)
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i]!;
    const native = t.dtype === "BYTES" ? undefined : Tensor.nativeOf(t);
    if (native === undefined) {
      inputs[i] = toWire(t);
      continue;
    }
    let sent = native;
    if (!isMainThread && native.jsMemory) (copies ??= []).push((sent = native.deepCopy()));
    (natives ??= []).push(sent);
    inputs[i] = { name: t.name, slot: natives.length - 1, dtype: t.dtype, shape: t.shape };
  }
  let parked = 0;
  try {
    if (natives !== undefined) parked = NativeTensor.park(natives);
  } finally {
    // The batch holds its own shares of the copies.
    if (copies !== undefined) for (const c of copies) c.drop();
  }
  return {
    inputs,
    parked,
    requested: r.requestedOutputNames(),
    requestId: r.requestId,
    parameters: { ...r.parameters },
    modelName: r.modelName,
    modelVersion: r.modelVersion,
  };
}

/** Unpacks a request; `control` gives it its sender and cancelled flag. */
export function requestFromWire(w: WireRequest, control?: RequestControl): InferenceRequest {
  const natives = w.parked === 0 ? undefined : NativeTensor.claim(w.parked);
  const inputs = sized<Tensor>(w.inputs.length);
  for (let i = 0; i < w.inputs.length; i++) {
    const t = w.inputs[i]!;
    inputs[i] = "slot" in t ? Tensor.fromNative(natives![t.slot]!, t.name, t.dtype, Object.isFrozen(t.shape) ? t.shape : Object.freeze([...t.shape])) : fromWire(t);
  }
  return new InferenceRequest(
    {
      inputs,
      requestedOutputNames: w.requested,
      requestId: w.requestId,
      parameters: w.parameters,
      modelName: w.modelName,
      modelVersion: w.modelVersion,
    },
    control,
  );
}

/** Drops the inputs of `w` still parked (its receiver is gone); inputs it claimed already are its own. */
export function discardRequest(w: WireRequest): void {
  if (w.parked !== 0) NativeTensor.discard(w.parked);
}

/** Packs an error (anything thrown). */
export function errorToWire(e: unknown): WireError {
  if (e instanceof ModelError) return { message: e.message, code: e.code };
  if (e instanceof Error) return { message: e.message, code: undefined, name: e.name, stack: e.stack };
  return { message: String(e), code: undefined };
}

/** Unpacks an error: a ModelError when it was one, else an Error with the thrown one's class name and stack. */
export function errorFromWire(w: WireError): Error {
  if (w.code !== undefined) return new ModelError(w.message, w.code);
  const e = new Error(w.message);
  if (w.name !== undefined) e.name = w.name;
  if (w.stack !== undefined) e.stack = w.stack;
  return e;
}

/** What `execute()` returned, on the wire: its responses, or the type of what was not an array. */
export type WireResult = { readonly responses: WireResponse[] } | { readonly notArray: string };

/**
 * Packs one response (returned or sent). A response whose outputs cannot be
 * packed becomes that response's error. `inline`: small host outputs by
 * value (see {@link toWire}).
 */
export function responseToWire(r: unknown, inline = false): WireResponse {
  if (!(r instanceof InferenceResponse)) return { other: r === null ? "null" : typeof r };
  try {
    const tensors = r.outputTensors;
    const outputs = sized<WireTensor>(tensors.length);
    for (let i = 0; i < tensors.length; i++) outputs[i] = toWire(tensors[i]!, inline);
    return { outputs, error: r.error === undefined ? undefined : errorToWire(r.error) };
  } catch (e) {
    return { outputs: [], error: { message: `an output could not be handed to the serving thread: ${e instanceof Error ? e.message : String(e)}`, code: "INTERNAL" } };
  }
}

/**
 * Unpacks one response: an InferenceResponse, or a stand-in that is not
 * one (the serving thread's checks then refuse it as they would in-thread).
 */
export function responseFromWire(r: WireResponse): unknown {
  if ("other" in r) return { notAnInferenceResponse: r.other };
  const outputTensors = r.outputs.map(fromWire);
  return new InferenceResponse(r.error === undefined ? { outputTensors } : { outputTensors, error: errorFromWire(r.error) });
}

/** Packs what `execute()` returned; `inline`: small host outputs by value (see {@link toWire}). */
export function resultToWire(out: unknown, inline = false): WireResult {
  if (!Array.isArray(out)) return { notArray: out === null ? "null" : typeof out };
  const responses = sized<WireResponse>(out.length);
  for (let i = 0; i < out.length; i++) responses[i] = responseToWire(out[i], inline);
  return { responses };
}

/**
 * Unpacks what `execute()` returned into what it would have returned in
 * the serving thread, as far as the runtime's checks can tell: responses,
 * a stand-in that is not an InferenceResponse, or a value of the type that
 * was not an array.
 */
export function resultFromWire(w: WireResult): unknown {
  if ("notArray" in w) return NOT_ARRAY[w.notArray];
  return w.responses.map(responseFromWire);
}

// `null` stays null: a model that is not decoupled returns nothing for requests it answered through their senders.
const NOT_ARRAY: Record<string, unknown> = { undefined, null: null, string: "", number: 0, boolean: false, bigint: 0n, symbol: Symbol("result"), function: () => {}, object: {} };

/**
 * One `send()` of a response sender in the worker, to the serving
 * thread's sender of the same request: request `index` of execute call
 * `call`; `response` undefined is the final flag alone.
 */
export interface WireSend {
  readonly op: "send";
  readonly call: number;
  readonly index: number;
  readonly response: WireResponse | undefined;
  readonly final: boolean;
}

/**
 * A BLS call from a model in the worker (see bls.ts), to the serving
 * thread, which runs it in the instance's context; the inputs are handed
 * over as execute()'s are.
 */
export interface WireBlsCall {
  readonly op: "bls";
  /** The call's id in the worker. */
  readonly bls: number;
  readonly decoupled: boolean;
  readonly modelName: string;
  readonly modelVersion: number | undefined;
  readonly inputs: WireTensor[];
  readonly requested: string[];
  readonly requestId: string;
  readonly parameters: Record<string, RequestParameter>;
  readonly timeoutMs: number | undefined;
}

/** The worker's model cancelled BLS call `bls` (see `ResponseIterator.cancel()`). */
export interface WireBlsCancel {
  readonly op: "bls-cancel";
  readonly bls: number;
}

/** A model loading API call from the worker (`isModelReady`, `loadModel`, `unloadModel`). */
export interface WireBlsControl {
  readonly op: "bls-control";
  readonly bls: number;
  readonly control: { op: "isReady"; name: string; version?: number | undefined } | { op: "load"; name: string; config?: unknown } | { op: "unload"; name: string };
}

/** The serving thread's answers to a worker's BLS calls. */
export type WireBlsReply =
  | { readonly op: "bls-response"; readonly bls: number; readonly response: WireResponse; readonly final: boolean }
  | { readonly op: "bls-control-reply"; readonly bls: number; readonly value: boolean | undefined; readonly error: WireError | undefined };

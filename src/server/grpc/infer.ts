/**
 * A decoded `ModelInferRequest` (see `wire.ts`) as the runtime's
 * {@link InferInput}, and an {@link InferOutput} as the outputs of a
 * `ModelInferResponse`: what Triton's gRPC frontend does in
 * `SetInferenceRequestMetadata`, `InferGRPCToInput`,
 * `InferAllocatorPayload` and its response allocator (server
 * `src/grpc/infer_handler.cc`), with its checks, in its order, and its
 * messages.
 *
 * Tensor data comes from `raw_input_contents` (a view of the received
 * message, copied only when its offset is not a multiple of the element
 * size), from typed `contents` (`fp32_contents`, `int_contents`, …), or
 * from a shared-memory region (`shared_memory_region`,
 * `shared_memory_byte_size`, `shared_memory_offset` parameters). Outputs go
 * out as `raw_output_contents`, one entry per output (empty for an output
 * written to a shared-memory region, as in Triton).
 *
 * @module
 */
import { type DType, elementSize, isDType, viewClass } from "../../dtype.js";
import { ServingError } from "../../runtime/errors.js";
import type { InferInput, InferOutput, ModelVersion } from "../../runtime/model-version.js";
import type { RequestParameter } from "../../runtime/request.js";
import { Tensor } from "../../tensor.js";
import { parseBytesElements, serializeBytesElements, type SharedMemoryAccess } from "../codec.js";
import { decodeContents, type WireInferRequest, type WireInputTensor, type WireOutputTensor, type WireParam, type WireParams } from "./wire.js";

/** Where a requested output goes when the client placed it in shared memory. */
export interface ShmPlacement {
  region: string;
  byteSize: number;
  offset: number;
}

/** A request ready for the runtime, with what the transport needs to answer it. */
export interface GrpcInferRequest {
  /** What the runtime takes. */
  input: InferInput;
  /** Outputs placed in shared memory, by name (undefined: none). */
  shmOutputs: Map<string, ShmPlacement> | undefined;
  /** The request parameter `triton_enable_empty_final_response` (streams). */
  emptyFinal: boolean;
}

function invalid(message: string): never {
  throw new ServingError("ERR_INVALID_REQUEST", message);
}

/** Request parameter keys starting with `triton_` that clients may send (Triton 2.51's `TRITON_RESERVED_REQUEST_PARAMS`). */
const TRITON_RESERVED_REQUEST_PARAMS = ["triton_enable_empty_final_response"];

/**
 * The request's parameters as the model sees them, and the ones the
 * frontend itself takes (Triton's `SetInferenceRequestMetadata`):
 * `sequence_id`, `sequence_start`, `sequence_end`, `priority` and `timeout`
 * are checked and taken: `priority` and `timeout` (µs) go to the dynamic
 * batcher (a uint64 beyond 2^53 is still "above every priority level", and
 * a negative int64 timeout reads as Triton's uint64 cast does: longer than
 * any default, so no override); this server has no sequence batcher, so
 * the sequence keys have no further effect. So is
 * `triton_enable_empty_final_response`.
 */
function requestParameters(params: WireParams | undefined): {
  parameters: Record<string, RequestParameter>;
  emptyFinal: boolean;
  priority: number | undefined;
  timeoutUs: number | undefined;
} {
  const parameters: Record<string, RequestParameter> = {};
  let emptyFinal = false;
  let priority: number | undefined;
  let timeoutUs: number | undefined;
  if (params === undefined) return { parameters, emptyFinal, priority, timeoutUs };
  for (const [key, p] of params) {
    switch (key) {
      case "sequence_id":
        if (p.kind !== "int64_param" && p.kind !== "string_param") {
          invalid("invalid value type for 'sequence_id' parameter, expected int64_param or string_param.");
        }
        continue;
      case "sequence_start":
      case "sequence_end":
        if (p.kind !== "bool_param") invalid(`invalid value type for '${key}' parameter, expected bool_param.`);
        continue;
      case "priority":
        if (p.kind === "int64_param") {
          if (p.value < 0n) invalid("invalid value for 'priority', expected value >= 0.");
        } else if (p.kind !== "uint64_param") {
          invalid("invalid value type for 'priority' parameter, expected int64_param or uint64_param.");
        }
        priority = Number(p.value);
        continue;
      case "timeout":
        if (p.kind !== "int64_param") invalid("invalid value type for 'timeout' parameter, expected int64_param.");
        timeoutUs = p.value < 0n ? Number(BigInt.asUintN(64, p.value)) : Number(p.value);
        continue;
    }
    if (key.startsWith("triton_")) {
      if (!TRITON_RESERVED_REQUEST_PARAMS.includes(key)) {
        invalid(
          "parameter keys starting with 'triton_' are reserved for Triton usage. Only the following keys starting with 'triton_' are allowed: " +
            TRITON_RESERVED_REQUEST_PARAMS.join(" "),
        );
      }
      if (p.kind !== "bool_param") invalid(`invalid value type for '${key}' parameter, expected bool_param.`);
      emptyFinal = p.value;
      continue;
    }
    switch (p.kind) {
      case "bool_param":
      case "string_param":
      case "double_param":
        parameters[key] = p.value;
        break;
      case "int64_param": {
        const n = Number(p.value);
        if (!Number.isSafeInteger(n)) {
          invalid(`int64_param of parameter '${key}' is ${p.value}, beyond what this server passes to models exactly (±(2^53-1))`);
        }
        parameters[key] = n;
        break;
      }
      default:
        invalid(`invalid value type for '${key}' parameter, expected int64_param, bool_param, or string_param.`);
    }
  }
  return { parameters, emptyFinal, priority, timeoutUs };
}

/** A tensor's shared-memory parameters (Triton's `ParseSharedMemoryParams`), or undefined. */
function shmParams(name: string, params: WireParams | undefined): ShmPlacement | undefined {
  if (params === undefined) return undefined;
  const region = params.get("shared_memory_region");
  const offset = params.get("shared_memory_offset");
  const size = params.get("shared_memory_byte_size");
  if (region === undefined && offset === undefined && size === undefined) return undefined;
  if (region !== undefined && region.kind !== "string_param") {
    invalid(`invalid value type for 'shared_memory_region' parameter for tensor '${name}', expected string_param.`);
  }
  let off = 0;
  if (offset !== undefined) {
    if (region === undefined) invalid(`'shared_memory_offset' can not be specified without 'shared_memory_region' parameter for tensor '${name}'`);
    if (offset.kind !== "int64_param") invalid(`invalid value type for 'shared_memory_offset' parameter for tensor '${name}', expected int64_param.`);
    off = Number(offset.value);
  }
  if (size === undefined) {
    invalid(`'shared_memory_byte_size' must be specified along with 'shared_memory_region' parameter for tensor '${name}'`);
  }
  if (region === undefined) invalid(`'shared_memory_byte_size' can not be specified without 'shared_memory_region' parameter for tensor '${name}'`);
  if (size.kind !== "int64_param") invalid(`invalid value type for 'shared_memory_byte_size' parameter for tensor '${name}', expected int64_param.`);
  const byteSize = Number(size.value);
  if (!Number.isSafeInteger(off) || off < 0) invalid(`invalid value for 'shared_memory_offset' parameter for tensor '${name}': ${off}`);
  if (!Number.isSafeInteger(byteSize) || byteSize < 0) invalid(`invalid value for 'shared_memory_byte_size' parameter for tensor '${name}': ${byteSize}`);
  return { region: (region as Extract<WireParam, { kind: "string_param" }>).value, offset: off, byteSize };
}

/** Where one input's bytes are, once the frontend's checks passed. */
type InputData =
  | { kind: "raw"; bytes: Uint8Array }
  | { kind: "shm"; at: ShmPlacement }
  | { kind: "contents"; dtype: DType; values: ArrayLike<number | bigint> | Uint8Array[] };

/** The typed contents field each dtype takes, as Triton pairs them. */
const CONTENTS_FIELDS = ["bool_contents", "int_contents", "int64_contents", "uint_contents", "uint64_contents", "fp32_contents", "fp64_contents", "bytes_contents"] as const;

/** The dtype Triton requires for a contents field, given the input's declared dtype. */
function contentsDtype(field: (typeof CONTENTS_FIELDS)[number], declared: string): DType {
  switch (field) {
    case "bool_contents":
      return "BOOL";
    case "int_contents":
      return declared === "INT8" || declared === "INT16" ? declared : "INT32";
    case "int64_contents":
      return "INT64";
    case "uint_contents":
      return declared === "UINT8" || declared === "UINT16" ? declared : "UINT32";
    case "uint64_contents":
      return "UINT64";
    case "fp32_contents":
      return "FP32";
    case "fp64_contents":
      return "FP64";
    case "bytes_contents":
      return "BYTES";
  }
}

/** Triton's name of a datatype string, as `TRITONSERVER_DataTypeString(TRITONSERVER_StringToDataType(s))` prints it. */
const tritonDtypeName = (s: string): string => (isDType(s) ? s : "<invalid>");

/** The data of an input with typed `contents` (Triton's checks, in its field order). */
function contentsData(io: WireInputTensor, model: string): InputData {
  const c = decodeContents(io.contents!);
  let found: InputData | undefined;
  for (const field of CONTENTS_FIELDS) {
    const values = c[field];
    if (values.length === 0) continue;
    if (found !== undefined) {
      invalid(`unexpected explicit tensor data for input tensor '${io.name}' for model '${model}', binary data was already supplied.`);
    }
    const dtype = contentsDtype(field, io.datatype);
    if (dtype !== io.datatype) {
      invalid(
        `unexpected explicit tensor data for input tensor '${io.name}' for model '${model}' of type '${dtype}', expected datatype '${tritonDtypeName(io.datatype)}'`,
      );
    }
    found = { kind: "contents", dtype, values };
  }
  // Present but empty: no bytes (the size check then speaks).
  return found ?? { kind: "raw", bytes: EMPTY };
}

const EMPTY = new Uint8Array(0);

function elementCount(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/**
 * An error of a check Triton makes in its core (the request's
 * normalisation) rather than in the gRPC frontend: Triton's core prefixes
 * those with the request id.
 */
function invalidInCore(id: string, message: string): never {
  invalid(`[request id: ${id === "" ? "<id_unknown>" : id}] ${message}`);
}

/** The checks Triton's core makes before the byte size, for an input whose bytes don't fit its shape (so its error comes first). */
function sizeMismatch(mv: ModelVersion, id: string, name: string, dtype: string, expected: number, got: number): never {
  const model = mv.name;
  const want = mv.inputDtype(name);
  if (want === undefined) invalidInCore(id, `unexpected inference input '${name}' for model '${model}'`);
  if (want !== dtype) invalidInCore(id, `inference input '${name}' data-type is '${tritonDtypeName(dtype)}', but model '${model}' expects '${want}'`);
  invalidInCore(id, `input byte size mismatch for input '${name}' for model '${model}'. Expected ${expected}, got ${got}`);
}

/** A tensor over `bytes` (a view when aligned, else one copy). */
function tensorFromRaw(mv: ModelVersion, id: string, name: string, dtype: DType, shape: number[], bytes: Uint8Array): Tensor {
  const count = elementCount(shape);
  if (dtype === "BYTES") {
    return Tensor.fromBytes(parseBytesElements(bytes, count, name), { shape, name });
  }
  const size = elementSize(dtype);
  if (bytes.length !== count * size) sizeMismatch(mv, id, name, dtype, count * size, bytes.length);
  let v = bytes;
  if (v.byteOffset % size !== 0) {
    v = new Uint8Array(bytes.length); // a fresh ArrayBuffer is aligned
    v.set(bytes);
  }
  const Ctor = viewClass(dtype)!;
  return Tensor.from(new Ctor(v.buffer, v.byteOffset, count), { shape, dtype, name });
}

function tensorFromContents(mv: ModelVersion, id: string, name: string, dtype: DType, shape: number[], data: Extract<InputData, { kind: "contents" }>): Tensor {
  const count = elementCount(shape);
  if (dtype === "BYTES") {
    const els = data.values as Uint8Array[];
    if (els.length !== count) invalid(`input '${name}': expected ${count} BYTES elements for its shape, got ${els.length}`);
    return Tensor.fromBytes(els, { shape, name });
  }
  const values = data.values as ArrayLike<number | bigint>;
  const size = elementSize(dtype);
  if (values.length !== count) sizeMismatch(mv, id, name, dtype, count * size, values.length * size);
  let typed: ArrayLike<number | bigint>;
  if (values instanceof Float32Array || values instanceof Float64Array) typed = values;
  else {
    const Ctor = viewClass(dtype)! as unknown as { from(v: ArrayLike<number | bigint>): ArrayLike<number | bigint> };
    // Int8/Int16/Uint8/Uint16 keep the low bytes of each 32-bit value, as Triton does.
    typed = Ctor.from(values);
  }
  return Tensor.from(typed as unknown as Float32Array, { shape, dtype, name });
}

/** An input's shape, checked: every dim a non-negative safe integer. */
function checkShape(io: WireInputTensor, id: string, model: string): number[] {
  const shape = io.shape;
  for (const d of shape) {
    if (d < 0) invalidInCore(id, `All input dimensions should be specified for input '${io.name}' for model '${model}', got [${shape.join(",")}]`);
    if (!Number.isSafeInteger(d)) invalid(`input '${io.name}' for model '${model}' has a dimension beyond 2^53: [${shape.join(",")}]`);
  }
  return shape;
}

/**
 * Turns a decoded request into the runtime's input, with Triton's checks
 * and messages: parameters, then where each input's data is, then the
 * requested outputs, then the tensors (datatype, shape and byte size).
 * The runtime then checks the request against the model's config.
 *
 * @throws {ServingError} `ERR_INVALID_REQUEST` (INVALID_ARG), `ERR_UNSUPPORTED` (classification).
 */
export function requestToInput(req: WireInferRequest, mv: ModelVersion, shm: SharedMemoryAccess): GrpcInferRequest {
  const model = mv.name;
  const { parameters, emptyFinal, priority, timeoutUs } = requestParameters(req.parameters);

  // Where each input's data is (Triton's InferGRPCToInput, before the core checks any input).
  const n = req.inputs.length;
  const data: InputData[] = [];
  const raw = req.raw_input_contents;
  let rawIndex = 0;
  for (let i = 0; i < n; i++) {
    const io = req.inputs[i]!;
    const at = shmParams(io.name, io.parameters);
    if (at !== undefined) {
      if (io.contents !== undefined) {
        invalid(`unexpected 'content' provided when using shared memory for input tensor '${io.name}' for model '${model}'`);
      }
      data.push({ kind: "shm", at });
    } else if (io.contents !== undefined) {
      if (raw.length > 0) invalid(`contents field must not be specified when using raw_input_contents for '${io.name}' for model '${model}'`);
      data.push(contentsData(io, model));
    } else if (rawIndex < raw.length) {
      data.push({ kind: "raw", bytes: raw[rawIndex++]! });
    } else {
      invalid(`unable to find data for input tensor '${io.name}' for model '${model}' in request.`);
    }
  }

  // Requested outputs (Triton's InferAllocatorPayload).
  let shmOutputs: Map<string, ShmPlacement> | undefined;
  const outputs: string[] = [];
  for (const o of req.outputs) {
    const at = shmParams(o.name, o.parameters);
    if (o.parameters?.has("classification")) {
      throw new ServingError("ERR_UNSUPPORTED", `output '${o.name}': the classification extension is not supported by this server`);
    }
    if (at !== undefined) (shmOutputs ??= new Map()).set(o.name, at);
    outputs.push(o.name);
  }

  // The tensors.
  const inputs: Tensor[] = [];
  for (let i = 0; i < n; i++) {
    const io = req.inputs[i]!;
    const name = io.name;
    const dtype = io.datatype;
    if (!isDType(dtype)) {
      const want = mv.inputDtype(name);
      if (want === undefined) invalidInCore(req.id, `unexpected inference input '${name}' for model '${model}'`);
      invalidInCore(req.id, `inference input '${name}' data-type is '<invalid>', but model '${model}' expects '${want}'`);
    }
    const shape = checkShape(io, req.id, model);
    const d = data[i]!;
    if (d.kind === "raw") {
      inputs.push(tensorFromRaw(mv, req.id, name, dtype, shape, d.bytes));
    } else if (d.kind === "contents") {
      inputs.push(tensorFromContents(mv, req.id, name, dtype, shape, d));
    } else {
      const { region, offset, byteSize } = d.at;
      inputs.push(shm.tensor?.(region, offset, byteSize, dtype, shape, name) ?? tensorFromRaw(mv, req.id, name, dtype, shape, shm.read(region, offset, byteSize)));
    }
  }

  const input: InferInput = { inputs, outputs, parameters, receivedAt: req.receivedAt };
  if (req.id !== "") input.id = req.id;
  if (priority !== undefined) input.priority = priority;
  if (timeoutUs !== undefined) input.timeoutUs = timeoutUs;
  return { input, shmOutputs, emptyFinal };
}

/** A tensor's bytes as they go out (host memory; BYTES in the length-prefixed wire form). */
function hostBytes(t: Tensor): Uint8Array {
  const h = t.isCpu() ? t : t.toCpu();
  if (h.dtype === "BYTES") return serializeBytesElements(h.bytes());
  const d = h.data();
  return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
}

function shmTooSmall(name: string, at: ShmPlacement, need: number): never {
  // INTERNAL, as Triton's response allocator reports it.
  throw new ServingError(
    "ERR_SHM",
    `shared memory size specified with the request for output '${name}' (${at.byteSize} bytes) should be at least ${need} bytes to hold the results`,
    { tritonCode: "INTERNAL" },
  );
}

/**
 * The outputs of a response: each with its `raw_output_contents` entry, or
 * written to its shared-memory region (then an empty entry, and no
 * parameters on the output, as Triton's gRPC frontend answers).
 *
 * @throws {ServingError} when an output does not fit its region.
 */
export function responseOutputs(out: InferOutput, shmOutputs: Map<string, ShmPlacement> | undefined, shm: SharedMemoryAccess): WireOutputTensor[] {
  const tensors = out.outputs;
  const result: WireOutputTensor[] = [];
  for (let i = 0; i < tensors.length; i++) {
    const t = tensors[i]!;
    const name = t.name!;
    const at = shmOutputs?.get(name);
    let raw: Uint8Array;
    if (at === undefined) {
      raw = hostBytes(t);
    } else {
      raw = EMPTY;
      // Device memory (a CUDA region) takes the tensor where it is: no trip through the host.
      if (t.dtype !== "BYTES" && shm.writeTensor !== undefined) {
        if (t.byteLength > at.byteSize) shmTooSmall(name, at, t.byteLength);
        if (!shm.writeTensor(at.region, at.offset, at.byteSize, t)) {
          shm.write(at.region, at.offset, at.byteSize, [hostBytes(t)]);
        }
      } else {
        const bytes = hostBytes(t);
        if (bytes.length > at.byteSize) shmTooSmall(name, at, bytes.length);
        shm.write(at.region, at.offset, at.byteSize, [bytes]);
      }
    }
    result.push({ name, datatype: t.dtype, shape: t.shape, raw });
  }
  return result;
}

/**
 * Data types by their Triton names, with element sizes and the TypedArray
 * that views each one.
 * @module
 */

import { ErrorCode, TensorBridgeError } from "./errors.js";

/** A tensor element type, by its Triton name. */
export type DType =
  | "BOOL"
  | "UINT8"
  | "UINT16"
  | "UINT32"
  | "UINT64"
  | "INT8"
  | "INT16"
  | "INT32"
  | "INT64"
  | "FP16"
  | "BF16"
  | "FP32"
  | "FP64"
  | "BYTES";

/** Every TypedArray a tensor view can be. */
export type TypedArray =
  | Uint8Array
  | Int8Array
  | Uint16Array
  | Int16Array
  | Uint32Array
  | Int32Array
  | BigUint64Array
  | BigInt64Array
  | Float32Array
  | Float64Array;

/** The TypedArray class that views one dtype. */
export interface TypedArrayConstructor {
  new (buffer: ArrayBufferLike, byteOffset?: number, length?: number): TypedArray;
  readonly BYTES_PER_ELEMENT: number;
}

interface DTypeInfo {
  readonly size: number;
  readonly view: TypedArrayConstructor | undefined;
}

const INFO: Readonly<Record<DType, DTypeInfo>> = {
  BOOL: { size: 1, view: Uint8Array },
  UINT8: { size: 1, view: Uint8Array },
  UINT16: { size: 2, view: Uint16Array },
  UINT32: { size: 4, view: Uint32Array },
  UINT64: { size: 8, view: BigUint64Array },
  INT8: { size: 1, view: Int8Array },
  INT16: { size: 2, view: Int16Array },
  INT32: { size: 4, view: Int32Array },
  INT64: { size: 8, view: BigInt64Array },
  // Node 20 has no Float16Array: FP16 and BF16 are viewed as raw 16-bit words.
  FP16: { size: 2, view: Uint16Array },
  BF16: { size: 2, view: Uint16Array },
  FP32: { size: 4, view: Float32Array },
  FP64: { size: 8, view: Float64Array },
  BYTES: { size: 0, view: undefined },
};

/** Every dtype, in a stable order. */
export const DTYPES: readonly DType[] = Object.freeze(Object.keys(INFO) as DType[]);

/** Whether `value` is a dtype name. */
export function isDType(value: unknown): value is DType {
  return typeof value === "string" && Object.hasOwn(INFO, value);
}

/**
 * Checks a dtype name and returns it.
 * @throws {TensorBridgeError} `ERR_DTYPE_UNSUPPORTED` for an unknown name.
 */
export function checkDType(value: unknown): DType {
  if (!isDType(value)) {
    throw new TensorBridgeError(
      ErrorCode.DTYPE_UNSUPPORTED,
      `unknown dtype ${JSON.stringify(value)}; use one of ${DTYPES.join(", ")}`,
    );
  }
  return value;
}

/** Size of one element in bytes (0 for BYTES, whose elements vary). */
export function elementSize(dtype: DType): number {
  return INFO[dtype].size;
}

/** The TypedArray class that views `dtype` (undefined for BYTES). */
export function viewClass(dtype: DType): TypedArrayConstructor | undefined {
  return INFO[dtype].view;
}

/**
 * The dtype a TypedArray holds naturally. 16-bit floats can't be told from
 * 16-bit integers, so a `Uint16Array` means UINT16 unless a dtype is given.
 * @throws {TensorBridgeError} `ERR_DTYPE_UNSUPPORTED` for a DataView or other view.
 */
export function inferDType(view: ArrayBufferView): DType {
  if (view instanceof Float32Array) return "FP32";
  if (view instanceof Float64Array) return "FP64";
  if (view instanceof Uint8Array || view instanceof Uint8ClampedArray) return "UINT8";
  if (view instanceof Int8Array) return "INT8";
  if (view instanceof Uint16Array) return "UINT16";
  if (view instanceof Int16Array) return "INT16";
  if (view instanceof Uint32Array) return "UINT32";
  if (view instanceof Int32Array) return "INT32";
  if (view instanceof BigInt64Array) return "INT64";
  if (view instanceof BigUint64Array) return "UINT64";
  throw new TensorBridgeError(
    ErrorCode.DTYPE_UNSUPPORTED,
    `can't infer a dtype from a ${view.constructor.name}; pass { dtype } explicitly`,
  );
}

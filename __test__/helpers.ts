/** Shared helpers of the ava suites. */
import type { ExecutionContext } from "ava";
import { type DType, TensorBridgeError } from "../src/index.js";

/** Asserts that `fn` throws a TensorBridgeError with `code`; returns it. */
export function throwsCode(t: ExecutionContext, fn: () => unknown, code: string): TensorBridgeError {
  const err = t.throws(fn, { instanceOf: TensorBridgeError });
  t.is(err?.code, code, `expected ${code}, got ${err?.code}: ${err?.message}`);
  return err as TensorBridgeError;
}

/** A TypedArray of `n` elements of `dtype` filled with recognisable values. */
export function sample(dtype: DType, n: number): ArrayBufferView {
  switch (dtype) {
    case "BOOL":
      return Uint8Array.from({ length: n }, (_, i) => i % 2);
    case "UINT8":
      return Uint8Array.from({ length: n }, (_, i) => (i * 7 + 1) & 0xff);
    case "INT8":
      return Int8Array.from({ length: n }, (_, i) => ((i * 7) % 256) - 128);
    case "UINT16":
    case "FP16":
    case "BF16":
      return Uint16Array.from({ length: n }, (_, i) => (i * 257 + 3) & 0xffff);
    case "INT16":
      return Int16Array.from({ length: n }, (_, i) => i * 3 - 1000);
    case "UINT32":
      return Uint32Array.from({ length: n }, (_, i) => i * 65_537 + 11);
    case "INT32":
      return Int32Array.from({ length: n }, (_, i) => i * -65_537 + 11);
    case "UINT64":
      return BigUint64Array.from({ length: n }, (_, i) => BigInt(i) * 0x1_0000_0001n + 5n);
    case "INT64":
      return BigInt64Array.from({ length: n }, (_, i) => BigInt(i) * -0x1_0000_0001n - 5n);
    case "FP32":
      return Float32Array.from({ length: n }, (_, i) => i * 0.5 - 3);
    case "FP64":
      return Float64Array.from({ length: n }, (_, i) => i * 0.25 - 7);
    case "BYTES":
      throw new Error("BYTES has no TypedArray");
  }
}

/** The numeric dtypes (everything but BYTES). */
export const NUMERIC: readonly DType[] = [
  "BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64",
];

/** Byte-wise equality of two views. */
export function sameBytes(a: ArrayBufferView, b: ArrayBufferView): boolean {
  const x = new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const y = new Uint8Array(b.buffer, b.byteOffset, b.byteLength);
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/**
 * tensorbridge: zero-copy DLPack tensors for Node.js and TypeScript, and a
 * Triton-compatible runtime for models written in TypeScript.
 *
 * @example
 * import { Tensor } from "tensorbridge";
 * const t = Tensor.from(new Float32Array([1, 2, 3, 4]), { shape: [2, 2] });
 * const same = Tensor.fromDlpack(t.toDlpack()); // no copy
 *
 * @example
 * import { Tensor, cuda } from "tensorbridge";
 * if (cuda.isAvailable()) {
 *   const x = Tensor.from(new Float32Array([1, 2, 3])).cuda(); // host → cuda:0
 *   const back = x.toCpu(); // cuda:0 → host
 * }
 * @module
 */

export { DLPackCapsule, type FromAddressOptions } from "./capsule.js";
export { type CudaMemoryKind, cuda } from "./cuda.js";
export { DTYPES, type DType, type TypedArray, elementSize, isDType } from "./dtype.js";
export { ErrorCode, TensorBridgeError } from "./errors.js";
export {
  type AllocOptions,
  type Device,
  type DlpackSource,
  Tensor,
  type TensorOptions,
  type ToDlpackOptions,
  type TransferredTensor,
} from "./tensor.js";
export { debug } from "./debug.js";
export * from "./runtime/index.js";
export * from "./server/index.js";

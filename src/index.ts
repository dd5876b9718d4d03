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
 *
 * Diagnostics (ownership counters, leak checks) live in their own subpath,
 * `tensorbridge/debug`, not here.
 * @module
 */

// The tensor API and the model-author API: what models see as "tensorbridge".
export * from "./model.js";
export * from "./runtime/index.js";
export * from "./server/index.js";

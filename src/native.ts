/**
 * The generated native binding (`index.js` at the package root, made by
 * `napi build`). Only this module imports it, so the rest of `src/` sees one
 * typed surface.
 * @internal
 * @module
 */

export {
  NativeCapsule,
  NativeTensor,
  cudaDeviceCount,
  cudaDriverVersion,
  cudaIsAvailable,
  cudaMemoryKind,
  cudaStreamHandle,
  cudaUnavailableReason,
  errorCodes,
  nativeStats,
  noop,
} from "../index.js";
export type { NativeExportOptions, NativeStats } from "../index.js";

/**
 * CUDA from JavaScript: whether a GPU can be used, how many there are, and
 * the handles a DLPack consumer needs. Tensors themselves are allocated with
 * `Tensor.empty(shape, dtype, { device: "cuda:0" })` and moved with
 * `tensor.cuda()`, `tensor.toCpu()` and `tensor.copyTo(other)`.
 *
 * The CUDA driver is loaded on first use, never at import: on a machine
 * without CUDA, {@link cuda.isAvailable} is `false` and every CUDA operation
 * throws `ERR_CUDA_UNAVAILABLE`.
 * @module
 */

import { ErrorCode, TensorBridgeError, rethrowNative } from "./errors.js";
import {
  cudaDeviceCount,
  cudaDriverVersion,
  cudaIpcHandle,
  cudaIsAvailable,
  cudaMemoryKind,
  cudaStreamHandle,
  cudaUnavailableReason,
} from "./native.js";
import { Tensor } from "./tensor.js";

/** What the CUDA driver says an address is (see `memoryKind` of {@link cuda}). */
export type CudaMemoryKind = `device:${number}` | "pinned" | "managed" | "unregistered" | "array" | "unified" | "other";

function call<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    rethrowNative(e);
  }
}

/**
 * CUDA queries, as `tensorbridge.cuda`.
 *
 * @example
 * import { Tensor, cuda } from "tensorbridge";
 * const device = cuda.isAvailable() ? "cuda:0" : "cpu";
 * const x = Tensor.zeros([1024], "FP32", { device });
 */
export const cuda = Object.freeze({
  /**
   * Whether CUDA can be used: the NVIDIA driver library loads, has every
   * function tensorbridge calls, initialises, and sees at least one GPU. The
   * first call does that work once; it never throws.
   * @returns `true` when GPU tensors can be made here
   */
  isAvailable(): boolean {
    return cudaIsAvailable();
  },

  /**
   * Why CUDA is not available (e.g. "the NVIDIA driver library … was not
   * found"), or `undefined` when it is.
   * @returns the reason, for logs and skip messages
   */
  unavailableReason(): string | undefined {
    return cudaUnavailableReason() ?? undefined;
  },

  /**
   * How many CUDA devices the driver sees: `0` when CUDA is not available
   * (like `torch.cuda.device_count()`), so it is safe to call anywhere.
   * @returns the number of GPUs (`cuda:0` … `cuda:N-1`)
   */
  deviceCount(): number {
    return cudaIsAvailable() ? call(() => cudaDeviceCount()) : 0;
  },

  /**
   * The driver's CUDA version as one number (`13000` is CUDA 13.0).
   * @returns the version
   * @throws {TensorBridgeError} `ERR_CUDA_UNAVAILABLE`
   */
  driverVersion(): number {
    return call(() => cudaDriverVersion());
  },

  /**
   * The `CUstream` address of the stream tensorbridge uses on `device`. Pass
   * it as `stream` to a producer's `__dlpack__` (e.g. PyTorch's, through a
   * native bridge): the producer then makes this stream wait for its pending
   * work, so tensorbridge's copies of the imported tensor see finished data.
   * `Tensor.fromDlpack` does this itself for objects with `__dlpack_device__`.
   * @param device `"cuda"` or `"cuda:N"` (default `"cuda:0"`)
   * @returns the stream handle as a bigint
   * @throws {TensorBridgeError} `ERR_CUDA_UNAVAILABLE`, `ERR_DEVICE_UNSUPPORTED`
   */
  streamHandle(device = "cuda:0"): bigint {
    return call(() => cudaStreamHandle(device === "cuda" ? "cuda:0" : device));
  },

  /**
   * What the CUDA driver says the memory at `address` is: device memory of a
   * GPU (`"device:0"`), `"pinned"` host memory, `"managed"` memory, or
   * `"unregistered"` (ordinary host memory, or an address the driver doesn't
   * know). For diagnostics and tests.
   * @param address an address, e.g. `tensor.dataPtr`
   * @returns the kind of memory
   * @throws {TensorBridgeError} `ERR_CUDA_UNAVAILABLE`, `ERR_INVALID_ARGUMENT`
   */
  memoryKind(address: bigint): CudaMemoryKind {
    return call(() => cudaMemoryKind(address)) as CudaMemoryKind;
  },

  /**
   * The CUDA IPC memory handle (`cudaIpcMemHandle_t`, 64 bytes) of a device
   * tensor's memory, for another process to map: base64 it as `raw_handle`
   * to register the tensor as a Triton CUDA shared-memory region. The
   * tensor must start its allocation (one made by `Tensor.zeros(..., {
   * device: "cuda:N" })` does) and stay alive while the handle is in use.
   * CUDA refuses to open a handle in the process that made it.
   * @param tensor a tensor on `"cuda:N"`
   * @returns the 64 handle bytes
   * @throws {TensorBridgeError} `ERR_DEVICE_UNSUPPORTED` (not on a GPU),
   *   `ERR_INVALID_ARGUMENT`, `ERR_CUDA_UNAVAILABLE`, `ERR_CUDA`
   * @example
   * const region = Tensor.zeros([1024], "FP32", { device: "cuda:0" });
   * const b64 = Buffer.from(cuda.ipcHandle(region)).toString("base64");
   */
  ipcHandle(tensor: Tensor): Uint8Array {
    const native = Tensor.nativeOf(tensor);
    if (native === undefined) {
      throw new TensorBridgeError(ErrorCode.DTYPE_UNSUPPORTED, "BYTES tensors live in host memory and have no CUDA IPC handle");
    }
    return call(() => cudaIpcHandle(native.id));
  },
});

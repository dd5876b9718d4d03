/**
 * Errors thrown by tensorbridge. Every error has a stable `code`; test and
 * branch on the code, never on the message, which may be reworded.
 * @module
 */

/**
 * Every error code tensorbridge raises, with what it means.
 * The native core's codes are mirrored here; a test keeps the two in sync.
 */
export const ErrorCode = {
  /** A DLPack tensor is not C-order contiguous (e.g. `x[::2]`, a transpose). */
  DLPACK_NOT_CONTIGUOUS: "ERR_DLPACK_NOT_CONTIGUOUS",
  /** A versioned DLPack tensor has a major version other than 1. */
  DLPACK_VERSION: "ERR_DLPACK_VERSION",
  /** A DLPack capsule was already consumed (or released). */
  DLPACK_CONSUMED: "ERR_DLPACK_CONSUMED",
  /** A DLPack pointer that must not be NULL was NULL. */
  DLPACK_NULL: "ERR_DLPACK_NULL",
  /** A DLPack descriptor is malformed (ndim, lanes, …). */
  DLPACK_INVALID: "ERR_DLPACK_INVALID",
  /** The dtype has no representation here (e.g. BYTES in DLPack). */
  DTYPE_UNSUPPORTED: "ERR_DTYPE_UNSUPPORTED",
  /** The device type is not supported. */
  DEVICE_UNSUPPORTED: "ERR_DEVICE_UNSUPPORTED",
  /**
   * The memory of a DLPack tensor is not where its device label says (a host
   * pointer labelled CUDA, another GPU's memory, device memory labelled CPU),
   * as the CUDA driver reports it.
   */
  DEVICE_MISMATCH: "ERR_DEVICE_MISMATCH",
  /** Sizes overflow the address space. */
  SHAPE_OVERFLOW: "ERR_SHAPE_OVERFLOW",
  /** A dimension is negative. */
  SHAPE_NEGATIVE: "ERR_SHAPE_NEGATIVE",
  /** The data length does not match shape × element size. */
  SHAPE_MISMATCH: "ERR_SHAPE_MISMATCH",
  /** Host access to memory that is not on the host. */
  NOT_CPU: "ERR_NOT_CPU",
  /** `copy: false` was asked but the operation needs a copy. */
  COPY_REQUIRED: "ERR_COPY_REQUIRED",
  /** An argument is invalid. */
  INVALID_ARGUMENT: "ERR_INVALID_ARGUMENT",
  /** Memory could not be allocated. */
  ALLOCATION: "ERR_ALLOCATION",
  /** The tensor was disposed. */
  DISPOSED: "ERR_DISPOSED",
  /** CUDA is not available on this machine (no driver, no GPU, or a build without CUDA). */
  CUDA_UNAVAILABLE: "ERR_CUDA_UNAVAILABLE",
  /** A CUDA driver call failed; the message names the call and the CUDA error. */
  CUDA: "ERR_CUDA",
  /** The runtime does not allow external ArrayBuffers (e.g. Electron). */
  EXTERNAL_BUFFERS_UNSUPPORTED: "ERR_EXTERNAL_BUFFERS_UNSUPPORTED",
  /** A napi call failed unexpectedly. */
  NAPI: "ERR_NAPI",
  /**
   * The native addon could not be loaded: no prebuilt binary for this
   * platform, or its optional dependency was not installed. The message
   * names the platform and how to build the addon from source.
   */
  NATIVE_UNAVAILABLE: "ERR_NATIVE_UNAVAILABLE",
  /**
   * `debug.foreignTensor` / `debug.foreignStats` on a release build of the
   * addon, which is built without test hooks.
   */
  TEST_HOOKS_UNAVAILABLE: "ERR_TEST_HOOKS_UNAVAILABLE",
} as const;

/** One of the {@link ErrorCode} values. */
export type ErrorCode = (typeof ErrorCode)[keyof typeof ErrorCode];

const KNOWN_CODES: ReadonlySet<string> = new Set(Object.values(ErrorCode));

/**
 * The error class of tensorbridge. `code` is stable across versions.
 *
 * @example
 * try { Tensor.fromDlpack(capsule) } catch (e) {
 *   if (e instanceof TensorBridgeError && e.code === "ERR_DLPACK_CONSUMED") …
 * }
 */
export class TensorBridgeError extends Error {
  /** Stable machine-readable code, e.g. `"ERR_DLPACK_NOT_CONTIGUOUS"`. */
  readonly code: ErrorCode | (string & {});

  /**
   * @param code a stable `ERR_*` code
   * @param message what went wrong and what to do about it
   * @param options standard error options (`cause`)
   */
  constructor(code: ErrorCode | (string & {}), message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "TensorBridgeError";
    this.code = code;
  }

  /** Whether `code` is one of the codes this version knows. */
  static isKnownCode(code: string): code is ErrorCode {
    return KNOWN_CODES.has(code);
  }
}

/**
 * Re-throws an error from the native binding as a {@link TensorBridgeError}
 * with the same code. Errors without an `ERR_` code (argument conversion
 * failures inside napi) become `ERR_INVALID_ARGUMENT`.
 * @internal
 */
export function rethrowNative(err: unknown): never {
  if (err instanceof TensorBridgeError) throw err;
  const e = err as { code?: unknown; message?: unknown };
  const message = typeof e?.message === "string" ? e.message : String(err);
  const code =
    typeof e?.code === "string" && e.code.startsWith("ERR_") ? e.code : ErrorCode.INVALID_ARGUMENT;
  throw new TensorBridgeError(code, message, { cause: err });
}

/**
 * `ModelError`: the error a model reports for one request, with Triton's
 * error codes (the TypeScript counterpart of `pb_utils.TritonError`).
 *
 * @module
 */

/** Triton's error codes, as `pb_utils.TritonError` has them. */
export type ModelErrorCode =
  | "UNKNOWN"
  | "INTERNAL"
  | "NOT_FOUND"
  | "INVALID_ARG"
  | "UNAVAILABLE"
  | "UNSUPPORTED"
  | "ALREADY_EXISTS"
  | "CANCELLED";

/** Every {@link ModelErrorCode}. */
export const MODEL_ERROR_CODES: readonly ModelErrorCode[] = [
  "UNKNOWN",
  "INTERNAL",
  "NOT_FOUND",
  "INVALID_ARG",
  "UNAVAILABLE",
  "UNSUPPORTED",
  "ALREADY_EXISTS",
  "CANCELLED",
];

/**
 * An error for one inference request, raised by a model (put it in an
 * `InferenceResponse({ error })`, or throw it from `execute()` to fail every
 * request of the batch).
 *
 * @example
 * ```ts
 * if (!x) return new InferenceResponse({ error: new ModelError("INPUT0 is empty", ModelError.INVALID_ARG) });
 * ```
 */
export class ModelError extends Error {
  /** Unknown error. */
  static readonly UNKNOWN = "UNKNOWN" as const;
  /** Internal error (the default). */
  static readonly INTERNAL = "INTERNAL" as const;
  /** Something was not found. */
  static readonly NOT_FOUND = "NOT_FOUND" as const;
  /** The request is invalid. */
  static readonly INVALID_ARG = "INVALID_ARG" as const;
  /** The model is temporarily unavailable. */
  static readonly UNAVAILABLE = "UNAVAILABLE" as const;
  /** The request asks for something unsupported. */
  static readonly UNSUPPORTED = "UNSUPPORTED" as const;
  /** Something already exists. */
  static readonly ALREADY_EXISTS = "ALREADY_EXISTS" as const;
  /** The request was cancelled. */
  static readonly CANCELLED = "CANCELLED" as const;

  /** Triton error code. */
  readonly code: ModelErrorCode;

  /**
   * @param message - what went wrong (the client sees it).
   * @param code - a Triton error code; default `INTERNAL`, as in Triton.
   * @throws {TypeError} when `code` is not one of Triton's codes.
   */
  constructor(message: string, code: ModelErrorCode = "INTERNAL") {
    super(message);
    if (!MODEL_ERROR_CODES.includes(code)) throw new TypeError(`unknown ModelError code ${JSON.stringify(code)} (expected one of ${MODEL_ERROR_CODES.join(", ")})`);
    this.name = "ModelError";
    this.code = code;
  }

  /**
   * Turns anything a model threw into a `ModelError` (an existing one is
   * returned as is; anything else becomes `INTERNAL` with its message).
   */
  static from(e: unknown): ModelError {
    if (e instanceof ModelError) return e;
    if (isModelErrorLike(e)) return new ModelError(e.message, e.code);
    // A runtime error (ServingError) keeps the Triton code it stands for.
    const triton = (e as { tritonCode?: unknown } | null)?.tritonCode;
    if (e instanceof Error && MODEL_ERROR_CODES.includes(triton as ModelErrorCode)) return new ModelError(e.message, triton as ModelErrorCode);
    const m = e instanceof Error ? e.message : typeof e === "string" ? e : String(e);
    const err = new ModelError(m, "INTERNAL");
    if (e instanceof Error) err.stack = e.stack;
    return err;
  }
}

/** Duck type check for a ModelError made by another copy of this module. */
function isModelErrorLike(e: unknown): e is { message: string; code: ModelErrorCode } {
  return (
    typeof e === "object" &&
    e !== null &&
    (e as { name?: unknown }).name === "ModelError" &&
    typeof (e as { message?: unknown }).message === "string" &&
    MODEL_ERROR_CODES.includes((e as { code?: ModelErrorCode }).code as ModelErrorCode)
  );
}

/**
 * The HTTP transports' one table from errors to HTTP statuses. The runtime
 * and the endpoint speak Triton error codes only; this is where HTTP (the
 * front, node:http and the fastify routes alike) turns them into statuses.
 *
 * @module
 */
import { ServingError, errorMessage, type ServingErrorCode } from "../runtime/errors.js";
import { ModelError, type ModelErrorCode } from "../runtime/model-error.js";

/**
 * HTTP status for each Triton error code, as Triton's HTTP frontend maps
 * them: INTERNAL 500, NOT_FOUND 404, UNAVAILABLE 503, UNSUPPORTED 501, the
 * rest 400.
 */
export const HTTP_STATUS: Readonly<Record<ModelErrorCode, number>> = Object.freeze({
  UNKNOWN: 400,
  INTERNAL: 500,
  NOT_FOUND: 404,
  INVALID_ARG: 400,
  UNAVAILABLE: 503,
  UNSUPPORTED: 501,
  ALREADY_EXISTS: 400,
  CANCELLED: 400,
});

/**
 * Runtime errors whose HTTP status is not their Triton code's: a body over
 * the limit is HTTP's own 413; a model version that is not ready, and a
 * protocol feature this server lacks, have always been 400 here.
 */
const HTTP_STATUS_OF_SERVING_CODE: Partial<Record<ServingErrorCode, number>> = {
  ERR_BODY_TOO_LARGE: 413,
  ERR_MODEL_UNAVAILABLE: 400,
  ERR_UNSUPPORTED: 400,
};

/** HTTP status and message of anything an inference or a handler threw. */
export function httpError(err: unknown): {
  /** HTTP status code. */
  status: number;
  /** The error's message, for the `error` field of the body. */
  message: string;
} {
  if (err instanceof ServingError) {
    // Client shared memory turned off (--allow-client-shm) is HTTP's 403.
    if (err.code === "ERR_SHM" && err.tritonCode === "UNAVAILABLE") return { status: 403, message: err.message };
    return { status: HTTP_STATUS_OF_SERVING_CODE[err.code] ?? HTTP_STATUS[err.tritonCode], message: err.message };
  }
  if (err instanceof ModelError) return { status: HTTP_STATUS[err.code], message: err.message };
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (typeof e?.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 600) {
    return { status: e.statusCode, message: typeof e.message === "string" ? e.message : String(err) };
  }
  return { status: 500, message: errorMessage(err) };
}

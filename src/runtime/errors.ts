import { TensorBridgeError } from "../errors.js";
import type { ModelErrorCode } from "./model-error.js";

/**
 * Coded errors of the model runtime and the server.
 *
 * Every error the runtime raises is a {@link ServingError} (a
 * `TensorBridgeError`) with a stable
 * `ERR_*` code (see {@link ServingErrorCode}) and the Triton error code it
 * stands for (`tritonCode`). The runtime knows no transport: each transport
 * (HTTP, gRPC) maps Triton codes to its own statuses in a table of its own.
 * Model authors raise {@link ModelError} (Triton's error codes) instead; it
 * lives in `model-error.ts`.
 *
 * @module
 */

/**
 * Stable error codes of the runtime and server. Never reuse or rename one:
 * callers match on them.
 *
 * - `ERR_CONFIG_SYNTAX`: config.pbtxt is not valid protobuf text format (the
 *   message names file, line and column).
 * - `ERR_CONFIG_INVALID`: config.pbtxt parses but does not describe a valid
 *   model (unknown field, wrong value type, bad dims, bad data_type...).
 * - `ERR_MODEL_LOAD`: a model could not be loaded (missing model file, module
 *   without a default class, `initialize()` threw, bad parameter value...).
 * - `ERR_MODEL_NOT_FOUND`: no such model (or version) in the repository.
 * - `ERR_MODEL_UNAVAILABLE`: the model exists but is not ready.
 * - `ERR_REPOSITORY`: the model repository itself cannot be read.
 * - `ERR_INVALID_REQUEST`: an inference request does not match the protocol
 *   or the model's config (dtype, shape, missing input, bad binary sizes...).
 * - `ERR_MODEL_EXECUTE`: the model's `execute()` failed or returned something
 *   that does not match its config.
 * - `ERR_RESPONSE_COMPLETE`: a model sent on a response sender whose
 *   request already ended (its final flag was sent, or the runtime ended
 *   it: unload, a dead worker, an execute() that failed).
 * - `ERR_RESPONSE_SENDER`: a model used a response sender against Triton's
 *   rules (`send()` with neither a response nor the final flag; a model that
 *   is not decoupled sending a second response, or the final flag first).
 * - `ERR_BODY_TOO_LARGE`: the request body exceeds the server's limit.
 * - `ERR_UNSUPPORTED`: a protocol feature this server does not offer.
 * - `ERR_SHM`: a shared-memory registration or access failed.
 * - `ERR_SERVER_CLOSED`: the server is shutting down.
 * - `ERR_CLI_USAGE`: bad command-line arguments.
 * - `ERR_METRIC`: a model's custom metric was misused (`MetricFamily`: a
 *   bad or reserved name, bad labels, an operation its kind does not
 *   support, a negative counter increment, a family made outside a model).
 * - `ERR_LOG`: a model's `Logger.log` was given an unknown level.
 * - `ERR_QUEUE_FULL`: the dynamic batcher's queue (of the request's
 *   priority level) holds `max_queue_size` requests already (Triton's
 *   UNAVAILABLE "Exceeds maximum queue size").
 * - `ERR_QUEUE_TIMEOUT`: the request's queue timeout expired before an
 *   instance took it, with `timeout_action: REJECT` (Triton's UNAVAILABLE
 *   "Request timeout expired").
 * - `ERR_BATCH_MISMATCH`: `InferenceRequest.concat` or
 *   `InferenceResponse.split` was given requests or tensors that do not go
 *   together (dtype, shape after dim 0, device, a missing input, a batched
 *   tensor whose dim 0 is not the requests' total).
 * - `ERR_EXECUTE_TIMEOUT`: a thread instance's `execute()` ran longer than
 *   its model's `EXECUTE_TIMEOUT_MS` parameter; its worker was stopped (it
 *   restarts) and the requests of that execute() fail (Triton code
 *   UNAVAILABLE: the instance serves again once restarted).
 * - `ERR_MODEL_CONTROL`: a model load or unload was asked of a server whose
 *   model-control mode forbids it (`--model-control-mode none`; Triton's
 *   UNAVAILABLE "explicit model load / unload is not allowed if polling is
 *   enabled"), over HTTP, gRPC or from a model.
 * - `ERR_MODEL_FILES`: a load request's model files (`file:` parameters,
 *   `loadModel(name, { files })`) do not make a model directory: files
 *   without a `config`, a path that is empty, absolute, holds NUL or a
 *   backslash, or leaves the model directory (`..`), a file where another
 *   file needs a directory, content that is not base64 (HTTP) or not bytes,
 *   a key without the `file:` prefix, a model name that is not a plain
 *   name. Triton 2.51 answers these as INTERNAL "failed to load '…', failed
 *   to poll from model repository" (HTTP 500): so does this code, with the
 *   reason after it; a malformed value is INVALID_ARG.
 */
export type ServingErrorCode =
  | "ERR_CONFIG_SYNTAX"
  | "ERR_CONFIG_INVALID"
  | "ERR_MODEL_LOAD"
  | "ERR_MODEL_NOT_FOUND"
  | "ERR_MODEL_UNAVAILABLE"
  | "ERR_REPOSITORY"
  | "ERR_INVALID_REQUEST"
  | "ERR_MODEL_EXECUTE"
  | "ERR_RESPONSE_COMPLETE"
  | "ERR_RESPONSE_SENDER"
  | "ERR_BODY_TOO_LARGE"
  | "ERR_UNSUPPORTED"
  | "ERR_SHM"
  | "ERR_SERVER_CLOSED"
  | "ERR_CLI_USAGE"
  | "ERR_METRIC"
  | "ERR_LOG"
  | "ERR_QUEUE_FULL"
  | "ERR_QUEUE_TIMEOUT"
  | "ERR_BATCH_MISMATCH"
  | "ERR_EXECUTE_TIMEOUT"
  | "ERR_MODEL_CONTROL"
  | "ERR_MODEL_FILES";

/**
 * The Triton error code each {@link ServingErrorCode} stands for: what a
 * transport maps to its status (HTTP status, gRPC status code) and what a
 * model sees in a `ModelError`.
 */
export const SERVING_ERROR_TRITON_CODE: Readonly<Record<ServingErrorCode, ModelErrorCode>> = Object.freeze({
  ERR_CONFIG_SYNTAX: "INVALID_ARG",
  ERR_CONFIG_INVALID: "INVALID_ARG",
  ERR_MODEL_LOAD: "INVALID_ARG",
  ERR_MODEL_NOT_FOUND: "NOT_FOUND",
  ERR_MODEL_UNAVAILABLE: "UNAVAILABLE",
  ERR_REPOSITORY: "INTERNAL",
  ERR_INVALID_REQUEST: "INVALID_ARG",
  ERR_MODEL_EXECUTE: "INTERNAL",
  ERR_RESPONSE_COMPLETE: "INTERNAL",
  ERR_RESPONSE_SENDER: "INTERNAL",
  ERR_BODY_TOO_LARGE: "INVALID_ARG",
  ERR_UNSUPPORTED: "UNSUPPORTED",
  ERR_SHM: "INVALID_ARG",
  ERR_SERVER_CLOSED: "UNAVAILABLE",
  ERR_CLI_USAGE: "INVALID_ARG",
  ERR_METRIC: "INVALID_ARG",
  ERR_LOG: "INVALID_ARG",
  ERR_QUEUE_FULL: "UNAVAILABLE",
  ERR_QUEUE_TIMEOUT: "UNAVAILABLE",
  ERR_BATCH_MISMATCH: "INVALID_ARG",
  ERR_EXECUTE_TIMEOUT: "UNAVAILABLE",
  ERR_MODEL_CONTROL: "UNAVAILABLE",
  ERR_MODEL_FILES: "INTERNAL",
});

/** Triton's words for a load or unload its model-control mode forbids (NONE and POLL alike). */
export const MODEL_CONTROL_REFUSAL = "explicit model load / unload is not allowed if polling is enabled";

/** Options of {@link ServingError}. */
export interface ServingErrorOptions {
  /** The error that caused this one. */
  cause?: unknown;
  /** Triton code override (defaults to {@link SERVING_ERROR_TRITON_CODE}). */
  tritonCode?: ModelErrorCode;
}

/**
 * An error of the model runtime or the server, with a stable `code` and the
 * Triton error code (`tritonCode`) that transports map to their statuses.
 *
 * @example
 * ```ts
 * try { parseModelConfig(text, { file }); }
 * catch (e) { if (e instanceof ServingError && e.code === "ERR_CONFIG_SYNTAX") console.error(e.message); }
 * ```
 */
export class ServingError extends TensorBridgeError {
  /** Stable machine-readable code. */
  declare readonly code: ServingErrorCode;
  /** The Triton error code this error stands for. */
  readonly tritonCode: ModelErrorCode;

  /**
   * @param code - the stable error code.
   * @param message - a human-readable message (it is what clients see).
   * @param options - cause and Triton code override.
   */
  constructor(code: ServingErrorCode, message: string, options: ServingErrorOptions = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ServingError";
    this.tritonCode = options.tritonCode ?? SERVING_ERROR_TRITON_CODE[code];
  }
}

/**
 * A syntax or schema error in a config.pbtxt, with its position.
 * `code` is `ERR_CONFIG_SYNTAX` (not protobuf text format) or
 * `ERR_CONFIG_INVALID` (well-formed, but not a valid ModelConfig).
 */
export class ConfigError extends ServingError {
  /** The file the error is in (as given to the parser). */
  readonly file: string;
  /** 1-based line of the error. */
  readonly line: number;
  /** 1-based column of the error. */
  readonly column: number;
  /** The message without the `file:line:column: ` prefix. */
  readonly detail: string;

  /**
   * @param code - `ERR_CONFIG_SYNTAX` or `ERR_CONFIG_INVALID`.
   * @param file - file name to report.
   * @param line - 1-based line.
   * @param column - 1-based column.
   * @param detail - what is wrong.
   */
  constructor(code: "ERR_CONFIG_SYNTAX" | "ERR_CONFIG_INVALID", file: string, line: number, column: number, detail: string) {
    super(code, `${file}:${line}:${column}: ${detail}`);
    this.name = "ConfigError";
    this.file = file;
    this.line = line;
    this.column = column;
    this.detail = detail;
  }
}

/** Turns anything thrown into a message string. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "string") return e;
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

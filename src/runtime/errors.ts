import { TensorBridgeError } from "../errors.js";

/**
 * Coded errors of the model runtime and the server.
 *
 * Every error the runtime raises is a {@link ServingError} (a
 * `TensorBridgeError`) with a stable
 * `ERR_*` code (see {@link ServingErrorCode}) and the HTTP status the server
 * answers with. Model authors raise {@link ModelError} (Triton's error codes)
 * instead; it lives in `model-error.ts`.
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
 * - `ERR_BODY_TOO_LARGE`: the request body exceeds the server's limit.
 * - `ERR_UNSUPPORTED`: a protocol feature this server does not offer.
 * - `ERR_SHM`: a shared-memory registration or access failed.
 * - `ERR_SERVER_CLOSED`: the server is shutting down.
 * - `ERR_CLI_USAGE`: bad command-line arguments.
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
  | "ERR_BODY_TOO_LARGE"
  | "ERR_UNSUPPORTED"
  | "ERR_SHM"
  | "ERR_SERVER_CLOSED"
  | "ERR_CLI_USAGE";

/** The HTTP status the server answers each {@link ServingErrorCode} with. */
export const SERVING_ERROR_STATUS: Readonly<Record<ServingErrorCode, number>> = Object.freeze({
  ERR_CONFIG_SYNTAX: 400,
  ERR_CONFIG_INVALID: 400,
  ERR_MODEL_LOAD: 400,
  ERR_MODEL_NOT_FOUND: 404,
  ERR_MODEL_UNAVAILABLE: 400,
  ERR_REPOSITORY: 500,
  ERR_INVALID_REQUEST: 400,
  ERR_MODEL_EXECUTE: 500,
  ERR_BODY_TOO_LARGE: 413,
  ERR_UNSUPPORTED: 400,
  ERR_SHM: 400,
  ERR_SERVER_CLOSED: 503,
  ERR_CLI_USAGE: 2,
});

/** Options of {@link ServingError}. */
export interface ServingErrorOptions {
  /** The error that caused this one. */
  cause?: unknown;
  /** HTTP status override (defaults to {@link SERVING_ERROR_STATUS}). */
  status?: number;
}

/**
 * An error of the model runtime or the server, with a stable `code` and the
 * HTTP `status` the server answers it with.
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
  /** HTTP status this error maps to. */
  readonly status: number;

  /**
   * @param code - the stable error code.
   * @param message - a human-readable message (it is what HTTP clients see).
   * @param options - cause and status override.
   */
  constructor(code: ServingErrorCode, message: string, options: ServingErrorOptions = {}) {
    super(code, message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = "ServingError";
    this.status = options.status ?? SERVING_ERROR_STATUS[code];
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

/**
 * Which model the code running now belongs to, and the model-author
 * `Logger` (Triton's `pb_utils.Logger`).
 *
 * A {@link ModelVersion} runs its instances' `initialize()`, `execute()`
 * and `finalize()` inside an `AsyncLocalStorage` context (one `run` per
 * load, per batch and per unload) that names the model, its version and
 * its {@link ModelHost} (the server's log and custom metrics), and, for an
 * instance's code, its BLS caller (bls.ts). One store holds both: with
 * Node 20's AsyncLocalStorage every promise made anywhere in the process
 * pays a hook per store, and a batch one `run` per store. The context
 * follows the model's awaits, timers and callbacks, so a line logged after
 * an `await`, or from a timer a decoupled model set, still names its
 * model. In an instance thread the worker forwards lines to the serving
 * thread ({@link setModelForwarder}), which logs them in the instance's
 * context.
 *
 * Nothing here imports the server: it is part of the model entry.
 *
 * @module
 */
import { AsyncLocalStorage } from "node:async_hooks";

import type { BlsCaller } from "./bls.js";
import { ServingError } from "./errors.js";
import type { RuntimeLogger } from "./model-version.js";
import { CustomMetrics } from "./custom-metrics.js";

/** What a model's log lines and custom metrics go to: the server's, or the process default. */
export interface ModelHost {
  /** The server's log (its `I|W|E|V <time> <message>` lines). */
  readonly logger: RuntimeLogger;
  /** Lines at `Logger.VERBOSE` are written (the server runs with `--log-verbose`). */
  readonly verbose: boolean;
  /** The custom metric families the server renders at `/metrics`. */
  readonly metrics: CustomMetrics;
}

/** The model a piece of code runs for. */
export interface ModelContext {
  /** The model's name. */
  readonly name: string;
  /** Its version. */
  readonly version: number;
  /** Where its log lines and metrics go. */
  readonly host: ModelHost;
}

const line =
  (tag: string) =>
  (m: string): void => {
    process.stderr.write(`${tag} ${new Date().toISOString()} ${m}\n`);
  };

/** The host of models run without a server (a bare ModelRegistry): lines on stderr, metrics kept but not exported. */
export const DEFAULT_MODEL_HOST: ModelHost = Object.freeze({
  logger: { info: line("I"), warn: line("W"), error: line("E"), debug: line("V") },
  verbose: false,
  metrics: new CustomMetrics(),
});

/** What the code running now belongs to: a model, a BLS caller (an instance's code), or both. */
export interface ModelScope {
  /** The model (undefined: BLS caller only, e.g. a test's). */
  readonly model: ModelContext | undefined;
  /** The instance whose code this is, for BLS calls (bls.ts). */
  readonly caller: BlsCaller | undefined;
}

const scope = new AsyncLocalStorage<ModelScope>();

/**
 * Runs `fn(...args)` in the model context `ctx` (what ModelVersion does
 * around each load and unload), keeping the BLS caller of the code running
 * now.
 */
export function runInModel<A extends unknown[], R>(ctx: ModelContext, fn: (...args: A) => R, ...args: A): R {
  const cur = scope.getStore();
  if (cur?.model === ctx) return fn(...args);
  return scope.run({ model: ctx, caller: cur?.caller }, fn, ...args);
}

/**
 * Runs `fn(...args)` in a scope made beforehand: ModelVersion keeps one per
 * instance (its model and its BLS caller), so a batch allocates none.
 */
export function runInScope<A extends unknown[], R>(s: ModelScope, fn: (...args: A) => R, ...args: A): R {
  return scope.run(s, fn, ...args);
}

/** The scope of the code running now (undefined outside any model or caller). */
export function currentScope(): ModelScope | undefined {
  return scope.getStore();
}

/** The model context of the code running now (undefined outside any model). */
export function currentModel(): ModelContext | undefined {
  return scope.getStore()?.model;
}

/** A model operation an instance thread forwards to its serving thread. */
export type ForwardedOp =
  | { readonly kind: "log"; readonly level: LogLevel; readonly message: string }
  | {
      readonly kind: "metric";
      readonly family: { readonly name: string; readonly description: string; readonly kind: string; readonly buckets: number[] | undefined };
      readonly labels: Record<string, string>;
      /** `create`: the metric of `labels` was made; it is exported (at 0) before any operation, as Triton's. */
      readonly op: "create" | "increment" | "set" | "observe";
      readonly value: number;
    };

let forwarder: ((op: ForwardedOp) => void) | undefined;

/**
 * In an instance thread: where the Logger's lines (and custom metric
 * operations) go, the serving thread. `undefined` turns it off.
 */
export function setModelForwarder(f: ((op: ForwardedOp) => void) | undefined): void {
  forwarder = f;
}

/** The forwarder of an instance thread, if this is one. */
export function modelForwarder(): ((op: ForwardedOp) => void) | undefined {
  return forwarder;
}

/** A log level, as Triton's `pb_utils.LogLevel`. */
export type LogLevel = "INFO" | "WARNING" | "ERROR" | "VERBOSE";

const LEVELS: ReadonlySet<string> = new Set(["INFO", "WARNING", "ERROR", "VERBOSE"]);

/**
 * Writes one line of model `ctx` (or of no model) at `level` to its
 * host's log: `model '<name>' version <v>: <message>`, or `(no model):
 * <message>`. Verbose lines only when the host is verbose.
 */
export function writeModelLog(ctx: ModelContext | undefined, level: LogLevel, message: string): void {
  const host = ctx?.host ?? DEFAULT_MODEL_HOST;
  if (level === "VERBOSE" && !host.verbose) return;
  const text = ctx === undefined ? `(no model): ${message}` : `model '${ctx.name}' version ${ctx.version}: ${message}`;
  const log = host.logger;
  switch (level) {
    case "INFO":
      log.info(text);
      return;
    case "WARNING":
      log.warn(text);
      return;
    case "ERROR":
      log.error(text);
      return;
    case "VERBOSE":
      (log.debug ?? log.info).call(log, text);
      return;
  }
}

/**
 * A model's log (Triton's `pb_utils.Logger`): lines in the server's log,
 * prefixed with the model's name and version. `console.*` keeps working
 * beside it.
 *
 * @example
 * ```ts
 * import { Logger } from "tensorbridge";
 * Logger.logInfo("loaded the vocabulary");      // I 2026-…Z model 'm' version 1: loaded the vocabulary
 * Logger.log("batch of 8", Logger.VERBOSE);     // only with --log-verbose
 * ```
 */
export class Logger {
  /** Informational (`I` lines). */
  static readonly INFO = "INFO" as const;
  /** Warning (`W` lines). */
  static readonly WARNING = "WARNING" as const;
  /** Error (`E` lines). */
  static readonly ERROR = "ERROR" as const;
  /** Verbose (`V` lines), written only when the server runs with `--log-verbose`. */
  static readonly VERBOSE = "VERBOSE" as const;

  private constructor() {}

  /**
   * Logs `message` at `level` (default INFO).
   *
   * @throws {ServingError} `ERR_LOG` for an unknown level.
   */
  static log(message: string, level: LogLevel = "INFO"): void {
    if (!LEVELS.has(level)) throw new ServingError("ERR_LOG", `unknown log level '${String(level)}' (use Logger.INFO, WARNING, ERROR or VERBOSE)`);
    const text = String(message);
    const ctx = scope.getStore()?.model;
    if (ctx === undefined && forwarder !== undefined) forwarder({ kind: "log", level, message: text });
    else writeModelLog(ctx, level, text);
  }

  /** Logs at INFO. */
  static logInfo(message: string): void {
    Logger.log(message, "INFO");
  }

  /** Logs at WARNING. */
  static logWarn(message: string): void {
    Logger.log(message, "WARNING");
  }

  /** Logs at ERROR. */
  static logError(message: string): void {
    Logger.log(message, "ERROR");
  }

  /** Logs at VERBOSE (written only with `--log-verbose`). */
  static logVerbose(message: string): void {
    Logger.log(message, "VERBOSE");
  }
}

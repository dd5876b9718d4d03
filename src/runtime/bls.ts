/**
 * Business Logic Scripting (BLS): a model calls other models in process,
 * the way Triton's Python backend lets `execute()` run
 * `pb_utils.InferenceRequest(...).exec()`, and the model loading API
 * (`isModelReady`, `loadModel`, `unloadModel`) a model may use.
 *
 * The runtime does not import the server: the process's {@link ModelRegistry}
 * registers itself as a {@link BlsTarget}. Which registry a call goes to:
 *
 * - the one that runs the calling model. Each instance's `initialize()` and
 *   `execute()` run inside an `AsyncLocalStorage` context that names its
 *   registry, its model version and the instance (model-context.ts's scope,
 *   which holds the model's Logger context too); the context follows the
 *   model's awaits, timers and callbacks, so a call made after an `await` in
 *   an async `execute()`, or from a timer a decoupled model set, still goes
 *   to the right registry (several registries in one process, as in the
 *   tests, do not mix). The request's own control cannot carry it: a BLS
 *   request is made by the model, not the runtime.
 * - outside any model's context (a script, a test), the last registry made
 *   in the process that is not closed ({@link addBlsTarget}).
 * - in an instance thread (`TENSORBRIDGE_INSTANCE_THREADS`), the worker
 *   installs its own executor ({@link setBlsExecutor}) that posts the call
 *   to the serving thread, which runs it here in the instance's context.
 *
 * Calls go through {@link ModelVersion.submit} / `submitStream`: the same
 * validation, scheduler, batching and statistics as a client's request.
 * Tensors are passed as they are (no copy); output tensors come back as the
 * callee returned them.
 *
 * Deadlock (Triton warns of it too): a model that calls itself, or a cycle
 * of models that call each other, waits for an instance that is busy
 * waiting for it. The direct case (a model's `exec()` targets its own model
 * version, from inside its `execute()`, while every instance of it is busy)
 * is answered with an `UNAVAILABLE` error response instead of a hang;
 * longer cycles are not detected (give such models enough instances, or a
 * `timeoutMs`). Likewise `loadModel` / `unloadModel` of the caller's own
 * model from its `execute()` (the load or unload waits for that execute())
 * is refused with an `UNAVAILABLE` error.
 *
 * @module
 */
import type { Tensor } from "../tensor.js";
import { Cancellation } from "./cancel.js";
import { MODEL_CONTROL_REFUSAL, ServingError } from "./errors.js";
import { ModelError } from "./model-error.js";
import { currentScope } from "./model-context.js";
import type { InferInput, InferOutput, ModelVersion } from "./model-version.js";
import type { RequestParameter } from "./request.js";
import { InferenceResponse } from "./response.js";

/** What a BLS call reaches: the registry of the serving process (ModelRegistry implements it). */
export interface BlsTarget {
  /** The model version that serves a request (throws a ServingError when there is none). */
  get(name: string, version?: number | string): ModelVersion;
  /** True when the model (version) is ready. */
  isReady(name: string, version?: number | string): boolean;
  /** Loads or reloads a model (from the repository, or from the files given). */
  load(name: string, opts?: { config?: unknown; files?: Readonly<Record<string, Uint8Array>> }): Promise<void>;
  /** Unloads a model. */
  unload(name: string): Promise<void>;
  /** False when models may not load or unload models (`loadModel` / `unloadModel` are refused); absent means allowed. */
  readonly modelControl?: boolean;
}

/** Where a model's code runs: its registry, its model version and its instance. */
export interface BlsCaller {
  /** The registry that runs the model. */
  readonly target: BlsTarget;
  /** The calling model version. */
  readonly version: ModelVersion;
  /** The calling instance: `busy` while its execute() runs. */
  readonly instance: { readonly busy: boolean; readonly name: string };
}

/** One BLS call as the executor takes it. */
export interface BlsCall {
  modelName: string;
  modelVersion?: number | undefined;
  inputs: Tensor[];
  requestedOutputNames: string[];
  requestId: string;
  parameters: Record<string, RequestParameter>;
  timeoutMs?: number | undefined;
}

/** Model loading API calls, as an executor takes them. */
export type BlsControl =
  | { op: "isReady"; name: string; version?: number | undefined }
  | { op: "load"; name: string; config?: unknown; files?: Record<string, Uint8Array> | undefined }
  | { op: "unload"; name: string };

/**
 * Runs BLS calls. The serving thread's executor is built in; an instance
 * thread installs one that posts to the serving thread.
 */
export interface BlsExecutor {
  /**
   * Runs a call; `final` is true on the last response (which may be
   * empty). Never throws.
   *
   * @returns a function that cancels the call (the callee's request is
   * dropped if still queued, or sees `isCancelled()`; the call then ends
   * with the callee's final response, usually a `CANCELLED` error).
   */
  exec(call: BlsCall, decoupled: boolean, onResponse: (r: InferenceResponse, final: boolean) => void): () => void;
  /** Runs a model loading API call. */
  control(c: BlsControl): Promise<boolean | undefined>;
}

/** The registries of the process that are not closed, oldest first. */
const live: BlsTarget[] = [];

/**
 * Adds a registry to those of the process (ModelRegistry's constructor
 * does): BLS calls made outside any model's context go to the newest one
 * that is not closed.
 *
 * @returns a function that removes it (ModelRegistry.close calls it).
 */
export function addBlsTarget(target: BlsTarget): () => void {
  live.push(target);
  return () => {
    const i = live.lastIndexOf(target);
    if (i >= 0) live.splice(i, 1);
  };
}

/** The context of the model code running now, if any. */
export function currentCaller(): BlsCaller | undefined {
  return currentScope()?.caller;
}

/** The prefix Triton's request executor puts on an error raised before the request runs. */
const failedPrefix = (model: string): string => `Model ${model} - Error when running inference: `;

/**
 * An error response for a call refused before it ran, in Triton's words
 * and with its code: Triton 2.51's Python backend answers every such BLS
 * call (a missing model, a wrong input, exec() on a decoupled model) with
 * an `INTERNAL` error, whatever the server's own status was (observed live,
 * __test__/server-toolbox-tritonclient.spec.ts). Only a refusal of ours
 * that Triton does not have (the deadlock) passes its own code.
 */
function refused(model: string, e: unknown, code: ModelError["code"] = "INTERNAL"): InferenceResponse {
  return new InferenceResponse({ error: new ModelError(failedPrefix(model) + ModelError.from(e).message, code) });
}

/**
 * The serving thread's executor: the registry of the caller's context (or
 * the default one), ModelVersion.submit / submitStream. `caller` overrides
 * the context (the serving side of a thread instance passes its own).
 */
export function localExecutor(caller?: BlsCaller): BlsExecutor {
  return {
    exec: (call, decoupled, onResponse) => execLocal(caller ?? currentCaller(), call, decoupled, onResponse),
    control: (c) => controlLocal(caller ?? currentCaller(), c),
  };
}

function targetOf(caller: BlsCaller | undefined): BlsTarget | undefined {
  return caller?.target ?? live.at(-1);
}

const toOut = (o: InferOutput): InferenceResponse => new InferenceResponse({ outputTensors: o.outputs });

const noop = (): void => {};

function execLocal(caller: BlsCaller | undefined, call: BlsCall, decoupled: boolean, onResponse: (r: InferenceResponse, final: boolean) => void): () => void {
  const name = call.modelName;
  const target = targetOf(caller);
  const version = call.modelVersion !== undefined && call.modelVersion > 0 ? call.modelVersion : undefined;
  let mv: ModelVersion;
  try {
    if (target === undefined) throw new ModelError("no model registry runs in this process", "UNAVAILABLE");
    if (!target.isReady(name, version)) throw new ModelError(`Failed for execute the inference request. Model '${name}' is not ready.`, "UNAVAILABLE");
    mv = target.get(name, version);
  } catch (e) {
    onResponse(refused(name, e), true);
    return noop;
  }
  if (mv.decoupled && !decoupled) {
    onResponse(
      refused(
        name,
        new ModelError(
          `Model ${name} is using the decoupled. The current BLS request call doesn't support models using the decoupled transaction policy. Please use 'decoupled=True' argument to the 'exec' or 'async_exec' calls for decoupled models.'`,
        ),
      ),
      true,
    );
    return noop;
  }
  if (caller !== undefined && caller.version === mv && caller.instance.busy && !mv.hasIdleInstance) {
    onResponse(
      refused(
        name,
        new ModelError(
          `deadlock: model '${name}' version ${mv.version} calls itself from instance ${caller.instance.name} while every instance of it is busy; ` +
            "the call would wait forever for an instance (give the model more instances, or do not call it from itself)",
        ),
        "UNAVAILABLE",
      ),
      true,
    );
    return noop;
  }
  const c = new Cancellation();
  const input: InferInput = { inputs: call.inputs, outputs: call.requestedOutputNames, id: call.requestId, parameters: call.parameters, cancellation: c };
  let timer: NodeJS.Timeout | undefined;
  if (call.timeoutMs !== undefined && call.timeoutMs > 0) {
    // At the timeout the call ends with an error (whatever the callee sends
    // later is dropped) and the callee's request is cancelled: dropped if it
    // is still queued, `isCancelled()` if it runs.
    const ms = call.timeoutMs;
    timer = setTimeout(() => {
      timer = undefined;
      end(new InferenceResponse({ error: new ModelError(`Request timeout expired (BLS call to model '${name}' after ${ms} ms)`, "UNAVAILABLE") }), true);
      c.cancel();
    }, ms);
  }
  // The runtime's refusals while submit() runs (before the request is
  // queued: a wrong input, a model not ready) are Triton's "refused" errors,
  // with its prefix; the callee's own errors (a model that fails
  // synchronously fails inside submit() too) are passed on as they are.
  let submitting = true;
  let ended = false;
  const errOut = (e: unknown): InferenceResponse => {
    if (submitting && e instanceof ServingError && (e.code === "ERR_INVALID_REQUEST" || e.code === "ERR_MODEL_UNAVAILABLE")) return refused(name, e);
    return new InferenceResponse({ error: ModelError.from(e) });
  };
  const end = (r: InferenceResponse, final: boolean): void => {
    if (ended) return;
    if (final) {
      ended = true;
      if (timer !== undefined) clearTimeout(timer);
    }
    onResponse(r, final);
  };
  try {
    if (decoupled) {
      mv.submitStream(input, {
        response: (o, final) => end(toOut(o), final),
        error: (e, final) => end(errOut(e), final),
        complete: () => end(new InferenceResponse(), true),
      });
    } else {
      mv.submit(input, { resolve: (o) => end(toOut(o), true), reject: (e) => end(errOut(e), true) });
    }
  } catch (e) {
    end(refused(name, e), true);
  } finally {
    submitting = false;
  }
  return () => {
    if (!ended) c.cancel();
  };
}

async function controlLocal(caller: BlsCaller | undefined, c: BlsControl): Promise<boolean | undefined> {
  const target = targetOf(caller);
  if (c.op === "isReady") return target !== undefined && target.isReady(c.name, c.version !== undefined && c.version > 0 ? c.version : undefined);
  if (target === undefined) throw new ModelError(`cannot ${c.op} model '${c.name}': no model registry runs in this process`, "UNAVAILABLE");
  // `--model-control-mode none` (ModelRegistryOptions.modelControl false): refused in Triton's words.
  if (target.modelControl === false) throw new ModelError(MODEL_CONTROL_REFUSAL, "UNAVAILABLE");
  if (caller !== undefined && caller.target === target && caller.version.name === c.name && caller.instance.busy) {
    // The (re)load or unload waits for the model's running execute() calls, this one included.
    throw new ModelError(
      `deadlock: model '${c.name}' cannot ${c.op} itself from its own execute() (the ${c.op} waits for this execute() to finish); do it from another model or outside execute()`,
      "UNAVAILABLE",
    );
  }
  try {
    if (c.op === "load") await target.load(c.name, { ...(c.config === undefined ? {} : { config: c.config }), ...(c.files === undefined ? {} : { files: c.files }) });
    else await target.unload(c.name);
  } catch (e) {
    throw ModelError.from(e);
  }
  return undefined;
}

let executor: BlsExecutor = localExecutor();

/** Installs the executor of this thread (an instance thread's worker posts calls to the serving thread). */
export function setBlsExecutor(e: BlsExecutor): void {
  executor = e;
}

/** The executor of this thread. */
export function blsExecutor(): BlsExecutor {
  return executor;
}

/**
 * Runs a BLS call and resolves with its one response (an error response
 * rather than a rejection).
 */
export function execOnce(call: BlsCall): Promise<InferenceResponse> {
  return new Promise((resolve) => {
    try {
      executor.exec(call, false, (r, final) => {
        if (final) resolve(r);
      });
    } catch (e) {
      resolve(new InferenceResponse({ error: ModelError.from(e) }));
    }
  });
}

/**
 * What `exec({ decoupled: true })` returns: every response of the call, the
 * last one final (possibly empty), and a way to cancel the call (Triton's
 * `ResponseIterator.cancel()`). Leaving a `for await` loop early (`break`,
 * `return`, a throw) cancels the call too.
 */
export interface ResponseIterator extends AsyncIterable<InferenceResponse> {
  /**
   * Cancels the call: the callee's request is dropped if it is still
   * queued, or sees `isCancelled()` if it runs; the iterator then ends with
   * the callee's final response (a `CANCELLED` error when the callee ends
   * on the cancel). Does nothing once the final response arrived.
   */
  cancel(): void;
}

/** Runs a BLS call on a decoupled model: every response, the last one final (possibly empty). */
export function execStream(call: BlsCall): ResponseIterator {
  const queue: InferenceResponse[] = [];
  let done = false;
  let wake: (() => void) | undefined;
  let cancel: () => void = noop;
  try {
    cancel = executor.exec(call, true, (r, final) => {
      if (done) return;
      queue.push(r);
      if (final) done = true;
      const w = wake;
      wake = undefined;
      w?.();
    });
  } catch (e) {
    queue.push(new InferenceResponse({ error: ModelError.from(e) }));
    done = true;
  }
  return {
    cancel() {
      if (!done) cancel();
    },
    async *[Symbol.asyncIterator]() {
      let finished = false;
      try {
        for (;;) {
          if (queue.length > 0) {
            yield queue.shift()!;
            continue;
          }
          if (done) {
            finished = true;
            return;
          }
          await new Promise<void>((r) => (wake = r));
        }
      } finally {
        // Left early: nobody reads the rest.
        if (!finished && !done) cancel();
      }
    },
  };
}

/**
 * Whether a model (version) is ready to serve (Triton's
 * `pb_utils.is_model_ready(model_name, model_version)`).
 */
export async function isModelReady(name: string, version?: number | string): Promise<boolean> {
  const v = version === undefined || version === "" ? undefined : Number(version);
  return (await executor.control({ op: "isReady", name, version: v })) === true;
}

/** Options of {@link loadModel}. */
export interface LoadModelOptions {
  /** A config (Triton JSON form, object or JSON string) to load the model with instead of its config.pbtxt; required with `files`. */
  config?: unknown;
  /**
   * The model's files, keyed as Triton's `pb_utils.load_model(model_name,
   * config, files)` keys them: `file:` and the path relative to the model
   * directory (`file:1/model.ts` is version 1's model file). A string is
   * the file's text (UTF-8). The model loads from a temporary directory
   * made of these instead of the repository (a name the repository does
   * not have is fine); loading it again (with other files, or from the
   * repository) or unloading it removes that directory.
   */
  files?: Readonly<Record<string, Uint8Array | string>>;
}

/**
 * Loads (or reloads) a model (Triton's
 * `pb_utils.load_model(model_name, config, files)`): from the repository,
 * or from `files`.
 *
 * @example
 * ```ts
 * await loadModel("doubler", {
 *   config: { input: [{ name: "X", data_type: "TYPE_FP32", dims: [4] }], output: [{ name: "Y", data_type: "TYPE_FP32", dims: [4] }] },
 *   files: { "file:1/model.ts": source },
 * });
 * ```
 * @throws {ModelError} `UNAVAILABLE` when the server's model-control mode
 * forbids loading; `INVALID_ARG` when a file's content is neither bytes nor
 * a string; the load's error otherwise (`INTERNAL` for files that do not
 * make a model directory, e.g. without `config` or with a path that leaves
 * it; `NOT_FOUND`; `INVALID_ARG`…).
 */
export async function loadModel(name: string, opts: LoadModelOptions = {}): Promise<void> {
  let files: Record<string, Uint8Array> | undefined;
  if (opts.files !== undefined && opts.files !== null) {
    if (typeof opts.files !== "object" || Array.isArray(opts.files)) {
      throw new ModelError(`failed to load model '${name}', files should be a dictionary of file paths and file contents`, "INVALID_ARG");
    }
    for (const [k, v] of Object.entries(opts.files)) {
      files ??= {};
      if (typeof v === "string") files[k] = new TextEncoder().encode(v);
      else if (v instanceof Uint8Array) files[k] = v;
      else throw new ModelError(`failed to load model '${name}', files should be a dictionary of file paths and file contents (the content of '${k}' is neither bytes nor a string)`, "INVALID_ARG");
    }
  }
  const config = typeof opts.config === "string" ? opts.config : opts.config === undefined ? undefined : JSON.stringify(opts.config);
  await executor.control({ op: "load", name, config, files });
}

/**
 * Unloads a model (Triton's `pb_utils.unload_model(model_name)`).
 *
 * @throws {ModelError} the unload's error (`NOT_FOUND` for a model the repository does not have).
 */
export async function unloadModel(name: string): Promise<void> {
  await executor.control({ op: "unload", name });
}

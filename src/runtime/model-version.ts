/**
 * One loaded version of a model: its instances (one model object each), the
 * scheduler that spreads requests across them (one `execute()` per instance
 * at a time; with `dynamic_batching`, queued requests are grouped), request
 * and response validation against the config, and statistics. With
 * `dynamic_batching { preserve_ordering: true }` the answers go out in the
 * order the requests left the queue (response-order.ts), whichever
 * transport or BLS call sent them.
 *
 * @module
 */
import type { DType } from "../dtype.js";
import type { Tensor } from "../tensor.js";
import {
  EXECUTE_TIMEOUT_MS,
  TENSORBRIDGE_INSTANCE_THREADS,
  configTypeToDtype,
  executeTimeoutMs,
  forceCpuOnlyInputs,
  ignoredConfigFields,
  instanceThreads,
  type ModelConfig,
  type ModelInputConfig,
  type ModelOutputConfig,
} from "./config.js";
import { ServingError, errorMessage } from "./errors.js";
import type { BlsCaller, BlsTarget } from "./bls.js";
import { createRequestQueue, queueTimeoutError, type RequestQueue } from "./dynamic-batcher.js";
import { importModelClass } from "./loader.js";
import type { Cancellation } from "./cancel.js";
import { ModelError } from "./model-error.js";
import { DEFAULT_MODEL_HOST, currentModel, runInModel, runInScope, writeModelLog, type ModelContext, type ModelHost, type ModelScope } from "./model-context.js";
import { planInstances, type GpuInventory } from "./instance-plan.js";
import { prepareWarmup, warmupFailed, warmupTooLarge, type WarmupSample } from "./warmup.js";
import { InferenceRequest, type RequestControl, type RequestParameter } from "./request.js";
import { InferenceResponse } from "./response.js";
import { ANSWER_COMPLETE, ANSWER_ERROR, ANSWER_RESPONSE, ResponseOrder, type AnswerKind, type OrderSlot } from "./response-order.js";
import { InferenceResponseSender, runtimeFailures, senderDroppedError, type ResponseChannel } from "./response-sender.js";
import { StatsRecorder, type FailureReason, type InferenceObserver } from "./stats.js";
import { ThreadInstance } from "./thread-instance.js";
import type { InitializeArgs, TritonModel } from "./types.js";

/** Readiness of a model version. */
export type ModelVersionState = "LOADING" | "READY" | "UNLOADING" | "UNAVAILABLE";

/** An inference request as the runtime takes it (the server builds it from HTTP). */
export interface InferInput {
  /** Named input tensors. */
  inputs: Tensor[];
  /** Requested output names; empty or absent means all. */
  outputs?: string[];
  /** Request id. */
  id?: string;
  /** Request parameters. */
  parameters?: Record<string, RequestParameter>;
  /** When the request arrived (`process.hrtime.bigint()`), for end-to-end statistics. */
  receivedAt?: bigint;
  /** Set by the transport when it can tell that the client gave up on the request. */
  cancellation?: Cancellation;
  /**
   * The request's priority (Triton's `priority` request parameter, which
   * the transports take out of `parameters`): 1 is the highest; 0, or a
   * level above the config's `priority_levels`, is `default_priority_level`.
   * Only the dynamic batcher looks at it.
   */
  priority?: number;
  /**
   * The request's queue timeout in microseconds (Triton's `timeout`
   * request parameter): honoured only where the queue policy says
   * `allow_timeout_override`, and only when shorter than its
   * `default_timeout_microseconds`.
   */
  timeoutUs?: number;
}

/** The runtime's answer to one request. */
export interface InferOutput {
  /** Model name. */
  modelName: string;
  /** Model version. */
  modelVersion: number;
  /** The request's id ("" when none). */
  id: string;
  /** Output tensors, named, in the order the model returned them (filtered to the requested ones). */
  outputs: Tensor[];
}

/** Where {@link ModelVersion.submit} reports the outcome of a request. */
export interface InferCallbacks {
  /** The request succeeded. */
  resolve(o: InferOutput): void;
  /** The request failed (a ServingError, the model's ModelError, ...). */
  reject(e: unknown): void;
}

/**
 * Where {@link ModelVersion.submitStream} reports the responses of one
 * request: zero or more for a decoupled model, exactly one (final) for any
 * other. Exactly one call per request carries `final: true` (or is
 * `complete()`); nothing is called after it. The callbacks must not throw.
 */
export interface StreamCallbacks {
  /** One response; `final` when the model sent it with the final flag. */
  response(o: InferOutput, final: boolean): void;
  /** One response that carries an error (a failed request is one with `final: true`). */
  error(e: unknown, final: boolean): void;
  /** The final flag alone, with no response (a decoupled model's `send(undefined, { final: true })`). */
  complete(): void;
}

/** Logger used by the runtime (a subset of pino's / console's). */
export interface RuntimeLogger {
  /** Informational message. */
  info(msg: string): void;
  /** Warning. */
  warn(msg: string): void;
  /** Error. */
  error(msg: string): void;
  /** Verbose detail. */
  debug?(msg: string): void;
}

/** Options of {@link ModelVersion}. */
export interface ModelVersionOptions {
  /** The model's name. */
  name: string;
  /** The version. */
  version: number;
  /** The normalised config. */
  config: ModelConfig;
  /** The model directory (`<repo>/<model>`). */
  modelDir: string;
  /** The model file to import. */
  file: string;
  /** Event sink for metrics. */
  observer?: InferenceObserver | undefined;
  /**
   * Where the model's `Logger` lines and custom metric families go
   * (default: the observer's `modelHost`, e.g. the server's, else
   * {@link DEFAULT_MODEL_HOST}).
   */
  host?: ModelHost | undefined;
  /** The registry that BLS calls of this model's instances go to (see bls.ts). */
  bls?: BlsTarget | undefined;
  /** The GPUs that `KIND_GPU` instance groups are checked against (default: the CUDA driver's answer; tests inject one). */
  gpus?: GpuInventory | undefined;
  /** The class `file` exports, when the caller imported it already (for auto-complete); default: imported at load. */
  modelClass?: (new () => unknown) | undefined;
}

/** What a request's response sender calls back into its model version with. */
interface StreamHooks {
  open(p: Pending): InferenceResponseSender;
  deliver(s: Stream, response: InferenceResponse | undefined, final: boolean): void;
  dropped(s: Stream): void;
}

const noop = (): void => {};

/**
 * One request from submit() to its end. It is also the request's control
 * (what `request.getResponseSender()` and `request.isCancelled()` ask), so
 * a request costs no object more than before; what a sender needs lives in
 * a {@link Stream}, made only when a sender is.
 */
class Pending implements RequestControl {
  /** Removes the cancellation listener (set only when the input has a cancellation). */
  unsubscribe: (() => void) | undefined = undefined;
  /** The request's sender's state, once it has one. */
  stream: Stream | undefined = undefined;
  /** When it was given to execute() (its queue time ends there). */
  startedAt = 0n;
  /** Its batch's compute_input / compute_infer / compute_output (ns; -1: it never ran), for its statistics. */
  inputNs = -1;
  inferNs = 0;
  outputNs = 0;
  /** Its outcome went out (a request answered without a sender). */
  ended = false;
  /** Its place in the answer order (`preserve_ordering`), once it left the queue. */
  slot: OrderSlot<Pending> | undefined = undefined;

  constructor(
    readonly hooks: StreamHooks,
    readonly input: InferInput,
    /** When the request arrived (its `receivedAt`, or when submit() was called). */
    readonly receivedAt: bigint,
    readonly batchSize: number,
    readonly enqueuedAt: bigint,
    /** Set for a unary request. */
    readonly done: InferCallbacks | undefined,
    /** Set for a streamed request. */
    readonly sink: StreamCallbacks | undefined,
  ) {}

  isCancelled(): boolean {
    return this.input.cancellation?.cancelled === true;
  }

  onCancel(fn: () => void): () => void {
    const c = this.input.cancellation;
    return c === undefined ? noop : c.onCancel(fn);
  }

  responseSender(): InferenceResponseSender {
    return this.hooks.open(this);
  }
}

/** A request answered through its response sender: the sender's channel. */
class Stream implements ResponseChannel {
  closed = false;
  sent = 0;
  /** Sends so far, final flags alone included: the key of response_stats. */
  index = 0;
  /** One of its responses was an error: the request counts as failed. */
  failed = false;
  /** When the previous response went out (or the request started): where a response's time starts. */
  lastAt: bigint;
  /** A unary request's one response, held until its final flag. */
  held: InferOutput | Failed | undefined = undefined;

  constructor(
    readonly p: Pending,
    readonly decoupled: boolean,
  ) {
    this.lastAt = p.startedAt;
  }

  get requestId(): string {
    return this.p.input.id ?? "";
  }

  isCancelled(): boolean {
    return this.p.isCancelled();
  }

  deliver(response: InferenceResponse | undefined, final: boolean): void {
    this.p.hooks.deliver(this, response, final);
  }

  dropped(): void {
    this.p.hooks.dropped(this);
  }
}

interface Instance {
  name: string;
  kind: "CPU" | "GPU" | "MODEL";
  deviceId: number;
  model: TritonModel;
  busy: boolean;
  passive: boolean;
  /** The BLS context its initialize() and execute() run in (when the version has a BLS target). */
  caller: BlsCaller | undefined;
  /** Its model and its caller, the one AsyncLocalStorage scope its code runs in (when it has a caller). */
  scope: ModelScope | undefined;
}

/** Passes one answer to the request's client (held answers too, when their turn comes: see response-order.ts). */
function answerNow(p: Pending, kind: AnswerKind, value: unknown, final: boolean): void {
  const sink = p.sink;
  if (sink !== undefined) {
    if (kind === ANSWER_RESPONSE) sink.response(value as InferOutput, final);
    else if (kind === ANSWER_ERROR) sink.error(value, final);
    else sink.complete();
  } else if (kind === ANSWER_RESPONSE) p.done!.resolve(value as InferOutput);
  else p.done!.reject(value);
}

/** A request's error among a batch's results. */
class Failed {
  /**
   * @param err - the error.
   * @param answered - the model's own error response: the request was
   * answered, and Triton's statistics count it a success.
   */
  constructor(
    readonly err: unknown,
    readonly answered = false,
  ) {}
}

/** What #checkResponse throws for a response that carries the model's error. */
class ErrorResponse {
  constructor(readonly err: ModelError) {}
}

/** A response check's failure, boxed. */
const failedCheck = (e: unknown): Failed => (e instanceof ErrorResponse ? new Failed(e.err, true) : new Failed(e));

const toCpu = (t: Tensor): Tensor => (t.isCpu() ? t : t.toCpu());

// What `await` treats as a thenable: any object or function with a callable `then`.
const isThenable = (v: unknown): v is PromiseLike<unknown> =>
  ((typeof v === "object" && v !== null) || typeof v === "function") && typeof (v as { then?: unknown }).then === "function";

const now = (): bigint => process.hrtime.bigint();
const since = (t: bigint): number => Number(now() - t);

/** A request-normaliser error, which Triton words with the request's id (no closure per request: only on failure). */
function badInput(id: string | undefined, m: string): never {
  throw new ServingError("ERR_INVALID_REQUEST", `[request id: ${id || "<id_unknown>"}] ${m}`);
}

function badRequest(m: string): never {
  throw new ServingError("ERR_INVALID_REQUEST", m);
}

/** `shape` from index `from` on (1: after the batch dimension) fits the config's `dims`. */
function shapeMatches(shape: readonly number[], dims: readonly number[], from = 0): boolean {
  if (shape.length - from !== dims.length) return false;
  for (let i = 0; i < dims.length; i++) if (dims[i] !== -1 && dims[i] !== shape[i + from]) return false;
  return true;
}

function badResponse(model: string, m: string): never {
  throw new ServingError("ERR_MODEL_EXECUTE", `model '${model}' returned an invalid response: ${m}`);
}

/** The first of the first `end` tensors named `name` (no name reads as ""): a scan, for a request's few tensors. */
function namedBefore(ts: readonly Tensor[], end: number, name: string): Tensor | undefined {
  for (let j = 0; j < end; j++) if ((ts[j]!.name ?? "") === name) return ts[j];
  return undefined;
}

/** The tensor of `ts` named `name`: from `byName` when there are many (it holds them all), else by a scan. */
function tensorNamed(byName: ReadonlyMap<string, Tensor> | undefined, ts: readonly Tensor[], name: string): Tensor | undefined {
  return byName !== undefined ? byName.get(name) : namedBefore(ts, ts.length, name);
}

/** Whether a tensor of `ts` is named `name`: in `names` when there are many (it holds them all), else by a scan. */
function hasNamed(names: ReadonlySet<string> | undefined, ts: readonly Tensor[], name: string): boolean {
  return names !== undefined ? names.has(name) : namedBefore(ts, ts.length, name) !== undefined;
}

function fmtShape(s: readonly number[]): string {
  return `[${s.join(",")}]`;
}

/**
 * One loaded model version: load (instances + `initialize`), `infer`, and
 * unload (drains, then `finalize`).
 */
export class ModelVersion {
  /** Model name. */
  readonly name: string;
  /** Version. */
  readonly version: number;
  /** The normalised config this version was loaded with. */
  readonly config: ModelConfig;
  /** The model file. */
  readonly file: string;
  /** Statistics. */
  readonly stats: StatsRecorder;
  #state: ModelVersionState = "LOADING";
  #reason = "";
  readonly #modelDir: string;
  readonly #observer: InferenceObserver | undefined;
  /** The context its model code runs in (Logger, MetricFamily): see model-context.ts. */
  readonly #ctx: ModelContext;
  readonly #runBatch = (inst: Instance, batch: Pending[]): void => this.#run(inst, batch);
  readonly #bls: BlsTarget | undefined;
  readonly #gpus: GpuInventory | undefined;
  readonly #modelClass: (new () => unknown) | undefined;
  readonly #instances: Instance[] = [];
  /** Requests waiting for an instance (see dynamic-batcher.ts). */
  readonly #queue: RequestQueue<Pending>;
  readonly #inputs: Map<string, ModelInputConfig>;
  readonly #outputs: Map<string, ModelOutputConfig>;
  readonly #forceCpu: boolean;
  readonly #decoupled: boolean;
  /** Requests answered through their senders that have not sent their final flag. */
  readonly #open = new Set<Stream>();
  readonly #hooks: StreamHooks;
  /** `preserve_ordering`: answers go out in the order requests left the queue (undefined: as they come). */
  readonly #order: ResponseOrder<Pending> | undefined;
  #inflight = 0;
  #drained: (() => void) | undefined;
  #rr = 0;
  #pumping = false;
  /** Names of the inputs that are not optional. */
  readonly #required: string[];
  /** The config's output names, for requests that name none. */
  readonly #outputNames: string[];
  /** Wakes the queue when a batch's delay or a queue timeout runs out. */
  #wakeTimer: NodeJS.Timeout | undefined;
  /** When #wakeTimer fires. */
  #wakeAt = 0n;

  /** @param opts - what to load. */
  constructor(opts: ModelVersionOptions) {
    this.name = opts.name;
    this.version = opts.version;
    this.config = opts.config;
    this.file = opts.file;
    this.#modelDir = opts.modelDir;
    this.#observer = opts.observer;
    this.#ctx = { name: opts.name, version: opts.version, host: opts.host ?? (opts.observer as { modelHost?: ModelHost } | undefined)?.modelHost ?? DEFAULT_MODEL_HOST };
    this.#bls = opts.bls;
    this.#gpus = opts.gpus;
    this.#modelClass = opts.modelClass;
    this.stats = new StatsRecorder(opts.name, opts.version);
    this.#inputs = new Map(opts.config.input.map((i) => [i.name, i]));
    this.#outputs = new Map(opts.config.output.map((o) => [o.name, o]));
    this.#outputNames = [...this.#outputs.keys()];
    this.#required = opts.config.input.filter((i) => !i.optional).map((i) => i.name);
    this.#forceCpu = forceCpuOnlyInputs(opts.config);
    this.#decoupled = opts.config.model_transaction_policy?.decoupled === true;
    this.#queue = createRequestQueue<Pending>(opts.config, (p) => p.input.inputs);
    this.#order = opts.config.dynamic_batching?.preserve_ordering === true ? new ResponseOrder<Pending>(answerNow) : undefined;
    this.#hooks = {
      open: (p) => this.#openSender(p),
      deliver: (s, r, final) => this.#deliver(s, r, final),
      dropped: (s) => this.#end(s, senderDroppedError(this.name, s.requestId), "BACKEND"),
    };
  }

  /** Current state. */
  get state(): ModelVersionState {
    return this.#state;
  }

  /** Why the version is unavailable ("" when ready). */
  get reason(): string {
    return this.#reason;
  }

  /** True when requests are accepted. */
  get ready(): boolean {
    return this.#state === "READY";
  }

  /** True when an instance could take a request now (the BLS self-call deadlock check asks). */
  get hasIdleInstance(): boolean {
    for (const i of this.#instances) if (!i.busy && !i.passive) return true;
    return false;
  }

  /** Number of model instances. */
  get instanceCount(): number {
    return this.#instances.length;
  }

  /**
   * Imports the model file, makes every instance and calls `initialize`.
   * On failure, instances already initialised are finalised.
   *
   * @throws {ServingError} `ERR_MODEL_LOAD`.
   */
  async load(): Promise<void> {
    // The model's import, constructors and initialize() run in its context.
    if (currentModel() !== this.#ctx) return runInModel(this.#ctx, () => this.load());
    try {
      const threads = instanceThreads(this.config);
      // In-thread instances share one import; a worker imports the file itself.
      const cls = threads ? undefined : (this.#modelClass ?? (await importModelClass(this.file)));
      // Before anything is made: a GPU the machine lacks fails the load (instance-plan.ts).
      const plan = planInstances(this.config, this.#gpus);
      for (const f of ignoredConfigFields(this.config)) writeModelLog(this.#ctx, "WARNING", f.message);
      if (executeTimeoutMs(this.config) !== undefined && !threads) {
        writeModelLog(this.#ctx, "WARNING", `parameter ${EXECUTE_TIMEOUT_MS} applies to thread instances only (${TENSORBRIDGE_INSTANCE_THREADS}: "yes") and is ignored: an execute() in the serving thread cannot be stopped`);
      }
      const warmup = await prepareWarmup(this.config, this.#modelDir);
      const configJson = JSON.stringify(this.config);
      for (const p of plan) {
        let model: TritonModel;
        const inst: Instance = { ...p, model: undefined as unknown as TritonModel, busy: false, caller: undefined, scope: undefined };
        if (this.#bls !== undefined) {
          inst.caller = { target: this.#bls, version: this, instance: inst };
          inst.scope = { model: this.#ctx, caller: inst.caller };
        }
        if (cls === undefined) {
          model = new ThreadInstance(this.file, `model '${this.name}' instance ${p.name}`, inst.caller, {
            executeTimeoutMs: executeTimeoutMs(this.config),
            onRestart: (why) => writeModelLog(this.#ctx, "WARNING", `instance ${p.name}: ${why}; restarting its worker thread`),
            onRestartFailed: (e) => writeModelLog(this.#ctx, "ERROR", `instance ${p.name}: its worker thread could not be restarted: ${errorMessage(e)}`),
          });
        } else {
          try {
            model = new cls() as TritonModel;
          } catch (e) {
            await this.#finalizeAll();
            throw new ServingError("ERR_MODEL_LOAD", `constructing instance ${p.name} failed: ${errorMessage(e)}`, { cause: e });
          }
        }
        const args: InitializeArgs = {
          model_config: configJson,
          model_instance_kind: p.kind,
          model_instance_name: p.name,
          model_instance_device_id: String(p.deviceId),
          model_repository: this.#modelDir,
          model_version: String(this.version),
          model_name: this.name,
        };
        inst.model = model;
        if (typeof model.initialize === "function") {
          try {
            const m = model;
            await (inst.scope === undefined ? m.initialize!(args) : runInScope(inst.scope, () => m.initialize!(args)));
          } catch (e) {
            await this.#finalizeAll();
            // A worker's message says which step failed (the import, the constructor or initialize()).
            const what = model instanceof ThreadInstance ? `instance ${p.name} (in its worker thread)` : `initialize() of instance ${p.name}`;
            throw new ServingError("ERR_MODEL_LOAD", `${what} failed: ${errorMessage(e)}`, { cause: e });
          }
        }
        this.#instances.push(inst);
        for (const sample of warmup) await this.#warmUp(inst, sample);
      }
      if (!this.#instances.some((i) => !i.passive)) {
        // Only passive instances: nothing will serve, but Triton still loads it.
        this.#instances.forEach((i) => (i.passive = false));
      }
      this.#state = "READY";
      this.#reason = "";
    } catch (e) {
      this.#state = "UNAVAILABLE";
      this.#reason = errorMessage(e);
      this.#ctx.host.metrics.release(this.#ctx);
      if (e instanceof ServingError) throw e;
      throw new ServingError("ERR_MODEL_LOAD", errorMessage(e), { cause: e });
    }
  }

  /**
   * Stops taking requests, waits for queued ones and for running
   * `execute()` calls, ends the requests still open on their senders (a
   * decoupled model's) with an `UNAVAILABLE` error, then calls every
   * instance's `finalize()` (errors are logged, not thrown).
   */
  async unload(logger?: RuntimeLogger): Promise<void> {
    if (this.#state === "UNAVAILABLE" && this.#instances.length === 0) return;
    // finalize() runs in the model's context; its metric families go with it.
    if (currentModel() !== this.#ctx) return runInModel(this.#ctx, () => this.unload(logger));
    this.#state = "UNLOADING";
    if (this.#queue.size > 0 || this.#inflight > 0) {
      await new Promise<void>((r) => {
        this.#drained = r;
        this.#pump();
      });
    }
    if (this.#wakeTimer !== undefined) {
      clearTimeout(this.#wakeTimer);
      this.#wakeTimer = undefined;
    }
    // Triton would wait for their final flags; a model that never sends one
    // would then block the unload (and the server's shutdown) for good.
    // (#end removes each from the set as it goes; a Set's iteration allows that.)
    for (const s of this.#open) {
      this.#end(s, new ModelError(`model '${this.name}' version ${this.version} was unloaded before request '${s.requestId}' sent its final response`, "UNAVAILABLE"), "OTHER");
    }
    await this.#finalizeAll(logger);
    this.#ctx.host.metrics.release(this.#ctx);
    this.#state = "UNAVAILABLE";
    this.#reason = "unloaded";
  }

  /**
   * Runs one warm-up sample on an instance that is not serving yet (see
   * warmup.ts): `count` execute() calls, outside the statistics.
   *
   * @throws {ServingError} `ERR_MODEL_LOAD` (after finalizing every
   * instance) when a request of the sample fails.
   */
  async #warmUp(inst: Instance, sample: WarmupSample): Promise<void> {
    const tooLarge = warmupTooLarge(sample, inst.name, this.config.max_batch_size);
    if (tooLarge !== undefined) {
      await this.#finalizeAll();
      throw warmupFailed(sample.name, tooLarge);
    }
    for (let i = 0; i < sample.count; i++) {
      writeModelLog(this.#ctx, "VERBOSE", `instance ${inst.name} is running warmup sample '${sample.name}' (${i + 1} of ${sample.count})`);
      const call = sample.requests(this.name, this.version, this.#decoupled, this.#outputNames);
      let errors: string[];
      try {
        const run = () => inst.model.execute(call.requests);
        errors = await call.outcome(await (inst.scope === undefined ? run() : runInScope(inst.scope, run)));
      } catch (e) {
        // Every request of the call fails with it (Triton lists each request's error).
        const message = executeError(inst.name, e).message;
        errors = call.requests.map(() => message);
      }
      if (errors.length > 0) {
        await this.#finalizeAll();
        throw warmupFailed(sample.name, errors);
      }
    }
  }

  async #finalizeAll(logger?: RuntimeLogger): Promise<void> {
    for (const inst of this.#instances.splice(0)) {
      if (typeof inst.model.finalize !== "function") continue;
      try {
        await inst.model.finalize();
      } catch (e) {
        logger?.error(`finalize() of ${this.name} instance ${inst.name} failed: ${errorMessage(e)}`);
      }
    }
  }

  /**
   * Checks a request against the config (names, dtypes, shapes, required
   * inputs, requested outputs) and returns its batch size (1 for a model
   * without batching).
   *
   * @throws {ServingError} `ERR_INVALID_REQUEST`.
   */
  validate(input: InferInput): number {
    const model = this.name;
    const bad: (m: string) => never = badRequest;
    const inputs = input.inputs;
    // The names seen so far: a scan of the inputs before this one for a few
    // (no Set per request), a Set beyond.
    const seen = inputs.length > 8 ? new Set<string>() : undefined;
    const mbs = this.config.max_batch_size;
    let batch = -1;
    for (let i = 0; i < inputs.length; i++) {
      const t = inputs[i]!;
      const n = t.name ?? "";
      const cfg = this.#inputs.get(n);
      if (!cfg) bad(`unexpected inference input '${n}' for model '${model}'`);
      if (seen !== undefined ? seen.has(n) : namedBefore(inputs, i, n) !== undefined) bad(`input '${n}' is given more than once`);
      seen?.add(n);
      const want = configTypeToDtype(cfg.data_type);
      if (t.dtype !== want) badInput(input.id, `inference input '${n}' data-type is '${t.dtype}', but model '${model}' expects '${want}'`);
      const shape = t.shape;
      if (mbs > 0) {
        if (shape.length === 0) bad(`input '${n}' of model '${model}' needs a batch dimension (max_batch_size is ${mbs})`);
        const b = shape[0]!;
        if (b < 1 || b > mbs) badInput(input.id, `inference request batch-size must be <= ${mbs} for '${model}' (input '${n}' has batch size ${b})`);
        if (batch !== -1 && b !== batch) bad(`inputs of model '${model}' have different batch sizes (${batch} and ${b})`);
        batch = b;
      }
      if (!shapeMatches(shape, cfg.dims, mbs > 0 ? 1 : 0)) {
        const expected = mbs > 0 ? `[-1,${cfg.dims.join(",")}]` : fmtShape(cfg.dims);
        badInput(input.id, `unexpected shape for input '${n}' for model '${model}'. Expected ${expected}, got ${fmtShape(t.shape)}. `);
      }
    }
    let allThere = true;
    for (const name of this.#required) allThere &&= hasNamed(seen, inputs, name);
    if (!allThere) {
      const missing = this.#required.filter((name) => !hasNamed(seen, inputs, name));
      const given = inputs.map((t) => t.name ?? "");
      badInput(
        input.id,
        `expected ${this.#inputs.size} inputs but got ${input.inputs.length} inputs for model '${model}'. ` +
          `Got input(s) [${given.map((s) => `'${s}'`).join(", ")}], but missing required input(s) [${missing.map((s) => `'${s}'`).join(", ")}]. Please provide all required input(s).`,
      );
    }
    const requested = input.outputs;
    if (requested !== undefined && requested.length > 0) {
      const outs = requested.length > 8 ? new Set<string>() : undefined;
      for (let i = 0; i < requested.length; i++) {
        const o = requested[i]!;
        if (!this.#outputs.has(o)) bad(`unexpected inference output '${o}' for model '${model}'`);
        if (outs !== undefined ? outs.has(o) : i > 0 && requested.lastIndexOf(o, i - 1) >= 0) bad(`output '${o}' is requested more than once`);
        outs?.add(o);
      }
    }
    return mbs > 0 ? Math.max(batch, 1) : 1;
  }

  /** The dtype the config gives an input (undefined for an unknown input). */
  inputDtype(name: string): DType | undefined {
    const c = this.#inputs.get(name);
    return c ? configTypeToDtype(c.data_type) : undefined;
  }

  /** The dtype the config gives an output (undefined for an unknown output). */
  outputDtype(name: string): DType | undefined {
    const c = this.#outputs.get(name);
    return c ? configTypeToDtype(c.data_type) : undefined;
  }

  /**
   * Runs one request: validates it, queues it for a free instance, checks
   * the model's response.
   *
   * @returns the outputs.
   * @throws {ServingError} `ERR_INVALID_REQUEST` for a request that does not
   * fit the config, `ERR_MODEL_UNAVAILABLE` when the version is not ready,
   * `ERR_MODEL_EXECUTE` when the response does not fit the config.
   * @throws {ModelError} the model's own error for this request.
   */
  infer(input: InferInput): Promise<InferOutput> {
    return new Promise<InferOutput>((resolve, reject) => this.submit(input, { resolve, reject }));
  }

  /**
   * {@link infer} without a promise: `done.resolve` or `done.reject` is
   * called once with the outcome, synchronously when the model's
   * `execute()` returns its responses (not a promise). The server's
   * inference handler uses it so that a request to such a model is
   * answered without a promise or a microtask. The callbacks must not throw.
   *
   * A request cancelled (`input.cancellation`) while it is queued is
   * rejected at once with a `CANCELLED` ModelError and never reaches the
   * model; one cancelled while it runs gets the answer execute() returns
   * (the model may look at `request.isCancelled()`; the transport drops the
   * answer), or, when the model answers through the request's sender, a
   * `CANCELLED` rejection at its final flag, as a stream would.
   * A decoupled model's request is rejected with an `UNSUPPORTED`
   * ModelError (the transports refuse it before, in their own words).
   */
  submit(input: InferInput, done: InferCallbacks): void {
    if (this.#decoupled) {
      // The transports refuse first, in their own words; this is the runtime's guard.
      done.reject(new ModelError(`model '${this.name}': a unary inference call doesn't support models with decoupled transaction policy`, "UNSUPPORTED"));
      return;
    }
    this.#submit(input, done, undefined);
  }

  /** True for a decoupled model (`model_transaction_policy { decoupled: true }`): zero or many responses per request. */
  get decoupled(): boolean {
    return this.#decoupled;
  }

  /**
   * Runs one request and reports every response it gets (see
   * {@link StreamCallbacks}): what a streaming transport (gRPC
   * `ModelStreamInfer`, HTTP `generate_stream`) uses. A model that is not
   * decoupled answers with exactly one final response.
   *
   * A decoupled request ends when the model sends its final flag, or with
   * an error final: `execute()` threw, or returned something (it must
   * return nothing), its sender was garbage-collected first (`INTERNAL`),
   * or the model was unloaded first (`UNAVAILABLE`). After a cancel,
   * responses sent without the final flag are dropped, and the final flag
   * ends the request with a `CANCELLED` error.
   */
  submitStream(input: InferInput, sink: StreamCallbacks): void {
    this.#submit(input, undefined, sink);
  }

  #submit(input: InferInput, done: InferCallbacks | undefined, sink: StreamCallbacks | undefined): void {
    const received = input.receivedAt ?? now();
    let err: unknown;
    let batchSize = 1;
    if (this.#state !== "READY") {
      err = new ServingError("ERR_MODEL_UNAVAILABLE", `model '${this.name}' version ${this.version} is not ready (${this.#state.toLowerCase()})`);
    } else {
      try {
        batchSize = this.validate(input);
      } catch (e) {
        err = e;
      }
    }
    if (err !== undefined) {
      // As Triton 2.51 (observed live, __test__/server-toolbox-tritonclient.spec.ts):
      // a request refused before it reaches the model (not ready, a wrong
      // input) is counted nowhere, neither in the statistics nor in
      // nv_inference_request_failure; REJECTED counts queue timeouts.
      if (sink !== undefined) sink.error(err, true);
      else done!.reject(err);
      return;
    }
    const p = new Pending(this.#hooks, input, received, batchSize, now(), done, sink);
    const c = input.cancellation;
    if (c !== undefined) {
      if (c.cancelled) {
        this.#cancelQueued(p);
        return;
      }
      p.unsubscribe = c.onCancel(() => this.#onCancel(p));
    }
    const refused = this.#queue.enqueue(p, input);
    if (refused !== undefined) {
      // As Triton 2.51: a request its queue refuses is counted nowhere, in
      // the statistics or the failure metrics (its enqueue failed; the
      // request never was an inference).
      p.ended = true;
      p.unsubscribe?.();
      p.unsubscribe = undefined;
      if (sink !== undefined) sink.error(refused, true);
      else done!.reject(refused);
      return;
    }
    this.#pump();
  }

  /**
   * A request was cancelled. Still queued: it leaves the queue and fails
   * with CANCELLED, as Triton's schedulers drop cancelled requests. Running:
   * the model sees it (`isCancelled()`) and decides.
   */
  #onCancel(p: Pending): void {
    if (!this.#queue.remove(p)) return;
    // (A Cancellation forgets its listeners once it fires; this says so to any other kind.)
    p.unsubscribe?.();
    p.unsubscribe = undefined;
    this.#cancelQueued(p);
    if (this.#queue.size === 0) this.#maybeDrained();
  }

  #cancelQueued(p: Pending): void {
    p.ended = true;
    // Triton's Status(CANCELLED) has no message; this one says what happened.
    const err = new ModelError("Request was cancelled", "CANCELLED");
    this.#record(false, p.receivedAt, -1, p.batchSize, "CANCELED");
    if (p.sink !== undefined) p.sink.error(err, true);
    else p.done!.reject(err);
  }

  /** @param p - the request, when it ran: its batch's compute times count in a success's statistics. */
  #record(ok: boolean, received: bigint, queueNs: number, batchSize: number, reason?: FailureReason, inStatistics = true, p?: Pending): void {
    const ns = since(received);
    if (inStatistics) {
      if (p === undefined) this.stats.request(ok, ns, batchSize, queueNs);
      else this.stats.request(ok, ns, batchSize, queueNs, p.inputNs, p.inferNs, p.outputNs);
    }
    const o = this.#observer;
    if (o === undefined) return;
    const q = Math.max(0, queueNs);
    // Two literals rather than a spread: no `reason` key on success, and no
    // temporary object per request.
    o.requestDone(
      reason
        ? { model: this.name, version: this.version, success: ok, reason, durationNs: ns, queueNs: q, batchSize }
        : { model: this.name, version: this.version, success: ok, durationNs: ns, queueNs: q, batchSize },
    );
  }

  #pump(): void {
    // A model whose execute() returns synchronously finishes inside #run,
    // and its instance's release asks for the queue again: the loop below
    // is already taking it.
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      this.#pumpLoop();
    } finally {
      this.#pumping = false;
    }
  }

  #pumpLoop(): void {
    const q = this.#queue;
    let t = now();
    if (q.nextDeadline !== undefined) this.#rejectExpired(t);
    while (q.size > 0) {
      const idle = this.#pickIdle();
      if (!idle) break;
      // An unload sends what is queued without waiting for batches to fill.
      const next = q.next(t, this.#state !== "READY");
      if (next === undefined) break;
      if (typeof next === "bigint") {
        this.#wakeUp(next);
        break;
      }
      // preserve_ordering: each request's place in the answer order is where it left the queue (Triton's DelegateResponse at Dequeue).
      const order = this.#order;
      if (order !== undefined) for (const p of next) p.slot = order.open(p);
      idle.busy = true;
      this.#inflight++;
      // One AsyncLocalStorage run per batch: execute() and what it starts are
      // the model's and its instance's (BLS). Without a BLS target, the
      // caller of the code running now (a BLS call's) is kept.
      if (idle.scope !== undefined) runInScope(idle.scope, this.#runBatch, idle, next);
      else runInModel(this.#ctx, this.#runBatch, idle, next);
      if (q.nextDeadline !== undefined) {
        t = now();
        this.#rejectExpired(t);
      }
    }
    // Requests that wait for a busy instance are still refused when their timeout runs out.
    const deadline = q.nextDeadline;
    if (deadline !== undefined) this.#wakeUp(deadline + 1n);
  }

  /** Fails the queued requests whose timeout expired (REJECT), as Triton's batcher does. */
  #rejectExpired(t: bigint): void {
    const expired = this.#queue.takeExpired(t);
    if (expired.length === 0) return;
    const err = queueTimeoutError();
    for (const p of expired) this.#fail(p, t, err, "REJECTED");
    if (this.#queue.size === 0) this.#maybeDrained();
  }

  /** Pumps the queue again at `at` (the earliest of the wake-ups asked for). */
  #wakeUp(at: bigint): void {
    if (this.#wakeTimer !== undefined) {
      if (this.#wakeAt <= at) return;
      clearTimeout(this.#wakeTimer);
    }
    this.#wakeAt = at;
    const ms = Math.max(0, Math.ceil(Number(at - now()) / 1e6));
    this.#wakeTimer = setTimeout(() => {
      this.#wakeTimer = undefined;
      this.#pump();
    }, ms);
  }

  /** An instance finished a batch: it takes the next one, or the drain completes. */
  #release(inst: Instance): void {
    inst.busy = false;
    this.#inflight--;
    if (this.#queue.size > 0) this.#pump();
    else this.#maybeDrained();
  }

  /** Completes an unload's wait once nothing is queued or running. */
  #maybeDrained(): void {
    if (this.#inflight === 0 && this.#queue.size === 0 && this.#drained) {
      const d = this.#drained;
      this.#drained = undefined;
      d();
    }
  }

  #pickIdle(): Instance | undefined {
    const n = this.#instances.length;
    for (let k = 0; k < n; k++) {
      const inst = this.#instances[(this.#rr + k) % n]!;
      if (!inst.busy && !inst.passive) {
        this.#rr = (this.#rr + k + 1) % n;
        return inst;
      }
    }
    return undefined;
  }

  /**
   * Runs one batch on an instance and settles its requests. An execute()
   * that returns its responses (not a promise) is finished synchronously:
   * no promise and no microtask per batch, which is most of what a small
   * model's request costs here.
   */
  #run(inst: Instance, batch: Pending[]): void {
    const start = now();
    // compute_input: build the requests (inputs to CPU when forced)
    let requests: InferenceRequest[];
    try {
      requests = [];
      for (const p of batch) {
        p.startedAt = start;
        const r = this.#request(p);
        // Made now, not on first use: a request whose model drops it unanswered then ends with an error, not never.
        if (this.#decoupled) r.getResponseSender();
        requests.push(r);
      }
    } catch (e) {
      const err = new ServingError("ERR_MODEL_EXECUTE", `preparing inputs for model '${this.name}' failed: ${errorMessage(e)}`, { cause: e });
      try {
        for (const p of batch) {
          if (p.stream !== undefined) this.#end(p.stream, err, "OTHER");
          else this.#fail(p, start, err, "OTHER");
        }
      } finally {
        this.#release(inst);
      }
      return;
    }
    const inferStart = now();
    const inputNs = Number(inferStart - start);
    let responses: unknown;
    try {
      // (In its instance's scope already: #pumpLoop.)
      responses = inst.model.execute(requests);
    } catch (e) {
      try {
        this.#executeFailed(inst, batch, start, inputNs, inferStart, e);
      } finally {
        this.#release(inst);
      }
      return;
    }
    if (isThenable(responses)) {
      // As `await` would: a thenable's own then(), settled later.
      Promise.resolve(responses).then(
        (r) => {
          try {
            this.#finish(batch, start, inputNs, inferStart, r);
          } finally {
            this.#release(inst);
          }
        },
        (e: unknown) => {
          try {
            this.#executeFailed(inst, batch, start, inputNs, inferStart, e);
          } finally {
            this.#release(inst);
          }
        },
      );
      return;
    }
    try {
      this.#finish(batch, start, inputNs, inferStart, responses);
    } finally {
      this.#release(inst);
    }
  }

  /** The model's view of one queued request. */
  #request(p: Pending): InferenceRequest {
    const input = p.input;
    return new InferenceRequest(
      {
        inputs: this.#forceCpu ? input.inputs.map(toCpu) : input.inputs,
        requestedOutputNames: input.outputs && input.outputs.length > 0 ? input.outputs : this.#outputNames,
        requestId: input.id ?? "",
        parameters: input.parameters ?? {},
        modelName: this.name,
        modelVersion: this.version,
      },
      p,
    );
  }

  /** Rejects a failed request, then counts it (its queue time measured up to `start`). */
  #fail(p: Pending, start: bigint, e: unknown, reason: FailureReason, answered = false): void {
    p.ended = true;
    if (p.unsubscribe !== undefined) {
      p.unsubscribe();
      p.unsubscribe = undefined;
    }
    // Answered first, counted after (see #succeed).
    try {
      if (p.slot !== undefined) this.#order!.send(p.slot, ANSWER_ERROR, e, true);
      else if (p.sink !== undefined) p.sink.error(e, true);
      else p.done!.reject(e);
    } finally {
      // The model's own error response answered the request: Triton counts it a success.
      if (answered) this.#record(true, p.receivedAt, Number(start - p.enqueuedAt), p.batchSize, undefined, true, p);
      else this.#record(false, p.receivedAt, Number(start - p.enqueuedAt), p.batchSize, reason);
    }
  }

  /** Answers a request that succeeded, then counts it. */
  #succeed(p: Pending, start: bigint, o: InferOutput): void {
    p.ended = true;
    if (p.unsubscribe !== undefined) {
      p.unsubscribe();
      p.unsubscribe = undefined;
    }
    // The answer goes out before the statistics and metrics count it: the
    // client waits on the one, nobody on the other. Both happen in this
    // synchronous run, so nothing that reads the counts (the statistics
    // endpoint, /metrics, the client's next request) can see one without
    // the other.
    try {
      if (p.slot !== undefined) this.#order!.send(p.slot, ANSWER_RESPONSE, o, true);
      else if (p.sink !== undefined) p.sink.response(o, true);
      else p.done!.resolve(o);
    } finally {
      this.#record(true, p.receivedAt, Number(start - p.enqueuedAt), p.batchSize, undefined, true, p);
    }
  }

  /**
   * execute() threw or rejected: every request of the batch fails with the
   * model's error, but for those that already sent their final flag.
   */
  #executeFailed(inst: Instance, batch: Pending[], start: bigint, inputNs: number, inferStart: bigint, e: unknown): void {
    const err = executeError(inst.name, e);
    // The client gets the message; the server's log gets which requests, and where it was thrown.
    const ids = batch.map((p) => `'${p.input.id ?? ""}'`).join(", ");
    // The stack's frames, as Triton's log line ends with the traceback ("At: ...").
    const frames = e instanceof Error && e.stack ? e.stack.split("\n").filter((l) => /^\s+at /.test(l)) : [];
    const at = frames.length > 0 ? `\nAt:\n${frames.join("\n")}` : "";
    writeModelLog(this.#ctx, "ERROR", `execute() of instance ${inst.name} failed for request id(s) [${ids}]: ${err.message}${at}`);
    const inferNs = since(inferStart);
    this.#execution(batch, inputNs, inferNs, 0);
    for (const p of batch) {
      if (p.stream !== undefined) this.#end(p.stream, err, "BACKEND");
      else this.#fail(p, start, err, "BACKEND");
    }
  }

  /** Checks execute()'s responses and settles each request of the batch. */
  #finish(batch: Pending[], start: bigint, inputNs: number, inferStart: bigint, responses: unknown): void {
    const outStart = now();
    const inferNs = Number(outStart - inferStart);
    const n = batch.length;
    if (this.#decoupled) {
      this.#execution(batch, inputNs, inferNs, 0);
      if (responses !== undefined && responses !== null) {
        const err = new ServingError(
          "ERR_MODEL_EXECUTE",
          `model '${this.name}' is decoupled: execute() must return nothing and send each request's responses with request.getResponseSender(), got ${describe(responses)}`,
        );
        for (const p of batch) this.#end(p.stream!, err, "BACKEND");
      }
      return;
    }
    // One result per request: an InferOutput, the error in a box (a model may
    // throw anything), or undefined for a request answered by its sender.
    const results: (InferOutput | Failed | undefined)[] = [];
    if (!Array.isArray(responses) || responses.length !== n) {
      const none = responses === undefined || responses === null;
      let err: ServingError | undefined;
      for (let i = 0; i < n; i++) {
        // Returning nothing is how a request answered through its sender ends execute().
        if (none && batch[i]!.stream !== undefined) {
          results.push(undefined);
          continue;
        }
        err ??= new ServingError(
          "ERR_MODEL_EXECUTE",
          `model '${this.name}' execute() must return one InferenceResponse per request (${n}), got ${Array.isArray(responses) ? `${responses.length} responses` : describe(responses)}` +
            (none ? " (or send each with request.getResponseSender())" : ""),
        );
        results.push(new Failed(err));
      }
    } else {
      for (let i = 0; i < n; i++) {
        const p = batch[i]!;
        const r = responses[i];
        if (p.stream !== undefined) {
          results.push(
            r === undefined || r === null
              ? undefined
              : new Failed(new ServingError("ERR_MODEL_EXECUTE", `model '${this.name}' execute() returned a response for request ${i}, which answers through its response sender (return undefined for it)`)),
          );
          continue;
        }
        try {
          results.push(this.#checkResponse(r, p, i, false));
        } catch (e) {
          results.push(failedCheck(e));
        }
      }
    }
    const outputNs = since(outStart);
    const total = this.#stamp(batch, inputNs, inferNs, outputNs);
    // The batch's execution is counted once its answers are out (see #succeed).
    try {
      for (let i = 0; i < n; i++) {
        const p = batch[i]!;
        const r = results[i];
        if (r === undefined) continue;
        if (r instanceof Failed) {
          if (p.stream !== undefined) this.#end(p.stream, r.err, "BACKEND");
          else this.#fail(p, start, r.err, "BACKEND", r.answered);
        } else {
          this.#succeed(p, start, r);
        }
      }
    } finally {
      this.#countExecution(batch.length, total, inputNs, inferNs, outputNs);
    }
  }

  /** `request.getResponseSender()`, the first time: the request is answered through its sender from now on. */
  #openSender(p: Pending): InferenceResponseSender {
    const s = new Stream(p, this.#decoupled);
    if (p.ended) {
      // Its answer already went out (execute() returned it): nothing can follow.
      s.closed = true;
    } else {
      p.stream = s;
      this.#open.add(s);
    }
    return new InferenceResponseSender(s);
  }

  /**
   * One send() of a request's sender (`closed` is already set when
   * `final`): checks the response as a returned one is checked, records
   * response_stats, and passes it on.
   */
  #deliver(s: Stream, response: InferenceResponse | undefined, final: boolean): void {
    const p = s.p;
    const sentAt = now();
    const index = s.index++;
    if (p.isCancelled()) {
      // The client is gone: only the final flag matters, to end the request.
      this.stats.response(index, "cancel", 0, 0, Number(sentAt - s.lastAt));
      s.lastAt = sentAt;
      if (final) this.#close(s, new ModelError("Request was cancelled", "CANCELLED"), "CANCELED");
      return;
    }
    let out: InferOutput | Failed | undefined;
    if (response !== undefined) {
      try {
        out = this.#checkResponse(response, p, index, true);
      } catch (e) {
        out = failedCheck(e);
        // The model's own error response still answers the request (Triton counts it a success).
        if (!out.answered) s.failed = true;
      }
    }
    const end = now();
    if (out === undefined) this.stats.response(index, "empty", 0, 0, Number(end - s.lastAt));
    else this.stats.response(index, out instanceof Failed ? "fail" : "success", Number(sentAt - s.lastAt), Number(end - sentAt), Number(end - s.lastAt));
    s.lastAt = end;
    const sink = p.sink;
    if (sink === undefined) {
      // A unary request (a model that is not decoupled): its one response waits for the final flag.
      if (out !== undefined) s.held = out;
      if (!final) return;
      const r = s.held!;
      this.#close(s, r instanceof Failed ? r.err : undefined, "BACKEND", r instanceof Failed ? undefined : r, r instanceof Failed && r.answered);
      return;
    }
    if (final) this.#close(s, undefined, "BACKEND");
    if (p.slot !== undefined) {
      if (out === undefined) this.#order!.send(p.slot, ANSWER_COMPLETE, undefined, final);
      else if (out instanceof Failed) this.#order!.send(p.slot, ANSWER_ERROR, out.err, final);
      else this.#order!.send(p.slot, ANSWER_RESPONSE, out, final);
    } else if (out === undefined) sink.complete();
    else if (out instanceof Failed) sink.error(out.err, final);
    else sink.response(out, final);
  }

  /**
   * The runtime ends an open request with an error as its final response
   * (execute() failed, the sender was dropped, the model unloads); a
   * request that already ended is left alone.
   */
  #end(s: Stream, err: unknown, reason: FailureReason): void {
    if (s.closed) return;
    s.closed = true;
    const at = now();
    this.stats.response(s.index++, "fail", Number(at - s.lastAt), 0, Number(at - s.lastAt));
    s.lastAt = at;
    this.#close(s, err, reason);
  }

  /**
   * A request's final flag: records the request (failed when any of its
   * responses was an error) and, for `err` or a unary request, answers it.
   * A streamed request's last response (when `err` is undefined) is passed
   * on by the caller.
   */
  #close(s: Stream, err: unknown, reason: FailureReason, unary?: InferOutput, answered = false): void {
    const p = s.p;
    this.#open.delete(s);
    p.ended = true;
    if (p.unsubscribe !== undefined) {
      p.unsubscribe();
      p.unsubscribe = undefined;
    }
    const failed = (err !== undefined && !answered) || s.failed;
    this.#record(!failed, p.receivedAt, Number(p.startedAt - p.enqueuedAt), p.batchSize, failed ? reason : undefined, true, p);
    if (p.sink !== undefined && err === undefined) return;
    const kind = err !== undefined ? ANSWER_ERROR : ANSWER_RESPONSE;
    const value = err !== undefined ? err : unary;
    if (p.slot !== undefined) this.#order!.send(p.slot, kind, value, true);
    else answerNow(p, kind, value, true);
  }

  #execution(batch: Pending[], inputNs: number, inferNs: number, outputNs: number): void {
    this.#countExecution(batch.length, this.#stamp(batch, inputNs, inferNs, outputNs), inputNs, inferNs, outputNs);
  }

  /** Gives each request of a batch the batch's compute times (its statistics use them); returns the batch's size. */
  #stamp(batch: Pending[], inputNs: number, inferNs: number, outputNs: number): number {
    let total = 0;
    for (const p of batch) {
      total += p.batchSize;
      p.inputNs = inputNs;
      p.inferNs = inferNs;
      p.outputNs = outputNs;
    }
    return total;
  }

  /** Counts one execution of `requests` requests (`total` in all) in the statistics and for the observer. */
  #countExecution(requests: number, total: number, inputNs: number, inferNs: number, outputNs: number): void {
    this.stats.execution(total, inputNs, inferNs, outputNs);
    this.#observer?.executionDone({
      model: this.name,
      version: this.version,
      requests,
      batchSize: total,
      computeInputNs: inputNs,
      computeInferNs: inferNs,
      computeOutputNs: outputNs,
    });
  }

  /** @param sent - the response came through the sender (`index` is then the response's, not the request's). */
  #checkResponse(r: unknown, p: Pending, index: number, sent: boolean): InferOutput {
    const model = this.name;
    if (!(r instanceof InferenceResponse) && !isResponseLike(r)) {
      badResponse(model, sent ? `response ${index} sent for request '${p.input.id ?? ""}' is not an InferenceResponse` : `execute() result ${index} is not an InferenceResponse`);
    }
    const resp = r as InferenceResponse;
    if (resp.error) {
      const err = ModelError.from(resp.error);
      throw runtimeFailures.has(err) ? err : new ErrorResponse(err);
    }
    // The outputs in the model's order, checked; names are unique (a scan of
    // a few, no Map per response; a Map beyond).
    const outs: Tensor[] = [];
    const byName = resp.outputTensors.length > 8 ? new Map<string, Tensor>() : undefined;
    for (const t of resp.outputTensors) {
      if (typeof t !== "object" || t === null || !Array.isArray((t as Tensor).shape)) badResponse(model, "an output is not a Tensor");
      const n = t.name;
      if (n === undefined || n === "") badResponse(model, "an output tensor has no name (use Tensor.from(data, { name }) or a { NAME: tensor } record)");
      const cfg = this.#outputs.get(n);
      if (!cfg) badResponse(model, `output '${n}' is not in the model's config (outputs: ${[...this.#outputs.keys()].join(", ")})`);
      if (tensorNamed(byName, outs, n) !== undefined) badResponse(model, `output '${n}' appears more than once`);
      const want = configTypeToDtype(cfg.data_type);
      if (t.dtype !== want) badResponse(model, `output '${n}' has data type ${t.dtype}, but the config says ${cfg.data_type} (${want})`);
      const shape = t.shape;
      const batched = this.config.max_batch_size > 0;
      if (batched && (shape.length === 0 || shape[0] !== p.batchSize)) {
        badResponse(model, `output '${n}' has shape ${fmtShape(t.shape)}; its first dim must be the request's batch size ${p.batchSize}`);
      }
      if (!shapeMatches(shape, cfg.dims, batched ? 1 : 0)) {
        const expected = this.config.max_batch_size > 0 ? `[${p.batchSize},${cfg.dims.join(",")}]` : fmtShape(cfg.dims);
        badResponse(model, `output '${n}' has shape ${fmtShape(t.shape)}, but the config expects ${expected}`);
      }
      outs.push(t);
      byName?.set(n, t);
    }
    const requested = p.input.outputs ?? [];
    let outputs: Tensor[];
    if (requested.length > 0) {
      outputs = requested.map((n) => tensorNamed(byName, outs, n) ?? badResponse(model, `requested output '${n}' was not produced`));
    } else {
      outputs = outs;
    }
    return { modelName: this.name, modelVersion: this.version, id: p.input.id ?? "", outputs };
  }
}

/** Names what a model returned, for messages. */
function describe(v: unknown): string {
  return v === undefined ? "undefined" : v === null ? "null" : Array.isArray(v) ? "an array" : typeof v;
}

/**
 * The error of an execute() that threw or rejected. A `ModelError` is the
 * model's own, code and words as given; anything else is worded as
 * Triton's Python backend words an exception from `execute`:
 * `Failed to process the request(s) for model '<instance>', message:
 * <class>: <message>` (INTERNAL).
 */
function executeError(instance: string, e: unknown): ModelError {
  // The runtime's own failure (a thread instance that died or timed out) keeps its code and words.
  if (typeof e === "object" && e !== null && runtimeFailures.has(e)) return e as ModelError;
  if (e instanceof ModelError || (e as { name?: unknown } | null)?.name === "ModelError") return ModelError.from(e);
  const cls = e instanceof Error ? e.name : typeof e;
  const message = e instanceof Error ? e.message : String(e);
  const err = new ModelError(`Failed to process the request(s) for model '${instance}', message: ${cls}: ${message}`, "INTERNAL");
  if (e instanceof Error) err.stack = e.stack;
  return err;
}

function isResponseLike(r: unknown): r is InferenceResponse {
  return typeof r === "object" && r !== null && Array.isArray((r as { outputTensors?: unknown }).outputTensors);
}

/**
 * A model instance that runs in a worker thread of its own
 * (`TENSORBRIDGE_INSTANCE_THREADS: "yes"`), the way Triton's Python backend
 * runs each instance in a process of its own: CPU-bound `execute()` calls of
 * several instances run at once, and none of them blocks the server.
 *
 * The serving thread keeps a stand-in model object ({@link ThreadInstance})
 * in the instance's place, so scheduling, batching, input and output checks
 * and statistics are the same as for an in-thread instance. Inputs cross
 * without copying their bytes, a request's together in one native call on
 * each side (parked and claimed, see thread-wire.ts; what the worker never
 * claims, because it died first, is released here); outputs by
 * `Tensor.transfer`, without a copy too, but for small host outputs (16 KiB or less, see thread-wire.ts), which come back
 * by value through the ring, cheaper than a handover, and outputs in the
 * worker's own JS memory, which dies with the worker, which are copied once
 * (BYTES elements are copied); errors keep their message and Triton code.
 *
 * Requests, responses and every other message go through two
 * `SharedArrayBuffer` rings (one each way, see `thread-ring.ts`), not
 * `postMessage`: the serving thread waits for the worker's messages with
 * `Atomics.waitAsync`, and an idle worker for the next request in
 * `Atomics.wait`, so a request's hop costs microseconds, not two event-loop
 * turns. While requests are in flight the worker is ref'd (a pending
 * `waitAsync` alone does not keep the process alive); idle, it is not.
 *
 * Responses sent through a response sender in the worker go to the serving
 * thread's sender of the same request, so they are checked and counted as
 * an in-thread model's are; a cancel reaches the worker's request. BLS calls
 * (`request.exec()`, `loadModel`…, see bls.ts) made in the worker are
 * posted here and run in the instance's context; their responses go back.
 *
 * A worker that dies (an uncaught error, `process.exit()`, running out of
 * memory) ends its requests still open with an `INTERNAL` error and is
 * restarted: a fresh worker imports the model and runs `initialize()` with
 * the same args; requests that arrive meanwhile wait for it. With
 * `executeTimeoutMs` (the `EXECUTE_TIMEOUT_MS` parameter), an `execute()`
 * that runs longer has its worker stopped: its requests fail with
 * `ERR_EXECUTE_TIMEOUT`, and the instance restarts the same way. A restart
 * that fails (initialize() throws this time) leaves the instance failing
 * every request with the reason.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { MessageChannel, Worker } from "node:worker_threads";

import {
  discardRequest,
  errorFromWire,
  errorToWire,
  fromWire,
  requestToWire,
  responseFromWire,
  responseToWire,
  resultFromWire,
  type WireBlsCall,
  type WireBlsCancel,
  type WireBlsControl,
  type WireBlsReply,
  type WireError,
  type WireRequest,
  type WireSend,
} from "./thread-wire.js";
import { localExecutor, type BlsCaller } from "./bls.js";
import type { ExecuteReply, ToWorker, WorkerStart } from "./thread-instance-worker.js";
import { requestControl, type InferenceRequest } from "./request.js";
import { InferenceResponse } from "./response.js";
import { runtimeFailures } from "./response-sender.js";
import type { InitializeArgs, TritonModel } from "./types.js";
import { ModelError } from "./model-error.js";
import { ServingError } from "./errors.js";
import { currentModel, runInModel, type ForwardedOp, type ModelContext } from "./model-context.js";
import { handleForwardedOp } from "./metric-family.js";
import { DEFAULT_RING_BYTES, PollBudget, PollGate, RingReader, ringBuffer, RingWriter, waitAsync, WRITTEN } from "./thread-ring.js";
import { sized } from "./sized-array.js";

/**
 * Starts the worker entry beside this module: `.js` in `dist/`; from source
 * (`.ts`, under tsx) through a bootstrap that registers tsx in the worker
 * first, since a worker does not get the `--import tsx` hooks of its parent.
 */
function startWorker(workerData: WorkerStart): Worker {
  const transferList = [workerData.port];
  const js = new URL("./thread-instance-worker.js", import.meta.url);
  if (existsSync(js)) return new Worker(js, { workerData, transferList });
  const ts = new URL("./thread-instance-worker.ts", import.meta.url).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); })`;
  return new Worker(boot, { eval: true, workerData, transferList });
}

/** The gate that all workers of this process poll through (see thread-ring.ts). */
const POLLERS = PollGate.buffer();

/** What the worker sends: a call's answer, a send, a BLS call, a Logger line or metric operation. */
type FromWorker = { id: number; value?: unknown; error?: WireError } | WireSend | WireBlsCall | WireBlsCancel | WireBlsControl | { model: ForwardedOp };

/** Each member of a union, without its `id`. */
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
/** A message to the worker, before its id. */
type ToWorkerBody = WithoutId<ToWorker>;

interface Waiting {
  resolve(value: unknown): void;
  reject(e: Error): void;
}

/** An execute call whose requests may still send through their senders. */
interface Call {
  readonly requests: InferenceRequest[];
  /** Per request: still open (it may send), and whether a response went through already. */
  readonly open: boolean[];
  readonly responded: boolean[];
  /** Removes each request's cancel listener (undefined for a request without a control). */
  readonly unsubscribe: ((() => void) | undefined)[];
  /** execute() has replied: a request not listed open then is done. */
  replied: boolean;
}

/** Options of {@link ThreadInstance}. */
export interface ThreadInstanceOptions {
  /** Stop a worker whose execute() runs longer than this (milliseconds), and restart it. */
  executeTimeoutMs?: number | undefined;
  /** Told why, each time a worker that served is restarted (the model's log). */
  onRestart?: ((why: string) => void) | undefined;
  /** Told when a restart failed: the instance then fails every request. */
  onRestartFailed?: ((e: unknown) => void) | undefined;
  /** Bytes of each of the two rings (default 1 MiB); a message that does not fit goes by `postMessage`, in order. */
  ringBytes?: number | undefined;
}

/** How the rings of the current worker are used (for tests and benchmarks). */
export interface RingStats {
  /** Bytes of unread messages in the ring to the worker (0: every slot is free). */
  readonly toWorkerUsed: number;
  /** Bytes of unread messages in the ring from the worker. */
  readonly fromWorkerUsed: number;
  /** Messages to the worker that went by `postMessage` (they did not fit). */
  readonly toWorkerOverflowed: number;
  /** Execute calls and control messages waiting for the worker's answer. */
  readonly waiting: number;
  /** Execute calls with requests still open on their senders. */
  readonly openCalls: number;
}

/** The serving thread's stand-in for a model instance in a worker thread. */
export class ThreadInstance implements TritonModel {
  #worker!: Worker;
  /** The current worker's rings: what the serving thread writes, and reads. */
  #out!: RingWriter;
  #in!: RingReader;
  /** The reader of the ring to the worker (its free space, for {@link ringStats}). */
  #outSide!: RingReader;
  /** The worker is ref'd: requests are in flight. */
  #refd = false;
  readonly #waiting = new Map<number, Waiting>();
  /** Execute calls with requests that may still send, by call id (the execute message's id). */
  readonly #calls = new Map<number, Call>();
  #next = 0;
  /** Why the worker is gone, once it is. */
  #gone: string | undefined;
  /** The model is decoupled (from the config that initialize() gets). */
  #decoupled = false;
  /** initialize()'s args once it succeeded: a restarted worker gets them again. */
  #args: InitializeArgs | undefined;
  /** finalize() began, or the load failed: a worker that ends now is not restarted. */
  #closing = false;
  /** A restart under way: calls wait for it. */
  #restarting: Promise<void> | undefined;
  /** Why the worker is being stopped (a timeout), to fail its requests with instead of its exit. */
  #stopping: { why: string; err: Error } | undefined;
  /** Workers whose end was handled (a worker emits 'error', then 'exit'). */
  readonly #ended = new WeakSet<Worker>();
  /** How many times the worker was restarted. */
  #restarts = 0;
  readonly #file: string;
  readonly #options: ThreadInstanceOptions;
  readonly #ctx: ModelContext | undefined;

  /**
   * Starts the worker; it imports `file` when {@link initialize} runs.
   *
   * @param file - the model file.
   * @param label - names the instance in errors (`model 'm' instance m_0`).
   * @param caller - the BLS context the worker's BLS calls run in, here in the serving thread (see bls.ts).
   */
  constructor(
    file: string,
    readonly label: string,
    readonly caller?: BlsCaller,
    options: ThreadInstanceOptions = {},
  ) {
    this.#file = file;
    this.#options = options;
    // The model version's context, kept for the workers of later restarts (which start from a worker's event).
    this.#ctx = currentModel();
    this.#spawn();
  }

  /** How many times the worker was restarted (after a death or a timeout). */
  get restarts(): number {
    return this.#restarts;
  }

  /** How the current worker's rings are used: all zero when nothing is in flight and no slot is held. */
  ringStats(): RingStats {
    return {
      toWorkerUsed: this.#outSide.usedBytes(),
      fromWorkerUsed: this.#in.usedBytes(),
      toWorkerOverflowed: this.#out.overflowed,
      waiting: this.#waiting.size,
      openCalls: this.#calls.size,
    };
  }

  /** Starts a worker and listens to it; events of a worker that was replaced are ignored. */
  #spawn(): void {
    const bytes = this.#options.ringBytes ?? DEFAULT_RING_BYTES;
    const toWorker = ringBuffer(bytes);
    const fromWorker = ringBuffer(bytes);
    const { port1, port2 } = new MessageChannel();
    const worker = startWorker({ file: this.#file, toWorker, fromWorker, port: port2, pollers: POLLERS });
    this.#worker = worker;
    this.#out = new RingWriter(toWorker, port1);
    this.#outSide = new RingReader(toWorker, port1);
    const reader = new RingReader(fromWorker, port1);
    this.#in = reader;
    // A loaded model must not keep the process alive on its own; the server does (and requests in flight, #keepAlive).
    worker.unref();
    this.#refd = false;
    this.#armed = false;
    this.#polling = false;
    this.#arm();
    worker.on("error", (e) => this.#died(worker, `its worker thread failed: ${e.message}`));
    worker.on("exit", (code) => this.#died(worker, `its worker thread exited (code ${code})`));
  }

  /** Handles the messages waiting in the ring from the worker. */
  #drain(reader: RingReader): void {
    for (let m = reader.read(); m !== undefined; m = reader.read()) {
      try {
        this.#onMessage(m as FromWorker);
      } catch (e) {
        // One message's failure (a forwarded log line that cannot be written, say) is not the others'.
        if (this.#ctx !== undefined) runInModel(this.#ctx, handleForwardedOp, { kind: "log", level: "ERROR", message: `${this.label}: a message from its worker thread failed: ${e instanceof Error ? e.message : String(e)}` });
      }
    }
  }

  #onMessage(m: FromWorker): void {
    if ("model" in m) {
      // The worker's Logger lines and metric operations run in the context of the model version that made this instance.
      if (this.#ctx !== undefined) runInModel(this.#ctx, handleForwardedOp, m.model);
      return;
    }
    if ("op" in m) {
      if (m.op === "send") this.#send(m);
      else if (m.op === "bls") this.#bls(m);
      else if (m.op === "bls-cancel") this.#blsCancels.get(m.bls)?.();
      else this.#blsControl(m);
      return;
    }
    const w = this.#waiting.get(m.id);
    if (w === undefined) return;
    this.#waiting.delete(m.id);
    this.#keepAlive();
    if (m.error !== undefined) w.reject(errorFromWire(m.error));
    else w.resolve(m.value);
  }

  /** Refs the worker while calls wait for it or requests are open on their senders (a pending waitAsync does not keep the process alive), unrefs it when none. */
  #keepAlive(): void {
    const busy = this.#waiting.size > 0 || this.#calls.size > 0;
    if (busy === this.#refd) return;
    this.#refd = busy;
    if (busy) this.#worker.ref();
    else this.#worker.unref();
  }

  /** The worker `worker` ended (an 'error', then an 'exit'): the first of its events ends its calls and restarts it. */
  #died(worker: Worker, why: string): void {
    if (worker !== this.#worker || this.#ended.has(worker)) return;
    // What it wrote before it ended counts (a send, a log line), as postMessage's would.
    this.#drain(this.#in);
    this.#ended.add(worker);
    // The reader's pending waitAsync ends and sees the worker gone.
    Atomics.notify(this.#in.ctrl, WRITTEN);
    const stopping = this.#stopping;
    this.#stopping = undefined;
    this.#end(stopping?.why ?? why, stopping?.err);
    // (A worker that dies while it restarts fails that restart: no second one.)
    if (this.#closing || this.#args === undefined || this.#restarting !== undefined) return;
    this.#restarts++;
    this.#options.onRestart?.(stopping?.why ?? why);
    const args = this.#args;
    this.#restarting = (async () => {
      this.#spawn();
      this.#gone = undefined;
      try {
        await this.#post({ op: "initialize", id: ++this.#next, args });
      } catch (e) {
        this.#gone = `its worker thread could not be restarted: ${e instanceof Error ? e.message : String(e)}`;
        // For good: its end is not another restart.
        this.#closing = true;
        this.#options.onRestartFailed?.(e);
        await this.#worker.terminate();
      }
    })().finally(() => {
      this.#restarting = undefined;
    });
  }

  /**
   * Fails every call still waiting, and every later one until a restart;
   * ends the requests still open on their senders.
   *
   * @param err - the error for the calls waiting (default: an `INTERNAL` ModelError naming the instance and `why`).
   */
  #end(why: string, err?: Error): void {
    this.#gone ??= why;
    // Its BLS calls still running here have nobody to answer.
    for (const cancel of this.#blsCancels.values()) cancel();
    this.#blsCancels.clear();
    const failure = err ?? new ModelError(`${this.label}: ${this.#gone}`, "INTERNAL");
    runtimeFailures.add(failure);
    // A response carries a ModelError: the same words and Triton code.
    const sent = failure instanceof ModelError ? failure : ModelError.from(failure);
    runtimeFailures.add(sent);
    for (const w of this.#waiting.values()) w.reject(failure);
    this.#waiting.clear();
    for (const [id, call] of this.#calls) {
      call.requests.forEach((r, i) => {
        if (!call.open[i]) return;
        // One of a call still running that sent nothing: the call's own failure (its execute() rejecting) answers it, with the cause's code.
        if (!call.replied && !call.responded[i]) return;
        // A request that is not decoupled and already has its one response completes with it.
        this.#forward(r, call.responded[i] && !this.#decoupled ? undefined : new InferenceResponse({ error: sent }), true);
      });
      this.#forget(id, call);
    }
    this.#keepAlive();
  }

  /** The worker's BLS calls that have not ended: their cancel functions, by the worker's call id. */
  readonly #blsCancels = new Map<number, () => void>();

  /** A BLS call of the model in the worker: run here, in the instance's context; each response goes back. */
  #bls(m: WireBlsCall): void {
    let ended = false;
    const post = (r: WireBlsReply): void => {
      if (this.#gone === undefined) this.#out.write(r);
    };
    const cancel = localExecutor(this.caller).exec(
      {
        modelName: m.modelName,
        modelVersion: m.modelVersion,
        inputs: m.inputs.map(fromWire),
        requestedOutputNames: m.requested,
        requestId: m.requestId,
        parameters: m.parameters,
        timeoutMs: m.timeoutMs,
      },
      m.decoupled,
      (r, final) => {
        if (final) {
          ended = true;
          this.#blsCancels.delete(m.bls);
        }
        post({ op: "bls-response", bls: m.bls, response: responseToWire(r), final });
      },
    );
    if (!ended) this.#blsCancels.set(m.bls, cancel);
  }

  /** A model loading API call of the model in the worker. */
  #blsControl(m: WireBlsControl): void {
    const post = (r: WireBlsReply): void => {
      if (this.#gone === undefined) this.#out.write(r);
    };
    localExecutor(this.caller)
      .control(m.control)
      .then(
        (value) => post({ op: "bls-control-reply", bls: m.bls, value, error: undefined }),
        (e: unknown) => post({ op: "bls-control-reply", bls: m.bls, value: undefined, error: errorToWire(e) }),
      );
  }

  /** A send() in the worker, passed to the serving thread's sender of the same request. */
  #send(m: WireSend): void {
    const call = this.#calls.get(m.call);
    if (call === undefined || !call.open[m.index]) return;
    const r = call.requests[m.index]!;
    if (m.response !== undefined) call.responded[m.index] = true;
    if (m.final) call.open[m.index] = false;
    this.#forward(r, m.response === undefined ? undefined : (responseFromWire(m.response) as InferenceResponse), m.final);
    if (m.final && call.replied && !call.open.includes(true)) this.#forget(m.call, call);
  }

  /** Sends on the serving thread's sender. */
  #forward(r: InferenceRequest, response: InferenceResponse | undefined, final: boolean): void {
    try {
      r.getResponseSender().send(response, { final });
    } catch {
      // The runtime ended the request already (execute() failed, the model unloads); the worker's sends are moot.
    }
  }

  #forget(id: number, call: Call): void {
    for (let i = 0; i < call.unsubscribe.length; i++) call.unsubscribe[i]?.();
    this.#calls.delete(id);
    this.#keepAlive();
  }

  /** Posts a message to the worker once any restart under way is done; resolves with its reply. */
  async #call(m: ToWorkerBody): Promise<unknown> {
    if (this.#restarting !== undefined) await this.#restarting;
    return this.#post({ ...m, id: ++this.#next } as ToWorker);
  }

  /** Writes `m` to the worker; resolves with the reply to its id. */
  #post(m: ToWorker, byPort = false): Promise<unknown> {
    if (this.#gone !== undefined) return Promise.reject(new ModelError(`${this.label}: ${this.#gone}`, "INTERNAL"));
    return new Promise((resolve, reject) => {
      this.#waiting.set(m.id, { resolve, reject });
      this.#keepAlive();
      this.#out.write(m, byPort);
      this.#poll();
    });
  }

  /** How long this thread polls for the worker's messages before it leaves them to `waitAsync`. */
  readonly #budget = new PollBudget();
  /** A `waitAsync` on the current worker's ring is pending. */
  #armed = false;
  /** {@link #poll} checks the ring on each event-loop turn. */
  #polling = false;
  /** When the last poll that ran out began (performance.now()), until a message judges it. */
  #ranOut: number | undefined;

  /**
   * Keeps a `waitAsync` pending on the worker's ring: whatever the worker
   * writes while this thread does not poll wakes it.
   */
  #arm(): void {
    if (this.#armed) return;
    const worker = this.#worker;
    const w = waitAsync(this.#in.ctrl, WRITTEN, this.#in.readCount);
    const woken = (): void => {
      if (worker !== this.#worker || this.#ended.has(worker)) return;
      this.#armed = false;
      if (!this.#polling && this.#in.pending()) {
        // (With the poll that ran out before this message: how long after it began the message came.)
        this.#budget.woke(this.#in.lateness(), this.#ranOut);
        this.#ranOut = undefined;
      }
      this.#drain(this.#in);
      this.#arm();
    };
    if (!w.async) {
      queueMicrotask(woken);
      return;
    }
    this.#armed = true;
    void w.value.then(woken);
  }

  /**
   * While a reply is awaited, checks the ring once per event-loop turn
   * (`setImmediate`), for as long as {@link PollBudget} allows: a reply that
   * comes meanwhile is taken without this thread being woken from its event
   * loop's sleep (tens of µs on an idle VM), and the worker, told so by the
   * ring, does not notify (which posts a task here). Unlike the worker's
   * poll this one blocks nothing: other I/O goes on between two checks. The
   * `waitAsync` of {@link #arm} stays pending all along, for when it stops.
   */
  #poll(): void {
    if (this.#polling) return;
    const us = this.#budget.next();
    if (us === 0) return;
    this.#polling = true;
    this.#in.polling(true);
    this.#pollBegan = performance.now();
    this.#pollEnd = this.#pollBegan + us / 1000;
    // (One chain of turns at most: one still pending from a poll that a restart cut short goes on with this one.)
    if (!this.#turnPending) {
      this.#turnPending = true;
      setImmediate(this.#turn);
    }
  }

  /** When the current poll began (performance.now()). */
  #pollBegan = 0;
  /** When it runs out, unless a message comes first. */
  #pollEnd = 0;
  /** A {@link #turn} is scheduled. */
  #turnPending = false;

  /**
   * One check of {@link #poll}'s, per event-loop turn. Made once, with the
   * poll's state in fields: a poll per request made two closures per request.
   */
  readonly #turn = (): void => {
    this.#turnPending = false;
    // (Stopped by a restart, whose new worker's poll has not begun; or the worker is gone.)
    if (!this.#polling || this.#ended.has(this.#worker)) return;
    const reader = this.#in;
    if (reader.pending()) {
      this.#drain(reader);
      this.#budget.hit();
      this.#ranOut = undefined;
      if (this.#waiting.size === 0) return this.#stopPolling();
      this.#pollEnd = performance.now() + this.#budget.next() / 1000;
    } else if (this.#waiting.size === 0) {
      // (Taken by the waitAsync first: that says nothing of what polling is worth.)
      return this.#stopPolling();
    } else if (performance.now() > this.#pollEnd) {
      // Judged when the reply comes (#arm), by how late it was.
      this.#ranOut = this.#pollBegan;
      return this.#stopPolling();
    }
    this.#turnPending = true;
    setImmediate(this.#turn);
  };

  #stopPolling(): void {
    this.#polling = false;
    const reader = this.#in;
    reader.polling(false);
    // Written since the flag was last seen set: nobody was woken for it.
    if (reader.pending()) this.#drain(reader);
  }

  /** Imports the model in the worker, makes its object and runs its `initialize(args)`. */
  async initialize(args: InitializeArgs): Promise<void> {
    this.#decoupled = (JSON.parse(args.model_config) as { model_transaction_policy?: { decoupled?: boolean } }).model_transaction_policy?.decoupled === true;
    try {
      await this.#call({ op: "initialize", args });
    } catch (e) {
      // A load that failed finalizes nothing here: the worker just ends.
      this.#closing = true;
      this.#gone ??= "its load failed";
      await this.#worker.terminate();
      throw e;
    }
    this.#args = args;
  }

  /**
   * Runs `execute(requests)` in the worker; the inputs' memory is handed
   * over, not copied. Requests that answer through their senders stay
   * known (and their cancels forwarded) until their final flags.
   */
  async execute(requests: InferenceRequest[]): Promise<InferenceResponse[]> {
    const id = ++this.#next;
    const n = requests.length;
    // (Plain loops and arrays made at their size, no per-request closures but the cancel listeners: this runs once per request hop.)
    const open = sized<boolean>(n);
    const responded = sized<boolean>(n);
    const wire = sized<WireRequest>(n);
    // A parameter that JSON would alter (NaN, Infinity: null) goes by postMessage, which keeps it.
    let byPort = false;
    for (let i = 0; i < n; i++) {
      open[i] = true;
      responded[i] = false;
      const params = requests[i]!.parameters;
      for (const k in params) {
        const v = params[k];
        if (typeof v === "number" && !Number.isFinite(v)) byPort = true;
      }
    }
    const call: Call = { requests, open, responded, unsubscribe: sized(n), replied: false };
    this.#calls.set(id, call);
    for (let i = 0; i < n; i++) {
      const control = requestControl(requests[i]!);
      call.unsubscribe[i] = control === undefined ? undefined : control.onCancel(() => this.#cancel(call, id, i));
    }
    let value: ExecuteReply;
    let timer: NodeJS.Timeout | undefined;
    try {
      if (this.#restarting !== undefined) await this.#restarting;
      for (let i = 0; i < n; i++) wire[i] = requestToWire(requests[i]!);
      const reply = this.#post({ op: "execute", id, requests: wire }, byPort);
      const ms = this.#options.executeTimeoutMs;
      if (ms !== undefined) timer = setTimeout(() => this.#timedOut(ms), ms);
      value = (await reply) as ExecuteReply;
    } catch (e) {
      // Inputs the worker never claimed (it died, was stopped, or was never reached) are released here.
      // (Those not packed yet are holes.)
      for (let i = 0; i < n; i++) if (wire[i] !== undefined) discardRequest(wire[i]!);
      this.#forget(id, call);
      throw e;
    } finally {
      clearTimeout(timer);
    }
    call.replied = true;
    const stillOpen = value.open;
    if (stillOpen.length === 0) this.#forget(id, call);
    else {
      for (let i = 0; i < n; i++) {
        if (!stillOpen.includes(i)) call.open[i] = false;
        // The serving thread's request answers through its sender too (a model that is not decoupled makes it on first use).
        else requests[i]!.getResponseSender();
      }
      if (!call.open.includes(true)) this.#forget(id, call);
    }
    return resultFromWire(value.result) as InferenceResponse[];
  }

  /** Request `index` of execute call `id` was cancelled: tell the worker, while it may still answer. */
  #cancel(call: Call, id: number, index: number): void {
    if (call.open[index] && this.#gone === undefined) this.#out.write({ op: "cancel", id: 0, call: id, index } satisfies ToWorker);
  }

  /** An execute() ran past its bound: stop the worker (its 'exit' fails the calls with the timeout, then restarts it). */
  #timedOut(ms: number): void {
    if (this.#gone !== undefined || this.#stopping !== undefined) return;
    const why = `execute() did not finish within ${ms} ms (parameter EXECUTE_TIMEOUT_MS), so its worker thread was stopped`;
    this.#stopping = { why, err: new ServingError("ERR_EXECUTE_TIMEOUT", `${this.label}: ${why}; the instance restarts`) };
    void this.#worker.terminate();
  }

  /** Runs the model's `finalize()` in the worker, then ends the worker. */
  async finalize(): Promise<void> {
    this.#closing = true;
    try {
      await this.#call({ op: "finalize" });
    } finally {
      this.#gone ??= "it was finalized";
      await this.#worker.terminate();
    }
  }
}

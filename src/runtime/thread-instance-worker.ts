/**
 * The worker-thread side of a model instance (see `thread-instance.ts`):
 * imports the model file with the same module hook as the serving thread
 * (so `import ... from "tensorbridge"` works), makes one model object, and
 * answers `initialize`, `execute` and `finalize` messages one at a time.
 *
 * Each request gets a response sender here whose sends go to the serving
 * thread's sender of the same request (`{ op: "send" }` messages), and a
 * cancelled flag that the serving thread sets (`{ op: "cancel" }`, handled
 * at once, not behind a running `execute()`).
 *
 * Every message, both ways, goes through the shared-memory rings of
 * `thread-ring.ts`, in order. While this worker has nothing to do (no
 * call running, no request open on its sender, no BLS call waiting) it
 * polls for the next message a few µs while that pays (see `PollBudget`),
 * then waits in `Atomics.wait`, which a message ends within microseconds,
 * but for at most {@link IDLE_WAIT_MS}: then it waits with
 * `Atomics.waitAsync` and lets its event loop run (timers, an async
 * `execute()`, a decoupled model sending later), as it does whenever it has
 * something pending.
 *
 * @module
 */
import { parentPort, workerData, type MessagePort } from "node:worker_threads";

import { errorMessage } from "./errors.js";
import { importModelClass } from "./loader.js";
import type { InferenceRequest, RequestControl } from "./request.js";
import { InferenceResponseSender, senderDroppedError, type ResponseChannel } from "./response-sender.js";
import type { InferenceResponse } from "./response.js";
import { setBlsExecutor } from "./bls.js";
import {
  errorFromWire,
  errorToWire,
  requestFromWire,
  responseFromWire,
  responseToWire,
  resultToWire,
  toWire,
  type WireBlsCall,
  type WireBlsCancel,
  type WireBlsControl,
  type WireBlsReply,
  type WireRequest,
  type WireSend,
} from "./thread-wire.js";
import type { InitializeArgs, TritonModel } from "./types.js";
import { setModelForwarder, type ForwardedOp } from "./model-context.js";
import { PollBudget, pollFor, PollGate, RingReader, RingWriter, waitAsync, WRITTEN } from "./thread-ring.js";
import { sized } from "./sized-array.js";

/** What the serving thread sends. */
export type ToWorker =
  | { readonly op: "initialize"; readonly id: number; readonly args: InitializeArgs }
  | { readonly op: "execute"; readonly id: number; readonly requests: WireRequest[] }
  | { readonly op: "finalize"; readonly id: number }
  | { readonly op: "cancel"; readonly id: number; readonly call: number; readonly index: number };

/**
 * The worker's reply to `execute`: what it returned, and the requests
 * (by index) still open on their senders.
 */
export interface ExecuteReply {
  readonly result: ReturnType<typeof resultToWire>;
  readonly open: number[];
}

/** The data a worker starts with. */
export interface WorkerStart {
  /** The model file. */
  readonly file: string;
  /** The ring of messages to the worker (see thread-ring.ts). */
  readonly toWorker: SharedArrayBuffer;
  /** The ring of messages from the worker. */
  readonly fromWorker: SharedArrayBuffer;
  /** The worker's end of the port that messages that do not fit in a ring go through. */
  readonly port: MessagePort;
  /** The process's {@link PollGate}: how many workers may poll at once. */
  readonly pollers: SharedArrayBuffer;
}

/**
 * How long an idle worker blocks in `Atomics.wait` for the next message
 * before it waits without blocking (milliseconds): long enough that a
 * client sending requests one after the other finds it blocked (a wake in
 * microseconds, not an event-loop turn on each side), short enough that a
 * model's own timers run late by no more than this.
 */
export const IDLE_WAIT_MS = 2;

/**
 * While requests keep coming, each is served from the last one's end
 * without the event loop turning; at least this often (milliseconds) the
 * worker lets it turn once, so a model's timers and callbacks still run.
 */
const TURN_EVERY_MS = 10;

const { file, toWorker, fromWorker, port: overflow, pollers } = workerData as WorkerStart;
const inbox = new RingReader(toWorker, overflow);
const outbox = new RingWriter(fromWorker, overflow);
/** Sends a message to the serving thread; `byPort` for one whose content JSON could alter (see thread-ring.ts). */
const post = (m: unknown, byPort = false): void => outbox.write(m, byPort);
// The model's Logger lines and custom metric operations go to the serving thread, in order with its
// responses (a metric's value may be NaN or Infinity, which JSON would make null).
setModelForwarder((op: ForwardedOp) => post({ model: op }, op.kind === "metric"));
let model: TritonModel | undefined;
let modelName = "";
let modelDecoupled = false;

/** One request in the worker: its control, and its sender's channel once it has one. */
class WorkerRequest implements RequestControl, ResponseChannel {
  cancelled = false;
  closed = false;
  sent = 0;
  /** A sender was made for it. */
  hasSender = false;
  /** Done: no longer among its call's requests that may be cancelled (see {@link forget}). */
  forgotten = false;

  constructor(
    readonly call: number,
    readonly index: number,
    readonly requestId: string,
    readonly decoupled: boolean,
  ) {}

  isCancelled(): boolean {
    return this.cancelled;
  }

  onCancel(): () => void {
    // Nothing in the worker listens: the flag is all a model sees.
    return () => {};
  }

  responseSender(): InferenceResponseSender {
    this.hasSender = true;
    return new InferenceResponseSender(this);
  }

  deliver(response: InferenceResponse | undefined, final: boolean): void {
    if (final) forget(this);
    const m: WireSend = { op: "send", call: this.call, index: this.index, response: response === undefined ? undefined : responseToWire(response, true), final };
    post(m);
  }

  dropped(): void {
    this.closed = true;
    forget(this);
    const err = senderDroppedError(modelName, this.requestId);
    const m: WireSend = { op: "send", call: this.call, index: this.index, response: { outputs: [], error: errorToWire(err) }, final: true };
    post(m);
  }
}

/** The requests of each execute call, by call id, while one of them may still be cancelled (one not {@link WorkerRequest.forgotten}). */
const calls = new Map<number, WorkerRequest[]>();

function forget(r: WorkerRequest): void {
  r.forgotten = true;
  const rs = calls.get(r.call);
  if (rs === undefined) return;
  for (let i = 0; i < rs.length; i++) if (!rs[i]!.forgotten) return;
  calls.delete(r.call);
}

/** Replies to message `id` with a value. */
function reply(id: number, value: unknown): void {
  post({ id, value });
}

async function handle(m: ToWorker): Promise<void> {
  try {
    switch (m.op) {
      case "initialize": {
        const cls = await importModelClass(file);
        try {
          model = new cls() as TritonModel;
        } catch (e) {
          throw new Error(`constructing the instance failed: ${errorMessage(e)}`, { cause: e });
        }
        modelName = m.args.model_name;
        modelDecoupled = (JSON.parse(m.args.model_config) as { model_transaction_policy?: { decoupled?: boolean } }).model_transaction_policy?.decoupled === true;
        if (typeof model.initialize === "function") {
          try {
            await model.initialize(m.args);
          } catch (e) {
            throw new Error(`initialize() failed: ${errorMessage(e)}`, { cause: e });
          }
        }
        reply(m.id, true);
        return;
      }
      case "execute": {
        // (Plain loops and arrays made at their size: this runs once per request hop.)
        const n = m.requests.length;
        const controls = sized<WorkerRequest>(n);
        const requests = sized<InferenceRequest>(n);
        for (let i = 0; i < n; i++) controls[i] = new WorkerRequest(m.id, i, m.requests[i]!.requestId, modelDecoupled);
        calls.set(m.id, controls);
        for (let i = 0; i < n; i++) requests[i] = requestFromWire(m.requests[i]!, controls[i]);
        // As the serving thread does: a decoupled request's sender exists from the start, so one the model drops is noticed.
        if (modelDecoupled) for (let i = 0; i < n; i++) requests[i]!.getResponseSender();
        let result: ReturnType<typeof resultToWire>;
        try {
          result = resultToWire(await model!.execute(requests), true);
        } finally {
          // A request answered without a sender is done once execute() returns.
          for (let i = 0; i < n; i++) {
            const c = controls[i]!;
            if (!c.hasSender && !c.closed) forget(c);
          }
        }
        const open: number[] = [];
        for (let i = 0; i < n; i++) {
          const c = controls[i]!;
          if (c.hasSender && !c.closed) open.push(c.index);
        }
        reply(m.id, { result, open } satisfies ExecuteReply);
        return;
      }
      case "cancel":
        return;
      case "finalize":
        if (typeof model?.finalize === "function") await model.finalize();
        reply(m.id, true);
        return;
    }
  } catch (e) {
    post({ id: m.id, error: errorToWire(e) });
  }
}

// BLS calls of the model go to the serving thread, which runs them in this instance's context.
let nextBls = 0;
const blsCalls = new Map<number, (r: InferenceResponse, final: boolean) => void>();
const blsControls = new Map<number, { resolve(v: boolean | undefined): void; reject(e: Error): void }>();
setBlsExecutor({
  exec(call, decoupled, onResponse) {
    const bls = ++nextBls;
    blsCalls.set(bls, onResponse);
    const m: WireBlsCall = {
      op: "bls",
      bls,
      decoupled,
      modelName: call.modelName,
      modelVersion: call.modelVersion,
      inputs: call.inputs.map((t) => toWire(t)),
      requested: call.requestedOutputNames,
      requestId: call.requestId,
      parameters: call.parameters,
      timeoutMs: call.timeoutMs,
    };
    // (Its parameters are the model's: a NaN stays one.)
    post(m, true);
    return () => {
      if (blsCalls.has(bls)) post({ op: "bls-cancel", bls } satisfies WireBlsCancel);
    };
  },
  control(control) {
    const bls = ++nextBls;
    return new Promise((resolve, reject) => {
      blsControls.set(bls, { resolve, reject });
      post({ op: "bls-control", bls, control } satisfies WireBlsControl, true);
    });
  },
});

function blsReply(m: WireBlsReply): void {
  if (m.op === "bls-response") {
    const on = blsCalls.get(m.bls);
    if (on === undefined) return;
    if (m.final) blsCalls.delete(m.bls);
    on(responseFromWire(m.response) as InferenceResponse, m.final);
    return;
  }
  const w = blsControls.get(m.bls);
  if (w === undefined) return;
  blsControls.delete(m.bls);
  if (m.error !== undefined) w.reject(errorFromWire(m.error));
  else w.resolve(m.value);
}

// One call (initialize, execute, finalize) at a time, in order, as an in-thread instance runs
// one execute() at a time; a cancel and a BLS answer at once, since the call they are about may be running.
const queue: ToWorker[] = [];
let running = false;

function dispatch(m: ToWorker | WireBlsReply): void {
  if (m.op === "bls-response" || m.op === "bls-control-reply") blsReply(m);
  else if (m.op === "cancel") {
    const r = calls.get(m.call)?.[m.index];
    if (r !== undefined && !r.forgotten) r.cancelled = true;
  } else queue.push(m);
}

function startNext(): void {
  if (running) return;
  const m = queue.shift();
  if (m === undefined) return;
  running = true;
  // (handle() answers its own errors; module-level callbacks: no closures per call.)
  void handle(m).then(handled, handleFailed);
}

/** The call that {@link startNext} started is done: the next one may start. */
function handled(): void {
  running = false;
  pump();
}

/** As {@link handled}, for a call whose handle() threw after all: its error stays unhandled, as a `finally` would leave it. */
function handleFailed(e: unknown): never {
  handled();
  throw e;
}

/** Something may still happen without a message: a call runs, a request is open on its sender, a BLS call waits. */
function busy(): boolean {
  return running || queue.length > 0 || calls.size > 0 || blsCalls.size > 0 || blsControls.size > 0;
}

let pumping = false;
let armed = false;
/** A check for work that outlives its macrotask is scheduled (see pump()). */
let checking = false;
/** When the event loop last had a turn. */
let turnAt = performance.now();
/** How long an idle worker polls for the next message before it blocks (see thread-ring.ts). */
const poll = new PollBudget();
const gate = new PollGate(pollers);

/** Takes the messages waiting and starts what they ask; while idle, blocks a short while for the next one. */
function pump(): void {
  if (pumping) return;
  pumping = true;
  let idle = false;
  let yieldTurn = false;
  try {
    for (;;) {
      for (let m = inbox.read(); m !== undefined; m = inbox.read()) dispatch(m as ToWorker | WireBlsReply);
      startNext();
      if (busy()) break;
      if (performance.now() - turnAt > TURN_EVERY_MS) {
        yieldTurn = true;
        break;
      }
      // (With every place to poll taken by other workers, this one blocks at once, and learns nothing.)
      const us = gate.enter() ? poll.next() : -1;
      const polled = performance.now();
      if (us >= 0) {
        const found = us > 0 && pollFor(inbox, us);
        gate.leave();
        if (found) {
          poll.hit();
          continue;
        }
      }
      const waited = Atomics.wait(inbox.ctrl, WRITTEN, inbox.readCount, IDLE_WAIT_MS);
      if (waited === "ok") {
        poll.woke(inbox.lateness(), us > 0 ? polled : undefined);
      } else if (us > 0) {
        // "not-equal": the message came between the poll's end and the wait.
        if (waited === "not-equal") poll.late((performance.now() - polled) * 1000);
        else poll.miss();
      }
      if (waited === "timed-out") {
        idle = true;
        break;
      }
    }
  } finally {
    pumping = false;
  }
  if (idle) arm();
  else if (yieldTurn)
    setImmediate(() => {
      turnAt = performance.now();
      pump();
    });
  else if (!checking) {
    // Busy: a synchronous execute() has finished by the next macrotask, and its end pumps again; only work
    // that outlives it (an async execute(), an open sender, a BLS call) needs a waiter that frees the event loop.
    checking = true;
    setImmediate(() => {
      checking = false;
      turnAt = performance.now();
      if (!pumping && busy()) arm();
    });
  }
}

/** Runs pump() when the next message comes, with the event loop free meanwhile. */
function arm(): void {
  if (armed) return;
  const w = waitAsync(inbox.ctrl, WRITTEN, inbox.readCount);
  if (!w.async) {
    setImmediate(pump);
    return;
  }
  armed = true;
  void w.value.then(() => {
    armed = false;
    turnAt = performance.now();
    pump();
  });
}

// A pending Atomics.waitAsync does not keep a thread alive; this listener does (nothing comes through parentPort).
parentPort!.on("message", () => {});
pump();

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
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";

import { errorMessage } from "./errors.js";
import { importModelClass } from "./loader.js";
import type { RequestControl } from "./request.js";
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
}

const port = parentPort!;
// The model's Logger lines and custom metric operations go to the serving thread.
setModelForwarder((op: ForwardedOp) => port.postMessage({ model: op }));
const { file } = workerData as WorkerStart;
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
    const m: WireSend = { op: "send", call: this.call, index: this.index, response: response === undefined ? undefined : responseToWire(response), final };
    port.postMessage(m);
  }

  dropped(): void {
    this.closed = true;
    forget(this);
    const err = senderDroppedError(modelName, this.requestId);
    const m: WireSend = { op: "send", call: this.call, index: this.index, response: { outputs: [], error: errorToWire(err) }, final: true };
    port.postMessage(m);
  }
}

/** The requests of each execute call that may still be cancelled, by call id. */
const calls = new Map<number, (WorkerRequest | undefined)[]>();

function forget(r: WorkerRequest): void {
  const rs = calls.get(r.call);
  if (rs === undefined) return;
  rs[r.index] = undefined;
  if (rs.every((x) => x === undefined)) calls.delete(r.call);
}

/** Replies to message `id` with a value. */
function reply(id: number, value: unknown): void {
  port.postMessage({ id, value });
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
        const controls = m.requests.map((w, i) => new WorkerRequest(m.id, i, w.requestId, modelDecoupled));
        calls.set(m.id, [...controls]);
        const requests = m.requests.map((w, i) => requestFromWire(w, controls[i]));
        // As the serving thread does: a decoupled request's sender exists from the start, so one the model drops is noticed.
        if (modelDecoupled) for (const r of requests) r.getResponseSender();
        let result: ReturnType<typeof resultToWire>;
        try {
          result = resultToWire(await model!.execute(requests));
        } finally {
          // A request answered without a sender is done once execute() returns.
          for (const c of controls) if (!c.hasSender && !c.closed) forget(c);
        }
        reply(m.id, { result, open: controls.filter((c) => c.hasSender && !c.closed).map((c) => c.index) } satisfies ExecuteReply);
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
    port.postMessage({ id: m.id, error: errorToWire(e) });
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
      inputs: call.inputs.map(toWire),
      requested: call.requestedOutputNames,
      requestId: call.requestId,
      parameters: call.parameters,
      timeoutMs: call.timeoutMs,
    };
    port.postMessage(m);
    return () => {
      if (blsCalls.has(bls)) port.postMessage({ op: "bls-cancel", bls } satisfies WireBlsCancel);
    };
  },
  control(control) {
    const bls = ++nextBls;
    return new Promise((resolve, reject) => {
      blsControls.set(bls, { resolve, reject });
      port.postMessage({ op: "bls-control", bls, control } satisfies WireBlsControl);
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

// One message at a time, in order, as an in-thread instance runs one execute() at a time;
// a cancel at once, since the execute() it is about may be running.
let chain: Promise<void> = Promise.resolve();
port.on("message", (m: ToWorker | WireBlsReply) => {
  if (m.op === "bls-response" || m.op === "bls-control-reply") {
    blsReply(m);
    return;
  }
  if (m.op === "cancel") {
    const r = calls.get(m.call)?.[m.index];
    if (r !== undefined) r.cancelled = true;
    return;
  }
  chain = chain.then(() => handle(m));
});

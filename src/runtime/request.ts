/**
 * `InferenceRequest`: one request as a model sees it in `execute()`.
 *
 * @module
 */
import type { Tensor } from "../tensor.js";
import { concatAlongBatch } from "./batch-tensors.js";
import { execOnce, execStream, type ResponseIterator } from "./bls.js";
import { ServingError } from "./errors.js";
import { ModelError } from "./model-error.js";
import type { InferenceResponse } from "./response.js";
import type { InferenceResponseSender } from "./response-sender.js";

/** A request parameter value (KServe v2 allows string, number and boolean). */
export type RequestParameter = string | number | boolean;

/** What an {@link InferenceRequest} is made of. */
export interface InferenceRequestInit {
  /** Input tensors, each named. */
  inputs: Tensor[];
  /** Names of the outputs the client asked for; empty means all. */
  requestedOutputNames?: string[];
  /** The request's `id` (empty string when the client sent none). */
  requestId?: string;
  /** The request's `parameters`. */
  parameters?: Record<string, RequestParameter>;
  /** The model the request is for. */
  modelName?: string;
  /** The model version the request is for (absent or 0: the newest ready one, for {@link InferenceRequest.exec}). */
  modelVersion?: number;
  /** For {@link InferenceRequest.exec}: cancel the call after this many milliseconds (an `UNAVAILABLE` error response). */
  timeoutMs?: number;
}

/** Options of {@link InferenceRequest.exec}. */
export interface ExecOptions {
  /** Call a decoupled model: an async iterable of every response, the last one final (possibly empty). */
  decoupled?: boolean;
}

/**
 * How a request made by the runtime reaches its response sender and its
 * cancelled flag. Not part of the model-author API: the model runtime and
 * the worker-thread instances implement it.
 */
export interface RequestControl {
  /** True once the client gave up on the request. */
  isCancelled(): boolean;
  /** Makes the request's sender; called at most once per request (the request keeps it). */
  responseSender(): InferenceResponseSender;
  /** Runs `fn` when the request is cancelled; returns a function that removes it. */
  onCancel(fn: () => void): () => void;
}

// Reads a request's private control, for requestControl() below (set by the class's static block).
let controlOf: (r: InferenceRequest) => RequestControl | undefined;

/**
 * One inference request, as `execute(requests)` receives it (Triton's
 * `pb_utils.InferenceRequest`).
 */
export class InferenceRequest {
  readonly #inputs: Tensor[];
  readonly #control: RequestControl | undefined;
  #sender: InferenceResponseSender | undefined;
  static {
    controlOf = (r) => r.#control;
  }
  /** Built on the first lookup, for requests with many inputs (a scan is cheaper for a few). */
  #byName: Map<string, Tensor> | undefined;
  readonly #requested: string[];
  /** The request's `id`, or `""` when the client sent none. */
  readonly requestId: string;
  /** The request's `parameters` (never undefined). */
  readonly parameters: Readonly<Record<string, RequestParameter>>;
  /** The model this request is for. */
  readonly modelName: string;
  /** The model version this request is for. */
  readonly modelVersion: number;
  /** For {@link exec}: the call's timeout in milliseconds (0: none). */
  readonly timeoutMs: number;

  /**
   * @param init - inputs and metadata.
   * @param control - runtime-internal: the request's sender and cancelled
   * flag (a request made without one has neither).
   */
  constructor(init: InferenceRequestInit, control?: RequestControl) {
    this.#control = control;
    this.#inputs = [...init.inputs];
    this.#requested = [...(init.requestedOutputNames ?? [])];
    this.requestId = init.requestId ?? "";
    // A frozen record can be shared as it is (the server's decoded headers are).
    const p = init.parameters;
    this.parameters = p !== undefined && Object.isFrozen(p) ? p : Object.freeze({ ...p });
    this.modelName = init.modelName ?? "";
    this.modelVersion = init.modelVersion ?? 0;
    this.timeoutMs = init.timeoutMs ?? 0;
  }

  /**
   * The input `name` of every request, put together along dim 0 in their
   * order: one batched tensor for a model that computes a batch at once
   * (with `dynamic_batching`, `execute()` gets several requests; their
   * dims after dim 0 agree, as the batcher only puts together requests
   * whose variable dims match). {@link InferenceResponse.split} takes the
   * batched result apart again.
   *
   * One copy into fresh memory, or none when the inputs are adjacent views
   * of one ArrayBuffer (the batch is then a view over them). A BYTES batch
   * shares the requests' elements. Inputs on a device are read through
   * `toCpu()` first (one copy more); the batch is in host memory.
   *
   * @param requests - the requests `execute()` received.
   * @param name - the input to put together.
   * @returns the batched tensor, named `name`, of shape `[sum of dim 0, ...]`.
   * @throws {ServingError} `ERR_BATCH_MISMATCH` for no requests, a request
   * without the input, an input without a dim 0, or inputs that differ in
   * data type or in their dims after dim 0.
   * @example
   * ```ts
   * execute(requests: InferenceRequest[]) {
   *   const x = InferenceRequest.concat(requests, "INPUT0");    // [total, 4]
   *   const y = x.data().map((v) => v * 2);                     // the whole batch at once
   *   return InferenceResponse.split({ OUTPUT0: Tensor.from(y, { shape: x.shape }) }, requests);
   * }
   * ```
   */
  static concat(requests: readonly InferenceRequest[], name: string): Tensor {
    if (!Array.isArray(requests)) throw new ServingError("ERR_BATCH_MISMATCH", "InferenceRequest.concat needs the array of requests execute() received");
    const parts = requests.map((r, i) => {
      const t = r instanceof InferenceRequest ? r.getInputTensorByName(name) : undefined;
      if (t === undefined) throw new ServingError("ERR_BATCH_MISMATCH", `request ${i} has no input '${name}'`);
      return t;
    });
    return concatAlongBatch(parts, name, (i) => `request ${i}`);
  }

  /**
   * Business Logic Scripting (Triton's `request.exec()`): runs this request
   * on the model it names (`modelName`, `modelVersion`), in process, through
   * the same scheduler and statistics as a client's request. The input
   * tensors are passed as they are (no copy); the response's output tensors
   * are the callee's.
   *
   * Errors do not throw: the response carries them (`response.hasError()`,
   * `response.error`): a model that is not ready (`Model m - Error when
   * running inference: Failed for execute the inference request. Model 'm'
   * is not ready.`), a request that does not fit its config, a decoupled
   * model called without `{ decoupled: true }`, or the callee's own error.
   *
   * **Deadlock**: a model that calls itself (or models that call each other
   * in a cycle) can wait forever for an instance busy waiting for it.
   * The direct case — `exec()` on the caller's own model version from
   * inside its `execute()` while every instance of it is busy — is answered
   * with an `UNAVAILABLE` error response instead; cycles through other
   * models are not detected.
   *
   * @example
   * ```ts
   * const r = await new InferenceRequest({ modelName: "add_sub", inputs: [a, b], requestedOutputNames: ["OUTPUT0"] }).exec();
   * if (r.hasError()) throw r.error;
   * for await (const part of new InferenceRequest({ modelName: "repeat", inputs: [x] }).exec({ decoupled: true })) { ... }
   * // exec({ decoupled: true }).cancel(), or leaving the loop early, cancels the call.
   * ```
   */
  exec(): Promise<InferenceResponse>;
  exec(opts: ExecOptions & { decoupled: true }): ResponseIterator;
  exec(opts?: ExecOptions): Promise<InferenceResponse> | ResponseIterator;
  exec(opts?: ExecOptions): Promise<InferenceResponse> | ResponseIterator {
    const call = {
      modelName: this.modelName,
      modelVersion: this.modelVersion > 0 ? this.modelVersion : undefined,
      inputs: this.#inputs,
      requestedOutputNames: this.#requested,
      requestId: this.requestId,
      parameters: { ...this.parameters },
      timeoutMs: this.timeoutMs > 0 ? this.timeoutMs : undefined,
    };
    return opts?.decoupled === true ? execStream(call) : execOnce(call);
  }

  /** The input tensors, in the order the client sent them. */
  inputs(): Tensor[] {
    return [...this.#inputs];
  }

  /**
   * The input tensor with this name.
   *
   * @returns the tensor, or `undefined` when the request has no such input
   * (an optional input the client left out).
   */
  getInputTensorByName(name: string): Tensor | undefined {
    const inputs = this.#inputs;
    if (typeof name !== "string") return undefined;
    if (inputs.length <= 16) {
      // The last one of a name, as the map below keeps it.
      for (let i = inputs.length - 1; i >= 0; i--) if (inputs[i]!.name === name) return inputs[i];
      return undefined;
    }
    if (this.#byName === undefined) {
      this.#byName = new Map();
      for (const t of inputs) if (t.name !== undefined) this.#byName.set(t.name, t);
    }
    return this.#byName.get(name);
  }

  /** Names of the outputs the client asked for (all of the config's outputs when it asked for none). */
  requestedOutputNames(): string[] {
    return [...this.#requested];
  }

  /**
   * The request's response sender (Triton's `get_response_sender()`); the
   * same object on every call. A decoupled model answers through it; a
   * model that is not decoupled may send its one response through it
   * instead of returning it from `execute()`.
   *
   * @throws {ModelError} `UNSUPPORTED` for a request the runtime did not
   * make (one built with `new InferenceRequest(...)`): nobody would read
   * its responses.
   */
  getResponseSender(): InferenceResponseSender {
    if (this.#sender !== undefined) return this.#sender;
    if (this.#control === undefined) {
      throw new ModelError("this request has no response sender: only requests that the runtime passes to execute() have one", "UNSUPPORTED");
    }
    return (this.#sender = this.#control.responseSender());
  }

  /**
   * True once the client gave up on the request (Triton's
   * `request.is_cancelled()`): the model may stop working on it. A request
   * the runtime did not make is never cancelled.
   */
  isCancelled(): boolean {
    return this.#control !== undefined && this.#control.isCancelled();
  }
}

/** The runtime-internal control of a request (the worker-thread instances forward cancellation with it). */
export function requestControl(r: InferenceRequest): RequestControl | undefined {
  return controlOf(r);
}

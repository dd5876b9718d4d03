/**
 * `ModelStreamInfer`: one bidirectional stream carrying many inference
 * requests, each answered with one or more `ModelStreamInferResponse`
 * messages, as Triton 2.51's `ModelStreamInferHandler` answers them
 * (server `src/grpc/stream_infer_handler.cc`, checked against a running
 * Triton 2.51):
 *
 * - Every response with outputs carries the request's `id` and the
 *   parameter `triton_final_response` (`bool_param`): true on the response
 *   the model marked final (the one response of a model that is not
 *   decoupled), false on the others.
 * - A decoupled model's final flag sent alone (`complete()`) gives a
 *   message only when the request had `triton_enable_empty_final_response:
 *   true`: an `infer_response` with no outputs, the request's `id`,
 *   `model_name` and `model_version` as sent, and `triton_final_response:
 *   true`. A model that is not decoupled never gets that extra message.
 * - A request that fails before it reaches the model (unknown model, bad
 *   parameter, datatype, shape or size) is one message with the
 *   `error_message` and an `infer_response` holding only the `id`. An error
 *   response from the model is a message with the `error_message` and an
 *   `infer_response` with the `id`, the request's `model_name` and
 *   `model_version`, and `triton_final_response`. The stream stays open.
 *   (With the request header `triton_grpc_error: true`, an error from the
 *   model ends the stream with its gRPC status instead, and the stream's
 *   other requests are cancelled, as Triton does.)
 * - Responses of models that are not decoupled go out in the order their
 *   requests came (Triton queues them); a decoupled model's go out as they
 *   come.
 * - When the client half-closes, the stream ends (status OK) once every
 *   request is answered. When the client cancels, every pending request is
 *   cancelled (`Cancellation.cancel()`), and nothing more is written.
 *
 * @module
 */
import type { ServerDuplexStream } from "@grpc/grpc-js";

import { Cancellation } from "../../runtime/cancel.js";
import { ServingError, errorMessage } from "../../runtime/errors.js";
import type { InferOutput, ModelVersion, RuntimeLogger, StreamCallbacks } from "../../runtime/model-version.js";
import type { SharedMemoryAccess } from "../codec.js";
import type { InferenceEndpoint } from "../endpoint.js";
import { requestToInput, responseOutputs, type GrpcInferRequest } from "./infer.js";
import { grpcStatusOf } from "./status.js";
import { encodeModelStreamInferResponse, type WireInferRequest } from "./wire.js";

/** What a stream needs from its transport. */
export interface StreamContext {
  endpoint: InferenceEndpoint;
  shm: SharedMemoryAccess;
  log: RuntimeLogger;
  /** True once the transport is closing: new requests are refused, and the stream ends when the last is answered. */
  closing: () => boolean;
  /** Called once when the stream is over (ended, failed or cancelled). */
  done: (s: StreamSession) => void;
}

const NO_OUTPUTS: [] = [];

/**
 * Whether an error was raised before the request reached the model (a
 * runtime check) rather than by the model or its response: Triton sends the
 * former with the `id` alone.
 */
function beforeModel(e: unknown): boolean {
  return e instanceof ServingError && e.code !== "ERR_MODEL_EXECUTE";
}

/** The message of an error raised before the request reached the model. */
function issueError(req: WireInferRequest, e: unknown): Buffer {
  return encodeModelStreamInferResponse(errorMessage(e), { model_name: "", model_version: "", id: req.id, outputs: NO_OUTPUTS });
}

/** A request of a model that is not decoupled: its messages wait for the requests before it. */
interface Slot {
  messages: Buffer[];
  ready: boolean;
}

/** One request on the stream: the runtime's callbacks for it. */
class StreamRequest implements StreamCallbacks {
  #over = false;

  constructor(
    readonly session: StreamSession,
    readonly req: WireInferRequest,
    readonly slot: Slot | undefined,
    readonly g: GrpcInferRequest,
    readonly cancellation: Cancellation,
  ) {}

  response(o: InferOutput, final: boolean): void {
    if (this.#over) return;
    const s = this.session;
    if (s.over) return this.#end(final);
    let msg: Buffer;
    try {
      const outputs = responseOutputs(o, this.g.shmOutputs, s.ctx.shm);
      msg = encodeModelStreamInferResponse("", { model_name: o.modelName, model_version: String(o.modelVersion), id: o.id, final, outputs });
    } catch (e) {
      // An output that can't be sent (e.g. larger than its shared-memory slot) fails this response, as Triton's allocator does.
      this.#fail(e, final, true);
      return;
    }
    s.send(this.slot, msg, final);
    this.#end(final);
  }

  error(e: unknown, final: boolean): void {
    if (this.#over) return;
    this.#fail(e, final, !beforeModel(e));
  }

  /** Sends an error message: `fromModel`, with the request's model, version and final flag; else with its id alone. */
  #fail(e: unknown, final: boolean, fromModel: boolean): void {
    const s = this.session;
    if (s.over) return this.#end(final);
    const req = this.req;
    let msg: Buffer;
    if (!fromModel) {
      msg = issueError(req, e);
    } else {
      s.logError(req, e);
      if (s.grpcErrorMode) {
        s.fail(e);
        return this.#end(true);
      }
      msg = encodeModelStreamInferResponse(errorMessage(e), { model_name: req.model_name, model_version: req.model_version, id: req.id, final, outputs: NO_OUTPUTS });
    }
    s.send(this.slot, msg, final);
    this.#end(final);
  }

  complete(): void {
    if (this.#over) return;
    const s = this.session;
    if (!s.over && this.slot === undefined && this.g.emptyFinal) {
      const req = this.req;
      s.send(undefined, encodeModelStreamInferResponse("", { model_name: req.model_name, model_version: req.model_version, id: req.id, final: true, outputs: NO_OUTPUTS }), true);
    } else if (!s.over && this.slot !== undefined) {
      // A model that is not decoupled always answers; should it end without a response, its slot must not hold up the others.
      s.send(this.slot, undefined, true);
    } else if (!s.over && this.slot === undefined) {
      s.send(undefined, undefined, true);
    }
    this.#end(true);
  }

  #end(final: boolean): void {
    if (!final) return;
    this.#over = true;
    this.session.live.delete(this.cancellation);
  }
}

/** One `ModelStreamInfer` call. */
export class StreamSession {
  /** Cancellations of the requests not answered yet. */
  readonly live = new Set<Cancellation>();
  /** Requests of models that are not decoupled, in arrival order, from `head` on. */
  #slots: Slot[] = [];
  #head = 0;
  /** Requests read and not completely answered. */
  #open = 0;
  #halfClosed = false;
  #over = false;
  /** The client's `triton_grpc_error: true` header: a model's error ends the stream with its status. */
  readonly grpcErrorMode: boolean;

  constructor(
    readonly call: ServerDuplexStream<WireInferRequest, Buffer>,
    readonly ctx: StreamContext,
  ) {
    this.grpcErrorMode = call.metadata.get("triton_grpc_error")[0] === "true";
    call.on("data", (req: WireInferRequest) => this.#request(req));
    call.on("end", () => {
      this.#halfClosed = true;
      this.#maybeEnd();
    });
    call.on("cancelled", () => this.cancel());
    call.on("error", () => this.cancel());
  }

  /** True once nothing more may be written (ended, failed or cancelled). */
  get over(): boolean {
    return this.#over;
  }

  #request(req: WireInferRequest): void {
    if (this.#over) return;
    this.#open++;
    const { endpoint, shm } = this.ctx;
    let mv: ModelVersion;
    try {
      if (this.ctx.closing()) throw new ServingError("ERR_SERVER_CLOSED", "the server is shutting down");
      mv = endpoint.model(req.model_name, req.model_version);
    } catch (e) {
      this.send(this.#slot(), issueError(req, e), true);
      return;
    }
    const slot = mv.decoupled ? undefined : this.#slot();
    let g: GrpcInferRequest;
    try {
      g = requestToInput(req, mv, shm);
    } catch (e) {
      this.send(slot, issueError(req, e), true);
      return;
    }
    const cancellation = new Cancellation();
    g.input.cancellation = cancellation;
    this.live.add(cancellation);
    endpoint.stream(mv, g.input, new StreamRequest(this, req, slot, g, cancellation));
  }

  #slot(): Slot {
    const s: Slot = { messages: [], ready: false };
    this.#slots.push(s);
    return s;
  }

  /**
   * Sends (or, for a request of a model that is not decoupled, queues
   * behind earlier ones) one message of a request; `final`: the request is
   * fully answered.
   */
  send(slot: Slot | undefined, msg: Buffer | undefined, final: boolean): void {
    if (this.#over) return;
    if (slot === undefined) {
      if (msg !== undefined) this.call.write(msg);
      if (final) {
        this.#open--;
        this.#maybeEnd();
      }
      return;
    }
    if (msg !== undefined) slot.messages.push(msg);
    if (!final) return;
    slot.ready = true;
    const slots = this.#slots;
    while (this.#head < slots.length && slots[this.#head]!.ready) {
      for (const m of slots[this.#head]!.messages) this.call.write(m);
      this.#head++;
      this.#open--;
    }
    if (this.#head === slots.length) {
      slots.length = 0;
      this.#head = 0;
    }
    this.#maybeEnd();
  }

  /** Logs an error from a model that the client sees (INTERNAL ones as errors, the rest as detail). */
  logError(req: WireInferRequest, e: unknown): void {
    const { code, details } = grpcStatusOf(e);
    const m = `ModelStreamInfer '${req.model_name}'${req.id ? ` [request id: ${req.id}]` : ""}: ${details}`;
    if (code === 13 /* INTERNAL */ || code === 2 /* UNKNOWN */) this.ctx.log.error(m);
    else this.ctx.log.debug?.(m);
  }

  /** The transport is closing: the stream ends once its requests are answered. */
  shutdown(): void {
    this.#maybeEnd();
  }

  #maybeEnd(): void {
    if (this.#over || this.#open !== 0 || !(this.#halfClosed || this.ctx.closing())) return;
    this.#over = true;
    this.ctx.done(this);
    this.call.end();
  }

  /** Ends the stream with the status of `e` (`triton_grpc_error` mode), cancelling its other requests. */
  fail(e: unknown): void {
    if (this.#over) return;
    this.#cancelAll();
    const { code, details } = grpcStatusOf(e);
    this.call.emit("error", Object.assign(new Error(details), { code, details }));
  }

  /** The client cancelled (or the call failed): cancels every pending request; nothing more is written. */
  cancel(): void {
    if (this.#over) return;
    this.#cancelAll();
  }

  #cancelAll(): void {
    this.#over = true;
    this.ctx.done(this);
    const live = [...this.live];
    this.live.clear();
    for (const c of live) c.cancel();
  }
}

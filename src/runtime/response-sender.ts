/**
 * `InferenceResponseSender`: how a model answers a request on its own
 * schedule (Triton's `request.get_response_sender()`): zero or more
 * responses, sent from `execute()` or later from any async context, and
 * exactly one final flag that ends the request.
 *
 * A decoupled model (`model_transaction_policy { decoupled: true }`) must
 * answer this way. A model that is not decoupled may too, as Triton's
 * Python backend allows since 24.04: one response, then (or with it) the
 * final flag, and `execute()` returns nothing for that request.
 *
 * @module
 */
import { ServingError } from "./errors.js";
import { ModelError } from "./model-error.js";
import type { InferenceResponse } from "./response.js";

/**
 * Errors the runtime itself puts in a request's last response (a worker
 * that died): unlike a model's own error response, the request failed.
 */
export const runtimeFailures = new WeakSet<object>();

/** Options of {@link InferenceResponseSender.send}. */
export interface SendOptions {
  /**
   * Ends the request (Triton's `TRITONSERVER_RESPONSE_COMPLETE_FINAL`):
   * nothing can be sent after it. Every request gets exactly one.
   */
  final?: boolean;
}

/**
 * The runtime's end of a response sender: where sent responses go. Not
 * part of the model-author API; the model runtime and the worker-thread
 * instances implement it.
 */
export interface ResponseChannel {
  /** The request's id, for messages. */
  readonly requestId: string;
  /** A decoupled model's request: any number of responses. */
  readonly decoupled: boolean;
  /** Set once the final flag went out (sent by the model or forced by the runtime). */
  closed: boolean;
  /** Responses (not final flags alone) sent so far. */
  sent: number;
  /** True once the client gave up on the request. */
  isCancelled(): boolean;
  /**
   * Takes one response (`undefined`: the final flag alone). Called with
   * `closed` already set when `final`; must not throw.
   */
  deliver(response: InferenceResponse | undefined, final: boolean): void;
  /** The sender was garbage-collected before the final flag. */
  dropped(): void;
}

// A model that loses its sender before the final flag would leave its client
// waiting forever; the request ends with an error instead.
const dropWatch = new FinalizationRegistry<ResponseChannel>((ch) => {
  if (ch.closed) return;
  try {
    ch.dropped();
  } catch {
    // dropped() must not throw; a finalizer has nobody to tell.
  }
});

/** The message of a send after the request's final flag (Triton's words, and the request). */
export function senderClosedMessage(requestId: string): string {
  return `Unable to send response. Response sender has been closed (the final flag was already sent for request '${requestId}').`;
}

/**
 * Sends the responses of one request (Triton's `pb_utils` response
 * sender). `request.getResponseSender()` returns the same sender each time.
 *
 * A sender that is garbage-collected before its final flag ends its
 * request with an `INTERNAL` error: keep it (or its request) while the
 * request is being answered.
 *
 * @example
 * ```ts
 * execute(requests: InferenceRequest[]) {
 *   for (const r of requests) {
 *     const sender = r.getResponseSender();
 *     void (async () => {
 *       for (let i = 0; i < 3 && !sender.isCancelled(); i++) {
 *         sender.send(new InferenceResponse({ outputTensors: { OUT: Tensor.from(new Int32Array([i])) } }));
 *         await new Promise((ok) => setTimeout(ok, 10));
 *       }
 *       sender.send(undefined, { final: true });
 *     })();
 *   }
 * }
 * ```
 */
export class InferenceResponseSender {
  readonly #ch: ResponseChannel;

  /**
   * Made by the runtime (models get theirs from
   * `request.getResponseSender()`).
   *
   * @param channel - where the responses go.
   */
  constructor(channel: ResponseChannel) {
    this.#ch = channel;
    dropWatch.register(this, channel, this);
  }

  /**
   * Sends one response, the final flag, or both. The response is checked
   * against the model's config as a returned one is (names, dtypes, shapes,
   * requested outputs); one that does not fit reaches the client as this
   * request's error. A response with an `error` is an error response.
   * After the client cancelled, responses without the final flag are
   * dropped; the final flag still ends the request (as cancelled).
   *
   * @param response - the response; `undefined` with `{ final: true }`
   * sends the final flag alone.
   * @param options - `final: true` ends the request.
   * @throws {ServingError} `ERR_RESPONSE_COMPLETE` when the request
   * already ended (its final flag was sent, or the runtime ended it: the
   * model unloaded, its worker died); `ERR_RESPONSE_SENDER` when
   * `response` is missing without the final flag, and, for a model that is
   * not decoupled, for a second response or a final flag before any
   * response (Triton's rules and words).
   */
  send(response?: InferenceResponse, options?: SendOptions): void {
    const ch = this.#ch;
    const final = options?.final === true;
    const none = response === undefined || response === null;
    if (none && !final) {
      throw new ServingError("ERR_RESPONSE_SENDER", "Inference Response object must be provided when the response flags is set to zero.");
    }
    if (!ch.decoupled) {
      if (!none && ch.sent > 0) throw new ServingError("ERR_RESPONSE_SENDER", "Unable to send response. Non-decoupled model cannot send more than one response.");
      if (none && ch.sent === 0) {
        throw new ServingError("ERR_RESPONSE_SENDER", "Unable to send response. Non-decoupled model cannot send complete final before sending a response.");
      }
    }
    if (ch.closed) throw new ServingError("ERR_RESPONSE_COMPLETE", senderClosedMessage(ch.requestId));
    if (!none) ch.sent++;
    if (final) {
      // Before deliver(): a sink that sends again (re-entrantly) finds it closed.
      ch.closed = true;
      dropWatch.unregister(this);
    }
    ch.deliver(none ? undefined : response, final);
  }

  /** True once the client gave up on the request (Triton's `response_sender.is_cancelled()`). */
  isCancelled(): boolean {
    return this.#ch.isCancelled();
  }

  /** True once the request ended: its final flag was sent (or the runtime ended it). */
  isClosed(): boolean {
    return this.#ch.closed;
  }
}

/** The error a request ends with when its sender was garbage-collected before the final flag. */
export function senderDroppedError(model: string, requestId: string): ModelError {
  return new ModelError(
    `model '${model}': the response sender of request '${requestId}' was dropped without a final flag (garbage-collected before send(..., { final: true }))`,
    "INTERNAL",
  );
}

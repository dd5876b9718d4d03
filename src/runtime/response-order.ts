/**
 * `dynamic_batching { preserve_ordering: true }`: a model version's answers
 * go out in the order its requests left the queue, as Triton 2.51's dynamic
 * batcher sends them (core `dynamic_batch_scheduler.cc`:
 * `DelegateResponse` gives each request a slot in `completion_queue_` as
 * the batcher takes it out of the queue; `FinalizeResponses` sends the
 * slots from the front while they hold responses, and a slot leaves once
 * its final response went out).
 *
 * So, with several instances, a request whose batch finishes early waits
 * until every request taken before it has sent its final response; the
 * responses of the request at the front (a decoupled model's included) go
 * out as they are sent, and those of a later request are held, in their
 * own order, until it reaches the front. An error is a response like any
 * other: it keeps its place. Requests that never left the queue (refused,
 * timed out, cancelled while queued) get no slot and are answered at once;
 * a request cancelled while it runs keeps its place until the model ends
 * it. (Triton's load-time checks make the dequeue order the arrival order:
 * one priority level and no DELAY timeout action; see
 * `checkDynamicBatching`.)
 *
 * The model version keeps this only when the flag is set: without it no
 * slot is made and answers go out directly.
 *
 * @module
 */

/** What one held answer is: a response (a unary request's resolve), an error (its reject), or the final flag alone. */
export type AnswerKind = 0 | 1 | 2;
/** {@link AnswerKind}: a response. */
export const ANSWER_RESPONSE = 0;
/** {@link AnswerKind}: an error response. */
export const ANSWER_ERROR = 1;
/** {@link AnswerKind}: the final flag with no response. */
export const ANSWER_COMPLETE = 2;

/** Passes one answer to its request's client (the model version's callbacks). */
export type AnswerEmitter<T> = (owner: T, kind: AnswerKind, value: unknown, final: boolean) => void;

/** One request's place in the order (Triton's completion-queue slot). */
export class OrderSlot<T> {
  /** The slot taken after this one. */
  next: OrderSlot<T> | undefined = undefined;
  /** Answers waiting for this slot to reach the front: kind, value, final, flattened. */
  held: unknown[] | undefined = undefined;

  /** @param owner - the request, as the emitter knows it. */
  constructor(readonly owner: T) {}
}

/** The completion order of one model version (see the module doc). */
export class ResponseOrder<T> {
  readonly #emit: AnswerEmitter<T>;
  #head: OrderSlot<T> | undefined = undefined;
  #tail: OrderSlot<T> | undefined = undefined;
  /** Answers are going out: one sent meanwhile (a callback that ends another request) is held, and the running loop sends it in turn. */
  #flushing = false;

  /** @param emit - how an answer reaches its client once its turn comes. */
  constructor(emit: AnswerEmitter<T>) {
    this.#emit = emit;
  }

  /** A request leaves the queue: its slot goes behind every one taken before. */
  open(owner: T): OrderSlot<T> {
    const s = new OrderSlot(owner);
    if (this.#tail === undefined) this.#head = s;
    else this.#tail.next = s;
    this.#tail = s;
    return s;
  }

  /**
   * One answer of the slot's request: out now when the slot is at the
   * front, else held. `final` ends the slot; exactly one answer per slot
   * carries it, and none comes after it.
   */
  send(s: OrderSlot<T>, kind: AnswerKind, value: unknown, final: boolean): void {
    if (s === this.#head && !this.#flushing && s.held === undefined) {
      // The front, nothing held: out at once (the common case when batches finish in order).
      // (The next slot is the front before the final answer goes: a callback that throws leaves no slot stuck.)
      if (final) this.#advance(s);
      this.#flushing = true;
      try {
        this.#emit(s.owner, kind, value, final);
      } finally {
        this.#flushing = false;
      }
      // Answers sent meanwhile were held: their turn may have come.
      if (this.#head !== undefined && this.#head.held !== undefined) this.#flush();
      return;
    }
    (s.held ??= []).push(kind, value, final);
    if (s === this.#head && !this.#flushing) this.#flush();
  }

  /** Sends the front slots' held answers, for as long as the front has some. */
  #flush(): void {
    this.#flushing = true;
    try {
      let s = this.#head;
      while (s !== undefined && s.held !== undefined) {
        const h = s.held;
        // Taken before sending: an answer added while these go out lands in a fresh list, seen on the next turn.
        s.held = undefined;
        let ended = false;
        for (let i = 0; i < h.length; i += 3) {
          const final = h[i + 2] as boolean;
          if (final) {
            ended = true;
            this.#advance(s);
          }
          this.#emit(s.owner, h[i] as AnswerKind, h[i + 1], final);
        }
        if (ended) s = this.#head;
      }
    } finally {
      this.#flushing = false;
    }
  }

  /** The front slot `s` sent its final answer: the next one is the front. */
  #advance(s: OrderSlot<T>): void {
    this.#head = s.next;
    s.next = undefined;
    if (this.#head === undefined) this.#tail = undefined;
  }
}

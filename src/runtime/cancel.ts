/**
 * `Cancellation`: how a transport tells the runtime that a client gave up
 * on a request (a gRPC cancel, a closed stream, an HTTP connection closed
 * before its response). The runtime drops the request if it is still queued
 * and lets the model see it (`request.isCancelled()`,
 * `sender.isCancelled()`) if it is running.
 *
 * @module
 */

/**
 * A one-way cancelled flag with listeners; cheaper than an `AbortSignal`
 * (no EventTarget), since the serving path may make one per request.
 */
export class Cancellation {
  #cancelled = false;
  #listeners: (() => void)[] | undefined;

  /** True once {@link cancel} ran. */
  get cancelled(): boolean {
    return this.#cancelled;
  }

  /** Marks the request cancelled and runs each listener once (idempotent). */
  cancel(): void {
    if (this.#cancelled) return;
    this.#cancelled = true;
    const ls = this.#listeners;
    this.#listeners = undefined;
    if (ls) for (const l of ls) l();
  }

  /**
   * Runs `fn` when the request is cancelled (at once if it already is).
   *
   * @returns a function that removes the listener.
   */
  onCancel(fn: () => void): () => void {
    if (this.#cancelled) {
      fn();
      return () => {};
    }
    (this.#listeners ??= []).push(fn);
    return () => {
      const ls = this.#listeners;
      if (!ls) return;
      const i = ls.indexOf(fn);
      if (i >= 0) ls.splice(i, 1);
    };
  }
}

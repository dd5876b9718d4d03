/**
 * The gRPC request deadline that both gRPC servers keep
 * (`--grpc-request-timeout-ms`): a unary call whose request message is not
 * in after it is ended with `DEADLINE_EXCEEDED`. One sweep now and then
 * (every quarter of the deadline, 50 ms to 30 s) goes over the calls still
 * arriving, rather than a timer per call: nearly every request is in
 * within a millisecond. Each server forgets a call as soon as its request
 * arrived or it ended, not at the next sweep, so the calls of a whole sweep
 * period are not kept alive.
 *
 * @module
 */

/** The calls (of type `C`) whose request is still arriving, and when each started. */
export abstract class RequestDeadlineWatch<C> {
  readonly #since = new Map<C, number>();
  readonly #timer: NodeJS.Timeout;
  /** Calls ended at the deadline so far. */
  expired = 0;

  /** @param ms - the deadline (milliseconds). */
  constructor(readonly ms: number) {
    this.#timer = setInterval(() => this.#sweep(), Math.min(30_000, Math.max(50, Math.floor(ms / 4))));
    this.#timer.unref();
  }

  /** Watches `call`, from now. */
  protected watchCall(call: C): void {
    this.#since.set(call, Date.now());
  }

  /** Stops watching `call`: its request arrived, or it ended. */
  forget(call: C): void {
    this.#since.delete(call);
  }

  /** Calls watched now (their request may still be arriving). */
  get watched(): number {
    return this.#since.size;
  }

  /** Whether `call` is over without the sweep knowing (it is then forgotten); by default never. */
  protected settled(_call: C): boolean {
    return false;
  }

  /** Ends `call` at the deadline, with `details` as its grpc-message. */
  protected abstract expire(call: C, details: string): void;

  #sweep(): void {
    const limit = Date.now() - this.ms;
    for (const [call, since] of this.#since) {
      if (this.settled(call)) this.#since.delete(call);
      else if (since < limit) {
        this.#since.delete(call);
        this.expired++;
        this.expire(call, `the request message did not arrive within ${this.ms} ms (see --grpc-request-timeout-ms)`);
      }
    }
  }

  /** Stops the sweeps and forgets every call. */
  stop(): void {
    clearInterval(this.#timer);
    this.#since.clear();
  }
}

/**
 * The queue between `submit()` and a model's instances, as Triton 2.51's
 * schedulers keep it (core `dynamic_batch_scheduler.cc`,
 * `scheduler_utils.cc`):
 *
 * - without `dynamic_batching` ({@link FifoQueue}): first come, first
 *   served, one request per `execute()`, no queue policy;
 * - with it ({@link DynamicBatcher}): requests are grouped into one
 *   `execute()` up to `max_batch_size` (the sum of dim 0 across them),
 *   preferring a `preferred_batch_size` (Triton's default: `max_batch_size`
 *   alone), waiting up to `max_queue_delay_microseconds` for a batch to
 *   fill; one queue per priority level (`priority_levels`, a request's
 *   `priority` 0 or above the levels meaning `default_priority_level`),
 *   each with its queue policy (`priority_queue_policy`, else
 *   `default_queue_policy`): `max_queue_size` (UNAVAILABLE "Exceeds maximum
 *   queue size"), `default_timeout_microseconds` with `timeout_action`
 *   REJECT (UNAVAILABLE "Request timeout expired") or DELAY (behind the
 *   level's requests still in time), and `allow_timeout_override` (a
 *   request's `timeout`, in µs, that only shortens the default).
 *
 * `preserve_ordering` is checked here (one priority level, no DELAY
 * timeout action, as Triton refuses otherwise) and honoured where answers
 * leave the model version: response-order.ts.
 *
 * Requests that a batch may hold together also agree in the shape of every
 * input with a variable dim (unless `allow_ragged_batch`), in the contents
 * of shape tensors, and, for a model with optional inputs, in which inputs
 * they have; the batch is sent as it is when the next request does not.
 *
 * The queue knows nothing of instances: the model version asks it for the
 * next batch when an instance is free ({@link RequestQueue.next}), which
 * answers a batch, or when to ask again (the queue delay or a timeout).
 * Triton's batcher thread also forms a batch ahead of a free instance when
 * no queue policy is set ("prefetching"); here a batch is formed only when
 * an instance can take it, so a request that arrives while all are busy can
 * still join the batch.
 *
 * @module
 */
import type { Tensor } from "../tensor.js";
import type { ModelConfig } from "./config.js";
import { ServingError } from "./errors.js";

/** A queued request as the queue sees it. */
export interface QueueEntry {
  /** dim 0 of its inputs (1 for a model without batching). */
  readonly batchSize: number;
  /** When it was queued (`process.hrtime.bigint()`). */
  readonly enqueuedAt: bigint;
}

/** The request's own scheduling parameters (Triton's `priority` and `timeout`). */
export interface QueueOptions {
  /** Priority: 1 is the highest; 0 (or above `priority_levels`) is the default level. */
  priority?: number | undefined;
  /** Queue timeout in microseconds; 0 is none (used only when the policy allows an override, and only to shorten it). */
  timeoutUs?: number | undefined;
  /** The request id, for Triton's "[request id: …]" in the queue-full error. */
  id?: string | undefined;
}

/**
 * What {@link RequestQueue.next} answers: a batch to run now (an array), or
 * when to ask again (a `process.hrtime.bigint()` time), or `undefined` when
 * nothing is queued. (No wrapper object: this is once per batch.)
 */
export type NextBatch<T> = T[] | bigint | undefined;

/** The scheduler queue of one model version (see the module doc). */
export interface RequestQueue<T extends QueueEntry> {
  /** Requests queued (delayed ones included). */
  readonly size: number;
  /**
   * Queues a request.
   *
   * @returns `undefined`, or the error the request is refused with
   * (`ERR_QUEUE_FULL`); a refused request is not queued.
   */
  enqueue(entry: T, opts: QueueOptions | undefined): ServingError | undefined;
  /** Takes a request out (a cancel); false when it was not queued. */
  remove(entry: T): boolean;
  /**
   * The batch an instance free now should run, or when to ask again;
   * `undefined` when nothing is queued. Call {@link takeExpired} with the
   * same `now` first: requests whose REJECT timeout expired must not go
   * into a batch.
   *
   * @param flush - send what is queued without waiting for a batch to fill
   * (an unload drains the queue).
   */
  next(now: bigint, flush: boolean): NextBatch<T>;
  /** Requests whose queue timeout expired with REJECT: out of the queue, to be failed with {@link queueTimeoutError}. */
  takeExpired(now: bigint): T[];
  /** The earliest REJECT deadline of a queued request (when to call {@link takeExpired}), or undefined. */
  readonly nextDeadline: bigint | undefined;
}

/** Triton's refusal of a request that finds its queue full (UNAVAILABLE). */
export function queueFullError(id: string | undefined): ServingError {
  return new ServingError("ERR_QUEUE_FULL", `[request id: ${id || "<id_unknown>"}] Exceeds maximum queue size`);
}

/** Triton's answer to a request whose queue timeout expired with REJECT (UNAVAILABLE). */
export function queueTimeoutError(): ServingError {
  return new ServingError("ERR_QUEUE_TIMEOUT", "Request timeout expired");
}

/** The queue of a model version with this config. */
export function createRequestQueue<T extends QueueEntry>(config: ModelConfig, inputsOf: (entry: T) => readonly Tensor[]): RequestQueue<T> {
  return config.dynamic_batching === undefined ? new FifoQueue<T>() : new DynamicBatcher<T>(config, inputsOf);
}

/** No `dynamic_batching`: one request per execute(), in arrival order (Triton's default scheduler). */
export class FifoQueue<T extends QueueEntry> implements RequestQueue<T> {
  readonly #queue: T[] = [];

  get size(): number {
    return this.#queue.length;
  }

  enqueue(entry: T): undefined {
    this.#queue.push(entry);
    return undefined;
  }

  remove(entry: T): boolean {
    const i = this.#queue.indexOf(entry);
    if (i < 0) return false;
    this.#queue.splice(i, 1);
    return true;
  }

  next(): NextBatch<T> {
    const first = this.#queue.shift();
    return first === undefined ? undefined : [first];
  }

  takeExpired(): T[] {
    return [];
  }

  get nextDeadline(): undefined {
    return undefined;
  }
}

/** A queue policy with every field set (model_config.proto's `ModelQueuePolicy`). */
interface QueuePolicy {
  readonly reject: boolean;
  readonly defaultTimeoutNs: bigint;
  readonly allowOverride: boolean;
  readonly maxQueueSize: number;
}

/** A queued request and its deadline (0n: none). */
interface Slot<T> {
  readonly entry: T;
  readonly deadline: bigint;
}

/** One priority level: its policy, its requests in time, and those whose DELAY timeout expired. */
interface Level<T> {
  readonly level: number;
  readonly policy: QueuePolicy;
  readonly queue: Slot<T>[];
  readonly delayed: Slot<T>[];
}

function policyOf(p: unknown): QueuePolicy {
  const q = (p ?? {}) as { timeout_action?: unknown; default_timeout_microseconds?: unknown; allow_timeout_override?: unknown; max_queue_size?: unknown };
  const us = Number(q.default_timeout_microseconds ?? 0);
  return {
    reject: q.timeout_action !== "DELAY",
    defaultTimeoutNs: Number.isFinite(us) && us > 0 ? BigInt(Math.round(us)) * 1000n : 0n,
    allowOverride: q.allow_timeout_override === true,
    maxQueueSize: Number(q.max_queue_size ?? 0) || 0,
  };
}

/** What a batch's requests must agree on (Triton's `RequiredEqualInputs`). */
interface EqualInputs {
  /** Inputs whose shape (after the batch dim) must match; true: their contents too (shape tensors). */
  readonly enforce: ReadonlyMap<string, boolean>;
  /** The model has optional inputs: the requests must give the same ones. */
  readonly optional: boolean;
}

function sameDims(a: readonly number[], b: readonly number[], from: number): boolean {
  if (a.length !== b.length) return false;
  for (let i = from; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

function sameBytes(a: Tensor, b: Tensor): boolean {
  if (!a.isCpu() || !b.isCpu()) return false;
  const x = a.bytes();
  const y = b.bytes();
  if (!(x instanceof Uint8Array) || !(y instanceof Uint8Array) || x.byteLength !== y.byteLength) return false;
  for (let i = 0; i < x.byteLength; i++) if (x[i] !== y[i]) return false;
  return true;
}

/**
 * Triton's load-time checks of `dynamic_batching`'s priorities and queue
 * policies (core `ValidateModelConfig`), in its words; the preferred sizes
 * are checked with the rest of the config (config.ts).
 *
 * @throws {ServingError} `ERR_CONFIG_INVALID`.
 */
export function checkDynamicBatching(config: ModelConfig): void {
  const db = config.dynamic_batching;
  if (db === undefined) return;
  const bad = (m: string): never => {
    throw new ServingError("ERR_CONFIG_INVALID", `${m} for ${config.name}`);
  };
  const levels = Number(db.priority_levels) || 0;
  const policies = Object.entries(db.priority_queue_policy ?? {});
  if (levels !== 0) {
    const d = Number(db.default_priority_level) || 0;
    if (d === 0 || d > levels) bad(`default priority level must be in range [1, ${levels}]`);
    for (const [k] of policies) {
      const n = Number(k);
      if (n === 0 || n > levels) bad(`priority queue policy must have priority level in range [1, ${levels}]`);
    }
  }
  if (db.preserve_ordering) {
    if (levels > 1) bad("Only one priority level is allowed when 'preserve_ordering' is true");
    for (const p of [db.default_queue_policy, ...policies.map(([, v]) => v)]) {
      const q = policyOf(p);
      if (q.defaultTimeoutNs !== 0n && !q.reject) bad("Queue policy can not have DELAY as timeout action when 'preserve_ordering' is true");
    }
  }
}

/** `dynamic_batching`: Triton's dynamic batcher (see the module doc). */
export class DynamicBatcher<T extends QueueEntry> implements RequestQueue<T> {
  readonly #maxBatch: number;
  readonly #batched: boolean;
  readonly #preferred: ReadonlySet<number>;
  readonly #maxPreferred: number;
  readonly #delayNs: bigint;
  readonly #priorityLevels: number;
  readonly #defaultLevel: number;
  readonly #defaultPolicy: QueuePolicy;
  readonly #policies = new Map<number, QueuePolicy>();
  /** Levels with requests or a policy of their own, highest priority (lowest number) first. */
  readonly #levels: Level<T>[] = [];
  readonly #equal: EqualInputs | undefined;
  readonly #inputsOf: (entry: T) => readonly Tensor[];
  #size = 0;
  /** Queued REJECT requests with a deadline: takeExpired() has work only then. */
  #deadlines = 0;

  /**
   * @param config - the model's normalised config (`dynamic_batching` set).
   * @param inputsOf - a queued request's input tensors (the equal-shape rule).
   * @throws {ServingError} `ERR_CONFIG_INVALID`: see {@link checkDynamicBatching}.
   */
  constructor(config: ModelConfig, inputsOf: (entry: T) => readonly Tensor[]) {
    checkDynamicBatching(config);
    const db = config.dynamic_batching!;
    this.#batched = config.max_batch_size > 0;
    this.#maxBatch = Math.max(1, config.max_batch_size);
    // Triton fills in preferred_batch_size [max_batch_size] when none is given.
    const preferred = db.preferred_batch_size.length > 0 ? db.preferred_batch_size : config.max_batch_size > 0 ? [config.max_batch_size] : [];
    this.#preferred = new Set(preferred);
    this.#maxPreferred = preferred.length > 0 ? Math.max(...preferred) : 0;
    this.#delayNs = BigInt(Math.max(0, Math.round(Number(db.max_queue_delay_microseconds) || 0))) * 1000n;
    this.#priorityLevels = Number(db.priority_levels) || 0;
    this.#defaultLevel = Number(db.default_priority_level) || 0;
    this.#defaultPolicy = policyOf(db.default_queue_policy);
    this.#inputsOf = inputsOf;
    if (this.#priorityLevels > 0) {
      for (const [k, v] of Object.entries(db.priority_queue_policy ?? {})) this.#policies.set(Number(k), policyOf(v));
    }
    const enforce = new Map<string, boolean>();
    let optional = false;
    for (const i of config.input) {
      if (i.optional) optional = true;
      if (i.is_shape_tensor) enforce.set(i.name, true);
      else if (!i.allow_ragged_batch && i.dims.includes(-1)) enforce.set(i.name, false);
    }
    this.#equal = enforce.size > 0 || optional ? { enforce, optional } : undefined;
  }

  get size(): number {
    return this.#size;
  }

  /** The level a request's priority puts it on (Triton's `InferenceRequest::SetPriority`). */
  levelOf(priority: number | undefined): number {
    const p = priority ?? 0;
    return p === 0 || p > this.#priorityLevels ? this.#defaultLevel : p;
  }

  #level(n: number): Level<T> {
    const levels = this.#levels;
    let lo = 0;
    let hi = levels.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (levels[mid]!.level < n) lo = mid + 1;
      else hi = mid;
    }
    if (lo < levels.length && levels[lo]!.level === n) return levels[lo]!;
    const l: Level<T> = { level: n, policy: this.#policies.get(n) ?? this.#defaultPolicy, queue: [], delayed: [] };
    levels.splice(lo, 0, l);
    return l;
  }

  enqueue(entry: T, opts: QueueOptions | undefined): ServingError | undefined {
    const l = this.#level(this.levelOf(opts?.priority));
    const policy = l.policy;
    if (policy.maxQueueSize !== 0 && l.queue.length + l.delayed.length >= policy.maxQueueSize) return queueFullError(opts?.id);
    let timeoutNs = policy.defaultTimeoutNs;
    if (policy.allowOverride) {
      const us = opts?.timeoutUs ?? 0;
      // As Triton: an override only shortens the default (so with no default timeout it does nothing).
      if (us > 0 && Number.isFinite(us)) {
        const ns = BigInt(Math.round(us)) * 1000n;
        if (ns < timeoutNs) timeoutNs = ns;
      }
    }
    const deadline = timeoutNs === 0n ? 0n : entry.enqueuedAt + timeoutNs;
    l.queue.push({ entry, deadline });
    this.#size++;
    if (deadline !== 0n && policy.reject) this.#deadlines++;
    return undefined;
  }

  remove(entry: T): boolean {
    for (const l of this.#levels) {
      for (const q of [l.queue, l.delayed]) {
        const i = q.findIndex((s) => s.entry === entry);
        if (i < 0) continue;
        const [s] = q.splice(i, 1);
        this.#size--;
        if (q === l.queue && s!.deadline !== 0n && l.policy.reject) this.#deadlines--;
        return true;
      }
    }
    return false;
  }

  takeExpired(now: bigint): T[] {
    const out: T[] = [];
    if (this.#deadlines === 0) return out;
    for (const l of this.#levels) {
      if (!l.policy.reject) continue;
      const q = l.queue;
      let w = 0;
      for (let r = 0; r < q.length; r++) {
        const s = q[r]!;
        if (s.deadline !== 0n && now > s.deadline) out.push(s.entry);
        else q[w++] = s;
      }
      q.length = w;
    }
    this.#size -= out.length;
    this.#deadlines -= out.length;
    return out;
  }

  get nextDeadline(): bigint | undefined {
    if (this.#deadlines === 0) return undefined;
    let min: bigint | undefined;
    for (const l of this.#levels) {
      if (!l.policy.reject) continue;
      for (const s of l.queue) if (s.deadline !== 0n && (min === undefined || s.deadline < min)) min = s.deadline;
    }
    return min;
  }

  /** DELAY requests whose timeout expired go behind their level's requests in time (REJECT ones are left to takeExpired). */
  #delayExpired(now: bigint): void {
    for (const l of this.#levels) {
      if (l.policy.reject) continue;
      const q = l.queue;
      let w = 0;
      for (let r = 0; r < q.length; r++) {
        const s = q[r]!;
        if (s.deadline !== 0n && now > s.deadline) l.delayed.push({ entry: s.entry, deadline: 0n });
        else q[w++] = s;
      }
      q.length = w;
    }
  }

  /** True when `e` may join a batch whose first request is `first` (Triton's `HasEqualInputs`). */
  #fits(first: readonly Tensor[], e: T): boolean {
    const eq = this.#equal!;
    const inputs = this.#inputsOf(e);
    if (eq.optional && inputs.length !== first.length) return false;
    for (const t of inputs) {
      const name = t.name ?? "";
      const ref = first.find((f) => f.name === name);
      if (ref === undefined) {
        if (eq.optional) return false;
        continue;
      }
      const content = eq.enforce.get(name);
      if (content === undefined) continue;
      if (!sameDims(ref.shape, t.shape, this.#batched ? 1 : 0)) return false;
      if (content && !sameBytes(ref, t)) return false;
    }
    return true;
  }

  next(now: bigint, flush: boolean): NextBatch<T> {
    this.#delayExpired(now);
    if (this.#size === 0) return undefined;
    // Walk the queue in priority order (each level: its requests in time,
    // then its delayed ones), as Triton's GetDynamicBatch moves its cursor.
    const pending: Slot<T>[] = [];
    let pendingSize = 0;
    let best = 0;
    let sendNow = false;
    let first: readonly Tensor[] | undefined;
    walk: for (const l of this.#levels) {
      for (const q of [l.queue, l.delayed]) {
        for (const s of q) {
          const bs = s.entry.batchSize;
          if (pending.length === 0) {
            if (this.#equal !== undefined) first = this.#inputsOf(s.entry);
          } else {
            // Past the largest preferred size: mark here (what goes if the delay has not run out).
            if (pendingSize + bs > this.#maxPreferred && best === 0) best = pending.length;
            if (pendingSize + bs > this.#maxBatch) {
              sendNow = true;
              break walk;
            }
            if (first !== undefined && !this.#fits(first, s.entry)) {
              sendNow = true;
              break walk;
            }
          }
          pending.push(s);
          pendingSize += bs;
          if (this.#preferred.has(pendingSize)) best = pending.length;
        }
      }
    }
    let oldest = pending[0]!.entry.enqueuedAt;
    for (const s of pending) if (s.entry.enqueuedAt < oldest) oldest = s.entry.enqueuedAt;
    const delayExceeded = this.#delayNs !== 0n && now - oldest >= this.#delayNs;
    let take = -1;
    if (best !== 0 && !delayExceeded) take = best;
    else if (sendNow || pendingSize >= this.#maxPreferred || delayExceeded || this.#delayNs === 0n || flush) take = pending.length;
    if (take < 0) {
      // Wait for the delay to run out, or for the first deadline in the pending batch.
      let wakeAt = oldest + this.#delayNs;
      for (const s of pending) if (s.deadline !== 0n && s.deadline < wakeAt) wakeAt = s.deadline + 1n;
      return wakeAt;
    }
    const batch: T[] = [];
    for (let i = 0; i < take; i++) batch.push(pending[i]!.entry);
    this.#removeFirst(take);
    return batch;
  }

  /** Takes the first `n` requests in walk order out (a batch is always a prefix of that order). */
  #removeFirst(n: number): void {
    this.#size -= n;
    let left = n;
    for (const l of this.#levels) {
      for (const q of [l.queue, l.delayed]) {
        if (left === 0) break;
        const k = Math.min(left, q.length);
        if (k === 0) continue;
        if (q === l.queue && l.policy.reject) for (let i = 0; i < k; i++) if (q[i]!.deadline !== 0n) this.#deadlines--;
        q.splice(0, k);
        left -= k;
      }
      if (left === 0) break;
    }
    // Levels without a policy of their own go when empty (Triton erases them too).
    for (let i = this.#levels.length - 1; i >= 0; i--) {
      const l = this.#levels[i]!;
      if (l.queue.length === 0 && l.delayed.length === 0 && !this.#policies.has(l.level)) this.#levels.splice(i, 1);
    }
  }
}

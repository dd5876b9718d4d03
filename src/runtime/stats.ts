/**
 * Per-model-version statistics in the shape of Triton's statistics
 * extension (`GET /v2/models/{m}/stats`). Every count and duration is an
 * integer (perf_analyzer parses them as such).
 *
 * @module
 */

/** A count and the total nanoseconds spent. */
export interface StatDuration {
  /** Number of events. */
  count: number;
  /** Total duration in nanoseconds. */
  ns: number;
}

/** Statistics of one batch size. */
export interface BatchStats {
  /** The batch size. */
  batch_size: number;
  /** Input preparation. */
  compute_input: StatDuration;
  /** `execute()` time. */
  compute_infer: StatDuration;
  /** Output checking and collection. */
  compute_output: StatDuration;
}

/** Triton's `InferStatistics`. */
export interface InferenceStats {
  /** Successful requests, end to end. */
  success: StatDuration;
  /** Failed requests, end to end. */
  fail: StatDuration;
  /** Time requests waited for an instance. */
  queue: StatDuration;
  /** Input preparation. */
  compute_input: StatDuration;
  /** `execute()` time. */
  compute_infer: StatDuration;
  /** Output checking and collection. */
  compute_output: StatDuration;
  /** Response cache hits (always zero: no cache). */
  cache_hit: StatDuration;
  /** Response cache misses (always zero: no cache). */
  cache_miss: StatDuration;
}

/**
 * Triton's `InferResponseStatistics`: the responses sent through response
 * senders with one index (the first response of each request, the
 * second, ...). A response's time starts when the previous one of its
 * request went out (the first's, when the request was given to
 * `execute()`).
 */
export interface ResponseStats {
  /** Until the model sent the response (successful and failed responses). */
  compute_infer: StatDuration;
  /** Checking the response against the config (successful and failed responses). */
  compute_output: StatDuration;
  /** Responses that went out with outputs. */
  success: StatDuration;
  /** Error responses: the model's, a response that does not fit the config, or the runtime's error final. */
  fail: StatDuration;
  /** The final flag sent alone, with no response. */
  empty_response: StatDuration;
  /** Sends dropped because the client had cancelled the request. */
  cancel: StatDuration;
}

/** What a response sent through a response sender came to (see {@link ResponseStats}). */
export type ResponseOutcome = "success" | "fail" | "empty" | "cancel";

/**
 * Why a request failed, as Triton's `nv_inference_request_failure` metric
 * labels it.
 */
export type FailureReason = "REJECTED" | "CANCELED" | "BACKEND" | "OTHER";

/** Triton's `ModelStatistics` for one model version. */
export interface ModelStatistics {
  /** Model name. */
  name: string;
  /** Version as a decimal string. */
  version: string;
  /** Milliseconds since the epoch of the last inference (0 if none). */
  last_inference: number;
  /** Inferences performed (sum of batch sizes of successful requests). */
  inference_count: number;
  /** `execute()` calls. */
  execution_count: number;
  /** Request-level statistics. */
  inference_stats: InferenceStats;
  /**
   * Per-response statistics, keyed by the response's index within its
   * request (`"0"`, `"1"`, ...); only responses sent through response
   * senders are counted (a returned response is not).
   */
  response_stats: Record<string, ResponseStats>;
  /** Per-batch-size statistics. */
  batch_stats: BatchStats[];
  /** Memory usage (empty). */
  memory_usage: never[];
}

const zero = (): StatDuration => ({ count: 0, ns: 0 });
const copy = (d: StatDuration): StatDuration => ({ count: d.count, ns: d.ns });
function add(d: StatDuration, ns: number, count: number): void {
  d.count += count;
  d.ns += Math.max(0, Math.round(ns));
}

/** Accumulates {@link ModelStatistics} for one model version. */
export class StatsRecorder {
  #lastInference = 0;
  #inferenceCount = 0;
  #executionCount = 0;
  readonly #stats: InferenceStats = {
    success: zero(),
    fail: zero(),
    queue: zero(),
    compute_input: zero(),
    compute_infer: zero(),
    compute_output: zero(),
    cache_hit: zero(),
    cache_miss: zero(),
  };
  readonly #batches = new Map<number, BatchStats>();
  readonly #responses = new Map<number, ResponseStats>();

  /**
   * @param name - model name.
   * @param version - model version.
   */
  constructor(
    readonly name: string,
    readonly version: number,
  ) {}

  /**
   * Records one finished request. As Triton's statistics: a failure counts
   * its duration only; a success also its queue time and its batch's
   * compute times (so `queue` and `compute_*` count successes).
   *
   * @param queueNs - time queued (-1: it never reached an instance).
   * @param inputNs - its batch's compute_input (-1: it never ran); with
   * `inferNs` and `outputNs`, its batch's compute_infer and compute_output.
   */
  request(ok: boolean, ns: number, batchSize: number, queueNs: number, inputNs = -1, inferNs = 0, outputNs = 0): void {
    const d = ok ? this.#stats.success : this.#stats.fail;
    d.count++;
    d.ns += Math.max(0, Math.round(ns));
    if (!ok) return;
    this.#inferenceCount += batchSize;
    this.#lastInference = Date.now();
    if (queueNs >= 0) add(this.#stats.queue, queueNs, 1);
    if (inputNs >= 0) {
      add(this.#stats.compute_input, inputNs, 1);
      add(this.#stats.compute_infer, inferNs, 1);
      add(this.#stats.compute_output, outputNs, 1);
    }
  }

  /**
   * Records one `execute()` call over requests totalling `batchSize` (the
   * sum of their dim 0): the execution count and the batch size's
   * `batch_stats` entry (successful or not, as Triton's backends report a
   * batch).
   */
  execution(batchSize: number, inputNs: number, inferNs: number, outputNs: number): void {
    this.#executionCount++;
    let b = this.#batches.get(batchSize);
    if (!b) {
      b = { batch_size: batchSize, compute_input: zero(), compute_infer: zero(), compute_output: zero() };
      this.#batches.set(batchSize, b);
    }
    add(b.compute_input, inputNs, 1);
    add(b.compute_infer, inferNs, 1);
    add(b.compute_output, outputNs, 1);
  }

  /**
   * Records one send() of a response sender. Only `success` and `fail`
   * count `inferNs` and `outputNs`, as Triton's response statistics do.
   *
   * @param index - the response's index within its request.
   * @param totalNs - since the previous response of the request.
   */
  response(index: number, outcome: ResponseOutcome, inferNs: number, outputNs: number, totalNs: number): void {
    let r = this.#responses.get(index);
    if (!r) {
      r = { compute_infer: zero(), compute_output: zero(), success: zero(), fail: zero(), empty_response: zero(), cancel: zero() };
      this.#responses.set(index, r);
    }
    switch (outcome) {
      case "success":
      case "fail":
        add(r.compute_infer, inferNs, 1);
        add(r.compute_output, outputNs, 1);
        add(outcome === "success" ? r.success : r.fail, totalNs, 1);
        break;
      case "empty":
        add(r.empty_response, totalNs, 1);
        break;
      case "cancel":
        add(r.cancel, totalNs, 1);
        break;
    }
  }

  /** A snapshot in Triton's JSON shape. */
  snapshot(): ModelStatistics {
    const s = this.#stats;
    return {
      name: this.name,
      version: String(this.version),
      last_inference: this.#lastInference,
      inference_count: this.#inferenceCount,
      execution_count: this.#executionCount,
      inference_stats: {
        success: copy(s.success),
        fail: copy(s.fail),
        queue: copy(s.queue),
        compute_input: copy(s.compute_input),
        compute_infer: copy(s.compute_infer),
        compute_output: copy(s.compute_output),
        cache_hit: copy(s.cache_hit),
        cache_miss: copy(s.cache_miss),
      },
      response_stats: Object.fromEntries(
        [...this.#responses.entries()]
          .toSorted((a, b) => a[0] - b[0])
          .map(([i, r]) => [
            String(i),
            {
              compute_infer: copy(r.compute_infer),
              compute_output: copy(r.compute_output),
              success: copy(r.success),
              fail: copy(r.fail),
              empty_response: copy(r.empty_response),
              cancel: copy(r.cancel),
            },
          ]),
      ),
      batch_stats: [...this.#batches.values()]
        .toSorted((a, b) => a.batch_size - b.batch_size)
        .map((b) => ({
          batch_size: b.batch_size,
          compute_input: copy(b.compute_input),
          compute_infer: copy(b.compute_infer),
          compute_output: copy(b.compute_output),
        })),
      memory_usage: [],
    };
  }
}

/**
 * Receives inference events as they happen (the server's Prometheus metrics
 * implement it).
 */
export interface InferenceObserver {
  /**
   * One request finished; `reason` is set on failure (`REJECTED`,
   * `CANCELED`, `BACKEND`, `OTHER`). A request answered through its
   * response sender finishes with its final flag.
   */
  requestDone(e: {
    model: string;
    version: number;
    success: boolean;
    reason?: FailureReason;
    durationNs: number;
    queueNs: number;
    batchSize: number;
  }): void;
  /** One `execute()` call finished. */
  executionDone(e: {
    model: string;
    version: number;
    requests: number;
    batchSize: number;
    computeInputNs: number;
    computeInferNs: number;
    computeOutputNs: number;
  }): void;
}

/**
 * `InferenceResponse`: what a model returns for one request.
 *
 * @module
 */
import type { Tensor } from "../tensor.js";
import { splitAlongBatch } from "./batch-tensors.js";
import { ServingError } from "./errors.js";
import { ModelError } from "./model-error.js";
import type { InferenceRequest } from "./request.js";

function bad(m: string): never {
  throw new ServingError("ERR_BATCH_MISMATCH", m);
}

/** What an {@link InferenceResponse} is made of. */
export interface InferenceResponseInit {
  /**
   * Output tensors: an array of named tensors (`Tensor.from(x, { name })`) or
   * a record `{ OUTPUT0: tensor }`, whose keys name the tensors.
   */
  outputTensors?: Tensor[] | Record<string, Tensor>;
  /** An error for this request instead of outputs (a string becomes an INTERNAL ModelError). */
  error?: ModelError | Error | string;
}

/**
 * The response to one request (Triton's `pb_utils.InferenceResponse`).
 * Outputs are checked against the model's config by the runtime: a name,
 * dtype or shape the config does not allow turns into this request's error.
 *
 * @example
 * ```ts
 * new InferenceResponse({ outputTensors: { OUTPUT0: Tensor.from(sum, { shape: [4] }) } });
 * new InferenceResponse({ outputTensors: [Tensor.from(sum, { name: "OUTPUT0" })] });
 * new InferenceResponse({ error: new ModelError("bad input", ModelError.INVALID_ARG) });
 * ```
 */
export class InferenceResponse {
  /** The output tensors; record keys become tensor names. */
  readonly outputTensors: readonly Tensor[];
  /** The error, when the request failed. */
  readonly error: ModelError | undefined;

  /**
   * @param init - output tensors or an error.
   * @throws {TypeError} when `outputTensors` is neither an array nor a record of tensors.
   */
  constructor(init: InferenceResponseInit = {}) {
    const out = init.outputTensors;
    if (out === undefined || out === null) {
      this.outputTensors = Object.freeze([]);
    } else if (Array.isArray(out)) {
      this.outputTensors = Object.freeze([...out]);
    } else if (typeof out === "object") {
      this.outputTensors = Object.freeze(
        Object.entries(out).map(([name, t]) => {
          if (typeof t !== "object" || t === null || typeof (t as Tensor).withName !== "function") {
            throw new TypeError(`outputTensors.${name} is not a Tensor`);
          }
          return t.name === name ? t : t.withName(name);
        }),
      );
    } else {
      throw new TypeError("outputTensors must be an array of named tensors or a { NAME: tensor } record");
    }
    this.error = init.error === undefined || init.error === null ? undefined : ModelError.from(init.error);
  }

  /**
   * One response per request, from outputs computed for the whole batch
   * (see `InferenceRequest.concat`): each output is cut along dim 0 into
   * the requests' batch sizes (dim 0 of each request's inputs), in their
   * order. Each piece is a view of the batched output: no copy (a
   * device output is read through `toCpu()` first; a BYTES piece shares its
   * elements).
   *
   * @param batched - the batched outputs: a `{ NAME: tensor }` record or an
   * array of named tensors, each with dim 0 equal to the requests' total.
   * @param requests - the requests `execute()` received.
   * @returns `requests.length` responses, in order: return them from `execute()`.
   * @throws {ServingError} `ERR_BATCH_MISMATCH` for a request without
   * inputs (no dim 0 to read), an output without a name or a dim 0, or one
   * whose dim 0 is not the requests' total.
   */
  static split(batched: Record<string, Tensor> | readonly Tensor[], requests: readonly InferenceRequest[]): InferenceResponse[] {
    if (!Array.isArray(requests)) bad("InferenceResponse.split needs the array of requests execute() received");
    const rows = requests.map((r, i) => {
      const first = typeof r?.inputs === "function" ? r.inputs()[0] : undefined;
      if (first === undefined || first.shape.length === 0) bad(`request ${i} has no input with a dim 0 to read its batch size from`);
      return first!.shape[0]!;
    });
    const outputs: Tensor[] = Array.isArray(batched)
      ? (batched as readonly Tensor[]).map((t, i) => (t?.name ? t : bad(`output ${i} has no name (use Tensor.from(data, { name }) or a { NAME: tensor } record)`)))
      : Object.entries(batched ?? {}).map(([name, t]) => (t.name === name ? t : t.withName(name)));
    const pieces = outputs.map((t) => splitAlongBatch(t, rows));
    return rows.map((_, i) => new InferenceResponse({ outputTensors: pieces.map((p) => p[i]!) }));
  }

  /** The output tensor with this name, or `undefined`. */
  outputTensorByName(name: string): Tensor | undefined {
    return this.outputTensors.find((t) => t.name === name);
  }

  /** True when this response carries an error. */
  hasError(): boolean {
    return this.error !== undefined;
  }
}

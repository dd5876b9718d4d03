/**
 * `InferenceResponse`: what a model returns for one request.
 *
 * @module
 */
import type { Tensor } from "../tensor.js";
import { ModelError } from "./model-error.js";

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

  /** The output tensor with this name, or `undefined`. */
  outputTensorByName(name: string): Tensor | undefined {
    return this.outputTensors.find((t) => t.name === name);
  }

  /** True when this response carries an error. */
  hasError(): boolean {
    return this.error !== undefined;
  }
}

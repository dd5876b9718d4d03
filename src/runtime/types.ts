/**
 * The contract between the runtime and a model module.
 *
 * @module
 */
import type { InferenceRequest } from "./request.js";
import type { InferenceResponse } from "./response.js";

/**
 * What `initialize(args)` receives: the same keys, with the same string
 * values, that Triton's Python backend passes to `initialize(self, args)`.
 */
export interface InitializeArgs {
  /** The model's config as a JSON string (`JSON.parse` it to get a {@link ModelConfig}). */
  model_config: string;
  /** `"CPU"`, `"GPU"` or `"MODEL"` (the instance group's kind without `KIND_`). */
  model_instance_kind: "CPU" | "GPU" | "MODEL";
  /** The instance's name, as Triton names it: `<group>_<index>`, e.g. `add_sub_0_0` (group `add_sub_0`, its first instance). */
  model_instance_name: string;
  /** The device id of a GPU instance as a decimal string; `"0"` otherwise. */
  model_instance_device_id: string;
  /** The model's directory (`<repository>/<model>`), as in Triton. */
  model_repository: string;
  /** The version being loaded, as a decimal string. */
  model_version: string;
  /** The model's name. */
  model_name: string;
}

/**
 * A model: the default export of `model.ts` is a class whose instances have
 * these methods. One object is made per instance (see `instance_group`), and
 * each object runs one `execute()` at a time.
 *
 * @example
 * ```ts
 * import { Tensor, InferenceResponse, type InferenceRequest, type TritonModel } from "tensorbridge";
 * export default class AddSub implements TritonModel {
 *   execute(requests: InferenceRequest[]) {
 *     return requests.map((r) => {
 *       const a = r.getInputTensorByName("INPUT0")!.data() as Float32Array;
 *       const b = r.getInputTensorByName("INPUT1")!.data() as Float32Array;
 *       return new InferenceResponse({
 *         outputTensors: { OUTPUT0: Tensor.from(a.map((x, i) => x + b[i]!)), OUTPUT1: Tensor.from(a.map((x, i) => x - b[i]!)) },
 *       });
 *     });
 *   }
 * }
 * ```
 */
export interface TritonModel {
  /** Called once per instance before it serves; may be async. Throwing fails the load. */
  initialize?(args: InitializeArgs): void | Promise<void>;
  /**
   * Runs a batch of requests; may be async. Returns exactly one response per
   * request, in order. Throwing (or rejecting) fails every request of the
   * batch, and nothing else.
   *
   * A decoupled model (`model_transaction_policy { decoupled: true }`)
   * returns nothing instead, and answers each request through
   * `request.getResponseSender()`: zero or more responses, during or after
   * `execute()`, then exactly one final flag. The instance takes its next
   * batch as soon as `execute()` returns, whether or not its requests have
   * ended. A model that is not decoupled may also send a request's one
   * response through its sender (and return nothing).
   */
  execute(requests: InferenceRequest[]): InferenceResponse[] | void | Promise<InferenceResponse[] | void>;
  /** Called once per instance when the model is unloaded or the server stops. */
  finalize?(): void | Promise<void>;
}

/** The default export of a model module: a class with a no-argument constructor. */
export type TritonModelClass = new () => TritonModel;

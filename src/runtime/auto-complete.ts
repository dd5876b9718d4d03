/**
 * `auto_complete_config`, as Triton's Python backend has it: a model class
 * may have a static `autoCompleteConfig(config)` that fills in what
 * config.pbtxt leaves out (inputs, outputs, `max_batch_size`,
 * `dynamic_batching`, the transaction policy) through an
 * {@link AutoCompleteModelConfig} (`pb_utils.ModelConfig`, in camelCase),
 * and returns it. With auto-complete on (the default; the CLI's
 * `--disable-auto-complete-config` turns it off) a model needs no
 * config.pbtxt at all. The completed config is what the model loads with
 * and what `GET /v2/models/<m>/config` returns.
 *
 * The methods check what they are given as pb_utils does, with its words,
 * and throw a `ServingError` (`ERR_MODEL_LOAD`) that fails the load.
 *
 * @module
 */
import { modelConfigFromJson, type ModelConfig } from "./config.js";
import { ServingError, errorMessage } from "./errors.js";

/** An input as `addInput` takes it. */
export interface AutoCompleteInput {
  /** Input name. */
  name: string;
  /** Config data type, e.g. `TYPE_FP32`. */
  data_type: string;
  /** Dims without the batch dim. */
  dims: number[];
  /** The request may leave it out. */
  optional?: boolean;
}

/** An output as `addOutput` takes it. */
export interface AutoCompleteOutput {
  /** Output name. */
  name: string;
  /** Config data type, e.g. `TYPE_FP32`. */
  data_type: string;
  /** Dims without the batch dim. */
  dims: number[];
}

interface IoEntry {
  name: string;
  data_type: string;
  dims: number[];
  optional?: boolean;
}

/** The config as the methods see it. */
type ConfigDict = Record<string, unknown> & { name: string; max_batch_size: number; input: IoEntry[]; output: IoEntry[] };

const sameDims = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);
const pyList = (d: readonly number[]): string => `[${d.join(", ")}]`;

/**
 * The config a model's static `autoCompleteConfig(config)` receives: the
 * configuration so far (config.pbtxt's, or only the name when there is
 * none) and the methods that may add to it (`pb_utils.ModelConfig`).
 *
 * @example
 * ```ts
 * export default class AddSub {
 *   static autoCompleteConfig(config: AutoCompleteModelConfig) {
 *     config.addInput({ name: "INPUT0", data_type: "TYPE_FP32", dims: [4] });
 *     config.addOutput({ name: "OUTPUT0", data_type: "TYPE_FP32", dims: [4] });
 *     config.setMaxBatchSize(8);
 *     config.setDynamicBatching();
 *     return config;
 *   }
 *   execute(requests: InferenceRequest[]) { ... }
 * }
 * ```
 */
export class AutoCompleteModelConfig {
  readonly #config: ConfigDict;

  /** @param config - the configuration so far (copied; the copy is what the methods change). */
  constructor(config: ModelConfig) {
    this.#config = structuredClone(config) as unknown as ConfigDict;
  }

  /** The configuration, with what the methods added (Triton's JSON form; `as_dict()`). */
  asDict(): Record<string, unknown> {
    return this.#config;
  }

  /**
   * Sets `max_batch_size` (`set_max_batch_size`).
   *
   * @throws {ServingError} `ERR_MODEL_LOAD` when the configuration already
   * has a larger one.
   */
  setMaxBatchSize(maxBatchSize: number): void {
    const name = this.#config.name;
    if (!Number.isInteger(maxBatchSize) || maxBatchSize < 0) {
      throw refused(`max_batch_size in auto-complete-config function for model '${name}' must be an integer >= 0, got ${String(maxBatchSize)}`);
    }
    if (this.#config.max_batch_size > maxBatchSize) {
      throw refused(`configuration specified max_batch_size ${this.#config.max_batch_size}, but in auto-complete-config function for model '${name}' specified max_batch_size ${maxBatchSize}`);
    }
    this.#config.max_batch_size = maxBatchSize;
  }

  /**
   * Makes `dynamic_batching` the scheduler, when none is set (`set_dynamic_batching`).
   *
   * @throws {ServingError} `ERR_MODEL_LOAD` when the configuration sets
   * `sequence_batching` or `ensemble_scheduling`.
   */
  setDynamicBatching(): void {
    const found = "sequence_batching" in this.#config ? "sequence_batching" : "ensemble_scheduling" in this.#config ? "ensemble_scheduling" : undefined;
    if (found !== undefined) {
      throw refused(`Configuration specified scheduling_choice as '${found}', but auto-complete-config function for model '${this.#config.name}' tries to set scheduling_choice as 'dynamic_batching'`);
    }
    this.#config["dynamic_batching"] ??= {};
  }

  /**
   * Adds an input, or completes the one of that name (`add_input`).
   *
   * @throws {ServingError} `ERR_MODEL_LOAD` for a property other than
   * name, data_type, dims and optional, a missing one, or an input the
   * configuration already has with another data type, dims or optional.
   */
  addInput(input: AutoCompleteInput): void {
    this.#add("input", input as unknown as Record<string, unknown>, ["name", "data_type", "dims", "optional"]);
  }

  /**
   * Adds an output, or completes the one of that name (`add_output`).
   *
   * @throws {ServingError} `ERR_MODEL_LOAD` as {@link addInput} (properties: name, data_type, dims).
   */
  addOutput(output: AutoCompleteOutput): void {
    this.#add("output", output as unknown as Record<string, unknown>, ["name", "data_type", "dims"]);
  }

  /**
   * Sets `model_transaction_policy` (`set_model_transaction_policy`), e.g.
   * `{ decoupled: true }`.
   *
   * @throws {ServingError} `ERR_MODEL_LOAD` for a property other than
   * `decoupled`, or a configuration that says otherwise.
   */
  setModelTransactionPolicy(policy: { decoupled?: boolean }): void {
    const name = this.#config.name;
    for (const k of Object.keys(policy)) {
      if (k !== "decoupled") throw refused(`model transaction property in auto-complete-config function for model '${name}' contains property other than 'decoupled'.`);
    }
    const current = (this.#config["model_transaction_policy"] ??= {}) as { decoupled?: boolean };
    if (policy.decoupled !== undefined) {
      if (current.decoupled !== undefined && current.decoupled !== policy.decoupled) {
        throw refused(`trying to change decoupled property in auto-complete-config for model '${name}', which is already set to '${String(current.decoupled)}'.`);
      }
      current.decoupled = policy.decoupled;
    }
  }

  #add(kind: "input" | "output", io: Record<string, unknown>, valid: readonly string[]): void {
    const model = this.#config.name;
    if (typeof io !== "object" || io === null) throw refused(`${kind} in auto-complete-config function for model '${model}' must be an object`);
    for (const k of Object.keys(io)) {
      if (!valid.includes(k)) {
        const list = valid.map((v) => `'${v}'`);
        throw refused(`${kind} '${String(io["name"])}' in auto-complete-config function for model '${model}' contains property other than ${list.slice(0, -1).join(", ")} and ${list.at(-1)}.`);
      }
    }
    for (const k of ["name", "data_type", "dims"]) {
      if (io[k] !== undefined) continue;
      throw refused(
        k === "name"
          ? `${kind} in auto-complete-config function for model '${model}' is missing 'name' property.`
          : `${kind} '${String(io["name"])}' in auto-complete-config function for model '${model}' is missing '${k}' property.`,
      );
    }
    const dims = io["dims"];
    if (!Array.isArray(dims) || !dims.every((d) => Number.isInteger(d))) {
      throw refused(`${kind} '${String(io["name"])}' in auto-complete-config function for model '${model}': dims must be a list of integers`);
    }
    const entry = io as unknown as IoEntry;
    const list = this.#config[kind];
    const current = list.find((c) => c.name === entry.name);
    if (current === undefined) {
      list.push({ ...entry, dims: [...entry.dims] });
      return;
    }
    if (current.data_type !== "TYPE_INVALID" && current.data_type !== entry.data_type) {
      throw refused(`unable to load model '${model}', configuration expects datatype ${current.data_type} for ${kind} '${entry.name}', model provides ${entry.data_type}`);
    }
    if (current.dims.length > 0 && !sameDims(current.dims, entry.dims)) {
      throw refused(`model '${model}', tensor '${entry.name}': the model expects dims ${pyList(entry.dims)} but the model configuration specifies dims ${pyList(current.dims)}`);
    }
    if (kind === "input" && entry.optional !== undefined && current.optional !== undefined && current.optional !== entry.optional) {
      throw refused(`model '${model}', tensor '${entry.name}': the model expects optional ${String(entry.optional)} but the model configuration specifies optional ${String(current.optional)}`);
    }
    current.data_type = entry.data_type;
    current.dims = [...entry.dims];
    if (kind === "input" && entry.optional !== undefined) current.optional = entry.optional;
  }
}

function refused(message: string): ServingError {
  return new ServingError("ERR_MODEL_LOAD", message, { tritonCode: "INTERNAL" });
}

/** A model class, as far as auto-complete cares. */
type ModelClassLike = { autoCompleteConfig?: unknown } & (new () => unknown);

/**
 * Runs a model class's static `autoCompleteConfig(config)`, if it has one,
 * and returns the completed, checked config.
 *
 * @param config - the configuration so far (normalised).
 * @param cls - the model class.
 * @returns the completed config, or undefined when the class has no
 * `autoCompleteConfig` (the caller then checks the given config in full).
 * @throws {ServingError} `ERR_MODEL_LOAD` (Triton's INTERNAL) when the
 * method throws, or returns something other than its argument (or
 * nothing); `ERR_CONFIG_INVALID` when the completed config is not valid.
 */
export async function autoCompleteModelConfig(config: ModelConfig, cls: ModelClassLike): Promise<ModelConfig | undefined> {
  const fn = cls.autoCompleteConfig;
  if (typeof fn !== "function") return undefined;
  const arg = new AutoCompleteModelConfig(config);
  let result: unknown;
  try {
    result = await (fn as (c: AutoCompleteModelConfig) => unknown).call(cls, arg);
  } catch (e) {
    const what = e instanceof ServingError ? "" : `${e instanceof Error ? e.name : typeof e}: `;
    throw new ServingError("ERR_MODEL_LOAD", `auto-complete-config of model '${config.name}' failed: ${what}${errorMessage(e)}`, { cause: e, tritonCode: "INTERNAL" });
  }
  if (result !== undefined && result !== arg) {
    throw new ServingError(
      "ERR_MODEL_LOAD",
      `autoCompleteConfig() of model '${config.name}' must return the AutoCompleteModelConfig it was given (or nothing), got ${result === null ? "null" : typeof result}`,
      { tritonCode: "INTERNAL" },
    );
  }
  return modelConfigFromJson(arg.asDict(), { file: `auto-completed config of '${config.name}'`, modelName: config.name });
}

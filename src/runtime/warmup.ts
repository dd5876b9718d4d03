/**
 * `model_warmup`: the samples a config asks each instance to run before the
 * model is READY, as Triton runs them. A sample with `batch_size: N` is one
 * `execute()` of N requests (each with a batch dimension of 1 when the
 * model batches), run `count` times (at least once); each input is zeros
 * (`zero_data`), random bits (`random_data`) or the bytes of
 * `<model>/warmup/<input_data_file>`. A request that fails (execute()
 * throws, or an error response) fails the load with Triton's words:
 * `failed to run warmup sample '<name>': <error>; `. Warm-up requests are
 * not counted in the statistics or metrics (Triton's are not either).
 *
 * @module
 */
import { randomFillSync } from "node:crypto";
import { readFile } from "node:fs/promises";
import { join } from "node:path";

import { elementSize, type DType } from "../dtype.js";
import { Tensor } from "../tensor.js";
import { configTypeToDtype, type ModelConfig } from "./config.js";
import { ServingError, errorMessage } from "./errors.js";
import { ModelError } from "./model-error.js";
import { InferenceRequest, type RequestControl } from "./request.js";
import { InferenceResponse } from "./response.js";
import { InferenceResponseSender, type ResponseChannel } from "./response-sender.js";

/** One input of a warm-up sample, as config.pbtxt gives it. */
interface WarmupInputConfig {
  data_type: string;
  dims: number[];
  zero_data?: boolean;
  random_data?: boolean;
  input_data_file?: string;
}

/** One `model_warmup` entry, as config.pbtxt gives it. */
interface WarmupConfig {
  name: string;
  batch_size: number;
  inputs: Record<string, WarmupInputConfig>;
  count: number;
}

/** One input of a prepared sample: how to make its tensor for each request. */
interface PreparedInput {
  name: string;
  dtype: DType;
  shape: number[];
  /** The data of one request's tensor (numeric types), or the elements' content (BYTES). */
  make(): Tensor;
}

/** A warm-up sample, ready to run. */
export interface WarmupSample {
  /** The sample's name (`model_warmup[i].name`). */
  readonly name: string;
  /** Requests per execute() call. */
  readonly batchSize: number;
  /** How many times it runs. */
  readonly count: number;
  /** Makes one execute() call's requests (fresh tensors each time: a model may keep or dispose them). */
  requests(modelName: string, version: number, decoupled: boolean, outputs: string[]): WarmupRequests;
}

/** The requests of one warm-up execute() call, and how to learn how they went. */
export interface WarmupRequests {
  /** The requests, for execute(). */
  readonly requests: InferenceRequest[];
  /** After execute() returned `result`: the error messages of the requests that failed (empty when all succeeded). */
  outcome(result: unknown): Promise<string[]>;
}

const product = (dims: readonly number[]): number => dims.reduce((a, b) => a * b, 1);

function sampleError(sample: string, message: string): ServingError {
  return new ServingError("ERR_MODEL_LOAD", `warmup sample '${sample}': ${message}`);
}

/**
 * Checks a config's `model_warmup` and reads its data files.
 *
 * @param config - the normalised config.
 * @param modelDir - the model's directory (data files are in its `warmup/`).
 * @returns the samples, in config order.
 * @throws {ServingError} `ERR_MODEL_LOAD` for a sample without inputs, an
 * input the model does not have, a variable dimension, a missing data
 * choice, or a data file that is missing or too short.
 */
export async function prepareWarmup(config: ModelConfig, modelDir: string): Promise<WarmupSample[]> {
  const samples: WarmupSample[] = [];
  const batched = config.max_batch_size > 0;
  for (const raw of config.model_warmup as unknown as WarmupConfig[]) {
    const name = raw.name || `warmup_${samples.length}`;
    // A batch_size over max_batch_size (over 1 without batching) fails when the sample runs, in Triton's words (see warmupTooLarge).
    const batchSize = Math.max(1, raw.batch_size);
    const entries = Object.entries(raw.inputs ?? {});
    if (entries.length === 0) throw sampleError(name, "it has no inputs");
    const inputs: PreparedInput[] = [];
    for (const [inputName, spec] of entries) {
      if (!config.input.some((i) => i.name === inputName)) {
        throw sampleError(name, `input '${inputName}' is not an input of model '${config.name}' (inputs: ${config.input.map((i) => i.name).join(", ") || "none"})`);
      }
      const dtype = configTypeToDtype(spec.data_type);
      if (dtype === undefined) throw sampleError(name, `input '${inputName}' must set data_type`);
      if (spec.dims.some((d) => d < 0)) throw sampleError(name, `input '${inputName}': every dimension must be given (no -1), got [${spec.dims.join(",")}]`);
      const shape = batched ? [1, ...spec.dims] : [...spec.dims];
      const n = product(shape);
      let make: () => Tensor;
      if (spec.input_data_file !== undefined && spec.input_data_file !== "") {
        const file = join(modelDir, "warmup", spec.input_data_file);
        let bytes: Uint8Array;
        try {
          bytes = new Uint8Array(await readFile(file));
        } catch (e) {
          throw sampleError(name, `cannot read input_data_file of input '${inputName}' (${file}): ${errorMessage(e)}`);
        }
        if (dtype === "BYTES") {
          // Each element is the file's content.
          make = () => Tensor.fromBytes(Array.from({ length: n }, () => bytes), { shape, name: inputName });
        } else {
          const need = n * elementSize(dtype);
          if (bytes.byteLength < need) {
            throw sampleError(name, `input '${inputName}' needs ${need} bytes, but ${file} has ${bytes.byteLength}`);
          }
          make = () => Tensor.from(bytes.slice(0, need), { dtype, shape, name: inputName });
        }
      } else if (spec.zero_data === true || spec.random_data === true) {
        const random = spec.random_data === true;
        make = () => {
          if (dtype === "BYTES") return Tensor.fromBytes(Array.from({ length: n }, () => new Uint8Array(0)), { shape, name: inputName });
          const data = new Uint8Array(n * elementSize(dtype));
          if (random) {
            randomFillSync(data);
            // A BOOL element is 0 or 1.
            if (dtype === "BOOL") for (let i = 0; i < data.length; i++) data[i]! &= 1;
          }
          return Tensor.from(data, { dtype, shape, name: inputName });
        };
      } else {
        throw sampleError(name, `input '${inputName}' must set zero_data, random_data or input_data_file`);
      }
      inputs.push({ name: inputName, dtype, shape, make });
    }
    const count = Math.max(1, raw.count);
    samples.push({
      name,
      batchSize,
      count,
      requests: (modelName, version, decoupled, outputs) => warmupRequests(inputs, batchSize, modelName, version, decoupled, outputs),
    });
  }
  return samples;
}

/** A warm-up request's sender: keeps its responses' errors, and says when its final flag came. */
class WarmupChannel implements ResponseChannel, RequestControl {
  closed = false;
  sent = 0;
  readonly errors: string[] = [];
  #done: (() => void) | undefined;
  readonly finished: Promise<void>;
  /** It has a sender (its answer comes through it). */
  opened = false;

  constructor(
    readonly requestId: string,
    readonly decoupled: boolean,
  ) {
    this.finished = new Promise((r) => (this.#done = r));
  }

  isCancelled(): boolean {
    return false;
  }

  onCancel(): () => void {
    return () => {};
  }

  responseSender(): InferenceResponseSender {
    this.opened = true;
    return new InferenceResponseSender(this);
  }

  deliver(response: InferenceResponse | undefined, final: boolean): void {
    if (response?.error) this.errors.push(response.error.message);
    if (final) this.#done!();
  }

  dropped(): void {
    this.errors.push(`the response sender of warm-up request '${this.requestId}' was dropped before its final flag`);
    this.#done!();
  }
}

function warmupRequests(inputs: PreparedInput[], batchSize: number, modelName: string, version: number, decoupled: boolean, outputs: string[]): WarmupRequests {
  const channels: WarmupChannel[] = [];
  const requests: InferenceRequest[] = [];
  for (let i = 0; i < batchSize; i++) {
    const ch = new WarmupChannel("", decoupled);
    channels.push(ch);
    const r = new InferenceRequest(
      { inputs: inputs.map((x) => x.make()), requestedOutputNames: outputs, requestId: "", parameters: {}, modelName, modelVersion: version },
      ch,
    );
    // As for a client's request: a decoupled request's sender exists from the start.
    if (decoupled) r.getResponseSender();
    requests.push(r);
  }
  return {
    requests,
    async outcome(result) {
      const errors: string[] = [];
      const list = Array.isArray(result) ? (result as unknown[]) : undefined;
      for (let i = 0; i < channels.length; i++) {
        const ch = channels[i]!;
        const r = list?.[i];
        if (ch.opened && (r === undefined || r === null)) {
          await ch.finished;
          errors.push(...ch.errors);
        } else if (r instanceof InferenceResponse || (typeof r === "object" && r !== null && "outputTensors" in r)) {
          const err = (r as InferenceResponse).error;
          if (err) errors.push(ModelError.from(err).message);
        } else {
          errors.push(`model '${modelName}' execute() must return one InferenceResponse per request (${channels.length}) for a warm-up sample`);
          break;
        }
      }
      return errors;
    },
  };
}

/**
 * The per-request errors of a sample whose batch is larger than the
 * instance takes (Triton checks each execution's batch before it runs:
 * `batch size 2 for 'm_0', max allowed is 0`), or undefined when it fits.
 */
export function warmupTooLarge(sample: WarmupSample, instance: string, maxBatchSize: number): string[] | undefined {
  if (sample.batchSize <= Math.max(1, maxBatchSize)) return undefined;
  return Array.from({ length: sample.batchSize }, () => `batch size ${sample.batchSize} for '${instance}', max allowed is ${maxBatchSize}`);
}

/**
 * The load error of a failed sample, in Triton's words (each request's
 * error followed by `; `).
 */
export function warmupFailed(sample: string, errors: string[]): ServingError {
  return new ServingError("ERR_MODEL_LOAD", `failed to run warmup sample '${sample}': ${errors.map((e) => `${e}; `).join("")}`);
}

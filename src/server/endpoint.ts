/**
 * The inference endpoint: what every transport (the HTTP/1.1 front,
 * node:http, the fastify routes, gRPC) serves, without any of their framing.
 * It resolves models, refuses what a protocol can't carry (a decoupled model
 * on a unary call), submits requests to the runtime for one response or a
 * stream of them, and answers the health, metadata, configuration,
 * statistics, repository and shared-memory questions of KServe v2 / Triton.
 *
 * Errors are the runtime's (`ServingError`, `ModelError`), which carry
 * Triton's error codes; each transport maps them to its own statuses in a
 * table of its own (`http-status.ts`, `grpc/status.ts`). No transport is
 * imported here, and no transport imports another.
 *
 * @module
 */
import { configTypeToDtype, type ModelConfig } from "../runtime/config.js";
import { MODEL_CONTROL_REFUSAL, ServingError } from "../runtime/errors.js";
import { ModelError } from "../runtime/model-error.js";
import { FILE_PARAMETER_PREFIX, fileParameterContent } from "../runtime/model-files.js";
import { pollRefusal, type ModelIndexEntry, type ModelRegistry } from "../runtime/model-registry.js";
import type { InferCallbacks, InferInput, ModelVersion, RuntimeLogger, StreamCallbacks } from "../runtime/model-version.js";
import type { ModelStatistics } from "../runtime/stats.js";
import type { SharedMemoryAccess } from "./codec.js";
import { CudaSharedMemory, combinedSharedMemory } from "./cuda-shm.js";
import type { SystemSharedMemory } from "./shm.js";

/**
 * The protocol extensions this server always implements (`GET /v2`,
 * `ServerMetadata`); `cuda_shared_memory` is added when CUDA is available
 * (see {@link extensions}).
 */
export const EXTENSIONS: readonly string[] = Object.freeze([
  "binary_tensor_data",
  "model_repository",
  "model_configuration",
  "statistics",
  "parameters",
  "system_shared_memory",
]);

/**
 * The extensions the server lists: {@link EXTENSIONS}, plus
 * `cuda_shared_memory` when CUDA can be used on this machine.
 * @param cudaAvailable - whether CUDA is available.
 */
export function extensions(cudaAvailable: boolean): readonly string[] {
  return cudaAvailable ? [...EXTENSIONS, "cuda_shared_memory"] : EXTENSIONS;
}

/** The transports the endpoint refuses decoupled models on, with Triton's words. */
export type UnaryTransport = "HTTP" | "gRPC";

/** One input or output as model metadata lists it. */
export interface TensorMetadata {
  /** Tensor name. */
  name: string;
  /** Triton datatype (`FP32`, …). */
  datatype: string;
  /** Shape, with -1 for a variable dim and the batch dim first for batching models. */
  shape: number[];
}

/** A model's metadata (`GET /v2/models/{m}`, `ModelMetadata`). */
export interface ModelMetadata {
  /** Model name. */
  name: string;
  /** The versions that are ready, as strings. */
  versions: string[];
  /** The config's platform or backend. */
  platform: string;
  /** Inputs. */
  inputs: TensorMetadata[];
  /** Outputs. */
  outputs: TensorMetadata[];
}

/** What the endpoint needs from the server. */
export interface EndpointContext {
  /** Server name for the server metadata. */
  name: string;
  /** Server version for the server metadata. */
  version: string;
  /** The models. */
  registry: ModelRegistry;
  /** System shared-memory regions. */
  systemShm: SystemSharedMemory;
  /** CUDA shared-memory regions. */
  cudaShm: CudaSharedMemory;
  /** True once shutdown began. */
  closing: () => boolean;
  /** Triton's `--strict-readiness`. */
  strictReadiness: boolean;
  /** Where the endpoint logs. */
  log: RuntimeLogger;
}

/** The inference endpoint every transport serves: see the module docs. */
export class InferenceEndpoint {
  /** Server name. */
  readonly name: string;
  /** Server version. */
  readonly version: string;
  /** The models. */
  readonly registry: ModelRegistry;
  /** System shared-memory regions. */
  readonly systemShm: SystemSharedMemory;
  /** CUDA shared-memory regions. */
  readonly cudaShm: CudaSharedMemory;
  /** Both kinds of regions, as the codecs read and write tensors in them. */
  readonly shm: SharedMemoryAccess;
  /** Where the endpoint and its transports log. */
  readonly log: RuntimeLogger;
  /** True once shutdown began. */
  readonly closing: () => boolean;
  readonly #strictReadiness: boolean;

  /** @param ctx - the server's state. */
  constructor(ctx: EndpointContext) {
    this.name = ctx.name;
    this.version = ctx.version;
    this.registry = ctx.registry;
    this.systemShm = ctx.systemShm;
    this.cudaShm = ctx.cudaShm;
    this.shm = combinedSharedMemory(ctx.systemShm, ctx.cudaShm);
    this.log = ctx.log;
    this.closing = ctx.closing;
    this.#strictReadiness = ctx.strictReadiness;
  }

  // --- health and metadata ---------------------------------------------------

  /**
   * Whether the server is ready, and why not: shutting down, or (with
   * strict readiness) a model that is not loaded.
   */
  readiness():
    | {
        /** Ready. */
        ready: true;
      }
    | {
        /** Not ready. */
        ready: false;
        /** Why not, for the response body. */
        reason: string;
      } {
    if (this.closing()) return { ready: false, reason: "the server is shutting down" };
    if (!this.registry.allReady(this.#strictReadiness)) return { ready: false, reason: "the server is not ready: not every model is loaded" };
    return { ready: true };
  }

  /** Server name, version and extensions. */
  serverMetadata(): {
    /** Server name. */
    name: string;
    /** Server version. */
    version: string;
    /** Protocol extensions served. */
    extensions: readonly string[];
  } {
    return { name: this.name, version: this.version, extensions: extensions(CudaSharedMemory.available()) };
  }

  /**
   * Whether a model version is ready: false, not an error, for an unknown
   * or unloaded model or version, as Triton answers.
   */
  modelReady(model: string, version?: string): boolean {
    try {
      return this.registry.get(model, version).ready;
    } catch (e) {
      if (e instanceof ServingError && (e.code === "ERR_MODEL_NOT_FOUND" || e.code === "ERR_MODEL_UNAVAILABLE")) return false;
      throw e;
    }
  }

  /**
   * A model's metadata: its ready versions, platform, inputs and outputs.
   * @throws {ServingError} as {@link InferenceEndpoint.model}.
   */
  modelMetadata(model: string, version?: string): ModelMetadata {
    const v = this.registry.get(model, version);
    const versions = this.registry
      .versionsOf(model)
      .filter((x) => x.ready)
      .map((x) => String(x.version));
    const batch = v.config.max_batch_size > 0;
    const io = (t: { name: string; data_type: string; dims: number[] }): TensorMetadata => ({
      name: t.name,
      datatype: configTypeToDtype(t.data_type) ?? "INVALID",
      shape: batch ? [-1, ...t.dims] : [...t.dims],
    });
    return {
      name: v.name,
      versions,
      platform: v.config.platform || v.config.backend || "tensorbridge",
      inputs: v.config.input.map(io),
      outputs: v.config.output.map(io),
    };
  }

  /**
   * A model version's configuration.
   * @throws {ServingError} as {@link InferenceEndpoint.model}.
   */
  modelConfig(model: string, version?: string): ModelConfig {
    return this.registry.get(model, version).config;
  }

  /**
   * Statistics: of every ready version of every model (no `model`), of
   * every ready version of one model, or of one version.
   * @throws {ServingError} `ERR_MODEL_NOT_FOUND` with Triton's own words
   * for the statistics call (`requested model '…' is not available`) and
   * its code, INVALID_ARG, for an unknown or unloaded model or version.
   */
  modelStatistics(model?: string, version?: string): ModelStatistics[] {
    if (model === undefined || model === "") return this.registry.readyVersions().map((v) => v.stats.snapshot());
    try {
      if (version === undefined || version === "") {
        this.registry.get(model); // existence / readiness check
        return this.registry
          .versionsOf(model)
          .filter((v) => v.ready)
          .map((v) => v.stats.snapshot());
      }
      return [this.registry.get(model, version).stats.snapshot()];
    } catch (e) {
      if (e instanceof ServingError && (e.code === "ERR_MODEL_NOT_FOUND" || e.code === "ERR_MODEL_UNAVAILABLE")) {
        const what = version ? `requested model version is not available for model '${model}'` : `requested model '${model}' is not available`;
        throw new ServingError("ERR_MODEL_NOT_FOUND", what, { tritonCode: "INVALID_ARG", cause: e });
      }
      throw e;
    }
  }

  // --- model repository ------------------------------------------------------

  /** The repository's models and their states. */
  repositoryIndex(ready = false): Promise<ModelIndexEntry[]> {
    return this.registry.index({ ready });
  }

  /**
   * Loads (or reloads) a model, optionally with a config given as JSON and
   * with the model's files (Triton's model-repository extension): every
   * transport's load request comes here.
   *
   * @param parameters - the load request's parameters: `config` (a JSON
   * string), and `file:<path>` parameters whose values are the files'
   * contents, as bytes (gRPC's `bytes_param`) or base64 strings (HTTP). With
   * files the model loads from a temporary directory made of them (see
   * `runtime/model-files.ts`) and `config` is required. Each transport
   * checks the parameters' kinds and keys first, as Triton's frontend for
   * it does. A model that serves and whose directory did not change is not
   * loaded again by a load without `config` (see the registry's `load`).
   * @throws {ServingError} `ERR_MODEL_CONTROL` when the model-control mode
   * forbids it; refusals before anything loads, INTERNAL "failed to load
   * '…', failed to poll from model repository" as Triton's, then why:
   * `ERR_MODEL_FILES` for files that do not make a model directory,
   * `ERR_MODEL_NOT_FOUND` for a model the repository does not have,
   * `ERR_CONFIG_*` for a `config` that is empty, not JSON or not a valid
   * config (or such a config.pbtxt); `ERR_MODEL_FILES` (INVALID_ARG) for a
   * file value that is not base64; `ERR_CONFIG_*`, `ERR_MODEL_LOAD` when the
   * model fails to load.
   */
  async loadModel(model: string, parameters: Readonly<Record<string, unknown>> = {}): Promise<void> {
    this.#controlAllowed();
    let files: Record<string, Uint8Array> | undefined;
    for (const [k, v] of Object.entries(parameters)) {
      if (!k.startsWith(FILE_PARAMETER_PREFIX)) continue;
      files ??= {};
      files[k] = fileParameterContent(model, k, v);
    }
    const config = parameters["config"];
    // Sent empty, over HTTP or gRPC, it is a config Triton fails to parse (the registry reads "" as none: a model's load_model(name, config="")).
    if (config === "" && files === undefined) {
      throw pollRefusal(model, new ServingError("ERR_CONFIG_INVALID", `the config given for '${model}' is empty (send the model's config as JSON, or leave 'config' out)`));
    }
    await this.registry.load(model, { ...(config === undefined ? {} : { config }), ...(files === undefined ? {} : { files }) });
  }

  /**
   * Unloads a model (waits for its requests, runs `finalize()`); a model
   * that is not loaded, or that the repository does not have, is unloaded
   * already: that succeeds, as in Triton 2.51.
   * @throws {ServingError} `ERR_MODEL_CONTROL` when the model-control mode
   * forbids it.
   */
  async unloadModel(model: string): Promise<void> {
    this.#controlAllowed();
    return this.registry.unload(model);
  }

  /** Refuses a load or unload as Triton does in its NONE (and POLL) model-control modes. */
  #controlAllowed(): void {
    if (!this.registry.modelControl) throw new ServingError("ERR_MODEL_CONTROL", MODEL_CONTROL_REFUSAL);
  }

  // --- inference -------------------------------------------------------------

  /**
   * The model version a request is for.
   * @throws {ServingError} `ERR_MODEL_NOT_FOUND` (Triton's `Request for
   * unknown model: '…' is not found`), `ERR_MODEL_UNAVAILABLE`.
   */
  model(model: string, version?: string): ModelVersion {
    return this.registry.get(model, version);
  }

  /**
   * Submits a request that gets exactly one response (HTTP `/infer`, gRPC
   * `ModelInfer`). A decoupled model is refused with Triton's error for
   * that transport (UNSUPPORTED).
   */
  infer(mv: ModelVersion, input: InferInput, done: InferCallbacks, transport: UnaryTransport): void {
    if (mv.decoupled) {
      done.reject(new ModelError(decoupledRefusal(transport), "UNSUPPORTED"));
      return;
    }
    mv.submit(input, done);
  }

  /**
   * Submits a request whose responses are streamed (gRPC
   * `ModelStreamInfer`, HTTP `generate_stream`): every response of a
   * decoupled model, or the one response of any other.
   */
  stream(mv: ModelVersion, input: InferInput, sink: StreamCallbacks): void {
    mv.submitStream(input, sink);
  }
}

/** Triton 2.51's words for a decoupled model on a unary call. */
export function decoupledRefusal(transport: UnaryTransport): string {
  return transport === "HTTP"
    ? "HTTP end point doesn't support models with decoupled transaction policy"
    : "ModelInfer RPC doesn't support models with decoupled transaction policy";
}

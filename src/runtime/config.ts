/**
 * Model configuration: the `ModelConfig` types (Triton's JSON form, snake_case
 * as Triton prints it and hands it to models), parsing of config.pbtxt,
 * normalisation (Triton's defaults) and validation.
 *
 * @module
 */
import type { DType } from "../dtype.js";
import { MODEL_CONFIG_SCHEMA } from "./config-schema.js";
import { ConfigError, ServingError } from "./errors.js";
import { checkJsonAgainstSchema, fillDefaults, pbMessageToJson } from "./pb-json.js";
import { parsePbtxt, type PbField, type PbPosition } from "./pbtxt.js";

/** Triton's data type names as written in config.pbtxt. */
export type TritonDataType =
  | "TYPE_INVALID"
  | "TYPE_BOOL"
  | "TYPE_UINT8"
  | "TYPE_UINT16"
  | "TYPE_UINT32"
  | "TYPE_UINT64"
  | "TYPE_INT8"
  | "TYPE_INT16"
  | "TYPE_INT32"
  | "TYPE_INT64"
  | "TYPE_FP16"
  | "TYPE_FP32"
  | "TYPE_FP64"
  | "TYPE_STRING"
  | "TYPE_BF16";

const CONFIG_TO_DTYPE: Readonly<Record<Exclude<TritonDataType, "TYPE_INVALID">, DType>> = Object.freeze({
  TYPE_BOOL: "BOOL",
  TYPE_UINT8: "UINT8",
  TYPE_UINT16: "UINT16",
  TYPE_UINT32: "UINT32",
  TYPE_UINT64: "UINT64",
  TYPE_INT8: "INT8",
  TYPE_INT16: "INT16",
  TYPE_INT32: "INT32",
  TYPE_INT64: "INT64",
  TYPE_FP16: "FP16",
  TYPE_FP32: "FP32",
  TYPE_FP64: "FP64",
  TYPE_STRING: "BYTES",
  TYPE_BF16: "BF16",
});

/**
 * Maps a config data type (`TYPE_FP32`) to the wire/tensor dtype (`FP32`).
 * `TYPE_STRING` maps to `BYTES`.
 *
 * @returns the dtype, or `undefined` for `TYPE_INVALID` or an unknown name.
 */
export function configTypeToDtype(t: string): DType | undefined {
  return Object.hasOwn(CONFIG_TO_DTYPE, t) ? CONFIG_TO_DTYPE[t as keyof typeof CONFIG_TO_DTYPE] : undefined;
}

/** Maps a wire/tensor dtype (`FP32`) to the config data type (`TYPE_FP32`); `BYTES` → `TYPE_STRING`. */
export function dtypeToConfigType(d: DType): TritonDataType {
  for (const [k, v] of Object.entries(CONFIG_TO_DTYPE)) if (v === d) return k as TritonDataType;
  return "TYPE_INVALID";
}

/** `reshape` of an input or output. */
export interface ModelTensorReshape {
  /** The shape the model sees. */
  shape: number[];
}

/** One `input` of a model config. */
export interface ModelInputConfig {
  /** Input name. */
  name: string;
  /** Config data type, e.g. `TYPE_FP32`. */
  data_type: TritonDataType;
  /** Layout hint. */
  format: "FORMAT_NONE" | "FORMAT_NHWC" | "FORMAT_NCHW";
  /** Dims without the batch dim; `-1` is any size. */
  dims: number[];
  /** Optional reshape. */
  reshape?: ModelTensorReshape;
  /** Shape tensor flag. */
  is_shape_tensor: boolean;
  /** Ragged batching flag. */
  allow_ragged_batch: boolean;
  /** True when a request may leave this input out. */
  optional: boolean;
  /** Non-linear format flag. */
  is_non_linear_format_io: boolean;
}

/** One `output` of a model config. */
export interface ModelOutputConfig {
  /** Output name. */
  name: string;
  /** Config data type, e.g. `TYPE_FP32`. */
  data_type: TritonDataType;
  /** Dims without the batch dim; `-1` is any size. */
  dims: number[];
  /** Optional reshape. */
  reshape?: ModelTensorReshape;
  /** Label file for classification. */
  label_filename: string;
  /** Shape tensor flag. */
  is_shape_tensor: boolean;
  /** Non-linear format flag. */
  is_non_linear_format_io: boolean;
}

/** Kind of an instance group. */
export type InstanceGroupKind = "KIND_AUTO" | "KIND_GPU" | "KIND_CPU" | "KIND_MODEL";

/** One `instance_group` of a model config (after normalisation). */
export interface ModelInstanceGroupConfig {
  /** Group name; defaults to `<model>_<index>`. */
  name: string;
  /** Kind; `KIND_AUTO` is normalised to `KIND_CPU` (or `KIND_GPU` when `gpus` is set). */
  kind: InstanceGroupKind;
  /** Instances in the group (per GPU for KIND_GPU); default 1. */
  count: number;
  /** GPU ids for KIND_GPU. */
  gpus: number[];
  /** Rate limiter (accepted, not enforced). */
  rate_limiter?: {
    /** Resources an instance needs to run. */
    resources: {
      /** Resource name. */
      name: string;
      /** Whether the resource is shared by every device. */
      global: boolean;
      /** Units of the resource needed. */
      count: number;
    }[];
    /** Weight among instances waiting for resources. */
    priority: number;
  };
  /** Secondary devices (accepted, unused). */
  secondary_devices: {
    /** Device kind, e.g. `KIND_NVDLA`. */
    kind: string;
    /** Device id. */
    device_id: number;
  }[];
  /** Profiles (accepted, unused). */
  profile: string[];
  /** Passive instances receive no requests. */
  passive: boolean;
  /** Host policy (accepted, unused). */
  host_policy: string;
}

/** `version_policy`: exactly one member is set. */
export interface ModelVersionPolicy {
  /** Serve the newest `num_versions` versions. */
  latest?: {
    /** How many of the newest versions to serve. */
    num_versions: number;
  };
  /** Serve every version. */
  all?: Record<string, never>;
  /** Serve the listed versions. */
  specific?: {
    /** The version numbers to serve. */
    versions: number[];
  };
}

/** `dynamic_batching`. */
export interface ModelDynamicBatching {
  /** Preferred batch sizes. */
  preferred_batch_size: number[];
  /** How long the batcher may wait to gather a batch. */
  max_queue_delay_microseconds: number;
  /** Keep responses in request order. */
  preserve_ordering: boolean;
  /** Priority levels (accepted, unused). */
  priority_levels: number;
  /** Default priority level (accepted, unused). */
  default_priority_level: number;
  /** Queue policy. */
  default_queue_policy?: {
    /** What happens to a request that waits past its timeout: rejected, or kept with lower precedence. */
    timeout_action: "REJECT" | "DELAY";
    /** Queue timeout of a request that sets none; 0: none. */
    default_timeout_microseconds: number;
    /** Whether a request may set its own timeout. */
    allow_timeout_override: boolean;
    /** Requests the queue holds at most; 0: no limit. */
    max_queue_size: number;
  };
  /** Per-priority queue policies. */
  priority_queue_policy: Record<string, unknown>;
}

/** One entry of `parameters`. */
export interface ModelParameter {
  /** The value. */
  string_value: string;
}

/**
 * A model's configuration in Triton's JSON form: what `GET
 * /v2/models/{m}/config` returns and what `initialize(args)` receives as
 * `JSON.parse(args.model_config)`. Field names are snake_case as in
 * model_config.proto; every scalar, list and map field is present (defaults
 * filled in), optional messages only when set.
 */
export interface ModelConfig {
  /** Model name (= the directory name). */
  name: string;
  /** Platform (empty for backend models). */
  platform: string;
  /** Backend; `tensorbridge` (or empty) selects this runtime. */
  backend: string;
  /** Runtime (unused). */
  runtime: string;
  /** Which versions are served. */
  version_policy: ModelVersionPolicy;
  /** Largest batch; 0 means the model does not batch (no batch dim). */
  max_batch_size: number;
  /** Inputs. */
  input: ModelInputConfig[];
  /** Outputs. */
  output: ModelOutputConfig[];
  /** Batch inputs (accepted, unused). */
  batch_input: Record<string, unknown>[];
  /** Batch outputs (accepted, unused). */
  batch_output: Record<string, unknown>[];
  /** Optimization policy (accepted, unused). */
  optimization?: Record<string, unknown>;
  /** Dynamic batching: requests are grouped into one `execute()` call. */
  dynamic_batching?: ModelDynamicBatching;
  /** Sequence batching (not supported: a load error). */
  sequence_batching?: Record<string, unknown>;
  /** Ensemble scheduling (not supported: a load error). */
  ensemble_scheduling?: Record<string, unknown>;
  /** Instance groups (at least one after normalisation). */
  instance_group: ModelInstanceGroupConfig[];
  /** Model file name in the version directory (default `model.ts`/`.js`/`.mjs`). */
  default_model_filename: string;
  /** Per-compute-capability file names (unused). */
  cc_model_filenames: Record<string, string>;
  /** Metric tags (unused). */
  metric_tags: Record<string, string>;
  /** Model parameters, e.g. `FORCE_CPU_ONLY_INPUT_TENSORS`. */
  parameters: Record<string, ModelParameter>;
  /** Warm-up (accepted, unused). */
  model_warmup: Record<string, unknown>[];
  /** Op libraries (unused). */
  model_operations?: {
    /** Custom operation libraries to load. */
    op_library_filename: string[];
  };
  /**
   * Transaction policy: `decoupled: true` makes a model that answers each
   * request through its response sender, with zero or more responses.
   */
  model_transaction_policy?: {
    /** Whether the model is decoupled. */
    decoupled: boolean;
  };
  /** Repository agents (unused). */
  model_repository_agents?: Record<string, unknown>;
  /** Response cache (accepted, unused). */
  response_cache?: {
    /** Whether responses are cached. */
    enable: boolean;
  };
  /** Model metrics (unused). */
  model_metrics?: Record<string, unknown>;
}

/** Options of {@link parseModelConfig}. */
export interface ParseModelConfigOptions {
  /** File name for error messages (default `config.pbtxt`). */
  file?: string;
  /**
   * The model's directory name. When given, an empty `name` is filled with it
   * and a different `name` is an error, as in Triton.
   */
  modelName?: string;
}

/** Name of the parameter that controls where inputs reach `execute()`. */
export const FORCE_CPU_ONLY_INPUT_TENSORS = "FORCE_CPU_ONLY_INPUT_TENSORS";

/** Name of the parameter that runs each model instance in a worker thread of its own ("yes"; default "no"). */
export const TENSORBRIDGE_INSTANCE_THREADS = "TENSORBRIDGE_INSTANCE_THREADS";

/** Backends this runtime serves (the empty string is a config without `backend`). */
export const SUPPORTED_BACKENDS: readonly string[] = Object.freeze(["", "tensorbridge"]);

interface Positions {
  top: Map<string, PbPosition>;
  field(path: string[]): PbPosition;
}

function positionsOf(fields: PbField[]): Positions {
  const top = new Map<string, PbPosition>();
  for (const f of fields) if (!top.has(f.name)) top.set(f.name, f.pos);
  return {
    top,
    field(path) {
      // path: ["input", "2", "dims"]: find the nth occurrence of the repeated field
      const [name, idx, sub] = path;
      const occ: PbField[] = fields.filter((f) => f.name === name);
      if (idx === undefined) return occ[0]?.pos ?? { line: 1, column: 1, offset: 0 };
      let n = Number(idx);
      for (const f of occ) {
        if (n < f.values.length) {
          const v = f.values[n]!;
          if (sub && v.kind === "message") {
            const sf = v.fields.find((x) => x.name === sub);
            if (sf) return sf.pos;
          }
          return v.pos;
        }
        n -= f.values.length;
      }
      return occ[0]?.pos ?? { line: 1, column: 1, offset: 0 };
    },
  };
}

/**
 * Parses and validates a config.pbtxt.
 *
 * @param text - the file's content.
 * @param options - file name and model (directory) name.
 * @returns the normalised {@link ModelConfig}.
 * @throws {ConfigError} `ERR_CONFIG_SYNTAX` for text-format syntax errors and
 * `ERR_CONFIG_INVALID` for schema or semantic errors, both with
 * `file:line:column`.
 * @throws {ServingError} `ERR_MODEL_LOAD` for a bad
 * `FORCE_CPU_ONLY_INPUT_TENSORS` or `TENSORBRIDGE_INSTANCE_THREADS` value
 * (the message names parameter and value).
 * @example
 * ```ts
 * const cfg = parseModelConfig(fs.readFileSync(p, "utf8"), { file: p, modelName: "add_sub" });
 * cfg.input[0].dims; // [4]
 * ```
 */
export function parseModelConfig(text: string, options: ParseModelConfigOptions = {}): ModelConfig {
  const file = options.file ?? "config.pbtxt";
  const tree = parsePbtxt(text, { file });
  const json = pbMessageToJson(tree, MODEL_CONFIG_SCHEMA, file);
  const pos = positionsOf(tree.fields);
  const cfg = fillDefaults(json, MODEL_CONFIG_SCHEMA) as unknown as ModelConfig;
  return normalizeModelConfig(cfg, { file, modelName: options.modelName, pos });
}

/**
 * Normalises and validates a config given as JSON (e.g. a `config` override
 * in a load request). Missing fields get their defaults.
 *
 * @param config - the config object (Triton JSON form).
 * @param options - file name (for messages) and model name.
 * @returns the normalised config (a new object).
 * @throws {ServingError} `ERR_CONFIG_INVALID` / `ERR_MODEL_LOAD` as
 * {@link parseModelConfig}.
 */
export function modelConfigFromJson(config: unknown, options: ParseModelConfigOptions = {}): ModelConfig {
  const file = options.file ?? "config";
  const copy = checkJsonAgainstSchema(config, MODEL_CONFIG_SCHEMA, file);
  const cfg = fillDefaults(copy, MODEL_CONFIG_SCHEMA) as unknown as ModelConfig;
  return normalizeModelConfig(cfg, { file, modelName: options.modelName });
}

function normalizeModelConfig(
  cfg: ModelConfig,
  ctx: { file: string; modelName?: string | undefined; pos?: Positions },
): ModelConfig {
  const { file } = ctx;
  const fail: (path: string[], message: string) => never = (path, message) => {
    if (ctx.pos) {
      const p = ctx.pos.field(path);
      throw new ConfigError("ERR_CONFIG_INVALID", file, p.line, p.column, message);
    }
    throw new ServingError("ERR_CONFIG_INVALID", `${file}: ${message}`);
  };

  // name
  if (ctx.modelName !== undefined) {
    if (cfg.name === "") cfg.name = ctx.modelName;
    else if (cfg.name !== ctx.modelName) {
      fail(["name"], `model name "${cfg.name}" does not match its directory "${ctx.modelName}"`);
    }
  }
  if (cfg.name === "") fail(["name"], "the model config has no name");

  // backend / platform
  if (!SUPPORTED_BACKENDS.includes(cfg.backend)) {
    fail(["backend"], `backend "${cfg.backend}" is not served by tensorbridge (use backend: "tensorbridge" or leave it out)`);
  }
  if (cfg.platform !== "" && cfg.platform !== "tensorbridge") {
    fail(["platform"], `platform "${cfg.platform}" is not served by tensorbridge`);
  }

  if (!Number.isInteger(cfg.max_batch_size) || cfg.max_batch_size < 0) {
    fail(["max_batch_size"], `max_batch_size must be >= 0, got ${cfg.max_batch_size}`);
  }

  // version policy
  const vp = cfg.version_policy;
  const vpKeys = vp ? Object.keys(vp) : [];
  if (!vp || vpKeys.length === 0) cfg.version_policy = { latest: { num_versions: 1 } };
  else if (vpKeys.length > 1) fail(["version_policy"], "version_policy must set exactly one of latest, all, specific");
  else if (vp.latest) {
    vp.latest.num_versions ??= 0;
    if (vp.latest.num_versions < 1) fail(["version_policy"], "version_policy.latest.num_versions must be >= 1");
  } else if (vp.specific) {
    vp.specific.versions ??= [];
    if (vp.specific.versions.length === 0) fail(["version_policy"], "version_policy.specific must list at least one version");
    if (vp.specific.versions.some((v) => !Number.isInteger(v) || v < 1)) {
      fail(["version_policy"], "version_policy.specific.versions must be integers >= 1");
    }
  }

  // inputs / outputs
  const checkIo = (kind: "input" | "output", list: (ModelInputConfig | ModelOutputConfig)[]) => {
    const names = new Set<string>();
    list.forEach((io, i) => {
      const at = [kind, String(i)];
      if (!io.name) fail(at, `${kind} ${i} has no name`);
      if (names.has(io.name)) fail(at, `${kind} name "${io.name}" is used more than once`);
      names.add(io.name);
      if (!configTypeToDtype(io.data_type)) {
        fail([...at, "data_type"], `${kind} "${io.name}" must set data_type (TYPE_FP32, TYPE_INT64, TYPE_STRING, ...)`);
      }
      if (io.dims.length === 0 && cfg.max_batch_size === 0 && !io.reshape) {
        fail([...at, "dims"], `${kind} "${io.name}" must specify dims (max_batch_size is 0, so there is no batch dim)`);
      }
      for (const d of io.dims) {
        if (!Number.isInteger(d) || (d < 1 && d !== -1)) {
          fail([...at, "dims"], `${kind} "${io.name}": dims must be integers >= 1, or -1 for a variable size; got ${d}`);
        }
      }
      if (io.reshape) {
        for (const d of io.reshape.shape ?? []) {
          if (!Number.isInteger(d) || (d < 0 && d !== -1)) {
            fail([...at, "reshape"], `${kind} "${io.name}": reshape.shape must be integers >= 0 or -1; got ${d}`);
          }
        }
      }
    });
  };
  checkIo("input", cfg.input);
  checkIo("output", cfg.output);

  // scheduling
  if (cfg.sequence_batching) fail(["sequence_batching"], "sequence_batching is not supported by the tensorbridge runtime");
  if (cfg.ensemble_scheduling) fail(["ensemble_scheduling"], "ensemble_scheduling is not supported by the tensorbridge runtime");
  if (cfg.dynamic_batching) {
    for (const p of cfg.dynamic_batching.preferred_batch_size) {
      if (p < 1 || (cfg.max_batch_size > 0 && p > cfg.max_batch_size)) {
        fail(["dynamic_batching"], `dynamic_batching.preferred_batch_size ${p} must be between 1 and max_batch_size (${cfg.max_batch_size})`);
      }
    }
  }

  // instance groups
  if (cfg.instance_group.length === 0) {
    cfg.instance_group.push(fillDefaults({}, (MODEL_CONFIG_SCHEMA["instance_group"]!.type as { message: never }).message) as never);
  }
  cfg.instance_group.forEach((g, i) => {
    const at = ["instance_group", String(i)];
    if (!g.name) g.name = `${cfg.name}_${i}`;
    if (g.count === 0) g.count = 1;
    if (!Number.isInteger(g.count) || g.count < 1) fail([...at, "count"], `instance_group "${g.name}": count must be >= 1, got ${g.count}`);
    if (g.gpus.some((d) => !Number.isInteger(d) || d < 0)) {
      fail([...at, "gpus"], `instance_group "${g.name}": gpus must be device ids >= 0`);
    }
    if (g.kind === "KIND_AUTO") g.kind = g.gpus.length > 0 ? "KIND_GPU" : "KIND_CPU";
    if (g.kind !== "KIND_GPU" && g.gpus.length > 0) {
      fail([...at, "gpus"], `instance_group "${g.name}" has kind ${g.kind} but lists gpus`);
    }
    if (g.kind === "KIND_GPU" && g.gpus.length === 0) g.gpus = [0];
  });

  // parameters: the runtime's own take exactly "yes" or "no"
  for (const key of [FORCE_CPU_ONLY_INPUT_TENSORS, TENSORBRIDGE_INSTANCE_THREADS]) {
    const v = cfg.parameters[key];
    if (v === undefined || v.string_value === "yes" || v.string_value === "no") continue;
    const where = ctx.pos ? (() => {
      const p = ctx.pos!.field(["parameters"]);
      return `${file}:${p.line}:${p.column}: `;
    })() : `${file}: `;
    throw new ServingError("ERR_MODEL_LOAD", `${where}parameter ${key} must be "yes" or "no", got ${JSON.stringify(v.string_value)}`);
  }
  // keep model_config.proto's field order (defaults filled above were appended)
  const ordered: Record<string, unknown> = {};
  for (const k of Object.keys(MODEL_CONFIG_SCHEMA)) if (Object.hasOwn(cfg, k)) ordered[k] = cfg[k as keyof ModelConfig];
  return ordered as unknown as ModelConfig;
}

/**
 * Whether inputs are moved to the CPU before `execute()` (the
 * `FORCE_CPU_ONLY_INPUT_TENSORS` parameter; default "yes").
 */
export function forceCpuOnlyInputs(config: ModelConfig): boolean {
  return (config.parameters[FORCE_CPU_ONLY_INPUT_TENSORS]?.string_value ?? "yes") === "yes";
}

/**
 * Whether each instance runs in a worker thread of its own (the
 * `TENSORBRIDGE_INSTANCE_THREADS` parameter; default "no").
 */
export function instanceThreads(config: ModelConfig): boolean {
  return config.parameters[TENSORBRIDGE_INSTANCE_THREADS]?.string_value === "yes";
}

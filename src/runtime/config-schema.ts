/**
 * The schema of Triton's `inference.ModelConfig` message (model_config.proto
 * of triton-inference-server/common, 2.5x), as data, so that config.pbtxt is
 * checked field by field the way Triton's protobuf parser checks it: an
 * unknown field or a value of the wrong type is an error with its position.
 *
 * @module
 */

/** Scalar protobuf types used by ModelConfig. */
export type PbScalarType = "string" | "bool" | "int32" | "uint32" | "int64" | "uint64" | "float" | "double";

/** The type of one field. */
export type PbFieldType =
  | PbScalarType
  | { enum: readonly string[] }
  | { message: PbMessageSchema }
  | { map: { key: PbScalarType; value: PbScalarType | { message: PbMessageSchema } } };

/** One field of a message schema. */
export interface PbFieldSchema {
  /** The field's type. */
  type: PbFieldType;
  /** `repeated` field. */
  repeated?: boolean;
  /** Name of the `oneof` the field belongs to. */
  oneof?: string;
}

/** A message schema: field name → field schema. */
export type PbMessageSchema = { readonly [field: string]: PbFieldSchema };

const DATA_TYPE = {
  enum: [
    "TYPE_INVALID",
    "TYPE_BOOL",
    "TYPE_UINT8",
    "TYPE_UINT16",
    "TYPE_UINT32",
    "TYPE_UINT64",
    "TYPE_INT8",
    "TYPE_INT16",
    "TYPE_INT32",
    "TYPE_INT64",
    "TYPE_FP16",
    "TYPE_FP32",
    "TYPE_FP64",
    "TYPE_STRING",
    "TYPE_BF16",
  ],
} as const;

const f = (type: PbFieldType, extra: Omit<PbFieldSchema, "type"> = {}): PbFieldSchema => ({ type, ...extra });
const rep = (type: PbFieldType, extra: Omit<PbFieldSchema, "type"> = {}): PbFieldSchema => ({ type, repeated: true, ...extra });
const msg = (schema: PbMessageSchema): PbFieldType => ({ message: schema });

const RateLimiter: PbMessageSchema = {
  resources: rep(msg({ name: f("string"), global: f("bool"), count: f("uint32") })),
  priority: f("uint32"),
};

const InstanceGroup: PbMessageSchema = {
  name: f("string"),
  kind: f({ enum: ["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"] }),
  count: f("int32"),
  rate_limiter: f(msg(RateLimiter)),
  gpus: rep("int32"),
  secondary_devices: rep(msg({ kind: f({ enum: ["KIND_NVDLA"] }), device_id: f("int64") })),
  profile: rep("string"),
  passive: f("bool"),
  host_policy: f("string"),
};

const Reshape: PbMessageSchema = { shape: rep("int64") };

const Input: PbMessageSchema = {
  name: f("string"),
  data_type: f(DATA_TYPE),
  format: f({ enum: ["FORMAT_NONE", "FORMAT_NHWC", "FORMAT_NCHW"] }),
  dims: rep("int64"),
  reshape: f(msg(Reshape)),
  is_shape_tensor: f("bool"),
  allow_ragged_batch: f("bool"),
  optional: f("bool"),
  is_non_linear_format_io: f("bool"),
};

const Output: PbMessageSchema = {
  name: f("string"),
  data_type: f(DATA_TYPE),
  dims: rep("int64"),
  reshape: f(msg(Reshape)),
  label_filename: f("string"),
  is_shape_tensor: f("bool"),
  is_non_linear_format_io: f("bool"),
};

const BatchInput: PbMessageSchema = {
  kind: f({
    enum: [
      "BATCH_ELEMENT_COUNT",
      "BATCH_ACCUMULATED_ELEMENT_COUNT",
      "BATCH_ACCUMULATED_ELEMENT_COUNT_WITH_ZERO",
      "BATCH_MAX_ELEMENT_COUNT_AS_SHAPE",
      "BATCH_ITEM_SHAPE",
      "BATCH_ITEM_SHAPE_FLATTEN",
    ],
  }),
  target_name: rep("string"),
  data_type: f(DATA_TYPE),
  source_input: rep("string"),
};

const BatchOutput: PbMessageSchema = {
  target_name: rep("string"),
  kind: f({ enum: ["BATCH_SCATTER_WITH_INPUT_SHAPE"] }),
  source_input: rep("string"),
};

const VersionPolicy: PbMessageSchema = {
  latest: f(msg({ num_versions: f("uint32") }), { oneof: "policy_choice" }),
  all: f(msg({}), { oneof: "policy_choice" }),
  specific: f(msg({ versions: rep("int64") }), { oneof: "policy_choice" }),
};

const Shape: PbMessageSchema = { dim: rep("int64") };
const GraphSpec: PbMessageSchema = {
  batch_size: f("int32"),
  input: f({ map: { key: "string", value: msg(Shape) as { message: PbMessageSchema } } }),
  graph_lower_bound: f(
    msg({ batch_size: f("int32"), input: f({ map: { key: "string", value: msg(Shape) as { message: PbMessageSchema } } }) }),
  ),
};
const Accelerator: PbMessageSchema = { name: f("string"), parameters: f({ map: { key: "string", value: "string" } }) };

const Optimization: PbMessageSchema = {
  graph: f(msg({ level: f("int32") })),
  priority: f({ enum: ["PRIORITY_DEFAULT", "PRIORITY_MAX", "PRIORITY_MIN"] }),
  cuda: f(
    msg({
      graphs: f("bool"),
      busy_wait_events: f("bool"),
      graph_spec: rep(msg(GraphSpec)),
      output_copy_stream: f("bool"),
    }),
  ),
  execution_accelerators: f(
    msg({ gpu_execution_accelerator: rep(msg(Accelerator)), cpu_execution_accelerator: rep(msg(Accelerator)) }),
  ),
  input_pinned_memory: f(msg({ enable: f("bool") })),
  output_pinned_memory: f(msg({ enable: f("bool") })),
  gather_kernel_buffer_threshold: f("uint32"),
  eager_batching: f("bool"),
};

const QueuePolicy: PbMessageSchema = {
  timeout_action: f({ enum: ["REJECT", "DELAY"] }),
  default_timeout_microseconds: f("uint64"),
  allow_timeout_override: f("bool"),
  max_queue_size: f("uint32"),
};

const DynamicBatching: PbMessageSchema = {
  preferred_batch_size: rep("int32"),
  max_queue_delay_microseconds: f("uint64"),
  preserve_ordering: f("bool"),
  priority_levels: f("uint64"),
  default_priority_level: f("uint64"),
  default_queue_policy: f(msg(QueuePolicy)),
  priority_queue_policy: f({ map: { key: "uint64", value: msg(QueuePolicy) as { message: PbMessageSchema } } }),
};

const Control: PbMessageSchema = {
  kind: f({ enum: ["CONTROL_SEQUENCE_START", "CONTROL_SEQUENCE_READY", "CONTROL_SEQUENCE_END", "CONTROL_SEQUENCE_CORRID"] }),
  int32_false_true: rep("int32"),
  fp32_false_true: rep("float"),
  bool_false_true: rep("bool"),
  data_type: f(DATA_TYPE),
};
const InitialState: PbMessageSchema = {
  data_type: f(DATA_TYPE),
  dims: rep("int64"),
  zero_data: f("bool", { oneof: "state_data" }),
  data_file: f("string", { oneof: "state_data" }),
  name: f("string"),
};
const SequenceBatching: PbMessageSchema = {
  direct: f(msg({ max_queue_delay_microseconds: f("uint64"), minimum_slot_utilization: f("float") }), { oneof: "strategy_choice" }),
  oldest: f(
    msg({
      max_candidate_sequences: f("int32"),
      preferred_batch_size: rep("int32"),
      max_queue_delay_microseconds: f("uint64"),
      preserve_ordering: f("bool"),
    }),
    { oneof: "strategy_choice" },
  ),
  max_sequence_idle_microseconds: f("uint64"),
  control_input: rep(msg({ name: f("string"), control: rep(msg(Control)) })),
  state: rep(
    msg({
      input_name: f("string"),
      output_name: f("string"),
      data_type: f(DATA_TYPE),
      dims: rep("int64"),
      initial_state: rep(msg(InitialState)),
      use_same_buffer_for_input_output: f("bool"),
      use_growable_memory: f("bool"),
    }),
  ),
  iterative_sequence: f("bool"),
};

const Ensembling: PbMessageSchema = {
  step: rep(
    msg({
      model_name: f("string"),
      model_version: f("int64"),
      input_map: f({ map: { key: "string", value: "string" } }),
      output_map: f({ map: { key: "string", value: "string" } }),
      model_namespace: f("string"),
    }),
  ),
  max_inflight_requests: f("uint32"),
};

const WarmupInput: PbMessageSchema = {
  data_type: f(DATA_TYPE),
  dims: rep("int64"),
  zero_data: f("bool", { oneof: "input_data_type" }),
  random_data: f("bool", { oneof: "input_data_type" }),
  input_data_file: f("string", { oneof: "input_data_type" }),
};

const Warmup: PbMessageSchema = {
  name: f("string"),
  batch_size: f("uint32"),
  inputs: f({ map: { key: "string", value: msg(WarmupInput) as { message: PbMessageSchema } } }),
  count: f("uint32"),
};

const Metrics: PbMessageSchema = {
  metric_control: rep(
    msg({
      metric_identifier: f(msg({ family: f("string") })),
      histogram_options: f(msg({ buckets: rep("double") }), { oneof: "metric_options" }),
    }),
  ),
};

/** Schema of `inference.ModelConfig`. */
export const MODEL_CONFIG_SCHEMA: PbMessageSchema = {
  name: f("string"),
  platform: f("string"),
  backend: f("string"),
  runtime: f("string"),
  version_policy: f(msg(VersionPolicy)),
  max_batch_size: f("int32"),
  input: rep(msg(Input)),
  output: rep(msg(Output)),
  batch_input: rep(msg(BatchInput)),
  batch_output: rep(msg(BatchOutput)),
  optimization: f(msg(Optimization)),
  dynamic_batching: f(msg(DynamicBatching), { oneof: "scheduling_choice" }),
  sequence_batching: f(msg(SequenceBatching), { oneof: "scheduling_choice" }),
  ensemble_scheduling: f(msg(Ensembling), { oneof: "scheduling_choice" }),
  instance_group: rep(msg(InstanceGroup)),
  default_model_filename: f("string"),
  cc_model_filenames: f({ map: { key: "string", value: "string" } }),
  metric_tags: f({ map: { key: "string", value: "string" } }),
  parameters: f({ map: { key: "string", value: msg({ string_value: f("string") }) as { message: PbMessageSchema } } }),
  model_warmup: rep(msg(Warmup)),
  model_operations: f(msg({ op_library_filename: rep("string") })),
  model_transaction_policy: f(msg({ decoupled: f("bool") })),
  model_repository_agents: f(
    msg({ agents: rep(msg({ name: f("string"), parameters: f({ map: { key: "string", value: "string" } }) })) }),
  ),
  response_cache: f(msg({ enable: f("bool") })),
  model_metrics: f(msg(Metrics)),
};

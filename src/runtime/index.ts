/**
 * The tensorbridge model runtime: Triton-style model repositories of
 * TypeScript models (the counterpart of Triton's Python backend).
 *
 * @module
 */
export { isModelReady, loadModel, unloadModel, type LoadModelOptions, type ResponseIterator } from "./bls.js";
export type { ExecOptions } from "./request.js";
export { InferenceRequest, type InferenceRequestInit, type RequestParameter } from "./request.js";
export { InferenceResponse, type InferenceResponseInit } from "./response.js";
export { InferenceResponseSender, type SendOptions } from "./response-sender.js";
export { ModelError, MODEL_ERROR_CODES, type ModelErrorCode } from "./model-error.js";
export type { InitializeArgs, TritonModel, TritonModelClass } from "./types.js";
export { DEFAULT_MODEL_HOST, Logger, currentModel, runInModel, type LogLevel, type ModelContext, type ModelHost } from "./model-context.js";
export { Metric, MetricFamily, type MetricFamilyInit, type MetricInit, type MetricKind } from "./metric-family.js";
export { CustomMetrics, type MetricFamilyData, type MetricSeries } from "./custom-metrics.js";
export {
  EXECUTE_TIMEOUT_MS,
  FORCE_CPU_ONLY_INPUT_TENSORS,
  SUPPORTED_BACKENDS,
  TENSORBRIDGE_INSTANCE_THREADS,
  configTypeToDtype,
  dtypeToConfigType,
  executeTimeoutMs,
  forceCpuOnlyInputs,
  ignoredConfigFields,
  instanceThreads,
  modelConfigFromJson,
  parseModelConfig,
  type IgnoredConfigField,
  type InstanceGroupKind,
  type ModelConfig,
  type ModelDynamicBatching,
  type ModelInputConfig,
  type ModelInstanceGroupConfig,
  type ModelOutputConfig,
  type ModelParameter,
  type ModelTensorReshape,
  type ModelVersionPolicy,
  type ParseModelConfigOptions,
  type TritonDataType,
} from "./config.js";
export { AutoCompleteModelConfig, autoCompleteModelConfig, type AutoCompleteInput, type AutoCompleteOutput } from "./auto-complete.js";
export { localGpus, planInstances, type GpuInventory, type InstancePlan } from "./instance-plan.js";
export { prepareWarmup, type WarmupSample } from "./warmup.js";
export { parsePbtxt, type ParsePbtxtOptions, type PbField, type PbMessage, type PbPosition, type PbScalar, type PbValue } from "./pbtxt.js";
export { ConfigError, ServingError, SERVING_ERROR_TRITON_CODE, type ServingErrorCode, type ServingErrorOptions } from "./errors.js";
export {
  MODEL_FILE_NAMES,
  findModelFile,
  findRepositoryModel,
  readModelConfig,
  scanRepository,
  selectVersions,
  type RepositoryModel,
} from "./repository.js";
export { defaultEntryUrl, importModelClass, installModelModuleHook } from "./loader.js";
export {
  ModelVersion,
  type InferCallbacks,
  type InferInput,
  type InferOutput,
  type ModelVersionOptions,
  type ModelVersionState,
  type RuntimeLogger,
  type StreamCallbacks,
} from "./model-version.js";
export { ModelRegistry, type LoadOptions, type ModelIndexEntry, type ModelRegistryOptions, type ModelState } from "./model-registry.js";
export {
  StatsRecorder,
  type BatchStats,
  type FailureReason,
  type InferenceObserver,
  type InferenceStats,
  type ModelStatistics,
  type ResponseOutcome,
  type ResponseStats,
  type StatDuration,
} from "./stats.js";

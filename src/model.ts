/**
 * What a model sees as `tensorbridge`: the tensor API and the model-author
 * API, and nothing of the server. The runtime's module hook maps a model's
 * `import … from "tensorbridge"` here (the counterpart of Triton's
 * `triton_python_backend_utils`), so that loading a model, in the serving
 * thread or in an instance thread, never loads the HTTP or gRPC servers,
 * fastify or gRPC. The classes are the serving process's own (the same
 * modules `tensorbridge`'s root exports), so `instanceof` holds across both.
 *
 * @example
 * import { InferenceResponse, Tensor, type InferenceRequest, type TritonModel } from "tensorbridge";
 * export default class Identity implements TritonModel {
 *   execute(requests: InferenceRequest[]) {
 *     return requests.map((r) => new InferenceResponse({ outputTensors: { OUTPUT0: r.getInputTensorByName("INPUT0")! } }));
 *   }
 * }
 * @module
 */

export { DLPackCapsule, type FromAddressOptions } from "./capsule.js";
export { type CudaMemoryKind, cuda } from "./cuda.js";
export { DTYPES, type DType, type TypedArray, elementSize, isDType } from "./dtype.js";
export { ErrorCode, TensorBridgeError } from "./errors.js";
export {
  type AllocOptions,
  type Device,
  type DlpackSource,
  Tensor,
  type TensorOptions,
  type ToDlpackOptions,
  type TransferredTensor,
} from "./tensor.js";
export { isModelReady, loadModel, unloadModel, type LoadModelOptions, type ResponseIterator } from "./runtime/bls.js";
export type { ExecOptions } from "./runtime/request.js";
export { InferenceRequest, type InferenceRequestInit, type RequestParameter } from "./runtime/request.js";
export { InferenceResponse, type InferenceResponseInit } from "./runtime/response.js";
export { InferenceResponseSender, type SendOptions } from "./runtime/response-sender.js";
export { ModelError, MODEL_ERROR_CODES, type ModelErrorCode } from "./runtime/model-error.js";
export type { InitializeArgs, TritonModel, TritonModelClass } from "./runtime/types.js";
export { Logger, type LogLevel } from "./runtime/model-context.js";
export { AutoCompleteModelConfig, type AutoCompleteInput, type AutoCompleteOutput } from "./runtime/auto-complete.js";
export { Metric, MetricFamily, type MetricFamilyInit, type MetricInit, type MetricKind } from "./runtime/metric-family.js";
export type {
  InstanceGroupKind,
  ModelConfig,
  ModelDynamicBatching,
  ModelInputConfig,
  ModelInstanceGroupConfig,
  ModelOutputConfig,
  ModelParameter,
  TritonDataType,
} from "./runtime/config.js";

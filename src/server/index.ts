/**
 * The tensorbridge inference server: KServe v2 / Triton HTTP protocol over a
 * model repository of TypeScript models.
 *
 * @module
 */
export {
  DEFAULT_BODY_LIMIT,
  DEFAULT_EXIT_TIMEOUT_MS,
  DEFAULT_GRPC_IDLE_TIMEOUT_MS,
  DEFAULT_HEADERS_TIMEOUT_MS,
  DEFAULT_MAX_CONNECTIONS,
  DEFAULT_REQUEST_TIMEOUT_MS,
  InferenceServer,
  serverLimits,
  startServer,
  type ServerAddress,
  type ServerLimits,
  type ServerOptions,
} from "./server.js";
export { type ConnectionLimitCounters } from "./connection-limit.js";
export type { HttpFrontCounters } from "./http-front.js";
export { EXTENSIONS, extensions, InferenceEndpoint, decoupledRefusal, type EndpointContext, type ModelMetadata, type TensorMetadata, type UnaryTransport } from "./endpoint.js";
export { HTTP_STATUS, httpError } from "./http-status.js";
export { ServerMetrics } from "./metrics.js";
export { SystemSharedMemory, type SystemShmRegionStatus } from "./shm.js";
export { CUDA_IPC_HANDLE_BYTES, CudaSharedMemory, type CudaShmRegionStatus, parseCudaRegisterBody } from "./cuda-shm.js";
export {
  decodeInferRequest,
  encodeInferResponse,
  parseBytesElements,
  serializeBytesElements,
  type DecodedRequest,
  type EncodedResponse,
  type OutputSpec,
  type SharedMemoryAccess,
} from "./codec.js";
export { bf16BitsToFloat, floatToBf16Bits, floatToHalfBits, halfBitsToFloat } from "./half.js";

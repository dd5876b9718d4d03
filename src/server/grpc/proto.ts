/**
 * The `inference.GRPCInferenceService` definition, from Triton's own protos
 * (`proto/triton/grpc_service.proto` and `model_config.proto`, pinned; see
 * proto/triton/README.md), loaded with `@grpc/proto-loader`.
 *
 * Messages keep their proto field names (`keepCase`), 64-bit integers are
 * JS numbers (`longs: Number`: every count, size and dim this server deals
 * in is below 2^53), enums are their names (`"TYPE_FP32"`), `bytes` are
 * Buffers, requests come with defaults filled in and with the name of each
 * oneof's member that was set (`parameter_choice`). `ModelInfer` and
 * `ModelStreamInfer` use the hand-written codec of `wire.ts` instead: their
 * handlers get a {@link WireInferRequest} and answer with encoded Buffers.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

import type { ServiceDefinition } from "@grpc/grpc-js";
import { loadSync } from "@grpc/proto-loader";

import { decodeModelInferRequest, type WireInferRequest } from "./wire.js";

/**
 * The directory with Triton's protos: `proto/triton` at the package root
 * (this file is `src/server/grpc/proto.ts` in the repository and
 * `dist/server/grpc/proto.js` in the package, both three levels down).
 */
export function protoDir(): string {
  const dir = fileURLToPath(new URL("../../../proto/triton/", import.meta.url));
  if (!existsSync(`${dir}grpc_service.proto`)) {
    throw new Error(`Triton's gRPC protos are missing: expected ${dir}grpc_service.proto (the package's "proto" directory)`);
  }
  return dir;
}

let service: ServiceDefinition | undefined;

const identity = (b: Buffer): Buffer => b;

/**
 * The service definition (loaded once per process): proto-loader's, with
 * `ModelInfer` and `ModelStreamInfer` decoding requests to
 * {@link WireInferRequest} and taking already-encoded responses.
 */
export function grpcInferenceService(): ServiceDefinition {
  if (service !== undefined) return service;
  const dir = protoDir();
  const pkg = loadSync(`${dir}grpc_service.proto`, {
    keepCase: true,
    longs: Number,
    enums: String,
    bytes: Buffer,
    defaults: true,
    oneofs: true,
    includeDirs: [dir],
  });
  const def = pkg["inference.GRPCInferenceService"] as ServiceDefinition | undefined;
  if (def === undefined) throw new Error(`${dir}grpc_service.proto does not define inference.GRPCInferenceService`);
  const infer = (m: string) => ({
    ...def[m]!,
    requestDeserialize: decodeModelInferRequest as (b: Buffer) => WireInferRequest,
    responseSerialize: identity,
  });
  service = { ...def, ModelInfer: infer("ModelInfer"), ModelStreamInfer: infer("ModelStreamInfer") };
  return service;
}

/** `grpc.health.v1.HealthCheckResponse.ServingStatus`. */
export const HEALTH_SERVING = 1;
/** `grpc.health.v1.HealthCheckResponse.ServingStatus`. */
export const HEALTH_NOT_SERVING = 2;

/**
 * `grpc.health.v1.Health/Check`, which Triton registers beside its own
 * service (gRPC's standard health check, as Kubernetes gRPC probes call it).
 * Its two one-field messages are coded here rather than from gRPC's
 * health.proto: the request (`string service = 1`) is not read (Triton
 * answers for the server whatever service is named), and the response is
 * `ServingStatus status = 1`.
 */
export const HEALTH_SERVICE: ServiceDefinition = {
  Check: {
    path: "/grpc.health.v1.Health/Check",
    requestStream: false,
    responseStream: false,
    requestSerialize: (): Buffer => Buffer.alloc(0),
    // an object, not null: grpc-js takes a falsy request for a missing one
    requestDeserialize: (): object => ({}),
    responseSerialize: (status: number): Buffer => (status === 0 ? Buffer.alloc(0) : Buffer.from([0x08, status])),
    responseDeserialize: (b: Buffer): number => (b.length >= 2 && b[0] === 0x08 ? b[1]! : 0),
  },
};

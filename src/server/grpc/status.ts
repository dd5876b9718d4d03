/**
 * The gRPC transport's one table from errors to gRPC statuses, as Triton's
 * `GrpcStatusUtil::Create` maps its error codes (server `src/grpc/grpc_utils.cc`):
 * INTERNAL→INTERNAL, NOT_FOUND→NOT_FOUND, INVALID_ARG→INVALID_ARGUMENT,
 * UNAVAILABLE→UNAVAILABLE, UNSUPPORTED→UNIMPLEMENTED,
 * ALREADY_EXISTS→ALREADY_EXISTS, CANCELLED→CANCELLED, UNKNOWN→UNKNOWN.
 *
 * @module
 */
import { status as Status } from "@grpc/grpc-js";

import { ServingError, errorMessage } from "../../runtime/errors.js";
import { ModelError, type ModelErrorCode } from "../../runtime/model-error.js";

/** gRPC status code for each Triton error code. */
export const GRPC_STATUS: Readonly<Record<ModelErrorCode, Status>> = Object.freeze({
  UNKNOWN: Status.UNKNOWN,
  INTERNAL: Status.INTERNAL,
  NOT_FOUND: Status.NOT_FOUND,
  INVALID_ARG: Status.INVALID_ARGUMENT,
  UNAVAILABLE: Status.UNAVAILABLE,
  UNSUPPORTED: Status.UNIMPLEMENTED,
  ALREADY_EXISTS: Status.ALREADY_EXISTS,
  CANCELLED: Status.CANCELLED,
});

/** A gRPC status: what a unary call ends with, or a stream message's `error_message`. */
export interface GrpcStatus {
  /** The gRPC status code. */
  code: Status;
  /** The message. */
  details: string;
}

/**
 * The Triton error code of anything a handler or an inference threw: a
 * runtime error's, a model's, or INTERNAL for anything else (a bug).
 */
export function tritonCodeOf(err: unknown): ModelErrorCode {
  if (err instanceof ServingError) return err.tritonCode;
  if (err instanceof ModelError) return err.code;
  return ModelError.from(err).code;
}

/** The gRPC status of anything a handler or an inference threw. */
export function grpcStatusOf(err: unknown): GrpcStatus {
  return { code: GRPC_STATUS[tritonCodeOf(err)], details: errorMessage(err) };
}

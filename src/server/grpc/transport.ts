/**
 * The gRPC transport (KServe v2 / Triton `inference.GRPCInferenceService`)
 * over the inference endpoint. PLACEHOLDER: being written.
 *
 * @module
 */
import type { InferenceEndpoint } from "../endpoint.js";

/** Options of {@link GrpcTransport.start}. */
export interface GrpcTransportOptions {
  /** Interface to bind. */
  host: string;
  /** Port; 0 picks a free one. */
  port: number;
}

/** The gRPC service over one endpoint. */
export class GrpcTransport {
  private constructor(
    readonly endpoint: InferenceEndpoint,
    /** The bound port. */
    readonly port: number,
  ) {}

  /** Binds and starts serving. */
  static async start(endpoint: InferenceEndpoint, opts: GrpcTransportOptions): Promise<GrpcTransport> {
    return new GrpcTransport(endpoint, opts.port);
  }

  /** Stops serving: in-flight calls finish, streams are ended. */
  async close(): Promise<void> {}
}

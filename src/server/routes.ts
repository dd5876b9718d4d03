/**
 * The KServe v2 / Triton HTTP endpoints.
 *
 * @module
 */
// Fastify awaits async handlers and routes their rejections to the error
// handler; oxlint's rule is written for Express.
/* eslint-disable oxc/no-async-endpoint-handlers */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import { ServingError, errorMessage } from "../runtime/errors.js";
import { ModelError } from "../runtime/model-error.js";
import type { ModelRegistry } from "../runtime/model-registry.js";
import type { ModelVersion } from "../runtime/model-version.js";
import { configTypeToDtype } from "../runtime/config.js";
import { inferBody, inferResponseHeaders, writeInferResponse } from "./fast-infer.js";
import type { ServerMetrics } from "./metrics.js";
import { CudaSharedMemory, combinedSharedMemory } from "./cuda-shm.js";
import type { SystemSharedMemory } from "./shm.js";

/**
 * The protocol extensions this server always implements (`GET /v2`);
 * `cuda_shared_memory` is added when CUDA is available (see {@link extensions}).
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
 * The extensions `GET /v2` lists: {@link EXTENSIONS}, plus `cuda_shared_memory`
 * when CUDA can be used on this machine.
 * @param cudaAvailable - whether CUDA is available.
 */
export function extensions(cudaAvailable: boolean): readonly string[] {
  return cudaAvailable ? [...EXTENSIONS, "cuda_shared_memory"] : EXTENSIONS;
}

/** What the routes need from the server. */
export interface RouteContext {
  /** Server name for `GET /v2`. */
  name: string;
  /** Server version for `GET /v2`. */
  version: string;
  /** The models. */
  registry: ModelRegistry;
  /** Prometheus metrics. */
  metrics: ServerMetrics;
  /** System shared memory. */
  shm: SystemSharedMemory;
  /** CUDA shared memory. */
  cudaShm: CudaSharedMemory;
  /** True once shutdown began. */
  closing: () => boolean;
  /** Triton's `--strict-readiness`. */
  strictReadiness: boolean;
  /** Binary responses at least this large are written in chunks instead of joined. */
  chunkThreshold: number;
}

type Params = { model?: string; version?: string; region?: string };

/** Parses an optional JSON body of a non-inference endpoint. */
function jsonBody(req: FastifyRequest): Record<string, unknown> {
  const body = req.body as Buffer | undefined;
  if (!body || body.length === 0) return {};
  let v: unknown;
  try {
    v = JSON.parse(body.toString("utf8"));
  } catch (e) {
    throw new ServingError("ERR_INVALID_REQUEST", `failed to parse the request JSON: ${errorMessage(e)}`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) {
    throw new ServingError("ERR_INVALID_REQUEST", "the request body must be a JSON object");
  }
  return v as Record<string, unknown>;
}

/** HTTP status and message of anything thrown by a handler. */
export function errorStatus(err: unknown): { status: number; message: string } {
  if (err instanceof ServingError) return { status: err.status, message: err.message };
  if (err instanceof ModelError) return { status: err.status, message: err.message };
  const e = err as { statusCode?: unknown; code?: unknown; message?: unknown };
  if (typeof e?.statusCode === "number" && e.statusCode >= 400 && e.statusCode < 600) {
    return { status: e.statusCode, message: typeof e.message === "string" ? e.message : String(err) };
  }
  return { status: 500, message: errorMessage(err) };
}

function modelMetadata(v: ModelVersion, versions: string[]): unknown {
  const batch = v.config.max_batch_size > 0;
  const io = (t: { name: string; data_type: string; dims: number[] }) => ({
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

function notReady(reply: FastifyReply, message: string): FastifyReply {
  return reply.code(400).send({ error: message });
}

/**
 * Registers every endpoint on `app`.
 *
 * @param app - the fastify instance (its content parsers must hand bodies over as Buffers).
 * @param ctx - the server's state.
 */
export function registerRoutes(app: FastifyInstance, ctx: RouteContext): void {
  const { registry, cudaShm } = ctx;
  const shm = combinedSharedMemory(ctx.shm, cudaShm);


  // --- health and metadata -------------------------------------------------
  app.get("/v2/health/live", async (_req, reply) => {
    reply.code(200).send();
  });
  app.get("/v2/health/ready", async (_req, reply) => {
    if (!ctx.closing() && registry.allReady(ctx.strictReadiness)) return reply.code(200).send();
    return notReady(reply, ctx.closing() ? "the server is shutting down" : "the server is not ready: not every model is loaded");
  });
  app.get("/v2", async () => ({ name: ctx.name, version: ctx.version, extensions: extensions(CudaSharedMemory.available()) }));

  const modelReady = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const { model, version } = req.params;
    const v = registry.get(model!, version); // throws NOT_FOUND / UNAVAILABLE
    if (!v.ready) return notReady(reply, `model '${model}' is not ready`);
    return reply.code(200).send();
  };
  app.get("/v2/models/:model/ready", modelReady);
  app.get("/v2/models/:model/versions/:version/ready", modelReady);

  const metadata = async (req: FastifyRequest<{ Params: Params }>) => {
    const { model, version } = req.params;
    const v = registry.get(model!, version);
    const versions = registry
      .versionsOf(model!)
      .filter((x) => x.ready)
      .map((x) => String(x.version));
    return modelMetadata(v, versions);
  };
  app.get("/v2/models/:model", metadata);
  app.get("/v2/models/:model/versions/:version", metadata);

  const config = async (req: FastifyRequest<{ Params: Params }>) => registry.get(req.params.model!, req.params.version).config;
  app.get("/v2/models/:model/config", config);
  app.get("/v2/models/:model/versions/:version/config", config);

  // --- statistics ----------------------------------------------------------
  app.get("/v2/models/stats", async () => ({ model_stats: registry.readyVersions().map((v) => v.stats.snapshot()) }));
  const stats = async (req: FastifyRequest<{ Params: Params }>) => {
    const { model, version } = req.params;
    if (version === undefined) {
      registry.get(model!); // existence / readiness check
      return { model_stats: registry.versionsOf(model!).filter((v) => v.ready).map((v) => v.stats.snapshot()) };
    }
    return { model_stats: [registry.get(model!, version).stats.snapshot()] };
  };
  app.get("/v2/models/:model/stats", stats);
  app.get("/v2/models/:model/versions/:version/stats", stats);

  // --- inference -----------------------------------------------------------
  // The direct handler in fast-infer.ts serves most inference requests
  // before they reach fastify; this route serves the rest, the same way.
  const infer = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const enc = await inferBody(
      registry,
      shm,
      req.params.model!,
      req.params.version,
      req.body as Buffer | undefined,
      req.headers["inference-header-content-length"],
      ctx.chunkThreshold,
    );
    if (enc.headerLength === undefined || enc.length < ctx.chunkThreshold) {
      return reply.headers(inferResponseHeaders(enc, false)).send(enc.chunks.length === 1 ? enc.chunks[0] : Buffer.concat(enc.chunks, enc.length));
    }
    // Large binary outputs: write the tensors' own memory, no join.
    reply.hijack();
    writeInferResponse(reply.raw, enc, ctx.closing(), ctx.chunkThreshold);
    return reply;
  };
  app.post("/v2/models/:model/infer", infer);
  app.post("/v2/models/:model/versions/:version/infer", infer);

  // --- model repository ----------------------------------------------------
  app.post("/v2/repository/index", async (req) => {
    const body = jsonBody(req);
    const ready = body["ready"];
    if (ready !== undefined && typeof ready !== "boolean") throw new ServingError("ERR_INVALID_REQUEST", "'ready' must be true or false");
    return registry.index({ ready: ready === true });
  });
  app.post("/v2/repository/models/:model/load", async (req: FastifyRequest<{ Params: Params }>, reply) => {
    const body = jsonBody(req);
    const params = body["parameters"];
    if (params !== undefined && (typeof params !== "object" || params === null || Array.isArray(params))) {
      throw new ServingError("ERR_INVALID_REQUEST", "'parameters' must be a JSON object");
    }
    const p = (params ?? {}) as Record<string, unknown>;
    for (const k of Object.keys(p)) {
      if (k.startsWith("file:")) throw new ServingError("ERR_UNSUPPORTED", "loading a model from files sent in the request ('file:' parameters) is not supported");
    }
    await registry.load(req.params.model!, p["config"] === undefined ? {} : { config: p["config"] });
    return reply.code(200).send({});
  });
  app.post("/v2/repository/models/:model/unload", async (req: FastifyRequest<{ Params: Params }>, reply) => {
    jsonBody(req);
    await registry.unload(req.params.model!);
    return reply.code(200).send({});
  });

  // --- shared memory -------------------------------------------------------
  for (const [kind, regions] of [
    ["systemsharedmemory", ctx.shm],
    ["cudasharedmemory", cudaShm],
  ] as const) {
    app.get(`/v2/${kind}/status`, async () => regions.status());
    app.get(`/v2/${kind}/region/:region/status`, async (req: FastifyRequest<{ Params: Params }>) => regions.status(req.params.region));
    app.post(`/v2/${kind}/region/:region/register`, async (req: FastifyRequest<{ Params: Params }>, reply) => {
      regions.register(req.params.region!, jsonBody(req));
      return reply.code(200).send({});
    });
    app.post(`/v2/${kind}/region/:region/unregister`, async (req: FastifyRequest<{ Params: Params }>, reply) => {
      regions.unregister(req.params.region!);
      return reply.code(200).send({});
    });
    app.post(`/v2/${kind}/unregister`, async (_req, reply) => {
      regions.unregister();
      return reply.code(200).send({});
    });
  }

  // --- metrics -------------------------------------------------------------
  app.get("/metrics", async (_req, reply) => {
    const text = await ctx.metrics.render();
    return reply.header("content-type", ctx.metrics.contentType).send(text);
  });
}

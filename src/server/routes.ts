/**
 * The KServe v2 / Triton HTTP endpoints.
 *
 * @module
 */
// Fastify awaits async handlers and routes their rejections to the error
// handler; oxlint's rule is written for Express.
/* eslint-disable oxc/no-async-endpoint-handlers */
import type { FastifyInstance, FastifyReply, FastifyRequest } from "fastify";

import { Cancellation } from "../runtime/cancel.js";
import { ServingError, errorMessage } from "../runtime/errors.js";
import { FILE_PARAMETER_PREFIX } from "../runtime/model-files.js";
import type { InferenceEndpoint } from "./endpoint.js";
import { serveGenerate } from "./http-generate.js";
import { inferBody, inferResponseHeaders, writeInferResponse } from "./http-infer.js";
import type { ServerMetrics } from "./metrics.js";

/** What the routes need from the server beside the endpoint. */
export interface RouteContext {
  /** Prometheus metrics. */
  metrics: ServerMetrics;
  /** Binary responses at least this large are written in chunks instead of joined. */
  chunkThreshold: number;
}

type Params = { model?: string; version?: string; region?: string };

/** The parsed JSON body, undefined when empty; `refusal` words a body that does not parse. */
function parsedBody(req: FastifyRequest, refusal: (why: string) => ServingError): unknown {
  const body = req.body as Buffer | undefined;
  if (!body || body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString("utf8")) as unknown;
  } catch (e) {
    throw refusal(errorMessage(e));
  }
}

const isJsonObject = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);

/** Parses an optional JSON body of a non-inference endpoint. */
function jsonBody(req: FastifyRequest): Record<string, unknown> {
  const v = parsedBody(req, (why) => new ServingError("ERR_INVALID_REQUEST", `failed to parse the request JSON: ${why}`));
  if (v === undefined) return {};
  if (!isJsonObject(v)) throw new ServingError("ERR_INVALID_REQUEST", "the request body must be a JSON object");
  return v;
}

/**
 * The JSON body of a repository request, as Triton 2.51's HTTP frontend
 * reads it: empty or not an object is no field at all; JSON that does not
 * parse is 500 (INTERNAL) in Triton's words, then why.
 */
function repositoryBody(req: FastifyRequest): Record<string, unknown> {
  const v = parsedBody(req, (why) => new ServingError("ERR_INVALID_REQUEST", `failed to parse the request JSON buffer: ${why}`, { tritonCode: "INTERNAL" }));
  return isJsonObject(v) ? v : {};
}

/**
 * A load request's `parameters`, checked in their order as Triton 2.51's
 * HTTP frontend checks them (each refusal 500, INTERNAL, in Triton's words
 * and then why): an object, every value a string, every key `config` or
 * `file:<path>`.
 */
function loadParameters(body: Record<string, unknown>): Record<string, unknown> {
  const params = body["parameters"];
  if (params === undefined) return {};
  if (!isJsonObject(params)) {
    throw new ServingError("ERR_INVALID_REQUEST", "attempt to get members for non-object: 'parameters' must be a JSON object", { tritonCode: "INTERNAL" });
  }
  for (const [key, value] of Object.entries(params)) {
    if (typeof value !== "string") {
      const what = key.startsWith(FILE_PARAMETER_PREFIX) ? "the file's content as a base64 string" : key === "config" ? "the model's config as a JSON string" : "a string";
      throw new ServingError("ERR_INVALID_REQUEST", `attempt to access JSON non-string as string: load parameter '${key}' must be ${what}`, { tritonCode: "INTERNAL" });
    }
    if (key !== "config" && !key.startsWith(FILE_PARAMETER_PREFIX)) {
      throw new ServingError(
        "ERR_INVALID_REQUEST",
        `unexpected error on creating Triton parameter: unknown load parameter '${key}' (a load takes 'config' and '${FILE_PARAMETER_PREFIX}<path>' parameters)`,
        { tritonCode: "INTERNAL" },
      );
    }
  }
  return params;
}

/** A repository request that succeeded: 200 with an empty body, as Triton 2.51 answers. */
function done(reply: FastifyReply): FastifyReply {
  return reply.code(200).header("content-type", "application/json").send("");
}

function notReady(reply: FastifyReply, message: string): FastifyReply {
  return reply.code(400).send({ error: message });
}

/**
 * Registers every KServe v2 / Triton HTTP endpoint on `app`.
 *
 * @param app - the fastify instance (its content parsers must hand bodies over as Buffers).
 * @param endpoint - the inference endpoint.
 * @param ctx - the rest of the server's state.
 */
export function registerRoutes(app: FastifyInstance, endpoint: InferenceEndpoint, ctx: RouteContext): void {
  // --- health and metadata -------------------------------------------------
  app.get("/v2/health/live", async (_req, reply) => {
    reply.code(200).send();
  });
  app.get("/v2/health/ready", async (_req, reply) => {
    const r = endpoint.readiness();
    return r.ready ? reply.code(200).send() : notReady(reply, r.reason);
  });
  app.get("/v2", async () => endpoint.serverMetadata());

  const modelReady = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const { model, version } = req.params;
    // Triton's words, for an unknown model as for an unloaded one.
    if (!endpoint.modelReady(model!, version)) return notReady(reply, "Model version not ready");
    return reply.code(200).send();
  };
  app.get("/v2/models/:model/ready", modelReady);
  app.get("/v2/models/:model/versions/:version/ready", modelReady);

  const metadata = async (req: FastifyRequest<{ Params: Params }>) => endpoint.modelMetadata(req.params.model!, req.params.version);
  app.get("/v2/models/:model", metadata);
  app.get("/v2/models/:model/versions/:version", metadata);

  const config = async (req: FastifyRequest<{ Params: Params }>) => endpoint.modelConfig(req.params.model!, req.params.version);
  app.get("/v2/models/:model/config", config);
  app.get("/v2/models/:model/versions/:version/config", config);

  // --- statistics ----------------------------------------------------------
  app.get("/v2/models/stats", async () => ({ model_stats: endpoint.modelStatistics() }));
  const stats = async (req: FastifyRequest<{ Params: Params }>) => ({ model_stats: endpoint.modelStatistics(req.params.model!, req.params.version) });
  app.get("/v2/models/:model/stats", stats);
  app.get("/v2/models/:model/versions/:version/stats", stats);

  // --- inference -----------------------------------------------------------
  // The direct path (http-infer.ts, over the front or node:http) serves most
  // inference requests before they reach fastify; this route serves the
  // rest, the same way.
  const infer = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
    const cancellation = new Cancellation();
    reply.raw.once("close", () => {
      if (!reply.raw.writableFinished) cancellation.cancel();
    });
    const enc = await inferBody(
      endpoint,
      req.params.model!,
      req.params.version,
      req.body as Buffer | undefined,
      req.headers["inference-header-content-length"],
      ctx.chunkThreshold,
      cancellation,
    );
    if (enc.headerLength === undefined || enc.length < ctx.chunkThreshold) {
      return reply.headers(inferResponseHeaders(enc, false)).send(enc.chunks.length === 1 ? enc.chunks[0] : Buffer.concat(enc.chunks, enc.length));
    }
    // Large binary outputs: write the tensors' own memory, no join.
    reply.hijack();
    writeInferResponse(reply.raw, enc, endpoint.closing(), ctx.chunkThreshold);
    return reply;
  };
  app.post("/v2/models/:model/infer", infer);
  app.post("/v2/models/:model/versions/:version/infer", infer);

  // --- generate extension -------------------------------------------------
  for (const kind of ["generate", "generate_stream"] as const) {
    const generate = async (req: FastifyRequest<{ Params: Params }>, reply: FastifyReply) => {
      // Responses (one, or a stream of events) are written as they come.
      reply.hijack();
      serveGenerate(endpoint, req.params.model!, req.params.version, req.body as Buffer | undefined, reply.raw, kind === "generate_stream");
      return reply;
    };
    app.post(`/v2/models/:model/${kind}`, generate);
    app.post(`/v2/models/:model/versions/:version/${kind}`, generate);
  }

  // --- model repository ----------------------------------------------------
  // Triton 2.51's HTTP answers: bodies and parameters as repositoryBody and
  // loadParameters read them; success is 200 with no body.
  app.post("/v2/repository/index", async (req) => {
    const ready = repositoryBody(req)["ready"];
    if (ready !== undefined && typeof ready !== "boolean") {
      throw new ServingError("ERR_INVALID_REQUEST", "attempt to access JSON non-boolean as boolean: 'ready' must be true or false", { tritonCode: "INTERNAL" });
    }
    return endpoint.repositoryIndex(ready === true);
  });
  app.post("/v2/repository/models/:model/load", async (req: FastifyRequest<{ Params: Params }>, reply) => {
    await endpoint.loadModel(req.params.model!, loadParameters(repositoryBody(req)));
    return done(reply);
  });
  // Triton 2.51 unloads whatever the body holds (JSON or not, any
  // parameters): there are no dependents to unload here (no ensembles).
  app.post("/v2/repository/models/:model/unload", async (req: FastifyRequest<{ Params: Params }>, reply) => {
    await endpoint.unloadModel(req.params.model!);
    return done(reply);
  });

  // --- shared memory -------------------------------------------------------
  for (const [kind, regions] of [
    ["systemsharedmemory", endpoint.systemShm],
    ["cudasharedmemory", endpoint.cudaShm],
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

/**
 * Triton's generate extension over the inference endpoint:
 * `POST /v2/models/{m}[/versions/{v}]/generate` (one response, JSON in and
 * out) and `/generate_stream` (server-sent events, one `data:` event per
 * response), for decoupled models and any other.
 *
 * As in Triton 2.51: a top-level key that names a model input is that
 * input (a scalar or a flat array, shaped after the model's metadata: fixed
 * dims take their size, the innermost variable dim the rest, any other
 * variable dim 1), `parameters` holds request parameters, and any other
 * key is a request parameter too; `id` is the request id. A response is a
 * flat JSON object: `model_name`, `model_version`, `id` when set, and each
 * output by name (a one-element output as a bare scalar), keys in
 * byte order as Triton's `std::map` writes them.
 *
 * @module
 */
import { ServingError } from "../runtime/errors.js";
import type { InferOutput, ModelVersion, StreamCallbacks } from "../runtime/model-version.js";
import { Cancellation } from "../runtime/cancel.js";
import { decodeInferRequest, jsonData, type DecodedRequest } from "./codec.js";
import type { InferenceEndpoint } from "./endpoint.js";
import { httpError } from "./http-status.js";

/** Triton's words when `/generate` gets other than exactly one response. */
export const GENERATE_ONE_RESPONSE = "generate expects model to produce exactly 1 response, use generate stream for model that generates various number of responses";

/** What a generate response is written to (node's `ServerResponse` fills it). */
export interface GenerateSink {
  /** True once `writeHead` ran. */
  readonly headersSent: boolean;
  /** Sets the status and headers. */
  writeHead(status: number, headers: Record<string, string>): unknown;
  /** Writes body bytes (SSE events). */
  write(chunk: string): unknown;
  /** Ends the response. */
  end(chunk?: string): unknown;
  /** Runs `fn` once when the connection closes (before or after the response ended). */
  once(event: "close", fn: () => void): unknown;
  /** True once the response was fully written. */
  readonly writableFinished: boolean;
}

function bad(message: string): never {
  throw new ServingError("ERR_INVALID_REQUEST", message);
}

function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}

/**
 * The shape Triton gives a generate input of `count` elements, from the
 * model metadata's shape (with -1 for variable dims).
 */
export function generateShape(name: string, dims: readonly number[], count: number): number[] {
  const shape = [...dims];
  let left = count;
  for (let i = shape.length - 1; i >= 0; i--) {
    const d = shape[i]!;
    if (d !== -1) {
      if (d === 0 ? left !== 0 : left % d !== 0) bad(`The schema can not convert input '${name}' to tensor with proper shape`);
      if (d !== 0) left /= d;
    }
  }
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === -1) {
      shape[i] = left;
      left = 1;
    }
  }
  if (left !== 1 && count !== 0) bad(`The schema can not convert input '${name}' to tensor with proper shape`);
  return shape;
}

/** A parameter value a generate request may carry. */
function parameter(name: string, v: unknown): string | number | boolean {
  if (typeof v === "string" || typeof v === "boolean" || (typeof v === "number" && Number.isFinite(v))) return v;
  return bad(`parameter '${name}' must be a string, a number or a boolean`);
}

/**
 * Turns a generate request body into the KServe v2 JSON inference request
 * it stands for, and decodes that (so inputs get the same checks and
 * conversions as `/infer`'s JSON).
 *
 * @throws {ServingError} `ERR_INVALID_REQUEST` for a body that is not a
 * JSON object, an input that can't be shaped, a bad parameter.
 */
export function decodeGenerateRequest(endpoint: InferenceEndpoint, mv: ModelVersion, body: Uint8Array | undefined): DecodedRequest {
  let json: unknown = {};
  if (body !== undefined && body.length > 0) {
    try {
      json = JSON.parse(Buffer.from(body.buffer, body.byteOffset, body.byteLength).toString("utf8"));
    } catch (e) {
      // As /infer: Triton answers a body that is not JSON as an internal error (HTTP 500).
      throw new ServingError("ERR_INVALID_REQUEST", `failed to parse the request JSON buffer: ${e instanceof Error ? e.message : String(e)}`, {
        tritonCode: "INTERNAL",
      });
    }
  }
  if (!isObject(json)) bad("the generate request must be a JSON object");
  const meta = endpoint.modelMetadata(mv.name, String(mv.version));
  const byName = new Map(meta.inputs.map((i) => [i.name, i]));
  const inputs: unknown[] = [];
  const parameters: Record<string, string | number | boolean> = {};
  let id: string | undefined;
  const take = (key: string, value: unknown): void => {
    const input = byName.get(key);
    if (input === undefined) {
      parameters[key] = parameter(key, value);
      return;
    }
    const data = Array.isArray(value) ? value : [value];
    inputs.push({ name: key, datatype: input.datatype, shape: generateShape(key, input.shape, data.length), data });
  };
  for (const [key, value] of Object.entries(json)) {
    if (key === "id") {
      if (typeof value !== "string") bad("'id' must be a string");
      id = value;
    } else if (key === "parameters" && !byName.has(key)) {
      if (!isObject(value)) bad("Expected JSON object for keyword: 'parameters'");
      for (const [k, v] of Object.entries(value)) take(k, v);
    } else {
      take(key, value);
    }
  }
  const request = { ...(id === undefined ? {} : { id }), ...(Object.keys(parameters).length > 0 ? { parameters } : {}), inputs };
  // Every output as JSON: a generate response has no binary part.
  return decodeInferRequest(Buffer.from(JSON.stringify(request)), undefined, endpoint.shm);
}

/** A generate response object's JSON text: metadata and outputs, keys in byte order. */
export function encodeGenerateResponse(out: InferOutput): string {
  const entries: [string, string][] = [
    ["model_name", JSON.stringify(out.modelName)],
    ["model_version", JSON.stringify(String(out.modelVersion))],
  ];
  if (out.id) entries.push(["id", JSON.stringify(out.id)]);
  for (const t of out.outputs) {
    const cpu = t.isCpu() ? t : t.toCpu();
    const n = cpu.shape.reduce((a, b) => a * b, 1);
    const data = jsonData(cpu);
    // A one-element output is a bare scalar, as Triton strips its array.
    entries.push([t.name!, n === 1 ? data.slice(1, -1) : data]);
  }
  entries.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0));
  return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${v}`).join(",")}}`;
}

const errorJson = (err: unknown): string => JSON.stringify({ error: httpError(err).message });

/**
 * Serves one generate request: decodes it, submits it to the endpoint as a
 * stream, and writes one JSON response (`stream: false`) or one SSE event
 * per response. A connection closed before the last response cancels the
 * request. Errors before inference starts are JSON errors with their HTTP
 * status, as `/infer` answers them; the status of a started response is
 * that of its first response (Triton's rule), so later errors arrive as
 * `{"error": …}` objects in the body.
 */
export function serveGenerate(
  endpoint: InferenceEndpoint,
  model: string,
  version: string | undefined,
  body: Uint8Array | undefined,
  res: GenerateSink,
  stream: boolean,
): void {
  let decoded: DecodedRequest;
  let mv: ModelVersion;
  try {
    mv = endpoint.model(model, version);
    decoded = decodeGenerateRequest(endpoint, mv, body);
    // As Triton: a request that does not fit the model is a plain JSON
    // error, before any event stream starts.
    mv.validate(decoded.input);
  } catch (e) {
    const { status } = httpError(e);
    const text = errorJson(e);
    res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
    res.end(text);
    return;
  }
  const cancellation = new Cancellation();
  decoded.input.cancellation = cancellation;
  let done = false;
  res.once("close", () => {
    if (!done) cancellation.cancel();
  });
  // Non-streaming: the one response, or the error, and how many there were.
  const pending: string[] = [];
  let status = 0;
  const start = (first: number): void => {
    status = first;
    if (stream) res.writeHead(first, { "content-type": "text/event-stream; charset=utf-8", "cache-control": "no-cache" });
  };
  const event = (text: string): void => {
    if (cancellation.cancelled) return;
    if (stream) res.write(`data: ${text}\n\n`);
    else pending.push(text);
  };
  const finish = (): void => {
    done = true;
    if (cancellation.cancelled) return;
    if (status === 0) start(200);
    if (stream) {
      res.end();
      return;
    }
    const text = pending.length === 1 ? pending[0]! : JSON.stringify({ error: GENERATE_ONE_RESPONSE });
    res.writeHead(status, { "content-type": "application/json", "content-length": String(Buffer.byteLength(text)) });
    res.end(text);
  };
  const sink: StreamCallbacks = {
    response(o, final) {
      let text: string;
      try {
        text = encodeGenerateResponse(o);
      } catch (e) {
        this.error(e, final);
        return;
      }
      if (status === 0) start(200);
      event(text);
      if (final) finish();
    },
    error(e, final) {
      // Triton 2.51 answers a generate request whose first response is an
      // error with 400, whatever the error's code.
      if (status === 0) start(400);
      event(errorJson(e));
      if (final) finish();
    },
    complete() {
      finish();
    },
  };
  endpoint.stream(mv, decoded.input, sink);
}

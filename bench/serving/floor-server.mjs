/**
 * The floor of the serving benchmark: a bare `node:http` server that answers
 * perf_analyzer's add_sub / add_sub_batched requests with precomputed
 * responses. It is NOT a competitor: it parses nothing in steady state and
 * runs no model, so its figures are the ceiling any Node HTTP server can reach
 * under this perf_analyzer on this machine (Node's HTTP stack, loopback TCP
 * and perf_analyzer's own CPU on the same cores).
 *
 *   node bench/serving/floor-server.mjs [--port 8230] [--host 127.0.0.1] [--net] [--compute]
 *
 * `--net` serves over `node:net` with a minimal HTTP/1.1 reader (keep-alive,
 * `Content-Length` bodies, nothing else) instead of `node:http`: the ceiling
 * of any server written in Node, whatever its HTTP layer, under this
 * perf_analyzer on this machine. Not a server to use: it checks nothing.
 *
 * `--compute` answers every inference with floor-kserve.mjs (no kept
 * response), and digits by running the model (floor-digits.mjs): with
 * `--net`, the work no KServe server written in Node can skip on top of
 * floor-net's I/O. run.ts serves it as `floor-kserve`.
 *
 * add_sub's inference responses are correct (digits' are canned, see
 * DIGITS_ANSWERS): the first request with a given body is
 * decoded and computed (OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1,
 * FP32), and its response is kept; later requests whose body is byte-equal
 * (perf_analyzer sends the same inputs every time) get the kept response
 * after one `Buffer.equals`. Any other body is computed afresh.
 */
import http from "node:http";
import net from "node:net";

import { addSubKserve } from "./floor-kserve.mjs";
import { openDigitsFloor } from "./floor-digits.mjs";

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}
const PORT = Number(arg("port", "8230"));
const COMPUTE = process.argv.includes("--compute");
const HOST = arg("host", "127.0.0.1");
/** With `--compute`, digits requests run the model (floor-digits.mjs) instead of getting a canned answer. */
const DIGITS = COMPUTE ? await openDigitsFloor(new URL("../../examples/models/digits/1/model.onnx", import.meta.url).pathname) : undefined;

const io = (name) => ({ name, datatype: "FP32" });
const tensor = (name) => ({ name, data_type: "TYPE_FP32", dims: [4] });
/** Metadata and config of the two models perf_analyzer asks about. */
const MODELS = Object.fromEntries(
  [
    ["add_sub", 0],
    ["add_sub_batched", 8],
  ].map(([name, maxBatch]) => {
    const shape = maxBatch > 0 ? [-1, 4] : [4];
    const meta = {
      name,
      versions: ["1"],
      platform: "floor",
      inputs: ["INPUT0", "INPUT1"].map((n) => ({ ...io(n), shape })),
      outputs: ["OUTPUT0", "OUTPUT1"].map((n) => ({ ...io(n), shape })),
    };
    const config = {
      name,
      platform: "",
      backend: "floor",
      version_policy: { latest: { num_versions: 1 } },
      max_batch_size: maxBatch,
      input: ["INPUT0", "INPUT1"].map(tensor),
      output: ["OUTPUT0", "OUTPUT1"].map(tensor),
      instance_group: [{ name: `${name}_0`, kind: "KIND_CPU", count: 1 }],
    };
    return [name, { name, meta: Buffer.from(JSON.stringify(meta)), config: Buffer.from(JSON.stringify(config)), count: 0, last: 0 }];
  }),
);
/**
 * digits (examples/models/digits): metadata and config as tensorbridge
 * serves them, so that perf_analyzer's `--input-data` runs can be pointed at
 * the floor. Its answers are canned, not computed: one image's label and
 * probabilities (the JSON text tensorbridge writes for the first held-out
 * image, and the same values as binary tensors), whatever the request holds.
 * perf_analyzer does not check answers, so these rows are the ceiling of any
 * server under the digits runs' perf_analyzer (its JSON work on the same
 * cores included), not a model served.
 */
const DIGITS_PROBABILITIES = [
  0.000005860675173607888, 0.000002990905841215863, 0.0000050680073400144465, 0.00003978229869971983, 0.0003450603981036693, 0.00003672432285384275,
  1.4203537546109146e-7, 0.9956580400466919, 0.00005245677675702609, 0.003853855188935995,
];
MODELS.digits = {
  name: "digits",
  meta: Buffer.from(
    JSON.stringify({
      name: "digits",
      versions: ["1"],
      platform: "floor",
      inputs: [{ name: "pixels", datatype: "FP32", shape: [-1, 64] }],
      outputs: [
        { name: "label", datatype: "INT64", shape: [-1, 1] },
        { name: "probabilities", datatype: "FP32", shape: [-1, 10] },
      ],
    }),
  ),
  config: Buffer.from(
    JSON.stringify({
      name: "digits",
      platform: "",
      backend: "floor",
      version_policy: { latest: { num_versions: 1 } },
      max_batch_size: 64,
      input: [{ name: "pixels", data_type: "TYPE_FP32", dims: [64] }],
      output: [
        { name: "label", data_type: "TYPE_INT64", dims: [1] },
        { name: "probabilities", data_type: "TYPE_FP32", dims: [10] },
      ],
      dynamic_batching: {},
      instance_group: [{ name: "digits_0", kind: "KIND_CPU", count: 1 }],
    }),
  ),
  count: 0,
  last: 0,
};
/** The canned digits answers: binary tensors (the request had an `Inference-Header-Content-Length`) or JSON. */
const DIGITS_ANSWERS = (() => {
  const label = { name: "label", datatype: "INT64", shape: [1, 1] };
  const probabilities = { name: "probabilities", datatype: "FP32", shape: [1, 10] };
  const json = Buffer.from(
    JSON.stringify({ model_name: "digits", model_version: "1", outputs: [{ ...label, data: [7] }, { ...probabilities, data: DIGITS_PROBABILITIES }] }),
  );
  const head = Buffer.from(
    JSON.stringify({
      model_name: "digits",
      model_version: "1",
      outputs: [
        { ...label, parameters: { binary_data_size: 8 } },
        { ...probabilities, parameters: { binary_data_size: 40 } },
      ],
    }),
  );
  const binary = Buffer.concat([head, Buffer.from(new BigInt64Array([7n]).buffer), Buffer.from(new Float32Array(DIGITS_PROBABILITIES).buffer)]);
  return {
    json: { headers: { "content-type": "application/json", "content-length": json.length }, body: json },
    binary: {
      headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(head.length), "content-length": binary.length },
      body: binary,
    },
  };
})();

const SERVER = Buffer.from(JSON.stringify({ name: "floor", version: "0", extensions: ["binary_tensor_data", "statistics"] }));
const EMPTY = Buffer.alloc(0);

/**
 * Statistics with the request count only (times 0): perf_analyzer refuses
 * statistics whose count did not move ("failed to find the requested model
 * version"), and one increment per request is all the bookkeeping done.
 */
function stats(model) {
  const n = { count: model.count, ns: 0 };
  const zero = { count: 0, ns: 0 };
  const s = { success: n, fail: zero, queue: n, compute_input: n, compute_infer: n, compute_output: n, cache_hit: zero, cache_miss: zero };
  return Buffer.from(
    JSON.stringify({
      model_stats: [
        {
          name: model.name,
          version: "1",
          last_inference: model.last,
          inference_count: model.count,
          execution_count: model.count,
          inference_stats: s,
          response_stats: {},
          batch_stats: [],
          memory_usage: [],
        },
      ],
    }),
  );
}

/** Decodes one request (binary or JSON tensors) and computes add_sub's response: status, headers, body. */
function compute(model, body, headerLength) {
  const hlen = headerLength === undefined ? body.length : Number(headerLength);
  const req = JSON.parse(body.subarray(0, hlen).toString("utf8"));
  let offset = hlen;
  const values = {};
  let shape;
  for (const t of req.inputs) {
    shape = t.shape;
    const size = t.parameters?.binary_data_size;
    if (size !== undefined) {
      const bytes = Buffer.from(body.subarray(offset, offset + size));
      offset += size;
      values[t.name] = new Float32Array(bytes.buffer, bytes.byteOffset, size / 4);
    } else {
      values[t.name] = Float32Array.from(t.data.flat(Infinity));
    }
  }
  const a = values["INPUT0"];
  const b = values["INPUT1"];
  const out = { OUTPUT0: a.map((x, i) => x + b[i]), OUTPUT1: a.map((x, i) => x - b[i]) };
  const wanted = req.outputs ?? [{ name: "OUTPUT0" }, { name: "OUTPUT1" }];
  const binary = [];
  const outputs = wanted.map((o) => {
    const data = out[o.name];
    const t = { name: o.name, datatype: "FP32", shape };
    if (o.parameters?.binary_data === true) {
      binary.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength));
      return { ...t, parameters: { binary_data_size: data.byteLength } };
    }
    return { ...t, data: Array.from(data) };
  });
  const head = Buffer.from(JSON.stringify({ model_name: model, model_version: "1", outputs }));
  if (binary.length === 0) return { headers: { "content-type": "application/json", "content-length": head.length }, body: head };
  const all = Buffer.concat([head, ...binary]);
  return {
    headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(head.length), "content-length": all.length },
    body: all,
  };
}

/** Per URL: the last request body and its computed response. */
const kept = new Map();

function send(res, status, body, type = "application/json") {
  res.writeHead(status, { "content-type": type, "content-length": body.length });
  res.end(body);
}

function handle(req, res, body) {
  const url = req.url;
  if (url === "/v2") return send(res, 200, SERVER);
  if (url.startsWith("/v2/health/")) return send(res, 200, EMPTY);
  const m = /^\/v2\/models\/([^/]+)(?:\/versions\/1)?(\/[a-z]+)?$/.exec(url);
  const model = m && MODELS[m[1]];
  if (!model) return send(res, 404, Buffer.from(`{"error":"unknown endpoint: ${req.method} ${url}"}`));
  switch (m[2]) {
    case undefined:
      return send(res, 200, model.meta);
    case "/config":
      return send(res, 200, model.config);
    case "/stats":
      return send(res, 200, stats(model));
    case "/ready":
      return send(res, 200, EMPTY);
    case "/infer": {
      if (m[1] === "digits" && DIGITS !== undefined) {
        const hl = req.headers["inference-header-content-length"];
        try {
          DIGITS.submit(body, hl === undefined ? undefined : Number(hl), (headers, answer) => {
            model.count++;
            model.last = Date.now();
            res.writeHead(200, headers);
            res.end(answer);
          });
        } catch (e) {
          return send(res, 400, Buffer.from(JSON.stringify({ error: `floor: ${e.message}` })));
        }
        return;
      }
      if (m[1] === "digits") {
        const answer = req.headers["inference-header-content-length"] === undefined ? DIGITS_ANSWERS.json : DIGITS_ANSWERS.binary;
        model.count++;
        model.last = Date.now();
        res.writeHead(200, answer.headers);
        return res.end(answer.body);
      }
      if (COMPUTE) {
        const hl = req.headers["inference-header-content-length"];
        let r;
        try {
          r = addSubKserve(m[1], body, hl === undefined ? undefined : Number(hl));
        } catch (e) {
          return send(res, 400, Buffer.from(JSON.stringify({ error: `floor: ${e.message}` })));
        }
        model.count++;
        model.last = Date.now();
        res.writeHead(200, {
          ...(r.headerLength === undefined
            ? { "content-type": "application/json" }
            : { "content-type": "application/octet-stream", "inference-header-content-length": String(r.headerLength) }),
          "content-length": r.body.length,
        });
        return res.end(r.body);
      }
      let k = kept.get(url);
      if (!k || !k.body.equals(body)) {
        try {
          k = { body, response: compute(m[1], body, req.headers["inference-header-content-length"]) };
        } catch (e) {
          return send(res, 400, Buffer.from(JSON.stringify({ error: `floor: ${e.message}` })));
        }
        kept.set(url, k);
      }
      model.count++;
      model.last = Date.now();
      res.writeHead(200, k.response.headers);
      return res.end(k.response.body);
    }
    default:
      return send(res, 404, Buffer.from(`{"error":"unknown endpoint: ${req.method} ${url}"}`));
  }
}

/** The `res` of {@link handle} over a raw socket: status line, headers, body in one write. */
class RawResponse {
  constructor(socket) {
    this.socket = socket;
    this.head = "";
  }
  writeHead(status, headers) {
    this.head = `HTTP/1.1 ${status} ${http.STATUS_CODES[status]}\r\n`;
    for (const k in headers) this.head += `${k}: ${headers[k]}\r\n`;
    this.head += "\r\n";
  }
  end(body) {
    this.socket.write(Buffer.concat([Buffer.from(this.head, "latin1"), body]));
  }
}

/** Reads keep-alive requests with `Content-Length` bodies off a raw socket; nothing else is HTTP enough for it. */
function rawConnection(socket) {
  let buf;
  socket.on("error", () => socket.destroy());
  socket.on("data", (chunk) => {
    buf = buf ? Buffer.concat([buf, chunk]) : chunk;
    for (;;) {
      const end = buf.indexOf("\r\n\r\n");
      if (end < 0) return;
      const lines = buf.toString("latin1", 0, end).split("\r\n");
      const [method, url] = lines[0].split(" ");
      const headers = {};
      for (let i = 1; i < lines.length; i++) {
        const c = lines[i].indexOf(":");
        headers[lines[i].slice(0, c).toLowerCase()] = lines[i].slice(c + 1).trim();
      }
      const length = Number(headers["content-length"] ?? 0);
      if (buf.length < end + 4 + length) return;
      const body = buf.subarray(end + 4, end + 4 + length);
      buf = buf.length > end + 4 + length ? buf.subarray(end + 4 + length) : undefined;
      handle({ method, url, headers }, new RawResponse(socket), body);
      if (!buf) return;
    }
  });
}

const server = process.argv.includes("--net")
  ? net.createServer({ noDelay: true }, rawConnection)
  : http.createServer({ keepAliveTimeout: 65_000 }, (req, res) => {
      const chunks = [];
      req.on("data", (c) => chunks.push(c));
      req.on("end", () => handle(req, res, chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)));
    });
server.listen(PORT, HOST, () => process.stderr.write(`floor: listening on http://${HOST}:${PORT}\n`));
// Exit through process.exit so that `node --cpu-prof` writes its profile.
for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    // A net.Server has no closeAllConnections: its keep-alive sockets would hold close() open.
    if (!server.closeAllConnections) process.exit(0);
    server.closeAllConnections();
    server.close(() => process.exit(0));
  });
}

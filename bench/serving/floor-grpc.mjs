/**
 * The gRPC floor of the serving benchmark: a bare `node:http2` server that
 * speaks just enough of Triton's `inference.GRPCInferenceService` for
 * perf_analyzer's add_sub runs (ServerLive/Ready, ModelMetadata,
 * ModelConfig, ModelStatistics and ModelInfer), with precomputed answers.
 * It is NOT a competitor: no gRPC library, no deadlines, no metadata, no
 * model; its figures are the ceiling of any gRPC server built on
 * node:http2 under this perf_analyzer on this machine (Node's HTTP/2,
 * loopback TCP and perf_analyzer's own CPU on the same cores).
 * tensorbridge's own HTTP/2 (src/server/grpc/h2) is not built on
 * node:http2, and goes past it.
 *
 *   node bench/serving/floor-grpc.mjs [--port 8233] [--host 127.0.0.1] [--http-port 8234]
 *
 * Beside it, a plain HTTP port answers `/v2/models/{m}/ready` and
 * `/v2/models/{m}/stats` (the ModelInfer count as Triton's statistics
 * shape), so that run.ts waits for it and counts its requests as it does
 * for the servers.
 *
 * ModelInfer answers are correct: the first request with a given message is
 * decoded and computed (OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 -
 * INPUT1, FP32 raw contents), and its encoded response is kept; a later
 * byte-equal message (perf_analyzer sends the same inputs every time) gets
 * the kept response after one `Buffer.equals`.
 */
import http from "node:http";
import http2 from "node:http2";
import { fileURLToPath } from "node:url";

import protoLoader from "@grpc/proto-loader";

function arg(name, dflt) {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1] : dflt;
}
const PORT = Number(arg("port", "8233"));
const HOST = arg("host", "127.0.0.1");
const HTTP_PORT = Number(arg("http-port", "8234"));
let served = 0;

const dir = fileURLToPath(new URL("../../proto/triton/", import.meta.url));
const pkg = protoLoader.loadSync(`${dir}grpc_service.proto`, { keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true, includeDirs: [dir] });
const svc = pkg["inference.GRPCInferenceService"];
const PREFIX = "/inference.GRPCInferenceService/";

const tensor = (name) => ({ name, datatype: "FP32", shape: [4] });
const config = (name) => ({ name, data_type: "TYPE_FP32", dims: [4] });
/** The canned answers of every RPC but ModelInfer (perf_analyzer sends the same requests each time). */
const CANNED = {
  ServerLive: { live: true },
  ServerReady: { ready: true },
  ModelReady: { ready: true },
  ServerMetadata: { name: "floor-grpc", version: "0", extensions: [] },
  ModelMetadata: { name: "add_sub", versions: ["1"], platform: "floor", inputs: [tensor("INPUT0"), tensor("INPUT1")], outputs: [tensor("OUTPUT0"), tensor("OUTPUT1")] },
  ModelConfig: {
    config: {
      name: "add_sub",
      backend: "floor",
      max_batch_size: 0,
      input: [config("INPUT0"), config("INPUT1")],
      output: [config("OUTPUT0"), config("OUTPUT1")],
    },
  },
  ModelStatistics: { model_stats: [] },
};
const encoded = Object.fromEntries(Object.entries(CANNED).map(([rpc, msg]) => [rpc, frame(svc[rpc].responseSerialize(msg))]));

/** A gRPC length-prefixed message. */
function frame(msg) {
  const out = Buffer.allocUnsafe(5 + msg.length);
  out[0] = 0;
  out.writeUInt32BE(msg.length, 1);
  msg.copy(out, 5);
  return out;
}

let lastRequest;
let lastResponse;
function infer(body) {
  served++;
  if (lastRequest !== undefined && body.equals(lastRequest)) return lastResponse;
  const req = svc.ModelInfer.requestDeserialize(body.subarray(5));
  const raw = req.raw_input_contents.map((b) => new Float32Array(b.buffer.slice(b.byteOffset, b.byteOffset + b.byteLength)));
  const [a, b] = raw;
  const sum = a.map((x, i) => x + b[i]);
  const diff = a.map((x, i) => x - b[i]);
  const res = {
    model_name: req.model_name,
    model_version: "1",
    id: req.id,
    outputs: [tensor("OUTPUT0"), tensor("OUTPUT1")],
    raw_output_contents: [Buffer.from(sum.buffer), Buffer.from(diff.buffer)],
  };
  lastRequest = Buffer.from(body);
  lastResponse = frame(svc.ModelInfer.responseSerialize(res));
  return lastResponse;
}

const server = http2.createServer();
server.on("stream", (stream, headers) => {
  const path = headers[":path"] ?? "";
  const rpc = path.startsWith(PREFIX) ? path.slice(PREFIX.length) : "";
  const chunks = [];
  stream.on("data", (c) => chunks.push(c));
  stream.on("end", () => {
    const answer = rpc === "ModelInfer" ? infer(chunks.length === 1 ? chunks[0] : Buffer.concat(chunks)) : encoded[rpc];
    if (answer === undefined) {
      stream.respond({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12", "grpc-message": `${rpc} is not served by the floor` }, { endStream: true });
      return;
    }
    stream.respond({ ":status": 200, "content-type": "application/grpc" }, { waitForTrailers: true });
    stream.once("wantTrailers", () => stream.sendTrailers({ "grpc-status": "0" }));
    stream.end(answer);
  });
});
server.listen(PORT, HOST, () => process.stdout.write(`floor-grpc listening on ${HOST}:${PORT}\n`));

const side = http.createServer((req, res) => {
  const count = { count: served, ns: 0 };
  const body = req.url.endsWith("/stats") ? JSON.stringify({ model_stats: [{ inference_stats: { success: count, fail: { count: 0, ns: 0 } } }] }) : "";
  res.writeHead(200, { "content-type": "application/json" });
  res.end(body);
});
side.listen(HTTP_PORT, HOST);
for (const sig of ["SIGINT", "SIGTERM"]) process.on(sig, () => process.exit(0));

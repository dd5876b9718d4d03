/**
 * What the in-process serving benches (path.bench.ts, path-ab.bench.ts)
 * send: perf_analyzer's add_sub request (INPUT0 and INPUT1, FP32 [4]) with
 * binary tensors and as JSON, with the headers it comes with, and a model
 * repository holding only add_sub.
 */
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** One request: its body and its headers (host, lengths, content type). */
export interface AddSubRequest {
  body: Buffer;
  headers: Record<string, string>;
}

const a = Float32Array.from({ length: 4 }, (_, i) => i / 3);
const b = Float32Array.from({ length: 4 }, (_, i) => 1 - i / 7);
const header = Buffer.from(
  JSON.stringify({
    inputs: [
      { name: "INPUT0", shape: [4], datatype: "FP32", parameters: { binary_data_size: 16 } },
      { name: "INPUT1", shape: [4], datatype: "FP32", parameters: { binary_data_size: 16 } },
    ],
    outputs: [
      { name: "OUTPUT0", parameters: { binary_data: true } },
      { name: "OUTPUT1", parameters: { binary_data: true } },
    ],
  }),
);
const binary = Buffer.concat([header, Buffer.from(a.buffer), Buffer.from(b.buffer)]);
const json = Buffer.from(
  JSON.stringify({
    inputs: [
      { name: "INPUT0", shape: [4], datatype: "FP32", data: [...a] },
      { name: "INPUT1", shape: [4], datatype: "FP32", data: [...b] },
    ],
  }),
);

/** add_sub's request by format: `binary` (binary tensors in and out) and `json`. */
export const ADD_SUB_REQUESTS: Readonly<Record<"binary" | "json", AddSubRequest>> = {
  binary: {
    body: binary,
    headers: { host: "x", "content-length": String(binary.length), "content-type": "application/octet-stream", "inference-header-content-length": String(header.length) },
  },
  json: { body: json, headers: { host: "x", "content-length": String(json.length), "content-type": "application/json" } },
};

/**
 * A fresh model repository with `root`'s examples/models/add_sub only, in
 * `parent` (the system's temporary folder by default); the caller removes it.
 */
export function addSubRepository(root: string, parent = tmpdir()): string {
  mkdirSync(parent, { recursive: true });
  const repo = mkdtempSync(join(parent, "tb-path-bench-"));
  mkdirSync(join(repo, "add_sub/1"), { recursive: true });
  writeFileSync(join(repo, "add_sub/config.pbtxt"), readFileSync(join(root, "examples/models/add_sub/config.pbtxt"), "utf8"));
  writeFileSync(join(repo, "add_sub/1/model.ts"), readFileSync(join(root, "examples/models/add_sub/1/model.ts"), "utf8"));
  return repo;
}

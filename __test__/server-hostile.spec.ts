/**
 * Hostile requests at CI size: scripts/hostile.ts's generator (truncated and
 * oversized bodies, wrong Inference-Header-Content-Length, binary_data_size
 * past the body, negative and huge dims, dtype/shape mismatches, bad JSON
 * and UTF-8, unknown models and versions, path traversal in model names and
 * shared-memory keys, shared-memory offsets past the region, mutated
 * bodies; over HTTP and over gRPC as raw HTTP/2 streams with hand-made
 * protobuf) against a server process: every request answered 4xx with a
 * JSON error (or Triton's 500 for a body that is not JSON), every gRPC
 * call with a non-OK status other than UNKNOWN, or a clean close; the
 * server alive and its RSS bounded. The long run (10^5 requests) is the
 * same script: `node --import tsx scripts/hostile.ts`.
 */
import test from "ava";

import { runHostile } from "../scripts/hostile.js";

test("3000 hostile HTTP and gRPC requests: each refused cleanly, 0 crashes, RSS bounded", async (t) => {
  t.timeout(240_000);
  const r = await runHostile({ requests: 3000, concurrency: 16, seed: Number(process.env["TB_FUZZ_SEED"] ?? 0x5eed) });
  t.log(`${r.sent} requests in ${r.seconds} s, RSS ${r.rssMib.start.toFixed(1)} -> ${r.rssMib.peak.toFixed(1)} MiB (seed ${r.options.seed})`);
  t.deepEqual(r.failures, []);
  t.is(r.sent, 3000);
  t.true(r.alive);
  // Not vacuous: every kind of case was sent, over both transports.
  const kinds = Object.keys(r.outcomes);
  for (const k of ["truncated-body", "oversized-body", "bad-header-length", "binary-size-past-body", "bad-dims", "dtype-shape-mismatch", "bad-json", "bad-utf8", "unknown-model", "traversal-model", "traversal-shm-key", "shm-offset-past-region", "grpc-bad-dims", "grpc-traversal-model", "grpc-shm-offset-past-region", "grpc-bad-protobuf", "grpc-truncated-message"]) {
    t.true(kinds.includes(k), `no '${k}' case was sent`);
  }
  // What the server answered the ones that must be refused, exactly:
  t.deepEqual(Object.keys(r.outcomes["oversized-body"]!), ["http 413"]);
  t.deepEqual(Object.keys(r.outcomes["traversal-model"]!), ["http 404"]);
  t.deepEqual(Object.keys(r.outcomes["grpc-traversal-model"]!), ["grpc 5"], "NOT_FOUND");
  t.deepEqual(Object.keys(r.outcomes["grpc-shm-offset-past-region"]!), ["grpc 3"], "INVALID_ARGUMENT");
  t.deepEqual(Object.keys(r.outcomes["shm-offset-past-region"]!), ["http 400"]);
  t.true(r.rssMib.peak - r.rssMib.start < 128, `RSS grew ${r.rssMib.peak - r.rssMib.start} MiB`);
});

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
 * same script: `node --import tsx scripts/hostile.ts`. Both gRPC servers
 * (tensorbridge's own HTTP/2 and grpc-js) are checked.
 */
import { rmSync, symlinkSync, writeFileSync } from "node:fs";
import { basename, join } from "node:path";

import * as grpc from "@grpc/grpc-js";
import test from "ava";

import { runHostile } from "../scripts/hostile.js";
import { InferenceServer } from "../src/server/server.js";
import { ADD_SUB, cleanupRepos, grpcClient, grpcUnary, http, makeRepo, setupModelEntry } from "./server-helpers.js";

test.after.always(cleanupRepos);

for (const grpcServer of ["tensorbridge", "grpc-js"] as const) {
  test(`3000 hostile HTTP and gRPC requests (gRPC over ${grpcServer}): each refused cleanly, 0 crashes, RSS bounded`, async (t) => {
    t.timeout(240_000);
    const r = await runHostile({ requests: 3000, concurrency: 16, seed: Number(process.env["TB_FUZZ_SEED"] ?? 0x5eed), serverArgs: [`--grpc-server=${grpcServer}`] });
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
    t.deepEqual(Object.keys(r.outcomes["traversal-model"]!).toSorted(), ["http 404", "http 500 (Triton's answer to loading a model the repository lacks)"]);
    // Unloading a name the repository lacks succeeds, as in Triton 2.51 (the security test below checks
    // that nothing is listed after such requests); a path that `..` takes off the route is 404.
    t.deepEqual(Object.keys(r.outcomes["traversal-unload"] ?? {}).filter((o) => o !== "http 200" && o !== "http 404"), []);
    t.deepEqual(Object.keys(r.outcomes["grpc-traversal-model"]!), ["grpc 5"], "NOT_FOUND");
    t.deepEqual(Object.keys(r.outcomes["grpc-shm-offset-past-region"]!), ["grpc 3"], "INVALID_ARGUMENT");
    t.deepEqual(Object.keys(r.outcomes["shm-offset-past-region"]!), ["http 400"]);
    t.true(r.rssMib.peak - r.rssMib.start < 128, `RSS grew ${r.rssMib.peak - r.rssMib.start} MiB`);
  });
}

test("security defaults: loopback bind, client shared memory off, models load only from the repository (no ../ way out)", async (t) => {
  const outside = makeRepo({ outside: ADD_SUB });
  const repo = makeRepo({ add_sub: ADD_SUB });
  // A sibling of the repository that a ../ name would reach.
  symlinkSync(join(outside, "outside"), join(repo, "..", `${basename(repo)}-outside`));
  await setupModelEntry();
  const server = await InferenceServer.start({ repository: repo, port: 0, grpcPort: 0, quiet: true, defaultMetrics: false });
  const client = grpcClient(server);
  try {
    t.is(server.address.host, "127.0.0.1");
    t.is(server.grpcAddress!.host, "127.0.0.1");
    const key = `tb-sec-${process.pid}`;
    writeFileSync(`/dev/shm/${key}`, Buffer.alloc(64));
    try {
      const reg = await http(server, "POST", "/v2/systemsharedmemory/region/r/register", { key, offset: 0, byte_size: 64 });
      t.is(reg.status, 403);
      t.is(typeof reg.json.error, "string");
      const g = await grpcUnary(client, "SystemSharedMemoryRegister", { name: "r", key, offset: 0, byte_size: 64 });
      t.false(g.ok);
    } finally {
      rmSync(`/dev/shm/${key}`, { force: true });
    }
    for (const name of [`..%2F${basename(repo)}-outside`, `..%2F..%2F${basename(outside)}%2Foutside`, "%2Ftmp", ".hidden"]) {
      const a = await http(server, "POST", `/v2/repository/models/${name}/load`, {});
      // Triton 2.51's answer to a model the repository does not have: 500, "failed to poll from model repository".
      t.is(a.status, 500, `${name}: ${a.status}`);
      t.regex(String(a.json?.error), /^failed to load '.*', failed to poll from model repository: /s);
      const g = await grpcUnary(client, "RepositoryModelLoad", { model_name: decodeURIComponent(name) });
      t.false(g.ok);
      if (!g.ok) t.not(g.code, grpc.status.OK);
    }
    const index = (await http(server, "POST", "/v2/repository/index", {})).json as { name: string }[];
    t.deepEqual(
      index.map((m) => m.name),
      ["add_sub"],
    );
  } finally {
    client.close();
    await server.close();
    rmSync(join(repo, "..", `${basename(repo)}-outside`), { force: true });
  }
});

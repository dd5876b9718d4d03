/**
 * Real Triton clients against our gRPC service: the official Python
 * `tritonclient.grpc` (health, metadata, config, statistics, a synchronous
 * infer(), async_infer(), a stream with and without
 * enable_empty_final_response, Triton's errors; see
 * fixtures/grpc/tritonclient_grpc.py), and `perf_analyzer -i grpc` (unary
 * and --streaming) for a few seconds each, which must report no errors.
 *
 * Both come from the venv that `bash bench/serving/setup.sh client` makes
 * (bench/.work/venv-client); where it is absent, the tests are skipped with
 * that reason in their title. The decoupled part of the Python script runs
 * in server-grpc-decoupled.spec.ts.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import type { InferenceServer } from "../src/server/server.js";
import { ADD_SUB, CLIENT_VENV, ROOT, cleanupRepos, clientSitePackages, grpcClientMissing, http, makeRepo, runCommand as run, startTestServer, type TestModel } from "./server-helpers.js";

const PYTHON = join(CLIENT_VENV, "bin/python");
const PERF = join(CLIENT_VENV, "bin/perf_analyzer");
const clientMissing = grpcClientMissing();
const perfMissing = existsSync(PERF) ? undefined : `perf_analyzer is not installed (${PERF}); run bash bench/serving/setup.sh client`;

/** Directory of libcudart.so.12 inside the venv (perf_analyzer links it even for CPU use). */
function cudartDir(): string | undefined {
  return clientSitePackages()
    .map((d) => join(d, "nvidia/cuda_runtime/lib"))
    .find((d) => existsSync(d));
}

const test = anyTest as TestFn<{ server: InferenceServer }>;

test.before(async (t) => {
  if (clientMissing && perfMissing) return;
  t.context.server = await startTestServer(makeRepo({ add_sub: ADD_SUB, repeat: REPEAT_EXAMPLE }));
});

test.after.always(async (t) => {
  await t.context.server?.close();
  cleanupRepos();
});

const clientTest = clientMissing ? test.skip : test;
clientTest(`tritonclient.grpc: infer, async_infer, a stream, metadata and Triton's errors${clientMissing ? ` (skipped: ${clientMissing})` : ""}`, async (t) => {
  const r = await run(PYTHON, [join(ROOT, "__test__/fixtures/grpc/tritonclient_grpc.py"), t.context.server.grpcAddress!.url]);
  t.log(r.out.trim());
  t.is(r.code, 0, r.out);
  t.regex(r.out, /PASS: tritonclient\.grpc/);
});

/**
 * The decoupled example (examples/models/repeat) without its optional DELAY
 * input, which perf_analyzer would fill with random delays.
 */
const REPEAT_EXAMPLE: TestModel = {
  config: readFileSync(join(ROOT, "examples/models/repeat/config.pbtxt"), "utf8").replace(/,\s*\{ name: "DELAY"[^}]*\}/, ""),
  model: readFileSync(join(ROOT, "examples/models/repeat/1/model.ts"), "utf8"),
};

const perfTest = perfMissing ? test.skip : test.serial;

perfTest(`perf_analyzer -i grpc --streaming: the decoupled example, 4 responses per request, 0 errors${perfMissing ? ` (skipped: ${perfMissing})` : ""}`, async (t) => {
  const { server } = t.context;
  t.false(/name: "DELAY"/.test(REPEAT_EXAMPLE.config), "the example's DELAY input is left out");
  const stats = async () => (await http(server, "GET", "/v2/models/repeat/stats")).json.model_stats[0];
  const before = await stats();
  const lib = cudartDir();
  const r = await run(
    PERF,
    ["-m", "repeat", "-u", server.grpcAddress!.url, "-i", "grpc", "--streaming", "--shape", "IN:4", "--concurrency-range", "1:2", "--measurement-interval", "1000", "-s", "100", "-r", "20"],
    lib ? { LD_LIBRARY_PATH: [lib, process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":") } : {},
  );
  t.log(r.out.split("\n").filter((l) => /Concurrency: \d+, throughput/.test(l)).join("\n"));
  t.is(r.code, 0, r.out);
  t.notRegex(r.out, /had error|error:|Failed to maintain/i, r.out);
  t.regex(r.out, /Concurrency: 2, throughput: [\d.]+ infer\/sec/);
  const after = await stats();
  const requests = after.inference_stats.success.count - before.inference_stats.success.count;
  t.true(requests > 100, `${requests} requests`);
  t.is(after.inference_stats.fail.count, before.inference_stats.fail.count, "no failed request on the server");
  // Every request streamed its four responses and then the final flag alone.
  const sent = (i: number) => (after.response_stats[String(i)]?.success.count ?? 0) - (before.response_stats[String(i)]?.success.count ?? 0);
  t.deepEqual([sent(1), sent(2), sent(3)].map((n) => n === sent(0)), [true, true, true]);
  t.is(sent(0), requests);
});
for (const [mode, extra] of [
  ["unary", []],
  ["streaming", ["--streaming"]],
] as const) {
  perfTest(`perf_analyzer -i grpc (${mode}): add_sub for a few seconds, 0 errors${perfMissing ? ` (skipped: ${perfMissing})` : ""}`, async (t) => {
    const { server } = t.context;
    const before = (await http(server, "GET", "/v2/models/add_sub/stats")).json.model_stats[0].inference_stats;
    const lib = cudartDir();
    const r = await run(
      PERF,
      // a shared 2-core CI machine is noisy: accept any stability, fail on request errors only
      ["-m", "add_sub", "-u", server.grpcAddress!.url, "-i", "grpc", "--concurrency-range", "1:2", "--measurement-interval", "1000", "-s", "100", "-r", "20", ...extra],
      lib ? { LD_LIBRARY_PATH: [lib, process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":") } : {},
    );
    t.log(r.out.split("\n").filter((l) => /Concurrency: \d+, throughput/.test(l)).join("\n"));
    t.is(r.code, 0, r.out);
    t.notRegex(r.out, /had error|error:|Failed to maintain/i, r.out);
    t.regex(r.out, /Concurrency: 2, throughput: [\d.]+ infer\/sec/);
    const after = (await http(server, "GET", "/v2/models/add_sub/stats")).json.model_stats[0].inference_stats;
    t.true(after.success.count - before.success.count > 100);
    t.is(after.fail.count, before.fail.count, "no failed request on the server");
  });
}

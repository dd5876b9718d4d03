/**
 * Real Triton clients against our server: the official Python
 * `tritonclient[http]` running the seed's add_sub client (binary and JSON),
 * and `perf_analyzer` (from `tritonclient[all]==2.51.0`) for a few seconds
 * with binary and JSON tensors, which must report no errors.
 *
 * Both come from the venv that `bash bench/serving/setup.sh client` makes
 * (bench/.work/venv-client); where it is absent, the tests are skipped with
 * that reason in their title.
 */
import { existsSync, readdirSync } from "node:fs";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import type { InferenceServer } from "../src/server/server.js";
import { ADD_SUB, ROOT, cleanupRepos, makeRepo, runCommand as run, startTestServer } from "./server-helpers.js";

const VENV = process.env["TENSORBRIDGE_CLIENT_VENV"] ?? join(ROOT, "bench/.work/venv-client");
const PYTHON = join(VENV, "bin/python");
const PERF = join(VENV, "bin/perf_analyzer");
const hasClient = existsSync(PYTHON) && existsSync(join(VENV, "lib")) && hasModule("tritonclient");
const hasPerf = existsSync(PERF);
const HOW = "run bash bench/serving/setup.sh client";

function hasModule(name: string): boolean {
  try {
    const lib = join(VENV, "lib");
    return readdirSync(lib).some((py) => existsSync(join(lib, py, "site-packages", name)));
  } catch {
    return false;
  }
}

/** Directory of libcudart.so.12 inside the venv (perf_analyzer links it even for CPU use). */
function cudartDir(): string | undefined {
  try {
    const lib = join(VENV, "lib");
    for (const py of readdirSync(lib)) {
      const d = join(lib, py, "site-packages", "nvidia", "cuda_runtime", "lib");
      if (existsSync(d)) return d;
    }
  } catch {
    return undefined;
  }
  return undefined;
}

const test = anyTest as TestFn<{ server: InferenceServer }>;

test.before(async (t) => {
  if (!hasClient && !hasPerf) return;
  const repo = makeRepo({
    add_sub: ADD_SUB,
    // perf_analyzer's JSON writer counts elements from dim 1 on (it assumes a
    // batch dim: client http_client.cc ConvertBinaryInputsToJSON), so JSON
    // load needs a batching model; same model code, max_batch_size 8.
    add_sub_batched: {
      model: ADD_SUB.model!,
      config: ADD_SUB.config.replace('name: "add_sub"', 'name: "add_sub_batched"\nmax_batch_size: 8'),
    },
  });
  t.context.server = await startTestServer(repo);
});

test.after.always(async (t) => {
  await t.context.server?.close();
  cleanupRepos();
});

const clientTest = hasClient ? test : test.skip;
clientTest(`tritonclient[http] runs the add_sub client, binary and JSON${hasClient ? "" : ` (skipped: tritonclient not installed; ${HOW})`}`, async (t) => {
  const { host, port } = t.context.server.address;
  const r = await run(PYTHON, [join(ROOT, "__test__/python/tritonclient_add_sub.py"), `${host}:${port}`]);
  t.is(r.code, 0, r.out);
  t.regex(r.out, /PASS: add_sub with tritonclient \(binary and JSON\)/);
  t.regex(r.out, /\[binary\] INPUT0/);
  t.regex(r.out, /\[json\] INPUT0/);
});

const perfTest = hasPerf ? test.serial : test.skip;
for (const [format, model, extra] of [
  ["binary", "add_sub", []],
  ["JSON", "add_sub_batched", ["--input-tensor-format", "json", "--output-tensor-format", "json"]],
] as const) {
  perfTest(`perf_analyzer: ${model}, ${format} tensors, a few seconds, 0 errors${hasPerf ? "" : ` (skipped: perf_analyzer not installed; ${HOW})`}`, async (t) => {
    const { host, port } = t.context.server.address;
    const lib = cudartDir();
    const r = await run(
      PERF,
      // a shared 2-core CI machine is noisy: accept any stability, fail on request errors only
      ["-m", model, "-u", `${host}:${port}`, "-i", "http", "--concurrency-range", "1:2", "--measurement-interval", "1000", "-s", "100", "-r", "20", ...extra],
      lib ? { LD_LIBRARY_PATH: [lib, process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":") } : {},
    );
    t.is(r.code, 0, r.out);
    t.notRegex(r.out, /had error|error:|Failed to maintain/i, r.out);
    t.regex(r.out, /Concurrency: 2, throughput: [\d.]+ infer\/sec/);
    const stats = (await (await fetch(`${t.context.server.address.url}/v2/models/${model}/stats`)).json()) as {
      model_stats: { inference_stats: { success: { count: number }; fail: { count: number } } }[];
    };
    t.true(stats.model_stats[0]!.inference_stats.success.count > 100);
    t.is(stats.model_stats[0]!.inference_stats.fail.count, 0, "no failed request on the server");
  });
}

/**
 * A model's `import … from "tensorbridge"` resolves to the narrow model
 * entry (src/model.ts): loading a model, in the serving thread or in an
 * instance thread, loads neither the server, fastify nor gRPC. Three
 * views: a child process records every module URL its serving thread
 * resolves (a resolve hook registered with --import; Node 20's workers
 * don't run it); the model itself, in either thread, reports the CommonJS
 * packages loaded there (fastify and grpc-js are CommonJS); and the static
 * import graph from the model entry and the instance-thread entry reaches
 * no server module.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

import test from "ava";

import * as model from "../src/model.js";
import * as root from "../src/index.js";
import { cleanupRepos, makeRepo } from "./server-helpers.js";

test.after.always(() => cleanupRepos());

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const CONFIG = `
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] } ]
`;
// Y is X doubled, plus one per server package (CommonJS) loaded in its thread.
const MODEL = `
import { createRequire } from "node:module";
import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
const cache = createRequire(import.meta.url).cache;
export default class Double {
  execute(requests: InferenceRequest[]) {
    const server = Object.keys(cache).filter((k) => /[\\/]node_modules[\\/](fastify|@grpc|prom-client)[\\/]/.test(k)).length;
    return requests.map((r) => {
      const x = r.getInputTensorByName("X")!.data() as Float32Array;
      return new InferenceResponse({ outputTensors: { Y: Tensor.from(x.map((v) => v * 2 + server)) } });
    });
  }
}
`;
const SERVER_MODULES = /\/src\/server\/|\/src\/index\.ts|\/node_modules\/(fastify|@fastify|@grpc|prom-client)\//;

test("loading a model in the serving thread and in instance threads loads no server module", (t) => {
  const repo = makeRepo({
    in_thread: { config: CONFIG, model: MODEL },
    threaded: { config: `${CONFIG}\nparameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`, model: MODEL },
  });
  const record = join(mkdtempSync(join(tmpdir(), "tb-record-")), "urls.txt");
  const run = spawnSync(
    process.execPath,
    ["--import", "tsx", "--import", "./__test__/fixtures/model-entry/record-hook.mjs", "__test__/fixtures/model-entry/load-models.ts", repo],
    { cwd: ROOT, env: { ...process.env, TB_RECORD_FILE: record }, encoding: "utf8", timeout: 60_000 },
  );
  t.is(run.status, 0, run.stderr);
  t.is(run.stdout, "in_thread 2,4,6\nthreaded 2,4,6\n");
  const urls = readFileSync(record, "utf8")
    .trim()
    .split("\n")
    .map((l) => l.slice(l.indexOf(" ") + 1));
  // The recording saw tensorbridge resolve to the model entry: a check that can fail.
  t.true(urls.some((u) => u.endsWith("/src/model.ts")), "tensorbridge resolved to src/model.ts");
  t.true(urls.some((u) => u.includes("/in_thread/1/model.ts")), "the in-thread model's load was recorded");
  t.deepEqual(
    urls.filter((u) => SERVER_MODULES.test(u)),
    [],
    "server modules loaded",
  );
});

/** Relative imports (static, re-exports and dynamic) of a TypeScript source, resolved to files. */
function importsOf(file: string): string[] {
  const src = readFileSync(file, "utf8");
  const out: string[] = [];
  for (const m of src.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
    const ts = resolve(dirname(file), m[1]!).replace(/\.js$/, ".ts");
    if (existsSync(ts)) out.push(ts);
  }
  return out;
}

test("the static import graph of the model entry and of the instance-thread entry reaches no server module", (t) => {
  for (const entry of ["src/model.ts", "src/runtime/thread-instance-worker.ts"]) {
    const seen = new Set<string>();
    const todo = [join(ROOT, entry)];
    while (todo.length > 0) {
      const f = todo.pop()!;
      if (seen.has(f)) continue;
      seen.add(f);
      todo.push(...importsOf(f));
    }
    t.true(seen.size > 5, `${entry} imports were followed (${seen.size} files)`);
    const server = [...seen].filter((f) => f.includes("/src/server/") || f.endsWith("/src/index.ts")).map((f) => f.slice(ROOT.length));
    t.deepEqual(server, [], `${entry} reaches server modules`);
    const packages = [...seen].flatMap((f) => [...readFileSync(f, "utf8").matchAll(/from\s*"(fastify|@grpc\/[^"]+|prom-client)"/g)].map((m) => m[1]));
    t.deepEqual(packages, [], `${entry} reaches server packages`);
  }
});

test("the model entry exports the tensor and model-author API, the same objects as the root", (t) => {
  for (const name of ["Tensor", "DLPackCapsule", "InferenceRequest", "InferenceResponse", "InferenceResponseSender", "ModelError", "TensorBridgeError", "cuda"] as const) {
    t.is(model[name] as unknown, root[name] as unknown, name);
  }
  t.false("InferenceServer" in model);
  t.false("ModelRegistry" in model);
});

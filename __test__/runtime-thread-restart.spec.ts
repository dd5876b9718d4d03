/**
 * Thread instances that fail alone (`TENSORBRIDGE_INSTANCE_THREADS: "yes"`):
 * a worker that dies (process.exit, an uncaught error after execute()
 * returned) fails its in-flight requests with INTERNAL and is restarted, so
 * later requests succeed; `EXECUTE_TIMEOUT_MS` stops a hung execute()
 * (ERR_EXECUTE_TIMEOUT, naming the model) and restarts the worker; a
 * restart whose initialize() fails leaves the instance failing with the
 * reason; the health endpoints answer while an instance computes.
 */
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";

import test from "ava";

import { ServingError } from "../src/runtime/errors.js";
import { ModelError } from "../src/runtime/model-error.js";
import type { RuntimeLogger } from "../src/runtime/model-version.js";
import { Tensor } from "../src/tensor.js";
import { cleanupRepos, http, makeRepo, setupModelEntry, startTestServer } from "./server-helpers.js";

test.before(async () => {
  await setupModelEntry();
});
test.after.always(() => cleanupRepos());

const THREADS = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;
const TIMEOUT = (ms: number) => `parameters: { key: "EXECUTE_TIMEOUT_MS" value: { string_value: "${ms}" } }`;
const CONFIG = `
input [ { name: "X" data_type: TYPE_FP32 dims: [ -1 ] } ]
output [ { name: "Y" data_type: TYPE_INT32 dims: [ 1 ] } ]
`;

/**
 * Answers Y = [its worker's threadId]; the request's `mode` parameter
 * picks a failure. initialize() throws when the file `no-init` exists in
 * the model repository (a restart that fails).
 */
const MODEL = `
import { existsSync } from "node:fs";
import { join } from "node:path";
import { threadId } from "node:worker_threads";
import { InferenceResponse, Logger, Tensor, type InferenceRequest, type InitializeArgs } from "tensorbridge";
export default class Fragile {
  initialize(args: InitializeArgs) {
    if (existsSync(join(args.model_repository, "..", "no-init"))) throw new Error("initialize refuses this time");
  }
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => {
      const mode = String(r.parameters["mode"] ?? "ok");
      if (mode === "log") Logger.logInfo("hello from " + threadId);
      if (mode === "exit") process.exit(3);
      if (mode === "hang") for (;;) {}
      if (mode === "crash-later") setTimeout(() => { throw new Error("uncaught, after execute()"); }, 0);
      if (mode === "spin") { const end = Date.now() + Number(r.parameters["ms"]); while (Date.now() < end) {} }
      return new InferenceResponse({ outputTensors: { Y: Tensor.from(new Int32Array([threadId]), { name: "Y" }) } });
    });
  }
}
`;

function capture(): { logger: RuntimeLogger; lines: string[] } {
  const lines: string[] = [];
  return { lines, logger: { info: (m) => lines.push(`I ${m}`), warn: (m) => lines.push(`W ${m}`), error: (m) => lines.push(`E ${m}`) } };
}

const x = () => Tensor.from(new Float32Array([1]), { name: "X" });
const thread = (o: { outputs: Tensor[] }) => (o.outputs[0]!.data() as Int32Array)[0]!;

async function serve(config: string) {
  const repo = makeRepo({ fragile: { config, model: MODEL } });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  return { server, lines, repo, mv: () => server.registry.get("fragile") };
}

test("a worker that exits fails its in-flight request with INTERNAL and is restarted; later requests succeed in a fresh worker", async (t) => {
  const { server, lines, mv } = await serve(`${CONFIG}\n${THREADS}`);
  try {
    const before = thread(await mv().infer({ inputs: [x()] }));
    const err = await t.throwsAsync(mv().infer({ inputs: [x()], parameters: { mode: "exit" } }), { instanceOf: ModelError });
    t.is(err?.code, "INTERNAL");
    t.regex(err!.message, /model 'fragile' instance fragile_0_0: its worker thread exited \(code 3\)/);
    const after = thread(await mv().infer({ inputs: [x()] }));
    t.not(after, before, "a new worker thread serves");
    t.true(lines.some((l) => l.startsWith("W model 'fragile' version 1: instance fragile_0_0: its worker thread exited (code 3); restarting its worker thread")), lines.join("\n"));
    // The fresh worker's Logger lines still reach the server's log, with the model's name.
    await mv().infer({ inputs: [x()], parameters: { mode: "log" } });
    t.true(lines.includes(`I model 'fragile' version 1: hello from ${after}`), lines.join("\n"));
    // Over HTTP too: the client sees Triton's 500 with the reason, then 200.
    const bad = await http(server, "POST", "/v2/models/fragile/infer", { inputs: [{ name: "X", datatype: "FP32", shape: [1], data: [1] }], parameters: { mode: "exit" } });
    t.is(bad.status, 500);
    t.regex((bad.json as { error: string }).error, /worker thread exited \(code 3\)/);
    const good = await http(server, "POST", "/v2/models/fragile/infer", { inputs: [{ name: "X", datatype: "FP32", shape: [1], data: [1] }] });
    t.is(good.status, 200, good.body.toString());
  } finally {
    await server.close();
  }
});

test("an uncaught error after execute() returned: the worker restarts, the next request succeeds", async (t) => {
  const { server, lines, mv } = await serve(`${CONFIG}\n${THREADS}`);
  try {
    const first = thread(await mv().infer({ inputs: [x()] }));
    // Its answer and the worker's 'error' event race to the serving thread: either way the request ends, answered or with the crash.
    await mv()
      .infer({ inputs: [x()], parameters: { mode: "crash-later" } })
      .then(
        (o) => t.is(thread(o), first),
        (e: Error) => t.regex(e.message, /its worker thread failed: uncaught, after execute\(\)/),
      );
    // A request sent before the serving thread hears of the crash would fail with it (it is in flight): wait for the restart.
    const restarted = (): boolean => lines.some((l) => /instance fragile_0_0: its worker thread failed: uncaught, after execute\(\); restarting/.test(l));
    for (let i = 0; i < 200 && !restarted(); i++) await new Promise((r) => setTimeout(r, 25));
    t.true(restarted(), lines.join("\n"));
    // The restart may still be under way: the next request waits for it.
    t.not(thread(await mv().infer({ inputs: [x()] })), first);
  } finally {
    await server.close();
  }
});

test("EXECUTE_TIMEOUT_MS: a hung execute() fails with ERR_EXECUTE_TIMEOUT naming the model; the worker is stopped and restarted", async (t) => {
  const { server, lines, mv } = await serve(`${CONFIG}\n${THREADS}\n${TIMEOUT(300)}`);
  try {
    const before = thread(await mv().infer({ inputs: [x()] }));
    const err = await t.throwsAsync(mv().infer({ inputs: [x()], parameters: { mode: "hang" } }), { instanceOf: ServingError });
    t.is(err?.code, "ERR_EXECUTE_TIMEOUT");
    t.is(err?.tritonCode, "UNAVAILABLE");
    t.regex(err!.message, /model 'fragile' instance fragile_0_0: execute\(\) did not finish within 300 ms \(parameter EXECUTE_TIMEOUT_MS\)/);
    const after = thread(await mv().infer({ inputs: [x()] }));
    t.not(after, before);
    t.true(lines.some((l) => l.includes("W model 'fragile' version 1: instance fragile_0_0: execute() did not finish within 300 ms")), lines.join("\n"));
    const http503 = await http(server, "POST", "/v2/models/fragile/infer", { inputs: [{ name: "X", datatype: "FP32", shape: [1], data: [1] }], parameters: { mode: "hang" } });
    t.regex((http503.json as { error: string }).error, /did not finish within 300 ms/);
  } finally {
    await server.close();
  }
});

test("a restart whose initialize() fails leaves the instance failing every request with the reason; the server goes on", async (t) => {
  const { server, repo, mv } = await serve(`${CONFIG}\n${THREADS}`);
  try {
    await mv().infer({ inputs: [x()] });
    writeFileSync(join(repo, "no-init"), "");
    t.true(existsSync(join(repo, "no-init")));
    await t.throwsAsync(mv().infer({ inputs: [x()], parameters: { mode: "exit" } }), { message: /exited \(code 3\)/ });
    const err = await t.throwsAsync(mv().infer({ inputs: [x()] }), { instanceOf: ModelError });
    t.is(err?.code, "INTERNAL");
    t.regex(err!.message, /its worker thread could not be restarted: .*initialize refuses this time/);
    const live = await http(server, "GET", "/v2/health/live");
    t.is(live.status, 200);
  } finally {
    await server.close();
  }
});

test("the health endpoints answer while a thread instance computes (a busy loop in its worker)", async (t) => {
  const { server, mv } = await serve(`${CONFIG}\n${THREADS}`);
  try {
    let computing = true;
    const busy = mv()
      .infer({ inputs: [x()], parameters: { mode: "spin", ms: 2500 } })
      .finally(() => (computing = false));
    // Give the request time to reach the worker, then ask: each answer comes while the worker still spins.
    await new Promise((r) => setTimeout(r, 200));
    for (const path of ["/v2/health/live", "/v2/health/ready", "/v2/models/fragile/ready", "/v2/health/live"]) {
      const r = await http(server, "GET", path);
      t.is(r.status, 200, path);
      t.true(computing, `${path} answered while execute() was still running`);
    }
    await busy;
  } finally {
    await server.close();
  }
});

test("EXECUTE_TIMEOUT_MS takes a whole number of milliseconds; on an in-thread model it is a warning (it cannot be stopped)", async (t) => {
  const repo = makeRepo({
    bad: { config: `${CONFIG}\n${THREADS}\n${TIMEOUT(0)}`, model: MODEL },
    words: { config: `${CONFIG}\n${THREADS}\nparameters: { key: "EXECUTE_TIMEOUT_MS" value: { string_value: "1s" } }`, model: MODEL },
    in_thread: { config: `${CONFIG}\n${TIMEOUT(100)}`, model: MODEL },
  });
  const { logger, lines } = capture();
  const server = await startTestServer(repo, { logger });
  try {
    for (const m of ["bad", "words"]) {
      const e = await t.throwsAsync(server.registry.load(m), { instanceOf: ServingError });
      t.is(e?.code, "ERR_MODEL_LOAD");
      t.regex(e!.message, /parameter EXECUTE_TIMEOUT_MS must be a whole number of milliseconds >= 1/);
    }
    t.true(server.registry.get("in_thread").ready);
    t.true(lines.some((l) => l.startsWith("W model 'in_thread' version 1: parameter EXECUTE_TIMEOUT_MS applies to thread instances only")), lines.join("\n"));
  } finally {
    await server.close();
  }
});

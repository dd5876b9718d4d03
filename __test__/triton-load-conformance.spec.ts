/**
 * Differential: what Triton 2.51 (Python backend) and tensorbridge do with
 * the same load-time configs, each model written for its own backend:
 * warm-up (how many requests an instance sees before the client's; the
 * reason of a sample that raises, and of one larger than the model's batch), auto_complete_config (the completed config; a
 * conflicting max_batch_size or data type), a KIND_GPU group on this
 * machine's GPUs, ensemble_scheduling on a Python/TypeScript model, and an
 * exception in execute() (the client's error). Messages are compared after
 * Triton's status prefix ("Invalid argument: ", "Internal: ") and Python
 * tracebacks ("\n\nAt:\n…") are taken off: tensorbridge's must contain
 * Triton's. The two models whose warm-up raises are loaded by Triton
 * processes of their own (Triton 2.51 crashes on them in some starts; see
 * CRASHING).
 *
 * Needs bench/.work/venv-peers (`bash bench/serving/setup.sh peers`);
 * without it the tests are skipped with the reason in their titles.
 */
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { startTritonReady, tritonMissing, type RunningTriton } from "../bench/serving/triton.js";
import type { InferenceServer } from "../src/server/server.js";
import { startTestServer } from "./server-helpers.js";

const missing = tritonMissing();

interface Side {
  url: string;
  index: { name: string; state?: string; reason?: string }[];
}
interface Ctx {
  triton?: RunningTriton;
  /** The Tritons of the models it crashes on ({@link CRASHING}), one each. */
  crashing: RunningTriton[];
  server?: InferenceServer;
  dirs: string[];
  sides?: { triton: Side; tensorbridge: Side };
  failed?: string;
}
const test = anyTest as TestFn<Ctx>;

const IO = `
input [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUTPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]
`;
// A named group, so that both servers name the instance g_0.
const GROUP = `instance_group [ { name: "g" kind: KIND_CPU } ]`;
const WARM_FAIL = `model_warmup [ { name: "wbad" batch_size: 2 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]`;
const WARM_OK = `model_warmup [ { name: "zeros" batch_size: 2 count: 3 inputs { key: "INPUT0" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]`;

/** Per model: config.pbtxt (undefined: none), model.py, model.ts. */
const MODELS: Record<string, { config: string | undefined; py: string; ts: string }> = {
  warm_fail: {
    config: `backend: "python"\n${IO}\n${GROUP}\n${WARM_FAIL}`,
    py: `class TritonPythonModel:
    def execute(self, requests):
        raise TypeError("warm-up boom")
`,
    ts: `export default class M { execute(): never { throw new TypeError("warm-up boom"); } }`,
  },
  warm_raise: {
    config: `backend: "python"\nmax_batch_size: 4\n${IO}\n${GROUP}\n${WARM_FAIL}`,
    py: `class TritonPythonModel:
    def execute(self, requests):
        raise TypeError("warm-up boom")
`,
    ts: `export default class M { execute(): never { throw new TypeError("warm-up boom"); } }`,
  },
  warm_ok: {
    // Answers, per request, how many requests the instance saw before the first one with nonzero data.
    config: `backend: "python"\nmax_batch_size: 8\n${IO}\n${GROUP}\n${WARM_OK}`,
    py: `import numpy as np, triton_python_backend_utils as pb_utils
class TritonPythonModel:
    def initialize(self, args):
        self.seen = 0
        self.warmed = -1
    def execute(self, requests):
        out = []
        for r in requests:
            x = pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy()
            if x.ravel()[0] != 0 and self.warmed < 0:
                self.warmed = self.seen
            self.seen += 1
            out.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", np.full(x.shape, self.warmed, dtype=np.float32))]))
        return out
`,
    ts: `import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
export default class M {
  seen = 0;
  warmed = -1;
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => {
      const x = r.getInputTensorByName("INPUT0")!;
      if ((x.data() as Float32Array)[0] !== 0 && this.warmed < 0) this.warmed = this.seen;
      this.seen++;
      return new InferenceResponse({ outputTensors: { OUTPUT0: Tensor.from(new Float32Array(4 * x.shape[0]!).fill(this.warmed), { shape: [...x.shape] }) } });
    });
  }
}`,
  },
  auto_nocfg: {
    config: undefined,
    py: `import triton_python_backend_utils as pb_utils
class TritonPythonModel:
    @staticmethod
    def auto_complete_config(c):
        c.add_input({"name": "INPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        c.add_output({"name": "OUTPUT0", "data_type": "TYPE_FP32", "dims": [4]})
        c.set_max_batch_size(4)
        c.set_dynamic_batching()
        return c
    def execute(self, requests):
        return [pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT0", pb_utils.get_input_tensor_by_name(r, "INPUT0").as_numpy())]) for r in requests]
`,
    ts: `import { InferenceResponse, type AutoCompleteModelConfig, type InferenceRequest } from "tensorbridge";
export default class M {
  static autoCompleteConfig(c: AutoCompleteModelConfig) {
    c.addInput({ name: "INPUT0", data_type: "TYPE_FP32", dims: [4] });
    c.addOutput({ name: "OUTPUT0", data_type: "TYPE_FP32", dims: [4] });
    c.setMaxBatchSize(4);
    c.setDynamicBatching();
    return c;
  }
  execute(requests: InferenceRequest[]) {
    return requests.map((r) => new InferenceResponse({ outputTensors: { OUTPUT0: r.getInputTensorByName("INPUT0")! } }));
  }
}`,
  },
  auto_mbs: {
    config: `backend: "python"\nmax_batch_size: 8`,
    py: `class TritonPythonModel:
    @staticmethod
    def auto_complete_config(c):
        c.set_max_batch_size(4)
        return c
    def execute(self, requests):
        return []
`,
    ts: `import type { AutoCompleteModelConfig } from "tensorbridge";
export default class M { static autoCompleteConfig(c: AutoCompleteModelConfig) { c.setMaxBatchSize(4); return c; } execute() { return []; } }`,
  },
  auto_dtype: {
    config: `backend: "python"\ninput [ { name: "INPUT0" data_type: TYPE_FP32 dims: [ 4 ] } ]`,
    py: `class TritonPythonModel:
    @staticmethod
    def auto_complete_config(c):
        c.add_input({"name": "INPUT0", "data_type": "TYPE_INT32", "dims": [4]})
        return c
    def execute(self, requests):
        return []
`,
    ts: `import type { AutoCompleteModelConfig } from "tensorbridge";
export default class M { static autoCompleteConfig(c: AutoCompleteModelConfig) { c.addInput({ name: "INPUT0", data_type: "TYPE_INT32", dims: [4] }); return c; } execute() { return []; } }`,
  },
  gpu: {
    config: `backend: "python"\n${IO}\ninstance_group [ { kind: KIND_GPU gpus: [ 7 ] } ]`,
    py: `class TritonPythonModel:
    def execute(self, requests):
        return []
`,
    ts: `export default class M { execute() { return []; } }`,
  },
  ens: {
    config: `backend: "python"\n${IO}\nensemble_scheduling { step [ { model_name: "warm_ok" model_version: -1 } ] }`,
    py: `class TritonPythonModel:
    def execute(self, requests):
        return []
`,
    ts: `export default class M { execute() { return []; } }`,
  },
  raise: {
    config: `backend: "python"\n${IO}\n${GROUP}`,
    py: `class TritonPythonModel:
    def execute(self, requests):
        raise TypeError("bad thing")
`,
    ts: `export default class M { execute(): never { throw new TypeError("bad thing"); } }`,
  },
};

/**
 * Triton 2.51 dies (SIGSEGV) while warming up a model whose execute()
 * raises, in about half of its starts (measured 2026-12-07: warm_fail 2 of
 * 6 starts alone, then 5 of 12; warm_raise 3 of 6; never without them).
 * Each of these models gets a Triton of its own, started again until it
 * stays up (up to CRASH_TRIES times: a start takes about 5 s, and at a
 * crash rate of one half all twelve starts of a model fail once in 4,096
 * runs), so that one unlucky start does not take the other models'
 * comparisons with it. A clean clone's CI run needed four starts of
 * warm_fail.
 */
const CRASHING = ["warm_fail", "warm_raise"];
const CRASH_TRIES = 12;

/** A repository of `names` (default: every model) for `kind`. */
function repo(kind: "triton" | "tensorbridge", names: readonly string[] = Object.keys(MODELS)): string {
  const dir = mkdtempSync(join(tmpdir(), `tb-load-conf-${kind}-`));
  for (const [name, m] of Object.entries(MODELS).filter(([n]) => names.includes(n))) {
    mkdirSync(join(dir, name, "1"), { recursive: true });
    if (m.config !== undefined) writeFileSync(join(dir, name, "config.pbtxt"), kind === "triton" ? m.config : m.config.replace('backend: "python"\n', ""));
    writeFileSync(join(dir, name, "1", kind === "triton" ? "model.py" : "model.ts"), kind === "triton" ? m.py : m.ts);
  }
  return dir;
}

async function index(url: string): Promise<Side["index"]> {
  return (await (await fetch(`${url}/v2/repository/index`, { method: "POST", body: "{}" })).json()) as Side["index"];
}

/**
 * Triton's message without its status prefix, Python tracebacks, and the
 * `ValueError: ` of pb_utils' checks (tensorbridge's are ServingErrors).
 */
const core = (m: string): string =>
  m
    .replace(/^(Internal|Invalid argument|Unavailable|Unknown): /, "")
    .replace(/^ValueError: /, "")
    .replace(/\n\nAt:\n[\s\S]*?(?=; |$)/g, "");

test.before(async (t) => {
  t.context.dirs = [];
  t.context.crashing = [];
  if (missing) return;
  const tritonRepo = repo("triton", Object.keys(MODELS).filter((n) => !CRASHING.includes(n)));
  const tbRepo = repo("tensorbridge");
  t.context.dirs.push(tritonRepo, tbRepo);
  const args = ["--exit-on-error=false", "--strict-readiness=false"];
  try {
    t.context.server = await startTestServer(tbRepo);
    // startTritonReady starts Triton again if it crashes while loading.
    const ready = await startTritonReady({ repository: tritonRepo, args }, ["warm_ok", "auto_nocfg", "raise"], 3, (m) => t.log(m));
    t.context.triton = ready.triton;
    // Triton is up once its first load is over, failed loads included: the index then has their reasons.
    let tritonIndex = await index(t.context.triton.httpUrl);
    for (const name of CRASHING) {
      const dir = repo("triton", [name]);
      t.context.dirs.push(dir);
      const own = await startTritonReady({ repository: dir, args }, [], CRASH_TRIES, (m) => t.log(`${name}: ${m}`));
      t.context.crashing.push(own.triton);
      tritonIndex = [...tritonIndex, ...(await index(own.triton.httpUrl))];
    }
    const tb = `http://${t.context.server.address.host}:${t.context.server.address.port}`;
    t.context.sides = {
      triton: { url: t.context.triton.httpUrl, index: tritonIndex },
      tensorbridge: { url: tb, index: await index(tb) },
    };
  } catch (e) {
    t.context.failed = `${(e as Error).message}${t.context.triton ? `\n--- tritonserver log (tail):\n${t.context.triton.log().slice(-3000)}` : ""}`;
  }
});

test.after.always(async (t) => {
  await t.context.server?.close();
  await t.context.triton?.stop();
  for (const own of t.context.crashing ?? []) await own.stop();
  for (const d of t.context.dirs ?? []) rmSync(d, { recursive: true, force: true });
});

const cmp = missing ? test.skip : test;
const skipped = missing ? ` (skipped: ${missing})` : "";

function sides(t: { context: Ctx; fail(m?: string): void }): { triton: Side; tensorbridge: Side } | undefined {
  if (t.context.failed || !t.context.sides) {
    t.fail(t.context.failed ?? "the servers did not start");
    return undefined;
  }
  return t.context.sides;
}

cmp(`load failures: tensorbridge's reason contains Triton 2.51's (warm-up, auto-complete conflicts, KIND_GPU)${skipped}`, (t) => {
  const s = sides(t);
  if (!s) return;
  for (const name of ["warm_fail", "warm_raise", "auto_mbs", "auto_dtype", "gpu"]) {
    const theirs = s.triton.index.find((m) => m.name === name);
    const ours = s.tensorbridge.index.find((m) => m.name === name);
    t.is(ours?.state, theirs?.state, `${name}: state`);
    if (theirs?.state === "READY") continue;
    // Triton's GPU message goes on to list GPUs by compute capability; ours lists those present.
    const words = name === "gpu" ? core(theirs!.reason!).replace(/ GPUs with at least[\s\S]*$/, "") : core(theirs!.reason!);
    t.true(ours!.reason!.includes(words), `${name}:\n  triton:       ${words}\n  tensorbridge: ${ours!.reason}`);
  }
});

cmp(`ensemble_scheduling on a backend model: neither server serves it${skipped}`, async (t) => {
  const s = sides(t);
  if (!s) return;
  for (const side of [s.triton, s.tensorbridge]) t.not((await fetch(`${side.url}/v2/models/ens/ready`)).status, 200, side.url);
  t.regex(t.context.triton!.log(), /ensemble scheduling cannot be set for model 'ens' whose platform is not ensemble/);
  t.regex(s.tensorbridge.index.find((m) => m.name === "ens")!.reason!, /ensemble scheduling cannot be set for model 'ens' whose platform is not ensemble/);
});

cmp(`warm-up: both instances saw the same number of warm-up requests before the client's${skipped}`, async (t) => {
  const s = sides(t);
  if (!s) return;
  const body = JSON.stringify({ inputs: [{ name: "INPUT0", datatype: "FP32", shape: [1, 4], data: [1, 1, 1, 1] }] });
  const [theirs, ours] = await Promise.all(
    [s.triton, s.tensorbridge].map(async (side) => ((await (await fetch(`${side.url}/v2/models/warm_ok/infer`, { method: "POST", body })).json()) as { outputs: { data: number[] }[] }).outputs[0]!.data[0]),
  );
  t.is(theirs, 6);
  t.is(ours, theirs);
});

/** The parts of a config that auto-complete may set. */
const completed = (c: Record<string, unknown>) => ({
  max_batch_size: c["max_batch_size"],
  input: c["input"],
  output: c["output"],
  dynamic_batching: c["dynamic_batching"] !== undefined,
});

cmp(`auto-complete: the completed config (inputs, outputs, max_batch_size, dynamic_batching) is Triton's${skipped}`, async (t) => {
  const s = sides(t);
  if (!s) return;
  const [theirs, ours] = await Promise.all([s.triton, s.tensorbridge].map(async (side) => completed((await (await fetch(`${side.url}/v2/models/auto_nocfg/config`)).json()) as Record<string, unknown>)));
  t.deepEqual(ours, theirs);
});

cmp(`execute() raising: the client's error is Triton's, traceback aside${skipped}`, async (t) => {
  const s = sides(t);
  if (!s) return;
  const body = JSON.stringify({ inputs: [{ name: "INPUT0", datatype: "FP32", shape: [4], data: [1, 2, 3, 4] }] });
  const [theirs, ours] = await Promise.all(
    [s.triton, s.tensorbridge].map(async (side) => {
      const r = await fetch(`${side.url}/v2/models/raise/infer`, { method: "POST", body });
      return { status: r.status, error: core(((await r.json()) as { error: string }).error) };
    }),
  );
  t.deepEqual(ours, theirs);
});

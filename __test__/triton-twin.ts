/**
 * A tritonclient suite over twin models: the same models as Python for
 * Triton 2.51's Python backend and as TypeScript for tensorbridge
 * (fixtures/<name>/model.py and model.ts, one config body per model in
 * fixtures/<name>/models.json), driven by fixtures/<name>/probe.py, which
 * prints a transcript (a JSON object of answers by key).
 *
 * - tensorbridge's transcript must equal fixtures/<name>/triton-2.51.json,
 *   the one real Triton 2.51 gave (needs tritonclient: bench/.work/venv-client),
 *   one test per key.
 * - Where Triton runs here too (bench/.work/venv-peers), it is probed
 *   alongside and the two live transcripts must agree.
 *
 * The transcripts go to bench/.work/<name>/ for reading. Used by
 * runtime-batching-triton.spec.ts and runtime-ordering-triton.spec.ts.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { WORK, startTritonReady, tritonMissing, type RunningTriton } from "../bench/serving/triton.js";
import type { InferenceServer } from "../src/server/server.js";
import { CLIENT_VENV, ROOT, grpcClientMissing, runProbe, startTestServer } from "./server-helpers.js";

type Transcript = Record<string, unknown>;
interface Ctx {
  repos: string[];
  server?: InferenceServer;
  triton?: RunningTriton;
  ours?: Transcript;
  theirs?: Transcript;
  failed?: string;
}

/** What differs between twin suites. */
export interface TwinSuite {
  /** The fixtures folder under __test__/fixtures, and the transcripts' folder under bench/.work. */
  name: string;
  /** config.pbtxt of a model after its `name` and `backend` lines, before its models.json body. */
  config: string;
  /** How long the probe may take, in ms. */
  probeTimeoutMs: number;
  /** How the per-key tests say what they check. */
  claim: string;
}

/** Registers the suite's hooks and tests on ava's `test`. */
export function twinSuite(suite: TwinSuite): void {
  const test = anyTest as TestFn<Ctx>;
  const fixtures = join(ROOT, "__test__/fixtures", suite.name);
  const out = join(WORK, suite.name);
  const clientMissing = grpcClientMissing();
  const noTriton = clientMissing ?? tritonMissing();
  const expected = JSON.parse(readFileSync(join(fixtures, "triton-2.51.json"), "utf8")) as Transcript;
  const models = JSON.parse(readFileSync(join(fixtures, "models.json"), "utf8")) as Record<string, string>;

  /** A repository with every model of models.json, for one backend. */
  const repo = (kind: "triton" | "tensorbridge"): string => {
    const dir = mkdtempSync(join(tmpdir(), `tb-${suite.name}-${kind}-`));
    for (const [name, body] of Object.entries(models)) {
      mkdirSync(join(dir, name, "1"), { recursive: true });
      const file = kind === "triton" ? "model.py" : "model.ts";
      writeFileSync(join(dir, name, "config.pbtxt"), `name: "${name}"\nbackend: "${kind === "triton" ? "python" : "tensorbridge"}"\n${suite.config}${body}\n`);
      copyFileSync(join(fixtures, file), join(dir, name, "1", file));
    }
    return dir;
  };

  const probe = (http: string, grpc: string): Promise<Transcript> =>
    runProbe<Transcript>(join(CLIENT_VENV, "bin/python"), join(fixtures, "probe.py"), ["--http", http, "--grpc", grpc], suite.probeTimeoutMs);

  test.before(async (t) => {
    t.context.repos = [];
    if (clientMissing) return;
    try {
      const tb = repo("tensorbridge");
      t.context.repos.push(tb);
      const server = (t.context.server = await startTestServer(tb));
      const probes: Promise<Transcript>[] = [probe(`${server.address.host}:${server.address.port}`, server.grpcAddress!.url)];
      if (!noTriton) {
        const tr = repo("triton");
        t.context.repos.push(tr);
        const { triton, httpPort, grpcPort } = await startTritonReady({ repository: tr }, Object.keys(models), 3, (m) => t.log(m));
        t.context.triton = triton;
        probes.push(probe(`127.0.0.1:${httpPort}`, `127.0.0.1:${grpcPort}`));
      }
      const [ours, theirs] = await Promise.all(probes);
      t.context.ours = ours;
      t.context.theirs = theirs;
      mkdirSync(out, { recursive: true });
      writeFileSync(join(out, "tensorbridge.json"), JSON.stringify(ours, null, 1));
      if (theirs) writeFileSync(join(out, "triton.json"), JSON.stringify(theirs, null, 1));
    } catch (e) {
      t.context.failed = `${(e as Error).message}${t.context.triton ? `\n--- tritonserver log (tail):\n${t.context.triton.log().slice(-3000)}` : ""}`;
    }
  });

  test.after.always(async (t) => {
    await t.context.server?.close();
    await t.context.triton?.stop();
    for (const d of t.context.repos) rmSync(d, { recursive: true, force: true });
  });

  const clientTest = clientMissing ? test.skip : test;
  for (const key of Object.keys(expected).toSorted()) {
    clientTest(`tritonclient ${key}: tensorbridge ${suite.claim}${clientMissing ? ` (skipped: ${clientMissing})` : ""}`, (t) => {
      if (t.context.failed || !t.context.ours) return t.fail(t.context.failed ?? "no transcript");
      t.deepEqual(t.context.ours[key], expected[key]);
    });
  }

  const liveTest = noTriton ? test.skip : test;
  liveTest(`tritonclient against live Triton 2.51: the same transcript${noTriton ? ` (skipped: ${noTriton})` : ""}`, (t) => {
    if (t.context.failed || !t.context.ours || !t.context.theirs) return t.fail(t.context.failed ?? "no transcripts");
    const { ours, theirs } = t.context;
    for (const key of Object.keys(theirs).toSorted()) {
      if (JSON.stringify(ours[key]) !== JSON.stringify(theirs[key])) t.log(`${key}\n  triton:       ${JSON.stringify(theirs[key])}\n  tensorbridge: ${JSON.stringify(ours[key])}`);
    }
    t.deepEqual(ours, theirs);
  });
}

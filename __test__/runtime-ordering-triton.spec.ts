/**
 * `dynamic_batching { preserve_ordering: true }` through the official
 * tritonclient (HTTP, gRPC unary and a gRPC stream), compared with real
 * Triton 2.51.
 *
 * fixtures/ordering/probe.py drives the models of fixtures/ordering/
 * models.json (two instances each, twin Python and TypeScript models whose
 * work per request is its input, in ms): a slow request, then a fast one and
 * one answered with an error response while the slow one runs. It prints
 * the answers in the order they came back, for the models with and without
 * preserve_ordering, unary (was each answer held for the slow one?), on one
 * stream, and on one stream to a decoupled model (every response in order).
 *
 * - tensorbridge's transcript must equal fixtures/ordering/triton-2.51.json,
 *   the one real Triton 2.51 gave (needs tritonclient: bench/.work/venv-client).
 * - Where Triton runs here too (bench/.work/venv-peers), it is probed
 *   alongside and the two live transcripts must agree.
 *
 * The transcripts go to bench/.work/ordering/ for reading. The
 * runtime's own tests of the same rules: runtime-ordering.spec.ts.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { WORK, startTritonReady, tritonMissing, type RunningTriton } from "../bench/serving/triton.js";
import type { InferenceServer } from "../src/server/server.js";
import { CLIENT_VENV, ROOT, grpcClientMissing, runProbe, startTestServer } from "./server-helpers.js";

const FIXTURES = join(ROOT, "__test__/fixtures/ordering");
const OUT = join(WORK, "ordering");
const clientMissing = grpcClientMissing();
const noTriton = clientMissing ?? tritonMissing();

type Transcript = Record<string, unknown>;
interface Ctx {
  repos: string[];
  server?: InferenceServer;
  triton?: RunningTriton;
  ours?: Transcript;
  theirs?: Transcript;
  failed?: string;
}
const test = anyTest as TestFn<Ctx>;

const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, "triton-2.51.json"), "utf8")) as Transcript;
const MODELS = JSON.parse(readFileSync(join(FIXTURES, "models.json"), "utf8")) as Record<string, string>;

/** A repository with every model of models.json, for one backend. */
function repo(kind: "triton" | "tensorbridge"): string {
  const dir = mkdtempSync(join(tmpdir(), `tb-ordering-${kind}-`));
  for (const [name, body] of Object.entries(MODELS)) {
    mkdirSync(join(dir, name, "1"), { recursive: true });
    const file = kind === "triton" ? "model.py" : "model.ts";
    writeFileSync(
      join(dir, name, "config.pbtxt"),
      `name: "${name}"\nbackend: "${kind === "triton" ? "python" : "tensorbridge"}"\nmax_batch_size: 1\n` +
        `input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
        `output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
        `instance_group [ { count: 2 kind: KIND_CPU } ]\n${body}\n`,
    );
    copyFileSync(join(FIXTURES, file), join(dir, name, "1", file));
  }
  return dir;
}

function probe(http: string, grpc: string): Promise<Transcript> {
  return runProbe<Transcript>(join(CLIENT_VENV, "bin/python"), join(FIXTURES, "probe.py"), ["--http", http, "--grpc", grpc], 300_000);
}

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
      const { triton, httpPort, grpcPort } = await startTritonReady({ repository: tr }, Object.keys(MODELS), 3, (m) => t.log(m));
      t.context.triton = triton;
      probes.push(probe(`127.0.0.1:${httpPort}`, `127.0.0.1:${grpcPort}`));
    }
    const [ours, theirs] = await Promise.all(probes);
    t.context.ours = ours;
    t.context.theirs = theirs;
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, "tensorbridge.json"), JSON.stringify(ours, null, 1));
    if (theirs) writeFileSync(join(OUT, "triton.json"), JSON.stringify(theirs, null, 1));
  } catch (e) {
    t.context.failed = `${(e as Error).message}${t.context.triton ? `\n--- tritonserver log (tail):\n${t.context.triton.log().slice(-3000)}` : ""}`;
  }
});

test.after.always(async (t) => {
  await t.context.server?.close();
  await t.context.triton?.stop();
  for (const d of t.context.repos) rmSync(d, { recursive: true, force: true });
});

const keys = Object.keys(EXPECTED).toSorted();
const clientTest = clientMissing ? test.skip : test;
for (const key of keys) {
  clientTest(`tritonclient ${key}: tensorbridge answers in the order Triton 2.51 did${clientMissing ? ` (skipped: ${clientMissing})` : ""}`, (t) => {
    if (t.context.failed || !t.context.ours) return t.fail(t.context.failed ?? "no transcript");
    t.deepEqual(t.context.ours[key], EXPECTED[key]);
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

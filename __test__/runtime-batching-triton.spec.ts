/**
 * The dynamic batcher through the official tritonclient (HTTP and gRPC),
 * compared with real Triton 2.51.
 *
 * fixtures/batching/probe.py drives the models of fixtures/batching/
 * models.json (one instance each, execute() sleeping a while so that
 * requests queue): a full queue (max_queue_size), a queue timeout with
 * REJECT and with DELAY, allow_timeout_override on and off, priority levels
 * (and a level's own max_queue_size), preferred_batch_size, the default
 * preferred size, max_batch_size as the sum of dim 0, and
 * max_queue_delay_microseconds; then each model's statistics (batch_stats
 * included) over HTTP and gRPC. It prints one transcript per server: each
 * request's error (status and message) or the batch that served it (its
 * total size and the execute() call's index).
 *
 * - tensorbridge's transcript must equal fixtures/batching/triton-2.51.json,
 *   the one real Triton 2.51 gave (needs tritonclient: bench/.work/venv-client).
 * - Where Triton runs here too (bench/.work/venv-peers), it is probed
 *   alongside and the two live transcripts must agree.
 *
 * The transcripts go to bench/.work/batching/ for reading.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { WORK, startTritonReady, tritonMissing, type RunningTriton } from "../bench/serving/triton.js";
import type { InferenceServer } from "../src/server/server.js";
import { CLIENT_VENV, ROOT, grpcClientMissing, runProbe, startTestServer } from "./server-helpers.js";

const FIXTURES = join(ROOT, "__test__/fixtures/batching");
const OUT = join(WORK, "batching");
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

/** A repository with every model of models.json, for one backend. */
function repo(kind: "triton" | "tensorbridge"): string {
  const dir = mkdtempSync(join(tmpdir(), `tb-batching-${kind}-`));
  const models = JSON.parse(readFileSync(join(FIXTURES, "models.json"), "utf8")) as Record<string, string>;
  for (const [name, body] of Object.entries(models)) {
    mkdirSync(join(dir, name, "1"), { recursive: true });
    const file = kind === "triton" ? "model.py" : "model.ts";
    writeFileSync(
      join(dir, name, "config.pbtxt"),
      `name: "${name}"\nbackend: "${kind === "triton" ? "python" : "tensorbridge"}"\n` +
        `input [ { name: "IN" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
        `output [ { name: "OUT" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "BATCH" data_type: TYPE_INT32 dims: [ 1 ] }, { name: "ORDER" data_type: TYPE_INT32 dims: [ 1 ] } ]\n` +
        `instance_group [ { count: 1 kind: KIND_CPU } ]\n${body}\n`,
    );
    copyFileSync(join(FIXTURES, file), join(dir, name, "1", file));
  }
  return dir;
}

function probe(http: string, grpc: string): Promise<Transcript> {
  return runProbe<Transcript>(join(CLIENT_VENV, "bin/python"), join(FIXTURES, "probe.py"), ["--http", http, "--grpc", grpc], 420_000);
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
      const { triton, httpPort, grpcPort } = await startTritonReady({ repository: tr }, Object.keys(JSON.parse(readFileSync(join(FIXTURES, "models.json"), "utf8")) as object), 3, (m) => t.log(m));
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
  clientTest(`tritonclient ${key}: tensorbridge answers as Triton 2.51 did${clientMissing ? ` (skipped: ${clientMissing})` : ""}`, (t) => {
    if (t.context.failed || !t.context.ours) return t.fail(t.context.failed ?? "no transcript");
    t.deepEqual(t.context.ours[key], EXPECTED[key]);
  });
}

const liveTest = noTriton ? test.skip : test;
liveTest(`tritonclient against live Triton 2.51: the same transcript${noTriton ? ` (skipped: ${noTriton})` : ""}`, (t) => {
  if (t.context.failed || !t.context.ours || !t.context.theirs) return t.fail(t.context.failed ?? "no transcripts");
  const { ours, theirs } = t.context;
  for (const key of keys) {
    if (JSON.stringify(ours[key]) !== JSON.stringify(theirs[key])) t.log(`${key}\n  triton:       ${JSON.stringify(theirs[key])}\n  tensorbridge: ${JSON.stringify(ours[key])}`);
  }
  t.deepEqual(ours, theirs);
});

/**
 * Differential conformance: tensorbridge against real Triton 2.51.
 *
 * Both servers serve the same models, each written for its own backend
 * (fixtures/conformance/triton: Python-backend `model.py`;
 * fixtures/conformance/tensorbridge: `model.ts`; plus add_sub from
 * bench/serving/triton_models and examples/models): add_sub, the decoupled
 * repeat / repeat_final / decoupled_empty / decoupled_error, and fail (an
 * error response) / raise (execute() throws). One Python probe
 * (fixtures/conformance/probe.py, with the official tritonclient.grpc and
 * raw HTTP) runs the same requests against each and prints a normalised
 * transcript; each test below compares one feature group of the two
 * transcripts. The probe's docstring says what is normalised away and why.
 *
 * The transcripts are written to bench/.work/conformance/ (triton.json,
 * tensorbridge.json, diff.txt) for reading.
 *
 * Needs bench/.work/venv-peers (Triton, `bash bench/serving/setup.sh peers`)
 * and bench/.work/venv-client (tritonclient, `bash bench/serving/setup.sh
 * client`); without them every group is skipped with the reason in its title.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { WORK, startTritonReady, tritonMissing, type RunningTriton } from "../bench/serving/triton.js";
import type { InferenceServer } from "../src/server/server.js";
import { ROOT, runProbe, startTestServer } from "./server-helpers.js";

const FIXTURES = join(ROOT, "__test__/fixtures/conformance");
const CLIENT = process.env["TENSORBRIDGE_CLIENT_VENV"] ?? join(WORK, "venv-client");
const PYTHON = join(CLIENT, "bin/python");
const OUT = join(WORK, "conformance");

/** The feature groups of probe.py, one test each. */
const GROUPS = ["http-infer", "errors", "decoupled-http-refusal", "http-generate", "metadata", "grpc-unary", "grpc-stream", "grpc-metadata"] as const;
const MODELS = ["add_sub", "repeat", "repeat_final", "decoupled_empty", "decoupled_error", "fail", "raise"];

function clientMissing(): string | undefined {
  if (!existsSync(PYTHON)) return `venv-client is missing (${CLIENT}); run: bash bench/serving/setup.sh client`;
  try {
    const lib = join(CLIENT, "lib");
    if (readdirSync(lib).some((py) => existsSync(join(lib, py, "site-packages/tritonclient/grpc")))) return undefined;
  } catch {
    // fall through
  }
  return `tritonclient[grpc] is missing from ${CLIENT}; run: bash bench/serving/setup.sh --force client`;
}

const missing = tritonMissing() ?? clientMissing();

type Transcript = Record<string, Record<string, unknown>>;
interface Ctx {
  triton?: RunningTriton;
  server?: InferenceServer;
  repos: string[];
  transcripts?: { triton: Transcript; tensorbridge: Transcript };
  /** Why no transcripts were taken (a server did not start, a probe failed). */
  failed?: string;
}
const test = anyTest as TestFn<Ctx>;

/** Copies `models` from their fixture directories into a fresh repository. */
function repo(kind: "triton" | "tensorbridge"): string {
  const dir = mkdtempSync(join(tmpdir(), `tb-conformance-${kind}-`));
  for (const m of MODELS) {
    const src =
      m === "add_sub"
        ? kind === "triton"
          ? join(ROOT, "bench/serving/triton_models/add_sub")
          : join(ROOT, "examples/models/add_sub")
        : join(FIXTURES, kind, m);
    cpSync(src, join(dir, m), { recursive: true });
  }
  return dir;
}

function probe(http: string, grpc: string): Promise<Transcript> {
  return runProbe<Transcript>(PYTHON, join(FIXTURES, "probe.py"), ["--http", http, "--grpc", grpc], 150_000);
}

const show = (v: unknown): string => (v === undefined ? "(no such case)" : JSON.stringify(v));

/** One line per case whose answers differ, Triton's first. */
function diff(group: string, triton: Record<string, unknown> = {}, ours: Record<string, unknown> = {}): string[] {
  const lines: string[] = [];
  for (const key of [...new Set([...Object.keys(triton), ...Object.keys(ours)])].sort()) {
    const a = show(triton[key]);
    const b = show(ours[key]);
    if (a !== b) lines.push(`[${group}] ${key}\n  triton:       ${a}\n  tensorbridge: ${b}`);
  }
  return lines;
}

test.before(async (t) => {
  t.context.repos = [];
  if (missing) return;
  const tritonRepo = repo("triton");
  const tbRepo = repo("tensorbridge");
  t.context.repos.push(tritonRepo, tbRepo);
  try {
    t.context.server = await startTestServer(tbRepo);
    const { triton: started, httpPort, grpcPort } = await startTritonReady({ repository: tritonRepo }, MODELS, 3, (m) => t.log(m));
    t.context.triton = started;
    const server = t.context.server;
    // gRPC may be off or not yet served: the probe then records the connection errors.
    const tbGrpc = server.grpcAddress?.url ?? "127.0.0.1:1";
    const [triton, tensorbridge] = await Promise.all([
      probe(`127.0.0.1:${httpPort}`, `127.0.0.1:${grpcPort}`),
      probe(`${server.address.host}:${server.address.port}`, tbGrpc),
    ]);
    t.context.transcripts = { triton, tensorbridge };
    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, "triton.json"), JSON.stringify(triton, null, 1));
    writeFileSync(join(OUT, "tensorbridge.json"), JSON.stringify(tensorbridge, null, 1));
    writeFileSync(join(OUT, "diff.txt"), GROUPS.flatMap((g) => diff(g, triton[g], tensorbridge[g])).join("\n") + "\n");
  } catch (e) {
    t.context.failed = `${(e as Error).message}${t.context.triton ? `\n--- tritonserver log (tail):\n${t.context.triton.log().slice(-3000)}` : ""}`;
  }
});

test.after.always(async (t) => {
  await t.context.server?.close();
  await t.context.triton?.stop();
  for (const d of t.context.repos ?? []) rmSync(d, { recursive: true, force: true });
});

if (missing) {
  test("conformance against Triton 2.51: prerequisites", (t) => {
    t.log(`skipping every conformance group: ${missing}`);
    t.pass();
  });
}

const groupTest = missing ? test.skip : test;
for (const group of GROUPS) {
  groupTest(`conformance ${group}: tensorbridge answers as Triton 2.51${missing ? ` (skipped: ${missing})` : ""}`, (t) => {
    if (t.context.failed || !t.context.transcripts) return t.fail(t.context.failed ?? "no transcripts");
    const { triton, tensorbridge } = t.context.transcripts;
    t.truthy(triton[group], `the probe has no group ${group}`);
    const lines = diff(group, triton[group], tensorbridge[group]);
    for (const l of lines) t.log(l);
    t.deepEqual(tensorbridge[group], triton[group], `${lines.length} case(s) differ (bench/.work/conformance/diff.txt)`);
  });
}

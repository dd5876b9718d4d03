/**
 * The model author's toolbox (BLS, the model loading API, the Logger and
 * custom metrics) through the official tritonclient (HTTP and gRPC),
 * compared with real Triton 2.51 running twin Python-backend models.
 *
 * fixtures/toolbox/probe.py drives the models of fixtures/toolbox/
 * (models.json; each model's `<name>.ts` or `<name>.py`, `spare` being a
 * copy of `callee`): a model that calls others with BLS (unary, decoupled,
 * a missing model, wrong inputs, a decoupled model called unary, its error
 * passed on to the client) and uses isModelReady / loadModel /
 * unloadModel; a request refused before it reaches the model and the
 * failure metrics it leaves; a model that logs at each level; a model with
 * a counter, a gauge and a histogram, scraped and then unloaded. The
 * transcript also holds the server log's lines of the logging model
 * (level and message: Triton's lines name the file, ours the model).
 *
 * - tensorbridge's transcript must equal fixtures/toolbox/triton-2.51.json,
 *   the one real Triton 2.51 gave (needs tritonclient: bench/.work/venv-client),
 *   except where {@link KNOWN} says why it differs.
 * - Where Triton runs here too (bench/.work/venv-peers), it is probed
 *   alongside and the live transcripts must agree (the same exceptions).
 * - The logging model's lines with verbose logging on (ours with
 *   logVerbose, Triton with --log-verbose=1, each a second server) are
 *   the transcript's logger/lines_verbose.
 * - The same probe against a server whose instances all run in worker
 *   threads (TENSORBRIDGE_INSTANCE_THREADS) must give the same transcript.
 * - Ours alone: log lines name the model and version, verbose lines only
 *   with logVerbose, the families gone after unload.
 * - files/…: a model loaded from files sent with the load request (the
 *   probe sends fixtures/toolbox/files.py to Triton, files.ts to us);
 *   where Triton's client sees only "failed to poll from model repository",
 *   ours says why after those words ({@link EXTENDS}).
 * - repository/…: the load/unload API itself (bad, invalid and empty
 *   configs, a missing model, unloading twice, a load that changes
 *   nothing, and over raw HTTP the parameters and bodies Triton refuses
 *   with 500): Triton's statuses and words, ours with why after them.
 *
 * The transcripts go to bench/.work/toolbox/ for reading;
 * `TB_TOOLBOX_RECORD=1` rewrites the fixture from a live Triton run.
 */
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { WORK, freePorts, startTriton, startTritonReady, tritonMissing, type RunningTriton } from "../bench/serving/triton.js";
import type { RuntimeLogger } from "../src/runtime/model-version.js";
import type { InferenceServer } from "../src/server/server.js";
import { CLIENT_VENV, ROOT, grpcClientMissing, runProbe, startTestServer } from "./server-helpers.js";

const FIXTURES = join(ROOT, "__test__/fixtures/toolbox");
const OUT = join(WORK, "toolbox");
const clientMissing = grpcClientMissing();
const noTriton = clientMissing ?? tritonMissing();
const MODELS = JSON.parse(readFileSync(join(FIXTURES, "models.json"), "utf8")) as Record<string, string>;
/** The model file each model is served from (`spare` is a second `callee`). */
const SOURCE: Record<string, string> = { spare: "callee" };

type Transcript = Record<string, unknown>;
type LogLine = [level: string, message: string];
interface Ctx {
  repos: string[];
  servers: InferenceServer[];
  triton?: RunningTriton;
  ours?: Transcript;
  theirs?: Transcript;
  /** Our server's log lines (all of them): default, verbose and thread-instance servers. */
  log: { plain: LogLine[]; verbose: LogLine[]; threads: LogLine[] };
  /** The verbose server's transcript (logger only). */
  verbose?: Transcript;
  /** The thread-instance server's transcript. */
  threads?: Transcript;
  failed?: string;
}
const test = anyTest as TestFn<Ctx>;

const EXPECTED = JSON.parse(readFileSync(join(FIXTURES, "triton-2.51.json"), "utf8")) as Transcript;

/**
 * Keys where tensorbridge knowingly answers otherwise than Triton 2.51, with
 * the reason and what it answers instead (checked, so a change shows).
 */
const LOAD_MISSING = [["load_model no_such_model", { error: "failed to load 'no_such_model', failed to poll from model repository: no model directory 'no_such_model' in the model repository" }]];
const KNOWN: Record<string, { why: string; ours: unknown }> = {
  // Triton's twin raises instead of calling it (the fixture has that error).
  "bls/load_missing/http": { why: "a failed pb_utils.load_model aborts Triton 2.51 (boost lock_exception); ours is an error", ours: LOAD_MISSING },
  "bls/load_missing/grpc": { why: "a failed pb_utils.load_model aborts Triton 2.51 (boost lock_exception); ours is an error", ours: LOAD_MISSING },
  "metrics/after_unload": { why: "issue #13 removes a model's families at unload; Triton 2.51 keeps them", ours: [] },
  ...filesKnown("http", "500"),
  ...filesKnown("grpc", "StatusCode.INTERNAL"),
  "logger/lines_verbose": {
    why: "our log marks a verbose line V, as its own verbose lines; Triton 2.51 writes it as an I line",
    ours: [
      ["I", "toolbox info 7"],
      ["W", "toolbox warn 7"],
      ["E", "toolbox error 7"],
      ["V", "toolbox verbose 7"],
    ],
  },
};

/** The files/… keys where we differ on purpose, for one transport (its status strings as tritonclient gives them). */
function filesKnown(transport: string, internal: string): Record<string, { why: string; ours: unknown }> {
  const name = `files_${transport}`;
  return {
    [`files/reload_same_config/${transport}`]: {
      why: "Triton 2.51 keeps the old model when new files come with the same config; ours loads the new files",
      ours: ["ok", { outputs: { OUT: [31, 32, 33, 34] } }],
    },
    [`files/absolute/${transport}`]: {
      why: "an absolute file path is refused; Triton 2.51 writes it under the model directory",
      ours: {
        status: internal,
        error: `failed to load '${name}_absolute', failed to poll from model repository: Invalid file parameter 'file:/absolute/addend.txt': the path is absolute (paths are relative to the model directory, e.g. 'file:1/model.ts')`,
      },
    },
  };
}

/**
 * Keys whose answer is Triton's error (same status) with the reason Triton
 * only logs (or does not give) after its message: ours must start with
 * Triton's words. Every repository/… key is one (its answers that are not
 * errors must be equal).
 */
const EXTENDS = new Set([
  ...["no_config", "escape", "load_after_unload"].flatMap((c) => [`files/${c}/http`, `files/${c}/grpc`]),
  ...Object.keys(EXPECTED).filter((k) => k.startsWith("repository/")),
]);

/** An error answer as the probe writes it. */
const isFailure = (v: unknown): v is { status: string; error: string } =>
  typeof v === "object" && v !== null && !Array.isArray(v) && typeof (v as { error?: unknown }).error === "string" && typeof (v as { status?: unknown }).status === "string";

/** Whether ours extends theirs: equal, or the same error status with Triton's message followed by `: ` and the reason (also inside lists). */
function extendsAnswer(ours: unknown, theirs: unknown): boolean {
  if (Array.isArray(theirs)) return Array.isArray(ours) && ours.length === theirs.length && theirs.every((w, i) => extendsAnswer(ours[i], w));
  if (isFailure(theirs)) return isFailure(ours) && ours.status === theirs.status && (ours.error === theirs.error || ours.error.startsWith(`${theirs.error}: `));
  return JSON.stringify(ours) === JSON.stringify(theirs);
}

/** Ours against theirs: equal, or for {@link EXTENDS} keys, Triton's answer extended ({@link extendsAnswer}). */
function sameAnswer(t: { deepEqual(a: unknown, b: unknown, m?: string): void; true(v: boolean, m?: string): void; is(a: unknown, b: unknown, m?: string): void }, key: string, ours: unknown, theirs: unknown): void {
  if (!EXTENDS.has(key)) return t.deepEqual(ours, theirs, key);
  t.true(extendsAnswer(ours, theirs), `${key}:\n  triton:       ${JSON.stringify(theirs)}\n  tensorbridge: ${JSON.stringify(ours)}`);
}

const THREADS = `parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }`;

/** A repository with every model of models.json, for one backend (ours: `threads` runs every instance in a worker thread). */
function repo(kind: "triton" | "tensorbridge", threads = false): string {
  const dir = mkdtempSync(join(tmpdir(), `tb-toolbox-${kind}-`));
  const ext = kind === "triton" ? "py" : "ts";
  for (const [name, body] of Object.entries(MODELS)) {
    mkdirSync(join(dir, name, "1"), { recursive: true });
    writeFileSync(join(dir, name, "config.pbtxt"), `name: "${name}"\nbackend: "${kind === "triton" ? "python" : "tensorbridge"}"\n${body}\n${threads ? THREADS : ""}\n`);
    copyFileSync(join(FIXTURES, `${SOURCE[name] ?? name}.${ext}`), join(dir, name, "1", `model.${ext}`));
  }
  return dir;
}

function probe(http: string, grpc: string, metrics: string, only?: string, backend = "tensorbridge"): Promise<Transcript> {
  const args = ["--http", http, "--grpc", grpc, "--metrics", metrics, "--backend", backend, ...(only ? ["--only", only] : [])];
  return runProbe<Transcript>(join(CLIENT_VENV, "bin/python"), join(FIXTURES, "probe.py"), args, 150_000);
}

/** A logger that keeps every line with its level letter, as the server's stderr lines have it. */
function capture(lines: LogLine[]): RuntimeLogger {
  return {
    info: (m) => lines.push(["I", m]),
    warn: (m) => lines.push(["W", m]),
    error: (m) => lines.push(["E", m]),
    debug: (m) => lines.push(["V", m]),
  };
}

const TOOLBOX_LINE = /toolbox (?:info|warn|error|verbose) -?\d+/;
const OUR_PREFIX = "model 'logger' version 1: ";

/** The logging model's lines of our log, as [level, message] with the model prefix taken off. */
const ourToolboxLines = (lines: LogLine[]): LogLine[] =>
  lines.filter(([, m]) => TOOLBOX_LINE.test(m)).map(([l, m]) => [l, m.startsWith(OUR_PREFIX) ? m.slice(OUR_PREFIX.length) : m]);

/** The logging model's lines of Triton's log (`I1206 13:40:00.123456 42 model.py:12] "toolbox info 7"`), as [level, message]. */
function tritonToolboxLines(log: string): LogLine[] {
  const out: LogLine[] = [];
  for (const line of log.split("\n")) {
    const m = /^([IWEV])\d{4} .*?(toolbox (?:info|warn|error|verbose) -?\d+)/.exec(line);
    if (m) out.push([m[1]!, m[2]!]);
  }
  return out;
}

test.before(async (t) => {
  t.context.repos = [];
  t.context.servers = [];
  t.context.log = { plain: [], verbose: [], threads: [] };
  if (clientMissing) return;
  try {
    const tb = repo("tensorbridge");
    t.context.repos.push(tb);
    const server = await startTestServer(tb, { logger: capture(t.context.log.plain) });
    t.context.servers.push(server);
    const ours = `${server.address.host}:${server.address.port}`;
    const probes: Promise<Transcript>[] = [probe(ours, server.grpcAddress!.url, `http://${ours}/metrics`)];
    let tr: string | undefined;
    if (!noTriton) {
      tr = repo("triton");
      t.context.repos.push(tr);
      // load_model / unload_model from a model need explicit model control (Triton refuses them otherwise).
      const { triton, httpPort, grpcPort, metricsPort } = await startTritonReady(
        { repository: tr, args: ["--model-control-mode=explicit", "--load-model=*"] },
        Object.keys(MODELS),
        3,
        (m) => t.log(m),
      );
      t.context.triton = triton;
      probes.push(probe(`127.0.0.1:${httpPort}`, `127.0.0.1:${grpcPort}`, `http://127.0.0.1:${metricsPort}/metrics`, undefined, "python"));
    }
    const [o, theirs] = await Promise.all(probes);
    t.context.ours = { ...o, "logger/lines": ourToolboxLines(t.context.log.plain) };
    if (theirs) t.context.theirs = { ...theirs, "logger/lines": tritonToolboxLines(t.context.triton!.log()) };
    await t.context.triton?.stop();

    // The same probe with every instance in a worker thread (BLS, Logger and metrics forwarded to the serving thread).
    const trepo = repo("tensorbridge", true);
    t.context.repos.push(trepo);
    const tserver = await startTestServer(trepo, { logger: capture(t.context.log.threads) });
    t.context.servers.push(tserver);
    const th = `${tserver.address.host}:${tserver.address.port}`;
    t.context.threads = { ...(await probe(th, tserver.grpcAddress!.url, `http://${th}/metrics`)), "logger/lines": ourToolboxLines(t.context.log.threads) };

    // Verbose logging: ours with logVerbose, Triton with --log-verbose=1 (the logging model alone).
    const vrepo = repo("tensorbridge");
    t.context.repos.push(vrepo);
    const vserver = await startTestServer(vrepo, { logger: capture(t.context.log.verbose), logVerbose: true });
    t.context.servers.push(vserver);
    const v = `${vserver.address.host}:${vserver.address.port}`;
    t.context.verbose = await probe(v, vserver.grpcAddress!.url, `http://${v}/metrics`, "logger");
    t.context.ours["logger/lines_verbose"] = ourToolboxLines(t.context.log.verbose);
    if (tr !== undefined) {
      const [httpPort, grpcPort, metricsPort] = await freePorts(3);
      const verbose = startTriton({
        repository: tr,
        httpPort: httpPort!,
        grpcPort: grpcPort!,
        metricsPort: metricsPort!,
        args: ["--model-control-mode=explicit", "--load-model=logger", "--log-verbose=1"],
      });
      t.context.triton = verbose;
      await verbose.ready(["logger"]);
      await probe(`127.0.0.1:${httpPort}`, `127.0.0.1:${grpcPort}`, `http://127.0.0.1:${metricsPort}/metrics`, "logger");
      t.context.theirs!["logger/lines_verbose"] = tritonToolboxLines(verbose.log());
    }

    mkdirSync(OUT, { recursive: true });
    writeFileSync(join(OUT, "tensorbridge.json"), JSON.stringify(t.context.ours, null, 1));
    writeFileSync(join(OUT, "tensorbridge-threads.json"), JSON.stringify(t.context.threads, null, 1));
    if (t.context.theirs) {
      writeFileSync(join(OUT, "triton.json"), JSON.stringify(t.context.theirs, null, 1));
      if (process.env["TB_TOOLBOX_RECORD"] === "1") writeFileSync(join(FIXTURES, "triton-2.51.json"), `${JSON.stringify(t.context.theirs, null, 1)}\n`);
    }
  } catch (e) {
    t.context.failed = `${(e as Error).message}${t.context.triton ? `\n--- tritonserver log (tail):\n${t.context.triton.log().slice(-3000)}` : ""}`;
  }
});

test.after.always(async (t) => {
  for (const s of t.context.servers) await s.close();
  await t.context.triton?.stop();
  for (const d of t.context.repos) rmSync(d, { recursive: true, force: true });
});

const keys = Object.keys(EXPECTED).toSorted();
const skipped = (why: string | undefined): string => (why ? ` (skipped: ${why})` : "");
const clientTest = clientMissing ? test.skip : test;

for (const key of keys) {
  const known = KNOWN[key];
  const title = known
    ? `tritonclient ${key}: tensorbridge answers as recorded, not as Triton 2.51 (${known.why})`
    : `tritonclient ${key}: tensorbridge answers as Triton 2.51 did${EXTENDS.has(key) ? ", with the reason after Triton's message" : ""}`;
  clientTest(`${title}${skipped(clientMissing)}`, (t) => {
    if (t.context.failed || !t.context.ours) return t.fail(t.context.failed ?? "no transcript");
    if (known) t.deepEqual(t.context.ours[key], known.ours);
    else sameAnswer(t, key, t.context.ours[key], EXPECTED[key]);
  });
}

clientTest(`the transcript has every key Triton 2.51's has${skipped(clientMissing)}`, (t) => {
  if (t.context.failed || !t.context.ours) return t.fail(t.context.failed ?? "no transcript");
  t.deepEqual(Object.keys(t.context.ours).toSorted(), keys);
});

clientTest(`thread instances (TENSORBRIDGE_INSTANCE_THREADS) answer the same transcript${skipped(clientMissing)}`, (t) => {
  if (t.context.failed || !t.context.threads) return t.fail(t.context.failed ?? "no transcript");
  const threads = t.context.threads;
  // The logging model's verbose lines come from the verbose server, which runs no threads.
  t.deepEqual(Object.keys(threads).toSorted(), keys.filter((k) => k !== "logger/lines_verbose"));
  for (const key of Object.keys(threads).toSorted()) {
    if (KNOWN[key]) t.deepEqual(threads[key], KNOWN[key].ours, key);
    else sameAnswer(t, key, threads[key], EXPECTED[key]);
  }
});

const liveTest = noTriton ? test.skip : test;
liveTest(`tritonclient against live Triton 2.51: the same transcript${skipped(noTriton)}`, (t) => {
  if (t.context.failed || !t.context.ours || !t.context.theirs) return t.fail(t.context.failed ?? "no transcripts");
  const { ours, theirs } = t.context;
  for (const key of Object.keys(theirs).toSorted()) {
    if (KNOWN[key]) continue;
    if (JSON.stringify(ours[key]) !== JSON.stringify(theirs[key])) t.log(`${key}\n  triton:       ${JSON.stringify(theirs[key])}\n  tensorbridge: ${JSON.stringify(ours[key])}`);
    sameAnswer(t, key, ours[key], theirs[key]);
  }
  for (const key of Object.keys(KNOWN)) t.notDeepEqual(theirs[key], KNOWN[key]!.ours, `${key}: Triton now answers as we do; drop it from KNOWN`);
});

/** The logging model's lines of our log, whole. */
const mine = (lines: LogLine[]): LogLine[] => lines.filter(([, m]) => TOOLBOX_LINE.test(m));
/** What the logging model writes for IN[0] = 7, as our log has it. */
const expected = (verbose: boolean): LogLine[] => [
  ["I", `${OUR_PREFIX}toolbox info 7`],
  ["W", `${OUR_PREFIX}toolbox warn 7`],
  ["E", `${OUR_PREFIX}toolbox error 7`],
  ...(verbose ? [["V", `${OUR_PREFIX}toolbox verbose 7`] as LogLine] : []),
];

clientTest(`Logger lines of a client's request name the model and its version; verbose ones only with logVerbose${skipped(clientMissing)}`, (t) => {
  if (t.context.failed || !t.context.ours) return t.fail(t.context.failed ?? "no transcript");
  t.deepEqual(mine(t.context.log.plain), expected(false));
  t.deepEqual(mine(t.context.log.verbose), expected(true));
  t.deepEqual(t.context.verbose?.["logger/infer"], { outputs: { OUT: [7, 0, 0, 0] } });
});

clientTest(`custom families are on /metrics after the client's requests and gone after unload${skipped(clientMissing)}`, (t) => {
  if (t.context.failed || !t.context.ours) return t.fail(t.context.failed ?? "no transcript");
  const scrape = t.context.ours["metrics/scrape"] as unknown[];
  t.true(scrape.includes("# HELP toolbox_requests_total Requests the toolbox model served"));
  t.true(scrape.includes("# TYPE toolbox_value histogram"));
  t.deepEqual(t.context.ours["metrics/after_unload"], []);
});

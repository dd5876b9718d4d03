/**
 * Serving benchmark: tensorbridge (TypeScript add_sub) against real Triton
 * 2.51 (Python backend, the seed's add_sub) and MLServer (add_sub as a custom
 * runtime), in one run, with the same perf_analyzer, at concurrency 1 and 8,
 * JSON and binary tensors. All servers run at once (idle ones cost nothing) on
 * 127.0.0.1.
 *
 *   bash bench/serving/setup.sh client peers     # once
 *   node --import tsx bench/serving/run.ts [--duration-ms 3000] [--concurrency 1,8] [--rounds 1] [--only tensorbridge,triton,mlserver,floor,floor-net,floor-kserve,floor-native]
 *                                          [--formats binary,json,grpc,stream]
 *                                          [--baseline <git-rev>] [--tensorbridge-args "<serve options>"] [--tensorbridge-from dist|tsx]
 *
 * tensorbridge (and the baseline) are served as users run them: `dist/cli.js`
 * of a fresh `tsc` build (tsconfig.build.json's options, into
 * bench/.work/tbdist[-baseline]/dist, beside links to the root's `index.js`,
 * `package.json` and the addon), under plain `node`. `--tensorbridge-from tsx`
 * serves `src/cli.ts` through tsx instead (the rows before 2026-11-26 16:00),
 * whose `keepNames` wraps named functions in `__name` calls.
 *
 * `tensorbridge-grpc-js` (opt-in: `--only tensorbridge,tensorbridge-grpc-js,...`)
 * is the same build serving gRPC with `--grpc-server grpc-js`, grpc-js's
 * server on node:http2, beside the default (tensorbridge's own HTTP/2).
 *
 * `floor-grpc` (floor-grpc.mjs) is bare node:http2 with canned answers:
 * the ceiling of a gRPC server built on node:http2 here (grpc-js's server
 * is one). tensorbridge's gRPC runs on its own HTTP/2 (src/server/grpc/h2)
 * and is not bound by it; `floor-net`'s rows are the ceiling of any Node
 * server over TCP here.
 *
 * `floor` is not a competitor: a bare node:http server (floor-server.mjs)
 * answering with precomputed responses, the ceiling any Node server can reach
 * under this perf_analyzer on this machine. `floor-native` (floor-native.c,
 * built here with `cc -O2`) is the same in C over epoll: the ceiling of any
 * server in any language here. `--baseline <rev>` also serves
 * `src/server`, `src/runtime` and `src/cli.ts` as of `<rev>` (the rest of
 * `src/` and the binding as now) as "tensorbridge@<rev>", so that a change is
 * measured before/after in one run.
 *
 * `grpc` rows are add_sub over gRPC (`perf_analyzer -i grpc`); `stream`
 * rows are the decoupled `repeat` (examples/models/repeat against the same
 * model for Triton's Python backend, bench/serving/triton_models/repeat)
 * over gRPC streaming, STREAM_N responses per request: their throughput is
 * requests per second, and responses/s is STREAM_N times it.
 *
 * `digits` / `digits-json` rows are a real model: the digits classifier
 * (examples/models/digits: model.onnx run by onnxruntime-node) against the
 * same model.onnx run by onnxruntime in Python, in Triton's Python backend
 * (bench/serving/triton_models/digits) and as an MLServer custom runtime
 * (bench/serving/mlserver_models/digits.py), batching on in all three, over
 * HTTP with binary tensors (MLServer has none) or JSON; perf_analyzer sends
 * the held-out images of examples/digits/test-set.json, one per request
 * (`--input-data`). `floor` and `floor-net` answer them with one canned
 * answer (no model): the ceiling of any server under these perf_analyzer
 * runs, whose own JSON work shares the cores. `floor-kserve` runs the model
 * (floor-digits.mjs: parse, batch, one ONNX Runtime call, encode, nothing
 * else): the floor of a Node server that serves it. Not in the default
 * `--formats`:
 *   node --import tsx bench/serving/run.ts --formats digits,digits-json --concurrency 1,16 --only tensorbridge,triton,mlserver,floor-net,floor-kserve
 *
 * Binary rows use `add_sub` (no batching, as the seed's); JSON rows use
 * `add_sub_batched` (max_batch_size 8, same model code): perf_analyzer's JSON
 * writer counts elements from dim 1 on, so it only sends whole tensors to
 * batching models (Triton itself rejects its JSON for add_sub).
 *
 * "server CPU/request" is the server's CPU time (user + system, its process
 * and children, from /proc) over each perf_analyzer run divided by the
 * requests its statistics counted meanwhile: what a serving change saves per
 * request; "of it, system" is its kernel part (socket calls, wakes), which
 * moves with the machine's scheduling more than with the server's code.
 *
 * `--rounds N` measures every point N times, round after round (in a round,
 * each point for every server back to back), and prints each row's median;
 * each ratio column is the median of the rounds' own ratios. This machine's
 * load moves single rows by up to 1.8× from run to run: a ratio from one
 * round is one sample. Each round starts one server further down the list
 * (round 2 measures the second server first, and the first last): a server
 * measured first, right after the previous point's last run, is not always
 * the same one.
 *
 * Writes bench/.work/serving-results.{md,json} and prints the table.
 */
import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import { PEERS, WORK, sitePackages, tritonCommand } from "./triton.js";

const ROOT = fileURLToPath(new URL("../..", import.meta.url));
const CLIENT = join(WORK, "venv-client");

function arg(name: string, dflt: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : dflt;
}
const DURATION = Number(arg("duration-ms", "3000"));
const ROUNDS = Number(arg("rounds", "1"));
if (!Number.isInteger(ROUNDS) || ROUNDS < 1) {
  console.error(`bench/serving: --rounds takes a whole number of at least 1, got '${arg("rounds", "1")}'`);
  process.exit(2);
}
const CONCURRENCY = arg("concurrency", "1,8").split(",").map(Number);
const ONLY = arg("only", "tensorbridge,triton,mlserver,floor,floor-net,floor-kserve,floor-native,floor-grpc").split(",");
const FORMATS = arg("formats", "binary,json,grpc,stream").split(",") as Format[];
for (const f of FORMATS) {
  if (!["binary", "json", "grpc", "stream", "digits", "digits-json"].includes(f)) {
    console.error(`bench/serving: --formats takes binary, json, grpc, stream, digits and digits-json, got '${f}'`);
    process.exit(2);
  }
}
const BASELINE = arg("baseline", "");
const TB_ARGS = arg("tensorbridge-args", "").split(" ").filter(Boolean);
const TB_FROM = arg("tensorbridge-from", "dist");
if (TB_FROM !== "dist" && TB_FROM !== "tsx") {
  console.error(`bench/serving: --tensorbridge-from must be dist or tsx, got '${TB_FROM}'`);
  process.exit(2);
}

function need(path: string, what: string): void {
  if (!existsSync(path)) {
    console.error(`bench/serving: ${what} is missing (${path}); run: bash bench/serving/setup.sh client peers`);
    process.exit(2);
  }
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitReady(url: string, model: string, child: ChildProcess, log: () => string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      const r = await fetch(`${url}/v2/models/${model}/ready`);
      if (r.status === 200) return;
    } catch {
      // not up yet
    }
    if (child.exitCode !== null || Date.now() > deadline) throw new Error(`server did not become ready:\n${log().slice(-3000)}`);
    await sleep(250);
  }
}

interface Peer {
  name: string;
  url: string;
  /** host:port of its gRPC service, when it has one. */
  grpc?: string;
  start(): { child: ChildProcess; log: () => string };
  /** Formats this peer cannot serve, with the reason. */
  unsupported?: Partial<Record<Format, string>>;
}

function startProcess(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv }): { child: ChildProcess; log: () => string } {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? ROOT, env: { ...process.env, ...opts.env }, stdio: ["ignore", "pipe", "pipe"], detached: false });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  return { child, log: () => out };
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null) return;
  const done = new Promise((r) => child.once("exit", r));
  child.kill("SIGTERM");
  const t = setTimeout(() => child.kill("SIGKILL"), 20_000);
  await done;
  clearTimeout(t);
}

// ------------------------------------------------------------------ repositories

/** The batching twin of an add_sub config. */
function batched(cfg: string): string {
  return cfg.replace('name: "add_sub"', 'name: "add_sub_batched"\nmax_batch_size: 8');
}

/** An MLServer model-settings tensor. */
function io(n: string): { name: string; datatype: string; shape: number[] } {
  return { name: n, datatype: "FP32", shape: [-1, 4] };
}

function prepare(): Peer[] {
  const repos = join(WORK, "repos");
  rmSync(repos, { recursive: true, force: true });
  mkdirSync(repos, { recursive: true });

  // tensorbridge: the example add_sub, and its batching twin
  const tb = join(repos, "tensorbridge");
  cpSync(join(ROOT, "examples/models/add_sub"), join(tb, "add_sub"), { recursive: true });
  cpSync(join(ROOT, "examples/models/add_sub"), join(tb, "add_sub_batched"), { recursive: true });
  writeFileSync(join(tb, "add_sub_batched/config.pbtxt"), batched(readFileSync(join(tb, "add_sub/config.pbtxt"), "utf8")));

  // The decoupled streamer, without its optional DELAY input (perf_analyzer
  // would fill it with random delays)
  cpSync(join(ROOT, "examples/models/repeat"), join(tb, "repeat"), { recursive: true });
  writeFileSync(
    join(tb, "repeat/config.pbtxt"),
    readFileSync(join(tb, "repeat/config.pbtxt"), "utf8").replace(/,\s*\{ name: "DELAY"[^}]*\}/, ""),
  );

  // Triton: the Python-backend add_sub, and its batching twin
  const tr = join(repos, "triton");
  cpSync(join(ROOT, "bench/serving/triton_models/add_sub"), join(tr, "add_sub"), { recursive: true });
  cpSync(join(ROOT, "bench/serving/triton_models/add_sub"), join(tr, "add_sub_batched"), { recursive: true });
  writeFileSync(join(tr, "add_sub_batched/config.pbtxt"), batched(readFileSync(join(tr, "add_sub/config.pbtxt"), "utf8")));
  cpSync(join(ROOT, "bench/serving/triton_models/repeat"), join(tr, "repeat"), { recursive: true });

  // MLServer: one model dir per model, parallel_workers 0 (MLServer 1.7.1's
  // worker pool dies at start on this Python: "There is no current event loop")
  const ml = join(repos, "mlserver");
  for (const [name, cls] of [
    ["add_sub", "AddSub"],
    ["add_sub_batched", "AddSubBatched"],
  ]) {
    mkdirSync(join(ml, name), { recursive: true });
    cpSync(join(ROOT, "bench/serving/mlserver_models/add_sub.py"), join(ml, name, "add_sub.py"));
    writeFileSync(
      join(ml, name, "model-settings.json"),
      JSON.stringify({ name, implementation: `add_sub.${cls}`, inputs: [io("INPUT0"), io("INPUT1")], outputs: [io("OUTPUT0"), io("OUTPUT1")] }),
    );
  }
  writeFileSync(join(ml, "settings.json"), JSON.stringify({ http_port: 8220, grpc_port: 8221, metrics_port: 8222, debug: false, parallel_workers: 0 }));

  // The digits classifier: the same model.onnx for all three servers.
  const onnx = join(ROOT, "examples/models/digits/1/model.onnx");
  cpSync(join(ROOT, "examples/models/digits"), join(tb, "digits"), { recursive: true });
  cpSync(join(ROOT, "bench/serving/triton_models/digits"), join(tr, "digits"), { recursive: true });
  cpSync(onnx, join(tr, "digits/1/model.onnx"));
  mkdirSync(join(ml, "digits"), { recursive: true });
  cpSync(join(ROOT, "bench/serving/mlserver_models/digits.py"), join(ml, "digits/digits.py"));
  cpSync(onnx, join(ml, "digits/model.onnx"));
  writeFileSync(
    join(ml, "digits/model-settings.json"),
    JSON.stringify({
      name: "digits",
      implementation: "digits.Digits",
      // Adaptive batching needs max_batch_time > 0: it takes what is queued and
      // waits at most this long (100 µs) for more, near Triton's default delay of 0.
      max_batch_size: 64,
      max_batch_time: 0.0001,
      inputs: [{ name: "pixels", datatype: "FP32", shape: [-1, 64] }],
      outputs: [
        { name: "label", datatype: "INT64", shape: [-1, 1] },
        { name: "probabilities", datatype: "FP32", shape: [-1, 10] },
      ],
    }),
  );
  // perf_analyzer's --input-data: the held-out images, one per request.
  const testSet = JSON.parse(readFileSync(join(ROOT, "examples/digits/test-set.json"), "utf8")) as { images: number[][] };
  // Written as floats ("3.0"): perf_analyzer rejects an integer for FP32 ("unable to find float data in json").
  const rows = testSet.images.map((im) => `{"pixels":{"content":[${im.map((v) => v.toFixed(1)).join(",")}],"shape":[64]}}`);
  writeFileSync(DIGITS_DATA, `{"data":[${rows.join(",")}]}\n`);

  const baseline = BASELINE ? baselineTree(BASELINE) : undefined;
  const tbCli = cli(ROOT, join(WORK, "tbdist"));
  const baselineCli = baseline ? cli(baseline, join(WORK, "tbdist-baseline")) : [];

  return [
    {
      name: "tensorbridge",
      url: "http://127.0.0.1:8200",
      grpc: "127.0.0.1:8201",
      start: () => startProcess(process.execPath, [...tbCli, "serve", tb, "--http-port", "8200", "--grpc-port", "8201", ...TB_ARGS], {}),
    },
    {
      // Not in the default --only: the same build with grpc-js's server for gRPC (issue 12 asks for grpc-js; this row shows what it gives).
      name: "tensorbridge-grpc-js",
      url: "http://127.0.0.1:8250",
      grpc: "127.0.0.1:8251",
      unsupported: { binary: "the same HTTP server as tensorbridge's row", json: "the same HTTP server as tensorbridge's row", ...NO_DIGITS },
      start: () => startProcess(process.execPath, [...tbCli, "serve", tb, "--http-port", "8250", "--grpc-port", "8251", "--grpc-server", "grpc-js", ...TB_ARGS], {}),
    },
    ...(baseline
      ? [
          {
            name: `tensorbridge@${BASELINE}`,
            url: "http://127.0.0.1:8240",
            unsupported: { grpc: "the baseline's gRPC is not compared", stream: "the baseline's gRPC is not compared" },
            start: () => startProcess(process.execPath, [...baselineCli, "serve", tb, "--http-port", "8240"], { cwd: baseline }),
          },
        ]
      : []),
    {
      name: "floor",
      url: "http://127.0.0.1:8230",
      unsupported: { grpc: "HTTP only", stream: "HTTP only" },
      start: () => startProcess(process.execPath, [join(ROOT, "bench/serving/floor-server.mjs"), "--port", "8230"], {}),
    },
    {
      name: "floor-net",
      url: "http://127.0.0.1:8231",
      unsupported: { grpc: "HTTP only", stream: "HTTP only" },
      start: () => startProcess(process.execPath, [join(ROOT, "bench/serving/floor-server.mjs"), "--port", "8231", "--net"], {}),
    },
    {
      name: "floor-kserve",
      url: "http://127.0.0.1:8235",
      unsupported: { grpc: "HTTP only", stream: "HTTP only" },
      start: () => startProcess(process.execPath, [join(ROOT, "bench/serving/floor-server.mjs"), "--port", "8235", "--net", "--compute"], {}),
    },
    {
      name: "floor-native",
      url: "http://127.0.0.1:8232",
      unsupported: { grpc: "HTTP only", stream: "HTTP only", ...NO_DIGITS },
      start: () => startProcess(floorNative(), ["8232"], {}),
    },
    {
      name: "floor-grpc",
      // Its HTTP side only says it is ready and counts its requests.
      url: "http://127.0.0.1:8234",
      grpc: "127.0.0.1:8233",
      unsupported: { binary: "gRPC only", json: "gRPC only", stream: "add_sub only", ...NO_DIGITS },
      start: () => startProcess(process.execPath, [join(ROOT, "bench/serving/floor-grpc.mjs"), "--port", "8233", "--http-port", "8234"], {}),
    },
    {
      name: "triton",
      url: "http://127.0.0.1:8210",
      grpc: "127.0.0.1:8211",
      start: () => {
        const { cmd, args, env } = tritonCommand({ repository: tr, httpPort: 8210, grpcPort: 8211, metricsPort: 8212 });
        return startProcess(cmd, args, { env });
      },
    },
    {
      name: "mlserver",
      url: "http://127.0.0.1:8220",
      start: () => startProcess(join(PEERS, "bin/mlserver"), ["start", "."], { cwd: ml }),
      unsupported: {
        binary: "MLServer 1.7 has no binary tensor extension (it parses the whole body as JSON: 'failed to parse the request JSON buffer')",
        digits: "MLServer 1.7 has no binary tensor extension (see digits-json)",
        grpc: "not measured: MLServer's gRPC is not Triton's service for perf_analyzer's model checks",
        stream: "MLServer 1.7 has no decoupled (streaming) models",
      },
    },
  ];
}

/** How the floors are named in the table: what each is, and that none is a competitor. */
const FLOOR_LABELS: Record<string, string> = {
  floor: "floor (bare node:http, canned responses; not a competitor)",
  "floor-net": "floor-net (bare node:net, minimal HTTP/1.1, canned responses; not a competitor)",
  "floor-kserve": "floor-kserve (floor-net that decodes, computes and encodes every request: the KServe work no Node server can skip; not a competitor)",
  "floor-native": "floor-native (C, epoll, decodes and computes each request; not a competitor)",
  "floor-grpc": "floor-grpc (bare node:http2, canned answers; the node:http2 ceiling, not a competitor)",
};

/** The floors that answer add_sub only (floor and floor-net give digits a canned answer; floor-kserve runs the model). */
const NO_DIGITS = { digits: "add_sub only", "digits-json": "add_sub only" } as const;

/** perf_analyzer's --input-data for the digits rows (written by prepare()). */
const DIGITS_DATA = join(WORK, "digits-input.json");

/** Builds floor-native.c (a C compiler is on every machine this bench runs on) and returns the binary. */
function floorNative(): string {
  const bin = join(WORK, "floor-native");
  execFileSync("cc", ["-O2", "-o", bin, join(ROOT, "bench/serving/floor-native.c")], { stdio: "inherit" });
  return bin;
}

/** How a source tree's CLI is started: its tsc build under plain node, or its sources through tsx. */
function cli(src: string, built: string): string[] {
  return TB_FROM === "dist" ? [join(distTree(src, built), "dist/cli.js")] : ["--import", "tsx", join(src, "src/cli.ts")];
}

/**
 * A copy of `src/` with `src/server`, `src/runtime`, `src/cli.ts` and the
 * entries (`src/index.ts`, `src/model.ts`) as of `rev` (the tensor code and
 * the binding stay as now: only the serving code is compared), under
 * bench/.work/baseline.
 */
function baselineTree(rev: string): string {
  const dir = join(WORK, "baseline");
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  cpSync(join(ROOT, "src"), join(dir, "src"), { recursive: true });
  rmSync(join(dir, "src/server"), { recursive: true });
  rmSync(join(dir, "src/runtime"), { recursive: true });
  // The serving code and the entries that export it, as of rev; an entry rev did not have yet goes.
  const entries = ["src/index.ts", "src/model.ts"].filter((f) => {
    try {
      execFileSync("git", ["cat-file", "-e", `${rev}:${f}`], { cwd: ROOT, stdio: "ignore" });
      return true;
    } catch {
      rmSync(join(dir, f), { force: true });
      return false;
    }
  });
  const tar = execFileSync("git", ["archive", rev, "src/server", "src/runtime", "src/cli.ts", ...entries], { cwd: ROOT, maxBuffer: 1 << 28 });
  execFileSync("tar", ["-x", "-C", dir], { input: tar });
  for (const f of readdirSync(ROOT)) {
    if (f === "index.js" || f === "index.d.ts" || f === "package.json" || f === "tsconfig.json" || f === "node_modules" || f === "examples" || f.endsWith(".node")) {
      symlinkSync(join(ROOT, f), join(dir, f));
    }
  }
  return dir;
}

/**
 * A fresh `tsc` build of `src`'s `src/` (tsconfig.build.json's options) in
 * `out/dist`, with `out/index.js`, `out/package.json` and the addon linked
 * from the root: `out` is laid out as the published package, so `dist/` finds
 * the binding (`../index.js`) and the version as it does there; `fastify` and
 * the rest resolve from the root's `node_modules` (a parent directory).
 * Returns `out`.
 */
function distTree(src: string, out: string): string {
  rmSync(out, { recursive: true, force: true });
  mkdirSync(out, { recursive: true });
  const cfg = join(out, "tsconfig.json");
  writeFileSync(
    cfg,
    JSON.stringify({
      extends: join(ROOT, "tsconfig.json"),
      compilerOptions: { noEmit: false, rootDir: join(src, "src"), outDir: join(out, "dist"), declaration: false, sourceMap: false },
      include: [join(src, "src")],
    }),
  );
  execFileSync(process.execPath, [join(ROOT, "node_modules/typescript/bin/tsc"), "-p", cfg], { cwd: ROOT, stdio: "inherit" });
  for (const f of readdirSync(ROOT)) {
    if (f === "index.js" || f === "package.json" || f === "proto" || f.endsWith(".node")) symlinkSync(join(ROOT, f), join(out, f));
  }
  return out;
}

// ------------------------------------------------------------------ perf_analyzer

/**
 * binary / json: HTTP, add_sub (add_sub_batched for JSON); grpc: gRPC
 * ModelInfer, add_sub; stream: gRPC ModelStreamInfer on the decoupled
 * `repeat` (STREAM_N responses per request); digits / digits-json: HTTP,
 * binary or JSON tensors, the digits classifier on real images.
 */
type Format = "binary" | "json" | "grpc" | "stream" | "digits" | "digits-json";

/** Responses per request of the stream rows (`--shape IN:<n>`). */
const STREAM_N = 8;

interface Row {
  server: string;
  format: Format;
  /** Responses per second (stream rows). */
  responses?: number;
  concurrency: number;
  throughput?: number;
  p50us?: number;
  p99us?: number;
  /** Server CPU (user + system, the process and its children) per request served, in µs. */
  cpuUs?: number;
  /** The system (kernel) part of {@link cpuUs}: the socket calls and the wakes. */
  sysUs?: number;
  note?: string;
}

// ------------------------------------------------------------------ server CPU

const CLK_TCK = Number(execFileSync("getconf", ["CLK_TCK"]).toString().trim()) || 100;

/** utime and stime (in clock ticks) of one process, or 0 when it is gone. */
function ticks(pid: number): { user: number; sys: number } {
  try {
    // Fields after the ")" that ends the command name: state is field 3, utime 14, stime 15.
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return { user: Number(f[11]), sys: Number(f[12]) };
  } catch {
    return { user: 0, sys: 0 };
  }
}

/** The process and its descendants (Triton's Python stubs run the model in child processes). */
function tree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync("/proc")) {
    if (!/^[0-9]+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, "utf8");
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]));
    } catch {
      // exited meanwhile
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  return out;
}

/** CPU seconds used so far by the server's process tree: all, and in the kernel. */
function cpuSeconds(root: number): { all: number; sys: number } {
  let user = 0;
  let sys = 0;
  for (const pid of tree(root)) {
    const t = ticks(pid);
    user += t.user;
    sys += t.sys;
  }
  return { all: (user + sys) / CLK_TCK, sys: sys / CLK_TCK };
}

/**
 * Requests the server has answered for `model` (success + failure counts of
 * the statistics extension); undefined when it has no statistics (MLServer).
 */
async function servedRequests(url: string, model: string): Promise<number | undefined> {
  try {
    const r = await fetch(`${url}/v2/models/${model}/stats`);
    if (r.status !== 200) return undefined;
    const s = ((await r.json()) as { model_stats: { inference_stats: { success: { count: number }; fail: { count: number } } }[] }).model_stats[0]!;
    return s.inference_stats.success.count + s.inference_stats.fail.count;
  } catch {
    return undefined;
  }
}

async function perf(peer: Peer, model: string, format: Format, concurrency: number): Promise<Omit<Row, "server" | "format" | "concurrency">> {
  const csv = join(WORK, `perf-${Date.now()}.csv`);
  const lib = join(sitePackages(CLIENT), "nvidia/cuda_runtime/lib");
  const grpc = format === "grpc" || format === "stream";
  const args = [
    "-m",
    model,
    "-u",
    grpc ? peer.grpc! : peer.url.replace("http://", ""),
    "-i",
    grpc ? "grpc" : "http",
    ...(format === "stream" ? ["--streaming", "--shape", `IN:${STREAM_N}`] : []),
    ...(format === "digits" || format === "digits-json" ? ["--input-data", DIGITS_DATA] : []),
    "--concurrency-range",
    String(concurrency),
    "--measurement-interval",
    String(DURATION),
    // this machine is shared: accept ±50% between windows rather than fail
    "-s",
    "50",
    "-r",
    "20",
    "-f",
    csv,
    ...(format === "json" || format === "digits-json" ? ["--input-tensor-format", "json", "--output-tensor-format", "json"] : []),
  ];
  const p = startProcess(join(CLIENT, "bin/perf_analyzer"), args, { env: { LD_LIBRARY_PATH: [lib, process.env["LD_LIBRARY_PATH"]].filter(Boolean).join(":") } });
  // -r 20 bounds the trials, but a run that never settles was seen to go on
  // for minutes (perf_analyzer growing past 4 GB): stop it and say so.
  const limitMs = DURATION * 25 + 30_000;
  let overran = false;
  const watchdog = setTimeout(() => {
    overran = true;
    p.child.kill("SIGKILL");
  }, limitMs);
  const code = await new Promise<number | null>((r) => p.child.on("exit", r));
  clearTimeout(watchdog);
  if (overran) return { note: `perf_analyzer did not settle within ${limitMs / 1000} s and was stopped` };
  if (code !== 0 || !existsSync(csv)) {
    const why = p.log().split("\n").filter((l) => /error|fail/i.test(l)).slice(0, 2).join(" / ") || `exit ${code}`;
    return { note: `perf_analyzer failed: ${why}` };
  }
  const [head, line] = readFileSync(csv, "utf8").trim().split("\n");
  rmSync(csv, { force: true });
  const cols = head!.split(",");
  const vals = line!.split(",");
  const get = (c: string) => Number(vals[cols.indexOf(c)]);
  const throughput = get("Inferences/Second");
  // Requests per second; a decoupled model's responses are STREAM_N of each.
  return { throughput, p50us: get("p50 latency"), p99us: get("p99 latency"), ...(format === "stream" ? { responses: throughput * STREAM_N } : {}) };
}

// ------------------------------------------------------------------ main

need(join(CLIENT, "bin/perf_analyzer"), "perf_analyzer (tritonclient[all]==2.51.0)");
const peers = prepare().filter((p) => ONLY.includes(p.name.split("@")[0]!));
/** Every measurement, round after round. */
const measured: (Row & { round: number })[] = [];
// All servers run at once (idle ones cost nothing) and each measurement
// point is taken for every server back to back, so that the load of this
// shared machine drifts as little as possible between the compared numbers.
const running = new Map<string, { child: ChildProcess; log: () => string }>();
const skipped = new Map<string, string>();
for (const peer of peers) {
  if ((peer.name === "triton" || peer.name === "mlserver") && !existsSync(PEERS)) {
    skipped.set(peer.name, "not installed (bash bench/serving/setup.sh peers)");
    continue;
  }
  console.error(`== ${peer.name}: starting`);
  const proc = peer.start();
  running.set(peer.name, proc);
  try {
    await waitReady(peer.url, "add_sub", proc.child, proc.log);
    await waitReady(peer.url, "add_sub_batched", proc.child, proc.log);
    if (peer.grpc) await waitReady(peer.url, "repeat", proc.child, proc.log);
    if (FORMATS.some((f) => f.startsWith("digits") && !peer.unsupported?.[f])) await waitReady(peer.url, "digits", proc.child, proc.log);
  } catch (e) {
    skipped.set(peer.name, `did not start: ${(e as Error).message.split("\n")[0]}`);
  }
}
try {
  // Round after round, each point back to back for every server: a ratio
  // between two rows of one round compares the same minute of this machine.
  for (let round = 1; round <= ROUNDS; round++) {
    for (const format of FORMATS) {
      for (const c of CONCURRENCY) {
        for (const peer of rotated(peers, round - 1)) {
          const reason = skipped.get(peer.name) ?? peer.unsupported?.[format];
          if (reason) {
            measured.push({ round, server: peer.name, format, concurrency: c, note: reason });
            continue;
          }
          const model = format === "json" ? "add_sub_batched" : format === "stream" ? "repeat" : format.startsWith("digits") ? "digits" : "add_sub";
          console.error(`== ${peer.name}: ${format}, concurrency ${c}${ROUNDS > 1 ? `, round ${round} of ${ROUNDS}` : ""}`);
          // Server CPU per request over the whole perf_analyzer run (its
          // warm-up and every window): what the server spends per request,
          // apart from the scheduling luck that moves latency.
          const pid = running.get(peer.name)!.child.pid!;
          const n0 = await servedRequests(peer.url, model);
          const c0 = cpuSeconds(pid);
          const res = await perf(peer, model, format, c);
          const c1 = cpuSeconds(pid);
          const n1 = await servedRequests(peer.url, model);
          const served = n0 !== undefined && n1 !== undefined && n1 > n0 ? n1 - n0 : undefined;
          const cpu = served !== undefined ? { cpuUs: ((c1.all - c0.all) * 1e6) / served, sysUs: ((c1.sys - c0.sys) * 1e6) / served } : {};
          measured.push({ round, server: peer.name, format, concurrency: c, ...res, ...cpu });
        }
      }
    }
  }
} finally {
  for (const proc of running.values()) await stop(proc.child);
}
/** `xs` started at index `by` (modulo its length), the ones before it moved to the end. */
function rotated<T>(xs: readonly T[], by: number): T[] {
  const k = xs.length === 0 ? 0 : by % xs.length;
  return [...xs.slice(k), ...xs.slice(0, k)];
}
/** The median of the numbers given (undefined ones left out); undefined when none is. */
function median(xs: (number | undefined)[]): number | undefined {
  const v = xs.filter((x): x is number => x !== undefined && Number.isFinite(x)).sort((a, b) => a - b);
  if (v.length === 0) return undefined;
  const m = v.length >> 1;
  return v.length % 2 === 1 ? v[m] : (v[m - 1]! + v[m]!) / 2;
}

const key = (server: string, format: string, c: number) => `${server}\u0000${format}\u0000${c}`;
const byKey = new Map<string, (Row & { round: number })[]>();
for (const m of measured) {
  const k = key(m.server, m.format, m.concurrency);
  byKey.set(k, [...(byKey.get(k) ?? []), m]);
}
/** One row per server, format and concurrency: the median of its rounds. */
const rows: Row[] = [...byKey.values()].map((ms) => {
  const { server, format, concurrency } = ms[0]!;
  const r: Row = { server, format, concurrency };
  for (const f of ["throughput", "responses", "p50us", "p99us", "cpuUs", "sysUs"] as const) {
    const v = median(ms.map((m) => m[f]));
    if (v !== undefined) r[f] = v;
  }
  const notes = [...new Set(ms.map((m) => m.note).filter(Boolean))];
  // (A round gives either figures or a note: both, and the note is some rounds'.)
  if (notes.length > 0) r.note = r.throughput !== undefined ? `${notes.join("; ")} (in some rounds)` : notes.join("; ");
  return r;
});
rows.sort((a, b) => peers.findIndex((p) => p.name === a.server) - peers.findIndex((p) => p.name === b.server));

/**
 * `a`'s field over `b`'s, round by round, as the median of those ratios
 * (each ratio pairs two measurements of the same minute), "–" when no
 * round has both.
 */
function pairedRatio(a: Row, b: string, field: "throughput" | "p50us" | "cpuUs"): string {
  const theirs = new Map(byKey.get(key(b, a.format, a.concurrency))?.map((m) => [m.round, m[field]]) ?? []);
  const m = median((byKey.get(key(a.server, a.format, a.concurrency)) ?? []).map((r) => {
    const x = r[field];
    const y = theirs.get(r.round);
    return x && y ? x / y : undefined;
  }));
  return m === undefined ? "–" : `${m.toFixed(2)}×`;
}

const lines = [
  `| server | format | concurrency | throughput (infer/s) | responses/s | p50 (µs) | p99 (µs) | p50 vs Triton | throughput vs Triton | throughput vs MLServer | server CPU/request (µs) | of it, system (µs) | CPU vs floor-net |`,
  `|---|---|---|---|---|---|---|---|---|---|---|---|---|`,
];
for (const r of rows) {
  const ours = r.server.startsWith("tensorbridge") || r.server.startsWith("floor");
  const label = FLOOR_LABELS[r.server] ?? r.server;
  lines.push(
    `| ${label} | ${r.format} | ${r.concurrency} | ${r.throughput?.toFixed(0) ?? "–"} | ${r.responses?.toFixed(0) ?? ""} | ${r.p50us?.toFixed(0) ?? "–"} | ${r.p99us?.toFixed(0) ?? "–"} | ` +
      `${ours ? pairedRatio(r, "triton", "p50us") : ""} | ${ours ? pairedRatio(r, "triton", "throughput") : ""} | ` +
      `${ours ? pairedRatio(r, "mlserver", "throughput") : ""} | ${r.cpuUs?.toFixed(0) ?? "–"} | ${r.sysUs?.toFixed(0) ?? "–"} | ` +
      `${ours && r.server !== "floor-net" ? pairedRatio(r, "floor-net", "cpuUs") : ""} |${r.note ? ` ${r.note}` : ""}`,
  );
}
if (ROUNDS > 1) {
  lines.push(
    "",
    `Each row is the median of ${ROUNDS} rounds; each ratio is the median of the rounds' ratios (both rows measured back to back in the same round).`,
  );
}
lines.push(
  "",
  TB_FROM === "dist"
    ? "tensorbridge rows: dist/cli.js of a fresh tsc build, plain node (as the published package runs)."
    : "tensorbridge rows: src/cli.ts through tsx (--tensorbridge-from tsx).",
);
const table = lines.join("\n");
console.log(table);
writeFileSync(join(WORK, "serving-results.md"), `${table}\n`);
writeFileSync(
  join(WORK, "serving-results.json"),
  JSON.stringify({ date: new Date().toISOString(), durationMs: DURATION, rounds: ROUNDS, tensorbridgeFrom: TB_FROM, rows, measured }, null, 2),
);

/**
 * The `tensorbridge` CLI: argument parsing, --help, and `serve` in a child
 * process (port 0, 127.0.0.1) with graceful shutdown on SIGTERM and SIGINT.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { createServer } from "node:net";
import { join } from "node:path";

import test from "ava";

import { USAGE, defaultRepository, parseCli } from "../src/cli.js";
import { ServingError } from "../src/runtime/errors.js";
import { ADD_SUB, ROOT, cleanupRepos, grpcClient, grpcUnary, makeRepo, sleep } from "./server-helpers.js";
import { SLOW } from "./fixtures/serving/models.js";

test.after.always(() => cleanupRepos());

const CLI = join(ROOT, "src/cli.ts");
const f32 = (a: number[]): Buffer => Buffer.from(new Float32Array(a).buffer);

interface Run {
  child: ChildProcess;
  stdout: () => string;
  stderr: () => string;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

/** Runs the CLI the way this process runs TypeScript (same --import flags). */
function runCli(args: string[]): Run {
  const child = spawn(process.execPath, [...process.execArgv, CLI, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  const exit = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("exit", (code, signal) => resolve({ code, signal })),
  );
  return { child, stdout: () => out, stderr: () => err, exit };
}

/** Waits for "Started HTTPService at host:port" and returns the base URL. */
async function started(run: Run, timeoutMs = 60_000): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const m = /Started HTTPService at (\S+):(\d+)/.exec(run.stdout());
    if (m) return `http://${m[1]}:${m[2]}`;
    if (run.child.exitCode !== null || Date.now() > deadline) {
      throw new Error(`the server did not start:\n${run.stdout()}\n${run.stderr()}`);
    }
    await sleep(50);
  }
}

test("parseCli: serve with every option", (t) => {
  const c = parseCli([
    "serve",
    "/models",
    "--http-port",
    "8001",
    "--host=0.0.0.0",
    "--log-verbose",
    "--allow-client-shm=true",
    "--strict-readiness=false",
    "--http-max-body-size",
    "1024",
  ]);
  t.is(c.command, "serve");
  t.deepEqual(c.options, {
    repository: "/models",
    port: 8001,
    host: "0.0.0.0",
    logVerbose: true,
    allowClientShm: true,
    strictReadiness: false,
    bodyLimit: 1024,
  });
  t.deepEqual(parseCli(["--model-repository=/m"]).options.repository, "/m", "Triton's spelling works too");
  t.is(parseCli(["serve", "--allow-client-shm"]).options.allowClientShm, true);
});

test("parseCli: defaults (127.0.0.1, the bundled examples) and help/version", (t) => {
  const c = parseCli(["serve"]);
  t.is(c.options.repository, defaultRepository());
  t.true(existsSync(join(defaultRepository(), "add_sub", "config.pbtxt")));
  t.is(c.options.host, undefined, "the server binds 127.0.0.1 unless told otherwise");
  t.is(c.options.port, undefined);
  t.is(parseCli([]).command, "help");
  t.is(parseCli(["serve", "--help"]).command, "help");
  t.is(parseCli(["-h"]).command, "help");
  t.is(parseCli(["--version"]).command, "version");
});

test("parseCli: usage errors", (t) => {
  const bad = (args: string[], re: RegExp) => {
    const err = t.throws(() => parseCli(args), { instanceOf: ServingError });
    t.is(err?.code, "ERR_CLI_USAGE");
    t.regex(err!.message, re);
  };
  bad(["serve", "--http-port", "abc"], /--http-port must be an integer from 0 to 65535, got 'abc'/);
  bad(["serve", "--http-port", "70000"], /from 0 to 65535/);
  bad(["serve", "--http-port"], /--http-port needs a value/);
  bad(["serve", "--bogus"], /unknown option '--bogus'/);
  bad(["frobnicate"], /unknown command 'frobnicate'/);
  bad(["serve", "a", "b"], /one model repository/);
  bad(["serve", "--allow-client-shm=maybe"], /takes true or false/);
  bad(["serve", "--grpc-port", "abc"], /--grpc-port must be an integer from 0 to 65535, got 'abc'/);
  bad(["serve", "--allow-grpc=maybe"], /takes true or false/);
});

test("parseCli: --grpc-port and --allow-grpc (Triton's spellings)", (t) => {
  t.is(parseCli(["serve", "--grpc-port", "8011"]).options.grpcPort, 8011);
  t.is(parseCli(["serve", "--grpc-port=0"]).options.grpcPort, 0);
  t.is(parseCli(["serve", "--allow-grpc=false"]).options.allowGrpc, false);
  t.is(parseCli(["serve", "--allow-grpc"]).options.allowGrpc, true);
  t.is(parseCli(["serve"]).options.grpcPort, undefined, "8001 unless told otherwise");
});

test("serve --grpc-port 0: prints where gRPC listens, and a gRPC client infers there; --allow-grpc=false serves none", async (t) => {
  const repo = makeRepo({ add_sub: ADD_SUB });
  const run = runCli(["serve", repo, "--http-port", "0", "--grpc-port", "0"]);
  try {
    await started(run);
    const m = /Started GRPCInferenceService at (127\.0\.0\.1:\d+)/.exec(run.stdout());
    t.truthy(m, run.stdout());
    const client = grpcClient(m![1]!);
    try {
      t.deepEqual(await grpcUnary(client, "ServerLive", {}), { ok: true, value: { live: true } });
      const a = await grpcUnary(client, "ModelInfer", {
        model_name: "add_sub",
        inputs: [
          { name: "INPUT0", datatype: "FP32", shape: [4] },
          { name: "INPUT1", datatype: "FP32", shape: [4] },
        ],
        raw_input_contents: [f32([1, 2, 3, 4]), f32([4, 3, 2, 1])],
      });
      t.true(a.ok && Buffer.from(a.value.raw_output_contents[0]).equals(f32([5, 5, 5, 5])));
    } finally {
      client.close();
    }
    run.child.kill("SIGTERM");
    t.is((await run.exit).code, 0, run.stderr());
  } finally {
    if (run.child.exitCode === null) run.child.kill("SIGKILL");
  }
  const off = runCli(["serve", repo, "--http-port", "0", "--allow-grpc=false"]);
  try {
    await started(off);
    t.notRegex(off.stdout(), /GRPCInferenceService/);
    off.child.kill("SIGTERM");
    t.is((await off.exit).code, 0, off.stderr());
  } finally {
    if (off.child.exitCode === null) off.child.kill("SIGKILL");
  }
});

test("serve with the gRPC port in use: exits 1 and says which address", async (t) => {
  const blocker = createServer();
  await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r));
  const port = (blocker.address() as { port: number }).port;
  try {
    const run = runCli(["serve", makeRepo({ add_sub: ADD_SUB }), "--http-port", "0", "--grpc-port", String(port)]);
    t.is((await run.exit).code, 1, run.stdout());
    t.regex(run.stderr(), new RegExp(`cannot start the server: the gRPC service cannot listen on 127\\.0\\.0\\.1:${port}: the address is already in use`));
  } finally {
    await new Promise((r) => blocker.close(r));
  }
});

test("tensorbridge --help prints the usage; bad options exit 2", async (t) => {
  const help = runCli(["--help"]);
  t.is((await help.exit).code, 0);
  t.is(help.stdout(), USAGE);
  t.regex(USAGE, /tensorbridge serve \[<model-repository>\]/);
  t.regex(USAGE, /--http-port/);
  t.regex(USAGE, /--host/);
  t.regex(USAGE, /--log-verbose/);
  const bad = runCli(["serve", "--nope"]);
  t.is((await bad.exit).code, 2);
  t.regex(bad.stderr(), /unknown option '--nope'/);
  const missing = runCli(["serve", "/nonexistent/tb-repo", "--http-port", "0"]);
  t.is((await missing.exit).code, 1);
  t.regex(missing.stderr(), /cannot start the server: cannot read model repository/);
});

for (const signal of ["SIGTERM", "SIGINT"] as const) {
  test(`serve: answers on 127.0.0.1; ${signal} lets in-flight requests finish, finalizes, exits 0`, async (t) => {
    const repo = makeRepo({ add_sub: ADD_SUB, slow: SLOW });
    const run = runCli(["serve", repo, "--http-port", "0", "--grpc-port", "0"]);
    try {
      const url = await started(run);
      t.true(url.startsWith("http://127.0.0.1:"), url);
      t.regex(run.stdout(), /\| add_sub +\| 1 +\| READY/);
      t.is((await fetch(`${url}/v2/health/ready`)).status, 200);
      const infer = await fetch(`${url}/v2/models/add_sub/infer`, {
        method: "POST",
        body: JSON.stringify({
          inputs: [
            { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
            { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
          ],
        }),
      });
      t.deepEqual(((await infer.json()) as { outputs: { data: number[] }[] }).outputs[0]!.data, [5, 5, 5, 5]);

      const inflight = fetch(`${url}/v2/models/slow/infer`, {
        method: "POST",
        body: JSON.stringify({ parameters: { sleep_ms: 500 }, inputs: [{ name: "IN", datatype: "INT32", shape: [1], data: [0] }] }),
      });
      await sleep(150);
      run.child.kill(signal);
      const res = await inflight;
      t.is(res.status, 200, "the in-flight request finished");
      const { code } = await run.exit;
      t.is(code, 0, run.stderr());
      t.regex(run.stdout(), new RegExp(`${signal}: stopping`));
      t.regex(run.stdout(), /stopped/);
      t.true(existsSync(join(repo, "slow", "finalized-slow_0_0")), "finalize() ran");
    } finally {
      if (run.child.exitCode === null) run.child.kill("SIGKILL");
    }
  });
}

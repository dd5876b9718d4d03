/**
 * The examples, as users run them. The README's quick start: `npm start` (here with
 * `-- --http-port 0 --grpc-port 0`, so that the test needs no fixed port) serves
 * `examples/models` on 127.0.0.1; the README's `curl` request gets the
 * answer the README prints; `examples/client.ts` checks add_sub over JSON
 * and binary tensors; `examples/stream.ts` streams the decoupled `repeat`
 * over gRPC and generate_stream; Ctrl-C stops the server.
 *
 * The request and the expected answer are read from README.md itself, so
 * the README cannot drift from what the server does. And the Tensor tour,
 * `examples/roundtrip.ts`.
 */
import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";

import test from "ava";

import { ROOT, sleep } from "./server-helpers.js";

/** npm's CLI as `npm test` runs it, else the one beside this node, else none (the GPU machine carries node alone). */
function npmCli(): string | undefined {
  const cli = process.env["npm_execpath"];
  if (cli && cli.endsWith(".js") && existsSync(cli)) return cli;
  const beside = join(dirname(process.execPath), "../lib/node_modules/npm/bin/npm-cli.js");
  return existsSync(beside) ? beside : undefined;
}
const NPM = npmCli();
const withNpm = NPM ? test : test.skip;
const needsNpm = NPM ? "" : " (skipped: npm not found beside this node and npm_execpath unset)";

/** Runs npm under this node. */
function npm(args: string[]): ChildProcess {
  // Its own process group, so that the whole tree (npm, sh, node) gets the signal, as from a terminal.
  return spawn(process.execPath, [NPM!, ...args], { cwd: ROOT, detached: true, stdio: ["ignore", "pipe", "pipe"] });
}

interface Example {
  path: string;
  body: unknown;
  answer: unknown;
}

/** The README's curl example: its URL path, its `-d` body and the answer in the comment under it. */
function readmeExample(): Example {
  const readme = readFileSync(join(ROOT, "README.md"), "utf8");
  const m = /curl -s localhost:8000(\S+) -d '([^']+)'\n# (\{.*\})\n/.exec(readme);
  if (!m) throw new Error("README.md has no `curl -s localhost:8000... -d '...'` example followed by `# {answer}`");
  return { path: m[1]!, body: JSON.parse(m[2]!), answer: JSON.parse(m[3]!) };
}

withNpm(`quick start: npm start serves examples/models; the README's curl answer and examples/client.ts hold; Ctrl-C stops it${needsNpm}`, async (t) => {
  const example = readmeExample();
  const server = npm(["start", "--", "--http-port", "0", "--grpc-port", "0"]);
  let out = "";
  server.stdout!.on("data", (d: Buffer) => (out += d.toString()));
  server.stderr!.on("data", (d: Buffer) => (out += d.toString()));
  // "close": npm has exited and every process writing to its pipes (the server) has ended.
  const closed = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => server.on("close", (code, signal) => r({ code, signal })));
  try {
    let url: string | undefined;
    for (const deadline = Date.now() + 120_000; url === undefined; await sleep(50)) {
      url = /Started HTTPService at (\S+:\d+)/.exec(out)?.[1];
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`npm start did not start the server:\n${out}`);
    }
    t.true(url.startsWith("127.0.0.1:"), `binds 127.0.0.1 by default: ${url}`);
    for (const model of ["add_sub", "dlpack_identity", "force_cpu_no", "repeat"]) t.regex(out, new RegExp(`\\| ${model} +\\| 1 +\\| READY`));
    const grpcUrl = /Started GRPCInferenceService at (\S+:\d+)/.exec(out)?.[1];
    t.truthy(grpcUrl, out);

    // curl -d sends application/x-www-form-urlencoded; the server must not care.
    const res = await fetch(`http://${url}${example.path}`, {
      method: "POST",
      headers: { "content-type": "application/x-www-form-urlencoded" },
      body: JSON.stringify(example.body),
    });
    t.is(res.status, 200);
    t.deepEqual(await res.json(), example.answer);

    const client = spawn(process.execPath, ["--import", "tsx", join(ROOT, "examples/client.ts"), "--url", `http://${url}`], { cwd: ROOT });
    let clientOut = "";
    client.stdout.on("data", (d: Buffer) => (clientOut += d.toString()));
    client.stderr.on("data", (d: Buffer) => (clientOut += d.toString()));
    const code = await new Promise<number | null>((r) => client.on("exit", r));
    t.is(code, 0, clientOut);
    t.regex(clientOut, /JSON {3}OUTPUT0 = INPUT0 \+ INPUT1/);
    t.regex(clientOut, /binary OUTPUT1 = INPUT0 - INPUT1/);

    // The decoupled example, streamed over gRPC and generate_stream.
    const stream = spawn(process.execPath, ["--import", "tsx", join(ROOT, "examples/stream.ts"), "--http", `http://${url}`, "--grpc", grpcUrl!], { cwd: ROOT });
    let streamOut = "";
    stream.stdout.on("data", (d: Buffer) => (streamOut += d.toString()));
    stream.stderr.on("data", (d: Buffer) => (streamOut += d.toString()));
    t.is(await new Promise<number | null>((r) => stream.on("exit", r)), 0, streamOut);
    t.regex(streamOut, /ModelStreamInfer: \[4, 5, 6, 7\] ok/);
    t.regex(streamOut, /generate_stream: \[4, 5, 6, 7\] ok/);
  } finally {
    if (server.exitCode === null) process.kill(-server.pid!, "SIGINT");
  }
  // npm itself dies of the SIGINT, as it does from a terminal; the server stops gracefully.
  const { code, signal } = await closed;
  t.true(code === 0 || signal === "SIGINT", `npm: code ${code}, signal ${signal}`);
  t.regex(out, /SIGINT: stopping/);
  t.regex(out, /tensorbridge: stopped/);
});

test("examples/roundtrip.ts: the DLPack round trip shares memory and a second import is ERR_DLPACK_CONSUMED", async (t) => {
  const run = spawn(process.execPath, ["--import", "tsx", join(ROOT, "examples/roundtrip.ts")], { cwd: ROOT });
  let out = "";
  run.stdout.on("data", (d: Buffer) => (out += d.toString()));
  run.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const code = await new Promise<number | null>((r) => run.on("exit", r));
  t.is(code, 0, out);
  t.regex(out, /exported a versioned \(DLPack 1\.x\) capsule/);
  t.regex(out, /same memory, no copy/);
  t.regex(out, /the caller's array now starts with 100/);
  t.regex(out, /fails cleanly: ERR_DLPACK_CONSUMED/);
});

/**
 * The package as published: `dist/` built by `tsc -p tsconfig.build.json`
 * beside the binding's `index.js`, `package.json` and the addon, the CLI run
 * by plain `node` (no tsx in the command line). It must load `.ts` models
 * (the runtime registers tsx itself), give them this copy of `tensorbridge`
 * even where the working directory's tsconfig maps `tensorbridge` elsewhere
 * (this repository's does, to `src/`), and run instances in worker threads.
 */
import { spawn, execFileSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import test from "ava";

import { ADD_SUB, ROOT, cleanupRepos, makeRepo, sleep } from "./server-helpers.js";

test.after.always(() => cleanupRepos());

const TSC = join(ROOT, "node_modules/typescript/bin/tsc");
// The GPU machine's carried node_modules leaves the compiler out.
const withTsc = existsSync(TSC) ? test : test.skip;
const needsTsc = existsSync(TSC) ? "" : " (skipped: typescript is not installed; npm ci installs it)";

/** Builds dist/ into a fresh folder laid out as the npm package is. */
function buildPackage(): string {
  const dir = mkdtempSync(join(tmpdir(), "tb-dist-"));
  execFileSync(process.execPath, [TSC, "-p", join(ROOT, "tsconfig.build.json"), "--outDir", join(dir, "dist")], { cwd: ROOT });
  for (const f of readdirSync(ROOT)) {
    if (f === "index.js" || f === "index.d.ts" || f === "package.json" || f === "proto" || f === "node_modules" || f.endsWith(".node")) symlinkSync(join(ROOT, f), join(dir, f));
  }
  return dir;
}

withTsc(`dist/cli.js under plain node serves .ts models, in-thread and in worker threads, with the package's own tensorbridge${needsTsc}`, async (t) => {
  const pkg = buildPackage();
  t.teardown(() => rmSync(pkg, { recursive: true, force: true }));
  const threaded = ADD_SUB.config.replace(/name: "add_sub"/, "name: \"add_sub_threads\"") + `\nparameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }\n`;
  const repo = makeRepo({ add_sub: ADD_SUB, add_sub_threads: { ...ADD_SUB, config: threaded } });
  // cwd is this repository, whose tsconfig maps `tensorbridge` to src/: the models must still get dist/.
  const server = spawn(process.execPath, [join(pkg, "dist/cli.js"), "serve", repo, "--http-port", "0", "--grpc-port", "0"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  server.stdout.on("data", (d: Buffer) => (out += d.toString()));
  server.stderr.on("data", (d: Buffer) => (out += d.toString()));
  const exited = new Promise<number | null>((r) => server.on("exit", r));
  try {
    let url: string | undefined;
    for (const deadline = Date.now() + 60_000; url === undefined; await sleep(50)) {
      url = /Started HTTPService at (\S+:\d+)/.exec(out)?.[1];
      if (server.exitCode !== null || Date.now() > deadline) throw new Error(`dist/cli.js did not start:\n${out}`);
    }
    for (const model of ["add_sub", "add_sub_threads"]) {
      const res = await fetch(`http://${url}/v2/models/${model}/infer`, {
        method: "POST",
        body: JSON.stringify({
          inputs: [
            { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
            { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
          ],
        }),
      });
      const body = (await res.json()) as { outputs?: { name: string; data: number[] }[]; error?: string };
      t.is(res.status, 200, `${model}: ${JSON.stringify(body)}`);
      t.deepEqual(body.outputs?.map((o) => [o.name, o.data]), [
        ["OUTPUT0", [5, 5, 5, 5]],
        ["OUTPUT1", [-3, -1, 1, 3]],
      ]);
    }
  } finally {
    if (server.exitCode === null) server.kill("SIGTERM");
  }
  t.is(await exited, 0, out);
});

/** The `--flags` of a command line, sorted. */
const flags = (words: string[]): string[] => words.filter((w) => w.startsWith("--")).toSorted();

test("npm run build generates the binding as the committed loader is made: napi build with the flags ensure-addon passes", (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { scripts: Record<string, string> };
  const ensure = readFileSync(join(ROOT, "scripts/ensure-addon.mjs"), "utf8");
  // ensure-addon's argument list, as `napi build …` words.
  const args = /napi,\s*((?:"[^"]+",\s*)+)\]/.exec(ensure)?.[1];
  t.truthy(args, "ensure-addon's napi arguments were found");
  const ensureFlags = flags([...args!.matchAll(/"([^"]+)"/g)].map((m) => m[1]!));
  t.true(ensureFlags.includes("--esm"), "the committed loader is an ES module");
  for (const script of ["build", "build:debug"]) {
    const napi = pkg.scripts[script]!.split("&&")[0]!.trim().split(/\s+/);
    t.deepEqual(flags(napi).filter((f) => f !== "--release"), ensureFlags.filter((f) => f !== "--release"), `npm run ${script}`);
  }
});

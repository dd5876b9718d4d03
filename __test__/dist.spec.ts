/**
 * The package as published: `dist/` built by `tsc -p tsconfig.build.json`
 * beside the binding's `index.js`, `package.json` and the addon, the CLI run
 * by plain `node` (no tsx in the command line). It must load `.ts` models
 * (the runtime registers tsx itself), give them this copy of `tensorbridge`
 * even where the working directory's tsconfig maps `tensorbridge` elsewhere
 * (this repository's does, to `src/`), and run instances in worker threads.
 */
import { spawn, spawnSync, execFileSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

import test from "ava";
import { parse as parseYaml } from "yaml";

import { ErrorCode } from "../src/errors.js";
import { PREBUILT_PLATFORMS, platformName } from "../src/native-platform.js";

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

let built: string | undefined;
/** One dist/ build shared by the tests that only read it. */
function sharedPackage(): string {
  built ??= buildPackage();
  return built;
}
test.after.always(() => {
  if (built !== undefined) rmSync(built, { recursive: true, force: true });
});

/** Runs an ES module program under plain node; its last stdout line is JSON. */
function runProgram(source: string, options: { cwd?: string; env?: Record<string, string> } = {}): Record<string, unknown> {
  const r = spawnSync(process.execPath, ["--input-type=module", "-e", source], {
    cwd: options.cwd ?? tmpdir(),
    env: { ...process.env, ...options.env },
    encoding: "utf8",
  });
  const last = r.stdout.trim().split("\n").at(-1) ?? "";
  try {
    return JSON.parse(last) as Record<string, unknown>;
  } catch {
    throw new Error(`program printed no JSON (exit ${r.status}):\n${r.stdout}\n${r.stderr}`);
  }
}

/** Imports `url` and prints `{ loaded }` or the thrown error's code and message. */
const importProgram = (url: string, before = ""): string => `
${before}
try { await import(${JSON.stringify(url)}); console.log(JSON.stringify({ loaded: true })); }
catch (e) { console.log(JSON.stringify({ code: e.code, message: e.message })); }`;

/** The package without any .node file, with its own loader and dist/ (the shared one's are links into this repository, whose root holds the addon). */
function barePackage(): string {
  const bare = mkdtempSync(join(tmpdir(), "tb-bare-"));
  cpSync(join(sharedPackage(), "dist"), join(bare, "dist"), { recursive: true });
  for (const f of ["index.js", "index.d.ts", "package.json"]) cpSync(join(ROOT, f), join(bare, f));
  symlinkSync(join(ROOT, "node_modules"), join(bare, "node_modules"));
  return bare;
}

withTsc(`no binary for this platform: ERR_NATIVE_UNAVAILABLE names the platform and how to build from source${needsTsc}`, (t) => {
  const bare = barePackage();
  t.teardown(() => rmSync(bare, { recursive: true, force: true }));
  // A platform no package exists for.
  const r = runProgram(importProgram(pathToFileURL(join(bare, "dist/index.js")).href, 'Object.defineProperty(process, "arch", { value: "riscv64" });'));
  t.is(r.code, ErrorCode.NATIVE_UNAVAILABLE, JSON.stringify(r));
  const message = String(r.message);
  t.true(message.includes(`${process.platform}-riscv64`), message);
  t.true(message.includes("no prebuilt binary exists"), message);
  t.true(message.includes("build it from source") && message.includes("https://rustup.rs"), message);
});

withTsc(`a supported platform whose optional package is missing: the error names the package to install${needsTsc}`, (t) => {
  const platform = platformName();
  const bare = barePackage();
  t.teardown(() => rmSync(bare, { recursive: true, force: true }));
  const r = runProgram(importProgram(pathToFileURL(join(bare, "dist/index.js")).href));
  t.is(r.code, ErrorCode.NATIVE_UNAVAILABLE, JSON.stringify(r));
  const message = String(r.message);
  t.true(message.includes(`on ${platform}`), message);
  if (["linux-x64-gnu", "linux-arm64-gnu", "darwin-arm64", "darwin-x64", "win32-x64-msvc"].includes(platform)) {
    t.true(message.includes(`tensorbridge-${platform}@0.1.0`), message);
  }
  t.true(message.includes("build it from source"), message);
  // The same package with the binary installed as its platform package loads.
  const plat = join(bare, "node_modules-with-platform");
  mkdirSync(join(plat, "node_modules", `tensorbridge-${platform}`), { recursive: true });
  const addon = readdirSync(ROOT).find((f) => /^tensorbridge\..+\.node$/.test(f))!;
  cpSync(join(ROOT, "npm", platform, "package.json"), join(plat, "node_modules", `tensorbridge-${platform}`, "package.json"));
  symlinkSync(join(ROOT, addon), join(plat, "node_modules", `tensorbridge-${platform}`, addon));
  for (const dep of readdirSync(join(ROOT, "node_modules"))) {
    if (dep !== `tensorbridge-${platform}`) symlinkSync(join(ROOT, "node_modules", dep), join(plat, "node_modules", dep));
  }
  rmSync(join(bare, "node_modules"));
  symlinkSync(join(plat, "node_modules"), join(bare, "node_modules"));
  t.deepEqual(runProgram(importProgram(pathToFileURL(join(bare, "dist/index.js")).href)), { loaded: true });
});

withTsc(`a release addon (no test hooks): debug.foreignTensor is ERR_TEST_HOOKS_UNAVAILABLE${needsTsc}`, (t) => {
  const pkg = sharedPackage();
  const addon = readdirSync(ROOT).find((f) => /^tensorbridge\..+\.node$/.test(f));
  t.truthy(addon, "the development addon is built");
  // The addon as a release build presents it: testingHooks() is null (the pack proof runs a real one).
  const dir = mkdtempSync(join(tmpdir(), "tb-release-"));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const shim = join(dir, "release-like.cjs");
  writeFileSync(shim, `module.exports = { ...require(${JSON.stringify(join(ROOT, addon!))}), testingHooks: () => null };\n`);
  const r = runProgram(
    `const { debug } = await import(${JSON.stringify(pathToFileURL(join(pkg, "dist/debug.js")).href)});
const codes = [];
for (const f of [() => debug.foreignTensor({ shape: [2], versioned: true }), () => debug.foreignStats()]) {
  try { f(); codes.push("no error"); } catch (e) { codes.push(e.code); }
}
console.log(JSON.stringify({ codes, stats: typeof debug.stats().exportsCreated }));`,
    { env: { NAPI_RS_NATIVE_LIBRARY_PATH: shim } },
  );
  t.deepEqual(r, { codes: [ErrorCode.TEST_HOOKS_UNAVAILABLE, ErrorCode.TEST_HOOKS_UNAVAILABLE], stats: "number" });
});

withTsc(`debug is the tensorbridge/debug subpath, not a root export${needsTsc}`, (t) => {
  const app = mkdtempSync(join(tmpdir(), "tb-app-"));
  t.teardown(() => rmSync(app, { recursive: true, force: true }));
  mkdirSync(join(app, "node_modules"));
  symlinkSync(sharedPackage(), join(app, "node_modules", "tensorbridge"));
  const r = runProgram(
    `const root = await import("tensorbridge");
const sub = await import("tensorbridge/debug");
let deep = "resolved";
try { await import("tensorbridge/dist/native.js"); } catch (e) { deep = e.code; }
// CommonJS users, where Node can require ES modules: no top-level await on the way.
let cjs = "unsupported";
if (process.features.require_module) {
  const { createRequire } = await import("node:module");
  try { cjs = typeof createRequire(${JSON.stringify(join(app, "index.cjs"))})("tensorbridge").Tensor; } catch (e) { cjs = e.code; }
}
console.log(JSON.stringify({ rootDebug: "debug" in root, tensor: typeof root.Tensor, stats: typeof sub.debug.stats().exportsCreated, deep, cjs }));`,
    { cwd: app },
  );
  const cjs = (process.features as { require_module?: boolean }).require_module ? "function" : "unsupported";
  t.deepEqual(r, { rootDebug: false, tensor: "function", stats: "number", deep: "ERR_PACKAGE_PATH_NOT_EXPORTED", cjs });
});

test("npm pack / npm publish run prepare, which builds nothing there (no cargo needed)", (t) => {
  // A PATH with node only: a cargo build would fail.
  const bin = mkdtempSync(join(tmpdir(), "tb-path-"));
  t.teardown(() => rmSync(bin, { recursive: true, force: true }));
  symlinkSync(process.execPath, join(bin, "node"));
  for (const command of ["publish", "pack"]) {
    const r = spawnSync(process.execPath, [join(ROOT, "scripts/ensure-addon.mjs"), "--force"], {
      cwd: ROOT,
      env: { PATH: bin, npm_lifecycle_event: "prepare", npm_command: command },
      encoding: "utf8",
    });
    t.is(r.status, 0, r.stderr);
    t.regex(r.stderr, new RegExp(`npm ${command}: not building the addon`));
  }
});

test("package-lock.json's root entry is package.json's: a fresh npm install leaves it as committed", (t) => {
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as Record<string, unknown>;
  const lock = JSON.parse(readFileSync(join(ROOT, "package-lock.json"), "utf8")) as { name: string; version: string; packages: Record<string, Record<string, unknown>> };
  const rootEntry = lock.packages[""]!;
  t.is(lock.name, pkg.name as string);
  t.is(lock.version, pkg.version as string);
  for (const field of ["name", "version", "license", "bin", "engines", "dependencies", "devDependencies"]) {
    t.deepEqual(rootEntry[field], pkg[field], field);
  }
  t.deepEqual(rootEntry.bin, { tensorbridge: "dist/cli.js" });
});

interface Workflow {
  on: Record<string, { inputs?: Record<string, { type: string; default: unknown }> } | null>;
  env?: Record<string, string>;
  jobs: Record<string, {
    "runs-on": string;
    needs?: string | string[];
    if?: string;
    permissions?: Record<string, string>;
    env?: Record<string, string>;
    strategy?: { matrix: { include?: Record<string, unknown>[] } };
    steps: { run?: string; uses?: string; env?: Record<string, string>; with?: Record<string, unknown> }[];
  }>;
}

const napiTargets = (): string[] => (JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { napi: { targets: string[] } }).napi.targets;

test("the release workflow: every napi target built on a runner that exists, cross-compiled with zig for musl, smoke-tested where it runs", (t) => {
  const wf = parseYaml(readFileSync(join(ROOT, ".github/workflows/CI.yml"), "utf8")) as Workflow;
  const targets = napiTargets();
  t.deepEqual(targets.toSorted(), [
    "aarch64-apple-darwin", "aarch64-pc-windows-msvc", "aarch64-unknown-linux-gnu", "aarch64-unknown-linux-musl",
    "x86_64-apple-darwin", "x86_64-pc-windows-msvc", "x86_64-unknown-linux-gnu", "x86_64-unknown-linux-musl",
  ]);
  // GitHub-hosted labels available today (macos-13 is retired).
  const runners = new Set(["ubuntu-24.04", "ubuntu-24.04-arm", "macos-14", "macos-15", "windows-2025", "windows-11-arm"]);
  const build = wf.jobs.build!.strategy!.matrix.include!;
  t.deepEqual(build.map((m) => m.target).toSorted(), targets.toSorted(), "one build per napi target");
  for (const m of build) {
    t.true(runners.has(String(m.host)), `build ${String(m.target)} on ${String(m.host)}`);
    t.is(Boolean(m.zig), String(m.target).includes("musl"), `zig for musl only: ${String(m.target)}`);
  }
  const buildRun = wf.jobs.build!.steps.find((s) => s.run?.includes("napi build"))!.run!;
  t.true(buildRun.includes("${{ matrix.zig && '-x' || '' }}"), "musl builds pass -x (cargo-zigbuild)");
  t.true(wf.jobs.build!.steps.some((s) => s.uses?.startsWith("mlugg/setup-zig")), "zig is installed for them");
  // musl's default static C runtime rules out a cdylib (cargo drops the crate type): off for them.
  t.is(wf.jobs.build!.steps.find((s) => s.run?.includes("napi build"))!.env?.RUSTFLAGS, "${{ matrix.zig && '-C target-feature=-crt-static' || '' }}");
  t.true(wf.jobs.build!.steps.some((s) => s.run?.includes("git diff --exit-code -- index.js index.d.ts")), "the regenerated loader must be the committed one");

  const smoke = wf.jobs.smoke!.strategy!.matrix.include!;
  t.deepEqual(smoke.map((m) => m.target).toSorted(), targets.toSorted(), "every binary is smoke-tested");
  for (const m of smoke) {
    const target = String(m.target);
    t.true(runners.has(String(m.host)), `smoke ${target} on ${String(m.host)}`);
    const arm = target.startsWith("aarch64");
    if (target.includes("linux")) {
      // Docker of the target's libc and architecture, on a runner of that architecture.
      t.is(m.image, target.endsWith("musl") ? "node:20-alpine" : "node:20-slim", target);
      t.is(m.docker, arm ? "linux/arm64" : "linux/amd64", target);
      t.is(String(m.host).endsWith("-arm"), arm, target);
    } else {
      t.is(m.arch, arm ? "arm64" : "x64", target);
    }
  }
  t.true(wf.jobs.smoke!.steps.some((s) => s.run?.includes("docker run") && s.run.includes("scripts/smoke-binary.mjs")));
});

test("the release workflow publishes from one job, with the token and --provenance on every publish, and a workflow_dispatch dry run", (t) => {
  const wf = parseYaml(readFileSync(join(ROOT, ".github/workflows/CI.yml"), "utf8")) as Workflow;
  const publishers = Object.entries(wf.jobs).filter(([, job]) => job.steps.some((s) => s.run?.includes("npm publish") || s.run?.includes("napi prepublish") || s.run?.includes("napi pre-publish")));
  t.deepEqual(publishers.map(([name]) => name), ["publish"]);
  const job = wf.jobs.publish!;
  t.is(job.env?.NODE_AUTH_TOKEN, "${{ secrets.NPM_TOKEN }}", "the token is set for the whole job");
  t.is(job.permissions?.["id-token"], "write", "provenance needs the OIDC token");
  const publishes = job.steps.filter((s) => s.run?.includes("npm publish"));
  t.is(publishes.length, 2, "the platform packages, then the main package");
  for (const s of publishes) {
    t.true(s.run!.includes("--provenance") && s.run!.includes("$DRY_RUN"), s.run!);
    t.is(s.env?.NODE_AUTH_TOKEN, undefined, "no step overrides the job's token");
  }
  t.true(job.steps.findIndex((s) => s.run?.includes("platform-packages.mjs manifest")) < job.steps.indexOf(publishes[1]!), "optionalDependencies are written before the main package is published");
  t.deepEqual(wf.on.workflow_dispatch?.inputs?.["dry-run"], { description: "npm publish --dry-run (untick to publish for real)", type: "boolean", default: true });
  t.true(job.env?.DRY_RUN?.includes("'--dry-run'"), job.env?.DRY_RUN);
  t.deepEqual([job.needs].flat().toSorted(), ["smoke", "test"]);
});

test("npm/ holds one package per napi target, and the published package names each as an optional dependency", async (t) => {
  const { platformPackages, optionalDependencies, platformOf, releaseManifest } = (await import(pathToFileURL(join(ROOT, "scripts/platform-packages.mjs")).href)) as {
    releaseManifest: () => { scripts: Record<string, string>; optionalDependencies: Record<string, string>; bin: unknown };
    platformPackages: () => { triple: string; platform: string; name: string; version: string; binary: string; manifest: { os: string[]; cpu: string[]; libc?: string[]; main: string; files: string[] } }[];
    optionalDependencies: () => Record<string, string>;
    platformOf: (triple: string) => string;
  };
  const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { version: string; repository?: { url: string }; optionalDependencies?: unknown };
  const packages = platformPackages();
  t.deepEqual(readdirSync(join(ROOT, "npm")).toSorted(), packages.map((p) => p.platform).toSorted(), "no stray npm/ folder");
  for (const p of packages) {
    const [os, cpu, libc] = p.platform.split("-");
    t.is(p.name, `tensorbridge-${p.platform}`);
    t.is(p.version, pkg.version, p.name);
    t.deepEqual(p.manifest.os, [os], p.name);
    t.deepEqual(p.manifest.cpu, [cpu], p.name);
    t.deepEqual(p.manifest.libc, libc === "gnu" || libc === "musl" ? [libc === "gnu" ? "glibc" : "musl"] : undefined, p.name);
    t.is(p.manifest.main, p.binary, p.name);
    t.deepEqual(p.manifest.files, [p.binary], p.name);
  }
  t.is(platformOf("aarch64-unknown-linux-musl"), "linux-arm64-musl");
  // The list ERR_NATIVE_UNAVAILABLE's message gives.
  t.deepEqual([...PREBUILT_PLATFORMS].toSorted(), packages.map((p) => p.platform).toSorted());
  t.deepEqual(optionalDependencies(), Object.fromEntries(packages.map((p) => [p.name, pkg.version])));
  // As published: with them, and without `prepare` (which builds from source in a clone only).
  const published = releaseManifest();
  t.deepEqual(published.optionalDependencies, optionalDependencies());
  t.false("prepare" in published.scripts, "no prepare script in the published package");
  t.deepEqual(published.bin, { tensorbridge: "dist/cli.js" });
  // Written at publish time only: unpublished names in the repository's package.json would send npm install to the registry.
  t.is(pkg.optionalDependencies, undefined);
  t.truthy(pkg.repository?.url, "npm publish --provenance needs repository");
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
  // The loader does not depend on --release or on cargo features (crates/node/src/hooks.rs).
  const loaderFlags = (words: string[]): string[] => flags(words).filter((f) => f !== "--release" && f !== "--features");
  for (const script of ["build", "build:debug"]) {
    const napi = pkg.scripts[script]!.split("&&")[0]!.trim().split(/\s+/);
    t.deepEqual(loaderFlags(napi), loaderFlags(ensureFlags), `npm run ${script}`);
  }
  // The release workflow's build, less what picks the target and the cross-compiler.
  const wf = readFileSync(join(ROOT, ".github/workflows/CI.yml"), "utf8");
  const ci = /run: npx (napi build [^\n]+)/.exec(wf)![1]!.replace(/\$\{\{[^}]+\}\}/g, "").split(/\s+/);
  t.deepEqual(loaderFlags(ci).filter((f) => f !== "--target"), loaderFlags(ensureFlags), "the workflow's napi build");
  // Test hooks in the development addon only.
  t.true(ensure.includes('"--features",\n    "testing"'), "ensure-addon builds with the testing feature");
  t.false(pkg.scripts.build!.includes("testing"), "npm run build is a release build");
  t.false(ci.includes("testing"), "the workflow builds release binaries");
});

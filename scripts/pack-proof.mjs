#!/usr/bin/env node
// Proof that the package installs and runs with no Rust toolchain, as a user
// gets it from npm. The `pack-proof` step of `npm test`:
//
//  1. builds the release addon for this machine exactly as `npm run build` and
//     the release workflow do (napi build --platform --release --esm, no
//     `testing` feature) and checks that the loader it writes (index.js,
//     index.d.ts) is the committed one, byte for byte;
//  2. makes the platform package (npm/<platform> + that binary) and the main
//     package (package.json's `files`, dist/ from tsc, the optionalDependencies
//     the publish job writes, and the bundleDependencies as package-lock.json
//     has them, copied from node_modules) and packs both with `npm pack`;
//  3. checks the tarballs hold no tests, Rust sources or build leftovers of
//     ours, and under node_modules/ exactly the bundled packages, and prints
//     their sizes;
//  4. installs both tarballs into an empty folder with no `cargo` or `rustc` on
//     PATH; any `npm warn` or `npm error` line fails the proof (a user must act
//     on nothing), and so does any package in the installed tree, outside
//     tensorbridge's bundled dependencies, with an install script; there it
//     runs a TypeScript program (a DLPack round trip; the release addon has no
//     test hooks) and `npx tensorbridge serve` on the example models, whose
//     `.ts` files the runtime transpiles itself (no tsx or esbuild installed),
//     with an inference over HTTP.
//
//   node scripts/pack-proof.mjs [--keep]   (--keep leaves the temp folder)
//
// The release build shares target/ with the development build; cargo keeps
// both feature sets, so a repeat run relinks only the addon.
import { spawn, spawnSync } from "node:child_process";
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { delimiter, dirname, join, relative, sep } from "node:path";
import { fileURLToPath } from "node:url";

import { mainPackage, platformPackages, releaseManifest } from "./platform-packages.mjs";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const keep = process.argv.includes("--keep");
const t0 = Date.now();
const stage = mkdtempSync(join(tmpdir(), "tb-pack-proof-"));
const elapsed = () => `${((Date.now() - t0) / 1000).toFixed(1)}s`;
const kib = (n) => `${(n / 1024).toFixed(1)} KiB`;
const log = (line) => console.log(`pack-proof [${elapsed()}] ${line}`);

/** Servers started by withServer, stopped by fail() too. */
const running = new Set();

function fail(message) {
  for (const stop of running) stop();
  console.error(`pack-proof: FAILED: ${message}`);
  if (!keep) rmSync(stage, { recursive: true, force: true });
  else console.error(`pack-proof: left ${stage}`);
  process.exit(1);
}

/** Runs a command; fails the proof when it fails. Returns its stdout. */
function run(cmd, args, options = {}) {
  const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 << 20, ...options });
  if (r.status !== 0) fail(`${cmd} ${args.join(" ")} exited ${r.status ?? r.signal}\n${r.stdout ?? ""}\n${r.stderr ?? ""}`);
  return r.stdout;
}

// 1. The release addon, and the loader it generates.
const pkg = mainPackage();
const napi = join(root, "node_modules", "@napi-rs", "cli", "dist", "cli.js");
const napiArgs = pkg.scripts.build.split("&&")[0].trim().split(/\s+/).slice(2); // `napi build …` as npm run build has it
const out = join(stage, "build");
log(`napi build ${napiArgs.join(" ").replace("--output-dir .", "--output-dir <temp>")}`);
run(process.execPath, [napi, "build", ...napiArgs.map((a, i) => (napiArgs[i - 1] === "--output-dir" ? out : a))], { cwd: root, stdio: ["ignore", "ignore", "inherit"] });
for (const f of ["index.js", "index.d.ts"]) {
  if (!readFileSync(join(out, f)).equals(readFileSync(join(root, f)))) {
    fail(`the release build's ${f} differs from the committed one: commit what \`npm run build\` generates (diff ${join(out, f)} ${f})`);
  }
}
log("the release build's index.js and index.d.ts are the committed ones, byte for byte");

const binaries = readdirSync(out).filter((f) => f.endsWith(".node"));
if (binaries.length !== 1) fail(`expected one .node file from the build, found ${binaries.join(", ") || "none"}`);
const binary = binaries[0];
const platform = platformPackages().find((p) => p.binary === binary);
if (!platform) fail(`${binary} is no napi target's binary (package.json napi.targets)`);
const release = createRequire(import.meta.url)(join(out, binary));
if (release.testingHooks() !== null) fail("the release addon has test hooks (the `testing` feature leaked into the release build)");
log(`${binary}: a release build, testingHooks() is null`);

// 2. The two packages, packed as the publish job packs them.
const platDir = join(stage, "platform");
mkdirSync(platDir);
for (const f of readdirSync(platform.folder)) cpSync(join(platform.folder, f), join(platDir, f));
cpSync(join(out, binary), join(platDir, binary));

const mainDir = join(stage, "main");
mkdirSync(mainDir);
run(process.execPath, [join(root, "node_modules", "typescript", "bin", "tsc"), "-p", join(root, "tsconfig.build.json"), "--outDir", join(mainDir, "dist")], { cwd: root });
for (const entry of pkg.files.filter((f) => !f.startsWith("!") && f !== "dist")) cpSync(join(root, entry), join(mainDir, entry), { recursive: true });
for (const f of ["README.md", "LICENSE"]) if (existsSync(join(root, f))) cpSync(join(root, f), join(mainDir, f));
writeFileSync(join(mainDir, "package.json"), JSON.stringify(releaseManifest(), null, 2) + "\n");
// The bundled dependencies (gRPC: protobufjs, under @grpc/proto-loader, has a
// postinstall that npm 11 would ask every user to approve; a bundled package's
// is not asked about) go in as the lock file places them, which is what
// `npm publish` in the release job packs from its `npm ci` tree.
const lock = JSON.parse(readFileSync(join(root, "package-lock.json"), "utf8"));
const bundledPaths = Object.keys(lock.packages).filter((p) => lock.packages[p].inBundle);
const bundledNames = pkg.bundleDependencies ?? [];
for (const name of bundledNames) if (!bundledPaths.includes(`node_modules/${name}`)) fail(`package-lock.json does not bundle ${name} (run npm install)`);
for (const p of bundledPaths) {
  if (!existsSync(join(root, p, "package.json"))) fail(`${p} is missing (the bundled dependencies are packed from node_modules: run npm ci)`);
  // A bundled package's own node_modules holds only packages the lock lists as bundled paths of their own.
  cpSync(join(root, p), join(mainDir, p), { recursive: true, filter: (src) => !relative(join(root, p), src).split(sep).includes("node_modules") });
}

const tarballs = join(stage, "tarballs");
mkdirSync(tarballs);
const packed = [];
for (const dir of [platDir, mainDir]) {
  const [info] = JSON.parse(run("npm", ["pack", "--json", "--pack-destination", tarballs], { cwd: dir }));
  packed.push({ ...info, path: join(tarballs, info.filename) });
}

// 3. What the tarballs hold. Our files: no tests, sources or leftovers. Under
// node_modules/: the bundled packages' files, as their authors published them,
// and nothing else.
const leftovers = [
  [/(^|\/)__test__\//, "tests"],
  [/\.(spec|test)\.[cm]?[jt]s$/, "tests"],
  [/\.rs$|(^|\/)Cargo\.(toml|lock)$|(^|\/)crates\//, "Rust sources"],
  [/(^|\/)(target|node_modules|\.venv|bench|scripts|src)\//, "build leftovers or sources"],
  [/\.(map|tsbuildinfo|log|tgz)$|(^|\/)\.DS_Store$/, "build leftovers"],
];
/** The bundled package a tarball path lies in (its lock path, the deepest), or undefined. */
const bundledPathOf = (path) => bundledPaths.filter((b) => path.startsWith(`${b}/`)).sort((a, b) => b.length - a.length)[0];
for (const p of packed) {
  const main = p.name === pkg.name;
  const ours = p.files.filter((f) => !(main && f.path.startsWith("node_modules/")));
  const stray = p.files.filter((f) => f.path.startsWith("node_modules/") && (!main || bundledPathOf(f.path) === undefined)).map((f) => `${f.path} (not a bundled dependency)`);
  const bad = ours.flatMap((f) => leftovers.filter(([re]) => re.test(f.path)).map(([, what]) => `${f.path} (${what})`));
  if (bad.length + stray.length > 0) fail(`${p.filename} holds what users must not install:\n  ${[...bad, ...stray].join("\n  ")}`);
  const nodes = p.files.filter((f) => f.path.endsWith(".node")).map((f) => f.path);
  const expected = main ? [] : [binary];
  if (JSON.stringify(nodes) !== JSON.stringify(expected)) fail(`${p.filename}: .node files ${JSON.stringify(nodes)}, expected ${JSON.stringify(expected)}`);
  const inBundle = main ? bundledPaths : [];
  const missing = inBundle.filter((b) => !p.files.some((f) => f.path === `${b}/package.json`));
  if (missing.length > 0) fail(`${p.filename} lacks bundled packages: ${missing.join(", ")}`);
  // npm pack names the bundled packages at the top of node_modules/.
  const topLevel = inBundle.filter((b) => !b.slice("node_modules/".length).includes("/node_modules/")).map((b) => b.slice("node_modules/".length));
  if (JSON.stringify([...(p.bundled ?? [])].sort()) !== JSON.stringify(topLevel.sort())) fail(`${p.filename}: npm pack bundled ${JSON.stringify(p.bundled)}, expected ${JSON.stringify(topLevel)}`);
  const theirs = p.files.length - ours.length;
  const bundledNote = main ? ` (${ours.length} of ours; ${theirs} in ${inBundle.length} bundled packages: ${bundledNames.join(", ")} and their dependencies)` : "";
  log(`${p.filename}: ${kib(statSync(p.path).size)} packed, ${kib(p.unpackedSize)} unpacked, ${p.entryCount} files${bundledNote}`);
}

// 4. A user's empty folder, no Rust toolchain on PATH.
const app = join(stage, "app");
mkdirSync(app);
writeFileSync(join(app, "package.json"), JSON.stringify({ name: "tb-proof-app", private: true, type: "module" }, null, 2) + "\n");
const noRust = process.env.PATH.split(delimiter).filter((dir) => !["cargo", "rustc"].some((tool) => existsSync(join(dir, tool)))).join(delimiter);
const env = { ...process.env, PATH: noRust, CARGO: "", RUSTC: "", npm_config_update_notifier: "false" };
delete env.CARGO_HOME;
delete env.RUSTUP_HOME;
if (spawnSync("sh", ["-c", "command -v cargo || command -v rustc"], { env }).status === 0) fail("cargo or rustc is still on PATH");
const install = spawnSync("npm", ["install", "--no-audit", "--no-fund", "--prefer-offline", ...packed.map((p) => p.path)], { cwd: app, env, encoding: "utf8" });
if (install.status !== 0) fail(`npm install exited ${install.status}\n${install.stdout}\n${install.stderr}`);
const installed = `${install.stdout}${install.stderr}`.trim();
log(`npm install (no cargo/rustc on PATH): ${installed.split("\n").join(" | ")}`);
// Nothing for the user to act on: no warning (EBADENGINE, install scripts not
// covered by allowScripts, deprecations) and no error, about any package.
const warnings = installed.split("\n").filter((l) => /^npm (warn|error|ERR!)/i.test(l.trim()));
if (warnings.length > 0) fail(`npm install printed what a user would have to act on:\n${warnings.join("\n")}`);

// No install script anywhere in the installed tree but inside the bundled
// dependencies (npm neither runs nor asks about those), whichever npm installs.
const scripted = [];
const walk = (modules) => {
  if (!existsSync(modules)) return;
  for (const name of readdirSync(modules)) {
    if (name.startsWith(".")) continue;
    const dir = join(modules, name);
    if (name.startsWith("@")) {
      walk(dir);
      continue;
    }
    const manifest = join(dir, "package.json");
    if (existsSync(manifest)) {
      const { scripts = {} } = JSON.parse(readFileSync(manifest, "utf8"));
      const hooks = ["preinstall", "install", "postinstall"].filter((h) => scripts[h] !== undefined);
      if (existsSync(join(dir, "binding.gyp")) && !hooks.includes("install")) hooks.push("install (node-gyp, binding.gyp)");
      if (hooks.length > 0) scripted.push({ path: relative(app, dir), hooks });
    }
    walk(join(dir, "node_modules"));
  }
};
walk(join(app, "node_modules"));
const bundledRoot = join("node_modules", pkg.name, "node_modules") + sep;
const unbundled = scripted.filter((s) => !s.path.startsWith(bundledRoot));
if (unbundled.length > 0) fail(`installed packages with install scripts:\n  ${unbundled.map((s) => `${s.path}: ${s.hooks.join(", ")}`).join("\n  ")}`);
// npm's own view (npm 11.16+): what it would ask the user to approve.
const review = spawnSync("npm", ["install-scripts", "ls"], { cwd: app, env, encoding: "utf8" });
if (review.status === 0 && !/No packages with unreviewed install scripts/.test(review.stdout)) fail(`npm install-scripts ls:\n${review.stdout}${review.stderr}`);
log(`npm install-scripts ls: ${review.status === 0 ? review.stdout.trim() : `not run (npm ${run("npm", ["--version"], { env }).trim()} lacks it)`}`);
for (const tool of ["tsx", "esbuild"]) if (existsSync(join(app, "node_modules", tool))) fail(`${tool} was installed: the runtime must not depend on it`);
log(`installed tree: no install scripts outside tensorbridge's bundled dependencies (inside: ${scripted.map((s) => `${s.path.slice(bundledRoot.length)} ${s.hooks.join(", ")}`).join("; ") || "none"}); no tsx, no esbuild`);

writeFileSync(
  join(app, "roundtrip.ts"),
  `import { DLPackCapsule, Tensor } from "tensorbridge";
import { debug } from "tensorbridge/debug";

const t: Tensor = Tensor.from(new Float32Array([1, 2, 3, 4, 5, 6]), { shape: [2, 3] });
const capsule: DLPackCapsule = t.toDlpack();
const back = Tensor.fromDlpack(capsule);
let hooks = "present";
try {
  debug.foreignTensor({ shape: [1], versioned: true });
} catch (e) {
  hooks = (e as { code?: string }).code ?? String(e);
}
console.log(JSON.stringify({
  shape: back.shape,
  dtype: back.dtype,
  values: [...(back.data() as Float32Array)],
  zeroCopy: back.dataPtr === t.dataPtr,
  hooks,
}));
`,
);
// The user's own TypeScript runner (tensorbridge ships none; its runtime
// transpiles only models): this repository's tsx.
const tsx = import.meta.resolve("tsx");
const rt = JSON.parse(run(process.execPath, ["--import", tsx, "roundtrip.ts"], { cwd: app, env }).trim().split("\n").at(-1));
const expected = { shape: [2, 3], dtype: "FP32", values: [1, 2, 3, 4, 5, 6], zeroCopy: true, hooks: "ERR_TEST_HOOKS_UNAVAILABLE" };
if (JSON.stringify(rt) !== JSON.stringify(expected)) fail(`roundtrip.ts printed ${JSON.stringify(rt)}, expected ${JSON.stringify(expected)}`);
log(`roundtrip.ts (this repository's tsx, installed package): ${JSON.stringify(rt)}`);

/** Runs `npx tensorbridge serve <args>` in the app folder until `check(url, said)` is done. */
async function withServer(args, check) {
  const server = spawn("npx", ["--no-install", "tensorbridge", "serve", ...args, "--http-port", "0", "--grpc-port", "0"], { cwd: app, env, stdio: ["ignore", "pipe", "pipe"], detached: true });
  let said = "";
  server.stdout.on("data", (d) => (said += d));
  server.stderr.on("data", (d) => (said += d));
  const stop = () => {
    try {
      process.kill(-server.pid, "SIGTERM");
    } catch {
      // already gone
    }
  };
  running.add(stop);
  try {
    let url;
    for (const deadline = Date.now() + 60_000; url === undefined; await new Promise((r) => setTimeout(r, 100))) {
      url = /Started HTTPService at (\S+:\d+)/.exec(said)?.[1];
      if (server.exitCode !== null || Date.now() > deadline) fail(`npx tensorbridge serve ${args.join(" ")} did not start:\n${said}`);
    }
    await check(url, () => said);
  } finally {
    running.delete(stop);
    stop();
  }
}

/** POSTs a JSON inference; returns the status, the body and the outputs' data by name. */
async function infer(url, model, inputs) {
  const res = await fetch(`http://${url}/v2/models/${model}/infer`, { method: "POST", body: JSON.stringify({ inputs }) });
  const body = await res.json();
  return { status: res.status, body, outputs: Object.fromEntries((body.outputs ?? []).map((o) => [o.name, o.data])) };
}

await withServer([], async (url, said) => {
  const r = await infer(url, "add_sub", [
    { name: "INPUT0", shape: [4], datatype: "FP32", data: [1, 2, 3, 4] },
    { name: "INPUT1", shape: [4], datatype: "FP32", data: [4, 3, 2, 1] },
  ]);
  if (r.status !== 200 || JSON.stringify(r.outputs) !== JSON.stringify({ OUTPUT0: [5, 5, 5, 5], OUTPUT1: [-3, -1, 1, 3] })) {
    fail(`add_sub answered ${r.status} ${JSON.stringify(r.body)}\n${said()}`);
  }
  log(`npx tensorbridge serve (bundled examples/models): POST /v2/models/add_sub/infer -> ${r.status} ${JSON.stringify(r.outputs)}`);
});

// A user's TypeScript model, in the serving thread and in an instance thread,
// with nothing but the installed package: `./util.js` is util.ts, an enum, a
// type-only import without `type`, and a stack trace whose column (after a
// type the transpiler removed) is the source's, through the hook's source map.
const UTIL_TS = `export enum Mode { Off, On = 7 }
export function where(): string {
  const n: number = 1; return new Error("probe" + n).stack!.split("\\n")[1]!;
}
`;
const MODEL_TS = `import { InferenceResponse, Tensor, type InferenceRequest } from "tensorbridge";
import { TritonModel } from "tensorbridge";
import { Mode, where } from "./util.js";
export default class User implements TritonModel {
  execute(requests: InferenceRequest[]) {
    const at = /util\\.ts:(\\d+):(\\d+)\\)?$/.exec(where());
    return requests.map(() => new InferenceResponse({ outputTensors: { Y: Tensor.from(new Float32Array([Mode.On, Number(at?.[1] ?? -1), Number(at?.[2] ?? -1)])) } }));
  }
}
`;
const IO = `input { name: "X" data_type: TYPE_FP32 dims: [ -1 ] }\noutput { name: "Y" data_type: TYPE_FP32 dims: [ -1 ] }\n`;
const userModels = { ts_user: IO, ts_user_threads: `${IO}parameters: { key: "TENSORBRIDGE_INSTANCE_THREADS" value: { string_value: "yes" } }\n` };
for (const [name, config] of Object.entries(userModels)) {
  mkdirSync(join(app, "models", name, "1"), { recursive: true });
  writeFileSync(join(app, "models", name, "config.pbtxt"), config);
  writeFileSync(join(app, "models", name, "1", "model.ts"), MODEL_TS);
  writeFileSync(join(app, "models", name, "1", "util.ts"), UTIL_TS);
}
const column = UTIL_TS.split("\n")[2].indexOf("new Error") + 1;
await withServer(["models"], async (url, said) => {
  for (const name of Object.keys(userModels)) {
    const r = await infer(url, name, [{ name: "X", shape: [1], datatype: "FP32", data: [0] }]);
    if (r.status !== 200 || JSON.stringify(r.outputs) !== JSON.stringify({ Y: [7, 3, column] })) {
      fail(`${name} answered ${r.status} ${JSON.stringify(r.body)}, expected Y [7, 3, ${column}]\n${said()}`);
    }
    log(`npx tensorbridge serve models: a user's TypeScript model (${name}): Y ${JSON.stringify(r.outputs.Y)} (enum, ./util.js -> util.ts, stack at util.ts line 3 column ${column})`);
  }
});

if (!keep) rmSync(stage, { recursive: true, force: true });
else log(`left ${stage}`);
log("ok");

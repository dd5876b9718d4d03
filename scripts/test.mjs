#!/usr/bin/env node
// `npm test`: every check the project has, in one command, cheapest first so a
// mistake shows up fast. Stops at the first failing step and exits non-zero.
//
//   node scripts/test.mjs            all steps
//   node scripts/test.mjs --only ava only the named step(s) (repeatable)
import { spawnSync } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const bin = (name) => join(root, "node_modules", ".bin", name);

function has(cmd) {
  return spawnSync("sh", ["-c", `command -v ${cmd}`], { stdio: "ignore" }).status === 0;
}

// cargo-fuzz and a nightly toolchain, for the short fuzz pass (.ci/run installs both).
const fuzzMissing = !has("cargo-fuzz")
  ? "cargo-fuzz is not installed (cargo install cargo-fuzz --locked; .ci/run does)"
  : spawnSync("rustup", ["run", "nightly", "rustc", "-V"], { stdio: "ignore" }).status !== 0
    ? "no nightly Rust toolchain (rustup toolchain install nightly --profile minimal; .ci/run does)"
    : undefined;

// The Python venv of the interop tests (scripts/setup-python.sh makes it).
const venv = process.env.TENSORBRIDGE_PYTHON ?? join(root, ".venv");
const hasVenv = existsSync(join(venv, "bin", "python")) || existsSync(join(venv, "python"));

/** @type {Array<{ name: string, cmd: string[], skip?: string, env?: Record<string, string> }>} */
const steps = [
  { name: "cargo-fmt", cmd: ["cargo", "fmt", "--all", "--check"] },
  {
    name: "clippy",
    cmd: ["cargo", "clippy", "--workspace", "--all-targets", "--all-features", "--", "-D", "warnings"],
  },
  {
    name: "cargo-test",
    cmd: ["cargo", "test", "--workspace", "--all-features", "--exclude", "tensorbridge-interop"],
  },
  {
    // Broken intra-doc links are what Rust users of the core crate would meet on docs.rs.
    name: "rustdoc",
    cmd: ["cargo", "doc", "-p", "tensorbridge-core", "-p", "tensorbridge-node", "--all-features", "--no-deps"],
    env: { RUSTDOCFLAGS: "-D warnings" },
  },
  {
    // tensorbridge-core as crates.io gets it: the packaged crate builds on its own.
    name: "cargo-package",
    cmd: ["cargo", "package", "-p", "tensorbridge-core", "--allow-dirty"],
  },
  {
    // docs.rs's build (Cargo.toml's [package.metadata.docs.rs]: `--cfg docsrs`, nightly),
    // which labels the `dlpark` items with their feature.
    name: "docs-rs",
    cmd: ["cargo", "+nightly", "doc", "-p", "tensorbridge-core", "--features", "cuda,dlpark", "--no-deps", "--target-dir", "target/docsrs"],
    env: { RUSTDOCFLAGS: "--cfg docsrs -D warnings" },
    skip: spawnSync("rustup", ["run", "nightly", "rustc", "-V"], { stdio: "ignore" }).status !== 0
      ? "no nightly Rust toolchain (docs.rs builds with nightly; .ci/run installs one)"
      : undefined,
  },
  {
    name: "interop",
    cmd: ["cargo", "test", "-p", "tensorbridge-interop"],
    skip: hasVenv
      ? undefined
      : `no Python venv at ${venv}: run scripts/setup-python.sh (NumPy, PyTorch, JAX; ~2.6 GB) to test interop`,
  },
  {
    name: "valgrind",
    cmd: ["bash", "scripts/valgrind-core.sh"],
    skip: has("valgrind") ? undefined : "valgrind is not installed (apt-get install valgrind)",
  },
  {
    // libFuzzer + ASan over the DLPack import and the ownership state machine, 30 s a target.
    name: "fuzz",
    cmd: ["bash", "scripts/fuzz-core.sh"],
    skip: fuzzMissing,
  },
  { name: "addon", cmd: [process.execPath, "scripts/ensure-addon.mjs"] },
  {
    // napi build regenerates index.js/index.d.ts; in CI they must match what
    // is committed, so that the published loader and types are the real ones.
    name: "generated",
    cmd: ["git", "diff", "--exit-code", "--", "index.js", "index.d.ts"],
    skip: process.env.CI ? undefined : "only in CI (set CI=1): compares the generated binding with the committed one",
  },
  { name: "typecheck", cmd: [bin("tsc"), "-p", "tsconfig.json", "--noEmit"] },
  { name: "lint", cmd: [bin("oxlint"), "--deny-warnings", "src", "__test__", "examples", "bench", "scripts"] },
  {
    // The API reference (TypeDoc): every export documented, no broken link; warnings fail.
    name: "docs",
    cmd: [process.execPath, "--import", "tsx", "scripts/docs.ts", "--check"],
  },
  { name: "ava", cmd: [bin("ava")] },
  {
    // The release addon and both npm packages, installed with no Rust on PATH and run
    // (scripts/pack-proof.mjs): a DLPack round trip and `npx tensorbridge serve`.
    name: "pack-proof",
    cmd: [process.execPath, "scripts/pack-proof.mjs"],
  },
];

const only = [];
for (let i = 2; i < process.argv.length; i++) {
  if (process.argv[i] === "--only") only.push(process.argv[++i]);
}

const started = Date.now();
let passed = 0;
let skipped = 0;
for (const step of steps) {
  if (only.length > 0 && !only.includes(step.name)) continue;
  if (step.skip) {
    console.log(`\n=== ${step.name}: SKIPPED (${step.skip})`);
    skipped++;
    continue;
  }
  console.log(`\n=== ${step.name}: ${step.cmd.map((c) => c.replace(root + "/", "")).join(" ")}`);
  const t0 = Date.now();
  const r = spawnSync(step.cmd[0], step.cmd.slice(1), { cwd: root, stdio: "inherit", env: { ...process.env, ...step.env } });
  const secs = ((Date.now() - t0) / 1000).toFixed(1);
  if (r.status !== 0) {
    console.error(`\n=== ${step.name}: FAILED after ${secs}s (exit ${r.status ?? r.signal})`);
    console.error(`steps: ${passed} passed, 1 failed, ${skipped} skipped`);
    process.exit(r.status || 1);
  }
  passed++;
  console.log(`=== ${step.name}: ok (${secs}s)`);
}
console.log(`\nall checks passed in ${((Date.now() - started) / 1000).toFixed(0)}s`);
console.log(`steps: ${passed} passed, 0 failed, ${skipped} skipped`);

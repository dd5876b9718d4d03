#!/usr/bin/env node
// Builds the native addon from source when no up-to-date binary sits at the
// repository root. Runs from `npm install` (the `prepare` script) and before
// `npm start` / `npm test`, so a fresh clone needs only `npm install`.
//
// The addon it builds is the development build: release profile plus the
// `testing` cargo feature (the test hooks the ava suites use through
// `debug.foreignTensor`). `npm run build` and the release workflow build
// without it, and the generated loader (index.js, index.d.ts) is the same
// either way (crates/node/src/hooks.rs says why).
//
// Published packages never run this: users get a prebuilt binary through the
// per-platform optionalDependencies. npm runs `prepare` before `npm pack` and
// `npm publish` too; there it must not start a cargo build (the release
// workflow packs binaries built elsewhere), so it exits at once.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const force = process.argv.includes("--force");

// `npm pack` / `npm publish` run `prepare`: packaging takes the binaries as they are.
if (process.env.npm_lifecycle_event === "prepare" && ["pack", "publish"].includes(process.env.npm_command ?? "")) {
  console.error(`tensorbridge: npm ${process.env.npm_command}: not building the addon (prepare skips packaging)`);
  process.exit(0);
}

/** Newest modification time under `dir`, recursively (0 if absent). */
function newestMtime(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let newest = st.mtimeMs;
  for (const entry of readdirSync(path)) {
    newest = Math.max(newest, newestMtime(join(path, entry)));
  }
  return newest;
}

function addonMtime() {
  const addons = readdirSync(root).filter((f) => /^tensorbridge\..+\.node$/.test(f));
  if (addons.length === 0 || !existsSync(join(root, "index.js"))) return 0;
  return Math.min(...addons.map((f) => statSync(join(root, f)).mtimeMs));
}

const sources = Math.max(
  newestMtime(join(root, "crates")),
  newestMtime(join(root, "Cargo.toml")),
  newestMtime(join(root, "Cargo.lock")),
);

/** True when the root addon is a development build (a release build's testingHooks() is null). */
function hasTestHooks() {
  const require = createRequire(import.meta.url);
  try {
    return readdirSync(root)
      .filter((f) => /^tensorbridge\..+\.node$/.test(f))
      .every((f) => { const hooks = require(join(root, f)).testingHooks?.(); return hooks !== null && hooks !== undefined; });
  } catch {
    return false;
  }
}

// Up to date: newer than every Rust source, and not a release build that
// `npm run build` left at the root (the ava suites need the test hooks).
if (!force && addonMtime() >= sources && hasTestHooks()) {
  process.exit(0);
}

console.error("tensorbridge: building the native addon from source (cargo, release)…");
const napi = join(root, "node_modules", "@napi-rs", "cli", "dist", "cli.js");
if (!existsSync(napi)) {
  console.error(
    "tensorbridge: @napi-rs/cli is not installed; run `npm install` in the repository first.",
  );
  process.exit(1);
}
const result = spawnSync(
  process.execPath,
  [
    napi,
    "build",
    "--platform",
    "--release",
    "--esm",
    "--features",
    "testing",
    "--manifest-path",
    "crates/node/Cargo.toml",
    "--output-dir",
    ".",
  ],
  { cwd: root, stdio: "inherit" },
);
if (result.status !== 0) {
  console.error(
    "tensorbridge: building the addon failed. It needs a Rust toolchain (https://rustup.rs) " +
      "and a C linker; see the README's developer section.",
  );
  process.exit(result.status ?? 1);
}

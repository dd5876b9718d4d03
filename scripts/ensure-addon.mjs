#!/usr/bin/env node
// Builds the native addon from source when no up-to-date binary sits at the
// repository root. Runs from `npm install` (the `prepare` script) and before
// `npm start` / `npm test`, so a fresh clone needs only `npm install`.
//
// Published packages never run this: users get a prebuilt binary through the
// per-platform optionalDependencies, and npm 11 does not run install scripts
// without approval anyway.
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const force = process.argv.includes("--force");

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

if (!force && addonMtime() >= sources) {
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

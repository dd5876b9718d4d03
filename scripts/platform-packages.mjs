#!/usr/bin/env node
// The per-platform npm packages (npm/<platform>/, one per napi target in
// package.json) and the main package's optionalDependencies on them.
//
// The optionalDependencies are written at publish time, not kept in the
// repository's package.json: until a version is published, `npm install` in
// the repository would ask the registry for packages that don't exist yet.
// The release workflow's publish job runs:
//
//   node scripts/platform-packages.mjs check      every npm/<platform> holds its .node file
//   node scripts/platform-packages.mjs manifest   package.json as published: the
//                                                  optionalDependencies, no `prepare`
//
// `prepare` (scripts/ensure-addon.mjs, which the package does not ship) builds
// the addon in a clone; npm 11 lists it among the install scripts to approve
// when a package is installed from a tarball, so the published manifest drops it.
// scripts/pack-proof.mjs stages the main package the same way.
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");

/** The platform name napi-rs gives a target triple's package (`x86_64-unknown-linux-musl` -> `linux-x64-musl`). */
export function platformOf(triple) {
  const [arch, , system, abi] = triple.split("-");
  const cpu = { x86_64: "x64", aarch64: "arm64" }[arch];
  if (triple.includes("apple-darwin")) return `darwin-${cpu}`;
  if (system === "windows") return `win32-${cpu}-${abi}`;
  if (system === "linux") return `linux-${cpu}-${abi}`;
  throw new Error(`no platform name for target ${triple}`);
}

/** The main package.json. */
export function mainPackage(dir = root) {
  return JSON.parse(readFileSync(join(dir, "package.json"), "utf8"));
}

/** One entry per napi target: its npm/ folder, package name and binary file name. */
export function platformPackages(dir = root) {
  const pkg = mainPackage(dir);
  return pkg.napi.targets.map((triple) => {
    const platform = platformOf(triple);
    const folder = join(dir, "npm", platform);
    const manifest = JSON.parse(readFileSync(join(folder, "package.json"), "utf8"));
    return { triple, platform, folder, name: manifest.name, version: manifest.version, binary: `${pkg.napi.binaryName}.${platform}.node`, manifest };
  });
}

/** The main package's optionalDependencies: every platform package, at the main package's version. */
export function optionalDependencies(dir = root) {
  const { version } = mainPackage(dir);
  return Object.fromEntries(platformPackages(dir).map((p) => [p.name, version]));
}

/** package.json as the publish job writes it before `npm publish`. */
export function releaseManifest(dir = root) {
  const pkg = mainPackage(dir);
  const { prepare: _prepare, ...scripts } = pkg.scripts ?? {};
  return { ...pkg, scripts, optionalDependencies: optionalDependencies(dir) };
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const command = process.argv[2];
  if (command === "check") {
    const missing = platformPackages().filter((p) => !existsSync(join(p.folder, p.binary)));
    const stray = readdirSync(join(root, "npm")).filter((d) => !platformPackages().some((p) => p.platform === d));
    for (const p of missing) console.error(`missing ${join("npm", p.platform, p.binary)} (the ${p.triple} build's artifact)`);
    for (const d of stray) console.error(`npm/${d} is no napi target in package.json`);
    if (missing.length > 0 || stray.length > 0) process.exit(1);
    console.log(`all ${platformPackages().length} platform packages hold their binary`);
  } else if (command === "manifest") {
    const pkg = releaseManifest();
    writeFileSync(join(root, "package.json"), JSON.stringify(pkg, null, 2) + "\n");
    console.log(`package.json: no prepare script; optionalDependencies ${Object.keys(pkg.optionalDependencies).join(", ")}`);
  } else {
    console.error("usage: node scripts/platform-packages.mjs check | manifest");
    process.exit(2);
  }
}

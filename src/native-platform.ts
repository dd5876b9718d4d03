/**
 * Which prebuilt binary this platform needs, and the error when there is
 * none. Importing this module checks that a binary exists to load, and throws
 * `ERR_NATIVE_UNAVAILABLE` otherwise: `native.ts` imports it before the
 * generated loader, whose own error ("Cannot find native binding") names
 * neither the platform nor how to build from source.
 * @internal
 * @module
 */

import { existsSync, readFileSync, readdirSync } from "node:fs";
import { createRequire } from "node:module";

import { ErrorCode, TensorBridgeError } from "./errors.js";

/** The platforms a published package has a prebuilt binary for (package.json's napi targets). */
export const PREBUILT_PLATFORMS: readonly string[] = [
  "linux-x64-gnu",
  "linux-x64-musl",
  "linux-arm64-gnu",
  "linux-arm64-musl",
  "darwin-x64",
  "darwin-arm64",
  "win32-x64-msvc",
  "win32-arm64-msvc",
];

/** This process's platform as the per-platform packages name it (`linux-x64-gnu`, `darwin-arm64`). */
export function platformName(): string {
  const base = `${process.platform}-${process.arch}`;
  if (process.platform === "win32") return `${base}-msvc`;
  if (process.platform !== "linux") return base;
  // glibc reports its version in the process report; musl (Alpine) does not.
  const report = process.report?.getReport() as { header?: { glibcVersionRuntime?: string } } | undefined;
  return `${base}-${report?.header?.glibcVersionRuntime === undefined ? "musl" : "gnu"}`;
}

/**
 * The error when no binary loads: which platform this is, which package
 * would have had the binary, and how to build one from source.
 */
export function bindingUnavailable(cause?: unknown): TensorBridgeError {
  const platform = platformName();
  let version = "";
  try {
    version = (JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8")) as { version?: string }).version ?? "";
  } catch {
    // A missing package.json only drops the version from the message.
  }
  const prebuilt = PREBUILT_PLATFORMS.includes(platform);
  const why = prebuilt
    ? `its prebuilt binary comes in the optional dependency tensorbridge-${platform}${version ? `@${version}` : ""}, which is not installed or did not load ` +
      "(reinstall without --no-optional / --omit=optional, and check that the package manager installed optional dependencies)"
    : `no prebuilt binary exists for ${platform} (prebuilt: ${PREBUILT_PLATFORMS.join(", ")})`;
  return new TensorBridgeError(
    ErrorCode.NATIVE_UNAVAILABLE,
    `tensorbridge's native addon could not be loaded on ${platform} (Node ${process.version}): ${why}. ` +
      "To build it from source: install Rust (https://rustup.rs) and a C linker, clone the repository, " +
      "run `npm install` there (it builds the addon with cargo), then `npm run build` and `npm pack`, and install that tarball; " +
      "or set NAPI_RS_NATIVE_LIBRARY_PATH to a tensorbridge .node file you built.",
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Whether the generated loader has anything to try: its environment
 * override, an addon beside it (a build from source, for any platform: the
 * loader then reports what it could not load), or this platform's package.
 */
function binaryPresent(): boolean {
  if (process.env.NAPI_RS_NATIVE_LIBRARY_PATH) return true;
  const root = new URL("../", import.meta.url);
  try {
    if (readdirSync(root).some((f) => /^tensorbridge\..+\.node$/.test(f))) return true;
  } catch {
    // An unreadable package root: fall through to the platform package.
  }
  try {
    const resolved = createRequire(import.meta.url).resolve(`tensorbridge-${platformName()}`);
    return existsSync(resolved);
  } catch {
    return false;
  }
}

if (!binaryPresent()) throw bindingUnavailable();


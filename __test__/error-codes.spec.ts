// Every error code is asserted by some ava test, or listed below with the
// reason it can't be provoked from here. A static check over the test
// sources (a code counts as tested where a test names it as
// `ErrorCode.NAME` or as the string "ERR_NAME"), so a new code without a
// test fails here until one is written or the list says why not.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { ErrorCode, Tensor } from "../src/index.js";
import { debug } from "../src/debug.js";
import * as binding from "../index.js";
import { throwsCode } from "./helpers.js";

/** Codes no ava test here can provoke, and why. */
const UNTESTABLE: Readonly<Record<string, string>> = {
  ERR_CUDA:
    "a CUDA driver call that fails after the driver loaded; needs a GPU in a bad state (core's CUDA tests and scripts/gpu-check.sh exercise the paths)",
  ERR_EXTERNAL_BUFFERS_UNSUPPORTED:
    "needs a runtime that forbids external ArrayBuffers (Electron with the V8 sandbox); Node.js allows them",
  ERR_NAPI: "a napi call failing inside the binding (an engine out of memory); no test can force it",
};

const here = dirname(fileURLToPath(import.meta.url));

/** The ava sources, this file included (UNTESTABLE's unquoted keys don't count as tests). */
function testSources(): string {
  return readdirSync(here)
    .filter((f) => f.endsWith(".ts"))
    .map((f) => readFileSync(join(here, f), "utf8"))
    .join("\n");
}

function isTested(sources: string, code: string): boolean {
  const name = code.replace(/^ERR_/, "");
  return new RegExp(`ErrorCode\\.${name}\\b|["'\`]${code}["'\`]`).test(sources);
}

test("every error code is asserted by an ava test or listed as untestable with a reason", (t) => {
  const sources = testSources();
  const codes = new Set<string>([...Object.values(ErrorCode), ...debug.nativeErrorCodes()]);
  const missing = [...codes].filter((code) => !(code in UNTESTABLE) && !isTested(sources, code));
  t.deepEqual(missing, [], "write a test that provokes each of these, or list it in UNTESTABLE with the reason");
  const stale = Object.keys(UNTESTABLE).filter((code) => !codes.has(code) || isTested(sources, code));
  t.deepEqual(stale, [], "these are tested (or gone) now: remove them from UNTESTABLE");
});

test("every code the native side raises is an ErrorCode, and the binding's own codes reach errorCodes()", (t) => {
  const known = new Set<string>(Object.values(ErrorCode));
  const native = debug.nativeErrorCodes();
  t.deepEqual(native.filter((code) => !known.has(code)), [], "add these to ErrorCode in src/errors.ts");
  // The binding's own list (crates/node/src/error.rs), every one of them reported beside core's.
  const listed = [...readFileSync(join(here, "..", "crates", "node", "src", "error.rs"), "utf8").matchAll(/Code\("(ERR_[A-Z_]+)"\)/g)].map((m) => m[1]!);
  t.true(listed.length >= 5, `the binding's codes were found: ${listed.join(", ")}`);
  t.deepEqual(listed.filter((code) => !native.includes(code)), [], "ALL in error.rs must list every constant");
});

test("the binding raises errors only with codes from its one list (crates/node/src/error.rs)", (t) => {
  const dir = join(here, "..", "crates", "node", "src");
  const offenders: string[] = [];
  for (const file of readdirSync(dir).filter((f) => f.endsWith(".rs") && f !== "error.rs")) {
    readFileSync(join(dir, file), "utf8")
      .split("\n")
      .forEach((line, i) => {
        const code = line.replace(/\/\/.*$/, "");
        // A code spelled out, a Code made by hand, or a napi error whose `code` would be a
        // napi status name ("GenericFailure") instead of an ERR_* code.
        if (/"ERR_|\bCode\(|Status::GenericFailure|Error::from_reason|Error::new\(/.test(code)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
      });
  }
  t.deepEqual(offenders, [], "use the constants and js_error/to_js/from_napi of crates/node/src/error.rs");
});

test("a hand-written native call's bad argument has its code (fastCalls)", (t) => {
  const fast = binding.fastCalls();
  // The raw binding throws plain Errors; `code` is what src/errors.ts's rethrowNative keeps.
  const codeOf = (f: () => unknown): unknown => (t.throws(f) as (Error & { code?: string }) | undefined)?.code;
  t.is(codeOf(() => fast.tensorFree("1" as unknown as number)), ErrorCode.INVALID_ARGUMENT);
  t.is(codeOf(() => fast.prepareExportPlain(1, "yes" as unknown as boolean)), ErrorCode.INVALID_ARGUMENT);
});

test("ERR_ALLOCATION when the allocator refuses", (t) => {
  // 1 PiB: beyond x86-64's and arm64's 128–256 TiB user address space, so it
  // fails whatever the overcommit setting.
  throwsCode(t, () => Tensor.zeros([2 ** 50], "UINT8"), ErrorCode.ALLOCATION);
  throwsCode(t, () => Tensor.empty([2 ** 50], "UINT8"), ErrorCode.ALLOCATION);
});

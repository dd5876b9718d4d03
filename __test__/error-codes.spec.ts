// Every error code is asserted by some ava test, or listed below with the
// reason it can't be provoked from here. A static check over the test
// sources (a code counts as tested where a test names it as
// `ErrorCode.NAME` or as the string "ERR_NAME"), so a new code without a
// test fails here until one is written or the list says why not.
import { readFileSync, readdirSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import test from "ava";
import { ErrorCode, Tensor, debug } from "../src/index.js";
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

test("ERR_ALLOCATION when the allocator refuses", (t) => {
  // 1 PiB: beyond x86-64's and arm64's 128–256 TiB user address space, so it
  // fails whatever the overcommit setting.
  throwsCode(t, () => Tensor.zeros([2 ** 50], "UINT8"), ErrorCode.ALLOCATION);
  throwsCode(t, () => Tensor.empty([2 ** 50], "UINT8"), ErrorCode.ALLOCATION);
});

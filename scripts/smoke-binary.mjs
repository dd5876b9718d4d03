#!/usr/bin/env node
// Smoke test of one prebuilt addon, through the generated loader only (no
// npm install, no TypeScript): the release workflow runs it on a machine that
// can execute the binary (the runner itself, or a node:*-slim / node:*-alpine
// container for Linux), with the .node file beside index.js or in its npm/
// platform package.
//
// A DLPack round trip (bytes -> tensor -> versioned managed struct in a
// capsule -> tensor again, same memory), the error codes, and that the binary is a release
// build: testingHooks() is null, so no test code ships.
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = join(dirname(fileURLToPath(import.meta.url)), "..");
const binding = await import(pathToFileURL(join(root, "index.js")).href);
const allowHooks = process.argv.includes("--allow-test-hooks");

const bytes = new Uint8Array(new Float32Array([1, 2, 3, 4, 5, 6]).buffer);
const id = binding.tensorFromBytes(bytes, [2, 3], "FP32", false);
const capsule = binding.tensorExport(id, true);
assert.notEqual(binding.capsuleAddress(capsule), 0n);
const again = binding.tensorFromCapsule(capsule);
assert.deepEqual(binding.tensorShape(again), [2, 3]);
assert.equal(binding.tensorDtype(again), "FP32");
assert.equal(binding.tensorDataAddress(again), binding.tensorDataAddress(id), "the round trip copied");
assert.deepEqual([...new Float32Array(binding.tensorView(again))], [1, 2, 3, 4, 5, 6]);
assert.throws(() => binding.tensorShape(0.5), { code: "ERR_INVALID_ARGUMENT" });
assert.throws(() => binding.tensorFromCapsule(capsule), { code: "ERR_DLPACK_CONSUMED" });
if (!allowHooks) assert.equal(binding.testingHooks(), null, "a release build carries no test hooks");
for (const handle of [id, again]) binding.fastCalls().tensorFree(handle);
binding.capsuleFree(capsule);

const target = binding.__napiBindingTarget;
console.log(
  `smoke ok: ${process.platform}-${process.arch} node ${process.version}, binding ${target}, ` +
    `${binding.errorCodes().length} error codes, CUDA ${binding.cudaIsAvailable() ? "available" : "unavailable"}`,
);

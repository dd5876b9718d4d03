// The binding's hand-written napi callbacks (crates/node/src/fast.rs) read
// their own arguments, so they get their own checks: wrong types and stale
// handles must throw coded errors, never crash or free the wrong thing.
import test from "ava";
import * as binding from "../index.js";
import { ErrorCode } from "../src/index.js";

const fast = binding.fastCalls();

/** Runs `fn` and returns the thrown error's `code`. */
function codeOf(fn: () => unknown): unknown {
  try {
    fn();
  } catch (e) {
    return (e as { code?: unknown }).code;
  }
  return "no error";
}

test("prepareExportPlain checks its arguments and its handle", (t) => {
  const id = binding.tensorZeros([4], "FP32", undefined);
  t.is(codeOf(() => fast.prepareExportPlain("1" as never, false)), ErrorCode.INVALID_ARGUMENT);
  t.is(codeOf(() => fast.prepareExportPlain(id, 1 as never)), ErrorCode.INVALID_ARGUMENT);
  t.is(codeOf(() => (fast.prepareExportPlain as (id?: number) => number)(id)), ErrorCode.INVALID_ARGUMENT);
  t.is(codeOf(() => fast.prepareExportPlain(0.5, true)), ErrorCode.INVALID_ARGUMENT);
  t.is(fast.prepareExportPlain(id, true), id, "an export that is the tensor itself shares its handle");
  // A deep copy carries IS_COPIED, which an export without a copy does not:
  // that export is another tensor over the same memory, with its own handle.
  const copy = binding.tensorDeepCopy(id);
  const prepared = fast.prepareExportPlain(copy, true);
  t.not(prepared, copy);
  t.is(binding.tensorDataAddress(prepared), binding.tensorDataAddress(copy), "the prepared handle views the same memory");
  fast.tensorFree(id);
  t.is(codeOf(() => fast.prepareExportPlain(id, true)), ErrorCode.DISPOSED);
  fast.tensorFree(prepared);
  fast.tensorFree(copy);
});

test("prepareExportPlain runs core's export checks", (t) => {
  const ro = binding.tensorFromBytes(new Uint8Array(8), [2], "FP32", true);
  t.is(codeOf(() => fast.prepareExportPlain(ro, false)), ErrorCode.COPY_REQUIRED, "read-only as a legacy struct");
  t.is(typeof fast.prepareExportPlain(ro, true), "number");
  fast.tensorFree(ro);
});

test("tensorFree is idempotent and ignores what is not a handle", (t) => {
  const id = binding.tensorZeros([1], "INT8", undefined);
  fast.tensorFree(id);
  fast.tensorFree(id);
  t.false(binding.tensorLive(id));
  t.is(codeOf(() => fast.tensorFree(-1)), "no error");
  t.is(codeOf(() => fast.tensorFree("x" as never)), ErrorCode.INVALID_ARGUMENT);
  t.is(codeOf(() => (fast.tensorFree as () => void)()), ErrorCode.INVALID_ARGUMENT);
});

test("a prepared export becomes a struct once, and only a prepared export does", (t) => {
  const id = binding.tensorZeros([2], "FP32", undefined);
  t.is(codeOf(() => binding.capsuleFromPrepared(id)), ErrorCode.INVALID_ARGUMENT, "a plain tensor handle");
  const copy = binding.tensorDeepCopy(id);
  const prepared = fast.prepareExportPlain(copy, true);
  const capsule = binding.capsuleFromPrepared(prepared);
  t.false(binding.tensorLive(prepared), "the prepared handle is gone");
  t.is(codeOf(() => binding.capsuleFromPrepared(prepared)), ErrorCode.DISPOSED);
  t.is(binding.capsuleAddress(capsule) !== 0n, true);
  binding.capsuleFree(capsule);
  fast.tensorFree(copy);
  fast.tensorFree(id);
});

// Foreign DLPack tensors, made outside tensorbridge by the test producer
// (debug.foreignTensor, core's `testing` module) and consumed through the
// public path: DLPackCapsule.fromAddress, then Tensor.fromDlpack. Covers the
// import errors no tensorbridge export can produce (non-C order, another
// major version) and who calls the deleter after each outcome, as
// crates/core/src/import.rs documents it. Serial: the assertions are exact
// deltas of process-wide counters.
import test from "ava";
import { DLPackCapsule, ErrorCode, Tensor } from "../src/index.js";
import { debug } from "../src/debug.js";
import { throwsCode } from "./helpers.js";

const gc = globalThis.gc;

/** Collects until finalizers stop changing the counters; returns the foreign counts. */
async function settle(): Promise<{ created: number; deleted: number }> {
  let last = JSON.stringify([debug.foreignStats(), debug.stats(), debug.liveHandles()]);
  for (let quiet = 0, i = 0; quiet < 3 && i < 200; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
    const now = JSON.stringify([debug.foreignStats(), debug.stats(), debug.liveHandles()]);
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return debug.foreignStats();
}

/** Foreign deleter calls since `before`. */
function deletedSince(before: { deleted: number }): number {
  return debug.foreignStats().deleted - before.deleted;
}

test.before((t) => {
  if (!gc) t.fail("these tests need --expose-gc (set in package.json's ava.nodeArguments)");
});

// A strided view (every other row, as NumPy's x[::2] of a 4×3 array) and a
// transposed one (x.T of a 3×2 array): both must be refused, never read.
const NOT_C_ORDER = [
  { name: "strided x[::2]", shape: [2, 3], strides: [6, 1] },
  { name: "transposed x.T", shape: [2, 3], strides: [1, 2] },
  { name: "strided inner axis x[:, ::2]", shape: [2, 2], strides: [4, 2] },
] as const;

test.serial("non-C-order foreign tensors: ERR_DLPACK_NOT_CONTIGUOUS, and the capsule keeps ownership", async (t) => {
  const before = await settle();
  let made = 0;
  (() => {
    for (const versioned of [false, true]) {
      for (const { name, shape, strides } of NOT_C_ORDER) {
        const foreign = debug.foreignTensor({ shape, strides, dtype: "FP32", versioned });
        made++;
        const capsule = DLPackCapsule.fromAddress(foreign.address, { versioned });
        throwsCode(t, () => Tensor.fromDlpack(capsule), ErrorCode.DLPACK_NOT_CONTIGUOUS);
        t.is(deletedSince(before), 0, `${name}: nothing was deleted (the caller still owns it)`);
        t.false(capsule.consumed, `${name}: the capsule is not consumed`);
        // Still owned and still refused: a second try is the same error, not ERR_DLPACK_CONSUMED.
        throwsCode(t, () => Tensor.fromDlpack(capsule), ErrorCode.DLPACK_NOT_CONTIGUOUS);
        if (versioned) {
          // Ownership can also go back out: release returns the same struct.
          t.is(capsule.release(), foreign.address);
          t.true(capsule.consumed);
          // ... which another capsule takes; GC of that one deletes it.
          DLPackCapsule.fromAddress(foreign.address, { versioned });
        }
      }
    }
  })();
  t.is(deletedSince(before), 0, "refused tensors are deleted only by their owner");
  const after = await settle();
  t.is(after.created - before.created, made);
  t.is(after.deleted - before.deleted, made, "each refused tensor's deleter ran exactly once, when its capsule was collected");
});

test.serial("a versioned tensor of major version 2: ERR_DLPACK_VERSION, and the importer has called the deleter", async (t) => {
  const before = await settle();
  (() => {
    for (const version of [[2, 0], [0, 8], [3, 1]] as const) {
      const start = debug.foreignStats().deleted;
      const foreign = debug.foreignTensor({ shape: [2, 3], versioned: true, version });
      const capsule = DLPackCapsule.fromAddress(foreign.address, { versioned: true });
      throwsCode(t, () => Tensor.fromDlpack(capsule), ErrorCode.DLPACK_VERSION);
      t.is(debug.foreignStats().deleted - start, 1, `${version.join(".")}: deleted at once, as DLPack requires`);
      t.true(capsule.consumed, "the capsule gave its tensor up");
      throwsCode(t, () => Tensor.fromDlpack(capsule), ErrorCode.DLPACK_CONSUMED);
      throwsCode(t, () => capsule.release(), ErrorCode.DLPACK_CONSUMED);
    }
  })();
  const after = await settle();
  t.is(after.created - before.created, 3);
  t.is(after.deleted - before.deleted, 3, "exactly once each: collecting the consumed capsules deleted nothing more");
});

test.serial("a higher minor version is accepted", async (t) => {
  const before = await settle();
  const foreign = debug.foreignTensor({ shape: [3], dtype: "INT32", versioned: true, version: [1, 99] });
  const x = Tensor.fromDlpack(DLPackCapsule.fromAddress(foreign.address, { versioned: true }));
  t.is(x.dataPtr, foreign.data);
  x.dispose();
  t.is(deletedSince(before), 1);
});

test.serial("a well-formed foreign tensor imports zero-copy and its deleter runs once, on dispose", async (t) => {
  const before = await settle();
  const values = new Float32Array([1.5, -2, 3.25, 4, 5, 6]);
  for (const versioned of [false, true]) {
    for (const strides of [undefined, [3, 1]]) {
      const start = debug.foreignStats().deleted;
      const foreign = debug.foreignTensor({
        shape: [2, 3],
        strides,
        dtype: "FP32",
        versioned,
        data: new Uint8Array(values.buffer),
      });
      t.not(foreign.data, 0n);
      const capsule = DLPackCapsule.fromAddress(foreign.address, { versioned });
      t.is(capsule.address, foreign.address);
      const x = Tensor.fromDlpack(capsule);
      t.true(capsule.consumed);
      t.is(x.dataPtr, foreign.data, "zero-copy: the tensor is the producer's memory");
      t.deepEqual(x.shape, [2, 3]);
      t.deepEqual(x.strides, [3, 1]);
      t.is(x.dtype, "FP32");
      t.false(x.readOnly);
      t.is(debug.foreignStats().deleted - start, 0, "alive while the tensor is");
      x.dispose();
      t.is(debug.foreignStats().deleted - start, 1, "deleted on dispose, without waiting for GC");
    }
  }
  const after = await settle();
  t.is(after.created - before.created, 4);
  t.is(after.deleted - before.deleted, 4, "and never again");
});

test.serial("a foreign tensor's bytes are visible through data(), which keeps them alive after dispose", async (t) => {
  const before = await settle();
  (() => {
    const values = new Int16Array([10, -20, 30, -40]);
    const foreign = debug.foreignTensor({ shape: [4], dtype: "INT16", versioned: false, data: new Uint8Array(values.buffer) });
    const x = Tensor.fromDlpack(DLPackCapsule.fromAddress(foreign.address, { versioned: false }));
    const view = x.data() as Int16Array;
    t.deepEqual(Array.from(view), [10, -20, 30, -40]);
    view[1] = 7; // writes reach the producer's memory
    t.is(Tensor.fromDlpack(x.toDlpack()).data()[1], 7);
    x.dispose();
    t.is(deletedSince(before), 0, "the view still holds the memory");
    t.is(view[3], -40);
  })();
  const after = await settle();
  t.is(after.deleted - before.deleted, 1, "deleted once, after the views were collected");
});

test.serial("flags and byte_offset of a foreign tensor are honoured", async (t) => {
  const before = await settle();
  (() => {
    const data = Uint8Array.from({ length: 16 }, (_, i) => i);
    const foreign = debug.foreignTensor({ shape: [8], dtype: "UINT8", versioned: true, flags: 1, byteOffset: 8, data });
    const x = Tensor.fromDlpack(DLPackCapsule.fromAddress(foreign.address, { versioned: true }));
    t.true(x.readOnly, "READ_ONLY carried into the tensor");
    t.is(x.dataPtr, foreign.data + 8n, "byte_offset honoured");
    t.deepEqual(Array.from(x.data() as Uint8Array), [8, 9, 10, 11, 12, 13, 14, 15]);
  })();
  const after = await settle();
  t.is(after.deleted - before.deleted, 1);
});

test.serial("a never-consumed capsule from fromAddress is deleted once after GC", async (t) => {
  const before = await settle();
  const handles = debug.liveHandles().capsules;
  (() => {
    for (const versioned of [false, true]) {
      const foreign = debug.foreignTensor({ shape: [16], dtype: "FP64", versioned });
      DLPackCapsule.fromAddress(foreign.address, { versioned });
    }
  })();
  t.is(debug.liveHandles().capsules, handles + 2);
  t.is(deletedSince(before), 0);
  const after = await settle();
  t.is(after.deleted - before.deleted, 2, "each deleter ran exactly once, from the capsule's finalizer");
  t.is(debug.liveHandles().capsules, handles);
});

test.serial("an imported foreign tensor that is never disposed is deleted once after GC", async (t) => {
  const before = await settle();
  (() => {
    for (let i = 0; i < 100; i++) {
      const versioned = i % 2 === 0;
      const foreign = debug.foreignTensor({ shape: [4, 4], dtype: "BF16", versioned });
      Tensor.fromDlpack(DLPackCapsule.fromAddress(foreign.address, { versioned })).data();
    }
  })();
  const after = await settle();
  t.is(after.created - before.created, 100);
  t.is(after.deleted - before.deleted, 100);
});

test.serial("the producer refuses options it can't build, with codes", (t) => {
  const before = debug.foreignStats();
  throwsCode(t, () => debug.foreignTensor({ shape: [2], dtype: "BYTES" as "FP32", versioned: true }), ErrorCode.DTYPE_UNSUPPORTED);
  throwsCode(t, () => debug.foreignTensor({ shape: [-1], versioned: true }), ErrorCode.SHAPE_NEGATIVE);
  throwsCode(t, () => debug.foreignTensor({ shape: [2], strides: [1, 1], versioned: true }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => debug.foreignTensor({ shape: [2], versioned: true, version: [1] as unknown as [number, number] }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => debug.foreignTensor({ shape: [2] } as unknown as { shape: number[]; versioned: boolean }), ErrorCode.INVALID_ARGUMENT);
  t.deepEqual(debug.foreignStats(), before, "nothing was made");
});

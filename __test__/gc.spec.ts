// Ownership under garbage collection: every deleter runs exactly once and
// memory stays bounded. Serial, in its own process (ava runs each file in
// one), so that counter deltas belong to the test that reads them.
import test from "ava";
import { DLPackCapsule, Tensor } from "../src/index.js";
import { debug } from "../src/debug.js";

const gc = globalThis.gc;

/** Everything GC can still change: counters, handles, registered views. */
const snapshot = (): string => JSON.stringify([debug.stats(), debug.liveHandles(), debug.liveViews()]);

/** Collects until finalizers stop changing the counters. */
async function settle(): Promise<ReturnType<typeof debug.stats>> {
  let last = snapshot();
  for (let quiet = 0, i = 0; quiet < 3 && i < 200; i++) {
    gc!();
    await new Promise((r) => setImmediate(r));
    const now = snapshot();
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return debug.stats();
}

test.before((t) => {
  if (!gc) t.fail("these tests need --expose-gc (set in package.json's ava.nodeArguments)");
});

/**
 * Makes and drops `count` tensors and capsules. A plain function, so nothing
 * lingers in a suspended async frame; returns how many were consumed.
 */
function churn(start: number, count: number): number {
  let consumed = 0;
  for (let i = start; i < start + count; i++) {
    const x = i % 2 === 0 ? Tensor.zeros([256], "FP32") : Tensor.from(new Float32Array(256));
    if (i % 8 === 0) x.data()[0] = i; // an external ArrayBuffer, registered by pointer
    const capsule = x.toDlpack({ maxVersion: i % 3 === 0 ? [1, 0] : undefined });
    // Every path a capsule can take: consumed in-process (no C struct is
    // built), struct built and dropped, struct built and imported, dropped
    // before any struct was built.
    if (i % 4 === 1 || i % 4 === 2) void capsule.address;
    if (i % 4 === 0 || i % 4 === 2) {
      Tensor.fromDlpack(capsule); // consumed, then dropped
      consumed++;
    }
  }
  return consumed;
}

test.serial("10^5 dropped tensors and capsules: every deleter exactly once, RSS bounded", async (t) => {
  const before = await settle();
  const handlesBefore = debug.liveHandles();
  const viewsBefore = debug.liveViews();
  const ROUNDS = 8;
  const PER_ROUND = 20_000;
  const rss: number[] = [];
  let consumed = 0;
  for (let round = 0; round < ROUNDS; round++) {
    for (let i = 0; i < PER_ROUND; i += 5_000) {
      consumed += churn(i, 5_000);
      await new Promise((r) => setImmediate(r));
    }
    await settle();
    rss.push(process.memoryUsage().rss);
  }
  const after = await settle();
  const N = ROUNDS * PER_ROUND;
  t.is(after.exportsCreated - before.exportsCreated, N / 2, "a struct for each capsule whose address was asked");
  t.is(after.exportsDeleted - before.exportsDeleted, N / 2, "each export's deleter ran exactly once");
  t.is(after.ownedAllocations - before.ownedAllocations, N / 2);
  t.is(after.ownedFrees - before.ownedFrees, N / 2, "each native allocation was freed");
  t.is(after.ownedLiveBytes, before.ownedLiveBytes);
  t.deepEqual(debug.liveHandles(), handlesBefore, "every native handle was freed after GC");
  t.is(debug.liveViews(), viewsBefore, "the view registry forgot every collected view");
  t.true(consumed > 0);
  // The exact counters above are the leak check; RSS is the backstop for
  // memory they can't see. Each round pushes 20 MiB of tensor data through.
  // After the first rounds RSS moves in allocator-sized steps (seen here:
  // +0 to +40 MiB over six rounds), while leaking the data would add 120 MiB.
  const pushed = (ROUNDS - 2) * PER_ROUND * 1024;
  const growth = rss[ROUNDS - 1]! - rss[1]!;
  t.true(growth < pushed / 2, `RSS grew by ${(growth / 2 ** 20).toFixed(1)} MiB after warm-up (${rss.map((r) => (r / 2 ** 20).toFixed(0)).join(", ")} MiB)`);
});

test.serial("large native tensors are reported to V8 so GC reclaims them", async (t) => {
  const before = await settle();
  // 64 × 32 MiB = 2 GiB allocated in total; without external memory
  // accounting V8 would see only tiny handles and never collect them.
  for (let i = 0; i < 64; i++) {
    Tensor.zeros([8 * 1024 * 1024], "FP32");
    await new Promise((r) => setImmediate(r));
  }
  const mid = debug.stats();
  t.true(mid.ownedLiveBytes - before.ownedLiveBytes < 1024 * 1024 * 1024, "GC ran before 1 GiB piled up");
  const after = await settle();
  t.is(after.ownedLiveBytes, before.ownedLiveBytes);
});

test.serial("release + fromAddress: one export, one deleter", async (t) => {
  const before = await settle();
  const x = Tensor.from(new Float32Array([1, 2, 3]));
  const address = x.toDlpack({ maxVersion: [1, 0] }).release();
  const y = Tensor.fromDlpack(DLPackCapsule.fromAddress(address, { versioned: true }));
  t.is(y.data()[2], 3);
  y.dispose();
  const after = await settle();
  t.is(after.exportsCreated - before.exportsCreated, 1);
  t.is(after.exportsDeleted - before.exportsDeleted, 1);
});

test.serial("dispose releases native memory at once, views keep theirs", async (t) => {
  const before = await settle();
  const x = Tensor.zeros([1024], "FP64");
  t.is(debug.stats().ownedLiveBytes - before.ownedLiveBytes, 8192);
  x.dispose();
  t.is(debug.stats().ownedLiveBytes, before.ownedLiveBytes, "freed without waiting for GC");
  const y = Tensor.zeros([1024], "FP64");
  let view: Float64Array | undefined = y.data() as Float64Array;
  y.dispose();
  t.is(debug.stats().ownedLiveBytes - before.ownedLiveBytes, 8192, "the view still holds the memory");
  view[0] = 1;
  view = undefined;
  const after = await settle();
  t.is(after.ownedLiveBytes, before.ownedLiveBytes, "collected with the view");
});

test.serial("an export that shares its tensor's handle: the last holder's dispose frees, at once", async (t) => {
  // No data() views here: a view holds the memory until it is collected.
  const before = await settle();
  const handles = debug.liveHandles().tensors;
  const live = () => debug.stats().ownedLiveBytes - before.ownedLiveBytes;
  const x = Tensor.zeros([256], "FP64");
  const y = Tensor.fromDlpack(x.toDlpack());
  t.is(y.dataPtr, x.dataPtr);
  t.is(debug.liveHandles().tensors, handles + 1, "one handle, shared by x, the capsule and y");
  x.dispose();
  t.is(live(), 2048, "the import still holds the memory");
  const capsule = y.toDlpack({ maxVersion: [1, 0] });
  const ptr = y.dataPtr;
  y.dispose();
  t.is(live(), 2048, "the unconsumed capsule holds it");
  t.not(capsule.address, 0n, "the struct is built after its tensor was disposed");
  const z = Tensor.fromDlpack(capsule);
  t.is(z.dataPtr, ptr);
  z.dispose();
  t.is(live(), 0, "freed by the last dispose, without waiting for GC");
  t.is(debug.liveHandles().tensors, handles);
  const after = await settle();
  t.is(after.exportsCreated - before.exportsCreated, 1);
  t.is(after.exportsDeleted - before.exportsDeleted, 1);
});

test.serial("a dropped capsule's hold on a shared handle ends with GC", async (t) => {
  const before = await settle();
  const handlesBefore = debug.liveHandles();
  (() => {
    const x = Tensor.zeros([128], "FP32");
    x.toDlpack(); // dropped unconsumed
    x.dispose();
  })();
  t.is(debug.stats().ownedLiveBytes - before.ownedLiveBytes, 512, "the capsule still holds the memory");
  const after = await settle();
  t.is(after.ownedLiveBytes, before.ownedLiveBytes, "collected with the capsule");
  t.deepEqual(debug.liveHandles(), handlesBefore, "and its handle freed");
});

test.serial("one pointer, one ArrayBuffer per thread: renames, imports, a re-imported C struct and a second export of the memory share it", async (t) => {
  // crates/node/src/view.rs: the binding registers each thread's views by
  // data pointer, so every handle over one pointer reads through one buffer.
  const before = await settle();
  const foreignBefore = debug.foreignStats();
  const viewsBefore = debug.liveViews();
  (() => {
    const x = Tensor.zeros([1024], "FP32");
    const again = (shape: number[]) => Tensor.fromDlpack(DLPackCapsule.fromAddress(debug.foreignTensor({ shape, versioned: false, over: x }).address, { versioned: false }));
    const tensors = [x, x.withName("A"), Tensor.fromDlpack(x.toDlpack()), Tensor.fromDlpack(withStruct(x.toDlpack({ maxVersion: [1, 0] }))), again([1024]), again([16])];
    const views = tensors.map((v) => v.data());
    t.is(new Set(views.map((v) => v.buffer)).size, 1, "one ArrayBuffer for six tensors over one pointer");
    t.is(debug.liveViews() - viewsBefore, 1);
    t.is(views[5]!.length, 16, "a prefix is a shorter view of the same buffer");
    views[0]![5] = 42;
    t.true(views.every((v) => v[5] === 42), "every view sees the write");
    for (const v of tensors) v.dispose();
    views[3]![6] = 7;
    t.is(views[1]![6], 7, "still valid after every tensor was disposed");
  })();
  const after = await settle();
  t.is(after.ownedAllocations - before.ownedAllocations, 1);
  t.is(after.ownedFrees - before.ownedFrees, 1, "freed once, after the last view was collected");
  t.is(after.exportsDeleted - before.exportsDeleted, 1, "the one C struct built was deleted once");
  t.is(debug.foreignStats().deleted - foreignBefore.deleted, 2, "both second exports were deleted once");
  t.is(debug.liveViews(), viewsBefore, "the registry entry went with the buffer");
});

test.serial("a longer view at a registered pointer replaces the shorter one, whose finalizer leaves the new entry", async (t) => {
  const before = await settle();
  const viewsBefore = debug.liveViews();
  const x = Tensor.zeros([1024], "FP32");
  (() => {
    const prefix = Tensor.fromDlpack(DLPackCapsule.fromAddress(debug.foreignTensor({ shape: [16], versioned: true, over: x }).address, { versioned: true }));
    const short = prefix.data();
    const long = x.data();
    t.not(long.buffer, short.buffer, "the live view is too short for x: a second buffer over the pointer");
    t.is(long.length, 1024);
    t.is(debug.liveViews() - viewsBefore, 1, "the longer view replaced the shorter one in the registry");
    short[3] = 9;
    t.is(long[3], 9, "both alias one memory");
    prefix.dispose();
  })();
  await settle(); // the short buffer is collected and finalized
  t.is(debug.liveViews() - viewsBefore, 1, "x's entry is still there");
  const whole = Tensor.fromDlpack(DLPackCapsule.fromAddress(debug.foreignTensor({ shape: [1024], versioned: true, over: x }).address, { versioned: true }));
  t.is(whole.data().buffer, x.data().buffer, "a new import over the pointer finds x's view");
  t.is(whole.data()[3], 9);
  whole.dispose();
  x.dispose();
  const after = await settle();
  t.is(debug.liveViews(), viewsBefore);
  t.is(after.ownedFrees - before.ownedFrees, after.ownedAllocations - before.ownedAllocations, "freed once");
});

test("debug.foreignTensor over another tensor: elements past its bytes, data with over, and a non-tensor are ERR_INVALID_ARGUMENT", (t) => {
  const x = Tensor.zeros([4], "FP32");
  for (const options of [
    { shape: [5], versioned: true, over: x },
    { shape: [2], strides: [4], versioned: true, over: x },
    { shape: [4], versioned: true, over: x, data: new Uint8Array(16) },
    { shape: [4], versioned: true, over: {} as Tensor },
    { shape: [1], versioned: true, over: Tensor.fromBytes(["a"]) },
  ]) {
    const e = t.throws(() => debug.foreignTensor(options));
    t.is((e as { code?: string }).code, "ERR_INVALID_ARGUMENT", JSON.stringify(options.shape));
  }
  x.dispose();
  t.throws(() => debug.foreignTensor({ shape: [1], versioned: true, over: x }), { code: "ERR_DISPOSED" });
});

/** `capsule`, with its C struct built (as a native consumer's `.address` would). */
function withStruct(capsule: DLPackCapsule): DLPackCapsule {
  void capsule.address;
  return capsule;
}

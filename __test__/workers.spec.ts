// Tensors and capsules cross worker_threads without copying bytes, and each
// deleter still runs exactly once.
import test from "ava";
import { once } from "node:events";
import { Worker } from "node:worker_threads";
import { Tensor, type TransferredTensor } from "../src/index.js";
import { debug } from "../src/debug.js";

const gc = globalThis.gc!;

function startWorker(): Worker {
  return new Worker(new URL("./fixtures/ts-worker.mjs", import.meta.url), {
    workerData: { module: new URL("./echo-worker.ts", new URL("./fixtures/", import.meta.url)).href },
    // Workers reject --expose-gc.
    execArgv: process.execArgv.filter((a) => a !== "--expose-gc"),
  });
}

async function settle(): Promise<ReturnType<typeof debug.stats>> {
  let last = "";
  for (let quiet = 0, i = 0; quiet < 3 && i < 200; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 5));
    const now = JSON.stringify([debug.stats(), debug.liveHandles()]);
    quiet = now === last ? quiet + 1 : 0;
    last = now;
  }
  return debug.stats();
}

test.serial("100 tensors go to a worker and back: same bytes, same memory, deleters once", async (t) => {
  const before = await settle();
  const worker = startWorker();
  const sources = Array.from({ length: 100 }, (_, i) =>
    i % 2 === 0 ? Tensor.from(Float32Array.from({ length: 64 }, (_v, j) => i * 100 + j)) : Tensor.zeros([64], "FP32"),
  );
  const ptrs = sources.map((s) => s.dataPtr);
  worker.postMessage({ tensors: sources.map((s) => s.transfer()) });
  const [reply] = (await once(worker, "message")) as [{ tensors: TransferredTensor[] }];
  const returned = reply.tensors.map((m) => Tensor.fromTransferred(m));
  for (const [i, r] of returned.entries()) {
    t.is(r.dataPtr, ptrs[i], `tensor ${i} came back at the same address`);
    const expected0 = (i % 2 === 0 ? i * 100 : 0) + 1;
    t.is(r.data()[0], expected0, "the worker's write is visible: no copy");
    t.is((sources[i]!.data() as Float32Array)[0], expected0);
    if (i % 2 === 0) t.is(r.data()[63], i * 100 + 63);
    // Native memory back in this thread: the view registry hands out the source's buffer.
    else t.is(r.data().buffer, sources[i]!.data().buffer, "one external ArrayBuffer per pointer in a thread");
  }
  worker.postMessage({ done: true });
  await once(worker, "exit");
  for (const r of returned) r.dispose();
  for (const s of sources) s.dispose();
  const after = await settle();
  // Each round trip exports twice (there and back).
  t.is(after.exportsCreated - before.exportsCreated, 200);
  t.is(after.exportsDeleted - before.exportsDeleted, 200);
  t.is(after.ownedLiveBytes, before.ownedLiveBytes);
});

test.serial("a released capsule is consumed in a worker", async (t) => {
  const worker = startWorker();
  const x = Tensor.from(new Float32Array([1, 2, 3, 4]));
  worker.postMessage({ capsule: x.toDlpack({ maxVersion: [1, 0] }).release() });
  const [reply] = (await once(worker, "message")) as [{ sum: number }];
  t.is(reply.sum, 10);
  worker.postMessage({ done: true });
  await once(worker, "exit");
});

test.serial("a worker's own JS memory sent to the parent outlives the worker: it is copied on transfer", async (t) => {
  const worker = startWorker();
  const n = 1 << 20;
  worker.postMessage({ make: n });
  const [reply] = (await once(worker, "message")) as [{ tensors: TransferredTensor[] }];
  const [own, imported] = reply.tensors.map((m) => Tensor.fromTransferred(m));
  await once(worker, "exit");
  // The worker's heap is gone; fresh allocations may reuse its pages.
  gc();
  const junk = Array.from({ length: 32 }, () => new Float32Array(n).fill(3));
  const a = own!.data() as Float32Array;
  const b = imported!.data() as Float64Array;
  t.is(a.length, n);
  t.true(a.every((v, j) => v === j + 0.5), "the worker's values, intact after it ended");
  t.true(b.every((v) => v === -2));
  t.is(junk.length, 32);
  own!.dispose();
  imported!.dispose();
});

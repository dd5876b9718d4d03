#!/usr/bin/env node
// The Node half of the GPU check: tensorbridge's public JS API (the tsc build in dist/, the
// release addon) on a real GPU, without npm packages (the GPU machine has none). Prints one
// PASS/FAIL/SKIP line per check and exits non-zero on any FAIL.
//
//   TB_PKG=bench/.work/gpu/pkg node scripts/gpu/node-check.mjs
//
// Without CUDA it checks that every CUDA entry point throws ERR_CUDA_UNAVAILABLE and SKIPs
// the GPU checks (TB_REQUIRE_CUDA=1 makes those skips failures). The same checks, written for
// ava, are __test__/cuda.spec.ts.
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { Worker } from "node:worker_threads";
import { resolve } from "node:path";
import { pathToFileURL } from "node:url";

const pkg = resolve(process.env.TB_PKG ?? "bench/.work/gpu/pkg");
const load = (m) => import(pathToFileURL(`${pkg}/dist/${m}.js`).href);
const { Tensor } = await load("tensor");
const { cuda } = await load("cuda");
const { ErrorCode } = await load("errors");
const { DLPackCapsule } = await load("capsule");
const { debug } = await load("debug");

const requireCuda = process.env.TB_REQUIRE_CUDA === "1";
const available = cuda.isAvailable();
const counts = { PASS: 0, FAIL: 0, SKIP: 0 };

class Skip extends Error {}

function assert(cond, message) {
  if (!cond) throw new Error(message);
}

function throwsCode(fn, code, what) {
  try {
    fn();
  } catch (e) {
    assert(e.code === code, `${what}: expected ${code}, got ${e.code}: ${e.message}`);
    return e;
  }
  throw new Error(`${what}: expected ${code}, nothing was thrown`);
}

async function check(name, fn, { gpu = true } = {}) {
  let status = "PASS";
  let detail = "";
  try {
    if (gpu && !available) throw new Skip(`needs a CUDA GPU: ${cuda.unavailableReason()}`);
    detail = (await fn()) ?? "";
  } catch (e) {
    if (e instanceof Skip) {
      // TB_REQUIRE_CUDA fails skips of GPU checks only; a no-GPU check skips where CUDA works.
      status = requireCuda && gpu ? "FAIL" : "SKIP";
      detail = e.message;
    } else {
      status = "FAIL";
      detail = e?.stack ?? String(e);
    }
  }
  counts[status]++;
  console.log(`${status} node: ${name}${detail ? ` -- ${detail}` : ""}`);
}

/** Runs GC and lets FinalizationRegistry callbacks (which free native memory) run. */
async function settle() {
  for (let i = 0; i < 3; i++) {
    globalThis.gc?.();
    await new Promise((r) => setImmediate(r));
  }
}

const NUMERIC = ["BOOL", "UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64", "FP16", "BF16", "FP32", "FP64"];
const SIZE = { BOOL: 1, UINT8: 1, INT8: 1, UINT16: 2, INT16: 2, FP16: 2, BF16: 2, UINT32: 4, INT32: 4, FP32: 4, UINT64: 8, INT64: 8, FP64: 8 };

/** `n` elements of `dtype` as recognisable bytes (BOOL as 0/1). */
function sampleBytes(dtype, n, seed = 0) {
  const bytes = new Uint8Array(n * SIZE[dtype]);
  for (let i = 0; i < bytes.length; i++) bytes[i] = dtype === "BOOL" ? (i + seed) & 1 : (i * 31 + seed * 7 + (i >> 8)) & 0xff;
  return bytes;
}

function bytesOf(t) {
  const v = t.data();
  return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
}

function equal(a, b) {
  if (ArrayBuffer.isView(a) && ArrayBuffer.isView(b)) {
    return Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
  }
  return a.length === b.length && a.every((x, i) => x === b[i]);
}

/** A hand-made legacy DLManagedTensor (NULL deleter) labelling `data` as `device`. */
function fakeCapsule(data, bytes, device) {
  const words = new BigUint64Array(9);
  const holder = Tensor.from(words);
  const base = holder.dataPtr;
  const view = new DataView(words.buffer);
  view.setBigUint64(0, data, true);
  view.setInt32(8, device[0], true);
  view.setInt32(12, device[1], true);
  view.setInt32(16, 1, true);
  view.setUint8(20, 1);
  view.setUint8(21, 8);
  view.setUint16(22, 1, true);
  view.setBigUint64(24, base + 64n, true);
  view.setBigInt64(64, BigInt(bytes), true);
  return { capsule: DLPackCapsule.fromAddress(base, { versioned: false }), holder };
}

console.log(`node ${process.version}, package ${pkg}, cuda available: ${available}${available ? `, ${cuda.deviceCount()} device(s), driver ${cuda.driverVersion()}` : ""}`);

await check("without CUDA every CUDA entry point throws ERR_CUDA_UNAVAILABLE", () => {
  if (available) throw new Skip("CUDA is available here");
  throwsCode(() => cuda.driverVersion(), ErrorCode.CUDA_UNAVAILABLE, "driverVersion");
  throwsCode(() => cuda.streamHandle(), ErrorCode.CUDA_UNAVAILABLE, "streamHandle");
  throwsCode(() => Tensor.zeros([2], "FP32", { device: "cuda:0" }), ErrorCode.CUDA_UNAVAILABLE, "zeros");
  throwsCode(() => Tensor.zeros([2], "FP32", { device: "cuda_host" }), ErrorCode.CUDA_UNAVAILABLE, "pinned");
  throwsCode(() => Tensor.from(new Float32Array(2)).cuda(), ErrorCode.CUDA_UNAVAILABLE, "cuda()");
  const data = Tensor.from(new Uint8Array(16));
  const { capsule } = fakeCapsule(data.dataPtr, 16, [2, 0]);
  throwsCode(() => Tensor.fromDlpack(capsule), ErrorCode.CUDA_UNAVAILABLE, "import of a CUDA label");
  capsule.release();
  assert(cuda.deviceCount() === 0, "deviceCount is 0");
}, { gpu: false });

await check("device tensors: zeroed device memory, not host-readable, toCpu() copies", () => {
  const x = Tensor.zeros([3, 4], "FP32", { device: "cuda", name: "X" });
  assert(!x.isCpu() && x.device.type === "cuda" && x.device.id === 0, "on cuda:0");
  assert(cuda.memoryKind(x.dataPtr) === "device:0", `memory kind ${cuda.memoryKind(x.dataPtr)}`);
  throwsCode(() => x.data(), ErrorCode.NOT_CPU, "data() on device memory");
  const h = x.toCpu();
  assert(h.isCpu() && h.name === "X" && h.data().every((v) => v === 0), "zeros back on the host");
  assert(x.cuda(0) === x, "cuda(0) of a cuda:0 tensor is itself");
  assert(cuda.memoryKind(Tensor.zeros([4], "UINT8").dataPtr) === "unregistered", "host memory is unknown to the driver");
  throwsCode(() => Tensor.zeros([1], "FP32", { device: `cuda:${cuda.deviceCount()}` }), ErrorCode.DEVICE_UNSUPPORTED, "a missing GPU");
});

await check("every dtype: host -> device -> host, device -> device, device -> pinned, device -> pageable keep the bytes", () => {
  // Small sizes for every dtype, and two large ones that go through the pinned staging
  // buffers (pageable sides of >= 4 MiB, in 8 MiB chunks: 9 MiB + 3 is two, the last short).
  const cases = NUMERIC.flatMap((dtype) => [[dtype, 1], [dtype, 1000]]);
  cases.push(["UINT8", (9 << 20) + 3], ["FP64", (1 << 20) + 3]);
  for (const [dtype, n] of cases) {
    const src = sampleBytes(dtype, n, n);
    const x = Tensor.from(src, { dtype, shape: [n] });
    const d = x.cuda();
    assert(equal(bytesOf(d.toCpu()), src), `${dtype}[${n}] host -> device -> host`);
    const d2 = d.copyTo(Tensor.empty([n], dtype, { device: "cuda:0" }));
    assert(equal(bytesOf(d2.toCpu()), src), `${dtype}[${n}] device -> device`);
    const p = d2.to("cuda_host");
    assert(p.isCpu() && cuda.memoryKind(p.dataPtr) === "pinned", `${dtype}: pinned`);
    assert(equal(bytesOf(p), src), `${dtype}[${n}] device -> pinned`);
    const back = Tensor.zeros([n], dtype);
    d2.copyTo(back);
    assert(equal(bytesOf(back), src), `${dtype}[${n}] device -> pageable`);
    const fromPinned = p.copyTo(Tensor.zeros([n], dtype, { device: "cuda:0" }));
    assert(equal(bytesOf(fromPinned.toCpu()), src), `${dtype}[${n}] pinned -> device`);
    for (const t of [x, d, d2, p, back, fromPinned]) t.dispose();
  }
  return `${cases.length} cases, ${NUMERIC.length} dtypes`;
});

await check("DLPack: device tensors cross without a copy, with every stream form; 0 is refused", () => {
  const x = Tensor.from(new Float32Array([1, 2, 3, 4])).cuda();
  const ours = cuda.streamHandle();
  for (const stream of [undefined, null, 1, 2, -1, 1n, ours, Number(ours)]) {
    for (const maxVersion of [undefined, [1, 3]]) {
      const y = Tensor.fromDlpack(x.toDlpack({ stream, maxVersion }));
      assert(y.dataPtr === x.dataPtr, `zero-copy with stream ${String(stream)}`);
      assert(equal(Array.from(y.toCpu().data()), [1, 2, 3, 4]), "values");
    }
  }
  throwsCode(() => x.toDlpack({ stream: 0 }), ErrorCode.INVALID_ARGUMENT, "stream 0");
  const home = Tensor.fromDlpack(x.toDlpack({ device: "cpu", maxVersion: [1, 3] }));
  assert(home.isCpu() && equal(Array.from(home.data()), [1, 2, 3, 4]), "device -> cpu through export options");
  throwsCode(() => x.toDlpack({ device: "cpu", copy: false }), ErrorCode.COPY_REQUIRED, "copy: false");
});

await check("pointer validation: host memory labelled CUDA, wrong ordinal, device memory labelled cpu -> ERR_DEVICE_MISMATCH", () => {
  const host = Tensor.from(new Uint8Array(16));
  const dev = Tensor.zeros([16], "UINT8", { device: "cuda:0" });
  const cases = [
    ["host memory labelled cuda:0", host.dataPtr, [2, 0], ErrorCode.DEVICE_MISMATCH],
    ["device memory labelled cuda:1", dev.dataPtr, [2, 1], ErrorCode.DEVICE_MISMATCH],
    ["device memory labelled cpu", dev.dataPtr, [1, 0], ErrorCode.DEVICE_MISMATCH],
    ["device memory labelled cuda_host", dev.dataPtr, [3, 0], ErrorCode.DEVICE_MISMATCH],
    ["device memory labelled cuda:0", dev.dataPtr, [2, 0], undefined],
  ];
  for (const [what, data, device, code] of cases) {
    const { capsule, holder } = fakeCapsule(data, 16, device);
    if (code === undefined) {
      const y = Tensor.fromDlpack(capsule);
      assert(y.dataPtr === data, what);
      y.dispose();
    } else {
      throwsCode(() => Tensor.fromDlpack(capsule), code, what);
      assert(!capsule.consumed, `${what}: the capsule keeps its tensor`);
      capsule.release();
    }
    holder.dispose();
  }
  return `${cases.length} cases`;
});

await check("ownership: device memory is freed once, also when the last holder is on a worker thread", async () => {
  // Earlier checks leave garbage whose finalizers free device memory: settle it first, so the
  // counts below see this check's tensor only.
  await settle();
  const before = debug.stats();
  const x = Tensor.zeros([1 << 20], "FP32", { device: "cuda:0" });
  const message = x.transfer();
  x.dispose();
  const worker = new Worker(
    `const { workerData, parentPort } = require("node:worker_threads");
     import(workerData.url).then(({ Tensor }) => {
       const t = Tensor.fromTransferred(workerData.message);
       const onHost = t.toCpu();
       const ok = !t.isCpu() && onHost.data().every((v) => v === 0);
       t.dispose();
       parentPort.postMessage(ok);
     }).catch((e) => parentPort.postMessage(String(e)));`,
    { eval: true, workerData: { url: pathToFileURL(`${pkg}/dist/tensor.js`).href, message } },
  );
  const ok = await new Promise((res, rej) => {
    worker.once("message", res);
    worker.once("error", rej);
  });
  await worker.terminate();
  assert(ok === true, `the worker read the tensor: ${ok}`);
  await settle();
  const after = debug.stats();
  assert(after.cudaLiveBytes === before.cudaLiveBytes, `live bytes ${before.cudaLiveBytes} -> ${after.cudaLiveBytes}`);
  assert(after.cudaFrees - before.cudaFrees === after.cudaAllocations - before.cudaAllocations, "every allocation freed once");
  return "freed on the worker, with the right context current";
});

await check("CUDA shared memory: another process's IPC handle maps without a copy; outputs are copied into it", async () => {
  // CUDA refuses to open a handle in the process that made it: the region lives in a child.
  const code = `
    import { createInterface } from "node:readline";
    const { Tensor } = await import(${JSON.stringify(pathToFileURL(`${pkg}/dist/tensor.js`).href)});
    const { cuda } = await import(${JSON.stringify(pathToFileURL(`${pkg}/dist/cuda.js`).href)});
    const region = Tensor.from(new Float32Array([1, 2, 3, 4, 0, 0, 0, 0])).cuda();
    console.log(Buffer.from(cuda.ipcHandle(region)).toString("base64"));
    createInterface({ input: process.stdin }).on("line", (l) => {
      if (l === "read") console.log(JSON.stringify(Array.from(region.toCpu().data())));
      else process.exit(0);
    });`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", code], { stdio: ["pipe", "pipe", "inherit"] });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const next = async () => {
    const { value, done } = await lines.next();
    assert(!done, "the exporting child exited early");
    return value;
  };
  try {
    const b64 = await next();
    const { CudaSharedMemory } = await load("server/cuda-shm");
    const shm = new CudaSharedMemory(true);
    shm.register("r", { raw_handle: { b64 }, device_id: 0, byte_size: 32 });
    assert(JSON.stringify(shm.status()) === JSON.stringify([{ name: "r", device_id: 0, byte_size: 32 }]), "status");
    const x = shm.tensor("r", 0, 16, "FP32", [4], "X");
    assert(!x.isCpu() && cuda.memoryKind(x.dataPtr) === "device:0", "a device tensor");
    assert(equal(Array.from(x.toCpu().data()), [1, 2, 3, 4]), "the child's values");
    assert(shm.writeTensor("r", 16, 16, Tensor.from(new Float32Array([5, 6, 7, 8]))), "host -> region");
    child.stdin.write("read\n");
    assert(equal(JSON.parse(await next()), [1, 2, 3, 4, 5, 6, 7, 8]), "host -> region bytes");
    assert(shm.writeTensor("r", 16, 16, x), "device -> region");
    child.stdin.write("read\n");
    assert(equal(JSON.parse(await next()), [1, 2, 3, 4, 1, 2, 3, 4]), "device -> region bytes");
    let threw = false;
    try {
      shm.register("big", { raw_handle: { b64 }, device_id: 0, byte_size: 1 << 30 });
    } catch (e) {
      threw = /failed to register/.test(e.message);
    }
    assert(threw, "a byte_size past the allocation is refused");
    shm.unregister();
    x.dispose();
    return "zero-copy input, host and device outputs";
  } finally {
    child.stdin.end("exit\n");
  }
});

console.log(`node checks: ${counts.PASS} passed, ${counts.FAIL} failed, ${counts.SKIP} skipped`);
process.exitCode = counts.FAIL ? 1 : 0;

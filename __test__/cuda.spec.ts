/**
 * CUDA from JavaScript. Without a GPU (this machine, CI): every CUDA entry
 * point throws ERR_CUDA_UNAVAILABLE and nothing crashes. With one
 * (scripts/gpu-check.sh runs the same checks from dist/ on the GPU machine):
 * device round trips, copies, pointer validation and stream arguments.
 */
import test from "ava";
import { DLPackCapsule, DTYPES, ErrorCode, Tensor, cuda, elementSize } from "../src/index.js";
import { debug } from "../src/debug.js";
import { NUMERIC, sameBytes, sample, throwsCode } from "./helpers.js";

const available = cuda.isAvailable();
/** GPU-only tests run with a GPU and are skipped, visibly, without one. */
const gpu = available ? test : test.skip;
const needsGpu = available ? "" : ` [skipped: needs a CUDA GPU; ${cuda.unavailableReason()}]`;
/** Tests of the no-CUDA behaviour are skipped, visibly, where CUDA works. */
const noGpu = available ? test.skip : test;
const withoutGpu = available ? " [skipped: CUDA is available here]" : "";

/**
 * A hand-made legacy DLManagedTensor (NULL deleter) describing `bytes` of
 * `data` as a UINT8 vector on `[deviceType, deviceId]`: the way to make a
 * mislabelled DLPack tensor without a native helper. Keep `holder` alive
 * while the capsule is used.
 */
function fakeCapsule(data: bigint, bytes: number, device: readonly [number, number]): { capsule: DLPackCapsule; holder: Tensor } {
  const words = new BigUint64Array(9);
  const holder = Tensor.from(words);
  const base = holder.dataPtr;
  const view = new DataView(words.buffer);
  view.setBigUint64(0, data, true); // data
  view.setInt32(8, device[0], true); // device_type
  view.setInt32(12, device[1], true); // device_id
  view.setInt32(16, 1, true); // ndim
  view.setUint8(20, 1); // dtype code: UInt
  view.setUint8(21, 8); // bits
  view.setUint16(22, 1, true); // lanes
  view.setBigUint64(24, base + 64n, true); // shape -> words[8]
  view.setBigUint64(32, 0n, true); // strides: NULL (compact)
  view.setBigUint64(40, 0n, true); // byte_offset
  view.setBigUint64(48, 0n, true); // manager_ctx
  view.setBigUint64(56, 0n, true); // deleter: NULL (nothing to free)
  view.setBigInt64(64, BigInt(bytes), true); // shape[0]
  return { capsule: DLPackCapsule.fromAddress(base, { versioned: false }), holder };
}

// --- everywhere -------------------------------------------------------------

test("cuda queries never throw where there is nothing to ask", (t) => {
  t.is(typeof cuda.isAvailable(), "boolean");
  t.is(cuda.isAvailable(), available, "stable across calls");
  if (available) {
    t.is(cuda.unavailableReason(), undefined);
    t.true(cuda.deviceCount() >= 1);
  } else {
    t.regex(cuda.unavailableReason()!, /\w/);
    t.is(cuda.deviceCount(), 0, "0 GPUs, like torch.cuda.device_count()");
  }
});

test("device strings are checked before any CUDA work", (t) => {
  for (const device of ["gpu", "CUDA", "cuda:", "cuda:-1", "cuda:x", ""]) {
    throwsCode(t, () => Tensor.zeros([2], "FP32", { device }), ErrorCode.INVALID_ARGUMENT);
  }
  throwsCode(t, () => Tensor.zeros([2], "FP32", { device: 3 as never }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.zeros([2], "FP32", { device: "rocm:0" }), ErrorCode.DEVICE_UNSUPPORTED);
  const x = Tensor.from(new Float32Array(2));
  throwsCode(t, () => x.cuda(-1), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => x.cuda(1.5), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.zeros([2], "BYTES", { device: "cuda:0" }), ErrorCode.DTYPE_UNSUPPORTED);
  throwsCode(t, () => Tensor.fromBytes(["a"]).cuda(), ErrorCode.DTYPE_UNSUPPORTED);
  t.is(Tensor.fromBytes(["a"]).to("cpu").bytes().length, 1);
});

test("host tensors: toCpu() and to('cpu') are the tensor itself; copyTo copies host to host", (t) => {
  const src = new Int32Array([1, 2, 3, 4, 5, 6]);
  const x = Tensor.from(src, { shape: [2, 3], name: "X" });
  t.is(x.toCpu(), x);
  t.is(x.to("cpu"), x);
  t.is(x.to("cpu:0"), x);
  t.true(x.isCpu());
  const y = Tensor.zeros([2, 3], "INT32");
  t.is(x.copyTo(y), y, "returns the destination");
  t.deepEqual(Array.from(y.data() as Int32Array), [1, 2, 3, 4, 5, 6]);
  src[0] = 9;
  t.is((y.data() as Int32Array)[0], 1, "a copy, not a view");
  throwsCode(t, () => x.copyTo(Tensor.zeros([3, 2], "INT32")), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => x.copyTo(Tensor.zeros([2, 3], "FP32")), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => x.copyTo(Tensor.from(new Int32Array(6), { shape: [2, 3], readOnly: true })), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => x.copyTo({} as never), ErrorCode.INVALID_ARGUMENT);
  x.dispose();
  throwsCode(t, () => x.copyTo(y), ErrorCode.DISPOSED);
  throwsCode(t, () => x.toCpu(), ErrorCode.DISPOSED);
});

test("the stream argument: 0 is always refused, host tensors take only null/undefined/-1", (t) => {
  const x = Tensor.zeros([2], "FP32");
  for (const stream of [0, 0n]) throwsCode(t, () => x.toDlpack({ stream }), ErrorCode.INVALID_ARGUMENT);
  for (const stream of [1, 2, 1n, 0x7f00_0000, -2, 1.5, Number.NaN]) {
    throwsCode(t, () => x.toDlpack({ stream }), ErrorCode.INVALID_ARGUMENT);
  }
  for (const stream of [undefined, null, -1, -1n]) t.notThrows(() => x.toDlpack({ stream }));
});

// --- without CUDA -----------------------------------------------------------

noGpu(`without CUDA every CUDA entry point throws ERR_CUDA_UNAVAILABLE${withoutGpu}`, (t) => {
  const err = throwsCode(t, () => cuda.driverVersion(), ErrorCode.CUDA_UNAVAILABLE);
  t.regex(err.message, /CUDA is not available/);
  throwsCode(t, () => cuda.streamHandle(), ErrorCode.CUDA_UNAVAILABLE);
  throwsCode(t, () => cuda.streamHandle("cuda:1"), ErrorCode.CUDA_UNAVAILABLE);
  throwsCode(t, () => cuda.memoryKind(4096n), ErrorCode.CUDA_UNAVAILABLE);
  for (const device of ["cuda", "cuda:0", "cuda:3", "cuda_host"]) {
    for (const dtype of ["FP32", "UINT8"] as const) {
      throwsCode(t, () => Tensor.zeros([2, 3], dtype, { device }), ErrorCode.CUDA_UNAVAILABLE);
      throwsCode(t, () => Tensor.empty([0], dtype, { device }), ErrorCode.CUDA_UNAVAILABLE);
    }
  }
  const x = Tensor.from(new Float32Array([1, 2]));
  throwsCode(t, () => x.cuda(), ErrorCode.CUDA_UNAVAILABLE);
  throwsCode(t, () => x.cuda(1), ErrorCode.CUDA_UNAVAILABLE);
  throwsCode(t, () => x.to("cuda_host"), ErrorCode.CUDA_UNAVAILABLE);
  throwsCode(t, () => x.toDlpack({ device: "cuda:0" }), ErrorCode.CUDA_UNAVAILABLE);
  throwsCode(t, () => x.toDlpack({ device: [2, 0], copy: true }), ErrorCode.CUDA_UNAVAILABLE);
  t.is(x.data()[1], 2, "the host tensor is untouched");
});

noGpu(`without CUDA a DLPack tensor labelled CUDA is refused (unverifiable), not trusted${withoutGpu}`, (t) => {
  const data = Tensor.from(new Uint8Array(16));
  for (const device of [[2, 0], [13, 0]] as const) {
    const { capsule, holder } = fakeCapsule(data.dataPtr, 16, device);
    throwsCode(t, () => Tensor.fromDlpack(capsule), ErrorCode.CUDA_UNAVAILABLE);
    t.false(capsule.consumed, "the capsule keeps the tensor after a refused import");
    capsule.release();
    holder.dispose();
  }
  // Host memory labelled pinned is still host memory.
  const { capsule, holder } = fakeCapsule(data.dataPtr, 16, [3, 0]);
  const pinned = Tensor.fromDlpack(capsule);
  t.true(pinned.isCpu());
  t.is(pinned.dataPtr, data.dataPtr);
  pinned.dispose();
  holder.dispose();
});

// --- with a GPU -------------------------------------------------------------

gpu(`device tensors: zeroed device memory, not host-readable, toCpu() copies${needsGpu}`, (t) => {
  t.true(cuda.driverVersion() >= 12_000);
  const x = Tensor.zeros([3, 4], "FP32", { device: "cuda", name: "X" });
  t.false(x.isCpu());
  t.deepEqual(x.device, { type: "cuda", id: 0 });
  t.deepEqual(x.dlpackDevice(), [2, 0]);
  t.is(cuda.memoryKind(x.dataPtr), "device:0");
  t.is(x.toString(), 'Tensor(FP32[3,4] cuda:0 "X")');
  throwsCode(t, () => x.data(), ErrorCode.NOT_CPU);
  const host = x.toCpu();
  t.true(host.isCpu());
  t.is(host.name, "X");
  t.true((host.data() as Float32Array).every((v) => v === 0));
  t.is(x.cuda(0), x, "already there: no copy");
  throwsCode(t, () => Tensor.zeros([1], "FP32", { device: `cuda:${cuda.deviceCount()}` }), ErrorCode.DEVICE_UNSUPPORTED);
});

gpu(`every dtype: host → device → host, device → device and pinned copies keep the bytes${needsGpu}`, (t) => {
  t.is(DTYPES.length, NUMERIC.length + 1);
  for (const dtype of NUMERIC) {
    const src = sample(dtype, 33);
    const x = Tensor.from(src, { dtype, shape: [3, 11] });
    const d = x.cuda();
    t.is(d.byteLength, 33 * elementSize(dtype));
    t.true(sameBytes(d.toCpu().data(), src), `${dtype}: host → device → host`);
    const d2 = d.copyTo(Tensor.empty([3, 11], dtype, { device: "cuda:0" }));
    t.true(sameBytes(d2.toCpu().data(), src), `${dtype}: device → device`);
    const pinned = d2.to("cuda_host");
    t.true(pinned.isCpu());
    t.is(cuda.memoryKind(pinned.dataPtr), "pinned");
    t.true(sameBytes(pinned.data(), src), `${dtype}: device → pinned`);
    const back = Tensor.zeros([3, 11], dtype);
    d.copyTo(back);
    t.true(sameBytes(back.data(), src), `${dtype}: device → pageable (copyTo)`);
    t.true(sameBytes(d.clone().toCpu().data(), src), `${dtype}: clone on device`);
  }
});

gpu(`device tensors cross DLPack without a copy, with every stream form${needsGpu}`, (t) => {
  const x = Tensor.from(new Float32Array([1, 2, 3, 4])).cuda();
  const ours = cuda.streamHandle();
  t.true(ours > 2n);
  for (const stream of [undefined, null, 1, 2, -1, 1n, ours, Number(ours)]) {
    for (const maxVersion of [undefined, [1, 3] as const]) {
      const y = Tensor.fromDlpack(x.toDlpack({ stream, maxVersion }));
      t.is(y.dataPtr, x.dataPtr, `stream ${String(stream)}`);
      t.deepEqual(Array.from(y.toCpu().data() as Float32Array), [1, 2, 3, 4]);
    }
  }
  for (const stream of [0, 0n]) throwsCode(t, () => x.toDlpack({ stream }), ErrorCode.INVALID_ARGUMENT);
  // A move to the host through the export options: a flagged copy.
  const home = Tensor.fromDlpack(x.toDlpack({ device: "cpu", maxVersion: [1, 3] }));
  t.true(home.isCpu());
  t.deepEqual(Array.from(home.data() as Float32Array), [1, 2, 3, 4]);
  throwsCode(t, () => x.toDlpack({ device: "cpu", copy: false }), ErrorCode.COPY_REQUIRED);
});

gpu(`pointer validation: host memory labelled CUDA and a wrong ordinal are ERR_DEVICE_MISMATCH${needsGpu}`, (t) => {
  const host = Tensor.from(new Uint8Array(16));
  const dev = Tensor.zeros([16], "UINT8", { device: "cuda:0" });
  const cases: Array<[string, bigint, [number, number], string | undefined]> = [
    ["host memory labelled cuda:0", host.dataPtr, [2, 0], ErrorCode.DEVICE_MISMATCH],
    ["device memory labelled cuda:1", dev.dataPtr, [2, 1], ErrorCode.DEVICE_MISMATCH],
    ["device memory labelled cpu", dev.dataPtr, [1, 0], ErrorCode.DEVICE_MISMATCH],
    ["device memory labelled cuda:0", dev.dataPtr, [2, 0], undefined],
  ];
  for (const [what, data, device, code] of cases) {
    const { capsule, holder } = fakeCapsule(data, 16, device);
    if (code === undefined) {
      const y = Tensor.fromDlpack(capsule);
      t.is(y.dataPtr, data, what);
      y.dispose();
    } else {
      const err = throwsCode(t, () => Tensor.fromDlpack(capsule), code);
      t.regex(err.message, /mislabelled/, what);
      t.false(capsule.consumed);
      capsule.release();
    }
    holder.dispose();
  }
});

gpu(`device memory is freed once the last holder is gone${needsGpu}`, (t) => {
  const before = debug.stats();
  const x = Tensor.zeros([1 << 20], "FP32", { device: "cuda:0" });
  const capsule = x.toDlpack();
  x.dispose();
  const mid = debug.stats();
  t.is(mid.cudaLiveBytes - before.cudaLiveBytes, 4 << 20, "the capsule keeps it");
  Tensor.fromDlpack(capsule).dispose();
  const after = debug.stats();
  t.is(after.cudaLiveBytes, before.cudaLiveBytes);
  t.is(after.cudaFrees - before.cudaFrees, 1);
});

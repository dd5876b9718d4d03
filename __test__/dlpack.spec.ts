import test from "ava";
import { DLPackCapsule, ErrorCode, Tensor, TensorBridgeError, cuda } from "../src/index.js";
import { debug } from "../src/debug.js";
import { throwsCode } from "./helpers.js";

test("toDlpack gives the legacy struct unless maxVersion >= [1, 0]", (t) => {
  const x = Tensor.zeros([2], "FP32");
  t.false(x.toDlpack().versioned);
  t.false(x.toDlpack({ maxVersion: [0, 8] }).versioned);
  t.true(x.toDlpack({ maxVersion: [1, 0] }).versioned);
  t.true(x.toDlpack({ maxVersion: [1, 3] }).versioned);
  t.true(x.toDlpack({ maxVersion: [2, 0] }).versioned);
  throwsCode(t, () => x.toDlpack({ maxVersion: [1] as never }), ErrorCode.INVALID_ARGUMENT);
});

test("a capsule is opaque, with a BigInt address, and consumed exactly once", (t) => {
  const x = Tensor.from(new Float32Array([1, 2, 3]));
  const capsule = x.toDlpack({ maxVersion: [1, 0] });
  t.true(capsule instanceof DLPackCapsule);
  t.is(typeof capsule.address, "bigint");
  t.not(capsule.address, 0n);
  t.false(capsule.consumed);
  const y = Tensor.fromDlpack(capsule);
  t.true(capsule.consumed);
  t.deepEqual(Array.from(y.data() as Float32Array), [1, 2, 3]);
  throwsCode(t, () => Tensor.fromDlpack(capsule), ErrorCode.DLPACK_CONSUMED);
  throwsCode(t, () => capsule.release(), ErrorCode.DLPACK_CONSUMED);
});

test("a capsule consumed in-process builds no C struct; asking for its address builds one", (t) => {
  const x = Tensor.from(new Int32Array([5, 6]));
  const before = debug.stats();
  const c1 = x.toDlpack({ maxVersion: [1, 0] });
  const y = Tensor.fromDlpack(c1);
  t.is(y.dataPtr, x.dataPtr);
  t.true(c1.consumed);
  t.is(debug.stats().exportsCreated, before.exportsCreated, "no struct for an in-process hand-off");
  throwsCode(t, () => c1.address, ErrorCode.DLPACK_CONSUMED);
  throwsCode(t, () => c1.release(), ErrorCode.DLPACK_CONSUMED);
  throwsCode(t, () => Tensor.fromDlpack(c1), ErrorCode.DLPACK_CONSUMED);

  const c2 = x.toDlpack();
  const address = c2.address;
  t.is(c2.address, address, "built once");
  t.is(debug.stats().exportsCreated, before.exportsCreated + 1);
  t.false(c2.consumed);
  const z = Tensor.fromDlpack(c2);
  t.true(c2.consumed);
  t.is(z.dataPtr, x.dataPtr);
  t.is(c2.address, address, "the address stays readable after an import of the struct");
  z.dispose();
  y.dispose();
});

/** What a user can observe of a tensor. */
function observable(v: Tensor): unknown[] {
  return [v.shape, v.strides, v.dtype, v.device, v.readOnly, Array.from(v.data() as ArrayLike<number | bigint>)];
}

test("both ways of consuming a capsule give the same tensor", (t) => {
  const ro = Tensor.from(new Float32Array([1, 2, 3, 4]), { shape: [2, 2], readOnly: true });
  const cases: Array<[Tensor, Parameters<Tensor["toDlpack"]>[0]]> = [
    [ro, { maxVersion: [1, 0] }],
    [ro, { copy: true }],
    [ro, { maxVersion: [1, 0], copy: true }],
    [Tensor.zeros([0, 3], "BF16"), {}],
    [Tensor.zeros([], "INT64"), { maxVersion: [1, 0], device: "cpu" }],
  ];
  for (const [x, options] of cases) {
    const direct = Tensor.fromDlpack(x.toDlpack(options));
    const capsule = x.toDlpack(options);
    void capsule.address;
    const viaStruct = Tensor.fromDlpack(capsule);
    t.deepEqual(observable(direct), observable(viaStruct), JSON.stringify(options));
    if (options?.copy !== true && x.byteLength > 0) t.is(direct.dataPtr, x.dataPtr);
  }
});

test("the import shares memory with the exporter (zero-copy both ways)", (t) => {
  const src = new Float32Array([1, 2]);
  const x = Tensor.from(src);
  const y = Tensor.fromDlpack(x.toDlpack());
  t.is(y.dataPtr, x.dataPtr);
  (y.data() as Float32Array)[1] = 7;
  t.is(src[1], 7);
});

test("an import outlives the exporter and its source array", (t) => {
  let x: Tensor | undefined = Tensor.zeros([1024], "FP64");
  (x.data() as Float64Array)[1023] = 4.25;
  const capsule = x.toDlpack();
  x.dispose();
  x = undefined;
  globalThis.gc?.();
  const y = Tensor.fromDlpack(capsule);
  t.is((y.data() as Float64Array)[1023], 4.25);
});

test("fromDlpack accepts objects with toDlpack() or __dlpack__()", (t) => {
  const x = Tensor.from(new Int32Array([4, 5]));
  t.deepEqual(Array.from(Tensor.fromDlpack(x).data() as Int32Array), [4, 5]);
  const seen: unknown[] = [];
  const producer = {
    __dlpack__(opts?: unknown) {
      seen.push(opts);
      return x.toDlpack({ maxVersion: [1, 0] });
    },
  };
  const y = Tensor.fromDlpack(producer, { name: "Y" });
  t.is(y.name, "Y");
  t.deepEqual(seen, [{ maxVersion: [1, 3] }], "asks the producer for a versioned capsule");
  throwsCode(t, () => Tensor.fromDlpack({} as never), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.fromDlpack({ toDlpack: () => 42 } as never), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.fromDlpack(null as never), ErrorCode.INVALID_ARGUMENT);
});

test("copy: true copies; copy: false never copies on the same device", (t) => {
  const src = new Float32Array([1, 2]);
  const x = Tensor.from(src);
  const copied = Tensor.fromDlpack(x.toDlpack({ copy: true, maxVersion: [1, 0] }));
  t.not(copied.dataPtr, x.dataPtr);
  src[0] = 9;
  t.is(copied.data()[0], 1, "the copy does not see later writes");
  const same = Tensor.fromDlpack(x.toDlpack({ copy: false }));
  t.is(same.dataPtr, x.dataPtr);
});

test("exporting to another device: refusals that hold with or without CUDA", (t) => {
  const x = Tensor.zeros([2], "FP32");
  throwsCode(t, () => x.toDlpack({ device: "cuda:0", copy: false }), ErrorCode.COPY_REQUIRED);
  throwsCode(t, () => x.toDlpack({ device: "tpu" }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => x.toDlpack({ device: [99, 0] }), ErrorCode.DEVICE_UNSUPPORTED);
  t.false(x.toDlpack({ device: [1, 0] }).consumed, "[kDLCPU, 0] is this device");
  t.false(x.toDlpack({ device: "cpu" }).consumed);
});

const available = cuda.isAvailable();

(available ? test.skip : test)(`exporting to cuda:0 without CUDA is refused with a code${available ? " [skipped: CUDA is available here]" : ""}`, (t) => {
  const x = Tensor.zeros([2], "FP32");
  const err = t.throws(() => x.toDlpack({ device: "cuda:0" }), { instanceOf: TensorBridgeError });
  t.true(
    ([ErrorCode.DEVICE_UNSUPPORTED, ErrorCode.CUDA_UNAVAILABLE] as string[]).includes(err!.code),
    `got ${err!.code}`,
  );
});

(available ? test : test.skip)(`exporting to cuda:0 with CUDA hands over a device copy${available ? "" : ` [skipped: needs a CUDA GPU; ${cuda.unavailableReason()}]`}`, (t) => {
  const x = Tensor.from(new Float32Array([1.5, -2]));
  const y = Tensor.fromDlpack(x.toDlpack({ device: "cuda:0" }));
  t.false(y.isCpu());
  t.deepEqual(y.dlpackDevice(), [2, 0]);
  t.deepEqual(Array.from(y.toCpu().data() as Float32Array), [1.5, -2]);
});

test("the stream argument follows the array API", (t) => {
  const x = Tensor.zeros([2], "FP32");
  throwsCode(t, () => x.toDlpack({ stream: 0 }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => x.toDlpack({ stream: 0n }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => x.toDlpack({ stream: 1 }), ErrorCode.INVALID_ARGUMENT);
  t.notThrows(() => x.toDlpack({ stream: -1 }));
  t.notThrows(() => x.toDlpack({ stream: null }));
  t.notThrows(() => x.__dlpack__({ stream: undefined }));
});

test("release hands ownership to fromAddress", (t) => {
  const x = Tensor.from(new Uint16Array([1, 2, 3]), { dtype: "BF16" });
  const capsule = x.toDlpack({ maxVersion: [1, 0] });
  const address = capsule.release();
  t.true(capsule.consumed);
  t.is(address, capsule.address);
  const y = Tensor.fromDlpack(DLPackCapsule.fromAddress(address, { versioned: true }));
  t.is(y.dtype, "BF16");
  t.deepEqual(Array.from(y.data() as Uint16Array), [1, 2, 3]);
});

test("a legacy capsule released and taken back as legacy", (t) => {
  const x = Tensor.from(new Float64Array([0.5]));
  const address = x.toDlpack().release();
  const y = Tensor.fromDlpack(DLPackCapsule.fromAddress(address, { versioned: false }));
  t.is(y.data()[0], 0.5);
});

test("fromAddress validates its arguments", (t) => {
  throwsCode(t, () => DLPackCapsule.fromAddress(0n, { versioned: true }), ErrorCode.DLPACK_NULL);
  throwsCode(t, () => DLPackCapsule.fromAddress(0x1001n, { versioned: true }), ErrorCode.DLPACK_INVALID);
  throwsCode(t, () => DLPackCapsule.fromAddress(-1n, { versioned: true }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => DLPackCapsule.fromAddress(1n << 70n, { versioned: true }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => DLPackCapsule.fromAddress(5 as never, { versioned: true }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => DLPackCapsule.fromAddress(5n, {} as never), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => new (DLPackCapsule as never as new () => unknown)(), ErrorCode.INVALID_ARGUMENT);
});

test("a read-only tensor exports READ_ONLY and the flag survives a round trip", (t) => {
  const x = Tensor.from(new Float32Array([1]), { readOnly: true });
  t.true(x.readOnly);
  const y = Tensor.fromDlpack(x.toDlpack({ maxVersion: [1, 0] }));
  t.true(y.readOnly);
  t.false(Tensor.from(new Float32Array([1])).readOnly);
});

test("a read-only tensor can't be exported as the legacy struct without a copy", (t) => {
  const src = new Float32Array([1, 2]);
  const x = Tensor.from(src, { readOnly: true });
  throwsCode(t, () => x.toDlpack(), ErrorCode.COPY_REQUIRED);
  const copy = Tensor.fromDlpack(x.toDlpack({ copy: true }));
  t.not(copy.dataPtr, x.dataPtr, "copy: true made a copy");
  t.deepEqual(Array.from(copy.data() as Float32Array), [1, 2]);
});

import test from "ava";
import { DTYPES, ErrorCode, Tensor, TensorBridgeError, cuda, elementSize } from "../src/index.js";
import { debug } from "../src/debug.js";
import { NUMERIC, sameBytes, sample, throwsCode } from "./helpers.js";

test("Tensor.from wraps a Float32Array without copying", (t) => {
  const src = new Float32Array([1, 2, 3, 4]);
  const x = Tensor.from(src, { shape: [2, 2], name: "INPUT0" });
  t.deepEqual(x.shape, [2, 2]);
  t.deepEqual(x.strides, [2, 1]);
  t.is(x.dtype, "FP32");
  t.is(x.name, "INPUT0");
  t.is(x.byteLength, 16);
  t.is(x.size, 4);
  const view = x.data();
  t.true(view instanceof Float32Array);
  t.is(view.buffer, src.buffer, "the view shares the caller's ArrayBuffer");
  view[0] = 42;
  t.is(src[0], 42);
  src[3] = -1;
  t.is(x.data()[3], -1);
});

test("new Tensor is the same as Tensor.from", (t) => {
  const x = new Tensor(new Int32Array([5, 6, 7]), { dtype: "INT32" });
  t.deepEqual(x.shape, [3]);
  t.deepEqual(Array.from(x.data() as Int32Array), [5, 6, 7]);
});

for (const dtype of NUMERIC) {
  test(`every dtype: ${dtype} wraps, views with its natural TypedArray and round-trips through DLPack`, (t) => {
    const src = sample(dtype, 6);
    const x = Tensor.from(src, { dtype, shape: [2, 3] });
    t.is(x.dtype, dtype);
    t.is(x.byteLength, 6 * elementSize(dtype));
    const view = x.data();
    const expected: Record<string, Function> = { BOOL: Uint8Array, UINT8: Uint8Array, INT8: Int8Array, UINT16: Uint16Array, INT16: Int16Array,
      UINT32: Uint32Array, INT32: Int32Array, UINT64: BigUint64Array, INT64: BigInt64Array, FP16: Uint16Array,
      BF16: Uint16Array, FP32: Float32Array, FP64: Float64Array };
    t.true(view instanceof expected[dtype]!, `${dtype} is viewed as ${expected[dtype]!.name}`);
    t.true(sameBytes(view, src));
    for (const maxVersion of [undefined, [1, 0] as const]) {
      const y = Tensor.fromDlpack(x.toDlpack({ maxVersion }));
      t.is(y.dtype, dtype);
      t.deepEqual(y.shape, [2, 3]);
      t.true(sameBytes(y.data(), src));
      t.is(y.dataPtr, x.dataPtr, "the import points at the same memory: no copy");
      y.dispose();
    }
  });
}

test("the dtype is inferred from the TypedArray", (t) => {
  t.is(Tensor.from(new Float64Array(1)).dtype, "FP64");
  t.is(Tensor.from(new BigInt64Array(1)).dtype, "INT64");
  t.is(Tensor.from(new BigUint64Array(1)).dtype, "UINT64");
  t.is(Tensor.from(new Int16Array(1)).dtype, "INT16");
  t.is(Tensor.from(new Uint16Array(1)).dtype, "UINT16");
  t.is(Tensor.from(Buffer.from([1, 2])).dtype, "UINT8");
  t.is(Tensor.from(new ArrayBuffer(8)).dtype, "UINT8");
  t.is(Tensor.from(new ArrayBuffer(8), { dtype: "FP32" }).size, 2);
  throwsCode(t, () => Tensor.from(new DataView(new ArrayBuffer(4))), ErrorCode.DTYPE_UNSUPPORTED);
});

test("a Buffer slice is wrapped at its offset, not at the start of the pool", (t) => {
  const pool = Buffer.alloc(64);
  const slice = pool.subarray(16, 32);
  const x = Tensor.from(slice, { dtype: "FP32", shape: [4] });
  (x.data() as Float32Array)[0] = 1.5;
  t.is(pool.readFloatLE(16), 1.5);
});

test("0-d and 0-element tensors", (t) => {
  const scalar = Tensor.from(new Float32Array([3.5]), { shape: [] });
  t.deepEqual(scalar.shape, []);
  t.deepEqual(scalar.strides, []);
  t.is(scalar.size, 1);
  const s2 = Tensor.fromDlpack(scalar.toDlpack({ maxVersion: [1, 0] }));
  t.deepEqual(s2.shape, []);
  t.is(s2.data()[0], 3.5);

  const empty = Tensor.from(new Float32Array(0), { shape: [0, 3] });
  t.deepEqual(empty.shape, [0, 3]);
  t.is(empty.byteLength, 0);
  t.is(empty.data().length, 0);
  const e2 = Tensor.fromDlpack(empty.toDlpack());
  t.deepEqual(e2.shape, [0, 3]);
  t.is(e2.data().length, 0);

  const z = Tensor.zeros([4, 0], "INT64");
  t.is(z.byteLength, 0);
  t.is(z.data().length, 0);
});

test("Tensor.zeros and Tensor.empty allocate zero-filled native memory", (t) => {
  for (const dtype of NUMERIC) {
    const z = Tensor.zeros([3, 5], dtype, { name: "Z" });
    t.is(z.name, "Z");
    t.is(z.byteLength, 15 * elementSize(dtype));
    t.true(new Uint8Array(z.data().buffer).every((b) => b === 0));
    const e = Tensor.empty([2], dtype);
    t.true(new Uint8Array(e.data().buffer).every((b) => b === 0));
  }
  const x = Tensor.zeros([4], "FP32");
  (x.data() as Float32Array).set([1, 2, 3, 4]);
  t.deepEqual(Array.from(x.data() as Float32Array), [1, 2, 3, 4], "the cached view is stable");
});

test("native memory is 64-byte aligned", (t) => {
  for (const n of [1, 3, 1000]) {
    t.is(Tensor.zeros([n], "FP64").dataPtr % 64n, 0n);
  }
});

test("device, isCpu and dlpackDevice of a host tensor", (t) => {
  const x = Tensor.zeros([1], "FP32");
  t.deepEqual(x.device, { type: "cpu", id: 0 });
  t.true(x.isCpu());
  t.deepEqual(x.dlpackDevice(), [1, 0]);
  t.deepEqual(x.__dlpack_device__(), [1, 0]);
  t.is(x.toCpu(), x, "a host tensor is already on the CPU");
});

test("asTypedArray is data", (t) => {
  const x = Tensor.from(new Float32Array([1]));
  t.is(x.asTypedArray(), x.data());
});

test("withName shares memory and clone copies it", (t) => {
  const x = Tensor.zeros([2], "INT32", { name: "A" });
  const y = x.withName("B");
  t.is(y.name, "B");
  t.is(x.name, "A");
  (y.data() as Int32Array)[0] = 9;
  t.is((x.data() as Int32Array)[0], 9);
  const c = x.clone();
  (c.data() as Int32Array)[1] = 5;
  t.is((x.data() as Int32Array)[1], 0);
  t.is(c.name, "A");
});

test("BYTES tensors hold variable-length elements and have no DLPack form", (t) => {
  const x = Tensor.fromBytes(["ab", new Uint8Array([1, 2, 3]), ""], { name: "TEXT" });
  t.is(x.dtype, "BYTES");
  t.deepEqual(x.shape, [3]);
  t.is(x.byteLength, 5);
  t.deepEqual(Array.from(x.bytes()[0]!), [97, 98]);
  throwsCode(t, () => x.toDlpack(), ErrorCode.DTYPE_UNSUPPORTED);
  throwsCode(t, () => x.data(), ErrorCode.DTYPE_UNSUPPORTED);
  throwsCode(t, () => Tensor.zeros([1], "FP32").bytes(), ErrorCode.DTYPE_UNSUPPORTED);
  throwsCode(t, () => Tensor.fromBytes(["a"], { shape: [2] }), ErrorCode.SHAPE_MISMATCH);
  throwsCode(t, () => Tensor.from(new Uint8Array(1), { dtype: "BYTES" }), ErrorCode.DTYPE_UNSUPPORTED);
  t.deepEqual(Tensor.zeros([2], "BYTES").shape, [2]);
  t.is(x.withName("N").bytes()[0], x.bytes()[0]);
  t.not(x.clone().bytes()[0], x.bytes()[0]);
});

test("bad input gives coded errors, never a crash", (t) => {
  throwsCode(t, () => Tensor.from(new Float32Array(4), { shape: [3] }), ErrorCode.SHAPE_MISMATCH);
  throwsCode(t, () => Tensor.from(new Float32Array(4), { shape: [2, -2] }), ErrorCode.SHAPE_NEGATIVE);
  throwsCode(t, () => Tensor.from(new Float32Array(4), { shape: [1.5] }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.from(new Uint8Array(3), { dtype: "FP32" }), ErrorCode.SHAPE_MISMATCH);
  throwsCode(t, () => Tensor.from(new Uint8Array(8).subarray(1, 5), { dtype: "FP32" }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.from(new Float32Array(1), { dtype: "FP8" as never }), ErrorCode.DTYPE_UNSUPPORTED);
  throwsCode(t, () => Tensor.from("abc" as never), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.zeros([2 ** 40, 2 ** 40], "FP32"), ErrorCode.SHAPE_OVERFLOW);
  // A GPU this machine doesn't have: no CUDA at all, or no 100th device.
  throwsCode(t, () => Tensor.zeros([2], "FP32", { device: "cuda:99" }), cuda.isAvailable() ? ErrorCode.DEVICE_UNSUPPORTED : ErrorCode.CUDA_UNAVAILABLE);
  throwsCode(t, () => Tensor.from(new Float32Array(1), { name: 5 as never }), ErrorCode.INVALID_ARGUMENT);
});

test("dispose frees early, is idempotent, and later use is ERR_DISPOSED", (t) => {
  const x = Tensor.zeros([4], "FP32");
  const view = x.data();
  x.dispose();
  x.dispose();
  t.true(x.disposed);
  throwsCode(t, () => x.data(), ErrorCode.DISPOSED);
  throwsCode(t, () => x.toDlpack(), ErrorCode.DISPOSED);
  throwsCode(t, () => x.byteLength, ErrorCode.DISPOSED);
  throwsCode(t, () => x.withName("y"), ErrorCode.DISPOSED);
  view[0] = 1; // the view keeps its memory alive on its own
  t.is(view[0], 1);
  throwsCode(t, () => x.shape, ErrorCode.DISPOSED);
  throwsCode(t, () => x.dtype, ErrorCode.DISPOSED);
  t.is(x.toString(), "Tensor(disposed)");
});

test("using disposes at the end of the scope", (t) => {
  let escaped: Tensor;
  {
    using x = Tensor.zeros([1], "FP32");
    escaped = x;
    t.false(x.disposed);
  }
  t.true(escaped.disposed);
});

test("TensorBridgeError is a value and a type with a stable code", (t) => {
  const err = new TensorBridgeError(ErrorCode.NOT_CPU, "m");
  t.true(err instanceof Error);
  t.is(err.name, "TensorBridgeError");
  t.is(err.code, "ERR_NOT_CPU");
  t.true(TensorBridgeError.isKnownCode("ERR_DLPACK_CONSUMED"));
  t.false(TensorBridgeError.isKnownCode("ERR_NOPE"));
});

test("every native error code is known to the TS layer", (t) => {
  for (const code of debug.nativeErrorCodes()) {
    t.true(TensorBridgeError.isKnownCode(code), `${code} is missing from ErrorCode`);
  }
});

test("DTYPES lists every Triton dtype", (t) => {
  t.deepEqual([...DTYPES].sort(), [...NUMERIC, "BYTES"].sort());
});

test("toString describes the tensor", (t) => {
  t.is(Tensor.zeros([2, 3], "FP32", { name: "X" }).toString(), 'Tensor(FP32[2,3] cpu "X")');
});

test("JS memory gets a native handle only when something needs one", (t) => {
  const before = debug.liveHandles().tensors;
  const src = new Float32Array([1, 2, 3, 4]);
  const x = Tensor.from(src, { shape: [2, 2], readOnly: true });
  const y = x.withName("Y");
  t.is(x.byteLength, 16);
  t.true(x.isCpu());
  t.deepEqual(x.device, { type: "cpu", id: 0 });
  t.deepEqual(x.dlpackDevice(), [1, 0]);
  t.deepEqual(x.strides, [2, 1]);
  t.true(x.readOnly);
  t.is(x.to("cpu"), x);
  t.is(x.data().buffer, src.buffer);
  t.is(y.data().buffer, src.buffer, "withName shares the memory");
  t.is(debug.liveHandles().tensors, before, "no native handle yet");
  const address = x.dataPtr;
  t.is(debug.liveHandles().tensors, before + 1, "dataPtr made one");
  t.is(y.dataPtr, address, "both names point at the caller's array");
  const z = Tensor.fromDlpack(x.toDlpack({ maxVersion: [1, 0] }));
  t.true(z.readOnly, "the read-only flag reached the export");
  t.is(z.dataPtr, address);
});

test("at most 64 dimensions", (t) => {
  t.notThrows(() => Tensor.from(new Float32Array(1), { shape: Array.from({ length: 64 }, () => 1) }));
  throwsCode(t, () => Tensor.from(new Float32Array(1), { shape: Array.from({ length: 65 }, () => 1) }), ErrorCode.INVALID_ARGUMENT);
  throwsCode(t, () => Tensor.zeros(Array.from({ length: 65 }, () => 1), "FP32"), ErrorCode.INVALID_ARGUMENT);
});

test("Tensor.from: the shape is the tensor's own copy; data() is the natural class, the caller's array when it already is one", (t) => {
  const shape = [2, 2];
  const src = new Float32Array([1, 2, 3, 4]);
  const x = Tensor.from(src, { shape });
  shape[0] = 4;
  t.deepEqual(x.shape, [2, 2], "the caller's array was copied");
  t.true(Object.isFrozen(x.shape));
  t.is(x.data(), src, "a Float32Array for FP32 is its own view");
  const buf = Buffer.from([1, 2, 3]);
  const b = Tensor.from(buf).data();
  t.is(b.constructor, Uint8Array, "a Buffer is viewed as a plain Uint8Array");
  t.is(b.buffer, buf.buffer);
  t.is(b.byteOffset, buf.byteOffset);
  const half = Tensor.from(new Uint16Array([1, 2]), { dtype: "FP16" }).data();
  t.is(half.constructor, Uint16Array);
  const i32 = new Int32Array([7, 8, 9, 10]);
  const asU8 = Tensor.from(i32, { dtype: "UINT8", shape: [16] }).data();
  t.is(asU8.constructor, Uint8Array, "another dtype gets its own view over the same bytes");
  t.is(asU8.buffer, i32.buffer);
});

/**
 * `Tensor`: an n-dimensional array over host or device memory, exchanged with
 * other frameworks through DLPack without copying.
 * @module
 */

import { isMainThread } from "node:worker_threads";

import { DLPackCapsule } from "./capsule.js";
import { type DType, type TypedArray, checkDType, elementSize, inferDType, viewClass } from "./dtype.js";
import { ErrorCode, TensorBridgeError, rethrowNative } from "./errors.js";
import { NativeTensor, cudaIsAvailable, cudaStreamHandle } from "./native.js";

/** Where a tensor's memory lives. */
export interface Device {
  /** `"cpu"`, `"cuda"`, `"cuda_host"` (pinned host memory), … */
  readonly type: string;
  /** Device ordinal (0 for the CPU). */
  readonly id: number;
}

/** Options of `new Tensor(data, options)` and {@link Tensor.from}. */
export interface TensorOptions {
  /** Dimensions; defaults to `[length]` (a 1-d tensor over all the data). */
  shape?: readonly number[];
  /** Element type; inferred from the TypedArray when absent (UINT8 for an ArrayBuffer). */
  dtype?: DType;
  /** Tensor name, as Triton's `pb_utils.Tensor(name, …)`. */
  name?: string;
  /** Mark the tensor read-only in DLPack exports. @default false */
  readOnly?: boolean;
}

/** Options of {@link Tensor.empty} and {@link Tensor.zeros}. */
export interface AllocOptions {
  /** Tensor name. */
  name?: string;
  /**
   * Where to allocate: `"cpu"` (default), `"cuda"` (= `"cuda:0"`), `"cuda:N"`
   * (device memory), or `"cuda_host"` (page-locked host memory: readable with
   * {@link Tensor.data}, and the fastest source of a device copy).
   */
  device?: string;
}

/** Options of {@link Tensor.toDlpack}, after the Python array API's `__dlpack__`. */
export interface ToDlpackOptions {
  /**
   * Highest DLPack version the consumer understands. `[1, 0]` or higher gives
   * a versioned (1.x) capsule; absent or lower gives the legacy struct.
   */
  maxVersion?: readonly [number, number];
  /** `true`: always copy (flagged IS_COPIED). `false`: fail if a copy is needed. */
  copy?: boolean;
  /** Target device (`"cpu"`, `"cuda:0"`), or a `[deviceType, deviceId]` pair. */
  device?: string | readonly [number, number];
  /**
   * The consumer's stream, as in the array API's `__dlpack__(stream=…)`. For
   * a CUDA tensor: `undefined`/`null` (the legacy default stream), `1` (legacy
   * default), `2` (per-thread default), a `cudaStream_t` address (a bigint or
   * number), or `-1` (no synchronisation). tensorbridge records an event on
   * its own stream and makes the consumer's stream wait on it: no device-wide
   * sync. Host tensors take only `undefined`/`null` or `-1`; `0` is always
   * invalid (`ERR_INVALID_ARGUMENT`).
   */
  stream?: number | bigint | null;
}

/** Anything `Tensor.fromDlpack` accepts. */
export type DlpackSource =
  | DLPackCapsule
  | {
      /** Exports the object as a DLPack capsule (a tensorbridge `Tensor`). */
      toDlpack(options?: ToDlpackOptions): DLPackCapsule;
    }
  | {
      /** Exports the object as a DLPack capsule (the Python array API's name). */
      __dlpack__(options?: ToDlpackOptions): DLPackCapsule;
    };

/** A tensor handed to another thread by {@link Tensor.transfer}: a plain, cloneable object. */
export interface TransferredTensor {
  /** Marks the object as a tensorbridge transfer. */
  readonly kind: "tensorbridge.tensor";
  /** `DLManagedTensorVersioned*` whose ownership travels with the message. */
  readonly address: bigint;
  /** The tensor's name, if any. */
  readonly name: string | undefined;
}

/** DLPack device type numbers of the device kinds tensorbridge names. */
const DEVICE_TYPES: Readonly<Record<string, number>> = {
  cpu: 1,
  cuda: 2,
  cuda_host: 3,
  opencl: 4,
  vulkan: 7,
  metal: 8,
  vpi: 9,
  rocm: 10,
  rocm_host: 11,
  ext_dev: 12,
  cuda_managed: 13,
  oneapi: 14,
  webgpu: 15,
  hexagon: 16,
  maia: 17,
  trn: 18,
};

const INTERNAL = Symbol("tensorbridge.tensor.internal");

interface InternalInit {
  readonly [INTERNAL]: true;
  readonly native: NativeTensor | undefined;
  readonly source: TypedArray | undefined;
  /** For JS memory not yet handed to the binding: its read-only flag. */
  readonly pendingReadOnly?: boolean;
  readonly bytes: readonly Uint8Array[] | undefined;
  readonly shape: readonly number[] | undefined;
  readonly dtype: DType | undefined;
  readonly name: string | undefined;
}

/** {@link Tensor.fromChecked}'s init, reused: host memory, its native handle still to be made. */
const CHECKED_INIT: { -readonly [K in keyof InternalInit]: InternalInit[K] } = {
  [INTERNAL]: true,
  native: undefined,
  source: undefined,
  pendingReadOnly: false,
  bytes: undefined,
  shape: undefined,
  dtype: undefined,
  name: undefined,
};

function fail(code: string, message: string): never {
  throw new TensorBridgeError(code, message);
}

/** Most dimensions a tensor may have (NumPy's limit, as in the core). */
const MAX_NDIM = 64;

function checkShape(shape: unknown): number[] {
  if (!Array.isArray(shape)) fail(ErrorCode.INVALID_ARGUMENT, "shape must be an array of integers");
  if (shape.length > MAX_NDIM) {
    fail(ErrorCode.INVALID_ARGUMENT, `a tensor has at most ${MAX_NDIM} dimensions, got ${shape.length}`);
  }
  // A plain indexed loop and one copy: this runs for every tensor a model makes.
  const copy: number[] = [];
  for (let axis = 0; axis < shape.length; axis++) {
    const d: unknown = shape[axis];
    if (!Number.isSafeInteger(d)) {
      fail(ErrorCode.INVALID_ARGUMENT, `shape[${axis}] is ${String(d)}; dimensions must be integers`);
    }
    if ((d as number) < 0) {
      fail(ErrorCode.SHAPE_NEGATIVE, `shape[${axis}] is ${d as number}; dimensions must be >= 0`);
    }
    copy.push(d as number);
  }
  return copy;
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function checkName(name: unknown): string | undefined {
  if (name === undefined) return undefined;
  if (typeof name !== "string") fail(ErrorCode.INVALID_ARGUMENT, "a tensor name must be a string");
  return name;
}

/** The options of a call that passed none (shared, so hot paths allocate nothing). */
const NO_OPTIONS: Readonly<Record<string, never>> = Object.freeze({});

function versionAtLeast(v: readonly [number, number] | undefined, major: number, minor: number): boolean {
  if (v === undefined) return false;
  if (!Array.isArray(v) || v.length !== 2 || !v.every(Number.isInteger)) {
    fail(ErrorCode.INVALID_ARGUMENT, "maxVersion must be a [major, minor] pair of integers");
  }
  return v[0] > major || (v[0] === major && v[1] >= minor);
}

/** The array API's stream value as the binding takes it. */
function streamArgument(stream: number | bigint | null | undefined): bigint | undefined {
  if (stream === undefined || stream === null) return undefined;
  if (typeof stream === "bigint") return stream;
  if (typeof stream !== "number" || !Number.isSafeInteger(stream)) {
    fail(ErrorCode.INVALID_ARGUMENT, `stream must be an integer or a bigint, got ${String(stream)}`);
  }
  return BigInt(stream);
}

/**
 * `"cuda"` → `"cuda:0"`, `"cpu:0"` → `"cpu"`, `"cuda_host:0"` → `"cuda_host"`;
 * other names as given (the core parses and checks them).
 */
function normalizeDevice(device: unknown): string {
  if (typeof device !== "string") {
    fail(ErrorCode.INVALID_ARGUMENT, 'device must be a string such as "cpu", "cuda", "cuda:1" or "cuda_host"');
  }
  if (device === "cuda") return "cuda:0";
  if (device === "cpu:0" || device === "cuda_host:0") return device.slice(0, -2);
  return device;
}

function deviceString(device: string | readonly [number, number]): string {
  if (typeof device === "string") return device;
  if (!Array.isArray(device) || device.length !== 2) {
    fail(ErrorCode.INVALID_ARGUMENT, 'device must be "cpu", "cuda:N" or a [deviceType, deviceId] pair');
  }
  const [type, id] = device;
  const name = Object.keys(DEVICE_TYPES).find((k) => DEVICE_TYPES[k] === type);
  if (name === undefined) fail(ErrorCode.DEVICE_UNSUPPORTED, `DLPack device type ${type} is not supported`);
  return name === "cpu" ? "cpu" : `${name}:${id}`;
}

/**
 * An n-dimensional array with a dtype, a shape and a device.
 *
 * Host tensors expose their bytes as a zero-copy TypedArray ({@link data}).
 * Any tensor can be handed to another framework with {@link toDlpack} and
 * taken from one with {@link Tensor.fromDlpack}, without copying; only
 * C-order contiguous tensors are accepted, as in Triton's Python backend.
 *
 * Memory is released when the tensor is garbage collected, or at once by
 * {@link dispose} (also `using t = Tensor.zeros(…)`).
 *
 * @example
 * const t = Tensor.from(new Float32Array([1, 2, 3, 4]), { shape: [2, 2], name: "INPUT0" });
 * t.data()[0] = 5; // writes the caller's array: no copy was made
 */
export class Tensor {
  #native: NativeTensor | undefined;
  // JS memory gets its native handle only when something needs one (DLPack,
  // dataPtr, copies): a model reading and writing TypedArrays never pays for
  // it. Defined while the handle is still to be made.
  #pendingReadOnly: boolean | undefined;
  #source: TypedArray | undefined;
  #bytes: readonly Uint8Array[] | undefined;
  #view: TypedArray | undefined;
  // Read from the native handle on first use: most imported tensors are
  // passed along without anyone asking for their shape.
  #shape: readonly number[] | undefined;
  #dtype: DType | undefined;
  readonly #name: string | undefined;
  #disposed = false;

  /**
   * Wraps `data` without copying; the tensor keeps it alive. Same as
   * {@link Tensor.from}.
   * @throws {TensorBridgeError} `ERR_SHAPE_MISMATCH` if the length doesn't fit
   *   the shape, `ERR_INVALID_ARGUMENT` for misaligned or detached data.
   */
  constructor(data: ArrayBufferView | ArrayBuffer | SharedArrayBuffer, options?: TensorOptions);
  /** @internal */
  constructor(data: InternalInit);
  constructor(data: ArrayBufferView | ArrayBufferLike | InternalInit, options: TensorOptions = {}) {
    if (typeof data === "object" && data !== null && INTERNAL in data) {
      this.#native = data.native;
      this.#pendingReadOnly = data.pendingReadOnly;
      this.#source = data.source;
      this.#bytes = data.bytes;
      // A frozen shape cannot change under the tensor: kept as it is (the decoder's plans share one).
      this.#shape = data.shape === undefined ? undefined : Object.isFrozen(data.shape) ? data.shape : Object.freeze(data.shape.slice());
      this.#dtype = data.dtype;
      this.#name = data.name;
      return;
    }
    this.#name = this.#wrapHost(data, options);
  }

  /** The constructor's work for caller memory; returns the checked name (a readonly field). */
  #wrapHost(data: ArrayBufferView | ArrayBufferLike, options: TensorOptions): string | undefined {
    if (typeof options !== "object" || options === null) {
      fail(ErrorCode.INVALID_ARGUMENT, "tensor options must be an object");
    }
    let view: ArrayBufferView;
    if (ArrayBuffer.isView(data)) {
      view = data;
    } else if (data instanceof ArrayBuffer || (typeof SharedArrayBuffer === "function" && data instanceof SharedArrayBuffer)) {
      view = new Uint8Array(data);
    } else {
      fail(ErrorCode.INVALID_ARGUMENT, "tensor data must be a TypedArray, Buffer, DataView or ArrayBuffer");
    }
    const dtype = options.dtype === undefined ? inferDType(view) : checkDType(options.dtype);
    if (dtype === "BYTES") {
      fail(ErrorCode.DTYPE_UNSUPPORTED, "BYTES tensors hold variable-length elements; use Tensor.fromBytes()");
    }
    const size = elementSize(dtype);
    if (view.byteOffset % size !== 0) {
      fail(
        ErrorCode.INVALID_ARGUMENT,
        `the data starts at byte ${view.byteOffset}, not a multiple of ${dtype}'s ${size}-byte element size; copy it to an aligned array first`,
      );
    }
    if (view.byteLength % size !== 0) {
      fail(
        ErrorCode.SHAPE_MISMATCH,
        `${view.byteLength} bytes is not a whole number of ${dtype} elements (${size} bytes each)`,
      );
    }
    const shape = options.shape === undefined ? [view.byteLength / size] : checkShape(options.shape);
    const name = checkName(options.name);
    if (product(shape) * size !== view.byteLength) {
      fail(
        ErrorCode.SHAPE_MISMATCH,
        `shape [${shape.join(", ")}] of ${dtype} needs ${product(shape) * size} bytes, the data has ${view.byteLength}`,
      );
    }
    const Ctor = viewClass(dtype)!;
    // The caller's array is the view when it already is one of the natural
    // class (not a subclass such as Buffer): no second TypedArray.
    this.#source = view.constructor === Ctor ? (view as TypedArray) : new Ctor(view.buffer, view.byteOffset, view.byteLength / size);
    this.#pendingReadOnly = options.readOnly === true;
    this.#shape = Object.freeze(shape); // `shape` is a private copy
    this.#dtype = dtype;
    return name;
  }

  /** @internal The native handle of `t` (made now for JS memory); undefined for BYTES. */
  static nativeOf(t: Tensor): NativeTensor | undefined {
    return t.#live();
  }

  /**
   * @internal Wraps a native tensor made by the binding; `dtype` and a
   * frozen `shape`, when the caller knows them (they must be the handle's),
   * spare asking the binding.
   */
  static fromNative(native: NativeTensor, name?: string, dtype?: DType, shape?: readonly number[]): Tensor {
    return new Tensor({ [INTERNAL]: true, native, source: undefined, bytes: undefined, shape, dtype, name });
  }

  /**
   * @internal A host tensor over `source`, whose dtype (`source` is of its
   * natural class), shape (non-negative integers whose product is
   * `source.length`) and name the caller has already checked: the server's
   * request decoders, which build a few tensors per request. None of
   * {@link Tensor.from}'s checks or copies run; a frozen `shape` is kept as
   * it is. A shape of more dimensions than a tensor may have goes through
   * Tensor.from, which refuses it in its words.
   */
  static fromChecked(source: TypedArray, dtype: DType, shape: readonly number[], name: string | undefined): Tensor {
    if (shape.length > MAX_NDIM) return new Tensor(source, { shape, dtype, name });
    // One init object, refilled per call (construction is synchronous): no allocation but the tensor.
    const init = CHECKED_INIT;
    init.source = source;
    init.dtype = dtype;
    init.shape = shape;
    init.name = name;
    const t = new Tensor(init);
    init.source = undefined;
    init.shape = undefined;
    return t;
  }

  /**
   * Wraps a TypedArray, Buffer or ArrayBuffer without copying. Writes through
   * {@link Tensor.data} are writes to `data`, and the other way round.
   *
   * Do not transfer or detach the underlying ArrayBuffer while the tensor (or
   * an export of it) is alive: the tensor points at its memory.
   * @throws {TensorBridgeError} `ERR_SHAPE_MISMATCH`, `ERR_DTYPE_UNSUPPORTED`, `ERR_INVALID_ARGUMENT`.
   */
  static from(data: ArrayBufferView | ArrayBuffer | SharedArrayBuffer, options?: TensorOptions): Tensor {
    return new Tensor(data, options);
  }

  /**
   * A new tensor in native memory on `options.device` (host memory by
   * default). The memory is zero-filled, so `empty` and {@link zeros} differ
   * only in intent.
   * @throws {TensorBridgeError} `ERR_SHAPE_NEGATIVE`, `ERR_SHAPE_OVERFLOW`,
   *   `ERR_CUDA_UNAVAILABLE` (a CUDA device without CUDA), `ERR_DEVICE_UNSUPPORTED`
   *   (an unknown device or a GPU this machine lacks), `ERR_ALLOCATION`.
   * @example
   * const x = Tensor.empty([1024, 1024], "FP32", { device: "cuda:0" });
   */
  static empty(shape: readonly number[], dtype: DType, options: AllocOptions = {}): Tensor {
    return Tensor.zeros(shape, dtype, options);
  }

  /**
   * A new zero-filled tensor on `options.device`: 256-byte aligned host memory
   * (`"cpu"`, the default), device memory (`"cuda"`, `"cuda:N"`), or pinned
   * host memory (`"cuda_host"`).
   * @throws {TensorBridgeError} as {@link Tensor.empty}.
   */
  static zeros(shape: readonly number[], dtype: DType, options: AllocOptions = {}): Tensor {
    const dims = checkShape(shape);
    const type = checkDType(dtype);
    const name = checkName(options.name);
    const device = normalizeDevice(options.device ?? "cpu");
    if (type === "BYTES") {
      if (device !== "cpu") {
        fail(ErrorCode.DTYPE_UNSUPPORTED, `BYTES tensors live in host memory only, so they can't be allocated on ${device}`);
      }
      return Tensor.fromBytes(Array.from({ length: product(dims) }, () => new Uint8Array(0)), { shape: dims, name });
    }
    let native: NativeTensor;
    try {
      native = NativeTensor.zeros(dims, type, device);
    } catch (e) {
      rethrowNative(e);
    }
    return new Tensor({ [INTERNAL]: true, native, source: undefined, bytes: undefined, shape: dims, dtype: type, name });
  }

  /**
   * A BYTES tensor (Triton's variable-length strings), from byte strings or
   * JS strings (encoded as UTF-8). BYTES tensors live in JS only: they have
   * no DLPack form, as in Triton.
   * @throws {TensorBridgeError} `ERR_SHAPE_MISMATCH` when the shape doesn't hold the element count.
   */
  static fromBytes(elements: ReadonlyArray<Uint8Array | string>, options: Omit<TensorOptions, "dtype"> = {}): Tensor {
    if (!Array.isArray(elements)) fail(ErrorCode.INVALID_ARGUMENT, "BYTES elements must be an array");
    const encoder = new TextEncoder();
    const bytes = elements.map((e, i) => {
      if (typeof e === "string") return encoder.encode(e);
      if (e instanceof Uint8Array) return e;
      return fail(ErrorCode.INVALID_ARGUMENT, `BYTES element ${i} must be a Uint8Array or a string`);
    });
    const shape = options.shape === undefined ? [bytes.length] : checkShape(options.shape);
    if (product(shape) !== bytes.length) {
      fail(ErrorCode.SHAPE_MISMATCH, `shape [${shape.join(", ")}] holds ${product(shape)} elements, got ${bytes.length}`);
    }
    const name = checkName(options.name);
    return new Tensor({ [INTERNAL]: true, native: undefined, source: undefined, bytes, shape, dtype: "BYTES", name });
  }

  /**
   * Takes a tensor from DLPack without copying: a {@link DLPackCapsule}, or an
   * object with `toDlpack()` or `__dlpack__()` (asked for a versioned capsule).
   * Consumes the capsule.
   * @throws {TensorBridgeError} `ERR_DLPACK_NOT_CONTIGUOUS` for non C-order
   *   input (e.g. `x[::2]`), `ERR_DLPACK_CONSUMED` for a used capsule, and the
   *   other `ERR_DLPACK_*` codes for a malformed tensor.
   */
  static fromDlpack(source: DlpackSource, options: { name?: string } = NO_OPTIONS): Tensor {
    const capsule = Tensor.#capsuleOf(source);
    let native: NativeTensor;
    try {
      native = capsule.take();
    } catch (e) {
      rethrowNative(e);
    }
    return Tensor.fromNative(native, checkName(options.name));
  }

  static #capsuleOf(source: DlpackSource): DLPackCapsule {
    if (source instanceof DLPackCapsule) return source;
    let made: unknown;
    if (typeof source === "object" && source !== null) {
      const options: ToDlpackOptions = { maxVersion: [1, 3] };
      const stream = Tensor.#consumerStream(source);
      if (stream !== undefined) options.stream = stream;
      if ("toDlpack" in source && typeof source.toDlpack === "function") {
        made = source.toDlpack(options);
      } else if ("__dlpack__" in source && typeof source.__dlpack__ === "function") {
        made = source.__dlpack__(options);
      }
    }
    if (!(made instanceof DLPackCapsule)) {
      fail(
        ErrorCode.INVALID_ARGUMENT,
        "fromDlpack needs a DLPackCapsule, or an object whose toDlpack()/__dlpack__() returns one",
      );
    }
    return made;
  }

  /**
   * The array API consumer's half of the stream protocol: for a producer on a
   * CUDA device (its `__dlpack_device__()` or `dlpackDevice()` says so), the
   * handle of tensorbridge's stream on that device, so that the producer makes
   * it wait for its pending work before the tensor is used here.
   */
  static #consumerStream(source: object): bigint | undefined {
    const probe = (source as { __dlpack_device__?: unknown; dlpackDevice?: unknown });
    const fn = typeof probe.__dlpack_device__ === "function" ? probe.__dlpack_device__ : probe.dlpackDevice;
    if (typeof fn !== "function") return undefined;
    const device: unknown = fn.call(source);
    if (!Array.isArray(device) || device[0] !== DEVICE_TYPES.cuda || !Number.isInteger(device[1])) return undefined;
    if (!cudaIsAvailable()) return undefined; // the import will say ERR_CUDA_UNAVAILABLE
    try {
      return cudaStreamHandle(`cuda:${device[1] as number}`);
    } catch (e) {
      rethrowNative(e);
    }
  }

  /**
   * Rebuilds a tensor sent from another thread with {@link transfer}. Takes
   * ownership of the transferred tensor; call it once per message.
   * @throws {TensorBridgeError} `ERR_INVALID_ARGUMENT` for anything else than a transfer object.
   */
  static fromTransferred(message: TransferredTensor): Tensor {
    if (
      typeof message !== "object" ||
      message === null ||
      message.kind !== "tensorbridge.tensor" ||
      typeof message.address !== "bigint"
    ) {
      fail(ErrorCode.INVALID_ARGUMENT, "not a tensor transfer object; make one with tensor.transfer()");
    }
    const capsule = DLPackCapsule.fromAddress(message.address, { versioned: true });
    return Tensor.fromDlpack(capsule, { name: message.name });
  }

  /** Throws ERR_DISPOSED after dispose(); whether the native handle is still to be made. */
  #lazy(): boolean {
    if (this.#disposed) {
      fail(ErrorCode.DISPOSED, "this tensor was disposed; create a new one, or dispose it only when done");
    }
    return this.#pendingReadOnly !== undefined;
  }

  /** The native handle (made now for JS memory); undefined for BYTES. */
  #live(): NativeTensor | undefined {
    if (this.#lazy()) {
      const src = this.#source!;
      try {
        this.#native = NativeTensor.fromBytes(
          new Uint8Array(src.buffer, src.byteOffset, src.byteLength),
          this.#shape!.slice(),
          this.#dtype!,
          this.#pendingReadOnly!,
        );
      } catch (e) {
        rethrowNative(e);
      }
      this.#pendingReadOnly = undefined;
    }
    return this.#native;
  }

  #hostNative(what: string): NativeTensor {
    const native = this.#live();
    if (native === undefined) {
      fail(ErrorCode.DTYPE_UNSUPPORTED, `BYTES tensors have no ${what}; use tensor.bytes()`);
    }
    return native;
  }

  /** The tensor's name (Triton input/output name), if it has one. */
  get name(): string | undefined {
    return this.#name;
  }

  /**
   * Dimensions (a frozen array).
   * @throws {TensorBridgeError} `ERR_DISPOSED` after {@link dispose}.
   */
  get shape(): readonly number[] {
    this.#lazy(); // throws once disposed
    if (this.#shape === undefined) {
      const native = this.#live();
      try {
        this.#shape = Object.freeze(native!.shape);
      } catch (e) {
        rethrowNative(e);
      }
    }
    return this.#shape;
  }

  /**
   * Element type, by Triton name.
   * @throws {TensorBridgeError} `ERR_DISPOSED` after {@link dispose}.
   */
  get dtype(): DType {
    this.#lazy(); // throws once disposed
    if (this.#dtype === undefined) {
      const native = this.#live();
      try {
        this.#dtype = native!.dtype as DType;
      } catch (e) {
        rethrowNative(e);
      }
    }
    return this.#dtype;
  }

  /** Strides in elements (always C-order for tensorbridge tensors). */
  get strides(): number[] {
    const native = this.#lazy() ? undefined : this.#live();
    if (native === undefined) {
      const strides: number[] = [];
      let acc = 1;
      for (let i = this.shape.length - 1; i >= 0; i--) {
        strides.unshift(acc);
        acc *= this.shape[i]!;
      }
      return strides;
    }
    return native.strides;
  }

  /** Number of elements. */
  get size(): number {
    return product(this.shape);
  }

  /** Size of the data in bytes (for BYTES, the sum of the element lengths). */
  get byteLength(): number {
    if (this.#lazy()) return this.#source!.byteLength;
    const native = this.#live();
    if (native === undefined) return this.#bytes!.reduce((n, b) => n + b.byteLength, 0);
    return native.byteLength;
  }

  /** Where the memory lives. */
  get device(): Device {
    if (this.#lazy()) return { type: "cpu", id: 0 };
    const native = this.#live();
    if (native === undefined) return { type: "cpu", id: 0 };
    return { type: native.deviceKind, id: native.deviceId };
  }

  /**
   * Address of the first element (like PyTorch's `data_ptr()`), for native
   * interop and zero-copy checks. 0n for BYTES tensors.
   */
  get dataPtr(): bigint {
    return this.#live()?.dataAddress ?? 0n;
  }

  /** Whether exports are flagged read-only. */
  get readOnly(): boolean {
    if (this.#lazy()) return this.#pendingReadOnly!;
    return this.#live()?.readOnly ?? false;
  }

  /** Whether {@link dispose} was called. */
  get disposed(): boolean {
    return this.#disposed;
  }

  /** Whether the host can read the memory directly (Triton's `Tensor.is_cpu()`). */
  isCpu(): boolean {
    if (this.#lazy()) return true;
    return this.#live()?.isCpu ?? true;
  }

  /** `[deviceType, deviceId]` as DLPack numbers (the array API's `__dlpack_device__`). */
  dlpackDevice(): [number, number] {
    if (this.#lazy()) return [1, 0];
    const native = this.#live();
    if (native === undefined) return [1, 0];
    return [native.deviceType, native.deviceId];
  }

  /** Alias of {@link dlpackDevice}, for code written against the array API. */
  __dlpack_device__(): [number, number] {
    return this.dlpackDevice();
  }

  /**
   * A zero-copy TypedArray over the host memory: `Float32Array` for FP32,
   * `Uint16Array` for FP16/BF16 (raw bits), `Uint8Array` for BOOL,
   * `BigInt64Array` for INT64, … The view stays valid after `dispose()`: it
   * keeps the memory alive itself.
   * @throws {TensorBridgeError} `ERR_NOT_CPU` for device memory (call `toCpu()`),
   *   `ERR_DTYPE_UNSUPPORTED` for BYTES (use `bytes()`), `ERR_DISPOSED`.
   */
  data(): TypedArray {
    if (this.#lazy()) return this.#source!;
    const native = this.#hostNative("numeric view");
    if (this.#view !== undefined) return this.#view;
    if (this.#source !== undefined) return (this.#view = this.#source);
    if (!native.hasView && !native.isCpu) {
      fail(ErrorCode.NOT_CPU, `this tensor is on ${native.deviceKind}:${native.deviceId}; call toCpu() to read it on the host`);
    }
    let buffer: ArrayBuffer;
    try {
      buffer = native.view();
    } catch (e) {
      rethrowNative(e);
    }
    const Ctor = viewClass(this.dtype)!;
    // The buffer may be longer: another tensor's view from the same pointer (one per thread). A known
    // shape gives the length without asking the binding (a dense tensor: its elements are its size).
    const length = this.#shape !== undefined ? product(this.#shape) : native.byteLength / Ctor.BYTES_PER_ELEMENT;
    return (this.#view = new Ctor(buffer, 0, length));
  }

  /** Alias of {@link data}. */
  asTypedArray(): TypedArray {
    return this.data();
  }

  /**
   * The elements of a BYTES tensor (no copy).
   * @throws {TensorBridgeError} `ERR_DTYPE_UNSUPPORTED` for other dtypes.
   */
  bytes(): readonly Uint8Array[] {
    this.#live();
    if (this.#bytes === undefined) {
      fail(ErrorCode.DTYPE_UNSUPPORTED, `bytes() is for BYTES tensors; this one is ${this.dtype}, use data()`);
    }
    return this.#bytes;
  }

  /** A tensor over the same memory with another name (no copy). */
  withName(name: string): Tensor {
    const checked = checkName(name);
    if (this.#lazy()) {
      return new Tensor({
        [INTERNAL]: true,
        native: undefined,
        pendingReadOnly: this.#pendingReadOnly,
        source: this.#source,
        bytes: undefined,
        shape: this.#shape,
        dtype: this.#dtype,
        name: checked,
      });
    }
    const native = this.#live();
    if (native === undefined) return Tensor.fromBytes(this.#bytes!, { shape: this.shape, name: checked });
    // The same tensor under another name: one more holder of this handle.
    return new Tensor({
      [INTERNAL]: true,
      native: native.retain(),
      source: this.#source,
      bytes: undefined,
      shape: this.#shape,
      dtype: this.#dtype,
      name: checked,
    });
  }

  /** A deep copy in fresh native memory, with the same name. */
  clone(): Tensor {
    const native = this.#live();
    if (native === undefined) return Tensor.fromBytes(this.#bytes!.map((b) => b.slice()), { shape: this.shape, name: this.#name });
    let copy: NativeTensor;
    try {
      copy = native.deepCopy();
    } catch (e) {
      rethrowNative(e);
    }
    return Tensor.fromNative(copy, this.#name);
  }

  /**
   * This tensor in host memory: itself when the host can already read it
   * (`cpu`, `cuda_host`), else a copy in ordinary host memory (device →
   * host). The copy is complete when
   * this returns and keeps the name.
   * @throws {TensorBridgeError} `ERR_CUDA_UNAVAILABLE`, `ERR_DEVICE_UNSUPPORTED`
   *   (memory of a non-CUDA device), `ERR_ALLOCATION`, `ERR_CUDA`, `ERR_DISPOSED`.
   * @example
   * const host = gpuTensor.toCpu();
   * console.log(host.data());
   */
  toCpu(): Tensor {
    if (this.isCpu()) return this;
    return this.#copyOn("cpu");
  }

  /**
   * This tensor on GPU `id` (default 0): itself when it is already there,
   * else a copy (host → device, or device → device). Complete when this
   * returns; keeps the name.
   * @param id the CUDA device ordinal
   * @throws {TensorBridgeError} `ERR_CUDA_UNAVAILABLE`, `ERR_DEVICE_UNSUPPORTED`
   *   (a GPU this machine lacks), `ERR_DTYPE_UNSUPPORTED` (BYTES),
   *   `ERR_ALLOCATION`, `ERR_CUDA`, `ERR_DISPOSED`.
   * @example
   * const x = Tensor.from(new Float32Array([1, 2, 3])).cuda();
   * x.isCpu(); // false
   */
  cuda(id = 0): Tensor {
    if (!Number.isSafeInteger(id) || id < 0) fail(ErrorCode.INVALID_ARGUMENT, `a CUDA device id is an integer >= 0, got ${String(id)}`);
    const native = this.#hostNative("device copy");
    if (native.deviceKind === "cuda" && native.deviceId === id) return this;
    return this.#copyOn(`cuda:${id}`);
  }

  /**
   * This tensor on `device` (`"cpu"`, `"cuda"`, `"cuda:N"`, `"cuda_host"`):
   * itself when it is already there, else a copy.
   * @throws {TensorBridgeError} as {@link cuda}.
   */
  to(device: string): Tensor {
    const target = normalizeDevice(device);
    if (target === "cpu" && this.#lazy()) return this;
    const native = this.#live();
    if (native === undefined) {
      if (target === "cpu") return this;
      fail(ErrorCode.DTYPE_UNSUPPORTED, "BYTES tensors live in host memory only");
    }
    const here = native.deviceKind === "cpu" || native.deviceKind === "cuda_host" ? native.deviceKind : `${native.deviceKind}:${native.deviceId}`;
    if (here === target) return this;
    return this.#copyOn(target);
  }

  #copyOn(device: string): Tensor {
    const native = this.#hostNative("device copy");
    let copy: NativeTensor;
    try {
      copy = native.toDevice(device);
    } catch (e) {
      rethrowNative(e);
    }
    return Tensor.fromNative(copy, this.#name);
  }

  /**
   * Copies this tensor's elements into `destination`, which must have the same
   * dtype and shape, between any pair of host memory and CUDA devices. The
   * destination's memory is overwritten in place (everyone sharing it sees the
   * new values); complete when this returns.
   * @param destination a writable tensor of the same dtype and shape
   * @returns `destination`
   * @throws {TensorBridgeError} `ERR_INVALID_ARGUMENT` (another dtype or shape,
   *   a read-only destination), `ERR_CUDA_UNAVAILABLE`, `ERR_CUDA`, `ERR_DISPOSED`.
   * @example
   * const staging = Tensor.empty([1 << 20], "FP32", { device: "cuda_host" });
   * staging.copyTo(Tensor.empty([1 << 20], "FP32", { device: "cuda:0" }));
   */
  copyTo(destination: Tensor): Tensor {
    if (!(destination instanceof Tensor)) fail(ErrorCode.INVALID_ARGUMENT, "copyTo needs a Tensor as its destination");
    const native = this.#hostNative("device copy");
    const target = destination.#hostNative("device copy");
    try {
      native.copyTo(target);
    } catch (e) {
      rethrowNative(e);
    }
    return destination;
  }

  /**
   * Exports the tensor as a DLPack capsule, without copying unless asked to
   * (`copy: true`, or a `device` other than the tensor's: then a copy, flagged
   * IS_COPIED). The capsule keeps the memory alive; the tensor stays usable.
   * For CUDA tensors, `stream` names the consumer's stream, which is made to
   * wait for tensorbridge's pending work (see {@link ToDlpackOptions.stream}).
   * @throws {TensorBridgeError} `ERR_DTYPE_UNSUPPORTED` for BYTES,
   *   `ERR_COPY_REQUIRED` when `copy: false` can't be honoured,
   *   `ERR_INVALID_ARGUMENT` for a bad stream or version,
   *   `ERR_CUDA_UNAVAILABLE` for a device copy without CUDA, `ERR_CUDA`.
   * @example
   * const capsule = gpuTensor.toDlpack({ maxVersion: [1, 3], stream: consumerStreamHandle });
   */
  toDlpack(options: ToDlpackOptions = NO_OPTIONS): DLPackCapsule {
    const native = this.#live();
    if (native === undefined) {
      fail(ErrorCode.DTYPE_UNSUPPORTED, "BYTES tensors have no DLPack form (as in Triton); send them as BYTES");
    }
    const stream = streamArgument(options.stream);
    const versioned = versionAtLeast(options.maxVersion, 1, 0);
    const device = options.device === undefined ? undefined : deviceString(options.device);
    try {
      const prepared = native.prepareExport(versioned, options.copy, device, stream);
      return DLPackCapsule.prepared(prepared, prepared === native, versioned);
    } catch (e) {
      rethrowNative(e);
    }
  }

  /** Alias of {@link toDlpack}, for code written against the array API. */
  __dlpack__(options: ToDlpackOptions = {}): DLPackCapsule {
    return this.toDlpack(options);
  }

  /**
   * Packs the tensor for `postMessage` to another thread: no bytes are
   * copied. The receiver must call {@link Tensor.fromTransferred} exactly
   * once; this tensor stays usable (both share the memory).
   *
   * One exception: in a worker thread, a tensor over that worker's own JS
   * memory (`Tensor.from(typedArray)`) is copied into native memory first.
   * A worker's `ArrayBuffer`s are freed with the worker, whatever still
   * points at them, so the receiver could otherwise read freed memory once
   * the worker ends. The main thread's JS memory, native memory and imported
   * memory cross without a copy. (A tensor imported through a C struct
   * address of such memory in the same worker is not recognised: transfer
   * the original.)
   */
  transfer(): TransferredTensor {
    const copy = !isMainThread && (this.#source !== undefined || this.#native?.jsMemory === true);
    const capsule = this.toDlpack({ maxVersion: [1, 3], ...(copy ? { copy: true } : {}) });
    return { kind: "tensorbridge.tensor", address: capsule.release(), name: this.#name };
  }

  /**
   * Releases this tensor's hold on its memory now. Idempotent. Views returned
   * by {@link data} and exported capsules keep their own hold.
   */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    this.#native?.drop();
    this.#native = undefined;
    this.#pendingReadOnly = undefined;
    this.#source = undefined;
    this.#view = undefined;
    this.#bytes = undefined;
  }

  /** Same as {@link dispose}, so that `using t = …` works. */
  [Symbol.dispose](): void {
    this.dispose();
  }

  /** @internal */
  get [Symbol.toStringTag](): string {
    return "Tensor";
  }

  /** A short description, e.g. `Tensor(FP32[2,2] cpu "INPUT0")`. */
  toString(): string {
    const name = this.#name === undefined ? "" : ` ${JSON.stringify(this.#name)}`;
    if (this.#disposed) return `Tensor(disposed${name})`;
    const { type, id } = this.device;
    const where = id || type === "cuda" ? `${type}:${id}` : type;
    return `Tensor(${this.dtype}[${this.shape.join(",")}] ${where}${name})`;
  }
}

/**
 * The generated native binding (`index.js` at the package root, made by
 * `napi build`) and the small JS classes over its handles. Only this module
 * imports the binding, so the rest of `src/` sees one typed surface.
 *
 * The binding hands out numeric handles instead of napi class instances: a
 * napi object costs about 1 µs to create, a JS object and a
 * `FinalizationRegistry` entry about 0.1 µs (see `crates/node/src/handles.rs`).
 * The registries below free what users forget; `dispose()` frees early. Both
 * paths are idempotent and ids are never reused, so a late finalizer can't
 * free anything else. Several tensors may share one `NativeTensor` (a
 * renamed tensor, an in-process DLPack import): it counts its holders, and
 * the last `drop()` frees the handle.
 * @internal
 * @module
 */

// Evaluated before the generated loader (imports run in order): it throws
// ERR_NATIVE_UNAVAILABLE, naming the platform and how to build from source,
// when no binary exists to load.
import "./native-platform.js";
import * as binding from "../index.js";

export {
  cudaDeviceCount,
  cudaIpcClose,
  cudaIpcHandle,
  cudaIpcOpen,
  cudaDriverVersion,
  cudaIsAvailable,
  cudaMemoryKind,
  cudaStreamHandle,
  cudaUnavailableReason,
  errorCodes,
  liveHandles,
  liveViews,
  nativeStats,
  noop,
  testingHooks,
} from "../index.js";
export type { NativeStats } from "../index.js";

/**
 * The round trip's two hot calls, hand-written in the binding to skip
 * napi-rs's per-call borrow scope (see `crates/node/src/fast.rs`).
 */
const fast = binding.fastCalls();

const tensors = new FinalizationRegistry<number>((id) => fast.tensorFree(id));
const capsules = new FinalizationRegistry<number>((id) => binding.capsuleFree(id));

/** A consume-once DLPack capsule held by the binding. */
export class NativeCapsule {
  /** The binding's handle. */
  readonly id: number;

  private constructor(id: number) {
    this.id = id;
    capsules.register(this, id);
  }

  /** @internal Wraps a fresh capsule handle. */
  static adopt(id: number): NativeCapsule {
    return new NativeCapsule(id);
  }

  /**
   * Builds the managed struct of a prepared export (see
   * {@link NativeTensor.prepareExport}); the prepared handle is freed.
   */
  static fromPrepared(prepared: NativeTensor): NativeCapsule {
    return new NativeCapsule(binding.capsuleFromPrepared(prepared.id));
  }

  /** Takes ownership of a managed tensor made elsewhere. */
  static fromAddress(address: bigint, versioned: boolean): NativeCapsule {
    return new NativeCapsule(binding.capsuleFromAddress(address, versioned));
  }

  /** Address of the managed struct. */
  get address(): bigint {
    return binding.capsuleAddress(this.id);
  }

  /** Whether it holds a versioned (DLPack 1.x) struct. */
  get versioned(): boolean {
    return binding.capsuleVersioned(this.id);
  }

  /** Whether it was consumed or released. */
  get consumed(): boolean {
    return binding.capsuleConsumed(this.id);
  }

  /** Gives up ownership; returns the address. */
  release(): bigint {
    return binding.capsuleRelease(this.id);
  }
}

/** A tensor held by the binding. */
export class NativeTensor {
  /** The binding's handle. */
  readonly id: number;

  /**
   * Holders that have not dropped this handle yet: the tensors (and
   * capsules) sharing it. `drop()` by the last one frees it at once; garbage
   * collection of this object frees it in any case, since then no holder is
   * left.
   */
  #holders = 1;
  /**
   * Over this thread's JS memory (made by {@link fromBytes}). Every tensor
   * sharing the handle sees it, in-process DLPack imports included.
   */
  jsMemory = false;
  #view: ArrayBuffer | undefined;
  /** A handle's tensor never changes, so its size is asked for once. */
  #byteLength: number | undefined;

  private constructor(id: number) {
    this.id = id;
    tensors.register(this, id);
  }

  /** Wraps JS memory without copying. */
  static fromBytes(data: Uint8Array, shape: number[], dtype: string, readOnly: boolean): NativeTensor {
    const t = new NativeTensor(binding.tensorFromBytes(data, shape, dtype, readOnly));
    t.jsMemory = true;
    return t;
  }

  /** Zero-filled memory on `device`. */
  static zeros(shape: number[], dtype: string, device?: string): NativeTensor {
    return new NativeTensor(binding.tensorZeros(shape, dtype, device));
  }

  /** A zero-copy tensor over `[offset, offset + byteSize)` of CUDA IPC mapping `mapping` (from `cudaIpcOpen`). */
  static fromIpc(mapping: number, offset: number, byteSize: number, shape: number[], dtype: string): NativeTensor {
    return new NativeTensor(binding.tensorFromIpc(mapping, offset, byteSize, shape, dtype));
  }

  /** Imports (consumes) a capsule. */
  static fromCapsule(capsule: NativeCapsule): NativeTensor {
    return new NativeTensor(binding.tensorFromCapsule(capsule.id));
  }

  get dtype(): string {
    return binding.tensorDtype(this.id);
  }

  get shape(): number[] {
    return binding.tensorShape(this.id);
  }

  get strides(): number[] {
    return binding.tensorStrides(this.id);
  }

  get byteLength(): number {
    return (this.#byteLength ??= binding.tensorByteLength(this.id));
  }

  get deviceType(): number {
    return binding.tensorDeviceType(this.id);
  }

  get deviceId(): number {
    return binding.tensorDeviceId(this.id);
  }

  get deviceKind(): string {
    return binding.tensorDeviceKind(this.id);
  }

  get isCpu(): boolean {
    return binding.tensorIsCpu(this.id);
  }

  get readOnly(): boolean {
    return binding.tensorReadOnly(this.id);
  }

  get dataAddress(): bigint {
    return binding.tensorDataAddress(this.id);
  }

  /**
   * Zero-copy ArrayBuffer over host memory, asked for on first use and shared
   * by every holder of this handle (an external ArrayBuffer costs about
   * 1.5 µs). The binding gives every handle over one pointer in this thread
   * the same ArrayBuffer while it lives (`crates/node/src/view.rs`).
   */
  view(): ArrayBuffer {
    return (this.#view ??= binding.tensorView(this.id));
  }

  /** Whether {@link view} was made, which proves the memory is host memory. */
  get hasView(): boolean {
    return this.#view !== undefined;
  }

  /** A deep copy. */
  deepCopy(): NativeTensor {
    return new NativeTensor(binding.tensorDeepCopy(this.id));
  }

  /** A copy on `device`. */
  toDevice(device: string): NativeTensor {
    return new NativeTensor(binding.tensorToDevice(this.id, device));
  }

  /** Copies this tensor's bytes into `dst`. */
  copyTo(dst: NativeTensor): void {
    binding.tensorCopyTo(this.id, dst.id);
  }

  /** Copies this tensor's bytes into CUDA IPC mapping `mapping` at `offset`. */
  copyToIpc(mapping: number, offset: number): void {
    binding.tensorCopyToIpc(this.id, mapping, offset);
  }

  /**
   * The first half of a DLPack export: every check, copy and stream ordering
   * is done and the result is a handle on the tensor its consumer gets. An
   * in-process consumer adopts that handle; {@link NativeCapsule.fromPrepared}
   * builds the managed struct for a native one. When the export is this very
   * tensor (no copy, same device label and flags) the result is this handle,
   * with one more holder: no new handle, no new finalizer.
   */
  prepareExport(
    versioned: boolean,
    copy: boolean | undefined,
    device: string | undefined,
    stream: bigint | undefined,
  ): NativeTensor {
    if (copy === undefined && device === undefined && stream === undefined) {
      const id = fast.prepareExportPlain(this.id, versioned);
      return id === this.id ? this.retain() : new NativeTensor(id);
    }
    return new NativeTensor(binding.tensorPrepareExport(this.id, versioned, copy, device, stream));
  }

  /**
   * Builds a managed struct of this tensor as it is (what a plain
   * `prepareExport` that shared this handle stands for).
   */
  exportStruct(versioned: boolean): NativeCapsule {
    return NativeCapsule.adopt(binding.tensorExport(this.id, versioned));
  }

  /** One more holder of this handle. */
  retain(): this {
    this.#holders++;
    return this;
  }

  /** Drops one holder; the last one frees the handle now. */
  drop(): void {
    if (this.#holders > 0 && --this.#holders === 0) fast.tensorFree(this.id);
  }

  /**
   * Parks the tensors of `natives` (shares of their memory, no copy) for
   * one {@link claim} in any thread of this process, in one native call;
   * returns the batch's id, a number any message can carry. The handles
   * stay usable here.
   */
  static park(natives: readonly NativeTensor[]): number {
    const ids: number[] = [];
    for (const n of natives) ids.push(n.id);
    return binding.tensorsPark(ids);
  }

  /** Takes batch `batch` (see {@link park}): a new handle per tensor, in order. Throws ERR_DLPACK_CONSUMED for a batch claimed already. */
  static claim(batch: number): NativeTensor[] {
    const ids = binding.tensorsClaim(batch);
    const natives: NativeTensor[] = [];
    for (const id of ids) natives.push(new NativeTensor(id));
    return natives;
  }

  /** Drops batch `batch` if nobody claimed it (its receiver is gone); true if it was still parked. */
  static discard(batch: number): boolean {
    return binding.tensorsDiscard(batch);
  }
}

/**
 * Diagnostics for tests and benchmarks: ownership counters from the native
 * core. Not needed by ordinary users, so not exported from the package root:
 * import it from its own subpath.
 *
 * @example
 * import { debug } from "tensorbridge/debug";
 * debug.stats().exportsCreated;
 * @module
 */

import type { DType } from "./dtype.js";
import { ErrorCode, TensorBridgeError, rethrowNative } from "./errors.js";
import { Tensor } from "./tensor.js";
import {
  type NativeStats,
  errorCodes,
  liveHandles,
  liveViews,
  nativeStats,
  noop,
  testingHooks,
} from "./native.js";

/** Process-wide ownership counters (cumulative since the addon loaded). */
export type Stats = NativeStats;

/** Options of {@link debug.foreignTensor}: the fields of the managed tensor to make. */
export interface ForeignTensorOptions {
  /** The shape. */
  shape: readonly number[];
  /**
   * Strides in elements, written as given (need not be C order); omitted:
   * a NULL strides pointer, which DLPack reads as compact row-major.
   */
  strides?: readonly number[] | undefined;
  /** A Triton dtype name other than `"BYTES"`. @default "FP32" */
  dtype?: Exclude<DType, "BYTES"> | undefined;
  /** A `DLManagedTensorVersioned` (`true`) or a legacy `DLManagedTensor`. */
  versioned: boolean;
  /** `[major, minor]` of a versioned tensor. @default [1, 3] */
  version?: readonly [number, number] | undefined;
  /** DLPack flags of a versioned tensor (READ_ONLY 1, IS_COPIED 2). @default 0 */
  flags?: number | undefined;
  /** `byte_offset`, written as given. @default 0 */
  byteOffset?: number | undefined;
  /**
   * The element bytes, copied into memory the tensor owns; omitted: a byte
   * pattern over every element the strides reach.
   */
  data?: Uint8Array | undefined;
  /**
   * Point into this tensor's memory (from its first byte) instead of owning
   * bytes: what a producer exporting the same memory twice, or a prefix of
   * it, hands over. The foreign tensor keeps that memory alive. Not with
   * `data`; the elements must fit in the tensor's bytes.
   */
  over?: Tensor | undefined;
}

/** A managed tensor made by {@link debug.foreignTensor}. */
export interface ForeignTensor {
  /** Address of the managed struct, for `DLPackCapsule.fromAddress`. */
  address: bigint;
  /** `dl_tensor.data`: where its bytes are (before `byteOffset`). */
  data: bigint;
}

/** Counts of {@link debug.foreignTensor}'s tensors (cumulative since the addon loaded). */
export interface ForeignStats {
  /** Managed tensors made. */
  created: number;
  /** Times one of their deleters ran. */
  deleted: number;
}

/**
 * The test build's hooks; `ERR_TEST_HOOKS_UNAVAILABLE` in a release build
 * (the published binaries are built without them).
 */
function hooks(): NonNullable<ReturnType<typeof testingHooks>> {
  const built = testingHooks();
  if (built === null) {
    throw new TensorBridgeError(
      ErrorCode.TEST_HOOKS_UNAVAILABLE,
      "this native addon is a release build, without test hooks; build the development addon " +
        "(node scripts/ensure-addon.mjs in a clone of the repository, which enables the `testing` cargo feature)",
    );
  }
  return built;
}

/** The native handle of `over` for {@link debug.foreignTensor}. */
function overHandle(over: Tensor): number {
  const native = over instanceof Tensor ? Tensor.nativeOf(over) : undefined;
  if (native === undefined) {
    throw new TensorBridgeError(ErrorCode.INVALID_ARGUMENT, "debug.foreignTensor's `over` must be a live numeric Tensor");
  }
  return native.id;
}

/** Diagnostics namespace. */
export const debug = {
  /**
   * Ownership counters of the native core: DLPack exports made and deleted,
   * foreign deleters called, native allocations and frees. After everything
   * is released, `exportsCreated === exportsDeleted` and
   * `ownedAllocations === ownedFrees`.
   */
  stats(): Stats {
    return nativeStats();
  },
  /**
   * Native tensor and capsule handles alive on this thread. Handles are freed
   * by `dispose()` or, after garbage collection, by a FinalizationRegistry.
   */
  liveHandles(): {
    /** Live `Tensor` handles. */
    tensors: number;
    /** Live `DLPackCapsule` handles. */
    capsules: number;
  } {
    const [tensors = 0, capsules = 0] = liveHandles();
    return { tensors, capsules };
  },
  /**
   * External ArrayBuffers (zero-copy views of native memory) registered on
   * this thread: one per data pointer with a live view, since tensors over
   * one pointer share one view. Entries go when their buffer is collected.
   */
  liveViews(): number {
    return liveViews();
  },
  /** Every error code the native core can raise. */
  nativeErrorCodes(): string[] {
    return errorCodes();
  },
  /**
   * **For tests.** Makes a managed tensor the way another DLPack producer
   * (NumPy, PyTorch, a C library) would: heap memory outside tensorbridge,
   * with exactly the shape, strides, dtype, version and flags asked for,
   * including ones tensorbridge refuses to import. Its deleter frees it and
   * counts in {@link debug.foreignStats}.
   *
   * The caller owns the address: hand it to `DLPackCapsule.fromAddress`
   * (with the same `versioned`), which takes ownership; an address nobody
   * takes leaks.
   * @throws {TensorBridgeError} `ERR_DTYPE_UNSUPPORTED`, `ERR_SHAPE_NEGATIVE`, `ERR_INVALID_ARGUMENT` for options it can't build;
   * `ERR_TEST_HOOKS_UNAVAILABLE` in a release build of the addon.
   * @example
   * const { address } = debug.foreignTensor({ shape: [2, 3], strides: [1, 2], versioned: true });
   * const capsule = DLPackCapsule.fromAddress(address, { versioned: true });
   * Tensor.fromDlpack(capsule); // throws ERR_DLPACK_NOT_CONTIGUOUS; the capsule still owns it
   */
  foreignTensor(options: ForeignTensorOptions): ForeignTensor {
    const { shape, strides, dtype = "FP32", versioned, version, flags, byteOffset, data, over } = options;
    if (typeof versioned !== "boolean") {
      throw new TensorBridgeError(ErrorCode.INVALID_ARGUMENT, "debug.foreignTensor needs { versioned: true | false }");
    }
    try {
      return hooks().foreignTensor(
        [...shape],
        strides === undefined ? undefined : [...strides],
        dtype,
        versioned,
        version === undefined ? undefined : [...version],
        flags,
        byteOffset,
        data,
        over === undefined ? undefined : overHandle(over),
      );
    } catch (e) {
      rethrowNative(e);
    }
  },
  /**
   * **For tests.** How many {@link debug.foreignTensor} tensors were made
   * and how many of their deleters ran. Each deleter counts once per call,
   * so after everything is released `created === deleted`, and a double
   * delete shows as `deleted > created`.
   */
  foreignStats(): ForeignStats {
    return hooks().foreignStats();
  },
  /** An empty native call: the floor of napi call overhead, for benchmarks. */
  noop(): void {
    noop();
  },
} as const;

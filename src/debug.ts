/**
 * Diagnostics for tests and benchmarks: ownership counters from the native
 * core. Not needed by ordinary users.
 * @module
 */

import { type NativeStats, errorCodes, liveHandles, nativeStats, noop } from "./native.js";

/** Process-wide ownership counters (cumulative since the addon loaded). */
export type Stats = NativeStats;

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
  liveHandles(): { tensors: number; capsules: number } {
    const [tensors = 0, capsules = 0] = liveHandles();
    return { tensors, capsules };
  },
  /** Every error code the native core can raise. */
  nativeErrorCodes(): string[] {
    return errorCodes();
  },
  /** An empty native call: the floor of napi call overhead, for benchmarks. */
  noop(): void {
    noop();
  },
} as const;

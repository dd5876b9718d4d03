/**
 * `DLPackCapsule`: a consume-once handle on a DLPack managed tensor.
 * @module
 */

import { ErrorCode, TensorBridgeError, rethrowNative } from "./errors.js";
import { NativeCapsule } from "./native.js";

/** Options of {@link DLPackCapsule.fromAddress}. */
export interface FromAddressOptions {
  /**
   * `true` if the address is a `DLManagedTensorVersioned*` (DLPack 1.x),
   * `false` for a legacy `DLManagedTensor*`.
   */
  versioned: boolean;
}

const INTERNAL = Symbol("tensorbridge.capsule.internal");

/**
 * An exported DLPack tensor that can be consumed exactly once, by
 * `Tensor.fromDlpack` or by a native consumer through {@link address}.
 *
 * If it is never consumed, garbage collection calls the producer's deleter
 * (once). Consuming it twice throws `ERR_DLPACK_CONSUMED`.
 */
export class DLPackCapsule {
  readonly #native: NativeCapsule;

  /** @internal Use `tensor.toDlpack()` or {@link DLPackCapsule.fromAddress}. */
  constructor(token: typeof INTERNAL, native: NativeCapsule) {
    if (token !== INTERNAL) {
      throw new TensorBridgeError(
        ErrorCode.INVALID_ARGUMENT,
        "DLPackCapsule can't be constructed directly; use tensor.toDlpack() or DLPackCapsule.fromAddress()",
      );
    }
    this.#native = native;
  }

  /** @internal */
  static wrap(native: NativeCapsule): DLPackCapsule {
    return new DLPackCapsule(INTERNAL, native);
  }

  /**
   * Takes ownership of a managed tensor made by native code (a
   * `DLManagedTensor*` or `DLManagedTensorVersioned*` as a BigInt).
   *
   * The address must be live and not owned by anyone else: the capsule will
   * call its deleter. A dangling or wrong address can't be detected.
   * @throws {TensorBridgeError} `ERR_DLPACK_NULL` for 0n, `ERR_INVALID_ARGUMENT` for a bad BigInt.
   */
  static fromAddress(address: bigint, options: FromAddressOptions): DLPackCapsule {
    if (typeof address !== "bigint") {
      throw new TensorBridgeError(
        ErrorCode.INVALID_ARGUMENT,
        `a DLPack address must be a BigInt, got ${typeof address}`,
      );
    }
    if (typeof options?.versioned !== "boolean") {
      throw new TensorBridgeError(
        ErrorCode.INVALID_ARGUMENT,
        "DLPackCapsule.fromAddress needs { versioned: true | false }: say which struct the address points to",
      );
    }
    try {
      return DLPackCapsule.wrap(NativeCapsule.fromAddress(address, options.versioned));
    } catch (e) {
      rethrowNative(e);
    }
  }

  /** @internal The native handle, for `Tensor.fromDlpack`. */
  get native(): NativeCapsule {
    return this.#native;
  }

  /** Address of the managed struct, for native consumers (BigInt pointer). */
  get address(): bigint {
    return this.#native.address;
  }

  /** Whether the capsule holds a versioned (DLPack ≥ 1.0) managed tensor. */
  get versioned(): boolean {
    return this.#native.versioned;
  }

  /** Whether the capsule was consumed or released. */
  get consumed(): boolean {
    return this.#native.consumed;
  }

  /**
   * Gives up ownership and returns the address. The receiver (a native
   * consumer, or `DLPackCapsule.fromAddress` in a worker) must consume it,
   * or the tensor leaks.
   * @throws {TensorBridgeError} `ERR_DLPACK_CONSUMED` if already consumed.
   */
  release(): bigint {
    try {
      return this.#native.release();
    } catch (e) {
      rethrowNative(e);
    }
  }

  /** @internal */
  get [Symbol.toStringTag](): string {
    return "DLPackCapsule";
  }
}

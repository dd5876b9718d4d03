/**
 * `DLPackCapsule`: a consume-once handle on a DLPack managed tensor.
 * @module
 */

import { ErrorCode, TensorBridgeError, rethrowNative } from "./errors.js";
import { NativeCapsule, NativeTensor } from "./native.js";

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
 *
 * A capsule from `tensor.toDlpack()` builds its C struct (`DLManagedTensor`
 * or `DLManagedTensorVersioned`) only when native code needs one, on the
 * first {@link address} or {@link release}: handed to `Tensor.fromDlpack`
 * it gives the same tensor an import of the struct would (same memory,
 * device and flags), without making and parsing the struct. Every export
 * check, copy and stream ordering has already run in `toDlpack()`, so errors
 * come at the same place either way.
 */
export class DLPackCapsule {
  /** The managed struct, once built (or taken from an address). */
  #native: NativeCapsule | undefined;
  /** A prepared export whose struct is not built yet (see the class docs). */
  #prepared: NativeTensor | undefined;
  /** `#prepared` is the exporting tensor's own handle, shared (one holder is ours). */
  #shared = false;
  readonly #versioned: boolean;

  /** @internal Use `tensor.toDlpack()` or {@link DLPackCapsule.fromAddress}. */
  constructor(
    token: typeof INTERNAL,
    native: NativeCapsule | undefined,
    prepared: NativeTensor | undefined,
    versioned: boolean,
  ) {
    if (token !== INTERNAL) {
      throw new TensorBridgeError(
        ErrorCode.INVALID_ARGUMENT,
        "DLPackCapsule can't be constructed directly; use tensor.toDlpack() or DLPackCapsule.fromAddress()",
      );
    }
    this.#native = native;
    this.#prepared = prepared;
    this.#versioned = versioned;
  }

  /**
   * @internal A capsule over a prepared export (`NativeTensor.prepareExport`);
   * `shared` when that is the exporter's own handle.
   */
  static prepared(prepared: NativeTensor, shared: boolean, versioned: boolean): DLPackCapsule {
    const capsule = new DLPackCapsule(INTERNAL, undefined, prepared, versioned);
    capsule.#shared = shared;
    return capsule;
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
      const native = NativeCapsule.fromAddress(address, options.versioned);
      return new DLPackCapsule(INTERNAL, native, undefined, options.versioned);
    } catch (e) {
      rethrowNative(e);
    }
  }

  /**
   * @internal Consumes the capsule for `Tensor.fromDlpack`: the prepared
   * tensor handle as is, else an import of the managed struct (which leaves
   * the capsule unconsumed when validation fails, as core documents).
   */
  take(): NativeTensor {
    const prepared = this.#prepared;
    if (prepared !== undefined) {
      this.#prepared = undefined;
      return prepared;
    }
    return NativeTensor.fromCapsule(this.#struct());
  }

  /** The managed struct, built now for a prepared export. */
  #struct(): NativeCapsule {
    if (this.#native === undefined) {
      if (this.#prepared === undefined) {
        throw new TensorBridgeError(
          ErrorCode.DLPACK_CONSUMED,
          "this capsule was already consumed; export the tensor again with toDlpack()",
        );
      }
      const prepared = this.#prepared;
      if (this.#shared) {
        this.#native = prepared.exportStruct(this.#versioned);
        prepared.drop();
      } else {
        this.#native = NativeCapsule.fromPrepared(prepared);
      }
      this.#prepared = undefined;
    }
    return this.#native;
  }

  /**
   * Address of the managed struct, for native consumers (BigInt pointer).
   * Builds the struct on first use.
   * @throws {TensorBridgeError} `ERR_DLPACK_CONSUMED` if `Tensor.fromDlpack` consumed it before any struct was built.
   */
  get address(): bigint {
    try {
      return this.#struct().address;
    } catch (e) {
      rethrowNative(e);
    }
  }

  /** Whether the capsule holds a versioned (DLPack ≥ 1.0) managed tensor. */
  get versioned(): boolean {
    return this.#versioned;
  }

  /** Whether the capsule was consumed or released. */
  get consumed(): boolean {
    return this.#native === undefined ? this.#prepared === undefined : this.#native.consumed;
  }

  /**
   * Gives up ownership and returns the address. The receiver (a native
   * consumer, or `DLPackCapsule.fromAddress` in a worker) must consume it,
   * or the tensor leaks.
   * @throws {TensorBridgeError} `ERR_DLPACK_CONSUMED` if already consumed.
   */
  release(): bigint {
    try {
      return this.#struct().release();
    } catch (e) {
      rethrowNative(e);
    }
  }

  /** @internal */
  get [Symbol.toStringTag](): string {
    return "DLPackCapsule";
  }
}

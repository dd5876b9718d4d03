/**
 * What Triton's two shared-memory extensions (system and CUDA) share: the
 * `--allow-client-shm` gate, one name per region across both kinds,
 * unregistering, status listing, and the range check of a tensor's
 * `shared_memory_offset` + `shared_memory_byte_size` against its region.
 * `shm.ts` and `cuda-shm.ts` add how a region is opened, read and written.
 * @module
 */
import { ServingError } from "../runtime/errors.js";
import type { ModelErrorCode } from "../runtime/model-error.js";

/** Throws the error of a shared-memory request (`ERR_SHM`, INVALID_ARG unless said). */
export function shmError(message: string, tritonCode: ModelErrorCode = "INVALID_ARG"): never {
  throw new ServingError("ERR_SHM", message, { tritonCode });
}

/** The fields every registered region has. */
export interface RegionBase {
  /** Region name. */
  name: string;
  /** Usable size. */
  byte_size: number;
}

/**
 * Registered regions of one kind.
 * @typeParam R - a region as the subclass holds it
 * @typeParam S - a region as the status endpoint lists it
 */
export abstract class SharedMemoryRegions<R extends RegionBase, S> {
  /** Registered regions by name. */
  protected readonly regions = new Map<string, R>();
  readonly #taken: (name: string) => boolean;
  /** Whether clients may register regions (`--allow-client-shm`). */
  readonly enabled: boolean;

  /**
   * @param enabled - allow client shared memory.
   * @param taken - whether a name is already a region of the other kind (names are shared, as in Triton).
   */
  constructor(enabled: boolean, taken: (name: string) => boolean) {
    this.enabled = enabled;
    this.#taken = taken;
  }

  /** `"system"` or `"cuda"`, as Triton's messages name the kind. */
  protected abstract readonly kind: string;

  /** Frees what a region holds open (a file, a CUDA mapping). */
  protected abstract release(region: R): void;

  /** A region as the status endpoint lists it. */
  protected abstract statusOf(region: R): S;

  /** Whether `name` is a registered region of this kind. */
  has(name: string): boolean {
    return this.regions.has(name);
  }

  /** @throws {ServingError} `ERR_SHM` (403) unless client shared memory is allowed. */
  protected checkEnabled(): void {
    if (!this.enabled) {
      shmError("client shared memory is disabled on this server; start it with --allow-client-shm=true to use it", "UNAVAILABLE");
    }
  }

  /** @throws {ServingError} `ERR_SHM` (400) when `name` is a region of either kind. */
  protected checkUnused(name: string): void {
    if (this.regions.has(name) || this.#taken(name)) shmError(`shared memory region '${name}' is already registered`);
  }

  /** Unregisters one region (a no-op for an unknown name), or all when `name` is undefined. */
  unregister(name?: string): void {
    this.checkEnabled();
    const names = name === undefined ? [...this.regions.keys()] : [name];
    for (const n of names) {
      const r = this.regions.get(n);
      if (!r) continue;
      this.regions.delete(n);
      this.release(r);
    }
  }

  /**
   * Status of one region or of all.
   *
   * @throws {ServingError} `ERR_SHM` (404) for an unknown region name.
   */
  status(name?: string): S[] {
    if (name !== undefined) {
      const r = this.regions.get(name);
      if (!r) shmError(`Unable to find shared memory region: '${name}'`, "NOT_FOUND"); // Triton's words
      return [this.statusOf(r)];
    }
    return [...this.regions.values()].map((r) => this.statusOf(r));
  }

  /**
   * The region a tensor names, checked to hold `[offset, offset + byteSize)`.
   * @throws {ServingError} `ERR_INVALID_REQUEST` for an unknown region or a range past its end.
   */
  protected range(region: string, offset: number, byteSize: number): R {
    const r = this.regions.get(region);
    if (!r) throw new ServingError("ERR_INVALID_REQUEST", `Unable to find shared memory region: '${region}'`);
    if (offset + byteSize > r.byte_size) {
      throw new ServingError(
        "ERR_INVALID_REQUEST",
        `shared memory region '${region}': offset ${offset} + byte size ${byteSize} is past its size ${r.byte_size}`,
      );
    }
    return r;
  }

  /** Unregisters every region. */
  close(): void {
    for (const r of this.regions.values()) this.release(r);
    this.regions.clear();
  }
}

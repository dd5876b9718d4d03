/**
 * Triton's system shared-memory extension: clients register POSIX shared
 * memory objects (`shm_open` keys) and pass tensors through them instead of
 * the HTTP body.
 *
 * Node has no `mmap`, so regions are reached through their file in
 * `/dev/shm` with positioned reads and writes (one copy per tensor, no
 * socket traffic). As in current Triton, client shared memory is off unless
 * the server is started with `--allow-client-shm=true`, keys starting with
 * `triton_` are refused, and `offset + byte_size` is checked against the
 * object's size.
 *
 * @module
 */
import { closeSync, fstatSync, openSync, readSync, writeSync } from "node:fs";
import { join } from "node:path";

import { ServingError } from "../runtime/errors.js";
import type { SharedMemoryAccess } from "./codec.js";
import { SharedMemoryRegions, shmError } from "./shm-regions.js";

/** One registered region, as the status endpoint lists it. */
export interface SystemShmRegionStatus {
  /** Region name. */
  name: string;
  /** The `shm_open` key. */
  key: string;
  /** Offset into the object. */
  offset: number;
  /** Usable size. */
  byte_size: number;
}

interface Region extends SystemShmRegionStatus {
  fd: number;
}

/** Registered system shared-memory regions of one server. */
export class SystemSharedMemory extends SharedMemoryRegions<Region, SystemShmRegionStatus> implements SharedMemoryAccess {
  protected readonly kind = "system";
  readonly #root: string;

  /**
   * @param enabled - allow client shared memory.
   * @param root - where `shm_open` objects live (default `/dev/shm`).
   * @param taken - whether a name is already a region of another kind (CUDA; names are shared, as in Triton).
   */
  constructor(enabled: boolean, root = "/dev/shm", taken: (name: string) => boolean = () => false) {
    super(enabled, taken);
    this.#root = root;
  }

  protected release(region: Region): void {
    closeSync(region.fd);
  }

  protected statusOf(r: Region): SystemShmRegionStatus {
    return { name: r.name, key: r.key, offset: r.offset, byte_size: r.byte_size };
  }

  /**
   * Registers a region.
   *
   * @throws {ServingError} `ERR_SHM` for a disabled extension, an existing
   * name, a bad key, a missing object, or a range past its end.
   */
  register(name: string, body: unknown): void {
    this.checkEnabled();
    if (typeof body !== "object" || body === null || Array.isArray(body)) shmError("the register request must be a JSON object");
    const { key, offset = 0, byte_size: byteSize } = body as { key?: unknown; offset?: unknown; byte_size?: unknown };
    if (typeof key !== "string" || key === "") shmError("'key' must be a non-empty string (the shm_open key)");
    if (typeof byteSize !== "number" || !Number.isSafeInteger(byteSize) || byteSize < 0) shmError("'byte_size' must be a non-negative integer");
    if (typeof offset !== "number" || !Number.isSafeInteger(offset) || offset < 0) shmError("'offset' must be a non-negative integer");
    this.checkUnused(name);
    const bare = key.replace(/^\/+/, "");
    if (bare === "" || bare.includes("/") || bare === "." || bare === "..") shmError(`invalid shared memory key '${key}'`);
    if (bare.startsWith("triton_") || name.startsWith("triton_")) {
      shmError(`shared memory key '${key}' is reserved: keys and names starting with 'triton_' are refused`);
    }
    let fd: number;
    try {
      fd = openSync(join(this.#root, bare), "r+");
    } catch {
      shmError(`unable to open shared memory region '${name}' with key '${key}': no such object`);
    }
    const size = fstatSync(fd).size;
    if (offset + byteSize > size) {
      closeSync(fd);
      shmError(`shared memory region '${name}': offset ${offset} + byte_size ${byteSize} is past the end of '${key}' (${size} bytes)`);
    }
    this.regions.set(name, { name, key, offset, byte_size: byteSize, fd });
  }

  /** Reads `byteSize` bytes at `offset` of a region. */
  read(region: string, offset: number, byteSize: number): Uint8Array {
    const r = this.range(region, offset, byteSize);
    const buf = new Uint8Array(byteSize);
    let done = 0;
    while (done < byteSize) {
      const n = readSync(r.fd, buf, done, byteSize - done, r.offset + offset + done);
      if (n === 0) throw new ServingError("ERR_INVALID_REQUEST", `shared memory region '${region}' is shorter than registered`);
      done += n;
    }
    return buf;
  }

  /** Writes `data` at `offset` of a region (at most `byteSize` bytes). */
  write(region: string, offset: number, byteSize: number, data: readonly Uint8Array[]): void {
    const r = this.range(region, offset, byteSize);
    let pos = r.offset + offset;
    for (const d of data) {
      let done = 0;
      while (done < d.length) {
        done += writeSync(r.fd, d, done, d.length - done, pos + done);
      }
      pos += d.length;
    }
  }


}

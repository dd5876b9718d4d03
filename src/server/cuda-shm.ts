/**
 * Triton's CUDA shared-memory extension: clients register device memory of
 * their own process by its CUDA IPC handle (`cudaIpcGetMemHandle`, 64 bytes,
 * base64 in `raw_handle.b64`), and pass tensors through it instead of the
 * HTTP body.
 *
 * The handle is opened once, at registration (`cuIpcOpenMemHandle`). An
 * input read from a region becomes a device tensor over the mapping without
 * any copy, so with `FORCE_CPU_ONLY_INPUT_TENSORS: "no"` the model gets GPU
 * memory; an output requested into a region is copied there (host-to-device
 * or device-to-device). As with system shared memory, the extension is off
 * unless the server is started with `--allow-client-shm=true`, and names
 * starting with `triton_` are refused. Without CUDA, registering answers
 * 400 with a message saying CUDA is not available (malformed bodies are
 * refused first), and `GET /v2` does not list `cuda_shared_memory`.
 *
 * @module
 */
import { type DType, elementSize } from "../dtype.js";
import { cudaIpcClose, cudaIpcOpen, cudaIsAvailable, cudaUnavailableReason, NativeTensor } from "../native.js";
import { ServingError, errorMessage } from "../runtime/errors.js";
import { Tensor } from "../tensor.js";
import type { SharedMemoryAccess } from "./codec.js";
import { SharedMemoryRegions, shmError } from "./shm-regions.js";

/** Size of a CUDA IPC memory handle in bytes. */
export const CUDA_IPC_HANDLE_BYTES = 64;

/** One registered region, as the status endpoint lists it. */
export interface CudaShmRegionStatus {
  /** Region name. */
  name: string;
  /** The GPU the region is on. */
  device_id: number;
  /** Usable size. */
  byte_size: number;
}

interface Region extends CudaShmRegionStatus {
  /** The binding's mapping handle. */
  mapping: number;
}

function isNonNegativeInteger(v: unknown): v is number {
  return typeof v === "number" && Number.isSafeInteger(v) && v >= 0;
}

const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * The register body checked and decoded, before any CUDA call.
 * @throws {ServingError} `ERR_SHM` (400) for a malformed body.
 */
export function parseCudaRegisterBody(body: unknown): {
  /** The CUDA IPC memory handle's bytes. */
  handle: Uint8Array;
  /** The GPU the memory is on. */
  deviceId: number;
  /** The region's size in bytes. */
  byteSize: number;
} {
  if (typeof body !== "object" || body === null || Array.isArray(body)) shmError("the register request must be a JSON object");
  const { raw_handle: raw, device_id: deviceId, byte_size: byteSize } = body as Record<string, unknown>;
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    shmError("'raw_handle' must be an object {\"b64\": <base64 of the 64-byte cudaIpcMemHandle_t>}");
  }
  const b64 = (raw as Record<string, unknown>)["b64"];
  if (typeof b64 !== "string" || !BASE64.test(b64)) shmError("'raw_handle.b64' must be a base64 string");
  const handle = Buffer.from(b64, "base64");
  if (handle.length !== CUDA_IPC_HANDLE_BYTES) {
    shmError(`'raw_handle.b64' must decode to the ${CUDA_IPC_HANDLE_BYTES} bytes of a cudaIpcMemHandle_t, not ${handle.length}`);
  }
  if (!isNonNegativeInteger(deviceId) || deviceId > 0xffff_ffff) shmError("'device_id' must be a non-negative integer");
  if (!isNonNegativeInteger(byteSize)) shmError("'byte_size' must be a non-negative integer");
  return { handle, deviceId, byteSize };
}

/** Registered CUDA shared-memory regions of one server. */
export class CudaSharedMemory extends SharedMemoryRegions<Region, CudaShmRegionStatus> implements SharedMemoryAccess {
  protected readonly kind = "cuda";

  /**
   * @param enabled - allow client shared memory.
   * @param taken - whether a name is already a region of another kind (names are shared, as in Triton).
   */
  constructor(enabled: boolean, taken: (name: string) => boolean = () => false) {
    super(enabled, taken);
  }

  /** Whether CUDA can be used here (the extension is advertised only then). */
  static available(): boolean {
    return cudaIsAvailable();
  }

  protected release(region: Region): void {
    // Tensors still over the mapping keep it open until they are collected.
    cudaIpcClose(region.mapping);
  }

  protected statusOf(r: Region): CudaShmRegionStatus {
    return { name: r.name, device_id: r.device_id, byte_size: r.byte_size };
  }

  /**
   * Registers a region: checks the body, then opens the IPC handle on
   * `device_id` for `byte_size` bytes.
   *
   * @throws {ServingError} `ERR_SHM`: 403 when disabled; 400 for a malformed
   * body, an existing or reserved name, CUDA not being available, or a handle
   * the driver refuses.
   */
  register(name: string, body: unknown): void {
    this.checkEnabled();
    const { handle, deviceId, byteSize } = parseCudaRegisterBody(body);
    if (name.startsWith("triton_")) shmError(`shared memory region name '${name}' is reserved: names starting with 'triton_' are refused`);
    this.checkUnused(name);
    if (!cudaIsAvailable()) {
      shmError(`failed to register CUDA shared memory region '${name}': CUDA is not available on this server (${cudaUnavailableReason() ?? "unknown reason"})`);
    }
    let mapping: number;
    try {
      mapping = cudaIpcOpen(handle, deviceId, byteSize);
    } catch (e) {
      shmError(`failed to register CUDA shared memory region '${name}': ${errorMessage(e)}`);
    }
    this.regions.set(name, { name, device_id: deviceId, byte_size: byteSize, mapping });
  }

  #native<T>(what: string, fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      throw new ServingError("ERR_INVALID_REQUEST", `${what}: ${errorMessage(e)}`);
    }
  }

  /**
   * A device tensor over `[offset, offset + byteSize)` of a region, without
   * copying (it keeps the mapping open). BYTES tensors can't live on a GPU:
   * `undefined`, so the caller {@link read}s and parses them.
   */
  tensor(region: string, offset: number, byteSize: number, dtype: DType, shape: number[], name: string): Tensor | undefined {
    const r = this.range(region, offset, byteSize);
    if (dtype === "BYTES") return undefined;
    const count = shape.reduce((a, b) => a * b, 1);
    if (byteSize !== count * elementSize(dtype)) {
      throw new ServingError(
        "ERR_INVALID_REQUEST",
        `input '${name}': shared_memory_byte_size is ${byteSize}, but shape [${shape.join(",")}] of ${dtype} needs ${count * elementSize(dtype)} bytes`,
      );
    }
    const native = this.#native(`input '${name}' from CUDA shared memory region '${region}'`, () =>
      NativeTensor.fromIpc(r.mapping, offset, byteSize, shape, dtype),
    );
    return Tensor.fromNative(native, name);
  }

  /** Copies `byteSize` bytes at `offset` of a region to host memory. */
  read(region: string, offset: number, byteSize: number): Uint8Array {
    const r = this.range(region, offset, byteSize);
    const bytes = this.#native(`reading CUDA shared memory region '${region}'`, () =>
      Tensor.fromNative(NativeTensor.fromIpc(r.mapping, offset, byteSize, [byteSize], "UINT8")).toCpu(),
    );
    const d = bytes.data();
    return new Uint8Array(d.buffer, d.byteOffset, d.byteLength);
  }

  /** Copies a tensor (host or device, not BYTES) into a region at `offset`; false for BYTES, which go through {@link write}. */
  writeTensor(region: string, offset: number, byteSize: number, t: Tensor): boolean {
    if (t.dtype === "BYTES") return false;
    const r = this.range(region, offset, byteSize);
    const native = Tensor.nativeOf(t)!;
    this.#native(`writing output '${t.name ?? ""}' to CUDA shared memory region '${region}'`, () => native.copyToIpc(r.mapping, offset));
    return true;
  }

  /** Copies host bytes into a region at `offset` (at most `byteSize` bytes). */
  write(region: string, offset: number, byteSize: number, data: readonly Uint8Array[]): void {
    const r = this.range(region, offset, byteSize);
    let pos = offset;
    for (const d of data) {
      if (d.length === 0) continue;
      const src = NativeTensor.fromBytes(d, [d.length], "UINT8", true);
      this.#native(`writing CUDA shared memory region '${region}'`, () => src.copyToIpc(r.mapping, pos));
      src.drop();
      pos += d.length;
    }
  }


}

/**
 * One {@link SharedMemoryAccess} over both kinds of region: a name is looked
 * up among the CUDA regions first, then the system ones.
 */
export function combinedSharedMemory(system: SharedMemoryAccess, cuda: CudaSharedMemory): SharedMemoryAccess {
  return {
    read: (region, offset, byteSize) => (cuda.has(region) ? cuda : system).read(region, offset, byteSize),
    write: (region, offset, byteSize, data) => (cuda.has(region) ? cuda : system).write(region, offset, byteSize, data),
    tensor: (region, offset, byteSize, dtype, shape, name) =>
      cuda.has(region) ? cuda.tensor(region, offset, byteSize, dtype, shape, name) : undefined,
    writeTensor: (region, offset, byteSize, t) => cuda.has(region) && cuda.writeTensor(region, offset, byteSize, t),
  };
}

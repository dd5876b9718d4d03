/**
 * A model instance that runs in a worker thread of its own
 * (`TENSORBRIDGE_INSTANCE_THREADS: "yes"`), the way Triton's Python backend
 * runs each instance in a process of its own: CPU-bound `execute()` calls of
 * several instances run at once, and none of them blocks the server.
 *
 * The serving thread keeps a stand-in model object ({@link ThreadInstance})
 * in the instance's place, so scheduling, batching, input and output checks
 * and statistics are the same as for an in-thread instance. Tensors cross
 * with `Tensor.transfer`: without copying their bytes, but for outputs in
 * the worker's own JS memory, which dies with the worker (and BYTES
 * elements); errors keep their message and Triton code.
 *
 * @module
 */
import { existsSync } from "node:fs";
import { Worker } from "node:worker_threads";

import { errorFromWire, requestToWire, resultFromWire, type WireError, type WireResult } from "./thread-wire.js";
import type { ToWorker, WorkerStart } from "./thread-instance-worker.js";
import type { InferenceRequest } from "./request.js";
import type { InferenceResponse } from "./response.js";
import type { InitializeArgs, TritonModel } from "./types.js";
import { ModelError } from "./model-error.js";

/**
 * Starts the worker entry beside this module: `.js` in `dist/`; from source
 * (`.ts`, under tsx) through a bootstrap that registers tsx in the worker
 * first, since a worker does not get the `--import tsx` hooks of its parent.
 */
function startWorker(workerData: WorkerStart): Worker {
  const js = new URL("./thread-instance-worker.js", import.meta.url);
  if (existsSync(js)) return new Worker(js, { workerData });
  const ts = new URL("./thread-instance-worker.ts", import.meta.url).href;
  const tsx = import.meta.resolve("tsx/esm/api");
  const boot = `import(${JSON.stringify(tsx)}).then((m) => { m.register(); return import(${JSON.stringify(ts)}); })`;
  return new Worker(boot, { eval: true, workerData });
}

/** Each member of a union, without its `id`. */
type WithoutId<T> = T extends unknown ? Omit<T, "id"> : never;
/** A message to the worker, before its id. */
type ToWorkerBody = WithoutId<ToWorker>;

interface Waiting {
  resolve(value: unknown): void;
  reject(e: Error): void;
}

/** The serving thread's stand-in for a model instance in a worker thread. */
export class ThreadInstance implements TritonModel {
  readonly #worker: Worker;
  readonly #waiting = new Map<number, Waiting>();
  #next = 0;
  /** Why the worker is gone, once it is. */
  #gone: string | undefined;

  /**
   * Starts the worker; it imports `file` when {@link initialize} runs.
   *
   * @param file - the model file.
   * @param label - names the instance in errors (`model 'm' instance m_0`).
   */
  constructor(
    file: string,
    readonly label: string,
  ) {
    this.#worker = startWorker({ file });
    // A loaded model must not keep the process alive on its own; the server does.
    this.#worker.unref();
    this.#worker.on("message", (m: { id: number; value?: unknown; error?: WireError }) => {
      const w = this.#waiting.get(m.id);
      if (w === undefined) return;
      this.#waiting.delete(m.id);
      if (m.error !== undefined) w.reject(errorFromWire(m.error));
      else w.resolve(m.value);
    });
    this.#worker.on("error", (e) => this.#end(`its worker thread failed: ${e.message}`));
    this.#worker.on("exit", (code) => this.#end(`its worker thread exited (code ${code})`));
  }

  /** Fails every call still waiting, and every later one. */
  #end(why: string): void {
    this.#gone ??= why;
    const err = new ModelError(`${this.label}: ${this.#gone}`, "INTERNAL");
    for (const w of this.#waiting.values()) w.reject(err);
    this.#waiting.clear();
  }

  #call(m: ToWorkerBody): Promise<unknown> {
    if (this.#gone !== undefined) return Promise.reject(new ModelError(`${this.label}: ${this.#gone}`, "INTERNAL"));
    const id = ++this.#next;
    return new Promise((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      this.#worker.postMessage({ ...m, id } as ToWorker);
    });
  }

  /** Imports the model in the worker, makes its object and runs its `initialize(args)`. */
  async initialize(args: InitializeArgs): Promise<void> {
    try {
      await this.#call({ op: "initialize", args });
    } catch (e) {
      // A load that failed finalizes nothing here: the worker just ends.
      this.#gone ??= "its load failed";
      await this.#worker.terminate();
      throw e;
    }
  }

  /** Runs `execute(requests)` in the worker; the inputs' memory is handed over, not copied. */
  async execute(requests: InferenceRequest[]): Promise<InferenceResponse[]> {
    const value = (await this.#call({ op: "execute", requests: requests.map(requestToWire) })) as { result: WireResult };
    return resultFromWire(value.result) as InferenceResponse[];
  }

  /** Runs the model's `finalize()` in the worker, then ends the worker. */
  async finalize(): Promise<void> {
    try {
      await this.#call({ op: "finalize" });
    } finally {
      this.#gone ??= "it was finalized";
      await this.#worker.terminate();
    }
  }
}

/**
 * The worker-thread side of a model instance (see `thread-instance.ts`):
 * imports the model file with the same module hook as the serving thread
 * (so `import ... from "tensorbridge"` works), makes one model object, and
 * answers `initialize`, `execute` and `finalize` messages one at a time.
 *
 * @module
 */
import { parentPort, workerData } from "node:worker_threads";

import { errorMessage } from "./errors.js";
import { importModelClass } from "./loader.js";
import { errorToWire, requestFromWire, resultToWire, type WireRequest } from "./thread-wire.js";
import type { InitializeArgs, TritonModel } from "./types.js";

/** What the serving thread sends. */
export type ToWorker =
  | { readonly op: "initialize"; readonly id: number; readonly args: InitializeArgs }
  | { readonly op: "execute"; readonly id: number; readonly requests: WireRequest[] }
  | { readonly op: "finalize"; readonly id: number };

/** The data a worker starts with. */
export interface WorkerStart {
  /** The model file. */
  readonly file: string;
}

const port = parentPort!;
const { file } = workerData as WorkerStart;
let model: TritonModel | undefined;

/** Replies to message `id` with a value. */
function reply(id: number, value: unknown): void {
  port.postMessage({ id, value });
}

async function handle(m: ToWorker): Promise<void> {
  try {
    switch (m.op) {
      case "initialize": {
        const cls = await importModelClass(file);
        try {
          model = new cls() as TritonModel;
        } catch (e) {
          throw new Error(`constructing the instance failed: ${errorMessage(e)}`, { cause: e });
        }
        if (typeof model.initialize === "function") {
          try {
            await model.initialize(m.args);
          } catch (e) {
            throw new Error(`initialize() failed: ${errorMessage(e)}`, { cause: e });
          }
        }
        reply(m.id, true);
        return;
      }
      case "execute": {
        const requests = m.requests.map(requestFromWire);
        reply(m.id, { result: resultToWire(await model!.execute(requests)) });
        return;
      }
      case "finalize":
        if (typeof model?.finalize === "function") await model.finalize();
        reply(m.id, true);
        return;
    }
  } catch (e) {
    port.postMessage({ id: m.id, error: errorToWire(e) });
  }
}

// One message at a time, in order, as an in-thread instance runs one execute() at a time.
let chain: Promise<void> = Promise.resolve();
port.on("message", (m: ToWorker) => {
  chain = chain.then(() => handle(m));
});

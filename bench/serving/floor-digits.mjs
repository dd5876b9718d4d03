/**
 * The KServe work no Node server can skip for the digits classifier, written
 * as tightly as we know how, and nothing else: parse each request (its JSON
 * body, or its binary header and an aligned copy of its pixels), gather the
 * requests that arrive while a batch runs (and those read in the same event
 * loop turn as an idle model's first) into one `[N, 64]` ONNX Runtime call
 * of examples/models/digits/1/model.onnx, and write each request's answer
 * (JSON, or a binary header and bytes). No validation, no statistics, no
 * model API. `floor-server.mjs --net --compute` serves it as run.ts's
 * `floor-kserve` digits rows: the lower bound of a Node server that runs
 * this model, beside floor-net's canned answers (the bound of any server).
 */
import * as ort from "onnxruntime-node";

const PIXELS = 64;
const CLASSES = 10;

/**
 * Opens the model as examples/models/digits/config.pbtxt does (one intra-op
 * and one inter-op thread, CPU).
 *
 * @param {string} path - model.onnx.
 * @returns {Promise<DigitsFloor>} a floor over a session of it.
 */
export async function openDigitsFloor(path) {
  const session = await ort.InferenceSession.create(path, { executionProviders: ["cpu"], intraOpNumThreads: 1, interOpNumThreads: 1 });
  return new DigitsFloor(session);
}

/**
 * One model instance with a dynamic batcher in its barest form.
 */
export class DigitsFloor {
  /** @param {ort.InferenceSession} session */
  constructor(session) {
    this.session = session;
    /** @type {{ pixels: Float32Array, rows: number, binary: boolean, respond: (headers: Record<string, string | number>, body: Buffer) => void }[]} */
    this.queue = [];
    this.running = false;
    this.scheduled = false;
  }

  /**
   * Takes one inference request; `respond` gets its answer once its batch ran.
   *
   * @param {Buffer} body - the request body.
   * @param {number | undefined} headerLength - `Inference-Header-Content-Length`, for binary requests.
   * @param {(headers: Record<string, string | number>, body: Buffer) => void} respond
   */
  submit(body, headerLength, respond) {
    const hl = headerLength ?? body.length;
    const req = JSON.parse(body.toString("utf8", 0, hl));
    const input = req.inputs[0];
    let pixels;
    if (input.data !== undefined) {
      pixels = Float32Array.from(input.data.flat(Infinity));
    } else {
      const n = input.parameters.binary_data_size;
      // One copy into an aligned Buffer slice (the pool's slices start at multiples of 8).
      const copy = Buffer.allocUnsafe(n);
      body.copy(copy, 0, hl, hl + n);
      pixels = new Float32Array(copy.buffer, copy.byteOffset, n / 4);
    }
    const binary = req.outputs?.[0]?.parameters?.binary_data === true || req.parameters?.binary_data_output === true;
    this.queue.push({ pixels, rows: pixels.length / PIXELS, binary, respond });
    if (!this.running && !this.scheduled) {
      // The rest of this turn's reads join the batch.
      this.scheduled = true;
      setImmediate(() => {
        this.scheduled = false;
        this.#run();
      });
    }
  }

  #run() {
    if (this.running || this.queue.length === 0) return;
    this.running = true;
    const batch = this.queue;
    this.queue = [];
    let rows = 0;
    for (const r of batch) rows += r.rows;
    let feed;
    if (batch.length === 1) feed = batch[0].pixels;
    else {
      feed = new Float32Array(rows * PIXELS);
      let at = 0;
      for (const r of batch) {
        feed.set(r.pixels, at);
        at += r.pixels.length;
      }
    }
    const labels = new BigInt64Array(rows);
    const probabilities = new Float32Array(rows * CLASSES);
    const fetches = { label: new ort.Tensor("int64", labels, [rows]), probabilities: new ort.Tensor("float32", probabilities, [rows, CLASSES]) };
    this.session.run({ pixels: new ort.Tensor("float32", feed, [rows, PIXELS]) }, fetches).then(
      () => {
        let row = 0;
        for (const r of batch) {
          respondDigits(r, labels.subarray(row, row + r.rows), probabilities.subarray(row * CLASSES, (row + r.rows) * CLASSES));
          row += r.rows;
        }
        this.running = false;
        this.#run();
      },
      (e) => {
        const body = Buffer.from(JSON.stringify({ error: `floor: ${e.message}` }));
        for (const r of batch) r.respond({ "content-type": "application/json", "content-length": body.length }, body);
        this.running = false;
        this.#run();
      },
    );
  }
}

/** Writes one request's answer: its rows' labels and probabilities. */
function respondDigits(r, labels, probabilities) {
  const n = r.rows;
  if (!r.binary) {
    const text = `{"model_name":"digits","model_version":"1","outputs":[{"name":"label","datatype":"INT64","shape":[${n},1],"data":[${labels.join(",")}]},{"name":"probabilities","datatype":"FP32","shape":[${n},${CLASSES}],"data":[${probabilities.join(",")}]}]}`;
    const body = Buffer.from(text);
    r.respond({ "content-type": "application/json", "content-length": body.length }, body);
    return;
  }
  const text = `{"model_name":"digits","model_version":"1","outputs":[{"name":"label","datatype":"INT64","shape":[${n},1],"parameters":{"binary_data_size":${8 * n}}},{"name":"probabilities","datatype":"FP32","shape":[${n},${CLASSES}],"parameters":{"binary_data_size":${4 * CLASSES * n}}}]}`;
  const textLength = Buffer.byteLength(text);
  const body = Buffer.allocUnsafe(textLength + 8 * n + 4 * CLASSES * n);
  body.write(text, 0, "latin1");
  body.set(new Uint8Array(labels.buffer, labels.byteOffset, labels.byteLength), textLength);
  body.set(new Uint8Array(probabilities.buffer, probabilities.byteOffset, probabilities.byteLength), textLength + 8 * n);
  r.respond({ "content-type": "application/octet-stream", "inference-header-content-length": textLength, "content-length": body.length }, body);
}

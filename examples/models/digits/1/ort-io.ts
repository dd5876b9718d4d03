/**
 * ONNX Runtime inputs and outputs over memory the caller holds, for the
 * digits classifier (model.ts). No tensorbridge import here: the zero-copy
 * checks (__test__/digits.spec.ts) use these functions directly.
 *
 * - Input: one request's pixels become an `ort.Tensor` over the very
 *   `Float32Array` the request's tensor exposes (`Tensor.data()`, itself a
 *   view of the request's memory), so ONNX Runtime reads the request bytes
 *   in place. A batch of several requests is one copy: ONNX Runtime takes
 *   one contiguous `[N, 64]` input, and each request's rows lie in its own
 *   request body.
 * - Outputs: passed to `session.run` as pre-allocated fetches, so ONNX
 *   Runtime writes the labels and probabilities into arrays allocated here,
 *   and each request's response tensors are `subarray` views of them.
 *
 * @module
 */
import * as ort from "onnxruntime-node";

/** Pixels per image (8×8). */
export const PIXELS = 64;
/** Classes (the digits 0–9). */
export const CLASSES = 10;

/** What one ONNX Runtime call gives for a batch. */
export interface Classified {
  /** The predicted digit of each row, `[rows]`. */
  labels: BigInt64Array;
  /** The class probabilities, `[rows, 10]`, row-major. */
  probabilities: Float32Array;
}

/**
 * The `pixels` feed of a batch: the single request's own array when there is
 * one request (no copy), else the requests' rows concatenated.
 *
 * @param inputs Each request's pixels, `rows × 64` values.
 * @returns The feed and its row count.
 * @throws {RangeError} when an input is not a whole number of 64-pixel rows.
 */
export function pixelsFeed(inputs: readonly Float32Array[]): { feed: ort.Tensor; rows: number } {
  let total = 0;
  for (const x of inputs) {
    if (x.length === 0 || x.length % PIXELS !== 0) throw new RangeError(`pixels must be whole rows of ${PIXELS} values, got ${x.length}`);
    total += x.length;
  }
  const rows = total / PIXELS;
  if (inputs.length === 1) return { feed: new ort.Tensor("float32", inputs[0]!, [rows, PIXELS]), rows };
  const batch = new Float32Array(total);
  let at = 0;
  for (const x of inputs) {
    batch.set(x, at);
    at += x.length;
  }
  return { feed: new ort.Tensor("float32", batch, [rows, PIXELS]), rows };
}

/**
 * Output arrays for `rows` images and the fetches that make ONNX Runtime
 * write into them.
 */
export function outputFetches(rows: number): { fetches: Record<string, ort.Tensor>; out: Classified } {
  const out: Classified = { labels: new BigInt64Array(rows), probabilities: new Float32Array(rows * CLASSES) };
  return {
    fetches: {
      label: new ort.Tensor("int64", out.labels, [rows]),
      probabilities: new ort.Tensor("float32", out.probabilities, [rows, CLASSES]),
    },
    out,
  };
}

/**
 * Runs the classifier on the requests' pixels in one ONNX Runtime call.
 *
 * @param session A session of examples/models/digits/1/model.onnx.
 * @param inputs Each request's pixels (see {@link pixelsFeed}).
 * @returns The labels and probabilities of all rows, in request order.
 */
export async function classify(session: ort.InferenceSession, inputs: readonly Float32Array[]): Promise<Classified> {
  const { feed, rows } = pixelsFeed(inputs);
  const { fetches, out } = outputFetches(rows);
  await session.run({ pixels: feed }, fetches);
  return out;
}

/**
 * Opens the model with the thread counts of the config's
 * `intra_op_thread_count` / `inter_op_thread_count` (Triton's onnxruntime
 * backend's parameter names; 0 is ONNX Runtime's default, one per core).
 */
export function openSession(path: string, threads: { intraOp: number; interOp: number }): Promise<ort.InferenceSession> {
  return ort.InferenceSession.create(path, {
    executionProviders: ["cpu"],
    intraOpNumThreads: threads.intraOp,
    interOpNumThreads: threads.interOp,
  });
}

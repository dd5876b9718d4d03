/**
 * A client for the digits classifier (examples/models/digits): sends the
 * held-out images of scikit-learn's digits dataset (examples/digits/test-set.json,
 * written by examples/digits/train.py, so no Python is needed here) to the
 * server as binary tensors, one image per request and 16 requests in flight
 * (the server batches them), and prints the accuracy against the labels.
 * It exits non-zero when a request fails or an answer is malformed.
 *
 *   npm start                                        # in one terminal
 *   node --import tsx examples/digits-client.ts      # in another
 *   node --import tsx examples/digits-client.ts --url http://127.0.0.1:8000 --concurrency 4 --batch 8
 *
 * `--batch k` sends k images per request instead (shape [k, 64]).
 */
import { readFileSync } from "node:fs";

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : undefined;
}
const base = arg("url") ?? process.env["TENSORBRIDGE_URL"] ?? "http://127.0.0.1:8000";
const concurrency = Number(arg("concurrency") ?? 16);
const perRequest = Number(arg("batch") ?? 1);
const model = "digits";
const PIXELS = 64;
const CLASSES = 10;

const testSet = JSON.parse(readFileSync(new URL("digits/test-set.json", import.meta.url), "utf8")) as { images: number[][]; labels: number[] };

/** One binary-tensor request for `images`; the predicted label and the probabilities of each. */
async function classify(images: number[][]): Promise<{ labels: number[]; probabilities: Float32Array }> {
  const pixels = Float32Array.from(images.flat());
  const header = Buffer.from(
    JSON.stringify({
      inputs: [{ name: "pixels", shape: [images.length, PIXELS], datatype: "FP32", parameters: { binary_data_size: pixels.byteLength } }],
      outputs: [
        { name: "label", parameters: { binary_data: true } },
        { name: "probabilities", parameters: { binary_data: true } },
      ],
    }),
  );
  const res = await fetch(`${base}/v2/models/${model}/infer`, {
    method: "POST",
    headers: { "content-type": "application/octet-stream", "inference-header-content-length": String(header.length) },
    body: Buffer.concat([header, Buffer.from(pixels.buffer)]),
  });
  if (!res.ok) throw new Error(`request failed: ${res.status} ${await res.text()}`);
  const raw = new Uint8Array(await res.arrayBuffer());
  const hlen = Number(res.headers.get("inference-header-content-length"));
  const head = JSON.parse(Buffer.from(raw.subarray(0, hlen)).toString("utf8")) as {
    outputs: { name: string; datatype: string; shape: number[]; parameters: { binary_data_size: number } }[];
  };
  let offset = hlen;
  const out = new Map<string, { datatype: string; shape: number[]; bytes: Uint8Array }>();
  for (const o of head.outputs) {
    // slice: a copy, aligned for the typed arrays below
    out.set(o.name, { datatype: o.datatype, shape: o.shape, bytes: raw.slice(offset, offset + o.parameters.binary_data_size) });
    offset += o.parameters.binary_data_size;
  }
  const label = out.get("label");
  const probs = out.get("probabilities");
  if (label?.datatype !== "INT64" || probs?.datatype !== "FP32" || String(label.shape) !== `${images.length},1` || String(probs.shape) !== `${images.length},${CLASSES}`) {
    throw new Error(`unexpected outputs: ${JSON.stringify(head.outputs)}`);
  }
  return { labels: Array.from(new BigInt64Array(label.bytes.buffer), Number), probabilities: new Float32Array(probs.bytes.buffer) };
}

const predicted = Array.from<number>({ length: testSet.labels.length });
let next = 0;
let inconsistent = 0;
async function worker(): Promise<void> {
  while (next < testSet.images.length) {
    const start = next;
    next += perRequest;
    const { labels, probabilities } = await classify(testSet.images.slice(start, start + perRequest));
    labels.forEach((label, i) => {
      predicted[start + i] = label;
      // The label is the most probable class, and the probabilities sum to 1.
      const row = probabilities.subarray(i * CLASSES, (i + 1) * CLASSES);
      const argmax = row.indexOf(Math.max(...row));
      const sum = row.reduce((a, b) => a + b, 0);
      if (argmax !== label || Math.abs(sum - 1) > 1e-4) inconsistent++;
    });
  }
}
const t0 = performance.now();
await Promise.all(Array.from({ length: concurrency }, worker));
const ms = performance.now() - t0;

const correct = predicted.filter((p, i) => p === testSet.labels[i]).length;
const total = testSet.labels.length;
console.log(`digits: ${total} held-out images, ${Math.ceil(total / perRequest)} requests (${perRequest} image(s) each, ${concurrency} in flight) in ${ms.toFixed(0)} ms`);
console.log(`accuracy: ${(correct / total).toFixed(4)} (${correct}/${total})`);
if (inconsistent > 0) {
  console.log(`${inconsistent} answer(s) whose label is not the most probable class or whose probabilities do not sum to 1`);
  process.exitCode = 1;
}

/**
 * bench/serving/floor-digits.mjs, the digits rows' floor-kserve: it must
 * answer as the model does (a floor that answered wrong would be cheaper
 * than the work it bounds), for JSON and binary tensors, batched or not.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";

import test from "ava";

import { openDigitsFloor } from "../bench/serving/floor-digits.mjs";

const ROOT = fileURLToPath(new URL("..", import.meta.url));
const set = JSON.parse(readFileSync(join(ROOT, "examples/digits/test-set.json"), "utf8")) as { images: number[][]; labels: number[] };
const metrics = JSON.parse(readFileSync(join(ROOT, "examples/digits/metrics.json"), "utf8")) as { correct: number; test: number };

interface Answer {
  headers: Record<string, string | number>;
  body: Buffer;
}

function jsonBody(image: number[]): Buffer {
  return Buffer.from(JSON.stringify({ inputs: [{ name: "pixels", shape: [1, 64], datatype: "FP32", data: image }] }));
}

function binaryBody(image: number[]): { body: Buffer; headerLength: number } {
  const head = Buffer.from(
    JSON.stringify({ inputs: [{ name: "pixels", shape: [1, 64], datatype: "FP32", parameters: { binary_data_size: 256 } }], parameters: { binary_data_output: true } }),
  );
  return { body: Buffer.concat([head, Buffer.from(new Float32Array(image).buffer)]), headerLength: head.length };
}

/** The label of an answer, JSON or binary. */
function labelOf(a: Answer): number {
  const hl = a.headers["inference-header-content-length"];
  if (hl === undefined) return (JSON.parse(a.body.toString()) as { outputs: { name: string; data: number[] }[] }).outputs.find((o) => o.name === "label")!.data[0]!;
  const bytes = a.body.subarray(Number(hl), Number(hl) + 8);
  return Number(Buffer.from(bytes).readBigInt64LE(0));
}

test("floor-digits answers every held-out image as the model does (JSON and binary, batched)", async (t) => {
  const floor = await openDigitsFloor(join(ROOT, "examples/models/digits/1/model.onnx"));
  // All submitted in one turn: they run as batches, each answer in its own request's place.
  const answers = await Promise.all(
    set.images.map(
      (image, i) =>
        new Promise<Answer>((resolve) => {
          const respond = (headers: Record<string, string | number>, body: Buffer) => resolve({ headers, body });
          if (i % 2 === 0) floor.submit(jsonBody(image), undefined, respond);
          else {
            const b = binaryBody(image);
            floor.submit(b.body, b.headerLength, respond);
          }
        }),
    ),
  );
  const correct = answers.filter((a, i) => labelOf(a) === set.labels[i]).length;
  t.is(set.images.length, metrics.test);
  t.is(correct, metrics.correct);
  // Binary answers carry the ten probabilities after the label.
  const b = answers[1]!;
  t.is(b.body.length - Number(b.headers["inference-header-content-length"]), 8 + 40);
});

/**
 * The digits classifier (examples/models/digits): ONNX Runtime reads a
 * request's pixels in place and writes its outputs into the arrays the
 * responses view; a batch of requests is one call whose responses share its
 * output memory; examples/digits-client.ts, against a server of
 * examples/models, gets exactly the held-out accuracy that
 * examples/digits/train.py recorded; without onnxruntime-node the model
 * fails to load and says how to install it; and train.py, run again,
 * writes byte for byte the committed model, split and accuracy.
 *
 * Needs onnxruntime-node (a devDependency, so `npm ci` installs it); skipped
 * with the reason when it does not load here. The retraining check needs
 * the packages of examples/digits/requirements.txt in the venv
 * $TENSORBRIDGE_DIGITS_VENV (.ci/run makes it) or .venv-digits; skipped
 * with the reason otherwise.
 */
import { execFile, spawn } from "node:child_process";
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

import anyTest, { type TestFn } from "ava";

import { Tensor } from "../src/tensor.js";
import { ModelRegistry } from "../src/runtime/model-registry.js";
import { ROOT, setupModelEntry, startTestServer } from "./server-helpers.js";

type OrtIo = typeof import("../examples/models/digits/1/ort-io.js");

const MODEL_DIR = join(ROOT, "examples/models/digits");
const metrics = JSON.parse(readFileSync(join(ROOT, "examples/digits/metrics.json"), "utf8")) as { correct: number; test: number; accuracy: number };
const testSet = JSON.parse(readFileSync(join(ROOT, "examples/digits/test-set.json"), "utf8")) as { images: number[][]; labels: number[] };

/** A config input or output. */
const tensorConfig = (name: string, data_type: string, dims: number[]) => ({ name, data_type, dims });

let io: OrtIo | undefined;
let why = "";
try {
  io = await import("../examples/models/digits/1/ort-io.js");
} catch (e) {
  why = ` (skipped: onnxruntime-node does not load here: ${(e as Error).message.split("\n")[0]}; npm ci installs it)`;
}
const test = (io ? anyTest : anyTest.skip) as TestFn;

/** The first `n` held-out images, as one [n, 64] FP32 array. */
const images = (n: number, from = 0) => Float32Array.from(testSet.images.slice(from, from + n).flat());

test.before(async () => {
  await setupModelEntry();
});

anyTest("the recorded accuracy is the recorded count over the held-out split that the client sends", (t) => {
  t.is(testSet.images.length, metrics.test);
  t.is(testSet.labels.length, metrics.test);
  t.true(testSet.images.every((im) => im.length === 64 && im.every((v) => Number.isInteger(v) && v >= 0 && v <= 16)));
  t.is(metrics.accuracy, metrics.correct / metrics.test);
  t.true(metrics.accuracy > 0.9, `a trained classifier: ${metrics.accuracy}`);
});

test(`one request's pixels reach ONNX Runtime without a copy: the feed is an ort.Tensor over the request tensor's memory${why}`, (t) => {
  // JS memory (as a request body gives it) and native memory (Tensor.zeros).
  for (const input of [Tensor.from(images(3), { shape: [3, 64] }), Tensor.zeros([2, 64], "FP32")]) {
    const pixels = input.data() as Float32Array;
    const { feed, rows } = io!.pixelsFeed([pixels]);
    t.is(rows, input.shape[0]);
    t.deepEqual(feed.dims, [rows, 64]);
    t.is(feed.data, pixels, "the same Float32Array");
    t.is(Tensor.from(feed.data as Float32Array).dataPtr, input.dataPtr, "the same address");
  }
  // Several requests: one contiguous batch, a copy (each lies in its own body).
  const a = Tensor.from(images(1), { shape: [1, 64] });
  const b = Tensor.from(images(2, 1), { shape: [2, 64] });
  const { feed, rows } = io!.pixelsFeed([a.data() as Float32Array, b.data() as Float32Array]);
  t.is(rows, 3);
  t.not(Tensor.from(feed.data as Float32Array).dataPtr, a.dataPtr);
  t.deepEqual(Array.from(feed.data as Float32Array), Array.from(images(3)));
  t.throws(() => io!.pixelsFeed([new Float32Array(63)]), { instanceOf: RangeError });
});

test(`ONNX Runtime writes the outputs into the pre-allocated arrays${why}`, async (t) => {
  const session = await io!.openSession(join(MODEL_DIR, "1/model.onnx"), { intraOp: 1, interOp: 1 });
  try {
    const { fetches, out } = io!.outputFetches(4);
    out.labels.fill(-1n);
    out.probabilities.fill(-1);
    const result = await session.run({ pixels: io!.pixelsFeed([images(4)]).feed }, fetches);
    t.deepEqual(Array.from(out.labels, Number), testSet.labels.slice(0, 4), "ORT wrote the labels into our array");
    t.deepEqual(Array.from(result["label"]!.data as BigInt64Array), Array.from(out.labels));
    for (let r = 0; r < 4; r++) {
      const row = out.probabilities.subarray(r * 10, r * 10 + 10);
      t.true(Math.abs(row.reduce((s, p) => s + p, 0) - 1) < 1e-4, "and the probabilities");
    }
    const classified = await io!.classify(session, [images(1), images(2, 1)]);
    t.deepEqual(Array.from(classified.labels, Number), testSet.labels.slice(0, 3));
    t.is(classified.probabilities.length, 30);
  } finally {
    await session.release();
  }
});

test(`served in-process, a batch of requests is one ONNX Runtime call whose output memory the responses share${why}`, async (t) => {
  const reg = new ModelRegistry({ repository: join(ROOT, "examples/models") });
  try {
    await reg.load("digits");
    const model = reg.get("digits");
    // Three at once: the first runs alone; the other two queue meanwhile and run as one batch.
    const outs = await Promise.all([0, 1, 2].map((i) => model.infer({ inputs: [Tensor.from(images(1, i), { name: "pixels", shape: [1, 64] })] })));
    outs.forEach((o, i) => {
      const label = o.outputs.find((x) => x.name === "label")!;
      const probs = o.outputs.find((x) => x.name === "probabilities")!;
      t.deepEqual([label.dtype, [...label.shape]], ["INT64", [1, 1]]);
      t.deepEqual([probs.dtype, [...probs.shape]], ["FP32", [1, 10]]);
      t.is(Number((label.data() as BigInt64Array)[0]), testSet.labels[i]);
    });
    const buffers = outs.map((o) => (o.outputs.find((x) => x.name === "probabilities")!.data() as Float32Array).buffer);
    t.is(buffers[1], buffers[2], "the batched requests' probabilities are views of one output array");
    t.not(buffers[0], buffers[1]);
  } finally {
    await reg.close();
  }
});

test(`in instance threads (TENSORBRIDGE_INSTANCE_THREADS) too, ONNX Runtime classifies in the worker${why}`, async (t) => {
  const reg = new ModelRegistry({ repository: join(ROOT, "examples/models") });
  try {
    await reg.load("digits", {
      config: {
        name: "digits",
        backend: "tensorbridge",
        max_batch_size: 64,
        input: [tensorConfig("pixels", "TYPE_FP32", [64])],
        output: [tensorConfig("label", "TYPE_INT64", [1]), tensorConfig("probabilities", "TYPE_FP32", [10])],
        dynamic_batching: {},
        instance_group: [{ kind: "KIND_CPU", count: 1 }],
        parameters: { TENSORBRIDGE_INSTANCE_THREADS: { string_value: "yes" } },
      },
    });
    t.true(reg.isReady("digits"), JSON.stringify(await reg.index()));
    t.is(reg.get("digits").config.parameters["TENSORBRIDGE_INSTANCE_THREADS"]?.string_value, "yes");
    const outs = await Promise.all([0, 1, 2, 3].map((i) => reg.get("digits").infer({ inputs: [Tensor.from(images(2, 2 * i), { name: "pixels", shape: [2, 64] })] })));
    const labels = outs.flatMap((o) => Array.from(o.outputs.find((x) => x.name === "label")!.data() as BigInt64Array, Number));
    t.deepEqual(labels, testSet.labels.slice(0, 8));
  } finally {
    await reg.close();
  }
});

test(`examples/digits-client.ts gets the accuracy that examples/digits/train.py reported${why}`, async (t) => {
  const server = await startTestServer(join(ROOT, "examples/models"));
  try {
    for (const args of [[], ["--batch", "7", "--concurrency", "3"]]) {
      const client = spawn(process.execPath, ["--import", "tsx", join(ROOT, "examples/digits-client.ts"), "--url", server.address.url, ...args], { cwd: ROOT });
      let out = "";
      client.stdout.on("data", (d: Buffer) => (out += d.toString()));
      client.stderr.on("data", (d: Buffer) => (out += d.toString()));
      t.is(await new Promise<number | null>((r) => client.on("exit", r)), 0, out);
      const m = /accuracy: ([0-9.]+) \((\d+)\/(\d+)\)/.exec(out);
      t.truthy(m, out);
      t.deepEqual([Number(m![2]), Number(m![3])], [metrics.correct, metrics.test], out);
      t.is(m![1], metrics.accuracy.toFixed(4));
    }
  } finally {
    await server.close();
  }
});

test(`without onnxruntime-node the model fails to load, saying how to install it${why}`, async (t) => {
  // A repository outside this package: onnxruntime-node does not resolve from there.
  const repo = mkdtempSync(join(tmpdir(), "tb-digits-"));
  try {
    cpSync(MODEL_DIR, join(repo, "digits"), { recursive: true });
    const reg = new ModelRegistry({ repository: repo });
    t.deepEqual(await reg.loadAll(), ["digits"]);
    const reason = (await reg.index()).find((e) => e.name === "digits")?.reason ?? "";
    t.regex(reason, /onnxruntime-node, which is not installed/);
    t.regex(reason, /ONNXRUNTIME_NODE_INSTALL=skip npm install/);
    await reg.close();
  } finally {
    rmSync(repo, { recursive: true, force: true });
  }
});

/** The Python with examples/digits/requirements.txt, or undefined. */
function trainingPython(): string | undefined {
  const venvs = [process.env["TENSORBRIDGE_DIGITS_VENV"], join(ROOT, ".venv-digits")].filter((v): v is string => Boolean(v));
  return venvs.map((v) => join(v, "bin/python")).find((p) => existsSync(p));
}
const PYTHON = trainingPython();
const retrain = PYTHON ? anyTest : anyTest.skip;

retrain(
  `examples/digits/train.py, run again, writes the committed model.onnx, test-set.json and metrics.json byte for byte${PYTHON ? "" : " (skipped: no venv with examples/digits/requirements.txt: set TENSORBRIDGE_DIGITS_VENV or make .venv-digits, see train.py)"}`,
  async (t) => {
    const out = mkdtempSync(join(tmpdir(), "tb-digits-train-"));
    try {
      const stdout = await new Promise<string>((resolve, reject) =>
        execFile(PYTHON!, [join(ROOT, "examples/digits/train.py"), "--out", out], { cwd: ROOT, timeout: 150_000 }, (e, so, se) => (e ? reject(new Error(`${e.message}\n${se}`)) : resolve(so))),
      );
      t.regex(stdout, new RegExp(`held-out accuracy: ${metrics.accuracy.toFixed(4)} \\(${metrics.correct}/${metrics.test}\\)`));
      for (const [made, committed] of [
        ["model.onnx", "examples/models/digits/1/model.onnx"],
        ["test-set.json", "examples/digits/test-set.json"],
        ["metrics.json", "examples/digits/metrics.json"],
      ] as const) {
        t.true(readFileSync(join(out, made)).equals(readFileSync(join(ROOT, committed))), `${committed} is what train.py writes`);
      }
    } finally {
      rmSync(out, { recursive: true, force: true });
    }
  },
);

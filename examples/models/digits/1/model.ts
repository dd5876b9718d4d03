/**
 * digits: a real classifier served from TypeScript. model.onnx (made by
 * examples/digits/train.py from scikit-learn's digits dataset) runs in ONNX
 * Runtime through `onnxruntime-node` (its CPU build). Each batch of requests
 * is one ONNX Runtime call; inputs reach it without a copy when the batch is
 * one request, and outputs are written by ONNX Runtime into the arrays the
 * responses are views of (ort-io.ts says where copies remain).
 *
 * `onnxruntime-node` is a devDependency of tensorbridge, not a dependency:
 * outside this repository, install it next to your models
 * (`ONNXRUNTIME_NODE_INSTALL=skip npm install onnxruntime-node@1.30.0`; the
 * variable skips its CUDA download).
 */
import { join } from "node:path";

import { InferenceResponse, Tensor, type InferenceRequest, type InitializeArgs, type ModelConfig, type TritonModel } from "tensorbridge";

import type { InferenceSession } from "onnxruntime-node";

type OrtIo = typeof import("./ort-io.js");

/** An integer parameter of the config, or `dflt`. */
function intParameter(config: ModelConfig, key: string, dflt: number): number {
  const raw = config.parameters?.[key]?.string_value;
  if (raw === undefined) return dflt;
  const n = Number(raw);
  if (!Number.isInteger(n) || n < 0) throw new Error(`digits: parameter ${key} must be a whole number of threads (0: one per core), got '${raw}'`);
  return n;
}

/** The digits classifier: one ONNX Runtime session per instance, one `run` per batch. */
export default class Digits implements TritonModel {
  private session: InferenceSession | undefined;
  private io: OrtIo | undefined;

  async initialize(args: InitializeArgs): Promise<void> {
    const config = JSON.parse(args.model_config) as ModelConfig;
    try {
      this.io = await import("./ort-io.js");
    } catch (e) {
      if ((e as { code?: string }).code !== "ERR_MODULE_NOT_FOUND" || !String((e as Error).message).includes("onnxruntime-node")) throw e;
      throw new Error(
        "digits runs ONNX Runtime through onnxruntime-node, which is not installed: " +
          "ONNXRUNTIME_NODE_INSTALL=skip npm install --save-exact onnxruntime-node@1.30.0 (the variable skips its CUDA download)",
        { cause: e },
      );
    }
    this.session = await this.io.openSession(join(args.model_repository, args.model_version, "model.onnx"), {
      intraOp: intParameter(config, "intra_op_thread_count", 1),
      interOp: intParameter(config, "inter_op_thread_count", 1),
    });
  }

  async execute(requests: InferenceRequest[]): Promise<InferenceResponse[]> {
    const { classify, CLASSES, PIXELS } = this.io!;
    // FORCE_CPU_ONLY_INPUT_TENSORS (the default) gives host tensors; the
    // runtime has checked each against the config: FP32 [n, 64].
    const inputs = requests.map((r) => r.getInputTensorByName("pixels")!.data() as Float32Array);
    const { labels, probabilities } = await classify(this.session!, inputs);
    let row = 0;
    return requests.map((_, i) => {
      const n = inputs[i]!.length / PIXELS;
      const response = new InferenceResponse({
        outputTensors: [
          // Views of ONNX Runtime's output arrays: the label is [n] there, [n, 1] in the config.
          Tensor.from(labels.subarray(row, row + n), { name: "label", shape: [n, 1] }),
          Tensor.from(probabilities.subarray(row * CLASSES, (row + n) * CLASSES), { name: "probabilities", shape: [n, CLASSES] }),
        ],
      });
      row += n;
      return response;
    });
  }

  async finalize(): Promise<void> {
    await this.session?.release();
    this.session = undefined;
  }
}

/**
 * add_sub: the TypeScript counterpart of Triton's python_backend example.
 * `tensorbridge` resolves to the serving process's own copy: this directory
 * needs no node_modules and no build step.
 */
import { InferenceResponse, Tensor, type InferenceRequest, type InitializeArgs, type ModelConfig, type TritonModel } from "tensorbridge";

export default class AddSub implements TritonModel {
  private output0Dtype = "FP32";
  private output1Dtype = "FP32";

  initialize(args: InitializeArgs): void {
    const config = JSON.parse(args.model_config) as ModelConfig;
    // As in the Python example: read the output types from the config.
    this.output0Dtype = config.output.find((o) => o.name === "OUTPUT0")!.data_type;
    this.output1Dtype = config.output.find((o) => o.name === "OUTPUT1")!.data_type;
  }

  execute(requests: InferenceRequest[]): InferenceResponse[] {
    return requests.map((request) => {
      const input0 = request.getInputTensorByName("INPUT0")!;
      const in0 = input0.data() as Float32Array;
      const in1 = request.getInputTensorByName("INPUT1")!.data() as Float32Array;
      const shape = [...input0.shape]; // [4], or [batch, 4] for a batching config
      const sum = new Float32Array(in0.length);
      const diff = new Float32Array(in0.length);
      for (let i = 0; i < in0.length; i++) {
        sum[i] = in0[i]! + in1[i]!;
        diff[i] = in0[i]! - in1[i]!;
      }
      return new InferenceResponse({
        outputTensors: [Tensor.from(sum, { name: "OUTPUT0", shape }), Tensor.from(diff, { name: "OUTPUT1", shape })],
      });
    });
  }

  finalize(): void {
    // Nothing to release; Triton's example prints "Cleaning up...".
    void this.output0Dtype;
    void this.output1Dtype;
  }
}

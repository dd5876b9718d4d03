/**
 * force_cpu_no: with FORCE_CPU_ONLY_INPUT_TENSORS "no", a model must handle
 * inputs on any device. This one reports, per input (in request order),
 * whether it is on the CPU (IS_CPU) and its device (DEVICES, e.g. "cpu:0").
 */
import { InferenceResponse, Tensor, type InferenceRequest, type TritonModel } from "tensorbridge";

export default class ForceCpuNo implements TritonModel {
  execute(requests: InferenceRequest[]): InferenceResponse[] {
    return requests.map((request) => {
      const inputs = request.inputs();
      const isCpu = Uint8Array.from(inputs, (t) => (t.isCpu() ? 1 : 0));
      const devices = inputs.map((t) => `${t.name}=${t.device.type}:${t.device.id}`);
      return new InferenceResponse({
        outputTensors: {
          IS_CPU: Tensor.from(isCpu, { dtype: "BOOL" }),
          DEVICES: Tensor.fromBytes(devices),
        },
      });
    });
  }
}

/**
 * dlpack_identity: exports each input as a DLPack capsule and imports it
 * back, as a model handing tensors to another framework would. No bytes are
 * copied: the output shares the input's memory.
 */
import { InferenceResponse, Tensor, type InferenceRequest, type TritonModel } from "tensorbridge";

export default class DlpackIdentity implements TritonModel {
  execute(requests: InferenceRequest[]): InferenceResponse[] {
    return requests.map((request) => {
      const input = request.getInputTensorByName("INPUT0")!;
      const capsule = input.toDlpack({ maxVersion: [1, 3] });
      const output = Tensor.fromDlpack(capsule, { name: "OUTPUT0" });
      return new InferenceResponse({ outputTensors: [output] });
    });
  }
}

"""The digits classifier for Triton's Python backend, as a user would write it:
the batch's requests concatenated into one onnxruntime call, the outputs split
back per request. The peer of examples/models/digits/1/model.ts in
bench/serving/run.ts; model.onnx is copied next to this file there."""
import json
import os

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils


class TritonPythonModel:
    def initialize(self, args):
        params = json.loads(args["model_config"]).get("parameters", {})
        threads = lambda key: int(params.get(key, {}).get("string_value", "1"))  # noqa: E731
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads("intra_op_thread_count")
        options.inter_op_num_threads = threads("inter_op_thread_count")
        path = os.path.join(args["model_repository"], args["model_version"], "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        inputs = [pb_utils.get_input_tensor_by_name(r, "pixels").as_numpy() for r in requests]
        batch = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        label, probabilities = self.session.run(["label", "probabilities"], {"pixels": batch})
        responses = []
        at = 0
        for x in inputs:
            n = x.shape[0]
            responses.append(
                pb_utils.InferenceResponse(
                    output_tensors=[
                        pb_utils.Tensor("label", label[at : at + n].reshape(n, 1)),
                        pb_utils.Tensor("probabilities", probabilities[at : at + n]),
                    ]
                )
            )
            at += n
        return responses

    def finalize(self):
        self.session = None

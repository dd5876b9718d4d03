"""The digits classifier as an MLServer custom runtime: the same model.onnx as
examples/models/digits, run with onnxruntime in Python (MLServer 1.7 has no
ONNX runtime of its own: its runtimes are sklearn, xgboost, lightgbm, mlflow,
huggingface, catboost, alibi and mllib). MLServer's adaptive batching merges
concurrent requests into one predict() call (model-settings.json's
max_batch_size and max_batch_time, written by bench/serving/run.ts, which
copies this file and model.onnx next to it).

As with add_sub.py, the Triton model config that perf_analyzer asks for is
served through MLServer's custom-handler hook.
"""
import os

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput

CONFIG = {
    "name": "digits",
    "platform": "mlserver",
    "max_batch_size": 64,
    "input": [{"name": "pixels", "data_type": "TYPE_FP32", "dims": [64]}],
    "output": [
        {"name": "label", "data_type": "TYPE_INT64", "dims": [1]},
        {"name": "probabilities", "data_type": "TYPE_FP32", "dims": [10]},
    ],
}


class Digits(MLModel):
    async def load(self) -> bool:
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "model.onnx")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        pixels = NumpyCodec.decode_input(payload.inputs[0]).astype("float32", copy=False).reshape(-1, 64)
        label, probabilities = self.session.run(["label", "probabilities"], {"pixels": pixels})
        n = pixels.shape[0]
        # Without "parameters": perf_analyzer's client reads binary_data_size
        # from any output that has parameters (NumpyCodec adds a content_type one).
        return InferenceResponse(
            model_name=self.name,
            id=payload.id,
            outputs=[
                ResponseOutput(name="label", shape=[n, 1], datatype="INT64", data=label.tolist()),
                ResponseOutput(name="probabilities", shape=[n, 10], datatype="FP32", data=probabilities.flatten().tolist()),
            ],
        )

    @custom_handler(rest_path="/v2/models/digits/config", rest_method="GET")
    async def triton_config(self) -> dict:
        return CONFIG

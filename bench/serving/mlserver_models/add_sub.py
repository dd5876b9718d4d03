"""add_sub as an MLServer custom runtime, the third peer of bench/serving/run.ts.

MLServer has no `GET /v2/models/{m}/config`, which perf_analyzer requires, so
each model class answers it through MLServer's own custom-handler hook (no
proxy in the request path). run.ts copies this file next to each
model-settings.json it writes.
"""
import numpy as np
from mlserver import MLModel
from mlserver.codecs import NumpyCodec
from mlserver.handlers import custom_handler
from mlserver.types import InferenceRequest, InferenceResponse, ResponseOutput


def _config(name, max_batch_size):
    io = lambda n: {"name": n, "data_type": "TYPE_FP32", "dims": [4]}  # noqa: E731
    return {
        "name": name,
        "platform": "mlserver",
        "max_batch_size": max_batch_size,
        "input": [io("INPUT0"), io("INPUT1")],
        "output": [io("OUTPUT0"), io("OUTPUT1")],
    }


def _out(name, array):
    # Without "parameters": perf_analyzer's client reads binary_data_size from
    # any output that has parameters (NumpyCodec adds a content_type one).
    return ResponseOutput(name=name, shape=list(array.shape), datatype="FP32", data=array.flatten().tolist())


class _AddSub(MLModel):
    async def load(self) -> bool:
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        inputs = {i.name: NumpyCodec.decode_input(i) for i in payload.inputs}
        a = inputs["INPUT0"].astype(np.float32)
        b = inputs["INPUT1"].astype(np.float32)
        return InferenceResponse(model_name=self.name, id=payload.id, outputs=[_out("OUTPUT0", a + b), _out("OUTPUT1", a - b)])


class AddSub(_AddSub):
    @custom_handler(rest_path="/v2/models/add_sub/config", rest_method="GET")
    async def triton_config(self) -> dict:
        return _config("add_sub", 0)


class AddSubBatched(_AddSub):
    @custom_handler(rest_path="/v2/models/add_sub_batched/config", rest_method="GET")
    async def triton_config(self) -> dict:
        return _config("add_sub_batched", 8)

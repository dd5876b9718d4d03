"""The official Python tritonclient against a tensorbridge server serving
__test__/fixtures/lifecycle: a config completed by the model's
autoCompleteConfig (no config.pbtxt), warm-up samples that ran before the
model was READY, and a thread instance restarted after its worker exited.
Exits non-zero on any mismatch.

    python tritonclient_lifecycle.py 127.0.0.1:8000
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException

url = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8000"


def inputs(batch=None):
    shape = [4] if batch is None else [batch, 4]
    i = httpclient.InferInput("INPUT0", shape, "FP32")
    i.set_data_from_numpy(np.ones(shape, dtype=np.float32))
    return [i]


with httpclient.InferenceServerClient(url) as client:
    # auto-complete: the completed config is what the server reports, and it serves
    config = client.get_model_config("auto")
    assert config["max_batch_size"] == 4, config
    assert [(i["name"], i["data_type"], i["dims"]) for i in config["input"]] == [("INPUT0", "TYPE_FP32", [4])], config["input"]
    assert "dynamic_batching" in config, config
    meta = client.get_model_metadata("auto")
    assert meta["inputs"][0]["shape"] == [-1, 4], meta
    out = client.infer("auto", inputs(2)).as_numpy("OUTPUT0")
    assert out.shape == (2, 4) and (out == 1).all(), out
    print("auto-complete: config", config["max_batch_size"], config["input"][0]["name"], "served", out.shape)

    # warm-up: the instance saw 3 calls x 2 requests before this one
    assert client.is_model_ready("warm")
    warmed = client.infer("warm", inputs(1)).as_numpy("WARMED")
    assert warmed.tolist() == [[6]], warmed
    print("warm-up: requests before the client's =", int(warmed[0][0]))

    # a thread instance whose worker exits: that request fails, the next succeeds
    assert (client.infer("fragile", inputs()).as_numpy("OUTPUT0") == 1).all()
    try:
        client.infer("fragile", inputs(), parameters={"mode": "exit"})
        raise AssertionError("the request that ended the worker succeeded")
    except InferenceServerException as e:
        assert "worker thread exited (code 5)" in e.message(), e.message()
        print("restart: the in-flight request failed:", e.message())
    out = client.infer("fragile", inputs()).as_numpy("OUTPUT0")
    assert (out == 1).all(), out
    print("restart: the next request succeeded")

print("PASS: auto-complete, warm-up and a restarted instance with tritonclient")

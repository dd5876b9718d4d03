"""The official Python tritonclient against a tensorbridge server: the seed's
add_sub client (python_backend/examples/add_sub/client.py), run once with
binary tensors and once with JSON tensors, plus metadata, config,
readiness and statistics calls. Exits non-zero on any mismatch.

    python tritonclient_add_sub.py 127.0.0.1:8000
"""
import sys

import numpy as np
import tritonclient.http as httpclient
from tritonclient.utils import InferenceServerException, np_to_triton_dtype

url = sys.argv[1] if len(sys.argv) > 1 else "127.0.0.1:8000"
model_name = "add_sub"
shape = [4]

with httpclient.InferenceServerClient(url) as client:
    assert client.is_server_live(), "server not live"
    assert client.is_server_ready(), "server not ready"
    assert client.is_model_ready(model_name), "model not ready"
    meta = client.get_server_metadata()
    assert "binary_tensor_data" in meta["extensions"], meta
    model_meta = client.get_model_metadata(model_name)
    assert [i["name"] for i in model_meta["inputs"]] == ["INPUT0", "INPUT1"], model_meta
    config = client.get_model_config(model_name)
    assert config["max_batch_size"] == 0, config
    index = client.get_model_repository_index()
    assert any(m["name"] == model_name and m.get("state") == "READY" for m in index), index

    for binary in (True, False):
        input0_data = np.random.rand(*shape).astype(np.float32)
        input1_data = np.random.rand(*shape).astype(np.float32)
        inputs = [
            httpclient.InferInput("INPUT0", input0_data.shape, np_to_triton_dtype(input0_data.dtype)),
            httpclient.InferInput("INPUT1", input1_data.shape, np_to_triton_dtype(input1_data.dtype)),
        ]
        inputs[0].set_data_from_numpy(input0_data, binary_data=binary)
        inputs[1].set_data_from_numpy(input1_data, binary_data=binary)
        outputs = [
            httpclient.InferRequestedOutput("OUTPUT0", binary_data=binary),
            httpclient.InferRequestedOutput("OUTPUT1", binary_data=binary),
        ]
        response = client.infer(model_name, inputs, request_id=str(1), outputs=outputs)
        result = response.get_response()
        output0_data = response.as_numpy("OUTPUT0")
        output1_data = response.as_numpy("OUTPUT1")
        print(
            "[{}] INPUT0 ({}) + INPUT1 ({}) = OUTPUT0 ({})".format(
                "binary" if binary else "json", input0_data, input1_data, output0_data
            )
        )
        print(
            "[{}] INPUT0 ({}) - INPUT1 ({}) = OUTPUT1 ({})".format(
                "binary" if binary else "json", input0_data, input1_data, output1_data
            )
        )
        if not np.allclose(input0_data + input1_data, output0_data):
            print("add_sub example error: incorrect sum")
            sys.exit(1)
        if not np.allclose(input0_data - input1_data, output1_data):
            print("add_sub example error: incorrect difference")
            sys.exit(1)
        assert result["id"] == "1", result

    # every dtype round trip through the async API is covered by the ava suites;
    # here: an error from the server reaches the client as InferenceServerException
    bad = httpclient.InferInput("INPUT0", [3], "FP32")
    bad.set_data_from_numpy(np.zeros(3, dtype=np.float32))
    try:
        client.infer(model_name, [bad])
        print("expected an error for a wrong shape")
        sys.exit(1)
    except InferenceServerException as e:
        assert "INPUT" in str(e), str(e)

    stats = client.get_inference_statistics(model_name)
    s = stats["model_stats"][0]
    assert s["inference_stats"]["success"]["count"] >= 2, stats
    assert isinstance(s["inference_stats"]["success"]["ns"], int), stats

print("PASS: add_sub with tritonclient (binary and JSON)")

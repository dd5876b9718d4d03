"""Trains the digits classifier that examples/models/digits serves, and exports it.

scikit-learn's digits dataset (`load_digits()`: 1,797 8x8 images of handwritten
digits, pixel values 0-16) ships inside scikit-learn, so nothing is downloaded.
A StandardScaler + MLPClassifier pipeline is fitted on 80 % of it (a fixed,
stratified split) and exported with skl2onnx:

  examples/models/digits/1/model.onnx   input  "pixels"        FP32 [-1, 64] (raw 0-16)
                                        output "label"         INT64 [-1]
                                        output "probabilities" FP32 [-1, 10] (zipmap=False:
                                               a plain tensor, not a list of maps)
  examples/digits/test-set.json         the held-out 20 %: images and labels, for
                                        examples/digits-client.ts (no Python needed there)
  examples/digits/metrics.json          the held-out accuracy of the exported .onnx, run
                                        with onnxruntime (the number the client must match)

Usage (the pinned packages are in requirements.txt beside this file):

  python3 -m venv .venv-digits
  .venv-digits/bin/pip install --no-deps -r examples/digits/requirements.txt
  .venv-digits/bin/python examples/digits/train.py [--out DIR]

`--out DIR` writes the three files into DIR instead (__test__/digits.spec.ts
retrains there and compares with the committed ones). Deterministic: the same packages give the same files (random_state is fixed,
and skl2onnx writes no timestamps).
"""
import argparse
import json
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from skl2onnx import to_onnx
from skl2onnx.common.data_types import FloatTensorType
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
# ONNX Runtime 1.20 and later (Python and onnxruntime-node alike) run opset 17.
OPSET = 17


def main() -> int:
    parser = argparse.ArgumentParser(description="Trains and exports the digits classifier.")
    parser.add_argument("--out", type=Path, help="write model.onnx, test-set.json and metrics.json here instead")
    out = parser.parse_args().out
    model_path = out / "model.onnx" if out else ROOT / "examples/models/digits/1/model.onnx"
    test_set_path = (out or HERE) / "test-set.json"
    metrics_path = (out or HERE) / "metrics.json"

    digits = load_digits()
    x = digits.data.astype(np.float32)  # (1797, 64), values 0..16
    y = digits.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0, stratify=y)

    clf = make_pipeline(
        StandardScaler(),
        MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0),
    )
    clf.fit(x_train, y_train)
    sklearn_accuracy = float((clf.predict(x_test) == y_test).mean())

    onx = to_onnx(
        clf,
        initial_types=[("pixels", FloatTensorType([None, 64]))],
        target_opset=OPSET,
        # Probabilities as one FP32 [N, 10] tensor rather than a ZipMap
        # (a sequence of maps, which is no tensor a server can send).
        options={id(clf): {"zipmap": False}},
    )
    # skl2onnx ends the probabilities with an Identity of the Softmax output
    # (which ArgMax reads too). ONNX Runtime keeps that Identity (its output
    # is a graph output) and so copies the probabilities into the output
    # buffer the caller gives it; with the Identity gone, Softmax writes
    # straight into that buffer (model.ts passes the response's memory).
    identity = next(n for n in onx.graph.node if n.op_type == "Identity" and list(n.output) == ["probabilities"])
    softmax_out = identity.input[0]
    onx.graph.node.remove(identity)
    for node in onx.graph.node:
        for names in (node.input, node.output):
            for i, name in enumerate(names):
                if name == softmax_out:
                    names[i] = "probabilities"
    onnx.checker.check_model(onx)
    # skl2onnx lists the opset domains in set order, which changes with each
    # process's string hashing: sorted, the same packages give the same bytes.
    opsets = sorted(onx.opset_import, key=lambda o: o.domain)
    del onx.opset_import[:]
    onx.opset_import.extend(opsets)
    model_path.parent.mkdir(parents=True, exist_ok=True)
    model_path.write_bytes(onx.SerializeToString())

    # The accuracy of what is served: the exported file, run by onnxruntime.
    sess = ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    label, probabilities = sess.run(["label", "probabilities"], {"pixels": x_test})
    assert probabilities.shape == (len(x_test), 10), probabilities.shape
    correct = int((label == y_test).sum())
    onnx_accuracy = correct / len(y_test)

    test_set_path.write_text(
        json.dumps(
            {
                "description": "scikit-learn load_digits(), the held-out 20 % of examples/digits/train.py's split "
                "(train_test_split(test_size=0.2, random_state=0, stratify=y)); images are 64 raw pixel values 0-16",
                "images": x_test.astype(int).tolist(),
                "labels": y_test.tolist(),
            },
            separators=(",", ":"),
        )
        + "\n"
    )
    metrics_path.write_text(
        json.dumps(
            {
                "dataset": "sklearn.datasets.load_digits",
                "model": "StandardScaler + MLPClassifier(hidden_layer_sizes=(64,)), skl2onnx zipmap=False, opset 17",
                "train": len(y_train),
                "test": len(y_test),
                "correct": correct,
                "accuracy": onnx_accuracy,
                "sklearnAccuracy": sklearn_accuracy,
                "outputs": names,
                "versions": {
                    "scikit-learn": __import__("sklearn").__version__,
                    "skl2onnx": __import__("skl2onnx").__version__,
                    "onnxruntime": ort.__version__,
                },
            },
            indent=2,
        )
        + "\n"
    )
    print(f"held-out accuracy: {onnx_accuracy:.4f} ({correct}/{len(y_test)}) with onnxruntime on {model_path}")
    print(f"(scikit-learn's own predict: {sklearn_accuracy:.4f}); {model_path.stat().st_size} bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Reads what `pstrain predict`, `pstrain eval` and `pstrain export` wrote, with the tools their
users read them with (onnxruntime, safetensors), and prints one JSON object for
tests/integration/serving_test.cc to check:
  usage: check_serving.py DATA_DIR MODEL.onnx WEIGHTS.safetensors PREDICT.csv
"""
import csv
import gzip
import json
import os
import sys

import numpy as np
import onnxruntime as ort
from safetensors.numpy import load_file
from safetensors import safe_open


def read_idx(path_base):
    path = path_base + ".gz" if os.path.exists(path_base + ".gz") else path_base
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    rank = data[3]
    dims = [int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(rank)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * rank).reshape(dims)


def main():
    data_dir, onnx_path, weights_path, csv_path = sys.argv[1:5]
    images = read_idx(os.path.join(data_dir, "t10k-images-idx3-ubyte"))
    labels = read_idx(os.path.join(data_dir, "t10k-labels-idx1-ubyte")).astype(np.int64)
    x = images.reshape(images.shape[0], -1).astype(np.float32) / np.float32(255.0)

    sess = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    inputs = [(i.name, i.type, [d if isinstance(d, int) else str(d) for d in i.shape])
              for i in sess.get_inputs()]
    outputs = [(o.name, o.type, [d if isinstance(d, int) else str(d) for d in o.shape])
               for o in sess.get_outputs()]
    logits, probs = sess.run(["logits", "probabilities"], {"images": x})
    onnx_pred = probs.argmax(axis=1)

    with open(csv_path, newline="") as f:
        rows = list(csv.reader(f))
    header, body = rows[0], rows[1:]
    csv_index = np.array([int(r[0]) for r in body])
    csv_pred = np.array([int(r[1]) for r in body])
    csv_probs = np.array([[float(v) for v in r[2:]] for r in body], dtype=np.float64)

    with safe_open(weights_path, framework="numpy") as f:
        metadata = f.metadata()
    weights = load_file(weights_path)

    json.dump({
        "inputs": inputs,
        "outputs": outputs,
        "examples": int(x.shape[0]),
        "onnx_accuracy": float((onnx_pred == labels).mean()),
        "onnx_correct": int((onnx_pred == labels).sum()),
        "logits_argmax_agrees": bool((logits.argmax(axis=1) == onnx_pred).all()),
        "probabilities_sum_max_error": float(np.abs(probs.sum(axis=1) - 1).max()),
        "csv_header": header,
        "csv_rows": len(body),
        "csv_index_in_order": bool((csv_index == np.arange(len(body))).all()),
        "class_mismatches": int((csv_pred != onnx_pred).sum()) if len(body) == len(onnx_pred) else -1,
        "max_probability_difference":
            float(np.abs(csv_probs - probs.astype(np.float64)).max())
            if csv_probs.shape == probs.shape else -1.0,
        "csv_accuracy": float((csv_pred == labels).mean()) if len(body) == len(labels) else -1.0,
        "safetensors": {name: list(v.shape) for name, v in weights.items()},
        "safetensors_dtypes": sorted({str(v.dtype) for v in weights.values()}),
        "safetensors_metadata": metadata,
    }, sys.stdout)


if __name__ == "__main__":
    main()

"""Reads safetensors files with Python's `safetensors` package (what PyTorch and Hugging Face
users read them with) and prints, as one JSON object per file keyed by path, the metadata and
every tensor's dtype, shape and raw little-endian bytes in hex. The C++ tests compare those
bytes with what pstrain wrote.

usage: read_safetensors.py FILE...
"""
import json
import sys

from safetensors import safe_open
from safetensors.numpy import load_file


def main(paths):
    out = {}
    for path in paths:
        with safe_open(path, framework="numpy") as f:
            metadata = f.metadata() or {}
        tensors = {}
        for name, array in load_file(path).items():
            tensors[name] = {
                "dtype": str(array.dtype),
                "shape": list(array.shape),
                "hex": array.astype(array.dtype.newbyteorder("<")).tobytes().hex(),
            }
        out[path] = {"metadata": metadata, "tensors": tensors}
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Writes the PNG files tests/integration/serving_test.cc feeds to `pstrain predict`, with
Pillow: the first test images as 28x28 8-bit grey (a.png, b.png), the same first image as RGB
(c_rgb.png, equal channels) and as grey with an opaque alpha channel (d_la.png), a 20x20 grey
image (small/bad.png) and a file that is not an image (text/notes.png).
  usage: make_pngs.py DATA_DIR OUT_DIR
"""
import gzip
import os
import sys

import numpy as np
from PIL import Image


def main():
    data_dir, out = sys.argv[1:3]
    path = os.path.join(data_dir, "t10k-images-idx3-ubyte")
    path = path + ".gz" if os.path.exists(path + ".gz") else path
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "rb") as f:
        data = f.read()
    images = np.frombuffer(data, dtype=np.uint8, offset=16).reshape(-1, 28, 28)
    good = os.path.join(out, "good")
    os.makedirs(good, exist_ok=True)
    Image.fromarray(images[0], mode="L").save(os.path.join(good, "a.png"))
    Image.fromarray(images[1], mode="L").save(os.path.join(good, "b.png"))
    Image.fromarray(np.stack([images[0]] * 3, axis=-1), mode="RGB").save(
        os.path.join(good, "c_rgb.png"))
    la = np.stack([images[0], np.full((28, 28), 255, np.uint8)], axis=-1)
    Image.fromarray(la, mode="LA").save(os.path.join(good, "d_la.png"))
    os.makedirs(os.path.join(out, "small"), exist_ok=True)
    Image.fromarray(images[0][:20, :20].copy(), mode="L").save(
        os.path.join(out, "small", "bad.png"))
    os.makedirs(os.path.join(out, "text"), exist_ok=True)
    with open(os.path.join(out, "text", "notes.png"), "w") as f:
        f.write("not an image\n")


if __name__ == "__main__":
    main()

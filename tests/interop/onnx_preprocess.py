#!/usr/bin/python3
"""Preprocesses images for an ONNX file written by `vitlab-cli export --format onnx`, from the
file's own metadata_props only (what a deployment has): resize the shorter side to
floor(image_size / crop_pct) with the named PIL interpolation, center crop image_size (rounded
as torchvision's CenterCrop), RGB (or L for one channel) / 255, then (x - mean) / std.

    /usr/bin/python3 onnx_preprocess.py MODEL.onnx OUT.safetensors IMAGE...

Writes `images` F32 [N, C, S, S] to OUT.safetensors. Needs python3-onnx, python3-pil, numpy."""
import json
import math
import struct
import sys

import numpy as np
import onnx
from PIL import Image

INTERP = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST,
          "lanczos": Image.LANCZOS, "box": Image.BOX, "hamming": Image.HAMMING}


def main():
    model, out, images = sys.argv[1], sys.argv[2], sys.argv[3:]
    meta = {p.key: p.value for p in onnx.load(model, load_external_data=False).metadata_props}
    size = int(meta["image_size"])
    crop_pct = float(meta["crop_pct"])
    chans = int(meta["in_chans"])
    mean = np.array(json.loads(meta["mean"]), dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(json.loads(meta["std"]), dtype=np.float32).reshape(-1, 1, 1)
    interp = INTERP[meta["interpolation"]]
    scale = math.floor(size / crop_pct)
    batch = []
    for f in images:
        im = Image.open(f).convert("RGB" if chans == 3 else "L")
        w, h = im.size
        if w <= h:
            nw, nh = scale, int(scale * h / w)
        else:
            nw, nh = int(scale * w / h), scale
        im = im.resize((nw, nh), interp)
        top = int(round((nh - size) / 2.0))
        left = int(round((nw - size) / 2.0))
        im = im.crop((left, top, left + size, top + size))
        x = np.asarray(im, dtype=np.float32) / 255.0
        x = x.reshape(size, size, chans).transpose(2, 0, 1)
        batch.append((x - mean) / std)
    arr = np.ascontiguousarray(np.stack(batch).astype("<f4"))
    header = json.dumps({"images": {"dtype": "F32", "shape": list(arr.shape),
                                    "data_offsets": [0, arr.nbytes]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(out, "wb") as fh:
        fh.write(struct.pack("<Q", len(header)))
        fh.write(header)
        fh.write(arr.tobytes())


if __name__ == "__main__":
    main()

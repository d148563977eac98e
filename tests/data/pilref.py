"""Shared by the Pillow reference generators of tests/data (gen-pil-resize.py, gen-exif.py,
gen-webp.py, gen-tiff.py): the 37x23 synthetic image and a safetensors writer of U8 tensors.

The synthetic image, identical to synth_value() in tests/test-image.c (all integers):
    v(x, y, c) = ((x * 7 + y * 13 + c * 50) ^ ((x * y * 3) & 63)) & 255
    alpha(x, y) = 0 for x < 4, 255 for x > 30, else (x * y * 5 + 17) & 255
    RGB = (v(x,y,0), v(x,y,1), v(x,y,2)); L = v(x,y,1); LA, RGBA add alpha.
"""

import json
import struct

from PIL import Image

W, H = 37, 23


def v(x, y, c):
    return ((x * 7 + y * 13 + c * 50) ^ ((x * y * 3) & 63)) & 255


def alpha(x, y):
    if x < 4:
        return 0
    if x > 30:
        return 255
    return (x * y * 5 + 17) & 255


def synth(mode):
    px = []
    for y in range(H):
        for x in range(W):
            if mode == "L":
                px.append(v(x, y, 1))
            elif mode == "LA":
                px.append((v(x, y, 1), alpha(x, y)))
            elif mode == "RGB":
                px.append((v(x, y, 0), v(x, y, 1), v(x, y, 2)))
            else:
                px.append((v(x, y, 0), v(x, y, 1), v(x, y, 2), alpha(x, y)))
    im = Image.new(mode, (W, H))
    im.putdata(px)
    return im


def write_safetensors(path, tensors, metadata, sort=False):
    """tensors: name -> (shape, bytes), all U8; in insertion order, or by name with sort."""
    header = {"__metadata__": metadata}
    blob = b""
    for name in (sorted(tensors) if sort else tensors):
        shape, data = tensors[name]
        header[name] = {"dtype": "U8", "shape": list(shape),
                        "data_offsets": [len(blob), len(blob) + len(data)]}
        blob += data
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * (-len(hjson) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        f.write(blob)

#!/usr/bin/python3
"""Generates the Pillow reference data for tests/test-image.c (a dev-time tool: the test
itself needs no Python).  Run from anywhere with Debian's python3-pil:

    /usr/bin/python3 tests/data/gen-pil-resize.py

Writes, next to this script:

pil-resize.safetensors  U8 tensors, all [height, width, channels]:
    in.<MODE>                    the synthetic input (MODE = L, LA, RGB, RGBA), 37x23
    out.<MODE>.<FILTER>.<W>x<H>  Image.resize((W, H), FILTER) of that input
                                 (FILTER = bicubic, bilinear, nearest)
synth-l.png, synth-la.png, synth-rgb.png, synth-rgba.png
    the synthetic inputs as PNG files (lossless), for the loader tests
synth-2frames.gif
    two frames of mode L: the first is in.L, the second its negative

The synthetic image, identical to synth_value() in tests/test-image.c (all integers):
    v(x, y, c) = ((x * 7 + y * 13 + c * 50) ^ ((x * y * 3) & 63)) & 255
    alpha(x, y) = 0 for x < 4, 255 for x > 30, else (x * y * 5 + 17) & 255
    RGB = (v(x,y,0), v(x,y,1), v(x,y,2)); L = v(x,y,1); LA, RGBA add alpha.
The wrap-around at 255 gives hard edges, so bicubic overshoot and clipping are exercised.
"""

import os
import sys

import PIL
from PIL import Image

from pilref import H, W, synth, write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))


def raw(im):
    # tobytes() of LA is L,A interleaved; RGB and RGBA are interleaved too.
    data = im.tobytes()
    assert len(data) == im.size[0] * im.size[1] * len(im.getbands())
    return data


FILTERS = {
    "bicubic": Image.Resampling.BICUBIC,
    "bilinear": Image.Resampling.BILINEAR,
    "nearest": Image.Resampling.NEAREST,
}

# (mode, filter, width, height)
CASES = []
for size in [(16, 9), (10, 6), (80, 50), (37, 11), (20, 23), (50, 7), (74, 46), (1, 1),
             (24, 15), (13, 40)]:
    CASES.append(("RGB", "bicubic") + size)
for size in [(16, 9), (80, 50), (37, 11), (20, 23)]:
    CASES.append(("L", "bicubic") + size)
for size in [(16, 9), (55, 31), (37, 11), (50, 7)]:
    CASES.append(("RGB", "bilinear") + size)
    CASES.append(("L", "bilinear") + size)
for size in [(16, 9), (80, 50), (37, 11), (20, 23), (50, 7), (59, 41)]:
    CASES.append(("RGB", "nearest") + size)
for size in [(16, 9), (55, 31)]:
    CASES.append(("RGBA", "bicubic") + size)
    CASES.append(("LA", "bicubic") + size)
    CASES.append(("RGBA", "bilinear") + size)
    CASES.append(("RGBA", "nearest") + size)


def main():
    tensors = {}
    inputs = {m: synth(m) for m in ("L", "LA", "RGB", "RGBA")}
    for mode, im in inputs.items():
        tensors["in." + mode] = ((H, W, len(mode)), raw(im))
    for mode, flt, w, h in CASES:
        out = inputs[mode].resize((w, h), FILTERS[flt])
        assert out.mode == mode and out.size == (w, h)
        tensors["out.%s.%s.%dx%d" % (mode, flt, w, h)] = ((h, w, len(mode)), raw(out))
    write_safetensors(os.path.join(HERE, "pil-resize.safetensors"), tensors,
                      {"generator": "gen-pil-resize.py", "pillow": PIL.__version__})

    for mode, im in inputs.items():
        im.save(os.path.join(HERE, "synth-%s.png" % mode.lower()), optimize=True)
    first = inputs["L"]
    second = first.point(lambda p: 255 - p)
    first.save(os.path.join(HERE, "synth-2frames.gif"), save_all=True,
               append_images=[second], duration=100, loop=0)
    print("wrote %d tensors (Pillow %s)" % (len(tensors), PIL.__version__), file=sys.stderr)


if __name__ == "__main__":
    main()

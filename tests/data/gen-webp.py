#!/usr/bin/python3
"""Generates the Pillow reference data for WebP decoding in tests/test-image.c (a dev-time tool:
the test itself needs no Python).  Run from anywhere with Debian's python3-pil (built with the
same libwebp as vitlab):

    /usr/bin/python3 tests/data/gen-webp.py

Writes, into tests/data/webp/ next to this script, from the 37x23 synthetic image of
gen-pil-resize.py (RGB, and RGBA with its alpha):

lossy.webp        RGB, lossy (quality 80)
lossless.webp     RGB, lossless
alpha.webp        RGBA, lossless (so the alpha is exact)
alpha-lossy.webp  RGBA, lossy colour and alpha
anim.webp         two frames (the image, then its negative), RGB, lossless: the first is read
o6.webp           lossy RGB with an EXIF chunk saying orientation 6
webp.safetensors  U8 tensors [height, width, channels]: for each file, the pixels of
                  ImageOps.exif_transpose(Image.open(file)) in the mode Pillow gives it (RGB or
                  RGBA), its first frame for anim.webp
"""

import os
import struct
import sys

import PIL
from PIL import Image, ImageOps, features

from pilref import H, W, synth, write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "webp")


def exif_o6():
    """A little-endian TIFF structure with IFD 0 holding Orientation = 6."""
    out = b"II*\0" + struct.pack("<I", 8) + struct.pack("<H", 1)
    out += struct.pack("<HHI", 0x0112, 3, 1) + struct.pack("<HH", 6, 0) + struct.pack("<I", 0)
    return b"Exif\0\0" + out


def main():
    assert features.check("webp"), "Pillow without WebP"
    os.makedirs(OUT, exist_ok=True)
    rgb, rgba = synth("RGB"), synth("RGBA")
    rgb.save(os.path.join(OUT, "lossy.webp"), quality=80)
    rgb.save(os.path.join(OUT, "lossless.webp"), lossless=True)
    rgba.save(os.path.join(OUT, "alpha.webp"), lossless=True)
    rgba.save(os.path.join(OUT, "alpha-lossy.webp"), quality=80)
    neg = rgb.point(lambda p: 255 - p)
    rgb.save(os.path.join(OUT, "anim.webp"), save_all=True, append_images=[neg], duration=100,
             lossless=True)
    rgb.save(os.path.join(OUT, "o6.webp"), quality=80, exif=exif_o6())
    tensors = {}
    for name in sorted(os.listdir(OUT)):
        if not name.endswith(".webp"):
            continue
        im = Image.open(os.path.join(OUT, name))
        im.seek(0)
        up = ImageOps.exif_transpose(im)
        assert up.mode in ("RGB", "RGBA"), (name, up.mode)
        if name == "o6.webp":
            assert up.size == (H, W), up.size
        tensors[name] = ((up.size[1], up.size[0], len(up.mode)), up.tobytes())
    write_safetensors(os.path.join(OUT, "webp.safetensors"), tensors,
                      {"generator": "gen-webp.py", "pillow": PIL.__version__,
                       "libwebp": features.version("webp")}, sort=True)
    print("wrote %d files (Pillow %s, libwebp %s)" % (len(tensors), PIL.__version__,
                                                     features.version("webp")), file=sys.stderr)


if __name__ == "__main__":
    main()

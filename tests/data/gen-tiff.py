#!/usr/bin/python3
"""Generates the Pillow reference data for TIFF decoding in tests/test-image.c (a dev-time tool:
the test itself needs no Python).  Run from anywhere with Debian's python3-pil (built with the
same libtiff as vitlab):

    /usr/bin/python3 tests/data/gen-tiff.py

Writes, into tests/data/tiff/ next to this script, from the 37x23 synthetic image of
gen-pil-resize.py:

rgb.tif, rgb-lzw.tif, rgb-deflate.tif, rgb-packbits.tif, rgb-jpeg.tif
                   RGB, uncompressed / LZW / Deflate / PackBits / JPEG (quality 90)
gray.tif           8-bit gray (LZW)
bilevel.tif        1-bit (CCITT Group 4): the gray image thresholded at 128
palette.tif        a 16-colour palette image
o6.tif             RGB with the TIFF Orientation tag = 6
pages.tif          two pages (the image, then its negative): the first is read
tiled.tif          RGB in 16x16 tiles
tiff.safetensors   U8 tensors [height, width, channels]: for each file,
                   Image.open(file) converted to "L" (gray and 1-bit) or "RGB" (the rest), its
                   first page for pages.tif; Pillow's TIFF loader applies the Orientation tag
                   itself, so o6.tif comes out upright as vitlab reads it
rgba.tif, gray16.tif
                   RGBA and 16-bit gray: vitlab refuses them with the reason (no reference)
"""

import os
import sys

import PIL
from PIL import Image, features

from pilref import H, W, synth, write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "tiff")


def main():
    os.makedirs(OUT, exist_ok=True)
    rgb = synth("RGB")
    gray = rgb.convert("L")
    out = lambda name: os.path.join(OUT, name)
    rgb.save(out("rgb.tif"))
    rgb.save(out("rgb-lzw.tif"), compression="tiff_lzw")
    rgb.save(out("rgb-deflate.tif"), compression="tiff_adobe_deflate")
    rgb.save(out("rgb-packbits.tif"), compression="packbits")
    rgb.save(out("rgb-jpeg.tif"), compression="jpeg", quality=90)
    gray.save(out("gray.tif"), compression="tiff_lzw")
    gray.point(lambda p: 255 if p >= 128 else 0).convert("1").save(out("bilevel.tif"),
                                                                   compression="group4")
    rgb.quantize(16).save(out("palette.tif"))
    rgb.save(out("o6.tif"), tiffinfo={274: 6})
    rgb.save(out("pages.tif"), save_all=True, append_images=[rgb.point(lambda p: 255 - p)])
    rgb.save(out("tiled.tif"), tiffinfo={322: 16, 323: 16}, compression="tiff_lzw")
    tensors = {}
    for name in sorted(os.listdir(OUT)):
        if not name.endswith(".tif") or name in ("rgba.tif", "gray16.tif"):   # refused
            continue
        im = Image.open(out(name))
        im.seek(0)
        # Pillow's TIFF loader turns the image by its Orientation tag itself (load_end), so
        # Image.open + convert is upright already (exif_transpose would turn it twice)
        up = im.convert("L" if im.mode in ("L", "1") else "RGB")
        if name == "o6.tif":
            assert up.size == (H, W), up.size
        tensors[name] = ((up.size[1], up.size[0], len(up.getbands())), up.tobytes())
    write_safetensors(out("tiff.safetensors"), tensors,
                      {"generator": "gen-tiff.py", "pillow": PIL.__version__,
                       "libtiff": features.version("libtiff")}, sort=True)
    # refused ones, written after the references
    rgba = rgb.copy()
    rgba.putalpha(200)
    rgba.save(out("rgba.tif"))
    Image.new("I;16", (W, H), 1000).save(out("gray16.tif"))
    print("wrote %d references (Pillow %s, libtiff %s)" % (len(tensors), PIL.__version__,
                                                          features.version("libtiff")),
          file=sys.stderr)


if __name__ == "__main__":
    main()

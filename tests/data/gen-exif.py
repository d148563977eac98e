#!/usr/bin/python3
"""Generates the Pillow reference data for EXIF orientation in tests/test-image.c (a dev-time
tool: the test itself needs no Python).  Run from anywhere with Debian's python3-pil:

    /usr/bin/python3 tests/data/gen-exif.py

Writes, into tests/data/exif/ next to this script:

o1.jpg … o8.jpg   the 37x23 RGB synthetic image of gen-pil-resize.py saved as a JPEG (quality
                  95) with EXIF Orientation (IFD 0, tag 0x0112) = 1 … 8 and a camera make
                  and model beside it (so that the tag is not alone in its IFD)
o6-be.jpg         orientation 6 in a big-endian ("MM") TIFF structure
o6.png            the same image as a PNG whose eXIf chunk says orientation 6
o9.jpg            orientation 9: not a valid value, so the image stays as stored
exif.safetensors  U8 tensors [height, width, 3]: "o1.jpg" … for every file above, the pixels
                  of ImageOps.exif_transpose(Image.open(file).convert("RGB"))

A phone stores a portrait photo as landscape pixels with orientation 6; viewers, browsers and
exif_transpose show it upright. vitlab applies the orientation when it decodes, so its pixels
must equal exif_transpose's.
"""

import os
import struct
import sys

import PIL
from PIL import Image, ImageOps

from pilref import H, W, synth, write_safetensors

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "exif")


def exif_bytes(orientation, big_endian=False):
    """A TIFF structure (no "Exif\\0\\0"): IFD 0 with Make, Model and Orientation."""
    e = "<" if not big_endian else ">"
    make, model = b"vitlab\0", b"test camera\0"
    entries = 3
    ifd_size = 2 + 12 * entries + 4
    data_at = 8 + ifd_size
    out = (b"II*\0" if not big_endian else b"MM\0*") + struct.pack(e + "I", 8)
    out += struct.pack(e + "H", entries)
    out += struct.pack(e + "HHII", 0x010F, 2, len(make), data_at)
    out += struct.pack(e + "HHII", 0x0110, 2, len(model), data_at + len(make))
    # a SHORT fits in the value field, left-justified
    out += struct.pack(e + "HHI", 0x0112, 3, 1) + struct.pack(e + "HH", orientation, 0)
    out += struct.pack(e + "I", 0)
    return out + make + model


def main():
    os.makedirs(OUT, exist_ok=True)
    im = synth("RGB")
    files = {}
    for o in range(1, 10):
        if o == 9:
            files["o9.jpg"] = ("JPEG", exif_bytes(9))
        else:
            files["o%d.jpg" % o] = ("JPEG", exif_bytes(o))
    files["o6-be.jpg"] = ("JPEG", exif_bytes(6, big_endian=True))
    files["o6.png"] = ("PNG", exif_bytes(6))
    tensors = {}
    for name, (fmt, exif) in files.items():
        path = os.path.join(OUT, name)
        if fmt == "JPEG":
            im.save(path, "JPEG", quality=95, exif=b"Exif\0\0" + exif)
        else:
            im.save(path, "PNG", exif=exif)
        back = Image.open(path)
        want = int(name[1]) if name[1] != "9" else None
        got = back.getexif().get(0x0112)
        assert got == (9 if want is None else want), (name, got)
        assert back.mode == "RGB"
        up = ImageOps.exif_transpose(back)
        turned = want is not None and want >= 5
        assert up.size == ((H, W) if turned else (W, H)), (name, up.size)
        tensors[name] = ((up.size[1], up.size[0], 3), up.tobytes())
    write_safetensors(os.path.join(OUT, "exif.safetensors"), tensors,
                      {"generator": "gen-exif.py", "pillow": PIL.__version__}, sort=True)
    print("wrote %d files (Pillow %s)" % (len(files), PIL.__version__), file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Writes data/samples/: the first 3 Fashion-MNIST test images of each class as 8-bit gray PNG,
named CLASSINDEX-CLASSNAME-N.png, so the attention view has something to show before any
dataset is opened. Needs only the Python standard library (zlib for PNG) and Debian's
dataset-fashion-mnist. Re-running writes identical bytes.

    python3 scripts/make-samples.py [/usr/share/datasets/fashion-mnist] [data/samples]
"""
import gzip
import os
import struct
import sys
import zlib

NAMES = ["t-shirt-top", "trouser", "pullover", "dress", "coat",
         "sandal", "shirt", "sneaker", "bag", "ankle-boot"]
PER_CLASS = 3


def png_gray(width, height, rows):
    def chunk(kind, data):
        c = struct.pack(">I", len(data)) + kind + data
        return c + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    raw = b"".join(b"\x00" + bytes(r) for r in rows)
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 9))
            + chunk(b"IEND", b""))


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else "/usr/share/datasets/fashion-mnist"
    out = sys.argv[2] if len(sys.argv) > 2 else "data/samples"
    with gzip.open(os.path.join(src, "t10k-images-idx3-ubyte.gz")) as f:
        magic, n, h, w = struct.unpack(">IIII", f.read(16))
        assert magic == 2051, "not an IDX image file"
        pixels = f.read(n * h * w)
    with gzip.open(os.path.join(src, "t10k-labels-idx1-ubyte.gz")) as f:
        magic, n2 = struct.unpack(">II", f.read(8))
        assert magic == 2049 and n2 == n, "labels do not match the images"
        labels = f.read(n)
    os.makedirs(out, exist_ok=True)
    taken = [0] * 10
    for i in range(n):
        k = labels[i]
        if taken[k] >= PER_CLASS:
            continue
        img = pixels[i * h * w:(i + 1) * h * w]
        rows = [img[r * w:(r + 1) * w] for r in range(h)]
        name = "%d-%s-%d.png" % (k, NAMES[k], taken[k])
        with open(os.path.join(out, name), "wb") as f:
            f.write(png_gray(w, h, rows))
        taken[k] += 1
        if min(taken) == PER_CLASS:
            break
    print("wrote %d samples to %s" % (sum(taken), out))


if __name__ == "__main__":
    main()

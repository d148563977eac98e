#!/usr/bin/python3
"""Makes an image + CSV regression set from any folder of photos: each photo turned by a seeded
uniform angle in [-max, max] degrees (bicubic, then the largest centred square with no corner
of the canvas showing, so the border gives nothing away), the target being that angle.

    bench/make_regress_set.py ../shared/datasets/hymenoptera OUT [--max-angle 30] [--seed 0]
    bench/make_regress_set.py fashion-mnist OUT --classes 0-4 --per-class 200 [--max-angle 45]

SRC/train and SRC/val (any depth of subfolders) become OUT/train and OUT/val, each with its
images and a targets.csv (file,angle); a SRC without train/ and val/ becomes OUT/ with one
targets.csv (vitlab then makes a seeded split). Used by bench/regress_ref.py and README's
regression table; the set is not committed.
"""
import argparse
import gzip
import math
import os
import random

from PIL import Image

EXTS = (".jpg", ".jpeg", ".png", ".bmp")


def photos(folder):
    out = []
    for root, _, files in os.walk(folder):
        for f in sorted(files):
            if f.lower().endswith(EXTS) and not f.startswith("."):
                out.append(os.path.join(root, f))
    return sorted(out)


def turned(img, angle):
    w, h = img.size
    r = img.rotate(angle, resample=Image.BICUBIC, expand=False)
    # the largest axis-aligned square inside the turned w x h rectangle, about the centre
    a = math.radians(abs(angle))
    side = min(w, h) / (math.cos(a) + math.sin(a))
    s = int(side)
    left, top = (w - s) // 2, (h - s) // 2
    return r.crop((left, top, left + s, top + s))


def make(src, dst, rng, max_angle):
    os.makedirs(dst, exist_ok=True)
    rows = []
    for i, path in enumerate(photos(src)):
        angle = rng.uniform(-max_angle, max_angle)
        img = Image.open(path).convert("RGB")
        name = "%05d.jpg" % i
        turned(img, angle).save(os.path.join(dst, name), quality=92)
        rows.append((name, angle))
    with open(os.path.join(dst, "targets.csv"), "w") as f:
        f.write("file,angle\n")
        for name, angle in rows:
            f.write("%s,%.4f\n" % (name, angle))
    return len(rows)


FMNIST = "/usr/share/datasets/fashion-mnist"


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[:4], "big")
    n = int.from_bytes(data[4:8], "big")
    if magic == 0x801:
        return list(data[8:8 + n])
    rows, cols = int.from_bytes(data[8:12], "big"), int.from_bytes(data[12:16], "big")
    return [data[16 + i * rows * cols:16 + (i + 1) * rows * cols] for i in range(n)], rows, cols


def make_fmnist(out, rng, max_angle, classes, per_class):
    """Fashion-MNIST garments of `classes`, the first per_class of each (train: training file,
    val: test file), turned about their centre (bilinear, black outside) as 28 x 28 PNGs."""
    for split, stem in (("train", "train"), ("val", "t10k")):
        labels = idx(os.path.join(FMNIST, stem + "-labels-idx1-ubyte.gz"))
        images, rows, cols = idx(os.path.join(FMNIST, stem + "-images-idx3-ubyte.gz"))
        dst = os.path.join(out, split)
        os.makedirs(dst, exist_ok=True)
        taken = {c: 0 for c in classes}
        lines = []
        for i, y in enumerate(labels):
            if y not in taken or taken[y] >= per_class:
                continue
            taken[y] += 1
            angle = rng.uniform(-max_angle, max_angle)
            img = Image.frombytes("L", (cols, rows), images[i])
            name = "%05d.png" % i
            img.rotate(angle, resample=Image.BILINEAR, fillcolor=0).save(os.path.join(dst, name))
            lines.append("%s,%.4f\n" % (name, angle))
        with open(os.path.join(dst, "targets.csv"), "w") as f:
            f.write("file,angle\n")
            f.writelines(lines)
        print("%s: %d images" % (split, len(lines)))


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("src")
    ap.add_argument("out")
    ap.add_argument("--max-angle", type=float, default=30.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", default="0-4", help="fashion-mnist: e.g. 0-4 or 0,2,5")
    ap.add_argument("--per-class", type=int, default=200)
    a = ap.parse_args()
    rng = random.Random(a.seed)
    if a.src == "fashion-mnist":
        classes = []
        for part in a.classes.split(","):
            lo, _, hi = part.partition("-")
            classes += list(range(int(lo), int(hi or lo) + 1))
        make_fmnist(a.out, rng, a.max_angle, classes, a.per_class)
        return
    splits = [s for s in ("train", "val") if os.path.isdir(os.path.join(a.src, s))]
    if len(splits) == 2:
        for s in splits:
            n = make(os.path.join(a.src, s), os.path.join(a.out, s), rng, a.max_angle)
            print("%s: %d images" % (s, n))
    else:
        print("%d images" % make(a.src, a.out, rng, a.max_angle))


if __name__ == "__main__":
    main()

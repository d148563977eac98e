#!/usr/bin/python3
"""The PyTorch reference of vitlab's segmentation recipes (vitlab-cli train --task segment
--seg-head linear|upconv [--unlock N | --unlock-schedule S] [--layer-decay D] [--init random]
[--cache-features]), for the comparison in README.md:

    bench/seg_ref.py --backbone ../shared/weights/vit-tiny-augreg-in1k \\
        --data ../shared/datasets/pets-voc [--epochs 20] [--lr 1e-2] [--wd 0.05] [--batch 32] \\
        [--warmup 1] [--size 224] [--seed 0] [--head linear|upconv] \\
        [--unlock N | --unlock-schedule 0:1,1:3] [--layer-decay D] [--init random]
    bench/seg_ref.py --backbone data/backbones/vitlab-fmnist-tiny --preset scenes [...]

With --unlock 1 (the default) this is the frozen probe on cached final-norm tokens, as below.
With more groups unlocked (the layer groups as vitlab counts them: stem, blocks, final norm, the
seg head last; unlock N trains the last N) the activations below the first trainable group are
cached once per lock (vitlab's --cache-features) unless the stem trains, when every step runs
from the images; layer decay scales the head by 1, the final norm and the last block by D,
block i by D^(depth - i), the stem by D^(depth + 1) (vitlab's seg-head layer ids); no weight
decay on 1-D tensors, pos_embed and cls_token. --init random initialises the backbone as timm
does (trunc-normal 0.02 linears and position embedding, zero biases). --preset scenes takes the
data and recipe of `vitlab-cli train --preset scenes` (engine/train/vl-preset.c); DATA may also be
fashion-mnist-scenes:train=N,val=N,size=S[,classes=A-B][,seed=N], generated here exactly as
vitlab does (engine/data/vl-data-scenes.c make_scenes: the same xoshiro256** draws, the same garments,
places and masks) from Debian's Fashion-MNIST.

DATA is a Pascal VOC layout (JPEGImages/, SegmentationClass/ index PNGs with 255 ignored,
ImageSets/Segmentation/{train,val}.txt, labels.txt). The recipe, as vitlab runs it: every image
squashed to size x size (Pillow resize with the checkpoint's interpolation, no crop), normalised
with its mean and std; training masks resized with nearest neighbour; the frozen backbone's
final-norm patch tokens computed once (prefix tokens dropped); a 1x1 convolution W -> K
(mmsegmentation's conv_seg: weight N(0, 0.01), bias 0) whose logits are upsampled bilinearly
(align_corners=False) to size x size; per-pixel cross-entropy with ignore_index=255; AdamW
(betas 0.9/0.999, eps 1e-8, weight decay on the weight only); linear warmup over --warmup epochs
then cosine decay to 0, per step; shuffled batches. Validation: the logits at size x size
upsampled bilinearly to each image's own size, scored against its original mask with
mmsegmentation's IoUMetric (areas summed over the split, classes absent from both skipped).
Prints per-class IoU, mIoU, aAcc, mAcc and the wall time. The backbone is rebuilt by
tests/interop/timm_vit.py.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "interop"))
import timm_vit  # noqa: E402

EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".gif")


def read_split(root, split):
    with open(os.path.join(root, "ImageSets", "Segmentation", split + ".txt")) as f:
        ids = [l.strip() for l in f if l.strip()]
    items = []
    for i in ids:
        img = next(os.path.join(root, "JPEGImages", i + e) for e in EXTS
                   if os.path.exists(os.path.join(root, "JPEGImages", i + e)))
        items.append((img, os.path.join(root, "SegmentationClass", i + ".png")))
    return items


class LN2d(nn.Module):
    """LayerNorm over the channels of an NCHW map (mmseg's / ViTDet's LayerNorm2d)."""

    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def make_head(kind, W, K):
    """linear: conv_seg W -> K; upconv: ConvTranspose2d W -> W/2, LN, GELU, ConvTranspose2d
    W/2 -> W/4, conv_seg W/4 -> K (PyTorch's default init for the transposed convs)."""
    c = W if kind == "linear" else W // 4
    conv_seg = nn.Conv2d(c, K, 1)
    nn.init.normal_(conv_seg.weight, 0.0, 0.01)
    nn.init.zeros_(conv_seg.bias)
    if kind == "linear":
        return conv_seg
    return nn.Sequential(nn.ConvTranspose2d(W, W // 2, 2, 2), LN2d(W // 2), nn.GELU(),
                         nn.ConvTranspose2d(W // 2, W // 4, 2, 2), conv_seg)


def load_mask(path):
    m = Image.open(path)
    assert m.mode in ("P", "L"), (path, m.mode)
    return m


FMNIST_DIR = "/usr/share/datasets/fashion-mnist"
FMNIST_NAMES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                "Sneaker", "Bag", "Ankle boot"]
M64 = (1 << 64) - 1


def splitmix(x):
    """vl_rng_splitmix: returns (the new state, the output)."""
    x = (x + 0x9e3779b97f4a7c15) & M64
    z = x
    z = ((z ^ (z >> 30)) * 0xbf58476d1ce4e5b9) & M64
    z = ((z ^ (z >> 27)) * 0x94d049bb133111eb) & M64
    return x, z ^ (z >> 31)


class Xoshiro:
    """vl-rng.h: splitmix64 seeding xoshiro256**, uniform = (next >> 11) * 2^-53, normal by
    Box-Muller as vl_rng_normal."""

    def __init__(self, seed):
        self.s = []
        x = seed & M64
        for _ in range(4):
            x, z = splitmix(x)
            self.s.append(z)

    def next(self):
        s = self.s
        t = (s[1] << 17) & M64
        x = (s[1] * 5) & M64
        result = ((((x << 7) | (x >> 57)) & M64) * 9) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = ((s[3] << 45) | (s[3] >> 19)) & M64
        return result

    def uniform(self):
        return (self.next() >> 11) * (1.0 / 9007199254740992.0)

    def normal(self):
        u1, u2 = self.uniform(), self.uniform()
        return math.sqrt(-2.0 * math.log(1.0 - u1)) * math.cos(6.283185307179586 * u2)


def read_idx(path):
    import gzip
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = int.from_bytes(data[0:4], "big")
    if magic == 2049:
        return np.frombuffer(data, np.uint8, offset=8)
    n, h, w = (int.from_bytes(data[4 + 4 * i:8 + 4 * i], "big") for i in range(3))
    return np.frombuffer(data, np.uint8, offset=16).reshape(n, h, w)


def parse_classes(spec):
    out = []
    for part in spec.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def make_scenes(spec):
    """fashion-mnist-scenes[:train=1000,val=500,size=84,classes=0-9,seed=0] as vitlab makes it:
    returns (names, [(train images (n, S, S) uint8, masks)], [(val ...)])."""
    opts = {"train": "1000", "val": "500", "size": "84", "classes": "0-9", "seed": "0"}
    rest = spec.split(":", 1)[1] if ":" in spec else ""
    key = None
    for tok in rest.split(","):
        if not tok:
            continue
        if "=" in tok:
            key, v = tok.split("=", 1)
            opts[key] = v
        elif key == "classes":
            opts["classes"] += "," + tok
    classes = parse_classes(opts["classes"])
    S, seed = int(opts["size"]), int(opts["seed"])
    cmap = {c: k for k, c in enumerate(classes)}
    out = []
    for split, n_scenes, stem, salt in ((0, int(opts["train"]), "train", 0x5ce7e5),
                                        (1, int(opts["val"]), "t10k", 0x7e57)):
        labels = read_idx(os.path.join(FMNIST_DIR, stem + "-labels-idx1-ubyte.gz"))
        images = read_idx(os.path.join(FMNIST_DIR, stem + "-images-idx3-ubyte.gz"))
        take = [i for i in range(len(labels)) if int(labels[i]) in cmap]
        rng = Xoshiro(seed ^ salt)
        pix = np.zeros((n_scenes, S, S), np.uint8)
        mask = np.zeros((n_scenes, S, S), np.uint8)
        for sc in range(n_scenes):
            boxes = []
            n_items = 1 + int(rng.uniform() * 3)
            for _ in range(n_items):
                src = take[int(rng.uniform() * len(take))]
                r = images[src]
                label = cmap[int(labels[src])]
                ys, xs = np.nonzero(r >= 26)
                if len(xs) == 0:
                    continue
                x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
                if x1 - x0 + 1 > S or y1 - y0 + 1 > S:
                    continue
                for _attempt in range(50):
                    px = -x0 + int(rng.uniform() * (S - (x1 - x0)))
                    py = -y0 + int(rng.uniform() * (S - (y1 - y0)))
                    b = (px + x0, py + y0, px + x1, py + y1)
                    if any(b[0] <= o[2] and o[0] <= b[2] and b[1] <= o[3] and o[1] <= b[3]
                           for o in boxes):
                        continue
                    boxes.append(b)
                    for y in range(28):
                        for x in range(28):
                            cy, cx = py + y, px + x
                            if cx < 0 or cy < 0 or cx >= S or cy >= S:
                                continue
                            v = r[y, x]
                            pix[sc, cy, cx] = max(pix[sc, cy, cx], v)
                            if v >= 26 and y0 <= y <= y1 and x0 <= x <= x1:
                                mask[sc, cy, cx] = label + 1
                    break
        out.append((pix, mask))
    names = ["background"] + [FMNIST_NAMES[c] for c in classes]
    return names, out[0], out[1]


def parse_schedule(s):
    steps = []
    for part in s.split(","):
        e, n = part.split(":") if ":" in part else ("0", part)
        steps.append((int(e), 10 ** 6 if n == "all" else int(n)))
    return sorted(steps)


def unlocked_at(steps, epoch):
    n = steps[0][1]
    for e, k in steps:
        if e <= epoch:
            n = k
    return n


def resample_pos_embed(model, S):
    """timm's resample_abs_pos_embed for an input of S x S (prefix tokens kept, bicubic)."""
    p = model.patch_embed.patch_size[0]
    G0 = model.patch_embed.grid_size[0]
    if S // p == G0:
        return
    n_pre = 0 if model.no_embed_class else model.num_prefix_tokens
    pe = model.pos_embed.data
    pre, grid = pe[:, :n_pre], pe[:, n_pre:]
    W = grid.shape[-1]
    grid = grid.reshape(1, G0, G0, W).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, size=(S // p, S // p), mode="bicubic", align_corners=False)
    grid = grid.permute(0, 2, 3, 1).reshape(1, -1, W)
    model.pos_embed = nn.Parameter(torch.cat([pre, grid], dim=1))
    model.patch_embed.img_size = (S, S)
    model.patch_embed.grid_size = (S // p, S // p)


def init_random(model, seed):
    """timm's init_weights_vit_timm: trunc_normal(0.02) linears and pos_embed, zero biases,
    cls_token N(0, 1e-6), LayerNorms 1 / 0; the patch embedding's conv PyTorch's default."""
    torch.manual_seed(seed)
    for name, mod in model.named_modules():
        if isinstance(mod, nn.Conv2d):
            mod.reset_parameters()   # the patch embedding: PyTorch's default, as timm leaves it
        elif isinstance(mod, nn.Linear):
            nn.init.trunc_normal_(mod.weight, std=0.02)
            if mod.bias is not None:
                nn.init.zeros_(mod.bias)
        elif isinstance(mod, nn.LayerNorm):
            nn.init.ones_(mod.weight)
            nn.init.zeros_(mod.bias)
    if model.pos_embed is not None:
        nn.init.trunc_normal_(model.pos_embed, std=0.02)
    if model.cls_token is not None:
        nn.init.normal_(model.cls_token, std=1e-6)


PRESETS = {
    # engine/train/vl-preset.c "scenes"
    "scenes": dict(data="fashion-mnist-scenes:train=400,val=200,size=40", size=40, epochs=8,
                   batch=16, lr=1e-2, wd=0.05, warmup=1.0, layer_decay=0.6,
                   unlock_schedule="0:1,1:3", head="linear"),
}


def load_data(a, S, interp, mean, std):
    """(names, train (x (n, C, S, S) float, y (n, S, S) long), val (x, [own-size masks]))."""
    if a.data.startswith("fashion-mnist-scenes"):
        names, (tp, tm), (vp, vm) = make_scenes(a.data)
        C = tp.shape[1]
        if C != S:
            raise SystemExit("seg_ref.py: scenes of %d px at an input of %d: use --size %d"
                             % (C, S, C))
        norm = lambda p: (p.astype(np.float32)[:, None] / 255.0 - mean) / std
        return (names, (torch.from_numpy(norm(tp)), torch.from_numpy(tm.astype(np.int64))),
                (torch.from_numpy(norm(vp)), [v.astype(np.int64) for v in vm]))
    names = [l.strip() for l in open(os.path.join(a.data, "labels.txt")) if l.strip()]
    sets = []
    for split in ("train", "val"):
        xs, ms = [], []
        for img_path, mask_path in read_split(a.data, split):
            img = Image.open(img_path).convert("RGB").resize((S, S), interp)
            x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
            xs.append((x - mean) / std)
            m = load_mask(mask_path)
            if split == "train":
                ms.append(np.asarray(m.resize((S, S), Image.NEAREST), dtype=np.int64))
            else:
                ms.append(np.asarray(m, dtype=np.int64))
        x = torch.from_numpy(np.stack(xs))
        sets.append((x, torch.from_numpy(np.stack(ms)) if split == "train" else ms))
    return names, sets[0], sets[1]


class Segmenter(nn.Module):
    """The backbone's layer groups (stem, blocks, final norm) and the seg head, run from any
    group on: forward(x, start) takes the activations entering group `start`."""

    def __init__(self, model, head):
        super().__init__()
        self.model, self.head = model, head
        self.depth = len(model.blocks)

    def groups(self):
        m = self.model
        stem = [p for n, p in m.named_parameters()
                if not n.startswith(("blocks.", "norm.", "head.", "fc_norm."))]
        return ([stem] + [list(b.parameters()) for b in m.blocks] + [list(m.norm.parameters())]
                + [list(self.head.parameters())])

    def features(self, x, start, stop):
        """Groups start .. stop - 1 of the backbone (0 stem, 1..depth blocks, depth + 1 norm)."""
        m = self.model
        if start == 0 and stop > 0:
            x = m.norm_pre(m._pos_embed(m.patch_embed(x)))
        for g in range(max(start, 1), min(stop, self.depth + 1)):
            x = m.blocks[g - 1](x)
        if start <= self.depth + 1 < stop:
            x = m.norm(x)
        return x

    def logits(self, tokens, S):
        p = self.model.num_prefix_tokens
        G = S // self.model.patch_embed.patch_size[0]
        t = tokens[:, p:].reshape(-1, G, G, tokens.shape[-1]).permute(0, 3, 1, 2)
        return F.interpolate(self.head(t), size=(S, S), mode="bilinear", align_corners=False)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--data")
    ap.add_argument("--preset", choices=sorted(PRESETS))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--lr", type=float)
    ap.add_argument("--wd", type=float)
    ap.add_argument("--batch", type=int)
    ap.add_argument("--warmup", type=float)
    ap.add_argument("--size", type=int)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", choices=("linear", "upconv"))
    ap.add_argument("--unlock", help="N or all: the last N layer groups train (1: the probe)")
    ap.add_argument("--unlock-schedule", help="epoch:N,... as vitlab-cli's")
    ap.add_argument("--layer-decay", type=float)
    ap.add_argument("--init", choices=("pretrained", "random"), default="pretrained")
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (default: every core)")
    ap.add_argument("--no-cache", action="store_true",
                    help="run the frozen groups at every step (vitlab without --cache-features)")
    a = ap.parse_args()
    defaults = dict(data=None, epochs=20, lr=1e-2, wd=0.05, batch=32, warmup=1.0, size=0,
                    head="linear", layer_decay=1.0, unlock_schedule=None)
    defaults.update(PRESETS.get(a.preset, {}))
    for k, v in defaults.items():
        if getattr(a, k, None) is None:
            setattr(a, k, v)
    if a.data is None:
        raise SystemExit("seg_ref.py: --data or --preset is needed")
    if a.unlock is not None:
        a.unlock_schedule = "0:" + a.unlock
    steps = parse_schedule(a.unlock_schedule or "0:1")
    torch.set_num_threads(a.threads or os.cpu_count() or 1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    model, _, _ = timm_vit.load_like_timm(a.backbone)
    cfg = model.pretrained_cfg
    S = a.size or cfg["input_size"][-1]
    resample_pos_embed(model, S)
    if a.init == "random":
        init_random(model, a.seed)
    interp = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
              "nearest": Image.NEAREST}[cfg.get("interpolation", "bicubic")]
    C = cfg["input_size"][0]
    mean = np.array(cfg["mean"], dtype=np.float32)[:C].reshape(-1, 1, 1)
    std = np.array(cfg["std"], dtype=np.float32)[:C].reshape(-1, 1, 1)
    names, (xtr, ytr), (xva, yva) = load_data(a, S, interp, mean, std)
    K = len(names)
    torch.manual_seed(a.seed)
    net = Segmenter(model, make_head(a.head, model.embed_dim, K))
    groups = net.groups()
    n_groups, L = len(groups), net.depth
    scales = [a.layer_decay ** (L + 1)] + [a.layer_decay ** (L - i) for i in range(L)] \
        + [a.layer_decay, 1.0]
    no_decay_names = {"pos_embed", "cls_token", "dist_token", "reg_token"}
    named = {id(p): n for n, p in net.named_parameters()}
    param_groups = []
    for g, params in enumerate(groups):
        for decays in (True, False):
            ps = [p for p in params if (p.ndim >= 2 and
                                        named[id(p)].split(".")[-1] not in no_decay_names)
                  == decays]
            if ps:
                param_groups.append({"params": ps, "weight_decay": a.wd if decays else 0.0,
                                     "scale": scales[g]})
    opt = torch.optim.AdamW(param_groups, lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    n = xtr.shape[0]
    spe = (n + a.batch - 1) // a.batch
    total = a.epochs * spe
    warm = min(int(round(a.warmup * spe)), total)
    step, cache, cache_start, t_cache = 0, None, None, 0.0
    model.eval()
    for epoch in range(a.epochs):
        N = min(unlocked_at(steps, epoch), n_groups)
        first = n_groups - N                      # the first trainable group
        for g, params in enumerate(groups):
            for p_ in params:
                p_.requires_grad_(g >= first)
        start = first if (first >= 1 and not a.no_cache) else 0
        if start > 0 and cache_start != start:
            tc = time.time()
            with torch.no_grad():
                cache = torch.cat([net.features(xtr[i:i + a.batch], 0, start)
                                   for i in range(0, n, a.batch)])
            cache_start = start
            t_cache += time.time() - tc
        perm = torch.randperm(n)
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            if step < warm:
                lr = a.lr * (step + 1) / warm
            else:
                prog = min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)
                lr = a.lr * 0.5 * (1.0 + math.cos(math.pi * prog))
            for pg in opt.param_groups:
                pg["lr"] = lr * pg["scale"]
            inp = cache[idx] if start > 0 else xtr[idx]
            z = net.logits(net.features(inp, start, L + 2), S)
            loss = F.cross_entropy(z, ytr[idx], ignore_index=255)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
        print("epoch %d/%d  unlocked %d  loss %.4f" % (epoch + 1, a.epochs, N, loss.item()),
              flush=True)
    t_train = time.time() - t0

    inter = np.zeros(K, np.int64)
    union = np.zeros(K, np.int64)
    area_l = np.zeros(K, np.int64)
    with torch.no_grad():
        for j in range(xva.shape[0]):
            y = yva[j]
            z = net.logits(net.features(xva[j:j + 1], 0, L + 2), S)
            z = F.interpolate(z, size=y.shape, mode="bilinear", align_corners=False)
            pred = z[0].argmax(0).numpy()
            keep = y != 255
            pr, gt = pred[keep], y[keep]
            ai = np.bincount(pr[pr == gt], minlength=K)[:K]
            ap_ = np.bincount(pr, minlength=K)[:K]
            al = np.bincount(gt[gt < K], minlength=K)[:K]
            inter += ai
            union += ap_ + al - ai
            area_l += al
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / union
        acc = inter / area_l
    for k in range(K):
        print("%-20s IoU %.4f  Acc %.4f" % (names[k], iou[k], acc[k]))
    print("cache_s=%.1f" % t_cache)
    print("train_s=%.1f" % t_train)
    print("seconds=%.1f" % (time.time() - t0))
    print("val_aacc=%.4f" % (inter.sum() / area_l.sum()))
    print("val_macc=%.4f" % np.nanmean(acc))
    print("val_miou=%.4f" % np.nanmean(iou))


if __name__ == "__main__":
    main()

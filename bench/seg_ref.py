#!/usr/bin/python3
"""The PyTorch reference of vitlab's frozen linear segmentation recipe (vitlab-cli train --task
segment --seg-head linear|upconv --unlock 1 --cache-features), for the comparison in README.md:

    bench/seg_ref.py --backbone ../shared/weights/vit-tiny-augreg-in1k \\
        --data ../shared/datasets/pets-voc [--epochs 20] [--lr 1e-2] [--wd 0.05] [--batch 32] \\
        [--warmup 1] [--size 224] [--seed 0] [--head linear|upconv]

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


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-2)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--head", choices=("linear", "upconv"), default="linear")
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    model, _, _ = timm_vit.load_like_timm(a.backbone)
    model.eval()
    cfg = model.pretrained_cfg
    S = a.size or cfg["input_size"][-1]
    interp = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
              "nearest": Image.NEAREST}[cfg.get("interpolation", "bicubic")]
    mean = np.array(cfg["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(cfg["std"], dtype=np.float32).reshape(-1, 1, 1)
    labels = os.path.join(a.data, "labels.txt")
    names = [l.strip() for l in open(labels) if l.strip()]
    K = len(names)
    p = model.num_prefix_tokens
    patch = model.patch_embed.proj.kernel_size[0]
    G = S // patch

    def tokens(items, train):
        feats, masks, full = [], [], []
        with torch.no_grad():
            for i in range(0, len(items), a.batch):
                xs = []
                for img_path, mask_path in items[i:i + a.batch]:
                    img = Image.open(img_path).convert("RGB").resize((S, S), interp)
                    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
                    xs.append((x - mean) / std)
                    m = load_mask(mask_path)
                    if train:
                        masks.append(np.asarray(m.resize((S, S), Image.NEAREST), dtype=np.int64))
                    else:
                        full.append(np.asarray(m, dtype=np.int64))
                tok = model.forward_features(torch.from_numpy(np.stack(xs)))
                feats.append(tok[:, p:].reshape(-1, G, G, tok.shape[-1]).permute(0, 3, 1, 2))
        return torch.cat(feats), (torch.from_numpy(np.stack(masks)) if train else full)

    tr, va = read_split(a.data, "train"), read_split(a.data, "val")
    xtr, ytr = tokens(tr, True)
    xva, yva = tokens(va, False)
    t_feat = time.time() - t0

    head = make_head(a.head, xtr.shape[1], K)
    decay = [p_ for p_ in head.parameters() if p_.ndim >= 2]
    no_decay = [p_ for p_ in head.parameters() if p_.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    n = xtr.shape[0]
    spe = (n + a.batch - 1) // a.batch
    total = a.epochs * spe
    warm = min(int(round(a.warmup * spe)), total)
    step = 0
    for epoch in range(a.epochs):
        perm = torch.randperm(n)
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            if step < warm:
                lr = a.lr * (step + 1) / warm
            else:
                prog = min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)
                lr = a.lr * 0.5 * (1.0 + math.cos(math.pi * prog))
            for g in opt.param_groups:
                g["lr"] = lr
            z = F.interpolate(head(xtr[idx]), size=(S, S), mode="bilinear", align_corners=False)
            loss = F.cross_entropy(z, ytr[idx], ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    t_train = time.time() - t0 - t_feat

    inter = np.zeros(K, np.int64)
    union = np.zeros(K, np.int64)
    area_l = np.zeros(K, np.int64)
    with torch.no_grad():
        for j in range(xva.shape[0]):
            y = yva[j]
            z = F.interpolate(head(xva[j:j + 1]), size=(S, S), mode="bilinear",
                              align_corners=False)
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
    print("features_s=%.1f" % t_feat)
    print("train_s=%.1f" % t_train)
    print("seconds=%.1f" % (time.time() - t0))
    print("val_aacc=%.4f" % (inter.sum() / area_l.sum()))
    print("val_macc=%.4f" % np.nanmean(acc))
    print("val_miou=%.4f" % np.nanmean(iou))


if __name__ == "__main__":
    main()

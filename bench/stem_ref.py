#!/usr/bin/python3
"""The PyTorch reference of vitlab's stem experiment (README "CNN stems"): the same recipe as

    vitlab-cli train --backbone CKPT --data SPEC --stem conv|mbconv --train-groups stem,head
    vitlab-cli train --backbone CKPT --data SPEC --unlock 1               (head only)
    vitlab-cli train --backbone CKPT --data SPEC --unlock-schedule 0:all  (full fine-tune)

    bench/stem_ref.py --backbone CKPT --data fmnist:5-9:100:200 --mode conv [--epochs 10] ...
    bench/stem_ref.py --backbone CKPT --data ../shared/datasets/hymenoptera --mode head ...

--mode conv / mbconv replace the patch embedding with vitlab's stem rebuilt in PyTorch
(tests/data/gen-stems.py's ConvStem / MBConvStem, PyTorch's default initialisation) and train it
with cls_token, pos_embed (vitlab's stem layer group) and a new head, the transformer frozen
(requires_grad False; BatchNorm in train mode); head trains the head only; full trains everything.
Recipe: AdamW (betas 0.9/0.999, eps 1e-8, weight decay on >= 2-D weights but pos_embed and
cls_token), linear warmup over --warmup epochs then cosine to 0 per step, cross-entropy, shuffled
batches, no augmentation. Data: "fmnist:C0-C1:TRAIN:VAL" takes the first TRAIN training and VAL
test images of each class C0..C1 of /usr/share/datasets/fashion-mnist (vitlab draws its own
subset: not the same images); a folder with train/ and val/ class folders is read with timm's eval
preprocessing (bench/regress_ref.py). Prints val_acc and the wall time. Run with /usr/bin/python3.
"""
import argparse
import gzip
import math
import os
import sys
import time

import importlib.util
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "interop"))
sys.path.insert(0, HERE)
import timm_vit  # noqa: E402
from regress_ref import preprocess  # noqa: E402

_THREADS = torch.get_num_threads()
_spec = importlib.util.spec_from_file_location(
    "gen_stems", os.path.join(HERE, "..", "tests", "data", "gen-stems.py"))
gen_stems = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_stems)
torch.set_num_threads(_THREADS)


def idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    n = int.from_bytes(data[4:8], "big")
    if int.from_bytes(data[:4], "big") == 0x801:
        return np.frombuffer(data[8:8 + n], dtype=np.uint8)
    r, c = int.from_bytes(data[8:12], "big"), int.from_bytes(data[12:16], "big")
    return np.frombuffer(data[16:16 + n * r * c], dtype=np.uint8).reshape(n, 1, r, c)


def fmnist(spec, cfg):
    _, cls, ntr, nva = spec.split(":")
    c0, c1 = (int(v) for v in cls.split("-"))
    root = "/usr/share/datasets/fashion-mnist"
    mean, std = cfg["mean"][0], cfg["std"][0]
    out = []
    for split, per in (("train", int(ntr)), ("t10k", int(nva))):
        x = idx(os.path.join(root, split + "-images-idx3-ubyte.gz"))
        y = idx(os.path.join(root, split + "-labels-idx1-ubyte.gz"))
        keep = np.concatenate([np.nonzero(y == k)[0][:per] for k in range(c0, c1 + 1)])
        xs = (torch.from_numpy(x[keep].astype(np.float32)) / 255.0 - mean) / std
        out += [xs, torch.from_numpy(y[keep].astype(np.int64) - c0)]
    return out


def folder(path, cfg, in_chans):
    prep = preprocess(cfg, in_chans)
    out = []
    for split in ("train", "val"):
        classes = sorted(os.listdir(os.path.join(path, split)))
        xs, ys = [], []
        for k, c in enumerate(classes):
            d = os.path.join(path, split, c)
            for f in sorted(os.listdir(d)):
                xs.append(prep(os.path.join(d, f)))
                ys.append(k)
        out += [torch.from_numpy(np.stack(xs)), torch.tensor(ys)]
    return out


class StemEmbed(nn.Module):
    """A CNN stem as the ViT's patch_embed: (B, C, H, W) -> (B, gh gw, W)."""
    def __init__(self, stem):
        super().__init__()
        self.stem = stem

    def forward(self, x):
        return self.stem(x).flatten(2).transpose(1, 2)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--mode", choices=("conv", "mbconv", "head", "full"), required=True)
    ap.add_argument("--epochs", type=int, default=10)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0,
                    help="torch threads (0: torch's default; on a loaded machine more threads "
                         "than free cores make every parallel region wait for a descheduled one)")
    a = ap.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    t0 = time.time()
    probe, _, _ = timm_vit.load_like_timm(a.backbone)
    cfg = probe.pretrained_cfg
    in_chans = probe.patch_embed.proj.in_channels
    if a.data.startswith("fmnist:"):
        xtr, ytr, xva, yva = fmnist(a.data, cfg)
    else:
        xtr, ytr, xva, yva = folder(a.data, cfg, in_chans)
    K = int(ytr.max()) + 1
    model, _, _ = timm_vit.load_like_timm(a.backbone, num_classes=K)
    width, patch = model.embed_dim, model.patch_embed.proj.kernel_size[0]
    model.head = nn.Linear(width, K)   # a new head, as vitlab's trainer makes one
    for p in model.parameters():
        p.requires_grad = a.mode == "full"
    if a.mode in ("conv", "mbconv"):
        stem = (gen_stems.ConvStem if a.mode == "conv" else gen_stems.MBConvStem)(in_chans, patch,
                                                                                  width)
        model.patch_embed = StemEmbed(stem)
        for p in [model.cls_token, model.pos_embed]:
            p.requires_grad = True
    for p in model.head.parameters():
        p.requires_grad = True
    params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in params if p.ndim >= 2 and n not in ("pos_embed", "cls_token")]
    other = [p for n, p in params if not (p.ndim >= 2 and n not in ("pos_embed", "cls_token"))]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": other, "weight_decay": 0.0}], lr=a.lr)
    spe = (len(xtr) + a.batch - 1) // a.batch
    total = a.epochs * spe
    warm = min(int(round(a.warmup * spe)), total)
    step = 0
    t_train = time.time()
    for epoch in range(a.epochs):
        model.train()
        perm = torch.randperm(len(xtr))
        for i in range(0, len(xtr), a.batch):
            b = perm[i:i + a.batch]
            lr = (a.lr * (step + 1) / warm if step < warm else
                  a.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warm) /
                                                         max(total - warm, 1)))))
            for g in opt.param_groups:
                g["lr"] = lr
            loss = F.cross_entropy(model(xtr[b]), ytr[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    t_train = time.time() - t_train
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xva[i:i + 64]).argmax(1) for i in range(0, len(xva), 64)])
    acc = (pred == yva).float().mean().item()
    n_train = sum(p.numel() for _, p in params)
    print("mode=%s trainable=%d val_acc=%.4f train_s=%.1f wall_s=%.1f" %
          (a.mode, n_train, acc, t_train, time.time() - t0))


if __name__ == "__main__":
    main()

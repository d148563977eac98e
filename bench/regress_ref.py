#!/usr/bin/python3
"""The PyTorch reference of vitlab's regression recipe with a frozen backbone (vitlab-cli train
--task regress --unlock 1 --cache-features), for the comparison in README.md:

    bench/regress_ref.py --backbone ../shared/weights/vit-tiny-augreg-in1k --data SET \\
        [--epochs 20] [--lr 1e-3] [--wd 0.05] [--batch 32] [--pool token] [--seed 0]

SET holds train/ and val/, each with images and a targets.csv (file,target1[,…]), as
bench/make_regress_set.py writes them. The recipe, as vitlab runs it: timm's eval preprocessing
from the checkpoint's pretrained_cfg (resize the shorter side to size / crop_pct, centre crop,
normalise); the frozen backbone's features (CLS token after the final norm, or the mean of the
patch tokens) computed once; a linear head (nn.Linear's default initialisation) on targets
standardised by the training split's mean and population std; MSE (or smooth-L1, beta 1);
AdamW (betas 0.9/0.999, eps 1e-8, no weight decay on the bias); linear warmup over --warmup
epochs then cosine decay to 0, per step; shuffled batches. Prints val_mae, val_rmse, val_r2 in
the targets' units and the wall time. The backbone is rebuilt by tests/interop/timm_vit.py.
"""
import argparse
import csv
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


def read_split(folder):
    with open(os.path.join(folder, "targets.csv")) as f:
        rows = list(csv.reader(f))
    names = rows[0][1:]
    files = [os.path.join(folder, r[0]) for r in rows[1:] if r]
    y = np.array([[float(v) for v in r[1:]] for r in rows[1:] if r], dtype=np.float32)
    return names, files, y


def preprocess(cfg, in_chans):
    size = cfg["input_size"][-1]
    crop_pct = cfg.get("crop_pct", 0.875) or 1.0
    interp = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
              "nearest": Image.NEAREST}[cfg.get("interpolation", "bicubic")]
    mean = np.array(cfg["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(cfg["std"], dtype=np.float32).reshape(-1, 1, 1)
    scale = int(math.floor(size / crop_pct))

    def run(path):
        img = Image.open(path).convert("L" if in_chans == 1 else "RGB")
        w, h = img.size
        if w < h:
            img = img.resize((scale, int(scale * h / w)), interp)
        else:
            img = img.resize((int(scale * w / h), scale), interp)
        w, h = img.size
        left, top = int(round((w - size) / 2.0)), int(round((h - size) / 2.0))
        img = img.crop((left, top, left + size, top + size))
        x = np.asarray(img, dtype=np.float32) / 255.0
        x = x[None] if x.ndim == 2 else x.transpose(2, 0, 1)
        return (x - mean) / std
    return run


def features(model, files, prep, pool, batch=32):
    out = []
    with torch.no_grad():
        for i in range(0, len(files), batch):
            x = torch.from_numpy(np.stack([prep(f) for f in files[i:i + batch]]))
            tok = model.forward_features(x)
            p = model.num_prefix_tokens
            out.append(tok[:, 0] if pool == "token" else tok[:, p:].mean(1))
    return torch.cat(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--pool", choices=("token", "avg"), default="token")
    ap.add_argument("--loss", choices=("mse", "smooth-l1"), default="mse")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)
    torch.manual_seed(a.seed)
    t0 = time.time()
    model, _, _ = timm_vit.load_like_timm(a.backbone)
    cfg = model.pretrained_cfg
    names, ftr, ytr = read_split(os.path.join(a.data, "train"))
    _, fva, yva = read_split(os.path.join(a.data, "val"))
    prep = preprocess(cfg, model.patch_embed.proj.in_channels)
    xtr = features(model, ftr, prep, a.pool)
    xva = features(model, fva, prep, a.pool)
    t_feat = time.time() - t0
    mu = ytr.mean(0)
    sd = ytr.std(0)
    sd[sd < 1e-12] = 1.0
    ztr = torch.from_numpy((ytr - mu) / sd)

    head = nn.Linear(xtr.shape[1], ytr.shape[1])
    opt = torch.optim.AdamW([{"params": [head.weight], "weight_decay": a.wd},
                             {"params": [head.bias], "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)
    spe = (len(ftr) + a.batch - 1) // a.batch
    total = a.epochs * spe
    warm = min(int(round(a.warmup * spe)), total)
    step = 0
    for epoch in range(a.epochs):
        perm = torch.randperm(len(ftr))
        for i in range(0, len(ftr), a.batch):
            idx = perm[i:i + a.batch]
            if step < warm:
                lr = a.lr * (step + 1) / warm
            else:
                prog = min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)
                lr = a.lr * 0.5 * (1.0 + math.cos(math.pi * prog))
            for g in opt.param_groups:
                g["lr"] = lr
            out = head(xtr[idx])
            loss = (F.mse_loss(out, ztr[idx]) if a.loss == "mse"
                    else F.smooth_l1_loss(out, ztr[idx], beta=1.0))
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    with torch.no_grad():
        pred = head(xva).numpy() * sd + mu
    err = pred - yva
    mae = np.abs(err).mean(0)
    rmse = np.sqrt((err ** 2).mean(0))
    r2 = 1.0 - (err ** 2).sum(0) / ((yva - yva.mean(0)) ** 2).sum(0)
    for j, n in enumerate(names):
        print("%s: MAE %.4f RMSE %.4f R2 %.4f" % (n, mae[j], rmse[j], r2[j]))
    print("features_s=%.1f" % t_feat)
    print("seconds=%.1f" % (time.time() - t0))
    print("val_mae=%.4f" % mae.mean())
    print("val_rmse=%.4f" % rmse.mean())
    print("val_r2=%.4f" % r2.mean())


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""The PyTorch reference of vitlab's frozen FCOS detection recipe (vitlab-cli train --task detect
--unlock 1 --cache-features), for the comparison in README.md:

    bench/det_ref.py --backbone ../shared/weights/vit-tiny-augreg-in1k \\
        --data ../shared/datasets/pets-voc [--epochs 30] [--lr 1e-3] [--wd 0.05] [--batch 16] \\
        [--warmup 1] [--size 224] [--seed 0 | --seeds 0-9] [--threads N]

DATA is a Pascal VOC detection layout (JPEGImages/, Annotations/NAME.xml,
ImageSets/Main/{train,val}.txt); the classes are the sorted object names, numbered from 1
(torchvision's FCOS counts the background as class 0: num_classes = K + 1). The recipe, as
vitlab runs it: every image squashed to size x size (Pillow resize with the checkpoint's
interpolation, no crop), normalised with its mean and std, its boxes scaled with it; the frozen
backbone's final-norm patch tokens computed once (prefix tokens dropped) as the one feature
level of torchvision's FCOS (AnchorGenerator one size = the patch, aspect 1; FCOSHead (W, 1,
K + 1, num_convs=0)); FCOS.compute_loss (centre sampling 1.5, focal + GIoU + centerness);
AdamW (betas 0.9/0.999, eps 1e-8, weight decay on the conv weights only); linear warmup over
--warmup epochs then cosine decay to 0, per step; shuffled batches. Validation:
FCOS.postprocess_detections (score 0.05, top 1000, NMS 0.6, 100 per image) at size x size, the
boxes scaled back to each image's own pixels, scored with pycocotools' COCOeval definitions
(the numpy replica of tests/data/gen-dense.py). Prints AP, AP50, per-class AP and the wall
time. With --seeds the features are computed once and the head is trained from each seed in
turn (torch.manual_seed just before the head is built: its initial weights and the batches'
order), then the mean, sd, min and max over the seeds are printed. The backbone is rebuilt by
tests/interop/timm_vit.py.

With --draws vitlab the seed is drawn as vitlab draws it instead of by torch.manual_seed: the
head's initial weights from vitlab's generator (splitmix64 seeding xoshiro256**, Box-Muller
normals x 0.01, in vl-det-head.c's order: cls_logits, bbox_reg, bbox_ctrness) and each epoch's
order by vitlab's loader (a Fisher-Yates shuffle seeded from (seed, epoch)). The two engines then
start from the same weights and see the same batches, so `vitlab-cli train --seed S` and
`det_ref.py --draws vitlab --seed S` follow the same trajectory up to float rounding: their
per-epoch losses and final AP can be compared run for run, not only as distributions.
"""
import argparse
import importlib.util
import math
import os
import sys
import time
import xml.etree.ElementTree as ET

import numpy as np
import torch
from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "interop"))
import timm_vit  # noqa: E402

_spec = importlib.util.spec_from_file_location("gen_dense",
                                               os.path.join(HERE, "..", "tests", "data",
                                                            "gen-dense.py"))
gen_dense = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gen_dense)
sys.path.insert(0, HERE)
import seg_ref  # noqa: E402  (vitlab's generator, vl-rng.h, ported once)

EXTS = (".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG", ".bmp", ".gif")


def read_split(root, split):
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt")) as f:
        ids = [l.strip() for l in f if l.strip()]
    items = []
    for i in ids:
        img = next(os.path.join(root, "JPEGImages", i + e) for e in EXTS
                   if os.path.exists(os.path.join(root, "JPEGImages", i + e)))
        tree = ET.parse(os.path.join(root, "Annotations", i + ".xml"))
        objs = []
        for o in tree.findall("object"):
            b = o.find("bndbox")
            objs.append((o.find("name").text.strip(),
                         [float(b.find(k).text) for k in ("xmin", "ymin", "xmax", "ymax")]))
        items.append((img, objs))
    return items


class _Backbone(torch.nn.Module):
    out_channels = 1

    def forward(self, x):
        return x


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--backbone", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--wd", type=float, default=0.05)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--seeds", default="",
                    help="several seeds on the same cached features: 0-9 or 0,3,5")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--perturb", type=float, default=0.0,
                    help="multiply every feature by (1 + PERTURB x a normal draw) after caching: "
                         "how far float rounding alone moves a run")
    ap.add_argument("--draws", choices=("torch", "vitlab"), default="torch",
                    help="whose generator draws the head's weights and the batches' order")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    t0 = time.time()
    model, _, _ = timm_vit.load_like_timm(a.backbone)
    model.eval()
    cfg = model.pretrained_cfg
    S = a.size or cfg["input_size"][-1]
    interp = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR,
              "nearest": Image.NEAREST}[cfg.get("interpolation", "bicubic")]
    mean = np.array(cfg["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.array(cfg["std"], dtype=np.float32).reshape(-1, 1, 1)
    p = model.num_prefix_tokens
    patch = model.patch_embed.proj.kernel_size[0]
    G = S // patch

    tr, va = read_split(a.data, "train"), read_split(a.data, "val")
    names = sorted({n for _, objs in tr + va for n, _ in objs})

    def tokens(items):
        feats, targets, sizes = [], [], []
        with torch.no_grad():
            for i in range(0, len(items), a.batch):
                xs = []
                for img_path, objs in items[i:i + a.batch]:
                    im = Image.open(img_path).convert("RGB")
                    w, h = im.size
                    sizes.append((w, h))
                    img = im.resize((S, S), interp)
                    x = np.asarray(img, dtype=np.float32).transpose(2, 0, 1) / 255.0
                    xs.append((x - mean) / std)
                    bx = torch.tensor([[b[0] * S / w, b[1] * S / h, b[2] * S / w, b[3] * S / h]
                                       for _, b in objs], dtype=torch.float32).reshape(-1, 4)
                    lb = torch.tensor([names.index(n) + 1 for n, _ in objs], dtype=torch.int64)
                    targets.append({"boxes": bx, "labels": lb, "orig": objs})
                tok = model.forward_features(torch.from_numpy(np.stack(xs)))
                feats.append(tok[:, p:].reshape(-1, G, G, tok.shape[-1]).permute(0, 3, 1, 2))
        return torch.cat(feats), targets, sizes

    xtr, ttr, _ = tokens(tr)
    xva, tva, sva = tokens(va)
    if a.perturb > 0:
        g = torch.Generator().manual_seed(12345)
        xtr = xtr * (1 + a.perturb * torch.randn(xtr.shape, generator=g))
        xva = xva * (1 + a.perturb * torch.randn(xva.shape, generator=g))
    t_feat = time.time() - t0
    print("features_s=%.1f" % t_feat, flush=True)
    data = (xtr, ttr, xva, tva, sva, names, patch, S, G)
    results = []
    for seed in parse_seeds(a.seeds) if a.seeds else [a.seed]:
        results.append(train_and_score(a, seed, data))
    if len(results) > 1:
        for key in ("val_map", "val_map50"):
            v = np.array([r[key] for r in results])
            print("%s over %d seeds: mean %.4f  sd %.4f  min %.4f  max %.4f"
                  % (key, len(v), v.mean(), v.std(ddof=1), v.min(), v.max()))
    print("seconds=%.1f" % (time.time() - t0))


def _mix3(tag, a, b, c):
    """engine/data/vl-loader.c's mix3."""
    _, h = seg_ref.splitmix(tag)
    for v in (a, b, c):
        _, h = seg_ref.splitmix(h ^ v)
    return h


def vitlab_order(seed, epoch, n):
    """The order of epoch `epoch` (from 0) of vitlab's shuffling loader over n items."""
    rng = seg_ref.Xoshiro(_mix3(0x73687566, seed & seg_ref.M64, epoch & 0xffffffff, 0))
    order = list(range(n))
    for i in range(n - 1, 0, -1):
        j = rng.next() % (i + 1)
        order[i], order[j] = order[j], order[i]
    return torch.tensor(order, dtype=torch.int64)


def vitlab_init(head, seed):
    """vl_det_head_new's initial weights: normal(0, 0.01) from vitlab's generator in the
    order cls_logits, bbox_reg, bbox_ctrness; biases 0 but the class prior's."""
    rng = seg_ref.Xoshiro(seed)
    convs = (head.classification_head.cls_logits, head.regression_head.bbox_reg,
             head.regression_head.bbox_ctrness)
    with torch.no_grad():
        for conv in convs:
            w = np.array([rng.normal() * 0.01 for _ in range(conv.weight.numel())],
                         dtype=np.float32)
            conv.weight.copy_(torch.from_numpy(w).reshape(conv.weight.shape))
        head.regression_head.bbox_reg.bias.zero_()
        head.regression_head.bbox_ctrness.bias.zero_()
        head.classification_head.cls_logits.bias.fill_(-math.log((1 - 0.01) / 0.01))


def parse_seeds(text):
    seeds = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        seeds.extend(range(int(lo), int(hi or lo) + 1))
    return seeds


def train_and_score(a, seed, data):
    """Trains the FCOS head from seed `seed` (the head's initial weights and the batches' order)
    on the cached token grids and scores it on the validation ones."""
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead
    from torchvision.models.detection.image_list import ImageList

    xtr, ttr, xva, tva, sva, names, patch, S, G = data
    K = len(names)
    t0 = time.time()
    torch.manual_seed(seed)
    W = xtr.shape[1]
    bb = _Backbone()
    bb.out_channels = W
    det = FCOS(bb, num_classes=K + 1, anchor_generator=AnchorGenerator(((patch,),), ((1.0,),)),
               head=FCOSHead(W, 1, K + 1, num_convs=0), score_thresh=0.05, nms_thresh=0.6,
               detections_per_img=100, topk_candidates=1000)
    head = det.head
    if a.draws == "vitlab":
        vitlab_init(head, seed)
    decay = [p_ for p_ in head.parameters() if p_.ndim >= 2]
    no_decay = [p_ for p_ in head.parameters() if p_.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": a.wd},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=a.lr, betas=(0.9, 0.999), eps=1e-8)

    def anchors_for(n):
        il = ImageList(torch.zeros(n, 3, S, S), [(S, S)] * n)
        return det.anchor_generator(il, [torch.zeros(n, W, G, G)])

    n = xtr.shape[0]
    spe = (n + a.batch - 1) // a.batch
    total = a.epochs * spe
    warm = min(int(round(a.warmup * spe)), total)
    step = 0
    for epoch in range(a.epochs):
        perm = vitlab_order(seed, epoch, n) if a.draws == "vitlab" else torch.randperm(n)
        loss_sum = 0.0
        for i in range(0, n, a.batch):
            idx = perm[i:i + a.batch]
            if step < warm:
                lr = a.lr * (step + 1) / warm
            else:
                prog = min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)
                lr = a.lr * 0.5 * (1.0 + math.cos(math.pi * prog))
            for g in opt.param_groups:
                g["lr"] = lr
            out = head([xtr[idx]])
            tg = [{"boxes": ttr[j]["boxes"], "labels": ttr[j]["labels"]} for j in idx.tolist()]
            losses = det.compute_loss(tg, out, anchors_for(len(idx)), [G * G])
            loss = sum(losses.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            loss_sum += loss.item() * len(idx)
            step += 1
        print("seed %d epoch %d loss %.4f" % (seed, epoch + 1, loss_sum / n), flush=True)
    t_train = time.time() - t0

    gts, dts = [], []
    with torch.no_grad():
        for j in range(xva.shape[0]):
            out = head([xva[j:j + 1]])
            split = {k: [v] for k, v in out.items()}
            res = det.postprocess_detections(split, [[anchors_for(1)[0]]], [(S, S)])[0]
            w, h = sva[j]
            for name, b in tva[j]["orig"]:
                gts.append((j, names.index(name) + 1, b[0], b[1], b[2] - b[0], b[3] - b[1]))
            for bx, sc, lb in zip(res["boxes"].tolist(), res["scores"].tolist(),
                                  res["labels"].tolist()):
                x1, y1, x2, y2 = bx[0] * w / S, bx[1] * h / S, bx[2] * w / S, bx[3] * h / S
                dts.append((j, lb, x1, y1, x2 - x1, y2 - y1, sc))
    stats, class_ap, class_ap50 = gen_dense.coco_eval(gts, dts, xva.shape[0], K + 1)
    print("seed=%d" % seed)
    for k in range(K):
        print("%-20s AP %.4f  AP50 %.4f" % (names[k], class_ap[k + 1], class_ap50[k + 1]))
    print("train_s=%.1f" % t_train)
    print("val_ar100=%.4f" % stats[3])
    print("val_map=%.4f" % stats[0])
    print("val_map50=%.4f" % stats[1], flush=True)
    return {"val_map": stats[0], "val_map50": stats[1]}


if __name__ == "__main__":
    main()

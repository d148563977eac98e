#!/usr/bin/python3
"""Generate the dense-prediction reference fixtures in tests/data/dense/ (test-dense.c).

Run with Debian's PyTorch and torchvision (torch 1.13, torchvision 0.14), from the project root:

    /usr/bin/python3 tests/data/gen-dense.py

Every layer is run by PyTorch itself (nn.functional, torchvision.ops, torchvision's FCOS) in
float64 on float32-representable inputs; tensors are stored as float32, grids channels-last
(B, H, W, C) as vitlab's kernels take them. Seeds are fixed: re-running reproduces identical
bytes. COCO AP comes from an independent numpy replica of pycocotools' COCOeval (bbox, area
"all", maxDets 100), written from its documented algorithm since pycocotools is not in Debian.
"""

import importlib.util
import math
import os

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dense")
MAX_FILE_BYTES = 200 * 1024

_spec = importlib.util.spec_from_file_location("gen_fixtures", os.path.join(HERE, "gen-fixtures.py"))
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def r64(*shape, std=1.0, gen):
    """Random float64 tensor holding float32 values."""
    return (torch.randn(*shape, generator=gen, dtype=torch.float64) * std).float().double()


def cl(t):
    """NCHW -> NHWC."""
    return t.permute(0, 2, 3, 1).contiguous()


def write(name, tensors):
    path = os.path.join(OUT, name + ".safetensors")
    gf.st_write(path, {k: f32(v) for k, v in tensors.items()})
    size = os.path.getsize(path)
    assert size <= MAX_FILE_BYTES, (path, size)
    print("  %-28s %6d bytes, %d tensors" % (name, size, len(tensors)))


# ---------------------------------------------------------------------------- conv

CONVS = [  # name, B, H, W, Cin, Cout, kh, kw, stride, pad, groups, bias
    ("k3s1p1", 2, 5, 6, 8, 6, 3, 3, 1, 1, 1, True),
    ("k3s2p1g2", 1, 7, 5, 4, 6, 3, 3, 2, 1, 2, True),
    ("depthwise", 2, 4, 5, 6, 12, 3, 3, 1, 1, 6, False),
    ("pointwise", 2, 3, 4, 8, 5, 1, 1, 1, 0, 1, True),
    ("k4s4", 1, 8, 8, 3, 5, 4, 4, 4, 0, 1, True),
    ("k5x3p1", 1, 6, 6, 3, 4, 5, 3, 1, 1, 1, True),
]


def gen_conv():
    g = torch.Generator().manual_seed(1501)
    t = {}
    for name, B, H, W, Cin, Cout, kh, kw, s, p, groups, bias in CONVS:
        x = r64(B, Cin, H, W, gen=g).requires_grad_()
        w = r64(Cout, Cin // groups, kh, kw, std=0.3, gen=g).requires_grad_()
        b = r64(Cout, gen=g).requires_grad_() if bias else None
        y = F.conv2d(x, w, b, stride=s, padding=p, groups=groups)
        R = r64(*y.shape, gen=g)
        (y * R).sum().backward()
        t[name + ".config"] = torch.tensor([B, H, W, Cin, Cout, kh, kw, s, p, groups, int(bias)],
                                           dtype=torch.float64)
        t[name + ".inp"] = cl(x)
        t[name + ".w"] = w
        if bias:
            t[name + ".b"] = b
            t[name + ".db"] = b.grad
        t[name + ".R"] = cl(R)
        t[name + ".out"] = cl(y)
        t[name + ".dinp"] = cl(x.grad)
        t[name + ".dw"] = w.grad
    write("conv", t)


def gen_convt():
    g = torch.Generator().manual_seed(1502)
    B, H, W, Cin, Cout = 2, 3, 4, 6, 4
    x = r64(B, Cin, H, W, gen=g).requires_grad_()
    w = r64(Cin, Cout, 2, 2, std=0.4, gen=g).requires_grad_()
    b = r64(Cout, gen=g).requires_grad_()
    y = F.conv_transpose2d(x, w, b, stride=2)
    R = r64(*y.shape, gen=g)
    (y * R).sum().backward()
    write("convt", {"inp": cl(x), "w": w, "b": b, "R": cl(R), "out": cl(y), "dinp": cl(x.grad),
                    "dw": w.grad, "db": b.grad,
                    "config": torch.tensor([B, H, W, Cin, Cout], dtype=torch.float64)})


BILINEAR = [("up", 2, 3, 4, 3, 7, 9), ("down", 1, 9, 7, 2, 4, 3), ("mixed", 1, 5, 6, 2, 8, 4),
            ("x16", 1, 2, 3, 2, 32, 48)]


def gen_bilinear():
    g = torch.Generator().manual_seed(1503)
    t = {}
    for name, B, H, W, C, Ho, Wo in BILINEAR:
        x = r64(B, C, H, W, gen=g).requires_grad_()
        y = F.interpolate(x, size=(Ho, Wo), mode="bilinear", align_corners=False)
        R = r64(*y.shape, gen=g)
        (y * R).sum().backward()
        t[name + ".config"] = torch.tensor([B, H, W, C, Ho, Wo], dtype=torch.float64)
        t[name + ".inp"] = cl(x)
        t[name + ".R"] = cl(R)
        t[name + ".out"] = cl(y)
        t[name + ".dinp"] = cl(x.grad)
    write("bilinear", t)


def layernorm2d(x, w, b, eps):
    """ViTDet's / mmseg's LayerNorm2d over the channels of an NCHW tensor."""
    u = x.mean(1, keepdim=True)
    s = (x - u).pow(2).mean(1, keepdim=True)
    x = (x - u) / torch.sqrt(s + eps)
    return w[:, None, None] * x + b[:, None, None]


def gen_layernorm2d():
    g = torch.Generator().manual_seed(1504)
    B, C, H, W = 2, 12, 3, 5
    x = (r64(B, C, H, W, gen=g) * 2 + 0.5).requires_grad_()
    w = (1 + r64(C, std=0.3, gen=g)).requires_grad_()
    b = r64(C, std=0.3, gen=g).requires_grad_()
    y = layernorm2d(x, w, b, 1e-6)
    # the same through nn.functional.layer_norm on the channels-last view
    y2 = F.layer_norm(x.permute(0, 2, 3, 1), (C,), w, b, 1e-6).permute(0, 3, 1, 2)
    assert (y - y2).abs().max() < 1e-12
    R = r64(*y.shape, gen=g)
    (y * R).sum().backward()
    write("layernorm2d", {"inp": cl(x), "w": w, "b": b, "R": cl(R), "out": cl(y),
                          "dinp": cl(x.grad), "dw": w.grad, "db": b.grad,
                          "config": torch.tensor([B, H, W, C], dtype=torch.float64)})


# ---------------------------------------------------------------------------- segmentation

def gen_seg_ce():
    g = torch.Generator().manual_seed(1505)
    B, K, H, W = 2, 5, 4, 6
    z = r64(B, K, H, W, std=2.0, gen=g).requires_grad_()
    y = torch.randint(0, K, (B, H, W), generator=g)
    y[torch.rand(B, H, W, generator=g) < 0.25] = 255
    loss = F.cross_entropy(z, y, ignore_index=255)
    loss.backward()
    write("seg-ce", {"logits": cl(z), "labels": y.double(), "loss": loss.reshape(1),
                     "dlogits": cl(z.grad), "config": torch.tensor([B, H, W, K], dtype=torch.float64)})


def mmseg_intersect_and_union(pred, label, K, ignore):
    """mmseg's IoUMetric.intersect_and_union, in numpy (histc over [0, K - 1] with K bins)."""
    mask = label != ignore
    pred, label = pred[mask], label[mask]
    inter = pred[pred == label]
    h = lambda v: np.histogram(v, bins=K, range=(0, K - 1))[0].astype(np.float64)
    ai, ap, al = h(inter), h(pred), h(label)
    return ai, ap + al - ai, ap, al


def gen_seg_metric():
    rng = np.random.RandomState(1506)
    K, ignore = 6, 255
    preds, labels = [], []
    for i, (h, w) in enumerate([(5, 7), (6, 4), (3, 9), (8, 8)]):
        # class 5 never appears (NaN), class 4 is predicted but never labelled (IoU 0, Acc NaN),
        # class 3 labelled but never predicted (IoU 0, Acc 0)
        lab = rng.choice([0, 1, 2, 3], size=(h, w), p=[0.4, 0.25, 0.2, 0.15])
        pred = np.where(rng.rand(h, w) < 0.6, lab, rng.choice([0, 1, 2, 4], size=(h, w)))
        pred[pred == 3] = 0
        lab[rng.rand(h, w) < 0.15] = ignore
        preds.append(pred.ravel())
        labels.append(lab.ravel())
    tot = [np.zeros(K) for _ in range(4)]
    for p, l in zip(preds, labels):
        for acc, v in zip(tot, mmseg_intersect_and_union(p, l, K, ignore)):
            acc += v
    ai, au, ap, al = tot
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = ai / au
        acc = ai / al
    aacc = ai.sum() / al.sum()
    assert np.isnan(iou[5]) and iou[4] == 0 and iou[3] == 0 and np.isnan(acc[4])
    t = {"pred": torch.from_numpy(np.concatenate(preds)).double(),
         "label": torch.from_numpy(np.concatenate(labels)).double(),
         "sizes": torch.tensor([len(p) for p in preds], dtype=torch.float64),
         "iou": torch.from_numpy(iou), "acc": torch.from_numpy(acc),
         "area_intersect": torch.from_numpy(ai), "area_union": torch.from_numpy(au),
         "area_pred": torch.from_numpy(ap), "area_label": torch.from_numpy(al),
         "summary": torch.tensor([np.nanmean(iou), np.nanmean(acc), aacc])}
    write("seg-metric", t)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    gen_conv()
    gen_convt()
    gen_bilinear()
    gen_layernorm2d()
    gen_seg_ce()
    gen_seg_metric()


if __name__ == "__main__":
    main()

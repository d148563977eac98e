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


# ---------------------------------------------------------------------------- FCOS

def gen_det_losses():
    """sigmoid_focal_loss, generalized_box_iou_loss, BCE with logits: sums and gradients."""
    from torchvision.ops import generalized_box_iou_loss, sigmoid_focal_loss
    g = torch.Generator().manual_seed(1507)
    n = 40
    x = r64(n, std=2.0, gen=g).requires_grad_()
    t = (torch.rand(n, generator=g) < 0.3).double()
    focal = sigmoid_focal_loss(x, t, alpha=0.25, gamma=2, reduction="sum")
    focal.backward()
    # focal with soft targets and another alpha / gamma (the formula is general)
    x2 = r64(n, std=2.0, gen=g).requires_grad_()
    t2 = torch.rand(n, generator=g).float().double()
    focal2 = sigmoid_focal_loss(x2, t2, alpha=0.6, gamma=1.5, reduction="sum")
    focal2.backward()
    # boxes: overlapping, disjoint, one inside the other
    m = 24
    xy = torch.rand(m, 2, generator=g) * 20
    wh = torch.rand(m, 2, generator=g) * 10 + 1
    gxy = xy + (torch.rand(m, 2, generator=g) - 0.5) * 12
    gwh = torch.rand(m, 2, generator=g) * 10 + 1
    pred = torch.cat([xy, xy + wh], 1).float().double()
    gt = torch.cat([gxy, gxy + gwh], 1).float().double()
    gt[0] = torch.tensor([50.0, 50.0, 60.0, 62.0])                  # disjoint
    pred[1] = torch.tensor([2.0, 3.0, 12.0, 14.0])
    gt[1] = torch.tensor([4.0, 5.0, 8.5, 9.25])                     # inside
    pred = pred.requires_grad_()
    giou = generalized_box_iou_loss(pred, gt, reduction="sum")
    giou.backward()
    c = r64(n, std=2.0, gen=g).requires_grad_()
    ct = torch.rand(n, generator=g).float().double()
    bce = F.binary_cross_entropy_with_logits(c, ct, reduction="sum")
    bce.backward()
    write("det-losses", {"focal.x": x, "focal.t": t, "focal.loss": focal.reshape(1),
                         "focal.dx": x.grad, "focal2.x": x2, "focal2.t": t2,
                         "focal2.loss": focal2.reshape(1), "focal2.dx": x2.grad,
                         "giou.pred": pred, "giou.gt": gt, "giou.loss": giou.reshape(1),
                         "giou.dpred": pred.grad, "bce.x": c, "bce.t": ct,
                         "bce.loss": bce.reshape(1), "bce.dx": c.grad})


class _Backbone(torch.nn.Module):
    out_channels = 8

    def forward(self, x):
        return x


def fcos_model(C, K, stride, dtype):
    from torchvision.models.detection import FCOS
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.fcos import FCOSHead
    bb = _Backbone()
    bb.out_channels = C
    model = FCOS(bb, num_classes=K, anchor_generator=AnchorGenerator(((stride,),), ((1.0,),)),
                 head=FCOSHead(C, 1, K, num_convs=0), score_thresh=0.05, nms_thresh=0.6,
                 detections_per_img=100, topk_candidates=1000)
    return model.to(dtype)


def gen_fcos():
    from torchvision.models.detection.image_list import ImageList
    g = torch.Generator().manual_seed(1508)
    B, C, K, stride, gh, gw = 3, 8, 3, 8, 6, 8
    H, W = gh * stride, gw * stride
    model = fcos_model(C, K, stride, torch.float64)
    head = model.head
    with torch.no_grad():
        for conv in (head.classification_head.cls_logits, head.regression_head.bbox_reg,
                     head.regression_head.bbox_ctrness):
            conv.weight.copy_(r64(*conv.weight.shape, std=0.15, gen=g))
            conv.bias.copy_(r64(*conv.bias.shape, std=0.3, gen=g))
        head.regression_head.bbox_reg.bias.add_(1.0)     # boxes of a few cells
        head.classification_head.cls_logits.bias.sub_(1.0)
    feats = r64(B, C, gh, gw, gen=g)
    out = head([feats])
    images = ImageList(torch.zeros(B, 3, H, W), [(H, W)] * B)
    anchors = model.anchor_generator(images, [feats])

    # targets: image 0 has two boxes of equal area overlapping (ties go to the first), image 1
    # none, image 2 a small and a large box
    targets = [
        {"boxes": torch.tensor([[5.5, 4.0, 30.5, 27.0], [12.5, 9.0, 37.5, 32.0],
                                [40.25, 20.5, 63.0, 47.75]]), "labels": torch.tensor([0, 2, 1])},
        {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64)},
        {"boxes": torch.tensor([[17.0, 13.5, 26.0, 20.0], [2.0, 1.0, 60.0, 46.0]]),
         "labels": torch.tensor([2, 0])},
    ]
    captured = {}
    real = model.head.compute_loss

    def spy(targets, head_outputs, anchors, matched_idxs):
        captured["matched"] = matched_idxs
        return real(targets, head_outputs, anchors, matched_idxs)

    model.head.compute_loss = spy
    cls = out["cls_logits"].detach().requires_grad_()
    reg = out["bbox_regression"].detach().requires_grad_()
    ctr = out["bbox_ctrness"].detach().requires_grad_()
    head_outputs = {"cls_logits": cls, "bbox_regression": reg, "bbox_ctrness": ctr}
    t64 = [{"boxes": t["boxes"].double(), "labels": t["labels"]} for t in targets]
    losses = model.compute_loss(t64, head_outputs, anchors, [gh * gw])
    m64 = captured["matched"]
    # the matching in float32, as the model computes it in practice: the same matches
    a32 = [a.float() for a in anchors]
    t32 = [{"boxes": t["boxes"].float(), "labels": t["labels"]} for t in targets]
    ho32 = {k: v.detach().float() for k, v in head_outputs.items()}
    model32 = fcos_model(C, K, stride, torch.float32)
    real32 = model32.head.compute_loss
    model32.head.compute_loss = lambda t, h, a, m: (captured.__setitem__("m32", m), real32(t, h, a, m))[1]
    model32.compute_loss(t32, ho32, a32, [gh * gw])
    for x, y in zip(m64, captured["m32"]):
        assert torch.equal(x, y)
    matched = torch.stack(m64)
    assert (matched[0] == 0).any() and (matched[0] == 1).any() and (matched[1] == -1).all()
    total = losses["classification"] + losses["bbox_regression"] + losses["bbox_ctrness"]
    total.backward()
    print("    FCOS: %d foreground, losses %.5f %.5f %.5f" % (
        int((matched >= 0).sum()), losses["classification"], losses["bbox_regression"],
        losses["bbox_ctrness"]))

    t = {"config": torch.tensor([B, C, K, stride, gh, gw], dtype=torch.float64),
         "feats": cl(feats), "anchors": anchors[0],
         "cls_logits.weight": head.classification_head.cls_logits.weight,
         "cls_logits.bias": head.classification_head.cls_logits.bias,
         "bbox_reg.weight": head.regression_head.bbox_reg.weight,
         "bbox_reg.bias": head.regression_head.bbox_reg.bias,
         "bbox_ctrness.weight": head.regression_head.bbox_ctrness.weight,
         "bbox_ctrness.bias": head.regression_head.bbox_ctrness.bias,
         "cls": cls, "reg": reg, "ctr": ctr.squeeze(2),
         "matched": matched.double(),
         "losses": torch.stack([losses["classification"], losses["bbox_regression"],
                                losses["bbox_ctrness"]]).detach(),
         "dcls": cls.grad, "dreg": reg.grad, "dctr": ctr.grad.squeeze(2)}
    for i, tg in enumerate(targets):
        t["boxes%d" % i] = tg["boxes"].double()
        t["labels%d" % i] = tg["labels"].double()

    # postprocess, in float32 as the model runs it, two settings
    for name, thresh, topk, dets in (("post", 0.05, 1000, 100), ("post-small", 0.3, 30, 10)):
        model32.score_thresh, model32.topk_candidates, model32.detections_per_img = thresh, topk, dets
        split = {k: [v.detach().float()] for k, v in head_outputs.items()}
        res = model32.postprocess_detections(split, [[a.float()] for a in anchors], [(H, W)] * B)
        for i, r in enumerate(res):
            t["%s%d.boxes" % (name, i)] = r["boxes"].double()
            t["%s%d.scores" % (name, i)] = r["scores"].double()
            t["%s%d.labels" % (name, i)] = r["labels"].double()
        t[name + ".config"] = torch.tensor([thresh, 0.6, topk, dets])
        print("    %s: %s detections" % (name, [len(r["scores"]) for r in res]))

    # anchors of an odd stride (round half to even)
    a7 = model.anchor_generator.__class__(((7,),), ((1.0,),))(
        ImageList(torch.zeros(1, 3, 21, 28), [(21, 28)]), [torch.zeros(1, C, 3, 4)])
    t["anchors7"] = a7[0]
    write("fcos", t)


def main():
    os.makedirs(OUT, exist_ok=True)
    torch.set_default_dtype(torch.float64)
    gen_conv()
    gen_convt()
    gen_bilinear()
    gen_layernorm2d()
    gen_seg_ce()
    gen_seg_metric()
    gen_det_losses()
    gen_fcos()


if __name__ == "__main__":
    main()

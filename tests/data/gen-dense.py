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
    ("depthwise-s2", 1, 7, 6, 5, 5, 3, 3, 2, 1, 5, True),
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


# ---------------------------------------------------------------------------- COCO AP

def coco_iou(d, g):
    """maskUtils.iou for boxes (xywh, not crowd): (D, G)."""
    out = np.zeros((len(d), len(g)))
    for j, gb in enumerate(g):
        for i, db in enumerate(d):
            w = min(db[0] + db[2], gb[0] + gb[2]) - max(db[0], gb[0])
            h = min(db[1] + db[3], gb[1] + gb[3]) - max(db[1], gb[1])
            if w <= 0 or h <= 0:
                continue
            inter = w * h
            out[i, j] = inter / (db[2] * db[3] + gb[2] * gb[3] - inter)
    return out


def coco_eval(gts, dts, n_images, n_classes, max_det=100):
    """pycocotools COCOeval (bbox, area "all", maxDets 100, iscrowd 0), after its evaluate(),
    accumulate() and summarize(). gts: [(img, cat, x, y, w, h)], dts: [(img, cat, x, y, w, h,
    score)], both in annotation order. Returns (AP, AP50, AP75, AR100), per-class AP and AP50."""
    iou_thrs = np.linspace(.5, 0.95, int(np.round((0.95 - .5) / .05)) + 1, endpoint=True)
    rec_thrs = np.linspace(.0, 1.00, int(np.round((1.00 - .0) / .01)) + 1, endpoint=True)
    T, R, K = len(iou_thrs), len(rec_thrs), n_classes
    precision = -np.ones((T, R, K))
    recall = -np.ones((T, K))
    for k in range(K):
        E = []
        for img in range(n_images):   # sorted image ids
            gt = [g for g in gts if g[0] == img and g[1] == k]
            dt = [d for d in dts if d[0] == img and d[1] == k]
            if len(gt) == 0 and len(dt) == 0:
                continue
            # gt sorted by _ignore (all 0 here): order kept
            dtind = np.argsort([-d[6] for d in dt], kind="mergesort")
            dt = [dt[i] for i in dtind[0:max_det]]
            ious = coco_iou([d[2:6] for d in dt], [g[2:6] for g in gt]) if len(gt) and len(dt) else []
            gtm = np.zeros((T, len(gt)))
            dtm = np.zeros((T, len(dt)))
            gt_ig = np.zeros(len(gt))
            dt_ig = np.zeros((T, len(dt)))
            if len(ious):
                for tind, t in enumerate(iou_thrs):
                    for dind, d in enumerate(dt):
                        iou = min([t, 1 - 1e-10])
                        m = -1
                        for gind, g in enumerate(gt):
                            if gtm[tind, gind] > 0:
                                continue
                            if m > -1 and gt_ig[m] == 0 and gt_ig[gind] == 1:
                                break
                            if ious[dind, gind] < iou:
                                continue
                            iou = ious[dind, gind]
                            m = gind
                        if m == -1:
                            continue
                        dt_ig[tind, dind] = gt_ig[m]
                        dtm[tind, dind] = dind + 1
                        gtm[tind, m] = dind + 1
            E.append({"dtScores": [d[6] for d in dt], "dtMatches": dtm, "dtIgnore": dt_ig,
                      "gtIgnore": gt_ig})
        if len(E) == 0:
            continue
        dt_scores = np.concatenate([e["dtScores"][0:max_det] for e in E])
        inds = np.argsort(-dt_scores, kind="mergesort")
        dtm = np.concatenate([e["dtMatches"][:, 0:max_det] for e in E], axis=1)[:, inds]
        dt_ig = np.concatenate([e["dtIgnore"][:, 0:max_det] for e in E], axis=1)[:, inds]
        gt_ig = np.concatenate([e["gtIgnore"] for e in E])
        npig = np.count_nonzero(gt_ig == 0)
        if npig == 0:
            continue
        tps = np.logical_and(dtm, np.logical_not(dt_ig))
        fps = np.logical_and(np.logical_not(dtm), np.logical_not(dt_ig))
        tp_sum = np.cumsum(tps, axis=1).astype(dtype=np.float64)
        fp_sum = np.cumsum(fps, axis=1).astype(dtype=np.float64)
        for t, (tp, fp) in enumerate(zip(tp_sum, fp_sum)):
            tp, fp = np.array(tp), np.array(fp)
            nd = len(tp)
            rc = tp / npig
            pr = tp / (fp + tp + np.spacing(1))
            q = np.zeros((R,))
            recall[t, k] = rc[-1] if nd else 0
            pr = pr.tolist()
            q = q.tolist()
            for i in range(nd - 1, 0, -1):
                if pr[i] > pr[i - 1]:
                    pr[i - 1] = pr[i]
            inds_r = np.searchsorted(rc, rec_thrs, side="left")
            try:
                for ri, pi in enumerate(inds_r):
                    q[ri] = pr[pi]
            except IndexError:
                pass
            precision[t, :, k] = np.array(q)

    def mean_valid(x):
        x = x[x > -1]
        return -1 if len(x) == 0 else np.mean(x)

    stats = [mean_valid(precision), mean_valid(precision[np.where(0.5 == iou_thrs)[0]]),
             mean_valid(precision[np.where(0.75 == iou_thrs)[0]]), mean_valid(recall)]
    class_ap = [mean_valid(precision[:, :, k]) for k in range(K)]
    class_ap50 = [mean_valid(precision[0, :, k]) for k in range(K)]
    return stats, class_ap, class_ap50


def gen_coco():
    rng = np.random.RandomState(1509)
    t = {}
    cases = []
    # 0..3 random cases; the last has an image-class with more than 100 detections
    for case in range(5):
        n_images, K = (6, 4) if case < 4 else (2, 2)
        gts, dts = [], []
        for img in range(n_images):
            if case < 4 and img == 1:
                n_g = 0                     # an image without ground truth
            else:
                n_g = rng.randint(1, 6) if case < 4 else 8
            for _ in range(n_g):
                k = rng.randint(0, K - 1 if case < 4 else K)   # class K-1: no ground truth
                x, y = rng.rand(2) * 80
                w, h = rng.rand(2) * 30 + 4
                gts.append((img, k, x, y, x + w, y + h))
            if case < 4 and img == 2:
                continue                    # an image without detections
        for g in gts:
            if g[0] == 2 and case < 4:
                continue
            for _ in range(rng.randint(0, 4)):   # noisy copies, some with the wrong class
                jit = rng.randn(4) * rng.choice([0.5, 2, 6])
                k = g[1] if rng.rand() < 0.8 else rng.randint(0, K)
                dts.append((g[0], k, g[2] + jit[0], g[3] + jit[1], g[4] + jit[2], g[5] + jit[3]))
        n_fp = 15 if case < 4 else 120
        for _ in range(n_fp):
            img = rng.randint(0, n_images) if case < 4 else 0
            if case < 4 and img == 2:
                continue
            x, y = rng.rand(2) * 90
            w, h = rng.rand(2) * 25 + 2
            dts.append((img, rng.randint(0, K) if case < 4 else 0, x, y, x + w, y + h))
        order = rng.permutation(len(dts))
        # scores on a grid of 0.05: ties happen, and pycocotools' stable sorts decide them
        dts = [dts[i] + (float(np.float32(rng.randint(1, 20) * 0.05)),) for i in order]
        gts = [tuple(float(np.float32(v)) if i >= 2 else v for i, v in enumerate(g)) for g in gts]
        dts = [tuple(float(np.float32(v)) if 2 <= i < 6 else v for i, v in enumerate(d)) for d in dts]
        g_ref = [(g[0], g[1], g[2], g[3], g[4] - g[2], g[5] - g[3]) for g in gts]
        d_ref = [(d[0], d[1], d[2], d[3], d[4] - d[2], d[5] - d[3], d[6]) for d in dts]
        stats, cap, cap50 = coco_eval(g_ref, d_ref, n_images, K)
        name = "case%d" % case
        t[name + ".gt"] = torch.tensor(gts, dtype=torch.float64).reshape(-1, 6)
        t[name + ".dt"] = torch.tensor(dts, dtype=torch.float64).reshape(-1, 7)
        t[name + ".config"] = torch.tensor([n_images, K], dtype=torch.float64)
        t[name + ".stats"] = torch.tensor(stats, dtype=torch.float64)
        t[name + ".class_ap"] = torch.tensor(cap, dtype=torch.float64)
        t[name + ".class_ap50"] = torch.tensor(cap50, dtype=torch.float64)
        print("    %s: %d gt, %d dt, AP %.4f AP50 %.4f AP75 %.4f AR100 %.4f, per class %s" % (
            name, len(gts), len(dts), *stats, ["%.3f" % a for a in cap]))
    # sanity of the replica: detections equal to the ground truth score AP 1
    g_ref = [(0, 0, 1.0, 2.0, 10.0, 5.0), (1, 0, 3.0, 3.0, 4.0, 4.0), (1, 1, 0.0, 0.0, 9.0, 9.0)]
    d_ref = [g + (0.9,) for g in g_ref]
    stats, cap, _ = coco_eval(g_ref, d_ref, 2, 2)
    assert stats == [1.0, 1.0, 1.0, 1.0], stats
    write("coco", t)


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
    gen_coco()


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Generate the FCOS-head fixture tests/data/dense/det-head.safetensors (test-det-head.c).

Run with Debian's PyTorch and torchvision (torch 1.13, torchvision 0.14) from the project root:

    /usr/bin/python3 tests/data/gen-det-head.py

torchvision's own FCOS with one feature level (AnchorGenerator one size = the stride, aspect 1)
and FCOSHead (W, 1, K, num_convs=0), in float64 on float32-representable values, fed the patch
rows of a token sequence with one prefix token. Stored (float32): the tokens (B, T, W), the
head's parameters under torchvision's names ("head." + the head's state_dict), its three
outputs as FCOSHead.forward returns them (cls_logits (B, A, K), bbox_regression (B, A, 4),
bbox_ctrness (B, A)), the targets (boxesN, labelsN; labels from 1, 0 being the background), the
three losses of FCOS.compute_loss, the gradient of their sum on every parameter ("grad." +
name) and on the tokens ("d_tokens", zero on the prefix), and FCOS.postprocess_detections of
the outputs (score 0.05, top 1000, NMS 0.6, 100 per image; in float32 as the model runs it):
detN.boxes, detN.scores, detN.labels.
"""

import importlib.util
import os

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("gen_dense", os.path.join(HERE, "gen-dense.py"))
gd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gd)

B, NP, GH, GW, W, K, STRIDE = 2, 1, 5, 6, 16, 3, 8


def main():
    from torchvision.models.detection.image_list import ImageList
    torch.set_default_dtype(torch.float64)
    g = torch.Generator().manual_seed(1616)
    T = NP + GH * GW
    H, Wd = GH * STRIDE, GW * STRIDE
    model = gd.fcos_model(W, K, STRIDE, torch.float64)
    head = model.head
    with torch.no_grad():
        for conv in (head.classification_head.cls_logits, head.regression_head.bbox_reg,
                     head.regression_head.bbox_ctrness):
            conv.weight.copy_(gd.r64(*conv.weight.shape, std=0.05, gen=g))
            conv.bias.copy_(gd.r64(*conv.bias.shape, std=0.3, gen=g))
        head.regression_head.bbox_reg.bias.add_(0.8)
    tokens = gd.r64(B, T, W, gen=g).requires_grad_()
    feats = tokens[:, NP:].reshape(B, GH, GW, W).permute(0, 3, 1, 2)
    out = head([feats])
    images = ImageList(torch.zeros(B, 3, H, Wd), [(H, Wd)] * B)
    anchors = model.anchor_generator(images, [feats])
    targets = [
        {"boxes": torch.tensor([[3.5, 2.0, 21.0, 17.5], [20.0, 12.0, 46.0, 38.0]]),
         "labels": torch.tensor([1, 2])},
        {"boxes": torch.tensor([[9.0, 5.5, 30.5, 33.0]]), "labels": torch.tensor([2])},
    ]
    losses = model.compute_loss(targets, out, anchors, [GH * GW])
    total = losses["classification"] + losses["bbox_regression"] + losses["bbox_ctrness"]
    total.backward()
    t = {"tokens": tokens.detach(),
         "cls_logits": out["cls_logits"], "bbox_regression": out["bbox_regression"],
         "bbox_ctrness": out["bbox_ctrness"].squeeze(2),
         "losses": torch.stack([losses["classification"], losses["bbox_regression"],
                                losses["bbox_ctrness"]]).detach(),
         "d_tokens": tokens.grad}
    for name, p in head.named_parameters():
        t["head." + name] = p.detach()
        t["grad.head." + name] = p.grad
    for i, tg in enumerate(targets):
        t["boxes%d" % i] = tg["boxes"]
        t["labels%d" % i] = tg["labels"].double()
    model32 = gd.fcos_model(W, K, STRIDE, torch.float32)
    split = {k: [v.detach().float()] for k, v in out.items()}
    res = model32.postprocess_detections(split, [[a.float()] for a in anchors], [(H, Wd)] * B)
    for i, r in enumerate(res):
        t["det%d.boxes" % i] = r["boxes"].double()
        t["det%d.scores" % i] = r["scores"].double()
        t["det%d.labels" % i] = r["labels"].double()
    print("  losses %s, detections %s" % (t["losses"].tolist(), [len(r["scores"]) for r in res]))
    gd.write("det-head", t)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""Generate the segmentation-head fixtures tests/data/dense/seg-head-{linear,upconv}.safetensors
(test-seg-head.c).

Run with Debian's PyTorch (1.13) from the project root:

    /usr/bin/python3 tests/data/gen-seg-head.py

Each head is written in PyTorch (nn.Conv2d, nn.ConvTranspose2d, nn.LayerNorm over channels,
nn.GELU, F.interpolate bilinear align_corners=False) in float64 on float32-representable values,
fed the patch rows of a token sequence with one prefix token, and scored by F.cross_entropy with
ignore_index=255. Stored (float32): the tokens (B, T, W), the labels (B, Ho, Wo) as floats, the
parameters under mmsegmentation's names, the logits channels-last (B, Ho, Wo, K), the loss, the
gradient of every parameter ("grad." + name), d loss / d tokens ("d_tokens", zero on the prefix),
and every parameter after one torch.optim.AdamW step ("adamw." + name; lr 1e-2, wd 0.05 on the
4-D weights only, betas (0.9, 0.999), eps 1e-8).
"""

import importlib.util
import os

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "dense")
_spec = importlib.util.spec_from_file_location("gen_fixtures", os.path.join(HERE, "gen-fixtures.py"))
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)

B, NP, GH, GW, W, K, HO, WO = 2, 1, 3, 4, 16, 5, 13, 17


class LN2d(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln = nn.LayerNorm(c, eps=1e-6)

    def forward(self, x):  # NCHW
        return self.ln(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class Head(nn.Module):
    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        if kind == "upconv":
            self.up = nn.Sequential(nn.ConvTranspose2d(W, W // 2, 2, 2), LN2d(W // 2), nn.GELU(),
                                    nn.ConvTranspose2d(W // 2, W // 4, 2, 2))
            c = W // 4
        else:
            c = W
        self.conv_seg = nn.Conv2d(c, K, 1)

    def forward(self, tokens):
        x = tokens[:, NP:, :].reshape(B, GH, GW, W).permute(0, 3, 1, 2)
        if self.kind == "upconv":
            x = self.up(x)
        x = self.conv_seg(x)
        return F.interpolate(x, size=(HO, WO), mode="bilinear", align_corners=False)


def mm_name(n):
    # nn.Sequential's LayerNorm wrapper: up.1.ln.weight -> up.1.weight (mmseg's LayerNorm2d)
    return "decode_head." + n.replace(".ln.", ".")


def make(kind, seed):
    g = torch.Generator().manual_seed(seed)
    head = Head(kind).double()
    with torch.no_grad():
        for p in head.parameters():
            p.copy_((torch.randn(p.shape, generator=g, dtype=torch.float64) * 0.3).float().double())
        if kind == "upconv":
            head.up[1].ln.weight.add_(1.0)
    tokens = (torch.randn(B, NP + GH * GW, W, generator=g, dtype=torch.float64)).float().double()
    tokens.requires_grad_(True)
    labels = torch.randint(0, K, (B, HO, WO), generator=g)
    labels[torch.rand(B, HO, WO, generator=g) < 0.15] = 255
    logits = head(tokens)
    loss = F.cross_entropy(logits, labels, ignore_index=255)
    loss.backward()
    out = {"tokens": tokens.detach(), "labels": labels.double(),
           "logits": logits.detach().permute(0, 2, 3, 1), "loss": loss.detach().reshape(1),
           "d_tokens": tokens.grad}
    for n, p in head.named_parameters():
        out[mm_name(n)] = p.detach().clone()
        out["grad." + mm_name(n)] = p.grad.detach().clone()
    decay = [p for p in head.parameters() if p.ndim >= 2]
    no_decay = [p for p in head.parameters() if p.ndim < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.05},
                             {"params": no_decay, "weight_decay": 0.0}], lr=1e-2,
                            betas=(0.9, 0.999), eps=1e-8)
    opt.step()
    for n, p in head.named_parameters():
        out["adamw." + mm_name(n)] = p.detach().clone()
    path = os.path.join(OUT, "seg-head-%s.safetensors" % kind)
    gf.st_write(path, {k: v.detach().to(torch.float32).contiguous() for k, v in out.items()})
    print("  %s: %d bytes, loss %.6f" % (path, os.path.getsize(path), loss.item()))


if __name__ == "__main__":
    torch.set_num_threads(1)
    make("linear", 15)
    make("upconv", 16)

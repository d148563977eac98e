#!/usr/bin/python3
"""Reference fixtures of ViTs with CNN stems (engine/model/vl-stem.h) in tests/data/stem-*/.

Run from the project root with Debian's PyTorch:

    /usr/bin/python3 tests/data/gen-stems.py

Each folder is a small random ViT whose patch embedding is a CNN stem, in timm naming:
  stem-conv      vitlab's conv stem (Xiao et al.): 3x3 stride-2 conv + BatchNorm + ReLU per halving,
                 then a 1x1 conv to the width (patch_embed.stem.N.{conv,bn}, patch_embed.proj)
  stem-mbconv    vitlab's mbconv stem: conv + BN + SiLU, then EfficientNet MBConv blocks of stride 2
                 (conv_pw, bn1, conv_dw, bn2, se.conv_reduce/conv_expand, conv_pwl, bn3)
  hybrid-r2      timm's hybrid ViT (vision_transformer_hybrid.py): ResNetV2 (preact=False,
                 stem_type='same', StdConv2dSame eps 1e-8, GroupNorm(32) + ReLU, MaxPool2dSame),
                 two Bottleneck stages, HybridEmbed proj (patch 1)
  hybrid-s       timm's vit_tiny_r_s16_p8 layout: the ResNetV2 stem only (patch_embed.backbone.conv,
                 .norm), proj with patch 2
written from timm's source (timm itself is not installed): the modules below carry timm's
attribute names, so their state_dict is a timm checkpoint. The transformer after the stem is
gen-fixtures.py's timm ViT (the stem's feature map enters it through an identity 1x1 "patch
embedding").

Files: config.json, model.safetensors (BatchNorm's num_batches_tracked left out), inputs.safetensors
(images (B,C,H,W), targets), expected.safetensors:
  logits_eval                      eval mode (BatchNorm on its running statistics)
  logits_train, loss_train         train mode (batch statistics), cross-entropy
  grad.NAME                        d loss_train / d NAME for the stem group (patch_embed.*,
                                   cls_token, pos_embed) and the head, the transformer frozen
  after.NAME                       every BatchNorm running statistic after that one train forward
Computed in float64 from the stored float32 values, stored as float32. Deterministic.
"""

import json
import math
import os

import importlib.util
import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("gen_fixtures", os.path.join(HERE, "gen-fixtures.py"))
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)
torch.set_num_threads(1)


def pad_same(x, k, s, value=0.0):
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


# --- timm.layers: StdConv2dSame, GroupNormAct, MaxPool2dSame ---------------------------------

class StdConv2dSame(nn.Conv2d):
    def __init__(self, cin, cout, k, stride=1, eps=1e-8):
        super().__init__(cin, cout, k, stride=stride, padding=0, bias=False)
        self.eps = eps

    def forward(self, x):
        x = pad_same(x, self.kernel_size[0], self.stride[0])
        w = F.batch_norm(self.weight.reshape(1, self.out_channels, -1), None, None,
                         training=True, momentum=0., eps=self.eps).reshape_as(self.weight)
        return F.conv2d(x, w, self.bias, self.stride)


class GroupNormAct(nn.GroupNorm):
    def __init__(self, c, apply_act=True):
        super().__init__(32, c, eps=1e-5)
        self.apply_act = apply_act

    def forward(self, x):
        x = F.group_norm(x, self.num_groups, self.weight, self.bias, self.eps)
        return F.relu(x) if self.apply_act else x


class MaxPool2dSame(nn.Module):
    def forward(self, x):
        return F.max_pool2d(pad_same(x, 3, 2, value=-float("inf")), 3, 2)


# --- timm.models.resnetv2 (preact=False) ----------------------------------------------------

class DownsampleConv(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.conv = StdConv2dSame(cin, cout, 1, stride)
        self.norm = GroupNormAct(cout, apply_act=False)

    def forward(self, x):
        return self.norm(self.conv(x))


class Bottleneck(nn.Module):
    def __init__(self, cin, cout, stride, proj):
        super().__init__()
        mid = cout // 4
        self.downsample = DownsampleConv(cin, cout, stride) if proj else None
        self.conv1 = StdConv2dSame(cin, mid, 1)
        self.norm1 = GroupNormAct(mid)
        self.conv2 = StdConv2dSame(mid, mid, 3, stride)
        self.norm2 = GroupNormAct(mid)
        self.conv3 = StdConv2dSame(mid, cout, 1)
        self.norm3 = GroupNormAct(cout, apply_act=False)

    def forward(self, x):
        sc = self.downsample(x) if self.downsample is not None else x
        x = self.norm1(self.conv1(x))
        x = self.norm2(self.conv2(x))
        x = self.norm3(self.conv3(x))
        return F.relu(x + sc)


class Stage(nn.Module):
    def __init__(self, cin, cout, stride, depth):
        super().__init__()
        self.blocks = nn.Sequential(*[Bottleneck(cin if i == 0 else cout, cout,
                                                 stride if i == 0 else 1, i == 0)
                                      for i in range(depth)])

    def forward(self, x):
        return self.blocks(x)


def resnetv2_stem(cin, cout):
    return nn.Sequential(dict_(conv=StdConv2dSame(cin, cout, 7, 2), norm=GroupNormAct(cout),
                               pool=MaxPool2dSame()))


def dict_(**kw):
    from collections import OrderedDict
    return OrderedDict(kw)


class ResNetV2(nn.Module):
    def __init__(self, cin, stem, channels, depths):
        super().__init__()
        self.stem = resnetv2_stem(cin, stem)
        stages, prev = [], stem
        for i, (c, d) in enumerate(zip(channels, depths)):
            stages.append(Stage(prev, c, 1 if i == 0 else 2, d))
            prev = c
        self.stages = nn.Sequential(*stages)

    def forward(self, x):
        return self.stages(self.stem(x))


class HybridEmbed(nn.Module):
    def __init__(self, backbone, feat, width, patch):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Conv2d(feat, width, patch, stride=patch)

    def forward(self, x):
        return self.proj(self.backbone(x))


# --- vitlab's stems ---------------------------------------------------------------------------

class ConvBn(nn.Module):
    def __init__(self, cin, cout):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 2, 1, bias=False)
        self.bn = nn.BatchNorm2d(cout)


class ConvStem(nn.Module):
    """Xiao et al.: per halving conv3x3 s2 + BN + ReLU, doubling the channels; 1x1 to the width."""
    def __init__(self, cin, patch, width, act=F.relu):
        super().__init__()
        n = int(math.log2(patch))
        chans = [max(8, width >> (n - 1 - i)) for i in range(n)]
        self.stem = nn.Sequential(*[ConvBn(cin if i == 0 else chans[i - 1], chans[i])
                                    for i in range(n)])
        self.proj = nn.Conv2d(chans[-1], width, 1)

    def forward(self, x):
        for blk in self.stem:
            x = F.relu(blk.bn(blk.conv(x)))
        return self.proj(x)


class SqueezeExcite(nn.Module):
    def __init__(self, c, r):
        super().__init__()
        self.conv_reduce = nn.Conv2d(c, r, 1)
        self.conv_expand = nn.Conv2d(r, c, 1)

    def forward(self, x):
        s = F.silu(self.conv_reduce(x.mean((2, 3), keepdim=True)))
        return x * torch.sigmoid(self.conv_expand(s))


class MBConv(nn.Module):
    """timm's InvertedResidual, stride 2 (no shortcut), expansion 4, SE on a quarter of cin."""
    def __init__(self, cin, cout):
        super().__init__()
        mid = 4 * cin
        self.conv_pw = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv_dw = nn.Conv2d(mid, mid, 3, 2, 1, groups=mid, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.se = SqueezeExcite(mid, max(1, cin // 4))
        self.conv_pwl = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)

    def forward(self, x):
        x = F.silu(self.bn1(self.conv_pw(x)))
        x = F.silu(self.bn2(self.conv_dw(x)))
        return self.bn3(self.conv_pwl(self.se(x)))


class MBConvStem(nn.Module):
    def __init__(self, cin, patch, width):
        super().__init__()
        n = int(math.log2(patch))
        chans = [16] + [max(8, width >> (n - 1 - i)) for i in range(1, n)]
        self.stem = nn.Sequential(ConvBn(cin, 16), *[MBConv(chans[i - 1], chans[i])
                                                     for i in range(1, n)])
        self.proj = nn.Conv2d(chans[-1], width, 1)

    def forward(self, x):
        x = F.silu(self.stem[0].bn(self.stem[0].conv(x)))
        for blk in list(self.stem)[1:]:
            x = blk(x)
        return self.proj(x)


# --- fixtures ---------------------------------------------------------------------------------

def randomize(mod, gen):
    """Non-trivial weights and statistics (float32)."""
    sd = {}
    for name, t in mod.state_dict().items():
        if name.endswith("num_batches_tracked"):
            continue
        if name.endswith("running_var"):
            v = 0.5 + torch.rand(t.shape, generator=gen)
        elif name.endswith("running_mean"):
            v = 0.2 * torch.randn(t.shape, generator=gen)
        elif t.ndim == 1 and name.endswith("weight"):
            v = 1.0 + 0.2 * torch.randn(t.shape, generator=gen)
        elif t.ndim == 1:
            v = 0.1 * torch.randn(t.shape, generator=gen)
        else:
            fan_in = t[0].numel()
            v = torch.randn(t.shape, generator=gen) * min(0.5, max(0.05, fan_in ** -0.5))
        sd[name] = v.to(torch.float32)
    return sd


def make(name, stem, g, seed, kind=None, model_patch=None):
    out = os.path.join(HERE, name)
    os.makedirs(out, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    W, grid = g["width"], g["img"] // g["patch"]
    vit = gf.make_params(gen, g["chans"], g["patch"], W, g["depth"], grid * grid + 1, g["mlp"],
                         g["classes"])
    del vit["patch_embed.proj.weight"], vit["patch_embed.proj.bias"]
    sd = {"patch_embed." + k: v for k, v in randomize(stem, gen).items()}
    params = dict(vit, **sd)
    images = torch.randn(g["batch"], g["chans"], g["img"], g["img"], generator=gen).float()
    targets = torch.randint(0, g["classes"], (g["batch"],), generator=gen, dtype=torch.int64)

    stem = stem.double()
    cfg = {"depth": g["depth"], "num_heads": g["heads"], "eps": 1e-6, "patch_size": 1}
    eye = torch.eye(W, dtype=torch.float64).reshape(W, W, 1, 1)

    def run(train):
        p64 = {k: v.to(torch.float64).clone().requires_grad_(True) for k, v in params.items()}
        stem.load_state_dict({k[len("patch_embed."):]: v for k, v in p64.items()
                              if k.startswith("patch_embed.")}, strict=False)
        stem.train(train)
        # the stem's parameters are leaves of p64 through load_state_dict's copy: take their
        # gradients from the module instead
        stem.zero_grad(set_to_none=True)
        feat = stem(images.to(torch.float64))
        q = dict(p64, **{"patch_embed.proj.weight": eye,
                         "patch_embed.proj.bias": torch.zeros(W, dtype=torch.float64)})
        o = gf.forward(q, feat, cfg)
        return o["logits_token"], p64

    exp = {}
    with torch.no_grad():
        exp["logits_eval"] = gf.f32(run(False)[0])
    logits, p64 = run(True)
    loss = F.cross_entropy(logits, targets)
    loss.backward()
    exp["logits_train"] = gf.f32(logits)
    exp["loss_train"] = gf.f32(loss.reshape(1))
    for n, prm in stem.named_parameters():
        exp["grad.patch_embed." + n] = gf.f32(prm.grad)
    for n in ("cls_token", "pos_embed", "head.weight", "head.bias"):
        exp["grad." + n] = gf.f32(p64[n].grad)
    for n, b in stem.named_buffers():
        if "running" in n:
            exp["after.patch_embed." + n] = gf.f32(b)

    gf.st_write(os.path.join(out, "model.safetensors"), params, {"format": "pt"})
    gf.st_write(os.path.join(out, "inputs.safetensors"), {"images": images, "targets": targets})
    gf.st_write(os.path.join(out, "expected.safetensors"), exp)
    conf = gf.timm_config(dict(g, patch=model_patch or g["patch"]))
    conf["architecture"] = g.get("arch", "vit_custom")
    if kind:
        conf["vitlab"] = {"head": "linear", "stem": {"kind": kind}}
    conf["pretrained_cfg"]["mean"] = [0.5] * g["chans"]
    gf.write_config(os.path.join(out, "config.json"), conf)
    print("%-12s %d tensors, loss %.4f" % (name, len(params), loss.item()))


def main():
    base = dict(chans=3, depth=2, heads=2, width=32, mlp=64, classes=5, batch=3)
    make("stem-conv", ConvStem(3, 8, 32), dict(base, img=32, patch=8), 1801, "conv")
    make("stem-mbconv", MBConvStem(3, 8, 32), dict(base, img=32, patch=8), 1802, "mbconv")
    r2 = HybridEmbed(ResNetV2(3, 32, (128, 128), (1, 1)), 128, 32, 1)
    make("hybrid-r2", r2, dict(base, img=32, patch=8, arch="vit_small_r26_s32_224"), 1803,
         model_patch=1)
    s = HybridEmbed(resnetv2_stem(3, 32), 32, 32, 2)
    make("hybrid-s", s, dict(base, img=24, patch=8, arch="vit_tiny_r_s16_p8_224"), 1804,
         model_patch=2)


if __name__ == "__main__":
    main()

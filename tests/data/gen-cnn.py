#!/usr/bin/python3
"""Reference values of the CNN-stem kernels (engine/nn/vl-cnn.h) in tests/data/cnn-kernels.safetensors.

Run from the project root with Debian's PyTorch:

    /usr/bin/python3 tests/data/gen-cnn.py

Each case stores its inputs, a random upstream gradient `dout` and PyTorch's outputs and
gradients, computed in float64 (autograd) from the float32 values stored, then stored as float32.
Grids are stored channels-last (B, H, W, C), as vitlab keeps them; weights in PyTorch's layouts.
Definitions follow PyTorch and timm: pad_same / Conv2dSame (timm.layers.padding), StdConv2dSame
(F.batch_norm over the weight reshaped (1, Cout, -1), training=True, momentum 0, eps),
nn.BatchNorm2d (momentum 0.1; the running variance unbiased), nn.GroupNorm, MaxPool2d and timm's
MaxPool2dSame (padding with -inf), and timm's EfficientNet SqueezeExcite (conv_reduce, SiLU,
conv_expand, sigmoid gate). Deterministic: re-running writes identical bytes.
"""

import math
import os

import importlib.util
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
_spec = importlib.util.spec_from_file_location("gen_fixtures", os.path.join(HERE, "gen-fixtures.py"))
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)

torch.set_num_threads(1)
G = torch.Generator().manual_seed(18)
OUT = {}


def randn(*shape, std=1.0, mean=0.0):
    return (torch.randn(*shape, generator=G) * std + mean).to(torch.float32)


def nhwc(t):
    return t.permute(0, 2, 3, 1).contiguous()


def nchw(t):
    return t.permute(0, 3, 1, 2).contiguous()


def same_pad(x, k, s, value=0.0):
    ih, iw = x.shape[-2:]
    ph = max((math.ceil(ih / s) - 1) * s + k - ih, 0)
    pw = max((math.ceil(iw / s) - 1) * s + k - iw, 0)
    return F.pad(x, (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2), value=value)


def std_weight(w, eps):
    return F.batch_norm(w.reshape(1, w.shape[0], -1), None, None, training=True, momentum=0.0,
                        eps=eps).reshape_as(w)


def case(name, fn, grid, params, extra=None):
    """grid: the input (B, C, H, W) float32; params: dict of float32 tensors that get gradients.
    fn(x64, p64) -> the output (B, C, H, W) float64 (or a dict with 'out' and more)."""
    x = grid.to(torch.float64).requires_grad_(True)
    p = {k: v.to(torch.float64).requires_grad_(True) for k, v in params.items()}
    res = fn(x, p)
    out = res["out"] if isinstance(res, dict) else res
    dout = randn(*out.shape)
    (out * dout.to(torch.float64)).sum().backward()
    OUT[name + ".x"] = nhwc(grid)
    OUT[name + ".out"] = gf.f32(nhwc(out))
    OUT[name + ".dout"] = nhwc(dout)
    OUT[name + ".dx"] = gf.f32(nhwc(x.grad))
    for k, v in params.items():
        OUT[name + "." + k] = v
        OUT[name + ".d" + k] = gf.f32(p[k].grad)
    if isinstance(res, dict):
        for k, v in res.items():
            if k != "out":
                OUT[name + "." + k] = gf.f32(v)


def main():
    # conv2d "same" (asymmetric: 7 -> pads 1, 2 at stride 2 with k 3... and k 7)
    for tag, (B, Cin, H, W, Cout, k, s) in {
            "same3": (2, 3, 7, 6, 4, 3, 2), "same7": (1, 2, 9, 10, 3, 7, 2),
            "same1s2": (2, 4, 5, 6, 3, 1, 2)}.items():
        case("conv_" + tag, lambda x, p, k=k, s=s: F.conv2d(same_pad(x, k, s), p["w"], p["b"],
                                                            stride=s),
             randn(B, Cin, H, W), {"w": randn(Cout, Cin, k, k, std=0.3), "b": randn(Cout, std=0.1)})
    # StdConv2dSame, eps 1e-8 (the hybrid ViTs') and 1e-6 (timm's default), no bias
    for tag, eps in (("std8", 1e-8), ("std6", 1e-6)):
        case("conv_" + tag, lambda x, p, eps=eps: F.conv2d(same_pad(x, 3, 2),
                                                          std_weight(p["w"], eps), None, stride=2),
             randn(2, 3, 7, 8), {"w": randn(5, 3, 3, 3, std=0.2, mean=0.05)})
    # BatchNorm2d, train (batch statistics, running stats updated) and eval
    rm, rv = randn(4, std=0.2), randn(4, std=0.2, mean=1.0).abs()
    OUT["bn.running_mean0"], OUT["bn.running_var0"] = rm, rv

    def bn_train(x, p):
        m, v = rm.to(torch.float64).clone(), rv.to(torch.float64).clone()
        out = F.batch_norm(x, m, v, p["w"], p["b"], training=True, momentum=0.1, eps=1e-5)
        return {"out": out, "running_mean": m, "running_var": v}
    case("bn_train", bn_train, randn(3, 4, 5, 4, std=2.0, mean=0.5),
         {"w": randn(4, std=0.3, mean=1.0), "b": randn(4, std=0.1)})
    case("bn_eval", lambda x, p: F.batch_norm(x, rm.to(torch.float64), rv.to(torch.float64),
                                              p["w"], p["b"], training=False, eps=1e-5),
         randn(2, 4, 3, 5), {"w": randn(4, std=0.3, mean=1.0), "b": randn(4, std=0.1)})
    # GroupNorm (2 groups of 3), eps 1e-5
    case("gn", lambda x, p: F.group_norm(x, 2, p["w"], p["b"], eps=1e-5),
         randn(2, 6, 4, 3, std=1.5, mean=-0.3), {"w": randn(6, std=0.3, mean=1.0),
                                                 "b": randn(6, std=0.1)})
    case("relu", lambda x, p: F.relu(x), randn(2, 3, 4, 5), {})
    case("silu", lambda x, p: F.silu(x), randn(2, 3, 4, 5, std=2.0), {})
    # max pooling: PyTorch's symmetric padding and timm's same padding (-inf)
    case("maxpool_p1", lambda x, p: F.max_pool2d(x, 3, 2, 1), randn(2, 3, 7, 8), {})
    case("maxpool_same", lambda x, p: F.max_pool2d(same_pad(x, 3, 2, -float("inf")), 3, 2),
         randn(2, 3, 8, 7), {})

    # squeeze-and-excitation: C 8, R 2
    def se(x, p):
        s = x.mean((2, 3), keepdim=True)
        s = F.silu(F.conv2d(s, p["w1"], p["b1"]))
        return x * torch.sigmoid(F.conv2d(s, p["w2"], p["b2"]))
    case("se", se, randn(2, 8, 3, 4), {"w1": randn(2, 8, 1, 1, std=0.5), "b1": randn(2, std=0.1),
                                       "w2": randn(8, 2, 1, 1, std=0.5), "b2": randn(8, std=0.1)})
    gf.st_write(os.path.join(HERE, "cnn-kernels.safetensors"), OUT)
    print("wrote cnn-kernels.safetensors: %d tensors" % len(OUT))


if __name__ == "__main__":
    main()

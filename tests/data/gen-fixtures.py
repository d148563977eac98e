#!/usr/bin/python3
"""Generate the PyTorch reference fixtures in tests/data/geom-*/.

Run with Debian's PyTorch (torch 1.13), from the project root:

    /usr/bin/python3 tests/data/gen-fixtures.py

The model is an explicit timm-style pre-norm ViT written with torch.nn.functional
(timm is not needed).  Conventions and tensor names follow ../shared/fixtures/README.md
(fixture vit-timm-tiny).  Before writing anything the script re-computes the shared
fixture vit-timm-tiny with the same code and refuses to continue unless it agrees
(pass --skip-validation to generate without ../shared).

All reference values are computed in float64 from the stored (float32, or f16/bf16-rounded)
weights and inputs, and stored as float32.  Output is deterministic: re-running
reproduces identical bytes.
"""

import argparse
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

# ---------------------------------------------------------------------------
# safetensors I/O (8-byte LE header length, JSON header, raw little-endian data)
# ---------------------------------------------------------------------------

_NP_OF = {"F32": "<f4", "F64": "<f8", "F16": "<f2", "I64": "<i8", "I32": "<i4"}


def st_read(path):
    with open(path, "rb") as f:
        blob = f.read()
    (n,) = struct.unpack("<Q", blob[:8])
    header = json.loads(blob[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", None) or {}
    data = blob[8 + n:]
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        raw = data[a:b]
        dt = info["dtype"]
        if dt == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            arr = u16.view(np.float32)
        else:
            arr = np.frombuffer(raw, dtype=_NP_OF[dt])
        out[name] = torch.from_numpy(arr.copy()).reshape(info["shape"])
    return out, meta


def _bytes_of(t):
    t = t.detach().contiguous().cpu()
    if t.dtype == torch.float32:
        return "F32", t.numpy().astype("<f4").tobytes()
    if t.dtype == torch.float16:
        return "F16", t.numpy().astype("<f2").tobytes()
    if t.dtype == torch.bfloat16:
        # bf16 -> f32 is exact; the bf16 bits are the upper half of the f32 bits.
        u32 = t.to(torch.float32).numpy().astype("<f4").view("<u4")
        return "BF16", (u32 >> 16).astype("<u2").tobytes()
    if t.dtype == torch.int64:
        return "I64", t.numpy().astype("<i8").tobytes()
    raise TypeError("unsupported dtype %s" % t.dtype)


def st_write(path, tensors, meta=None):
    header = {}
    if meta:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(meta.items())}
    chunks = []
    off = 0
    for name in sorted(tensors):
        dt, raw = _bytes_of(tensors[name])
        header[name] = {"dtype": dt, "shape": list(tensors[name].shape),
                        "data_offsets": [off, off + len(raw)]}
        chunks.append(raw)
        off += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((-len(hj)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for c in chunks:
            f.write(c)


# ---------------------------------------------------------------------------
# The model (timm VisionTransformer, class token, pre-norm, exact GELU)
# ---------------------------------------------------------------------------

BLOCK_PARAMS = [
    "norm1.weight", "norm1.bias",
    "attn.qkv.weight", "attn.qkv.bias",
    "attn.proj.weight", "attn.proj.bias",
    "norm2.weight", "norm2.bias",
    "mlp.fc1.weight", "mlp.fc1.bias",
    "mlp.fc2.weight", "mlp.fc2.bias",
]


def param_names(depth):
    names = ["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"]
    for i in range(depth):
        names += ["blocks.%d.%s" % (i, p) for p in BLOCK_PARAMS]
    names += ["norm.weight", "norm.bias", "head.weight", "head.bias"]
    return names


def layer_groups(depth):
    """OpenCLIP/timm layer groups, first to last."""
    groups = [["patch_embed.proj.weight", "patch_embed.proj.bias", "cls_token", "pos_embed"]]
    for i in range(depth):
        groups.append(["blocks.%d.%s" % (i, p) for p in BLOCK_PARAMS])
    groups.append(["norm.weight", "norm.bias"])
    groups.append(["head.weight", "head.bias"])
    return groups


def unlocked_params(depth, n):
    groups = layer_groups(depth)
    n = min(n, len(groups))
    out = []
    for g in groups[len(groups) - n:]:
        out += g
    return out


def _cubic(x, a):
    x = abs(x)
    if x < 1.0:
        return ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    if x < 2.0:
        return (((x - 5.0) * x + 8.0) * x - 4.0) * a
    return 0.0


def aa_bicubic_matrix(n_in, n_out):
    """[n_out, n_in] weights of F.interpolate(mode='bicubic', align_corners=False,
    antialias=True) along one axis: Pillow-style separable filter, Keys cubic with a = -0.5,
    support 2*max(n_in/n_out, 1) input pixels, taps clipped at the borders and the weights of
    each output renormalized to sum 1.  Kept here as an independent statement of what the C
    code must implement; checked against F.interpolate on every use."""
    scale = n_in / n_out
    fs = max(scale, 1.0)
    support = 2.0 * fs
    m = torch.zeros(n_out, n_in, dtype=torch.float64)
    for i in range(n_out):
        centre = scale * (i + 0.5)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        w = [_cubic((j - centre + 0.5) / fs, -0.5) for j in range(lo, hi)]
        total = sum(w)
        for j, wj in zip(range(lo, hi), w):
            m[i, j] = wj / total
    return m


def resample_pos_embed(pos_embed, new_hw, old_hw, num_prefix=1):
    """timm.layers.resample_abs_pos_embed with its defaults: prefix (CLS) entries kept, grid
    part F.interpolate(mode='bicubic', align_corners=False, antialias=True).

    antialias=True is timm's default and what ../shared/fixtures/vit-timm-tiny/pos_embed_48
    holds (it matches to 0.0; antialias=False differs by 0.18).  Note that PyTorch's
    antialiased bicubic uses a = -0.5 (Pillow's kernel), also when upsampling."""
    if tuple(new_hw) == tuple(old_hw):
        return pos_embed
    prefix, grid = pos_embed[:, :num_prefix], pos_embed[:, num_prefix:]
    c = grid.shape[-1]
    grid = grid.reshape(1, old_hw[0], old_hw[1], c).permute(0, 3, 1, 2)
    out = F.interpolate(grid, size=tuple(new_hw), mode="bicubic",
                        align_corners=False, antialias=True)
    mh = aa_bicubic_matrix(old_hw[0], new_hw[0]).to(grid.dtype)
    mw = aa_bicubic_matrix(old_hw[1], new_hw[1]).to(grid.dtype)
    explicit = torch.einsum("oi,ncij,pj->ncop", mh, grid, mw)
    err = (explicit - out).abs().max().item()
    assert err < 1e-12 or grid.dtype != torch.float64, "AA bicubic cross-check: %g" % err
    out = out.permute(0, 2, 3, 1).reshape(1, -1, c)
    return torch.cat([prefix, out], dim=1)


def forward(p, images, cfg, pos_embed=None):
    """Returns a dict: tokens_final [B,T,W], attn list of [B,H,T,T], logits_token etc."""
    depth, heads, eps, patch = cfg["depth"], cfg["num_heads"], cfg["eps"], cfg["patch_size"]
    x = F.conv2d(images, p["patch_embed.proj.weight"], p["patch_embed.proj.bias"], stride=patch)
    B, W = x.shape[0], x.shape[1]
    x = x.flatten(2).transpose(1, 2)                                   # [B, N, W]
    x = torch.cat([p["cls_token"].expand(B, -1, -1), x], dim=1)        # [B, T, W]
    x = x + (p["pos_embed"] if pos_embed is None else pos_embed)
    T = x.shape[1]
    D = W // heads
    scale = D ** -0.5
    attns = []
    for i in range(depth):
        b = "blocks.%d." % i
        h = F.layer_norm(x, (W,), p[b + "norm1.weight"], p[b + "norm1.bias"], eps)
        qkv = F.linear(h, p[b + "attn.qkv.weight"], p[b + "attn.qkv.bias"])
        qkv = qkv.reshape(B, T, 3, heads, D).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)                                        # [B, H, T, D]
        a = (q * scale) @ k.transpose(-2, -1)
        a = a.softmax(dim=-1)                                          # [B, H, T, T]
        attns.append(a)
        h = (a @ v).transpose(1, 2).reshape(B, T, W)
        x = x + F.linear(h, p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
        h = F.layer_norm(x, (W,), p[b + "norm2.weight"], p[b + "norm2.bias"], eps)
        h = F.gelu(F.linear(h, p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"]))
        x = x + F.linear(h, p[b + "mlp.fc2.weight"], p[b + "mlp.fc2.bias"])
    x = F.layer_norm(x, (W,), p["norm.weight"], p["norm.bias"], eps)
    out = {"tokens_final": x, "attn": attns}
    feats = {
        "token": x[:, 0],
        "avg": x[:, 1:].mean(dim=1),
        "max": x[:, 1:].max(dim=1).values,
    }
    for k, f in feats.items():
        out["features_" + k] = f
        out["logits_" + k] = F.linear(f, p["head.weight"], p["head.bias"])
    return out


def rollout(attns):
    """Abnar & Zuidema: mean over heads, + I, row-normalize, R = A_{L-1}...A_0; CLS row, patches."""
    R = None
    for a in attns:
        m = a.mean(dim=1)
        m = m + torch.eye(m.shape[-1], dtype=m.dtype)
        m = m / m.sum(dim=-1, keepdim=True)
        R = m if R is None else m @ R
    return R[:, 0, 1:]


def grads_of(p64, images, targets, cfg, ls=0.0):
    names = param_names(cfg["depth"])
    leaves = {n: p64[n].detach().clone().requires_grad_(True) for n in names}
    out = forward(leaves, images, cfg)
    loss = F.cross_entropy(out["logits_token"], targets, label_smoothing=ls)
    g = torch.autograd.grad(loss, [leaves[n] for n in names])
    return dict(zip(names, g))


def adamw_step(p64, g64, depth, unlock, lr, wd):
    """One torch.optim.AdamW step (float64) on the last `unlock` groups; returns stepped params."""
    names = unlocked_params(depth, unlock)
    leaves = {n: p64[n].detach().clone() for n in names}
    for n in names:
        leaves[n].requires_grad_(True)
        leaves[n].grad = g64[n].detach().clone()
    decay = [leaves[n] for n in names if leaves[n].ndim >= 2 and n not in ("pos_embed", "cls_token")]
    no_decay = [leaves[n] for n in names if not (leaves[n].ndim >= 2 and n not in ("pos_embed", "cls_token"))]
    groups = []
    if decay:
        groups.append({"params": decay, "weight_decay": wd})
    if no_decay:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-8)
    opt.step()
    return {n: leaves[n].detach() for n in names}


def check_step(p64, g64, stepped, lr, wd):
    """AdamW's first step written out: p*(1 - lr*wd_p) - lr*g/(|g| + eps), since the
    bias-corrected moments are g and g^2 at step 1."""
    worst = 0.0
    for n, t in stepped.items():
        wd_p = wd if (p64[n].ndim >= 2 and n not in ("pos_embed", "cls_token")) else 0.0
        g = g64[n]
        manual = p64[n] * (1.0 - lr * wd_p) - lr * g / (g.abs() + 1e-8)
        worst = max(worst, (manual - t).abs().max().item())
    assert worst < 1e-12, "AdamW step cross-check: %g" % worst


def f32(t):
    return t.detach().to(torch.float32).contiguous()


def to64(d):
    return {k: v.detach().to(torch.float64) for k, v in d.items()}


def forward_expected(p64, images64, targets, cfg):
    out = forward(p64, images64, cfg)
    e = {"tokens_final": out["tokens_final"]}
    for k in ("token", "avg", "max"):
        e["features_" + k] = out["features_" + k]
        e["logits_" + k] = out["logits_" + k]
    for i, a in enumerate(out["attn"]):
        e["attn.%d" % i] = a
    e["rollout"] = rollout(out["attn"])
    e["loss_token"] = F.cross_entropy(out["logits_token"], targets).reshape(1)
    e["loss_token_ls0.1"] = F.cross_entropy(out["logits_token"], targets,
                                            label_smoothing=0.1).reshape(1)
    return e


def crosscheck(p64, images64, cfg, exp, pos_embed=None, logits_name="logits_token", full=True):
    """Second, independent forward built from torch.nn modules (Conv2d, TransformerEncoderLayer
    with norm_first=True, MultiheadAttention for the per-head probabilities, LayerNorm,
    Linear).  Returns the largest absolute difference from the stored float32 values."""
    nn = torch.nn
    w = p64["patch_embed.proj.weight"]
    width, chans, patch = w.shape[0], w.shape[1], w.shape[2]
    kw = {"dtype": torch.float64}
    conv = nn.Conv2d(chans, width, patch, stride=patch, **kw)
    worst = 0.0
    with torch.no_grad():
        conv.weight.copy_(w)
        conv.bias.copy_(p64["patch_embed.proj.bias"])
        x = conv(images64).flatten(2).transpose(1, 2)
        x = torch.cat([p64["cls_token"].expand(x.shape[0], -1, -1), x], dim=1)
        x = x + (p64["pos_embed"] if pos_embed is None else pos_embed)
        for i in range(cfg["depth"]):
            b = "blocks.%d." % i
            mlp = p64[b + "mlp.fc1.weight"].shape[0]
            layer = nn.TransformerEncoderLayer(width, cfg["num_heads"], dim_feedforward=mlp,
                                               dropout=0.0, activation="gelu",
                                               layer_norm_eps=cfg["eps"], batch_first=True,
                                               norm_first=True, **kw).eval()
            for dst, src in ((layer.self_attn.in_proj_weight, "attn.qkv.weight"),
                             (layer.self_attn.in_proj_bias, "attn.qkv.bias"),
                             (layer.self_attn.out_proj.weight, "attn.proj.weight"),
                             (layer.self_attn.out_proj.bias, "attn.proj.bias"),
                             (layer.norm1.weight, "norm1.weight"), (layer.norm1.bias, "norm1.bias"),
                             (layer.norm2.weight, "norm2.weight"), (layer.norm2.bias, "norm2.bias"),
                             (layer.linear1.weight, "mlp.fc1.weight"),
                             (layer.linear1.bias, "mlp.fc1.bias"),
                             (layer.linear2.weight, "mlp.fc2.weight"),
                             (layer.linear2.bias, "mlp.fc2.bias")):
                dst.copy_(p64[b + src])
            if full:
                h = layer.norm1(x)
                _, a = layer.self_attn(h, h, h, need_weights=True, average_attn_weights=False)
                worst = max(worst, (a - exp["attn.%d" % i].double()).abs().max().item())
            x = layer(x)
        norm = nn.LayerNorm(width, eps=cfg["eps"], **kw)
        norm.weight.copy_(p64["norm.weight"])
        norm.bias.copy_(p64["norm.bias"])
        x = norm(x)
        head = nn.Linear(width, p64["head.weight"].shape[0], **kw)
        head.weight.copy_(p64["head.weight"])
        head.bias.copy_(p64["head.bias"])
        if full:
            worst = max(worst, (x - exp["tokens_final"].double()).abs().max().item())
        worst = max(worst, (head(x[:, 0]) - exp[logits_name].double()).abs().max().item())
    return worst


def check_fixture(name, p64, images64, cfg, exp, extra=()):
    """Cross-check a generated fixture; `extra` holds (images64, pos_embed, logits name)."""
    worst = crosscheck(p64, images64, cfg, exp)
    for ims, pe, lname in extra:
        worst = max(worst, crosscheck(p64, ims, cfg, exp, pos_embed=pe, logits_name=lname,
                                      full=False))
    print("%-22s nn.TransformerEncoderLayer cross-check: max abs %.3g" % (name, worst))
    if worst > 1e-5:
        raise SystemExit("%s: cross-check FAILED (%.3g)" % (name, worst))


# ---------------------------------------------------------------------------
# Validation against ../shared/fixtures/vit-timm-tiny
# ---------------------------------------------------------------------------

def validate(shared_dir):
    d = os.path.join(shared_dir, "fixtures", "vit-timm-tiny")
    with open(os.path.join(d, "config.json")) as f:
        conf = json.load(f)
    ma = conf["model_args"]
    cfg = {"depth": ma["depth"], "num_heads": ma["num_heads"], "eps": 1e-6,
           "patch_size": ma["patch_size"]}
    grid = ma["img_size"] // ma["patch_size"]
    model, _ = st_read(os.path.join(d, "model.safetensors"))
    inputs, _ = st_read(os.path.join(d, "inputs.safetensors"))
    exp, _ = st_read(os.path.join(d, "expected.safetensors"))

    p64 = to64(model)
    ours = forward_expected(p64, inputs["images"].double(), inputs["targets"], cfg)
    g = grads_of(p64, inputs["images"].double(), inputs["targets"], cfg)
    for n, t in g.items():
        ours["grad." + n] = t
    step = adamw_step(p64, g, cfg["depth"], 3, 1e-3, 0.05)
    check_step(p64, g, step, 1e-3, 0.05)
    for n, t in step.items():
        ours["step.unlock3." + n] = t
    g48 = inputs["images48"].shape[-1] // ma["patch_size"]
    pe48 = resample_pos_embed(p64["pos_embed"], (g48, g48), (grid, grid))
    ours["pos_embed_48"] = pe48
    ours["logits_token_48"] = forward(p64, inputs["images48"].double(), cfg,
                                      pos_embed=pe48)["logits_token"]

    xc = crosscheck(p64, inputs["images"].double(), cfg, exp)
    xc = max(xc, crosscheck(p64, inputs["images48"].double(), cfg, exp,
                            pos_embed=exp["pos_embed_48"].double(),
                            logits_name="logits_token_48", full=False))

    # Same forward run in float32, for the record.
    o32 = forward(model, inputs["images"], cfg)
    fwd32 = (o32["logits_token"] - exp["logits_token"]).abs().max().item()

    missing = sorted(set(exp) - set(ours))
    extra = sorted(k for k in ours if k.startswith(("grad.", "step.")) and k not in exp)
    if missing or extra:
        raise SystemExit("validation: names differ: missing %s extra %s" % (missing, extra))

    cats = {}
    worst_fwd = worst_rel = 0.0
    for k in sorted(exp):
        ref = exp[k].double()
        mine = f32(ours[k]).double()
        if tuple(ref.shape) != tuple(mine.shape):
            raise SystemExit("validation: %s has shape %s, expected %s"
                             % (k, list(mine.shape), list(ref.shape)))
        diff = (mine - ref).abs()
        scale = ref.abs().max().item()
        if k.startswith("step."):
            # README: elements whose exact gradient is ~0 move by noise (up to lr).
            small = exp["grad." + k[len("step.unlock3."):]].abs() < 1e-6
            if small.any():
                c = cats.setdefault("step.unlock3.* where |grad| < 1e-6", [0.0, 0.0, 0])
                c[0] = max(c[0], diff[small].max().item())
                c[2] += int(small.sum())
            diff = diff[~small]
            cat = "step.unlock3.* (other elements)"
        elif k.startswith(("grad.", "attn.")):
            cat = k.split(".")[0] + ".*"
        else:
            cat = k
        err = diff.max().item() if diff.numel() else 0.0
        rel = err / scale if scale > 0 else 0.0
        c = cats.setdefault(cat, [0.0, 0.0, 0])
        c[0] = max(c[0], err)
        c[1] = max(c[1], rel)
        c[2] += 1
        if k.startswith(("grad.", "step.")):
            worst_rel = max(worst_rel, rel)
        else:
            worst_fwd = max(worst_fwd, err)
    print("validation against %s (float64 computation, float32 storage):" % d)
    for cat in sorted(cats):
        a, r, n = cats[cat]
        if cat.endswith("< 1e-6"):
            print("  %-40s max abs %.3g   (%d elements; README tolerance: lr)" % (cat, a, n))
        else:
            print("  %-40s max abs %.3g   max abs/max|ref| %.3g" % (cat, a, r))
    print("  %-40s max abs %.3g" % ("(logits_token from a float32 forward)", fwd32))
    print("  %-40s max abs %.3g" % ("(nn.TransformerEncoderLayer vs expected)", xc))
    if worst_fwd > 1e-5 or worst_rel > 1e-5:
        raise SystemExit("validation FAILED: forward %.3g abs, grad/step %.3g rel (limit 1e-5)"
                         % (worst_fwd, worst_rel))
    print("  OK: forward within %.3g abs, grad/step within %.3g relative" % (worst_fwd, worst_rel))


# ---------------------------------------------------------------------------
# Fixture generation
# ---------------------------------------------------------------------------

def make_params(gen, img_chans, patch, width, depth, tokens, mlp, classes, embed_scale=1.0):
    """Random, deliberately non-trivial weights (float32).

    embed_scale < 1 shrinks patch_embed, cls_token and pos_embed, so that the residual stream
    entering blocks.0.norm1 has a small variance (as in trained ViTs) and LayerNorm's eps
    visibly changes the outputs."""
    def mat(*shape, fan_in):
        std = min(0.3, max(0.02, fan_in ** -0.5))
        return torch.randn(*shape, generator=gen) * std

    def bias(n):
        return torch.randn(n, generator=gen) * 0.1

    def ln_w(n):
        return 1.0 + 0.1 * torch.randn(n, generator=gen)

    p = {}
    p["patch_embed.proj.weight"] = mat(width, img_chans, patch, patch,
                                       fan_in=img_chans * patch * patch) * embed_scale
    p["patch_embed.proj.bias"] = bias(width) * embed_scale
    p["cls_token"] = torch.randn(1, 1, width, generator=gen) * 0.5 * embed_scale
    p["pos_embed"] = torch.randn(1, tokens, width, generator=gen) * 0.5 * embed_scale
    for i in range(depth):
        b = "blocks.%d." % i
        p[b + "norm1.weight"] = ln_w(width)
        p[b + "norm1.bias"] = bias(width)
        p[b + "attn.qkv.weight"] = mat(3 * width, width, fan_in=width)
        p[b + "attn.qkv.bias"] = bias(3 * width)
        p[b + "attn.proj.weight"] = mat(width, width, fan_in=width)
        p[b + "attn.proj.bias"] = bias(width)
        p[b + "norm2.weight"] = ln_w(width)
        p[b + "norm2.bias"] = bias(width)
        p[b + "mlp.fc1.weight"] = mat(mlp, width, fan_in=width)
        p[b + "mlp.fc1.bias"] = bias(mlp)
        p[b + "mlp.fc2.weight"] = mat(width, mlp, fan_in=mlp)
        p[b + "mlp.fc2.bias"] = bias(width)
    p["norm.weight"] = ln_w(width)
    p["norm.bias"] = bias(width)
    p["head.weight"] = mat(classes, width, fan_in=width)
    p["head.bias"] = bias(classes)
    return {k: v.to(torch.float32).contiguous() for k, v in p.items()}


def timm_config(g, with_model_args=True, with_num_heads=True, with_num_features=True,
                layer_norm_eps=None):
    c = {"architecture": "vit_custom", "num_classes": g["classes"]}
    if with_num_features:
        c["num_features"] = g["width"]
    c["global_pool"] = "token"
    if layer_norm_eps is not None:
        c["layer_norm_eps"] = layer_norm_eps
    if with_model_args:
        ma = {"img_size": g["img"], "patch_size": g["patch"], "in_chans": g["chans"],
              "embed_dim": g["width"], "depth": g["depth"]}
        if with_num_heads:
            ma["num_heads"] = g["heads"]
        ma["mlp_ratio"] = g["mlp"] / g["width"]
        ma["num_classes"] = g["classes"]
        if layer_norm_eps is not None:
            ma["layer_norm_eps"] = layer_norm_eps
        c["model_args"] = ma
    c["pretrained_cfg"] = {
        "input_size": [g["chans"], g["img"], g["img"]],
        "interpolation": "bicubic",
        "crop_pct": 0.9,
        "crop_mode": "center",
        "mean": [0.5] * g["chans"],
        "std": [0.5] * g["chans"],
        "num_classes": g["classes"],
        "first_conv": "patch_embed.proj",
        "classifier": "head",
    }
    return c


def write_config(path, conf):
    with open(path, "w") as f:
        json.dump(conf, f, indent=2)
        f.write("\n")


def build(g, seed):
    gen = torch.Generator().manual_seed(seed)
    grid = g["img"] // g["patch"]
    tokens = grid * grid + 1
    params = make_params(gen, g["chans"], g["patch"], g["width"], g["depth"], tokens,
                         g["mlp"], g["classes"], g.get("embed_scale", 1.0))
    images = torch.randn(g["batch"], g["chans"], g["img"], g["img"], generator=gen).float()
    targets = torch.randint(0, g["classes"], (g["batch"],), generator=gen, dtype=torch.int64)
    return gen, params, images, targets


def cfg_of(g):
    return {"depth": g["depth"], "num_heads": g["heads"], "eps": g.get("eps", 1e-6),
            "patch_size": g["patch"]}


def add_grads(exp, p64, images64, targets, cfg):
    g = grads_of(p64, images64, targets, cfg)
    for n, t in g.items():
        exp["grad." + n] = t
    return g


def save(outdir, conf, model, inputs, exp, meta=None):
    os.makedirs(outdir, exist_ok=True)
    write_config(os.path.join(outdir, "config.json"), conf)
    st_write(os.path.join(outdir, "model.safetensors"), model)
    st_write(os.path.join(outdir, "inputs.safetensors"), inputs)
    st_write(os.path.join(outdir, "expected.safetensors"),
             {k: f32(v) for k, v in exp.items()}, meta)


def fmt_float(x):
    return repr(float(x)) if x != 0 else "0"


def gen_p4(outroot):
    g = {"img": 16, "patch": 4, "chans": 3, "width": 32, "depth": 2, "heads": 4,
         "mlp": 64, "classes": 3, "batch": 3}
    cfg = cfg_of(g)
    _, params, images, targets = build(g, 1004)
    p64 = to64(params)
    im64 = images.double()
    exp = forward_expected(p64, im64, targets, cfg)
    grads = add_grads(exp, p64, im64, targets, cfg)
    meta = {}
    for tag, unlock in (("unlock1", 1), ("unlock3", 3), ("unlockall", 99)):
        lr, wd = 1e-3, 0.05
        stepped = adamw_step(p64, grads, g["depth"], unlock, lr, wd)
        check_step(p64, grads, stepped, lr, wd)
        for n, t in stepped.items():
            exp["step.%s.%s" % (tag, n)] = t
        meta["step." + tag] = "lr=%s wd=%s ls=0 unlock=%d" % (fmt_float(lr), fmt_float(wd), unlock)
    lr, wd, ls = 5e-3, 0.1, 0.1
    gls = grads_of(p64, im64, targets, cfg, ls=ls)
    stepped = adamw_step(p64, gls, g["depth"], 2, lr, wd)
    check_step(p64, gls, stepped, lr, wd)
    for n, t in stepped.items():
        exp["step_ls.unlock2." + n] = t
    meta["step_ls.unlock2"] = "lr=%s wd=%s ls=%s unlock=2" % (fmt_float(lr), fmt_float(wd), fmt_float(ls))
    check_fixture("geom-p4-d2-h4", p64, im64, cfg, {k: f32(v) for k, v in exp.items()})
    save(os.path.join(outroot, "geom-p4-d2-h4"), timm_config(g), params,
         {"images": images, "targets": targets}, exp, meta)
    return g, params, images, targets


def gen_lowp(outroot, name, dtype, g, params, images, targets):
    cfg = cfg_of(g)
    low = {k: v.to(dtype) for k, v in params.items()}
    p64 = {k: v.to(torch.float64) for k, v in low.items()}
    exp = forward_expected(p64, images.double(), targets, cfg)
    meta = {"weights": "computed from the %s-rounded weights of geom-p4-d2-h4"
            % {torch.float16: "F16", torch.bfloat16: "BF16"}[dtype]}
    check_fixture(name, p64, images.double(), cfg, {k: f32(v) for k, v in exp.items()})
    save(os.path.join(outroot, name), timm_config(g), low,
         {"images": images, "targets": targets}, exp, meta)


def gen_p7_gray(outroot):
    g = {"img": 21, "patch": 7, "chans": 1, "width": 24, "depth": 3, "heads": 2,
         "mlp": 96, "classes": 4, "batch": 2, "eps": 1e-5, "embed_scale": 0.05}
    cfg = cfg_of(g)
    gen, params, images, targets = build(g, 1007)
    images_alt = torch.randn(2, 1, 28, 28, generator=gen).float()
    images_small = torch.randn(2, 1, 14, 14, generator=gen).float()
    p64 = to64(params)
    im64 = images.double()
    exp = forward_expected(p64, im64, targets, cfg)
    add_grads(exp, p64, im64, targets, cfg)
    for tag, ims in (("alt", images_alt), ("small", images_small)):
        ng = ims.shape[-1] // g["patch"]
        pe = resample_pos_embed(p64["pos_embed"], (ng, ng), (3, 3))
        exp["pos_embed_" + tag] = pe
        exp["logits_token_" + tag] = forward(p64, ims.double(), cfg, pos_embed=pe)["logits_token"]
    e32 = {k: f32(v) for k, v in exp.items()}
    check_fixture("geom-p7-d3-h2-gray", p64, im64, cfg, e32,
                  [(images_alt.double(), e32["pos_embed_alt"].double(), "logits_token_alt"),
                   (images_small.double(), e32["pos_embed_small"].double(), "logits_token_small")])
    save(os.path.join(outroot, "geom-p7-d3-h2-gray"), timm_config(g, layer_norm_eps=1e-5),
         params, {"images": images, "targets": targets, "images_alt": images_alt,
                  "images_small": images_small}, exp)


def gen_noheads(outroot):
    g = {"img": 32, "patch": 16, "chans": 3, "width": 128, "depth": 1, "heads": 128 // 64,
         "mlp": 256, "classes": 6, "batch": 2}
    cfg = cfg_of(g)
    _, params, images, targets = build(g, 1016)
    p64 = to64(params)
    im64 = images.double()
    exp = forward_expected(p64, im64, targets, cfg)
    add_grads(exp, p64, im64, targets, cfg)
    check_fixture("geom-noheads", p64, im64, cfg, {k: f32(v) for k, v in exp.items()})
    save(os.path.join(outroot, "geom-noheads"),
         timm_config(g, with_model_args=False, with_num_features=False),
         params, {"images": images, "targets": targets}, exp)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shared", default=os.environ.get("VITLAB_SHARED",
                                                       os.path.join(ROOT, "..", "shared")),
                    help="the shared/ directory holding fixtures/vit-timm-tiny")
    ap.add_argument("--skip-validation", action="store_true")
    ap.add_argument("--out", default=HERE, help="where the geom-* folders go")
    args = ap.parse_args()

    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    if not args.skip_validation:
        if not os.path.isdir(os.path.join(args.shared, "fixtures", "vit-timm-tiny")):
            raise SystemExit("%s/fixtures/vit-timm-tiny not found (use --shared or --skip-validation)"
                             % args.shared)
        validate(args.shared)

    g, params, images, targets = gen_p4(args.out)
    gen_lowp(args.out, "geom-f16", torch.float16, g, params, images, targets)
    gen_lowp(args.out, "geom-bf16", torch.bfloat16, g, params, images, targets)
    gen_p7_gray(args.out)
    gen_noheads(args.out)
    for d in sorted(os.listdir(args.out)):
        full = os.path.join(args.out, d)
        if d.startswith("geom-") and os.path.isdir(full):
            size = sum(os.path.getsize(os.path.join(full, f)) for f in os.listdir(full))
            print("%-22s %8d bytes" % (d, size))


if __name__ == "__main__":
    main()

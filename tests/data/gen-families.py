#!/usr/bin/python3
"""Generate the checkpoint-family reference fixtures in tests/data/fam-*/.

Run with Debian's PyTorch (torch 1.13, plus python3-torchvision for one cross-check),
from the project root:

    /usr/bin/python3 tests/data/gen-families.py

Each folder holds a small random ViT in one library's OWN tensor names and file layout
(OpenCLIP, Hugging Face transformers ViT, torchvision, timm variants, JAX .npz, and SigLIP's
MAP-pooled towers in timm's, transformers' and big_vision's layouts), `inputs.safetensors` and
`expected.safetensors`.  See the "Checkpoint families" section of tests/data/README.md.

Everything is computed in float64 from the stored float32 weights and inputs and stored as
float32.  The safetensors writer/reader and the float64 approach are those of gen-fixtures.py
(imported from it).  Output is deterministic: re-running reproduces identical bytes.

Every folder is checked before it is written:
  * against a replica of the library's own module structure (loaded with
    load_state_dict(strict=True) from the file's tensors, so the names are checked too) or,
    for torchvision, against the real torchvision.models.VisionTransformer;
  * where the family reduces to a plain timm ViT (HF ViT, HF DINO, torchvision), against the
    independent timm-style forward of gen-fixtures.py after renaming (q/k/v concatenated).
"""

import argparse
import importlib.util
import json
import os
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))

_spec = importlib.util.spec_from_file_location("gen_fixtures", os.path.join(HERE, "gen-fixtures.py"))
gf = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gf)

st_write, st_read, f32, to64 = gf.st_write, gf.st_read, gf.f32, gf.to64

MAX_FOLDER_BYTES = 300 * 1024
TOL = 1e-5          # every cross-check must agree to this (float64 vs stored float32)
REPORT = []         # (folder, what, value) lines printed at the end


def note(folder, what, value):
    REPORT.append((folder, what, value))
    print("  %-20s %-62s %.3g" % (folder, what, value))


# ---------------------------------------------------------------------------
# Random weights, in canonical (timm) naming
# ---------------------------------------------------------------------------
#
# Canonical names are timm's: patch_embed.proj.*, cls_token, reg_token, dist_token, pos_embed,
# norm_pre.* (OpenCLIP's ln_pre), blocks.N.{norm1, attn.qkv, attn.proj, ls1.gamma, norm2,
# mlp.fc1, mlp.fc2, ls2.gamma}, norm.*, fc_norm.*, head.*, head_dist.*, and `proj` [W,E]
# (OpenCLIP's visual projection).  Each family converts to/from its own names.

def make_canonical(gen, a):
    """a: dict with width, depth, mlp, patch, tokens_pos (rows of pos_embed), and the flags
    conv_bias, cls, reg, dist, norm_pre, layer_scale, final ('norm'|'fc_norm'),
    head (classes or 0), proj (E or 0)."""
    W = a["width"]

    def mat(*shape, fan_in):
        std = min(0.3, max(0.02, fan_in ** -0.5))
        return torch.randn(*shape, generator=gen) * std

    def bias(n):
        return torch.randn(n, generator=gen) * 0.1

    def ln_w(n):
        return 1.0 + 0.1 * torch.randn(n, generator=gen)

    P = a["patch"]
    p = OrderedDict()
    p["patch_embed.proj.weight"] = mat(W, 3, P, P, fan_in=3 * P * P)
    if a.get("conv_bias", True):
        p["patch_embed.proj.bias"] = bias(W)
    if a.get("cls", True):
        p["cls_token"] = torch.randn(1, 1, W, generator=gen) * 0.5
    if a.get("dist", False):
        p["dist_token"] = torch.randn(1, 1, W, generator=gen) * 0.5
    if a.get("reg", 0):
        p["reg_token"] = torch.randn(1, a["reg"], W, generator=gen) * 0.5
    p["pos_embed"] = torch.randn(1, a["tokens_pos"], W, generator=gen) * 0.5
    if a.get("norm_pre", False):
        p["norm_pre.weight"] = ln_w(W)
        p["norm_pre.bias"] = bias(W)
    M = a["mlp"]
    for i in range(a["depth"]):
        b = "blocks.%d." % i
        p[b + "norm1.weight"] = ln_w(W)
        p[b + "norm1.bias"] = bias(W)
        p[b + "attn.qkv.weight"] = mat(3 * W, W, fan_in=W)
        p[b + "attn.qkv.bias"] = bias(3 * W)
        p[b + "attn.proj.weight"] = mat(W, W, fan_in=W)
        p[b + "attn.proj.bias"] = bias(W)
        if a.get("layer_scale", False):
            p[b + "ls1.gamma"] = 0.5 + 0.15 * torch.randn(W, generator=gen)
        p[b + "norm2.weight"] = ln_w(W)
        p[b + "norm2.bias"] = bias(W)
        p[b + "mlp.fc1.weight"] = mat(M, W, fan_in=W)
        p[b + "mlp.fc1.bias"] = bias(M)
        p[b + "mlp.fc2.weight"] = mat(W, M, fan_in=M)
        p[b + "mlp.fc2.bias"] = bias(W)
        if a.get("layer_scale", False):
            p[b + "ls2.gamma"] = 0.5 + 0.15 * torch.randn(W, generator=gen)
    fin = a.get("final", "norm")
    p[fin + ".weight"] = ln_w(W)
    p[fin + ".bias"] = bias(W)
    if a.get("head", 0):
        p["head.weight"] = mat(a["head"], W, fan_in=W)
        p["head.bias"] = bias(a["head"])
        if a.get("dist", False):
            p["head_dist.weight"] = mat(a["head"], W, fan_in=W)
            p["head_dist.bias"] = bias(a["head"])
    if a.get("proj", 0):
        p["proj"] = mat(W, a["proj"], fan_in=W)
    return OrderedDict((k, v.to(torch.float32).contiguous()) for k, v in p.items())


def quiet(p, name, row, s):
    """Scale a prefix token (and its pos_embed row, if any) by s: its residual stream then has a
    tiny variance at the first LayerNorm, so LayerNorm's eps visibly changes the outputs."""
    p[name] = p[name] * s
    if row is not None:
        pe = p["pos_embed"].clone()
        pe[:, row] *= s
        p["pos_embed"] = pe


# ---------------------------------------------------------------------------
# The reference forward (canonical names, float64)
# ---------------------------------------------------------------------------

def quick_gelu(x):
    return x * torch.sigmoid(1.702 * x)


def gelu_tanh(x):
    """timm's 'gelu_tanh', transformers' 'gelu_pytorch_tanh', Flax's nn.gelu (approximate=True)."""
    return F.gelu(x, approximate="tanh")


ACTS = {"gelu": F.gelu, "quick_gelu": quick_gelu, "gelu_tanh": gelu_tanh}


def ref_forward(p, images, s):
    """s: patch, heads, eps, act ('gelu'|'quick_gelu'|'gelu_tanh'), pos_prefix (pos_embed also
    covers the prefix tokens: concat, then add) and final ('norm'|'fc_norm').  Prefix tokens are
    taken in the order cls, dist, reg, whichever exist.  Returns x after the final `norm` (or the
    raw tokens when the model has fc_norm instead), the attention probabilities and the number
    of prefix tokens."""
    eps, heads = s["eps"], s["heads"]
    act = ACTS[s.get("act", "gelu")]
    x = F.conv2d(images, p["patch_embed.proj.weight"], p.get("patch_embed.proj.bias"),
                 stride=s["patch"])
    B, W = x.shape[0], x.shape[1]
    x = x.flatten(2).transpose(1, 2)
    prefix = [p[n].expand(B, -1, -1) for n in ("cls_token", "dist_token", "reg_token") if n in p]
    n_prefix = sum(t.shape[1] for t in prefix)
    if s["pos_prefix"]:
        x = torch.cat(prefix + [x], dim=1) + p["pos_embed"]
    else:
        x = torch.cat(prefix + [x + p["pos_embed"]], dim=1)
    if "norm_pre.weight" in p:
        x = F.layer_norm(x, (W,), p["norm_pre.weight"], p["norm_pre.bias"], eps)
    T = x.shape[1]
    D = W // heads
    attns = []
    i = 0
    while "blocks.%d.norm1.weight" % i in p:
        b = "blocks.%d." % i
        h = F.layer_norm(x, (W,), p[b + "norm1.weight"], p[b + "norm1.bias"], eps)
        qkv = F.linear(h, p[b + "attn.qkv.weight"], p[b + "attn.qkv.bias"])
        q, k, v = qkv.reshape(B, T, 3, heads, D).permute(2, 0, 3, 1, 4).unbind(0)
        a = ((q * D ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        attns.append(a)
        h = F.linear((a @ v).transpose(1, 2).reshape(B, T, W),
                     p[b + "attn.proj.weight"], p[b + "attn.proj.bias"])
        if b + "ls1.gamma" in p:
            h = h * p[b + "ls1.gamma"]
        x = x + h
        h = F.layer_norm(x, (W,), p[b + "norm2.weight"], p[b + "norm2.bias"], eps)
        h = F.linear(act(F.linear(h, p[b + "mlp.fc1.weight"], p[b + "mlp.fc1.bias"])),
                     p[b + "mlp.fc2.weight"], p[b + "mlp.fc2.bias"])
        if b + "ls2.gamma" in p:
            h = h * p[b + "ls2.gamma"]
        x = x + h
        i += 1
    if s.get("final", "norm") == "norm":
        x = F.layer_norm(x, (W,), p["norm.weight"], p["norm.bias"], eps)
    return x, attns, n_prefix


def rollout_matrix(attns):
    """Abnar & Zuidema: per block mean over heads, + I, rows renormalized; R = A_{L-1}...A_0."""
    R = None
    for a in attns:
        m = a.mean(dim=1)
        m = m + torch.eye(m.shape[-1], dtype=m.dtype)
        m = m / m.sum(dim=-1, keepdim=True)
        R = m if R is None else m @ R
    return R


def linear(p, name, x):
    return F.linear(x, p[name + ".weight"], p[name + ".bias"])


def map_pool(p, x, s):
    """timm's AttentionPoolLatent (SigLIP's MAP head: latent_len 1, q projection, no qk_norm, no
    pos_embed, pool_type 'token') on the tokens x [B,N,W], with the canonical attn_pool.* names.
    Returns the pooled features [B,W] and the probabilities [B,H,1,N]."""
    B, N, W = x.shape
    H = s["heads"]
    D = W // H
    q = linear(p, "attn_pool.q", p["attn_pool.latent"]).reshape(1, 1, H, D).transpose(1, 2)
    kv = linear(p, "attn_pool.kv", x)
    k = kv[..., :W].reshape(B, N, H, D).transpose(1, 2)
    v = kv[..., W:].reshape(B, N, H, D).transpose(1, 2)
    a = ((q * D ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)          # [B,H,1,N]
    y = linear(p, "attn_pool.proj", (a @ v).transpose(1, 2).reshape(B, 1, W))
    h = F.layer_norm(y, (W,), p["attn_pool.norm.weight"], p["attn_pool.norm.bias"], s["eps"])
    act = ACTS[s.get("act", "gelu")]
    h = linear(p, "attn_pool.mlp.fc2", act(linear(p, "attn_pool.mlp.fc1", h)))
    return (y + h)[:, 0], a


def expected_of(p, images, s, pool):
    """The stored quantities.  pool: 'openclip' | 'token' | 'token_avg' | 'gap' (fc_norm of the
    mean) | 'gap_norm' (the mean of the normed tokens) | 'distilled' | 'map' (SigLIP's attention
    pool on the normed patch tokens)."""
    x, attns, n_prefix = ref_forward(p, images, s)
    R = rollout_matrix(attns)
    e = OrderedDict()
    e["tokens_final"] = x
    for i, a in enumerate(attns):
        e["attn.%d" % i] = a
    if pool == "gap_norm":                                          # big_vision's "gap"
        feat = x[:, n_prefix:].mean(dim=1)
        e["rollout"] = R[:, n_prefix:, n_prefix:].mean(dim=1)
    elif pool == "gap":
        W = x.shape[-1]
        feat = F.layer_norm(x[:, n_prefix:].mean(dim=1), (W,), p["fc_norm.weight"],
                            p["fc_norm.bias"], s["eps"])
        e["rollout"] = R[:, n_prefix:, n_prefix:].mean(dim=1)      # mean over the patch query rows
    elif pool == "map":
        feat, e["attn_pool.attn"] = map_pool(p, x[:, n_prefix:], s)
        e["rollout"] = R[:, n_prefix:, n_prefix:].mean(dim=1)
    else:
        feat = x[:, 0]
        e["rollout"] = R[:, 0, n_prefix:]                           # CLS row, patch columns
    e["features"] = feat
    if pool == "openclip":
        e["embedding"] = feat @ p["proj"]
    elif pool == "distilled":
        e["features_dist"] = x[:, 1]
        e["logits"] = (linear(p, "head", x[:, 0]) + linear(p, "head_dist", x[:, 1])) / 2
    elif "head.weight" in p:
        e["logits"] = linear(p, "head", feat)
    if pool == "token_avg":
        e["features_avg"] = x[:, n_prefix:].mean(dim=1)
        e["logits_avg"] = linear(p, "head", e["features_avg"])
    return e


def check_attention(folder, e):
    peaks = [e[k].max(dim=-1).values for k in e if k.startswith("attn.")]
    lo = min(t.min().item() for t in peaks)
    hi = max(t.max().item() for t in peaks)
    print("  %-20s attention row peaks %.2f .. %.2f" % (folder, lo, hi))
    assert 0.1 < hi < 0.995, "attention is uniform or one-hot"


def compare(folder, what, mine, e, keys=None):
    """Max abs difference between another computation (float64) and the stored float32 values."""
    worst = 0.0
    for k in (keys or mine.keys()):
        worst = max(worst, (mine[k].double() - f32(e[k]).double()).abs().max().item())
    note(folder, what, worst)
    if worst > TOL:
        raise SystemExit("%s: %s FAILED (%.3g)" % (folder, what, worst))
    return worst


def f32_noise(folder, p64, images, spec, pool, e):
    """The same forward run in float32: the rounding noise a float32 engine should expect."""
    e32 = expected_of({k: v.float() for k, v in p64.items()}, images.float(), spec, pool)
    worst = max((e32[k].double() - f32(e[k]).double()).abs().max().item() for k in e)
    note(folder, "(same forward in float32: max abs over every stored tensor)", worst)
    assert worst < 1e-4


def eps_sensitivity(folder, p, images, s, pool, e, alt_eps):
    s2 = dict(s, eps=alt_eps)
    e2 = expected_of(p, images, s2, pool)
    keys = [k for k in ("logits", "embedding", "features") if k in e]
    d = max((e2[k] - e[k]).abs().max().item() for k in keys)
    dt = (e2["tokens_final"] - e["tokens_final"]).abs().max().item()
    note(folder, "eps %g instead of %g: %s / tokens_final off by" % (alt_eps, s["eps"], keys[0]), d)
    print("  %-20s %-62s %.3g" % ("", "(tokens_final)", dt))
    return d


# ---------------------------------------------------------------------------
# Name conversions (family <-> canonical)
# ---------------------------------------------------------------------------

def blocks_of(p):
    n = 0
    while "blocks.%d.norm1.weight" % n in p:
        n += 1
    return n


OC_BLOCK = [("ln_1", "norm1"), ("attn.in_proj_weight", "attn.qkv.weight"),
            ("attn.in_proj_bias", "attn.qkv.bias"), ("attn.out_proj", "attn.proj"),
            ("ln_2", "norm2"), ("mlp.c_fc", "mlp.fc1"), ("mlp.c_proj", "mlp.fc2")]


def openclip_from_canonical(p):
    o = OrderedDict()
    o["conv1.weight"] = p["patch_embed.proj.weight"]
    o["class_embedding"] = p["cls_token"].reshape(-1)
    o["positional_embedding"] = p["pos_embed"][0]
    for s in ("weight", "bias"):
        o["ln_pre." + s] = p["norm_pre." + s]
    for i in range(blocks_of(p)):
        for oc, tm in OC_BLOCK:
            if oc.endswith(("_weight", "_bias")):
                o["transformer.resblocks.%d.%s" % (i, oc)] = p["blocks.%d.%s" % (i, tm)]
            else:
                for s in ("weight", "bias"):
                    o["transformer.resblocks.%d.%s.%s" % (i, oc, s)] = p["blocks.%d.%s.%s" % (i, tm, s)]
    for s in ("weight", "bias"):
        o["ln_post." + s] = p["norm." + s]
    o["proj"] = p["proj"]
    return o


def openclip_to_canonical(o):
    p = OrderedDict()
    p["patch_embed.proj.weight"] = o["conv1.weight"]
    p["cls_token"] = o["class_embedding"].reshape(1, 1, -1)
    p["pos_embed"] = o["positional_embedding"].unsqueeze(0)
    for s in ("weight", "bias"):
        p["norm_pre." + s] = o["ln_pre." + s]
    i = 0
    while "transformer.resblocks.%d.ln_1.weight" % i in o:
        for oc, tm in OC_BLOCK:
            if oc.endswith(("_weight", "_bias")):
                p["blocks.%d.%s" % (i, tm)] = o["transformer.resblocks.%d.%s" % (i, oc)]
            else:
                for s in ("weight", "bias"):
                    p["blocks.%d.%s.%s" % (i, tm, s)] = o["transformer.resblocks.%d.%s.%s" % (i, oc, s)]
        i += 1
    for s in ("weight", "bias"):
        p["norm." + s] = o["ln_post." + s]
    p["proj"] = o["proj"]
    return p


HF_BLOCK = [("layernorm_before", "norm1"), ("attention.output.dense", "attn.proj"),
            ("layernorm_after", "norm2"), ("intermediate.dense", "mlp.fc1"),
            ("output.dense", "mlp.fc2")]


def hf_from_canonical(p, base):
    """base: 'vit.' (ViTForImageClassification) or '' (ViTModel)."""
    o = OrderedDict()
    W = p["pos_embed"].shape[-1]
    o[base + "embeddings.cls_token"] = p["cls_token"]
    o[base + "embeddings.position_embeddings"] = p["pos_embed"]
    for s in ("weight", "bias"):
        o[base + "embeddings.patch_embeddings.projection." + s] = p["patch_embed.proj." + s]
    for i in range(blocks_of(p)):
        L = base + "encoder.layer.%d." % i
        b = "blocks.%d." % i
        for s in ("weight", "bias"):
            qkv = p[b + "attn.qkv." + s]
            for j, n in enumerate(("query", "key", "value")):
                o[L + "attention.attention.%s.%s" % (n, s)] = qkv[j * W:(j + 1) * W].contiguous()
            for hf, tm in HF_BLOCK:
                o[L + hf + "." + s] = p[b + tm + "." + s]
    for s in ("weight", "bias"):
        o[base + "layernorm." + s] = p["norm." + s]
        if "head." + s in p:
            o["classifier." + s] = p["head." + s]
    return o


def hf_to_canonical(o, base):
    p = OrderedDict()
    p["patch_embed.proj.weight"] = o[base + "embeddings.patch_embeddings.projection.weight"]
    p["patch_embed.proj.bias"] = o[base + "embeddings.patch_embeddings.projection.bias"]
    p["cls_token"] = o[base + "embeddings.cls_token"]
    p["pos_embed"] = o[base + "embeddings.position_embeddings"]
    i = 0
    while base + "encoder.layer.%d.layernorm_before.weight" % i in o:
        L = base + "encoder.layer.%d." % i
        b = "blocks.%d." % i
        for s in ("weight", "bias"):
            p[b + "attn.qkv." + s] = torch.cat(
                [o[L + "attention.attention.%s.%s" % (n, s)] for n in ("query", "key", "value")])
            for hf, tm in HF_BLOCK:
                p[b + tm + "." + s] = o[L + hf + "." + s]
        i += 1
    for s in ("weight", "bias"):
        p["norm." + s] = o[base + "layernorm." + s]
        if "classifier." + s in o:
            p["head." + s] = o["classifier." + s]
    return p


TV_BLOCK = [("ln_1", "norm1"), ("self_attention.out_proj", "attn.proj"), ("ln_2", "norm2"),
            ("mlp.0", "mlp.fc1"), ("mlp.3", "mlp.fc2")]


def tv_from_canonical(p):
    o = OrderedDict()
    o["conv_proj.weight"] = p["patch_embed.proj.weight"]
    o["conv_proj.bias"] = p["patch_embed.proj.bias"]
    o["class_token"] = p["cls_token"]
    o["encoder.pos_embedding"] = p["pos_embed"]
    for i in range(blocks_of(p)):
        L = "encoder.layers.encoder_layer_%d." % i
        b = "blocks.%d." % i
        o[L + "self_attention.in_proj_weight"] = p[b + "attn.qkv.weight"]
        o[L + "self_attention.in_proj_bias"] = p[b + "attn.qkv.bias"]
        for s in ("weight", "bias"):
            for tv, tm in TV_BLOCK:
                o[L + tv + "." + s] = p[b + tm + "." + s]
    for s in ("weight", "bias"):
        o["encoder.ln." + s] = p["norm." + s]
        o["heads.head." + s] = p["head." + s]
    return o


def tv_to_canonical(o):
    p = OrderedDict()
    p["patch_embed.proj.weight"] = o["conv_proj.weight"]
    p["patch_embed.proj.bias"] = o["conv_proj.bias"]
    p["cls_token"] = o["class_token"]
    p["pos_embed"] = o["encoder.pos_embedding"]
    i = 0
    while "encoder.layers.encoder_layer_%d.ln_1.weight" % i in o:
        L = "encoder.layers.encoder_layer_%d." % i
        b = "blocks.%d." % i
        p[b + "attn.qkv.weight"] = o[L + "self_attention.in_proj_weight"]
        p[b + "attn.qkv.bias"] = o[L + "self_attention.in_proj_bias"]
        for s in ("weight", "bias"):
            for tv, tm in TV_BLOCK:
                p[b + tm + "." + s] = o[L + tv + "." + s]
        i += 1
    for s in ("weight", "bias"):
        p["norm." + s] = o["encoder.ln." + s]
        p["head." + s] = o["heads.head." + s]
    return p


def check_roundtrip(canon, back):
    assert sorted(canon) == sorted(back), (sorted(set(canon) ^ set(back)))
    for k in canon:
        assert torch.equal(canon[k], back[k]), k


# ---------------------------------------------------------------------------
# Replicas of each library's module structure (float64), loaded with strict=True
# ---------------------------------------------------------------------------

class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class OCResidualAttentionBlock(nn.Module):
    """open_clip.transformer.ResidualAttentionBlock (ls_init_value None)."""

    def __init__(self, d, heads, mlp_ratio, act):
        super().__init__()
        self.ln_1 = nn.LayerNorm(d)                      # open_clip LayerNorm: torch eps 1e-5
        self.attn = nn.MultiheadAttention(d, heads)
        self.ln_2 = nn.LayerNorm(d)
        w = int(d * mlp_ratio)
        self.mlp = nn.Sequential(OrderedDict([("c_fc", nn.Linear(d, w)), ("gelu", act()),
                                              ("c_proj", nn.Linear(w, d))]))

    def forward(self, x):                                # x is LND, as in open_clip's Transformer
        h = self.ln_1(x)
        a, self.probs = self.attn(h, h, h, need_weights=True, average_attn_weights=False)
        x = x + a
        return x + self.mlp(self.ln_2(x))


class OCVisionTransformer(nn.Module):
    """open_clip.transformer.VisionTransformer, pool_type 'tok', final_ln_after_pool False."""

    def __init__(self, image_size, patch_size, width, layers, heads, mlp_ratio, output_dim, act):
        super().__init__()
        g = image_size // patch_size
        self.conv1 = nn.Conv2d(3, width, patch_size, stride=patch_size, bias=False)
        self.class_embedding = nn.Parameter(torch.zeros(width))
        self.positional_embedding = nn.Parameter(torch.zeros(g * g + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.ModuleList(
            [OCResidualAttentionBlock(width, heads, mlp_ratio, act) for _ in range(layers)])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(torch.zeros(width, output_dim))

    def forward(self, x):
        x = self.conv1(x)
        x = x.reshape(x.shape[0], x.shape[1], -1).permute(0, 2, 1)
        x = torch.cat([self.class_embedding.view(1, 1, -1).expand(x.shape[0], -1, -1), x], dim=1)
        x = x + self.positional_embedding
        x = self.ln_pre(x)
        x = x.transpose(0, 1)
        for r in self.transformer.resblocks:
            x = r(x)
        x = x.transpose(0, 1)
        x = self.ln_post(x)
        pooled = x[:, 0]
        out = {"tokens_final": x, "features": pooled, "embedding": pooled @ self.proj}
        for i, r in enumerate(self.transformer.resblocks):
            out["attn.%d" % i] = r.probs
        return out


class HFSelfAttention(nn.Module):
    def __init__(self, hidden, heads):
        super().__init__()
        self.heads, self.hd = heads, hidden // heads
        self.query = nn.Linear(hidden, hidden)
        self.key = nn.Linear(hidden, hidden)
        self.value = nn.Linear(hidden, hidden)

    def split(self, x):
        return x.view(x.size()[:-1] + (self.heads, self.hd)).permute(0, 2, 1, 3)

    def forward(self, h):                                # eager_attention_forward
        k, v, q = self.split(self.key(h)), self.split(self.value(h)), self.split(self.query(h))
        w = torch.matmul(q, k.transpose(-1, -2)) * self.hd ** -0.5
        w = F.softmax(w, dim=-1)
        ctx = torch.matmul(w, v).transpose(1, 2).contiguous()
        return ctx.view(ctx.size()[:-2] + (self.heads * self.hd,)), w


class HFLayer(nn.Module):
    """transformers ViTLayer (layernorm_before -> attention -> +res; layernorm_after -> MLP -> +res)."""

    def __init__(self, hidden, heads, inter, eps):
        super().__init__()
        self.attention = nn.Module()
        self.attention.attention = HFSelfAttention(hidden, heads)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.intermediate = nn.Module()
        self.intermediate.dense = nn.Linear(hidden, inter)
        self.output = nn.Module()
        self.output.dense = nn.Linear(inter, hidden)
        self.layernorm_before = nn.LayerNorm(hidden, eps=eps)
        self.layernorm_after = nn.LayerNorm(hidden, eps=eps)

    def forward(self, x):
        ctx, self.probs = self.attention.attention(self.layernorm_before(x))
        x = self.attention.output.dense(ctx) + x
        h = F.gelu(self.intermediate.dense(self.layernorm_after(x)))   # ACT2FN["gelu"]: erf
        return self.output.dense(h) + x


class HFViTModel(nn.Module):
    def __init__(self, c, pooler):
        super().__init__()
        W, P, S = c["hidden_size"], c["patch_size"], c["image_size"]
        self.embeddings = nn.Module()
        self.embeddings.cls_token = nn.Parameter(torch.zeros(1, 1, W))
        self.embeddings.position_embeddings = nn.Parameter(torch.zeros(1, (S // P) ** 2 + 1, W))
        self.embeddings.patch_embeddings = nn.Module()
        self.embeddings.patch_embeddings.projection = nn.Conv2d(c["num_channels"], W, P, stride=P)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            [HFLayer(W, c["num_attention_heads"], c["intermediate_size"], c["layer_norm_eps"])
             for _ in range(c["num_hidden_layers"])])
        self.layernorm = nn.LayerNorm(W, eps=c["layer_norm_eps"])
        if pooler:
            self.pooler = nn.Module()
            self.pooler.dense = nn.Linear(W, W)

    def forward(self, pixel_values):
        e = self.embeddings.patch_embeddings.projection(pixel_values).flatten(2).transpose(1, 2)
        e = torch.cat((self.embeddings.cls_token.expand(e.shape[0], -1, -1), e), dim=1)
        x = e + self.embeddings.position_embeddings
        for layer in self.encoder.layer:
            x = layer(x)
        x = self.layernorm(x)
        out = {"tokens_final": x, "features": x[:, 0]}
        for i, layer in enumerate(self.encoder.layer):
            out["attn.%d" % i] = layer.probs
        return out


class HFViTForImageClassification(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.vit = HFViTModel(c, pooler=False)           # add_pooling_layer=False
        self.classifier = nn.Linear(c["hidden_size"], len(c["id2label"]))

    def forward(self, pixel_values):
        out = self.vit(pixel_values)
        out["logits"] = self.classifier(out["tokens_final"][:, 0, :])
        return out


class TimmAttention(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, dim * 3)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        # Independent attention code: PyTorch's multi_head_attention_forward on timm's weights.
        xt = x.transpose(0, 1)
        out, self.probs = F.multi_head_attention_forward(
            xt, xt, xt, x.shape[-1], self.heads, self.qkv.weight, self.qkv.bias, None, None,
            False, 0.0, self.proj.weight, self.proj.bias, training=False, need_weights=True,
            average_attn_weights=False)
        return out.transpose(0, 1)


class TimmLayerScale(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class TimmBlock(nn.Module):
    def __init__(self, dim, heads, mlp, init_values, eps, act=nn.GELU):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = TimmAttention(dim, heads)
        self.ls1 = TimmLayerScale(dim) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, mlp)
        self.mlp.act = act()
        self.mlp.fc2 = nn.Linear(mlp, dim)
        self.ls2 = TimmLayerScale(dim) if init_values else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp.fc2(self.mlp.act(self.mlp.fc1(self.norm2(x)))))


class TimmGELUTanh(nn.Module):
    """timm's GELUTanh (act_layer 'gelu_tanh')."""

    def forward(self, x):
        return F.gelu(x, approximate="tanh")


TIMM_ACTS = {"gelu": nn.GELU, "gelu_tanh": TimmGELUTanh}


class TimmAttentionPoolLatent(nn.Module):
    """timm.layers.AttentionPoolLatent as VisionTransformer builds it for global_pool='map'
    (latent_len 1, q projection, qkv_bias, no qk_norm, no pos_embed, pool_type 'token',
    norm_layer the model's LayerNorm, Mlp with the model's act_layer), its non-fused path."""

    def __init__(self, dim, heads, mlp_ratio, eps, act):
        super().__init__()
        self.num_heads, self.head_dim = heads, dim // heads
        self.scale = self.head_dim ** -0.5
        self.latent_len = 1
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, int(dim * mlp_ratio))
        self.mlp.act = act()
        self.mlp.fc2 = nn.Linear(int(dim * mlp_ratio), dim)

    def forward(self, x):
        B, N, C = x.shape
        q_latent = self.latent.expand(B, -1, -1)
        q = self.q(q_latent).reshape(B, self.latent_len, self.num_heads, self.head_dim)
        q = q.transpose(1, 2)
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        self.probs = attn
        x = (attn @ v).transpose(1, 2).reshape(B, self.latent_len, C)
        x = self.proj(x)
        x = x + self.mlp.fc2(self.mlp.act(self.mlp.fc1(self.norm(x))))
        return x[:, 0]


class TimmVisionTransformer(nn.Module):
    """timm VisionTransformer / VisionTransformerDistilled, following their _pos_embed,
    forward_features and forward_head (global_pool 'token', 'avg' or 'map')."""

    def __init__(self, ma, distilled=False, eps=1e-6):
        super().__init__()
        W, P, S = ma["embed_dim"], ma["patch_size"], ma["img_size"]
        n_patches = (S // P) ** 2
        self.global_pool = ma.get("global_pool", "token")
        class_token = ma.get("class_token", True)
        reg = ma.get("reg_tokens", 0)
        fc_norm = ma.get("fc_norm", None)
        use_fc_norm = self.global_pool in ("avg", "avgmax", "max") if fc_norm is None else fc_norm
        self.no_embed_class = ma.get("no_embed_class", False)
        self.distilled = distilled
        self.num_prefix_tokens = (1 if class_token else 0) + reg + (1 if distilled else 0)
        self.patch_embed = nn.Module()
        self.patch_embed.proj = nn.Conv2d(3, W, P, stride=P)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, W)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg, W)) if reg else None
        if distilled:
            self.dist_token = nn.Parameter(torch.zeros(1, 1, W))
        embed_len = n_patches if self.no_embed_class else n_patches + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, W))
        act = TIMM_ACTS[ma.get("act_layer", "gelu")]
        self.blocks = nn.ModuleList(
            [TimmBlock(W, ma["num_heads"], int(W * ma["mlp_ratio"]), ma.get("init_values"), eps,
                       act) for _ in range(ma["depth"])])
        self.norm = nn.LayerNorm(W, eps=eps) if not use_fc_norm else nn.Identity()
        self.attn_pool = TimmAttentionPoolLatent(W, ma["num_heads"], ma["mlp_ratio"], eps, act) \
            if self.global_pool == "map" else None
        self.fc_norm = nn.LayerNorm(W, eps=eps) if use_fc_norm else nn.Identity()
        self.head = nn.Linear(W, ma["num_classes"])
        if distilled:
            self.head_dist = nn.Linear(W, ma["num_classes"])

    def _pos_embed(self, x):
        if self.distilled:                               # VisionTransformerDistilled
            x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1),
                           self.dist_token.expand(x.shape[0], -1, -1), x), dim=1)
            return x + self.pos_embed
        to_cat = []
        if self.cls_token is not None:
            to_cat.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.reg_token is not None:
            to_cat.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:
            x = x + self.pos_embed
            if to_cat:
                x = torch.cat(to_cat + [x], dim=1)
        else:
            if to_cat:
                x = torch.cat(to_cat + [x], dim=1)
            x = x + self.pos_embed
        return x

    def forward(self, images):
        x = self.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = self._pos_embed(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        out = {"tokens_final": x}
        for i, blk in enumerate(self.blocks):
            out["attn.%d" % i] = blk.attn.probs
        if self.distilled:
            out["features"] = x[:, 0]
            out["features_dist"] = x[:, 1]
            out["logits"] = (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2
            return out
        if self.attn_pool is not None:                   # pool_include_prefix False
            pooled = self.attn_pool(x[:, self.num_prefix_tokens:])
            out["attn_pool.attn"] = self.attn_pool.probs
        elif self.global_pool == "avg":
            pooled = x[:, self.num_prefix_tokens:].mean(dim=1)
        else:
            pooled = x[:, 0]
        out["features"] = self.fc_norm(pooled)
        out["logits"] = self.head(out["features"])
        return out


def load_strict(module, sd):
    module = module.double().eval()
    res = module.load_state_dict({k: v.double() for k, v in sd.items()}, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    return module


# ---------------------------------------------------------------------------
# Folder writing
# ---------------------------------------------------------------------------

def write_json(path, obj, sort_keys=False):
    with open(path, "w") as f:
        json.dump(obj, f, indent=2, sort_keys=sort_keys)
        f.write("\n")


def save(outroot, folder, model, images, exp, configs, meta=None):
    d = os.path.join(outroot, folder)
    os.makedirs(d, exist_ok=True)
    for name, (obj, sort_keys) in configs.items():
        write_json(os.path.join(d, name), obj, sort_keys)
    st_write(os.path.join(d, "model.safetensors"), model, {"format": "pt"})
    st_write(os.path.join(d, "inputs.safetensors"), {"images": images})
    st_write(os.path.join(d, "expected.safetensors"),
             OrderedDict((k, f32(v)) for k, v in exp.items()), meta)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    assert size < MAX_FOLDER_BYTES, "%s is %d bytes" % (folder, size)
    return size


def images_of(gen, batch, size):
    return torch.randn(batch, 3, size, size, generator=gen).float()


# ---------------------------------------------------------------------------
# 1. OpenCLIP
# ---------------------------------------------------------------------------

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def gen_openclip(outroot, folder, seed, S, W, L, head_width, E, quick, full_dict):
    P, heads = 8, W // head_width
    T = (S // P) ** 2 + 1
    gen = torch.Generator().manual_seed(seed)
    canon = make_canonical(gen, {"width": W, "depth": L, "mlp": int(W * 4.0), "patch": P,
                                 "tokens_pos": T, "conv_bias": False, "norm_pre": True,
                                 "proj": E})
    quiet(canon, "cls_token", 0, 0.01)
    visual = openclip_from_canonical(canon)
    check_roundtrip(canon, openclip_to_canonical(visual))
    text_cfg = {"context_length": 77, "vocab_size": 64, "width": W, "heads": 2, "layers": 1}
    if full_dict:
        model = OrderedDict(("visual." + k, v) for k, v in visual.items())
        text = OrderedDict()
        text["token_embedding.weight"] = torch.randn(64, W, generator=gen) * 0.02
        text["positional_embedding"] = torch.randn(77, W, generator=gen) * 0.01
        text["transformer.resblocks.0.attn.in_proj_weight"] = torch.randn(3 * W, W, generator=gen) * W ** -0.5
        text["ln_final.weight"] = 1.0 + 0.1 * torch.randn(W, generator=gen)
        text["text_projection"] = torch.randn(W, E, generator=gen) * W ** -0.5
        text["logit_scale"] = torch.tensor(4.6052, dtype=torch.float32)   # log(100), shape []
        for k, v in text.items():
            model[k] = v.to(torch.float32).contiguous()
    else:
        model = visual
    images = images_of(gen, 2, S)
    spec = {"patch": P, "heads": heads, "eps": 1e-5, "pos_prefix": True,
            "act": "quick_gelu" if quick else "gelu"}
    # The expected values come from the tensors as stored (float64), converted back.
    src = OrderedDict((k[len("visual."):], v) for k, v in model.items() if k.startswith("visual.")) \
        if full_dict else model
    p64 = to64(openclip_to_canonical(src))
    im64 = images.double()
    e = expected_of(p64, im64, spec, "openclip")
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, "openclip", e)

    rep = load_strict(OCVisionTransformer(S, P, W, L, heads, 4.0, E, QuickGELU if quick else nn.GELU),
                      src)
    with torch.no_grad():
        compare(folder, "open_clip module replica (strict load), all outputs", rep(im64), e)
    d = (expected_of(p64, im64, dict(spec, heads=1), "openclip")["embedding"]
         - e["embedding"]).abs().max().item()
    note(folder, "1 head instead of %d (width/head_width): embedding off by" % heads, d)
    other = 1e-6
    eps_sensitivity(folder, p64, im64, spec, "openclip", e, other)
    act2 = dict(spec, act="gelu" if quick else "quick_gelu")
    d = (expected_of(p64, im64, act2, "openclip")["embedding"] - e["embedding"]).abs().max().item()
    note(folder, "%s instead: embedding off by" % ("exact GELU" if quick else "QuickGELU"), d)

    model_cfg = OrderedDict()
    model_cfg["embed_dim"] = E
    if quick:
        model_cfg["quick_gelu"] = True
    model_cfg["vision_cfg"] = OrderedDict([("image_size", S), ("layers", L), ("width", W),
                                           ("head_width", head_width), ("patch_size", P),
                                           ("mlp_ratio", 4.0)])
    model_cfg["text_cfg"] = text_cfg
    conf = OrderedDict([("model_cfg", model_cfg),
                        ("preprocess_cfg", OrderedDict([("mean", OPENAI_MEAN), ("std", OPENAI_STD)]))])
    meta = {"family": "open_clip VisionTransformer (%s)" % ("QuickGELU" if quick else "exact GELU"),
            "layer_norm_eps": "1e-05",
            "features": "ln_post(x)[:, 0]; embedding = features @ proj (not L2-normalized)",
            "rollout": "CLS row of R, patch columns (T-1)"}
    return save(outroot, folder, model, images, e, {"open_clip_config.json": (conf, False)}, meta)


# ---------------------------------------------------------------------------
# 2. Hugging Face ViT
# ---------------------------------------------------------------------------

LABELS = ["cat", "dog", "bird", "fish", "horse", "frog", "ship"]


def hf_config(arch, S, W, L, H, I, eps, classes):
    c = {
        "architectures": [arch],
        "attention_probs_dropout_prob": 0.0,
        "encoder_stride": 8,
        "hidden_act": "gelu",
        "hidden_dropout_prob": 0.0,
        "hidden_size": W,
        "image_size": S,
        "initializer_range": 0.02,
        "intermediate_size": I,
        "layer_norm_eps": eps,
        "model_type": "vit",
        "num_attention_heads": H,
        "num_channels": 3,
        "num_hidden_layers": L,
        "patch_size": 8,
        "qkv_bias": True,
        "torch_dtype": "float32",
        "transformers_version": "4.46.3",
    }
    if classes:
        c["id2label"] = {str(i): LABELS[i] for i in range(classes)}
        c["label2id"] = {LABELS[i]: i for i in range(classes)}
    return c


def timm_ref_check(folder, p64, im64, e, depth, heads, eps, with_logits):
    """Compare with gen-fixtures.py's timm-style forward (a separate implementation)."""
    p = dict(p64)
    if "head.weight" not in p:
        W = p["pos_embed"].shape[-1]
        p["head.weight"] = torch.zeros(1, W, dtype=torch.float64)
        p["head.bias"] = torch.zeros(1, dtype=torch.float64)
    cfg = {"depth": depth, "num_heads": heads, "eps": eps,
           "patch_size": p["patch_embed.proj.weight"].shape[-1]}
    out = gf.forward(p, im64, cfg)
    mine = {"tokens_final": out["tokens_final"], "features": out["features_token"]}
    for i, a in enumerate(out["attn"]):
        mine["attn.%d" % i] = a
    if with_logits:
        mine["logits"] = out["logits_token"]
    mine["rollout"] = gf.rollout(out["attn"])
    compare(folder, "gen-fixtures.py timm forward after renaming (qkv concatenated)", mine, e)


def gen_hf(outroot, folder, seed, S, W, L, H, I, eps, classes, alt_eps):
    P = 8
    T = (S // P) ** 2 + 1
    gen = torch.Generator().manual_seed(seed)
    canon = make_canonical(gen, {"width": W, "depth": L, "mlp": I, "patch": P, "tokens_pos": T,
                                 "head": classes})
    quiet(canon, "cls_token", 0, 0.003)
    base = "vit." if classes else ""
    model = hf_from_canonical(canon, base)
    if not classes:
        model["pooler.dense.weight"] = (torch.randn(W, W, generator=gen) * W ** -0.5).float()
        model["pooler.dense.bias"] = (torch.randn(W, generator=gen) * 0.1).float()
    check_roundtrip(canon, hf_to_canonical(model, base))
    images = images_of(gen, 2, S)
    arch = "ViTForImageClassification" if classes else "ViTModel"
    conf = hf_config(arch, S, W, L, H, I, eps, classes)
    spec = {"patch": P, "heads": H, "eps": eps, "pos_prefix": True}
    p64 = to64(hf_to_canonical(model, base))
    im64 = images.double()
    e = expected_of(p64, im64, spec, "token")
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, "token", e)

    if classes:
        rep = load_strict(HFViTForImageClassification(conf), model)
    else:
        rep = load_strict(HFViTModel(conf, pooler=True), model)
    with torch.no_grad():
        mine = rep(im64)
    mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1:]
    compare(folder, "transformers module replica (strict load), all outputs", mine, e)
    timm_ref_check(folder, p64, im64, e, L, H, eps, bool(classes))
    eps_sensitivity(folder, p64, im64, spec, "token", e, alt_eps)
    key = "logits" if classes else "features"
    d = (expected_of(p64, im64, dict(spec, heads=1), "token")[key] - e[key]).abs().max().item()
    note(folder, "1 head instead of %d: %s off by" % (H, key), d)

    if classes:
        pre = OrderedDict([("do_normalize", True), ("do_rescale", True), ("do_resize", True),
                           ("image_mean", [0.5, 0.5, 0.5]),
                           ("image_processor_type", "ViTImageProcessor"),
                           ("image_std", [0.5, 0.5, 0.5]), ("resample", 2),
                           ("rescale_factor", 0.00392156862745098),
                           ("size", OrderedDict([("height", S), ("width", S)]))])
    else:
        # The older feature-extractor layout of facebook/dino-*: "size" is a plain int.
        pre = OrderedDict([("do_normalize", True), ("do_resize", True),
                           ("feature_extractor_type", "ViTFeatureExtractor"),
                           ("image_mean", [0.485, 0.456, 0.406]),
                           ("image_std", [0.229, 0.224, 0.225]), ("resample", 3), ("size", S)])
    meta = {"family": "transformers " + arch, "layer_norm_eps": repr(eps),
            "features": "layernorm(x)[:, 0]" + ("; logits = classifier(features)" if classes
                                                 else "; pooler.* ignored"),
            "rollout": "CLS row of R, patch columns (T-1)"}
    return save(outroot, folder, model, images, e,
                {"config.json": (conf, True), "preprocessor_config.json": (pre, False)}, meta)


# ---------------------------------------------------------------------------
# 3. torchvision
# ---------------------------------------------------------------------------

def gen_torchvision(outroot, folder, seed):
    S, P, W, L, H, M, K = 32, 8, 32, 2, 4, 128, 7
    T = (S // P) ** 2 + 1
    gen = torch.Generator().manual_seed(seed)
    canon = make_canonical(gen, {"width": W, "depth": L, "mlp": M, "patch": P, "tokens_pos": T,
                                 "head": K})
    quiet(canon, "cls_token", 0, 0.01)
    model = tv_from_canonical(canon)
    check_roundtrip(canon, tv_to_canonical(model))
    images = images_of(gen, 2, S)
    spec = {"patch": P, "heads": H, "eps": 1e-6, "pos_prefix": True}
    p64 = to64(tv_to_canonical(model))
    im64 = images.double()
    e = expected_of(p64, im64, spec, "token")
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, "token", e)

    try:
        import torchvision
        from torchvision.models import VisionTransformer
    except ImportError:
        raise SystemExit("python3-torchvision is needed for the torchvision cross-check "
                         "(apt-get install python3-torchvision)")
    tv = VisionTransformer(image_size=S, patch_size=P, num_layers=L, num_heads=H, hidden_dim=W,
                           mlp_dim=M, num_classes=K)
    tv = load_strict(tv, model)
    with torch.no_grad():
        x = tv._process_input(im64)
        x = torch.cat([tv.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        mine = {"logits": tv(im64)}
        h = x + tv.encoder.pos_embedding
        for i, layer in enumerate(tv.encoder.layers):
            y = layer.ln_1(h)
            _, mine["attn.%d" % i] = layer.self_attention(y, y, y, need_weights=True,
                                                          average_attn_weights=False)
            h = layer(h)
        mine["tokens_final"] = tv.encoder.ln(h)
        mine["features"] = mine["tokens_final"][:, 0]
        mine["tokens_final_encoder"] = tv.encoder(x)     # the real Encoder.forward
    mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1:]
    enc = mine.pop("tokens_final_encoder")
    compare(folder, "torchvision %s VisionTransformer (strict load), all outputs"
            % torchvision.__version__, mine, e)
    compare(folder, "torchvision Encoder.forward vs tokens_final", {"tokens_final": enc}, e)
    timm_ref_check(folder, p64, im64, e, L, H, 1e-6, True)
    eps_sensitivity(folder, p64, im64, spec, "token", e, 1e-5)
    meta = {"family": "torchvision VisionTransformer", "layer_norm_eps": "1e-06",
            "features": "encoder.ln(x)[:, 0]; logits = heads.head(features)",
            "rollout": "CLS row of R, patch columns (T-1)"}
    return save(outroot, folder, model, images, e, {}, meta)


# ---------------------------------------------------------------------------
# 4. timm variants
# ---------------------------------------------------------------------------

def timm_conf(arch, S, W, L, H, mlp_ratio, K, global_pool, extra, mean, std, classifier="head"):
    ma = OrderedDict([("img_size", S), ("patch_size", 8), ("embed_dim", W), ("depth", L),
                      ("num_heads", H), ("mlp_ratio", mlp_ratio), ("num_classes", K)])
    ma.update(extra)
    return OrderedDict([
        ("architecture", arch), ("num_classes", K), ("num_features", W),
        ("global_pool", global_pool), ("model_args", ma),
        ("pretrained_cfg", OrderedDict([
            ("input_size", [3, S, S]), ("interpolation", "bicubic"), ("crop_pct", 0.9),
            ("crop_mode", "center"), ("mean", mean), ("std", std), ("num_classes", K),
            ("first_conv", "patch_embed.proj"), ("classifier", classifier)]))])


IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]


def gen_timm(outroot, folder, seed, kind):
    P = 8
    if kind == "reg-ls":
        S, W, L, H, M, K = 24, 32, 3, 2, 128, 4
        NP = (S // P) ** 2
        a = {"width": W, "depth": L, "mlp": M, "patch": P, "tokens_pos": NP, "reg": 4,
             "layer_scale": True, "head": K}
        extra = OrderedDict([("reg_tokens", 4), ("init_values", 1e-5), ("no_embed_class", True),
                             ("global_pool", "token")])
        conf = timm_conf("vit_custom_reg4_ls", S, W, L, H, M / W, K, "token", extra,
                         [0.5] * 3, [0.5] * 3)
        spec = {"patch": P, "heads": H, "eps": 1e-6, "pos_prefix": False}
        pool = "token_avg"
    elif kind == "gap":
        S, W, L, H, M, K = 32, 32, 2, 4, 96, 3
        NP = (S // P) ** 2
        a = {"width": W, "depth": L, "mlp": M, "patch": P, "tokens_pos": NP, "cls": False,
             "final": "fc_norm", "head": K}
        extra = OrderedDict([("class_token", False), ("global_pool", "avg")])
        conf = timm_conf("vit_custom_gap", S, W, L, H, M / W, K, "avg", extra,
                         [0.5] * 3, [0.5] * 3)
        spec = {"patch": P, "heads": H, "eps": 1e-6, "pos_prefix": True, "final": "fc_norm"}
        pool = "gap"
    else:
        S, W, L, H, M, K = 24, 32, 3, 4, 128, 5
        NP = (S // P) ** 2
        a = {"width": W, "depth": L, "mlp": M, "patch": P, "tokens_pos": NP + 2, "dist": True,
             "head": K}
        conf = timm_conf("deit_custom_distilled", S, W, L, H, M / W, K, "token", OrderedDict(),
                         IMAGENET_MEAN, IMAGENET_STD, classifier=["head", "head_dist"])
        spec = {"patch": P, "heads": H, "eps": 1e-6, "pos_prefix": True}
        pool = "distilled"
    gen = torch.Generator().manual_seed(seed)
    model = make_canonical(gen, a)
    if kind == "reg-ls":
        quiet(model, "reg_token", None, 0.01)            # registers get no pos_embed here
    elif kind == "gap":
        for n in ("patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed"):
            model[n] = model[n] * 0.05                   # quiet stream, as geom-p7 does
    else:
        quiet(model, "dist_token", 1, 0.01)
    images = images_of(gen, 2, S)
    p64 = to64(model)
    im64 = images.double()
    e = expected_of(p64, im64, spec, pool)
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, pool, e)

    rep = load_strict(TimmVisionTransformer(conf["model_args"], distilled=(kind == "deit-dist")),
                      model)
    with torch.no_grad():
        mine = rep(im64)
        R = rollout_matrix([mine["attn.%d" % i] for i in range(L)])
        npf = rep.num_prefix_tokens
        mine["rollout"] = R[:, npf:, npf:].mean(dim=1) if kind == "gap" else R[:, 0, npf:]
        if kind == "reg-ls":
            mine["features_avg"] = mine["tokens_final"][:, npf:].mean(dim=1)
            mine["logits_avg"] = rep.head(mine["features_avg"])
    compare(folder, "timm module replica (strict load, PyTorch MHA), all outputs", mine, e)
    eps_sensitivity(folder, p64, im64, spec, pool, e, 1e-5)
    if kind == "reg-ls":
        no_ls = {k: v for k, v in p64.items() if not k.endswith(("ls1.gamma", "ls2.gamma"))}
        d = (expected_of(no_ls, im64, spec, pool)["logits"] - e["logits"]).abs().max().item()
        note(folder, "layer scale ignored: logits off by", d)
        r = e["rollout"].sum(dim=-1)
        print("  %-20s rollout row sums (patches only, not renormalized) %.3f .. %.3f"
              % ("", r.min().item(), r.max().item()))
    if kind == "gap":
        mean_tok = f32(e["tokens_final"]).double().mean(dim=1)
        d = (mean_tok - f32(e["features"]).double()).abs().max().item()
        note(folder, "features without fc_norm (plain mean of tokens_final) off by", d)
        r = e["rollout"].sum(dim=-1)
        print("  %-20s rollout sums %.6f .. %.6f (mean of stochastic rows: 1)"
              % ("", r.min().item(), r.max().item()))
    if kind == "deit-dist":
        lc = linear(p64, "head", e["tokens_final"][:, 0])
        note(folder, "head(cls) alone: logits off by", (lc - e["logits"]).abs().max().item())
    meta = {"family": "timm " + conf["architecture"], "layer_norm_eps": "1e-06",
            "features": {"reg-ls": "norm(x)[:, 0]; features_avg = mean of norm(x) over the patch "
                                   "tokens (cls and registers excluded)",
                         "gap": "fc_norm(mean of x over all tokens); tokens_final = x (norm is "
                                "Identity)",
                         "deit-dist": "norm(x)[:, 0]; features_dist = norm(x)[:, 1]; logits = "
                                      "(head(x0) + head_dist(x1)) / 2"}[kind],
            "rollout": {"reg-ls": "CLS row of R, patch columns only (registers and cls "
                                  "excluded), not renormalized",
                        "gap": "mean over the patch query rows of R (no CLS)",
                        "deit-dist": "CLS row of R, patch columns only (cls and dist excluded), "
                                     "not renormalized"}[kind]}
    return save(outroot, folder, model, images, e, {"config.json": (conf, False)}, meta)


# ---------------------------------------------------------------------------
# 5. JAX / Flax ViTs in .npz (Google's vision_transformer "AugReg", big_vision)
# ---------------------------------------------------------------------------

def jax_from_canonical(p, heads, layout, scan, prefix, no_head=False):
    """The arrays a Flax ViT holds, in its own names and layouts: Conv kernels HWIO, Dense
    kernels (in, out), attention kernels (W, heads, W/heads) and out (heads, W/heads, W).
    layout 'augreg' (vision_transformer: MultiHeadDotProductAttention_1, LayerNorm_2,
    MlpBlock_3, Transformer/posembed_input/pos_embedding) or 'big_vision'
    (MultiHeadDotProductAttention_0, LayerNorm_1, MlpBlock_0, pos_embedding); scan: the blocks
    stacked into one Transformer/encoderblock/ (big_vision's scan_layers).  With attn_pool.*
    tensors, big_vision's MAPHead_0/ (probe, MultiHeadDotProductAttention_0, LayerNorm_0,
    MlpBlock_0), as timm's _load_weights reads it; without head.* no head/ at all when
    no_head (a SigLIP image tower), else big_vision's num_classes=0 head [W,0]."""
    import numpy as np
    n = {k: v.detach().double().numpy() for k, v in p.items()}
    W = n["patch_embed.proj.weight"].shape[0]
    D = W // heads
    mha, mlp, ln2 = (1, 3, 2) if layout == "augreg" else (0, 0, 1)
    j = OrderedDict()
    j["embedding/kernel"] = n["patch_embed.proj.weight"].transpose(2, 3, 1, 0)
    j["embedding/bias"] = n["patch_embed.proj.bias"]
    if "cls_token" in n:
        j["cls"] = n["cls_token"]
    pos = "Transformer/posembed_input/pos_embedding" if layout == "augreg" else "pos_embedding"
    j[pos] = n["pos_embed"]
    blocks = []
    i = 0
    while "blocks.%d.norm1.weight" % i in n:
        b = "blocks.%d." % i
        qkv_w, qkv_b = n[b + "attn.qkv.weight"], n[b + "attn.qkv.bias"]
        blk = OrderedDict()
        blk["LayerNorm_0/scale"] = n[b + "norm1.weight"]
        blk["LayerNorm_0/bias"] = n[b + "norm1.bias"]
        a = "MultiHeadDotProductAttention_%d/" % mha
        for k, part in enumerate(("query", "key", "value")):
            blk[a + part + "/kernel"] = qkv_w[k * W:(k + 1) * W].T.reshape(W, heads, D)
            blk[a + part + "/bias"] = qkv_b[k * W:(k + 1) * W].reshape(heads, D)
        blk[a + "out/kernel"] = n[b + "attn.proj.weight"].T.reshape(heads, D, W)
        blk[a + "out/bias"] = n[b + "attn.proj.bias"]
        blk["LayerNorm_%d/scale" % ln2] = n[b + "norm2.weight"]
        blk["LayerNorm_%d/bias" % ln2] = n[b + "norm2.bias"]
        for r in range(2):
            blk["MlpBlock_%d/Dense_%d/kernel" % (mlp, r)] = n[b + "mlp.fc%d.weight" % (r + 1)].T
            blk["MlpBlock_%d/Dense_%d/bias" % (mlp, r)] = n[b + "mlp.fc%d.bias" % (r + 1)]
        blocks.append(blk)
        i += 1
    if scan:
        for k in blocks[0]:
            j["Transformer/encoderblock/" + k] = np.stack([blk[k] for blk in blocks])
    else:
        for i, blk in enumerate(blocks):
            for k, v in blk.items():
                j["Transformer/encoderblock_%d/%s" % (i, k)] = v
    j["Transformer/encoder_norm/scale"] = n["norm.weight"]
    j["Transformer/encoder_norm/bias"] = n["norm.bias"]
    if "attn_pool.latent" in n:
        m = "MAPHead_0/"
        a = m + "MultiHeadDotProductAttention_0/"
        j[m + "probe"] = n["attn_pool.latent"]
        kv_w, kv_b = n["attn_pool.kv.weight"], n["attn_pool.kv.bias"]
        parts = (("query", n["attn_pool.q.weight"], n["attn_pool.q.bias"]),
                 ("key", kv_w[:W], kv_b[:W]), ("value", kv_w[W:], kv_b[W:]))
        for part, w, b in parts:
            j[a + part + "/kernel"] = w.T.reshape(W, heads, D)
            j[a + part + "/bias"] = b.reshape(heads, D)
        j[a + "out/kernel"] = n["attn_pool.proj.weight"].T.reshape(heads, D, W)
        j[a + "out/bias"] = n["attn_pool.proj.bias"]
        j[m + "LayerNorm_0/scale"] = n["attn_pool.norm.weight"]
        j[m + "LayerNorm_0/bias"] = n["attn_pool.norm.bias"]
        for r in range(2):
            j[m + "MlpBlock_0/Dense_%d/kernel" % r] = n["attn_pool.mlp.fc%d.weight" % (r + 1)].T
            j[m + "MlpBlock_0/Dense_%d/bias" % r] = n["attn_pool.mlp.fc%d.bias" % (r + 1)]
    if "head.weight" in n:
        j["head/kernel"] = n["head.weight"].T
        j["head/bias"] = n["head.bias"]
    elif not no_head:
        j["head/kernel"] = np.zeros((W, 0))                 # big_vision's num_classes=0
        j["head/bias"] = np.zeros((0,))
    return OrderedDict((prefix + k, v) for k, v in j.items())


def flax_forward(j, prefix, layout, images, pool, eps=1e-6, act="gelu"):
    """The Flax ViT's forward, in numpy float64 from its own arrays (models_vit.py of
    vision_transformer, vit.py of big_vision): a VALID stride-P convolution with the HWIO
    kernel, the class token before the position embedding (AugReg) or after it (big_vision),
    pre-norm blocks of DenseGeneral attention (query scaled by 1/sqrt(W/heads)) and a GELU MLP,
    encoder_norm, then the class token, the mean of all tokens or (pool 'map') big_vision's
    MAPHead (a probe attending to every token with its own DenseGeneral attention, then
    x + MlpBlock(LayerNorm(x)), token 0).  act 'gelu' is the exact GELU, as timm runs the
    AugReg weights; 'gelu_tanh' is Flax's nn.gelu default (approximate=True), as big_vision's
    MlpBlock (and timm's SigLIP models) compute it."""
    import numpy as np
    from math import erf, sqrt
    g = lambda name: j[prefix + name]
    scan = prefix + "Transformer/encoderblock/LayerNorm_0/scale" in j

    def blk(i, name):
        return g("Transformer/encoderblock/" + name)[i] if scan \
            else g("Transformer/encoderblock_%d/%s" % (i, name))

    def ln(x, scale, bias):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + eps) * scale + bias

    verf = np.vectorize(erf)
    if act == "gelu_tanh":
        gelu = lambda x: 0.5 * x * (1.0 + np.tanh(sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))
    else:
        gelu = lambda x: 0.5 * x * (1.0 + verf(x / sqrt(2.0)))
    k = g("embedding/kernel")
    P = k.shape[0]
    x = images.transpose(0, 2, 3, 1)
    B, H, Wd, C = x.shape
    patches = x.reshape(B, H // P, P, Wd // P, P, C).transpose(0, 1, 3, 2, 4, 5)
    x = np.einsum("bhwijc,ijcd->bhwd", patches, k) + g("embedding/bias")
    x = x.reshape(B, -1, x.shape[-1])
    cls = j.get(prefix + "cls")
    tile = lambda c: np.repeat(c, B, axis=0)
    if layout == "augreg":
        if cls is not None:
            x = np.concatenate([tile(cls), x], axis=1)
        x = x + g("Transformer/posembed_input/pos_embedding")
    else:
        x = x + g("pos_embedding")
        if cls is not None:
            x = np.concatenate([tile(cls), x], axis=1)
    mha, mlp, ln2 = (1, 3, 2) if layout == "augreg" else (0, 0, 1)
    depth = g("Transformer/encoderblock/LayerNorm_0/scale").shape[0] if scan else \
        sum(1 for name in j if name.startswith(prefix + "Transformer/encoderblock_")
            and name.endswith("/LayerNorm_0/scale"))
    attns = []
    for i in range(depth):
        y = ln(x, blk(i, "LayerNorm_0/scale"), blk(i, "LayerNorm_0/bias"))
        a = "MultiHeadDotProductAttention_%d/" % mha
        q, kk, v = (np.einsum("btd,dhk->bthk", y, blk(i, a + n + "/kernel")) +
                    blk(i, a + n + "/bias") for n in ("query", "key", "value"))
        logits = np.einsum("bqhk,bthk->bhqt", q / np.sqrt(q.shape[-1]), kk)
        logits = logits - logits.max(-1, keepdims=True)
        w = np.exp(logits)
        w = w / w.sum(-1, keepdims=True)
        attns.append(w)
        o = np.einsum("bhqt,bthk->bqhk", w, v)
        x = x + np.einsum("bqhk,hkd->bqd", o, blk(i, a + "out/kernel")) + blk(i, a + "out/bias")
        y = ln(x, blk(i, "LayerNorm_%d/scale" % ln2), blk(i, "LayerNorm_%d/bias" % ln2))
        m = "MlpBlock_%d/" % mlp
        y = gelu(y @ blk(i, m + "Dense_0/kernel") + blk(i, m + "Dense_0/bias"))
        x = x + y @ blk(i, m + "Dense_1/kernel") + blk(i, m + "Dense_1/bias")
    x = ln(x, g("Transformer/encoder_norm/scale"), g("Transformer/encoder_norm/bias"))
    out = {"tokens_final": x}
    if pool == "map":
        m = "MAPHead_0/"
        a = m + "MultiHeadDotProductAttention_0/"
        probe = tile(g(m + "probe"))                                # [B,1,W]
        q = np.einsum("bqd,dhk->bqhk", probe, g(a + "query/kernel")) + g(a + "query/bias")
        kk, v = (np.einsum("btd,dhk->bthk", x, g(a + n + "/kernel")) + g(a + n + "/bias")
                 for n in ("key", "value"))
        logits = np.einsum("bqhk,bthk->bhqt", q / np.sqrt(q.shape[-1]), kk)
        logits = logits - logits.max(-1, keepdims=True)
        w = np.exp(logits)
        w = w / w.sum(-1, keepdims=True)
        out["attn_pool.attn"] = w
        y = np.einsum("bqhk,hkd->bqd", np.einsum("bhqt,bthk->bqhk", w, v), g(a + "out/kernel")) \
            + g(a + "out/bias")
        h = ln(y, g(m + "LayerNorm_0/scale"), g(m + "LayerNorm_0/bias"))
        h = gelu(h @ g(m + "MlpBlock_0/Dense_0/kernel") + g(m + "MlpBlock_0/Dense_0/bias"))
        feat = (y + h @ g(m + "MlpBlock_0/Dense_1/kernel") + g(m + "MlpBlock_0/Dense_1/bias"))[:, 0]
    else:
        feat = x[:, 0] if pool == "token" else x.mean(axis=1)
    out["features"] = feat
    for i, a in enumerate(attns):
        out["attn.%d" % i] = a
    if prefix + "head/kernel" in j and g("head/kernel").shape[1] > 0:
        out["logits"] = feat @ g("head/kernel") + g("head/bias")
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in out.items()}


def write_npz(path, arrays, compressed):
    """An .npz as np.savez / np.savez_compressed write it (np.lib.format.write_array into a
    zip entry NAME.npy), with fixed timestamps so the bytes are the same at every run."""
    import io
    import zipfile
    import numpy as np
    mode = zipfile.ZIP_DEFLATED if compressed else zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w", mode) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            info = zipfile.ZipInfo(name + ".npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = mode
            z.writestr(info, buf.getvalue())
    back = np.load(path, allow_pickle=False)                # numpy reads back what was written
    assert sorted(back.files) == sorted(arrays)
    for name, a in arrays.items():
        assert back[name].dtype == a.dtype and np.array_equal(back[name], a), name


def gen_jax(outroot, folder, seed, kind):
    import numpy as np
    P = 8
    if kind == "augreg":     # vision_transformer's own layout, class token, a 5-class head
        S, W, L, H, M, K, cls, prefix, scan = 32, 32, 2, 2, 64, 5, True, "", False
        layout, pool, pos_prefix = "augreg", "token", True
    elif kind == "bv-gap":   # big_vision, mean pooling, blocks stacked (scan), params/
        S, W, L, H, M, K, cls, prefix, scan = 24, 32, 3, 4, 96, 3, False, "params/", True
        layout, pool, pos_prefix = "big_vision", "gap_norm", True
    else:                    # big_vision image tower of a two-tower model, class token, no head
        S, W, L, H, M, K, cls, prefix, scan = 24, 24, 2, 3, 48, 0, True, "params/img/", False
        layout, pool, pos_prefix = "big_vision", "token", False
    NP = (S // P) ** 2
    gen = torch.Generator().manual_seed(seed)
    model = make_canonical(gen, {"width": W, "depth": L, "mlp": M, "patch": P, "cls": cls,
                                 "tokens_pos": NP + (1 if cls and pos_prefix else 0),
                                 "head": K})
    if cls:
        quiet(model, "cls_token", 0 if pos_prefix else None, 0.01)
    if kind == "bv-gap":     # stored as float16 in the archive: its values are float16's
        model["patch_embed.proj.weight"] = model["patch_embed.proj.weight"].half().float()
    images = images_of(gen, 2, S)
    p64 = to64(model)
    im64 = images.double()
    spec = {"patch": P, "heads": H, "eps": 1e-6, "pos_prefix": pos_prefix}
    e = expected_of(p64, im64, spec, pool)
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, pool, e)

    arrays = jax_from_canonical(model, H, layout, scan, prefix)
    arrays = OrderedDict((k, v.astype(np.float32)) for k, v in arrays.items())
    mine = flax_forward({k: v.astype(np.float64) for k, v in arrays.items()}, prefix, layout,
                        im64.numpy(), "token" if pool == "token" else "gap")
    keys = ["tokens_final", "features"] + ["attn.%d" % i for i in range(L)] + \
        (["logits"] if K else [])
    compare(folder, "Flax ViT forward from the .npz arrays (numpy), all outputs", mine, e, keys)
    if kind == "augreg":
        # a Fortran-ordered array and a big-endian one, as numpy may save them
        arrays["head/kernel"] = np.asfortranarray(arrays["head/kernel"])
        arrays["embedding/bias"] = arrays["embedding/bias"].astype(">f4")
    elif kind == "bv-gap":
        arrays["params/embedding/kernel"] = arrays["params/embedding/kernel"].astype(np.float16)
        arrays["opt/state/mu/embedding/kernel"] = np.zeros((2, 2), np.float32)  # left out
    else:
        arrays["params/txt/Embed_0/embedding"] = np.ones((16, W), np.float32)   # left out
        arrays["params/t"] = np.array([10.0], np.float32)
    d = os.path.join(outroot, folder)
    os.makedirs(d, exist_ok=True)
    write_npz(os.path.join(d, "model.npz"), arrays, compressed=(kind == "bv-gap"))
    st_write(os.path.join(d, "inputs.safetensors"), {"images": images})
    meta = {"family": "jax (%s%s)" % (layout, ", scan" if scan else ""),
            "layer_norm_eps": "1e-06",
            "features": "encoder_norm(x)[:, 0]" if pool == "token"
                        else "mean of encoder_norm(x) over all tokens (big_vision's gap)",
            "rollout": "CLS row of R, patch columns" if pool == "token"
                       else "mean over the patch query rows of R (no CLS)"}
    st_write(os.path.join(d, "expected.safetensors"),
             OrderedDict((k, f32(v)) for k, v in e.items()), meta)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    assert size < MAX_FOLDER_BYTES, "%s is %d bytes" % (folder, size)
    return size


# ---------------------------------------------------------------------------
# 6. DINOv2: transformers' Dinov2Model and Meta's own torch.hub files
# ---------------------------------------------------------------------------

DINO_BLOCK = [("norm1", "norm1"), ("attention.output.dense", "attn.proj"), ("norm2", "norm2"),
              ("mlp.fc1", "mlp.fc1"), ("mlp.fc2", "mlp.fc2")]


def hf_dinov2_from_canonical(p, mask_token):
    """transformers' Dinov2Model state dict (layer scale as layer_scaleN.lambda1)."""
    o = OrderedDict()
    W = p["pos_embed"].shape[-1]
    o["embeddings.cls_token"] = p["cls_token"]
    o["embeddings.mask_token"] = mask_token
    o["embeddings.position_embeddings"] = p["pos_embed"]
    for s in ("weight", "bias"):
        o["embeddings.patch_embeddings.projection." + s] = p["patch_embed.proj." + s]
    for i in range(blocks_of(p)):
        L, b = "encoder.layer.%d." % i, "blocks.%d." % i
        for s in ("weight", "bias"):
            qkv = p[b + "attn.qkv." + s]
            for j, n in enumerate(("query", "key", "value")):
                o[L + "attention.attention.%s.%s" % (n, s)] = qkv[j * W:(j + 1) * W].contiguous()
            for hf, tm in DINO_BLOCK:
                o[L + hf + "." + s] = p[b + tm + "." + s]
        o[L + "layer_scale1.lambda1"] = p[b + "ls1.gamma"]
        o[L + "layer_scale2.lambda1"] = p[b + "ls2.gamma"]
    for s in ("weight", "bias"):
        o["layernorm." + s] = p["norm." + s]
    return o


def hf_dinov2_to_canonical(o):
    p = OrderedDict()
    p["patch_embed.proj.weight"] = o["embeddings.patch_embeddings.projection.weight"]
    p["patch_embed.proj.bias"] = o["embeddings.patch_embeddings.projection.bias"]
    p["cls_token"] = o["embeddings.cls_token"]
    p["pos_embed"] = o["embeddings.position_embeddings"]
    i = 0
    while "encoder.layer.%d.norm1.weight" % i in o:
        L, b = "encoder.layer.%d." % i, "blocks.%d." % i
        for s in ("weight", "bias"):
            p[b + "norm1." + s] = o[L + "norm1." + s]
            p[b + "attn.qkv." + s] = torch.cat(
                [o[L + "attention.attention.%s.%s" % (n, s)] for n in ("query", "key", "value")])
            p[b + "attn.proj." + s] = o[L + "attention.output.dense." + s]
        p[b + "ls1.gamma"] = o[L + "layer_scale1.lambda1"]
        for s in ("weight", "bias"):
            p[b + "norm2." + s] = o[L + "norm2." + s]
            p[b + "mlp.fc1." + s] = o[L + "mlp.fc1." + s]
            p[b + "mlp.fc2." + s] = o[L + "mlp.fc2." + s]
        p[b + "ls2.gamma"] = o[L + "layer_scale2.lambda1"]
        i += 1
    for s in ("weight", "bias"):
        p["norm." + s] = o["layernorm." + s]
    return p


def hf_dinov2_reg_from_meta(meta):
    """transformers' Dinov2WithRegistersModel state dict from Meta's tensors (timm's names plus
    register_tokens and mask_token): Dinov2Model's names plus embeddings.register_tokens [1,R,W];
    embeddings.position_embeddings [1,1+N,W] is Meta's pos_embed (class token and patches)."""
    body = OrderedDict((k, v) for k, v in meta.items()
                       if k not in ("mask_token", "register_tokens"))
    o = hf_dinov2_from_canonical(body, meta["mask_token"])
    o["embeddings.register_tokens"] = meta["register_tokens"]
    return o


def hf_dinov2_reg_to_meta(o):
    meta = hf_dinov2_to_canonical(o)
    meta["register_tokens"] = o["embeddings.register_tokens"]
    meta["mask_token"] = o["embeddings.mask_token"]
    return meta


class HFDinov2Layer(nn.Module):
    """transformers' Dinov2Layer: norm1 -> attention -> layer_scale1 -> +res; norm2 -> MLP
    (fc1, GELU, fc2) -> layer_scale2 -> +res."""

    def __init__(self, hidden, heads, mlp, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden, eps=eps)
        self.attention = nn.Module()
        self.attention.attention = HFSelfAttention(hidden, heads)
        self.attention.output = nn.Module()
        self.attention.output.dense = nn.Linear(hidden, hidden)
        self.layer_scale1 = nn.Module()
        self.layer_scale1.lambda1 = nn.Parameter(torch.ones(hidden))
        self.norm2 = nn.LayerNorm(hidden, eps=eps)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(hidden, mlp)
        self.mlp.fc2 = nn.Linear(mlp, hidden)
        self.layer_scale2 = nn.Module()
        self.layer_scale2.lambda1 = nn.Parameter(torch.ones(hidden))

    def forward(self, x):
        ctx, self.probs = self.attention.attention(self.norm1(x))
        x = self.attention.output.dense(ctx) * self.layer_scale1.lambda1 + x
        h = self.mlp.fc2(F.gelu(self.mlp.fc1(self.norm2(x))))
        return h * self.layer_scale2.lambda1 + x


class HFDinov2Model(nn.Module):
    def __init__(self, c):
        super().__init__()
        W, P, S = c["hidden_size"], c["patch_size"], c["image_size"]
        self.embeddings = nn.Module()
        self.embeddings.cls_token = nn.Parameter(torch.zeros(1, 1, W))
        self.embeddings.mask_token = nn.Parameter(torch.zeros(1, W))
        self.embeddings.position_embeddings = nn.Parameter(torch.zeros(1, (S // P) ** 2 + 1, W))
        self.embeddings.patch_embeddings = nn.Module()
        self.embeddings.patch_embeddings.projection = nn.Conv2d(c["num_channels"], W, P, stride=P)
        self.encoder = nn.Module()
        self.encoder.layer = nn.ModuleList(
            [HFDinov2Layer(W, c["num_attention_heads"], int(W * c["mlp_ratio"]),
                           c["layer_norm_eps"]) for _ in range(c["num_hidden_layers"])])
        self.layernorm = nn.LayerNorm(W, eps=c["layer_norm_eps"])

    def embed(self, pixel_values):
        e = self.embeddings.patch_embeddings.projection(pixel_values).flatten(2).transpose(1, 2)
        e = torch.cat((self.embeddings.cls_token.expand(e.shape[0], -1, -1), e), dim=1)
        return e + self.embeddings.position_embeddings    # the native size: no interpolation

    def forward(self, pixel_values):
        x = self.embed(pixel_values)
        for layer in self.encoder.layer:
            x = layer(x)
        x = self.layernorm(x)
        out = {"tokens_final": x, "features": x[:, 0]}
        for i, layer in enumerate(self.encoder.layer):
            out["attn.%d" % i] = layer.probs
        return out


class HFDinov2WithRegistersModel(HFDinov2Model):
    """transformers' Dinov2WithRegistersModel: Dinov2Model's modules plus
    embeddings.register_tokens [1,R,W].  Dinov2WithRegistersEmbeddings.forward: [cls, patches] +
    position_embeddings (class token and patches only), then the registers inserted after the
    class token: [cls, registers, patches]."""

    def __init__(self, c):
        super().__init__(c)
        self.embeddings.register_tokens = nn.Parameter(
            torch.zeros(1, c["num_register_tokens"], c["hidden_size"]))

    def embed(self, pixel_values):
        x = super().embed(pixel_values)
        reg = self.embeddings.register_tokens.expand(x.shape[0], -1, -1)
        return torch.cat((x[:, :1], reg, x[:, 1:]), dim=1)


def meta_reg_forward(meta, images, heads):
    """Meta's DINOv2 with registers from its own weights: x = [cls, patches] + pos_embed, then
    the registers inserted after the class token (prepare_tokens_with_masks); timm's blocks
    (a strict load of the same weights) and norm."""
    W = meta["cls_token"].shape[-1]
    P = meta["patch_embed.proj.weight"].shape[-1]
    S = images.shape[-1]
    M = meta["blocks.0.mlp.fc1.weight"].shape[0]
    depth = blocks_of(meta)
    rep = load_strict(TimmVisionTransformer(OrderedDict([
        ("img_size", S), ("patch_size", P), ("embed_dim", W), ("depth", depth),
        ("num_heads", heads), ("mlp_ratio", M / W), ("num_classes", 0), ("init_values", 1e-5)])),
        OrderedDict([(k, v) for k, v in meta.items() if k not in ("mask_token", "register_tokens")]
                    + [("head.weight", torch.zeros(0, W)), ("head.bias", torch.zeros(0))]))
    with torch.no_grad():
        x = rep.patch_embed.proj(images).flatten(2).transpose(1, 2)
        x = torch.cat((rep.cls_token.expand(x.shape[0], -1, -1), x), dim=1) + rep.pos_embed
        reg = meta["register_tokens"].double().expand(x.shape[0], -1, -1)
        x = torch.cat((x[:, :1], reg, x[:, 1:]), dim=1)
        for blk in rep.blocks:
            x = blk(x)
        x = rep.norm(x)
    out = {"tokens_final": x, "features": x[:, 0]}
    for i, blk in enumerate(rep.blocks):
        out["attn.%d" % i] = blk.attn.probs
    return out


def gen_dinov2(outroot, folder, seed, kind):
    """kind 'hf': transformers' Dinov2Model (config.json, preprocessor_config.json); 'meta':
    a torch.hub file of Meta's (timm's names and a mask_token, torch.save'd, no config);
    'meta-reg': the same with 4 register tokens; 'hf-reg': transformers'
    Dinov2WithRegistersModel (4 register tokens, 4 heads, its config.json and
    preprocessor_config.json)."""
    P, S, W, L, H, M = 8, 24, 32, 2, 2, 128
    R = 4 if kind in ("meta-reg", "hf-reg") else 0
    if kind == "meta-reg":
        S = 32              # 16 patches: 16 - 5 prefix tokens is no square, as in the real 37 x 37
    if kind == "hf-reg":
        H = 4
    gen = torch.Generator().manual_seed(seed)
    canon = make_canonical(gen, {"width": W, "depth": L, "mlp": M, "patch": P,
                                 "tokens_pos": (S // P) ** 2 + 1, "layer_scale": True})
    quiet(canon, "cls_token", 0, 0.01)
    mask = (torch.randn(1, W, generator=gen) * 0.1).float()
    images = images_of(gen, 2, S)
    spec = {"patch": P, "heads": H, "eps": 1e-6, "pos_prefix": True}
    meta = None
    if R:
        # Meta's tensors (transformers' Dinov2WithRegisters holds the same ones under its own
        # names), and timm's conversion of them (_convert_dinov2) as the reference's
        meta = OrderedDict(canon)
        meta["register_tokens"] = (torch.randn(1, R, W, generator=gen) * 0.5).float()
        meta["mask_token"] = mask
        canon = OrderedDict((k, v) for k, v in canon.items() if k not in ("cls_token", "pos_embed"))
        canon["cls_token"] = meta["cls_token"] + meta["pos_embed"][:, :1]
        canon["reg_token"] = meta["register_tokens"]
        canon["pos_embed"] = meta["pos_embed"][:, 1:].contiguous()
        spec["pos_prefix"] = False
    p64 = to64(canon)
    im64 = images.double()
    e = expected_of(p64, im64, spec, "token")
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, "token", e)
    no_ls = {k: v for k, v in p64.items() if not k.endswith(("ls1.gamma", "ls2.gamma"))}
    d = (expected_of(no_ls, im64, spec, "token")["features"] - e["features"]).abs().max().item()
    note(folder, "layer scale ignored: features off by", d)
    d = (expected_of(p64, im64, dict(spec, heads=1), "token")["features"] -
         e["features"]).abs().max().item()
    note(folder, "1 head instead of %d: features off by" % H, d)
    if kind == "hf-reg":
        no_reg = {k: v for k, v in p64.items() if k != "reg_token"}
        d = (expected_of(no_reg, im64, spec, "token")["features"] - e["features"]).abs().max().item()
        note(folder, "registers left out: features off by", d)
    d = os.path.join(outroot, folder)
    os.makedirs(d, exist_ok=True)
    if kind == "hf":
        model = hf_dinov2_from_canonical(canon, mask)
        check_roundtrip(canon, hf_dinov2_to_canonical(model))
        conf = OrderedDict([
            ("architectures", ["Dinov2Model"]), ("attention_probs_dropout_prob", 0.0),
            ("drop_path_rate", 0.0), ("hidden_act", "gelu"), ("hidden_dropout_prob", 0.0),
            ("hidden_size", W), ("image_size", S), ("initializer_range", 0.02),
            ("layer_norm_eps", 1e-6), ("layerscale_value", 1.0), ("mlp_ratio", M / W),
            ("model_type", "dinov2"), ("num_attention_heads", H), ("num_channels", 3),
            ("num_hidden_layers", L), ("patch_size", P), ("qkv_bias", True),
            ("torch_dtype", "float32"), ("transformers_version", "4.46.3"),
            ("use_swiglu_ffn", False)])
        rep = load_strict(HFDinov2Model(conf), model)
        with torch.no_grad():
            mine = rep(im64)
        mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1:]
        compare(folder, "transformers Dinov2Model replica (strict load), all outputs", mine, e)
        pre = OrderedDict([
            ("crop_size", OrderedDict([("height", S), ("width", S)])), ("do_center_crop", True),
            ("do_convert_rgb", True), ("do_normalize", True), ("do_rescale", True),
            ("do_resize", True), ("image_mean", [0.485, 0.456, 0.406]),
            ("image_processor_type", "BitImageProcessor"),
            ("image_std", [0.229, 0.224, 0.225]), ("resample", 3),
            ("rescale_factor", 0.00392156862745098),
            ("size", OrderedDict([("shortest_edge", S)]))])
        save(outroot, folder, model, images, e,
             {"config.json": (conf, True), "preprocessor_config.json": (pre, False)},
             {"family": "transformers Dinov2Model", "layer_norm_eps": "1e-06",
              "features": "layernorm(x)[:, 0] (pooler_output)",
              "rollout": "CLS row of R, patch columns (T-1)"})
    elif kind == "hf-reg":
        model = hf_dinov2_reg_from_meta(meta)
        check_roundtrip(meta, hf_dinov2_reg_to_meta(model))
        conf = OrderedDict([
            ("apply_layernorm", True), ("architectures", ["Dinov2WithRegistersModel"]),
            ("attention_probs_dropout_prob", 0.0), ("drop_path_rate", 0.0),
            ("hidden_act", "gelu"), ("hidden_dropout_prob", 0.0), ("hidden_size", W),
            ("image_size", S), ("initializer_range", 0.02), ("layer_norm_eps", 1e-6),
            ("layerscale_value", 1.0), ("mlp_ratio", M / W),
            ("model_type", "dinov2_with_registers"), ("num_attention_heads", H),
            ("num_channels", 3), ("num_hidden_layers", L), ("num_register_tokens", R),
            ("out_features", ["stage%d" % L]), ("out_indices", [L]), ("patch_size", P),
            ("qkv_bias", True), ("reshape_hidden_states", True),
            ("stage_names", ["stem"] + ["stage%d" % (i + 1) for i in range(L)]),
            ("torch_dtype", "float32"), ("transformers_version", "4.48.0"),
            ("use_swiglu_ffn", False)])
        rep = load_strict(HFDinov2WithRegistersModel(conf), model)
        with torch.no_grad():
            mine = rep(im64)
        mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1 + R:]
        compare(folder, "transformers Dinov2WithRegistersModel replica (strict load), all",
                mine, e)
        mine = meta_reg_forward(to64(meta), im64, H)
        mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1 + R:]
        compare(folder, "Meta's register layout on the same weights (Meta's names), all",
                mine, e)
        pre = OrderedDict([
            ("crop_size", OrderedDict([("height", S), ("width", S)])), ("do_center_crop", True),
            ("do_convert_rgb", True), ("do_normalize", True), ("do_rescale", True),
            ("do_resize", True), ("image_mean", [0.485, 0.456, 0.406]),
            ("image_processor_type", "BitImageProcessor"),
            ("image_std", [0.229, 0.224, 0.225]), ("resample", 3),
            ("rescale_factor", 0.00392156862745098),
            ("size", OrderedDict([("shortest_edge", S)]))])
        save(outroot, folder, model, images, e,
             {"config.json": (conf, True), "preprocessor_config.json": (pre, False)},
             {"family": "transformers Dinov2WithRegistersModel (4 registers)",
              "layer_norm_eps": "1e-06", "features": "layernorm(x)[:, 0] (pooler_output)",
              "rollout": "CLS row of R, patch columns (registers excluded)"})
    elif kind == "meta-reg":
        mine = meta_reg_forward(to64(meta), im64, H)
        mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1 + R:]
        compare(folder, "Meta's register layout (cls + pos, registers after), all outputs",
                mine, e)
        torch.save(meta, os.path.join(d, "dinov2_vits8_reg4_pretrain.pth"))
        st_write(os.path.join(d, "inputs.safetensors"), {"images": images})
        st_write(os.path.join(d, "expected.safetensors"),
                 OrderedDict((k, f32(v)) for k, v in e.items()),
                 {"family": "DINOv2 torch.hub with 4 registers", "layer_norm_eps": "1e-06",
                  "features": "norm(x)[:, 0]",
                  "rollout": "CLS row of R, patch columns (registers excluded)"})
    else:
        model = OrderedDict(canon)
        model["mask_token"] = mask
        rep = load_strict(TimmVisionTransformer(OrderedDict([
            ("img_size", S), ("patch_size", P), ("embed_dim", W), ("depth", L),
            ("num_heads", H), ("mlp_ratio", M / W), ("num_classes", 0),
            ("init_values", 1e-5)])),
            OrderedDict(list(canon.items()) + [("head.weight", torch.zeros(0, W)),
                                               ("head.bias", torch.zeros(0))]))
        with torch.no_grad():
            mine = rep(im64)
        mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1:]
        compare(folder, "timm module replica (strict load, mask_token left out), all outputs",
                mine, e, [k for k in e if k != "logits"])
        torch.save(model, os.path.join(d, "dinov2_vits8_pretrain.pth"))
        st_write(os.path.join(d, "inputs.safetensors"), {"images": images})
        st_write(os.path.join(d, "expected.safetensors"),
                 OrderedDict((k, f32(v)) for k, v in e.items()),
                 {"family": "DINOv2 torch.hub (timm names + mask_token)",
                  "layer_norm_eps": "1e-06", "features": "norm(x)[:, 0]",
                  "rollout": "CLS row of R, patch columns (T-1)"})
    return sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))


# ---------------------------------------------------------------------------
# 7. transformers' DeiT with its distillation token (DeiTForImageClassificationWithTeacher)
# ---------------------------------------------------------------------------

def hf_deit_from_canonical(p):
    """deit.embeddings.{cls_token, distillation_token, position_embeddings [1, N+2, W], ...},
    ViT-named blocks, cls_classifier and distillation_classifier outside the prefix."""
    body = OrderedDict((k, v) for k, v in p.items() if not k.startswith(("head.", "head_dist.")))
    o = hf_from_canonical(body, "deit.")
    o["deit.embeddings.distillation_token"] = p["dist_token"]
    for s in ("weight", "bias"):
        o["cls_classifier." + s] = p["head." + s]
        o["distillation_classifier." + s] = p["head_dist." + s]
    return o


class HFDeiTWithTeacher(nn.Module):
    """transformers' DeiTForImageClassificationWithTeacher: [cls, distillation, patches] +
    position_embeddings, ViT layers, layernorm; logits = (cls_classifier (x[:, 0]) +
    distillation_classifier (x[:, 1])) / 2."""

    def __init__(self, c):
        super().__init__()
        W, P, S = c["hidden_size"], c["patch_size"], c["image_size"]
        self.deit = HFViTModel(c, pooler=False)
        self.deit.embeddings.distillation_token = nn.Parameter(torch.zeros(1, 1, W))
        self.deit.embeddings.position_embeddings = nn.Parameter(
            torch.zeros(1, (S // P) ** 2 + 2, W))
        K = len(c["id2label"])
        self.cls_classifier = nn.Linear(W, K)
        self.distillation_classifier = nn.Linear(W, K)

    def forward(self, pixel_values):
        emb = self.deit.embeddings
        e = emb.patch_embeddings.projection(pixel_values).flatten(2).transpose(1, 2)
        B = e.shape[0]
        x = torch.cat((emb.cls_token.expand(B, -1, -1), emb.distillation_token.expand(B, -1, -1),
                       e), dim=1) + emb.position_embeddings
        for layer in self.deit.encoder.layer:
            x = layer(x)
        x = self.deit.layernorm(x)
        out = {"tokens_final": x, "features": x[:, 0], "features_dist": x[:, 1],
               "logits": (self.cls_classifier(x[:, 0]) + self.distillation_classifier(x[:, 1])) / 2}
        for i, layer in enumerate(self.deit.encoder.layer):
            out["attn.%d" % i] = layer.probs
        return out


def gen_hf_deit(outroot, folder, seed):
    P, S, W, L, H, I, K = 8, 24, 32, 2, 4, 96, 3
    gen = torch.Generator().manual_seed(seed)
    canon = make_canonical(gen, {"width": W, "depth": L, "mlp": I, "patch": P,
                                 "tokens_pos": (S // P) ** 2 + 2, "dist": True, "head": K})
    quiet(canon, "dist_token", 1, 0.01)
    model = hf_deit_from_canonical(canon)
    images = images_of(gen, 2, S)
    conf = hf_config("DeiTForImageClassificationWithTeacher", S, W, L, H, I, 1e-12, K)
    conf["model_type"] = "deit"
    spec = {"patch": P, "heads": H, "eps": 1e-12, "pos_prefix": True}
    p64 = to64(canon)
    im64 = images.double()
    e = expected_of(p64, im64, spec, "distilled")
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, "distilled", e)
    rep = load_strict(HFDeiTWithTeacher(conf), model)
    with torch.no_grad():
        mine = rep(im64)
    mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 2:]
    compare(folder, "transformers DeiTForImageClassificationWithTeacher replica (strict load), "
            "all outputs", mine, e)
    lc = linear(p64, "head", e["tokens_final"][:, 0])
    note(folder, "cls_classifier alone: logits off by", (lc - e["logits"]).abs().max().item())
    pre = OrderedDict([
        ("crop_size", OrderedDict([("height", S), ("width", S)])), ("do_center_crop", True),
        ("do_normalize", True), ("do_rescale", True), ("do_resize", True),
        ("image_mean", [0.485, 0.456, 0.406]), ("image_processor_type", "DeiTImageProcessor"),
        ("image_std", [0.229, 0.224, 0.225]), ("resample", 3),
        ("rescale_factor", 0.00392156862745098),
        ("size", OrderedDict([("height", S), ("width", S)]))])
    meta = {"family": "transformers DeiTForImageClassificationWithTeacher",
            "layer_norm_eps": "1e-12",
            "features": "layernorm(x)[:, 0]; features_dist = layernorm(x)[:, 1]; logits = "
                        "(cls_classifier(x0) + distillation_classifier(x1)) / 2",
            "rollout": "CLS row of R, patch columns (cls and distillation excluded)"}
    return save(outroot, folder, model, images, e,
                {"config.json": (conf, True), "preprocessor_config.json": (pre, False)}, meta)


# ---------------------------------------------------------------------------
# 8. transformers' CLIP (CLIPModel: openai/clip-vit-* in transformers' layout)
# ---------------------------------------------------------------------------

def hf_clip_from_canonical(p, gen):
    """CLIPModel's state dict: the vision tower under vision_model. (position_embedding an
    nn.Embedding [T, W], q/k/v/out projections, layer_norm1/2, mlp.fc1/fc2, pre_layrnorm as
    transformers spells it, post_layernorm), visual_projection [E, W] without bias, and a text
    tower's tensors and logit_scale beside it."""
    o = OrderedDict()
    W = p["pos_embed"].shape[-1]
    v = "vision_model."
    o[v + "embeddings.class_embedding"] = p["cls_token"].reshape(-1)
    o[v + "embeddings.patch_embedding.weight"] = p["patch_embed.proj.weight"]
    o[v + "embeddings.position_embedding.weight"] = p["pos_embed"][0]
    o[v + "embeddings.position_ids"] = torch.arange(p["pos_embed"].shape[1]).reshape(1, -1)
    for s in ("weight", "bias"):
        o[v + "pre_layrnorm." + s] = p["norm_pre." + s]
    for i in range(blocks_of(p)):
        L, b = v + "encoder.layers.%d." % i, "blocks.%d." % i
        for s in ("weight", "bias"):
            qkv = p[b + "attn.qkv." + s]
            for j, n in enumerate(("q_proj", "k_proj", "v_proj")):
                o[L + "self_attn.%s.%s" % (n, s)] = qkv[j * W:(j + 1) * W].contiguous()
            o[L + "self_attn.out_proj." + s] = p[b + "attn.proj." + s]
            o[L + "layer_norm1." + s] = p[b + "norm1." + s]
            o[L + "layer_norm2." + s] = p[b + "norm2." + s]
            o[L + "mlp.fc1." + s] = p[b + "mlp.fc1." + s]
            o[L + "mlp.fc2." + s] = p[b + "mlp.fc2." + s]
    for s in ("weight", "bias"):
        o[v + "post_layernorm." + s] = p["norm." + s]
    o["visual_projection.weight"] = p["proj"].t().contiguous()
    o["text_model.embeddings.token_embedding.weight"] = torch.randn(16, 8, generator=gen).float()
    o["text_projection.weight"] = torch.randn(p["proj"].shape[1], 8, generator=gen).float()
    o["logit_scale"] = torch.tensor(4.6052)
    return o


class HFCLIPVision(nn.Module):
    """transformers' CLIPVisionTransformer + visual_projection (CLIPModel.get_image_features):
    [class_embedding, patches] + position_embedding, pre_layrnorm, CLIPEncoderLayers
    (layer_norm1 -> self_attn -> +res; layer_norm2 -> fc1 -> quick_gelu -> fc2 -> +res),
    post_layernorm on the class token, visual_projection."""

    def __init__(self, S, P, W, L, H, M, E, eps):
        super().__init__()
        self.vision_model = nn.Module()
        vm = self.vision_model
        vm.embeddings = nn.Module()
        vm.embeddings.class_embedding = nn.Parameter(torch.zeros(W))
        vm.embeddings.patch_embedding = nn.Conv2d(3, W, P, stride=P, bias=False)
        vm.embeddings.position_embedding = nn.Embedding((S // P) ** 2 + 1, W)
        vm.embeddings.register_buffer("position_ids",
                                      torch.arange((S // P) ** 2 + 1).reshape(1, -1))
        vm.pre_layrnorm = nn.LayerNorm(W, eps=eps)
        vm.encoder = nn.Module()
        vm.encoder.layers = nn.ModuleList()
        for _ in range(L):
            layer = nn.Module()
            layer.self_attn = nn.Module()
            for n in ("q_proj", "k_proj", "v_proj", "out_proj"):
                setattr(layer.self_attn, n, nn.Linear(W, W))
            layer.layer_norm1 = nn.LayerNorm(W, eps=eps)
            layer.layer_norm2 = nn.LayerNorm(W, eps=eps)
            layer.mlp = nn.Module()
            layer.mlp.fc1 = nn.Linear(W, M)
            layer.mlp.fc2 = nn.Linear(M, W)
            vm.encoder.layers.append(layer)
        vm.post_layernorm = nn.LayerNorm(W, eps=eps)
        self.visual_projection = nn.Linear(W, E, bias=False)
        self.heads = H

    def forward(self, images):
        vm = self.vision_model
        e = vm.embeddings.patch_embedding(images).flatten(2).transpose(1, 2)
        B, T = e.shape[0], e.shape[1] + 1
        x = torch.cat((vm.embeddings.class_embedding.expand(B, 1, -1), e), dim=1)
        x = vm.pre_layrnorm(x + vm.embeddings.position_embedding(vm.embeddings.position_ids))
        out = {}
        D = x.shape[-1] // self.heads
        for i, layer in enumerate(vm.encoder.layers):
            h = layer.layer_norm1(x)
            sa = layer.self_attn
            q, k, v = (proj(h).view(B, T, self.heads, D).transpose(1, 2)
                       for proj in (sa.q_proj, sa.k_proj, sa.v_proj))
            a = ((q * D ** -0.5) @ k.transpose(-1, -2)).softmax(dim=-1)
            out["attn.%d" % i] = a
            x = x + sa.out_proj((a @ v).transpose(1, 2).reshape(B, T, -1))
            x = x + layer.mlp.fc2(quick_gelu(layer.mlp.fc1(layer.layer_norm2(x))))
        out["tokens_final"] = vm.post_layernorm(x)       # vitlab's: post_layernorm on every token
        out["features"] = vm.post_layernorm(x[:, 0])     # pooler_output
        out["embedding"] = self.visual_projection(out["features"])   # get_image_features
        return out


def gen_hf_clip(outroot, folder, seed):
    P, S, W, L, H, M, E = 8, 24, 32, 2, 2, 128, 16
    gen = torch.Generator().manual_seed(seed)
    canon = make_canonical(gen, {"width": W, "depth": L, "mlp": M, "patch": P,
                                 "tokens_pos": (S // P) ** 2 + 1, "conv_bias": False,
                                 "norm_pre": True, "proj": E})
    quiet(canon, "cls_token", 0, 0.01)
    model = hf_clip_from_canonical(canon, gen)
    images = images_of(gen, 2, S)
    spec = {"patch": P, "heads": H, "eps": 1e-5, "pos_prefix": True, "act": "quick_gelu"}
    p64 = to64(canon)
    im64 = images.double()
    e = expected_of(p64, im64, spec, "openclip")
    check_attention(folder, e)
    f32_noise(folder, p64, im64, spec, "openclip", e)
    rep = load_strict(HFCLIPVision(S, P, W, L, H, M, E, 1e-5),
                      OrderedDict((k, v) for k, v in model.items()
                                  if k.startswith("vision_model.") or k == "visual_projection.weight"))
    with torch.no_grad():
        mine = rep(im64)
    mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)])[:, 0, 1:]
    compare(folder, "transformers CLIP vision tower replica (strict load), all outputs", mine, e)
    d = (expected_of(p64, im64, dict(spec, act="gelu"), "openclip")["embedding"] -
         e["embedding"]).abs().max().item()
    note(folder, "exact GELU instead of quick_gelu: embedding off by", d)
    conf = OrderedDict([
        ("architectures", ["CLIPModel"]), ("model_type", "clip"), ("projection_dim", E),
        ("logit_scale_init_value", 2.6592),
        ("text_config", OrderedDict([("hidden_size", 8), ("model_type", "clip_text_model")])),
        ("vision_config", OrderedDict([
            ("hidden_act", "quick_gelu"), ("hidden_size", W), ("image_size", S),
            ("intermediate_size", M), ("layer_norm_eps", 1e-5), ("model_type", "clip_vision_model"),
            ("num_attention_heads", H), ("num_channels", 3), ("num_hidden_layers", L),
            ("patch_size", P), ("projection_dim", E)]))])
    pre = OrderedDict([
        ("crop_size", OrderedDict([("height", S), ("width", S)])), ("do_center_crop", True),
        ("do_convert_rgb", True), ("do_normalize", True), ("do_rescale", True),
        ("do_resize", True), ("image_mean", [0.48145466, 0.4578275, 0.40821073]),
        ("image_processor_type", "CLIPImageProcessor"),
        ("image_std", [0.26862954, 0.26130258, 0.27577711]), ("resample", 3),
        ("rescale_factor", 0.00392156862745098), ("size", OrderedDict([("shortest_edge", S)]))])
    meta = {"family": "transformers CLIPModel (vision tower)", "layer_norm_eps": "1e-05",
            "features": "post_layernorm(x[:, 0]) (pooler_output); embedding = "
                        "visual_projection(features) (get_image_features); tokens_final = "
                        "post_layernorm over every token",
            "rollout": "CLS row of R, patch columns (T-1)"}
    return save(outroot, folder, model, images, e,
                {"config.json": (conf, False), "preprocessor_config.json": (pre, False)}, meta)


# ---------------------------------------------------------------------------
# 9. SigLIP vision towers: no class token, tanh GELU, MAP attention pooling
# ---------------------------------------------------------------------------

def add_map_pool(gen, p, W, M, latent_std):
    """Append timm's attn_pool.* tensors (AttentionPoolLatent) to p, drawn as make_canonical
    draws (matrices std clamp(fan_in**-0.5, 0.02, 0.3), biases 0.1, LayerNorm 1 + 0.1); the
    latent gets latent_std."""
    def mat(*shape, fan_in):
        std = min(0.3, max(0.02, fan_in ** -0.5))
        return torch.randn(*shape, generator=gen) * std

    def bias(n):
        return torch.randn(n, generator=gen) * 0.1

    a = OrderedDict()
    a["attn_pool.latent"] = torch.randn(1, 1, W, generator=gen) * latent_std
    a["attn_pool.q.weight"] = mat(W, W, fan_in=W)
    a["attn_pool.q.bias"] = bias(W)
    a["attn_pool.kv.weight"] = mat(2 * W, W, fan_in=W)
    a["attn_pool.kv.bias"] = bias(2 * W)
    a["attn_pool.proj.weight"] = mat(W, W, fan_in=W)
    a["attn_pool.proj.bias"] = bias(W)
    a["attn_pool.norm.weight"] = 1.0 + 0.1 * torch.randn(W, generator=gen)
    a["attn_pool.norm.bias"] = bias(W)
    a["attn_pool.mlp.fc1.weight"] = mat(M, W, fan_in=W)
    a["attn_pool.mlp.fc1.bias"] = bias(M)
    a["attn_pool.mlp.fc2.weight"] = mat(W, M, fan_in=M)
    a["attn_pool.mlp.fc2.bias"] = bias(W)
    for k, v in a.items():
        p[k] = v.to(torch.float32).contiguous()


SIGLIP_LATENT_STD = 3.0


def siglip_canonical(gen, S, W, L, M, K):
    """A SigLIP image tower in timm's names: no prefix token, pos_embed over the patches, the
    embedding quieted by 0.05 as fam-timm-gap's (so eps matters), then the MAP pool."""
    P = 8
    p = make_canonical(gen, {"width": W, "depth": L, "mlp": M, "patch": P,
                             "tokens_pos": (S // P) ** 2, "cls": False, "head": K})
    for n in ("patch_embed.proj.weight", "patch_embed.proj.bias", "pos_embed"):
        p[n] = p[n] * 0.05
    add_map_pool(gen, p, W, M, SIGLIP_LATENT_STD)
    return p


def siglip_spec(H):
    return {"patch": 8, "heads": H, "eps": 1e-6, "pos_prefix": True, "act": "gelu_tanh"}


def check_map(folder, e):
    """The pool's softmax is neither uniform nor one-hot, and its MLP branch matters."""
    a = e["attn_pool.attn"]
    N = a.shape[-1]
    peaks = a.max(dim=-1).values
    lo, hi = peaks.min().item(), peaks.max().item()
    print("  %-20s attn_pool row peaks %.2f .. %.2f (uniform: %.2f)" % (folder, lo, hi, 1.0 / N))
    assert lo > 1.5 / N and hi < 0.95, "pool attention is uniform or one-hot"


def siglip_notes(folder, p64, im64, spec, e):
    """What a loader gets wrong if it misses a feature of the family."""
    key = "logits" if "logits" in e else "features"
    no_mlp = dict(p64)
    for n in ("attn_pool.mlp.fc2.weight", "attn_pool.mlp.fc2.bias"):
        no_mlp[n] = torch.zeros_like(p64[n])
    d = (expected_of(no_mlp, im64, spec, "map")["features"] - e["features"]).abs().max().item()
    note(folder, "MAP pool without its MLP branch: features off by", d)
    d = (e["tokens_final"].mean(dim=1) - e["features"]).abs().max().item()
    note(folder, "mean of tokens_final instead of the MAP pool: features off by", d)
    d = (expected_of(p64, im64, dict(spec, act="gelu"), "map")[key] - e[key]).abs().max().item()
    note(folder, "exact GELU instead of tanh: %s off by" % key, d)
    d = (expected_of(p64, im64, dict(spec, heads=1), "map")[key] - e[key]).abs().max().item()
    note(folder, "1 head instead of %d (blocks and pool): %s off by" % (spec["heads"], key), d)
    eps_sensitivity(folder, p64, im64, spec, "map", e, 1e-5)


SIGLIP_META = {"layer_norm_eps": "1e-06",
               "rollout": "mean over the patch query rows of R (no CLS)",
               "attn_pool.attn": "the MAP pool's softmax probabilities [B,H,1,N] (its latent "
                                 "query over the N normed tokens)"}


def siglip_grad_names(L):
    return ["attn_pool.latent"] + ["attn_pool.%s.%s" % (m, s) for m in
                                   ("q", "kv", "proj", "norm", "mlp.fc1", "mlp.fc2")
                                   for s in ("weight", "bias")] + \
        ["norm.weight", "norm.bias", "blocks.%d.mlp.fc2.weight" % (L - 1)]


def gen_timm_siglip(outroot, folder, seed):
    S, P, W, L, H, M, K = 24, 8, 32, 2, 4, 96, 4
    gen = torch.Generator().manual_seed(seed)
    model = siglip_canonical(gen, S, W, L, M, K)
    images = images_of(gen, 2, S)
    dfeat = torch.randn(2, W, generator=gen).float()
    extra = OrderedDict([("class_token", False), ("global_pool", "map"),
                         ("act_layer", "gelu_tanh")])
    conf = timm_conf("vit_custom_siglip", S, W, L, H, M / W, K, "map", extra,
                     [0.5] * 3, [0.5] * 3)
    spec = siglip_spec(H)
    p64 = to64(model)
    im64 = images.double()
    e = expected_of(p64, im64, spec, "map")
    check_attention(folder, e)
    check_map(folder, e)
    f32_noise(folder, p64, im64, spec, "map", e)
    # timm's global_pool='avg' on this model (reset_classifier / forward_head(pool_type='avg')):
    # the final norm stays, there is no fc_norm; the mean covers every token (no prefix).
    e["features_avg"] = e["tokens_final"].mean(dim=1)
    e["logits_avg"] = linear(p64, "head", e["features_avg"])

    # The gradients, by autograd in float64 on the replica: loss = sum(features * dfeatures).
    gnames = siglip_grad_names(L)
    d64 = dfeat.double()
    rep = load_strict(TimmVisionTransformer(conf["model_args"]), model)
    rep.zero_grad()
    out = rep(im64)
    out["tokens_final"].retain_grad()
    (out["features"] * d64).sum().backward()
    prm = dict(rep.named_parameters())
    assert sorted(n for n in prm if n.startswith("attn_pool.")) == sorted(gnames[:13])
    e["dfeatures"] = d64
    for n in gnames:
        e["grad." + n] = prm[n].grad.detach().clone()
    e["dtokens_final"] = out["tokens_final"].grad.detach().clone()

    mine = {k: v.detach() for k, v in out.items()}
    mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)]).mean(dim=1)
    mine["features_avg"] = mine["tokens_final"].mean(dim=1)
    with torch.no_grad():
        mine["logits_avg"] = rep.head(mine["features_avg"])
    compare(folder, "timm module replica (strict load, AttentionPoolLatent), forward", mine, e)
    # The gradients again, by autograd through the functional reference ...
    ref = OrderedDict((k, v.clone().requires_grad_(k in gnames)) for k, v in p64.items())
    x, _, _ = ref_forward(ref, im64, spec)
    x.retain_grad()
    feat, _ = map_pool(ref, x, spec)
    (feat * d64).sum().backward()
    mine = {"grad." + n: ref[n].grad for n in gnames}
    mine["dtokens_final"] = x.grad
    compare(folder, "autograd through the functional reference: grad.*, dtokens_final", mine, e)
    # ... and by central differences of the pool (dtokens_final, grad.attn_pool.latent).
    h = 1e-6
    with torch.no_grad():
        def loss_at(name, idx, dx):
            if name == "tokens":
                t = e["tokens_final"].clone()
                t.view(-1)[idx] += dx
                return (map_pool(p64, t, spec)[0] * d64).sum().item()
            q = dict(p64)
            q[name] = p64[name].clone()
            q[name].view(-1)[idx] += dx
            return (map_pool(q, e["tokens_final"], spec)[0] * d64).sum().item()
        fd_tok = torch.tensor([(loss_at("tokens", i, h) - loss_at("tokens", i, -h)) / (2 * h)
                               for i in range(e["tokens_final"].numel())],
                              dtype=torch.float64).reshape(e["tokens_final"].shape)
        fd_lat = torch.tensor([(loss_at("attn_pool.latent", i, h) -
                                loss_at("attn_pool.latent", i, -h)) / (2 * h) for i in range(W)],
                              dtype=torch.float64).reshape(1, 1, W)
    compare(folder, "central differences of the pool: dtokens_final, grad.attn_pool.latent",
            {"dtokens_final": fd_tok, "grad.attn_pool.latent": fd_lat}, e)
    # What a float32 engine should expect for the gradients.
    ref = OrderedDict((k, v.float().requires_grad_(k in gnames)) for k, v in p64.items())
    x, _, _ = ref_forward(ref, im64.float(), spec)
    x.retain_grad()
    feat, _ = map_pool(ref, x, spec)
    (feat * dfeat).sum().backward()
    g32 = {"grad." + n: ref[n].grad for n in gnames}
    g32["dtokens_final"] = x.grad
    worst = max((g32[k].double() - f32(e[k]).double()).abs().max().item() for k in g32)
    note(folder, "(gradients in float32: max abs over grad.*, dtokens_final)", worst)
    gmax = max(e[k].abs().max().item() for k in g32)
    print("  %-20s %-62s %.3g" % ("", "(largest gradient entry)", gmax))
    siglip_notes(folder, p64, im64, spec, e)
    d = (e["features_avg"] - e["features"]).abs().max().item()
    note(folder, "features_avg vs the MAP features: off by", d)

    meta = dict(SIGLIP_META,
                family="timm vit_custom_siglip (class_token False, global_pool map, gelu_tanh)",
                features="attn_pool(norm(x)) (AttentionPoolLatent: latent query, q, kv, proj, "
                         "then + mlp(norm(.)), token 0); logits = head(features); features_avg "
                         "= mean of norm(x) over all tokens (global_pool avg: no fc_norm), "
                         "logits_avg = head(features_avg)",
                gradients="loss = sum(features * dfeatures); grad.NAME = d loss / d NAME (every "
                          "attn_pool.*, norm.*, blocks.%d.mlp.fc2.weight); dtokens_final = "
                          "d loss / d tokens_final" % (L - 1))
    return save(outroot, folder, model, images, e, {"config.json": (conf, False)}, meta)


def hf_siglip_from_canonical(p, gen):
    """SiglipModel's state dict: the vision tower under vision_model. (no class token,
    position_embedding an nn.Embedding [N, W], q/k/v/out projections, layer_norm1/2, mlp.fc1/2,
    post_layernorm, head = SiglipMultiheadAttentionPoolingHead: probe, an nn.MultiheadAttention
    (in_proj_weight rows q, k, v), layernorm, mlp), and text-tower tensors beside it."""
    o = OrderedDict()
    W = p["pos_embed"].shape[-1]
    v = "vision_model."
    for s in ("weight", "bias"):
        o[v + "embeddings.patch_embedding." + s] = p["patch_embed.proj." + s]
    o[v + "embeddings.position_embedding.weight"] = p["pos_embed"][0]
    for i in range(blocks_of(p)):
        L, b = v + "encoder.layers.%d." % i, "blocks.%d." % i
        for s in ("weight", "bias"):
            qkv = p[b + "attn.qkv." + s]
            for j, n in enumerate(("q_proj", "k_proj", "v_proj")):
                o[L + "self_attn.%s.%s" % (n, s)] = qkv[j * W:(j + 1) * W].contiguous()
            o[L + "self_attn.out_proj." + s] = p[b + "attn.proj." + s]
            o[L + "layer_norm1." + s] = p[b + "norm1." + s]
            o[L + "layer_norm2." + s] = p[b + "norm2." + s]
            o[L + "mlp.fc1." + s] = p[b + "mlp.fc1." + s]
            o[L + "mlp.fc2." + s] = p[b + "mlp.fc2." + s]
    h = v + "head."
    for s in ("weight", "bias"):
        o[v + "post_layernorm." + s] = p["norm." + s]
    o[h + "probe"] = p["attn_pool.latent"]
    o[h + "attention.in_proj_weight"] = torch.cat([p["attn_pool.q.weight"],
                                                   p["attn_pool.kv.weight"]]).contiguous()
    o[h + "attention.in_proj_bias"] = torch.cat([p["attn_pool.q.bias"],
                                                 p["attn_pool.kv.bias"]]).contiguous()
    for s in ("weight", "bias"):
        o[h + "attention.out_proj." + s] = p["attn_pool.proj." + s]
        o[h + "layernorm." + s] = p["attn_pool.norm." + s]
        o[h + "mlp.fc1." + s] = p["attn_pool.mlp.fc1." + s]
        o[h + "mlp.fc2." + s] = p["attn_pool.mlp.fc2." + s]
    o["text_model.embeddings.token_embedding.weight"] = \
        (torch.randn(16, 8, generator=gen) * 0.02).float()
    o["logit_scale"] = torch.tensor([2.3026])                # log(10), shape [1] as SigLIP's
    o["logit_bias"] = torch.tensor([-10.0])
    return o


def hf_siglip_to_canonical(o):
    p = OrderedDict()
    v = "vision_model."
    W = o[v + "post_layernorm.weight"].shape[0]
    for s in ("weight", "bias"):
        p["patch_embed.proj." + s] = o[v + "embeddings.patch_embedding." + s]
    p["pos_embed"] = o[v + "embeddings.position_embedding.weight"].unsqueeze(0)
    i = 0
    while v + "encoder.layers.%d.layer_norm1.weight" % i in o:
        L, b = v + "encoder.layers.%d." % i, "blocks.%d." % i
        for s in ("weight", "bias"):
            p[b + "norm1." + s] = o[L + "layer_norm1." + s]
            p[b + "attn.qkv." + s] = torch.cat(
                [o[L + "self_attn.%s.%s" % (n, s)] for n in ("q_proj", "k_proj", "v_proj")])
            p[b + "attn.proj." + s] = o[L + "self_attn.out_proj." + s]
            p[b + "norm2." + s] = o[L + "layer_norm2." + s]
            p[b + "mlp.fc1." + s] = o[L + "mlp.fc1." + s]
            p[b + "mlp.fc2." + s] = o[L + "mlp.fc2." + s]
        i += 1
    h = v + "head."
    for s in ("weight", "bias"):
        p["norm." + s] = o[v + "post_layernorm." + s]
    p["attn_pool.latent"] = o[h + "probe"]
    ipw, ipb = o[h + "attention.in_proj_weight"], o[h + "attention.in_proj_bias"]
    p["attn_pool.q.weight"], p["attn_pool.kv.weight"] = ipw[:W], ipw[W:]
    p["attn_pool.q.bias"], p["attn_pool.kv.bias"] = ipb[:W], ipb[W:]
    for s in ("weight", "bias"):
        p["attn_pool.proj." + s] = o[h + "attention.out_proj." + s]
        p["attn_pool.norm." + s] = o[h + "layernorm." + s]
        p["attn_pool.mlp.fc1." + s] = o[h + "mlp.fc1." + s]
        p["attn_pool.mlp.fc2." + s] = o[h + "mlp.fc2." + s]
    return p


class HFSiglipVision(nn.Module):
    """transformers' SiglipVisionModel (SiglipVisionTransformer, vision_use_head True):
    patch_embedding (Conv2d with bias, padding 'valid') + position_embedding(position_ids) (no
    class token), SiglipEncoderLayers (layer_norm1 -> self_attn (eager: softmax(q k^T * scale))
    -> +res; layer_norm2 -> fc1 -> gelu_pytorch_tanh -> fc2 -> +res), post_layernorm on every
    token (last_hidden_state), then SiglipMultiheadAttentionPoolingHead (pooler_output)."""

    def __init__(self, c):
        super().__init__()
        W, P, S = c["hidden_size"], c["patch_size"], c["image_size"]
        M, eps, N = c["intermediate_size"], c["layer_norm_eps"], (S // P) ** 2
        self.heads = c["num_attention_heads"]
        self.vision_model = nn.Module()
        vm = self.vision_model
        vm.embeddings = nn.Module()
        vm.embeddings.patch_embedding = nn.Conv2d(c["num_channels"], W, P, stride=P)
        vm.embeddings.position_embedding = nn.Embedding(N, W)
        vm.embeddings.register_buffer("position_ids", torch.arange(N).expand((1, -1)),
                                      persistent=False)
        vm.encoder = nn.Module()
        vm.encoder.layers = nn.ModuleList()
        for _ in range(c["num_hidden_layers"]):
            layer = nn.Module()
            layer.self_attn = nn.Module()
            for n in ("k_proj", "v_proj", "q_proj", "out_proj"):
                setattr(layer.self_attn, n, nn.Linear(W, W))
            layer.layer_norm1 = nn.LayerNorm(W, eps=eps)
            layer.mlp = nn.Module()
            layer.mlp.fc1 = nn.Linear(W, M)
            layer.mlp.fc2 = nn.Linear(M, W)
            layer.layer_norm2 = nn.LayerNorm(W, eps=eps)
            vm.encoder.layers.append(layer)
        vm.post_layernorm = nn.LayerNorm(W, eps=eps)
        vm.head = nn.Module()
        vm.head.probe = nn.Parameter(torch.zeros(1, 1, W))
        vm.head.attention = nn.MultiheadAttention(W, self.heads, batch_first=True)
        vm.head.layernorm = nn.LayerNorm(W, eps=eps)
        vm.head.mlp = nn.Module()
        vm.head.mlp.fc1 = nn.Linear(W, M)
        vm.head.mlp.fc2 = nn.Linear(M, W)

    def forward(self, pixel_values):
        vm = self.vision_model
        emb = vm.embeddings
        x = emb.patch_embedding(pixel_values).flatten(2).transpose(1, 2)
        x = x + emb.position_embedding(emb.position_ids)
        B, T, W = x.shape
        D = W // self.heads
        out = {}
        for i, layer in enumerate(vm.encoder.layers):
            h = layer.layer_norm1(x)
            sa = layer.self_attn
            q, k, v = (proj(h).view(B, T, self.heads, D).transpose(1, 2)
                       for proj in (sa.q_proj, sa.k_proj, sa.v_proj))
            a = F.softmax(torch.matmul(q, k.transpose(2, 3)) * D ** -0.5, dim=-1)
            out["attn.%d" % i] = a
            x = x + sa.out_proj(torch.matmul(a, v).transpose(1, 2).reshape(B, T, W))
            h = layer.mlp.fc2(F.gelu(layer.mlp.fc1(layer.layer_norm2(x)), approximate="tanh"))
            x = x + h
        x = vm.post_layernorm(x)
        out["tokens_final"] = x
        hd = vm.head
        probe = hd.probe.repeat(B, 1, 1)
        y, out["attn_pool.attn"] = hd.attention(probe, x, x, need_weights=True,
                                                average_attn_weights=False)
        residual = y
        y = hd.layernorm(y)
        y = residual + hd.mlp.fc2(F.gelu(hd.mlp.fc1(y), approximate="tanh"))
        out["features"] = y[:, 0]
        return out


def gen_hf_siglip(outroot, folder, seed):
    S, P, W, L, H, M = 32, 8, 36, 2, 3, 72
    gen = torch.Generator().manual_seed(seed)
    canon = siglip_canonical(gen, S, W, L, M, 0)
    model = hf_siglip_from_canonical(canon, gen)
    check_roundtrip(canon, hf_siglip_to_canonical(model))
    images = images_of(gen, 2, S)
    spec = siglip_spec(H)
    p64 = to64(hf_siglip_to_canonical(model))
    im64 = images.double()
    e = expected_of(p64, im64, spec, "map")
    check_attention(folder, e)
    check_map(folder, e)
    f32_noise(folder, p64, im64, spec, "map", e)
    vc = OrderedDict([
        ("hidden_act", "gelu_pytorch_tanh"), ("hidden_size", W), ("image_size", S),
        ("intermediate_size", M), ("layer_norm_eps", 1e-6), ("model_type", "siglip_vision_model"),
        ("num_attention_heads", H), ("num_channels", 3), ("num_hidden_layers", L),
        ("patch_size", P)])
    rep = load_strict(HFSiglipVision(vc), OrderedDict((k, v) for k, v in model.items()
                                                      if k.startswith("vision_model.")))
    with torch.no_grad():
        mine = rep(im64)
    mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)]).mean(dim=1)
    compare(folder, "transformers SiglipVisionModel replica (strict load, torch MHA head), all "
            "outputs", mine, e)
    siglip_notes(folder, p64, im64, spec, e)
    conf = OrderedDict([
        ("architectures", ["SiglipModel"]), ("initializer_factor", 1.0), ("model_type", "siglip"),
        ("text_config", OrderedDict([("hidden_size", 8), ("model_type", "siglip_text_model"),
                                     ("vocab_size", 16)])),
        ("torch_dtype", "float32"), ("transformers_version", "4.46.3"),
        ("vision_config", vc)])
    pre = OrderedDict([
        ("do_normalize", True), ("do_rescale", True), ("do_resize", True),
        ("image_mean", [0.5, 0.5, 0.5]), ("image_processor_type", "SiglipImageProcessor"),
        ("image_std", [0.5, 0.5, 0.5]), ("processor_class", "SiglipProcessor"), ("resample", 3),
        ("rescale_factor", 0.00392156862745098),
        ("size", OrderedDict([("height", S), ("width", S)]))])
    meta = dict(SIGLIP_META, family="transformers SiglipModel (vision tower: SiglipVisionModel)",
                features="head(post_layernorm(x)) (SiglipMultiheadAttentionPoolingHead: "
                         "MHA(probe, x, x), then + mlp(layernorm(.)), token 0: pooler_output); "
                         "tokens_final = post_layernorm(x) (last_hidden_state)")
    return save(outroot, folder, model, images, e,
                {"config.json": (conf, False), "preprocessor_config.json": (pre, False)}, meta)


def timm_load_bv(j, prefix, depth):
    """timm's _load_weights (vision_transformer.py) on a big_vision image tower with a MAPHead
    and unstacked blocks, as a state dict of timm's names (its _n2p transposes)."""
    import numpy as np

    def n2p(name, t=True):
        w = j[prefix + name]
        if t:
            w = w.transpose({4: [3, 2, 0, 1], 3: [2, 0, 1], 2: [1, 0]}[w.ndim]) if w.ndim > 1 else w
        return torch.from_numpy(np.ascontiguousarray(w))

    sd = OrderedDict()
    sd["patch_embed.proj.weight"] = n2p("embedding/kernel")
    sd["patch_embed.proj.bias"] = n2p("embedding/bias")
    sd["pos_embed"] = n2p("pos_embedding", t=False)
    sd["norm.weight"] = n2p("Transformer/encoder_norm/scale")
    sd["norm.bias"] = n2p("Transformer/encoder_norm/bias")
    m = "MAPHead_0/"
    a = m + "MultiHeadDotProductAttention_0/"
    sd["attn_pool.latent"] = n2p(m + "probe", t=False)
    sd["attn_pool.kv.weight"] = torch.cat([n2p(a + n + "/kernel", t=False).flatten(1).T
                                           for n in ("key", "value")])
    sd["attn_pool.kv.bias"] = torch.cat([n2p(a + n + "/bias", t=False).reshape(-1)
                                         for n in ("key", "value")])
    sd["attn_pool.q.weight"] = n2p(a + "query/kernel", t=False).flatten(1).T
    sd["attn_pool.q.bias"] = n2p(a + "query/bias", t=False).reshape(-1)
    sd["attn_pool.proj.weight"] = n2p(a + "out/kernel").flatten(1)
    sd["attn_pool.proj.bias"] = n2p(a + "out/bias")
    sd["attn_pool.norm.weight"] = n2p(m + "LayerNorm_0/scale")
    sd["attn_pool.norm.bias"] = n2p(m + "LayerNorm_0/bias")
    for r in range(2):
        sd["attn_pool.mlp.fc%d.weight" % (r + 1)] = n2p(m + "MlpBlock_0/Dense_%d/kernel" % r)
        sd["attn_pool.mlp.fc%d.bias" % (r + 1)] = n2p(m + "MlpBlock_0/Dense_%d/bias" % r)
    for i in range(depth):
        bp, b = "Transformer/encoderblock_%d/" % i, "blocks.%d." % i
        mp = bp + "MultiHeadDotProductAttention_0/"
        sd[b + "norm1.weight"] = n2p(bp + "LayerNorm_0/scale")
        sd[b + "norm1.bias"] = n2p(bp + "LayerNorm_0/bias")
        sd[b + "attn.qkv.weight"] = torch.cat([n2p(mp + n + "/kernel", t=False).flatten(1).T
                                               for n in ("query", "key", "value")])
        sd[b + "attn.qkv.bias"] = torch.cat([n2p(mp + n + "/bias", t=False).reshape(-1)
                                             for n in ("query", "key", "value")])
        sd[b + "attn.proj.weight"] = n2p(mp + "out/kernel").flatten(1)
        sd[b + "attn.proj.bias"] = n2p(mp + "out/bias")
        sd[b + "norm2.weight"] = n2p(bp + "LayerNorm_1/scale")
        sd[b + "norm2.bias"] = n2p(bp + "LayerNorm_1/bias")
        for r in range(2):
            sd[b + "mlp.fc%d.weight" % (r + 1)] = n2p(bp + "MlpBlock_0/Dense_%d/kernel" % r)
            sd[b + "mlp.fc%d.bias" % (r + 1)] = n2p(bp + "MlpBlock_0/Dense_%d/bias" % r)
    return sd


def gen_jax_siglip(outroot, folder, seed):
    import numpy as np
    S, P, W, L, H, M = 24, 8, 40, 2, 2, 80
    prefix = "params/img/"
    gen = torch.Generator().manual_seed(seed)
    model = siglip_canonical(gen, S, W, L, M, 0)
    images = images_of(gen, 2, S)
    spec = siglip_spec(H)
    p64 = to64(model)
    im64 = images.double()
    e = expected_of(p64, im64, spec, "map")
    check_attention(folder, e)
    check_map(folder, e)
    f32_noise(folder, p64, im64, spec, "map", e)

    arrays = jax_from_canonical(model, H, "big_vision", False, prefix, no_head=True)
    arrays = OrderedDict((k, v.astype(np.float32)) for k, v in arrays.items())
    a64 = {k: v.astype(np.float64) for k, v in arrays.items()}
    mine = flax_forward(a64, prefix, "big_vision", im64.numpy(), "map", act="gelu_tanh")
    keys = ["tokens_final", "features", "attn_pool.attn"] + ["attn.%d" % i for i in range(L)]
    compare(folder, "Flax ViT + MAPHead forward from the .npz arrays (numpy), all outputs",
            mine, e, keys)
    sd = timm_load_bv(a64, prefix, L)
    sd["head.weight"], sd["head.bias"] = torch.zeros(0, W), torch.zeros(0)
    ma = OrderedDict([("img_size", S), ("patch_size", P), ("embed_dim", W), ("depth", L),
                      ("num_heads", H), ("mlp_ratio", M / W), ("num_classes", 0),
                      ("class_token", False), ("global_pool", "map"), ("act_layer", "gelu_tanh")])
    rep = load_strict(TimmVisionTransformer(ma), sd)
    with torch.no_grad():
        mine = rep(im64)
    mine["rollout"] = rollout_matrix([mine["attn.%d" % i] for i in range(L)]).mean(dim=1)
    compare(folder, "timm's _load_weights on the .npz into the timm replica (strict), all outputs",
            mine, e, [k for k in e])
    siglip_notes(folder, p64, im64, spec, e)
    # the text tower and the two-tower scalars, which a loader leaves out
    arrays["params/txt/Embed_0/embedding"] = (torch.randn(16, 8, generator=gen) * 0.02).numpy()
    arrays["params/txt/head/kernel"] = (torch.randn(8, W, generator=gen) * 0.3).numpy()
    arrays["params/t"] = np.array([2.3026], np.float32)
    arrays["params/b"] = np.array([-10.0], np.float32)
    d = os.path.join(outroot, folder)
    os.makedirs(d, exist_ok=True)
    write_npz(os.path.join(d, "model.npz"), arrays, compressed=False)
    st_write(os.path.join(d, "inputs.safetensors"), {"images": images})
    meta = dict(SIGLIP_META, family="jax (big_vision two-tower SigLIP, image tower params/img/, "
                                    "MAPHead_0)",
                features="MAPHead_0(encoder_norm(x)): probe attends to every token "
                         "(MultiHeadDotProductAttention_0), then + MlpBlock_0(LayerNorm_0(.)), "
                         "token 0; GELU is Flax's tanh approximation everywhere")
    st_write(os.path.join(d, "expected.safetensors"),
             OrderedDict((k, f32(v)) for k, v in e.items()), meta)
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    assert size < MAX_FOLDER_BYTES, "%s is %d bytes" % (folder, size)
    return size


def fuzz_seeds(outdir):
    """fuzz-npz's seeds: a ViT of width 4 (2 heads, 1 block, 2 px patches on 4 px) as an AugReg
    and as a big_vision (stacked blocks, no class token) .npz, and a SigLIP image tower
    (params/img/, a MAPHead_0), each a list of "NAME\n" + the bytes of NAME.npy records
    separated by "#NPY#" (the harness's input)."""
    import io
    import numpy as np
    os.makedirs(outdir, exist_ok=True)
    for name, layout, scan, prefix, cls in (("augreg-w4", "augreg", False, "", True),
                                            ("big-vision-w4", "big_vision", True, "params/",
                                             False),
                                            ("siglip-w4", "big_vision", False, "params/img/",
                                             False)):
        gen = torch.Generator().manual_seed(7)
        siglip = name == "siglip-w4"
        model = make_canonical(gen, {"width": 4, "depth": 1, "mlp": 8, "patch": 2, "cls": cls,
                                     "tokens_pos": 4 + (1 if cls else 0),
                                     "head": 0 if siglip else 2})
        if siglip:      # SigLIP's image tower: a MAPHead, no classifier
            add_map_pool(gen, model, 4, 8, 1.0)
        arrays = jax_from_canonical(model, 2, layout, scan, prefix, no_head=siglip)
        records = []
        for k, v in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, v.astype(np.float32), allow_pickle=False)
            records.append(k.encode() + b"\n" + buf.getvalue())
        with open(os.path.join(outdir, name), "wb") as f:
            f.write(b"#NPY#".join(records))


# ---------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", default=HERE, help="where the fam-* folders go")
    ap.add_argument("--fuzz-seeds", metavar="DIR",
                    help="write only the seeds of tests/fuzz/fuzz-npz.c into DIR")
    args = ap.parse_args()
    if args.fuzz_seeds:
        fuzz_seeds(args.fuzz_seeds)
        return
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)

    sizes = OrderedDict()
    print("fam-openclip")
    sizes["fam-openclip"] = gen_openclip(args.out, "fam-openclip", 2001, S=32, W=32, L=2,
                                         head_width=16, E=24, quick=True, full_dict=True)
    print("fam-openclip-gelu")
    sizes["fam-openclip-gelu"] = gen_openclip(args.out, "fam-openclip-gelu", 2002, S=24, W=40,
                                              L=2, head_width=10, E=16, quick=False,
                                              full_dict=False)
    print("fam-hf-vit")
    sizes["fam-hf-vit"] = gen_hf(args.out, "fam-hf-vit", 2003, S=32, W=32, L=3, H=4, I=128,
                                 eps=1e-12, classes=5, alt_eps=1e-6)
    print("fam-hf-dino")
    sizes["fam-hf-dino"] = gen_hf(args.out, "fam-hf-dino", 2004, S=24, W=48, L=2, H=3, I=96,
                                  eps=1e-6, classes=0, alt_eps=1e-12)
    print("fam-torchvision")
    sizes["fam-torchvision"] = gen_torchvision(args.out, "fam-torchvision", 2005)
    for folder, seed, kind in (("fam-timm-reg-ls", 2006, "reg-ls"), ("fam-timm-gap", 2007, "gap"),
                               ("fam-deit-dist", 2008, "deit-dist")):
        print(folder)
        sizes[folder] = gen_timm(args.out, folder, seed, kind)
    for folder, seed, kind in (("fam-jax-augreg", 2009, "augreg"), ("fam-jax-bv-gap", 2010, "bv-gap"),
                               ("fam-jax-bv-tok", 2011, "bv-tok")):
        print(folder)
        sizes[folder] = gen_jax(args.out, folder, seed, kind)
    print("fam-hf-clip")
    sizes["fam-hf-clip"] = gen_hf_clip(args.out, "fam-hf-clip", 2016)
    print("fam-hf-deit")
    sizes["fam-hf-deit"] = gen_hf_deit(args.out, "fam-hf-deit", 2015)
    for folder, seed, kind in (("fam-hf-dinov2", 2012, "hf"), ("fam-dinov2-meta", 2013, "meta"),
                               ("fam-dinov2-meta-reg", 2014, "meta-reg"),
                               ("fam-hf-dinov2-reg", 2020, "hf-reg")):
        print(folder)
        sizes[folder] = gen_dinov2(args.out, folder, seed, kind)
    for folder, seed, fn in (("fam-timm-siglip", 2017, gen_timm_siglip),
                             ("fam-hf-siglip", 2018, gen_hf_siglip),
                             ("fam-jax-siglip", 2019, gen_jax_siglip)):
        print(folder)
        sizes[folder] = fn(args.out, folder, seed)
    print()
    for k, v in sizes.items():
        print("%-20s %8d bytes" % (k, v))


if __name__ == "__main__":
    main()

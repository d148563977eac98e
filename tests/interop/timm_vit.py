"""A stand-in for timm's VisionTransformer / VisionTransformerDistilled, for the interop check.

timm cannot be installed here (Debian packages only), so this module rebuilds the parts of
timm/models/vision_transformer.py and timm/models/deit.py that a plain ViT checkpoint touches:
the same module tree, so the same state_dict names and shapes; the same constructor keywords
(an argument timm's VisionTransformer does not take is a TypeError here too); the same forward
(`_pos_embed`, `norm_pre`, blocks, `norm`, `pool`, `fc_norm`, `head`); and the same path from a
Hugging Face style config.json to a model (`hf-hub:` / `local-dir:` loading in timm:
config.json's `architecture` picks the entry point, `model_args` become keyword arguments,
`pretrained_cfg` becomes the model's pretrained_cfg, then `load_state_dict(strict=True)`).

Only what a plain ViT uses is implemented, and SigLIP's attention pooling (global_pool='map',
AttentionPoolLatent). Keywords timm accepts for other variants (qk-norm, dynamic image size,
dropout, ...) are accepted with their defaults and raise NotImplementedError otherwise, so a
config that needs them is reported instead of mis-modelled.

Reads safetensors files without the safetensors package (8-byte little-endian header length,
JSON header, raw little-endian data).
"""
import dataclasses
import json
import struct
from functools import partial
from typing import Any, Dict

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# ----------------------------------------------------------------------------- safetensors

_ST_DTYPES = {
    "F64": np.float64, "F32": np.float32, "F16": np.float16,
    "I64": np.int64, "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8,
    "BOOL": np.bool_,
}


def read_safetensors(path):
    """Returns ({name: numpy array}, metadata dict). BF16 is widened to float32."""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + n].decode("utf-8"))
    base = 8 + n
    meta = header.pop("__metadata__", {}) or {}
    out = {}
    for name, info in header.items():
        start, end = info["data_offsets"]
        raw = data[base + start:base + end]
        shape = tuple(info["shape"])
        dt = info["dtype"]
        if dt == "BF16":
            u16 = np.frombuffer(raw, dtype="<u2").astype(np.uint32)
            arr = (u16 << 16).view(np.float32)
        elif dt in _ST_DTYPES:
            arr = np.frombuffer(raw, dtype=np.dtype(_ST_DTYPES[dt]).newbyteorder("<"))
        else:
            raise ValueError(f"{path}: tensor {name}: unsupported dtype {dt}")
        out[name] = arr.reshape(shape).copy()
    return out, meta


def load_state_dict_file(path):
    tensors, _ = read_safetensors(path)
    return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in tensors.items()}


# ----------------------------------------------------------------------------- layers

class QuickGELU(nn.Module):
    """timm.layers.activations.QuickGELU: x * sigmoid(1.702 x) (OpenAI CLIP)."""

    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class GELU(nn.Module):
    """timm.layers.activations.GELU: exact (erf) GELU."""

    def forward(self, x):
        return F.gelu(x)


class GELUTanh(nn.Module):
    def forward(self, x):
        return F.gelu(x, approximate="tanh")


# timm.layers.create_act: the names get_act_layer knows that a ViT would plausibly use
_ACT_LAYERS = dict(
    gelu=GELU, gelu_tanh=GELUTanh, quick_gelu=QuickGELU,
    relu=nn.ReLU, silu=nn.SiLU, swish=nn.SiLU, tanh=nn.Tanh, sigmoid=nn.Sigmoid, identity=nn.Identity,
)


def get_act_layer(name):
    if name is None:
        return None
    if isinstance(name, str):
        if name not in _ACT_LAYERS:
            raise ValueError(f"timm get_act_layer: unknown activation {name!r}")
        return _ACT_LAYERS[name]
    return name


class LayerNorm(nn.LayerNorm):
    """timm.layers.norm.LayerNorm: nn.LayerNorm whose default eps is 1e-6."""

    def __init__(self, num_channels, eps=1e-6, affine=True):
        super().__init__(num_channels, eps=eps, elementwise_affine=affine)


_NORM_LAYERS = dict(layernorm=LayerNorm)


def get_norm_layer(norm_layer):
    if norm_layer is None:
        return None
    if isinstance(norm_layer, str):
        key = norm_layer.replace("_", "").lower()
        if key not in _NORM_LAYERS:
            raise ValueError(f"timm get_norm_layer: unknown norm layer {norm_layer!r}")
        return _NORM_LAYERS[key]
    return norm_layer


def _to_2tuple(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


class PatchEmbed(nn.Module):
    """timm.layers.PatchEmbed with its defaults (flatten, NCHW in, NLC out, strict image size)."""

    def __init__(self, img_size=224, patch_size=16, in_chans=3, embed_dim=768, bias=True,
                 dynamic_img_pad=False):
        super().__init__()
        if dynamic_img_pad:
            raise NotImplementedError("dynamic_img_pad")
        self.img_size = _to_2tuple(img_size)
        self.patch_size = _to_2tuple(patch_size)
        self.grid_size = tuple(s // p for s, p in zip(self.img_size, self.patch_size))
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.proj = nn.Conv2d(in_chans, embed_dim, kernel_size=self.patch_size,
                              stride=self.patch_size, bias=bias)
        self.norm = nn.Identity()

    def forward(self, x):
        _, _, H, W = x.shape
        if (H, W) != self.img_size:
            raise ValueError(f"Input height/width ({H}, {W}) doesn't match model ({self.img_size}).")
        x = self.proj(x)
        x = x.flatten(2).transpose(1, 2)   # NCHW -> NLC
        return self.norm(x)


class Attention(nn.Module):
    """timm.layers.Attention, the explicit (non-fused) path; keeps the softmax probabilities."""

    def __init__(self, dim, num_heads=8, qkv_bias=False, qk_norm=False, scale_norm=False,
                 proj_bias=True, attn_drop=0.0, proj_drop=0.0, norm_layer=None):
        super().__init__()
        assert dim % num_heads == 0, "dim should be divisible by num_heads"
        if qk_norm or scale_norm:
            raise NotImplementedError("qk_norm / scale_norm")
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.attn_drop = nn.Dropout(attn_drop)
        self.norm = nn.Identity()
        self.proj = nn.Linear(dim, dim, bias=proj_bias)
        self.proj_drop = nn.Dropout(proj_drop)
        self.last_attn = None

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        q = q * self.scale
        attn = (q @ k.transpose(-2, -1)).softmax(dim=-1)
        self.last_attn = attn.detach()
        attn = self.attn_drop(attn)
        x = attn @ v
        x = x.transpose(1, 2).reshape(B, N, C)
        x = self.norm(x)
        x = self.proj(x)
        return self.proj_drop(x)


class LayerScale(nn.Module):
    """timm.layers.LayerScale: parameter `gamma`."""

    def __init__(self, dim, init_values=1e-5):
        super().__init__()
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


class Mlp(nn.Module):
    """timm.layers.Mlp: fc1, act, drop1, norm, fc2, drop2."""

    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU,
                 norm_layer=None, bias=True, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features, bias=bias)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.norm = norm_layer(hidden_features) if norm_layer is not None else nn.Identity()
        self.fc2 = nn.Linear(hidden_features, out_features, bias=bias)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        x = self.drop1(self.act(self.fc1(x)))
        x = self.norm(x)
        return self.drop2(self.fc2(x))


class Block(nn.Module):
    """timm's pre-norm ViT block (drop_path is 0 at inference: Identity)."""

    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=False, qk_norm=False,
                 scale_attn_norm=False, scale_mlp_norm=False, proj_bias=True, proj_drop=0.0,
                 attn_drop=0.0, init_values=None, drop_path=0.0, act_layer=nn.GELU,
                 norm_layer=LayerNorm, mlp_layer=Mlp):
        super().__init__()
        self.norm1 = norm_layer(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias, qk_norm=qk_norm,
                              scale_norm=scale_attn_norm, proj_bias=proj_bias,
                              attn_drop=attn_drop, proj_drop=proj_drop, norm_layer=norm_layer)
        self.ls1 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path1 = nn.Identity()
        self.norm2 = norm_layer(dim)
        self.mlp = mlp_layer(in_features=dim, hidden_features=int(dim * mlp_ratio),
                             act_layer=act_layer,
                             norm_layer=norm_layer if scale_mlp_norm else None,
                             bias=proj_bias, drop=proj_drop)
        self.ls2 = LayerScale(dim, init_values=init_values) if init_values else nn.Identity()
        self.drop_path2 = nn.Identity()

    def forward(self, x):
        x = x + self.drop_path1(self.ls1(self.attn(self.norm1(x))))
        x = x + self.drop_path2(self.ls2(self.mlp(self.norm2(x))))
        return x


class AttentionPoolLatent(nn.Module):
    """timm.layers.AttentionPoolLatent as VisionTransformer builds it for global_pool='map'
    (latent_len 1, q_proj, qkv_bias, no qk_norm, no pos_embed, pool_type 'token'); keeps the
    probabilities."""

    def __init__(self, in_features, num_heads=8, mlp_ratio=4.0, norm_layer=None, act_layer=nn.GELU):
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = in_features // num_heads
        self.scale = self.head_dim ** -0.5
        self.latent_len = 1
        self.latent = nn.Parameter(torch.zeros(1, 1, in_features))
        self.q = nn.Linear(in_features, in_features)
        self.kv = nn.Linear(in_features, in_features * 2)
        self.q_norm = nn.Identity()
        self.k_norm = nn.Identity()
        self.proj = nn.Linear(in_features, in_features)
        self.proj_drop = nn.Dropout(0.0)
        self.norm = norm_layer(in_features) if norm_layer is not None else nn.Identity()
        self.mlp = Mlp(in_features, int(in_features * mlp_ratio), act_layer=act_layer)
        self.last_attn = None

    def forward(self, x):
        B, N, C = x.shape
        q = self.q(self.latent.expand(B, -1, -1)).reshape(B, 1, self.num_heads, self.head_dim).transpose(1, 2)
        kv = self.kv(x).reshape(B, N, 2, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        k, v = kv.unbind(0)
        q, k = self.q_norm(q), self.k_norm(k)
        attn = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        self.last_attn = attn
        x = (attn @ v).transpose(1, 2).reshape(B, 1, C)
        x = self.proj_drop(self.proj(x))
        x = x + self.mlp(self.norm(x))
        return x[:, 0]


def global_pool_nlc(x, pool_type="token", num_prefix_tokens=1, reduce_include_prefix=False):
    """timm.models.vision_transformer.global_pool_nlc."""
    if not pool_type:
        return x
    if pool_type == "token":
        return x[:, 0]
    x = x if reduce_include_prefix else x[:, num_prefix_tokens:]
    if pool_type == "avg":
        return x.mean(dim=1)
    if pool_type == "avgmax":
        return 0.5 * (x.amax(dim=1) + x.mean(dim=1))
    if pool_type == "max":
        return x.amax(dim=1)
    raise AssertionError(f"Unknown pool type {pool_type}")


def _require_default(name, value, default):
    if value != default:
        raise NotImplementedError(
            f"VisionTransformer({name}={value!r}) is a timm option this stand-in does not model")


class VisionTransformer(nn.Module):
    """timm.models.vision_transformer.VisionTransformer (inference)."""

    def __init__(
            self,
            img_size=224,
            patch_size=16,
            in_chans=3,
            num_classes=1000,
            global_pool="token",
            embed_dim=768,
            depth=12,
            num_heads=12,
            mlp_ratio=4.0,
            qkv_bias=True,
            qk_norm=False,
            scale_attn_norm=False,
            scale_mlp_norm=False,
            proj_bias=True,
            init_values=None,
            class_token=True,
            pos_embed="learn",
            no_embed_class=False,
            reg_tokens=0,
            pre_norm=False,
            final_norm=True,
            fc_norm=None,
            pool_include_prefix=False,
            dynamic_img_size=False,
            dynamic_img_pad=False,
            drop_rate=0.0,
            pos_drop_rate=0.0,
            patch_drop_rate=0.0,
            proj_drop_rate=0.0,
            attn_drop_rate=0.0,
            drop_path_rate=0.0,
            weight_init="",
            fix_init=False,
            embed_layer=PatchEmbed,
            embed_norm_layer=None,
            norm_layer=None,
            act_layer=None,
            block_fn=Block,
            mlp_layer=Mlp,
            attn_layer=None,
            device=None,
            dtype=None,
    ):
        super().__init__()
        assert global_pool in ("", "avg", "avgmax", "max", "token", "map", "prr")
        assert class_token or global_pool != "token"
        assert pos_embed in ("", "none", "learn")
        for name, value, default in (
                ("global_pool", global_pool if global_pool == "prr" else "", ""),
                ("dynamic_img_size", dynamic_img_size, False),
                ("patch_drop_rate", patch_drop_rate, 0.0),
                ("embed_norm_layer", embed_norm_layer, None),
                ("attn_layer", attn_layer if attn_layer not in (None, "", "attn") else None, None),
                ("block_fn", block_fn, Block),
                ("mlp_layer", mlp_layer, Mlp),
                ("embed_layer", embed_layer, PatchEmbed)):
            _require_default(name, value, default)
        use_fc_norm = global_pool in ("avg", "avgmax", "max") if fc_norm is None else fc_norm
        norm_layer = get_norm_layer(norm_layer) or LayerNorm
        act_layer = get_act_layer(act_layer) or nn.GELU

        self.num_classes = num_classes
        self.in_chans = in_chans
        self.global_pool = global_pool
        self.num_features = self.head_hidden_size = self.embed_dim = embed_dim
        self.num_prefix_tokens = 1 if class_token else 0
        self.num_prefix_tokens += reg_tokens
        self.num_reg_tokens = reg_tokens
        self.has_class_token = class_token
        self.no_embed_class = no_embed_class
        self.pool_include_prefix = pool_include_prefix
        self.dynamic_img_size = dynamic_img_size

        self.patch_embed = embed_layer(
            img_size=img_size, patch_size=patch_size, in_chans=in_chans, embed_dim=embed_dim,
            bias=not pre_norm,   # timm: no patch-embed bias when pre_norm (CLIP)
            dynamic_img_pad=dynamic_img_pad)
        num_patches = self.patch_embed.num_patches

        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim)) if class_token else None
        self.reg_token = nn.Parameter(torch.zeros(1, reg_tokens, embed_dim)) if reg_tokens else None
        embed_len = num_patches if no_embed_class else num_patches + self.num_prefix_tokens
        if not pos_embed or pos_embed == "none":
            self.pos_embed = None
        else:
            self.pos_embed = nn.Parameter(torch.zeros(1, embed_len, embed_dim))
        self.pos_drop = nn.Dropout(p=pos_drop_rate)
        self.patch_drop = nn.Identity()
        self.norm_pre = norm_layer(embed_dim) if pre_norm else nn.Identity()

        self.blocks = nn.Sequential(*[
            block_fn(dim=embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio, qkv_bias=qkv_bias,
                     qk_norm=qk_norm, scale_attn_norm=scale_attn_norm,
                     scale_mlp_norm=scale_mlp_norm, proj_bias=proj_bias, init_values=init_values,
                     proj_drop=proj_drop_rate, attn_drop=attn_drop_rate, drop_path=0.0,
                     norm_layer=norm_layer, act_layer=act_layer, mlp_layer=mlp_layer)
            for _ in range(depth)])
        self.norm = norm_layer(embed_dim) if final_norm and not use_fc_norm else nn.Identity()
        self.attn_pool = (AttentionPoolLatent(embed_dim, num_heads=num_heads, mlp_ratio=mlp_ratio,
                                              norm_layer=norm_layer, act_layer=act_layer)
                          if global_pool == "map" else None)
        self.fc_norm = norm_layer(embed_dim) if final_norm and use_fc_norm else nn.Identity()
        self.head_drop = nn.Dropout(drop_rate)
        self.head = nn.Linear(self.embed_dim, num_classes) if num_classes > 0 else nn.Identity()

    def _pos_embed(self, x):
        to_cat = []
        if self.cls_token is not None:
            to_cat.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.reg_token is not None:
            to_cat.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.pos_embed is None:
            return torch.cat(to_cat + [x], dim=1)
        if self.no_embed_class:
            # deit-3 / big_vision: position embedding does not cover the prefix tokens
            x = x + self.pos_embed
            if to_cat:
                x = torch.cat(to_cat + [x], dim=1)
        else:
            # original timm / JAX / deit: pos_embed has entries for the prefix tokens
            if to_cat:
                x = torch.cat(to_cat + [x], dim=1)
            x = x + self.pos_embed
        return self.pos_drop(x)

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = self._pos_embed(x)
        x = self.patch_drop(x)
        x = self.norm_pre(x)
        x = self.blocks(x)
        return self.norm(x)

    def pool(self, x, pool_type=None):
        if self.attn_pool is not None:
            if not self.pool_include_prefix:
                x = x[:, self.num_prefix_tokens:]
            return self.attn_pool(x)
        pool_type = self.global_pool if pool_type is None else pool_type
        return global_pool_nlc(x, pool_type=pool_type, num_prefix_tokens=self.num_prefix_tokens,
                               reduce_include_prefix=self.pool_include_prefix)

    def forward_head(self, x, pre_logits=False):
        x = self.pool(x)
        x = self.fc_norm(x)
        x = self.head_drop(x)
        return x if pre_logits else self.head(x)

    def forward(self, x):
        return self.forward_head(self.forward_features(x))

    def attention_maps(self):
        return [blk.attn.last_attn for blk in self.blocks]


class VisionTransformerDistilled(VisionTransformer):
    """timm.models.deit.VisionTransformerDistilled (inference)."""

    def __init__(self, *args, **kwargs):
        kwargs.pop("weight_init", "")
        super().__init__(*args, **kwargs, weight_init="skip")
        assert self.global_pool in ("token",)
        self.num_prefix_tokens = 2
        self.dist_token = nn.Parameter(torch.zeros(1, 1, self.embed_dim))
        # timm sizes this with the prefix tokens whatever no_embed_class says
        self.pos_embed = nn.Parameter(
            torch.zeros(1, self.patch_embed.num_patches + self.num_prefix_tokens, self.embed_dim))
        self.head_dist = (nn.Linear(self.embed_dim, self.num_classes) if self.num_classes > 0
                          else nn.Identity())
        self.distilled_training = False

    def _pos_embed(self, x):
        prefix = (self.cls_token.expand(x.shape[0], -1, -1),
                  self.dist_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:
            x = x + self.pos_embed
            x = torch.cat(prefix + (x,), dim=1)
        else:
            x = torch.cat(prefix + (x,), dim=1)
            x = x + self.pos_embed
        return self.pos_drop(x)

    def forward_head(self, x, pre_logits=False):
        x, x_dist = x[:, 0], x[:, 1]
        if pre_logits:
            return (x + x_dist) / 2
        x = self.head(x)
        x_dist = self.head_dist(x_dist)
        return (x + x_dist) / 2


# ----------------------------------------------------------------------------- registry

def _cfg(**kwargs):
    """timm vision_transformer._cfg (inception mean/std) — the registry default pretrained_cfg."""
    cfg = dict(num_classes=1000, input_size=(3, 224, 224), pool_size=None, crop_pct=0.9,
               interpolation="bicubic", fixed_input_size=True, mean=(0.5, 0.5, 0.5),
               std=(0.5, 0.5, 0.5), first_conv="patch_embed.proj", classifier="head")
    cfg.update(kwargs)
    return cfg


def _deit_cfg(**kwargs):
    cfg = _cfg(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
    cfg.update(kwargs)
    return cfg


# entry point name -> (class, the entry point's own model_args, default tag, default pretrained_cfg)
# The model_args and default tags are those of timm's registry (first tag = default).
ARCHITECTURES = {
    "vit_tiny_patch16_224": (VisionTransformer, dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
                             "augreg_in21k_ft_in1k", _cfg(custom_load=True)),
    "vit_small_patch16_224": (VisionTransformer, dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
                              "augreg_in21k_ft_in1k", _cfg(custom_load=True)),
    "vit_small_patch32_224": (VisionTransformer, dict(patch_size=32, embed_dim=384, depth=12, num_heads=6),
                              "augreg_in21k_ft_in1k", _cfg(custom_load=True)),
    "vit_base_patch16_224": (VisionTransformer, dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
                             "augreg2_in21k_ft_in1k", _cfg()),
    "vit_base_patch32_224": (VisionTransformer, dict(patch_size=32, embed_dim=768, depth=12, num_heads=12),
                             "augreg_in21k_ft_in1k", _cfg(custom_load=True)),
    "vit_large_patch16_224": (VisionTransformer, dict(patch_size=16, embed_dim=1024, depth=24, num_heads=16),
                              "augreg_in21k_ft_in1k", _cfg(custom_load=True)),
    "deit_tiny_patch16_224": (VisionTransformer, dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
                              "fb_in1k", _deit_cfg()),
    "deit_small_patch16_224": (VisionTransformer, dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
                               "fb_in1k", _deit_cfg()),
    "deit_base_patch16_224": (VisionTransformer, dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
                              "fb_in1k", _deit_cfg()),
    "deit_tiny_distilled_patch16_224": (
        VisionTransformerDistilled, dict(patch_size=16, embed_dim=192, depth=12, num_heads=3),
        "fb_in1k", _deit_cfg(classifier=("head", "head_dist"))),
    "deit_small_distilled_patch16_224": (
        VisionTransformerDistilled, dict(patch_size=16, embed_dim=384, depth=12, num_heads=6),
        "fb_in1k", _deit_cfg(classifier=("head", "head_dist"))),
    "deit_base_distilled_patch16_224": (
        VisionTransformerDistilled, dict(patch_size=16, embed_dim=768, depth=12, num_heads=12),
        "fb_in1k", _deit_cfg(classifier=("head", "head_dist"))),
}


# timm.models._pretrained.PretrainedCfg: the fields a pretrained_cfg may have (it is a dataclass:
# any other key is a TypeError when timm builds it)
@dataclasses.dataclass
class PretrainedCfg:
    url: Any = None
    file: Any = None
    state_dict: Any = None
    hf_hub_id: Any = None
    hf_hub_filename: Any = None
    source: Any = None
    architecture: Any = None
    tag: Any = None
    custom_load: bool = False
    input_size: Any = (3, 224, 224)
    test_input_size: Any = None
    min_input_size: Any = None
    fixed_input_size: bool = False
    interpolation: str = "bicubic"
    crop_pct: float = 0.875
    test_crop_pct: Any = None
    crop_mode: str = "center"
    mean: Any = (0.485, 0.456, 0.406)
    std: Any = (0.229, 0.224, 0.225)
    num_classes: int = 1000
    label_offset: Any = None
    label_names: Any = None
    label_descriptions: Any = None
    pool_size: Any = None
    test_pool_size: Any = None
    first_conv: Any = None
    classifier: Any = None
    license: Any = None
    description: Any = None
    origin_url: Any = None
    paper_name: Any = None
    paper_ids: Any = None
    notes: Any = None


def parse_hf_config(cfg: Dict[str, Any], source="local-dir"):
    """timm.models._hub._parse_model_cfg: -> (pretrained_cfg dict, architecture, model_args)."""
    cfg = json.loads(json.dumps(cfg))   # deep copy
    if "pretrained_cfg" not in cfg:
        pretrained_cfg = cfg
        cfg = {"architecture": pretrained_cfg.pop("architecture"),
               "num_features": pretrained_cfg.pop("num_features", None),
               "pretrained_cfg": pretrained_cfg}
        if "labels" in pretrained_cfg:
            pretrained_cfg["label_names"] = pretrained_cfg.pop("labels")
    pretrained_cfg = cfg["pretrained_cfg"]
    pretrained_cfg["source"] = source
    if "num_classes" in cfg:
        pretrained_cfg["num_classes"] = cfg["num_classes"]
    if "label_names" in cfg:
        pretrained_cfg["label_names"] = cfg.pop("label_names")
    if "label_descriptions" in cfg:
        pretrained_cfg["label_descriptions"] = cfg.pop("label_descriptions")
    model_args = cfg.get("model_args", {})
    if model_args.get("in_chans") is not None:
        input_size = pretrained_cfg.get("input_size", (3, 224, 224))
        pretrained_cfg["input_size"] = (model_args["in_chans"], *input_size[1:])
    if model_args.get("img_size") is not None and pretrained_cfg.get("fixed_input_size", False):
        size = model_args["img_size"]
        size = (size, size) if isinstance(size, int) else tuple(size)
        pretrained_cfg["input_size"] = (pretrained_cfg["input_size"][0], *size)
    return pretrained_cfg, cfg["architecture"], model_args


def create_model(architecture, pretrained_cfg=None, **kwargs):
    """timm.create_model(architecture, pretrained_cfg=..., **kwargs) without weights:
    entry point defaults, then kwargs over them (`dict(model_args, **kwargs)`), then
    build_model_with_cfg's defaults from the pretrained_cfg (num_classes, global_pool, in_chans,
    img_size when fixed_input_size), then the class constructor."""
    architecture = architecture.split(".", 1)[0]   # timm: 'name.tag' -> entry point 'name'
    if architecture not in ARCHITECTURES:
        raise RuntimeError(f"Unknown model ({architecture}) [not in this stand-in's registry]")
    cls, entry_args, tag, default_cfg = ARCHITECTURES[architecture]
    kwargs = {k: v for k, v in kwargs.items() if v is not None}
    args = dict(entry_args, **kwargs)
    if pretrained_cfg is None:
        pretrained_cfg = dict(default_cfg, architecture=architecture, tag=tag)
    pcfg = dataclasses.asdict(PretrainedCfg(**pretrained_cfg))   # TypeError on unknown keys
    for n in ("num_classes", "global_pool", "in_chans") + (("img_size",) if pcfg.get("fixed_input_size") else ()):
        if n == "img_size":
            args.setdefault(n, tuple(pcfg["input_size"][-2:]))
        elif n == "in_chans":
            args.setdefault(n, pcfg["input_size"][0])
        elif pcfg.get(n) is not None and (n != "num_classes" or pcfg[n] >= 0):
            args.setdefault(n, pcfg[n])
    model = cls(**args)
    model.pretrained_cfg = pcfg
    return model


def checkpoint_filter_notes(state_dict, model):
    """What timm's vision_transformer.checkpoint_filter_fn would change in this state_dict
    (an export should need nothing: any change means a mismatch between config and weights)."""
    notes = []
    w = state_dict.get("patch_embed.proj.weight")
    if w is not None and tuple(w.shape[-2:]) != tuple(model.patch_embed.proj.weight.shape[-2:]):
        notes.append(f"patch_embed.proj.weight {tuple(w.shape)} would be resampled to "
                     f"{tuple(model.patch_embed.proj.weight.shape)}")
    pe = state_dict.get("pos_embed")
    if pe is not None and model.pos_embed is not None and pe.shape[1] != model.pos_embed.shape[1]:
        notes.append(f"pos_embed {tuple(pe.shape)} would be resampled to {tuple(model.pos_embed.shape)}")
    for k in state_dict:
        if "pre_logits" in k:
            notes.append(f"{k} would be dropped")
        if "gamma_" in k:
            notes.append(f"{k} would be renamed (deit3 layer-scale naming)")
    return notes


def build_from_export(folder, layer_norm_eps="config"):
    """Builds the model an export folder describes, the way timm's `local-dir:` / `hf-hub:`
    loading does, and loads model.safetensors with strict=True.

    layer_norm_eps: "config" uses the export's top-level layer_norm_eps (a key timm itself
    ignores) through norm_layer=partial(LayerNorm, eps=...); "timm" leaves timm's default (1e-6),
    which is what `timm.create_model` does with this config as it stands.
    Returns (model, info) where info holds the parsed config and any notes."""
    import os
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    pretrained_cfg, arch, model_args = parse_hf_config(cfg)
    kwargs = dict(model_args)
    eps = cfg.get("layer_norm_eps")
    if layer_norm_eps == "config" and eps is not None:
        kwargs["norm_layer"] = partial(LayerNorm, eps=float(eps))
    model = create_model(arch, pretrained_cfg=pretrained_cfg, **kwargs)
    sd = load_state_dict_file(os.path.join(folder, "model.safetensors"))
    notes = checkpoint_filter_notes(sd, model)
    # timm's load_pretrained: a classifier whose num_classes differs from the pretrained_cfg's is
    # discarded and the load goes non-strict
    if model.num_classes != model.pretrained_cfg["num_classes"]:
        notes.append(f"num_classes {model.num_classes} != pretrained_cfg num_classes "
                     f"{model.pretrained_cfg['num_classes']}: timm would discard the classifier")
    model.load_state_dict(sd, strict=True)
    model.eval()
    return model, dict(config=cfg, pretrained_cfg=pretrained_cfg, architecture=arch,
                       model_args=model_args, notes=notes, state_dict_keys=sorted(sd))


def load_like_timm(folder, layer_norm_eps="config", **overrides):
    """timm.create_model('local-dir:FOLDER', pretrained=True, **overrides), as timm's
    load_pretrained does it: when the model's num_classes differs from the pretrained_cfg's, the
    tensors of every module named in pretrained_cfg['classifier'] are dropped and the load goes
    non-strict (a shape mismatch still raises). Returns (model, missing, unexpected)."""
    import os
    with open(os.path.join(folder, "config.json")) as f:
        cfg = json.load(f)
    pretrained_cfg, arch, model_args = parse_hf_config(cfg)
    kwargs = dict(model_args, **overrides)
    eps = cfg.get("layer_norm_eps")
    if layer_norm_eps == "config" and eps is not None:
        kwargs["norm_layer"] = partial(LayerNorm, eps=float(eps))
    model = create_model(arch, pretrained_cfg=pretrained_cfg, **kwargs)
    sd = load_state_dict_file(os.path.join(folder, "model.safetensors"))
    strict = True
    classifiers = model.pretrained_cfg.get("classifier")
    if classifiers is not None:
        if isinstance(classifiers, str):
            classifiers = (classifiers,)
        if model.num_classes != model.pretrained_cfg["num_classes"]:
            for c in classifiers:
                sd.pop(c + ".weight", None)
                sd.pop(c + ".bias", None)
            strict = False
    missing, unexpected = model.load_state_dict(sd, strict=strict)
    model.eval()
    return model, list(missing), list(unexpected)

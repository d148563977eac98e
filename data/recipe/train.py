#!/usr/bin/env python3
"""A vitlab run's recipe, for PyTorch: fine-tunes a Vision Transformer as the run did, on one
process or many (DDP), and writes a vitlab run folder that `vitlab-cli eval` and the app open.

    python3 train.py --data DIR --out RUNDIR [--epochs E] [--device cpu|cuda]
    torchrun --nproc_per_node=N train.py --data DIR --out RUNDIR
    torchrun --nnodes=M --nproc_per_node=N --rdzv_backend=c10d --rdzv_id=JOB \\
             --rdzv_endpoint=HOST:29500 train.py --data DIR --out RUNDIR

Everything about the run comes from run.json (beside this script, or --recipe FILE): the
backbone, the head and pooling, the layer groups and the unlock schedule, AdamW with timm's
no-decay rule, layer decay, warmup + cosine per step, label smoothing, clipping, augmentation
and the task. The batch size is the global one: each of N processes takes batch_size / N.

Needs PyTorch, torchvision and numpy; timm's VisionTransformer is used when timm is importable,
else the plain-PyTorch ViT below (the same module names, so the same checkpoint). Safetensors
are read and written with numpy (or the safetensors package when present).
"""
import argparse
import csv
import datetime
import json
import math
import os
import struct
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image
from torchvision import transforms

# ----------------------------------------------------------------------------- photos upright

# vitlab decodes photos upright: a JPEG's or PNG's EXIF orientation applied, as
# PIL.ImageOps.exif_transpose turns it (Image.open alone does not). These do the same here.
_TURN = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
         4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
         6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
         8: Image.Transpose.ROTATE_90}
# the stored pixel (xi, yi) shown at upright (x, y): xi = a0 x + a1 y + a2 (W - 1),
# yi = a3 x + a4 y + a5 (H - 1) (engine/io/vl-image.c's table)
_ORIENT = {1: (1, 0, 0, 0, 1, 0), 2: (-1, 0, 1, 0, 1, 0), 3: (-1, 0, 1, 0, -1, 1),
           4: (1, 0, 0, 0, -1, 1), 5: (0, 1, 0, 1, 0, 0), 6: (0, 1, 0, -1, 0, 1),
           7: (0, -1, 1, -1, 0, 1), 8: (0, -1, 1, 1, 0, 0)}


def orientation(im):
    """The EXIF orientation of an open image, 1 to 8 (1: none, or not a valid value)."""
    try:
        o = im.getexif().get(0x0112, 1)
    except Exception:   # a broken EXIF block: vitlab reads it as none too
        return 1
    return o if o in _ORIENT else 1


def open_upright(path, mode):
    """The image at path in mode, upright; and its EXIF orientation."""
    with Image.open(path) as im:
        o = orientation(im)
        tiff = im.format == "TIFF"   # Pillow's TIFF loader turns it by the tag itself
        img = im.convert(mode)
    return (img.transpose(_TURN[o]) if o != 1 and not tiff else img), o


def image_info(path):
    """(width, height, orientation): the upright size, as vitlab reads it."""
    with Image.open(path) as im:
        o = orientation(im)
        w, h = im.size
    return (h, w, o) if o >= 5 else (w, h, o)


def turn_box(box, w, h, o):
    """A box (x0, y0, x1, y1, ...) on the stored w x h pixels of a photo with orientation o,
    on the upright photo."""
    a = _ORIENT[o]
    c0, c1 = a[2] * w, a[5] * h
    xs, ys = [], []
    for xi, yi in ((box[0] - c0, box[1] - c1), (box[2] - c0, box[3] - c1)):
        xs.append(a[0] * xi + a[3] * yi)
        ys.append(a[1] * xi + a[4] * yi)
    return (min(xs), min(ys), max(xs), max(ys)) + tuple(box[4:])


def turn_stored_boxes(boxes, declared, w, h, o):
    """vitlab's rule: boxes are drawn on the upright photo, unless the annotation declares the
    stored, sideways size (w x h upright) of a quarter-turned one; then they are turned."""
    if o >= 5 and w != h and declared == (h, w):
        return [turn_box(b, h, w, o) for b in boxes]
    return boxes


# ----------------------------------------------------------------------------- safetensors

_DT = {"F64": np.float64, "F32": np.float32, "F16": np.float16, "I64": np.int64,
       "I32": np.int32, "I16": np.int16, "I8": np.int8, "U8": np.uint8, "BOOL": np.bool_}


def read_safetensors(path):
    """{name: float32 numpy array} of a .safetensors file (BF16 widened)."""
    try:
        from safetensors.numpy import load_file
        return {k: v.astype(np.float32) if v.dtype != np.float32 else v
                for k, v in load_file(path).items()}
    except ImportError:
        pass
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        raise SystemExit(f"{path}: too short for a safetensors file")
    (n,) = struct.unpack("<Q", data[:8])
    try:
        header = json.loads(data[8:8 + n].decode("utf-8"))
    except ValueError as e:
        raise SystemExit(f"{path}: the safetensors header is not JSON ({e})")
    header.pop("__metadata__", None)
    out = {}
    for name, info in header.items():
        a, b = info["data_offsets"]
        raw = data[8 + n + a:8 + n + b]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(raw, "<u2").astype(np.uint32) << 16).view(np.float32)
        elif info["dtype"] in _DT:
            arr = np.frombuffer(raw, np.dtype(_DT[info["dtype"]]).newbyteorder("<"))
        else:
            raise SystemExit(f"{path}: tensor {name}: unsupported dtype {info['dtype']}")
        out[name] = arr.reshape(info["shape"]).astype(np.float32)
    return out


def write_safetensors(path, tensors, metadata):
    """Writes float32 tensors (in the given order) with string metadata, atomically."""
    header = {"__metadata__": metadata}
    blobs, off = [], 0
    for name, arr in tensors.items():
        b = np.ascontiguousarray(arr, dtype="<f4").tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode("utf-8")
    h += b" " * ((8 - len(h) % 8) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def finite_or_none(v):
    """metrics.jsonl as vitlab writes it: a non-finite number (an R² of a constant target) is
    null, never NaN (which is not JSON)."""
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, list):
        return [finite_or_none(x) for x in v]
    return v


def write_text(path, text):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)

# ----------------------------------------------------------------------------- the ViT (timm names)


class Attention(nn.Module):
    def __init__(self, dim, heads, qkv_bias):
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)
        x = attn.softmax(dim=-1) @ v
        return self.proj(x.transpose(1, 2).reshape(B, N, C))


class LayerScale(nn.Module):
    def __init__(self, dim, init):
        super().__init__()
        self.gamma = nn.Parameter(init * torch.ones(dim))

    def forward(self, x):
        return x * self.gamma


def gelu_of(act):
    """timm's act_layer names vitlab writes: the exact GELU, or its tanh approximation (SigLIP)."""
    return nn.GELU(approximate="tanh") if act == "gelu_tanh" else nn.GELU()


class Mlp(nn.Module):
    def __init__(self, dim, hidden, act=None):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = gelu_of(act)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, init_values, eps, act=None):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


class AttentionPoolLatent(nn.Module):
    """timm's AttentionPoolLatent as its VisionTransformer builds it for global_pool='map'
    (SigLIP's attention pool): one learnt query over the patch tokens, then a residual MLP."""

    def __init__(self, dim, heads, mlp_ratio, eps, act):
        super().__init__()
        self.heads = heads
        self.latent = nn.Parameter(torch.zeros(1, 1, dim))
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act)

    def forward(self, x):
        B, N, C = x.shape
        h, d = self.heads, C // self.heads
        q = self.q(self.latent.expand(B, -1, -1)).reshape(B, 1, h, d).transpose(1, 2)
        k, v = self.kv(x).reshape(B, N, 2, h, d).permute(2, 0, 3, 1, 4).unbind(0)
        a = ((q * d ** -0.5) @ k.transpose(-2, -1)).softmax(dim=-1)
        y = self.proj((a @ v).transpose(1, 2).reshape(B, 1, C))
        return (y + self.mlp(self.norm(y)))[:, 0]


class PatchEmbed(nn.Module):
    def __init__(self, patch, in_chans, dim):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch, patch)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)


class ViT(nn.Module):
    """timm's VisionTransformer for the keywords a vitlab timm-layout checkpoint uses; features
    only (the head is vitlab's, added below)."""

    def __init__(self, a, eps):
        super().__init__()
        dim, depth = a["embed_dim"], a["depth"]
        self.patch_embed = PatchEmbed(a["patch_size"], a.get("in_chans", 3), dim)
        n_patches = (a["img_size"] // a["patch_size"]) ** 2
        self.has_class_token = a.get("class_token", True)
        self.num_reg = a.get("reg_tokens", 0)
        self.no_embed_class = a.get("no_embed_class", False)
        self.num_prefix_tokens = int(self.has_class_token) + self.num_reg
        if self.has_class_token:
            self.cls_token = nn.Parameter(torch.zeros(1, 1, dim))
        if self.num_reg:
            self.reg_token = nn.Parameter(torch.zeros(1, self.num_reg, dim))
        n_pos = n_patches if self.no_embed_class else n_patches + self.num_prefix_tokens
        self.pos_embed = nn.Parameter(torch.zeros(1, n_pos, dim))
        self.norm_pre = nn.LayerNorm(dim, eps=eps) if a.get("pre_norm") else nn.Identity()
        self.blocks = nn.Sequential(*[
            Block(dim, a["num_heads"], a.get("mlp_ratio", 4.0), a.get("qkv_bias", True),
                  a.get("init_values"), eps, a.get("act_layer")) for _ in range(depth)])
        if a.get("global_pool") == "map":
            self.attn_pool = AttentionPoolLatent(dim, a["num_heads"], a.get("mlp_ratio", 4.0), eps,
                                                 a.get("act_layer"))
        use_fc_norm = a.get("fc_norm", False)
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(dim, eps=eps)
        self.fc_norm = nn.LayerNorm(dim, eps=eps) if use_fc_norm else nn.Identity()

    def pos_at(self, grid):
        """pos_embed at a grid of grid x grid patches: timm's resample_abs_pos_embed (prefix rows
        kept, the grid part through antialiased bicubic), as vitlab's engine does it."""
        n_pre = 0 if self.no_embed_class else self.num_prefix_tokens
        old = int(round(math.sqrt(self.pos_embed.shape[1] - n_pre)))
        if grid == old:
            return self.pos_embed
        pre, g = self.pos_embed[:, :n_pre], self.pos_embed[:, n_pre:]
        g = g.reshape(1, old, old, -1).permute(0, 3, 1, 2)
        g = F.interpolate(g, size=(grid, grid), mode="bicubic", antialias=True, align_corners=False)
        return torch.cat([pre, g.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)

    def forward_features(self, x):
        pos = self.pos_at(x.shape[-1] // self.patch_embed.proj.kernel_size[0])
        x = self.patch_embed(x)
        prefix = []
        if self.has_class_token:
            prefix.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.num_reg:
            prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:
            x = torch.cat(prefix + [x + pos], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + pos
        return self.norm(self.blocks(self.norm_pre(x)))


def timm_backbone(a, eps):
    """timm's own VisionTransformer when timm is importable (the same names), else ours."""
    try:
        import timm.models.vision_transformer as tv
    except ImportError:
        return ViT(a, eps), "plain PyTorch"
    kw = {k: a[k] for k in ("img_size", "patch_size", "in_chans", "embed_dim", "depth",
                            "num_heads", "mlp_ratio", "qkv_bias", "class_token",
                            "no_embed_class", "reg_tokens", "pre_norm", "fc_norm",
                            "init_values", "act_layer") if k in a}
    from functools import partial
    pool = "map" if a.get("global_pool") == "map" else "token" if a.get("class_token", True) else "avg"
    m = tv.VisionTransformer(num_classes=0, global_pool=pool,
                             norm_layer=partial(nn.LayerNorm, eps=eps), **kw)
    return m, "timm " + getattr(sys.modules.get("timm"), "__version__", "")


class Classifier(nn.Module):
    """Backbone, pooling (token, avg or max over the patch tokens) and vitlab's head."""

    def __init__(self, backbone, pool, head, hidden, n_out, dim):
        super().__init__()
        self.backbone = backbone
        self.pool = pool
        if head == "mlp":
            self.head = nn.Sequential()
            self.head.add_module("fc1", nn.Linear(dim, hidden))
            self.head.add_module("act", nn.GELU())
            self.head.add_module("fc2", nn.Linear(hidden, n_out))
        else:
            self.head = nn.Linear(dim, n_out)

    def forward(self, x):
        b = self.backbone
        t = b.forward_features(x)
        npt = b.num_prefix_tokens
        if self.pool == "map":
            f = b.attn_pool(t[:, npt:])
        elif self.pool == "token" and getattr(b, "has_class_token", npt > 0):
            f = t[:, 0]
        elif self.pool == "max":
            f = t[:, npt:].amax(dim=1)
        else:
            f = t[:, npt:].mean(dim=1)
        f = b.fc_norm(f) if hasattr(b, "fc_norm") else f
        return self.head(f)

# ----------------------------------------------------------------------------- segmentation


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW map (mmseg / ViTDet's)."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class SegHead(nn.Module):
    """vitlab's seg heads under mmsegmentation's names: `linear` (conv_seg, a 1x1 convolution on
    the patch grid) or `upconv` (up.0 ConvTranspose 2/2, up.1 LayerNorm2d, GELU, up.3
    ConvTranspose 2/2, then conv_seg)."""

    def __init__(self, kind, dim, n_classes):
        super().__init__()
        c = dim
        if kind == "upconv":
            self.up = nn.Sequential(nn.ConvTranspose2d(dim, dim // 2, 2, 2),
                                    LayerNorm2d(dim // 2, eps=1e-6), nn.GELU(),
                                    nn.ConvTranspose2d(dim // 2, dim // 4, 2, 2))
            c = dim // 4
        else:
            self.up = None
        self.conv_seg = nn.Conv2d(c, n_classes, 1)
        nn.init.normal_(self.conv_seg.weight, 0.0, 0.01)
        nn.init.zeros_(self.conv_seg.bias)

    def forward(self, grid):
        return self.conv_seg(self.up(grid) if self.up is not None else grid)


class Segmenter(nn.Module):
    """Backbone, its final-norm patch tokens as an NCHW grid (prefix tokens dropped), the seg
    head, then bilinear (align_corners false) back to the input size."""

    def __init__(self, backbone, kind, n_classes, dim):
        super().__init__()
        self.backbone = backbone
        self.decode_head = SegHead(kind, dim, n_classes)

    def forward(self, x):
        b = self.backbone
        t = b.forward_features(x)[:, b.num_prefix_tokens:]
        g = x.shape[-1] // b.patch_embed.proj.kernel_size[0]
        grid = t.transpose(1, 2).reshape(t.shape[0], t.shape[2], g, g)
        z = self.decode_head(grid)
        return F.interpolate(z, size=x.shape[-2:], mode="bilinear", align_corners=False)


def seg_pairs(images, masks):
    """(image, mask) pairs of a folder of images and one of masks (NAME.png per image)."""
    out = []
    for f in sorted(os.listdir(images)):
        if f.lower().endswith(IMAGE_EXT):
            m = os.path.join(masks, os.path.splitext(f)[0] + ".png")
            if not os.path.isfile(m):
                raise SystemExit(f"{os.path.join(images, f)}: no mask {m}")
            out.append((os.path.join(images, f), m))
    return out


def seg_items(data, run):
    """(train, val) (image, mask) pairs: Pascal VOC (JPEGImages/, SegmentationClass/,
    ImageSets/Segmentation/{train,val}.txt) or mask pairs (images/[train,val/] + masks/), split
    as the folder says or else as run.json's validation items."""
    voc = os.path.isdir(os.path.join(data, "JPEGImages")) and \
        os.path.isdir(os.path.join(data, "SegmentationClass"))
    if voc:
        sets = os.path.join(data, "ImageSets", "Segmentation")

        def listed(name):
            path = os.path.join(sets, name + ".txt")
            out = []
            with open(path, encoding="utf-8") as f:
                for i, line in enumerate(f, start=1):
                    n = line.strip()
                    if not n:
                        continue
                    img = next((os.path.join(data, "JPEGImages", n + e) for e in IMAGE_EXT
                                if os.path.isfile(os.path.join(data, "JPEGImages", n + e))), None)
                    if img is None:
                        raise SystemExit(f"{path}: line {i}: no image {n}.jpg in JPEGImages/")
                    out.append((img, os.path.join(data, "SegmentationClass", n + ".png")))
            return out
        if os.path.isfile(os.path.join(sets, "train.txt")):
            return listed("train"), listed("val")
        raise SystemExit(f"{sets}: no train.txt (vitlab's split of this folder is in run.json; "
                         f"write ImageSets/Segmentation/train.txt and val.txt)")
    im, mk = os.path.join(data, "images"), os.path.join(data, "masks")
    if not (os.path.isdir(im) and os.path.isdir(mk)):
        raise SystemExit(f"{data}: neither a Pascal VOC folder nor images/ + masks/ (the built-in "
                         f"sets, fashion-mnist-scenes, exist only inside vitlab)")
    if os.path.isdir(os.path.join(im, "train")):
        return (seg_pairs(os.path.join(im, "train"), os.path.join(mk, "train")),
                seg_pairs(os.path.join(im, "val"), os.path.join(mk, "val")))
    items = seg_pairs(im, mk)
    d = run["data"]
    base = d.get("spec_typed") and d.get("spec") or ""
    val_names = {rel_to(p, base) for p in d["split"].get("val_items", [])}
    return ([it for it in items if rel_to(it[0], data) not in val_names],
            [it for it in items if rel_to(it[0], data) in val_names])


def read_mask(path, n_classes):
    try:
        with Image.open(path) as m:
            a = np.array(m if m.mode in ("P", "L") else m.convert("L"), dtype=np.uint8)
    except OSError as e:
        raise RuntimeError(f"{path}: cannot be decoded ({e})")
    bad = (a >= n_classes) & (a != 255)
    if bad.any():
        raise RuntimeError(f"{path}: value {int(a[bad][0])} is not one of the {n_classes} classes "
                           f"or 255 (ignore)")
    return a


class SegItems(torch.utils.data.Dataset):
    """Image squashed to size x size (bicubic, as vitlab) and its mask: training masks squashed
    with it (nearest; light augmentation crops and flips both alike), validation masks at the
    image's own size (vitlab scores there)."""

    def __init__(self, items, size, chans, mean, std, n_classes, augment, train):
        self.items, self.size, self.mode = items, size, "L" if chans == 1 else "RGB"
        self.norm = transforms.Normalize(mean, std)
        self.K, self.augment, self.train = n_classes, augment, train

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, mpath = self.items[i]
        try:
            img, o = open_upright(path, self.mode)
        except OSError as e:
            raise RuntimeError(f"{path}: cannot be decoded ({e})")
        mask = read_mask(mpath, self.K)
        if o >= 5 and img.width != img.height and mask.shape == (img.width, img.height):
            # drawn on the stored, sideways pixels: turned with them, as vitlab does
            mask = np.array(Image.fromarray(mask).transpose(_TURN[o]))
        if mask.shape != (img.height, img.width):
            raise RuntimeError(f"{mpath}: {mask.shape[1]}x{mask.shape[0]}, its image {path} is "
                               f"{img.width}x{img.height}")
        m = Image.fromarray(mask)
        S = self.size
        if self.train and self.augment != "none":
            t, l, h, w = transforms.RandomResizedCrop.get_params(img, (0.35, 1.0), (3 / 4, 4 / 3))
            img, m = img.crop((l, t, l + w, t + h)), m.crop((l, t, l + w, t + h))
            if torch.rand(1).item() < 0.5:
                img, m = img.transpose(Image.FLIP_LEFT_RIGHT), m.transpose(Image.FLIP_LEFT_RIGHT)
        x = self.norm(transforms.functional.to_tensor(img.resize((S, S), Image.BICUBIC)))
        if self.train:
            m = m.resize((S, S), Image.NEAREST)
        return x, torch.from_numpy(np.array(m, dtype=np.int64))


def seg_collate(batch):
    """Images stacked; masks kept as a list (validation masks have each image's size)."""
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class SegScore:
    """mmsegmentation's IoUMetric sums (intersection, union, predicted and labelled areas per
    class over the split, 255 left out) and the pixel-weighted cross-entropy, at each image's
    own size."""

    def __init__(self, K):
        self.K = K
        self.t = torch.zeros(4 * K + 2, dtype=torch.float64)   # I, U, pred, label, loss sum, pixels

    def add(self, z, mask):
        z = F.interpolate(z[None], size=mask.shape, mode="bilinear", align_corners=False)[0]
        keep = mask != 255
        n = int(keep.sum())
        if n:
            self.t[4 * self.K] += F.cross_entropy(z[None], mask[None], ignore_index=255,
                                                  reduction="sum").double()
        self.t[4 * self.K + 1] += n
        p, y = z.argmax(0)[keep], mask[keep]
        K = self.K
        inter = torch.bincount(y[p == y], minlength=K)[:K].double()
        ap = torch.bincount(p, minlength=K)[:K].double()
        al = torch.bincount(y, minlength=K)[:K].double()
        self.t[:K] += inter
        self.t[K:2 * K] += ap + al - inter
        self.t[2 * K:3 * K] += ap
        self.t[3 * K:4 * K] += al

    def metrics(self):
        K, t = self.K, self.t
        inter, union, label = t[:K], t[K:2 * K], t[3 * K:4 * K]
        iou = [(inter[k] / union[k]).item() if union[k] > 0 else None for k in range(K)]
        acc = [(inter[k] / label[k]).item() if label[k] > 0 else None for k in range(K)]
        mean = lambda v: float(np.mean([x for x in v if x is not None])) if any(
            x is not None for x in v) else None
        return {"val_loss": (t[4 * K] / max(t[4 * K + 1].item(), 1)).item(),
                "val_miou": mean(iou), "val_aacc": (inter.sum() / max(label.sum().item(), 1)).item(),
                "val_macc": mean(acc), "val_at": "own size", "val_iou": iou, "val_acc": acc}


# ----------------------------------------------------------------------------- detection


def _clip_boxes(where, boxes, w, h):
    """vitlab's rule: a box outside its image by more than a pixel, or with no area, is dropped;
    within that it is clipped. boxes: [(x0, y0, x1, y1, label)] in the image's pixels."""
    out = []
    for x0, y0, x1, y1, k in boxes:
        if x0 < -1 or y0 < -1 or x1 > w + 1 or y1 > h + 1:
            print(f"train.py: {where}: a box outside its {w}x{h} image: dropped", file=sys.stderr)
            continue
        x0, y0, x1, y1 = max(x0, 0.0), max(y0, 0.0), min(x1, float(w)), min(y1, float(h))
        if x1 <= x0 or y1 <= y0:
            print(f"train.py: {where}: a box with no area: dropped", file=sys.stderr)
            continue
        out.append((x0, y0, x1, y1, k))
    return out


def det_items_voc(data, classes):
    import xml.etree.ElementTree as ET
    index = {c: k for k, c in enumerate(classes)}

    def split(name):
        path = os.path.join(data, "ImageSets", "Main", name + ".txt")
        with open(path, encoding="utf-8") as f:
            ids = [l.strip() for l in f if l.strip()]
        items = []
        for i in ids:
            img = next((os.path.join(data, "JPEGImages", i + e) for e in IMAGE_EXT
                        if os.path.isfile(os.path.join(data, "JPEGImages", i + e))), None)
            if img is None:
                raise SystemExit(f"{path}: {i}: no image in JPEGImages/")
            xml = os.path.join(data, "Annotations", i + ".xml")
            w, h, orient = image_info(img)
            root = ET.parse(xml).getroot()
            try:
                declared = (int(root.findtext("size/width")), int(root.findtext("size/height")))
            except (TypeError, ValueError):
                declared = None
            boxes = []
            for o in root.findall("object"):
                name = o.findtext("name", "").strip()
                if name not in index:
                    print(f"train.py: {xml}: class '{name}' is not the run's: dropped",
                          file=sys.stderr)
                    continue
                b = o.find("bndbox")
                boxes.append(tuple(float(b.findtext(c)) for c in ("xmin", "ymin", "xmax", "ymax"))
                             + (index[name],))
            boxes = turn_stored_boxes(boxes, declared, w, h, orient)
            items.append((img, _clip_boxes(xml, boxes, w, h)))
        return items
    return split("train"), split("val")


def det_items_coco(data, classes):
    index = {c: k for k, c in enumerate(classes)}

    def split(name):
        path = os.path.join(data, "annotations", f"instances_{name}.json")
        with open(path, encoding="utf-8") as f:
            j = json.load(f)
        cats = {c["id"]: c["name"] for c in j.get("categories", [])}
        per = {im["id"]: [] for im in j["images"]}
        for a in j.get("annotations", []):
            if a.get("iscrowd", 0) or a["image_id"] not in per or \
                    cats.get(a["category_id"]) not in index:
                continue
            x, y, bw, bh = a["bbox"]
            per[a["image_id"]].append((x, y, x + bw, y + bh, index[cats[a["category_id"]]]))
        items = []
        for im in j["images"]:
            img = os.path.join(data, "images", name, im["file_name"])
            if not os.path.isfile(img):
                continue
            w, h, orient = image_info(img)
            boxes = turn_stored_boxes(per[im["id"]], (im.get("width"), im.get("height")), w, h,
                                      orient)
            items.append((img, _clip_boxes(f"{path}: image {im['id']}", boxes, w, h)))
        return items
    return split("train"), split("val")


def det_items_yolo(data, classes):
    def split(name):
        d = os.path.join(data, "images", name)
        items = []
        for f in sorted(os.listdir(d)):
            if not f.lower().endswith(IMAGE_EXT):
                continue
            img = os.path.join(d, f)
            lab = os.path.join(data, "labels", name, os.path.splitext(f)[0] + ".txt")
            w, h, _ = image_info(img)
            boxes = []
            if os.path.isfile(lab):
                with open(lab, encoding="utf-8") as t:
                    for n, line in enumerate(t, start=1):
                        v = line.split()
                        if not v:
                            continue
                        c, cx, cy, bw, bh = int(v[0]), *map(float, v[1:5])
                        if not 0 <= c < len(classes) - 1:
                            print(f"train.py: {lab}: line {n}: class {c}: dropped", file=sys.stderr)
                            continue
                        boxes.append(((cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w,
                                      (cy + bh / 2) * h, c + 1))
            items.append((img, _clip_boxes(lab, boxes, w, h)))
        return items
    return split("train"), split("val")


def det_items(data, run):
    """(train, val) of (image, [(x0, y0, x1, y1, label)]): Pascal VOC, COCO JSON or YOLO, the
    classes numbered as run.json's data.classes (0 = background)."""
    classes = run["data"]["classes"]
    if os.path.isdir(os.path.join(data, "Annotations")):
        return det_items_voc(data, classes)
    if os.path.isdir(os.path.join(data, "annotations")):
        return det_items_coco(data, classes)
    if os.path.isdir(os.path.join(data, "labels")):
        return det_items_yolo(data, classes)
    raise SystemExit(f"{data}: not a Pascal VOC (Annotations/), COCO (annotations/) or YOLO "
                     f"(labels/) detection folder (the built-in scenes exist only inside vitlab)")


class DetItems(torch.utils.data.Dataset):
    """Image squashed to size x size (bicubic, as vitlab) with its boxes scaled alike; light
    augmentation crops and flips both (boxes clipped, those left under a pixel dropped).
    Returns the image, the boxes and labels at size x size, the image's own size and its boxes
    there (what validation scores against)."""

    def __init__(self, items, size, chans, mean, std, augment, train):
        self.items, self.size, self.mode = items, size, "L" if chans == 1 else "RGB"
        self.norm = transforms.Normalize(mean, std)
        self.augment, self.train = augment, train

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, boxes = self.items[i]
        try:
            img, _ = open_upright(path, self.mode)
        except OSError as e:
            raise RuntimeError(f"{path}: cannot be decoded ({e})")
        W, H = img.size
        b = torch.tensor([x[:4] for x in boxes], dtype=torch.float32).reshape(-1, 4)
        lab = torch.tensor([x[4] for x in boxes], dtype=torch.int64)
        x0, y0, cw, ch, flip = 0, 0, W, H, False
        if self.train and self.augment != "none":
            y0, x0, ch, cw = transforms.RandomResizedCrop.get_params(img, (0.35, 1.0), (3 / 4, 4 / 3))
            img = img.crop((x0, y0, x0 + cw, y0 + ch))
            flip = torch.rand(1).item() < 0.5
            if flip:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
        S = self.size
        x = self.norm(transforms.functional.to_tensor(img.resize((S, S), Image.BICUBIC)))
        # in double, as vitlab maps them ((b - origin) / (crop / S)), then float
        b = b.double()
        b = (b - torch.tensor([x0, y0, x0, y0], dtype=torch.float64)) / torch.tensor(
            [cw / S, ch / S, cw / S, ch / S], dtype=torch.float64)
        if flip:
            b = torch.stack([S - b[:, 2], b[:, 1], S - b[:, 0], b[:, 3]], dim=1)
        b = b.clamp(0, S).float()
        keep = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
        return x, {"boxes": b[keep], "labels": lab[keep], "size": (W, H),
                   "own": [list(t[:4]) for t in boxes], "labels_own": [t[4] for t in boxes]}


def det_collate(batch):
    return torch.stack([b[0] for b in batch]), [b[1] for b in batch]


class Detector(nn.Module):
    """Backbone, its final-norm patch tokens as the one feature level of torchvision's FCOS:
    FCOSHead (W, 1, K, num_convs=0) under torchvision's names (head.classification_head.*,
    head.regression_head.*), an AnchorGenerator of one size (the patch) and aspect 1, its
    matching, losses and postprocessing (score 0.05, top 1000, NMS 0.6, 100 per image)."""

    def __init__(self, backbone, n_classes, dim):
        super().__init__()
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.fcos import FCOSHead

        class Grid(nn.Module):
            out_channels = dim

        class CountingHead(FCOSHead):
            """FCOSHead that keeps the foreground count of its last loss (the divisor)."""

            def compute_loss(self, targets, head_outputs, anchors, matched_idxs):
                self.n_foreground = sum(int((m >= 0).sum()) for m in matched_idxs)
                return super().compute_loss(targets, head_outputs, anchors, matched_idxs)

        self.backbone = backbone
        self.patch = backbone.patch_embed.proj.kernel_size[0]
        self.head = CountingHead(dim, 1, n_classes, num_convs=0)
        fcos = FCOS(Grid(), num_classes=n_classes,
                    anchor_generator=AnchorGenerator(((self.patch,),), ((1.0,),)),
                    head=self.head, score_thresh=0.05, nms_thresh=0.6, detections_per_img=100,
                    topk_candidates=1000)
        self._fcos = [fcos]   # not a submodule: its parameters are self.head's

    def forward(self, x):
        b = self.backbone
        t = b.forward_features(x)[:, b.num_prefix_tokens:]
        g = x.shape[-1] // self.patch
        return self.head([t.transpose(1, 2).reshape(t.shape[0], t.shape[2], g, g)]), g

    def anchors(self, n, S, g):
        from torchvision.models.detection.image_list import ImageList
        il = ImageList(torch.zeros(n, 1, S, S), [(S, S)] * n)
        return self._fcos[0].anchor_generator(il, [torch.zeros(n, 1, g, g)])

    def loss(self, out, g, targets, S):
        tg = [{"boxes": t["boxes"], "labels": t["labels"]} for t in targets]
        losses = self._fcos[0].compute_loss(tg, out, self.anchors(len(tg), S, g), [g * g])
        return sum(losses.values())

    def detect(self, out, g, S):
        n = out["cls_logits"].shape[0]
        split = {k: [v] for k, v in out.items()}
        anchors = [[a] for a in self.anchors(n, S, g)]
        return self._fcos[0].postprocess_detections(split, anchors, [(S, S)] * n)


def coco_ap(gts, dts, n_classes):
    """pycocotools' COCOeval (bbox, area all, 100 detections): gts [(image, label, box)],
    dts [(image, label, box, score)], boxes x0 y0 x1 y1. Returns metrics.jsonl's val_map, val_map50,
    val_map75, val_ar100 and the per-class AP and AP50 (None for a class without ground truth;
    class 0, the background, is never scored)."""
    def iou(a, b):
        w = min(a[2], b[2]) - max(a[0], b[0])
        h = min(a[3], b[3]) - max(a[1], b[1])
        if w <= 0 or h <= 0:
            return 0.0
        i = w * h
        return i / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - i)
    T = np.linspace(0.5, 0.95, 10)
    R = np.linspace(0, 1, 101)
    ap = np.full((10, n_classes), -1.0)
    ar = np.full((10, n_classes), -1.0)
    for k in range(1, n_classes):
        g_by = {}
        for im, lab, box in gts:
            if lab == k:
                g_by.setdefault(im, []).append(box)
        n_gt = sum(len(v) for v in g_by.values())
        if n_gt == 0:
            continue
        d_by = {}
        for i, (im, lab, box, sc) in enumerate(dts):
            if lab == k:
                d_by.setdefault(im, []).append((sc, i, box))
        for t_i, t in enumerate(T):
            scored = []
            for im, ds in sorted(d_by.items()):
                ds = sorted(ds, key=lambda d: -d[0])[:100]
                gs = g_by.get(im, [])
                taken = [False] * len(gs)
                for sc, i, box in ds:
                    best, best_iou = -1, min(t, 1 - 1e-10)
                    for j, gb in enumerate(gs):
                        if taken[j]:
                            continue
                        v = iou(box, gb)
                        if v >= best_iou:
                            best, best_iou = j, v
                    if best >= 0:
                        taken[best] = True
                    scored.append((sc, best >= 0))
            scored.sort(key=lambda x: -x[0])
            tp = np.cumsum([m for _, m in scored]) if scored else np.zeros(0)
            fp = np.cumsum([not m for _, m in scored]) if scored else np.zeros(0)
            rc = tp / n_gt
            pr = tp / (tp + fp + np.spacing(1))
            pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
            idx = np.searchsorted(rc, R, side="left")
            q = np.array([pr[i] if i < len(pr) else 0.0 for i in idx])
            ap[t_i, k] = q.mean()
            ar[t_i, k] = rc[-1] if len(rc) else 0.0
    have = ap[0] > -1
    mean = lambda a: float(a[:, have].mean()) if have.any() else None
    at = lambda t: float(ap[t, have].mean()) if have.any() else None
    return {"val_map": mean(ap), "val_map50": at(0), "val_map75": at(5), "val_ar100": mean(ar),
            "val_class_ap": [float(ap[:, k].mean()) if have[k] else None for k in range(n_classes)],
            "val_class_ap50": [float(ap[0, k]) if have[k] else None for k in range(n_classes)]}


def det_validate(model, x, targets, S, acc, index):
    """This rank's share of a validation batch of a detector: the FCOS loss's sum at size S and
    its foreground count (returned: the batch's loss is the ranks' sums over their foreground),
    and its detections (score 0.05, top 1000, NMS 0.6, 100 per image) scaled to each image's own
    pixels beside the annotated boxes there, under the items' global indices."""
    out, g = model(x)
    tg = [{"boxes": t["boxes"].to(x.device), "labels": t["labels"].to(x.device)} for t in targets]
    loss = model.loss(out, g, tg, S).item()
    fg = model.head.n_foreground
    for j, res in enumerate(model.detect(out, g, S)):
        W, H = targets[j]["size"]
        k = torch.tensor([W / S, H / S, W / S, H / S])
        for b, sc, lb in zip((res["boxes"].cpu() * k).tolist(), res["scores"].tolist(),
                             res["labels"].tolist()):
            acc["dts"].append((index[j], lb, b, sc))
        for b, lb in zip(targets[j]["own"], targets[j]["labels_own"]):
            acc["gts"].append((index[j], lb, b))
    return loss * max(fg, 1), fg


# ----------------------------------------------------------------------------- layer groups


def layer_groups(model, depth):
    """timm's ViT grouping as vitlab uses it: stem, blocks.0 … blocks.{depth-1}, the final norm,
    SigLIP's attention pool when there is one, the head (the seg head, decode_head.*, for
    segmentation). Returns a list of (group name, [(param name, param)])."""
    pool = any(n.startswith(("attn_pool.", "backbone.attn_pool.")) for n, _ in model.named_parameters())
    groups = [("stem", [])] + [(f"blocks.{i}", []) for i in range(depth)] + [("norm", [])] + \
        ([("attn_pool", [])] if pool else []) + [("head", [])]
    for name, p in model.named_parameters():
        n = name[len("backbone."):] if name.startswith("backbone.") else name
        if n.startswith("head.") or n.startswith("decode_head."):
            g = len(groups) - 1
        elif n.startswith("attn_pool."):
            g = depth + 2
        elif n.startswith("blocks."):
            g = 1 + int(n.split(".")[1])
        elif n.startswith("norm.") or n.startswith("fc_norm."):
            g = depth + 1
        else:
            g = 0      # patch_embed, cls_token, reg_token, pos_embed, norm_pre
        groups[g][1].append((n, p))
    return groups


def layer_scales(names, decay):
    """timm's param_groups_layer_decay: the final norm shares the last block's layer id, the head
    an attention pool's (timm's group_matcher leaves both to the last ordinal)."""
    ids, nxt = [], 0
    for g, name in enumerate(names):
        merge = g > 0 and (name == "norm" or (name == "head" and names[g - 1] == "attn_pool"))
        ids.append(ids[-1] if merge else nxt)
        if not merge:
            nxt += 1
    top = nxt - 1
    return [decay ** (top - i) for i in ids]


def parse_schedule(text):
    """'0:1,2:4,4:all' -> [(0, 1), (2, 4), (4, None)] (None: every group)."""
    out = []
    for part in text.split(","):
        e, _, n = part.partition(":") if ":" in part else ("0", "", part)
        out.append((int(e), None if n.strip() == "all" else int(n)))
    return out


def unlocked_at(sched, epoch):
    n = sched[0][1]
    for e, k in sched:
        if epoch >= e:
            n = k
    return n

# ----------------------------------------------------------------------------- AdamW


class AdamW:
    """AdamW as vitlab runs it: decoupled weight decay (none for 1-D tensors, pos_embed,
    cls_token, reg_token: timm's rule), and per-parameter step counts, so a group unlocked
    later starts its own bias correction; moments of groups already training are kept."""

    NO_DECAY = ("pos_embed", "cls_token", "reg_token", "dist_token")

    def __init__(self, named, wd, beta1, beta2, eps):
        self.named = named     # [(name, param, lr scale)]
        self.wd, self.b1, self.b2, self.eps = wd, beta1, beta2, eps
        self.state = {}

    @torch.no_grad()
    def step(self, lr, trainable):
        for name, p, scale in self.named:
            if name not in trainable or p.grad is None:
                continue
            st = self.state.setdefault(name, {"step": 0, "m": torch.zeros_like(p),
                                              "v": torch.zeros_like(p)})
            st["step"] += 1
            t = st["step"]
            g = p.grad
            plr = lr * scale
            wd = 0.0 if p.ndim <= 1 or name.split(".")[-1] in self.NO_DECAY else self.wd
            if wd:
                p.mul_(1.0 - plr * wd)
            st["m"].mul_(self.b1).add_(g, alpha=1.0 - self.b1)
            st["v"].mul_(self.b2).addcmul_(g, g, value=1.0 - self.b2)
            denom = (st["v"] / (1.0 - self.b2 ** t)).sqrt_().add_(self.eps)
            p.addcdiv_(st["m"], denom, value=-plr / (1.0 - self.b1 ** t))


def lr_at(h, step, spe):
    total = h["epochs"] * spe
    warm = min(int(math.floor(h["warmup_epochs"] * spe + 0.5)), total)
    if step < warm:
        return h["lr"] * (step + 1) / warm
    prog = min(max((step - warm) / max(total - warm, 1), 0.0), 1.0)
    return h["min_lr"] + (h["lr"] - h["min_lr"]) * 0.5 * (1.0 + math.cos(math.pi * prog))

# ----------------------------------------------------------------------------- data

IMAGE_EXT = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm")


def rel_to(path, base):
    """A run's item path relative to its dataset folder (for matching on another machine)."""
    return os.path.relpath(path, base) if base else path


def scan_classes(root, classes):
    items = []
    for k, c in enumerate(classes):
        d = os.path.join(root, c)
        if not os.path.isdir(d):
            raise SystemExit(f"{d}: missing: run.json names the class '{c}'")
        for dp, _, files in sorted(os.walk(d)):
            for f in sorted(files):
                if f.lower().endswith(IMAGE_EXT):
                    items.append((os.path.join(dp, f), k))
    return items


def read_targets(csv_path, names):
    items = []
    with open(csv_path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows:
        raise SystemExit(f"{csv_path}: empty")
    head = [c.strip() for c in rows[0]]
    if head[1:] != list(names):
        raise SystemExit(f"{csv_path}: line 1: the targets {head[1:]} are not the run's {names}")
    base = os.path.dirname(csv_path)
    for i, r in enumerate(rows[1:], start=2):
        if not r:
            continue
        if len(r) != len(head):
            raise SystemExit(f"{csv_path}: line {i}: {len(r)} fields, expected {len(head)}")
        try:
            vals = [float(v) for v in r[1:]]
        except ValueError:
            raise SystemExit(f"{csv_path}: line {i}: a value is not a number")
        items.append((os.path.join(base, r[0].strip()), vals))
    return items


def build_items(data, run):
    """(train items, val items) of (path, label or target list), split as the run was: the
    folder's train/ and val/, or else run.json's list of validation items."""
    task = run["task"]["kind"]
    d = run["data"]
    old_base = d.get("spec_typed") and d.get("spec") or ""
    val_names = {rel_to(p, old_base) for p in d["split"].get("val_items", [])}

    def load(root):
        if task == "regress":
            return read_targets(os.path.join(root, "targets.csv"), run["task"]["targets"])
        return scan_classes(root, d["classes"])

    if os.path.isdir(os.path.join(data, "train")) and os.path.isdir(os.path.join(data, "val")):
        return load(os.path.join(data, "train")), load(os.path.join(data, "val"))
    items = load(data)
    train = [it for it in items if rel_to(it[0], data) not in val_names]
    val = [it for it in items if rel_to(it[0], data) in val_names]
    if not val:
        raise SystemExit(f"{data}: none of run.json's validation items is in this folder "
                         f"(give a folder with train/ and val/)")
    return train, val


class ImageItems(torch.utils.data.Dataset):
    def __init__(self, items, tf, chans, mean=None, std=None):
        self.items, self.tf, self.mode = items, tf, "L" if chans == 1 else "RGB"
        self.mean, self.std = mean, std

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, y = self.items[i]
        try:
            x = self.tf(open_upright(path, self.mode)[0])
        except OSError as e:
            raise RuntimeError(f"{path}: cannot be decoded ({e})")
        if isinstance(y, list):
            y = (torch.tensor(y) - self.mean) / self.std
        return x, y


class VitlabOrder:
    """Batches of this process in vitlab's order (order.json): global batch b of an epoch is
    items [b * B, (b + 1) * B) of the epoch's list, and this process takes every world-th."""

    def __init__(self, path, items, data, batch, world, rank):
        try:
            with open(path, encoding="utf-8") as f:
                o = json.load(f)
        except (OSError, ValueError) as e:
            raise SystemExit(f"{path}: cannot read the data order ({e})")
        index = {os.path.relpath(p, data): i for i, (p, _) in enumerate(items)}
        self.epochs = []
        for e, names in enumerate(o["epochs"]):
            missing = [n for n in names if n not in index]
            if missing or len(names) != len(items):
                raise SystemExit(f"{path}: epoch {e}: {len(names)} items for {len(items)} training "
                                 f"images" + (f", {missing[0]} is not among them" if missing else ""))
            self.epochs.append([index[n] for n in names])
        self.batch, self.world, self.rank, self.epoch = batch, world, rank, 0

    def set_epoch(self, epoch):
        if epoch >= len(self.epochs):
            raise SystemExit(f"order.json holds {len(self.epochs)} epochs; epoch {epoch + 1} has no order")
        self.epoch = epoch

    def __len__(self):
        return (len(self.epochs[0]) + self.batch - 1) // self.batch

    def __iter__(self):
        order = self.epochs[self.epoch]
        for b in range(0, len(order), self.batch):
            yield order[b:b + self.batch][self.rank::self.world]


def transforms_for(cfg, augment):
    pc = cfg["pretrained_cfg"]
    size = pc["input_size"][-1]
    interp = {"bicubic": transforms.InterpolationMode.BICUBIC,
              "bilinear": transforms.InterpolationMode.BILINEAR,
              "nearest": transforms.InterpolationMode.NEAREST}[pc.get("interpolation", "bicubic")]
    norm = [transforms.ToTensor(), transforms.Normalize(pc["mean"], pc["std"])]
    if pc.get("crop_mode") == "squash":   # SigLIP's processors: the whole image, no crop
        evaltf = transforms.Compose([transforms.Resize((size, size), interpolation=interp)] + norm)
    else:
        evaltf = transforms.Compose([transforms.Resize(int(math.floor(size / pc.get("crop_pct", 1.0))),
                                                       interpolation=interp),
                                     transforms.CenterCrop(size)] + norm)
    if augment == "none":
        return evaltf, evaltf
    tr = [transforms.RandomResizedCrop(size, scale=(0.35, 1.0), ratio=(3 / 4, 4 / 3),
                                       interpolation=transforms.InterpolationMode.BICUBIC),
          transforms.RandomHorizontalFlip()]
    if augment == "strong":
        tr += [transforms.ColorJitter(0.4, 0.4, 0.4),
               transforms.RandAugment(num_ops=2, magnitude=9, num_magnitude_bins=31)]
    return transforms.Compose(tr + norm), evaltf

# ----------------------------------------------------------------------------- the run


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description="A vitlab run's recipe in PyTorch (DDP).")
    ap.add_argument("--data", required=True, help="the dataset folder (class folders, train/ + val/, or targets.csv)")
    ap.add_argument("--out", required=True, help="the run folder to write")
    ap.add_argument("--recipe", default=os.path.join(here, "run.json"), help="the run's run.json")
    ap.add_argument("--backbone", help="the backbone folder (default: run.json's)")
    ap.add_argument("--epochs", type=int, help="epochs (default: run.json's)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--workers", type=int, default=2, help="data loader processes per rank")
    ap.add_argument("--vitlab-order", nargs="?", const=os.path.join(here, "order.json"),
                    help="take each epoch's data order from export-recipe --with-order's order.json "
                         "(each global batch split across the processes), to compare with vitlab")
    ap.add_argument("--print-every", type=int, default=10, help="print the batch loss every K steps (0: never)")
    args = ap.parse_args()

    try:
        with open(args.recipe, encoding="utf-8") as f:
            run = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{args.recipe}: cannot read the recipe ({e})")
    if run.get("format") != "vitlab-run":
        raise SystemExit(f"{args.recipe}: not a vitlab run.json")
    task = run.get("task", {"kind": "classify"})["kind"]
    if task not in ("classify", "regress", "segment", "detect"):
        raise SystemExit(f"{args.recipe}: task '{task}': this script trains classify, regress, "
                         f"segment and detect")
    bb = run["backbone"]
    if run.get("unlock_mask"):
        raise SystemExit(f"{args.recipe}: unlock_mask {run['unlock_mask']}: only unlock schedules are exported")
    h = dict(run["hyperparameters"])
    if args.epochs:
        h["epochs"] = args.epochs

    for f in ("model.safetensors", "optimizer.safetensors"):
        if os.path.exists(os.path.join(args.out, f)):
            raise SystemExit(f"{args.out}: already holds a run ({f}); choose another folder")

    # ---- processes
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    if args.device == "cuda":
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    ddp = world > 1
    if ddp:
        dist.init_process_group("nccl" if args.device == "cuda" else "gloo")
    if h["batch_size"] % world:
        raise SystemExit(f"batch size {h['batch_size']} is not divisible by {world} processes")
    per_rank = h["batch_size"] // world
    seed = int(run.get("seed", 0))
    torch.manual_seed(seed)

    # ---- the backbone
    bdir = args.backbone or (os.path.join(here, "backbone")
                             if os.path.isdir(os.path.join(here, "backbone")) else bb["path"])
    cfg_path = os.path.join(bdir, "config.json")
    try:
        with open(cfg_path, encoding="utf-8") as f:
            cfg = json.load(f)
    except (OSError, ValueError) as e:
        raise SystemExit(f"{cfg_path}: cannot read the backbone's config ({e}); give --backbone")
    if "model_args" not in cfg:
        raise SystemExit(f"{cfg_path}: not in timm's layout (no model_args); export the backbone "
                         f"with 'vitlab-cli export BACKBONE --format timm --out DIR' first")
    a = dict(cfg["model_args"])
    if a.get("act_layer") not in (None, "gelu", "gelu_tanh") or cfg.get("vitlab", {}).get("embed_dim", 0):
        raise SystemExit(f"{cfg_path}: a projection or activation {a.get('act_layer')}: this "
                         f"script builds timm's plain ViT")
    with_pool = a.get("global_pool") == "map"
    if bb.get("layer_groups") not in (None, a["depth"] + 3 + with_pool):
        raise SystemExit(f"{args.recipe}: {bb['layer_groups']} layer groups: this script groups "
                         f"timm's way (stem, {a['depth']} blocks, norm, "
                         f"{'attn_pool, ' if with_pool else ''}head)")
    eps = cfg.get("layer_norm_eps", 1e-6)
    backbone, impl = timm_backbone(a, eps)
    sd = read_safetensors(os.path.join(bdir, "model.safetensors"))
    own = backbone.state_dict()
    missing = [k for k in own if k not in sd]
    if missing:
        raise SystemExit(f"{bdir}/model.safetensors: missing {missing[0]} (and {len(missing) - 1} more)")
    backbone.load_state_dict({k: torch.from_numpy(sd[k]) for k in own})
    dim = a["embed_dim"]
    depth = a["depth"]
    hd = run["head"]
    n_out = hd["num_classes"]
    hidden = hd.get("mlp_hidden") or dim
    if task == "segment":
        model = Segmenter(backbone, run["task"].get("seg_head", "linear"), n_out, dim)
        head, prefix = model.decode_head, "decode_head."
        hpath = os.path.join(bdir, "seg_head.safetensors")
        if os.path.isfile(hpath):
            sd.update(read_safetensors(hpath))
    elif task == "detect":
        model = Detector(backbone, n_out, dim)
        head, prefix = model.head, "head."
        hpath = os.path.join(bdir, "det_head.safetensors")
        if os.path.isfile(hpath):
            sd.update(read_safetensors(hpath))
    else:
        model = Classifier(backbone, hd["pool"], hd["kind"], hidden, n_out, dim)
        head, prefix = model.head, "head."
    # the head: as vitlab initialised it when the exported backbone carries it (export-recipe
    # writes it with the run's seed), else PyTorch's (mmseg's for conv_seg) from torch's generator
    head_sd = head.state_dict()
    if all((prefix + k) in sd and tuple(sd[prefix + k].shape) == tuple(v.shape)
           for k, v in head_sd.items()):
        head.load_state_dict({k: torch.from_numpy(sd[prefix + k]) for k in head_sd})
        head_from = "vitlab's initialisation"
    else:
        torch.manual_seed(seed)
        for m in head.modules():
            if isinstance(m, (nn.Linear, nn.ConvTranspose2d)):
                m.reset_parameters()
            elif isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.01)
                nn.init.zeros_(m.bias)
        if task == "detect":   # torchvision's prior 0.01 on the class logits
            nn.init.constant_(model.head.classification_head.cls_logits.bias,
                              -math.log((1 - 0.01) / 0.01))
        head_from = f"torch.manual_seed({seed})"
    model.to(device)

    groups = layer_groups(model, depth)
    scales = layer_scales([name for name, _ in groups], h["layer_decay"])
    named = [(n, p, scales[g]) for g, (_, ps) in enumerate(groups) for n, p in ps]
    opt = AdamW(named, h["weight_decay"], h["beta1"], h["beta2"], h["eps"])
    sched = parse_schedule(run["unlock_schedule"])

    # ---- data
    mean = std = None
    chans = a.get("in_chans", 3)
    collate = None
    S = int(run["task"].get("img_size") or cfg["pretrained_cfg"]["input_size"][-1])
    pc = cfg["pretrained_cfg"]
    if task == "segment":
        train_items, val_items = seg_items(args.data, run)
        train_ds = SegItems(train_items, S, chans, pc["mean"], pc["std"], n_out, h["augment"], True)
        val_ds = SegItems(val_items, S, chans, pc["mean"], pc["std"], n_out, "none", False)
        collate = seg_collate
    elif task == "detect":
        train_items, val_items = det_items(args.data, run)
        train_ds = DetItems(train_items, S, chans, pc["mean"], pc["std"], h["augment"], True)
        val_ds = DetItems(val_items, S, chans, pc["mean"], pc["std"], "none", False)
        collate = det_collate
    else:
        train_items, val_items = build_items(args.data, run)
        if task == "regress":
            mean = torch.tensor(run["task"]["mean"], dtype=torch.float32)
            std = torch.tensor(run["task"]["std"], dtype=torch.float32)
        train_tf, eval_tf = transforms_for(cfg, h["augment"])
        train_ds = ImageItems(train_items, train_tf, chans, mean, std)
        val_ds = ImageItems(val_items, eval_tf, chans, mean, std)
    if args.vitlab_order:
        sampler = VitlabOrder(args.vitlab_order, train_items, args.data, h["batch_size"], world, rank)
        train_dl = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler,
                                               num_workers=args.workers, collate_fn=collate)
    else:
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
        train_dl = torch.utils.data.DataLoader(train_ds, batch_size=per_rank, sampler=sampler,
                                               num_workers=args.workers, drop_last=False,
                                               collate_fn=collate)
    if task in ("segment", "detect"):
        # every rank scores its own items (no padding: the sums are reduced, not the items)
        val_dl = torch.utils.data.DataLoader(
            torch.utils.data.Subset(val_ds, range(rank, len(val_ds), world)),
            batch_size=per_rank, num_workers=args.workers, collate_fn=collate)
    else:
        val_sampler = torch.utils.data.distributed.DistributedSampler(
            val_ds, num_replicas=world, rank=rank, shuffle=False)
        val_dl = torch.utils.data.DataLoader(val_ds, batch_size=per_rank, sampler=val_sampler,
                                             num_workers=args.workers)
    spe = len(train_dl)

    if rank == 0:
        os.makedirs(args.out, exist_ok=True)
        print(f"train.py: {len(train_items)} train / {len(val_items)} val images, {world} "
              f"process(es) x batch {per_rank}, {spe} steps per epoch, ViT from {impl}, head from "
              f"{head_from}, data order from "
              f"{args.vitlab_order or 'DistributedSampler'}", flush=True)

    def loss_fn(out, y):
        if task == "segment":
            # the mean over the batch's counted pixels (0 when every pixel is ignored, as vitlab)
            return F.cross_entropy(out, y, ignore_index=255) if (y != 255).any() else out.sum() * 0
        if task == "regress":
            y = y.to(out.dtype)
            if run["task"].get("loss") == "smooth-l1":
                return F.smooth_l1_loss(out, y, beta=1.0)
            return F.mse_loss(out, y)
        return F.cross_entropy(out, y, label_smoothing=h["label_smoothing"])

    wrapped = None
    wrapped_for = None
    step = 0
    metrics_path = os.path.join(args.out, "metrics.jsonl")
    if rank == 0 and os.path.exists(metrics_path):
        os.remove(metrics_path)
    best_val = math.inf
    for epoch in range(h["epochs"]):
        n_unl = unlocked_at(sched, epoch)
        n_unl = len(groups) if n_unl is None else min(n_unl, len(groups))
        train_groups = range(len(groups) - n_unl, len(groups))
        trainable = {n for g in train_groups for n, _ in groups[g][1]}
        for n, p, _ in named:
            p.requires_grad_(n in trainable)
        if wrapped_for != n_unl:     # DDP registers the parameters that need gradients
            wrapped = nn.parallel.DistributedDataParallel(model) if ddp else model
            wrapped_for = n_unl
        model.train()
        sampler.set_epoch(epoch)
        t0 = time.time()
        loss_sum = torch.zeros(2, dtype=torch.float64)
        for x, y in train_dl:
            if task == "segment":
                y = torch.stack(y)
            if task == "detect":
                x = x.to(device)
                y = [{k: (v.to(device) if torch.is_tensor(v) else v) for k, v in t.items()} for t in y]
            else:
                x, y = x.to(device), y.to(device)
            lr = lr_at(h, step, spe)
            out = wrapped(x)
            loss = model.loss(*out, y, S) if task == "detect" else loss_fn(out, y)
            for _, p, _ in named:
                p.grad = None
            # the global batch's mean: DDP averages the processes' gradients, so each process
            # weighs its mean by its share of the global batch (shares differ in a last batch;
            # for segmentation the share of counted pixels)
            # (for detection the share of foreground locations, FCOS's divisor)
            n_local = float((y != 255).sum()) if task == "segment" else \
                float(max(model.head.n_foreground, 1)) if task == "detect" else float(len(x))
            n_global = torch.tensor([n_local, float(len(x))], dtype=torch.float64)
            if ddp:
                dist.all_reduce(n_global)
            share = n_local / max(n_global[0].item(), 1.0)   # this rank's part of the batch's loss
            (loss * (share * world)).backward()
            if h["clip_grad"] > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p, _ in named if p.grad is not None],
                                               h["clip_grad"])
            opt.step(lr, trainable)
            # summed over the ranks: the global batch's loss times its images, and the images
            loss_sum += torch.tensor([loss.item() * share * n_global[1].item(), len(x)],
                                     dtype=torch.float64)
            step += 1
            if rank == 0 and args.print_every and (step % args.print_every == 0 or step % spe == 1):
                print(f"epoch {epoch + 1}/{h['epochs']} batch {(step - 1) % spe + 1}/{spe} loss "
                      f"{loss.item():.4f} lr {lr:.2e}", flush=True)
        train_s = time.time() - t0
        if ddp:
            dist.all_reduce(loss_sum)
        train_loss = (loss_sum[0] / loss_sum[1]).item()
        n_seen = int(loss_sum[1].item())

        # ---- validation (every rank its share, reduced)
        model.eval()
        outs, ys = [], []
        score = SegScore(n_out) if task == "segment" else None
        det_val = {"loss": 0.0, "n": 0, "gts": [], "dts": []} if task == "detect" else None
        with torch.no_grad():
            if det_val is not None:
                # vitlab's validation batches (batch_size in order), each split over the ranks:
                # FCOS divides a batch's loss by the batch's foreground count
                B = h["batch_size"]
                for b0 in range(0, len(val_ds), B):
                    idx = list(range(b0, min(b0 + B, len(val_ds))))[rank::world]
                    part = torch.zeros(2, dtype=torch.float64)
                    if idx:
                        x, y = det_collate([val_ds[i] for i in idx])
                        part += torch.tensor(det_validate(model, x.to(device), y, S, det_val, idx),
                                             dtype=torch.float64)
                    if ddp:
                        dist.all_reduce(part)
                    n_b = min(b0 + B, len(val_ds)) - b0
                    det_val["loss"] += part[0].item() / max(part[1].item(), 1.0) * n_b
                    det_val["n"] += n_b
            for x, y in ([] if det_val is not None else val_dl):
                z = model(x.to(device)).float().cpu()
                if score is not None:
                    for j in range(len(y)):
                        score.add(z[j], y[j])
                    continue
                outs.append(z)
                ys.append(y)
        if score is not None and ddp:
            dist.all_reduce(score.t)
        if det_val is not None and ddp:
            parts = [None] * world
            dist.all_gather_object(parts, det_val)
            det_val = {"loss": det_val["loss"], "n": det_val["n"],
                       "gts": [g for p in parts for g in p["gts"]],
                       "dts": [d for p in parts for d in p["dts"]]}
        o = torch.cat(outs) if outs else torch.zeros(0, n_out)
        yv = torch.cat(ys) if ys else torch.zeros(0)
        if ddp and score is None and det_val is None:
            gathered = [None] * world
            dist.all_gather_object(gathered, (o, yv))
            # rank r holds items r, r + world, ... (padded by repeating from the start)
            per = {}
            for r, (oo, yy) in enumerate(gathered):
                for j in range(len(oo)):
                    per.setdefault(r + j * world, (oo[j], yy[j]))
            o = torch.stack([per[i][0] for i in range(len(val_ds))])
            yv = torch.stack([per[i][1] for i in range(len(val_ds))])
        seconds = time.time() - t0
        line = {"task": task, "epoch": epoch, "step": step, "unlocked": n_unl, "cached": False,
                "lr": lr_at(h, max(step - 1, 0), spe), "train_loss": train_loss}
        if score is not None:
            line.update(score.metrics())
            line["val_images"] = len(val_ds)
            val_loss = line["val_loss"]
        elif det_val is not None:
            val_loss = det_val["loss"] / max(det_val["n"], 1)
            line["val_loss"] = val_loss
            line.update(coco_ap(det_val["gts"], det_val["dts"], n_out))
            line.update({"val_images": len(val_ds), "val_boxes": len(det_val["gts"]),
                         "val_detections": len(det_val["dts"]), "val_at": "own size"})
        elif task == "regress":
            val_loss = loss_fn(o, yv).item()
            pred = o * std + mean
            true = yv * std + mean
            err = pred - true
            mae = err.abs().mean(0).double()
            rmse = err.pow(2).mean(0).sqrt().double()
            var = (true - true.mean(0)).pow(2).sum(0).double()
            r2 = 1.0 - err.pow(2).sum(0).double() / var
            line.update({"val_loss": val_loss, "val_mae": mae.mean().item(),
                         "val_rmse": rmse.mean().item(), "val_r2": r2.mean().item(),
                         "val_images": len(yv), "val_mae_per_target": mae.tolist(),
                         "val_rmse_per_target": rmse.tolist(), "val_r2_per_target": r2.tolist()})
        else:
            val_loss = F.cross_entropy(o, yv).item()   # vitlab's validation loss: no smoothing
            pred = o.argmax(1)
            conf = torch.zeros(n_out, n_out, dtype=torch.long)
            for t_, p_ in zip(yv.tolist(), pred.tolist()):
                conf[t_, p_] += 1
            top5 = None
            if n_out > 5:
                top5 = (o.topk(5, 1).indices == yv[:, None]).any(1).float().mean().item()
            rows = conf.sum(1)
            line.update({"val_loss": val_loss, "val_top1": (pred == yv).float().mean().item(),
                         "val_top5": top5, "val_images": len(yv),
                         "val_class_acc": [(conf[k, k] / rows[k]).item() if rows[k] else None
                                           for k in range(n_out)],
                         "val_confusion": conf.tolist()})
        best = val_loss < best_val
        best_val = min(best_val, val_loss)
        line.update({"seconds": seconds, "images_per_s": n_seen / max(train_s, 1e-9), "best": best})
        if rank == 0:
            save_run(args, run, cfg, model, h, epoch, step, spe, len(train_items), len(val_items),
                     val_items, line, bdir)
            print(f"epoch {epoch + 1}/{h['epochs']}  train_loss {train_loss:.4f}  val_loss "
                  f"{val_loss:.4f}  unlocked {n_unl}  {seconds:.1f} s", flush=True)
    if ddp:
        dist.barrier()
        dist.destroy_process_group()


def save_run(args, run, cfg, model, h, epoch, step, spe, n_train, n_val, val_items, line, bdir):
    """model.safetensors + config.json (vitlab's timm layout), run.json, one metrics line."""
    out = args.out
    kind = run.get("task", {}).get("kind", "classify")
    tensors, seg = {}, {}
    for name, t in model.state_dict().items():
        n = name[len("backbone."):] if name.startswith("backbone.") else name
        if n.startswith("head.") and not n.endswith(("weight", "bias")):
            continue
        dense_head = n.startswith("decode_head.") or (kind == "detect" and n.startswith("head."))
        (seg if dense_head else tensors)[n] = t.detach().float().cpu().numpy()
    a = dict(cfg["model_args"])
    hd = run["head"]
    # segmentation and detection: the backbone has no classification head; the task's head is a
    # file of its own
    dense = kind in ("segment", "detect")
    n_cls = 0 if dense else hd["num_classes"]
    write_safetensors(os.path.join(out, "model.safetensors"), tensors,
                      {"format": "pt", "num_heads": str(a["num_heads"])})
    if kind == "segment":
        write_safetensors(os.path.join(out, "seg_head.safetensors"), seg,
                          {"format": "vitlab-seg-head",
                           "seg_head": run["task"].get("seg_head", "linear")})
    elif kind == "detect":
        write_safetensors(os.path.join(out, "det_head.safetensors"), seg,
                          {"format": "vitlab-det-head", "det_head": "fcos"})
    c = dict(cfg)
    a["num_classes"] = n_cls
    a["global_pool"] = hd["pool"]
    c.update({"num_classes": n_cls, "num_features": a["embed_dim"],
              "global_pool": hd["pool"], "model_args": a,
              "vitlab": {"head": "none" if dense else hd["kind"], "embed_dim": 0,
                         "group_layout": "timm"}})
    if hd["kind"] == "mlp" and not dense:
        c["vitlab"]["mlp_hidden"] = hd.get("mlp_hidden") or a["embed_dim"]
    pc = dict(c.get("pretrained_cfg", {}))
    pc["num_classes"] = n_cls
    c["pretrained_cfg"] = pc
    c.pop("label_names", None)
    if kind == "regress":
        c["label_names"] = run["task"]["targets"]
    elif kind == "classify":
        c["label_names"] = run["data"]["classes"]
    write_text(os.path.join(out, "config.json"), json.dumps(c, indent=2) + "\n")
    r = json.loads(json.dumps(run))
    r["created"] = datetime.datetime.utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    r["trained_by"] = {"script": "train.py", "processes": int(os.environ.get("WORLD_SIZE", "1")),
                       "torch": torch.__version__, "recipe": os.path.abspath(args.recipe)}
    r["backbone"]["path"] = os.path.abspath(bdir)
    r["hyperparameters"]["epochs"] = h["epochs"]
    r["hyperparameters"]["steps_per_epoch"] = spe
    r["data"]["spec"] = os.path.abspath(args.data)
    r["data"]["spec_typed"] = args.data
    r["data"]["split"]["train"] = n_train
    r["data"]["split"]["val"] = n_val
    r["data"]["split"]["val_items"] = [os.path.abspath(p) for p, _ in val_items]
    write_text(os.path.join(out, "run.json"), json.dumps(r, indent=2) + "\n")
    with open(os.path.join(out, "metrics.jsonl"), "a", encoding="utf-8") as f:
        f.write(json.dumps({k: finite_or_none(v) for k, v in line.items()},
                           separators=(",", ":"), allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


if __name__ == "__main__":
    main()

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


class Mlp(nn.Module):
    def __init__(self, dim, hidden):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, heads, mlp_ratio, qkv_bias, init_values, eps):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads, qkv_bias)
        self.ls1 = LayerScale(dim, init_values) if init_values else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.ls2 = LayerScale(dim, init_values) if init_values else nn.Identity()

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


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
                  a.get("init_values"), eps) for _ in range(depth)])
        use_fc_norm = a.get("fc_norm", False)
        self.norm = nn.Identity() if use_fc_norm else nn.LayerNorm(dim, eps=eps)
        self.fc_norm = nn.LayerNorm(dim, eps=eps) if use_fc_norm else nn.Identity()

    def forward_features(self, x):
        x = self.patch_embed(x)
        prefix = []
        if self.has_class_token:
            prefix.append(self.cls_token.expand(x.shape[0], -1, -1))
        if self.num_reg:
            prefix.append(self.reg_token.expand(x.shape[0], -1, -1))
        if self.no_embed_class:
            x = torch.cat(prefix + [x + self.pos_embed], dim=1)
        else:
            x = torch.cat(prefix + [x], dim=1) + self.pos_embed
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
                            "init_values") if k in a}
    from functools import partial
    m = tv.VisionTransformer(num_classes=0, global_pool="token" if a.get("class_token", True)
                             else "avg", norm_layer=partial(nn.LayerNorm, eps=eps), **kw)
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
        if self.pool == "token" and getattr(b, "has_class_token", npt > 0):
            f = t[:, 0]
        elif self.pool == "max":
            f = t[:, npt:].amax(dim=1)
        else:
            f = t[:, npt:].mean(dim=1)
        f = b.fc_norm(f) if hasattr(b, "fc_norm") else f
        return self.head(f)

# ----------------------------------------------------------------------------- layer groups


def layer_groups(model, depth):
    """timm's ViT grouping as vitlab uses it: stem, blocks.0 … blocks.{depth-1}, the final norm,
    the head. Returns a list of (group name, [(param name, param)])."""
    groups = [("stem", [])] + [(f"blocks.{i}", []) for i in range(depth)] + [("norm", []), ("head", [])]
    for name, p in model.named_parameters():
        n = name[len("backbone."):] if name.startswith("backbone.") else name
        if n.startswith("head."):
            g = depth + 2
        elif n.startswith("blocks."):
            g = 1 + int(n.split(".")[1])
        elif n.startswith("norm.") or n.startswith("fc_norm."):
            g = depth + 1
        else:
            g = 0      # patch_embed, cls_token, reg_token, pos_embed, norm_pre
        groups[g][1].append((n, p))
    return groups


def layer_scales(n_groups, decay):
    """timm's param_groups_layer_decay: the final norm shares the last block's layer id."""
    ids, nxt = [], 0
    for g in range(n_groups):
        merge = g == n_groups - 2       # the final norm
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
            with Image.open(path) as im:
                x = self.tf(im.convert(self.mode))
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
    if task not in ("classify", "regress"):
        raise SystemExit(f"{args.recipe}: task '{task}': this script trains classify and regress")
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
    if a.get("act_layer") not in (None, "gelu") or cfg.get("vitlab", {}).get("embed_dim", 0):
        raise SystemExit(f"{cfg_path}: a projection or activation {a.get('act_layer')}: this "
                         f"script builds timm's plain ViT")
    if bb.get("layer_groups") not in (None, a["depth"] + 3):
        raise SystemExit(f"{args.recipe}: {bb['layer_groups']} layer groups: this script groups "
                         f"timm's way (stem, {a['depth']} blocks, norm, head)")
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
    model = Classifier(backbone, hd["pool"], hd["kind"], hidden, n_out, dim)
    # the head: as vitlab initialised it when the exported backbone carries it (export-recipe
    # writes it with the run's seed), else nn.Linear's default from torch's generator
    head_sd = model.head.state_dict()
    if all(("head." + k) in sd and tuple(sd["head." + k].shape) == tuple(v.shape)
           for k, v in head_sd.items()):
        model.head.load_state_dict({k: torch.from_numpy(sd["head." + k]) for k in head_sd})
        head_from = "vitlab's initialisation"
    else:
        torch.manual_seed(seed)
        for m in model.head.modules():
            if isinstance(m, nn.Linear):
                m.reset_parameters()
        head_from = f"torch.manual_seed({seed})"
    model.to(device)

    groups = layer_groups(model, depth)
    scales = layer_scales(len(groups), h["layer_decay"])
    named = [(n, p, scales[g]) for g, (_, ps) in enumerate(groups) for n, p in ps]
    opt = AdamW(named, h["weight_decay"], h["beta1"], h["beta2"], h["eps"])
    sched = parse_schedule(run["unlock_schedule"])

    # ---- data
    train_items, val_items = build_items(args.data, run)
    mean = std = None
    if task == "regress":
        mean = torch.tensor(run["task"]["mean"], dtype=torch.float32)
        std = torch.tensor(run["task"]["std"], dtype=torch.float32)
    chans = a.get("in_chans", 3)
    train_tf, eval_tf = transforms_for(cfg, h["augment"])
    train_ds = ImageItems(train_items, train_tf, chans, mean, std)
    val_ds = ImageItems(val_items, eval_tf, chans, mean, std)
    if args.vitlab_order:
        sampler = VitlabOrder(args.vitlab_order, train_items, args.data, h["batch_size"], world, rank)
        train_dl = torch.utils.data.DataLoader(train_ds, batch_sampler=sampler,
                                               num_workers=args.workers)
    else:
        sampler = torch.utils.data.distributed.DistributedSampler(
            train_ds, num_replicas=world, rank=rank, shuffle=True, seed=seed, drop_last=False)
        train_dl = torch.utils.data.DataLoader(train_ds, batch_size=per_rank, sampler=sampler,
                                               num_workers=args.workers, drop_last=False)
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
            x, y = x.to(device), y.to(device)
            lr = lr_at(h, step, spe)
            out = wrapped(x)
            loss = loss_fn(out, y)
            for _, p, _ in named:
                p.grad = None
            # the global batch's mean: DDP averages the processes' gradients, so each process
            # weighs its mean by its share of the global batch (shares differ in a last batch)
            n_global = torch.tensor([float(len(x))])
            if ddp:
                dist.all_reduce(n_global)
            (loss * (len(x) * world / n_global.item())).backward()
            if h["clip_grad"] > 0:
                torch.nn.utils.clip_grad_norm_([p for _, p, _ in named if p.grad is not None],
                                               h["clip_grad"])
            opt.step(lr, trainable)
            loss_sum += torch.tensor([loss.item() * len(x), len(x)], dtype=torch.float64)
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
        with torch.no_grad():
            for x, y in val_dl:
                outs.append(model(x.to(device)).float().cpu())
                ys.append(y)
        o = torch.cat(outs) if outs else torch.zeros(0, n_out)
        yv = torch.cat(ys) if ys else torch.zeros(0)
        if ddp:
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
        if task == "regress":
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
    tensors = {}
    for name, t in model.state_dict().items():
        n = name[len("backbone."):] if name.startswith("backbone.") else name
        if n.startswith("head.") and not n.endswith(("weight", "bias")):
            continue
        tensors[n] = t.detach().float().cpu().numpy()
    a = dict(cfg["model_args"])
    hd = run["head"]
    write_safetensors(os.path.join(out, "model.safetensors"), tensors,
                      {"format": "pt", "num_heads": str(a["num_heads"])})
    c = dict(cfg)
    a["num_classes"] = hd["num_classes"]
    a["global_pool"] = hd["pool"]
    c.update({"num_classes": hd["num_classes"], "num_features": a["embed_dim"],
              "global_pool": hd["pool"], "model_args": a,
              "vitlab": {"head": hd["kind"], "embed_dim": 0, "group_layout": "timm"}})
    if hd["kind"] == "mlp":
        c["vitlab"]["mlp_hidden"] = hd.get("mlp_hidden") or a["embed_dim"]
    pc = dict(c.get("pretrained_cfg", {}))
    pc["num_classes"] = hd["num_classes"]
    c["pretrained_cfg"] = pc
    if run.get("task", {}).get("kind") == "regress":
        c["label_names"] = run["task"]["targets"]
    else:
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

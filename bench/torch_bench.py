#!/usr/bin/python3
"""PyTorch side of `make bench`: the same cases as `vitlab-cli bench`, one case per process.

    torch_bench.py step  --model vit-tiny|vit-small|--backbone DIR|--geometry SPEC [--img N]
                         [--batch 32] --mode infer|unlockN|full|stem-conv|stem-mbconv
                         [--task classify|segment|detect] [--seg-head linear|upconv]
                         [--classes K] [--cached] [--reps N] [--warmup N]
                         [--threads default|N] [--max-seconds S]
    torch_bench.py epoch --data DIR --backbone DIR [--batch 32] [--unlock 1] [--augment none|light]
                         [--lr 1e-3] [--wd 0.05] [--warmup-epochs 1] [--threads default|N]
    torch_bench.py info

Run it with Debian's /usr/bin/python3 (python3-torch 1.13, python3-torchvision 0.14).
`step` prints `key=value` lines ending in `images_per_s=N` (median) and `peak_rss_mib=N`, like
`vitlab-cli bench`. `epoch` trains the head of a real ViT-Ti/16 for one epoch on an image folder
(torchvision ImageFolder, the checkpoint's own preprocessing) and evaluates it on val/.
"""
import argparse
import ctypes
import json
import os
import resource
import statistics
import struct
import sys
import time

import torch
import torch.nn as nn
from torchvision.models.vision_transformer import VisionTransformer

MODELS = {  # name: (heads, width, mlp)
    "vit-tiny": (3, 192, 768),
    "vit-small": (6, 384, 1536),
}
UNLOCK = {"infer": None, "full": 1000, "stem-conv": "conv", "stem-mbconv": "mbconv"}


def parse_mode(s):
    """--mode as vitlab-cli bench reads it: infer, unlockN (N >= 1), full, stem-conv|mbconv."""
    if s in UNLOCK:
        return s
    if s.startswith("unlock") and s[6:].isdigit() and 1 <= int(s[6:]) <= 1000:
        return s
    raise argparse.ArgumentTypeError(f"{s}: expected infer, unlockN, full, stem-conv or "
                                     "stem-mbconv")


def unlock_of(mode):
    return UNLOCK[mode] if mode in UNLOCK else int(mode[6:])


def replace_stem(vit, kind, chans, patch, width):
    """vitlab's --stem conv|mbconv in PyTorch: the stem (tests/data/gen-stems.py) as conv_proj
    (it returns the (B, W, gh, gw) grid conv_proj did); the stem, the class token, the position
    embedding and the head train, the transformer is frozen. Returns the trainable params."""
    import importlib.util
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location(
        "gen_stems", os.path.join(here, "..", "tests", "data", "gen-stems.py"))
    gs = importlib.util.module_from_spec(spec)
    threads = torch.get_num_threads()
    spec.loader.exec_module(gs)   # sets one thread for its fixtures
    torch.set_num_threads(threads)
    vit.conv_proj = (gs.ConvStem if kind == "conv" else gs.MBConvStem)(chans, patch, width)
    lock(vit, 1)
    for p in [vit.class_token, vit.encoder.pos_embedding, *vit.conv_proj.parameters()]:
        p.requires_grad_(True)
    return [p for p in vit.parameters() if p.requires_grad]


def rss_mib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def openblas():
    """(corename, threads) of the OpenBLAS that torch loaded, or (None, None)."""
    try:
        lib = ctypes.CDLL("libopenblasp-r0.3.21.so", mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
    except OSError:
        try:
            lib = ctypes.CDLL("libblas.so.3", mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
        except OSError:
            return None, None
    try:
        lib.openblas_get_corename.restype = ctypes.c_char_p
        return lib.openblas_get_corename().decode(), lib.openblas_get_num_threads()
    except AttributeError:
        return None, None


def set_threads(spec):
    if spec != "default":
        torch.set_num_threads(int(spec))


def print_config(threads_spec):
    core, blas_threads = openblas()
    print(f"torch={torch.__version__} threads_arg={threads_spec} "
          f"torch_threads={torch.get_num_threads()} "
          f"interop_threads={torch.get_num_interop_threads()} "
          f"openblas_core={core} openblas_threads={blas_threads} "
          f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '-')} "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '-')}")


def make_vit(model, img, classes=1000):
    heads, width, mlp = MODELS[model]
    return VisionTransformer(image_size=img, patch_size=16, num_layers=12, num_heads=heads,
                             hidden_dim=width, mlp_dim=mlp, num_classes=classes)


def geometry_of(a):
    """(img, patch, chans, depth, heads, width, mlp, classes) of --model, --backbone (its
    config.json, timm's model_args) or --geometry (vitlab's vl_geometry_parse spec)."""
    if a.backbone:
        cfg = json.load(open(os.path.join(a.backbone, "config.json")))
        m = cfg["model_args"]
        width = m["embed_dim"]
        return (a.img or m["img_size"], m["patch_size"], m.get("in_chans", 3), m["depth"],
                m["num_heads"], width, int(width * m.get("mlp_ratio", 4.0)),
                cfg.get("num_classes", m.get("num_classes", 1000)))
    if a.geometry:
        kv = dict(x.split("=", 1) for x in a.geometry.split(","))
        width = int(kv["width"])
        img = a.img or int(kv["img"])
        return (img, int(kv["patch"]), int(kv.get("chans", 3)), int(kv["depth"]),
                int(kv.get("heads", max(1, width // 64))), width, int(kv.get("mlp", 4 * width)),
                1000)
    heads, width, mlp = MODELS[a.model]
    return (a.img or 224, 16, 3, 12, heads, width, mlp, 1000)


def make_vit_geometry(geo):
    img, patch, chans, depth, heads, width, mlp, classes = geo
    vit = VisionTransformer(image_size=img, patch_size=patch, num_layers=depth, num_heads=heads,
                            hidden_dim=width, mlp_dim=mlp, num_classes=classes)
    if chans != 3:
        vit.conv_proj = nn.Conv2d(chans, width, kernel_size=patch, stride=patch)
    return vit


def groups(vit):
    """Layer groups in vitlab's (OpenCLIP's lock) order: embedding, 12 blocks, final norm, head."""
    g = [[vit.conv_proj, vit.class_token, vit.encoder.pos_embedding]]
    g += [[layer] for layer in vit.encoder.layers]
    g += [[vit.encoder.ln], [vit.heads]]
    return g


def lock(vit, unlock):
    """Freezes all but the last `unlock` groups (requires_grad=False); returns trainable params."""
    gs = groups(vit)
    for i, group in enumerate(gs):
        train = i >= len(gs) - unlock
        for item in group:
            params = [item] if isinstance(item, nn.Parameter) else list(item.parameters())
            for p in params:
                p.requires_grad_(train)
    return [p for p in vit.parameters() if p.requires_grad]


def cmd_step(a):
    if a.task != "classify":
        return cmd_dense_step(a)
    set_threads(a.threads)
    base = rss_mib()
    torch.manual_seed(0)
    geo = geometry_of(a)
    img, chans, classes = geo[0], geo[2], geo[7]
    vit = make_vit_geometry(geo)
    if a.backbone:   # the checkpoint's own weights, as vitlab-cli bench --backbone loads them
        sd = timm_to_torchvision(read_safetensors(os.path.join(a.backbone,
                                                               "model.safetensors")))
        sd = {k: v.reshape(vit.state_dict()[k].shape) for k, v in sd.items()}
        vit.load_state_dict({**vit.state_dict(), **sd}, strict=True)
    unlock = unlock_of(a.mode)
    x = torch.randn(a.batch, chans, img, img)
    y = torch.arange(a.batch) % classes
    if unlock is None:
        vit.eval()

        def one_step():
            with torch.inference_mode():
                vit(x)
    else:
        vit.train()
        params = (replace_stem(vit, unlock, chans, geo[1], geo[5]) if isinstance(unlock, str)
                  else lock(vit, unlock))
        opt = torch.optim.AdamW(params)
        loss_fn = nn.CrossEntropyLoss()

        def one_step():
            loss = loss_fn(vit(x), y)
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    rates = timed_reps(a, one_step)
    print_step(a, f"model={a.backbone or a.geometry or a.model} img={img} batch={a.batch} "
               f"mode={a.mode}", rates, base)


def timed_reps(a, one_step):
    """images/s of each timed call of one_step after --warmup untimed ones; the timed calls go
    on until --reps, or until --max-seconds of them (at least one)."""
    rates, t_timed = [], None
    for r in range(-a.warmup, a.reps):
        if r == 0:
            t_timed = time.perf_counter()
        elif r > 0 and a.max_seconds and time.perf_counter() - t_timed >= a.max_seconds:
            break
        t0 = time.perf_counter()
        one_step()
        dt = time.perf_counter() - t0
        if r >= 0:
            rates.append(a.batch / dt)
    return rates


def print_step(a, what, rates, base):
    """step's closing lines, as vitlab-cli bench prints them."""
    print_config(a.threads)
    print(f"{what} rates={','.join(f'{r:.2f}' for r in rates)} reps_done={len(rates)} "
          f"import_rss_mib={base:.0f}")
    print(f"images_per_s={statistics.median(rates):.2f}")
    print(f"peak_rss_mib={rss_mib():.0f}")


# ------------------------------------------------------------------ dense heads

def dense_targets(task, B, S, K):
    """vitlab-cli bench's synthetic targets (app/cli-bench-dense.c make_targets): masks of
    16-pixel squares cycling through the K classes, every 97th pixel ignored (255); one or two
    boxes per image (a quarter to a half of the side), the object classes in turn."""
    import numpy as np
    if task == "segment":
        y, x = np.mgrid[0:S, 0:S]
        m = np.stack([(x // 16 + y // 16 + b) % K for b in range(B)])
        m[:, (y * S + x) % 97 == 0] = 255
        return torch.from_numpy(m.astype(np.int64))
    out = []
    for b in range(B):
        boxes, labels = [], []
        for j in range(1 + b % 2):
            x0 = S * (0.05 + 0.04 * ((b * 7 + j * 13) % 10))
            y0 = S * (0.05 + 0.04 * ((b * 5 + j * 11) % 10))
            w, h = S * (0.25 + 0.05 * ((b + j) % 5)), S * (0.25 + 0.05 * ((b * 3 + j) % 5))
            boxes.append([x0, y0, min(x0 + w, S - 1.0), min(y0 + h, S - 1.0)])
            labels.append(1 + (b + j) % (K - 1))
        out.append({"boxes": torch.tensor(boxes, dtype=torch.float32),
                    "labels": torch.tensor(labels, dtype=torch.int64)})
    return out


def load_module(name, path):
    import importlib.util
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class _Features(nn.Module):
    """FCOS's backbone slot: the token grid is computed outside (as bench/det_ref.py does)."""
    out_channels = 1

    def forward(self, x):
        return x


def cmd_dense_step(a):
    """One training step of the README's dense recipes without a feature cache, as
    bench/seg_ref.py (timm's ViT rebuilt by tests/interop/timm_vit.py, its Segmenter and seg
    heads, F.interpolate, F.cross_entropy(ignore_index=255)) and bench/det_ref.py
    (torchvision's FCOS head, anchors and compute_loss) run it; unlock N trains the head and the
    backbone's last N - 1 groups, whose forward alone builds a graph."""
    import torch.nn.functional as F
    set_threads(a.threads)
    base = rss_mib()
    torch.manual_seed(0)
    here = os.path.dirname(os.path.abspath(__file__))
    sys.path.insert(0, os.path.join(here, "..", "tests", "interop"))
    import timm_vit
    seg_ref = load_module("seg_ref", os.path.join(here, "seg_ref.py"))
    model, _, _ = timm_vit.load_like_timm(a.backbone)
    S = a.img or model.pretrained_cfg["input_size"][-1]
    seg_ref.resample_pos_embed(model, S)
    W, p = model.embed_dim, model.num_prefix_tokens
    G = S // model.patch_embed.patch_size[0]
    K = a.classes or (4 if a.task == "segment" else 3)
    det = None
    if a.task == "segment":
        head = seg_ref.make_head(a.seg_head, W, K)
    else:
        from torchvision.models.detection import FCOS
        from torchvision.models.detection.anchor_utils import AnchorGenerator
        from torchvision.models.detection.fcos import FCOSHead
        from torchvision.models.detection.image_list import ImageList
        bb = _Features()
        bb.out_channels = W
        patch = model.patch_embed.patch_size[0]
        det = FCOS(bb, num_classes=K, anchor_generator=AnchorGenerator(((patch,),), ((1.0,),)),
                   head=FCOSHead(W, 1, K, num_convs=0), score_thresh=0.05, nms_thresh=0.6,
                   detections_per_img=100, topk_candidates=1000)
        head = det.head
    net = seg_ref.Segmenter(model, head)
    groups = net.groups()
    unlock = unlock_of(a.mode)
    first = len(groups) - (unlock or 0)
    for g, params in enumerate(groups):
        for q in params:
            q.requires_grad_(unlock is not None and g >= first)
    model.eval()   # as the references: dropout and drop path are 0 in this recipe anyway
    x = torch.randn(a.batch, model.pretrained_cfg["input_size"][0], S, S)
    y = dense_targets(a.task, a.batch, S, K)
    L = net.depth
    params = [q for q in net.parameters() if q.requires_grad]
    opt = torch.optim.AdamW(params, lr=1e-3, weight_decay=0.05) if params else None

    cache = None
    if a.cached:   # --cache-features: the frozen backbone's tokens once, the head alone after
        with torch.no_grad():
            cache = net.features(x, 0, L + 2)

    def forward():
        with torch.set_grad_enabled(unlock is not None and first <= L + 1):
            tok = cache if cache is not None else net.features(x, 0, L + 2)
        if a.task == "segment":
            return net.logits(tok, S)
        return head([tok[:, p:].reshape(-1, G, G, W).permute(0, 3, 1, 2)])

    def loss_of(out):
        if a.task == "segment":
            return F.cross_entropy(out, y, ignore_index=255)
        il = ImageList(torch.zeros(a.batch, 3, S, S), [(S, S)] * a.batch)
        anchors = det.anchor_generator(il, [torch.zeros(a.batch, W, G, G)])
        return sum(det.compute_loss(y, out, anchors, [G * G]).values())

    def one_step():
        if unlock is None:
            with torch.inference_mode():
                forward()
        else:
            loss = loss_of(forward())
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
    rates = timed_reps(a, one_step)
    print_step(a, f"model={a.backbone} img={S} batch={a.batch} mode={a.mode} task={a.task} "
               f"dense_head={a.seg_head if a.task == 'segment' else 'fcos'} classes={K} "
               f"cached={'yes' if a.cached else 'no'}",
               rates, base)


# ------------------------------------------------------------------ epoch on an image folder

def read_safetensors(path):
    import numpy as np
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", (path, name, info["dtype"])
        lo, hi = info["data_offsets"]
        out[name] = torch.from_numpy(np.frombuffer(data[lo:hi], dtype=np.float32)
                                     .reshape(info["shape"]).copy())
    return out


def timm_to_torchvision(sd):
    """timm ViT names (patch_embed.proj, blocks.i.attn.qkv, ...) to torchvision's."""
    out = {
        "conv_proj.weight": sd["patch_embed.proj.weight"],
        "conv_proj.bias": sd["patch_embed.proj.bias"],
        "class_token": sd["cls_token"],
        "encoder.pos_embedding": sd["pos_embed"],
        "encoder.ln.weight": sd["norm.weight"],
        "encoder.ln.bias": sd["norm.bias"],
    }
    i = 0
    while f"blocks.{i}.norm1.weight" in sd:
        s, d = f"blocks.{i}.", f"encoder.layers.encoder_layer_{i}."
        for a, b in [("norm1", "ln_1"), ("norm2", "ln_2"), ("attn.proj", "self_attention.out_proj"),
                     ("mlp.fc1", "mlp.0"), ("mlp.fc2", "mlp.3")]:
            out[d + b + ".weight"] = sd[s + a + ".weight"]
            out[d + b + ".bias"] = sd[s + a + ".bias"]
        out[d + "self_attention.in_proj_weight"] = sd[s + "attn.qkv.weight"]
        out[d + "self_attention.in_proj_bias"] = sd[s + "attn.qkv.bias"]
        i += 1
    return out


def cmd_epoch(a):
    from torchvision import datasets, transforms
    set_threads(a.threads)
    base = rss_mib()
    t_start = time.perf_counter()
    cfg = json.load(open(os.path.join(a.backbone, "config.json")))
    pc = cfg.get("pretrained_cfg", cfg)
    size = pc.get("input_size", [3, 224, 224])[-1]
    crop_pct = pc.get("crop_pct", 0.9)
    mean, std = pc.get("mean", [0.5] * 3), pc.get("std", [0.5] * 3)
    bicubic = transforms.InterpolationMode.BICUBIC
    norm = [transforms.ToTensor(), transforms.Normalize(mean, std)]
    eval_tf = transforms.Compose([transforms.Resize(int(size / crop_pct), interpolation=bicubic),
                                  transforms.CenterCrop(size)] + norm)
    if a.augment == "light":   # vitlab's --augment light: random resized crop + flip
        train_tf = transforms.Compose([transforms.RandomResizedCrop(size, scale=(0.35, 1.0),
                                                                    interpolation=bicubic),
                                       transforms.RandomHorizontalFlip()] + norm)
    else:                      # vitlab's default, --augment none: the eval transform
        train_tf = eval_tf
    train = datasets.ImageFolder(os.path.join(a.data, "train"), train_tf)
    val = datasets.ImageFolder(os.path.join(a.data, "val"), eval_tf)
    # one loader worker process: decoding overlaps the compute, as vitlab's prefetch thread does
    kw = dict(batch_size=a.batch, num_workers=1, persistent_workers=False)
    train_dl = torch.utils.data.DataLoader(train, shuffle=True, **kw)
    val_dl = torch.utils.data.DataLoader(val, shuffle=False, **kw)

    torch.manual_seed(0)
    vit = make_vit("vit-tiny", size)
    sd = timm_to_torchvision(read_safetensors(os.path.join(a.backbone, "model.safetensors")))
    vit.load_state_dict({**vit.state_dict(), **{k: v for k, v in sd.items()}}, strict=True)
    vit.heads.head = nn.Linear(vit.hidden_dim, len(train.classes))
    params = lock(vit, a.unlock)
    opt = torch.optim.AdamW(params, lr=a.lr, weight_decay=a.wd)
    # vitlab's schedule for one epoch with --warmup 1: linear warm-up, lr * (step + 1) / steps
    warm = max(1, round(a.warmup_epochs * len(train_dl)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: min(1.0, (k + 1) / warm))
    loss_fn = nn.CrossEntropyLoss()
    t_ready = time.perf_counter()

    vit.train()
    losses, n_train = [], 0
    for x, y in train_dl:
        loss = loss_fn(vit(x), y)
        loss.backward()
        opt.step()
        sched.step()
        opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        n_train += len(y)
    t_train = time.perf_counter()
    vit.eval()
    correct = n_val = 0
    with torch.inference_mode():
        for x, y in val_dl:
            correct += (vit(x).argmax(1) == y).sum().item()
            n_val += len(y)
    t_end = time.perf_counter()
    print_config(a.threads)
    print(f"train_images={n_train} val_images={n_val} setup_s={t_ready - t_start:.2f} "
          f"train_s={t_train - t_ready:.2f} val_s={t_end - t_train:.2f} "
          f"mean_loss={statistics.mean(losses):.4f} val_acc={correct / n_val:.4f} "
          f"import_rss_mib={base:.0f}")
    print(f"epoch_s={t_end - t_start:.2f}")
    print(f"peak_rss_mib={rss_mib():.0f}")


def cmd_info(a):
    print_config("default")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("step")
    s.add_argument("--model", choices=MODELS)
    s.add_argument("--backbone", help="a timm checkpoint folder (config.json + model.safetensors)")
    s.add_argument("--geometry", help="vitlab's geometry spec: img=28,patch=4,chans=1,width=96,...")
    s.add_argument("--img", type=int, default=0, help="image side (0: the model's own, 224)")
    s.add_argument("--batch", type=int, default=32)
    s.add_argument("--mode", type=parse_mode, required=True)
    s.add_argument("--task", choices=("classify", "segment", "detect"), default="classify",
                   help="segment / detect: a dense head's step (needs --backbone)")
    s.add_argument("--seg-head", choices=("linear", "upconv"), default="linear")
    s.add_argument("--classes", type=int, default=0,
                   help="dense head classes, background included (segment 4, detect 3)")
    s.add_argument("--cached", action="store_true",
                   help="dense, unlock1: the frozen tokens once, then the head alone")
    s.add_argument("--reps", type=int, default=5)
    s.add_argument("--warmup", type=int, default=1)
    s.add_argument("--threads", default="default")
    s.add_argument("--max-seconds", type=float, default=0,
                   help="stop the timed reps after this long (0: never)")
    e = sub.add_parser("epoch")
    e.add_argument("--data", required=True)
    e.add_argument("--backbone", required=True)
    e.add_argument("--batch", type=int, default=32)
    e.add_argument("--unlock", type=int, default=1)
    e.add_argument("--lr", type=float, default=1e-3)
    e.add_argument("--wd", type=float, default=0.05)
    e.add_argument("--warmup-epochs", type=float, default=1.0)
    e.add_argument("--augment", choices=["none", "light"], default="none")
    e.add_argument("--threads", default="default")
    sub.add_parser("info")
    a = p.parse_args()
    if a.cmd == "step" and (a.model is not None) + (a.backbone is not None) + \
            (a.geometry is not None) != 1:
        p.error("step needs one of --model, --backbone, --geometry")
    if a.cmd == "step" and a.task != "classify" and (not a.backbone or
                                                      unlock_of(a.mode) in ("conv", "mbconv")):
        p.error("--task segment|detect needs --backbone and --mode infer, unlockN or full")
    if a.cmd == "step" and a.cached and (a.task == "classify" or a.mode != "unlock1"):
        p.error("--cached goes with --task segment|detect and --mode unlock1")
    {"step": cmd_step, "epoch": cmd_epoch, "info": cmd_info}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""Checks `vitlab-cli export` against a PyTorch rebuild of timm's ViT (tests/interop/timm_vit.py).

For every source: export it, run `vitlab-cli forward` on the export, build the timm model the
export's config.json describes (as timm's local-dir / hf-hub loading would), load
model.safetensors with strict=True, run the same images and compare. Also checks that
pretrained_cfg and label_names survive the export (against the source's own preprocessing config)
and a second export of the export (vitlab -> timm folder -> vitlab -> timm folder).

Run with Debian's python3 (torch 1.13 + numpy):
    /usr/bin/python3 tests/interop/check_export.py --cli build/app/vitlab-cli --shared ../shared
Prints one line per check, the incompatibilities found, then "N passed, N failed";
exits non-zero when any check fails.
"""
import argparse
import copy
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import timm_vit  # noqa: E402

TOL = 1e-4           # max abs difference allowed on logits / features / tokens / attention
CFG_TOL = 1e-6       # float fields of pretrained_cfg (float32 round trip)
TIMM_DEFAULT_EPS = 1e-6
# pretrained_cfg keys that change what timm does with the model or its inputs
CFG_KEYS = ("input_size", "interpolation", "crop_pct", "crop_mode", "mean", "std", "num_classes",
            "first_conv", "classifier")


class Results:
    def __init__(self):
        self.passed = 0
        self.failed = 0
        self.rows = []
        self.incompat = {}   # text -> [sources]

    def add(self, source, check, ok, detail):
        status = "PASS" if ok else "FAIL"
        if ok:
            self.passed += 1
        else:
            self.failed += 1
        self.rows.append((status, source, check, detail))
        print(f"{status}  {source:<22} {check:<26} {detail}", flush=True)

    def note(self, source, check, detail):
        """Not counted: a difference worth knowing that the check does not fail on."""
        self.rows.append(("WARN", source, check, detail))
        print(f"WARN  {source:<22} {check:<26} {detail}", flush=True)

    def incompatible(self, source, text):
        self.incompat.setdefault(text, []).append(source)


# ----------------------------------------------------------------------------- helpers

def run(cmd):
    p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return p.returncode, p.stdout + p.stderr


def read_tensor(spec):
    path, _, name = spec.partition(":")
    tensors, _ = timm_vit.read_safetensors(path)
    return tensors[name or "images"]


def max_abs(a, b):
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return None
    return float(np.max(np.abs(a - b))) if a.size else 0.0


def cfg_equal(a, b):
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(cfg_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= CFG_TOL * max(1.0, abs(a), abs(b))
    return a == b


def fmt(v):
    return "n/a" if v is None else f"{v:.2e}"


# ----------------------------------------------------------------------------- expectations

def expected_from_source(src):
    """What the source itself says about preprocessing and labels, in timm's terms:
    (pretrained_cfg subset, label_names or None, notes)."""
    notes = []
    cfg_path = os.path.join(src, "config.json")
    oc_path = os.path.join(src, "open_clip_config.json")
    pp_path = os.path.join(src, "preprocessor_config.json")
    labels = None
    classes_txt = os.path.join(src, "imagenet-classes.txt")
    if os.path.exists(classes_txt):
        with open(classes_txt) as f:
            labels = [line.rstrip("\n") for line in f if line.strip()]
    if os.path.exists(oc_path):
        with open(oc_path) as f:
            oc = json.load(f)
        mc = oc["model_cfg"]
        vc = mc["vision_cfg"]
        pp = oc.get("preprocess_cfg", {})
        size = vc["image_size"]
        exp = dict(input_size=[3, size, size],
                   interpolation=pp.get("interpolation", "bicubic"),
                   crop_pct=1.0, crop_mode="center",
                   mean=pp.get("mean", [0.48145466, 0.4578275, 0.40821073]),
                   std=pp.get("std", [0.26862954, 0.26130258, 0.27577711]),
                   num_classes=mc["embed_dim"], first_conv="patch_embed.proj", classifier="head")
        return exp, labels, notes
    with open(cfg_path) as f:
        cfg = json.load(f)
    if "pretrained_cfg" in cfg:   # timm hub layout
        pc = cfg["pretrained_cfg"]
        exp = {k: pc[k] for k in CFG_KEYS if k in pc}
        exp["num_classes"] = cfg.get("num_classes", pc.get("num_classes"))
        if "label_names" in cfg:
            labels = cfg["label_names"]
        return exp, labels, notes
    if cfg.get("model_type") == "vit":   # Hugging Face transformers ViT
        with open(pp_path) as f:
            pp = json.load(f)
        size = pp.get("size", {"height": cfg["image_size"]})
        h = size.get("height", size.get("shortest_edge"))
        resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(pp.get("resample", 2), "bilinear")
        id2label = cfg.get("id2label") or {}
        labels = [id2label[str(i)] for i in range(len(id2label))] if id2label else None
        exp = dict(input_size=[cfg.get("num_channels", 3), h, h], interpolation=resample,
                   crop_pct=1.0, mean=pp["image_mean"], std=pp["image_std"],
                   num_classes=len(id2label), first_conv="patch_embed.proj", classifier="head")
        if "height" in size and not pp.get("do_center_crop", False):
            notes.append("the HF image processor resizes straight to height x width (timm: "
                         "crop_mode 'squash'); the export says crop_mode 'center' (vitlab "
                         "preprocesses every model with a center crop)")
        return exp, labels, notes
    raise ValueError(f"{src}: unknown source layout")


# ----------------------------------------------------------------------------- one source

def check_source(res, cli, name, src, images, reference, tmp):
    out = os.path.join(tmp, name)
    rc, log = run([cli, "export", src, "--out", out])
    res.add(name, "export", rc == 0, "ok" if rc == 0 else log.strip().splitlines()[-1:])
    if rc != 0:
        return
    with open(os.path.join(out, "config.json")) as f:
        cfg = json.load(f)

    # -- would timm build it, and load the tensors strictly?
    try:
        model, info = timm_vit.build_from_export(out, layer_norm_eps="config")
        ok = not info["notes"]
        res.add(name, "timm build + strict load", ok,
                f"{cfg['architecture']}: {len(info['state_dict_keys'])} tensors"
                + ("" if ok else "; " + "; ".join(info["notes"])))
    except Exception as e:   # TypeError (unknown kwarg), RuntimeError (missing/unexpected/shape)
        res.add(name, "timm build + strict load", False, f"{type(e).__name__}: {e}".splitlines()[0])
        res.incompatible(name, f"timm cannot build/load the export: {type(e).__name__}: {e}")
        return
    static_checks(res, name, cfg, out)

    # -- vitlab on the export and on the source
    fwd = os.path.join(tmp, name + ".export.safetensors")
    rc, log = run([cli, "forward", out, "--images", images, "--out", fwd])
    res.add(name, "vitlab forward (export)", rc == 0, "ok" if rc == 0 else log.strip())
    if rc != 0:
        return
    vl, _ = timm_vit.read_safetensors(fwd)
    fwd_src = os.path.join(tmp, name + ".source.safetensors")
    rc, log = run([cli, "forward", src, "--images", images, "--out", fwd_src])
    if rc == 0:
        vs, _ = timm_vit.read_safetensors(fwd_src)
        ref = vs.get("logits", vs.get("embedding"))
        d = max_abs(vl.get("logits"), ref) if ref is not None else None
        res.add(name, "vitlab source vs export", d is not None and d < TOL,
                f"max|d| logits = {fmt(d)}" + ("" if "logits" in vs else " (source: embedding)"))
    else:
        res.add(name, "vitlab source vs export", False, log.strip())

    # -- PyTorch timm rebuild on the same images
    x = torch.from_numpy(np.ascontiguousarray(read_tensor(images), dtype=np.float32))
    with torch.no_grad():
        feats = model.forward_features(x)
        attn = model.attention_maps()
        logits = model.forward_head(feats)
        pre = model.forward_head(feats, pre_logits=True)
    with torch.no_grad():
        logits64 = copy.deepcopy(model).double()(x.double()).numpy()
    d = max_abs(vl.get("logits"), logits.numpy())
    res.add(name, "logits vs timm", d is not None and d < TOL,
            f"max|d| = {fmt(d)}  {tuple(logits.shape)}  (float64 timm: vitlab "
            f"{fmt(max_abs(vl.get('logits'), logits64))}, torch32 {fmt(max_abs(logits.numpy(), logits64))})")
    # the rebuild itself against the source's reference outputs (float64, computed by
    # tests/data/gen-*.py from per-family reference code, independently of vitlab)
    if reference and os.path.exists(reference):
        ref_t, _ = timm_vit.read_safetensors(reference)
        key = next((k for k in ("logits", "logits_token", "embedding") if k in ref_t), None)
        d = max_abs(ref_t[key], logits.numpy()) if key else None
        res.add(name, "timm rebuild vs reference", d is not None and d < TOL,
                f"max|d| = {fmt(d)} ({os.path.relpath(reference, os.path.dirname(ROOT))}:{key})")
    distilled = isinstance(model, timm_vit.VisionTransformerDistilled)
    if distilled:
        # vitlab's features are the class token's; timm's pre_logits are (cls + dist) / 2
        ref, label = feats[:, 0], "features vs timm [:,0]"
    else:
        ref, label = pre, "features vs timm pre_logits"
    d = max_abs(vl.get("features"), ref.numpy())
    res.add(name, label, d is not None and d < TOL, f"max|d| = {fmt(d)}")
    if distilled:
        d = max_abs(vl.get("features"), pre.numpy())
        res.note(name, "features vs pre_logits", f"max|d| = {fmt(d)} (definitions differ: timm "
                 "pre_logits = (cls + dist) / 2, vitlab features = cls)")
    # tokens after the final norm carry norm.weight's scale (up to ~30 in the real model): the
    # tolerance scales with the largest token value
    tok = vl.get("tokens_final")
    d = max_abs(tok, feats.numpy())
    scale = max(1.0, float(feats.abs().max()))
    res.add(name, "tokens_final vs timm", d is not None and d < TOL * scale,
            f"max|d| = {fmt(d)}  {tuple(feats.shape)}, tol {TOL * scale:.1e}")
    worst = 0.0
    bad = None
    for i, a in enumerate(attn):
        d = max_abs(vl.get(f"attn.{i}"), a.numpy())
        if d is None:
            bad = f"attn.{i} shape"
            break
        worst = max(worst, d)
    res.add(name, "attention vs timm", bad is None and worst < TOL,
            bad or f"max|d| = {fmt(worst)} over {len(attn)} blocks")

    # -- what stock timm does: it ignores layer_norm_eps and uses 1e-6
    eps = cfg.get("layer_norm_eps")
    if eps is not None and not math.isclose(eps, TIMM_DEFAULT_EPS, rel_tol=1e-6):
        m2, _ = timm_vit.build_from_export(out, layer_norm_eps="timm")
        with torch.no_grad():
            l2 = m2(x)
        d = max_abs(vl["logits"], l2.numpy())
        res.note(name, "logits, timm eps 1e-6", f"max|d| = {fmt(d)} (export eps {eps:.3g}; "
                 "timm ignores top-level layer_norm_eps)")
        res.incompatible(name, f"LayerNorm eps {eps:.3g} is only in the top-level `layer_norm_eps`, "
                         "which timm never reads: timm.create_model builds LayerNorm(eps=1e-6); "
                         f"logits then differ by up to {fmt(d)} on these inputs. Pass "
                         "norm_layer=partial(nn.LayerNorm, eps=...) yourself (not JSON-expressible "
                         "in model_args)")

    # -- pretrained_cfg / label_names against the source
    exp, labels, notes = expected_from_source(src)
    pc = cfg.get("pretrained_cfg", {})
    diffs = [f"{k}: {pc.get(k)!r} != source {v!r}" for k, v in exp.items()
             if not cfg_equal(pc.get(k), v)]
    for k in ("num_classes", "global_pool"):
        top, ma = cfg.get(k), cfg.get("model_args", {}).get(k, cfg.get(k))
        if top != ma:
            diffs.append(f"top-level {k} {top!r} != model_args {ma!r}")
    if cfg.get("num_classes") != pc.get("num_classes"):
        diffs.append(f"num_classes {cfg.get('num_classes')} != pretrained_cfg {pc.get('num_classes')}")
    res.add(name, "pretrained_cfg vs source", not diffs,
            "ok (" + ", ".join(k for k in exp) + ")" if not diffs else "; ".join(diffs))
    for n in notes:
        res.note(name, "pretrained_cfg vs source", n)
    src_cfg_path = os.path.join(src, "config.json")
    if os.path.exists(src_cfg_path):
        with open(src_cfg_path) as f:
            src_pc = json.load(f).get("pretrained_cfg", {})
        dropped = sorted(set(src_pc) - set(pc))
        if dropped:
            res.note(name, "pretrained_cfg keys dropped",
                     ", ".join(f"{k}={src_pc[k]!r}" for k in dropped))
    got = cfg.get("label_names")
    ok = got == labels
    res.add(name, "label_names vs source", ok,
            (f"{len(got)} names" if got else "none (source has none)") if ok
            else f"export {None if got is None else len(got)} names, source "
                 f"{None if labels is None else len(labels)}")

    # -- export of the export
    out2 = os.path.join(tmp, name + ".re")
    rc, log = run([cli, "export", out, "--out", out2])
    if rc != 0:
        res.add(name, "re-export round trip", False, log.strip())
        return
    with open(os.path.join(out2, "config.json")) as f:
        cfg2 = json.load(f)
    a = {k: v for k, v in cfg.items() if k != "exported_from"}
    b = {k: v for k, v in cfg2.items() if k != "exported_from"}
    diffs = [k for k in sorted(set(a) | set(b)) if not cfg_equal_deep(a.get(k), b.get(k))]
    t1, _ = timm_vit.read_safetensors(os.path.join(out, "model.safetensors"))
    t2, _ = timm_vit.read_safetensors(os.path.join(out2, "model.safetensors"))
    if set(t1) != set(t2):
        diffs.append("tensor names: " + ", ".join(sorted(set(t1) ^ set(t2))))
    else:
        worst = max(max_abs(t1[k], t2[k]) if t1[k].shape == t2[k].shape else float("inf") for k in t1)
        if worst != 0.0:
            diffs.append(f"tensors differ by {worst:.2e}")
    res.add(name, "re-export round trip", not diffs,
            "config.json and tensors identical" if not diffs else "differs: " + "; ".join(diffs))


def cfg_equal_deep(a, b):
    if isinstance(a, dict) and isinstance(b, dict):
        return set(a) == set(b) and all(cfg_equal_deep(a[k], b[k]) for k in a)
    return cfg_equal(a, b)


def static_checks(res, name, cfg, out):
    """Config points that the strict load cannot see."""
    arch = cfg["architecture"].split(".", 1)[0]
    pc = cfg.get("pretrained_cfg", {})
    if "vitlab_head" in cfg:
        res.incompatible(name, "MLP head (head.fc1/head.fc2): timm's head is one nn.Linear; "
                         "strict load fails on unexpected keys")
    # fine-tuning: create_model('local-dir:EXPORT', pretrained=True, num_classes=K+1) drops the
    # modules pretrained_cfg['classifier'] names and loads the rest non-strict
    k = cfg.get("num_classes", 0) + 1
    try:
        _, missing, unexpected = timm_vit.load_like_timm(out, num_classes=k)
        heads = [m for m in missing if m.split(".")[0] in ("head", "head_dist")]
        ok = not unexpected and sorted(heads) == sorted(missing)
        res.add(name, f"new head (num_classes={k})", ok,
                f"classifier {pc.get('classifier')!r}; re-initialised: {', '.join(missing)}"
                + (f"; unexpected: {unexpected}" if unexpected else ""))
    except Exception as e:
        msg = " ".join(str(e).split())
        res.add(name, f"new head (num_classes={k})", False,
                f"classifier {pc.get('classifier')!r}: {type(e).__name__}: {msg[:160]}")
        res.incompatible(name, f"pretrained_cfg.classifier is {pc.get('classifier')!r}, but the "
                         "model has more classifier tensors (timm's distilled DeiT cfgs say "
                         "('head', 'head_dist')). timm's load_pretrained drops only the listed "
                         "modules when num_classes changes, so create_model(..., pretrained=True, "
                         "num_classes=N) keeps head_dist [K, D] and load_state_dict fails on "
                         "its shape")
    # the recipe in engine/export/vl-export.c: create_model(arch, pretrained=True,
    # pretrained_cfg_overlay=dict(file=...), **model_args) starts from the registry's default tag
    if arch in timm_vit.ARCHITECTURES:
        _, _, tag, dcfg = timm_vit.ARCHITECTURES[arch]
        if dcfg["num_classes"] != cfg.get("num_classes"):
                res.incompatible(name, "the recipe in engine/export/vl-export.c, create_model(architecture, "
                             "pretrained=True, pretrained_cfg_overlay=dict(file=...), **model_args), "
                             "starts from the registry's default cfg of `architecture` (num_classes "
                             "1000); as model_args.num_classes differs, timm discards head.* (and "
                             "head_dist.*) from the file and loads non-strict: a random head, "
                             "silently. Overlay the export's whole pretrained_cfg "
                             "(pretrained_cfg_overlay=dict(cfg['pretrained_cfg'], file=...)) or "
                             "load with create_model('local-dir:DIR') / 'hf-hub:'")
        if dcfg.get("custom_load"):
            res.incompatible(name, f"same recipe: {arch}.{tag} has custom_load=True, and timm "
                             "releases that do not reset custom_load for a `file` overlay hand the "
                             "safetensors file to the .npz loader (model.load_pretrained); add "
                             "custom_load=False to the overlay")


# ----------------------------------------------------------------------------- main

def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cli", default=os.path.join(ROOT, "build", "app", "vitlab-cli"))
    ap.add_argument("--shared", default=os.path.join(os.path.dirname(ROOT), "shared"))
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    ap.add_argument("--only", action="append", help="run only this source (repeatable)")
    args = ap.parse_args()
    cli = os.path.abspath(args.cli)
    shared = os.path.abspath(args.shared)
    torch.set_grad_enabled(False)

    data = os.path.join(ROOT, "tests", "data")
    sources = [
        ("fam-openclip", os.path.join(data, "fam-openclip")),
        ("fam-hf-vit", os.path.join(data, "fam-hf-vit")),
        ("fam-timm-reg-ls", os.path.join(data, "fam-timm-reg-ls")),
        ("fam-timm-gap", os.path.join(data, "fam-timm-gap")),
        ("fam-deit-dist", os.path.join(data, "fam-deit-dist")),
        ("fam-timm-siglip", os.path.join(data, "fam-timm-siglip")),
        ("vit-timm-tiny", os.path.join(shared, "fixtures", "vit-timm-tiny")),
        ("vit-tiny-augreg-in1k", os.path.join(shared, "weights", "vit-tiny-augreg-in1k")),
    ]
    images = {n: os.path.join(s, "inputs.safetensors") + ":images" for n, s in sources}
    references = {n: os.path.join(s, "expected.safetensors") for n, s in sources}
    real = os.path.join(shared, "fixtures", "vit-tiny-real")
    images["vit-tiny-augreg-in1k"] = os.path.join(real, "inputs.safetensors") + ":images"
    references["vit-tiny-augreg-in1k"] = os.path.join(real, "expected.safetensors")
    if args.only:
        sources = [s for s in sources if s[0] in args.only]

    res = Results()
    if not os.access(cli, os.X_OK):
        res.add("-", "vitlab-cli", False, f"{cli} is not an executable")
    tmp = tempfile.mkdtemp(prefix="vitlab-interop-")
    try:
        for name, src in sources if res.failed == 0 else []:
            if not os.path.isdir(src):
                res.add(name, "source", False, f"{src} is missing")
                continue
            try:
                check_source(res, cli, name, src, images[name], references[name], tmp)
            except Exception as e:   # a crash in one source is a failure, not the end of the run
                res.add(name, "check crashed", False, f"{type(e).__name__}: {e}")
    finally:
        if args.keep:
            print(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    if res.incompat:
        print("\nIncompatibilities with timm found in the exports:")
        for text, srcs in res.incompat.items():
            print(f"  - [{', '.join(srcs)}] {text}")
    print(f"\n{res.passed} passed, {res.failed} failed")
    return 1 if res.failed else 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""PyTorch checkpoints (torch.save's zip format) for tests/test-torch-ckpt.c, in tests/data/torch-ckpt/.

Run from the project root with Debian's PyTorch 1.13 and torchvision:

    /usr/bin/python3 tests/data/gen-torch-ckpt.py

The tensors come from tests/data/fam-torchvision/model.safetensors (read here by a few lines of
its own), so each checkpoint can be compared with that file tensor by tensor:

  torchvision.pth   torchvision.models.VisionTransformer's own state_dict () after a strict load
                    of those weights (an OrderedDict with its _metadata, as torchvision's
                    published .pth files are)
  training.pth      a training checkpoint as timm's and OpenCLIP's scripts write them: epoch,
                    args (argparse.Namespace), a numpy scalar, an optimizer state, and the
                    weights in float16 under "state_dict", every name with DistributedDataParallel's
                    "module." prefix
  views.pth         tensors that are views: a transpose (not contiguous), a slice at an offset,
                    two names on one storage, a bfloat16 and an int64 tensor, an empty one
  legacy.pth        the same dict saved with _use_new_zipfile_serialization=False
  whole-model.pth   torch.save (model): a pickled module; its state dict is read from the
                    modules' pickled __dict__ (_parameters, _buffers, _modules), never run
  torchscript.pt    torch.jit.save (torch.jit.script (model)): a TorchScript archive, its state
                    dict read from the modules' attributes
  model-in-dict.pth {"epoch": 2, "model": model, "optimizer": …}: a whole model under "model"
  lightning.ckpt    a PyTorch Lightning checkpoint of a module holding a timm ViT as self.model
                    (tests/data/fam-timm-reg-ls's weights under "model.", a loss module's
                    "criterion.weight" beside them, epoch, global_step, optimizer_states,
                    hyper_parameters)
  evil.pth          a zip whose data.pkl would call os.system if unpickled (it must not be)
  no-storage.pth    torchvision.pth with one storage removed from the archive
"""
import argparse
import io
import json
import os
import pickle
import struct
import sys
import zipfile
from collections import OrderedDict

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "torch-ckpt")
EVIL_TARGET = "/tmp/vitlab-torch-ckpt-must-not-exist"


def st_read(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    header = json.loads(b[8:8 + n])
    out = OrderedDict()
    for k, v in header.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        assert v["dtype"] == "F32"
        out[k] = torch.from_numpy(np.frombuffer(b[8 + n + s:8 + n + e], dtype=np.float32)
                                  .reshape(v["shape"]).copy())
    return out


class Evil:
    def __reduce__(self):
        return (os.system, ("touch " + EVIL_TARGET,))


def main():
    torch.manual_seed(0)
    os.makedirs(OUT, exist_ok=True)
    sd = st_read(os.path.join(HERE, "fam-torchvision", "model.safetensors"))

    from torchvision.models import VisionTransformer
    tv = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4, hidden_dim=32,
                           mlp_dim=128, num_classes=7)
    res = tv.load_state_dict(sd, strict=True)
    assert not res.missing_keys and not res.unexpected_keys
    torch.save(tv.state_dict(), os.path.join(OUT, "torchvision.pth"))

    ns = argparse.Namespace(lr=1e-3, model="vit_tiny", epochs=30)
    opt = torch.optim.AdamW(tv.parameters(), lr=1e-3)
    tv(torch.zeros(1, 3, 32, 32)).sum().backward()
    opt.step()
    train = OrderedDict([
        ("epoch", 3), ("arch", "vit"), ("args", ns), ("metric", np.float64(0.625)),
        ("state_dict", OrderedDict(("module." + k, v.half()) for k, v in sd.items())),
        ("optimizer", opt.state_dict()),
    ])
    torch.save(train, os.path.join(OUT, "training.pth"))

    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    views = OrderedDict([
        ("base", base),
        ("transposed", base.t()),                   # strides (1, 6)
        ("rows_1_3", base[1:3]),                    # offset 6
        ("column_2", base[:, 2]),                   # stride 6
        ("same_storage", base.view(24)),
        ("brain", torch.tensor([[0.5, -1.25], [3.0, 65504.0]], dtype=torch.bfloat16)),
        ("steps", torch.tensor([7, -3, 1 << 40], dtype=torch.int64)),
        ("empty", torch.zeros(0, 5)),
    ])
    torch.save(views, os.path.join(OUT, "views.pth"))
    torch.save(views, os.path.join(OUT, "legacy.pth"), _use_new_zipfile_serialization=False)
    # the whole model as loaded (tv above took an optimizer step)
    whole = VisionTransformer(image_size=32, patch_size=8, num_layers=2, num_heads=4,
                              hidden_dim=32, mlp_dim=128, num_classes=7)
    whole.load_state_dict(sd, strict=True)
    torch.save(whole, os.path.join(OUT, "whole-model.pth"))
    torch.jit.save(torch.jit.script(whole), os.path.join(OUT, "torchscript.pt"))
    torch.save(OrderedDict([("epoch", 2), ("model", whole),
                            ("optimizer", torch.optim.SGD(whole.parameters(), lr=0.1).state_dict())]),
               os.path.join(OUT, "model-in-dict.pth"))

    timm_sd = st_read(os.path.join(HERE, "fam-timm-reg-ls", "model.safetensors"))
    nested = OrderedDict(("model." + k, v) for k, v in timm_sd.items())
    nested["criterion.weight"] = torch.ones(4)
    lightning = OrderedDict([
        ("epoch", 3), ("global_step", 120), ("pytorch-lightning_version", "2.1.0"),
        ("state_dict", nested), ("loops", {}), ("callbacks", {}),
        ("optimizer_states", [{"state": {}, "param_groups": [{"lr": 1e-3, "params": [0, 1]}]}]),
        ("lr_schedulers", []), ("hparams_name", "kwargs"),
        ("hyper_parameters", {"lr": 1e-3, "backbone": "vit_custom_reg4_ls"})])
    torch.save(lightning, os.path.join(OUT, "lightning.ckpt"))

    with zipfile.ZipFile(os.path.join(OUT, "evil.pth"), "w", zipfile.ZIP_STORED) as z:
        z.writestr("evil/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
        z.writestr("evil/version", "3\n")

    src = zipfile.ZipFile(os.path.join(OUT, "torchvision.pth"))
    with zipfile.ZipFile(os.path.join(OUT, "no-storage.pth"), "w", zipfile.ZIP_STORED) as z:
        for info in src.infolist():
            if not info.filename.endswith("/data/3"):
                z.writestr(info, src.read(info.filename))
    if os.path.exists(EVIL_TARGET):
        sys.exit(EVIL_TARGET + " exists: remove it, the test checks it is never created")
    print("wrote", OUT)


if __name__ == "__main__":
    main()

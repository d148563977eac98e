#!/usr/bin/python3
"""Generate tests/data/tasks-losses.safetensors: PyTorch's losses and their gradients for
test-tasks.c (vl-loss.c).

    /usr/bin/python3 tests/data/gen-tasks.py

Inputs are float32 (stored), references computed in float64 from them and stored as float32.
Deterministic: re-running reproduces identical bytes.

  ce_logits (B, K), ce_targets (B) as float (class index, or -100 = ignored): for label
  smoothing 0 and 0.1, ce_loss_ls{0,1} (1) and ce_grad_ls{0,1} (B, K), F.cross_entropy with
  ignore_index -100, reduction mean.
  reg_pred, reg_target (B, N): mse_loss / mse_grad, F.mse_loss; sl1_loss / sl1_grad,
  F.smooth_l1_loss with beta 1 (some errors below 1, some above); sl1b_loss / sl1b_grad with
  beta 0.5.
"""
import json
import os
import struct

import numpy as np
import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))


def st_write(path, tensors):
    header, blobs, off = {}, [], 0
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name], dtype="<f4")
        b = a.tobytes()
        header[name] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))


def main():
    g = torch.Generator().manual_seed(7)
    B, K, N = 6, 5, 3
    logits = (torch.randn(B, K, generator=g) * 2).float()
    targets = torch.tensor([0, 3, -100, 4, 1, -100])
    out = {"ce_logits": logits.numpy(), "ce_targets": targets.float().numpy()}
    for i, ls in enumerate((0.0, 0.1)):
        z = logits.double().clone().requires_grad_(True)
        loss = F.cross_entropy(z, targets, ignore_index=-100, label_smoothing=ls)
        loss.backward()
        out["ce_loss_ls%d" % i] = np.array([loss.item()])
        out["ce_grad_ls%d" % i] = z.grad.numpy()
    pred = torch.randn(B, N, generator=g).float()
    target = (pred + torch.randn(B, N, generator=g) * 1.2).float()
    out["reg_pred"] = pred.numpy()
    out["reg_target"] = target.numpy()
    for key, fn in (("mse", lambda p, t: F.mse_loss(p, t)),
                    ("sl1", lambda p, t: F.smooth_l1_loss(p, t, beta=1.0)),
                    ("sl1b", lambda p, t: F.smooth_l1_loss(p, t, beta=0.5))):
        p = pred.double().clone().requires_grad_(True)
        loss = fn(p, target.double())
        loss.backward()
        out[key + "_loss"] = np.array([loss.item()])
        out[key + "_grad"] = p.grad.numpy()
    st_write(os.path.join(HERE, "tasks-losses.safetensors"), out)


if __name__ == "__main__":
    main()

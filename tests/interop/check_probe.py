#!/usr/bin/python3
"""Checks `vitlab-cli probe` against numpy and scikit-learn on vitlab's own exported features.

Exports the train and val features of DATA with `vitlab-cli features` (.npy + its CSV), runs
DINO's weighted k-NN (eval_knn.py's knn_classifier, in numpy) and scikit-learn's
LogisticRegression(multi_class="multinomial") at the C that `vitlab-cli probe` chose on them,
and compares the accuracies with the ones `vitlab-cli probe` printed. Any dataset works (an
image folder, fashion-mnist:..., cifar10:DIR), so the probes can be checked on data that is not
in ../shared.

Run with Debian's python3 (python3-numpy, python3-sklearn):
    /usr/bin/python3 tests/interop/check_probe.py --cli build/app/vitlab-cli \\
        --model ../shared/weights/vit-tiny-augreg-in1k --data ../shared/datasets/hymenoptera
Prints both sets of figures; exits non-zero when they differ by more than one image.
"""
import argparse
import csv
import os
import re
import subprocess
import sys
import tempfile
import warnings

import numpy as np
from sklearn.linear_model import LogisticRegression


def knn_dino(xtr, ytr, xte, k, T, n_classes):
    tr = xtr / np.maximum(np.linalg.norm(xtr, axis=1, keepdims=True), 1e-12)
    te = xte / np.maximum(np.linalg.norm(xte, axis=1, keepdims=True), 1e-12)
    sim = te @ tr.T
    k = min(k, len(tr))
    top = np.argsort(-sim, axis=1, kind="stable")[:, :k]
    w = np.exp(np.take_along_axis(sim, top, axis=1) / T)
    votes = np.zeros((len(te), n_classes))
    for j in range(k):
        np.add.at(votes, (np.arange(len(te)), ytr[top[:, j]]), w[:, j])
    return votes.argmax(axis=1)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--cli", required=True)
    ap.add_argument("--model", required=True)
    ap.add_argument("--data", required=True)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--layer", default="final")
    ap.add_argument("--pool", default="token")
    a = ap.parse_args()

    probe = subprocess.run([a.cli, "probe", a.model, "--data", a.data, "--k", str(a.k),
                            "--layer", a.layer, "--pool", a.pool],
                           check=True, capture_output=True, text=True).stdout
    print(probe)
    knn_vitlab = float(re.search(r"^knn_acc=([0-9.]+)$", probe, re.M).group(1))
    lr_vitlab = float(re.search(r"^logreg_acc=([0-9.]+)$", probe, re.M).group(1))
    c_chosen = float(re.search(r"^logistic regression \(C ([0-9.e+-]+),", probe, re.M).group(1))

    with tempfile.TemporaryDirectory() as tmp:
        npy = os.path.join(tmp, "features.npy")
        subprocess.run([a.cli, "features", a.model, "--data", a.data, "--layer", a.layer,
                        "--pool", a.pool, "--out", npy], check=True, capture_output=True)
        x = np.load(npy).astype(np.float64)
        rows = list(csv.DictReader(open(os.path.join(tmp, "features.csv"), newline="")))
    # train rows come first; the probe's own output says how many
    n_train = int(re.search(r": (\d+) train, (\d+) val images", probe).group(1))
    classes = sorted({r["label"] for r in rows})
    y = np.array([classes.index(r["label"]) for r in rows])
    xtr, ytr, xva, yva = x[:n_train], y[:n_train], x[n_train:], y[n_train:]

    knn = (knn_dino(xtr, ytr, xva, a.k, 0.07, len(classes)) == yva).mean()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = LogisticRegression(C=c_chosen, multi_class="multinomial", tol=1e-10,
                               max_iter=100000).fit(xtr, ytr)
    lr = (m.predict(xva) == yva).mean()
    n_val = len(yva)
    print(f"numpy DINO k-NN: {knn:.4f}   vitlab: {knn_vitlab:.4f}")
    print(f"scikit-learn logistic regression at C {c_chosen:g}: {lr:.4f}   vitlab: {lr_vitlab:.4f}")
    ok = abs(knn - knn_vitlab) * n_val <= 1.01 and abs(lr - lr_vitlab) * n_val <= 1.01
    print("agree (within one image)" if ok else "DISAGREE")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()

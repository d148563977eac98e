#!/usr/bin/python3
"""Reference results for tests/test-probe.c: DINO's weighted k-NN (numpy, float64, the algorithm
of eval_knn.py's knn_classifier) and scikit-learn's multinomial L2 logistic regression on small
synthetic feature sets. Writes tests/data/probe-ref.safetensors.

Run with Debian's python3 (python3-numpy, python3-sklearn):  /usr/bin/python3 tests/data/gen-probe.py
"""
import json
import os
import struct
import sys

import numpy as np
import sklearn
from sklearn.linear_model import LogisticRegression

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "probe-ref.safetensors")


def write_safetensors(path, tensors, metadata):
    header = {"__metadata__": metadata}
    blobs, offset = [], 0
    for name, arr in tensors.items():
        dtype = {np.float32: "F32", np.float64: "F64", np.int64: "I64"}[arr.dtype.type]
        raw = np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": dtype, "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    h = json.dumps(header).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def clusters(rng, n_per_class, dim, k, spread):
    centres = rng.normal(size=(k, dim))
    x = np.concatenate([centres[c] + spread * rng.normal(size=(n_per_class[c], dim))
                        for c in range(k)])
    y = np.concatenate([np.full(n_per_class[c], c) for c in range(k)])
    perm = rng.permutation(len(y))
    return x[perm].astype(np.float32), y[perm].astype(np.int64)


def knn_dino(train, ytrain, test, k, T, num_classes):
    """eval_knn.py's knn_classifier in float64: normalise, cosine, top-k, exp(sim / T) votes.
    Also returns how safe each prediction is from float32 rounding: the gap between the k-th and
    the (k+1)-th similarity and the relative margin of the winning vote."""
    tr = train.astype(np.float64)
    te = test.astype(np.float64)
    tr /= np.maximum(np.linalg.norm(tr, axis=1, keepdims=True), 1e-12)
    te /= np.maximum(np.linalg.norm(te, axis=1, keepdims=True), 1e-12)
    sim = te @ tr.T
    order = np.argsort(-sim, axis=1, kind="stable")
    top = order[:, :k]
    dist = np.take_along_axis(sim, top, axis=1)
    votes = np.zeros((len(te), num_classes))
    for i in range(len(te)):
        for j in range(k):
            votes[i, ytrain[top[i, j]]] += np.exp(dist[i, j] / T)
    pred = votes.argmax(axis=1)
    srt = np.sort(sim, axis=1)[:, ::-1]
    gap = srt[:, k - 1] - srt[:, k] if k < sim.shape[1] else np.full(len(te), np.inf)
    v = np.sort(votes, axis=1)[:, ::-1]
    margin = (v[:, 0] - v[:, 1]) / v[:, 0]
    return pred, gap.min(), margin.min()


def objective(X, y, C, coef, intercept):
    z = X @ coef.T + intercept
    m = z.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(z - m).sum(axis=1, keepdims=True)))[:, 0]
    return C * (lse - z[np.arange(len(y)), y]).sum() + 0.5 * (coef ** 2).sum()


def main():
    rng = np.random.default_rng(17)
    t, meta = {}, {"generator": "tests/data/gen-probe.py", "numpy": np.__version__,
                   "sklearn": sklearn.__version__}

    # k-NN: 3 classes of unequal size in 8 dimensions, overlapping; queries from the same law
    xtr, ytr = clusters(rng, [30, 20, 25], 8, 3, 1.3)
    # queries: train rows moved by noise
    xte = (xtr[rng.integers(0, len(xtr), 40)] + 1.0 * rng.normal(size=(40, 8))).astype(np.float32)
    t["knn.train"], t["knn.train_labels"], t["knn.query"] = xtr, ytr, xte
    for k, T in ((20, 0.07), (5, 0.07), (7, 0.5), (1, 0.07)):
        pred, gap, margin = knn_dino(xtr, ytr, xte, k, T, 3)
        # float32 similarities must not reorder the neighbours or flip a vote
        assert gap > 1e-5 and margin > 1e-4, (k, T, gap, margin)
        t[f"knn.pred.k{k}.T{T}"] = pred.astype(np.int64)
        print(f"k-NN k={k} T={T}: min top-k gap {gap:.2e}, min vote margin {margin:.2e}",
              file=sys.stderr)

    # logistic regression, 3 classes in 6 dimensions (not separable: finite optimum for every C)
    X, y = clusters(rng, [40, 30, 35], 6, 3, 1.2)
    Xq = (X[:30] + 0.3 * rng.normal(size=(30, 6))).astype(np.float32)
    t["lr3.X"], t["lr3.y"], t["lr3.query"] = X, y, Xq
    cs = [0.01, 1.0, 100.0]
    for C in cs:
        m = LogisticRegression(C=C, multi_class="multinomial", solver="lbfgs", tol=1e-12,
                               max_iter=100000).fit(X.astype(np.float64), y)
        t[f"lr3.C{C}.coef"] = m.coef_.astype(np.float64)
        t[f"lr3.C{C}.intercept"] = m.intercept_.astype(np.float64)
        t[f"lr3.C{C}.objective"] = np.array([objective(X.astype(np.float64), y, C, m.coef_,
                                                       m.intercept_)])
        t[f"lr3.C{C}.pred"] = m.predict(Xq.astype(np.float64)).astype(np.int64)
        t[f"lr3.C{C}.proba"] = m.predict_proba(Xq.astype(np.float64)).astype(np.float64)
    meta["lr3.C"] = json.dumps(cs)

    # binary: multinomial with K = 2 (sklearn's multi_class="multinomial", two coefficient rows)
    X2, y2 = clusters(rng, [25, 35], 5, 2, 1.5)
    t["lr2.X"], t["lr2.y"] = X2, y2
    m = LogisticRegression(C=0.3, multi_class="multinomial", tol=1e-12, max_iter=100000).fit(
        X2.astype(np.float64), y2)
    # for two classes scikit-learn keeps the second row only (the first is its negation; the
    # intercepts, fitted from zero, sum to zero): both rows, as vitlab keeps them
    assert m.coef_.shape == (1, 5)
    t["lr2.C0.3.coef"] = np.vstack([-m.coef_, m.coef_]).astype(np.float64)
    t["lr2.C0.3.intercept"] = np.concatenate([-m.intercept_, m.intercept_]).astype(np.float64)

    # the sweep's grid, each fitted on all of lr3.X: the sweep's refit must equal one of these
    grid = [10.0 ** (-3 + 0.5 * i) for i in range(13)]
    for i, C in enumerate(grid):
        m = LogisticRegression(C=C, multi_class="multinomial", tol=1e-12, max_iter=100000).fit(
            X.astype(np.float64), y)
        t[f"lr3.grid{i}.coef"] = m.coef_.astype(np.float64)
        t[f"lr3.grid{i}.intercept"] = m.intercept_.astype(np.float64)

    write_safetensors(OUT, t, meta)
    print(f"wrote {OUT}", file=sys.stderr)


if __name__ == "__main__":
    main()

#!/usr/bin/python3
"""sgemm GFLOP/s of the OpenBLAS that numpy links, on ViT-shaped products (one process per
setting: OpenBLAS reads OPENBLAS_CORETYPE and OPENBLAS_NUM_THREADS only while it loads).

    OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 gemm_peak.py [--tokens 6304] [--reps 7]

Prints one `shape=MxKxN gflops=F` line per product (best of --reps, after a warm-up), then
`openblas_core=... openblas_threads=...` and `peak_gflops=F`.
"""
import argparse
import ctypes
import os
import time

import numpy as np


def openblas_config():
    for name in ("libopenblasp-r0.3.21.so", "libblas.so.3", "libcblas.so.3"):
        try:
            lib = ctypes.CDLL(name, mode=os.RTLD_NOLOAD | os.RTLD_GLOBAL)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return (lib.openblas_get_corename().decode(), lib.openblas_get_num_threads(),
                    lib.openblas_get_config().decode())
        except (OSError, AttributeError):
            continue
    return None, None, None


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--tokens", type=int, default=32 * 197, help="rows: batch 32 x 197 tokens")
    p.add_argument("--reps", type=int, default=7)
    a = p.parse_args()
    m = a.tokens
    # (rows x K) @ (K x N): ViT-Ti qkv, fc1, fc2 and ViT-S qkv, fc1, fc2
    shapes = [(m, 192, 576), (m, 192, 768), (m, 768, 192),
              (m, 384, 1152), (m, 384, 1536), (m, 1536, 384)]
    rng = np.random.default_rng(0)
    best_all = 0.0
    for (mm, k, n) in shapes:
        x = rng.standard_normal((mm, k), dtype=np.float32)
        w = rng.standard_normal((k, n), dtype=np.float32)
        out = np.empty((mm, n), dtype=np.float32)
        np.matmul(x, w, out=out)
        best = 0.0
        for _ in range(a.reps):
            t0 = time.perf_counter()
            np.matmul(x, w, out=out)
            best = max(best, 2.0 * mm * k * n / (time.perf_counter() - t0) / 1e9)
        best_all = max(best_all, best)
        print(f"shape={mm}x{k}x{n} gflops={best:.1f}")
    core, threads, config = openblas_config()
    print(f"openblas_core={core} openblas_threads={threads} numpy={np.__version__} "
          f"openblas_config={config!r}")
    print(f"peak_gflops={best_all:.1f}")


if __name__ == "__main__":
    main()

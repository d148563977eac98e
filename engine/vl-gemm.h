/* vl-gemm.h: vitlab's own products (see vl-gemm.c): without per-call packing for the forward's
 * linear layers, attention and the backward's input gradients; packed block by block for the
 * weight gradients (vl_gemm_tn). */
#pragma once

#include <glib.h>
#include <stdint.h>

/* TRUE when this CPU can run the AVX-512 kernel. */
gboolean vl_gemm_packed_supported (void);

/* Whether the AVX-512 kernel is in use: on such a CPU, unless the environment says
 * VITLAB_PACKED_GEMM=0 (for A/B measurements). When it is, the engine runs its products on it;
 * when not, on OpenBLAS, and the functions below (still correct) run in plain C. */
gboolean vl_gemm_enabled (void);
/* Overrides that choice (on AVX-512 only) from now on: for benchmarks that alternate the two
 * within one process, and for the tests of the plain-C code. Not while a forward or backward
 * runs. */
void     vl_gemm_set_enabled (gboolean enabled);

/* Floats of a packed (N, K) matrix. */
int64_t  vl_packed_numel (int N, int K);

/* dst (vl_packed_numel (N, K)) = w (N, K; rows ldw apart: a linear layer's weight, out x in) in
 * panels of 32 rows of w, each stored K x 32, the last one zero-padded. */
void     vl_pack_weights (float *dst, const float *w, int64_t ldw, int N, int K);

/* c (M, N) = alpha a (M, K) w^T [+ bias (N)] [+ res (M, N)], w packed by vl_pack_weights; res
 * may be c itself. */
void     vl_gemm_packed (float *c, int64_t ldc, const float *a, int64_t lda, const float *wp,
                         float alpha, const float *bias, const float *res, int64_t ldr, int M,
                         int N, int K);

/* c (M, N) = alpha op(a) (M, K) b (K, N) [+ res (M, N)], b row-major with rows ldb apart; op(a)
 * = a (M, K), or with trans_a a^T, a being (K, M); lda is a's row stride either way. */
void     vl_gemm_rowmajor (gboolean trans_a, float *c, int64_t ldc, const float *a, int64_t lda,
                           const float *b, int64_t ldb, float alpha, const float *res,
                           int64_t ldr, int M, int N, int K);

/* Floats of the workspace vl_gemm_tn needs for an (M, N) result (64-byte aligned). */
int64_t  vl_gemm_tn_workspace (int M, int N);

/* c (M, N) = [c +] a^T b, a (K, M) and b (K, N) row-major with rows lda and ldb apart: a product
 * over a long contraction, such as a weight gradient dout^T inp over a batch's token rows. Both
 * operands are packed block by block into `work`. colsum (M), unless NULL, += the column sums of
 * a (the bias gradient, made while a is read). */
void     vl_gemm_tn (float *c, int64_t ldc, gboolean accumulate, const float *a, int64_t lda,
                     const float *b, int64_t ldb, float *colsum, int M, int N, int K,
                     float *work);

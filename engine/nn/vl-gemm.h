/* vl-gemm.h: vitlab's own products (see vl-gemm.c): without per-call packing for the forward's
 * linear layers, attention and the backward's input gradients; packed block by block for the
 * weight gradients (vl_gemm_tn). */
#pragma once

#include <glib.h>
#include <stdint.h>

/* The kernels: AVX-512 (12 x 32 tiles), AVX2 + FMA (6 x 16 tiles, for AMD Zen and older Intel
 * CPUs), or the plain C that runs the same contracts anywhere (and with which the engine keeps
 * OpenBLAS for its products). */
typedef enum { VL_GEMM_PLAIN, VL_GEMM_AVX2, VL_GEMM_AVX512 } VlGemmIsa;

/* Whether this CPU can run that kernel (PLAIN always). */
gboolean    vl_gemm_isa_supported (VlGemmIsa isa);
/* "avx512", "avx2" or "plain" */
const char *vl_gemm_isa_name (VlGemmIsa isa);

/* The kernel in use: the best this CPU has, unless the environment says VITLAB_PACKED_GEMM=0
 * (plain C and OpenBLAS, for A/B measurements) or VITLAB_PACKED_GEMM=avx2 (the AVX2 kernel on
 * an AVX-512 CPU). */
VlGemmIsa   vl_gemm_isa (void);
/* Whether a SIMD kernel is in use (vl_gemm_isa () is not PLAIN): the engine then runs its
 * products on it; when not, on OpenBLAS, and the functions below (still correct) run in plain
 * C. */
gboolean    vl_gemm_enabled (void);
/* Override that choice from now on (an ISA the CPU lacks means PLAIN): for benchmarks that
 * alternate within one process, and for the tests of each kernel. Not while a forward or
 * backward runs. vl_gemm_set_enabled (TRUE) picks the best kernel the CPU has. */
void        vl_gemm_set_isa (VlGemmIsa isa);
void        vl_gemm_set_enabled (gboolean enabled);

/* The CPU as /proc/cpuinfo names it, with its family and model numbers and the vendor's name of
 * the micro-architecture where the engine tells them apart ("AMD EPYC 7B13 (family 25, model 1:
 * Zen 3)"); the same string on every call. */
const char *vl_cpu_describe (void);

/* Floats of a packed (N, K) matrix. */
int64_t  vl_packed_numel (int N, int K);

/* dst (vl_packed_numel (N, K)) = w (N, K; rows ldw apart: a linear layer's weight, out x in) in
 * panels of 32 rows of w (16 for the AVX2 kernel), each stored K x 32 (K x 16), the last one
 * zero-padded: for vl_gemm_packed while the same kernel is in use. */
void     vl_pack_weights (float *dst, const float *w, int64_t ldw, int N, int K);

/* dst (vl_packed_numel (N, K)) = b (K, N; rows ldb apart) in the same panels, so that
 * vl_gemm_packed with it computes a b: for a weight used untransposed (the backward's input
 * gradients). */
void     vl_pack_rows (float *dst, const float *b, int64_t ldb, int K, int N);
/* Whether the kernel in use runs a large row-major right-hand operand faster packed by
 * vl_pack_rows first than read in place by vl_gemm_rowmajor: on AVX2, whose CPUs have the smaller
 * caches (a 16-column strip of a ViT-Ti MLP weight read in place spans 768 lines). */
gboolean vl_gemm_pack_rows_pays (void);

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

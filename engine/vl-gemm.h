/* vl-gemm.h: the linear layers' forward product against a weight packed once. */
#pragma once

#include <glib.h>
#include <stdint.h>

/* TRUE when this CPU runs vl_gemm_packed's AVX-512 kernel; otherwise the engine uses OpenBLAS
 * (vl_gemm_packed still works there, in plain C). */
gboolean vl_gemm_packed_supported (void);

/* Floats of a packed (N, K) weight. */
int64_t  vl_packed_numel (int N, int K);

/* dst (vl_packed_numel, 64-byte aligned) = w (N, K) (a linear layer's weight, out x in) in
 * panels of 32 output features, each K x 32, the last one zero-padded. */
void     vl_pack_weights (float *dst, const float *w, int N, int K);

/* c (M, N) = a (M, K) w^T [+ bias (N)] [+ res (M, N)], w packed by vl_pack_weights; res may be
 * c itself. */
void     vl_gemm_packed (float *c, int64_t ldc, const float *a, int64_t lda, const float *wp,
                         const float *bias, const float *res, int64_t ldr, int M, int N, int K);

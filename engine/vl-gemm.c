/* vl-gemm.c: products with a weight packed once, for the linear layers' forward.
 *
 * OpenBLAS packs both operands again at every call. A ViT block run image by image calls it with
 * 197 token rows against weights of up to 768 x 768, so repacking the weights (read from L3 each
 * time) costs about a tenth of the forward. Here a weight is packed once (after each change) into
 * panels of 32 output features, each panel K x 32 floats in order; the product streams a panel
 * from cache against 12 rows of activations read in place, and adds the bias and the residual as
 * it stores the result. AVX-512 only; elsewhere the callers keep
 * OpenBLAS (vl_gemm_packed_supported). */
#include "vl-gemm.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VL_HAVE_AVX512_GEMM 1
#endif

#define NR 32   /* output features per panel: two zmm registers */
#define MR 12   /* rows per micro-tile: 24 accumulators */

int64_t
vl_packed_numel (int N, int K)
{
  return (int64_t) (N + NR - 1) / NR * NR * K;
}

void
vl_pack_weights (float *dst, const float *w, int N, int K)
{
  for (int p = 0; p < N; p += NR)
    {
      float *panel = dst + (int64_t) p * K;
      int n_here = N - p < NR ? N - p : NR;
      for (int k = 0; k < K; k++)
        {
          float *row = panel + (int64_t) k * NR;
          for (int j = 0; j < n_here; j++)
            row[j] = w[(int64_t) (p + j) * K + k];
          for (int j = n_here; j < NR; j++)
            row[j] = 0.0f;
        }
    }
}

#ifdef VL_HAVE_AVX512_GEMM

gboolean
vl_gemm_packed_supported (void)
{
  static gsize supported;   /* 1 + whether */
  if (g_once_init_enter (&supported))
    {
      __builtin_cpu_init ();
      g_once_init_leave (&supported, 1 + (__builtin_cpu_supports ("avx512f") != 0));
    }
  return supported == 2;
}

#define AVX512 __attribute__ ((target ("avx512f")))

/* c (mr rows, one panel) = a (mr rows of K, stride lda) bp (K x 32) [+ bias] [+ res]: the rows
 * of a are read in place (each value broadcast into the FMA), so they need no packing. */
static inline __attribute__ ((always_inline)) AVX512 void
micro (const int mr, int K, const float *restrict ap, int64_t lda, const float *restrict bp,
       float *c, int64_t ldc, const float *bias, const float *res, int64_t ldr, __mmask16 m0, __mmask16 m1)
{
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < mr; i++)
    c0[i] = c1[i] = _mm512_setzero_ps ();
  for (int k = 0; k < K; k++)
    {
      __m512 b0 = _mm512_load_ps (bp + (int64_t) k * NR);
      __m512 b1 = _mm512_load_ps (bp + (int64_t) k * NR + 16);
      const float *a = ap + k;
#pragma GCC unroll 12
      for (int i = 0; i < mr; i++)
        {
          __m512 av = _mm512_set1_ps (a[i * lda]);
          c0[i] = _mm512_fmadd_ps (av, b0, c0[i]);
          c1[i] = _mm512_fmadd_ps (av, b1, c1[i]);
        }
    }
  __m512 bias0 = bias ? _mm512_maskz_loadu_ps (m0, bias) : _mm512_setzero_ps ();
  __m512 bias1 = bias ? _mm512_maskz_loadu_ps (m1, bias + 16) : _mm512_setzero_ps ();
#pragma GCC unroll 12
  for (int i = 0; i < mr; i++)
    {
      __m512 v0 = _mm512_add_ps (c0[i], bias0), v1 = _mm512_add_ps (c1[i], bias1);
      if (res)
        {
          v0 = _mm512_add_ps (v0, _mm512_maskz_loadu_ps (m0, res + i * ldr));
          v1 = _mm512_add_ps (v1, _mm512_maskz_loadu_ps (m1, res + i * ldr + 16));
        }
      _mm512_mask_storeu_ps (c + i * ldc, m0, v0);
      _mm512_mask_storeu_ps (c + i * ldc + 16, m1, v1);
    }
}

#define MICRO(n) \
  static AVX512 void micro_##n (int K, const float *ap, int64_t lda, const float *bp, float *c, \
                                int64_t ldc, const float *bias, const float *res, int64_t ldr, \
                                __mmask16 m0, __mmask16 m1) \
  { micro (n, K, ap, lda, bp, c, ldc, bias, res, ldr, m0, m1); }
MICRO (1) MICRO (2) MICRO (3) MICRO (4) MICRO (5) MICRO (6)
MICRO (7) MICRO (8) MICRO (9) MICRO (10) MICRO (11) MICRO (12)
#undef MICRO

typedef void (*MicroFn) (int, const float *, int64_t, const float *, float *, int64_t, const float *,
                         const float *, int64_t, __mmask16, __mmask16);
static const MicroFn micro_fns[MR + 1] = {
  NULL, micro_1, micro_2, micro_3, micro_4, micro_5, micro_6,
  micro_7, micro_8, micro_9, micro_10, micro_11, micro_12,
};

static void
gemm_packed_avx512 (float *c, int64_t ldc, const float *a, int64_t lda, const float *wp,
                    const float *bias, const float *res, int64_t ldr, int M, int N, int K)
{
  for (int r = 0; r < M; r += MR)
    {
      int mr = M - r < MR ? M - r : MR;
      for (int p = 0; p < N; p += NR)
        {
          int n_here = N - p < NR ? N - p : NR;
          __mmask16 m0 = (__mmask16) (n_here >= 16 ? 0xffff : (1u << n_here) - 1);
          __mmask16 m1 = (__mmask16) (n_here <= 16 ? 0 : n_here >= 32 ? 0xffff
                                                     : (1u << (n_here - 16)) - 1);
          micro_fns[mr] (K, a + (int64_t) r * lda, lda, wp + (int64_t) p * K, c + (int64_t) r * ldc + p, ldc,
                         bias ? bias + p : NULL, res ? res + (int64_t) r * ldr + p : NULL, ldr,
                         m0, m1);
        }
    }
}

#endif

/* The same in plain C, for CPUs without AVX-512 (where the engine keeps OpenBLAS; this one is for
 * the tests and for completeness). */
static void
gemm_packed_plain (float *c, int64_t ldc, const float *a, int64_t lda, const float *wp,
                   const float *bias, const float *res, int64_t ldr, int M, int N, int K)
{
  for (int r = 0; r < M; r++)
    for (int p = 0; p < N; p += NR)
      {
        float acc[NR] = { 0 };
        const float *panel = wp + (int64_t) p * K;
        for (int k = 0; k < K; k++)
          {
            float av = a[(int64_t) r * lda + k];
            for (int j = 0; j < NR; j++)
              acc[j] += av * panel[(int64_t) k * NR + j];
          }
        for (int j = 0; j < NR && p + j < N; j++)
          {
            float v = acc[j] + (bias ? bias[p + j] : 0.0f);
            if (res)
              v += res[(int64_t) r * ldr + p + j];
            c[(int64_t) r * ldc + p + j] = v;
          }
      }
}

#ifndef VL_HAVE_AVX512_GEMM
gboolean
vl_gemm_packed_supported (void)
{
  return FALSE;
}
#endif

void
vl_gemm_packed (float *c, int64_t ldc, const float *a, int64_t lda, const float *wp,
                const float *bias, const float *res, int64_t ldr, int M, int N, int K)
{
#ifdef VL_HAVE_AVX512_GEMM
  if (vl_gemm_packed_supported ())
    {
      gemm_packed_avx512 (c, ldc, a, lda, wp, bias, res, ldr, M, N, K);
      return;
    }
#endif
  gemm_packed_plain (c, ldc, a, lda, wp, bias, res, ldr, M, N, K);
}

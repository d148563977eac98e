/* vl-avx2.h: the AVX2 helpers vl-gemm.c and vl-kernels.c share, for the first n of 8 lanes.
 * Private to the engine; include it only where <immintrin.h> builds (x86-64, GCC). */
#pragma once

#include <immintrin.h>
#include <stdint.h>

#define VL_AVX2 __attribute__ ((target ("avx2,fma")))

/* lanes [0, n) of 8 (none for n <= 0, all for n >= 8) */
static inline __attribute__ ((always_inline)) VL_AVX2 __m256i
vl_lanes8 (int64_t n)
{
  return _mm256_cmpgt_epi32 (_mm256_set1_epi32 ((int) (n < 8 ? n : 8)),
                             _mm256_setr_epi32 (0, 1, 2, 3, 4, 5, 6, 7));
}

/* The first n lanes of v stored (all 8 for n >= 8, none for n <= 0): a masked store (vmaskmovps)
 * costs about 17 cycles on Zen 3, the 4 + 2 + 1 narrower stores a few. */
static inline __attribute__ ((always_inline)) VL_AVX2 void
vl_store_lanes8 (float *p, __m256 v, int64_t n)
{
  if (n >= 8)
    {
      _mm256_storeu_ps (p, v);
      return;
    }
  __m128 x = _mm256_castps256_ps128 (v);
  if (n >= 4)
    {
      _mm_storeu_ps (p, x);
      x = _mm256_extractf128_ps (v, 1);
      p += 4;
      n -= 4;
    }
  if (n >= 2)
    {
      _mm_storel_pi ((__m64 *) p, x);
      x = _mm_movehl_ps (x, x);
      p += 2;
      n -= 2;
    }
  if (n >= 1)
    _mm_store_ss (p, x);
}

/* The first n lanes loaded (the others 0): a plain load for n >= 8 */
static inline __attribute__ ((always_inline)) VL_AVX2 __m256
vl_load_lanes8 (const float *p, int64_t n)
{
  return n >= 8 ? _mm256_loadu_ps (p) : _mm256_maskload_ps (p, vl_lanes8 (n));
}

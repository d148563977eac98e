/* fma_peak.c: the machine's float32 FMA peak per core, for docs/BENCHMARKS.md.
 *
 *     cc -O2 -mavx512f bench/fma_peak.c -o /tmp/fma_peak && /tmp/fma_peak
 *     (/tmp/fma_peak & /tmp/fma_peak & wait)      # both cores at once
 *
 * 16 independent chains of 512-bit FMAs (enough to cover the latency of two FMA units), 32 flops
 * each; prints GFLOP/s. Not part of the build: x86-64 with AVX-512 only. */
#include <immintrin.h>
#include <stdio.h>
#include <time.h>

int
main (void)
{
  __m512 acc[16];
  const __m512 b = _mm512_set1_ps (1.0000001f), c = _mm512_set1_ps (1e-7f);
  for (int i = 0; i < 16; i++)
    acc[i] = _mm512_set1_ps ((float) i);
  const long n = 200000000;
  struct timespec t0, t1;
  clock_gettime (CLOCK_MONOTONIC, &t0);
  for (long k = 0; k < n; k++)
    {
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++)
        acc[i] = _mm512_fmadd_ps (acc[i], b, c);
    }
  clock_gettime (CLOCK_MONOTONIC, &t1);
  double s = (t1.tv_sec - t0.tv_sec) + 1e-9 * (t1.tv_nsec - t0.tv_nsec);
  float keep = 0.0f;
  for (int i = 0; i < 16; i++)
    keep += _mm512_reduce_add_ps (acc[i]);
  printf ("%.1f GFLOP/s (checksum %g)\n", n * 16.0 * 32.0 / s / 1e9, keep);
  return 0;
}

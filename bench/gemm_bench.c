/* gemm_bench.c: one core's GFLOP/s on ViT-Ti's products, vitlab's kernel (engine/nn/vl-gemm.c)
 * against single-threaded OpenBLAS, and the core's FMA peak; for docs/BENCHMARKS.md (make bench
 * runs it as build/bench/vitlab-gemm-bench).
 *
 * Each product runs with its operands in cache, best of 15 timings of many calls, every timing
 * (and the FMA peak's) by the thread's CPU time, so that on a loaded machine the time the thread
 * waited for a core does not count. The linear
 * layers' forward includes what each side needs for bias and output: OpenBLAS a pass filling the
 * output with the bias (then beta = 1), vitlab its kernel adding it (the weight packed once,
 * outside the timing). Prints one `shape=... own=... openblas=...` line per product and
 * `fma_peak=...` (512-bit FMAs on AVX-512, 256-bit on AVX2), GFLOP/s. */
#include "vl-gemm.h"
#include "vl-pool.h"

#include <cblas.h>
#include <glib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* this thread's CPU time, seconds */
static double
cpu_seconds (void)
{
  struct timespec t;
  clock_gettime (CLOCK_THREAD_CPUTIME_ID, &t);
  return t.tv_sec + t.tv_nsec / 1e9;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

/* 16 independent chains of 512-bit FMAs: enough to cover both FMA units' latency */
__attribute__ ((target ("avx512f"))) static double
fma_peak (void)
{
  __m512 acc[16];
  const __m512 b = _mm512_set1_ps (1.0000001f), c = _mm512_set1_ps (1e-7f);
  for (int i = 0; i < 16; i++)
    acc[i] = _mm512_set1_ps ((float) i);
  const long n = 50000000;
  double t0 = cpu_seconds ();
  for (long k = 0; k < n; k++)
    {
#pragma GCC unroll 16
      for (int i = 0; i < 16; i++)
        acc[i] = _mm512_fmadd_ps (acc[i], b, c);
    }
  double s = cpu_seconds () - t0;
  float keep = 0.0f;
  for (int i = 0; i < 16; i++)
    keep += _mm512_reduce_add_ps (acc[i]);
  if (keep == 12345.0f)   /* never: keeps the loop */
    printf ("\n");
  return n * 16.0 * 32.0 / s / 1e9;
}

/* the same with 256-bit FMAs, for CPUs with AVX2 only: 10 chains (16 would not leave the
 * constants a register of the 16) */
__attribute__ ((target ("avx2,fma"))) static double
fma_peak_avx2 (void)
{
  __m256 acc[10];
  const __m256 b = _mm256_set1_ps (1.0000001f), c = _mm256_set1_ps (1e-7f);
  for (int i = 0; i < 10; i++)
    acc[i] = _mm256_set1_ps ((float) i);
  const long n = 50000000;
  double t0 = cpu_seconds ();
  for (long k = 0; k < n; k++)
    {
#pragma GCC unroll 10
      for (int i = 0; i < 10; i++)
        acc[i] = _mm256_fmadd_ps (acc[i], b, c);
    }
  double s = cpu_seconds () - t0;
  float keep[8] = { 0 };
  for (int i = 0; i < 10; i++)
    _mm256_storeu_ps (keep, _mm256_add_ps (_mm256_loadu_ps (keep), acc[i]));
  if (keep[0] + keep[7] == 12345.0f)   /* never: keeps the loop */
    printf ("\n");
  return n * 10.0 * 16.0 / s / 1e9;
}
#endif

typedef struct {
  const char *name;
  int M, N, K;
  int kind;   /* 0: linear forward (a w^T + bias), 1: a b with b row-major (ldb),
               * 2: a weight gradient a^T w, a (K, M) and w (K, N) row-major */
  int ldb;
} Shape;

static double
best_seconds (void (*fn) (void *), void *ctx, int calls)
{
  double best = 1e30;
  for (int rep = 0; rep < 15; rep++)
    {
      double t0 = cpu_seconds ();
      for (int i = 0; i < calls; i++)
        fn (ctx);
      double s = cpu_seconds () - t0;
      best = s < best ? s : best;
    }
  return best;
}

typedef struct {
  const Shape *s;
  float *a, *w, *wp, *bias, *c;
} Run;


static void
run_own (void *data)
{
  Run *r = data;
  const Shape *s = r->s;
  if (s->kind == 0)
    vl_gemm_packed (r->c, s->N, r->a, s->K, r->wp, 1.0f, r->bias, NULL, 0, s->M, s->N, s->K);
  else if (s->kind == 2)
    vl_gemm_tn (r->c, s->N, FALSE, r->a, s->M, r->w, s->N, NULL, s->M, s->N, s->K, r->wp);
  else
    vl_gemm_rowmajor (FALSE, r->c, s->N, r->a, s->K, r->w, s->ldb, 1.0f, NULL, 0, s->M, s->N,
                      s->K);
}

static void
run_openblas (void *data)
{
  Run *r = data;
  const Shape *s = r->s;
  if (s->kind == 0)
    {
      for (int i = 0; i < s->M; i++)
        memcpy (r->c + (int64_t) i * s->N, r->bias, sizeof (float) * s->N);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, s->M, s->N, s->K, 1.0f, r->a, s->K,
                   r->w, s->K, 1.0f, r->c, s->N);
    }
  else if (s->kind == 2)
    cblas_sgemm (CblasRowMajor, CblasTrans, CblasNoTrans, s->M, s->N, s->K, 1.0f, r->a, s->M,
                 r->w, s->N, 0.0f, r->c, s->N);
  else
    cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, s->M, s->N, s->K, 1.0f, r->a, s->K,
                 r->w, s->ldb, 0.0f, r->c, s->N);
}

int
main (int argc, char **argv)
{
  vl_blas_select_kernel (argv);
  vl_pool_init (1);   /* OpenBLAS single-threaded; this program uses one core */
  if (!vl_gemm_enabled ())
    {
      fprintf (stderr, "vitlab-gemm-bench: vitlab's kernels need AVX-512 or AVX2 + FMA (and "
                       "no VITLAB_PACKED_GEMM=0)\n");
      return 1;
    }
  printf ("kernel=%s\n", vl_gemm_isa_name (vl_gemm_isa ()));
  static const Shape shapes[] = {
    { "qkv, one image (197 x 192 @ 192 x 576)", 197, 576, 192, 0, 0 },
    { "proj, one image (197 x 192 @ 192 x 192)", 197, 192, 192, 0, 0 },
    { "fc1, one image (197 x 192 @ 192 x 768)", 197, 768, 192, 0, 0 },
    { "fc2, one image (197 x 768 @ 768 x 192)", 197, 192, 768, 0, 0 },
    { "fc1, half an image at batch 1 (99 x 192 @ 192 x 768)", 99, 768, 192, 0, 0 },
    { "att v, one head (197 x 197 @ 197 x 64 of qkv)", 197, 64, 197, 1, 576 },
    { "fc1 input gradient, a thread's half of batch 32 (3152 x 768 @ 768 x 192)", 3152, 192,
      768, 1, 192 },
    { "qkv weight gradient, a thread's half of batch 32 (576 x 3152 @ 3152 x 192)", 576, 192,
      3152, 2, 0 },
    { "fc1 weight gradient, a thread's half of batch 32 (768 x 3152 @ 3152 x 192)", 768, 192,
      3152, 2, 0 },
    { "fc2 weight gradient, a thread's half of batch 32 (192 x 3152 @ 3152 x 768)", 192, 768,
      3152, 2, 0 },
    /* the shipped 28x28 backbone: 50 tokens of width 96, four images a task */
    { "small qkv, four 50-token images (200 x 96 @ 96 x 288)", 200, 288, 96, 0, 0 },
    { "small proj (200 x 96 @ 96 x 96)", 200, 96, 96, 0, 0 },
    { "small fc1 (200 x 96 @ 96 x 384)", 200, 384, 96, 0, 0 },
    { "small fc2 (200 x 384 @ 384 x 96)", 200, 96, 384, 0, 0 },
    { "small fc1, one image (50 x 96 @ 96 x 384)", 50, 384, 96, 0, 0 },
    { "small att v, one head (50 x 50 @ 50 x 32 of qkv)", 50, 32, 50, 1, 288 },
    /* its weight gradients, a thread's half of batch 32 (800 token rows) */
    { "small qkv weight gradient (288 x 800 @ 800 x 96)", 288, 96, 800, 2, 0 },
    { "small proj weight gradient (96 x 800 @ 800 x 96)", 96, 96, 800, 2, 0 },
    { "small fc1 weight gradient (384 x 800 @ 800 x 96)", 384, 96, 800, 2, 0 },
    { "small fc2 weight gradient (96 x 800 @ 800 x 384)", 96, 384, 800, 2, 0 },
    /* the 64 px ViT (65 tokens of width 192): a thread's half of batch 32 (1040 rows) */
    { "64 px qkv weight gradient (576 x 1040 @ 1040 x 192)", 576, 192, 1040, 2, 0 },
    { "64 px fc2 weight gradient (192 x 1040 @ 1040 x 768)", 192, 768, 1040, 2, 0 },
  };
  for (guint i = 0; i < G_N_ELEMENTS (shapes); i++)
    {
      const Shape *s = &shapes[i];
      const int64_t wn = s->kind == 0 ? (int64_t) s->N * s->K
                         : s->kind == 2 ? (int64_t) s->K * s->N : (int64_t) s->K * s->ldb;
      const int64_t work = s->kind == 2 ? vl_gemm_tn_workspace (s->M, s->N)
                                        : vl_packed_numel (s->N, s->K);
      Run r = { s, g_new (float, (gsize) s->M * s->K), g_new (float, wn),
                g_aligned_alloc (work, sizeof (float), 64),
                g_new (float, s->N), g_new (float, (gsize) s->M * s->N) };
      for (int64_t k = 0; k < (int64_t) s->M * s->K; k++)
        r.a[k] = (float) ((k * 2654435761u) % 1000) / 1000.0f - 0.5f;
      for (int64_t k = 0; k < wn; k++)
        r.w[k] = (float) ((k * 40503u) % 1000) / 1000.0f - 0.5f;
      for (int k = 0; k < s->N; k++)
        r.bias[k] = 0.01f * k;
      if (s->kind == 0)
        vl_pack_weights (r.wp, r.w, s->K, s->N, s->K);
      const double flop = 2.0 * s->M * s->N * s->K;
      const int calls = (int) (4e9 / flop) + 1;   /* about 25 ms per timing */
      run_own (&r);
      run_openblas (&r);
      double own = flop * calls / best_seconds (run_own, &r, calls) / 1e9;
      double blas = flop * calls / best_seconds (run_openblas, &r, calls) / 1e9;
      printf ("shape=%s own=%.1f openblas=%.1f\n", s->name, own, blas);
      g_free (r.a);
      g_free (r.w);
      g_aligned_free (r.wp);
      g_free (r.bias);
      g_free (r.c);
    }
#if defined(__x86_64__) && defined(__GNUC__)
  printf ("fma_peak=%.1f\n", vl_gemm_isa () == VL_GEMM_AVX512 ? fma_peak () : fma_peak_avx2 ());
#endif
  return 0;
}

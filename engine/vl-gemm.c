/* vl-gemm.c: the products of the forward (and of the backward's input gradients) without
 * OpenBLAS's per-call packing.
 *
 * OpenBLAS packs both operands again at every call. A ViT block run image by image calls it with
 * 197 token rows against weights of up to 768 x 768, so repacking the weights (read from L3 each
 * time) cost about a tenth of the forward. Here the right-hand operand is read as panels of 32
 * columns, K rows each: a linear layer's weight is packed into that form once (after each change),
 * and a row-major operand (a weight used untransposed, attention's values) is read as it is, a
 * panel being 32 columns of it. The kernel keeps 12 x 32 results in registers, broadcasts each
 * left-hand value from its row in place (no packing there either), and scales, adds the bias and
 * the residual as it stores. The weight gradients (a long contraction over a batch's token rows)
 * use the same kernel on both operands copied per block (vl_gemm_tn). AVX-512 only; other CPUs
 * run the same contract in plain C, and the engine keeps OpenBLAS there
 * (vl_gemm_packed_supported). */
#include "vl-gemm.h"

#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define VL_HAVE_AVX512_GEMM 1
#endif

#define NR 32   /* columns per panel: two zmm registers */
#define MR 12   /* rows per tile: 24 accumulators */
#define KC 192  /* contraction block of vl_gemm_tn: a 32-column panel of it is 24 KiB */
#define AS 16   /* floats per row of a packed tile of vl_gemm_tn's left operand: 12, padded to a
                 * 64-byte line so that the copy is whole aligned stores */

/* c (M, N) = alpha a (M, K) B (K, N) [+ bias (N)] [+ res (M, N)], B's column panel j starting at
 * b + j panel, its rows ldb apart. */
typedef struct {
  const float *a, *b, *bias, *res;
  float *c;
  int64_t lda, ldb, panel, ldc, ldr;
  float alpha;
  int M, N, K;
  gboolean ta;   /* a stored transposed: element (i, k) at a[k lda + i] */
} Gemm;

int64_t
vl_packed_numel (int N, int K)
{
  return (int64_t) (N + NR - 1) / NR * NR * K;
}

static gboolean pack_panel_avx512 (float *panel, const float *w, int64_t ldw, int n_here, int K);

void
vl_pack_weights (float *dst, const float *w, int64_t ldw, int N, int K)
{
  for (int p = 0; p < N; p += NR)
    {
      float *panel = dst + (int64_t) p * K;
      int n_here = N - p < NR ? N - p : NR;
      if (pack_panel_avx512 (panel, w + (int64_t) p * ldw, ldw, n_here, K))
        continue;
      /* each row of w read in order (they may lie far apart: attention's keys) */
      for (int j = 0; j < n_here; j++)
        {
          const float *src = w + (int64_t) (p + j) * ldw;
          for (int k = 0; k < K; k++)
            panel[(int64_t) k * NR + j] = src[k];
        }
      if (n_here < NR)
        for (int k = 0; k < K; k++)
          memset (panel + (int64_t) k * NR + n_here, 0, sizeof (float) * (NR - n_here));
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

/* r[16] (16 rows of 16) transposed in registers: unpack pairs of rows, shuffle within 128-bit
 * lanes (4 x 4 blocks), then move the lanes across registers in two steps. */
static inline __attribute__ ((always_inline)) AVX512 void
transpose16 (__m512 r[16])
{
  __m512 t[16], u[16], v[16];
  for (int i = 0; i < 8; i++)
    {
      t[2 * i] = _mm512_unpacklo_ps (r[2 * i], r[2 * i + 1]);
      t[2 * i + 1] = _mm512_unpackhi_ps (r[2 * i], r[2 * i + 1]);
    }
  for (int g = 0; g < 4; g++)
    {
      u[4 * g + 0] = _mm512_shuffle_ps (t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE (1, 0, 1, 0));
      u[4 * g + 1] = _mm512_shuffle_ps (t[4 * g + 0], t[4 * g + 2], _MM_SHUFFLE (3, 2, 3, 2));
      u[4 * g + 2] = _mm512_shuffle_ps (t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE (1, 0, 1, 0));
      u[4 * g + 3] = _mm512_shuffle_ps (t[4 * g + 1], t[4 * g + 3], _MM_SHUFFLE (3, 2, 3, 2));
    }
  /* u[4g + q], 128-bit lane L: rows 4g .. 4g + 3 of column 4L + q */
  for (int q = 0; q < 4; q++)
    {
      v[q] = _mm512_shuffle_f32x4 (u[q], u[4 + q], 0x88);
      v[4 + q] = _mm512_shuffle_f32x4 (u[q], u[4 + q], 0xdd);
      v[8 + q] = _mm512_shuffle_f32x4 (u[8 + q], u[12 + q], 0x88);
      v[12 + q] = _mm512_shuffle_f32x4 (u[8 + q], u[12 + q], 0xdd);
    }
  for (int q = 0; q < 4; q++)
    {
      r[q] = _mm512_shuffle_f32x4 (v[q], v[8 + q], 0x88);
      r[8 + q] = _mm512_shuffle_f32x4 (v[q], v[8 + q], 0xdd);
      r[4 + q] = _mm512_shuffle_f32x4 (v[4 + q], v[12 + q], 0x88);
      r[12 + q] = _mm512_shuffle_f32x4 (v[4 + q], v[12 + q], 0xdd);
    }
}

static AVX512 void
pack_panel_16x16 (float *panel, const float *w, int64_t ldw, int K)
{
  for (int j0 = 0; j0 < NR; j0 += 16)
    for (int k0 = 0; k0 < K; k0 += 16)
      {
        __m512 r[16];
        for (int t = 0; t < 16; t++)
          r[t] = _mm512_loadu_ps (w + (int64_t) (j0 + t) * ldw + k0);
        transpose16 (r);
        for (int q = 0; q < 16; q++)
          _mm512_storeu_ps (panel + (int64_t) (k0 + q) * NR + j0, r[q]);
      }
}

/* A whole panel whose rows are a multiple of 16 long: 16 x 16 blocks transposed in registers
 * (attention packs its keys and values per head: 1% of a step done element by element). */
static gboolean
pack_panel_avx512 (float *panel, const float *w, int64_t ldw, int n_here, int K)
{
  if (n_here != NR || K % 16 != 0 || !vl_gemm_enabled ())
    return FALSE;
  pack_panel_16x16 (panel, w, ldw, K);
  return TRUE;
}

/* One tile: rows [r, r + mr) and the panel of columns [p, p + 32); m0, m1 say which of them are
 * in the matrix. The loads from b are plain where every column is (a packed panel is padded
 * with zeros; `mode` PACKED also fixes its row stride at 32), masked only for a row-major
 * operand's last, narrower panel. The arguments are scalars so that they stay in registers. */
enum { PACKED, ROWS, ROWS_TAIL };

/* ta: a is stored transposed, its element (i, k) at ap[k lda + i] (else at ap[i lda + k]). */
static inline __attribute__ ((always_inline)) AVX512 void
tile (const int mr, const int mode, const int ta, int K, const float *restrict ap, int64_t lda,
      const float *restrict bp, int64_t ldb, float *c, int64_t ldc, float alpha,
      const float *bias, const float *res, int64_t ldr, __mmask16 m0, __mmask16 m1)
{
  if (mode == PACKED)
    ldb = NR;
  __m512 c0[MR], c1[MR];
#pragma GCC unroll 12
  for (int i = 0; i < mr; i++)
    c0[i] = c1[i] = _mm512_setzero_ps ();
  for (int k = 0; k < K; k++)
    {
      __m512 b0, b1;
      if (mode == ROWS_TAIL)
        {
          b0 = _mm512_maskz_loadu_ps (m0, bp);
          b1 = _mm512_maskz_loadu_ps (m1, bp + 16);
        }
      else
        {
          b0 = _mm512_loadu_ps (bp);
          b1 = _mm512_loadu_ps (bp + 16);
        }
      bp += ldb;
      const float *a = ta ? ap + k * lda : ap + k;
#pragma GCC unroll 12
      for (int i = 0; i < mr; i++)
        {
          __m512 av = _mm512_set1_ps (ta ? a[i] : a[i * lda]);
          c0[i] = _mm512_fmadd_ps (av, b0, c0[i]);
          c1[i] = _mm512_fmadd_ps (av, b1, c1[i]);
        }
    }
  const __m512 va = _mm512_set1_ps (alpha);
  __m512 bias0 = _mm512_setzero_ps (), bias1 = _mm512_setzero_ps ();
  if (bias)
    {
      bias0 = _mm512_maskz_loadu_ps (m0, bias);
      bias1 = _mm512_maskz_loadu_ps (m1, bias + 16);
    }
#pragma GCC unroll 12
  for (int i = 0; i < mr; i++)
    {
      __m512 v0 = _mm512_fmadd_ps (c0[i], va, bias0);
      __m512 v1 = _mm512_fmadd_ps (c1[i], va, bias1);
      if (res)
        {
          v0 = _mm512_add_ps (v0, _mm512_maskz_loadu_ps (m0, res + i * ldr));
          v1 = _mm512_add_ps (v1, _mm512_maskz_loadu_ps (m1, res + i * ldr + 16));
        }
      _mm512_mask_storeu_ps (c + i * ldc, m0, v0);
      _mm512_mask_storeu_ps (c + i * ldc + 16, m1, v1);
    }
}

typedef void (*TileFn) (int, const float *, int64_t, const float *, int64_t, float *, int64_t,
                        float, const float *, const float *, int64_t, __mmask16, __mmask16);

#define TILE(n, mode, ta) \
  static AVX512 void tile_##n##_##mode##ta (int K, const float *ap, int64_t lda, \
                                            const float *bp, int64_t ldb, float *c, int64_t ldc, \
                                            float alpha, const float *bias, const float *res, \
                                            int64_t ldr, __mmask16 m0, __mmask16 m1) \
  { tile (n, mode, ta, K, ap, lda, bp, ldb, c, ldc, alpha, bias, res, ldr, m0, m1); }
#define TILES(mode, ta) \
  TILE (1, mode, ta) TILE (2, mode, ta) TILE (3, mode, ta) TILE (4, mode, ta) \
  TILE (5, mode, ta) TILE (6, mode, ta) TILE (7, mode, ta) TILE (8, mode, ta) \
  TILE (9, mode, ta) TILE (10, mode, ta) TILE (11, mode, ta) TILE (12, mode, ta) \
  static const TileFn tiles_##mode##ta[MR + 1] = { \
    NULL, tile_1_##mode##ta, tile_2_##mode##ta, tile_3_##mode##ta, tile_4_##mode##ta, \
    tile_5_##mode##ta, tile_6_##mode##ta, tile_7_##mode##ta, tile_8_##mode##ta, \
    tile_9_##mode##ta, tile_10_##mode##ta, tile_11_##mode##ta, tile_12_##mode##ta };
TILES (PACKED, 0)
TILES (PACKED, 1)
TILES (ROWS, 0)
TILES (ROWS_TAIL, 0)
TILES (ROWS, 1)
TILES (ROWS_TAIL, 1)
#undef TILES
#undef TILE

/* One tile of 12 rows against the panel of columns [p, p + 32). */
static inline void
gemm_tile_avx512 (const Gemm *g, gboolean packed, int r, int p)
{
  int mr = g->M - r < MR ? g->M - r : MR;
  int n_here = g->N - p < NR ? g->N - p : NR;
  __mmask16 m0 = (__mmask16) (n_here >= 16 ? 0xffff : (1u << n_here) - 1);
  __mmask16 m1 = (__mmask16) (n_here <= 16 ? 0 : n_here >= 32 ? 0xffff
                                             : (1u << (n_here - 16)) - 1);
  const TileFn *fns = packed ? tiles_PACKED0
                      : n_here == NR ? (g->ta ? tiles_ROWS1 : tiles_ROWS0)
                      : (g->ta ? tiles_ROWS_TAIL1 : tiles_ROWS_TAIL0);
  fns[mr] (g->K, g->a + (g->ta ? r : (int64_t) r * g->lda), g->lda,
           g->b + (int64_t) (p / NR) * g->panel, g->ldb, g->c + (int64_t) r * g->ldc + p, g->ldc,
           g->alpha, g->bias ? g->bias + p : NULL,
           g->res ? g->res + (int64_t) r * g->ldr + p : NULL, g->ldr, m0, m1);
}

/* The order of the tiles. While b fits in L2 beside the rows of a in use (every ViT-Ti weight),
 * 12 rows of a at a time against all of b, read from L2. A larger b (ViT-S's MLP) would then come
 * from L3 for every 12 rows: the rows go in blocks of about 768 KiB of a instead, and each panel of
 * b (K x 32) is read once per block and passes all the block's rows while it is in cache. */
static void
gemm_avx512 (const Gemm *g, gboolean packed)
{
  const int64_t b_bytes = (int64_t) g->K * ((g->N + NR - 1) / NR * NR) * sizeof (float);
  if (b_bytes <= (1 << 20))
    {
      for (int r = 0; r < g->M; r += MR)
        for (int p = 0; p < g->N; p += NR)
          gemm_tile_avx512 (g, packed, r, p);
      return;
    }
  int mc = (int) ((768 << 10) / ((int64_t) g->K * sizeof (float))) / MR * MR;
  mc = mc < MR ? MR : mc;
  for (int r0 = 0; r0 < g->M; r0 += mc)
    for (int p = 0; p < g->N; p += NR)
      for (int r = r0; r < g->M && r < r0 + mc; r += MR)
        gemm_tile_avx512 (g, packed, r, p);
}

/* c (M, N) [+]= a^T b over a long contraction (see vl_gemm_tn), on AVX-512: the contraction in
 * blocks of KC rows. Each block of a (KC x M) is copied into tiles of 12 of its columns (KC rows
 * of AS floats each), and of b (KC x N) into panels of 32 columns (KC x 32); then panel by panel
 * (24 KiB: in L1 while it passes every tile of a, read from L2) the kernel adds the block's
 * products into c. On one core this is about as fast as OpenBLAS (bench/gemm_bench.c: 145-150
 * GFLOP/s for ViT-Ti's weight gradients); in the engine it also makes the bias gradient while
 * it copies a, and saves OpenBLAS's per-call set-up: about a tenth of the weight gradients'
 * time in unlock 6. Reading a in place instead of packing it was slower (120-140): its rows lie
 * M floats apart. */
static AVX512 void
gemm_tn_avx512 (float *c, int64_t ldc, gboolean accumulate, const float *a, int64_t lda,
                const float *b, int64_t ldb, float *colsum, int M, int N, int K, float *work)
{
  const int m_tiles = (M + MR - 1) / MR, n_panels = (N + NR - 1) / NR;
  for (int k0 = 0; k0 < K; k0 += KC)
    {
      const int kc = K - k0 < KC ? K - k0 : KC;
      float *ap = work, *bp = work + (int64_t) m_tiles * AS * KC;
      /* 8 rows at a time, tile by tile, so that each tile's copy is written in one run (row by
       * row, the stores would go to addresses a multiple of 4 KiB apart) */
      for (int g0 = 0; g0 < kc; g0 += 8)
        {
          const int g1 = kc - g0 < 8 ? kc : g0 + 8;
          for (int t = 0; t < m_tiles; t++)
            {
              const int i0 = t * MR;
              const __mmask16 m = (__mmask16) ((1u << (M - i0 < 16 ? M - i0 : 16)) - 1);
              for (int k = g0; k < g1; k++)
                _mm512_store_ps (ap + ((int64_t) t * kc + k) * AS,
                                 _mm512_maskz_loadu_ps (m, a + (int64_t) (k0 + k) * lda + i0));
            }
          for (int p = 0; p < n_panels; p++)
            {
              const int j0 = p * NR, n = N - j0 < NR ? N - j0 : NR;
              const __mmask16 m0 = (__mmask16) (n >= 16 ? 0xffff : (1u << n) - 1);
              const __mmask16 m1 = (__mmask16) (n <= 16 ? 0 : n >= 32 ? 0xffff
                                                 : (1u << (n - 16)) - 1);
              for (int k = g0; k < g1; k++)
                {
                  const float *brow = b + (int64_t) (k0 + k) * ldb + j0;
                  float *dst = bp + ((int64_t) p * kc + k) * NR;
                  _mm512_storeu_ps (dst, _mm512_maskz_loadu_ps (m0, brow));
                  _mm512_storeu_ps (dst + 16, _mm512_maskz_loadu_ps (m1, brow + 16));
                }
            }
          if (colsum)
            for (int k = g0; k < g1; k++)
              {
                const float *arow = a + (int64_t) (k0 + k) * lda;
                int i = 0;
                for (; i + 16 <= M; i += 16)
                  _mm512_storeu_ps (colsum + i, _mm512_add_ps (_mm512_loadu_ps (colsum + i),
                                                               _mm512_loadu_ps (arow + i)));
                for (; i < M; i++)
                  colsum[i] += arow[i];
              }
        }
      const gboolean add = accumulate || k0 > 0;
      for (int p = 0; p < n_panels; p++)
        {
          const int j0 = p * NR, n = N - j0 < NR ? N - j0 : NR;
          const __mmask16 m0 = (__mmask16) (n >= 16 ? 0xffff : (1u << n) - 1);
          const __mmask16 m1 = (__mmask16) (n <= 16 ? 0 : n >= 32 ? 0xffff
                                             : (1u << (n - 16)) - 1);
          for (int t = 0; t < m_tiles; t++)
            {
              const int i0 = t * MR, mr = M - i0 < MR ? M - i0 : MR;
              float *ct = c + (int64_t) i0 * ldc + j0;
              tiles_PACKED1[mr] (kc, ap + (int64_t) t * kc * AS, AS, bp + (int64_t) p * kc * NR,
                                 NR, ct, ldc, 1.0f, NULL, add ? ct : NULL, ldc, m0, m1);
            }
        }
    }
}

#else

gboolean
vl_gemm_packed_supported (void)
{
  return FALSE;
}

static gboolean
pack_panel_avx512 (float *panel, const float *w, int64_t ldw, int n_here, int K)
{
  return FALSE;
}

#endif

static gsize gemm_use;   /* 1 + whether */

gboolean
vl_gemm_enabled (void)
{
  if (g_once_init_enter (&gemm_use))
    g_once_init_leave (&gemm_use, 1 + (vl_gemm_packed_supported () &&
                                       g_strcmp0 (g_getenv ("VITLAB_PACKED_GEMM"), "0") != 0));
  return gemm_use == 2;
}

void
vl_gemm_set_enabled (gboolean enabled)
{
  vl_gemm_enabled ();
  g_atomic_pointer_set (&gemm_use, 1 + (enabled && vl_gemm_packed_supported ()));
}

/* The same in plain C, for CPUs without AVX-512 (where the engine keeps OpenBLAS; this one is for
 * the tests and for completeness). */
static void
gemm_plain (const Gemm *g)
{
  for (int r = 0; r < g->M; r++)
    for (int p = 0; p < g->N; p += NR)
      {
        int n_here = g->N - p < NR ? g->N - p : NR;
        float acc[NR] = { 0 };
        const float *bp = g->b + (int64_t) (p / NR) * g->panel;
        for (int k = 0; k < g->K; k++)
          {
            float av = g->ta ? g->a[(int64_t) k * g->lda + r] : g->a[(int64_t) r * g->lda + k];
            for (int j = 0; j < n_here; j++)
              acc[j] += av * bp[(int64_t) k * g->ldb + j];
          }
        for (int j = 0; j < n_here; j++)
          {
            float v = acc[j] * g->alpha + (g->bias ? g->bias[p + j] : 0.0f);
            if (g->res)
              v += g->res[(int64_t) r * g->ldr + p + j];
            g->c[(int64_t) r * g->ldc + p + j] = v;
          }
      }
}

static void
gemm_run (const Gemm *g, gboolean packed)
{
  if (g->M <= 0 || g->N <= 0)
    return;
#ifdef VL_HAVE_AVX512_GEMM
  if (vl_gemm_enabled ())
    {
      gemm_avx512 (g, packed);
      return;
    }
#endif
  gemm_plain (g);
}

void
vl_gemm_packed (float *c, int64_t ldc, const float *a, int64_t lda, const float *wp, float alpha,
                const float *bias, const float *res, int64_t ldr, int M, int N, int K)
{
  Gemm g = { a, wp, bias, res, c, lda, NR, (int64_t) NR * K, ldc, ldr, alpha, M, N, K, FALSE };
  gemm_run (&g, TRUE);
}

void
vl_gemm_rowmajor (gboolean trans_a, float *c, int64_t ldc, const float *a, int64_t lda,
                  const float *b, int64_t ldb, float alpha, const float *res, int64_t ldr, int M,
                  int N, int K)
{
  Gemm g = { a, b, NULL, res, c, lda, ldb, NR, ldc, ldr, alpha, M, N, K, trans_a };
  gemm_run (&g, FALSE);
}

int64_t
vl_gemm_tn_workspace (int M, int N)
{
  return ((int64_t) (M + MR - 1) / MR * AS + (int64_t) (N + NR - 1) / NR * NR) * KC;
}

void
vl_gemm_tn (float *c, int64_t ldc, gboolean accumulate, const float *a, int64_t lda,
            const float *b, int64_t ldb, float *colsum, int M, int N, int K, float *work)
{
  if (M <= 0 || N <= 0)
    return;
#ifdef VL_HAVE_AVX512_GEMM
  if (vl_gemm_enabled ())
    {
      gemm_tn_avx512 (c, ldc, accumulate, a, lda, b, ldb, colsum, M, N, K, work);
      return;
    }
#endif
  for (int i = 0; i < M; i++)
    if (!accumulate)
      memset (c + (int64_t) i * ldc, 0, sizeof (float) * N);
  for (int k = 0; k < K; k++)
    {
      const float *arow = a + (int64_t) k * lda, *brow = b + (int64_t) k * ldb;
      for (int i = 0; i < M; i++)
        {
          float *restrict ci = c + (int64_t) i * ldc;
          const float av = arow[i];
          for (int j = 0; j < N; j++)
            ci[j] += av * brow[j];
        }
      if (colsum)
        for (int i = 0; i < M; i++)
          colsum[i] += arow[i];
    }
}

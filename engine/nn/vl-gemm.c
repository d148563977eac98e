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
 * use the same kernel on both operands copied per block (vl_gemm_tn). That is the AVX-512 kernel;
 * CPUs with AVX2 + FMA only (AMD Zen) run a 6 x 16 one on panels of 16 (below, "AVX2"); other
 * CPUs run the same contract in plain C, and the engine keeps OpenBLAS there (vl_gemm_isa). */
#include "vl-gemm.h"

#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include "vl-avx2.h"
#define VL_HAVE_X86_GEMM 1
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
static gboolean pack_panel16 (float *panel, const float *w, int64_t ldw, int n_here, int K);

/* Columns of a packed panel for the kernel in use: 32 (two zmm registers; also the plain C's
 * layout), 16 for the AVX2 kernel */
static int
packed_width (void)
{
  return vl_gemm_isa () == VL_GEMM_AVX2 ? 16 : NR;
}

void
vl_pack_weights (float *dst, const float *w, int64_t ldw, int N, int K)
{
  const int nr = packed_width ();
  for (int p = 0; p < N; p += nr)
    {
      float *panel = dst + (int64_t) p * K;
      int n_here = N - p < nr ? N - p : nr;
      if (nr == NR && pack_panel_avx512 (panel, w + (int64_t) p * ldw, ldw, n_here, K))
        continue;
      if (nr == 16 && pack_panel16 (panel, w + (int64_t) p * ldw, ldw, n_here, K))
        continue;
      /* each row of w read in order (they may lie far apart: attention's keys) */
      for (int j = 0; j < n_here; j++)
        {
          const float *src = w + (int64_t) (p + j) * ldw;
          for (int k = 0; k < K; k++)
            panel[(int64_t) k * nr + j] = src[k];
        }
      if (n_here < nr)
        for (int k = 0; k < K; k++)
          memset (panel + (int64_t) k * nr + n_here, 0, sizeof (float) * (nr - n_here));
    }
}

#ifdef VL_HAVE_X86_GEMM

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
  if (n_here != NR || K % 16 != 0 || vl_gemm_isa () != VL_GEMM_AVX512)
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

#endif

#ifdef VL_HAVE_X86_GEMM

/* The same contract on AVX2 + FMA (AMD Zen, Intel before AVX-512): 16 ymm registers hold a tile
 * of 6 rows x 16 columns (12 accumulators, enough to cover the FMA latency of two pipes), half
 * of a 32-column panel, so the panels and the packing are the ones of the AVX-512 kernel. */
#define AVX2 VL_AVX2
#define MR2 6
#define KC2 192   /* contraction block of gemm_tn_avx2 (384 measured no faster, 768 slower) */
#define NR2 16   /* columns of a tile, and of a packed panel */

/* One tile: rows [0, mr) of ap against 16 columns of bp, n (1 to 16) of them in the matrix.
 * Loads from b are masked only for a row-major operand's last, narrower columns (ROWS_TAIL);
 * the stores (and the bias and residual loads) only where n < 16. */
static inline __attribute__ ((always_inline)) AVX2 void
tile2 (const int mr, const int mode, const int ta, int K, const float *restrict ap, int64_t lda,
       const float *restrict bp, int64_t ldb, float *c, int64_t ldc, float alpha,
       const float *bias, const float *res, int64_t ldr, int n)
{
  if (mode == PACKED)
    ldb = NR2;
  const __m256i k0 = vl_lanes8 (n), k1 = vl_lanes8 (n - 8);
  __m256 c0[MR2], c1[MR2];
#pragma GCC unroll 6
  for (int i = 0; i < mr; i++)
    c0[i] = c1[i] = _mm256_setzero_ps ();
/* four steps of k an iteration: fewer address updates among the FMAs (measured 5% faster on
 * Zen 3) */
#pragma GCC unroll 4
  for (int k = 0; k < K; k++)
    {
      __m256 b0, b1;
      if (mode == ROWS_TAIL)
        {
          b0 = _mm256_maskload_ps (bp, k0);
          b1 = _mm256_maskload_ps (bp + 8, k1);
        }
      else
        {
          b0 = _mm256_loadu_ps (bp);
          b1 = _mm256_loadu_ps (bp + 8);
        }
      bp += ldb;
      const float *a = ta ? ap + k * lda : ap + k;
#pragma GCC unroll 6
      for (int i = 0; i < mr; i++)
        {
          const __m256 av = _mm256_broadcast_ss (ta ? a + i : a + i * lda);
          c0[i] = _mm256_fmadd_ps (av, b0, c0[i]);
          c1[i] = _mm256_fmadd_ps (av, b1, c1[i]);
        }
    }
  const __m256 va = _mm256_set1_ps (alpha);
  const gboolean whole = n >= 16;
  __m256 bias0 = _mm256_setzero_ps (), bias1 = _mm256_setzero_ps ();
  if (bias)
    {
      bias0 = whole ? _mm256_loadu_ps (bias) : _mm256_maskload_ps (bias, k0);
      bias1 = whole ? _mm256_loadu_ps (bias + 8) : _mm256_maskload_ps (bias + 8, k1);
    }
#pragma GCC unroll 6
  for (int i = 0; i < mr; i++)
    {
      __m256 v0 = _mm256_fmadd_ps (c0[i], va, bias0);
      __m256 v1 = _mm256_fmadd_ps (c1[i], va, bias1);
      if (whole)
        {
          if (res)
            {
              v0 = _mm256_add_ps (v0, _mm256_loadu_ps (res + i * ldr));
              v1 = _mm256_add_ps (v1, _mm256_loadu_ps (res + i * ldr + 8));
            }
          _mm256_storeu_ps (c + i * ldc, v0);
          _mm256_storeu_ps (c + i * ldc + 8, v1);
        }
      else
        {
          if (res)
            {
              v0 = _mm256_add_ps (v0, _mm256_maskload_ps (res + i * ldr, k0));
              v1 = _mm256_add_ps (v1, _mm256_maskload_ps (res + i * ldr + 8, k1));
            }
          vl_store_lanes8 (c + i * ldc, v0, n);
          vl_store_lanes8 (c + i * ldc + 8, v1, n - 8);
        }
    }
}

typedef void (*Tile2Fn) (int, const float *, int64_t, const float *, int64_t, float *, int64_t,
                         float, const float *, const float *, int64_t, int);

#define TILE2(n, mode, ta) \
  static AVX2 void tile2_##n##_##mode##ta (int K, const float *ap, int64_t lda, \
                                           const float *bp, int64_t ldb, float *c, int64_t ldc, \
                                           float alpha, const float *bias, const float *res, \
                                           int64_t ldr, int cols) \
  { tile2 (n, mode, ta, K, ap, lda, bp, ldb, c, ldc, alpha, bias, res, ldr, cols); }
#define TILES2(mode, ta) \
  TILE2 (1, mode, ta) TILE2 (2, mode, ta) TILE2 (3, mode, ta) TILE2 (4, mode, ta) \
  TILE2 (5, mode, ta) TILE2 (6, mode, ta) \
  static const Tile2Fn tiles2_##mode##ta[MR2 + 1] = { \
    NULL, tile2_1_##mode##ta, tile2_2_##mode##ta, tile2_3_##mode##ta, tile2_4_##mode##ta, \
    tile2_5_##mode##ta, tile2_6_##mode##ta };
TILES2 (PACKED, 0)
TILES2 (PACKED, 1)
TILES2 (ROWS, 0)
TILES2 (ROWS_TAIL, 0)
TILES2 (ROWS, 1)
TILES2 (ROWS_TAIL, 1)
#undef TILES2
#undef TILE2

/* r[8] (8 rows of 8) transposed in registers */
static inline __attribute__ ((always_inline)) AVX2 void
transpose8 (__m256 r[8])
{
  const __m256 t0 = _mm256_unpacklo_ps (r[0], r[1]), t1 = _mm256_unpackhi_ps (r[0], r[1]);
  const __m256 t2 = _mm256_unpacklo_ps (r[2], r[3]), t3 = _mm256_unpackhi_ps (r[2], r[3]);
  const __m256 t4 = _mm256_unpacklo_ps (r[4], r[5]), t5 = _mm256_unpackhi_ps (r[4], r[5]);
  const __m256 t6 = _mm256_unpacklo_ps (r[6], r[7]), t7 = _mm256_unpackhi_ps (r[6], r[7]);
  const __m256 u0 = _mm256_shuffle_ps (t0, t2, _MM_SHUFFLE (1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps (t0, t2, _MM_SHUFFLE (3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps (t1, t3, _MM_SHUFFLE (1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps (t1, t3, _MM_SHUFFLE (3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps (t4, t6, _MM_SHUFFLE (1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps (t4, t6, _MM_SHUFFLE (3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps (t5, t7, _MM_SHUFFLE (1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps (t5, t7, _MM_SHUFFLE (3, 2, 3, 2));
  /* column k of the 8 rows: k < 4 from the low lanes, k >= 4 from the high ones */
  r[0] = _mm256_permute2f128_ps (u0, u4, 0x20);
  r[1] = _mm256_permute2f128_ps (u1, u5, 0x20);
  r[2] = _mm256_permute2f128_ps (u2, u6, 0x20);
  r[3] = _mm256_permute2f128_ps (u3, u7, 0x20);
  r[4] = _mm256_permute2f128_ps (u0, u4, 0x31);
  r[5] = _mm256_permute2f128_ps (u1, u5, 0x31);
  r[6] = _mm256_permute2f128_ps (u2, u6, 0x31);
  r[7] = _mm256_permute2f128_ps (u3, u7, 0x31);
}

/* dst[k * w + i] = src[i * lda + k] for k < 8 and i < mr (at most w, 6 or 4; the other rows
 * zeros): each row of the transposition (w values and 8 - w zeros) stored w floats after the
 * last, so that the next overwrites the zeros; the last store writes 8 - w floats past the 8 w. */
static inline __attribute__ ((always_inline)) AVX2 void
transpose_6x8 (float *dst, const float *src, int64_t lda, int mr, int w)
{
  __m256 r[8];
  for (int i = 0; i < 8; i++)
    r[i] = i < mr ? _mm256_loadu_ps (src + i * lda) : _mm256_setzero_ps ();
  transpose8 (r);
  for (int k = 0; k < 8; k++)
    _mm256_storeu_ps (dst + k * w, r[k]);
}

/* The row tiles of a block of `rows`: t-th of (rows + 5) / 6, its first row (returned) and its
 * rows *mr. Tiles of 6, but where 1 or 2 rows would be left after a whole tile, its last 7 or 8
 * rows go as 4 + 3 or 4 + 4: a tile of 1 or 2 rows keeps 2 or 4 accumulators, fewer than the FMA
 * latency needs to fill both pipes, and the shipped backbone's 50-token images ended on one
 * (8 x 6 + 2: 1.9% of a training step's samples in that tile). *w: the width of the tile's
 * micro-panel when the rows are packed (6, or 4 for such a pair). */
static inline int
row_tile (int rows, int t, int *mr, int *w)
{
  const int n = (rows + MR2 - 1) / MR2, rem = rows % MR2;
  if (rows > MR2 && (rem == 1 || rem == 2) && t >= n - 2)
    {
      const int r = (n - 2) * MR2 + (t == n - 1 ? 4 : 0);
      *mr = t == n - 1 ? rows - r : 4;
      *w = 4;
      return r;
    }
  const int r = t * MR2;
  *mr = rows - r < MR2 ? rows - r : MR2;
  *w = MR2;
  return r;
}

/* A whole 16-row panel of a weight whose rows are a multiple of 8 long, for the AVX2 kernel: 8 x 8
 * blocks transposed in registers (attention's keys and values are packed per head at every
 * forward: 1.2% of a step element by element) */
static AVX2 void
pack_panel16_avx2 (float *panel, const float *w, int64_t ldw, int K)
{
  for (int j0 = 0; j0 < 16; j0 += 8)
    for (int k0 = 0; k0 < K; k0 += 8)
      {
        __m256 r[8];
        for (int i = 0; i < 8; i++)
          r[i] = _mm256_loadu_ps (w + (int64_t) (j0 + i) * ldw + k0);
        transpose8 (r);
        for (int k = 0; k < 8; k++)
          _mm256_storeu_ps (panel + (int64_t) (k0 + k) * 16 + j0, r[k]);
      }
}

/* Each thread's buffer for the rows of a copied into micro-panels (pack_a_avx2), kept from call
 * to call and freed with the thread. */
typedef struct {
  float  *buf;
  int64_t cap;
} APack;

static void
apack_free (gpointer data)
{
  APack *ap = data;
  g_aligned_free (ap->buf);
  g_free (ap);
}

static GPrivate apack_key = G_PRIVATE_INIT (apack_free);

/* Rows [r0, r0 + rows) of a (not transposed) copied as micro-panels of 6 rows, k-major: the
 * kernel then broadcasts its left-hand values from one stream instead of six rows lda apart
 * (2-4% of a step, measured in one process alternating both; the copy is K floats per row
 * against N multiply-adds per value). */
static AVX2 float *
pack_a_avx2 (const Gemm *g, int r0, int rows)
{
  APack *ap = g_private_get (&apack_key);
  if (ap == NULL)
    {
      ap = g_new0 (APack, 1);
      g_private_set (&apack_key, ap);
    }
  const int tiles = (rows + MR2 - 1) / MR2;
  const int64_t need = (int64_t) tiles * MR2 * g->K + 8;   /* + the last store's overhang */
  if (need > ap->cap)
    {
      g_aligned_free (ap->buf);
      ap->buf = g_aligned_alloc (need, sizeof (float), 64);
      ap->cap = need;
    }
  for (int t = 0; t < tiles; t++)
    {
      int mr, w;
      const int r = row_tile (rows, t, &mr, &w);
      /* tile t's micro-panel (w wide) starts at r K: the 4-wide pair fills the last two 6-wide
       * panels' room */
      float *dst = ap->buf + (int64_t) r * g->K;
      const float *src = g->a + (int64_t) (r0 + r) * g->lda;
      int k = 0;
      for (; k + 8 <= g->K; k += 8)
        transpose_6x8 (dst + (int64_t) k * w, src + k, g->lda, mr, w);
      for (; k < g->K; k++)
        for (int i = 0; i < w; i++)
          dst[(int64_t) k * w + i] = i < mr ? src[(int64_t) i * g->lda + k] : 0.0f;
    }
  return ap->buf;
}

/* The order of the tiles, for the smaller caches of such CPUs (Zen 3: 32 KiB L1, 512 KiB L2,
 * where a ViT-Ti MLP weight alone is 576 KiB): the rows in blocks of about 256 KiB of a, and for
 * each block panel by panel (16 columns: weights are packed 16 wide for this kernel, so that a
 * panel is one contiguous run, 12 KiB at K = 192), the panel staying in L1 while it passes every
 * 6 rows of the block, read from L2. With packed weights, the block of a is copied into
 * micro-panels first. */
static void
gemm_avx2 (const Gemm *g, gboolean packed)
{
  int mc = (int) ((256 << 10) / ((int64_t) g->K * sizeof (float))) / MR2 * MR2;
  mc = mc < MR2 ? MR2 : mc;
  if (packed && !g->ta)
    {
      for (int r0 = 0; r0 < g->M; r0 += mc)
        {
          const int rows = g->M - r0 < mc ? g->M - r0 : mc;
          const float *ap = pack_a_avx2 (g, r0, rows);
          for (int p = 0; p < g->N; p += 16)
            {
              const int n = g->N - p < 16 ? g->N - p : 16;
              const float *b = g->b + (int64_t) p * g->K;
              for (int t = 0; t * MR2 < rows; t++)
                {
                  int mr, w;
                  const int r = row_tile (rows, t, &mr, &w);
                  tiles2_PACKED1[mr] (g->K, ap + (int64_t) r * g->K, w, b, g->ldb,
                                      g->c + (int64_t) (r0 + r) * g->ldc + p, g->ldc, g->alpha,
                                      g->bias ? g->bias + p : NULL,
                                      g->res ? g->res + (int64_t) (r0 + r) * g->ldr + p : NULL,
                                      g->ldr, n);
                }
            }
        }
      return;
    }
  for (int r0 = 0; r0 < g->M; r0 += mc)
    for (int p = 0; p < g->N; p += 16)
      {
        const int n = g->N - p < 16 ? g->N - p : 16;
        const Tile2Fn *fns = packed ? tiles2_PACKED0
                             : n == 16 ? (g->ta ? tiles2_ROWS1 : tiles2_ROWS0)
                             : (g->ta ? tiles2_ROWS_TAIL1 : tiles2_ROWS_TAIL0);
        const float *b = packed ? g->b + (int64_t) p * g->K : g->b + p;
        const int rows = g->M - r0 < mc ? g->M - r0 : mc;
        for (int t = 0; t * MR2 < rows; t++)
          {
            int mr, w;
            const int r = r0 + row_tile (rows, t, &mr, &w);
            fns[mr] (g->K, g->a + (g->ta ? r : (int64_t) r * g->lda), g->lda, b, g->ldb,
                     g->c + (int64_t) r * g->ldc + p, g->ldc, g->alpha,
                     g->bias ? g->bias + p : NULL,
                     g->res ? g->res + (int64_t) r * g->ldr + p : NULL, g->ldr, n);
          }
      }
}

/* vl_gemm_tn on AVX2: the contraction in blocks of KC rows, as gemm_tn_avx512; each block of a
 * (KC x M) copied into micro-panels of 6 of its columns (KC x 6, 4.5 KiB), of b (KC x N) into
 * panels of 16 columns (KC x 16, 12 KiB). Then, for a group of b's panels that fits in half of
 * L2, each micro-panel of a (in L1) passes every panel of the group (read from L2). */
static AVX2 void
gemm_tn_avx2 (float *c, int64_t ldc, gboolean accumulate, const float *a, int64_t lda,
              const float *b, int64_t ldb, float *colsum, int M, int N, int K, float *work)
{
  const int m_tiles = (M + MR2 - 1) / MR2, n_panels = (N + NR2 - 1) / NR2;
  const int group = 10;   /* panels: 120 KiB */
  for (int k0 = 0; k0 < K; k0 += KC2)
    {
      const int kc = K - k0 < KC2 ? K - k0 : KC2;
      float *ap = work, *bp = work + (int64_t) m_tiles * MR2 * KC2;
      for (int g0 = 0; g0 < kc; g0 += 8)
        {
          const int g1 = kc - g0 < 8 ? kc : g0 + 8;
          for (int t = 0; t < m_tiles; t++)
            {
              const int i0 = t * MR2, n = M - i0 < MR2 ? M - i0 : MR2;
              const __m256i m0 = vl_lanes8 (n);
              /* 8 floats stored for each row of 6 (the next row's store covers the two extra)
               * but for the micro-panel's last row */
              /* a plain load where 8 columns are there (all tiles but the last): a masked load
               * (vmaskmovps) was a third of the copy's time here */
              const gboolean whole = i0 + 8 <= M;
              for (int k = g0; k < g1; k++)
                {
                  const float *src = a + (int64_t) (k0 + k) * lda + i0;
                  vl_store_lanes8 (ap + ((int64_t) t * kc + k) * MR2,
                                   whole ? _mm256_loadu_ps (src) : _mm256_maskload_ps (src, m0),
                                   k == kc - 1 ? MR2 : 8);
                }
            }
          for (int p = 0; p < n_panels; p++)
            {
              const int j0 = p * NR2, n = N - j0 < NR2 ? N - j0 : NR2;
              const __m256i m0 = vl_lanes8 (n), m1 = vl_lanes8 (n - 8);
              if (n == NR2)
                for (int k = g0; k < g1; k++)
                  {
                    const float *brow = b + (int64_t) (k0 + k) * ldb + j0;
                    float *dst = bp + ((int64_t) p * kc + k) * NR2;
                    _mm256_storeu_ps (dst, _mm256_loadu_ps (brow));
                    _mm256_storeu_ps (dst + 8, _mm256_loadu_ps (brow + 8));
                  }
              else
                for (int k = g0; k < g1; k++)
                  {
                    const float *brow = b + (int64_t) (k0 + k) * ldb + j0;
                    float *dst = bp + ((int64_t) p * kc + k) * NR2;
                    _mm256_storeu_ps (dst, _mm256_maskload_ps (brow, m0));
                    _mm256_storeu_ps (dst + 8, _mm256_maskload_ps (brow + 8, m1));
                  }
            }
          if (colsum)
            for (int k = g0; k < g1; k++)
              {
                const float *arow = a + (int64_t) (k0 + k) * lda;
                int i = 0;
                for (; i + 8 <= M; i += 8)
                  _mm256_storeu_ps (colsum + i, _mm256_add_ps (_mm256_loadu_ps (colsum + i),
                                                               _mm256_loadu_ps (arow + i)));
                for (; i < M; i++)
                  colsum[i] += arow[i];
              }
        }
      const gboolean add = accumulate || k0 > 0;
      for (int p0 = 0; p0 < n_panels; p0 += group)
        for (int t = 0; t < m_tiles; t++)
          {
            const int i0 = t * MR2, mr = M - i0 < MR2 ? M - i0 : MR2;
            const float *at = ap + (int64_t) t * kc * MR2;
            for (int p = p0; p < n_panels && p < p0 + group; p++)
              {
                const int j0 = p * NR2, n = N - j0 < NR2 ? N - j0 : NR2;
                float *ct = c + (int64_t) i0 * ldc + j0;
                tiles2_PACKED1[mr] (kc, at, MR2, bp + (int64_t) p * kc * NR2, NR2, ct, ldc, 1.0f,
                                    NULL, add ? ct : NULL, ldc, n);
              }
          }
    }
}

static gboolean
pack_panel16 (float *panel, const float *w, int64_t ldw, int n_here, int K)
{
  if (n_here != 16 || K % 8 != 0)
    return FALSE;
  pack_panel16_avx2 (panel, w, ldw, K);
  return TRUE;
}

#else

static gboolean
pack_panel_avx512 (float *panel, const float *w, int64_t ldw, int n_here, int K)
{
  return FALSE;
}

static gboolean
pack_panel16 (float *panel, const float *w, int64_t ldw, int n_here, int K)
{
  return FALSE;
}

#endif

/* The micro-architecture's common name from the x86 family and model, where it matters to the
 * kernels (AMD's first Zen generations split each 256-bit operation over two 128-bit units) */
static const char *
uarch_name (const char *vendor, int family, int model)
{
  if (g_strcmp0 (vendor, "AuthenticAMD") == 0)
    {
      if (family == 23)
        return model >= 0x30 ? "Zen 2" : "Zen 1";
      if (family == 25)
        return (model >= 0x10 && model < 0x20) || (model >= 0x60 && model < 0x80) ||
               (model >= 0xa0 && model < 0xb0) ? "Zen 4" : "Zen 3";
      if (family == 26)
        return "Zen 5";
    }
  return NULL;
}

static char *
read_cpu_description (void)
{
  g_autofree char *text = NULL;
  if (!g_file_get_contents ("/proc/cpuinfo", &text, NULL, NULL))
    return g_strdup ("unknown CPU");
  g_autofree char *name = NULL, *vendor = NULL;
  int family = -1, model = -1;
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL && lines[i][0] != '\0'; i++)   /* the first processor */
    {
      char *colon = strchr (lines[i], ':');
      if (colon == NULL)
        continue;
      g_autofree char *key = g_strstrip (g_strndup (lines[i], colon - lines[i]));
      const char *value = colon[1] == ' ' ? colon + 2 : colon + 1;
      if (g_str_equal (key, "model name") && name == NULL)
        name = g_strstrip (g_strdup (value));
      else if (g_str_equal (key, "vendor_id") && vendor == NULL)
        vendor = g_strstrip (g_strdup (value));
      else if (g_str_equal (key, "cpu family"))
        family = atoi (value);
      else if (g_str_equal (key, "model"))
        model = atoi (value);
    }
  const char *uarch = uarch_name (vendor, family, model);
  return g_strdup_printf ("%s (family %d, model %d%s%s)", name ? name : "unknown CPU", family,
                          model, uarch ? ": " : "", uarch ? uarch : "");
}

const char *
vl_cpu_describe (void)
{
  static gsize desc;
  if (g_once_init_enter (&desc))
    g_once_init_leave (&desc, (gsize) read_cpu_description ());
  return (const char *) desc;
}

/* The kernels this CPU can run: a bit per VlGemmIsa */
static guint
isa_supported_bits (void)
{
  static gsize bits;   /* 1 + the bits */
  if (g_once_init_enter (&bits))
    {
      gsize b = 1u << VL_GEMM_PLAIN;
#ifdef VL_HAVE_X86_GEMM
      __builtin_cpu_init ();
      if (__builtin_cpu_supports ("avx2") && __builtin_cpu_supports ("fma"))
        b |= 1u << VL_GEMM_AVX2;
      if (__builtin_cpu_supports ("avx512f"))
        b |= 1u << VL_GEMM_AVX512;
#endif
      g_once_init_leave (&bits, 1 + b);
    }
  return (guint) (bits - 1);
}

gboolean
vl_gemm_isa_supported (VlGemmIsa isa)
{
  return isa >= VL_GEMM_PLAIN && isa <= VL_GEMM_AVX512 && (isa_supported_bits () >> isa & 1);
}

static VlGemmIsa
best_isa (void)
{
  return vl_gemm_isa_supported (VL_GEMM_AVX512) ? VL_GEMM_AVX512
         : vl_gemm_isa_supported (VL_GEMM_AVX2) ? VL_GEMM_AVX2 : VL_GEMM_PLAIN;
}

const char *
vl_gemm_isa_name (VlGemmIsa isa)
{
  return isa == VL_GEMM_AVX512 ? "avx512" : isa == VL_GEMM_AVX2 ? "avx2" : "plain";
}

static gsize gemm_use;   /* 1 + the VlGemmIsa in use */

VlGemmIsa
vl_gemm_isa (void)
{
  if (g_once_init_enter (&gemm_use))
    {
      const char *env = g_getenv ("VITLAB_PACKED_GEMM");
      VlGemmIsa isa = best_isa ();
      if (g_strcmp0 (env, "0") == 0 || g_strcmp0 (env, "plain") == 0)
        isa = VL_GEMM_PLAIN;
      else if (g_strcmp0 (env, "avx2") == 0 && vl_gemm_isa_supported (VL_GEMM_AVX2))
        isa = VL_GEMM_AVX2;
      g_once_init_leave (&gemm_use, 1 + isa);
    }
  return (VlGemmIsa) (gemm_use - 1);
}

gboolean
vl_gemm_enabled (void)
{
  return vl_gemm_isa () != VL_GEMM_PLAIN;
}

void
vl_gemm_set_isa (VlGemmIsa isa)
{
  vl_gemm_isa ();
  g_atomic_pointer_set (&gemm_use, 1 + (vl_gemm_isa_supported (isa) ? isa : VL_GEMM_PLAIN));
}

void
vl_gemm_set_enabled (gboolean enabled)
{
  vl_gemm_set_isa (enabled ? best_isa () : VL_GEMM_PLAIN);
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
#ifdef VL_HAVE_X86_GEMM
  switch (vl_gemm_isa ())
    {
    case VL_GEMM_AVX512:
      gemm_avx512 (g, packed);
      return;
    case VL_GEMM_AVX2:
      gemm_avx2 (g, packed);
      return;
    default:
      break;
    }
#endif
  gemm_plain (g);
}

void
vl_pack_rows (float *dst, const float *b, int64_t ldb, int K, int N)
{
  const int nr = packed_width ();
  for (int p = 0; p < N; p += nr)
    {
      float *panel = dst + (int64_t) p * K;
      const int n_here = N - p < nr ? N - p : nr;
      for (int k = 0; k < K; k++)
        {
          memcpy (panel + (int64_t) k * nr, b + (int64_t) k * ldb + p, sizeof (float) * n_here);
          if (n_here < nr)
            memset (panel + (int64_t) k * nr + n_here, 0, sizeof (float) * (nr - n_here));
        }
    }
}

gboolean
vl_gemm_pack_rows_pays (void)
{
  return vl_gemm_isa () == VL_GEMM_AVX2;
}

void
vl_gemm_packed (float *c, int64_t ldc, const float *a, int64_t lda, const float *wp, float alpha,
                const float *bias, const float *res, int64_t ldr, int M, int N, int K)
{
  const int nr = packed_width ();
  Gemm g = { a, wp, bias, res, c, lda, nr, (int64_t) nr * K, ldc, ldr, alpha, M, N, K, FALSE };
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
  /* the larger of the AVX-512 layout and the AVX2 one (gemm_tn_avx2) */
  const int64_t w512 = ((int64_t) (M + MR - 1) / MR * AS + (int64_t) (N + NR - 1) / NR * NR) * KC;
#ifdef VL_HAVE_X86_GEMM
  const int64_t w2 = ((int64_t) (M + MR2 - 1) / MR2 * MR2 + (int64_t) (N + NR2 - 1) / NR2 * NR2)
                     * KC2;
  return w2 > w512 ? w2 : w512;
#else
  return w512;
#endif
}

void
vl_gemm_tn (float *c, int64_t ldc, gboolean accumulate, const float *a, int64_t lda,
            const float *b, int64_t ldb, float *colsum, int M, int N, int K, float *work)
{
  if (M <= 0 || N <= 0)
    return;
#ifdef VL_HAVE_X86_GEMM
  switch (vl_gemm_isa ())
    {
    case VL_GEMM_AVX512:
      gemm_tn_avx512 (c, ldc, accumulate, a, lda, b, ldb, colsum, M, N, K, work);
      return;
    case VL_GEMM_AVX2:
      gemm_tn_avx2 (c, ldc, accumulate, a, lda, b, ldb, colsum, M, N, K, work);
      return;
    default:
      break;
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

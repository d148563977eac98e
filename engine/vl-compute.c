/* vl-compute.c: forward and backward of the ViT over the thread pool.
 *
 * Activations are allocated on the first forward of a given shape and reused after that: a
 * training step at a fixed batch size allocates nothing. Blocks below the lowest unlocked group
 * run in inference mode and share one scratch set; only blocks at or above it keep what their
 * backward needs. */
#include "vl-model-private.h"
#include "vl-kernels.h"
#include "vl-pool.h"

#include <math.h>
#include <string.h>

typedef struct {
  float *ln1, *ln1_mean, *ln1_rstd;   /* (B,T,W), (B,T), (B,T) */
  float *qkv;                          /* (B,T,3W) */
  float *att;                          /* (B,H,T,T) */
  float *atty;                         /* (B,T,W) attention output before proj */
  float *xmid;                         /* (B,T,W) x + proj (atty) */
  float *ln2, *ln2_mean, *ln2_rstd;   /* (B,T,W), (B,T), (B,T) */
  float *h, *g;                        /* (B,T,M) fc1 output, GELU of it */
} BlockActs;

struct _VlActs {
  /* what this allocation was made for */
  int        B, gh, gw, T;
  int        g0;             /* lowest trainable group at the forward (-1: none) */
  int        store_from;     /* blocks >= this keep their own activations */
  gboolean   capture;
  gboolean   train;
  int        K, hidden;
  int        n_threads;

  gboolean   valid;          /* a forward ran and its results are in place */
  gboolean   valid_train;    /* ... with VL_FORWARD_TRAIN */
  gboolean   resampled;
  gboolean   from_boundary;  /* the last forward started at the pooled features */

  GPtrArray *allocs;
  float     *cols;           /* (B*NP, C*p*p) */
  float     *patch_out;      /* (B*NP, W) */
  float     *pos;            /* (T, W) the position embedding used */
  float     *resample;       /* (NP, NP0) */
  float     *resample_h, *resample_w;
  float    **xs;             /* depth + 1 of (B,T,W) */
  BlockActs *blk;
  BlockActs  scratch;
  float     *lnf, *lnf_mean, *lnf_rstd;
  float     *pooled;         /* (B,W) */
  int       *argmax;         /* (B,W) */
  float     *head_h, *head_g;/* (B,hidden) */
  float     *logits;         /* (B,K) */

  float     *dlogits;        /* (B,K) */
  float     *dpooled;        /* (B,W) */
  float     *dhead;          /* (B,hidden) */
  float     *dx;             /* (B,T,W) */
  float     *dtmp;           /* (B,T,W) */
  float     *dwide;          /* (B,T,max(M,3W)) */
  float     *datty;          /* (B,T,W) */
  float     *dscore;         /* (threads,T,T) */
  float     *ln_partial;     /* (threads,2,W) */
  float     *dpos_new;       /* (T,W) */
};

void
vl_acts_free (VlActs *a)
{
  if (a == NULL)
    return;
  g_ptr_array_free (a->allocs, TRUE);
  g_free (a->xs);
  g_free (a->blk);
  g_free (a);
}

static void *
acts_alloc (VlActs *a, int64_t n, size_t size)
{
  void *p = g_aligned_alloc0 ((gsize) MAX (n, 1), size, 64);
  g_ptr_array_add (a->allocs, p);
  return p;
}
#define FALLOC(a, n) ((float *) acts_alloc ((a), (n), sizeof (float)))

static void
block_acts_alloc (VlActs *a, BlockActs *k, const VlGeometry *g, gboolean with_att)
{
  int64_t BT = (int64_t) a->B * a->T;
  k->ln1 = FALLOC (a, BT * g->width);
  k->ln1_mean = FALLOC (a, BT);
  k->ln1_rstd = FALLOC (a, BT);
  k->qkv = FALLOC (a, BT * 3 * g->width);
  k->att = with_att ? FALLOC (a, (int64_t) a->B * g->heads * a->T * a->T) : NULL;
  k->atty = FALLOC (a, BT * g->width);
  k->xmid = FALLOC (a, BT * g->width);
  k->ln2 = FALLOC (a, BT * g->width);
  k->ln2_mean = FALLOC (a, BT);
  k->ln2_rstd = FALLOC (a, BT);
  k->h = FALLOC (a, BT * g->mlp);
  k->g = FALLOC (a, BT * g->mlp);
}

/* Lowest trainable group, or -1 when everything is frozen. */
static int
lowest_trainable (VlModel *m)
{
  for (int g = 0; g < m->n_groups; g++)
    if (m->trainable[g])
      return g;
  return -1;
}

static VlActs *
acts_ensure (VlModel *m, int B, int gh, int gw, VlForwardFlags flags)
{
  const VlGeometry *g = &m->geo;
  gboolean train = (flags & VL_FORWARD_TRAIN) != 0;
  gboolean capture = (flags & VL_FORWARD_CAPTURE_ATTN) != 0;
  int g0 = train ? lowest_trainable (m) : -1;
  int store_from = g0 < 0 ? g->depth : MAX (0, MIN (g0 - 1, g->depth));
  int threads = vl_pool_n_threads ();
  VlActs *a = m->acts;

  if (a && a->B == B && a->gh == gh && a->gw == gw && a->store_from == store_from &&
      a->capture == capture && a->train == train && a->K == m->num_classes &&
      a->hidden == m->head_hidden)
    return a;

  vl_acts_free (a);
  a = m->acts = g_new0 (VlActs, 1);
  a->allocs = g_ptr_array_new_with_free_func (g_aligned_free);
  a->B = B;
  a->gh = gh;
  a->gw = gw;
  a->T = 1 + gh * gw;
  a->store_from = store_from;
  a->capture = capture;
  a->train = train;
  a->K = m->num_classes;
  a->hidden = m->head_hidden;
  a->n_threads = threads;

  const int W = g->width, T = a->T, NP = gh * gw, CPP = g->in_chans * g->patch * g->patch;
  const int64_t BT = (int64_t) B * T;
  a->cols = FALLOC (a, (int64_t) B * NP * CPP);
  a->patch_out = FALLOC (a, (int64_t) B * NP * W);
  a->pos = FALLOC (a, (int64_t) T * W);
  a->resample = FALLOC (a, (int64_t) NP * g->grid * g->grid);
  a->resample_h = FALLOC (a, (int64_t) gh * g->grid);
  a->resample_w = FALLOC (a, (int64_t) gw * g->grid);
  a->xs = g_new0 (float *, g->depth + 1);
  for (int l = 0; l <= g->depth; l++)
    a->xs[l] = FALLOC (a, BT * W);
  a->blk = g_new0 (BlockActs, g->depth);
  if (store_from > 0)
    block_acts_alloc (a, &a->scratch, g, !capture);
  for (int l = 0; l < g->depth; l++)
    {
      if (l >= store_from)
        block_acts_alloc (a, &a->blk[l], g, TRUE);
      else
        {
          a->blk[l] = a->scratch;
          if (capture)
            a->blk[l].att = FALLOC (a, (int64_t) B * g->heads * T * T);
        }
    }
  a->lnf = FALLOC (a, BT * W);
  a->lnf_mean = FALLOC (a, BT);
  a->lnf_rstd = FALLOC (a, BT);
  a->pooled = FALLOC (a, (int64_t) B * W);
  a->argmax = acts_alloc (a, (int64_t) B * W, sizeof (int));
  a->head_h = FALLOC (a, (int64_t) B * MAX (a->hidden, 1));
  a->head_g = FALLOC (a, (int64_t) B * MAX (a->hidden, 1));
  a->logits = FALLOC (a, (int64_t) B * MAX (a->K, 1));
  if (train)
    {
      a->dlogits = FALLOC (a, (int64_t) B * MAX (a->K, 1));
      a->dpooled = FALLOC (a, (int64_t) B * W);
      a->dhead = FALLOC (a, (int64_t) B * MAX (a->hidden, 1));
      a->dx = FALLOC (a, BT * W);
      a->dtmp = FALLOC (a, BT * W);
      a->dwide = FALLOC (a, BT * MAX (g->mlp, 3 * W));
      a->datty = FALLOC (a, BT * W);
      a->dscore = FALLOC (a, (int64_t) threads * T * T);
      a->ln_partial = FALLOC (a, (int64_t) threads * 2 * W);
      a->dpos_new = FALLOC (a, (int64_t) T * W);
    }
  return a;
}

/* ------------------------------------------------------------------ parallel helpers */

typedef void (*RowsFunc) (void *ctx, int64_t r0, int64_t r1, int worker);

typedef struct {
  RowsFunc fn;
  void    *ctx;
  int64_t  rows;
  int64_t  n_chunks;
} RowsJob;

static void
rows_task (void *data, int64_t i, int worker)
{
  const RowsJob *j = data;
  int64_t r0 = j->rows * i / j->n_chunks, r1 = j->rows * (i + 1) / j->n_chunks;
  if (r1 > r0)
    j->fn (j->ctx, r0, r1, worker);
}

/* Splits `rows` into chunks (per_thread per thread) and runs fn on each over the pool. */
static void
parallel_rows (int64_t rows, int per_thread, RowsFunc fn, void *ctx)
{
  int64_t chunks = MIN (rows, (int64_t) vl_pool_n_threads () * per_thread);
  if (chunks <= 1)
    {
      if (rows > 0)
        fn (ctx, 0, rows, 0);
      return;
    }
  RowsJob j = { fn, ctx, rows, chunks };
  vl_parallel_for (chunks, rows_task, &j);
}

/* out (M,N) = [residual +] inp (M,K) w^T (N,K) + b; then act = GELU (out) when act != NULL.
 * The bias, residual and GELU are applied on each row panel while it is in cache. */
typedef struct {
  float *out, *act;
  const float *inp, *w, *b, *residual;
  int K, N;
} LinearFwd;

static void
linear_fwd_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const LinearFwd *L = data;
  const int N = L->N;
  float *out = L->out + r0 * N;
  for (int64_t r = r0; r < r1; r++)
    {
      float *o = L->out + r * N;
      if (L->residual)
        {
          const float *res = L->residual + r * N;
          if (L->b)
            for (int c = 0; c < N; c++)
              o[c] = res[c] + L->b[c];
          else
            memcpy (o, res, sizeof (float) * N);
        }
      else if (L->b)
        memcpy (o, L->b, sizeof (float) * N);
      else
        memset (o, 0, sizeof (float) * N);
    }
  vl_gemm_serial (FALSE, TRUE, (int) (r1 - r0), N, L->K, 1.0f, L->inp + r0 * L->K, L->K,
                  L->w, L->K, 1.0f, out, N);
  if (L->act)
    vl_gelu_forward (L->act + r0 * N, out, (r1 - r0) * N);
}

static void
linear_forward (float *out, float *act, const float *inp, const float *w, const float *b,
                const float *residual, int64_t M, int K, int N)
{
  LinearFwd L = { out, act, inp, w, b, residual, K, N };
  parallel_rows (M, 1, linear_fwd_rows, &L);
}

/* dinp (M,K) = [dinp +] dout (M,N) w (N,K); then dinp *= GELU' (pre) when pre != NULL. */
typedef struct {
  float *dinp;
  const float *dout, *w, *pre;
  int K, N;
  float beta;
} LinearBwd;

static void
linear_bwd_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const LinearBwd *L = data;
  float *dinp = L->dinp + r0 * L->K;
  vl_gemm_serial (FALSE, FALSE, (int) (r1 - r0), L->K, L->N, 1.0f, L->dout + r0 * L->N, L->N,
                  L->w, L->K, L->beta, dinp, L->K);
  if (L->pre)
    vl_gelu_backward (dinp, L->pre + r0 * L->K, dinp, (r1 - r0) * L->K);
}

static void
linear_backward_input (float *dinp, const float *dout, const float *w, const float *gelu_pre,
                       int64_t M, int K, int N, gboolean accumulate)
{
  LinearBwd L = { dinp, dout, w, gelu_pre, K, N, accumulate ? 1.0f : 0.0f };
  parallel_rows (M, 1, linear_bwd_rows, &L);
}

typedef struct {
  float *db;
  const float *dout;
  int64_t M;
  int N;
} ColSum;

static void
colsum_cols (void *data, int64_t c0, int64_t c1, int worker)
{
  const ColSum *s = data;
  for (int64_t r = 0; r < s->M; r++)
    {
      const float *row = s->dout + r * s->N;
      for (int64_t c = c0; c < c1; c++)
        s->db[c] += row[c];
    }
}

/* dw (N,K) += dout^T inp; db (N) += column sums of dout. Either may be NULL. */
static void
linear_backward_params (float *dw, float *db, const float *dout, const float *inp, int64_t M,
                        int K, int N)
{
  if (dw)
    vl_gemm (TRUE, FALSE, N, K, (int) M, 1.0f, dout, N, inp, K, 1.0f, dw, K);
  if (db)
    {
      ColSum s = { db, dout, M, N };
      parallel_rows (N, 1, colsum_cols, &s);
    }
}

typedef struct {
  float *out, *mean, *rstd;
  const float *inp, *w, *b;
  int C;
  float eps;
} LnFwd;

static void
ln_fwd_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const LnFwd *L = data;
  vl_layernorm_forward (L->out + r0 * L->C, L->mean ? L->mean + r0 : NULL,
                        L->rstd ? L->rstd + r0 : NULL, L->inp + r0 * L->C, L->w, L->b,
                        r1 - r0, L->C, L->eps);
}

static void
layernorm_forward (float *out, float *mean, float *rstd, const float *inp, const float *w,
                   const float *b, int64_t N, int C, float eps)
{
  LnFwd L = { out, mean, rstd, inp, w, b, C, eps };
  parallel_rows (N, 2, ln_fwd_rows, &L);
}

typedef struct {
  float *dinp, *partial;
  const float *dout, *inp, *w, *mean, *rstd;
  int C;
  gboolean params;
} LnBwd;

static void
ln_bwd_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const LnBwd *L = data;
  float *dw = L->params ? L->partial + (int64_t) worker * 2 * L->C : NULL;
  vl_layernorm_backward (L->dinp ? L->dinp + r0 * L->C : NULL, dw, dw ? dw + L->C : NULL,
                         L->dout + r0 * L->C, L->inp + r0 * L->C, L->w, L->mean + r0,
                         L->rstd + r0, r1 - r0, L->C);
}

/* dinp += ...; dw, db += ... (both NULL when frozen). */
static void
layernorm_backward (VlActs *a, float *dinp, float *dw, float *db, const float *dout,
                    const float *inp, const float *w, const float *mean, const float *rstd,
                    int64_t N, int C)
{
  gboolean params = dw != NULL;
  if (params)
    memset (a->ln_partial, 0, sizeof (float) * a->n_threads * 2 * C);
  LnBwd L = { dinp, a->ln_partial, dout, inp, w, mean, rstd, C, params };
  parallel_rows (N, 2, ln_bwd_rows, &L);
  if (params)
    for (int t = 0; t < a->n_threads; t++)
      for (int c = 0; c < C; c++)
        {
          dw[c] += a->ln_partial[(int64_t) t * 2 * C + c];
          db[c] += a->ln_partial[(int64_t) t * 2 * C + C + c];
        }
}

typedef struct {
  const VlGeometry *g;
  int T;
  const BlockActs *k;
  const float *datty;
  float *dqkv, *dscore;
} AttnJob;

static void
attn_fwd_task (void *data, int64_t i, int worker)
{
  const AttnJob *j = data;
  const int H = j->g->heads, W = j->g->width, T = j->T;
  int64_t b = i / H;
  int h = (int) (i % H);
  vl_attention_forward (j->k->atty + b * T * W, j->k->att + i * T * T,
                        j->k->qkv + b * T * 3 * W, T, W, j->g->head_dim, h);
}

static void
attn_bwd_task (void *data, int64_t i, int worker)
{
  const AttnJob *j = data;
  const int H = j->g->heads, W = j->g->width, T = j->T;
  int64_t b = i / H;
  int h = (int) (i % H);
  vl_attention_backward (j->dqkv + b * T * 3 * W, j->dscore + (int64_t) worker * T * T,
                         j->datty + b * T * W, j->k->att + i * T * T, j->k->qkv + b * T * 3 * W,
                         T, W, j->g->head_dim, h);
}

/* ------------------------------------------------------------------ forward */

static void
prepare_pos_embed (VlModel *m, VlActs *a)
{
  const VlGeometry *g = &m->geo;
  const float *pos = vl_param (m, P_POS)->data;
  const int W = g->width, G = g->grid;
  a->resampled = a->gh != G || a->gw != G;
  if (!a->resampled)
    {
      memcpy (a->pos, pos, sizeof (float) * a->T * W);
      return;
    }
  /* timm's resample_abs_pos_embed: CLS entry kept, grid part bicubic (A = -0.75,
   * align_corners=False), as one matrix R = Rh (x) Rw over the flattened grid. */
  vl_bicubic_matrix (a->resample_h, a->gh, G);
  vl_bicubic_matrix (a->resample_w, a->gw, G);
  for (int i = 0; i < a->gh; i++)
    for (int j = 0; j < a->gw; j++)
      {
        float *row = a->resample + (int64_t) (i * a->gw + j) * G * G;
        for (int p = 0; p < G; p++)
          for (int q = 0; q < G; q++)
            row[p * G + q] = a->resample_h[i * G + p] * a->resample_w[j * G + q];
      }
  memcpy (a->pos, pos, sizeof (float) * W);
  vl_gemm (FALSE, FALSE, a->gh * a->gw, W, G * G, 1.0f, a->resample, G * G, pos + W, W, 0.0f,
           a->pos + W, W);
}

static void
forward_block (VlModel *m, VlActs *a, int l)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, M = g->mlp;
  const int64_t BT = (int64_t) a->B * a->T;
  BlockActs *k = &a->blk[l];
  const float *x = a->xs[l];
#define BP(which) (vl_param (m, vl_block_param (l, (which)))->data)

  layernorm_forward (k->ln1, k->ln1_mean, k->ln1_rstd, x, BP (B_LN1_W), BP (B_LN1_B), BT, W,
                     g->eps);
  linear_forward (k->qkv, NULL, k->ln1, BP (B_QKV_W), BP (B_QKV_B), NULL, BT, W, 3 * W);
  AttnJob j = { .g = g, .T = a->T, .k = k };
  vl_parallel_for ((int64_t) a->B * g->heads, attn_fwd_task, &j);
  linear_forward (k->xmid, NULL, k->atty, BP (B_PROJ_W), BP (B_PROJ_B), x, BT, W, W);
  layernorm_forward (k->ln2, k->ln2_mean, k->ln2_rstd, k->xmid, BP (B_LN2_W), BP (B_LN2_B), BT,
                     W, g->eps);
  linear_forward (k->h, k->g, k->ln2, BP (B_FC1_W), BP (B_FC1_B), NULL, BT, W, M);
  linear_forward (a->xs[l + 1], NULL, k->g, BP (B_FC2_W), BP (B_FC2_B), k->xmid, BT, M, W);
#undef BP
}

static void
forward_pool (VlModel *m, VlActs *a)
{
  const int W = m->geo.width, T = a->T, B = a->B;
  for (int b = 0; b < B; b++)
    {
      const float *tok = a->lnf + (int64_t) b * T * W;
      float *out = a->pooled + (int64_t) b * W;
      int *arg = a->argmax + (int64_t) b * W;
      switch (m->pool)
        {
        case VL_POOL_TOKEN:
          memcpy (out, tok, sizeof (float) * W);
          break;
        case VL_POOL_AVG:
          memset (out, 0, sizeof (float) * W);
          for (int t = 1; t < T; t++)
            for (int c = 0; c < W; c++)
              out[c] += tok[(int64_t) t * W + c];
          for (int c = 0; c < W; c++)
            out[c] /= (float) (T - 1);
          break;
        case VL_POOL_MAX:
          for (int c = 0; c < W; c++)
            {
              out[c] = tok[W + c];
              arg[c] = 1;
            }
          for (int t = 2; t < T; t++)
            for (int c = 0; c < W; c++)
              if (tok[(int64_t) t * W + c] > out[c])
                {
                  out[c] = tok[(int64_t) t * W + c];
                  arg[c] = t;
                }
          break;
        }
    }
}

static gboolean
check_input (VlModel *m, int B, int H, int W, GError **error)
{
  const VlGeometry *g = &m->geo;
  if (B <= 0 || H <= 0 || W <= 0 || H % g->patch || W % g->patch)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "images of %dx%d cannot be cut into %dx%d patches (the size must be a positive "
                   "multiple of the patch size)", W, H, g->patch, g->patch);
      return FALSE;
    }
  if ((int64_t) (H / g->patch) * (W / g->patch) > 16384)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "images of %dx%d give %d patches, more than the 16384 supported", W, H,
                   (H / g->patch) * (W / g->patch));
      return FALSE;
    }
  return TRUE;
}

static void
forward_stem (VlModel *m, VlActs *a, const float *images, int H, int W)
{
  const VlGeometry *g = &m->geo;
  const int B = a->B, Wd = g->width, T = a->T, NP = a->gh * a->gw;
  const int CPP = g->in_chans * g->patch * g->patch;

  /* patches -> tokens, CLS first, plus the (resampled) position embedding */
  prepare_pos_embed (m, a);
  vl_im2col_patches (a->cols, images, B, g->in_chans, H, W, g->patch);
  linear_forward (a->patch_out, NULL, a->cols, vl_param (m, P_PATCH_W)->data,
                  vl_param (m, P_PATCH_B)->data, NULL, (int64_t) B * NP, CPP, Wd);
  const float *cls = vl_param (m, P_CLS)->data;
  for (int b = 0; b < B; b++)
    {
      float *x = a->xs[0] + (int64_t) b * T * Wd;
      for (int c = 0; c < Wd; c++)
        x[c] = cls[c] + a->pos[c];
      for (int t = 1; t < T; t++)
        {
          const float *p = a->patch_out + ((int64_t) b * NP + t - 1) * Wd;
          const float *pe = a->pos + (int64_t) t * Wd;
          float *xt = x + (int64_t) t * Wd;
          for (int c = 0; c < Wd; c++)
            xt[c] = p[c] + pe[c];
        }
    }
}

static void
forward_final_norm (VlModel *m, VlActs *a)
{
  layernorm_forward (a->lnf, a->lnf_mean, a->lnf_rstd, a->xs[m->geo.depth],
                     vl_param (m, vl_norm_param (m, 0))->data,
                     vl_param (m, vl_norm_param (m, 1))->data, (int64_t) a->B * a->T,
                     m->geo.width, m->geo.eps);
}

static void
forward_head (VlModel *m, VlActs *a)
{
  const int B = a->B, Wd = m->geo.width;
  if (m->head_kind == VL_HEAD_LINEAR)
    linear_forward (a->logits, NULL, a->pooled, vl_param (m, vl_head_param (m, H_W))->data,
                    vl_param (m, vl_head_param (m, H_B))->data, NULL, B, Wd, m->num_classes);
  else if (m->head_kind == VL_HEAD_MLP)
    {
      linear_forward (a->head_h, a->head_g, a->pooled,
                      vl_param (m, vl_head_param (m, H_W))->data,
                      vl_param (m, vl_head_param (m, H_B))->data, NULL, B, Wd, m->head_hidden);
      linear_forward (a->logits, NULL, a->head_g, vl_param (m, vl_head_param (m, H_FC2_W))->data,
                      vl_param (m, vl_head_param (m, H_FC2_B))->data, NULL, B, m->head_hidden,
                      m->num_classes);
    }
}

/* Where the frozen prefix ends: the input of the lowest trainable component. */
typedef enum {
  BOUNDARY_NONE,      /* the stem trains (or nothing does): nothing to cache */
  BOUNDARY_BLOCK,     /* xs[block] (T, W) per image; block == depth: before the final norm */
  BOUNDARY_FEATURES,  /* pooled features (W) per image: only the head trains */
} BoundaryKind;

static BoundaryKind
boundary_of (VlModel *m, int *block)
{
  int g0 = lowest_trainable (m);
  *block = 0;
  if (g0 <= 0)
    return BOUNDARY_NONE;
  if (g0 >= vl_head_group (m))
    return BOUNDARY_FEATURES;
  *block = MIN (g0 - 1, m->geo.depth);
  return BOUNDARY_BLOCK;
}

int64_t
vl_model_boundary_numel (VlModel *m, int H, int W)
{
  int block;
  switch (boundary_of (m, &block))
    {
    case BOUNDARY_BLOCK:
      return (int64_t) (1 + (H / m->geo.patch) * (W / m->geo.patch)) * m->geo.width;
    case BOUNDARY_FEATURES:
      return m->geo.width;
    case BOUNDARY_NONE:
    default:
      return 0;
    }
}

gboolean
vl_model_forward (VlModel *m, const float *images, int B, int H, int W, VlForwardFlags flags,
                  GError **error)
{
  if (!check_input (m, B, H, W, error))
    return FALSE;
  const VlGeometry *g = &m->geo;
  VlActs *a = acts_ensure (m, B, H / g->patch, W / g->patch, flags);
  a->valid = a->valid_train = FALSE;
  a->g0 = lowest_trainable (m);
  forward_stem (m, a, images, H, W);
  for (int l = 0; l < g->depth; l++)
    forward_block (m, a, l);
  forward_final_norm (m, a);
  forward_pool (m, a);
  forward_head (m, a);
  a->valid = TRUE;
  a->valid_train = a->train;
  a->from_boundary = FALSE;
  return TRUE;
}

gboolean
vl_model_forward_to_boundary (VlModel *m, const float *images, int B, int H, int W, float *out,
                              GError **error)
{
  int block;
  BoundaryKind kind = boundary_of (m, &block);
  if (kind == BOUNDARY_NONE)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "the stem trains (or nothing does): there is no frozen prefix to cache");
      return FALSE;
    }
  if (!check_input (m, B, H, W, error))
    return FALSE;
  const VlGeometry *g = &m->geo;
  VlActs *a = acts_ensure (m, B, H / g->patch, W / g->patch, VL_FORWARD_INFER);
  a->valid = a->valid_train = FALSE;
  forward_stem (m, a, images, H, W);
  for (int l = 0; l < block; l++)
    forward_block (m, a, l);
  if (kind == BOUNDARY_FEATURES)
    {
      for (int l = block; l < g->depth; l++)
        forward_block (m, a, l);
      forward_final_norm (m, a);
      forward_pool (m, a);
      memcpy (out, a->pooled, sizeof (float) * B * g->width);
    }
  else
    memcpy (out, a->xs[block], sizeof (float) * B * a->T * g->width);
  return TRUE;
}

gboolean
vl_model_forward_from_boundary (VlModel *m, const float *boundary, int B, int H, int W,
                                VlForwardFlags flags, GError **error)
{
  int block;
  BoundaryKind kind = boundary_of (m, &block);
  if (kind == BOUNDARY_NONE)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "the stem trains (or nothing does): there is no frozen prefix to start from");
      return FALSE;
    }
  if (!check_input (m, B, H, W, error))
    return FALSE;
  if ((flags & VL_FORWARD_CAPTURE_ATTN) && block > 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "attention of the frozen blocks cannot be captured from cached activations");
      return FALSE;
    }
  const VlGeometry *g = &m->geo;
  VlActs *a = acts_ensure (m, B, H / g->patch, W / g->patch, flags);
  a->valid = a->valid_train = FALSE;
  a->g0 = lowest_trainable (m);
  if (kind == BOUNDARY_FEATURES)
    memcpy (a->pooled, boundary, sizeof (float) * B * g->width);
  else
    {
      memcpy (a->xs[block], boundary, sizeof (float) * B * a->T * g->width);
      for (int l = block; l < g->depth; l++)
        forward_block (m, a, l);
      forward_final_norm (m, a);
      forward_pool (m, a);
    }
  forward_head (m, a);
  a->valid = TRUE;
  a->valid_train = a->train;
  a->from_boundary = kind == BOUNDARY_FEATURES;
  return TRUE;
}

int vl_model_batch (VlModel *m) { return m->acts && m->acts->valid ? m->acts->B : 0; }
int vl_model_n_tokens_last (VlModel *m) { return m->acts && m->acts->valid ? m->acts->T : 0; }

const float *
vl_model_tokens_final (VlModel *m)
{
  return m->acts && m->acts->valid && !m->acts->from_boundary ? m->acts->lnf : NULL;
}

const float *
vl_model_features (VlModel *m)
{
  return m->acts && m->acts->valid ? m->acts->pooled : NULL;
}

const float *
vl_model_logits (VlModel *m)
{
  return m->acts && m->acts->valid && m->head_kind != VL_HEAD_NONE ? m->acts->logits : NULL;
}

const float *
vl_model_pos_embed_used (VlModel *m)
{
  return m->acts && m->acts->valid ? m->acts->pos : NULL;
}

const float *
vl_model_attention (VlModel *m, int block)
{
  VlActs *a = m->acts;
  if (a == NULL || !a->valid || block < 0 || block >= m->geo.depth)
    return NULL;
  if (!a->capture && block < a->store_from)
    return NULL;   /* overwritten: a frozen block's attention is kept only when captured */
  return a->blk[block].att;
}

typedef struct {
  VlModel *m;
  float *out, *scratch;
} RolloutJob;

static void
rollout_task (void *data, int64_t b, int worker)
{
  const RolloutJob *j = data;
  VlActs *a = j->m->acts;
  const int T = a->T, H = j->m->geo.heads;
  const int64_t TT = (int64_t) T * T;
  float *R = j->scratch + (int64_t) worker * 3 * TT, *A = R + TT, *tmp = A + TT;
  memset (R, 0, sizeof (float) * TT);
  for (int i = 0; i < T; i++)
    R[(int64_t) i * T + i] = 1.0f;
  for (int l = 0; l < j->m->geo.depth; l++)
    {
      const float *att = a->blk[l].att + b * H * TT;
      /* A = rownorm (mean over heads + I); R = A R */
      for (int64_t e = 0; e < TT; e++)
        {
          float s = 0.f;
          for (int h = 0; h < H; h++)
            s += att[h * TT + e];
          A[e] = s / H;
        }
      for (int i = 0; i < T; i++)
        {
          float *row = A + (int64_t) i * T;
          row[i] += 1.0f;
          float s = 0.f;
          for (int c = 0; c < T; c++)
            s += row[c];
          for (int c = 0; c < T; c++)
            row[c] /= s;
        }
      vl_gemm_serial (FALSE, FALSE, T, T, T, 1.0f, A, T, R, T, 0.0f, tmp, T);
      memcpy (R, tmp, sizeof (float) * TT);
    }
  memcpy (j->out + b * (T - 1), R + 1, sizeof (float) * (T - 1));
}

gboolean
vl_model_rollout (VlModel *m, float *out, GError **error)
{
  VlActs *a = m->acts;
  if (a == NULL || !a->valid || !a->capture)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "attention rollout needs a forward pass that captured the attention");
      return FALSE;
    }
  int threads = vl_pool_n_threads ();
  float *scratch = g_new (float, (int64_t) threads * 3 * a->T * a->T);
  RolloutJob j = { m, out, scratch };
  vl_parallel_for (a->B, rollout_task, &j);
  g_free (scratch);
  return TRUE;
}

/* ------------------------------------------------------------------ backward */

static float *
grad_of (VlModel *m, int index)
{
  VlParam *p = vl_param (m, index);
  return m->trainable[p->group] ? p->grad : NULL;
}

static void
backward_block (VlModel *m, VlActs *a, int l, gboolean need_dinput)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, M = g->mlp;
  const int64_t BT = (int64_t) a->B * a->T;
  const BlockActs *k = &a->blk[l];
#define BP(which) (vl_param (m, vl_block_param (l, (which)))->data)
#define BG(which) (grad_of (m, vl_block_param (l, (which))))

  /* dx holds d out. MLP branch: out = xmid + fc2 (gelu (fc1 (ln2 (xmid)))) */
  linear_backward_params (BG (B_FC2_W), BG (B_FC2_B), a->dx, k->g, BT, M, W);
  linear_backward_input (a->dwide, a->dx, BP (B_FC2_W), k->h, BT, M, W, FALSE);  /* d h */
  linear_backward_params (BG (B_FC1_W), BG (B_FC1_B), a->dwide, k->ln2, BT, W, M);
  linear_backward_input (a->dtmp, a->dwide, BP (B_FC1_W), NULL, BT, W, M, FALSE); /* d ln2 */
  layernorm_backward (a, a->dx, BG (B_LN2_W), BG (B_LN2_B), a->dtmp, k->xmid, BP (B_LN2_W),
                      k->ln2_mean, k->ln2_rstd, BT, W);
  /* dx holds d xmid. Attention branch: xmid = x + proj (attn (qkv (ln1 (x)))) */
  linear_backward_params (BG (B_PROJ_W), BG (B_PROJ_B), a->dx, k->atty, BT, W, W);
  linear_backward_input (a->datty, a->dx, BP (B_PROJ_W), NULL, BT, W, W, FALSE);
  AttnJob j = { .g = g, .T = a->T, .k = k, .datty = a->datty, .dqkv = a->dwide,
                .dscore = a->dscore };
  vl_parallel_for ((int64_t) a->B * g->heads, attn_bwd_task, &j);
  linear_backward_params (BG (B_QKV_W), BG (B_QKV_B), a->dwide, k->ln1, BT, W, 3 * W);
  gboolean ln1_trains = BG (B_LN1_W) != NULL;
  if (need_dinput || ln1_trains)
    {
      linear_backward_input (a->dtmp, a->dwide, BP (B_QKV_W), NULL, BT, W, 3 * W, FALSE);
      layernorm_backward (a, need_dinput ? a->dx : NULL, BG (B_LN1_W), BG (B_LN1_B), a->dtmp,
                          a->xs[l], BP (B_LN1_W), k->ln1_mean, k->ln1_rstd, BT, W);
    }
#undef BP
#undef BG
}

static void
backward_stem (VlModel *m, VlActs *a)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, T = a->T, NP = a->gh * a->gw, G = g->grid;
  const int CPP = g->in_chans * g->patch * g->patch;
  float *dcls = vl_param (m, P_CLS)->grad;
  float *dpos = vl_param (m, P_POS)->grad;
  float *dpos_used = a->resampled ? a->dpos_new : dpos;
  if (a->resampled)
    memset (a->dpos_new, 0, sizeof (float) * T * W);
  for (int b = 0; b < a->B; b++)
    {
      const float *dx = a->dx + (int64_t) b * T * W;
      for (int c = 0; c < W; c++)
        dcls[c] += dx[c];
      for (int64_t e = 0; e < (int64_t) T * W; e++)
        dpos_used[e] += dx[e];
      for (int t = 1; t < T; t++)
        memcpy (a->dtmp + ((int64_t) b * NP + t - 1) * W, dx + (int64_t) t * W,
                sizeof (float) * W);
    }
  if (a->resampled)
    {
      for (int c = 0; c < W; c++)
        dpos[c] += a->dpos_new[c];
      vl_gemm (TRUE, FALSE, G * G, W, NP, 1.0f, a->resample, G * G, a->dpos_new + W, W, 1.0f,
               dpos + W, W);
    }
  linear_backward_params (vl_param (m, P_PATCH_W)->grad, vl_param (m, P_PATCH_B)->grad, a->dtmp,
                          a->cols, (int64_t) a->B * NP, CPP, W);
}

gboolean
vl_model_backward (VlModel *m, const int *targets, float label_smoothing, double *loss_out,
                   GError **error)
{
  VlActs *a = m->acts;
  const VlGeometry *g = &m->geo;
  if (a == NULL || !a->valid_train)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "backward needs a forward pass made with VL_FORWARD_TRAIN");
      return FALSE;
    }
  if (m->head_kind == VL_HEAD_NONE)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "the model has no head to train");
      return FALSE;
    }
  if (lowest_trainable (m) != a->g0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "the layer groups changed since the forward pass; run it again");
      return FALSE;
    }
  const int B = a->B, K = m->num_classes, W = g->width, T = a->T;
  for (int b = 0; b < B; b++)
    if (targets[b] < 0 || targets[b] >= K)
      {
        g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                     "target %d of image %d is outside the %d classes", targets[b], b, K);
        return FALSE;
      }
  if (!(label_smoothing >= 0.0f && label_smoothing < 1.0f))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "label smoothing %g is outside [0, 1)", label_smoothing);
      return FALSE;
    }
  double loss = vl_cross_entropy (a->dlogits, a->logits, targets, B, K, label_smoothing);
  if (loss_out)
    *loss_out = loss;
  if (!isfinite (loss))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_NUMERIC,
                   "the loss is not finite (%g): the weights or inputs hold NaN or Inf, or the "
                   "learning rate is too high", loss);
      return FALSE;
    }

  int g0 = lowest_trainable (m);
  if (g0 < 0)
    return TRUE;
  vl_model_prepare_grads (m);
  const int head_group = vl_head_group (m), norm_group = vl_norm_group (m);

  /* head */
  if (m->head_kind == VL_HEAD_LINEAR)
    {
      linear_backward_params (grad_of (m, vl_head_param (m, H_W)),
                              grad_of (m, vl_head_param (m, H_B)), a->dlogits, a->pooled, B, W, K);
      if (g0 < head_group)
        linear_backward_input (a->dpooled, a->dlogits, vl_param (m, vl_head_param (m, H_W))->data,
                               NULL, B, W, K, FALSE);
    }
  else
    {
      const int Hd = m->head_hidden;
      linear_backward_params (grad_of (m, vl_head_param (m, H_FC2_W)),
                              grad_of (m, vl_head_param (m, H_FC2_B)), a->dlogits, a->head_g, B,
                              Hd, K);
      linear_backward_input (a->dhead, a->dlogits, vl_param (m, vl_head_param (m, H_FC2_W))->data,
                             a->head_h, B, Hd, K, FALSE);
      linear_backward_params (grad_of (m, vl_head_param (m, H_W)),
                              grad_of (m, vl_head_param (m, H_B)), a->dhead, a->pooled, B, W, Hd);
      if (g0 < head_group)
        linear_backward_input (a->dpooled, a->dhead, vl_param (m, vl_head_param (m, H_W))->data,
                               NULL, B, W, Hd, FALSE);
    }
  if (g0 >= head_group)
    return TRUE;

  /* pooling -> d tokens_final (into dtmp) */
  memset (a->dtmp, 0, sizeof (float) * B * T * W);
  for (int b = 0; b < B; b++)
    {
      const float *dp = a->dpooled + (int64_t) b * W;
      float *dt = a->dtmp + (int64_t) b * T * W;
      const int *arg = a->argmax + (int64_t) b * W;
      switch (m->pool)
        {
        case VL_POOL_TOKEN:
          memcpy (dt, dp, sizeof (float) * W);
          break;
        case VL_POOL_AVG:
          for (int t = 1; t < T; t++)
            for (int c = 0; c < W; c++)
              dt[(int64_t) t * W + c] = dp[c] / (float) (T - 1);
          break;
        case VL_POOL_MAX:
          for (int c = 0; c < W; c++)
            dt[(int64_t) arg[c] * W + c] = dp[c];
          break;
        }
    }

  /* final norm */
  gboolean below = g0 < norm_group;
  if (below)
    memset (a->dx, 0, sizeof (float) * B * T * W);
  layernorm_backward (a, below ? a->dx : NULL, grad_of (m, vl_norm_param (m, 0)),
                      grad_of (m, vl_norm_param (m, 1)), a->dtmp, a->xs[g->depth],
                      vl_param (m, vl_norm_param (m, 0))->data, a->lnf_mean, a->lnf_rstd,
                      (int64_t) B * T, W);
  if (!below)
    return TRUE;

  /* blocks, down to the lowest unlocked group */
  for (int l = g->depth - 1; l >= 0 && vl_group_of_block (l) >= g0; l--)
    backward_block (m, a, l, g0 < vl_group_of_block (l));

  if (g0 == 0)
    backward_stem (m, a);
  return TRUE;
}

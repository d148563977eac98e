/* vl-compute.c: forward and backward of the ViT over the thread pool.
 *
 * Token layout per image: [CLS] [DIST] [REG × R] [patches], n_prefix = CLS + DIST + R.
 * Activations are allocated on the first forward of a given shape and reused after that: a
 * training step at a fixed batch size allocates nothing. Blocks below the lowest unlocked
 * component run in inference mode and share one scratch set; only blocks at or above it keep
 * what their backward needs. */
#include "vl-compute-private.h"
#include "vl-attention.h"
#include "vl-gemm.h"
#include "vl-kernels.h"
#include "vl-pool.h"
#include "vl-stem.h"

#include <limits.h>
#include <math.h>
#include <string.h>



void
vl_acts_free (VlActs *a)
{
  if (a == NULL)
    return;
  g_ptr_array_free (a->allocs, TRUE);
  g_free (a->xs);
  g_free (a->blk);
  g_free (a->scratch);
  g_free (a->gbuf);
  g_free (a);
}

void *
vl_compute_acts_alloc (VlActs *a, int64_t n, size_t size)
{
  void *p = g_aligned_alloc0 ((gsize) MAX (n, 1), size, 64);
  g_ptr_array_add (a->allocs, p);
  return p;
}

#define VL_KEEP_GELU_BYTES ((int64_t) 128 << 20)

/* Activations of one block for n_img images. Without for_backward (a frozen block's scratch),
 * GELU runs in place: nothing reads fc1's output before the activation. With it, GELU's output
 * is kept only with keep_gelu (otherwise a->gbuf holds it while the forward needs it and the
 * backward recomputes it from h: a fifth of a stored block's memory). */
static void
block_acts_alloc (VlActs *a, BlockActs *k, const VlGeometry *g, int n_img, gboolean with_att,
                  gboolean for_backward, gboolean keep_gelu)
{
  int64_t BT = (int64_t) n_img * a->T;
  k->ln1 = FALLOC (a, BT * g->width);
  k->ln1_mean = FALLOC (a, BT);
  k->ln1_rstd = FALLOC (a, BT);
  k->qkv = FALLOC (a, BT * 3 * g->width);
  k->att = with_att ? FALLOC (a, (int64_t) n_img * g->heads * a->T * a->T) : NULL;
  k->atty = FALLOC (a, BT * g->width);
  k->ls1b = g->layer_scale ? FALLOC (a, BT * g->width) : NULL;
  k->xmid = FALLOC (a, BT * g->width);
  k->ln2 = FALLOC (a, BT * g->width);
  k->ln2_mean = FALLOC (a, BT);
  k->ln2_rstd = FALLOC (a, BT);
  k->h = FALLOC (a, BT * g->mlp);
  k->g = !for_backward ? k->h : keep_gelu ? FALLOC (a, BT * g->mlp) : NULL;   /* NULL: a->gbuf */
  k->h_deriv = for_backward && keep_gelu;
  k->ls2b = g->layer_scale ? FALLOC (a, BT * g->width) : NULL;
}

/* Lowest compute component with a trainable parameter, or -1 when everything is frozen. */
int
vl_compute_lowest_trainable (VlModel *m)
{
  int c0 = INT_MAX;
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      if (m->trainable[p->group] && p->comp < c0)
        c0 = p->comp;
    }
  return c0 == INT_MAX ? -1 : c0;
}

static VlActs *
acts_ensure (VlModel *m, int B, int gh, int gw, VlForwardFlags flags)
{
  const VlGeometry *g = &m->geo;
  gboolean train = (flags & VL_FORWARD_TRAIN) != 0;
  gboolean capture = (flags & VL_FORWARD_CAPTURE_ATTN) != 0;
  int c0 = train ? vl_compute_lowest_trainable (m) : -1;
  int store_from = c0 < 0 ? g->depth : MAX (0, MIN (c0 - 1, g->depth));
  int threads = vl_pool_n_threads ();
#define FITS(x) ((x) && (x)->B == B && (x)->gh == gh && (x)->gw == gw && \
                 (x)->store_from == store_from && (x)->capture == capture && \
                 (x)->train == train && (x)->K == m->num_classes && (x)->hidden == m->head_hidden)
  if (FITS (m->acts))
    return m->acts;
  VlActs *a = m->acts_spare;
  m->acts_spare = m->acts;
  if (FITS (a))
    return m->acts = a;
#undef FITS
  vl_acts_free (a);
  a = m->acts = g_new0 (VlActs, 1);
  a->allocs = g_ptr_array_new_with_free_func (g_aligned_free);
  a->B = B;
  a->gh = gh;
  a->gw = gw;
  a->P = g->n_prefix;
  a->pos_prefix = g->no_embed_class ? 0 : g->n_prefix;
  a->T = a->P + gh * gw;
  a->store_from = store_from;
  a->capture = capture;
  a->train = train;
  a->K = m->num_classes;
  a->hidden = m->head_hidden;
  a->n_threads = threads;

  const int W = g->width, T = a->T, NP = gh * gw, CPP = g->in_chans * g->patch * g->patch;
  const int E = MAX (g->embed_dim, 1), K = MAX (a->K, 1), Hd = MAX (a->hidden, 1);
  const int64_t BT = (int64_t) B * T;
  a->cols = FALLOC (a, (int64_t) B * NP * CPP);
  a->patch_out = FALLOC (a, (int64_t) B * NP * W);
  a->pos = FALLOC (a, (int64_t) (a->pos_prefix + NP) * W);
  a->resample = FALLOC (a, (int64_t) NP * g->grid * g->grid);
  a->resample_h = FALLOC (a, (int64_t) gh * g->grid);
  a->resample_w = FALLOC (a, (int64_t) gw * g->grid);
  if (g->pre_norm)
    {
      a->xemb = FALLOC (a, BT * W);
      a->pre_mean = FALLOC (a, BT);
      a->pre_rstd = FALLOC (a, BT);
    }
  a->xs = g_new0 (float *, g->depth + 1);
  for (int l = 0; l <= g->depth; l++)
    a->xs[l] = FALLOC (a, BT * W);
  a->blk = g_new0 (BlockActs, g->depth);
  /* image by image when every thread gets whole images with little imbalance */
  a->span = threads > 1 && (B % threads == 0 || B >= 4 * threads) ? 1 : 0;
  int n_scratch = a->span ? threads : 1;
  a->scratch = g_new0 (BlockActs, n_scratch);
  if (store_from > 0)
    for (int w = 0; w < n_scratch; w++)
      block_acts_alloc (a, &a->scratch[w], g, a->span ? a->span : B, !capture, FALSE, FALSE);
  a->kpack_numel = (vl_packed_numel (T, g->head_dim) + 15) / 16 * 16;
  a->kpack = FALLOC (a, threads * a->kpack_numel);
  a->kshared = FALLOC (a, 4 * threads * a->kpack_numel);
  /* GELU's output is kept for the backward (with its derivative in place of h: the backward then
   * evaluates no erf at all) when at most half the blocks are stored, or when keeping it costs at
   * most VL_KEEP_GELU_BYTES; beyond that the backward recomputes it from h (bit for bit the same
   * gradients), which keeps the peak memory lower: ViT-Ti's full fine-tune at batch 32 would keep
   * 232 MB, and recomputing measured 1044 against 1265 MiB for 2-3% fewer images/s */
  const int64_t keep_bytes = (int64_t) (g->depth - store_from) * BT * g->mlp * sizeof (float);
  const gboolean keep_gelu = 2 * (g->depth - store_from) <= g->depth ||
                             keep_bytes <= VL_KEEP_GELU_BYTES;
  a->gbuf = g_new0 (float *, n_scratch);
  if (store_from < g->depth && !keep_gelu)
    for (int w = 0; w < n_scratch; w++)
      a->gbuf[w] = FALLOC (a, (int64_t) (a->span ? a->span : B) * T * g->mlp);
  for (int l = 0; l < g->depth; l++)
    {
      if (l >= store_from)
        block_acts_alloc (a, &a->blk[l], g, B, TRUE, TRUE, keep_gelu);
      else if (capture)
        a->blk[l].att = FALLOC (a, (int64_t) B * g->heads * T * T);
    }
  a->lnf = g->fc_norm ? a->xs[g->depth] : FALLOC (a, BT * W);
  a->lnf_mean = FALLOC (a, BT);
  a->lnf_rstd = FALLOC (a, BT);
  a->pooled_raw = FALLOC (a, (int64_t) B * W);
  a->fc_mean = FALLOC (a, B);
  a->fc_rstd = FALLOC (a, B);
  a->pooled = FALLOC (a, (int64_t) B * W);
  a->argmax = vl_compute_acts_alloc (a, (int64_t) B * W, sizeof (int));
  a->emb = FALLOC (a, (int64_t) B * E);
  a->dist_feat = FALLOC (a, (int64_t) B * W);
  a->head_h = FALLOC (a, (int64_t) B * Hd);
  a->head_g = FALLOC (a, (int64_t) B * Hd);
  a->logits = FALLOC (a, (int64_t) B * K);
  a->logits_dist = FALLOC (a, (int64_t) B * K);
  if (train)
    {
      a->dlogits = FALLOC (a, (int64_t) B * K);
      a->dhin = FALLOC (a, (int64_t) B * MAX (W, E));
      a->dpooled = FALLOC (a, (int64_t) B * W);
      a->dpooled_raw = FALLOC (a, (int64_t) B * W);
      a->ddist = FALLOC (a, (int64_t) B * W);
      a->dhead = FALLOC (a, (int64_t) B * Hd);
      a->dx = FALLOC (a, BT * W);
      a->dtmp = FALLOC (a, BT * W);
      a->dbranch = g->layer_scale ? FALLOC (a, BT * W) : NULL;
      a->dwide = FALLOC (a, BT * MAX (g->mlp, 3 * W));
      a->datty = FALLOC (a, BT * W);
      a->dscore = FALLOC (a, (int64_t) threads * T * T);
      a->ln_partial = FALLOC (a, (int64_t) LN_BWD_CHUNKS (threads) * 2 * W);
      a->dw_part = FALLOC (a, (int64_t) MAX (threads - 1, 1) * ((int64_t) W * MAX (g->mlp, 3 * W) + MAX (g->mlp, 3 * W)));
      const int widest = MAX (MAX (g->mlp, 3 * W), W);
      a->tn_numel = (vl_gemm_tn_workspace (widest, widest) + 15) / 16 * 16;
      a->tn_work = FALLOC (a, (int64_t) threads * a->tn_numel);
      a->qkv_g = FALLOC (a, (int64_t) 3 * W * W + 3 * W);
      a->wpack = FALLOC (a, MAX (vl_packed_numel (W, MAX (g->mlp, 3 * W)),
                                 vl_packed_numel (MAX (g->mlp, 3 * W), W)));
      a->dpos_new = FALLOC (a, (int64_t) (a->pos_prefix + NP) * W);
    }
  if (m->ix.ap >= 0)
    vl_map_pool_alloc (m, a);
  return a;
}

/* ------------------------------------------------------------------ parallel helpers */


typedef struct {
  RowsFunc fn;
  void    *ctx;
  int64_t  rows;
  int64_t  n_chunks;
} RowsJob;

/* Chunk i's first row: an even split, rounded to the row tile of the AVX2 kernel (6) when it is
 * in use, so that only the last chunk has a partial tile */
static int64_t
chunk_start (const RowsJob *j, int64_t i)
{
  if (i >= j->n_chunks)
    return j->rows;
  const int64_t r = j->rows * i / j->n_chunks;
  if (vl_gemm_isa () != VL_GEMM_AVX2)
    return r;
  return MIN (j->rows, (r + 3) / 6 * 6);
}

static void
rows_task (void *data, int64_t i, int worker)
{
  const RowsJob *j = data;
  int64_t r0 = chunk_start (j, i), r1 = chunk_start (j, i + 1);
  if (r1 > r0)
    j->fn (j->ctx, r0, r1, worker);
}

/* Splits `rows` into chunks (per_thread per thread) and runs fn on each over the pool; small jobs
 * (rows * row_work below ~64k operations) run on the calling thread, where waking another thread
 * would cost more than it saves. */
void
vl_compute_parallel_rows (int64_t rows, int64_t row_work, int per_thread, RowsFunc fn, void *ctx)
{
  int64_t chunks = MIN (rows, (int64_t) vl_pool_n_threads () * per_thread);
  if (chunks <= 1 || rows * row_work < 65536)
    {
      if (rows > 0)
        fn (ctx, 0, rows, 0);
      return;
    }
  RowsJob j = { fn, ctx, rows, chunks };
  vl_parallel_for (chunks, rows_task, &j);
}

/* ACT_DERIV: only in the backward, the activation's derivative stored by the forward */

Act
vl_compute_model_act (VlModel *m)
{
  return m->geo.quick_gelu ? ACT_QUICK_GELU : m->geo.gelu_tanh ? ACT_GELU_TANH : ACT_GELU;
}

/* out = act (inp) for n values (nothing for ACT_NONE). */
void
vl_compute_act_forward (Act act, float *out, const float *inp, int64_t n)
{
  if (act == ACT_GELU)
    vl_gelu_forward (out, inp, n);
  else if (act == ACT_QUICK_GELU)
    vl_quick_gelu_forward (out, inp, n);
  else if (act == ACT_GELU_TANH)
    vl_gelu_tanh_forward (out, inp, n);
}

/* out (M,N) = [residual +] inp (M,K) w^T (N,K) [+ b]; then act_out = act (out).
 * The bias, residual and activation are applied on each row panel while it is in cache. */
typedef struct {
  float *out, *act_out;
  const float *inp, *w, *b, *residual;
  int K, N;
  Act act;
  const float *wp;        /* w packed (vl_gemm_packed), or NULL for OpenBLAS */
  gboolean deriv;         /* out then gets act' (out) in place (BlockActs.h_deriv) */
} LinearFwd;

static void
linear_fwd_act (const LinearFwd *L, int64_t r0, int64_t r1)
{
  float *out = L->out + r0 * L->N;
  float *act_out = L->act_out != NULL ? L->act_out + r0 * L->N : NULL;   /* no NULL + 0 */
  const int64_t n = (r1 - r0) * L->N;
  if (!L->deriv)
    vl_compute_act_forward (L->act, act_out, out, n);
  else if (L->act == ACT_GELU)
    vl_gelu_forward_deriv (act_out, out, n);
  else if (L->act == ACT_QUICK_GELU)
    vl_quick_gelu_forward_deriv (act_out, out, n);
  else if (L->act == ACT_GELU_TANH)
    vl_gelu_tanh_forward_deriv (act_out, out, n);
}

static void
linear_fwd_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const LinearFwd *L = data;
  const int N = L->N;
  const float *restrict b = L->b;
  float *out = L->out + r0 * N;
  if (L->wp)
    {
      vl_gemm_packed (out, N, L->inp + r0 * L->K, L->K, L->wp, 1.0f, b,
                      L->residual ? L->residual + r0 * N : NULL, N, (int) (r1 - r0), N, L->K);
      linear_fwd_act (L, r0, r1);
      return;
    }
  for (int64_t r = r0; r < r1; r++)
    {
      float *restrict o = L->out + r * N;
      if (L->residual)
        {
          const float *restrict res = L->residual + r * N;
          if (b)
            for (int c = 0; c < N; c++)
              o[c] = res[c] + b[c];
          else
            memcpy (o, res, sizeof (float) * N);
        }
      else if (b)
        memcpy (o, b, sizeof (float) * N);
      else
        memset (o, 0, sizeof (float) * N);
    }
  vl_gemm_serial (FALSE, TRUE, (int) (r1 - r0), N, L->K, 1.0f, L->inp + r0 * L->K, L->K,
                  L->w, L->K, 1.0f, out, N);
  linear_fwd_act (L, r0, r1);
}

static void
linear_forward (float *out, Act act, float *act_out, const float *inp, const float *w,
                const float *b, const float *residual, int64_t M, int K, int N)
{
  LinearFwd L = { out, act_out, inp, w, b, residual, K, N, act };
  vl_compute_parallel_rows (M, (int64_t) K * N, 1, linear_fwd_rows, &L);
}

void
vl_compute_linear_forward (float *out, Act act, float *act_out, const float *inp, const float *w,
                           const float *b, const float *residual, int64_t M, int K, int N)
{
  linear_forward (out, act, act_out, inp, w, b, residual, M, K, N);
}

/* dinp (M,K) = [dinp +] dout (M,N) w (N,K); then dinp *= act' (pre). */
typedef struct {
  float *dinp;
  const float *dout, *w, *pre;
  int K, N;
  float beta;
  Act act;
  const float *wp;   /* w packed by vl_pack_rows, or NULL */
} LinearBwd;

static void
linear_bwd_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const LinearBwd *L = data;
  /* with an activation, in pieces of 96 rows, so that its pass finds the product's rows in cache
   * (a thread's share of a batch, 3152 x 768 for ViT-Ti's fc2, would be read back from memory);
   * not with OpenBLAS, which would pack the weight again for every piece */
  const int64_t step = L->act != ACT_NONE && vl_gemm_enabled () ? 96 : r1 - r0;
  for (int64_t s0 = r0; s0 < r1; s0 += step)
    {
      const int64_t s1 = MIN (r1, s0 + step);
      float *dinp = L->dinp + s0 * L->K;
      if (L->wp)
        vl_gemm_packed (dinp, L->K, L->dout + s0 * L->N, L->N, L->wp, 1.0f, NULL,
                        L->beta != 0.0f ? dinp : NULL, L->K, (int) (s1 - s0), L->K, L->N);
      else if (vl_gemm_enabled ())
        vl_gemm_rowmajor (FALSE, dinp, L->K, L->dout + s0 * L->N, L->N, L->w, L->K, 1.0f,
                          L->beta != 0.0f ? dinp : NULL, L->K, (int) (s1 - s0), L->K, L->N);
      else
        vl_gemm_serial (FALSE, FALSE, (int) (s1 - s0), L->K, L->N, 1.0f, L->dout + s0 * L->N,
                        L->N, L->w, L->K, L->beta, dinp, L->K);
      if (L->act == ACT_GELU)
        vl_gelu_backward (dinp, L->pre + s0 * L->K, dinp, (s1 - s0) * L->K);
      else if (L->act == ACT_QUICK_GELU)
        vl_quick_gelu_backward (dinp, L->pre + s0 * L->K, dinp, (s1 - s0) * L->K);
      else if (L->act == ACT_GELU_TANH)
        vl_gelu_tanh_backward (dinp, L->pre + s0 * L->K, dinp, (s1 - s0) * L->K);
      else if (L->act == ACT_DERIV)   /* on AVX2: 2% of a small model's step in SSE */
        vl_mul_inplace (dinp, L->pre + s0 * L->K, (s1 - s0) * L->K);
    }
}

/* wpack: room for w packed (vl_packed_numel (K, N)), used where vl_gemm_pack_rows_pays, or NULL */
void
vl_compute_linear_backward_input (float *dinp, const float *dout, const float *w, Act act,
                       const float *pre, int64_t M, int K, int N, gboolean accumulate,
                       float *wpack)
{
  LinearBwd L = { dinp, dout, w, pre, K, N, accumulate ? 1.0f : 0.0f, act, NULL };
  if (wpack && vl_gemm_pack_rows_pays ())
    {
      vl_pack_rows (wpack, w, K, N, K);
      L.wp = wpack;
    }
  vl_compute_parallel_rows (M, (int64_t) K * N, 1, linear_bwd_rows, &L);
}

typedef struct {
  float *db;
  const float *dout, *scale_by;
  int64_t M;
  int N;
} ColSum;

static void
colsum_range (float *restrict db, const float *dout, const float *scale_by, int64_t M, int N,
              int64_t c0, int64_t c1)
{
  for (int64_t r = 0; r < M; r++)
    {
      const float *restrict row = dout + r * N;
      if (scale_by)
        {
          const float *restrict sb = scale_by + r * N;
          for (int64_t c = c0; c < c1; c++)
            db[c] += row[c] * sb[c];
        }
      else
        for (int64_t c = c0; c < c1; c++)
          db[c] += row[c];
    }
}

static void
colsum_cols (void *data, int64_t c0, int64_t c1, int worker)
{
  const ColSum *s = data;
  colsum_range (s->db, s->dout, s->scale_by, s->M, s->N, c0, c1);
}

/* db (N) += column sums of dout (M,N) [* scale_by (M,N) elementwise]. */
void
vl_compute_colsum (float *db, const float *dout, const float *scale_by, int64_t M, int N)
{
  ColSum s = { db, dout, scale_by, M, N };
  vl_compute_parallel_rows (N, M, 1, colsum_cols, &s);
}

/* The parameter gradients of a linear layer over the pool, split by output feature: each task
 * takes a range [n0, n1) of rows of dw and the same entries of db, whose column sums it makes
 * right after its GEMM, while those columns of dout are still in cache. (part: for the split by
 * token rows below.) */
typedef struct {
  float *dw, *db, *part;
  const float *dout, *inp;
  int64_t M;
  int K, N, n_tasks;
  float *work;           /* per worker, work_numel floats: vl_gemm_tn's (NULL: OpenBLAS) */
  int64_t work_numel;
} ParamsJob;

static void
params_task (void *data, int64_t i, int worker)
{
  const ParamsJob *j = data;
  int n0 = (int) ((int64_t) j->N * i / j->n_tasks), n1 = (int) ((int64_t) j->N * (i + 1) / j->n_tasks);
  if (j->dw)
    vl_gemm_serial (TRUE, FALSE, n1 - n0, j->K, (int) j->M, 1.0f, j->dout + n0, j->N, j->inp, j->K,
                    1.0f, j->dw + (int64_t) n0 * j->K, j->K);
  if (j->db)
    colsum_range (j->db, j->dout, NULL, j->M, j->N, n0, n1);
}

/* dw (N,K) += dout^T inp; db (N) += column sums of dout. Either may be NULL. */
void
vl_compute_linear_backward_params (float *dw, float *db, const float *dout, const float *inp, int64_t M,
                        int K, int N)
{
  int threads = vl_pool_n_threads ();
  ParamsJob j = { dw, db, NULL, dout, inp, M, K, N, 1 };
  if (threads > 1 && N >= 8 * threads && 2.0 * M * N * K >= 2e6)
    {
      j.n_tasks = threads;
      vl_parallel_for (threads, params_task, &j);
    }
  else
    params_task (&j, 0, 0);
}

/* The same for a whole batch of token rows (M large): each thread takes a share of the rows (the
 * contraction), so that every operand is packed once in all rather than once per thread; the
 * other threads' partial sums go to `part` ((threads - 1) (N K + N) floats) and are added after. */
static void
row_params_task (void *data, int64_t i, int worker)
{
  const ParamsJob *j = data;
  int64_t m0 = j->M * i / j->n_tasks, m1 = j->M * (i + 1) / j->n_tasks;
  int64_t NK = (int64_t) j->N * j->K;
  float *dw = j->dw, *db = j->db;
  float beta = 1.0f;
  if (i > 0)
    {
      dw = j->part + (i - 1) * (NK + j->N);
      db = j->db ? dw + NK : NULL;
      beta = 0.0f;
      if (db)
        memset (db, 0, sizeof (float) * j->N);
    }
  if (j->work)
    {
      /* the bias gradient is summed while dout is packed */
      vl_gemm_tn (dw, j->K, beta != 0.0f, j->dout + m0 * j->N, j->N, j->inp + m0 * j->K, j->K,
                  db, j->N, j->K, (int) (m1 - m0), j->work + (int64_t) worker * j->work_numel);
      return;
    }
  vl_gemm_serial (TRUE, FALSE, j->N, j->K, (int) (m1 - m0), 1.0f, j->dout + m0 * j->N, j->N,
                  j->inp + m0 * j->K, j->K, beta, dw, j->K);
  if (db)
    colsum_range (db, j->dout + m0 * j->N, NULL, m1 - m0, j->N, 0, j->N);
}

typedef struct {
  float *dst;
  const float *part;
  int64_t n, stride;
  int n_parts;
} SumParts;

static void
sum_parts_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const SumParts *s = data;
  for (int p = 0; p < s->n_parts; p++)
    {
      const float *restrict src = s->part + p * s->stride;
      float *restrict d = s->dst;
      for (int64_t r = r0; r < r1; r++)
        d[r] += src[r];
    }
}

void
vl_compute_linear_backward_params_rows (VlActs *a, float *dw, float *db, const float *dout, const float *inp,
                             int64_t M, int K, int N)
{
  int threads = vl_pool_n_threads ();
  if (threads == 1 || M < 64 * threads || !dw)
    {
      vl_compute_linear_backward_params (dw, db, dout, inp, M, K, N);
      return;
    }
  ParamsJob j = { dw, db, a->dw_part, dout, inp, M, K, N, threads,
                  vl_gemm_enabled () ? a->tn_work : NULL, a->tn_numel };
  vl_parallel_for (threads, row_params_task, &j);
  int64_t NK = (int64_t) N * K;
  SumParts sw = { dw, a->dw_part, NK, NK + N, threads - 1 };
  vl_compute_parallel_rows (NK, threads, 4, sum_parts_rows, &sw);
  if (db)
    {
      SumParts sb = { db, a->dw_part + NK, N, NK + N, threads - 1 };
      sum_parts_rows (&sb, 0, N, 0);
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
  vl_compute_parallel_rows (N, 8 * C, 2, ln_fwd_rows, &L);
}

void
vl_compute_layernorm_forward (float *out, float *mean, float *rstd, const float *inp,
                              const float *w, const float *b, int64_t N, int C, float eps)
{
  layernorm_forward (out, mean, rstd, inp, w, b, N, C, eps);
}

typedef struct {
  float *dinp, *partial;
  const float *dout, *inp, *w, *mean, *rstd;
  int64_t N;
  int C, n_chunks;
  gboolean params;
} LnBwd;

static void
ln_bwd_chunk (void *data, int64_t i, int worker)
{
  const LnBwd *L = data;
  const int64_t r0 = L->N * i / L->n_chunks, r1 = L->N * (i + 1) / L->n_chunks;
  float *dw = L->params ? L->partial + i * 2 * L->C : NULL;
  vl_layernorm_backward (L->dinp ? L->dinp + r0 * L->C : NULL, dw, dw ? dw + L->C : NULL,
                         L->dout + r0 * L->C, L->inp + r0 * L->C, L->w, L->mean + r0,
                         L->rstd + r0, r1 - r0, L->C);
}

/* dinp += ...; dw, db += ... (both NULL when frozen). The weight and bias gradients are summed
 * per chunk of rows, the chunks fixed by the row count and the number of threads (not by which
 * thread took which), and the chunks' sums added in order: the same rounding on every run, so a
 * seed repeats a run to the bit. */
void
vl_compute_layernorm_backward (VlActs *a, float *dinp, float *dw, float *db, const float *dout,
                    const float *inp, const float *w, const float *mean, const float *rstd,
                    int64_t N, int C)
{
  gboolean params = dw != NULL;
  const int n_chunks = (int) MAX (MIN (N, (int64_t) LN_BWD_CHUNKS (a->n_threads)), 1);
  if (params)
    memset (a->ln_partial, 0, sizeof (float) * n_chunks * 2 * C);
  LnBwd L = { dinp, a->ln_partial, dout, inp, w, mean, rstd, N, C, n_chunks, params };
  if (n_chunks > 1 && N * 12 * C >= 65536)
    vl_parallel_for (n_chunks, ln_bwd_chunk, &L);
  else
    for (int i = 0; i < n_chunks; i++)
      ln_bwd_chunk (&L, i, 0);
  if (params)
    for (int t = 0; t < n_chunks; t++)
      for (int c = 0; c < C; c++)
        {
          dw[c] += a->ln_partial[(int64_t) t * 2 * C + c];
          db[c] += a->ln_partial[(int64_t) t * 2 * C + C + c];
        }
}

/* out = x + gamma * branch, row by row (layer scale). */
typedef struct {
  float *out;
  const float *x, *branch, *gamma;
  int C;
} ScaleAdd;

static void
scale_add_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const ScaleAdd *s = data;
  for (int64_t r = r0; r < r1; r++)
    for (int c = 0; c < s->C; c++)
      s->out[r * s->C + c] = s->x[r * s->C + c] + s->gamma[c] * s->branch[r * s->C + c];
}


/* task i: image b, head h, query rows chunk c of q_chunks */
static void
attn_fwd_task (void *data, int64_t i, int worker)
{
  const AttnJob *j = data;
  const int H = j->g->heads, W = j->g->width, T = j->T, qc = j->q_chunks;
  int64_t bh = i / qc;
  int c = (int) (i % qc);
  int64_t b = bh / H;
  int h = (int) (bh % H);
  float *kpack = j->kshared ? j->kshared + bh * j->a->kpack_numel
                            : j->a->kpack + worker * j->a->kpack_numel;
  vl_attention_forward_rows (j->k->atty + b * T * W, j->k->att + bh * T * T,
                             j->k->qkv + b * T * 3 * W, T, W, j->g->head_dim, h,
                             (int) ((int64_t) T * c / qc), (int) ((int64_t) T * (c + 1) / qc),
                             kpack, j->kshared != NULL);
}

void
vl_compute_attn_bwd_task (void *data, int64_t i, int worker)
{
  const AttnJob *j = data;
  const int H = j->g->heads, W = j->g->width, T = j->T;
  int64_t b = i / H;
  int h = (int) (i % H);
  vl_attention_backward (j->dqkv + b * T * 3 * W, j->dscore + (int64_t) worker * T * T,
                         j->datty + b * T * W, j->k->att + i * T * T, j->k->qkv + b * T * 3 * W,
                         T, W, j->g->head_dim, h, j->a->kpack + worker * j->a->kpack_numel);
}

/* ------------------------------------------------------------------ forward */

static void
prepare_pos_embed (VlModel *m, VlActs *a)
{
  const VlGeometry *g = &m->geo;
  const float *pos = vl_pdata (m, m->ix.pos);
  const int W = g->width, G = g->grid, PP = a->pos_prefix;
  a->resampled = a->gh != G || a->gw != G;
  if (!a->resampled)
    {
      memcpy (a->pos, pos, sizeof (float) * (PP + G * G) * W);
      return;
    }
  /* timm's resample_abs_pos_embed: prefix entries kept, grid part through PyTorch's antialiased
   * bicubic weights (vl_bicubic_matrix), as one matrix R = Rh (x) Rw over the flattened grid */
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
  memcpy (a->pos, pos, sizeof (float) * PP * W);
  vl_gemm (FALSE, FALSE, a->gh * a->gw, W, G * G, 1.0f, a->resample, G * G, pos + PP * W, W,
           0.0f, a->pos + PP * W, W);
}

static const float *packed_weight (VlModel *m, int ix);

/* Images [b0, b1) of the patch embedding on vitlab's kernel: each image's NP patch rows of x (rows
 * T apart per image) = cols W^T + bias + pos. */
typedef struct {
  float *x;
  const float *cols, *wp, *bias, *pos;
  int NP, CPP, Wd, T;
} StemRows;

static void
stem_rows (void *data, int64_t b0, int64_t b1, int worker)
{
  const StemRows *s = data;
  for (int64_t b = b0; b < b1; b++)
    vl_gemm_packed (s->x + b * s->T * s->Wd, s->Wd, s->cols + b * s->NP * s->CPP, s->CPP, s->wp,
                    1.0f, s->bias, s->pos, s->Wd, s->NP, s->Wd, s->CPP);
}

static void
forward_stem (VlModel *m, VlActs *a, const float *images, int H, int W)
{
  const VlGeometry *g = &m->geo;
  const int B = a->B, Wd = g->width, T = a->T, NP = a->gh * a->gw, P = a->P, PP = a->pos_prefix;
  const int CPP = g->in_chans * g->patch * g->patch;

  prepare_pos_embed (m, a);
  const float *wp = NULL;
  if (m->stem)   /* a CNN stem (vl-stem.h) writes the patch rows */
    vl_stem_forward (m->stem, m, a->patch_out, images, B, H, W, a->train);
  else
    {
      vl_im2col_patches (a->cols, images, B, g->in_chans, H, W, g->patch);
      wp = packed_weight (m, m->ix.patch_w);
      if (wp == NULL)
        linear_forward (a->patch_out, ACT_NONE, NULL, a->cols, vl_pdata (m, m->ix.patch_w),
                        vl_pdata (m, m->ix.patch_b), NULL, (int64_t) B * NP, CPP, Wd);
    }
  /* the prefix tokens in order, each with its position entry unless no_embed_class */
  const float *prefix[64];
  int np = 0;
  if (g->class_token)
    prefix[np++] = vl_pdata (m, m->ix.cls);
  if (g->dist_token)
    prefix[np++] = vl_pdata (m, m->ix.dist);
  for (int r = 0; r < g->reg_tokens && np < 64; r++)
    prefix[np++] = vl_pdata (m, m->ix.reg) + (int64_t) r * Wd;
  float *x0 = g->pre_norm ? a->xemb : a->xs[0];
  if (wp)
    {
      /* on vitlab's kernel, straight into the token rows, the position entries added as the
       * product is stored */
      StemRows sr = { x0 + (int64_t) P * Wd, a->cols, wp, vl_pdata (m, m->ix.patch_b),
                      a->pos + (int64_t) PP * Wd, NP, CPP, Wd, T };
      vl_compute_parallel_rows (B, (int64_t) NP * CPP * Wd, 1, stem_rows, &sr);
    }
  for (int b = 0; b < B; b++)
    {
      float *x = x0 + (int64_t) b * T * Wd;
      for (int t = 0; t < P; t++)
        for (int c = 0; c < Wd; c++)
          x[t * Wd + c] = prefix[t][c] + (PP ? a->pos[t * Wd + c] : 0.0f);
      if (wp)
        continue;   /* the patch rows are written */
      for (int t = 0; t < NP; t++)
        {
          const float *p = a->patch_out + ((int64_t) b * NP + t) * Wd;
          const float *pe = a->pos + (int64_t) (PP + t) * Wd;
          float *xt = x + (int64_t) (P + t) * Wd;
          for (int c = 0; c < Wd; c++)
            xt[c] = p[c] + pe[c];
        }
    }
  if (g->pre_norm)
    layernorm_forward (a->xs[0], a->pre_mean, a->pre_rstd, a->xemb, vl_pdata (m, m->ix.pre_w),
                       vl_pdata (m, m->ix.pre_b), (int64_t) B * T, Wd, g->eps);
}

/* Where a block's stages run. Whole batch: each stage is one parallel region over row panels
 * (attention over (image, head) pairs) — the shape for small batches. A span of images (a->span):
 * every stage runs on the calling thread over those images' rows only, so the intermediates
 * (about 2 MiB per ViT-Ti image, in the worker's own scratch set when the block is frozen) stay
 * in the core's L2 cache from one stage to the next, and the whole block costs one parallel
 * region instead of seven. */
typedef struct {
  gboolean serial;
  int      b0, n;        /* images [b0, b0 + n) */
  int      worker;
} Span;

static void
run_rows (const Span *sp, const VlActs *a, int64_t row_work, int per_thread, RowsFunc fn,
          void *ctx)
{
  if (sp->serial)
    fn (ctx, 0, (int64_t) sp->n * a->T, sp->worker);
  else
    vl_compute_parallel_rows ((int64_t) sp->n * a->T, row_work, per_thread, fn, ctx);
}

#define SHIFT(p, n) ((p) ? (p) + (n) : NULL)

/* Block l's buffers seen from image b0 on (row 0 of each is image b0's first token). A frozen
 * block uses the worker's own scratch set (span) or the batch's (b0 is then 0); a stored block its
 * own arrays, with GELU's output its own too or in the worker's (or the batch's) gbuf. */
static BlockActs
block_view (VlActs *a, const VlGeometry *g, int l, int b0, int worker)
{
  const int64_t t = (int64_t) b0 * a->T, W = g->width;
  const int64_t att = (int64_t) b0 * g->heads * a->T * a->T;
  const int w = a->span ? worker : 0;
  BlockActs v;
  if (l < a->store_from)
    {
      v = a->scratch[w];
      if (a->capture)
        v.att = a->blk[l].att + att;
      return v;
    }
  v = a->blk[l];
  v.ln1 += t * W;
  v.ln1_mean += t;
  v.ln1_rstd += t;
  v.qkv += t * 3 * W;
  v.att += att;
  v.atty += t * W;
  v.ls1b = SHIFT (v.ls1b, t * W);
  v.xmid += t * W;
  v.ln2 += t * W;
  v.ln2_mean += t;
  v.ln2_rstd += t;
  v.h += t * g->mlp;
  v.g = v.g ? v.g + t * g->mlp : a->gbuf[w];
  v.ls2b = SHIFT (v.ls2b, t * W);
  return v;
}

/* A block's forward around its attention: the row-local stages before it (LN1, qkv) and after
 * it (proj, residual, LN2, fc1 + GELU, fc2, residual), each run over one range of rows. */
typedef struct {
  VlModel         *m;
  const BlockActs *k;
  const float     *x;
  float           *x_out;
  int              l;
  VlActs          *a;
  const float     *wp[4];   /* qkv, proj, fc1, fc2 packed (all NULL: OpenBLAS) */
} BlockFwd;

#define BP(which) (vl_param (f->m, vl_block_param (f->m, f->l, (which)))->data)


static void
pre_attn_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const BlockFwd *f = data;
  const VlGeometry *g = &f->m->geo;
  const BlockActs *k = f->k;
  const int W = g->width;
  LnFwd ln1 = { k->ln1, k->ln1_mean, k->ln1_rstd, f->x, BP (B_LN1_W), BP (B_LN1_B), W, g->eps };
  ln_fwd_rows (&ln1, r0, r1, worker);
  LinearFwd qkv = { k->qkv, NULL, k->ln1, BP (B_QKV_W), BP (B_QKV_B), NULL, W, 3 * W, ACT_NONE,
                    f->wp[0] };
  linear_fwd_rows (&qkv, r0, r1, worker);
}

static void
post_attn_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const BlockFwd *f = data;
  const VlGeometry *g = &f->m->geo;
  const BlockActs *k = f->k;
  const int W = g->width, M = g->mlp;
  if (g->layer_scale)
    {
      LinearFwd proj = { k->ls1b, NULL, k->atty, BP (B_PROJ_W), BP (B_PROJ_B), NULL, W, W,
                         ACT_NONE, f->wp[1] };
      linear_fwd_rows (&proj, r0, r1, worker);
      ScaleAdd sa = { k->xmid, f->x, k->ls1b, BP (B_LS1), W };
      scale_add_rows (&sa, r0, r1, worker);
    }
  else
    {
      LinearFwd proj = { k->xmid, NULL, k->atty, BP (B_PROJ_W), BP (B_PROJ_B), f->x, W, W,
                         ACT_NONE, f->wp[1] };
      linear_fwd_rows (&proj, r0, r1, worker);
    }
  LnFwd ln2 = { k->ln2, k->ln2_mean, k->ln2_rstd, k->xmid, BP (B_LN2_W), BP (B_LN2_B), W,
                g->eps };
  ln_fwd_rows (&ln2, r0, r1, worker);
  LinearFwd fc1 = { k->h, k->g, k->ln2, BP (B_FC1_W), BP (B_FC1_B), NULL, W, M,
                    vl_compute_model_act (f->m), f->wp[2], k->h_deriv };
  linear_fwd_rows (&fc1, r0, r1, worker);
  if (g->layer_scale)
    {
      LinearFwd fc2 = { k->ls2b, NULL, k->g, BP (B_FC2_W), BP (B_FC2_B), NULL, M, W, ACT_NONE,
                        f->wp[3] };
      linear_fwd_rows (&fc2, r0, r1, worker);
      ScaleAdd sa = { f->x_out, k->xmid, k->ls2b, BP (B_LS2), W };
      scale_add_rows (&sa, r0, r1, worker);
    }
  else
    {
      LinearFwd fc2 = { f->x_out, NULL, k->g, BP (B_FC2_W), BP (B_FC2_B), k->xmid, M, W,
                        ACT_NONE, f->wp[3] };
      linear_fwd_rows (&fc2, r0, r1, worker);
    }
}

#undef BP

static void
block_forward_span (VlModel *m, VlActs *a, int l, const Span *sp)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width;
  BlockActs view = block_view (a, g, l, sp->b0, sp->worker);
  BlockFwd f = { m, &view, a->xs[l] + (int64_t) sp->b0 * a->T * W,
                 a->xs[l + 1] + (int64_t) sp->b0 * a->T * W, l, a,
                 { a->packed[0], a->packed[1], a->packed[2], a->packed[3] } };
  const int64_t lin_work = (int64_t) W * (3 * W + W + 2 * g->mlp);

  run_rows (sp, a, lin_work, 1, pre_attn_rows, &f);
  AttnJob j = { .g = g, .T = a->T, .k = &view, .q_chunks = 1, .a = a };
  int64_t pairs = (int64_t) sp->n * g->heads;
  if (sp->serial)
    for (int64_t i = 0; i < pairs; i++)
      attn_fwd_task (&j, i, sp->worker);
  else
    {
      /* few (image, head) pairs (batch 1: one per head): split their query rows too, so that
       * every thread gets several tasks of similar size */
      int threads = vl_pool_n_threads ();
      while (pairs * j.q_chunks < 4 * threads && j.q_chunks * 16 < a->T)
        j.q_chunks *= 2;
      /* the chunks of a pair share its keys, packed once here (a few microseconds each) so that
       * even short chunks run on vitlab's kernel */
      if (j.q_chunks > 1 && pairs <= 4 * threads)
        {
          j.kshared = a->kshared;
          for (int64_t bh = 0; bh < pairs && j.kshared; bh++)
            if (!vl_attention_pack_keys (a->kshared + bh * a->kpack_numel,
                                         view.qkv + bh / g->heads * a->T * 3 * W, a->T, W,
                                         g->head_dim, (int) (bh % g->heads)))
              j.kshared = NULL;
        }
      vl_parallel_for (pairs * j.q_chunks, attn_fwd_task, &j);
    }
  run_rows (sp, a, lin_work, 1, post_attn_rows, &f);
}

typedef struct {
  VlModel *m;
  VlActs  *a;
  int      l;
} BlockJob;

static void
block_image_task (void *data, int64_t b, int worker)
{
  const BlockJob *j = data;
  int b0 = (int) b * j->a->span;
  Span sp = { TRUE, b0, MIN (j->a->span, j->a->B - b0), worker };
  block_forward_span (j->m, j->a, j->l, &sp);
}

/* Parameter ix (a backbone weight: N rows of K) packed for vl_gemm_packed, remade when its
 * version changed (an update, a writable access, a change of its group's lock) or another kernel
 * came into use; NULL when none of vitlab's kernels is in use. A trainable weight may have been
 * written through a pointer held since (finite differences do that): its copy is remade at every
 * forward. */
static const float *
packed_weight (VlModel *m, int ix)
{
  if (!vl_gemm_enabled () || ix < 0 || ix >= m->n_backbone)
    return NULL;
  if (m->packed == NULL)
    {
      m->packed = g_new0 (float *, m->n_backbone);
      m->packed_version = g_new0 (unsigned, m->n_backbone);
      m->packed_isa = vl_gemm_isa ();
    }
  if (m->packed_isa != (int) vl_gemm_isa ())
    {
      for (int i = 0; i < m->n_backbone; i++)
        if (m->packed[i] != NULL)
          m->packed_version[i] = vl_param (m, i)->version - 1;
      m->packed_isa = vl_gemm_isa ();
    }
  const VlParam *p = vl_param (m, ix);
  const int N = (int) p->shape[0], K = (int) (p->numel / N);
  if (m->packed[ix] == NULL)
    {
      m->packed[ix] = g_aligned_alloc (vl_packed_numel (N, K), sizeof (float), 64);
      m->packed_version[ix] = p->version - 1;
    }
  if (m->packed_version[ix] != p->version || m->trainable[p->group])
    {
      vl_pack_weights (m->packed[ix], p->data, K, N, K);
      m->packed_version[ix] = p->version;
    }
  return m->packed[ix];
}

/* Block l's linear weights packed for vl_gemm_packed into a->packed (NULLs where none of vitlab's
 * kernels is in use) */
static void
pack_block (VlModel *m, VlActs *a, int l)
{
  static const int which[4] = { B_QKV_W, B_PROJ_W, B_FC1_W, B_FC2_W };
  memset (a->packed, 0, sizeof a->packed);
  for (int i = 0; i < 4; i++)
    {
      int ix = vl_block_param (m, l, which[i]);
      if (ix < 0 || vl_param (m, ix)->ndim != 2)
        return;
    }
  for (int i = 0; i < 4; i++)
    a->packed[i] = packed_weight (m, vl_block_param (m, l, which[i]));
}

static void
forward_block (VlModel *m, VlActs *a, int l)
{
  pack_block (m, a, l);
  if (a->span)
    {
      BlockJob j = { m, a, l };
      vl_parallel_for ((a->B + a->span - 1) / a->span, block_image_task, &j);
    }
  else
    {
      Span sp = { FALSE, 0, a->B, 0 };
      block_forward_span (m, a, l, &sp);
    }
}

/* Pools `tok` (B,T,W) over the patch tokens [P, T), or takes token 0. */
static void
pool_tokens (VlModel *m, VlActs *a, const float *tokens, float *out_all)
{
  const int W = m->geo.width, T = a->T, B = a->B, P = a->P;
  a->mp_valid = m->pool == VL_POOL_MAP;
  if (m->pool == VL_POOL_MAP)
    {
      vl_map_pool_forward (m, a, tokens, out_all);
      return;
    }
  for (int b = 0; b < B; b++)
    {
      const float *tok = tokens + (int64_t) b * T * W;
      float *out = out_all + (int64_t) b * W;
      int *arg = a->argmax + (int64_t) b * W;
      switch (m->pool)
        {
        case VL_POOL_MAP:   /* not reached: the whole batch at once, above */
          break;
        case VL_POOL_TOKEN:
          memcpy (out, tok, sizeof (float) * W);
          break;
        case VL_POOL_AVG:
          memset (out, 0, sizeof (float) * W);
          for (int t = P; t < T; t++)
            for (int c = 0; c < W; c++)
              out[c] += tok[(int64_t) t * W + c];
          for (int c = 0; c < W; c++)
            out[c] /= (float) (T - P);
          break;
        case VL_POOL_MAX:
          for (int c = 0; c < W; c++)
            {
              out[c] = tok[(int64_t) P * W + c];
              arg[c] = P;
            }
          for (int t = P + 1; t < T; t++)
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

/* Final norm and pooling: the token norm then pooling, or pooling then fc_norm. */
static void
forward_norm_pool (VlModel *m, VlActs *a)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, T = a->T, B = a->B;
  const float *nw = vl_pdata (m, m->ix.norm_w), *nb = vl_pdata (m, m->ix.norm_b);
  if (g->fc_norm)
    {
      pool_tokens (m, a, a->xs[g->depth], a->pooled_raw);
      layernorm_forward (a->pooled, a->fc_mean, a->fc_rstd, a->pooled_raw, nw, nb, B, W, g->eps);
    }
  else
    {
      layernorm_forward (a->lnf, a->lnf_mean, a->lnf_rstd, a->xs[g->depth], nw, nb,
                         (int64_t) B * T, W, g->eps);
      pool_tokens (m, a, a->lnf, a->pooled);
    }
  if (g->dist_token)
    for (int b = 0; b < B; b++)
      memcpy (a->dist_feat + (int64_t) b * W, a->lnf + ((int64_t) b * T + 1) * W,
              sizeof (float) * W);
}

static void
forward_proj (VlModel *m, VlActs *a)
{
  if (m->geo.embed_dim > 0)
    linear_forward (a->emb, ACT_NONE, NULL, a->pooled, vl_pdata (m, m->ix.proj), NULL, NULL, a->B,
                    m->geo.width, m->geo.embed_dim);
}

const float *
vl_compute_head_input (VlModel *m, VlActs *a, int *din)
{
  *din = m->geo.embed_dim > 0 ? m->geo.embed_dim : m->geo.width;
  return m->geo.embed_dim > 0 ? a->emb : a->pooled;
}

static void
forward_head (VlModel *m, VlActs *a)
{
  const int B = a->B, K = m->num_classes;
  int din;
  const float *hin = vl_compute_head_input (m, a, &din);
  if (m->head_kind == VL_HEAD_LINEAR)
    {
      linear_forward (a->logits, ACT_NONE, NULL, hin, vl_pdata (m, m->ix.head_w),
                      vl_pdata (m, m->ix.head_b), NULL, B, din, K);
      if (m->ix.hdist_w >= 0)
        {
          /* DeiT distilled, eval: the mean of the class head and the distillation head */
          linear_forward (a->logits_dist, ACT_NONE, NULL, a->dist_feat, vl_pdata (m, m->ix.hdist_w),
                          vl_pdata (m, m->ix.hdist_b), NULL, B, m->geo.width, K);
          for (int64_t i = 0; i < (int64_t) B * K; i++)
            a->logits[i] = 0.5f * (a->logits[i] + a->logits_dist[i]);
        }
    }
  else if (m->head_kind == VL_HEAD_MLP)
    {
      linear_forward (a->head_h, ACT_GELU, a->head_g,
                      hin, vl_pdata (m, m->ix.head_w), vl_pdata (m, m->ix.head_b), NULL, B, din,
                      m->head_hidden);
      linear_forward (a->logits, ACT_NONE, NULL, a->head_g, vl_pdata (m, m->ix.head2_w),
                      vl_pdata (m, m->ix.head2_b), NULL, B, m->head_hidden, K);
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

/* TRUE (with G_IO_ERROR_CANCELLED) once the model's cancellable is cancelled. */
gboolean
vl_compute_cancelled (VlModel *m, GError **error)
{
  return m->cancellable != NULL && g_cancellable_set_error_if_cancelled (m->cancellable, error);
}

/* Where the frozen prefix ends: the input of the lowest trainable component. */
typedef enum {
  BOUNDARY_NONE,      /* the stem trains (or nothing does): nothing to cache */
  BOUNDARY_BLOCK,     /* xs[block] (T, W) per image; block == depth: before the final norm */
  BOUNDARY_POOLED,    /* the pooled features (W): the projection (or the head) trains */
  BOUNDARY_EMBEDDING, /* the projection's output (E): only the head trains */
} BoundaryKind;

static BoundaryKind
boundary_at (VlModel *m, int c0, int *block)
{
  *block = m->geo.depth;
  if (c0 <= C_STEM)
    return BOUNDARY_NONE;
  if (c0 <= C_NORM (m) || (c0 >= C_HEAD (m) && m->ix.hdist_w >= 0))
    {
      *block = MIN (c0 - 1, m->geo.depth);
      return BOUNDARY_BLOCK;
    }
  if (c0 == C_PROJ (m) || m->geo.embed_dim == 0)
    return BOUNDARY_POOLED;
  return BOUNDARY_EMBEDDING;
}

static BoundaryKind
boundary_of (VlModel *m, int *block)
{
  return boundary_at (m, vl_compute_lowest_trainable (m), block);
}

int
vl_model_block_boundary_for (VlModel *m, int unlocked_groups)
{
  int c0 = INT_MAX;
  for (guint i = 0; i < m->params->len; i++)
    {
      VlParam *p = vl_param (m, (int) i);
      if (p->group >= m->n_groups - unlocked_groups && p->comp < c0)
        c0 = p->comp;
    }
  int block;
  return c0 != INT_MAX && boundary_at (m, c0, &block) == BOUNDARY_BLOCK ? block : -1;
}

int64_t
vl_model_boundary_numel (VlModel *m, int H, int W)
{
  int block;
  switch (boundary_of (m, &block))
    {
    case BOUNDARY_BLOCK:
      return (int64_t) (m->geo.n_prefix + (H / m->geo.patch) * (W / m->geo.patch)) * m->geo.width;
    case BOUNDARY_POOLED:
      return m->geo.width;
    case BOUNDARY_EMBEDDING:
      return m->geo.embed_dim;
    case BOUNDARY_NONE:
    default:
      return 0;
    }
}

static void
mark_valid (VlModel *m, VlActs *a, gboolean from_features)
{
  a->valid = TRUE;
  a->pooled_valid = TRUE;
  a->valid_train = a->train;
  a->from_features = from_features;
  a->c0 = vl_compute_lowest_trainable (m);
}

/* NaN or Inf among a forward's outputs is an error, not a prediction: a weight, an input or an
 * overflow upstream (a learning rate far too high) made it, and every number derived from it
 * would be silently wrong. Checks the outputs this forward computed, in the order they are made
 * (features, embedding, logits), and names the first that holds one; when the forward ran
 * through blocks from `first_block` on, also where the activations first went non-finite (the
 * stored token streams, looked at only on failure). */
static gboolean
check_outputs (VlModel *m, VlActs *a, gboolean pooled, int first_block, GError **error)
{
  const VlGeometry *g = &m->geo;
  const struct { const char *name; const float *x; int n; } outs[] = {
    { "features", pooled ? a->pooled : NULL, g->width },
    { "embedding", g->embed_dim > 0 ? a->emb : NULL, g->embed_dim },
    { "logits", m->num_classes > 0 ? a->logits : NULL, m->num_classes },
  };
  for (guint o = 0; o < G_N_ELEMENTS (outs); o++)
    for (int64_t i = 0; outs[o].x != NULL && i < (int64_t) a->B * outs[o].n; i++)
      {
        if (isfinite (outs[o].x[i]))
          continue;
        g_autofree char *where = NULL;
        for (int l = first_block; where == NULL && l >= 0 && l <= g->depth; l++)
          {
            const float *xs = a->xs[l];
            for (int64_t j = 0; j < (int64_t) a->B * a->T * g->width; j++)
              if (!isfinite (xs[j]))
                {
                  where = l == 0 ? g_strdup ("the patch embedding (stem)")
                                 : g_strdup_printf ("block %d (blocks.%d)", l - 1, l - 1);
                  break;
                }
          }
        g_set_error (error, VL_ERROR, VL_ERROR_NUMERIC,
                     "the model's output %s holds %s (image %" G_GINT64_FORMAT ", element %"
                     G_GINT64_FORMAT ")%s%s: a weight or an input holds NaN or Inf, or a value "
                     "overflowed (a learning rate too high?)", outs[o].name,
                     isnan (outs[o].x[i]) ? "NaN" : outs[o].x[i] > 0 ? "+Inf" : "-Inf",
                     i / outs[o].n, i % outs[o].n, where ? "; the activations first go "
                     "non-finite leaving " : "", where ? where : "");
        return FALSE;
      }
  return TRUE;
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
  forward_stem (m, a, images, H, W);
  for (int l = 0; l < g->depth; l++)
    {
      if (vl_compute_cancelled (m, error))
        return FALSE;
      forward_block (m, a, l);
    }
  forward_norm_pool (m, a);
  forward_proj (m, a);
  forward_head (m, a);
  mark_valid (m, a, FALSE);
  return check_outputs (m, a, TRUE, 0, error);
}

gboolean
vl_model_forward_to_boundary (VlModel *m, const float *images, int B, int H, int W, float *out,
                              GError **error)
{
  return vl_model_forward_to_boundary_keeping (m, images, B, H, W, out, -1, NULL, error);
}

gboolean
vl_model_forward_to_boundary_keeping (VlModel *m, const float *images, int B, int H, int W,
                                      float *out, int keep_block, float *keep_out, GError **error)
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
    {
      if (vl_compute_cancelled (m, error))
        return FALSE;
      forward_block (m, a, l);
    }
  if (keep_out && keep_block >= 0 && keep_block <= block)
    memcpy (keep_out, a->xs[keep_block], sizeof (float) * B * a->T * g->width);
  if (kind == BOUNDARY_BLOCK)
    {
      memcpy (out, a->xs[block], sizeof (float) * B * a->T * g->width);
      return TRUE;
    }
  forward_norm_pool (m, a);
  if (kind == BOUNDARY_POOLED)
    memcpy (out, a->pooled, sizeof (float) * B * g->width);
  else
    {
      forward_proj (m, a);
      memcpy (out, a->emb, sizeof (float) * B * g->embed_dim);
    }
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
  if ((flags & VL_FORWARD_CAPTURE_ATTN) && (kind != BOUNDARY_BLOCK || block > 0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "attention of the frozen blocks cannot be captured from cached activations");
      return FALSE;
    }
  const VlGeometry *g = &m->geo;
  VlActs *a = acts_ensure (m, B, H / g->patch, W / g->patch, flags);
  a->valid = a->valid_train = FALSE;
  switch (kind)
    {
    case BOUNDARY_BLOCK:
      memcpy (a->xs[block], boundary, sizeof (float) * B * a->T * g->width);
      for (int l = block; l < g->depth; l++)
        {
          if (vl_compute_cancelled (m, error))
            return FALSE;
          forward_block (m, a, l);
        }
      forward_norm_pool (m, a);
      forward_proj (m, a);
      break;
    case BOUNDARY_POOLED:
      memcpy (a->pooled, boundary, sizeof (float) * B * g->width);
      forward_proj (m, a);
      break;
    case BOUNDARY_EMBEDDING:
      memcpy (a->emb, boundary, sizeof (float) * B * g->embed_dim);
      break;
    case BOUNDARY_NONE:
      break;
    }
  forward_head (m, a);
  mark_valid (m, a, kind != BOUNDARY_BLOCK);
  a->pooled_valid = kind != BOUNDARY_EMBEDDING;
  return check_outputs (m, a, a->pooled_valid, kind == BOUNDARY_BLOCK ? block : -1, error);
}

int vl_model_batch (VlModel *m) { return m->acts && m->acts->valid ? m->acts->B : 0; }
int vl_model_n_tokens_last (VlModel *m) { return m->acts && m->acts->valid ? m->acts->T : 0; }

const float *
vl_model_tokens_final (VlModel *m)
{
  return m->acts && m->acts->valid && !m->acts->from_features ? m->acts->lnf : NULL;
}

const float *
vl_model_features (VlModel *m)
{
  VlActs *a = m->acts;
  return a && a->valid && a->pooled_valid ? a->pooled : NULL;
}

const float *
vl_model_embedding (VlModel *m)
{
  return m->acts && m->acts->valid && m->geo.embed_dim > 0 ? m->acts->emb : NULL;
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
  if (a == NULL || !a->valid || a->from_features || block < 0 || block >= m->geo.depth)
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
  const VlGeometry *g = &j->m->geo;
  const VlAttnShape s = { .depth = g->depth, .heads = g->heads, .T = a->T, .n_prefix = a->P,
                          .has_cls = g->class_token };
  const int64_t per_image = (int64_t) g->heads * a->T * a->T;
  const float **blocks = g_newa (const float *, MAX (g->depth, 1));
  for (int l = 0; l < g->depth; l++)
    blocks[l] = a->blk[l].att + b * per_image;
  vl_attention_rollout_blocks (blocks, &s, -1, j->out + b * (a->T - a->P),
                               j->scratch + (int64_t) worker * 3 * a->T);
}

gboolean
vl_model_rollout (VlModel *m, float *out, GError **error)
{
  VlActs *a = m->acts;
  if (a == NULL || !a->valid || !a->capture || a->from_features)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "attention rollout needs a forward pass that captured the attention");
      return FALSE;
    }
  int threads = vl_pool_n_threads ();
  float *scratch = g_new (float, (int64_t) threads * 3 * a->T);
  RolloutJob j = { m, out, scratch };
  vl_parallel_for (a->B, rollout_task, &j);
  g_free (scratch);
  return TRUE;
}

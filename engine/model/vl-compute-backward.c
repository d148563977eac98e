/* vl-compute-backward.c: the model's backward passes over the thread pool (see vl-compute.c for
 * the activations they read and the forward that keeps them): from the logits, the pooled
 * features, the OpenCLIP embedding or the final-norm tokens, down through the head, the blocks
 * and the stem, into the unlocked groups' gradients. */
#include "vl-compute-private.h"
#include "vl-attention.h"
#include "vl-gemm.h"
#include "vl-kernels.h"
#include "vl-pool.h"
#include "vl-stem.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ backward */

float *
vl_compute_grad_of (VlModel *m, int index)
{
  if (index < 0)
    return NULL;
  VlParam *p = vl_param (m, index);
  return m->trainable[p->group] ? p->grad : NULL;
}

/* Layer scale on a residual branch: out = x + gamma * branch. Given dout, dbranch = dout * gamma
 * and dgamma += sum (dout * branch); the residual passes dout through unchanged. */
typedef struct {
  float *dbranch;
  const float *dout, *gamma;
  int C;
} LsBwd;

static void
ls_bwd_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const LsBwd *s = data;
  for (int64_t r = r0; r < r1; r++)
    for (int c = 0; c < s->C; c++)
      s->dbranch[r * s->C + c] = s->dout[r * s->C + c] * s->gamma[c];
}

static const float *
layer_scale_backward (VlActs *a, float *dgamma, const float *gamma, const float *branch,
                      int64_t N, int C)
{
  if (dgamma)
    vl_compute_colsum (dgamma, a->dx, branch, N, C);
  LsBwd s = { a->dbranch, a->dx, gamma, C };
  vl_compute_parallel_rows (N, C, 2, ls_bwd_rows, &s);
  return a->dbranch;
}

/* out = act (inp), rows of C. */
typedef struct {
  float *out;
  const float *inp;
  int C;
  Act act;
} ActRows;

static void
act_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const ActRows *A = data;
  vl_compute_act_forward (A->act, A->out + r0 * A->C, A->inp + r0 * A->C, (r1 - r0) * A->C);
}



/* xhat = (x - mean) rstd, row by row: a LayerNorm's normalized input. */
typedef struct {
  float *xhat;
  const float *x, *mean, *rstd;
  int C;
} NormRows;

static void
norm_rows (void *data, int64_t r0, int64_t r1, int worker)
{
  const NormRows *n = data;
  for (int64_t r = r0; r < r1; r++)
    {
      const float mu = n->mean[r], rs = n->rstd[r];
      const float *restrict x = n->x + r * n->C;
      float *restrict o = n->xhat + r * n->C;
      for (int c = 0; c < n->C; c++)
        o[c] = (x[c] - mu) * rs;
    }
}

/* The parameter gradients of qkv and of the LayerNorm before it, in the lowest trainable block
 * when nothing below it needs an input gradient (unlock 6's blocks.8). With y = xhat gamma + beta
 * the LayerNorm's output, qkv = y Wq^T + bq, G = dqkv^T xhat (3W x W) and s = this step's column
 * sums of dqkv:
 *   d Wq = G diag (gamma) + s beta^T,  d gamma_j = sum_k Wq_kj G_kj,  d beta_j = sum_k Wq_kj s_k.
 * G costs what qkv's weight gradient costs anyway; the general path would add dqkv Wq (a product
 * as large) and the LayerNorm's backward, only to sum them away. dqkv is in a->dwide. */
static void
qkv_ln1_params_backward (VlModel *m, VlActs *a, int l)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, N = 3 * W;
  const int64_t BT = (int64_t) a->B * a->T;
  const BlockActs *k = &a->blk[l];
  NormRows nr = { a->dtmp, a->xs[l], k->ln1_mean, k->ln1_rstd, W };
  vl_compute_parallel_rows (BT, 2 * W, 2, norm_rows, &nr);
  float *G = a->qkv_g, *s = a->qkv_g + (int64_t) N * W;
  memset (G, 0, sizeof (float) * ((int64_t) N * W + N));
  vl_compute_linear_backward_params_rows (a, G, s, a->dwide, a->dtmp, BT, W, N);

#define QP(which) (vl_param (m, vl_block_param (m, l, (which)))->data)
#define QG(which) (vl_compute_grad_of (m, vl_block_param (m, l, (which))))
  const float *wq = QP (B_QKV_W), *gamma = QP (B_LN1_W), *beta = QP (B_LN1_B);
  float *dwq = QG (B_QKV_W), *dbq = QG (B_QKV_B), *dgamma = QG (B_LN1_W), *dbeta = QG (B_LN1_B);
#undef QP
#undef QG
  for (int kk = 0; kk < N; kk++)
    {
      const float *restrict gk = G + (int64_t) kk * W, *restrict wk = wq + (int64_t) kk * W;
      float *restrict dwk = dwq + (int64_t) kk * W;
      const float sk = s[kk];
      for (int j = 0; j < W; j++)
        {
          dwk[j] += gamma[j] * gk[j] + beta[j] * sk;
          dgamma[j] += wk[j] * gk[j];
          if (dbeta)
            dbeta[j] += wk[j] * sk;
        }
      dbq[kk] += sk;
    }
}

static void
backward_block (VlModel *m, VlActs *a, int l, gboolean need_dinput)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, M = g->mlp;
  const int64_t BT = (int64_t) a->B * a->T;
  const BlockActs *k = &a->blk[l];
#define BP(which) (vl_param (m, vl_block_param (m, l, (which)))->data)
#define BG(which) (vl_compute_grad_of (m, vl_block_param (m, l, (which))))

  /* dx holds d out. MLP branch: out = xmid + [ls2 *] fc2 (act (fc1 (ln2 (xmid)))) */
  const float *dy = g->layer_scale ? layer_scale_backward (a, BG (B_LS2), BP (B_LS2), k->ls2b, BT, W)
                                   : a->dx;
  /* fc2's weight gradient needs its input GELU (h): kept by the forward, or recomputed into
   * dwide, which the next product overwrites (not when fc2's weight is frozen: nothing reads it
   * then) */
  const float *gelu = k->g;
  if (gelu == NULL && BG (B_FC2_W))
    {
      g_assert (!k->h_deriv);
      ActRows ar = { a->dwide, k->h, M, vl_compute_model_act (m) };
      vl_compute_parallel_rows (BT, 16 * M, 2, act_rows, &ar);
      gelu = a->dwide;
    }
  vl_compute_linear_backward_params_rows (a, BG (B_FC2_W), BG (B_FC2_B), dy, gelu, BT, M, W);
  vl_compute_linear_backward_input (a->dwide, dy, BP (B_FC2_W), k->h_deriv ? ACT_DERIV : vl_compute_model_act (m), k->h,
                         BT, M, W, FALSE, a->wpack);
  vl_compute_linear_backward_params_rows (a, BG (B_FC1_W), BG (B_FC1_B), a->dwide, k->ln2, BT, W, M);
  vl_compute_linear_backward_input (a->dtmp, a->dwide, BP (B_FC1_W), ACT_NONE, NULL, BT, W, M, FALSE,
                         a->wpack);
  vl_compute_layernorm_backward (a, a->dx, BG (B_LN2_W), BG (B_LN2_B), a->dtmp, k->xmid, BP (B_LN2_W),
                      k->ln2_mean, k->ln2_rstd, BT, W);
  /* dx holds d xmid. Attention branch: xmid = x + [ls1 *] proj (attn (qkv (ln1 (x)))) */
  dy = g->layer_scale ? layer_scale_backward (a, BG (B_LS1), BP (B_LS1), k->ls1b, BT, W) : a->dx;
  vl_compute_linear_backward_params_rows (a, BG (B_PROJ_W), BG (B_PROJ_B), dy, k->atty, BT, W, W);
  vl_compute_linear_backward_input (a->datty, dy, BP (B_PROJ_W), ACT_NONE, NULL, BT, W, W, FALSE, a->wpack);
  AttnJob j = { .g = g, .T = a->T, .k = k, .datty = a->datty, .dqkv = a->dwide, .a = a,
                .dscore = a->dscore };
  vl_parallel_for ((int64_t) a->B * g->heads, vl_compute_attn_bwd_task, &j);
  gboolean ln1_trains = BG (B_LN1_W) != NULL;
  if (!need_dinput && ln1_trains && BG (B_QKV_W) && BG (B_QKV_B))
    {
      qkv_ln1_params_backward (m, a, l);
      return;
    }
  vl_compute_linear_backward_params_rows (a, BG (B_QKV_W), BG (B_QKV_B), a->dwide, k->ln1, BT, W, 3 * W);
  if (need_dinput || ln1_trains)
    {
      vl_compute_linear_backward_input (a->dtmp, a->dwide, BP (B_QKV_W), ACT_NONE, NULL, BT, W, 3 * W, FALSE,
                             a->wpack);
      vl_compute_layernorm_backward (a, need_dinput ? a->dx : NULL, BG (B_LN1_W), BG (B_LN1_B), a->dtmp,
                          a->xs[l], BP (B_LN1_W), k->ln1_mean, k->ln1_rstd, BT, W);
    }
#undef BP
#undef BG
}

static void
backward_stem (VlModel *m, VlActs *a)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, T = a->T, NP = a->gh * a->gw, G = g->grid, P = a->P, PP = a->pos_prefix;
  const int CPP = g->in_chans * g->patch * g->patch;
  const int64_t BT = (int64_t) a->B * T;

  /* d of the embeddings before ln_pre */
  const float *demb = a->dx;
  if (g->pre_norm)
    {
      memset (a->dtmp, 0, sizeof (float) * BT * W);
      vl_compute_layernorm_backward (a, a->dtmp, vl_compute_grad_of (m, m->ix.pre_w), vl_compute_grad_of (m, m->ix.pre_b), a->dx,
                          a->xemb, vl_pdata (m, m->ix.pre_w), a->pre_mean, a->pre_rstd, BT, W);
      demb = a->dtmp;
    }
  float *dpos = vl_compute_grad_of (m, m->ix.pos);
  float *dpos_used = a->resampled ? a->dpos_new : dpos;
  if (a->resampled)
    memset (a->dpos_new, 0, sizeof (float) * (PP + NP) * W);
  float *dprefix[64];
  int np = 0;
  if (g->class_token)
    dprefix[np++] = vl_compute_grad_of (m, m->ix.cls);
  if (g->dist_token)
    dprefix[np++] = vl_compute_grad_of (m, m->ix.dist);
  for (int r = 0; r < g->reg_tokens && np < 64; r++)
    dprefix[np++] = vl_compute_grad_of (m, m->ix.reg) + (int64_t) r * W;
  float *dpatch = a->datty;   /* (B*NP, W) */
  for (int b = 0; b < a->B; b++)
    {
      const float *d = demb + (int64_t) b * T * W;
      for (int t = 0; t < P; t++)
        for (int c = 0; c < W; c++)
          {
            dprefix[t][c] += d[t * W + c];
            if (PP)
              dpos_used[t * W + c] += d[t * W + c];
          }
      for (int t = 0; t < NP; t++)
        {
          const float *dt = d + (int64_t) (P + t) * W;
          float *dp = dpos_used + (int64_t) (PP + t) * W;
          for (int c = 0; c < W; c++)
            dp[c] += dt[c];
          memcpy (dpatch + ((int64_t) b * NP + t) * W, dt, sizeof (float) * W);
        }
    }
  if (a->resampled)
    {
      for (int64_t e = 0; e < (int64_t) PP * W; e++)
        dpos[e] += a->dpos_new[e];
      vl_gemm (TRUE, FALSE, G * G, W, NP, 1.0f, a->resample, G * G, a->dpos_new + PP * W, W, 1.0f,
               dpos + PP * W, W);
    }
  if (m->stem)
    vl_stem_backward (m->stem, m, dpatch);
  else
    vl_compute_linear_backward_params (vl_compute_grad_of (m, m->ix.patch_w), vl_compute_grad_of (m, m->ix.patch_b), dpatch,
                            a->cols, (int64_t) a->B * NP, CPP, W);
}

/* The head: d logits -> d head input (a->dhin) when `below`, and the head's gradients. */
static void
backward_head (VlModel *m, VlActs *a, gboolean below)
{
  const int B = a->B, K = m->num_classes;
  int din;
  const float *hin = vl_compute_head_input (m, a, &din);
  if (m->head_kind == VL_HEAD_LINEAR)
    {
      if (m->ix.hdist_w >= 0)
        {
          /* logits = (head + head_dist) / 2 */
          for (int64_t i = 0; i < (int64_t) B * K; i++)
            a->dlogits[i] *= 0.5f;
          vl_compute_linear_backward_params (vl_compute_grad_of (m, m->ix.hdist_w), vl_compute_grad_of (m, m->ix.hdist_b),
                                  a->dlogits, a->dist_feat, B, m->geo.width, K);
          if (below)
            vl_compute_linear_backward_input (a->ddist, a->dlogits, vl_pdata (m, m->ix.hdist_w), ACT_NONE,
                                   NULL, B, m->geo.width, K, FALSE, NULL);
        }
      vl_compute_linear_backward_params (vl_compute_grad_of (m, m->ix.head_w), vl_compute_grad_of (m, m->ix.head_b), a->dlogits,
                              hin, B, din, K);
      if (below)
        vl_compute_linear_backward_input (a->dhin, a->dlogits, vl_pdata (m, m->ix.head_w), ACT_NONE, NULL, B,
                               din, K, FALSE, NULL);
    }
  else
    {
      const int Hd = m->head_hidden;
      vl_compute_linear_backward_params (vl_compute_grad_of (m, m->ix.head2_w), vl_compute_grad_of (m, m->ix.head2_b), a->dlogits,
                              a->head_g, B, Hd, K);
      vl_compute_linear_backward_input (a->dhead, a->dlogits, vl_pdata (m, m->ix.head2_w), ACT_GELU,
                             a->head_h, B, Hd, K, FALSE, NULL);
      vl_compute_linear_backward_params (vl_compute_grad_of (m, m->ix.head_w), vl_compute_grad_of (m, m->ix.head_b), a->dhead, hin,
                              B, din, Hd);
      if (below)
        vl_compute_linear_backward_input (a->dhin, a->dhead, vl_pdata (m, m->ix.head_w), ACT_NONE, NULL, B,
                               din, Hd, FALSE, NULL);
    }
}

/* Pooling backward: spreads dpool (B,W) onto dtok (B,T,W) (which it zeroes first); with_dist
 * adds the distillation head's gradient (a->ddist) onto the DIST token's row. */
static void
backward_pool (VlModel *m, VlActs *a, const float *dpool, float *dtok, gboolean with_dist)
{
  const int B = a->B, W = m->geo.width, T = a->T, P = a->P;
  memset (dtok, 0, sizeof (float) * B * T * W);
  for (int b = 0; b < B; b++)
    {
      const float *dp = dpool + (int64_t) b * W;
      float *dt = dtok + (int64_t) b * T * W;
      const int *arg = a->argmax + (int64_t) b * W;
      switch (m->pool)
        {
        case VL_POOL_MAP:   /* not reached: backward_from_features runs vl_map_pool_backward */
          break;
        case VL_POOL_TOKEN:
          memcpy (dt, dp, sizeof (float) * W);
          break;
        case VL_POOL_AVG:
          for (int t = P; t < T; t++)
            for (int c = 0; c < W; c++)
              dt[(int64_t) t * W + c] = dp[c] / (float) (T - P);
          break;
        case VL_POOL_MAX:
          for (int c = 0; c < W; c++)
            dt[(int64_t) arg[c] * W + c] = dp[c];
          break;
        }
      if (with_dist && m->geo.dist_token && m->ix.hdist_w >= 0)
        for (int c = 0; c < W; c++)
          dt[W + c] += a->ddist[(int64_t) b * W + c];
    }
}

/* The checks every backward shares: a training forward, the same lock since. */
static gboolean
backward_ready (VlModel *m, GError **error)
{
  VlActs *a = m->acts;
  if (a == NULL || !a->valid_train)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "backward needs a forward pass made with VL_FORWARD_TRAIN");
      return FALSE;
    }
  if (vl_compute_lowest_trainable (m) != a->c0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "the layer groups changed since the forward pass; run it again");
      return FALSE;
    }
  return TRUE;
}

/* From d xs[depth] (in a->dx) down through the blocks to the lowest unlocked component. */
static gboolean
backward_blocks (VlModel *m, VlActs *a, GError **error)
{
  const int c0 = a->c0;
  for (int l = m->geo.depth - 1; l >= 0 && vl_comp_block (l) >= c0; l--)
    {
      if (vl_compute_cancelled (m, error))
        return FALSE;
      backward_block (m, a, l, c0 < vl_comp_block (l));
    }
  if (c0 == C_STEM)
    backward_stem (m, a);
  return TRUE;
}

/* From d tokens_final (B,T,W): the token norm (none with fc_norm), then the blocks. */
static gboolean
backward_from_tokens (VlModel *m, VlActs *a, const float *dtok, GError **error)
{
  const VlGeometry *g = &m->geo;
  const int64_t BTW = (int64_t) a->B * a->T * g->width;
  const gboolean below = a->c0 < C_NORM (m);
  if (g->fc_norm)
    {
      if (!below)
        return TRUE;
      memcpy (a->dx, dtok, sizeof (float) * BTW);
    }
  else
    {
      if (below)
        memset (a->dx, 0, sizeof (float) * BTW);
      if (a->c0 <= C_NORM (m))
        vl_compute_layernorm_backward (a, below ? a->dx : NULL, vl_compute_grad_of (m, m->ix.norm_w),
                            vl_compute_grad_of (m, m->ix.norm_b), dtok, a->xs[g->depth],
                            vl_pdata (m, m->ix.norm_w), a->lnf_mean, a->lnf_rstd,
                            (int64_t) a->B * a->T, g->width);
      if (!below)
        return TRUE;
    }
  return backward_blocks (m, a, error);
}

/* From d features (B,W): the final norm and the pooling (with_dist: plus the distillation
 * token's gradient from its head), then the blocks. */
static gboolean
backward_from_features (VlModel *m, VlActs *a, const float *dpooled, gboolean with_dist,
                        GError **error)
{
  const VlGeometry *g = &m->geo;
  const int B = a->B, W = g->width, T = a->T;
  if (a->c0 > C_NORM (m))
    return TRUE;
  gboolean below = a->c0 < C_NORM (m);
  float *nw_grad = vl_compute_grad_of (m, m->ix.norm_w), *nb_grad = vl_compute_grad_of (m, m->ix.norm_b);
  const float *nw = vl_pdata (m, m->ix.norm_w);
  if (g->fc_norm)
    {
      memset (a->dpooled_raw, 0, sizeof (float) * B * W);
      vl_compute_layernorm_backward (a, a->dpooled_raw, nw_grad, nb_grad, dpooled, a->pooled_raw, nw,
                          a->fc_mean, a->fc_rstd, B, W);
      if (!below)
        return TRUE;
      backward_pool (m, a, a->dpooled_raw, a->dx, with_dist);
    }
  else
    {
      if (m->pool == VL_POOL_MAP)
        {
          /* the attention pool's own parameters (their group may train alone), then the tokens'
           * gradient only when the norm or something below it trains */
          const gboolean need_tokens = below || nw_grad != NULL;
          vl_map_pool_backward (m, a, dpooled, need_tokens ? a->dtmp : NULL);
          if (!need_tokens)
            return TRUE;
        }
      else
        backward_pool (m, a, dpooled, a->dtmp, with_dist);
      if (below)
        memset (a->dx, 0, sizeof (float) * B * T * W);
      vl_compute_layernorm_backward (a, below ? a->dx : NULL, nw_grad, nb_grad, a->dtmp, a->xs[g->depth], nw,
                          a->lnf_mean, a->lnf_rstd, (int64_t) B * T, W);
      if (!below)
        return TRUE;
    }
  return backward_blocks (m, a, error);
}

/* From d embedding (B,E): OpenCLIP's projection, then the features. */
static gboolean
backward_from_embedding (VlModel *m, VlActs *a, const float *demb, gboolean with_dist,
                         GError **error)
{
  const VlGeometry *g = &m->geo;
  if (a->c0 > C_PROJ (m))
    return TRUE;
  vl_compute_linear_backward_params (vl_compute_grad_of (m, m->ix.proj), NULL, demb, a->pooled, a->B, g->width,
                          g->embed_dim);
  if (a->c0 >= C_PROJ (m))
    return TRUE;
  vl_compute_linear_backward_input (a->dpooled, demb, vl_pdata (m, m->ix.proj), ACT_NONE, NULL, a->B,
                         g->width, g->embed_dim, FALSE, NULL);
  return backward_from_features (m, a, a->dpooled, with_dist, error);
}

/* From d logits (in a->dlogits): the head, then what lies below it. */
static gboolean
backward_from_logits (VlModel *m, VlActs *a, GError **error)
{
  backward_head (m, a, a->c0 < C_HEAD (m));
  if (a->c0 >= C_HEAD (m))
    return TRUE;
  if (m->geo.embed_dim > 0)
    return backward_from_embedding (m, a, a->dhin, TRUE, error);
  return backward_from_features (m, a, a->dhin, TRUE, error);
}

gboolean
vl_model_backward (VlModel *m, const int *targets, float label_smoothing, double *loss_out,
                   GError **error)
{
  if (!backward_ready (m, error))
    return FALSE;
  if (m->head_kind == VL_HEAD_NONE)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "the model has no head to train");
      return FALSE;
    }
  VlActs *a = m->acts;
  const int B = a->B, K = m->num_classes;
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
  if (a->c0 < 0)
    return TRUE;
  vl_model_prepare_grads (m);
  return backward_from_logits (m, a, error);
}

gboolean
vl_model_backward_from (VlModel *m, VlGradAt where, const float *d_out, GError **error)
{
  if (!backward_ready (m, error))
    return FALSE;
  VlActs *a = m->acts;
  const VlGeometry *g = &m->geo;
  const int B = a->B;
  switch (where)
    {
    case VL_GRAD_LOGITS:
      if (m->head_kind == VL_HEAD_NONE)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "the model has no head: no logits");
          return FALSE;
        }
      break;
    case VL_GRAD_EMBEDDING:
      if (g->embed_dim == 0)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "the model has no projection: no embedding to start from");
          return FALSE;
        }
      break;
    case VL_GRAD_FEATURES:
      if (!a->pooled_valid || (g->embed_dim > 0 && a->from_features && a->c0 < C_PROJ (m)))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "the last forward started after the pooled features");
          return FALSE;
        }
      break;
    case VL_GRAD_TOKENS:
      if (a->from_features)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "the last forward started after the token grid (from cached features)");
          return FALSE;
        }
      break;
    default:
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "unknown gradient entry %d", (int) where);
      return FALSE;
    }
  if (a->c0 < 0)
    return TRUE;
  vl_model_prepare_grads (m);
  switch (where)
    {
    case VL_GRAD_LOGITS:
      memcpy (a->dlogits, d_out, sizeof (float) * B * m->num_classes);
      return backward_from_logits (m, a, error);
    case VL_GRAD_EMBEDDING:
      return backward_from_embedding (m, a, d_out, FALSE, error);
    case VL_GRAD_FEATURES:
      return backward_from_features (m, a, d_out, FALSE, error);
    case VL_GRAD_TOKENS:
    default:
      return backward_from_tokens (m, a, d_out, error);
    }
}

const float *
vl_model_tokens_after_block (VlModel *m, int block)
{
  VlActs *a = m->acts;
  if (a == NULL || !a->valid || a->from_features || block < 0 || block >= m->geo.depth)
    return NULL;
  return a->xs[block + 1];
}

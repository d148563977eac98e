/* vl-map-pool.c: multihead attention pooling ("MAP", SigLIP's image pooling): timm's
 * AttentionPoolLatent with one latent query, transformers' SiglipMultiheadAttentionPoolingHead,
 * big_vision's MAPHead. Over the N = T - P patch tokens x (the final norm's output):
 *
 *   q = W_q latent + b_q                        (W)    the same query for every image
 *   [k v] = x W_kv^T + b_kv                     (N, 2W)
 *   a_h = softmax (q_h k_h^T / sqrt (D))        (H, N) per head h of D = W / H channels
 *   y_h = a_h v_h;  z = W_o y + b_o             (W)
 *   out = z + fc2 (act (fc1 (LayerNorm (z))))   (W)    the features
 *
 * Its parameters are attn_pool.* (AP_LATENT … AP_FC2_B from VlIndex.ap), computed with the
 * final norm (component C_NORM) in a layer group of their own. */
#include "vl-compute-private.h"
#include "vl-kernels.h"
#include "vl-pool.h"

#include <math.h>
#include <string.h>

#define AP(which) vl_pdata (m, m->ix.ap + (which))
#define APG(which) vl_compute_grad_of (m, m->ix.ap + (which))

void
vl_map_pool_alloc (VlModel *m, VlActs *a)
{
  const VlGeometry *g = &m->geo;
  const int64_t W = g->width, B = a->B, N = a->T - a->P, M = g->mlp;
  a->mp_q = FALLOC (a, W);
  a->mp_x = a->P > 0 ? FALLOC (a, B * N * W) : NULL;
  a->mp_kv = FALLOC (a, B * N * 2 * W);
  a->mp_att = FALLOC (a, B * g->heads * N);
  a->mp_y = FALLOC (a, B * W);
  a->mp_z = FALLOC (a, B * W);
  a->mp_ln = FALLOC (a, B * W);
  a->mp_mean = FALLOC (a, B);
  a->mp_rstd = FALLOC (a, B);
  a->mp_h = FALLOC (a, B * M);
  a->mp_g = FALLOC (a, B * M);
  if (a->train)
    {
      a->mp_dkv = FALLOC (a, B * N * 2 * W);
      a->mp_dz = FALLOC (a, B * W);
      a->mp_dy = FALLOC (a, B * W);
      a->mp_dln = FALLOC (a, B * W);
      a->mp_dh = FALLOC (a, B * M);
      a->mp_dq = FALLOC (a, W);
      a->mp_dq_part = FALLOC (a, B * W);
      a->mp_dx = a->P > 0 ? FALLOC (a, B * N * W) : NULL;
    }
}

/* The attention of one image (all heads): att (H, N), y (W). */
typedef struct {
  const VlModel *m;
  VlActs *a;
} MapJob;

static void
attend_image (void *data, int64_t b, int worker)
{
  const MapJob *j = data;
  const VlGeometry *g = &j->m->geo;
  VlActs *a = j->a;
  const int W = g->width, D = g->head_dim, N = a->T - a->P;
  const float scale = 1.0f / sqrtf ((float) D);
  const float *kv = a->mp_kv + b * N * 2 * W;
  float *y = a->mp_y + b * W;
  for (int h = 0; h < g->heads; h++)
    {
      float *att = a->mp_att + (b * g->heads + h) * N;
      const float *q = a->mp_q + h * D;
      for (int n = 0; n < N; n++)
        {
          const float *k = kv + (int64_t) n * 2 * W + h * D;
          float s = 0.0f;
          for (int d = 0; d < D; d++)
            s += q[d] * k[d];
          att[n] = s * scale;
        }
      vl_softmax_rows (att, 1, N);
      float *yh = y + h * D;
      memset (yh, 0, sizeof (float) * D);
      for (int n = 0; n < N; n++)
        {
          const float *v = kv + (int64_t) n * 2 * W + W + h * D;
          for (int d = 0; d < D; d++)
            yh[d] += att[n] * v[d];
        }
    }
}

/* The patch tokens of tokens (B,T,W) as one (B N, W) matrix: itself without prefix tokens. */
static const float *
patch_rows (VlActs *a, const float *tokens, int W)
{
  const int N = a->T - a->P;
  if (a->P == 0)
    return tokens;
  for (int b = 0; b < a->B; b++)
    memcpy (a->mp_x + (int64_t) b * N * W, tokens + ((int64_t) b * a->T + a->P) * W,
            sizeof (float) * N * W);
  return a->mp_x;
}

void
vl_map_pool_forward (VlModel *m, VlActs *a, const float *tokens, float *out)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, B = a->B, N = a->T - a->P;
  const float *x = patch_rows (a, tokens, W);
  vl_compute_linear_forward (a->mp_q, ACT_NONE, NULL, AP (AP_LATENT), AP (AP_Q_W), AP (AP_Q_B),
                             NULL, 1, W, W);
  vl_compute_linear_forward (a->mp_kv, ACT_NONE, NULL, x, AP (AP_KV_W), AP (AP_KV_B), NULL,
                             (int64_t) B * N, W, 2 * W);
  MapJob j = { m, a };
  vl_parallel_for (B, attend_image, &j);
  vl_compute_linear_forward (a->mp_z, ACT_NONE, NULL, a->mp_y, AP (AP_PROJ_W), AP (AP_PROJ_B),
                             NULL, B, W, W);
  vl_compute_layernorm_forward (a->mp_ln, a->mp_mean, a->mp_rstd, a->mp_z, AP (AP_NORM_W),
                                AP (AP_NORM_B), B, W, g->eps);
  vl_compute_linear_forward (a->mp_h, vl_compute_model_act (m), a->mp_g, a->mp_ln, AP (AP_FC1_W),
                             AP (AP_FC1_B), NULL, B, W, g->mlp);
  vl_compute_linear_forward (out, ACT_NONE, NULL, a->mp_g, AP (AP_FC2_W), AP (AP_FC2_B), a->mp_z,
                             B, g->mlp, W);
}

/* Through the attention of one image: dy (W) -> d kv (N, 2W) and this image's share of d q
 * (mp_dq_part's row b). */
static void
attend_image_backward (void *data, int64_t b, int worker)
{
  const MapJob *j = data;
  const VlGeometry *g = &j->m->geo;
  VlActs *a = j->a;
  const int W = g->width, D = g->head_dim, N = a->T - a->P;
  const float scale = 1.0f / sqrtf ((float) D);
  const float *kv = a->mp_kv + b * N * 2 * W, *dy = a->mp_dy + b * W;
  float *dkv = a->mp_dkv + b * N * 2 * W, *dq = a->mp_dq_part + b * W;
  for (int h = 0; h < g->heads; h++)
    {
      const float *att = a->mp_att + (b * g->heads + h) * N;
      const float *q = a->mp_q + h * D, *dyh = dy + h * D;
      /* d a_n = dy_h . v_n; d v_n = a_n dy_h; d s = a (d a - sum (a d a)) */
      float dot = 0.0f;
      for (int n = 0; n < N; n++)
        {
          const float *v = kv + (int64_t) n * 2 * W + W + h * D;
          float *dv = dkv + (int64_t) n * 2 * W + W + h * D;
          float da = 0.0f;
          for (int d = 0; d < D; d++)
            {
              da += dyh[d] * v[d];
              dv[d] = att[n] * dyh[d];
            }
          /* d a_n kept in d k's first channel until the softmax's sum is known */
          dkv[(int64_t) n * 2 * W + h * D] = da;
          dot += att[n] * da;
        }
      float *dqh = dq + h * D;
      memset (dqh, 0, sizeof (float) * D);
      for (int n = 0; n < N; n++)
        {
          float *dk = dkv + (int64_t) n * 2 * W + h * D;
          const float *k = kv + (int64_t) n * 2 * W + h * D;
          const float ds = att[n] * (dk[0] - dot) * scale;
          for (int d = 0; d < D; d++)
            {
              dqh[d] += ds * k[d];
              dk[d] = ds * q[d];
            }
        }
    }
}

void
vl_map_pool_backward (VlModel *m, VlActs *a, const float *dout, float *dtok)
{
  const VlGeometry *g = &m->geo;
  const int W = g->width, B = a->B, N = a->T - a->P, M = g->mlp;
  const Act act = vl_compute_model_act (m);
  const gboolean trains = m->trainable[vl_param (m, m->ix.ap)->group];
  if (!trains && dtok == NULL)
    return;
  /* out = z + fc2 (act (fc1 (ln (z)))) */
  vl_compute_linear_backward_params (APG (AP_FC2_W), APG (AP_FC2_B), dout, a->mp_g, B, M, W);
  vl_compute_linear_backward_input (a->mp_dh, dout, AP (AP_FC2_W), act, a->mp_h, B, M, W, FALSE,
                                    NULL);
  vl_compute_linear_backward_params (APG (AP_FC1_W), APG (AP_FC1_B), a->mp_dh, a->mp_ln, B, W, M);
  vl_compute_linear_backward_input (a->mp_dln, a->mp_dh, AP (AP_FC1_W), ACT_NONE, NULL, B, W, M,
                                    FALSE, NULL);
  memcpy (a->mp_dz, dout, sizeof (float) * B * W);
  vl_compute_layernorm_backward (a, a->mp_dz, APG (AP_NORM_W), APG (AP_NORM_B), a->mp_dln,
                                 a->mp_z, AP (AP_NORM_W), a->mp_mean, a->mp_rstd, B, W);
  /* z = W_o y + b_o */
  vl_compute_linear_backward_params (APG (AP_PROJ_W), APG (AP_PROJ_B), a->mp_dz, a->mp_y, B, W, W);
  vl_compute_linear_backward_input (a->mp_dy, a->mp_dz, AP (AP_PROJ_W), ACT_NONE, NULL, B, W, W,
                                    FALSE, NULL);
  /* the attention: d kv per image, d q summed over the images in order (the same rounding on
   * every run) */
  MapJob j = { m, a };
  vl_parallel_for (B, attend_image_backward, &j);
  memset (a->mp_dq, 0, sizeof (float) * W);
  vl_compute_colsum (a->mp_dq, a->mp_dq_part, NULL, B, W);
  /* [k v] = x W_kv^T + b_kv, x the final norm's output (gathered into mp_x with prefix tokens) */
  if (APG (AP_KV_W))
    vl_compute_linear_backward_params_rows (a, APG (AP_KV_W), APG (AP_KV_B), a->mp_dkv,
                                            a->P > 0 ? a->mp_x : a->lnf, (int64_t) B * N, W,
                                            2 * W);
  /* q = W_q latent + b_q: d W_q = d q latent^T, d b_q = d q, d latent = W_q^T d q */
  vl_compute_linear_backward_params (APG (AP_Q_W), APG (AP_Q_B), a->mp_dq, AP (AP_LATENT), 1, W, W);
  if (APG (AP_LATENT))
    vl_compute_linear_backward_input (APG (AP_LATENT), a->mp_dq, AP (AP_Q_W), ACT_NONE, NULL, 1, W,
                                      W, FALSE, NULL);
  if (dtok == NULL)
    return;
  float *dx = a->P > 0 ? a->mp_dx : dtok;
  vl_compute_linear_backward_input (dx, a->mp_dkv, AP (AP_KV_W), ACT_NONE, NULL, (int64_t) B * N,
                                    W, 2 * W, FALSE, NULL);
  if (a->P > 0)
    for (int b = 0; b < B; b++)
      {
        float *dt = dtok + (int64_t) b * a->T * W;
        memset (dt, 0, sizeof (float) * a->P * W);
        memcpy (dt + (int64_t) a->P * W, a->mp_dx + (int64_t) b * N * W, sizeof (float) * N * W);
      }
}

const float *
vl_model_pool_attention (VlModel *m)
{
  VlActs *a = m->acts;
  /* a forward from cached pooled features ran no pool: its maps are an earlier batch's */
  return a && a->valid && !a->from_features && a->mp_valid ? a->mp_att : NULL;
}

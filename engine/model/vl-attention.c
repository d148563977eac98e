/* vl-attention.c: attention rows and rollout (see vl-attention.h). */
#include "vl-attention.h"

#include <string.h>

VlAttnShape
vl_model_attention_shape (VlModel *m)
{
  const VlGeometry *g = vl_model_geometry (m);
  return (VlAttnShape) { .depth = g->depth, .heads = g->heads, .T = vl_model_n_tokens_last (m),
                         .n_prefix = g->n_prefix, .has_cls = g->class_token };
}

int64_t
vl_model_attention_numel (VlModel *m)
{
  const VlAttnShape s = vl_model_attention_shape (m);
  return (int64_t) s.depth * s.heads * s.T * s.T;
}

gboolean
vl_model_attention_copy (VlModel *m, int b, float *out)
{
  const VlAttnShape s = vl_model_attention_shape (m);
  const gsize per_block = (gsize) s.heads * s.T * s.T;
  if (b < 0 || b >= vl_model_batch (m))
    return FALSE;
  for (int l = 0; l < s.depth; l++)
    if (vl_model_attention (m, l) == NULL)
      return FALSE;
  for (int l = 0; l < s.depth; l++)
    memcpy (out + l * per_block, vl_model_attention (m, l) + (gsize) b * per_block,
            sizeof (float) * per_block);
  return TRUE;
}

float *
vl_model_pool_attention_dup (VlModel *m, int b)
{
  const float *pool = vl_model_pool_attention (m);
  if (pool == NULL || b < 0 || b >= vl_model_batch (m))
    return NULL;
  const gsize per = (gsize) vl_model_geometry (m)->heads *
                    (vl_model_n_tokens_last (m) - vl_model_geometry (m)->n_prefix);
  return g_memdup2 (pool + b * per, sizeof (float) * per);
}

void
vl_attention_row (const float *attn, const VlAttnShape *s, int block, int h0, int h1, int query,
                  float *out)
{
  const int T = s->T, P = s->n_prefix, NP = T - P;
  const gsize TT = (gsize) T * T;
  memset (out, 0, sizeof (float) * NP);
  int r0, r1;
  if (query >= 0)
    r0 = P + query, r1 = r0 + 1;
  else if (s->has_cls)
    r0 = 0, r1 = 1;
  else
    r0 = P, r1 = T;
  for (int h = h0; h < h1; h++)
    {
      const float *A = attn + ((gsize) block * s->heads + h) * TT;
      for (int r = r0; r < r1; r++)
        {
          const float *row = A + (gsize) r * T + P;
          for (int c = 0; c < NP; c++)
            out[c] += row[c];
        }
    }
  float scale = 1.0f / (float) ((h1 - h0) * (r1 - r0));
  for (int c = 0; c < NP; c++)
    out[c] *= scale;
}

void
vl_attention_rollout_blocks (const float *const *blocks, const VlAttnShape *s, int query,
                             float *out, float *scratch)
{
  const int T = s->T, P = s->n_prefix, H = s->heads, NP = T - P;
  const gsize TT = (gsize) T * T;
  float *v = scratch, *w = v + T, *mean = w + T;
  memset (v, 0, sizeof (float) * T);
  if (query >= 0)
    v[P + query] = 1.0f;
  else if (s->has_cls)
    v[0] = 1.0f;
  else
    for (int r = P; r < T; r++)
      v[r] = 1.0f / (float) NP;
  for (int l = s->depth - 1; l >= 0; l--)
    {
      memset (w, 0, sizeof (float) * T);
      const float *Al = blocks[l];
      for (int r = 0; r < T; r++)
        {
          if (v[r] == 0.0f)
            continue;
          /* the head mean of row r, plus the identity, normalised */
          float sum = 0.f;
          for (int c = 0; c < T; c++)
            {
              float m = 0.f;
              for (int h = 0; h < H; h++)
                m += Al[(gsize) h * TT + (gsize) r * T + c];
              mean[c] = m / (float) H;
              sum += mean[c];
            }
          mean[r] += 1.0f;
          sum += 1.0f;
          float k = v[r] / sum;
          for (int c = 0; c < T; c++)
            w[c] += k * mean[c];
        }
      memcpy (v, w, sizeof (float) * T);
    }
  memcpy (out, v + P, sizeof (float) * NP);
}

void
vl_attention_rollout (const float *attn, const VlAttnShape *s, int query, float *out,
                      float *scratch)
{
  const float **blocks = g_newa (const float *, MAX (s->depth, 1));
  for (int l = 0; l < s->depth; l++)
    blocks[l] = attn + (gsize) l * s->heads * s->T * s->T;
  vl_attention_rollout_blocks (blocks, s, query, out, scratch);
}

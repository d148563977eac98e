/* vl-train-probes.c: the probe images of a training run and their attention under the model as
 * it is now (vl-train-probes.h). */
#include "vl-train-probes.h"
#include "vl-attention.h"

#include <string.h>

void
vl_probe_set_choose (VlProbeSet *ps, VlDataset *ds, const VlPreprocess *pp, int n_probes,
                     int n_classes)
{
  const int n_val = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  const int n = MIN (n_probes, n_val);
  ps->channels = pp->channels;
  ps->size = pp->size;
  if (n <= 0)
    return;
  /* the first validation image of each class, then the second of each, ... */
  g_autofree int *picked = g_new (int, n);
  int count = 0;
  for (int round = 0; count < n && round < n_val; round++)
    for (int k = 0; k < n_classes && count < n; k++)
      {
        int seen = 0;
        for (int i = 0; i < n_val; i++)
          if (vl_dataset_label (ds, VL_SPLIT_VAL, i) == k && seen++ == round)
            {
              picked[count++] = i;
              break;
            }
      }
  const int64_t per = (int64_t) pp->channels * pp->size * pp->size;
  ps->px = g_new (float, per * (count + 1));   /* + the user's probe image */
  ps->labels = g_new (int, MAX (count, 1));
  ps->names = g_new0 (char *, count + 1);
  int ok = 0;
  for (int j = 0; j < count; j++)
    {
      const int i = picked[j];
      if (!vl_dataset_load (ds, VL_SPLIT_VAL, i, pp, VL_AUGMENT_NONE, 0, ps->px + per * ok, NULL))
        continue;
      ps->labels[ok] = vl_dataset_label (ds, VL_SPLIT_VAL, i);
      ps->names[ok] = g_strdup (vl_dataset_item_name (ds, VL_SPLIT_VAL, i));
      ok++;
    }
  ps->n = ok;
}

gboolean
vl_probe_set_take_user (VlProbeSet *ps, float *px, int c, int h, int w, int patch,
                        guint64 serial, GError **error)
{
  if (px && (c != ps->channels || h % patch != 0 || w % patch != 0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%d channel%s of %dx%d pixels; the model takes %d channel%s, sides that are "
                   "multiples of %d", c, c == 1 ? "" : "s", w, h, ps->channels,
                   ps->channels == 1 ? "" : "s", patch);
      g_free (px);
      return FALSE;
    }
  g_free (ps->user_px);
  ps->user_px = px;
  ps->user_c = c;
  ps->user_h = h;
  ps->user_w = w;
  ps->user_probe = px ? serial : 0;
  return TRUE;
}

gboolean
vl_probe_set_any (const VlProbeSet *ps)
{
  return ps->n > 0 || ps->user_px != NULL;
}

/* A forward of B images (C, H, W) with every block's attention kept, and their rollout
 * (B, H / patch * W / patch) into *roll. */
static gboolean
probe_forward (VlModel *m, const float *px, int B, int H, int W, float **roll, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  *roll = g_new (float, (gsize) B * (H / g->patch) * (W / g->patch));
  if (vl_model_forward (m, px, B, H, W, VL_FORWARD_INFER | VL_FORWARD_CAPTURE_ATTN, error) &&
      vl_model_rollout (m, *roll, error))
    return TRUE;
  g_clear_pointer (roll, g_free);
  return FALSE;
}

/* The top class of image b of the last forward; 0 without image-level logits (segmentation,
 * detection). */
static int
top_class (VlModel *m, int K, int b)
{
  if (vl_model_logits (m) == NULL)
    return 0;
  const float *logits = vl_model_logits (m) + (gsize) b * K;
  int best = 0;
  for (int k = 1; k < K; k++)
    if (logits[k] > logits[best])
      best = k;
  return best;
}

/* The user's probe, image b of the last forward (rollout: its map), into ev. */
static void
user_probe_into (const VlProbeSet *ps, VlModel *m, int K, VlTrainEvent *ev, int b,
                 const float *rollout)
{
  const VlGeometry *g = vl_model_geometry (m);
  const int T = vl_model_n_tokens_last (m);
  const gsize per_block = (gsize) g->heads * T * T;
  ev->user_probe = ps->user_probe;
  ev->user_grid_h = ps->user_h / g->patch;
  ev->user_grid_w = ps->user_w / g->patch;
  ev->user_depth = g->depth;
  ev->user_heads = g->heads;
  ev->user_T = T;
  ev->user_attn = g_new (float, per_block * g->depth);   /* (depth, heads, T, T) */
  vl_model_attention_copy (m, b, ev->user_attn);
  ev->user_rollout = g_memdup2 (rollout, sizeof (float) * ev->user_grid_h * ev->user_grid_w);
  ev->user_pool = vl_model_pool_attention_dup (m, b);
  ev->user_predicted = top_class (m, K, b);
}

gboolean
vl_probe_set_run (VlProbeSet *ps, VlModel *m, int K, VlTrainEvent *ev, gboolean *any_done,
                  GError **error)
{
  *any_done = FALSE;
  const gboolean user = ps->user_px != NULL;
  const int S = ps->size;
  const gsize per = (gsize) ps->channels * S * S;
  const gboolean together = user && ps->n > 0 && ps->user_h == S && ps->user_w == S;
  const int gh = S / vl_model_geometry (m)->patch, P = gh * gh;
  if (ps->n > 0)
    {
      const int B = ps->n + (together ? 1 : 0);
      if (together)
        memcpy (ps->px + per * ps->n, ps->user_px, sizeof (float) * per);
      g_autofree float *roll = NULL;
      if (!probe_forward (m, ps->px, B, S, S, &roll, error))
        return FALSE;
      ev->n_probes = ps->n;
      ev->grid_h = ev->grid_w = gh;
      ev->rollout = g_memdup2 (roll, sizeof (float) * ps->n * P);
      if (vl_model_pool_attention (m))
        {
          ev->pool_heads = vl_model_geometry (m)->heads;
          ev->pool = g_memdup2 (vl_model_pool_attention (m),
                                sizeof (float) * ps->n * ev->pool_heads * P);
        }
      ev->probe_labels = g_memdup2 (ps->labels, sizeof (int) * ps->n);
      ev->probe_predicted = g_new (int, ps->n);
      ev->probe_names = g_strdupv (ps->names);
      for (int b = 0; b < ps->n; b++)
        ev->probe_predicted[b] = top_class (m, K, b);
      if (together)
        user_probe_into (ps, m, K, ev, ps->n, roll + (gsize) ps->n * P);
      *any_done = TRUE;
    }
  if (user && !together)
    {
      g_autofree float *roll = NULL;
      if (!probe_forward (m, ps->user_px, 1, ps->user_h, ps->user_w, &roll, error))
        return FALSE;
      user_probe_into (ps, m, K, ev, 0, roll);
      *any_done = TRUE;
    }
  return TRUE;
}

void
vl_probe_set_clear (VlProbeSet *ps)
{
  g_free (ps->px);
  g_free (ps->labels);
  g_strfreev (ps->names);
  g_free (ps->user_px);
  memset (ps, 0, sizeof *ps);
}

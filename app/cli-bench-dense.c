/* cli-bench-dense.c: `vitlab-cli bench --task segment|detect`: one training step of a seg head
 * (vl-seg-head.h) or of the FCOS head (vl-det-head.h) over the model's final-norm token grid,
 * as the trainer's seg_train_step and det_train_step run it without a feature cache (the frozen
 * groups run at every step), on synthetic masks or boxes so that no dataset is needed. Its
 * PyTorch twin is `bench/torch_bench.py step --task segment|detect` (bench/seg_ref.py's
 * Segmenter and head, bench/det_ref.py's torchvision FCOS). */
#include <glib/gi18n.h>
#include <string.h>

#include "cli-commands.h"
#include "vl-det-head.h"
#include "vl-seg-head.h"
#include "vl-task.h"

struct _CliDenseBench {
  VlModel   *m;            /* not owned */
  VlSegHead *seg;
  VlDetHead *det;
  int        K, S, B, T, gh, gw, n_prefix, patch;
  gboolean   model_trains;
  uint8_t   *masks;        /* segment: (B, S, S) */
  float     *dz;           /* segment: (B, S, S, K) */
  float     *dtok;         /* (B, T, W) when the model trains */
  float     *tok_cache;    /* (B, T, W): the frozen model's tokens, with --cached */
  float     *boxes;        /* detect: (B, 2, 4) */
  int       *labels;       /* detect: (B, 2) */
  VlFcosTarget *tg;        /* detect: (B) */
};

/* Synthetic targets, the same formulas as torch_bench.py's dense_targets: masks of 16-pixel
 * squares cycling through the K classes with every 97th pixel ignored (255); one or two boxes per
 * image (a quarter to a half of the side, the object classes in turn). */
static void
make_targets (CliDenseBench *d)
{
  const int S = d->S;
  if (d->seg)
    for (int b = 0; b < d->B; b++)
      for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
          {
            int64_t i = ((int64_t) b * S + y) * S + x;
            d->masks[i] = (uint8_t) (((y * S + x) % 97 == 0) ? 255 : (x / 16 + y / 16 + b) % d->K);
          }
  else
    for (int b = 0; b < d->B; b++)
      {
        int n = 1 + b % 2;
        for (int j = 0; j < n; j++)
          {
            float *bx = d->boxes + (b * 2 + j) * 4;
            float x0 = S * (0.05f + 0.04f * ((b * 7 + j * 13) % 10));
            float y0 = S * (0.05f + 0.04f * ((b * 5 + j * 11) % 10));
            float w = S * (0.25f + 0.05f * ((b + j) % 5)), h = S * (0.25f + 0.05f * ((b * 3 + j) % 5));
            bx[0] = x0, bx[1] = y0, bx[2] = MIN (x0 + w, S - 1.0f), bx[3] = MIN (y0 + h, S - 1.0f);
            d->labels[b * 2 + j] = 1 + (b + j) % (d->K - 1);
          }
        d->tg[b] = (VlFcosTarget) { d->boxes + b * 8, d->labels + b * 2, n };
      }
}

CliDenseBench *
cli_dense_bench_new (VlModel *m, VlTaskKind task, VlSegHeadKind kind, int K, int unlock, int S,
                     int B, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  if (K < 2 || K > 255)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, _("--classes %d: expected 2 to 255"), K);
      return NULL;
    }
  CliDenseBench *d = g_new0 (CliDenseBench, 1);
  d->m = m;
  d->K = K, d->S = S, d->B = B, d->patch = g->patch;
  d->gh = d->gw = S / g->patch;
  d->n_prefix = g->n_prefix;
  d->T = g->n_prefix + d->gh * d->gw;
  /* the dense head is the last layer group: unlock N trains it and the model's last N - 1 */
  vl_model_set_head (m, VL_HEAD_NONE, 0, 0, 1);
  vl_model_lock (m, unlock < 1 ? 0 : unlock - 1);
  d->model_trains = vl_model_n_trainable (m) > 0;
  if (task == VL_TASK_SEGMENT)
    d->seg = vl_seg_head_new (kind, g->width, K, 1);
  else
    d->det = vl_det_head_new (g->width, K, 1);
  if (d->seg == NULL && d->det == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   _("no %s head for tokens of width %d and %d classes"),
                   task == VL_TASK_SEGMENT ? vl_seg_head_kind_name (kind) : "fcos", g->width, K);
      cli_dense_bench_free (d);
      return NULL;
    }
  if (d->seg)
    {
      d->masks = g_new (uint8_t, (gsize) B * S * S);
      d->dz = g_new (float, (gsize) B * S * S * K);
    }
  else
    {
      d->boxes = g_new0 (float, (gsize) B * 8);
      d->labels = g_new0 (int, (gsize) B * 2);
      d->tg = g_new (VlFcosTarget, B);
    }
  if (d->model_trains)
    d->dtok = g_new (float, (gsize) B * d->T * g->width);
  make_targets (d);
  return d;
}

void
cli_dense_bench_free (CliDenseBench *d)
{
  if (d == NULL)
    return;
  vl_seg_head_free (d->seg);
  vl_det_head_free (d->det);
  g_free (d->masks);
  g_free (d->dz);
  g_free (d->dtok);
  g_free (d->tok_cache);
  g_free (d->boxes);
  g_free (d->labels);
  g_free (d->tg);
  g_free (d);
}

gboolean
cli_dense_bench_step (CliDenseBench *d, const float *x, gboolean train, const VlAdamW *opt,
                      gint64 *t_forward, gint64 *t_backward, double *loss, GError **error)
{
  VlModel *m = d->m;
  VlForwardFlags flags = train && d->model_trains ? VL_FORWARD_TRAIN : VL_FORWARD_INFER;
  if (d->tok_cache == NULL && !vl_model_forward (m, x, d->B, d->S, d->S, flags, error))
    return FALSE;
  const float *tok = d->tok_cache ? d->tok_cache : vl_model_tokens_final (m);
  const float *z = NULL;
  if (d->seg)
    z = vl_seg_head_forward (d->seg, tok, d->B, d->T, d->n_prefix, d->gh, d->gw, d->S, d->S);
  else
    vl_det_head_forward (d->det, tok, d->B, d->T, d->n_prefix, d->gh, d->gw, d->patch);
  *t_forward = *t_backward = g_get_monotonic_time ();
  *loss = 0;
  if (!train)
    return TRUE;
  if (d->seg)
    {
      *loss = vl_seg_batch_loss (d->dz, z, d->masks, d->B, (int64_t) d->S * d->S, d->K);
      vl_seg_head_backward (d->seg, d->dz, d->dtok);
    }
  else
    {
      *loss = vl_det_head_loss (d->det, d->tg, NULL);
      vl_det_head_backward (d->det, d->dtok);
    }
  if (d->model_trains && !vl_model_backward_from (m, VL_GRAD_TOKENS, d->dtok, error))
    return FALSE;
  *t_backward = g_get_monotonic_time ();
  if (d->model_trains)
    vl_model_adamw_step (m, opt);
  int n;
  VlHeadParam *hp = d->seg ? vl_seg_head_params (d->seg, &n) : vl_det_head_params (d->det, &n);
  vl_head_params_adamw (hp, n, opt, 1.0f);
  return TRUE;
}

gboolean
cli_dense_bench_cache (CliDenseBench *d, const float *x, GError **error)
{
  if (d->model_trains)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   _("--cached: only the head may train (--mode unlock1)"));
      return FALSE;
    }
  if (!vl_model_forward (d->m, x, d->B, d->S, d->S, VL_FORWARD_INFER, error))
    return FALSE;
  gsize n = (gsize) d->B * d->T * vl_model_geometry (d->m)->width;
  d->tok_cache = g_memdup2 (vl_model_tokens_final (d->m), n * sizeof (float));
  return TRUE;
}

gboolean
cli_dense_bench_cached (CliDenseBench *d)
{
  return d->tok_cache != NULL;
}

const char *
cli_dense_bench_describe (CliDenseBench *d)
{
  return d->seg ? vl_seg_head_kind_name (vl_seg_head_kind (d->seg)) : "fcos";
}

/* vl-task.c: the tasks' losses and metrics, and evaluation (see vl-task.h). */
#include "vl-task.h"
#include "vl-loss.h"
#include "vl-conv.h"
#include "vl-pool.h"
#include "vl-error.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ names */

static const char *const task_names[] = { "classify", "regress", "segment", "detect" };
static const char *const reg_loss_names[] = { "mse", "smooth-l1" };

const char *
vl_task_name (VlTaskKind kind)
{
  return (guint) kind < G_N_ELEMENTS (task_names) ? task_names[kind] : "?";
}

gboolean
vl_task_from_string (const char *s, VlTaskKind *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (task_names); i++)
    if (g_strcmp0 (s, task_names[i]) == 0)
      {
        *out = (VlTaskKind) i;
        return TRUE;
      }
  if (g_strcmp0 (s, "classification") == 0 || g_strcmp0 (s, "regression") == 0)
    {
      *out = s[0] == 'c' ? VL_TASK_CLASSIFY : VL_TASK_REGRESS;
      return TRUE;
    }
  if (g_strcmp0 (s, "segmentation") == 0 || g_strcmp0 (s, "detection") == 0)
    {
      *out = s[0] == 's' ? VL_TASK_SEGMENT : VL_TASK_DETECT;
      return TRUE;
    }
  return FALSE;
}

const char *
vl_reg_loss_name (VlRegLoss loss)
{
  return (guint) loss < G_N_ELEMENTS (reg_loss_names) ? reg_loss_names[loss] : "?";
}

gboolean
vl_reg_loss_from_string (const char *s, VlRegLoss *out)
{
  for (guint i = 0; i < G_N_ELEMENTS (reg_loss_names); i++)
    if (g_strcmp0 (s, reg_loss_names[i]) == 0)
      {
        *out = (VlRegLoss) i;
        return TRUE;
      }
  return FALSE;
}

/* ------------------------------------------------------------------ losses */

/* The targets standardised: (value - mean) / std, into z (B, N). */
static void
standardize (const VlTaskSpec *t, const float *values, int B, float *z)
{
  const int N = t->n_outputs;
  for (int b = 0; b < B; b++)
    for (int j = 0; j < N; j++)
      z[(gsize) b * N + j] = (values[(gsize) b * N + j] - t->mean[j]) / t->std[j];
}

double
vl_task_loss (const VlTaskSpec *t, const float *out, const int *labels, const float *values,
              int B, float *dout)
{
  if (t->kind == VL_TASK_CLASSIFY)
    return vl_loss_cross_entropy (dout, out, labels, B, t->n_outputs, t->label_smoothing,
                                  VL_NO_IGNORE);
  const int64_t n = (int64_t) B * t->n_outputs;
  g_autofree float *z = g_new (float, MAX (n, 1));
  standardize (t, values, B, z);
  return t->reg_loss == VL_REG_LOSS_SMOOTH_L1 ? vl_loss_smooth_l1 (dout, out, z, n, 1.0f)
                                              : vl_loss_mse (dout, out, z, n);
}

void
vl_task_target_stats (VlDataset *ds, float *mean, float *std)
{
  const int N = vl_dataset_n_values (ds), n = vl_dataset_n_items (ds, VL_SPLIT_TRAIN);
  for (int j = 0; j < N; j++)
    {
      double s = 0.0, s2 = 0.0;
      for (int i = 0; i < n; i++)
        s += vl_dataset_values (ds, VL_SPLIT_TRAIN, i)[j];
      double mu = n ? s / n : 0.0;
      for (int i = 0; i < n; i++)
        {
          double d = vl_dataset_values (ds, VL_SPLIT_TRAIN, i)[j] - mu;
          s2 += d * d;
        }
      double sd = n ? sqrt (s2 / n) : 0.0;
      mean[j] = (float) mu;
      std[j] = sd > 1e-12 ? (float) sd : 1.0f;
    }
}

void
vl_task_unstandardize (const VlTaskSpec *t, const float *out, float *values)
{
  for (int j = 0; j < t->n_outputs; j++)
    values[j] = out[j] * t->std[j] + t->mean[j];
}

/* ------------------------------------------------------------------ regression metrics */

void
vl_regress_result_begin (VlRegressResult *r, int n_values)
{
  memset (r, 0, sizeof *r);
  r->n_values = n_values;
  r->mae = g_new0 (double, n_values);
  r->rmse = g_new0 (double, n_values);
  r->r2 = g_new0 (double, n_values);
  r->s_abs = g_new0 (double, n_values);
  r->s_sq = g_new0 (double, n_values);
  r->s_y = g_new0 (double, n_values);
  r->s_y2 = g_new0 (double, n_values);
}

void
vl_regress_result_add (VlRegressResult *r, const VlTaskSpec *t, const float *out,
                       const float *truth, const int *items, int B)
{
  const int N = r->n_values;
  if (r->n + B > r->cap)
    {
      r->cap = MAX (2 * r->cap, r->n + B);
      r->pred = g_renew (float, r->pred, (gsize) r->cap * N);
      r->truth = g_renew (float, r->truth, (gsize) r->cap * N);
      r->items = g_renew (int, r->items, r->cap);
    }
  r->loss += vl_task_loss (t, out, NULL, truth, B, NULL) * B;
  for (int b = 0; b < B; b++)
    {
      float *p = r->pred + (gsize) r->n * N, *y = r->truth + (gsize) r->n * N;
      vl_task_unstandardize (t, out + (gsize) b * N, p);
      memcpy (y, truth + (gsize) b * N, sizeof (float) * N);
      r->items[r->n] = items ? items[b] : (int) r->n;
      for (int j = 0; j < N; j++)
        {
          double e = (double) p[j] - y[j];
          r->s_abs[j] += fabs (e);
          r->s_sq[j] += e * e;
          r->s_y[j] += y[j];
          r->s_y2[j] += (double) y[j] * y[j];
        }
      r->n++;
    }
}

void
vl_regress_result_end (VlRegressResult *r)
{
  const int N = r->n_values;
  const double n = (double) r->n;
  r->loss = r->n ? r->loss / n : NAN;
  r->mae_mean = r->rmse_mean = r->r2_mean = 0.0;
  for (int j = 0; j < N; j++)
    {
      /* R² = 1 - SS_res / SS_tot, SS_tot about the evaluated split's own mean (scikit-learn's
       * r2_score); NAN when the targets do not vary */
      double ss_tot = 0.0;
      if (r->n)
        {
          double mu = r->s_y[j] / n;
          for (int64_t i = 0; i < r->n; i++)
            {
              double d = r->truth[(gsize) i * N + j] - mu;
              ss_tot += d * d;
            }
        }
      r->mae[j] = r->n ? r->s_abs[j] / n : NAN;
      r->rmse[j] = r->n ? sqrt (r->s_sq[j] / n) : NAN;
      r->r2[j] = ss_tot > 0 ? 1.0 - r->s_sq[j] / ss_tot : NAN;
      r->mae_mean += r->mae[j] / N;
      r->rmse_mean += r->rmse[j] / N;
      r->r2_mean += r->r2[j] / N;
    }
}

void
vl_regress_result_clear (VlRegressResult *r)
{
  g_clear_pointer (&r->mae, g_free);
  g_clear_pointer (&r->rmse, g_free);
  g_clear_pointer (&r->r2, g_free);
  g_clear_pointer (&r->s_abs, g_free);
  g_clear_pointer (&r->s_sq, g_free);
  g_clear_pointer (&r->s_y, g_free);
  g_clear_pointer (&r->s_y2, g_free);
  g_clear_pointer (&r->pred, g_free);
  g_clear_pointer (&r->truth, g_free);
  g_clear_pointer (&r->items, g_free);
}

void
vl_regress_result_copy (VlRegressResult *dst, const VlRegressResult *src)
{
  const int N = src->n_values;
  *dst = *src;
#define DUP(f, type, count) dst->f = src->f ? g_memdup2 (src->f, sizeof (type) * (count)) : NULL
  DUP (mae, double, N);
  DUP (rmse, double, N);
  DUP (r2, double, N);
  DUP (s_abs, double, N);
  DUP (s_sq, double, N);
  DUP (s_y, double, N);
  DUP (s_y2, double, N);
  DUP (pred, float, src->n * N);
  DUP (truth, float, src->n * N);
  DUP (items, int, src->n);
#undef DUP
  dst->cap = src->n;
}

/* ------------------------------------------------------------------ evaluation */

void
vl_preprocess_from_model (VlModel *m, VlPreprocess *pp)
{
  const VlGeometry *g = vl_model_geometry (m);
  memset (pp, 0, sizeof *pp);
  pp->channels = g->in_chans;
  pp->size = g->input_size > 0 ? g->input_size : g->img_size;
  pp->crop_pct = g->crop_pct > 0 ? g->crop_pct : 1.0;
  pp->squash = g->squash;
  pp->interp = g_strcmp0 (g->interpolation, "bilinear") == 0 ? VL_INTERP_BILINEAR
             : g_strcmp0 (g->interpolation, "nearest") == 0 ? VL_INTERP_NEAREST
             : VL_INTERP_BICUBIC;
  memcpy (pp->mean, g->mean, sizeof pp->mean);
  memcpy (pp->std, g->std, sizeof pp->std);
}

gboolean
vl_preprocess_dense (VlModel *m, int size, VlPreprocess *pp, GError **error)
{
  const int patch = vl_model_geometry (m)->patch;
  vl_preprocess_from_model (m, pp);
  pp->squash = FALSE;   /* the dense tasks' transforms are their own (vl_preprocess_squash) */
  if (size > 0)
    pp->size = size;
  if (pp->size % patch != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "input size %d is not a multiple of the "
                   "patch size %d", pp->size, patch);
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------ evaluation */

void
vl_eval_result_begin (VlEvalResult *r, int n_classes)
{
  memset (r, 0, sizeof *r);
  r->n_classes = n_classes;
  r->class_acc = g_new0 (double, n_classes);
  r->confusion = g_new0 (int64_t, (gsize) n_classes * n_classes);
}

void
vl_eval_result_clear (VlEvalResult *r)
{
  g_clear_pointer (&r->class_acc, g_free);
  g_clear_pointer (&r->confusion, g_free);
}

void
vl_eval_result_add (VlEvalResult *r, const float *logits, const int *labels, int B)
{
  const int K = r->n_classes;
  for (int b = 0; b < B; b++)
    {
      const float *z = logits + (gsize) b * K;
      int y = labels[b];
      double mx = z[0];
      int pred = 0;
      for (int k = 1; k < K; k++)
        if (z[k] > mx)
          {
            mx = z[k];
            pred = k;
          }
      double s = 0;
      for (int k = 0; k < K; k++)
        s += exp ((double) z[k] - mx);
      r->loss += mx + log (s) - (double) z[y];
      int rank = 0;   /* classes ranked above the true one (ties: the lower index first) */
      for (int k = 0; k < K; k++)
        rank += z[k] > z[y] || (z[k] == z[y] && k < y);
      r->top1 += rank == 0;
      r->top5 += rank < 5;
      r->confusion[(gsize) y * K + pred]++;
      r->n++;
    }
}

void
vl_eval_result_end (VlEvalResult *r)
{
  const int K = r->n_classes;
  double n = (double) MAX (r->n, 1);
  r->loss = r->n ? r->loss / n : NAN;
  r->top1 = r->n ? r->top1 / n : NAN;
  r->top5 = r->n && K > 5 ? r->top5 / n : NAN;
  for (int k = 0; k < K; k++)
    {
      int64_t row = 0;
      for (int j = 0; j < K; j++)
        row += r->confusion[(gsize) k * K + j];
      r->class_acc[k] = row ? (double) r->confusion[(gsize) k * K + k] / (double) row : NAN;
    }
}

/* ------------------------------------------------------------------ segmentation metrics */

void
vl_seg_result_begin (VlSegResult *r, int n_classes, gboolean own_size)
{
  memset (r, 0, sizeof *r);
  r->n_classes = n_classes;
  r->own_size = own_size;
  r->metric = vl_seg_metric_new (n_classes, VL_SEG_IGNORE);
  r->miou = r->aacc = r->macc = r->loss = NAN;
}

void
vl_seg_result_add (VlSegResult *r, const float *logits, const uint8_t *mask, int H, int W)
{
  const int64_t n = (int64_t) H * W;
  int64_t counted = 0;
  double loss = vl_seg_cross_entropy (NULL, logits, mask, n, r->n_classes, VL_SEG_IGNORE,
                                      &counted);
  r->loss_sum += loss * counted;
  r->pixels += counted;
  g_autofree uint8_t *pred = g_new (uint8_t, n);
  vl_seg_argmax (pred, logits, n, r->n_classes);
  vl_seg_metric_add (r->metric, pred, mask, n);
  r->n++;
}

void
vl_seg_result_end (VlSegResult *r)
{
  const int K = r->n_classes;
  g_free (r->iou);
  g_free (r->acc);
  r->iou = g_new (double, K);
  r->acc = g_new (double, K);
  r->miou = vl_seg_metric_compute (r->metric, r->iou, r->acc, &r->macc, &r->aacc);
  r->loss = r->pixels > 0 ? r->loss_sum / (double) r->pixels : NAN;
  g_clear_pointer (&r->metric, vl_seg_metric_free);
}

void
vl_seg_result_clear (VlSegResult *r)
{
  g_clear_pointer (&r->iou, g_free);
  g_clear_pointer (&r->acc, g_free);
  g_clear_pointer (&r->metric, vl_seg_metric_free);
}

void
vl_seg_result_copy (VlSegResult *dst, const VlSegResult *src)
{
  *dst = *src;
  dst->metric = NULL;
  dst->iou = src->iou ? g_memdup2 (src->iou, sizeof (double) * src->n_classes) : NULL;
  dst->acc = src->acc ? g_memdup2 (src->acc, sizeof (double) * src->n_classes) : NULL;
}

typedef struct {
  const float    *z;
  int             S, K;
  uint8_t *const *masks;
  const int      *w, *h;
  uint8_t       **pred;     /* (B) out: argmax at each image's size; NULL when not allocated */
  double         *loss;     /* (B) out: mean over its counted pixels */
  int64_t        *counted;  /* (B) out */
} UpJob;

static void
upsample_one (void *data, int64_t j, int worker)
{
  const UpJob *u = data;
  if (u->masks[j] == NULL)
    return;
  const int64_t n = (int64_t) u->w[j] * u->h[j];
  const float *zj = u->z + j * (int64_t) u->S * u->S * u->K;
  float *up = NULL;
  if (u->w[j] != u->S || u->h[j] != u->S)
    {
      up = g_try_new (float, n * u->K);
      if (up == NULL)
        return;
      vl_bilinear_forward (up, zj, 1, u->S, u->S, u->K, u->h[j], u->w[j]);
    }
  const float *l = up ? up : zj;
  u->pred[j] = g_new (uint8_t, n);
  u->loss[j] = vl_seg_cross_entropy (NULL, l, u->masks[j], n, u->K, VL_SEG_IGNORE,
                                     &u->counted[j]);
  vl_seg_argmax (u->pred[j], l, n, u->K);
  g_free (up);
}

gboolean
vl_seg_result_add_upsampled (VlSegResult *r, const float *z, int B, int S,
                             uint8_t *const *masks, const int *w, const int *h, GError **error)
{
  g_autofree uint8_t **pred = g_new0 (uint8_t *, B);
  g_autofree double *loss = g_new0 (double, B);
  g_autofree int64_t *counted = g_new0 (int64_t, B);
  UpJob u = { z, S, r->n_classes, masks, w, h, pred, loss, counted };
  vl_parallel_for (B, upsample_one, &u);
  gboolean ok = TRUE;
  for (int j = 0; j < B; j++)
    {
      if (masks[j] == NULL)
        continue;
      if (pred[j] == NULL)
        {
          if (ok)
            g_set_error (error, VL_ERROR, VL_ERROR_IO, "cannot allocate the logits of a %dx%d "
                         "image at its own size", w[j], h[j]);
          ok = FALSE;
          continue;
        }
      vl_seg_metric_add (r->metric, pred[j], masks[j], (int64_t) w[j] * h[j]);
      r->loss_sum += loss[j] * counted[j];
      r->pixels += counted[j];
      r->n++;
      g_free (pred[j]);
    }
  return ok;
}

typedef struct {
  float         *dz;
  const float   *z;
  const uint8_t *masks;
  int64_t        P;
  int            K;
  double        *loss;
  int64_t       *counted;
  double         scale_num;   /* second pass: dz_j *= counted_j / total */
  int64_t        total;
} LossJob;

static void
loss_one (void *data, int64_t j, int worker)
{
  const LossJob *l = data;
  float *dz = l->dz + j * l->P * l->K;
  if (l->total == 0)
    {
      memset (dz, 0, sizeof (float) * l->P * l->K);
      l->loss[j] = vl_seg_cross_entropy (dz, l->z + j * l->P * l->K, l->masks + j * l->P, l->P,
                                         l->K, VL_SEG_IGNORE, &l->counted[j]);
      return;
    }
  const float s = (float) ((double) l->counted[j] / (double) l->total);
  for (int64_t i = 0; i < l->P * l->K; i++)
    dz[i] *= s;
}

double
vl_seg_batch_loss (float *dz, const float *z, const uint8_t *masks, int B, int64_t P, int K)
{
  g_autofree double *loss = g_new0 (double, B);
  g_autofree int64_t *counted = g_new0 (int64_t, B);
  LossJob l = { dz, z, masks, P, K, loss, counted, 0, 0 };
  vl_parallel_for (B, loss_one, &l);   /* each image's mean and its gradient */
  int64_t total = 0;
  double sum = 0;
  for (int j = 0; j < B; j++)
    {
      total += counted[j];
      sum += loss[j] * counted[j];
    }
  if (total == 0)
    return 0.0;
  l.total = total;
  vl_parallel_for (B, loss_one, &l);   /* rescaled to the batch's mean */
  return sum / (double) total;
}

/* vl-predictions.c: the trained model's predictions of a validation split, on a worker thread
 * (see vl-predictions.h): every image's class, or its mask and IoU, or its boxes and errors,
 * and the model's attention of the probes. */
#include "vl-predictions.h"
#include <glib/gi18n.h>

#include <math.h>
#include <string.h>

#include "vl-attention.h"
#include "vl-coco-eval.h"
#include "vl-det-panel.h"
#include "vl-jobs.h"
#include "vl-mask-view.h"
#include "vl-threads.h"

#define N_WORST VL_PREDICTIONS_WORST
#define GALLERY_SCORE ((float) VL_DET_PANEL_SCORE)   /* the strip ranks images at the panel's first */
#define MATCH_IOU 0.5f

/* ------------------------------------------------------------------ segmentation */

void
vl_seg_predictions_free (VlSegPredictions *p)
{
  if (p == NULL)
    return;
  g_free (p->pred);
  g_free (p->truth);
  g_free (p->iou);
  g_free (p->order);
  for (int i = 0; p->images && i < p->n_kept; i++)
    vl_image_free (p->images[i]);
  g_free (p->images);
  g_free (p->kept);
  g_strfreev (p->names);
  g_strfreev (p->class_names);
  g_free (p);
}

#define SEG_BATCH 16

/* Up to SEG_BATCH validation items through the model and its seg head at pp's size: slot j of pred
 * and truth (pp->size² bytes each) receives items[j]'s predicted and true masks, of px its
 * pixels; loaded[j] whether it decoded. FALSE (error set) when the forward fails. */
static gboolean
seg_predict_batch (VlModel *m, VlSegHead *h, VlDataset *ds, const VlPreprocess *pp,
               const int *items, int n, uint8_t *pred, uint8_t *truth, float *px,
               gboolean *loaded, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  const int S = pp->size, G = S / g->patch, K = vl_seg_head_n_classes (h);
  const gsize plane = (gsize) S * S, per = (gsize) pp->channels * plane;
  g_autofree float *batch = g_new (float, per * SEG_BATCH);
  int slot[SEG_BATCH], b = 0;
  for (int j = 0; j < n; j++)
    {
      memset (truth + plane * j, VL_SEG_IGNORE, plane);
      memset (pred + plane * j, 0, plane);
      VlTarget t = { .mask = truth + plane * j };
      loaded[j] = vl_dataset_load_target (ds, VL_SPLIT_VAL, items[j], pp, VL_AUGMENT_NONE, 0,
                                          batch + per * b, &t, NULL);
      if (loaded[j])
        slot[b++] = j;
    }
  if (b == 0)
    return TRUE;
  if (!vl_model_forward (m, batch, b, S, S, VL_FORWARD_INFER, error))
    return FALSE;
  const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), b,
                                        vl_model_n_tokens_last (m), g->n_prefix, G, G, S, S);
  for (int r = 0; r < b; r++)
    {
      vl_seg_argmax (pred + plane * slot[r], z + plane * K * r, (int64_t) plane, K);
      if (px)
        memcpy (px + per * slot[r], batch + per * r, sizeof (float) * per);
    }
  return TRUE;
}

static const double *sort_iou;
static G_LOCK_DEFINE (seg_sort_lock);

static int
by_iou (const void *a, const void *b)
{
  double x = sort_iou[*(const int *) a], y = sort_iou[*(const int *) b];
  if (isnan (x) || isnan (y))
    return isnan (x) - isnan (y);
  return x < y ? -1 : x > y ? 1 : *(const int *) a - *(const int *) b;
}

/* The median image and the worst ones, run again: their masks, crops and names. */
static gboolean
seg_keep_for_display (VlSegPredictions *p, VlModel *m, VlSegHead *h, VlDataset *ds,
                  const VlPreprocess *pp, GError **error)
{
  p->order = g_new (int, MAX (p->n, 1));
  for (int i = 0; i < p->n; i++)
    p->order[i] = i;
  G_LOCK (seg_sort_lock);
  sort_iou = p->iou;
  qsort (p->order, p->n, sizeof (int), by_iou);
  G_UNLOCK (seg_sort_lock);
  int n_defined = 0;
  while (n_defined < p->n && !isnan (p->iou[p->order[n_defined]]))
    n_defined++;
  int want[N_WORST + 1], n_want = 0;
  if (n_defined > 0)
    want[n_want++] = p->order[n_defined / 2];   /* the median: shown first */
  for (int i = 0; i < MIN (N_WORST, n_defined); i++)
    if (p->order[i] != want[0])
      want[n_want++] = p->order[i];
  const gsize plane = (gsize) pp->size * pp->size, per = (gsize) pp->channels * plane;
  g_autofree uint8_t *pred = g_new (uint8_t, plane * MAX (n_want, 1));
  g_autofree uint8_t *truth = g_new (uint8_t, plane * MAX (n_want, 1));
  g_autofree float *px = g_new (float, per * MAX (n_want, 1));
  gboolean loaded[N_WORST + 1];
  if (n_want > 0 && !seg_predict_batch (m, h, ds, pp, want, n_want, pred, truth, px, loaded, error))
    return FALSE;
  p->kept = g_new (int, N_WORST + 1);
  p->images = g_new0 (VlImage *, N_WORST + 1);
  p->names = g_new0 (char *, N_WORST + 2);
  p->pred = g_new (uint8_t, plane * MAX (n_want, 1));
  p->truth = g_new (uint8_t, plane * MAX (n_want, 1));
  for (int w = 0; w < n_want; w++)
    if (loaded[w])
      {
        int k = p->n_kept++;
        p->kept[k] = want[w];
        memcpy (p->pred + plane * k, pred + plane * w, plane);
        memcpy (p->truth + plane * k, truth + plane * w, plane);
        p->images[k] = vl_image_from_chw (px + per * w, pp);
        p->names[k] = g_path_get_basename (vl_dataset_item_name (ds, VL_SPLIT_VAL, want[w]));
      }
  return TRUE;
}

/* Every validation image's own IoU, a batch at a time (only a batch of masks is held), then
 * the median and the worst images again for display. */
VlSegPredictions *
vl_seg_predictions_compute (VlModel *m, VlSegHead *h, VlDataset *ds, int size,
                            GCancellable *cancel, GError **error)
{
  const int K = vl_seg_head_n_classes (h);
  if (K != vl_dataset_n_classes (ds) || !vl_dataset_is_segmentation (ds))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, _("the seg head has %d classes, "
                   "the dataset %d%s"), K, vl_dataset_n_classes (ds),
                   vl_dataset_is_segmentation (ds) ? "" : _(" and no masks"));
      return NULL;
    }
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  if (size > 0)
    pp.size = size;
  const gsize plane = (gsize) pp.size * pp.size;
  g_autoptr(VlSegPredictions) p = g_new0 (VlSegPredictions, 1);
  p->n = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  p->S = pp.size;
  p->K = K;
  p->iou = g_new (double, MAX (p->n, 1));
  p->class_names = g_new0 (char *, K + 1);
  for (int k = 0; k < K; k++)
    p->class_names[k] = g_strdup (vl_dataset_class_name (ds, k));
  g_autofree uint8_t *pred = g_new (uint8_t, plane * SEG_BATCH);
  g_autofree uint8_t *truth = g_new (uint8_t, plane * SEG_BATCH);
  g_autoptr(VlSegMetric) metric = vl_seg_metric_new (K, VL_SEG_IGNORE);
  for (int i0 = 0; i0 < p->n; i0 += SEG_BATCH)
    {
      if (g_cancellable_set_error_if_cancelled (cancel, error))
        return NULL;
      int items[SEG_BATCH], n = MIN (SEG_BATCH, p->n - i0);
      gboolean loaded[SEG_BATCH];
      for (int j = 0; j < n; j++)
        items[j] = i0 + j;
      if (!seg_predict_batch (m, h, ds, &pp, items, n, pred, truth, NULL, loaded, error))
        return NULL;
      for (int j = 0; j < n; j++)
        {
          p->iou[i0 + j] = NAN;
          if (!loaded[j])
            continue;
          vl_seg_metric_reset (metric);
          vl_seg_metric_add (metric, pred + plane * j, truth + plane * j, (int64_t) plane);
          p->iou[i0 + j] = vl_seg_metric_compute (metric, NULL, NULL, NULL, NULL);
        }
    }
  if (!seg_keep_for_display (p, m, h, ds, &pp, error))
    return NULL;
  return g_steal_pointer (&p);
}

/* ------------------------------------------------------------------ detection */

void
vl_det_predictions_free (VlDetPredictions *p)
{
  if (p == NULL)
    return;
  g_clear_pointer (&p->gt, g_array_unref);
  g_clear_pointer (&p->dt, g_array_unref);
  g_free (p->missed);
  g_free (p->false_pos);
  g_free (p->kept);
  g_free (p->width);
  g_free (p->height);
  for (int i = 0; p->images && i < p->n_kept; i++)
    g_clear_object (&p->images[i]);
  g_free (p->images);
  g_strfreev (p->names);
  g_strfreev (p->class_names);
  g_free (p);
}

/* Every validation image's true boxes and detections (score >= 0.05, as COCO scoring keeps
 * them; the background channel's left out), in its own pixels. */
static gboolean
detect_split (VlDetPredictions *p, VlModel *m, VlDetHead *h, VlDataset *ds,
              const VlPreprocess *pp, GCancellable *cancel, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  const int S = pp->size, G = S / g->patch, T = g->n_prefix + G * G;
  g_autoptr(VlLoader) loader = vl_loader_new (ds, VL_SPLIT_VAL, pp, VL_AUGMENT_NONE, 16, FALSE, 0);
  VlFcosPostprocess post = VL_FCOS_POSTPROCESS_DEFAULT;
  post.score_thresh = VL_DETECT_EVAL_SCORE;
  g_autofree VlDetection *dets = g_new (VlDetection, post.max_dets);
  vl_loader_start_epoch (loader, 0, 0);
  VlBatch b;
  while (vl_loader_next (loader, &b))
    {
      if (g_cancellable_set_error_if_cancelled (cancel, error) ||
          !vl_model_forward (m, b.images, b.n, S, S, VL_FORWARD_INFER, error))
        return FALSE;
      vl_det_head_forward (h, vl_model_tokens_final (m), b.n, T, g->n_prefix, G, G, g->patch);
      for (int j = 0; j < b.n; j++)
        {
          const int item = b.indices[j];
          int n = vl_det_head_detect (h, j, S, S, &post, dets), w, hh, n_gt;
          vl_dataset_boxes_size (ds, VL_SPLIT_VAL, item, &w, &hh);
          vl_detections_to_image (dets, n, S, w, hh);
          for (int i = 0; i < n; i++)
            if (dets[i].label != 0)
              {
                VlCocoBox d = { item, dets[i].label, { 0 }, dets[i].score };
                memcpy (d.box, dets[i].box, sizeof d.box);
                g_array_append_val (p->dt, d);
              }
          const int *gl;
          const float *gb = vl_dataset_boxes (ds, VL_SPLIT_VAL, item, &gl, &n_gt);
          for (int i = 0; i < n_gt; i++)
            {
              VlCocoBox t = { item, gl ? gl[i] : 1, { 0 }, 0 };
              memcpy (t.box, gb + 4 * i, sizeof t.box);
              g_array_append_val (p->gt, t);
            }
        }
    }
  return TRUE;
}

static const int *sort_errors;
static G_LOCK_DEFINE (det_sort_lock);

static int
by_errors (const void *a, const void *b)
{
  int x = *(const int *) a, y = *(const int *) b;
  int ex = sort_errors[x], ey = sort_errors[y];
  return ex != ey ? ey - ex : x - y;   /* the most errors first */
}

/* The median image (by its errors) and the worst ones: the pictures the model saw. */
static void
det_keep_for_display (VlDetPredictions *p, VlDataset *ds, const VlPreprocess *pp)
{
  g_autofree int *errors = g_new (int, MAX (p->n, 1));
  g_autofree int *order = g_new (int, MAX (p->n, 1));
  for (int i = 0; i < p->n; i++)
    {
      errors[i] = p->missed[i] + p->false_pos[i];
      order[i] = i;
    }
  G_LOCK (det_sort_lock);
  sort_errors = errors;
  qsort (order, p->n, sizeof (int), by_errors);
  G_UNLOCK (det_sort_lock);
  int want[N_WORST + 1], n_want = 0;
  if (p->n > 0)
    want[n_want++] = order[p->n / 2];
  for (int i = 0; i < p->n && n_want < N_WORST + 1 && errors[order[i]] > 0; i++)
    if (order[i] != want[0])
      want[n_want++] = order[i];
  const gsize per = (gsize) pp->channels * pp->size * pp->size;
  g_autofree float *px = g_new (float, per);
  p->kept = g_new (int, N_WORST + 1);
  p->width = g_new (int, N_WORST + 1);
  p->height = g_new (int, N_WORST + 1);
  p->images = g_new0 (GdkTexture *, N_WORST + 1);
  p->names = g_new0 (char *, N_WORST + 2);
  for (int w = 0; w < n_want; w++)
    {
      if (!vl_dataset_load (ds, VL_SPLIT_VAL, want[w], pp, VL_AUGMENT_NONE, 0, px, NULL))
        continue;
      int k = p->n_kept++;
      p->kept[k] = want[w];
      vl_dataset_boxes_size (ds, VL_SPLIT_VAL, want[w], &p->width[k], &p->height[k]);
      g_autoptr(VlImage) img = vl_image_from_chw (px, pp);
      p->images[k] = vl_mask_texture (img, NULL, 0);
      p->names[k] = g_path_get_basename (vl_dataset_item_name (ds, VL_SPLIT_VAL, want[w]));
      if (w > 0)
        p->n_worst++;
    }
}

VlDetPredictions *
vl_det_predictions_compute (VlModel *m, VlDetHead *h, VlDataset *ds, int size,
                            GCancellable *cancel, GError **error)
{
  const int K = vl_det_head_n_classes (h);
  if (!vl_dataset_is_detection (ds) || K != vl_dataset_n_classes (ds))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, _("the FCOS head has %d "
                   "classes, the dataset %d%s"), K, vl_dataset_n_classes (ds),
                   vl_dataset_is_detection (ds) ? "" : _(" and no boxes"));
      return NULL;
    }
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  if (size > 0)
    pp.size = size;
  g_autoptr(VlDetPredictions) p = g_new0 (VlDetPredictions, 1);
  p->n = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  p->K = K;
  p->gt = g_array_new (FALSE, FALSE, sizeof (VlCocoBox));
  p->dt = g_array_new (FALSE, FALSE, sizeof (VlCocoBox));
  p->class_names = g_new0 (char *, K + 1);
  for (int k = 0; k < K; k++)
    p->class_names[k] = g_strdup (vl_dataset_class_name (ds, k));
  if (!detect_split (p, m, h, ds, &pp, cancel, error))
    return NULL;
  p->missed = g_new0 (int, MAX (p->n, 1));
  p->false_pos = g_new0 (int, MAX (p->n, 1));
  vl_det_image_errors (p->missed, p->false_pos, (const VlCocoBox *) p->gt->data, p->gt->len,
                       (const VlCocoBox *) p->dt->data, p->dt->len, p->n, GALLERY_SCORE,
                       MATCH_IOU);
  det_keep_for_display (p, ds, &pp);
  return g_steal_pointer (&p);
}

/* ------------------------------------------------------------------ the job */

typedef struct {
  VlTrainedRef *trained;
  int          *probe_items;
  int           n_probes;
  VlTaskKind    task;         /* segmentation: masks, detection: boxes, instead of classes */
  int           seg_size;     /* a dense task's input side (0: the model's) */
  VlPredictResult *r;
} PredictJob;

void
vl_predict_result_free (VlPredictResult *r)
{
  if (r == NULL)
    return;
  g_clear_pointer (&r->data, vl_data_unref);
  g_free (r->pred.label);
  g_free (r->pred.predicted);
  g_free (r->pred.confidence);
  g_free (r->final_attn);
  g_free (r->final_pool);
  vl_seg_predictions_free (r->seg);
  vl_det_predictions_free (r->det);
  g_free (r);
}

static void
predict_job_free (gpointer p)
{
  PredictJob *j = p;
  vl_trained_unref (j->trained);
  g_free (j->probe_items);
  vl_predict_result_free (j->r);
  g_free (j);
}

/* Every validation image's class, its probability, by the trained classifier. */
static gboolean
predict_classes (VlPredictResult *j, VlModel *m, const VlPreprocess *pp_, GCancellable *cancel,
                 GError **error)
{
  VlDataset *ds = j->data->ds;
  const int K = vl_model_num_classes (m);
  if (K != vl_dataset_n_classes (ds))
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "the model has %d classes, the dataset %d", K, vl_dataset_n_classes (ds));
      return FALSE;
    }
  VlPreprocess pp = *pp_;
  const int n = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  const int B = 32;
  gsize per = (gsize) pp.channels * pp.size * pp.size;
  g_autofree float *px = g_new (float, per * B);
  g_autofree int *idx = g_new (int, B);
  j->pred.n = n;
  j->pred.label = g_new (int, MAX (n, 1));
  j->pred.predicted = g_new (int, MAX (n, 1));
  j->pred.confidence = g_new0 (float, MAX (n, 1));
  gboolean ok = TRUE;
  for (int i0 = 0; i0 < n && ok; i0 += B)
    {
      if (g_cancellable_is_cancelled (cancel))
        {
          ok = FALSE;
          break;
        }
      int b = 0;
      for (int i = i0; i < MIN (n, i0 + B); i++)
        {
          j->pred.label[i] = vl_dataset_label (ds, VL_SPLIT_VAL, i);
          j->pred.predicted[i] = -1;
          if (vl_dataset_load (ds, VL_SPLIT_VAL, i, &pp, VL_AUGMENT_NONE, 0, px + per * b, NULL))
            idx[b++] = i;
        }
      if (b == 0)
        continue;
      if (!vl_model_forward (m, px, b, pp.size, pp.size, VL_FORWARD_INFER, error))
        {
          ok = FALSE;
          break;
        }
      const float *logits = vl_model_logits (m);
      for (int r = 0; r < b; r++)
        {
          const float *z = logits + (gsize) r * K;
          int best = 0;
          for (int k = 1; k < K; k++)
            if (z[k] > z[best])
              best = k;
          double sum = 0;
          for (int k = 0; k < K; k++)
            sum += exp ((double) z[k] - z[best]);
          j->pred.predicted[idx[r]] = best;
          j->pred.confidence[idx[r]] = (float) (1.0 / sum);
        }
    }
  if (!ok && error && *error == NULL)
    g_set_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED, "cancelled");
  return ok;
}

static void
predict_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  PredictJob *j = task_data;
  VlPredictResult *r = j->r;
  g_autoptr(GError) error = NULL;
  g_mutex_lock (&j->trained->lock);
  VlModel *m = vl_trained_model (j->trained);
  VlDataset *ds = r->data->ds;
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  if (j->seg_size > 0)
    pp.size = j->seg_size;   /* the probes' attention at the run's input size */
  gsize per = (gsize) pp.channels * pp.size * pp.size;
  gboolean ok;
  if (j->task == VL_TASK_SEGMENT)
    {
      VlSegHead *h = vl_trained_seg_head (j->trained);
      r->seg = h ? vl_seg_predictions_compute (m, h, ds, j->seg_size, cancel, &error) : NULL;
      ok = r->seg != NULL;
      if (h == NULL)
        g_set_error (&error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("the run has no seg head"));
    }
  else if (j->task == VL_TASK_DETECT)
    {
      VlDetHead *h = vl_trained_det_head (j->trained);
      r->det = h ? vl_det_predictions_compute (m, h, ds, j->seg_size, cancel, &error) : NULL;
      ok = r->det != NULL;
      if (h == NULL)
        g_set_error (&error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("the run has no FCOS head"));
    }
  else
    ok = predict_classes (r, m, &pp, cancel, &error);
  /* the trained model's attention of the probes, for every block and head */
  if (ok && j->n_probes > 0)
    {
      g_autofree float *probe_px = g_new (float, per * j->n_probes);
      int got = 0;
      for (int i = 0; i < j->n_probes; i++)
        if (vl_dataset_load (ds, VL_SPLIT_VAL, j->probe_items[i], &pp, VL_AUGMENT_NONE, 0,
                             probe_px + per * got, NULL))
          got++;
      if (got == j->n_probes &&
          vl_model_forward (m, probe_px, got, pp.size, pp.size, VL_FORWARD_CAPTURE_ATTN, NULL))
        {
          const VlGeometry *g = vl_model_geometry (m);
          int T = vl_model_n_tokens_last (m);
          gsize pa = (gsize) g->heads * T * T, pi = (gsize) g->depth * pa;
          r->final_attn = g_new (float, pi * got);
          r->attn_T = T;
          for (int b = 0; b < got; b++)
            vl_model_attention_copy (m, b, r->final_attn + b * pi);
          /* where an attention pool (SigLIP's) looks */
          const float *pool = vl_model_pool_attention (m);
          if (pool)
            r->final_pool = g_memdup2 (pool, sizeof (float) * got * g->heads * (T - g->n_prefix));
        }
    }
  g_mutex_unlock (&j->trained->lock);
  if (!ok)
    {
      g_task_return_error (task, g_steal_pointer (&error));
      return;
    }
  g_task_return_boolean (task, TRUE);
}

void
vl_job_predict (GObject *source, VlTrainedRef *trained, VlDataRef *data, VlTaskKind task,
                int size, const int *probe_items, int n_probes, GCancellable *cancel,
                GAsyncReadyCallback callback, gpointer user_data)
{
  PredictJob *j = g_new0 (PredictJob, 1);
  j->trained = vl_trained_ref (trained);
  j->task = task;
  j->seg_size = size;
  if (probe_items && n_probes > 0)
    {
      j->probe_items = g_memdup2 (probe_items, sizeof (int) * n_probes);
      j->n_probes = n_probes;
    }
  j->r = g_new0 (VlPredictResult, 1);
  j->r->data = vl_data_ref (data);
  g_autoptr(GTask) gtask = g_task_new (source, cancel, callback, user_data);
  g_task_set_source_tag (gtask, vl_job_predict);
  g_task_set_task_data (gtask, j, predict_job_free);
  g_task_run_in_thread (gtask, predict_thread);
}

VlPredictResult *
vl_job_predict_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_predict, NULL);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  PredictJob *j = g_task_get_task_data (G_TASK (result));
  return g_steal_pointer (&j->r);
}

/* vl-jobs.c: the app's background jobs (see vl-jobs.h). */
#include "vl-jobs.h"
#include "vl-attention.h"
#include "vl-attention-view.h"
#include "vl-detect.h"
#include "vl-onnx.h"
#include "vl-recipe.h"
#include "vl-threads.h"

#include <errno.h>
#include <math.h>

#include <string.h>

/* ------------------------------------------------------------------ a backbone */

static void
load_model_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  const char *path = task_data;
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  VlModel *m = vl_model_load (path, &error);
  if (m == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  double *seconds = g_new (double, 1);
  *seconds = (g_get_monotonic_time () - t0) / 1e6;
  g_object_set_data_full (G_OBJECT (task), "seconds", seconds, g_free);
  g_task_return_pointer (task, m, (GDestroyNotify) vl_model_free);
}

void
vl_job_load_model (GObject *source, const char *path, GCancellable *cancel,
                   GAsyncReadyCallback callback, gpointer user_data)
{
  g_autoptr(GTask) task = g_task_new (source, cancel, callback, user_data);
  g_task_set_source_tag (task, vl_job_load_model);
  g_task_set_task_data (task, g_strdup (path), g_free);
  g_task_run_in_thread (task, load_model_thread);
}

VlModel *
vl_job_load_model_finish (GAsyncResult *result, double *seconds, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_load_model, NULL);
  const double *s = g_object_get_data (G_OBJECT (result), "seconds");
  if (seconds)
    *seconds = s ? *s : 0;
  return g_task_propagate_pointer (G_TASK (result), error);
}

const char *
vl_job_load_model_path (GAsyncResult *result)
{
  return g_task_get_task_data (G_TASK (result));
}

/* ------------------------------------------------------------------ a dataset */

typedef struct {
  char            *spec;
  VlDatasetOptions options;
} OpenJob;

static void
open_job_free (gpointer p)
{
  OpenJob *j = p;
  g_free (j->spec);
  g_free (j);
}

static void
open_dataset_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  OpenJob *j = task_data;
  GError *error = NULL;
  VlDataset *ds = vl_dataset_open (j->spec, &j->options, &error);
  if (ds == NULL && !j->options.detect && g_file_test (j->spec, G_FILE_TEST_IS_DIR))
    {
      /* not classes, targets or masks: boxes (a COCO, YOLO or VOC folder without masks)? */
      VlDatasetOptions o = j->options;
      o.detect = TRUE;
      ds = vl_dataset_open (j->spec, &o, NULL);
      if (ds)
        {
          j->options = o;
          g_clear_error (&error);
        }
    }
  if (ds == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_return_pointer (task, ds, (GDestroyNotify) vl_dataset_free);
}

void
vl_job_open_dataset (GObject *source, const char *spec, const VlDatasetOptions *options,
                     GCancellable *cancel, GAsyncReadyCallback callback, gpointer user_data)
{
  OpenJob *j = g_new0 (OpenJob, 1);
  j->spec = g_strdup (spec);
  j->options = *options;
  g_autoptr(GTask) task = g_task_new (source, cancel, callback, user_data);
  g_task_set_source_tag (task, vl_job_open_dataset);
  g_task_set_task_data (task, j, open_job_free);
  g_task_run_in_thread (task, open_dataset_thread);
}

VlDataset *
vl_job_open_dataset_finish (GAsyncResult *result, VlDatasetOptions *used, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_open_dataset, NULL);
  OpenJob *j = g_task_get_task_data (G_TASK (result));
  if (used)
    *used = j->options;
  return g_task_propagate_pointer (G_TASK (result), error);
}

/* ------------------------------------------------------------------ a run folder */

void
vl_run_contents_free (VlRunContents *j)
{
  if (j == NULL)
    return;
  g_free (j->dir);
  if (j->have_cfg)
    vl_train_config_clear (&j->cfg);
  g_clear_pointer (&j->model, vl_model_free);
  g_strfreev (j->class_names);
  g_clear_pointer (&j->epochs, g_ptr_array_unref);
  vl_run_task_clear (&j->task);
  g_clear_pointer (&j->seg_head, vl_seg_head_free);
  g_clear_pointer (&j->det_head, vl_det_head_free);
  g_free (j);
}

static void
read_run_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  VlRunContents *j = task_data;
  GError *error = NULL;
  if (!vl_train_config_load (&j->cfg, j->dir, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  j->have_cfg = TRUE;
  g_autofree char *model_path = g_build_filename (j->dir, "model.safetensors", NULL);
  if (g_file_test (model_path, G_FILE_TEST_EXISTS))
    {
      j->model = vl_run_load_model (j->dir, &j->class_names, &error);
      if (j->model == NULL)
        {
          g_task_return_error (task, error);
          return;
        }
    }
  if (!vl_run_read_task (j->dir, &j->task, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_autofree char *head_path = g_build_filename (j->dir, "seg_head.safetensors", NULL);
  if (j->task.kind == VL_TASK_SEGMENT && j->model && g_file_test (head_path, G_FILE_TEST_EXISTS))
    {
      j->seg_head = vl_seg_head_load (head_path, vl_model_geometry (j->model)->width, &error);
      if (j->seg_head == NULL)
        {
          g_task_return_error (task, error);
          return;
        }
    }
  g_autofree char *det_path = g_build_filename (j->dir, VL_RUN_DET_HEAD, NULL);
  if (j->task.kind == VL_TASK_DETECT && j->model && g_file_test (det_path, G_FILE_TEST_EXISTS))
    {
      j->det_head = vl_detect_load_run_head (j->dir, j->model, &error);
      if (j->det_head == NULL)
        {
          g_task_return_error (task, error);
          return;
        }
    }
  if (j->class_names == NULL && (j->task.kind == VL_TASK_SEGMENT ||
                                 j->task.kind == VL_TASK_DETECT))
    j->class_names = vl_run_read_class_names (j->dir);   /* the model has no head to name them */
  int K = j->task.kind == VL_TASK_REGRESS ? j->task.n_values
        : j->class_names ? (int) g_strv_length (j->class_names)
        : j->seg_head ? vl_seg_head_n_classes (j->seg_head)
        : j->det_head ? vl_det_head_n_classes (j->det_head)
        : j->model ? vl_model_num_classes (j->model) : 0;
  j->epochs = vl_run_read_metrics (j->dir, j->task.kind, K, &error);
  if (j->epochs == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_return_pointer (task, g_task_get_task_data (task), NULL);
}

void
vl_job_read_run (GObject *source, const char *dir, GAsyncReadyCallback callback,
                 gpointer user_data)
{
  VlRunContents *c = g_new0 (VlRunContents, 1);
  c->dir = g_strdup (dir);
  g_autoptr(GTask) task = g_task_new (source, NULL, callback, user_data);
  g_task_set_source_tag (task, vl_job_read_run);
  g_task_set_task_data (task, c, (GDestroyNotify) vl_run_contents_free);
  g_task_run_in_thread (task, read_run_thread);
}

VlRunContents *
vl_job_read_run_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_read_run, NULL);
  if (g_task_had_error (G_TASK (result)))
    return g_task_propagate_pointer (G_TASK (result), error);
  /* the contents stay the task's data until the task goes: hand over a copy of the pointers */
  VlRunContents *c = g_task_propagate_pointer (G_TASK (result), error);
  VlRunContents *out = g_memdup2 (c, sizeof *c);
  memset (c, 0, sizeof *c);
  return out;
}

/* ------------------------------------------------------------------ the probes' attention */

/* The 8-bit crop the model sees, from its normalised CHW floats. */
VlImage *
vl_image_from_chw (const float *px, const VlPreprocess *pp)
{
  int S = pp->size, C = pp->channels;
  VlImage *img = vl_image_new (S, S, C);
  for (int y = 0; y < S; y++)
    for (int x = 0; x < S; x++)
      for (int c = 0; c < C; c++)
        {
          float v = px[((gsize) c * S + y) * S + x] * pp->std[c] + pp->mean[c];
          int b = (int) lrintf (v * 255.0f);
          img->pixels[((gsize) y * S + x) * C + c] = (uint8_t) CLAMP (b, 0, 255);
        }
  return img;
}

typedef struct {
  char             *backbone;
  VlDataRef        *data;
  int              *items;
  int               n;
  int               size;        /* the input side (a segmentation run's); 0: the backbone's */
  VlProbeAttention *r;
} AttnJob;

void
vl_probe_attention_free (VlProbeAttention *r)
{
  if (r == NULL)
    return;
  for (int i = 0; r->images && i < r->n; i++)
    vl_image_free (r->images[i]);
  g_free (r->images);
  g_free (r->labels);
  g_strfreev (r->names);
  g_free (r->attn);
  g_free (r->rollout);
  g_free (r->pool);
  g_free (r);
}

static void
attn_job_free (gpointer p)
{
  AttnJob *j = p;
  g_free (j->backbone);
  vl_data_unref (j->data);
  g_free (j->items);
  vl_probe_attention_free (j->r);
  g_free (j);
}

static void
attn_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  AttnJob *j = task_data;
  VlProbeAttention *r = j->r;
  GError *error = NULL;
  /* a copy of the backbone of our own: the window's model stays main-thread only */
  g_autoptr(VlModel) m = vl_model_load (j->backbone, &error);
  if (m == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  if (j->size > 0)
    pp.size = j->size;
  const VlGeometry *g = vl_model_geometry (m);
  gsize per = (gsize) pp.channels * pp.size * pp.size;
  g_autofree float *px = g_new (float, per * MAX (j->n, 1));
  r->images = g_new0 (VlImage *, MAX (j->n, 1));
  r->labels = g_new0 (int, MAX (j->n, 1));
  r->names = g_new0 (char *, j->n + 1);
  int ok = 0;
  for (int i = 0; i < j->n; i++)
    if (vl_dataset_load (j->data->ds, VL_SPLIT_VAL, j->items[i], &pp, VL_AUGMENT_NONE, 0,
                         px + per * ok, NULL))
      {
        r->images[ok] = vl_image_from_chw (px + per * ok, &pp);
        r->labels[ok] = vl_dataset_label (j->data->ds, VL_SPLIT_VAL, j->items[i]);
        r->names[ok] = g_path_get_basename (vl_dataset_item_name (j->data->ds, VL_SPLIT_VAL,
                                                                  j->items[i]));
        ok++;
      }
  r->n = ok;
  if (ok == 0)
    {
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_FAILED,
                               "none of the probe images could be decoded");
      return;
    }
  if (!vl_model_forward (m, px, ok, pp.size, pp.size, VL_FORWARD_CAPTURE_ATTN, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  int T = vl_model_n_tokens_last (m);
  r->T = T;
  r->depth = g->depth;
  r->heads = g->heads;
  r->n_prefix = g->n_prefix;
  r->has_cls = g->class_token;
  r->gh = r->gw = pp.size / g->patch;
  gsize per_attn = (gsize) g->heads * T * T;
  gsize per_image = (gsize) g->depth * per_attn;
  r->attn = g_new (float, per_image * ok);
  for (int b = 0; b < ok; b++)
    vl_model_attention_copy (m, b, r->attn + b * per_image);
  const float *pool = vl_model_pool_attention (m);
  if (pool)
    r->pool = g_memdup2 (pool, sizeof (float) * ok * g->heads * (T - g->n_prefix));
  r->rollout = g_new (float, (gsize) ok * MAX (T, r->gh * r->gw));
  if (!vl_model_rollout (m, r->rollout, &error))
    {
      g_task_return_error (task, error);
      return;
    }
  g_task_return_boolean (task, TRUE);
}

void
vl_job_probe_attention (GObject *source, const char *backbone, VlDataRef *data, const int *items,
                        int n, int size, GCancellable *cancel, GAsyncReadyCallback callback,
                        gpointer user_data)
{
  AttnJob *j = g_new0 (AttnJob, 1);
  j->backbone = g_strdup (backbone);
  j->data = vl_data_ref (data);
  j->items = n > 0 ? g_memdup2 (items, sizeof (int) * n) : NULL;
  j->n = n;
  j->size = size;
  j->r = g_new0 (VlProbeAttention, 1);
  g_autoptr(GTask) task = g_task_new (source, cancel, callback, user_data);
  g_task_set_source_tag (task, vl_job_probe_attention);
  g_task_set_task_data (task, j, attn_job_free);
  g_task_run_in_thread (task, attn_thread);
}

VlProbeAttention *
vl_job_probe_attention_finish (GAsyncResult *result, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_probe_attention, NULL);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return NULL;
  AttnJob *j = g_task_get_task_data (G_TASK (result));
  return g_steal_pointer (&j->r);
}

/* ------------------------------------------------------------------ the probe file */

void
vl_probe_file_clear (VlProbeFile *pf)
{
  g_free (pf->path);
  g_clear_pointer (&pf->image, vl_image_free);
  g_free (pf->ref_attn);
  g_free (pf->now_attn);
  g_free (pf->ref_pool);
  g_free (pf->now_pool);
  g_free (pf->ref_class);
  g_free (pf->now_class);
  g_free (pf->px);
  g_free (pf->live_attn);
  g_free (pf->live_pool);
  g_free (pf->live_class);
  memset (pf, 0, sizeof *pf);
}

typedef struct {
  char         *path;
  char         *backbone;     /* NULL: no backbone yet (the image alone) */
  VlTrainedRef *trained;      /* NULL: no trained model beside it */
  VlProbeFile   result;
} ProbeJob;

static void
probe_job_free (gpointer p)
{
  ProbeJob *j = p;
  g_free (j->path);
  g_free (j->backbone);
  g_clear_pointer (&j->trained, vl_trained_unref);
  vl_probe_file_clear (&j->result);
  g_free (j);
}

/* One forward of img through m with every block's attention kept, copied into *attn as
 * (depth, heads, T, T), and an attention pool's into *pool (NULL without one); the geometry
 * into geo; the top class's name when m names its classes; the model's input into geo->px (when
 * keep_px). */
static gboolean
capture_attention (VlModel *m, const VlImage *img, float **attn, float **pool, VlProbeFile *geo,
                   char **top_class, gboolean keep_px, GError **error)
{
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  const VlGeometry *g = vl_model_geometry (m);
  g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);   /* (C, S, S) */
  vl_preprocess_eval (img, &pp, px);
  if (keep_px)
    {
      g_free (geo->px);
      geo->px = g_memdup2 (px, sizeof (float) * pp.channels * pp.size * pp.size);
      geo->px_channels = pp.channels;
      geo->px_size = pp.size;
    }
  if (!vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_INFER | VL_FORWARD_CAPTURE_ATTN,
                         error))
    return FALSE;
  const int T = vl_model_n_tokens_last (m);
  const gsize per_block = (gsize) g->heads * T * T;
  *attn = g_new (float, per_block * g->depth);   /* (depth, heads, T, T) */
  vl_model_attention_copy (m, 0, *attn);
  *pool = vl_model_pool_attention_dup (m, 0);
  geo->depth = g->depth;
  geo->heads = g->heads;
  geo->T = T;
  geo->n_prefix = g->n_prefix;
  geo->has_cls = g->class_token;
  geo->gh = geo->gw = pp.size / g->patch;
  const float *logits = vl_model_logits (m);
  const char *const *names = vl_model_class_names (m);
  const int K = vl_model_num_classes (m);
  if (logits != NULL && names != NULL && K > 0)
    {
      int best = 0;
      for (int k = 1; k < K; k++)
        if (logits[k] > logits[best])
          best = k;
      *top_class = g_strdup (names[best]);
    }
  return TRUE;
}

static void
probe_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  ProbeJob *j = task_data;
  VlProbeFile *r = &j->result;
  GError *error = NULL;
  /* vl_image_load's errors name the file and say why (truncated, empty, unknown format) */
  g_autoptr(VlImage) img = vl_image_load (j->path, 0, &error);
  if (img == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;
  if (j->backbone == NULL)
    {
      /* no model yet: the image as a 224 crop, without a map */
      VlPreprocess pp = { .channels = 3, .size = 224, .crop_pct = 1.0,
                          .interp = VL_INTERP_BICUBIC, .mean = { 0 }, .std = { 1, 1, 1, 1 } };
      r->image = vl_attention_crop_for_display (img, &pp);
      g_task_return_boolean (task, TRUE);
      return;
    }
  /* a copy of the backbone of our own: the window's model stays main-thread only */
  g_autoptr(VlModel) m = vl_model_load (j->backbone, &error);
  if (m == NULL ||
      !capture_attention (m, img, &r->ref_attn, &r->ref_pool, r, &r->ref_class, TRUE, &error))
    {
      g_prefix_error (&error, "%s: ", j->path);
      g_task_return_error (task, error);
      return;
    }
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  r->image = vl_attention_crop_for_display (img, &pp);
  if (g_task_return_error_if_cancelled (task))
    return;
  if (j->trained)
    {
      /* the trained model (shared with the predictions and export: under its lock) */
      g_mutex_lock (&j->trained->lock);
      VlModel *tm = vl_trained_model (j->trained);
      VlProbeFile geo = { 0 };
      float *now = NULL, *now_pool = NULL;
      g_autoptr(GError) e = NULL;
      if (tm && capture_attention (tm, img, &now, &now_pool, &geo, &r->now_class, FALSE, &e) &&
          geo.depth == r->depth && geo.heads == r->heads && geo.T == r->T && geo.gh == r->gh)
        {
          r->now_attn = g_steal_pointer (&now);
          r->now_pool = g_steal_pointer (&now_pool);
        }
      else if (e)
        g_message ("probe image %s, trained model: %s", j->path, e->message);
      g_free (now);
      g_free (now_pool);
      g_mutex_unlock (&j->trained->lock);
    }
  g_task_return_boolean (task, TRUE);
}

void
vl_job_probe_file (GObject *source, const char *path, const char *backbone,
                   VlTrainedRef *trained, GCancellable *cancel, GAsyncReadyCallback callback,
                   gpointer user_data)
{
  ProbeJob *j = g_new0 (ProbeJob, 1);
  j->path = g_strdup (path);
  j->backbone = g_strdup (backbone);
  j->trained = trained ? vl_trained_ref (trained) : NULL;
  g_autoptr(GTask) task = g_task_new (source, cancel, callback, user_data);
  g_task_set_source_tag (task, vl_job_probe_file);
  g_task_set_task_data (task, j, probe_job_free);
  g_task_run_in_thread (task, probe_thread);
}

gboolean
vl_job_probe_file_finish (GAsyncResult *result, VlProbeFile *out, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_probe_file, FALSE);
  if (!g_task_propagate_boolean (G_TASK (result), error))
    return FALSE;
  ProbeJob *j = g_task_get_task_data (G_TASK (result));
  *out = j->result;
  memset (&j->result, 0, sizeof j->result);
  out->path = g_strdup (j->path);
  return TRUE;
}

/* ------------------------------------------------------------------ export */

typedef struct {
  VlTrainedRef *trained;
  char *dir;          /* timm, recipe: the folder; ONNX: the file */
  VlExportKind kind;
  VlTaskKind task;    /* ONNX: the run's task */
  char *run_dir;      /* ONNX regression: run.json holds the targets' standardisation */
  char **names;       /* ONNX classification: the class names (or NULL) */
  char *note;         /* recipe: advice to show (vl_recipe_export) */
} ExportJob;

static void
export_job_free (gpointer p)
{
  ExportJob *j = p;
  vl_trained_unref (j->trained);
  g_free (j->dir);
  g_free (j->run_dir);
  g_strfreev (j->names);
  g_free (j->note);
  g_free (j);
}

/* The ONNX file of the trained model as its run folder describes it (vl_onnx_run_init: a
 * regression's values in the targets' units, a segmentation run's seg_logits, the names in the
 * metadata), or with the class names alone when there is no folder. Holds the model's lock. */
static gboolean
export_onnx (ExportJob *j, GError **error)
{
  VlModel *m = vl_trained_model (j->trained);
  VlTaskSpec classify = { .kind = VL_TASK_CLASSIFY };
  VlOnnxOptions o = { .task = &classify, .names = (const char *const *) j->names };
  VlOnnxRun run = { 0 };
  if (j->task != VL_TASK_CLASSIFY && j->run_dir == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: this model exports from its run folder (none)", j->dir);
      return FALSE;
    }
  if (j->run_dir != NULL)
    {
      if (!vl_onnx_run_init (&run, j->run_dir, vl_model_geometry (m)->width,
                             (const char *const *) j->names, error))
        return FALSE;
      o = run.options;
    }
  gboolean ok = vl_model_export_onnx (m, &o, j->dir, error);
  vl_onnx_run_clear (&run);
  return ok;
}

static void
export_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  ExportJob *j = task_data;
  GError *error = NULL;
  if (j->kind == VL_EXPORT_RECIPE)
    {
      /* from the run folder's files: the model is not touched */
      if (vl_recipe_export (j->run_dir, j->dir, FALSE, &j->note, &error))
        g_task_return_boolean (task, TRUE);
      else
        g_task_return_error (task, error);
      return;
    }
  g_mutex_lock (&j->trained->lock);
  VlModel *m = vl_trained_model (j->trained);
  gboolean ok = j->kind == VL_EXPORT_ONNX ? export_onnx (j, &error)
                        : g_mkdir_with_parents (j->dir, 0755) == 0 &&
                          vl_model_export (m, j->dir, &error) &&
                          (j->run_dir == NULL ||
                           vl_run_export_head (j->run_dir, vl_model_geometry (m)->width, j->dir,
                                               NULL, &error));
  g_mutex_unlock (&j->trained->lock);
  if (!ok && error == NULL)
    error = g_error_new (G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s", j->dir,
                         g_strerror (errno));
  if (ok)
    g_task_return_boolean (task, TRUE);
  else
    g_task_return_error (task, error);
}

void
vl_job_export (GObject *source, VlExportKind kind, const char *dest, VlTrainedRef *trained,
               VlTaskKind task, const char *run_dir, const char *const *names,
               GAsyncReadyCallback callback, gpointer user_data)
{
  ExportJob *j = g_new0 (ExportJob, 1);
  j->trained = vl_trained_ref (trained);
  j->dir = g_strdup (dest);
  j->kind = kind;
  j->task = task;
  j->run_dir = g_strdup (run_dir);
  j->names = names ? g_strdupv ((char **) names) : NULL;
  g_autoptr(GTask) gtask = g_task_new (source, NULL, callback, user_data);
  g_task_set_source_tag (gtask, vl_job_export);
  g_task_set_task_data (gtask, j, export_job_free);
  g_task_run_in_thread (gtask, export_thread);
}

gboolean
vl_job_export_finish (GAsyncResult *result, VlExportInfo *info, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_export, FALSE);
  const ExportJob *j = g_task_get_task_data (G_TASK (result));
  if (info)
    *info = (VlExportInfo) { j->kind, j->dir, j->task, j->note };
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ------------------------------------------------------------------ copying a run folder */

typedef struct {
  char *src;
  char *dest;
} CopyJob;

static void
copy_job_free (gpointer p)
{
  CopyJob *j = p;
  g_free (j->src);
  g_free (j->dest);
  g_free (j);
}

static void
copy_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  CopyJob *j = task_data;
  GError *error = NULL;
  if (g_mkdir_with_parents (j->dest, 0755) != 0)
    {
      g_task_return_new_error (task, G_IO_ERROR, g_io_error_from_errno (errno), "%s: %s",
                               j->dest, g_strerror (errno));
      return;
    }
  g_autoptr(GDir) dir = g_dir_open (j->src, 0, &error);
  if (dir == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  const char *name;
  while ((name = g_dir_read_name (dir)))
    {
      g_autofree char *from = g_build_filename (j->src, name, NULL);
      if (!g_file_test (from, G_FILE_TEST_IS_REGULAR))
        continue;
      g_autofree char *to = g_build_filename (j->dest, name, NULL);
      g_autoptr(GFile) f = g_file_new_for_path (from);
      g_autoptr(GFile) t = g_file_new_for_path (to);
      if (!g_file_copy (f, t, G_FILE_COPY_OVERWRITE, cancel, NULL, NULL, &error))
        {
          g_task_return_error (task, error);
          return;
        }
    }
  g_task_return_boolean (task, TRUE);
}

void
vl_job_copy_run (GObject *source, const char *src, const char *dest, GCancellable *cancel,
                 GAsyncReadyCallback callback, gpointer user_data)
{
  CopyJob *j = g_new0 (CopyJob, 1);
  j->src = g_strdup (src);
  j->dest = g_strdup (dest);
  g_autoptr(GTask) task = g_task_new (source, cancel, callback, user_data);
  g_task_set_source_tag (task, vl_job_copy_run);
  g_task_set_task_data (task, j, copy_job_free);
  g_task_run_in_thread (task, copy_thread);
}

gboolean
vl_job_copy_run_finish (GAsyncResult *result, const char **dest, GError **error)
{
  g_return_val_if_fail (g_task_get_source_tag (G_TASK (result)) == vl_job_copy_run, FALSE);
  const CopyJob *j = g_task_get_task_data (G_TASK (result));
  if (dest)
    *dest = j->dest;
  return g_task_propagate_boolean (G_TASK (result), error);
}

/* ------------------------------------------------------------------ thumbnails */

typedef struct {
  VlDataRef *data;
  VlSplit    split;
  int       *items;
  int        n;
  int        size;
  GdkTexture **textures;   /* (n) results; NULL where decoding failed */
  VlThumbDone done;
  gpointer   user_data;
  GDestroyNotify destroy;
} ThumbJob;

static void
thumb_job_free (gpointer p)
{
  ThumbJob *j = p;
  vl_data_unref (j->data);
  g_free (j->items);
  for (int i = 0; j->textures && i < j->n; i++)
    g_clear_object (&j->textures[i]);
  g_free (j->textures);
  if (j->destroy)
    j->destroy (j->user_data);
  g_free (j);
}

/* CHW floats in [0, 1] (or normalised with mean/std) to an RGB texture. */
static GdkTexture *
texture_from_chw (const float *px, int channels, int size, const float *mean, const float *std)
{
  guchar *rgb = g_malloc ((gsize) size * size * 3);
  for (int y = 0; y < size; y++)
    for (int x = 0; x < size; x++)
      for (int c = 0; c < 3; c++)
        {
          int cc = channels == 1 ? 0 : c;
          float v = px[((gsize) cc * size + y) * size + x];
          if (mean)
            v = v * std[cc] + mean[cc];
          int b = (int) lrintf (v * 255.0f);
          rgb[((gsize) y * size + x) * 3 + c] = (guchar) CLAMP (b, 0, 255);
        }
  g_autoptr(GBytes) bytes = g_bytes_new_take (rgb, (gsize) size * size * 3);
  return gdk_memory_texture_new (size, size, GDK_MEMORY_R8G8B8, bytes, (gsize) size * 3);
}

static void
thumbs_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  ThumbJob *j = task_data;
  VlPreprocess pp = { .channels = 3, .size = j->size, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
                      .mean = { 0, 0, 0, 0 }, .std = { 1, 1, 1, 1 } };
  g_autofree float *px = g_new (float, (gsize) 3 * j->size * j->size);
  j->textures = g_new0 (GdkTexture *, j->n);
  for (int i = 0; i < j->n; i++)
    {
      if (g_cancellable_is_cancelled (cancel))
        break;
      if (vl_dataset_load (j->data->ds, j->split, j->items[i], &pp, VL_AUGMENT_NONE, 0, px, NULL))
        j->textures[i] = texture_from_chw (px, 3, j->size, NULL, NULL);
    }
  g_task_return_boolean (task, TRUE);
}

static void
thumbs_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  ThumbJob *j = g_task_get_task_data (G_TASK (result));
  if (g_cancellable_is_cancelled (g_task_get_cancellable (G_TASK (result))))
    return;   /* stale: another dataset, or the view closed */
  for (int i = 0; i < j->n; i++)
    j->done (i, j->textures[i], j->user_data);
}

void
vl_job_thumbnails (GObject *source, VlDataRef *data, VlSplit split, const int *items, int n_items,
                   int size, GCancellable *cancel, VlThumbDone done, gpointer user_data,
                   GDestroyNotify destroy)
{
  ThumbJob *j = g_new0 (ThumbJob, 1);
  j->data = vl_data_ref (data);
  j->split = split;
  j->items = g_memdup2 (items, sizeof (int) * MAX (n_items, 1));
  j->n = n_items;
  j->size = size;
  j->done = done;
  j->user_data = user_data;
  j->destroy = destroy;
  g_autoptr(GTask) task = g_task_new (source, cancel, thumbs_done, NULL);
  g_task_set_task_data (task, j, thumb_job_free);
  g_task_run_in_thread (task, thumbs_thread);
}

void
vl_thumb_to_picture (int slot, GdkTexture *tex, gpointer user_data)
{
  GPtrArray *pictures = user_data;
  if (slot >= (int) pictures->len)
    return;
  GtkWidget *pic = g_ptr_array_index (pictures, slot);
  if (tex)
    gtk_picture_set_paintable (GTK_PICTURE (pic), GDK_PAINTABLE (tex));
}

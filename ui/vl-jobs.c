/* vl-jobs.c: the app's background jobs that read files (see vl-jobs.h). */
#include "vl-jobs.h"
#include "vl-detect.h"
#include "vl-threads.h"

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

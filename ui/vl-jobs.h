/* vl-jobs.h: the app's background jobs that read files: a backbone, a dataset, a run folder,
 * thumbnails of a dataset's images.
 * Each runs on a worker thread at the compute threads' priority (vl-threads.h) and reports to
 * the main loop in GIO's async style: the callback gets the source object and calls _finish.
 * Cancelling drops the result (the callback still runs, with G_IO_ERROR_CANCELLED where the job
 * could stop).
 *
 *   vl_job_load_model (G_OBJECT (win), path, cancel, loaded, NULL);
 *   ...
 *   VlModel *m = vl_job_load_model_finish (result, &seconds, &error);
 */
#pragma once

#include <gtk/gtk.h>

#include "vl-dataset.h"
#include "vl-refs.h"
#include "vl-run.h"
#include "vl-trainer.h"

G_BEGIN_DECLS

void        vl_job_load_model          (GObject *source, const char *path, GCancellable *cancel,
                                        GAsyncReadyCallback callback, gpointer user_data);
/* The model (owned by the caller), or NULL with the error; seconds: the load's wall time. */
VlModel    *vl_job_load_model_finish   (GAsyncResult *result, double *seconds, GError **error);
/* The path the job was started with (the task's data). */
const char *vl_job_load_model_path     (GAsyncResult *result);

/* Opens spec with options; a folder that opens neither as classes, targets nor masks is tried
 * as a detection set (COCO, YOLO, VOC without masks) when options->detect is not set. */
void        vl_job_open_dataset        (GObject *source, const char *spec,
                                        const VlDatasetOptions *options, GCancellable *cancel,
                                        GAsyncReadyCallback callback, gpointer user_data);
/* The dataset (owned by the caller) and the options it opened with, or NULL with the error. */
VlDataset  *vl_job_open_dataset_finish (GAsyncResult *result, VlDatasetOptions *used,
                                        GError **error);

/* What a run folder holds, for the app: its configuration, its trained model (NULL before the
 * first checkpoint) with its dense head, class names, task and metrics. */
typedef struct {
  char          *dir;
  VlTrainConfig  cfg;
  VlModel       *model;
  char         **class_names;
  GPtrArray     *epochs;      /* VlEpochMetrics * */
  VlRunTask      task;
  VlSegHead     *seg_head;    /* segmentation: seg_head.safetensors */
  VlDetHead     *det_head;    /* detection: det_head.safetensors */
  gboolean       have_cfg;
} VlRunContents;

void           vl_run_contents_free     (VlRunContents *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlRunContents, vl_run_contents_free)

void           vl_job_read_run          (GObject *source, const char *dir,
                                         GAsyncReadyCallback callback, gpointer user_data);
/* The contents (owned by the caller), or NULL with the error naming the file. */
VlRunContents *vl_job_read_run_finish   (GAsyncResult *result, GError **error);

/* Items of a split decoded as size x size thumbnails (the whole image squashed) on a worker
 * thread; done (slot, texture or NULL where decoding failed) runs on the main thread for each,
 * unless cancel was cancelled meanwhile; destroy (user_data) when the job goes. */
typedef void (*VlThumbDone) (int slot, GdkTexture *texture, gpointer user_data);
void        vl_job_thumbnails          (GObject *source, VlDataRef *data, VlSplit split,
                                        const int *items, int n_items, int size,
                                        GCancellable *cancel, VlThumbDone done,
                                        gpointer user_data, GDestroyNotify destroy);
/* A VlThumbDone for user_data a GPtrArray of GtkPictures, one per slot. */
void        vl_thumb_to_picture        (int slot, GdkTexture *texture, gpointer user_data);

G_END_DECLS

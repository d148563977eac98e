/* vl-jobs.h: the app's background jobs: reading a backbone, a dataset, a run folder,
 * thumbnails of a dataset's images; exporting the trained model, copying a run folder.
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

/* The trained model exported (under its lock): as a timm folder (model.safetensors,
 * config.json; with the run's head when run_dir is given), as an ONNX file (as the run folder
 * describes it, vl_onnx_run_init, or with the class names alone without one; a task other than
 * classification needs its run folder), or the run's recipe for PyTorch (vl_recipe_export of
 * run_dir; the model is not touched). dest: the folder, or the ONNX file. */
typedef enum {
  VL_EXPORT_TIMM,
  VL_EXPORT_ONNX,
  VL_EXPORT_RECIPE,
} VlExportKind;
void        vl_job_export              (GObject *source, VlExportKind kind, const char *dest,
                                        VlTrainedRef *trained, VlTaskKind task,
                                        const char *run_dir, const char *const *names,
                                        GAsyncReadyCallback callback, gpointer user_data);
/* What the export was asked, and the recipe's advice (the job's strings: valid while result
 * is). */
typedef struct {
  VlExportKind kind;
  const char  *dest;
  VlTaskKind   task;
  const char  *note;          /* the recipe's advice to show, or NULL */
} VlExportInfo;
/* TRUE when written; info is filled either way. */
gboolean    vl_job_export_finish       (GAsyncResult *result, VlExportInfo *info, GError **error);

/* A run folder's files (not its subfolders) copied into dest, made when missing. */
void        vl_job_copy_run            (GObject *source, const char *src, const char *dest,
                                        GCancellable *cancel, GAsyncReadyCallback callback,
                                        gpointer user_data);
/* TRUE when copied; dest: the folder (the job's string: valid while result is). */
gboolean    vl_job_copy_run_finish     (GAsyncResult *result, const char **dest, GError **error);

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

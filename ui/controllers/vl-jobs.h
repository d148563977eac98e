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

/* The 8-bit crop a model sees, from its normalised CHW floats (pp: the preprocessing). */
VlImage    *vl_image_from_chw          (const float *px, const VlPreprocess *pp);

/* The attention of a dataset's validation items (the probes) under a copy of the backbone at
 * path backbone loaded on the worker thread (the window's model stays main-thread only), at
 * size x size (0: the backbone's input): the crops, labels and names of the items that decoded,
 * every block's attention and the rollout. */
typedef struct {
  int          n;           /* the items that decoded */
  VlImage    **images;      /* (n) the crops the model sees */
  int         *labels;      /* (n) */
  char       **names;       /* (n + 1) the files' base names */
  float       *attn;        /* (n, depth, heads, T, T) */
  float       *rollout;     /* (n, gh * gw) */
  float       *pool;        /* (n, heads, gh * gw) the attention pool's (SigLIP's); NULL without */
  int          depth, heads, T, n_prefix, gh, gw;
  gboolean     has_cls;
} VlProbeAttention;
void        vl_probe_attention_free    (VlProbeAttention *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlProbeAttention, vl_probe_attention_free)
void        vl_job_probe_attention     (GObject *source, const char *backbone, VlDataRef *data,
                                        const int *items, int n, int size,
                                        GCancellable *cancel, GAsyncReadyCallback callback,
                                        gpointer user_data);
/* The result (owned by the caller), or NULL with the error (none decoded, a failed load). */
VlProbeAttention *vl_job_probe_attention_finish (GAsyncResult *result, GError **error);

/* The probe file: one image the user chose (dropped on the window, "Open Probe Image…",
 * --probe) or, with a backbone and no dataset, the first of the shipped samples
 * (data/samples); its attention under the pretrained backbone and, once a run has a trained
 * model, under that one, computed on a worker thread (vl_job_probe_file); while a run trains,
 * under the run's model as it is now, from the trainer's PROBES events (the preprocessed
 * pixels go to the trainer with vl_trainer_set_user_probe; the live_* members are the
 * window's, vl-window-probe.c). */
typedef struct {
  char     *path;           /* NULL: none */
  gboolean  is_sample;      /* the fallback sample, replaced by the dataset's probes */
  VlImage  *image;          /* the crop the model sees, RGB (NULL before the first result) */
  float    *ref_attn;       /* (depth, heads, T, T) the pretrained backbone's; NULL without one */
  float    *now_attn;       /* (depth, heads, T, T) the trained model's; NULL without one */
  float    *ref_pool;       /* (heads, gh * gw) the attention pool's of each (SigLIP's); NULL */
  float    *now_pool;       /* without one */
  char     *ref_class;      /* the pretrained head's top class, when it names its classes */
  char     *now_class;      /* the trained model's top class */
  int       depth, heads, T, n_prefix, gh, gw;
  gboolean  has_cls;
  float    *px;             /* (px_channels, px_size, px_size) the backbone's input; NULL
                             * without a backbone */
  int       px_channels, px_size;
  /* the running trainer's view of it (PROBES events) */
  guint64   live_serial;    /* what vl_trainer_set_user_probe returned; 0: not given */
  float    *live_attn;      /* (depth, heads, T, T) at live_step; NULL before the first event */
  float    *live_pool;      /* (heads, gh * gw) its attention pool's, or NULL */
  int64_t   live_step;
  char     *live_class;     /* the run's top class at live_step */
} VlProbeFile;
/* Frees pf's members and zeroes it. */
void        vl_probe_file_clear        (VlProbeFile *pf);
/* The image file at path decoded (vl_image_load: its errors name the file) and run through a
 * copy of the backbone at `backbone` loaded on the worker thread (NULL: no backbone yet, the
 * image alone as a 224 crop) and, when trained is given, through the trained model under its
 * lock (a failure there only drops the "now" side). */
void        vl_job_probe_file          (GObject *source, const char *path, const char *backbone,
                                        VlTrainedRef *trained, GCancellable *cancel,
                                        GAsyncReadyCallback callback, gpointer user_data);
/* TRUE with the result moved into *out (path set, is_sample and live_* left to the caller). */
gboolean    vl_job_probe_file_finish   (GAsyncResult *result, VlProbeFile *out, GError **error);

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

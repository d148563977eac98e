/* vl-predictions.h: the trained model's predictions of the validation split, for the views that
 * show them: every image's class and its probability (the confusion cells' gallery), or its
 * mask and own IoU (the mask view), or its boxes with its missed and false ones (the box view),
 * and the model's attention of the probes. Computed on a worker thread (vl_job_predict, in
 * GIO's async style as vl-jobs.h) under the trained model's lock. */
#pragma once

#include <gtk/gtk.h>

#include "vl-dataset.h"
#include "vl-refs.h"
#include "vl-trainer.h"

G_BEGIN_DECLS

/* the median image and at most this many of the worst are kept for display */
#define VL_PREDICTIONS_WORST 12

/* Per-image predictions on the validation split of a classifier (for the gallery). */
typedef struct {
  int    n;
  int   *label;
  int   *predicted;
  float *confidence;       /* softmax probability of the predicted class */
} VlPredictions;

/* A trained segmentation model's predictions over the validation split. */
typedef struct _VlSegPredictions VlSegPredictions;
struct _VlSegPredictions {
  int       n, S, K;
  double   *iou;            /* (n) each image's mean IoU over its classes (NaN: none counted) */
  int      *order;          /* (n) items by IoU, the worst first (NaN last) */
  int       n_kept;         /* the median image and the worst few, for display */
  int      *kept;           /* (n_kept) items */
  uint8_t  *pred, *truth;   /* (n_kept, S, S) their masks at the input size */
  VlImage **images;         /* (n_kept) the crops the model saw */
  char    **names;          /* (n_kept + 1) base names */
  char    **class_names;    /* (K + 1) the dataset's */
};

/* A trained detector's boxes of the validation split. */
typedef struct _VlDetPredictions VlDetPredictions;
struct _VlDetPredictions {
  int          n, K;
  GArray      *gt, *dt;       /* VlCocoBox, .image = the item, in its own pixels */
  int         *missed, *false_pos;   /* (n) at VL_DET_PANEL_SCORE */
  int          n_kept;        /* the median image and the worst few, for display */
  int         *kept;          /* (n_kept) items */
  int         *width, *height;          /* (n_kept) their own sizes */
  GdkTexture **images;        /* (n_kept) the input the model saw (squashed) */
  char       **names;         /* (n_kept + 1) base names */
  int          n_worst;       /* kept[1 .. n_worst] are the worst, kept[0] the median */
  char       **class_names;   /* (K + 1) the dataset's, background first */
};

void  vl_seg_predictions_free    (VlSegPredictions *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlSegPredictions, vl_seg_predictions_free)
void  vl_det_predictions_free    (VlDetPredictions *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlDetPredictions, vl_det_predictions_free)

/* Worker thread: the masks (at size x size, 0: the model's input) and each image's IoU. */
VlSegPredictions *vl_seg_predictions_compute (VlModel *m, VlSegHead *h, VlDataset *ds,
                                              int size, GCancellable *cancel, GError **error);
/* Worker thread: every validation image's boxes and detections (size x size input, 0: the
 * model's), each image's missed and false boxes, the median and worst images' pictures. */
VlDetPredictions *vl_det_predictions_compute (VlModel *m, VlDetHead *h, VlDataset *ds,
                                              int size, GCancellable *cancel, GError **error);

/* What vl_job_predict found: one of pred (classification), seg or det, by the task. */
typedef struct {
  VlDataRef        *data;          /* the dataset the predictions index */
  VlPredictions     pred;
  VlSegPredictions *seg;
  VlDetPredictions *det;
  float            *final_pool;    /* (n_probes, heads, gh * gw) its attention pool's; NULL
                                    * without one */
  float            *final_attn;    /* (n_probes, depth, heads, T, T) the trained model's; NULL
                                    * when a probe did not decode */
  int               attn_T;
} VlPredictResult;
void  vl_predict_result_free     (VlPredictResult *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlPredictResult, vl_predict_result_free)

/* The trained model's predictions of data's validation split for task (size: a dense task's
 * input side, 0: the model's), and its attention of the probe items. */
void  vl_job_predict             (GObject *source, VlTrainedRef *trained, VlDataRef *data,
                                  VlTaskKind task, int size, const int *probe_items,
                                  int n_probes, GCancellable *cancel,
                                  GAsyncReadyCallback callback, gpointer user_data);
/* The result (owned by the caller), or NULL with the error (cancelled: G_IO_ERROR_CANCELLED). */
VlPredictResult *vl_job_predict_finish (GAsyncResult *result, GError **error);

G_END_DECLS

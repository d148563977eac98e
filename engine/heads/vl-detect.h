/* vl-detect.h: the detection task (VL_TASK_DETECT) to the engine: its metrics, and the
 * detections of one image, for the trainer, the CLI and the app (its evaluation is
 * vl_evaluate_detect in vl-head.h).
 *
 *   detect   torchvision's FCOS head (vl-det-head.h) over the final-norm token grid; images
 *            squashed to the input size (boxes scaled with them); FCOS.compute_loss; scored
 *            with COCO's AP@[.5:.95], AP@.5, per-class AP and AR@100 (vl-coco-eval.h) with the
 *            detections (score 0.05) mapped back to each image's own pixels, against its boxes
 *            as annotated. Class 0 is the background (no box has it). */
#pragma once

#include <gio/gio.h>
#include <glib.h>

#include "vl-coco-eval.h"
#include "vl-dataset.h"
#include "vl-det-head.h"
#include "vl-image.h"
#include "vl-model.h"

G_BEGIN_DECLS

/* The score threshold of COCO scoring (torchvision's reference evaluation). */
#define VL_DETECT_EVAL_SCORE 0.05f

typedef struct {
  int      n_classes;     /* dataset classes, background included */
  int64_t  n;             /* images evaluated */
  double   loss;          /* mean FCOS loss per batch at the input size (NaN without one) */
  double   ap, ap50, ap75, ar100;
  double  *class_ap, *class_ap50;   /* (K); NaN for a class without boxes (the background) */
  int64_t  n_gt, n_dt;
  /* accumulating */
  GArray  *gt, *dt;       /* VlCocoBox */
  double   loss_sum;
  int64_t  loss_n;
} VlDetResult;

void     vl_det_result_begin  (VlDetResult *r, int n_classes);
/* One image's detections at the input size S, scaled to its own width x height, against its
 * boxes there (gt (n_gt, 4), gt_labels). */
void     vl_det_result_add    (VlDetResult *r, const VlDetection *dets, int n_dets, int S,
                               int width, int height, const float *gt, const int *gt_labels,
                               int n_gt);
/* A batch's loss (the mean of its images' FCOS loss, as training computes it). */
void     vl_det_result_add_loss (VlDetResult *r, double loss, int n_images);
void     vl_det_result_end    (VlDetResult *r);
void     vl_det_result_clear  (VlDetResult *r);
void     vl_det_result_copy   (VlDetResult *dst, const VlDetResult *src);

/* Where the labels of n boxes go so that none covers another (for drawing them): box i (x0, y0,
 * x1, y1 in boxes[4i..]) gets a w[i] x h[i] tab at (xy[2i], xy[2i+1]), tried over its top edge,
 * inside it, under its bottom edge, inside that, in that order; the first spot that covers no tab
 * placed before it, else the least covered; x moved left as needed to end by width, y kept
 * within [top, bottom]. Boxes in order of priority (the best score first). */
void     vl_det_place_labels  (const double *boxes, const double *w, const double *h, int n,
                               double width, double top, double bottom, double *xy);

/* Scales detections at the input size S to an image of width x height. */
void     vl_detections_to_image (VlDetection *dets, int n, int S, int width, int height);

/* The detections of one image (any size, 1 to 4 channels) by the model and its head: squashed
 * to size x size (0: the model's input size), FCOS.postprocess_detections with p, the boxes in
 * the image's own pixels, those of the background class 0 left out (scoring keeps them, as
 * torchvision does: they cannot match a box). dets: room for p->max_dets. Returns the count, or
 * -1 (error set). */
int      vl_detect_image      (VlModel *m, VlDetHead *h, const VlImage *img, int size,
                               const VlFcosPostprocess *p, VlDetection *dets, GError **error);

/* A detection run's trained head (RUN/det_head.safetensors) for the model of that run
 * (vl_run_load_model): with vl_detect_image, one image's boxes as the run predicts them. */
VlDetHead *vl_detect_load_run_head (const char *run_dir, VlModel *m, GError **error);

G_END_DECLS

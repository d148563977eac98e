/* vl-coco-eval.h: COCO box AP as pycocotools' COCOeval computes it (iouType "bbox", area "all",
 * at most 100 detections per image and category, no crowd boxes):
 *   - per image and category, detections sorted by score (stable), the first 100 kept, greedily
 *     matched in that order to the unmatched ground truth of highest IoU >= t (the later of equal
 *     IoUs), for the 10 thresholds t = .50:.05:.95;
 *   - per category, every image's detections merged by score (stable, images in index order),
 *     cumulated true and false positives, recall tp / n_gt, precision tp / (tp + fp + 2^-52) made
 *     monotone from the end, read at the 101 recall points 0:.01:1 (the first index whose recall
 *     reaches the point, 0 past the end);
 *   - AP = mean of that precision over thresholds, recall points and the categories that have
 *     ground truth (-1 when none has); AR@100 = mean over thresholds and those categories of the
 *     final recall.
 * Images without ground truth count (their detections are false positives); images without
 * detections count (their ground truth is missed). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VL_COCO_MAX_DETS 100

typedef struct {
  int   image;      /* in [0, n_images) */
  int   category;   /* in [0, n_classes) */
  float box[4];     /* x1, y1, x2, y2 */
  float score;      /* detections only */
} VlCocoBox;

typedef struct {
  double ap;        /* AP@[.5:.95] (COCOeval stats[0]) */
  double ap50;      /* stats[1] */
  double ap75;      /* stats[2] */
  double ar100;     /* AR@100 (stats[8]) */
} VlCocoStats;

/* gt (n_gt), dt (n_dt) in any order (ties of score are broken by this order, as pycocotools
 * breaks them by annotation order). class_ap, class_ap50: (n_classes) or NULL, -1 for a category
 * without ground truth. Indices out of range are a broken invariant (g_assert). */
void vl_coco_eval (VlCocoStats *stats, double *class_ap, double *class_ap50,
                   const VlCocoBox *gt, int n_gt, const VlCocoBox *dt, int n_dt, int n_images,
                   int n_classes);

/* COCO's greedy matching at one IoU threshold, for drawing and galleries: the detections
 * scoring at least score_thresh, per image and category by decreasing score (stable), each take
 * the unmatched ground truth box of the same image and category with the highest IoU >=
 * iou_thresh (the later of equal IoUs). dt_matched (n_dt), gt_matched (n_gt): TRUE for the boxes
 * matched (detections under the threshold are FALSE); either may be NULL. */
void vl_det_match        (gboolean *dt_matched, gboolean *gt_matched, const VlCocoBox *gt,
                          int n_gt, const VlCocoBox *dt, int n_dt, float score_thresh,
                          float iou_thresh);
/* What went wrong per image, for a gallery of the worst: after vl_det_match, missed (n_images)
 * receives each image's unmatched ground truth, false_pos (n_images) its unmatched detections
 * scoring at least score_thresh. */
void vl_det_image_errors (int *missed, int *false_pos, const VlCocoBox *gt, int n_gt,
                          const VlCocoBox *dt, int n_dt, int n_images, float score_thresh,
                          float iou_thresh);

G_END_DECLS

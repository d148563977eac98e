/* vl-seg.h: semantic segmentation's loss and metric over channels-last logits.
 *
 * Logits are (N, K) rows, N = B H W pixels of a channels-last grid (B, H, W, K), as vl-conv.h
 * produces them; labels are one byte per pixel (B, H, W), 255 (VL_SEG_IGNORE) = not counted. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

#define VL_SEG_IGNORE 255

/* F.cross_entropy (logits, labels, ignore_index=ignore, reduction="mean"): the mean of
 * -log softmax (z)[y] over the pixels whose label is not `ignore`. dlogits (N, K) += d loss / d z
 * (NULL: loss only; ignored pixels get nothing). *n_counted (may be NULL) receives the number of
 * counted pixels. With no pixel counted PyTorch returns NaN (0 / 0); this returns 0 and adds
 * nothing, so that an all-ignored crop does not stop training. A label that is neither `ignore`
 * nor in [0, K) is a broken invariant (g_assert). */
double vl_seg_cross_entropy (float *dlogits, const float *logits, const uint8_t *labels,
                             int64_t N, int K, int ignore, int64_t *n_counted);

/* pred (N) = argmax over the K logits of each row (the first of equal maxima, as torch). */
void   vl_seg_argmax        (uint8_t *pred, const float *logits, int64_t N, int K);

/* mmsegmentation's IoUMetric: per class, intersection, union, predicted and labelled areas
 * summed over the whole split (pixels labelled `ignore` left out, labels outside [0, K) not
 * counted, as its histc does), then
 *   IoU_k = I_k / U_k, Acc_k = I_k / label_k (NaN for 0 / 0),
 *   mIoU = nanmean IoU, mAcc = nanmean Acc, aAcc = sum I / sum label.
 * So a class absent from both the labels and the predictions (U = 0) is NaN and skipped; one
 * predicted but never labelled has IoU 0 (counted) and Acc NaN (skipped). */
typedef struct {
  int      K;
  int      ignore;
  int64_t *area_intersect;   /* (K) */
  int64_t *area_union;       /* (K) */
  int64_t *area_pred;        /* (K) */
  int64_t *area_label;       /* (K) */
} VlSegMetric;

VlSegMetric *vl_seg_metric_new   (int K, int ignore);
void         vl_seg_metric_free  (VlSegMetric *m);
void         vl_seg_metric_reset (VlSegMetric *m);
/* Adds one image (or any set of pixels): pred, label (n). */
void         vl_seg_metric_add   (VlSegMetric *m, const uint8_t *pred, const uint8_t *label,
                                  int64_t n);
/* iou, acc: (K) or NULL, NaN where undefined. Returns mIoU; *macc, *aacc may be NULL. All NaN
 * when no class is defined (nothing added). */
double       vl_seg_metric_compute (const VlSegMetric *m, double *iou, double *acc, double *macc,
                                    double *aacc);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlSegMetric, vl_seg_metric_free)

G_END_DECLS

/* vl-fcos.h: torchvision 0.14's FCOS on one feature level (the ViT's patch grid), without the
 * convolutions of its head (those are vl_conv2d_forward/backward, 3x3 stride 1 padding 1):
 * anchors, the box coder, the matching of FCOS.compute_loss, its three losses with their
 * gradients, and FCOS.postprocess_detections.
 *
 * Layouts are the head's outputs as torchvision returns them, one row per location a = i gw + j
 * of the grid (which is the channels-last output of vl_conv2d): cls (B, A, K) logits,
 * reg (B, A, 4) the box regression after its ReLU, ctr (B, A) centerness logits. Boxes are
 * (x1, y1, x2, y2) in the pixels of the (resized) input image. K is the number of logit channels
 * and labels index them directly (torchvision's FCOS has no background channel of its own).
 * Losses return their sum (unscaled) and *add* `scale` times its gradient into d* (NULL: loss
 * only), so that a caller can divide by a count or weight them. */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* anchors (gh gw, 4): AnchorGenerator with one size = stride and aspect ratio 1: the base
 * anchor round (-s/2), round (s/2) (half to even, as torch.round) shifted by (j s, i s). Their
 * centres are the cells' top-left corners, as torchvision's are. */
void   vl_fcos_anchors (float *anchors, int gh, int gw, int stride);

/* BoxLinearCoder (normalize_by_size=True). codes (n, 4) = ((cx - x1) / w, (cy - y1) / h,
 * (x2 - cx) / w, (y2 - cy) / h) of boxes (n, 4) against anchors (n, 4) (centre cx, cy, size w, h). */
void   vl_box_encode (float *codes, const float *anchors, const float *boxes, int64_t n);
/* Its inverse: boxes (n, 4) from codes (n, 4). */
void   vl_box_decode (float *boxes, const float *codes, const float *anchors, int64_t n);
/* dcodes (n, 4) += the decode's transpose applied to dboxes (n, 4). */
void   vl_box_decode_backward (float *dcodes, const float *dboxes, const float *anchors,
                               int64_t n);

/* torchvision.ops.sigmoid_focal_loss, reduction "sum": sum of
 * alpha_t * BCE (x, t) * (1 - p_t)^gamma over n logits x, targets t (n) in [0, 1]; alpha < 0
 * disables alpha_t. dlogits (n) += scale * d sum / d x. */
double vl_sigmoid_focal_loss (float *dlogits, const float *logits, const float *targets,
                              int64_t n, float alpha, float gamma, float scale);
/* torchvision.ops.generalized_box_iou_loss (eps 1e-7), reduction "sum": sum of 1 - GIoU over n
 * box pairs pred (n, 4), target (n, 4). dpred (n, 4) += scale * d sum / d pred (at ties of the
 * min / max the gradient is split in half, as torch's minimum / maximum do). */
double vl_giou_loss (float *dpred, const float *pred, const float *target, int64_t n,
                     float scale);
/* F.binary_cross_entropy_with_logits, reduction "sum". dlogits (n) += scale * d sum / d x. */
double vl_bce_with_logits (float *dlogits, const float *logits, const float *targets, int64_t n,
                           float scale);

/* FCOS.compute_loss's matching for one image, in float32 as torchvision does it:
 * matched (A) = the index of the ground-truth box of anchor a, or -1. A box matches an anchor
 * when the anchor's centre lies in it, within radius * anchor size of its centre (both axes), and
 * the largest of its four distances lies in (lower, upper) (one level: 0 and INFINITY); of
 * several, the smallest area wins (1e8 - area compared in float32, the first on ties). */
void   vl_fcos_match (int *matched, const float *anchors, int A, const float *boxes, int n_boxes,
                      float radius, float lower, float upper);

/* centerness (n) of the codes (n, 4) as FCOSHead.compute_loss's target:
 * sqrt (min (l, r) / max (l, r) * min (t, b) / max (t, b)). */
void   vl_fcos_centerness (float *ctr, const float *codes, int64_t n);

typedef struct {
  const float *boxes;    /* (n, 4) */
  const int   *labels;   /* (n), in [0, K) */
  int          n;
} VlFcosTarget;

typedef struct {
  double  classification;   /* each divided by max (1, n_foreground), as torchvision returns */
  double  bbox_regression;
  double  bbox_ctrness;
  int64_t n_foreground;
} VlFcosLosses;

/* FCOS.compute_loss over a batch: matching (radius 1.5, one level) per image, then the focal
 * loss (alpha 0.25, gamma 2) over every location and class, the GIoU loss of the decoded boxes
 * and the centerness BCE over the foreground, each summed and divided by max (1, number of
 * foreground locations in the batch). dcls (B, A, K), dreg (B, A, 4), dctr (B, A) += the
 * gradient of (classification + bbox_regression + bbox_ctrness); any may be NULL. matched:
 * NULL or (B, A) receiving the matches. */
void   vl_fcos_loss (VlFcosLosses *out, float *dcls, float *dreg, float *dctr, int *matched,
                     const float *cls, const float *reg, const float *ctr, const float *anchors,
                     const VlFcosTarget *targets, int B, int A, int K);

typedef struct {
  float score_thresh;   /* torchvision's default 0.2; 0.05 when scoring */
  float nms_thresh;     /* 0.6 */
  int   topk;           /* 1000 */
  int   max_dets;       /* 100 */
} VlFcosPostprocess;

#define VL_FCOS_POSTPROCESS_DEFAULT ((VlFcosPostprocess) { 0.2f, 0.6f, 1000, 100 })

typedef struct {
  float box[4];   /* x1, y1, x2, y2, clipped to the image */
  float score;
  int   label;
} VlDetection;

/* FCOS.postprocess_detections for one image: scores sqrt (sigmoid (cls) sigmoid (ctr)) over
 * (A, K), those above score_thresh, the topk best, decoded, clipped to (img_h, img_w), class-wise
 * NMS, the first max_dets by decreasing score. dets: room for p->max_dets. Returns the count. */
int    vl_fcos_postprocess (VlDetection *dets, const float *cls, const float *reg,
                            const float *ctr, const float *anchors, int A, int K, int img_h,
                            int img_w, const VlFcosPostprocess *p);

/* torchvision.ops.batched_nms: keep (n) receives the indices kept, by decreasing score; boxes of
 * different labels never suppress each other; IoU > iou_thresh suppresses. Returns the count. */
int    vl_batched_nms (int *keep, const float *boxes, const float *scores, const int *labels,
                       int n, float iou_thresh);

G_END_DECLS

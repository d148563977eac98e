/* vl-det-head.h: torchvision's FCOS head over a ViT's final-norm patch-token grid, one feature
 * level (stride = the patch): FCOSHead (W, 1, K, num_convs=0), i.e. three 3x3 convolutions
 * (stride 1, padding 1) of the (gh, gw) grid of patch tokens:
 *
 *   head.classification_head.cls_logits    W -> K   class logits (bias -log 99: prior 0.01)
 *   head.regression_head.bbox_reg          W -> 4   ltrb box regression, then ReLU
 *   head.regression_head.bbox_ctrness      W -> 1   centerness logit
 *
 * K counts torchvision's background class 0 (FCOS (num_classes = K)): the datasets of task
 * detect number their object classes from 1 and a head has one channel per dataset class.
 * Outputs are as FCOSHead.forward returns them, one row per location a = i gw + j:
 * cls (B, A, K), reg (B, A, 4), ctr (B, A). Anchors (A, 4) are vl_fcos_anchors of the grid.
 * Tensors keep torchvision's names and layouts ([Cout, W, 3, 3]), so a checkpoint is loaded as
 * FCOS's `head` submodule. Prefix tokens (CLS, registers) are dropped on the way in; their
 * gradient is zero on the way out.
 *
 * Like the seg head, it lives outside the model (vl_model_set_head (m, VL_HEAD_NONE, …)):
 *
 *   vl_model_forward (m, x, B, S, S, VL_FORWARD_TRAIN, &e);
 *   vl_det_head_forward (h, vl_model_tokens_final (m), B, T, n_prefix, S/p, S/p, p);
 *   vl_det_head_loss (h, targets, &losses);          // the gradient on the three outputs
 *   vl_det_head_backward (h, d_tokens);
 *   vl_model_backward_from (m, VL_GRAD_TOKENS, d_tokens, &e);
 *   vl_model_adamw_step (m, &opt);
 *   vl_head_params_adamw (vl_det_head_params (h, &n), n, &opt, 1.0f);
 *
 * The trainer drives it through vl-head.h (vl_head_new_det).
 */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-fcos.h"
#include "vl-head-param.h"
#include "vl-model.h"
#include "vl-safetensors.h"

G_BEGIN_DECLS

typedef struct _VlDetHead VlDetHead;

/* A head for tokens of width `width` and n_classes channels (background included; 2 to 1000),
 * initialised as torchvision initialises it: weights N(0, 0.01), cls_logits bias
 * -log ((1 - 0.01) / 0.01), the other biases 0. NULL when the sizes do not fit. */
VlDetHead  *vl_det_head_new           (int width, int n_classes, uint64_t seed);
void        vl_det_head_free          (VlDetHead *h);
int         vl_det_head_width         (VlDetHead *h);
int         vl_det_head_n_classes     (VlDetHead *h);
int64_t     vl_det_head_n_params      (VlDetHead *h);

/* Its parameters as the trainer and checkpoints handle every head (vl-head-param.h): *n (six)
 * of them, in the order of the accessors below. */
VlHeadParam *vl_det_head_params       (VlDetHead *h, int *n);
/* Its six tensors, by their torchvision names. Gradients are NULL before the first backward. */
int         vl_det_head_n_tensors     (VlDetHead *h);
const char *vl_det_head_tensor_name   (VlDetHead *h, int i);
float      *vl_det_head_tensor_data   (VlDetHead *h, int i, int *ndim, int64_t *shape,
                                       int64_t *numel);
float      *vl_det_head_tensor_grad   (VlDetHead *h, int i);
int         vl_det_head_find_tensor   (VlDetHead *h, const char *name);

/* Forward from tokens (B, T, W) whose last gh * gw rows of each image are the patch grid
 * (T = n_prefix + gh gw), patch `stride` pixels apart. The outputs and the anchors below are
 * valid until the next forward. */
void        vl_det_head_forward       (VlDetHead *h, const float *tokens, int B, int T,
                                       int n_prefix, int gh, int gw, int stride);
const float*vl_det_head_cls_logits    (VlDetHead *h);   /* (B, A, K) */
const float*vl_det_head_bbox_regression (VlDetHead *h); /* (B, A, 4), after the ReLU */
const float*vl_det_head_bbox_ctrness  (VlDetHead *h);   /* (B, A) */
const float*vl_det_head_anchors       (VlDetHead *h);   /* (A, 4) */
int         vl_det_head_n_locations   (VlDetHead *h);   /* A = gh gw of the last forward */

/* FCOS.compute_loss (vl_fcos_loss) of the last forward against targets (B) (boxes in the
 * input's pixels, labels in [1, K)); keeps the gradient of the total on the three outputs for
 * vl_det_head_backward. Returns classification + bbox_regression + bbox_ctrness; out (or NULL)
 * receives each. */
double      vl_det_head_loss          (VlDetHead *h, const VlFcosTarget *targets,
                                       VlFcosLosses *out);
/* Backward of the last loss: the parameter gradients (overwritten) and, when d_tokens is not
 * NULL, d loss / d tokens (B, T, W), overwritten, zero on the prefix rows. */
void        vl_det_head_backward      (VlDetHead *h, float *d_tokens);
/* FCOS.postprocess_detections of image b of the last forward, whose input was img_h x img_w
 * pixels: dets has room for p->max_dets; returns the count. */
int         vl_det_head_detect        (VlDetHead *h, int b, int img_h, int img_w,
                                       const VlFcosPostprocess *p, VlDetection *dets);

/* Its AdamW step, moments and step counts: on vl_det_head_params (vl_head_params_adamw, ...). */

/* Adds every tensor to w (data referenced: keep the head alive until the write). */
void        vl_det_head_add_to_writer (VlDetHead *h, VlSafetensorsWriter *w);
/* TRUE when st holds an FCOS head (head.classification_head.cls_logits.weight). */
gboolean    vl_det_head_in_safetensors (VlSafetensors *st);
/* A head read from st (K from cls_logits); errors name the file, the tensor and the shapes. */
VlDetHead  *vl_det_head_from_safetensors (VlSafetensors *st, int width, GError **error);
VlDetHead  *vl_det_head_load          (const char *path, int width, GError **error);
/* The FCOS head of a checkpoint (head.classification_head.* in the file) or of a folder (its
 * model.safetensors, else det_head.safetensors: a detection run). *out is NULL when there is
 * none; FALSE only when one is there but does not read. */
gboolean    vl_det_head_find          (const char *source, int width, VlDetHead **out,
                                       GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlDetHead, vl_det_head_free)

G_END_DECLS

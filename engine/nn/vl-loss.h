/* vl-loss.h: losses as kernels. Each returns the mean loss (in double) and, when d is not NULL,
 * writes (not adds) its gradient with respect to the predictions, already divided by the count
 * the mean runs over, so that the model's backward can start from it
 * (vl_model_backward_from). They compute what PyTorch's functional losses compute with
 * reduction "mean".
 *
 *   double loss = vl_loss_mse (dout, out, target, (int64_t) B * K);
 *   vl_model_backward_from (m, VL_GRAD_LOGITS, dout, &error);
 */
#pragma once

#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* Targets equal to no class ever. */
#define VL_NO_IGNORE G_MININT

/* F.cross_entropy (logits (B, K), targets (B), label_smoothing, ignore_index): rows whose target
 * is ignore_index count for nothing, the mean runs over the others. With every row ignored the
 * loss is 0 and so is the gradient (PyTorch returns NaN there). Targets must be in [0, K) or
 * ignore_index. */
double vl_loss_cross_entropy (float *dlogits, const float *logits, const int *targets, int B,
                              int K, float label_smoothing, int ignore_index);
/* F.mse_loss: mean over the n elements of (pred - target)². */
double vl_loss_mse           (float *dpred, const float *pred, const float *target, int64_t n);
/* F.smooth_l1_loss (beta): 0.5 x² / beta where |x| < beta, else |x| - 0.5 beta, x = pred -
 * target, mean over the n elements; beta 0 is the L1 loss (its gradient sign(x), 0 at 0). */
double vl_loss_smooth_l1     (float *dpred, const float *pred, const float *target, int64_t n,
                              float beta);

G_END_DECLS

/* vl-task.h: what a task is to the engine — its targets, its loss on the model's output and the
 * metrics of its evaluation — for every task the trainer, the CLI and the app run:
 *
 *   classify  one class per image; the head's K outputs are logits; cross-entropy with label
 *             smoothing; top-1, top-5, per-class accuracy, confusion matrix (VlEvalResult)
 *   regress   N numbers per image (targets.csv, or the angle of fashion-mnist-rotate); the head's
 *             N outputs predict the targets standardised by the training split's mean and std;
 *             MSE or smooth-L1 on the standardised values; MAE, RMSE and R² per target in the
 *             targets' own units (VlRegressResult)
 *
 * A task's head is the model's own linear or MLP head (vl_model_set_head) with one output per
 * class or target; the loss gives the gradient on those outputs and the model's backward starts
 * from it (vl_model_backward_from (m, VL_GRAD_LOGITS, ...)).
 *
 *   VlTaskSpec t = { .kind = VL_TASK_REGRESS, .n_outputs = 1, .mean = mu, .std = sd };
 *   double loss = vl_task_loss (&t, vl_model_logits (m), labels, values, B, dout);
 *   vl_model_backward_from (m, VL_GRAD_LOGITS, dout, &error);
 *
 * The trainer sees every task's head through vl-head.h (there this one is the "model" head), and
 * evaluation runs there too (vl_evaluate, vl_evaluate_regress, vl_evaluate_segment).
 */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "vl-dataset.h"
#include "vl-model.h"
#include "vl-seg.h"
#include "vl-seg-head.h"

G_BEGIN_DECLS

typedef enum {
  VL_TASK_CLASSIFY,
  VL_TASK_REGRESS,
  VL_TASK_SEGMENT,   /* one class per pixel: a seg head (vl-seg-head.h) over the token grid */
  VL_TASK_DETECT,    /* boxes: torchvision's FCOS head (vl-det-head.h, vl-detect.h) */
} VlTaskKind;

typedef enum {
  VL_REG_LOSS_MSE,
  VL_REG_LOSS_SMOOTH_L1,   /* beta 1, on the standardised targets */
} VlRegLoss;

/* Names as the CLI, run.json and metrics.jsonl spell them: "classify", "regress", "segment",
 * "detect"; "mse", "smooth-l1". from_string also takes "classification", "regression",
 * "segmentation" and "detection". */
const char *vl_task_name              (VlTaskKind kind);
gboolean    vl_task_from_string       (const char *s, VlTaskKind *out);
const char *vl_reg_loss_name          (VlRegLoss loss);
gboolean    vl_reg_loss_from_string   (const char *s, VlRegLoss *out);

/* A task as one run holds it. */
typedef struct {
  VlTaskKind   kind;
  int          n_outputs;        /* classes, or targets */
  float        label_smoothing;  /* classify */
  VlRegLoss    reg_loss;         /* regress */
  const float *mean, *std;       /* regress: (n_outputs) standardisation of the targets */
} VlTaskSpec;

/* The loss of one batch of the model's outputs (B, n_outputs) against its targets (labels (B)
 * for classify; values (B, n_outputs) in the targets' units for regress), and when dout is not
 * NULL its gradient on the outputs (B, n_outputs). */
double      vl_task_loss              (const VlTaskSpec *t, const float *out, const int *labels,
                                       const float *values, int B, float *dout);

/* The training split's mean and (population) standard deviation of each target: what the
 * regression head predicts in units of. A constant target gets std 1. */
void        vl_task_target_stats      (VlDataset *ds, float *mean, float *std);

/* ---- classification metrics ---- */

typedef struct {
  int      n_classes;
  int64_t  n;             /* images evaluated (those that failed to decode are left out) */
  double   loss;          /* mean cross-entropy, without label smoothing */
  double   top1;
  double   top5;          /* NAN with 5 classes or fewer (where it is always 1) */
  double  *class_acc;     /* (K) top-1 per true class; NAN for a class without images */
  int64_t *confusion;     /* (K, K): row = true class, column = predicted */
} VlEvalResult;

void      vl_eval_result_clear   (VlEvalResult *r);
/* Accumulates one batch of logits (B, K) into r (set up by vl_eval_result_begin). */
void      vl_eval_result_begin   (VlEvalResult *r, int n_classes);
void      vl_eval_result_add     (VlEvalResult *r, const float *logits, const int *labels, int B);
void      vl_eval_result_end     (VlEvalResult *r);

/* ---- regression metrics ---- */

typedef struct {
  int      n_values;
  int64_t  n;             /* images evaluated */
  double   loss;          /* mean loss on the standardised targets (the training objective) */
  double  *mae, *rmse, *r2;       /* (n_values), in the targets' units */
  double   mae_mean, rmse_mean, r2_mean;   /* their means over the targets */
  float   *pred, *truth;  /* (n, n_values) in the targets' units, in evaluation order */
  int     *items;         /* (n) the item index (in its split) of each row */
  /* sums while accumulating */
  double  *s_abs, *s_sq, *s_y, *s_y2;
  int64_t  cap;
} VlRegressResult;

void      vl_regress_result_begin (VlRegressResult *r, int n_values);
/* One batch of standardised predictions (B, n_values) against the true values (B, n_values) in
 * the targets' units; items (B) may be NULL. */
void      vl_regress_result_add   (VlRegressResult *r, const VlTaskSpec *t, const float *out,
                                   const float *truth, const int *items, int B);
void      vl_regress_result_end   (VlRegressResult *r);
void      vl_regress_result_clear (VlRegressResult *r);
void      vl_regress_result_copy  (VlRegressResult *dst, const VlRegressResult *src);
/* Standardised outputs (n_outputs) to the targets' units. */
void      vl_task_unstandardize   (const VlTaskSpec *t, const float *out, float *values);

/* ---- segmentation metrics ----
 * segment   a seg head (vl-seg-head.h) over the final-norm token grid gives (B, S, S, K) logits
 *           at the input size; per-pixel cross-entropy with ignore index 255 (vl-seg.h); the
 *           metrics are mmsegmentation's IoUMetric (VlSegMetric) over the whole split. */

typedef struct {
  int      n_classes;
  int64_t  n;             /* images evaluated */
  int64_t  pixels;        /* pixels counted (not ignored) */
  double   loss;          /* mean cross-entropy over the counted pixels */
  double   miou, aacc, macc;
  double  *iou, *acc;     /* (K) per class; NaN where undefined (skipped by the means) */
  gboolean own_size;      /* scored at each image's own size (else at the input size) */
  /* accumulating */
  double   loss_sum;
  VlSegMetric *metric;
} VlSegResult;

void      vl_seg_result_begin     (VlSegResult *r, int n_classes, gboolean own_size);
/* One image's logits (H, W, K) against its mask (H, W). */
void      vl_seg_result_add       (VlSegResult *r, const float *logits, const uint8_t *mask,
                                   int H, int W);
/* B images' logits at the input size (B, S, S, K) against their masks at their own sizes
 * (masks[j]: w[j] x h[j]; NULL: the image is left out), each upsampled bilinearly to its mask's
 * size; the images run in parallel on the engine's pool. FALSE (error set) when an image's
 * logits at its size cannot be allocated. */
gboolean  vl_seg_result_add_upsampled (VlSegResult *r, const float *z, int B, int S,
                                       uint8_t *const *masks, const int *w, const int *h,
                                       GError **error);
void      vl_seg_result_end       (VlSegResult *r);
/* The per-pixel cross-entropy (255 ignored) of B images' logits (B, P, K) against their masks
 * (B, P), the mean over every counted pixel of the batch, and its gradient into dz (B, P, K)
 * (overwritten): vl_seg_cross_entropy over the whole batch, to float rounding, with the images
 * in parallel. */
double    vl_seg_batch_loss       (float *dz, const float *z, const uint8_t *masks, int B,
                                   int64_t P, int K);
void      vl_seg_result_clear     (VlSegResult *r);
void      vl_seg_result_copy      (VlSegResult *dst, const VlSegResult *src);

/* ---- preprocessing ---- */

/* The model's evaluation preprocessing (pretrained_cfg: input size, crop_pct, interpolation,
 * mean, std; channels = in_chans). */
void      vl_preprocess_from_model (VlModel *m, VlPreprocess *pp);
/* The same at a dense task's input side: size (0: the model's input size) squashed to, which
 * must be a multiple of the patch (an error says so otherwise). */
gboolean  vl_preprocess_dense    (VlModel *m, int size, VlPreprocess *pp, GError **error);
/* The evaluation of a model on a split (vl_evaluate, vl_evaluate_regress, vl_evaluate_segment,
 * vl_evaluate_detect) is declared in vl-head.h: one loop through the task's head. */

G_END_DECLS

/* vl-head.h: a task's head behind one small interface, as the trainer sees every head.
 *
 * A VlHead says what it reads of the model, holds its parameters, runs forward from what it
 * read, gives the loss of one batch's targets (VlBatch: labels, values, masks or boxes) and its
 * gradient, runs backward and hands the model the gradient on what it read
 * (vl_model_backward_from) when the model trains, accumulates its task's metrics into the
 * epoch's VlEpochMetrics, and says where a run saves it. Three heads implement it:
 *
 *   model   the model's own linear or MLP head (classify, regress; DeiT's distillation head and
 *           OpenCLIP's projection folded in). It reads the model's outputs (vl_model_logits:
 *           the head's forward ran inside vl_model_forward) and its loss is vl_task_loss; its
 *           backward is vl_model_backward_from (m, VL_GRAD_LOGITS, ...), which walks the
 *           model's head and then the backbone. Its tensors stay in the model's parameter
 *           block, in the model's last layer group ("head"), and are saved in model.safetensors
 *           under timm's names, so that timm and ONNX export, DeiT and OpenCLIP keep working and
 *           every PyTorch fixture matches bit for bit (vl_model_backward is still the
 *           cross-entropy followed by that same call). vl_head_params gives none: *n = 0.
 *   seg     a seg head of vl-seg-head.h over the final-norm token grid; per-pixel
 *           cross-entropy (vl_seg_batch_loss); mmsegmentation's IoU metric at each image's own
 *           size. Saved as seg_head.safetensors ("seg_head": linear / upconv).
 *   fcos    torchvision's FCOS head of vl-det-head.h over the same grid; FCOS.compute_loss;
 *           COCO AP of its detections at each image's own size. Saved as det_head.safetensors
 *           ("det_head": fcos).
 *
 * A head outside the model (seg, fcos) is a layer group of its own, after the model's groups;
 * the model then carries no head (vl_model_set_head (m, VL_HEAD_NONE, ...)). One step:
 *
 *   VlHeadGrid g;
 *   vl_head_grid_of (m, S, &g);
 *   g_autoptr(VlHead) h = vl_head_new_seg (vl_seg_head_new (VL_SEG_HEAD_LINEAR, W, K, seed),
 *                                          &g, TRUE);
 *   vl_model_forward (m, x, B, S, S, VL_FORWARD_TRAIN, &e);
 *   vl_head_forward (h, vl_head_input (h, m), B);
 *   double loss = vl_head_loss (h, &batch);
 *   vl_head_backward (h, m, TRUE, &e);     // the head's gradients, then the model's
 *   ... clip, vl_model_adamw_step (m, &opt), vl_head_params_adamw (vl_head_params (h, &n), ...)
 *
 * Evaluation is the same loop without the loss (vl_head_evaluate; vl_evaluate and its siblings
 * below are thin wrappers). The heads keep their own buffers (the gradient on their outputs and
 * on what they read), grown to the largest batch seen. */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-dataset.h"
#include "vl-det-head.h"
#include "vl-detect.h"
#include "vl-head-param.h"
#include "vl-model.h"
#include "vl-safetensors.h"
#include "vl-seg-head.h"
#include "vl-task.h"

G_BEGIN_DECLS

/* One epoch of a run, tagged by its task: what the heads' metrics go into (declared here, below
 * the heads, so that the trainer's header includes this one and not the other way round). */
typedef struct {
  VlTaskKind   task;         /* which of val, reg, seg and det holds the metrics */
  int          epoch;        /* 0-based */
  int64_t      step;         /* global steps done at its end */
  int          unlocked;     /* groups that trained (clamped to the model's count) */
  gboolean     cached;       /* trained from the frozen-feature cache */
  double       lr;           /* at its last step */
  double       train_loss;   /* mean over its images (with label smoothing) */
  VlEvalResult val;          /* classify */
  VlRegressResult reg;       /* regress: MAE, RMSE, R² per target; predictions for a scatter */
  VlSegResult  seg;          /* segment: loss, mIoU, per-class IoU and accuracy, aAcc, mAcc */
  VlDetResult  det;          /* detect: loss, COCO AP, AP50, AP75, AR@100, per-class AP */
  double       seconds;      /* training + validation */
  double       images_per_s; /* training throughput */
  gboolean     best;         /* lowest validation loss so far */
} VlEpochMetrics;

/* The validation loss of an epoch, whatever its task. */
double vl_epoch_metrics_val_loss (const VlEpochMetrics *e);

typedef struct _VlHead VlHead;

/* What a head reads of the model after its forward. */
typedef enum {
  VL_HEAD_READS_LOGITS,   /* (B, K) vl_model_logits: the head is the model's own */
  VL_HEAD_READS_TOKENS,   /* (B, T, W) vl_model_tokens_final: the final-norm token grid */
} VlHeadReads;

/* The token grid a head over tokens reads, at the run's input size S x S. */
typedef struct {
  int S;          /* input side in pixels (the outputs' size for seg) */
  int gh, gw;     /* the patch grid */
  int T;          /* tokens per image: n_prefix + gh gw */
  int n_prefix;   /* CLS, distillation, registers */
  int width;      /* W */
  int patch;      /* pixels between two patches */
} VlHeadGrid;

/* The grid of model m at input size S (a multiple of the patch). */
void          vl_head_grid_of      (VlModel *m, int S, VlHeadGrid *g);

/* The model's own head as task t (classify or regress, t->n_outputs outputs; t->mean and
 * t->std are copied): the model it is used with has its head with t->n_outputs outputs. */
VlHead       *vl_head_new_model    (const VlTaskSpec *t);
/* A seg head over grid g, for task segment; take: freed with the VlHead (else the caller's,
 * which must outlive it). */
VlHead       *vl_head_new_seg      (VlSegHead *seg, const VlHeadGrid *g, gboolean take);
/* An FCOS head over grid g, for task detect; take as for vl_head_new_seg. */
VlHead       *vl_head_new_det      (VlDetHead *det, const VlHeadGrid *g, gboolean take);
void          vl_head_free         (VlHead *h);

/* What a run asks of its task's head. */
typedef struct {
  VlHeadKind     model_head;   /* classify, regress: the model's linear or MLP head */
  int            mlp_hidden;   /* the MLP head's hidden width (0: the model's width) */
  VlSegHeadKind  seg_head;     /* segment: linear or upconv */
  uint64_t       seed;         /* the new head's initialisation */
} VlHeadChoice;

/* Task t's head, new, with t->n_outputs classes or targets: for classify and regress the model
 * gets a new head of its own (vl_model_set_head) and this is that head; for segment and detect
 * the model's head is removed and a seg or FCOS head reads its final-norm token grid g. NULL with
 * error when the head cannot be built (it names the head, the width and the classes). */
VlHead       *vl_head_new_for_task (VlModel *m, const VlTaskSpec *t, const VlHeadChoice *c,
                                    const VlHeadGrid *g, GError **error);

/* "model", "seg", "fcos". */
const char   *vl_head_name         (VlHead *h);
VlTaskKind    vl_head_task         (VlHead *h);
VlHeadReads   vl_head_reads        (VlHead *h);
/* TRUE for the model's own head: its tensors are the model's, in the model's groups. */
gboolean      vl_head_in_model     (VlHead *h);
/* What the head reads of m after its last forward (logits or final-norm tokens). */
const float  *vl_head_input        (VlHead *h, VlModel *m);
/* Floats of what it reads per image: K, or T * W. */
int64_t       vl_head_input_numel  (VlHead *h);

/* Its parameters outside the model (vl-head-param.h); NULL and *n = 0 for the model's own. */
VlHeadParam  *vl_head_params       (VlHead *h, int *n);
int64_t       vl_head_n_params     (VlHead *h);

/* Forward of B images from what the head reads (in, as vl_head_input gives it); returns its
 * outputs (logits (B, K); seg: (B, S, S, K) channels-last; fcos: the classification logits
 * (B, A, K)), valid until the next forward. */
const float  *vl_head_forward      (VlHead *h, const float *in, int B);
/* The loss of the last forward against the targets of batch b (b->n images: labels, values,
 * masks or boxes as the task needs), keeping its gradient on the outputs. */
double        vl_head_loss         (VlHead *h, const VlBatch *b);
/* Backward of the last loss: the head's own gradients (overwritten) and, when model_backward,
 * the gradient on what it read handed to vl_model_backward_from (m, ...). The model's own head
 * always runs the model's backward (its tensors are the model's). FALSE with error set when the
 * model's backward fails (or is cancelled). */
gboolean      vl_head_backward     (VlHead *h, VlModel *m, gboolean model_backward,
                                    GError **error);

/* The task's metrics over one split of ds, batch by batch of the heads' forwards: begin sets
 * e->task and starts the task's result; add scores the last forward against batch b (its
 * indices are items of `split` in ds: seg and fcos score at each image's own size from the
 * dataset's masks and boxes); end finishes it. FALSE (error set) when add cannot allocate. */
void          vl_head_metrics_begin (VlHead *h, VlEpochMetrics *e, VlDataset *ds, VlSplit split);
gboolean      vl_head_metrics_add  (VlHead *h, VlEpochMetrics *e, const VlBatch *b,
                                    GError **error);
void          vl_head_metrics_end  (VlHead *h, VlEpochMetrics *e);

/* The task's metrics of model m and head h over one split of ds: batches of batch_size images
 * preprocessed by pp without augmentation, each through the model (VL_FORWARD_INFER), the head
 * and vl_head_metrics_add; e (zeroed by the caller) receives them. FALSE (error set, e's result
 * cleared) when cancelled or a forward fails. */
gboolean      vl_head_evaluate     (VlHead *h, VlModel *m, VlDataset *ds, VlSplit split,
                                    const VlPreprocess *pp, int batch_size,
                                    GCancellable *cancellable, VlEpochMetrics *e,
                                    GError **error);
/* Frees what the four results of e hold. */
void          vl_epoch_metrics_clear (VlEpochMetrics *e);

/* ---- evaluation of a model and its head, each through vl_head_evaluate ---- */

/* The model (its head must have the dataset's classes) on one split, in batches, with its
 * evaluation preprocessing (vl_preprocess_from_model). */
gboolean  vl_evaluate            (VlModel *m, VlDataset *ds, VlSplit split, int batch_size,
                                  GCancellable *cancellable, VlEvalResult *out, GError **error);
/* The same for a regression model: its head has one output per target of the dataset. */
gboolean  vl_evaluate_regress    (VlModel *m, VlDataset *ds, VlSplit split, int batch_size,
                                  const VlTaskSpec *t, GCancellable *cancellable,
                                  VlRegressResult *out, GError **error);
/* A model without a classification head and its seg head on one split of a segmentation
 * dataset: images squashed to size x size (0: the model's input size), the seg head's logits
 * upsampled bilinearly to each image's own size and scored against its original mask
 * (out->own_size TRUE). */
gboolean  vl_evaluate_segment    (VlModel *m, VlSegHead *h, VlDataset *ds, VlSplit split,
                                  int size, int batch_size, GCancellable *cancellable,
                                  VlSegResult *out, GError **error);
/* A model without a classification head and its FCOS head on one split of a detection
 * dataset, images squashed to size x size (0: the model's input size). */
gboolean  vl_evaluate_detect     (VlModel *m, VlDetHead *h, VlDataset *ds, VlSplit split,
                                  int size, int batch_size, GCancellable *cancellable,
                                  VlDetResult *out, GError **error);

/* Where a run saves it: its file in a checkpoint group (VL_RUN_SEG_HEAD, VL_RUN_DET_HEAD; NULL
 * for the model's own head, which is in model.safetensors). */
const char   *vl_head_file         (VlHead *h);
/* Its file's contents (tensors, AdamW moments, step counts, "format" and its kind key, e.g.
 * "seg_head": "upconv"); NULL for the model's own head. Data referenced: keep h alive. */
VlSafetensorsWriter *vl_head_writer (VlHead *h);
/* On resume: its tensors and AdamW state from its file in run folder dir (nothing to do for the
 * model's own head); errors name the file, the tensor and the shapes, or the other kind of
 * head the file holds. */
gboolean      vl_head_restore      (VlHead *h, const char *dir, GError **error);

/* ---- for implementations: a head is a class (the table below, one static instance per kind)
 * and an instance that starts with struct _VlHead. */

typedef struct {
  const char  *name;                 /* "model", "seg", "fcos" */
  VlHeadReads  reads;
  /* where a run saves it (all NULL for the model's own head) */
  const char  *file;                 /* its file in a checkpoint group */
  const char  *format;               /* the file's "format" metadata */
  const char  *kind_key;             /* the metadata key of its kind ("seg_head") */
  const char  *what;                 /* "segmentation", "detection": for messages */
  const char  *(*kind)          (VlHead *h);   /* the kind it saves ("upconv", "fcos") */
  VlHeadParam *(*params)        (VlHead *h, int *n);          /* NULL: in the model */
  int64_t      (*n_params)      (VlHead *h);
  const float *(*forward)       (VlHead *h, const float *in, int B);
  double       (*loss)          (VlHead *h, const VlBatch *b);
  /* the head's gradients; with want_d_in, returns the gradient on what it read */
  const float *(*backward)      (VlHead *h, gboolean want_d_in);
  void         (*metrics_begin) (VlHead *h, VlEpochMetrics *e);
  gboolean     (*metrics_add)   (VlHead *h, VlEpochMetrics *e, const VlBatch *b,
                                 GError **error);
  void         (*metrics_end)   (VlHead *h, VlEpochMetrics *e);
  void         (*finalize)      (VlHead *h);  /* frees what the instance holds beyond the base */
} VlHeadClass;

struct _VlHead {
  const VlHeadClass *klass;
  VlTaskKind   task;
  int          n_outputs;   /* K: classes, targets */
  VlHeadGrid   grid;        /* heads over tokens */
  int          B;           /* images of the last forward */
  const float *out;         /* its outputs */
  float       *d_out;       /* the loss's gradient on the outputs (B, out numel) */
  float       *d_in;        /* on what it read (B, in numel) */
  int          cap_out, cap_in;   /* images d_out and d_in hold */
  VlDataset   *ds;          /* metrics: the split scored */
  VlSplit      split;
};

/* The wrapped head (NULL when it is not one). */
VlSegHead    *vl_head_seg          (VlHead *h);
VlDetHead    *vl_head_det          (VlHead *h);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlHead, vl_head_free)

G_END_DECLS

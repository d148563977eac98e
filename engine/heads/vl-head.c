/* vl-head.c: the head interface (see vl-head.h) and its three heads: the model's own, the seg
 * heads and the FCOS head. Each wraps the existing numerics (vl_task_loss, vl-seg-head.c,
 * vl-det-head.c) without changing them: the same calls in the same order as before. */
#include "vl-head.h"
#include "vl-run.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ the interface */

double
vl_epoch_metrics_val_loss (const VlEpochMetrics *e)
{
  return e->task == VL_TASK_REGRESS ? e->reg.loss
         : e->task == VL_TASK_SEGMENT ? e->seg.loss
         : e->task == VL_TASK_DETECT ? e->det.loss : e->val.loss;
}

void
vl_head_grid_of (VlModel *m, int S, VlHeadGrid *g)
{
  const VlGeometry *geo = vl_model_geometry (m);
  g->S = S;
  g->gh = g->gw = S / geo->patch;
  g->n_prefix = geo->n_prefix;
  g->T = geo->n_prefix + g->gh * g->gw;
  g->width = geo->width;
  g->patch = geo->patch;
}

/* The gradient buffers for B images: *buf of (B, per) floats, grown when needed. */
static float *
grow (float **buf, int *cap, int B, int64_t per)
{
  if (B > *cap)
    {
      g_free (*buf);
      *buf = g_new (float, (gsize) B * per);
      *cap = B;
    }
  return *buf;
}

void
vl_head_free (VlHead *h)
{
  if (h == NULL)
    return;
  h->klass->finalize (h);
  g_free (h->d_out);
  g_free (h->d_in);
  g_free (h);
}

const char *
vl_head_name (VlHead *h)
{
  return h->klass->name;
}

VlTaskKind
vl_head_task (VlHead *h)
{
  return h->task;
}

VlHeadReads
vl_head_reads (VlHead *h)
{
  return h->klass->reads;
}

gboolean
vl_head_in_model (VlHead *h)
{
  return h->klass->params == NULL;
}

const float *
vl_head_input (VlHead *h, VlModel *m)
{
  return h->klass->reads == VL_HEAD_READS_LOGITS ? vl_model_logits (m)
                                                 : vl_model_tokens_final (m);
}

int64_t
vl_head_input_numel (VlHead *h)
{
  return h->klass->reads == VL_HEAD_READS_LOGITS ? h->n_outputs
                                                 : (int64_t) h->grid.T * h->grid.width;
}

VlHeadParam *
vl_head_params (VlHead *h, int *n)
{
  *n = 0;
  return h->klass->params ? h->klass->params (h, n) : NULL;
}

int64_t
vl_head_n_params (VlHead *h)
{
  return h->klass->n_params ? h->klass->n_params (h) : 0;
}

const float *
vl_head_forward (VlHead *h, const float *in, int B)
{
  h->B = B;
  h->out = h->klass->forward (h, in, B);
  return h->out;
}

double
vl_head_loss (VlHead *h, const VlBatch *b)
{
  g_return_val_if_fail (b->n == h->B, NAN);
  return h->klass->loss (h, b);
}

gboolean
vl_head_backward (VlHead *h, VlModel *m, gboolean model_backward, GError **error)
{
  const gboolean to_model = model_backward || vl_head_in_model (h);
  const float *d = h->klass->backward (h, to_model);
  if (!to_model)
    return TRUE;
  return vl_model_backward_from (m, h->klass->reads == VL_HEAD_READS_LOGITS ? VL_GRAD_LOGITS
                                                                             : VL_GRAD_TOKENS,
                                 d, error);
}

void
vl_head_metrics_begin (VlHead *h, VlEpochMetrics *e, VlDataset *ds, VlSplit split)
{
  h->ds = ds;
  h->split = split;
  e->task = h->task;
  h->klass->metrics_begin (h, e);
}

gboolean
vl_head_metrics_add (VlHead *h, VlEpochMetrics *e, const VlBatch *b, GError **error)
{
  g_return_val_if_fail (b->n == h->B, FALSE);
  return h->klass->metrics_add (h, e, b, error);
}

void
vl_head_metrics_end (VlHead *h, VlEpochMetrics *e)
{
  h->klass->metrics_end (h, e);
}

const char *
vl_head_file (VlHead *h)
{
  return h->klass->file;
}

VlSafetensorsWriter *
vl_head_writer (VlHead *h)
{
  if (vl_head_in_model (h))
    return NULL;
  int n;
  VlHeadParam *p = vl_head_params (h, &n);
  return vl_head_params_writer (p, n, h->klass->format, h->klass->kind_key,
                                h->klass->kind (h));
}

gboolean
vl_head_restore (VlHead *h, const char *dir, GError **error)
{
  if (vl_head_in_model (h))
    return TRUE;   /* in model.safetensors, read with the model */
  const VlHeadClass *k = h->klass;
  const char *kind = k->kind (h);
  g_autofree char *path = g_build_filename (dir, k->file, NULL);
  g_autoptr(VlSafetensors) st = vl_safetensors_open (path, error);
  if (st == NULL)
    return FALSE;
  const char *saved = g_hash_table_lookup (vl_safetensors_metadata (st), k->kind_key);
  if (saved && strcmp (saved, kind) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: a %s head, the run trains a %s head",
                   path, saved, kind);
      return FALSE;
    }
  int n;
  VlHeadParam *p = vl_head_params (h, &n);
  g_autofree char *what = g_strdup_printf ("%s %s head the run trains", kind, k->what);
  return vl_head_params_restore (p, n, st, what, error);
}

static VlHead *
head_new (gsize size, const VlHeadClass *klass, VlTaskKind task, int n_outputs)
{
  VlHead *h = g_malloc0 (size);
  h->klass = klass;
  h->task = task;
  h->n_outputs = n_outputs;
  return h;
}

/* ------------------------------------------------------------------ the model's own head */

typedef struct {
  VlHead      base;
  VlTaskSpec  spec;
  float      *mean, *std;   /* regress: the spec's, copied */
} ModelHead;

static const float *
model_forward (VlHead *h, const float *in, int B)
{
  (void) B;
  return in;   /* the model's head ran in its forward: what it reads is its output */
}

static double
model_loss (VlHead *h, const VlBatch *b)
{
  ModelHead *mh = (ModelHead *) h;
  float *d = grow (&h->d_out, &h->cap_out, b->n, h->n_outputs);
  return vl_task_loss (&mh->spec, h->out, b->labels, b->values, b->n, d);
}

static const float *
model_backward (VlHead *h, gboolean want_d_in)
{
  (void) want_d_in;
  return h->d_out;   /* the model's backward from its outputs runs its head too */
}

static void
model_metrics_begin (VlHead *h, VlEpochMetrics *e)
{
  if (h->task == VL_TASK_REGRESS)
    vl_regress_result_begin (&e->reg, h->n_outputs);
  else
    vl_eval_result_begin (&e->val, h->n_outputs);
}

static gboolean
model_metrics_add (VlHead *h, VlEpochMetrics *e, const VlBatch *b, GError **error)
{
  (void) error;
  if (h->task == VL_TASK_REGRESS)
    vl_regress_result_add (&e->reg, &((ModelHead *) h)->spec, h->out, b->values, b->indices,
                           b->n);
  else
    vl_eval_result_add (&e->val, h->out, b->labels, b->n);
  return TRUE;
}

static void
model_metrics_end (VlHead *h, VlEpochMetrics *e)
{
  if (h->task == VL_TASK_REGRESS)
    vl_regress_result_end (&e->reg);
  else
    vl_eval_result_end (&e->val);
}

static void
model_finalize (VlHead *h)
{
  ModelHead *mh = (ModelHead *) h;
  g_free (mh->mean);
  g_free (mh->std);
}

static const VlHeadClass model_head_class = {
  .name = "model",
  .reads = VL_HEAD_READS_LOGITS,
  .forward = model_forward,
  .loss = model_loss,
  .backward = model_backward,
  .metrics_begin = model_metrics_begin,
  .metrics_add = model_metrics_add,
  .metrics_end = model_metrics_end,
  .finalize = model_finalize,
};

VlHead *
vl_head_new_for_task (VlModel *m, const VlTaskSpec *t, const VlHeadChoice *c,
                      const VlHeadGrid *g, GError **error)
{
  const int K = t->n_outputs;
  if (t->kind == VL_TASK_CLASSIFY || t->kind == VL_TASK_REGRESS)
    {
      vl_model_set_head (m, c->model_head, K, c->mlp_hidden, c->seed);
      return vl_head_new_model (t);
    }
  /* no head on the model: the head outside it reads the final-norm tokens */
  vl_model_set_head (m, VL_HEAD_NONE, 0, 0, c->seed);
  if (t->kind == VL_TASK_SEGMENT)
    {
      VlSegHead *seg = vl_seg_head_new (c->seg_head, g->width, K, c->seed);
      if (seg == NULL)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "a %s seg head cannot be built over "
                       "tokens of width %d for %d classes%s", vl_seg_head_kind_name (c->seg_head),
                       g->width, K, c->seg_head == VL_SEG_HEAD_UPCONV ? " (upconv needs a width "
                       "divisible by 4)" : "");
          return NULL;
        }
      return vl_head_new_seg (seg, g, TRUE);
    }
  VlDetHead *det = vl_det_head_new (g->width, K, c->seed);
  if (det == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "an FCOS head cannot be built for %d "
                   "classes (background included: 2 to 1000)", K);
      return NULL;
    }
  return vl_head_new_det (det, g, TRUE);
}

VlHead *
vl_head_new_model (const VlTaskSpec *t)
{
  g_return_val_if_fail (t->kind == VL_TASK_CLASSIFY || t->kind == VL_TASK_REGRESS, NULL);
  ModelHead *mh = (ModelHead *) head_new (sizeof (ModelHead), &model_head_class, t->kind,
                                          t->n_outputs);
  mh->spec = *t;
  if (t->mean)
    mh->spec.mean = mh->mean = g_memdup2 (t->mean, sizeof (float) * t->n_outputs);
  if (t->std)
    mh->spec.std = mh->std = g_memdup2 (t->std, sizeof (float) * t->n_outputs);
  return &mh->base;
}

/* ------------------------------------------------------------------ heads over the tokens */

/* A head of its own module (a VlSegHead, a VlDetHead) over the token grid. */
typedef struct {
  VlHead         base;
  gpointer       impl;
  GDestroyNotify free_impl;   /* NULL: the caller's */
} TokenHead;

#define SEG(h) ((VlSegHead *) ((TokenHead *) (h))->impl)
#define DET(h) ((VlDetHead *) ((TokenHead *) (h))->impl)

static VlHead *
token_head_new (const VlHeadClass *klass, VlTaskKind task, int n_outputs, gpointer impl,
                GDestroyNotify free_impl, const VlHeadGrid *g)
{
  TokenHead *th = (TokenHead *) head_new (sizeof (TokenHead), klass, task, n_outputs);
  th->impl = impl;
  th->free_impl = free_impl;
  th->base.grid = *g;
  return &th->base;
}

static void
token_head_finalize (VlHead *h)
{
  TokenHead *th = (TokenHead *) h;
  if (th->free_impl)
    th->free_impl (th->impl);
}

/* ------------------------------------------------------------------ the seg heads */

static const char *
seg_kind (VlHead *h)
{
  return vl_seg_head_kind_name (vl_seg_head_kind (SEG (h)));
}

static VlHeadParam *
seg_params (VlHead *h, int *n)
{
  return vl_seg_head_params (SEG (h), n);
}

static int64_t
seg_n_params (VlHead *h)
{
  return vl_seg_head_n_params (SEG (h));
}

static const float *
seg_forward (VlHead *h, const float *in, int B)
{
  const VlHeadGrid *g = &h->grid;
  return vl_seg_head_forward (SEG (h), in, B, g->T, g->n_prefix, g->gh, g->gw, g->S, g->S);
}

static double
seg_loss (VlHead *h, const VlBatch *b)
{
  const int64_t P = (int64_t) h->grid.S * h->grid.S;
  float *dz = grow (&h->d_out, &h->cap_out, b->n, P * h->n_outputs);
  return vl_seg_batch_loss (dz, h->out, b->masks, b->n, P, h->n_outputs);
}

static const float *
seg_backward (VlHead *h, gboolean want_d_in)
{
  float *d_tok = want_d_in ? grow (&h->d_in, &h->cap_in, h->B, vl_head_input_numel (h)) : NULL;
  vl_seg_head_backward (SEG (h), h->d_out, d_tok);
  return d_tok;
}

static void
seg_metrics_begin (VlHead *h, VlEpochMetrics *e)
{
  vl_seg_result_begin (&e->seg, h->n_outputs, TRUE);
}

/* The logits of the last forward (n, S, S, K) upsampled to each item's own size and scored
 * against its original mask (a mask that fails is listed as skipped by the dataset). */
static gboolean
seg_metrics_add (VlHead *h, VlEpochMetrics *e, const VlBatch *b, GError **error)
{
  const int n = b->n;
  g_autofree uint8_t **masks = g_new0 (uint8_t *, n);
  g_autofree int *w = g_new0 (int, n);
  g_autofree int *hh = g_new0 (int, n);
  for (int j = 0; j < n; j++)
    masks[j] = vl_dataset_load_mask (h->ds, h->split, b->indices[j], &w[j], &hh[j], NULL);
  gboolean ok = vl_seg_result_add_upsampled (&e->seg, h->out, n, h->grid.S, masks, w, hh, error);
  for (int j = 0; j < n; j++)
    g_free (masks[j]);
  return ok;
}

static void
seg_metrics_end (VlHead *h, VlEpochMetrics *e)
{
  (void) h;
  vl_seg_result_end (&e->seg);
}

static const VlHeadClass seg_head_class = {
  .name = "seg",
  .reads = VL_HEAD_READS_TOKENS,
  .file = VL_RUN_SEG_HEAD,
  .format = "vitlab-seg-head",
  .kind_key = "seg_head",
  .what = "segmentation",
  .kind = seg_kind,
  .params = seg_params,
  .n_params = seg_n_params,
  .forward = seg_forward,
  .loss = seg_loss,
  .backward = seg_backward,
  .metrics_begin = seg_metrics_begin,
  .metrics_add = seg_metrics_add,
  .metrics_end = seg_metrics_end,
  .finalize = token_head_finalize,
};

VlHead *
vl_head_new_seg (VlSegHead *seg, const VlHeadGrid *g, gboolean take)
{
  return token_head_new (&seg_head_class, VL_TASK_SEGMENT, vl_seg_head_n_classes (seg), seg,
                         take ? (GDestroyNotify) vl_seg_head_free : NULL, g);
}

VlSegHead *
vl_head_seg (VlHead *h)
{
  return h && h->klass == &seg_head_class ? SEG (h) : NULL;
}

/* ------------------------------------------------------------------ the FCOS head */

static const char *
det_kind (VlHead *h)
{
  (void) h;
  return "fcos";
}

static VlHeadParam *
det_params (VlHead *h, int *n)
{
  return vl_det_head_params (DET (h), n);
}

static int64_t
det_n_params (VlHead *h)
{
  return vl_det_head_n_params (DET (h));
}

static const float *
det_forward (VlHead *h, const float *in, int B)
{
  const VlHeadGrid *g = &h->grid;
  vl_det_head_forward (DET (h), in, B, g->T, g->n_prefix, g->gh, g->gw, g->patch);
  return vl_det_head_cls_logits (DET (h));
}

/* The FCOS loss of the last forward against the batch's boxes (at the input size); keeps its
 * gradient in the FCOS head. */
static double
det_batch_loss (VlHead *h, const VlBatch *b)
{
  const int n = b->n, M = b->max_boxes;
  g_autofree VlFcosTarget *tg = g_new (VlFcosTarget, MAX (n, 1));
  for (int j = 0; j < n; j++)
    tg[j] = (VlFcosTarget) { b->boxes + (gsize) j * M * 4, b->box_labels + (gsize) j * M,
                             b->n_boxes[j] };
  return vl_det_head_loss (DET (h), tg, NULL);
}

static const float *
det_backward (VlHead *h, gboolean want_d_in)
{
  float *d_tok = want_d_in ? grow (&h->d_in, &h->cap_in, h->B, vl_head_input_numel (h)) : NULL;
  vl_det_head_backward (DET (h), d_tok);
  return d_tok;
}

static void
det_metrics_begin (VlHead *h, VlEpochMetrics *e)
{
  vl_det_result_begin (&e->det, h->n_outputs);
}

/* The detections of the last forward scored at each image's own size against its annotated
 * boxes; the batch's loss against its boxes at the input size. */
static gboolean
det_metrics_add (VlHead *h, VlEpochMetrics *e, const VlBatch *b, GError **error)
{
  (void) error;
  const int S = h->grid.S;
  VlFcosPostprocess post = VL_FCOS_POSTPROCESS_DEFAULT;
  post.score_thresh = VL_DETECT_EVAL_SCORE;
  g_autofree VlDetection *dets = g_new (VlDetection, post.max_dets);
  vl_det_result_add_loss (&e->det, det_batch_loss (h, b), b->n);
  for (int j = 0; j < b->n; j++)
    {
      int nd = vl_det_head_detect (DET (h), j, S, S, &post, dets), w, hh, n_gt;
      const int *gl;
      const float *gb = vl_dataset_boxes (h->ds, h->split, b->indices[j], &gl, &n_gt);
      vl_dataset_boxes_size (h->ds, h->split, b->indices[j], &w, &hh);
      vl_det_result_add (&e->det, dets, nd, S, w, hh, gb, gl, n_gt);
    }
  return TRUE;
}

static void
det_metrics_end (VlHead *h, VlEpochMetrics *e)
{
  (void) h;
  vl_det_result_end (&e->det);
}

static const VlHeadClass det_head_class = {
  .name = "fcos",
  .reads = VL_HEAD_READS_TOKENS,
  .file = VL_RUN_DET_HEAD,
  .format = "vitlab-det-head",
  .kind_key = "det_head",
  .what = "detection",
  .kind = det_kind,
  .params = det_params,
  .n_params = det_n_params,
  .forward = det_forward,
  .loss = det_batch_loss,
  .backward = det_backward,
  .metrics_begin = det_metrics_begin,
  .metrics_add = det_metrics_add,
  .metrics_end = det_metrics_end,
  .finalize = token_head_finalize,
};

VlHead *
vl_head_new_det (VlDetHead *det, const VlHeadGrid *g, gboolean take)
{
  return token_head_new (&det_head_class, VL_TASK_DETECT, vl_det_head_n_classes (det), det,
                         take ? (GDestroyNotify) vl_det_head_free : NULL, g);
}

VlDetHead *
vl_head_det (VlHead *h)
{
  return h && h->klass == &det_head_class ? DET (h) : NULL;
}

/* ------------------------------------------------------------------ evaluation */

void
vl_epoch_metrics_clear (VlEpochMetrics *e)
{
  vl_eval_result_clear (&e->val);
  vl_regress_result_clear (&e->reg);
  vl_seg_result_clear (&e->seg);
  vl_det_result_clear (&e->det);
}

gboolean
vl_head_evaluate (VlHead *h, VlModel *m, VlDataset *ds, VlSplit split, const VlPreprocess *pp,
                  int batch_size, GCancellable *cancellable, VlEpochMetrics *e, GError **error)
{
  g_autoptr(VlLoader) loader = vl_loader_new (ds, split, pp, VL_AUGMENT_NONE,
                                              MAX (batch_size, 1), FALSE, 0);
  vl_head_metrics_begin (h, e, ds, split);
  vl_loader_start_epoch (loader, 0, 0);
  VlBatch b;
  while (vl_loader_next (loader, &b))
    {
      if (g_cancellable_set_error_if_cancelled (cancellable, error) ||
          !vl_model_forward (m, b.images, b.n, pp->size, pp->size, VL_FORWARD_INFER, error))
        {
          vl_epoch_metrics_clear (e);
          return FALSE;
        }
      vl_head_forward (h, vl_head_input (h, m), b.n);
      if (!vl_head_metrics_add (h, e, &b, error))
        {
          vl_epoch_metrics_clear (e);
          return FALSE;
        }
    }
  vl_head_metrics_end (h, e);
  return TRUE;
}

/* vl_head_evaluate of the model's own head as task t with its evaluation preprocessing. */
static gboolean
evaluate_model_head (VlModel *m, VlDataset *ds, VlSplit split, int batch_size,
                     const VlTaskSpec *t, GCancellable *cancellable, VlEpochMetrics *e,
                     GError **error)
{
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  g_autoptr(VlHead) h = vl_head_new_model (t);
  return vl_head_evaluate (h, m, ds, split, &pp, batch_size, cancellable, e, error);
}

gboolean
vl_evaluate (VlModel *m, VlDataset *ds, VlSplit split, int batch_size,
             GCancellable *cancellable, VlEvalResult *out, GError **error)
{
  const int K = vl_dataset_n_classes (ds);
  memset (out, 0, sizeof *out);
  if (vl_model_num_classes (m) != K)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "the model's head has %d classes, the dataset %d", vl_model_num_classes (m), K);
      return FALSE;
    }
  VlTaskSpec t = { .kind = VL_TASK_CLASSIFY, .n_outputs = K };
  VlEpochMetrics e = { 0 };
  if (!evaluate_model_head (m, ds, split, batch_size, &t, cancellable, &e, error))
    return FALSE;
  *out = e.val;
  return TRUE;
}

gboolean
vl_evaluate_regress (VlModel *m, VlDataset *ds, VlSplit split, int batch_size,
                     const VlTaskSpec *t, GCancellable *cancellable, VlRegressResult *out,
                     GError **error)
{
  const int N = vl_dataset_n_values (ds);
  memset (out, 0, sizeof *out);
  if (N == 0 || vl_model_num_classes (m) != N || t->n_outputs != N)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "the model's head has %d outputs, the dataset %d regression targets",
                   vl_model_num_classes (m), N);
      return FALSE;
    }
  VlTaskSpec spec = *t;
  spec.kind = VL_TASK_REGRESS;
  VlEpochMetrics e = { 0 };
  if (!evaluate_model_head (m, ds, split, batch_size, &spec, cancellable, &e, error))
    return FALSE;
  *out = e.reg;
  return TRUE;
}

gboolean
vl_evaluate_segment (VlModel *m, VlSegHead *h, VlDataset *ds, VlSplit split, int size,
                     int batch_size, GCancellable *cancellable, VlSegResult *out,
                     GError **error)
{
  const int K = vl_dataset_n_classes (ds);
  memset (out, 0, sizeof *out);
  if (!vl_dataset_is_segmentation (ds) || vl_seg_head_n_classes (h) != K)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "the seg head has %d classes, %s %d",
                   vl_seg_head_n_classes (h), vl_dataset_description (ds),
                   vl_dataset_is_segmentation (ds) ? K : 0);
      return FALSE;
    }
  VlPreprocess pp;
  if (!vl_preprocess_dense (m, size, &pp, error))
    return FALSE;
  VlHeadGrid grid;
  vl_head_grid_of (m, pp.size, &grid);
  g_autoptr(VlHead) head = vl_head_new_seg (h, &grid, FALSE);
  VlEpochMetrics e = { 0 };
  if (!vl_head_evaluate (head, m, ds, split, &pp, batch_size, cancellable, &e, error))
    return FALSE;
  *out = e.seg;
  return TRUE;
}

gboolean
vl_evaluate_detect (VlModel *m, VlDetHead *h, VlDataset *ds, VlSplit split, int size,
                    int batch_size, GCancellable *cancellable, VlDetResult *out,
                    GError **error)
{
  const int K = vl_dataset_n_classes (ds);
  memset (out, 0, sizeof *out);
  if (!vl_dataset_is_detection (ds) || vl_det_head_n_classes (h) != K)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "the FCOS head has %d classes, %s %d",
                   vl_det_head_n_classes (h), vl_dataset_description (ds),
                   vl_dataset_is_detection (ds) ? K : 0);
      return FALSE;
    }
  VlPreprocess pp;
  if (!vl_preprocess_dense (m, size, &pp, error))
    return FALSE;
  VlHeadGrid grid;
  vl_head_grid_of (m, pp.size, &grid);
  g_autoptr(VlHead) head = vl_head_new_det (h, &grid, FALSE);
  VlEpochMetrics e = { 0 };
  if (!vl_head_evaluate (head, m, ds, split, &pp, batch_size, cancellable, &e, error))
    return FALSE;
  *out = e.det;
  return TRUE;
}

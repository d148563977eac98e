/* vl-train-cache.h: the frozen-feature cache of a training run — one pass of the frozen prefix
 * over a split, keeping each item's activations at the lock boundary (or the final-norm tokens
 * when only a head outside the model trains), optionally those entering the next lock's block
 * too, and each item's masks and boxes — and the batches gathered from it. With narrow
 * arguments: the worker (vl-trainer.c) decides whether and what to cache (the schedule, the
 * lock, the size limit, its messages) and hands this module the model, the data and a
 * VlFeatCacheSpec; it never sees the worker's Run. Engine-internal.
 *
 *   VlFeatCacheSpec spec = { .numel = vl_model_boundary_numel (m, S, S), .keep_block = -1,
 *                            .size = S, .batch_size = 32, .seed = 0 };
 *   VlFeatCache fc = { 0 };
 *   VlFeatCacheWatch w = { should_stop, progress_add, run };
 *   if (vl_feat_cache_build (&fc, NULL, m, ds, VL_SPLIT_TRAIN, &pp, &spec, &w, &error) != …DONE)
 *     …;
 *   VlFeatBatch fb = { 0 };
 *   vl_feat_batch_reserve (&fb, &fc, 32, 0, 0);
 *   VlBatch b = vl_feat_cache_gather (&fc, ds, VL_SPLIT_TRAIN, items, n, &fb);
 *   …
 *   vl_feat_batch_clear (&fb);
 *   vl_feat_cache_clear (&fc);
 */
#pragma once

#include <glib.h>
#include <stdint.h>

#include "vl-dataset.h"
#include "vl-image.h"
#include "vl-model.h"

G_BEGIN_DECLS

/* One split's cached entries, indexed by the item's index in the split. */
typedef struct {
  float   *data;       /* (n, numel) activations at the lock boundary, or final-norm tokens */
  guint8  *ok;         /* (n) the image decoded */
  uint8_t *masks;      /* (n, size, size) segmentation: the items' masks at the input size */
  float   *boxes;      /* (n, max_boxes, 4) detection: the items' boxes at the input size */
  int     *box_labels; /* (n, max_boxes) */
  int     *n_boxes;    /* (n) */
  int      n;
  int64_t  numel;      /* floats per item */
  int      size;       /* the input size the masks and boxes are at */
  int      max_boxes;
} VlFeatCache;

/* What one pass caches. */
typedef struct {
  int64_t  numel;      /* floats per item: vl_model_boundary_numel, or the tokens' (tokens) */
  gboolean tokens;     /* the final-norm token grid (a full forward) rather than the boundary */
  int      keep_block; /* >= 0: also the tokens entering this block, into the next lock's
                        * cache (vl_model_forward_to_boundary_keeping); -1: none */
  int      size;       /* the input size S */
  int      batch_size;
  guint64  seed;       /* the loader's */
  int      max_boxes;  /* detection: room per image */
} VlFeatCacheSpec;

/* How a pass reports and is stopped: stop() is asked before each batch (TRUE ends the pass),
 * done() told after it with the batch's number of images. */
typedef struct {
  gboolean (*stop) (gpointer user_data);
  void     (*done) (gpointer user_data, int n);
  gpointer   user_data;
} VlFeatCacheWatch;

typedef enum {
  VL_FEAT_CACHE_DONE,
  VL_FEAT_CACHE_STOPPED,   /* watch->stop said so */
  VL_FEAT_CACHE_FAILED,    /* error set (G_IO_ERROR_CANCELLED when a stop interrupted the model) */
} VlFeatCacheEnd;

/* Floats of one image's tokens at input size `size` (T x width): a block boundary's entry. */
int64_t         vl_feat_cache_token_numel (VlModel *m, int size);

/* One pass of m over ds's split (preprocessed by pp, in the loader's unshuffled order) into fc
 * (empty): spec->numel floats per item, and the items' masks (a segmentation dataset) or boxes
 * (a detection dataset). With spec->keep_block >= 0, the tokens entering that block too, into
 * next (empty; vl_feat_cache_token_numel floats per item). On FAILED or STOPPED, fc and next hold
 * what was allocated: vl_feat_cache_clear them. */
VlFeatCacheEnd  vl_feat_cache_build      (VlFeatCache *fc, VlFeatCache *next, VlModel *m,
                                          VlDataset *ds, VlSplit split, const VlPreprocess *pp,
                                          const VlFeatCacheSpec *spec,
                                          const VlFeatCacheWatch *watch, GError **error);

void            vl_feat_cache_clear      (VlFeatCache *fc);

/* Room for a batch gathered from a cache, and the batch's targets as the dataset has them. */
typedef struct {
  float   *x;          /* (capacity, numel) */
  int     *labels;     /* (capacity) */
  int     *items;      /* (capacity) the items' indices in their split */
  float   *values;     /* (capacity, n_values) regression; NULL otherwise */
  int      n_values;
  uint8_t *masks;      /* (capacity, size, size) segmentation; NULL otherwise */
  float   *boxes;      /* (capacity, max_boxes, 4) detection; NULL otherwise */
  int     *box_labels; /* (capacity, max_boxes) */
  int     *n_boxes;    /* (capacity) */
  int      max_boxes;
} VlFeatBatch;

/* Room in fb for batch_size entries of fc (its numel, masks and boxes), n_values regression
 * targets per item (0: none) and max_boxes (the batches' max_boxes). */
void            vl_feat_batch_reserve    (VlFeatBatch *fb, const VlFeatCache *fc, int batch_size,
                                          int n_values, int max_boxes);

void            vl_feat_batch_clear      (VlFeatBatch *fb);

/* The items of split among items[0 .. n) whose images decoded, gathered from fc into fb (room for
 * n: vl_feat_batch_reserve), as a batch: their entries, labels and targets (values from ds,
 * masks and boxes from fc), in items' order. Its n is 0 when none decoded. */
VlBatch         vl_feat_cache_gather     (const VlFeatCache *fc, VlDataset *ds, VlSplit split,
                                          const int *items, int n, VlFeatBatch *fb);

/* The next batch of fc's items in index order from *i on: up to batch_size whose images
 * decoded, gathered into fb as vl_feat_cache_gather does; *i moves past them. FALSE (b empty) at
 * the end of the split. */
gboolean        vl_feat_cache_next       (const VlFeatCache *fc, VlDataset *ds, VlSplit split,
                                          int *i, int batch_size, VlFeatBatch *fb, VlBatch *b);

G_END_DECLS

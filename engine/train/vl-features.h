/* vl-features.h: a backbone's features of every image of a dataset split, and writing them for
 * other tools (scikit-learn, pandas, Orange, numpy).
 *
 *   VlFeatureOptions o = VL_FEATURE_OPTIONS_DEFAULT;          // final norm, CLS token
 *   g_autoptr(VlFeatures) f = vl_features_extract (m, ds, VL_FEATURE_SPLIT_ALL, &o,
 *                                                  progress, user_data, cancellable, &error);
 *   vl_features_write (f, "ants-bees.csv", &error);
 *
 * Images go through the model's evaluation preprocessing (vl_preprocess_from_model, the loader
 * without augmentation, in dataset order) in batches. A layer L is the token stream leaving
 * block L (0-based, timm's blocks.L), before any norm; VL_FEATURE_LAYER_FINAL is after the final
 * norm (for an fc_norm model: pooled, then normed, as the model's own features). Pooling: the CLS
 * token, or the mean / elementwise max over the patch tokens (CLS, distillation and register
 * tokens excluded), or every token. Final features with token/avg/max pooling are exactly the
 * model's vl_model_features; at the final layer "all" gives vl_model_tokens_final (for an fc_norm
 * model these are the tokens before its norm, as timm's forward_features).
 *
 * Files, by the extension of the path (case-insensitive):
 *   .safetensors  `features` F32 [N, D] ([N, T, W] for all tokens), `labels` I64 [N]; metadata
 *                 "files" and "classes" (JSON arrays of strings), "layer", "pool", "split",
 *                 "n_train" (with split all: the first n_train rows are the train images)
 *   .npy          the features (float32, C order, [N, D] or [N, T, W]) and, beside it with the
 *                 extension .csv, a table "file,label" of the N rows
 *   .csv          one table "file,label,f0,…,fD-1" (all tokens: D = T·W, token-major)
 * In both CSV tables `label` is the class name (RFC 4180 quoting), not its index: a class index
 * is its position in the dataset's sorted class names (the safetensors `classes`). Every file is
 * written to a temporary name beside it, fsynced and renamed. */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

#include "vl-dataset.h"
#include "vl-model.h"

G_BEGIN_DECLS

typedef enum {
  VL_FEATURE_SPLIT_TRAIN,
  VL_FEATURE_SPLIT_VAL,
  VL_FEATURE_SPLIT_ALL,     /* train, then val */
} VlFeatureSplit;

typedef enum {
  VL_FEATURE_POOL_TOKEN,    /* the CLS token (a model without one: an error) */
  VL_FEATURE_POOL_AVG,      /* mean over the patch tokens */
  VL_FEATURE_POOL_MAX,      /* elementwise max over the patch tokens */
  VL_FEATURE_POOL_ALL,      /* every token, prefix tokens included: (T, W) per image */
  VL_FEATURE_POOL_MAP,      /* the checkpoint's attention pool (SigLIP's; final layer only) */
} VlFeaturePool;

#define VL_FEATURE_LAYER_FINAL (-1)

typedef struct {
  int           layer;       /* block 0 … depth-1, or VL_FEATURE_LAYER_FINAL */
  VlFeaturePool pool;
  int           batch_size;  /* images per forward */
} VlFeatureOptions;

#define VL_FEATURE_OPTIONS_DEFAULT { .layer = VL_FEATURE_LAYER_FINAL, \
                                     .pool = VL_FEATURE_POOL_TOKEN, .batch_size = 32 }

typedef struct {
  int64_t        n;            /* images (those that failed to decode are left out) */
  int64_t        n_train;      /* of which the first n_train are train images */
  int            n_tokens;     /* 1 when pooled; T with VL_FEATURE_POOL_ALL */
  int            width;
  int64_t        dim;          /* n_tokens * width */
  float         *features;     /* (n, dim) */
  int           *labels;       /* (n) class indices */
  char         **files;        /* (n + 1), NULL-terminated: the items' names */
  int            n_classes;
  char         **class_names;  /* (n_classes + 1), NULL-terminated */
  VlFeatureSplit split;
  int            layer;
  VlFeaturePool  pool;
} VlFeatures;

/* Called after each batch: images done (attempted) out of total. */
typedef void (*VlFeatureProgress) (int64_t done, int64_t total, gpointer user_data);

gboolean     vl_feature_pool_from_string  (const char *s, VlFeaturePool *pool);
const char  *vl_feature_pool_name         (VlFeaturePool pool);
/* "final", or a block index 0 … depth-1 (negative counts from the end: -1 is the last block). */
gboolean     vl_feature_layer_from_string (const char *s, int depth, int *layer, GError **error);

/* Runs the model over the split. While it runs, the model's cancellable is `cancellable` (it is
 * cleared at the end) and its pooling may change (restored at the end). Fails with
 * G_IO_ERROR_CANCELLED once cancelled, and on a layer or pooling the model does not have. */
VlFeatures  *vl_features_extract          (VlModel *m, VlDataset *ds, VlFeatureSplit split,
                                           const VlFeatureOptions *options,
                                           VlFeatureProgress progress, gpointer user_data,
                                           GCancellable *cancellable, GError **error);
void         vl_features_free             (VlFeatures *f);
/* Every block's output and the final features from one pass over the images (the same cost as
 * one layer): a NULL-terminated array of depth + 1 sets, blocks 0 … depth-1 then final, pooled as
 * `pool` (not VL_FEATURE_POOL_ALL). Free with vl_features_free_all. Where in the network the
 * useful features are: a probe on each. */
VlFeatures **vl_features_extract_all_layers (VlModel *m, VlDataset *ds, VlFeatureSplit split,
                                             VlFeaturePool pool, int batch_size,
                                             VlFeatureProgress progress, gpointer user_data,
                                             GCancellable *cancellable, GError **error);
void         vl_features_free_all         (VlFeatures **sets);

/* Writes f as the extension of path names (above); an unknown one is an error naming it. */
gboolean     vl_features_write            (const VlFeatures *f, const char *path, GError **error);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlFeatures, vl_features_free)

G_END_DECLS

/* vl-dataset-private.h: the dataset's insides, shared by vl-dataset.c (building, the split,
 * vl_dataset_open, loading items), its readers vl-data-folder.c, vl-data-idx.c, vl-data-cifar.c,
 * vl-data-regress.c, vl-data-mask.c, vl-data-scenes.c, and the loader vl-loader.c. */
#pragma once

#include "vl-dataset.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>
#include <gio/gio.h>
#include <glib/gstdio.h>

G_BEGIN_DECLS


typedef enum {
  SOURCE_MEMORY,    /* preprocessed CHW floats */
  SOURCE_FOLDER,    /* image files */
  SOURCE_RECORDS,   /* 8-bit records (Fashion-MNIST HW, CIFAR CHW) */
} SourceKind;
typedef struct {
  const char    *name;    /* path or record name (in ds->names) */
  int            label;
  const uint8_t *record;  /* SOURCE_RECORDS: the record's pixels */
  const float   *image;   /* SOURCE_MEMORY: (C, S, S) */
  const float   *values;  /* regression targets (ds->n_values), NULL without them */
  const char    *mask;    /* segmentation, image files: the mask's path (in ds->names) */
  const uint8_t *mask_record;  /* segmentation, records: rec_w x rec_h class indices */
  int            mask_orientation;  /* segmentation: the EXIF orientation that turns the mask
                                     * upright with its photo (drawn on the stored pixels); 0/1:
                                     * none */
  const float   *boxes;   /* detection: (n_boxes, 4) in the image's pixels (in value_store) */
  const int     *box_labels;
  int            n_boxes;
  int            box_w, box_h;   /* the image's size the boxes are in */
} Item;
typedef struct {
  GArray *items;          /* Item */
  int    *class_counts;   /* (n_classes) */
} Split;
struct _VlDataset {
  SourceKind    kind;
  char         *description;
  int           n_classes;
  char        **class_names;   /* (n_classes + 1), NULL-terminated */
  int           channels;      /* native channels */
  Split         splits[2];
  GStringChunk *names;
  /* SOURCE_MEMORY */
  int           mem_size;
  float        *mem_images[2];
  /* SOURCE_RECORDS: rec_w x rec_h x channels bytes, planar (CHW) or interleaved */
  int           rec_w, rec_h;
  gboolean      rec_planar;
  GPtrArray    *blobs;         /* GBytes holding the records */

  /* regression targets: n_values numbers per item (targets.csv, or the rotation angle) */
  int           n_values;
  char        **value_names;   /* (n_values + 1), NULL-terminated */
  GPtrArray    *value_store;   /* float blocks the items' values point into */
  gboolean      rotate;        /* records are rotated by values[0] degrees when loaded */

  /* segmentation: every item has a mask of class indices (255 ignored) */
  gboolean      segment;
  /* detection: items have boxes (vl-det-data.h reads the files) */
  gboolean      detect;
  int           max_boxes;
  GMutex        lock;          /* guards skipped, failed */
  GPtrArray    *skipped;       /* VlSkipped* */
  GHashTable   *failed;        /* "split:index" -> reason, items that failed to decode */
};

/* vl-dataset.c: building a dataset */
VlDataset *vl_ds_new (SourceKind kind, int n_classes);
void vl_ds_add_item (VlDataset *ds, VlSplit split, const char *name, int label);
const Item *vl_ds_get_item (VlDataset *ds, VlSplit split, int i);
void vl_ds_add_skipped_locked (VlDataset *ds, const char *path, const char *reason);
void vl_ds_add_skipped (VlDataset *ds, const char *path, const char *reason);
void vl_ds_split_stratified (VlDataset *ds, double fraction, uint64_t seed);
gboolean vl_ds_check_fraction (const char *what, double fraction, GError **error);

/* vl-data-folder.c */
GPtrArray *vl_ds_list_folder (const char *path, GError **error);
char *vl_ds_check_image_header (const char *path, gint64 size);
VlDataset *vl_ds_open_folder (const char *spec, const VlDatasetOptions *opt, GError **error);

/* vl-data-idx.c */
gboolean vl_ds_parse_positive (const char *what, const char *key, const char *value, int *out,
                               GError **error);
VlDataset *vl_ds_open_fashion_mnist (const char *options, double *max_angle, GError **error);

/* vl-data-cifar.c */
VlDataset *vl_ds_open_cifar (gboolean hundred, const char *dir_spec, const VlDatasetOptions *opt,
                             GError **error);

/* vl-data-regress.c */
void vl_ds_rotate_record (const uint8_t *in, int W, int H, int C, float degrees, uint8_t *out);
VlDataset *vl_ds_open_fashion_mnist_rotate (const char *options, const VlDatasetOptions *opt,
                                            GError **error);
VlDataset *vl_ds_open_targets_folder (const char *root, const VlDatasetOptions *opt,
                                      GError **error);

/* vl-data-mask.c */
gboolean vl_ds_is_voc_folder (const char *root);
gboolean vl_ds_is_mask_pair_folder (const char *root);
VlDataset *vl_ds_open_voc (const char *root, GError **error);
VlDataset *vl_ds_open_mask_pairs (const char *root, const VlDatasetOptions *opt,
                                  GError **error);

/* vl-data-scenes.c */
VlDataset *vl_ds_open_fashion_mnist_scenes (const char *options, gboolean detect,
                                            GError **error);
VlDataset *vl_ds_open_detection (const char *root, GError **error);

G_END_DECLS

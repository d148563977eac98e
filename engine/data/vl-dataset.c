/* vl-dataset.c: labelled image datasets (memory, image folders, Fashion-MNIST, CIFAR) and the
 * prefetching batch loader.
 *
 * A dataset is built once by vl_dataset_open (or vl_dataset_new_memory) and is immutable
 * afterwards, except for the list of skipped items, which vl_dataset_load extends under a
 * mutex; so any number of threads may load items concurrently.
 *
 * Items keep their source's order within each split: image folders in byte order of class
 * names, then of file paths (recursively, below each class folder); records in file order.
 * Item names are file paths, "fashion-mnist:train#N" / "fashion-mnist:test#N" (N = record
 * index in the IDX file) and "DIR/data_batch_1.bin#N" for CIFAR.
 *
 * Validation split when the source has none (a folder without val/, CIFAR without a test
 * batch): per class of n items, round(n * val_fraction) (halves up), at least 1 and at most
 * n - 1 when n >= 2 and the fraction is above 0; which ones is a function of (seed, class).
 *
 * Fashion-MNIST caps (per-class, val-per-class) take the first N items of each class in file
 * order: no seed involved. Labels follow the order in which the classes are listed.
 *
 * The readers are vl-data-*.c (what they share: vl-dataset-private.h); the loader is
 * vl-loader.c. */
#include "vl-dataset-private.h"
#include "vl-error.h"
#include "vl-rng.h"
#include "vl-seg.h"          /* VL_SEG_IGNORE */
#include "vl-sync.h"
#include "vl-augment.h"

/* ------------------------------------------------------------------------------------- */
/* The dataset                                                                            */

VlDataset *
vl_ds_new (SourceKind kind, int n_classes)
{
  VlDataset *ds = g_new0 (VlDataset, 1);
  ds->kind = kind;
  ds->n_classes = n_classes;
  ds->class_names = g_new0 (char *, n_classes + 1);
  ds->names = g_string_chunk_new (4096);
  for (int s = 0; s < 2; s++)
    {
      ds->splits[s].items = g_array_new (FALSE, TRUE, sizeof (Item));
      ds->splits[s].class_counts = g_new0 (int, n_classes);
    }
  ds->blobs = g_ptr_array_new_with_free_func ((GDestroyNotify) g_bytes_unref);
  ds->value_store = g_ptr_array_new_with_free_func (g_free);
  g_mutex_init (&ds->lock);
  ds->skipped = g_ptr_array_new_with_free_func (vl_skipped_free);
  ds->failed = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_free);
  return ds;
}

void
vl_dataset_free (VlDataset *ds)
{
  if (ds == NULL)
    return;
  g_free (ds->description);
  g_strfreev (ds->class_names);
  for (int s = 0; s < 2; s++)
    {
      g_array_unref (ds->splits[s].items);
      g_free (ds->splits[s].class_counts);
      g_free (ds->mem_images[s]);
    }
  g_string_chunk_free (ds->names);
  g_ptr_array_unref (ds->blobs);
  g_ptr_array_unref (ds->value_store);
  g_strfreev (ds->value_names);
  g_mutex_clear (&ds->lock);
  g_ptr_array_unref (ds->skipped);
  g_hash_table_unref (ds->failed);
  g_free (ds);
}

void
vl_ds_add_item (VlDataset *ds, VlSplit split, const char *name, int label)
{
  Item it = { 0 };
  it.name = g_string_chunk_insert (ds->names, name);
  it.label = label;
  g_array_append_val (ds->splits[split].items, it);
  ds->splits[split].class_counts[label]++;
}

const Item *
vl_ds_get_item (VlDataset *ds, VlSplit split, int i)
{
  return &g_array_index (ds->splits[split].items, Item, i);
}

/* With ds->lock held. */
void
vl_ds_add_skipped_locked (VlDataset *ds, const char *path, const char *reason)
{
  g_ptr_array_add (ds->skipped, vl_skipped_new (path, reason));
}

void
vl_ds_add_skipped (VlDataset *ds, const char *path, const char *reason)
{
  vl_mutex_lock (&ds->lock);
  vl_ds_add_skipped_locked (ds, path, reason);
  vl_mutex_unlock (&ds->lock);
}

VlDataset *
vl_dataset_new_memory (int n_classes, const char *const *class_names, int channels, int size,
                       const float *train_images, const int *train_labels, int n_train,
                       const float *val_images, const int *val_labels, int n_val)
{
  g_return_val_if_fail (n_classes >= 1, NULL);
  g_return_val_if_fail (channels >= 1 && channels <= 4 && size > 0, NULL);
  g_return_val_if_fail (n_train >= 0 && n_val >= 0, NULL);
  g_return_val_if_fail (n_train == 0 || (train_images != NULL && train_labels != NULL), NULL);
  g_return_val_if_fail (n_val == 0 || (val_images != NULL && val_labels != NULL), NULL);

  VlDataset *ds = vl_ds_new (SOURCE_MEMORY, n_classes);
  ds->channels = channels;
  ds->mem_size = size;
  ds->description = g_strdup_printf ("memory (%d classes, %d + %d images)",
                                     n_classes, n_train, n_val);
  for (int k = 0; k < n_classes; k++)
    ds->class_names[k] = class_names != NULL && class_names[k] != NULL
                         ? g_strdup (class_names[k]) : g_strdup_printf ("class %d", k);

  gsize per = (gsize) channels * size * size;
  const float *images[2] = { train_images, val_images };
  const int *labels[2] = { train_labels, val_labels };
  int counts[2] = { n_train, n_val };
  for (int s = 0; s < 2; s++)
    {
      if (counts[s] == 0)
        continue;
      ds->mem_images[s] = g_memdup2 (images[s], per * counts[s] * sizeof (float));
      for (int i = 0; i < counts[s]; i++)
        {
          int label = labels[s][i];
          if (label < 0 || label >= n_classes)
            {
              g_critical ("vl_dataset_new_memory: label %d of %s image %d is outside 0..%d",
                          label, s == 0 ? "train" : "val", i, n_classes - 1);
              vl_dataset_free (ds);
              return NULL;
            }
          char name[64];
          g_snprintf (name, sizeof name, "memory:%s#%d", s == 0 ? "train" : "val", i);
          vl_ds_add_item (ds, (VlSplit) s, name, label);
          g_array_index (ds->splits[s].items, Item, i).image = ds->mem_images[s] + per * i;
        }
    }
  return ds;
}

/* ------------------------------------------------------------------------------------- */
/* Stratified validation split                                                            */

/* Moves a seeded, stratified val_fraction of each class of the train split to val: per class
 * of n images, round(n * fraction) of them (halves up), but at least one (and at most n - 1)
 * when n >= 2 and the fraction is above zero. Both splits keep the source's order. */
void
vl_ds_split_stratified (VlDataset *ds, double fraction, uint64_t seed)
{
  GArray *all = ds->splits[VL_SPLIT_TRAIN].items;
  const int K = ds->n_classes;
  int n_all = (int) all->len;
  gboolean *to_val = g_new0 (gboolean, MAX (n_all, 1));
  int *members = g_new (int, MAX (n_all, 1));

  for (int k = 0; k < K; k++)
    {
      int n = 0;
      for (int i = 0; i < n_all; i++)
        if (g_array_index (all, Item, i).label == k)
          members[n++] = i;
      int n_val = (int) (n * fraction + 0.5);
      if (fraction > 0.0 && n >= 2)
        n_val = CLAMP (n_val, 1, n - 1);
      else if (n < 2)
        n_val = 0;
      /* A partial Fisher-Yates shuffle of the class's members picks n_val of them. */
      VlRng rng;
      uint64_t x = seed ^ 0x73706c6974ull /* "split" */;
      vl_rng_seed (&rng, vl_rng_splitmix (&x) ^ (uint64_t) k);
      for (int j = 0; j < n_val; j++)
        {
          int r = j + (int) (vl_rng_next (&rng) % (uint64_t) (n - j));
          int t = members[j];
          members[j] = members[r];
          members[r] = t;
          to_val[members[j]] = TRUE;
        }
    }

  GArray *train = g_array_new (FALSE, TRUE, sizeof (Item));
  GArray *val = ds->splits[VL_SPLIT_VAL].items;
  g_array_set_size (val, 0);
  memset (ds->splits[VL_SPLIT_TRAIN].class_counts, 0, sizeof (int) * K);
  memset (ds->splits[VL_SPLIT_VAL].class_counts, 0, sizeof (int) * K);
  for (int i = 0; i < n_all; i++)
    {
      const Item *it = &g_array_index (all, Item, i);
      VlSplit s = to_val[i] ? VL_SPLIT_VAL : VL_SPLIT_TRAIN;
      g_array_append_val (s == VL_SPLIT_VAL ? val : train, *it);
      ds->splits[s].class_counts[it->label]++;
    }
  g_array_unref (all);
  ds->splits[VL_SPLIT_TRAIN].items = train;
  g_free (to_val);
  g_free (members);
}

gboolean
vl_ds_check_fraction (const char *what, double fraction, GError **error)
{
  if (!(fraction >= 0.0 && fraction < 1.0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: validation fraction %g is outside [0, 1)", what, fraction);
      return FALSE;
    }
  return TRUE;
}

gboolean
vl_dataset_is_detection (VlDataset *ds)
{
  return ds->detect;
}

int
vl_dataset_max_boxes (VlDataset *ds)
{
  return ds->max_boxes;
}

const float *
vl_dataset_boxes (VlDataset *ds, VlSplit split, int i, const int **labels, int *n)
{
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, NULL);
  const Item *it = vl_ds_get_item (ds, split, i);
  if (labels)
    *labels = it->box_labels;
  if (n)
    *n = it->n_boxes;
  return it->boxes;
}

void
vl_dataset_boxes_size (VlDataset *ds, VlSplit split, int i, int *width, int *height)
{
  g_return_if_fail (i >= 0 && i < (int) ds->splits[split].items->len);
  const Item *it = vl_ds_get_item (ds, split, i);
  *width = it->box_w;
  *height = it->box_h;
}

gboolean
vl_dataset_is_segmentation (VlDataset *ds)
{
  return ds->segment;
}

const char *
vl_dataset_mask_name (VlDataset *ds, VlSplit split, int i)
{
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, NULL);
  if (!ds->segment)
    return NULL;
  const Item *it = vl_ds_get_item (ds, split, i);
  return it->mask != NULL ? it->mask : it->name;
}

uint8_t *
vl_dataset_load_mask (VlDataset *ds, VlSplit split, int i, int *width, int *height,
                      GError **error)
{
  g_return_val_if_fail (ds->segment, NULL);
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, NULL);
  const Item *it = vl_ds_get_item (ds, split, i);
  if (it->mask_record != NULL)
    {
      *width = ds->rec_w;
      *height = ds->rec_h;
      return g_memdup2 (it->mask_record, (gsize) ds->rec_w * ds->rec_h);
    }
  g_autoptr(GError) local = NULL;
  int w = 0, h = 0;
  g_autofree uint8_t *m = vl_mask_load (it->mask, &w, &h, &local);
  char *reason = NULL;
  if (m == NULL)
    reason = g_strdup_printf ("%s (the mask of %s)", local->message, it->name);
  else
    for (gsize p = 0; p < (gsize) w * h && reason == NULL; p++)
      if (m[p] != VL_SEG_IGNORE && m[p] >= ds->n_classes)
        reason = g_strdup_printf ("%s: pixel (%d, %d) has value %d, outside the %d classes "
                                  "(0-%d, 255 ignored) of the mask of %s", it->mask,
                                  (int) (p % w), (int) (p / w), m[p], ds->n_classes,
                                  ds->n_classes - 1, it->name);
  if (reason == NULL && it->mask_orientation >= 2)
    {
      uint8_t *up = vl_orient_pixels (m, w, h, 1, it->mask_orientation, &w, &h);
      if (up == NULL)
        reason = g_strdup_printf ("%s: cannot allocate %dx%d pixels to turn the mask upright",
                                  it->mask, w, h);
      g_free (m);
      m = up;
    }
  if (reason != NULL)
    {
      gpointer key = GINT_TO_POINTER (i * 2 + (int) split + 1);
      vl_mutex_lock (&ds->lock);
      if (!g_hash_table_contains (ds->failed, key))
        {
          g_hash_table_insert (ds->failed, key, g_strdup (reason));
          vl_ds_add_skipped_locked (ds, it->name, reason);
        }
      vl_mutex_unlock (&ds->lock);
      g_set_error_literal (error, VL_ERROR, VL_ERROR_FORMAT, reason);
      g_free (reason);
      return NULL;
    }
  *width = w;
  *height = h;
  return g_steal_pointer (&m);
}

VlDataset *
vl_dataset_open (const char *spec, const VlDatasetOptions *options, GError **error)
{
  g_return_val_if_fail (spec != NULL, NULL);
  g_return_val_if_fail (error == NULL || *error == NULL, NULL);

  VlDatasetOptions defaults = VL_DATASET_OPTIONS_DEFAULT;
  const VlDatasetOptions *opt = options != NULL ? options : &defaults;

  if (*spec == '\0')
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "empty dataset name");
      return NULL;
    }
  if (strcmp (spec, "fashion-mnist-rotate") == 0)
    return vl_ds_open_fashion_mnist_rotate (NULL, opt, error);
  if (g_str_has_prefix (spec, "fashion-mnist-rotate:"))
    return vl_ds_open_fashion_mnist_rotate (spec + strlen ("fashion-mnist-rotate:"), opt, error);
  if (strcmp (spec, "fashion-mnist") == 0)
    return vl_ds_open_fashion_mnist (NULL, NULL, error);
  if (g_str_has_prefix (spec, "fashion-mnist:"))
    return vl_ds_open_fashion_mnist (spec + strlen ("fashion-mnist:"), NULL, error);
  if (g_str_has_prefix (spec, "cifar10:") || strcmp (spec, "cifar10") == 0)
    return vl_ds_open_cifar (FALSE, spec[7] == ':' ? spec + 8 : NULL, opt, error);
  if (g_str_has_prefix (spec, "cifar100:") || strcmp (spec, "cifar100") == 0)
    return vl_ds_open_cifar (TRUE, spec[8] == ':' ? spec + 9 : NULL, opt, error);
  if (strcmp (spec, "fashion-mnist-scenes") == 0)
    return vl_ds_open_fashion_mnist_scenes (NULL, opt->detect, error);
  if (g_str_has_prefix (spec, "fashion-mnist-scenes:"))
    return vl_ds_open_fashion_mnist_scenes (spec + strlen ("fashion-mnist-scenes:"), opt->detect,
                                            error);
  if (opt->detect)
    return vl_ds_open_detection (spec, error);
  if (vl_ds_is_voc_folder (spec))
    return vl_ds_open_voc (spec, error);
  if (vl_ds_is_mask_pair_folder (spec))
    return vl_ds_open_mask_pairs (spec, opt, error);
  return vl_ds_open_folder (spec, opt, error);
}

int
vl_dataset_n_values (VlDataset *ds)
{
  g_return_val_if_fail (ds != NULL, 0);
  return ds->n_values;
}

const char *
vl_dataset_value_name (VlDataset *ds, int j)
{
  g_return_val_if_fail (ds != NULL && j >= 0 && j < ds->n_values, NULL);
  return ds->value_names[j];
}

const float *
vl_dataset_values (VlDataset *ds, VlSplit split, int i)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL), NULL);
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, NULL);
  return vl_ds_get_item (ds, split, i)->values;
}

const char *
vl_dataset_description (VlDataset *ds)
{
  g_return_val_if_fail (ds != NULL, NULL);
  return ds->description;
}

int
vl_dataset_n_classes (VlDataset *ds)
{
  g_return_val_if_fail (ds != NULL, 0);
  return ds->n_classes;
}

const char *
vl_dataset_class_name (VlDataset *ds, int k)
{
  g_return_val_if_fail (ds != NULL && k >= 0 && k < ds->n_classes, NULL);
  return ds->class_names[k];
}

int
vl_dataset_n_items (VlDataset *ds, VlSplit split)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL), 0);
  return (int) ds->splits[split].items->len;
}

int
vl_dataset_class_count (VlDataset *ds, VlSplit split, int k)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL), 0);
  g_return_val_if_fail (k >= 0 && k < ds->n_classes, 0);
  return ds->splits[split].class_counts[k];
}

int
vl_dataset_label (VlDataset *ds, VlSplit split, int i)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL), -1);
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, -1);
  return vl_ds_get_item (ds, split, i)->label;
}

const char *
vl_dataset_item_name (VlDataset *ds, VlSplit split, int i)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL), NULL);
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, NULL);
  return vl_ds_get_item (ds, split, i)->name;
}

int
vl_dataset_channels (VlDataset *ds)
{
  g_return_val_if_fail (ds != NULL, 0);
  return ds->channels;
}

GPtrArray *
vl_dataset_skipped (VlDataset *ds)
{
  g_return_val_if_fail (ds != NULL, NULL);
  vl_mutex_lock (&ds->lock);
  GPtrArray *copy = g_ptr_array_new_full (ds->skipped->len, vl_skipped_free);
  for (guint i = 0; i < ds->skipped->len; i++)
    {
      g_ptr_array_add (copy, vl_skipped_copy (g_ptr_array_index (ds->skipped, i)));
    }
  vl_mutex_unlock (&ds->lock);
  return copy;
}

/* The augmentation drawn once for img and applied to it; *flipped (when not NULL) says whether
 * it mirrored the image, for the targets that a mirror changes. */
static void
augment_into (const VlImage *img, const VlPreprocess *pp, VlAugment augment, uint64_t seed,
              float *out, gboolean *flipped, gboolean squash, VlAugmentParams *params)
{
  VlAugmentParams p;
  vl_augment_draw (augment, seed, img->width, img->height, &p);
  if (squash && augment == VL_AUGMENT_NONE)
    {
      /* segmentation's evaluation: the whole image resized to size x size (no centre crop,
       * so that every pixel of the mask is predicted), bicubic as the training crops are */
      p.kind = VL_AUGMENT_LIGHT;
      p.crop_x = p.crop_y = 0;
      p.crop_w = img->width;
      p.crop_h = img->height;
      p.flip = FALSE;
    }
  vl_augment_apply (img, pp, &p, out);
  if (flipped)
    *flipped = p.flip;
  if (params)
    *params = p;
}

/* A memory image: copied, flipped (light, strong) with probability 1/2. */
static gboolean
load_memory (VlDataset *ds, const Item *it, const VlPreprocess *pp, VlAugment augment,
             uint64_t aug_seed, float *out, gboolean *flipped, GError **error)
{
  const int C = ds->channels, S = ds->mem_size;
  if (pp != NULL && (pp->channels != C || pp->size != S))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: in-memory images are %d x %d x %d, the model wants %d x %d x %d",
                   it->name, C, S, S, pp->channels, pp->size, pp->size);
      return FALSE;
    }
  memcpy (out, it->image, (gsize) C * S * S * sizeof (float));
  if (augment != VL_AUGMENT_NONE)
    {
      VlRng rng;
      vl_rng_seed (&rng, aug_seed);
      if (vl_rng_uniform (&rng) < 0.5)
        {
          vl_augment_flip_chw (out, C, S);
          if (flipped)
            *flipped = TRUE;
        }
    }
  return TRUE;
}

static gboolean
load_item (VlDataset *ds, VlSplit split, int i, const VlPreprocess *pp, VlAugment augment,
           uint64_t aug_seed, float *out, gboolean *flipped, VlAugmentParams *params,
           GError **error)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL),
                        FALSE);
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, FALSE);
  g_return_val_if_fail (out != NULL, FALSE);
  g_return_val_if_fail (error == NULL || *error == NULL, FALSE);

  const Item *it = vl_ds_get_item (ds, split, i);
  if (ds->kind == SOURCE_MEMORY)
    return load_memory (ds, it, pp, augment, aug_seed, out, flipped, error);

  g_return_val_if_fail (pp != NULL && (pp->channels == 1 || pp->channels == 3), FALSE);
  g_return_val_if_fail (pp->size > 0 && pp->crop_pct > 0, FALSE);

  if (ds->kind == SOURCE_RECORDS)
    {
      const int C = ds->channels, W = ds->rec_w, H = ds->rec_h;
      if (ds->rotate)
        {
          g_autoptr(VlImage) img = vl_image_new (W, H, C);
          vl_ds_rotate_record (it->record, W, H, C, it->values[0], img->pixels);
          augment_into (img, pp, augment, aug_seed, out, flipped, ds->segment || ds->detect,
                    params);
        }
      else if (!ds->rec_planar || C == 1)
        {
          VlImage img = { W, H, C, (uint8_t *) it->record };
          augment_into (&img, pp, augment, aug_seed, out, flipped, ds->segment || ds->detect,
                        params);
        }
      else
        {
          g_autoptr(VlImage) img = vl_image_new (W, H, C);
          gsize plane = (gsize) W * H;
          for (gsize p = 0; p < plane; p++)
            for (int c = 0; c < C; c++)
              img->pixels[p * C + c] = it->record[c * plane + p];
          augment_into (img, pp, augment, aug_seed, out, flipped, ds->segment || ds->detect,
                    params);
        }
      return TRUE;
    }

  /* An item that failed once fails again without decoding. */
  gpointer key = GINT_TO_POINTER (i * 2 + (int) split + 1);
  vl_mutex_lock (&ds->lock);
  const char *known = g_hash_table_lookup (ds->failed, key);
  if (known != NULL)
    g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %s", it->name, known);
  vl_mutex_unlock (&ds->lock);
  if (known != NULL)
    return FALSE;

  g_autoptr(GError) local = NULL;
  g_autoptr(VlImage) img = vl_image_load (it->name, 0, &local);
  if (img == NULL)
    {
      /* The reason without the "path: " vl_image_load puts in front. */
      const char *reason = local->message;
      gsize n = strlen (it->name);
      if (strncmp (reason, it->name, n) == 0 && strncmp (reason + n, ": ", 2) == 0)
        reason += n + 2;
      vl_mutex_lock (&ds->lock);
      if (!g_hash_table_contains (ds->failed, key))
        {
          g_hash_table_insert (ds->failed, key, g_strdup (reason));
          vl_ds_add_skipped_locked (ds, it->name, reason);
        }
      vl_mutex_unlock (&ds->lock);
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  augment_into (img, pp, augment, aug_seed, out, flipped, ds->segment || ds->detect,
                    params);
  return TRUE;
}

gboolean
vl_dataset_load (VlDataset *ds, VlSplit split, int i, const VlPreprocess *pp,
                 VlAugment augment, uint64_t aug_seed, float *out, GError **error)
{
  return load_item (ds, split, i, pp, augment, aug_seed, out, NULL, NULL, error);
}

gboolean
vl_dataset_load_target (VlDataset *ds, VlSplit split, int i, const VlPreprocess *pp,
                        VlAugment augment, uint64_t aug_seed, float *out, VlTarget *target,
                        GError **error)
{
  gboolean flipped = FALSE;
  VlAugmentParams params;
  if (!load_item (ds, split, i, pp, augment, aug_seed, out, &flipped, &params, error))
    return FALSE;
  const Item *it = vl_ds_get_item (ds, split, i);
  target->label = it->label;
  if (target->mask != NULL && ds->segment)
    {
      int mw = 0, mh = 0;
      g_autofree uint8_t *mask = vl_dataset_load_mask (ds, split, i, &mw, &mh, error);
      if (mask == NULL)
        return FALSE;
      if (mw != params.src_w || mh != params.src_h)
        {
          /* a record is always its mask's size; a file was checked at opening, so this is a
           * file that changed since */
          g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: the mask is %dx%d, its image "
                       "%s is %dx%d", it->mask, mw, mh, it->name, params.src_w, params.src_h);
          return FALSE;
        }
      vl_augment_apply_mask (mask, &params, pp, VL_SEG_IGNORE, target->mask);
    }
  target->n_boxes = 0;
  if (target->boxes != NULL && ds->detect && it->n_boxes > 0)
    target->n_boxes = vl_augment_apply_boxes (it->boxes, it->box_labels, it->n_boxes, &params,
                                              pp, 1.0f, target->boxes, target->box_labels);
  if (target->values && ds->n_values > 0)
    {
      memcpy (target->values, it->values, sizeof (float) * ds->n_values);
      /* a garment turned by θ and mirrored is the mirrored garment turned by -θ */
      if (ds->rotate && flipped)
        target->values[0] = -target->values[0];
    }
  return TRUE;
}

/* ------------------------------------------------------------------------------------- */
/* vitlab's data files                                                                    */

/* The installed data folder when this program runs from an installed bindir: the configured
 * prefix's, or the same layout around the executable (a DESTDIR install, a moved prefix); NULL
 * for a program in the build tree. */
static char *
installed_data_dir (void)
{
  g_autofree char *exe = g_file_read_link ("/proc/self/exe", NULL);
  if (exe == NULL)
    return NULL;
  g_autofree char *exe_dir = g_path_get_dirname (exe);
  if (strcmp (exe_dir, VITLAB_INSTALLED_BINDIR) == 0 &&
      g_file_test (VITLAB_INSTALLED_DATA_DIR, G_FILE_TEST_IS_DIR))
    return g_strdup (VITLAB_INSTALLED_DATA_DIR);
  /* prefix/bin/vitlab-cli -> prefix/share/vitlab */
  const char *bindir = VITLAB_BINDIR_REL;
  gsize n = strlen (exe_dir), b = strlen (bindir);
  if (g_path_is_absolute (bindir) || n <= b + 1 || strcmp (exe_dir + n - b, bindir) != 0 ||
      exe_dir[n - b - 1] != G_DIR_SEPARATOR)
    return NULL;
  g_autofree char *prefix = g_strndup (exe_dir, n - b - 1);
  char *data = g_build_filename (prefix, VITLAB_DATA_DIR_REL, NULL);
  if (g_file_test (data, G_FILE_TEST_IS_DIR))
    return data;
  g_free (data);
  return NULL;
}

char *
vl_data_path (const char *rel)
{
  static char *installed;
  static gsize once;
  const char *dir = g_getenv ("VITLAB_DATA_DIR");
  if (dir != NULL && *dir)
    return g_build_filename (dir, rel, NULL);
  if (g_once_init_enter (&once))
    {
      installed = installed_data_dir ();
      g_once_init_leave (&once, 1);
    }
  return g_build_filename (installed != NULL ? installed : VITLAB_SOURCE_DATA_DIR, rel, NULL);
}

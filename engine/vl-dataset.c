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
 * The loader: see the comment above struct _VlLoader. */
#include "vl-dataset.h"
#include "vl-augment.h"
#include "vl-rng.h"
#include "vl-safetensors.h"   /* VL_ERROR */
#include "vl-seg.h"          /* VL_SEG_IGNORE */
#include "vl-det-data.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <stdio.h>
#include <string.h>

#include <gio/gio.h>
#include <glib/gstdio.h>

#include "vl-sync.h"

/* ------------------------------------------------------------------------------------- */
/* The dataset                                                                            */

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

static VlDataset *
dataset_new (SourceKind kind, int n_classes)
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

static void
add_item (VlDataset *ds, VlSplit split, const char *name, int label)
{
  Item it = { 0 };
  it.name = g_string_chunk_insert (ds->names, name);
  it.label = label;
  g_array_append_val (ds->splits[split].items, it);
  ds->splits[split].class_counts[label]++;
}

static const Item *
get_item (VlDataset *ds, VlSplit split, int i)
{
  return &g_array_index (ds->splits[split].items, Item, i);
}

/* With ds->lock held. */
static void
add_skipped_locked (VlDataset *ds, const char *path, const char *reason)
{
  g_ptr_array_add (ds->skipped, vl_skipped_new (path, reason));
}

static void
add_skipped (VlDataset *ds, const char *path, const char *reason)
{
  vl_mutex_lock (&ds->lock);
  add_skipped_locked (ds, path, reason);
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

  VlDataset *ds = dataset_new (SOURCE_MEMORY, n_classes);
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
          add_item (ds, (VlSplit) s, name, label);
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
static void
split_stratified (VlDataset *ds, double fraction, uint64_t seed)
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

static gboolean
check_fraction (const char *what, double fraction, GError **error)
{
  if (!(fraction >= 0.0 && fraction < 1.0))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: validation fraction %g is outside [0, 1)", what, fraction);
      return FALSE;
    }
  return TRUE;
}

/* ------------------------------------------------------------------------------------- */
/* Image folders                                                                          *
 *
 * Files are found recursively under each class folder, in byte order of their names. Names
 * starting with '.' (hidden files, .DS_Store, AppleDouble "._x.jpg") are ignored, as are files
 * without an image extension (README.txt, labels.csv). A file with an image extension is read
 * up to its header: when that fails, or the file is empty, or above VL_IMAGE_MAX_PIXELS, it is
 * skipped and listed with its reason. TIFF and WebP count as image files that vitlab
 * cannot decode, so they are listed as skipped rather than silently ignored. */

#define MAX_FOLDER_DEPTH 16

static int
compare_names (gconstpointer a, gconstpointer b)
{
  return strcmp (*(const char *const *) a, *(const char *const *) b);
}

static VlDataset *open_targets_folder (const char *root, const VlDatasetOptions *opt,
                                       GError **error);

/* Visible entries of a folder, sorted by byte order. */
static GPtrArray *
list_folder (const char *path, GError **error)
{
  g_autoptr(GError) local = NULL;
  GDir *dir = g_dir_open (path, 0, &local);
  if (dir == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot read folder: %s", path,
                   local->message);
      return NULL;
    }
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  const char *name;
  while ((name = g_dir_read_name (dir)) != NULL)
    if (name[0] != '.')
      g_ptr_array_add (names, g_strdup (name));
  g_dir_close (dir);
  g_ptr_array_sort (names, compare_names);
  return names;
}

/* Reads the header of an image file; NULL when usable, else the reason it is skipped. */
static char *
check_image_header (const char *path, gint64 size)
{
  if (size == 0)
    return g_strdup ("empty file");
  g_autoptr(GError) local = NULL;
  if (vl_image_check_file (path, NULL, NULL, &local))
    return NULL;
  /* the message is "PATH: reason" */
  const char *reason = local->message;
  if (g_str_has_prefix (reason, path) && strncmp (reason + strlen (path), ": ", 2) == 0)
    reason += strlen (path) + 2;
  return g_strdup (reason);
}

/* Folders and files already taken by a scan, by device and inode: a symbolic link to a folder
 * is followed once, and one file reached twice (links, hard links) is one item. */
static gboolean
mark_seen (GHashTable *seen, char kind, const GStatBuf *st)
{
  return g_hash_table_add (seen, g_strdup_printf ("%c%" G_GUINT64_FORMAT ":%" G_GUINT64_FORMAT,
                                                  kind, (guint64) st->st_dev,
                                                  (guint64) st->st_ino));
}

static void
mark_folder_seen (GHashTable *seen, const char *path)
{
  GStatBuf st;
  if (g_stat (path, &st) == 0 && S_ISDIR (st.st_mode))
    mark_seen (seen, 'd', &st);
}

static void
note_skipped (VlDataset *ds, const char *path, const char *reason, char **first_skip)
{
  add_skipped (ds, path, reason);
  if (*first_skip == NULL)
    *first_skip = g_strdup_printf ("%s: %s", path, reason);
}

/* Appends the usable images under `path` to `out` (paths), recording skipped ones. Returns
 * the number of image files skipped; *first_skip receives the first one's description. A
 * symbolic link to a folder seen before (`seen`: the dataset's folders, and every folder and
 * file taken so far) is skipped, as is a dangling link; both are listed. */
static int
collect_images (VlDataset *ds, GHashTable *seen, const char *path, int depth, GPtrArray *out,
                char **first_skip)
{
  g_autoptr(GError) local = NULL;
  GPtrArray *names = list_folder (path, &local);
  int n_skipped = 0;
  if (names == NULL)
    {
      /* An unreadable subfolder: listed, the rest goes on. */
      const char *reason = local->message + strlen (path) + 2;   /* after "path: " */
      add_skipped (ds, path, reason);
      if (*first_skip == NULL)
        *first_skip = g_strdup (local->message);
      return 1;
    }
  for (guint i = 0; i < names->len; i++)
    {
      g_autofree char *full = g_build_filename (path, g_ptr_array_index (names, i), NULL);
      GStatBuf lst, st;
      gboolean is_link = g_lstat (full, &lst) == 0 && S_ISLNK (lst.st_mode);
      if (g_stat (full, &st) != 0)
        {
          if (is_link)
            {
              note_skipped (ds, full, "dangling symbolic link (its target does not exist)",
                            first_skip);
              n_skipped++;
            }
          continue;
        }
      if (S_ISDIR (st.st_mode))
        {
          if (!mark_seen (seen, 'd', &st))
            {
              /* a link back up (to .., say) or to another class's folder */
              if (is_link)
                {
                  note_skipped (ds, full, "symbolic link to a folder the dataset already "
                                "includes", first_skip);
                  n_skipped++;
                }
              continue;
            }
          if (depth < MAX_FOLDER_DEPTH)
            n_skipped += collect_images (ds, seen, full, depth + 1, out, first_skip);
          continue;
        }
      if (!S_ISREG (st.st_mode) || !vl_image_has_extension (full, TRUE))
        continue;
      if (!mark_seen (seen, 'f', &st))
        {
          note_skipped (ds, full, "the same file as another image of the dataset (a link)",
                        first_skip);
          n_skipped++;
          continue;
        }
      char *reason = check_image_header (full, st.st_size);
      if (reason == NULL)
        {
          g_ptr_array_add (out, g_steal_pointer (&full));
          continue;
        }
      note_skipped (ds, full, reason, first_skip);
      n_skipped++;
      g_free (reason);
    }
  g_ptr_array_unref (names);
  return n_skipped;
}

/* Adds the images of class folder `path` to `split`; an error when there is none. */
static gboolean
add_class_folder (VlDataset *ds, GHashTable *seen, VlSplit split, const char *path, int label,
                  GError **error)
{
  GPtrArray *files = g_ptr_array_new_with_free_func (g_free);
  char *first_skip = NULL;
  int n_skipped = collect_images (ds, seen, path, 0, files, &first_skip);
  gboolean ok = files->len > 0;
  if (!ok && n_skipped > 0)
    g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                 "%s: class folder has no usable image (%d skipped; first: %s)",
                 path, n_skipped, first_skip);
  else if (!ok)
    g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                 "%s: class folder has no image files (jpg, png, bmp, gif, pnm, tga, psd, hdr)",
                 path);
  for (guint i = 0; i < files->len; i++)
    add_item (ds, split, g_ptr_array_index (files, i), label);
  g_free (first_skip);
  g_ptr_array_unref (files);
  return ok;
}

/* Subfolders of path (the class folders), sorted. */
static GPtrArray *
list_subfolders (const char *path, GError **error)
{
  GPtrArray *names = list_folder (path, error);
  if (names == NULL)
    return NULL;
  GPtrArray *dirs = g_ptr_array_new_with_free_func (g_free);
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      g_autofree char *full = g_build_filename (path, name, NULL);
      if (g_file_test (full, G_FILE_TEST_IS_DIR))
        g_ptr_array_add (dirs, g_strdup (name));
    }
  g_ptr_array_unref (names);
  return dirs;
}

static gboolean
folder_has_images (const char *path)
{
  GPtrArray *names = list_folder (path, NULL);
  gboolean found = FALSE;
  for (guint i = 0; names != NULL && i < names->len && !found; i++)
    found = vl_image_has_extension (g_ptr_array_index (names, i), TRUE);
  if (names != NULL)
    g_ptr_array_unref (names);
  return found;
}

static VlDataset *
open_folder (const char *spec, const VlDatasetOptions *opt, GError **error)
{
  g_autofree char *root = g_strdup (spec);
  gsize len = strlen (root);
  while (len > 1 && G_IS_DIR_SEPARATOR (root[len - 1]))
    root[--len] = '\0';

  if (!g_file_test (root, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: no such folder", root);
      return NULL;
    }
  if (!g_file_test (root, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: not a folder (a dataset is a folder with one subfolder per class, "
                   "or train/ and val/ folders of class folders)", root);
      return NULL;
    }

  g_autofree char *csv = g_build_filename (root, "targets.csv", NULL);
  g_autofree char *train_csv = g_build_filename (root, "train", "targets.csv", NULL);
  if (g_file_test (csv, G_FILE_TEST_EXISTS) || g_file_test (train_csv, G_FILE_TEST_EXISTS))
    return open_targets_folder (root, opt, error);

  g_autofree char *train_dir = g_build_filename (root, "train", NULL);
  g_autofree char *val_dir = g_build_filename (root, "val", NULL);
  gboolean split_layout = g_file_test (train_dir, G_FILE_TEST_IS_DIR);
  gboolean has_val = split_layout && g_file_test (val_dir, G_FILE_TEST_IS_DIR);
  const char *class_root = split_layout ? train_dir : root;

  g_autoptr(GPtrArray) classes = list_subfolders (class_root, error);
  if (classes == NULL)
    return NULL;
  if (classes->len == 0)
    {
      if (folder_has_images (class_root))
        g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                     "%s: no class folders; put the images in one subfolder per class "
                     "(%s/CLASS/image.jpg)", class_root, class_root);
      else
        g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                     "%s: no images (expected one subfolder per class, or train/ and val/ "
                     "folders of class folders)", class_root);
      return NULL;
    }
  if (classes->len < 2)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: only one class folder (%s); at least two classes are needed",
                   class_root, (const char *) g_ptr_array_index (classes, 0));
      return NULL;
    }
  if (!has_val && !check_fraction (root, opt->val_fraction, error))
    return NULL;

  g_autoptr(VlDataset) ds = dataset_new (SOURCE_FOLDER, (int) classes->len);
  ds->channels = 3;
  for (guint k = 0; k < classes->len; k++)
    ds->class_names[k] = g_strdup (g_ptr_array_index (classes, k));

  /* The dataset's own folders are taken before any is scanned, so that a link to one of them
   * from inside a class folder is not followed (its images would get that class's label). */
  g_autoptr(GHashTable) seen = g_hash_table_new_full (g_str_hash, g_str_equal, g_free, NULL);
  g_autoptr(GPtrArray) val_classes = NULL;
  mark_folder_seen (seen, root);
  mark_folder_seen (seen, class_root);
  for (guint k = 0; k < classes->len; k++)
    {
      g_autofree char *dir = g_build_filename (class_root, ds->class_names[k], NULL);
      mark_folder_seen (seen, dir);
    }
  if (has_val)
    {
      val_classes = list_subfolders (val_dir, error);
      if (val_classes == NULL)
        return NULL;
      mark_folder_seen (seen, val_dir);
      for (guint j = 0; j < val_classes->len; j++)
        {
          g_autofree char *dir = g_build_filename (val_dir, g_ptr_array_index (val_classes, j),
                                                   NULL);
          mark_folder_seen (seen, dir);
        }
    }

  for (guint k = 0; k < classes->len; k++)
    {
      g_autofree char *dir = g_build_filename (class_root, ds->class_names[k], NULL);
      if (!add_class_folder (ds, seen, VL_SPLIT_TRAIN, dir, (int) k, error))
        return NULL;
    }

  g_autofree char *base = g_path_get_basename (root);
  if (has_val)
    {
      for (guint j = 0; j < val_classes->len; j++)
        {
          const char *name = g_ptr_array_index (val_classes, j);
          g_autofree char *dir = g_build_filename (val_dir, name, NULL);
          int k = -1;
          for (int c = 0; c < ds->n_classes && k < 0; c++)
            if (strcmp (ds->class_names[c], name) == 0)
              k = c;
          if (k < 0)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                           "%s: class folder '%s' has no counterpart in %s",
                           dir, name, train_dir);
              return NULL;
            }
          if (!add_class_folder (ds, seen, VL_SPLIT_VAL, dir, k, error))
            return NULL;
        }
      ds->description = g_strdup_printf ("%s (train/val folders)", base);
    }
  else
    {
      split_stratified (ds, opt->val_fraction, opt->seed);
      ds->description = g_strdup_printf ("%s (%s, %g%% held out for validation, seed %"
                                         G_GUINT64_FORMAT ")", base,
                                         split_layout ? "train folder" : "class folders",
                                         opt->val_fraction * 100.0, opt->seed);
    }
  return g_steal_pointer (&ds);
}

/* ------------------------------------------------------------------------------------- */
/* Fashion-MNIST (gzip IDX)                                                               *
 *
 * Under a per-class cap the first N images of each chosen class in file order are taken
 * (deterministic, independent of the seed). */

#define FASHION_MNIST_DIR "/usr/share/datasets/fashion-mnist"

static const char *const fashion_mnist_names[10] = {
  "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
  "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
};

static GInputStream *
gz_open (const char *path, GError **error)
{
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autoptr(GError) local = NULL;
  g_autoptr(GFileInputStream) raw = g_file_read (file, NULL, &local);
  if (raw == NULL)
    {
      if (g_error_matches (local, G_IO_ERROR, G_IO_ERROR_NOT_FOUND))
        g_set_error (error, VL_ERROR, VL_ERROR_IO,
                     "%s: no such file (Fashion-MNIST comes with Debian's "
                     "dataset-fashion-mnist package)", path);
      else
        g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot open: %s", path,
                     local->message);
      return NULL;
    }
  g_autoptr(GZlibDecompressor) gz = g_zlib_decompressor_new (G_ZLIB_COMPRESSOR_FORMAT_GZIP);
  return g_converter_input_stream_new (G_INPUT_STREAM (raw), G_CONVERTER (gz));
}

static gboolean
gz_read (GInputStream *in, const char *path, void *buf, gsize n, GError **error)
{
  gsize got = 0;
  g_autoptr(GError) local = NULL;
  if (!g_input_stream_read_all (in, buf, n, &got, NULL, &local))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: cannot decompress: %s", path,
                   local->message);
      return FALSE;
    }
  if (got != n)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: truncated (the data ends early)",
                   path);
      return FALSE;
    }
  return TRUE;
}

static guint32
read_be32 (const uint8_t *p)
{
  return (guint32) p[0] << 24 | (guint32) p[1] << 16 | (guint32) p[2] << 8 | p[3];
}

/* Reads an IDX label file (magic 0x801) into a new array of *n labels. */
static uint8_t *
idx_read_labels (const char *path, int *n, GError **error)
{
  g_autoptr(GInputStream) in = gz_open (path, error);
  if (in == NULL)
    return NULL;
  uint8_t head[8];
  if (!gz_read (in, path, head, sizeof head, error))
    return NULL;
  guint32 count = read_be32 (head + 4);
  if (read_be32 (head) != 0x801 || count > 10000000)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: not an IDX label file (magic 0x%08x, %u items)", path,
                   read_be32 (head), count);
      return NULL;
    }
  uint8_t *labels = g_malloc (MAX (count, 1));
  if (!gz_read (in, path, labels, count, error))
    {
      g_free (labels);
      return NULL;
    }
  for (guint32 i = 0; i < count; i++)
    if (labels[i] >= 10)
      {
        g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: item %u has label %d, not 0..9",
                     path, i, labels[i]);
        g_free (labels);
        return NULL;
      }
  *n = (int) count;
  return labels;
}

/* Adds the IDX images `take` (ascending indices, n_take of them) to `split` as records. */
static gboolean
idx_add_images (VlDataset *ds, VlSplit split, const char *path, const char *record_prefix,
                int n_labels, const uint8_t *labels, const int *class_map,
                const int *take, int n_take, GError **error)
{
  g_autoptr(GInputStream) in = gz_open (path, error);
  if (in == NULL)
    return FALSE;
  uint8_t head[16];
  if (!gz_read (in, path, head, sizeof head, error))
    return FALSE;
  guint32 count = read_be32 (head + 4), rows = read_be32 (head + 8), cols = read_be32 (head + 12);
  if (read_be32 (head) != 0x803 || rows == 0 || cols == 0 || rows > 4096 || cols > 4096)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: not an IDX image file (magic 0x%08x, %u x %u)", path,
                   read_be32 (head), rows, cols);
      return FALSE;
    }
  if ((int) count != n_labels)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: %u images but its label file has %d", path, count, n_labels);
      return FALSE;
    }
  if (ds->rec_w != 0 && (ds->rec_w != (int) cols || ds->rec_h != (int) rows))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                   "%s: images are %u x %u, the training images %d x %d", path, cols, rows,
                   ds->rec_w, ds->rec_h);
      return FALSE;
    }
  ds->rec_w = (int) cols;
  ds->rec_h = (int) rows;
  gsize rec = (gsize) rows * cols;

  /* Stream the records up to the last one taken, keeping the taken ones. */
  uint8_t *data = g_malloc (MAX (rec * n_take, 1));
  uint8_t *skip = g_malloc (rec * 64);
  int pos = 0;
  for (int t = 0; t < n_take; t++)
    {
      while (pos < take[t])
        {
          int n = MIN (take[t] - pos, 64);
          if (!gz_read (in, path, skip, rec * n, error))
            goto fail;
          pos += n;
        }
      if (!gz_read (in, path, data + rec * t, rec, error))
        goto fail;
      pos++;
    }
  g_free (skip);

  GBytes *blob = g_bytes_new_take (data, rec * n_take);
  g_ptr_array_add (ds->blobs, blob);
  const uint8_t *base = g_bytes_get_data (blob, NULL);
  for (int t = 0; t < n_take; t++)
    {
      char name[96];
      g_snprintf (name, sizeof name, "%s#%d", record_prefix, take[t]);
      add_item (ds, split, name, class_map[labels[take[t]]]);
      Item *it = &g_array_index (ds->splits[split].items, Item,
                                 ds->splits[split].items->len - 1);
      it->record = base + rec * t;
    }
  return TRUE;

fail:
  g_free (skip);
  g_free (data);
  return FALSE;
}

/* The first `cap` (all when cap <= 0) items of each chosen class, in file order. */
static int *
select_per_class (const uint8_t *labels, int n, const int *class_map, int n_classes, int cap,
                  int *n_take)
{
  int *take = g_new (int, MAX (n, 1));
  int *taken = g_new0 (int, n_classes);
  int m = 0;
  for (int i = 0; i < n; i++)
    {
      int k = class_map[labels[i]];
      if (k >= 0 && (cap <= 0 || taken[k] < cap))
        {
          taken[k]++;
          take[m++] = i;
        }
    }
  g_free (taken);
  *n_take = m;
  return take;
}

static gboolean
parse_positive (const char *what, const char *key, const char *value, int *out,
                GError **error)
{
  guint64 v = 0;
  if (!g_ascii_string_to_unsigned (value, 10, 1, G_MAXINT, &v, NULL))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: %s=%s is not a positive integer", what, key, value);
      return FALSE;
    }
  *out = (int) v;
  return TRUE;
}

/* "5-9", "0", "7" ... into classes (in the order given). */
static gboolean
parse_class_item (const char *what, const char *item, int *classes, int *n_classes,
                  GError **error)
{
  g_auto(GStrv) range = g_strsplit (item, "-", 3);
  guint64 lo = 0, hi = 0;
  guint parts = g_strv_length (range);
  gboolean ok = parts >= 1 && parts <= 2
                && g_ascii_string_to_unsigned (range[0], 10, 0, 9, &lo, NULL)
                && g_ascii_string_to_unsigned (range[parts - 1], 10, 0, 9, &hi, NULL)
                && lo <= hi;
  if (!ok)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: class '%s' is not a class number 0..9 or a range like 5-9",
                   what, item);
      return FALSE;
    }
  for (guint64 c = lo; c <= hi; c++)
    {
      for (int j = 0; j < *n_classes; j++)
        if (classes[j] == (int) c)
          {
            g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: class %d is listed twice",
                         what, (int) c);
            return FALSE;
          }
      classes[(*n_classes)++] = (int) c;
    }
  return TRUE;
}

static VlDataset *
open_fashion_mnist (const char *options, double *max_angle, GError **error)
{
  const char *what = "fashion-mnist";
  int classes[10], n_classes = 0, per_class = 0, val_per_class = 0;
  g_autofree char *dir = g_strdup (FASHION_MNIST_DIR);
  g_autoptr(GString) class_text = g_string_new (NULL);

  /* classes=5-9,per-class=100 or classes=0,2,5,per-class=100: an item without '=' continues
   * the class list. */
  g_auto(GStrv) tokens = g_strsplit (options != NULL ? options : "", ",", -1);
  gboolean in_classes = FALSE;
  for (int t = 0; tokens[t] != NULL; t++)
    {
      char *tok = g_strstrip (tokens[t]);
      char *eq = strchr (tok, '=');
      if (*tok == '\0')
        continue;
      if (eq == NULL)
        {
          if (!in_classes)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                           "%s: option '%s' is not key=value (classes=5-9, per-class=N, "
                           "val-per-class=N, dir=PATH)", what, tok);
              return NULL;
            }
          if (!parse_class_item (what, tok, classes, &n_classes, error))
            return NULL;
          g_string_append_printf (class_text, ",%s", tok);
          continue;
        }
      *eq = '\0';
      const char *key = tok, *value = eq + 1;
      in_classes = FALSE;
      if (strcmp (key, "classes") == 0)
        {
          in_classes = TRUE;
          n_classes = 0;
          if (!parse_class_item (what, value, classes, &n_classes, error))
            return NULL;
          g_string_assign (class_text, value);
        }
      else if (strcmp (key, "per-class") == 0)
        {
          if (!parse_positive (what, key, value, &per_class, error))
            return NULL;
        }
      else if (strcmp (key, "val-per-class") == 0)
        {
          if (!parse_positive (what, key, value, &val_per_class, error))
            return NULL;
        }
      else if (strcmp (key, "dir") == 0)
        {
          g_free (dir);
          dir = g_strdup (value);
        }
      else if (strcmp (key, "max-angle") == 0 && max_angle != NULL)
        {
          char *end = NULL;
          double a = g_ascii_strtod (value, &end);
          if (end == value || *end != '\0' || !(a > 0.0 && a <= 180.0))
            {
              g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                           "%s: max-angle '%s': expected degrees in (0, 180]", what, value);
              return NULL;
            }
          *max_angle = a;
        }
      else
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "%s: unknown option '%s' (classes=5-9, per-class=N, val-per-class=N, "
                       "dir=PATH)", what, key);
          return NULL;
        }
    }
  if (n_classes == 0)
    for (int c = 0; c < 10; c++)
      classes[n_classes++] = c;
  if (n_classes < 2 && max_angle == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: only one class chosen; at least two classes are needed", what);
      return NULL;
    }

  int class_map[10];
  for (int c = 0; c < 10; c++)
    class_map[c] = -1;
  for (int k = 0; k < n_classes; k++)
    class_map[classes[k]] = k;

  g_autoptr(VlDataset) ds = dataset_new (SOURCE_RECORDS, n_classes);
  ds->channels = 1;
  for (int k = 0; k < n_classes; k++)
    ds->class_names[k] = g_strdup (fashion_mnist_names[classes[k]]);

  static const char *const files[2][3] = {
    { "train-labels-idx1-ubyte.gz", "train-images-idx3-ubyte.gz", "fashion-mnist:train" },
    { "t10k-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "fashion-mnist:test" },
  };
  for (int s = 0; s < 2; s++)
    {
      g_autofree char *label_path = g_build_filename (dir, files[s][0], NULL);
      g_autofree char *image_path = g_build_filename (dir, files[s][1], NULL);
      int n = 0;
      g_autofree uint8_t *labels = idx_read_labels (label_path, &n, error);
      if (labels == NULL)
        return NULL;
      int n_take = 0;
      g_autofree int *take = select_per_class (labels, n, class_map, n_classes,
                                               s == 0 ? per_class : val_per_class, &n_take);
      if (!idx_add_images (ds, (VlSplit) s, image_path, files[s][2], n, labels, class_map,
                           take, n_take, error))
        return NULL;
    }
  for (int k = 0; k < n_classes; k++)
    if (ds->splits[VL_SPLIT_TRAIN].class_counts[k] == 0)
      {
        g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: class %s has no training images",
                     dir, ds->class_names[k]);
        return NULL;
      }

  GString *d = g_string_new ("Fashion-MNIST (");
  if (n_classes == 10)
    g_string_append (d, "10 classes");
  else
    {
      g_string_append_printf (d, "classes %s", class_text->str);
    }
  if (per_class > 0)
    g_string_append_printf (d, ", %d per class", per_class);
  if (val_per_class > 0)
    g_string_append_printf (d, ", %d per class for validation", val_per_class);
  g_string_append (d, ")");
  ds->description = g_string_free (d, FALSE);
  return g_steal_pointer (&ds);
}

/* ------------------------------------------------------------------------------------- */
/* CIFAR binary batches                                                                   */

static const char *const cifar10_names[10] = {
  "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
};

static const char *const cifar100_names[100] = {
  "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle",
  "bottle", "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle",
  "caterpillar", "cattle", "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch",
  "crab", "crocodile", "cup", "dinosaur", "dolphin", "elephant", "flatfish", "forest", "fox",
  "girl", "hamster", "house", "kangaroo", "keyboard", "lamp", "lawn_mower", "leopard", "lion",
  "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain", "mouse", "mushroom",
  "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
  "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
  "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake",
  "spider", "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone",
  "television", "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale",
  "willow_tree", "wolf", "woman", "worm",
};

#define CIFAR_PIXELS 3072   /* 3 x 32 x 32, planar */

/* Maps a CIFAR batch file and adds its records to split. */
static gboolean
cifar_add_file (VlDataset *ds, VlSplit split, const char *path, int label_bytes,
                int label_byte, GError **error)
{
  g_autoptr(GError) local = NULL;
  GMappedFile *mf = g_mapped_file_new (path, FALSE, &local);
  if (mf == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot read: %s", path, local->message);
      return FALSE;
    }
  GBytes *blob = g_mapped_file_get_bytes (mf);
  g_mapped_file_unref (mf);
  g_ptr_array_add (ds->blobs, blob);

  gsize size = 0;
  const uint8_t *data = g_bytes_get_data (blob, &size);
  gsize rec = (gsize) label_bytes + CIFAR_PIXELS;
  if (size == 0 || size % rec != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                   "%s: %" G_GSIZE_FORMAT " bytes is not a whole number of %" G_GSIZE_FORMAT
                   "-byte records (%d label byte%s + 3072 pixel bytes)", path, size, rec,
                   label_bytes, label_bytes > 1 ? "s" : "");
      return FALSE;
    }
  for (gsize r = 0; r < size / rec; r++)
    {
      const uint8_t *p = data + r * rec;
      int label = p[label_byte];
      if (label >= ds->n_classes)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s: record %" G_GSIZE_FORMAT " has label %d, not 0..%d", path, r,
                       label, ds->n_classes - 1);
          return FALSE;
        }
      char name[32];
      g_snprintf (name, sizeof name, "#%" G_GSIZE_FORMAT, r);
      g_autofree char *full = g_strconcat (path, name, NULL);
      add_item (ds, split, full, label);
      Item *it = &g_array_index (ds->splits[split].items, Item,
                                 ds->splits[split].items->len - 1);
      it->record = p + label_bytes;
    }
  return TRUE;
}

/* Class names from a text file of one name a line, when it has exactly n of them. */
static void
cifar_read_names (VlDataset *ds, const char *path, const char *const *defaults, int n)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) names = NULL;
  int found = 0;
  if (g_file_get_contents (path, &text, NULL, NULL))
    {
      names = g_strsplit (text, "\n", -1);
      for (int i = 0; names[i] != NULL; i++)
        if (*g_strstrip (names[i]) != '\0')
          found++;
    }
  int k = 0;
  for (int i = 0; found == n && names[i] != NULL; i++)
    if (*names[i] != '\0')
      ds->class_names[k++] = g_strdup (names[i]);
  for (; k < n; k++)
    ds->class_names[k] = g_strdup (defaults[k]);
}

static VlDataset *
open_cifar (gboolean hundred, const char *dir_spec, const VlDatasetOptions *opt,
            GError **error)
{
  const char *kind = hundred ? "cifar100" : "cifar10";
  if (dir_spec == NULL || *dir_spec == '\0')
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: name the folder of the binary batches (%s:DIR)", kind, kind);
      return NULL;
    }
  g_autofree char *dir = g_strdup (dir_spec);
  if (!g_file_test (dir, G_FILE_TEST_IS_DIR))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: no such folder", dir);
      return NULL;
    }
  /* The folder the archives unpack to, when given the one around it. */
  const char *first = hundred ? "train.bin" : "data_batch_1.bin";
  g_autofree char *probe = g_build_filename (dir, first, NULL);
  g_autofree char *inner = g_build_filename (dir, hundred ? "cifar-100-binary"
                                                          : "cifar-10-batches-bin", NULL);
  if (!g_file_test (probe, G_FILE_TEST_EXISTS) && g_file_test (inner, G_FILE_TEST_IS_DIR))
    {
      g_free (dir);
      dir = g_steal_pointer (&inner);
    }

  int K = hundred ? 100 : 10;
  g_autoptr(VlDataset) ds = dataset_new (SOURCE_RECORDS, K);
  ds->channels = 3;
  ds->rec_w = ds->rec_h = 32;
  ds->rec_planar = TRUE;
  g_autofree char *names_path = g_build_filename (dir, hundred ? "fine_label_names.txt"
                                                               : "batches.meta.txt", NULL);
  cifar_read_names (ds, names_path, hundred ? cifar100_names : cifar10_names, K);

  int label_bytes = hundred ? 2 : 1, label_byte = hundred ? 1 : 0;
  int n_files = 0;
  for (int b = 1; b <= (hundred ? 1 : 5); b++)
    {
      g_autofree char *name = hundred ? g_strdup ("train.bin")
                                      : g_strdup_printf ("data_batch_%d.bin", b);
      g_autofree char *path = g_build_filename (dir, name, NULL);
      if (!g_file_test (path, G_FILE_TEST_EXISTS))
        continue;
      if (!cifar_add_file (ds, VL_SPLIT_TRAIN, path, label_bytes, label_byte, error))
        return NULL;
      n_files++;
    }
  if (n_files == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: no %s (expected the binary version of %s: %s)", dir, first,
                   hundred ? "CIFAR-100" : "CIFAR-10",
                   hundred ? "train.bin, test.bin" : "data_batch_1..5.bin, test_batch.bin");
      return NULL;
    }
  g_autofree char *test_path = g_build_filename (dir, hundred ? "test.bin" : "test_batch.bin",
                                                 NULL);
  gboolean has_test = g_file_test (test_path, G_FILE_TEST_EXISTS);
  if (has_test)
    {
      if (!cifar_add_file (ds, VL_SPLIT_VAL, test_path, label_bytes, label_byte, error))
        return NULL;
    }
  else
    {
      if (!check_fraction (dir, opt->val_fraction, error))
        return NULL;
      split_stratified (ds, opt->val_fraction, opt->seed);
    }

  int n_present = 0;
  for (int k = 0; k < K; k++)
    n_present += ds->splits[VL_SPLIT_TRAIN].class_counts[k] > 0;
  if (n_present < 2)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING,
                   "%s: the training records hold %d class%s; at least two are needed",
                   dir, n_present, n_present == 1 ? "" : "es");
      return NULL;
    }
  ds->description = g_strdup_printf ("%s (%s%s)", hundred ? "CIFAR-100" : "CIFAR-10", dir,
                                     has_test ? "" : ", validation split from training");
  return g_steal_pointer (&ds);
}

/* ------------------------------------------------------------------------------------- */
/* Regression targets                                                                     *
 *
 * A folder whose images come with numbers instead of class folders: DIR/targets.csv (a seeded
 * split by val_fraction), or DIR/train/targets.csv and DIR/val/targets.csv. The CSV's header
 * names the file column, then each target ("file,angle" or "file,x,y"); each row names an image
 * relative to the CSV's folder and gives one number per target. A missing image, a row with
 * too few or too many fields, or a value that is not a finite number is an error naming the
 * CSV file and line; an image that cannot be decoded is skipped and listed, as in class
 * folders. Every item has class 0 ("images"): regression has no classes.
 *
 * fashion-mnist-rotate[:classes=…,per-class=…,val-per-class=…,max-angle=45]: Fashion-MNIST's
 * images, each rotated by an angle drawn uniformly in [-max-angle, max-angle] from (seed, split,
 * record) (bilinear, black outside), the target being that angle in degrees. */

/* Stores n values for an item and returns where they are. */
static const float *
store_values (VlDataset *ds, const float *values, int n)
{
  float *v = g_memdup2 (values, sizeof (float) * n);
  g_ptr_array_add (ds->value_store, v);
  return v;
}

/* Rotates a W x H x C record by `degrees` about its centre into out (bilinear, zero outside):
 * out (x, y) = in (c + cos a (x - c) - sin a (y - c), c + sin a (x - c) + cos a (y - c)). */
static void
rotate_record (const uint8_t *in, int W, int H, int C, float degrees, uint8_t *out)
{
  const double a = degrees * G_PI / 180.0, ca = cos (a), sa = sin (a);
  const double cx = (W - 1) / 2.0, cy = (H - 1) / 2.0;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        double dx = x - cx, dy = y - cy;
        double xs = cx + ca * dx - sa * dy, ys = cy + sa * dx + ca * dy;
        int x0 = (int) floor (xs), y0 = (int) floor (ys);
        double fx = xs - x0, fy = ys - y0;
        for (int c = 0; c < C; c++)
          {
            double v = 0.0;
            for (int j = 0; j < 2; j++)
              for (int i = 0; i < 2; i++)
                {
                  int xi = x0 + i, yj = y0 + j;
                  if (xi < 0 || yj < 0 || xi >= W || yj >= H)
                    continue;
                  double w = (i ? fx : 1.0 - fx) * (j ? fy : 1.0 - fy);
                  v += w * in[((gsize) yj * W + xi) * C + c];
                }
            out[((gsize) y * W + x) * C + c] = (uint8_t) CLAMP (floor (v + 0.5), 0, 255);
          }
      }
}

static VlDataset *
open_fashion_mnist_rotate (const char *options, const VlDatasetOptions *opt, GError **error)
{
  double max_angle = 45.0;
  g_autoptr(VlDataset) ds = open_fashion_mnist (options, &max_angle, error);
  if (ds == NULL)
    return NULL;
  ds->rotate = TRUE;
  ds->n_values = 1;
  ds->value_names = g_new0 (char *, 2);
  ds->value_names[0] = g_strdup ("angle");
  for (int s = 0; s < 2; s++)
    for (guint i = 0; i < ds->splits[s].items->len; i++)
      {
        Item *it = &g_array_index (ds->splits[s].items, Item, i);
        const char *hash = strrchr (it->name, '#');
        uint64_t x = opt->seed ^ 0x726f74617465ull /* "rotate" */;
        x = vl_rng_splitmix (&x) ^ ((uint64_t) s << 32) ^ (uint64_t) atoi (hash ? hash + 1 : "0");
        VlRng rng;
        vl_rng_seed (&rng, vl_rng_splitmix (&x));
        float angle = (float) ((2.0 * vl_rng_uniform (&rng) - 1.0) * max_angle);
        it->values = store_values (ds, &angle, 1);
      }
  char *d = g_strdup_printf ("%s, each rotated by up to ±%g° (the target)", ds->description,
                             max_angle);
  g_free (ds->description);
  ds->description = d;
  return g_steal_pointer (&ds);
}

/* Splits one CSV line into fields: commas, double quotes around a field ("" inside is a
 * quote), spaces around fields trimmed. */
static GPtrArray *
csv_fields (const char *line)
{
  GPtrArray *f = g_ptr_array_new_with_free_func (g_free);
  const char *p = line;
  for (;;)
    {
      GString *field = g_string_new (NULL);
      while (*p == ' ' || *p == '\t')
        p++;
      if (*p == '"')
        {
          for (p++; *p; p++)
            {
              if (*p == '"' && p[1] == '"')
                g_string_append_c (field, *p++);
              else if (*p == '"')
                {
                  p++;
                  break;
                }
              else
                g_string_append_c (field, *p);
            }
          while (*p && *p != ',')
            p++;
        }
      else
        while (*p && *p != ',')
          g_string_append_c (field, *p++);
      g_ptr_array_add (f, g_strstrip (g_string_free (field, FALSE)));
      if (*p != ',')
        break;
      p++;
    }
  return f;
}

/* Reads DIR/targets.csv into `split`. The first CSV read sets the target names; a later one
 * must name the same. */
static gboolean
read_targets_csv (VlDataset *ds, VlSplit split, const char *dir, GError **error)
{
  g_autofree char *csv = g_build_filename (dir, "targets.csv", NULL);
  g_autofree char *text = NULL;
  g_autoptr(GError) local = NULL;
  if (!g_file_get_contents (csv, &text, NULL, &local))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: %s", csv, local->message);
      return FALSE;
    }
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  int line = 0, n_rows = 0;
  g_autoptr(GPtrArray) header = NULL;
  g_autofree float *vals = NULL;
  for (int i = 0; lines[i] != NULL; i++)
    {
      line = i + 1;
      char *l = lines[i];
      gsize len = strlen (l);
      if (len > 0 && l[len - 1] == '\r')
        l[--len] = '\0';
      if (i == 0 && g_str_has_prefix (l, "\xef\xbb\xbf"))
        l += 3;   /* a byte-order mark */
      if (*g_strstrip (l) == '\0')
        continue;
      g_autoptr(GPtrArray) f = csv_fields (l);
      if (header == NULL)
        {
          header = g_steal_pointer (&f);
          if (header->len < 2)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                           "%s:%d: the header names the file column and at least one target "
                           "(file,target1[,target2…])", csv, line);
              return FALSE;
            }
          int n = (int) header->len - 1;
          if (ds->value_names != NULL)
            {
              gboolean same = (int) g_strv_length (ds->value_names) == n;
              for (int j = 0; same && j < n; j++)
                same = strcmp (ds->value_names[j], g_ptr_array_index (header, j + 1)) == 0;
              if (!same)
                {
                  g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH,
                               "%s:%d: the targets differ from the training split's", csv, line);
                  return FALSE;
                }
            }
          else
            {
              ds->n_values = n;
              ds->value_names = g_new0 (char *, n + 1);
              for (int j = 0; j < n; j++)
                ds->value_names[j] = g_strdup (g_ptr_array_index (header, j + 1));
            }
          vals = g_new (float, n);
          continue;
        }
      if (f->len != header->len)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                       "%s:%d: %u field%s, the header has %u", csv, line, f->len,
                       f->len == 1 ? "" : "s", header->len);
          return FALSE;
        }
      const char *file = g_ptr_array_index (f, 0);
      for (int j = 0; j < ds->n_values; j++)
        {
          const char *v = g_ptr_array_index (f, j + 1);
          char *end = NULL;
          double x = g_ascii_strtod (v, &end);
          if (*v == '\0' || end == v || *end != '\0' || !isfinite (x))
            {
              g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                           "%s:%d: %s: '%s' is not a number", csv, line,
                           ds->value_names[j], v);
              return FALSE;
            }
          if (fabs (x) > FLT_MAX)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_FORMAT,
                           "%s:%d: %s: '%s' is beyond a float's range (±3.4e38)", csv, line,
                           ds->value_names[j], v);
              return FALSE;
            }
          vals[j] = (float) x;
        }
      g_autofree char *path = g_path_is_absolute (file) ? g_strdup (file)
                                                        : g_build_filename (dir, file, NULL);
      GStatBuf st;
      if (*file == '\0' || g_stat (path, &st) != 0 || !S_ISREG (st.st_mode))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s:%d: %s: no such image file", csv,
                       line, *file ? path : "(empty file name)");
          return FALSE;
        }
      char *reason = check_image_header (path, st.st_size);
      if (reason != NULL)
        {
          add_skipped (ds, path, reason);
          g_free (reason);
          continue;
        }
      add_item (ds, split, path, 0);
      Item *it = &g_array_index (ds->splits[split].items, Item,
                                 ds->splits[split].items->len - 1);
      it->values = store_values (ds, vals, ds->n_values);
      n_rows++;
    }
  if (header == NULL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: empty (expected a header "
                   "file,target1[,target2…] and one row per image)", csv);
      return FALSE;
    }
  if (n_rows == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no usable image rows", csv);
      return FALSE;
    }
  return TRUE;
}

/* DIR/targets.csv, or DIR/train/targets.csv with DIR/val/targets.csv. */
static VlDataset *
open_targets_folder (const char *root, const VlDatasetOptions *opt, GError **error)
{
  g_autofree char *train_dir = g_build_filename (root, "train", NULL);
  g_autofree char *val_dir = g_build_filename (root, "val", NULL);
  g_autofree char *train_csv = g_build_filename (train_dir, "targets.csv", NULL);
  gboolean split_layout = g_file_test (train_csv, G_FILE_TEST_EXISTS);
  g_autoptr(VlDataset) ds = dataset_new (SOURCE_FOLDER, 1);
  ds->channels = 3;
  ds->class_names[0] = g_strdup ("images");
  g_autofree char *base = g_path_get_basename (root);
  if (split_layout)
    {
      if (!read_targets_csv (ds, VL_SPLIT_TRAIN, train_dir, error) ||
          !read_targets_csv (ds, VL_SPLIT_VAL, val_dir, error))
        return NULL;
      ds->description = g_strdup_printf ("%s (train/val targets.csv)", base);
    }
  else
    {
      if (!check_fraction (root, opt->val_fraction, error) ||
          !read_targets_csv (ds, VL_SPLIT_TRAIN, root, error))
        return NULL;
      split_stratified (ds, opt->val_fraction, opt->seed);
      ds->description = g_strdup_printf ("%s (targets.csv, %g%% held out for validation, seed %"
                                         G_GUINT64_FORMAT ")", base, opt->val_fraction * 100.0,
                                         opt->seed);
    }
  return g_steal_pointer (&ds);
}

/* ------------------------------------------------------------------------------------- */

/* ------------------------------------------------------------------------------------- */
/* Segmentation sources: Pascal VOC layout, mask-pair folders, fashion-mnist-scenes        */

static const char *const image_exts[] = { ".jpg", ".jpeg", ".png", ".JPG", ".JPEG", ".PNG",
                                          ".bmp", ".gif", NULL };

static gboolean
is_dir (const char *a, const char *b)
{
  g_autofree char *p = g_build_filename (a, b, NULL);
  return g_file_test (p, G_FILE_TEST_IS_DIR);
}

static gboolean
is_voc_folder (const char *root)
{
  return is_dir (root, "JPEGImages") && is_dir (root, "SegmentationClass");
}

static gboolean
is_mask_pair_folder (const char *root)
{
  return is_dir (root, "images") && is_dir (root, "masks");
}

/* Class names from root/labels.txt (one a line, blank lines skipped); NULL when absent. */
static GPtrArray *
read_labels_txt (const char *root, GError **error)
{
  g_autofree char *path = g_build_filename (root, "labels.txt", NULL);
  g_autofree char *text = NULL;
  if (!g_file_test (path, G_FILE_TEST_EXISTS))
    return NULL;
  if (!g_file_get_contents (path, &text, NULL, error))
    return NULL;
  GPtrArray *names = g_ptr_array_new_with_free_func (g_free);
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  for (int i = 0; lines[i] != NULL; i++)
    {
      char *l = g_strstrip (lines[i]);
      if (*l != '\0')
        g_ptr_array_add (names, g_strdup (l));
    }
  if (names->len < 1 || names->len > 255)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: %u class names; a segmentation set "
                   "has 1 to 255 classes (255 is the ignored label)", path, names->len);
      g_ptr_array_unref (names);
      return NULL;
    }
  return names;
}

/* Checks that an image and its mask exist and have one size; adds the pair to split, or skips
 * an image that cannot be decoded (listed, as in classification folders). */
static gboolean
add_mask_pair (VlDataset *ds, VlSplit split, const char *image, const char *mask,
               GError **error)
{
  GStatBuf st;
  if (g_stat (image, &st) != 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no such image (its mask %s exists)",
                   image, mask);
      return FALSE;
    }
  if (!g_file_test (mask, G_FILE_TEST_EXISTS))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: the image has no mask %s", image,
                   mask);
      return FALSE;
    }
  g_autofree char *reason = check_image_header (image, st.st_size);
  if (reason != NULL)
    {
      add_skipped (ds, image, reason);
      return TRUE;
    }
  int w = 0, h = 0;
  vl_image_check_file (image, &w, &h, NULL);   /* the header was checked just above */
  int mw = 0, mh = 0;
  g_autoptr(GError) local = NULL;
  if (!vl_mask_size (mask, &mw, &mh, &local))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s (the mask of %s)", local->message,
                   image);
      return FALSE;
    }
  if (mw != w || mh != h)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISMATCH, "%s: the mask is %dx%d but its image %s "
                   "is %dx%d", mask, mw, mh, image, w, h);
      return FALSE;
    }
  add_item (ds, split, image, 0);
  Item *it = &g_array_index (ds->splits[split].items, Item, ds->splits[split].items->len - 1);
  it->mask = g_string_chunk_insert (ds->names, mask);
  return TRUE;
}

/* Class names from labels.txt, else "class 0" … up to the largest value in any mask. */
static gboolean
seg_set_classes (VlDataset *ds, const char *root, GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(GPtrArray) names = read_labels_txt (root, &local);
  if (local != NULL)
    {
      g_propagate_error (error, g_steal_pointer (&local));
      return FALSE;
    }
  int K = 0;
  if (names != NULL)
    K = (int) names->len;
  else
    for (int s = 0; s < 2; s++)
      for (guint i = 0; i < ds->splits[s].items->len; i++)
        {
          const Item *it = get_item (ds, (VlSplit) s, (int) i);
          int w, h;
          g_autofree uint8_t *m = vl_mask_load (it->mask, &w, &h, error);
          if (m == NULL)
            return FALSE;
          for (gsize p = 0; p < (gsize) w * h; p++)
            if (m[p] != VL_SEG_IGNORE && m[p] + 1 > K)
              K = m[p] + 1;
        }
  if (K < 1)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: every mask pixel is 255 (ignored): "
                   "no class to learn", root);
      return FALSE;
    }
  g_strfreev (ds->class_names);
  g_free (ds->splits[0].class_counts);
  g_free (ds->splits[1].class_counts);
  ds->n_classes = K;
  ds->class_names = g_new0 (char *, K + 1);
  for (int k = 0; k < K; k++)
    ds->class_names[k] = names != NULL ? g_strdup (g_ptr_array_index (names, k))
                                       : g_strdup_printf ("class %d", k);
  for (int s = 0; s < 2; s++)
    {
      ds->splits[s].class_counts = g_new0 (int, K);
      ds->splits[s].class_counts[0] = (int) ds->splits[s].items->len;
    }
  return TRUE;
}

static VlDataset *
open_voc (const char *root, GError **error)
{
  g_autoptr(VlDataset) ds = dataset_new (SOURCE_FOLDER, 1);
  ds->channels = 3;
  ds->segment = TRUE;
  static const char *const split_files[2] = { "train.txt", "val.txt" };
  for (int s = 0; s < 2; s++)
    {
      g_autofree char *list = g_build_filename (root, "ImageSets", "Segmentation",
                                                split_files[s], NULL);
      g_autofree char *text = NULL;
      g_autoptr(GError) local = NULL;
      if (!g_file_get_contents (list, &text, NULL, &local))
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: cannot read the %s split of "
                       "the Pascal VOC layout: %s", list, s == 0 ? "training" : "validation",
                       local->message);
          return NULL;
        }
      g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
      for (int i = 0; lines[i] != NULL; i++)
        {
          char *id = g_strstrip (lines[i]);
          if (*id == '\0')
            continue;
          if (strchr (id, '/') != NULL || strcmp (id, "..") == 0)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_FORMAT, "%s: line %d: '%s' is not an image "
                           "name", list, i + 1, id);
              return NULL;
            }
          g_autofree char *image = NULL;
          for (int e = 0; image_exts[e] != NULL && image == NULL; e++)
            {
              g_autofree char *base = g_strconcat (id, image_exts[e], NULL);
              char *p = g_build_filename (root, "JPEGImages", base, NULL);
              if (g_file_test (p, G_FILE_TEST_EXISTS))
                image = p;
              else
                g_free (p);
            }
          g_autofree char *mbase = g_strconcat (id, ".png", NULL);
          g_autofree char *mask = g_build_filename (root, "SegmentationClass", mbase, NULL);
          if (image == NULL)
            {
              g_autofree char *jbase = g_strconcat (id, ".jpg", NULL);
              g_autofree char *want = g_build_filename (root, "JPEGImages", jbase, NULL);
              g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s lists %s: no image %s (mask "
                           "%s)", list, id, want, mask);
              return NULL;
            }
          if (!add_mask_pair (ds, (VlSplit) s, image, mask, error))
            return NULL;
        }
      if (ds->splits[s].items->len == 0)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no usable image", list);
          return NULL;
        }
    }
  if (!seg_set_classes (ds, root, error))
    return NULL;
  g_autofree char *base = g_path_get_basename (root);
  ds->description = g_strdup_printf ("%s (Pascal VOC layout, %d classes)", base, ds->n_classes);
  return g_steal_pointer (&ds);
}

/* The image files of images_dir paired with masks_dir/STEM.png. */
static gboolean
add_mask_pair_folder (VlDataset *ds, VlSplit split, const char *images_dir,
                      const char *masks_dir, GError **error)
{
  g_autoptr(GPtrArray) names = list_folder (images_dir, error);
  if (names == NULL)
    return FALSE;
  for (guint i = 0; i < names->len; i++)
    {
      const char *name = g_ptr_array_index (names, i);
      const char *dot = strrchr (name, '.');
      gboolean image = FALSE;
      for (int e = 0; dot != NULL && image_exts[e] != NULL; e++)
        image = image || g_ascii_strcasecmp (dot, image_exts[e]) == 0;
      if (!image)
        continue;
      g_autofree char *stem = g_strndup (name, dot - name);
      g_autofree char *mbase = g_strconcat (stem, ".png", NULL);
      g_autofree char *path = g_build_filename (images_dir, name, NULL);
      g_autofree char *mask = g_build_filename (masks_dir, mbase, NULL);
      if (!add_mask_pair (ds, split, path, mask, error))
        return FALSE;
    }
  if (ds->splits[split].items->len == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no usable image", images_dir);
      return FALSE;
    }
  return TRUE;
}

static VlDataset *
open_mask_pairs (const char *root, const VlDatasetOptions *opt, GError **error)
{
  g_autoptr(VlDataset) ds = dataset_new (SOURCE_FOLDER, 1);
  ds->channels = 3;
  ds->segment = TRUE;
  g_autofree char *images = g_build_filename (root, "images", NULL);
  g_autofree char *masks = g_build_filename (root, "masks", NULL);
  g_autofree char *base = g_path_get_basename (root);
  if (is_dir (images, "train"))
    {
      static const char *const sp[2] = { "train", "val" };
      for (int s = 0; s < 2; s++)
        {
          g_autofree char *id = g_build_filename (images, sp[s], NULL);
          g_autofree char *md = g_build_filename (masks, sp[s], NULL);
          if (!add_mask_pair_folder (ds, (VlSplit) s, id, md, error))
            return NULL;
        }
      ds->description = g_strdup_printf ("%s (image/mask pairs, train/val)", base);
    }
  else
    {
      if (!check_fraction (root, opt->val_fraction, error) ||
          !add_mask_pair_folder (ds, VL_SPLIT_TRAIN, images, masks, error))
        return NULL;
      split_stratified (ds, opt->val_fraction, opt->seed);
      ds->description = g_strdup_printf ("%s (image/mask pairs, %g%% held out for validation, "
                                         "seed %" G_GUINT64_FORMAT ")", base,
                                         opt->val_fraction * 100.0, opt->seed);
    }
  if (!seg_set_classes (ds, root, error))
    return NULL;
  return g_steal_pointer (&ds);
}

#define SCENE_THRESHOLD 26
#define SCENE_TRIES 50

/* Detection: item idx's boxes (copied) and their classes; counts boxes per class. */
static void
set_item_boxes (VlDataset *ds, VlSplit split, int idx, const float *boxes, const int *labels,
                int n, int width, int height)
{
  Item *it = &g_array_index (ds->splits[split].items, Item, idx);
  it->n_boxes = n;
  it->box_w = width;
  it->box_h = height;
  if (n > 0)
    {
      float *b = g_memdup2 (boxes, sizeof (float) * 4 * n);
      int *l = g_memdup2 (labels, sizeof (int) * n);
      g_ptr_array_add (ds->value_store, b);
      g_ptr_array_add (ds->value_store, l);
      it->boxes = b;
      it->box_labels = l;
    }
  ds->max_boxes = MAX (ds->max_boxes, n);
  for (int j = 0; j < n; j++)
    ds->splits[split].class_counts[labels[j]]++;
}

/* Scenes of one split from the 28 x 28 records of src (its items of that split). */
static void
make_scenes (VlDataset *ds, VlSplit split, VlDataset *src, int n_scenes, int S, uint64_t seed)
{
  const int n_src = vl_dataset_n_items (src, split);
  const gsize plane = (gsize) S * S;
  uint8_t *pix = g_malloc0 (plane * n_scenes), *mask = g_malloc0 (plane * n_scenes);
  GBytes *bp = g_bytes_new_take (pix, plane * n_scenes);
  GBytes *bm = g_bytes_new_take (mask, plane * n_scenes);
  g_ptr_array_add (ds->blobs, bp);
  g_ptr_array_add (ds->blobs, bm);
  VlRng rng;
  vl_rng_seed (&rng, seed ^ (split == VL_SPLIT_TRAIN ? 0x5ce7e5ULL : 0x7e57ULL));
  for (int sc = 0; sc < n_scenes; sc++)
    {
      uint8_t *P = pix + plane * sc, *M = mask + plane * sc;
      int boxes[3][4], box_labels[3], n_boxes = 0;
      int n_items = 1 + (int) (vl_rng_uniform (&rng) * 3);
      for (int t = 0; t < n_items; t++)
        {
          const Item *it = get_item (src, split, (int) (vl_rng_uniform (&rng) * n_src));
          const uint8_t *r = it->record;
          int x0 = 28, y0 = 28, x1 = -1, y1 = -1;   /* tight box, inclusive */
          for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++)
              if (r[y * 28 + x] >= SCENE_THRESHOLD)
                {
                  x0 = MIN (x0, x);
                  y0 = MIN (y0, y);
                  x1 = MAX (x1, x);
                  y1 = MAX (y1, y);
                }
          if (x1 < 0 || x1 - x0 + 1 > S || y1 - y0 + 1 > S)
            continue;
          for (int attempt = 0; attempt < SCENE_TRIES; attempt++)
            {
              /* the record's top-left corner such that its box lies in the canvas */
              int px = -x0 + (int) (vl_rng_uniform (&rng) * (S - (x1 - x0)));
              int py = -y0 + (int) (vl_rng_uniform (&rng) * (S - (y1 - y0)));
              int b[4] = { px + x0, py + y0, px + x1, py + y1 };
              gboolean overlap = FALSE;
              for (int o = 0; o < n_boxes && !overlap; o++)
                overlap = b[0] <= boxes[o][2] && boxes[o][0] <= b[2] &&
                          b[1] <= boxes[o][3] && boxes[o][1] <= b[3];
              if (overlap)
                continue;
              box_labels[n_boxes] = it->label + 1;
              memcpy (boxes[n_boxes++], b, sizeof b);
              for (int y = y0; y <= y1; y++)
                for (int x = x0; x <= x1; x++)
                  {
                    uint8_t v = r[y * 28 + x];
                    gsize q = (gsize) (py + y) * S + (px + x);
                    P[q] = MAX (P[q], v);
                    if (v >= SCENE_THRESHOLD)
                      M[q] = (uint8_t) (it->label + 1);
                  }
              /* pixels of the record outside its box are below the threshold: they still add
               * to the canvas (the maximum), where they fall inside it */
              for (int y = 0; y < 28; y++)
                for (int x = 0; x < 28; x++)
                  {
                    int cy = py + y, cx = px + x;
                    if ((y >= y0 && y <= y1 && x >= x0 && x <= x1) || cx < 0 || cy < 0 ||
                        cx >= S || cy >= S)
                      continue;
                    gsize q = (gsize) cy * S + cx;
                    P[q] = MAX (P[q], r[y * 28 + x]);
                  }
              break;
            }
        }
      char name[64];
      g_snprintf (name, sizeof name, "fashion-mnist-scenes:%s#%d",
                  split == VL_SPLIT_TRAIN ? "train" : "val", sc);
      add_item (ds, split, name, 0);
      Item *it = &g_array_index (ds->splits[split].items, Item,
                                 ds->splits[split].items->len - 1);
      it->record = P;
      it->mask_record = M;
      if (ds->detect)
        {
          float fb[3 * 4];
          int lb[3];
          for (int o = 0; o < n_boxes; o++)
            {
              /* the tight box's pixels, inclusive, as a box of pixel edges */
              fb[4 * o] = (float) boxes[o][0];
              fb[4 * o + 1] = (float) boxes[o][1];
              fb[4 * o + 2] = (float) boxes[o][2] + 1;
              fb[4 * o + 3] = (float) boxes[o][3] + 1;
              lb[o] = box_labels[o];
            }
          set_item_boxes (ds, split, (int) ds->splits[split].items->len - 1, fb, lb, n_boxes,
                          S, S);
        }
    }
}

static VlDataset *
open_fashion_mnist_scenes (const char *options, gboolean detect, GError **error)
{
  const char *what = "fashion-mnist-scenes";
  int n_train = 1000, n_val = 500, size = 84, seed = 0;
  g_autoptr(GString) src_opts = g_string_new (NULL);
  g_auto(GStrv) tokens = g_strsplit (options != NULL ? options : "", ",", -1);
  gboolean in_classes = FALSE;
  for (int t = 0; tokens[t] != NULL; t++)
    {
      char *tok = g_strstrip (tokens[t]);
      if (*tok == '\0')
        continue;
      char *eq = strchr (tok, '=');
      if (eq == NULL && in_classes)
        {
          g_string_append_printf (src_opts, ",%s", tok);
          continue;
        }
      if (eq == NULL)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: option '%s' is not key=value "
                       "(train=N, val=N, size=S, classes=0-9, seed=N)", what, tok);
          return NULL;
        }
      *eq = '\0';
      const char *key = tok, *value = eq + 1;
      in_classes = FALSE;
      if (strcmp (key, "classes") == 0 || strcmp (key, "dir") == 0)
        {
          in_classes = strcmp (key, "classes") == 0;
          g_string_append_printf (src_opts, "%s%s=%s", src_opts->len ? "," : "", key, value);
        }
      else if (strcmp (key, "train") == 0)
        {
          if (!parse_positive (what, key, value, &n_train, error))
            return NULL;
        }
      else if (strcmp (key, "val") == 0)
        {
          if (!parse_positive (what, key, value, &n_val, error))
            return NULL;
        }
      else if (strcmp (key, "size") == 0)
        {
          if (!parse_positive (what, key, value, &size, error))
            return NULL;
          if (size < 28 || size > 1024)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: size=%d: the canvas must be "
                           "28 to 1024 pixels", what, size);
              return NULL;
            }
        }
      else if (strcmp (key, "seed") == 0)
        {
          char *end = NULL;
          gint64 v = g_ascii_strtoll (value, &end, 10);
          if (end == value || *end != '\0' || v < 0 || v > G_MAXINT)
            {
              g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: seed '%s': expected a "
                           "non-negative integer", what, value);
              return NULL;
            }
          seed = (int) v;
        }
      else
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: unknown option '%s' (train=N, "
                       "val=N, size=S, classes=0-9, seed=N)", what, key);
          return NULL;
        }
    }
  g_autoptr(VlDataset) src = open_fashion_mnist (src_opts->str, NULL, error);
  if (src == NULL)
    return NULL;
  const int nc = src->n_classes;
  g_autoptr(VlDataset) ds = dataset_new (SOURCE_RECORDS, nc + 1);
  ds->channels = 1;
  ds->segment = !detect;
  ds->detect = detect;
  ds->rec_w = ds->rec_h = size;
  ds->class_names[0] = g_strdup ("background");
  for (int k = 0; k < nc; k++)
    ds->class_names[k + 1] = g_strdup (src->class_names[k]);
  make_scenes (ds, VL_SPLIT_TRAIN, src, n_train, size, (uint64_t) seed);
  make_scenes (ds, VL_SPLIT_VAL, src, n_val, size, (uint64_t) seed);
  ds->description = g_strdup_printf ("Fashion-MNIST scenes (%d train, %d val, %dx%d, %d "
                                     "garment classes%s)", n_train, n_val, size, size, nc,
                                     detect ? ", boxes" : "");
  return g_steal_pointer (&ds);
}

/* A detection set from the files vl_det_source_read reads (every image header checked there). */
static VlDataset *
open_detection (const char *root, GError **error)
{
  g_autoptr(VlDetSource) src = vl_det_source_read (root, error);
  if (src == NULL)
    return NULL;
  const int K = (int) src->class_names->len;
  g_autoptr(VlDataset) ds = dataset_new (SOURCE_FOLDER, K);
  ds->channels = 3;
  ds->detect = TRUE;
  for (int k = 0; k < K; k++)
    ds->class_names[k] = g_strdup (g_ptr_array_index (src->class_names, k));
  for (guint i = 0; i < src->skipped->len; i++)
    {
      const VlSkipped *sk = g_ptr_array_index (src->skipped, i);
      add_skipped (ds, sk->path, sk->reason);
    }
  for (int s = 0; s < 2; s++)
    {
      for (guint i = 0; i < src->items[s]->len; i++)
        {
          const VlDetItem *di = g_ptr_array_index (src->items[s], i);
          add_item (ds, (VlSplit) s, di->image, 0);
          set_item_boxes (ds, (VlSplit) s, (int) i, di->boxes, di->labels, di->n, di->width,
                          di->height);
        }
      ds->splits[s].class_counts[0] = 0;   /* no box is background */
    }
  ds->description = g_strdup (src->description);
  return g_steal_pointer (&ds);
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
  const Item *it = get_item (ds, split, i);
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
  const Item *it = get_item (ds, split, i);
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
  const Item *it = get_item (ds, split, i);
  return it->mask != NULL ? it->mask : it->name;
}

uint8_t *
vl_dataset_load_mask (VlDataset *ds, VlSplit split, int i, int *width, int *height,
                      GError **error)
{
  g_return_val_if_fail (ds->segment, NULL);
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, NULL);
  const Item *it = get_item (ds, split, i);
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
  if (reason != NULL)
    {
      gpointer key = GINT_TO_POINTER (i * 2 + (int) split + 1);
      vl_mutex_lock (&ds->lock);
      if (!g_hash_table_contains (ds->failed, key))
        {
          g_hash_table_insert (ds->failed, key, g_strdup (reason));
          add_skipped_locked (ds, it->name, reason);
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
    return open_fashion_mnist_rotate (NULL, opt, error);
  if (g_str_has_prefix (spec, "fashion-mnist-rotate:"))
    return open_fashion_mnist_rotate (spec + strlen ("fashion-mnist-rotate:"), opt, error);
  if (strcmp (spec, "fashion-mnist") == 0)
    return open_fashion_mnist (NULL, NULL, error);
  if (g_str_has_prefix (spec, "fashion-mnist:"))
    return open_fashion_mnist (spec + strlen ("fashion-mnist:"), NULL, error);
  if (g_str_has_prefix (spec, "cifar10:") || strcmp (spec, "cifar10") == 0)
    return open_cifar (FALSE, spec[7] == ':' ? spec + 8 : NULL, opt, error);
  if (g_str_has_prefix (spec, "cifar100:") || strcmp (spec, "cifar100") == 0)
    return open_cifar (TRUE, spec[8] == ':' ? spec + 9 : NULL, opt, error);
  if (strcmp (spec, "fashion-mnist-scenes") == 0)
    return open_fashion_mnist_scenes (NULL, opt->detect, error);
  if (g_str_has_prefix (spec, "fashion-mnist-scenes:"))
    return open_fashion_mnist_scenes (spec + strlen ("fashion-mnist-scenes:"), opt->detect,
                                      error);
  if (opt->detect)
    return open_detection (spec, error);
  if (is_voc_folder (spec))
    return open_voc (spec, error);
  if (is_mask_pair_folder (spec))
    return open_mask_pairs (spec, opt, error);
  return open_folder (spec, opt, error);
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
  return get_item (ds, split, i)->values;
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
  return get_item (ds, split, i)->label;
}

const char *
vl_dataset_item_name (VlDataset *ds, VlSplit split, int i)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL), NULL);
  g_return_val_if_fail (i >= 0 && i < (int) ds->splits[split].items->len, NULL);
  return get_item (ds, split, i)->name;
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

  const Item *it = get_item (ds, split, i);
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
          rotate_record (it->record, W, H, C, it->values[0], img->pixels);
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
          add_skipped_locked (ds, it->name, reason);
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
  const Item *it = get_item (ds, split, i);
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
/* Seeds                                                                                  */

static uint64_t
mix3 (uint64_t tag, uint64_t a, uint64_t b, uint64_t c)
{
  uint64_t x = tag;
  uint64_t h = vl_rng_splitmix (&x);
  x = h ^ a;
  h = vl_rng_splitmix (&x);
  x = h ^ b;
  h = vl_rng_splitmix (&x);
  x = h ^ c;
  return vl_rng_splitmix (&x);
}

uint64_t
vl_augment_seed (uint64_t seed, int epoch, int index)
{
  return mix3 (0x61756720u /* "aug " */, seed, (uint32_t) epoch, (uint32_t) index);
}

static uint64_t
shuffle_seed (uint64_t seed, int epoch)
{
  return mix3 (0x73687566u /* "shuf" */, seed, (uint32_t) epoch, 0);
}

/* ------------------------------------------------------------------------------------- */
/* The loader                                                                             *
 *
 * One prefetch thread fills N_SLOTS batch buffers in batch order; the caller holds at most
 * one of them (the batch last returned), so at least two are being decoded or wait ready.
 * Each epoch start bumps `generation`; the worker checks it between items and drops a batch
 * of an older generation. Everything below the lock is guarded by it, except `generation`,
 * which the worker also reads atomically while decoding, and a slot being filled, which only
 * the worker touches.
 *
 * For the caller: the order of an epoch is a seeded shuffle of (seed, epoch), and item i's
 * augmentation seed is vl_augment_seed (seed, epoch, i), so batch size and resuming do not
 * change any pixel. The last batch may be short; items that fail to decode are left out of
 * their batch (and listed by vl_dataset_skipped); a batch left empty is not returned. A batch
 * is valid until the next vl_loader_next, vl_loader_start_epoch or vl_loader_free. Calling
 * vl_loader_next before any vl_loader_start_epoch starts epoch 0. */

#define N_SLOTS 3

typedef enum { SLOT_FREE, SLOT_FILLING, SLOT_READY, SLOT_HELD } SlotState;

typedef struct {
  SlotState state;
  int       generation;
  int       batch;
  int       n;
  float    *images;    /* (batch_size, C, S, S) */
  int      *labels;    /* (batch_size) */
  float    *values;    /* (batch_size, n_values), NULL without regression targets */
  uint8_t  *masks;     /* (batch_size, S, S), NULL without segmentation masks */
  float    *boxes;     /* (batch_size, max_boxes, 4), NULL without detection boxes */
  int      *box_labels;   /* (batch_size, max_boxes) */
  int      *n_boxes;   /* (batch_size) */
  int      *indices;   /* (batch_size) */
} Slot;

struct _VlLoader {
  VlDataset   *ds;
  VlSplit      split;
  VlPreprocess pp;
  gboolean     has_pp;
  VlAugment    augment;
  int          batch_size;
  gboolean     shuffle;
  uint64_t     seed;
  int          n_items;
  int          n_batches;
  gsize        sample_floats;
  gsize        mask_bytes;     /* S * S for a segmentation dataset, else 0 */
  int          max_boxes;      /* detection: room per image (at least 1) */
  GThread     *thread;

  GMutex       lock;
  GCond        cond;
  gboolean     quit;
  gint         generation;
  gboolean     started;
  int          epoch;
  int         *order;          /* (n_items) */
  int          next_produce;
  int          next_consume;
  Slot         slots[N_SLOTS];
};

static void
loader_fill (VlLoader *l, Slot *slot, int count, int epoch)
{
  int n = 0;
  for (int j = 0; j < count; j++)
    {
      if (g_atomic_int_get (&l->generation) != slot->generation)
        break;   /* cancelled */
      int i = slot->indices[j];
      float *out = slot->images + (gsize) n * l->sample_floats;
      VlTarget target = { .values = slot->values ? slot->values + (gsize) n * l->ds->n_values
                                                 : NULL,
                          .mask = slot->masks ? slot->masks + (gsize) n * l->mask_bytes : NULL,
                          .boxes = slot->boxes ? slot->boxes + (gsize) n * l->max_boxes * 4
                                               : NULL,
                          .box_labels = slot->box_labels ? slot->box_labels
                                                           + (gsize) n * l->max_boxes : NULL };
      if (vl_dataset_load_target (l->ds, l->split, i, l->has_pp ? &l->pp : NULL, l->augment,
                                  vl_augment_seed (l->seed, epoch, i), out, &target, NULL))
        {
          slot->indices[n] = i;
          slot->labels[n] = target.label;
          if (slot->n_boxes)
            slot->n_boxes[n] = target.n_boxes;
          n++;
        }
    }
  slot->n = n;
}

static gpointer
loader_thread (gpointer data)
{
  VlLoader *l = data;
  vl_mutex_lock (&l->lock);
  for (;;)
    {
      Slot *slot = NULL;
      while (!l->quit)
        {
          if (l->started && l->next_produce < l->n_batches)
            for (int s = 0; s < N_SLOTS && slot == NULL; s++)
              if (l->slots[s].state == SLOT_FREE)
                slot = &l->slots[s];
          if (slot != NULL)
            break;
          vl_cond_wait (&l->cond, &l->lock);
        }
      if (l->quit)
        break;

      slot->state = SLOT_FILLING;
      slot->generation = l->generation;
      slot->batch = l->next_produce++;
      int first = slot->batch * l->batch_size;
      int count = MIN (l->batch_size, l->n_items - first);
      memcpy (slot->indices, l->order + first, (gsize) count * sizeof (int));
      int epoch = l->epoch;
      vl_mutex_unlock (&l->lock);

      loader_fill (l, slot, count, epoch);

      vl_mutex_lock (&l->lock);
      slot->state = slot->generation == l->generation ? SLOT_READY : SLOT_FREE;
      g_cond_broadcast (&l->cond);
    }
  vl_mutex_unlock (&l->lock);
  return NULL;
}

VlLoader *
vl_loader_new (VlDataset *ds, VlSplit split, const VlPreprocess *pp, VlAugment augment,
               int batch_size, gboolean shuffle, uint64_t seed)
{
  g_return_val_if_fail (ds != NULL && (split == VL_SPLIT_TRAIN || split == VL_SPLIT_VAL), NULL);
  g_return_val_if_fail (batch_size > 0, NULL);
  g_return_val_if_fail (pp != NULL || ds->kind == SOURCE_MEMORY, NULL);
  g_return_val_if_fail (pp == NULL || pp->channels == 1 || pp->channels == 3, NULL);
  g_return_val_if_fail (pp == NULL || pp->size > 0, NULL);
  g_return_val_if_fail (pp == NULL || ds->kind != SOURCE_MEMORY
                        || (pp->channels == ds->channels && pp->size == ds->mem_size), NULL);

  VlLoader *l = g_new0 (VlLoader, 1);
  l->ds = ds;
  l->split = split;
  l->has_pp = pp != NULL;
  if (pp != NULL)
    l->pp = *pp;
  l->augment = augment;
  l->batch_size = batch_size;
  l->shuffle = shuffle;
  l->seed = seed;
  l->n_items = vl_dataset_n_items (ds, split);
  l->n_batches = (l->n_items + batch_size - 1) / batch_size;
  int C = pp != NULL ? pp->channels : ds->channels;
  int S = pp != NULL ? pp->size : ds->mem_size;
  l->sample_floats = (gsize) C * S * S;
  l->mask_bytes = ds->segment ? (gsize) S * S : 0;
  l->max_boxes = MAX (ds->max_boxes, 1);
  l->order = g_new (int, MAX (l->n_items, 1));
  for (int s = 0; s < N_SLOTS; s++)
    {
      l->slots[s].images = g_new (float, l->sample_floats * batch_size);
      l->slots[s].labels = g_new (int, batch_size);
      l->slots[s].values = ds->n_values > 0 ? g_new (float, (gsize) batch_size * ds->n_values)
                                            : NULL;
      l->slots[s].masks = ds->segment ? g_new (uint8_t, l->mask_bytes * batch_size) : NULL;
      if (ds->detect)
        {
          l->slots[s].boxes = g_new (float, (gsize) batch_size * l->max_boxes * 4);
          l->slots[s].box_labels = g_new (int, (gsize) batch_size * l->max_boxes);
          l->slots[s].n_boxes = g_new0 (int, batch_size);
        }
      l->slots[s].indices = g_new (int, batch_size);
    }
  g_mutex_init (&l->lock);
  g_cond_init (&l->cond);
  l->thread = g_thread_new ("vl-loader", loader_thread, l);
  return l;
}

/* With the lock held. */
static void
loader_start_locked (VlLoader *l, int epoch, int start_batch)
{
  g_atomic_int_inc (&l->generation);
  l->epoch = epoch;
  l->started = TRUE;
  for (int i = 0; i < l->n_items; i++)
    l->order[i] = i;
  if (l->shuffle)
    {
      VlRng rng;
      vl_rng_seed (&rng, shuffle_seed (l->seed, epoch));
      for (int i = l->n_items - 1; i > 0; i--)
        {
          int j = (int) (vl_rng_next (&rng) % (uint64_t) (i + 1));
          int t = l->order[i];
          l->order[i] = l->order[j];
          l->order[j] = t;
        }
    }
  l->next_produce = l->next_consume = CLAMP (start_batch, 0, l->n_batches);
  for (int s = 0; s < N_SLOTS; s++)
    if (l->slots[s].state == SLOT_READY || l->slots[s].state == SLOT_HELD)
      l->slots[s].state = SLOT_FREE;
  /* A slot being filled is dropped by the worker when it sees the new generation. */
  g_cond_broadcast (&l->cond);
}

void
vl_loader_start_epoch (VlLoader *l, int epoch, int start_batch)
{
  g_return_if_fail (l != NULL);
  vl_mutex_lock (&l->lock);
  loader_start_locked (l, epoch, start_batch);
  vl_mutex_unlock (&l->lock);
}

gboolean
vl_loader_next (VlLoader *l, VlBatch *batch)
{
  g_return_val_if_fail (l != NULL && batch != NULL, FALSE);

  memset (batch, 0, sizeof *batch);
  vl_mutex_lock (&l->lock);
  if (!l->started)
    loader_start_locked (l, 0, 0);
  for (int s = 0; s < N_SLOTS; s++)
    if (l->slots[s].state == SLOT_HELD)
      {
        l->slots[s].state = SLOT_FREE;
        g_cond_broadcast (&l->cond);
      }

  gboolean ok = FALSE;
  while (l->next_consume < l->n_batches)
    {
      Slot *slot = NULL;
      for (int s = 0; s < N_SLOTS && slot == NULL; s++)
        if (l->slots[s].state == SLOT_READY && l->slots[s].generation == l->generation
            && l->slots[s].batch == l->next_consume)
          slot = &l->slots[s];
      if (slot == NULL)
        {
          vl_cond_wait (&l->cond, &l->lock);
          continue;
        }
      l->next_consume++;
      if (slot->n == 0)
        {
          /* Every item of this batch failed to decode: go on to the next one. */
          slot->state = SLOT_FREE;
          g_cond_broadcast (&l->cond);
          continue;
        }
      slot->state = SLOT_HELD;
      batch->images = slot->images;
      batch->labels = slot->labels;
      batch->values = slot->values;
      batch->masks = slot->masks;
      batch->boxes = slot->boxes;
      batch->box_labels = slot->box_labels;
      batch->n_boxes = slot->n_boxes;
      batch->max_boxes = l->max_boxes;
      batch->n_values = l->ds->n_values;
      batch->indices = slot->indices;
      batch->n = slot->n;
      batch->index = slot->batch;
      ok = TRUE;
      break;
    }
  vl_mutex_unlock (&l->lock);
  return ok;
}

int
vl_loader_n_batches (VlLoader *l)
{
  g_return_val_if_fail (l != NULL, 0);
  return l->n_batches;
}

GThread *
vl_loader_thread (VlLoader *l)
{
  g_return_val_if_fail (l != NULL, NULL);
  return l->thread;
}

void
vl_loader_free (VlLoader *l)
{
  if (l == NULL)
    return;
  vl_mutex_lock (&l->lock);
  l->quit = TRUE;
  g_atomic_int_inc (&l->generation);   /* the worker stops mid-batch */
  g_cond_broadcast (&l->cond);
  vl_mutex_unlock (&l->lock);
  g_thread_join (l->thread);

  for (int s = 0; s < N_SLOTS; s++)
    {
      g_free (l->slots[s].images);
      g_free (l->slots[s].labels);
      g_free (l->slots[s].values);
      g_free (l->slots[s].masks);
      g_free (l->slots[s].boxes);
      g_free (l->slots[s].box_labels);
      g_free (l->slots[s].n_boxes);
      g_free (l->slots[s].indices);
    }
  g_free (l->order);
  g_mutex_clear (&l->lock);
  g_cond_clear (&l->cond);
  g_free (l);
}

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

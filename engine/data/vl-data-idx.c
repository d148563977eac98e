/* vl-data-idx.c: Fashion-MNIST from its gzip IDX files (classes, per-class caps, val caps). */
#include "vl-dataset-private.h"
#include "vl-error.h"

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
      vl_ds_add_item (ds, split, name, class_map[labels[take[t]]]);
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

gboolean
vl_ds_parse_positive (const char *what, const char *key, const char *value, int *out,
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

VlDataset *
vl_ds_open_fashion_mnist (const char *options, double *max_angle, GError **error)
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
          if (!vl_ds_parse_positive (what, key, value, &per_class, error))
            return NULL;
        }
      else if (strcmp (key, "val-per-class") == 0)
        {
          if (!vl_ds_parse_positive (what, key, value, &val_per_class, error))
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

  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_RECORDS, n_classes);
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

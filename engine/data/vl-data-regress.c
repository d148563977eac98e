/* vl-data-regress.c: regression sets: targets.csv folders and fashion-mnist-rotate (whose
 * records vl_ds_rotate_record turns when loaded). */
#include "vl-dataset-private.h"
#include "vl-error.h"
#include "vl-rng.h"

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

/* Stores a copy of n values in store (which owns it) and returns where it is. */
static const float *
store_values (GPtrArray *store, const float *values, int n)
{
  float *v = g_memdup2 (values, sizeof (float) * n);
  g_ptr_array_add (store, v);
  return v;
}

/* Rotates a W x H x C record by `degrees` about its centre into out (bilinear, zero outside):
 * out (x, y) = in (c + cos a (x - c) - sin a (y - c), c + sin a (x - c) + cos a (y - c)). */
void
vl_ds_rotate_record (const uint8_t *in, int W, int H, int C, float degrees, uint8_t *out)
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

VlDataset *
vl_ds_open_fashion_mnist_rotate (const char *options, const VlDatasetOptions *opt, GError **error)
{
  double max_angle = 45.0;
  g_autoptr(VlDataset) ds = vl_ds_open_fashion_mnist (options, &max_angle, error);
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
        it->values = store_values (ds->value_store, &angle, 1);
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
      char *reason = vl_ds_check_image_header (path, st.st_size);
      if (reason != NULL)
        {
          vl_ds_add_skipped (ds, path, reason);
          g_free (reason);
          continue;
        }
      vl_ds_add_item (ds, split, path, 0);
      Item *it = &g_array_index (ds->splits[split].items, Item,
                                 ds->splits[split].items->len - 1);
      it->values = store_values (ds->value_store, vals, ds->n_values);
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
VlDataset *
vl_ds_open_targets_folder (const char *root, const VlDatasetOptions *opt, GError **error)
{
  g_autofree char *train_dir = g_build_filename (root, "train", NULL);
  g_autofree char *val_dir = g_build_filename (root, "val", NULL);
  g_autofree char *train_csv = g_build_filename (train_dir, "targets.csv", NULL);
  gboolean split_layout = g_file_test (train_csv, G_FILE_TEST_EXISTS);
  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_FOLDER, 1);
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
      if (!vl_ds_check_fraction (root, opt->val_fraction, error) ||
          !read_targets_csv (ds, VL_SPLIT_TRAIN, root, error))
        return NULL;
      vl_ds_split_stratified (ds, opt->val_fraction, opt->seed);
      ds->description = g_strdup_printf ("%s (targets.csv, %g%% held out for validation, seed %"
                                         G_GUINT64_FORMAT ")", base, opt->val_fraction * 100.0,
                                         opt->seed);
    }
  return g_steal_pointer (&ds);
}

/* vl-features.c: feature extraction over a dataset split, and the safetensors, .npy and CSV
 * writers. */
#include "vl-features.h"

#include "vl-safetensors.h"
#include "vl-trainer.h"

#include <json-glib/json-glib.h>
#include <string.h>

gboolean
vl_feature_pool_from_string (const char *s, VlFeaturePool *pool)
{
  static const char *const names[] = { "token", "avg", "max", "all", "map" };
  for (guint i = 0; s && i < G_N_ELEMENTS (names); i++)
    if (g_str_equal (s, names[i]))
      {
        *pool = (VlFeaturePool) i;
        return TRUE;
      }
  return FALSE;
}

const char *
vl_feature_pool_name (VlFeaturePool pool)
{
  switch (pool)
    {
    case VL_FEATURE_POOL_TOKEN: return "token";
    case VL_FEATURE_POOL_AVG: return "avg";
    case VL_FEATURE_POOL_MAX: return "max";
    case VL_FEATURE_POOL_ALL: return "all";
    case VL_FEATURE_POOL_MAP: return "map";
    default: return "invalid";
    }
}

gboolean
vl_feature_layer_from_string (const char *s, int depth, int *layer, GError **error)
{
  if (s == NULL || g_str_equal (s, "final"))
    {
      *layer = VL_FEATURE_LAYER_FINAL;
      return TRUE;
    }
  gint64 v;
  if (!g_ascii_string_to_signed (s, 10, -depth, depth - 1, &v, NULL))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "layer %s: expected \"final\" or a block index from 0 to %d (or -1 to -%d "
                   "from the last)", s, depth - 1, depth);
      return FALSE;
    }
  *layer = v < 0 ? (int) (depth + v) : (int) v;
  return TRUE;
}

void
vl_features_free (VlFeatures *f)
{
  if (f == NULL)
    return;
  g_free (f->features);
  g_free (f->labels);
  g_strfreev (f->files);
  g_strfreev (f->class_names);
  g_free (f);
}

/* ------------------------------------------------------------------ extraction */

/* One image's tokens (T, W) pooled into out (W) as `pool` (token, avg or max); P prefix tokens. */
static void
pool_image (const float *tok, int T, int P, int W, VlFeaturePool pool, float *out)
{
  switch (pool)
    {
    case VL_FEATURE_POOL_TOKEN:
      memcpy (out, tok, sizeof (float) * W);
      break;
    case VL_FEATURE_POOL_AVG:
      {
        /* summed in double */
        g_autofree double *acc = g_new0 (double, W);
        for (int t = P; t < T; t++)
          for (int c = 0; c < W; c++)
            acc[c] += tok[(int64_t) t * W + c];
        for (int c = 0; c < W; c++)
          out[c] = (float) (acc[c] / (T - P));
        break;
      }
    case VL_FEATURE_POOL_MAX:
      memcpy (out, tok + (int64_t) P * W, sizeof (float) * W);
      for (int t = P + 1; t < T; t++)
        for (int c = 0; c < W; c++)
          out[c] = MAX (out[c], tok[(int64_t) t * W + c]);
      break;
    case VL_FEATURE_POOL_ALL:
    default:
      g_assert_not_reached ();
    }
}

static VlPoolKind
model_pool_of (VlFeaturePool pool)
{
  return pool == VL_FEATURE_POOL_AVG ? VL_POOL_AVG : pool == VL_FEATURE_POOL_MAX ? VL_POOL_MAX
         : pool == VL_FEATURE_POOL_MAP ? VL_POOL_MAP : VL_POOL_TOKEN;
}

static const char *
model_name (VlModel *m)
{
  return vl_model_path (m) ? vl_model_path (m) : "the model";
}

static gboolean
check_options (VlModel *m, const VlFeatureOptions *o, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  if (o->layer != VL_FEATURE_LAYER_FINAL && (o->layer < 0 || o->layer >= g->depth))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: layer %d: the model has blocks 0 to %d", model_name (m), o->layer,
                   g->depth - 1);
      return FALSE;
    }
  if ((guint) o->pool > VL_FEATURE_POOL_MAP)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "pooling %d is not one of token, avg, max, "
                   "map, all", (int) o->pool);
      return FALSE;
    }
  if (o->pool == VL_FEATURE_POOL_MAP && !vl_model_check_pool (m, VL_POOL_MAP, error))
    return FALSE;
  if (o->pool == VL_FEATURE_POOL_MAP && o->layer != VL_FEATURE_LAYER_FINAL)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "%s: the attention pool (map) pools the "
                   "final tokens only: pool block %d's by avg, max or all", model_name (m),
                   o->layer);
      return FALSE;
    }
  if (o->pool == VL_FEATURE_POOL_TOKEN && !g->class_token)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "%s: the model has no class token to pool: use avg, max%s or all",
                   model_name (m), g->attn_pool ? ", map" : "");
      return FALSE;
    }
  if (o->batch_size < 1 || o->batch_size > 4096)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "batch size %d: expected 1 to 4096",
                   o->batch_size);
      return FALSE;
    }
  return TRUE;
}

typedef struct {
  VlModel           *m;
  VlDataset         *ds;
  VlFeaturePool      pool;
  int                batch_size;
  VlPreprocess       pp;
  VlFeatures       **f;          /* one set per layer asked for */
  int                n_f;
  int64_t            capacity;   /* rows allocated */
  int64_t            done, total;
  VlFeatureProgress  progress;
  gpointer           user_data;
  GCancellable      *cancellable;
} Extract;

/* Appends one batch's features (after the forward) to f. FALSE when they cannot be stored. */
static gboolean
take_batch (Extract *e, VlFeatures *f, VlSplit split, const VlBatch *b, GError **error)
{
  const VlGeometry *g = vl_model_geometry (e->m);
  const int W = g->width, T = vl_model_n_tokens_last (e->m), P = g->n_prefix;
  if (f->features == NULL)   /* the first batch: T is known now */
    {
      f->n_tokens = e->pool == VL_FEATURE_POOL_ALL ? T : 1;
      f->dim = (int64_t) f->n_tokens * W;
      f->features = g_try_malloc (sizeof (float) * MAX (e->capacity, 1) * f->dim);
      if (f->features == NULL)
        {
          g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                       "the features of %" G_GINT64_FORMAT " images x %" G_GINT64_FORMAT
                       " values would take %.1f GiB: pool them, or take fewer images",
                       e->capacity, f->dim,
                       (double) e->capacity * f->dim * sizeof (float) / (1 << 30));
          return FALSE;
        }
    }
  g_assert (e->pool != VL_FEATURE_POOL_ALL || f->n_tokens == T);
  const int64_t D = f->dim;
  const gboolean final = f->layer == VL_FEATURE_LAYER_FINAL;
  const float *tokens = final ? vl_model_tokens_final (e->m)
                              : vl_model_tokens_after_block (e->m, f->layer);
  for (int i = 0; i < b->n; i++)
    {
      int64_t row = f->n++;
      float *out = f->features + row * D;
      const float *tok = tokens + (int64_t) i * T * W;
      if (e->pool == VL_FEATURE_POOL_ALL)
        memcpy (out, tok, sizeof (float) * D);
      else if (final)
        memcpy (out, vl_model_features (e->m) + (int64_t) i * W, sizeof (float) * W);
      else
        pool_image (tok, T, P, W, e->pool, out);
      f->labels[row] = b->labels[i];
      f->files[row] = g_strdup (vl_dataset_item_name (e->ds, split, b->indices[i]));
    }
  return TRUE;
}

static gboolean
extract_split (Extract *e, VlSplit split, GError **error)
{
  const int n_items = vl_dataset_n_items (e->ds, split);
  if (n_items == 0)
    return TRUE;
  const int bs = e->batch_size;
  g_autoptr(VlLoader) loader = vl_loader_new (e->ds, split, &e->pp, VL_AUGMENT_NONE, bs, FALSE, 0);
  vl_loader_start_epoch (loader, 0, 0);
  const int64_t before = e->done;
  VlBatch b;
  while (vl_loader_next (loader, &b))
    {
      if (g_cancellable_set_error_if_cancelled (e->cancellable, error) ||
          !vl_model_forward (e->m, b.images, b.n, e->pp.size, e->pp.size, VL_FORWARD_INFER, error))
        return FALSE;
      for (int j = 0; j < e->n_f; j++)
        if (!take_batch (e, e->f[j], split, &b, error))
          return FALSE;
      e->done = before + MIN ((int64_t) (b.index + 1) * bs, n_items);
      if (e->progress)
        e->progress (e->done, e->total, e->user_data);
    }
  e->done = before + n_items;
  return !g_cancellable_set_error_if_cancelled (e->cancellable, error);
}

static void
free_sets (VlFeatures **sets)
{
  for (int j = 0; sets && sets[j]; j++)
    vl_features_free (sets[j]);
  g_free (sets);
}

/* The features at each of layers[0 .. n) from one pass: a NULL-terminated array of n sets. */
static VlFeatures **
extract_layers (VlModel *m, VlDataset *ds, VlFeatureSplit split, const int *layers, int n,
                VlFeaturePool pool, int batch_size, VlFeatureProgress progress,
                gpointer user_data, GCancellable *cancellable, GError **error)
{
  const VlGeometry *g = vl_model_geometry (m);
  Extract e = { .m = m, .ds = ds, .pool = pool, .batch_size = batch_size, .n_f = n,
                .progress = progress, .user_data = user_data, .cancellable = cancellable };
  vl_preprocess_from_model (m, &e.pp);
  const gboolean want_train = split != VL_FEATURE_SPLIT_VAL;
  const gboolean want_val = split != VL_FEATURE_SPLIT_TRAIN;
  e.total = (want_train ? vl_dataset_n_items (ds, VL_SPLIT_TRAIN) : 0) +
            (want_val ? vl_dataset_n_items (ds, VL_SPLIT_VAL) : 0);
  e.capacity = e.total;

  e.f = g_new0 (VlFeatures *, n + 1);
  for (int j = 0; j < n; j++)
    {
      VlFeatures *f = e.f[j] = g_new0 (VlFeatures, 1);
      f->width = g->width;
      f->split = split;
      f->layer = layers[j];
      f->pool = pool;
      f->labels = g_new0 (int, MAX (e.total, 1));
      f->files = g_new0 (char *, e.total + 1);
      f->n_classes = vl_dataset_n_classes (ds);
      f->class_names = g_new0 (char *, f->n_classes + 1);
      for (int k = 0; k < f->n_classes; k++)
        f->class_names[k] = g_strdup (vl_dataset_class_name (ds, k));
    }

  const VlPoolKind old_pool = vl_model_pool (m);
  if (pool != VL_FEATURE_POOL_ALL)
    vl_model_set_pool (m, model_pool_of (pool));
  vl_model_set_cancellable (m, cancellable);
  gboolean ok = (!want_train || extract_split (&e, VL_SPLIT_TRAIN, error));
  for (int j = 0; j < n; j++)
    e.f[j]->n_train = e.f[j]->n;
  ok = ok && (!want_val || extract_split (&e, VL_SPLIT_VAL, error));
  vl_model_set_cancellable (m, NULL);
  vl_model_set_pool (m, old_pool);
  if (ok && e.f[0]->n == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_MISSING, "%s: no image of the %s split could be read",
                   vl_dataset_description (ds),
                   split == VL_FEATURE_SPLIT_TRAIN ? "train" : split == VL_FEATURE_SPLIT_VAL ? "val"
                                                   : "train or val");
      ok = FALSE;
    }
  if (!ok)
    {
      free_sets (e.f);
      return NULL;
    }
  return e.f;
}

VlFeatures *
vl_features_extract (VlModel *m, VlDataset *ds, VlFeatureSplit split,
                     const VlFeatureOptions *options, VlFeatureProgress progress,
                     gpointer user_data, GCancellable *cancellable, GError **error)
{
  VlFeatureOptions defaults = VL_FEATURE_OPTIONS_DEFAULT;
  const VlFeatureOptions *o = options ? options : &defaults;
  if (!check_options (m, o, error))
    return NULL;
  VlFeatures **sets = extract_layers (m, ds, split, &o->layer, 1, o->pool, o->batch_size,
                                      progress, user_data, cancellable, error);
  if (sets == NULL)
    return NULL;
  VlFeatures *f = sets[0];
  g_free (sets);
  return f;
}

VlFeatures **
vl_features_extract_all_layers (VlModel *m, VlDataset *ds, VlFeatureSplit split,
                                VlFeaturePool pool, int batch_size, VlFeatureProgress progress,
                                gpointer user_data, GCancellable *cancellable, GError **error)
{
  VlFeatureOptions o = { .layer = VL_FEATURE_LAYER_FINAL, .pool = pool,
                         .batch_size = batch_size };
  if (!check_options (m, &o, error))
    return NULL;
  if (pool == VL_FEATURE_POOL_ALL || pool == VL_FEATURE_POOL_MAP)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID, "every layer's features need a pooling "
                   "(token, avg or max), not %s", pool == VL_FEATURE_POOL_ALL ? "all tokens"
                   : "the attention pool (it pools the final tokens only)");
      return NULL;
    }
  const int depth = vl_model_geometry (m)->depth;
  g_autofree int *layers = g_new (int, depth + 1);
  for (int l = 0; l < depth; l++)
    layers[l] = l;
  layers[depth] = VL_FEATURE_LAYER_FINAL;
  return extract_layers (m, ds, split, layers, depth + 1, pool, batch_size, progress, user_data,
                         cancellable, error);
}

void
vl_features_free_all (VlFeatures **sets)
{
  free_sets (sets);
}

/* ------------------------------------------------------------------ writers */

static char *
json_string_array (char *const *strings, int64_t n)
{
  g_autoptr(JsonBuilder) b = json_builder_new_immutable ();
  json_builder_begin_array (b);
  for (int64_t i = 0; i < n; i++)
    json_builder_add_string_value (b, strings[i]);
  json_builder_end_array (b);
  g_autoptr(JsonGenerator) gen = json_generator_new ();
  g_autoptr(JsonNode) root = json_builder_get_root (b);
  json_generator_set_root (gen, root);
  return json_generator_to_data (gen, NULL);
}

static char *
layer_name (int layer)
{
  return layer == VL_FEATURE_LAYER_FINAL ? g_strdup ("final") : g_strdup_printf ("%d", layer);
}

static const char *
split_name (VlFeatureSplit s)
{
  return s == VL_FEATURE_SPLIT_TRAIN ? "train" : s == VL_FEATURE_SPLIT_VAL ? "val" : "all";
}

static int
features_shape (const VlFeatures *f, int64_t *shape)
{
  shape[0] = f->n;
  if (f->pool == VL_FEATURE_POOL_ALL)
    {
      shape[1] = f->n_tokens;
      shape[2] = f->width;
      return 3;
    }
  shape[1] = f->dim;
  return 2;
}

static gboolean
write_safetensors (const VlFeatures *f, const char *path, GError **error)
{
  g_autoptr(VlSafetensorsWriter) w = vl_safetensors_writer_new ();
  int64_t shape[3];
  int nd = features_shape (f, shape);
  g_autofree int64_t *labels = g_new (int64_t, MAX (f->n, 1));
  for (int64_t i = 0; i < f->n; i++)
    labels[i] = f->labels[i];
  vl_safetensors_writer_add_f32 (w, "features", nd, shape, f->features);
  vl_safetensors_writer_add_i64 (w, "labels", 1, &f->n, labels);
  g_autofree char *files = json_string_array (f->files, f->n);
  g_autofree char *classes = json_string_array (f->class_names, f->n_classes);
  g_autofree char *layer = layer_name (f->layer);
  g_autofree char *n_train = g_strdup_printf ("%" G_GINT64_FORMAT, f->n_train);
  vl_safetensors_writer_add_metadata (w, "files", files);
  vl_safetensors_writer_add_metadata (w, "classes", classes);
  vl_safetensors_writer_add_metadata (w, "layer", layer);
  vl_safetensors_writer_add_metadata (w, "pool", vl_feature_pool_name (f->pool));
  vl_safetensors_writer_add_metadata (w, "split", split_name (f->split));
  vl_safetensors_writer_add_metadata (w, "n_train", n_train);
  return vl_safetensors_writer_write (w, path, error);
}

/* A CSV field (RFC 4180): quoted when it holds a comma, a quote or a line break. */
static void
csv_field (GString *s, const char *field)
{
  if (strpbrk (field, ",\"\r\n") == NULL)
    {
      g_string_append (s, field);
      return;
    }
  g_string_append_c (s, '"');
  for (const char *p = field; *p; p++)
    {
      if (*p == '"')
        g_string_append_c (s, '"');
      g_string_append_c (s, *p);
    }
  g_string_append_c (s, '"');
}

/* file,label[,f0,...]: with_features adds the feature columns. */
static gboolean
write_csv (const VlFeatures *f, const char *path, gboolean with_features, GError **error)
{
  GString *s = g_string_sized_new (with_features ? (gsize) (f->n * f->dim * 12 + 64) : 4096);
  g_string_append (s, "file,label");
  if (with_features)
    for (int64_t d = 0; d < f->dim; d++)
      g_string_append_printf (s, ",f%" G_GINT64_FORMAT, d);
  g_string_append (s, "\r\n");
  char num[G_ASCII_DTOSTR_BUF_SIZE];
  for (int64_t i = 0; i < f->n; i++)
    {
      csv_field (s, f->files[i]);
      g_string_append_c (s, ',');
      csv_field (s, f->class_names[f->labels[i]]);
      if (with_features)
        {
          const float *x = f->features + i * f->dim;
          for (int64_t d = 0; d < f->dim; d++)
            {
              g_string_append_c (s, ',');
              /* 9 significant digits: a float32 reads back bit for bit */
              g_string_append (s, g_ascii_formatd (num, sizeof num, "%.9g", x[d]));
            }
        }
      g_string_append (s, "\r\n");
    }
  gboolean ok = vl_write_file_atomic (path, s->str, (gssize) s->len, error);
  g_string_free (s, TRUE);
  return ok;
}

/* numpy's .npy format 1.0 (2.0 when the header needs more than 65535 bytes): magic, version,
 * header length, a Python dict literal padded with spaces to a multiple of 64, the data. */
static gboolean
write_npy (const VlFeatures *f, const char *path, GError **error)
{
  int64_t shape[3];
  int nd = features_shape (f, shape);
  GString *dict = g_string_new ("{'descr': '<f4', 'fortran_order': False, 'shape': (");
  for (int d = 0; d < nd; d++)
    g_string_append_printf (dict, "%" G_GINT64_FORMAT ", ", shape[d]);
  g_string_truncate (dict, dict->len - 2);   /* "(N, D)" (nd >= 2: no 1-tuple comma needed) */
  g_string_append (dict, "), }");
  const gboolean v2 = dict->len + 1 + 12 > 65535;
  const gsize prefix = v2 ? 12 : 10;
  gsize total = prefix + dict->len + 1;
  gsize pad = (64 - total % 64) % 64;
  for (gsize i = 0; i < pad; i++)
    g_string_append_c (dict, ' ');
  g_string_append_c (dict, '\n');

  const gsize data_bytes = (gsize) f->n * (gsize) f->dim * sizeof (float);
  const gsize total_bytes = prefix + dict->len + data_bytes;
  guint8 *buf = g_try_malloc (total_bytes);
  if (buf == NULL)
    {
      g_string_free (dict, TRUE);
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "%s: cannot allocate %" G_GSIZE_FORMAT
                   " bytes to write", path, total_bytes);
      return FALSE;
    }
  const guint8 magic[8] = { 0x93, 'N', 'U', 'M', 'P', 'Y', v2 ? 2 : 1, 0 };
  memcpy (buf, magic, 8);
  if (v2)
    {
      guint32 len = GUINT32_TO_LE ((guint32) dict->len);
      memcpy (buf + 8, &len, 4);
    }
  else
    {
      guint16 len = GUINT16_TO_LE ((guint16) dict->len);
      memcpy (buf + 8, &len, 2);
    }
  memcpy (buf + prefix, dict->str, dict->len);
  /* little-endian float32, the host's order on every platform vitlab builds for */
  G_STATIC_ASSERT (G_BYTE_ORDER == G_LITTLE_ENDIAN);
  memcpy (buf + prefix + dict->len, f->features, data_bytes);
  g_string_free (dict, TRUE);
  gboolean ok = vl_write_file_atomic (path, (const char *) buf, (gssize) total_bytes, error);
  g_free (buf);
  return ok;
}

static gboolean
has_suffix_nocase (const char *s, const char *suffix)
{
  gsize n = strlen (s), k = strlen (suffix);
  return n > k && g_ascii_strcasecmp (s + n - k, suffix) == 0;
}

gboolean
vl_features_write (const VlFeatures *f, const char *path, GError **error)
{
  if (has_suffix_nocase (path, ".safetensors"))
    return write_safetensors (f, path, error);
  if (has_suffix_nocase (path, ".csv"))
    return write_csv (f, path, TRUE, error);
  if (has_suffix_nocase (path, ".npy"))
    {
      g_autofree char *stem = g_strndup (path, strlen (path) - 4);
      g_autofree char *csv = g_strconcat (stem, ".csv", NULL);
      return write_npy (f, path, error) && write_csv (f, csv, FALSE, error);
    }
  g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
               "%s: unknown kind of file: the name must end in .safetensors, .npy or .csv", path);
  return FALSE;
}

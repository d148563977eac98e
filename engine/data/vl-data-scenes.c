/* vl-data-scenes.c: fashion-mnist-scenes (garments placed on a canvas, with masks or boxes)
 * and detection sets read by vl-det-data.c. */
#include "vl-dataset-private.h"
#include "vl-error.h"
#include "vl-rng.h"
#include "vl-det-data.h"

/* ------------------------------------------------------------------------------------- */
/* fashion-mnist-scenes and detection sets                                                */

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
          const Item *it = vl_ds_get_item (src, split, (int) (vl_rng_uniform (&rng) * n_src));
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
      vl_ds_add_item (ds, split, name, 0);
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

VlDataset *
vl_ds_open_fashion_mnist_scenes (const char *options, gboolean detect, GError **error)
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
          if (!vl_ds_parse_positive (what, key, value, &n_train, error))
            return NULL;
        }
      else if (strcmp (key, "val") == 0)
        {
          if (!vl_ds_parse_positive (what, key, value, &n_val, error))
            return NULL;
        }
      else if (strcmp (key, "size") == 0)
        {
          if (!vl_ds_parse_positive (what, key, value, &size, error))
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
  g_autoptr(VlDataset) src = vl_ds_open_fashion_mnist (src_opts->str, NULL, error);
  if (src == NULL)
    return NULL;
  const int nc = src->n_classes;
  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_RECORDS, nc + 1);
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
VlDataset *
vl_ds_open_detection (const char *root, GError **error)
{
  g_autoptr(VlDetSource) src = vl_det_source_read (root, error);
  if (src == NULL)
    return NULL;
  const int K = (int) src->class_names->len;
  g_autoptr(VlDataset) ds = vl_ds_new (SOURCE_FOLDER, K);
  ds->channels = 3;
  ds->detect = TRUE;
  for (int k = 0; k < K; k++)
    ds->class_names[k] = g_strdup (g_ptr_array_index (src->class_names, k));
  for (guint i = 0; i < src->skipped->len; i++)
    {
      const VlSkipped *sk = g_ptr_array_index (src->skipped, i);
      vl_ds_add_skipped (ds, sk->path, sk->reason);
    }
  for (int s = 0; s < 2; s++)
    {
      for (guint i = 0; i < src->items[s]->len; i++)
        {
          const VlDetItem *di = g_ptr_array_index (src->items[s], i);
          vl_ds_add_item (ds, (VlSplit) s, di->image, 0);
          set_item_boxes (ds, (VlSplit) s, (int) i, di->boxes, di->labels, di->n, di->width,
                          di->height);
        }
      ds->splits[s].class_counts[0] = 0;   /* no box is background */
    }
  ds->description = g_strdup (src->description);
  return g_steal_pointer (&ds);
}

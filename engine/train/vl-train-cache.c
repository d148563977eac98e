/* vl-train-cache.c: the frozen-feature cache of a training run and the batches gathered from it
 * (vl-train-cache.h). */
#include "vl-train-cache.h"
#include "vl-error.h"

#include <string.h>

#define GIB ((int64_t) 1 << 30)

int64_t
vl_feat_cache_token_numel (VlModel *m, int size)
{
  const VlGeometry *g = vl_model_geometry (m);
  return (int64_t) (g->n_prefix + (size / g->patch) * (size / g->patch)) * g->width;
}

/* Detection: image si's boxes of one (n, max_boxes) store into image di's of another. */
static void
copy_boxes (int max_boxes, float *boxes, int *labels, int *n_boxes, int di,
            const float *src_boxes, const int *src_labels, const int *src_n, int si)
{
  const gsize M = (gsize) max_boxes;
  n_boxes[di] = src_n[si];
  memcpy (boxes + di * M * 4, src_boxes + si * M * 4, sizeof (float) * 4 * src_n[si]);
  memcpy (labels + di * M, src_labels + si * M, sizeof (int) * src_n[si]);
}

/* Room for n items in fc (and in next with keep_block >= 0); FALSE (error set) when the
 * activations or the masks do not fit in memory. */
static gboolean
cache_alloc (VlFeatCache *fc, VlFeatCache *next, VlDataset *ds, int n,
             const VlFeatCacheSpec *spec, int64_t tw, GError **error)
{
  const int S = spec->size;
  fc->n = n;
  fc->numel = spec->numel;
  fc->size = S;
  fc->max_boxes = spec->max_boxes;
  fc->data = g_try_new (float, (gsize) n * spec->numel);
  fc->ok = g_new0 (guint8, MAX (n, 1));
  /* the targets the dataset has beside its labels (a segmentation dataset is trained for the
   * segment task only, a detection dataset for detect) */
  if (vl_dataset_is_segmentation (ds))
    fc->masks = g_try_new (uint8_t, (gsize) n * S * S);
  if (vl_dataset_is_detection (ds))
    {
      fc->boxes = g_new (float, (gsize) n * spec->max_boxes * 4);
      fc->box_labels = g_new (int, (gsize) n * spec->max_boxes);
      fc->n_boxes = g_new0 (int, MAX (n, 1));
    }
  if (spec->keep_block >= 0)
    {
      next->n = n;
      next->numel = tw;
      next->size = S;
      next->data = g_try_new (float, (gsize) n * tw);
      next->ok = g_new0 (guint8, MAX (n, 1));
    }
  if (fc->data == NULL || (vl_dataset_is_segmentation (ds) && fc->masks == NULL) ||
      (spec->keep_block >= 0 && next->data == NULL))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_IO, "cannot allocate the feature cache (%.1f GiB)",
                   (double) n * spec->numel * 4 / GIB);
      return FALSE;
    }
  return TRUE;
}

VlFeatCacheEnd
vl_feat_cache_build (VlFeatCache *fc, VlFeatCache *next, VlModel *m, VlDataset *ds,
                     VlSplit split, const VlPreprocess *pp, const VlFeatCacheSpec *spec,
                     const VlFeatCacheWatch *watch, GError **error)
{
  const int n = vl_dataset_n_items (ds, split);
  const int S = spec->size;
  const int64_t numel = spec->numel;
  const int64_t tw = vl_feat_cache_token_numel (m, S);
  const int keep_block = spec->keep_block;
  if (!cache_alloc (fc, next, ds, n, spec, tw, error))
    return VL_FEAT_CACHE_FAILED;
  g_autoptr(VlLoader) l = vl_loader_new (ds, split, pp, VL_AUGMENT_NONE, spec->batch_size, FALSE,
                                         spec->seed);
  g_autofree float *tmp = g_new (float, (gsize) spec->batch_size * numel);
  g_autofree float *tmp_next = keep_block >= 0 ? g_new (float, (gsize) spec->batch_size * tw)
                                               : NULL;
  vl_loader_start_epoch (l, 0, 0);
  VlBatch b;
  while (vl_loader_next (l, &b))
    {
      if (watch->stop (watch->user_data))
        return VL_FEAT_CACHE_STOPPED;
      if (spec->tokens)
        {
          /* only the head outside the model trains: the final-norm token grid is the boundary */
          if (!vl_model_forward (m, b.images, b.n, S, S, VL_FORWARD_INFER, error))
            return VL_FEAT_CACHE_FAILED;
          memcpy (tmp, vl_model_tokens_final (m), sizeof (float) * b.n * numel);
        }
      else if (!vl_model_forward_to_boundary_keeping (m, b.images, b.n, S, S, tmp, keep_block,
                                                      tmp_next, error))
        return VL_FEAT_CACHE_FAILED;
      for (int j = 0; j < b.n; j++)
        {
          const int i = b.indices[j];
          if (fc->masks && b.masks)
            memcpy (fc->masks + (gsize) i * S * S, b.masks + (gsize) j * S * S, (gsize) S * S);
          if (fc->boxes && b.boxes)
            copy_boxes (spec->max_boxes, fc->boxes, fc->box_labels, fc->n_boxes, i, b.boxes,
                        b.box_labels, b.n_boxes, j);
          memcpy (fc->data + (gsize) i * numel, tmp + (gsize) j * numel, sizeof (float) * numel);
          if (tmp_next)
            {
              memcpy (next->data + (gsize) i * tw, tmp_next + (gsize) j * tw, sizeof (float) * tw);
              next->ok[i] = 1;
            }
          fc->ok[i] = 1;
        }
      watch->done (watch->user_data, b.n);
    }
  return VL_FEAT_CACHE_DONE;
}

void
vl_feat_cache_clear (VlFeatCache *fc)
{
  g_clear_pointer (&fc->data, g_free);
  g_clear_pointer (&fc->ok, g_free);
  g_clear_pointer (&fc->masks, g_free);
  g_clear_pointer (&fc->boxes, g_free);
  g_clear_pointer (&fc->box_labels, g_free);
  g_clear_pointer (&fc->n_boxes, g_free);
  fc->n = 0;
}

void
vl_feat_batch_reserve (VlFeatBatch *fb, const VlFeatCache *fc, int batch_size, int n_values,
                       int max_boxes)
{
  fb->x = g_renew (float, fb->x, (gsize) batch_size * fc->numel);
  fb->labels = g_renew (int, fb->labels, batch_size);
  fb->items = g_renew (int, fb->items, batch_size);
  fb->n_values = n_values;
  if (n_values > 0)
    fb->values = g_renew (float, fb->values, (gsize) batch_size * n_values);
  if (fc->masks)
    fb->masks = g_renew (uint8_t, fb->masks, (gsize) batch_size * fc->size * fc->size);
  if (fc->boxes)
    {
      fb->boxes = g_renew (float, fb->boxes, (gsize) batch_size * max_boxes * 4);
      fb->box_labels = g_renew (int, fb->box_labels, (gsize) batch_size * max_boxes);
      fb->n_boxes = g_renew (int, fb->n_boxes, batch_size);
    }
  fb->max_boxes = max_boxes;
}

void
vl_feat_batch_clear (VlFeatBatch *fb)
{
  g_free (fb->x);
  g_free (fb->labels);
  g_free (fb->items);
  g_free (fb->values);
  g_free (fb->masks);
  g_free (fb->boxes);
  g_free (fb->box_labels);
  g_free (fb->n_boxes);
  memset (fb, 0, sizeof *fb);
}

/* Item i of split (its entry in fc) into row n of fb, with its label and targets. */
static void
gather_item (const VlFeatCache *fc, VlDataset *ds, VlSplit split, int i, VlFeatBatch *fb, int n)
{
  const int64_t numel = fc->numel;
  const int S = fc->size;
  memcpy (fb->x + (gsize) n * numel, fc->data + (gsize) i * numel, sizeof (float) * numel);
  if (fb->values)
    memcpy (fb->values + (gsize) n * fb->n_values, vl_dataset_values (ds, split, i),
            sizeof (float) * fb->n_values);
  if (fb->masks && fc->masks)
    memcpy (fb->masks + (gsize) n * S * S, fc->masks + (gsize) i * S * S, (gsize) S * S);
  if (fb->boxes && fc->boxes)
    copy_boxes (fb->max_boxes, fb->boxes, fb->box_labels, fb->n_boxes, n, fc->boxes,
                fc->box_labels, fc->n_boxes, i);
  fb->labels[n] = vl_dataset_label (ds, split, i);
  fb->items[n] = i;
}

/* The first n rows of fb as a batch. */
static VlBatch
batch_of (const VlFeatBatch *fb, int n)
{
  return (VlBatch) { .images = fb->x, .labels = fb->labels, .values = fb->values,
                     .n_values = fb->values ? fb->n_values : 0, .masks = fb->masks,
                     .boxes = fb->boxes, .box_labels = fb->box_labels, .n_boxes = fb->n_boxes,
                     .max_boxes = fb->max_boxes, .indices = fb->items, .n = n };
}

VlBatch
vl_feat_cache_gather (const VlFeatCache *fc, VlDataset *ds, VlSplit split, const int *items,
                      int n, VlFeatBatch *fb)
{
  int rows = 0;
  for (int j = 0; j < n; j++)
    if (fc->ok[items[j]])
      gather_item (fc, ds, split, items[j], fb, rows++);
  return batch_of (fb, rows);
}

gboolean
vl_feat_cache_next (const VlFeatCache *fc, VlDataset *ds, VlSplit split, int *i, int batch_size,
                    VlFeatBatch *fb, VlBatch *b)
{
  int rows = 0;
  for (; *i < fc->n && rows < batch_size; (*i)++)
    if (fc->ok[*i])
      gather_item (fc, ds, split, *i, fb, rows++);
  *b = batch_of (fb, rows);
  return rows > 0;
}

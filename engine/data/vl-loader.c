/* vl-loader.c: the per-(seed, epoch, index) seeds and the prefetching batch loader. */
#include "vl-dataset-private.h"
#include "vl-rng.h"
#include "vl-sync.h"

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

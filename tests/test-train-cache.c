/* test-train-cache.c: the frozen-feature cache on its own (vl-train-cache.h): a pass's entries
 * equal the model's own forward of each image, the next lock's entries equal the tokens entering
 * its block, a stop ends the pass, and batches gathered from the cache leave out the items that
 * did not decode. A small random model on an in-memory dataset. */
#include "vl-test-util.h"
#include "vl-train-cache.h"

#include <string.h>

enum { SIZE = 16, N_TRAIN = 10, N_VAL = 7, BATCH = 4, K = 3 };

static VlModel *
tiny_model (void)
{
  VlGeometry g = { 0 };
  g.in_chans = 3;
  g.patch = 4;
  g.width = 32;
  g.depth = 2;
  g.heads = 2;
  g.mlp = 64;
  g.grid = SIZE / 4;
  g.class_token = TRUE;
  g.input_size = SIZE;
  g.crop_pct = 1.0;
  for (int i = 0; i < 4; i++)
    g.mean[i] = g.std[i] = 0.5f;
  return vl_model_new_random (&g, K, 7);
}

static VlDataset *
tiny_dataset (void)
{
  const int per = 3 * SIZE * SIZE;
  g_autofree float *tr = g_new (float, (gsize) N_TRAIN * per);
  g_autofree float *va = g_new (float, (gsize) N_VAL * per);
  g_autofree int *ltr = g_new (int, N_TRAIN);
  g_autofree int *lva = g_new (int, N_VAL);
  GRand *rand = g_rand_new_with_seed (5);
  for (int i = 0; i < N_TRAIN * per; i++)
    tr[i] = (float) g_rand_double_range (rand, -1, 1);
  for (int i = 0; i < N_VAL * per; i++)
    va[i] = (float) g_rand_double_range (rand, -1, 1);
  for (int i = 0; i < N_TRAIN; i++)
    ltr[i] = (i * 7) % K;
  for (int i = 0; i < N_VAL; i++)
    lva[i] = (i * 5) % K;
  g_rand_free (rand);
  return vl_dataset_new_memory (K, NULL, 3, SIZE, tr, ltr, N_TRAIN, va, lva, N_VAL);
}

/* One image of the split as the loader gives it (a memory dataset: no preprocessing). */
static float *
image_of (VlDataset *ds, VlSplit split, int i)
{
  float *px = g_new (float, 3 * SIZE * SIZE);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_dataset_load (ds, split, i, NULL, VL_AUGMENT_NONE, 0, px, &error));
  return px;
}

typedef struct {
  int stops_asked, done, stop_at;   /* stop_at: the call of stop() that says TRUE (0: never) */
} Watch;

static gboolean
watch_stop (gpointer data)
{
  Watch *w = data;
  return ++w->stops_asked == w->stop_at;
}

static void
watch_done (gpointer data, int n)
{
  ((Watch *) data)->done += n;
}

/* A pass of the head-only lock over split, in batches of BATCH, into fc; stop_at as in Watch.
 * w receives what the pass reported. */
static VlFeatCacheEnd
build_head_only (VlModel *m, VlDataset *ds, VlSplit split, int stop_at, VlFeatCache *fc,
                 Watch *w, GError **error)
{
  vl_model_lock (m, 1);
  const VlFeatCacheSpec spec = { .numel = vl_model_boundary_numel (m, SIZE, SIZE),
                                 .keep_block = -1, .size = SIZE, .batch_size = BATCH, .seed = 1 };
  *w = (Watch) { .stop_at = stop_at };
  const VlFeatCacheWatch watch = { watch_stop, watch_done, w };
  return vl_feat_cache_build (fc, NULL, m, ds, split, NULL, &spec, &watch, error);
}

/* The boundary of the head-only lock, and the input of the next lock's block, item by item. */
static void
test_build_boundary (void)
{
  g_autoptr(VlModel) m = tiny_model ();
  g_autoptr(VlDataset) ds = tiny_dataset ();
  vl_model_lock (m, 1);
  const int keep = vl_model_block_boundary_for (m, 3);
  g_assert_cmpint (keep, >=, 0);
  const VlFeatCacheSpec spec = { .numel = vl_model_boundary_numel (m, SIZE, SIZE),
                                 .keep_block = keep, .size = SIZE, .batch_size = BATCH,
                                 .seed = 1 };
  g_assert_cmpint (spec.numel, >, 0);
  const int64_t tw = vl_feat_cache_token_numel (m, SIZE);
  g_assert_cmpint (tw, ==, (1 + 16) * 32);
  Watch w = { 0 };
  const VlFeatCacheWatch watch = { watch_stop, watch_done, &w };
  VlFeatCache fc = { 0 }, next = { 0 };
  g_autoptr(GError) error = NULL;
  g_assert_cmpint (vl_feat_cache_build (&fc, &next, m, ds, VL_SPLIT_TRAIN, NULL, &spec, &watch,
                                        &error), ==, VL_FEAT_CACHE_DONE);
  g_assert_no_error (error);
  g_assert_cmpint (w.done, ==, N_TRAIN);
  g_assert_cmpint (w.stops_asked, ==, (N_TRAIN + BATCH - 1) / BATCH);
  g_assert_cmpint (fc.n, ==, N_TRAIN);
  g_assert_cmpint (fc.numel, ==, spec.numel);
  g_assert_cmpint (next.numel, ==, tw);
  g_assert_null (fc.masks);
  g_assert_null (fc.boxes);
  g_autofree float *want = g_new (float, spec.numel);
  g_autofree float *want_next = g_new (float, tw);
  for (int i = 0; i < N_TRAIN; i++)
    {
      g_assert_true (fc.ok[i] && next.ok[i]);
      g_autofree float *px = image_of (ds, VL_SPLIT_TRAIN, i);
      g_assert_true (vl_model_forward_to_boundary_keeping (m, px, 1, SIZE, SIZE, want, keep,
                                                           want_next, &error));
      vl_test_assert_close ("boundary", fc.data + i * spec.numel, want, spec.numel, 1e-5, 1e-5);
      vl_test_assert_close ("next lock", next.data + i * tw, want_next, tw, 1e-5, 1e-5);
    }
  vl_feat_cache_clear (&fc);
  vl_feat_cache_clear (&next);
  g_assert_null (fc.data);
  g_assert_cmpint (fc.n, ==, 0);
}

/* Only a head over the tokens trains: the entries are the final-norm token grid. */
static void
test_build_tokens (void)
{
  g_autoptr(VlModel) m = tiny_model ();
  g_autoptr(VlDataset) ds = tiny_dataset ();
  vl_model_lock (m, 0);
  const int64_t tw = vl_feat_cache_token_numel (m, SIZE);
  const VlFeatCacheSpec spec = { .numel = tw, .tokens = TRUE, .keep_block = -1, .size = SIZE,
                                 .batch_size = BATCH, .seed = 1 };
  Watch w = { 0 };
  const VlFeatCacheWatch watch = { watch_stop, watch_done, &w };
  VlFeatCache fc = { 0 };
  g_autoptr(GError) error = NULL;
  g_assert_cmpint (vl_feat_cache_build (&fc, NULL, m, ds, VL_SPLIT_VAL, NULL, &spec, &watch,
                                        &error), ==, VL_FEAT_CACHE_DONE);
  g_assert_cmpint (w.done, ==, N_VAL);
  for (int i = 0; i < N_VAL; i++)
    {
      g_autofree float *px = image_of (ds, VL_SPLIT_VAL, i);
      g_assert_true (vl_model_forward (m, px, 1, SIZE, SIZE, VL_FORWARD_INFER, &error));
      vl_test_assert_close ("tokens", fc.data + i * tw, vl_model_tokens_final (m), tw, 1e-5,
                            1e-5);
    }
  vl_feat_cache_clear (&fc);
}

/* A stop between batches ends the pass: STOPPED, no error, the batches before it done. */
static void
test_build_stop (void)
{
  g_autoptr(VlModel) m = tiny_model ();
  g_autoptr(VlDataset) ds = tiny_dataset ();
  Watch w;
  VlFeatCache fc = { 0 };
  g_autoptr(GError) error = NULL;
  g_assert_cmpint (build_head_only (m, ds, VL_SPLIT_TRAIN, 2, &fc, &w, &error), ==,
                   VL_FEAT_CACHE_STOPPED);
  g_assert_no_error (error);
  g_assert_cmpint (w.done, ==, BATCH);
  int ok = 0;
  for (int i = 0; i < fc.n; i++)
    ok += fc.ok[i];
  g_assert_cmpint (ok, ==, BATCH);
  vl_feat_cache_clear (&fc);
}

/* Batches from the cache: the decoded items only, in the order asked, with their labels. */
static void
test_gather (void)
{
  g_autoptr(VlModel) m = tiny_model ();
  g_autoptr(VlDataset) ds = tiny_dataset ();
  Watch w;
  VlFeatCache fc = { 0 };
  g_autoptr(GError) error = NULL;
  g_assert_cmpint (build_head_only (m, ds, VL_SPLIT_VAL, 0, &fc, &w, &error), ==,
                   VL_FEAT_CACHE_DONE);
  g_assert_cmpint (w.done, ==, N_VAL);
  fc.ok[2] = fc.ok[5] = 0;   /* as if they had not decoded */
  VlFeatBatch fb = { 0 };
  vl_feat_batch_reserve (&fb, &fc, BATCH, 0, 0);
  const int items[] = { 6, 2, 0, 4 };
  VlBatch b = vl_feat_cache_gather (&fc, ds, VL_SPLIT_VAL, items, 4, &fb);
  const int want[] = { 6, 0, 4 };
  g_assert_cmpint (b.n, ==, 3);
  g_assert_null (b.values);
  g_assert_null (b.masks);
  g_assert_null (b.boxes);
  for (int j = 0; j < 3; j++)
    {
      g_assert_cmpint (b.indices[j], ==, want[j]);
      g_assert_cmpint (b.labels[j], ==, vl_dataset_label (ds, VL_SPLIT_VAL, want[j]));
      g_assert_cmpmem (b.images + j * fc.numel, sizeof (float) * fc.numel,
                       fc.data + want[j] * fc.numel, sizeof (float) * fc.numel);
    }
  const int none[] = { 2, 5 };
  g_assert_cmpint (vl_feat_cache_gather (&fc, ds, VL_SPLIT_VAL, none, 2, &fb).n, ==, 0);
  /* the whole split in index order: 0 1 3 4 | 6 */
  const int order[] = { 0, 1, 3, 4, 6 };
  int i = 0, seen = 0, batches = 0;
  while (vl_feat_cache_next (&fc, ds, VL_SPLIT_VAL, &i, BATCH, &fb, &b))
    {
      g_assert_cmpint (b.n, ==, batches == 0 ? BATCH : 1);
      for (int j = 0; j < b.n; j++)
        g_assert_cmpint (b.indices[j], ==, order[seen + j]);
      seen += b.n;
      batches++;
    }
  g_assert_cmpint (seen, ==, N_VAL - 2);
  g_assert_cmpint (batches, ==, 2);
  g_assert_cmpint (i, ==, N_VAL);
  vl_feat_batch_clear (&fb);
  vl_feat_cache_clear (&fc);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/train-cache/build-boundary", test_build_boundary);
  g_test_add_func ("/train-cache/build-tokens", test_build_tokens);
  g_test_add_func ("/train-cache/build-stop", test_build_stop);
  g_test_add_func ("/train-cache/gather", test_gather);
  return g_test_run ();
}

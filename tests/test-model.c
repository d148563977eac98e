/* test-model.c: the model against PyTorch, on ../shared/fixtures (vit-timm-tiny, vit-tiny-real). */
#include "vl-test-util.h"
#include "vl-model.h"
#include "vl-pool.h"

#include <glib/gstdio.h>
#include <math.h>
#include <string.h>

typedef struct {
  VlModel       *model;
  VlSafetensors *inputs;
  VlSafetensors *expected;
  float         *images;
  int            B, C, H, W;
  int           *targets;
} Fixture;

static void
fixture_load (Fixture *f, const char *name)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vl_test_shared_path ("fixtures", name, NULL);
  g_autofree char *in = vl_test_shared_path ("fixtures", name, "inputs.safetensors", NULL);
  g_autofree char *ex = vl_test_shared_path ("fixtures", name, "expected.safetensors", NULL);
  if (strcmp (name, "vit-tiny-real") == 0)
    {
      g_free (dir);
      dir = vl_test_shared_path ("weights", "vit-tiny-augreg-in1k", NULL);
    }
  f->model = vl_model_load (dir, &error);
  g_assert_no_error (error);
  f->inputs = vl_test_open (in);
  f->expected = vl_test_open (ex);
  f->images = vl_test_read (f->inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (f->inputs, "images");
  f->B = (int) t->shape[0];
  f->C = (int) t->shape[1];
  f->H = (int) t->shape[2];
  f->W = (int) t->shape[3];
  if (vl_safetensors_lookup (f->inputs, "targets"))
    {
      int64_t n;
      g_autofree float *tf = vl_test_read (f->inputs, "targets", &n);
      f->targets = g_new (int, n);
      for (int64_t i = 0; i < n; i++)
        f->targets[i] = (int) tf[i];
    }
}

static void
fixture_tiny_setup (Fixture *f, gconstpointer data)
{
  fixture_load (f, "vit-timm-tiny");
}

static void
fixture_real_setup (Fixture *f, gconstpointer data)
{
  fixture_load (f, "vit-tiny-real");
}

static void
fixture_teardown (Fixture *f, gconstpointer data)
{
  vl_model_free (f->model);
  vl_safetensors_free (f->inputs);
  vl_safetensors_free (f->expected);
  g_free (f->images);
  g_free (f->targets);
}

static void
expect_close (Fixture *f, const char *name, const float *got, double atol, double rtol)
{
  int64_t n;
  g_autofree float *want = vl_test_read (f->expected, name, &n);
  vl_test_assert_close (name, got, want, n, atol, rtol);
}

static void
forward (Fixture *f, VlPoolKind pool, VlForwardFlags flags)
{
  g_autoptr(GError) error = NULL;
  vl_model_set_pool (f->model, pool);
  gboolean ok = vl_model_forward (f->model, f->images, f->B, f->H, f->W, flags, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
}

static void
test_load_tiny (Fixture *f, gconstpointer data)
{
  const VlGeometry *g = vl_model_geometry (f->model);
  g_assert_cmpstr (g->family, ==, "timm");
  g_assert_cmpint (g->depth, ==, 4);
  g_assert_cmpint (g->width, ==, 48);
  g_assert_cmpint (g->heads, ==, 3);
  g_assert_cmpint (g->mlp, ==, 192);
  g_assert_cmpint (g->patch, ==, 8);
  g_assert_cmpint (g->grid, ==, 4);
  g_assert_cmpint (g->n_tokens, ==, 17);
  g_assert_cmpint (vl_model_num_classes (f->model), ==, 5);
  g_assert_cmpint (vl_model_n_tensors (f->model), ==, 56);
  /* groups: stem, 4 blocks, norm, head */
  g_assert_cmpint (vl_model_n_groups (f->model), ==, 7);
  g_assert_cmpstr (vl_model_group_name (f->model, 0), ==, "stem");
  g_assert_cmpstr (vl_model_group_name (f->model, 2), ==, "blocks.1");
  g_assert_cmpstr (vl_model_group_name (f->model, 5), ==, "norm");
  g_assert_cmpstr (vl_model_group_name (f->model, 6), ==, "head");
  g_assert_cmpint (vl_model_group_n_params (f->model, 0), ==, 48 * 3 * 64 + 48 + 48 + 17 * 48);
  int64_t block = 2 * 48 + 144 * 48 + 144 + 48 * 48 + 48 + 2 * 48 + 192 * 48 + 192 + 48 * 192 + 48;
  g_assert_cmpint (vl_model_group_n_params (f->model, 1), ==, block);
  g_assert_cmpint (vl_model_group_n_params (f->model, 5), ==, 96);
  g_assert_cmpint (vl_model_group_n_params (f->model, 6), ==, 5 * 48 + 5);
  int64_t total = 0;
  for (int gr = 0; gr < 7; gr++)
    total += vl_model_group_n_params (f->model, gr);
  g_assert_cmpint (total, ==, vl_model_n_params (f->model));
}

static void
test_lock_semantics (Fixture *f, gconstpointer data)
{
  VlModel *m = f->model;
  int n = vl_model_n_groups (m);
  for (int unlock = 0; unlock <= n + 2; unlock++)
    {
      vl_model_lock (m, unlock);
      int64_t trainable = 0;
      for (int gr = 0; gr < n; gr++)
        {
          gboolean want = gr >= n - unlock;
          g_assert_cmpint (vl_model_group_trainable (m, gr), ==, want);
          if (want)
            trainable += vl_model_group_n_params (m, gr);
        }
      g_assert_cmpint (vl_model_n_trainable (m), ==, trainable);
    }
  vl_model_lock (m, 0);
  vl_model_set_group_trainable (m, 2, TRUE);
  g_assert_true (vl_model_group_trainable (m, 2));
  g_assert_false (vl_model_group_trainable (m, 3));
  g_assert_cmpint (vl_model_n_trainable (m), ==, vl_model_group_n_params (m, 2));
}

static void
test_forward_tiny (Fixture *f, gconstpointer data)
{
  forward (f, VL_POOL_TOKEN, VL_FORWARD_CAPTURE_ATTN);
  expect_close (f, "tokens_final", vl_model_tokens_final (f->model), 1e-4, 0);
  expect_close (f, "features_token", vl_model_features (f->model), 1e-4, 0);
  expect_close (f, "logits_token", vl_model_logits (f->model), 1e-4, 0);
  for (int l = 0; l < 4; l++)
    {
      char name[16];
      g_snprintf (name, sizeof name, "attn.%d", l);
      expect_close (f, name, vl_model_attention (f->model, l), 1e-4, 0);
    }
  g_autoptr(GError) error = NULL;
  float rollout[4 * 16];
  g_assert_true (vl_model_rollout (f->model, rollout, &error));
  g_assert_no_error (error);
  expect_close (f, "rollout", rollout, 1e-4, 0);

  forward (f, VL_POOL_AVG, VL_FORWARD_INFER);
  expect_close (f, "features_avg", vl_model_features (f->model), 1e-4, 0);
  expect_close (f, "logits_avg", vl_model_logits (f->model), 1e-4, 0);
  forward (f, VL_POOL_MAX, VL_FORWARD_INFER);
  expect_close (f, "features_max", vl_model_features (f->model), 1e-4, 0);
  expect_close (f, "logits_max", vl_model_logits (f->model), 1e-4, 0);
}

static void
test_resample_48 (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree float *img48 = vl_test_read (f->inputs, "images48", NULL);
  vl_model_set_pool (f->model, VL_POOL_TOKEN);
  g_assert_true (vl_model_forward (f->model, img48, 2, 48, 48, VL_FORWARD_INFER, &error));
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_n_tokens_last (f->model), ==, 37);
  expect_close (f, "pos_embed_48", vl_model_pos_embed_used (f->model), 1e-5, 0);
  expect_close (f, "logits_token_48", vl_model_logits (f->model), 1e-4, 0);
  /* and back at the native size the native embedding is used */
  forward (f, VL_POOL_TOKEN, VL_FORWARD_INFER);
  expect_close (f, "logits_token", vl_model_logits (f->model), 1e-4, 0);
}

static void
test_loss (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  double loss, loss_ls;
  vl_model_lock (f->model, 0);
  forward (f, VL_POOL_TOKEN, VL_FORWARD_TRAIN);
  g_assert_true (vl_model_backward (f->model, f->targets, 0.0f, &loss, &error));
  g_assert_no_error (error);
  g_assert_true (vl_model_backward (f->model, f->targets, 0.1f, &loss_ls, &error));
  float got[2] = { (float) loss, (float) loss_ls };
  expect_close (f, "loss_token", &got[0], 1e-5, 1e-5);
  expect_close (f, "loss_token_ls0.1", &got[1], 1e-5, 1e-5);
}

/* Compares the gradient of every trainable tensor with grad.<name>; frozen tensors must have
 * none. */
static void
check_grads (Fixture *f, gboolean all_trainable)
{
  VlModel *m = f->model;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      const char *name = vl_model_tensor_name (m, i);
      int group = vl_model_tensor_group (m, i);
      if (!vl_model_group_trainable (m, group))
        {
          g_assert_false (all_trainable);
          continue;
        }
      g_autofree char *key = g_strconcat ("grad.", name, NULL);
      int64_t n;
      g_autofree float *want = vl_test_read (f->expected, key, &n);
      const float *got = vl_model_tensor_grad (m, i);
      g_assert_nonnull (got);
      /* relative 1e-4 of the tensor's scale; elements whose true gradient is ~0 get an
       * absolute floor (the key part of qkv.bias is such a case) */
      double scale = 0;
      for (int64_t k = 0; k < n; k++)
        scale = MAX (scale, fabs (want[k]));
      vl_test_assert_close (key, got, want, n, 1e-4 * scale + 1e-7, 1e-4);
    }
}

static void
test_backward_all (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  vl_model_lock (f->model, 100);
  forward (f, VL_POOL_TOKEN, VL_FORWARD_TRAIN);
  double loss;
  g_assert_true (vl_model_backward (f->model, f->targets, 0.0f, &loss, &error));
  g_assert_no_error (error);
  check_grads (f, TRUE);
}

static void
test_backward_each_lock (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  for (int unlock = 1; unlock <= 7; unlock++)
    {
      vl_model_lock (f->model, unlock);
      forward (f, VL_POOL_TOKEN, VL_FORWARD_TRAIN);
      double loss;
      g_assert_true (vl_model_backward (f->model, f->targets, 0.0f, &loss, &error));
      g_assert_no_error (error);
      check_grads (f, unlock == 7);
    }
  /* a lock that is not a suffix: only blocks.1 and the stem; backward crosses frozen blocks */
  vl_model_lock (f->model, 0);
  vl_model_set_group_trainable (f->model, 0, TRUE);
  vl_model_set_group_trainable (f->model, 2, TRUE);
  forward (f, VL_POOL_TOKEN, VL_FORWARD_TRAIN);
  double loss;
  g_assert_true (vl_model_backward (f->model, f->targets, 0.0f, &loss, &error));
  check_grads (f, FALSE);
}

static void
test_step_unlock3 (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  VlModel *m = f->model;
  int n = vl_model_n_tensors (m);
  /* a copy of everything before the step */
  float **before = g_new0 (float *, n);
  for (int i = 0; i < n; i++)
    {
      int64_t numel;
      float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      before[i] = g_memdup2 (d, sizeof (float) * numel);
    }
  vl_model_lock (m, 3);
  forward (f, VL_POOL_TOKEN, VL_FORWARD_TRAIN);
  double loss;
  g_assert_true (vl_model_backward (m, f->targets, 0.0f, &loss, &error));
  VlAdamW opt = VL_ADAMW_DEFAULTS;
  opt.lr = 1e-3f;
  opt.weight_decay = 0.05f;
  vl_model_adamw_step (m, &opt);

  int checked = 0;
  for (int i = 0; i < n; i++)
    {
      const char *name = vl_model_tensor_name (m, i);
      int64_t numel;
      float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      g_autofree char *key = g_strconcat ("step.unlock3.", name, NULL);
      if (!vl_safetensors_lookup (f->expected, key))
        {
          g_assert_false (vl_model_group_trainable (m, vl_model_tensor_group (m, i)));
          g_assert_cmpmem (d, sizeof (float) * numel, before[i], sizeof (float) * numel);
          continue;
        }
      g_assert_true (vl_model_group_trainable (m, vl_model_tensor_group (m, i)));
      g_autofree char *gkey = g_strconcat ("grad.", name, NULL);
      g_autofree float *want = vl_test_read (f->expected, key, NULL);
      g_autofree float *grad = vl_test_read (f->expected, gkey, NULL);
      /* tolerance lr where the exact gradient is ~0 (README), 1e-4 relative elsewhere */
      for (int64_t k = 0; k < numel; k++)
        {
          double tol = fabs (grad[k]) < 1e-6 ? 1e-3 + 1e-6 : 1e-4 * fabs (want[k]) + 1e-6;
          if (fabs (d[k] - want[k]) > tol)
            g_error ("%s[%" G_GINT64_FORMAT "] = %.9g, expected %.9g", key, k, d[k], want[k]);
        }
      checked++;
    }
  g_assert_cmpint (checked, ==, 12 + 2 + 2);
  for (int i = 0; i < n; i++)
    g_free (before[i]);
  g_free (before);
}

static void
test_locked_unchanged_many_steps (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  VlModel *m = f->model;
  int n = vl_model_n_tensors (m);
  /* stem and blocks.2 unlocked, the rest frozen: five steps */
  vl_model_lock (m, 0);
  vl_model_set_group_trainable (m, 0, TRUE);
  vl_model_set_group_trainable (m, 3, TRUE);
  float **before = g_new0 (float *, n);
  for (int i = 0; i < n; i++)
    {
      int64_t numel;
      float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      before[i] = g_memdup2 (d, sizeof (float) * numel);
    }
  VlAdamW opt = VL_ADAMW_DEFAULTS;
  double first = 0, last = 0;
  for (int s = 0; s < 5; s++)
    {
      forward (f, VL_POOL_TOKEN, VL_FORWARD_TRAIN);
      g_assert_true (vl_model_backward (m, f->targets, 0.0f, &last, &error));
      g_assert_no_error (error);
      if (s == 0)
        first = last;
      vl_model_adamw_step (m, &opt);
    }
  g_assert_cmpfloat (last, <, first);
  for (int i = 0; i < n; i++)
    {
      int64_t numel;
      float *d = vl_model_tensor_data (m, i, NULL, NULL, &numel);
      gboolean trains = vl_model_group_trainable (m, vl_model_tensor_group (m, i));
      gboolean same = memcmp (d, before[i], sizeof (float) * numel) == 0;
      if (trains == same)
        g_error ("%s: %s after 5 steps", vl_model_tensor_name (m, i),
                 trains ? "unchanged though unlocked" : "changed though locked");
      g_free (before[i]);
    }
  g_free (before);
}

/* Forward from cached frozen-prefix activations gives the same logits and gradients. */
static void
test_boundary_cache (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  VlModel *m = f->model;
  int n = vl_model_n_tensors (m);
  vl_model_lock (m, 7);
  g_assert_cmpint (vl_model_boundary_numel (m, f->H, f->W), ==, 0);   /* stem trains */
  g_assert_false (vl_model_forward_to_boundary (m, f->images, f->B, f->H, f->W, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_clear_error (&error);
  for (int unlock = 1; unlock <= 6; unlock++)
    for (int pool = VL_POOL_TOKEN; pool <= VL_POOL_MAX; pool++)
      {
        vl_model_lock (m, unlock);
        vl_model_set_pool (m, pool);
        int64_t numel = vl_model_boundary_numel (m, f->H, f->W);
        g_assert_cmpint (numel, ==, unlock == 1 ? 48 : 17 * 48);
        /* reference: the whole forward */
        forward (f, pool, VL_FORWARD_TRAIN);
        double loss_ref, loss;
        g_assert_true (vl_model_backward (m, f->targets, 0.1f, &loss_ref, &error));
        g_autofree float *logits_ref = g_memdup2 (vl_model_logits (m), sizeof (float) * f->B * 5);
        float **grads = g_new0 (float *, n);
        for (int i = 0; i < n; i++)
          if (vl_model_tensor_grad (m, i) && vl_model_group_trainable (m, vl_model_tensor_group (m, i)))
            {
              int64_t k;
              vl_model_tensor_data (m, i, NULL, NULL, &k);
              grads[i] = g_memdup2 (vl_model_tensor_grad (m, i), sizeof (float) * k);
            }
        /* cached: the prefix once, then from the boundary */
        g_autofree float *cache = g_new (float, numel * f->B);
        g_assert_true (vl_model_forward_to_boundary (m, f->images, f->B, f->H, f->W, cache, &error));
        g_assert_no_error (error);
        g_assert_true (vl_model_forward_from_boundary (m, cache, f->B, f->H, f->W,
                                                       VL_FORWARD_TRAIN, &error));
        g_assert_no_error (error);
        vl_test_assert_close ("logits from the boundary", vl_model_logits (m), logits_ref,
                              f->B * 5, 1e-6, 0);
        g_assert_true (vl_model_backward (m, f->targets, 0.1f, &loss, &error));
        g_assert_cmpfloat_with_epsilon (loss, loss_ref, 1e-6);
        for (int i = 0; i < n; i++)
          if (grads[i])
            {
              int64_t k;
              vl_model_tensor_data (m, i, NULL, NULL, &k);
              vl_test_assert_close (vl_model_tensor_name (m, i), vl_model_tensor_grad (m, i),
                                    grads[i], k, 1e-6, 1e-5);
              g_free (grads[i]);
            }
        g_free (grads);
      }
}

static void
test_real_forward (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const VlGeometry *g = vl_model_geometry (f->model);
  g_assert_cmpint (g->heads, ==, 3);     /* timm's 64-wide-head rule: config has no num_heads */
  g_assert_cmpint (g->depth, ==, 12);
  g_assert_cmpint (g->width, ==, 192);
  g_assert_cmpint (vl_model_n_params (f->model), ==, 5717416);
  forward (f, VL_POOL_TOKEN, VL_FORWARD_CAPTURE_ATTN);
  expect_close (f, "features_token", vl_model_features (f->model), 2e-4, 0);
  expect_close (f, "logits_token", vl_model_logits (f->model), 2e-4, 0);
  expect_close (f, "attn.0", vl_model_attention (f->model, 0), 1e-4, 0);
  expect_close (f, "attn.11", vl_model_attention (f->model, 11), 1e-4, 0);
  float *rollout = g_new (float, 4 * 196);
  g_assert_true (vl_model_rollout (f->model, rollout, &error));
  expect_close (f, "rollout", rollout, 1e-4, 0);
  g_free (rollout);
  forward (f, VL_POOL_AVG, VL_FORWARD_INFER);
  expect_close (f, "features_avg", vl_model_features (f->model), 2e-4, 0);
  expect_close (f, "logits_avg", vl_model_logits (f->model), 2e-4, 0);
}

/* The engine runs a block image by image (whole images per thread) when the batch divides
 * among the threads, and over row panels with attention split by query rows otherwise (batch 1,
 * batch 3 on two threads): both shapes must give the reference's numbers for every image. */
static void
test_real_batch_shapes (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const int K = 1000, T = 197, H = 3, per_image = f->C * f->H * f->W;
  int64_t n;
  g_autofree float *logits = vl_test_read (f->expected, "logits_token", &n);
  g_assert_cmpint (n, ==, (int64_t) f->B * K);
  g_autofree float *att0 = vl_test_read (f->expected, "attn.0", NULL);
  g_autofree float *att11 = vl_test_read (f->expected, "attn.11", NULL);
  vl_model_set_pool (f->model, VL_POOL_TOKEN);
  for (int b = 0; b < f->B; b++)
    {
      g_assert_true (vl_model_forward (f->model, f->images + (int64_t) b * per_image, 1, f->H,
                                       f->W, VL_FORWARD_CAPTURE_ATTN, &error));
      g_assert_no_error (error);
      vl_test_assert_close ("logits, batch 1", vl_model_logits (f->model), logits + b * K, K,
                            2e-4, 0);
      vl_test_assert_close ("attn.0, batch 1", vl_model_attention (f->model, 0),
                            att0 + (int64_t) b * H * T * T, H * T * T, 1e-4, 0);
      vl_test_assert_close ("attn.11, batch 1", vl_model_attention (f->model, 11),
                            att11 + (int64_t) b * H * T * T, H * T * T, 1e-4, 0);
    }
  g_assert_cmpint (f->B, >=, 3);
  g_assert_true (vl_model_forward (f->model, f->images, 3, f->H, f->W, VL_FORWARD_INFER,
                                   &error));
  g_assert_no_error (error);
  vl_test_assert_close ("logits, batch 3", vl_model_logits (f->model), logits, 3 * K, 2e-4, 0);
}

/* The same batch through the same model gives the same gradients to the bit, every time: no sum
 * depends on which thread took which part (the LayerNorms' weight gradients summed per thread
 * once did, so a seed did not repeat a run). Every group trains; three 224 px images make every
 * parallel region split. */
static void
test_real_backward_repeats (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  VlModel *m = f->model;
  const int n = vl_model_n_tensors (m), B = 3;
  int targets[3] = { 1, 7, 999 };
  vl_model_lock (m, 100);
  vl_model_set_pool (m, VL_POOL_TOKEN);
  float **first = g_new0 (float *, n);
  for (int rep = 0; rep < 8; rep++)
    {
      g_assert_true (vl_model_forward (m, f->images, B, f->H, f->W, VL_FORWARD_TRAIN, &error));
      g_assert_no_error (error);
      double loss;
      g_assert_true (vl_model_backward (m, targets, 0.0f, &loss, &error));
      g_assert_no_error (error);
      int differ = 0;
      for (int i = 0; i < n; i++)
        {
          int64_t numel;
          vl_model_tensor_data (m, i, NULL, NULL, &numel);
          const float *grad = vl_model_tensor_grad (m, i);
          g_assert_nonnull (grad);
          if (rep == 0)
            first[i] = g_memdup2 (grad, sizeof (float) * numel);
          else if (memcmp (first[i], grad, sizeof (float) * numel) != 0)
            {
              g_test_message ("repeat %d: %s differs", rep, vl_model_tensor_name (m, i));
              differ++;
            }
        }
      g_assert_cmpint (differ, ==, 0);
    }
  for (int i = 0; i < n; i++)
    g_free (first[i]);
  g_free (first);
}

static void
test_save_roundtrip (Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "saved.safetensors", NULL);
  g_assert_true (vl_model_save (f->model, path, &error));
  g_assert_no_error (error);
  g_autoptr(VlModel) again = vl_model_load (path, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_model_n_tensors (again), ==, vl_model_n_tensors (f->model));
  for (int i = 0; i < vl_model_n_tensors (f->model); i++)
    {
      int64_t n1, n2;
      float *a = vl_model_tensor_data (f->model, i, NULL, NULL, &n1);
      int j = vl_model_find_tensor (again, vl_model_tensor_name (f->model, i));
      g_assert_cmpint (j, >=, 0);
      float *b = vl_model_tensor_data (again, j, NULL, NULL, &n2);
      g_assert_cmpmem (a, n1 * sizeof (float), b, n2 * sizeof (float));
    }
  g_unlink (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  vl_pool_init (2);   /* both ways of running a block (see batch-shapes), whatever the machine */
#define ADD(path, setup, fn) g_test_add (path, Fixture, NULL, setup, fn, fixture_teardown)
  ADD ("/model/tiny/load", fixture_tiny_setup, test_load_tiny);
  ADD ("/model/tiny/lock", fixture_tiny_setup, test_lock_semantics);
  ADD ("/model/tiny/forward", fixture_tiny_setup, test_forward_tiny);
  ADD ("/model/tiny/resample-48", fixture_tiny_setup, test_resample_48);
  ADD ("/model/tiny/loss", fixture_tiny_setup, test_loss);
  ADD ("/model/tiny/backward/all", fixture_tiny_setup, test_backward_all);
  ADD ("/model/tiny/backward/each-lock", fixture_tiny_setup, test_backward_each_lock);
  ADD ("/model/tiny/step/unlock3", fixture_tiny_setup, test_step_unlock3);
  ADD ("/model/tiny/step/locked-unchanged", fixture_tiny_setup, test_locked_unchanged_many_steps);
  ADD ("/model/tiny/boundary-cache", fixture_tiny_setup, test_boundary_cache);
  ADD ("/model/tiny/save-roundtrip", fixture_tiny_setup, test_save_roundtrip);
  ADD ("/model/real/forward", fixture_real_setup, test_real_forward);
  ADD ("/model/real/batch-shapes", fixture_real_setup, test_real_batch_shapes);
  ADD ("/model/real/backward-repeats", fixture_real_setup, test_real_backward_repeats);
  return g_test_run ();
}

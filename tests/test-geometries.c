/* test-geometries.c: the engine against PyTorch fixtures of other geometries (tests/data/geom-*,
 * made by tests/data/gen-fixtures.py): other patch sizes, depths, head counts, grayscale input,
 * LayerNorm eps, resolutions up and down, heads inferred from the width, F16 and BF16 weights. */
#include "vl-test-util.h"
#include "vl-model.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
  VlModel       *model;
  VlSafetensors *inputs, *expected;
  float         *images;
  int            B, H, W;
  int           *targets;
} Geo;

static void
geo_open (Geo *f, const char *name)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vl_test_data_path (name, NULL);
  g_autofree char *in = vl_test_data_path (name, "inputs.safetensors", NULL);
  g_autofree char *ex = vl_test_data_path (name, "expected.safetensors", NULL);
  f->model = vl_model_load (dir, &error);
  g_assert_no_error (error);
  f->inputs = vl_test_open (in);
  f->expected = vl_test_open (ex);
  f->images = vl_test_read (f->inputs, "images", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (f->inputs, "images");
  f->B = (int) t->shape[0];
  f->H = (int) t->shape[2];
  f->W = (int) t->shape[3];
  int64_t n;
  g_autofree float *tf = vl_test_read (f->inputs, "targets", &n);
  f->targets = g_new (int, n);
  for (int64_t i = 0; i < n; i++)
    f->targets[i] = (int) tf[i];
}

static void
geo_close (Geo *f)
{
  vl_model_free (f->model);
  vl_safetensors_free (f->inputs);
  vl_safetensors_free (f->expected);
  g_free (f->images);
  g_free (f->targets);
}

static void
expect (Geo *f, const char *name, const float *got, double atol)
{
  int64_t n;
  g_autofree float *want = vl_test_read (f->expected, name, &n);
  vl_test_assert_close (name, got, want, n, atol, 0);
}

static void
run (Geo *f, const float *images, int B, int H, int W, VlPoolKind pool, VlForwardFlags flags)
{
  g_autoptr(GError) error = NULL;
  vl_model_set_pool (f->model, pool);
  g_assert_true (vl_model_forward (f->model, images, B, H, W, flags, &error));
  g_assert_no_error (error);
}

static void
check_forward (Geo *f)
{
  const VlGeometry *g = vl_model_geometry (f->model);
  run (f, f->images, f->B, f->H, f->W, VL_POOL_TOKEN, VL_FORWARD_CAPTURE_ATTN);
  expect (f, "tokens_final", vl_model_tokens_final (f->model), 1e-4);
  expect (f, "features_token", vl_model_features (f->model), 1e-4);
  expect (f, "logits_token", vl_model_logits (f->model), 1e-4);
  for (int l = 0; l < g->depth; l++)
    {
      char name[16];
      g_snprintf (name, sizeof name, "attn.%d", l);
      expect (f, name, vl_model_attention (f->model, l), 1e-4);
    }
  g_autofree float *rollout = g_new (float, f->B * (g->n_tokens - 1));
  g_assert_true (vl_model_rollout (f->model, rollout, NULL));
  expect (f, "rollout", rollout, 1e-4);
  run (f, f->images, f->B, f->H, f->W, VL_POOL_AVG, VL_FORWARD_INFER);
  expect (f, "features_avg", vl_model_features (f->model), 1e-4);
  expect (f, "logits_avg", vl_model_logits (f->model), 1e-4);
  run (f, f->images, f->B, f->H, f->W, VL_POOL_MAX, VL_FORWARD_INFER);
  expect (f, "features_max", vl_model_features (f->model), 1e-4);
  expect (f, "logits_max", vl_model_logits (f->model), 1e-4);
}

static void
check_grads (Geo *f)
{
  g_autoptr(GError) error = NULL;
  double loss;
  vl_model_lock (f->model, 1000);
  run (f, f->images, f->B, f->H, f->W, VL_POOL_TOKEN, VL_FORWARD_TRAIN);
  g_assert_true (vl_model_backward (f->model, f->targets, 0.0f, &loss, &error));
  g_assert_no_error (error);
  float l = (float) loss;
  expect (f, "loss_token", &l, 1e-5);
  for (int i = 0; i < vl_model_n_tensors (f->model); i++)
    {
      g_autofree char *key = g_strconcat ("grad.", vl_model_tensor_name (f->model, i), NULL);
      int64_t n;
      g_autofree float *want = vl_test_read (f->expected, key, &n);
      double scale = 0;
      for (int64_t k = 0; k < n; k++)
        scale = MAX (scale, fabs (want[k]));
      vl_test_assert_close (key, vl_model_tensor_grad (f->model, i), want, n,
                            1e-4 * scale + 1e-7, 1e-4);
    }
  g_assert_true (vl_model_backward (f->model, f->targets, 0.1f, &loss, &error));
  l = (float) loss;
  expect (f, "loss_token_ls0.1", &l, 1e-5);
}

/* One AdamW step per "step*.unlockN" entry of the expected file's metadata. */
static void
check_steps (Geo *f, const char *name)
{
  GHashTable *meta = vl_safetensors_metadata (f->expected);
  g_assert_nonnull (meta);
  GHashTableIter it;
  gpointer key, value;
  int steps = 0;
  g_hash_table_iter_init (&it, meta);
  while (g_hash_table_iter_next (&it, &key, &value))
    {
      if (!g_str_has_prefix (key, "step"))
        continue;
      double lr = -1, wd = -1, ls = -1;
      int unlock = -1;
      g_auto(GStrv) parts = g_strsplit (value, " ", -1);
      for (int i = 0; parts[i]; i++)
        {
          if (g_str_has_prefix (parts[i], "lr="))
            lr = g_ascii_strtod (parts[i] + 3, NULL);
          else if (g_str_has_prefix (parts[i], "wd="))
            wd = g_ascii_strtod (parts[i] + 3, NULL);
          else if (g_str_has_prefix (parts[i], "ls="))
            ls = g_ascii_strtod (parts[i] + 3, NULL);
          else if (g_str_has_prefix (parts[i], "unlock="))
            unlock = atoi (parts[i] + 7);
        }
      g_assert_true (lr > 0 && wd >= 0 && ls >= 0 && unlock >= 0);

      /* a fresh model for every step */
      g_autoptr(GError) error = NULL;
      g_autofree char *dir = vl_test_data_path (name, NULL);
      g_autoptr(VlModel) m = vl_model_load (dir, &error);
      g_assert_no_error (error);
      vl_model_lock (m, unlock);
      vl_model_set_pool (m, VL_POOL_TOKEN);
      g_assert_true (vl_model_forward (m, f->images, f->B, f->H, f->W, VL_FORWARD_TRAIN, &error));
      double loss;
      g_assert_true (vl_model_backward (m, f->targets, (float) ls, &loss, &error));
      VlAdamW opt = VL_ADAMW_DEFAULTS;
      opt.lr = (float) lr;
      opt.weight_decay = (float) wd;
      vl_model_adamw_step (m, &opt);

      int stepped = 0;
      for (int i = 0; i < vl_model_n_tensors (m); i++)
        {
          const char *tname = vl_model_tensor_name (m, i);
          g_autofree char *k = g_strconcat (key, ".", tname, NULL);
          int64_t n;
          float *got = vl_model_tensor_data (m, i, NULL, NULL, &n);
          if (!vl_safetensors_lookup (f->expected, k))
            {
              /* locked: bit-for-bit the checkpoint's value */
              g_assert_false (vl_model_group_trainable (m, vl_model_tensor_group (m, i)));
              g_autofree float *orig = vl_model_tensor_data (f->model, i, NULL, NULL, NULL) ?
                g_memdup2 (vl_model_tensor_data (f->model, i, NULL, NULL, NULL), n * sizeof (float)) : NULL;
              g_assert_cmpmem (got, n * sizeof (float), orig, n * sizeof (float));
              continue;
            }
          g_autofree float *want = vl_test_read (f->expected, k, NULL);
          /* elements whose step is decided by float rounding (|grad| ~ 0) may move up to lr */
          for (int64_t e = 0; e < n; e++)
            {
              double d = fabs ((double) got[e] - want[e]);
              if (d > 1e-4 * fabs (want[e]) + 1e-6 && d > lr * 1.01)
                g_error ("%s[%" G_GINT64_FORMAT "] = %.9g, expected %.9g", k, e, got[e], want[e]);
            }
          stepped++;
        }
      g_assert_cmpint (stepped, >, 0);
      g_test_message ("%s: %d tensors stepped (%s)", (char *) key, stepped, (char *) value);
      steps++;
    }
  g_assert_cmpint (steps, ==, 4);
}

static void
check_resample (Geo *f, const char *suffix)
{
  g_autofree char *img_name = g_strconcat ("images_", suffix, NULL);
  g_autofree char *pos_name = g_strconcat ("pos_embed_", suffix, NULL);
  g_autofree char *logit_name = g_strconcat ("logits_token_", suffix, NULL);
  g_autofree float *img = vl_test_read (f->inputs, img_name, NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (f->inputs, img_name);
  run (f, img, (int) t->shape[0], (int) t->shape[2], (int) t->shape[3], VL_POOL_TOKEN,
       VL_FORWARD_INFER);
  expect (f, pos_name, vl_model_pos_embed_used (f->model), 1e-5);
  expect (f, logit_name, vl_model_logits (f->model), 1e-4);
}

static void
test_p4 (void)
{
  Geo f = { 0 };
  geo_open (&f, "geom-p4-d2-h4");
  const VlGeometry *g = vl_model_geometry (f.model);
  g_assert_cmpint (g->patch, ==, 4);
  g_assert_cmpint (g->heads, ==, 4);
  g_assert_cmpint (g->mlp, ==, 64);
  g_assert_cmpint (vl_model_n_groups (f.model), ==, 5);
  check_forward (&f);
  check_grads (&f);
  check_steps (&f, "geom-p4-d2-h4");
  geo_close (&f);
}

static void
test_gray (void)
{
  Geo f = { 0 };
  geo_open (&f, "geom-p7-d3-h2-gray");
  const VlGeometry *g = vl_model_geometry (f.model);
  g_assert_cmpint (g->in_chans, ==, 1);
  g_assert_cmpint (g->patch, ==, 7);
  g_assert_cmpfloat_with_epsilon (g->eps, 1e-5, 1e-9);
  check_forward (&f);
  check_grads (&f);
  check_resample (&f, "alt");     /* 3x3 -> 4x4 grid */
  check_resample (&f, "small");   /* 3x3 -> 2x2 grid */
  geo_close (&f);
}

static void
test_noheads (void)
{
  Geo f = { 0 };
  geo_open (&f, "geom-noheads");
  g_assert_cmpint (vl_model_geometry (f.model)->heads, ==, 2);   /* 128 / 64 */
  check_forward (&f);
  check_grads (&f);
  geo_close (&f);
}

static void
test_half (gconstpointer name)
{
  Geo f = { 0 };
  geo_open (&f, name);
  check_forward (&f);
  geo_close (&f);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/geometries/p4-d2-h4", test_p4);
  g_test_add_func ("/geometries/p7-d3-h2-gray", test_gray);
  g_test_add_func ("/geometries/heads-from-width", test_noheads);
  g_test_add_data_func ("/geometries/f16", "geom-f16", test_half);
  g_test_add_data_func ("/geometries/bf16", "geom-bf16", test_half);
  return g_test_run ();
}

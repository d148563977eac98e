/* test-tasks.c: the task seam — losses as kernels (against PyTorch, tests/data/gen-tasks.py, and
 * by finite differences), the model's backward from each entry point (against the full backward
 * and by finite differences), regression targets in datasets (targets.csv folders and their
 * errors, fashion-mnist-rotate), regression metrics, and regression through the trainer and
 * vitlab-cli (train, eval, predict). */
#include "vl-augment.h"
#include "vl-loss.h"
#include "vl-rng.h"
#include "vl-task.h"
#include "vl-test-util.h"
#include "vl-trainer.h"

#include <glib/gstdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#define STB_IMAGE_WRITE_IMPLEMENTATION
#include <stb/stb_image_write.h>

/* ------------------------------------------------------------------ losses */

static VlSafetensors *
losses_fixture (void)
{
  g_autofree char *path = vl_test_data_path ("tasks-losses.safetensors", NULL);
  return vl_test_open (path);
}

static void
test_loss_cross_entropy (void)
{
  g_autoptr(VlSafetensors) st = losses_fixture ();
  int64_t n, nt;
  g_autofree float *z = vl_test_read (st, "ce_logits", &n);
  g_autofree float *tf = vl_test_read (st, "ce_targets", &nt);
  const int B = (int) nt, K = (int) (n / nt);
  g_autofree int *t = g_new (int, B);
  for (int b = 0; b < B; b++)
    t[b] = (int) tf[b];
  for (int i = 0; i < 2; i++)
    {
      g_autofree char *lk = g_strdup_printf ("ce_loss_ls%d", i);
      g_autofree char *gk = g_strdup_printf ("ce_grad_ls%d", i);
      g_autofree float *want_loss = vl_test_read (st, lk, NULL);
      g_autofree float *want_grad = vl_test_read (st, gk, NULL);
      g_autofree float *dz = g_new (float, n);
      double loss = vl_loss_cross_entropy (dz, z, t, B, K, i ? 0.1f : 0.0f, -100);
      g_assert_cmpfloat_with_epsilon (loss, want_loss[0], 1e-6 * fabs (want_loss[0]));
      vl_test_assert_close (gk, dz, want_grad, n, 1e-7, 1e-5);
      /* finite differences of the loss itself, on every logit */
      for (int64_t k = 0; k < n; k++)
        {
          const float h = 1e-2f, x0 = z[k];
          z[k] = x0 + h;
          double lp = vl_loss_cross_entropy (NULL, z, t, B, K, i ? 0.1f : 0.0f, -100);
          z[k] = x0 - h;
          double lm = vl_loss_cross_entropy (NULL, z, t, B, K, i ? 0.1f : 0.0f, -100);
          z[k] = x0;
          double fd = (lp - lm) / (2.0 * ((double) (x0 + h) - (double) x0));
          g_assert_cmpfloat (fabs (fd - dz[k]), <=, 1e-3 * fabs (dz[k]) + 1e-5);
        }
    }
  /* every row ignored: no loss, no gradient (PyTorch: NaN) */
  int all[2] = { -100, -100 };
  float dz2[10];
  g_assert_cmpfloat (vl_loss_cross_entropy (dz2, z, all, 2, K, 0.1f, -100), ==, 0.0);
  for (int k = 0; k < 2 * K; k++)
    g_assert_cmpfloat (dz2[k], ==, 0.0f);
}

static void
test_loss_regression (void)
{
  g_autoptr(VlSafetensors) st = losses_fixture ();
  int64_t n;
  g_autofree float *p = vl_test_read (st, "reg_pred", &n);
  g_autofree float *y = vl_test_read (st, "reg_target", NULL);
  const char *keys[] = { "mse", "sl1", "sl1b" };
  const float betas[] = { 0, 1.0f, 0.5f };
  for (int c = 0; c < 3; c++)
    {
      g_autofree char *lk = g_strdup_printf ("%s_loss", keys[c]);
      g_autofree char *gk = g_strdup_printf ("%s_grad", keys[c]);
      g_autofree float *want_loss = vl_test_read (st, lk, NULL);
      g_autofree float *want_grad = vl_test_read (st, gk, NULL);
      g_autofree float *d = g_new (float, n);
      double loss = c == 0 ? vl_loss_mse (d, p, y, n) : vl_loss_smooth_l1 (d, p, y, n, betas[c]);
      g_assert_cmpfloat_with_epsilon (loss, want_loss[0], 1e-6 * fabs (want_loss[0]));
      vl_test_assert_close (gk, d, want_grad, n, 1e-7, 1e-5);
      for (int64_t k = 0; k < n; k++)
        {
          const float h = 1e-3f, x0 = p[k];
          p[k] = x0 + h;
          double lp = c == 0 ? vl_loss_mse (NULL, p, y, n) : vl_loss_smooth_l1 (NULL, p, y, n,
                                                                                 betas[c]);
          p[k] = x0 - h;
          double lm = c == 0 ? vl_loss_mse (NULL, p, y, n) : vl_loss_smooth_l1 (NULL, p, y, n,
                                                                                 betas[c]);
          p[k] = x0;
          double fd = (lp - lm) / (2.0 * ((double) (x0 + h) - (double) x0));
          g_assert_cmpfloat (fabs (fd - d[k]), <=, 2e-3 * fabs (d[k]) + 1e-5);
        }
    }
}

/* ------------------------------------------------------------------ backward entry points */

/* A small random ViT whose parameters carry signal on every path (timm's initialisation leaves
 * attention uniform and the norms equal). */
static VlModel *
small_model (gboolean fc_norm, VlPoolKind pool, uint64_t seed)
{
  g_autoptr(GError) error = NULL;
  VlGeometry geo;
  g_assert_true (vl_geometry_parse ("img=8,patch=4,chans=3,width=16,depth=2,heads=2,mlp=32",
                                    &geo, &error));
  geo.fc_norm = fc_norm;
  VlModel *m = vl_model_new_random (&geo, 4, seed);
  vl_model_set_pool (m, pool);
  VlRng r;
  vl_rng_seed (&r, seed + 1);
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int ndim;
      int64_t shape[4], n;
      float *x = vl_model_tensor_data (m, i, &ndim, shape, &n);
      double std = ndim == 1 ? 0.3 : 1.0 / sqrt ((double) (n / shape[0]));
      for (int64_t k = 0; k < n; k++)
        x[k] += (float) (std * vl_rng_normal (&r));
    }
  vl_model_lock (m, vl_model_n_groups (m));
  return m;
}

static float *
random_floats (int64_t n, uint64_t seed)
{
  VlRng r;
  vl_rng_seed (&r, seed);
  float *x = g_new (float, n);
  for (int64_t i = 0; i < n; i++)
    x[i] = (float) vl_rng_normal (&r);
  return x;
}

enum { BB = 3 };

/* Every trainable tensor's gradient after the last backward, concatenated (NULL entries: 0). */
static float *
all_grads (VlModel *m, int64_t *total, gboolean body_only)
{
  int64_t n_all = 0;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t n;
      vl_model_tensor_data (m, i, NULL, NULL, &n);
      n_all += n;
    }
  float *g = g_new0 (float, n_all);
  int64_t off = 0;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t n;
      vl_model_tensor_data (m, i, NULL, NULL, &n);
      const float *gr = vl_model_tensor_grad (m, i);
      gboolean head = g_str_has_prefix (vl_model_tensor_name (m, i), "head");
      if (gr && !(body_only && head))
        memcpy (g + off, gr, sizeof (float) * n);
      off += n;
    }
  *total = n_all;
  return g;
}

/* The backward from the features (or the logits) given the gradient the head's backward hands
 * down equals the full backward's, on every backbone tensor; the head gets nothing. */
static void
test_backward_from_features (gconstpointer data)
{
  const gboolean fc_norm = GPOINTER_TO_INT (data) & 1;
  const VlPoolKind pool = (GPOINTER_TO_INT (data) >> 1) ? VL_POOL_AVG : VL_POOL_TOKEN;
  g_autoptr(VlModel) m = small_model (fc_norm, pool, 11);
  g_autoptr(GError) error = NULL;
  const int W = vl_model_geometry (m)->width, K = vl_model_num_classes (m);
  g_autofree float *img = random_floats ((int64_t) BB * 3 * 8 * 8, 5);
  int targets[BB] = { 0, 3, 1 };
  g_assert_true (vl_model_forward (m, img, BB, 8, 8, VL_FORWARD_TRAIN, &error));
  double loss;
  g_assert_true (vl_model_backward (m, targets, 0.1f, &loss, &error));
  int64_t n;
  g_autofree float *want = all_grads (m, &n, TRUE);
  g_autofree float *want_all = all_grads (m, &n, FALSE);

  /* the same from the logits: bit for bit */
  float dlogits[BB * 4];
  vl_loss_cross_entropy (dlogits, vl_model_logits (m), targets, BB, K, 0.1f, VL_NO_IGNORE);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_LOGITS, dlogits, &error));
  g_autofree float *got_logits = all_grads (m, &n, FALSE);
  g_assert_cmpmem (got_logits, n * sizeof (float), want_all, n * sizeof (float));

  /* from the features: d features = dlogits · W_head */
  const float *hw = vl_model_tensor_data (m, vl_model_find_tensor (m, "head.weight"), NULL, NULL,
                                          NULL);
  g_autofree float *dfeat = g_new0 (float, BB * W);
  for (int b = 0; b < BB; b++)
    for (int k = 0; k < K; k++)
      for (int c = 0; c < W; c++)
        dfeat[b * W + c] += dlogits[b * K + k] * hw[k * W + c];
  g_assert_true (vl_model_backward_from (m, VL_GRAD_FEATURES, dfeat, &error));
  g_assert_no_error (error);
  g_autofree float *got = all_grads (m, &n, FALSE);
  vl_test_assert_close ("backbone gradients from the features", got, want, n, 1e-6, 1e-4);
  const float *gh = vl_model_tensor_grad (m, vl_model_find_tensor (m, "head.weight"));
  for (int k = 0; k < K * W; k++)
    g_assert_cmpfloat (gh[k], ==, 0.0f);
}

/* L = Σ tokens_final ⊙ R: the gradients from VL_GRAD_TOKENS against central differences, along
 * a random unit direction of each tensor (tolerances as test-kernels' model checks). */
static double
tokens_objective (VlModel *m, const float *img, const float *R)
{
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_model_forward (m, img, BB, 8, 8, VL_FORWARD_TRAIN, &error));
  const float *tok = vl_model_tokens_final (m);
  const int64_t n = (int64_t) BB * vl_model_n_tokens_last (m) * vl_model_geometry (m)->width;
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += (double) tok[i] * R[i];
  return s;
}

static void
test_backward_from_tokens (gconstpointer data)
{
  const gboolean fc_norm = GPOINTER_TO_INT (data);
  g_autoptr(VlModel) m = small_model (fc_norm, VL_POOL_TOKEN, 23);
  g_autoptr(GError) error = NULL;
  const VlGeometry *g = vl_model_geometry (m);
  g_autofree float *img = random_floats ((int64_t) BB * 3 * 8 * 8, 7);
  const int64_t nt = (int64_t) BB * g->n_tokens * g->width;
  g_autofree float *R = random_floats (nt, 9);
  tokens_objective (m, img, R);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_TOKENS, R, &error));
  g_assert_no_error (error);
  int checked = 0;
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      const char *name = vl_model_tensor_name (m, i);
      if (g_str_has_prefix (name, "head"))
        {
          /* above the tokens: untouched */
          const float *gr = vl_model_tensor_grad (m, i);
          int64_t n;
          vl_model_tensor_data (m, i, NULL, NULL, &n);
          for (int64_t k = 0; gr && k < n; k++)
            g_assert_cmpfloat (gr[k], ==, 0.0f);
          continue;
        }
      if (fc_norm && g_str_has_prefix (name, "fc_norm"))
        continue;   /* after the pooling, not on the token grid */
      int64_t n;
      float *x = vl_model_tensor_data (m, i, NULL, NULL, &n);
      g_autofree float *gcopy = g_memdup2 (vl_model_tensor_grad (m, i), sizeof (float) * n);
      g_autofree float *dir = random_floats (n, 100 + i);
      double norm = 0, an = 0;
      for (int64_t k = 0; k < n; k++)
        norm += (double) dir[k] * dir[k];
      norm = sqrt (norm);
      for (int64_t k = 0; k < n; k++)
        {
          dir[k] /= (float) norm;
          an += (double) gcopy[k] * dir[k];
        }
      const double h = 1e-2;
      g_autofree float *x0 = g_memdup2 (x, sizeof (float) * n);
      for (int64_t k = 0; k < n; k++)
        x[k] = (float) (x0[k] + h * dir[k]);
      double lp = tokens_objective (m, img, R);
      for (int64_t k = 0; k < n; k++)
        x[k] = (float) (x0[k] - h * dir[k]);
      double lm = tokens_objective (m, img, R);
      memcpy (x, x0, sizeof (float) * n);
      double fd = (lp - lm) / (2 * h);
      double tol = 1e-2 * MAX (fabs (fd), fabs (an)) + 1e-3;
      if (!(fabs (fd - an) <= tol))
        g_test_fail_printf ("%s: finite differences %.7g, analytic %.7g", name, fd, an);
      checked++;
    }
  g_assert_cmpint (checked, >=, 12);
}

static void
test_backward_from_errors (void)
{
  g_autoptr(VlModel) m = small_model (FALSE, VL_POOL_TOKEN, 3);
  g_autoptr(GError) error = NULL;
  g_autofree float *img = random_floats ((int64_t) BB * 3 * 8 * 8, 5);
  float d[BB * 16 * 16] = { 0 };
  /* no training forward yet */
  g_assert_false (vl_model_backward_from (m, VL_GRAD_FEATURES, d, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_true (vl_model_forward (m, img, BB, 8, 8, VL_FORWARD_TRAIN, &error));
  /* no projection: no embedding */
  g_assert_false (vl_model_backward_from (m, VL_GRAD_EMBEDDING, d, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_clear_error (&error);
  /* the lock changed since the forward */
  vl_model_lock (m, 1);
  g_assert_false (vl_model_backward_from (m, VL_GRAD_TOKENS, d, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
}

/* ------------------------------------------------------------------ regression metrics */

static void
test_regress_metrics (void)
{
  /* two targets, four images; predictions given standardised by mean (1, 10), std (2, 5) */
  const float mean[2] = { 1, 10 }, std[2] = { 2, 5 };
  VlTaskSpec t = { .kind = VL_TASK_REGRESS, .n_outputs = 2, .mean = mean, .std = std };
  const float truth[8] = { 0, 10, 2, 20, 4, 0, -2, 10 };
  const float pred[8] = { 1, 12, 1, 18, 5, 3, -1, 9 };   /* in units */
  float out[8];
  for (int b = 0; b < 4; b++)
    for (int j = 0; j < 2; j++)
      out[b * 2 + j] = (pred[b * 2 + j] - mean[j]) / std[j];
  VlRegressResult r;
  vl_regress_result_begin (&r, 2);
  vl_regress_result_add (&r, &t, out, truth, NULL, 3);
  vl_regress_result_add (&r, &t, out + 6, truth + 6, NULL, 1);
  vl_regress_result_end (&r);
  g_assert_cmpint (r.n, ==, 4);
  /* target 0: errors 1, -1, 1, 1 -> MAE 1, RMSE 1; truth mean 1, SS_tot 1+1+9+9 = 20 */
  g_assert_cmpfloat_with_epsilon (r.mae[0], 1.0, 1e-6);
  g_assert_cmpfloat_with_epsilon (r.rmse[0], 1.0, 1e-6);
  g_assert_cmpfloat_with_epsilon (r.r2[0], 1.0 - 4.0 / 20.0, 1e-6);
  /* target 1: errors 2, -2, 3, -1 -> MAE 2, RMSE sqrt (18 / 4); mean 10, SS_tot 0+100+100+0 */
  g_assert_cmpfloat_with_epsilon (r.mae[1], 2.0, 1e-6);
  g_assert_cmpfloat_with_epsilon (r.rmse[1], sqrt (4.5), 1e-6);
  g_assert_cmpfloat_with_epsilon (r.r2[1], 1.0 - 18.0 / 200.0, 1e-6);
  g_assert_cmpfloat_with_epsilon (r.mae_mean, 1.5, 1e-6);
  g_assert_cmpfloat_with_epsilon (r.pred[3], 18.0, 1e-5);
  g_assert_cmpfloat (r.truth[6], ==, -2.0f);
  /* the loss: MSE on the standardised values */
  double want = 0;
  for (int k = 0; k < 8; k++)
    {
      double z = (truth[k] - mean[k % 2]) / std[k % 2];
      want += (out[k] - z) * (out[k] - z);
    }
  g_assert_cmpfloat_with_epsilon (r.loss, want / 8, 1e-6);
  VlRegressResult c;
  vl_regress_result_copy (&c, &r);
  vl_regress_result_clear (&r);
  g_assert_cmpfloat_with_epsilon (c.r2[1], 0.91, 1e-6);
  vl_regress_result_clear (&c);
}

/* ------------------------------------------------------------------ data */

/* A folder with n images (8 x 8 PNGs of a grey level) and a targets.csv: the CSV's rows are
 * given as text after the header "file,angle,size". */
static void
write_png (const char *path, int level)
{
  uint8_t px[8 * 8 * 3];
  memset (px, level, sizeof px);
  g_assert_true (stbi_write_png (path, 8, 8, 3, px, 8 * 3));
}

static char *
targets_folder (const char *csv, int n_images)
{
  char *dir = vl_test_tmpdir ();
  for (int i = 0; i < n_images; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s/img%02d.png", dir, i);
      write_png (name, 10 * i);
    }
  g_autofree char *path = g_build_filename (dir, "targets.csv", NULL);
  g_assert_true (g_file_set_contents (path, csv, -1, NULL));
  return dir;
}

static void
test_targets_csv (void)
{
  g_autoptr(GError) error = NULL;
  GString *csv = g_string_new ("file,angle,size\r\n");
  for (int i = 0; i < 10; i++)
    g_string_append_printf (csv, "img%02d.png,%.1f,\"%d\"\r\n", i, i - 4.5, 100 + i);
  g_autofree char *dir = targets_folder (csv->str, 10);
  g_string_free (csv, TRUE);
  VlDatasetOptions opt = { .val_fraction = 0.3, .seed = 4 };
  g_autoptr(VlDataset) ds = vl_dataset_open (dir, &opt, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_dataset_n_values (ds), ==, 2);
  g_assert_cmpstr (vl_dataset_value_name (ds, 0), ==, "angle");
  g_assert_cmpstr (vl_dataset_value_name (ds, 1), ==, "size");
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_TRAIN), ==, 7);
  g_assert_cmpint (vl_dataset_n_items (ds, VL_SPLIT_VAL), ==, 3);
  for (int s = 0; s < 2; s++)
    for (int i = 0; i < vl_dataset_n_items (ds, (VlSplit) s); i++)
      {
        g_autofree char *base = g_path_get_basename (vl_dataset_item_name (ds, (VlSplit) s, i));
        int k = atoi (base + 3);   /* imgNN.png */
        const float *v = vl_dataset_values (ds, (VlSplit) s, i);
        g_assert_cmpfloat (v[0], ==, k - 5 + 0.5f);
        g_assert_cmpfloat (v[1], ==, 100 + k);
      }
  /* the loader carries the values beside the pixels */
  VlPreprocess pp = { .channels = 3, .size = 8, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
                      .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
  g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_TRAIN, &pp, VL_AUGMENT_NONE, 4, TRUE, 1);
  VlBatch b;
  int seen = 0;
  while (vl_loader_next (l, &b))
    {
      g_assert_cmpint (b.n_values, ==, 2);
      for (int j = 0; j < b.n; j++)
        {
          const float *v = vl_dataset_values (ds, VL_SPLIT_TRAIN, b.indices[j]);
          g_assert_cmpmem (b.values + 2 * j, 2 * sizeof (float), v, 2 * sizeof (float));
        }
      seen += b.n;
    }
  g_assert_cmpint (seen, ==, 7);
  /* the training split's statistics */
  float mu[2], sd[2];
  vl_task_target_stats (ds, mu, sd);
  double s = 0;
  for (int i = 0; i < 7; i++)
    s += vl_dataset_values (ds, VL_SPLIT_TRAIN, i)[1];
  g_assert_cmpfloat_with_epsilon (mu[1], s / 7, 1e-4);
  g_assert_cmpfloat (sd[0], >, 0.5f);
}

static void
expect_csv_error (const char *csv, int n_images, const char *fragment)
{
  g_autofree char *dir = targets_folder (csv, n_images);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlDataset) ds = vl_dataset_open (dir, NULL, &error);
  g_assert_null (ds);
  g_assert_nonnull (error);
  g_test_message ("%s", error->message);
  if (strstr (error->message, fragment) == NULL || strstr (error->message, "targets.csv") == NULL)
    g_test_fail_printf ("expected \"%s\" and the CSV's name in: %s", fragment, error->message);
}

static void
test_targets_csv_errors (void)
{
  expect_csv_error ("file,angle\nimg00.png,1\nimg01.png,abc\n", 2, "targets.csv:3: angle: 'abc'");
  expect_csv_error ("file,angle\nimg00.png,1\nmissing.png,2\n", 1, "targets.csv:3");
  expect_csv_error ("file,angle\nimg00.png,1\nimg01.png\n", 2, "targets.csv:3: 1 field");
  expect_csv_error ("file,angle\nimg00.png,\n", 1, "is not a number");
  expect_csv_error ("file,angle\nimg00.png,nan\n", 1, "is not a number");
  expect_csv_error ("file\nimg00.png\n", 1, "at least one target");
  expect_csv_error ("", 1, "empty");
  expect_csv_error ("file,angle\n", 1, "no usable image");
  /* an image that is not one: skipped and listed, the rest opens */
  g_autofree char *dir = targets_folder ("file,angle\nimg00.png,1\nimg01.png,2\nbad.png,3\n", 2);
  g_autofree char *bad = g_build_filename (dir, "bad.png", NULL);
  g_assert_true (g_file_set_contents (bad, "not a png", -1, NULL));
  g_autoptr(GError) error = NULL;
  VlDatasetOptions opt = { .val_fraction = 0.5, .seed = 0 };
  g_autoptr(VlDataset) ds = vl_dataset_open (dir, &opt, &error);
  g_assert_no_error (error);
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  g_assert_cmpuint (skipped->len, ==, 1);
  g_assert_true (g_str_has_suffix (((VlSkipped *) g_ptr_array_index (skipped, 0))->path,
                                   "bad.png"));
}

static void
test_fashion_mnist_rotate (void)
{
  g_autoptr(GError) error = NULL;
  VlDatasetOptions opt = { .val_fraction = 0.2, .seed = 3 };
  const char *spec = "fashion-mnist-rotate:classes=0-1,per-class=20,val-per-class=10,max-angle=30";
  g_autoptr(VlDataset) a = vl_dataset_open (spec, &opt, &error);
  g_assert_no_error (error);
  g_autoptr(VlDataset) b = vl_dataset_open (spec, &opt, &error);
  g_autoptr(VlDataset) plain = vl_dataset_open ("fashion-mnist:classes=0-1,per-class=20",
                                                &opt, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_dataset_n_values (a), ==, 1);
  g_assert_cmpint (vl_dataset_n_items (a, VL_SPLIT_TRAIN), ==, 40);
  g_assert_cmpint (vl_dataset_n_items (a, VL_SPLIT_VAL), ==, 20);
  double lo = 1e9, hi = -1e9;
  for (int i = 0; i < 40; i++)
    {
      float v = vl_dataset_values (a, VL_SPLIT_TRAIN, i)[0];
      g_assert_cmpfloat (v, ==, vl_dataset_values (b, VL_SPLIT_TRAIN, i)[0]);
      lo = MIN (lo, v);
      hi = MAX (hi, v);
    }
  g_assert_cmpfloat (lo, >=, -30.0);
  g_assert_cmpfloat (hi, <=, 30.0);
  g_assert_cmpfloat (hi - lo, >, 20.0);   /* spread, not constant */
  /* the pixels are the turned garment: different from the plain image by about the angle */
  VlPreprocess pp = { .channels = 1, .size = 28, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
                      .mean = { 0 }, .std = { 1 } };
  float x[28 * 28], y[28 * 28];
  for (int i = 0; i < 5; i++)
    {
      g_assert_true (vl_dataset_load (a, VL_SPLIT_TRAIN, i, &pp, VL_AUGMENT_NONE, 0, x, &error));
      g_assert_true (vl_dataset_load (plain, VL_SPLIT_TRAIN, i, &pp, VL_AUGMENT_NONE, 0, y,
                                      &error));
      double diff = 0, mass_x = 0, mass_y = 0;
      for (int k = 0; k < 28 * 28; k++)
        {
          diff += fabs (x[k] - y[k]);
          mass_x += x[k];
          mass_y += y[k];
        }
      float angle = vl_dataset_values (a, VL_SPLIT_TRAIN, i)[0];
      if (fabs (angle) > 5)
        g_assert_cmpfloat (diff, >, 5.0);
      /* a turn keeps most of the garment on the canvas */
      g_assert_cmpfloat (mass_x, >, 0.6 * mass_y);
    }
  /* another seed, other angles */
  VlDatasetOptions opt2 = { .val_fraction = 0.2, .seed = 4 };
  g_autoptr(VlDataset) c = vl_dataset_open (spec, &opt2, &error);
  g_assert_cmpfloat (vl_dataset_values (c, VL_SPLIT_TRAIN, 0)[0], !=,
                     vl_dataset_values (a, VL_SPLIT_TRAIN, 0)[0]);
  g_assert_null (vl_dataset_open ("fashion-mnist-rotate:max-angle=0", &opt, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
}


/* ------------------------------------------------------------------ joint augmentation */

/* A 120 x 90 image, black but for a bright rectangle [30, 80) x [20, 60): its mask and its box
 * follow the pixels through every augmentation. */
static void
test_augment_joint (void)
{
  const int W = 120, H = 90;
  g_autoptr(VlImage) img = vl_image_new (W, H, 3);
  g_autofree uint8_t *mask = g_new0 (uint8_t, W * H);
  memset (img->pixels, 0, (gsize) W * H * 3);
  for (int y = 20; y < 60; y++)
    for (int x = 30; x < 80; x++)
      {
        memset (img->pixels + ((gsize) y * W + x) * 3, 255, 3);
        mask[y * W + x] = 1;
      }
  const float box[4] = { 30, 20, 80, 60 };
  const int label = 7;
  VlPreprocess pp = { .channels = 3, .size = 48, .crop_pct = 0.875,
                      .interp = VL_INTERP_BICUBIC, .mean = { 0, 0, 0 }, .std = { 1, 1, 1 } };
  const int S = pp.size;
  g_autofree float *px = g_new (float, 3 * S * S);
  g_autofree uint8_t *m = g_new (uint8_t, S * S);
  int flips = 0, dropped = 0;
  for (int t = 0; t < 40; t++)
    {
      VlAugment aug = t == 0 ? VL_AUGMENT_NONE : VL_AUGMENT_LIGHT;
      VlAugmentParams p;
      vl_augment_draw (aug, 1000 + t, W, H, &p);
      vl_augment_apply (img, &pp, &p, px);
      /* the same seed through the one-call path gives the same pixels */
      g_autofree float *again = g_new (float, 3 * S * S);
      vl_augment_image (img, &pp, aug, 1000 + t, again);
      g_assert_cmpmem (px, 3 * S * S * sizeof (float), again, 3 * S * S * sizeof (float));
      vl_augment_apply_mask (mask, &p, &pp, 255, m);
      float out[4];
      int out_label = -1;
      int kept = vl_augment_apply_boxes (box, &label, 1, &p, &pp, 1.0f, out, &out_label);
      flips += p.flip;
      /* pixels that are clearly bright or dark agree with the mask */
      int bright = 0, agree = 0;
      double bx0 = S, by0 = S, bx1 = 0, by1 = 0;
      for (int y = 0; y < S; y++)
        for (int x = 0; x < S; x++)
          {
            float v = px[(gsize) y * S + x];
            if (v > 0.9f || v < 0.1f)
              {
                agree += (v > 0.9f) == (m[y * S + x] == 1);
                bright += v > 0.9f;
              }
            if (v > 0.9f)
              {
                bx0 = MIN (bx0, x);
                by0 = MIN (by0, y);
                bx1 = MAX (bx1, x + 1);
                by1 = MAX (by1, y + 1);
              }
          }
      int clear = 0;
      for (int k = 0; k < S * S; k++)
        clear += px[k] > 0.9f || px[k] < 0.1f;
      g_assert_cmpfloat ((double) agree / MAX (clear, 1), >, 0.99);
      if (bright == 0)
        {
          /* the crop missed the rectangle: so does the box */
          g_assert_cmpint (kept, ==, 0);
          dropped++;
          continue;
        }
      g_assert_cmpint (kept, ==, 1);
      g_assert_cmpint (out_label, ==, 7);
      /* the box is the bright pixels' bounding box, to a pixel and a half */
      g_assert_cmpfloat (fabs (out[0] - bx0), <=, 1.5);
      g_assert_cmpfloat (fabs (out[1] - by0), <=, 1.5);
      g_assert_cmpfloat (fabs (out[2] - bx1), <=, 1.5);
      g_assert_cmpfloat (fabs (out[3] - by1), <=, 1.5);
    }
  g_assert_cmpint (flips, >, 5);
  g_assert_cmpint (flips, <, 35);
  g_test_message ("%d flips, %d crops without the rectangle", flips, dropped);
}

/* The angle of fashion-mnist-rotate changes sign with a mirrored image. */
static void
test_rotate_flip_target (void)
{
  g_autoptr(GError) error = NULL;
  VlDatasetOptions opt = { .val_fraction = 0.2, .seed = 1 };
  g_autoptr(VlDataset) ds = vl_dataset_open ("fashion-mnist-rotate:classes=0-1,per-class=5",
                                             &opt, &error);
  g_assert_no_error (error);
  VlPreprocess pp = { .channels = 1, .size = 28, .crop_pct = 1.0, .interp = VL_INTERP_BICUBIC,
                      .mean = { 0 }, .std = { 1 } };
  float px[28 * 28], v;
  int neg = 0, pos = 0;
  for (int seed = 0; seed < 30; seed++)
    {
      VlTarget t = { .values = &v };
      g_assert_true (vl_dataset_load_target (ds, VL_SPLIT_TRAIN, 3, &pp, VL_AUGMENT_LIGHT, seed,
                                             px, &t, &error));
      const float angle = vl_dataset_values (ds, VL_SPLIT_TRAIN, 3)[0];
      VlAugmentParams p;
      vl_augment_draw (VL_AUGMENT_LIGHT, seed, 28, 28, &p);
      g_assert_cmpfloat (v, ==, p.flip ? -angle : angle);
      neg += p.flip;
      pos += !p.flip;
      g_assert_cmpint (t.label, ==, vl_dataset_label (ds, VL_SPLIT_TRAIN, 3));
    }
  g_assert_cmpint (neg, >, 0);
  g_assert_cmpint (pos, >, 0);
}

/* ------------------------------------------------------------------ the trainer and the CLI */

static char *
shipped_backbone (void)
{
  return g_build_filename (g_getenv ("G_TEST_SRCDIR"), "..", "data", "backbones",
                           "vitlab-fmnist-tiny", NULL);
}

static void
test_train_regress (void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *run = vl_test_tmpdir ();
  g_autofree char *out = g_build_filename (run, "run", NULL);
  VlTrainConfig cfg;
  vl_train_config_init (&cfg);
  cfg.task = VL_TASK_REGRESS;
  cfg.backbone = shipped_backbone ();
  cfg.data = g_strdup ("fashion-mnist-rotate:classes=0-4,per-class=24,val-per-class=12");
  cfg.out_dir = g_strdup (out);
  g_free (cfg.unlock_schedule);
  cfg.unlock_schedule = g_strdup ("0:1,1:3");   /* the head, then the last block and norm too */
  cfg.epochs = 3;
  cfg.cache_features = TRUE;
  g_autoptr(VlTrainer) t = vl_trainer_new (&cfg, &error);
  g_assert_no_error (error);
  vl_train_config_clear (&cfg);
  g_assert_true (vl_trainer_start (t, &error));
  vl_trainer_join (t);
  g_autoptr(GPtrArray) evs = vl_trainer_drain (t);
  int epochs = 0;
  double first_mae = 0, last_mae = 0;
  for (guint i = 0; i < evs->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (evs, i);
      if (ev->kind == VL_TRAIN_EVENT_READY)
        {
          g_assert_cmpint (ev->task, ==, VL_TASK_REGRESS);
          g_assert_cmpint (ev->n_values, ==, 1);
          g_assert_cmpstr (ev->value_names[0], ==, "angle");
        }
      if (ev->kind == VL_TRAIN_EVENT_EPOCH)
        {
          const VlEpochMetrics *e = ev->metrics;
          g_assert_cmpint (e->task, ==, VL_TASK_REGRESS);
          g_assert_cmpint (e->reg.n, ==, 60);
          g_assert_true (isfinite (e->reg.mae_mean) && isfinite (e->reg.r2_mean));
          g_assert_nonnull (e->reg.pred);
          if (epochs++ == 0)
            first_mae = e->reg.mae_mean;
          last_mae = e->reg.mae_mean;
        }
      if (ev->kind == VL_TRAIN_EVENT_FINISHED)
        {
          g_assert_no_error (ev->error);
          g_assert_cmpint (ev->end, ==, VL_TRAIN_END_COMPLETED);
        }
    }
  g_assert_cmpint (epochs, ==, 3);
  g_assert_cmpfloat (last_mae, <, first_mae);
  /* the run folder says what it is */
  VlRunTask task;
  g_assert_true (vl_run_read_task (out, &task, &error));
  g_assert_cmpint (task.kind, ==, VL_TASK_REGRESS);
  g_assert_cmpint (task.n_values, ==, 1);
  g_assert_cmpfloat (task.std[0], >, 10.0f);   /* angles in ±45 */
  vl_run_task_clear (&task);
  g_autofree char *mpath = g_build_filename (out, "metrics.jsonl", NULL);
  g_autofree char *metrics = NULL;
  g_assert_true (g_file_get_contents (mpath, &metrics, NULL, NULL));
  g_assert_nonnull (strstr (metrics, "\"task\":\"regress\""));
  g_assert_nonnull (strstr (metrics, "\"val_r2\""));
  g_assert_null (strstr (metrics, "val_confusion"));
  /* and trains on where it stopped: resume reads the task back and checks the data against
   * run.json (five classes of images, one target: the classes are the data's, not the
   * targets') */
  VlTrainConfig back;
  g_assert_true (vl_train_config_load (&back, out, &error));
  g_assert_cmpint (back.task, ==, VL_TASK_REGRESS);
  back.epochs = 4;
  back.resume = TRUE;
  g_autoptr(VlTrainer) t2 = vl_trainer_new (&back, &error);
  g_assert_no_error (error);
  vl_train_config_clear (&back);
  g_assert_true (vl_trainer_start (t2, &error));
  vl_trainer_join (t2);
  g_autoptr(GPtrArray) evs2 = vl_trainer_drain (t2);
  int more = 0;
  for (guint i = 0; i < evs2->len; i++)
    {
      VlTrainEvent *ev = g_ptr_array_index (evs2, i);
      if (ev->kind == VL_TRAIN_EVENT_READY)
        g_assert_cmpint (ev->start_epoch, ==, 3);
      if (ev->kind == VL_TRAIN_EVENT_EPOCH)
        more++;
      if (ev->kind == VL_TRAIN_EVENT_FINISHED)
        {
          g_assert_no_error (ev->error);
          g_assert_cmpint (ev->end, ==, VL_TRAIN_END_COMPLETED);
        }
    }
  g_assert_cmpint (more, ==, 1);
}

static char *
run_cli (int *status, const char *first, ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new ();
  g_ptr_array_add (argv, (gpointer) g_getenv ("VITLAB_CLI"));
  va_list ap;
  va_start (ap, first);
  for (const char *a = first; a; a = va_arg (ap, const char *))
    g_ptr_array_add (argv, (gpointer) a);
  va_end (ap);
  g_ptr_array_add (argv, NULL);
  char *out = NULL, *err = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_nonnull (argv->pdata[0]);
  g_assert_true (g_spawn_sync (NULL, (char **) argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                               &out, &err, status, &error));
  g_test_message ("stderr: %s", err);
  g_free (err);
  return out;
}

static double
value_after (const char *text, const char *key)
{
  const char *p = strstr (text, key);
  g_assert_nonnull (p);
  return g_ascii_strtod (p + strlen (key), NULL);
}

static void
test_cli_regress (void)
{
  /* an image + CSV folder written here: 8 x 8 grey images whose target is their grey level */
  char *dir = vl_test_tmpdir ();
  GString *csv = g_string_new ("file,level\n");
  for (int i = 0; i < 40; i++)
    {
      g_autofree char *name = g_strdup_printf ("%s/g%02d.png", dir, i);
      int level = 5 * i + 20;
      write_png (name, level);
      g_string_append_printf (csv, "g%02d.png,%d\n", i, level);
    }
  g_autofree char *csv_path = g_build_filename (dir, "targets.csv", NULL);
  g_assert_true (g_file_set_contents (csv_path, csv->str, -1, NULL));
  g_string_free (csv, TRUE);
  g_autofree char *bb = vl_test_data_path ("geom-p4-d2-h4", NULL);
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *run = g_build_filename (tmp, "run", NULL);
  int status;
  g_autofree char *out = run_cli (&status, "train", "--task", "regress", "--backbone", bb,
                                  "--data", dir, "--out", run, "--unlock", "1", "--epochs", "30",
                                  "--lr", "3e-2", "--batch", "8", "--loss", "smooth-l1", NULL);
  g_test_message ("%s", out);
  g_assert_cmpint (status, ==, 0);
  double mae = value_after (out, "val_mae="), r2 = value_after (out, "val_r2=");
  /* the grey level is an easy linear function of the pixels: a frozen probe finds it */
  g_assert_cmpfloat (r2, >, 0.5);
  g_assert_cmpfloat (mae, <, 40.0);
  g_autofree char *ev = run_cli (&status, "eval", run, NULL);
  g_assert_cmpint (status, ==, 0);
  g_assert_cmpfloat (fabs (value_after (ev, "val_mae=") - mae), <, 1e-3);
  g_assert_nonnull (strstr (ev, "smooth-l1"));
  g_assert_nonnull (strstr (ev, "level"));
  g_autofree char *img = g_build_filename (dir, "g39.png", NULL);
  g_autofree char *pr = run_cli (&status, "predict", run, img, NULL);
  g_assert_cmpint (status, ==, 0);
  g_assert_nonnull (strstr (pr, "level="));
  double v = value_after (pr, "level=");
  g_assert_cmpfloat (v, >, 80.0);   /* level 215: well above the mean of 117.5 */
  /* a classification option on a regression folder, and the reverse */
  g_autofree char *bad = run_cli (&status, "train", "--backbone", bb, "--data", dir, "--out",
                                  run, "--loss", "mse", NULL);
  g_assert_cmpint (status, !=, 0);
  g_autofree char *run2 = g_build_filename (tmp, "run2", NULL);
  g_autofree char *cls = run_cli (&status, "train", "--backbone", bb, "--data", dir, "--out",
                                  run2, "--epochs", "1", NULL);
  g_assert_cmpint (status, !=, 0);
  g_free (dir);
}

/* run.json's classes, as the app and the ONNX export name a dense task's classes by them */
static void
test_run_class_names (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "run.json", NULL);
  g_assert_null (vl_run_read_class_names (dir));   /* no run.json */
  g_assert_true (g_file_set_contents (path, "{\"data\": {\"classes\": [\"background\", "
                                      "\"cat\", 7, \"dog\"]}}", -1, NULL));
  g_auto(GStrv) names = vl_run_read_class_names (dir);
  g_assert_nonnull (names);
  g_assert_cmpint (g_strv_length (names), ==, 4);
  g_assert_cmpstr (names[0], ==, "background");
  g_assert_cmpstr (names[2], ==, "?");   /* not a string */
  g_assert_cmpstr (names[3], ==, "dog");
  g_assert_true (g_file_set_contents (path, "{\"data\": {\"classes\": 3}}", -1, NULL));
  g_assert_null (vl_run_read_class_names (dir));
  g_assert_true (g_file_set_contents (path, "not json", -1, NULL));
  g_assert_null (vl_run_read_class_names (dir));
  g_remove (path);
  g_rmdir (dir);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/tasks/loss/cross-entropy", test_loss_cross_entropy);
  g_test_add_func ("/tasks/loss/regression", test_loss_regression);
  g_test_add_data_func ("/tasks/backward-from/features", GINT_TO_POINTER (0),
                        test_backward_from_features);
  g_test_add_data_func ("/tasks/backward-from/features-fc-norm-avg", GINT_TO_POINTER (3),
                        test_backward_from_features);
  g_test_add_data_func ("/tasks/backward-from/tokens", GINT_TO_POINTER (0),
                        test_backward_from_tokens);
  g_test_add_data_func ("/tasks/backward-from/tokens-fc-norm", GINT_TO_POINTER (1),
                        test_backward_from_tokens);
  g_test_add_func ("/tasks/backward-from/errors", test_backward_from_errors);
  g_test_add_func ("/tasks/regress/metrics", test_regress_metrics);
  g_test_add_func ("/tasks/data/targets-csv", test_targets_csv);
  g_test_add_func ("/tasks/data/targets-csv-errors", test_targets_csv_errors);
  g_test_add_func ("/tasks/data/fashion-mnist-rotate", test_fashion_mnist_rotate);
  g_test_add_func ("/tasks/augment/joint", test_augment_joint);
  g_test_add_func ("/tasks/augment/rotate-flip-target", test_rotate_flip_target);
  g_test_add_func ("/tasks/train/regress", test_train_regress);
  g_test_add_func ("/tasks/cli/regress", test_cli_regress);
  g_test_add_func ("/tasks/run/class-names", test_run_class_names);
  return g_test_run ();
}

/* test-head.c: the head interface (vl-head.h) against the direct calls it wraps, bit for bit —
 * the model's own head (classify: vl_task_loss + vl_model_backward_from (VL_GRAD_LOGITS), and
 * the fused vl_model_backward; regress), the seg heads (vl_seg_head_forward, vl_seg_batch_loss,
 * vl_seg_head_backward, VL_GRAD_TOKENS) and the FCOS head (vl_det_head_forward, _loss,
 * _backward) — outputs, losses, every parameter gradient of the model and of the head, and the
 * metrics (the seg and FCOS heads' over fashion-mnist-scenes, against the loops of direct calls
 * that vl_evaluate_segment and vl_evaluate_detect were before); then central finite differences of the classify head's loss through the interface
 * against the gradients its backward gives. */
#include "vl-test-util.h"
#include "vl-head.h"

#include <math.h>
#include <string.h>

#define NB 3      /* images */
#define S 16      /* input side */
#define PATCH 4
#define WIDTH 16

typedef struct {
  VlModel *m;
  float   *x;     /* (NB, 3, S, S) */
  float  **grads; /* every tensor's gradient after a backward */
} Fixture;

static VlModel *
tiny_model (int n_classes)
{
  g_autoptr(GError) error = NULL;
  VlGeometry geo;
  g_assert_true (vl_geometry_parse ("img=16,patch=4,chans=3,width=16,depth=2,heads=2,mlp=32",
                                    &geo, &error));
  VlModel *m = vl_model_new_random (&geo, n_classes > 0 ? n_classes : 2, 11);
  if (n_classes == 0)
    vl_model_set_head (m, VL_HEAD_NONE, 0, 0, 0);
  /* signal on every path: timm's initialisation leaves the norms equal and the head at zero */
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t n;
      float *p = vl_model_tensor_data (m, i, NULL, NULL, &n);
      for (int64_t k = 0; k < n; k++)
        p[k] += (float) (0.2 * sin (0.7 * k + 1.3 * i));
    }
  vl_model_lock (m, vl_model_n_groups (m));
  return m;
}

static float *
images (void)
{
  float *x = g_new (float, NB * 3 * S * S);
  for (int i = 0; i < NB * 3 * S * S; i++)
    x[i] = (float) sin (i * 0.37);
  return x;
}

/* Every trainable tensor's gradient, copied. */
static float **
copy_grads (VlModel *m)
{
  float **g = g_new0 (float *, vl_model_n_tensors (m));
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t n;
      vl_model_tensor_data (m, i, NULL, NULL, &n);
      const float *gi = vl_model_tensor_grad (m, i);
      g[i] = gi ? g_memdup2 (gi, sizeof (float) * n) : NULL;
    }
  return g;
}

static void
assert_same_grads (VlModel *m, float **want)
{
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int64_t n;
      vl_model_tensor_data (m, i, NULL, NULL, &n);
      const float *gi = vl_model_tensor_grad (m, i);
      g_assert_true ((gi == NULL) == (want[i] == NULL));
      if (gi && memcmp (gi, want[i], sizeof (float) * n) != 0)
        g_test_fail_printf ("%s: the gradient differs", vl_model_tensor_name (m, i));
    }
}

static void
free_grads (VlModel *m, float **g)
{
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    g_free (g[i]);
  g_free (g);
}

static void
assert_same_params (VlHeadParam *p, int n, float **want)
{
  for (int i = 0; i < n; i++)
    if (memcmp (p[i].grad, want[i], sizeof (float) * p[i].numel) != 0)
      g_test_fail_printf ("%s: the head's gradient differs", p[i].name);
}

/* ------------------------------------------------------------------ the model's own head */

static void
test_model_classify (void)
{
  g_autoptr(GError) error = NULL;
  const int K = 4;
  g_autoptr(VlModel) m = tiny_model (K);
  g_autofree float *x = images ();
  const int labels[NB] = { 2, 0, 3 };
  VlTaskSpec t = { .kind = VL_TASK_CLASSIFY, .n_outputs = K, .label_smoothing = 0.1f };

  /* direct: the task's loss, the backward from the logits */
  g_autofree float *dout = g_new (float, NB * K);
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  g_autofree float *logits = g_memdup2 (vl_model_logits (m), sizeof (float) * NB * K);
  double l_direct = vl_task_loss (&t, vl_model_logits (m), labels, NULL, NB, dout);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_LOGITS, dout, &error));
  float **want = copy_grads (m);

  /* the fused entry point gives the same (it is the thin wrapper) */
  double l_fused;
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  g_assert_true (vl_model_backward (m, labels, 0.1f, &l_fused, &error));
  g_assert_cmpfloat (l_fused, ==, l_direct);
  assert_same_grads (m, want);

  /* through the interface */
  g_autoptr(VlHead) h = vl_head_new_model (&t);
  g_assert_true (vl_head_in_model (h));
  g_assert_cmpint (vl_head_reads (h), ==, VL_HEAD_READS_LOGITS);
  g_assert_cmpstr (vl_head_name (h), ==, "model");
  g_assert_null (vl_head_file (h));
  g_assert_null (vl_head_writer (h));
  int np;
  g_assert_null (vl_head_params (h, &np));
  g_assert_cmpint (np, ==, 0);
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  const float *out = vl_head_forward (h, vl_head_input (h, m), NB);
  g_assert_cmpmem (out, sizeof (float) * NB * K, logits, sizeof (float) * NB * K);
  VlBatch b = { .labels = labels, .n = NB };
  g_assert_cmpfloat (vl_head_loss (h, &b), ==, l_direct);
  g_assert_true (vl_head_backward (h, m, FALSE, &error));   /* in the model: it always runs */
  assert_same_grads (m, want);

  /* metrics: as vl_eval_result over the same logits */
  VlEvalResult direct = { 0 };
  vl_eval_result_begin (&direct, K);
  vl_eval_result_add (&direct, logits, labels, NB);
  vl_eval_result_end (&direct);
  VlEpochMetrics e = { 0 };
  const int items[NB] = { 0, 1, 2 };
  b.indices = items;
  vl_head_metrics_begin (h, &e, NULL, VL_SPLIT_VAL);
  g_assert_true (vl_head_metrics_add (h, &e, &b, &error));
  vl_head_metrics_end (h, &e);
  g_assert_cmpint (e.task, ==, VL_TASK_CLASSIFY);
  g_assert_cmpfloat (e.val.loss, ==, direct.loss);
  g_assert_cmpfloat (e.val.top1, ==, direct.top1);
  g_assert_cmpfloat (vl_epoch_metrics_val_loss (&e), ==, direct.loss);
  g_assert_cmpmem (e.val.confusion, sizeof (int64_t) * K * K, direct.confusion,
                   sizeof (int64_t) * K * K);
  vl_eval_result_clear (&direct);
  vl_eval_result_clear (&e.val);
  free_grads (m, want);
}

static void
test_model_regress (void)
{
  g_autoptr(GError) error = NULL;
  enum { K = 2 };
  g_autoptr(VlModel) m = tiny_model (K);
  g_autofree float *x = images ();
  const float values[NB * K] = { 10, -1, 30, 2, -5, 0.5f };
  float mean[K] = { 8, 0.5f }, std[K] = { 12, 1.5f };
  VlTaskSpec t = { .kind = VL_TASK_REGRESS, .n_outputs = K, .reg_loss = VL_REG_LOSS_SMOOTH_L1,
                   .mean = mean, .std = std };
  g_autofree float *dout = g_new (float, NB * K);
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  g_autofree float *pred = g_memdup2 (vl_model_logits (m), sizeof (float) * NB * K);
  double l_direct = vl_task_loss (&t, vl_model_logits (m), NULL, values, NB, dout);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_LOGITS, dout, &error));
  float **want = copy_grads (m);

  g_autoptr(VlHead) h = vl_head_new_model (&t);
  mean[0] = std[0] = 0;   /* copied by the head */
  t.mean = (const float[]) { 8, 0.5f };
  t.std = (const float[]) { 12, 1.5f };
  g_assert_cmpint (vl_head_task (h), ==, VL_TASK_REGRESS);
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  vl_head_forward (h, vl_head_input (h, m), NB);
  const int items[NB] = { 4, 5, 6 };
  VlBatch b = { .values = values, .n_values = K, .indices = items, .n = NB };
  g_assert_cmpfloat (vl_head_loss (h, &b), ==, l_direct);
  g_assert_true (vl_head_backward (h, m, TRUE, &error));
  assert_same_grads (m, want);

  VlRegressResult direct = { 0 };
  vl_regress_result_begin (&direct, K);
  vl_regress_result_add (&direct, &t, pred, values, items, NB);
  vl_regress_result_end (&direct);
  VlEpochMetrics e = { 0 };
  vl_head_metrics_begin (h, &e, NULL, VL_SPLIT_VAL);
  g_assert_true (vl_head_metrics_add (h, &e, &b, &error));
  vl_head_metrics_end (h, &e);
  g_assert_cmpint (e.task, ==, VL_TASK_REGRESS);
  g_assert_cmpfloat (e.reg.loss, ==, direct.loss);
  g_assert_cmpfloat (e.reg.mae_mean, ==, direct.mae_mean);
  g_assert_cmpfloat (e.reg.r2_mean, ==, direct.r2_mean);
  g_assert_cmpmem (e.reg.pred, sizeof (float) * NB * K, direct.pred, sizeof (float) * NB * K);
  g_assert_cmpmem (e.reg.items, sizeof (int) * NB, items, sizeof (int) * NB);
  vl_regress_result_clear (&direct);
  vl_regress_result_clear (&e.reg);
  free_grads (m, want);
}

/* Central differences of the classify head's loss (label smoothing 0.1) through the interface,
 * on entries of the head, the final norm and a block, against its backward's gradients. */
static void
test_model_classify_fd (void)
{
  g_autoptr(GError) error = NULL;
  const int K = 3;
  g_autoptr(VlModel) m = tiny_model (K);
  g_autofree float *x = images ();
  const int labels[NB] = { 1, 2, 0 };
  VlTaskSpec t = { .kind = VL_TASK_CLASSIFY, .n_outputs = K, .label_smoothing = 0.1f };
  g_autoptr(VlHead) h = vl_head_new_model (&t);
  VlBatch b = { .labels = labels, .n = NB };
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  vl_head_forward (h, vl_head_input (h, m), NB);
  vl_head_loss (h, &b);
  g_assert_true (vl_head_backward (h, m, TRUE, &error));
  float **g = copy_grads (m);
  const char *names[] = { "head.weight", "head.bias", "norm.weight", "blocks.1.mlp.fc2.weight",
                          "blocks.0.attn.qkv.weight" };
  int checked = 0;
  for (guint n = 0; n < G_N_ELEMENTS (names); n++)
    {
      int ti = vl_model_find_tensor (m, names[n]);
      g_assert_cmpint (ti, >=, 0);
      int64_t numel;
      float *p = vl_model_tensor_data (m, ti, NULL, NULL, &numel);
      for (int64_t k = 0; k < numel; k += 1 + numel / 6)
        {
          const float p0 = p[k], eps = 1e-2f;
          double l[2];
          for (int s = 0; s < 2; s++)
            {
              p[k] = p0 + (s ? -eps : eps);
              vl_model_tensor_data (m, ti, NULL, NULL, NULL);
              g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_INFER, &error));
              vl_head_forward (h, vl_head_input (h, m), NB);
              l[s] = vl_head_loss (h, &b);
            }
          p[k] = p0;
          vl_model_tensor_data (m, ti, NULL, NULL, NULL);
          double fd = (l[0] - l[1]) / (2.0 * eps), an = g[ti][k];
          if (!(fabs (fd - an) <= 2e-2 * MAX (fabs (fd), fabs (an)) + 2e-4))
            g_test_fail_printf ("%s[%" G_GINT64_FORMAT "]: finite differences %.7g, backward "
                                "%.7g", names[n], k, fd, an);
          checked++;
        }
    }
  g_assert_cmpint (checked, >=, 20);
  free_grads (m, g);
}

/* ------------------------------------------------------------------ the seg heads */

static void
test_seg (gconstpointer data)
{
  const VlSegHeadKind kind = GPOINTER_TO_INT (data);
  g_autoptr(GError) error = NULL;
  const int K = 3;
  g_autoptr(VlModel) m = tiny_model (0);
  g_autofree float *x = images ();
  g_autofree uint8_t *masks = g_new (uint8_t, NB * S * S);
  for (int i = 0; i < NB * S * S; i++)
    masks[i] = (uint8_t) (i % 11 == 0 ? 255 : (i / 7) % K);
  VlHeadGrid grid;
  vl_head_grid_of (m, S, &grid);
  g_assert_cmpint (grid.T, ==, 1 + 16);
  g_autoptr(VlHead) h = vl_head_new_seg (vl_seg_head_new (kind, WIDTH, K, 5), &grid, TRUE);
  VlSegHead *seg = vl_head_seg (h);
  g_assert_nonnull (seg);
  g_assert_null (vl_head_det (h));
  g_assert_false (vl_head_in_model (h));
  g_assert_cmpstr (vl_head_file (h), ==, VL_RUN_SEG_HEAD);
  const gsize nz = (gsize) NB * S * S * K, nt = (gsize) NB * grid.T * WIDTH;

  /* direct */
  g_autofree float *dz = g_new (float, nz);
  g_autofree float *dtok = g_new (float, nt);
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  const float *z = vl_seg_head_forward (seg, vl_model_tokens_final (m), NB, grid.T, 1, 4, 4, S,
                                        S);
  g_autofree float *z_direct = g_memdup2 (z, sizeof (float) * nz);
  double l_direct = vl_seg_batch_loss (dz, z, masks, NB, S * S, K);
  vl_seg_head_backward (seg, dz, dtok);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_TOKENS, dtok, &error));
  float **want = copy_grads (m);
  int np;
  VlHeadParam *p = vl_head_params (h, &np);
  g_assert_cmpint (np, ==, vl_seg_head_n_tensors (seg));
  float **want_head = g_new (float *, np);
  for (int i = 0; i < np; i++)
    want_head[i] = g_memdup2 (p[i].grad, sizeof (float) * p[i].numel);

  /* through the interface */
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  const float *out = vl_head_forward (h, vl_head_input (h, m), NB);
  g_assert_cmpmem (out, sizeof (float) * nz, z_direct, sizeof (float) * nz);
  VlBatch b = { .masks = masks, .n = NB };
  g_assert_cmpfloat (vl_head_loss (h, &b), ==, l_direct);
  g_assert_true (vl_head_backward (h, m, TRUE, &error));
  assert_same_grads (m, want);
  assert_same_params (p, np, want_head);
  g_assert_cmpmem (h->d_in, sizeof (float) * nt, dtok, sizeof (float) * nt);

  /* the model frozen: only the head's gradients */
  memset (p[0].grad, 0, sizeof (float) * p[0].numel);
  vl_head_forward (h, vl_head_input (h, m), NB);
  vl_head_loss (h, &b);
  g_assert_true (vl_head_backward (h, m, FALSE, &error));
  assert_same_params (p, np, want_head);

  /* its file and the restore */
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, VL_RUN_SEG_HEAD, NULL);
  {
    g_autoptr(VlSafetensorsWriter) w = vl_head_writer (h);
    g_assert_true (vl_safetensors_writer_write (w, path, &error));
  }
  g_autoptr(VlHead) h2 = vl_head_new_seg (vl_seg_head_new (kind, WIDTH, K, 99), &grid, TRUE);
  g_assert_true (vl_head_restore (h2, dir, &error));
  int np2;
  VlHeadParam *p2 = vl_head_params (h2, &np2);
  for (int i = 0; i < np; i++)
    g_assert_cmpmem (p2[i].data, sizeof (float) * p[i].numel, p[i].data,
                     sizeof (float) * p[i].numel);
  g_autoptr(VlHead) other = vl_head_new_seg (vl_seg_head_new (kind == VL_SEG_HEAD_LINEAR
                                                              ? VL_SEG_HEAD_UPCONV
                                                              : VL_SEG_HEAD_LINEAR, WIDTH, K, 1),
                                             &grid, TRUE);
  g_assert_false (vl_head_restore (other, dir, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_MISMATCH);
  g_assert_nonnull (strstr (error->message, path));

  for (int i = 0; i < np; i++)
    g_free (want_head[i]);
  g_free (want_head);
  free_grads (m, want);
}

/* ------------------------------------------------------------------ the FCOS head */

static void
test_det (void)
{
  g_autoptr(GError) error = NULL;
  enum { K = 3, M = 2 };
  g_autoptr(VlModel) m = tiny_model (0);
  g_autofree float *x = images ();
  const float boxes[NB * M * 4] = { 1, 1, 9, 10, 6, 2, 15, 8,   2, 3, 14, 15, 0, 0, 0, 0,
                                    0, 0, 0, 0, 0, 0, 0, 0 };
  const int box_labels[NB * M] = { 1, 2, 2, 0, 0, 0 };
  const int n_boxes[NB] = { 2, 1, 0 };
  VlHeadGrid grid;
  vl_head_grid_of (m, S, &grid);
  g_autoptr(VlHead) h = vl_head_new_det (vl_det_head_new (WIDTH, K, 3), &grid, TRUE);
  VlDetHead *det = vl_head_det (h);
  g_assert_nonnull (det);
  g_assert_cmpstr (vl_head_file (h), ==, VL_RUN_DET_HEAD);
  const gsize nt = (gsize) NB * grid.T * WIDTH;

  /* direct */
  g_autofree float *dtok = g_new (float, nt);
  VlFcosTarget tg[NB];
  for (int j = 0; j < NB; j++)
    tg[j] = (VlFcosTarget) { boxes + j * M * 4, box_labels + j * M, n_boxes[j] };
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  vl_det_head_forward (det, vl_model_tokens_final (m), NB, grid.T, 1, 4, 4, PATCH);
  const gsize nc = (gsize) NB * vl_det_head_n_locations (det) * K;
  g_autofree float *cls = g_memdup2 (vl_det_head_cls_logits (det), sizeof (float) * nc);
  double l_direct = vl_det_head_loss (det, tg, NULL);
  vl_det_head_backward (det, dtok);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_TOKENS, dtok, &error));
  float **want = copy_grads (m);
  int np;
  VlHeadParam *p = vl_head_params (h, &np);
  g_assert_cmpint (np, ==, 6);
  float **want_head = g_new (float *, np);
  for (int i = 0; i < np; i++)
    want_head[i] = g_memdup2 (p[i].grad, sizeof (float) * p[i].numel);

  /* through the interface */
  g_assert_true (vl_model_forward (m, x, NB, S, S, VL_FORWARD_TRAIN, &error));
  const float *out = vl_head_forward (h, vl_head_input (h, m), NB);
  g_assert_cmpmem (out, sizeof (float) * nc, cls, sizeof (float) * nc);
  VlBatch b = { .boxes = boxes, .box_labels = box_labels, .n_boxes = n_boxes, .max_boxes = M,
                .n = NB };
  g_assert_cmpfloat (vl_head_loss (h, &b), ==, l_direct);
  g_assert_true (vl_head_backward (h, m, TRUE, &error));
  assert_same_grads (m, want);
  assert_same_params (p, np, want_head);
  g_assert_cmpmem (h->d_in, sizeof (float) * nt, dtok, sizeof (float) * nt);
  g_assert_cmpint (vl_head_n_params (h), ==, vl_det_head_n_params (det));

  for (int i = 0; i < np; i++)
    g_free (want_head[i]);
  g_free (want_head);
  free_grads (m, want);
}

/* ------------------------------------------------------------------ metrics over a dataset */

/* A random model (no head of its own) for fashion-mnist-scenes at 32 px. */
static VlModel *
scenes_model (void)
{
  g_autoptr(GError) error = NULL;
  VlGeometry geo;
  g_assert_true (vl_geometry_parse ("img=32,patch=8,chans=1,width=16,depth=1,heads=2", &geo,
                                    &error));
  VlModel *m = vl_model_new_random (&geo, 2, 13);
  vl_model_set_head (m, VL_HEAD_NONE, 0, 0, 0);
  return m;
}

/* vl_evaluate_segment (through the interface) against the loop of direct calls it replaced:
 * every field of the result, bit for bit. */
static void
test_seg_metrics (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = scenes_model ();
  g_autoptr(VlDataset) ds = vl_dataset_open ("fashion-mnist-scenes:train=4,val=7,size=32",
                                             NULL, &error);
  g_assert_no_error (error);
  const int K = vl_dataset_n_classes (ds), SC = 32, G = 4, bs = 3;
  g_autoptr(VlSegHead) h = vl_seg_head_new (VL_SEG_HEAD_UPCONV, 16, K, 2);

  VlSegResult want;
  VlPreprocess pp;
  g_assert_true (vl_preprocess_dense (m, 0, &pp, &error));
  g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_VAL, &pp, VL_AUGMENT_NONE, bs, FALSE, 0);
  vl_seg_result_begin (&want, K, TRUE);
  vl_loader_start_epoch (l, 0, 0);
  VlBatch b;
  while (vl_loader_next (l, &b))
    {
      g_assert_true (vl_model_forward (m, b.images, b.n, SC, SC, VL_FORWARD_INFER, &error));
      const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), b.n, 1 + G * G, 1, G,
                                            G, SC, SC);
      uint8_t *masks[3];
      int w[3], hh[3];
      for (int j = 0; j < b.n; j++)
        masks[j] = vl_dataset_load_mask (ds, VL_SPLIT_VAL, b.indices[j], &w[j], &hh[j], NULL);
      g_assert_true (vl_seg_result_add_upsampled (&want, z, b.n, SC, masks, w, hh, &error));
      for (int j = 0; j < b.n; j++)
        g_free (masks[j]);
    }
  vl_seg_result_end (&want);

  VlSegResult got;
  g_assert_true (vl_evaluate_segment (m, h, ds, VL_SPLIT_VAL, 0, bs, NULL, &got, &error));
  g_assert_cmpint (got.n, ==, 7);
  g_assert_cmpint (got.pixels, ==, want.pixels);
  g_assert_cmpfloat (got.loss, ==, want.loss);
  g_assert_cmpfloat (got.miou, ==, want.miou);
  g_assert_cmpfloat (got.aacc, ==, want.aacc);
  g_assert_cmpfloat (got.macc, ==, want.macc);
  g_assert_cmpmem (got.iou, sizeof (double) * K, want.iou, sizeof (double) * K);
  g_assert_cmpmem (got.acc, sizeof (double) * K, want.acc, sizeof (double) * K);
  vl_seg_result_clear (&want);
  vl_seg_result_clear (&got);
}

/* vl_evaluate_detect (through the interface) against the loop of direct calls it replaced. */
static void
test_det_metrics (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = scenes_model ();
  VlDatasetOptions o = VL_DATASET_OPTIONS_DEFAULT;
  o.detect = TRUE;
  g_autoptr(VlDataset) ds = vl_dataset_open ("fashion-mnist-scenes:train=4,val=7,size=32", &o,
                                             &error);
  g_assert_no_error (error);
  const int K = vl_dataset_n_classes (ds), SC = 32, G = 4, bs = 3;
  g_autoptr(VlDetHead) h = vl_det_head_new (16, K, 4);
  /* detections above the evaluation's score threshold: the classification bias up */
  int np;
  VlHeadParam *p = vl_det_head_params (h, &np);
  for (int i = 0; i < np; i++)
    if (strstr (p[i].name, "cls_logits.bias"))
      for (int64_t k = 0; k < p[i].numel; k++)
        p[i].data[k] = 0.5f;

  VlDetResult want;
  VlPreprocess pp;
  g_assert_true (vl_preprocess_dense (m, 0, &pp, &error));
  g_autoptr(VlLoader) l = vl_loader_new (ds, VL_SPLIT_VAL, &pp, VL_AUGMENT_NONE, bs, FALSE, 0);
  vl_det_result_begin (&want, K);
  VlFcosPostprocess post = VL_FCOS_POSTPROCESS_DEFAULT;
  post.score_thresh = VL_DETECT_EVAL_SCORE;
  g_autofree VlDetection *dets = g_new (VlDetection, post.max_dets);
  vl_loader_start_epoch (l, 0, 0);
  VlBatch b;
  while (vl_loader_next (l, &b))
    {
      g_assert_true (vl_model_forward (m, b.images, b.n, SC, SC, VL_FORWARD_INFER, &error));
      vl_det_head_forward (h, vl_model_tokens_final (m), b.n, 1 + G * G, 1, G, G, 8);
      VlFcosTarget tg[3];
      for (int j = 0; j < b.n; j++)
        tg[j] = (VlFcosTarget) { b.boxes + (gsize) j * b.max_boxes * 4,
                                 b.box_labels + (gsize) j * b.max_boxes, b.n_boxes[j] };
      vl_det_result_add_loss (&want, vl_det_head_loss (h, tg, NULL), b.n);
      for (int j = 0; j < b.n; j++)
        {
          int n = vl_det_head_detect (h, j, SC, SC, &post, dets), w, hh, n_gt;
          const int *gl;
          const float *gb = vl_dataset_boxes (ds, VL_SPLIT_VAL, b.indices[j], &gl, &n_gt);
          vl_dataset_boxes_size (ds, VL_SPLIT_VAL, b.indices[j], &w, &hh);
          vl_det_result_add (&want, dets, n, SC, w, hh, gb, gl, n_gt);
        }
    }
  vl_det_result_end (&want);

  VlDetResult got;
  g_assert_true (vl_evaluate_detect (m, h, ds, VL_SPLIT_VAL, 0, bs, NULL, &got, &error));
  g_assert_cmpint (got.n, ==, 7);
  g_assert_cmpint (got.n_gt, ==, want.n_gt);
  g_assert_cmpint (got.n_dt, ==, want.n_dt);
  g_assert_cmpint (got.n_dt, >, 0);
  g_assert_cmpfloat (got.loss, ==, want.loss);
  g_assert_cmpfloat (got.ap, ==, want.ap);
  g_assert_cmpfloat (got.ap50, ==, want.ap50);
  g_assert_cmpfloat (got.ar100, ==, want.ar100);
  vl_det_result_clear (&want);
  vl_det_result_clear (&got);
}

/* vl_head_new_for_task: each task's head, and what it does to the model's own head; heads that
 * cannot be built are errors that say why. */
static void
test_new_for_task (void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = tiny_model (2);
  VlHeadGrid grid;
  vl_head_grid_of (m, S, &grid);
  VlHeadChoice c = { .model_head = VL_HEAD_MLP, .mlp_hidden = 8, .seg_head = VL_SEG_HEAD_LINEAR,
                     .seed = 4 };
  VlTaskSpec t = { .kind = VL_TASK_CLASSIFY, .n_outputs = 5 };
  g_autoptr(VlHead) cls = vl_head_new_for_task (m, &t, &c, &grid, &error);
  g_assert_no_error (error);
  g_assert_true (vl_head_in_model (cls));
  g_assert_cmpstr (vl_head_name (cls), ==, "model");
  g_assert_cmpint (vl_model_head_kind (m), ==, VL_HEAD_MLP);
  g_assert_cmpint (vl_model_num_classes (m), ==, 5);

  t = (VlTaskSpec) { .kind = VL_TASK_SEGMENT, .n_outputs = 3 };
  g_autoptr(VlHead) seg = vl_head_new_for_task (m, &t, &c, &grid, &error);
  g_assert_no_error (error);
  g_assert_false (vl_head_in_model (seg));
  g_assert_cmpstr (vl_head_name (seg), ==, "seg");
  g_assert_cmpint (vl_head_task (seg), ==, VL_TASK_SEGMENT);
  g_assert_cmpint (vl_model_head_kind (m), ==, VL_HEAD_NONE);   /* the model's head went */
  int n;
  g_assert_nonnull (vl_head_params (seg, &n));
  g_assert_cmpint (n, >, 0);

  t.kind = VL_TASK_DETECT;
  g_autoptr(VlHead) det = vl_head_new_for_task (m, &t, &c, &grid, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vl_head_name (det), ==, "fcos");

  /* upconv needs a width divisible by 4: a grid of width 18 cannot take it */
  VlHeadGrid odd = grid;
  odd.width = 18;
  c.seg_head = VL_SEG_HEAD_UPCONV;
  t.kind = VL_TASK_SEGMENT;
  g_assert_null (vl_head_new_for_task (m, &t, &c, &odd, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "upconv needs a width divisible by 4"));
  g_clear_error (&error);
  /* FCOS counts the background: one class is too few */
  t = (VlTaskSpec) { .kind = VL_TASK_DETECT, .n_outputs = 1 };
  g_assert_null (vl_head_new_for_task (m, &t, &c, &grid, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "FCOS head cannot be built for 1 classes"));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/head/model/classify", test_model_classify);
  g_test_add_func ("/head/model/regress", test_model_regress);
  g_test_add_func ("/head/model/classify-finite-differences", test_model_classify_fd);
  g_test_add_data_func ("/head/seg/linear", GINT_TO_POINTER (VL_SEG_HEAD_LINEAR), test_seg);
  g_test_add_data_func ("/head/seg/upconv", GINT_TO_POINTER (VL_SEG_HEAD_UPCONV), test_seg);
  g_test_add_func ("/head/fcos", test_det);
  g_test_add_func ("/head/seg/metrics", test_seg_metrics);
  g_test_add_func ("/head/fcos/metrics", test_det_metrics);
  g_test_add_func ("/head/new-for-task", test_new_for_task);
  return g_test_run ();
}

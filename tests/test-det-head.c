/* test-det-head.c: the FCOS head (vl-det-head.h) against torchvision's FCOS on the fixture
 * tests/data/gen-det-head.py writes (the three outputs, the three losses, every parameter
 * gradient, d loss / d tokens, the decoded detections), by central finite differences of the
 * total loss, through a save and a load under torchvision's names, and through a real (random)
 * model: tokens -> head -> loss -> vl_model_backward_from. */
#include "vl-test-util.h"
#include "vl-det-head.h"

#include <math.h>
#include <string.h>

#define B 2
#define NP 1
#define GH 5
#define GW 6
#define W 16
#define K 3
#define STRIDE 8
#define T (NP + GH * GW)
#define A (GH * GW)

typedef struct {
  VlDetHead    *h;
  float        *tokens;
  VlFcosTarget  tg[B];
} Ctx;

static double
total_loss (void *data)
{
  Ctx *c = data;
  vl_det_head_forward (c->h, c->tokens, B, T, NP, GH, GW, STRIDE);
  return vl_det_head_loss (c->h, c->tg, NULL);
}

static void
fd_check (const char *what, Ctx *c, float *x, int64_t n, const float *g)
{
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++)
    {
      const float x0 = x[i];
      const double step = 1e-3 * MAX (1.0, fabs ((double) x0));
      const float xp = (float) (x0 + step), xm = (float) (x0 - step);
      x[i] = xp;
      double lp = total_loss (c);
      x[i] = xm;
      double lm = total_loss (c);
      x[i] = x0;
      double fd = (lp - lm) / ((double) xp - (double) xm);
      num += (fd - g[i]) * (fd - g[i]);
      den += fd * fd;
    }
  double rel = den > 0 ? sqrt (num / den) : sqrt (num);
  g_test_message ("%s: %" G_GINT64_FORMAT " elements, ||fd - g|| / ||fd|| %.3g", what, n, rel);
  g_assert_cmpfloat (rel, <=, 1e-2);
}

static VlDetHead *
open_head (VlSafetensors *st)
{
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_det_head_in_safetensors (st));
  VlDetHead *h = vl_det_head_from_safetensors (st, W, &error);
  g_assert_no_error (error);
  g_assert_cmpint (vl_det_head_n_classes (h), ==, K);
  g_assert_cmpint (vl_det_head_n_tensors (h), ==, 6);
  g_assert_cmpint (vl_det_head_n_params (h), ==, (K + 5) * (W * 9 + 1));
  return h;
}

static void
read_targets (VlSafetensors *st, VlFcosTarget *tg, float **boxes, int **labels)
{
  for (int b = 0; b < B; b++)
    {
      int64_t n;
      g_autofree char *bn = g_strdup_printf ("boxes%d", b);
      g_autofree char *ln = g_strdup_printf ("labels%d", b);
      boxes[b] = vl_test_read (st, bn, &n);
      g_autofree float *lf = vl_test_read (st, ln, &n);
      labels[b] = g_new (int, n);
      for (int64_t i = 0; i < n; i++)
        labels[b][i] = (int) lf[i];
      tg[b] = (VlFcosTarget) { boxes[b], labels[b], (int) n };
    }
}

static void
check_detections (VlSafetensors *st, VlDetHead *h)
{
  VlFcosPostprocess pp = VL_FCOS_POSTPROCESS_DEFAULT;
  pp.score_thresh = 0.05f;
  VlDetection dets[100];
  for (int b = 0; b < B; b++)
    {
      int64_t n;
      g_autofree char *n1 = g_strdup_printf ("det%d.boxes", b);
      g_autofree char *n2 = g_strdup_printf ("det%d.scores", b);
      g_autofree char *n3 = g_strdup_printf ("det%d.labels", b);
      g_autofree float *wb = vl_test_read (st, n1, &n);
      g_autofree float *ws = vl_test_read (st, n2, &n);
      g_autofree float *wl = vl_test_read (st, n3, &n);
      int got = vl_det_head_detect (h, b, GH * STRIDE, GW * STRIDE, &pp, dets);
      g_assert_cmpint (got, ==, n);
      g_assert_cmpint (got, >, 10);
      for (int i = 0; i < got; i++)
        {
          g_assert_cmpint (dets[i].label, ==, (int) wl[i]);
          g_assert_cmpfloat (fabsf (dets[i].score - ws[i]), <=, 1e-5f);
          for (int j = 0; j < 4; j++)
            g_assert_cmpfloat (fabsf (dets[i].box[j] - wb[4 * i + j]), <=, 1e-3f);
        }
    }
}

static void
test_torchvision (void)
{
  g_autofree char *path = vl_test_data_path ("dense", "det-head.safetensors", NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_autoptr(VlDetHead) h = open_head (st);
  int64_t n;
  g_autofree float *tokens = vl_test_read (st, "tokens", &n);
  g_assert_cmpint (n, ==, B * T * W);
  float *boxes[B];
  int *labels[B];
  Ctx c = { h, tokens, { { 0 } } };
  read_targets (st, c.tg, boxes, labels);

  VlFcosLosses l;
  vl_det_head_forward (h, tokens, B, T, NP, GH, GW, STRIDE);
  g_assert_cmpint (vl_det_head_n_locations (h), ==, A);
  g_autofree float *wc = vl_test_read (st, "cls_logits", &n);
  vl_test_assert_close ("cls_logits", vl_det_head_cls_logits (h), wc, B * A * K, 1e-5, 1e-4);
  g_autofree float *wr = vl_test_read (st, "bbox_regression", &n);
  vl_test_assert_close ("bbox_regression", vl_det_head_bbox_regression (h), wr, B * A * 4, 1e-5,
                        1e-4);
  g_autofree float *wt = vl_test_read (st, "bbox_ctrness", &n);
  vl_test_assert_close ("bbox_ctrness", vl_det_head_bbox_ctrness (h), wt, B * A, 1e-5, 1e-4);
  double total = vl_det_head_loss (h, c.tg, &l);
  g_autofree float *wl = vl_test_read (st, "losses", &n);
  g_assert_cmpfloat (fabs (l.classification - wl[0]), <=, 1e-5 * wl[0]);
  g_assert_cmpfloat (fabs (l.bbox_regression - wl[1]), <=, 1e-5 * wl[1]);
  g_assert_cmpfloat (fabs (l.bbox_ctrness - wl[2]), <=, 1e-5 * wl[2]);
  g_assert_cmpfloat (fabs (total - (wl[0] + wl[1] + wl[2])), <=, 1e-5 * total);
  g_assert_cmpint (l.n_foreground, >, 4);

  g_autofree float *dtok = g_new (float, B * T * W);
  for (int i = 0; i < B * T * W; i++)
    dtok[i] = NAN;   /* overwritten, prefix included */
  vl_det_head_backward (h, dtok);
  g_autofree float *wdt = vl_test_read (st, "d_tokens", &n);
  vl_test_assert_close ("d_tokens", dtok, wdt, B * T * W, 1e-6, 1e-4);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < W; j++)
      g_assert_cmpfloat (dtok[(b * T) * W + j], ==, 0.0f);
  for (int i = 0; i < vl_det_head_n_tensors (h); i++)
    {
      g_autofree char *gname = g_strconcat ("grad.", vl_det_head_tensor_name (h, i), NULL);
      int64_t numel;
      vl_det_head_tensor_data (h, i, NULL, NULL, &numel);
      g_autofree float *want = vl_test_read (st, gname, &n);
      g_assert_cmpint (n, ==, numel);
      vl_test_assert_close (gname, vl_det_head_tensor_grad (h, i), want, n, 1e-6, 1e-4);
    }
  check_detections (st, h);

  /* finite differences of the total loss: the tokens and every parameter */
  fd_check ("tokens", &c, tokens, B * T * W, dtok);
  for (int i = 0; i < vl_det_head_n_tensors (h); i++)
    {
      int64_t numel;
      float *p = vl_det_head_tensor_data (h, i, NULL, NULL, &numel);
      g_autofree float *g = g_memdup2 (vl_det_head_tensor_grad (h, i), sizeof (float) * numel);
      fd_check (vl_det_head_tensor_name (h, i), &c, p, numel, g);
    }
  for (int b = 0; b < B; b++)
    {
      g_free (boxes[b]);
      g_free (labels[b]);
    }
}

/* Saved under torchvision's names and read back: the same tensors. A new head starts as
 * torchvision's does: the class prior 0.01 in cls_logits' bias, the other biases zero. */
static void
test_save_load (void)
{
  g_autoptr(VlDetHead) h = vl_det_head_new (W, K, 3);
  int64_t numel;
  float *cb = vl_det_head_tensor_data (h, vl_det_head_find_tensor (
                                         h, "head.classification_head.cls_logits.bias"),
                                       NULL, NULL, &numel);
  g_assert_cmpint (numel, ==, K);
  for (int k = 0; k < K; k++)
    g_assert_cmpfloat (fabsf (cb[k] + logf (99.0f)), <=, 1e-5f);
  float *rb = vl_det_head_tensor_data (h, vl_det_head_find_tensor (
                                         h, "head.regression_head.bbox_reg.bias"),
                                       NULL, NULL, NULL);
  g_assert_cmpfloat (rb[0], ==, 0.0f);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "det.safetensors", NULL);
  VlSafetensorsWriter *w = vl_safetensors_writer_new ();
  vl_det_head_add_to_writer (h, w);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  vl_safetensors_writer_free (w);
  g_autoptr(VlDetHead) h2 = vl_det_head_load (path, W, &error);
  g_assert_no_error (error);
  for (int i = 0; i < vl_det_head_n_tensors (h); i++)
    {
      int64_t n1, n2;
      float *a = vl_det_head_tensor_data (h, i, NULL, NULL, &n1);
      float *b = vl_det_head_tensor_data (h2, i, NULL, NULL, &n2);
      g_assert_cmpint (n1, ==, n2);
      g_assert_cmpmem (a, n1 * sizeof (float), b, n2 * sizeof (float));
    }
  /* another width: an error naming the file, the tensor and both shapes */
  g_autoptr(VlDetHead) h3 = vl_det_head_load (path, 8, &error);
  g_assert_null (h3);
  g_assert_error (error, VL_ERROR, VL_ERROR_MISMATCH);
  g_assert_nonnull (strstr (error->message, "det.safetensors"));
  g_assert_nonnull (strstr (error->message, "[3,16,3,3]"));
  g_assert_nonnull (strstr (error->message, "[3,8,3,3]"));
  g_assert_null (vl_det_head_new (W, 1, 0));
}

/* Through a random model without a classification head: the head's d tokens start
 * vl_model_backward_from (VL_GRAD_TOKENS); the final norm's gradient matches finite
 * differences of the FCOS loss through the whole model. */
static void
test_with_model (void)
{
  VlGeometry geo;
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_geometry_parse ("img=16,patch=4,chans=3,width=16,depth=1,heads=2", &geo,
                                    &error));
  g_autoptr(VlModel) m = vl_model_new_random (&geo, 3, 7);
  vl_model_set_head (m, VL_HEAD_NONE, 0, 0, 0);
  vl_model_lock (m, 1);
  g_autoptr(VlDetHead) h = vl_det_head_new (16, 3, 1);
  const int Bm = 2, S = 16, G = 4, Tm = 1 + G * G;
  g_autofree float *x = g_new (float, Bm * 3 * S * S);
  for (int i = 0; i < Bm * 3 * S * S; i++)
    x[i] = (float) sin (i * 0.37);
  const float b0[8] = { 1, 2, 9, 12, 6, 0, 15, 7 }, b1[4] = { 3, 3, 13, 14 };
  const int l0[2] = { 1, 2 }, l1[1] = { 2 };
  VlFcosTarget tg[2] = { { b0, l0, 2 }, { b1, l1, 1 } };
  int ni = vl_model_find_tensor (m, "norm.weight");
  float *nw = vl_model_tensor_data (m, ni, NULL, NULL, NULL);
  g_autofree float *dt = g_new (float, Bm * Tm * 16);
  g_assert_true (vl_model_forward (m, x, Bm, S, S, VL_FORWARD_TRAIN, &error));
  vl_det_head_forward (h, vl_model_tokens_final (m), Bm, Tm, 1, G, G, 4);
  vl_det_head_loss (h, tg, NULL);
  vl_det_head_backward (h, dt);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_TOKENS, dt, &error));
  g_autofree float *g = g_memdup2 (vl_model_tensor_grad (m, ni), sizeof (float) * 16);
  double num = 0, den = 0;
  for (int j = 0; j < 16; j++)
    {
      float w0 = nw[j];
      double l[2];
      for (int s = 0; s < 2; s++)
        {
          nw[j] = w0 + (s ? -1e-2f : 1e-2f);
          g_assert_true (vl_model_forward (m, x, Bm, S, S, VL_FORWARD_INFER, &error));
          vl_det_head_forward (h, vl_model_tokens_final (m), Bm, Tm, 1, G, G, 4);
          l[s] = vl_det_head_loss (h, tg, NULL);
        }
      nw[j] = w0;
      double fd = (l[0] - l[1]) / 2e-2;
      num += (fd - g[j]) * (fd - g[j]);
      den += fd * fd;
    }
  g_assert_cmpfloat (den, >, 0);
  g_assert_cmpfloat (sqrt (num / den), <=, 2e-2);
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_func ("/det-head/torchvision", test_torchvision);
  g_test_add_func ("/det-head/save-load", test_save_load);
  g_test_add_func ("/det-head/with-model", test_with_model);
  return g_test_run ();
}

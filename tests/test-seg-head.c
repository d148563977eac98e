/* test-seg-head.c: the segmentation heads (vl-seg-head.h) against PyTorch on the fixtures
 * tests/data/gen-seg-head.py writes (forward, masked cross-entropy, every parameter gradient,
 * d loss / d tokens, one AdamW step), by central finite differences of the whole head's loss,
 * and through a real (random) model: tokens -> head -> loss -> vl_model_backward_from. */
#include "vl-test-util.h"
#include "vl-seg-head.h"
#include "vl-seg.h"

#include <math.h>
#include <string.h>

#define B 2
#define NP 1
#define GH 3
#define GW 4
#define W 16
#define K 5
#define HO 13
#define WO 17
#define T (NP + GH * GW)

typedef struct {
  VlSegHead *h;
  float     *tokens;
  uint8_t   *labels;
} Ctx;

static double
head_loss (Ctx *c, float *dlogits)
{
  const float *z = vl_seg_head_forward (c->h, c->tokens, B, T, NP, GH, GW, HO, WO);
  return vl_seg_cross_entropy (dlogits, z, c->labels, (int64_t) B * HO * WO, K, VL_SEG_IGNORE,
                               NULL);
}

static void
fd_check (const char *what, Ctx *c, float *x, int64_t n, const float *g)
{
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++)
    {
      const float x0 = x[i];
      const double step = 1e-2 * MAX (1.0, fabs ((double) x0));
      const float xp = (float) (x0 + step), xm = (float) (x0 - step);
      x[i] = xp;
      double lp = head_loss (c, NULL);
      x[i] = xm;
      double lm = head_loss (c, NULL);
      x[i] = x0;
      double fd = (lp - lm) / ((double) xp - (double) xm);
      double d = fabs (fd - g[i]);
      num += d * d;
      den += fd * fd;
      if (!(d <= 2e-2 * MAX (fabs (fd), fabs ((double) g[i])) + 2e-4))
        {
          g_test_fail_printf ("%s[%" G_GINT64_FORMAT "]: analytic %.7g, finite differences %.7g",
                              what, i, g[i], fd);
          return;
        }
    }
  double rel = den > 0 ? sqrt (num / den) : sqrt (num);
  g_test_message ("%s: %" G_GINT64_FORMAT " elements, ||fd - g|| / ||fd|| %.3g", what, n, rel);
  g_assert_cmpfloat (rel, <=, 5e-3);
}

static void
test_head (gconstpointer data)
{
  const char *kind = data;
  g_autofree char *name = g_strdup_printf ("seg-head-%s.safetensors", kind);
  g_autofree char *path = vl_test_data_path ("dense", name, NULL);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlSegHead) h = vl_seg_head_from_safetensors (st, W, &error);
  g_assert_no_error (error);
  g_assert_cmpstr (vl_seg_head_kind_name (vl_seg_head_kind (h)), ==, kind);
  g_assert_cmpint (vl_seg_head_n_classes (h), ==, K);
  g_assert_cmpint (vl_seg_head_n_tensors (h), ==, strcmp (kind, "upconv") == 0 ? 8 : 2);

  int64_t n;
  g_autofree float *tokens = vl_test_read (st, "tokens", &n);
  g_assert_cmpint (n, ==, B * T * W);
  g_autofree float *labf = vl_test_read (st, "labels", &n);
  g_autofree uint8_t *labels = g_new (uint8_t, n);
  for (int64_t i = 0; i < n; i++)
    labels[i] = (uint8_t) labf[i];
  g_autofree float *want_logits = vl_test_read (st, "logits", &n);
  g_autofree float *want_loss = vl_test_read (st, "loss", &n);
  g_autofree float *want_dtok = vl_test_read (st, "d_tokens", &n);

  Ctx c = { h, tokens, labels };
  const int64_t NZ = (int64_t) B * HO * WO * K;
  g_autofree float *dz = g_new0 (float, NZ);
  double loss = head_loss (&c, dz);
  vl_test_assert_close ("logits", vl_seg_head_forward (h, tokens, B, T, NP, GH, GW, HO, WO),
                        want_logits, NZ, 1e-5, 1e-4);
  g_assert_cmpfloat (fabs (loss - want_loss[0]), <=, 1e-5 * fabs (want_loss[0]));

  g_autofree float *dtok = g_new (float, B * T * W);
  for (int i = 0; i < B * T * W; i++)
    dtok[i] = NAN;   /* overwritten, prefix included */
  vl_seg_head_backward (h, dz, dtok);
  vl_test_assert_close ("d_tokens", dtok, want_dtok, B * T * W, 1e-6, 1e-4);
  for (int b = 0; b < B; b++)
    for (int j = 0; j < W; j++)
      g_assert_cmpfloat (dtok[(b * T) * W + j], ==, 0.0f);

  for (int i = 0; i < vl_seg_head_n_tensors (h); i++)
    {
      const char *tn = vl_seg_head_tensor_name (h, i);
      g_autofree char *gname = g_strconcat ("grad.", tn, NULL);
      int64_t numel;
      vl_seg_head_tensor_data (h, i, NULL, NULL, &numel);
      g_autofree float *want = vl_test_read (st, gname, &n);
      g_assert_cmpint (n, ==, numel);
      vl_test_assert_close (gname, vl_seg_head_tensor_grad (h, i), want, n, 1e-6, 1e-4);
      g_assert_cmpint (vl_seg_head_tensor_decays (h, i), ==,
                       g_str_has_suffix (tn, "weight") && !g_str_has_prefix (tn, "decode_head.up.1"));
    }

  /* finite differences of the loss: the tokens and every parameter */
  g_autofree float *gtok = g_memdup2 (dtok, sizeof (float) * B * T * W);
  fd_check ("tokens", &c, tokens, B * T * W, gtok);
  for (int i = 0; i < vl_seg_head_n_tensors (h); i++)
    {
      int64_t numel;
      float *p = vl_seg_head_tensor_data (h, i, NULL, NULL, &numel);
      g_autofree float *g = g_memdup2 (vl_seg_head_tensor_grad (h, i), sizeof (float) * numel);
      fd_check (vl_seg_head_tensor_name (h, i), &c, p, numel, g);
    }

  /* one AdamW step (gradients of the fixture's point: recompute them, the FD left them) */
  memset (dz, 0, sizeof (float) * NZ);
  head_loss (&c, dz);
  vl_seg_head_backward (h, dz, NULL);
  VlAdamW opt = VL_ADAMW_DEFAULTS;
  opt.lr = 1e-2f;
  opt.weight_decay = 0.05f;
  vl_seg_head_adamw_step (h, &opt, 1.0f);
  for (int i = 0; i < vl_seg_head_n_tensors (h); i++)
    {
      g_autofree char *aname = g_strconcat ("adamw.", vl_seg_head_tensor_name (h, i), NULL);
      g_autofree float *want = vl_test_read (st, aname, &n);
      int step;
      vl_seg_head_optim_state (h, i, NULL, NULL, &step);
      g_assert_cmpint (step, ==, 1);
      vl_test_assert_close (aname, vl_seg_head_tensor_data (h, i, NULL, NULL, NULL), want, n,
                            1e-6, 1e-5);
    }
}

/* A checkpoint whose conv_seg does not fit the backbone's width: an error naming the file, the
 * tensor and both shapes; a width upconv cannot halve twice: no head. */
static void
test_bad_checkpoint (void)
{
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "bad-head.safetensors", NULL);
  VlSafetensorsWriter *w = vl_safetensors_writer_new ();
  float wdata[3 * 7] = { 0 }, bdata[3] = { 0 };
  int64_t sw[4] = { 3, 7, 1, 1 }, sb[1] = { 3 };
  vl_safetensors_writer_add_f32 (w, "decode_head.conv_seg.weight", 4, sw, wdata);
  vl_safetensors_writer_add_f32 (w, "decode_head.conv_seg.bias", 1, sb, bdata);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_safetensors_writer_write (w, path, &error));
  vl_safetensors_writer_free (w);
  g_autoptr(VlSafetensors) st = vl_test_open (path);
  g_assert_true (vl_seg_head_in_safetensors (st));
  g_autoptr(VlSegHead) h = vl_seg_head_from_safetensors (st, 16, &error);
  g_assert_null (h);
  g_assert_error (error, VL_ERROR, VL_ERROR_MISMATCH);
  g_assert_nonnull (strstr (error->message, "bad-head.safetensors"));
  g_assert_nonnull (strstr (error->message, "[3,7,1,1]"));
  g_assert_nonnull (strstr (error->message, "[3,16,1,1]"));
  g_assert_null (vl_seg_head_new (VL_SEG_HEAD_UPCONV, 18, 3, 0));
  g_assert_null (vl_seg_head_new (VL_SEG_HEAD_LINEAR, 16, 0, 0));
}

/* Through a random model without a classification head: the head's d tokens start
 * vl_model_backward_from (VL_GRAD_TOKENS); the gradient of the final norm's weight matches
 * finite differences of the segmentation loss through the whole model. */
static void
test_with_model (void)
{
  VlGeometry geo;
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_geometry_parse ("img=16,patch=4,chans=3,width=16,depth=1,heads=2", &geo,
                                    &error));
  g_autoptr(VlModel) m = vl_model_new_random (&geo, 3, 7);
  vl_model_set_head (m, VL_HEAD_NONE, 0, 0, 0);
  vl_model_lock (m, 1);   /* the last group: the final norm */
  g_assert_cmpint (vl_model_n_trainable (m), ==, 32);
  g_autoptr(VlSegHead) h = vl_seg_head_new (VL_SEG_HEAD_UPCONV, 16, 3, 1);
  const int Bm = 2, S = 16, G = 4, Tm = 1 + G * G;
  g_autofree float *x = g_new (float, Bm * 3 * S * S);
  g_autofree uint8_t *lab = g_new (uint8_t, Bm * S * S);
  for (int i = 0; i < Bm * 3 * S * S; i++)
    x[i] = (float) sin (i * 0.37);
  for (int i = 0; i < Bm * S * S; i++)
    lab[i] = (uint8_t) (i % 7 == 0 ? 255 : (i / 5) % 3);
  int ni = vl_model_find_tensor (m, "norm.weight");
  g_assert_cmpint (ni, >=, 0);
  float *nw = vl_model_tensor_data (m, ni, NULL, NULL, NULL);

  g_autofree float *dz = g_new0 (float, Bm * S * S * 3);
  g_autofree float *dt = g_new (float, Bm * Tm * 16);
  g_assert_true (vl_model_forward (m, x, Bm, S, S, VL_FORWARD_TRAIN, &error));
  g_assert_cmpint (vl_model_n_tokens_last (m), ==, Tm);
  const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), Bm, Tm, 1, G, G, S, S);
  vl_seg_cross_entropy (dz, z, lab, Bm * S * S, 3, VL_SEG_IGNORE, NULL);
  vl_seg_head_backward (h, dz, dt);
  g_assert_true (vl_model_backward_from (m, VL_GRAD_TOKENS, dt, &error));
  g_autofree float *g = g_memdup2 (vl_model_tensor_grad (m, ni), sizeof (float) * 16);
  for (int j = 0; j < 16; j++)
    {
      float w0 = nw[j];
      double l[2];
      for (int s = 0; s < 2; s++)
        {
          nw[j] = w0 + (s ? -1e-2f : 1e-2f);
          vl_model_tensor_data (m, ni, NULL, NULL, NULL);
          g_assert_true (vl_model_forward (m, x, Bm, S, S, VL_FORWARD_INFER, &error));
          z = vl_seg_head_forward (h, vl_model_tokens_final (m), Bm, Tm, 1, G, G, S, S);
          l[s] = vl_seg_cross_entropy (NULL, z, lab, Bm * S * S, 3, VL_SEG_IGNORE, NULL);
        }
      nw[j] = w0;
      double fd = (l[0] - l[1]) / 2e-2;
      g_assert_cmpfloat (fabs (fd - g[j]), <=, 2e-2 * fabs (fd) + 2e-4);
    }
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  g_test_add_data_func ("/seg-head/linear", "linear", test_head);
  g_test_add_data_func ("/seg-head/upconv", "upconv", test_head);
  g_test_add_func ("/seg-head/bad-checkpoint", test_bad_checkpoint);
  g_test_add_func ("/seg-head/with-model", test_with_model);
  return g_test_run ();
}

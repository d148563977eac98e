/* test-dense.c: the dense-prediction kernels (vl-conv.h, vl-seg.h, vl-fcos.h, vl-coco-eval.h)
 * checked two ways: every forward and gradient against PyTorch / torchvision on the fixtures
 * tests/data/gen-dense.py writes to tests/data/dense/, and every backward by central finite
 * differences of its own forward (a scalar loss L = sum (out * R) for the layers, the loss itself
 * for the losses), in the style of test-kernels.c: steps on the float inputs themselves, divided by
 * the step the floats actually took, a tolerance per op with the noise it leaves room for. */
#include "vl-test-util.h"
#include "vl-conv.h"
#include "vl-seg.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

typedef double (*LossFunc) (void *ctx);

/* Central differences of loss (ctx) with respect to every x[i] (each stepped by
 * h * max (1, |x[i]|), restored afterwards) against the analytic gradient g:
 *   elementwise  |fd - g| <= rtol * max (|fd|, |g|) + atol
 *   whole vector ||fd - g|| / ||fd|| <= rel_vec. */
static void
check_grad_fd (const char *what, float *x, int64_t n, const float *g, LossFunc loss, void *ctx,
               double h, double rtol, double atol, double rel_vec)
{
  double num = 0.0, den = 0.0, worst = 0.0;
  for (int64_t i = 0; i < n; i++)
    {
      const float x0 = x[i];
      const double step = h * MAX (1.0, fabs ((double) x0));
      const float xp = (float) (x0 + step), xm = (float) (x0 - step);
      x[i] = xp;
      double lp = loss (ctx);
      x[i] = xm;
      double lm = loss (ctx);
      x[i] = x0;
      double fd = (lp - lm) / ((double) xp - (double) xm);
      double d = fabs (fd - g[i]);
      num += d * d;
      den += fd * fd;
      worst = MAX (worst, d);
      if (!(d <= rtol * MAX (fabs (fd), fabs ((double) g[i])) + atol))
        {
          g_test_fail_printf ("%s[%" G_GINT64_FORMAT "]: analytic %.7g, finite differences %.7g "
                              "(x = %.5g, rtol %.1g, atol %.1g)", what, i, g[i], fd, x0, rtol,
                              atol);
          return;
        }
    }
  double rel = den > 0 ? sqrt (num / den) : sqrt (num);
  g_test_message ("%s: %" G_GINT64_FORMAT " elements, max |fd - g| %.3g, ||fd - g|| / ||fd|| "
                  "%.3g", what, n, worst, rel);
  if (!(rel <= rel_vec))
    g_test_fail_printf ("%s: ||fd - g|| / ||fd|| = %.3g, above %.1g", what, rel, rel_vec);
}

static double
dot_d (const float *a, const float *b, int64_t n)
{
  double s = 0.0;
  for (int64_t i = 0; i < n; i++)
    s += (double) a[i] * (double) b[i];
  return s;
}

static gboolean
check_scalar (const char *what, double got, double want, double atol, double rtol)
{
  if (fabs (got - want) <= atol + rtol * fabs (want))
    {
      g_test_message ("%s: %.9g, expected %.9g", what, got, want);
      return TRUE;
    }
  g_test_fail_printf ("%s: got %.10g, expected %.10g (atol %.1g, rtol %.1g)", what, got, want,
                      atol, rtol);
  return FALSE;
}

static VlSafetensors *
open_fixture (const char *name)
{
  g_autofree char *file = g_strconcat (name, ".safetensors", NULL);
  g_autofree char *path = vl_test_data_path ("dense", file, NULL);
  return vl_test_open (path);
}

/* Reads "prefix.name" (or "name" when prefix is NULL); NULL when absent and optional. */
static float *
read_t (VlSafetensors *st, const char *prefix, const char *name, int64_t *n, gboolean optional)
{
  g_autofree char *full = prefix ? g_strconcat (prefix, ".", name, NULL) : g_strdup (name);
  if (optional && vl_safetensors_lookup (st, full) == NULL)
    return NULL;
  return vl_test_read (st, full, n);
}

static void
assert_numel (const char *what, int64_t got, int64_t want)
{
  if (got != want)
    g_error ("%s: %" G_GINT64_FORMAT " elements, expected %" G_GINT64_FORMAT, what, got, want);
}

/* ------------------------------------------------------------------ convolution */

typedef struct {
  VlConv2d c;
  float *inp, *w, *b, *R, *out;
  int64_t n_inp, n_w, n_out;
} ConvCase;

static double
conv_loss (void *ctx)
{
  ConvCase *k = ctx;
  vl_conv2d_forward (k->out, k->inp, k->w, k->b, &k->c, NULL);
  return dot_d (k->out, k->R, k->n_out);
}

static const char *conv_names[] = { "k3s1p1", "k3s2p1g2", "depthwise", "pointwise", "k4s4",
                                    "k5x3p1" };

static void
test_conv (gconstpointer data)
{
  const char *name = data;
  g_autoptr(VlSafetensors) st = open_fixture ("conv");
  int64_t n;
  g_autofree float *cfg = read_t (st, name, "config", &n, FALSE);
  assert_numel ("config", n, 11);
  ConvCase k = { .c = { (int) cfg[0], (int) cfg[1], (int) cfg[2], (int) cfg[3], (int) cfg[4],
                        (int) cfg[5], (int) cfg[6], (int) cfg[7], (int) cfg[8], (int) cfg[9] } };
  const VlConv2d *c = &k.c;
  g_autofree float *inp = read_t (st, name, "inp", &k.n_inp, FALSE);
  g_autofree float *w = read_t (st, name, "w", &k.n_w, FALSE);
  g_autofree float *b = read_t (st, name, "b", NULL, TRUE);
  g_autofree float *R = read_t (st, name, "R", &k.n_out, FALSE);
  g_autofree float *want = read_t (st, name, "out", NULL, FALSE);
  g_autofree float *want_dinp = read_t (st, name, "dinp", NULL, FALSE);
  g_autofree float *want_dw = read_t (st, name, "dw", NULL, FALSE);
  g_autofree float *want_db = read_t (st, name, "db", NULL, TRUE);
  g_assert_true ((b != NULL) == (cfg[10] != 0));
  k.inp = inp, k.w = w, k.b = b, k.R = R;
  assert_numel ("inp", k.n_inp, (int64_t) c->B * c->H * c->W * c->Cin);
  assert_numel ("out", k.n_out,
                (int64_t) c->B * vl_conv2d_out_h (c) * vl_conv2d_out_w (c) * c->Cout);

  /* forward against PyTorch, with caller-provided scratch */
  g_autofree float *out = g_new (float, k.n_out);
  g_autofree float *work = g_new (float, MAX (vl_conv2d_work_size (c), 1));
  vl_conv2d_forward (out, inp, w, b, c, work);
  vl_test_assert_close ("conv out", out, want, k.n_out, 1e-5, 1e-5);

  /* backward against PyTorch; it adds into its outputs, so start from 1 and subtract */
  g_autofree float *dinp = g_new (float, k.n_inp);
  g_autofree float *dw = g_new (float, k.n_w);
  g_autofree float *db = g_new (float, c->Cout);
  for (int64_t i = 0; i < k.n_inp; i++) dinp[i] = 1.0f;
  for (int64_t i = 0; i < k.n_w; i++) dw[i] = 1.0f;
  for (int i = 0; i < c->Cout; i++) db[i] = 1.0f;
  vl_conv2d_backward (dinp, dw, b ? db : NULL, R, inp, w, c, NULL);
  for (int64_t i = 0; i < k.n_inp; i++) dinp[i] -= 1.0f;
  for (int64_t i = 0; i < k.n_w; i++) dw[i] -= 1.0f;
  for (int i = 0; i < c->Cout; i++) db[i] -= 1.0f;
  vl_test_assert_close ("conv dinp", dinp, want_dinp, k.n_inp, 1e-5, 1e-5);
  vl_test_assert_close ("conv dw", dw, want_dw, k.n_w, 1e-5, 1e-5);
  if (b)
    vl_test_assert_close ("conv db", db, want_db, c->Cout, 1e-5, 1e-5);
  else
    for (int i = 0; i < c->Cout; i++)
      g_assert_cmpfloat (db[i], ==, 0.0f);

  /* each gradient alone (the others NULL) is the same */
  g_autofree float *dinp2 = g_new0 (float, k.n_inp);
  vl_conv2d_backward (dinp2, NULL, NULL, R, inp, w, c, work);
  vl_test_assert_close ("conv dinp alone", dinp2, want_dinp, k.n_inp, 1e-5, 1e-5);
  g_autofree float *dw2 = g_new0 (float, k.n_w);
  vl_conv2d_backward (NULL, dw2, NULL, R, inp, w, c, work);
  vl_test_assert_close ("conv dw alone", dw2, want_dw, k.n_w, 1e-5, 1e-5);

  /* finite differences: L is linear in each input, so only float noise (|L| ~ 10, 1e-6
   * relative, / 2h = 2e-2) is left */
  k.out = g_new (float, k.n_out);
  check_grad_fd ("conv d inp", inp, k.n_inp, dinp, conv_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  check_grad_fd ("conv d w", w, k.n_w, dw, conv_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  if (b)
    check_grad_fd ("conv d b", b, c->Cout, db, conv_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  g_free (k.out);
}

/* The general path (im2col + GEMM) and the pointwise path (one GEMM over the rows) agree with a
 * direct sum in double on a larger, odd-sized case. */
static void
test_conv_naive (void)
{
  static const VlConv2d cases[] = {
    { 2, 7, 9, 6, 10, 3, 3, 1, 1, 1 },
    { 1, 9, 8, 6, 9, 3, 3, 2, 0, 3 },
    { 2, 4, 5, 12, 7, 1, 1, 1, 0, 1 },
    { 1, 6, 7, 4, 4, 3, 2, 1, 2, 4 },
  };
  for (guint ci = 0; ci < G_N_ELEMENTS (cases); ci++)
    {
      const VlConv2d *c = &cases[ci];
      const int Ho = vl_conv2d_out_h (c), Wo = vl_conv2d_out_w (c);
      const int Cg = c->Cin / c->groups, Cog = c->Cout / c->groups;
      int64_t ni = (int64_t) c->B * c->H * c->W * c->Cin, nw = (int64_t) c->Cout * Cg * c->kh * c->kw;
      int64_t no = (int64_t) c->B * Ho * Wo * c->Cout;
      g_autofree float *inp = g_new (float, ni), *w = g_new (float, nw), *b = g_new (float, c->Cout);
      g_autofree float *out = g_new (float, no), *want = g_new (float, no);
      for (int64_t i = 0; i < ni; i++) inp[i] = (float) sin (0.37 * i + ci);
      for (int64_t i = 0; i < nw; i++) w[i] = (float) cos (0.91 * i - ci) * 0.5f;
      for (int i = 0; i < c->Cout; i++) b[i] = 0.1f * i;
      vl_conv2d_forward (out, inp, w, b, c, NULL);
      for (int bi = 0; bi < c->B; bi++)
        for (int oy = 0; oy < Ho; oy++)
          for (int ox = 0; ox < Wo; ox++)
            for (int o = 0; o < c->Cout; o++)
              {
                int g = o / Cog;
                double s = b[o];
                for (int ch = 0; ch < Cg; ch++)
                  for (int ky = 0; ky < c->kh; ky++)
                    for (int kx = 0; kx < c->kw; kx++)
                      {
                        int iy = oy * c->stride - c->pad + ky, ix = ox * c->stride - c->pad + kx;
                        if (iy < 0 || iy >= c->H || ix < 0 || ix >= c->W)
                          continue;
                        s += (double) inp[(((int64_t) bi * c->H + iy) * c->W + ix) * c->Cin +
                                          g * Cg + ch] *
                             w[(((int64_t) o * Cg + ch) * c->kh + ky) * c->kw + kx];
                      }
                want[(((int64_t) bi * Ho + oy) * Wo + ox) * c->Cout + o] = (float) s;
              }
      vl_test_assert_close ("conv vs direct sum", out, want, no, 1e-5, 1e-5);
    }
}

/* ------------------------------------------------------------------ transposed convolution */

typedef struct {
  int B, H, W, Cin, Cout;
  float *inp, *w, *b, *R, *out;
  int64_t n_out;
} ConvtCase;

static double
convt_loss (void *ctx)
{
  ConvtCase *k = ctx;
  vl_convt2x2_forward (k->out, k->inp, k->w, k->b, k->B, k->H, k->W, k->Cin, k->Cout, NULL);
  return dot_d (k->out, k->R, k->n_out);
}

static void
test_convt (void)
{
  g_autoptr(VlSafetensors) st = open_fixture ("convt");
  int64_t n, ni, nw, no;
  g_autofree float *cfg = read_t (st, NULL, "config", &n, FALSE);
  ConvtCase k = { (int) cfg[0], (int) cfg[1], (int) cfg[2], (int) cfg[3], (int) cfg[4] };
  g_autofree float *inp = read_t (st, NULL, "inp", &ni, FALSE);
  g_autofree float *w = read_t (st, NULL, "w", &nw, FALSE);
  g_autofree float *b = read_t (st, NULL, "b", NULL, FALSE);
  g_autofree float *R = read_t (st, NULL, "R", &no, FALSE);
  g_autofree float *want = read_t (st, NULL, "out", NULL, FALSE);
  g_autofree float *want_dinp = read_t (st, NULL, "dinp", NULL, FALSE);
  g_autofree float *want_dw = read_t (st, NULL, "dw", NULL, FALSE);
  g_autofree float *want_db = read_t (st, NULL, "db", NULL, FALSE);
  assert_numel ("out", no, (int64_t) k.B * 4 * k.H * k.W * k.Cout);
  assert_numel ("w", nw, (int64_t) k.Cin * k.Cout * 4);
  k.inp = inp, k.w = w, k.b = b, k.R = R, k.n_out = no;

  g_autofree float *out = g_new (float, no);
  g_autofree float *work = g_new (float, vl_convt2x2_work_size (k.B, k.H, k.W, k.Cout));
  vl_convt2x2_forward (out, inp, w, b, k.B, k.H, k.W, k.Cin, k.Cout, work);
  vl_test_assert_close ("convt out", out, want, no, 1e-5, 1e-5);

  g_autofree float *dinp = g_new (float, ni), *dw = g_new (float, nw), *db = g_new (float, k.Cout);
  for (int64_t i = 0; i < ni; i++) dinp[i] = 2.0f;
  for (int64_t i = 0; i < nw; i++) dw[i] = 2.0f;
  for (int i = 0; i < k.Cout; i++) db[i] = 2.0f;
  vl_convt2x2_backward (dinp, dw, db, R, inp, w, k.B, k.H, k.W, k.Cin, k.Cout, NULL);
  for (int64_t i = 0; i < ni; i++) dinp[i] -= 2.0f;
  for (int64_t i = 0; i < nw; i++) dw[i] -= 2.0f;
  for (int i = 0; i < k.Cout; i++) db[i] -= 2.0f;
  vl_test_assert_close ("convt dinp", dinp, want_dinp, ni, 1e-5, 1e-5);
  vl_test_assert_close ("convt dw", dw, want_dw, nw, 1e-5, 1e-5);
  vl_test_assert_close ("convt db", db, want_db, k.Cout, 1e-5, 1e-5);

  k.out = g_new (float, no);
  check_grad_fd ("convt d inp", inp, ni, dinp, convt_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  check_grad_fd ("convt d w", w, nw, dw, convt_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  check_grad_fd ("convt d b", b, k.Cout, db, convt_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  g_free (k.out);
}

/* ------------------------------------------------------------------ bilinear */

typedef struct {
  int B, H, W, C, Ho, Wo;
  float *inp, *R, *out;
  int64_t n_out;
} BilinearCase;

static double
bilinear_loss (void *ctx)
{
  BilinearCase *k = ctx;
  vl_bilinear_forward (k->out, k->inp, k->B, k->H, k->W, k->C, k->Ho, k->Wo);
  return dot_d (k->out, k->R, k->n_out);
}

static const char *bilinear_names[] = { "up", "down", "mixed", "x16" };

static void
test_bilinear (gconstpointer data)
{
  const char *name = data;
  g_autoptr(VlSafetensors) st = open_fixture ("bilinear");
  int64_t n, ni, no;
  g_autofree float *cfg = read_t (st, name, "config", &n, FALSE);
  BilinearCase k = { (int) cfg[0], (int) cfg[1], (int) cfg[2], (int) cfg[3], (int) cfg[4],
                     (int) cfg[5] };
  g_autofree float *inp = read_t (st, name, "inp", &ni, FALSE);
  g_autofree float *R = read_t (st, name, "R", &no, FALSE);
  g_autofree float *want = read_t (st, name, "out", NULL, FALSE);
  g_autofree float *want_dinp = read_t (st, name, "dinp", NULL, FALSE);
  assert_numel ("out", no, (int64_t) k.B * k.Ho * k.Wo * k.C);
  k.inp = inp, k.R = R, k.n_out = no;

  g_autofree float *out = g_new (float, no);
  vl_bilinear_forward (out, inp, k.B, k.H, k.W, k.C, k.Ho, k.Wo);
  vl_test_assert_close ("bilinear out", out, want, no, 1e-5, 1e-5);
  g_autofree float *dinp = g_new (float, ni);
  for (int64_t i = 0; i < ni; i++) dinp[i] = -1.0f;
  vl_bilinear_backward (dinp, R, k.B, k.H, k.W, k.C, k.Ho, k.Wo);
  for (int64_t i = 0; i < ni; i++) dinp[i] += 1.0f;
  vl_test_assert_close ("bilinear dinp", dinp, want_dinp, ni, 1e-5, 1e-5);
  k.out = g_new (float, no);
  check_grad_fd ("bilinear d inp", inp, ni, dinp, bilinear_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  g_free (k.out);
}

/* ------------------------------------------------------------------ channel LayerNorm */

typedef struct {
  int B, H, W, C;
  float *inp, *w, *b, *R, *out;
  int64_t n;
} Ln2dCase;

static double
ln2d_loss (void *ctx)
{
  Ln2dCase *k = ctx;
  vl_layernorm2d_forward (k->out, NULL, NULL, k->inp, k->w, k->b, k->B, k->H, k->W, k->C, 1e-6f);
  return dot_d (k->out, k->R, k->n);
}

static void
test_layernorm2d (void)
{
  g_autoptr(VlSafetensors) st = open_fixture ("layernorm2d");
  int64_t n, ni;
  g_autofree float *cfg = read_t (st, NULL, "config", &n, FALSE);
  Ln2dCase k = { (int) cfg[0], (int) cfg[1], (int) cfg[2], (int) cfg[3] };
  g_autofree float *inp = read_t (st, NULL, "inp", &ni, FALSE);
  g_autofree float *w = read_t (st, NULL, "w", NULL, FALSE);
  g_autofree float *b = read_t (st, NULL, "b", NULL, FALSE);
  g_autofree float *R = read_t (st, NULL, "R", NULL, FALSE);
  g_autofree float *want = read_t (st, NULL, "out", NULL, FALSE);
  g_autofree float *want_dinp = read_t (st, NULL, "dinp", NULL, FALSE);
  g_autofree float *want_dw = read_t (st, NULL, "dw", NULL, FALSE);
  g_autofree float *want_db = read_t (st, NULL, "db", NULL, FALSE);
  assert_numel ("inp", ni, (int64_t) k.B * k.H * k.W * k.C);
  k.inp = inp, k.w = w, k.b = b, k.R = R, k.n = ni;
  const int64_t rows = (int64_t) k.B * k.H * k.W;

  g_autofree float *out = g_new (float, ni);
  g_autofree float *mean = g_new (float, rows), *rstd = g_new (float, rows);
  vl_layernorm2d_forward (out, mean, rstd, inp, w, b, k.B, k.H, k.W, k.C, 1e-6f);
  vl_test_assert_close ("layernorm2d out", out, want, ni, 1e-5, 1e-5);
  g_autofree float *dinp = g_new0 (float, ni), *dw = g_new0 (float, k.C), *db = g_new0 (float, k.C);
  vl_layernorm2d_backward (dinp, dw, db, R, inp, w, mean, rstd, k.B, k.H, k.W, k.C);
  vl_test_assert_close ("layernorm2d dinp", dinp, want_dinp, ni, 1e-4, 1e-4);
  vl_test_assert_close ("layernorm2d dw", dw, want_dw, k.C, 1e-4, 1e-4);
  vl_test_assert_close ("layernorm2d db", db, want_db, k.C, 1e-4, 1e-4);
  /* inputs O(1) (std 2): h = 1e-2, float noise ~ 1e-6 * |L| / 2h, curvature h^2 ~ 1e-4 */
  k.out = g_new (float, ni);
  check_grad_fd ("layernorm2d d inp", inp, ni, dinp, ln2d_loss, &k, 1e-2, 1e-2, 2e-3, 2e-3);
  check_grad_fd ("layernorm2d d w", w, k.C, dw, ln2d_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  check_grad_fd ("layernorm2d d b", b, k.C, db, ln2d_loss, &k, 1e-2, 1e-3, 2e-3, 1e-4);
  g_free (k.out);
}

/* ------------------------------------------------------------------ segmentation */

typedef struct {
  float *logits;
  uint8_t *labels;
  int64_t N;
  int K;
} SegCeCase;

static double
seg_ce_loss (void *ctx)
{
  SegCeCase *k = ctx;
  return vl_seg_cross_entropy (NULL, k->logits, k->labels, k->N, k->K, VL_SEG_IGNORE, NULL);
}

static void
test_seg_ce (void)
{
  g_autoptr(VlSafetensors) st = open_fixture ("seg-ce");
  int64_t n, nz;
  g_autofree float *cfg = read_t (st, NULL, "config", &n, FALSE);
  const int64_t N = (int64_t) cfg[0] * cfg[1] * cfg[2];
  const int K = (int) cfg[3];
  g_autofree float *logits = read_t (st, NULL, "logits", &nz, FALSE);
  g_autofree float *labf = read_t (st, NULL, "labels", &n, FALSE);
  g_autofree float *want_loss = read_t (st, NULL, "loss", NULL, FALSE);
  g_autofree float *want_d = read_t (st, NULL, "dlogits", NULL, FALSE);
  assert_numel ("logits", nz, N * K);
  assert_numel ("labels", n, N);
  g_autofree uint8_t *labels = g_new (uint8_t, N);
  int64_t n_ignored = 0;
  for (int64_t i = 0; i < N; i++)
    {
      labels[i] = (uint8_t) labf[i];
      n_ignored += labels[i] == VL_SEG_IGNORE;
    }
  g_assert_cmpint (n_ignored, >, 0);   /* the fixture has ignored pixels */

  g_autofree float *d = g_new (float, nz);
  for (int64_t i = 0; i < nz; i++) d[i] = 0.5f;
  int64_t counted = -1;
  double loss = vl_seg_cross_entropy (d, logits, labels, N, K, VL_SEG_IGNORE, &counted);
  for (int64_t i = 0; i < nz; i++) d[i] -= 0.5f;
  g_assert_cmpint (counted, ==, N - n_ignored);
  check_scalar ("seg ce loss", loss, want_loss[0], 1e-6, 1e-6);
  vl_test_assert_close ("seg ce dlogits", d, want_d, nz, 1e-7, 1e-5);
  /* ignored pixels get no gradient */
  for (int64_t i = 0; i < N; i++)
    if (labels[i] == VL_SEG_IGNORE)
      for (int k = 0; k < K; k++)
        g_assert_cmpfloat (d[i * K + k], ==, 0.0f);

  /* smooth loss of O(1) logits: h = 1e-2, noise ~ 1e-7 / 2e-2, curvature ~ 1e-4 relative */
  SegCeCase k = { logits, labels, N, K };
  check_grad_fd ("seg ce d logits", logits, nz, d, seg_ce_loss, &k, 1e-2, 1e-3, 1e-6, 1e-4);

  /* every pixel ignored: 0 and no gradient (PyTorch would give NaN) */
  memset (labels, VL_SEG_IGNORE, N);
  memset (d, 0, nz * sizeof (float));
  g_assert_cmpfloat (vl_seg_cross_entropy (d, logits, labels, N, K, VL_SEG_IGNORE, &counted),
                     ==, 0.0);
  g_assert_cmpint (counted, ==, 0);
  for (int64_t i = 0; i < nz; i++)
    g_assert_cmpfloat (d[i], ==, 0.0f);
}

static void
test_seg_argmax (void)
{
  const float z[] = { 1, 3, 3, 0,   -1, -2, -3, -0.5f,   2, 2, 2, 2 };
  uint8_t p[3];
  vl_seg_argmax (p, z, 3, 4);
  g_assert_cmpint (p[0], ==, 1);   /* first of equal maxima */
  g_assert_cmpint (p[1], ==, 3);
  g_assert_cmpint (p[2], ==, 0);
}

static gboolean
same_or_both_nan (double a, double b, double tol)
{
  return (isnan (a) && isnan (b)) || fabs (a - b) <= tol;
}

static void
test_seg_metric (void)
{
  g_autoptr(VlSafetensors) st = open_fixture ("seg-metric");
  int64_t n, ns, K;
  g_autofree float *predf = read_t (st, NULL, "pred", &n, FALSE);
  g_autofree float *labf = read_t (st, NULL, "label", NULL, FALSE);
  g_autofree float *sizes = read_t (st, NULL, "sizes", &ns, FALSE);
  g_autofree float *want_iou = read_t (st, NULL, "iou", &K, FALSE);
  g_autofree float *want_acc = read_t (st, NULL, "acc", NULL, FALSE);
  g_autofree float *want_ai = read_t (st, NULL, "area_intersect", NULL, FALSE);
  g_autofree float *want_au = read_t (st, NULL, "area_union", NULL, FALSE);
  g_autofree float *want_ap = read_t (st, NULL, "area_pred", NULL, FALSE);
  g_autofree float *want_al = read_t (st, NULL, "area_label", NULL, FALSE);
  g_autofree float *summary = read_t (st, NULL, "summary", NULL, FALSE);
  g_autofree uint8_t *pred = g_new (uint8_t, n), *label = g_new (uint8_t, n);
  for (int64_t i = 0; i < n; i++)
    pred[i] = (uint8_t) predf[i], label[i] = (uint8_t) labf[i];

  g_autoptr(VlSegMetric) m = vl_seg_metric_new ((int) K, VL_SEG_IGNORE);
  /* something added before a reset must not count */
  vl_seg_metric_add (m, label, pred, n);
  vl_seg_metric_reset (m);
  int64_t off = 0;
  for (int64_t i = 0; i < ns; i++)   /* image by image, as an evaluation loop would */
    {
      vl_seg_metric_add (m, pred + off, label + off, (int64_t) sizes[i]);
      off += (int64_t) sizes[i];
    }
  g_assert_cmpint (off, ==, n);
  g_autofree double *iou = g_new (double, K), *acc = g_new (double, K);
  double macc, aacc;
  double miou = vl_seg_metric_compute (m, iou, acc, &macc, &aacc);
  for (int k = 0; k < K; k++)
    {
      g_assert_cmpfloat (m->area_intersect[k], ==, want_ai[k]);
      g_assert_cmpfloat (m->area_union[k], ==, want_au[k]);
      g_assert_cmpfloat (m->area_pred[k], ==, want_ap[k]);
      g_assert_cmpfloat (m->area_label[k], ==, want_al[k]);
      if (!same_or_both_nan (iou[k], want_iou[k], 1e-6) ||
          !same_or_both_nan (acc[k], want_acc[k], 1e-6))
        g_test_fail_printf ("class %d: IoU %g Acc %g, expected %g %g", k, iou[k], acc[k],
                            want_iou[k], want_acc[k]);
    }
  g_assert_true (isnan (iou[K - 1]));   /* the class absent from both */
  check_scalar ("mIoU", miou, summary[0], 1e-6, 0);
  check_scalar ("mAcc", macc, summary[1], 1e-6, 0);
  check_scalar ("aAcc", aacc, summary[2], 1e-6, 0);

  vl_seg_metric_reset (m);
  g_assert_true (isnan (vl_seg_metric_compute (m, NULL, NULL, &macc, &aacc)));
  g_assert_true (isnan (macc) && isnan (aacc));
}

/* ------------------------------------------------------------------ main */

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  for (guint i = 0; i < G_N_ELEMENTS (conv_names); i++)
    {
      g_autofree char *path = g_strconcat ("/dense/conv/", conv_names[i], NULL);
      g_test_add_data_func (path, conv_names[i], test_conv);
    }
  g_test_add_func ("/dense/conv/direct-sum", test_conv_naive);
  g_test_add_func ("/dense/convt/2x2", test_convt);
  for (guint i = 0; i < G_N_ELEMENTS (bilinear_names); i++)
    {
      g_autofree char *path = g_strconcat ("/dense/bilinear/", bilinear_names[i], NULL);
      g_test_add_data_func (path, bilinear_names[i], test_bilinear);
    }
  g_test_add_func ("/dense/layernorm2d", test_layernorm2d);
  g_test_add_func ("/dense/seg/cross-entropy", test_seg_ce);
  g_test_add_func ("/dense/seg/argmax", test_seg_argmax);
  g_test_add_func ("/dense/seg/metric", test_seg_metric);

  return g_test_run ();
}

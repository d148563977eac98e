/* test-dense.c: the dense-prediction kernels (vl-conv.h, vl-seg.h, vl-fcos.h, vl-coco-eval.h)
 * checked two ways: every forward and gradient against PyTorch / torchvision on the fixtures
 * tests/data/gen-dense.py writes to tests/data/dense/, and every backward by central finite
 * differences of its own forward (a scalar loss L = sum (out * R) for the layers, the loss itself
 * for the losses), in the style of test-kernels.c: steps on the float inputs themselves, divided by
 * the step the floats actually took, a tolerance per op with the noise it leaves room for. */
#include "vl-test-util.h"
#include "vl-conv.h"
#include "vl-seg.h"
#include "vl-fcos.h"
#include "vl-coco-eval.h"

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
                                    "k5x3p1", "depthwise-s2" };

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

/* The four paths (im2col + GEMM, the pointwise GEMM, the depthwise loops with multipliers 1
 * and 3, the stride-1 shift form with padding 2 and 0) agree with a direct sum in double on
 * larger, odd-sized cases. */
static void
test_conv_naive (void)
{
  static const VlConv2d cases[] = {
    { 2, 7, 9, 6, 10, 3, 3, 1, 1, 1 },
    { 1, 9, 8, 6, 9, 3, 3, 2, 0, 3 },
    { 2, 4, 5, 12, 7, 1, 1, 1, 0, 1 },
    { 1, 6, 7, 4, 4, 3, 2, 1, 2, 4 },
    { 2, 7, 6, 5, 15, 3, 3, 2, 1, 5 },
    { 2, 6, 7, 9, 4, 3, 2, 1, 2, 1 },
    { 1, 5, 5, 7, 7, 5, 5, 1, 0, 1 },
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

/* ------------------------------------------------------------------ detection losses */

typedef struct {
  float *x, *t;
  int64_t n;
  int kind;   /* 0 focal (0.25, 2), 1 focal (0.6, 1.5), 2 giou, 3 bce */
} DetLossCase;

static double
det_loss (void *ctx)
{
  DetLossCase *k = ctx;
  switch (k->kind)
    {
    case 0: return vl_sigmoid_focal_loss (NULL, k->x, k->t, k->n, 0.25f, 2.0f, 1.0f);
    case 1: return vl_sigmoid_focal_loss (NULL, k->x, k->t, k->n, 0.6f, 1.5f, 1.0f);
    case 2: return vl_giou_loss (NULL, k->x, k->t, k->n / 4, 1.0f);
    default: return vl_bce_with_logits (NULL, k->x, k->t, k->n, 1.0f);
    }
}

static const char *det_loss_names[] = { "focal", "focal2", "giou", "bce" };

static void
test_det_loss (gconstpointer data)
{
  const int kind = GPOINTER_TO_INT (data);
  const char *name = det_loss_names[kind];
  g_autoptr(VlSafetensors) st = open_fixture ("det-losses");
  int64_t n;
  g_autofree float *x = read_t (st, name, kind == 2 ? "pred" : "x", &n, FALSE);
  g_autofree float *t = read_t (st, name, kind == 2 ? "gt" : "t", NULL, FALSE);
  g_autofree float *want = read_t (st, name, "loss", NULL, FALSE);
  g_autofree float *want_d = read_t (st, name, kind == 2 ? "dpred" : "dx", NULL, FALSE);
  g_autofree float *d = g_new (float, n);
  const float scale = 0.75f;   /* the gradient is added, scaled */
  for (int64_t i = 0; i < n; i++) d[i] = 1.0f;
  double loss;
  switch (kind)
    {
    case 0: loss = vl_sigmoid_focal_loss (d, x, t, n, 0.25f, 2.0f, scale); break;
    case 1: loss = vl_sigmoid_focal_loss (d, x, t, n, 0.6f, 1.5f, scale); break;
    case 2: loss = vl_giou_loss (d, x, t, n / 4, scale); break;
    default: loss = vl_bce_with_logits (d, x, t, n, scale); break;
    }
  for (int64_t i = 0; i < n; i++) d[i] = (d[i] - 1.0f) / scale;
  check_scalar (name, loss, want[0], 1e-5, 1e-6);
  vl_test_assert_close (name, d, want_d, n, 2e-6, 1e-5);
  /* the losses are evaluated in double from the float inputs, so the only noise is double
   * rounding: small steps are safe. GIoU has kinks (its min / max, the overlap's edge) that a
   * step must not cross: h = 1e-5 (steps ~ 2e-4 on boxes of O(20)); the others h = 1e-3 */
  DetLossCase k = { x, t, n, kind };
  check_grad_fd (name, x, n, d, det_loss, &k, kind == 2 ? 1e-5 : 1e-3, 1e-3, 1e-6, 1e-4);
}

/* ------------------------------------------------------------------ FCOS */

typedef struct {
  int B, C, K, stride, gh, gw, A;
  VlSafetensors *st;
} FcosFixture;

static void
fcos_open (FcosFixture *f)
{
  f->st = open_fixture ("fcos");
  int64_t n;
  g_autofree float *cfg = read_t (f->st, NULL, "config", &n, FALSE);
  f->B = (int) cfg[0], f->C = (int) cfg[1], f->K = (int) cfg[2], f->stride = (int) cfg[3];
  f->gh = (int) cfg[4], f->gw = (int) cfg[5];
  f->A = f->gh * f->gw;
}

static void
test_fcos_anchors (void)
{
  FcosFixture f;
  fcos_open (&f);
  int64_t n;
  g_autofree float *want = read_t (f.st, NULL, "anchors", &n, FALSE);
  assert_numel ("anchors", n, (int64_t) f.A * 4);
  g_autofree float *a = g_new (float, n);
  vl_fcos_anchors (a, f.gh, f.gw, f.stride);
  vl_test_assert_close ("anchors", a, want, n, 0, 0);
  g_autofree float *want7 = read_t (f.st, NULL, "anchors7", &n, FALSE);
  assert_numel ("anchors7", n, 3 * 4 * 4);
  vl_fcos_anchors (a, 3, 4, 7);   /* round (+-3.5) = +-4: anchors 8 wide */
  vl_test_assert_close ("anchors stride 7", a, want7, n, 0, 0);
  vl_safetensors_free (f.st);
}

/* The head's three 3x3 convolutions (torchvision's FCOSHead with num_convs=0) through
 * vl_conv2d_forward: the same (B, A, K), (B, A, 4) after the ReLU and (B, A) as torchvision. */
static void
test_fcos_head (void)
{
  FcosFixture f;
  fcos_open (&f);
  static const struct { const char *w, *b, *out; int relu; } convs[] = {
    { "cls_logits.weight", "cls_logits.bias", "cls", 0 },
    { "bbox_reg.weight", "bbox_reg.bias", "reg", 1 },
    { "bbox_ctrness.weight", "bbox_ctrness.bias", "ctr", 0 },
  };
  g_autofree float *feats = read_t (f.st, NULL, "feats", NULL, FALSE);
  for (guint i = 0; i < G_N_ELEMENTS (convs); i++)
    {
      int64_t nb, no;
      g_autofree float *w = read_t (f.st, NULL, convs[i].w, NULL, FALSE);
      g_autofree float *b = read_t (f.st, NULL, convs[i].b, &nb, FALSE);
      g_autofree float *want = read_t (f.st, NULL, convs[i].out, &no, FALSE);
      VlConv2d c = { f.B, f.gh, f.gw, f.C, (int) nb, 3, 3, 1, 1, 1 };
      assert_numel (convs[i].out, no, (int64_t) f.B * f.A * nb);
      g_autofree float *out = g_new (float, no);
      vl_conv2d_forward (out, feats, w, b, &c, NULL);
      if (convs[i].relu)
        for (int64_t k = 0; k < no; k++)
          out[k] = MAX (out[k], 0.0f);
      vl_test_assert_close (convs[i].out, out, want, no, 1e-5, 1e-5);
    }
  vl_safetensors_free (f.st);
}

typedef struct {
  float *codes, *anchors, *R, *boxes;
  int64_t n;
} CoderCase;

static double
coder_loss (void *ctx)
{
  CoderCase *k = ctx;
  vl_box_decode (k->boxes, k->codes, k->anchors, k->n);
  return dot_d (k->boxes, k->R, k->n * 4);
}

static void
test_fcos_coder (void)
{
  enum { N = 12 };
  float anchors[N * 4], boxes[N * 4], codes[N * 4], back[N * 4], R[N * 4], d[N * 4];
  vl_fcos_anchors (anchors, 3, 4, 16);
  for (int i = 0; i < N; i++)
    {
      const float *a = anchors + i * 4;
      float *b = boxes + i * 4;
      b[0] = a[0] - 3.0f * (i % 3);
      b[1] = a[1] - 1.5f * (i % 4);
      b[2] = a[2] + 2.0f + i;
      b[3] = a[3] + 5.25f;
    }
  vl_box_encode (codes, anchors, boxes, N);
  /* by hand for the first: anchor (-8, -8, 8, 8), box (-8, -8, 10, 13.25) */
  check_scalar ("code l", codes[0], 0.5, 1e-7, 0);
  check_scalar ("code r", codes[2], 10.0 / 16.0, 1e-7, 0);
  check_scalar ("code b", codes[3], 13.25 / 16.0, 1e-7, 0);
  vl_box_decode (back, codes, anchors, N);
  vl_test_assert_close ("decode (encode (b))", back, boxes, N * 4, 1e-5, 1e-6);
  for (int i = 0; i < N * 4; i++)
    R[i] = (float) sin (1.3 * i), d[i] = 0.0f;
  vl_box_decode_backward (d, R, anchors, N);
  CoderCase k = { codes, anchors, R, back, N };
  check_grad_fd ("decode d codes", codes, N * 4, d, coder_loss, &k, 1e-2, 1e-3, 1e-4, 1e-4);
}

/* targets read from the fixture; the arrays stay alive with it */
typedef struct {
  VlFcosTarget t[8];
  float *boxes[8];
  int *labels[8];
} FcosTargets;

static void
fcos_read_targets (FcosFixture *f, FcosTargets *tg)
{
  g_assert_cmpint (f->B, <=, 8);
  for (int b = 0; b < f->B; b++)
    {
      g_autofree char *bn = g_strdup_printf ("boxes%d", b), *ln = g_strdup_printf ("labels%d", b);
      int64_t nb, nl;
      tg->boxes[b] = read_t (f->st, NULL, bn, &nb, FALSE);
      g_autofree float *lf = read_t (f->st, NULL, ln, &nl, FALSE);
      assert_numel (bn, nb, nl * 4);
      tg->labels[b] = g_new (int, MAX (nl, 1));
      for (int64_t i = 0; i < nl; i++)
        tg->labels[b][i] = (int) lf[i];
      tg->t[b] = (VlFcosTarget) { tg->boxes[b], tg->labels[b], (int) nl };
    }
}

static void
fcos_free_targets (FcosFixture *f, FcosTargets *tg)
{
  for (int b = 0; b < f->B; b++)
    g_free (tg->boxes[b]), g_free (tg->labels[b]);
}

static void
test_fcos_match (void)
{
  FcosFixture f;
  fcos_open (&f);
  FcosTargets tg;
  fcos_read_targets (&f, &tg);
  int64_t n;
  g_autofree float *anchors = read_t (f.st, NULL, "anchors", NULL, FALSE);
  g_autofree float *want = read_t (f.st, NULL, "matched", &n, FALSE);
  assert_numel ("matched", n, (int64_t) f.B * f.A);
  g_autofree int *m = g_new (int, f.A);
  int n_fg = 0, n_tie = 0;
  for (int b = 0; b < f.B; b++)
    {
      if (tg.t[b].n == 0)
        continue;   /* vl_fcos_loss handles empty images; torchvision gives -1 */
      vl_fcos_match (m, anchors, f.A, tg.t[b].boxes, tg.t[b].n, 1.5f, 0.0f, INFINITY);
      for (int a = 0; a < f.A; a++)
        {
          if (m[a] != (int) want[b * f.A + a])
            g_test_fail_printf ("image %d anchor %d: matched %d, torchvision %d", b, a, m[a],
                                (int) want[b * f.A + a]);
          n_fg += m[a] >= 0;
          n_tie += b == 0 && m[a] == 0;
        }
    }
  g_assert_cmpint (n_fg, >, 0);
  g_assert_cmpint (n_tie, >, 0);
  fcos_free_targets (&f, &tg);
  vl_safetensors_free (f.st);
}

typedef struct {
  float *cls, *reg, *ctr, *anchors;
  const VlFcosTarget *t;
  int B, A, K;
} FcosLossCase;

static double
fcos_total_loss (void *ctx)
{
  FcosLossCase *k = ctx;
  VlFcosLosses l;
  vl_fcos_loss (&l, NULL, NULL, NULL, NULL, k->cls, k->reg, k->ctr, k->anchors, k->t, k->B,
                k->A, k->K);
  return l.classification + l.bbox_regression + l.bbox_ctrness;
}

static void
test_fcos_loss (void)
{
  FcosFixture f;
  fcos_open (&f);
  FcosTargets tg;
  fcos_read_targets (&f, &tg);
  int64_t ncls, nreg, nctr;
  g_autofree float *anchors = read_t (f.st, NULL, "anchors", NULL, FALSE);
  g_autofree float *cls = read_t (f.st, NULL, "cls", &ncls, FALSE);
  g_autofree float *reg = read_t (f.st, NULL, "reg", &nreg, FALSE);
  g_autofree float *ctr = read_t (f.st, NULL, "ctr", &nctr, FALSE);
  g_autofree float *want = read_t (f.st, NULL, "losses", NULL, FALSE);
  g_autofree float *want_m = read_t (f.st, NULL, "matched", NULL, FALSE);
  g_autofree float *want_dcls = read_t (f.st, NULL, "dcls", NULL, FALSE);
  g_autofree float *want_dreg = read_t (f.st, NULL, "dreg", NULL, FALSE);
  g_autofree float *want_dctr = read_t (f.st, NULL, "dctr", NULL, FALSE);
  assert_numel ("cls", ncls, (int64_t) f.B * f.A * f.K);
  assert_numel ("ctr", nctr, (int64_t) f.B * f.A);

  g_autofree float *dcls = g_new0 (float, ncls), *dreg = g_new0 (float, nreg);
  g_autofree float *dctr = g_new0 (float, nctr);
  g_autofree int *m = g_new (int, f.B * f.A);
  VlFcosLosses l;
  vl_fcos_loss (&l, dcls, dreg, dctr, m, cls, reg, ctr, anchors, tg.t, f.B, f.A, f.K);
  int64_t fg = 0;
  for (int i = 0; i < f.B * f.A; i++)
    {
      g_assert_cmpint (m[i], ==, (int) want_m[i]);
      fg += m[i] >= 0;
    }
  g_assert_cmpint (l.n_foreground, ==, fg);
  check_scalar ("classification", l.classification, want[0], 1e-6, 1e-5);
  check_scalar ("bbox_regression", l.bbox_regression, want[1], 1e-6, 1e-5);
  check_scalar ("bbox_ctrness", l.bbox_ctrness, want[2], 1e-6, 1e-5);
  vl_test_assert_close ("d cls", dcls, want_dcls, ncls, 1e-6, 1e-4);
  vl_test_assert_close ("d reg", dreg, want_dreg, nreg, 1e-6, 1e-4);
  vl_test_assert_close ("d ctr", dctr, want_dctr, nctr, 1e-6, 1e-4);

  /* cls and ctr: the loss is double from the float logits, h = 1e-3 leaves only the curvature.
   * reg: the decoded box is rounded to float (~2e-6 px on boxes of ~30 px, times a gradient
   * ~1e-2: 2e-8 in L), and GIoU has kinks a step must not cross: h = 1e-4 (8e-4 px on 8-px
   * anchors), noise 2e-8 / 2e-4 = 1e-4.
   * Where the ReLU left a 0, a box side sits on its anchor's centre, and a box whose two
   * opposite codes are 0 has no width: a kink of GIoU's overlap test (torch takes one side, as
   * here), so for the differences the zeros are moved to 0.05 and the analytic gradient taken
   * again. */
  int n_zero = 0;
  for (int64_t i = 0; i < nreg; i++)
    if (reg[i] == 0.0f)
      reg[i] = 0.05f, n_zero++;
  g_assert_cmpint (n_zero, >, 0);
  memset (dcls, 0, ncls * sizeof (float));
  memset (dreg, 0, nreg * sizeof (float));
  memset (dctr, 0, nctr * sizeof (float));
  vl_fcos_loss (&l, dcls, dreg, dctr, NULL, cls, reg, ctr, anchors, tg.t, f.B, f.A, f.K);
  FcosLossCase k = { cls, reg, ctr, anchors, tg.t, f.B, f.A, f.K };
  check_grad_fd ("fcos d cls", cls, ncls, dcls, fcos_total_loss, &k, 1e-3, 1e-3, 1e-6, 1e-4);
  check_grad_fd ("fcos d reg", reg, nreg, dreg, fcos_total_loss, &k, 1e-4, 2e-3, 3e-4, 2e-3);
  check_grad_fd ("fcos d ctr", ctr, nctr, dctr, fcos_total_loss, &k, 1e-3, 1e-3, 1e-6, 1e-4);

  /* no box in the whole batch: only the focal loss, divided by 1 */
  VlFcosTarget none[8] = { { NULL, NULL, 0 } };
  memset (dreg, 0, nreg * sizeof (float));
  vl_fcos_loss (&l, NULL, dreg, NULL, NULL, cls, reg, ctr, anchors, none, f.B, f.A, f.K);
  g_assert_cmpint (l.n_foreground, ==, 0);
  g_assert_cmpfloat (l.bbox_regression, ==, 0.0);
  g_assert_cmpfloat (l.bbox_ctrness, ==, 0.0);
  g_autofree float *zeros = g_new0 (float, ncls);
  check_scalar ("all background", l.classification,
                vl_sigmoid_focal_loss (NULL, cls, zeros, ncls, 0.25f, 2.0f, 1.0f), 1e-9, 1e-9);
  for (int64_t i = 0; i < nreg; i++)
    g_assert_cmpfloat (dreg[i], ==, 0.0f);

  fcos_free_targets (&f, &tg);
  vl_safetensors_free (f.st);
}

static void
test_fcos_postprocess (gconstpointer data)
{
  const char *name = data;
  FcosFixture f;
  fcos_open (&f);
  g_autofree float *anchors = read_t (f.st, NULL, "anchors", NULL, FALSE);
  g_autofree float *cls = read_t (f.st, NULL, "cls", NULL, FALSE);
  g_autofree float *reg = read_t (f.st, NULL, "reg", NULL, FALSE);
  g_autofree float *ctr = read_t (f.st, NULL, "ctr", NULL, FALSE);
  g_autofree float *cfg = read_t (f.st, name, "config", NULL, FALSE);
  VlFcosPostprocess p = { cfg[0], cfg[1], (int) cfg[2], (int) cfg[3] };
  g_autofree VlDetection *dets = g_new (VlDetection, p.max_dets);
  const int H = f.gh * f.stride, W = f.gw * f.stride;
  int clipped = 0;
  for (int b = 0; b < f.B; b++)
    {
      g_autofree char *pre = g_strdup_printf ("%s%d", name, b);
      int64_t nd;
      g_autofree float *want_boxes = read_t (f.st, pre, "boxes", NULL, FALSE);
      g_autofree float *want_scores = read_t (f.st, pre, "scores", &nd, FALSE);
      g_autofree float *want_labels = read_t (f.st, pre, "labels", NULL, FALSE);
      int n = vl_fcos_postprocess (dets, cls + (int64_t) b * f.A * f.K, reg + (int64_t) b * f.A * 4,
                                   ctr + (int64_t) b * f.A, anchors, f.A, f.K, H, W, &p);
      g_assert_cmpint (n, ==, nd);
      for (int i = 0; i < n; i++)
        {
          g_assert_cmpint (dets[i].label, ==, (int) want_labels[i]);
          check_scalar ("score", dets[i].score, want_scores[i], 1e-6, 1e-6);
          vl_test_assert_close ("box", dets[i].box, want_boxes + i * 4, 4, 1e-4, 1e-6);
          clipped += dets[i].box[0] == 0.0f || dets[i].box[2] == (float) W;
        }
    }
  g_assert_cmpint (clipped, >, 0);   /* the fixture exercises the clipping */
  /* nothing above the threshold: no detection */
  VlFcosPostprocess none = p;
  none.score_thresh = 1.0f;
  g_assert_cmpint (vl_fcos_postprocess (dets, cls, reg, ctr, anchors, f.A, f.K, H, W, &none), ==, 0);
  vl_safetensors_free (f.st);
}

static void
test_nms (void)
{
  /* three overlapping boxes of class 0 (IoU 0.81 and 0.5 with the best), one of class 1 on top */
  const float boxes[] = { 0, 0, 10, 10,   1, 1, 10, 10,   5, 0, 15, 10,   0, 0, 10, 10 };
  const float scores[] = { 0.9f, 0.8f, 0.7f, 0.6f };
  const int labels[] = { 0, 0, 0, 1 };
  int keep[4];
  int n = vl_batched_nms (keep, boxes, scores, labels, 4, 0.6f);
  g_assert_cmpint (n, ==, 3);
  g_assert_cmpint (keep[0], ==, 0);
  g_assert_cmpint (keep[1], ==, 2);   /* IoU 1/3 with box 0: kept */
  g_assert_cmpint (keep[2], ==, 3);   /* another class: kept */
  n = vl_batched_nms (keep, boxes, scores, labels, 4, 0.3f);
  g_assert_cmpint (n, ==, 2);
}

/* ------------------------------------------------------------------ COCO AP */

static VlCocoBox *
coco_read_boxes (VlSafetensors *st, const char *prefix, const char *name, int cols, int *n)
{
  int64_t numel;
  g_autofree float *v = read_t (st, prefix, name, &numel, FALSE);
  g_assert_cmpint (numel % cols, ==, 0);
  *n = (int) (numel / cols);
  VlCocoBox *b = g_new0 (VlCocoBox, MAX (*n, 1));
  for (int i = 0; i < *n; i++)
    {
      const float *r = v + (int64_t) i * cols;
      b[i].image = (int) r[0];
      b[i].category = (int) r[1];
      memcpy (b[i].box, r + 2, sizeof b[i].box);
      b[i].score = cols > 6 ? r[6] : 0.0f;
    }
  return b;
}

static void
test_coco (gconstpointer data)
{
  const char *name = data;
  g_autoptr(VlSafetensors) st = open_fixture ("coco");
  int n_gt, n_dt;
  int64_t n;
  g_autofree VlCocoBox *gt = coco_read_boxes (st, name, "gt", 6, &n_gt);
  g_autofree VlCocoBox *dt = coco_read_boxes (st, name, "dt", 7, &n_dt);
  g_autofree float *cfg = read_t (st, name, "config", NULL, FALSE);
  g_autofree float *want = read_t (st, name, "stats", NULL, FALSE);
  g_autofree float *want_ap = read_t (st, name, "class_ap", &n, FALSE);
  g_autofree float *want_ap50 = read_t (st, name, "class_ap50", NULL, FALSE);
  const int n_images = (int) cfg[0], K = (int) cfg[1];
  assert_numel ("class_ap", n, K);
  VlCocoStats s;
  g_autofree double *ap = g_new (double, K), *ap50 = g_new (double, K);
  vl_coco_eval (&s, ap, ap50, gt, n_gt, dt, n_dt, n_images, K);
  /* the reference is stored as float32: 1e-6; one detection matched differently moves AP by
   * far more */
  check_scalar ("AP", s.ap, want[0], 1e-6, 0);
  check_scalar ("AP50", s.ap50, want[1], 1e-6, 0);
  check_scalar ("AP75", s.ap75, want[2], 1e-6, 0);
  check_scalar ("AR100", s.ar100, want[3], 1e-6, 0);
  for (int k = 0; k < K; k++)
    {
      check_scalar ("class AP", ap[k], want_ap[k], 1e-6, 0);
      check_scalar ("class AP50", ap50[k], want_ap50[k], 1e-6, 0);
    }
}

static void
test_coco_edges (void)
{
  /* detections equal to the ground truth: AP 1; none: AP 0; no ground truth at all: -1 */
  VlCocoBox gt[] = { { 0, 0, { 1, 2, 11, 7 }, 0 }, { 1, 0, { 3, 3, 7, 7 }, 0 },
                     { 1, 1, { 0, 0, 9, 9 }, 0 } };
  VlCocoBox dt[3];
  for (int i = 0; i < 3; i++)
    dt[i] = gt[i], dt[i].score = 0.5f + 0.1f * i;
  VlCocoStats s;
  double ap[3];
  vl_coco_eval (&s, ap, NULL, gt, 3, dt, 3, 3, 3);
  /* precision 1 / (1 + 2^-52), as pycocotools' */
  check_scalar ("AP of perfect detections", s.ap, 1.0, 1e-12, 0);
  check_scalar ("AR of perfect detections", s.ar100, 1.0, 1e-12, 0);
  g_assert_cmpfloat (ap[2], ==, -1.0);
  vl_coco_eval (&s, NULL, NULL, gt, 3, dt, 0, 3, 3);
  g_assert_cmpfloat (s.ap, ==, 0.0);
  g_assert_cmpfloat (s.ar100, ==, 0.0);
  vl_coco_eval (&s, ap, NULL, gt, 0, dt, 3, 3, 3);
  g_assert_cmpfloat (s.ap, ==, -1.0);
  g_assert_cmpfloat (ap[0], ==, -1.0);
  /* one box at IoU 0.58: matched for the thresholds .50 and .55 only; at IoU 0.6 exactly also
   * for .60 (an IoU equal to the threshold matches, and linspace's third value is 0.6 exactly) */
  VlCocoBox one = { 0, 0, { 0, 0, 10, 10 }, 0 }, det = { 0, 0, { 0, 0, 10, 5.8f }, 0.9f };
  vl_coco_eval (&s, NULL, NULL, &one, 1, &det, 1, 1, 1);
  check_scalar ("AP50 at IoU 0.58", s.ap50, 1.0, 1e-12, 0);
  check_scalar ("AP at IoU 0.58", s.ap, 0.2, 1e-12, 0);
  det.box[3] = 6.0f;
  vl_coco_eval (&s, NULL, NULL, &one, 1, &det, 1, 1, 1);
  check_scalar ("AP at IoU 0.6", s.ap, 0.3, 1e-12, 0);
}

/* ------------------------------------------------------------------ main */

/* vl_det_match / vl_det_image_errors: COCO's greedy rule at one threshold, per image. */
static void
test_det_errors (void)
{
  const VlCocoBox gt[] = {
    { 0, 0, { 10, 10, 60, 60 }, 0 },     /* image 0: a cat, found twice */
    { 1, 1, { 0, 0, 40, 40 }, 0 },       /* image 1: a dog nobody finds */
    { 2, 0, { 0, 0, 20, 20 }, 0 },       /* image 2: two cats, one found */
    { 2, 0, { 50, 50, 70, 70 }, 0 },
  };
  const VlCocoBox dt[] = {
    { 0, 0, { 12, 12, 58, 62 }, 0.9f },  /* matches the cat */
    { 0, 0, { 10, 10, 60, 60 }, 0.8f },  /* a duplicate: false */
    { 1, 0, { 0, 0, 40, 40 }, 0.7f },    /* the dog's box, called a cat: false, dog missed */
    { 2, 0, { 1, 1, 21, 21 }, 0.6f },    /* IoU 0.82 with the first cat */
    { 2, 0, { 50, 50, 58, 58 }, 0.5f },  /* IoU 0.16 with the second: false, cat missed */
    { 0, 0, { 100, 100, 120, 120 }, 0.1f },   /* under the threshold: neither */
  };
  int missed[3], fp[3];
  vl_det_image_errors (missed, fp, gt, G_N_ELEMENTS (gt), dt, G_N_ELEMENTS (dt), 3, 0.3f, 0.5f);
  g_assert_cmpint (missed[0], ==, 0);
  g_assert_cmpint (fp[0], ==, 1);
  g_assert_cmpint (missed[1], ==, 1);
  g_assert_cmpint (fp[1], ==, 1);
  g_assert_cmpint (missed[2], ==, 1);
  g_assert_cmpint (fp[2], ==, 1);
  gboolean dm[6], gm[4];
  vl_det_match (dm, gm, gt, 4, dt, 6, 0.3f, 0.5f);
  const gboolean want_dm[6] = { TRUE, FALSE, FALSE, TRUE, FALSE, FALSE };
  const gboolean want_gm[4] = { TRUE, FALSE, TRUE, FALSE };
  for (int i = 0; i < 6; i++)
    g_assert_cmpint (dm[i], ==, want_dm[i]);
  for (int i = 0; i < 4; i++)
    g_assert_cmpint (gm[i], ==, want_gm[i]);
  /* the higher score matches first: with the duplicate scoring higher it takes the cat */
  VlCocoBox swapped[2] = { dt[0], dt[1] };
  swapped[1].score = 0.95f;
  vl_det_match (dm, gm, gt, 1, swapped, 2, 0.3f, 0.5f);
  g_assert_false (dm[0]);
  g_assert_true (dm[1]);
  /* a stricter IoU: the first detection (IoU 0.84) no longer matches at 0.9 */
  vl_det_image_errors (missed, fp, gt, 1, dt, 1, 1, 0.3f, 0.9f);
  g_assert_cmpint (missed[0], ==, 1);
  g_assert_cmpint (fp[0], ==, 1);
  /* a threshold above every score: everything missed, nothing false */
  vl_det_image_errors (missed, fp, gt, 4, dt, 6, 3, 0.99f, 0.5f);
  g_assert_cmpint (missed[0] + missed[1] + missed[2], ==, 4);
  g_assert_cmpint (fp[0] + fp[1] + fp[2], ==, 0);
}

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
  for (guint i = 0; i < G_N_ELEMENTS (det_loss_names); i++)
    {
      g_autofree char *path = g_strconcat ("/dense/det-loss/", det_loss_names[i], NULL);
      g_test_add_data_func (path, GINT_TO_POINTER (i), test_det_loss);
    }
  g_test_add_func ("/dense/fcos/anchors", test_fcos_anchors);
  g_test_add_func ("/dense/fcos/head", test_fcos_head);
  g_test_add_func ("/dense/fcos/coder", test_fcos_coder);
  g_test_add_func ("/dense/fcos/match", test_fcos_match);
  g_test_add_func ("/dense/fcos/loss", test_fcos_loss);
  g_test_add_data_func ("/dense/fcos/postprocess/default", "post", test_fcos_postprocess);
  g_test_add_data_func ("/dense/fcos/postprocess/small", "post-small", test_fcos_postprocess);
  g_test_add_func ("/dense/fcos/nms", test_nms);
  static const char *coco_cases[] = { "case0", "case1", "case2", "case3", "case4" };
  for (guint i = 0; i < G_N_ELEMENTS (coco_cases); i++)
    {
      g_autofree char *path = g_strconcat ("/dense/coco/", coco_cases[i], NULL);
      g_test_add_data_func (path, coco_cases[i], test_coco);
    }
  g_test_add_func ("/dense/coco/edges", test_coco_edges);
  g_test_add_func ("/dense/coco/image-errors", test_det_errors);

  return g_test_run ();
}

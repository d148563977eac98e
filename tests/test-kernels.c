/* test-kernels.c: every backward checked by central finite differences (after ggml's
 * test-backend-ops: a random scalar loss L = sum (out * R), the analytic gradient from the kernel's
 * backward, (L(x + h) - L(x - h)) / 2h from its forward, a tolerance per op), the forwards that
 * have a simple definition against naive double-precision references, and the whole model's
 * gradient through vl-model.h by the same differences.
 *
 * Steps are taken on the float inputs themselves and the difference is divided by the step the
 * floats actually took, (x + h) - (x - h) after rounding, so that the only error left is the
 * forward's own float32 rounding (the "noise", divided by 2h) and the curvature (h^2).
 * Tolerances are written beside each check with the noise they leave room for.
 *
 * The model tests take their geometry from ../shared/fixtures/vit-timm-tiny (VITLAB_SHARED). */
#include "vl-test-util.h"
#include "vl-gemm.h"
#include "vl-kernels.h"
#include "vl-model.h"
#include "vl-rng.h"

#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ helpers */

static float
rnd (VlRng *r, double std)
{
  return (float) (vl_rng_normal (r) * std);
}

static void
fill_normal (VlRng *r, float *x, int64_t n, double mean, double std)
{
  for (int64_t i = 0; i < n; i++)
    x[i] = (float) (mean + vl_rng_normal (r) * std);
}

static double
dot_d (const float *a, const float *b, int64_t n)
{
  double s = 0.0;
  for (int64_t i = 0; i < n; i++)
    s += (double) a[i] * (double) b[i];
  return s;
}

/* |got - want| <= atol + rtol * |want| for a double, failing the test with `what` otherwise. */
static gboolean
check_scalar (const char *what, double got, double want, double atol, double rtol)
{
  if (fabs (got - want) <= atol + rtol * fabs (want))
    return TRUE;
  g_test_fail_printf ("%s: got %.10g, expected %.10g (atol %.1g, rtol %.1g)", what, got, want,
                      atol, rtol);
  return FALSE;
}

typedef double (*LossFunc) (void *ctx);

/* Central differences of loss (ctx) with respect to every x[i] (each x[i] stepped by
 * h * max (1, |x[i]|), x restored afterwards), against the analytic gradient g:
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

/* ------------------------------------------------------------------ layernorm */

enum { LN_N = 5, LN_C = 21 };   /* 21: vectors of 8 and 16, then a tail */

typedef struct {
  float inp[LN_N * LN_C];   /* (N, C) */
  float w[LN_C], b[LN_C];   /* (C) */
  float R[LN_N * LN_C];     /* (N, C) the loss weights, also d out */
  float out[LN_N * LN_C];
  float mean[LN_N], rstd[LN_N];
} LnCase;

static const float ln_eps = 1e-5f;

static void
ln_case_init (LnCase *c, uint64_t seed)
{
  VlRng r;
  vl_rng_seed (&r, seed);
  /* rows off-centre and of different spreads, so the mean and the variance both matter */
  for (int i = 0; i < LN_N; i++)
    fill_normal (&r, c->inp + i * LN_C, LN_C, 0.5 * i - 1.0, 0.5 + 0.4 * i);
  fill_normal (&r, c->w, LN_C, 1.0, 0.5);
  fill_normal (&r, c->b, LN_C, 0.0, 0.3);
  fill_normal (&r, c->R, LN_N * LN_C, 0.0, 1.0);
}

static double
ln_loss (void *data)
{
  LnCase *c = data;
  vl_layernorm_forward (c->out, NULL, NULL, c->inp, c->w, c->b, LN_N, LN_C, ln_eps);
  return dot_d (c->out, c->R, LN_N * LN_C);
}

/* rows of C features (C = 7: the scalar tails alone; 197: vectors of 16 and 8, then a tail),
 * against a double-precision reference */
static void
layernorm_forward_rows (int N, int C, guint64 seed)
{
  VlRng r;
  vl_rng_seed (&r, seed);
  g_autofree float *inp = g_new (float, (gsize) N * C), *out = g_new (float, (gsize) N * C);
  g_autofree float *w = g_new (float, C), *b = g_new (float, C);
  g_autofree float *mean = g_new (float, N), *rstd = g_new (float, N);
  fill_normal (&r, inp, (int64_t) N * C, 0.5, 2.0);
  fill_normal (&r, w, C, 1.0, 0.3);
  fill_normal (&r, b, C, 0.0, 0.3);
  vl_layernorm_forward (out, mean, rstd, inp, w, b, N, C, ln_eps);
  for (int i = 0; i < N; i++)
    {
      const float *x = inp + (int64_t) i * C;
      double m = 0, v = 0;
      for (int k = 0; k < C; k++)
        m += x[k];
      m /= C;
      for (int k = 0; k < C; k++)
        v += (x[k] - m) * (x[k] - m);
      double rs = 1.0 / sqrt (v / C + ln_eps);   /* biased variance, as torch */
      check_scalar ("mean", mean[i], m, 1e-6, 1e-6);
      check_scalar ("rstd", rstd[i], rs, 0, 1e-5);
      for (int k = 0; k < C; k++)
        check_scalar ("out", out[(int64_t) i * C + k], (x[k] - m) * rs * w[k] + b[k], 1e-5,
                      1e-5);
    }
}

static void
layernorm_forward_once (void)
{
  layernorm_forward_rows (LN_N, LN_C, 11);
  layernorm_forward_rows (3, 197, 12);
  layernorm_forward_rows (2, 192, 13);
}

static void every_kernel (void (*fn) (void));

/* on every kernel: the AVX2 one has a LayerNorm forward of its own */
static void
test_layernorm_forward (void)
{
  every_kernel (layernorm_forward_once);
}

static void
layernorm_backward_once (void)
{
  LnCase c;
  ln_case_init (&c, 12);
  vl_layernorm_forward (c.out, c.mean, c.rstd, c.inp, c.w, c.b, LN_N, LN_C, ln_eps);
  float dinp[LN_N * LN_C] = { 0 }, dw[LN_C] = { 0 }, db[LN_C] = { 0 };
  vl_layernorm_backward (dinp, dw, db, c.R, c.inp, c.w, c.mean, c.rstd, LN_N, LN_C);

  /* inputs O(1), h = 1e-2 * max (1, |x|): float noise in L ~ 1e-6, / 2h ~ 5e-5, and the h^2
   * term ~ 1e-4 relative; gradients are O(1). Seen: max |fd - g| 1e-4, ||fd - g|| / ||fd||
   * 3e-5. A dropped mean term or a wrong 1/C is >= 10 % off. */
  check_grad_fd ("layernorm d inp", c.inp, LN_N * LN_C, dinp, ln_loss, &c, 1e-2, 5e-3, 5e-4, 1e-3);
  check_grad_fd ("layernorm d weight", c.w, LN_C, dw, ln_loss, &c, 1e-2, 5e-3, 5e-4, 1e-3);
  check_grad_fd ("layernorm d bias", c.b, LN_C, db, ln_loss, &c, 1e-2, 5e-3, 5e-4, 1e-3);
}

static void
layernorm_accumulate_once (void)
{
  LnCase c;
  ln_case_init (&c, 13);
  vl_layernorm_forward (c.out, c.mean, c.rstd, c.inp, c.w, c.b, LN_N, LN_C, ln_eps);
  float dinp1[LN_N * LN_C] = { 0 }, dw1[LN_C] = { 0 }, db1[LN_C] = { 0 };
  float dinp2[LN_N * LN_C] = { 0 }, dw2[LN_C] = { 0 }, db2[LN_C] = { 0 };
  vl_layernorm_backward (dinp1, dw1, db1, c.R, c.inp, c.w, c.mean, c.rstd, LN_N, LN_C);
  /* called twice on zeroed outputs: twice the gradient (it adds) */
  vl_layernorm_backward (dinp2, dw2, db2, c.R, c.inp, c.w, c.mean, c.rstd, LN_N, LN_C);
  vl_layernorm_backward (dinp2, dw2, db2, c.R, c.inp, c.w, c.mean, c.rstd, LN_N, LN_C);
  float twice[LN_N * LN_C];
  for (int i = 0; i < LN_N * LN_C; i++)
    twice[i] = 2 * dinp1[i];
  vl_test_assert_close ("dinp twice", dinp2, twice, LN_N * LN_C, 1e-6, 1e-6);
  for (int i = 0; i < LN_C; i++)
    twice[i] = 2 * dw1[i];
  vl_test_assert_close ("dw twice", dw2, twice, LN_C, 1e-6, 1e-6);
  for (int i = 0; i < LN_C; i++)
    twice[i] = 2 * db1[i];
  vl_test_assert_close ("db twice", db2, twice, LN_C, 1e-6, 1e-6);

  /* onto non-zero outputs: prior + gradient */
  float dinp3[LN_N * LN_C], want[LN_N * LN_C];
  for (int i = 0; i < LN_N * LN_C; i++)
    {
      dinp3[i] = 0.25f * (float) i - 3.0f;
      want[i] = dinp3[i] + dinp1[i];
    }
  vl_layernorm_backward (dinp3, NULL, NULL, c.R, c.inp, c.w, c.mean, c.rstd, LN_N, LN_C);
  vl_test_assert_close ("dinp onto prior values", dinp3, want, LN_N * LN_C, 1e-6, 1e-6);

  /* frozen weight and bias (NULL): d inp unchanged, bit for bit */
  float dinp4[LN_N * LN_C] = { 0 };
  vl_layernorm_backward (dinp4, NULL, NULL, c.R, c.inp, c.w, c.mean, c.rstd, LN_N, LN_C);
  g_assert_cmpmem (dinp4, sizeof dinp4, dinp1, sizeof dinp1);
  /* and no d inp (the first layer's input): the weight gradients alone */
  float dw5[LN_C] = { 0 }, db5[LN_C] = { 0 };
  vl_layernorm_backward (NULL, dw5, db5, c.R, c.inp, c.w, c.mean, c.rstd, LN_N, LN_C);
  g_assert_cmpmem (dw5, sizeof dw5, dw1, sizeof dw1);
  g_assert_cmpmem (db5, sizeof db5, db1, sizeof db1);
}

/* ------------------------------------------------------------------ gelu, softmax */

/* Every way the products (and GELU and the softmax) run on this CPU: the AVX-512 kernels, the
 * AVX2 ones (also on an AVX-512 CPU), and the portable code with OpenBLAS. */
static void
every_kernel (void (*fn) (void))
{
  static const VlGemmIsa isas[] = { VL_GEMM_AVX512, VL_GEMM_AVX2, VL_GEMM_PLAIN };
  const VlGemmIsa was = vl_gemm_isa ();
  for (guint i = 0; i < G_N_ELEMENTS (isas); i++)
    {
      if (!vl_gemm_isa_supported (isas[i]))
        continue;
      vl_gemm_set_isa (isas[i]);
      g_assert_cmpint (vl_gemm_isa (), ==, isas[i]);
      g_assert_true (vl_gemm_enabled () == (isas[i] != VL_GEMM_PLAIN));
      g_test_message ("kernel: %s", vl_gemm_isa_name (isas[i]));
      fn ();
    }
  vl_gemm_set_isa (was);
}


static void
test_layernorm_backward (void)
{
  every_kernel (layernorm_backward_once);
}

static void
test_layernorm_accumulate (void)
{
  every_kernel (layernorm_accumulate_once);
}

/* ds = p (ds - rowsum (ds p)) scale over rows of 197 and 21 (vectors, then a tail), against
 * double precision */
static void
softmax_backward_once (void)
{
  static const int widths[] = { 197, 21, 5 };
  VlRng r;
  vl_rng_seed (&r, 47);
  for (guint wi = 0; wi < G_N_ELEMENTS (widths); wi++)
    {
      const int rows = 3, cols = widths[wi];
      g_autofree float *p = g_new (float, rows * cols), *ds = g_new (float, rows * cols);
      g_autofree float *d0 = g_new (float, rows * cols);
      fill_normal (&r, p, rows * cols, 0.0, 1.0);
      vl_softmax_rows (p, rows, cols);
      fill_normal (&r, ds, rows * cols, 0.0, 1.0);
      memcpy (d0, ds, sizeof (float) * rows * cols);
      vl_softmax_backward_rows (ds, p, rows, cols, 0.125f);
      for (int i = 0; i < rows; i++)
        {
          double dot = 0.0;
          for (int c = 0; c < cols; c++)
            dot += (double) d0[i * cols + c] * p[i * cols + c];
          for (int c = 0; c < cols; c++)
            check_scalar ("softmax backward", ds[i * cols + c],
                          p[i * cols + c] * (d0[i * cols + c] - dot) * 0.125, 1e-7, 1e-5);
        }
    }
}

static void
test_softmax_backward (void)
{
  every_kernel (softmax_backward_once);
}

enum { GELU_N = 40 };

typedef struct {
  float x[GELU_N], R[GELU_N], out[GELU_N];
} GeluCase;

static double
gelu_loss (void *data)
{
  GeluCase *c = data;
  vl_gelu_forward (c->out, c->x, GELU_N);
  return dot_d (c->out, c->R, GELU_N);
}

static void
gelu_backward_once (void)
{
  static const float fixed[] = { -10.f, -6.f, -4.f, -3.f, -1.f, -0.5f, -1e-3f, 0.f, 1e-3f, 0.3f,
                                 1.f, 2.5f, 4.f, 6.f, 10.f };
  GeluCase c;
  VlRng r;
  vl_rng_seed (&r, 21);
  memcpy (c.x, fixed, sizeof fixed);
  fill_normal (&r, c.x + G_N_ELEMENTS (fixed), GELU_N - G_N_ELEMENTS (fixed), 0.0, 2.0);
  fill_normal (&r, c.R, GELU_N, 0.0, 1.0);

  float g[GELU_N];
  vl_gelu_backward (g, c.x, c.R, GELU_N);
  /* the exact derivative Phi (x) + x phi (x), in double */
  for (int i = 0; i < GELU_N; i++)
    {
      double x = c.x[i];
      double d = 0.5 * (1.0 + erf (x / sqrt (2.0))) + x * exp (-0.5 * x * x) / sqrt (2.0 * G_PI);
      check_scalar ("gelu' against the closed form", g[i], c.R[i] * d, 1e-6, 1e-5);
    }
  check_scalar ("gelu'(0)", g[7] / c.R[7], 0.5, 1e-7, 0);
  check_scalar ("gelu'(10)", g[14] / c.R[14], 1.0, 1e-6, 0);
  check_scalar ("gelu'(-10)", g[0] / c.R[0], 0.0, 1e-12, 0);

  /* only one term of L changes per step: the noise is float rounding of gelu (x +- h), about
   * 1e-6 * |x| / 2h; h = 1e-3 * max (1, |x|) keeps the h^2 term under 1e-6 */
  check_grad_fd ("gelu d inp", c.x, GELU_N, g, gelu_loss, &c, 1e-3, 1e-3, 1e-4, 1e-3);

  /* dinp may alias dout */
  float alias[GELU_N];
  memcpy (alias, c.R, sizeof alias);
  vl_gelu_backward (alias, c.x, alias, GELU_N);
  g_assert_cmpmem (alias, sizeof alias, g, sizeof g);
}

static void
test_gelu_backward (void)
{
  every_kernel (gelu_backward_once);
}

static double
gelu_tanh_loss (void *data)
{
  GeluCase *c = data;
  vl_gelu_tanh_forward (c->out, c->x, GELU_N);
  return dot_d (c->out, c->R, GELU_N);
}

/* GELU's tanh approximation (SigLIP's): forward and derivative against the closed forms in
 * double, the derivative by finite differences, and the forward that keeps the derivative
 * against the two to the bit (a block's output must not depend on which is used) */
static void
gelu_tanh_once (void)
{
  static const float fixed[] = { -10.f, -6.f, -4.f, -3.f, -1.f, -0.5f, -1e-3f, 0.f, 1e-3f, 0.3f,
                                 1.f, 2.5f, 4.f, 6.f, 10.f };
  GeluCase c;
  VlRng r;
  vl_rng_seed (&r, 23);
  memcpy (c.x, fixed, sizeof fixed);
  fill_normal (&r, c.x + G_N_ELEMENTS (fixed), GELU_N - G_N_ELEMENTS (fixed), 0.0, 2.0);
  fill_normal (&r, c.R, GELU_N, 0.0, 1.0);
  float out[GELU_N], g[GELU_N], ones[GELU_N], d[GELU_N], kept[GELU_N], want_d[GELU_N];
  vl_gelu_tanh_forward (out, c.x, GELU_N);
  vl_gelu_tanh_backward (g, c.x, c.R, GELU_N);
  const double k = sqrt (2.0 / G_PI);
  for (int i = 0; i < GELU_N; i++)
    {
      const double x = c.x[i], u = k * (x + 0.044715 * x * x * x), t = tanh (u);
      check_scalar ("gelu_tanh against tanh", out[i], 0.5 * x * (1.0 + t),
                    3e-7 * MAX (1.0, fabs (x)), 1e-6);
      const double dd = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * k * (1.0 + 3 * 0.044715 * x * x);
      check_scalar ("gelu_tanh' against the closed form", g[i], c.R[i] * dd, 1e-6, 1e-5);
    }
  check_scalar ("gelu_tanh'(0)", g[7] / c.R[7], 0.5, 1e-7, 0);
  check_scalar ("gelu_tanh(-10)", out[0], 0.0, 1e-12, 0);
  check_grad_fd ("gelu_tanh d inp", c.x, GELU_N, g, gelu_tanh_loss, &c, 1e-3, 1e-3, 1e-4, 1e-3);
  for (int i = 0; i < GELU_N; i++)
    ones[i] = 1.0f;
  memcpy (d, c.x, sizeof d);
  vl_gelu_tanh_forward_deriv (kept, d, GELU_N);
  vl_gelu_tanh_backward (want_d, c.x, ones, GELU_N);
  vl_gelu_tanh_forward (out, c.x, GELU_N);
  g_assert_cmpmem (kept, sizeof kept, out, sizeof out);
  g_assert_cmpmem (d, sizeof d, want_d, sizeof want_d);
}

static void
test_gelu_tanh (void)
{
  every_kernel (gelu_tanh_once);
}

/* GELU (x) = x Phi (x) against erf in double, over lengths that leave every tail of 16 */
static void
gelu_forward_once (void)
{
  VlRng r;
  vl_rng_seed (&r, 23);
  for (int n = 1; n <= 40; n += 3)
    {
      float x[40], out[40];
      fill_normal (&r, x, n, 0.0, 3.0);
      x[0] = n % 2 ? -9.5f : 7.25f;
      vl_gelu_forward (out, x, n);
      for (int i = 0; i < n; i++)
        {
          double want = 0.5 * x[i] * (1.0 + erf (x[i] / sqrt (2.0)));
          check_scalar ("gelu against erf", out[i], want, 3e-7 * MAX (1.0, fabs (x[i])), 1e-6);
        }
    }
}

static void
test_gelu_forward (void)
{
  every_kernel (gelu_forward_once);
}

/* The forward that also leaves act' (x) in place of x: the forward's output to the bit, and the
 * derivative the backward gives for dout = 1 (GELU and QuickGELU) */
static void
gelu_forward_deriv_once (void)
{
  enum { N = 37 };
  VlRng r;
  vl_rng_seed (&r, 25);
  float x[N], ones[N], out[N], d[N], want_out[N], want_d[N];
  fill_normal (&r, x, N, 0.0, 3.0);
  x[0] = -12.0f, x[1] = 0.0f, x[2] = 9.0f;
  for (int i = 0; i < N; i++)
    ones[i] = 1.0f;
  for (int quick = 0; quick < 2; quick++)
    {
      memcpy (d, x, sizeof d);
      if (quick)
        {
          vl_quick_gelu_forward_deriv (out, d, N);
          vl_quick_gelu_forward (want_out, x, N);
          vl_quick_gelu_backward (want_d, x, ones, N);
        }
      else
        {
          vl_gelu_forward_deriv (out, d, N);
          vl_gelu_forward (want_out, x, N);
          vl_gelu_backward (want_d, x, ones, N);
        }
      /* bit for bit: a block's output must not depend on whether the derivative is kept */
      g_assert_cmpmem (out, sizeof out, want_out, sizeof want_out);
      vl_test_assert_close (quick ? "quick gelu'" : "gelu'", d, want_d, N, 1e-7, 1e-6);
    }
}

static void
test_gelu_forward_deriv (void)
{
  every_kernel (gelu_forward_deriv_once);
}

/* The softmax of rows against double precision: lengths around 16 and ViT's 197, logits far
 * apart (a row whose largest entry dwarfs the rest, exponentials that underflow) */
static void
softmax_once (void)
{
  static const int lens[] = { 1, 5, 16, 17, 33, 197 };
  VlRng r;
  vl_rng_seed (&r, 24);
  for (guint li = 0; li < G_N_ELEMENTS (lens); li++)
    {
      const int cols = lens[li], rows = 3;
      g_autofree float *x = g_new (float, rows * cols);
      g_autofree float *orig = g_new (float, rows * cols);
      fill_normal (&r, x, rows * cols, 0.0, 4.0);
      x[cols - 1] = 60.0f;             /* row 0: one entry far above the rest */
      for (int c = 0; c < cols; c++)   /* row 1: a spread wide enough to underflow */
        x[cols + c] = -150.0f + 300.0f * c / cols;
      memcpy (orig, x, sizeof (float) * rows * cols);
      vl_softmax_rows (x, rows, cols);
      for (int i = 0; i < rows; i++)
        {
          const float *o = orig + i * cols;
          double mx = -INFINITY, sum = 0.0;
          for (int c = 0; c < cols; c++)
            mx = MAX (mx, o[c]);
          for (int c = 0; c < cols; c++)
            sum += exp ((double) o[c] - mx);
          for (int c = 0; c < cols; c++)
            check_scalar ("softmax", x[i * cols + c], exp ((double) o[c] - mx) / sum, 1e-9, 2e-6);
        }
    }
}

static void
test_softmax_rows (void)
{
  every_kernel (softmax_once);
}

/* ------------------------------------------------------------------ attention */

enum { AT_T = 6, AT_H = 3, AT_D = 4, AT_W = AT_H * AT_D, AT_HEAD = 1 };

typedef struct {
  float qkv[AT_T * 3 * AT_W];   /* (T, 3W) as (T, 3, H, D) */
  float R[AT_T * AT_W];         /* (T, W) */
  float out[AT_T * AT_W];       /* (T, W) */
  float att[AT_T * AT_T];       /* (T, T) */
} AttCase;

static double
att_loss (void *data)
{
  AttCase *c = data;
  memset (c->out, 0, sizeof c->out);
  vl_attention_forward (c->out, c->att, c->qkv, AT_T, AT_W, AT_D, AT_HEAD);
  return dot_d (c->out, c->R, AT_T * AT_W);
}

static void
att_case_init (AttCase *c, uint64_t seed)
{
  VlRng r;
  vl_rng_seed (&r, seed);
  /* q.k / sqrt (D) of spread ~1: the softmax is far from uniform and far from one-hot */
  fill_normal (&r, c->qkv, AT_T * 3 * AT_W, 0.0, 1.0);
  fill_normal (&r, c->R, AT_T * AT_W, 0.0, 1.0);
}

static void
attention_forward_once (void)
{
  /* the keys as they are (OpenBLAS), then packed (vl_gemm_packed, where the CPU has it), then
   * packed once by vl_attention_pack_keys and shared by query-row chunks of 1, 2 and 3 rows */
  float *kpack = g_aligned_alloc (vl_packed_numel (AT_T, AT_D), sizeof (float), 64);
  for (int packed = 0; packed < 3; packed++)
    {
      AttCase c;
      att_case_init (&c, 31);
      const float sentinel = -777.f;
      for (int i = 0; i < AT_T * AT_W; i++)
        c.out[i] = sentinel;
      if (packed < 2)
        vl_attention_forward_rows (c.out, c.att, c.qkv, AT_T, AT_W, AT_D, AT_HEAD, 0, AT_T,
                                   packed ? kpack : NULL, FALSE);
      else
        {
          const gboolean have = vl_attention_pack_keys (kpack, c.qkv, AT_T, AT_W, AT_D, AT_HEAD);
          g_assert_true (have == vl_gemm_enabled ());
          for (int q0 = 0, n = 1; q0 < AT_T; q0 += n, n++)
            vl_attention_forward_rows (c.out, c.att, c.qkv, AT_T, AT_W, AT_D, AT_HEAD, q0,
                                       MIN (AT_T, q0 + n), have ? kpack : NULL, have);
        }

      const int ld = 3 * AT_W;
      for (int i = 0; i < AT_T; i++)
        {
          double s[AT_T], mx = -INFINITY, sum = 0;
          for (int j = 0; j < AT_T; j++)
            {
              s[j] = 0;
              for (int d = 0; d < AT_D; d++)
                s[j] += (double) c.qkv[i * ld + AT_HEAD * AT_D + d] *
                        c.qkv[j * ld + AT_W + AT_HEAD * AT_D + d];
              s[j] /= sqrt (AT_D);
              mx = MAX (mx, s[j]);
            }
          for (int j = 0; j < AT_T; j++)
            sum += (s[j] = exp (s[j] - mx));
          for (int j = 0; j < AT_T; j++)
            check_scalar ("att", c.att[i * AT_T + j], s[j] / sum, 1e-6, 1e-5);
          for (int d = 0; d < AT_D; d++)
            {
              double o = 0;
              for (int j = 0; j < AT_T; j++)
                o += s[j] / sum * c.qkv[j * ld + 2 * AT_W + AT_HEAD * AT_D + d];
              check_scalar ("out", c.out[i * AT_W + AT_HEAD * AT_D + d], o, 1e-5, 1e-5);
            }
          /* other heads' columns untouched */
          for (int col = 0; col < AT_W; col++)
            if (col / AT_D != AT_HEAD)
              g_assert_cmpfloat (c.out[i * AT_W + col], ==, sentinel);
        }
    }
  g_aligned_free (kpack);
}

static void
attention_backward_once (void)
{
  /* the values as they are (OpenBLAS), then packed (vl_gemm_packed, where the CPU has it) */
  float *vpack = g_aligned_alloc (vl_packed_numel (AT_T, AT_D), sizeof (float), 64);
  for (int packed = 0; packed < 2; packed++)
    {
      AttCase c;
      att_case_init (&c, 32);
      att_loss (&c);

      const float sentinel = 12345.f;
      float dqkv[AT_T * 3 * AT_W], dscore[AT_T * AT_T];
      for (int i = 0; i < AT_T * 3 * AT_W; i++)
        dqkv[i] = sentinel;
      for (int i = 0; i < AT_T * AT_T; i++)
        dscore[i] = NAN;   /* scratch: must be written before it is read */
      vl_attention_backward (dqkv, dscore, c.R, c.att, c.qkv, AT_T, AT_W, AT_D, AT_HEAD,
                             packed ? vpack : NULL);

      /* this head's q, k, v columns are overwritten (a sentinel left in them would fail the
       * differences below), the others are left alone; their true gradient is 0 */
      float g[AT_T * 3 * AT_W];
      for (int t = 0; t < AT_T; t++)
        for (int col = 0; col < 3 * AT_W; col++)
          {
            int i = t * 3 * AT_W + col;
            if ((col % AT_W) / AT_D == AT_HEAD)
              g[i] = dqkv[i];
            else
              {
                g_assert_cmpfloat (dqkv[i], ==, sentinel);
                g[i] = 0.f;
              }
          }
      /* all 3W columns, so that a forward reading another head's columns would show too; inputs
       * O(1), h = 1e-2: noise ~ 1e-7 * 6 / 2e-2 ~ 3e-5, h^2 term ~ 1e-4 */
      check_grad_fd ("attention d qkv", c.qkv, AT_T * 3 * AT_W, g, att_loss, &c, 1e-2, 5e-3, 2e-4,
                     1e-3);
    }
  g_aligned_free (vpack);
}

/* ------------------------------------------------------------------ cross-entropy */

enum { CE_B = 4, CE_K = 5 };

/* PyTorch's F.cross_entropy (label_smoothing = ls), mean over the batch, in double. */
static double
ce_ref (const float *logits, const int *targets, int B, int K, double ls)
{
  double total = 0.0;
  for (int b = 0; b < B; b++)
    {
      const float *z = logits + (int64_t) b * K;
      double mx = z[0], s = 0.0, mean_neg_logp = 0.0;
      for (int k = 1; k < K; k++)
        mx = MAX (mx, (double) z[k]);
      for (int k = 0; k < K; k++)
        s += exp ((double) z[k] - mx);
      double lse = mx + log (s);
      for (int k = 0; k < K; k++)
        mean_neg_logp += (lse - z[k]) / K;
      total += (1.0 - ls) * (lse - z[targets[b]]) + ls * mean_neg_logp;
    }
  return total / B;
}

typedef struct {
  float logits[CE_B * CE_K];
  int targets[CE_B];
  float ls;
} CeCase;

static double
ce_loss (void *data)
{
  CeCase *c = data;
  return vl_cross_entropy (NULL, c->logits, c->targets, CE_B, CE_K, c->ls);
}

static void
ce_case_init (CeCase *c, uint64_t seed, float ls)
{
  VlRng r;
  vl_rng_seed (&r, seed);
  fill_normal (&r, c->logits, CE_B * CE_K, 0.0, 2.0);
  for (int b = 0; b < CE_B; b++)
    c->targets[b] = (int) (vl_rng_next (&r) % CE_K);
  c->ls = ls;
}

static void
test_attention_forward (void)
{
  every_kernel (attention_forward_once);
}

static void
test_attention_backward (void)
{
  every_kernel (attention_backward_once);
}

static void
test_cross_entropy_loss (void)
{
  static const float smoothing[] = { 0.0f, 0.1f, 0.5f };
  for (guint s = 0; s < G_N_ELEMENTS (smoothing); s++)
    {
      CeCase c;
      ce_case_init (&c, 41 + s, smoothing[s]);
      float dz[CE_B * CE_K];
      double loss = vl_cross_entropy (dz, c.logits, c.targets, CE_B, CE_K, c.ls);
      check_scalar ("loss", loss, ce_ref (c.logits, c.targets, CE_B, CE_K, c.ls), 0, 1e-12);
      /* without the gradient, the same loss */
      g_assert_cmpfloat (ce_loss (&c), ==, loss);
      /* d logits rows sum to 0 (p and the smoothed target both sum to 1) */
      for (int b = 0; b < CE_B; b++)
        {
          double s0 = 0;
          for (int k = 0; k < CE_K; k++)
            s0 += dz[b * CE_K + k];
          check_scalar ("row sum of d logits", s0, 0.0, 1e-7, 0);
        }
    }

  /* large logits: the max is subtracted, nothing overflows */
  float big[2 * 3] = { 1000.f, -1000.f, 999.f, -500.f, 80.f, 90.f };
  int tb[2] = { 2, 0 };
  float dz[6];
  double loss = vl_cross_entropy (dz, big, tb, 2, 3, 0.1f);
  g_assert_true (isfinite (loss));
  check_scalar ("loss of large logits", loss, ce_ref (big, tb, 2, 3, 0.1f), 0, 1e-12);
  for (int i = 0; i < 6; i++)
    g_assert_true (isfinite (dz[i]));

  /* hand-computed: logits (0, 0) target 0: log 2, whatever the smoothing */
  float zero[2] = { 0.f, 0.f };
  int t0 = 0;
  check_scalar ("log 2", vl_cross_entropy (NULL, zero, &t0, 1, 2, 0.3f), G_LN2, 1e-15, 0);
  /* logits (ln 3, 0) target 1, ls 0.2: p = (3/4, 1/4); 0.8 * ln 4 + 0.2 * (ln 4 + ln 4/3) / 2 */
  float z2[2] = { (float) log (3.0), 0.f };
  int t1 = 1;
  double want = 0.8 * log (4.0) + 0.2 * 0.5 * (log (4.0) + log (4.0 / 3.0));
  check_scalar ("hand-computed", vl_cross_entropy (NULL, z2, &t1, 1, 2, 0.2f), want, 1e-7, 0);
}

static void
test_cross_entropy_backward (void)
{
  static const float smoothing[] = { 0.0f, 0.1f };
  for (guint s = 0; s < G_N_ELEMENTS (smoothing); s++)
    {
      CeCase c;
      ce_case_init (&c, 51 + s, smoothing[s]);
      float dz[CE_B * CE_K];
      vl_cross_entropy (dz, c.logits, c.targets, CE_B, CE_K, c.ls);
      /* the loss is computed in double: the differences are good to ~1e-9 (h^2 and the float
       * rounding of the analytic gradient dominate), so the tolerance can be tight */
      check_grad_fd (s == 0 ? "cross-entropy d logits" : "cross-entropy d logits (ls 0.1)",
                     c.logits, CE_B * CE_K, dz, ce_loss, &c, 1e-3, 1e-4, 1e-6, 1e-5);
      /* and the closed form (p - t) / B */
      for (int b = 0; b < CE_B; b++)
        {
          const float *z = c.logits + b * CE_K;
          double mx = -INFINITY, sum = 0;
          for (int k = 0; k < CE_K; k++)
            mx = MAX (mx, (double) z[k]);
          for (int k = 0; k < CE_K; k++)
            sum += exp (z[k] - mx);
          for (int k = 0; k < CE_K; k++)
            {
              double t = c.ls / CE_K + (k == c.targets[b] ? 1.0 - c.ls : 0.0);
              check_scalar ("(p - t) / B", dz[b * CE_K + k], (exp (z[k] - mx) / sum - t) / CE_B,
                            1e-8, 1e-6);
            }
        }
    }
}

static void
test_cross_entropy_non_finite (void)
{
  float z[3] = { 0.5f, NAN, 1.f };
  int t = 0;
  g_assert_true (isnan (vl_cross_entropy (NULL, z, &t, 1, 3, 0.0f)));
  z[1] = INFINITY;
  g_assert_true (isnan (vl_cross_entropy (NULL, z, &t, 1, 3, 0.1f)));
  /* -inf: vl_model_backward only needs "not finite" (it tests isfinite) */
  z[1] = -INFINITY;
  g_assert_false (isfinite (vl_cross_entropy (NULL, z, &t, 1, 3, 0.0f)));
  g_assert_false (isfinite (vl_cross_entropy (NULL, z, &t, 1, 3, 0.1f)));
}

/* ------------------------------------------------------------------ bicubic */

/* Keys' cubic convolution kernel with a = -0.5, written out piecewise. */
static double
keys_cubic (double x)
{
  const double a = -0.5;
  double t = fabs (x);
  if (t <= 1.0)
    return (a + 2) * t * t * t - (a + 3) * t * t + 1;
  if (t < 2.0)
    return a * t * t * t - 5 * a * t * t + 8 * a * t - 4 * a;
  return 0.0;
}

/* F.interpolate (mode='bicubic', antialias=True, align_corners=False) along one axis, from its
 * definition: w (out, in), in double. */
static void
bicubic_ref (double *w, int out, int in)
{
  double scale = (double) in / out;
  double stretch = MAX (scale, 1.0);
  double support = 2.0 * stretch;
  for (int i = 0; i < out; i++)
    {
      double center = scale * (i + 0.5);
      int lo = (int) (center - support + 0.5), hi = (int) (center + support + 0.5);
      double sum = 0;
      for (int j = 0; j < in; j++)
        {
          double k = j >= lo && j < hi ? keys_cubic ((j - center + 0.5) / stretch) : 0.0;
          w[i * in + j] = k;
          sum += k;
        }
      for (int j = 0; j < in; j++)
        w[i * in + j] /= sum;
    }
}

static void
test_bicubic_rows (void)
{
  for (int in = 1; in <= 12; in++)
    for (int out = 1; out <= 12; out++)
      {
        g_autofree float *w = g_new (float, out * in);
        g_autofree double *ref = g_new (double, out * in);
        vl_bicubic_matrix (w, out, in);
        bicubic_ref (ref, out, in);
        for (int i = 0; i < out; i++)
          {
            double s = 0;
            for (int j = 0; j < in; j++)
              {
                s += w[i * in + j];
                if (fabs (w[i * in + j] - ref[i * in + j]) > 1e-6)
                  g_test_fail_printf ("bicubic %d -> %d: w[%d][%d] = %.8g, expected %.8g", in, out,
                                      i, j, w[i * in + j], ref[i * in + j]);
              }
            if (fabs (s - 1.0) > 1e-6)
              g_test_fail_printf ("bicubic %d -> %d: row %d sums to %.8g", in, out, i, s);
          }
        if (in == out)
          for (int i = 0; i < out; i++)
            for (int j = 0; j < in; j++)
              g_assert_cmpfloat (w[i * in + j], ==, i == j ? 1.0f : 0.0f);
      }
}

static void
test_bicubic_pytorch (void)
{
  /* Produced once with Debian's python3 (torch 1.13.0a0), in double precision, then pasted
   * (7 -> 3's two entries of 2e-32 written as 0):
   *   x = torch.eye (n_in, dtype=torch.float64).reshape (n_in, 1, 1, n_in)
   *   F.interpolate (x, size=(1, n_out), mode='bicubic', antialias=True,
   *                  align_corners=False).reshape (n_in, n_out).T */
  static const double up_4_6[6][4] = {
    { 1.0657894736842106, -0.0657894736842106, 0.0, 0.0 },
    { 0.5294117647058824, 0.5294117647058824, -0.058823529411764705, 0.0 },
    { -0.05787037037037031, 0.9375000000000001, 0.13194444444444423, -0.011574074074074011 },
    { -0.011574074074073928, 0.13194444444444467, 0.9374999999999996, -0.0578703703703703 },
    { 0.0, -0.058823529411764705, 0.5294117647058824, 0.5294117647058824 },
    { 0.0, 0.0, -0.06578947368421044, 1.0657894736842104 },
  };
  static const double down_6_2[2][6] = {
    { 0.2763157894736842, 0.35526315789473684, 0.2763157894736842, 0.11842105263157895, 0.0,
      -0.026315789473684178 },
    { -0.026315789473684178, 0.0, 0.11842105263157895, 0.2763157894736842, 0.35526315789473684,
      0.2763157894736842 },
  };
  static const double up_2_3[3][2] = {   /* the model's 2x2 -> 3x3 position grid */
    { 1.0657894736842106, -0.0657894736842106 },
    { 0.5, 0.5 },
    { -0.06578947368421044, 1.0657894736842104 },
  };
  static const double down_7_3[3][7] = {
    { 0.3830645161290322, 0.43951612903225795, 0.21370967741935482, 0.0, -0.03225806451612908,
      -0.004032258064515936, 0.0 },
    { -0.03052503052503057, 0.04517704517704518, 0.27594627594627597, 0.41880341880341887,
      0.27594627594627597, 0.04517704517704518, -0.03052503052503057 },
    { 0.0, -0.004032258064516048, -0.032258064516129094, 0.0, 0.2137096774193547,
      0.439516129032258, 0.3830645161290324 },
  };
  struct { int in, out; const double *w; } cases[] = {
    { 4, 6, &up_4_6[0][0] }, { 6, 2, &down_6_2[0][0] }, { 2, 3, &up_2_3[0][0] },
    { 7, 3, &down_7_3[0][0] },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      int in = cases[c].in, out = cases[c].out;
      float w[7 * 7];
      vl_bicubic_matrix (w, out, in);
      for (int i = 0; i < out * in; i++)
        if (fabs (w[i] - cases[c].w[i]) > 1e-6)
          g_test_fail_printf ("bicubic %d -> %d: w[%d][%d] = %.8g, PyTorch %.8g", in, out, i / in,
                              i % in, w[i], cases[c].w[i]);
    }
}

/* ------------------------------------------------------------------ im2col, AdamW */

static void
test_im2col (void)
{
  enum { B = 2, C = 3, H = 8, W = 12, P = 4, GH = H / P, GW = W / P, K = C * P * P };
  float images[B * C * H * W], cols[B * GH * GW * K];
  for (int i = 0; i < B * C * H * W; i++)
    images[i] = (float) i;
  for (int i = 0; i < B * GH * GW * K; i++)
    cols[i] = NAN;
  vl_im2col_patches (cols, images, B, C, H, W, P);
  for (int b = 0; b < B; b++)
    for (int py = 0; py < GH; py++)
      for (int px = 0; px < GW; px++)
        for (int c = 0; c < C; c++)
          for (int ky = 0; ky < P; ky++)
            for (int kx = 0; kx < P; kx++)
              {
                float want = images[((b * C + c) * H + py * P + ky) * W + px * P + kx];
                float got = cols[((b * GH + py) * GW + px) * K + (c * P + ky) * P + kx];
                g_assert_cmpfloat (got, ==, want);
              }
}

static void
test_adamw_first_step (void)
{
  enum { N = 12 };
  const float lr = 1e-2f, b1 = 0.9f, b2 = 0.999f, eps = 1e-8f, wd = 0.05f;
  float p[N], g[N], m[N] = { 0 }, v[N] = { 0 }, p0[N];
  VlRng r;
  vl_rng_seed (&r, 61);
  fill_normal (&r, p, N, 0.0, 1.0);
  for (int i = 0; i < N; i++)
    g[i] = rnd (&r, 1.0) * powf (10.f, (float) (i % 4) - 2.f);   /* 1e-2 .. 10 */
  g[0] = 0.f;
  g[1] = 1e-9f;   /* |g| ~ eps: the step is lr * g / (|g| + eps), about lr / 11 */
  memcpy (p0, p, sizeof p);
  vl_adamw_update (p, g, m, v, N, lr, b1, b2, eps, wd, 1);
  for (int i = 0; i < N; i++)
    {
      double want = p0[i] * (1.0 - (double) lr * wd) - lr * (double) g[i] / (fabs (g[i]) + eps);
      check_scalar ("first AdamW step", p[i], want, 2e-6, 1e-5);
      check_scalar ("m after one step", m[i], (1 - b1) * (double) g[i], 1e-12, 1e-6);
      check_scalar ("v after one step", v[i], (1 - b2) * (double) g[i] * g[i], 1e-20, 1e-5);
    }
}

static void
test_adamw_three_steps (void)
{
  enum { N = 10 };
  const float lr = 3e-2f, b1 = 0.8f, b2 = 0.95f, eps = 1e-6f, wd = 0.1f;
  float p[N], m[N] = { 0 }, v[N] = { 0 };
  double pd[N], md[N] = { 0 }, vd[N] = { 0 };
  VlRng r;
  vl_rng_seed (&r, 62);
  fill_normal (&r, p, N, 0.0, 1.0);
  for (int i = 0; i < N; i++)
    pd[i] = p[i];
  for (int step = 1; step <= 3; step++)
    {
      float g[N];
      fill_normal (&r, g, N, 0.0, 0.5);
      vl_adamw_update (p, g, m, v, N, lr, b1, b2, eps, wd, step);
      /* torch.optim.AdamW, written out in double */
      double bc1 = 1 - pow (b1, step), bc2 = 1 - pow (b2, step);
      for (int i = 0; i < N; i++)
        {
          pd[i] *= 1 - (double) lr * wd;
          md[i] = b1 * md[i] + (1 - (double) b1) * g[i];
          vd[i] = b2 * vd[i] + (1 - (double) b2) * g[i] * g[i];
          pd[i] -= lr / bc1 * md[i] / (sqrt (vd[i]) / sqrt (bc2) + eps);
        }
    }
  for (int i = 0; i < N; i++)
    {
      check_scalar ("p after 3 steps", p[i], pd[i], 2e-6, 1e-5);
      check_scalar ("m after 3 steps", m[i], md[i], 1e-7, 1e-5);
      check_scalar ("v after 3 steps", v[i], vd[i], 1e-9, 1e-5);
    }
}

/* ------------------------------------------------------------------ packed-weight product */

/* c (M rows, ldc apart) against the double-precision product alpha a b [+ bias] [+ added], with
 * a (i, k) = a[i a_row + k a_col], b (k, j) = b[k b_row + j b_col], added (i, j) = added[i ldc + j];
 * the columns past N must still hold `before`. A float32 sum of K products may be off by a few
 * ulps of the sum of the magnitudes. */
static void
check_product (const char *what, int variant, const float *c, const float *before, int ldc, int M,
               int N, int K, const float *a, int64_t a_row, int64_t a_col, const float *b,
               int64_t b_row, int64_t b_col, float alpha, const float *bias, const float *added)
{
  for (int i = 0; i < M; i++)
    for (int j = 0; j < ldc; j++)
      {
        float got = c[(int64_t) i * ldc + j];
        if (j >= N)
          {
            g_assert_cmpfloat (got, ==, before[(int64_t) i * ldc + j]);
            continue;
          }
        double want = 0.0, mag = 0.0;
        for (int k = 0; k < K; k++)
          {
            double t = (double) a[i * a_row + k * a_col] * b[k * b_row + j * b_col];
            want += t;
            mag += fabs (t);
          }
        want *= alpha;
        mag *= fabs (alpha);
        if (bias)
          want += bias[j], mag += fabs (bias[j]);
        if (added)
          want += added[(int64_t) i * ldc + j], mag += fabs (added[(int64_t) i * ldc + j]);
        if (fabs (got - want) > 1e-6 * (K + 2) * mag + 1e-30)
          g_error ("%s M=%d N=%d K=%d variant %d: c[%d][%d] = %.9g, want %.9g", what, M, N, K,
                   variant, i, j, got, want);
      }
}

/* vl_gemm_packed against a double-precision reference: every remainder of its tiles (12 or 6
 * rows; 7, 8, 13 and 50 rows end on the AVX2 kernel's 4 + 3 and 4 + 4 pairs of tiles) and panels
 * (32 or 16 features), with and without bias and residual, the residual being the output itself,
 * and a row stride wider than N whose extra columns must stay untouched; with the weight packed
 * by vl_pack_weights and by vl_pack_rows. */
static void
gemm_packed_once (void)
{
  static const int Ms[] = { 1, 5, 7, 8, 12, 13, 25, 50, 197 }, Ns[] = { 1, 16, 17, 32, 48, 100, 192 },
                   Ks[] = { 1, 3, 16, 21, 64, 200 };
  VlRng r;
  vl_rng_seed (&r, 91);
  int cases = 0;
  for (guint mi = 0; mi < G_N_ELEMENTS (Ms); mi++)
    for (guint ni = 0; ni < G_N_ELEMENTS (Ns); ni++)
      for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++)
        {
          const int M = Ms[mi], N = Ns[ni], K = Ks[ki], variant = cases++ % 4;
          /* the weight's rows further apart than K in every other case (attention's keys) */
          const int lda = K + 3, ldc = N + 5, ldw = K + (cases % 2 ? 0 : 19);
          g_autofree float *a = g_new (float, (gsize) M * lda);
          g_autofree float *w = g_new (float, (gsize) N * ldw);
          g_autofree float *b = g_new (float, N);
          g_autofree float *c = g_new (float, (gsize) M * ldc);
          g_autofree float *res = g_new (float, (gsize) M * ldc);
          float *wp = g_aligned_alloc (vl_packed_numel (N, K), sizeof (float), 64);
          fill_normal (&r, a, (int64_t) M * lda, 0.0, 1.0);
          fill_normal (&r, w, (int64_t) N * ldw, 0.0, 1.0);
          fill_normal (&r, b, N, 0.0, 1.0);
          fill_normal (&r, c, (int64_t) M * ldc, 0.0, 1.0);
          memcpy (res, c, sizeof (float) * M * ldc);
          vl_pack_weights (wp, w, ldw, N, K);
          /* 0: plain; 1: bias; 2: bias + residual in another buffer; 3: residual = c itself */
          const float *bias = variant == 1 || variant == 2 ? b : NULL;
          const float *resid = variant == 2 ? res : variant == 3 ? c : NULL;
          vl_gemm_packed (c, ldc, a, lda, wp, 1.0f, bias, resid, ldc, M, N, K);
          /* res holds c as it was */
          check_product ("vl_gemm_packed", variant, c, res, ldc, M, N, K, a, lda, 1, w, 1, ldw,
                         1.0f, bias, resid ? res : NULL);
          /* a weight used untransposed: w read as (K, N) rows ldw2 apart, packed by
           * vl_pack_rows */
          const int ldw2 = N + (cases % 3);
          g_autofree float *w2 = g_new (float, (gsize) K * ldw2);
          fill_normal (&r, w2, (int64_t) K * ldw2, 0.0, 1.0);
          fill_normal (&r, c, (int64_t) M * ldc, 0.0, 1.0);
          memcpy (res, c, sizeof (float) * M * ldc);
          vl_pack_rows (wp, w2, ldw2, K, N);
          vl_gemm_packed (c, ldc, a, lda, wp, 1.0f, bias, resid, ldc, M, N, K);
          check_product ("vl_pack_rows + vl_gemm_packed", variant, c, res, ldc, M, N, K, a, lda,
                         1, w2, ldw2, 1, 1.0f, bias, resid ? res : NULL);
          g_aligned_free (wp);
        }
  g_test_message ("%d shapes", cases);
}

/* vl_gemm_rowmajor the same way: b read in place with a row stride wider than N (attention's
 * values are a slice of qkv), a plain or transposed, alpha, and the residual being c; b of over
 * 1 MiB (300 x 1100) takes the row-blocked order. */
static void
gemm_rowmajor_once (void)
{
  static const int Ms[] = { 1, 7, 12, 30, 50, 197 }, Ns[] = { 3, 16, 32, 45, 64, 100, 300 },
                   Ks[] = { 1, 5, 64, 197, 1100 };
  VlRng r;
  vl_rng_seed (&r, 92);
  int cases = 0;
  for (guint mi = 0; mi < G_N_ELEMENTS (Ms); mi++)
    for (guint ni = 0; ni < G_N_ELEMENTS (Ns); ni++)
      for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++)
        {
          const int M = Ms[mi], N = Ns[ni], K = Ks[ki], variant = cases++ % 4;
          const gboolean ta = variant & 1, accumulate = variant & 2;
          const int lda = (ta ? M : K) + 2, ldb = N + 7, ldc = N + 3;
          const float alpha = variant == 1 ? 0.125f : variant == 2 ? -1.5f : 1.0f;
          const int a_rows = ta ? K : M;
          g_autofree float *a = g_new (float, (gsize) a_rows * lda);
          g_autofree float *b = g_new (float, (gsize) K * ldb);
          g_autofree float *c = g_new (float, (gsize) M * ldc);
          g_autofree float *before = g_new (float, (gsize) M * ldc);
          fill_normal (&r, a, (int64_t) a_rows * lda, 0.0, 1.0);
          fill_normal (&r, b, (int64_t) K * ldb, 0.0, 1.0);
          fill_normal (&r, c, (int64_t) M * ldc, 0.0, 1.0);
          memcpy (before, c, sizeof (float) * M * ldc);
          vl_gemm_rowmajor (ta, c, ldc, a, lda, b, ldb, alpha, accumulate ? c : NULL, ldc, M, N,
                            K);
          check_product ("vl_gemm_rowmajor", variant, c, before, ldc, M, N, K, a,
                         ta ? 1 : lda, ta ? lda : 1, b, ldb, 1, alpha, NULL,
                         accumulate ? before : NULL);
        }
  g_test_message ("%d shapes", cases);
}

/* vl_gemm_tn (a weight gradient: c [+]= a^T b over a long contraction) the same way: every
 * remainder of its 12-row tiles, 32-column panels, 8-row packing groups and contraction blocks
 * (K up to 6304, a batch of 32 images' tokens), row strides wider than the matrices, with and
 * without accumulating, and the column sums of a added to what colsum held. */
static void
gemm_tn_once (void)
{
  static const int Ms[] = { 1, 11, 12, 13, 100, 576 }, Ns[] = { 1, 17, 32, 33, 192 },
                   Ks[] = { 1, 7, 9, 191, 193, 500, 6304 };
  VlRng r;
  vl_rng_seed (&r, 93);
  int cases = 0;
  for (guint mi = 0; mi < G_N_ELEMENTS (Ms); mi++)
    for (guint ni = 0; ni < G_N_ELEMENTS (Ns); ni++)
      for (guint ki = 0; ki < G_N_ELEMENTS (Ks); ki++)
        {
          const int M = Ms[mi], N = Ns[ni], K = Ks[ki], variant = cases++ % 4;
          if (K == 6304 && (int64_t) M * N > 100 * 192)
            continue;   /* the reference's cost; the long contraction is covered below that */
          const gboolean accumulate = variant & 1, sums = variant & 2;
          const int lda = M + 5, ldb = N + 3, ldc = N + 2;
          g_autofree float *a = g_new (float, (gsize) K * lda);
          g_autofree float *b = g_new (float, (gsize) K * ldb);
          g_autofree float *c = g_new (float, (gsize) M * ldc);
          g_autofree float *before = g_new (float, (gsize) M * ldc);
          g_autofree float *colsum = g_new (float, M);
          float *work = g_aligned_alloc (vl_gemm_tn_workspace (M, N), sizeof (float), 64);
          fill_normal (&r, a, (int64_t) K * lda, 0.0, 1.0);
          fill_normal (&r, b, (int64_t) K * ldb, 0.0, 1.0);
          fill_normal (&r, c, (int64_t) M * ldc, 0.0, 1.0);
          fill_normal (&r, colsum, M, 0.0, 1.0);
          memcpy (before, c, sizeof (float) * M * ldc);
          g_autofree float *colsum_before = g_memdup2 (colsum, sizeof (float) * M);
          vl_gemm_tn (c, ldc, accumulate, a, lda, b, ldb, sums ? colsum : NULL, M, N, K, work);
          check_product ("vl_gemm_tn", variant, c, before, ldc, M, N, K, a, 1, lda, b, ldb, 1,
                         1.0f, NULL, accumulate ? before : NULL);
          for (int i = 0; i < M; i++)
            {
              double want = colsum_before[i], mag = fabs (want);
              for (int k = 0; sums && k < K; k++)
                want += a[(int64_t) k * lda + i], mag += fabs (a[(int64_t) k * lda + i]);
              g_assert_cmpfloat (fabs (colsum[i] - want), <=, 1e-6 * (K + 1) * mag);
            }
          g_aligned_free (work);
        }
  g_test_message ("%d shapes", cases);
}

static void
test_gemm_packed (void)
{
  every_kernel (gemm_packed_once);
}

static void
test_gemm_rowmajor (void)
{
  every_kernel (gemm_rowmajor_once);
}

static void
test_gemm_tn (void)
{
  every_kernel (gemm_tn_once);
}

/* ------------------------------------------------------------------ the whole model */

typedef struct {
  const char *name;
  VlPoolKind  pool;
  VlHeadKind  head;
  int         H, W;
  float       ls;
} ModelCase;

enum { MB = 3 };   /* batch */

static VlModel *
make_model (VlHeadKind head, uint64_t seed)
{
  /* The geometry starts from a real timm checkpoint's (the PyTorch fixture of test-model), so
   * that any structure field VlGeometry has or grows keeps its plain-ViT value (a zeroed struct
   * would say, for instance, nothing of a class token); only the sizes are set here. */
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autoptr(VlModel) base = vl_model_load (dir, &error);
  g_assert_no_error (error);
  VlGeometry geo = *vl_model_geometry (base);
  geo.in_chans = 3;
  geo.patch = 4;
  geo.width = 16;
  geo.depth = 2;
  geo.heads = 2;
  geo.head_dim = 8;
  geo.mlp = 32;
  geo.grid = 2;
  geo.img_size = geo.input_size = 8;
  geo.n_tokens = 5;
  geo.eps = 1e-6f;
  VlModel *m = vl_model_new_random (&geo, 5, seed);
  g_assert_cmpint (vl_model_geometry (m)->n_tokens, ==, 5);
  g_assert_cmpint (vl_model_find_tensor (m, "cls_token"), >=, 0);
  if (head == VL_HEAD_MLP)
    vl_model_set_head (m, VL_HEAD_MLP, 3, 10, seed + 1);

  /* timm's initialisation (std 0.02, LayerNorm 1, biases 0) leaves attention uniform and the
   * norms' weights all equal: move every parameter to a scale where each path carries signal */
  VlRng r;
  vl_rng_seed (&r, seed + 2);
  for (int i = 0; i < vl_model_n_tensors (m); i++)
    {
      int ndim;
      int64_t shape[4], n;
      float *x = vl_model_tensor_data (m, i, &ndim, shape, &n);
      const char *name = vl_model_tensor_name (m, i);
      double std;
      if (strcmp (name, "pos_embed") == 0 || strcmp (name, "cls_token") == 0)
        std = 0.5;
      else if (ndim == 1)
        std = g_str_has_suffix (name, "weight") ? 0.3 : 0.2;
      else
        std = 1.0 / sqrt ((double) (n / shape[0]));   /* 1 / sqrt (fan_in) */
      for (int64_t k = 0; k < n; k++)
        x[k] += rnd (&r, std);
    }
  return m;
}

typedef struct {
  VlModel     *m;
  const float *images;
  int          B, H, W, K;
  const int   *targets;
  float        ls;
} ModelEval;

/* The loss of a forward, from the logits (in double); sig (B, width) receives the max pool's
 * argmax tokens when not NULL. */
static double
model_loss (const ModelEval *e, int *sig)
{
  g_autoptr(GError) error = NULL;
  gboolean ok = vl_model_forward (e->m, e->images, e->B, e->H, e->W, VL_FORWARD_TRAIN, &error);
  g_assert_no_error (error);
  g_assert_true (ok);
  if (sig)
    {
      const int T = vl_model_n_tokens_last (e->m), Wd = vl_model_geometry (e->m)->width;
      const float *tok = vl_model_tokens_final (e->m);
      for (int b = 0; b < e->B; b++)
        for (int c = 0; c < Wd; c++)
          {
            int best = 1;
            for (int t = 2; t < T; t++)
              if (tok[((int64_t) b * T + t) * Wd + c] > tok[((int64_t) b * T + best) * Wd + c])
                best = t;
            sig[b * Wd + c] = best;
          }
    }
  return ce_ref (vl_model_logits (e->m), e->targets, e->B, e->K, e->ls);
}

#define MAX_POOL_GAP 0.02

/* Over every (image, channel) of the max pool, the smallest margin by which the winning token
 * beats the next one (infinity without a runner-up). */
static double
max_pool_gap (VlModel *m, int B)
{
  const int T = vl_model_n_tokens_last (m), Wd = vl_model_geometry (m)->width;
  const float *tok = vl_model_tokens_final (m);
  double gap = INFINITY;
  for (int b = 0; b < B; b++)
    for (int c = 0; c < Wd; c++)
      {
        double first = -INFINITY, second = -INFINITY;
        for (int t = 1; t < T; t++)
          {
            double v = tok[((int64_t) b * T + t) * Wd + c];
            if (v > first)
              {
                second = first;
                first = v;
              }
            else if (v > second)
              second = v;
          }
        gap = MIN (gap, first - second);
      }
  return gap;
}

/* (L (x + d) - L (x - d)) / 2 for the step d on x[0 .. n), and the first-order prediction
 * sum g (x+ - x-) / 2 over the steps the floats actually took. FALSE when the max pool picked
 * another token on either side (a kink between the two points: the difference means nothing). */
static gboolean
model_difference (const ModelEval *e, float *x, const float *d, const float *g, int64_t n,
                  const int *sig0, int *sig, double *fd, double *pred)
{
  g_autofree float *x0 = g_memdup2 (x, sizeof (float) * n);
  gboolean same = TRUE;
  const size_t sig_size = sizeof (int) * e->B * vl_model_geometry (e->m)->width;
  double p = 0.0;
  for (int64_t i = 0; i < n; i++)
    {
      float xp = (float) ((double) x0[i] + d[i]), xm = (float) ((double) x0[i] - d[i]);
      p += (double) g[i] * ((double) xp - (double) xm) / 2;
      x[i] = xp;
    }
  double lp = model_loss (e, sig0 ? sig : NULL);
  if (sig0 && memcmp (sig, sig0, sig_size) != 0)
    same = FALSE;
  for (int64_t i = 0; i < n; i++)
    x[i] = (float) ((double) x0[i] - d[i]);
  double lm = model_loss (e, sig0 ? sig : NULL);
  if (sig0 && memcmp (sig, sig0, sig_size) != 0)
    same = FALSE;
  memcpy (x, x0, sizeof (float) * n);
  *fd = (lp - lm) / 2;
  *pred = p;
  return same;
}

/* The differences check the backward against the forward, not the forward itself: the position
 * embedding the forward used, against its definition (timm's resample_abs_pos_embed: CLS entry
 * kept, the grid resampled along rows by bicubic_ref (gh, G) and along columns by
 * bicubic_ref (gw, G)), so that a resampled grid that is not square is covered too. */
static void
check_pos_embed_used (VlModel *m, int gh, int gw)
{
  const VlGeometry *geo = vl_model_geometry (m);
  const int G = geo->grid, Wd = geo->width;
  const float *pos = vl_model_tensor_data (m, vl_model_find_tensor (m, "pos_embed"), NULL, NULL,
                                           NULL);
  const float *used = vl_model_pos_embed_used (m);
  g_autofree double *rh = g_new (double, gh * G);
  g_autofree double *rw = g_new (double, gw * G);
  bicubic_ref (rh, gh, G);
  bicubic_ref (rw, gw, G);
  g_autofree float *want = g_new (float, (1 + gh * gw) * Wd);
  memcpy (want, pos, sizeof (float) * Wd);
  for (int i = 0; i < gh; i++)
    for (int j = 0; j < gw; j++)
      for (int c = 0; c < Wd; c++)
        {
          double v = 0;
          for (int p = 0; p < G; p++)
            for (int q = 0; q < G; q++)
              v += rh[i * G + p] * rw[j * G + q] * pos[(1 + p * G + q) * Wd + c];
          want[(1 + i * gw + j) * Wd + c] = (float) v;
        }
  vl_test_assert_close ("pos_embed used", used, want, (1 + gh * gw) * Wd, 1e-5, 1e-5);
}

/* Tolerances of the model checks, with h = 1e-2 * max (1, |w|) on single elements and steps of
 * norm 1e-2 on whole tensors, compared per unit step. The loss (~1.5) carries the forward's
 * float32 rounding, ~1e-7 absolute, ~1e-5 after dividing by 2h; the curvature term
 * h^2 |L'''| / 6 is ~1e-3 relative. Seen over all ~1500 checks: |fd - g| <= 1.2e-5 where
 * |fd| < 1e-2, relative error <= 1.2e-3 where |fd| > 1e-2, the worst at 0.13 of the tolerance
 * below. A wrong factor, sign, index or term in any backward is off by far more (a scratch copy
 * of the engine with 25 such mutations, one at a time, fails on all but the two that leave the
 * gradient unchanged). MODEL_SIGNAL: a check along a gradient smaller than that would say
 * nothing, and every tensor has a real gradient at this point. */
#define MODEL_H       1e-2
#define MODEL_RTOL    1e-2
#define MODEL_ATOL    1e-4
#define MODEL_SIGNAL  1e-2

/* One check of the gradient g of x[0 .. n) along the unit direction dir: a step of norm scale,
 * or scale / 4, scale / 16 when the max pool switched tokens in between. The change of L and its
 * prediction are compared per unit step. FALSE when every step crossed a kink. */
static gboolean
model_check (const ModelEval *e, const int *sig0, int *sig, float *x, const float *dir,
             const float *g, int64_t n, double scale, const char *what, double *worst,
             int *n_kinks)
{
  g_autofree float *d = g_new (float, n);
  for (int attempt = 0; attempt < 3; attempt++)
    {
      double s = scale / pow (4, attempt), fd, an;
      for (int64_t k = 0; k < n; k++)
        d[k] = (float) (s * dir[k]);
      if (!model_difference (e, x, d, g, n, sig0, sig, &fd, &an))
        {
          (*n_kinks)++;
          continue;
        }
      fd /= s;
      an /= s;
      double tol = MODEL_RTOL * MAX (fabs (fd), fabs (an)) + MODEL_ATOL;
      *worst = MAX (*worst, fabs (fd - an) / tol);
      if (!(fabs (fd - an) <= tol))
        g_test_fail_printf ("%s: finite differences %.7g, analytic gradient %.7g", what, fd, an);
      return TRUE;
    }
  return FALSE;
}

static void
test_model_backward (gconstpointer data)
{
  const ModelCase *mc = data;
  const uint64_t seed = g_str_hash (mc->name);
  g_autoptr(VlModel) m = make_model (mc->head, seed);
  g_autoptr(GError) error = NULL;
  vl_model_set_pool (m, mc->pool);
  vl_model_lock (m, vl_model_n_groups (m));
  const VlGeometry *geo = vl_model_geometry (m);
  const int K = vl_model_num_classes (m), C = geo->in_chans;

  VlRng r;
  vl_rng_seed (&r, seed + 3);
  int targets[MB];
  for (int b = 0; b < MB; b++)
    targets[b] = (int) (vl_rng_next (&r) % K);
  g_autofree float *images = g_new (float, (int64_t) MB * C * mc->H * mc->W);
  ModelEval e = { m, images, MB, mc->H, mc->W, K, targets, mc->ls };
  g_autofree int *sig0 = NULL, *sig = NULL;
  if (mc->pool == VL_POOL_MAX)
    {
      sig0 = g_new (int, MB * geo->width);
      sig = g_new (int, MB * geo->width);
    }
  /* The max pool is not differentiable where two tokens tie: draw images until every pooled
   * channel's winner leads the runner-up by MAX_POOL_GAP, far more than the steps move it. */
  double loss0 = 0, gap = 0;
  for (int draw = 0; draw < 50; draw++)
    {
      fill_normal (&r, images, (int64_t) MB * C * mc->H * mc->W, 0.0, 1.0);
      loss0 = model_loss (&e, sig0);
      if (mc->pool != VL_POOL_MAX || (gap = max_pool_gap (m, MB)) >= MAX_POOL_GAP)
        break;
    }
  if (mc->pool == VL_POOL_MAX)
    {
      g_test_message ("max pool: smallest lead of a winner %.3g", gap);
      g_assert_cmpfloat (gap, >=, MAX_POOL_GAP);
    }
  g_assert_cmpint (vl_model_n_tokens_last (m), ==, 1 + (mc->H / 4) * (mc->W / 4));
  double loss;
  g_assert_true (vl_model_backward (m, targets, mc->ls, &loss, &error));
  g_assert_no_error (error);
  check_scalar ("backward's loss against the logits'", loss, loss0, 0, 1e-9);

  const int n_tensors = vl_model_n_tensors (m);
  g_autoptr(GPtrArray) grads = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n_tensors; i++)
    {
      int64_t n;
      vl_model_tensor_data (m, i, NULL, NULL, &n);
      const float *g = vl_model_tensor_grad (m, i);
      g_assert_nonnull (g);
      g_ptr_array_add (grads, g_memdup2 (g, sizeof (float) * n));
    }

  int n_checked = 0, n_kinks = 0;
  double worst = 0;   /* largest |fd - g| / (rtol max + atol) seen: 1 is the limit */
  check_pos_embed_used (m, mc->H / geo->patch, mc->W / geo->patch);
  for (int i = 0; i < n_tensors; i++)
    {
      const char *name = vl_model_tensor_name (m, i);
      int64_t n;
      float *x = vl_model_tensor_data (m, i, NULL, NULL, &n);
      const float *g = grads->pdata[i];
      g_autofree float *dir = g_new (float, n);
      g_autofree char *what = NULL;
      double gnorm = sqrt (dot_d (g, g, n));

      /* 1. along the analytic gradient, a step of norm 1e-2: L changes by 1e-2 ||g|| when g is
       *    right; a wrong scale, sign, index or term changes that. Every tensor has a real
       *    gradient here, and a check below MODEL_SIGNAL would say nothing. */
      if (gnorm < MODEL_SIGNAL)
        g_test_fail_printf ("%s: gradient norm %.3g, too small for the check to mean anything",
                            name, gnorm);
      if (gnorm > 0)
        {
          for (int64_t k = 0; k < n; k++)
            dir[k] = (float) (g[k] / gnorm);
          what = g_strdup_printf ("%s, along the gradient", name);
          n_checked += model_check (&e, sig0, sig, x, dir, g, n, MODEL_H, what, &worst,
                                    &n_kinks);
          g_clear_pointer (&what, g_free);
        }
      else
        n_checked++;

      /* 2. along a random direction (independent of g), a step of norm 1e-2 */
      double dn = 0;
      for (int64_t k = 0; k < n; k++)
        {
          dir[k] = rnd (&r, 1.0);
          dn += (double) dir[k] * dir[k];
        }
      for (int64_t k = 0; k < n; k++)
        dir[k] = (float) (dir[k] / sqrt (dn));
      what = g_strdup_printf ("%s, along a random direction", name);
      n_checked += model_check (&e, sig0, sig, x, dir, g, n, MODEL_H, what, &worst, &n_kinks);
      g_clear_pointer (&what, g_free);

      /* 3. one element, h = 1e-2 * max (1, |w|): of 4 drawn at random the one of largest |g|,
       *    so that the check has signal */
      int64_t j = (int64_t) (vl_rng_next (&r) % (uint64_t) n);
      for (int c = 0; c < 3; c++)
        {
          int64_t k = (int64_t) (vl_rng_next (&r) % (uint64_t) n);
          if (fabs (g[k]) > fabs (g[j]))
            j = k;
        }
      const float one = 1.0f;
      what = g_strdup_printf ("%s[%" G_GINT64_FORMAT "]", name, j);
      n_checked += model_check (&e, sig0, sig, x + j, &one, g + j, 1,
                                MODEL_H * MAX (1.0, fabs ((double) x[j])), what, &worst, &n_kinks);
    }
  g_test_message ("%s: %d checks over %d tensors, %d steps redone for a max-pool kink, worst "
                  "at %.2f of the tolerance", mc->name, n_checked, n_tensors, n_kinks, worst);
  if (n_checked != 3 * n_tensors)
    g_test_fail_printf ("%s: %d of %d checks were left out, the max pool switching tokens even "
                        "at h / 16", mc->name, 3 * n_tensors - n_checked, 3 * n_tensors);
}

/* ------------------------------------------------------------------ partial unlock */

static void
forward_backward (VlModel *m, const float *images, const int *targets, double *loss)
{
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_model_forward (m, images, MB, 8, 8, VL_FORWARD_TRAIN, &error));
  g_assert_no_error (error);
  g_assert_true (vl_model_backward (m, targets, 0.1f, loss, &error));
  g_assert_no_error (error);
}

/* The forward keeps packed copies of frozen weights: a change written through
 * vl_model_tensor_data's pointer is seen once the pointer has been asked for again, and undoing
 * it gives back the first result bit for bit. */
static void
test_model_frozen_weight_changed (void)
{
  g_autoptr(VlModel) m = make_model (VL_HEAD_LINEAR, 81);
  g_autoptr(GError) error = NULL;
  VlRng r;
  vl_rng_seed (&r, 82);
  float images[MB * 3 * 8 * 8];
  fill_normal (&r, images, G_N_ELEMENTS (images), 0.0, 1.0);
  vl_model_lock (m, 1);
  const int K = 5;
  float first[MB * 5], changed[MB * 5];

  g_assert_true (vl_model_forward (m, images, MB, 8, 8, VL_FORWARD_INFER, &error));
  g_assert_no_error (error);
  memcpy (first, vl_model_logits (m), sizeof first);

  int64_t n;
  int ix = vl_model_find_tensor (m, "blocks.1.mlp.fc1.weight");
  g_assert_cmpint (ix, >=, 0);
  float *w = vl_model_tensor_data (m, ix, NULL, NULL, &n);
  g_autofree float *saved = g_memdup2 (w, sizeof (float) * n);
  for (int64_t i = 0; i < n; i++)
    w[i] *= -2.0f;
  g_assert_true (vl_model_forward (m, images, MB, 8, 8, VL_FORWARD_INFER, &error));
  memcpy (changed, vl_model_logits (m), sizeof changed);
  double diff = 0.0;
  for (int i = 0; i < MB * K; i++)
    diff += fabs (changed[i] - first[i]);
  g_assert_cmpfloat (diff, >, 1e-3);

  memcpy (vl_model_tensor_data (m, ix, NULL, NULL, NULL), saved, sizeof (float) * n);
  g_assert_true (vl_model_forward (m, images, MB, 8, 8, VL_FORWARD_INFER, &error));
  g_assert_cmpmem (vl_model_logits (m), sizeof first, first, sizeof first);
}

/* The model through each of vitlab's SIMD kernels and through plain C and OpenBLAS (what other
 * CPUs run): the same loss, logits and gradients up to float rounding. */
static void
test_model_gemm_paths (void)
{
  g_autoptr(VlModel) m = make_model (VL_HEAD_LINEAR, 85);
  VlRng r;
  vl_rng_seed (&r, 86);
  float images[MB * 3 * 8 * 8];
  fill_normal (&r, images, G_N_ELEMENTS (images), 0.0, 1.0);
  int targets[MB] = { 1, 0, 4 };
  const int n = vl_model_n_tensors (m);
  const VlGemmIsa was = vl_gemm_isa ();
  vl_model_lock (m, 100);

  /* the portable path first, then each SIMD kernel this CPU has, against it */
  static const VlGemmIsa isas[] = { VL_GEMM_PLAIN, VL_GEMM_AVX2, VL_GEMM_AVX512 };
  double loss[3];
  float logits[3][MB * 5];
  GPtrArray *grads[3] = { NULL, NULL, NULL };
  for (int path = 0; path < 3; path++)
    {
      if (!vl_gemm_isa_supported (isas[path]))
        continue;
      vl_gemm_set_isa (isas[path]);
      for (int i = 0; i < n; i++)
        {
          int64_t k;
          vl_model_tensor_data (m, i, NULL, NULL, &k);
          float *g = vl_model_tensor_grad (m, i);
          if (g)
            memset (g, 0, sizeof (float) * k);
        }
      forward_backward (m, images, targets, &loss[path]);
      memcpy (logits[path], vl_model_logits (m), sizeof logits[path]);
      grads[path] = g_ptr_array_new_with_free_func (g_free);
      for (int i = 0; i < n; i++)
        {
          int64_t k;
          vl_model_tensor_data (m, i, NULL, NULL, &k);
          g_ptr_array_add (grads[path], g_memdup2 (vl_model_tensor_grad (m, i), sizeof (float) * k));
        }
    }
  vl_gemm_set_isa (was);
  for (int path = 1; path < 3; path++)
    {
      if (grads[path] == NULL)
        continue;
      g_test_message ("%s against plain C and OpenBLAS", vl_gemm_isa_name (isas[path]));
      g_assert_cmpfloat_with_epsilon (loss[path], loss[0], 1e-5);
      vl_test_assert_close ("logits", logits[path], logits[0], MB * 5, 1e-5, 1e-4);
      for (int i = 0; i < n; i++)
        {
          int64_t k;
          vl_model_tensor_data (m, i, NULL, NULL, &k);
          const float *a = grads[path]->pdata[i], *b = grads[0]->pdata[i];
          double scale = 0.0;
          for (int64_t j = 0; j < k; j++)
            scale = MAX (scale, fabs (b[j]));
          vl_test_assert_close (vl_model_tensor_name (m, i), a, b, k, 1e-4 * scale + 1e-7, 1e-4);
        }
    }
  for (int path = 0; path < 3; path++)
    if (grads[path])
      g_ptr_array_unref (grads[path]);
}

static void
test_model_partial_unlock (void)
{
  g_autoptr(VlModel) m = make_model (VL_HEAD_LINEAR, 71);
  VlRng r;
  vl_rng_seed (&r, 72);
  float images[MB * 3 * 8 * 8];
  fill_normal (&r, images, G_N_ELEMENTS (images), 0.0, 1.0);
  int targets[MB] = { 0, 3, 4 };
  const int n_tensors = vl_model_n_tensors (m), n_groups = vl_model_n_groups (m);
  g_assert_cmpint (n_groups, ==, 5);   /* stem, blocks.0, blocks.1, norm, head */

  /* 1. only norm and head, on a fresh model: the frozen tensors never get a gradient */
  double loss_partial, loss_full;
  vl_model_lock (m, 2);
  forward_backward (m, images, targets, &loss_partial);
  g_autoptr(GPtrArray) partial = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n_tensors; i++)
    {
      int64_t n;
      vl_model_tensor_data (m, i, NULL, NULL, &n);
      int group = vl_model_tensor_group (m, i);
      const float *g = vl_model_tensor_grad (m, i);
      if (group < n_groups - 2)
        {
          g_assert_false (vl_model_group_trainable (m, group));
          g_assert_null (g);
          g_ptr_array_add (partial, NULL);
        }
      else
        {
          g_assert_nonnull (g);
          g_ptr_array_add (partial, g_memdup2 (g, sizeof (float) * n));
        }
    }

  /* 2. everything: the same loss, and the same gradients for norm and head */
  vl_model_lock (m, n_groups);
  forward_backward (m, images, targets, &loss_full);
  g_assert_cmpfloat (loss_full, ==, loss_partial);
  g_autoptr(GPtrArray) full = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; i < n_tensors; i++)
    {
      int64_t n;
      vl_model_tensor_data (m, i, NULL, NULL, &n);
      const float *g = vl_model_tensor_grad (m, i);
      g_assert_nonnull (g);
      g_ptr_array_add (full, g_memdup2 (g, sizeof (float) * n));
      if (partial->pdata[i])
        vl_test_assert_close (vl_model_tensor_name (m, i), partial->pdata[i], g, n, 1e-6, 1e-6);
    }

  /* 3. blocks.1, norm and head; then blocks.0 alone (below frozen groups): the trainable
   *    tensors match the full gradients, the frozen ones keep what they had (no work on them) */
  for (int variant = 0; variant < 2; variant++)
    {
      /* make the stale gradients recognisable */
      for (int i = 0; i < n_tensors; i++)
        {
          int64_t n;
          vl_model_tensor_data (m, i, NULL, NULL, &n);
          float *g = vl_model_tensor_grad (m, i);
          for (int64_t k = 0; k < n; k++)
            g[k] = -99.f;
        }
      if (variant == 0)
        vl_model_lock (m, 3);
      else
        {
          vl_model_lock (m, 0);
          vl_model_set_group_trainable (m, 1, TRUE);
        }
      double loss;
      forward_backward (m, images, targets, &loss);
      g_assert_cmpfloat (loss, ==, loss_full);
      for (int i = 0; i < n_tensors; i++)
        {
          int64_t n;
          vl_model_tensor_data (m, i, NULL, NULL, &n);
          const float *g = vl_model_tensor_grad (m, i);
          if (vl_model_group_trainable (m, vl_model_tensor_group (m, i)))
            {
              /* to 1e-4 of the tensor's largest gradient: the lowest trainable block's qkv and
               * norm1 take another path (qkv_ln1_params_backward), equal only up to rounding */
              const float *want = full->pdata[i];
              double scale = 0.0;
              for (int64_t k = 0; k < n; k++)
                scale = MAX (scale, fabs (want[k]));
              g_assert_cmpfloat (scale, >, 0.0);
              vl_test_assert_close (vl_model_tensor_name (m, i), g, want, n, 1e-4 * scale, 1e-6);
            }
          else
            for (int64_t k = 0; k < n; k++)
              if (g[k] != -99.f)
                {
                  g_test_fail_printf ("%s is frozen but its gradient was written",
                                      vl_model_tensor_name (m, i));
                  break;
                }
        }
    }

  /* 4. nothing trainable: the loss, and no gradient work at all */
  vl_model_lock (m, 0);
  g_assert_cmpint (vl_model_n_trainable (m), ==, 0);
  double loss_none;
  forward_backward (m, images, targets, &loss_none);
  g_assert_cmpfloat (loss_none, ==, loss_full);
  const float *g0 = vl_model_tensor_grad (m, 0);
  g_assert_cmpfloat (g0[0], ==, -99.f);
}

/* ------------------------------------------------------------------ main */

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);

  g_test_add_func ("/kernels/layernorm/forward", test_layernorm_forward);
  g_test_add_func ("/kernels/layernorm/backward", test_layernorm_backward);
  g_test_add_func ("/kernels/layernorm/accumulate", test_layernorm_accumulate);
  g_test_add_func ("/kernels/gelu/forward", test_gelu_forward);
  g_test_add_func ("/kernels/gelu/backward", test_gelu_backward);
  g_test_add_func ("/kernels/gelu/forward-deriv", test_gelu_forward_deriv);
  g_test_add_func ("/kernels/gelu/tanh", test_gelu_tanh);
  g_test_add_func ("/kernels/softmax/rows", test_softmax_rows);
  g_test_add_func ("/kernels/softmax/backward", test_softmax_backward);
  g_test_add_func ("/kernels/attention/forward", test_attention_forward);
  g_test_add_func ("/kernels/attention/backward", test_attention_backward);
  g_test_add_func ("/kernels/cross-entropy/loss", test_cross_entropy_loss);
  g_test_add_func ("/kernels/cross-entropy/backward", test_cross_entropy_backward);
  g_test_add_func ("/kernels/cross-entropy/non-finite", test_cross_entropy_non_finite);
  g_test_add_func ("/kernels/bicubic/rows", test_bicubic_rows);
  g_test_add_func ("/kernels/bicubic/pytorch", test_bicubic_pytorch);
  g_test_add_func ("/kernels/im2col/naive", test_im2col);
  g_test_add_func ("/kernels/adamw/first-step", test_adamw_first_step);
  g_test_add_func ("/kernels/adamw/three-steps", test_adamw_three_steps);
  g_test_add_func ("/kernels/gemm/packed", test_gemm_packed);
  g_test_add_func ("/kernels/gemm/rowmajor", test_gemm_rowmajor);
  g_test_add_func ("/kernels/gemm/tn", test_gemm_tn);

  /* the whole model: every pool with both heads on the native and a resampled grid, label
   * smoothing 0 or 0.1 alternating so that each pool, head and grid meets both (the full product
   * doubles the run time for nothing the pairs miss: the smoothing only changes d logits); then
   * two non-square grids (rows and columns resampled differently) and a downsampled one */
  static const struct { const char *name; VlPoolKind pool; } pools[] = {
    { "token", VL_POOL_TOKEN }, { "avg", VL_POOL_AVG }, { "max", VL_POOL_MAX },
  };
  static const struct { const char *name; VlHeadKind head; } heads[] = {
    { "linear", VL_HEAD_LINEAR }, { "mlp", VL_HEAD_MLP },
  };
  static const int sizes[][2] = { { 8, 8 }, { 12, 12 } };
  static const float smoothing[] = { 0.0f, 0.1f };
  static ModelCase cases[G_N_ELEMENTS (pools) * G_N_ELEMENTS (heads) * G_N_ELEMENTS (sizes) + 3];
  int n = 0;
  for (guint p = 0; p < G_N_ELEMENTS (pools); p++)
    for (guint h = 0; h < G_N_ELEMENTS (heads); h++)
      for (guint s = 0; s < G_N_ELEMENTS (sizes); s++)
        {
          float ls = smoothing[(p + h + s) % 2];
          cases[n++] = (ModelCase) {
            g_strdup_printf ("/kernels/model/backward/%s-%s-%dx%d-ls%g", pools[p].name,
                             heads[h].name, sizes[s][0], sizes[s][1], ls),
            pools[p].pool, heads[h].head, sizes[s][0], sizes[s][1], ls };
        }
  cases[n++] = (ModelCase) { g_strdup ("/kernels/model/backward/avg-linear-8x12-ls0.1"),
                             VL_POOL_AVG, VL_HEAD_LINEAR, 8, 12, 0.1f };
  cases[n++] = (ModelCase) { g_strdup ("/kernels/model/backward/token-mlp-16x8-ls0"),
                             VL_POOL_TOKEN, VL_HEAD_MLP, 16, 8, 0.0f };
  cases[n++] = (ModelCase) { g_strdup ("/kernels/model/backward/max-linear-4x4-ls0.1"),
                             VL_POOL_MAX, VL_HEAD_LINEAR, 4, 4, 0.1f };
  for (int i = 0; i < n; i++)
    g_test_add_data_func (cases[i].name, &cases[i], test_model_backward);
  g_test_add_func ("/kernels/model/partial-unlock", test_model_partial_unlock);
  g_test_add_func ("/kernels/model/frozen-weight-changed", test_model_frozen_weight_changed);
  g_test_add_func ("/kernels/model/gemm-paths", test_model_gemm_paths);

  int ret = g_test_run ();
  for (int i = 0; i < n; i++)
    g_free ((char *) cases[i].name);
  return ret;
}

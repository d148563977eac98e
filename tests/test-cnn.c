/* test-cnn.c: the CNN-stem kernels (vl-cnn.h) against PyTorch (tests/data/cnn-kernels.safetensors,
 * from gen-cnn.py: forward outputs and the gradients of sum (out * dout) with respect to the input
 * and every parameter) and by central finite differences of the same scalar through each kernel's
 * own forward. */
#include "vl-test-util.h"
#include "vl-cnn.h"

#include <math.h>
#include <string.h>

typedef struct Kase Kase;
struct Kase {
  const char *name;
  int B, H, W, C;             /* the input grid (B, H, W, C) */
  int Cout, k, s;             /* conv / pool geometry; for GroupNorm k = groups; SE: k = R */
  float eps;
  const char *pn[4];          /* parameter names */
  void (*fwd) (Kase *);
  void (*bwd) (Kase *);
  gboolean bn_train;
  /* buffers */
  float *x, *p[4], *out, *dout, *dx, *dp[4];
  int64_t nx, np[4], nout;
  float mean[64], rstd[64], rm[64], rv[64], se_pool[64], se_h[64], se_gate[64];
  int *argmax;
  float *wstd;                /* standardized weight */
};

static VlConv2d
conv_of (Kase *k)
{
  return (VlConv2d) { .B = k->B, .H = k->H, .W = k->W, .Cin = k->C, .Cout = k->Cout, .kh = k->k,
                      .kw = k->k, .stride = k->s, .pad = 0, .groups = 1 };
}

static void
conv_fwd (Kase *k)
{
  VlConv2d c = conv_of (k);
  vl_conv2d_same_forward (k->out, k->x, k->p[0], k->p[1], &c, NULL);
}

static void
conv_bwd (Kase *k)
{
  VlConv2d c = conv_of (k);
  vl_conv2d_same_backward (k->dx, k->dp[0], k->dp[1], k->dout, k->x, k->p[0], &c);
}

static void
std_fwd (Kase *k)
{
  VlConv2d c = conv_of (k);
  g_free (k->wstd);
  k->wstd = g_new (float, k->np[0]);
  vl_weight_std_forward (k->wstd, k->rstd, k->p[0], k->Cout, k->np[0] / k->Cout, k->eps);
  vl_conv2d_same_forward (k->out, k->x, k->wstd, NULL, &c, NULL);
}

static void
std_bwd (Kase *k)
{
  VlConv2d c = conv_of (k);
  g_autofree float *dws = g_new0 (float, k->np[0]);
  vl_conv2d_same_backward (k->dx, dws, NULL, k->dout, k->x, k->wstd, &c);
  vl_weight_std_backward (k->dp[0], dws, k->wstd, k->rstd, k->Cout, k->np[0] / k->Cout);
}

static void
bn_fwd (Kase *k)
{
  /* the running statistics start from the fixture's at every call (the finite differences call
   * the forward many times) */
  vl_batchnorm_forward (k->out, k->mean, k->rstd, k->x, k->p[0], k->p[1], k->rm, k->rv,
                        k->nx / k->C, k->C, 1e-5f, 0.1f, k->bn_train);
}

static void
bn_bwd (Kase *k)
{
  vl_batchnorm_backward (k->dx, k->dp[0], k->dp[1], k->dout, k->x, k->p[0], k->mean, k->rstd,
                         k->nx / k->C, k->C, k->bn_train);
}

static void
gn_fwd (Kase *k)
{
  vl_groupnorm_forward (k->out, k->mean, k->rstd, k->x, k->p[0], k->p[1], k->B,
                        (int64_t) k->H * k->W, k->C, k->k, 1e-5f);
}

static void
gn_bwd (Kase *k)
{
  vl_groupnorm_backward (k->dx, k->dp[0], k->dp[1], k->dout, k->x, k->p[0], k->mean, k->rstd,
                         k->B, (int64_t) k->H * k->W, k->C, k->k);
}

static void relu_fwd (Kase *k) { vl_relu_forward (k->out, k->x, k->nx); }
static void relu_bwd (Kase *k) { vl_relu_backward (k->dx, k->dout, k->out, k->nx); }
static void silu_fwd (Kase *k) { vl_silu_forward (k->out, k->x, k->nx); }
static void silu_bwd (Kase *k) { vl_silu_backward (k->dx, k->dout, k->x, k->nx); }

static void
pool_dims (Kase *k, int *top, int *left, int *Ho, int *Wo)
{
  if (k->eps > 0)   /* eps > 0 marks the same-padded pool */
    {
      int hi;
      vl_same_pad (k->H, k->k, k->s, top, &hi);
      vl_same_pad (k->W, k->k, k->s, left, &hi);
      *Ho = (k->H + k->s - 1) / k->s;
      *Wo = (k->W + k->s - 1) / k->s;
    }
  else
    {
      *top = *left = 1;
      *Ho = (k->H + 2 - k->k) / k->s + 1;
      *Wo = (k->W + 2 - k->k) / k->s + 1;
    }
}

static void
pool_fwd (Kase *k)
{
  int t, l, Ho, Wo;
  pool_dims (k, &t, &l, &Ho, &Wo);
  g_free (k->argmax);
  k->argmax = g_new (int, k->nout);
  vl_maxpool2d_forward (k->out, k->argmax, k->x, k->B, k->H, k->W, k->C, k->k, k->s, t, l, Ho,
                        Wo);
}

static void
pool_bwd (Kase *k)
{
  int t, l, Ho, Wo;
  pool_dims (k, &t, &l, &Ho, &Wo);
  vl_maxpool2d_backward (k->dx, k->dout, k->argmax, k->B, k->H, k->W, k->C, Ho, Wo);
}

static void
se_fwd (Kase *k)
{
  vl_se_forward (k->out, k->se_pool, k->se_h, k->se_gate, k->x, k->p[0], k->p[1], k->p[2],
                 k->p[3], k->B, (int64_t) k->H * k->W, k->C, k->k);
}

static void
se_bwd (Kase *k)
{
  vl_se_backward (k->dx, k->dp[0], k->dp[1], k->dp[2], k->dp[3], k->dout, k->x, k->p[0],
                  k->p[2], k->se_pool, k->se_h, k->se_gate, k->B, (int64_t) k->H * k->W, k->C,
                  k->k);
}

static VlSafetensors *fixture;

static float *
read_case (Kase *k, const char *what, int64_t *n)
{
  g_autofree char *name = g_strconcat (k->name, ".", what, NULL);
  return vl_test_read (fixture, name, n);
}

static void
kase_load (Kase *k)
{
  int64_t n;
  k->x = read_case (k, "x", &k->nx);
  g_autofree char *xname = g_strconcat (k->name, ".x", NULL);
  const VlTensorInfo *t = vl_safetensors_lookup (fixture, xname);
  g_assert_nonnull (t);
  k->B = (int) t->shape[0];
  k->H = (int) t->shape[1];
  k->W = (int) t->shape[2];
  k->C = (int) t->shape[3];
  k->dout = read_case (k, "dout", &k->nout);
  k->out = g_new0 (float, k->nout);
  k->dx = g_new0 (float, k->nx);
  for (int i = 0; i < 4 && k->pn[i]; i++)
    {
      k->p[i] = read_case (k, k->pn[i], &k->np[i]);
      k->dp[i] = g_new0 (float, k->np[i]);
    }
  if (strncmp (k->name, "bn", 2) == 0)
    {
      g_autofree float *rm = vl_test_read (fixture, "bn.running_mean0", &n);
      g_autofree float *rv = vl_test_read (fixture, "bn.running_var0", &n);
      memcpy (k->rm, rm, sizeof (float) * n);
      memcpy (k->rv, rv, sizeof (float) * n);
    }
}

static void
kase_free (Kase *k)
{
  g_free (k->x);
  g_free (k->out);
  g_free (k->dout);
  g_free (k->dx);
  for (int i = 0; i < 4; i++)
    {
      g_free (k->p[i]);
      g_free (k->dp[i]);
    }
  g_free (k->argmax);
  g_free (k->wstd);
}

/* sum (out * dout) through the forward, in double */
static double
kase_loss (Kase *k)
{
  float rm[64], rv[64];
  memcpy (rm, k->rm, sizeof rm);
  memcpy (rv, k->rv, sizeof rv);
  k->fwd (k);
  memcpy (k->rm, rm, sizeof rm);
  memcpy (k->rv, rv, sizeof rv);
  double s = 0.0;
  for (int64_t i = 0; i < k->nout; i++)
    s += (double) k->out[i] * k->dout[i];
  return s;
}

/* Central differences at up to 40 entries of x spread over it, against the analytic g. */
static void
fd_check (Kase *k, const char *what, float *x, int64_t n, const float *g, double tol)
{
  const int64_t stride = MAX (1, n / 40);
  double worst = 0.0;
  for (int64_t i = 0; i < n; i += stride)
    {
      const float x0 = x[i];
      const float xp = x0 + 1e-3f, xm = x0 - 1e-3f;
      x[i] = xp;
      const double lp = kase_loss (k);
      x[i] = xm;
      const double lm = kase_loss (k);
      x[i] = x0;
      const double fd = (lp - lm) / ((double) xp - (double) xm);
      const double d = fabs (fd - g[i]) / (1.0 + fabs (fd));
      worst = MAX (worst, d);
      if (d > tol)
        g_test_fail_printf ("%s %s[%" G_GINT64_FORMAT "]: analytic %.6g, finite differences "
                            "%.6g", k->name, what, i, g[i], fd);
    }
  g_test_message ("%s %s: worst finite-difference error %.3g", k->name, what, worst);
}

static void
test_kase (gconstpointer data)
{
  Kase k = *(const Kase *) data;
  g_autofree char *path = vl_test_data_path ("cnn-kernels.safetensors", NULL);
  fixture = vl_test_open (path);
  kase_load (&k);
  int64_t n;
  /* forward and backward against PyTorch */
  k.fwd (&k);
  g_autofree float *out = read_case (&k, "out", &n);
  g_assert_cmpint (n, ==, k.nout);
  vl_test_assert_close (k.name, k.out, out, n, 2e-5, 2e-5);
  if (k.bn_train)
    {
      g_autofree float *rm = read_case (&k, "running_mean", &n);
      g_autofree float *rv = read_case (&k, "running_var", &n);
      vl_test_assert_close ("running_mean", k.rm, rm, n, 1e-6, 1e-6);
      vl_test_assert_close ("running_var", k.rv, rv, n, 1e-6, 1e-6);
      /* back to the starting statistics for the finite differences */
      g_autofree float *rm0 = vl_test_read (fixture, "bn.running_mean0", &n);
      g_autofree float *rv0 = vl_test_read (fixture, "bn.running_var0", &n);
      memcpy (k.rm, rm0, sizeof (float) * n);
      memcpy (k.rv, rv0, sizeof (float) * n);
      k.fwd (&k);
    }
  k.bwd (&k);
  g_autofree float *dx = read_case (&k, "dx", &n);
  vl_test_assert_close ("dx", k.dx, dx, n, 2e-5, 2e-4);
  for (int i = 0; i < 4 && k.pn[i]; i++)
    {
      g_autofree char *dn = g_strconcat ("d", k.pn[i], NULL);
      g_autofree float *dp = read_case (&k, dn, &n);
      vl_test_assert_close (dn, k.dp[i], dp, n, 2e-5, 2e-4);
    }
  /* by finite differences of the kernel's own forward (ReLU and max pooling are piecewise
   * linear: a step of 1e-3 across a kink would be the only error) */
  fd_check (&k, "x", k.x, k.nx, k.dx, 2e-2);
  for (int i = 0; i < 4 && k.pn[i]; i++)
    fd_check (&k, k.pn[i], k.p[i], k.np[i], k.dp[i], 2e-2);
  kase_free (&k);
  g_clear_pointer (&fixture, vl_safetensors_free);
}

static const Kase kases[] = {
  { "conv_same3", .Cout = 4, .k = 3, .s = 2, .pn = { "w", "b" }, .fwd = conv_fwd, .bwd = conv_bwd },
  { "conv_same7", .Cout = 3, .k = 7, .s = 2, .pn = { "w", "b" }, .fwd = conv_fwd, .bwd = conv_bwd },
  { "conv_same1s2", .Cout = 3, .k = 1, .s = 2, .pn = { "w", "b" }, .fwd = conv_fwd, .bwd = conv_bwd },
  { "conv_std8", .Cout = 5, .k = 3, .s = 2, .eps = 1e-8f, .pn = { "w" }, .fwd = std_fwd, .bwd = std_bwd },
  { "conv_std6", .Cout = 5, .k = 3, .s = 2, .eps = 1e-6f, .pn = { "w" }, .fwd = std_fwd, .bwd = std_bwd },
  { "bn_train", .pn = { "w", "b" }, .fwd = bn_fwd, .bwd = bn_bwd, .bn_train = TRUE },
  { "bn_eval", .pn = { "w", "b" }, .fwd = bn_fwd, .bwd = bn_bwd },
  { "gn", .k = 2, .pn = { "w", "b" }, .fwd = gn_fwd, .bwd = gn_bwd },
  { "relu", .fwd = relu_fwd, .bwd = relu_bwd },
  { "silu", .fwd = silu_fwd, .bwd = silu_bwd },
  { "maxpool_p1", .k = 3, .s = 2, .fwd = pool_fwd, .bwd = pool_bwd },
  { "maxpool_same", .k = 3, .s = 2, .eps = 1.0f, .fwd = pool_fwd, .bwd = pool_bwd },
  { "se", .k = 2, .pn = { "w1", "b1", "w2", "b2" }, .fwd = se_fwd, .bwd = se_bwd },
};

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  for (guint i = 0; i < G_N_ELEMENTS (kases); i++)
    {
      g_autofree char *path = g_strconcat ("/cnn/", kases[i].name, NULL);
      g_test_add_data_func (path, &kases[i], test_kase);
    }
  return g_test_run ();
}

/* test-probe.c: feature extraction (vl-features) and the probes (vl-probe).
 *
 * Probes against tests/data/probe-ref.safetensors (tests/data/gen-probe.py: numpy's DINO k-NN and
 * scikit-learn 1.2's LogisticRegression on small synthetic feature sets), the logistic objective's
 * gradient by central differences, the L-BFGS on Rosenbrock's function. Features against the
 * PyTorch fixtures (vit-timm-tiny; fam-timm-reg-ls for registers left out of the average,
 * fam-timm-gap for fc_norm) and against the model's own forward; the writers read back. */
#include "vl-test-util.h"

#include "vl-dataset.h"
#include "vl-features.h"
#include "vl-model.h"
#include "vl-pool.h"
#include "vl-probe.h"

#include <glib/gstdio.h>
#include <json-glib/json-glib.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ reference data */

static VlSafetensors *
open_ref (void)
{
  g_autofree char *path = vl_test_data_path ("probe-ref.safetensors", NULL);
  return vl_test_open (path);
}

static int *
read_labels (VlSafetensors *st, const char *name, int64_t *n)
{
  g_autofree float *f = vl_test_read (st, name, n);
  int *y = g_new (int, *n);
  for (int64_t i = 0; i < *n; i++)
    y[i] = (int) f[i];
  return y;
}

/* A tensor as doubles (the reference coefficients are F64: read exactly, not through float). */
static double *
read_f64 (VlSafetensors *st, const char *name, int64_t *n)
{
  const VlTensorInfo *t = vl_safetensors_lookup (st, name);
  if (t == NULL)
    g_error ("probe-ref.safetensors: no tensor %s", name);
  g_assert_cmpint (t->dtype, ==, VL_DTYPE_F64);
  double *out = g_new (double, t->numel);
  memcpy (out, t->data, sizeof (double) * t->numel);
  *n = t->numel;
  return out;
}

/* ------------------------------------------------------------------ scores */

static void
test_score (void)
{
  const int pred[] = { 0, 1, 1, 2, 0, 0 };
  const int y[] = { 0, 1, 0, 2, 0, 2 };
  VlProbeScore s;
  vl_probe_score (pred, y, 6, 4, &s);
  g_assert_cmpint (s.correct, ==, 4);
  g_assert_cmpfloat_with_epsilon (s.acc, 4.0 / 6, 1e-12);
  g_assert_cmpfloat_with_epsilon (s.class_acc[0], 2.0 / 3, 1e-12);
  g_assert_cmpfloat_with_epsilon (s.class_acc[1], 1.0, 1e-12);
  g_assert_cmpfloat_with_epsilon (s.class_acc[2], 0.5, 1e-12);
  g_assert_true (isnan (s.class_acc[3]));
  g_assert_cmpint (s.class_n[0], ==, 3);
  vl_probe_score_clear (&s);
}

/* ------------------------------------------------------------------ k-NN */

static void
test_knn_reference (void)
{
  g_autoptr(VlSafetensors) st = open_ref ();
  int64_t ntr, nq, n;
  g_autofree float *train = vl_test_read (st, "knn.train", &ntr);
  g_autofree float *query = vl_test_read (st, "knn.query", &nq);
  g_autofree int *ytr = read_labels (st, "knn.train_labels", &n);
  const int D = 8;
  g_assert_cmpint (ntr, ==, n * D);
  const struct { int k; const char *T_name; double T; } cases[] = {
    { 20, "0.07", 0.07 }, { 5, "0.07", 0.07 }, { 7, "0.5", 0.5 }, { 1, "0.07", 0.07 },
  };
  for (guint c = 0; c < G_N_ELEMENTS (cases); c++)
    {
      g_autofree char *name = g_strdup_printf ("knn.pred.k%d.T%s", cases[c].k, cases[c].T_name);
      int64_t m;
      g_autofree int *want = read_labels (st, name, &m);
      g_assert_cmpint (m, ==, nq / D);
      g_autofree int *got = g_new (int, m);
      g_autoptr(GError) error = NULL;
      g_assert_true (vl_knn_predict (train, ytr, n, query, m, D, 3, cases[c].k, cases[c].T, got,
                                     &error));
      g_assert_no_error (error);
      int agree = 0, differs_from_first = 0;
      for (int64_t i = 0; i < m; i++)
        {
          agree += got[i] == want[i];
          differs_from_first += want[i] != want[0];
        }
      g_test_message ("%s: %d of %" G_GINT64_FORMAT " agree", name, agree, m);
      g_assert_cmpint (agree, ==, m);
      g_assert_cmpint (differs_from_first, >, 0);   /* the reference is not one class */
    }
}

/* Hand-made: 1-D directions, so cosine similarity is ±1; weights make a 2-vs-1 vote flip. */
static void
test_knn_weights (void)
{
  /* train rows: class 0 at angle 0 (sim 1 to the query), class 1 twice at 60° (sim 0.5) */
  const float train[] = { 1, 0, 0.5f, 0.8660254f, 0.5f, 0.8660254f, -1, 0 };
  const int ytr[] = { 0, 1, 1, 2 };
  const float query[] = { 3, 0 };   /* not unit length: normalised */
  int pred = -1;
  g_autoptr(GError) error = NULL;
  /* T 0.07: exp(1/0.07) beats 2 exp(0.5/0.07); T 10: two neighbours at 0.5 win */
  g_assert_true (vl_knn_predict (train, ytr, 4, query, 1, 2, 3, 3, 0.07, &pred, &error));
  g_assert_cmpint (pred, ==, 0);
  g_assert_true (vl_knn_predict (train, ytr, 4, query, 1, 2, 3, 3, 10.0, &pred, &error));
  g_assert_cmpint (pred, ==, 1);
  /* k above the train rows: all four vote */
  g_assert_true (vl_knn_predict (train, ytr, 4, query, 1, 2, 3, 50, 10.0, &pred, &error));
  g_assert_cmpint (pred, ==, 1);
  g_assert_no_error (error);

  /* errors */
  const int bad[] = { 0, 1, 3, 2 };
  g_assert_false (vl_knn_predict (train, bad, 4, query, 1, 2, 3, 3, 0.07, &pred, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "label 3 of row 2"));
  g_clear_error (&error);
  const float nan_q[] = { NAN, 0 };
  g_assert_false (vl_knn_predict (train, ytr, 4, nan_q, 1, 2, 3, 3, 0.07, &pred, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_NUMERIC);
  g_clear_error (&error);
  g_assert_false (vl_knn_predict (train, ytr, 4, query, 1, 2, 3, 0, 0.07, &pred, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_false (vl_knn_predict (train, ytr, 4, query, 1, 2, 3, 3, -1, &pred, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
}

/* ------------------------------------------------------------------ L-BFGS */

static double
rosenbrock (const double *x, double *g, gpointer user_data)
{
  const int n = GPOINTER_TO_INT (user_data);
  double f = 0;
  memset (g, 0, sizeof (double) * n);
  for (int i = 0; i + 1 < n; i++)
    {
      double a = x[i + 1] - x[i] * x[i], b = 1 - x[i];
      f += 100 * a * a + b * b;
      g[i] += -400 * a * x[i] - 2 * b;
      g[i + 1] += 200 * a;
    }
  return f;
}

static void
test_lbfgs_rosenbrock (void)
{
  const int n = 10;
  double x[10];
  for (int i = 0; i < n; i++)
    x[i] = i % 2 ? 1.0 : -1.2;
  VlLbfgsReport r;
  vl_lbfgs_minimize (n, x, rosenbrock, GINT_TO_POINTER (n), NULL, &r);
  g_test_message ("Rosenbrock: %d iterations, %d evaluations, f %g, status %d", r.iterations,
                  r.evaluations, r.f, r.status);
  g_assert_cmpint (r.status, ==, VL_LBFGS_CONVERGED);
  g_assert_cmpfloat (r.f, <, 1e-12);
  for (int i = 0; i < n; i++)
    g_assert_cmpfloat_with_epsilon (x[i], 1.0, 1e-6);
  g_assert_cmpint (r.iterations, <, 200);
}

/* ------------------------------------------------------------------ logistic regression */

typedef struct {
  float  *X;
  int    *y;
  int64_t n;
  int     D, K;
} LrSet;

static void
lr_set_load (VlSafetensors *st, const char *prefix, int D, LrSet *s)
{
  g_autofree char *xn = g_strdup_printf ("%s.X", prefix), *yn = g_strdup_printf ("%s.y", prefix);
  int64_t nx;
  s->X = vl_test_read (st, xn, &nx);
  s->y = read_labels (st, yn, &s->n);
  s->D = D;
  g_assert_cmpint (nx, ==, s->n * D);
  s->K = 0;
  for (int64_t i = 0; i < s->n; i++)
    s->K = MAX (s->K, s->y[i] + 1);
}

static void
lr_set_clear (LrSet *s)
{
  g_free (s->X);
  g_free (s->y);
}

static void
test_logreg_gradient (void)
{
  g_autoptr(VlSafetensors) st = open_ref ();
  LrSet s;
  lr_set_load (st, "lr3", 6, &s);
  const int64_t P = (int64_t) s.K * s.D + s.K;
  g_autofree double *theta = g_new (double, P), *grad = g_new (double, P);
  for (int64_t j = 0; j < P; j++)
    theta[j] = 0.3 * sin (1.7 * j + 0.4);
  const double cs[] = { 0.01, 1.0, 100.0 };
  for (guint c = 0; c < G_N_ELEMENTS (cs); c++)
    {
      double f = vl_logreg_objective (s.X, s.y, s.n, s.D, s.K, cs[c], theta, grad);
      g_assert_true (isfinite (f));
      double worst = 0;
      for (int64_t j = 0; j < P; j++)
        {
          const double h = 1e-5;
          double keep = theta[j];
          theta[j] = keep + h;
          double fp = vl_logreg_objective (s.X, s.y, s.n, s.D, s.K, cs[c], theta, NULL);
          theta[j] = keep - h;
          double fm = vl_logreg_objective (s.X, s.y, s.n, s.D, s.K, cs[c], theta, NULL);
          theta[j] = keep;
          double fd = (fp - fm) / (2 * h);
          double err = fabs (fd - grad[j]) / MAX (1.0, fabs (fd));
          worst = MAX (worst, err);
        }
      g_test_message ("C %g: objective %g, worst relative gradient error %.2e", cs[c], f, worst);
      g_assert_cmpfloat (worst, <, 1e-6);
    }
  /* the value itself, at zero: every row costs C log K, no penalty */
  memset (theta, 0, sizeof (double) * P);
  double f0 = vl_logreg_objective (s.X, s.y, s.n, s.D, s.K, 2.0, theta, NULL);
  g_assert_cmpfloat_with_epsilon (f0, 2.0 * s.n * log (s.K), 1e-9);
  lr_set_clear (&s);
}

/* coef and intercept against scikit-learn's, the objective no higher than at its solution, and
 * a gradient of about zero */
static void
check_against_sklearn (VlSafetensors *st, const LrSet *s, const char *prefix, const VlLogreg *lr)
{
  g_autofree char *cn = g_strdup_printf ("%s.coef", prefix);
  g_autofree char *in = g_strdup_printf ("%s.intercept", prefix);
  int64_t nc, ni;
  g_autofree double *coef = read_f64 (st, cn, &nc), *icpt = read_f64 (st, in, &ni);
  g_assert_cmpint (nc, ==, (int64_t) s->K * s->D);
  g_assert_cmpint (ni, ==, s->K);
  double scale = 0, worst = 0;
  for (int64_t j = 0; j < nc; j++)
    scale = MAX (scale, fabs (coef[j]));
  for (int64_t j = 0; j < nc; j++)
    worst = MAX (worst, fabs (lr->coef[j] - coef[j]));
  for (int64_t j = 0; j < ni; j++)
    worst = MAX (worst, fabs (lr->intercept[j] - icpt[j]));
  const int64_t P = nc + ni;
  g_autofree double *mine = g_new (double, P), *ref = g_new (double, P);
  memcpy (mine, lr->coef, sizeof (double) * nc);
  memcpy (mine + nc, lr->intercept, sizeof (double) * ni);
  memcpy (ref, coef, sizeof (double) * nc);
  memcpy (ref + nc, icpt, sizeof (double) * ni);
  double f_mine = vl_logreg_objective (s->X, s->y, s->n, s->D, s->K, lr->C, mine, NULL);
  double f_ref = vl_logreg_objective (s->X, s->y, s->n, s->D, s->K, lr->C, ref, NULL);
  g_test_message ("%s: max |coef - sklearn| %.2e (coef scale %.3g), objective %.12g vs %.12g, "
                  "%d iterations", prefix, worst, scale, f_mine, f_ref, lr->report.iterations);
  /* scikit-learn stops on scipy's default relative decrease (factr 1e7: about 2e-9), so its
   * coefficients are good to about 1e-5 only; ours must be at least as low, and stationary */
  g_assert_cmpfloat (worst, <=, 1e-4 * MAX (scale, 1.0));
  g_assert_cmpfloat (f_mine, <=, f_ref + 1e-12 * fabs (f_ref));
  g_autofree double *grad = g_new (double, P);
  vl_logreg_objective (s->X, s->y, s->n, s->D, s->K, lr->C, mine, grad);
  double gmax = 0;
  for (int64_t j = 0; j < P; j++)
    gmax = MAX (gmax, fabs (grad[j]));
  g_test_message ("%s: max |gradient| at our solution %.2e", prefix, gmax);
  g_assert_cmpfloat (gmax, <=, 1e-6 * MAX (1.0, lr->C * s->n));
}

static void
test_logreg_sklearn (void)
{
  g_autoptr(VlSafetensors) st = open_ref ();
  LrSet s;
  lr_set_load (st, "lr3", 6, &s);
  g_assert_cmpint (s.K, ==, 3);
  int64_t nq;
  g_autofree float *query = vl_test_read (st, "lr3.query", &nq);
  nq /= s.D;
  const char *cs[] = { "0.01", "1.0", "100.0" };
  for (guint c = 0; c < G_N_ELEMENTS (cs); c++)
    {
      g_autoptr(GError) error = NULL;
      g_autoptr(VlLogreg) lr = vl_logreg_fit (s.X, s.y, s.n, s.D, s.K, g_ascii_strtod (cs[c], NULL),
                                              NULL, NULL, &error);
      g_assert_no_error (error);
      g_assert_true (lr->report.status == VL_LBFGS_CONVERGED ||
                     lr->report.status == VL_LBFGS_FLAT);
      g_autofree char *prefix = g_strdup_printf ("lr3.C%s", cs[c]);
      check_against_sklearn (st, &s, prefix, lr);

      g_autofree char *pn = g_strdup_printf ("%s.pred", prefix);
      g_autofree char *qn = g_strdup_printf ("%s.proba", prefix);
      int64_t m, mp;
      g_autofree int *want = read_labels (st, pn, &m);
      g_autofree double *want_p = read_f64 (st, qn, &mp);
      g_assert_cmpint (m, ==, nq);
      g_autofree int *got = g_new (int, m);
      g_autofree double *proba = g_new (double, m * s.K);
      vl_logreg_predict (lr, query, m, got, proba);
      for (int64_t i = 0; i < m; i++)
        g_assert_cmpint (got[i], ==, want[i]);
      for (int64_t i = 0; i < m * s.K; i++)
        g_assert_cmpfloat (fabs (proba[i] - want_p[i]), <, 1e-4);   /* as the coefficients */
    }
  lr_set_clear (&s);

  /* two classes: multinomial with two coefficient rows (w1 = -w0 at the optimum) */
  LrSet b;
  lr_set_load (st, "lr2", 5, &b);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlLogreg) lr = vl_logreg_fit (b.X, b.y, b.n, b.D, b.K, 0.3, NULL, NULL, &error);
  g_assert_no_error (error);
  check_against_sklearn (st, &b, "lr2.C0.3", lr);
  for (int d = 0; d < b.D; d++)
    g_assert_cmpfloat (fabs (lr->coef[d] + lr->coef[b.D + d]), <, 1e-6);
  lr_set_clear (&b);
}

static void
test_logreg_sweep (void)
{
  g_autoptr(VlSafetensors) st = open_ref ();
  LrSet s;
  lr_set_load (st, "lr3", 6, &s);

  /* the hold-out: round (0.2 n_k) of each class, a function of the seed */
  g_autofree gboolean *mask = g_new (gboolean, s.n), *mask2 = g_new (gboolean, s.n);
  vl_logreg_holdout (s.y, s.n, s.K, 0.2, 7, mask);
  int counts[3] = { 0 }, held[3] = { 0 };
  for (int64_t i = 0; i < s.n; i++)
    {
      counts[s.y[i]]++;
      held[s.y[i]] += mask[i];
    }
  for (int k = 0; k < 3; k++)
    g_assert_cmpint (held[k], ==, (int) lround (0.2 * counts[k]));
  vl_logreg_holdout (s.y, s.n, s.K, 0.2, 7, mask2);
  g_assert_cmpmem (mask, sizeof (gboolean) * s.n, mask2, sizeof (gboolean) * s.n);
  vl_logreg_holdout (s.y, s.n, s.K, 0.2, 8, mask2);
  g_assert_true (memcmp (mask, mask2, sizeof (gboolean) * s.n) != 0);

  VlLogregSweep sw = VL_LOGREG_SWEEP_DEFAULT;
  VlLogregSweepResult r;
  g_autoptr(GError) error = NULL;
  g_autoptr(VlLogreg) lr = vl_logreg_fit_sweep (s.X, s.y, s.n, s.D, s.K, &sw, &r, NULL, &error);
  g_assert_no_error (error);
  g_assert_cmpint (r.n_c, ==, 13);
  g_assert_cmpfloat_with_epsilon (r.c[0], 1e-3, 1e-15);
  g_assert_cmpfloat_with_epsilon (r.c[12], 1e3, 1e-9);
  g_assert_cmpint (r.n_holdout, ==, 8 + 6 + 7);
  g_assert_cmpint (r.n_fit + r.n_holdout, ==, s.n);
  for (int c = 0; c < r.n_c; c++)
    {
      g_assert_cmpfloat (r.holdout_acc[c], <=, r.holdout_acc[r.best]);
      if (c < r.best)
        g_assert_cmpfloat (r.holdout_acc[c], <, r.holdout_acc[r.best]);
    }
  g_assert_cmpfloat (lr->C, ==, r.c[r.best]);
  /* the refit on every row is scikit-learn's fit at that C */
  g_autofree char *prefix = g_strdup_printf ("lr3.grid%d", r.best);
  check_against_sklearn (st, &s, prefix, lr);

  /* the hold-out scores are those of a fit on the other rows */
  vl_logreg_holdout (s.y, s.n, s.K, 0.2, 0, mask);
  g_autofree float *Xf = g_new (float, s.n * s.D);
  g_autofree int *yf = g_new (int, s.n);
  int64_t nf = 0;
  for (int64_t i = 0; i < s.n; i++)
    if (!mask[i])
      {
        memcpy (Xf + nf * s.D, s.X + i * s.D, sizeof (float) * s.D);
        yf[nf++] = s.y[i];
      }
  g_autoptr(VlLogreg) part = vl_logreg_fit (Xf, yf, nf, s.D, s.K, r.c[3], NULL, NULL, &error);
  g_assert_no_error (error);
  g_autofree int *pred = g_new (int, s.n);
  vl_logreg_predict (part, s.X, s.n, pred, NULL);
  int correct = 0, n_hold = 0;
  for (int64_t i = 0; i < s.n; i++)
    if (mask[i])
      {
        n_hold++;
        correct += pred[i] == s.y[i];
      }
  g_assert_cmpfloat_with_epsilon (r.holdout_acc[3], (double) correct / n_hold, 1e-12);
  vl_logreg_sweep_result_clear (&r);

  /* cancelled before it starts */
  g_autoptr(GCancellable) cancel = g_cancellable_new ();
  g_cancellable_cancel (cancel);
  g_assert_null (vl_logreg_fit_sweep (s.X, s.y, s.n, s.D, s.K, &sw, NULL, cancel, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
  lr_set_clear (&s);
}

static void
test_logreg_errors (void)
{
  const float X[] = { 0, 1, 1, 0, 2, 2 };
  const int y[] = { 0, 1, 1 };
  g_autoptr(GError) error = NULL;
  g_assert_null (vl_logreg_fit (X, y, 3, 2, 1, 1.0, NULL, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_clear_error (&error);
  g_assert_null (vl_logreg_fit (X, y, 3, 2, 2, 0.0, NULL, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_clear_error (&error);
  const int bad[] = { 0, 2, 1 };
  g_assert_null (vl_logreg_fit (X, bad, 3, 2, 2, 1.0, NULL, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "label 2 of row 1"));
  g_clear_error (&error);
  const float Xn[] = { 0, 1, INFINITY, 0, 2, 2 };
  g_assert_null (vl_logreg_fit (Xn, y, 3, 2, 2, 1.0, NULL, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_NUMERIC);
  g_clear_error (&error);
  /* one image per class: nothing to hold out */
  const int y2[] = { 0, 1, 2 };
  g_assert_null (vl_logreg_fit_sweep (X, y2, 3, 2, 3, NULL, NULL, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
}

/* ------------------------------------------------------------------ features */

/* A memory dataset of a fixture's images: train = images, val = the same images reversed. */
static VlDataset *
fixture_dataset (const char *inputs, const char *tensor, int *B_out, int *size_out)
{
  g_autoptr(VlSafetensors) st = vl_test_open (inputs);
  int64_t n;
  g_autofree float *images = vl_test_read (st, tensor, &n);
  const VlTensorInfo *t = vl_safetensors_lookup (st, tensor);
  const int B = (int) t->shape[0], S = (int) t->shape[2];
  const int64_t per = 3 * S * S;
  g_autofree float *rev = g_new (float, n);
  g_autofree int *labels = g_new (int, B), *rlabels = g_new (int, B);
  for (int b = 0; b < B; b++)
    {
      memcpy (rev + b * per, images + (B - 1 - b) * per, sizeof (float) * per);
      labels[b] = b % 2;
      rlabels[b] = (B - 1 - b) % 2;
    }
  const char *names[] = { "even", "odd" };
  *B_out = B;
  *size_out = S;
  return vl_dataset_new_memory (2, names, 3, S, images, labels, B, rev, rlabels, B);
}

static VlFeatures *
extract (VlModel *m, VlDataset *ds, VlFeatureSplit split, int layer, VlFeaturePool pool,
         int batch)
{
  VlFeatureOptions o = { .layer = layer, .pool = pool, .batch_size = batch };
  g_autoptr(GError) error = NULL;
  VlFeatures *f = vl_features_extract (m, ds, split, &o, NULL, NULL, NULL, &error);
  g_assert_no_error (error);
  g_assert_nonnull (f);
  return f;
}

typedef struct {
  int64_t last_done, total, calls;
  gboolean monotonic;
} ProgressLog;

static void
log_progress (int64_t done, int64_t total, gpointer user_data)
{
  ProgressLog *p = user_data;
  p->monotonic = p->monotonic && done > p->last_done && done <= total;
  p->last_done = done;
  p->total = total;
  p->calls++;
}

static void
test_features_fixture (void)
{
  g_autofree char *dir = vl_test_shared_path ("fixtures", "vit-timm-tiny", NULL);
  g_autofree char *inputs = g_build_filename (dir, "inputs.safetensors", NULL);
  g_autofree char *expected = g_build_filename (dir, "expected.safetensors", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (dir, &error);
  g_assert_no_error (error);
  int B, S;
  g_autoptr(VlDataset) ds = fixture_dataset (inputs, "images", &B, &S);
  g_autoptr(VlSafetensors) ref = vl_test_open (expected);
  const int W = 48, T = 17;

  /* final: the three poolings against PyTorch, train split, batches of 3 (a short last one) */
  const char *refs[] = { "features_token", "features_avg", "features_max" };
  for (int p = 0; p < 3; p++)
    {
      g_autoptr(VlFeatures) f = extract (m, ds, VL_FEATURE_SPLIT_TRAIN, VL_FEATURE_LAYER_FINAL, p,
                                         3);
      g_assert_cmpint (f->n, ==, B);
      g_assert_cmpint (f->dim, ==, W);
      int64_t n;
      g_autofree float *want = vl_test_read (ref, refs[p], &n);
      vl_test_assert_close (refs[p], f->features, want, n, 1e-4, 0);
      for (int b = 0; b < B; b++)
        {
          g_assert_cmpint (f->labels[b], ==, b % 2);
          g_autofree char *name = g_strdup_printf ("memory:train#%d", b);
          g_assert_cmpstr (f->files[b], ==, name);
        }
      g_assert_null (f->files[B]);
      g_assert_cmpstr (f->class_names[1], ==, "odd");
    }
  /* the model's pooling is left as it was */
  g_assert_cmpint (vl_model_pool (m), ==, VL_POOL_TOKEN);

  /* all tokens after the final norm, both splits: val is train reversed */
  {
    g_autoptr(VlFeatures) f = extract (m, ds, VL_FEATURE_SPLIT_ALL, VL_FEATURE_LAYER_FINAL,
                                       VL_FEATURE_POOL_ALL, 4);
    g_assert_cmpint (f->n, ==, 2 * B);
    g_assert_cmpint (f->n_train, ==, B);
    g_assert_cmpint (f->n_tokens, ==, T);
    g_assert_cmpint (f->dim, ==, (int64_t) T * W);
    int64_t n;
    g_autofree float *want = vl_test_read (ref, "tokens_final", &n);
    vl_test_assert_close ("tokens_final", f->features, want, n, 1e-4, 0);
    for (int b = 0; b < B; b++)
      vl_test_assert_close ("val tokens", f->features + (int64_t) (B + b) * f->dim,
                            want + (int64_t) (B - 1 - b) * f->dim, f->dim, 1e-4, 0);
    g_assert_cmpstr (f->files[B], ==, "memory:val#0");
  }

  /* the last block's tokens, normed here with the model's norm, are PyTorch's final tokens */
  {
    g_autoptr(VlFeatures) f = extract (m, ds, VL_FEATURE_SPLIT_TRAIN, 3, VL_FEATURE_POOL_ALL, 2);
    int ix_w = vl_model_find_tensor (m, "norm.weight"), ix_b = vl_model_find_tensor (m, "norm.bias");
    g_assert_cmpint (ix_w, >=, 0);
    const float *gw = vl_model_tensor_data (m, ix_w, NULL, NULL, NULL);
    const float *gb = vl_model_tensor_data (m, ix_b, NULL, NULL, NULL);
    g_autofree float *normed = g_new (float, f->n * f->dim);
    for (int64_t r = 0; r < f->n * T; r++)
      {
        const float *x = f->features + r * W;
        double mean = 0, var = 0;
        for (int c = 0; c < W; c++)
          mean += x[c];
        mean /= W;
        for (int c = 0; c < W; c++)
          var += (x[c] - mean) * (x[c] - mean);
        double rstd = 1.0 / sqrt (var / W + 1e-6);
        for (int c = 0; c < W; c++)
          normed[r * W + c] = (float) ((x[c] - mean) * rstd * gw[c] + gb[c]);
      }
    int64_t n;
    g_autofree float *want = vl_test_read (ref, "tokens_final", &n);
    vl_test_assert_close ("LN(block 3 tokens)", normed, want, n, 1e-4, 0);
  }

  /* a middle block: token/avg/max are the CLS row, mean and max of the patch rows of "all" */
  for (int layer = 0; layer < 4; layer += 2)
    {
      g_autoptr(VlFeatures) all = extract (m, ds, VL_FEATURE_SPLIT_VAL, layer, VL_FEATURE_POOL_ALL,
                                           5);
      g_autoptr(VlFeatures) tok = extract (m, ds, VL_FEATURE_SPLIT_VAL, layer,
                                           VL_FEATURE_POOL_TOKEN, 1);
      g_autoptr(VlFeatures) avg = extract (m, ds, VL_FEATURE_SPLIT_VAL, layer, VL_FEATURE_POOL_AVG,
                                           4);
      g_autoptr(VlFeatures) mx = extract (m, ds, VL_FEATURE_SPLIT_VAL, layer, VL_FEATURE_POOL_MAX,
                                          4);
      for (int b = 0; b < B; b++)
        {
          const float *x = all->features + (int64_t) b * all->dim;
          for (int c = 0; c < W; c++)
            {
              double s = 0;
              float hi = -INFINITY;
              for (int t = 1; t < T; t++)
                {
                  s += x[t * W + c];
                  hi = MAX (hi, x[t * W + c]);
                }
              g_assert_cmpfloat (tok->features[b * W + c], ==, x[c]);
              g_assert_cmpfloat (fabs (avg->features[b * W + c] - s / (T - 1)), <, 1e-6);
              g_assert_cmpfloat (mx->features[b * W + c], ==, hi);
            }
        }
      /* and block 0's output differs from block 2's: the layer is honoured */
      if (layer == 2)
        {
          g_autoptr(VlFeatures) b0 = extract (m, ds, VL_FEATURE_SPLIT_VAL, 0, VL_FEATURE_POOL_AVG, 4);
          g_assert_cmpfloat (vl_test_max_abs_diff (b0->features, avg->features, B * W), >, 1e-3);
        }
    }

  /* every layer from one pass: the same as one layer at a time */
  {
    VlFeatures **sets = vl_features_extract_all_layers (m, ds, VL_FEATURE_SPLIT_ALL,
                                                        VL_FEATURE_POOL_AVG, 3, NULL, NULL, NULL,
                                                        &error);
    g_assert_no_error (error);
    int n_sets = 0;
    while (sets[n_sets])
      n_sets++;
    g_assert_cmpint (n_sets, ==, 5);
    for (int j = 0; j < n_sets; j++)
      {
        int layer = j < 4 ? j : VL_FEATURE_LAYER_FINAL;
        g_assert_cmpint (sets[j]->layer, ==, layer);
        g_autoptr(VlFeatures) one = extract (m, ds, VL_FEATURE_SPLIT_ALL, layer,
                                             VL_FEATURE_POOL_AVG, 3);
        g_assert_cmpint (sets[j]->n, ==, one->n);
        g_assert_cmpint (sets[j]->n_train, ==, B);
        g_assert_cmpmem (sets[j]->features, sizeof (float) * one->n * one->dim, one->features,
                         sizeof (float) * one->n * one->dim);
        g_assert_cmpstr (sets[j]->files[B], ==, "memory:val#0");
      }
    vl_features_free_all (sets);
    g_assert_null (vl_features_extract_all_layers (m, ds, VL_FEATURE_SPLIT_ALL,
                                                   VL_FEATURE_POOL_ALL, 3, NULL, NULL, NULL,
                                                   &error));
    g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
    g_clear_error (&error);
  }

  /* progress: after each batch, up to the total */
  {
    VlFeatureOptions o = { .layer = VL_FEATURE_LAYER_FINAL, .pool = VL_FEATURE_POOL_AVG,
                           .batch_size = 3 };
    ProgressLog p = { .monotonic = TRUE };
    g_autoptr(VlFeatures) f = vl_features_extract (m, ds, VL_FEATURE_SPLIT_ALL, &o, log_progress,
                                                   &p, NULL, &error);
    g_assert_no_error (error);
    g_assert_true (p.monotonic);
    g_assert_cmpint (p.calls, ==, 4);   /* 3 + 1 train, 3 + 1 val */
    g_assert_cmpint (p.last_done, ==, 2 * B);
    g_assert_cmpint (p.total, ==, 2 * B);
  }

  /* cancelled: an error, the model's cancellable cleared (a forward runs afterwards) */
  {
    g_autoptr(GCancellable) cancel = g_cancellable_new ();
    g_cancellable_cancel (cancel);
    VlFeatureOptions o = VL_FEATURE_OPTIONS_DEFAULT;
    g_assert_null (vl_features_extract (m, ds, VL_FEATURE_SPLIT_ALL, &o, NULL, NULL, cancel,
                                        &error));
    g_assert_error (error, G_IO_ERROR, G_IO_ERROR_CANCELLED);
    g_clear_error (&error);
    g_autoptr(VlFeatures) f = extract (m, ds, VL_FEATURE_SPLIT_TRAIN, VL_FEATURE_LAYER_FINAL,
                                       VL_FEATURE_POOL_TOKEN, 8);
    g_assert_cmpint (f->n, ==, B);
  }

  /* errors: a block the model does not have, a batch size of 0 */
  VlFeatureOptions o = { .layer = 4, .pool = VL_FEATURE_POOL_TOKEN, .batch_size = 8 };
  g_assert_null (vl_features_extract (m, ds, VL_FEATURE_SPLIT_ALL, &o, NULL, NULL, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "blocks 0 to 3"));
  g_clear_error (&error);
  o.layer = 0;
  o.batch_size = 0;
  g_assert_null (vl_features_extract (m, ds, VL_FEATURE_SPLIT_ALL, &o, NULL, NULL, NULL, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
}

/* Registers are left out of the average (fam-timm-reg-ls); fc_norm models pool, then norm
 * (fam-timm-gap), and have no class token to pool. */
static void
test_features_families (void)
{
  g_autoptr(GError) error = NULL;
  {
    g_autofree char *dir = vl_test_data_path ("fam-timm-reg-ls", NULL);
    g_autofree char *inputs = g_build_filename (dir, "inputs.safetensors", NULL);
    g_autofree char *expected = g_build_filename (dir, "expected.safetensors", NULL);
    g_autoptr(VlModel) m = vl_model_load (dir, &error);
    g_assert_no_error (error);
    g_assert_cmpint (vl_model_geometry (m)->reg_tokens, ==, 4);
    int B, S;
    g_autoptr(VlDataset) ds = fixture_dataset (inputs, "images", &B, &S);
    g_autoptr(VlSafetensors) ref = vl_test_open (expected);
    g_autoptr(VlFeatures) avg = extract (m, ds, VL_FEATURE_SPLIT_TRAIN, VL_FEATURE_LAYER_FINAL,
                                         VL_FEATURE_POOL_AVG, 2);
    g_autoptr(VlFeatures) tok = extract (m, ds, VL_FEATURE_SPLIT_TRAIN, VL_FEATURE_LAYER_FINAL,
                                         VL_FEATURE_POOL_TOKEN, 2);
    int64_t n;
    g_autofree float *want_avg = vl_test_read (ref, "features_avg", &n);
    vl_test_assert_close ("reg-ls features_avg", avg->features, want_avg, n, 1e-4, 0);
    g_autofree float *want_tok = vl_test_read (ref, "features", &n);
    vl_test_assert_close ("reg-ls features (CLS)", tok->features, want_tok, n, 1e-4, 0);
  }
  {
    g_autofree char *dir = vl_test_data_path ("fam-timm-gap", NULL);
    g_autofree char *inputs = g_build_filename (dir, "inputs.safetensors", NULL);
    g_autofree char *expected = g_build_filename (dir, "expected.safetensors", NULL);
    g_autoptr(VlModel) m = vl_model_load (dir, &error);
    g_assert_no_error (error);
    int B, S;
    g_autoptr(VlDataset) ds = fixture_dataset (inputs, "images", &B, &S);
    g_autoptr(VlSafetensors) ref = vl_test_open (expected);
    g_autoptr(VlFeatures) avg = extract (m, ds, VL_FEATURE_SPLIT_TRAIN, VL_FEATURE_LAYER_FINAL,
                                         VL_FEATURE_POOL_AVG, 2);
    int64_t n;
    g_autofree float *want = vl_test_read (ref, "features", &n);
    vl_test_assert_close ("gap features", avg->features, want, n, 1e-4, 0);
    VlFeatureOptions o = VL_FEATURE_OPTIONS_DEFAULT;
    g_assert_null (vl_features_extract (m, ds, VL_FEATURE_SPLIT_ALL, &o, NULL, NULL, NULL,
                                        &error));
    g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
    g_assert_nonnull (strstr (error->message, "no class token"));
  }
}

/* ------------------------------------------------------------------ writers */

static char *
read_text (const char *path)
{
  char *text = NULL;
  g_autoptr(GError) error = NULL;
  g_file_get_contents (path, &text, NULL, &error);
  g_assert_no_error (error);
  return text;
}

/* A hand-made feature set with awkward file names. */
static VlFeatures *
small_features (void)
{
  VlFeatures *f = g_new0 (VlFeatures, 1);
  f->n = 3;
  f->n_train = 2;
  f->n_tokens = 1;
  f->width = 4;
  f->dim = 4;
  f->features = g_new (float, 12);
  for (int i = 0; i < 12; i++)
    f->features[i] = (float) (sin (i + 0.5) * pow (10.0, i % 5 - 2));
  f->features[5] = 1.0f / 3.0f;
  f->labels = g_new (int, 3);
  f->labels[0] = 1;
  f->labels[1] = 0;
  f->labels[2] = 1;
  const char *files[] = { "a/plain.png", "b/with, comma.png", "c/say \"hi\".png", NULL };
  f->files = g_strdupv ((char **) files);
  const char *classes[] = { "ants", "bees, wild", NULL };
  f->class_names = g_strdupv ((char **) classes);
  f->n_classes = 2;
  f->split = VL_FEATURE_SPLIT_ALL;
  f->layer = 5;
  f->pool = VL_FEATURE_POOL_AVG;
  return f;
}

static void
test_writers (void)
{
  g_autoptr(VlFeatures) f = small_features ();
  g_autofree char *dir = vl_test_tmpdir ();
  g_autoptr(GError) error = NULL;

  /* safetensors: features F32, labels I64, the metadata */
  g_autofree char *st_path = g_build_filename (dir, "f.safetensors", NULL);
  g_assert_true (vl_features_write (f, st_path, &error));
  g_assert_no_error (error);
  {
    g_autoptr(VlSafetensors) st = vl_test_open (st_path);
    const VlTensorInfo *t = vl_safetensors_lookup (st, "features");
    g_assert_cmpint (t->dtype, ==, VL_DTYPE_F32);
    g_assert_cmpint (t->ndim, ==, 2);
    g_assert_cmpint (t->shape[0], ==, 3);
    g_assert_cmpint (t->shape[1], ==, 4);
    g_assert_cmpmem (t->data, t->nbytes, f->features, sizeof (float) * 12);
    const VlTensorInfo *l = vl_safetensors_lookup (st, "labels");
    g_assert_cmpint (l->dtype, ==, VL_DTYPE_I64);
    g_assert_cmpint (l->shape[0], ==, 3);
    int64_t lab[3];
    memcpy (lab, l->data, sizeof lab);
    g_assert_cmpint (lab[0], ==, 1);
    g_assert_cmpint (lab[1], ==, 0);
    g_assert_cmpint (lab[2], ==, 1);
    GHashTable *meta = vl_safetensors_metadata (st);
    g_assert_cmpstr (g_hash_table_lookup (meta, "layer"), ==, "5");
    g_assert_cmpstr (g_hash_table_lookup (meta, "pool"), ==, "avg");
    g_assert_cmpstr (g_hash_table_lookup (meta, "split"), ==, "all");
    g_assert_cmpstr (g_hash_table_lookup (meta, "n_train"), ==, "2");
    g_autoptr(JsonParser) p = json_parser_new ();
    g_assert_true (json_parser_load_from_data (p, g_hash_table_lookup (meta, "files"), -1, NULL));
    JsonArray *a = json_node_get_array (json_parser_get_root (p));
    g_assert_cmpint (json_array_get_length (a), ==, 3);
    g_assert_cmpstr (json_array_get_string_element (a, 2), ==, "c/say \"hi\".png");
    g_assert_true (json_parser_load_from_data (p, g_hash_table_lookup (meta, "classes"), -1,
                                               NULL));
    a = json_node_get_array (json_parser_get_root (p));
    g_assert_cmpstr (json_array_get_string_element (a, 1), ==, "bees, wild");
  }

  /* CSV: header, quoting, values that read back exactly */
  g_autofree char *csv_path = g_build_filename (dir, "f.CSV", NULL);
  g_assert_true (vl_features_write (f, csv_path, &error));
  g_autofree char *csv = read_text (csv_path);
  g_auto(GStrv) lines = g_strsplit (csv, "\r\n", -1);
  g_assert_cmpint (g_strv_length (lines), ==, 5);   /* header, 3 rows, "" after the last */
  g_assert_cmpstr (lines[0], ==, "file,label,f0,f1,f2,f3");
  g_assert_true (g_str_has_prefix (lines[1], "a/plain.png,\"bees, wild\","));
  g_assert_true (g_str_has_prefix (lines[2], "\"b/with, comma.png\",ants,"));
  g_assert_true (g_str_has_prefix (lines[3], "\"c/say \"\"hi\"\".png\",\"bees, wild\","));
  g_assert_cmpstr (lines[4], ==, "");
  {
    /* row 0's numbers: the last 4 comma-separated fields */
    g_auto(GStrv) cells = g_strsplit (lines[1], ",", -1);
    guint nc = g_strv_length (cells);
    for (int d = 0; d < 4; d++)
      g_assert_cmpfloat ((float) g_ascii_strtod (cells[nc - 4 + d], NULL), ==, f->features[d]);
    g_auto(GStrv) cells2 = g_strsplit (lines[2], ",", -1);
    guint nc2 = g_strv_length (cells2);
    g_assert_cmpfloat ((float) g_ascii_strtod (cells2[nc2 - 3], NULL), ==, 1.0f / 3.0f);
  }

  /* .npy: the header numpy expects, the data, and the CSV of files and labels beside it */
  g_autofree char *npy_path = g_build_filename (dir, "f.npy", NULL);
  g_assert_true (vl_features_write (f, npy_path, &error));
  {
    gchar *raw;
    gsize len;
    g_assert_true (g_file_get_contents (npy_path, &raw, &len, NULL));
    g_assert_cmpmem (raw, 6, "\x93NUMPY", 6);
    g_assert_cmpint (raw[6], ==, 1);
    guint16 hl = (guint8) raw[8] | ((guint8) raw[9] << 8);
    g_assert_cmpint ((10 + hl) % 64, ==, 0);
    g_autofree char *header = g_strndup (raw + 10, hl);
    g_assert_true (g_str_has_prefix (header,
                                     "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }"));
    g_assert_true (g_str_has_suffix (header, "\n"));
    g_assert_cmpint (len, ==, 10 + hl + 12 * sizeof (float));
    g_assert_cmpmem (raw + 10 + hl, 12 * sizeof (float), f->features, 12 * sizeof (float));
    g_free (raw);
  }
  g_autofree char *side = g_build_filename (dir, "f.csv", NULL);
  g_autofree char *side_text = read_text (side);
  g_assert_cmpstr (side_text, ==,
                   "file,label\r\na/plain.png,\"bees, wild\"\r\n\"b/with, comma.png\",ants\r\n"
                   "\"c/say \"\"hi\"\".png\",\"bees, wild\"\r\n");

  /* an unknown extension, a folder that does not exist */
  g_autofree char *bad = g_build_filename (dir, "f.txt", NULL);
  g_assert_false (vl_features_write (f, bad, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
  g_assert_nonnull (strstr (error->message, "f.txt"));
  g_clear_error (&error);
  g_autofree char *missing = g_build_filename (dir, "no", "such", "f.npy", NULL);
  g_assert_false (vl_features_write (f, missing, &error));
  g_assert_error (error, VL_ERROR, VL_ERROR_IO);
  g_assert_nonnull (strstr (error->message, "f.npy"));
  g_clear_error (&error);
  g_assert_false (g_file_test (bad, G_FILE_TEST_EXISTS));
}

static void
test_layer_names (void)
{
  int layer;
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_feature_layer_from_string ("final", 12, &layer, &error));
  g_assert_cmpint (layer, ==, VL_FEATURE_LAYER_FINAL);
  g_assert_true (vl_feature_layer_from_string ("11", 12, &layer, &error));
  g_assert_cmpint (layer, ==, 11);
  g_assert_true (vl_feature_layer_from_string ("-1", 12, &layer, &error));
  g_assert_cmpint (layer, ==, 11);
  g_assert_true (vl_feature_layer_from_string ("-12", 12, &layer, &error));
  g_assert_cmpint (layer, ==, 0);
  const char *bad[] = { "12", "-13", "x", "", "3.5" };
  for (guint i = 0; i < G_N_ELEMENTS (bad); i++)
    {
      g_assert_false (vl_feature_layer_from_string (bad[i], 12, &layer, &error));
      g_assert_error (error, VL_ERROR, VL_ERROR_INVALID);
      g_clear_error (&error);
    }
  VlFeaturePool pool;
  g_assert_true (vl_feature_pool_from_string ("all", &pool));
  g_assert_cmpint (pool, ==, VL_FEATURE_POOL_ALL);
  g_assert_false (vl_feature_pool_from_string ("mean", &pool));
}

int
main (int argc, char **argv)
{
  g_test_init (&argc, &argv, NULL);
  vl_pool_init (0);
  g_test_add_func ("/probe/score", test_score);
  g_test_add_func ("/probe/knn/reference", test_knn_reference);
  g_test_add_func ("/probe/knn/weights", test_knn_weights);
  g_test_add_func ("/probe/lbfgs/rosenbrock", test_lbfgs_rosenbrock);
  g_test_add_func ("/probe/logreg/gradient", test_logreg_gradient);
  g_test_add_func ("/probe/logreg/sklearn", test_logreg_sklearn);
  g_test_add_func ("/probe/logreg/sweep", test_logreg_sweep);
  g_test_add_func ("/probe/logreg/errors", test_logreg_errors);
  g_test_add_func ("/features/fixture", test_features_fixture);
  g_test_add_func ("/features/families", test_features_families);
  g_test_add_func ("/features/writers", test_writers);
  g_test_add_func ("/features/layer-names", test_layer_names);
  return g_test_run ();
}

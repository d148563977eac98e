/* vl-probe.c: DINO's weighted k-NN, an L-BFGS, and scikit-learn's multinomial logistic
 * regression on frozen features. */
#include "vl-probe.h"

#include "vl-rng.h"
#include "vl-error.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* ------------------------------------------------------------------ scores */

void
vl_probe_score (const int *predicted, const int *labels, int64_t n, int n_classes,
                VlProbeScore *out)
{
  memset (out, 0, sizeof *out);
  out->n_classes = n_classes;
  out->n = n;
  out->class_n = g_new0 (int64_t, n_classes);
  out->class_correct = g_new0 (int64_t, n_classes);
  out->class_acc = g_new (double, n_classes);
  for (int64_t i = 0; i < n; i++)
    {
      int y = labels[i];
      g_return_if_fail (y >= 0 && y < n_classes);
      out->class_n[y]++;
      if (predicted[i] == y)
        {
          out->class_correct[y]++;
          out->correct++;
        }
    }
  out->acc = n > 0 ? (double) out->correct / n : NAN;
  for (int k = 0; k < n_classes; k++)
    out->class_acc[k] = out->class_n[k] > 0 ? (double) out->class_correct[k] / out->class_n[k]
                                            : NAN;
}

void
vl_probe_score_clear (VlProbeScore *s)
{
  g_clear_pointer (&s->class_n, g_free);
  g_clear_pointer (&s->class_correct, g_free);
  g_clear_pointer (&s->class_acc, g_free);
}

/* ------------------------------------------------------------------ input checks */

static gboolean
check_labels (const int *y, int64_t n, int n_classes, const char *what, GError **error)
{
  for (int64_t i = 0; i < n; i++)
    if (y[i] < 0 || y[i] >= n_classes)
      {
        g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                     "%s: label %d of row %" G_GINT64_FORMAT " is not a class index in [0, %d)",
                     what, y[i], i, n_classes);
        return FALSE;
      }
  return TRUE;
}

static gboolean
check_finite (const float *x, int64_t n, int dim, const char *what, GError **error)
{
  for (int64_t i = 0; i < n * dim; i++)
    if (!isfinite (x[i]))
      {
        g_set_error (error, VL_ERROR, VL_ERROR_NUMERIC,
                     "%s: feature %d of row %" G_GINT64_FORMAT " is not finite", what,
                     (int) (i % dim), i / dim);
        return FALSE;
      }
  return TRUE;
}

/* ------------------------------------------------------------------ k-NN */

/* Rows divided by their L2 norm (torch.nn.functional.normalize: by max (norm, 1e-12)). */
static float *
l2_normalized (const float *x, int64_t n, int dim)
{
  float *out = g_new (float, MAX (n * dim, 1));
  for (int64_t i = 0; i < n; i++)
    {
      const float *r = x + i * dim;
      double ss = 0;
      for (int d = 0; d < dim; d++)
        ss += (double) r[d] * r[d];
      double inv = 1.0 / MAX (sqrt (ss), 1e-12);
      for (int d = 0; d < dim; d++)
        out[i * dim + d] = (float) (r[d] * inv);
    }
  return out;
}

gboolean
vl_knn_predict (const float *train, const int *train_labels, int64_t n_train,
                const float *query, int64_t n_query, int dim, int n_classes, int k,
                double temperature, int *predicted, GError **error)
{
  if (k < 1 || !(temperature > 0) || !isfinite (temperature) || dim < 1 || n_classes < 1 ||
      n_train < 1)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "k-NN: k %d, temperature %g, %d dimensions, %d classes, %" G_GINT64_FORMAT
                   " train rows: each must be positive", k, temperature, dim, n_classes, n_train);
      return FALSE;
    }
  if (!check_labels (train_labels, n_train, n_classes, "k-NN train set", error) ||
      !check_finite (train, n_train, dim, "k-NN train set", error) ||
      !check_finite (query, n_query, dim, "k-NN queries", error))
    return FALSE;
  k = (int) MIN ((int64_t) k, n_train);
  g_autofree float *tn = l2_normalized (train, n_train, dim);
  g_autofree float *qn = l2_normalized (query, n_query, dim);
  /* similarities of a chunk of queries against every train row: at most ~16 MB at a time */
  const int64_t chunk = CLAMP ((4 << 20) / n_train, 1, 1024);
  g_autofree float *sim = g_new (float, chunk * n_train);
  g_autofree float *top_s = g_new (float, k);
  g_autofree int64_t *top_i = g_new (int64_t, k);
  g_autofree double *votes = g_new (double, n_classes);
  for (int64_t q0 = 0; q0 < n_query; q0 += chunk)
    {
      const int64_t nq = MIN (chunk, n_query - q0);
      cblas_sgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) nq, (int) n_train, dim, 1.0f,
                   qn + q0 * dim, dim, tn, dim, 0.0f, sim, (int) n_train);
      for (int64_t q = 0; q < nq; q++)
        {
          const float *s = sim + q * n_train;
          /* the k largest, sorted descending (insertion: k is small); ties keep the lower row */
          int have = 0;
          for (int64_t j = 0; j < n_train; j++)
            {
              if (have == k && s[j] <= top_s[k - 1])
                continue;
              int at = have < k ? have++ : k - 1;
              while (at > 0 && top_s[at - 1] < s[j])
                {
                  top_s[at] = top_s[at - 1];
                  top_i[at] = top_i[at - 1];
                  at--;
                }
              top_s[at] = s[j];
              top_i[at] = j;
            }
          memset (votes, 0, sizeof (double) * n_classes);
          for (int j = 0; j < k; j++)
            votes[train_labels[top_i[j]]] += exp ((double) top_s[j] / temperature);
          int best = 0;
          for (int c = 1; c < n_classes; c++)
            if (votes[c] > votes[best])
              best = c;
          predicted[q0 + q] = best;
        }
    }
  return TRUE;
}

/* ------------------------------------------------------------------ L-BFGS */

static double
dot (const double *a, const double *b, int64_t n)
{
  double s = 0;
  for (int64_t i = 0; i < n; i++)
    s += a[i] * b[i];
  return s;
}

static double
max_abs (const double *a, int64_t n)
{
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    m = MAX (m, fabs (a[i]));
  return m;
}

typedef struct {
  int64_t      n;
  const double *x, *d;       /* the point and the direction */
  double      *xt, *gt;      /* the trial point and its gradient */
  VlLbfgsFunc  f;
  gpointer     user_data;
  int          evaluations;
} Line;

/* phi (t) = f (x + t d); its derivative into *dphi; a non-finite value is +inf. */
static double
line_eval (Line *L, double t, double *dphi)
{
  for (int64_t i = 0; i < L->n; i++)
    L->xt[i] = L->x[i] + t * L->d[i];
  double v = L->f (L->xt, L->gt, L->user_data);
  L->evaluations++;
  *dphi = dot (L->gt, L->d, L->n);
  if (!isfinite (v) || !isfinite (*dphi))
    {
      *dphi = NAN;
      return INFINITY;
    }
  return v;
}

/* The minimiser of the cubic through (a, fa, ga) and (b, fb, gb), kept at least a tenth of the
 * interval away from its ends; the midpoint when the cubic has none. */
static double
cubic_step (double a, double fa, double ga, double b, double fb, double gb)
{
  double lo = MIN (a, b), hi = MAX (a, b), mid = 0.5 * (a + b);
  if (!isfinite (fa) || !isfinite (fb) || !isfinite (ga) || !isfinite (gb))
    return mid;
  double d1 = ga + gb - 3 * (fa - fb) / (a - b);
  double disc = d1 * d1 - ga * gb;
  if (disc < 0)
    return mid;
  double d2 = copysign (sqrt (disc), b - a);
  double den = gb - ga + 2 * d2;
  if (den == 0)
    return mid;
  double t = b - (b - a) * (gb + d2 - d1) / den;
  double margin = 0.1 * (hi - lo);
  if (!isfinite (t) || t < lo + margin || t > hi - margin)
    return mid;
  return t;
}

#define C1 1e-4
#define C2 0.9

/* A step t > 0 along d meeting the strong Wolfe conditions (Nocedal & Wright, algorithms 3.5
 * and 3.6); xt, gt hold its point and gradient. FALSE when none was found: then, when some step
 * decreased f, xt and gt hold the best such one and *t it. */
static gboolean
line_search (Line *L, double f0, double g0, double t_init, double *t_out, double *f_out)
{
  double t_prev = 0, f_prev = f0, g_prev = g0;
  double t = t_init;
  double lo = 0, f_lo = f0, g_lo = g0, hi = 0, f_hi = 0, g_hi = 0;
  gboolean zoom = FALSE;
  for (int i = 0; i < 40 && !zoom; i++)
    {
      double gt;
      double ft = line_eval (L, t, &gt);
      if (ft > f0 + C1 * t * g0 || (i > 0 && ft >= f_prev))
        {
          lo = t_prev, f_lo = f_prev, g_lo = g_prev;
          hi = t, f_hi = ft, g_hi = gt;
          zoom = TRUE;
          break;
        }
      if (fabs (gt) <= -C2 * g0)
        {
          *t_out = t;
          *f_out = ft;
          return TRUE;
        }
      if (gt >= 0)
        {
          lo = t, f_lo = ft, g_lo = gt;
          hi = t_prev, f_hi = f_prev, g_hi = g_prev;
          zoom = TRUE;
          break;
        }
      t_prev = t, f_prev = ft, g_prev = gt;
      t *= 4;
    }
  if (!zoom)
    {
      /* 40 expansions and still descending: the last point (xt, gt hold it) decreased f */
      *f_out = f_prev;
      *t_out = t_prev;
      return FALSE;
    }
  for (int i = 0; i < 60; i++)
    {
      if (fabs (hi - lo) <= 1e-16 * MAX (fabs (lo), fabs (hi)))
        break;
      double tz = cubic_step (lo, f_lo, g_lo, hi, f_hi, g_hi);
      double gt;
      double ft = line_eval (L, tz, &gt);
      if (ft > f0 + C1 * tz * g0 || ft >= f_lo)
        {
          hi = tz, f_hi = ft, g_hi = gt;
          continue;
        }
      if (fabs (gt) <= -C2 * g0)
        {
          *t_out = tz;
          *f_out = ft;
          return TRUE;
        }
      if (gt * (hi - lo) >= 0)
        hi = lo, f_hi = f_lo, g_hi = g_lo;
      lo = tz, f_lo = ft, g_lo = gt;
    }
  /* the interval shrank to nothing: lo is the best point that met the decrease condition */
  *t_out = lo;
  if (lo > 0)
    {
      double gt;
      *f_out = line_eval (L, lo, &gt);
    }
  else
    *f_out = f0;
  return FALSE;
}

void
vl_lbfgs_minimize (int64_t n, double *x, VlLbfgsFunc f, gpointer user_data,
                   const VlLbfgsOptions *options, VlLbfgsReport *report)
{
  VlLbfgsOptions defaults = VL_LBFGS_DEFAULTS;
  const VlLbfgsOptions *o = options ? options : &defaults;
  const int M = MAX (o->memory, 1);
  VlLbfgsReport r = { VL_LBFGS_MAX_ITER, 0, 0, 0, 0 };
  g_autofree double *S = g_new (double, M * n), *Y = g_new (double, M * n);
  g_autofree double *rho = g_new (double, M), *alpha = g_new (double, M);
  g_autofree double *g = g_new (double, n), *d = g_new (double, n);
  g_autofree double *xt = g_new (double, n), *gt = g_new (double, n);
  int stored = 0, newest = -1;

  double fx = f (x, g, user_data);
  r.evaluations = 1;
  const double gtol = o->gtol * (o->gscale > 0 ? o->gscale : MAX (1.0, max_abs (g, n)));
  Line L = { n, x, d, xt, gt, f, user_data, 0 };
  for (;;)
    {
      r.f = fx;
      r.gmax = max_abs (g, n);
      if (r.gmax <= gtol)
        {
          r.status = VL_LBFGS_CONVERGED;
          break;
        }
      if (!isfinite (fx))
        {
          r.status = VL_LBFGS_LINE_SEARCH;
          break;
        }
      if (r.iterations >= o->max_iter)
        {
          r.status = VL_LBFGS_MAX_ITER;
          break;
        }
      /* d = -H g by the two-loop recursion */
      memcpy (d, g, sizeof (double) * n);
      for (int j = 0; j < stored; j++)
        {
          int i = (newest - j + M) % M;
          alpha[i] = rho[i] * dot (S + (int64_t) i * n, d, n);
          cblas_daxpy ((int) n, -alpha[i], Y + (int64_t) i * n, 1, d, 1);
        }
      double gamma = 1.0;
      if (stored > 0)
        {
          const double *yn = Y + (int64_t) newest * n;
          gamma = 1.0 / (rho[newest] * dot (yn, yn, n));
        }
      for (int64_t i = 0; i < n; i++)
        d[i] *= gamma;
      for (int j = stored - 1; j >= 0; j--)
        {
          int i = (newest - j + M) % M;
          double beta = rho[i] * dot (Y + (int64_t) i * n, d, n);
          cblas_daxpy ((int) n, alpha[i] - beta, S + (int64_t) i * n, 1, d, 1);
        }
      for (int64_t i = 0; i < n; i++)
        d[i] = -d[i];
      double gd = dot (g, d, n);
      if (!(gd < 0))
        {
          /* not a descent direction (rounding): forget the pairs, go down the gradient */
          stored = 0;
          for (int64_t i = 0; i < n; i++)
            d[i] = -g[i];
          gd = -dot (g, g, n);
        }
      double t0 = stored > 0 ? 1.0 : MIN (1.0, 1.0 / sqrt (-gd));
      double t, ft;
      L.evaluations = 0;
      gboolean ok = line_search (&L, fx, gd, t0, &t, &ft);
      r.evaluations += L.evaluations;
      if (!ok && !(t > 0 && ft < fx))
        {
          r.status = VL_LBFGS_LINE_SEARCH;
          break;
        }
      /* the new pair */
      int slot = (newest + 1) % M;
      double *s = S + (int64_t) slot * n, *yv = Y + (int64_t) slot * n;
      for (int64_t i = 0; i < n; i++)
        {
          s[i] = xt[i] - x[i];
          yv[i] = gt[i] - g[i];
        }
      double sy = dot (s, yv, n);
      if (sy > 1e-12 * dot (yv, yv, n) && sy > 0)
        {
          rho[slot] = 1.0 / sy;
          newest = slot;
          stored = MIN (stored + 1, M);
        }
      double f_prev = fx;
      memcpy (x, xt, sizeof (double) * n);
      memcpy (g, gt, sizeof (double) * n);
      fx = ft;
      r.iterations++;
      if (f_prev - fx <= o->ftol * MAX (fabs (f_prev), 1.0))
        {
          r.f = fx;
          r.gmax = max_abs (g, n);
          r.status = r.gmax <= gtol ? VL_LBFGS_CONVERGED : VL_LBFGS_FLAT;
          break;
        }
    }
  if (report)
    *report = r;
}

/* ------------------------------------------------------------------ logistic regression */

typedef struct {
  const double *X;           /* (n, D) */
  const int    *y;
  int64_t       n;
  int           D, K;
  double        C;
  double       *Z;           /* (n, K) scratch */
} Objective;

/* scikit-learn's objective: C times the multinomial log-loss summed over the rows, plus ½ ‖W‖²
 * (the intercept not penalised). */
static double
objective_eval (const double *theta, double *grad, gpointer user_data)
{
  const Objective *o = user_data;
  const int D = o->D, K = o->K;
  const int64_t n = o->n;
  const double *W = theta, *b = theta + (int64_t) K * D;
  double *Z = o->Z;
  /* Z = X Wᵀ + b */
  for (int64_t i = 0; i < n; i++)
    memcpy (Z + i * K, b, sizeof (double) * K);
  if (n > 0)
    cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasTrans, (int) n, K, D, 1.0, o->X, D, W, D,
                 1.0, Z, K);
  double loss = 0;
  for (int64_t i = 0; i < n; i++)
    {
      double *z = Z + i * K;
      double mx = z[0];
      for (int k = 1; k < K; k++)
        mx = MAX (mx, z[k]);
      double s = 0;
      for (int k = 0; k < K; k++)
        s += exp (z[k] - mx);
      double lse = mx + log (s);
      loss += lse - z[o->y[i]];
      if (grad)
        {
          /* the residual P - Y, scaled by C, in place */
          for (int k = 0; k < K; k++)
            z[k] = o->C * exp (z[k] - lse);
          z[o->y[i]] -= o->C;
        }
    }
  double reg = 0;
  for (int64_t j = 0; j < (int64_t) K * D; j++)
    reg += W[j] * W[j];
  if (grad)
    {
      /* dW = C (P - Y)ᵀ X + W, db = C Σ (P - Y) */
      memcpy (grad, W, sizeof (double) * K * D);
      if (n > 0)
        cblas_dgemm (CblasRowMajor, CblasTrans, CblasNoTrans, K, D, (int) n, 1.0, Z, K, o->X, D,
                     1.0, grad, D);
      double *gb = grad + (int64_t) K * D;
      memset (gb, 0, sizeof (double) * K);
      for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < K; k++)
          gb[k] += Z[i * K + k];
    }
  return o->C * loss + 0.5 * reg;
}

static double *
to_double (const float *X, int64_t n, int dim)
{
  double *out = g_new (double, MAX (n * dim, 1));
  for (int64_t i = 0; i < n * dim; i++)
    out[i] = X[i];
  return out;
}

double
vl_logreg_objective (const float *X, const int *y, int64_t n, int dim, int n_classes, double C,
                     const double *theta, double *grad)
{
  g_autofree double *Xd = to_double (X, n, dim);
  g_autofree double *Z = g_new (double, MAX (n * n_classes, 1));
  Objective o = { Xd, y, n, dim, n_classes, C, Z };
  return objective_eval (theta, grad, &o);
}

void
vl_logreg_free (VlLogreg *lr)
{
  if (lr == NULL)
    return;
  g_free (lr->coef);
  g_free (lr->intercept);
  g_free (lr);
}

static gboolean
check_fit_input (const float *X, const int *y, int64_t n, int dim, int n_classes, double C,
                 GError **error)
{
  if (n_classes < 2 || dim < 1 || n < 1 || !(C > 0) || !isfinite (C))
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "logistic regression: %d classes, %d dimensions, %" G_GINT64_FORMAT
                   " rows, C %g: expected at least 2 classes, 1 dimension, 1 row and C > 0",
                   n_classes, dim, n, C);
      return FALSE;
    }
  return check_labels (y, n, n_classes, "logistic regression", error) &&
         check_finite (X, n, dim, "logistic regression", error);
}

/* Fits on the double rows Xd (already checked). */
static VlLogreg *
fit_double (const double *Xd, const int *y, int64_t n, int dim, int K, double C,
            const double *theta0, const VlLbfgsOptions *options)
{
  const int64_t P = (int64_t) K * dim + K;
  g_autofree double *theta = theta0 ? g_memdup2 (theta0, sizeof (double) * P)
                                    : g_new0 (double, P);
  g_autofree double *Z = g_new (double, MAX (n * K, 1));
  Objective o = { Xd, y, n, dim, K, C, Z };
  VlLbfgsOptions opt = VL_LBFGS_DEFAULTS;
  if (options)
    opt = *options;
  if (opt.gscale <= 0)
    {
      /* the gradient at zero sets the scale, so that a warm start stops where a cold one does */
      g_autofree double *zero = g_new0 (double, P), *g0 = g_new (double, P);
      objective_eval (zero, g0, &o);
      opt.gscale = MAX (1.0, max_abs (g0, P));
    }
  VlLogreg *lr = g_new0 (VlLogreg, 1);
  vl_lbfgs_minimize (P, theta, objective_eval, &o, &opt, &lr->report);
  lr->n_classes = K;
  lr->dim = dim;
  lr->C = C;
  lr->coef = g_memdup2 (theta, sizeof (double) * K * dim);
  lr->intercept = g_memdup2 (theta + (int64_t) K * dim, sizeof (double) * K);
  return lr;
}

VlLogreg *
vl_logreg_fit (const float *X, const int *y, int64_t n, int dim, int n_classes, double C,
               const double *theta0, const VlLbfgsOptions *options, GError **error)
{
  if (!check_fit_input (X, y, n, dim, n_classes, C, error))
    return NULL;
  g_autofree double *Xd = to_double (X, n, dim);
  return fit_double (Xd, y, n, dim, n_classes, C, theta0, options);
}

static void
predict_double (const VlLogreg *lr, const double *Xd, const float *Xf, int64_t n, int *predicted,
                double *proba)
{
  const int K = lr->n_classes, D = lr->dim;
  g_autofree double *z = g_new (double, K);
  for (int64_t i = 0; i < n; i++)
    {
      for (int k = 0; k < K; k++)
        {
          double s = lr->intercept[k];
          const double *w = lr->coef + (int64_t) k * D;
          if (Xd)
            s += dot (w, Xd + i * D, D);
          else
            for (int d = 0; d < D; d++)
              s += w[d] * Xf[i * D + d];
          z[k] = s;
        }
      int best = 0;
      for (int k = 1; k < K; k++)
        if (z[k] > z[best])
          best = k;
      if (predicted)
        predicted[i] = best;
      if (proba)
        {
          double s = 0;
          for (int k = 0; k < K; k++)
            s += exp (z[k] - z[best]);
          for (int k = 0; k < K; k++)
            proba[i * K + k] = exp (z[k] - z[best]) / s;
        }
    }
}

void
vl_logreg_predict (const VlLogreg *lr, const float *X, int64_t n, int *predicted, double *proba)
{
  predict_double (lr, NULL, X, n, predicted, proba);
}

void
vl_logreg_sweep_result_clear (VlLogregSweepResult *r)
{
  g_clear_pointer (&r->c, g_free);
  g_clear_pointer (&r->holdout_acc, g_free);
  g_clear_pointer (&r->holdout_loss, g_free);
}

void
vl_logreg_holdout (const int *y, int64_t n, int n_classes, double fraction, uint64_t seed,
                   gboolean *mask)
{
  VlRng rng;
  vl_rng_seed (&rng, seed);
  g_autofree int64_t *idx = g_new (int64_t, MAX (n, 1));
  memset (mask, 0, sizeof (gboolean) * n);
  for (int k = 0; k < n_classes; k++)
    {
      int64_t m = 0;
      for (int64_t i = 0; i < n; i++)
        if (y[i] == k)
          idx[m++] = i;
      if (m < 2)
        continue;
      for (int64_t i = m - 1; i > 0; i--)   /* Fisher-Yates */
        {
          int64_t j = (int64_t) (vl_rng_next (&rng) % (uint64_t) (i + 1));
          int64_t t = idx[i];
          idx[i] = idx[j];
          idx[j] = t;
        }
      int64_t h = CLAMP ((int64_t) llround (fraction * m), 1, m - 1);
      for (int64_t i = 0; i < h; i++)
        mask[idx[i]] = TRUE;
    }
}

VlLogreg *
vl_logreg_fit_sweep (const float *X, const int *y, int64_t n, int dim, int n_classes,
                     const VlLogregSweep *sweep, VlLogregSweepResult *result,
                     GCancellable *cancellable, GError **error)
{
  VlLogregSweep defaults = VL_LOGREG_SWEEP_DEFAULT;
  const VlLogregSweep *sw = sweep ? sweep : &defaults;
  if (result)
    memset (result, 0, sizeof *result);
  if (!check_fit_input (X, y, n, dim, n_classes, 1.0, error))
    return NULL;
  if (!(sw->holdout > 0 && sw->holdout < 1) || !(sw->log10_c_step > 0) ||
      !(sw->log10_c_max >= sw->log10_c_min) || !isfinite (sw->log10_c_min) ||
      !isfinite (sw->log10_c_max) || (sw->log10_c_max - sw->log10_c_min) / sw->log10_c_step > 1000)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "logistic regression sweep: hold-out %g (expected between 0 and 1), log10 C "
                   "from %g to %g by %g (at most 1000 steps)", sw->holdout, sw->log10_c_min,
                   sw->log10_c_max, sw->log10_c_step);
      return NULL;
    }
  const int K = n_classes, D = dim;
  const int64_t P = (int64_t) K * D + K;
  g_autofree gboolean *mask = g_new (gboolean, n);
  vl_logreg_holdout (y, n, K, sw->holdout, sw->seed, mask);
  int64_t n_fit = 0, n_hold = 0;
  for (int64_t i = 0; i < n; i++)
    mask[i] ? n_hold++ : n_fit++;
  if (n_hold == 0)
    {
      g_set_error (error, VL_ERROR, VL_ERROR_INVALID,
                   "logistic regression sweep: %" G_GINT64_FORMAT " rows leave none to hold out "
                   "(each class needs at least two)", n);
      return NULL;
    }
  g_autofree double *Xfit = g_new (double, n_fit * D), *Xhold = g_new (double, n_hold * D);
  g_autofree int *yfit = g_new (int, n_fit), *yhold = g_new (int, n_hold);
  for (int64_t i = 0, a = 0, h = 0; i < n; i++)
    {
      double *dst = mask[i] ? Xhold + h * D : Xfit + a * D;
      for (int d = 0; d < D; d++)
        dst[d] = X[i * D + d];
      if (mask[i])
        yhold[h++] = y[i];
      else
        yfit[a++] = y[i];
    }

  const int n_c = (int) floor ((sw->log10_c_max - sw->log10_c_min) / sw->log10_c_step + 1e-9) + 1;
  g_autofree double *cs = g_new (double, n_c), *acc = g_new (double, n_c);
  g_autofree double *loss = g_new (double, n_c);
  g_autofree double *theta = g_new0 (double, P), *best_theta = g_new0 (double, P);
  g_autofree int *pred = g_new (int, n_hold);
  g_autofree double *proba = g_new (double, n_hold * K);
  int best = -1;
  for (int c = 0; c < n_c; c++)
    {
      if (g_cancellable_set_error_if_cancelled (cancellable, error))
        return NULL;
      cs[c] = pow (10.0, sw->log10_c_min + c * sw->log10_c_step);
      g_autoptr(VlLogreg) lr = fit_double (Xfit, yfit, n_fit, D, K, cs[c], theta, NULL);
      memcpy (theta, lr->coef, sizeof (double) * K * D);
      memcpy (theta + (int64_t) K * D, lr->intercept, sizeof (double) * K);
      predict_double (lr, Xhold, NULL, n_hold, pred, proba);
      int64_t correct = 0;
      double ll = 0;
      for (int64_t i = 0; i < n_hold; i++)
        {
          correct += pred[i] == yhold[i];
          ll -= log (MAX (proba[i * K + yhold[i]], 1e-300));
        }
      acc[c] = (double) correct / n_hold;
      loss[c] = ll / n_hold;
      if (best < 0 || acc[c] > acc[best])   /* ties: the smaller C (the first in the grid) */
        {
          best = c;
          memcpy (best_theta, theta, sizeof (double) * P);
        }
    }
  if (g_cancellable_set_error_if_cancelled (cancellable, error))
    return NULL;
  g_autofree double *Xd = to_double (X, n, D);
  VlLogreg *lr = fit_double (Xd, y, n, D, K, cs[best], best_theta, NULL);
  if (result)
    {
      result->n_c = n_c;
      result->c = g_steal_pointer (&cs);
      result->holdout_acc = g_steal_pointer (&acc);
      result->holdout_loss = g_steal_pointer (&loss);
      result->best = best;
      result->n_fit = n_fit;
      result->n_holdout = n_hold;
    }
  return lr;
}

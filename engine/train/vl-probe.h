/* vl-probe.h: how good frozen features are, without training the network: DINO's weighted k-NN
 * and scikit-learn's L2-regularised multinomial logistic regression (on an L-BFGS of vitlab's
 * own), with per-class accuracy.
 *
 *   int *pred = g_new (int, n_val);
 *   vl_knn_predict (train, ytrain, n_train, val, n_val, D, K, 20, 0.07, pred, &error);
 *   VlLogregSweep sw = VL_LOGREG_SWEEP_DEFAULT;
 *   g_autoptr(VlLogreg) lr = vl_logreg_fit_sweep (train, ytrain, n_train, D, K, &sw, NULL, &error);
 *   vl_logreg_predict (lr, val, n_val, pred, NULL);
 *   VlProbeScore s;
 *   vl_probe_score (pred, yval, n_val, K, &s);
 *
 * Features are rows of D floats; labels are class indices 0 … K-1. */
#pragma once

#include <gio/gio.h>
#include <glib.h>
#include <stdint.h>

G_BEGIN_DECLS

/* ------------------------------------------------------------------ scores */

typedef struct {
  int       n_classes;
  int64_t   n, correct;
  double    acc;          /* correct / n */
  int64_t  *class_n;      /* (K) items of each true class */
  int64_t  *class_correct;/* (K) */
  double   *class_acc;    /* (K) NAN for a class without items */
} VlProbeScore;

void      vl_probe_score        (const int *predicted, const int *labels, int64_t n, int n_classes,
                                 VlProbeScore *out);
void      vl_probe_score_clear  (VlProbeScore *s);

/* ------------------------------------------------------------------ k-NN */

/* DINO's eval_knn.py knn_classifier: train and query rows are L2-normalised, the similarity is
 * their dot product (cosine), the k most similar train rows vote for their class with weight
 * exp(similarity / temperature), and the class with the largest sum wins (ties: the lower class
 * index). k above n_train is clamped to it. A row of zeros stays zero (similarity 0). Errors: k or
 * temperature not positive, a label outside 0 … K-1, a non-finite feature. */
gboolean  vl_knn_predict        (const float *train, const int *train_labels, int64_t n_train,
                                 const float *query, int64_t n_query, int dim, int n_classes,
                                 int k, double temperature, int *predicted, GError **error);

/* ------------------------------------------------------------------ L-BFGS */

/* f(x), and its gradient into grad (n entries). */
typedef double (*VlLbfgsFunc) (const double *x, double *grad, gpointer user_data);

typedef struct {
  int    memory;       /* correction pairs kept (10) */
  int    max_iter;     /* iterations (2000) */
  double gtol;         /* stop when max |g| <= gtol * max (1, max |g(x0)|) (1e-8) */
  double gscale;       /* > 0: scales gtol in place of max (1, max |g(x0)|) (so that a warm start
                        * does not tighten the test) */
  double ftol;         /* ... or when the decrease (f_k - f_k+1) <= ftol * max (|f_k|, 1) (1e-12) */
} VlLbfgsOptions;

#define VL_LBFGS_DEFAULTS { .memory = 10, .max_iter = 2000, .gtol = 1e-8, .gscale = 0, \
                            .ftol = 1e-12 }

typedef enum {
  VL_LBFGS_CONVERGED,        /* the gradient test */
  VL_LBFGS_FLAT,             /* the decrease test */
  VL_LBFGS_MAX_ITER,
  VL_LBFGS_LINE_SEARCH,      /* no step satisfied the Wolfe conditions (x is the best point) */
} VlLbfgsStatus;

typedef struct {
  VlLbfgsStatus status;
  int     iterations;
  int     evaluations;
  double  f;
  double  gmax;              /* max |g| at the end */
} VlLbfgsReport;

/* Minimises f from x (updated in place) by limited-memory BFGS (two-loop recursion, initial
 * Hessian sᵀy / yᵀy) with a line search for the strong Wolfe conditions (c1 1e-4, c2 0.9). */
void      vl_lbfgs_minimize     (int64_t n, double *x, VlLbfgsFunc f, gpointer user_data,
                                 const VlLbfgsOptions *options, VlLbfgsReport *report);

/* ------------------------------------------------------------------ logistic regression */

typedef struct {
  int     n_classes, dim;
  double  C;
  double *coef;              /* (K, D) */
  double *intercept;         /* (K) */
  VlLbfgsReport report;
} VlLogreg;

/* scikit-learn's LogisticRegression (multi_class="multinomial", penalty="l2") objective at
 * theta = [coef (K, D) row-major, intercept (K)]:
 *   C · Σᵢ (logsumexp (W xᵢ + b) - (W xᵢ + b)[yᵢ]) + ½ ‖W‖²     (the intercept not penalised)
 * and its gradient into grad (K·D + K entries; may be NULL). */
double    vl_logreg_objective   (const float *X, const int *y, int64_t n, int dim, int n_classes,
                                 double C, const double *theta, double *grad);
/* Minimises it from theta0 (K·D + K entries; NULL: zeros), the gradient test scaled by the
 * gradient at zero whatever the start (options NULL: VL_LBFGS_DEFAULTS). Errors: C not positive, a label
 * outside 0 … K-1, a non-finite feature, fewer than two classes. */
VlLogreg *vl_logreg_fit         (const float *X, const int *y, int64_t n, int dim, int n_classes,
                                 double C, const double *theta0, const VlLbfgsOptions *options,
                                 GError **error);
/* Predicted classes (the first of equal largest logits) and, when proba is not NULL, the
 * softmax probabilities (n, K). */
void      vl_logreg_predict     (const VlLogreg *lr, const float *X, int64_t n, int *predicted,
                                 double *proba);
void      vl_logreg_free        (VlLogreg *lr);

typedef struct {
  double   holdout;          /* fraction of each class held out (0.2) */
  uint64_t seed;             /* the hold-out draw (0) */
  double   log10_c_min, log10_c_max, log10_c_step;   /* -3, 3, 0.5: 13 values */
} VlLogregSweep;

#define VL_LOGREG_SWEEP_DEFAULT { .holdout = 0.2, .seed = 0, .log10_c_min = -3.0, \
                                  .log10_c_max = 3.0, .log10_c_step = 0.5 }

typedef struct {
  int     n_c;
  double *c;                 /* (n_c) */
  double *holdout_acc;       /* (n_c) */
  double *holdout_loss;      /* (n_c) mean log-loss on the hold-out */
  int     best;              /* index of the chosen C */
  int64_t n_fit, n_holdout;
} VlLogregSweepResult;

void      vl_logreg_sweep_result_clear (VlLogregSweepResult *r);

/* Holds out round (holdout · n_k) images of each class k (at least one, and never all of them;
 * none from a class with a single image), drawn with the seed; fits each C on the rest (warm
 * started from the previous C's solution), picks the C with the highest hold-out accuracy (ties:
 * the smallest such C, the first in the grid, as GridSearchCV ranks them), and refits it on
 * every row. result may be
 * NULL. Checks the cancellable between fits. */
VlLogreg *vl_logreg_fit_sweep   (const float *X, const int *y, int64_t n, int dim, int n_classes,
                                 const VlLogregSweep *sweep, VlLogregSweepResult *result,
                                 GCancellable *cancellable, GError **error);
/* The stratified hold-out of vl_logreg_fit_sweep: mask[i] TRUE for a held-out row. */
void      vl_logreg_holdout     (const int *y, int64_t n, int n_classes, double fraction,
                                 uint64_t seed, gboolean *mask);

G_DEFINE_AUTOPTR_CLEANUP_FUNC (VlLogreg, vl_logreg_free)

G_END_DECLS

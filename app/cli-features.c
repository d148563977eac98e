/* cli-features.c: vitlab-cli features and probe, on the engine's vl-features and vl-probe.
 *
 *   vitlab-cli features CKPT|RUN --data SPEC [--split train|val|all] [--layer L|final]
 *                       [--pool token|avg|max|map|all] [--batch B] --out FILE
 *   vitlab-cli probe CKPT|RUN --data SPEC [--method knn|logreg|both] [--k 20]
 *                    [--temperature 0.07] [--layer L|final|all] [--pool token|avg|max|map] [--seed S]
 *
 * A RUN is a run folder (run.json: its dataset is the default --data, with its split and seed);
 * a CKPT anything vl_model_load opens. On a terminal, stderr shows the extraction's progress and
 * ETA. probe prints per-class accuracy and ends with the lines knn_acc=N and/or logreg_acc=N;
 * with --layer all, a table of the probes at every block's output from one pass over the images,
 * the closing lines then being the final layer's. */
#include "vl-eta.h"
#include "vl-format.h"
#include "cli-commands.h"
#include "vl-i18n.h"

#include "vl-features.h"
#include "vl-probe.h"
#include "vl-trainer.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EXIT_USAGE 2

static int
usage_error (const char *command, const char *fmt, ...) G_GNUC_PRINTF (2, 3);

static int
usage_error (const char *command, const char *fmt, ...)
{
  va_list ap;
  va_start (ap, fmt);
  g_autofree char *msg = g_strdup_vprintf (fmt, ap);
  va_end (ap);
  g_printerr (_("vitlab-cli: %s: %s (see 'vitlab-cli %s --help')\n"), command, msg, command);
  return EXIT_USAGE;
}

/* The model of a run folder or a checkpoint, and the dataset: --data, else the run's (with the
 * run's split fraction and seed). */
static gboolean
open_model_and_data (const char *command, const char *source, const char *data, VlModel **model,
                     VlDataset **dataset, int *status)
{
  GError *error = NULL;
  VlDatasetOptions opts = VL_DATASET_OPTIONS_DEFAULT;
  g_autofree char *spec = g_strdup (data);
  g_autofree char *run_json = g_build_filename (source, "run.json", NULL);
  g_autoptr(VlModel) m = NULL;
  if (g_file_test (run_json, G_FILE_TEST_IS_REGULAR))
    {
      VlTrainConfig cfg;
      if (!vl_train_config_load (&cfg, source, &error))
        return (*status = cli_fail (error)), FALSE;
      opts.val_fraction = cfg.val_fraction;
      opts.seed = cfg.seed;
      if (spec == NULL)
        spec = g_strdup (cfg.data);
      vl_train_config_clear (&cfg);
      m = vl_run_load_model (source, NULL, &error);
    }
  else if (!g_file_test (source, G_FILE_TEST_EXISTS))
    {
      g_printerr (_("vitlab-cli: %s: no such run folder or checkpoint\n"), source);
      return (*status = EXIT_FAILURE), FALSE;
    }
  else
    {
      if (spec == NULL)
        {
          *status = usage_error (command, _("%s is not a run folder (no run.json): give --data"),
                                 source);
          return FALSE;
        }
      m = vl_model_load (source, &error);
    }
  if (m == NULL)
    return (*status = cli_fail (error)), FALSE;
  VlDataset *ds = vl_dataset_open (spec, &opts, &error);
  if (ds == NULL)
    return (*status = cli_fail (error)), FALSE;
  *model = g_steal_pointer (&m);
  *dataset = ds;
  return TRUE;
}

static void
print_skipped (VlDataset *ds)
{
  g_autoptr(GPtrArray) skipped = vl_dataset_skipped (ds);
  if (skipped->len == 0)
    return;
  g_printerr (_("skipped %u file%s:\n"), skipped->len, skipped->len == 1 ? "" : "s");
  for (guint i = 0; i < skipped->len; i++)
    {
      VlSkipped *s = g_ptr_array_index (skipped, i);
      g_printerr ("  %s: %s\n", s->path, s->reason);
    }
}

/* ------------------------------------------------------------------ progress */

typedef struct {
  gboolean tty;
  gboolean shown;
  gint64   started;
  VlEta    eta;             /* restarted when a new pass begins (done falls, or total changes) */
  int64_t  last_done;
} Progress;

static void
on_progress (int64_t done, int64_t total, gpointer user_data)
{
  Progress *p = user_data;
  if (!p->tty || total <= 0)
    return;
  gint64 now = g_get_monotonic_time ();
  if (p->last_done == 0)
    vl_eta_start (&p->eta, total, p->started);   /* the first pass: from the start */
  else if (p->eta.total != total || done < p->last_done)
    vl_eta_start (&p->eta, total, now);
  p->last_done = done;
  char eta[32];
  vl_format_duration (eta, sizeof eta, vl_eta_update (&p->eta, done, now));
  double rate = vl_eta_rate (&p->eta);
  const int width = 24;
  int fill = (int) (width * done / total);
  char bar[32];
  for (int i = 0; i < width; i++)
    bar[i] = i < fill ? '#' : '-';
  bar[width] = '\0';
  g_printerr ("\r\033[Kfeatures [%s] %" G_GINT64_FORMAT "/%" G_GINT64_FORMAT "  %.0f img/s  "
              "ETA %s", bar, done, total, rate, eta);
  p->shown = TRUE;
}

static void
progress_end (Progress *p)
{
  if (p->shown)
    fputs ("\r\033[K", stderr);
  p->shown = FALSE;
}

static gboolean
parse_layer_pool (const char *command, VlModel *m, const char *layer, const char *pool,
                  gboolean allow_all, VlFeatureOptions *o, int *status)
{
  g_autoptr(GError) error = NULL;
  if (pool && (!vl_feature_pool_from_string (pool, &o->pool) ||
               (!allow_all && o->pool == VL_FEATURE_POOL_ALL)))
    {
      *status = usage_error (command, _("--pool %s: expected token, avg, max, map%s"), pool,
                             allow_all ? " or all" : "");
      return FALSE;
    }
  if (!vl_feature_layer_from_string (layer, vl_model_geometry (m)->depth, &o->layer, &error))
    {
      *status = usage_error (command, _("--layer %s"), error->message);
      return FALSE;
    }
  /* no --pool on a model without a class token: its own pooling at the final layer (SigLIP's
   * attention pool), else the mean */
  const VlGeometry *g = vl_model_geometry (m);
  if (pool == NULL && !g->class_token)
    o->pool = g->attn_pool && o->layer == VL_FEATURE_LAYER_FINAL ? VL_FEATURE_POOL_MAP
                                                                 : VL_FEATURE_POOL_AVG;
  return TRUE;
}

static char *
describe_layer (const VlFeatures *f)
{
  return f->layer == VL_FEATURE_LAYER_FINAL ? g_strdup ("after the final norm")
                                            : g_strdup_printf ("after block %d", f->layer);
}

/* ------------------------------------------------------------------ features */

int
cmd_features (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *data = NULL, *split = NULL, *layer = NULL, *pool = NULL, *out = NULL;
  int batch = 32;
  GOptionEntry entries[] = {
    { "data", 0, 0, G_OPTION_ARG_FILENAME, &data, N_("dataset (default: the run's)"), "SPEC" },
    { "split", 0, 0, G_OPTION_ARG_STRING, &split, N_("train, val or all (default)"), "SPLIT" },
    { "layer", 0, 0, G_OPTION_ARG_STRING, &layer,
      N_("a block's output (0-based; negative from the end) or final (default)"), "L" },
    { "pool", 0, 0, G_OPTION_ARG_STRING, &pool, N_("token (default), avg, max or all"), "POOL" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, N_("images per forward (32)"), "B" },
    { "out", 0, 0, G_OPTION_ARG_FILENAME, &out, N_(".safetensors, .npy (+ .csv) or .csv"), "FILE" },
    { NULL },
  };
  if (!cli_parse_options ("CKPT|RUN", _("Writes the features of every image of a dataset split."),
                      entries, &argc, &argv, &error))
    {
      int rc = usage_error ("features", "%s", error->message);
      g_error_free (error);
      return rc;
    }
  if (argc != 2 || out == NULL)
    return usage_error ("features", _("needs one CKPT or RUN and --out FILE"));
  VlFeatureSplit which = VL_FEATURE_SPLIT_ALL;
  if (split && g_str_equal (split, "train"))
    which = VL_FEATURE_SPLIT_TRAIN;
  else if (split && g_str_equal (split, "val"))
    which = VL_FEATURE_SPLIT_VAL;
  else if (split && !g_str_equal (split, "all"))
    return usage_error ("features", _("--split %s: expected train, val or all"), split);
  if (batch < 1 || batch > 4096)
    return usage_error ("features", _("--batch %d: expected 1 to 4096"), batch);
  const char *lower = strrchr (out, '.');
  if (lower == NULL || (g_ascii_strcasecmp (lower, ".safetensors") != 0 &&
                        g_ascii_strcasecmp (lower, ".npy") != 0 &&
                        g_ascii_strcasecmp (lower, ".csv") != 0))
    return usage_error ("features", _("--out %s: the name must end in .safetensors, .npy or .csv"),
                        out);

  g_autoptr(VlModel) m = NULL;
  g_autoptr(VlDataset) ds = NULL;
  int status;
  if (!open_model_and_data ("features", argv[1], data, &m, &ds, &status))
    return status;
  VlFeatureOptions o = VL_FEATURE_OPTIONS_DEFAULT;
  o.batch_size = batch;
  if (!parse_layer_pool ("features", m, layer, pool, TRUE, &o, &status))
    return status;

  Progress p = { .tty = isatty (STDERR_FILENO), .started = g_get_monotonic_time () };
  g_autoptr(VlFeatures) f = vl_features_extract (m, ds, which, &o, on_progress, &p, NULL, &error);
  progress_end (&p);
  print_skipped (ds);
  if (f == NULL)
    return cli_fail (error);
  if (!vl_features_write (f, out, &error))
    return cli_fail (error);
  g_autofree char *where = describe_layer (f);
  g_print ("wrote %s: %" G_GINT64_FORMAT " images x %" G_GINT64_FORMAT " features (%s, pool %s)"
           "%s\n", out, f->n, f->dim, where, vl_feature_pool_name (f->pool),
           g_str_has_suffix (out, ".npy") || g_str_has_suffix (out, ".NPY")
             ? ", file names and labels in the .csv beside it" : "");
  return EXIT_SUCCESS;
}

/* ------------------------------------------------------------------ probe */

static void
print_score (const char *title, const VlProbeScore *s, char **class_names)
{
  int name_w = 5;
  for (int k = 0; k < s->n_classes; k++)
    name_w = MAX (name_w, (int) strlen (class_names[k]));
  name_w = MIN (name_w, 24);
  g_print ("%s: %.4f (%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ")\n", title, s->acc, s->correct,
           s->n);
  for (int k = 0; k < s->n_classes; k++)
    g_print ("  %-*.*s  %.4f (%" G_GINT64_FORMAT "/%" G_GINT64_FORMAT ")\n", name_w, name_w,
             class_names[k], s->class_acc[k], s->class_correct[k], s->class_n[k]);
}

typedef struct {
  gboolean knn, logreg;
  int      k;
  double   temperature;
  gint64   seed;
  gboolean verbose;    /* per-class accuracy and the sweep; else nothing printed */
} ProbeArgs;

/* Runs the probes asked for on f (train rows first); accuracies into knn_acc and logreg_acc. */
static gboolean
run_probes (const VlFeatures *f, const ProbeArgs *a, double *knn_acc, double *logreg_acc,
            GError **error)
{
  const int64_t n_train = f->n_train, n_val = f->n - f->n_train;
  const int K = f->n_classes, D = (int) f->dim;
  const float *Xtr = f->features, *Xva = f->features + n_train * f->dim;
  const int *ytr = f->labels, *yva = f->labels + n_train;
  g_autofree int *pred = g_new (int, n_val);
  *knn_acc = *logreg_acc = NAN;
  if (a->knn)
    {
      gint64 t0 = g_get_monotonic_time ();
      if (!vl_knn_predict (Xtr, ytr, n_train, Xva, n_val, D, K, a->k, a->temperature, pred,
                           error))
        return FALSE;
      VlProbeScore s;
      vl_probe_score (pred, yva, n_val, K, &s);
      if (a->verbose)
        {
          g_autofree char *title = g_strdup_printf ("k-NN (k %d, T %g, cosine; %.2f s)",
                                                    (int) MIN ((int64_t) a->k, n_train),
                                                    a->temperature,
                                                    (g_get_monotonic_time () - t0) / 1e6);
          print_score (title, &s, f->class_names);
        }
      *knn_acc = s.acc;
      vl_probe_score_clear (&s);
    }
  if (a->logreg)
    {
      gint64 t0 = g_get_monotonic_time ();
      VlLogregSweep sw = VL_LOGREG_SWEEP_DEFAULT;
      sw.seed = (uint64_t) a->seed;
      VlLogregSweepResult r;
      g_autoptr(VlLogreg) lr = vl_logreg_fit_sweep (Xtr, ytr, n_train, D, K, &sw, &r, NULL, error);
      if (lr == NULL)
        return FALSE;
      vl_logreg_predict (lr, Xva, n_val, pred, NULL);
      VlProbeScore s;
      vl_probe_score (pred, yva, n_val, K, &s);
      if (a->verbose)
        {
          g_print ("logistic regression: C swept over 10^[%g, %g] by %g on a %.0f%% hold-out of "
                   "train (%" G_GINT64_FORMAT " images, seed %" G_GINT64_FORMAT "):\n",
                   sw.log10_c_min, sw.log10_c_max, sw.log10_c_step, sw.holdout * 100,
                   r.n_holdout, a->seed);
          for (int c = 0; c < r.n_c; c++)
            g_print ("  C %-8.3g hold-out accuracy %.4f, log-loss %.4f%s\n", r.c[c],
                     r.holdout_acc[c], r.holdout_loss[c], c == r.best ? "  <- chosen" : "");
          g_autofree char *title = g_strdup_printf ("logistic regression (C %.3g, refit on all %"
                                                    G_GINT64_FORMAT " train images, %d L-BFGS "
                                                    "iterations; %.2f s)", lr->C, n_train,
                                                    lr->report.iterations,
                                                    (g_get_monotonic_time () - t0) / 1e6);
          print_score (title, &s, f->class_names);
        }
      if (lr->report.status != VL_LBFGS_CONVERGED && lr->report.status != VL_LBFGS_FLAT)
        g_printerr (_("vitlab-cli: warning: the logistic regression's L-BFGS stopped before "
                      "converging (largest gradient entry %.3g)\n"), lr->report.gmax);
      *logreg_acc = s.acc;
      vl_probe_score_clear (&s);
      vl_logreg_sweep_result_clear (&r);
    }
  return TRUE;
}

static gboolean
check_both_splits (VlDataset *ds, const VlFeatures *f)
{
  if (f->n_train > 0 && f->n > f->n_train)
    return TRUE;
  g_printerr ("vitlab-cli: %s: the probes need images in both splits (train %" G_GINT64_FORMAT
              ", val %" G_GINT64_FORMAT ")\n", vl_dataset_description (ds), f->n_train,
              f->n - f->n_train);
  return FALSE;
}

int
cmd_probe (int argc, char **argv)
{
  GError *error = NULL;
  g_autofree char *data = NULL, *method = NULL, *layer = NULL, *pool = NULL, *temp_s = NULL;
  int k = 20, batch = 32;
  gint64 seed = 0;
  GOptionEntry entries[] = {
    { "data", 0, 0, G_OPTION_ARG_FILENAME, &data, N_("dataset (default: the run's)"), "SPEC" },
    { "method", 0, 0, G_OPTION_ARG_STRING, &method, N_("knn, logreg or both (default)"), "M" },
    { "k", 0, 0, G_OPTION_ARG_INT, &k, N_("neighbours of the k-NN (20)"), "K" },
    { "temperature", 0, 0, G_OPTION_ARG_STRING, &temp_s, N_("k-NN vote temperature (0.07)"), "T" },
    { "layer", 0, 0, G_OPTION_ARG_STRING, &layer,
      N_("a block's output (0-based; negative from the end), final (default), or all: a table of "
         "every block's"), "L" },
    { "pool", 0, 0, G_OPTION_ARG_STRING, &pool, N_("token (default), avg or max"), "POOL" },
    { "seed", 0, 0, G_OPTION_ARG_INT64, &seed,
      N_("the logistic regression's hold-out draw (0)"), "S" },
    { "batch", 0, 0, G_OPTION_ARG_INT, &batch, N_("images per forward (32)"), "B" },
    { NULL },
  };
  if (!cli_parse_options ("CKPT|RUN", _("k-NN and logistic-regression probes on frozen features: "
                      "fitted on the train split, scored on the val split."), entries, &argc,
                      &argv, &error))
    {
      int rc = usage_error ("probe", "%s", error->message);
      g_error_free (error);
      return rc;
    }
  if (argc != 2)
    return usage_error ("probe", _("needs one CKPT or RUN"));
  gboolean knn = TRUE, logreg = TRUE;
  if (method && g_str_equal (method, "knn"))
    logreg = FALSE;
  else if (method && g_str_equal (method, "logreg"))
    knn = FALSE;
  else if (method && !g_str_equal (method, "both"))
    return usage_error ("probe", _("--method %s: expected knn, logreg or both"), method);
  if (k < 1 || k > 100000)
    return usage_error ("probe", _("--k %d: expected 1 to 100000"), k);
  double temperature = 0.07;
  if (temp_s)
    {
      char *end = NULL;
      temperature = g_ascii_strtod (temp_s, &end);
      if (end == temp_s || *end != '\0' || !(temperature > 0) || !isfinite (temperature))
        return usage_error ("probe", _("--temperature %s: expected a positive number"), temp_s);
    }
  if (seed < 0)
    return usage_error ("probe", "--seed %" G_GINT64_FORMAT ": expected 0 or more", seed);
  if (batch < 1 || batch > 4096)
    return usage_error ("probe", _("--batch %d: expected 1 to 4096"), batch);

  g_autoptr(VlModel) m = NULL;
  g_autoptr(VlDataset) ds = NULL;
  int status;
  if (!open_model_and_data ("probe", argv[1], data, &m, &ds, &status))
    return status;
  VlFeatureOptions o = VL_FEATURE_OPTIONS_DEFAULT;
  o.batch_size = batch;
  const gboolean all_layers = layer && g_str_equal (layer, "all");
  if (!parse_layer_pool ("probe", m, all_layers ? NULL : layer, pool, FALSE, &o, &status))
    return status;
  if (all_layers && pool == NULL && o.pool == VL_FEATURE_POOL_MAP)
    o.pool = VL_FEATURE_POOL_AVG;   /* every block's tokens: pooled by their mean */

  ProbeArgs pa = { .knn = knn, .logreg = logreg, .k = k, .temperature = temperature,
                   .seed = seed, .verbose = TRUE };
  Progress p = { .tty = isatty (STDERR_FILENO), .started = g_get_monotonic_time () };
  double knn_acc, logreg_acc;
  if (all_layers)
    {
      VlFeatures **sets = vl_features_extract_all_layers (m, ds, VL_FEATURE_SPLIT_ALL, o.pool,
                                                          o.batch_size, on_progress, &p, NULL,
                                                          &error);
      progress_end (&p);
      print_skipped (ds);
      if (sets == NULL)
        return cli_fail (error);
      const VlFeatures *f = sets[0];
      if (!check_both_splits (ds, f))
        {
          vl_features_free_all (sets);
          return EXIT_FAILURE;
        }
      g_print ("data:      %s: %" G_GINT64_FORMAT " train, %" G_GINT64_FORMAT " val images, %d "
               "classes\n", vl_dataset_description (ds), f->n_train, f->n - f->n_train,
               f->n_classes);
      g_print ("features:  %" G_GINT64_FORMAT ", every block's output and the final norm, pool %s "
               "(%.1f s)\n", f->dim, vl_feature_pool_name (f->pool),
               (g_get_monotonic_time () - p.started) / 1e6);
      g_print ("layer  %s%s\n", knn ? "   k-NN" : "", logreg ? "  logreg" : "");
      pa.verbose = FALSE;
      for (int j = 0; sets[j]; j++)
        {
          if (!run_probes (sets[j], &pa, &knn_acc, &logreg_acc, &error))
            {
              vl_features_free_all (sets);
              return cli_fail (error);
            }
          g_autofree char *name = sets[j]->layer == VL_FEATURE_LAYER_FINAL
                                  ? g_strdup ("final") : g_strdup_printf ("%d", sets[j]->layer);
          g_print ("%-5s", name);
          if (knn)
            g_print ("  %.4f", knn_acc);
          if (logreg)
            g_print ("  %.4f", logreg_acc);
          g_print ("\n");
        }
      vl_features_free_all (sets);
    }
  else
    {
      g_autoptr(VlFeatures) f = vl_features_extract (m, ds, VL_FEATURE_SPLIT_ALL, &o, on_progress,
                                                     &p, NULL, &error);
      progress_end (&p);
      print_skipped (ds);
      if (f == NULL)
        return cli_fail (error);
      if (!check_both_splits (ds, f))
        return EXIT_FAILURE;
      g_autofree char *where = describe_layer (f);
      g_print ("data:      %s: %" G_GINT64_FORMAT " train, %" G_GINT64_FORMAT " val images, %d "
               "classes\n", vl_dataset_description (ds), f->n_train, f->n - f->n_train,
               f->n_classes);
      g_print ("features:  %" G_GINT64_FORMAT ", %s, pool %s (%.1f s)\n", f->dim, where,
               vl_feature_pool_name (f->pool), (g_get_monotonic_time () - p.started) / 1e6);
      if (!run_probes (f, &pa, &knn_acc, &logreg_acc, &error))
        return cli_fail (error);
    }
  /* the closing lines: the final layer's figures with --layer all */
  if (knn)
    g_print ("knn_acc=%.4f\n", knn_acc);
  if (logreg)
    g_print ("logreg_acc=%.4f\n", logreg_acc);
  return EXIT_SUCCESS;
}

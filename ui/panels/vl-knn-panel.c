/* vl-knn-panel.c: the k-NN probe of the pretrained features on the data panel (see
 * vl-knn-panel.h). */
#include "vl-knn-panel.h"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#include "vl-colormap.h"
#include "vl-probe.h"
#include "vl-threads.h"

/* ------------------------------------------------------------------ progress, coalesced */

/* Shared by the worker (writes) and the main loop (reads): at most one idle queued. */
typedef struct {
  GMutex        lock;
  int64_t       done, total;
  gboolean      queued;
  GWeakRef      panel;
  GCancellable *cancel;     /* the job it belongs to */
} Progress;

static void
progress_clear (gpointer p)
{
  Progress *pr = p;
  g_mutex_clear (&pr->lock);
  g_weak_ref_clear (&pr->panel);
  g_clear_object (&pr->cancel);
}

static void
progress_unref (gpointer p)
{
  g_atomic_rc_box_release_full (p, progress_clear);
}

struct _VlKnnPanel
{
  GtkBox        parent_instance;

  GtkWidget    *result_label;
  GtkWidget    *detail_label;
  GtkWidget    *progress_box;
  GtkWidget    *progress_bar;
  GtkWidget    *eta_label;
  GtkWidget    *layers_button;
  GtkWidget    *chart;
  GtkWidget    *chart_label;

  char         *backbone;
  VlDataRef    *data;            /* the inputs of the last start */
  VlFeaturePool pool;
  GCancellable *cancel;          /* the job in flight; NULL when none */
  gint64        started_us;
  guint         reveal_id;

  double        accuracy;
  double       *layer_acc;       /* (n_layer_acc) */
  int           n_layer_acc;
  VlFeatures   *features;
  VlDataRef    *features_data;
  char         *text;
};

G_DEFINE_FINAL_TYPE (VlKnnPanel, vl_knn_panel, GTK_TYPE_BOX)

enum { PROP_0, PROP_ACCURACY, PROP_BUSY, N_PROPS };
static GParamSpec *props[N_PROPS];
enum { SIGNAL_FEATURES_CHANGED, SIGNAL_LAYERS_CHANGED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
format_eta (char *buf, gsize size, double s)
{
  if (!isfinite (s) || s < 0)
    g_snprintf (buf, size, "estimating…");
  else if (s >= 60)
    g_snprintf (buf, size, "%d min %02d s left", (int) (s / 60), (int) fmod (s, 60));
  else
    g_snprintf (buf, size, "%d s left", (int) ceil (s));
}

static gboolean
progress_idle (gpointer user_data)
{
  Progress *pr = user_data;
  g_mutex_lock (&pr->lock);
  int64_t done = pr->done, total = pr->total;
  pr->queued = FALSE;
  g_mutex_unlock (&pr->lock);
  g_autoptr(VlKnnPanel) self = g_weak_ref_get (&pr->panel);
  if (self == NULL || self->cancel != pr->cancel || total <= 0)
    return G_SOURCE_REMOVE;   /* stale */
  double frac = (double) done / (double) total;
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress_bar), frac);
  double elapsed = (g_get_monotonic_time () - self->started_us) / 1e6;
  char eta[64];
  format_eta (eta, sizeof eta, done > 0 ? elapsed * (double) (total - done) / (double) done : NAN);
  g_autofree char *t = g_strdup_printf (_("Features of %lld of %lld images · %s"),
                                        (long long) done, (long long) total, eta);
  gtk_label_set_text (GTK_LABEL (self->eta_label), t);
  return G_SOURCE_REMOVE;
}

/* Worker thread: after each batch. */
static void
progress_cb (int64_t done, int64_t total, gpointer user_data)
{
  Progress *pr = user_data;
  g_mutex_lock (&pr->lock);
  pr->done = done;
  pr->total = total;
  if (!pr->queued)
    {
      pr->queued = TRUE;
      g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, progress_idle, g_atomic_rc_box_acquire (pr),
                       progress_unref);
    }
  g_mutex_unlock (&pr->lock);
}

/* ------------------------------------------------------------------ the job */

typedef enum { JOB_FINAL, JOB_LAYERS } JobKind;

typedef struct {
  JobKind      kind;
  VlFeaturePool pool;
  char        *backbone;
  VlDataRef   *data;
  Progress    *progress;
  /* results */
  VlFeatures  *features;       /* JOB_FINAL */
  double       acc;
  double      *layer_acc;      /* JOB_LAYERS (n_layers) */
  int          n_layers;
  char        *pool_name;
} Job;

static void
job_free (gpointer p)
{
  Job *j = p;
  g_free (j->backbone);
  vl_data_unref (j->data);
  progress_unref (j->progress);
  g_clear_pointer (&j->features, vl_features_free);
  g_free (j->layer_acc);
  g_free (j->pool_name);
  g_free (j);
}

/* The k-NN accuracy of f's val rows among its train rows. */
static gboolean
knn_accuracy (const VlFeatures *f, double *acc, GError **error)
{
  int64_t n_val = f->n - f->n_train;
  if (f->n_train == 0 || n_val == 0)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA,
                   "the dataset needs both training and validation images (%" G_GINT64_FORMAT
                   " and %" G_GINT64_FORMAT ")", f->n_train, n_val);
      return FALSE;
    }
  g_autofree int *pred = g_new (int, n_val);
  if (!vl_knn_predict (f->features, f->labels, f->n_train, f->features + f->n_train * f->dim,
                       n_val, (int) f->dim, f->n_classes, VL_KNN_K, VL_KNN_TEMPERATURE, pred,
                       error))
    return FALSE;
  VlProbeScore s;
  vl_probe_score (pred, f->labels + f->n_train, n_val, f->n_classes, &s);
  *acc = s.acc;
  vl_probe_score_clear (&s);
  return TRUE;
}

static void
job_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  Job *j = task_data;
  GError *error = NULL;
  /* a copy of the backbone of our own: the window's model stays main-thread only */
  g_autoptr(VlModel) m = vl_model_load (j->backbone, &error);
  if (m == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;
  VlFeaturePool pool = j->pool;
  /* without a class token: the model's attention pool (SigLIP's), or the mean; every block's
   * features need a pooling of the tokens (the attention pool pools the final ones only) */
  if (pool == VL_FEATURE_POOL_TOKEN && !vl_model_geometry (m)->class_token)
    pool = vl_model_geometry (m)->attn_pool && j->kind == JOB_FINAL ? VL_FEATURE_POOL_MAP
                                                                   : VL_FEATURE_POOL_AVG;
  if (pool == VL_FEATURE_POOL_MAP && j->kind != JOB_FINAL)
    pool = VL_FEATURE_POOL_AVG;
  j->pool_name = g_strdup (pool == VL_FEATURE_POOL_TOKEN ? _("CLS token")
                           : pool == VL_FEATURE_POOL_AVG ? _("mean of the patches")
                           : pool == VL_FEATURE_POOL_MAP ? _("attention pool")
                           : _("max over the patches"));
  if (j->kind == JOB_FINAL)
    {
      VlFeatureOptions o = VL_FEATURE_OPTIONS_DEFAULT;
      o.pool = pool;
      j->features = vl_features_extract (m, j->data->ds, VL_FEATURE_SPLIT_ALL, &o, progress_cb,
                                         j->progress, cancel, &error);
      /* a dataset of regression targets has one class, one of masks a class per pixel, one of
       * boxes classes per box (every image's label is 0): no k-NN */
      j->acc = NAN;
      gboolean classes = !vl_dataset_is_segmentation (j->data->ds) &&
                         !vl_dataset_is_detection (j->data->ds);
      if (j->features == NULL ||
          (classes && j->features->n_classes >= 2 &&
           !knn_accuracy (j->features, &j->acc, &error)))
        {
          g_task_return_error (task, error);
          return;
        }
      g_task_return_boolean (task, TRUE);
      return;
    }
  VlFeatures **sets = vl_features_extract_all_layers (m, j->data->ds, VL_FEATURE_SPLIT_ALL, pool,
                                                      32, progress_cb, j->progress, cancel,
                                                      &error);
  if (sets == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  int n = 0;
  while (sets[n])
    n++;
  j->layer_acc = g_new (double, MAX (n, 1));
  j->n_layers = n;
  for (int l = 0; l < n; l++)
    if (g_cancellable_set_error_if_cancelled (cancel, &error) ||
        !knn_accuracy (sets[l], &j->layer_acc[l], &error))
      {
        vl_features_free_all (sets);
        g_task_return_error (task, error);
        return;
      }
  vl_features_free_all (sets);
  g_task_return_boolean (task, TRUE);
}

static void
set_busy (VlKnnPanel *self, gboolean busy)
{
  g_clear_handle_id (&self->reveal_id, g_source_remove);
  if (!busy)
    {
      gtk_widget_set_visible (self->progress_box, FALSE);
      g_clear_object (&self->cancel);
    }
  gtk_widget_set_sensitive (self->layers_button, !busy && self->features != NULL);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BUSY]);
}

static void
set_text (VlKnnPanel *self, const char *text, const char *detail)
{
  g_free (self->text);
  self->text = g_strdup (text);
  gtk_label_set_text (GTK_LABEL (self->result_label), text);
  gtk_label_set_text (GTK_LABEL (self->detail_label), detail ? detail : "");
  gtk_widget_set_visible (self->detail_label, detail != NULL);
}

static void
job_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlKnnPanel *self = VL_KNN_PANEL (source);
  GCancellable *cancel = g_task_get_cancellable (G_TASK (result));
  if (cancel != self->cancel)
    return;   /* stale: another dataset or backbone, or cleared */
  Job *j = g_task_get_task_data (G_TASK (result));
  g_autoptr(GError) error = NULL;
  gboolean ok = g_task_propagate_boolean (G_TASK (result), &error);
  if (!ok)
    {
      g_autofree char *base = g_path_get_basename (j->data->spec);
      g_autofree char *t = g_strdup_printf (_("k-NN on %s: %s"), base, error->message);
      set_text (self, t, NULL);
      set_busy (self, FALSE);
      return;
    }
  if (j->kind == JOB_FINAL)
    {
      g_clear_pointer (&self->features, vl_features_free);
      g_clear_pointer (&self->features_data, vl_data_unref);
      self->features = g_steal_pointer (&j->features);
      self->features_data = vl_data_ref (j->data);
      self->accuracy = j->acc;
      if (isnan (j->acc))
        {
          if (vl_dataset_is_segmentation (j->data->ds))
            set_text (self, _("k-NN: not for a class per pixel"),
                      _("Its features are on the embedding map; the k-NN probe needs a class "
                        "per image."));
          else if (vl_dataset_is_detection (j->data->ds))
            set_text (self, _("k-NN: not for boxes"),
                      _("Its features are on the embedding map; the k-NN probe needs a class "
                        "per image."));
          else
            set_text (self, _("k-NN: the dataset has no classes"),
                      _("Its features are on the embedding map; the k-NN probe needs two "
                        "classes or more."));
          set_busy (self, FALSE);
          gtk_widget_set_sensitive (self->layers_button, FALSE);
          g_object_notify_by_pspec (G_OBJECT (self), props[PROP_ACCURACY]);
          g_signal_emit (self, signals[SIGNAL_FEATURES_CHANGED], 0);
          return;
        }
      g_autofree char *t = g_strdup_printf (_("k-NN on these features: %.1f%%"), 100.0 * j->acc);
      g_autofree char *d = g_strdup_printf (_("%d nearest of %lld training images vote for each "
                                              "of the %lld validation images (pretrained %s "
                                              "after the final norm)"), VL_KNN_K,
                                            (long long) self->features->n_train,
                                            (long long) (self->features->n -
                                                         self->features->n_train),
                                            j->pool_name);
      set_text (self, t, d);
      set_busy (self, FALSE);
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_ACCURACY]);
      g_signal_emit (self, signals[SIGNAL_FEATURES_CHANGED], 0);
    }
  else
    {
      g_free (self->layer_acc);
      self->layer_acc = g_steal_pointer (&j->layer_acc);
      self->n_layer_acc = j->n_layers;
      gtk_widget_set_visible (self->chart, TRUE);
      gtk_widget_set_visible (self->chart_label, TRUE);
      gtk_widget_queue_draw (self->chart);
      set_busy (self, FALSE);
      g_signal_emit (self, signals[SIGNAL_LAYERS_CHANGED], 0);
    }
}

static gboolean
reveal_progress (gpointer user_data)
{
  VlKnnPanel *self = user_data;
  self->reveal_id = 0;
  gtk_widget_set_visible (self->progress_box, TRUE);
  return G_SOURCE_REMOVE;
}

static void
start_job (VlKnnPanel *self, JobKind kind)
{
  g_return_if_fail (self->backbone != NULL && self->data != NULL);
  if (self->cancel)
    g_cancellable_cancel (self->cancel);
  g_clear_object (&self->cancel);
  self->cancel = g_cancellable_new ();
  Job *j = g_new0 (Job, 1);
  j->kind = kind;
  j->pool = self->pool;
  j->backbone = g_strdup (self->backbone);
  j->data = vl_data_ref (self->data);
  j->progress = g_atomic_rc_box_new0 (Progress);
  g_mutex_init (&j->progress->lock);
  g_weak_ref_init (&j->progress->panel, self);
  j->progress->cancel = g_object_ref (self->cancel);
  self->started_us = g_get_monotonic_time ();
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress_bar), 0);
  gtk_label_set_text (GTK_LABEL (self->eta_label), kind == JOB_FINAL ? _("Loading the backbone…")
                                                   : _("Every block's features…"));
  set_busy (self, TRUE);
  self->reveal_id = g_timeout_add (1000, reveal_progress, self);
  if (kind == JOB_FINAL)
    set_text (self, _("k-NN on these features: computing…"), NULL);
  g_autoptr(GTask) task = g_task_new (self, self->cancel, job_done, NULL);
  g_task_set_task_data (task, j, job_free);
  g_task_run_in_thread (task, job_thread);
}

/* ------------------------------------------------------------------ the per-block chart */

static void
chart_draw (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer user_data)
{
  VlKnnPanel *self = user_data;
  if (self->n_layer_acc == 0)
    return;
  VlDrawColors col;
  vl_draw_colors_from_widget (GTK_WIDGET (area), &col);
  g_autoptr(PangoLayout) layout = vl_draw_layout (cr, GTK_WIDGET (area), 0.8);
  const int n = self->n_layer_acc;
  const double left = 34, right = 6, top = 8, bottom = 18;
  const double pw = width - left - right, ph = height - top - bottom;
  if (pw < 10 || ph < 10)
    return;
  /* y from the lowest accuracy (rounded down to 10%) to 100% */
  double lo = 1;
  for (int l = 0; l < n; l++)
    lo = MIN (lo, self->layer_acc[l]);
  lo = MAX (0, floor (lo * 10 - 1e-9) / 10);
  if (lo > 0.9)
    lo = 0.9;
  vl_draw_set_source (cr, &col.fg, 0.15);
  cairo_set_line_width (cr, 1);
  for (int g = 0; g <= 2; g++)
    {
      double v = lo + (1 - lo) * g / 2.0, y = top + ph * (1 - (v - lo) / (1 - lo));
      cairo_move_to (cr, left, round (y) + 0.5);
      cairo_line_to (cr, left + pw, round (y) + 0.5);
      cairo_stroke (cr);
      char lab[16];
      g_snprintf (lab, sizeof lab, "%.0f%%", 100 * v);
      vl_draw_set_source (cr, &col.fg, 0.6);
      vl_draw_text (cr, layout, lab, left - 4, y, 1, 0.5);
      vl_draw_set_source (cr, &col.fg, 0.15);
    }
  double slot = pw / n, bw = MAX (2, slot * 0.7);
  int best = 0;
  for (int l = 1; l < n; l++)
    if (self->layer_acc[l] > self->layer_acc[best])
      best = l;
  for (int l = 0; l < n; l++)
    {
      double v = CLAMP (self->layer_acc[l], lo, 1);
      double h = ph * (v - lo) / (1 - lo);
      double x = left + slot * l + (slot - bw) / 2;
      double rgb[3];
      vl_colormap_map (VL_COLORMAP_VIRIDIS, l == best ? 0.85 : 0.35, rgb);
      cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
      cairo_rectangle (cr, x, top + ph - h, bw, h);
      cairo_fill (cr);
      char lab[16];
      if (l == n - 1)
        g_snprintf (lab, sizeof lab, "F");
      else
        g_snprintf (lab, sizeof lab, "%d", l + 1);
      if (n <= 16 || l % 2 == 1 || l == n - 1)
        {
          vl_draw_set_source (cr, &col.fg, 0.6);
          vl_draw_text (cr, layout, lab, x + bw / 2, top + ph + 2, 0.5, 0);
        }
    }
}

static gboolean
chart_tooltip (GtkWidget *w, int x, int y, gboolean keyboard, GtkTooltip *tooltip,
               VlKnnPanel *self)
{
  if (self->n_layer_acc == 0)
    return FALSE;
  double left = 34, pw = gtk_widget_get_width (w) - left - 6;
  int l = (int) floor ((x - left) / (pw / self->n_layer_acc));
  if (l < 0 || l >= self->n_layer_acc)
    return FALSE;
  g_autofree char *t = l == self->n_layer_acc - 1
    ? g_strdup_printf (_("After the final norm: %.1f%%"), 100 * self->layer_acc[l])
    : g_strdup_printf (_("Output of block %d: %.1f%%"), l + 1, 100 * self->layer_acc[l]);
  gtk_tooltip_set_text (tooltip, t);
  return TRUE;
}

/* ------------------------------------------------------------------ the type */

void
vl_knn_panel_start (VlKnnPanel *self, const char *backbone, VlDataRef *data, VlFeaturePool pool)
{
  g_return_if_fail (VL_IS_KNN_PANEL (self));
  g_return_if_fail (backbone != NULL && data != NULL && pool != VL_FEATURE_POOL_ALL);
  if (self->data == data && self->pool == pool && g_strcmp0 (self->backbone, backbone) == 0 &&
      (self->cancel != NULL || self->features != NULL))
    return;   /* these very inputs: their result is there or coming */
  self->pool = pool;
  g_free (self->backbone);
  self->backbone = g_strdup (backbone);
  g_clear_pointer (&self->data, vl_data_unref);
  self->data = vl_data_ref (data);
  g_clear_pointer (&self->layer_acc, g_free);
  self->n_layer_acc = 0;
  gtk_widget_set_visible (self->chart, FALSE);
  gtk_widget_set_visible (self->chart_label, FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self), TRUE);
  start_job (self, JOB_FINAL);
}

void
vl_knn_panel_start_layers (VlKnnPanel *self)
{
  g_return_if_fail (VL_IS_KNN_PANEL (self));
  if (self->backbone && self->data)
    start_job (self, JOB_LAYERS);
}

void
vl_knn_panel_clear (VlKnnPanel *self)
{
  g_return_if_fail (VL_IS_KNN_PANEL (self));
  if (self->cancel)
    g_cancellable_cancel (self->cancel);
  gboolean had = self->features != NULL;
  g_clear_pointer (&self->features, vl_features_free);
  g_clear_pointer (&self->features_data, vl_data_unref);
  g_clear_pointer (&self->data, vl_data_unref);
  g_clear_pointer (&self->layer_acc, g_free);
  self->n_layer_acc = 0;
  self->accuracy = NAN;
  set_busy (self, FALSE);
  gtk_widget_set_visible (GTK_WIDGET (self), FALSE);
  if (had)
    g_signal_emit (self, signals[SIGNAL_FEATURES_CHANGED], 0);
}

VlFeaturePool
vl_knn_panel_get_pool (VlKnnPanel *self)
{
  return self->pool;
}

gboolean
vl_knn_panel_is_busy (VlKnnPanel *self)
{
  return self->cancel != NULL;
}

double
vl_knn_panel_get_accuracy (VlKnnPanel *self)
{
  return self->accuracy;
}

const double *
vl_knn_panel_get_layer_accuracy (VlKnnPanel *self, int *n)
{
  *n = self->n_layer_acc;
  return self->layer_acc;
}

const VlFeatures *
vl_knn_panel_get_features (VlKnnPanel *self)
{
  return self->features;
}

VlDataRef *
vl_knn_panel_get_data (VlKnnPanel *self)
{
  return self->features_data;
}

const char *
vl_knn_panel_get_text (VlKnnPanel *self)
{
  return self->text;
}

double
vl_knn_panel_get_progress (VlKnnPanel *self, gboolean *shown)
{
  if (shown)
    *shown = gtk_widget_get_visible (self->progress_box);
  return gtk_progress_bar_get_fraction (GTK_PROGRESS_BAR (self->progress_bar));
}

static void
vl_knn_panel_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  VlKnnPanel *self = VL_KNN_PANEL (object);
  switch (prop_id)
    {
    case PROP_ACCURACY: g_value_set_double (value, self->accuracy); break;
    case PROP_BUSY: g_value_set_boolean (value, self->cancel != NULL); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_knn_panel_dispose (GObject *object)
{
  VlKnnPanel *self = VL_KNN_PANEL (object);
  if (self->cancel)
    g_cancellable_cancel (self->cancel);
  g_clear_object (&self->cancel);
  g_clear_handle_id (&self->reveal_id, g_source_remove);
  g_clear_pointer (&self->data, vl_data_unref);
  g_clear_pointer (&self->features_data, vl_data_unref);
  g_clear_pointer (&self->features, vl_features_free);
  G_OBJECT_CLASS (vl_knn_panel_parent_class)->dispose (object);
}

static void
vl_knn_panel_finalize (GObject *object)
{
  VlKnnPanel *self = VL_KNN_PANEL (object);
  g_free (self->backbone);
  g_free (self->layer_acc);
  g_free (self->text);
  G_OBJECT_CLASS (vl_knn_panel_parent_class)->finalize (object);
}

static void
vl_knn_panel_class_init (VlKnnPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->get_property = vl_knn_panel_get_property;
  object_class->dispose = vl_knn_panel_dispose;
  object_class->finalize = vl_knn_panel_finalize;
  props[PROP_ACCURACY] = g_param_spec_double ("accuracy", NULL, NULL, -G_MAXDOUBLE, G_MAXDOUBLE,
                                              0, G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  props[PROP_BUSY] = g_param_spec_boolean ("busy", NULL, NULL, FALSE,
                                           G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  signals[SIGNAL_FEATURES_CHANGED] =
    g_signal_new ("features-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                  NULL, NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_LAYERS_CHANGED] =
    g_signal_new ("layers-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL,
                  NULL, NULL, G_TYPE_NONE, 0);
  gtk_widget_class_set_css_name (GTK_WIDGET_CLASS (klass), "vlknnpanel");
}

static void
vl_knn_panel_init (VlKnnPanel *self)
{
  self->accuracy = NAN;
  gtk_orientable_set_orientation (GTK_ORIENTABLE (self), GTK_ORIENTATION_VERTICAL);
  gtk_box_set_spacing (GTK_BOX (self), 6);
  gtk_widget_add_css_class (GTK_WIDGET (self), "vl-card");

  self->result_label = gtk_label_new ("");
  gtk_label_set_xalign (GTK_LABEL (self->result_label), 0);
  gtk_label_set_wrap (GTK_LABEL (self->result_label), TRUE);
  gtk_widget_add_css_class (self->result_label, "heading");
  gtk_box_append (GTK_BOX (self), self->result_label);
  self->detail_label = gtk_label_new ("");
  gtk_label_set_xalign (GTK_LABEL (self->detail_label), 0);
  gtk_label_set_wrap (GTK_LABEL (self->detail_label), TRUE);
  gtk_widget_add_css_class (self->detail_label, "dim-label");
  gtk_widget_add_css_class (self->detail_label, "caption");
  gtk_box_append (GTK_BOX (self), self->detail_label);

  self->progress_box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  self->progress_bar = gtk_progress_bar_new ();
  gtk_box_append (GTK_BOX (self->progress_box), self->progress_bar);
  self->eta_label = gtk_label_new ("");
  gtk_label_set_xalign (GTK_LABEL (self->eta_label), 0);
  gtk_widget_add_css_class (self->eta_label, "caption");
  gtk_widget_add_css_class (self->eta_label, "vl-numeric");
  gtk_box_append (GTK_BOX (self->progress_box), self->eta_label);
  gtk_widget_set_visible (self->progress_box, FALSE);
  gtk_box_append (GTK_BOX (self), self->progress_box);

  self->layers_button = gtk_button_new_with_label (_("k-NN at Every Block"));
  gtk_widget_set_tooltip_text (self->layers_button,
                               _("The same k-NN on each block's output (one pass over the "
                                 "images): where in the network the useful features are"));
  gtk_widget_set_halign (self->layers_button, GTK_ALIGN_START);
  gtk_widget_set_sensitive (self->layers_button, FALSE);
  g_signal_connect_swapped (self->layers_button, "clicked",
                            G_CALLBACK (vl_knn_panel_start_layers), self);
  gtk_box_append (GTK_BOX (self), self->layers_button);

  self->chart_label = gtk_label_new (_("k-NN accuracy at each block's output (F: after the final "
                                       "norm)"));
  gtk_label_set_xalign (GTK_LABEL (self->chart_label), 0);
  gtk_label_set_wrap (GTK_LABEL (self->chart_label), TRUE);
  gtk_widget_add_css_class (self->chart_label, "caption");
  gtk_widget_set_visible (self->chart_label, FALSE);
  gtk_box_append (GTK_BOX (self), self->chart_label);
  self->chart = gtk_drawing_area_new ();
  gtk_drawing_area_set_content_height (GTK_DRAWING_AREA (self->chart), 110);
  gtk_drawing_area_set_draw_func (GTK_DRAWING_AREA (self->chart), chart_draw, self, NULL);
  gtk_widget_set_has_tooltip (self->chart, TRUE);
  g_signal_connect (self->chart, "query-tooltip", G_CALLBACK (chart_tooltip), self);
  gtk_widget_set_visible (self->chart, FALSE);
  gtk_box_append (GTK_BOX (self), self->chart);
  gtk_widget_set_visible (GTK_WIDGET (self), FALSE);
}

GtkWidget *
vl_knn_panel_new (void)
{
  return g_object_new (VL_TYPE_KNN_PANEL, NULL);
}

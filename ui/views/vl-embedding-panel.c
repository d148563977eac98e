/* vl-embedding-panel.c: the pretrained and fine-tuned embedding maps (see
 * vl-embedding-panel.h). */
#include "vl-embedding-panel.h"
#include "vl-jobs.h"
#include "vl-threads.h"
#include <glib/gi18n.h>

#include "vl-embedding-view.h"
#include "vl-task-view.h"

#include <string.h>

#define PREVIEW_SIZE 160

/* Where each row of a feature set comes from, for its thumbnail. */
typedef struct {
  int64_t  n;
  char   **files;       /* (n + 1) */
  int     *split;       /* (n) VlSplit, -1: not found */
  int     *item;        /* (n) */
} Rows;

struct _VlEmbeddingPanel
{
  GtkBox        parent_instance;

  GtkWidget    *caption;
  GtkWidget    *views[2];
  GtkWidget    *status[2];       /* under each map: what it shows, or why it is empty */
  GtkWidget    *preview;         /* GtkPicture */
  GtkWidget    *preview_label;

  Rows          rows[2];
  VlDataRef    *data;            /* the dataset the maps are of */
  GCancellable *cancel;          /* the fine-tuned features in flight */
  GCancellable *thumb_cancel;
  int64_t       preview_point;
  int           preview_side;
  /* the pretrained rows, to tell a run that left them as they were */
  int64_t       pre_n, pre_dim;
  guint         pre_hash;
  gboolean      same_features;
};

static void vl_embedding_panel_task_view_init (VlTaskViewInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (VlEmbeddingPanel, vl_embedding_panel, GTK_TYPE_BOX,
                               G_IMPLEMENT_INTERFACE (VL_TYPE_TASK_VIEW,
                                                      vl_embedding_panel_task_view_init))

enum { SIGNAL_IMAGE_ACTIVATED, SIGNAL_FINETUNED_READY, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
vl_embedding_panel_task_view_init (VlTaskViewInterface *iface)
{
  iface->applies_to = NULL;   /* every task: pooled features exist whatever the head */
}

static const char *
pool_name (VlFeaturePool pool)
{
  return pool == VL_FEATURE_POOL_TOKEN ? _("CLS token")
       : pool == VL_FEATURE_POOL_AVG   ? _("patch mean")
       : pool == VL_FEATURE_POOL_MAP   ? _("attention pool")
                                       : _("patch max");
}

static guint
hash_features (const VlFeatures *f)
{
  int64_t n = MIN (f->n, VL_EMBEDDING_MAX_POINTS);   /* enough to tell */
  g_autoptr(GBytes) b = g_bytes_new_static (f->features, sizeof (float) * n * f->dim);
  return g_bytes_hash (b);
}

static void
rows_clear (Rows *r)
{
  g_strfreev (r->files);
  g_free (r->split);
  g_free (r->item);
  memset (r, 0, sizeof *r);
}

/* Matches the rows' names with the dataset's items, in order (rows are train then val, in
 * dataset order, with undecodable images left out). */
static void
rows_set (Rows *r, const VlFeatures *f, VlDataRef *data)
{
  rows_clear (r);
  r->n = f->n;
  r->files = g_strdupv (f->files);
  r->split = g_new (int, MAX (f->n, 1));
  r->item = g_new (int, MAX (f->n, 1));
  int64_t i = 0;
  VlSplit splits[] = { VL_SPLIT_TRAIN, VL_SPLIT_VAL };
  for (int s = 0; s < 2; s++)
    {
      int64_t end = s == 0 ? f->n_train : f->n;
      int n_items = data ? vl_dataset_n_items (data->ds, splits[s]) : 0;
      for (int j = 0; j < n_items && i < end; j++)
        if (g_strcmp0 (vl_dataset_item_name (data->ds, splits[s], j), f->files[i]) == 0)
          {
            r->split[i] = splits[s];
            r->item[i++] = j;
          }
      for (; i < end; i++)
        r->split[i] = -1;
    }
}

/* Every stride-th row of f (a view of f's names and class names; its own rows and labels):
 * the map's PCA runs on the main thread, so a large dataset is shown by a sample. */
static void
sample_rows (const VlFeatures *f, int64_t stride, VlFeatures *out, float **feats, int **labels,
             char ***files)
{
  *out = *f;
  int64_t n = (f->n + stride - 1) / stride;
  *feats = g_new (float, n * f->dim);
  *labels = g_new (int, n);
  *files = g_new0 (char *, n + 1);
  out->n_train = 0;
  for (int64_t r = 0; r < n; r++)
    {
      int64_t i = r * stride;
      memcpy (*feats + r * f->dim, f->features + i * f->dim, sizeof (float) * f->dim);
      (*labels)[r] = f->labels[i];
      (*files)[r] = f->files[i];   /* borrowed */
      out->n_train += i < f->n_train;
    }
  out->n = n;
  out->features = *feats;
  out->labels = *labels;
  out->files = *files;
}

static void
show_rows (VlEmbeddingPanel *self, int side, const VlFeatures *f, const char *title)
{
  VlEmbeddingView *v = VL_EMBEDDING_VIEW (self->views[side]);
  if (f == NULL)
    {
      vl_embedding_view_set_features (v, NULL, 0, 0, NULL, 0, NULL, NULL);
      rows_clear (&self->rows[side]);
      return;
    }
  VlFeatures sub;
  g_autofree float *feats = NULL;
  g_autofree int *labels = NULL;
  g_autofree char **files = NULL;   /* the names are f's */
  if (f->n > VL_EMBEDDING_MAX_POINTS)
    {
      sample_rows (f, (f->n + VL_EMBEDDING_MAX_POINTS - 1) / VL_EMBEDDING_MAX_POINTS, &sub,
                   &feats, &labels, &files);
      f = &sub;
    }
  vl_embedding_view_set_features (v, f->features, f->n, (int) f->dim, f->labels, f->n_classes,
                                  (const char *const *) f->class_names,
                                  (const char *const *) f->files);
  vl_embedding_view_set_title (v, title);
  rows_set (&self->rows[side], f, self->data);
}

/* ------------------------------------------------------------------ hover: the thumbnail */

static void
thumb_done (int slot, GdkTexture *tex, gpointer user_data)
{
  VlEmbeddingPanel *self = user_data;
  if (tex)
    gtk_picture_set_paintable (GTK_PICTURE (self->preview), GDK_PAINTABLE (tex));
}

void
vl_embedding_panel_hover (VlEmbeddingPanel *self, VlEmbeddingSide side, int64_t i)
{
  g_return_if_fail (VL_IS_EMBEDDING_PANEL (self));
  Rows *r = &self->rows[side];
  if (i < 0 || i >= r->n || (i == self->preview_point && (int) side == self->preview_side))
    return;   /* the last point stays in the preview */
  self->preview_point = i;
  self->preview_side = side;
  g_autofree char *base = g_path_get_basename (r->files[i]);
  gtk_label_set_text (GTK_LABEL (self->preview_label), base);
  gtk_widget_set_tooltip_text (self->preview_label, r->files[i]);
  gtk_picture_set_paintable (GTK_PICTURE (self->preview), NULL);
  if (self->thumb_cancel)
    g_cancellable_cancel (self->thumb_cancel);
  g_clear_object (&self->thumb_cancel);
  if (r->split[i] < 0 || self->data == NULL)
    return;
  self->thumb_cancel = g_cancellable_new ();
  vl_job_thumbnails (G_OBJECT (self), self->data, r->split[i], &r->item[i], 1, PREVIEW_SIZE,
                     self->thumb_cancel, thumb_done, g_object_ref (self), g_object_unref);
}

static void
motion_cb (GtkEventControllerMotion *c, double x, double y, VlEmbeddingPanel *self)
{
  GtkWidget *view = gtk_event_controller_get_widget (GTK_EVENT_CONTROLLER (c));
  int side = view == self->views[VL_EMBEDDING_FINETUNED];
  int64_t i = vl_embedding_view_point_at (VL_EMBEDDING_VIEW (view), x, y);
  if (i >= 0)
    vl_embedding_panel_hover (self, side, i);
}

static void
point_activated_cb (VlEmbeddingView *view, gint64 i, VlEmbeddingPanel *self)
{
  int side = GTK_WIDGET (view) == self->views[VL_EMBEDDING_FINETUNED];
  Rows *r = &self->rows[side];
  if (i < 0 || i >= r->n)
    return;
  g_signal_emit (self, signals[SIGNAL_IMAGE_ACTIVATED], 0, r->files[i]);
}

/* The default handler: the image in the desktop's viewer (a record of Fashion-MNIST or CIFAR
 * has no file: its thumbnail in the preview is all there is). */
static void
real_image_activated (VlEmbeddingPanel *self, const char *path)
{
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return;
  g_autoptr(GFile) file = g_file_new_for_path (path);
  g_autofree char *uri = g_file_get_uri (file);
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  gtk_show_uri (GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL, uri, GDK_CURRENT_TIME);
}

/* ------------------------------------------------------------------ the fine-tuned features */

/* The extraction's progress, shared with the worker: the latest (done, total) under a mutex,
 * at most one idle queued to show it. */
typedef struct {
  GMutex        lock;
  int64_t       done, total;
  gboolean      queued;
  GWeakRef      panel;
  GCancellable *cancel;
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

static gboolean
progress_idle (gpointer user_data)
{
  Progress *pr = user_data;
  g_mutex_lock (&pr->lock);
  int64_t done = pr->done, total = pr->total;
  pr->queued = FALSE;
  g_mutex_unlock (&pr->lock);
  g_autoptr(VlEmbeddingPanel) self = g_weak_ref_get (&pr->panel);
  if (self == NULL || self->cancel != pr->cancel)
    return G_SOURCE_REMOVE;   /* stale */
  g_autofree char *t = g_strdup_printf (_("Features of the fine-tuned model: %lld of %lld "
                                          "images…"), (long long) done, (long long) total);
  gtk_label_set_text (GTK_LABEL (self->status[VL_EMBEDDING_FINETUNED]), t);
  return G_SOURCE_REMOVE;
}

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

typedef struct {
  VlTrainedRef *trained;
  VlDataRef    *data;
  Progress     *progress;
  VlFeatures   *features;
} Job;

static void
job_free (gpointer p)
{
  Job *j = p;
  vl_trained_unref (j->trained);
  vl_data_unref (j->data);
  progress_unref (j->progress);
  g_clear_pointer (&j->features, vl_features_free);
  g_free (j);
}

static void
job_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  Job *j = task_data;
  GError *error = NULL;
  g_mutex_lock (&j->trained->lock);
  VlModel *m = vl_trained_model (j->trained);
  if (m == NULL)
    {
      g_mutex_unlock (&j->trained->lock);
      g_task_return_new_error (task, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, "no trained model");
      return;
    }
  VlFeatureOptions o = VL_FEATURE_OPTIONS_DEFAULT;
  /* the features the trained head sees: its model's own pooling */
  VlPoolKind p = vl_model_pool (m);
  o.pool = p == VL_POOL_AVG ? VL_FEATURE_POOL_AVG : p == VL_POOL_MAX ? VL_FEATURE_POOL_MAX
         : p == VL_POOL_MAP ? VL_FEATURE_POOL_MAP
         : vl_model_geometry (m)->class_token ? VL_FEATURE_POOL_TOKEN : VL_FEATURE_POOL_AVG;
  j->features = vl_features_extract (m, j->data->ds, VL_FEATURE_SPLIT_ALL, &o, progress_cb,
                                     j->progress, cancel, &error);
  g_mutex_unlock (&j->trained->lock);
  if (j->features == NULL)
    g_task_return_error (task, error);
  else
    g_task_return_boolean (task, TRUE);
}

static void
job_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlEmbeddingPanel *self = VL_EMBEDDING_PANEL (source);
  if (g_task_get_cancellable (G_TASK (result)) != self->cancel)
    return;   /* stale: another run, dataset or backbone */
  g_clear_object (&self->cancel);
  Job *j = g_task_get_task_data (G_TASK (result));
  g_autoptr(GError) error = NULL;
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_autofree char *t = g_strdup_printf (_("Features of the fine-tuned model: %s"),
                                            error->message);
      gtk_label_set_text (GTK_LABEL (self->status[VL_EMBEDDING_FINETUNED]), t);
      return;
    }
  if (self->data == NULL)
    self->data = vl_data_ref (j->data);
  const char *pool = pool_name (j->features->pool);
  g_autofree char *title = g_strdup_printf (_("fine-tuned · %s"), pool);
  show_rows (self, VL_EMBEDDING_FINETUNED, j->features, title);
  /* a frozen backbone (a linear probe) leaves the features as they were */
  self->same_features = self->pre_n == j->features->n && self->pre_dim == j->features->dim &&
                        self->pre_hash == hash_features (j->features);
  g_autofree char *t = g_strdup_printf (_("PC1 %.0f%% · PC2 %.0f%% of the variance"),
                                        100 * vl_embedding_view_get_explained (
                                          VL_EMBEDDING_VIEW (self->views[1]), 0),
                                        100 * vl_embedding_view_get_explained (
                                          VL_EMBEDDING_VIEW (self->views[1]), 1));
  gtk_label_set_text (GTK_LABEL (self->status[VL_EMBEDDING_FINETUNED]),
                      self->same_features ? _("The run trained the head alone: these are the "
                                              "pretrained features") : t);
  g_signal_emit (self, signals[SIGNAL_FINETUNED_READY], 0);
}

void
vl_embedding_panel_start_finetuned (VlEmbeddingPanel *self, VlTrainedRef *trained,
                                    VlDataRef *data)
{
  g_return_if_fail (VL_IS_EMBEDDING_PANEL (self));
  g_return_if_fail (trained != NULL && data != NULL);
  vl_embedding_panel_clear_finetuned (self);
  self->cancel = g_cancellable_new ();
  gtk_label_set_text (GTK_LABEL (self->status[VL_EMBEDDING_FINETUNED]),
                      _("Features of the fine-tuned model…"));
  Job *j = g_new0 (Job, 1);
  j->trained = vl_trained_ref (trained);
  j->data = vl_data_ref (data);
  j->progress = g_atomic_rc_box_new0 (Progress);
  g_mutex_init (&j->progress->lock);
  g_weak_ref_init (&j->progress->panel, self);
  j->progress->cancel = g_object_ref (self->cancel);
  g_autoptr(GTask) task = g_task_new (self, self->cancel, job_done, NULL);
  g_task_set_task_data (task, j, job_free);
  g_task_run_in_thread (task, job_thread);
}

void
vl_embedding_panel_clear_finetuned (VlEmbeddingPanel *self)
{
  g_return_if_fail (VL_IS_EMBEDDING_PANEL (self));
  if (self->cancel)
    g_cancellable_cancel (self->cancel);
  g_clear_object (&self->cancel);
  show_rows (self, VL_EMBEDDING_FINETUNED, NULL, NULL);
  gtk_label_set_text (GTK_LABEL (self->status[VL_EMBEDDING_FINETUNED]),
                      _("After a run: the fine-tuned model's features of the same images"));
  if (self->preview_side == VL_EMBEDDING_FINETUNED)
    self->preview_point = -1;
}

void
vl_embedding_panel_set_pretrained (VlEmbeddingPanel *self, const VlFeatures *f, VlDataRef *data)
{
  g_return_if_fail (VL_IS_EMBEDDING_PANEL (self));
  g_clear_pointer (&self->data, vl_data_unref);
  self->data = data ? vl_data_ref (data) : NULL;
  self->preview_point = -1;
  gtk_picture_set_paintable (GTK_PICTURE (self->preview), NULL);
  gtk_label_set_text (GTK_LABEL (self->preview_label), _("Hover a point to see its image"));
  if (f == NULL)
    {
      vl_embedding_panel_clear_finetuned (self);
      show_rows (self, VL_EMBEDDING_PRETRAINED, NULL, NULL);
      gtk_label_set_text (GTK_LABEL (self->status[VL_EMBEDDING_PRETRAINED]),
                          _("Open a backbone and a dataset: the pretrained features' map"));
      return;
    }
  self->pre_n = f->n;
  self->pre_dim = f->dim;
  self->pre_hash = hash_features (f);
  const char *pool = pool_name (f->pool);
  g_autofree char *title = g_strdup_printf (_("pretrained · %s"), pool);
  show_rows (self, VL_EMBEDDING_PRETRAINED, f, title);
  g_autofree char *t = g_strdup_printf (_("PC1 %.0f%% · PC2 %.0f%% of the variance"),
                                        100 * vl_embedding_view_get_explained (
                                          VL_EMBEDDING_VIEW (self->views[0]), 0),
                                        100 * vl_embedding_view_get_explained (
                                          VL_EMBEDDING_VIEW (self->views[0]), 1));
  gtk_label_set_text (GTK_LABEL (self->status[VL_EMBEDDING_PRETRAINED]), t);
}

gboolean
vl_embedding_panel_is_busy (VlEmbeddingPanel *self)
{
  return self->cancel != NULL;
}

GtkWidget *
vl_embedding_panel_get_view (VlEmbeddingPanel *self, VlEmbeddingSide side)
{
  return self->views[side];
}

int64_t
vl_embedding_panel_get_n_points (VlEmbeddingPanel *self, VlEmbeddingSide side)
{
  return self->rows[side].n;
}

GdkPaintable *
vl_embedding_panel_get_preview (VlEmbeddingPanel *self, int64_t *point)
{
  if (point)
    *point = self->preview_point;
  return gtk_picture_get_paintable (GTK_PICTURE (self->preview));
}

const char *
vl_embedding_panel_get_file (VlEmbeddingPanel *self, int64_t i)
{
  Rows *r = &self->rows[VL_EMBEDDING_PRETRAINED];
  return i >= 0 && i < r->n ? r->files[i] : NULL;
}

/* ------------------------------------------------------------------ the type */

static void
vl_embedding_panel_dispose (GObject *object)
{
  VlEmbeddingPanel *self = VL_EMBEDDING_PANEL (object);
  GCancellable **c[] = { &self->cancel, &self->thumb_cancel };
  for (guint i = 0; i < G_N_ELEMENTS (c); i++)
    {
      if (*c[i])
        g_cancellable_cancel (*c[i]);
      g_clear_object (c[i]);
    }
  g_clear_pointer (&self->data, vl_data_unref);
  G_OBJECT_CLASS (vl_embedding_panel_parent_class)->dispose (object);
}

static void
vl_embedding_panel_finalize (GObject *object)
{
  VlEmbeddingPanel *self = VL_EMBEDDING_PANEL (object);
  rows_clear (&self->rows[0]);
  rows_clear (&self->rows[1]);
  G_OBJECT_CLASS (vl_embedding_panel_parent_class)->finalize (object);
}

static void
vl_embedding_panel_class_init (VlEmbeddingPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->dispose = vl_embedding_panel_dispose;
  object_class->finalize = vl_embedding_panel_finalize;
  /**
   * VlEmbeddingPanel::image-activated:
   * @path: the clicked point's file (the dataset's item name)
   *
   * A point was clicked; the default handler opens the file.
   */
  signals[SIGNAL_IMAGE_ACTIVATED] =
    g_signal_new_class_handler ("image-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST,
                                G_CALLBACK (real_image_activated), NULL, NULL, NULL,
                                G_TYPE_NONE, 1, G_TYPE_STRING);
  signals[SIGNAL_FINETUNED_READY] =
    g_signal_new ("finetuned-ready", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 0);
  g_type_ensure (VL_TYPE_EMBEDDING_VIEW);
}

static void
vl_embedding_panel_init (VlEmbeddingPanel *self)
{
  self->preview_point = -1;
  gtk_orientable_set_orientation (GTK_ORIENTABLE (self), GTK_ORIENTATION_VERTICAL);
  gtk_box_set_spacing (GTK_BOX (self), 8);
  self->caption = gtk_label_new (_("Each image's pooled features projected on their two principal "
                                   "axes (PCA), coloured by class: the pretrained backbone's, and "
                                 "after a run the fine-tuned model's. Hover a point for its image; "
                                   "click it to open the file."));
  gtk_label_set_xalign (GTK_LABEL (self->caption), 0);
  gtk_label_set_wrap (GTK_LABEL (self->caption), TRUE);
  gtk_widget_add_css_class (self->caption, "dim-label");
  gtk_box_append (GTK_BOX (self), self->caption);

  GtkWidget *row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 8);
  gtk_widget_set_vexpand (row, TRUE);
  gtk_box_append (GTK_BOX (self), row);
  for (int s = 0; s < 2; s++)
    {
      GtkWidget *col = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
      gtk_widget_set_hexpand (col, TRUE);
      GtkWidget *frame = gtk_frame_new (NULL);
      gtk_widget_add_css_class (frame, "vl-view-frame");
      gtk_widget_set_vexpand (frame, TRUE);
      self->views[s] = vl_embedding_view_new ();
      gtk_frame_set_child (GTK_FRAME (frame), self->views[s]);
      gtk_box_append (GTK_BOX (col), frame);
      self->status[s] = gtk_label_new ("");
      gtk_label_set_xalign (GTK_LABEL (self->status[s]), 0);
      gtk_label_set_wrap (GTK_LABEL (self->status[s]), TRUE);
      gtk_widget_add_css_class (self->status[s], "dim-label");
      gtk_widget_add_css_class (self->status[s], "caption");
      gtk_box_append (GTK_BOX (col), self->status[s]);
      gtk_box_append (GTK_BOX (row), col);
      GtkEventController *motion = gtk_event_controller_motion_new ();
      g_signal_connect (motion, "motion", G_CALLBACK (motion_cb), self);
      gtk_widget_add_controller (self->views[s], motion);
      g_signal_connect (self->views[s], "point-activated", G_CALLBACK (point_activated_cb), self);
    }
  GtkWidget *side = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
  gtk_widget_set_size_request (side, PREVIEW_SIZE, -1);
  gtk_widget_add_css_class (side, "vl-card");
  self->preview = gtk_picture_new ();
  gtk_widget_set_size_request (self->preview, PREVIEW_SIZE, PREVIEW_SIZE);
  gtk_picture_set_can_shrink (GTK_PICTURE (self->preview), TRUE);
  gtk_widget_add_css_class (self->preview, "vl-thumb");
  gtk_box_append (GTK_BOX (side), self->preview);
  self->preview_label = gtk_label_new ("");
  gtk_label_set_wrap (GTK_LABEL (self->preview_label), TRUE);
  gtk_label_set_wrap_mode (GTK_LABEL (self->preview_label), PANGO_WRAP_WORD_CHAR);
  gtk_label_set_max_width_chars (GTK_LABEL (self->preview_label), 18);
  gtk_widget_add_css_class (self->preview_label, "caption");
  gtk_box_append (GTK_BOX (side), self->preview_label);
  gtk_box_append (GTK_BOX (row), side);
  vl_embedding_panel_set_pretrained (self, NULL, NULL);
}

GtkWidget *
vl_embedding_panel_new (void)
{
  return g_object_new (VL_TYPE_EMBEDDING_PANEL, NULL);
}

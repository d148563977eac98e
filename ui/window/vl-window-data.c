/* vl-window-data.c: the dataset panel (opening a source with vl_job_open_dataset; classes, split,
 * thumbnails decoded on a worker thread; skipped files). A dataset that arrives is announced
 * with the window's "dataset-changed" signal: the parts that follow it (the task's cards, the
 * head, the probes, the features, the task) connect to it, so this file names none of them. */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include <math.h>
#include <string.h>

#define THUMBS_PER_CLASS 6
#define THUMB_SIZE 96

/* ------------------------------------------------------------------ thumbnails */

/* The window's own done callbacks get the window (vl_job_thumbnails' get only their data). */
typedef struct {
  VlWindow *self;
  void    (*done) (VlWindow *self, int slot, GdkTexture *tex, gpointer user_data);
  gpointer  user_data;
  GDestroyNotify destroy;
} ThumbTrampoline;

static void
trampoline_done (int slot, GdkTexture *tex, gpointer p)
{
  ThumbTrampoline *t = p;
  if (!t->self->disposed)
    t->done (t->self, slot, tex, t->user_data);
}

static void
trampoline_free (gpointer p)
{
  ThumbTrampoline *t = p;
  if (t->destroy)
    t->destroy (t->user_data);
  g_free (t);
}

/* Decodes items of a split as size×size thumbnails on a worker thread (vl_job_thumbnails);
 * done (slot, texture) runs on the main thread for each, unless cancel was cancelled meanwhile. */
void
vl_window_load_thumbnails (VlWindow *self, VlDataRef *data, VlSplit split, const int *items,
                           int n_items, int size, GCancellable *cancel,
                           void (*done) (VlWindow *self, int slot, GdkTexture *tex,
                                         gpointer user_data),
                           gpointer user_data, GDestroyNotify destroy)
{
  ThumbTrampoline *t = g_new0 (ThumbTrampoline, 1);
  *t = (ThumbTrampoline) { self, done, user_data, destroy };
  vl_job_thumbnails (G_OBJECT (self), data, split, items, n_items, size, cancel,
                     trampoline_done, t, trampoline_free);
}

/* ------------------------------------------------------------------ opening */

static gboolean
spec_has_split (const char *spec, VlDataset *ds)
{
  if (!g_file_test (spec, G_FILE_TEST_IS_DIR))
    return TRUE;   /* fashion-mnist, cifar: their own test split */
  if (vl_dataset_is_detection (ds))
    return TRUE;   /* VOC, COCO and YOLO name their splits */
  g_autofree char *val = g_build_filename (spec, "val", NULL);
  g_autofree char *sets = g_build_filename (spec, "ImageSets", NULL);   /* VOC's split lists */
  return g_file_test (val, G_FILE_TEST_IS_DIR) || g_file_test (sets, G_FILE_TEST_IS_DIR);
}

/* A run whose events and folder carry no class names: the open dataset's, when it has K classes
 * (kept as the window's class names); NULL otherwise. */
char **
vl_window_class_names_from_data (VlWindow *self, int K)
{
  if (self->data == NULL || vl_dataset_n_classes (self->data->ds) != K)
    return NULL;
  GStrvBuilder *b = g_strv_builder_new ();
  for (int k = 0; k < K; k++)
    g_strv_builder_add (b, vl_dataset_class_name (self->data->ds, k));
  g_strfreev (self->class_names);
  self->class_names = g_strv_builder_end (b);
  g_strv_builder_unref (b);
  self->n_classes = K;
  return self->class_names;
}

/* also from the trainer's READY/FINISHED events */
void
vl_window_show_skipped (VlWindow *self, char **skipped)
{
  vl_data_panel_set_skipped (VL_DATA_PANEL (self->data_panel), skipped);
}

static void
show_skipped (VlWindow *self, VlDataset *ds)
{
  g_autoptr(GPtrArray) sk = vl_dataset_skipped (ds);
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
  for (guint i = 0; i < sk->len; i++)
    {
      VlSkipped *s = g_ptr_array_index (sk, i);
      g_autofree char *base = g_path_get_basename (s->path);
      g_autofree char *line = g_strdup_printf ("%s: %s", base, s->reason);
      g_strv_builder_add (b, line);
    }
  g_auto(GStrv) strv = g_strv_builder_end (b);
  vl_data_panel_set_skipped (VL_DATA_PANEL (self->data_panel), strv);
}

static void
show_classes (VlWindow *self)
{
  vl_data_panel_clear_classes (VL_DATA_PANEL (self->data_panel));
  VlDataset *ds = self->data->ds;
  /* a segmentation or detection set: its part shows its own card on "dataset-changed" (every
   * item is of class 0 there: no counts per class) */
  if (vl_dataset_is_segmentation (ds) || vl_dataset_is_detection (ds))
    return;
  int K = vl_dataset_n_classes (ds);
  int n_train = vl_dataset_n_items (ds, VL_SPLIT_TRAIN);

  /* which items to show: the first few of each class in the training split */
  int per = K > 12 ? 3 : THUMBS_PER_CLASS;
  g_autofree int *items = g_new (int, (gsize) K * per + 1);
  g_autofree int *taken = g_new0 (int, K);
  int n_items = 0;
  g_autofree int *slot_class = g_new (int, (gsize) K * per + 1);
  for (int i = 0; i < n_train && n_items < K * per; i++)
    {
      int k = vl_dataset_label (ds, VL_SPLIT_TRAIN, i);
      if (k >= 0 && k < K && taken[k] < per)
        {
          taken[k]++;
          slot_class[n_items] = k;
          items[n_items++] = i;
        }
    }
  /* one card per class: name, counts, a strip of thumbnails */
  g_autofree GtkWidget **flows = g_new0 (GtkWidget *, K);
  for (int k = 0; k < K && k < 200; k++)
    {
      GtkWidget *card = gtk_box_new (GTK_ORIENTATION_VERTICAL, 6);
      gtk_widget_add_css_class (card, "vl-card");
      GtkWidget *head = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 8);
      GtkWidget *name = gtk_label_new (vl_dataset_class_name (ds, k));
      gtk_label_set_xalign (GTK_LABEL (name), 0);
      gtk_label_set_ellipsize (GTK_LABEL (name), PANGO_ELLIPSIZE_END);
      gtk_widget_set_hexpand (name, TRUE);
      gtk_widget_add_css_class (name, "heading");
      gtk_box_append (GTK_BOX (head), name);
      g_autofree char *counts = g_strdup_printf (_("%d train · %d val"),
                                                 vl_dataset_class_count (ds, VL_SPLIT_TRAIN, k),
                                                 vl_dataset_class_count (ds, VL_SPLIT_VAL, k));
      GtkWidget *cl = gtk_label_new (counts);
      gtk_widget_add_css_class (cl, "dim-label");
      gtk_widget_add_css_class (cl, "vl-numeric");
      gtk_box_append (GTK_BOX (head), cl);
      gtk_box_append (GTK_BOX (card), head);
      if (taken[k] > 0)
        {
          GtkWidget *flow = gtk_flow_box_new ();
          gtk_flow_box_set_selection_mode (GTK_FLOW_BOX (flow), GTK_SELECTION_NONE);
          gtk_flow_box_set_homogeneous (GTK_FLOW_BOX (flow), TRUE);
          gtk_flow_box_set_max_children_per_line (GTK_FLOW_BOX (flow), per);
          gtk_flow_box_set_min_children_per_line (GTK_FLOW_BOX (flow), 3);
          gtk_flow_box_set_column_spacing (GTK_FLOW_BOX (flow), 4);
          gtk_flow_box_set_row_spacing (GTK_FLOW_BOX (flow), 4);
          gtk_box_append (GTK_BOX (card), flow);
          flows[k] = flow;
        }
      vl_data_panel_add_classes_card (VL_DATA_PANEL (self->data_panel), card);
    }
  if (n_items == 0)
    return;
  GPtrArray *pictures = g_ptr_array_new_with_free_func (g_object_unref);
  for (int s = 0; s < n_items; s++)
    {
      GtkWidget *pic = gtk_picture_new ();
      gtk_picture_set_content_fit (GTK_PICTURE (pic), GTK_CONTENT_FIT_COVER);
      gtk_picture_set_can_shrink (GTK_PICTURE (pic), TRUE);
      gtk_widget_set_size_request (pic, 52, 52);
      gtk_widget_add_css_class (pic, "vl-thumb");
      g_autofree char *base = g_path_get_basename (vl_dataset_item_name (ds, VL_SPLIT_TRAIN, items[s]));
      gtk_widget_set_tooltip_text (pic, base);
      if (slot_class[s] < 200 && flows[slot_class[s]])
        gtk_flow_box_append (GTK_FLOW_BOX (flows[slot_class[s]]), pic);
      g_ptr_array_add (pictures, g_object_ref (pic));
    }
  if (self->thumbs_cancel)
    g_cancellable_cancel (self->thumbs_cancel);
  g_clear_object (&self->thumbs_cancel);
  self->thumbs_cancel = g_cancellable_new ();
  vl_job_thumbnails (G_OBJECT (self), self->data, VL_SPLIT_TRAIN, items, n_items, THUMB_SIZE,
                     self->thumbs_cancel, vl_thumb_to_picture, pictures,
                             (GDestroyNotify) g_ptr_array_unref);
}

static void
data_opened (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  GCancellable *cancel = g_task_get_cancellable (G_TASK (result));
  g_autoptr(GError) error = NULL;
  VlDatasetOptions used;
  VlDataset *ds_opened = vl_job_open_dataset_finish (result, &used, &error);
  if (cancel != self->data_cancel)
    {
      g_clear_pointer (&ds_opened, vl_dataset_free);
      return;
    }
  VlDataRef *d = NULL;
  if (ds_opened)
    {
      d = g_atomic_rc_box_new0 (VlDataRef);
      d->ds = ds_opened;
      d->spec = g_strdup (self->data_spec);
      d->options = used;
    }
  g_clear_object (&self->data_cancel);
  if (d == NULL)
    {
      vl_window_show_error (self, _("Could not open the dataset: %s"), error->message);
      vl_data_panel_set_failed (VL_DATA_PANEL (self->data_panel));
      vl_window_refresh_probe_file (self, FALSE);   /* still no dataset: the sample */
      vl_window_update_actions (self);
      return;
    }
  g_clear_pointer (&self->data, vl_data_unref);
  self->data = d;
  VlDataset *ds = d->ds;
  g_settings_set_string (self->settings, "last-data", d->spec);

  g_autofree char *base = g_file_test (d->spec, G_FILE_TEST_IS_DIR)
                        ? g_path_get_basename (d->spec)
                        : g_str_has_prefix (d->spec, "fashion-mnist") ? g_strdup ("Fashion-MNIST")
                        : g_strdup (d->spec);
  int n_train = vl_dataset_n_items (ds, VL_SPLIT_TRAIN);
  int n_val = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  g_autofree char *t = vl_format_count (n_train);
  g_autofree char *v = vl_format_count (n_val);
  /* what the model tells apart: object classes (not the background), targets, or classes */
  const int K = vl_dataset_n_classes (ds), n_values = vl_dataset_n_values (ds);
  g_autofree char *what =
    vl_dataset_is_detection (ds)
      ? g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d object class", "%d object classes",
                                      K - 1), K - 1)
    : n_values > 0 ? g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d target", "%d targets",
                                                   n_values), n_values)
                   : g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "%d class", "%d classes", K), K);
  g_autofree char *split = g_strdup_printf (_("%s\n%s · %s training · %s validation images"),
                                            vl_dataset_description (ds), what, t, v);
  vl_data_panel_show_dataset (VL_DATA_PANEL (self->data_panel), d->spec, base, split,
                              g_str_has_prefix (d->spec, "fashion-mnist"));
  g_object_set (self->data_panel, "show-val-fraction", !spec_has_split (d->spec, ds), NULL);
  show_classes (self);
  show_skipped (self, ds);

  /* the other parts take it in: its task's cards, the head for its classes, the probes and
   * their pretrained attention, the k-NN probe and the embedding map, the task */
  g_signal_emit_by_name (self, "dataset-changed");
  vl_window_update_actions (self);
}

void
vl_window_open_data (VlWindow *self, const char *spec)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  g_return_if_fail (spec != NULL);
  if (vl_window_is_running (self))
    {
      vl_window_show_error (self, _("Stop training before opening another dataset"));
      return;
    }
  if (self->data_cancel)
    g_cancellable_cancel (self->data_cancel);
  g_clear_object (&self->data_cancel);
  self->data_cancel = g_cancellable_new ();
  g_free (self->data_spec);
  self->data_spec = g_strdup (spec);
  vl_data_panel_set_loading (VL_DATA_PANEL (self->data_panel), spec);

  VlDatasetOptions options = VL_DATASET_OPTIONS_DEFAULT;
  g_object_get (self->data_panel, "val-fraction", &options.val_fraction, NULL);
  options.seed = vl_training_panel_get_seed (VL_TRAINING_PANEL (self->training_panel));
  /* boxes when the task is detection (a VOC folder has masks and boxes) */
  options.detect = self->task == VL_TASK_DETECT;
  vl_job_open_dataset (G_OBJECT (self), spec, &options, self->data_cancel, data_opened, NULL);
  vl_window_update_actions (self);
}

/* The split depends on the validation share and the seed (folders without val/): rescan after
 * the user stops changing them. */
static gboolean
rescan_timeout (gpointer user_data)
{
  VlWindow *self = user_data;
  g_object_set_data (G_OBJECT (self), "rescan-source", NULL);
  if (self->data && !vl_window_is_running (self) && !spec_has_split (self->data->spec, self->data->ds))
    {
      g_autofree char *spec = g_strdup (self->data->spec);
      vl_window_open_data (self, spec);
    }
  return G_SOURCE_REMOVE;
}

static void
schedule_rescan (VlWindow *self)
{
  if (self->data == NULL || spec_has_split (self->data->spec, self->data->ds))
    return;
  guint id = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (self), "rescan-source"));
  if (id)
    g_source_remove (id);
  id = g_timeout_add_full (G_PRIORITY_DEFAULT, 400, rescan_timeout, self, NULL);
  g_object_set_data (G_OBJECT (self), "rescan-source", GUINT_TO_POINTER (id));
}

/* ------------------------------------------------------------------ setup */

void
vl_window_data_init (VlWindow *self)
{
  g_signal_connect_swapped (self->data_panel, "notify::val-fraction",
                            G_CALLBACK (schedule_rescan), self);
  g_signal_connect_swapped (self->training_panel, "notify::seed", G_CALLBACK (schedule_rescan),
                            self);
}

void
vl_window_data_dispose (VlWindow *self)
{
  guint id = GPOINTER_TO_UINT (g_object_get_data (G_OBJECT (self), "rescan-source"));
  if (id)
    {
      g_source_remove (id);
      g_object_set_data (G_OBJECT (self), "rescan-source", NULL);
    }
  GCancellable **cancels[] = { &self->data_cancel, &self->thumbs_cancel };
  for (guint i = 0; i < G_N_ELEMENTS (cancels); i++)
    {
      if (*cancels[i])
        g_cancellable_cancel (*cancels[i]);
      g_clear_object (cancels[i]);
    }
  g_clear_pointer (&self->data, vl_data_unref);
  g_clear_pointer (&self->data_spec, g_free);
}

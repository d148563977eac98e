/* vl-window-gallery.c: the confusion cells' gallery. A click on a cell of the confusion matrix
 * opens a dialog with the validation images of that true and predicted class (from the trained
 * model's per-image predictions, vl-window-train.c's job), their thumbnails decoded on a worker
 * thread; a click on an image makes it the attention probe. */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include "vl-confusion-view.h"

static void
gallery_thumb_done (VlWindow *self, int slot, GdkTexture *tex, gpointer user_data)
{
  GPtrArray *pictures = user_data;
  if (tex && slot < (int) pictures->len)
    gtk_picture_set_paintable (GTK_PICTURE (g_ptr_array_index (pictures, slot)),
                               GDK_PAINTABLE (tex));
}

static void
on_gallery_destroy (GtkWidget *dialog, GCancellable *cancel)
{
  g_cancellable_cancel (cancel);
}

static void
on_gallery_weak_notify (gpointer data, GObject *where)
{
  VlWindow *self = data;
  if (self->gallery == (GtkWidget *) where)
    self->gallery = NULL;
}

/* A click on a gallery image: that image becomes the attention probe (pretrained and
 * fine-tuned maps side by side) on the Attention page. */
static void
on_gallery_activated (GtkFlowBox *flow, GtkFlowBoxChild *child, VlWindow *self)
{
  const char *path = g_object_get_data (G_OBJECT (gtk_flow_box_child_get_child (child)),
                                        "vl-item-path");
  if (path == NULL)
    return;
  if (!g_file_test (path, G_FILE_TEST_IS_REGULAR))
    {
      vl_window_show_info (self, _("%s is not a file of its own (it is inside the dataset's "
                           "archive), so it cannot be opened as the attention probe"), path);
      return;
    }
  vl_window_open_probe (self, path);
  gtk_stack_set_visible_child_name (GTK_STACK (self->main_stack), "attention");
  gtk_window_present (GTK_WINDOW (self));
}

void
vl_window_show_gallery (VlWindow *self, int true_class, int predicted_class)
{
  if (self->pred->cls.n == 0 || self->pred->data == NULL)
    {
      vl_window_show_info (self, self->pred->cancel
                           ? _("Working out each image's prediction; try again in a moment.")
                           : _("The gallery needs a trained model and its dataset."));
      return;
    }
  VlDataset *ds = self->pred->data->ds;
  const int K = vl_dataset_n_classes (ds);
  if (true_class < 0 || true_class >= K || predicted_class < 0 || predicted_class >= K)
    return;
  g_autoptr(GArray) items = g_array_new (FALSE, FALSE, sizeof (int));
  for (int i = 0; i < self->pred->cls.n; i++)
    if (self->pred->cls.label[i] == true_class && self->pred->cls.predicted[i] == predicted_class)
      g_array_append_val (items, i);
  const int max_shown = 200;

  GtkWidget *dialog = gtk_window_new ();
  gtk_window_set_transient_for (GTK_WINDOW (dialog), GTK_WINDOW (self));
  gtk_window_set_destroy_with_parent (GTK_WINDOW (dialog), TRUE);
  gtk_window_set_default_size (GTK_WINDOW (dialog), 820, 600);
  g_autofree char *title = g_strdup_printf (_("True %s · predicted %s"),
                                            vl_dataset_class_name (ds, true_class),
                                            vl_dataset_class_name (ds, predicted_class));
  gtk_window_set_title (GTK_WINDOW (dialog), title);
  GtkWidget *header = gtk_header_bar_new ();
  gtk_window_set_titlebar (GTK_WINDOW (dialog), header);

  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 8);
  gtk_widget_add_css_class (box, "main-page");
  const char *first = (int) items->len > max_shown ? _(" (the first 200 shown)") : "";
  g_autofree char *summary =
    true_class == predicted_class
      ? g_strdup_printf (g_dngettext (GETTEXT_PACKAGE,
                                      "%u validation image of class “%s” correctly predicted as "
                                      "“%s”%s. Confidence is the trained model's probability for "
                                      "its prediction; click an image to see where the model "
                                      "looks on it.",
                                      "%u validation images of class “%s” correctly predicted as "
                                      "“%s”%s. Confidence is the trained model's probability for "
                                      "its prediction; click an image to see where the model "
                                      "looks on it.", items->len),
                         items->len, vl_dataset_class_name (ds, true_class),
                         vl_dataset_class_name (ds, predicted_class), first)
      : g_strdup_printf (g_dngettext (GETTEXT_PACKAGE,
                                      "%u validation image of class “%s” mistaken for “%s”%s. "
                                      "Confidence is the trained model's probability for its "
                                      "prediction; click an image to see where the model looks "
                                      "on it.",
                                      "%u validation images of class “%s” mistaken for “%s”%s. "
                                      "Confidence is the trained model's probability for its "
                                      "prediction; click an image to see where the model looks "
                                      "on it.", items->len),
                         items->len, vl_dataset_class_name (ds, true_class),
                         vl_dataset_class_name (ds, predicted_class), first);
  GtkWidget *sl = gtk_label_new (summary);
  gtk_label_set_wrap (GTK_LABEL (sl), TRUE);
  gtk_label_set_xalign (GTK_LABEL (sl), 0);
  gtk_widget_add_css_class (sl, "dim-label");
  gtk_box_append (GTK_BOX (box), sl);
  GtkWidget *scroll = gtk_scrolled_window_new ();
  gtk_widget_set_vexpand (scroll, TRUE);
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroll), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  GtkWidget *flow = gtk_flow_box_new ();
  gtk_flow_box_set_selection_mode (GTK_FLOW_BOX (flow), GTK_SELECTION_NONE);
  gtk_flow_box_set_homogeneous (GTK_FLOW_BOX (flow), TRUE);
  gtk_flow_box_set_max_children_per_line (GTK_FLOW_BOX (flow), 12);
  gtk_flow_box_set_column_spacing (GTK_FLOW_BOX (flow), 8);
  gtk_flow_box_set_row_spacing (GTK_FLOW_BOX (flow), 8);
  gtk_widget_set_valign (flow, GTK_ALIGN_START);
  gtk_flow_box_set_activate_on_single_click (GTK_FLOW_BOX (flow), TRUE);
  g_signal_connect_object (flow, "child-activated", G_CALLBACK (on_gallery_activated), self, 0);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroll), flow);
  gtk_box_append (GTK_BOX (box), scroll);
  gtk_window_set_child (GTK_WINDOW (dialog), box);

  GPtrArray *pictures = g_ptr_array_new_with_free_func (g_object_unref);
  int n = MIN ((int) items->len, max_shown);
  for (int s = 0; s < n; s++)
    {
      int i = g_array_index (items, int, s);
      GtkWidget *card = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
      gtk_widget_add_css_class (card, "vl-gallery-card");
      GtkWidget *pic = gtk_picture_new ();
      gtk_picture_set_content_fit (GTK_PICTURE (pic), GTK_CONTENT_FIT_COVER);
      gtk_picture_set_can_shrink (GTK_PICTURE (pic), TRUE);
      gtk_widget_set_size_request (pic, 120, 120);
      gtk_widget_add_css_class (pic, "vl-thumb");
      gtk_box_append (GTK_BOX (card), pic);
      g_autofree char *base = g_path_get_basename (vl_dataset_item_name (ds, VL_SPLIT_VAL, i));
      GtkWidget *name = gtk_label_new (base);
      gtk_label_set_ellipsize (GTK_LABEL (name), PANGO_ELLIPSIZE_MIDDLE);
      gtk_label_set_max_width_chars (GTK_LABEL (name), 14);
      gtk_widget_add_css_class (name, "caption");
      gtk_box_append (GTK_BOX (card), name);
      g_autofree char *conf = g_strdup_printf ("%s %.0f %%",
                                               vl_dataset_class_name (ds, predicted_class),
                                               100.0 * self->pred->cls.confidence[i]);
      GtkWidget *cl = gtk_label_new (conf);
      gtk_widget_add_css_class (cl, "caption");
      gtk_widget_add_css_class (cl, true_class == predicted_class ? "vl-correct" : "vl-wrong");
      gtk_box_append (GTK_BOX (card), cl);
      g_autofree char *tip = g_strdup_printf ("%s\ntrue: %s\npredicted: %s (%.1f %%)",
                                              vl_dataset_item_name (ds, VL_SPLIT_VAL, i),
                                              vl_dataset_class_name (ds, true_class),
                                              vl_dataset_class_name (ds, predicted_class),
                                              100.0 * self->pred->cls.confidence[i]);
      gtk_widget_set_tooltip_text (card, tip);
      g_object_set_data_full (G_OBJECT (card), "vl-item-path",
                              g_strdup (vl_dataset_item_name (ds, VL_SPLIT_VAL, i)), g_free);
      gtk_flow_box_append (GTK_FLOW_BOX (flow), card);
      g_ptr_array_add (pictures, g_object_ref (pic));
    }
  if (n == 0)
    {
      GtkWidget *empty = gtk_label_new (_("No images in this cell"));
      gtk_widget_add_css_class (empty, "dim-label");
      gtk_flow_box_append (GTK_FLOW_BOX (flow), empty);
    }
  GCancellable *cancel = g_cancellable_new ();
  g_signal_connect_data (dialog, "destroy", G_CALLBACK (on_gallery_destroy), cancel,
                         (GClosureNotify) (void (*) (void)) g_object_unref, 0);
  if (n > 0)
    vl_window_load_thumbnails (self, self->pred->data, VL_SPLIT_VAL, (const int *) items->data, n,
                               160, cancel, gallery_thumb_done, pictures,
                               (GDestroyNotify) g_ptr_array_unref);
  else
    g_ptr_array_unref (pictures);
  self->gallery = dialog;
  g_object_weak_ref (G_OBJECT (dialog), on_gallery_weak_notify, self);
  gtk_window_present (GTK_WINDOW (dialog));
}

static void
on_cell_activated (VlConfusionView *view, int true_class, int predicted_class, VlWindow *self)
{
  vl_window_show_gallery (self, true_class, predicted_class);
}

void
vl_window_gallery_init (VlWindow *self)
{
  g_signal_connect (self->confusion, "cell-activated", G_CALLBACK (on_cell_activated), self);
}

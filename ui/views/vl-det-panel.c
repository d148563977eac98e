/* vl-det-panel.c: a detector's validation images, the score threshold and the worst of them
 * (see vl-det-panel.h). */
#include "vl-det-panel.h"
#include "vl-box-view.h"
#include "vl-task-view.h"

#include <glib/gi18n.h>

struct _VlDetPanel {
  GtkBox      parent_instance;
  GtkWidget  *title_label;
  GtkWidget  *box_view;
  GtkWidget  *scale, *scale_value;
  GtkWidget  *worst_title, *worst_box;   /* the strip: one button per item */
  char      **names;
  int         item;
  GArray     *worst_items;               /* int */
};

enum { SIGNAL_ITEM_ACTIVATED, N_SIGNALS };
static guint signals[N_SIGNALS];
enum { PROP_0, PROP_SCORE_THRESHOLD, N_PROPS };
static GParamSpec *props[N_PROPS];

static void vl_det_panel_task_view_init (VlTaskViewInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (VlDetPanel, vl_det_panel, GTK_TYPE_BOX,
                               G_IMPLEMENT_INTERFACE (VL_TYPE_TASK_VIEW,
                                                      vl_det_panel_task_view_init))

static gboolean
applies_to (VlTaskView *view, VlTaskKind task)
{
  return task == VL_TASK_DETECT;
}

static void
vl_det_panel_task_view_init (VlTaskViewInterface *iface)
{
  iface->applies_to = applies_to;
}

/* ------------------------------------------------------------------ the threshold */

static void
on_scale_changed (GtkRange *range, VlDetPanel *self)
{
  vl_det_panel_set_score_threshold (self, gtk_range_get_value (range));
}

static void
on_threshold_notify (VlDetPanel *self)
{
  double t = vl_box_view_get_score_threshold (VL_BOX_VIEW (self->box_view));
  g_autofree char *v = g_strdup_printf ("%.2f", t);
  gtk_label_set_text (GTK_LABEL (self->scale_value), v);
  if (gtk_range_get_value (GTK_RANGE (self->scale)) != t)
    gtk_range_set_value (GTK_RANGE (self->scale), t);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_SCORE_THRESHOLD]);
}

double
vl_det_panel_get_score_threshold (VlDetPanel *panel)
{
  g_return_val_if_fail (VL_IS_DET_PANEL (panel), 0.0);
  return vl_box_view_get_score_threshold (VL_BOX_VIEW (panel->box_view));
}

void
vl_det_panel_set_score_threshold (VlDetPanel *panel, double threshold)
{
  g_return_if_fail (VL_IS_DET_PANEL (panel));
  vl_box_view_set_score_threshold (VL_BOX_VIEW (panel->box_view), threshold);
}

/* ------------------------------------------------------------------ the sample and the strip */

void
vl_det_panel_set_classes (VlDetPanel *panel, const char *const *names)
{
  g_return_if_fail (VL_IS_DET_PANEL (panel));
  g_strfreev (panel->names);
  panel->names = g_strdupv ((char **) names);
}

void
vl_det_panel_set_sample (VlDetPanel *panel, int item, GdkTexture *image, int width, int height,
                         const VlCocoBox *truth, int n_truth, const VlCocoBox *dets, int n_dets,
                         const char *title)
{
  g_return_if_fail (VL_IS_DET_PANEL (panel));
  panel->item = item;
  VlBoxView *view = VL_BOX_VIEW (panel->box_view);
  vl_box_view_set_image (view, image);
  vl_box_view_set_boxes (view, width, height, truth, n_truth, dets, n_dets,
                         (const char *const *) panel->names);
  gtk_label_set_text (GTK_LABEL (panel->title_label), title ? title : "");
}

static void
on_worst_clicked (GtkButton *button, VlDetPanel *self)
{
  int item = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "item"));
  g_signal_emit (self, signals[SIGNAL_ITEM_ACTIVATED], 0, item);
}

static void
clear_strip (VlDetPanel *panel)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (panel->worst_box)))
    gtk_box_remove (GTK_BOX (panel->worst_box), child);
  g_array_set_size (panel->worst_items, 0);
  gtk_widget_set_visible (panel->worst_title, FALSE);
}

void
vl_det_panel_set_worst (VlDetPanel *panel, int n, const int *items, GdkTexture *const *thumbs,
                        const char *const *captions)
{
  g_return_if_fail (VL_IS_DET_PANEL (panel));
  clear_strip (panel);
  for (int i = 0; i < n; i++)
    {
      GtkWidget *col = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
      GtkWidget *pic = gtk_picture_new_for_paintable (thumbs[i] ? GDK_PAINTABLE (thumbs[i])
                                                                : NULL);
      gtk_picture_set_content_fit (GTK_PICTURE (pic), GTK_CONTENT_FIT_COVER);
      gtk_picture_set_can_shrink (GTK_PICTURE (pic), TRUE);
      gtk_widget_set_size_request (pic, 64, 64);
      gtk_box_append (GTK_BOX (col), pic);
      GtkWidget *cap = gtk_label_new (captions[i]);
      gtk_widget_add_css_class (cap, "caption");
      gtk_label_set_justify (GTK_LABEL (cap), GTK_JUSTIFY_CENTER);
      gtk_box_append (GTK_BOX (col), cap);
      GtkWidget *button = gtk_button_new ();
      gtk_button_set_child (GTK_BUTTON (button), col);
      gtk_widget_add_css_class (button, "flat");
      gtk_widget_set_tooltip_text (button, captions[i]);
      g_object_set_data (G_OBJECT (button), "item", GINT_TO_POINTER (items[i]));
      g_signal_connect (button, "clicked", G_CALLBACK (on_worst_clicked), panel);
      gtk_box_append (GTK_BOX (panel->worst_box), button);
      g_array_append_val (panel->worst_items, items[i]);
    }
  gtk_widget_set_visible (panel->worst_title, n > 0);
}

void
vl_det_panel_clear (VlDetPanel *panel)
{
  g_return_if_fail (VL_IS_DET_PANEL (panel));
  vl_box_view_clear (VL_BOX_VIEW (panel->box_view));
  clear_strip (panel);
  panel->item = -1;
  gtk_label_set_text (GTK_LABEL (panel->title_label), "");
}

int
vl_det_panel_get_item (VlDetPanel *panel)
{
  g_return_val_if_fail (VL_IS_DET_PANEL (panel), -1);
  return panel->item;
}

int
vl_det_panel_get_n_worst (VlDetPanel *panel)
{
  g_return_val_if_fail (VL_IS_DET_PANEL (panel), 0);
  return (int) panel->worst_items->len;
}

int
vl_det_panel_get_worst_item (VlDetPanel *panel, int i)
{
  g_return_val_if_fail (VL_IS_DET_PANEL (panel), -1);
  g_return_val_if_fail (i >= 0 && i < (int) panel->worst_items->len, -1);
  return g_array_index (panel->worst_items, int, i);
}

void
vl_det_panel_activate_worst (VlDetPanel *panel, int i)
{
  g_return_if_fail (VL_IS_DET_PANEL (panel));
  GtkWidget *b = gtk_widget_get_first_child (panel->worst_box);
  for (int k = 0; b && k < i; k++)
    b = gtk_widget_get_next_sibling (b);
  g_return_if_fail (b != NULL);
  g_signal_emit_by_name (b, "clicked");
}

GtkWidget *
vl_det_panel_get_box_view (VlDetPanel *panel)
{
  g_return_val_if_fail (VL_IS_DET_PANEL (panel), NULL);
  return panel->box_view;
}

/* ------------------------------------------------------------------ GObject */

static void
vl_det_panel_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  if (id == PROP_SCORE_THRESHOLD)
    g_value_set_double (value, vl_det_panel_get_score_threshold (VL_DET_PANEL (object)));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
}

static void
vl_det_panel_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  if (id == PROP_SCORE_THRESHOLD)
    vl_det_panel_set_score_threshold (VL_DET_PANEL (object), g_value_get_double (value));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
}

static void
vl_det_panel_finalize (GObject *object)
{
  VlDetPanel *self = VL_DET_PANEL (object);
  g_strfreev (self->names);
  g_array_unref (self->worst_items);
  G_OBJECT_CLASS (vl_det_panel_parent_class)->finalize (object);
}

static void
vl_det_panel_class_init (VlDetPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->finalize = vl_det_panel_finalize;
  object_class->get_property = vl_det_panel_get_property;
  object_class->set_property = vl_det_panel_set_property;
  props[PROP_SCORE_THRESHOLD] =
    g_param_spec_double ("score-threshold", NULL, NULL, 0.0, 1.0, VL_DET_PANEL_SCORE,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  signals[SIGNAL_ITEM_ACTIVATED] =
    g_signal_new ("item-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_INT);
}

static GtkWidget *
dim_label (const char *text)
{
  GtkWidget *l = gtk_label_new (text);
  gtk_label_set_xalign (GTK_LABEL (l), 0);
  gtk_label_set_wrap (GTK_LABEL (l), TRUE);
  gtk_widget_add_css_class (l, "dim-label");
  gtk_widget_add_css_class (l, "caption");
  return l;
}

static void
vl_det_panel_init (VlDetPanel *self)
{
  GtkBox *box = GTK_BOX (self);
  gtk_orientable_set_orientation (GTK_ORIENTABLE (self), GTK_ORIENTATION_VERTICAL);
  gtk_box_set_spacing (box, 6);
  self->item = -1;
  self->worst_items = g_array_new (FALSE, FALSE, sizeof (int));

  self->title_label = gtk_label_new (NULL);
  gtk_label_set_xalign (GTK_LABEL (self->title_label), 0);
  gtk_label_set_ellipsize (GTK_LABEL (self->title_label), PANGO_ELLIPSIZE_MIDDLE);
  gtk_widget_add_css_class (self->title_label, "heading");
  gtk_box_append (box, self->title_label);

  self->box_view = vl_box_view_new ();
  gtk_widget_set_vexpand (self->box_view, TRUE);
  gtk_widget_set_hexpand (self->box_view, TRUE);
  gtk_box_append (box, self->box_view);

  GtkWidget *row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 8);
  GtkWidget *l = gtk_label_new (_("Score threshold"));
  gtk_box_append (GTK_BOX (row), l);
  self->scale = gtk_scale_new_with_range (GTK_ORIENTATION_HORIZONTAL, 0.05, 0.95, 0.05);
  gtk_range_set_value (GTK_RANGE (self->scale), VL_DET_PANEL_SCORE);
  gtk_widget_set_hexpand (self->scale, TRUE);
  gtk_widget_set_tooltip_text (self->scale, _("Boxes scoring at least this are drawn; a true "
                                              "box no drawn box of its class overlaps by IoU "
                                              "0.5 is missed, a drawn box that overlaps none is "
                                              "false (COCO's greedy matching)"));
  gtk_box_append (GTK_BOX (row), self->scale);
  self->scale_value = gtk_label_new (NULL);
  gtk_widget_add_css_class (self->scale_value, "vl-numeric");
  gtk_box_append (GTK_BOX (row), self->scale_value);
  gtk_box_append (box, row);
  g_signal_connect (self->scale, "value-changed", G_CALLBACK (on_scale_changed), self);
  g_signal_connect_swapped (self->box_view, "notify::score-threshold",
                            G_CALLBACK (on_threshold_notify), self);
  vl_box_view_set_score_threshold (VL_BOX_VIEW (self->box_view), VL_DET_PANEL_SCORE);

  g_autofree char *worst = g_strdup_printf (_("The worst validation images, by missed and false "
                                               "boxes at score %.1f: click one to see it."),
                                             VL_DET_PANEL_SCORE);
  self->worst_title = dim_label (worst);
  gtk_widget_set_visible (self->worst_title, FALSE);
  gtk_box_append (box, self->worst_title);
  GtkWidget *scroller = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroller), GTK_POLICY_AUTOMATIC,
                                  GTK_POLICY_NEVER);
  self->worst_box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 2);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroller), self->worst_box);
  gtk_box_append (box, scroller);
}

GtkWidget *
vl_det_panel_new (void)
{
  return g_object_new (VL_TYPE_DET_PANEL, NULL);
}

/* vl-mask-view.c: masks over a segmentation run's validation images (see vl-mask-view.h). */
#include "vl-mask-view.h"
#include "vl-colormap.h"
#include "vl-seg-head.h"
#include "vl-task-view.h"

#include <glib/gi18n.h>
#include <string.h>

#define N_WORST_MAX 24

struct _VlMaskView {
  GtkWidget   parent_instance;
  /* children */
  GtkWidget  *toolbar, *mode_dropdown, *opacity_scale, *title_label;
  GtkWidget  *area, *legend, *worst_title, *worst_scroller, *worst_box;
  /* state */
  VlMaskMode  mode;
  double      opacity;
  int         n_classes;
  char      **names;          /* (n_classes + 1) */
  uint8_t     palette[256 * 3];
  int         item;           /* shown (-1: none) */
  VlImage    *image;          /* RGB copy */
  uint8_t    *pred, *truth;   /* (w h) or NULL */
  cairo_surface_t *surface;   /* the composed picture, rebuilt on changes */
  int         n_worst;
  int         worst_items[N_WORST_MAX];
};

static void vl_mask_view_task_view_init (VlTaskViewInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (VlMaskView, vl_mask_view, GTK_TYPE_WIDGET,
                               G_IMPLEMENT_INTERFACE (VL_TYPE_TASK_VIEW,
                                                      vl_mask_view_task_view_init))

enum { PROP_0, PROP_MODE, PROP_OPACITY, N_PROPS };
static GParamSpec *props[N_PROPS];
enum { SIGNAL_ITEM_ACTIVATED, N_SIGNALS };
static guint signals[N_SIGNALS];

/* the difference mode's colours */
static const guint8 right_rgb[3] = { 40, 200, 70 }, wrong_rgb[3] = { 230, 40, 40 };

static gboolean
applies_to (VlTaskView *view, VlTaskKind task)
{
  return task == VL_TASK_SEGMENT;
}

static void
vl_mask_view_task_view_init (VlTaskViewInterface *iface)
{
  iface->applies_to = applies_to;
}

/* The mask colour over pixel p in the current mode; NULL: the image's own pixel (background
 * whose colour is black, ignored pixels, a correct background pixel in the difference). */
static const guint8 *
overlay_color (VlMaskView *self, gsize p)
{
  const uint8_t *m = self->mode == VL_MASK_MODE_TRUE ? self->truth : self->pred;
  if (self->mode == VL_MASK_MODE_DIFFERENCE)
    {
      if (self->pred == NULL || self->truth == NULL || self->truth[p] == VL_SEG_IGNORE)
        return NULL;
      if (self->pred[p] != self->truth[p])
        return wrong_rgb;
      return self->truth[p] == 0 ? NULL : right_rgb;
    }
  if (m == NULL || m[p] == VL_SEG_IGNORE)
    return NULL;
  const guint8 *c = self->palette + 3 * m[p];
  return c[0] == 0 && c[1] == 0 && c[2] == 0 ? NULL : c;
}

/* Pixel p of img with colour c (NULL: none) laid over it at opacity. */
static void
blend (const VlImage *img, gsize p, const guint8 *c, double opacity, guint8 out[3])
{
  for (int k = 0; k < 3; k++)
    {
      double v = img->pixels[p * img->channels + (img->channels >= 3 ? k : 0)];
      if (c)
        v = (1.0 - opacity) * v + opacity * c[k];
      out[k] = (guint8) CLAMP ((int) (v + 0.5), 0, 255);
    }
}

static void
compose_pixel (VlMaskView *self, gsize p, guint8 out[3])
{
  blend (self->image, p, overlay_color (self, p), self->opacity, out);
}

GdkTexture *
vl_mask_texture (const VlImage *image, const uint8_t *mask, double opacity)
{
  uint8_t palette[256 * 3];
  vl_seg_palette (palette);
  const int w = image->width, h = image->height;
  guchar *rgb = g_malloc ((gsize) w * h * 3);
  for (gsize p = 0; p < (gsize) w * h; p++)
    {
      const guint8 *c = mask && mask[p] != VL_SEG_IGNORE ? palette + 3 * mask[p] : NULL;
      if (c && c[0] == 0 && c[1] == 0 && c[2] == 0)
        c = NULL;
      blend (image, p, c, opacity, rgb + 3 * p);
    }
  g_autoptr(GBytes) bytes = g_bytes_new_take (rgb, (gsize) w * h * 3);
  return gdk_memory_texture_new (w, h, GDK_MEMORY_R8G8B8, bytes, (gsize) w * 3);
}

static void
rebuild (VlMaskView *self)
{
  g_clear_pointer (&self->surface, cairo_surface_destroy);
  if (self->image)
    {
      const int w = self->image->width, h = self->image->height;
      self->surface = cairo_image_surface_create (CAIRO_FORMAT_RGB24, w, h);
      cairo_surface_flush (self->surface);
      guint8 *data = cairo_image_surface_get_data (self->surface);
      int stride = cairo_image_surface_get_stride (self->surface);
      for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
          {
            guint8 rgb[3];
            compose_pixel (self, (gsize) y * w + x, rgb);
            guint32 *px = (guint32 *) (data + (gsize) y * stride) + x;
            *px = 0xff000000u | ((guint32) rgb[0] << 16) | ((guint32) rgb[1] << 8) | rgb[2];
          }
      cairo_surface_mark_dirty (self->surface);
    }
  gtk_widget_queue_draw (self->area);
}

static void
draw (GtkDrawingArea *area, cairo_t *cr, int width, int height, gpointer data)
{
  VlMaskView *self = data;
  if (self->surface == NULL)
    {
      VlDrawColors colors;
      vl_draw_colors_from_widget (GTK_WIDGET (area), &colors);
      g_autoptr(PangoLayout) layout = vl_draw_layout (cr, GTK_WIDGET (area), 1.0);
      pango_layout_set_width (layout, MAX (width - 24, 40) * PANGO_SCALE);
      pango_layout_set_wrap (layout, PANGO_WRAP_WORD_CHAR);
      pango_layout_set_alignment (layout, PANGO_ALIGN_CENTER);
      vl_draw_set_source (cr, &colors.fg, 0.55);
      vl_draw_text (cr, layout, _("The masks of the validation images appear here when a "
                                  "segmentation run has a trained model."),
                    12, height / 2.0, 0, 0.5);
      return;
    }
  const int w = self->image->width, h = self->image->height;
  double scale = MIN ((double) width / w, (double) height / h);
  double ox = (width - w * scale) / 2, oy = (height - h * scale) / 2;
  cairo_save (cr);
  cairo_translate (cr, ox, oy);
  cairo_scale (cr, scale, scale);
  cairo_set_source_surface (cr, self->surface, 0, 0);
  /* upscaled small images keep their pixels: the mask's edges are the model's */
  cairo_pattern_set_filter (cairo_get_source (cr), scale >= 2 ? CAIRO_FILTER_NEAREST
                                                              : CAIRO_FILTER_GOOD);
  cairo_rectangle (cr, 0, 0, w, h);
  cairo_fill (cr);
  cairo_restore (cr);
}

/* ------------------------------------------------------------------ the legend */

char *
vl_mask_swatch_markup (const guint8 *rgb, const char *name)
{
  g_autofree char *escaped = g_markup_escape_text (name, -1);
  return rgb ? g_strdup_printf ("<span foreground=\"#%02x%02x%02x\">■</span> %s", rgb[0], rgb[1],
                                rgb[2], escaped)
             : g_strdup_printf ("□ %s", escaped);
}

char *
vl_mask_class_markup (int k, const char *name)
{
  uint8_t palette[256 * 3];
  vl_seg_palette (palette);
  const guint8 *c = palette + 3 * CLAMP (k, 0, 255);
  return vl_mask_swatch_markup (c[0] || c[1] || c[2] ? c : NULL, name);
}

static GtkWidget *
legend_entry (const guint8 *rgb, const char *name)
{
  g_autofree char *markup = vl_mask_swatch_markup (rgb, name);
  GtkWidget *l = gtk_label_new (NULL);
  gtk_label_set_markup (GTK_LABEL (l), markup);
  gtk_label_set_xalign (GTK_LABEL (l), 0);
  gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
  gtk_label_set_max_width_chars (GTK_LABEL (l), 18);
  gtk_widget_set_tooltip_text (l, name);
  gtk_widget_add_css_class (l, "caption");
  return l;
}

static void
rebuild_legend (VlMaskView *self)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (self->legend)))
    gtk_flow_box_remove (GTK_FLOW_BOX (self->legend), child);
  if (self->mode == VL_MASK_MODE_DIFFERENCE)
    {
      gtk_flow_box_append (GTK_FLOW_BOX (self->legend), legend_entry (right_rgb, _("correct")));
      gtk_flow_box_append (GTK_FLOW_BOX (self->legend), legend_entry (wrong_rgb, _("wrong")));
      gtk_flow_box_append (GTK_FLOW_BOX (self->legend),
                           legend_entry (NULL, _("background right, or ignored")));
      return;
    }
  for (int k = 0; k < self->n_classes && k < 256; k++)
    {
      const guint8 *c = self->palette + 3 * k;
      gboolean bare = c[0] == 0 && c[1] == 0 && c[2] == 0;
      const char *name = self->names && self->names[k] ? self->names[k] : "?";
      gtk_flow_box_append (GTK_FLOW_BOX (self->legend), legend_entry (bare ? NULL : c, name));
    }
}

int
vl_mask_view_get_n_legend (VlMaskView *self)
{
  int n = 0;
  for (GtkWidget *c = gtk_widget_get_first_child (self->legend); c;
       c = gtk_widget_get_next_sibling (c))
    n++;
  return n;
}

/* ------------------------------------------------------------------ the worst images */

static void
on_worst_clicked (GtkButton *button, VlMaskView *self)
{
  int i = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "worst"));
  vl_mask_view_activate_worst (self, i);
}

void
vl_mask_view_activate_worst (VlMaskView *self, int i)
{
  g_return_if_fail (VL_IS_MASK_VIEW (self));
  if (i >= 0 && i < self->n_worst)
    g_signal_emit (self, signals[SIGNAL_ITEM_ACTIVATED], 0, self->worst_items[i]);
}

void
vl_mask_view_set_worst (VlMaskView *self, int n, const int *items, const double *iou,
                        GdkTexture *const *thumbs, const char *const *names)
{
  g_return_if_fail (VL_IS_MASK_VIEW (self));
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (self->worst_box)))
    gtk_box_remove (GTK_BOX (self->worst_box), child);
  self->n_worst = MIN (n, N_WORST_MAX);
  for (int i = 0; i < self->n_worst; i++)
    {
      self->worst_items[i] = items[i];
      GtkWidget *b = gtk_button_new ();
      gtk_widget_add_css_class (b, "flat");
      GtkWidget *box = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
      GtkWidget *pic = gtk_picture_new_for_paintable (thumbs && thumbs[i]
                                                      ? GDK_PAINTABLE (thumbs[i]) : NULL);
      gtk_picture_set_can_shrink (GTK_PICTURE (pic), TRUE);
      gtk_picture_set_content_fit (GTK_PICTURE (pic), GTK_CONTENT_FIT_COVER);
      gtk_widget_set_size_request (pic, 56, 56);
      gtk_widget_add_css_class (pic, "vl-thumb");
      gtk_box_append (GTK_BOX (box), pic);
      g_autofree char *t = g_strdup_printf ("%.2f", iou[i]);
      GtkWidget *l = gtk_label_new (t);
      gtk_widget_add_css_class (l, "caption");
      gtk_widget_add_css_class (l, "vl-numeric");
      gtk_box_append (GTK_BOX (box), l);
      gtk_button_set_child (GTK_BUTTON (b), box);
      g_autofree char *tip = g_strdup_printf (_("%s: IoU %.3f (click to show its masks)"),
                                              names && names[i] ? names[i] : "?", iou[i]);
      gtk_widget_set_tooltip_text (b, tip);
      g_object_set_data (G_OBJECT (b), "worst", GINT_TO_POINTER (i));
      g_signal_connect (b, "clicked", G_CALLBACK (on_worst_clicked), self);
      gtk_box_append (GTK_BOX (self->worst_box), b);
    }
  gtk_widget_set_visible (self->worst_title, self->n_worst > 0);
  gtk_widget_set_visible (self->worst_scroller, self->n_worst > 0);
}

int
vl_mask_view_get_n_worst (VlMaskView *self)
{
  return self->n_worst;
}

int
vl_mask_view_get_worst_item (VlMaskView *self, int i)
{
  return i >= 0 && i < self->n_worst ? self->worst_items[i] : -1;
}

/* ------------------------------------------------------------------ data */

void
vl_mask_view_set_classes (VlMaskView *self, int n_classes, const char *const *names)
{
  g_return_if_fail (VL_IS_MASK_VIEW (self));
  self->n_classes = n_classes;
  g_strfreev (self->names);
  self->names = g_new0 (char *, n_classes + 1);
  for (int k = 0; k < n_classes; k++)
    self->names[k] = g_strdup (names && names[k] ? names[k] : "?");
  rebuild_legend (self);
}

void
vl_mask_view_set_sample (VlMaskView *self, int item, const VlImage *image, const uint8_t *pred,
                         const uint8_t *truth, const char *title)
{
  g_return_if_fail (VL_IS_MASK_VIEW (self));
  g_clear_pointer (&self->image, vl_image_free);
  g_clear_pointer (&self->pred, g_free);
  g_clear_pointer (&self->truth, g_free);
  self->item = image ? item : -1;
  if (image)
    {
      gsize n = (gsize) image->width * image->height;
      self->image = vl_image_new (image->width, image->height, image->channels);
      memcpy (self->image->pixels, image->pixels, n * image->channels);
      self->pred = pred ? g_memdup2 (pred, n) : NULL;
      self->truth = truth ? g_memdup2 (truth, n) : NULL;
    }
  gtk_label_set_text (GTK_LABEL (self->title_label), image && title ? title : "");
  gtk_widget_set_tooltip_text (self->title_label, image ? title : NULL);
  rebuild (self);
}

void
vl_mask_view_clear (VlMaskView *self)
{
  vl_mask_view_set_sample (self, -1, NULL, NULL, NULL, NULL);
  vl_mask_view_set_worst (self, 0, NULL, NULL, NULL, NULL);
}

int
vl_mask_view_get_item (VlMaskView *self)
{
  return self->item;
}

gboolean
vl_mask_view_pixel (VlMaskView *self, int x, int y, guint8 rgb[3])
{
  if (self->image == NULL || x < 0 || y < 0 || x >= self->image->width ||
      y >= self->image->height)
    return FALSE;
  compose_pixel (self, (gsize) y * self->image->width + x, rgb);
  return TRUE;
}

VlMaskMode
vl_mask_view_get_mode (VlMaskView *self)
{
  return self->mode;
}

void
vl_mask_view_set_mode (VlMaskView *self, VlMaskMode mode)
{
  g_return_if_fail (VL_IS_MASK_VIEW (self));
  if (mode == self->mode || mode > VL_MASK_MODE_DIFFERENCE)
    return;
  self->mode = mode;
  rebuild_legend (self);
  rebuild (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_MODE]);
}

double
vl_mask_view_get_opacity (VlMaskView *self)
{
  return self->opacity;
}

void
vl_mask_view_set_opacity (VlMaskView *self, double opacity)
{
  g_return_if_fail (VL_IS_MASK_VIEW (self));
  opacity = CLAMP (opacity, 0.0, 1.0);
  if (opacity == self->opacity)
    return;
  self->opacity = opacity;
  rebuild (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_OPACITY]);
}

/* ------------------------------------------------------------------ GObject */

static gboolean
mode_to_selected (GBinding *b, const GValue *from, GValue *to, gpointer user_data)
{
  g_value_set_uint (to, (guint) g_value_get_int (from));
  return TRUE;
}

static gboolean
selected_to_mode (GBinding *b, const GValue *from, GValue *to, gpointer user_data)
{
  guint v = g_value_get_uint (from);
  if (v == GTK_INVALID_LIST_POSITION)
    return FALSE;
  g_value_set_int (to, (int) v);
  return TRUE;
}

static void
vl_mask_view_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  VlMaskView *self = VL_MASK_VIEW (object);
  switch (id)
    {
    case PROP_MODE: g_value_set_int (value, self->mode); break;
    case PROP_OPACITY: g_value_set_double (value, self->opacity); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_mask_view_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  VlMaskView *self = VL_MASK_VIEW (object);
  switch (id)
    {
    case PROP_MODE: vl_mask_view_set_mode (self, g_value_get_int (value)); break;
    case PROP_OPACITY: vl_mask_view_set_opacity (self, g_value_get_double (value)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
    }
}

static void
vl_mask_view_dispose (GObject *object)
{
  VlMaskView *self = VL_MASK_VIEW (object);
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (GTK_WIDGET (self))))
    gtk_widget_unparent (child);
  G_OBJECT_CLASS (vl_mask_view_parent_class)->dispose (object);
}

static void
vl_mask_view_finalize (GObject *object)
{
  VlMaskView *self = VL_MASK_VIEW (object);
  g_clear_pointer (&self->image, vl_image_free);
  g_free (self->pred);
  g_free (self->truth);
  g_strfreev (self->names);
  g_clear_pointer (&self->surface, cairo_surface_destroy);
  G_OBJECT_CLASS (vl_mask_view_parent_class)->finalize (object);
}

static void
vl_mask_view_class_init (VlMaskViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->get_property = vl_mask_view_get_property;
  object_class->set_property = vl_mask_view_set_property;
  object_class->dispose = vl_mask_view_dispose;
  object_class->finalize = vl_mask_view_finalize;
  props[PROP_MODE] = g_param_spec_int ("mode", NULL, NULL, 0, VL_MASK_MODE_DIFFERENCE, 0,
                                       G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                       G_PARAM_STATIC_STRINGS);
  props[PROP_OPACITY] = g_param_spec_double ("opacity", NULL, NULL, 0, 1, 0.5,
                                             G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                             G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  signals[SIGNAL_ITEM_ACTIVATED] =
    g_signal_new ("item-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_INT);
  gtk_widget_class_set_layout_manager_type (widget_class, GTK_TYPE_BOX_LAYOUT);
  gtk_widget_class_set_css_name (widget_class, "vlmaskview");
}

static void
vl_mask_view_init (VlMaskView *self)
{
  self->opacity = 0.5;
  self->item = -1;
  vl_seg_palette (self->palette);
  GtkLayoutManager *lm = gtk_widget_get_layout_manager (GTK_WIDGET (self));
  gtk_orientable_set_orientation (GTK_ORIENTABLE (lm), GTK_ORIENTATION_VERTICAL);
  gtk_box_layout_set_spacing (GTK_BOX_LAYOUT (lm), 6);

  self->toolbar = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 8);
  gtk_widget_set_parent (self->toolbar, GTK_WIDGET (self));
  const char *modes[] = { _("Predicted mask"), _("True mask"), _("Difference"), NULL };
  self->mode_dropdown = gtk_drop_down_new_from_strings (modes);
  gtk_widget_set_tooltip_text (self->mode_dropdown,
                               _("The mask laid over the image: the model's prediction, the "
                                 "true labels, or where they differ"));
  gtk_box_append (GTK_BOX (self->toolbar), self->mode_dropdown);
  GtkWidget *ol = gtk_label_new (_("Opacity"));
  gtk_widget_add_css_class (ol, "dim-label");
  gtk_box_append (GTK_BOX (self->toolbar), ol);
  self->opacity_scale = gtk_scale_new_with_range (GTK_ORIENTATION_HORIZONTAL, 0, 1, 0.05);
  gtk_widget_set_size_request (self->opacity_scale, 100, -1);
  gtk_widget_set_tooltip_text (self->opacity_scale, _("How strongly the mask covers the image"));
  gtk_box_append (GTK_BOX (self->toolbar), self->opacity_scale);
  /* the image's name and IoU on a line of its own, under the controls */
  self->title_label = gtk_label_new (NULL);
  gtk_label_set_ellipsize (GTK_LABEL (self->title_label), PANGO_ELLIPSIZE_MIDDLE);
  gtk_label_set_xalign (GTK_LABEL (self->title_label), 0);
  gtk_widget_add_css_class (self->title_label, "heading");
  gtk_widget_set_parent (self->title_label, GTK_WIDGET (self));

  self->area = gtk_drawing_area_new ();
  gtk_drawing_area_set_content_width (GTK_DRAWING_AREA (self->area), 160);
  gtk_drawing_area_set_content_height (GTK_DRAWING_AREA (self->area), 160);
  gtk_widget_set_hexpand (self->area, TRUE);
  gtk_widget_set_vexpand (self->area, TRUE);
  gtk_drawing_area_set_draw_func (GTK_DRAWING_AREA (self->area), draw, self, NULL);
  gtk_widget_set_parent (self->area, GTK_WIDGET (self));

  self->legend = gtk_flow_box_new ();
  gtk_flow_box_set_selection_mode (GTK_FLOW_BOX (self->legend), GTK_SELECTION_NONE);
  gtk_flow_box_set_max_children_per_line (GTK_FLOW_BOX (self->legend), 8);
  gtk_flow_box_set_column_spacing (GTK_FLOW_BOX (self->legend), 10);
  gtk_widget_set_parent (self->legend, GTK_WIDGET (self));

  self->worst_title = gtk_label_new (_("Worst validation images (IoU of each; click one to "
                                       "show it)"));
  gtk_label_set_xalign (GTK_LABEL (self->worst_title), 0);
  gtk_label_set_wrap (GTK_LABEL (self->worst_title), TRUE);   /* whole, as the boxes' strip */
  gtk_widget_add_css_class (self->worst_title, "dim-label");
  gtk_widget_add_css_class (self->worst_title, "caption");
  gtk_widget_set_parent (self->worst_title, GTK_WIDGET (self));
  self->worst_scroller = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (self->worst_scroller),
                                  GTK_POLICY_AUTOMATIC, GTK_POLICY_NEVER);
  self->worst_box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 2);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (self->worst_scroller), self->worst_box);
  gtk_widget_set_parent (self->worst_scroller, GTK_WIDGET (self));
  gtk_widget_set_visible (self->worst_title, FALSE);
  gtk_widget_set_visible (self->worst_scroller, FALSE);

  g_object_bind_property_full (self, "mode", self->mode_dropdown, "selected",
                               G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE,
                               mode_to_selected, selected_to_mode, NULL, NULL);
  g_object_bind_property (gtk_range_get_adjustment (GTK_RANGE (self->opacity_scale)), "value",
                          self, "opacity", G_BINDING_BIDIRECTIONAL | G_BINDING_SYNC_CREATE);
  /* SYNC_CREATE copied the adjustment's 0 into the view: start at half */
  vl_mask_view_set_opacity (self, 0.5);
}

GtkWidget *
vl_mask_view_new (void)
{
  return g_object_new (VL_TYPE_MASK_VIEW, NULL);
}

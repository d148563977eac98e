/* vl-box-view.c: a detector's boxes over their image (see vl-box-view.h). */
#include "vl-box-view.h"
#include "vl-colormap.h"
#include "vl-detect.h"     /* vl_det_place_labels */
#include "vl-draw-boxes.h"   /* vl_draw_class_color: one colour per class across the app */
#include "vl-task-view.h"

#include <glib/gi18n.h>
#include <math.h>
#include <string.h>

#define MATCH_IOU 0.5f

struct _VlBoxView {
  GtkWidget   parent_instance;
  GdkTexture *image;
  int         image_w, image_h;
  VlCocoBox  *truth, *dets;
  int         n_truth, n_dets;
  char      **names;
  double      threshold;
  /* at the current threshold (update_matches) */
  gboolean   *missed;      /* (n_truth) */
  gboolean   *false_pos;   /* (n_dets) */
  int         n_shown, n_missed, n_false;
  gboolean    truth_only;  /* a dataset's boxes: their class names, no matching, no counts */
  /* where the last drawing put each prediction's tab (x, y, w, h; w 0: none) */
  double     *det_tabs;    /* (n_dets, 4) */
  char      **truth_tabs;  /* (n_truth) each true box's tab text, or NULL */
};

enum { PROP_0, PROP_SCORE_THRESHOLD, N_PROPS };
static GParamSpec *props[N_PROPS];

static void vl_box_view_task_view_init (VlTaskViewInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (VlBoxView, vl_box_view, GTK_TYPE_WIDGET,
                               G_IMPLEMENT_INTERFACE (VL_TYPE_TASK_VIEW,
                                                      vl_box_view_task_view_init))

static gboolean
applies_to (VlTaskView *view, VlTaskKind task)
{
  return task == VL_TASK_DETECT;
}

static void
vl_box_view_task_view_init (VlTaskViewInterface *iface)
{
  iface->applies_to = applies_to;
}

/* Which ground truth is missed and which shown prediction is false at the threshold
 * (vl_det_match at IoU 0.5: COCO's greedy rule). */
static void
update_matches (VlBoxView *self)
{
  g_clear_pointer (&self->missed, g_free);
  g_clear_pointer (&self->false_pos, g_free);
  self->missed = g_new0 (gboolean, MAX (self->n_truth, 1));
  self->false_pos = g_new0 (gboolean, MAX (self->n_dets, 1));
  vl_det_match (self->false_pos, self->missed, self->truth, self->n_truth, self->dets,
                self->n_dets, (float) self->threshold, MATCH_IOU);
  self->n_shown = self->n_missed = self->n_false = 0;
  for (int g = 0; g < self->n_truth; g++)
    {
      self->missed[g] = !self->missed[g];
      self->n_missed += self->missed[g];
    }
  for (int i = 0; i < self->n_dets; i++)
    {
      const gboolean shown = self->dets[i].score >= (float) self->threshold;
      self->n_shown += shown;
      self->false_pos[i] = shown && !self->false_pos[i];
      self->n_false += self->false_pos[i];
    }
}

/* The image's rectangle in a widget of width x height (aspect kept, room for the read-out). */
static void
fit (VlBoxView *self, int width, int height, double *x, double *y, double *scale)
{
  const double bottom = self->truth_only ? 0 : 24;   /* the counts' line */
  const double iw = MAX (self->image_w, 1), ih = MAX (self->image_h, 1);
  *scale = MIN (width / iw, (height - bottom) / ih);
  *scale = MAX (*scale, 1e-3);
  *x = (width - iw * *scale) / 2;
  *y = MAX (0, (height - bottom - ih * *scale) / 2);
}

static const char *
class_name (VlBoxView *self, int k, char *buf, gsize size)
{
  if (self->names && k >= 0 && k < (int) g_strv_length (self->names))
    return self->names[k];
  g_snprintf (buf, size, _("class %d"), k);
  return buf;
}

/* A box outline, solid (a prediction) or dashed (the truth). */
static void
stroke_box (cairo_t *cr, const double r[4], const double rgb[3], gboolean dashed)
{
  static const double dash[] = { 6, 4 };
  cairo_set_line_width (cr, dashed ? 2 : 2.5);
  cairo_set_dash (cr, dashed ? dash : NULL, dashed ? 2 : 0, 0);
  cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
  cairo_rectangle (cr, r[0], r[1], MAX (r[2] - r[0], 1), MAX (r[3] - r[1], 1));
  cairo_stroke (cr);
  cairo_set_dash (cr, NULL, 0, 0);
}

/* A box's tab of text: where it goes and what it says. */
typedef struct {
  int    det;        /* the prediction's index, or -1 (a true box's) */
  int    truth;      /* the true box's index (det -1) */
  char   text[160];
  double rgb[3];
  double x, y, w, h;
} Tab;

static void
draw_tab (cairo_t *cr, PangoLayout *font, const Tab *t)
{
  cairo_set_source_rgb (cr, t->rgb[0], t->rgb[1], t->rgb[2]);
  cairo_rectangle (cr, t->x, t->y, t->w, t->h);
  cairo_fill (cr);
  /* black or white text, whichever reads on the class colour */
  const double lum = 0.2126 * t->rgb[0] + 0.7152 * t->rgb[1] + 0.0722 * t->rgb[2];
  cairo_set_source_rgb (cr, lum > 0.5 ? 0 : 1, lum > 0.5 ? 0 : 1, lum > 0.5 ? 0 : 1);
  vl_draw_text (cr, font, t->text, t->x + 3, t->y + 1, 0.0, 0.0);
}

static int
by_score_desc (gconstpointer a, gconstpointer b, gpointer data)
{
  const VlCocoBox *dets = data;
  const int ia = *(const int *) a, ib = *(const int *) b;
  const float sa = dets[ia].score, sb = dets[ib].score;
  return sa != sb ? (sa < sb) - (sa > sb) : (ia > ib) - (ia < ib);   /* ties in index order */
}

static void
draw (VlBoxView *self, cairo_t *cr, int width, int height)
{
  VlDrawColors colors;
  vl_draw_colors_from_widget (GTK_WIDGET (self), &colors);
  g_autoptr(PangoLayout) small = vl_draw_layout (cr, GTK_WIDGET (self), 0.85);
  if (self->image_w <= 0)
    {
      vl_draw_set_source (cr, &colors.fg, 0.55);
      vl_draw_text (cr, small, _("No image yet: choose one of the validation images."),
                    width / 2.0, height / 2.0, 0.5, 0.5);
      return;
    }
  double ox, oy, s;
  fit (self, width, height, &ox, &oy, &s);
  if (self->image)
    {
      const int w = gdk_texture_get_width (self->image), h = gdk_texture_get_height (self->image);
      cairo_surface_t *surf = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, w, h);
      gdk_texture_download (self->image, cairo_image_surface_get_data (surf),
                            cairo_image_surface_get_stride (surf));
      cairo_surface_mark_dirty (surf);
      cairo_save (cr);
      cairo_translate (cr, ox, oy);
      cairo_scale (cr, s * self->image_w / w, s * self->image_h / h);
      cairo_set_source_surface (cr, surf, 0, 0);
      cairo_pattern_set_filter (cairo_get_source (cr), CAIRO_FILTER_GOOD);
      cairo_paint (cr);
      cairo_restore (cr);
      cairo_surface_destroy (surf);
    }
  else
    {
      vl_draw_set_source (cr, &colors.fg, 0.08);
      cairo_rectangle (cr, ox, oy, self->image_w * s, self->image_h * s);
      cairo_fill (cr);
    }

  /* the shown predictions by score, the best first */
  g_autofree int *order = g_new (int, MAX (self->n_dets, 1));
  int n_shown = 0;
  for (int i = 0; i < self->n_dets; i++)
    if (self->dets[i].score >= (float) self->threshold)
      order[n_shown++] = i;
  g_qsort_with_data (order, n_shown, sizeof *order, by_score_desc, self->dets);

  /* the tabs, placed best first so the best sit where they belong (vl_det_place_labels): the
   * predictions', then the missed truths' */
  g_autofree Tab *tabs = g_new0 (Tab, MAX (n_shown + self->n_truth, 1));
  const int n_max = MAX (n_shown + self->n_truth, 1);
  g_autofree double *rects = g_new (double, 4 * n_max);
  g_autofree double *tab_boxes = g_new (double, 4 * n_max), *tab_xy = g_new (double, 2 * n_max);
  g_autofree double *tab_w = g_new (double, n_max), *tab_h = g_new (double, n_max);
  int n_tabs = 0;
  char nbuf[32];
  for (int k = 0; k < n_shown + self->n_truth; k++)
    {
      const gboolean truth = k >= n_shown;
      const int i = truth ? k - n_shown : order[k];
      const VlCocoBox *b = truth ? &self->truth[i] : &self->dets[i];
      double *r = &rects[4 * k];
      for (int c = 0; c < 4; c++)
        r[c] = (c % 2 ? oy : ox) + b->box[c] * s;
      if (truth && !self->missed[i] && !self->truth_only)
        continue;
      Tab *t = &tabs[n_tabs];
      t->det = truth ? -1 : i;
      t->truth = truth ? i : -1;
      vl_draw_class_color (b->category, t->rgb);
      const char *name = class_name (self, b->category, nbuf, sizeof nbuf);
      if (truth && self->truth_only)
        g_strlcpy (t->text, name, sizeof t->text);
      else if (truth)
        g_snprintf (t->text, sizeof t->text, _("%s · missed"), name);
      else
        g_snprintf (t->text, sizeof t->text, self->false_pos[i] ? _("%s %.2f · false") : "%s %.2f",
                    name, b->score);
      int tw, th;
      vl_draw_text_size (small, t->text, &tw, &th);
      t->w = tw + 6;
      t->h = th + 2;
      memcpy (&tab_boxes[4 * n_tabs], r, 4 * sizeof *r);
      tab_w[n_tabs] = t->w;
      tab_h[n_tabs] = t->h;
      n_tabs++;
    }
  vl_det_place_labels (tab_boxes, tab_w, tab_h, n_tabs, width, oy, oy + self->image_h * s, tab_xy);
  for (int k = 0; k < n_tabs; k++)
    tabs[k].x = tab_xy[2 * k], tabs[k].y = tab_xy[2 * k + 1];

  /* the truth dashed, then the predictions from the lowest score up, then the tabs the same
   * way: the best on top */
  double rgb[3];
  for (int g = 0; g < self->n_truth; g++)
    {
      vl_draw_class_color (self->truth[g].category, rgb);
      stroke_box (cr, &rects[4 * (n_shown + g)], rgb, TRUE);
    }
  for (int k = n_shown - 1; k >= 0; k--)
    {
      vl_draw_class_color (self->dets[order[k]].category, rgb);
      stroke_box (cr, &rects[4 * k], rgb, FALSE);
    }
  for (int k = n_tabs - 1; k >= 0; k--)
    draw_tab (cr, small, &tabs[k]);
  g_free (self->det_tabs);
  self->det_tabs = g_new0 (double, 4 * MAX (self->n_dets, 1));
  if (self->truth_tabs == NULL)
    self->truth_tabs = g_new0 (char *, MAX (self->n_truth, 1));
  for (int g = 0; g < self->n_truth; g++)
    g_clear_pointer (&self->truth_tabs[g], g_free);
  for (int k = 0; k < n_tabs; k++)
    if (tabs[k].det >= 0)
      {
        double *o = &self->det_tabs[4 * tabs[k].det];
        o[0] = tabs[k].x, o[1] = tabs[k].y, o[2] = tabs[k].w, o[3] = tabs[k].h;
      }
    else
      self->truth_tabs[tabs[k].truth] = g_strdup (tabs[k].text);

  if (self->truth_only)
    return;
  g_autofree char *line = g_strdup_printf (
    _("%d predicted ≥ %.2f (solid) · %d true (dashed) · %d missed · %d false"), self->n_shown,
    self->threshold, self->n_truth, self->n_missed, self->n_false);
  vl_draw_set_source (cr, &colors.fg, 0.8);
  vl_draw_text (cr, small, line, width / 2.0, height - 4, 0.5, 1.0);
}

static void
vl_box_view_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  const int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  draw (VL_BOX_VIEW (widget), cr, w, h);
  cairo_destroy (cr);
}

static void
vl_box_view_measure (GtkWidget *widget, GtkOrientation orientation, int for_size, int *minimum,
                     int *natural, int *minimum_baseline, int *natural_baseline)
{
  *minimum = 96;   /* a thumbnail's (the data panel's); the evaluation page's expands */
  *natural = orientation == GTK_ORIENTATION_HORIZONTAL ? 420 : 360;
}

static void
vl_box_view_get_property (GObject *object, guint id, GValue *value, GParamSpec *pspec)
{
  VlBoxView *self = VL_BOX_VIEW (object);
  if (id == PROP_SCORE_THRESHOLD)
    g_value_set_double (value, self->threshold);
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
}

static void
vl_box_view_set_property (GObject *object, guint id, const GValue *value, GParamSpec *pspec)
{
  VlBoxView *self = VL_BOX_VIEW (object);
  if (id == PROP_SCORE_THRESHOLD)
    vl_box_view_set_score_threshold (self, g_value_get_double (value));
  else
    G_OBJECT_WARN_INVALID_PROPERTY_ID (object, id, pspec);
}

static void
free_boxes (VlBoxView *self)
{
  g_clear_pointer (&self->truth, g_free);
  g_clear_pointer (&self->dets, g_free);
  g_clear_pointer (&self->names, g_strfreev);
  g_clear_pointer (&self->missed, g_free);
  g_clear_pointer (&self->false_pos, g_free);
  g_clear_pointer (&self->det_tabs, g_free);
  if (self->truth_tabs)
    for (int g = 0; g < self->n_truth; g++)
      g_free (self->truth_tabs[g]);
  g_clear_pointer (&self->truth_tabs, g_free);
  self->n_truth = self->n_dets = 0;
  self->n_shown = self->n_missed = self->n_false = 0;
}

static void
vl_box_view_finalize (GObject *object)
{
  VlBoxView *self = VL_BOX_VIEW (object);
  free_boxes (self);
  g_clear_object (&self->image);
  G_OBJECT_CLASS (vl_box_view_parent_class)->finalize (object);
}

static void
vl_box_view_class_init (VlBoxViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->finalize = vl_box_view_finalize;
  object_class->get_property = vl_box_view_get_property;
  object_class->set_property = vl_box_view_set_property;
  widget_class->snapshot = vl_box_view_snapshot;
  widget_class->measure = vl_box_view_measure;
  props[PROP_SCORE_THRESHOLD] =
    g_param_spec_double ("score-threshold", NULL, NULL, 0.0, 1.0, 0.3,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
vl_box_view_init (VlBoxView *self)
{
  self->threshold = 0.3;
}

GtkWidget *
vl_box_view_new (void)
{
  return g_object_new (VL_TYPE_BOX_VIEW, NULL);
}

void
vl_box_view_set_image (VlBoxView *view, GdkTexture *image)
{
  g_return_if_fail (VL_IS_BOX_VIEW (view));
  g_set_object (&view->image, image);
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

void
vl_box_view_set_boxes (VlBoxView *view, int image_w, int image_h, const VlCocoBox *truth,
                       int n_truth, const VlCocoBox *dets, int n_dets,
                       const char *const *class_names)
{
  g_return_if_fail (VL_IS_BOX_VIEW (view));
  free_boxes (view);
  view->image_w = image_w;
  view->image_h = image_h;
  view->truth = g_memdup2 (truth, sizeof (VlCocoBox) * MAX (n_truth, 0));
  view->dets = g_memdup2 (dets, sizeof (VlCocoBox) * MAX (n_dets, 0));
  view->n_truth = MAX (n_truth, 0);
  view->n_dets = MAX (n_dets, 0);
  for (int i = 0; i < view->n_truth; i++)   /* one image: vl_det_match compares .image */
    view->truth[i].image = 0;
  for (int i = 0; i < view->n_dets; i++)
    view->dets[i].image = 0;
  view->names = g_strdupv ((char **) class_names);
  update_matches (view);
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

void
vl_box_view_clear (VlBoxView *view)
{
  g_return_if_fail (VL_IS_BOX_VIEW (view));
  free_boxes (view);
  view->image_w = view->image_h = 0;
  g_clear_object (&view->image);
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

void
vl_box_view_set_score_threshold (VlBoxView *view, double threshold)
{
  g_return_if_fail (VL_IS_BOX_VIEW (view));
  threshold = CLAMP (threshold, 0.0, 1.0);
  if (threshold == view->threshold)
    return;
  view->threshold = threshold;
  update_matches (view);
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_SCORE_THRESHOLD]);
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

double
vl_box_view_get_score_threshold (VlBoxView *view)
{
  g_return_val_if_fail (VL_IS_BOX_VIEW (view), 0.0);
  return view->threshold;
}

void
vl_box_view_get_counts (VlBoxView *view, int *shown, int *missed, int *false_pos)
{
  g_return_if_fail (VL_IS_BOX_VIEW (view));
  if (shown)
    *shown = view->n_shown;
  if (missed)
    *missed = view->n_missed;
  if (false_pos)
    *false_pos = view->n_false;
}

gboolean
vl_box_view_get_tab (VlBoxView *view, int det, double rect[4])
{
  g_return_val_if_fail (VL_IS_BOX_VIEW (view), FALSE);
  if (view->det_tabs == NULL || det < 0 || det >= view->n_dets || view->det_tabs[4 * det + 2] <= 0)
    return FALSE;
  memcpy (rect, &view->det_tabs[4 * det], 4 * sizeof *rect);
  return TRUE;
}

void
vl_box_view_set_truth_only (VlBoxView *view, gboolean truth_only)
{
  g_return_if_fail (VL_IS_BOX_VIEW (view));
  view->truth_only = truth_only;
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

const char *
vl_box_view_get_truth_tab (VlBoxView *view, int g)
{
  g_return_val_if_fail (VL_IS_BOX_VIEW (view), NULL);
  if (view->truth_tabs == NULL || g < 0 || g >= view->n_truth)
    return NULL;
  return view->truth_tabs[g];
}

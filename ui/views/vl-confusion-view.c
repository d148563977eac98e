/* vl-confusion-view.c: the confusion matrix, drawn with cairo in snapshot. */
#include "vl-confusion-view.h"
#include <glib/gi18n.h>
#include "vl-task-view.h"

#include <math.h>
#include <string.h>

#include "vl-colormap.h"

struct _VlConfusionView {
  GtkWidget  parent_instance;

  int        K;
  int64_t   *counts;       /* (K, K) */
  int64_t   *row_sum;      /* (K) */
  char     **names;        /* (K) */
  char      *title;

  int        hover_t, hover_p;   /* -1: none */
};

static void vl_confusion_view_task_view_init (VlTaskViewInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (VlConfusionView, vl_confusion_view, GTK_TYPE_WIDGET,
                               G_IMPLEMENT_INTERFACE (VL_TYPE_TASK_VIEW,
                                                      vl_confusion_view_task_view_init))

/* VlTaskView: a confusion matrix is classification's */
static gboolean
confusion_applies_to (VlTaskView *view, VlTaskKind task)
{
  return task == VL_TASK_CLASSIFY;
}

static void
vl_confusion_view_task_view_init (VlTaskViewInterface *iface)
{
  iface->applies_to = confusion_applies_to;
}

enum {
  SIGNAL_CELL_ACTIVATED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

enum {
  PROP_0,
  PROP_TITLE,
  PROP_N_CLASSES,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

/* ------------------------------------------------------------------ layout */

#define MAX_LABEL_W 140
#define MAX_CELL 72

typedef struct {
  int    K;
  double mx, my, cs;          /* matrix origin and cell size */
  double title_y;
  gboolean cols_vertical;     /* column labels rotated */
  double pred_y;              /* the "predicted" axis title */
  double acc_x;               /* the accuracy column */
  double footer_y;
  int    font_h;
} Layout;

static int
max_label_width (VlConfusionView *self, PangoLayout *layout)
{
  int mw = 0;
  for (int k = 0; k < self->K; k++)
    {
      int w;
      vl_draw_text_size (layout, self->names[k], &w, NULL);
      mw = MAX (mw, w);
    }
  return MIN (mw, MAX_LABEL_W);
}

static void
compute_layout (VlConfusionView *self, PangoLayout *small, int width, int height, Layout *L)
{
  const double pad = 10;
  int fh;
  vl_draw_text_size (small, "Ag", NULL, &fh);
  L->font_h = fh;
  L->K = self->K;
  int K = MAX (self->K, 1);
  int lw = max_label_width (self, small);
  int accw;
  vl_draw_text_size (small, "100%", &accw, NULL);
  double top = pad;
  L->title_y = top;
  if (self->title != NULL)
    top += fh + 6;
  L->pred_y = top;
  top += fh + 4;                             /* "predicted" */
  double left = pad + fh + 6 + lw + 6;       /* "true", row labels */
  double right = 8 + 36 + 4 + accw + pad;    /* bar + percentage */
  double bottom = fh + 14 + pad;             /* the legend */
  double avail_w = width - left - right;
  /* try horizontal column labels first */
  double avail_h = height - top - (fh + 4) - bottom;
  double cs = floor (MIN (avail_w / K, avail_h / K));
  L->cols_vertical = lw + 6 > cs;
  if (L->cols_vertical)
    {
      avail_h = height - top - (lw + 6) - bottom;
      cs = floor (MIN (avail_w / K, avail_h / K));
    }
  cs = CLAMP (cs, 2, MAX_CELL);
  L->cs = cs;
  double label_h = L->cols_vertical ? lw + 6 : fh + 4;
  double used_w = left + cs * K + right;
  double shift = MAX (0, floor ((width - used_w) / 2));
  L->mx = left + shift;
  L->my = top + label_h;
  L->acc_x = L->mx + cs * K + 8;
  L->footer_y = L->my + cs * K + 10;
}

static gboolean
hit_test (const Layout *L, double x, double y, int *t, int *p)
{
  if (L->K <= 0 || x < L->mx || y < L->my)
    return FALSE;
  int c = (int) floor ((x - L->mx) / L->cs), r = (int) floor ((y - L->my) / L->cs);
  if (c >= L->K || r >= L->K)
    return FALSE;
  if (t != NULL)
    *t = r;
  if (p != NULL)
    *p = c;
  return TRUE;
}

/* ------------------------------------------------------------------ drawing */

static void
cell_colour (const VlDrawColors *C, gboolean diagonal, double *rgb)
{
  static const double blue_l[3] = { 0.110, 0.443, 0.847 }, blue_d[3] = { 0.384, 0.627, 0.918 };
  static const double oran_l[3] = { 0.902, 0.380, 0.000 }, oran_d[3] = { 1.000, 0.639, 0.282 };
  const double *c = diagonal ? (C->dark ? blue_d : blue_l) : (C->dark ? oran_d : oran_l);
  memcpy (rgb, c, sizeof (double) * 3);
}

/* The footer: what the colours mean, and the overall accuracy (correct of total). */
static void
draw_footer (cairo_t *cr, const VlDrawColors *cc, PangoLayout *small, const Layout *Lp,
             int width, int64_t correct, int64_t total)
{
  const VlDrawColors C = *cc;
  const Layout L = *Lp;
  double y = L.footer_y + L.font_h / 2.0;
  g_autofree char *overall = total > 0
    ? g_strdup_printf (_("overall %.1f%% of %lld images"), 100.0 * correct / total,
                       (long long) total)
    : g_strdup (_("no images"));
  const char *legend = _("share of the true class:  0%");
  int w1, w2, w3;
  vl_draw_text_size (small, legend, &w1, NULL);
  vl_draw_text_size (small, overall, &w3, NULL);
  vl_draw_text_size (small, "100%", &w2, NULL);
  double bar = 60;
  double total_w = w1 + 6 + bar + 4 + w2 + 18 + w3;
  double x = MAX (8, round (width / 2.0 - total_w / 2));
  vl_draw_set_source (cr, &C.fg, 0.7);
  vl_draw_text (cr, small, legend, x, y, 0.0, 0.5);
  x += w1 + 6;
  double rgb[3];
  cell_colour (&C, TRUE, rgb);
  cairo_pattern_t *g = cairo_pattern_create_linear (x, 0, x + bar, 0);
  cairo_pattern_add_color_stop_rgba (g, 0, rgb[0], rgb[1], rgb[2], 0.12);
  cairo_pattern_add_color_stop_rgba (g, 1, rgb[0], rgb[1], rgb[2], 1.0);
  cairo_rectangle (cr, x, y - 4, bar, 8);
  cairo_set_source (cr, g);
  cairo_fill (cr);
  cairo_pattern_destroy (g);
  x += bar + 4;
  vl_draw_set_source (cr, &C.fg, 0.7);
  vl_draw_text (cr, small, "100%", x, y, 0.0, 0.5);
  x += w2 + 18;
  vl_draw_set_source (cr, &C.fg, 0.9);
  vl_draw_text (cr, small, overall, x, y, 0.0, 0.5);
}

static void
draw_matrix (VlConfusionView *self, cairo_t *cr, int width, int height, gboolean hover,
             gboolean background)
{
  VlDrawColors C;
  vl_draw_colors_from_widget (GTK_WIDGET (self), &C);
  if (background)
    {
      vl_draw_set_source (cr, &C.bg, 1.0);
      cairo_paint (cr);
    }
  g_autoptr(PangoLayout) small = vl_draw_layout (cr, GTK_WIDGET (self), 0.85);
  g_autoptr(PangoLayout) font = vl_draw_layout (cr, GTK_WIDGET (self), 1.0);
  Layout L;
  compute_layout (self, small, width, height, &L);
  const int K = self->K;
  const double cs = L.cs;
  char buf[64];

  if (self->title != NULL)
    {
      vl_draw_set_source (cr, &C.fg, 0.9);
      vl_draw_text (cr, font, self->title, width / 2.0, L.title_y, 0.5, 0.0);
    }
  if (K == 0)
    {
      vl_draw_set_source (cr, &C.fg, 0.45);
      vl_draw_text (cr, font, _("No evaluation yet"), width / 2.0, height / 2.0, 0.5, 0.5);
      return;
    }

  /* axis titles */
  vl_draw_set_source (cr, &C.fg, 0.6);
  vl_draw_text (cr, small, _("predicted →"), L.mx + cs * K / 2, L.pred_y, 0.5, 0.0);
  cairo_save (cr);
  cairo_translate (cr, 10, L.my + cs * K / 2);
  cairo_rotate (cr, -G_PI / 2);
  vl_draw_text (cr, small, _("true →"), 0, 0, 0.5, 0.0);
  cairo_restore (cr);

  /* labels: skip some when the cells are smaller than the text */
  int every = cs >= L.font_h ? 1 : (int) ceil (L.font_h / cs);
  pango_layout_set_ellipsize (small, PANGO_ELLIPSIZE_END);
  pango_layout_set_width (small, MAX_LABEL_W * PANGO_SCALE);
  for (int k = 0; k < K; k += every)
    {
      gboolean hl = hover && (k == self->hover_t);
      vl_draw_set_source (cr, &C.fg, hl ? 1.0 : 0.8);
      vl_draw_text (cr, small, self->names[k], L.mx - 6, L.my + (k + 0.5) * cs, 1.0, 0.5);
    }
  for (int k = 0; k < K; k += every)
    {
      gboolean hl = hover && (k == self->hover_p);
      vl_draw_set_source (cr, &C.fg, hl ? 1.0 : 0.8);
      double cx = L.mx + (k + 0.5) * cs;
      if (L.cols_vertical)
        {
          cairo_save (cr);
          cairo_translate (cr, cx, L.my - 6);
          cairo_rotate (cr, -G_PI / 2);
          vl_draw_text (cr, small, self->names[k], 0, 0, 0.0, 0.5);
          cairo_restore (cr);
        }
      else
        vl_draw_text (cr, small, self->names[k], cx, L.my - 4, 0.5, 1.0);
    }
  pango_layout_set_ellipsize (small, PANGO_ELLIPSIZE_NONE);
  pango_layout_set_width (small, -1);

  /* cells */
  int64_t total = 0, correct = 0;
  for (int t = 0; t < K; t++)
    for (int p = 0; p < K; p++)
      {
        int64_t n = self->counts[(gsize) t * K + p];
        total += n;
        if (t == p)
          correct += n;
        double f = self->row_sum[t] > 0 ? (double) n / self->row_sum[t] : 0.0;
        double x = L.mx + p * cs, y = L.my + t * cs;
        double rgb[3];
        cell_colour (&C, t == p, rgb);
        cairo_rectangle (cr, x, y, cs, cs);
        vl_draw_set_source (cr, &C.fg, 0.04);
        cairo_fill (cr);
        if (n > 0)
          {
            cairo_rectangle (cr, x, y, cs, cs);
            cairo_set_source_rgba (cr, rgb[0], rgb[1], rgb[2], 0.12 + 0.88 * f);
            cairo_fill (cr);
          }
        if (cs >= 18)
          {
            g_snprintf (buf, sizeof buf, "%" G_GINT64_FORMAT, n);
            int tw, th;
            vl_draw_text_size (small, buf, &tw, &th);
            if (tw + 4 <= cs)
              {
                gboolean on_dark = n > 0 && 0.12 + 0.88 * f > 0.55;
                if (on_dark)
                  cairo_set_source_rgba (cr, 1, 1, 1, 1);
                else
                  vl_draw_set_source (cr, &C.fg, n > 0 ? 0.9 : 0.35);
                gboolean two = cs >= 2.6 * L.font_h && n > 0;
                vl_draw_text (cr, small, buf, x + cs / 2, y + cs / 2 - (two ? th * 0.45 : 0),
                              0.5, 0.5);
                if (two)
                  {
                    if (f > 0 && f < 0.01)
                      g_snprintf (buf, sizeof buf, "<1%%");
                    else
                      g_snprintf (buf, sizeof buf, "%.0f%%", f * 100);
                    cairo_save (cr);
                    if (on_dark)
                      cairo_set_source_rgba (cr, 1, 1, 1, 0.8);
                    else
                      vl_draw_set_source (cr, &C.fg, 0.6);
                    vl_draw_text (cr, small, buf, x + cs / 2, y + cs / 2 + th * 0.55, 0.5, 0.5);
                    cairo_restore (cr);
                  }
              }
          }
      }
  /* grid lines between cells */
  if (cs >= 6)
    {
      vl_draw_set_source (cr, &C.bg, background ? 1.0 : 0.0);
      if (!background)
        vl_draw_set_source (cr, &C.fg, 0.08);
      cairo_set_line_width (cr, 1.0);
      for (int k = 1; k < K; k++)
        {
          double x = round (L.mx + k * cs) + 0.5, y = round (L.my + k * cs) + 0.5;
          cairo_move_to (cr, x, L.my);
          cairo_line_to (cr, x, L.my + cs * K);
          cairo_move_to (cr, L.mx, y);
          cairo_line_to (cr, L.mx + cs * K, y);
        }
      cairo_stroke (cr);
    }
  vl_draw_set_source (cr, &C.fg, 0.3);
  cairo_rectangle (cr, round (L.mx) + 0.5, round (L.my) + 0.5, round (cs * K), round (cs * K));
  cairo_stroke (cr);

  /* per-class accuracy beside each row */
  vl_draw_set_source (cr, &C.fg, 0.6);
  vl_draw_text (cr, small, _("acc"), L.acc_x + 18, L.my - 4, 0.5, 1.0);
  for (int t = 0; t < K; t += every)
    {
      double y = L.my + t * cs, cy = y + cs / 2;
      double bar_h = MIN (cs * 0.5, 10);
      vl_draw_set_source (cr, &C.fg, 0.1);
      cairo_rectangle (cr, L.acc_x, cy - bar_h / 2, 36, bar_h);
      cairo_fill (cr);
      if (self->row_sum[t] > 0)
        {
          double a = (double) self->counts[(gsize) t * K + t] / self->row_sum[t];
          double rgb[3];
          cell_colour (&C, TRUE, rgb);
          cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
          cairo_rectangle (cr, L.acc_x, cy - bar_h / 2, 36 * a, bar_h);
          cairo_fill (cr);
          g_snprintf (buf, sizeof buf, "%.0f%%", a * 100);
        }
      else
        g_snprintf (buf, sizeof buf, "–");
      vl_draw_set_source (cr, &C.fg, 0.85);
      vl_draw_text (cr, small, buf, L.acc_x + 40, cy, 0.0, 0.5);
    }

  /* hover outline */
  if (hover && self->hover_t >= 0 && self->hover_p >= 0 && self->hover_t < K &&
      self->hover_p < K)
    {
      cairo_set_line_width (cr, 2.0);
      vl_draw_set_source (cr, &C.fg, 0.9);
      cairo_rectangle (cr, L.mx + self->hover_p * cs + 1, L.my + self->hover_t * cs + 1,
                       cs - 2, cs - 2);
      cairo_stroke (cr);
    }

  draw_footer (cr, &C, small, &L, width, correct, total);
}

/* ------------------------------------------------------------------ GtkWidget */

static void
vl_confusion_view_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  if (w <= 0 || h <= 0)
    return;
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  draw_matrix (VL_CONFUSION_VIEW (widget), cr, w, h, TRUE, FALSE);
  cairo_destroy (cr);
}

static void
natural_size (VlConfusionView *self, int *width, int *height)
{
  g_autoptr(PangoLayout) layout = vl_draw_layout (NULL, GTK_WIDGET (self), 0.85);
  int lw = max_label_width (self, layout), fh;
  vl_draw_text_size (layout, "Ag", NULL, &fh);
  int K = MAX (self->K, 2);
  int cs = K <= 10 ? 56 : K <= 30 ? 28 : 12;
  *width = 10 + fh + 6 + lw + 6 + cs * K + 8 + 36 + 4 + 40 + 10;
  *height = 10 + (self->title ? fh + 6 : 0) + fh + 4 + MAX (lw + 6, fh + 4) + cs * K + fh + 24;
}

static void
vl_confusion_view_measure (GtkWidget *widget, GtkOrientation orientation, int for_size,
                           int *minimum, int *natural, int *minimum_baseline,
                           int *natural_baseline)
{
  int w, h;
  natural_size (VL_CONFUSION_VIEW (widget), &w, &h);
  *minimum = orientation == GTK_ORIENTATION_HORIZONTAL ? 160 : 120;
  *natural = orientation == GTK_ORIENTATION_HORIZONTAL ? w : h;
}

static void
widget_layout (VlConfusionView *self, Layout *L)
{
  GtkWidget *w = GTK_WIDGET (self);
  g_autoptr(PangoLayout) small = vl_draw_layout (NULL, w, 0.85);
  compute_layout (self, small, gtk_widget_get_width (w), gtk_widget_get_height (w), L);
}

static gboolean
query_tooltip_cb (GtkWidget *widget, int x, int y, gboolean keyboard, GtkTooltip *tooltip,
                  VlConfusionView *self)
{
  int t, p;
  if (!vl_confusion_view_cell_at (self, x, y, &t, &p))
    return FALSE;
  int64_t n = self->counts[(gsize) t * self->K + p];
  double f = self->row_sum[t] > 0 ? 100.0 * n / self->row_sum[t] : 0.0;
  g_autofree char *text = NULL;
  if (t == p)
    text = g_strdup_printf (_("%s: %lld of %lld images right (%.1f%%)%s"), self->names[t],
                            (long long) n, (long long) self->row_sum[t], f,
                            n > 0 ? _("\nclick to see them") : "");
  else
    text = g_strdup_printf (_("true %s, predicted %s: %lld images (%.1f%% of %s)%s"),
                            self->names[t], self->names[p], (long long) n, f, self->names[t],
                            n > 0 ? _("\nclick to see them") : "");
  gtk_tooltip_set_text (tooltip, text);
  return TRUE;
}

static void
motion_cb (GtkEventControllerMotion *c, double x, double y, VlConfusionView *self)
{
  vl_confusion_view_hover_at (self, x, y);
}

static void
leave_cb (GtkEventControllerMotion *c, VlConfusionView *self)
{
  vl_confusion_view_hover_at (self, -1, -1);
}

static void
released_cb (GtkGestureClick *gesture, int n_press, double x, double y, VlConfusionView *self)
{
  if (vl_confusion_view_activate_at (self, x, y))
    gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
}

static void
vl_confusion_view_get_property (GObject *object, guint prop_id, GValue *value,
                                GParamSpec *pspec)
{
  VlConfusionView *self = VL_CONFUSION_VIEW (object);
  switch (prop_id)
    {
    case PROP_TITLE: g_value_set_string (value, self->title); break;
    case PROP_N_CLASSES: g_value_set_int (value, self->K); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_confusion_view_set_property (GObject *object, guint prop_id, const GValue *value,
                                GParamSpec *pspec)
{
  VlConfusionView *self = VL_CONFUSION_VIEW (object);
  switch (prop_id)
    {
    case PROP_TITLE: vl_confusion_view_set_title (self, g_value_get_string (value)); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_confusion_view_finalize (GObject *object)
{
  VlConfusionView *self = VL_CONFUSION_VIEW (object);
  g_free (self->counts);
  g_free (self->row_sum);
  g_strfreev (self->names);
  g_free (self->title);
  G_OBJECT_CLASS (vl_confusion_view_parent_class)->finalize (object);
}

static void
vl_confusion_view_class_init (VlConfusionViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->finalize = vl_confusion_view_finalize;
  object_class->get_property = vl_confusion_view_get_property;
  object_class->set_property = vl_confusion_view_set_property;
  widget_class->snapshot = vl_confusion_view_snapshot;
  widget_class->measure = vl_confusion_view_measure;

  props[PROP_TITLE] = g_param_spec_string ("title", NULL, NULL, NULL,
                                           G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY |
                                           G_PARAM_STATIC_STRINGS);
  props[PROP_N_CLASSES] = g_param_spec_int ("n-classes", NULL, NULL, 0, G_MAXINT, 0,
                                            G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  /**
   * VlConfusionView::cell-activated:
   * @true_class: the row
   * @predicted_class: the column
   *
   * A cell was clicked (whatever its count; see vl_confusion_view_get_count).
   */
  signals[SIGNAL_CELL_ACTIVATED] =
    g_signal_new ("cell-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0,
                  NULL, NULL, NULL, G_TYPE_NONE, 2, G_TYPE_INT, G_TYPE_INT);

  gtk_widget_class_set_css_name (widget_class, "vl-confusion-view");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
vl_confusion_view_init (VlConfusionView *self)
{
  self->hover_t = self->hover_p = -1;
  self->names = g_new0 (char *, 1);
  GtkWidget *w = GTK_WIDGET (self);
  GtkEventController *motion = gtk_event_controller_motion_new ();
  g_signal_connect (motion, "motion", G_CALLBACK (motion_cb), self);
  g_signal_connect (motion, "leave", G_CALLBACK (leave_cb), self);
  gtk_widget_add_controller (w, motion);
  GtkGesture *click = gtk_gesture_click_new ();
  gtk_gesture_single_set_button (GTK_GESTURE_SINGLE (click), GDK_BUTTON_PRIMARY);
  g_signal_connect (click, "released", G_CALLBACK (released_cb), self);
  gtk_widget_add_controller (w, GTK_EVENT_CONTROLLER (click));
  gtk_widget_set_has_tooltip (w, TRUE);
  g_signal_connect (w, "query-tooltip", G_CALLBACK (query_tooltip_cb), self);
}

/* ------------------------------------------------------------------ public API */

GtkWidget *
vl_confusion_view_new (void)
{
  return g_object_new (VL_TYPE_CONFUSION_VIEW, NULL);
}

void
vl_confusion_view_set_data (VlConfusionView *view, int n_classes, const int64_t *confusion,
                            const char *const *class_names)
{
  g_return_if_fail (VL_IS_CONFUSION_VIEW (view));
  g_return_if_fail (n_classes >= 0 && (n_classes == 0 || confusion != NULL));
  const int K = n_classes;
  g_clear_pointer (&view->counts, g_free);
  g_clear_pointer (&view->row_sum, g_free);
  g_strfreev (view->names);
  view->K = K;
  view->names = g_new0 (char *, K + 1);
  if (K > 0)
    {
      view->counts = g_memdup2 (confusion, sizeof (int64_t) * K * K);
      view->row_sum = g_new0 (int64_t, K);
      for (int t = 0; t < K; t++)
        for (int p = 0; p < K; p++)
          view->row_sum[t] += view->counts[(gsize) t * K + p];
      for (int k = 0; k < K; k++)
        view->names[k] = class_names != NULL && class_names[k] != NULL
                         ? g_strdup (class_names[k]) : g_strdup_printf ("%d", k);
    }
  view->hover_t = view->hover_p = -1;
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_N_CLASSES]);
  gtk_widget_queue_resize (GTK_WIDGET (view));
}

void
vl_confusion_view_set_result (VlConfusionView *view, const VlEvalResult *result,
                              const char *const *class_names)
{
  g_return_if_fail (VL_IS_CONFUSION_VIEW (view));
  g_return_if_fail (result != NULL);
  if (result->confusion == NULL)
    vl_confusion_view_set_data (view, 0, NULL, NULL);
  else
    vl_confusion_view_set_data (view, result->n_classes, result->confusion, class_names);
}

void
vl_confusion_view_set_title (VlConfusionView *view, const char *title)
{
  g_return_if_fail (VL_IS_CONFUSION_VIEW (view));
  if (g_strcmp0 (view->title, title) == 0)
    return;
  g_free (view->title);
  view->title = g_strdup (title);
  g_object_notify_by_pspec (G_OBJECT (view), props[PROP_TITLE]);
  gtk_widget_queue_resize (GTK_WIDGET (view));
}

int
vl_confusion_view_get_n_classes (VlConfusionView *view)
{
  g_return_val_if_fail (VL_IS_CONFUSION_VIEW (view), 0);
  return view->K;
}

int64_t
vl_confusion_view_get_count (VlConfusionView *view, int true_class, int predicted_class)
{
  g_return_val_if_fail (VL_IS_CONFUSION_VIEW (view), 0);
  g_return_val_if_fail (true_class >= 0 && true_class < view->K, 0);
  g_return_val_if_fail (predicted_class >= 0 && predicted_class < view->K, 0);
  return view->counts[(gsize) true_class * view->K + predicted_class];
}

double
vl_confusion_view_get_class_accuracy (VlConfusionView *view, int true_class)
{
  g_return_val_if_fail (VL_IS_CONFUSION_VIEW (view), NAN);
  g_return_val_if_fail (true_class >= 0 && true_class < view->K, NAN);
  if (view->row_sum[true_class] == 0)
    return NAN;
  return (double) view->counts[(gsize) true_class * view->K + true_class] /
         view->row_sum[true_class];
}

gboolean
vl_confusion_view_get_cell_rect (VlConfusionView *view, int true_class, int predicted_class,
                                 graphene_rect_t *rect)
{
  g_return_val_if_fail (VL_IS_CONFUSION_VIEW (view), FALSE);
  g_return_val_if_fail (rect != NULL, FALSE);
  if (true_class < 0 || true_class >= view->K || predicted_class < 0 ||
      predicted_class >= view->K)
    return FALSE;
  Layout L;
  widget_layout (view, &L);
  graphene_rect_init (rect, L.mx + predicted_class * L.cs, L.my + true_class * L.cs, L.cs,
                      L.cs);
  return TRUE;
}

gboolean
vl_confusion_view_cell_at (VlConfusionView *view, double x, double y, int *true_class,
                           int *predicted_class)
{
  g_return_val_if_fail (VL_IS_CONFUSION_VIEW (view), FALSE);
  Layout L;
  widget_layout (view, &L);
  return hit_test (&L, x, y, true_class, predicted_class);
}

gboolean
vl_confusion_view_activate_at (VlConfusionView *view, double x, double y)
{
  g_return_val_if_fail (VL_IS_CONFUSION_VIEW (view), FALSE);
  int t, p;
  if (!vl_confusion_view_cell_at (view, x, y, &t, &p))
    return FALSE;
  g_signal_emit (view, signals[SIGNAL_CELL_ACTIVATED], 0, t, p);
  return TRUE;
}

void
vl_confusion_view_hover_at (VlConfusionView *view, double x, double y)
{
  g_return_if_fail (VL_IS_CONFUSION_VIEW (view));
  int t = -1, p = -1;
  if (x >= 0 && y >= 0 && !vl_confusion_view_cell_at (view, x, y, &t, &p))
    t = p = -1;
  if (t == view->hover_t && p == view->hover_p)
    return;
  view->hover_t = t;
  view->hover_p = p;
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

gboolean
vl_confusion_view_export_png (VlConfusionView *view, const char *path, int width, int height,
                              GError **error)
{
  g_return_val_if_fail (VL_IS_CONFUSION_VIEW (view), FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  if (width <= 0 || height <= 0)
    natural_size (view, &width, &height);
  if (width > 16384 || height > 16384)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s: image size %dx%d out of range (1 to 16384)", path, width, height);
      return FALSE;
    }
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  cairo_t *cr = cairo_create (s);
  draw_matrix (view, cr, width, height, FALSE, TRUE);
  cairo_destroy (cr);
  gboolean ok = vl_draw_write_png (s, path, error);
  cairo_surface_destroy (s);
  return ok;
}

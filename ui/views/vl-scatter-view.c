/* vl-scatter-view.c: predicted against true values (see vl-scatter-view.h). */
#include "vl-scatter-view.h"
#include <glib/gi18n.h>
#include "vl-colormap.h"
#include "vl-task-view.h"

#include <math.h>

#define PICK_RADIUS 8.0

struct _VlScatterView {
  GtkWidget  parent_instance;
  int        n;
  float     *truth, *pred;   /* (n) */
  char     **names;          /* (n + 1) or NULL */
  char      *target;
  double     mae, rmse, r2;
  double     lo, hi;         /* the axes' common range */
  int        hovered;
  GdkTexture *thumb;
  int        thumb_index;
  /* the plot's rectangle at the last size */
  double     px, py, pw, ph;
};

static void vl_scatter_view_task_view_init (VlTaskViewInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (VlScatterView, vl_scatter_view, GTK_TYPE_WIDGET,
                               G_IMPLEMENT_INTERFACE (VL_TYPE_TASK_VIEW,
                                                      vl_scatter_view_task_view_init))

enum { SIGNAL_POINT_HOVERED, N_SIGNALS };
static guint signals[N_SIGNALS];

static gboolean
applies_to (VlTaskView *view, VlTaskKind task)
{
  return task == VL_TASK_REGRESS;
}

static void
vl_scatter_view_task_view_init (VlTaskViewInterface *iface)
{
  iface->applies_to = applies_to;
}

/* The plot's rectangle for a widget of width x height: square, with room for the axes. */
static void
layout (VlScatterView *self, int width, int height)
{
  const double left = 56, bottom = 40, top = 12, right = 16;
  double side = MAX (10, MIN (width - left - right, height - top - bottom));
  self->pw = self->ph = side;
  self->px = left + MAX (0, (width - left - right - side) / 2);
  self->py = top;
}

static double
to_x (VlScatterView *self, double v)
{
  return self->px + (v - self->lo) / (self->hi - self->lo) * self->pw;
}

static double
to_y (VlScatterView *self, double v)
{
  return self->py + self->ph - (v - self->lo) / (self->hi - self->lo) * self->ph;
}

static double
nice_step (double span, int max_ticks)
{
  double raw = span / MAX (max_ticks, 1), mag = pow (10, floor (log10 (raw)));
  double f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

static void
draw (VlScatterView *self, cairo_t *cr, int width, int height)
{
  VlDrawColors colors;
  vl_draw_colors_from_widget (GTK_WIDGET (self), &colors);
  const GdkRGBA *fg = &colors.fg;
  g_autoptr(PangoLayout) small = vl_draw_layout (cr, GTK_WIDGET (self), 0.85);
  layout (self, width, height);
  if (self->n == 0)
    {
      vl_draw_set_source (cr, fg, 0.55);
      vl_draw_text (cr, small, _("No predictions to plot yet.\nThey arrive with each epoch of "
                                 "a regression run;\nan opened run folder keeps only its metrics."),
                    width / 2.0, height / 2.0, 0.5, 0.5);
      return;
    }
  char buf[64];
  /* grid and ticks */
  double st = nice_step (self->hi - self->lo, MAX (3, (int) (self->pw / 45)));
  cairo_set_line_width (cr, 1);
  for (double v = ceil (self->lo / st) * st; v <= self->hi + 1e-9 * st; v += st)
    {
      double x = round (to_x (self, v)) + 0.5, y = round (to_y (self, v)) + 0.5;
      vl_draw_set_source (cr, fg, 0.08);
      cairo_move_to (cr, x, self->py);
      cairo_line_to (cr, x, self->py + self->ph);
      cairo_move_to (cr, self->px, y);
      cairo_line_to (cr, self->px + self->pw, y);
      cairo_stroke (cr);
      g_snprintf (buf, sizeof buf, "%g", fabs (v) < 1e-9 * st ? 0.0 : v);
      vl_draw_set_source (cr, fg, 0.75);
      vl_draw_text (cr, small, buf, x, self->py + self->ph + 4, 0.5, 0.0);
      vl_draw_text (cr, small, buf, self->px - 6, y, 1.0, 0.5);
    }
  vl_draw_set_source (cr, fg, 0.3);
  cairo_rectangle (cr, round (self->px) + 0.5, round (self->py) + 0.5, round (self->pw),
                   round (self->ph));
  cairo_stroke (cr);
  g_autofree char *xt = g_strdup_printf ("true %s", self->target ? self->target : "value");
  g_autofree char *yt = g_strdup_printf ("predicted %s", self->target ? self->target : "value");
  vl_draw_set_source (cr, fg, 0.6);
  vl_draw_text (cr, small, xt, self->px + self->pw / 2, self->py + self->ph + 20, 0.5, 0.0);
  cairo_save (cr);
  cairo_translate (cr, 10, self->py + self->ph / 2);
  cairo_rotate (cr, -G_PI / 2);
  vl_draw_text (cr, small, yt, 0, 0, 0.5, 0.0);
  cairo_restore (cr);

  cairo_save (cr);
  cairo_rectangle (cr, self->px, self->py, self->pw, self->ph);
  cairo_clip (cr);
  /* y = x */
  static const double dash[] = { 5, 4 };
  cairo_set_dash (cr, dash, 2, 0);
  vl_draw_set_source (cr, fg, 0.5);
  cairo_move_to (cr, to_x (self, self->lo), to_y (self, self->lo));
  cairo_line_to (cr, to_x (self, self->hi), to_y (self, self->hi));
  cairo_stroke (cr);
  cairo_set_dash (cr, NULL, 0, 0);
  /* the points, coloured by |error| over the largest one */
  double worst = 0;
  for (int i = 0; i < self->n; i++)
    worst = MAX (worst, fabs ((double) self->pred[i] - self->truth[i]));
  const double r = self->n > 2000 ? 1.6 : self->n > 300 ? 2.4 : 3.2;
  for (int i = 0; i < self->n; i++)
    {
      double rgb[3];
      vl_colormap_map (VL_COLORMAP_VIRIDIS,
                       worst > 0 ? fabs ((double) self->pred[i] - self->truth[i]) / worst : 0,
                       rgb);
      cairo_set_source_rgba (cr, rgb[0], rgb[1], rgb[2], 0.8);
      cairo_arc (cr, to_x (self, self->truth[i]), to_y (self, self->pred[i]), r, 0, 2 * G_PI);
      cairo_fill (cr);
    }
  if (self->hovered >= 0)
    {
      double x = to_x (self, self->truth[self->hovered]), y = to_y (self, self->pred[self->hovered]);
      vl_draw_set_source (cr, fg, 0.9);
      cairo_set_line_width (cr, 2);
      cairo_arc (cr, x, y, r + 4, 0, 2 * G_PI);
      cairo_stroke (cr);
      /* its error, as a vertical stroke to the diagonal */
      vl_draw_set_source (cr, fg, 0.5);
      cairo_set_line_width (cr, 1);
      cairo_move_to (cr, x, y);
      cairo_line_to (cr, x, to_y (self, self->truth[self->hovered]));
      cairo_stroke (cr);
    }
  cairo_restore (cr);

  /* the metrics, top left inside the plot */
  g_autofree char *m = g_strdup_printf (_("MAE %.4g · RMSE %.4g · R² %.3f · %d images"), self->mae,
                                        self->rmse, self->r2, self->n);
  vl_draw_set_source (cr, fg, 0.85);
  vl_draw_text (cr, small, m, self->px + 8, self->py + 6, 0.0, 0.0);

  /* the hovered point's read-out (and its image), bottom right inside the plot */
  if (self->hovered >= 0)
    {
      int i = self->hovered;
      g_autofree char *base = self->names && self->names[i]
                              ? g_path_get_basename (self->names[i]) : g_strdup_printf ("#%d", i);
      g_autofree char *t = g_strdup_printf (_("%s\ntrue %.4g · predicted %.4g\nerror %+.4g"), base,
                                            self->truth[i], self->pred[i],
                                            (double) self->pred[i] - self->truth[i]);
      int tw, th;
      vl_draw_text_size (small, t, &tw, &th);
      const double thumb = self->thumb && self->thumb_index == i ? 72 : 0;
      double bw = tw + 16 + (thumb > 0 ? thumb + 8 : 0), bh = MAX (th, thumb) + 12;
      double bx = self->px + self->pw - bw - 6, by = self->py + self->ph - bh - 6;
      cairo_set_source_rgba (cr, colors.bg.red, colors.bg.green, colors.bg.blue, 0.92);
      cairo_rectangle (cr, bx, by, bw, bh);
      cairo_fill (cr);
      vl_draw_set_source (cr, fg, 0.3);
      cairo_rectangle (cr, bx + 0.5, by + 0.5, bw - 1, bh - 1);
      cairo_stroke (cr);
      if (thumb > 0)
        {
          int w = gdk_texture_get_width (self->thumb), h = gdk_texture_get_height (self->thumb);
          g_autoptr(GBytes) bytes = NULL;
          cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, w, h);
          gdk_texture_download (self->thumb, cairo_image_surface_get_data (s),
                                cairo_image_surface_get_stride (s));
          cairo_surface_mark_dirty (s);
          cairo_save (cr);
          cairo_translate (cr, bx + 6, by + 6);
          cairo_scale (cr, thumb / w, thumb / h);
          cairo_set_source_surface (cr, s, 0, 0);
          cairo_paint (cr);
          cairo_restore (cr);
          cairo_surface_destroy (s);
        }
      vl_draw_set_source (cr, fg, 0.95);
      vl_draw_text (cr, small, t, bx + 8 + (thumb > 0 ? thumb + 8 : 0), by + 6, 0.0, 0.0);
    }
}

static void
snapshot (GtkWidget *widget, GtkSnapshot *snap)
{
  VlScatterView *self = VL_SCATTER_VIEW (widget);
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  if (w <= 0 || h <= 0)
    return;
  cairo_t *cr = gtk_snapshot_append_cairo (snap, &GRAPHENE_RECT_INIT (0, 0, w, h));
  draw (self, cr, w, h);
  cairo_destroy (cr);
}

void
vl_scatter_view_hover_at (VlScatterView *self, double x, double y)
{
  g_return_if_fail (VL_IS_SCATTER_VIEW (self));
  int best = -1;
  if (x >= 0 && self->n > 0)
    {
      layout (self, gtk_widget_get_width (GTK_WIDGET (self)),
              gtk_widget_get_height (GTK_WIDGET (self)));
      double bd = PICK_RADIUS * PICK_RADIUS;
      for (int i = 0; i < self->n; i++)
        {
          double dx = to_x (self, self->truth[i]) - x, dy = to_y (self, self->pred[i]) - y;
          if (dx * dx + dy * dy <= bd)
            {
              bd = dx * dx + dy * dy;
              best = i;
            }
        }
    }
  if (best == self->hovered)
    return;
  self->hovered = best;
  gtk_widget_queue_draw (GTK_WIDGET (self));
  g_signal_emit (self, signals[SIGNAL_POINT_HOVERED], 0, best);
}

static void
motion_cb (GtkEventControllerMotion *c, double x, double y, VlScatterView *self)
{
  vl_scatter_view_hover_at (self, x, y);
}

static void
leave_cb (GtkEventControllerMotion *c, VlScatterView *self)
{
  vl_scatter_view_hover_at (self, -1, -1);
}

void
vl_scatter_view_clear (VlScatterView *self)
{
  g_return_if_fail (VL_IS_SCATTER_VIEW (self));
  g_clear_pointer (&self->truth, g_free);
  g_clear_pointer (&self->pred, g_free);
  g_clear_pointer (&self->names, g_strfreev);
  g_clear_pointer (&self->target, g_free);
  g_clear_object (&self->thumb);
  self->n = 0;
  self->hovered = -1;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

void
vl_scatter_view_set_result (VlScatterView *self, const VlRegressResult *r, int target,
                            const char *target_name, const char *const *names)
{
  g_return_if_fail (VL_IS_SCATTER_VIEW (self));
  g_return_if_fail (r != NULL && target >= 0 && (r->n == 0 || target < r->n_values));
  vl_scatter_view_clear (self);
  const int N = r->n_values;
  self->n = (int) r->n;
  self->truth = g_new (float, MAX (self->n, 1));
  self->pred = g_new (float, MAX (self->n, 1));
  double lo = INFINITY, hi = -INFINITY;
  for (int i = 0; i < self->n; i++)
    {
      self->truth[i] = r->truth[(gsize) i * N + target];
      self->pred[i] = r->pred[(gsize) i * N + target];
      lo = MIN (lo, MIN (self->truth[i], self->pred[i]));
      hi = MAX (hi, MAX (self->truth[i], self->pred[i]));
    }
  if (!(hi > lo))
    {
      lo = isfinite (lo) ? lo - 1 : 0;
      hi = lo + 2;
    }
  double margin = 0.04 * (hi - lo);
  self->lo = lo - margin;
  self->hi = hi + margin;
  if (names)
    {
      self->names = g_new0 (char *, self->n + 1);
      for (int i = 0; i < self->n; i++)
        self->names[i] = g_strdup (names[i]);
    }
  self->target = g_strdup (target_name);
  self->mae = r->n ? r->mae[target] : NAN;
  self->rmse = r->n ? r->rmse[target] : NAN;
  self->r2 = r->n ? r->r2[target] : NAN;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

int
vl_scatter_view_get_n_points (VlScatterView *self)
{
  g_return_val_if_fail (VL_IS_SCATTER_VIEW (self), 0);
  return self->n;
}

int
vl_scatter_view_get_hovered (VlScatterView *self)
{
  g_return_val_if_fail (VL_IS_SCATTER_VIEW (self), -1);
  return self->hovered;
}

void
vl_scatter_view_set_thumbnail (VlScatterView *self, int index, GdkTexture *texture)
{
  g_return_if_fail (VL_IS_SCATTER_VIEW (self));
  g_set_object (&self->thumb, texture);
  self->thumb_index = index;
  gtk_widget_queue_draw (GTK_WIDGET (self));
}

gboolean
vl_scatter_view_point_position (VlScatterView *self, int index, double *x, double *y)
{
  g_return_val_if_fail (VL_IS_SCATTER_VIEW (self), FALSE);
  if (index < 0 || index >= self->n)
    return FALSE;
  layout (self, gtk_widget_get_width (GTK_WIDGET (self)),
          gtk_widget_get_height (GTK_WIDGET (self)));
  *x = to_x (self, self->truth[index]);
  *y = to_y (self, self->pred[index]);
  return TRUE;
}

static void
measure (GtkWidget *widget, GtkOrientation o, int for_size, int *min, int *nat, int *min_base,
         int *nat_base)
{
  *min = 160;
  *nat = 420;
}

static void
finalize (GObject *object)
{
  VlScatterView *self = VL_SCATTER_VIEW (object);
  g_free (self->truth);
  g_free (self->pred);
  g_strfreev (self->names);
  g_free (self->target);
  g_clear_object (&self->thumb);
  G_OBJECT_CLASS (vl_scatter_view_parent_class)->finalize (object);
}

static void
vl_scatter_view_class_init (VlScatterViewClass *klass)
{
  GObjectClass *oc = G_OBJECT_CLASS (klass);
  GtkWidgetClass *wc = GTK_WIDGET_CLASS (klass);
  oc->finalize = finalize;
  wc->snapshot = snapshot;
  wc->measure = measure;
  gtk_widget_class_set_css_name (wc, "vl-scatter-view");
  /* ::point-hovered (index): the pointer came over point index, or left the points (-1) */
  signals[SIGNAL_POINT_HOVERED] = g_signal_new ("point-hovered", G_TYPE_FROM_CLASS (klass),
                                                G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                                                G_TYPE_NONE, 1, G_TYPE_INT);
}

static void
vl_scatter_view_init (VlScatterView *self)
{
  self->hovered = -1;
  self->thumb_index = -1;
  GtkEventController *motion = gtk_event_controller_motion_new ();
  g_signal_connect (motion, "motion", G_CALLBACK (motion_cb), self);
  g_signal_connect (motion, "leave", G_CALLBACK (leave_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self), motion);
  gtk_widget_set_hexpand (GTK_WIDGET (self), TRUE);
  gtk_widget_set_vexpand (GTK_WIDGET (self), TRUE);
}

GtkWidget *
vl_scatter_view_new (void)
{
  return g_object_new (VL_TYPE_SCATTER_VIEW, NULL);
}

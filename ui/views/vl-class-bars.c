/* vl-class-bars.c: a score per class as bars (see vl-class-bars.h). */
#include "vl-class-bars.h"
#include "vl-draw-boxes.h"   /* vl_draw_class_color */
#include "vl-colormap.h"

#include <glib/gi18n.h>
#include <math.h>

#define ROW 22

struct _VlClassBars {
  GtkWidget parent_instance;
  char     *title;
  char    **names;
  double   *values;
  int       n, offset;
  int       n_names;
  double    mean;
};

G_DEFINE_FINAL_TYPE (VlClassBars, vl_class_bars, GTK_TYPE_WIDGET)

static gboolean
has_value (double v)
{
  return isfinite (v) && v >= 0;
}

static void
draw (VlClassBars *self, cairo_t *cr, int width, int height)
{
  VlDrawColors colors;
  vl_draw_colors_from_widget (GTK_WIDGET (self), &colors);
  g_autoptr(PangoLayout) font = vl_draw_layout (cr, GTK_WIDGET (self), 0.85);
  if (self->n == 0)
    {
      vl_draw_set_source (cr, &colors.fg, 0.55);
      vl_draw_text (cr, font, _("No scores yet: they arrive with each epoch."), width / 2.0,
                    height / 2.0, 0.5, 0.5);
      return;
    }
  /* the widest name sets the bars' left edge (at most a third of the width) */
  int name_w = 0, tw, th;
  char buf[64];
  for (int i = 0; i < self->n; i++)
    {
      const char *name = i < self->n_names ? self->names[i] : NULL;
      if (name == NULL)
        g_snprintf (buf, sizeof buf, _("class %d"), i);
      vl_draw_text_size (font, name ? name : buf, &tw, &th);
      name_w = MAX (name_w, tw);
    }
  name_w = MIN (name_w, width / 3);
  const double x0 = 8 + name_w + 8, x1 = width - 8 - 48, top = ROW + 4;
  const double span = MAX (x1 - x0, 10);

  g_autofree char *title = isfinite (self->mean)
    ? g_strdup_printf (_("%s · mean %.3f"), self->title ? self->title : "", self->mean)
    : g_strdup (self->title ? self->title : "");
  vl_draw_set_source (cr, &colors.fg, 0.85);
  vl_draw_text (cr, font, title, 8, 4, 0.0, 0.0);

  for (int i = 0; i < self->n; i++)
    {
      const double y = top + i * ROW;
      const char *name = i < self->n_names ? self->names[i] : NULL;
      if (name == NULL)
        g_snprintf (buf, sizeof buf, _("class %d"), i);
      vl_draw_set_source (cr, &colors.fg, 0.8);
      cairo_save (cr);
      cairo_rectangle (cr, 0, y, 8 + name_w, ROW);
      cairo_clip (cr);
      vl_draw_text (cr, font, name ? name : buf, 8 + name_w, y + ROW / 2.0, 1.0, 0.5);
      cairo_restore (cr);
      /* the track, then the bar */
      vl_draw_set_source (cr, &colors.fg, 0.07);
      cairo_rectangle (cr, x0, y + 4, span, ROW - 8);
      cairo_fill (cr);
      const double v = self->values[i];
      if (has_value (v))
        {
          const int c = i + self->offset;
          double rgb[3] = { 0.6, 0.6, 0.6 };
          if (c >= 0)
            vl_draw_class_color (c, rgb);
          cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
          cairo_rectangle (cr, x0, y + 4, span * CLAMP (v, 0.0, 1.0), ROW - 8);
          cairo_fill (cr);
          g_snprintf (buf, sizeof buf, "%.3f", v);
        }
      else
        g_strlcpy (buf, "—", sizeof buf);
      vl_draw_set_source (cr, &colors.fg, 0.85);
      vl_draw_text (cr, font, buf, x1 + 6, y + ROW / 2.0, 0.0, 0.5);
    }
  if (isfinite (self->mean))
    {
      static const double dash[] = { 4, 3 };
      const double x = round (x0 + span * CLAMP (self->mean, 0.0, 1.0)) + 0.5;
      cairo_set_dash (cr, dash, 2, 0);
      cairo_set_line_width (cr, 1);
      vl_draw_set_source (cr, &colors.fg, 0.6);
      cairo_move_to (cr, x, top);
      cairo_line_to (cr, x, top + self->n * ROW);
      cairo_stroke (cr);
    }
}

static void
vl_class_bars_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  const int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  draw (VL_CLASS_BARS (widget), cr, w, h);
  cairo_destroy (cr);
}

static void
vl_class_bars_measure (GtkWidget *widget, GtkOrientation orientation, int for_size,
                       int *minimum, int *natural, int *minimum_baseline, int *natural_baseline)
{
  VlClassBars *self = VL_CLASS_BARS (widget);
  if (orientation == GTK_ORIENTATION_HORIZONTAL)
    {
      *minimum = 160;
      *natural = 320;
    }
  else
    *minimum = *natural = ROW + 8 + MAX (self->n, 2) * ROW;
}

static void
vl_class_bars_finalize (GObject *object)
{
  VlClassBars *self = VL_CLASS_BARS (object);
  vl_class_bars_clear (self);
  G_OBJECT_CLASS (vl_class_bars_parent_class)->finalize (object);
}

static void
vl_class_bars_class_init (VlClassBarsClass *klass)
{
  G_OBJECT_CLASS (klass)->finalize = vl_class_bars_finalize;
  GTK_WIDGET_CLASS (klass)->snapshot = vl_class_bars_snapshot;
  GTK_WIDGET_CLASS (klass)->measure = vl_class_bars_measure;
  gtk_widget_class_set_accessible_role (GTK_WIDGET_CLASS (klass), GTK_ACCESSIBLE_ROLE_IMG);
}

static void
vl_class_bars_init (VlClassBars *self)
{
  self->mean = NAN;
}

GtkWidget *
vl_class_bars_new (void)
{
  return g_object_new (VL_TYPE_CLASS_BARS, NULL);
}

void
vl_class_bars_set (VlClassBars *bars, const char *title, const char *const *names,
                   const double *values, int n, int colour_offset)
{
  g_return_if_fail (VL_IS_CLASS_BARS (bars));
  vl_class_bars_clear (bars);
  bars->title = g_strdup (title);
  bars->names = g_strdupv ((char **) names);
  bars->n_names = names ? (int) g_strv_length (bars->names) : 0;
  bars->values = g_memdup2 (values, sizeof (double) * MAX (n, 0));
  bars->n = MAX (n, 0);
  bars->offset = colour_offset;
  double sum = 0;
  int k = 0;
  for (int i = 0; i < bars->n; i++)
    if (has_value (values[i]))
      {
        sum += values[i];
        k++;
      }
  bars->mean = k ? sum / k : NAN;
  gtk_widget_queue_resize (GTK_WIDGET (bars));
}

void
vl_class_bars_clear (VlClassBars *bars)
{
  g_return_if_fail (VL_IS_CLASS_BARS (bars));
  g_clear_pointer (&bars->title, g_free);
  g_clear_pointer (&bars->names, g_strfreev);
  g_clear_pointer (&bars->values, g_free);
  bars->n = bars->n_names = 0;
  bars->mean = NAN;
  gtk_widget_queue_resize (GTK_WIDGET (bars));
}

int
vl_class_bars_get_n (VlClassBars *bars)
{
  g_return_val_if_fail (VL_IS_CLASS_BARS (bars), 0);
  return bars->n;
}

double
vl_class_bars_get_mean (VlClassBars *bars)
{
  g_return_val_if_fail (VL_IS_CLASS_BARS (bars), NAN);
  return bars->mean;
}

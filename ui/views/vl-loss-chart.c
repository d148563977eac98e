/* vl-loss-chart.c: training curves, drawn with cairo in snapshot.
 *
 * Layout, top to bottom: the legend row, the plot (loss on the left axis, accuracy on the
 * right), the gradient-norm strip (sharing the plot's x axis), the step tick labels. */
#include "vl-loss-chart.h"
#include <glib/gi18n.h>

#include <math.h>
#include <string.h>

#include "vl-atomic.h"
#include "vl-colormap.h"

typedef struct {
  int64_t step;
  int     epoch;
  float   loss;
  float   smooth;       /* bias-corrected EMA */
  float   lr;
  float   grad_norm;
} Point;

typedef struct {
  int     epoch;
  int64_t step;
  double  train_loss, val_loss;
  double  top1, top5;   /* classification; for a regression epoch: R² and MAE (the right
                         * axis plots top1 either way: accuracy, or R²) */
  gboolean best;
} Epoch;

typedef struct {
  char   *label;
  GArray *points;       /* Point, by step */
  GArray *epochs;       /* Epoch, by epoch */
} Run;

struct _VlLossChart {
  GtkWidget  parent_instance;

  Run       *cur;
  GPtrArray *history;         /* Run *, oldest first */
  int        n_runs_made;     /* for the default labels */

  /* gradient strip of the current run */
  char     **group_names;
  int        n_groups;
  GArray    *norm_steps;      /* int64_t */
  GArray    *norms;           /* double, n_groups per step */
  double     norm_lo, norm_hi;   /* log10 range over the positive norms */
  gboolean   norm_any;
  cairo_surface_t *strip;     /* cache: one pixel per (column, group) */
  double    *strip_max;       /* (n_groups, strip_cols) scratch for it */
  int        strip_cols;
  gboolean   strip_dirty;
  double     strip_x0, strip_x1;

  gboolean   log_scale;
  double     smoothing;
  VlTaskKind task;            /* of the latest epoch added: what the right axis shows */
  int64_t    total_steps;

  gboolean   hovering;
  double     hover_x, hover_y;
};

G_DEFINE_FINAL_TYPE (VlLossChart, vl_loss_chart, GTK_TYPE_WIDGET)

/* What the right axis plots for the latest epoch's task. */
static const char *
metric_label (VlTaskKind task)
{
  switch (task)
    {
    case VL_TASK_REGRESS: return _("val R²");
    case VL_TASK_SEGMENT: return _("val mIoU");
    case VL_TASK_DETECT:  return _("val AP50");
    default:              return _("val accuracy");
    }
}

enum {
  PROP_0,
  PROP_LOG_SCALE,
  PROP_SMOOTHING,
  PROP_TOTAL_STEPS,
  PROP_N_POINTS,
  N_PROPS
};
static GParamSpec *props[N_PROPS];

/* ------------------------------------------------------------------ runs */

static Run *
run_new (const char *label)
{
  Run *r = g_new0 (Run, 1);
  r->label = g_strdup (label);
  r->points = g_array_new (FALSE, FALSE, sizeof (Point));
  r->epochs = g_array_new (FALSE, FALSE, sizeof (Epoch));
  return r;
}

static void
run_free (gpointer data)
{
  Run *r = data;
  g_free (r->label);
  g_array_unref (r->points);
  g_array_unref (r->epochs);
  g_free (r);
}

/* The bias-corrected EMA (as TensorBoard smooths): s_n = b s_{n-1} + (1 - b) x_n,
 * shown as s_n / (1 - b^n), so the first points are not pulled towards zero. */
static void
run_smooth_from (Run *r, guint from, double beta)
{
  double s = 0.0, w = 0.0;
  if (from > 0)
    {
      /* recover the running state: smooth = s / w with w = 1 - b^n */
      w = 1.0 - pow (beta, from);
      s = g_array_index (r->points, Point, from - 1).smooth * w;
    }
  for (guint i = from; i < r->points->len; i++)
    {
      Point *p = &g_array_index (r->points, Point, i);
      if (!isfinite (p->loss))
        {
          p->smooth = i > 0 ? g_array_index (r->points, Point, i - 1).smooth : NAN;
          continue;
        }
      s = beta * s + (1.0 - beta) * p->loss;
      w = beta * w + (1.0 - beta);
      p->smooth = (float) (s / w);
    }
}

static gboolean
run_is_empty (const Run *r)
{
  return r->points->len == 0 && r->epochs->len == 0;
}

/* ------------------------------------------------------------------ scales */

typedef struct {
  double x0, x1;               /* data (steps) */
  double px, pw;               /* pixels */
  double y0, y1;               /* loss (log10 of it on a log scale) */
  double py, ph;
  gboolean log;
  double a0, a1;               /* accuracy axis */
} Scale;

static inline double
sx (const Scale *s, double step)
{
  return s->px + (step - s->x0) / (s->x1 - s->x0) * s->pw;
}

static inline double
sy (const Scale *s, double v)
{
  if (s->log)
    v = v > 0 ? log10 (v) : -INFINITY;
  return s->py + s->ph - (v - s->y0) / (s->y1 - s->y0) * s->ph;
}

static inline double
sa (const Scale *s, double acc)
{
  return s->py + s->ph - (acc - s->a0) / (s->a1 - s->a0) * s->ph;
}

/* A "nice" step (1, 2, 5 x 10^k) for about `n` intervals over range. */
static double
nice_step (double range, int n)
{
  if (!(range > 0))
    return 1.0;
  double raw = range / MAX (n, 1);
  double mag = pow (10.0, floor (log10 (raw)));
  double f = raw / mag;
  double nf = f < 1.5 ? 1 : f < 3 ? 2 : f < 7 ? 5 : 10;
  return nf * mag;
}

static int
decimals_for (double step)
{
  if (step >= 1)
    return 0;
  return (int) ceil (-log10 (step) - 1e-9);
}

static void
format_steps (char *buf, gsize n, double v)
{
  if (fabs (v) >= 10000 && fmod (v, 1000) == 0)
    g_snprintf (buf, n, "%.0fk", v / 1000);
  else
    g_snprintf (buf, n, "%.0f", v);
}

typedef struct {
  double lo, hi;     /* loss range over everything shown (linear values) */
  double min_pos;    /* smallest positive loss */
  double acc_lo;
  gboolean any_loss, any_acc;
  int64_t max_step;
} Extent;

static void
extent_add_loss (Extent *e, double v)
{
  if (!isfinite (v))
    return;
  if (!e->any_loss)
    e->lo = e->hi = v;
  e->lo = MIN (e->lo, v);
  e->hi = MAX (e->hi, v);
  if (v > 0 && (v < e->min_pos || e->min_pos == 0))
    e->min_pos = v;
  e->any_loss = TRUE;
}

static void
extent_add_run (Extent *e, const Run *r, gboolean raw)
{
  for (guint i = 0; i < r->points->len; i++)
    {
      const Point *p = &g_array_index (r->points, Point, i);
      extent_add_loss (e, raw ? p->loss : p->smooth);
      e->max_step = MAX (e->max_step, p->step);
    }
  for (guint i = 0; i < r->epochs->len; i++)
    {
      const Epoch *ep = &g_array_index (r->epochs, Epoch, i);
      extent_add_loss (e, ep->val_loss);
      e->max_step = MAX (e->max_step, ep->step);
      if (raw && isfinite (ep->top1))
        {
          e->acc_lo = e->any_acc ? MIN (e->acc_lo, ep->top1) : ep->top1;
          e->any_acc = TRUE;
        }
    }
}

static void
compute_scale (VlLossChart *self, Scale *s)
{
  Extent e = { 0 };
  extent_add_run (&e, self->cur, TRUE);
  for (guint i = 0; i < self->history->len; i++)
    extent_add_run (&e, g_ptr_array_index (self->history, i), FALSE);
  if (self->norm_steps->len > 0)
    e.max_step = MAX (e.max_step, g_array_index (self->norm_steps, int64_t,
                                                 self->norm_steps->len - 1));

  s->x0 = 0;
  s->x1 = MAX ((double) MAX (e.max_step, self->total_steps), 1.0);
  s->log = self->log_scale;
  if (!e.any_loss)
    {
      e.lo = 0;
      e.hi = 1;
      e.min_pos = 0.1;
    }
  if (s->log)
    {
      double lo = log10 (e.min_pos > 0 ? e.min_pos : 0.01);
      double hi = log10 (MAX (e.hi, e.min_pos > 0 ? e.min_pos : 0.01));
      /* at least a factor of 3, and a little room above and below */
      if (hi - lo < log10 (3.0))
        {
          double mid = (hi + lo) / 2;
          lo = mid - log10 (3.0) / 2;
          hi = mid + log10 (3.0) / 2;
        }
      double pad = (hi - lo) * 0.05;
      s->y0 = lo - pad;
      s->y1 = hi + pad;
    }
  else
    {
      double lo = MIN (0.0, e.lo), hi = e.hi > lo ? e.hi : lo + 1;
      double st = nice_step (hi - lo, 5);
      s->y0 = floor (lo / st) * st;
      s->y1 = ceil (hi / st) * st;
      if (s->y1 <= s->y0)
        s->y1 = s->y0 + st;
    }
  s->a1 = 1.0;
  s->a0 = 0.0;
  if (e.any_acc)
    s->a0 = MAX (0.0, floor ((e.acc_lo - 0.02) * 10.0) / 10.0);
  if (s->a0 > 0.9)
    s->a0 = 0.9;
}

/* ------------------------------------------------------------------ drawing */

typedef struct {
  VlDrawColors c;
  GdkRGBA loss, val, acc, muted[4];
} Palette;

static void
palette_init (Palette *p, GtkWidget *w)
{
  vl_draw_colors_from_widget (w, &p->c);
  if (p->c.dark)
    {
      gdk_rgba_parse (&p->loss, "#62a0ea");
      gdk_rgba_parse (&p->val, "#ffa348");
      gdk_rgba_parse (&p->acc, "#57e389");
    }
  else
    {
      gdk_rgba_parse (&p->loss, "#1c71d8");
      gdk_rgba_parse (&p->val, "#e66100");
      gdk_rgba_parse (&p->acc, "#26a269");
    }
  static const char *muted[4] = { "#9141ac", "#986a44", "#77767b", "#c061cb" };
  for (int i = 0; i < 4; i++)
    gdk_rgba_parse (&p->muted[i], muted[i]);
}

typedef struct {
  double x, y, w, h;
} Rect;

typedef struct {
  Rect plot, strip, legend;
  int  row_h;      /* strip row height */
  int  font_h;
} Layout;

static void
compute_layout (VlLossChart *self, PangoLayout *small, int width, int height, Layout *L)
{
  int th;
  vl_draw_text_size (small, "0.000", NULL, &th);
  L->font_h = th;
  double left = 14 + th + 6 + 44;   /* axis title + tick labels */
  double right = 12 + th + 6 + 36;
  double top = th + 14;
  double bottom = th + 6 + th + 10; /* tick labels + axis title */
  int strip_h = 0;
  L->row_h = 0;
  if (self->n_groups > 0 && self->norm_steps->len > 0)
    {
      L->row_h = CLAMP ((int) (MIN (96, height * 0.22) / self->n_groups), 2, 10);
      strip_h = L->row_h * self->n_groups;
    }
  L->legend = (Rect) { left, 4, MAX (width - left - right, 1), top - 4 };
  double plot_h = height - top - bottom - (strip_h > 0 ? strip_h + 8 : 0);
  L->plot = (Rect) { left, top, MAX (width - left - right, 10), MAX (plot_h, 10) };
  L->strip = (Rect) { left, top + L->plot.h + 8, L->plot.w, strip_h };
}

/* Adds the decimated polyline of one series to the path: per pixel column, the first, lowest,
 * highest and last value (so every spike shows, and the line costs O(width) to stroke).
 * Non-finite values (and non-positive ones on a log scale) break the line. */
static void
path_decimated (cairo_t *cr, const Scale *s, const Point *pts, guint n, gboolean smooth)
{
  gboolean have = FALSE, pen = FALSE;
  long col = 0;
  double first = 0, lo = 0, hi = 0, last = 0;
#define FLUSH()                                                    \
  G_STMT_START {                                                   \
    if (have)                                                      \
      {                                                            \
        double X = col + 0.5;                                      \
        if (pen)                                                   \
          cairo_line_to (cr, X, first);                            \
        else                                                       \
          cairo_move_to (cr, X, first);                            \
        if (lo != hi)                                              \
          {                                                        \
            cairo_line_to (cr, X, lo);                             \
            cairo_line_to (cr, X, hi);                             \
          }                                                        \
        cairo_line_to (cr, X, last);                               \
        pen = TRUE;                                                \
        have = FALSE;                                              \
      }                                                            \
  } G_STMT_END
  for (guint i = 0; i < n; i++)
    {
      double v = smooth ? pts[i].smooth : pts[i].loss;
      if (!isfinite (v) || (s->log && v <= 0))
        {
          FLUSH ();
          pen = FALSE;
          continue;
        }
      long c = (long) floor (sx (s, (double) pts[i].step));
      double y = sy (s, v);
      if (have && c != col)
        FLUSH ();
      if (!have)
        {
          col = c;
          first = lo = hi = last = y;
          have = TRUE;
          continue;
        }
      lo = MIN (lo, y);
      hi = MAX (hi, y);
      last = y;
    }
  FLUSH ();
#undef FLUSH
}

static void
draw_marker (cairo_t *cr, double x, double y, double r)
{
  cairo_new_sub_path (cr);
  cairo_arc (cr, x, y, r, 0, 2 * G_PI);
}

/* Index of the point nearest to `step` (points sorted by step), or -1. */
static int
nearest_point (const Run *r, double step)
{
  int n = (int) r->points->len;
  if (n == 0)
    return -1;
  const Point *p = (const Point *) r->points->data;
  int lo = 0, hi = n - 1;
  while (lo < hi)
    {
      int mid = (lo + hi) / 2;
      if ((double) p[mid].step < step)
        lo = mid + 1;
      else
        hi = mid;
    }
  if (lo > 0 && fabs ((double) p[lo - 1].step - step) <= fabs ((double) p[lo].step - step))
    lo--;
  return lo;
}

static void
strip_update (VlLossChart *self, const Scale *s, int cols)
{
  gboolean resize = self->strip == NULL || self->strip_cols != cols ||
                    cairo_image_surface_get_height (self->strip) != self->n_groups;
  if (!resize && !self->strip_dirty && self->strip_x0 == s->x0 && self->strip_x1 == s->x1)
    return;
  if (resize)
    {
      g_clear_pointer (&self->strip, cairo_surface_destroy);
      self->strip = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, cols, self->n_groups);
      self->strip_cols = cols;
      g_free (self->strip_max);
      self->strip_max = g_new (double, (gsize) cols * self->n_groups);
    }
  self->strip_dirty = FALSE;
  self->strip_x0 = s->x0;
  self->strip_x1 = s->x1;

  /* per column and group: the largest norm among the samples covering that column (a sample
   * at step s stands for the steps since the previous sample) */
  double *mx = self->strip_max;
  for (gsize i = 0; i < (gsize) cols * self->n_groups; i++)
    mx[i] = 0.0;
  guint n = self->norm_steps->len;
  const int64_t *steps = (const int64_t *) self->norm_steps->data;
  for (guint i = 0; i < n; i++)
    {
      double st = (double) steps[i];
      double prev = i > 0 ? (double) steps[i - 1] : st - 1;
      int c0 = (int) floor ((prev - s->x0) / (s->x1 - s->x0) * cols) + 1;
      int c1 = (int) floor ((st - s->x0) / (s->x1 - s->x0) * cols);
      c1 = CLAMP (c1, 0, cols - 1);
      c0 = CLAMP (c0, 0, c1);
      const double *row = &g_array_index (self->norms, double, (gsize) i * self->n_groups);
      for (int g = 0; g < self->n_groups; g++)
        if (row[g] > 0 && isfinite (row[g]))
          for (int c = c0; c <= c1; c++)
            mx[(gsize) g * cols + c] = MAX (mx[(gsize) g * cols + c], row[g]);
    }

  cairo_surface_flush (self->strip);
  guint8 *data = cairo_image_surface_get_data (self->strip);
  int stride = cairo_image_surface_get_stride (self->strip);
  const guint32 *lut = vl_colormap_argb (VL_COLORMAP_VIRIDIS);
  double span = self->norm_hi - self->norm_lo;
  for (int g = 0; g < self->n_groups; g++)
    {
      guint32 *line = (guint32 *) (data + (gsize) g * stride);
      for (int c = 0; c < cols; c++)
        {
          double v = mx[(gsize) g * cols + c];
          if (v > 0)
            {
              double t = span > 0 ? (log10 (v) - self->norm_lo) / span : 1.0;
              line[c] = lut[vl_colormap_index (t)];
            }
          else
            line[c] = 0;   /* frozen, or no sample: transparent */
        }
    }
  cairo_surface_mark_dirty (self->strip);
}

/* What every layer of the chart draws with. */
typedef struct {
  VlLossChart *self;
  cairo_t     *cr;
  Palette      P;
  Layout       L;
  Scale        S;
  PangoLayout *small;
  int          width, height;
} Paint;

/* Layer 1: the loss grid and ticks (left), the steps (below), the right axis (accuracy, or
 * R² for regression), the axis titles and the plot's frame. */
static void
paint_axes (const Paint *c)
{
  VlLossChart *self = c->self;
  cairo_t *cr = c->cr;
  const Palette P = c->P;
  const Layout L = c->L;
  const Scale S = c->S;
  PangoLayout *small = c->small;
  const GdkRGBA *fg = &P.c.fg;
  const int width = c->width;
  /* ---- grid and y ticks (loss, left) ---- */
  char buf[64];
  cairo_set_line_width (cr, 1.0);
  if (S.log)
    {
      /* minor lines at every m x 10^d; labels at 10^d, and at 2 and 5 x 10^d over a few
       * decades (and 3 x 10^d within a decade and a half), never overlapping */
      double decades = S.y1 - S.y0, last_label_y = -1e9;
      for (int d = (int) floor (S.y0); d <= (int) ceil (S.y1); d++)
        for (int m = 1; m < 10; m++)
          {
            double v = log10 (m) + d;
            if (v < S.y0 - 1e-9 || v > S.y1 + 1e-9)
              continue;
            gboolean major = m == 1;
            gboolean label = major || (decades <= 2.5 && (m == 2 || m == 5)) ||
                             (decades <= 1.5 && m == 3);
            double y = round (S.py + S.ph - (v - S.y0) / (S.y1 - S.y0) * S.ph) + 0.5;
            vl_draw_set_source (cr, fg, major ? 0.16 : 0.06);
            cairo_move_to (cr, S.px, y);
            cairo_line_to (cr, S.px + S.pw, y);
            cairo_stroke (cr);
            if (label && fabs (y - last_label_y) > L.font_h)
              {
                last_label_y = y;
                g_snprintf (buf, sizeof buf, "%g", m * pow (10.0, d));
                vl_draw_set_source (cr, fg, 0.75);
                vl_draw_text (cr, small, buf, S.px - 6, y, 1.0, 0.5);
              }
          }
    }
  else
    {
      double st = nice_step (S.y1 - S.y0, MAX (2, (int) (S.ph / 45)));
      int dec = decimals_for (st);
      for (double v = ceil (S.y0 / st - 1e-9) * st; v <= S.y1 + st * 1e-6; v += st)
        {
          double y = round (sy (&S, v)) + 0.5;
          vl_draw_set_source (cr, fg, fabs (v) < st * 1e-6 ? 0.3 : 0.12);
          cairo_move_to (cr, S.px, y);
          cairo_line_to (cr, S.px + S.pw, y);
          cairo_stroke (cr);
          g_snprintf (buf, sizeof buf, "%.*f", dec, fabs (v) < st * 1e-6 ? 0.0 : v);
          vl_draw_set_source (cr, fg, 0.75);
          vl_draw_text (cr, small, buf, S.px - 6, y, 1.0, 0.5);
        }
    }

  /* ---- x ticks (steps), under the strip ---- */
  double xlab_y = (L.strip.h > 0 ? L.strip.y + L.strip.h : L.plot.y + L.plot.h) + 4;
  {
    int w1;
    format_steps (buf, sizeof buf, S.x1);
    vl_draw_text_size (small, buf, &w1, NULL);
    double st = nice_step (S.x1 - S.x0, MAX (2, (int) (S.pw / (w1 + 40))));
    st = MAX (st, 1.0);
    for (double v = 0; v <= S.x1 + 1e-9; v += st)
      {
        double x = round (sx (&S, v)) + 0.5;
        vl_draw_set_source (cr, fg, 0.08);
        cairo_move_to (cr, x, S.py);
        cairo_line_to (cr, x, S.py + S.ph);
        cairo_stroke (cr);
        vl_draw_set_source (cr, fg, 0.3);
        cairo_move_to (cr, x, S.py + S.ph);
        cairo_line_to (cr, x, S.py + S.ph + 3);
        cairo_stroke (cr);
        format_steps (buf, sizeof buf, v);
        vl_draw_set_source (cr, fg, 0.75);
        vl_draw_text (cr, small, buf, x, xlab_y, 0.5, 0.0);
      }
    vl_draw_set_source (cr, fg, 0.6);
    vl_draw_text (cr, small, _("step"), S.px + S.pw / 2, xlab_y + L.font_h + 2, 0.5, 0.0);
  }

  /* ---- right axis: accuracy ---- */
  {
    double st = nice_step (S.a1 - S.a0, MAX (2, (int) (S.ph / 45)));
    for (double v = ceil (S.a0 / st - 1e-9) * st; v <= S.a1 + 1e-9; v += st)
      {
        double y = round (sa (&S, v)) + 0.5;
        vl_draw_set_source (cr, &P.acc, 0.6);
        cairo_move_to (cr, S.px + S.pw, y);
        cairo_line_to (cr, S.px + S.pw + 3, y);
        cairo_stroke (cr);
        if (self->task == VL_TASK_REGRESS)
          g_snprintf (buf, sizeof buf, "%.2f", fabs (v) < 1e-9 ? 0.0 : v);
        else
          g_snprintf (buf, sizeof buf, "%.0f%%", fabs (v) < 1e-9 ? 0.0 : v * 100);
        vl_draw_set_source (cr, &P.acc, 0.9);
        vl_draw_text (cr, small, buf, S.px + S.pw + 6, y, 0.0, 0.5);
      }
  }

  /* axis titles (rotated) */
  {
    cairo_save (cr);
    vl_draw_set_source (cr, fg, 0.6);
    cairo_translate (cr, 8, S.py + S.ph / 2);
    cairo_rotate (cr, -G_PI / 2);
    vl_draw_text (cr, small, S.log ? _("loss (log)") : _("loss"), 0, 0, 0.5, 0.0);
    cairo_restore (cr);
    cairo_save (cr);
    vl_draw_set_source (cr, &P.acc, 0.9);
    cairo_translate (cr, width - 8, S.py + S.ph / 2);
    cairo_rotate (cr, G_PI / 2);
    vl_draw_text (cr, small, metric_label (self->task), 0, 0, 0.5, 0.0);
    cairo_restore (cr);
  }

  /* plot frame */
  vl_draw_set_source (cr, fg, 0.3);
  cairo_rectangle (cr, round (S.px) + 0.5, round (S.py) + 0.5, round (S.pw), round (S.ph));
  cairo_stroke (cr);

}

/* Layer 2: the series, clipped to the plot: earlier runs muted, the raw and smoothed losses,
 * the validation loss and the right-axis metric per epoch. */
static void
paint_series (const Paint *c)
{
  VlLossChart *self = c->self;
  cairo_t *cr = c->cr;
  const Palette P = c->P;
  const Scale S = c->S;
  /* ---- series, clipped to the plot ---- */
  cairo_save (cr);
  cairo_rectangle (cr, S.px, S.py - 4, S.pw, S.ph + 8);
  cairo_clip (cr);

  /* earlier runs: smoothed loss and validation loss, muted */
  for (guint i = 0; i < self->history->len; i++)
    {
      const Run *r = g_ptr_array_index (self->history, i);
      const GdkRGBA *mc = &P.muted[i % 4];
      cairo_set_line_width (cr, 1.5);
      vl_draw_set_source (cr, mc, 0.55);
      path_decimated (cr, &S, (const Point *) r->points->data, r->points->len, TRUE);
      cairo_stroke (cr);
      const double dash[] = { 4, 3 };
      cairo_set_dash (cr, dash, 2, 0);
      for (guint k = 0; k < r->epochs->len; k++)
        {
          const Epoch *e = &g_array_index (r->epochs, Epoch, k);
          if (!isfinite (e->val_loss) || (S.log && e->val_loss <= 0))
            continue;
          double x = sx (&S, (double) e->step), y = sy (&S, e->val_loss);
          if (k == 0)
            cairo_move_to (cr, x, y);
          else
            cairo_line_to (cr, x, y);
        }
      cairo_stroke (cr);
      cairo_set_dash (cr, NULL, 0, 0);
    }

  const Run *cur = self->cur;
  const Point *pts = (const Point *) cur->points->data;
  guint n = cur->points->len;
  /* raw losses, faint; then the smoothed line over them */
  cairo_set_line_width (cr, 1.0);
  vl_draw_set_source (cr, &P.loss, 0.3);
  path_decimated (cr, &S, pts, n, FALSE);
  cairo_stroke (cr);
  cairo_set_line_width (cr, 2.0);
  vl_draw_set_source (cr, &P.loss, 1.0);
  path_decimated (cr, &S, pts, n, TRUE);
  cairo_stroke (cr);
  if (n == 1)
    {
      draw_marker (cr, sx (&S, (double) pts[0].step), sy (&S, pts[0].loss), 2.5);
      cairo_fill (cr);
    }

  /* validation loss and accuracy per epoch */
  for (int pass = 0; pass < 2; pass++)
    {
      const GdkRGBA *c = pass == 0 ? &P.val : &P.acc;
      gboolean pen = FALSE;
      cairo_set_line_width (cr, 1.5);
      vl_draw_set_source (cr, c, 0.9);
      for (guint k = 0; k < cur->epochs->len; k++)
        {
          const Epoch *e = &g_array_index (cur->epochs, Epoch, k);
          double v = pass == 0 ? e->val_loss : e->top1;
          if (!isfinite (v) || (pass == 0 && S.log && v <= 0))
            {
              pen = FALSE;
              continue;
            }
          double x = sx (&S, (double) e->step), y = pass == 0 ? sy (&S, v) : sa (&S, v);
          if (pen)
            cairo_line_to (cr, x, y);
          else
            cairo_move_to (cr, x, y);
          pen = TRUE;
        }
      cairo_stroke (cr);
      for (guint k = 0; k < cur->epochs->len; k++)
        {
          const Epoch *e = &g_array_index (cur->epochs, Epoch, k);
          double v = pass == 0 ? e->val_loss : e->top1;
          if (!isfinite (v) || (pass == 0 && S.log && v <= 0))
            continue;
          double x = sx (&S, (double) e->step), y = pass == 0 ? sy (&S, v) : sa (&S, v);
          draw_marker (cr, x, y, pass == 0 && e->best ? 4.5 : 3.5);
          vl_draw_set_source (cr, c, 1.0);
          cairo_fill_preserve (cr);
          vl_draw_set_source (cr, &P.c.bg, 1.0);
          cairo_set_line_width (cr, 1.0);
          cairo_stroke (cr);
        }
    }
  cairo_restore (cr);

}

/* Layer 3: the gradient-norm strip under the plot. */
static void
paint_strip (const Paint *c)
{
  VlLossChart *self = c->self;
  cairo_t *cr = c->cr;
  const Palette P = c->P;
  const Layout L = c->L;
  const Scale S = c->S;
  const GdkRGBA *fg = &P.c.fg;
  /* ---- the gradient-norm strip ---- */
  if (L.strip.h > 0)
    {
      int cols = MAX (1, (int) L.strip.w);
      strip_update (self, &S, cols);
      vl_draw_set_source (cr, fg, 0.05);
      cairo_rectangle (cr, L.strip.x, L.strip.y, L.strip.w, L.strip.h);
      cairo_fill (cr);
      cairo_save (cr);
      cairo_translate (cr, L.strip.x, L.strip.y);
      cairo_scale (cr, L.strip.w / cols, (double) L.row_h);
      cairo_set_source_surface (cr, self->strip, 0, 0);
      cairo_pattern_set_filter (cairo_get_source (cr), CAIRO_FILTER_NEAREST);
      cairo_rectangle (cr, 0, 0, cols, self->n_groups);
      cairo_fill (cr);
      cairo_restore (cr);
      vl_draw_set_source (cr, fg, 0.3);
      cairo_rectangle (cr, round (L.strip.x) + 0.5, round (L.strip.y) + 0.5,
                       round (L.strip.w), round (L.strip.h));
      cairo_stroke (cr);
      /* labels: the first and last group, and what the strip is */
      g_autoptr(PangoLayout) tiny = vl_draw_layout (cr, GTK_WIDGET (self), 0.75);
      int th;
      vl_draw_text_size (tiny, "Ag", NULL, &th);
      vl_draw_set_source (cr, fg, 0.6);
      if (L.strip.h >= 2 * th)
        {
          vl_draw_text (cr, tiny, self->group_names[0], L.strip.x - 4, L.strip.y, 1.0, 0.0);
          vl_draw_text (cr, tiny, self->group_names[self->n_groups - 1], L.strip.x - 4,
                        L.strip.y + L.strip.h, 1.0, 1.0);
        }
      else
        vl_draw_text (cr, tiny, _("‖grad‖"), L.strip.x - 4, L.strip.y + L.strip.h / 2, 1.0, 0.5);
      if (L.strip.h >= 2 * th)
        {
          cairo_save (cr);
          cairo_translate (cr, L.strip.x + L.strip.w + 4, L.strip.y + L.strip.h / 2);
          vl_draw_text (cr, tiny, _("‖grad‖"), 0, 0, 0.0, 0.5);
          cairo_restore (cr);
        }
    }

}

/* Layer 4: the legend, and a word when there is nothing to draw. */
static void
paint_legend (const Paint *c)
{
  VlLossChart *self = c->self;
  cairo_t *cr = c->cr;
  const Palette P = c->P;
  const Layout L = c->L;
  const Scale S = c->S;
  PangoLayout *small = c->small;
  const GdkRGBA *fg = &P.c.fg;
  const Run *cur = self->cur;
  guint n = cur->points->len;
  /* ---- legend ---- */
  {
    double x = L.legend.x, y = L.legend.y + L.legend.h / 2 - 2;
    double xmax = L.legend.x + L.legend.w;
    int tw;
    struct { const char *label; const GdkRGBA *c; double alpha; int kind; } items[] = {
      { _("train loss"), &P.loss, 0.35, 0 },
      { _("smoothed"), &P.loss, 1.0, 1 },
      { _("val loss"), &P.val, 1.0, 2 },
      { metric_label (self->task), &P.acc, 1.0, 2 },
    };
    for (guint i = 0; i < G_N_ELEMENTS (items) + self->history->len + 1; i++)
      {
        const char *label;
        const GdkRGBA *c;
        double alpha = 1.0;
        int kind;
        g_autofree char *cur_label = NULL;
        if (i < G_N_ELEMENTS (items))
          {
            label = items[i].label;
            c = items[i].c;
            alpha = items[i].alpha;
            kind = items[i].kind;
          }
        else if (i == G_N_ELEMENTS (items))
          {
            if (self->history->len == 0 || self->cur->label == NULL)
              continue;
            /* the current run's name, so the muted ones read as "earlier" */
            cur_label = g_strdup_printf ("▸ %s", self->cur->label);
            label = cur_label;
            c = fg;
            alpha = 0.9;
            kind = 3;
          }
        else
          {
            const Run *r = g_ptr_array_index (self->history, i - G_N_ELEMENTS (items) - 1);
            label = r->label != NULL ? r->label : _("earlier run");
            c = &P.muted[(i - G_N_ELEMENTS (items) - 1) % 4];
            alpha = 0.7;
            kind = 1;
          }
        vl_draw_text_size (small, label, &tw, NULL);
        double need = (kind == 3 ? 0 : 22) + tw + 14;
        if (x + need > xmax)
          break;
        vl_draw_set_source (cr, c, alpha);
        if (kind == 0 || kind == 1)
          {
            cairo_set_line_width (cr, kind == 0 ? 1.0 : 2.0);
            cairo_move_to (cr, x, y);
            cairo_line_to (cr, x + 16, y);
            cairo_stroke (cr);
          }
        else if (kind == 2)
          {
            cairo_set_line_width (cr, 1.5);
            cairo_move_to (cr, x, y);
            cairo_line_to (cr, x + 16, y);
            cairo_stroke (cr);
            draw_marker (cr, x + 8, y, 3.5);
            cairo_fill (cr);
          }
        if (kind != 3)
          x += 22;
        vl_draw_set_source (cr, kind == 3 ? c : fg, kind == 3 ? 0.9 : 0.8);
        vl_draw_text (cr, small, label, x, y, 0.0, 0.5);
        x += tw + 14;
      }
  }

  if (n == 0 && cur->epochs->len == 0 && self->history->len == 0)
    {
      g_autoptr(PangoLayout) big = vl_draw_layout (cr, GTK_WIDGET (self), 1.0);
      vl_draw_set_source (cr, fg, 0.45);
      vl_draw_text (cr, big, _("No training steps yet"), S.px + S.pw / 2, S.py + S.ph / 2,
                    0.5, 0.5);
    }

}

/* Layer 5: the hover's vertical rule and read-out. */
static void
paint_hover (const Paint *c)
{
  VlLossChart *self = c->self;
  cairo_t *cr = c->cr;
  const Palette P = c->P;
  const Layout L = c->L;
  const Scale S = c->S;
  PangoLayout *small = c->small;
  const GdkRGBA *fg = &P.c.fg;
  const Run *cur = self->cur;
  const Point *pts = (const Point *) cur->points->data;
  /* ---- hover: vertical rule and read-out ---- */
  if (!self->hovering)
    return;
  gboolean in_plot = self->hover_x >= S.px && self->hover_x <= S.px + S.pw &&
                     self->hover_y >= S.py && self->hover_y <= L.strip.y + L.strip.h + 2;
  if (!in_plot)
    return;
  double step = S.x0 + (self->hover_x - S.px) / S.pw * (S.x1 - S.x0);
  int idx = nearest_point (cur, step);
  GString *text = g_string_new (NULL);
  double rule_x = self->hover_x;
  if (idx >= 0)
    {
      const Point *p = &pts[idx];
      rule_x = sx (&S, (double) p->step);
      g_string_append_printf (text, _("<b>step %lld</b> · epoch %d\n"), (long long) p->step,
                              p->epoch + 1);
      g_string_append_printf (text, _("loss %.4f · smoothed %.4f\n"), p->loss, p->smooth);
      g_string_append_printf (text, "lr %.3g · ‖grad‖ %.3g", p->lr, p->grad_norm);
      step = (double) p->step;
    }
  else
    g_string_append_printf (text, _("<b>step %.0f</b>"), step);
  /* the latest epoch ended at or before this step */
  const Epoch *ep = NULL;
  for (guint k = 0; k < cur->epochs->len; k++)
    {
      const Epoch *e = &g_array_index (cur->epochs, Epoch, k);
      if ((double) e->step <= step + 0.5 && (ep == NULL || e->step >= ep->step))
        ep = e;
    }
  if (ep != NULL && self->task == VL_TASK_REGRESS)
    g_string_append_printf (text, _("\n<span foreground=\"%s\">val loss %.4f</span> · "
                                    "<span foreground=\"%s\">R² %.3f</span> · MAE %.4g (epoch %d)"),
                            P.c.dark ? "#ffa348" : "#e66100", ep->val_loss,
                            P.c.dark ? "#57e389" : "#26a269", ep->top1, ep->top5,
                            ep->epoch + 1);
  else if (ep != NULL && (self->task == VL_TASK_SEGMENT || self->task == VL_TASK_DETECT))
    g_string_append_printf (text, _("\n<span foreground=\"%s\">val loss %.4f</span> · "
                                    "<span foreground=\"%s\">%s %.3f</span> · %s %.3f (epoch %d)"),
                            P.c.dark ? "#ffa348" : "#e66100", ep->val_loss,
                            P.c.dark ? "#57e389" : "#26a269",
                            self->task == VL_TASK_SEGMENT ? "mIoU" : "AP50", ep->top1,
                            self->task == VL_TASK_SEGMENT ? _("pixel acc") : "AP", ep->top5,
                            ep->epoch + 1);
  else if (ep != NULL)
    g_string_append_printf (text, _("\n<span foreground=\"%s\">val loss %.4f</span> · "
                                    "<span foreground=\"%s\">acc %.1f%%</span> (epoch %d)"),
                            P.c.dark ? "#ffa348" : "#e66100", ep->val_loss,
                            P.c.dark ? "#57e389" : "#26a269", ep->top1 * 100, ep->epoch + 1);
  if (L.strip.h > 0 && self->hover_y >= L.strip.y && self->hover_y < L.strip.y + L.strip.h)
    {
      int g = CLAMP ((int) ((self->hover_y - L.strip.y) / L.row_h), 0, self->n_groups - 1);
      /* the norm sample nearest to the step */
      int best = -1;
      double bd = INFINITY;
      for (guint i = 0; i < self->norm_steps->len; i++)
        {
          double d = fabs ((double) g_array_index (self->norm_steps, int64_t, i) - step);
          if (d < bd)
            {
              bd = d;
              best = (int) i;
            }
        }
      if (best >= 0)
        {
          double v = g_array_index (self->norms, double, (gsize) best * self->n_groups + g);
          g_autofree char *esc = g_markup_escape_text (self->group_names[g], -1);
          g_string_append_printf (text, "\n‖grad‖ %s: %s", esc,
                                  v > 0 ? "" : "0 (frozen)");
          if (v > 0)
            g_string_append_printf (text, "%.3g", v);
        }
    }

  cairo_set_line_width (cr, 1.0);
  vl_draw_set_source (cr, fg, 0.45);
  double rx = round (rule_x) + 0.5;
  cairo_move_to (cr, rx, S.py);
  cairo_line_to (cr, rx, L.strip.h > 0 ? L.strip.y + L.strip.h : S.py + S.ph);
  cairo_stroke (cr);
  if (idx >= 0)
    {
      const Point *p = &pts[idx];
      for (int k = 0; k < 2; k++)
        {
          double v = k == 0 ? p->loss : p->smooth;
          if (!isfinite (v) || (S.log && v <= 0))
            continue;
          draw_marker (cr, rx, sy (&S, v), k == 0 ? 2.5 : 3.5);
          vl_draw_set_source (cr, &P.loss, k == 0 ? 0.6 : 1.0);
          cairo_fill_preserve (cr);
          vl_draw_set_source (cr, &P.c.bg, 1.0);
          cairo_stroke (cr);
        }
    }

  pango_layout_set_markup (small, text->str, -1);
  g_string_free (text, TRUE);
  int bw, bh;
  pango_layout_get_pixel_size (small, &bw, &bh);
  double pad = 6;
  double bx = rx + 12, by = S.py + 8;
  if (bx + bw + 2 * pad > S.px + S.pw)
    bx = rx - 12 - bw - 2 * pad;
  bx = MAX (bx, 2);
  cairo_rectangle (cr, round (bx) + 0.5, round (by) + 0.5, bw + 2 * pad, bh + 2 * pad);
  vl_draw_set_source (cr, &P.c.bg, 0.94);
  cairo_fill_preserve (cr);
  vl_draw_set_source (cr, fg, 0.3);
  cairo_stroke (cr);
  vl_draw_set_source (cr, fg, 1.0);
  cairo_move_to (cr, round (bx + pad), round (by + pad));
  pango_cairo_show_layout (cr, small);
}

static void
draw_chart (VlLossChart *self, cairo_t *cr, int width, int height, gboolean hover,
            gboolean background)
{
  Palette P;
  palette_init (&P, GTK_WIDGET (self));

  if (background)
    {
      vl_draw_set_source (cr, &P.c.bg, 1.0);
      cairo_paint (cr);
    }
  if (width < 40 || height < 40)
    return;

  g_autoptr(PangoLayout) small = vl_draw_layout (cr, GTK_WIDGET (self), 0.85);
  Paint c = { .self = self, .cr = cr, .P = P, .small = small, .width = width,
              .height = height };
  compute_layout (self, small, width, height, &c.L);
  compute_scale (self, &c.S);
  c.S.px = c.L.plot.x;
  c.S.pw = c.L.plot.w;
  c.S.py = c.L.plot.y;
  c.S.ph = c.L.plot.h;

  cairo_set_line_join (cr, CAIRO_LINE_JOIN_ROUND);
  cairo_set_line_cap (cr, CAIRO_LINE_CAP_ROUND);

  paint_axes (&c);
  paint_series (&c);
  paint_strip (&c);
  paint_legend (&c);
  if (hover)
    paint_hover (&c);
}

/* ------------------------------------------------------------------ GtkWidget */

static void
vl_loss_chart_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  VlLossChart *self = VL_LOSS_CHART (widget);
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  if (w <= 0 || h <= 0)
    return;
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  draw_chart (self, cr, w, h, TRUE, FALSE);
  cairo_destroy (cr);
}

static void
vl_loss_chart_measure (GtkWidget *widget, GtkOrientation orientation, int for_size,
                       int *minimum, int *natural, int *minimum_baseline,
                       int *natural_baseline)
{
  if (orientation == GTK_ORIENTATION_HORIZONTAL)
    {
      *minimum = 240;
      *natural = 640;
    }
  else
    {
      *minimum = 180;
      *natural = 360;
    }
}

static void
motion_cb (GtkEventControllerMotion *c, double x, double y, VlLossChart *self)
{
  vl_loss_chart_hover_at (self, x, y);
}

static void
leave_cb (GtkEventControllerMotion *c, VlLossChart *self)
{
  vl_loss_chart_hover_at (self, -1, -1);
}

void
vl_loss_chart_hover_at (VlLossChart *chart, double x, double y)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  gboolean hovering = x >= 0 && y >= 0;
  if (hovering == chart->hovering && x == chart->hover_x && y == chart->hover_y)
    return;
  chart->hovering = hovering;
  chart->hover_x = x;
  chart->hover_y = y;
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

static void
vl_loss_chart_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  VlLossChart *self = VL_LOSS_CHART (object);
  switch (prop_id)
    {
    case PROP_LOG_SCALE:
      g_value_set_boolean (value, self->log_scale);
      break;
    case PROP_SMOOTHING:
      g_value_set_double (value, self->smoothing);
      break;
    case PROP_TOTAL_STEPS:
      g_value_set_int64 (value, self->total_steps);
      break;
    case PROP_N_POINTS:
      g_value_set_int (value, (int) self->cur->points->len);
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_loss_chart_set_property (GObject *object, guint prop_id, const GValue *value,
                            GParamSpec *pspec)
{
  VlLossChart *self = VL_LOSS_CHART (object);
  switch (prop_id)
    {
    case PROP_LOG_SCALE:
      vl_loss_chart_set_log_scale (self, g_value_get_boolean (value));
      break;
    case PROP_SMOOTHING:
      vl_loss_chart_set_smoothing (self, g_value_get_double (value));
      break;
    case PROP_TOTAL_STEPS:
      vl_loss_chart_set_total_steps (self, g_value_get_int64 (value));
      break;
    default:
      G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
clear_groups (VlLossChart *self)
{
  g_clear_pointer (&self->group_names, g_strfreev);
  self->n_groups = 0;
  g_array_set_size (self->norm_steps, 0);
  g_array_set_size (self->norms, 0);
  self->norm_lo = self->norm_hi = 0;
  self->norm_any = FALSE;
  self->strip_dirty = TRUE;
}

static void
vl_loss_chart_finalize (GObject *object)
{
  VlLossChart *self = VL_LOSS_CHART (object);
  run_free (self->cur);
  g_ptr_array_unref (self->history);
  g_strfreev (self->group_names);
  g_array_unref (self->norm_steps);
  g_array_unref (self->norms);
  g_clear_pointer (&self->strip, cairo_surface_destroy);
  g_free (self->strip_max);
  G_OBJECT_CLASS (vl_loss_chart_parent_class)->finalize (object);
}

static void
vl_loss_chart_class_init (VlLossChartClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);

  object_class->finalize = vl_loss_chart_finalize;
  object_class->get_property = vl_loss_chart_get_property;
  object_class->set_property = vl_loss_chart_set_property;
  widget_class->snapshot = vl_loss_chart_snapshot;
  widget_class->measure = vl_loss_chart_measure;

  props[PROP_LOG_SCALE] =
    g_param_spec_boolean ("log-scale", NULL, NULL, FALSE,
                          G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_SMOOTHING] =
    g_param_spec_double ("smoothing", NULL, NULL, 0.0, 0.999, 0.9,
                         G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_TOTAL_STEPS] =
    g_param_spec_int64 ("total-steps", NULL, NULL, 0, G_MAXINT64, 0,
                        G_PARAM_READWRITE | G_PARAM_EXPLICIT_NOTIFY | G_PARAM_STATIC_STRINGS);
  props[PROP_N_POINTS] =
    g_param_spec_int ("n-points", NULL, NULL, 0, G_MAXINT, 0,
                      G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);

  gtk_widget_class_install_property_action (widget_class, "chart.log-scale", "log-scale");
  gtk_widget_class_set_css_name (widget_class, "vl-loss-chart");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
vl_loss_chart_init (VlLossChart *self)
{
  self->cur = run_new ("run 1");
  self->n_runs_made = 1;
  self->history = g_ptr_array_new_with_free_func (run_free);
  self->norm_steps = g_array_new (FALSE, FALSE, sizeof (int64_t));
  self->norms = g_array_new (FALSE, FALSE, sizeof (double));
  self->smoothing = 0.9;
  self->strip_dirty = TRUE;

  GtkEventController *motion = gtk_event_controller_motion_new ();
  g_signal_connect (motion, "motion", G_CALLBACK (motion_cb), self);
  g_signal_connect (motion, "leave", G_CALLBACK (leave_cb), self);
  gtk_widget_add_controller (GTK_WIDGET (self), motion);
  gtk_widget_set_focusable (GTK_WIDGET (self), FALSE);
}

/* ------------------------------------------------------------------ public API */

GtkWidget *
vl_loss_chart_new (void)
{
  return g_object_new (VL_TYPE_LOSS_CHART, NULL);
}

void
vl_loss_chart_add_steps (VlLossChart *chart, const VlStepPoint *points, int n)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  g_return_if_fail (n >= 0 && (n == 0 || points != NULL));
  if (n == 0)
    return;
  Run *r = chart->cur;
  guint from = r->points->len;
  /* a step at or before the last one (a resumed run re-posting) replaces the tail */
  if (from > 0 && points[0].step <= g_array_index (r->points, Point, from - 1).step)
    {
      guint keep = from;
      while (keep > 0 && g_array_index (r->points, Point, keep - 1).step >= points[0].step)
        keep--;
      g_array_set_size (r->points, keep);
      from = keep;
    }
  for (int i = 0; i < n; i++)
    {
      Point p = {
        .step = points[i].step, .epoch = points[i].epoch, .loss = points[i].loss,
        .lr = points[i].lr, .grad_norm = points[i].grad_norm,
      };
      g_array_append_val (r->points, p);
    }
  run_smooth_from (r, from, chart->smoothing);
  g_object_notify_by_pspec (G_OBJECT (chart), props[PROP_N_POINTS]);
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

void
vl_loss_chart_add_epoch (VlLossChart *chart, const VlEpochMetrics *m)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  g_return_if_fail (m != NULL);
  Epoch e = {
    .epoch = m->epoch, .step = m->step, .train_loss = m->train_loss,
    .val_loss = m->val.n > 0 ? m->val.loss : NAN,
    .top1 = m->val.n > 0 ? m->val.top1 : NAN,
    .top5 = m->val.n > 0 ? m->val.top5 : NAN,
    .best = m->best,
  };
  if (m->task == VL_TASK_REGRESS)
    {
      e.val_loss = m->reg.n > 0 ? m->reg.loss : NAN;
      e.top1 = m->reg.n > 0 ? m->reg.r2_mean : NAN;
      e.top5 = m->reg.n > 0 ? m->reg.mae_mean : NAN;
    }
  else if (m->task == VL_TASK_SEGMENT)
    {
      /* the right axis: mIoU; the tooltip adds the pixel accuracy */
      e.val_loss = m->seg.n > 0 ? m->seg.loss : NAN;
      e.top1 = m->seg.n > 0 ? m->seg.miou : NAN;
      e.top5 = m->seg.n > 0 ? m->seg.aacc : NAN;
    }
  else if (m->task == VL_TASK_DETECT)
    {
      /* the right axis: AP50; the tooltip adds AP@[.5:.95] */
      e.val_loss = m->det.n > 0 ? m->det.loss : NAN;
      e.top1 = m->det.n > 0 ? m->det.ap50 : NAN;
      e.top5 = m->det.n > 0 ? m->det.ap : NAN;
    }
  chart->task = m->task;
  GArray *eps = chart->cur->epochs;
  guint at = eps->len;
  for (guint i = 0; i < eps->len; i++)
    {
      Epoch *o = &g_array_index (eps, Epoch, i);
      if (o->epoch == e.epoch)
        {
          *o = e;
          at = G_MAXUINT;
          break;
        }
      if (o->epoch > e.epoch && at == eps->len)
        at = i;
    }
  if (at != G_MAXUINT)
    g_array_insert_val (eps, at, e);
  if (e.best)
    for (guint i = 0; i < eps->len; i++)
      {
        Epoch *o = &g_array_index (eps, Epoch, i);
        if (o->epoch != e.epoch)
          o->best = FALSE;
      }
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

void
vl_loss_chart_set_group_norms (VlLossChart *chart, int n_groups, const char *const *names,
                               const double *norms, int64_t step)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  g_return_if_fail (n_groups > 0 && names != NULL && norms != NULL);
  gboolean same = chart->n_groups == n_groups;
  for (int g = 0; same && g < n_groups; g++)
    same = g_strcmp0 (chart->group_names[g], names[g]) == 0;
  if (same && chart->norm_steps->len > 0 &&
      step < g_array_index (chart->norm_steps, int64_t, chart->norm_steps->len - 1))
    same = FALSE;   /* steps went back: another run */
  if (!same)
    {
      clear_groups (chart);
      chart->group_names = g_new0 (char *, n_groups + 1);
      for (int g = 0; g < n_groups; g++)
        chart->group_names[g] = g_strdup (names[g] != NULL ? names[g] : "");
      chart->n_groups = n_groups;
    }
  guint len = chart->norm_steps->len;
  if (len > 0 && g_array_index (chart->norm_steps, int64_t, len - 1) == step)
    {
      memcpy (&g_array_index (chart->norms, double, (gsize) (len - 1) * n_groups), norms,
              sizeof (double) * n_groups);
    }
  else
    {
      g_array_append_val (chart->norm_steps, step);
      g_array_append_vals (chart->norms, norms, n_groups);
    }
  for (int g = 0; g < n_groups; g++)
    if (norms[g] > 0 && isfinite (norms[g]))
      {
        double l = log10 (norms[g]);
        if (!chart->norm_any)
          {
            chart->norm_lo = chart->norm_hi = l;
            chart->norm_any = TRUE;
          }
        chart->norm_lo = MIN (chart->norm_lo, l);
        chart->norm_hi = MAX (chart->norm_hi, l);
      }
  chart->strip_dirty = TRUE;
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

void
vl_loss_chart_new_run (VlLossChart *chart, const char *label)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  if (!run_is_empty (chart->cur))
    {
      g_ptr_array_add (chart->history, chart->cur);
      chart->n_runs_made++;
      chart->cur = NULL;
    }
  else
    run_free (chart->cur);
  g_autofree char *def = g_strdup_printf ("run %d", chart->n_runs_made);
  chart->cur = run_new (label != NULL ? label : def);
  clear_groups (chart);
  g_object_notify_by_pspec (G_OBJECT (chart), props[PROP_N_POINTS]);
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

void
vl_loss_chart_set_run_label (VlLossChart *chart, const char *label)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  g_free (chart->cur->label);
  chart->cur->label = g_strdup (label);
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

void
vl_loss_chart_clear (VlLossChart *chart)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  run_free (chart->cur);
  chart->cur = run_new ("run 1");
  chart->n_runs_made = 1;
  g_ptr_array_set_size (chart->history, 0);
  clear_groups (chart);
  g_object_notify_by_pspec (G_OBJECT (chart), props[PROP_N_POINTS]);
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

void
vl_loss_chart_set_log_scale (VlLossChart *chart, gboolean log_scale)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  log_scale = !!log_scale;
  if (chart->log_scale == log_scale)
    return;
  chart->log_scale = log_scale;
  g_object_notify_by_pspec (G_OBJECT (chart), props[PROP_LOG_SCALE]);
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

gboolean
vl_loss_chart_get_log_scale (VlLossChart *chart)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), FALSE);
  return chart->log_scale;
}

void
vl_loss_chart_set_smoothing (VlLossChart *chart, double smoothing)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  smoothing = CLAMP (smoothing, 0.0, 0.999);
  if (chart->smoothing == smoothing)
    return;
  chart->smoothing = smoothing;
  run_smooth_from (chart->cur, 0, smoothing);
  for (guint i = 0; i < chart->history->len; i++)
    run_smooth_from (g_ptr_array_index (chart->history, i), 0, smoothing);
  g_object_notify_by_pspec (G_OBJECT (chart), props[PROP_SMOOTHING]);
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

double
vl_loss_chart_get_smoothing (VlLossChart *chart)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), 0.0);
  return chart->smoothing;
}

void
vl_loss_chart_set_total_steps (VlLossChart *chart, int64_t total_steps)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  total_steps = MAX (total_steps, 0);
  if (chart->total_steps == total_steps)
    return;
  chart->total_steps = total_steps;
  chart->strip_dirty = TRUE;
  g_object_notify_by_pspec (G_OBJECT (chart), props[PROP_TOTAL_STEPS]);
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

int
vl_loss_chart_get_n_points (VlLossChart *chart)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), 0);
  return (int) chart->cur->points->len;
}

int
vl_loss_chart_get_n_epochs (VlLossChart *chart)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), 0);
  return (int) chart->cur->epochs->len;
}

int
vl_loss_chart_get_n_history (VlLossChart *chart)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), 0);
  return (int) chart->history->len;
}

double
vl_loss_chart_get_smoothed (VlLossChart *chart, int i)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), NAN);
  g_return_val_if_fail (i >= 0 && (guint) i < chart->cur->points->len, NAN);
  return g_array_index (chart->cur->points, Point, i).smooth;
}

gboolean
vl_loss_chart_export_png (VlLossChart *chart, const char *path, int width, int height,
                          GError **error)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  if (width <= 0 || height <= 0 || width > 16384 || height > 16384)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT,
                   "%s: image size %dx%d out of range (1 to 16384)", path, width, height);
      return FALSE;
    }
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  cairo_t *cr = cairo_create (s);
  draw_chart (chart, cr, width, height, FALSE, TRUE);
  cairo_destroy (cr);
  gboolean ok = vl_draw_write_png (s, path, error);
  cairo_surface_destroy (s);
  return ok;
}

static void
csv_number (GString *s, double v, const char *fmt)
{
  g_string_append_c (s, ',');
  if (isfinite (v))
    {
      char buf[G_ASCII_DTOSTR_BUF_SIZE];
      g_string_append (s, g_ascii_formatd (buf, sizeof buf, fmt, v));
    }
}

static void
csv_label (GString *s, const char *label)
{
  if (label == NULL)
    return;
  if (strpbrk (label, ",\"\n\r") == NULL)
    {
      g_string_append (s, label);
      return;
    }
  g_string_append_c (s, '"');
  for (const char *p = label; *p; p++)
    {
      if (*p == '"')
        g_string_append_c (s, '"');
      g_string_append_c (s, *p);
    }
  g_string_append_c (s, '"');
}

static void
csv_epoch (GString *s, const Epoch *e)
{
  if (e == NULL)
    {
      g_string_append (s, ",,,");
      return;
    }
  csv_number (s, e->val_loss, "%.9g");
  csv_number (s, e->top1, "%.9g");
  csv_number (s, e->top5, "%.9g");
}

static void
csv_run (GString *s, const Run *r)
{
  guint ne = r->epochs->len, k = 0;
  const Epoch *eps = (const Epoch *) r->epochs->data;
  for (guint i = 0; i < r->points->len; i++)
    {
      const Point *p = &g_array_index (r->points, Point, i);
      /* epochs that ended before this step without a step row of their own */
      for (; k < ne && eps[k].step < p->step; k++)
        {
          csv_label (s, r->label);
          g_string_append_printf (s, ",%" G_GINT64_FORMAT ",%d,,,,", eps[k].step, eps[k].epoch);
          csv_epoch (s, &eps[k]);
          g_string_append_c (s, '\n');
        }
      csv_label (s, r->label);
      g_string_append_printf (s, ",%" G_GINT64_FORMAT ",%d", p->step, p->epoch);
      csv_number (s, p->loss, "%.9g");
      csv_number (s, p->smooth, "%.9g");
      csv_number (s, p->lr, "%.9g");
      csv_number (s, p->grad_norm, "%.9g");
      const Epoch *e = NULL;
      if (k < ne && eps[k].step == p->step)
        e = &eps[k++];
      csv_epoch (s, e);
      g_string_append_c (s, '\n');
    }
  for (; k < ne; k++)
    {
      csv_label (s, r->label);
      g_string_append_printf (s, ",%" G_GINT64_FORMAT ",%d,,,,", eps[k].step, eps[k].epoch);
      csv_epoch (s, &eps[k]);
      g_string_append_c (s, '\n');
    }
}

void
vl_loss_chart_set_task (VlLossChart *chart, VlTaskKind task)
{
  g_return_if_fail (VL_IS_LOSS_CHART (chart));
  if (chart->task == task)
    return;
  chart->task = task;
  gtk_widget_queue_draw (GTK_WIDGET (chart));
}

gboolean
vl_loss_chart_export_csv (VlLossChart *chart, const char *path, GError **error)
{
  g_return_val_if_fail (VL_IS_LOSS_CHART (chart), FALSE);
  g_return_val_if_fail (path != NULL, FALSE);
  const char *metrics = chart->task == VL_TASK_REGRESS ? "val_r2,val_mae"
                      : chart->task == VL_TASK_SEGMENT ? "val_miou,val_aacc"
                      : chart->task == VL_TASK_DETECT ? "val_map50,val_map"
                      : "val_top1,val_top5";
  g_autoptr(GString) s = g_string_new ("run,step,epoch,loss,loss_smoothed,lr,grad_norm,val_loss,");
  g_string_append_printf (s, "%s\n", metrics);
  for (guint i = 0; i < chart->history->len; i++)
    csv_run (s, g_ptr_array_index (chart->history, i));
  csv_run (s, chart->cur);
  return vl_write_file_atomic (path, s->str, (gssize) s->len, error);
}

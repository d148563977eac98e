/* vl-embedding-view.c: PCA of pooled features to 2-D, drawn with cairo in snapshot. */
#include "vl-embedding-view.h"
#include <glib/gi18n.h>

#include <cblas.h>
#include <math.h>
#include <string.h>

#include "vl-colormap.h"

struct _VlEmbeddingView {
  GtkWidget  parent_instance;

  int64_t    n;
  double    *xy;            /* (n, 2) principal coordinates */
  int       *labels;        /* (n) */
  char     **files;         /* (n) or NULL */
  int        K;
  char     **names;         /* (K) */
  double     explained[2];
  double     lo[2], hi[2];  /* the coordinates' range */
  char      *title;

  int64_t    hover;         /* -1: none */
  char      *hover_text;
};

G_DEFINE_FINAL_TYPE (VlEmbeddingView, vl_embedding_view, GTK_TYPE_WIDGET)

enum {
  SIGNAL_POINT_ACTIVATED,
  N_SIGNALS
};
static guint signals[N_SIGNALS];

#define PICK_RADIUS 8.0
#define DOT_RADIUS 3.5

/* ------------------------------------------------------------------ PCA */

/* Orthonormalises the two columns of Q (D x 2, row-major) by Gram-Schmidt; a column that
 * vanishes is replaced by a unit vector orthogonal to the other. */
static void
orthonormalise (double *Q, int D)
{
  for (int j = 0; j < 2; j++)
    {
      if (j == 1)
        {
          double p = 0;
          for (int d = 0; d < D; d++)
            p += Q[d * 2] * Q[d * 2 + 1];
          for (int d = 0; d < D; d++)
            Q[d * 2 + 1] -= p * Q[d * 2];
        }
      double s = 0;
      for (int d = 0; d < D; d++)
        s += Q[d * 2 + j] * Q[d * 2 + j];
      if (s < 1e-280)
        {
          /* the first basis vector the other column does not lean on */
          int best = 0;
          for (int d = 1; d < D; d++)
            if (fabs (Q[d * 2 + 1 - j]) < fabs (Q[best * 2 + 1 - j]))
              best = d;
          for (int d = 0; d < D; d++)
            Q[d * 2 + j] = d == best ? 1.0 : 0.0;
          if (j == 1)
            {
              double p = Q[best * 2];
              for (int d = 0; d < D; d++)
                Q[d * 2 + 1] -= p * Q[d * 2];
            }
          s = 0;
          for (int d = 0; d < D; d++)
            s += Q[d * 2 + j] * Q[d * 2 + j];
          if (s < 1e-280)   /* D == 1: there is no second axis */
            continue;
        }
      double inv = 1.0 / sqrt (s);
      for (int d = 0; d < D; d++)
        Q[d * 2 + j] *= inv;
    }
}

/* The two leading principal axes of the rows X (n, D): coordinates into xy (n, 2), each axis'
 * share of the variance into explained. */
static void
pca2 (const float *X, int64_t n, int D, double *xy, double explained[2])
{
  g_autofree double *mean = g_new0 (double, (gsize) D);
  for (int64_t i = 0; i < n; i++)
    for (int d = 0; d < D; d++)
      mean[d] += X[i * D + d];
  for (int d = 0; d < D; d++)
    mean[d] /= n;
  g_autofree double *Xc = g_new (double, n * D);
  for (int64_t i = 0; i < n; i++)
    for (int d = 0; d < D; d++)
      Xc[i * D + d] = X[i * D + d] - mean[d];
  g_autofree double *C = g_new0 (double, (int64_t) D * D);   /* (D, D) Xcᵀ Xc */
  cblas_dgemm (CblasRowMajor, CblasTrans, CblasNoTrans, D, D, (int) n, 1.0, Xc, D, Xc, D, 0.0,
               C, D);
  double total = 0;
  for (int d = 0; d < D; d++)
    total += C[(int64_t) d * D + d];

  /* orthogonal iteration: Q <- orth (C Q) until the subspace stops moving */
  g_autofree double *Q = g_new (double, (gsize) D * 2), *Z = g_new (double, (gsize) D * 2);
  for (int d = 0; d < D; d++)
    {
      Q[d * 2] = 1.0 + 0.01 * d;
      Q[d * 2 + 1] = d % 2 ? 1.0 : -1.0 + 0.003 * d;
    }
  orthonormalise (Q, D);
  for (int it = 0; it < 1000 && total > 0; it++)
    {
      cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, D, 2, D, 1.0, C, D, Q, 2, 0.0, Z,
                   2);
      orthonormalise (Z, D);
      /* change of the projector Q Qᵀ, through |QᵀZ| */
      double a = 0, b = 0, c = 0, e = 0;
      for (int d = 0; d < D; d++)
        {
          a += Q[d * 2] * Z[d * 2];
          b += Q[d * 2] * Z[d * 2 + 1];
          c += Q[d * 2 + 1] * Z[d * 2];
          e += Q[d * 2 + 1] * Z[d * 2 + 1];
        }
      memcpy (Q, Z, sizeof (double) * D * 2);
      if (fabs (fabs (a * e - b * c) - 1.0) < 1e-15 && it > 3)
        break;
    }
  /* Rayleigh-Ritz: the 2 x 2 matrix T = Qᵀ C Q, its eigenvectors rotate Q onto the axes */
  cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, D, 2, D, 1.0, C, D, Q, 2, 0.0, Z, 2);
  double t00 = 0, t01 = 0, t11 = 0;
  for (int d = 0; d < D; d++)
    {
      t00 += Q[d * 2] * Z[d * 2];
      t01 += Q[d * 2] * Z[d * 2 + 1];
      t11 += Q[d * 2 + 1] * Z[d * 2 + 1];
    }
  double theta = 0.5 * atan2 (2 * t01, t00 - t11);
  double cs = cos (theta), sn = sin (theta);
  double l0 = cs * cs * t00 + 2 * cs * sn * t01 + sn * sn * t11;
  double l1 = sn * sn * t00 - 2 * cs * sn * t01 + cs * cs * t11;
  for (int d = 0; d < D; d++)
    {
      double q0 = Q[d * 2], q1 = Q[d * 2 + 1];
      Q[d * 2] = cs * q0 + sn * q1;
      Q[d * 2 + 1] = -sn * q0 + cs * q1;
    }
  if (l1 > l0)
    {
      for (int d = 0; d < D; d++)
        {
          double t = Q[d * 2];
          Q[d * 2] = Q[d * 2 + 1];
          Q[d * 2 + 1] = t;
        }
      double t = l0;
      l0 = l1;
      l1 = t;
    }
  /* signs: each axis' largest-magnitude loading positive */
  for (int j = 0; j < 2; j++)
    {
      int best = 0;
      for (int d = 1; d < D; d++)
        if (fabs (Q[d * 2 + j]) > fabs (Q[best * 2 + j]))
          best = d;
      if (Q[best * 2 + j] < 0)
        for (int d = 0; d < D; d++)
          Q[d * 2 + j] = -Q[d * 2 + j];
    }
  explained[0] = total > 0 ? MAX (l0, 0) / total : 0;
  explained[1] = total > 0 && D > 1 ? MAX (l1, 0) / total : 0;
  cblas_dgemm (CblasRowMajor, CblasNoTrans, CblasNoTrans, (int) n, 2, D, 1.0, Xc, D, Q, 2, 0.0,
               xy, 2);
  if (D == 1)
    for (int64_t i = 0; i < n; i++)
      xy[i * 2 + 1] = 0;
}

/* ------------------------------------------------------------------ data */

void
vl_embedding_view_class_colour (int k, double rgb[3])
{
  /* ten well-separated hues, then golden-ratio steps around the wheel */
  static const double base[10][3] = {
    { 0.122, 0.467, 0.706 }, { 1.000, 0.498, 0.055 }, { 0.173, 0.627, 0.173 },
    { 0.839, 0.153, 0.157 }, { 0.580, 0.404, 0.741 }, { 0.549, 0.337, 0.294 },
    { 0.890, 0.467, 0.761 }, { 0.498, 0.498, 0.498 }, { 0.737, 0.741, 0.133 },
    { 0.090, 0.745, 0.812 },
  };
  if (k >= 0 && k < 10)
    {
      memcpy (rgb, base[k], sizeof (double) * 3);
      return;
    }
  double h = fmod (MAX (k, 0) * 0.618033988749895, 1.0);
  float r, g, b;
  gtk_hsv_to_rgb ((float) h, 0.65f, 0.85f, &r, &g, &b);
  rgb[0] = r;
  rgb[1] = g;
  rgb[2] = b;
}

void
vl_embedding_view_set_features (VlEmbeddingView *view, const float *features, int64_t n, int dim,
                                const int *labels, int n_classes, const char *const *class_names,
                                const char *const *files)
{
  g_return_if_fail (VL_IS_EMBEDDING_VIEW (view));
  g_return_if_fail (n == 0 || (features != NULL && labels != NULL && dim > 0 && n_classes > 0));
  g_clear_pointer (&view->xy, g_free);
  g_clear_pointer (&view->labels, g_free);
  g_clear_pointer (&view->files, g_strfreev);
  g_clear_pointer (&view->names, g_strfreev);
  g_clear_pointer (&view->hover_text, g_free);
  view->hover = -1;
  view->n = n;
  view->K = n > 0 ? n_classes : 0;
  view->explained[0] = view->explained[1] = 0;
  view->names = g_new0 (char *, view->K + 1);
  for (int k = 0; k < view->K; k++)
    view->names[k] = class_names && class_names[k] ? g_strdup (class_names[k])
                                                    : g_strdup_printf ("%d", k);
  if (n > 0)
    {
      view->xy = g_new (double, n * 2);
      view->labels = g_memdup2 (labels, sizeof (int) * n);
      for (int64_t i = 0; i < n; i++)
        view->labels[i] = CLAMP (view->labels[i], 0, n_classes - 1);
      if (files)
        {
          view->files = g_new0 (char *, n + 1);
          for (int64_t i = 0; i < n; i++)
            view->files[i] = g_strdup (files[i] ? files[i] : "");
        }
      pca2 (features, n, dim, view->xy, view->explained);
      for (int j = 0; j < 2; j++)
        {
          view->lo[j] = view->hi[j] = view->xy[j];
          for (int64_t i = 1; i < n; i++)
            {
              view->lo[j] = MIN (view->lo[j], view->xy[i * 2 + j]);
              view->hi[j] = MAX (view->hi[j], view->xy[i * 2 + j]);
            }
        }
    }
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

void
vl_embedding_view_set_title (VlEmbeddingView *view, const char *title)
{
  g_return_if_fail (VL_IS_EMBEDDING_VIEW (view));
  g_free (view->title);
  view->title = g_strdup (title);
  gtk_widget_queue_draw (GTK_WIDGET (view));
}

int64_t
vl_embedding_view_get_n_points (VlEmbeddingView *view)
{
  return view->n;
}

void
vl_embedding_view_get_coords (VlEmbeddingView *view, int64_t i, double *pc1, double *pc2)
{
  g_return_if_fail (i >= 0 && i < view->n);
  *pc1 = view->xy[i * 2];
  *pc2 = view->xy[i * 2 + 1];
}

double
vl_embedding_view_get_explained (VlEmbeddingView *view, int axis)
{
  g_return_val_if_fail (axis == 0 || axis == 1, NAN);
  return view->explained[axis];
}

/* ------------------------------------------------------------------ layout */

typedef struct {
  double ox, oy;      /* widget position of coordinates (lo[0], hi[1]): the top-left */
  double scale;       /* pixels per unit, the same on both axes */
  double plot_x, plot_y, plot_w, plot_h;
  double legend_y;
  int    font_h;
} Layout;

static void
compute_layout (VlEmbeddingView *self, PangoLayout *small, int width, int height, Layout *L)
{
  int fh;
  vl_draw_text_size (small, "Ag", NULL, &fh);
  L->font_h = fh;
  double top = 8;
  if (self->title)
    top += fh + 6;
  L->legend_y = top;
  top += fh + 8;
  L->plot_x = 8 + fh + 6;
  L->plot_y = top;
  L->plot_w = MAX (width - L->plot_x - 10, 10);
  L->plot_h = MAX (height - top - fh - 14, 10);
  double span_x = MAX (self->hi[0] - self->lo[0], 1e-12);
  double span_y = MAX (self->hi[1] - self->lo[1], 1e-12);
  const double m = 2 * PICK_RADIUS;   /* keep dots off the edges */
  L->scale = MIN ((L->plot_w - m) / span_x, (L->plot_h - m) / span_y);
  /* centre the cloud in the plot */
  L->ox = L->plot_x + (L->plot_w - span_x * L->scale) / 2;
  L->oy = L->plot_y + (L->plot_h - span_y * L->scale) / 2;
}

static void
point_xy (VlEmbeddingView *self, const Layout *L, int64_t i, double *x, double *y)
{
  *x = L->ox + (self->xy[i * 2] - self->lo[0]) * L->scale;
  *y = L->oy + (self->hi[1] - self->xy[i * 2 + 1]) * L->scale;   /* PC2 upwards */
}

static void
widget_layout (VlEmbeddingView *self, Layout *L)
{
  GtkWidget *w = GTK_WIDGET (self);
  g_autoptr(PangoLayout) small = vl_draw_layout (NULL, w, 0.85);
  compute_layout (self, small, gtk_widget_get_width (w), gtk_widget_get_height (w), L);
}

gboolean
vl_embedding_view_get_point_position (VlEmbeddingView *view, int64_t i, double *x, double *y)
{
  if (i < 0 || i >= view->n)
    return FALSE;
  Layout L;
  widget_layout (view, &L);
  point_xy (view, &L, i, x, y);
  return TRUE;
}

int64_t
vl_embedding_view_point_at (VlEmbeddingView *view, double x, double y)
{
  if (view->n == 0 || x < 0 || y < 0)
    return -1;
  Layout L;
  widget_layout (view, &L);
  int64_t best = -1;
  double best_d = PICK_RADIUS * PICK_RADIUS;
  for (int64_t i = 0; i < view->n; i++)
    {
      double px, py;
      point_xy (view, &L, i, &px, &py);
      double d = (px - x) * (px - x) + (py - y) * (py - y);
      if (d <= best_d)   /* the later point is drawn on top: it wins a tie */
        {
          best_d = d;
          best = i;
        }
    }
  return best;
}

int64_t
vl_embedding_view_hover_at (VlEmbeddingView *view, double x, double y)
{
  int64_t i = vl_embedding_view_point_at (view, x, y);
  if (i != view->hover)
    {
      view->hover = i;
      g_clear_pointer (&view->hover_text, g_free);
      if (i >= 0)
        view->hover_text = g_strdup_printf ("%s\n%s", view->files ? view->files[i] : "(no file)",
                                            view->names[view->labels[i]]);
      gtk_widget_queue_draw (GTK_WIDGET (view));
    }
  return i;
}

const char *
vl_embedding_view_get_hover_text (VlEmbeddingView *view)
{
  return view->hover_text;
}

gboolean
vl_embedding_view_activate_at (VlEmbeddingView *view, double x, double y)
{
  int64_t i = vl_embedding_view_point_at (view, x, y);
  if (i < 0)
    return FALSE;
  g_signal_emit (view, signals[SIGNAL_POINT_ACTIVATED], 0, (gint64) i);
  return TRUE;
}

/* ------------------------------------------------------------------ drawing */

static void
draw_map (VlEmbeddingView *self, cairo_t *cr, int width, int height, gboolean background)
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
  if (self->title)
    {
      vl_draw_set_source (cr, &C.fg, 0.9);
      vl_draw_text (cr, font, self->title, width / 2.0, 8, 0.5, 0.0);
    }
  if (self->n == 0)
    {
      vl_draw_set_source (cr, &C.fg, 0.45);
      vl_draw_text (cr, font, _("No features yet"), width / 2.0, height / 2.0, 0.5, 0.5);
      return;
    }

  /* legend: one swatch per class */
  double x = L.plot_x;
  for (int k = 0; k < self->K; k++)
    {
      double rgb[3];
      vl_embedding_view_class_colour (k, rgb);
      cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
      cairo_arc (cr, x + 5, L.legend_y + L.font_h / 2.0, 4.5, 0, 2 * G_PI);
      cairo_fill (cr);
      vl_draw_set_source (cr, &C.fg, 0.85);
      vl_draw_text (cr, small, self->names[k], x + 13, L.legend_y, 0.0, 0.0);
      int tw;
      vl_draw_text_size (small, self->names[k], &tw, NULL);
      x += 13 + tw + 14;
      if (x > width - 40)
        break;
    }

  /* frame and axis titles */
  vl_draw_set_source (cr, &C.fg, 0.25);
  cairo_set_line_width (cr, 1.0);
  cairo_rectangle (cr, round (L.plot_x) + 0.5, round (L.plot_y) + 0.5, round (L.plot_w),
                   round (L.plot_h));
  cairo_stroke (cr);
  char buf[192];
  vl_draw_set_source (cr, &C.fg, 0.6);
  g_snprintf (buf, sizeof buf, _("PC1 (%.0f%% of the variance) →"), 100 * self->explained[0]);
  vl_draw_text (cr, small, buf, L.plot_x + L.plot_w / 2, L.plot_y + L.plot_h + 4, 0.5, 0.0);
  g_snprintf (buf, sizeof buf, "PC2 (%.0f%%) →", 100 * self->explained[1]);
  cairo_save (cr);
  cairo_translate (cr, 8, L.plot_y + L.plot_h / 2);
  cairo_rotate (cr, -G_PI / 2);
  vl_draw_text (cr, small, buf, 0, 0, 0.5, 0.0);
  cairo_restore (cr);

  /* the points, in order (later on top), then the hovered one again, larger and outlined */
  cairo_save (cr);
  cairo_rectangle (cr, L.plot_x, L.plot_y, L.plot_w, L.plot_h);
  cairo_clip (cr);
  for (int64_t i = 0; i < self->n; i++)
    {
      double px, py, rgb[3];
      point_xy (self, &L, i, &px, &py);
      vl_embedding_view_class_colour (self->labels[i], rgb);
      cairo_set_source_rgba (cr, rgb[0], rgb[1], rgb[2], 0.85);
      cairo_arc (cr, px, py, DOT_RADIUS, 0, 2 * G_PI);
      cairo_fill (cr);
    }
  if (self->hover >= 0 && self->hover < self->n)
    {
      double px, py, rgb[3];
      point_xy (self, &L, self->hover, &px, &py);
      vl_embedding_view_class_colour (self->labels[self->hover], rgb);
      cairo_set_source_rgb (cr, rgb[0], rgb[1], rgb[2]);
      cairo_arc (cr, px, py, DOT_RADIUS + 2, 0, 2 * G_PI);
      cairo_fill_preserve (cr);
      vl_draw_set_source (cr, &C.fg, 0.9);
      cairo_set_line_width (cr, 1.5);
      cairo_stroke (cr);
    }
  cairo_restore (cr);
}

gboolean
vl_embedding_view_export_png (VlEmbeddingView *view, const char *path, int width, int height,
                              GError **error)
{
  if (width <= 0 || height <= 0)
    width = 480, height = 400;
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, width, height);
  cairo_t *cr = cairo_create (s);
  draw_map (view, cr, width, height, TRUE);
  cairo_destroy (cr);
  gboolean ok = vl_draw_write_png (s, path, error);
  cairo_surface_destroy (s);
  return ok;
}

/* ------------------------------------------------------------------ GtkWidget */

static void
vl_embedding_view_snapshot (GtkWidget *widget, GtkSnapshot *snapshot)
{
  int w = gtk_widget_get_width (widget), h = gtk_widget_get_height (widget);
  if (w <= 0 || h <= 0)
    return;
  cairo_t *cr = gtk_snapshot_append_cairo (snapshot, &GRAPHENE_RECT_INIT (0, 0, w, h));
  draw_map (VL_EMBEDDING_VIEW (widget), cr, w, h, FALSE);
  cairo_destroy (cr);
}

static void
vl_embedding_view_measure (GtkWidget *widget, GtkOrientation orientation, int for_size,
                           int *minimum, int *natural, int *minimum_baseline,
                           int *natural_baseline)
{
  *minimum = orientation == GTK_ORIENTATION_HORIZONTAL ? 160 : 140;
  *natural = orientation == GTK_ORIENTATION_HORIZONTAL ? 480 : 400;
}

static gboolean
query_tooltip_cb (GtkWidget *widget, int x, int y, gboolean keyboard, GtkTooltip *tooltip,
                  VlEmbeddingView *self)
{
  vl_embedding_view_hover_at (self, x, y);
  if (self->hover_text == NULL)
    return FALSE;
  gtk_tooltip_set_text (tooltip, self->hover_text);
  return TRUE;
}

static void
motion_cb (GtkEventControllerMotion *c, double x, double y, VlEmbeddingView *self)
{
  vl_embedding_view_hover_at (self, x, y);
}

static void
leave_cb (GtkEventControllerMotion *c, VlEmbeddingView *self)
{
  vl_embedding_view_hover_at (self, -1, -1);
}

static void
released_cb (GtkGestureClick *gesture, int n_press, double x, double y, VlEmbeddingView *self)
{
  if (vl_embedding_view_activate_at (self, x, y))
    gtk_gesture_set_state (GTK_GESTURE (gesture), GTK_EVENT_SEQUENCE_CLAIMED);
}

static void
vl_embedding_view_finalize (GObject *object)
{
  VlEmbeddingView *self = VL_EMBEDDING_VIEW (object);
  g_free (self->xy);
  g_free (self->labels);
  g_strfreev (self->files);
  g_strfreev (self->names);
  g_free (self->title);
  g_free (self->hover_text);
  G_OBJECT_CLASS (vl_embedding_view_parent_class)->finalize (object);
}

static void
vl_embedding_view_class_init (VlEmbeddingViewClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  GtkWidgetClass *widget_class = GTK_WIDGET_CLASS (klass);
  object_class->finalize = vl_embedding_view_finalize;
  widget_class->snapshot = vl_embedding_view_snapshot;
  widget_class->measure = vl_embedding_view_measure;

  /**
   * VlEmbeddingView::point-activated:
   * @index: the point (the row of the features given)
   *
   * A point was clicked.
   */
  signals[SIGNAL_POINT_ACTIVATED] =
    g_signal_new ("point-activated", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 1, G_TYPE_INT64);
  gtk_widget_class_set_css_name (widget_class, "vl-embedding-view");
  gtk_widget_class_set_accessible_role (widget_class, GTK_ACCESSIBLE_ROLE_IMG);
}

static void
vl_embedding_view_init (VlEmbeddingView *self)
{
  self->hover = -1;
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

GtkWidget *
vl_embedding_view_new (void)
{
  return g_object_new (VL_TYPE_EMBEDDING_VIEW, NULL);
}

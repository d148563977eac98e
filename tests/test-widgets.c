/* test-widgets.c: the drawing widgets (loss chart, attention view, confusion matrix) and the
 * colour maps, rendered offscreen and checked pixel by pixel.
 *
 * Each widget is shown in a real GtkWindow (under Xvfb), fed data, and rendered either through
 * its own PNG export (read back with GdkTexture) or as the widget itself through the GSK cairo
 * renderer (gtk_widget_paintable_new → snapshot → gsk_renderer_render_texture).
 *
 * VITLAB_DEMO_DIR=dir makes /ui/demo/real-model write the documentation pictures there
 * (docs/widget-*.png). */
#include <math.h>
#include <string.h>

#include <gtk/gtk.h>

#include "vl-attention-view.h"
#include "vl-box-view.h"
#include "vl-draw-boxes.h"
#include "vl-class-bars.h"
#include "vl-colormap.h"
#include "vl-confusion-view.h"
#include "vl-embedding-panel.h"
#include "vl-embedding-view.h"
#include "vl-jobs.h"
#include "vl-knn-panel.h"
#include "vl-task-view.h"
#include "vl-try-panel.h"
#include "vl-loss-chart.h"
#include "vl-resources.h"   /* the stat cards' template */
#include "vl-stat-cards.h"
#include "vl-test-util.h"
#include "vl-trainer.h"

/* ------------------------------------------------------------------ helpers */

typedef struct {
  int     width, height;
  guint8 *rgba;            /* straight (not premultiplied) RGBA, width * 4 per row */
} Pixels;

static void
pixels_free (Pixels *p)
{
  g_free (p->rgba);
  g_free (p);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC (Pixels, pixels_free)

static Pixels *
pixels_from_texture (GdkTexture *t)
{
  Pixels *p = g_new0 (Pixels, 1);
  p->width = gdk_texture_get_width (t);
  p->height = gdk_texture_get_height (t);
  gsize stride = (gsize) p->width * 4;
  guint8 *bgra = g_malloc (stride * p->height);
  gdk_texture_download (t, bgra, stride);   /* cairo ARGB32: B G R A, premultiplied */
  p->rgba = g_malloc (stride * p->height);
  for (gsize i = 0; i < (gsize) p->width * p->height; i++)
    {
      guint8 b = bgra[4 * i], g = bgra[4 * i + 1], r = bgra[4 * i + 2], a = bgra[4 * i + 3];
      guint8 *o = p->rgba + 4 * i;
      o[0] = a ? (guint8) MIN (255, r * 255 / a) : 0;
      o[1] = a ? (guint8) MIN (255, g * 255 / a) : 0;
      o[2] = a ? (guint8) MIN (255, b * 255 / a) : 0;
      o[3] = a;
    }
  g_free (bgra);
  return p;
}

static Pixels *
pixels_from_png (const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GdkTexture) t = gdk_texture_new_from_filename (path, &error);
  g_assert_no_error (error);
  return pixels_from_texture (t);
}

static const guint8 *
px (const Pixels *p, int x, int y)
{
  g_assert_cmpint (x, >=, 0);
  g_assert_cmpint (y, >=, 0);
  g_assert_cmpint (x, <, p->width);
  g_assert_cmpint (y, <, p->height);
  return p->rgba + ((gsize) y * p->width + x) * 4;
}

static int
colour_dist (const guint8 *c, int r, int g, int b)
{
  return MAX (MAX (abs (c[0] - r), abs (c[1] - g)), abs (c[2] - b));
}

/* Pixels (opaque enough) within tol of the colour; their mean y into *mean_y. */
static int
count_colour (const Pixels *p, int r, int g, int b, int tol, double *mean_y)
{
  int n = 0;
  double sy = 0;
  for (int y = 0; y < p->height; y++)
    for (int x = 0; x < p->width; x++)
      {
        const guint8 *c = px (p, x, y);
        if (c[3] > 200 && colour_dist (c, r, g, b) <= tol)
          {
            n++;
            sy += y;
          }
      }
  if (mean_y != NULL)
    *mean_y = n > 0 ? sy / n : NAN;
  return n;
}

/* The entry of a colour map nearest to a pixel (where on the scale it lies). */
static int
lut_position (VlColormap cmap, const guint8 *c)
{
  const float (*lut)[3] = vl_colormap_lut (cmap);
  int best = 0;
  double bd = INFINITY;
  for (int i = 0; i < 256; i++)
    {
      double d = 0;
      for (int k = 0; k < 3; k++)
        d += (lut[i][k] * 255 - c[k]) * (lut[i][k] * 255 - c[k]);
      if (d < bd)
        {
          bd = d;
          best = i;
        }
    }
  return best;
}

static gboolean
tick_cb (GtkWidget *w, GdkFrameClock *clock, gpointer data)
{
  int *ticks = data;
  (*ticks)++;
  return *ticks < 3 ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

/* A window of the given size holding the widget, shown and painted at least twice. */
static GtkWidget *
show_in_window (GtkWidget *child, int width, int height)
{
  GtkWidget *win = gtk_window_new ();
  gtk_window_set_default_size (GTK_WINDOW (win), width, height);
  gtk_window_set_decorated (GTK_WINDOW (win), FALSE);
  gtk_window_set_child (GTK_WINDOW (win), child);
  gtk_window_present (GTK_WINDOW (win));
  int ticks = 0;
  gtk_widget_add_tick_callback (child, tick_cb, &ticks, NULL);
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (ticks < 3 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_cmpint (ticks, >=, 3);
  g_assert_true (gtk_widget_get_mapped (child));
  return win;
}

/* Lets pending redraws and relayouts happen. */
static void
settle (GtkWidget *w)
{
  int ticks = 0;
  gtk_widget_queue_draw (w);
  gtk_widget_add_tick_callback (w, tick_cb, &ticks, NULL);
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (ticks < 3 && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
}

/* The widget as it is on screen, through the GSK cairo renderer. */
static Pixels *
render_widget (GtkWidget *w)
{
  settle (w);
  int W = gtk_widget_get_width (w), H = gtk_widget_get_height (w);
  g_assert_cmpint (W, >, 0);
  g_assert_cmpint (H, >, 0);
  g_autoptr(GdkPaintable) paintable = gtk_widget_paintable_new (w);
  GtkSnapshot *snapshot = gtk_snapshot_new ();
  gdk_paintable_snapshot (paintable, snapshot, W, H);
  GskRenderNode *node = gtk_snapshot_free_to_node (snapshot);
  g_assert_nonnull (node);
  g_autoptr(GskRenderer) renderer = gsk_cairo_renderer_new ();
  g_autoptr(GError) error = NULL;
  gsk_renderer_realize (renderer, NULL, &error);
  g_assert_no_error (error);
  g_autoptr(GdkTexture) t = gsk_renderer_render_texture (renderer, node,
                                                         &GRAPHENE_RECT_INIT (0, 0, W, H));
  gsk_renderer_unrealize (renderer);
  gsk_render_node_unref (node);
  /* VITLAB_TEST_RENDERS=dir keeps every rendering, to look at */
  const char *keep = g_getenv ("VITLAB_TEST_RENDERS");
  if (keep != NULL)
    {
      static int n = 0;
      g_autofree char *name = g_strdup_printf ("render-%02d.png", n++);
      g_autofree char *path = g_build_filename (keep, name, NULL);
      gdk_texture_save_to_png (t, path);
    }
  return pixels_from_texture (t);
}

/* Writes a widget rendering over an opaque background (what a screenshot shows). */
static void
save_over_background (const Pixels *p, double bg, const char *path)
{
  cairo_surface_t *s = cairo_image_surface_create (CAIRO_FORMAT_RGB24, p->width, p->height);
  guint8 *data = cairo_image_surface_get_data (s);
  int stride = cairo_image_surface_get_stride (s);
  for (int y = 0; y < p->height; y++)
    for (int x = 0; x < p->width; x++)
      {
        const guint8 *c = px (p, x, y);
        double a = c[3] / 255.0;
        guint32 rgb = 0;
        for (int k = 0; k < 3; k++)
          rgb = (rgb << 8) | (guint32) lround (c[k] * a + bg * 255 * (1 - a));
        ((guint32 *) (data + (gsize) y * stride))[x] = rgb;
      }
  cairo_surface_mark_dirty (s);
  g_assert_cmpint (cairo_surface_write_to_png (s, path), ==, CAIRO_STATUS_SUCCESS);
  cairo_surface_destroy (s);
}

static char *
tmp_file (const char *name)
{
  g_autofree char *dir = vl_test_tmpdir ();
  return g_build_filename (dir, name, NULL);
}

static void
count_notify (GObject *o, GParamSpec *pspec, int *n)
{
  (*n)++;
}

/* ------------------------------------------------------------------ colour maps */

static void
test_colormap_matplotlib (void)
{
  const float (*v)[3] = vl_colormap_lut (VL_COLORMAP_VIRIDIS);
  const float (*f)[3] = vl_colormap_lut (VL_COLORMAP_INFERNO);
  const float v0[3] = { 0.267004f, 0.004874f, 0.329415f };
  const float v255[3] = { 0.993248f, 0.906157f, 0.143936f };
  const float v128[3] = { 0.127568f, 0.566949f, 0.550556f };
  const float i0[3] = { 0.001462f, 0.000466f, 0.013866f };
  const float i255[3] = { 0.988362f, 0.998364f, 0.644924f };
  const float i128[3] = { 0.735683f, 0.215906f, 0.330245f };
  for (int c = 0; c < 3; c++)
    {
      g_assert_cmpfloat (v[0][c], ==, v0[c]);
      g_assert_cmpfloat (v[255][c], ==, v255[c]);
      g_assert_cmpfloat (v[128][c], ==, v128[c]);
      g_assert_cmpfloat (f[0][c], ==, i0[c]);
      g_assert_cmpfloat (f[255][c], ==, i255[c]);
      g_assert_cmpfloat (f[128][c], ==, i128[c]);
    }
  /* both maps grow monotonically in lightness (their design property) */
  for (int m = 0; m < 2; m++)
    {
      const float (*lut)[3] = vl_colormap_lut ((VlColormap) m);
      double prev = -1;
      for (int i = 0; i < 256; i++)
        {
          double l = 0.2126 * lut[i][0] + 0.7152 * lut[i][1] + 0.0722 * lut[i][2];
          g_assert_cmpfloat (l, >, prev - 0.002);
          prev = l;
        }
    }
  /* matplotlib's lookup: floor (t * N), clamped */
  g_assert_cmpint (vl_colormap_index (0.0), ==, 0);
  g_assert_cmpint (vl_colormap_index (-3.0), ==, 0);
  g_assert_cmpint (vl_colormap_index (NAN), ==, 0);
  g_assert_cmpint (vl_colormap_index (0.5), ==, 128);
  g_assert_cmpint (vl_colormap_index (0.999), ==, 255);
  g_assert_cmpint (vl_colormap_index (1.0), ==, 255);
  g_assert_cmpint (vl_colormap_index (7.0), ==, 255);
  guint8 rgb[3];
  vl_colormap_map_u8 (VL_COLORMAP_INFERNO, 1.0, rgb);
  g_assert_cmpint (rgb[0], ==, 252);
  g_assert_cmpint (rgb[1], ==, 255);
  g_assert_cmpint (rgb[2], ==, 164);
  g_assert_cmpstr (vl_colormap_name (VL_COLORMAP_INFERNO), ==, "inferno");
  g_assert_true (G_TYPE_IS_ENUM (VL_TYPE_COLORMAP));
}

/* ------------------------------------------------------------------ loss chart */

/* Steps 1 … n of a decaying loss with a deterministic wiggle. */
static VlStepPoint *
decaying_steps (int n, int per_epoch, double lo, double hi)
{
  VlStepPoint *p = g_new0 (VlStepPoint, n);
  for (int i = 0; i < n; i++)
    {
      p[i].step = i + 1;
      p[i].epoch = i / per_epoch;
      double base = lo + (hi - lo) * exp (-6.0 * i / n);
      p[i].loss = (float) (base * (1.0 + 0.15 * sin (i * 1.7)));
      p[i].lr = (float) (1e-3 * (1.0 - (double) i / n));
      p[i].grad_norm = (float) (1.0 + 0.5 * cos (i * 0.3));
    }
  return p;
}

static void
test_loss_chart_points (void)
{
  GtkWidget *w = vl_loss_chart_new ();
  VlLossChart *c = VL_LOSS_CHART (w);
  g_object_ref_sink (w);
  int notified = 0;
  g_signal_connect (w, "notify::n-points", G_CALLBACK (count_notify), &notified);
  g_autofree VlStepPoint *p = decaying_steps (500, 100, 0.2, 2.0);
  for (int i = 0; i < 500; i += 37)
    vl_loss_chart_add_steps (c, p + i, MIN (37, 500 - i));
  g_assert_cmpint (vl_loss_chart_get_n_points (c), ==, 500);
  g_assert_cmpint (notified, ==, 14);

  /* the bias-corrected EMA: the first value is the first loss, and it matches a reference
   * computed here whatever the chunking */
  double beta = vl_loss_chart_get_smoothing (c), s = 0, wsum = 0;
  for (int i = 0; i < 500; i++)
    {
      s = beta * s + (1 - beta) * p[i].loss;
      wsum = beta * wsum + (1 - beta);
      g_assert_cmpfloat_with_epsilon (vl_loss_chart_get_smoothed (c, i), s / wsum,
                                      1e-5 * s / wsum);
    }
  g_assert_cmpfloat (vl_loss_chart_get_smoothed (c, 0), ==, p[0].loss);
  /* a constant series smooths to itself */
  vl_loss_chart_set_smoothing (c, 0.99);
  g_assert_cmpfloat (vl_loss_chart_get_smoothing (c), ==, 0.99);

  /* a resumed run re-posting steps replaces the tail */
  vl_loss_chart_add_steps (c, p + 400, 20);
  g_assert_cmpint (vl_loss_chart_get_n_points (c), ==, 420);

  VlEpochMetrics m = { .epoch = 0, .step = 100, .train_loss = 1.0 };
  m.val.n = 10;
  m.val.loss = 0.9;
  m.val.top1 = 0.5;
  vl_loss_chart_add_epoch (c, &m);
  m.val.loss = 0.8;     /* the same epoch again replaces it */
  vl_loss_chart_add_epoch (c, &m);
  g_assert_cmpint (vl_loss_chart_get_n_epochs (c), ==, 1);

  vl_loss_chart_new_run (c, "second");
  g_assert_cmpint (vl_loss_chart_get_n_points (c), ==, 0);
  g_assert_cmpint (vl_loss_chart_get_n_history (c), ==, 1);
  vl_loss_chart_new_run (c, "third");   /* an empty run is not kept */
  g_assert_cmpint (vl_loss_chart_get_n_history (c), ==, 1);
  vl_loss_chart_add_steps (c, p, 10);
  vl_loss_chart_clear (c);
  g_assert_cmpint (vl_loss_chart_get_n_points (c), ==, 0);
  g_assert_cmpint (vl_loss_chart_get_n_history (c), ==, 0);
  g_assert_finalize_object (w);
}

/* The current run's smoothed line is drawn in the loss blue (#1c71d8 on a light style). */
static void
test_loss_chart_png (void)
{
  GtkWidget *w = vl_loss_chart_new ();
  VlLossChart *c = VL_LOSS_CHART (w);
  GtkWidget *win = show_in_window (w, 640, 400);
  g_autofree char *empty_path = tmp_file ("empty.png");
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_loss_chart_export_png (c, empty_path, 640, 360, &error));
  g_assert_no_error (error);
  g_autoptr(Pixels) empty = pixels_from_png (empty_path);
  g_assert_cmpint (empty->width, ==, 640);
  g_assert_cmpint (empty->height, ==, 360);
  /* only the legend's 16 x 2 px swatch */
  g_assert_cmpint (count_colour (empty, 0x1c, 0x71, 0xd8, 30, NULL), <=, 40);

  g_autofree VlStepPoint *p = decaying_steps (300, 100, 0.3, 2.5);
  vl_loss_chart_add_steps (c, p, 300);
  g_autofree char *path = tmp_file ("chart.png");
  g_assert_true (vl_loss_chart_export_png (c, path, 640, 360, &error));
  g_assert_no_error (error);
  g_autoptr(Pixels) img = pixels_from_png (path);
  /* a 2 px line across ~500 px of plot: hundreds of pixels of that blue */
  int n = count_colour (img, 0x1c, 0x71, 0xd8, 30, NULL);
  g_test_message ("curve pixels: %d", n);
  g_assert_cmpint (n, >, 400);
  /* the export is opaque (the style's background), the widget draws no background */
  g_assert_cmpint (px (img, 2, 2)[3], ==, 255);

  /* the widget itself, on screen */
  g_autoptr(Pixels) shown = render_widget (w);
  g_assert_cmpint (count_colour (shown, 0x1c, 0x71, 0xd8, 30, NULL), >, 400);
  /* hovering draws the rule and the read-out: the picture changes */
  vl_loss_chart_hover_at (c, shown->width / 2.0, shown->height / 2.0);
  g_autoptr(Pixels) hovered = render_widget (w);
  int changed = 0;
  for (gsize i = 0; i < (gsize) shown->width * shown->height * 4; i++)
    changed += shown->rgba[i] != hovered->rgba[i];
  g_assert_cmpint (changed, >, 500);

  g_assert_true (vl_loss_chart_export_png (c, "/nonexistent-dir/x.png", 100, 100, &error) ==
                 FALSE);
  g_assert_nonnull (error);
  g_clear_error (&error);
  g_assert_false (vl_loss_chart_export_png (c, path, 0, 100, &error));
  g_assert_error (error, G_IO_ERROR, G_IO_ERROR_INVALID_ARGUMENT);
  gtk_window_destroy (GTK_WINDOW (win));
}

/* A loss falling from 10 to 0.01 hugs the bottom of a linear axis; on a log axis it spreads
 * over the plot: the curve's mean height moves up by a good part of the plot. */
static void
test_loss_chart_log_scale (void)
{
  GtkWidget *w = vl_loss_chart_new ();
  VlLossChart *c = VL_LOSS_CHART (w);
  GtkWidget *win = show_in_window (w, 640, 400);
  g_autofree VlStepPoint *p = g_new0 (VlStepPoint, 1000);
  for (int i = 0; i < 1000; i++)
    {
      p[i].step = i + 1;
      p[i].loss = (float) (10.0 * pow (1e-3, i / 999.0));
    }
  vl_loss_chart_add_steps (c, p, 1000);
  vl_loss_chart_set_smoothing (c, 0.0);
  g_autoptr(GError) error = NULL;
  g_autofree char *lin_path = tmp_file ("lin.png");
  g_autofree char *log_path = tmp_file ("log.png");
  g_assert_true (vl_loss_chart_export_png (c, lin_path, 640, 360, &error));
  int notified = 0;
  g_signal_connect (w, "notify::log-scale", G_CALLBACK (count_notify), &notified);
  /* through the widget's property action, as a toggle button inside it would */
  g_assert_true (gtk_widget_activate_action (w, "chart.log-scale", NULL));
  g_assert_true (vl_loss_chart_get_log_scale (c));
  g_assert_cmpint (notified, ==, 1);
  vl_loss_chart_set_log_scale (c, TRUE);   /* no change, no notify */
  g_assert_cmpint (notified, ==, 1);
  g_assert_true (vl_loss_chart_export_png (c, log_path, 640, 360, &error));
  g_assert_no_error (error);
  g_autoptr(Pixels) lin = pixels_from_png (lin_path);
  g_autoptr(Pixels) lg = pixels_from_png (log_path);
  double ylin, ylog;
  int nlin = count_colour (lin, 0x1c, 0x71, 0xd8, 30, &ylin);
  int nlog = count_colour (lg, 0x1c, 0x71, 0xd8, 30, &ylog);
  g_test_message ("linear: %d px at mean y %.1f; log: %d px at mean y %.1f", nlin, ylin, nlog,
                  ylog);
  g_assert_cmpint (nlin, >, 300);
  g_assert_cmpint (nlog, >, 300);
  /* pure exponential decay on a log axis is a straight diagonal: its mean is mid-plot */
  g_assert_cmpfloat (ylin - ylog, >, 40);
  gtk_window_destroy (GTK_WINDOW (win));
}

static void
test_loss_chart_csv (void)
{
  GtkWidget *w = vl_loss_chart_new ();
  VlLossChart *c = VL_LOSS_CHART (w);
  g_object_ref_sink (w);
  g_autofree VlStepPoint *p = decaying_steps (37, 20, 0.1, 3.0);
  vl_loss_chart_add_steps (c, p, 37);
  VlEpochMetrics m = { .epoch = 0, .step = 20, .train_loss = 1.5 };
  m.val.n = 8;
  m.val.loss = 0.625;
  m.val.top1 = 0.75;
  m.val.top5 = NAN;
  vl_loss_chart_add_epoch (c, &m);
  vl_loss_chart_set_run_label (c, "lr 1e-3, \"head\"");
  g_autofree char *path = tmp_file ("chart.csv");
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_loss_chart_export_csv (c, path, &error));
  g_assert_no_error (error);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (path, &text, NULL, &error));
  g_auto(GStrv) lines = g_strsplit (text, "\n", -1);
  g_assert_cmpint (g_strv_length (lines), ==, 1 + 37 + 1);   /* header, steps, "" */
  g_assert_cmpstr (lines[0], ==, "run,step,epoch,loss,loss_smoothed,lr,grad_norm,val_loss,"
                                 "val_top1,val_top5");
  g_assert_cmpstr (lines[38], ==, "");
  for (int i = 0; i < 37; i++)
    {
      const char *line = lines[i + 1];
      g_assert_true (g_str_has_prefix (line, "\"lr 1e-3, \"\"head\"\"\","));
      const char *rest = line + strlen ("\"lr 1e-3, \"\"head\"\"\",");
      g_auto(GStrv) f = g_strsplit (rest, ",", -1);
      g_assert_cmpint (g_strv_length (f), ==, 9);
      g_assert_cmpint (g_ascii_strtoll (f[0], NULL, 10), ==, p[i].step);
      g_assert_cmpint (g_ascii_strtoll (f[1], NULL, 10), ==, p[i].epoch);
      /* %.9g round-trips a float exactly */
      g_assert_cmpfloat ((float) g_ascii_strtod (f[2], NULL), ==, p[i].loss);
      g_assert_cmpfloat ((float) g_ascii_strtod (f[3], NULL), ==,
                         (float) vl_loss_chart_get_smoothed (c, i));
      g_assert_cmpfloat ((float) g_ascii_strtod (f[4], NULL), ==, p[i].lr);
      g_assert_cmpfloat ((float) g_ascii_strtod (f[5], NULL), ==, p[i].grad_norm);
      if (p[i].step == 20)
        {
          g_assert_cmpstr (f[6], ==, "0.625");
          g_assert_cmpstr (f[7], ==, "0.75");
          g_assert_cmpstr (f[8], ==, "");   /* NAN top-5 is left empty */
        }
      else
        {
          g_assert_cmpstr (f[6], ==, "");
          g_assert_cmpstr (f[7], ==, "");
        }
    }
  /* the write is atomic: no temporary file is left beside it */
  g_autofree char *dir = g_path_get_dirname (path);
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  int files = 0;
  while (g_dir_read_name (d) != NULL)
    files++;
  g_assert_cmpint (files, ==, 1);
  g_assert_false (vl_loss_chart_export_csv (c, "/nonexistent-dir/x.csv", &error));
  g_assert_nonnull (error);
  g_assert_finalize_object (w);
}

/* 200 000 steps draw about as fast as a few hundred: decimated to pixel columns. */
static void
test_loss_chart_many_points (void)
{
  GtkWidget *w = vl_loss_chart_new ();
  VlLossChart *c = VL_LOSS_CHART (w);
  g_object_ref_sink (w);
  const int n = 200000;
  g_autofree VlStepPoint *p = decaying_steps (n, 5000, 0.2, 3.0);
  vl_loss_chart_add_steps (c, p, n);
  g_autofree char *path = tmp_file ("many.png");
  g_autoptr(GError) error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  g_assert_true (vl_loss_chart_export_png (c, path, 800, 400, &error));
  double ms = (g_get_monotonic_time () - t0) / 1000.0;
  g_test_message ("200k steps drawn and encoded in %.1f ms", ms);
  g_assert_cmpfloat (ms, <, 3000);
  g_autoptr(Pixels) img = pixels_from_png (path);
  g_assert_cmpint (count_colour (img, 0x1c, 0x71, 0xd8, 30, NULL), >, 400);
  g_assert_finalize_object (w);
}

/* The gradient strip colours the largest norm with viridis' last entry and leaves a frozen
 * group blank. */
static void
test_loss_chart_group_norms (void)
{
  GtkWidget *w = vl_loss_chart_new ();
  VlLossChart *c = VL_LOSS_CHART (w);
  g_object_ref_sink (w);
  const char *names[3] = { "stem", "blocks.0", "head" };
  g_autofree VlStepPoint *p = decaying_steps (60, 30, 0.3, 1.0);
  vl_loss_chart_add_steps (c, p, 60);
  g_autofree char *before = tmp_file ("no-strip.png");
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_loss_chart_export_png (c, before, 640, 400, &error));
  for (int s = 1; s <= 60; s++)
    {
      double norms[3] = { 0.0, 0.01 * s, s == 30 ? 50.0 : 1.0 };
      vl_loss_chart_set_group_norms (c, 3, names, norms, s);
    }
  g_autofree char *after = tmp_file ("strip.png");
  g_assert_true (vl_loss_chart_export_png (c, after, 640, 400, &error));
  g_assert_no_error (error);
  g_autoptr(Pixels) a = pixels_from_png (before);
  g_autoptr(Pixels) b = pixels_from_png (after);
  /* viridis[255] (253, 231, 37): the spike of the head at step 30 */
  g_assert_cmpint (count_colour (a, 253, 231, 37, 6, NULL), ==, 0);
  double ymax;
  int nmax = count_colour (b, 253, 231, 37, 6, &ymax);
  g_assert_cmpint (nmax, >, 0);
  /* viridis[0] (68, 1, 84): the smallest norm, blocks.0 at step 1 */
  double ymin;
  g_assert_cmpint (count_colour (b, 68, 1, 84, 6, &ymin), >, 0);
  /* the head is the last row, below blocks.0 */
  g_assert_cmpfloat (ymax, >, ymin);
  g_assert_finalize_object (w);
}

/* ------------------------------------------------------------------ attention view */

static VlImage *
gray_image (int w, int h, guint8 v)
{
  VlImage *img = vl_image_new (w, h, 3);
  memset (img->pixels, v, (gsize) w * h * 3);
  return img;
}

/* [depth][heads][T][T] attention whose rows are uniform over the patches, with extra weight
 * on `hot` in row `row` of every head and block. */
static float *
make_attention (int depth, int heads, int n_prefix, int gh, int gw, int row, int hot,
                float prefix_value)
{
  int T = n_prefix + gh * gw;
  float *a = g_new (float, (gsize) depth * heads * T * T);
  for (gsize i = 0; i < (gsize) depth * heads * T * T; i++)
    a[i] = 0.01f;
  for (int l = 0; l < depth; l++)
    for (int h = 0; h < heads; h++)
      {
        float *A = a + ((gsize) l * heads + h) * T * T;
        for (int r = 0; r < T; r++)
          for (int c = 0; c < n_prefix; c++)
            A[r * T + c] = prefix_value;
        A[row * T + n_prefix + hot] = 0.5f;
      }
  return a;
}

/* The brightest pixel inside the main image rect, in grid coordinates. */
static void
brightest_patch (GtkWidget *view, const Pixels *pix, int gh, int gw, int *row, int *col)
{
  graphene_rect_t r;
  g_assert_true (vl_attention_view_get_image_rect (VL_ATTENTION_VIEW (view), FALSE, &r));
  double best = -1;
  int bx = 0, by = 0;
  for (int y = (int) ceil (r.origin.y); y < (int) (r.origin.y + r.size.height); y++)
    for (int x = (int) ceil (r.origin.x); x < (int) (r.origin.x + r.size.width); x++)
      {
        const guint8 *c = px (pix, x, y);
        double l = 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
        if (l > best)
          {
            best = l;
            bx = x;
            by = y;
          }
      }
  *col = (int) ((bx - r.origin.x) / r.size.width * gw);
  *row = (int) ((by - r.origin.y) / r.size.height * gh);
}

/* A hot patch at (row 1, col 2) of a 3 x 4 grid lights up that part of a 4:3 image. */
static void
test_attention_hot_patch (void)
{
  const int gh = 3, gw = 4, P = 1, T = P + gh * gw;
  GtkWidget *w = vl_attention_view_new ();
  VlAttentionView *v = VL_ATTENTION_VIEW (w);
  GtkWidget *win = show_in_window (w, 480, 420);
  g_autoptr(VlImage) img = gray_image (64, 48, 90);
  vl_attention_view_set_image (v, img);
  g_autofree float *attn = make_attention (2, 3, P, gh, gw, 0, 1 * gw + 2, 0.01f);
  g_assert_true (vl_attention_view_set_attention (v, attn, 2, 3, T, P, TRUE, gh, gw));
  vl_attention_view_set_mode (v, VL_ATTN_MODE_MEAN_HEADS);
  vl_attention_view_set_opacity (v, 1.0);
  vl_attention_view_set_colormap (v, VL_COLORMAP_INFERNO);

  float map[12];
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  g_assert_cmpfloat (map[6], ==, 0.5f);
  g_assert_cmpfloat (map[0], ==, 0.01f);

  /* shown at the image's aspect (4:3) */
  graphene_rect_t r;
  g_assert_true (vl_attention_view_get_image_rect (v, FALSE, &r));
  g_assert_cmpfloat_with_epsilon (r.size.width / r.size.height, 64.0 / 48.0, 0.02);
  g_assert_false (vl_attention_view_get_image_rect (v, TRUE, &r));

  g_autoptr(Pixels) pix = render_widget (w);
  int row, col;
  brightest_patch (w, pix, gh, gw, &row, &col);
  g_assert_cmpint (row, ==, 1);
  g_assert_cmpint (col, ==, 2);
  /* the centre of that patch is inferno's top colour, a far corner its bottom one */
  g_assert_true (vl_attention_view_get_image_rect (v, FALSE, &r));
  const guint8 *hot = px (pix, (int) (r.origin.x + r.size.width * 2.5 / 4),
                          (int) (r.origin.y + r.size.height * 1.5 / 3));
  g_assert_cmpint (lut_position (VL_COLORMAP_INFERNO, hot), >=, 240);
  const guint8 *cold = px (pix, (int) (r.origin.x + 3), (int) (r.origin.y + r.size.height - 4));
  g_assert_cmpint (lut_position (VL_COLORMAP_INFERNO, cold), <=, 8);

  /* opacity 0: the gray image alone */
  vl_attention_view_set_opacity (v, 0.0);
  g_autoptr(Pixels) plain = render_widget (w);
  hot = px (plain, (int) (r.origin.x + r.size.width * 2.5 / 4),
            (int) (r.origin.y + r.size.height * 1.5 / 3));
  g_assert_cmpint (colour_dist (hot, 90, 90, 90), <=, 2);

  /* the export: the same picture on an opaque background */
  g_autofree char *path = tmp_file ("attention.png");
  g_autoptr(GError) error = NULL;
  vl_attention_view_set_opacity (v, 0.8);
  g_assert_true (vl_attention_view_export_png (v, path, 0, 0, &error));
  g_assert_no_error (error);
  g_autoptr(Pixels) exported = pixels_from_png (path);
  g_assert_cmpint (exported->width, >, 128);
  g_assert_cmpint (px (exported, 1, 1)[3], ==, 255);
  gtk_window_destroy (GTK_WINDOW (win));
}

/* Prefix tokens (CLS, distillation) never reach the map: a huge CLS column changes nothing. */
static void
test_attention_prefix_skipped (void)
{
  const int gh = 3, gw = 4, P = 2, T = P + gh * gw;
  GtkWidget *w = vl_attention_view_new ();
  VlAttentionView *v = VL_ATTENTION_VIEW (w);
  GtkWidget *win = show_in_window (w, 400, 360);
  g_autoptr(VlImage) img = gray_image (80, 60, 128);
  vl_attention_view_set_image (v, img);
  /* hot patch (2, 1); the CLS and DIST columns hold 1000 in every row */
  g_autofree float *attn = make_attention (1, 2, P, gh, gw, 0, 2 * gw + 1, 1000.0f);
  g_assert_true (vl_attention_view_set_attention (v, attn, 1, 2, T, P, TRUE, gh, gw));
  vl_attention_view_set_mode (v, VL_ATTN_MODE_HEAD);
  vl_attention_view_set_opacity (v, 1.0);
  float map[12];
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  for (int c = 0; c < 12; c++)
    g_assert_cmpfloat (map[c], ==, c == 9 ? 0.5f : 0.01f);
  g_autoptr(Pixels) pix = render_widget (w);
  int row, col;
  brightest_patch (w, pix, gh, gw, &row, &col);
  g_assert_cmpint (row, ==, 2);
  g_assert_cmpint (col, ==, 1);

  /* registers but no CLS token: the query is the mean of the patch rows */
  g_autofree float *noc = make_attention (1, 1, P, gh, gw, P + 3, 7, 1000.0f);
  g_assert_true (vl_attention_view_set_attention (v, noc, 1, 1, T, P, FALSE, gh, gw));
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  for (int c = 0; c < 12; c++)
    g_assert_cmpfloat_with_epsilon (map[c], c == 7 ? 0.01f + 0.49f / 12 : 0.01f, 1e-6);

  gtk_window_destroy (GTK_WINDOW (win));

  /* sizes that do not fit are a programming error: refused with a critical */
  g_test_trap_subprocess ("/ui/attention/prefix-skipped/subprocess", 0,
                          G_TEST_SUBPROCESS_DEFAULT);
  g_test_trap_assert_failed ();
  g_test_trap_assert_stderr ("*15 tokens does not fit 2 prefix tokens and a 3x4 grid*");
}

/* The attention pool's map (SigLIP's MAP head): the mean of its heads over the patches, the
 * brightest patch where the pool looks; forgotten with the side's attention; and a side without
 * one says so instead of showing another map. */
static void
test_attention_pool_mode (void)
{
  const int gh = 3, gw = 4, NP = gh * gw, T = NP;
  GtkWidget *w = vl_attention_view_new ();
  VlAttentionView *v = VL_ATTENTION_VIEW (w);
  GtkWidget *win = show_in_window (w, 400, 360);
  g_autoptr(VlImage) img = gray_image (80, 60, 128);
  vl_attention_view_set_image (v, img);
  g_autofree float *attn = make_attention (1, 2, 0, gh, gw, 0, 2, 0.0f);
  g_assert_true (vl_attention_view_set_attention (v, attn, 1, 2, T, 0, FALSE, gh, gw));
  /* head 0 looks at patch (1, 2), head 1 spreads evenly */
  float pool[2 * 12];
  for (int c = 0; c < NP; c++)
    {
      pool[c] = c == gw + 2 ? 0.78f : 0.02f;
      pool[NP + c] = 1.0f / NP;
    }
  g_assert_true (vl_attention_view_set_pool (v, FALSE, pool, 2, gh, gw));
  vl_attention_view_set_mode (v, VL_ATTN_MODE_POOL);
  g_assert_cmpint (vl_attention_view_get_mode (v), ==, VL_ATTN_MODE_POOL);
  vl_attention_view_set_opacity (v, 1.0);
  float map[12];
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  for (int c = 0; c < NP; c++)
    g_assert_cmpfloat_with_epsilon (map[c], 0.5f * (pool[c] + pool[NP + c]), 1e-6);
  g_autoptr(Pixels) pix = render_widget (w);
  int row, col;
  brightest_patch (w, pix, gh, gw, &row, &col);
  g_assert_cmpint (row, ==, 1);
  g_assert_cmpint (col, ==, 2);
  /* new attention for the side forgets its pool map: no map in this mode */
  g_assert_true (vl_attention_view_set_attention (v, attn, 1, 2, T, 0, FALSE, gh, gw));
  g_assert_false (vl_attention_view_get_heatmap (v, FALSE, map));
  /* the other modes are untouched by it */
  vl_attention_view_set_mode (v, VL_ATTN_MODE_ROLLOUT);
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  gtk_window_destroy (GTK_WINDOW (win));
}

static void
test_attention_bad_sizes_subprocess (void)
{
  GtkWidget *w = g_object_ref_sink (vl_attention_view_new ());
  float attn[16 * 16] = { 0 };
  vl_attention_view_set_attention (VL_ATTENTION_VIEW (w), attn, 1, 1, 15, 2, TRUE, 3, 4);
}

/* A click on a patch makes its row the query; a second click goes back to CLS. */
static void
test_attention_query_click (void)
{
  const int gh = 3, gw = 4, P = 1, T = P + gh * gw;
  GtkWidget *w = vl_attention_view_new ();
  VlAttentionView *v = VL_ATTENTION_VIEW (w);
  GtkWidget *win = show_in_window (w, 420, 380);
  g_autoptr(VlImage) img = gray_image (40, 30, 128);
  vl_attention_view_set_image (v, img);
  /* CLS looks at patch 0; patch 5 (row 1, col 1) looks at patch 11 (row 2, col 3) */
  g_autofree float *attn = make_attention (1, 1, P, gh, gw, 0, 0, 0.0f);
  attn[(P + 5) * T + P + 11] = 0.9f;
  g_assert_true (vl_attention_view_set_attention (v, attn, 1, 1, T, P, TRUE, gh, gw));
  vl_attention_view_set_mode (v, VL_ATTN_MODE_HEAD);
  vl_attention_view_set_opacity (v, 1.0);
  int notified = 0;
  g_signal_connect (w, "notify::query-patch", G_CALLBACK (count_notify), &notified);

  graphene_rect_t r;
  g_assert_true (vl_attention_view_get_image_rect (v, FALSE, &r));
  double x5 = r.origin.x + r.size.width * 1.5 / 4, y5 = r.origin.y + r.size.height * 1.5 / 3;
  g_assert_cmpint (vl_attention_view_patch_at (v, x5, y5), ==, 5);
  g_assert_cmpint (vl_attention_view_patch_at (v, r.origin.x - 3, y5), ==, -1);

  g_autoptr(Pixels) before = render_widget (w);
  int row, col;
  brightest_patch (w, before, gh, gw, &row, &col);
  g_assert_cmpint (row * gw + col, ==, 0);

  g_assert_cmpint (vl_attention_view_select_patch_at (v, x5, y5), ==, 5);
  g_assert_cmpint (vl_attention_view_get_query_patch (v), ==, 5);
  g_assert_cmpint (notified, ==, 1);
  float map[12];
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  g_assert_cmpfloat (map[11], ==, 0.9f);
  g_autoptr(Pixels) after = render_widget (w);
  brightest_patch (w, after, gh, gw, &row, &col);
  g_assert_cmpint (row, ==, 2);
  g_assert_cmpint (col, ==, 3);
  /* the selected patch is outlined in white */
  int whitest = 255;
  for (int dx = -2; dx <= 4; dx++)
    {
      const guint8 *edge = px (after, (int) (r.origin.x + r.size.width / 4) + dx,
                               (int) (r.origin.y + r.size.height * 1.5 / 3));
      whitest = MIN (whitest, colour_dist (edge, 255, 255, 255));
    }
  g_assert_cmpint (whitest, <=, 100);   /* a 1.5 px antialiased line over near-black */

  /* beside the image: nothing changes; the same patch again: back to CLS */
  g_assert_cmpint (vl_attention_view_select_patch_at (v, 1, 1), ==, 5);
  g_assert_cmpint (vl_attention_view_select_patch_at (v, x5, y5), ==, -1);
  g_assert_cmpint (notified, ==, 2);
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  g_assert_cmpfloat (map[0], ==, 0.5f);
  gtk_window_destroy (GTK_WINDOW (win));
}

static VlGeometry
small_geometry (gboolean class_token, int reg_tokens)
{
  VlGeometry g = { 0 };
  g.in_chans = 3;
  g.patch = 8;
  g.width = 32;
  g.depth = 3;
  g.heads = 2;
  g.mlp = 64;
  g.grid = 4;
  g.eps = 1e-6f;
  g.class_token = class_token;
  g.reg_tokens = reg_tokens;
  g.input_size = 32;
  g.crop_pct = 1.0;
  for (int i = 0; i < 4; i++)
    g.mean[i] = g.std[i] = 0.5f;
  return g;
}

/* Copies image b's attention of every block into [depth][H][T][T]. */
static float *
gather_attention (VlModel *m, int b)
{
  const VlGeometry *g = vl_model_geometry (m);
  int T = vl_model_n_tokens_last (m), H = g->heads;
  gsize per = (gsize) H * T * T;
  float *a = g_new (float, g->depth * per);
  for (int l = 0; l < g->depth; l++)
    memcpy (a + l * per, vl_model_attention (m, l) + b * per, per * sizeof (float));
  return a;
}

/* The view's rollout (computed from the captured attention, for the CLS query) is the
 * engine's vl_model_rollout, on a non-square grid, with and without a CLS token. */
static void
test_attention_rollout_matches_engine (void)
{
  for (int variant = 0; variant < 2; variant++)
    {
      gboolean cls = variant == 0;
      VlGeometry geo = small_geometry (cls, cls ? 1 : 2);
      g_autoptr(VlModel) m = vl_model_new_random (&geo, 5, 11 + variant);
      const VlGeometry *g = vl_model_geometry (m);
      /* 2 images of 24 x 40: a 3 x 5 grid (the position embedding is resampled) */
      const int B = 2, H = 24, W = 40, gh = 3, gw = 5;
      g_autofree float *x = g_new (float, B * 3 * H * W);
      GRand *rand = g_rand_new_with_seed (5);
      for (int i = 0; i < B * 3 * H * W; i++)
        x[i] = (float) g_rand_double_range (rand, -2, 2);
      g_rand_free (rand);
      g_autoptr(GError) error = NULL;
      g_assert_true (vl_model_forward (m, x, B, H, W, VL_FORWARD_CAPTURE_ATTN, &error));
      g_assert_no_error (error);
      int T = vl_model_n_tokens_last (m);
      g_assert_cmpint (T, ==, g->n_prefix + gh * gw);
      g_autofree float *roll = g_new (float, B * gh * gw);
      g_assert_true (vl_model_rollout (m, roll, &error));
      g_autofree float *attn = gather_attention (m, 1);

      GtkWidget *w = vl_attention_view_new ();
      g_object_ref_sink (w);
      VlAttentionView *v = VL_ATTENTION_VIEW (w);
      g_assert_true (vl_attention_view_set_attention (v, attn, g->depth, g->heads, T,
                                                      g->n_prefix, g->class_token, gh, gw));
      g_assert_cmpint (vl_attention_view_get_depth (v), ==, 3);
      g_assert_cmpint (vl_attention_view_get_heads (v), ==, 2);
      vl_attention_view_set_mode (v, VL_ATTN_MODE_ROLLOUT);
      float map[15];
      g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
      vl_test_assert_close (cls ? "rollout (CLS)" : "rollout (mean of patch rows)", map,
                            roll + gh * gw, gh * gw, 1e-6, 1e-4);
      g_assert_finalize_object (w);
    }
}

/* The trainer's PROBES give rollout maps only: the rollout shows them, the per-block modes
 * say they have nothing; a reference side adds the "pretrained" panel to the left. */
static void
test_attention_rollout_only_and_reference (void)
{
  const int gh = 2, gw = 3;
  GtkWidget *w = vl_attention_view_new ();
  VlAttentionView *v = VL_ATTENTION_VIEW (w);
  GtkWidget *win = show_in_window (w, 640, 360);
  g_autoptr(VlImage) img = gray_image (48, 32, 100);
  vl_attention_view_set_image (v, img);
  float now[6] = { 0.1f, 0.1f, 0.1f, 0.1f, 0.1f, 0.5f };
  float before[6] = { 0.5f, 0.1f, 0.1f, 0.1f, 0.1f, 0.1f };
  g_assert_true (vl_attention_view_set_rollout (v, now, gh, gw));
  int has_ref = 0;
  g_signal_connect (w, "notify::has-reference", G_CALLBACK (count_notify), &has_ref);
  g_assert_true (vl_attention_view_set_reference_rollout (v, before, gh, gw));
  g_assert_cmpint (has_ref, >=, 1);
  float map[6];
  g_assert_true (vl_attention_view_get_heatmap (v, FALSE, map));
  g_assert_cmpmem (map, sizeof map, now, sizeof now);
  g_assert_true (vl_attention_view_get_heatmap (v, TRUE, map));
  g_assert_cmpmem (map, sizeof map, before, sizeof before);
  vl_attention_view_set_mode (v, VL_ATTN_MODE_HEAD);
  g_assert_false (vl_attention_view_get_heatmap (v, FALSE, map));
  vl_attention_view_set_mode (v, VL_ATTN_MODE_ROLLOUT);

  graphene_rect_t rn, rr;
  settle (w);
  g_assert_true (vl_attention_view_get_image_rect (v, FALSE, &rn));
  g_assert_true (vl_attention_view_get_image_rect (v, TRUE, &rr));
  g_assert_cmpfloat (rr.origin.x + rr.size.width, <=, rn.origin.x);
  g_assert_cmpfloat_with_epsilon (rr.size.width, rn.size.width, 0.5);

  vl_attention_view_set_opacity (v, 1.0);
  g_autoptr(Pixels) pix = render_widget (w);
  /* the hot corner differs: bottom-right now, top-left before */
  const guint8 *now_hot = px (pix, (int) (rn.origin.x + rn.size.width * 5 / 6),
                              (int) (rn.origin.y + rn.size.height * 3 / 4));
  const guint8 *ref_hot = px (pix, (int) (rr.origin.x + rr.size.width / 6),
                              (int) (rr.origin.y + rr.size.height / 4));
  const guint8 *ref_cold = px (pix, (int) (rr.origin.x + rr.size.width * 5 / 6),
                               (int) (rr.origin.y + rr.size.height * 3 / 4));
  g_assert_cmpint (lut_position (VL_COLORMAP_INFERNO, now_hot), >=, 240);
  g_assert_cmpint (lut_position (VL_COLORMAP_INFERNO, ref_hot), >=, 240);
  g_assert_cmpint (lut_position (VL_COLORMAP_INFERNO, ref_cold), <=, 8);

  /* a new "now" map replaces only the heatmap: the same image, the hot spot moves */
  float moved[6] = { 0.1f, 0.5f, 0.1f, 0.1f, 0.1f, 0.1f };
  g_assert_true (vl_attention_view_set_rollout (v, moved, gh, gw));
  g_autoptr(Pixels) pix2 = render_widget (w);
  const guint8 *c = px (pix2, (int) (rn.origin.x + rn.size.width / 2),
                        (int) (rn.origin.y + rn.size.height / 4));
  g_assert_cmpint (lut_position (VL_COLORMAP_INFERNO, c), >=, 240);

  /* captions may be absent */
  vl_attention_view_set_labels (v, NULL, NULL);
  g_autoptr(Pixels) unlabelled = render_widget (w);
  g_assert_nonnull (unlabelled);

  g_assert_true (vl_attention_view_set_reference_rollout (v, NULL, 0, 0));
  g_assert_false (vl_attention_view_get_image_rect (v, TRUE, &rr));
  gtk_window_destroy (GTK_WINDOW (win));
}

static void
test_attention_properties (void)
{
  GtkWidget *w = vl_attention_view_new ();
  VlAttentionView *v = VL_ATTENTION_VIEW (w);
  g_object_ref_sink (w);
  const char *names[] = { "mode", "block", "head", "opacity", "colormap", "query-patch",
                          "depth", "heads" };
  int counts[G_N_ELEMENTS (names)] = { 0 };
  for (guint i = 0; i < G_N_ELEMENTS (names); i++)
    {
      g_autofree char *sig = g_strdup_printf ("notify::%s", names[i]);
      g_signal_connect (w, sig, G_CALLBACK (count_notify), &counts[i]);
    }
  g_object_set (w, "mode", VL_ATTN_MODE_HEAD, "block", 2, "head", 1, "opacity", 0.25,
                "colormap", VL_COLORMAP_VIRIDIS, NULL);
  for (int i = 0; i < 5; i++)
    g_assert_cmpint (counts[i], ==, 1);
  g_object_set (w, "mode", VL_ATTN_MODE_HEAD, "opacity", 0.25, NULL);   /* unchanged */
  g_assert_cmpint (counts[0], ==, 1);
  g_assert_cmpint (counts[3], ==, 1);

  /* block and head are clamped once the attention is known */
  const int gh = 2, gw = 2, T = 1 + 4;
  g_autofree float *attn = make_attention (2, 1, 1, gh, gw, 0, 0, 0.0f);
  g_assert_true (vl_attention_view_set_attention (v, attn, 2, 1, T, 1, TRUE, gh, gw));
  g_assert_cmpint (vl_attention_view_get_block (v), ==, 1);
  g_assert_cmpint (vl_attention_view_get_head (v), ==, 0);
  g_assert_cmpint (counts[6], >=, 1);
  vl_attention_view_set_block (v, 99);
  g_assert_cmpint (vl_attention_view_get_block (v), ==, 1);
  vl_attention_view_set_query_patch (v, 17);   /* outside the 2 x 2 grid: CLS */
  g_assert_cmpint (vl_attention_view_get_query_patch (v), ==, -1);

  /* the window binds its controls */
  GtkAdjustment *adj = gtk_adjustment_new (0.5, 0, 1, 0.05, 0.1, 0);
  g_object_bind_property (adj, "value", w, "opacity", G_BINDING_SYNC_CREATE);
  gtk_adjustment_set_value (adj, 0.9);
  g_assert_cmpfloat (vl_attention_view_get_opacity (v), ==, 0.9);
  g_object_unref (g_object_ref_sink (adj));
  /* and the property actions for menus */
  g_assert_true (gtk_widget_activate_action (w, "attention.mode", "s", "rollout"));
  g_assert_cmpint (vl_attention_view_get_mode (v), ==, VL_ATTN_MODE_ROLLOUT);
  g_assert_finalize_object (w);
}

/* The crop for display is the model's input: the preprocessing's bytes. */
static void
test_attention_crop (void)
{
  g_autofree char *path = vl_test_data_path ("synth-rgb.png", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlImage) img = vl_image_load (path, 3, &error);
  g_assert_no_error (error);
  VlPreprocess pp = { .channels = 3, .size = 32, .crop_pct = 0.875,
                      .interp = VL_INTERP_BICUBIC,
                      .mean = { 0.5f, 0.5f, 0.5f }, .std = { 0.5f, 0.5f, 0.5f } };
  g_autoptr(VlImage) crop = vl_attention_crop_for_display (img, &pp);
  g_assert_cmpint (crop->width, ==, 32);
  g_assert_cmpint (crop->height, ==, 32);
  g_assert_cmpint (crop->channels, ==, 3);
  g_autofree float *x = g_new (float, 3 * 32 * 32);
  vl_preprocess_eval (img, &pp, x);
  for (int c = 0; c < 3; c++)
    for (int i = 0; i < 32 * 32; i++)
      g_assert_cmpfloat_with_epsilon ((crop->pixels[i * 3 + c] / 255.0f - 0.5f) / 0.5f,
                                      x[c * 32 * 32 + i], 1e-5);
  /* a gray model: the one channel repeated */
  pp.channels = 1;
  g_autoptr(VlImage) gray = vl_attention_crop_for_display (img, &pp);
  for (int i = 0; i < 32 * 32; i++)
    {
      g_assert_cmpint (gray->pixels[i * 3], ==, gray->pixels[i * 3 + 1]);
      g_assert_cmpint (gray->pixels[i * 3], ==, gray->pixels[i * 3 + 2]);
    }
}

/* ------------------------------------------------------------------ confusion view */

typedef struct {
  int n, t, p;
} Activation;

static void
cell_activated_cb (VlConfusionView *view, int t, int p, Activation *a)
{
  a->n++;
  a->t = t;
  a->p = p;
}

static void
test_confusion_cells (void)
{
  GtkWidget *w = vl_confusion_view_new ();
  VlConfusionView *v = VL_CONFUSION_VIEW (w);
  GtkWidget *win = show_in_window (w, 460, 380);
  const char *names[3] = { "ant", "bee", "wasp" };
  /* ants all right; bees 3 of 4 right; wasps all taken for bees */
  const int64_t cm[9] = { 10, 0, 0,
                          1, 3, 0,
                          0, 5, 0 };
  vl_confusion_view_set_data (v, 3, cm, names);
  vl_confusion_view_set_title (v, "validation");
  g_assert_cmpint (vl_confusion_view_get_n_classes (v), ==, 3);
  g_assert_cmpint (vl_confusion_view_get_count (v, 2, 1), ==, 5);
  g_assert_cmpfloat (vl_confusion_view_get_class_accuracy (v, 1), ==, 0.75);
  g_assert_cmpfloat (vl_confusion_view_get_class_accuracy (v, 2), ==, 0.0);
  Activation a = { 0 };
  g_signal_connect (w, "cell-activated", G_CALLBACK (cell_activated_cb), &a);
  settle (w);

  for (int t = 0; t < 3; t++)
    for (int p = 0; p < 3; p++)
      {
        graphene_rect_t r;
        g_assert_true (vl_confusion_view_get_cell_rect (v, t, p, &r));
        g_assert_cmpfloat (r.size.width, >=, 20);
        double cx = r.origin.x + r.size.width / 2, cy = r.origin.y + r.size.height / 2;
        int tt = -1, pp = -1;
        g_assert_true (vl_confusion_view_cell_at (v, cx, cy, &tt, &pp));
        g_assert_cmpint (tt, ==, t);
        g_assert_cmpint (pp, ==, p);
        g_assert_true (vl_confusion_view_activate_at (v, cx, cy));
        g_assert_cmpint (a.t, ==, t);
        g_assert_cmpint (a.p, ==, p);
      }
  g_assert_cmpint (a.n, ==, 9);
  /* beside the matrix: no cell, no signal */
  g_assert_false (vl_confusion_view_activate_at (v, 1, 1));
  g_assert_cmpint (a.n, ==, 9);

  /* colours: a full row share on the diagonal is the diagonal blue, off it orange; an empty
   * cell carries neither */
  g_autoptr(Pixels) pix = render_widget (w);
  graphene_rect_t r;
  g_assert_true (vl_confusion_view_get_cell_rect (v, 0, 0, &r));
  const guint8 *c00 = px (pix, (int) r.origin.x + 3, (int) r.origin.y + 3);
  g_assert_cmpint (colour_dist (c00, 0x1c, 0x71, 0xd8), <=, 6);
  g_assert_true (vl_confusion_view_get_cell_rect (v, 2, 1, &r));
  const guint8 *c21 = px (pix, (int) r.origin.x + 3, (int) r.origin.y + 3);
  g_assert_cmpint (colour_dist (c21, 0xe6, 0x61, 0x00), <=, 6);
  g_assert_true (vl_confusion_view_get_cell_rect (v, 0, 2, &r));
  const guint8 *c02 = px (pix, (int) r.origin.x + 3, (int) r.origin.y + 3);
  g_assert_cmpint (c02[3], <, 40);   /* a faint wash over the (transparent) background */

  g_autofree char *path = tmp_file ("confusion.png");
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_confusion_view_export_png (v, path, 0, 0, &error));
  g_assert_no_error (error);
  g_autoptr(Pixels) exported = pixels_from_png (path);
  g_assert_cmpint (count_colour (exported, 0x1c, 0x71, 0xd8, 6, NULL), >, 400);
  g_assert_cmpint (count_colour (exported, 0xe6, 0x61, 0x00, 6, NULL), >, 400);

  /* from an evaluation */
  VlEvalResult res = { 0 };
  vl_eval_result_begin (&res, 2);
  const float logits[6] = { 2, 1, 0, 3, 5, 1 };
  const int labels[3] = { 0, 1, 0 };
  vl_eval_result_add (&res, logits, labels, 3);
  vl_eval_result_end (&res);
  vl_confusion_view_set_result (v, &res, NULL);
  g_assert_cmpint (vl_confusion_view_get_n_classes (v), ==, 2);
  g_assert_cmpint (vl_confusion_view_get_count (v, 0, 0), ==, 2);
  g_assert_cmpint (vl_confusion_view_get_count (v, 1, 1), ==, 1);
  vl_eval_result_clear (&res);
  gtk_window_destroy (GTK_WINDOW (win));
}

/* ------------------------------------------------------------------ boxes and class bars */

/* VOC's colour of class k + 1, 8-bit */
static void
class_rgb (int k, int rgb[3])
{
  double c[3];
  vl_draw_class_color (k, c);
  for (int i = 0; i < 3; i++)
    rgb[i] = (int) lround (c[i] * 255);
}

/* The statistics over the loss chart in the main area's width at 1366x768 (four cards a line):
 * the longest values the tasks write fit their cards unshortened; the second figures go under
 * them in small print, shown only when there is one. */
static void
test_stat_cards_fit (void)
{
  g_assert_nonnull (vl_get_resource ());   /* links the compiled template in */
  g_autoptr(GtkCssProvider) css = gtk_css_provider_new ();   /* the app's style: the values' size */
  gtk_css_provider_load_from_resource (css, "/org/vitlab/Vitlab/style.css");
  gtk_style_context_add_provider_for_display (gdk_display_get_default (), GTK_STYLE_PROVIDER (css),
                                              GTK_STYLE_PROVIDER_PRIORITY_APPLICATION);
  GtkWidget *w = vl_stat_cards_new ();
  VlStatCards *cards = VL_STAT_CARDS (w);
  GtkWidget *win = show_in_window (w, 640, 200);
  const char *values[VL_N_STATS] = { "100 / 100", "12.3456", "12.3456 ★", "100.0 %", "12 groups" };
  for (int i = 0; i < VL_N_STATS; i++)
    {
      vl_stat_cards_set (cards, i, values[i]);
      g_assert_cmpstr (vl_stat_cards_get (cards, i), ==, values[i]);
    }
  vl_stat_cards_set_detail (cards, VL_STAT_SCORE, "top-5 100.0 %");
  vl_stat_cards_set_detail (cards, VL_STAT_TRAINING, "the last 12 of 14 · 85.8 M params · cached");
  vl_stat_cards_set_card_tooltip (cards, VL_STAT_SCORE, "what the score is");
  g_assert_cmpstr (vl_stat_cards_get_card_tooltip (cards, VL_STAT_SCORE), ==, "what the score is");
  settle (w);
  for (int i = 0; i < VL_N_STATS; i++)
    {
      GtkWidget *label = vl_stat_cards_get_label (cards, i);
      g_assert_true (gtk_widget_get_mapped (label));
      PangoLayout *layout = gtk_label_get_layout (GTK_LABEL (label));
      g_test_message ("\"%s\": %d px wide, its card %d", values[i], gtk_widget_get_width (label),
                      gtk_widget_get_width (gtk_widget_get_parent (label)));
      g_assert_cmpint (gtk_widget_get_width (gtk_widget_get_parent (label)), <, 130);   /* 4 a line, as at 1366x768 */
      g_assert_false (pango_layout_is_ellipsized (layout));
    }
  g_assert_cmpstr (vl_stat_cards_get_detail (cards, VL_STAT_SCORE), ==, "top-5 100.0 %");
  /* a detail shows in full (it wraps), an empty one takes no line */
  for (int i = 0; i < VL_N_STATS; i++)
    {
      GtkWidget *detail = gtk_widget_get_next_sibling (vl_stat_cards_get_label (cards, i));
      g_assert_true (GTK_IS_LABEL (detail));
      const gboolean has = i == VL_STAT_SCORE || i == VL_STAT_TRAINING;
      g_assert_true (gtk_widget_get_mapped (detail) == has);
      if (has)
        g_assert_false (pango_layout_is_ellipsized (gtk_label_get_layout (GTK_LABEL (detail))));
    }
  vl_stat_cards_set_detail (cards, VL_STAT_SCORE, NULL);
  settle (w);
  g_assert_false (gtk_widget_get_mapped (gtk_widget_get_next_sibling (
    vl_stat_cards_get_label (cards, VL_STAT_SCORE))));
  gtk_window_destroy (GTK_WINDOW (win));
  gtk_style_context_remove_provider_for_display (gdk_display_get_default (),
                                                 GTK_STYLE_PROVIDER (css));
}

static void
test_box_view (void)
{
  GtkWidget *w = vl_box_view_new ();
  VlBoxView *v = VL_BOX_VIEW (w);
  GtkWidget *win = show_in_window (w, 420, 260);
  g_assert_true (vl_task_view_applies_to (VL_TASK_VIEW (w), VL_TASK_DETECT));
  g_assert_false (vl_task_view_applies_to (VL_TASK_VIEW (w), VL_TASK_CLASSIFY));
  int rgb0[3], rgb1[3];
  class_rgb (0, rgb0);
  class_rgb (1, rgb1);
  g_assert_cmpint (rgb0[0], ==, 128);   /* VOC: class 1 (128, 0, 0), class 2 (0, 128, 0) */
  g_assert_cmpint (rgb1[1], ==, 128);

  /* a grey 200x100 image: a cat (class 0) and a dog (class 1) */
  g_autoptr(GBytes) bytes = NULL;
  guint8 *grey = g_malloc (200 * 100 * 4);
  for (int i = 0; i < 200 * 100; i++)
    grey[4 * i] = grey[4 * i + 1] = grey[4 * i + 2] = 200, grey[4 * i + 3] = 255;
  bytes = g_bytes_new_take (grey, 200 * 100 * 4);
  g_autoptr(GdkTexture) img = gdk_memory_texture_new (200, 100, GDK_MEMORY_R8G8B8A8, bytes,
                                                      200 * 4);
  vl_box_view_set_image (v, img);
  const VlCocoBox truth[] = { { 0, 0, { 10, 10, 60, 60 }, 0 }, { 0, 1, { 100, 20, 180, 90 }, 0 } };
  const VlCocoBox dets[] = {
    { 0, 0, { 12, 12, 58, 62 }, 0.9f },    /* the cat */
    { 0, 1, { 10, 10, 60, 60 }, 0.4f },    /* the cat called a dog: false */
    { 0, 1, { 105, 25, 170, 85 }, 0.25f }, /* the dog, under 0.3 */
  };
  const char *names[] = { "cat", "dog", NULL };
  vl_box_view_set_boxes (v, 200, 100, truth, 2, dets, 3, names);
  int shown, missed, fp;
  vl_box_view_get_counts (v, &shown, &missed, &fp);
  g_assert_cmpint (shown, ==, 2);
  g_assert_cmpint (missed, ==, 1);
  g_assert_cmpint (fp, ==, 1);
  g_autoptr(Pixels) at30 = render_widget (w);
  const int dog30 = count_colour (at30, rgb1[0], rgb1[1], rgb1[2], 10, NULL);

  int notified = 0;
  g_signal_connect (w, "notify::score-threshold", G_CALLBACK (count_notify), &notified);
  g_object_set (w, "score-threshold", 0.2, NULL);
  g_assert_cmpint (notified, ==, 1);
  vl_box_view_get_counts (v, &shown, &missed, &fp);
  g_assert_cmpint (shown, ==, 3);
  g_assert_cmpint (missed, ==, 0);
  g_assert_cmpint (fp, ==, 1);
  /* the dog's solid box and its tab add dog-coloured pixels */
  g_autoptr(Pixels) at20 = render_widget (w);
  g_assert_cmpint (count_colour (at20, rgb1[0], rgb1[1], rgb1[2], 10, NULL), >, dog30 + 100);

  vl_box_view_set_score_threshold (v, 0.95);
  vl_box_view_get_counts (v, &shown, &missed, &fp);
  g_assert_cmpint (shown, ==, 0);
  g_assert_cmpint (missed, ==, 2);
  g_assert_cmpint (fp, ==, 0);
  /* the dashed truth stays (with "missed" tabs); the solid dog boxes go */
  g_autoptr(Pixels) at95 = render_widget (w);
  g_assert_cmpint (count_colour (at95, rgb0[0], rgb0[1], rgb0[2], 10, NULL), >, 50);
  const int dog95 = count_colour (at95, rgb1[0], rgb1[1], rgb1[2], 10, NULL);
  g_assert_cmpint (dog95, >, 50);
  g_assert_cmpint (count_colour (at20, rgb1[0], rgb1[1], rgb1[2], 10, NULL), >, dog95);
  /* the image is drawn: its grey fills much of the widget */
  g_assert_cmpint (count_colour (at95, 200, 200, 200, 3, NULL), >, 200 * 100);
  g_assert_cmpstr (vl_box_view_get_truth_tab (v, 1), ==, "dog · missed");
  /* a dataset's own boxes (the Data panel): named, none missed, no counts under the image, which
   * takes the room */
  vl_box_view_set_truth_only (v, TRUE);
  g_autoptr(Pixels) own = render_widget (w);
  g_assert_cmpstr (vl_box_view_get_truth_tab (v, 0), ==, "cat");
  g_assert_cmpstr (vl_box_view_get_truth_tab (v, 1), ==, "dog");
  g_assert_cmpint (count_colour (own, 200, 200, 200, 3, NULL), >,
                   count_colour (at95, 200, 200, 200, 3, NULL));
  vl_box_view_set_truth_only (v, FALSE);

  /* three predictions whose tabs would sit on one another (the same top edge, 10 px apart, and
   * one near the right edge): each goes where it covers none, the best over its box's top edge,
   * none past the widget's edge */
  const VlCocoBox close[] = {
    { 0, 1, { 20, 30, 90, 95 }, 0.6f },
    { 0, 0, { 10, 30, 80, 95 }, 0.9f },
    { 0, 1, { 190, 40, 199, 60 }, 0.7f },
  };
  vl_box_view_set_boxes (v, 200, 100, NULL, 0, close, 3, names);
  vl_box_view_set_score_threshold (v, 0.5);
  g_autoptr(Pixels) tabs = render_widget (w);
  double r[3][4];
  for (int i = 0; i < 3; i++)
    {
      g_assert_true (vl_box_view_get_tab (v, i, r[i]));
      g_test_message ("tab %d: %.0f,%.0f %.0fx%.0f", i, r[i][0], r[i][1], r[i][2], r[i][3]);
      g_assert_cmpfloat (r[i][2], >, 10);
      g_assert_cmpfloat (r[i][0], >=, 0);
      g_assert_cmpfloat (r[i][0] + r[i][2], <=, gtk_widget_get_width (w) + 1e-9);
      for (int j = 0; j < i; j++)
        g_assert_true (r[i][0] >= r[j][0] + r[j][2] || r[j][0] >= r[i][0] + r[i][2] ||
                       r[i][1] >= r[j][1] + r[j][3] || r[j][1] >= r[i][1] + r[i][3]);
    }
  /* the 0.9 box's tab ends on its top edge; the 0.6 one, which shares it, went elsewhere */
  g_assert_cmpfloat (r[0][1], !=, r[1][1]);
  g_assert_cmpfloat (r[1][1] + r[1][3], <=, r[0][1] + 1e-9);
  vl_box_view_set_score_threshold (v, 0.8);
  g_autoptr(Pixels) one = render_widget (w);
  g_assert_false (vl_box_view_get_tab (v, 0, r[0]));   /* under the threshold: no tab */
  g_assert_true (vl_box_view_get_tab (v, 1, r[1]));

  vl_box_view_clear (v);
  vl_box_view_get_counts (v, &shown, &missed, &fp);
  g_assert_cmpint (shown + missed + fp, ==, 0);
  g_assert_false (vl_box_view_get_tab (v, 0, r[0]));
  gtk_window_destroy (GTK_WINDOW (win));
}

static void
test_class_bars (void)
{
  GtkWidget *w = vl_class_bars_new ();
  VlClassBars *b = VL_CLASS_BARS (w);
  GtkWidget *win = show_in_window (w, 360, 200);
  g_assert_true (isnan (vl_class_bars_get_mean (b)));
  /* a value, none (NaN), a value, none (-1, COCO's "no ground truth"); two names for four */
  const double ap[4] = { 0.5, NAN, 0.3, -1 };
  const char *names[] = { "cat", "dog", NULL };
  vl_class_bars_set (b, "AP per class", names, ap, 4, 0);
  g_assert_cmpint (vl_class_bars_get_n (b), ==, 4);
  g_assert_cmpfloat_with_epsilon (vl_class_bars_get_mean (b), 0.4, 1e-12);
  int min4, nat4, min8, nat8;
  gtk_widget_measure (w, GTK_ORIENTATION_VERTICAL, -1, &min4, &nat4, NULL, NULL);
  g_autoptr(Pixels) p = render_widget (w);
  int rgb0[3], rgb1[3], rgb2[3];
  class_rgb (0, rgb0);
  class_rgb (1, rgb1);
  class_rgb (2, rgb2);
  const int n0 = count_colour (p, rgb0[0], rgb0[1], rgb0[2], 6, NULL);
  const int n2 = count_colour (p, rgb2[0], rgb2[1], rgb2[2], 6, NULL);
  g_assert_cmpint (n0, >, 100);
  g_assert_cmpint (n2, >, 50);
  g_assert_cmpint (n0, >, n2);   /* 0.5 is a longer bar than 0.3 */
  g_assert_cmpint (count_colour (p, rgb1[0], rgb1[1], rgb1[2], 6, NULL), ==, 0);   /* no value */

  /* segmentation's IoU: value 0 is the background (grey), value k has class k - 1's colour */
  const double iou[8] = { 0.9, 0.6, 0.2, 0.4, 0.1, 0.7, 0.3, 0.5 };
  vl_class_bars_set (b, "IoU per class", NULL, iou, 8, -1);
  gtk_widget_measure (w, GTK_ORIENTATION_VERTICAL, -1, &min8, &nat8, NULL, NULL);
  g_assert_cmpint (min8, >, min4);
  g_autoptr(Pixels) q = render_widget (w);
  g_assert_cmpint (count_colour (q, rgb0[0], rgb0[1], rgb0[2], 6, NULL), >, 50);
  g_assert_cmpint (count_colour (q, 153, 153, 153, 4, NULL), >, 50);
  gtk_window_destroy (GTK_WINDOW (win));
}

/* ------------------------------------------------------------------ all of them */

/* Widgets shown in a window and then destroyed with it are finalized (no leaked refs from
 * controllers, bindings or caches). */
static void
test_widgets_finalize (void)
{
  GtkWidget *ws[3] = { vl_loss_chart_new (), vl_attention_view_new (),
                       vl_confusion_view_new () };
  for (int i = 0; i < 3; i++)
    {
      g_object_ref (ws[i]);
      GtkWidget *win = show_in_window (ws[i], 300, 240);
      if (i == 0)
        {
          g_autofree VlStepPoint *p = decaying_steps (50, 10, 0.1, 1);
          vl_loss_chart_add_steps (VL_LOSS_CHART (ws[i]), p, 50);
          vl_loss_chart_hover_at (VL_LOSS_CHART (ws[i]), 150, 120);
        }
      settle (ws[i]);
      gtk_window_destroy (GTK_WINDOW (win));
      g_assert_finalize_object (ws[i]);
    }
}

static void
stop_and_record (VlEmbeddingPanel *panel, const char *path, char **out)
{
  g_free (*out);
  *out = g_strdup (path);
  g_signal_stop_emission_by_name (panel, "image-activated");
}

/* The embedding panel on its own: the pretrained side takes the features' rows, both sides
 * apply to every task, a hover names the point (no window: no thumbnail to decode), a click on
 * a point of the map emits ::image-activated with its file; clearing empties both sides. */
static void
test_embedding_panel (void)
{
  GtkWidget *panel = vl_embedding_panel_new ();
  g_object_ref (panel);
  GtkWidget *win = show_in_window (panel, 900, 500);
  VlEmbeddingPanel *emb = VL_EMBEDDING_PANEL (panel);
  g_assert_true (vl_task_view_applies_to (VL_TASK_VIEW (panel), VL_TASK_CLASSIFY));
  g_assert_true (vl_task_view_applies_to (VL_TASK_VIEW (panel), VL_TASK_REGRESS));
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED), ==, 0);

  /* 8 points in 3-D: two classes apart along the first axis */
  float feats[8 * 3];
  int labels[8];
  char *files[9], *classes[] = { "cats", "dogs", NULL };
  for (int i = 0; i < 8; i++)
    {
      labels[i] = i % 2;
      feats[i * 3 + 0] = labels[i] ? 5.0f + i * 0.1f : -5.0f - i * 0.1f;
      feats[i * 3 + 1] = (float) (i % 3) - 1.0f;
      feats[i * 3 + 2] = 0.01f * i;
      files[i] = g_strdup_printf ("/nowhere/img-%d.png", i);
    }
  files[8] = NULL;
  VlFeatures f = { .n = 8, .n_train = 6, .n_tokens = 1, .width = 3, .dim = 3, .features = feats,
                   .labels = labels, .files = files, .n_classes = 2, .class_names = classes,
                   .pool = VL_FEATURE_POOL_TOKEN, .layer = VL_FEATURE_LAYER_FINAL };
  vl_embedding_panel_set_pretrained (emb, &f, NULL);
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED), ==, 8);
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_FINETUNED), ==, 0);
  g_assert_cmpstr (vl_embedding_panel_get_file (emb, 3), ==, files[3]);
  GtkWidget *view = vl_embedding_panel_get_view (emb, VL_EMBEDDING_PRETRAINED);
  /* the first principal axis carries the class split */
  g_assert_cmpfloat (vl_embedding_view_get_explained (VL_EMBEDDING_VIEW (view), 0), >, 0.9);
  int64_t point = -1;
  vl_embedding_panel_hover (emb, VL_EMBEDDING_PRETRAINED, 3);
  g_assert_null (vl_embedding_panel_get_preview (emb, &point));
  g_assert_cmpint (point, ==, 3);
  vl_embedding_panel_hover (emb, VL_EMBEDDING_PRETRAINED, 99);   /* out of range: kept */
  vl_embedding_panel_get_preview (emb, &point);
  g_assert_cmpint (point, ==, 3);

  settle (panel);
  g_autofree char *clicked = NULL;
  g_signal_connect (panel, "image-activated", G_CALLBACK (stop_and_record), &clicked);
  double x, y;
  g_assert_true (vl_embedding_view_get_point_position (VL_EMBEDDING_VIEW (view), 6, &x, &y));
  g_assert_true (vl_embedding_view_activate_at (VL_EMBEDDING_VIEW (view), x, y));
  g_assert_cmpstr (clicked, ==, files[6]);

  /* a large set is shown by a sample of every k-th row, names kept with their rows */
  const int big = 9001;
  g_autofree float *bf = g_new (float, big * 3);
  g_autofree int *bl = g_new (int, big);
  char **bn = g_new0 (char *, big + 1);
  for (int i = 0; i < big; i++)
    {
      bf[i * 3] = (float) (i % 7);
      bf[i * 3 + 1] = (float) (i % 5);
      bf[i * 3 + 2] = (float) (i % 3);
      bl[i] = i % 2;
      bn[i] = g_strdup_printf ("/nowhere/%d.png", i);
    }
  VlFeatures bigf = f;
  bigf.n = big;
  bigf.n_train = 7000;
  bigf.features = bf;
  bigf.labels = bl;
  bigf.files = bn;
  vl_embedding_panel_set_pretrained (emb, &bigf, NULL);
  int64_t shown = vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED);
  g_assert_cmpint (shown, <=, VL_EMBEDDING_MAX_POINTS);
  g_assert_cmpint (shown, >=, VL_EMBEDDING_MAX_POINTS / 2);
  int64_t stride = (big + VL_EMBEDDING_MAX_POINTS - 1) / VL_EMBEDDING_MAX_POINTS;
  g_assert_cmpstr (vl_embedding_panel_get_file (emb, 1000), ==, bn[1000 * stride]);
  g_assert_cmpstr (vl_embedding_panel_get_file (emb, shown - 1), ==, bn[(shown - 1) * stride]);
  g_strfreev (bn);

  vl_embedding_panel_set_pretrained (emb, NULL, NULL);
  g_assert_cmpint (vl_embedding_panel_get_n_points (emb, VL_EMBEDDING_PRETRAINED), ==, 0);
  vl_embedding_panel_get_preview (emb, &point);
  g_assert_cmpint (point, ==, -1);
  for (int i = 0; i < 8; i++)
    g_free (files[i]);
  gtk_window_destroy (GTK_WINDOW (win));
  g_assert_finalize_object (panel);
}

/* The k-NN panel before any input is hidden and has no figure; "Try it" without a model keeps
 * the images for later, computes nothing, and exports an empty table. */
static void
test_features_panels_idle (void)
{
  GtkWidget *knn = vl_knn_panel_new ();
  g_object_ref (knn);
  GtkWidget *w1 = show_in_window (gtk_box_new (GTK_ORIENTATION_VERTICAL, 0), 300, 200);
  gtk_box_append (GTK_BOX (gtk_window_get_child (GTK_WINDOW (w1))), knn);
  g_assert_false (gtk_widget_get_visible (knn));
  g_assert_true (isnan (vl_knn_panel_get_accuracy (VL_KNN_PANEL (knn))));
  g_assert_false (vl_knn_panel_is_busy (VL_KNN_PANEL (knn)));
  int n = -1;
  g_assert_null (vl_knn_panel_get_layer_accuracy (VL_KNN_PANEL (knn), &n));
  g_assert_cmpint (n, ==, 0);
  vl_knn_panel_start_layers (VL_KNN_PANEL (knn));   /* no inputs: nothing starts */
  g_assert_false (vl_knn_panel_is_busy (VL_KNN_PANEL (knn)));
  gtk_window_destroy (GTK_WINDOW (w1));
  g_assert_finalize_object (knn);

  GtkWidget *panel = vl_try_panel_new ();
  g_object_ref (panel);
  GtkWidget *w2 = show_in_window (panel, 700, 400);
  VlTryPanel *tp = VL_TRY_PANEL (panel);
  g_assert_false (vl_try_panel_has_model (tp));
  g_assert_true (vl_task_view_applies_to (VL_TASK_VIEW (panel), VL_TASK_REGRESS));
  const char *files[] = { "/nowhere/a.png", NULL };
  vl_try_panel_add_files (tp, files);
  g_assert_false (vl_try_panel_is_busy (tp));
  g_assert_cmpint (vl_try_panel_get_n_results (tp), ==, 0);
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *csv = g_build_filename (dir, "empty.csv", NULL);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_try_panel_export_csv (tp, csv, &error));
  g_assert_no_error (error);
  g_autofree char *text = NULL;
  g_assert_true (g_file_get_contents (csv, &text, NULL, NULL));
  g_assert_cmpstr (text, ==, "file,predicted,probability\n");
  g_autofree char *bad = g_build_filename (dir, "no-such-folder", "x.csv", NULL);
  g_assert_false (vl_try_panel_export_csv (tp, bad, &error));
  g_assert_nonnull (strstr (error->message, "no-such-folder"));
  settle (panel);
  gtk_window_destroy (GTK_WINDOW (w2));
  g_assert_finalize_object (panel);
}

/* The real ViT-Ti on a real photo: the view's rollout is the engine's, and the pictures in
 * docs/ come from here (VITLAB_DEMO_DIR). */
static void
test_demo_real_model (void)
{
  g_autofree char *weights = vl_test_shared_path ("weights", "vit-tiny-augreg-in1k", NULL);
  g_autofree char *photo = vl_test_shared_path ("datasets", "imagenet-samples",
                                                "n02125311_10473.JPEG", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VlModel) m = vl_model_load (weights, &error);
  g_assert_no_error (error);
  const VlGeometry *g = vl_model_geometry (m);
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  g_autoptr(VlImage) img = vl_image_load (photo, 3, &error);
  g_assert_no_error (error);
  g_autoptr(VlImage) crop = vl_attention_crop_for_display (img, &pp);
  const int S = pp.size, gh = S / g->patch;
  g_autofree float *x = g_new (float, 3 * S * S);
  vl_preprocess_eval (img, &pp, x);
  g_assert_true (vl_model_forward (m, x, 1, S, S, VL_FORWARD_CAPTURE_ATTN, &error));
  int T = vl_model_n_tokens_last (m);
  g_autofree float *roll = g_new (float, T);
  g_assert_true (vl_model_rollout (m, roll, &error));
  g_autofree float *pre = gather_attention (m, 0);
  const float *logits = vl_model_logits (m);
  int best = 0;
  for (int k = 1; k < vl_model_num_classes (m); k++)
    if (logits[k] > logits[best])
      best = k;
  /* "now": a few fine-tuning steps on this image (towards its own prediction) */
  vl_model_lock (m, VL_UNLOCK_ALL);
  VlAdamW opt = VL_ADAMW_DEFAULTS;
  opt.lr = 2e-4f;
  for (int s = 0; s < 3; s++)
    {
      double loss;
      g_assert_true (vl_model_forward (m, x, 1, S, S, VL_FORWARD_TRAIN, &error));
      g_assert_true (vl_model_backward (m, &best, 0.0f, &loss, &error));
      vl_model_adamw_step (m, &opt);
    }
  g_assert_true (vl_model_forward (m, x, 1, S, S, VL_FORWARD_CAPTURE_ATTN, &error));
  g_autofree float *now = gather_attention (m, 0);

  GtkWidget *w = vl_attention_view_new ();
  VlAttentionView *v = VL_ATTENTION_VIEW (w);
  GtkWidget *win = show_in_window (w, 900, 520);
  vl_attention_view_set_image (v, crop);
  g_assert_true (vl_attention_view_set_reference_attention (v, pre, g->depth, g->heads, T,
                                                            g->n_prefix, g->class_token, gh,
                                                            gh));
  g_assert_true (vl_attention_view_set_attention (v, now, g->depth, g->heads, T, g->n_prefix,
                                                  g->class_token, gh, gh));
  vl_attention_view_set_mode (v, VL_ATTN_MODE_ROLLOUT);
  g_autofree float *map = g_new (float, gh * gh);
  g_assert_true (vl_attention_view_get_heatmap (v, TRUE, map));
  vl_test_assert_close ("ViT-Ti rollout", map, roll, gh * gh, 1e-7, 1e-4);

  g_autofree char *names_path = g_build_filename (weights, "imagenet-classes.txt", NULL);
  g_autofree char *names = NULL;
  g_assert_true (g_file_get_contents (names_path, &names, NULL, NULL));
  g_auto(GStrv) classes = g_strsplit (names, "\n", -1);
  g_autofree char *title = g_strdup_printf ("%s · predicted: %s", "n02125311_10473.JPEG",
                                            classes[best]);
  vl_attention_view_set_title (v, title);
  vl_attention_view_set_opacity (v, 0.6);

  const char *env = g_getenv ("VITLAB_DEMO_DIR");
  g_autofree char *dir = env != NULL ? g_strdup (env) : vl_test_tmpdir ();
  g_autofree char *attn_png = g_build_filename (dir, "widget-attention.png", NULL);
  g_assert_true (vl_attention_view_export_png (v, attn_png, 0, 0, &error));
  g_assert_no_error (error);
  g_autoptr(Pixels) shot = pixels_from_png (attn_png);
  g_assert_cmpint (shot->width, >, 2 * S);

  /* the loss chart of two runs, with validation metrics and gradient norms */
  GtkWidget *cw = vl_loss_chart_new ();
  VlLossChart *c = VL_LOSS_CHART (cw);
  g_object_ref_sink (cw);
  const char *groups[15] = { "stem", "blocks.0", "blocks.1", "blocks.2", "blocks.3",
                             "blocks.4", "blocks.5", "blocks.6", "blocks.7", "blocks.8",
                             "blocks.9", "blocks.10", "blocks.11", "norm", "head" };
  GRand *rand = g_rand_new_with_seed (3);
  const int spe = 120;
  vl_loss_chart_set_total_steps (c, spe * 10);
  vl_loss_chart_set_run_label (c, "linear probe");
  for (int run = 0; run < 2; run++)
    {
      if (run == 1)
        vl_loss_chart_new_run (c, "last 4 groups, lr 3e-4");
      int epochs = run == 0 ? 10 : 7;
      for (int e = 0; e < epochs; e++)
        {
          for (int b = 0; b < spe; b++)
            {
              int64_t s = (int64_t) e * spe + b + 1;
              double base = (run == 0 ? 0.55 : 0.3) + 2.0 * exp (-s / (run == 0 ? 150.0 : 90.0));
              VlStepPoint p = { s, e, (float) (base * exp (g_rand_double_range (rand, -.35, .35))),
                                (float) (3e-4 * 0.5 * (1 + cos (G_PI * s / (spe * 10.0)))),
                                (float) (1.5 * exp (-s / 500.0)) };
              vl_loss_chart_add_steps (c, &p, 1);
              if (run == 1 && b % 8 == 0)
                {
                  double norms[15];
                  for (int k = 0; k < 15; k++)
                    norms[k] = k >= 11 || (e >= 3 && k >= 7)
                               ? exp (g_rand_double_range (rand, -0.6, 0.6)) *
                                 (k == 14 ? 3 : 0.3 + 0.05 * k) * exp (-s / 500.0)
                               : 0;
                  vl_loss_chart_set_group_norms (c, 15, groups, norms, s);
                }
            }
          VlEpochMetrics em = { .epoch = e, .step = (int64_t) (e + 1) * spe };
          em.val.n = 153;
          em.val.loss = (run == 0 ? 0.62 : 0.4) + 1.1 * exp (-em.step / 220.0) +
                        (run == 1 && e > 4 ? 0.015 * (e - 4) : 0);
          em.val.top1 = (run == 0 ? 0.9 : 0.95) - 0.45 * exp (-em.step / 260.0);
          em.best = run == 1 ? e == 4 : e == 9;
          vl_loss_chart_add_epoch (c, &em);
        }
    }
  g_rand_free (rand);
  g_autofree char *chart_png = g_build_filename (dir, "widget-loss-chart-export.png", NULL);
  g_assert_true (vl_loss_chart_export_png (c, chart_png, 900, 480, &error));
  g_assert_no_error (error);
  /* on screen, with the pointer over step ~500 */
  GtkWidget *cwin = show_in_window (cw, 900, 480);
  vl_loss_chart_hover_at (c, 500, 300);
  g_autoptr(Pixels) chart_shot = render_widget (cw);
  g_autofree char *chart_screen = g_build_filename (dir, "widget-loss-chart.png", NULL);
  save_over_background (chart_shot, 1.0, chart_screen);
  gtk_window_destroy (GTK_WINDOW (cwin));

  GtkWidget *fw = vl_confusion_view_new ();
  g_object_ref_sink (fw);
  const char *fashion[5] = { "sandal", "shirt", "sneaker", "bag", "ankle boot" };
  const int64_t cm[25] = { 182, 0, 12, 2, 4,
                           1, 171, 0, 27, 1,
                           9, 0, 184, 0, 7,
                           1, 6, 1, 191, 1,
                           3, 0, 8, 0, 189 };
  vl_confusion_view_set_data (VL_CONFUSION_VIEW (fw), 5, cm, fashion);
  vl_confusion_view_set_title (VL_CONFUSION_VIEW (fw),
                               "epoch 7 · validation (fashion-mnist, classes 5-9)");
  g_autofree char *conf_png = g_build_filename (dir, "widget-confusion.png", NULL);
  g_assert_true (vl_confusion_view_export_png (VL_CONFUSION_VIEW (fw), conf_png, 0, 0,
                                               &error));
  g_assert_no_error (error);
  g_test_message ("pictures in %s", dir);
  g_object_unref (cw);
  g_object_unref (fw);
  gtk_window_destroy (GTK_WINDOW (win));
}

static void
copy_run_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  *(GAsyncResult **) user_data = g_object_ref (result);
}

/* Waits for one vl_job_copy_run and returns its outcome (dest: the job's folder, copied). */
static gboolean
copy_run (const char *src, const char *dest, char **dest_out, GError **error)
{
  GAsyncResult *result = NULL;
  vl_job_copy_run (NULL, src, dest, NULL, copy_run_done, &result);
  gint64 deadline = g_get_monotonic_time () + 30 * G_USEC_PER_SEC;
  while (result == NULL && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  g_assert_nonnull (result);
  const char *d = NULL;
  gboolean ok = vl_job_copy_run_finish (result, &d, error);
  *dest_out = g_strdup (d);
  g_object_unref (result);
  return ok;
}

/* Saving a run (win.save-run): the folder's files copied byte for byte into a new folder, its
 * subfolders left out; a destination that cannot be made is an error naming it. */
static void
test_jobs_copy_run (void)
{
  g_autofree char *tmp = vl_test_tmpdir ();
  g_autofree char *src = g_build_filename (tmp, "run-1", NULL);
  g_autofree char *sub = g_build_filename (src, "checkpoint", NULL);
  g_assert_cmpint (g_mkdir_with_parents (sub, 0755), ==, 0);
  static const char bytes[] = { 'v', 'l', 0, 1, 2, (char) 255 };
  const char *names[] = { "run.json", "metrics.jsonl", "best.safetensors" };
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *f = g_build_filename (src, names[i], NULL);
      g_assert_true (g_file_set_contents (f, bytes, sizeof bytes - (gsize) i, NULL));
    }
  g_autofree char *inner = g_build_filename (sub, "state.bin", NULL);
  g_assert_true (g_file_set_contents (inner, "x", 1, NULL));

  g_autofree char *dest = g_build_filename (tmp, "saved", "run-1", NULL);
  g_autofree char *got_dest = NULL;
  g_autoptr(GError) error = NULL;
  g_assert_true (copy_run (src, dest, &got_dest, &error));
  g_assert_no_error (error);
  g_assert_cmpstr (got_dest, ==, dest);
  for (int i = 0; i < 3; i++)
    {
      g_autofree char *f = g_build_filename (dest, names[i], NULL);
      g_autofree char *data = NULL;
      gsize len = 0;
      g_assert_true (g_file_get_contents (f, &data, &len, NULL));
      g_assert_cmpmem (data, len, bytes, sizeof bytes - (gsize) i);
    }
  g_autofree char *not_copied = g_build_filename (dest, "checkpoint", NULL);
  g_assert_false (g_file_test (not_copied, G_FILE_TEST_EXISTS));

  /* a destination under a regular file cannot be made */
  g_autofree char *blocker = g_build_filename (src, "run.json", NULL);
  g_autofree char *bad = g_build_filename (blocker, "run-1", NULL);
  g_autofree char *bad_dest = NULL;
  g_assert_false (copy_run (src, bad, &bad_dest, &error));
  g_assert_nonnull (error);
  g_assert_nonnull (strstr (error->message, bad));
}

int
main (int argc, char **argv)
{
  /* no accessibility bus under Xvfb (its absence would be a warning, fatal in the tests) */
  g_setenv ("GTK_A11Y", "none", TRUE);
  gtk_test_init (&argc, &argv, NULL);

  g_test_add_func ("/ui/colormap/matplotlib", test_colormap_matplotlib);
  g_test_add_func ("/ui/loss-chart/points", test_loss_chart_points);
  g_test_add_func ("/ui/box-view", test_box_view);
  g_test_add_func ("/ui/stat-cards/fit", test_stat_cards_fit);
  g_test_add_func ("/ui/class-bars", test_class_bars);
  g_test_add_func ("/ui/loss-chart/png", test_loss_chart_png);
  g_test_add_func ("/ui/loss-chart/log-scale", test_loss_chart_log_scale);
  g_test_add_func ("/ui/loss-chart/csv", test_loss_chart_csv);
  g_test_add_func ("/ui/loss-chart/many-points", test_loss_chart_many_points);
  g_test_add_func ("/ui/loss-chart/group-norms", test_loss_chart_group_norms);
  g_test_add_func ("/ui/attention/hot-patch", test_attention_hot_patch);
  g_test_add_func ("/ui/attention/prefix-skipped", test_attention_prefix_skipped);
  g_test_add_func ("/ui/attention/pool", test_attention_pool_mode);
  g_test_add_func ("/ui/attention/prefix-skipped/subprocess",
                   test_attention_bad_sizes_subprocess);
  g_test_add_func ("/ui/attention/query-click", test_attention_query_click);
  g_test_add_func ("/ui/attention/rollout-matches-engine",
                   test_attention_rollout_matches_engine);
  g_test_add_func ("/ui/attention/rollout-only-and-reference",
                   test_attention_rollout_only_and_reference);
  g_test_add_func ("/ui/attention/properties", test_attention_properties);
  g_test_add_func ("/ui/attention/crop", test_attention_crop);
  g_test_add_func ("/ui/confusion/cells", test_confusion_cells);
  g_test_add_func ("/ui/jobs/copy-run", test_jobs_copy_run);
  g_test_add_func ("/ui/widgets/finalize", test_widgets_finalize);
  g_test_add_func ("/ui/embedding-panel/map", test_embedding_panel);
  g_test_add_func ("/ui/features/idle-panels", test_features_panels_idle);
  g_test_add_func ("/ui/demo/real-model", test_demo_real_model);
  return g_test_run ();
}

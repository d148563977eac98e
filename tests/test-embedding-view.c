/* test-embedding-view.c: VlEmbeddingView under Xvfb: the PCA against points built on two known
 * orthogonal directions, hit testing, hover text, the click signal, and the colours it draws. */
#include "vl-embedding-view.h"
#include "vl-test-util.h"

#include <math.h>
#include <string.h>

static gboolean
tick_cb (GtkWidget *w, GdkFrameClock *clock, gpointer data)
{
  (*(int *) data)++;
  return G_SOURCE_CONTINUE;
}

static void
spin_ticks (GtkWidget *w, int n)
{
  int ticks = 0;
  guint id = gtk_widget_add_tick_callback (w, tick_cb, &ticks, NULL);
  gtk_widget_queue_draw (w);
  gint64 deadline = g_get_monotonic_time () + 10 * G_USEC_PER_SEC;
  while (ticks < n && g_get_monotonic_time () < deadline)
    g_main_context_iteration (NULL, TRUE);
  gtk_widget_remove_tick_callback (w, id);
  g_assert_cmpint (ticks, >=, n);
}

/* N points in 6-D: mean + s_i u + t_i v (u, v orthonormal, var s > var t, s and t
 * uncorrelated), labels by the sign of s. */
#define N 40
#define D 6

static void
make_points (float *X, int *labels, double *s, double *t)
{
  const double u[D] = { 0.5, 0.5, 0.5, 0.5, 0, 0 };
  const double v[D] = { 0.5, -0.5, 0.5, -0.5, 0, 0 };
  const double mean[D] = { 1, -2, 3, 0.5, 7, -1 };
  double sm = 0, tm = 0, st = 0, ss = 0;
  for (int i = 0; i < N; i++)
    {
      s[i] = 6.0 * sin (0.7 * i + 0.3);
      t[i] = 1.5 * cos (1.3 * i);
      sm += s[i] / N;
      tm += t[i] / N;
    }
  /* t made uncorrelated with s in the sample, so that u and v are exactly the principal axes */
  for (int i = 0; i < N; i++)
    {
      st += (s[i] - sm) * (t[i] - tm);
      ss += (s[i] - sm) * (s[i] - sm);
    }
  for (int i = 0; i < N; i++)
    t[i] -= st / ss * (s[i] - sm);
  for (int i = 0; i < N; i++)
    {
      labels[i] = s[i] > 0 ? 1 : 0;
      for (int d = 0; d < D; d++)
        X[i * D + d] = (float) (mean[d] + s[i] * u[d] + t[i] * v[d]);
    }
}

static void
test_pca (void)
{
  float X[N * D];
  int labels[N];
  double s[N], t[N];
  make_points (X, labels, s, t);
  GtkWidget *w = g_object_ref_sink (vl_embedding_view_new ());
  VlEmbeddingView *v = VL_EMBEDDING_VIEW (w);
  vl_embedding_view_set_features (v, X, N, D, labels, 2, NULL, NULL);
  g_assert_cmpint (vl_embedding_view_get_n_points (v), ==, N);
  double sm = 0, tm = 0, ss = 0, tt = 0;
  for (int i = 0; i < N; i++)
    sm += s[i] / N, tm += t[i] / N;
  for (int i = 0; i < N; i++)
    ss += (s[i] - sm) * (s[i] - sm), tt += (t[i] - tm) * (t[i] - tm);
  /* the coordinates are (s - mean s, t - mean t), each up to one sign for the whole axis */
  double p0, q0;
  vl_embedding_view_get_coords (v, 0, &p0, &q0);
  double sign_s = p0 * (s[0] - sm) >= 0 ? 1 : -1, sign_t = q0 * (t[0] - tm) >= 0 ? 1 : -1;
  for (int i = 0; i < N; i++)
    {
      double p, q;
      vl_embedding_view_get_coords (v, i, &p, &q);
      g_assert_cmpfloat (fabs (p - sign_s * (s[i] - sm)), <, 1e-4);
      g_assert_cmpfloat (fabs (q - sign_t * (t[i] - tm)), <, 1e-4);
    }
  /* u's largest loading (0.5, the first) is positive: s itself, not -s */
  g_assert_cmpfloat (sign_s, ==, 1);
  g_assert_cmpfloat (fabs (vl_embedding_view_get_explained (v, 0) - ss / (ss + tt)), <, 1e-6);
  g_assert_cmpfloat (fabs (vl_embedding_view_get_explained (v, 1) - tt / (ss + tt)), <, 1e-6);

  /* a single point, one dimension: no crash, coordinates zero */
  const float one[1] = { 3 };
  const int l1[1] = { 0 };
  vl_embedding_view_set_features (v, one, 1, 1, l1, 1, NULL, NULL);
  double p, q;
  vl_embedding_view_get_coords (v, 0, &p, &q);
  g_assert_cmpfloat (p, ==, 0);
  g_assert_cmpfloat (q, ==, 0);
  vl_embedding_view_set_features (v, NULL, 0, 0, NULL, 0, NULL, NULL);
  g_assert_cmpint (vl_embedding_view_get_n_points (v), ==, 0);
  g_object_unref (w);
}

static void
activated_cb (VlEmbeddingView *v, gint64 index, gint64 *out)
{
  *out = index;
}

static int
count_near (cairo_surface_t *s, const double rgb[3], int tol)
{
  cairo_surface_flush (s);
  const guint8 *data = cairo_image_surface_get_data (s);
  int stride = cairo_image_surface_get_stride (s), n = 0;
  for (int y = 0; y < cairo_image_surface_get_height (s); y++)
    for (int x = 0; x < cairo_image_surface_get_width (s); x++)
      {
        guint32 p;
        memcpy (&p, data + y * stride + 4 * x, 4);
        int r = (p >> 16) & 255, g = (p >> 8) & 255, b = p & 255;
        if (abs (r - (int) lround (rgb[0] * 255)) <= tol &&
            abs (g - (int) lround (rgb[1] * 255)) <= tol &&
            abs (b - (int) lround (rgb[2] * 255)) <= tol)
          n++;
      }
  return n;
}

static void
test_interaction (void)
{
  float X[N * D];
  int labels[N];
  double s[N], t[N];
  make_points (X, labels, s, t);
  const char *names[] = { "ants", "bees" };
  char *files[N + 1];
  for (int i = 0; i < N; i++)
    files[i] = g_strdup_printf ("img/%02d.png", i);
  files[N] = NULL;

  GtkWidget *w = vl_embedding_view_new ();
  VlEmbeddingView *v = VL_EMBEDDING_VIEW (w);
  vl_embedding_view_set_features (v, X, N, D, labels, 2, names, (const char *const *) files);
  vl_embedding_view_set_title (v, "pretrained");
  GtkWidget *win = gtk_window_new ();
  gtk_window_set_default_size (GTK_WINDOW (win), 500, 420);
  gtk_window_set_child (GTK_WINDOW (win), w);
  gtk_window_present (GTK_WINDOW (win));
  spin_ticks (w, 3);
  g_assert_true (gtk_widget_get_mapped (w));

  /* the point farthest right along PC1 and the one farthest left */
  int right = 0, left = 0;
  for (int i = 1; i < N; i++)
    {
      right = s[i] > s[right] ? i : right;
      left = s[i] < s[left] ? i : left;
    }
  double xr, yr, xl, yl;
  g_assert_true (vl_embedding_view_get_point_position (v, right, &xr, &yr));
  g_assert_true (vl_embedding_view_get_point_position (v, left, &xl, &yl));
  g_assert_cmpfloat (xr - xl, >, 200);   /* PC1 spans the width */
  g_assert_cmpfloat (xr, <, gtk_widget_get_width (w));
  g_assert_cmpfloat (xl, >, 0);
  g_assert_cmpint (vl_embedding_view_point_at (v, xr + 2, yr - 1), ==, right);
  g_assert_cmpint (vl_embedding_view_point_at (v, 2, 2), ==, -1);

  /* hover names the file and its class */
  g_assert_cmpint (vl_embedding_view_hover_at (v, xl, yl), ==, left);
  g_autofree char *want = g_strdup_printf ("img/%02d.png\nants", left);
  g_assert_cmpstr (vl_embedding_view_get_hover_text (v), ==, want);
  vl_embedding_view_hover_at (v, -1, -1);
  g_assert_null (vl_embedding_view_get_hover_text (v));

  /* a click on a point */
  gint64 got = -1;
  g_signal_connect (w, "point-activated", G_CALLBACK (activated_cb), &got);
  g_assert_true (vl_embedding_view_activate_at (v, xr, yr));
  g_assert_cmpint (got, ==, right);
  g_assert_false (vl_embedding_view_activate_at (v, 1, 1));

  /* the export: dots of both class colours */
  g_autofree char *dir = vl_test_tmpdir ();
  g_autofree char *path = g_build_filename (dir, "map.png", NULL);
  g_autoptr(GError) error = NULL;
  g_assert_true (vl_embedding_view_export_png (v, path, 480, 400, &error));
  g_assert_no_error (error);
  cairo_surface_t *img = cairo_image_surface_create_from_png (path);
  g_assert_cmpint (cairo_surface_status (img), ==, CAIRO_STATUS_SUCCESS);
  g_assert_cmpint (cairo_image_surface_get_width (img), ==, 480);
  for (int k = 0; k < 2; k++)
    {
      double rgb[3];
      vl_embedding_view_class_colour (k, rgb);
      int n = count_near (img, rgb, 40);
      g_test_message ("class %d: %d pixels", k, n);
      g_assert_cmpint (n, >, 5 * 20);   /* about 20 dots of ~30 pixels each (and the legend) */
    }
  cairo_surface_destroy (img);
  for (int i = 0; i < N; i++)
    g_free (files[i]);
  gtk_window_destroy (GTK_WINDOW (win));
}

int
main (int argc, char **argv)
{
  g_setenv ("GTK_A11Y", "none", TRUE);
  gtk_test_init (&argc, &argv, NULL);
  g_test_add_func ("/ui/embedding-view/pca", test_pca);
  g_test_add_func ("/ui/embedding-view/interaction", test_interaction);
  return g_test_run ();
}

/* vl-try-panel.c: "Try it" — new images through a trained model (see vl-try-panel.h). */
#include "vl-try-panel.h"
#include <glib/gi18n.h>

#include <math.h>
#include <string.h>

#include "vl-attention-view.h"
#include "vl-colormap.h"
#include "vl-run.h"
#include "vl-task-view.h"
#include "vl-threads.h"
#include "vl-draw-boxes.h"
#include "vl-detect.h"
#include "vl-jobs.h"
#include "vl-mask-view.h"
#include "vl-seg.h"
#include "vl-augment.h"

#define SHOW_SIZE 112

/* One image's answer. */
typedef struct {
  char       *file;
  char       *error;        /* NULL when it ran */
  int         n_out;
  float      *out;          /* (n_out) probabilities (classify) or values in the targets' units */
  gboolean    standardised; /* regress without a run folder: the head's raw outputs */
  float      *rollout;      /* (gh * gw) */
  int         gh, gw;
  GdkTexture *crop;         /* what the model saw */
  GdkTexture *overlay;      /* the rollout over it; a dense task's mask or boxes */
  char       *summary;      /* segmentation, detection: the classes' share, the boxes */
} Result;

static void
result_free (gpointer p)
{
  Result *r = p;
  g_free (r->file);
  g_free (r->error);
  g_free (r->out);
  g_free (r->rollout);
  g_clear_object (&r->crop);
  g_clear_object (&r->overlay);
  g_free (r->summary);
  g_free (r);
}

/* Shared by the worker and the main loop: results not drained yet, at most one idle queued. */
typedef struct {
  GMutex        lock;
  GPtrArray    *pending;     /* Result * */
  int           done, total;
  gboolean      queued;
  GWeakRef      panel;
  GCancellable *cancel;
} Queue;

static void
queue_clear (gpointer p)
{
  Queue *q = p;
  g_mutex_clear (&q->lock);
  g_ptr_array_unref (q->pending);
  g_weak_ref_clear (&q->panel);
  g_clear_object (&q->cancel);
}

static void
queue_unref (gpointer p)
{
  g_atomic_rc_box_release_full (p, queue_clear);
}

struct _VlTryPanel
{
  GtkBox        parent_instance;

  GtkWidget    *model_label;
  GtkWidget    *progress_bar;
  GtkWidget    *export_button, *clear_button, *open_button, *folder_button;
  GtkWidget    *list;          /* GtkListBox */
  GtkWidget    *empty_label;

  VlTrainedRef *trained;
  char         *run_dir;
  VlTaskKind    task;
  char        **names;         /* classes or targets */
  GPtrArray    *results;       /* Result * */
  GPtrArray    *paths;         /* char *: everything added, to run again under a new model */
  GCancellable *cancel;        /* the jobs in flight share it */
  int           n_jobs;
};

static void vl_try_panel_task_view_init (VlTaskViewInterface *iface);

G_DEFINE_FINAL_TYPE_WITH_CODE (VlTryPanel, vl_try_panel, GTK_TYPE_BOX,
                               G_IMPLEMENT_INTERFACE (VL_TYPE_TASK_VIEW,
                                                      vl_try_panel_task_view_init))

enum { PROP_0, PROP_BUSY, N_PROPS };
static GParamSpec *props[N_PROPS];
enum { SIGNAL_RESULTS_CHANGED, SIGNAL_FAILED, N_SIGNALS };
static guint signals[N_SIGNALS];

static void
vl_try_panel_task_view_init (VlTaskViewInterface *iface)
{
  iface->applies_to = NULL;   /* classes or values: every task the window trains */
}

/* ------------------------------------------------------------------ the worker */

typedef struct {
  VlTrainedRef *trained;
  char         *run_dir;
  VlTaskKind    task;
  char        **paths;
  char        **names;      /* the classes (segmentation, detection: the background first) */
  Queue        *queue;
} Job;

static void
job_free (gpointer p)
{
  Job *j = p;
  vl_trained_unref (j->trained);
  g_free (j->run_dir);
  g_strfreev (j->paths);
  g_strfreev (j->names);
  queue_unref (j->queue);
  g_free (j);
}

static gboolean drain_idle (gpointer user_data);

static void
post (Queue *q, Result *r, int done, int total)
{
  g_mutex_lock (&q->lock);
  if (r)
    g_ptr_array_add (q->pending, r);
  q->done = done;
  q->total = total;
  if (!q->queued)
    {
      q->queued = TRUE;
      g_idle_add_full (G_PRIORITY_DEFAULT_IDLE, drain_idle, g_atomic_rc_box_acquire (q),
                       queue_unref);
    }
  g_mutex_unlock (&q->lock);
}

static int
cmp_str (gconstpointer a, gconstpointer b)
{
  return g_strcmp0 (*(char *const *) a, *(char *const *) b);
}

/* Files first as given, a folder's images in name order. */
static GPtrArray *
expand_paths (char **paths)
{
  GPtrArray *out = g_ptr_array_new_with_free_func (g_free);
  for (int i = 0; paths[i]; i++)
    {
      if (!g_file_test (paths[i], G_FILE_TEST_IS_DIR))
        {
          g_ptr_array_add (out, g_strdup (paths[i]));
          continue;
        }
      g_autoptr(GDir) dir = g_dir_open (paths[i], 0, NULL);
      g_autoptr(GPtrArray) in = g_ptr_array_new_with_free_func (g_free);
      const char *name;
      while (dir && (name = g_dir_read_name (dir)))
        if (vl_image_has_extension (name, FALSE))
          g_ptr_array_add (in, g_build_filename (paths[i], name, NULL));
      g_ptr_array_sort (in, cmp_str);
      for (guint k = 0; k < in->len; k++)
        g_ptr_array_add (out, g_strdup (g_ptr_array_index (in, k)));
    }
  return out;
}

static GdkTexture *
texture_from_rgb (guchar *rgb, int w, int h)
{
  g_autoptr(GBytes) bytes = g_bytes_new_take (rgb, (gsize) w * h * 3);
  return gdk_memory_texture_new (w, h, GDK_MEMORY_R8G8B8, bytes, (gsize) w * 3);
}

/* The crop (RGB) and the rollout laid over it: normalised to [0, 1], bilinear from the patch
 * grid, viridis at 60% opacity. */
static void
make_textures (Result *r, const VlImage *crop)
{
  const int W = crop->width, H = crop->height, C = crop->channels;
  guchar *rgb = g_malloc ((gsize) W * H * 3);
  guchar *over = g_malloc ((gsize) W * H * 3);
  float lo = r->rollout[0], hi = r->rollout[0];
  for (int i = 1; i < r->gh * r->gw; i++)
    {
      lo = MIN (lo, r->rollout[i]);
      hi = MAX (hi, r->rollout[i]);
    }
  float span = hi > lo ? hi - lo : 1;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        double gy = CLAMP ((y + 0.5) * r->gh / H - 0.5, 0, r->gh - 1);
        double gx = CLAMP ((x + 0.5) * r->gw / W - 0.5, 0, r->gw - 1);
        int y0 = (int) gy, x0 = (int) gx;
        int y1 = MIN (y0 + 1, r->gh - 1), x1 = MIN (x0 + 1, r->gw - 1);
        double fy = gy - y0, fx = gx - x0;
        const float *R = r->rollout;
        double v = (1 - fy) * ((1 - fx) * R[y0 * r->gw + x0] + fx * R[y0 * r->gw + x1])
                 + fy * ((1 - fx) * R[y1 * r->gw + x0] + fx * R[y1 * r->gw + x1]);
        guint8 c[3];
        vl_colormap_map_u8 (VL_COLORMAP_VIRIDIS, (v - lo) / span, c);
        for (int k = 0; k < 3; k++)
          {
            guchar p = crop->pixels[((gsize) y * W + x) * C + (C == 1 ? 0 : k)];
            rgb[((gsize) y * W + x) * 3 + k] = p;
            over[((gsize) y * W + x) * 3 + k] = (guchar) lrint (0.4 * p + 0.6 * c[k]);
          }
      }
  r->crop = texture_from_rgb (rgb, W, H);
  r->overlay = texture_from_rgb (over, W, H);
}

/* ------------------------------------------------------------------ segmentation, detection */

#define DET_SCORE 0.5f   /* the boxes drawn (the evaluation page's first threshold) */
#define DENSE_SHOW 256   /* the side of a dense result's pictures */

static const char *
class_name (char **names, int k, char *buf, gsize size)
{
  if (names && k >= 0 && k < (int) g_strv_length (names))
    return names[k];
  g_snprintf (buf, size, "class %d", k);
  return buf;
}

/* The mask at the run's input size over the squashed image, and the classes' shares. */
static gboolean
segment_image (Result *r, VlModel *m, VlSegHead *h, const VlImage *img, int size, char **names,
               GError **error)
{
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  if (size > 0)
    pp.size = size;
  const VlGeometry *g = vl_model_geometry (m);
  const int S = pp.size, G = S / g->patch, K = vl_seg_head_n_classes (h);
  g_autofree float *px = g_new (float, (gsize) pp.channels * S * S);
  vl_preprocess_squash (img, &pp, px);
  if (!vl_model_forward (m, px, 1, S, S, VL_FORWARD_INFER, error))
    return FALSE;
  const float *z = vl_seg_head_forward (h, vl_model_tokens_final (m), 1, vl_model_n_tokens_last (m),
                                        g->n_prefix, G, G, S, S);
  g_autofree uint8_t *mask = g_new (uint8_t, (gsize) S * S);
  vl_seg_argmax (mask, z, (int64_t) S * S, K);
  g_autoptr(VlImage) crop = vl_image_from_chw (px, &pp);
  r->crop = vl_mask_texture (crop, NULL, 0);
  r->overlay = vl_mask_texture (crop, mask, 0.55);
  g_autofree int64_t *count = g_new0 (int64_t, K);
  for (gsize p = 0; p < (gsize) S * S; p++)
    count[mask[p]]++;
  GString *t = g_string_new (NULL);
  for (int rank = 0; rank < 3; rank++)
    {
      int best = -1;
      for (int k = 0; k < K; k++)
        if (count[k] > 0 && (best < 0 || count[k] > count[best]))
          best = k;
      if (best < 0)
        break;
      char buf[24];
      const double pct = 100.0 * count[best] / ((double) S * S);
      g_string_append_printf (t, "%s%s %s%.0f %%", rank ? " · " : "",
                              class_name (names, best, buf, sizeof buf), pct < 0.5 ? "<" : "",
                              pct < 0.5 ? 1.0 : pct);
      count[best] = 0;
    }
  r->summary = g_string_free (t, FALSE);
  return TRUE;
}

/* The image scaled to DENSE_SHOW pixels on its longer side (nearest: small images stay sharp
 * and their boxes' labels readable), into an opaque cairo surface. */
static cairo_surface_t *
surface_of (const VlImage *img, double *scale)
{
  *scale = (double) DENSE_SHOW / MAX (img->width, img->height);
  const int W = MAX (1, (int) (img->width * *scale)), H = MAX (1, (int) (img->height * *scale));
  cairo_surface_t *surf = cairo_image_surface_create (CAIRO_FORMAT_ARGB32, W, H);
  cairo_surface_flush (surf);
  guint8 *data = cairo_image_surface_get_data (surf);
  const int stride = cairo_image_surface_get_stride (surf), C = img->channels;
  for (int y = 0; y < H; y++)
    for (int x = 0; x < W; x++)
      {
        const uint8_t *p = img->pixels + ((gsize) MIN (img->height - 1, (int) (y / *scale)) *
                                          img->width + MIN (img->width - 1, (int) (x / *scale))) * C;
        guint32 v = 0xff000000u | (C >= 3 ? (guint32) p[0] << 16 | (guint32) p[1] << 8 | p[2]
                                          : (guint32) p[0] * 0x010101u);
        *(guint32 *) (data + (gsize) y * stride + 4 * x) = v;
      }
  cairo_surface_mark_dirty (surf);
  return surf;
}

static GdkTexture *
texture_of (cairo_surface_t *surf)
{
  cairo_surface_flush (surf);
  const int W = cairo_image_surface_get_width (surf), H = cairo_image_surface_get_height (surf);
  const int stride = cairo_image_surface_get_stride (surf);
  g_autoptr(GBytes) bytes = g_bytes_new (cairo_image_surface_get_data (surf), (gsize) stride * H);
  return gdk_memory_texture_new (W, H, GDK_MEMORY_DEFAULT, bytes, stride);
}

/* The run's boxes scoring at least DET_SCORE drawn on the image, and a list of them. */
static gboolean
detect_image (Result *r, VlModel *m, VlDetHead *h, const VlImage *img, int size, char **names,
              GError **error)
{
  VlFcosPostprocess post = VL_FCOS_POSTPROCESS_DEFAULT;
  post.score_thresh = DET_SCORE;
  g_autofree VlDetection *dets = g_new (VlDetection, post.max_dets);
  int n = vl_detect_image (m, h, img, size, &post, dets, error);
  if (n < 0)
    return FALSE;
  double s;
  cairo_surface_t *plain = surface_of (img, &s);
  r->crop = texture_of (plain);
  cairo_t *cr = cairo_create (plain);
  /* drawn at DENSE_SHOW, shown at SHOW_SIZE: lines and labels sized for what is seen */
  const double k = (double) DENSE_SHOW / SHOW_SIZE;
  vl_draw_detections (cr, dets, n, s, (const char *const *) names, 2 * k, 8.5 * k,
                      cairo_image_surface_get_width (plain), cairo_image_surface_get_height (plain));
  GString *t = g_string_new (NULL);
  if (n == 1)
    g_string_printf (t, _("1 box at score ≥ %.1f"), DET_SCORE);
  else
    g_string_printf (t, _("%d boxes at score ≥ %.1f"), n, DET_SCORE);
  for (int i = 0; i < n && i < 3; i++)
    {
      char buf[24];
      g_string_append_printf (t, "%s%s %.2f", i ? ", " : ": ",
                              class_name (names, dets[i].label, buf, sizeof buf), dets[i].score);
    }
  cairo_destroy (cr);
  r->overlay = texture_of (plain);
  cairo_surface_destroy (plain);
  r->summary = g_string_free (t, FALSE);
  return TRUE;
}

/* A segmentation or detection run's result for one image (the model's lock held). */
static gboolean
dense_result (Result *r, VlTrainedRef *trained, VlTaskKind task, const VlImage *img, int size,
              char **names, GError **error)
{
  VlModel *m = vl_trained_model (trained);
  if (task == VL_TASK_SEGMENT)
    {
      VlSegHead *h = vl_trained_seg_head (trained);
      if (h == NULL)
        {
          g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("the run has no seg head"));
          return FALSE;
        }
      return segment_image (r, m, h, img, size, names, error);
    }
  VlDetHead *h = vl_trained_det_head (trained);
  if (h == NULL)
    {
      g_set_error (error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND, _("the run has no FCOS head"));
      return FALSE;
    }
  return detect_image (r, m, h, img, size, names, error);
}

static void
job_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  Job *j = task_data;
  GError *error = NULL;
  VlRunTask rt = { 0 };
  gboolean have_task = FALSE;
  if (j->task == VL_TASK_REGRESS && j->run_dir)
    {
      if (!vl_run_read_task (j->run_dir, &rt, &error))
        {
          g_task_return_error (task, error);
          return;
        }
      have_task = TRUE;
    }
  /* a dense task's input size: the run's */
  const gboolean dense = j->task == VL_TASK_SEGMENT || j->task == VL_TASK_DETECT;
  int dense_size = 0;
  if (dense && j->run_dir)
    {
      VlTrainConfig c;
      vl_train_config_init (&c);
      if (vl_train_config_load (&c, j->run_dir, NULL))
        dense_size = c.img_size;
      vl_train_config_clear (&c);
    }
  g_autoptr(GPtrArray) files = expand_paths (j->paths);
  const int total = (int) files->len;
  for (int i = 0; i < total; i++)
    {
      if (g_cancellable_is_cancelled (cancel))
        break;
      const char *path = g_ptr_array_index (files, i);
      Result *r = g_new0 (Result, 1);
      r->file = g_strdup (path);
      g_autoptr(VlImage) img = vl_image_load (path, 0, &error);
      if (img == NULL)
        {
          r->error = g_strdup (error->message);
          g_clear_error (&error);
          post (j->queue, r, i + 1, total);
          continue;
        }
      if (dense)
        {
          g_mutex_lock (&j->trained->lock);
          gboolean ok = dense_result (r, j->trained, j->task, img, dense_size, j->names, &error);
          g_mutex_unlock (&j->trained->lock);
          if (!ok)
            {
              r->error = g_strdup (error->message);
              g_clear_error (&error);
            }
          post (j->queue, r, i + 1, total);
          continue;
        }
      g_mutex_lock (&j->trained->lock);
      VlModel *m = vl_trained_model (j->trained);
      VlPreprocess pp;
      vl_preprocess_from_model (m, &pp);
      g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);
      vl_preprocess_eval (img, &pp, px);
      const int K = vl_model_num_classes (m);
      const VlGeometry *g = vl_model_geometry (m);
      gboolean ok = K > 0 &&
                    vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_CAPTURE_ATTN, &error);
      if (ok)
        {
          r->n_out = K;
          r->out = g_memdup2 (vl_model_logits (m), sizeof (float) * K);
          int T = vl_model_n_tokens_last (m);
          r->gh = r->gw = pp.size / g->patch;
          r->rollout = g_new (float, MAX (T, r->gh * r->gw));
          ok = vl_model_rollout (m, r->rollout, &error);
        }
      g_mutex_unlock (&j->trained->lock);
      if (!ok)
        {
          r->error = g_strdup (error ? error->message : "the model has no head");
          g_clear_error (&error);
          g_clear_pointer (&r->rollout, g_free);
          post (j->queue, r, i + 1, total);
          continue;
        }
      if (j->task == VL_TASK_REGRESS)
        {
          if (have_task && rt.n_values == r->n_out)
            {
              VlTaskSpec spec = vl_run_task_spec (&rt);
              g_autofree float *v = g_new (float, r->n_out);
              vl_task_unstandardize (&spec, r->out, v);
              memcpy (r->out, v, sizeof (float) * r->n_out);
            }
          else
            r->standardised = TRUE;
        }
      else
        {
          float mx = r->out[0];
          for (int k = 1; k < r->n_out; k++)
            mx = MAX (mx, r->out[k]);
          double s = 0;
          for (int k = 0; k < r->n_out; k++)
            s += exp ((double) r->out[k] - mx);
          for (int k = 0; k < r->n_out; k++)
            r->out[k] = (float) (exp ((double) r->out[k] - mx) / s);
        }
      g_autoptr(VlImage) crop = vl_attention_crop_for_display (img, &pp);
      make_textures (r, crop);
      post (j->queue, r, i + 1, total);
    }
  if (have_task)
    vl_run_task_clear (&rt);
  if (g_task_return_error_if_cancelled (task))
    return;
  g_task_return_boolean (task, TRUE);
}

/* ------------------------------------------------------------------ rows */

static int
top_index (const Result *r, int rank)
{
  /* the rank-th largest probability (ties: the lower class) */
  int taken[VL_TRY_TOP] = { -1, -1, -1 };
  int best = -1;
  for (int q = 0; q <= rank; q++)
    {
      best = -1;
      for (int k = 0; k < r->n_out; k++)
        {
          gboolean used = FALSE;
          for (int t = 0; t < q; t++)
            used |= taken[t] == k;
          if (!used && (best < 0 || r->out[k] > r->out[best]))
            best = k;
        }
      taken[q] = best;
    }
  return best;
}

static const char *
out_name (VlTryPanel *self, int k, char *buf, gsize size)
{
  if (self->names && k < (int) g_strv_length (self->names))
    return self->names[k];
  g_snprintf (buf, size, "%d", k);
  return buf;
}

static GtkWidget *
picture_for (GdkTexture *tex)
{
  GtkWidget *pic = gtk_picture_new_for_paintable (GDK_PAINTABLE (tex));
  gtk_picture_set_can_shrink (GTK_PICTURE (pic), TRUE);
  gtk_widget_set_size_request (pic, SHOW_SIZE, SHOW_SIZE);
  gtk_widget_add_css_class (pic, "vl-thumb");
  return pic;
}

static GtkWidget *
row_for (VlTryPanel *self, const Result *r)
{
  GtkWidget *row = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 12);
  gtk_widget_set_margin_top (row, 6);
  gtk_widget_set_margin_bottom (row, 6);
  gtk_widget_set_margin_start (row, 6);
  gtk_widget_set_margin_end (row, 6);
  if (r->crop)
    {
      gtk_box_append (GTK_BOX (row), picture_for (r->crop));
      GtkWidget *ov = picture_for (r->overlay);
      gtk_widget_set_tooltip_text (ov, self->task == VL_TASK_SEGMENT
                                       ? _("The predicted class of each pixel, in its colour")
                                   : self->task == VL_TASK_DETECT
                                       ? _("The predicted boxes scoring at least 0.5")
                                       : _("Attention rollout (CLS row of the product of the "
                                           "blocks' head-averaged attention)"));
      gtk_box_append (GTK_BOX (row), ov);
    }
  GtkWidget *col = gtk_box_new (GTK_ORIENTATION_VERTICAL, 4);
  gtk_widget_set_hexpand (col, TRUE);
  gtk_widget_set_valign (col, GTK_ALIGN_CENTER);
  g_autofree char *base = g_path_get_basename (r->file);
  GtkWidget *name = gtk_label_new (base);
  gtk_label_set_xalign (GTK_LABEL (name), 0);
  gtk_label_set_ellipsize (GTK_LABEL (name), PANGO_ELLIPSIZE_MIDDLE);
  gtk_widget_set_tooltip_text (name, r->file);
  gtk_widget_add_css_class (name, "heading");
  gtk_box_append (GTK_BOX (col), name);
  if (r->error)
    {
      GtkWidget *e = gtk_label_new (r->error);
      gtk_label_set_xalign (GTK_LABEL (e), 0);
      gtk_label_set_wrap (GTK_LABEL (e), TRUE);
      gtk_widget_add_css_class (e, "error");
      gtk_box_append (GTK_BOX (col), e);
    }
  else if (r->summary)
    {
      GtkWidget *l = gtk_label_new (r->summary);
      gtk_label_set_xalign (GTK_LABEL (l), 0);
      gtk_label_set_wrap (GTK_LABEL (l), TRUE);
      gtk_box_append (GTK_BOX (col), l);
    }
  else if (self->task == VL_TASK_REGRESS)
    {
      for (int k = 0; k < r->n_out; k++)
        {
          char buf[16];
          g_autofree char *t = g_strdup_printf ("%s = %.4g%s", out_name (self, k, buf, sizeof buf),
                                                r->out[k],
                                                r->standardised ? " (standardised)" : "");
          GtkWidget *l = gtk_label_new (t);
          gtk_label_set_xalign (GTK_LABEL (l), 0);
          gtk_widget_add_css_class (l, "vl-numeric");
          gtk_box_append (GTK_BOX (col), l);
        }
    }
  else
    {
      /* one grid for the ranks, so that names, bars and figures line up */
      GtkWidget *grid = gtk_grid_new ();
      gtk_grid_set_column_spacing (GTK_GRID (grid), 8);
      gtk_grid_set_row_spacing (GTK_GRID (grid), 2);
      for (int rank = 0; rank < MIN (VL_TRY_TOP, r->n_out); rank++)
        {
          int k = top_index (r, rank);
          char buf[16];
          GtkWidget *l = gtk_label_new (out_name (self, k, buf, sizeof buf));
          gtk_label_set_xalign (GTK_LABEL (l), 0);
          gtk_label_set_max_width_chars (GTK_LABEL (l), 24);
          gtk_label_set_ellipsize (GTK_LABEL (l), PANGO_ELLIPSIZE_END);
          if (rank == 0)
            gtk_widget_add_css_class (l, "heading");
          gtk_grid_attach (GTK_GRID (grid), l, 0, rank, 1, 1);
          GtkWidget *bar = gtk_level_bar_new_for_interval (0, 1);
          gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_LOW);
          gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_HIGH);
          gtk_level_bar_remove_offset_value (GTK_LEVEL_BAR (bar), GTK_LEVEL_BAR_OFFSET_FULL);
          gtk_level_bar_set_value (GTK_LEVEL_BAR (bar), r->out[k]);
          gtk_widget_set_hexpand (bar, TRUE);
          gtk_widget_set_valign (bar, GTK_ALIGN_CENTER);
          gtk_grid_attach (GTK_GRID (grid), bar, 1, rank, 1, 1);
          g_autofree char *p = g_strdup_printf ("%.1f%%", 100.0 * r->out[k]);
          GtkWidget *pl = gtk_label_new (p);
          gtk_label_set_width_chars (GTK_LABEL (pl), 6);
          gtk_label_set_xalign (GTK_LABEL (pl), 1);
          gtk_widget_add_css_class (pl, "vl-numeric");
          gtk_grid_attach (GTK_GRID (grid), pl, 2, rank, 1, 1);
        }
      gtk_box_append (GTK_BOX (col), grid);
    }
  gtk_box_append (GTK_BOX (row), col);
  return row;
}

static void
update_state (VlTryPanel *self)
{
  gboolean busy = self->cancel != NULL;
  gtk_widget_set_sensitive (self->export_button, !busy && self->results->len > 0);
  gtk_widget_set_sensitive (self->clear_button, self->results->len > 0 || busy);
  gtk_widget_set_sensitive (self->open_button, self->trained != NULL);
  gtk_widget_set_sensitive (self->folder_button, self->trained != NULL);
  gtk_widget_set_visible (self->progress_bar, busy);
  gtk_widget_set_visible (self->empty_label, self->results->len == 0);
}

static gboolean
drain_idle (gpointer user_data)
{
  Queue *q = user_data;
  g_mutex_lock (&q->lock);
  GPtrArray *got = q->pending;
  q->pending = g_ptr_array_new ();
  int done = q->done, total = q->total;
  q->queued = FALSE;
  g_mutex_unlock (&q->lock);
  g_autoptr(VlTryPanel) self = g_weak_ref_get (&q->panel);
  if (self == NULL || self->cancel != q->cancel)
    {
      g_ptr_array_set_free_func (got, result_free);   /* stale */
      g_ptr_array_unref (got);
      return G_SOURCE_REMOVE;
    }
  for (guint i = 0; i < got->len; i++)
    {
      Result *r = g_ptr_array_index (got, i);
      g_ptr_array_add (self->results, r);
      gtk_list_box_append (GTK_LIST_BOX (self->list), row_for (self, r));
    }
  g_ptr_array_unref (got);
  if (total > 0)
    gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress_bar), (double) done / total);
  update_state (self);
  g_signal_emit (self, signals[SIGNAL_RESULTS_CHANGED], 0);
  return G_SOURCE_REMOVE;
}

static void
job_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlTryPanel *self = VL_TRY_PANEL (source);
  if (g_task_get_cancellable (G_TASK (result)) != self->cancel)
    return;   /* stale */
  g_autoptr(GError) error = NULL;
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      g_autofree char *t = g_strdup_printf (_("Try it: %s"), error->message);
      gtk_label_set_text (GTK_LABEL (self->model_label), t);
    }
  Job *j = g_task_get_task_data (G_TASK (result));
  drain_idle (j->queue);   /* what the worker posted last */
  if (--self->n_jobs > 0)
    return;   /* more images added meanwhile: their job runs on */
  g_clear_object (&self->cancel);
  update_state (self);
  g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BUSY]);
}

static void
run_paths (VlTryPanel *self, char **paths)
{
  Job *j = g_new0 (Job, 1);
  j->trained = vl_trained_ref (self->trained);
  j->run_dir = g_strdup (self->run_dir);
  j->task = self->task;
  j->paths = g_strdupv (paths);
  j->names = g_strdupv (self->names);
  gboolean was_busy = self->cancel != NULL;
  if (!was_busy)
    self->cancel = g_cancellable_new ();
  self->n_jobs++;
  j->queue = g_atomic_rc_box_new0 (Queue);
  g_mutex_init (&j->queue->lock);
  j->queue->pending = g_ptr_array_new ();
  g_weak_ref_init (&j->queue->panel, self);
  j->queue->cancel = g_object_ref (self->cancel);
  g_autoptr(GTask) task = g_task_new (self, self->cancel, job_done, NULL);
  g_task_set_task_data (task, j, job_free);
  g_task_run_in_thread (task, job_thread);
  gtk_progress_bar_set_fraction (GTK_PROGRESS_BAR (self->progress_bar), 0);
  update_state (self);
  if (!was_busy)
    g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BUSY]);
}

static void
clear_results (VlTryPanel *self)
{
  if (self->cancel)
    {
      g_cancellable_cancel (self->cancel);
      g_clear_object (&self->cancel);
      self->n_jobs = 0;
      g_object_notify_by_pspec (G_OBJECT (self), props[PROP_BUSY]);
    }
  g_ptr_array_set_size (self->results, 0);
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (self->list)))
    gtk_list_box_remove (GTK_LIST_BOX (self->list), child);
  update_state (self);
}

/* ------------------------------------------------------------------ the public API */

void
vl_try_panel_set_model (VlTryPanel *self, VlTrainedRef *trained, const char *run_dir,
                        VlTaskKind task, const char *const *class_names,
                        const char *const *value_names)
{
  g_return_if_fail (VL_IS_TRY_PANEL (self));
  clear_results (self);
  g_clear_pointer (&self->trained, vl_trained_unref);
  self->trained = trained ? vl_trained_ref (trained) : NULL;
  g_free (self->run_dir);
  self->run_dir = g_strdup (run_dir);
  self->task = task;
  g_strfreev (self->names);
  self->names = g_strdupv ((char **) (task == VL_TASK_REGRESS ? value_names : class_names));
  if (trained == NULL)
    gtk_label_set_text (GTK_LABEL (self->model_label),
                        _("No trained model yet: train one, or open a run folder."));
  else
    {
      g_autofree char *base = run_dir ? g_path_get_basename (run_dir) : NULL;
      g_autofree char *t = g_strdup_printf (_("Model: %s%s · %s"),
                                            base ? _("run ") : _("the last run"),
                                            base ? base : "",
                                            task == VL_TASK_REGRESS ? _("predicted values")
                                            : task == VL_TASK_SEGMENT ? _("masks")
                                            : task == VL_TASK_DETECT ? _("boxes")
                                            : _("top classes"));
      gtk_label_set_text (GTK_LABEL (self->model_label), t);
    }
  if (trained && self->paths->len > 0)
    {
      g_ptr_array_add (self->paths, NULL);
      g_auto(GStrv) again = g_strdupv ((char **) self->paths->pdata);
      g_ptr_array_remove_index (self->paths, self->paths->len - 1);
      run_paths (self, again);
    }
  update_state (self);
}

gboolean
vl_try_panel_has_model (VlTryPanel *self)
{
  return self->trained != NULL;
}

void
vl_try_panel_add_files (VlTryPanel *self, const char *const *paths)
{
  g_return_if_fail (VL_IS_TRY_PANEL (self));
  if (paths == NULL || paths[0] == NULL)
    return;
  for (int i = 0; paths[i]; i++)
    g_ptr_array_add (self->paths, g_strdup (paths[i]));
  if (self->trained == NULL)
    {
      gtk_label_set_text (GTK_LABEL (self->model_label),
                          _("No trained model yet: these images run once a run finishes or a run "
                            "folder is opened."));
      return;
    }
  run_paths (self, (char **) paths);
}

void
vl_try_panel_clear (VlTryPanel *self)
{
  g_return_if_fail (VL_IS_TRY_PANEL (self));
  clear_results (self);
  g_ptr_array_set_size (self->paths, 0);
}

gboolean
vl_try_panel_is_busy (VlTryPanel *self)
{
  return self->cancel != NULL;
}

int
vl_try_panel_get_n_results (VlTryPanel *self)
{
  return (int) self->results->len;
}

const char *
vl_try_panel_get_result (VlTryPanel *self, int i, const char **error, int *top_class,
                         double *prob)
{
  g_return_val_if_fail (i >= 0 && i < (int) self->results->len, NULL);
  const Result *r = g_ptr_array_index (self->results, i);
  if (error)
    *error = r->error;
  if (r->error == NULL && r->n_out == 0)
    {
      if (top_class)
        *top_class = -1;
      if (prob)
        *prob = NAN;
    }
  else if (r->error == NULL)
    {
      int k = self->task == VL_TASK_REGRESS ? 0 : top_index (r, 0);
      if (top_class)
        *top_class = k;
      if (prob)
        *prob = r->out[k];
    }
  return r->file;
}

const char *
vl_try_panel_get_summary (VlTryPanel *self, int i)
{
  g_return_val_if_fail (i >= 0 && i < (int) self->results->len, NULL);
  const Result *r = g_ptr_array_index (self->results, i);
  return r->summary;
}

const float *
vl_try_panel_get_rollout (VlTryPanel *self, int i, int *gh, int *gw)
{
  g_return_val_if_fail (i >= 0 && i < (int) self->results->len, NULL);
  const Result *r = g_ptr_array_index (self->results, i);
  *gh = r->gh;
  *gw = r->gw;
  return r->rollout;
}

static void
csv_field (GString *s, const char *v)
{
  if (strpbrk (v, ",\"\n\r") == NULL)
    {
      g_string_append (s, v);
      return;
    }
  g_string_append_c (s, '"');
  for (const char *p = v; *p; p++)
    {
      if (*p == '"')
        g_string_append_c (s, '"');
      g_string_append_c (s, *p);
    }
  g_string_append_c (s, '"');
}

gboolean
vl_try_panel_export_csv (VlTryPanel *self, const char *path, GError **error)
{
  g_return_val_if_fail (VL_IS_TRY_PANEL (self), FALSE);
  g_autoptr(GString) s = g_string_new ("file");
  int n_out = 0;
  for (guint i = 0; i < self->results->len; i++)
    {
      const Result *r = g_ptr_array_index (self->results, i);
      if (r->error == NULL)
        {
          n_out = r->n_out;
          break;
        }
    }
  char buf[32];
  if (self->task == VL_TASK_SEGMENT || self->task == VL_TASK_DETECT)
    {
      /* a dense task's rows: what each image holds */
      g_string_append (s, ",summary\n");
      for (guint i = 0; i < self->results->len; i++)
        {
          const Result *r = g_ptr_array_index (self->results, i);
          if (r->error)
            continue;
          csv_field (s, r->file);
          g_string_append_c (s, ',');
          csv_field (s, r->summary ? r->summary : "");
          g_string_append_c (s, '\n');
        }
      return vl_write_file_atomic (path, s->str, (gssize) s->len, error);
    }
  if (self->task != VL_TASK_REGRESS)
    g_string_append (s, ",predicted,probability");
  for (int k = 0; k < n_out; k++)
    {
      g_string_append_c (s, ',');
      g_autofree char *h = g_strdup_printf ("%s%s", self->task == VL_TASK_REGRESS ? "" : "p_",
                                            out_name (self, k, buf, sizeof buf));
      csv_field (s, h);
    }
  g_string_append_c (s, '\n');
  for (guint i = 0; i < self->results->len; i++)
    {
      const Result *r = g_ptr_array_index (self->results, i);
      if (r->error)
        continue;
      csv_field (s, r->file);
      if (self->task != VL_TASK_REGRESS)
        {
          int k = top_index (r, 0);
          g_string_append_c (s, ',');
          csv_field (s, out_name (self, k, buf, sizeof buf));
          g_string_append_printf (s, ",%.9g", r->out[k]);
        }
      for (int k = 0; k < r->n_out; k++)
        g_string_append_printf (s, ",%.9g", r->out[k]);
      g_string_append_c (s, '\n');
    }
  return vl_write_file_atomic (path, s->str, (gssize) s->len, error);
}

/* ------------------------------------------------------------------ buttons, drops */

static void
files_chosen (GtkNativeDialog *dialog, int response, VlTryPanel *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GListModel) files = gtk_file_chooser_get_files (GTK_FILE_CHOOSER (dialog));
      g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
      for (guint i = 0; i < g_list_model_get_n_items (files); i++)
        {
          g_autoptr(GFile) f = g_list_model_get_item (files, i);
          char *p = g_file_get_path (f);
          if (p)
            g_ptr_array_add (paths, p);
        }
      g_ptr_array_add (paths, NULL);
      vl_try_panel_add_files (self, (const char *const *) paths->pdata);
    }
  g_object_unref (dialog);
}

static void
choose (VlTryPanel *self, gboolean folder)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkFileChooserNative *d =
    gtk_file_chooser_native_new (folder ? _("Try a Folder of Images") : _("Try Images"),
                                 GTK_IS_WINDOW (root) ? GTK_WINDOW (root) : NULL,
                                 folder ? GTK_FILE_CHOOSER_ACTION_SELECT_FOLDER
                                        : GTK_FILE_CHOOSER_ACTION_OPEN, _("_Open"), _("_Cancel"));
  gtk_file_chooser_set_select_multiple (GTK_FILE_CHOOSER (d), TRUE);
  if (!folder)
    {
      GtkFileFilter *filter = gtk_file_filter_new ();
      gtk_file_filter_set_name (filter, "Images");
      for (int i = 0; vl_image_extensions[i]; i++)
        {
          g_autofree char *pat = g_strdup_printf ("*.%s", vl_image_extensions[i]);
          gtk_file_filter_add_pattern (filter, pat);
          g_autofree char *up = g_ascii_strup (pat, -1);
          gtk_file_filter_add_pattern (filter, up);
        }
      gtk_file_chooser_add_filter (GTK_FILE_CHOOSER (d), filter);
      g_object_unref (filter);
    }
  g_signal_connect (d, "response", G_CALLBACK (files_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (d));
}

static void
open_clicked (VlTryPanel *self)
{
  choose (self, FALSE);
}

static void
folder_clicked (VlTryPanel *self)
{
  choose (self, TRUE);
}

static void
export_chosen (GtkNativeDialog *dialog, int response, VlTryPanel *self)
{
  if (response == GTK_RESPONSE_ACCEPT)
    {
      g_autoptr(GFile) f = gtk_file_chooser_get_file (GTK_FILE_CHOOSER (dialog));
      g_autofree char *path = f ? g_file_get_path (f) : NULL;
      g_autoptr(GError) error = NULL;
      if (path && !vl_try_panel_export_csv (self, path, &error))
        {
          g_autofree char *msg = g_strdup_printf (_("Could not export the predictions: %s"),
                                                  error->message);
          g_signal_emit (self, signals[SIGNAL_FAILED], 0, msg);
        }
    }
  g_object_unref (dialog);
}

static void
export_clicked (VlTryPanel *self)
{
  GtkRoot *root = gtk_widget_get_root (GTK_WIDGET (self));
  GtkFileChooserNative *d =
    gtk_file_chooser_native_new (_("Export Predictions"), GTK_IS_WINDOW (root) ? GTK_WINDOW (root)
                                                                             : NULL,
                                 GTK_FILE_CHOOSER_ACTION_SAVE, _("_Export"), _("_Cancel"));
  gtk_file_chooser_set_current_name (GTK_FILE_CHOOSER (d), "predictions.csv");
  g_signal_connect (d, "response", G_CALLBACK (export_chosen), self);
  gtk_native_dialog_show (GTK_NATIVE_DIALOG (d));
}

static gboolean
on_drop (GtkDropTarget *target, const GValue *value, double x, double y, VlTryPanel *self)
{
  if (!G_VALUE_HOLDS (value, GDK_TYPE_FILE_LIST))
    return FALSE;
  g_autoptr(GPtrArray) paths = g_ptr_array_new_with_free_func (g_free);
  for (GSList *l = g_value_get_boxed (value); l; l = l->next)
    {
      char *p = g_file_get_path (l->data);
      if (p)
        g_ptr_array_add (paths, p);
    }
  if (paths->len == 0)
    return FALSE;
  g_ptr_array_add (paths, NULL);
  vl_try_panel_add_files (self, (const char *const *) paths->pdata);
  return TRUE;
}

/* ------------------------------------------------------------------ the type */

static void
vl_try_panel_get_property (GObject *object, guint prop_id, GValue *value, GParamSpec *pspec)
{
  VlTryPanel *self = VL_TRY_PANEL (object);
  switch (prop_id)
    {
    case PROP_BUSY: g_value_set_boolean (value, self->cancel != NULL); break;
    default: G_OBJECT_WARN_INVALID_PROPERTY_ID (object, prop_id, pspec);
    }
}

static void
vl_try_panel_dispose (GObject *object)
{
  VlTryPanel *self = VL_TRY_PANEL (object);
  if (self->cancel)
    g_cancellable_cancel (self->cancel);
  g_clear_object (&self->cancel);
  g_clear_pointer (&self->trained, vl_trained_unref);
  G_OBJECT_CLASS (vl_try_panel_parent_class)->dispose (object);
}

static void
vl_try_panel_finalize (GObject *object)
{
  VlTryPanel *self = VL_TRY_PANEL (object);
  g_ptr_array_unref (self->results);
  g_ptr_array_unref (self->paths);
  g_free (self->run_dir);
  g_strfreev (self->names);
  G_OBJECT_CLASS (vl_try_panel_parent_class)->finalize (object);
}

static void
vl_try_panel_class_init (VlTryPanelClass *klass)
{
  GObjectClass *object_class = G_OBJECT_CLASS (klass);
  object_class->get_property = vl_try_panel_get_property;
  object_class->dispose = vl_try_panel_dispose;
  object_class->finalize = vl_try_panel_finalize;
  props[PROP_BUSY] = g_param_spec_boolean ("busy", NULL, NULL, FALSE,
                                           G_PARAM_READABLE | G_PARAM_STATIC_STRINGS);
  g_object_class_install_properties (object_class, N_PROPS, props);
  signals[SIGNAL_RESULTS_CHANGED] =
    g_signal_new ("results-changed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL,
                  NULL, G_TYPE_NONE, 0);
  signals[SIGNAL_FAILED] =
    g_signal_new ("failed", G_TYPE_FROM_CLASS (klass), G_SIGNAL_RUN_LAST, 0, NULL, NULL, NULL,
                  G_TYPE_NONE, 1, G_TYPE_STRING);
}

static GtkWidget *
button (const char *label, const char *tooltip)
{
  GtkWidget *b = gtk_button_new_with_mnemonic (label);
  gtk_widget_set_tooltip_text (b, tooltip);
  return b;
}

static void
vl_try_panel_init (VlTryPanel *self)
{
  self->results = g_ptr_array_new_with_free_func (result_free);
  self->paths = g_ptr_array_new_with_free_func (g_free);
  gtk_orientable_set_orientation (GTK_ORIENTABLE (self), GTK_ORIENTATION_VERTICAL);
  gtk_box_set_spacing (GTK_BOX (self), 8);

  GtkWidget *bar = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  self->model_label = gtk_label_new ("");
  gtk_label_set_xalign (GTK_LABEL (self->model_label), 0);
  gtk_label_set_wrap (GTK_LABEL (self->model_label), TRUE);
  gtk_widget_set_hexpand (self->model_label, TRUE);
  gtk_widget_add_css_class (self->model_label, "dim-label");
  gtk_box_append (GTK_BOX (bar), self->model_label);
  self->open_button = button (_("_Images…"), _("Run the trained model on images you choose "
                                               "(or drop images and folders here)"));
  g_signal_connect_swapped (self->open_button, "clicked", G_CALLBACK (open_clicked), self);
  gtk_box_append (GTK_BOX (bar), self->open_button);
  self->folder_button = button (_("_Folder…"),
                                _("Run the trained model on every image of a folder"));
  g_signal_connect_swapped (self->folder_button, "clicked", G_CALLBACK (folder_clicked), self);
  gtk_box_append (GTK_BOX (bar), self->folder_button);
  self->export_button = button (_("_Export CSV…"),
                                _("Every image's prediction as one CSV table"));
  g_signal_connect_swapped (self->export_button, "clicked", G_CALLBACK (export_clicked), self);
  gtk_box_append (GTK_BOX (bar), self->export_button);
  self->clear_button = button (_("C_lear"), _("Forget these images"));
  g_signal_connect_swapped (self->clear_button, "clicked", G_CALLBACK (vl_try_panel_clear), self);
  gtk_box_append (GTK_BOX (bar), self->clear_button);
  gtk_box_append (GTK_BOX (self), bar);

  self->progress_bar = gtk_progress_bar_new ();
  gtk_box_append (GTK_BOX (self), self->progress_bar);

  GtkWidget *frame = gtk_frame_new (NULL);
  gtk_widget_add_css_class (frame, "vl-view-frame");
  gtk_widget_set_vexpand (frame, TRUE);
  GtkWidget *overlay = gtk_overlay_new ();
  GtkWidget *scroll = gtk_scrolled_window_new ();
  gtk_scrolled_window_set_policy (GTK_SCROLLED_WINDOW (scroll), GTK_POLICY_NEVER,
                                  GTK_POLICY_AUTOMATIC);
  self->list = gtk_list_box_new ();
  gtk_list_box_set_selection_mode (GTK_LIST_BOX (self->list), GTK_SELECTION_NONE);
  gtk_scrolled_window_set_child (GTK_SCROLLED_WINDOW (scroll), self->list);
  gtk_overlay_set_child (GTK_OVERLAY (overlay), scroll);
  self->empty_label = gtk_label_new (_("Drop images or a folder here to see what the trained model "
                                       "answers, and where it looks."));
  gtk_label_set_wrap (GTK_LABEL (self->empty_label), TRUE);
  gtk_label_set_justify (GTK_LABEL (self->empty_label), GTK_JUSTIFY_CENTER);
  gtk_widget_set_can_target (self->empty_label, FALSE);
  gtk_widget_add_css_class (self->empty_label, "dim-label");
  gtk_widget_add_css_class (self->empty_label, "title-4");
  gtk_overlay_add_overlay (GTK_OVERLAY (overlay), self->empty_label);
  gtk_frame_set_child (GTK_FRAME (frame), overlay);
  gtk_box_append (GTK_BOX (self), frame);

  GtkDropTarget *drop = gtk_drop_target_new (GDK_TYPE_FILE_LIST, GDK_ACTION_COPY);
  g_signal_connect (drop, "drop", G_CALLBACK (on_drop), self);
  gtk_widget_add_controller (GTK_WIDGET (self), GTK_EVENT_CONTROLLER (drop));
  vl_try_panel_set_model (self, NULL, NULL, VL_TASK_CLASSIFY, NULL, NULL);
}

GtkWidget *
vl_try_panel_new (void)
{
  return g_object_new (VL_TYPE_TRY_PANEL, NULL);
}

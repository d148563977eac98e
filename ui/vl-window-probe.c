/* vl-window-probe.c: the probe file. One image the user drops on the window, opens with "Open
 * Probe Image…" or names with --probe, or, while a backbone is loaded and no dataset is open,
 * the first of the shipped samples (data/samples): decoded and run through a copy of the
 * pretrained backbone and, when a run has left a trained model, through that one too, on a
 * worker thread; the Attention page shows it as the first probe button. While a run trains,
 * its preprocessed pixels go to the trainer (vl_trainer_set_user_probe), whose PROBES events
 * bring its attention under the model as it is now. */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include "vl-attention-view.h"

#include <glib/gstdio.h>
#include <stdio.h>
#include <string.h>

/* ------------------------------------------------------------------ finding images */

/* A regular file to try as an image: an image suffix, or content that sniffs as one. (Whether
 * it really decodes is for vl_image_load to say, on the worker thread.) */
gboolean
vl_looks_like_image (const char *path)
{
  if (path == NULL || !g_file_test (path, G_FILE_TEST_IS_REGULAR))
    return FALSE;
  if (g_str_has_suffix (path, ".safetensors"))
    return FALSE;
  if (vl_image_has_extension (path, FALSE))
    return TRUE;
  guchar head[512];
  size_t n = 0;
  FILE *f = g_fopen (path, "rb");
  if (f == NULL)
    return FALSE;
  n = fread (head, 1, sizeof head, f);
  fclose (f);
  if (n == 0)
    return FALSE;
  g_autofree char *type = g_content_type_guess (NULL, head, n, NULL);
  g_autofree char *mime = type ? g_content_type_get_mime_type (type) : NULL;
  return mime != NULL && g_str_has_prefix (mime, "image/");
}

/* The first shipped sample in byte order of the names (0-t-shirt-top-0.png), or NULL. */
char *
vl_first_sample_image (void)
{
  g_autofree char *dir = vl_data_path ("samples");
  g_autoptr(GDir) d = g_dir_open (dir, 0, NULL);
  if (d == NULL)
    return NULL;
  g_autofree char *first = NULL;
  const char *name;
  while ((name = g_dir_read_name (d)))
    if (vl_image_has_extension (name, FALSE) && (first == NULL || strcmp (name, first) < 0))
      {
        g_autofree char *path = g_build_filename (dir, name, NULL);
        if (g_file_test (path, G_FILE_TEST_IS_REGULAR))
          {
            g_free (first);
            first = g_strdup (name);
          }
      }
  return first ? g_build_filename (dir, first, NULL) : NULL;
}

/* ------------------------------------------------------------------ the state */

static void
probe_file_clear (VlProbeFile *pf)
{
  g_free (pf->path);
  g_clear_pointer (&pf->image, vl_image_free);
  g_free (pf->ref_attn);
  g_free (pf->now_attn);
  g_free (pf->ref_class);
  g_free (pf->now_class);
  g_free (pf->px);
  g_free (pf->live_attn);
  g_free (pf->live_class);
  memset (pf, 0, sizeof *pf);
}

const char *
vl_window_get_probe_path (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->probe_file.path;
}

/* ------------------------------------------------------------------ the worker */

typedef struct {
  char         *path;
  gboolean      is_sample;
  gboolean      user;         /* chosen just now: shown once it arrives */
  char         *backbone;     /* NULL: no backbone yet (the image alone) */
  VlTrainedRef *trained;      /* NULL: no trained model beside it */
  VlProbeFile   result;
} ProbeJob;

static void
probe_job_free (gpointer p)
{
  ProbeJob *j = p;
  g_free (j->path);
  g_free (j->backbone);
  g_clear_pointer (&j->trained, vl_trained_unref);
  probe_file_clear (&j->result);
  g_free (j);
}

/* One forward of img through m with every block's attention kept, copied into *attn as
 * (depth, heads, T, T); the geometry into geo; the top class's name when m names its classes;
 * the model's input into geo->px (when keep_px). */
static gboolean
capture_attention (VlModel *m, const VlImage *img, float **attn, VlProbeFile *geo,
                   char **top_class, gboolean keep_px, GError **error)
{
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  const VlGeometry *g = vl_model_geometry (m);
  g_autofree float *px = g_new (float, (gsize) pp.channels * pp.size * pp.size);   /* (C, S, S) */
  vl_preprocess_eval (img, &pp, px);
  if (keep_px)
    {
      g_free (geo->px);
      geo->px = g_memdup2 (px, sizeof (float) * pp.channels * pp.size * pp.size);
      geo->px_channels = pp.channels;
      geo->px_size = pp.size;
    }
  if (!vl_model_forward (m, px, 1, pp.size, pp.size, VL_FORWARD_INFER | VL_FORWARD_CAPTURE_ATTN,
                         error))
    return FALSE;
  const int T = vl_model_n_tokens_last (m);
  const gsize per_block = (gsize) g->heads * T * T;
  *attn = g_new (float, per_block * g->depth);   /* (depth, heads, T, T) */
  vl_model_attention_copy (m, 0, *attn);
  geo->depth = g->depth;
  geo->heads = g->heads;
  geo->T = T;
  geo->n_prefix = g->n_prefix;
  geo->has_cls = g->class_token;
  geo->gh = geo->gw = pp.size / g->patch;
  const float *logits = vl_model_logits (m);
  const char *const *names = vl_model_class_names (m);
  const int K = vl_model_num_classes (m);
  if (logits != NULL && names != NULL && K > 0)
    {
      int best = 0;
      for (int k = 1; k < K; k++)
        if (logits[k] > logits[best])
          best = k;
      *top_class = g_strdup (names[best]);
    }
  return TRUE;
}

static void
probe_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  ProbeJob *j = task_data;
  VlProbeFile *r = &j->result;
  GError *error = NULL;
  /* vl_image_load's errors name the file and say why (truncated, empty, unknown format) */
  g_autoptr(VlImage) img = vl_image_load (j->path, 0, &error);
  if (img == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  if (g_task_return_error_if_cancelled (task))
    return;
  if (j->backbone == NULL)
    {
      /* no model yet: the image as a 224 crop, without a map */
      VlPreprocess pp = { .channels = 3, .size = 224, .crop_pct = 1.0,
                          .interp = VL_INTERP_BICUBIC, .mean = { 0 }, .std = { 1, 1, 1, 1 } };
      r->image = vl_attention_crop_for_display (img, &pp);
      g_task_return_boolean (task, TRUE);
      return;
    }
  /* a copy of the backbone of our own: the window's model stays main-thread only */
  g_autoptr(VlModel) m = vl_model_load (j->backbone, &error);
  if (m == NULL ||
      !capture_attention (m, img, &r->ref_attn, r, &r->ref_class, TRUE, &error))
    {
      g_prefix_error (&error, "%s: ", j->path);
      g_task_return_error (task, error);
      return;
    }
  VlPreprocess pp;
  vl_preprocess_from_model (m, &pp);
  r->image = vl_attention_crop_for_display (img, &pp);
  if (g_task_return_error_if_cancelled (task))
    return;
  if (j->trained)
    {
      /* the trained model (shared with the predictions and export: under its lock) */
      g_mutex_lock (&j->trained->lock);
      VlModel *tm = vl_trained_model (j->trained);
      VlProbeFile geo = { 0 };
      float *now = NULL;
      g_autoptr(GError) e = NULL;
      if (tm && capture_attention (tm, img, &now, &geo, &r->now_class, FALSE, &e) &&
          geo.depth == r->depth && geo.heads == r->heads && geo.T == r->T && geo.gh == r->gh)
        r->now_attn = g_steal_pointer (&now);
      else if (e)
        g_message ("probe image %s, trained model: %s", j->path, e->message);
      g_free (now);
      g_mutex_unlock (&j->trained->lock);
    }
  g_task_return_boolean (task, TRUE);
}

static void start_job (VlWindow *self, const char *path, gboolean is_sample, gboolean user);

static void
probe_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  if (g_task_get_cancellable (G_TASK (result)) != self->probe_cancel)
    return;   /* stale: another file, or other models */
  g_clear_object (&self->probe_cancel);
  g_clear_pointer (&self->probe_pending, g_free);
  ProbeJob *j = g_task_get_task_data (G_TASK (result));
  g_autoptr(GError) error = NULL;
  if (!g_task_propagate_boolean (G_TASK (result), &error))
    {
      vl_window_show_error (self, _("Could not use the probe image: %s"), error->message);
      /* the previous probe stays; if this job had replaced its recomputation, redo that */
      VlProbeFile *pf = &self->probe_file;
      if (pf->path && self->probe_file_stale && g_strcmp0 (pf->path, j->path) != 0)
        start_job (self, pf->path, pf->is_sample, FALSE);
      vl_window_update_status (self);
      return;
    }
  probe_file_clear (&self->probe_file);
  self->probe_file = j->result;
  memset (&j->result, 0, sizeof j->result);
  self->probe_file.path = g_strdup (j->path);
  self->probe_file.is_sample = j->is_sample;
  self->probe_file_stale = FALSE;
  if (j->user || (j->is_sample && self->n_probe_images == 0))
    self->probe_file_shown = TRUE;
  if (vl_window_is_running (self))
    vl_window_probe_file_to_trainer (self);   /* its "now" side comes from the run's events */
  g_signal_emit_by_name (self, "probes-changed");   /* the Attention page's buttons */
  vl_window_update_status (self);
}

/* Decodes path and computes its maps with the models there are now (replacing any job in
 * flight: its models or its file are outdated). */
static void
start_job (VlWindow *self, const char *path, gboolean is_sample, gboolean user)
{
  if (self->probe_cancel)
    g_cancellable_cancel (self->probe_cancel);
  g_clear_object (&self->probe_cancel);
  self->probe_cancel = g_cancellable_new ();
  g_free (self->probe_pending);
  self->probe_pending = g_strdup (path);
  self->probe_pending_sample = is_sample;
  self->probe_pending_user = user;
  ProbeJob *j = g_new0 (ProbeJob, 1);
  j->path = g_strdup (path);
  j->is_sample = is_sample;
  j->user = user;
  j->backbone = self->model && self->backbone_path ? g_strdup (self->backbone_path) : NULL;
  /* a run in progress owns its model; the previous run's would not be "now" */
  if (self->trained && !vl_window_is_running (self))
    j->trained = vl_trained_ref (self->trained);
  g_autoptr(GTask) task = g_task_new (self, self->probe_cancel, probe_done, NULL);
  g_task_set_source_tag (task, vl_window_open_probe);
  g_task_set_task_data (task, j, probe_job_free);
  g_task_run_in_thread (task, probe_thread);
}

void
vl_window_open_probe (VlWindow *self, const char *path)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  g_return_if_fail (path != NULL);
  start_job (self, path, FALSE, TRUE);
}

/* The models changed (or the dataset did): recompute what is outdated, and show the first
 * shipped sample while a backbone is loaded and no dataset is open or opening. */
void
vl_window_refresh_probe_file (VlWindow *self, gboolean models_changed)
{
  VlProbeFile *pf = &self->probe_file;
  if (models_changed)
    {
      if (pf->path)
        self->probe_file_stale = TRUE;
      if (self->probe_cancel)
        {
          /* the file in flight, again with the new models */
          g_autofree char *path = g_strdup (self->probe_pending);
          start_job (self, path, self->probe_pending_sample, self->probe_pending_user);
        }
      else if (pf->path)
        start_job (self, pf->path, pf->is_sample, FALSE);
    }
  gboolean want_sample = self->model != NULL && self->data == NULL && self->data_cancel == NULL;
  if (want_sample && pf->path == NULL && self->probe_cancel == NULL)
    {
      g_autofree char *sample = vl_first_sample_image ();
      if (sample)
        start_job (self, sample, TRUE, FALSE);
      else
        {
          g_autofree char *dir = vl_data_path ("samples");
          g_message ("no shipped sample image in %s (see VITLAB_DATA_DIR): the attention page "
                     "stays empty until a dataset or an image is opened", dir);
        }
    }
}

/* The dataset's probes have arrived: the sample gives way to them. */
void
vl_window_drop_probe_sample (VlWindow *self)
{
  if (self->probe_cancel && self->probe_pending_sample)
    {
      g_cancellable_cancel (self->probe_cancel);
      g_clear_object (&self->probe_cancel);
      g_clear_pointer (&self->probe_pending, g_free);
    }
  if (self->probe_file.path && self->probe_file.is_sample)
    {
      probe_file_clear (&self->probe_file);
      self->probe_file_shown = FALSE;
      self->probe_file_stale = FALSE;
    }
}

/* ------------------------------------------------------------------ showing it */

/* The line above the panels: the file, and what each side's model predicts. */
static void
show_title (VlWindow *self)
{
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  VlProbeFile *pf = &self->probe_file;
  g_autofree char *base = g_path_get_basename (pf->path);
  GString *title = g_string_new (base);
  if (pf->ref_attn == NULL)
    g_string_append (title, " · open a backbone to see its attention");
  if (pf->ref_class)
    g_string_append_printf (title, " · pretrained: %s", pf->ref_class);
  if (pf->now_attn && pf->now_class)
    g_string_append_printf (title, " · fine-tuned: %s", pf->now_class);
  else if (pf->live_attn && pf->live_class)
    g_string_append_printf (title, " · step %" G_GINT64_FORMAT ": %s", pf->live_step,
                            pf->live_class);
  if (pf->is_sample)
    g_string_append (title, " · shipped sample (no dataset open)");
  vl_attention_view_set_title (view, title->str);
  g_string_free (title, TRUE);
}

void
vl_window_show_probe_file (VlWindow *self)
{
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  VlProbeFile *pf = &self->probe_file;
  vl_attention_view_set_image (view, pf->image);
  vl_attention_view_clear_maps (view);
  if (pf->image == NULL)
    {
      vl_attention_view_set_title (view, NULL);
      return;
    }
  /* beside the pretrained maps: the trained model's after a run, the run's model during one */
  const float *now = pf->now_attn ? pf->now_attn : pf->live_attn;
  if (pf->ref_attn && now)
    {
      vl_attention_view_set_attention (view, now, pf->depth, pf->heads, pf->T, pf->n_prefix,
                                       pf->has_cls, pf->gh, pf->gw);
      vl_attention_view_set_reference_attention (view, pf->ref_attn, pf->depth, pf->heads, pf->T,
                                                 pf->n_prefix, pf->has_cls, pf->gh, pf->gw);
      g_autofree char *step = g_strdup_printf ("step %" G_GINT64_FORMAT, pf->live_step);
      vl_attention_view_set_labels (view, pf->now_attn ? "fine-tuned" : step, "pretrained");
    }
  else if (pf->ref_attn)
    {
      vl_attention_view_set_attention (view, pf->ref_attn, pf->depth, pf->heads, pf->T,
                                       pf->n_prefix, pf->has_cls, pf->gh, pf->gw);
      vl_attention_view_set_labels (view, "pretrained", NULL);
    }
  show_title (self);
}

/* ------------------------------------------------------------------ during a run */

void
vl_window_probe_file_to_trainer (VlWindow *self)
{
  VlProbeFile *pf = &self->probe_file;
  /* a previous model's maps are not "now" */
  g_clear_pointer (&pf->now_attn, g_free);
  g_clear_pointer (&pf->now_class, g_free);
  g_clear_pointer (&pf->live_attn, g_free);
  g_clear_pointer (&pf->live_class, g_free);
  pf->live_serial = 0;
  /* a copy under the trainer's lock: the worker takes it at its next batch boundary */
  if (vl_window_trainer (self) && pf->px)
    pf->live_serial = vl_trainer_set_user_probe (vl_window_trainer (self), pf->px, pf->px_channels,
                                                 pf->px_size, pf->px_size);
}

void
vl_window_probe_file_event (VlWindow *self, VlTrainEvent *ev)
{
  VlProbeFile *pf = &self->probe_file;
  if (ev->user_probe == 0 || ev->user_probe != pf->live_serial || pf->ref_attn == NULL)
    return;   /* none, or an image the probe file has replaced since */
  if (ev->user_depth != pf->depth || ev->user_heads != pf->heads || ev->user_T != pf->T ||
      ev->user_grid_h != pf->gh || ev->user_grid_w != pf->gw)
    return;   /* not the pretrained side's geometry (a resumed run of another backbone) */
  gboolean first = pf->live_attn == NULL;
  g_free (pf->live_attn);
  pf->live_attn = g_steal_pointer (&ev->user_attn);
  pf->live_step = ev->step;
  g_free (pf->live_class);
  pf->live_class = self->class_names && ev->user_predicted >= 0 &&
                   ev->user_predicted < self->n_classes
                   ? g_strdup (self->class_names[ev->user_predicted]) : NULL;
  if (!self->probe_file_shown || pf->now_attn)
    return;
  if (first)
    {
      vl_window_show_probe_file (self);   /* now both sides */
      return;
    }
  /* only the "now" map changes: the image, the reference and the controls stay */
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  vl_attention_view_set_attention (view, pf->live_attn, pf->depth, pf->heads, pf->T,
                                   pf->n_prefix, pf->has_cls, pf->gh, pf->gw);
  g_autofree char *step = g_strdup_printf ("step %" G_GINT64_FORMAT, pf->live_step);
  vl_attention_view_set_labels (view, step, "pretrained");
  show_title (self);
}

/* ------------------------------------------------------------------ the chooser */

static void
probe_chosen (VlWindow *self, GFile *file)
{
  g_autofree char *path = g_file_get_path (file);
  if (path)
    vl_window_open_probe (self, path);
  else
    vl_window_show_error (self, _("Only local files can be opened"));
}

void
vl_window_choose_probe (VlWindow *self)
{
  GtkFileFilter *filter = gtk_file_filter_new ();
  gtk_file_filter_set_name (filter, "Images (PNG, JPEG, BMP, GIF, TGA, PNM, PSD, HDR)");
  for (int i = 0; vl_image_extensions[i]; i++)
    gtk_file_filter_add_suffix (filter, vl_image_extensions[i]);
  vl_window_choose_file (self, _("Open Probe Image"), GTK_FILE_CHOOSER_ACTION_OPEN, _("_Open"),
                         "probe-folder", filter, probe_chosen);
  g_object_unref (filter);
}

/* ------------------------------------------------------------------ setup */

/* A new backbone: the probe file (or the sample) under it. */
static void
on_backbone_changed (VlWindow *self)
{
  vl_window_refresh_probe_file (self, TRUE);
}

void
vl_window_probe_init (VlWindow *self)
{
  g_signal_connect_swapped (self, "backbone-changed", G_CALLBACK (on_backbone_changed), self);
}

void
vl_window_probe_dispose (VlWindow *self)
{
  if (self->probe_cancel)
    g_cancellable_cancel (self->probe_cancel);
  g_clear_object (&self->probe_cancel);
  g_clear_pointer (&self->probe_pending, g_free);
  probe_file_clear (&self->probe_file);
}

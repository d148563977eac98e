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
  if (vl_checkpoint_has_extension (path))
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

const char *
vl_window_get_probe_path (VlWindow *self)
{
  g_return_val_if_fail (VL_IS_WINDOW (self), NULL);
  return self->probes->file.path;
}

static void start_job (VlWindow *self, const char *path, gboolean is_sample, gboolean user);

static void
probe_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  if (g_task_get_cancellable (G_TASK (result)) != self->probes->file_cancel)
    return;   /* stale: another file, or other models */
  g_clear_object (&self->probes->file_cancel);
  /* the job's file and what it was for (probes->file_cancel was this job's) */
  g_autofree char *path = g_steal_pointer (&self->probes->pending);
  const gboolean is_sample = self->probes->pending_sample, user = self->probes->pending_user;
  g_autoptr(GError) error = NULL;
  VlProbeFile r = { 0 };
  if (!vl_job_probe_file_finish (result, &r, &error))
    {
      vl_window_show_error (self, _("Could not use the probe image: %s"), error->message);
      /* the previous probe stays; if this job had replaced its recomputation, redo that */
      VlProbeFile *pf = &self->probes->file;
      if (pf->path && self->probes->file_stale && g_strcmp0 (pf->path, path) != 0)
        start_job (self, pf->path, pf->is_sample, FALSE);
      vl_window_update_status (self);
      return;
    }
  vl_probe_file_clear (&self->probes->file);
  self->probes->file = r;
  self->probes->file.is_sample = is_sample;
  self->probes->file_stale = FALSE;
  if (user || (is_sample && self->probes->n_images == 0))
    self->probes->file_shown = TRUE;
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
  if (self->probes->file_cancel)
    g_cancellable_cancel (self->probes->file_cancel);
  g_clear_object (&self->probes->file_cancel);
  self->probes->file_cancel = g_cancellable_new ();
  g_free (self->probes->pending);
  self->probes->pending = g_strdup (path);
  self->probes->pending_sample = is_sample;
  self->probes->pending_user = user;
  /* a run in progress owns its model; the previous run's would not be "now" */
  VlTrainedRef *trained = self->trained && !vl_window_is_running (self) ? self->trained : NULL;
  vl_job_probe_file (G_OBJECT (self), path,
                     self->model && self->backbone_path ? self->backbone_path : NULL, trained,
                     self->probes->file_cancel, probe_done, NULL);
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
  VlProbeFile *pf = &self->probes->file;
  if (models_changed)
    {
      if (pf->path)
        self->probes->file_stale = TRUE;
      if (self->probes->file_cancel)
        {
          /* the file in flight, again with the new models */
          g_autofree char *path = g_strdup (self->probes->pending);
          start_job (self, path, self->probes->pending_sample, self->probes->pending_user);
        }
      else if (pf->path)
        start_job (self, pf->path, pf->is_sample, FALSE);
    }
  gboolean want_sample = self->model != NULL && self->data == NULL && self->data_cancel == NULL;
  if (want_sample && pf->path == NULL && self->probes->file_cancel == NULL)
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
  if (self->probes->file_cancel && self->probes->pending_sample)
    {
      g_cancellable_cancel (self->probes->file_cancel);
      g_clear_object (&self->probes->file_cancel);
      g_clear_pointer (&self->probes->pending, g_free);
    }
  if (self->probes->file.path && self->probes->file.is_sample)
    {
      vl_probe_file_clear (&self->probes->file);
      self->probes->file_shown = FALSE;
      self->probes->file_stale = FALSE;
    }
}

/* ------------------------------------------------------------------ showing it */

/* The line above the panels: the file, and what each side's model predicts. */
static void
show_title (VlWindow *self)
{
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  VlProbeFile *pf = &self->probes->file;
  g_autofree char *base = g_path_get_basename (pf->path);
  GString *title = g_string_new (base);
  if (pf->ref_attn == NULL)
    g_string_append (title, _(" · open a backbone to see its attention"));
  if (pf->ref_class)
    g_string_append_printf (title, _(" · pretrained: %s"), pf->ref_class);
  if (pf->now_attn && pf->now_class)
    g_string_append_printf (title, _(" · fine-tuned: %s"), pf->now_class);
  else if (pf->live_attn && pf->live_class)
    g_string_append_printf (title, _(" · step %lld: %s"), (long long) pf->live_step,
                            pf->live_class);
  if (pf->is_sample)
    g_string_append (title, _(" · shipped sample (no dataset open)"));
  vl_attention_view_set_title (view, title->str);
  g_string_free (title, TRUE);
}

void
vl_window_show_probe_file (VlWindow *self)
{
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  VlProbeFile *pf = &self->probes->file;
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
      const float *now_pool = pf->now_attn ? pf->now_pool : pf->live_pool;
      if (now_pool)
        vl_attention_view_set_pool (view, FALSE, now_pool, pf->heads, pf->gh, pf->gw);
      vl_attention_view_set_reference_attention (view, pf->ref_attn, pf->depth, pf->heads, pf->T,
                                                 pf->n_prefix, pf->has_cls, pf->gh, pf->gw);
      if (pf->ref_pool)
        vl_attention_view_set_pool (view, TRUE, pf->ref_pool, pf->heads, pf->gh, pf->gw);
      g_autofree char *step = g_strdup_printf (_("step %lld"), (long long) pf->live_step);
      vl_attention_view_set_labels (view, pf->now_attn ? _("fine-tuned") : step, _("pretrained"));
    }
  else if (pf->ref_attn)
    {
      vl_attention_view_set_attention (view, pf->ref_attn, pf->depth, pf->heads, pf->T,
                                       pf->n_prefix, pf->has_cls, pf->gh, pf->gw);
      if (pf->ref_pool)
        vl_attention_view_set_pool (view, FALSE, pf->ref_pool, pf->heads, pf->gh, pf->gw);
      vl_attention_view_set_labels (view, _("pretrained"), NULL);
    }
  show_title (self);
}

/* ------------------------------------------------------------------ during a run */

void
vl_window_probe_file_to_trainer (VlWindow *self)
{
  VlProbeFile *pf = &self->probes->file;
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
  VlProbeFile *pf = &self->probes->file;
  if (ev->user_probe == 0 || ev->user_probe != pf->live_serial || pf->ref_attn == NULL)
    return;   /* none, or an image the probe file has replaced since */
  if (ev->user_depth != pf->depth || ev->user_heads != pf->heads || ev->user_T != pf->T ||
      ev->user_grid_h != pf->gh || ev->user_grid_w != pf->gw)
    return;   /* not the pretrained side's geometry (a resumed run of another backbone) */
  gboolean first = pf->live_attn == NULL;
  g_free (pf->live_attn);
  pf->live_attn = g_steal_pointer (&ev->user_attn);
  g_free (pf->live_pool);
  pf->live_pool = g_steal_pointer (&ev->user_pool);
  pf->live_step = ev->step;
  g_free (pf->live_class);
  pf->live_class = self->class_names && ev->user_predicted >= 0 &&
                   ev->user_predicted < self->n_classes
                   ? g_strdup (self->class_names[ev->user_predicted]) : NULL;
  if (!self->probes->file_shown || pf->now_attn)
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
  if (pf->live_pool)
    vl_attention_view_set_pool (view, FALSE, pf->live_pool, pf->heads, pf->gh, pf->gw);
  g_autofree char *step = g_strdup_printf (_("step %lld"), (long long) pf->live_step);
  vl_attention_view_set_labels (view, step, _("pretrained"));
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
  if (self->probes->file_cancel)
    g_cancellable_cancel (self->probes->file_cancel);
  g_clear_object (&self->probes->file_cancel);
  g_clear_pointer (&self->probes->pending, g_free);
  vl_probe_file_clear (&self->probes->file);
}

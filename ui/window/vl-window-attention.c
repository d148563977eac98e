/* vl-window-attention.c: the Attention page's probes. The dataset's probe images (the trainer's
 * choice: the first validation image of each class, then the second, ...), their pretrained
 * attention (vl_job_probe_attention: a worker thread with a copy of the backbone), the run's
 * rollout of them from PROBES events and the trained model's maps, the probe buttons (the probe
 * file of vl-window-probe.c first) and the view's controls. It follows the window's signals
 * ("backbone-changed", "dataset-changed": the pretrained maps again; "probes-changed": the
 * buttons again) and calls only vl-window-probe.c, vl-window-data.c and vl-window-status.c. */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include "vl-attention-view.h"

#include <string.h>

#define MAX_PROBES 4

/* ------------------------------------------------------------------ the dataset's probes */

/* The trainer's probe images: the first validation image of each class, then the second of
 * each, ... (vl-trainer.c choose_probes), so the pretrained maps line up with the run's. */
static void
choose_probes (VlWindow *self)
{
  g_clear_pointer (&self->probes->index, g_free);
  self->probes->n = 0;
  VlDataset *ds = self->data->ds;
  int K = vl_dataset_n_classes (ds);
  int n_val = vl_dataset_n_items (ds, VL_SPLIT_VAL);
  int n = MIN (MAX_PROBES, n_val);
  self->probes->index = g_new (int, MAX (n, 1));
  for (int round = 0; self->probes->n < n && round < n_val; round++)
    for (int k = 0; k < K && self->probes->n < n; k++)
      {
        int seen = 0;
        for (int i = 0; i < n_val; i++)
          if (vl_dataset_label (ds, VL_SPLIT_VAL, i) == k && seen++ == round)
            {
              self->probes->index[self->probes->n++] = i;
              break;
            }
      }
}

static void
attn_done (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  g_autoptr(GError) error = NULL;
  if (g_task_get_cancellable (G_TASK (result)) != self->probes->cancel)
    return;   /* stale */
  g_clear_object (&self->probes->cancel);
  g_autoptr(VlProbeAttention) j = vl_job_probe_attention_finish (result, &error);
  if (j == NULL)
    {
      vl_window_show_error (self, _("Attention of the pretrained backbone: %s"), error->message);
      return;
    }
  vl_window_probes_clear (self);
  self->probes->n_images = j->n;
  self->probes->images = g_steal_pointer (&j->images);
  self->probes->labels = g_steal_pointer (&j->labels);
  self->probes->names = g_steal_pointer (&j->names);
  self->probes->ref_attn = g_steal_pointer (&j->attn);
  self->probes->ref_rollout = g_steal_pointer (&j->rollout);
  self->probes->ref_pool = g_steal_pointer (&j->pool);
  self->probes->depth = j->depth;
  self->probes->heads = j->heads;
  self->probes->T = j->T;
  self->probes->prefix = j->n_prefix;
  self->probes->cls = j->has_cls;
  self->probes->gh = j->gh;
  self->probes->gw = j->gw;
  j->n = 0;
  vl_window_drop_probe_sample (self);   /* the dataset's own probes replace the sample */
  vl_window_show_probes (self);
  /* a backbone that pools by attention (SigLIP's): where its query looks is the map that says
   * what the features are made of; the rollout stays a click away */
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  if (self->probes->ref_pool && vl_attention_view_get_mode (view) == VL_ATTN_MODE_ROLLOUT)
    vl_attention_view_set_mode (view, VL_ATTN_MODE_POOL);
}

/* When both a backbone and a dataset are there: the pretrained backbone's attention of the
 * probe images, so the run's maps can be compared with where it started. */
void
vl_window_start_pretrained_attention (VlWindow *self)
{
  if (self->model == NULL || self->data == NULL || self->probes->n == 0 ||
      self->backbone_path == NULL)
    return;
  if (self->probes->cancel)
    g_cancellable_cancel (self->probes->cancel);
  g_clear_object (&self->probes->cancel);
  self->probes->cancel = g_cancellable_new ();
  vl_job_probe_attention (G_OBJECT (self), self->backbone_path, self->data, self->probes->index,
                          self->probes->n, vl_window_dense_input_size (self), self->probes->cancel,
                          attn_done, NULL);
}

/* ------------------------------------------------------------------ probes in the view */

/* Probe i's attention-pool map from pools ((n_images, heads, gh * gw)) on the main or the
 * reference side of the view; nothing when pools is NULL (no pool in that model). */
static void
show_pool (VlWindow *self, gboolean reference, const float *pools, int i)
{
  const VlProbeState *p = self->probes;
  if (pools)
    vl_attention_view_set_pool (VL_ATTENTION_VIEW (self->attention), reference,
                                pools + (gsize) i * p->heads * p->gh * p->gw, p->heads, p->gh,
                                p->gw);
}

void
vl_window_show_probe (VlWindow *self, int i)
{
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  if (i < 0 || i >= self->probes->n_images)
    {
      vl_attention_view_set_image (view, NULL);
      vl_attention_view_clear_maps (view);
      return;
    }
  self->probes->selected = i;
  int gh = self->probes->gh, gw = self->probes->gw;
  gsize per = (gsize) self->probes->depth * self->probes->heads * self->probes->T * self->probes->T;
  vl_attention_view_set_image (view, self->probes->images[i]);
  vl_attention_view_clear_maps (view);
  gboolean final = self->probes->final_attn && self->probes->final_T == self->probes->T;
  gboolean have_run = (self->probes->rollout && i < self->probes->n_rollout) || final;
  if (have_run)
    {
      if (final)
        {
          vl_attention_view_set_attention (view, self->probes->final_attn + per * i,
                                           self->probes->depth, self->probes->heads,
                                           self->probes->T, self->probes->prefix,
                                           self->probes->cls, gh, gw);
          show_pool (self, FALSE, self->probes->final_pool, i);
        }
      else
        {
          vl_attention_view_set_rollout (view, self->probes->rollout + (gsize) i * gh * gw, gh, gw);
          show_pool (self, FALSE, self->probes->live_pool, i);
        }
      if (self->probes->ref_attn)
        {
          vl_attention_view_set_reference_attention (view, self->probes->ref_attn + per * i,
                                                     self->probes->depth, self->probes->heads,
                                                     self->probes->T, self->probes->prefix,
                                                     self->probes->cls, gh, gw);
          show_pool (self, TRUE, self->probes->ref_pool, i);
        }
      vl_attention_view_set_labels (view, final ? _("fine-tuned") : _("now"), _("pretrained"));
    }
  else if (self->probes->ref_attn)
    {
      vl_attention_view_set_attention (view, self->probes->ref_attn + per * i, self->probes->depth,
                                       self->probes->heads, self->probes->T, self->probes->prefix,
                                       self->probes->cls, gh, gw);
      show_pool (self, FALSE, self->probes->ref_pool, i);
      vl_attention_view_set_labels (view, _("pretrained"), NULL);
    }
  const char *true_name = self->data && self->probes->labels
                        ? vl_dataset_class_name (self->data->ds, self->probes->labels[i]) : "?";
  g_autofree char *title = NULL;
  if (self->task == VL_TASK_SEGMENT)
    title = g_strdup (self->probes->names[i]);   /* a class per pixel: none for the image */
  else if (have_run && self->probes->predicted && i < self->probes->n_rollout &&
           self->class_names && self->probes->predicted[i] >= 0 &&
           self->probes->predicted[i] < self->n_classes)
    title = g_strdup_printf (_("%s · true %s · predicted %s"), self->probes->names[i], true_name,
                             self->class_names[self->probes->predicted[i]]);
  else
    title = g_strdup_printf ("%s · %s", self->probes->names[i], true_name);
  vl_attention_view_set_title (view, title);
}

/* The probe file or the selected dataset probe, whichever the probe buttons have active. */
void
vl_window_show_selected_probe (VlWindow *self)
{
  if (self->probes->file_shown && self->probes->file.image)
    vl_window_show_probe_file (self);
  else if (self->probes->n_images > 0)
    vl_window_show_probe (self, MIN (self->probes->selected, self->probes->n_images - 1));
}

static void
on_probe_toggled (GtkToggleButton *button, VlWindow *self)
{
  if (!gtk_toggle_button_get_active (button))
    return;
  self->probes->file_shown = FALSE;
  vl_window_show_probe (self, GPOINTER_TO_INT (g_object_get_data (G_OBJECT (button), "probe")));
}

static void
on_probe_file_toggled (GtkToggleButton *button, VlWindow *self)
{
  if (!gtk_toggle_button_get_active (button))
    return;
  self->probes->file_shown = TRUE;
  vl_window_show_probe_file (self);
}

static GdkTexture *
texture_from_image (const VlImage *img)
{
  gsize stride = (gsize) img->width * 3;
  guchar *rgb = g_malloc (stride * img->height);
  for (int p = 0; p < img->width * img->height; p++)
    for (int c = 0; c < 3; c++)
      rgb[p * 3 + c] = img->pixels[(gsize) p * img->channels + (img->channels >= 3 ? c : 0)];
  g_autoptr(GBytes) bytes = g_bytes_new_take (rgb, stride * img->height);
  return gdk_memory_texture_new (img->width, img->height, GDK_MEMORY_R8G8B8, bytes, stride);
}

static GtkWidget *
probe_button (const VlImage *img)
{
  GtkWidget *b = gtk_toggle_button_new ();
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  g_autoptr(GdkTexture) tex = texture_from_image (img);
  GtkWidget *pic = gtk_picture_new_for_paintable (GDK_PAINTABLE (tex));
  gtk_picture_set_can_shrink (GTK_PICTURE (pic), TRUE);
  gtk_picture_set_content_fit (GTK_PICTURE (pic), GTK_CONTENT_FIT_COVER);
  gtk_widget_set_size_request (pic, 30, 30);
  gtk_widget_add_css_class (pic, "vl-probe-thumb");
  gtk_box_append (GTK_BOX (box), pic);
  gtk_button_set_child (GTK_BUTTON (b), box);
  return b;
}

/* The probe buttons (the probe file first, then a thumbnail and the class of each dataset
 * probe) and the selected probe in the view. */
void
vl_window_show_probes (VlWindow *self)
{
  GtkWidget *probe_box = vl_attention_bar_get_probe_box (VL_ATTENTION_BAR (self->attn_bar));
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (probe_box)))
    gtk_box_remove (GTK_BOX (probe_box), child);
  GtkToggleButton *group = NULL;
  const VlProbeFile *pf = &self->probes->file;
  if (pf->image == NULL)
    self->probes->file_shown = FALSE;
  else
    {
      if (self->probes->n_images == 0)
        self->probes->file_shown = TRUE;
      GtkWidget *b = probe_button (pf->image);
      gtk_widget_add_css_class (b, "vl-probe-file");
      g_autofree char *base = g_path_get_basename (pf->path);
      g_autofree char *tip = pf->is_sample
        ? g_strdup_printf (_("Shipped sample %s: shown while no dataset is open (drop an image "
                             "on the window to use your own)"), base)
        : g_strdup_printf (_("Probe image %s (drop another image on the window, or Open Probe "
                             "Image…, to replace it)"), base);
      gtk_widget_set_tooltip_text (b, tip);
      group = GTK_TOGGLE_BUTTON (b);
      g_signal_connect (b, "toggled", G_CALLBACK (on_probe_file_toggled), self);
      gtk_box_append (GTK_BOX (probe_box), b);
      if (self->probes->file_shown)
        gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (b), TRUE);
    }
  for (int i = 0; i < self->probes->n_images; i++)
    {
      GtkWidget *b = probe_button (self->probes->images[i]);
      const char *cls = self->data && self->probes->labels
                      ? vl_dataset_class_name (self->data->ds, self->probes->labels[i]) : "";
      g_autofree char *tip = g_strdup_printf (_("Probe %d: %s (%s)"), i + 1, self->probes->names[i],
                                              cls);
      gtk_widget_set_tooltip_text (b, tip);
      g_object_set_data (G_OBJECT (b), "probe", GINT_TO_POINTER (i));
      if (group)
        gtk_toggle_button_set_group (GTK_TOGGLE_BUTTON (b), group);
      else
        group = GTK_TOGGLE_BUTTON (b);
      g_signal_connect (b, "toggled", G_CALLBACK (on_probe_toggled), self);
      gtk_box_append (GTK_BOX (probe_box), b);
      if (!self->probes->file_shown &&
          i == MIN (self->probes->selected, self->probes->n_images - 1))
        gtk_toggle_button_set_active (GTK_TOGGLE_BUTTON (b), TRUE);
    }
  if (self->probes->file_shown || self->probes->n_images > 0)
    vl_window_show_selected_probe (self);
  else
    {
      VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
      vl_attention_view_set_image (view, NULL);
      vl_attention_view_clear_maps (view);
      vl_attention_view_set_title (view, NULL);
    }
}

void
vl_window_probes_clear (VlWindow *self)
{
  for (int i = 0; self->probes->images && i < self->probes->n_images; i++)
    vl_image_free (self->probes->images[i]);
  g_clear_pointer (&self->probes->images, g_free);
  g_clear_pointer (&self->probes->labels, g_free);
  g_clear_pointer (&self->probes->names, g_strfreev);
  g_clear_pointer (&self->probes->ref_attn, g_free);
  g_clear_pointer (&self->probes->ref_rollout, g_free);
  g_clear_pointer (&self->probes->ref_pool, g_free);
  g_clear_pointer (&self->probes->rollout, g_free);
  g_clear_pointer (&self->probes->live_pool, g_free);
  g_clear_pointer (&self->probes->predicted, g_free);
  self->probes->n_images = 0;
  self->probes->n_rollout = 0;
  self->probes->selected = 0;
}

/* ------------------------------------------------------------------ during a run */

void
vl_window_attention_probes_event (VlWindow *self, VlTrainEvent *ev)
{
  self->progress->n_probe_events++;
  vl_window_probe_file_event (self, ev);   /* the user's probe image, when it carries it */
  int P = ev->grid_h * ev->grid_w;
  if (self->probes->n_images == 0 || ev->grid_h != self->probes->gh ||
      ev->grid_w != self->probes->gw)
    return;   /* the pretrained maps are not there (yet): nothing to lay these over */
  int n = MIN (ev->n_probes, self->probes->n_images);
  g_free (self->probes->rollout);
  self->probes->rollout = g_memdup2 (ev->rollout, sizeof (float) * (gsize) n * P);
  g_clear_pointer (&self->probes->live_pool, g_free);
  if (ev->pool && ev->pool_heads == self->probes->heads)
    self->probes->live_pool = g_memdup2 (ev->pool, sizeof (float) * (gsize) n * ev->pool_heads * P);
  g_free (self->probes->predicted);
  self->probes->predicted = g_memdup2 (ev->probe_predicted, sizeof (int) * MAX (n, 1));
  self->probes->n_rollout = n;
  g_clear_pointer (&self->probes->final_attn, g_free);
  g_clear_pointer (&self->probes->final_pool, g_free);
  /* replace only the maps (the view keeps the image) */
  int i = self->probes->selected;
  if (i < n && !self->probes->file_shown)
    {
      VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
      gboolean first = self->progress->n_probe_events == 1;
      if (first)
        vl_window_show_probe (self, i);
      else
        {
          vl_attention_view_set_rollout (view, self->probes->rollout + (gsize) i * P, ev->grid_h,
                                         ev->grid_w);
          show_pool (self, FALSE, self->probes->live_pool, i);
        }
      g_autofree char *label = g_strdup_printf (_("step %lld"), (long long) ev->step);
      vl_attention_view_set_labels (view, label, _("pretrained"));
      /* the map the run sends for every block: the rollout, or the attention pool's */
      if (first)
        vl_attention_view_set_mode (view, self->probes->live_pool ? VL_ATTN_MODE_POOL
                                                                  : VL_ATTN_MODE_ROLLOUT);
    }
}

/* ------------------------------------------------------------------ setup */

/* A dataset arrived: its probes, and their pretrained attention. */
static void
on_dataset_changed (VlWindow *self)
{
  choose_probes (self);
  g_clear_pointer (&self->probes->final_attn, g_free);   /* of the previous probes */
  g_clear_pointer (&self->probes->final_pool, g_free);
  vl_window_start_pretrained_attention (self);
}

void
vl_window_attention_init (VlWindow *self)
{
  /* the attention controls drive the view's properties */
  VlAttentionView *view = VL_ATTENTION_VIEW (self->attention);
  vl_attention_view_set_mode (view, VL_ATTN_MODE_ROLLOUT);
  vl_attention_bar_set_view (VL_ATTENTION_BAR (self->attn_bar), view);

  g_signal_connect_swapped (self, "backbone-changed",
                            G_CALLBACK (vl_window_start_pretrained_attention), self);
  g_signal_connect_swapped (self, "dataset-changed", G_CALLBACK (on_dataset_changed), self);
  g_signal_connect_swapped (self, "probes-changed", G_CALLBACK (vl_window_show_probes), self);
}

void
vl_window_attention_dispose (VlWindow *self)
{
  if (self->probes->cancel)
    g_cancellable_cancel (self->probes->cancel);
  g_clear_object (&self->probes->cancel);
  vl_window_probes_clear (self);
  g_clear_pointer (&self->probes->final_attn, g_free);
  g_clear_pointer (&self->probes->final_pool, g_free);
  g_clear_pointer (&self->probes->index, g_free);
}

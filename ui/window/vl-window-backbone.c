/* vl-window-backbone.c: loading a backbone (vl_job_load_model), its description, the layer-group
 * switches with the unlock count N kept in step, the progressive unfreezing schedule, and the
 * head. The model here is the pretrained backbone the user configures; a run trains its own
 * copy (the trainer loads it on its worker thread). A loaded backbone is announced with the
 * window's "backbone-changed" signal (the probes, the probe file and the features follow it);
 * a dataset's arrival ("dataset-changed") rebuilds the head for its classes. */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include <math.h>
#include <string.h>

#define MAX_RECENT 8

/* ------------------------------------------------------------------ loading */

static void
add_recent (VlWindow *self, const char *path)
{
  g_auto(GStrv) old = g_settings_get_strv (self->settings, "recent-backbones");
  g_autoptr(GStrvBuilder) b = g_strv_builder_new ();
  g_strv_builder_add (b, path);
  int n = 1;
  for (int i = 0; old[i] && n < MAX_RECENT; i++)
    if (g_strcmp0 (old[i], path) != 0)
      {
        g_strv_builder_add (b, old[i]);
        n++;
      }
  g_auto(GStrv) now = g_strv_builder_end (b);
  g_settings_set_strv (self->settings, "recent-backbones", (const char *const *) now);
  g_settings_set_string (self->settings, "last-backbone", path);
}

void
vl_window_refresh_recent (VlWindow *self)
{
  g_auto(GStrv) recent = g_settings_get_strv (self->settings, "recent-backbones");
  vl_backbone_panel_set_recent (VL_BACKBONE_PANEL (self->backbone_panel),
                                (const char *const *) recent);
}

static void
backbone_loaded (GObject *source, GAsyncResult *result, gpointer user_data)
{
  VlWindow *self = VL_WINDOW (source);
  if (self->disposed)
    return;   /* the window closed meanwhile */
  GCancellable *cancel = g_task_get_cancellable (G_TASK (result));
  g_autoptr(GError) error = NULL;
  double seconds = 0;
  VlModel *m = vl_job_load_model_finish (result, &seconds, &error);
  if (cancel != self->backbone_cancel)
    {
      /* a newer load replaced this one: drop the stale result */
      g_clear_pointer (&m, vl_model_free);
      return;
    }
  g_clear_object (&self->backbone_cancel);
  const char *path = vl_job_load_model_path (result);
  VlBackbonePanel *panel = VL_BACKBONE_PANEL (self->backbone_panel);
  if (m == NULL)
    {
      vl_window_show_error (self, _("Could not open the backbone: %s"), error->message);
      vl_backbone_panel_set_failed (panel);
      vl_window_update_actions (self);
      return;
    }
  vl_groups_panel_set_model (VL_GROUPS_PANEL (self->groups_panel), NULL);   /* borrowed */
  g_clear_pointer (&self->model, vl_model_free);
  self->model = m;
  g_free (self->backbone_path);
  self->backbone_path = g_strdup (path);
  add_recent (self, path);
  vl_window_refresh_recent (self);

  vl_backbone_panel_show_model (panel, m, path, seconds);

  /* the head the user chose, for the dataset's classes; then the lock they asked for */
  vl_window_set_head (self, self->head);
  const char *pending = g_object_get_data (G_OBJECT (self), "pending-schedule");
  g_autofree char *schedule = g_strdup (pending ? pending : "1");
  g_object_set_data (G_OBJECT (self), "pending-schedule", NULL);
  vl_window_set_unlock_schedule (self, schedule);

  g_autofree char *title = g_strdup_printf ("vitlab — %s", vl_backbone_panel_get_name (panel));
  gtk_window_set_title (GTK_WINDOW (self), title);
  /* the parts that follow the backbone: the probes' pretrained attention, the probe file (or
   * the sample) under it, the k-NN probe under it */
  g_signal_emit_by_name (self, "backbone-changed");
  vl_window_update_actions (self);
}

void
vl_window_open_backbone (VlWindow *self, const char *path)
{
  g_return_if_fail (VL_IS_WINDOW (self));
  g_return_if_fail (path != NULL);
  if (vl_window_is_running (self))
    {
      vl_window_show_error (self, _("Stop training before opening another backbone"));
      return;
    }
  if (self->backbone_cancel)
    g_cancellable_cancel (self->backbone_cancel);
  g_clear_object (&self->backbone_cancel);
  self->backbone_cancel = g_cancellable_new ();
  vl_backbone_panel_set_loading (VL_BACKBONE_PANEL (self->backbone_panel), path);

  vl_job_load_model (G_OBJECT (self), path, self->backbone_cancel, backbone_loaded, NULL);
  vl_window_update_actions (self);
}

/* ------------------------------------------------------------------ the groups */

/* The groups panel edits the window's model's lock state (vl-groups-panel.h). */
static VlGroupsPanel *
groups (VlWindow *self)
{
  return VL_GROUPS_PANEL (self->groups_panel);
}

void
vl_window_update_layer_scales (VlWindow *self)
{
  vl_groups_panel_set_layer_decay (groups (self), vl_training_panel_get_layer_decay (
                                     VL_TRAINING_PANEL (self->training_panel)));
}

/* A row per group of the model; the backbone panel's count of them. */
static void
rebuild_group_rows (VlWindow *self)
{
  vl_groups_panel_set_model (groups (self), self->model);
  if (self->model == NULL)
    return;
  const VlGeometry *g = vl_model_geometry (self->model);
  g_autofree char *text = g_strdup_printf (_("%d: stem, %d blocks, final norm%s%s%s"),
                                           vl_model_n_groups (self->model), g->depth,
                                           g->attn_pool ? ", attn_pool" : "",
                                           g->embed_dim ? ", proj" : "",
                                           vl_model_head_kind (self->model) != VL_HEAD_NONE
                                           ? _(", head") : "");
  vl_backbone_panel_set_groups_text (VL_BACKBONE_PANEL (self->backbone_panel), text);
  vl_window_update_layer_scales (self);
}

/* Switches, N and the counts from the model's lock state. */
void
vl_window_sync_groups (VlWindow *self)
{
  vl_groups_panel_sync (groups (self));
  vl_window_update_actions (self);
}

/* During a run: what the trainer trains now (LOCK events), without touching the user's
 * settings; vl_window_sync_groups restores them when the run ends. */
void
vl_window_show_live_lock (VlWindow *self, int unlocked)
{
  vl_groups_panel_show_live_lock (groups (self), unlocked);
}

void
vl_window_set_group_grad_norms (VlWindow *self, const double *norms, int n)
{
  if (vl_window_is_running (self))
    vl_groups_panel_set_grad_norms (groups (self), norms, n);
}

/* The user changed which groups train (a switch, N, the schedule). */
static void
on_groups_changed (VlWindow *self)
{
  if (!self->syncing)
    vl_training_panel_set_custom (VL_TRAINING_PANEL (self->training_panel));
  vl_window_update_actions (self);
}

/* N changed during a run: from the next epoch on (the LOCK event shows it). */
static void
on_unlock_live (VlGroupsPanel *panel, int n, VlWindow *self)
{
  VlTrainer *t = vl_window_trainer (self);
  if (t == NULL || self->model == NULL)
    return;
  vl_trainer_set_unlock (t, n >= vl_model_n_groups (self->model) ? VL_UNLOCK_ALL : n);
  g_autofree char *msg = g_strdup_printf (_("From the next epoch on, the last %d group%s "
                                            "train."),
                                          n, n == 1 ? "" : "s");
  gtk_label_set_text (GTK_LABEL (self->message_label), msg);
  gtk_widget_set_visible (self->message_label, TRUE);
}

/* ------------------------------------------------------------------ the schedule */

/* Presets and opened runs: N for epoch 0, the rest as schedule rows. */
void
vl_window_set_unlock_schedule (VlWindow *self, const char *schedule)
{
  if (self->model == NULL)
    {
      g_object_set_data_full (G_OBJECT (self), "pending-schedule", g_strdup (schedule), g_free);
      return;
    }
  g_autoptr(GError) error = NULL;
  if (!vl_groups_panel_set_schedule (groups (self), schedule, &error))
    {
      vl_window_show_error (self, _("Unlock schedule \"%s\": %s"), schedule, error->message);
      return;
    }
  vl_window_update_actions (self);
}

/* ------------------------------------------------------------------ the head */

static void
parse_head (const char *head, VlHeadKind *kind, VlPoolKind *pool)
{
  *kind = g_strcmp0 (head, "mlp") == 0 ? VL_HEAD_MLP : VL_HEAD_LINEAR;
  *pool = g_strcmp0 (head, "linear-avg") == 0 ? VL_POOL_AVG
        : g_strcmp0 (head, "linear-max") == 0 ? VL_POOL_MAX : VL_POOL_TOKEN;
}

void
vl_window_head_to_config (VlWindow *self, VlTrainConfig *cfg)
{
  parse_head (self->head, &cfg->head, &cfg->pool);
  cfg->mlp_hidden = cfg->head == VL_HEAD_MLP
                  ? vl_head_panel_get_mlp_hidden (VL_HEAD_PANEL (self->head_panel)) : 0;
}

void
vl_window_set_head_from_config (VlWindow *self, const VlTrainConfig *cfg)
{
  const char *head = cfg->head == VL_HEAD_MLP ? "mlp"
                   : cfg->pool == VL_POOL_AVG ? "linear-avg"
                   : cfg->pool == VL_POOL_MAX ? "linear-max" : "linear-token";
  if (cfg->head == VL_HEAD_MLP)
    g_object_set (self->head_panel, "mlp-hidden", cfg->mlp_hidden, NULL);
  vl_window_set_head (self, head);
  g_object_notify (G_OBJECT (self), "head");
}

/* The head's outputs for the open dataset and the task: its classes, or its regression
 * targets; without a dataset, the checkpoint's own (0: none). */
static int
head_outputs (VlWindow *self)
{
  if (self->data == NULL)
    return vl_model_num_classes (self->model);
  return self->task == VL_TASK_REGRESS ? vl_dataset_n_values (self->data->ds)
                                       : vl_dataset_n_classes (self->data->ds);
}

static void
update_head_note (VlWindow *self)
{
  VlHeadKind kind;
  VlPoolKind pool;
  parse_head (self->head, &kind, &pool);
  if (self->model == NULL)
    {
      vl_head_panel_set_note (VL_HEAD_PANEL (self->head_panel),
                          _("The head is created for the dataset's classes when a backbone and a "
                            "dataset are open."));
      return;
    }
  if (self->task == VL_TASK_SEGMENT || self->task == VL_TASK_DETECT)
    {
      g_autofree char *note = self->task == VL_TASK_SEGMENT ? vl_window_seg_head_note (self)
                                                            : vl_window_det_head_note (self);
      vl_head_panel_set_note (VL_HEAD_PANEL (self->head_panel), note);
      return;
    }
  int W = vl_model_geometry (self->model)->embed_dim ? vl_model_geometry (self->model)->embed_dim
                                                     : vl_model_geometry (self->model)->width;
  int K = head_outputs (self);
  int hidden = vl_head_panel_get_mlp_hidden (VL_HEAD_PANEL (self->head_panel));
  if (hidden <= 0)
    hidden = vl_model_geometry (self->model)->width;
  int64_t params = kind == VL_HEAD_MLP ? (int64_t) W * hidden + hidden + (int64_t) hidden * K + K
                                       : (int64_t) W * K + K;
  g_autofree char *count = vl_format_count (params);
  const gboolean reg = self->data && self->task == VL_TASK_REGRESS;
  const char *pre = self->data ? "" : _(" (the pretrained ones until a dataset is open)");
  g_autofree char *t =
    kind == VL_HEAD_MLP && reg
      ? g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "An MLP head for %d target%s: %s "
                                      "parameters, freshly initialised (seeded) when training "
                                      "starts.", "An MLP head for %d targets%s: %s parameters, "
                                      "freshly initialised (seeded) when training starts.", K),
                         K, pre, count)
    : kind == VL_HEAD_MLP
      ? g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "An MLP head for %d class%s: %s "
                                      "parameters, freshly initialised (seeded) when training "
                                      "starts.", "An MLP head for %d classes%s: %s parameters, "
                                      "freshly initialised (seeded) when training starts.", K),
                         K, pre, count)
    : reg
      ? g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "A linear head for %d target%s: %s "
                                      "parameters, freshly initialised (seeded) when training "
                                      "starts.", "A linear head for %d targets%s: %s parameters, "
                                      "freshly initialised (seeded) when training starts.", K),
                         K, pre, count)
      : g_strdup_printf (g_dngettext (GETTEXT_PACKAGE, "A linear head for %d class%s: %s "
                                      "parameters, freshly initialised (seeded) when training "
                                      "starts.", "A linear head for %d classes%s: %s parameters, "
                                      "freshly initialised (seeded) when training starts.", K),
                         K, pre, count);
  vl_head_panel_set_note (VL_HEAD_PANEL (self->head_panel), t);
}

/* Sets the head kind and rebuilds it on the model for the dataset's classes (the lock state is
 * kept). */
void
vl_window_set_head (VlWindow *self, const char *head)
{
  if (head != self->head)
    {
      g_free (self->head);
      self->head = g_strdup (head);
    }
  if (self->model)
    {
      VlHeadKind kind;
      VlPoolKind pool;
      parse_head (self->head, &kind, &pool);
      int n_before = vl_model_n_groups (self->model);
      g_autofree gboolean *was = g_new (gboolean, n_before);
      for (int g = 0; g < n_before; g++)
        was[g] = vl_model_group_trainable (self->model, g);
      int suffix = vl_window_unlocked_suffix (self);
      int K = head_outputs (self);
      gboolean keep_pretrained = self->data == NULL && kind == VL_HEAD_LINEAR &&
                                 vl_model_head_kind (self->model) == VL_HEAD_LINEAR;
      if (!keep_pretrained && K > 0)
        vl_model_set_head (self->model, kind, K,
                           vl_head_panel_get_mlp_hidden (VL_HEAD_PANEL (self->head_panel)),
                           vl_training_panel_get_seed (VL_TRAINING_PANEL (self->training_panel)));
      vl_model_set_pool (self->model, pool);
      vl_window_features_inputs_changed (self);   /* the k-NN probe pools as the head */
      int n_after = vl_model_n_groups (self->model);
      if (n_after == n_before)
        for (int g = 0; g < n_after; g++)
          vl_model_set_group_trainable (self->model, g, was[g]);
      else
        vl_model_lock (self->model, MAX (suffix, 1));
      rebuild_group_rows (self);
      vl_window_sync_groups (self);
    }
  update_head_note (self);
  vl_window_update_actions (self);
}

static void
on_mlp_hidden_changed (VlWindow *self)
{
  if (g_strcmp0 (self->head, "mlp") == 0 && !vl_window_is_running (self))
    vl_window_set_head (self, self->head);
}

/* The segmentation head or the dense tasks' input size changed: the head's note, and the
 * probes' pretrained attention at the new input size. */
static void
on_dense_setting_changed (VlWindow *self)
{
  if (self->syncing || (self->task != VL_TASK_SEGMENT && self->task != VL_TASK_DETECT) ||
      vl_window_is_running (self))
    return;
  if (self->head)
    vl_window_set_head (self, self->head);   /* the note */
  vl_window_start_pretrained_attention (self);   /* the probes at the new input size */
}

/* A dataset arrived: the head follows the number of classes. */
static void
on_dataset_changed (VlWindow *self)
{
  if (!vl_window_is_running (self))
    vl_window_set_head (self, self->head);
}

static void
on_layer_decay_changed (VlWindow *self)
{
  vl_window_update_layer_scales (self);
}

/* ------------------------------------------------------------------ the stem */

VlStemKind
vl_window_stem_choice (VlWindow *self)
{
  return vl_backbone_panel_get_stem (VL_BACKBONE_PANEL (self->backbone_panel));
}

void
vl_window_set_stem_choice (VlWindow *self, VlStemKind kind)
{
  vl_backbone_panel_set_stem (VL_BACKBONE_PANEL (self->backbone_panel), kind);
}

/* A new stem trains with the head and the transformer frozen: when only the head was to train,
 * the stem's switch goes on too (a random stem in front of a frozen model would stay random). */
static void
on_stem_changed (VlWindow *self)
{
  if (self->syncing || self->model == NULL || vl_window_is_running (self) ||
      vl_window_stem_choice (self) == VL_STEM_PATCH)
    return;
  const int n = vl_model_n_groups (self->model);
  gboolean progressive = FALSE;
  g_object_get (self->groups_panel, "progressive", &progressive, NULL);
  if (vl_window_unlocked_suffix (self) == 1 && !progressive)
    {
      vl_model_set_group_trainable (self->model, 0, TRUE);
      vl_training_panel_set_custom (VL_TRAINING_PANEL (self->training_panel));
      vl_window_sync_groups (self);
      vl_window_set_status (self, n > 1 ? _("The new stem and the head train; the transformer "
                                            "stays frozen")
                                        : "");
    }
}

/* ------------------------------------------------------------------ setup */

void
vl_window_backbone_init (VlWindow *self)
{
  g_signal_connect_swapped (self->groups_panel, "changed", G_CALLBACK (on_groups_changed), self);
  g_signal_connect (self->groups_panel, "unlock-live", G_CALLBACK (on_unlock_live), self);
  g_signal_connect_swapped (self->head_panel, "notify::mlp-hidden",
                            G_CALLBACK (on_mlp_hidden_changed), self);
  g_signal_connect_swapped (self->training_panel, "notify::layer-decay",
                            G_CALLBACK (on_layer_decay_changed), self);
  g_signal_connect_swapped (self->backbone_panel, "notify::stem",
                            G_CALLBACK (on_stem_changed), self);
  g_signal_connect_swapped (self->head_panel, "notify::seg-head",
                            G_CALLBACK (on_dense_setting_changed), self);
  g_signal_connect_swapped (self->head_panel, "notify::input-size",
                            G_CALLBACK (on_dense_setting_changed), self);
  g_signal_connect_swapped (self, "dataset-changed", G_CALLBACK (on_dataset_changed), self);
  vl_window_refresh_recent (self);
  update_head_note (self);
}

void
vl_window_backbone_dispose (VlWindow *self)
{
  if (self->backbone_cancel)
    g_cancellable_cancel (self->backbone_cancel);
  g_clear_object (&self->backbone_cancel);
  if (self->groups_panel)
    vl_groups_panel_set_model (VL_GROUPS_PANEL (self->groups_panel), NULL);   /* borrowed */
  g_clear_pointer (&self->model, vl_model_free);
  g_clear_pointer (&self->backbone_path, g_free);
}

/* when a run ends: the user's settings again */
void
vl_window_backbone_run_ended (VlWindow *self)
{
  vl_groups_panel_hide_grad_norms (VL_GROUPS_PANEL (self->groups_panel));
  vl_window_sync_groups (self);
}

/* vl-window-backbone.c: loading a backbone on a worker thread, its description, the layer-group
 * switches with the unlock count N kept in step, the progressive unfreezing schedule, and the
 * head. The model here is the pretrained backbone the user configures; a run trains its own
 * copy (the trainer loads it on its worker thread). */
#include "vl-window-private.h"
#include <glib/gi18n.h>

#include <math.h>
#include <string.h>

#define MAX_RECENT 8

/* ------------------------------------------------------------------ loading */

static void
load_backbone_thread (GTask *task, gpointer source, gpointer task_data, GCancellable *cancel)
{
  vl_lower_thread_priority ();
  const char *path = task_data;
  GError *error = NULL;
  gint64 t0 = g_get_monotonic_time ();
  VlModel *m = vl_model_load (path, &error);
  if (m == NULL)
    {
      g_task_return_error (task, error);
      return;
    }
  g_object_set_data (G_OBJECT (task), "seconds",
                     GINT_TO_POINTER ((int) ((g_get_monotonic_time () - t0) / 1000)));
  g_task_return_pointer (task, m, (GDestroyNotify) vl_model_free);
}

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
  VlModel *m = g_task_propagate_pointer (G_TASK (result), &error);
  if (cancel != self->backbone_cancel)
    {
      /* a newer load replaced this one: drop the stale result */
      g_clear_pointer (&m, vl_model_free);
      return;
    }
  g_clear_object (&self->backbone_cancel);
  const char *path = g_task_get_task_data (G_TASK (result));
  VlBackbonePanel *panel = VL_BACKBONE_PANEL (self->backbone_panel);
  if (m == NULL)
    {
      vl_window_show_error (self, _("Could not open the backbone: %s"), error->message);
      vl_backbone_panel_set_failed (panel);
      vl_window_update_actions (self);
      return;
    }
  int ms = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (result), "seconds"));
  g_clear_pointer (&self->model, vl_model_free);
  self->model = m;
  g_free (self->backbone_path);
  self->backbone_path = g_strdup (path);
  add_recent (self, path);
  vl_window_refresh_recent (self);

  vl_backbone_panel_show_model (panel, m, path, ms / 1000.0);

  /* the head the user chose, for the dataset's classes; then the lock they asked for */
  vl_window_set_head (self, self->head);
  const char *pending = g_object_get_data (G_OBJECT (self), "pending-schedule");
  g_autofree char *schedule = g_strdup (pending ? pending : "1");
  g_object_set_data (G_OBJECT (self), "pending-schedule", NULL);
  vl_window_set_unlock_schedule (self, schedule);

  g_autofree char *title = g_strdup_printf ("vitlab — %s", vl_backbone_panel_get_name (panel));
  gtk_window_set_title (GTK_WINDOW (self), title);
  vl_window_start_pretrained_attention (self);
  vl_window_refresh_probe_file (self, TRUE);   /* the probe file (or the sample) under it */
  vl_window_features_inputs_changed (self);   /* the k-NN probe under it */
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

  g_autoptr(GTask) task = g_task_new (self, self->backbone_cancel, backbone_loaded, NULL);
  g_task_set_source_tag (task, vl_window_open_backbone);
  g_task_set_task_data (task, g_strdup (path), g_free);
  g_task_run_in_thread (task, load_backbone_thread);
  vl_window_update_actions (self);
}

/* ------------------------------------------------------------------ the groups */

int
vl_window_unlocked_suffix (VlWindow *self)
{
  if (self->model == NULL)
    return -1;
  int n = vl_model_n_groups (self->model);
  int k = 0;
  while (k < n && vl_model_group_trainable (self->model, n - 1 - k))
    k++;
  for (int g = 0; g < n - k; g++)
    if (vl_model_group_trainable (self->model, g))
      return -1;
  return k;
}

static const char *
group_tooltip (const char *name)
{
  if (g_str_equal (name, "stem"))
    return _("Patch embedding, class token and position embedding: how pixels become tokens");
  if (g_str_equal (name, "head"))
    return _("The classifier: a new one is created for the dataset's classes");
  if (g_str_has_prefix (name, "norm") || g_str_has_prefix (name, "fc_norm") ||
      g_str_has_suffix (name, "ln_post"))
    return _("The final LayerNorm on the token stream");
  if (g_str_equal (name, "proj"))
    return _("OpenCLIP's projection into the joint image-text space");
  return _("A transformer block: self-attention and MLP, each with its LayerNorm");
}

void
vl_window_update_layer_scales (VlWindow *self)
{
  if (self->model == NULL || self->group_rows == NULL)
    return;
  double decay = vl_training_panel_get_layer_decay (VL_TRAINING_PANEL (self->training_panel));
  int n = vl_model_n_groups (self->model);
  g_autofree float *scales = g_new (float, n);
  vl_train_layer_scales (self->model, decay, scales);
  for (int g = 0; g < n && g < (int) self->group_rows->len; g++)
    {
      VlGroupRow *r = g_ptr_array_index (self->group_rows, g);
      g_autofree char *t = g_strdup_printf ("lr ×%.3g", scales[g]);
      gtk_label_set_text (GTK_LABEL (r->lr_label), t);
      gtk_widget_set_visible (r->lr_label, decay < 1.0);
    }
}

static void sync_trainable_summary (VlWindow *self);

static void
on_group_toggled (GtkSwitch *sw, GParamSpec *pspec, VlWindow *self)
{
  if (self->syncing || self->model == NULL || vl_window_is_running (self))
    return;
  int g = GPOINTER_TO_INT (g_object_get_data (G_OBJECT (sw), "group"));
  vl_model_set_group_trainable (self->model, g, gtk_switch_get_active (sw));
  vl_training_panel_set_custom (VL_TRAINING_PANEL (self->training_panel));
  vl_window_sync_groups (self);
}

static void
rebuild_group_rows (VlWindow *self)
{
  GtkWidget *child;
  while ((child = gtk_widget_get_first_child (self->groups_list)))
    gtk_list_box_remove (GTK_LIST_BOX (self->groups_list), child);
  g_ptr_array_set_size (self->group_rows, 0);
  if (self->model == NULL)
    return;
  int n = vl_model_n_groups (self->model);
  for (int g = 0; g < n; g++)
    {
      VlGroupRow *r = g_new0 (VlGroupRow, 1);
      const char *name = vl_model_group_name (self->model, g);
      GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 10);
      gtk_widget_add_css_class (box, "vl-group-row");
      GtkWidget *text = gtk_box_new (GTK_ORIENTATION_VERTICAL, 2);
      gtk_widget_set_hexpand (text, TRUE);
      GtkWidget *name_label = gtk_label_new (name);
      gtk_label_set_xalign (GTK_LABEL (name_label), 0);
      gtk_widget_add_css_class (name_label, "vl-group-name");
      gtk_box_append (GTK_BOX (text), name_label);
      GtkWidget *meta = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 8);
      g_autofree char *count = vl_format_count (vl_model_group_n_params (self->model, g));
      g_autofree char *params = g_strdup_printf ("%s params", count);
      GtkWidget *params_label = gtk_label_new (params);
      gtk_widget_add_css_class (params_label, "dim-label");
      gtk_widget_add_css_class (params_label, "caption");
      gtk_box_append (GTK_BOX (meta), params_label);
      r->lr_label = gtk_label_new (NULL);
      gtk_widget_add_css_class (r->lr_label, "caption");
      gtk_widget_add_css_class (r->lr_label, "vl-lr");
      gtk_widget_set_tooltip_text (r->lr_label, _("Learning-rate multiplier of this group with "
                                                  "layer decay (Training ▸ Layer decay)"));
      gtk_box_append (GTK_BOX (meta), r->lr_label);
      gtk_box_append (GTK_BOX (text), meta);
      gtk_box_append (GTK_BOX (box), text);

      r->grad_bar = gtk_level_bar_new_for_interval (0, 1);
      gtk_widget_set_size_request (r->grad_bar, 70, -1);
      gtk_widget_set_valign (r->grad_bar, GTK_ALIGN_CENTER);
      gtk_widget_set_visible (r->grad_bar, FALSE);
      gtk_widget_set_tooltip_text (r->grad_bar, _("Gradient norm of this group at the latest step, "
                                                  "relative to the largest"));
      gtk_box_append (GTK_BOX (box), r->grad_bar);

      r->state_label = gtk_label_new (NULL);
      gtk_widget_add_css_class (r->state_label, "caption");
      gtk_widget_add_css_class (r->state_label, "vl-state");
      gtk_box_append (GTK_BOX (box), r->state_label);

      r->toggle = gtk_switch_new ();
      gtk_widget_set_valign (r->toggle, GTK_ALIGN_CENTER);
      g_autofree char *tip = g_strdup_printf (_("Train %s (on) or keep it frozen (off)"), name);
      gtk_widget_set_tooltip_text (r->toggle, tip);
      g_object_set_data (G_OBJECT (r->toggle), "group", GINT_TO_POINTER (g));
      g_signal_connect (r->toggle, "notify::active", G_CALLBACK (on_group_toggled), self);
      gtk_box_append (GTK_BOX (box), r->toggle);

      r->row = gtk_list_box_row_new ();
      gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (r->row), FALSE);
      gtk_list_box_row_set_child (GTK_LIST_BOX_ROW (r->row), box);
      gtk_widget_set_tooltip_text (box, group_tooltip (name));
      gtk_list_box_append (GTK_LIST_BOX (self->groups_list), r->row);
      g_ptr_array_add (self->group_rows, r);
    }
  GtkAdjustment *adj = gtk_spin_button_get_adjustment (GTK_SPIN_BUTTON (self->unlock_spin));
  self->syncing = TRUE;
  gtk_adjustment_set_upper (adj, n);
  self->syncing = FALSE;
  g_autofree char *of = g_strdup_printf ("of %d", n);
  gtk_label_set_text (GTK_LABEL (self->unlock_of_label), of);
  g_autofree char *groups = g_strdup_printf ("%d: stem, %d blocks, final norm%s%s", n,
                                             vl_model_geometry (self->model)->depth,
                                             vl_model_geometry (self->model)->embed_dim ? ", proj" : "",
                                             vl_model_head_kind (self->model) != VL_HEAD_NONE
                                             ? ", head" : "");
  vl_backbone_panel_set_groups_text (VL_BACKBONE_PANEL (self->backbone_panel), groups);
  vl_window_update_layer_scales (self);
}

static void
show_row_state (VlGroupRow *r, gboolean trainable)
{
  gtk_label_set_text (GTK_LABEL (r->state_label), trainable ? "trains" : "frozen");
  if (trainable)
    {
      gtk_widget_add_css_class (r->row, "vl-unlocked");
      gtk_widget_remove_css_class (r->row, "vl-frozen");
    }
  else
    {
      gtk_widget_add_css_class (r->row, "vl-frozen");
      gtk_widget_remove_css_class (r->row, "vl-unlocked");
    }
}

static void
sync_trainable_summary (VlWindow *self)
{
  if (self->model == NULL)
    return;
  int64_t total = vl_model_n_params (self->model);
  int64_t trainable = vl_model_n_trainable (self->model);
  g_autofree char *a = vl_format_count (trainable);
  g_autofree char *b = vl_format_count (total);
  double pct = total ? 100.0 * trainable / total : 0.0;
  g_autofree char *t = g_strdup_printf ("%s of %s parameters train (%.*f %%)", a, b,
                                        pct > 0 && pct < 1 ? 2 : 1, pct);
  gtk_label_set_text (GTK_LABEL (self->trainable_label), t);
  gtk_level_bar_set_value (GTK_LEVEL_BAR (self->trainable_bar),
                           total ? (double) trainable / total : 0.0);
}

static void update_schedule_label (VlWindow *self);

/* Switches, N and the counts from the model's lock state. */
void
vl_window_sync_groups (VlWindow *self)
{
  if (self->model == NULL)
    return;
  self->syncing = TRUE;
  int n = vl_model_n_groups (self->model);
  for (int g = 0; g < n && g < (int) self->group_rows->len; g++)
    {
      VlGroupRow *r = g_ptr_array_index (self->group_rows, g);
      gboolean t = vl_model_group_trainable (self->model, g);
      gtk_switch_set_active (GTK_SWITCH (r->toggle), t);
      show_row_state (r, t);
    }
  int k = vl_window_unlocked_suffix (self);
  if (k >= 0)
    gtk_spin_button_set_value (GTK_SPIN_BUTTON (self->unlock_spin), k);
  gtk_widget_set_visible (self->unlock_custom_label, k < 0);
  self->syncing = FALSE;
  sync_trainable_summary (self);
  update_schedule_label (self);
  vl_window_update_actions (self);
}

/* During a run: what the trainer trains now (LOCK events), without touching the user's
 * settings; vl_window_sync_groups restores them when the run ends. */
void
vl_window_show_live_lock (VlWindow *self, int unlocked)
{
  if (self->group_rows == NULL)
    return;
  int n = (int) self->group_rows->len;
  self->syncing = TRUE;
  for (int g = 0; g < n; g++)
    {
      VlGroupRow *r = g_ptr_array_index (self->group_rows, g);
      gboolean t = g >= n - unlocked;
      gtk_switch_set_active (GTK_SWITCH (r->toggle), t);
      show_row_state (r, t);
    }
  self->syncing = FALSE;
}

void
vl_window_set_group_grad_norms (VlWindow *self, const double *norms, int n)
{
  if (self->group_rows == NULL)
    return;
  double mx = 0;
  for (int g = 0; g < n; g++)
    if (isfinite (norms[g]))
      mx = MAX (mx, norms[g]);
  for (int g = 0; g < n && g < (int) self->group_rows->len; g++)
    {
      VlGroupRow *r = g_ptr_array_index (self->group_rows, g);
      gboolean show = vl_window_is_running (self) && isfinite (norms[g]) && norms[g] > 0;
      gtk_widget_set_visible (r->grad_bar, show);
      gtk_level_bar_set_value (GTK_LEVEL_BAR (r->grad_bar),
                               mx > 0 && isfinite (norms[g]) ? norms[g] / mx : 0);
      g_autofree char *tip = g_strdup_printf (_("Gradient norm at the latest step: %.4g"),
                                              norms[g]);
      gtk_widget_set_tooltip_text (r->grad_bar, tip);
    }
}

static void
hide_grad_bars (VlWindow *self)
{
  for (guint g = 0; self->group_rows && g < self->group_rows->len; g++)
    {
      VlGroupRow *r = g_ptr_array_index (self->group_rows, g);
      gtk_widget_set_visible (r->grad_bar, FALSE);
    }
}

static void
on_unlock_changed (GtkSpinButton *spin, VlWindow *self)
{
  if (self->syncing || self->model == NULL)
    return;
  int n = gtk_spin_button_get_value_as_int (spin);
  if (vl_window_is_running (self))
    {
      /* applies from the next epoch; the LOCK event shows it */
      vl_trainer_set_unlock (vl_window_trainer (self), n >= vl_model_n_groups (self->model) ? VL_UNLOCK_ALL : n);
      g_autofree char *msg = g_strdup_printf (_("From the next epoch on, the last %d group%s "
                                                "train."),
                                              n, n == 1 ? "" : "s");
      gtk_label_set_text (GTK_LABEL (self->message_label), msg);
      gtk_widget_set_visible (self->message_label, TRUE);
      return;
    }
  vl_model_lock (self->model, n);
  vl_training_panel_set_custom (VL_TRAINING_PANEL (self->training_panel));
  vl_window_sync_groups (self);
}

/* ------------------------------------------------------------------ the schedule */

static GtkWidget *
row_spin (GtkWidget *row, const char *which)
{
  return g_object_get_data (G_OBJECT (row), which);
}

char *
vl_window_unlock_schedule (VlWindow *self)
{
  int n_groups = self->model ? vl_model_n_groups (self->model) : 0;
  int first = gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->unlock_spin));
  GString *s = g_string_new (NULL);
#define APPEND_N(v) do { if (n_groups > 0 && (v) >= n_groups) g_string_append (s, "all"); \
                         else g_string_append_printf (s, "%d", (v)); } while (0)
  if (!gtk_switch_get_active (GTK_SWITCH (self->progressive_switch)))
    {
      APPEND_N (first);
      return g_string_free (s, FALSE);
    }
  g_string_append (s, "0:");
  APPEND_N (first);
  /* the rows in epoch order */
  int n = (int) self->schedule_rows->len;
  g_autofree int *epochs = g_new (int, MAX (n, 1));
  g_autofree int *counts = g_new (int, MAX (n, 1));
  for (int i = 0; i < n; i++)
    {
      GtkWidget *row = g_ptr_array_index (self->schedule_rows, i);
      epochs[i] = gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (row_spin (row, "epoch"))) - 1;
      counts[i] = gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (row_spin (row, "count")));
    }
  for (int i = 1; i < n; i++)
    for (int j = i; j > 0 && epochs[j - 1] > epochs[j]; j--)
      {
        int t = epochs[j]; epochs[j] = epochs[j - 1]; epochs[j - 1] = t;
        t = counts[j]; counts[j] = counts[j - 1]; counts[j - 1] = t;
      }
  for (int i = 0; i < n; i++)
    {
      g_string_append_printf (s, ",%d:", epochs[i]);
      APPEND_N (counts[i]);
    }
#undef APPEND_N
  int n_steps;
  g_autoptr(GError) error = NULL;
  g_autofree VlUnlockStep *steps = vl_unlock_schedule_parse (s->str, &n_steps, &error);
  if (steps == NULL)
    {
      g_string_free (s, TRUE);
      return NULL;
    }
  return g_string_free (s, FALSE);
}

static void
update_schedule_label (VlWindow *self)
{
  g_autofree char *s = vl_window_unlock_schedule (self);
  if (s)
    {
      g_autofree char *t = g_strdup_printf ("--unlock-schedule %s", s);
      gtk_label_set_text (GTK_LABEL (self->schedule_label), t);
      gtk_widget_remove_css_class (self->schedule_label, "error");
    }
  else
    {
      gtk_label_set_text (GTK_LABEL (self->schedule_label), _("two steps share an epoch"));
      gtk_widget_add_css_class (self->schedule_label, "error");
    }
}

static void
on_schedule_changed (VlWindow *self)
{
  if (!self->syncing)
    vl_training_panel_set_custom (VL_TRAINING_PANEL (self->training_panel));
  update_schedule_label (self);
  vl_window_update_actions (self);
}

static void remove_schedule_row (GtkButton *button, VlWindow *self);

/* A step row: "From epoch E unlock N groups" (E shown 1-based; the schedule is 0-based). */
static GtkWidget *
add_schedule_row (VlWindow *self, int epoch, int count)
{
  int n_groups = self->model ? vl_model_n_groups (self->model) : 100;
  GtkWidget *box = gtk_box_new (GTK_ORIENTATION_HORIZONTAL, 6);
  gtk_widget_add_css_class (box, "vl-schedule-row");
  gtk_box_append (GTK_BOX (box), gtk_label_new (_("From epoch")));
  GtkWidget *e = gtk_spin_button_new_with_range (2, 10000, 1);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (e), epoch + 1);
  gtk_widget_set_tooltip_text (e, _("The epoch (counting from 1) at which this step starts"));
  gtk_box_append (GTK_BOX (box), e);
  gtk_box_append (GTK_BOX (box), gtk_label_new (_("unlock")));
  GtkWidget *c = gtk_spin_button_new_with_range (0, n_groups, 1);
  gtk_spin_button_set_value (GTK_SPIN_BUTTON (c), count);
  gtk_widget_set_tooltip_text (c, _("How many of the last layer groups train from then on"));
  gtk_box_append (GTK_BOX (box), c);
  GtkWidget *groups = gtk_label_new (_("groups"));
  gtk_widget_set_hexpand (groups, TRUE);
  gtk_label_set_xalign (GTK_LABEL (groups), 0);
  gtk_box_append (GTK_BOX (box), groups);
  GtkWidget *rm = gtk_button_new_from_icon_name ("list-remove-symbolic");
  gtk_widget_add_css_class (rm, "flat");
  gtk_widget_set_tooltip_text (rm, _("Remove this step"));
  gtk_box_append (GTK_BOX (box), rm);

  GtkWidget *row = gtk_list_box_row_new ();
  gtk_list_box_row_set_activatable (GTK_LIST_BOX_ROW (row), FALSE);
  gtk_list_box_row_set_child (GTK_LIST_BOX_ROW (row), box);
  g_object_set_data (G_OBJECT (row), "epoch", e);
  g_object_set_data (G_OBJECT (row), "count", c);
  g_object_set_data (G_OBJECT (rm), "row", row);
  g_signal_connect (rm, "clicked", G_CALLBACK (remove_schedule_row), self);
  g_signal_connect_swapped (e, "value-changed", G_CALLBACK (on_schedule_changed), self);
  g_signal_connect_swapped (c, "value-changed", G_CALLBACK (on_schedule_changed), self);
  gtk_list_box_append (GTK_LIST_BOX (self->schedule_list), row);
  g_ptr_array_add (self->schedule_rows, row);
  return row;
}

static void
remove_schedule_row (GtkButton *button, VlWindow *self)
{
  GtkWidget *row = g_object_get_data (G_OBJECT (button), "row");
  g_ptr_array_remove (self->schedule_rows, row);
  gtk_list_box_remove (GTK_LIST_BOX (self->schedule_list), row);
  on_schedule_changed (self);
}

static void
clear_schedule_rows (VlWindow *self)
{
  while (self->schedule_rows->len)
    {
      GtkWidget *row = g_ptr_array_index (self->schedule_rows, self->schedule_rows->len - 1);
      g_ptr_array_remove_index (self->schedule_rows, self->schedule_rows->len - 1);
      gtk_list_box_remove (GTK_LIST_BOX (self->schedule_list), row);
    }
}

static void
on_schedule_add_clicked (VlWindow *self)
{
  int last_epoch = 0;
  int last_count = gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (self->unlock_spin));
  for (guint i = 0; i < self->schedule_rows->len; i++)
    {
      GtkWidget *row = g_ptr_array_index (self->schedule_rows, i);
      int e = gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (row_spin (row, "epoch"))) - 1;
      if (e >= last_epoch)
        {
          last_epoch = e;
          last_count = gtk_spin_button_get_value_as_int (GTK_SPIN_BUTTON (row_spin (row, "count")));
        }
    }
  int n_groups = self->model ? vl_model_n_groups (self->model) : last_count + 2;
  add_schedule_row (self, last_epoch + 2, MIN (last_count + 2, n_groups));
  on_schedule_changed (self);
}

static void
on_progressive_toggled (GtkSwitch *sw, GParamSpec *pspec, VlWindow *self)
{
  if (gtk_switch_get_active (sw) && self->schedule_rows->len == 0 && !self->syncing)
    on_schedule_add_clicked (self);
  on_schedule_changed (self);
}

/* Presets and opened runs: N for epoch 0, the rest as schedule rows. */
void
vl_window_set_unlock_schedule (VlWindow *self, const char *schedule)
{
  if (self->model == NULL)
    {
      g_object_set_data_full (G_OBJECT (self), "pending-schedule", g_strdup (schedule), g_free);
      return;
    }
  int n_steps = 0;
  g_autoptr(GError) error = NULL;
  g_autofree VlUnlockStep *steps = vl_unlock_schedule_parse (schedule, &n_steps, &error);
  if (steps == NULL || n_steps == 0)
    {
      vl_window_show_error (self, _("Unlock schedule \"%s\": %s"), schedule,
                            error ? error->message : "empty");
      return;
    }
  int n_groups = vl_model_n_groups (self->model);
  gboolean was = self->syncing;
  self->syncing = TRUE;
  clear_schedule_rows (self);
  for (int i = 1; i < n_steps; i++)
    add_schedule_row (self, steps[i].epoch, MIN (steps[i].unlocked, n_groups));
  gtk_switch_set_active (GTK_SWITCH (self->progressive_switch), n_steps > 1);
  self->syncing = was;
  vl_model_lock (self->model, MIN (steps[0].unlocked, n_groups));
  vl_window_sync_groups (self);
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
  g_autofree char *t = g_strdup_printf ("%s for %d %s%s: %s parameters, freshly initialised "
                                        "(seeded) when training starts.",
                                        kind == VL_HEAD_MLP ? "An MLP head" : "A linear head", K,
                                        reg ? (K == 1 ? "target" : "targets") : "classes",
                                        self->data ? "" : " (the pretrained ones until a dataset "
                                        "is open)", count);
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
  if (vl_window_unlocked_suffix (self) == 1 &&
      !gtk_switch_get_active (GTK_SWITCH (self->progressive_switch)))
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
  self->group_rows = g_ptr_array_new_with_free_func (g_free);
  self->schedule_rows = g_ptr_array_new ();
  gtk_range_set_adjustment (GTK_RANGE (self->unlock_scale),
                            gtk_spin_button_get_adjustment (GTK_SPIN_BUTTON (self->unlock_spin)));
  g_signal_connect (self->unlock_spin, "value-changed", G_CALLBACK (on_unlock_changed), self);
  g_signal_connect (self->progressive_switch, "notify::active",
                    G_CALLBACK (on_progressive_toggled), self);
  g_signal_connect_swapped (self->schedule_add_button, "clicked",
                            G_CALLBACK (on_schedule_add_clicked), self);
  g_signal_connect_swapped (self->head_panel, "notify::mlp-hidden",
                            G_CALLBACK (on_mlp_hidden_changed), self);
  g_signal_connect_swapped (self->training_panel, "notify::layer-decay",
                            G_CALLBACK (on_layer_decay_changed), self);
  g_signal_connect_swapped (self->backbone_panel, "notify::stem",
                            G_CALLBACK (on_stem_changed), self);
  vl_window_refresh_recent (self);
  update_schedule_label (self);
  update_head_note (self);
}

void
vl_window_backbone_dispose (VlWindow *self)
{
  if (self->backbone_cancel)
    g_cancellable_cancel (self->backbone_cancel);
  g_clear_object (&self->backbone_cancel);
  g_clear_pointer (&self->model, vl_model_free);
  g_clear_pointer (&self->backbone_path, g_free);
  g_clear_pointer (&self->group_rows, g_ptr_array_unref);
  g_clear_pointer (&self->schedule_rows, g_ptr_array_unref);
}

/* when a run ends: the user's settings again */
void
vl_window_backbone_run_ended (VlWindow *self)
{
  hide_grad_bars (self);
  vl_window_sync_groups (self);
}
